"""The forward (noising) process of a DDPM and the algebra that inverts it.

Notation (timesteps are integers ``t`` in ``0..T-1``)::

    beta_t                      variance added at step t
    alpha_t     = 1 - beta_t
    alpha_bar_t = alpha_0 * alpha_1 * ... * alpha_t
    q(x_t | x_0) = N( sqrt(alpha_bar_t) x_0 , (1 - alpha_bar_t) I )

Every method is shape-agnostic: the per-timestep scalars are broadcast over all
dimensions after the first, so ``[B, 1, 32, 32]`` images and ``[B, 2]`` points
work the same.
"""
from __future__ import annotations

import math

import torch
from torch import nn

SCHEDULE_KINDS = ("linear", "cosine", "custom")


def linear_betas(T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """beta_t rising evenly from ``beta_start`` to ``beta_end`` (Ho et al., 2020)."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol and Dhariwal's cosine schedule.

    f(u) = cos^2( (u/T + s) / (1 + s) * pi/2 ),   alpha_bar_t = f(t+1) / f(0),
    so beta_t = 1 - f(t+1) / f(t), clipped at ``max_beta`` near u = T.
    """
    u = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


# ------------------------------------------------------------------ the conversions, given ab = alpha_bar_t
# (the formulas alone: the methods of NoiseSchedule check t and look ab up, then call these; a sampler, whose
# timesteps were checked once at its entry, calls them directly)
def x0_from_eps_at(ab: torch.Tensor, x_t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab)."""
    return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()


def eps_from_x0_at(ab: torch.Tensor, x_t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """eps = (x_t - sqrt(ab) x_0) / sqrt(1 - ab)."""
    return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()


def x0_from_v_at(ab: torch.Tensor, x_t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """x_0 = sqrt(ab) x_t - sqrt(1 - ab) v."""
    return ab.sqrt() * x_t - (1 - ab).sqrt() * v


def eps_from_v_at(ab: torch.Tensor, x_t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """eps = sqrt(1 - ab) x_t + sqrt(ab) v."""
    return (1 - ab).sqrt() * x_t + ab.sqrt() * v


class NoiseSchedule(nn.Module):
    """The betas, alphas and alpha_bars of a DDPM, kept as registered buffers.

    Buffers move with ``.to(device)`` and are saved in a ``state_dict``, so a model
    and its schedule never end up on different devices.

    >>> s = NoiseSchedule(T=1000, kind="linear")
    >>> s.alpha_bars.shape
    torch.Size([1000])
    """

    def __init__(self, T: int = 1000, kind: str = "linear", beta_start: float = 1e-4,
                 beta_end: float = 0.02, betas: torch.Tensor | None = None):
        super().__init__()
        if not isinstance(T, int) or isinstance(T, bool) or T < 1:
            raise ValueError(f"T must be a positive integer number of steps, got {T!r}")
        if kind == "custom":
            if betas is None or betas.shape != (T,) or not bool(((betas > 0) & (betas < 1)).all()):
                raise ValueError(f"a custom schedule needs betas: T={T} values in (0, 1)")
            betas = betas.double()
        elif kind == "linear":
            if not 0 < beta_start <= beta_end < 1:
                raise ValueError("the linear schedule needs 0 < beta_start <= beta_end < 1, "
                                 f"got beta_start={beta_start}, beta_end={beta_end}")
            betas = linear_betas(T, beta_start, beta_end)
        elif kind == "cosine":
            betas = cosine_betas(T)
        else:
            raise ValueError(f"unknown schedule kind {kind!r}: expected one of {SCHEDULE_KINDS[:2]}")
        self.T, self.kind = T, kind
        self.beta_start, self.beta_end = beta_start, beta_end

        alphas = 1 - betas
        alpha_bars = torch.cumprod(alphas, dim=0)
        # alpha_bar_{t-1}, with alpha_bar_{-1} = 1 (nothing has been noised before t = 0)
        alpha_bars_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
        # Var q(x_{t-1} | x_t, x_0) = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t); zero at t = 0
        posterior_variance = betas * (1 - alpha_bars_prev) / (1 - alpha_bars)
        # the two weights of the posterior mean, computed in float64 (1 - alpha_bar_t is tiny at small t)
        coef_x0 = alpha_bars_prev.sqrt() * betas / (1 - alpha_bars)
        coef_xt = alphas.sqrt() * (1 - alpha_bars_prev) / (1 - alpha_bars)
        for name, value in [("betas", betas), ("alphas", alphas), ("alpha_bars", alpha_bars),
                            ("alpha_bars_prev", alpha_bars_prev),
                            ("posterior_variance", posterior_variance),
                            ("posterior_coef_x0", coef_x0), ("posterior_coef_xt", coef_xt)]:
            self.register_buffer(name, value.float())

    def respace(self, timesteps) -> "NoiseSchedule":
        """The schedule of the sub-chain that visits only ``timesteps`` (Nichol and Dhariwal's respacing).

        Its step i goes to ``timesteps[i]`` of this schedule: its alpha_bar is alpha_bars[timesteps[i]],
        so beta'_i = 1 - alpha_bar'_i / alpha_bar'_{i-1}. Ancestral sampling on it runs in len(timesteps) steps.
        """
        ts = sorted(set(int(t) for t in timesteps))
        if not ts or ts[0] < 0 or ts[-1] >= self.T:
            raise ValueError(f"timesteps must lie in 0..{self.T - 1}")
        ab = self.alpha_bars.double().cpu()[ts]
        prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        return NoiseSchedule(T=len(ts), kind="custom", betas=1 - ab / prev).to(self.betas.device)

    def extra_repr(self) -> str:
        if self.kind == "linear":
            return f"T={self.T}, kind='linear', beta_start={self.beta_start}, beta_end={self.beta_end}"
        return f"T={self.T}, kind='{self.kind}'"

    def config(self) -> dict:
        """The keyword arguments that rebuild this schedule."""
        return {"T": self.T, "kind": self.kind, "beta_start": self.beta_start,
                "beta_end": self.beta_end}

    # ------------------------------------------------------------------ helpers
    def validate_t(self, t, batch: int) -> torch.Tensor:
        """Return ``t`` as a LongTensor of shape ``[batch]`` on the schedule's device.

        An int (or 0-d tensor) is repeated over the batch; anything else must be an
        integer tensor of shape ``[batch]`` with values in ``0..T-1``.
        """
        device = self.betas.device
        if isinstance(t, int) and not isinstance(t, bool):
            t = torch.full((batch,), t, dtype=torch.long, device=device)
        elif isinstance(t, torch.Tensor):
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                raise TypeError(f"t must hold integer timesteps (a LongTensor), got dtype {t.dtype}")
            if t.dim() == 0:
                t = t.expand(batch)
            if t.shape != (batch,):
                raise ValueError(f"t must have shape [{batch}] (one timestep per sample), "
                                 f"got shape {list(t.shape)}")
            t = t.to(device=device, dtype=torch.long)
        else:
            raise TypeError(f"t must be an int or a LongTensor of shape [B], got {type(t).__name__}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.T):
            raise ValueError(f"timesteps must lie in 0..{self.T - 1} (T={self.T}), "
                             f"got values from {int(t.min())} to {int(t.max())}")
        return t

    def checked_t(self, t, x: torch.Tensor) -> torch.Tensor:
        """:meth:`validate_t` for the batch of ``x`` [B, ...]: what every public method below does first, once."""
        if x.dim() < 1:
            raise ValueError("x must have a batch dimension first, got a 0-d tensor")
        return self.validate_t(t, x.shape[0])

    @staticmethod
    def at(values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``values[t]`` reshaped to ``[B, 1, ..., 1]`` so it broadcasts against ``x`` (``t``: checked timesteps)."""
        return values.to(x.device)[t.to(x.device)].reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)

    # ----------------------------------------------------------- the contract
    def q_sample(self, x0: torch.Tensor, t, noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample q(x_t | x_0) in one step:  x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps."""
        t = self.checked_t(t, x0)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        elif noise.shape != x0.shape:
            raise ValueError(f"noise must have the shape of x0 {list(x0.shape)}, got {list(noise.shape)}")
        ab = self.at(self.alpha_bars, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def x0_from_eps(self, x_t: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """Invert q_sample for x_0:  x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
        return x0_from_eps_at(self.at(self.alpha_bars, self.checked_t(t, x_t), x_t), x_t, eps)

    def eps_from_x0(self, x_t: torch.Tensor, t, x0: torch.Tensor) -> torch.Tensor:
        """Invert q_sample for the noise:  eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
        return eps_from_x0_at(self.at(self.alpha_bars, self.checked_t(t, x_t), x_t), x_t, x0)

    def v_target(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """The velocity of Salimans & Ho (2022):  v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0.

        With a = sqrt(alpha_bar_t), b = sqrt(1 - alpha_bar_t) (so a^2 + b^2 = 1), x_t = a x_0 + b eps and
        v = a eps - b x_0 are x_0 and eps turned by one angle: each of x_0, eps is read back from (x_t, v).
        """
        t = self.checked_t(t, x0)
        ab = self.at(self.alpha_bars, t, x0)
        return ab.sqrt() * noise - (1 - ab).sqrt() * x0

    def x0_from_v(self, x_t: torch.Tensor, t, v: torch.Tensor) -> torch.Tensor:
        """x_0 from the velocity:  x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v."""
        return x0_from_v_at(self.at(self.alpha_bars, self.checked_t(t, x_t), x_t), x_t, v)

    def eps_from_v(self, x_t: torch.Tensor, t, v: torch.Tensor) -> torch.Tensor:
        """The noise from the velocity:  eps = sqrt(1 - alpha_bar_t) x_t + sqrt(alpha_bar_t) v."""
        return eps_from_v_at(self.at(self.alpha_bars, self.checked_t(t, x_t), x_t), x_t, v)

    def posterior_mean(self, x0: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """Mean of q(x_{t-1} | x_t, x_0):

        mu = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) * x_0
           + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * x_t
        """
        t = self.checked_t(t, x_t)
        return self.at(self.posterior_coef_x0, t, x_t) * x0 + self.at(self.posterior_coef_xt, t, x_t) * x_t

    def mean_from_eps(self, x_t: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """The reverse mean written with the noise:

        mu = 1/sqrt(alpha_t) * ( x_t - beta_t / sqrt(1 - alpha_bar_t) * eps )

        (the denominator is sqrt(1 - alpha_BAR_t), not sqrt(1 - alpha_t)).
        Equal to ``posterior_mean(x0_from_eps(x_t, t, eps), x_t, t)``.
        """
        t = self.checked_t(t, x_t)
        ab = self.at(self.alpha_bars, t, x_t)
        beta = self.at(self.betas, t, x_t)
        alpha = self.at(self.alphas, t, x_t)
        return (x_t - beta / (1 - ab).sqrt() * eps) / alpha.sqrt()

    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio of x_t:  SNR(t) = alpha_bar_t / (1 - alpha_bar_t)."""
        return self.alpha_bars / (1 - self.alpha_bars)
