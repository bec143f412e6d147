"""Quality against minutes for the quick recipes (the networks the notebooks train live).

    python benchmarks/bench_quick.py --minutes 1 2 3 5

For each budget: trains ddpm_x0, ddpm_eps, noisy_classifier and cfg_eps by their quick recipes
(``python -m course_utils train NAME --quick --minutes M``, in this process, on this
machine's CPU), then judges them with the shipped evaluator on 100 samples (10 of each
digit): classifier-free guidance (DDIM-25) and classifier guidance (DDIM-25 and the
respaced DDPM-100 chain) at their best scales, and, for 100 unguided DDIM-25 samples of the
x0 and eps models, the realistic fraction (evaluation.realistic_fraction) and the Frechet
distance beside the real-vs-real floor. Prints one table row per budget.
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
from course_utils.evaluation import evaluator_outputs, frechet_distance, generate, judge, realistic_fraction  # noqa: E402
from course_utils.recipes import train_recipe  # noqa: E402
from course_utils.core.sampling import ddim_sample  # noqa: E402

CFG_SCALES = [1.0, 2.0, 3.0, 5.0]
CG_SCALES = [2.0, 5.0, 10.0, 20.0]
NAMES = ["ddpm_x0", "ddpm_eps", "noisy_classifier", "cfg_eps"]


def best(method, models, evaluator, scales, y, **kw):
    rows = []
    for s in scales:
        x = generate(method, models, y, s, generator=torch.Generator().manual_seed(0), device="cpu", **kw)
        rows.append((judge(evaluator, x, y)["accuracy"], s))
    return max(rows), rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 2, 3, 5])
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    evaluator = load_pretrained("evaluator", device="cpu").model
    test, train = load_mnist(train=False, verbose=False), load_mnist(verbose=False)
    real = train.images[torch.randperm(len(train.images), generator=torch.Generator().manual_seed(0))[:100]]
    test_feats = evaluator_outputs(evaluator, test.images)[1]
    floor = frechet_distance(evaluator_outputs(evaluator, real)[1], test_feats)
    y = torch.arange(10).repeat_interleave(10)
    print(f"real-vs-real Frechet floor (100 training digits against the 1,000 test digits): {floor:.1f}; "
          f"realistic fraction of those 100 real digits: {realistic_fraction(evaluator_outputs(evaluator, real)[1], test_feats):.0%}")
    print("| minutes | steps x0 / eps / clf / cfg | CFG DDIM-25 best (scale) | CG DDIM-25 best (scale) | CG DDPM-100 best (scale) "
          "| unguided x0: realistic, Frechet | unguided eps: realistic, Frechet |")
    print("| ---: | --- | --- | --- | --- | --- | --- |")
    for minutes in args.minutes:
        with tempfile.TemporaryDirectory() as folder:
            steps = {}
            for name in NAMES:
                start = time.perf_counter()
                info = train_recipe(name, quick=True, minutes=minutes, device="cpu", weights_dir=Path(folder),
                                    checkpoint_dir=Path(folder), progress=False, offline=True)
                steps[name] = info["steps"]
                print(f"  {name}: {info['steps']} steps in {time.perf_counter() - start:.0f} s", flush=True)
            models = {n: load_pretrained(n, device="cpu", weights_dir=Path(folder)) for n in NAMES}
        (cfg, s_cfg), cfg_rows = best("cfg-ddim", models, evaluator, CFG_SCALES, y, steps=25)
        (cg, s_cg), cg_rows = best("classifier-ddim", models, evaluator, CG_SCALES, y, steps=25)
        (cg_p, s_cgp), cgp_rows = best("classifier-ddpm", models, evaluator, CG_SCALES, y, ddpm_steps=100)
        fd, readable = {}, {}
        for name, prediction in (("ddpm_x0", "x0"), ("ddpm_eps", "eps")):
            m = models[name]
            x = ddim_sample(m.model, m.schedule, (100, 1, 32, 32), prediction=prediction, steps=25, progress=False,
                            generator=torch.Generator().manual_seed(0))
            feats = evaluator_outputs(evaluator, x)[1]
            fd[name], readable[name] = frechet_distance(feats, test_feats), realistic_fraction(feats, test_feats)
        print(f"  CFG {cfg_rows}\n  CG-DDIM {cg_rows}\n  CG-DDPM {cgp_rows}")
        print(f"| {minutes:g} | {' / '.join(str(steps[n]) for n in NAMES)} | {cfg:.0%} ({s_cfg:g}) | {cg:.0%} ({s_cg:g}) "
              f"| {cg_p:.0%} ({s_cgp:g}) | {readable['ddpm_x0']:.0%}, {fd['ddpm_x0']:.0f} "
              f"| {readable['ddpm_eps']:.0%}, {fd['ddpm_eps']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
