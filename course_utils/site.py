"""The course's website (``make site``): the notebooks as ``make course`` executed them, the README's sections
as pages, and a guidance explorer that works without Python.

The explorer's page shows grids computed ahead by the explorer's own sampler and cache
(:func:`~course_utils.widgets.result_for`: method x digit x every sweep scale, seed 0, 25 steps; in the
tests' fast mode the digit 9 alone, at 10 steps) and the
quality report's curves (docs/quality.json). The site is built by Sphinx with myst-nb and the book theme, all
installed with the package's development tools; equations are rendered by a MathJax copied into the site, so
nothing is fetched when it is built or read.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .files import atomic_write, write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "site"                   # conf.py, the pages, the explorer's script and style
EXPLORER_SEED, EXPLORER_STEPS = 0, 25
FAST_DIGITS, FAST_STEPS = (9,), 10     # the tests' fast build: one digit, the step count notebook 7's explorer uses
WHAT_IT_TRAINS = {                     # what each notebook trains live, for its page's header
    "01_forward_noising": "nothing: it computes schedules and noisy digits",
    "02_ddpm_x0": "your `ddpm_x0` (the time-map U-Net, x0-prediction), then two small U-Nets with and without skips",
    "03_ddpm_eps": "your `ddpm_eps` (the eps U-Net), then small networks that compare losses and architectures",
    "04_noisy_classifier": "your `noisy_classifier` (the noise-aware CNN) and a clean classifier beside it",
    "05_classifier_guidance": "nothing new: it guides your eps model with your classifier (or the shipped ones)",
    "06_classifier_free_guidance": "your `cfg_eps` (the conditional U-Net with a null label)",
    "07_guidance_explorer": "nothing: it samples the models of the notebooks before it",
}


def notebook_names() -> list[str]:
    from .notebooks import sources

    return [py.stem for py in sources()]


def training_minutes_in(name: str) -> float | None:
    """The live training budget a notebook states (``TRAIN_MINUTES = cu.training_minutes(m)``), or None."""
    found = re.search(r"training_minutes\(([0-9.]+)\)", (ROOT / "solutions" / f"{name}.py").read_text())
    return float(found.group(1)) if found else None


def run_facts(executed: Path) -> dict:
    """When, where and how ``make course`` ran the notebooks (its run.json), and each notebook's seconds."""
    run_file, timings_file = Path(executed) / "run.json", Path(executed) / "timings.json"
    if not run_file.exists() or not timings_file.exists():
        raise FileNotFoundError(f"no executed notebooks in {executed} (run.json and timings.json): run "
                                f"`make course` first, or pass --executed where it wrote them")
    run = json.loads(run_file.read_text())
    run["seconds"] = {row["notebook"]: row["seconds"] for row in json.loads(timings_file.read_text())}
    return run


def header_cell(name: str, run: dict) -> str:
    """The markdown put above a notebook's page: the downloads, how long it ran and what it trains."""
    if name not in run["seconds"]:
        raise ValueError(f"the run of `make course` in hand has no timing for {name}: run it again")
    minutes = training_minutes_in(name)
    budget = f" (its live training budget: {minutes:g} min)" if minutes else ""
    mode = ("in the tests' fast mode (budgets of seconds: the figures are not a learner's)" if run["fast"]
            else "as a learner runs it")
    return (f"Download: {{download}}`the student notebook <../downloads/student/{name}.ipynb>` (with the "
            f"exercises) or {{download}}`the solution <../downloads/solution/{name}.ipynb>`.\n\n"
            f"This page is the solution notebook executed by `make course` {mode}, on a machine reporting "
            f"{run['machine']}; the run finished {run['finished']}, and this notebook took "
            f"{run['seconds'][name]:.0f} s. It trains "
            f"{WHAT_IT_TRAINS[name]}{budget}.")


def stage_notebooks(executed: Path, src: Path, run: dict) -> None:
    """Copy the executed notebooks into the site's sources, each with its header cell and alt text for its
    figures, and the student and solution notebooks as downloads."""
    import nbformat

    for name in notebook_names():
        path = Path(executed) / "notebooks" / f"{name}.ipynb"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: `make course` writes every notebook there")
        nb = nbformat.read(path, as_version=4)
        nb.cells.insert(1, nbformat.v4.new_markdown_cell(header_cell(name, run)))
        describe_figures(nb)
        write_text_atomic(src / "notebooks" / f"{name}.ipynb", nbformat.writes(nb))
        for kind, folder in (("student", ROOT / "notebooks"), ("solution", ROOT / "solutions")):
            (src / "downloads" / kind).mkdir(parents=True, exist_ok=True)
            shutil.copy(folder / f"{name}.ipynb", src / "downloads" / kind / f"{name}.ipynb")


def describe_figures(nb) -> None:
    """Give every figure a notebook shows an alt text (myst-nb reads it from the cell's metadata, one for the
    cell's figures): each figure's own words (its title and panels, which the package puts in the output's
    metadata as the notebook runs: :func:`~course_utils.plotting.describe_figures_in_notebooks`), then the
    section it belongs to, from its heading. A figure with no words of its own (an executed copy made
    without the package's hook) is described by its section and the cell's first comment."""
    heading = "the notebook"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found = re.findall(r"^#+\s+(.+)$", cell.source, flags=re.M)
            heading = found[-1].strip() if found else heading
            continue
        figures = [out for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
        if not figures:
            continue
        own = [out.get("metadata", {}).get("image/png", {}).get("alt", "") for out in figures]
        words = "; ".join(dict.fromkeys(alt for alt in own if alt))   # each once, in order
        if words:
            about = f"{words} (from the section '{heading}')"
        else:
            first = next((ln.strip("# ").strip() for ln in cell.source.splitlines() if ln.startswith("#")), "")
            about = f"Figure for '{heading}'" + (f": {first}" if first else "")
        cell.metadata.setdefault("mystnb", {}).setdefault("image", {})["alt"] = about


def explorer_assets(out: Path, digits, steps: int, cache_folder: Path | None, report: dict) -> dict:
    """Write the explorer's grids (PNG, one per method x digit x sweep scale, from the explorer's cache or
    computed by its sampler) and each method's curve from the quality report into ``out``; return the index
    the page's script reads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm

    from .evaluation import METHODS, plot_curves
    from .widgets import N_SAMPLES, SWEEP_SCALES, SampleCache, Setting, grid_png, load_models, result_for

    models = load_models("cpu")
    cache = SampleCache(cache_folder)
    index = {"digits": list(digits), "seed": EXPLORER_SEED, "steps": steps, "n": N_SAMPLES,
             "curve_n": report["n"], "curve_seeds": report["seeds"], "methods": {}}
    settings = [Setting(method=m, digit=d, scale=float(s), seed=EXPLORER_SEED, steps=steps)
                for m in METHODS for d in digits for s in SWEEP_SCALES[m]]
    grids = {m: {} for m in METHODS}
    for setting in tqdm(settings, desc="explorer grids (cached ones are read)", disable=None):   # a bar on a terminal
        r = result_for(setting, models, cache)
        png = f"{setting.method}/d{setting.digit}_s{setting.scale:g}.png"
        atomic_write(out / png, lambda tmp, r=r: tmp.write_bytes(grid_png(r["images"])))
        grids[setting.method][f"{setting.digit}_{setting.scale:g}"] = {
            "png": png, "accuracy": round(r["accuracy"], 4), "diversity": round(r["diversity"], 2)}
    for method, label in METHODS.items():
        rows = report["sweeps"][method]
        fig = plot_curves({label: rows}, report["real"], ("accuracy", "frechet", "recall", "diversity"))
        fig.suptitle(f"{label}: {report['n']} samples a point (all digits), {report['steps']} steps, "
                     f"mean +- sd over seeds {report['seeds']}", fontsize=9)
        fig.tight_layout()
        atomic_write(out / f"{method}/curve.png", lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=72))
        plt.close(fig)
        index["methods"][method] = {
            "label": label, "scales": [float(s) for s in SWEEP_SCALES[method]], "grids": grids[method],
            "curve": f"{method}/curve.png",
            "curve_rows": [{k: round(r[k], 4) for k in ("scale", "accuracy", "frechet", "recall")} for r in rows]}
    return index


def mathjax_script() -> Path:
    """MathJax 3's TeX-to-SVG script, one self-contained file (the copy the package sphinx-mathjax-offline
    ships): equations render with no network, and no web font that a page opened from a file would be refused."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("sphinx-mathjax-offline")
        path = Path(dist.locate_file("sphinx-mathjax-offline/static/mathjax/tex-svg.js"))
    except PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise FileNotFoundError("the website needs MathJax from the package sphinx-mathjax-offline: "
                                "pip install -e '.[dev]' (make setup) installs it")
    return path


def build_site(executed: Path, out: Path, digits=tuple(range(10)), steps: int = EXPLORER_STEPS,
               cache_folder: Path | None = None) -> Path:
    """Build the website into ``out`` from the notebooks ``make course`` executed into ``executed``; return
    the path of its home page. Sphinx's warnings are printed and make the build fail."""
    run = run_facts(executed)
    staging = Path(out).with_name(Path(out).name + "-src")
    if staging.exists():
        shutil.rmtree(staging)
    # the pages as in the checkout (site/), with the one figure of docs/ they show beside them, so that a page's
    # link to ../docs/quality.png is right both in the checkout and here
    src = staging / "site"
    shutil.copytree(SITE, src)
    shutil.copy(ROOT / "README.md", src / "README.md")
    (staging / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "quality.png", staging / "docs" / "quality.png")
    stage_notebooks(executed, src, run)
    (src / "_static" / "mathjax").mkdir(parents=True)
    shutil.copy(mathjax_script(), src / "_static" / "mathjax" / "tex-svg.js")
    report = json.loads((ROOT / "docs" / "quality.json").read_text())
    index = explorer_assets(src / "_static" / "explorer", digits, steps, cache_folder, report)
    index["made"] = {"finished": run["finished"], "machine": run["machine"], "fast": run["fast"]}
    write_text_atomic(src / "_static" / "explorer" / "data.js", "window.COURSE_EXPLORER = " + json.dumps(index) + ";\n")
    write_text_atomic(src / "made.md", made_note(run))
    if Path(out).exists():
        shutil.rmtree(out)
    warnings = src / "sphinx-warnings.txt"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-w", str(warnings), str(src),
                           str(out)], capture_output=True, text=True)
    said = (warnings.read_text() if warnings.exists() else "") + done.stderr
    if done.returncode != 0 or said.strip():
        raise RuntimeError(f"the site's build failed or warned:\n{said[-6000:]}")
    for source_map in Path(out).rglob("*.js.map"):   # the theme's source maps: only a debugger reads them
        source_map.unlink()
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    print(f"site: {out}/index.html, {size / 1e6:.1f} MB, built in {time.perf_counter() - start:.0f} s")
    return Path(out) / "index.html"


def made_note(run: dict) -> str:
    mode = ("in the tests' fast mode (training budgets of seconds, so the models and figures are not a "
            "learner's)" if run["fast"] else "as a learner runs them, with their full training budgets")
    total = sum(run["seconds"].values())
    return (f"The notebook pages are the solution notebooks executed by `make course` {mode}, on "
            f"a machine reporting {run['machine']}; the run finished {run['finished']} and took "
            f"{total / 60:.1f} min in all. "
            f"Every figure and number on them is what that run computed.\n")


def main_site(args) -> int:
    """``python -m course_utils site``: build the website."""
    from .budgets import fast_mode

    digits, steps = (FAST_DIGITS, FAST_STEPS) if fast_mode() else (tuple(range(10)), EXPLORER_STEPS)
    build_site(args.executed, args.out, digits=digits, steps=steps, cache_folder=args.cache)
    return 0
