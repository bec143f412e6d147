"""nbgrader's settings for this course. `python -m course_utils nbgrader-course DIR` copies this file
into a new course directory beside the assignments; nbgrader reads it from the directory it runs in.

A grade is the sum of the check cells' points, and each check reads only the student's own function. Grading
therefore runs a notebook's first code cell (imports and settings), its exercise cells, its check cells and
any cell the student added, and leaves out the rest (training, sampling, figures), each with a one-line note
in the feedback: seconds a notebook instead of a minute (course_utils/grading.py).
To run every cell, as a learner does, set `c.ExecuteGradedCells.run_every_cell = True` below; the training
cells then run with the tests' budgets of seconds (COURSE_FAST), or the learners' minutes with COURSE_FAST=0.
"""
import os
import tempfile

from nbgrader.converters import Autograde
from nbgrader.preprocessors import Execute

c = get_config()  # noqa: F821 -- nbgrader defines get_config when it reads this file

# nbgrader autograde runs the cells a grade depends on (see above), its other steps unchanged; nbgrader validate
# runs every cell. (Named, not imported, so that only autograde loads course_utils and PyTorch, for seconds.)
steps = Autograde.class_traits()["autograde_preprocessors"].default()
c.Autograde.autograde_preprocessors = ["course_utils.grading.ExecuteGradedCells" if step is Execute else step
                                       for step in steps]
c.ExecuteGradedCells.run_every_cell = False

# when every cell runs: the training budgets of seconds, not the learner's several minutes
os.environ.setdefault("COURSE_FAST", "1")
# what a graded notebook trains goes to a fresh folder, not beside the submission, and no model
# from one grading session reaches the next
os.environ.setdefault("COURSE_MODELS", tempfile.mkdtemp(prefix="nbgrader-models-"))

# nbgrader stops a cell after 30 s by default. When every cell runs, a cell that samples with the shipped
# networks takes about a minute on 2 CPU cores, and a training cell takes minutes with COURSE_FAST=0.
c.Execute.timeout = 1200
