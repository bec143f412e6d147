"""Speed on this machine, in one run: training steps, the matmul peak, and guided sampling.

    python benchmarks/bench_cpu.py [--batch 128] [--repeats 5] [--compile]
    python benchmarks/bench_cpu.py --channels 16 32 32 --emb 64 --throughput 32 64 128

Prints, for the eps U-Net (the shipped size, and with --channels 16 32 32 --emb 64 --batch 64
the size the notebooks train live): the training-step time and achieved GFLOP/s in fp32 eager,
fp32 channels_last, bf16 autocast in the default layout and bf16 autocast + channels_last
(the course trains with bf16 autocast where the CPU has bf16 units, AMX or AVX-512 BF16, and
with fp32 channels_last elsewhere: see course_utils.cpu.cpu_has_fast_bf16);
the measured matmul peak in fp32 and bf16 for comparison; and the time to draw 64
guided samples with DDIM-50 (classifier guidance and classifier-free guidance).
``--throughput B ...``: only the training step as the course trains on this CPU (bf16 autocast where it has fast
bf16 units, else fp32 channels_last), at each batch size, in ms a step and images a second.
Compare figures within one run: the machine is shared and timings drift between runs.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from course_utils import EpsUNet, NoiseSchedule, autocast_for, bf16_is_fast, count_parameters, denoiser_loss
from course_utils.cpu import cpu_summary
from course_utils.evaluation import generate
from course_utils.pretrained import load_pretrained


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN picks its kernels on the first call)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak(dtype, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / best_of(lambda: a @ b, repeats) / 1e9


def training_step(batch: int, bf16: bool, channels_last: bool, compiled: bool = False, channels=(32, 64, 64),
                  emb: int = 128):
    torch.manual_seed(0)
    model, schedule = EpsUNet(channels=tuple(channels), emb_dim=emb), NoiseSchedule()
    x0 = torch.randn(batch, 1, 32, 32)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x0 = x0.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    net = torch.compile(model) if compiled else model

    def step():
        with autocast_for("cpu", bf16):
            loss = denoiser_loss(net, schedule, x0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--channels", type=int, nargs=3, default=[32, 64, 64])
    parser.add_argument("--emb", type=int, default=128)
    parser.add_argument("--throughput", type=int, nargs="+", help="batch sizes: time only the course's training step")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, processor: {cpu_summary()}")

    size = dict(channels=args.channels, emb=args.emb)
    if args.throughput:
        bf16 = bf16_is_fast("cpu")
        for batch in args.throughput:
            _, step = training_step(batch, bf16=bf16, channels_last=not bf16, **size)
            t = best_of(step, args.repeats)
            print(f"EpsUNet {args.channels}, batch {batch:4d} ({'bf16 autocast' if bf16 else 'fp32 channels_last'}): "
                  f"{t * 1000:6.0f} ms a step, {batch / t:6.0f} images/s")
        return
    model, step = training_step(args.batch, bf16=False, channels_last=False, **size)
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    print(f"EpsUNet {args.channels}: {count_parameters(model) / 1e6:.2f}M parameters, "
          f"{flops / 1e9:.1f} GFLOP per training step at batch {args.batch} (forward + backward)")
    rows = [("fp32 eager", False, False, False), ("fp32 channels_last", False, True, False),
            ("bf16 autocast", True, False, False), ("bf16 autocast + channels_last", True, True, False)]
    if args.compile:
        rows.append(("fp32 torch.compile", False, False, True))
    base = None
    for label, bf16, channels_last, compiled in rows:
        _, step = training_step(args.batch, bf16, channels_last, compiled, **size)
        t = best_of(step, args.repeats)
        base = base or t
        print(f"  train step, {label:32s} {t * 1000:7.0f} ms  {flops / t / 1e9:6.1f} GFLOP/s  ({base / t:.2f}x)")

    print(f"matmul peak (2048^3): fp32 {matmul_peak(torch.float32):.0f} GFLOP/s, "
          f"bf16 {matmul_peak(torch.bfloat16):.0f} GFLOP/s")

    models = {n: load_pretrained(n, "cpu") for n in ("ddpm_eps", "noisy_classifier", "cfg_eps")}
    y = torch.arange(64) % 10
    for method, scale in (("classifier-ddim", 4.0), ("cfg-ddim", 2.0)):
        start = time.perf_counter()
        generate(method, models, y, scale, steps=50, generator=torch.Generator().manual_seed(0), device="cpu")
        print(f"64 samples, {method} (scale {scale:g}), DDIM-50: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
