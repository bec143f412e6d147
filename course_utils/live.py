"""Watching a model learn: a training callback that redraws a panel and the loss curve.

    view = LiveView(draw_samples, every=25, title="your eps U-Net")
    losses = fit(..., minutes=2.5, callback=view)
    view.finish(losses)

``draw_samples(ax)`` draws whatever shows progress (a grid of samples, accuracy against t)
on a matplotlib axis. In Jupyter the figure is updated in place, every ``every`` seconds
of training and once at the end; elsewhere nothing is shown.
"""
from __future__ import annotations

import time
from typing import Callable


def _notebook_display():
    """IPython's display, when running in a kernel that can show figures; else None."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    shell = get_ipython()
    return display if shell is not None and getattr(shell, "kernel", None) is not None else None


class LiveView:
    """A :func:`~course_utils.fitting.fit` callback that redraws ``draw(ax)`` beside the
    loss curve at most every ``every`` seconds (and at :meth:`finish`)."""

    def __init__(self, draw: Callable, *, every: float = 25.0, title: str = "training", display=None,
                 clock: Callable[[], float] = time.perf_counter):
        if not every > 0:
            raise ValueError(f"every must be a number of seconds > 0, got {every!r}")
        self.draw, self.every, self.title, self.clock = draw, float(every), title, clock
        self.display = display if display is not None else _notebook_display()
        self.start = self.last = clock()
        self.frames, self.handle = 0, None

    def __call__(self, step: int, losses: list[float]) -> None:
        if self.clock() - self.last >= self.every:
            self.show(step + 1, losses)

    def finish(self, losses: list[float]) -> None:
        """The final frame, after training."""
        self.show(len(losses), losses, final=True)

    def show(self, steps: int, losses: list[float], final: bool = False) -> None:
        import matplotlib.pyplot as plt

        from .plotting import plot_losses

        self.last = self.clock()
        self.frames += 1
        if self.display is None:
            return
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3), gridspec_kw={"width_ratios": [2, 1]})
        self.draw(left)
        if losses:
            plot_losses(losses, ax=right, window=max(1, min(50, len(losses) // 5)), title="training loss")
        when = "done" if final else "training"
        fig.suptitle(f"{self.title}: {steps:,} steps, {self.last - self.start:.0f} s ({when})")
        fig.tight_layout()
        if self.handle is None:
            self.handle = self.display(fig, display_id=True)
        else:
            self.handle.update(fig)
        plt.close(fig)


def sample_preview(schedule, *, prediction: str = "eps", y=None, cfg_scale=None, n: int = 8, steps: int = 20,
                   seed: int = 0):
    """``draw(model, ax)``: DDIM-``steps`` samples of ``model`` from the same ``n`` starting noises
    every time (so frames can be compared), for :func:`~course_utils.recipes.train_live`."""
    import torch

    from .core.sampling import ddim_sample
    from .plotting import show_images

    def draw(model, ax):
        device = next(model.parameters()).device
        x = ddim_sample(model, schedule, (n, 1, 32, 32), prediction=prediction, y=y, cfg_scale=cfg_scale,
                        steps=steps, generator=torch.Generator().manual_seed(seed), device=device, progress=False)
        what = "" if y is None else f" of {''.join(str(int(v)) for v in torch.as_tensor(y).flatten()[:n])}"
        show_images(x.cpu(), nrow=n, ax=ax, title=f"samples{what} (EMA weights, DDIM-{steps}, same noise each time)")
    return draw
