"""The table bench_objectives.py and bench_recipe.py print: unguided samples of networks trained for the same
time, judged in the evaluator's features beside real digits of the same number."""
from __future__ import annotations

import time

import torch

from course_utils.evaluation import evaluator_outputs, frechet_distance, realistic_fraction, unguided_quality

CHAINS = (("ddim", 25), ("ddpm", 100))   # DDIM-25 and the respaced DDPM-100 chain, from the same noises


def print_header(evaluator, train_images: torch.Tensor, test_feats: torch.Tensor, first: str, chains=CHAINS) -> None:
    """The reference (100 real training digits against the held-out ones) and the table's header."""
    real = train_images[torch.randperm(len(train_images), generator=torch.Generator().manual_seed(0))[:100]]
    real_feats = evaluator_outputs(evaluator, real)[1]
    print(f"100 real training digits: {realistic_fraction(real_feats, test_feats):.0%} realistic, "
          f"Frechet {frechet_distance(real_feats, test_feats):.0f} (the reference of the same size)")
    print(f"| {first} | steps | " + " | ".join(f"{s.upper()}-{n}: realistic, Frechet" for s, n in chains) + " |")
    print("| --- | ---: |" + " --- |" * len(chains))


def print_row(label: str, steps: int, net, schedule, prediction: str, evaluator, test_feats: torch.Tensor,
              started: float, chains=CHAINS) -> None:
    """One row: 100 unguided samples of ``net`` by each chain (evaluation.unguided_quality, seed 5)."""
    cells = ["{:.0%}, {:.0f}".format(*unguided_quality(net, schedule, prediction, evaluator, test_feats,
                                                       sampler=sampler, steps=n, seed=5)) for sampler, n in chains]
    print(f"| {label} | {steps:,} | " + " | ".join(cells) + f" |  ({time.perf_counter() - started:.0f} s)",
          flush=True)
