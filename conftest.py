"""Test-wide settings, for the unit tests and for nbval on solutions/ alike (kernels inherit them)."""
import os
import tempfile
from pathlib import Path

import pytest

os.environ["COURSE_FAST"] = "1"        # notebooks train for seconds instead of minutes (the same code)
os.environ["COURSE_OFFLINE"] = "1"     # the offline MNIST subset: no download in tests
os.environ.setdefault("COURSE_DEVICE", "cpu")
# the explorer's disk cache: a fresh folder for each test run, not the learner's own cache
os.environ["COURSE_EXPLORER_CACHE"] = tempfile.mkdtemp(prefix="explorer-cache-")
# the models the notebooks train (and later notebooks load): a fresh folder, not the learner's my_models/
os.environ["COURSE_MODELS"] = tempfile.mkdtemp(prefix="course-models-")


# nbval's run of each solution notebook, kept cell by cell (its outputs and seconds): tests/test_site.py builds
# the website from these runs rather than executing the seven notebooks once more
def pytest_configure(config):
    config.course_notebook_runs = {}


def pytest_collection_modifyitems(session, config, items):
    """The website's tests last, after nbval has run the notebooks they are built from."""
    site = [item for item in items if Path(str(item.fspath)).name == "test_site.py"]
    items[:] = [item for item in items if item not in site] + site


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if call.when == "call" and hasattr(item, "test_outputs") and hasattr(item, "cell_num"):   # an nbval cell
        run = item.config.course_notebook_runs.setdefault(
            Path(str(item.fspath)).stem, {"notebook": item.parent.nb, "outputs": {}, "seconds": 0.0, "failed": False})
        run["outputs"][item.cell_num] = list(item.test_outputs or [])
        run["seconds"] += call.duration
        run["failed"] = run["failed"] or not report.passed


# where the suite's time goes: each file's seconds (its tests' setup, call and teardown; a notebook's cells under
# nbval), printed at the end of the run with the share of the whole
SECONDS_BY_FILE: dict[str, float] = {}


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    SECONDS_BY_FILE[path] = SECONDS_BY_FILE.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    total = sum(SECONDS_BY_FILE.values())
    if not total:
        return
    terminalreporter.section("seconds by file")
    for path, seconds in sorted(SECONDS_BY_FILE.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:7.1f} s {seconds / total:4.0%}  {path}")
    terminalreporter.write_line(f"{total:7.1f} s in all tests")
