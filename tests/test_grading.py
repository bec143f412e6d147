"""What grading runs (course_utils/grading.py), on a small notebook of the course's form: its first code cell, its
exercise and check cells and a cell the student added run; the course's other cells get a note instead."""
import nbformat
import pytest
from traitlets.config import Config
from traitlets.utils.importstring import import_item

from course_utils.grading import NOT_RUN, ExecuteGradedCells, counts_toward_grade
from course_utils.notebooks import NBGRADER_CONFIG, graded_notebooks, written_by_course


def notebook(student_cell_first=False):
    cells = [
        nbformat.v4.new_markdown_cell("# 9. A notebook", id="09-000"),
        nbformat.v4.new_code_cell("import math\nprint('setup')", id="09-001"),
        nbformat.v4.new_code_cell("print('training for minutes')", id="09-002"),
        nbformat.v4.new_code_cell("def half(x):\n    return helper(x)", id="09-003",
                                  metadata={"nbgrader": {"solution": True, "grade": False}}),
        nbformat.v4.new_code_cell("def helper(x):\n    return x / 2", id="2b0d7c1e-student"),
        nbformat.v4.new_code_cell("assert half(4) == 2\nprint('check passed')", id="09-005",
                                  metadata={"nbgrader": {"solution": False, "grade": True, "points": 1}}),
        nbformat.v4.new_code_cell("print('a figure')", id="09-006"),
    ]
    if student_cell_first:   # a cell the student added above the course's first: the setup still runs
        cells.insert(1, nbformat.v4.new_code_cell("print('mine')", id="5e1f-student"))
    return nbformat.v4.new_notebook(cells=cells)


def printed(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs)


def test_every_cell_of_the_graded_notebooks_carries_an_id_of_the_course_form():
    """The rule below tells the course's cells from a student's by this form of id: every cell the course writes
    must have it (a cell with another id would be run when grading, as a student's)."""
    for path in graded_notebooks():
        cells = nbformat.read(path, as_version=4).cells
        assert all(written_by_course(cell) for cell in cells), path.name
        assert len({cell.id for cell in cells}) == len(cells), path.name


def test_the_rule_keeps_setup_exercises_checks_and_the_students_cells():
    nb = notebook()
    code = [c for c in nb.cells if c.cell_type == "code"]
    kept = [counts_toward_grade(c, setup_cell=(c is code[0])) for c in code]
    assert kept == [True, False, True, True, True, False]


@pytest.mark.parametrize("every,student_cell_first", [(False, False), (False, True), (True, False)])
def test_grading_runs_what_the_grade_reads(every, student_cell_first):
    config = Config()
    config.ExecuteGradedCells.run_every_cell = every
    nb, _ = ExecuteGradedCells(config=config, timeout=120).preprocess(notebook(student_cell_first), {})
    said = {c.id: printed(c) for c in nb.cells if c.cell_type == "code"}
    assert said["09-001"] == "setup\n" and said["09-005"] == "check passed\n"
    assert said.get("5e1f-student", "mine\n") == "mine\n"
    if every:
        assert said["09-002"] == "training for minutes\n" and said["09-006"] == "a figure\n"
    else:
        assert said["09-002"] == said["09-006"] == NOT_RUN


def test_the_course_config_swaps_only_the_execute_step_of_autograde():
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute
    from traitlets.config.loader import PyFileConfigLoader

    c = PyFileConfigLoader(NBGRADER_CONFIG.name, path=str(NBGRADER_CONFIG.parent)).load_config()
    default = Autograde.class_traits()["autograde_preprocessors"].default()
    chosen = Autograde(config=c).autograde_preprocessors   # as nbgrader reads its config
    assert Execute in default and "course_utils.grading.ExecuteGradedCells" in chosen
    assert [p for p in chosen if isinstance(p, type)] == [p for p in default if p is not Execute]
    assert import_item("course_utils.grading.ExecuteGradedCells") is ExecuteGradedCells
    assert c.ExecuteGradedCells.run_every_cell is False
