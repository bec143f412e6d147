"""Choosing where to compute, bf16 autocast when asked for, and making runs repeatable."""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """The best device here: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` (or the environment variable ``COURSE_DEVICE``) forces one, e.g. "cpu".
    """
    prefer = prefer or os.environ.get("COURSE_DEVICE")
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; return a CPU ``torch.Generator`` seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def autocast_for(device, enabled: bool):
    """A bfloat16 autocast context for ``device`` when ``enabled`` (CPU or CUDA), else a no-op.

    Whether bf16 pays on this machine is the tooling's question (:func:`course_utils.cpu.bf16_is_fast`).
    """
    if enabled is None or not isinstance(enabled, (bool, int)):
        raise TypeError(f"autocast is True or False, got {enabled!r}: course_utils.bf16_is_fast(device) says "
                        "whether bf16 pays on this machine")
    device = torch.device(device)
    if not enabled or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
