"""Which objective learns fastest per CPU second: the live networks trained for the same time, one change at a time.

    python benchmarks/bench_objectives.py --seconds 150 [--batch 32] [--seed 0] [--only NAME ...] [--cfg]

Unconditional (the live eps U-Net of notebook 3, EpsUNet [16, 32, 32], embedding 64): each objective trains a
fresh network from the same seed for ``--seconds`` of wall time, with the quick recipe's peak learning rate,
one-cycle shape and EMA, at one batch size; only the objective differs. Then 100 unguided samples, DDIM-25 and
the respaced DDPM-100 chain from the same noises, judged in the evaluator's features: the realistic fraction
(evaluation.realistic_fraction) and the Frechet distance to the 1,000 held-out digits, beside the same figures
for 100 real training digits (the reference of the same size).

  eps        eps-MSE with t uniform (notebook 3's loss as the seeds have it)
  eps-minsnr eps-MSE with t drawn by min-SNR-5 (training.min_snr_timesteps; notebook 3's live model)
  v          v-MSE with t uniform (the output read as v)
  x0         x0-MSE with t uniform (the same network's output read as x0)

``--cfg``: the class-conditional network of notebook 6 (the same U-Net with 10 labels, conditioning dropout 0.1),
eps against v, judged by the evaluator's accuracy on 100 DDIM-25 samples (10 of each digit) at CFG scales
1, 2, 3 and 5. Prints the processor first: compare rows of one run, on one machine, with nothing else running.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from course_utils import EMA, EpsUNet, NoiseSchedule, load_mnist, load_pretrained  # noqa: E402
from course_utils.core.sampling import ddim_sample  # noqa: E402
from course_utils.core.training import denoiser_loss  # noqa: E402
from course_utils.cpu import cpu_summary  # noqa: E402
from course_utils.evaluation import evaluator_outputs, judge  # noqa: E402
from course_utils.fitting import fit  # noqa: E402
from course_utils.recipes import lr_shape, recipe_for  # noqa: E402

from unguided_table import print_header, print_row  # noqa: E402  (beside this script)

OBJECTIVES = {"eps": ("eps", None), "eps-minsnr": ("eps", 5.0), "v": ("v", None), "x0": ("x0", None)}
CFG_SCALES = [1.0, 2.0, 3.0, 5.0]


def train(objective: str, conditional: bool, seconds: float, batch: int, seed: int, data):
    """A fresh network of the quick recipe trained for ``seconds`` with ``objective``; (EMA network, steps)."""
    prediction, gamma = OBJECTIVES[objective]
    r = recipe_for("cfg_eps" if conditional else "ddpm_eps", quick=True)
    torch.manual_seed(seed)
    model = EpsUNet(channels=(16, 32, 32), emb_dim=64, num_classes=10 if conditional else None)
    ema, schedule, g = EMA(model, r.ema_decay), NoiseSchedule(), torch.Generator().manual_seed(seed)

    def loss_fn(m, x0, y):
        return denoiser_loss(m, schedule, x0, y if conditional else None, prediction=prediction, cond_drop=0.1,
                             min_snr_gamma=gamma, generator=g)

    optimizer = torch.optim.AdamW(model.parameters(), lr=r.lr)
    losses = fit(model, loss_fn, (data.images, data.labels), minutes=seconds / 60, batch_size=batch,
                 optimizer=optimizer, lr_shape=lr_shape(r), ema=ema, device="cpu", generator=g, progress=False)
    return ema.model.eval(), prediction, len(losses), schedule


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=list(OBJECTIVES), default=list(OBJECTIVES))
    parser.add_argument("--cfg", action="store_true", help="the conditional network, eps against v")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    print(f"processor: {cpu_summary()}; {args.seconds:g} s of training each, batch {args.batch}, seed {args.seed}")
    evaluator = load_pretrained("evaluator", device="cpu").model
    train_data, test = load_mnist(verbose=False), load_mnist(train=False, verbose=False)
    test_feats = evaluator_outputs(evaluator, test.images)[1]
    if args.cfg:
        y = torch.arange(10).repeat_interleave(10)
        print("| objective | steps | " + " | ".join(f"s = {s:g}" for s in CFG_SCALES) + " |")
        print("| --- | ---: |" + " ---: |" * len(CFG_SCALES))
        for objective in [o for o in ("eps", "v") if o in args.only]:
            net, prediction, steps, schedule = train(objective, True, args.seconds, args.batch, args.seed, train_data)
            row = [judge(evaluator, ddim_sample(net, schedule, (100, 1, 32, 32), prediction=prediction, y=y,
                                                cfg_scale=s, steps=25, progress=False,
                                                generator=torch.Generator().manual_seed(5)), y)["accuracy"]
                   for s in CFG_SCALES]
            print(f"| {objective} | {steps:,} | " + " | ".join(f"{a:.0%}" for a in row) + " |", flush=True)
        return 0
    print_header(evaluator, train_data.images, test_feats, "objective")
    for objective in args.only:
        start = time.perf_counter()
        net, prediction, steps, schedule = train(objective, False, args.seconds, args.batch, args.seed, train_data)
        print_row(objective, steps, net, schedule, prediction, evaluator, test_feats, start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
