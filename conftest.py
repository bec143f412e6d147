"""Test-wide settings, for the unit tests and for nbval on solutions/ alike (kernels inherit them)."""
import os
import tempfile

os.environ["COURSE_FAST"] = "1"        # notebooks train for seconds instead of minutes (the same code)
os.environ["COURSE_OFFLINE"] = "1"     # the offline MNIST subset: no download in tests
os.environ.setdefault("COURSE_DEVICE", "cpu")
# the explorer's disk cache: a fresh folder for each test run, not the learner's own cache
os.environ["COURSE_EXPLORER_CACHE"] = tempfile.mkdtemp(prefix="explorer-cache-")
# the models the notebooks train (and later notebooks load): a fresh folder, not the learner's my_models/
os.environ["COURSE_MODELS"] = tempfile.mkdtemp(prefix="course-models-")
