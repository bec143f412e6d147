"""The package outside the repository, as on a hosted notebook service: a wheel built from the package's own
files holds the shipped weights and every module a notebook imports; installed into a fresh environment whose
only other packages are the course's dependencies (torch, matplotlib, Jupyter), notebook 1 and the explorer's
``compute`` run from a folder outside the checkout, and what they import is the wheel's copy.

The fresh environment is a new virtual environment with the wheel installed into it by pip; it reaches the
dependencies through one path entry to this environment's site-packages, whose editable install of the course is
not loaded (a path entry's own .pth files are not read), so the checkout cannot leak in.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*command, cwd, env=None, timeout=600) -> str:
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{(done.stdout + done.stderr)[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built by pip from a copy of the package's files (pyproject.toml, README.md, course_utils/)."""
    tree = tmp_path_factory.mktemp("source")
    shutil.copytree(ROOT / "course_utils", tree / "course_utils", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", out,
        tree, cwd=tree)
    (found,) = out.glob("course_utils-*.whl")
    return found


def imported_modules() -> set[str]:
    """The course_utils modules the solution notebooks import (course_utils itself imports the rest)."""
    names = {"course_utils/__init__.py"}
    for py in (ROOT / "solutions").glob("0*.py"):
        for module in re.findall(r"^\s*(?:from|import) course_utils\.([.\w]+)", py.read_text(), flags=re.M):
            names.add("course_utils/" + module.replace(".", "/") + ".py")
        for module in re.findall(r"^\s*from course_utils import ([\w, ]+)", py.read_text(), flags=re.M):
            names.update(f"course_utils/{m.strip()}.py" for m in module.split(",")
                         if (ROOT / "course_utils" / f"{m.strip()}.py").exists())
    return names


def test_the_wheel_holds_the_weights_and_every_module_the_notebooks_import(wheel):
    held = set(zipfile.ZipFile(wheel).namelist())
    weights = {f"course_utils/weights/{p.name}" for p in (ROOT / "course_utils" / "weights").iterdir()
               if p.suffix in (".safetensors", ".json")}
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "course_utils").rglob("*.py")}
    assert len(weights) == 10 and weights <= held, sorted(weights - held)
    assert imported_modules() <= modules <= held, sorted(modules - held)


@pytest.fixture(scope="module")
def fresh_env(wheel, tmp_path_factory) -> Path:
    """A new virtual environment with the wheel installed, and the course's dependencies on one path entry."""
    env = tmp_path_factory.mktemp("env")
    run(sys.executable, "-m", "venv", "--without-pip", env, cwd=env)
    python = env / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=env).strip())
    (site / "course-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel, cwd=env)
    return python


def test_notebook_1_and_the_explorer_run_from_the_installed_wheel_outside_the_checkout(fresh_env, tmp_path):
    work = tmp_path / "elsewhere"          # a learner's folder: the solution notebook and nothing else
    work.mkdir()
    shutil.copy(ROOT / "solutions" / "01_forward_noising.ipynb", work)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(COURSE_FAST="1", COURSE_OFFLINE="1", COURSE_MODELS=str(tmp_path / "models"),
               COURSE_EXPLORER_CACHE=str(tmp_path / "cache"), PATH=f"{fresh_env.parent}{os.pathsep}{env['PATH']}")
    where = run(fresh_env, "-c", "import course_utils, torch; print(course_utils.__file__)", cwd=work, env=env).strip()
    assert Path(where).is_relative_to(fresh_env.parent.parent) and not Path(where).is_relative_to(ROOT), where

    script = """
import json, nbformat
from nbclient import NotebookClient
nb = nbformat.read("01_forward_noising.ipynb", as_version=4)
nb.cells.append(nbformat.v4.new_code_cell("import course_utils; print(course_utils.__file__)"))
NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()
errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
figures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
from course_utils.widgets import Setting, compute, load_models
result = compute(Setting(method="classifier-ddim", digit=9, scale=4.0, steps=10), load_models())
import course_utils.pretrained as p
print(json.dumps({"errors": len(errors), "figures": figures, "accuracy": result["accuracy"],
                  "shape": list(result["images"].shape), "weights": str(p.__file__),
                  "kernel": nb.cells[-1].outputs[0]["text"].strip()}))
"""
    said = json.loads(run(fresh_env, "-c", script, cwd=work, env=env).strip().splitlines()[-1])
    print(said)
    assert said["errors"] == 0 and said["figures"] >= 2
    assert said["shape"][:2] == [16, 1] and said["accuracy"] >= 0.5   # the shipped models, guided toward 9
    for imported in (said["weights"], said["kernel"]):   # this process and the notebook's kernel
        assert Path(imported).is_relative_to(fresh_env.parent.parent), imported
