"""The course's training machinery around the learner's loop (:func:`course_utils.core.training.training_steps`):
a budget of steps or minutes, a learning-rate shape read off it, a progress bar with the running loss and the time
left, the stop button, bf16 autocast, channels_last, and several processes under torchrun (see
course_utils.distributed), where :func:`fit` averages the gradients over them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .core.device import autocast_for, pick_device
from .core.guidance import NULL_LABEL
from .core.sampling import validate_prediction
from .core.training import EMA, denoiser_loss, noisy_classifier_loss, training_steps
from .cpu import bf16_is_fast


class Budget:
    """When a training run stops: after ``steps`` optimiser steps or ``minutes`` of wall time,
    whichever comes first (either may be None, not both).

    ``progress(step, seconds)`` is the fraction of the run done, 0..1: the larger of
    step / steps and seconds / (60 * minutes). A learning-rate shape that reads it is
    planned for the budget, whatever the speed of the machine.
    """

    def __init__(self, steps: int | None = None, minutes: float | None = None):
        if steps is None and minutes is None:
            raise ValueError("give a step count (steps=...) or a time budget (minutes=...), or both")
        if steps is not None:
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
                raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
            if steps == 0 and minutes is not None:
                raise ValueError("steps=0 with a time budget trains nothing: give steps > 0, or steps=None "
                                 "to train for the whole budget")
        if minutes is not None:
            try:
                minutes = float(minutes)
            except (TypeError, ValueError):
                raise ValueError(f"minutes must be a number > 0, got {minutes!r}") from None
            if not math.isfinite(minutes) or minutes <= 0:
                raise ValueError(f"minutes must be a finite number > 0, got {minutes!r}")
        self.steps, self.minutes = steps, minutes
        self.seconds = None if minutes is None else 60.0 * minutes

    def progress(self, step: int, seconds: float) -> float:
        done = 0.0
        if self.steps:
            done = step / self.steps
        if self.seconds:
            done = max(done, seconds / self.seconds)
        return min(1.0, done)

    def over(self, step: int, seconds: float) -> bool:
        return (self.steps is not None and step >= self.steps) or (self.seconds is not None and seconds >= self.seconds)


@contextlib.contextmanager
def stop_requests():
    """While training: Ctrl-C, or Jupyter's stop button, asks to stop after the current step.

    Yields a dict whose "stop" turns True at the first interrupt (a second one raises
    KeyboardInterrupt at once). Off the main thread, where signals cannot be caught,
    an interrupt arrives as KeyboardInterrupt, which :func:`fit` also ends on cleanly.
    """
    request = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum, frame):
        if request["stop"]:
            raise KeyboardInterrupt
        request["stop"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """How :func:`fit` trains; every field has a default that works.

    ``batch_size``: rows a step draws (in a run of several processes, each draws its own share).
    ``lr``: the peak learning rate of the default AdamW optimiser; ``lr_shape(progress)`` a factor of it
    at each step, read at the fraction of the budget used so far (:class:`Budget`), e.g. :func:`one_cycle`
    (None keeps ``lr`` fixed). ``grad_clip``: the largest gradient norm (None: no clipping).
    ``device``: None picks one (:func:`~course_utils.core.device.pick_device`). ``autocast``: bfloat16
    autocast (None: where the device has fast bf16 units). ``channels_last``: NHWC memory layout for
    convolutions (None: on a CPU without bf16 autocast, where benchmarks/bench_cpu.py measured a step
    1.1x to 1.25x faster; with bf16 autocast the default layout was faster).
    ``progress``: show a progress bar labelled ``desc``.
    """
    batch_size: int = 128
    lr: float = 1e-3
    lr_shape: Callable[[float], float] | None = None
    grad_clip: float | None = 1.0
    device: str | torch.device | None = None
    autocast: bool | None = None
    channels_last: bool | None = None
    progress: bool = True
    desc: str = "training"

    def with_settings(self, **settings) -> "FitOptions":
        """These options with some fields changed; an unknown name is a clear error."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise TypeError(f"unknown training option(s) {unknown}: the options are {sorted(known)}")
        return dataclasses.replace(self, **settings)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class _LossLog:
    """The losses of a run, read back from the device 25 at a time (no stall on every step) and, in a run
    of several processes, averaged over them, so that every process records the loss of the whole batch."""

    def __init__(self, bar, budget: Budget, elapsed: Callable[[], float], start_step: int, start_seconds: float):
        self.values, self.pending = [], []
        self.bar, self.budget, self.elapsed = bar, budget, elapsed
        self.start_step, self.start_seconds = start_step, start_seconds

    def add(self, loss: torch.Tensor, step: int) -> None:
        self.pending.append(loss.detach().float())
        if len(self.pending) == 25:
            self.read(step, final=False)

    def read(self, step: int, final: bool) -> None:
        if not self.pending:
            return
        values = torch.stack(self.pending)
        self.pending.clear()
        if _distributed():  # the mean over the processes (a sum, then divided: gloo has no mean)
            torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.SUM)
            values /= torch.distributed.get_world_size()
        values = values.cpu().tolist()
        bad = [v for v in values if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(f"the loss became {bad[0]} by step {step}: lower the learning rate")
        self.values.extend(values)
        post = {"loss": f"{sum(self.values[-50:]) / len(self.values[-50:]):.4f}"}
        if self.budget.seconds is not None:
            used = self.elapsed()
            post["left"] = _clock(self.budget.seconds - used)
            if self.budget.steps is None and not final:  # the bar's length: the steps that fit in the budget
                rate = (step - self.start_step) / max(used - self.start_seconds, 1e-9)
                self.bar.total = int(step + (self.budget.seconds - used) * rate)
        self.bar.set_postfix(post)


def _agree(seconds: float, stop: bool) -> tuple[float, bool]:
    """In a run of several processes, the time used and whether to stop, agreed by all: the longest time
    any process has used, and stop if any was asked to. So they stop together (none waits forever for the
    others' gradients) and read the same learning rate off a time budget. Alone: unchanged."""
    if not _distributed():
        return seconds, stop
    shared = torch.tensor([seconds, float(stop)], dtype=torch.float64)
    if torch.distributed.get_backend() == "nccl":
        shared = shared.cuda()
    torch.distributed.all_reduce(shared, op=torch.distributed.ReduceOp.MAX)
    return float(shared[0]), bool(shared[1])


def _in_step(model: nn.Module, device: torch.device) -> nn.Module:
    """The network the steps call: in a run of several processes (torchrun), wrapped in
    DistributedDataParallel, which averages the gradients over the processes in each backward pass."""
    if not _distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def fit(model: nn.Module, loss_fn: Callable, tensors, *, steps: int | None = None, minutes: float | None = None,
        options: FitOptions | None = None, optimizer=None, ema: EMA | None = None, generator=None,
        callback: Callable | None = None, resume: tuple[int, float] = (0, 0.0), **settings) -> list[float]:
    """Optimiser steps of ``loss_fn(model, *batch)`` until ``steps`` or ``minutes`` run out,
    whichever comes first; return the losses.

    ``tensors``: the data (e.g. ``(images,)`` or ``(images, labels)``), rows drawn at random with
    ``generator``. ``options``: how to train (:class:`FitOptions`); its fields may also be given here by
    name (``batch_size=64, lr=3e-3``). ``optimizer``: None makes AdamW at ``options.lr``. ``ema``: an
    :class:`EMA` updated after every step. ``callback(step, losses)`` runs after every step with the
    losses read back so far. ``resume = (step, seconds)``: how much of the budget a resumed run
    already used. Shows a progress bar with the running loss and, under a time budget, the time left.

    Ctrl-C (Jupyter's stop button) ends training after the current step: the model and its
    EMA keep what they learned and the losses so far are returned.
    """
    options = (options or FitOptions()).with_settings(**settings)
    budget = Budget(steps, minutes)
    device = torch.device(options.device) if options.device is not None else pick_device()
    model.to(device).train()
    if ema is not None:
        ema.model.to(device)
    fast = bf16_is_fast(device) if options.autocast is None else bool(options.autocast)
    channels_last = options.channels_last
    if channels_last is None:  # NHWC pays on a CPU in fp32; with bf16 autocast the default layout was as fast
        channels_last = device.type == "cpu" and not fast
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, fused=device.type == "cuda")
    peak = [group["lr"] for group in optimizer.param_groups]
    tensors = [t.to(device) for t in tensors]  # the data set is small: keep it beside the model
    start_step, start_seconds = resume
    step, begun = start_step, time.perf_counter()
    bar = tqdm(total=budget.steps, initial=start_step, desc=options.desc, disable=not options.progress)

    def elapsed() -> float:
        return start_seconds + time.perf_counter() - begun

    log = _LossLog(bar, budget, elapsed, start_step, start_seconds)
    stepped = _in_step(model, device)

    def step_loss(_, *batch):   # the loss of one step, on the (possibly distributed) network, in its layout
        if channels_last and batch[0].dim() == 4:
            batch = (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
        with autocast_for(device, fast):
            return loss_fn(stepped, *batch)

    loop = training_steps(model, step_loss, tensors, optimizer, batch_size=options.batch_size, ema=ema,
                           generator=generator, grad_clip=options.grad_clip)
    with stop_requests() as request:
        try:
            while True:
                seconds, request["stop"] = _agree(elapsed(), request["stop"])
                if request["stop"] or budget.over(step, seconds):
                    break
                if options.lr_shape is not None:
                    factor = options.lr_shape(budget.progress(step, seconds))
                    for group, top in zip(optimizer.param_groups, peak):
                        group["lr"] = top * factor
                loss = next(loop)
                step += 1
                bar.update(1)
                log.add(loss, step)
                if callback is not None:
                    callback(step - 1, log.values)
        except KeyboardInterrupt:
            request["stop"] = True
        log.read(step, final=True)
        if budget.steps is None:
            bar.total = step
        bar.refresh()
        bar.close()
        if request["stop"]:
            print(f"{options.desc}: stopped by request after {step} steps ({_clock(elapsed())}); "
                  "the model keeps what it learned so far.")
    model.eval()
    return log.values


def _schedule_for(schedule, fit_kwargs):
    """The schedule on the device ``fit`` will train on, so no step copies its buffers."""
    device = fit_kwargs.get("device")
    return schedule.to(torch.device(device) if device is not None else pick_device())


def train_denoiser(model, schedule, images, labels=None, *, steps: int | None = None,
                   minutes: float | None = None, prediction: str = "eps",
                   cond_drop: float = 0.1, null_label: int = NULL_LABEL, lr: float = 1e-3, **kwargs) -> list[float]:
    """Train an eps- or x0-prediction denoiser (see :func:`denoiser_loss`); return the losses.

    Pass ``labels`` to train a class-conditional model with conditioning dropout
    ``cond_drop``. Other keywords go to :func:`fit` (batch_size, ema, device, ...).
    """
    validate_prediction(prediction)
    if not 0 <= cond_drop <= 1:
        raise ValueError(f"cond_drop is a probability in [0, 1], got {cond_drop}")
    gen, schedule = kwargs.get("generator"), _schedule_for(schedule, kwargs)

    def loss_fn(m, x0, y=None):
        return denoiser_loss(m, schedule, x0, y, prediction=prediction, cond_drop=cond_drop,
                             null_label=null_label, generator=gen)

    tensors = (images,) if labels is None else (images, labels)
    kwargs.setdefault("desc", f"{prediction}-denoiser")
    return fit(model, loss_fn, tensors, steps=steps, minutes=minutes, lr=lr, **kwargs)


def train_classifier(classifier, schedule, images, labels, *, steps: int | None = None,
                     minutes: float | None = None, lr: float = 1e-3, **kwargs) -> list[float]:
    """Train a noise-aware classifier on x_t at random t (see :func:`noisy_classifier_loss`)."""
    gen, schedule = kwargs.get("generator"), _schedule_for(schedule, kwargs)

    def loss_fn(m, x0, y):
        return noisy_classifier_loss(m, schedule, x0, y, generator=gen)

    kwargs.setdefault("desc", "noisy classifier")
    return fit(classifier, loss_fn, (images, labels), steps=steps, minutes=minutes, lr=lr, **kwargs)
