# The course's commands. Each creates the virtual environment on first use.
#   make course   run the course's main job: the notebooks as a learner runs them (headless), into build/
#   make test     every test
#   make lab      JupyterLab on the notebooks
#   make site     the course's website in build/site/, from the notebooks make course executed
#   make notebooks  regenerate solutions/*.ipynb and notebooks/ from solutions/*.py
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# PyTorch is pinned here, not in pyproject.toml, so that a learner's own machine can use
# whatever build suits it (override with: make setup TORCH_SPEC="torch torchvision").
UNAME_S := $(shell uname -s)
UNAME_M := $(shell uname -m)
ifeq ($(UNAME_S),Darwin)
TORCH_SPEC ?= torch torchvision
else ifeq ($(UNAME_M),aarch64)
TORCH_SPEC ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
endif

.PHONY: setup course test lab notebooks site clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q $(TORCH_SPEC)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

course: setup
	$(PY) -m course_utils course --out build

test: setup
	$(PY) -m pytest

site: setup
	$(PY) -m course_utils site --executed build --out build/site

notebooks: setup
	$(PY) -m course_utils notebooks

lab: setup
	$(VENV)/bin/jupyter lab notebooks

clean:
	rm -rf build .pytest_cache
