"""Quality against minutes for the quick recipes (the networks the notebooks train live).

    python benchmarks/bench_quick.py --minutes 1 2 3 5 [--seed 0]
    python benchmarks/bench_quick.py --minutes default --seed 0 1 2   (each recipe's own budget, as the notebooks)

For each budget and seed: trains ddpm_x0, ddpm_eps, noisy_classifier and cfg_eps by their quick recipes
(``python -m course_utils train NAME --quick --minutes M --seed S``, in this process, on this
machine's CPU), then judges them with the shipped evaluator on 100 samples (10 of each
digit): classifier-free guidance (DDIM-25) and classifier guidance (DDIM-25 with eta 0 and 1, and the
respaced DDPM-100 chain) at their best scales, and, for 100 unguided samples of the x0 model (DDIM-25) and
of the eps model (DDIM-25 and DDPM-100), the realistic fraction (evaluation.realistic_fraction) and the Frechet
distance beside the real-vs-real floor. Prints the processor, then one table row per budget and seed.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from course_utils import load_mnist, load_pretrained  # noqa: E402
from course_utils.cpu import cpu_summary  # noqa: E402
from course_utils.evaluation import (  # noqa: E402
    evaluator_outputs,
    frechet_distance,
    generate,
    judge,
    realistic_fraction,
    unguided_quality,
)
from course_utils.recipes import train_recipe  # noqa: E402

CFG_SCALES = [1.0, 2.0, 3.0, 5.0, 8.0]   # as notebook 6 (and 0, never the best)
CG_SCALES = [10.0, 20.0, 40.0, 80.0, 160.0]   # as notebook 5 (and 0, never the best)
NAMES = ["ddpm_x0", "ddpm_eps", "noisy_classifier", "cfg_eps"]


def best(method, models, evaluator, scales, y, **kw):
    rows = []
    for s in scales:
        x = generate(method, models, y, s, generator=torch.Generator().manual_seed(0), device="cpu", **kw)
        rows.append((judge(evaluator, x, y)["accuracy"], s))
    return max(rows), rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", nargs="+", default=["1", "2", "3", "5"],
                        help="budgets in minutes, or 'default' for each recipe's own (2.5 / 2.5 / 2 / 2.5)")
    parser.add_argument("--seed", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    print(f"processor: {cpu_summary()}")
    evaluator = load_pretrained("evaluator", device="cpu").model
    test, train = load_mnist(train=False, verbose=False), load_mnist(verbose=False)
    real = train.images[torch.randperm(len(train.images), generator=torch.Generator().manual_seed(0))[:100]]
    test_feats = evaluator_outputs(evaluator, test.images)[1]
    floor = frechet_distance(evaluator_outputs(evaluator, real)[1], test_feats)
    y = torch.arange(10).repeat_interleave(10)
    print(f"real-vs-real Frechet floor (100 training digits against the 1,000 test digits): {floor:.1f}; "
          "realistic fraction of those 100 real digits: "
          f"{realistic_fraction(evaluator_outputs(evaluator, real)[1], test_feats):.0%}")
    print("| minutes | seed | steps x0 / eps / clf / cfg | CFG DDIM-25 best (scale) | CG DDIM-25 best (scale) "
          "| CG DDIM-25 eta 1 | CG DDPM-100 best (scale) | unguided x0 DDIM-25: realistic, Frechet "
          "| unguided eps DDIM-25 | unguided eps DDPM-100 |")
    print("| ---: | ---: | --- | --- | --- | --- | --- | --- | --- | --- |")
    for minutes, seed in [(m, s) for m in args.minutes for s in args.seed]:
        budget = None if minutes == "default" else float(minutes)
        with tempfile.TemporaryDirectory() as folder:
            steps = {}
            for name in NAMES:
                start = time.perf_counter()
                info = train_recipe(name, quick=True, minutes=budget, device="cpu", weights_dir=Path(folder),
                                    checkpoint_dir=Path(folder), progress=False, offline=True, seed=seed)
                steps[name] = info["steps"]
                print(f"  {name}: {info['steps']} steps in {time.perf_counter() - start:.0f} s", flush=True)
            models = {n: load_pretrained(n, device="cpu", weights_dir=Path(folder)) for n in NAMES}
        (cfg, s_cfg), cfg_rows = best("cfg-ddim", models, evaluator, CFG_SCALES, y, steps=25)
        (cg, s_cg), cg_rows = best("classifier-ddim", models, evaluator, CG_SCALES, y, steps=25)
        (cg_n, s_cgn), cgn_rows = best("classifier-ddim", models, evaluator, CG_SCALES, y, steps=25, eta=1.0)
        (cg_p, s_cgp), cgp_rows = best("classifier-ddpm", models, evaluator, CG_SCALES, y, ddpm_steps=100)
        unguided = {(name, sampler): "{:.0%}, {:.0f}".format(*unguided_quality(
                        models[name].model, models[name].schedule, models[name].prediction, evaluator, test_feats,
                        sampler=sampler, steps=chain, seed=0))
                    for name, sampler, chain in (("ddpm_x0", "ddim", 25), ("ddpm_eps", "ddim", 25),
                                                 ("ddpm_eps", "ddpm", 100))}
        print(f"  CFG {cfg_rows}\n  CG-DDIM {cg_rows}\n  CG-DDIM eta 1 {cgn_rows}\n  CG-DDPM {cgp_rows}")
        print(f"| {minutes} | {seed} | {' / '.join(str(steps[n]) for n in NAMES)} | {cfg:.0%} ({s_cfg:g}) "
              f"| {cg:.0%} ({s_cg:g}) | {cg_n:.0%} ({s_cgn:g}) | {cg_p:.0%} ({s_cgp:g}) "
              f"| {unguided['ddpm_x0', 'ddim']} | {unguided['ddpm_eps', 'ddim']} | {unguided['ddpm_eps', 'ddpm']} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
