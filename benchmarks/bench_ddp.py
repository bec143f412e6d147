"""One process against several: the training command alone and under torchrun, on this machine's CPU.

    python benchmarks/bench_ddp.py --name ddpm_eps --steps 100 --processes 1 2

For each process count N, runs ``python -m course_utils train NAME --steps S`` (the full recipe, its global
batch split over the N processes; N = 1 without torchrun) with each process given cores / N threads, and
reads from the manifest the steps and the seconds spent training (start-up and data loading excluded).
Prints steps a second, images a second and the speed-up over one process. Under torchrun the processes
talk over loopback (gloo).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from course_utils.recipes import recipe_for  # noqa: E402


def run(name: str, steps: int, processes: int, quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        args = ["-m", "course_utils", "train", name, "--steps", str(steps), "--device", "cpu",
                "--weights-dir", f"{tmp}/w", "--checkpoint-dir", f"{tmp}/ckpt", "--checkpoint-every", str(10 * steps)]
        args += ["--quick"] if quick else []
        if processes > 1:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc-per-node={processes}",
                   "--rdzv-backend=c10d", "--rdzv-endpoint=localhost:0", *args]
        else:
            cmd = [sys.executable, *args]
        threads = max(1, (os.cpu_count() or 1) // processes)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), COURSE_OFFLINE=os.environ.get("COURSE_OFFLINE", "1"))
        start = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - start
        if out.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
        info = json.loads(Path(f"{tmp}/w/{name}.json").read_text())
    return {"processes": processes, "threads": threads, "steps": info["steps"], "train_s": info["train_seconds"],
            "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="ddpm_eps")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="the quick recipe (its smaller network and batch)")
    args = parser.parse_args()
    batch = recipe_for(args.name, args.quick).batch_size
    print(f"{args.name} ({'quick' if args.quick else 'full'} recipe), global batch {batch}, {args.steps} steps, "
          f"{os.cpu_count()} cores")
    print("| processes | threads each | steps/s | images/s | training | wall (with start-up) | speed-up |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    base = None
    for n in args.processes:
        r = run(args.name, args.steps, n, args.quick)
        rate = r["steps"] / r["train_s"]
        base = base or rate
        print(f"| {n} | {r['threads']} | {rate:.2f} | {rate * batch:.0f} | {r['train_s']:.1f} s | {r['wall_s']:.1f} s "
              f"| {rate / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
