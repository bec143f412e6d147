"""What this processor can do fast: its vector instructions, its bfloat16 units, and a one-line summary for the
benchmarks' figures. The course's tooling reads it to choose autocast (:func:`bf16_is_fast`); the core never
guesses, it is told.
"""
from __future__ import annotations

import os

import torch


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_vector_isa() -> str:
    """The widest vector instructions PyTorch's CPU kernels use here: "AVX512", "AVX2", "DEFAULT", ...
    (``torch.backends.cpu.get_cpu_capability``). ``ATEN_CPU_CAPABILITY=avx2`` lowers it, which with
    ``ONEDNN_MAX_CPU_ISA=AVX2`` makes an AVX-512 machine compute like an AVX2-only one."""
    probe = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    return probe() if probe is not None else "DEFAULT"


def onednn_allows_bf16() -> bool:
    """False when ``ONEDNN_MAX_CPU_ISA`` caps oneDNN (the convolutions' library) below the bf16 instructions."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    return cap == "ALL" or cap.startswith(("AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX10"))


def cpu_has_fast_bf16() -> bool:
    """True when this CPU has bfloat16 units (AMX tiles, or AVX-512 BF16 instructions) and PyTorch may use
    them: neither ``ATEN_CPU_CAPABILITY`` nor ``ONEDNN_MAX_CPU_ISA`` caps it below AVX-512.
    (benchmarks/bench_cpu.py measures what bf16 autocast buys.)
    """
    if not cpu_vector_isa().startswith("AVX512") or not onednn_allows_bf16():
        return False
    probe = getattr(getattr(torch, "cpu", None), "_is_amx_tile_supported", None)
    try:
        if probe is not None and probe():
            return True
    except RuntimeError:
        pass
    return "avx512_bf16" in cpu_flags()


def cpu_summary() -> str:
    """One line on the processor a figure was measured on: PyTorch's vector ISA, the AVX-512 / AMX flags,
    whether bf16 autocast is used, and the threads: e.g. "AVX2 (no AVX-512), fp32, 2 threads"."""
    wide = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx")))
    isa = cpu_vector_isa()
    capped = " (capped by ATEN_CPU_CAPABILITY)" if os.environ.get("ATEN_CPU_CAPABILITY") else ""
    flags = ", ".join(wide) if wide else "no AVX-512"
    precision = "bf16 autocast" if cpu_has_fast_bf16() else "fp32"
    return f"{isa}{capped} [{flags}], {precision}, {torch.get_num_threads()} threads"


def bf16_is_fast(device) -> bool:
    """Whether bfloat16 autocast should speed up convolutions on ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_fast_bf16()
    return False
