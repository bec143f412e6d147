"""One change at a time to a quick recipe: what each knob buys a live network in the same CPU seconds.

    python benchmarks/bench_recipe.py ddpm_x0 --seconds 150 [--seed 0] [--only base half-batch ...] [--guided]

Each variant is the network's quick recipe (course_utils.recipes.QUICK_RECIPES) with one field changed; it
trains a fresh network from the same seed for ``--seconds`` of wall time with the recipe's own loss, one-cycle
learning rate and EMA (as ``python -m course_utils train NAME --quick``, in this process, without checkpoints).
Then 100 unguided samples, DDIM-50 and the respaced DDPM-100 chain from the same noises, judged in the
evaluator's features: the realistic fraction (evaluation.realistic_fraction) and the Frechet distance to the
1,000 held-out digits, beside the same figures for 100 real training digits (the reference of the same size).
With ``--guided`` (an eps network), also what notebook 5 asks of it: the evaluator's accuracy on classifier-guided
DDIM-25 samples (the eps shift, eta 0, with the shipped noisy classifier) at s = 20, 40 and 80, 100 samples
(10 of each digit) from each of two seeds, their mean.

  base          the quick recipe as it is
  half-batch    half the batch (twice the optimiser steps for about the same images a second on a CPU)
  double-batch  twice the batch (half the optimiser steps)
  lr-x2         twice the peak learning rate
  ema-0.99      EMA decay 0.99 instead of the recipe's (an average over about 100 steps)
  narrow        channels halved (8, 16, 16): about 2.6 times the steps
  min-snr-5     t drawn by min-SNR-5 (training.min_snr_timesteps) for the recipe's prediction
  uniform-t     t drawn uniformly (no min-SNR weighting)

Prints the processor first: compare rows of one run, on one machine, with nothing else running.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from course_utils import NoiseSchedule, load_mnist, load_pretrained  # noqa: E402
from course_utils.cpu import cpu_summary  # noqa: E402
from course_utils.evaluation import evaluator_outputs, generate, judge  # noqa: E402
from course_utils.fitting import fit  # noqa: E402
from course_utils.pretrained import Pretrained  # noqa: E402
from course_utils.recipes import QUICK_RECIPES, lr_shape, network_ema_optimizer, recipe_loss  # noqa: E402

from unguided_table import print_header, print_row  # noqa: E402  (beside this script)

VARIANTS = {
    "base": lambda r: {},
    "half-batch": lambda r: {"batch_size": r.batch_size // 2},
    "double-batch": lambda r: {"batch_size": 2 * r.batch_size},
    "lr-x2": lambda r: {"lr": 2 * r.lr},
    "ema-0.99": lambda r: {"ema_decay": 0.99},
    "narrow": lambda r: {"kwargs": {**r.kwargs, "channels": [c // 2 for c in r.kwargs["channels"]]}},
    "min-snr-5": lambda r: {"min_snr_gamma": 5.0},
    "uniform-t": lambda r: {"min_snr_gamma": None},
}
GUIDED_SCALES = (20.0, 40.0, 80.0)
DENOISERS = [name for name, r in QUICK_RECIPES.items() if r.objective in ("eps", "x0", "v") and not r.conditional]


def train(r, seconds: float, seed: int, data) -> tuple[torch.nn.Module, int]:
    """A fresh network of recipe ``r`` trained for ``seconds`` on the CPU; (its EMA network, steps)."""
    torch.manual_seed(seed)
    model, ema, optimizer = network_ema_optimizer(r, torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    loss_fn = recipe_loss(r, NoiseSchedule(**r.schedule), generator)
    losses = fit(model, loss_fn, (data.images, data.labels), minutes=seconds / 60, batch_size=r.batch_size,
                 optimizer=optimizer, lr_shape=lr_shape(r), ema=ema, device="cpu", generator=generator,
                 progress=False)
    return (ema.model if ema is not None else model).eval(), len(losses)


def guided_accuracy(net, schedule, classifier, evaluator) -> list[float]:
    """Notebook 5's measure of an eps network: the evaluator's accuracy on classifier-guided DDIM-25 samples
    (eta 0) at each of GUIDED_SCALES, the mean over 100 samples (10 of each digit) from seeds 12 and 13."""
    models = {"ddpm_eps": Pretrained(net, schedule, {"prediction": "eps"}), "noisy_classifier": classifier}
    y = torch.arange(10).repeat_interleave(10)
    return [sum(judge(evaluator, generate("classifier-ddim", models, y, s, steps=25, device="cpu",
                                          generator=torch.Generator().manual_seed(seed)), y)["accuracy"]
                for seed in (12, 13)) / 2 for s in GUIDED_SCALES]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("network", choices=DENOISERS)
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--guided", action="store_true", help="also the classifier-guided DDIM-25 accuracy")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    recipe = QUICK_RECIPES[args.network]
    if args.guided and recipe.objective != "eps":
        parser.error(f"--guided needs an eps network; {args.network} predicts {recipe.objective}")
    print(f"processor: {cpu_summary()}; {args.network}'s quick recipe, {args.seconds:g} s of training each, "
          f"seed {args.seed}")
    evaluator = load_pretrained("evaluator", device="cpu").model
    train_data, test = load_mnist(verbose=False), load_mnist(train=False, verbose=False)
    test_feats = evaluator_outputs(evaluator, test.images)[1]
    chains = (("ddim", 50), ("ddpm", 100))
    print_header(evaluator, train_data.images, test_feats, "variant", chains)
    classifier = load_pretrained("noisy_classifier", device="cpu") if args.guided else None
    schedule = NoiseSchedule(**recipe.schedule)
    for variant in args.only:
        start = time.perf_counter()
        r = dataclasses.replace(recipe, **VARIANTS[variant](recipe))
        net, steps = train(r, args.seconds, args.seed, train_data)
        print_row(variant, steps, net, schedule, r.objective, evaluator, test_feats, start, chains)
        if args.guided:
            accuracies = guided_accuracy(net, schedule, classifier, evaluator)
            print(f"    guided DDIM-25 accuracy at s = {', '.join(f'{s:g}' for s in GUIDED_SCALES)}: "
                  + ", ".join(f"{a:.1%}" for a in accuracies), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
