"""A 2-D Gaussian mixture whose noisy score and noisy classifier are known exactly.

Each class k is one isotropic Gaussian N(mu_k, std^2 I) with prior weight w_k. Under
the forward process, x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps, each component stays
Gaussian:

    q_t(x_t | y = k) = N( sqrt(ab_t) mu_k , (ab_t std^2 + 1 - ab_t) I )

so log q_t(x_t), its score, the exact noise predictor eps* = -sqrt(1 - ab_t) * score,
and the exact classifier p_t(y | x_t) all have closed forms. Samplers run with these
must reproduce the mixture, which is how the tests check them.
"""
from __future__ import annotations

import math

import torch

from .guidance import validate_labels


class GaussianMixture2D:
    def __init__(self, means=None, std: float = 0.12, weights=None):
        if means is None:
            means = [[-0.6, -0.4], [0.6, -0.4], [0.0, 0.6]]
        self.means = torch.as_tensor(means, dtype=torch.float32)
        if self.means.dim() != 2 or self.means.shape[1] != 2:
            raise ValueError(f"means must have shape [K, 2], got {list(self.means.shape)}")
        self.K = self.means.shape[0]
        if weights is None:
            weights = [1.0 / self.K] * self.K
        self.weights = torch.as_tensor(weights, dtype=torch.float32)
        if self.weights.shape != (self.K,) or bool((self.weights <= 0).any()):
            raise ValueError(f"weights must be {self.K} positive numbers")
        self.weights = self.weights / self.weights.sum()
        if std <= 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.std = float(std)

    # ----------------------------------------------------------------- data
    def sample(self, n: int, y=None, generator: torch.Generator | None = None):
        """Draw ``n`` points and their classes (all of class ``y`` if given)."""
        if y is None:
            y = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        else:
            y = validate_labels(y, n, self.K)
        x = self.means[y] + self.std * torch.randn(n, 2, generator=generator)
        return x, y

    # ------------------------------------------------------- noisy marginals
    def _moments(self, x_t, ab):
        """Component centres sqrt(ab) mu_k [B, K, 2] and variance ab std^2 + 1 - ab [B, 1]."""
        centres = ab.sqrt()[:, None, :] * self.means.to(x_t.device)[None]
        return centres, ab * self.std**2 + 1 - ab

    def _component_log_probs(self, x_t, ab) -> torch.Tensor:
        centres, var = self._moments(x_t, ab)
        sq = ((x_t[:, None, :] - centres) ** 2).sum(-1)  # [B, K]
        log_norm = -0.5 * sq / var - math.log(2 * math.pi) - torch.log(var)
        return torch.log(self.weights.to(x_t.device))[None] + log_norm

    def component_log_probs(self, x_t, t, schedule) -> torch.Tensor:
        """log w_k + log q_t(x_t | y = k), shape [B, K]."""
        return self._component_log_probs(x_t, schedule.at(schedule.alpha_bars, schedule.checked_t(t, x_t), x_t))

    def log_prob(self, x_t, t, schedule) -> torch.Tensor:
        """log q_t(x_t), shape [B] (t = 0 is almost the clean mixture)."""
        return torch.logsumexp(self.component_log_probs(x_t, t, schedule), dim=1)

    def score(self, x_t, t, schedule, y=None) -> torch.Tensor:
        """grad_x log q_t(x_t) (or grad_x log q_t(x_t | y) when ``y`` is given)."""
        t = schedule.checked_t(t, x_t)
        centres, var = self._moments(x_t, schedule.at(schedule.alpha_bars, t, x_t))
        comp_scores = -(x_t[:, None, :] - centres) / var[:, :, None]  # [B, K, 2]
        if y is None:
            resp = torch.softmax(self.component_log_probs(x_t, t, schedule), dim=1)
        else:
            y = validate_labels(y, x_t.shape[0], self.K, device=x_t.device)
            resp = torch.nn.functional.one_hot(y, self.K).float()
        return (resp[:, :, None] * comp_scores).sum(1)

    # ----------------------------------------------------- exact "networks"
    def eps_model(self, schedule):
        """The exact noise predictor eps*(x_t, t[, y]) = -sqrt(1 - ab_t) * score.

        Called with a label it is class-conditional; the label K means "no class"
        (the null label of classifier-free guidance).
        """
        def model(x_t, t, y=None):
            if y is not None:
                y = validate_labels(y, x_t.shape[0], self.K, device=x_t.device, allow=self.K)
                cond = self.score(x_t, t, schedule, y.clamp(max=self.K - 1))
                uncond = self.score(x_t, t, schedule)
                s = torch.where((y == self.K)[:, None], uncond, cond)
            else:
                s = self.score(x_t, t, schedule)
            ab = schedule.at(schedule.alpha_bars, schedule.checked_t(t, x_t), x_t)
            return -(1 - ab).sqrt() * s
        return model

    def x0_model(self, schedule):
        """The exact x0 predictor E[x_0 | x_t] (Tweedie), via x0_from_eps of the exact eps."""
        eps = self.eps_model(schedule)

        def model(x_t, t, y=None):
            return schedule.x0_from_eps(x_t, t, eps(x_t, t, y))
        return model

    def v_model(self, schedule):
        """The exact velocity predictor v = sqrt(ab_t) eps* - sqrt(1 - ab_t) x0*, from the exact eps and x0."""
        eps = self.eps_model(schedule)

        def model(x_t, t, y=None):
            e = eps(x_t, t, y)
            return schedule.v_target(schedule.x0_from_eps(x_t, t, e), t, e)
        return model

    def classifier(self, schedule):
        """The exact noisy classifier: logits whose softmax is p_t(y | x_t)."""
        def model(x_t, t):
            return self.component_log_probs(x_t, t, schedule)
        return model

    def tilted_log_density(self, x: torch.Tensor, y: int, scale: float) -> torch.Tensor:
        """Unnormalised log of p(x) p(y | x)^s on clean points (for plotting guidance).

        s = 0 gives the mixture, s = 1 the class-y component alone, s > 1 sharpens
        toward the region where the classifier is most certain.
        """
        comp = self._component_log_probs(x, torch.ones(x.shape[0], 1, device=x.device))
        log_px = torch.logsumexp(comp, dim=1)
        log_py = comp[:, y] - log_px
        return log_px + scale * log_py
