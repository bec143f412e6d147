"""Checks that teach: each compares a student's function with the reference on random inputs
and, when they differ, says which term of the formula is wrong and how.

Every check prints a short confirmation when the function is right and raises
:class:`CheckFailed` (an AssertionError) with a hint when it is not. A function that still
raises NotImplementedError is let through, so an unsolved exercise stops the notebook there.

The inputs are chosen so that each mistake an exercise invites changes the result clearly:
coarse schedules (few, large steps) where a factor close to 1 would hide a mistake, t = 0 and
the last DDIM step among the timesteps, and every function called twice on the same inputs
(a result that changes between calls means state leaks from one call into the next).

A wrong result is diagnosed in two ways. A short table of common mistakes is tried first: a
hint from it is given only when the student's result equals that mistake's result exactly.
Otherwise the check probes the terms of the formula one at a time with chosen inputs (see
:mod:`course_utils.probes`) and reports each wrong term in the formula's symbols, naming a
cause only when the probe has verified it.
"""
from __future__ import annotations

import os
import traceback

import torch
import torch.nn.functional as F

from . import probes
from .core.guidance import NULL_LABEL, guided_eps
from .core.sampling import ddim_step, ddpm_step
from .core.schedule import NoiseSchedule
from .probes import Coef, Term

_HERE = os.path.dirname(os.path.abspath(__file__))


class CheckFailed(AssertionError):
    """The student's function gives wrong results; the message says what is wrong.

    In a notebook (and in nbgrader's feedback) it shows only its message and, when the student's
    code raised, the lines of the student's own code in that traceback: not the checks' source.
    """

    def _render_traceback_(self) -> list:
        lines = []
        cause = self.__cause__
        if cause is not None and cause.__traceback__ is not None:
            frames = [f for f in traceback.extract_tb(cause.__traceback__)
                      if not os.path.abspath(f.filename).startswith(_HERE)]
            if frames:
                lines.append("Traceback of your code (most recent call last):")
                lines += [line.rstrip("\n") for line in traceback.format_list(frames)]
            lines.append(f"{type(cause).__name__}: {cause}")
        return lines + [f"\x1b[0;31mCheckFailed\x1b[0m: {self}"]   # coloured as IPython colours an error's name


def _schedule() -> NoiseSchedule:
    return NoiseSchedule(T=1000, kind="linear")


def _coarse_schedule() -> NoiseSchedule:
    """Few, large steps: off-by-one and coefficient mistakes change the result visibly."""
    return NoiseSchedule(T=20, kind="linear", beta_start=0.05, beta_end=0.3)


def _col(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (x.dim() - 1)))


BROADCAST_HINT = ("per-sample scalars such as alpha_bars[t] have shape [B] and must be reshaped to [B, 1, 1, 1] "
                  "(for example .view(-1, 1, 1, 1)) to broadcast against images [B, C, H, W]")


def _hint_for(err: Exception, shapes: str) -> str:
    """A hint chosen for the error the student's code raised."""
    msg = str(err)
    if "does not require grad" in msg or "does not have a grad_fn" in msg:
        return ("no gradient could flow: the sampler calls this function under torch.no_grad(), so compute inside "
                "`with torch.enable_grad():`, on a copy that requires grad: x = x_t.detach().requires_grad_(True)")
    if "backward through the graph a second time" in msg:
        return "each call must build its own graph: take the gradient once, with torch.autograd.grad"
    if isinstance(err, IndexError) or "out of bounds" in msg or "out of range" in msg:
        return ("an index is out of range: timesteps run from 0 to T - 1, and t_prev = -1 stands for the clean end "
                "of the chain (alpha_bar = 1), which has no entry in alpha_bars")
    if "must match the size" in msg or "broadcast" in msg or "shape" in msg or "size mismatch" in msg:
        return shapes
    if "expected scalar type" in msg or "dtype" in msg:
        return "a dtype mismatch: timesteps and labels are integers (torch.long), images, noise and losses floats"
    if "device" in msg:
        return "tensors on different devices: make new tensors on the inputs' device (device=x.device)"
    if isinstance(err, TypeError):
        return "check the arguments: the check calls your function with the exercise's signature, in that order"
    if isinstance(err, (AttributeError, NameError)):
        return "a name your code uses does not exist there: check its spelling, and use the arguments, not globals"
    return "the traceback above names the line of your code that failed"


def _call(what: str, fn, *args, shapes: str = BROADCAST_HINT):
    """``fn(*args)``, with any error but NotImplementedError reported with the student's own
    message and a hint chosen for that error."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as err:
        raise CheckFailed(f"{what} raised {type(err).__name__}: {err}\nHint: {_hint_for(err, shapes)}") from err


def _as_result(what: str, got, want: torch.Tensor) -> torch.Tensor:
    """``got`` if it is a tensor of the shape and dtype of ``want``; a named CheckFailed otherwise."""
    if not isinstance(got, torch.Tensor):
        extra = (": return the tensor itself, not a Python number (.item() or float(...) cut it off from "
                 "autograd)") if isinstance(got, (int, float)) else ""
        raise CheckFailed(f"{what}: expected a tensor, got {type(got).__name__}{extra}")
    if got.shape != want.shape:
        raise CheckFailed(f"{what}: expected shape {list(want.shape)}, got {list(got.shape)}")
    if got.dtype != want.dtype:
        raise CheckFailed(f"{what}: expected dtype {want.dtype}, got {got.dtype} (keep the inputs' dtype: no "
                          "float64 constants, no integer division)")
    if got.is_floating_point() and not torch.isfinite(got).all():
        raise CheckFailed(f"{what}: the result holds NaN or inf: a division by zero, or the square root of a "
                          "negative number?")
    return got


def _verdict(what: str, got, want: torch.Tensor, mistakes: dict, atol: float = 1e-4, probe=None) -> None:
    """Nothing when ``got`` equals ``want``; otherwise a CheckFailed with the hint of the table entry that
    ``got`` equals exactly, or else the term-level diagnosis ``probe()`` returns (a list of sentences)."""
    got = _as_result(what, got, want).detach()
    if torch.allclose(got.float(), want.float(), atol=atol, rtol=1e-4):
        return
    for hint, wrong in mistakes.items():
        if wrong.shape == got.shape and torch.allclose(got.float(), wrong.float(), atol=atol, rtol=1e-4):
            raise CheckFailed(f"{what}: {hint}")
    err = (got.float() - want.float()).abs().max().item()
    raise CheckFailed(f"{what}: wrong values (largest error {err:.3g})" + _diagnosis(probe))


def _diagnosis(probe) -> str:
    """The probe's sentences as the rest of a message; if the probe finds every term right, say that the
    terms are right and their combination is not (a fact the probe has measured)."""
    if probe is None:
        return ""
    try:
        lines = probe()
    except NotImplementedError:
        raise
    except probes.NotASum as fact:
        lines = [str(fact)]
    except Exception:  # the student's code fails on the probe inputs: keep to what was measured above
        return ""
    if not lines:
        return (": each term of the formula is right when read alone (one input at a time), so the terms are "
                "combined differently from the formula")
    return ":\n" + "\n".join(f"- {line}" for line in lines)


def _linear_probe(calls: list, terms: list, atoms: dict, labels: list, neighbours: dict):
    """A probe for a weighted-sum formula. ``calls`` holds (call, inputs, rows): each call's coefficients
    are read one input at a time, and ``rows`` (None for all) picks the samples that are probe points."""
    def probe():
        parts = []
        for call, inputs, rows in calls:
            coefs, offset, varies = probes.read_coefficients(call, inputs, [tm.name for tm in terms])
            pick = slice(None) if rows is None else rows
            parts.append(({k: v[pick] for k, v in coefs.items()}, offset[pick], varies))
        got = {tm.name: torch.cat([p[0][tm.name] for p in parts]) for tm in terms}
        varies = {tm.name: any(p[2][tm.name] for p in parts) for tm in terms}
        return probes.term_report(terms, got, atoms, labels, neighbours,
                                  offset=torch.cat([p[1] for p in parts]), varies=varies)
    return probe


def _labels(t) -> list:
    return [f"t = {int(v)}" for v in t]


def _twice(what: str, fn, *args, shapes: str = BROADCAST_HINT):
    """Call ``fn`` twice on the same inputs; the two results must agree (no state kept between calls)."""
    first = _call(what, fn, *args, shapes=shapes)
    second = _call(what, fn, *args, shapes=shapes)
    if isinstance(first, torch.Tensor) and isinstance(second, torch.Tensor) and first.shape == second.shape:
        if not torch.allclose(first.detach().float(), second.detach().float(), atol=1e-6, equal_nan=True):
            ratio = (second.detach().float().norm() / first.detach().float().norm().clamp(min=1e-12)).item()
            if abs(ratio - 2) < 1e-3:
                raise CheckFailed(f"{what}: the second call returned twice the first: gradients accumulate in "
                                  "x.grad from one call to the next. Take them with torch.autograd.grad(..., x) on a "
                                  "fresh copy x = x_t.detach().requires_grad_(True)")
            raise CheckFailed(f"{what}: two calls with the same inputs gave different results: use the inputs "
                              "you are given (t, noise, u) instead of drawing new random numbers, and keep no state")
    return first


def _done(what: str) -> None:
    print(f"\N{WHITE HEAVY CHECK MARK} {what}: correct")


# ------------------------------------------------------------------ notebook 1
def check_q_sample(fn) -> None:
    """fn(x0, t, noise, schedule) = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise."""
    s, g = _schedule(), torch.Generator().manual_seed(0)
    x0, noise = torch.randn(8, 1, 6, 6, generator=g), torch.randn(8, 1, 6, 6, generator=g)
    t = torch.cat([torch.tensor([0, 999]), torch.randint(1, 999, (6,), generator=g)])
    ab, a = _col(s.alpha_bars[t], x0), _col(s.alphas[t], x0)
    ab_prev = _col(s.alpha_bars[t - 1], x0)
    want = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    atoms, nb = probes.schedule_atoms(s, t)
    probe = _linear_probe([(lambda x0, noise: fn(x0, t, noise, s), {"x0": x0, "noise": noise}, None)],
                          [Term("x0", "x0", Coef.of(("alpha_bar_t", 0.5))),
                           Term("noise", "the noise", Coef.of(("1 - alpha_bar_t", 0.5)))], atoms, _labels(t), nb)
    _verdict("q_sample", _twice("q_sample", fn, x0, t, noise, s), want, probe=probe, mistakes={
        "the square roots are missing: x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps":
            ab * x0 + (1 - ab) * noise,
        "you used alpha_t (one step) instead of alpha_bar_t (the product up to t)":
            a.sqrt() * x0 + (1 - a).sqrt() * noise,
        "off-by-one t: alpha_bars[t] already includes step t, use alpha_bars[t] not alpha_bars[t-1]":
            ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * noise,
        "the two coefficients are swapped: sqrt(alpha_bar_t) multiplies x0, sqrt(1 - alpha_bar_t) the noise":
            (1 - ab).sqrt() * x0 + ab.sqrt() * noise,
        "the noise is scaled by sqrt(beta_t), one step's noise: after t steps its variance is 1 - alpha_bar_t":
            ab.sqrt() * x0 + _col(s.betas[t], x0).sqrt() * noise,
    })
    _done("q_sample")


def check_snr(fn) -> None:
    """fn(alpha_bars) = SNR(t) = alpha_bar_t / (1 - alpha_bar_t), for every t at once."""
    s = _coarse_schedule()
    ab = s.alpha_bars
    atoms = {"alpha_bar_t": ab.double(), "1 - alpha_bar_t": 1 - ab.double()}
    swap = "the signal's variance and the noise's swapped"
    nb = {"alpha_bar_t": [("1 - alpha_bar_t", swap)], "1 - alpha_bar_t": [("alpha_bar_t", swap)]}
    term = Term("snr", "SNR", Coef.of(("alpha_bar_t", 1), ("1 - alpha_bar_t", -1)), phrase="your SNR")

    def probe():
        return probes.term_report([term], {"snr": fn(ab.clone()).detach().double()}, atoms,
                                  _labels(range(len(ab))), nb)
    _verdict("snr", _twice("snr", fn, ab.clone()), ab / (1 - ab), probe=probe, mistakes={
        "that is a ratio of standard deviations: the SNR compares variances, alpha_bar_t / (1 - alpha_bar_t), "
        "with no square roots": ab.sqrt() / (1 - ab).sqrt(),
        "upside down: the signal's variance alpha_bar_t goes on top, the noise's variance 1 - alpha_bar_t below":
            (1 - ab) / ab,
        "that is log SNR: return the ratio itself (plots take the log)": ab.log() - (1 - ab).log(),
        "that is alpha_bar_t itself: divide it by the noise's variance 1 - alpha_bar_t": ab,
    })
    _done("snr")


# ------------------------------------------------------------------ notebook 2
def check_time_map(fn) -> None:
    """fn(t, T, x) = t / T as a [B, 1, H, W] channel."""
    x = torch.zeros(3, 1, 5, 7)
    t = torch.tensor([250, 0, 999])
    want = (t.float() / 1000).view(3, 1, 1, 1).expand(3, 1, 5, 7)
    got = _twice("time map", fn, t, 1000, x,
                 shapes="build t / T with shape [B, 1, 1, 1] (.view(-1, 1, 1, 1)), then .expand(B, 1, H, W)")
    if isinstance(got, torch.Tensor) and got.shape == (3, 1, 1, 1):
        raise CheckFailed("time map: expand the [B, 1, 1, 1] tensor to the image size [B, 1, H, W]")
    if isinstance(got, torch.Tensor) and got.shape == want.shape and not got.is_floating_point():
        t2 = torch.tensor([500, 999, 3])
        floor = _call("time map", fn, t2, 250, x).flatten(1)[:, 0].tolist() == (t2 // 250).tolist()
        raise CheckFailed(f"time map: the result is an integer tensor ({got.dtype}): the channel holds the "
                          "fraction t / T, so compute it in floats (t.float() / T)" + (
                              f"; with T = 250 it holds {(t2 // 250).tolist()} for t = {t2.tolist()}, the integer "
                              "division t // T" if floor else ""))
    _verdict("time map", got, want, {
        "t is not scaled: divide by T so the channel lies in [0, 1] like the pixels": want * 1000,
        "divide by T, not T - 1": t.float().div(999).view(3, 1, 1, 1).expand(3, 1, 5, 7),
    }, probe=lambda: _time_map_probe(fn, x))
    _done("time map")


def _time_map_probe(fn, x) -> list:
    """Read the channel's value per sample for two batches (T = 1000 and T = 250) and compare it with t / T."""
    cases = [(torch.tensor([250, 0, 999]), 1000), (torch.tensor([500, 999, 3]), 250)]
    values, ts, Ts = [], [], []
    for t, T in cases:
        out = fn(t, T, x).detach().double().flatten(1)
        if (out.max(1).values - out.min(1).values).abs().max() > 1e-6:
            return ["the channel is not one value per sample: it must hold t / T at every pixel of the sample"]
        if torch.allclose(out[:, 0], out[:1, 0].expand(3)):
            return [f"every sample of the batch t = {t.tolist()} holds the same value {out[0, 0]:.4g}: each sample's "
                    "channel must be made from its own t"]
        values.append(out[:, 0])
        ts.append(t.double())
        Ts.append(torch.full((3,), float(T), dtype=torch.float64))
    v, t, T = torch.cat(values), torch.cat(ts), torch.cat(Ts)
    labels = [f"t = {int(a)}, T = {int(b)}" for a, b in zip(t, T)]
    if probes.close(v, torch.div(t, T, rounding_mode="floor")) and not probes.close(v, t / T):
        return [f"with T = 250 the channel holds {v[3:].tolist()} for t = {t[3:].int().tolist()}: whole numbers, "
                "t // T: an integer division; divide in floats, t.float() / T"]
    term = Term("map", "t / T", Coef.of(("t", 1), ("T", -1)), phrase="the channel's value")
    return probes.term_report([term], {"map": v}, {"t": t, "T": T, "T - 1": T - 1, "T + 1": T + 1}, labels,
                              {"T": [("T - 1", "divide by T, not T - 1"), ("T + 1", "divide by T, not T + 1")]})


POSTERIOR_TERMS = [
    Term("x0", "x0_hat", Coef.of(("alpha_bar_{t-1}", 0.5), ("beta_t", 1), ("1 - alpha_bar_t", -1))),
    Term("x_t", "x_t", Coef.of(("alpha_t", 0.5), ("1 - alpha_bar_{t-1}", 1), ("1 - alpha_bar_t", -1))),
]


def check_posterior_mean(fn) -> None:
    """fn(x0_hat, x_t, t, schedule) = the mean of q(x_{t-1} | x_t, x0)."""
    s, g = _coarse_schedule(), torch.Generator().manual_seed(1)
    x0, x_t = torch.randn(8, 1, 4, 4, generator=g), torch.randn(8, 1, 4, 4, generator=g)
    t = torch.cat([torch.tensor([0, 19]), torch.randint(1, 19, (6,), generator=g)])
    a, b = _col(s.alphas[t], x0), _col(s.betas[t], x0)
    ab, ab_prev = _col(s.alpha_bars[t], x0), _col(s.alpha_bars_prev[t], x0)
    wrapped = _col(s.alpha_bars[t - 1], x0)            # alpha_bars[-1] at t = 0
    c0, ct = ab_prev.sqrt() * b / (1 - ab), a.sqrt() * (1 - ab_prev) / (1 - ab)
    atoms, nb = probes.schedule_atoms(s, t)
    probe = _linear_probe([(lambda x0, x_t: fn(x0, x_t, t, s), {"x0": x0, "x_t": x_t}, None)],
                          POSTERIOR_TERMS, atoms, _labels(t), nb)
    _verdict("posterior mean", _twice("posterior mean", fn, x0, x_t, t, s), c0 * x0 + ct * x_t, probe=probe,
             mistakes={
        "the coefficients of x0_hat and x_t are swapped": ct * x0 + c0 * x_t,
        "use alpha_bar_{t-1} (schedule.alpha_bars_prev[t]) in the x0 coefficient, not alpha_bar_t":
            ab.sqrt() * b / (1 - ab) * x0 + ct * x_t,
        "the x_t coefficient needs sqrt(alpha_t), not alpha_t": c0 * x0 + a * (1 - ab_prev) / (1 - ab) * x_t,
        "wrong only at t = 0: alpha_bars[t - 1] wraps around to alpha_bars[-1] there, but alpha_bar_{-1} = 1 "
        "(nothing is noised yet); use schedule.alpha_bars_prev[t], which holds it":
            wrapped.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - wrapped) / (1 - ab) * x_t,
        "both coefficients divide by 1 - alpha_bar_t (not 1 - alpha_bar_{t-1})":
            ab_prev.sqrt() * b / (1 - ab_prev) * x0 + a.sqrt() * (1 - ab_prev) / (1 - ab_prev) * x_t,
    })
    _done("posterior mean")


def check_ddpm_step(fn) -> None:
    """fn(x_t, t, x0_hat, schedule, noise) with an int t: posterior mean + sqrt(posterior variance) * noise."""
    s, g = _coarse_schedule(), torch.Generator().manual_seed(2)
    x_t, x0, z = (torch.randn(4, 1, 4, 4, generator=g) for _ in range(3))
    probe_ts = (15, 1, 0, 7, 12, 3, 19)
    atoms, nb = probes.schedule_atoms(s, torch.tensor(probe_ts))
    terms = POSTERIOR_TERMS + [Term("z", "the noise z", Coef.of(("posterior_variance_t", 0.5)))]
    probe = _linear_probe([((lambda x_t, x0, z, t=t: fn(x_t, t, x0, s, z)), {"x_t": x_t, "x0": x0, "z": z}, [0])
                           for t in probe_ts], terms, atoms, _labels(probe_ts), nb)
    for t in (15, 1, 0):
        tt = torch.full((4,), t)
        mean = s.posterior_mean(x0, x_t, tt)
        var = s.posterior_variance[t]
        want = ddpm_step(x_t, t, x0, s, z)
        _verdict(f"DDPM step at t={t}", _twice("DDPM step", fn, x_t, t, x0, s, z), want, probe=probe, mistakes={
            "no noise is added at the last step (t = 0): return the mean itself": mean + s.betas[0].sqrt() * z,
            "the noise is scaled by the standard deviation sqrt(posterior_variance), not the variance":
                mean + var * z,
            "use the posterior variance beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t), not beta_t":
                mean + s.betas[t].sqrt() * z,
            "the step must add noise for t > 0: x_{t-1} = mean + sigma_t z": mean,
            "use posterior_variance[t], the variance of this step (t -> t-1), not posterior_variance[t-1]":
                mean + s.posterior_variance[t - 1].sqrt() * z,
        })
    _done("DDPM step")


# ------------------------------------------------------------------ notebook 3
def check_sinusoidal_embedding(fn) -> None:
    """fn(t, dim) = [sin(t w_i), cos(t w_i)] with w_i = 10000^(-i / (dim/2))."""
    t, dim = torch.tensor([0, 3, 50, 999]), 16
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32)

    def embed(exponent):
        ang = t.float()[:, None] * 10000 ** exponent[None]
        return torch.cat([ang.sin(), ang.cos()], 1), ang
    want, ang = embed(-i / half)
    _verdict("sinusoidal embedding", _twice("sinusoidal embedding", fn, t, dim), want,
             probe=lambda: _embedding_probe(fn, dim), mistakes={
        "sin and cos are in the wrong order: sines first, then cosines": torch.cat([ang.cos(), ang.sin()], 1),
        "the frequency exponent is -i / (dim/2), not -i / dim": embed(-i / dim)[0],
        "the exponent needs its minus sign: the frequencies 10000^(-i/(dim/2)) fall from 1 to 1/10000":
            embed(i / half)[0],
        "concatenate [sin | cos] along dim 1 rather than interleaving them":
            torch.stack([ang.sin(), ang.cos()], 2).reshape(4, dim),
    })
    _done("sinusoidal embedding")


FREQUENCY_RULES = {  # w_i for i = 0 .. dim/2 - 1; the first is the formula's
    "10000^(-i / (dim/2))": lambda i, half: 10000 ** (-i / half),
    "10000^(-i / dim)": lambda i, half: 10000 ** (-i / (2 * half)),
    "10000^(-i / (dim/2 - 1))": lambda i, half: 10000 ** (-i / (half - 1)),
    "10000^(-(i + 1) / (dim/2))": lambda i, half: 10000 ** (-(i + 1) / half),
    "10000^(i / (dim/2))": lambda i, half: 10000 ** (i / half),
    "10000^(-2i / (dim/2))": lambda i, half: 10000 ** (-2 * i / half),
    "1000^(-i / (dim/2))": lambda i, half: 1000 ** (-i / half),
    "e^(-i / (dim/2))": lambda i, half: torch.exp(-i / half),
}


def _embedding_probe(fn, dim: int) -> list:
    """Name what each column of the embedding holds: sin or cos of t w_i, for which i and which rule for w_i,
    read at t = 0, 1, 2, 3, 7, 50, 999 (a column is named only when one reading fits it at every t)."""
    t = torch.tensor([0, 1, 2, 3, 7, 50, 999])
    out = fn(t, dim).detach().double()
    half = dim // 2
    i = torch.arange(half, dtype=torch.float64)
    names, cands = [], []
    for rule, w in FREQUENCY_RULES.items():
        ang = t.double()[:, None] * w(i, half)[None]
        for f, vals in (("sin", ang.sin()), ("cos", ang.cos())):
            for k in range(half):
                names.append((f, k, rule))
                cands.append(vals[:, k])
    cands = torch.stack(cands)                                               # [n, len(t)]
    found = []
    for j in range(dim):
        hit = ((cands - out[:, j]).abs() < 1e-4).all(1).nonzero()
        found.append(names[int(hit[0])] if len(hit) else None)
    want = [("sin", j, next(iter(FREQUENCY_RULES))) if j < half else ("cos", j - half, next(iter(FREQUENCY_RULES)))
            for j in range(dim)]
    wrong = [j for j in range(dim) if found[j] != want[j]]
    if not wrong:
        return []
    rules = {found[j][2] for j in wrong if found[j] is not None}
    if None not in found and len(rules) == 1 and [f[:2] for f in found] == [w[:2] for w in want]:
        (rule,) = rules
        return [f"the frequencies are w_i = {rule}, where the formula has w_i = 10000^(-i / (dim/2)) "
                f"(w_1 = {FREQUENCY_RULES[rule](i, half)[1]:.4g} where the formula's is {10000 ** (-1 / half):.4g})"]
    j = wrong[0]
    f, k, _ = want[j]
    should = f"{f}(t w_{k}) (sines of w_0 .. w_{half - 1} in columns 0 .. {half - 1}, then the cosines)"
    if found[j] is None:
        return [f"column {j} is {out[1, j]:.4g} at t = 1, where the formula's {f}(t w_{k}) = "
                f"{cands[names.index(want[j])][1]:.4g}: it is not sin or cos of t times one frequency of a known rule"]
    g, m, rule = found[j]
    held = f"{g}(t w_{m})" + ("" if rule == next(iter(FREQUENCY_RULES)) else f" with w_i = {rule}")
    return [f"column {j} holds {held}, where the formula puts {should}"]


class _FixedModel(torch.nn.Module):
    """A deterministic stand-in network with one parameter, for checking losses."""

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x, t):
        return self.gain * x + 0.001 * t.float().view(-1, *([1] * (x.dim() - 1)))


def _loss_verdict(what: str, got, want: torch.Tensor, mistakes: dict, probe=None) -> None:
    """A loss must be a 0-dim float tensor that gradients flow back through, with the right value."""
    got = _as_result(what, got, want)
    if not got.requires_grad:
        raise CheckFailed(f"{what}: the loss carries no gradient (it was detached, computed under torch.no_grad(), "
                          "or rebuilt with torch.tensor(...)): training calls loss.backward() on it")
    _verdict(what, got, want, mistakes, atol=1e-5, probe=probe)


class _Recorder(torch.nn.Module):
    """A model that predicts 0 (with a gradient path) and remembers the input it was given."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen = None

    def forward(self, x, t):
        self.seen = x.detach().clone()
        return self.w * x


class _FixedLogits(torch.nn.Module):
    """A classifier whose logits are fixed in advance, whatever x_t (with a gradient path)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        return self.logits + self.w * x.flatten(1)[:, :1]


def _eps_loss_probe(fn, x0, t, s) -> list:
    """Probe the three parts of the eps loss: the input the model sees (its coefficients of x0 and of the noise,
    as for q_sample), the target (a model that predicts 0, with x0 = 0 or noise = 0) and the reduction."""
    lines = []

    def seen(x0_, noise_):
        m = _Recorder()
        fn(m, x0_, t, noise_, s)
        return m.seen
    atoms, nb = probes.schedule_atoms(s, t)
    terms = [Term("x0", "x0", Coef.of(("alpha_bar_t", 0.5)), phrase="the model's input: its coefficient of x0"),
             Term("noise", "the noise", Coef.of(("1 - alpha_bar_t", 0.5)),
                  phrase="the model's input: its coefficient of the noise")]
    inputs = {"x0_": x0, "noise_": torch.ones_like(x0)}
    coefs, offset, varies = probes.read_coefficients(seen, inputs, ["x0_", "noise_"])
    coefs = {"x0": coefs["x0_"], "noise": coefs["noise_"]}
    one, none = torch.ones_like(coefs["x0"]), torch.zeros_like(coefs["x0"])
    for a, b, what in ((one, none, "x0 itself"), (none, one, "the noise itself")):
        if probes.close(coefs["x0"], a) and probes.close(coefs["noise"], b) and probes.close(offset, none):
            lines.append(f"the model's input is {what}, where the model must see the noisy "
                         "x_t = q_sample(x0, t, noise)")
            coefs = {"x0": atoms["alpha_bar_t"].sqrt(), "noise": atoms["1 - alpha_bar_t"].sqrt()}   # reported once
    lines += probes.term_report(terms, coefs, atoms, _labels(t), nb,
                                varies={"x0": varies["x0_"], "noise": varies["noise_"]})
    e = torch.ones_like(x0)
    e.view(-1)[::2] = 3.0                                      # |e| and e^2 differ, so L1 and L2 differ
    z = torch.zeros_like(x0)
    with torch.no_grad():                                      # a model that predicts 0: the loss reads the target
        got = [float(fn(_Recorder(), z, t, e, s)), float(fn(_Recorder(), e, t, z, s))]
    targets = {"the noise": lambda x0_, n_: n_, "x0": lambda x0_, n_: x0_,
               "x_t": lambda x0_, n_: s.q_sample(x0_, t, n_)}
    errors = {"the squared error": lambda d: d ** 2, "the absolute error (an L1 loss)": lambda d: d.abs()}
    reductions = {"the mean over all numbers": lambda v: v.mean(), "the sum over all numbers": lambda v: v.sum(),
                  "a sum over each image's pixels, then a mean over the batch": lambda v: v.flatten(1).sum(1).mean(),
                  "the square root of the mean": lambda v: v.mean().sqrt()}
    def matches(tf, ef, rf):   # the loss of a model that predicts 0, for both probes
        return all(abs(g - float(rf(ef(tf(a, b))))) <= 1e-4 * (1 + abs(g)) for g, (a, b) in zip(got, ((z, e), (e, z))))

    found = [(tn, en, rn) for tn, tf in targets.items() for en, ef in errors.items() for rn, rf in reductions.items()
             if matches(tf, ef, rf)]
    formula = ("the noise", "the squared error", "the mean over all numbers")
    if len(found) == 1:
        parts = ["the target", "the error", "the reduction"]
        lines += [f"{part}: {g}, where the formula has {w}" for part, g, w in zip(parts, found[0], formula) if g != w]
        return lines
    return lines + [f"with a model that predicts 0, x0 = 0 and noise e, the loss is {got[0]:.4g}, where the formula's "
                    f"mean((0 - e)^2) = {float((e ** 2).mean()):.4g}"]


def _classifier_loss_probe(fn, x0, y, t, noise, s) -> list:
    """The reduction and the use of the logits, with logits fixed in advance (they do not depend on x)."""
    g = torch.Generator().manual_seed(12)
    logits = torch.randn(len(x0), 10, generator=g) * 2
    clf = _FixedLogits(logits)
    with torch.no_grad():
        v = float(fn(clf, x0, y, t, noise, s))
    ce = F.cross_entropy(logits, y, reduction="none")
    for value, what in ((float(ce.mean()), None),
                        (float(ce.sum()), f"summed over the batch ({len(y)} samples) where the formula takes the mean"),
                        (float(F.cross_entropy(logits.softmax(1), y)), "softmax is applied before F.cross_entropy, "
                         "which applies log-softmax itself"),
                        (float(F.nll_loss(logits, y)), "nll_loss on the raw logits: it needs log-probabilities"),
                        (-float(ce.mean()), "the loss is minus the cross-entropy: its sign is flipped")):
        if abs(v - value) <= 1e-4 * (1 + abs(value)):
            return [f"with the classifier's logits fixed, {what}"] if what else []
    return [f"with the classifier's logits fixed, the loss is {v:.4g}, where cross_entropy(logits, y) = "
            f"{float(ce.mean()):.4g}"]


def check_eps_loss(fn) -> None:
    """fn(model, x0, t, noise, schedule) = mean || model(x_t, t) - noise ||^2 with x_t = q_sample(x0, t, noise)."""
    s, g = _schedule(), torch.Generator().manual_seed(3)
    x0, noise = torch.randn(6, 1, 4, 4, generator=g), torch.randn(6, 1, 4, 4, generator=g)
    t = torch.cat([torch.tensor([0]), torch.randint(1, 1000, (5,), generator=g)])
    model = _FixedModel()
    x_t = s.q_sample(x0, t, noise)
    ab = _col(s.alpha_bars[t], x0)
    with torch.no_grad():
        want = F.mse_loss(model(x_t, t), noise)
        mistakes = {
            "the target of eps-prediction is the noise, not x0": F.mse_loss(model(x_t, t), x0),
            "the model must see the noisy x_t, not the clean x0": F.mse_loss(model(x0, t), noise),
            "the model must see the noisy x_t, not the noise itself": F.mse_loss(model(noise, t), noise),
            "take the mean of the squared errors, not the sum": F.mse_loss(model(x_t, t), noise, reduction="sum"),
            "the squared error, not the absolute error (that is an L1 loss)": F.l1_loss(model(x_t, t), noise),
            "x_t needs the square roots: x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise "
            "(schedule.q_sample(x0, t, noise) computes it)": F.mse_loss(model(ab * x0 + (1 - ab) * noise, t), noise),
        }
    _loss_verdict("eps loss", _twice("eps loss", fn, model, x0, t, noise, s), want, mistakes,
                  probe=lambda: _eps_loss_probe(fn, x0, t, s))
    _done("eps loss")


def check_reverse_mean(fn) -> None:
    """fn(x_t, t, eps, schedule) = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps)."""
    s, g = _coarse_schedule(), torch.Generator().manual_seed(4)
    x_t, eps = torch.randn(8, 1, 4, 4, generator=g), torch.randn(8, 1, 4, 4, generator=g)
    t = torch.cat([torch.tensor([0, 19]), torch.randint(1, 19, (6,), generator=g)])
    a, b, ab = _col(s.alphas[t], x_t), _col(s.betas[t], x_t), _col(s.alpha_bars[t], x_t)
    want = (x_t - b / (1 - ab).sqrt() * eps) / a.sqrt()
    atoms, nb = probes.schedule_atoms(s, t)
    terms = [Term("x_t", "x_t", Coef.of(("alpha_t", -0.5))),
             Term("eps", "eps", Coef.of(("beta_t", 1), ("1 - alpha_bar_t", -0.5), ("alpha_t", -0.5), c=-1))]
    probe = _linear_probe([(lambda x_t, eps: fn(x_t, t, eps, s), {"x_t": x_t, "eps": eps}, None)], terms, atoms,
                          _labels(t), nb)
    _verdict("reverse mean", _twice("reverse mean", fn, x_t, t, eps, s), want, probe=probe, mistakes={
        "the denominator is sqrt(1 - alpha_BAR_t), not sqrt(1 - alpha_t) (a misprint in one of our sources)":
            (x_t - b / (1 - a).sqrt() * eps) / a.sqrt(),
        "the whole bracket is divided by sqrt(alpha_t)": x_t - b / (1 - ab).sqrt() * eps,
        "divide the whole bracket (x_t - ... eps) by sqrt(alpha_t), not only x_t":
            x_t / a.sqrt() - b / (1 - ab).sqrt() * eps,
        "divide by sqrt(alpha_t), not sqrt(alpha_bar_t)": (x_t - b / (1 - ab).sqrt() * eps) / ab.sqrt(),
        "the noise term is subtracted: x_t - beta_t / sqrt(1 - alpha_bar_t) eps":
            (x_t + b / (1 - ab).sqrt() * eps) / a.sqrt(),
        "the eps coefficient is beta_t / sqrt(1 - alpha_bar_t): the square root is missing":
            (x_t - b / (1 - ab) * eps) / a.sqrt(),
    })
    _done("reverse mean")


# ------------------------------------------------------------------ notebook 4
def check_add_time_embedding(fn) -> None:
    """fn(h, emb, proj) = h + proj(emb)[:, :, None, None]: one number per channel, the same at every pixel."""
    g = torch.Generator().manual_seed(5)
    h, emb = torch.randn(3, 4, 5, 5, generator=g), torch.randn(3, 8, generator=g)
    proj = torch.nn.Linear(8, 4)
    with torch.no_grad():
        p = proj(emb)
        got = _twice("time embedding", fn, h, emb, proj,
                     shapes="proj(emb) has shape [B, C]: index it as proj(emb)[:, :, None, None] to add one value per "
                            "channel at every pixel of h [B, C, H, W]")
    _verdict("time embedding added to the features", got, h + p[:, :, None, None],
             probe=lambda: _embedding_sum_probe(fn, h, emb, proj), mistakes={
        "project the embedding with proj first, so it has one value per channel": h + emb[:, :4, None, None],
        "add the projected embedding, do not multiply": h * p[:, :, None, None],
        "the features h must be kept: return h + proj(emb), not only the embedding":
            p[:, :, None, None].expand(3, 4, 5, 5),
    })
    _done("time embedding")


def _embedding_sum_probe(fn, h, emb, proj) -> list:
    """Read the two terms of h + proj(emb)[:, :, None, None] apart: the features h (with a projection that
    gives 0) and the embedding term (with h = 0)."""
    zero = torch.nn.Linear(proj.in_features, proj.out_features)
    torch.nn.init.zeros_(zero.weight)
    torch.nn.init.zeros_(zero.bias)
    lines = []
    with torch.no_grad():
        p = proj(emb)[:, :, None, None].expand_as(h)
        only_h = fn(h, emb, zero).double()
        only_e = fn(torch.zeros_like(h), emb, proj).double()
    def times(got, ref):
        """k when got = k * ref everywhere, else None."""
        k = float((got * ref).sum() / (ref * ref).sum())
        return k if probes.close(got, k * ref) else None
    k = times(only_h, h.double())
    if not probes.close(only_h, h.double()):
        lines.append("with proj(emb) = 0 the result should be h itself; it is " + (
            "0: the features h are lost" if probes.close(only_h, torch.zeros_like(only_h)) else
            f"{k:.4g} h" if k is not None else f"off by up to {(only_h - h).abs().max():.3g}"))
    if not probes.close(only_e, p.double()):
        flat = only_e.flatten(2)
        if (flat.max(2).values - flat.min(2).values).abs().max() > 1e-6:
            lines.append("with h = 0 the result is not one value per channel at every pixel: the embedding term "
                         "must be proj(emb)[:, :, None, None]")
        elif probes.close(only_e, torch.zeros_like(only_e)):
            lines.append("with h = 0 the result is 0: the embedding term vanishes with h, so it is not added to h")
        elif times(only_e, p.double()) is not None:
            lines.append(f"with h = 0 the result is {times(only_e, p.double()):.4g} proj(emb)[:, :, None, None], where "
                         "the formula adds proj(emb) itself")
        else:
            lines.append(f"with h = 0 the result differs from proj(emb)[:, :, None, None] by up to "
                         f"{(only_e - p).abs().max():.3g}")
    return lines


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
    got = _twice("classifier loss", fn, spy, x0, y, t, noise, s)
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
        want = F.cross_entropy(logits, y)
        mistakes = {
            "use cross-entropy on the logits (F.cross_entropy applies log-softmax itself)": F.nll_loss(logits, y),
            "F.cross_entropy takes the raw logits: do not apply softmax first":
                F.cross_entropy(logits.softmax(1), y),
            "take the mean over the batch, not the sum": F.cross_entropy(logits, y, reduction="sum"),
        }
    _loss_verdict("classifier loss", got, want, mistakes,
                  probe=lambda: _classifier_loss_probe(fn, x0, y, t, noise, s))
    _done("classifier loss")


# ------------------------------------------------------------------ notebook 5
def _toy_classifier():
    from .core.toy import GaussianMixture2D

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
    before = x.clone()
    with torch.no_grad():  # it must work where the sampler has switched gradients off
        got = _twice("classifier gradient", fn, clf, x, t, y)
    if x.requires_grad or x.grad is not None or not torch.equal(x, before):
        raise CheckFailed("classifier gradient: your function changed the caller's x_t (requires_grad_, .grad or "
                          "an in-place update): work on a copy, x = x_t.detach().requires_grad_(True)")
    _verdict("classifier gradient", got, want, probe=lambda: _gradient_probe(fn, clf, x, t, y, want), mistakes={
        "take the gradient of the LOG-probability (log_softmax), not of the probability (softmax)":
            grad_of(lambda lg: F.softmax(lg, 1).gather(1, y[:, None])),
        "take the gradient of log_softmax at y, not of the raw logit at y":
            grad_of(lambda lg: lg.gather(1, y[:, None])),
        "pick the log-probability of each sample's own class y, not the sum over all classes":
            grad_of(lambda lg: F.log_softmax(lg, 1)),
        "log_p[:, y] picks every label of the batch for every sample: pick one per sample, "
        "log_p[torch.arange(B), y] (or log_p.gather(1, y[:, None]))":
            grad_of(lambda lg: F.log_softmax(lg, 1)[:, y]),
        "the sign is flipped: the gradient of log p(y | x_t) points toward class y": -want,
    })
    _done("classifier gradient")


def _gradient_probe(fn, clf, x, t, y, want) -> list:
    """Compare each sample's gradient with the formula's: a common factor (1/B, -1), right alone but wrong in a
    batch, or neither."""
    with torch.no_grad():
        got = fn(clf, x, t, y).detach().double()
    w = want.double()
    r = (got * w).sum(1) / (w * w).sum(1)
    along = (got - r[:, None] * w).norm(dim=1) <= 1e-4 * (1 + w.norm(dim=1))
    B = len(x)
    if along.all() and torch.allclose(r, r[:1].expand_as(r), rtol=1e-4):
        k = float(r[0])
        mean = "a mean over the batch, where each sample needs its own gradient: sum the log-probabilities, then " \
               "take the gradient"
        if abs(k * B - 1) < 1e-3:
            return [f"each sample's gradient is 1/B = 1/{B} of grad_x log p(y | x_t): {mean}"]
        if abs(k * B + 1) < 1e-3:
            return [f"each sample's gradient is minus 1/B = 1/{B} of grad_x log p(y | x_t): the sign is flipped, and "
                    + mean]
        return [f"each sample's gradient is {k:.4g} times grad_x log p(y | x_t)"]
    for objective, f in (("softmax at y", lambda lg: F.softmax(lg, 1).gather(1, y[:, None])),
                         ("the raw logit at y", lambda lg: lg.gather(1, y[:, None])),
                         ("log softmax summed over all classes", lambda lg: F.log_softmax(lg, 1))):
        with torch.enable_grad():
            xx = x.detach().clone().requires_grad_(True)
            (other,) = torch.autograd.grad(f(clf(xx, t)).sum(), xx)
        for k, what in ((1, ""), (-1, "minus "), (1 / B, f"1/B = 1/{B} of "), (-1 / B, f"minus 1/B = 1/{B} of ")):
            if probes.close(got, k * other.double()):
                return [f"it equals {what}the gradient of {objective}, where the formula takes the gradient of "
                        "log softmax at y (log p(y | x_t)), summed over the batch"]
    alone = fn(clf, x[:1], t[:1], y[:1]).detach().double()
    if probes.close(alone[0], w[0]):
        return [f"sample 0's gradient is right in a batch of 1 and wrong in a batch of {B}: each sample's gradient "
                "must depend on that sample alone (its own x_t and its own label y)"]
    b = int((got - w).norm(dim=1).argmax())
    return [f"sample {b}'s gradient is {[round(v, 4) for v in got[b].tolist()]}, where grad_x log p(y | x_t) is "
            f"{[round(v, 4) for v in w[b].tolist()]}"]


def check_guided_mean(fn) -> None:
    """fn(mean, variance, grad, scale) = mean + scale * variance * grad."""
    g = torch.Generator().manual_seed(8)
    mean, grad = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    var, s = torch.rand(4, 1, generator=g) * 0.1 + 0.01, 3.0
    scales = (3.0, 0.5, 2.0)
    atoms = {"s": torch.tensor(scales).double().repeat_interleave(4), "Sigma_t": var.double().flatten().repeat(3)}
    terms = [Term("mean", "the mean mu", Coef.of()), Term("grad", "grad", Coef.of(("s", 1), ("Sigma_t", 1)))]
    probe = _linear_probe([((lambda mean, grad, c=c: fn(mean, var, grad, c)), {"mean": mean, "grad": grad}, None)
                           for c in scales], terms, atoms, [f"s = {c:g}, Sigma_t = {v:.4g}" for c in scales
                                                            for v in var.flatten().tolist()], {})
    _verdict("guided mean", _twice("guided mean", fn, mean, var, grad, s), mean + s * var * grad, probe=probe,
             mistakes={
        "the sign of the guidance term: ADD s * Sigma * grad, to move toward the class": mean - s * var * grad,
        "scale by the variance Sigma_t, not by the standard deviation": mean + s * var.sqrt() * grad,
        "the scale s is missing": mean + var * grad,
        "the variance Sigma_t is missing: the shift is s * Sigma_t * grad": mean + s * grad,
    })
    _done("guided mean")


DDIM_PROBES = ((600, 580, 2.0), (20, -1, 2.0), (999, 900, 0.5), (300, 150, 3.0), (100, 40, 1.0), (50, -1, 0.5))


def _ddim_probe(fn, s, x, eps, grad) -> list:
    """With grad = 0 read the coefficients of x_t and eps (the plain DDIM step); then read the guidance as a
    shift of eps: grad's coefficient over eps's, which the formula makes -s sqrt(1 - alpha_bar_t)."""
    t, tp, c = (torch.tensor(v) for v in zip(*DDIM_PROBES))
    atoms, nb = probes.schedule_atoms(s, t, tp)
    atoms["s"] = c.double()
    got = {"x": [], "eps": [], "grad": []}
    for tt, pp, cc in DDIM_PROBES:
        coefs, _, _ = probes.read_coefficients(lambda x, eps, grad: fn(x, tt, pp, eps, grad, cc, s),
                                               {"x": x, "eps": eps, "grad": grad}, ["x", "eps", "grad"])
        for k in got:
            got[k].append(coefs[k][0])
    got = {k: torch.stack(v) for k, v in got.items()}
    got["shift"] = got["grad"] / got["eps"]
    terms = [Term("x", "x_t", Coef.of(("alpha_bar_{t'}", 0.5), ("alpha_bar_t", -0.5))),
             Term("eps", "eps", Coef.of(("1 - alpha_bar_{t'}", 0.5))
                  + Coef.of(("alpha_bar_{t'}", 0.5), ("1 - alpha_bar_t", 0.5), ("alpha_bar_t", -0.5), c=-1))]
    labels = [f"t = {a}, t' = {b}" for a, b, _ in DDIM_PROBES]
    lines = probes.term_report(terms, got, atoms, labels, nb)
    shift = Term("shift", "grad", Coef.of(("s", 1), ("1 - alpha_bar_t", 0.5), c=-1),
                 phrase="the guidance, read as a shift of eps (eps_hat = eps + shift * grad), has a shift that")
    report = probes.term_report([shift], got, atoms, [f"{v}, s = {k:g}" for v, (_, _, k) in zip(labels, DDIM_PROBES)],
                                nb)
    return lines + [line.replace("has a shift that is", "has a shift of") for line in report]


def check_guided_ddim_step(fn) -> None:
    """fn(x_t, t, t_prev, eps, grad, scale, schedule) -> x_{t_prev} by DDIM (eta = 0) with eps shifted by
    -scale * sqrt(1 - ab_t) * grad; t_prev = -1 means the last step (ab = 1)."""
    s, g = _schedule(), torch.Generator().manual_seed(9)
    x, eps, grad = (torch.randn(4, 2, generator=g) for _ in range(3))
    scale = 2.0
    for t, t_prev in ((600, 580), (20, -1)):
        ab, tt = s.alpha_bars[t], torch.full((4,), t)

        def ddim(x_t, e, to=t_prev, x0_eps=None):
            """The package's DDIM step (eta = 0) to timestep ``to``, x0_hat made from ``x0_eps`` (default e)."""
            return ddim_step(x_t, t, s.x0_from_eps(x_t, tt, e if x0_eps is None else x0_eps), s, eps_hat=e, t_prev=to)
        eps_hat = guided_eps(eps, ab, grad, scale)
        want = ddim(x, eps_hat)
        what = f"guided DDIM step {t} -> {t_prev}"
        mistakes = {
            "the sign: eps_hat = eps - s sqrt(1 - alpha_bar_t) grad (eps points AWAY from the data)":
                ddim(x, eps + scale * (1 - ab).sqrt() * grad),
            "scale the gradient by sqrt(1 - alpha_bar_t), not by sigma_t = sqrt(beta_t)":
                ddim(x, eps - scale * s.betas[t].sqrt() * grad),
            "scale the gradient by sqrt(1 - alpha_bar_t): the square root is missing":
                ddim(x, eps - scale * (1 - ab) * grad),
            "shift eps, not x_t: subtracting the gradient from x_t is the bug of one of our sources":
                ddim(x - scale * s.betas[t].sqrt() * grad, eps),
            "the guided eps_hat must be used in both places of the update, not only in x0_hat":
                ddim(x, eps, x0_eps=eps_hat),
        }
        if t_prev < 0:
            mistakes["at the last step (t_prev = -1) alpha_bar is 1, a clean image: alpha_bars[-1] is the noisiest "
                     "entry, at the other end of the chain"] = ddim(x, eps_hat, to=s.T - 1)
            mistakes["at the last step (t_prev = -1) alpha_bar is 1, not alpha_bars[0]: one more step of noise is "
                     "left there"] = ddim(x, eps_hat, to=0)
        else:
            mistakes["step to alpha_bar of t_prev, not of t - 1"] = ddim(x, eps_hat, to=t - 1)
        _verdict(what, _twice("guided DDIM step", fn, x, t, t_prev, eps, grad, scale, s), want, mistakes,
                 probe=lambda: _ddim_probe(fn, s, x, eps, grad))
    _done("guided DDIM step")


# ------------------------------------------------------------------ notebook 6
def check_drop_labels(fn) -> None:
    """fn(y, p_uncond, null_label, u) = null_label where u < p_uncond, else y (u: uniform numbers)."""
    g = torch.Generator().manual_seed(10)
    y, u = torch.randint(1, 10, (1000,), generator=g), torch.rand(1000, generator=g)
    want = torch.where(u < 0.2, torch.full_like(y, NULL_LABEL), y)
    got = _twice("conditioning dropout", fn, y.clone(), 0.2, NULL_LABEL, u)
    if isinstance(got, torch.Tensor) and got.shape == want.shape and got.is_floating_point():
        raise CheckFailed("conditioning dropout: labels must stay integers (torch.long): the class embedding "
                          "looks them up by index")
    _verdict("conditioning dropout", got, want, {
        "labels are dropped with probability 1 - p: replace where u < p_uncond":
            torch.where(u >= 0.2, torch.full_like(y, NULL_LABEL), y),
        f"a dropped label becomes the null label ({NULL_LABEL}), not class 0":
            torch.where(u < 0.2, torch.zeros_like(y), y),
        "use the u you are given, with u < p_uncond: u > 1 - p_uncond drops as many labels, but other ones":
            torch.where(u > 0.8, torch.full_like(y, NULL_LABEL), y),
    }, probe=lambda: _dropout_probe(fn, y, u, 0.2))
    _done("conditioning dropout")


def _dropout_probe(fn, y, u, p) -> list:
    """Which labels were replaced, and by what, against the formula's: those where u < p_uncond."""
    got = fn(y.clone(), p, NULL_LABEL, u)
    should, dropped = u < p, got != y
    n = f"{int(should.sum())} of {len(y)}"
    if torch.equal(got[~should], y[~should]) and got[should].unique().numel() == 1:
        return [f"the right labels are replaced (where u < p_uncond), but by {int(got[should][0])}, not the null label "
                f"{NULL_LABEL}"]
    if torch.equal(dropped, should):
        values = sorted(set(got[dropped].tolist()))
        return [f"the right labels are replaced (where u < p_uncond), but by {values}, not the null label "
                f"{NULL_LABEL}"]
    if not dropped.any():
        if not (fn(y.clone(), p, NULL_LABEL, torch.zeros_like(u)) != y).any():
            return [f"no label was dropped, not even with u = 0 everywhere: replace y by null_label wherever "
                    f"u < p_uncond ({n} here)"]
    first = {}
    for v in (0.0, 0.99):
        uu = u.clone()
        uu[0] = v
        first[v] = fn(y.clone(), p, NULL_LABEL, uu) != y
    if first[0.0].all() and not first[0.99].any():
        return ["the whole batch is dropped at once, or none of it, as u[0] < p_uncond or not: drop each label on "
                "its own, where its own u < p_uncond"]
    for rule, mask in (("u >= p_uncond", u >= p), ("u > 1 - p_uncond", u > 1 - p), ("u < 1 - p_uncond", u < 1 - p),
                       ("u > p_uncond", u > p)):
        if torch.equal(dropped, mask):
            return [f"labels are replaced where {rule} ({int(mask.sum())} of {len(y)}), where the formula replaces "
                    f"them where u < p_uncond ({n})"]
    return [f"{int(dropped.sum())} labels are replaced, where the formula replaces the {n} with u < p_uncond; "
            f"the two sets differ at {int((dropped != should).sum())} places"]


def check_cfg_eps(fn) -> None:
    """fn(eps_uncond, eps_cond, scale) = eps_u + scale * (eps_c - eps_u)."""
    g = torch.Generator().manual_seed(11)
    u, c, s = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g), 3.0
    scales = (3.0, 0.5, 2.0, 5.0)
    sv = torch.tensor(scales).double()
    atoms = {"s": sv, "1 - s": 1 - sv, "s - 1": sv - 1, "1 + s": 1 + sv}
    nb = {"s": [("s - 1", "the w = s - 1 convention: the course's s is w + 1"),
                ("1 + s", "the w-convention's 1 + w, with the course's s put for w")]}
    terms = [Term("u", "eps_uncond", Coef.of(("1 - s", 1))), Term("c", "eps_cond", Coef.of(("s", 1)))]
    probe = _linear_probe([((lambda u, c, k=k: fn(u, c, k)), {"u": u, "c": c}, [0]) for k in scales], terms, atoms,
                          [f"s = {k:g}" for k in scales], nb)
    _verdict("classifier-free guidance", _twice("cfg", fn, u, c, s), u + s * (c - u), probe=probe, mistakes={
        "the two predictions are swapped: start from eps_uncond and move toward eps_cond": c + s * (u - c),
        "that is the w-convention (1 + w) eps_c - w eps_u with w = s; the course writes eps_u + s (eps_c - eps_u)":
            (1 + s) * c - s * u,
        "that is s - 1 in place of s (the w = s - 1 convention applied twice): eps_u + s (eps_c - eps_u)":
            u + (s - 1) * (c - u),
        "the unconditional prediction is missing before the guided difference": s * (c - u),
    })
    _done("classifier-free guidance")
