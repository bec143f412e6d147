"""Training: the denoiser objective, the noisy-classifier objective, the EMA of the weights, the learning-rate
shape, and the loop itself (:func:`training_steps`), one screen a learner can read.

Batches are drawn at random from tensors already in memory (MNIST fits easily), so a step costs one forward and
one backward pass and nothing else. The budget, the progress bar, the stop button, autocast and several processes
are the course's tooling (:func:`course_utils.fitting.fit`), which drives this loop.
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

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


def training_steps(model: nn.Module, loss_fn: Callable, tensors, optimizer, *, batch_size: int,
                   ema: EMA | None = None, generator: torch.Generator | None = None, grad_clip: float | None = 1.0):
    """The training loop, one optimiser step per ``next()``, forever (the caller decides when to stop):

        batch = batch_size random rows of ``tensors``
        loss  = loss_fn(model, *batch)
        theta <- the optimiser's step on grad loss   (the gradient's norm clipped to ``grad_clip``)
        ema   <- its update from theta               (when an :class:`EMA` is given)

    and yield the loss, a tensor still on the model's device (reading it back stalls the device: the caller
    chooses when).
    """
    while True:
        batch = random_batch(tensors, batch_size, generator)
        loss = loss_fn(model, *batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if ema is not None:
            ema.update(model)
        yield loss
