"""Command line: ``python -m course_utils COMMAND``.

    course    run the course's main job and write figures under --out (fast with COURSE_FAST=1)
    train     train shipped networks by their recipes (resumable), writing weights and manifest
    evaluate  measure the shipped networks with the evaluator and print the quality table
    manifest  list the shipped weights and their manifest entries
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def fast_mode() -> bool:
    """True when COURSE_FAST is set (the tests and `make course` set it): train briefly."""
    return os.environ.get("COURSE_FAST", "") not in ("", "0")


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure atomically (to a temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def run_course(out: Path) -> list[Path]:
    """The forward process, a briefly trained denoiser and guidance on the 2-D toy, as figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from . import (EpsUNet, GaussianMixture2D, NoiseSchedule, ddim_sample, ddpm_sample, load_mnist,
                   pick_device, plot_losses, plot_schedules, seed_everything, show_images, train_denoiser)

    figures = out / "figures"
    written = []
    g = seed_everything(0)
    linear, cosine = NoiseSchedule(kind="linear"), NoiseSchedule(kind="cosine")
    plot_schedules(linear, cosine)
    written.append(save_figure(plt.gcf(), figures / "schedules.png"))
    plt.close("all")

    data = load_mnist()
    x0 = data.images[:8]
    ts = [0, 50, 100, 250, 500, 750, 999]
    fig, axes = plt.subplots(1, len(ts), figsize=(2 * len(ts), 2.4))
    for ax, t in zip(axes, ts):
        show_images(linear.q_sample(x0, t, generator=g), nrow=2, ax=ax, title=f"t = {t}")
    written.append(save_figure(fig, figures / "noising.png"))
    plt.close("all")

    steps = 30 if fast_mode() else 3000
    device = pick_device()
    model = EpsUNet()
    losses = train_denoiser(model, linear, data.images, steps=steps, batch_size=128, device=device, generator=g)
    plot_losses(losses, window=min(50, max(1, steps // 3)), title=f"eps-MSE, {steps} steps")
    written.append(save_figure(plt.gcf(), figures / "loss.png"))
    plt.close("all")
    samples = ddim_sample(model, linear, (16, 1, 32, 32), steps=50, generator=g, device=device)
    assert samples.shape == (16, 1, 32, 32) and bool(samples.abs().max() <= 1.0001)
    show_images(samples, nrow=4, title=f"DDIM-50 after {steps} training steps")
    written.append(save_figure(plt.gcf(), figures / "samples.png"))
    plt.close("all")

    toy = GaussianMixture2D(weights=[0.5, 0.3, 0.2])
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4), sharex=True, sharey=True)
    for ax, scale in zip(axes, [0.0, 1.0, 3.0, 10.0]):
        pts = ddpm_sample(toy.eps_model(linear), linear, (2000, 2), y=2, classifier=toy.classifier(linear),
                          classifier_scale=scale, generator=g, progress=False)
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4)
        ax.scatter(toy.means[:, 0], toy.means[:, 1], c="red", marker="x")
        ax.set_title(f"classifier scale {scale:g}, target class 2")
    written.append(save_figure(fig, figures / "toy_guidance.png"))
    plt.close("all")
    return written


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
    course = sub.add_parser("course", help="run the course's main job and write figures")
    course.add_argument("--out", type=Path, default=Path("build"))
    train = sub.add_parser("train", help="train shipped networks by their recipes")
    train.add_argument("names", nargs="+", metavar="NAME", help="ddpm_x0, ddpm_eps, noisy_classifier, cfg_eps, evaluator")
    train.add_argument("--steps", type=int, default=None, help="override the recipe's number of steps")
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
    if args.command == "course":
        start = time.perf_counter()
        written = run_course(args.out)
        for path in written:
            print(f"wrote {path}")
        mode = "fast" if fast_mode() else "full"
        print(f"course ({mode} mode) finished in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
