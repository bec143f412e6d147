"""Command line: ``python -m course_utils COMMAND``.

    course    execute the solution notebooks headlessly, as a learner runs them, and write them and their figures
              under --out (COURSE_FAST=1 shrinks the training budgets, as in the tests)
    notebooks regenerate solutions/*.ipynb and the student notebooks/ from solutions/*.py
    nbgrader-course  lay out an nbgrader course directory: its config and one assignment per notebook
    train     train shipped networks by their recipes (resumable), writing weights and manifest
    evaluate  measure the shipped networks with the evaluator and print the quality table
    manifest  list the shipped weights and their manifest entries
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .budgets import fast_mode


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure atomically (to a temporary name, then rename)."""
    from .files import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix[1:], dpi=110, bbox_inches="tight"))
    return path


def main_evaluate(args) -> int:
    """Run the quality report; write report.json, report.md and report.png under --out. Measured rows are kept in
    --rows (default --out/rows.json) as they come, so an interrupted run resumes, on this machine or, with the file
    carried along, on another."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    from .evaluation import plot_report, quality_report, report_markdown
    from .files import write_text_atomic

    report = quality_report(n_per_class=args.n_per_class, steps=args.steps, seeds=args.seeds, device=args.device,
                            partial=args.rows or args.out / "rows.json", ddpm_1000=not args.no_ddpm_1000)
    text = report_markdown(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "report.json", json.dumps(report, indent=2))
    write_text_atomic(args.out / "report.md", text)
    save_figure(plot_report(report), args.out / "report.png")
    if args.update_manifest:
        update_manifest_quality(report)
    if args.update_docs:
        publish_report(args.out, Path(__file__).resolve().parent.parent)
    return 0


QUALITY_PAGE = Path("site") / "quality.md"   # the site's page on quality, which states the report
REPORT_MARKERS = ("<!-- the report of python -m course_utils evaluate (docs/quality.md): -->",
                  "<!-- end of the report -->")


def publish_report(out: Path, root: Path) -> None:
    """Copy the report's files from ``out`` into ``root``/docs (quality.json, .md, .png) and put quality.md
    between the two markers of the quality page (site/quality.md), so that the page states what the report
    measured, word for word."""
    import shutil

    from .files import atomic_write, write_text_atomic

    page = root / QUALITY_PAGE
    text = page.read_text()
    begin, end = (text.find(marker) for marker in REPORT_MARKERS)
    if begin < 0 or end < begin:
        raise ValueError(f"{page} has no place for the report: it needs the lines {REPORT_MARKERS[0]!r} and "
                         f"{REPORT_MARKERS[1]!r}, in that order")
    for kind in ("json", "md", "png"):
        source = out / f"report.{kind}"
        atomic_write(root / "docs" / f"quality.{kind}", lambda tmp, source=source: shutil.copyfile(source, tmp))
    report = (out / "report.md").read_text().strip()
    write_text_atomic(page, text[:begin + len(REPORT_MARKERS[0])] + "\n\n" + report + "\n\n" + text[end:])


def _rounded(row: dict | None) -> dict | None:
    return None if row is None else {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}


def update_manifest_quality(report: dict, weights_dir=None) -> None:
    """Write the measured figures into each manifest entry's "quality": for the unguided models their rows, for the
    guidance networks each method's whole curve ("sweeps") and the two stated choices on it (lowest Frechet,
    smallest scale reaching the target accuracy), all beside the real-vs-real row of the same size."""
    from .pretrained import WEIGHTS_DIR, read_info, write_info

    weights_dir = WEIGHTS_DIR if weights_dir is None else weights_dir
    choices = {m: {k: _rounded(v) for k, v in c.items()} for m, c in report["choices"].items()}
    sweeps = {m: [_rounded(r) for r in rows] for m, rows in report["sweeps"].items()}
    at_t = {r["t"]: round(r["noisy_classifier"], 4) for r in report["accuracy_vs_t"]}

    def guided(methods):
        return {**{m: choices[m] for m in methods}, "sweeps": {m: sweeps[m] for m in methods}}

    quality = {
        "evaluator": {"test_accuracy": round(report["evaluator_test_accuracy"], 4)},
        "ddpm_eps": {k: _rounded(v) for k, v in report["unguided"].items() if k.startswith("ddpm_eps")},
        "ddpm_x0": {k: _rounded(v) for k, v in report["unguided"].items() if k.startswith("ddpm_x0")},
        "noisy_classifier": {"accuracy_at_t": at_t, **guided([m for m in choices if m.startswith("classifier")])},
        "cfg_eps": guided(["cfg-ddim"]),
    }
    for name, q in quality.items():
        info = read_info(name, weights_dir)
        info["quality"] = {**q, "real_vs_real": _rounded(report["real"]), "n_samples": report["n"],
                           "steps": report["steps"], "seeds": report["seeds"],
                           "target_accuracy": report["target_accuracy"]}
        write_info(name, info, weights_dir)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    course = sub.add_parser("course", help="execute the solution notebooks and write them and their figures")
    course.add_argument("--out", type=Path, default=Path("build"))
    course.add_argument("names", nargs="*", help="only these notebooks (e.g. 01_forward_noising)")
    sub.add_parser("notebooks", help="regenerate the .ipynb files from solutions/*.py")
    grader = sub.add_parser("nbgrader-course", help="lay out an nbgrader course directory for the notebooks")
    grader.add_argument("directory", type=Path)
    grader.add_argument("--force", action="store_true", help="overwrite files there with other contents")
    train = sub.add_parser("train", help="train shipped networks by their recipes")
    train.add_argument(
        "names", nargs="+", metavar="NAME", help="ddpm_x0, ddpm_eps, noisy_classifier, cfg_eps, evaluator"
    )
    train.add_argument("--quick", action="store_true", help="the recipe sized for a few CPU minutes")
    train.add_argument("--steps", type=int, default=None, help="override the recipe's number of steps")
    train.add_argument("--minutes", type=float, default=None,
                       help="a time budget; with --steps, training stops at whichever comes first")
    train.add_argument("--device", default=None)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--weights-dir", default=None, help="default: inside the package")
    train.add_argument("--checkpoint-dir", default="checkpoints")
    train.add_argument("--checkpoint-every", type=int, default=1000)
    ev = sub.add_parser("evaluate", help="measure the shipped networks and print the quality table")
    ev.add_argument("--n-per-class", type=int, default=100, help="samples per digit (and real digits in the reference)")
    ev.add_argument("--steps", type=int, default=25, help="sampler steps, the same for every method")
    ev.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed: mean and sd")
    ev.add_argument("--no-ddpm-1000", action="store_true", help="skip the unguided 1,000-step DDPM rows")
    ev.add_argument("--device", default=None)
    ev.add_argument("--out", type=Path, default=Path("build") / "quality")
    ev.add_argument("--rows", type=Path, default=None,
                    help="the measured rows, read to resume and written after each row (default: OUT/rows.json)")
    ev.add_argument("--update-manifest", action="store_true", help="write the measured quality into the manifest")
    ev.add_argument("--update-docs", action="store_true",
                    help="copy the report into docs/ and the site's quality page (in a checkout of the course)")
    sub.add_parser("manifest", help="list the shipped weights")
    site = sub.add_parser("site", help="build the website from the notebooks `make course` executed")
    site.add_argument("--executed", type=Path, default=Path("build"), help="where `make course` wrote them")
    site.add_argument("--out", type=Path, default=Path("build") / "site")
    site.add_argument("--cache", type=Path, default=Path("build") / "explorer-cache",
                      help="the explorer's cache of grids, kept between builds")
    args = parser.parse_args(argv)
    if args.command == "train":
        from .pretrained import WEIGHTS_DIR
        from .recipes import main_train

        args.weights_dir = args.weights_dir or str(WEIGHTS_DIR)
        return main_train(args)
    if args.command == "evaluate":
        return main_evaluate(args)
    if args.command == "site":
        from .site import main_site

        return main_site(args)
    if args.command == "manifest":
        from .pretrained import manifest

        for name, info in manifest().items():
            print(f"{name:17s} {info['bytes'] / 1e6:5.2f} MB  {info['steps']:6d} steps  {info['data']}  "
                  f"sha256 {info['sha256'][:12]}  quality {info.get('quality')}")
        return 0
    if args.command == "notebooks":
        from .notebooks import generate

        for path in generate():
            print(f"wrote {path}")
        return 0
    if args.command == "nbgrader-course":
        from .notebooks import nbgrader_course

        for path in nbgrader_course(args.directory, force=args.force):
            print(f"wrote {path}")
        return 0
    if args.command == "course":
        from .notebooks import execute_solutions

        start = time.perf_counter()
        rows = execute_solutions(args.out, names=args.names or None)
        mode = "fast mode: budgets shrunk by COURSE_FAST" if fast_mode() else "learner mode"
        print(f"course ({mode}): {len(rows)} notebooks, {sum(r['figures'] for r in rows)} figures "
              f"under {args.out}, {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
