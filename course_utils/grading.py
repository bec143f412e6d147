"""What nbgrader runs when it grades a notebook of the course: the cells a grade depends on.

A grade is the sum of the check cells' points, and each check calls only the student's own function
(``checks.check_q_sample(q_sample)``, ...). So grading needs the course's first code cell (its imports and
settings), the exercise cells (nbgrader's solution cells) and the check cells (its graded cells), and any
cell the student added, which may hold a helper their answer calls. The course's other cells (live training,
sampling with the shipped networks, figures, measurements) do not change a grade; they take most of a
notebook's minute, so :class:`ExecuteGradedCells` leaves them out and writes a one-line note in their place.

``instructor/nbgrader_config.py`` puts it where nbgrader's ``Execute`` was in ``nbgrader autograde``;
``c.ExecuteGradedCells.run_every_cell = True`` runs every cell, as a learner does.
(``nbgrader validate`` always runs every cell: nbgrader's config cannot change its steps.)
"""
from __future__ import annotations

from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Bool

from .notebooks import BEGIN, END, written_by_course

NOT_RUN = ("Not run when grading: the grade reads only the exercise and check cells; this cell's training, "
           "samples or figures do not count toward it.\n")


def counts_toward_grade(cell: NotebookNode, setup_cell: bool) -> bool:
    """Whether grading runs this code cell: the course's first code cell (``setup_cell``), an exercise or check
    cell, or a cell the course did not write (a cell the student added keeps a fresh id, not one of the form
    ``NN-iii``)."""
    marked = cell.metadata.get("nbgrader", {})
    return (setup_cell or marked.get("solution", False) or marked.get("grade", False)
            or not written_by_course(cell))


class ExecuteGradedCells(Execute):
    """nbgrader's ``Execute``, running only the cells that :func:`counts_toward_grade` keeps (all of them when
    ``run_every_cell``); each cell left out gets :data:`NOT_RUN` as its output."""

    run_every_cell = Bool(False, help="Run every cell of the notebook, as a learner does (minutes, not "
                                      "seconds, a notebook)").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._setup_index = next((i for i, cell in enumerate(nb.cells)   # the course's first code cell
                                  if cell.cell_type == "code" and written_by_course(cell)), None)
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        if (cell.cell_type != "code" or self.run_every_cell
                or counts_toward_grade(cell, index == self._setup_index)):
            return super().preprocess_cell(cell, resources, index)
        cell.outputs = [NotebookNode(output_type="stream", name="stdout", text=NOT_RUN)]
        return cell, resources


def filled_in(released: NotebookNode, source: NotebookNode, mistake: tuple[str, ...] | None = None) -> NotebookNode:
    """The released notebook with each exercise cell answered as a student would: the master solution from
    ``source`` without nbgrader's markers. ``mistake = (grade id, right text, wrong text, ...)`` writes one
    answer wrong."""
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    filled = 0
    for cell in released.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            text = "\n".join(line for line in answers[grade_id].splitlines() if line.strip() not in (BEGIN, END))
            if mistake and mistake[0] == grade_id:
                if mistake[1] not in text:
                    raise ValueError(f"{grade_id}: {mistake[1]!r} is not in the solution")
                text = text.replace(mistake[1], mistake[2])
            cell.source = text
            filled += 1
    if filled != len(answers):
        raise ValueError(f"the released notebook holds {filled} of the {len(answers)} exercise cells")
    return released
