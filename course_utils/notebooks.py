"""The notebooks: solutions/ is the source, notebooks/ is generated from it.

Each solution is written as a jupytext ``py:percent`` file, ``solutions/NN_name.py``, paired
with ``solutions/NN_name.ipynb``. ``python -m course_utils notebooks`` (``make notebooks``)
rebuilds both .ipynb files of every notebook:

- the solution notebook, with nbgrader metadata: cells holding ``### BEGIN SOLUTION`` are
  solution cells, cells that call ``checks.check_...`` are locked, graded test cells;
- the student notebook in notebooks/, where each ``### BEGIN SOLUTION`` ... ``### END SOLUTION``
  region becomes ``raise NotImplementedError("<the exercise's task>")``, the task taken from
  the cell's ``# Exercise N.M: ...`` line.

``execute_solutions`` runs the solutions headlessly (``make course``) and keeps their figures.
"""
from __future__ import annotations

import base64
import copy
import json
import os
import re
import tempfile
import time
from pathlib import Path

from .files import atomic_write, write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, STUDENT = ROOT / "solutions", ROOT / "notebooks"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
EXERCISE = re.compile(r"#\s*Exercise\s+(\d+\.\d+):\s*(.+)")
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}
COURSE_CELL_ID = re.compile(r"\d\d-\d{3}")   # the form of every id cell_id gives: "03-017"


def cell_id(stem: str, index: int) -> str:
    """The id of the cell at ``index`` in a notebook the course writes: the notebook's number, then the cell's."""
    return f"{stem[:2]}-{index:03d}"


def written_by_course(cell) -> bool:
    """Whether a cell carries an id of the course's form (:func:`cell_id`); a cell a learner adds gets a fresh one."""
    return bool(COURSE_CELL_ID.fullmatch(cell.get("id", "")))


def sources(folder: Path = SOLUTIONS) -> list[Path]:
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.py"))


def strip_solutions(source: str) -> str:
    """Replace every solution region of a code cell by a NotImplementedError naming the exercise."""
    match = EXERCISE.search(source)
    if BEGIN in source and not match:
        raise ValueError(f"a solution cell needs a '# Exercise N.M: task' line:\n{source[:200]}")
    out, inside = [], False
    for line in source.splitlines():
        if line.strip() == BEGIN:
            indent = line[: len(line) - len(line.lstrip())]
            task = f"Exercise {match.group(1)}: {match.group(2).strip()}".replace('"', "'")
            out += [f"{indent}# YOUR CODE HERE", f'{indent}raise NotImplementedError("{task}")']
            inside = True
        elif line.strip() == END:
            if not inside:
                raise ValueError(f"{END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN} without {END}")
    return "\n".join(out)


def build(py_file: Path):
    """(solution notebook, student notebook) as nbformat objects, without outputs."""
    import jupytext
    import nbformat

    nb = jupytext.read(py_file)
    nb.metadata = {"kernelspec": KERNEL, "language_info": {"name": "python"},
                   "jupytext": {"formats": "ipynb,py:percent"}}
    graded = 0
    for i, cell in enumerate(nb.cells):
        cell.metadata.pop("lines_to_next_cell", None)
        cell["id"] = cell_id(py_file.stem, i)
        if cell.cell_type != "code":
            continue
        if BEGIN in cell.source:
            ex = EXERCISE.search(cell.source)
            name = ex.group(1).replace(".", "-") if ex else str(i)   # nbgrader ids allow letters, digits, _ and -
            cell.metadata["nbgrader"] = {"grade": False, "grade_id": f"exercise-{name}",
                                         "locked": False, "schema_version": 3, "solution": True, "task": False}
        elif "checks.check_" in cell.source:
            graded += 1
            cell.metadata["nbgrader"] = {"grade": True, "grade_id": f"{py_file.stem[:2]}-check-{graded}",
                                         "locked": True, "points": 1, "schema_version": 3, "solution": False,
                                         "task": False}
    student = copy.deepcopy(nb)
    student.metadata.pop("jupytext")
    for cell in student.cells:
        if cell.cell_type == "code" and BEGIN in cell.source:
            cell.source = strip_solutions(cell.source)
    nbformat.validate(nb)
    nbformat.validate(student)
    return nb, student


def dumps(nb) -> str:
    import nbformat

    return nbformat.writes(nb) + "\n"


def generate(solutions: Path = SOLUTIONS, student: Path = STUDENT) -> list[Path]:
    """Write solutions/NN.ipynb and notebooks/NN.ipynb for every solutions/NN.py."""
    written = []
    for py in sources(solutions):
        sol, stu = build(py)
        for path, nb in ((py.with_suffix(".ipynb"), sol), (Path(student) / f"{py.stem}.ipynb", stu)):
            write_text_atomic(path, dumps(nb))
            written.append(path)
    return written


def _local_kernel_config(folder: str):
    """Kernels talk to us over local sockets (IPC) in ``folder``, not TCP: nothing is reachable from the
    network, and ipykernel has no reason to warn about unencrypted TCP."""
    from traitlets.config import Config

    # an absolute socket path: the kernel runs in the notebooks' folder, not in ours
    return Config({"KernelManager": {"transport": "ipc", "ip": str(Path(folder) / "kernel")}})


def execute_solutions(out: Path, names=None, timeout: int = 900) -> list[dict]:
    """Run each solution notebook as a learner does (top to bottom, with its training budgets;
    COURSE_FAST=1 shrinks them), write the executed copy to out/notebooks and every image it
    shows to out/figures/NN_name/; return one row of timings per notebook.

    The models the notebooks train go to out/my_models (unless COURSE_MODELS says otherwise),
    where the later notebooks find them, as beside a learner's notebooks."""
    os.environ.setdefault("COURSE_MODELS", str((Path(out) / "my_models").resolve()))
    with tempfile.TemporaryDirectory(prefix="course-kernel-") as sockets:
        rows = _execute_each(out, names, timeout, _local_kernel_config(sockets))
    write_run_facts(out, rows)
    return rows


def write_run_facts(out: Path, rows: list[dict]) -> None:
    """out/timings.json (``rows``: notebook, seconds, figures) and out/run.json: when, where and how the
    notebooks ran, which the website states beside their figures."""
    from .budgets import fast_mode
    from .cpu import cpu_summary

    write_text_atomic(Path(out) / "timings.json", json.dumps(rows, indent=2))
    run = {"finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": cpu_summary(),
           "fast": fast_mode(), "notebooks": [row["notebook"] for row in rows]}
    write_text_atomic(Path(out) / "run.json", json.dumps(run, indent=2))


def _execute_each(out: Path, names, timeout: int, kernel_config) -> list[dict]:
    import nbformat
    from nbclient import NotebookClient

    rows = []
    for py in sources():
        if names and py.stem not in names:
            continue
        nb = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
        start = time.perf_counter()
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", config=kernel_config,
                           resources={"metadata": {"path": str(SOLUTIONS)}}).execute()
        finally:  # a failed run is written too, up to the failing cell, so that it can be read
            write_text_atomic(Path(out) / "notebooks" / f"{py.stem}.ipynb", nbformat.writes(nb))
        seconds = time.perf_counter() - start
        figures = 0
        for i, cell in enumerate(nb.cells):
            for output in cell.get("outputs", []):
                png = output.get("data", {}).get("image/png")
                if png:
                    figures += 1
                    path = Path(out) / "figures" / py.stem / f"cell{i:03d}_{figures}.png"
                    atomic_write(path, lambda tmp: tmp.write_bytes(base64.b64decode(png)))
        rows.append({"notebook": py.stem, "seconds": round(seconds, 1), "figures": figures})
        print(f"{py.stem}: {seconds:.1f} s, {figures} figures")
    return rows


NBGRADER_CONFIG = ROOT / "instructor" / "nbgrader_config.py"


def graded_notebooks(solutions: Path = SOLUTIONS) -> list[Path]:
    """The solution notebooks that hold exercises (nbgrader assignments); notebook 7 has none."""
    return [py.with_suffix(".ipynb") for py in sources(solutions) if BEGIN in py.read_text()]


def nbgrader_course(directory: Path, force: bool = False) -> list[Path]:
    """Lay out an nbgrader course directory: ``nbgrader_config.py`` and one assignment per notebook
    with exercises, ``source/NN_name/NN_name.ipynb`` (the solution notebook, nbgrader's master copy).

    A file already there with other contents is kept, and this raises, unless ``force``."""
    directory = Path(directory)
    pairs = [(NBGRADER_CONFIG, directory / "nbgrader_config.py")]
    pairs += [(nb, directory / "source" / nb.stem / nb.name) for nb in graded_notebooks()]
    clash = [str(dst) for src, dst in pairs if dst.exists() and dst.read_bytes() != src.read_bytes()]
    if clash and not force:
        raise FileExistsError(f"these files exist with other contents (pass --force to overwrite): {clash}")
    for src, dst in pairs:
        write_text_atomic(dst, src.read_text())
    return [dst for _, dst in pairs]
