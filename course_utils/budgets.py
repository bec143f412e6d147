"""How long the course's notebooks train and how many samples they draw: a learner's budgets, or the
tests' and the grader's shrunken ones (COURSE_FAST). Only budgets change, never the code that runs."""
from __future__ import annotations

import os


def fast_mode() -> bool:
    """True when COURSE_FAST is set (the tests and nbgrader's grading set it): every training budget
    shrinks to a few seconds; the code that runs is the same as a learner's."""
    return os.environ.get("COURSE_FAST", "") not in ("", "0")


FAST_MINUTES = 0.08  # a training budget in fast mode: about 5 seconds


def training_minutes(default: float) -> float:
    """A notebook's training budget in minutes: ``default`` as a learner runs it,
    ``$COURSE_MINUTES`` when set (more time, better models), and about 5 seconds in fast
    mode. Only the budget changes: the code that trains is the same."""
    if fast_mode():
        return FAST_MINUTES
    chosen = os.environ.get("COURSE_MINUTES")
    return float(chosen) if chosen else float(default)


def sample_count(default: int, least: int = 2) -> int:
    """How many samples a picture or a measurement draws: ``default`` as a learner runs it, and in fast
    mode (the tests, grading) a quarter of it, but at least ``least``. Only the count changes: the code
    that samples and measures is the same."""
    if fast_mode():
        return max(least, default // 4)
    return default
