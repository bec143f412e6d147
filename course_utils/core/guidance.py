"""Guidance, one formula per function.

Bayes' rule on the noisy marginal gives the score of the class-conditional:

    grad log p(x_t | y) = grad log p(x_t) + grad log p(y | x_t)

and a scale s multiplies the classifier's term: each step follows the score of p_t(x_t) p_t(y | x_t)^s.
s = 1 samples p(x | y) when the scores are exact and the steps small (learned models and short chains need
not: s = 1 often under-guides); s > 1 sharpens the classifier's vote and 0 < s < 1 flattens it. The clean
target p(x) p(y | x)^s is reached only approximately for s != 1 (noising a product is not the product of
the noised factors; notebook 5 measures the gap on the 2-D toy).

Scale conventions used throughout the course:
- classifier guidance: s = 0 is the unguided model, s = 1 the Bayes posterior;
- classifier-free guidance: ``eps_u + s (eps_c - eps_u)``, so s = 0 is the
  unconditional model and s = 1 the plain conditional one. Papers that write
  ``(1 + w) eps_c - w eps_u`` use w = s - 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

NULL_LABEL = 10   # the label meaning "no class" for the course's conditional networks (MNIST has 0..9)


def validate_scale(scale, name: str = "guidance scale") -> float:
    """A guidance scale must be a finite number >= 0; return it as a float."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number >= 0, got {scale!r}") from None
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {scale!r}")
    return value


def validate_labels(y, batch: int, num_classes: int | None, device=None,
                 allow: int | None = None) -> torch.Tensor:
    """Return class labels as a LongTensor ``[batch]`` with values in ``0..num_classes-1``.

    An int is repeated over the batch. ``allow`` names one extra value that is accepted
    too (the null label of classifier-free guidance); ``num_classes=None`` checks only
    that labels are >= 0.
    """
    if isinstance(y, int) and not isinstance(y, bool):
        y = torch.full((batch,), y, dtype=torch.long)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"class labels must be an int or a LongTensor of shape [{batch}], got {type(y).__name__}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"class labels must be integers, got dtype {y.dtype}")
    if y.dim() == 0:
        y = y.expand(batch)
    if y.shape != (batch,):
        raise ValueError(f"class labels must have shape [{batch}], got {list(y.shape)}")
    ok = y >= 0
    if num_classes is not None:
        ok &= y < num_classes
    if allow is not None:
        ok |= y == allow
    if not bool(ok.all()):
        bad = y[~ok][0].item()
        extra = f" (or the null label {allow})" if allow is not None else ""
        top = "" if num_classes is None else f"..{num_classes - 1}"
        raise ValueError(f"class label {bad} is out of range: expected 0{top}{extra}")
    return y.to(device=device, dtype=torch.long)


def classifier_grad(classifier, x_t: torch.Tensor, t: torch.Tensor, y) -> torch.Tensor:
    """grad_{x_t} log p_phi(y | x_t, t): the gradient of log_softmax(logits) gathered at y.

    The gradient is taken with respect to x_t itself, under ``torch.enable_grad()`` so it
    works inside a sampler's ``no_grad``. Summing over the batch gives each sample its own
    gradient, since sample i's log-probability depends on x_t[i] alone.
    """
    with torch.enable_grad():
        x = x_t.detach().float().requires_grad_(True)
        logits = classifier(x, t).float()
        if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(f"the classifier must return logits of shape [B, K] with B={x.shape[0]}, "
                             f"got {list(logits.shape)}")
        y = validate_labels(y, x.shape[0], logits.shape[1], device=x.device)
        log_p = F.log_softmax(logits, dim=1).gather(1, y[:, None]).sum()
        (grad,) = torch.autograd.grad(log_p, x)
    return grad.to(x_t.dtype)


def guided_mean(mean: torch.Tensor, variance: torch.Tensor, grad: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier guidance as a shift of the DDPM mean:  mu + s * Sigma_t * grad log p(y | x_t)."""
    return mean + scale * variance * grad


def guided_eps(eps: torch.Tensor, alpha_bar_t: torch.Tensor, grad: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier guidance as a shift of the predicted noise (Dhariwal and Nichol, Algorithm 2):

        eps_hat = eps - s * sqrt(1 - alpha_bar_t) * grad log p(y | x_t)

    The minus sign: eps = -sqrt(1 - alpha_bar_t) * score, so raising the score lowers eps.
    """
    return eps - scale * (1 - alpha_bar_t).sqrt() * grad


def cfg_eps(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance:  eps_u + s * (eps_c - eps_u)  (s = 1: the conditional model)."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


@dataclass(frozen=True)
class Guidance:
    """What steers sampling toward the classes y, the one form the samplers use inside:

    - ``Guidance.none()``: the model alone (called as ``model(x_t, t, y)`` when y is given);
    - ``Guidance.by_classifier(classifier, scale)``: add ``scale * grad log p(y | x_t)`` from a noise-aware
      classifier, to the DDPM mean (:func:`guided_mean`) or, as an eps shift, in DDIM (:func:`guided_eps`);
      the model is called unconditionally;
    - ``Guidance.classifier_free(scale, null_label)``: ``eps_u + scale * (eps_c - eps_u)`` (:func:`cfg_eps`) from
      one conditional model called with the null label and with y.

    Both kinds may be combined (a classifier's gradient on top of classifier-free guidance). The scales are
    checked here, once, when the object is made.
    """
    classifier: object = None
    classifier_scale: float = 0.0
    cfg_scale: float | None = None
    null_label: int = NULL_LABEL

    def __post_init__(self):
        object.__setattr__(self, "classifier_scale", validate_scale(self.classifier_scale, "classifier_scale"))
        if self.cfg_scale is not None:
            object.__setattr__(self, "cfg_scale", validate_scale(self.cfg_scale, "cfg_scale"))
        if self.classifier_scale > 0 and self.classifier is None:
            raise ValueError("classifier_scale > 0 needs a classifier (classifier=...)")

    @classmethod
    def none(cls) -> "Guidance":
        return cls()

    @classmethod
    def by_classifier(cls, classifier, scale: float) -> "Guidance":
        return cls(classifier=classifier, classifier_scale=scale)

    @classmethod
    def classifier_free(cls, scale: float, null_label: int = NULL_LABEL) -> "Guidance":
        return cls(cfg_scale=scale, null_label=null_label)

    @property
    def uses_classifier(self) -> bool:
        return self.classifier is not None and self.classifier_scale > 0

    @property
    def uses_cfg(self) -> bool:
        return self.cfg_scale is not None

    def classifier_gradient(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """grad log p(y | x_t) from the classifier (:func:`classifier_grad`), or None without classifier guidance."""
        return classifier_grad(self.classifier, x_t, t, y) if self.uses_classifier else None
