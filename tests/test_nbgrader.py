"""A real nbgrader round trip on every notebook with exercises, with the commands the instructors' page gives
(site/instructors.md):

    python -m course_utils nbgrader-course COURSE        (config + source/NN_name/NN_name.ipynb)
    nbgrader generate_assignment NN_name                 (release/: solutions stripped)
    nbgrader validate --invert release/NN_name/NN_name.ipynb    (an unsolved notebook passes no check)
    nbgrader validate source/NN_name/NN_name.ipynb              (the solutions pass every check)
    nbgrader autograde NN_name                           (submitted/STUDENT/NN_name/NN_name.ipynb)
    nbgrader generate_feedback NN_name                   (feedback/STUDENT/NN_name/NN_name.html)
    nbgrader export                                       (grades.csv, once, after every notebook's autograde)

Three submissions per notebook: the released notebook as is (0 points), the released notebook
filled in with the solutions (full points) and the same with one plausible mistake (partial points,
and the feedback names the mistake). The course's config grades with course_utils.grading: autograde runs the
setup, exercise and check cells, and the course's other cells carry a note that they did not run.

The two validate commands run on that page's example notebook only: on the others, what they assert is
already answered by a run the test makes anyway (the unsolved submission scores 0, so it passes no check;
the solved one scores full points, so the solutions pass every check), and each would execute every cell of
the notebook once more (validate runs every cell).
"""
import csv
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from course_utils.grading import NOT_RUN, filled_in
from course_utils.notebooks import BEGIN, ROOT, graded_notebooks

NOTEBOOKS = {nb.stem: nb for nb in graded_notebooks()}
PAGE_EXAMPLE = "01_forward_noising"   # the notebook the instructors' page runs its commands on

# one plausible mistake per notebook: (grade id of the exercise cell, right text, wrong text, words of the hint)
MISTAKES = {
    "01_forward_noising": ("exercise-1-1", "ab.sqrt() * x0 + (1 - ab).sqrt() * noise", "ab * x0 + (1 - ab) * noise",
                           "square roots"),
    "02_ddpm_x0": ("exercise-2-3", "posterior_variance[t].sqrt() * noise", "posterior_variance[t] * noise",
                   "standard deviation"),
    "03_ddpm_eps": ("exercise-3-3", "b / (1 - ab).sqrt() * eps", "b / (1 - a).sqrt() * eps", "misprint"),
    "04_noisy_classifier": ("exercise-4-2", "classifier(x_t, t)", "classifier(x0, t)", "noisy x_t"),
    "05_classifier_guidance": ("exercise-5-2", "mean + scale * variance * grad", "mean - scale * variance * grad",
                               "sign of the guidance"),
    "06_classifier_free_guidance": ("exercise-6-2", "eps_uncond + scale * (eps_cond - eps_uncond)",
                                    "(1 + scale) * eps_cond - scale * eps_uncond", "w-convention"),
}


def test_every_notebook_with_exercises_has_a_mistake_to_grade():
    assert set(MISTAKES) == set(NOTEBOOKS) and len(NOTEBOOKS) == 6


def test_the_instructors_page_runs_its_commands_on_the_example_notebook():
    page = (ROOT / "site" / "instructors.md").read_text()
    for command in (f"nbgrader validate --invert release/{PAGE_EXAMPLE}/{PAGE_EXAMPLE}.ipynb",
                    f"nbgrader validate source/{PAGE_EXAMPLE}/{PAGE_EXAMPLE}.ipynb",
                    f"nbgrader autograde {PAGE_EXAMPLE}"):
        assert command in page


def run(course: Path, *command: str) -> str:
    """A command in the course directory, with this Python's scripts first on PATH (nbgrader calls alembic)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run(command, cwd=course, env=env, capture_output=True, text=True, timeout=3000)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{output[-4000:]}"
    return output


def nbgrader(course: Path, *args: str) -> str:
    return run(course, sys.executable, "-m", "nbgrader", *args)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = tmp_path_factory.mktemp("nbgrader-course")
    out = run(ROOT, sys.executable, "-m", "course_utils", "nbgrader-course", str(course))
    assert "nbgrader_config.py" in out
    assert sorted(p.name for p in (course / "source").iterdir()) == sorted(NOTEBOOKS)
    return course


def test_solution_metadata_meets_nbgrader_schema():
    for nb_path in NOTEBOOKS.values():
        nb = nbformat.read(nb_path, as_version=4)
        assert (nb.nbformat, nb.nbformat_minor) >= (4, 5)
        assert all(cell.get("id") for cell in nb.cells), f"{nb_path.name}: a cell has no id"
        marked = [c.metadata["nbgrader"] for c in nb.cells if "nbgrader" in c.metadata]
        ids = [m["grade_id"] for m in marked]
        assert len(ids) == len(set(ids)), f"{nb_path.name}: grade ids repeat"
        graded = [m for m in marked if m["grade"]]
        assert graded and all(m["points"] > 0 and m["locked"] for m in graded)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_nbgrader_round_trip(course, name):
    nbgrader(course, "generate_assignment", name, "--force")
    release = course / "release" / name / f"{name}.ipynb"
    source_path = course / "source" / name / f"{name}.ipynb"
    released = nbformat.read(release, as_version=4)
    source = nbformat.read(source_path, as_version=4)
    # locked cells (the checks) reach the students unchanged; solution cells do not
    locked = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
              if c.metadata.get("nbgrader", {}).get("locked")}
    assert locked and all(c.source == locked[c.metadata["nbgrader"]["grade_id"]]
                          for c in released.cells if c.metadata.get("nbgrader", {}).get("locked"))
    assert BEGIN not in nbformat.writes(released)

    if name == PAGE_EXAMPLE:
        assert "Success! The notebook does not pass any tests." in nbgrader(course, "validate", "--invert",
                                                                             str(release))
        assert "Success! Your notebook passes all the tests." in nbgrader(course, "validate", str(source_path))

    submissions = {
        "unsolved": released,
        "solved": filled_in(nbformat.read(release, as_version=4), source),
        "wrong": filled_in(nbformat.read(release, as_version=4), source, MISTAKES[name]),
    }
    for student, nb in submissions.items():
        folder = course / "submitted" / student / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{name}.ipynb")
    started = time.perf_counter()
    nbgrader(course, "autograde", name, "--force")
    print(f"{name}: autograde of {len(submissions)} submissions took {time.perf_counter() - started:.1f} s")

    # grading ran the cells the grade reads (setup, exercises, checks); the course's other cells say they did not run
    graded_run = nbformat.read(course / "autograded" / "solved" / name / f"{name}.ipynb", as_version=4)
    code = [c for c in graded_run.cells if c.cell_type == "code"]
    left_out = [c for c in code if [o.get("text") for o in c.outputs] == [NOT_RUN]]
    assert left_out and all(c.execution_count is None and not c.metadata.get("nbgrader") for c in left_out)
    assert all(c.execution_count for c in code if c.metadata.get("nbgrader", {}).get("grade"))

    said = nbgrader(course, "generate_feedback", name, "--force")
    assert "Alternative text is missing" not in said   # nbconvert's warning: every figure carries its own alt text
    # the failed check's message, as the student reads it: "CheckFailed: <what>: <the named mistake>"
    failures = re.findall(r"CheckFailed</span>: ([^\n<]*)", feedback_of(course, "wrong", name))
    assert len(failures) == 1 and MISTAKES[name][3] in html.unescape(failures[0]), failures
    assert "course_utils/checks.py" not in feedback_of(course, "wrong", name)   # the diagnosis, not the checks' source
    assert "CheckFailed" not in feedback_of(course, "solved", name)


def test_exported_grades_give_each_submission_its_score(course):
    """One ``nbgrader export`` after the round trips above (it exports every assignment of the gradebook): for
    each notebook the unsolved submission scores 0, the solved one full points (one per graded cell) and the
    one with a mistake some but not all."""
    graded = [name for name in NOTEBOOKS if (course / "autograded" / "solved" / name).exists()]
    assert graded == list(NOTEBOOKS), f"run with the round trips: only {graded} were autograded"
    nbgrader(course, "export", "--to", "grades.csv")
    with open(course / "grades.csv") as f:
        rows = {(r["assignment"], r["student_id"]): r for r in csv.DictReader(f)}
    for name, path in NOTEBOOKS.items():
        source = nbformat.read(path, as_version=4)
        scores = {s: float(rows[name, s]["score"]) for s in ("unsolved", "solved", "wrong")}
        max_score = float(rows[name, "solved"]["max_score"])
        print(f"{name}: {json.dumps(scores)} of {max_score:g}")
        assert max_score == sum(bool(c.metadata.get("nbgrader", {}).get("grade")) for c in source.cells)
        assert scores["unsolved"] == 0
        assert scores["solved"] == max_score
        assert 0 < scores["wrong"] < max_score


def feedback_of(course: Path, student: str, name: str) -> str:
    return (course / "feedback" / student / name / f"{name}.html").read_text()
