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
    """Run the quality report; write report.json, report.md and report.png under --out."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    from .evaluation import plot_report, quality_report, report_markdown

    report = quality_report(n_per_class=args.n_per_class, steps=args.steps, device=args.device)
    text = report_markdown(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    (args.out / "report.md").write_text(text)
    save_figure(plot_report(report), args.out / "report.png")
    if args.update_manifest:
        update_manifest_quality(report)
    return 0


def update_manifest_quality(report: dict) -> None:
    """Write the measured figures into each manifest entry's "quality"."""
    from .pretrained import read_info, write_info

    best = {m: max(rows, key=lambda r: r["accuracy"]) for m, rows in report["sweeps"].items()}
    at_t = {r["t"]: round(r["noisy_classifier"], 4) for r in report["accuracy_vs_t"]}
    quality = {
        "evaluator": {"test_accuracy": round(report["evaluator_test_accuracy"], 4)},
        "ddpm_eps": {k: round(v["frechet"], 3) for k, v in report["unguided"].items() if k.startswith("ddpm_eps")},
        "ddpm_x0": {k: round(v["frechet"], 3) for k, v in report["unguided"].items() if k.startswith("ddpm_x0")},
        "noisy_classifier": {"accuracy_at_t": at_t, **{f"best {m}": best[m] for m in best if m.startswith("classifier")}},
        "cfg_eps": {"best cfg-ddim": best["cfg-ddim"]},
    }
    for name, q in quality.items():
        info = read_info(name)
        info["quality"] = {**q, "frechet_floor": round(report["floor"], 3), "n_samples": report["n"]}
        write_info(name, info)


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
    train.add_argument("names", nargs="+", metavar="NAME", help="ddpm_x0, ddpm_eps, noisy_classifier, cfg_eps, evaluator")
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
    ev.add_argument("--n-per-class", type=int, default=20)
    ev.add_argument("--steps", type=int, default=50, help="DDIM steps")
    ev.add_argument("--device", default=None)
    ev.add_argument("--out", type=Path, default=Path("build") / "quality")
    ev.add_argument("--update-manifest", action="store_true", help="write the measured quality into the manifest")
    sub.add_parser("manifest", help="list the shipped weights")
    args = parser.parse_args(argv)
    if args.command == "train":
        from .pretrained import WEIGHTS_DIR
        from .recipes import main_train

        args.weights_dir = args.weights_dir or str(WEIGHTS_DIR)
        return main_train(args)
    if args.command == "evaluate":
        return main_evaluate(args)
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
