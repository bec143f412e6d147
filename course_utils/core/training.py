"""Training loops: the denoiser objective, the noisy-classifier objective, and one loop for both.

Batches are drawn at random from tensors already in memory (MNIST fits easily), so a
step costs one forward and one backward pass and nothing else. In a run of several processes
(torchrun, see course_utils.distributed), :func:`fit` averages the gradients over them.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import signal
import threading
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .device import autocast_for, bf16_is_fast, pick_device
from .guidance import NULL_LABEL
from .sampling import validate_prediction


class EMA:
    """An exponential moving average of a model's weights, used for sampling.

        theta_ema <- d_k * theta_ema + (1 - d_k) * theta,   d_k = min(decay, (1 + k) / (10 + k))

    The warm-up d_k keeps early updates large, so that after a short run the average
    is not still mostly the random initial weights.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0 <= decay < 1:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        avg, new = list(self.model.state_dict().values()), list(model.state_dict().values())
        floats = [i for i, a in enumerate(avg) if a.is_floating_point()]
        # theta_ema = d * theta_ema + (1 - d) * theta, on all tensors at once
        torch._foreach_lerp_([avg[i] for i in floats], [new[i].detach() for i in floats], 1 - d)
        for i, a in enumerate(avg):
            if not a.is_floating_point():
                a.copy_(new[i])


def random_batch(tensors, batch_size: int, generator: torch.Generator | None):
    """Draw ``batch_size`` rows (with replacement) from every tensor in ``tensors`` (on their device)."""
    n = tensors[0].shape[0]
    idx = torch.randint(0, n, (batch_size,), generator=generator).to(tensors[0].device)
    return [t[idx] for t in tensors]


def min_snr_weight(schedule, t: torch.Tensor, gamma: float, prediction: str = "eps") -> torch.Tensor:
    """The min-SNR-gamma loss weight of Hang et al. (2023), one per timestep in ``t``.

    Every objective is a weighting of the x0 error: ||eps_hat - eps||^2 = SNR_t ||x0_hat - x0||^2 and
    ||v_hat - v||^2 = (SNR_t + 1) ||x0_hat - x0||^2, with SNR_t = ab_t / (1 - ab_t). Min-SNR caps the
    x0 error's weight at gamma, so the nearly clean timesteps (SNR_t in the thousands) stop dominating:

        eps-prediction: w_t = min(SNR_t, gamma) / SNR_t
        v-prediction:   w_t = min(SNR_t, gamma) / (SNR_t + 1)
        x0-prediction:  w_t = min(SNR_t, gamma)
    """
    snr = schedule.snr().to(t.device)[t]
    capped = snr.clamp(max=gamma)
    return {"eps": capped / snr, "v": capped / (snr + 1), "x0": capped}[validate_prediction(prediction)]


def min_snr_timesteps(schedule, batch: int, gamma: float, prediction: str = "eps", generator=None) -> torch.Tensor:
    """``batch`` timesteps drawn with probability p_t = w_t / sum_s w_s (w: :func:`min_snr_weight`).

    The min-SNR weighting by importance sampling: E_{t ~ p}[L_t] = sum_t w_t L_t / sum_s w_s, the weighted
    loss up to a constant factor, so the unweighted per-sample loss can stay as it is."""
    w = min_snr_weight(schedule, torch.arange(schedule.T, device=schedule.alpha_bars.device), gamma, prediction)
    return torch.multinomial(w.cpu(), batch, replacement=True, generator=generator)


def denoiser_loss(model, schedule, x0, y=None, *, prediction="eps", cond_drop=0.0, null_label=NULL_LABEL,
                  min_snr_gamma: float | None = None, generator=None) -> torch.Tensor:
    """The simple DDPM objective on one batch.

        t ~ U{0..T-1},  eps ~ N(0, I),  x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps
        eps-prediction:  || eps_theta(x_t, t) - eps ||^2
        x0-prediction:   || x0_theta(x_t, t) - x0 ||^2
        v-prediction:    || v_theta(x_t, t) - v ||^2,   v = sqrt(ab_t) eps - sqrt(1 - ab_t) x0

    With ``min_snr_gamma``, t is drawn from :func:`min_snr_timesteps` instead of uniformly: the
    min-SNR-gamma weighting of Hang et al. (2023).

    With labels ``y`` the model is conditional; each label is replaced by ``null_label``
    with probability ``cond_drop`` (conditioning dropout), so the same network also
    learns the unconditional model that classifier-free guidance needs.
    """
    validate_prediction(prediction)
    b, dev = x0.shape[0], x0.device
    if min_snr_gamma is None:
        t = torch.randint(0, schedule.T, (b,), generator=generator).to(dev)
    else:
        t = min_snr_timesteps(schedule, b, min_snr_gamma, prediction, generator).to(dev)
    noise = torch.randn(x0.shape, generator=generator).to(dev)
    x_t = schedule.q_sample(x0, t, noise)
    if y is None:
        out = model(x_t, t)
    else:
        drop = torch.rand(b, generator=generator).to(dev) < cond_drop
        out = model(x_t, t, torch.where(drop, torch.full_like(y, null_label), y))
    if prediction == "eps":
        target = noise
    elif prediction == "x0":
        target = x0
    else:
        target = schedule.v_target(x0, t, noise)
    return F.mse_loss(out.float(), target)


def noisy_classifier_loss(classifier, schedule, x0, y, *, generator=None) -> torch.Tensor:
    """Cross-entropy of p_phi(y | x_t, t) on x_t = q_sample(x0, t) at uniformly random t."""
    b, dev = x0.shape[0], x0.device
    t = torch.randint(0, schedule.T, (b,), generator=generator).to(dev)
    x_t = schedule.q_sample(x0, t, torch.randn(x0.shape, generator=generator).to(dev))
    return F.cross_entropy(classifier(x_t, t).float(), y)


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


def one_cycle(progress: float, warmup: float = 0.1, start: float = 0.04, end: float = 0.01) -> float:
    """The one-cycle learning-rate shape, as a factor of the peak rate at ``progress`` in [0, 1]:

        linear from ``start`` up to 1 over the first ``warmup`` of the run,
        then a half cosine from 1 down to ``end`` at the end of the run.

    A high peak early and a long cool-down let a short run learn fast and settle.
    """
    if progress < warmup:
        return start + (1 - start) * progress / warmup
    p = min(1.0, (progress - warmup) / (1 - warmup))
    return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * p))


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
                batch = random_batch(tensors, options.batch_size, generator)
                if channels_last and batch[0].dim() == 4:
                    batch[0] = batch[0].contiguous(memory_format=torch.channels_last)
                with autocast_for(device, fast):
                    loss = loss_fn(stepped, *batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if options.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
                optimizer.step()
                if ema is not None:
                    ema.update(model)
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
