"""nbgrader's settings for this course. `python -m course_utils nbgrader-course DIR` copies this file
into a new course directory beside the assignments; nbgrader reads it from the directory it runs in.

Grading runs every exercise check of a notebook. The notebook's training cells run too, with the
budgets of the tests: a few seconds each (the same code as a learner runs; only the budgets shrink).
To grade with the learners' full budgets, run nbgrader with COURSE_FAST=0 in the environment.
"""
import os
import tempfile

c = get_config()  # noqa: F821 -- nbgrader defines get_config when it reads this file

# budgets of seconds: grading a submission takes about a minute, not the learner's several minutes
os.environ.setdefault("COURSE_FAST", "1")
# what a graded notebook trains goes to a fresh folder, not beside the submission, and no model
# from one grading session reaches the next
os.environ.setdefault("COURSE_MODELS", tempfile.mkdtemp(prefix="nbgrader-models-"))

# nbgrader stops a cell after 30 s by default. A cell that samples with the shipped networks takes
# about a minute on 2 CPU cores, and a training cell takes minutes with COURSE_FAST=0.
c.Execute.timeout = 1200
