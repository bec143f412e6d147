"""Pictures: image grids, schedules, loss curves and denoising trajectories."""
from __future__ import annotations

import math
import re

import matplotlib.pyplot as plt
import torch

from .core.data import to_unit_range


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> torch.Tensor:
    """Tile ``[B, 1, H, W]`` images in [-1, 1] into one ``[rows*(H+pad), cols*(W+pad)]`` array in [0, 1]."""
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"expected grey images of shape [B, 1, H, W], got {list(images.shape)}")
    b, _, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(b))
    rows = math.ceil(b / nrow)
    grid = torch.ones(rows * (h + pad) + pad, nrow * (w + pad) + pad)
    x = to_unit_range(images.detach().float().cpu())[:, 0]
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
    """Rows of states from a :class:`~course_utils.core.sampling.Trajectory`
    (:func:`~course_utils.core.sampling.record_trajectory`): x_t along the run for the first ``n`` samples, and below
    each the model's x0 estimate."""
    steps = len(recorder.t)
    rows = n * (2 if show_x0 else 1)
    fig, axes = plt.subplots(rows, steps, figsize=(1.1 * steps, 1.15 * rows), squeeze=False)
    for j in range(steps):
        label = f"t={recorder.t[j]}" if recorder.t[j] >= 0 else "final"
        for i in range(n):
            r = i * (2 if show_x0 else 1)
            panels = [(r, recorder.x_t[j][i])] + ([(r + 1, recorder.x0[j][i])] if show_x0 else [])
            for row, img in panels:
                axes[row, j].imshow(to_unit_range(img[0]).numpy(), cmap="gray", vmin=0, vmax=1)
                axes[row, j].set_axis_off()
        axes[0, j].set_title(label, fontsize=8)
    if show_x0:
        fig.text(0.005, 0.5, "rows: x_t, then x0_hat", rotation=90, va="center", fontsize=8)
    return fig


def plot_chains(x0: torch.Tensor, schedule, ts=(0, 100, 250, 500, 999), generator: torch.Generator | None = None):
    """The two chains on one picture: one image ``x0`` [1, C, H, W] noised by q_sample at the timesteps
    ``ts``, with the forward steps q(x_t | x_{t-1}) (fixed: add noise) drawn above, left to right, and the
    reverse steps p_theta(x_{t-1} | x_t) (learned: remove noise) below, right to left."""
    if x0.dim() != 4 or x0.shape[0] != 1:
        raise ValueError(f"x0 must be one image of shape [1, C, H, W], got {list(x0.shape)}")
    states = [x0] + [schedule.q_sample(x0, torch.tensor([t]), generator=generator) for t in ts]
    names = ["data $x_0$"] + [f"$t = {t}$" for t in ts]
    fig, axes = plt.subplots(1, len(states), figsize=(2.1 * len(states), 2.9))
    for ax, x, name in zip(axes, states, names):
        show_images(x, ax=ax, title=name)
    arrow = dict(arrowstyle="-|>", lw=1.5)
    for a, b in zip(axes[:-1], axes[1:]):   # arrows in the gaps between neighbouring panels (figure coordinates)
        left, right = a.get_position(), b.get_position()
        mid = (left.y0 + left.y1) / 2
        for y, start, end, colour in [(mid + 0.08, left.x1, right.x0, "tab:red"),
                                      (mid - 0.08, right.x0, left.x1, "tab:blue")]:
            fig.add_artist(plt.Annotation("", xy=(end, y), xytext=(start, y), xycoords="figure fraction",
                                          arrowprops={**arrow, "color": colour}))
    fig.text(0.5, 0.99, r"forward, fixed: $q(x_t \mid x_{t-1})$ adds a little Gaussian noise at each step",
             ha="center", va="top", color="tab:red")
    fig.text(0.5, 0.01, r"reverse, learned: $p_\theta(x_{t-1} \mid x_t)$ removes a little noise at each step",
             ha="center", va="bottom", color="tab:blue")
    return fig


UNTITLED = "An untitled figure"


def describe_figure(fig) -> str:
    """A figure's alt text, in its own words: its title, then each panel's title and axes ("y against x").
    A figure with no words at all (one a failing cell left half drawn) is said to be UNTITLED, so that it
    can be found."""
    panels = []
    for ax in fig.axes:
        words = [ax.get_title(loc) for loc in ("left", "center", "right") if ax.get_title(loc)]
        x, y = ax.get_xlabel(), ax.get_ylabel()
        if x and y:
            words.append(f"{y} against {x}")
        if words and ", ".join(words) not in panels:
            panels.append(", ".join(words))
    title = fig.get_suptitle() if hasattr(fig, "get_suptitle") else ""
    if len(panels) > 8:
        panels = panels[:8] + [f"and {len(panels) - 8} more panels"]
    if not title and not panels:
        return f"{UNTITLED} with {len(fig.axes)} panel(s) and no words"
    text = title if not panels else (f"{title}. " if title else "") + ("Panels: " if len(panels) > 1 else "") + \
        "; ".join(panels)
    return _plain(text)


def _plain(text: str) -> str:
    """Words a screen reader can read: one line, no TeX $, braces or backslashes ($\\bar\\alpha_t$: bar alpha_t)."""
    text = re.sub(r"\\mathrm\{([^}]*)\}", r"\1", text.replace("$", ""))
    text = re.sub(r"\\,|\\;|\\ ", " ", text)
    text = re.sub(r"\\([A-Za-z]+)", r" \1", text).replace("{", "").replace("}", "")
    return " ".join(text.split())


def describe_figures_in_notebooks() -> None:
    """In a Jupyter kernel, give every matplotlib figure a notebook shows its alt text (:func:`describe_figure`),
    kept in the output's metadata (``{"image/png": {"alt": ...}}``), where nbconvert's and nbgrader's HTML and
    the course's website read it. The inline backend's own PNG formatter still draws the image; outside a kernel
    this does nothing."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter") or getattr(shell, "_course_alt", False):
        return
    from matplotlib.figure import Figure

    plt.switch_backend(plt.get_backend())   # loads the inline backend, which registers its PNG formatter

    def with_alt(draw):
        def png(fig):
            data = draw(fig)
            return (data, {"alt": describe_figure(fig)}) if data is not None else data
        png.course_alt = True
        return png

    def wrap(*_):
        formatter = shell.display_formatter.formatters["image/png"]
        try:
            draw = formatter.lookup_by_type(Figure)
        except KeyError:
            return
        if not getattr(draw, "course_alt", False):   # again after %matplotlib or %config re-registers its own
            formatter.for_type(Figure, with_alt(draw))

    wrap()
    shell.events.register("pre_run_cell", wrap)
    shell._course_alt = True
