"""The notebooks: generated files in sync with solutions/*.py, exercises stripped in the student
versions, nbgrader metadata, and every student notebook stopping at its first exercise."""

import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from course_utils.notebooks import BEGIN, END, STUDENT, build, dumps, sources, strip_solutions

SOURCES = sources()


def test_there_are_seven_notebooks():
    assert [p.stem[:2] for p in SOURCES] == ["01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_generated_notebooks_are_in_sync(py):
    solution, student = build(py)
    for path, nb in ((py.with_suffix(".ipynb"), solution), (STUDENT / f"{py.stem}.ipynb", student)):
        assert path.exists(), f"{path} is missing: run `make notebooks`"
        assert path.read_text() == dumps(nb), f"{path} is out of date: run `make notebooks`"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_student_notebooks_hold_no_solutions_and_solutions_carry_nbgrader_marks(py):
    solution = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
    student = nbformat.read(STUDENT / f"{py.stem}.ipynb", as_version=4)
    exercises = [c for c in solution.cells if BEGIN in c.source]
    for cell in exercises:
        assert cell.metadata["nbgrader"]["solution"] is True
    stripped = [c for c in student.cells if "raise NotImplementedError" in c.source]
    assert len(stripped) == len(exercises)
    assert not any(BEGIN in c.source or END in c.source for c in student.cells)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in solution.cells if "nbgrader" in c.metadata]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[a-zA-Z0-9_\-]+", i) for i in ids), ids  # nbgrader's schema
    graded = [c for c in solution.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert all("checks.check_" in c.source for c in graded)
    assert len(graded) >= len(exercises)
    assert solution.metadata["jupytext"]["formats"] == "ipynb,py:percent"


def test_strip_solutions_names_the_exercise_and_keeps_indentation():
    cell = "def f(x):\n    # Exercise 9.1: double x\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"
    out = strip_solutions(cell)
    assert '    raise NotImplementedError("Exercise 9.1: double x")' in out and "2 * x" not in out
    with pytest.raises(ValueError, match="Exercise N.M"):
        strip_solutions("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")
    with pytest.raises(ValueError, match="without"):
        strip_solutions("# Exercise 1.1: x\n### BEGIN SOLUTION\nx = 1")


@pytest.mark.parametrize("py", [p for p in SOURCES if BEGIN in p.read_text()], ids=lambda p: p.stem)
def test_student_notebook_stops_at_its_first_exercise(py):
    """Run as is, a student notebook fails with NotImplementedError at the first exercise, and not before."""
    nb = nbformat.read(STUDENT / f"{py.stem}.ipynb", as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if "raise NotImplementedError" in c.source)
    # run everything up to and including the first check after the first exercise
    stop = next(i for i, c in enumerate(nb.cells) if i > first and "checks.check_" in c.source)
    nb.cells = nb.cells[: stop + 1]
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(STUDENT)}})
    with pytest.raises(CellExecutionError) as err:
        client.execute()
    assert err.value.ename == "NotImplementedError"
    assert "Exercise" in str(err.value)
    failed = [i for i, c in enumerate(nb.cells) if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert failed == [stop], f"the first error should be in the check cell {stop}, got {failed}"


def test_course_command_runs_a_notebook_headless_over_local_sockets(tmp_path):
    """`python -m course_utils course` runs a notebook, keeps its figures and timings, and its kernel talks
    over IPC sockets (no TCP, so ipykernel prints no warning about unencrypted TCP)."""
    import json
    import subprocess
    import sys

    command = [sys.executable, "-m", "course_utils", "course", "--out", str(tmp_path), "01_forward_noising"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((tmp_path / "timings.json").read_text())
    assert [r["notebook"] for r in rows] == ["01_forward_noising"] and rows[0]["figures"] >= 2
    assert len(list((tmp_path / "figures" / "01_forward_noising").glob("*.png"))) == rows[0]["figures"]
    assert "TCP" not in done.stdout + done.stderr
