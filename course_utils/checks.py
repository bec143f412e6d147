"""Checks that teach: each compares a student's function with the reference on random inputs
and, when they differ, names the likely mistake.

Every check prints a short confirmation when the function is right and raises
:class:`CheckFailed` (an AssertionError) with a hint when it is not. A function that still
raises NotImplementedError is let through, so an unsolved exercise stops the notebook there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .schedule import NoiseSchedule


class CheckFailed(AssertionError):
    """The student's function gives wrong results; the message says what is likely wrong."""


def _schedule() -> NoiseSchedule:
    return NoiseSchedule(T=1000, kind="linear")


def _coarse_schedule() -> NoiseSchedule:
    """Few, large steps: off-by-one and coefficient mistakes change the result visibly."""
    return NoiseSchedule(T=20, kind="linear", beta_start=0.05, beta_end=0.3)


def _col(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (x.dim() - 1)))


def _verdict(what: str, got, want: torch.Tensor, mistakes: dict, atol: float = 1e-4) -> None:
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what}: expected a tensor, got {type(got).__name__}")
    if got.shape != want.shape:
        raise CheckFailed(f"{what}: expected shape {list(want.shape)}, got {list(got.shape)}")
    got = got.detach().float()
    if torch.allclose(got, want, atol=atol, rtol=1e-4):
        print(f"\N{WHITE HEAVY CHECK MARK} {what}: correct")
        return
    for hint, wrong in mistakes.items():
        if wrong.shape == got.shape and torch.allclose(got, wrong.float(), atol=atol, rtol=1e-4):
            raise CheckFailed(f"{what}: {hint}")
    err = (got - want).abs().max().item()
    raise CheckFailed(f"{what}: wrong values (largest error {err:.3g}); compare each factor with the formula above")


def _call(what: str, fn, *args):
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except (RuntimeError, IndexError) as err:
        raise CheckFailed(f"{what} raised {type(err).__name__}: {err}. Check the shapes: per-sample "
                          "scalars such as alpha_bars[t] must be reshaped to [B, 1, 1, 1] to broadcast") from err


# ------------------------------------------------------------------ notebook 1
def check_q_sample(fn) -> None:
    """fn(x0, t, noise, schedule) = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise."""
    s, g = _schedule(), torch.Generator().manual_seed(0)
    x0, noise = torch.randn(8, 1, 6, 6, generator=g), torch.randn(8, 1, 6, 6, generator=g)
    t = torch.randint(1, 999, (8,), generator=g)
    ab, a = _col(s.alpha_bars[t], x0), _col(s.alphas[t], x0)
    ab_prev = _col(s.alpha_bars[t - 1], x0)
    want = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    _verdict("q_sample", _call("q_sample", fn, x0, t, noise, s), want, {
        "the square roots are missing: x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps":
            ab * x0 + (1 - ab) * noise,
        "you used alpha_t (one step) instead of alpha_bar_t (the product up to t)":
            a.sqrt() * x0 + (1 - a).sqrt() * noise,
        "off-by-one t: alpha_bars[t] already includes step t, use alpha_bars[t] not alpha_bars[t-1]":
            ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * noise,
        "the two coefficients are swapped: sqrt(alpha_bar_t) multiplies x0, sqrt(1 - alpha_bar_t) the noise":
            (1 - ab).sqrt() * x0 + ab.sqrt() * noise,
    })


# ------------------------------------------------------------------ notebook 2
def check_time_map(fn) -> None:
    """fn(t, T, x) = t / T as a [B, 1, H, W] channel."""
    x = torch.zeros(3, 1, 5, 7)
    t = torch.tensor([0, 250, 999])
    want = (t.float() / 1000).view(3, 1, 1, 1).expand(3, 1, 5, 7)
    got = _call("time map", fn, t, 1000, x)
    if isinstance(got, torch.Tensor) and got.shape == (3, 1, 1, 1):
        raise CheckFailed("time map: expand the [B, 1, 1, 1] tensor to the image size [B, 1, H, W]")
    _verdict("time map", got, want, {
        "t is not scaled: divide by T so the channel lies in [0, 1] like the pixels": want * 1000,
        "divide by T, not T - 1": t.float().div(999).view(3, 1, 1, 1).expand(3, 1, 5, 7),
    })


def check_posterior_mean(fn) -> None:
    """fn(x0_hat, x_t, t, schedule) = the mean of q(x_{t-1} | x_t, x0)."""
    s, g = _coarse_schedule(), torch.Generator().manual_seed(1)
    x0, x_t = torch.randn(8, 1, 4, 4, generator=g), torch.randn(8, 1, 4, 4, generator=g)
    t = torch.randint(1, 20, (8,), generator=g)
    a, b = _col(s.alphas[t], x0), _col(s.betas[t], x0)
    ab, ab_prev = _col(s.alpha_bars[t], x0), _col(s.alpha_bars_prev[t], x0)
    c0, ct = ab_prev.sqrt() * b / (1 - ab), a.sqrt() * (1 - ab_prev) / (1 - ab)
    _verdict("posterior mean", _call("posterior mean", fn, x0, x_t, t, s), c0 * x0 + ct * x_t, {
        "the coefficients of x0_hat and x_t are swapped": ct * x0 + c0 * x_t,
        "use alpha_bar_{t-1} (alpha_bars[t-1]) in the x0 coefficient, not alpha_bar_t":
            ab.sqrt() * b / (1 - ab) * x0 + ct * x_t,
        "the x_t coefficient needs sqrt(alpha_t), not alpha_t": c0 * x0 + a * (1 - ab_prev) / (1 - ab) * x_t,
    })


def check_ddpm_step(fn) -> None:
    """fn(x_t, t, x0_hat, schedule, noise) with an int t: posterior mean + sqrt(posterior variance) * noise."""
    s, g = _coarse_schedule(), torch.Generator().manual_seed(2)
    x_t, x0, z = (torch.randn(4, 1, 4, 4, generator=g) for _ in range(3))
    for t in (15, 1, 0):
        tt = torch.full((4,), t)
        mean = s.posterior_mean(x0, x_t, tt)
        var = s.posterior_variance[t]
        want = mean + var.sqrt() * z if t > 0 else mean
        _verdict(f"DDPM step at t={t}", _call("DDPM step", fn, x_t, t, x0, s, z), want, {
            "no noise is added at the last step (t = 0): return the mean itself": mean + s.betas[0].sqrt() * z,
            "the noise is scaled by the standard deviation sqrt(posterior_variance), not the variance":
                mean + var * z,
            "use the posterior variance beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t), not beta_t":
                mean + s.betas[t].sqrt() * z,
            "the step must add noise for t > 0: x_{t-1} = mean + sigma_t z": mean,
        })


# ------------------------------------------------------------------ notebook 3
def check_sinusoidal_embedding(fn) -> None:
    """fn(t, dim) = [sin(t w_i), cos(t w_i)] with w_i = 10000^(-i / (dim/2))."""
    t, dim = torch.tensor([0, 3, 50, 999]), 16
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32)
    ang = t.float()[:, None] * 10000 ** (-i / half)[None]
    want = torch.cat([ang.sin(), ang.cos()], 1)
    ang_bad = t.float()[:, None] * 10000 ** (-i / dim)[None]
    _verdict("sinusoidal embedding", _call("sinusoidal embedding", fn, t, dim), want, {
        "sin and cos are in the wrong order: sines first, then cosines": torch.cat([ang.cos(), ang.sin()], 1),
        "the frequency exponent is -i / (dim/2), not -i / dim": torch.cat([ang_bad.sin(), ang_bad.cos()], 1),
        "concatenate [sin | cos] along dim 1 rather than interleaving them":
            torch.stack([ang.sin(), ang.cos()], 2).reshape(4, dim),
    })


def _fixed_model(x, t):
    """A deterministic stand-in network for checking losses."""
    return 0.5 * x + 0.001 * t.float().view(-1, *([1] * (x.dim() - 1)))


def check_eps_loss(fn) -> None:
    """fn(model, x0, t, noise, schedule) = mean || model(x_t, t) - noise ||^2 with x_t = q_sample(x0, t, noise)."""
    s, g = _schedule(), torch.Generator().manual_seed(3)
    x0, noise = torch.randn(6, 1, 4, 4, generator=g), torch.randn(6, 1, 4, 4, generator=g)
    t = torch.randint(0, 1000, (6,), generator=g)
    x_t = s.q_sample(x0, t, noise)
    want = F.mse_loss(_fixed_model(x_t, t), noise)
    got = _call("eps loss", fn, _fixed_model, x0, t, noise, s)
    _verdict("eps loss", torch.as_tensor(got).reshape(()), want.reshape(()), {
        "the target of eps-prediction is the noise, not x0": F.mse_loss(_fixed_model(x_t, t), x0),
        "the model must see the noisy x_t, not the clean x0": F.mse_loss(_fixed_model(x0, t), noise),
        "take the mean of the squared errors, not the sum": F.mse_loss(_fixed_model(x_t, t), noise, reduction="sum"),
    }, atol=1e-5)


def check_reverse_mean(fn) -> None:
    """fn(x_t, t, eps, schedule) = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps)."""
    s, g = _schedule(), torch.Generator().manual_seed(4)
    x_t, eps = torch.randn(8, 1, 4, 4, generator=g), torch.randn(8, 1, 4, 4, generator=g)
    t = torch.randint(1, 999, (8,), generator=g)
    a, b, ab = _col(s.alphas[t], x_t), _col(s.betas[t], x_t), _col(s.alpha_bars[t], x_t)
    want = (x_t - b / (1 - ab).sqrt() * eps) / a.sqrt()
    _verdict("reverse mean", _call("reverse mean", fn, x_t, t, eps, s), want, {
        "the denominator is sqrt(1 - alpha_BAR_t), not sqrt(1 - alpha_t) (a misprint in one of our sources)":
            (x_t - b / (1 - a).sqrt() * eps) / a.sqrt(),
        "the whole bracket is divided by sqrt(alpha_t)": x_t - b / (1 - ab).sqrt() * eps,
        "divide by sqrt(alpha_t), not sqrt(alpha_bar_t)": (x_t - b / (1 - ab).sqrt() * eps) / ab.sqrt(),
        "the noise term is subtracted: x_t - beta_t / sqrt(1 - alpha_bar_t) eps": (x_t + b / (1 - ab).sqrt() * eps) / a.sqrt(),
    })


# ------------------------------------------------------------------ notebook 4
def check_add_time_embedding(fn) -> None:
    """fn(h, emb, proj) = h + proj(emb)[:, :, None, None]: one number per channel, the same at every pixel."""
    g = torch.Generator().manual_seed(5)
    h, emb = torch.randn(3, 4, 5, 5, generator=g), torch.randn(3, 8, generator=g)
    proj = torch.nn.Linear(8, 4)
    with torch.no_grad():
        p = proj(emb)
        got = _call("time embedding", fn, h, emb, proj)
    _verdict("time embedding added to the features", got, h + p[:, :, None, None], {
        "project the embedding with proj first, so it has one value per channel": h + emb[:, :4, None, None],
        "add the projected embedding, do not multiply": h * p[:, :, None, None],
    })


class _Spy(torch.nn.Module):
    """A linear classifier that remembers what it was called with."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 10)
        self.calls = []

    def forward(self, x, t):
        self.calls.append((x.detach().clone(), t.clone()))
        return self.lin(x.flatten(1)) + 0.01 * t.float()[:, None]


def check_classifier_loss(fn) -> None:
    """fn(classifier, x0, y, t, noise, schedule) = cross_entropy(classifier(q_sample(x0, t, noise), t), y)."""
    s, g = _schedule(), torch.Generator().manual_seed(6)
    x0, noise = torch.randn(6, 1, 4, 4, generator=g), torch.randn(6, 1, 4, 4, generator=g)
    t, y = torch.randint(1, 1000, (6,), generator=g), torch.randint(0, 10, (6,), generator=g)
    torch.manual_seed(0)
    spy = _Spy()
    got = _call("classifier loss", fn, spy, x0, y, t, noise, s)
    x_t = s.q_sample(x0, t, noise)
    if spy.calls:
        seen_x, seen_t = spy.calls[-1]
        if torch.allclose(seen_x, x0):
            raise CheckFailed("classifier loss: the classifier must see the noisy x_t = q_sample(x0, t, noise), "
                              "not the clean x0: that is what makes it noise-aware")
        if not torch.equal(seen_t, t):
            raise CheckFailed("classifier loss: pass the timesteps t of x_t to the classifier, too")
    with torch.no_grad():
        logits = spy.lin(x_t.flatten(1)) + 0.01 * t.float()[:, None]
    _verdict("classifier loss", torch.as_tensor(got).detach().reshape(()), F.cross_entropy(logits, y).reshape(()), {
        "use cross-entropy on the logits (F.cross_entropy applies log-softmax itself)":
            F.nll_loss(logits, y).reshape(()),
    }, atol=1e-5)


# ------------------------------------------------------------------ notebook 5
def _toy_classifier():
    from .toy import GaussianMixture2D

    s = _schedule()
    return GaussianMixture2D(), s


def check_classifier_grad(fn) -> None:
    """fn(classifier, x_t, t, y) = grad_x log softmax(classifier(x_t, t))[y]."""
    toy, s = _toy_classifier()
    clf = toy.classifier(s)
    g = torch.Generator().manual_seed(7)
    x, t = torch.randn(16, 2, generator=g), torch.randint(0, 1000, (16,), generator=g)
    y = torch.randint(0, 3, (16,), generator=g)

    def grad_of(f):
        xx = x.clone().requires_grad_(True)
        (gr,) = torch.autograd.grad(f(clf(xx, t)).sum(), xx)
        return gr
    want = grad_of(lambda lg: F.log_softmax(lg, 1).gather(1, y[:, None]))
    with torch.no_grad():  # it must work where the sampler has switched gradients off
        got = _call("classifier gradient", fn, clf, x, t, y)
    _verdict("classifier gradient", got, want, {
        "take the gradient of the LOG-probability (log_softmax), not of the probability (softmax)":
            grad_of(lambda lg: F.softmax(lg, 1).gather(1, y[:, None])),
        "take the gradient of log_softmax at y, not of the raw logit at y": grad_of(lambda lg: lg.gather(1, y[:, None])),
        "pick the log-probability of each sample's own class y, not the sum over all classes":
            grad_of(lambda lg: F.log_softmax(lg, 1)),
        "the sign is flipped: the gradient of log p(y | x_t) points toward class y":
            -want,
    })


def check_guided_mean(fn) -> None:
    """fn(mean, variance, grad, scale) = mean + scale * variance * grad."""
    g = torch.Generator().manual_seed(8)
    mean, grad = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    var, s = torch.rand(4, 1, generator=g) * 0.1 + 0.01, 3.0
    _verdict("guided mean", _call("guided mean", fn, mean, var, grad, s), mean + s * var * grad, {
        "the sign of the guidance term: ADD s * Sigma * grad, to move toward the class": mean - s * var * grad,
        "scale by the variance Sigma_t, not by the standard deviation": mean + s * var.sqrt() * grad,
        "the scale s is missing": mean + var * grad,
    })


def check_guided_ddim_step(fn) -> None:
    """fn(x_t, t, t_prev, eps, grad, scale, schedule) -> x_{t_prev} by DDIM (eta = 0) with eps shifted by
    -scale * sqrt(1 - ab_t) * grad; t_prev = -1 means the last step (ab = 1)."""
    s, g = _schedule(), torch.Generator().manual_seed(9)
    x, eps, grad = (torch.randn(4, 2, generator=g) for _ in range(3))
    scale, t, t_prev = 2.0, 600, 580
    ab, ab_prev = s.alpha_bars[t], s.alpha_bars[t_prev]

    def ddim(x_t, e):
        x0 = (x_t - (1 - ab).sqrt() * e) / ab.sqrt()
        return ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * e
    want = ddim(x, eps - scale * (1 - ab).sqrt() * grad)
    sigma = s.betas[t].sqrt()
    _verdict("guided DDIM step", _call("guided DDIM step", fn, x, t, t_prev, eps, grad, scale, s), want, {
        "the sign: eps_hat = eps - s sqrt(1 - alpha_bar_t) grad (eps points AWAY from the data)":
            ddim(x, eps + scale * (1 - ab).sqrt() * grad),
        "scale the gradient by sqrt(1 - alpha_bar_t), not by sigma_t = sqrt(beta_t)":
            ddim(x, eps - scale * sigma * grad),
        "shift eps, not x_t: subtracting the gradient from x_t is the bug of one of our sources":
            ddim(x - scale * sigma * grad, eps),
        "the guided eps_hat must be used in both places of the update, not only in x0_hat":
            ab_prev.sqrt() * (x - (1 - ab).sqrt() * (eps - scale * (1 - ab).sqrt() * grad)) / ab.sqrt()
            + (1 - ab_prev).sqrt() * eps,
    })


# ------------------------------------------------------------------ notebook 6
def check_drop_labels(fn) -> None:
    """fn(y, p_uncond, null_label, u) = null_label where u < p_uncond, else y (u: uniform numbers)."""
    g = torch.Generator().manual_seed(10)
    y, u = torch.randint(0, 10, (1000,), generator=g), torch.rand(1000, generator=g)
    want = torch.where(u < 0.2, torch.full_like(y, 10), y)
    _verdict("conditioning dropout", _call("conditioning dropout", fn, y, 0.2, 10, u).float(), want.float(), {
        "labels are dropped with probability 1 - p: replace where u < p_uncond":
            torch.where(u >= 0.2, torch.full_like(y, 10), y).float(),
        "a dropped label becomes the null label (10), not class 0": torch.where(u < 0.2, torch.zeros_like(y), y).float(),
    })


def check_cfg_eps(fn) -> None:
    """fn(eps_uncond, eps_cond, scale) = eps_u + scale * (eps_c - eps_u)."""
    g = torch.Generator().manual_seed(11)
    u, c, s = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g), 3.0
    _verdict("classifier-free guidance", _call("cfg", fn, u, c, s), u + s * (c - u), {
        "the two predictions are swapped: start from eps_uncond and move toward eps_cond": c + s * (u - c),
        "that is the w-convention (1 + w) eps_c - w eps_u with w = s; the course writes eps_u + s (eps_c - eps_u)":
            (1 + s) * c - s * u,
        "the unconditional prediction is missing before the guided difference": s * (c - u),
    })
