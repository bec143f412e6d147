"""Ancestral DDPM sampling and DDIM sampling, with classifier and classifier-free guidance.

Both samplers share one denoising call (:func:`predict`), which turns whatever the
model predicts (eps or x0, guided or not) into the pair ``(eps_hat, x0_hat)``.
They differ only in how they step from x_t to the previous state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from .device import autocast_for
from .guidance import NULL_LABEL, cfg_eps, classifier_grad, guided_eps, guided_mean, validate_labels, validate_scale

PREDICTIONS = ("eps", "x0", "v")


def validate_prediction(prediction: str) -> str:
    """What a model outputs must be "eps", "x0" or "v" (the velocity, :meth:`NoiseSchedule.v_target`)."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be 'eps', 'x0' or 'v', got {prediction!r}")
    return prediction


def model_device(model, device=None) -> torch.device:
    """Where sampling runs: ``device`` if given, else where the model's parameters are (the CPU for a plain
    function). The model is never moved: a network elsewhere than ``device`` is an error that says so."""
    params = next(iter(model.parameters()), None) if isinstance(model, nn.Module) else None
    if device is None:
        return params.device if params is not None else torch.device("cpu")
    device = torch.device(device)
    if params is not None and params.device.type != device.type:
        raise ValueError(f"the model is on {params.device} but device={device}: move it first, "
                         f"model.to({str(device)!r})")
    return device


def _validate_output(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if out.shape != x.shape:
        raise ValueError(f"the model must return a tensor shaped like its input {list(x.shape)}, "
                         f"got {list(out.shape)}")
    return out.float()


def predict(model, schedule, x_t, t, *, prediction="eps", y=None, cfg_scale=None, null_label=NULL_LABEL,
            conditional=None, clip_x0=False, autocast=False):
    """One denoising call: return ``(eps_hat, x0_hat)`` for the batch ``x_t`` at timesteps ``t``.

    - ``cfg_scale`` not None: two passes (the null label and ``y``) combined with
      ``cfg_eps(eps_u, eps_c, cfg_scale)``, done as one batch of 2B.
    - otherwise ``model(x_t, t, y)`` when ``conditional``, else ``model(x_t, t)``.

    The model's output is read as eps, x0 or v according to ``prediction``; the others are
    derived with the schedule. With ``clip_x0`` the x0 estimate is clamped to [-1, 1]
    and eps recomputed from it, so the pair stays consistent.
    """
    with autocast_for(x_t.device, autocast):
        if cfg_scale is not None:
            b = x_t.shape[0]
            nulls = torch.full_like(y, null_label)
            out = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([nulls, y]))
            out = _validate_output(out, torch.cat([x_t, x_t]))
            out_u, out_c = out[:b], out[b:]
        else:
            out = model(x_t, t, y) if conditional else model(x_t, t)
            out = _validate_output(out, x_t)
    x_t = x_t.float()
    if cfg_scale is not None:
        # eps, x0 and v are each a + b * (the other) at fixed x_t and t, with weights summing to 1 in the guidance:
        # so guiding the model's output, whichever it is, gives the same eps_hat as guiding eps
        out = cfg_eps(out_u, out_c, cfg_scale)
    if prediction == "eps":
        eps = out
        x0 = schedule.x0_from_eps(x_t, t, eps)
    elif prediction == "x0":
        x0 = out
        eps = schedule.eps_from_x0(x_t, t, x0)
    else:
        x0, eps = schedule.x0_from_v(x_t, t, out), schedule.eps_from_v(x_t, t, out)
    if clip_x0:
        x0 = x0.clamp(-1, 1)
        eps = schedule.eps_from_x0(x_t, t, x0)
    return eps, x0


@dataclass(frozen=True)
class Guidance:
    """What steers sampling toward the classes y:

    - ``Guidance.none()``: the model alone (called as ``model(x_t, t, y)`` when y is given);
    - ``Guidance.by_classifier(classifier, scale)``: add ``scale * grad log p(y | x_t)`` from a noise-aware
      classifier, to the DDPM mean or (as an eps shift) in DDIM; the model is called unconditionally;
    - ``Guidance.classifier_free(scale, null_label)``: ``eps_u + scale * (eps_c - eps_u)`` from one conditional
      model called with the null label and with y.

    Both kinds may be combined (a classifier's gradient on top of classifier-free guidance).
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


class _Setup:
    """Validated sampler arguments (shared by every sampler): the batch, the device, the labels, the guidance."""

    def __init__(self, model, schedule, shape, prediction, y, guidance: Guidance, generator, device, clip_x0):
        validate_prediction(prediction)
        try:
            shape = tuple(int(s) for s in shape)
        except TypeError:
            raise TypeError(f"shape must be a tuple of ints such as (16, 1, 32, 32), got {shape!r}") from None
        if len(shape) < 2 or min(shape) < 1:
            raise ValueError(f"shape must be [B, ...] with every size >= 1, got {list(shape)}")
        self.guidance = guidance
        if (guidance.uses_classifier or guidance.cfg_scale is not None) and y is None:
            what = "classifier guidance" if guidance.uses_classifier else "classifier-free guidance"
            raise ValueError(f"{what} needs the target class: pass y=<label> (an int or a LongTensor [B])")
        self.device = model_device(model, device)
        b = shape[0]
        if y is not None:
            if guidance.classifier is not None and guidance.cfg_scale is None:
                # the range is checked against the classifier's own number of classes
                y = validate_labels(y, b, None, device=self.device)
            else:
                y = validate_labels(y, b, guidance.null_label, device=self.device, allow=guidance.null_label)
        self.model, self.schedule, self.shape = model, schedule.to(self.device), shape
        self.prediction, self.y = prediction, y
        self.conditional = y is not None and guidance.cfg_scale is None and guidance.classifier is None
        self.clip_x0 = len(shape) == 4 if clip_x0 is None else bool(clip_x0)
        self.generator = generator
        self.noise_device = generator.device if generator is not None else self.device

    def noise(self) -> torch.Tensor:
        return torch.randn(self.shape, generator=self.generator, device=self.noise_device).to(self.device)

    def timesteps(self, t: int) -> torch.Tensor:
        return torch.full((self.shape[0],), t, dtype=torch.long, device=self.device)

    def denoise(self, x, t, autocast):
        return predict(self.model, self.schedule, x, t, prediction=self.prediction, y=self.y,
                       cfg_scale=self.guidance.cfg_scale, null_label=self.guidance.null_label,
                       conditional=self.conditional, clip_x0=self.clip_x0, autocast=autocast)

    def grad(self, x, t):
        return classifier_grad(self.guidance.classifier, x, t, self.y)


def spaced_timesteps(T: int, steps: int) -> list[int]:
    """``steps`` timesteps spread evenly over 0..T-1, from T-1 down to 0: the timesteps DDIM visits, and
    the sub-chain a respaced DDPM runs on (:meth:`NoiseSchedule.respace`)."""
    if not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an integer in 1..T={T}, got {steps!r}")
    ts = torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long().tolist()
    return sorted(set(ts), reverse=True)


def _one_timestep(t, schedule, name: str = "t") -> int:
    """A step's timestep: one integer in 0..T-1 for the whole batch (a 0-d or one-element tensor is read as one)."""
    if isinstance(t, torch.Tensor):
        if t.numel() != 1:
            raise ValueError(f"{name} is one timestep for the whole batch (an int), got a tensor of shape "
                             f"{list(t.shape)}")
        t = t.item()
    if isinstance(t, float) or not 0 <= int(t) < schedule.T:
        raise ValueError(f"{name} must be an integer in 0..{schedule.T - 1}, got {t!r}")
    return int(t)


def ddpm_step(x_t: torch.Tensor, t: int, x0_hat: torch.Tensor, schedule, noise: torch.Tensor | None = None, *,
              grad: torch.Tensor | None = None, scale: float = 0.0) -> torch.Tensor:
    """One ancestral step from x_t to x_{t-1} (Ho et al.), all tensors [B, ...], ``t`` an int:

        mu      = posterior_mean(x0_hat, x_t, t)          (the mean of q(x_{t-1} | x_t, x0_hat))
        mu      = mu + s * Sigma_t * grad                 (classifier guidance, when ``grad`` is given)
        x_{t-1} = mu + sqrt(Sigma_t) * noise              (Sigma_t = posterior_variance[t]; no noise at t = 0)
    """
    t = _one_timestep(t, schedule)
    t_vec = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
    mean = schedule.posterior_mean(x0_hat, x_t, t_vec)
    variance = schedule.at(schedule.posterior_variance, t_vec, x_t)
    if grad is not None:
        mean = guided_mean(mean, variance, grad, scale)
    if t == 0:
        return mean
    if noise is None:
        raise ValueError(f"ddpm_step at t = {t} > 0 needs noise shaped like x_t {list(x_t.shape)}")
    return mean + variance.sqrt() * noise


def ddim_step(x_t: torch.Tensor, t: int, t_prev: int, eps_hat: torch.Tensor, x0_hat: torch.Tensor, schedule,
              eta: float = 0.0, noise: torch.Tensor | None = None) -> torch.Tensor:
    """One DDIM step from x_t to x_{t'}, t' = ``t_prev`` < t (Song et al.), with ab_{t'} = 1 for t' = -1:

        sigma = eta * sqrt((1 - ab_t') / (1 - ab_t) * (1 - ab_t / ab_t'))
        x_t'  = sqrt(ab_t') x0_hat + sqrt(1 - ab_t' - sigma^2) eps_hat + sigma * noise

    ``eps_hat`` and ``x0_hat`` are the model's prediction in both forms (:func:`predict`); eta = 0 is
    deterministic, and no noise is added on the last step (t' = -1).
    """
    t = _one_timestep(t, schedule)
    if t_prev != -1:
        t_prev = _one_timestep(t_prev, schedule, "t_prev")
    t_vec = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
    ab = schedule.at(schedule.alpha_bars, t_vec, x_t)
    ab_prev = schedule.alpha_bars[t_prev] if t_prev >= 0 else torch.ones((), device=x_t.device)
    sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt() if eta > 0 else torch.zeros_like(ab)
    # why the clamp: at eta = 1, 1 - ab_t' - sigma^2 = (1 - ab_t')^2 ab_t / (ab_t' (1 - ab_t)), which is >= 0 but
    # can come out a hair below 0 in floating point where it is nearly 0 (ab_t' near 1); for eta < 1 it is larger.
    # (For eta > 1, more noise than the marginals allow, it can be truly negative: the clamp then drops the eps term.)
    x = ab_prev.sqrt() * x0_hat + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps_hat
    if eta > 0 and t_prev >= 0:
        if noise is None:
            raise ValueError(f"ddim_step with eta = {eta} > 0 needs noise shaped like x_t {list(x_t.shape)}")
        x = x + sigma * noise
    return x


class Step(NamedTuple):
    """One state of a sampling run: step ``i``, its timestep ``t`` (-1 at the end), x_t and the model's x0_hat
    there (at the end both are the sample)."""
    i: int
    t: int
    x_t: torch.Tensor
    x0_hat: torch.Tensor


class Trajectory(NamedTuple):
    """The states a sampling run passed through: timesteps ``t`` (-1 for the end), the noisy states ``x_t``
    and the model's guesses ``x0`` there (all on the CPU)."""
    t: list
    x_t: list
    x0: list


def record_trajectory(steps, every: int = 1) -> Trajectory:
    """Keep every ``every``-th state of a run of :func:`sampling_steps`, and its end."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    kept = Trajectory([], [], [])
    for step in steps:
        if step.i % every == 0 or step.t == -1:
            kept.t.append(step.t)
            kept.x_t.append(step.x_t.detach().float().cpu())
            kept.x0.append(step.x0_hat.detach().float().cpu())
    return kept


@torch.no_grad()
def sampling_steps(model, schedule, shape, *, sampler: str = "ddpm", steps: int | None = None, eta: float = 0.0,
                   prediction="eps", y=None, classifier=None, classifier_scale=0.0, cfg_scale=None,
                   null_label=NULL_LABEL, guidance=None, generator=None, device=None, clip_x0=None,
                   autocast=False):
    """The reverse chain, one step at a time: yields a :class:`Step` before each update and a last one
    with the sample. ``sampler`` is "ddpm" (ancestral, on all T steps or a respaced chain of ``steps``) or
    "ddim" (``steps`` timesteps, default 50, with ``eta``); other keywords as in :func:`ddpm_sample`.
    ``guidance``: a :class:`Guidance`, in place of the keywords classifier, classifier_scale, cfg_scale and
    null_label. The caller decides what to keep: ``ddpm_sample`` and ``ddim_sample`` keep only the end."""
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
    if guidance is None:
        guidance = Guidance(classifier, classifier_scale, cfg_scale, null_label)
    elif (classifier, classifier_scale, cfg_scale, null_label) != (None, 0.0, None, NULL_LABEL):
        raise ValueError("pass either guidance=Guidance(...) or the keywords classifier, classifier_scale, "
                         "cfg_scale and null_label, not both")
    run = _Setup(model, schedule, shape, prediction, y, guidance, generator, device, clip_x0)
    if sampler == "ddpm":
        yield from _ddpm_steps(run, steps, autocast)
    else:
        yield from _ddim_steps(run, 50 if steps is None else steps, validate_scale(eta, "eta"), autocast)


def _ddpm_steps(run, steps, autocast):
    # the timesteps the model is called at, increasing: all T, or the `steps` kept by the respaced chain
    model_timesteps = spaced_timesteps(run.schedule.T, steps if steps is not None else run.schedule.T)[::-1]
    # the schedule the steps run on: the full one, or its respaced sub-chain, whose step k is model time
    # model_timesteps[k] (notebook 3: alpha_bar'_k = alpha_bar at model_timesteps[k])
    full = len(model_timesteps) == run.schedule.T
    sub_schedule = run.schedule if full else run.schedule.respace(model_timesteps)
    x = run.noise()                                                  # x_{T-1} ~ N(0, I)
    for step_index, k in enumerate(range(sub_schedule.T - 1, -1, -1)):
        t_model = run.timesteps(model_timesteps[k])
        eps, x0 = run.denoise(x, t_model, autocast)                  # 1. predict eps_hat, x0_hat (clipped)
        grad = run.grad(x, t_model) if run.guidance.uses_classifier else None   # 2. guide: grad log p(y | x_t)
        yield Step(step_index, model_timesteps[k], x, x0)
        noise = run.noise() if k > 0 else None                       # 3. step: posterior mean (+ s Sigma grad)
        x = ddpm_step(x, k, x0, sub_schedule, noise, grad=grad, scale=run.guidance.classifier_scale)
    yield Step(sub_schedule.T, -1, x, x)


def _ddim_steps(run, steps, eta, autocast):
    schedule = run.schedule
    timesteps = spaced_timesteps(schedule.T, steps)                  # decreasing, T-1 first
    x = run.noise()
    for step_index, t_int in enumerate(timesteps):
        t = run.timesteps(t_int)
        eps, x0 = run.denoise(x, t, autocast)                        # 1. predict eps_hat, x0_hat (clipped)
        if run.guidance.uses_classifier:                             # 2. guide: eps_hat - s sqrt(1 - ab_t) grad
            # the shift comes after the clipping in predict, and its x0 is not clipped again (as guided-diffusion's
            # condition_score): at large t the shift moves x0 by s (1 - ab_t) / sqrt(ab_t) grad, so a second clamp
            # would cut the guidance off wherever it is strongest
            eps = guided_eps(eps, schedule.at(schedule.alpha_bars, t, x), run.grad(x, t), run.guidance.classifier_scale)
            x0 = schedule.x0_from_eps(x, t, eps)
        yield Step(step_index, t_int, x, x0)
        t_prev = timesteps[step_index + 1] if step_index + 1 < len(timesteps) else -1
        noise = run.noise() if eta > 0 and t_prev >= 0 else None     # 3. step: the DDIM update to t_prev
        x = ddim_step(x, t_int, t_prev, eps, x0, schedule, eta, noise)
    yield Step(len(timesteps), -1, x, x)


def _run_to_end(chain, desc: str, total: int, progress: bool) -> torch.Tensor:
    for step in tqdm(chain, desc=desc, total=total, disable=not progress, leave=False):
        pass
    return step.x_t


@torch.no_grad()
def ddpm_sample(model, schedule, shape, *, prediction="eps", y=None, classifier=None,
                classifier_scale=0.0, cfg_scale=None, null_label=NULL_LABEL, generator=None, device=None,
                progress=True, clip_x0=None, autocast=False, steps=None):
    """Ancestral sampling, t = T-1 down to 0 (Ho et al., Algorithm 2, whose steps are numbered 1..T;
    the course's t is theirs minus 1), each step a :func:`ddpm_step`:

        x_{T-1} ~ N(0, I)                             (pure noise: the papers' x_T)
        mu  = posterior_mean(x0_hat, x_t, t)        (= 1/sqrt(a_t) (x_t - b_t/sqrt(1-ab_t) eps_hat))
        mu  = mu + s * Sigma_t * grad log p(y | x_t)  (classifier guidance, Sigma_t = posterior variance)
        x_{t-1} = mu + sqrt(Sigma_t) z,  z ~ N(0, I), and no noise at t = 0, whose output is the sample.

    ``prediction``: what the model outputs, "eps", "x0" or "v". ``y``: target class(es).
    ``classifier``/``classifier_scale``: classifier guidance (the model is then called
    unconditionally). ``cfg_scale``: classifier-free guidance with a conditional model
    (None = off; with ``y`` and no guidance the model is called as ``model(x, t, y)``).
    ``steps``: ancestral sampling on the respaced chain of that many timesteps
    (:meth:`NoiseSchedule.respace`); None uses all T.
    ``clip_x0``: clamp x0_hat to [-1, 1] (default: on for 4-D image batches, off otherwise).
    ``autocast``: bfloat16 autocast for the model (True or False; ``course_utils.bf16_is_fast(device)`` says
    whether it pays here).
    To see every step (a trajectory, a picture per step), iterate over :func:`sampling_steps` instead.
    Returns x_0 as float32.
    """
    chain = sampling_steps(model, schedule, shape, sampler="ddpm", steps=steps, prediction=prediction, y=y,
                           classifier=classifier, classifier_scale=classifier_scale, cfg_scale=cfg_scale,
                           null_label=null_label, generator=generator, device=device, clip_x0=clip_x0,
                           autocast=autocast)
    return _run_to_end(chain, "DDPM", (steps or schedule.T) + 1, progress)


@torch.no_grad()
def ddim_sample(model, schedule, shape, *, prediction="eps", y=None, classifier=None,
                classifier_scale=0.0, cfg_scale=None, null_label=NULL_LABEL, generator=None, device=None,
                progress=True, steps=50, eta=0.0, clip_x0=None, autocast=False):
    """DDIM sampling (Song et al.) over ``steps`` timesteps, t -> t' (the next smaller one), each step a
    :func:`ddim_step`:

        eps_hat = eps - s * sqrt(1 - ab_t) * grad log p(y | x_t)   (classifier guidance)
        x0_hat  = (x_t - sqrt(1 - ab_t) eps_hat) / sqrt(ab_t)
        sigma   = eta * sqrt((1 - ab_t') / (1 - ab_t) * (1 - ab_t / ab_t'))
        x_t'    = sqrt(ab_t') x0_hat + sqrt(1 - ab_t' - sigma^2) eps_hat + sigma z

    with ab_t' = 1 after the last step. eta = 0 is deterministic; eta = 1 with all T
    steps is ancestral DDPM sampling. With ``clip_x0`` the model's x0_hat is clamped before the classifier's
    shift and the shifted one is not. Other keywords as in :func:`ddpm_sample`.
    """
    chain = sampling_steps(model, schedule, shape, sampler="ddim", steps=steps, eta=eta, prediction=prediction,
                           y=y, classifier=classifier, classifier_scale=classifier_scale, cfg_scale=cfg_scale,
                           null_label=null_label, generator=generator, device=device, clip_x0=clip_x0,
                           autocast=autocast)
    return _run_to_end(chain, "DDIM", steps + 1, progress)
