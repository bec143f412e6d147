"""A failed check, as a student sees it in a notebook: the diagnosis and the student's own lines, never
the checks' source."""
import nbformat
from nbclient import NotebookClient


def run_cells(*sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    return nb


def error_text(cell):
    (err,) = [o for o in cell.outputs if o.output_type == "error"]
    return "\n".join(err.traceback)


def test_a_failed_check_shows_the_diagnosis_and_the_students_lines_only():
    nb = run_cells(
        "from course_utils import checks\n"
        "def q_sample(x0, t, noise, schedule):\n"
        "    ab = schedule.alpha_bars[t].view(-1, 1, 1, 1)\n"
        "    return ab.sqrt() * x0 + (1 - ab) * noise\n"
        "checks.check_q_sample(q_sample)",
        "def broken(x0, t, noise, schedule):\n"
        "    return schedule.alpha_bars[t] * x0   # no reshape: fails to broadcast\n"
        "checks.check_q_sample(broken)")
    wrong, raised = error_text(nb.cells[0]), error_text(nb.cells[1])
    assert "CheckFailed" in wrong and "coefficient of the noise" in wrong and "square root is missing" in wrong
    assert "CheckFailed" in raised and "no reshape: fails to broadcast" in raised   # the student's own line
    for text in (wrong, raised):
        for internal in ("checks.py", "probes.py", "_verdict", "_call(", "raise CheckFailed"):
            assert internal not in text, (internal, text)
