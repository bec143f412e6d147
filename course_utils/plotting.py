"""Pictures: image grids, schedules, loss curves and denoising trajectories."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> torch.Tensor:
    """Tile ``[B, 1, H, W]`` images in [-1, 1] into one ``[rows*(H+pad), cols*(W+pad)]`` array in [0, 1]."""
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"expected grey images of shape [B, 1, H, W], got {list(images.shape)}")
    b, _, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(b))
    rows = math.ceil(b / nrow)
    grid = torch.ones(rows * (h + pad) + pad, nrow * (w + pad) + pad)
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2)[:, 0]
    for i in range(b):
        r, c = divmod(i, nrow)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = x[i]
    return grid


def show_images(images: torch.Tensor, nrow: int | None = None, title: str | None = None, ax=None,
                labels=None):
    """Show a grid of images in [-1, 1]; ``labels`` (one per image) are written over them."""
    if ax is None:
        n = nrow or math.ceil(math.sqrt(images.shape[0]))
        _, ax = plt.subplots(figsize=(min(12, 0.7 * n + 1), min(12, 0.7 * math.ceil(images.shape[0] / n) + 1)))
    grid = image_grid(images, nrow)
    ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    if labels is not None:
        nrow = nrow or math.ceil(math.sqrt(images.shape[0]))
        h, w = images.shape[-2:]
        for i, lab in enumerate(labels):
            r, c = divmod(i, nrow)
            ax.text(2 + c * (w + 2) + 1, 2 + r * (h + 2) + 5, str(lab), color="yellow", fontsize=7)
    return ax


def plot_schedules(*schedules, names=None, axes=None):
    """beta_t, alpha_bar_t and log10 SNR(t) for one or more NoiseSchedules, side by side."""
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    names = names or [repr(s.kind) for s in schedules]
    for s, name in zip(schedules, names):
        t = torch.arange(s.T).numpy()
        axes[0].plot(t, s.betas.cpu().numpy(), label=name)
        axes[1].plot(t, s.alpha_bars.cpu().numpy(), label=name)
        axes[2].plot(t, torch.log10(s.snr().cpu()).numpy(), label=name)
    for ax, title in zip(axes, [r"$\beta_t$", r"$\bar\alpha_t$", r"$\log_{10}\,\mathrm{SNR}(t)$"]):
        ax.set_title(title)
        ax.set_xlabel("t")
        ax.legend()
    return axes


def plot_losses(losses, ax=None, window: int = 50, title: str = "training loss"):
    """The loss per step (faint) and its running mean over ``window`` steps."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    y = torch.as_tensor(losses, dtype=torch.float64)
    ax.plot(y.numpy(), alpha=0.3, label="per step")
    if len(y) >= window:
        smooth = torch.nn.functional.avg_pool1d(y[None, None], window, stride=1)[0, 0]
        ax.plot(range(window - 1, len(y)), smooth.numpy(), label=f"mean of {window}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend()
    return ax


def plot_trajectory(recorder, n: int = 4, show_x0: bool = True):
    """Rows of states from a :class:`~course_utils.sampling.TrajectoryRecorder`:
    x_t along the run for the first ``n`` samples, and below each the model's x0 estimate."""
    steps = len(recorder.t)
    rows = n * (2 if show_x0 else 1)
    fig, axes = plt.subplots(rows, steps, figsize=(1.1 * steps, 1.15 * rows), squeeze=False)
    for j in range(steps):
        label = f"t={recorder.t[j]}" if recorder.t[j] >= 0 else "final"
        for i in range(n):
            r = i * (2 if show_x0 else 1)
            panels = [(r, recorder.x_t[j][i])] + ([(r + 1, recorder.x0[j][i])] if show_x0 else [])
            for row, img in panels:
                axes[row, j].imshow(((img[0].clamp(-1, 1) + 1) / 2).numpy(), cmap="gray", vmin=0, vmax=1)
                axes[row, j].set_axis_off()
        axes[0, j].set_title(label, fontsize=8)
    if show_x0:
        fig.text(0.005, 0.5, "rows: x_t, then x0_hat", rotation=90, va="center", fontsize=8)
    return fig
