"""Training loops: the denoiser objective, the noisy-classifier objective, and one loop for both.

Batches are drawn at random from tensors already in memory (MNIST fits easily), so a
step costs one forward and one backward pass and nothing else.
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .device import autocast_for, bf16_is_fast, pick_device
from .sampling import check_prediction



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


def denoiser_loss(model, schedule, x0, y=None, *, prediction="eps", cond_drop=0.0, null_label=10,
                  generator=None) -> torch.Tensor:
    """The simple DDPM objective on one batch.

        t ~ U{0..T-1},  eps ~ N(0, I),  x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps
        eps-prediction:  || eps_theta(x_t, t) - eps ||^2
        x0-prediction:   || x0_theta(x_t, t) - x0 ||^2

    With labels ``y`` the model is conditional; each label is replaced by ``null_label``
    with probability ``cond_drop`` (conditioning dropout), so the same network also
    learns the unconditional model that classifier-free guidance needs.
    """
    check_prediction(prediction)
    b, dev = x0.shape[0], x0.device
    t = torch.randint(0, schedule.T, (b,), generator=generator).to(dev)
    noise = torch.randn(x0.shape, generator=generator).to(dev)
    x_t = schedule.q_sample(x0, t, noise)
    if y is None:
        out = model(x_t, t)
    else:
        drop = torch.rand(b, generator=generator).to(dev) < cond_drop
        out = model(x_t, t, torch.where(drop, torch.full_like(y, null_label), y))
    target = noise if prediction == "eps" else x0
    return F.mse_loss(out.float(), target)


def noisy_classifier_loss(classifier, schedule, x0, y, *, generator=None) -> torch.Tensor:
    """Cross-entropy of p_phi(y | x_t, t) on x_t = q_sample(x0, t) at uniformly random t."""
    b, dev = x0.shape[0], x0.device
    t = torch.randint(0, schedule.T, (b,), generator=generator).to(dev)
    x_t = schedule.q_sample(x0, t, torch.randn(x0.shape, generator=generator).to(dev))
    return F.cross_entropy(classifier(x_t, t).float(), y)


def fit(model: nn.Module, loss_fn: Callable, tensors, *, steps: int, batch_size: int = 128,
        lr: float = 1e-3, optimizer=None, scheduler=None, ema: EMA | None = None, device=None,
        autocast: bool | None = None, channels_last: bool | None = None, generator=None,
        progress: bool = True, desc: str = "training", callback: Callable | None = None,
        start_step: int = 0, grad_clip: float | None = 1.0) -> list[float]:
    """Run ``steps`` optimiser steps of ``loss_fn(model, *batch)``; return the losses.

    ``tensors``: the data (e.g. ``(images,)`` or ``(images, labels)``), sampled at random.
    ``autocast``: bfloat16 autocast (None: where the device has fast bf16 units).
    ``channels_last``: NHWC memory layout for convolutions (None: on a CPU, where
    benchmarks/bench_cpu.py measured a training step 1.35x faster than the default layout).
    ``callback(step, losses)`` runs after every step with the losses read back so far
    (they are fetched from the device 25 at a time); ``start_step``
    numbers the steps of a resumed run. Shows a progress bar with the running loss.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    device = torch.device(device) if device is not None else pick_device()
    model.to(device).train()
    if ema is not None:
        ema.model.to(device)
    fast = bf16_is_fast(device) if autocast is None else bool(autocast)
    if channels_last is None:
        channels_last = device.type == "cpu"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=device.type == "cuda")
    tensors = [t.to(device) for t in tensors]  # the data set is small: keep it beside the model
    losses, pending = [], []
    last = start_step + steps - 1
    bar = tqdm(range(start_step, start_step + steps), desc=desc, disable=not progress)
    for step in bar:
        batch = random_batch(tensors, batch_size, generator)
        if channels_last and batch[0].dim() == 4:
            batch[0] = batch[0].contiguous(memory_format=torch.channels_last)
        with autocast_for(device, fast):
            loss = loss_fn(model, *batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update(model)
        pending.append(loss.detach())
        if len(pending) == 25 or step == last:  # read losses back in groups: no GPU stall per step
            values = torch.stack(pending).float().cpu().tolist()
            pending.clear()
            bad = [v for v in values if not math.isfinite(v)]
            if bad:
                raise FloatingPointError(f"the loss became {bad[0]} by step {step}: lower the learning rate")
            losses.extend(values)
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
        if callback is not None:
            callback(step, losses)
    model.eval()
    return losses


def _schedule_for(schedule, fit_kwargs):
    """The schedule on the device ``fit`` will train on, so no step copies its buffers."""
    device = fit_kwargs.get("device")
    return schedule.to(torch.device(device) if device is not None else pick_device())


def train_denoiser(model, schedule, images, labels=None, *, steps: int, prediction: str = "eps",
                   cond_drop: float = 0.1, null_label: int = 10, lr: float = 1e-3, **kwargs) -> list[float]:
    """Train an eps- or x0-prediction denoiser (see :func:`denoiser_loss`); return the losses.

    Pass ``labels`` to train a class-conditional model with conditioning dropout
    ``cond_drop``. Other keywords go to :func:`fit` (batch_size, ema, device, ...).
    """
    check_prediction(prediction)
    if not 0 <= cond_drop <= 1:
        raise ValueError(f"cond_drop is a probability in [0, 1], got {cond_drop}")
    gen, schedule = kwargs.get("generator"), _schedule_for(schedule, kwargs)

    def loss_fn(m, x0, y=None):
        return denoiser_loss(m, schedule, x0, y, prediction=prediction, cond_drop=cond_drop,
                             null_label=null_label, generator=gen)

    tensors = (images,) if labels is None else (images, labels)
    kwargs.setdefault("desc", f"{prediction}-denoiser")
    return fit(model, loss_fn, tensors, steps=steps, lr=lr, **kwargs)


def train_classifier(classifier, schedule, images, labels, *, steps: int, lr: float = 1e-3,
                     **kwargs) -> list[float]:
    """Train a noise-aware classifier on x_t at random t (see :func:`noisy_classifier_loss`)."""
    gen, schedule = kwargs.get("generator"), _schedule_for(schedule, kwargs)

    def loss_fn(m, x0, y):
        return noisy_classifier_loss(m, schedule, x0, y, generator=gen)

    kwargs.setdefault("desc", "noisy classifier")
    return fit(classifier, loss_fn, (images, labels), steps=steps, lr=lr, **kwargs)
