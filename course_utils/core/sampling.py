"""Ancestral DDPM sampling and DDIM sampling, with classifier and classifier-free guidance.

Both samplers share one denoising call (:func:`predict`), which turns whatever the
model predicts (eps or x0 or v, with classifier-free guidance when asked) into the pair ``(eps_hat, x0_hat)``.
They differ in how classifier guidance enters (the DDPM mean in :func:`ddpm_step`, the predicted noise in
:func:`condition_score` for DDIM) and in how they step from x_t to the previous state.

The file reads in three parts: the checks a sampler's inputs pass once, at its entry; the formulas
(predict, guide, step), which trust their inputs; and the loops, which run them in order.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from .device import autocast_for
from .guidance import NULL_LABEL, Guidance, cfg_eps, guided_eps, guided_mean, validate_labels, validate_scale
from .schedule import eps_from_v_at, eps_from_x0_at, x0_from_eps_at, x0_from_v_at

PREDICTIONS = ("eps", "x0", "v")


# ------------------------------------------------------------------ checks, at the entry points
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


def _checked_shape(shape) -> tuple:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of ints such as (16, 1, 32, 32), got {shape!r}") from None
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"shape must be [B, ...] with every size >= 1, got {list(shape)}")
    return shape


def _checked_labels(y, guidance: Guidance, batch: int, device) -> torch.Tensor | None:
    """The target classes as a LongTensor [batch] on ``device`` (None when no class is asked for)."""
    if (guidance.uses_classifier or guidance.uses_cfg) and y is None:
        what = "classifier guidance" if guidance.uses_classifier else "classifier-free guidance"
        raise ValueError(f"{what} needs the target class: pass y=<label> (an int or a LongTensor [B])")
    if y is None:
        return None
    if guidance.classifier is not None and not guidance.uses_cfg:
        # the range is checked against the classifier's own number of classes (classifier_grad)
        return validate_labels(y, batch, None, device=device)
    return validate_labels(y, batch, guidance.null_label, device=device, allow=guidance.null_label)


def _checked_output(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if out.shape != x.shape:
        raise ValueError(f"the model must return a tensor shaped like its input {list(x.shape)}, "
                         f"got {list(out.shape)}")
    return out.float()


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


def _checked_noise(noise, x_t: torch.Tensor, what: str) -> torch.Tensor:
    if noise is None:
        raise ValueError(f"{what} needs noise shaped like x_t {list(x_t.shape)}")
    return noise


def spaced_timesteps(T: int, steps: int) -> list[int]:
    """``steps`` timesteps spread evenly over 0..T-1, from T-1 down to 0: the timesteps DDIM visits, and
    the sub-chain a respaced DDPM runs on (:meth:`NoiseSchedule.respace`)."""
    if not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an integer in 1..T={T}, got {steps!r}")
    ts = torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long().tolist()
    return sorted(set(ts), reverse=True)


# ------------------------------------------------------------------ the formulas: predict, guide, step
def eps_and_x0(schedule, x_t, t, out, prediction: str, clip_x0: bool = False):
    """A prediction ``out`` of the kind ``prediction`` in both forms ``(eps_hat, x0_hat)``, with ab = alpha_bar_t:

        "eps":  x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab)
        "x0":   eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab)
        "v":    x0 = sqrt(ab) x_t - sqrt(1 - ab) v,   eps = sqrt(1 - ab) x_t + sqrt(ab) v

    With ``clip_x0``, x0 is clamped to [-1, 1] and eps recomputed from it, so the pair stays consistent.
    """
    ab = schedule.at(schedule.alpha_bars, t, x_t)      # t: checked timesteps [B], as everywhere in this part
    if prediction == "eps":
        eps, x0 = out, x0_from_eps_at(ab, x_t, out)
    elif prediction == "x0":
        eps, x0 = eps_from_x0_at(ab, x_t, out), out
    else:
        eps, x0 = eps_from_v_at(ab, x_t, out), x0_from_v_at(ab, x_t, out)
    if clip_x0:
        x0 = x0.clamp(-1, 1)
        eps = eps_from_x0_at(ab, x_t, x0)
    return eps, x0


def predict(model, schedule, x_t, t, *, prediction="eps", y=None, guidance: Guidance = Guidance(),
            clip_x0=False, autocast=False):
    """One denoising call: return ``(eps_hat, x0_hat)`` for the batch ``x_t`` at timesteps ``t``.

    - classifier-free guidance (``guidance.cfg_scale`` set): two passes, the null label and ``y``, done as one
      batch of 2B and combined with ``cfg_eps(out_u, out_c, cfg_scale)``;
    - otherwise ``model(x_t, t, y)`` when ``y`` is given and no classifier guides, else ``model(x_t, t)``.

    The output is read as eps, x0 or v and returned in both forms by :func:`eps_and_x0` (clamped with ``clip_x0``).
    ``t`` is trusted: a LongTensor [B] of timesteps in 0..T-1, as :func:`sampling_steps` makes them.
    """
    with autocast_for(x_t.device, autocast):
        if guidance.uses_cfg:
            b = x_t.shape[0]
            nulls = torch.full_like(y, guidance.null_label)
            out = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([nulls, y]))
            out = _checked_output(out, torch.cat([x_t, x_t]))
            out_u, out_c = out[:b], out[b:]
        elif y is not None and guidance.classifier is None:
            out = _checked_output(model(x_t, t, y), x_t)
        else:
            out = _checked_output(model(x_t, t), x_t)
    if guidance.uses_cfg:
        # eps, x0 and v are each a + b * (the other) at fixed x_t and t, with weights summing to 1 in the guidance:
        # so guiding the model's output, whichever it is, gives the same eps_hat as guiding eps
        out = cfg_eps(out_u, out_c, guidance.cfg_scale)
    return eps_and_x0(schedule, x_t.float(), t, out, prediction, clip_x0)


def condition_score(schedule, x_t, t, eps_hat, grad, scale: float):
    """Classifier guidance in DDIM, as a shift of the predicted noise (Dhariwal and Nichol, Algorithm 2):

        eps_hat' = eps_hat - s * sqrt(1 - alpha_bar_t) * grad log p(y | x_t)       (:func:`guided_eps`)

    returned with its x0_hat' by :func:`eps_and_x0`, not clamped again (as guided-diffusion's ``condition_score``):
    the shift moves x0_hat by s (1 - ab_t) / sqrt(ab_t) grad, largest at large t, where a clamp would cut it off.
    DDPM's counterpart, the shift of the mean, is :func:`guided_mean` inside :func:`ddpm_step`.
    """
    eps = guided_eps(eps_hat, schedule.at(schedule.alpha_bars, t, x_t), grad, scale)
    return eps_and_x0(schedule, x_t, t, eps, "eps")


def ddpm_step(x_t: torch.Tensor, t: int, x0_hat: torch.Tensor, schedule, noise: torch.Tensor | None = None, *,
              grad: torch.Tensor | None = None, scale: float = 0.0) -> torch.Tensor:
    """One ancestral step from x_t to x_{t-1} (Ho et al.), all tensors [B, ...], ``t`` an int:

        mu      = c0_t * x0_hat + ct_t * x_t              (the mean of q(x_{t-1} | x_t, x0_hat): posterior_mean,
                                                          c0_t, ct_t = posterior_coef_x0[t], posterior_coef_xt[t])
        mu      = mu + s * Sigma_t * grad                 (classifier guidance, when ``grad`` is given: guided_mean)
        x_{t-1} = mu + sqrt(Sigma_t) * noise              (Sigma_t = posterior_variance[t]; no noise at t = 0)
    """
    t = _one_timestep(t, schedule)   # one int for the batch: the coefficients below are numbers
    mean = schedule.posterior_coef_x0[t] * x0_hat + schedule.posterior_coef_xt[t] * x_t
    variance = schedule.posterior_variance[t]
    if grad is not None:
        mean = guided_mean(mean, variance, grad, scale)
    if t == 0:
        return mean
    return mean + variance.sqrt() * _checked_noise(noise, x_t, f"ddpm_step at t = {t} > 0")


def ddim_step(x_t: torch.Tensor, t: int, x0_hat: torch.Tensor, schedule, noise: torch.Tensor | None = None, *,
              eps_hat: torch.Tensor, t_prev: int, eta: float = 0.0) -> torch.Tensor:
    """One DDIM step from x_t to x_{t'}, t' = ``t_prev`` < t (Song et al.), with ab_{t'} = 1 for t' = -1:

        sigma = eta * sqrt((1 - ab_t') / (1 - ab_t) * (1 - ab_t / ab_t'))
        x_t'  = sqrt(ab_t') x0_hat + sqrt(1 - ab_t' - sigma^2) eps_hat + sigma * noise

    The first arguments are :func:`ddpm_step`'s, in its order; ``eps_hat`` and ``x0_hat`` are the model's
    prediction in both forms (:func:`predict`). eta = 0 is deterministic, and no noise is added on the last
    step (t' = -1).
    """
    t = _one_timestep(t, schedule)
    if t_prev != -1:
        t_prev = _one_timestep(t_prev, schedule, "t_prev")
    ab = schedule.alpha_bars[t]
    ab_prev = schedule.alpha_bars[t_prev] if t_prev >= 0 else torch.ones((), device=ab.device)
    sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt() if eta > 0 else torch.zeros_like(ab)
    # why the clamp: at eta = 1, 1 - ab_t' - sigma^2 = (1 - ab_t')^2 ab_t / (ab_t' (1 - ab_t)), which is >= 0 but
    # can come out a hair below 0 in floating point where it is nearly 0 (ab_t' near 1); for eta < 1 it is larger.
    # (For eta > 1, more noise than the marginals allow, it can be truly negative: the clamp then drops the eps term.)
    x = ab_prev.sqrt() * x0_hat + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps_hat
    if eta > 0 and t_prev >= 0:
        x = x + sigma * _checked_noise(noise, x_t, f"ddim_step with eta = {eta} > 0")
    return x


# ------------------------------------------------------------------ the loops
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
    # the front: every input is checked here, once, and the loops below trust them
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
    if guidance is None:
        guidance = Guidance(classifier, classifier_scale, cfg_scale, null_label)
    elif (classifier, classifier_scale, cfg_scale, null_label) != (None, 0.0, None, NULL_LABEL):
        raise ValueError("pass either guidance=Guidance(...) or the keywords classifier, classifier_scale, "
                         "cfg_scale and null_label, not both")
    validate_prediction(prediction)
    shape = _checked_shape(shape)
    device = model_device(model, device)
    y = _checked_labels(y, guidance, shape[0], device)
    schedule = schedule.to(device)
    clip_x0 = len(shape) == 4 if clip_x0 is None else bool(clip_x0)
    noise_device = generator.device if generator is not None else device

    def draw_noise():
        return torch.randn(shape, generator=generator, device=noise_device).to(device)

    def denoise(x, t):
        return predict(model, schedule, x, t, prediction=prediction, y=y, guidance=guidance, clip_x0=clip_x0,
                       autocast=autocast)

    if sampler == "ddpm":
        # the timesteps the model is called at, increasing: all T, or the `steps` kept by the respaced chain
        model_timesteps = spaced_timesteps(schedule.T, schedule.T if steps is None else steps)[::-1]
        yield from _ddpm_steps(denoise, guidance, y, schedule, model_timesteps, draw_noise)
    else:
        timesteps = spaced_timesteps(schedule.T, 50 if steps is None else steps)    # decreasing, T-1 first
        yield from _ddim_steps(denoise, guidance, y, schedule, timesteps, validate_scale(eta, "eta"), draw_noise)


def _ddpm_steps(denoise, guidance, y, schedule, model_timesteps, draw_noise):
    # the schedule the steps run on: the full one, or its respaced sub-chain, whose step k is model time
    # model_timesteps[k] (notebook 3: alpha_bar'_k = alpha_bar at model_timesteps[k])
    full = len(model_timesteps) == schedule.T
    sub_schedule = schedule if full else schedule.respace(model_timesteps)
    x = draw_noise()                                                 # x_{T-1} ~ N(0, I)
    for step_index, k in enumerate(range(sub_schedule.T - 1, -1, -1)):
        t_model = torch.full((x.shape[0],), model_timesteps[k], dtype=torch.long, device=x.device)
        eps, x0 = denoise(x, t_model)                                # 1. predict eps_hat, x0_hat (clipped)
        grad = guidance.classifier_gradient(x, t_model, y)           # 2. guide: grad log p(y | x_t), or None
        yield Step(step_index, model_timesteps[k], x, x0)
        noise = draw_noise() if k > 0 else None                      # 3. step: posterior mean + s Sigma grad
        x = ddpm_step(x, k, x0, sub_schedule, noise, grad=grad, scale=guidance.classifier_scale)
    yield Step(sub_schedule.T, -1, x, x)


def _ddim_steps(denoise, guidance, y, schedule, timesteps, eta, draw_noise):
    x = draw_noise()                                                 # x_{T-1} ~ N(0, I)
    for step_index, t_int in enumerate(timesteps):
        t = torch.full((x.shape[0],), t_int, dtype=torch.long, device=x.device)
        eps, x0 = denoise(x, t)                                      # 1. predict eps_hat, x0_hat (clipped)
        if guidance.uses_classifier:                                 # 2. guide: eps_hat - s sqrt(1 - ab_t) grad
            eps, x0 = condition_score(schedule, x, t, eps, guidance.classifier_gradient(x, t, y),
                                      guidance.classifier_scale)
        yield Step(step_index, t_int, x, x0)
        t_prev = timesteps[step_index + 1] if step_index + 1 < len(timesteps) else -1
        noise = draw_noise() if eta > 0 and t_prev >= 0 else None    # 3. step: the DDIM update to t_prev
        x = ddim_step(x, t_int, x0, schedule, noise, eps_hat=eps, t_prev=t_prev, eta=eta)
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
