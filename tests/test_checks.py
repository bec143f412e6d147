"""Each check passes the reference solution and catches every mistake it names, with that hint."""
import pytest
import torch
import torch.nn.functional as F

from course_utils import checks, sinusoidal_embedding
from course_utils.checks import CheckFailed


def col(v, x):
    return v.reshape(-1, *([1] * (x.dim() - 1)))


def run(check, fn, hint=None):
    if hint is None:
        check(fn)
    else:
        with pytest.raises(CheckFailed, match=hint):
            check(fn)


# notebook 1 ------------------------------------------------------------------
def q_ok(x0, t, e, s):
    ab = col(s.alpha_bars[t], x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * e


@pytest.mark.parametrize("fn, hint", [
    (q_ok, None),
    (lambda x0, t, e, s: col(s.alpha_bars[t], x0) * x0 + (1 - col(s.alpha_bars[t], x0)) * e, "square roots"),
    (lambda x0, t, e, s: col(s.alphas[t], x0).sqrt() * x0 + (1 - col(s.alphas[t], x0)).sqrt() * e, "alpha_t"),
    (lambda x0, t, e, s: q_ok(x0, t - 1, e, s), "off-by-one"),
    (lambda x0, t, e, s: (1 - col(s.alpha_bars[t], x0)).sqrt() * x0 + col(s.alpha_bars[t], x0).sqrt() * e, "swapped"),
    (lambda x0, t, e, s: s.alpha_bars[t].sqrt() * x0, "reshaped to"),
    (lambda x0, t, e, s: q_ok(x0, t, e, s) + 0.1, "wrong values"),
])
def test_check_q_sample(fn, hint):
    run(checks.check_q_sample, fn, hint)


def test_unsolved_exercise_raises_not_implemented():
    def todo(*args):
        raise NotImplementedError("write q_sample")
    with pytest.raises(NotImplementedError):
        checks.check_q_sample(todo)


# notebook 2 ------------------------------------------------------------------
@pytest.mark.parametrize("fn, hint", [
    (lambda t, T, x: (t.float() / T).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:]), None),
    (lambda t, T, x: (t.float() / T).view(-1, 1, 1, 1), "expand"),
    (lambda t, T, x: t.float().view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:]), "not scaled"),
    (lambda t, T, x: (t.float() / (T - 1)).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:]), "not T - 1"),
])
def test_check_time_map(fn, hint):
    run(checks.check_time_map, fn, hint)


def pm_parts(x0, xt, t, s):
    a, b = col(s.alphas[t], x0), col(s.betas[t], x0)
    ab, abp = col(s.alpha_bars[t], x0), col(s.alpha_bars_prev[t], x0)
    return a, b, ab, abp


@pytest.mark.parametrize("variant, hint", [
    ("ok", None), ("swap", "swapped"), ("ab", "alpha_bar_\\{t-1\\}"), ("nosqrt", "sqrt\\(alpha_t\\)"),
    ("wrap", "wrong only at t = 0"),
])
def test_check_posterior_mean(variant, hint):
    def fn(x0, xt, t, s):
        a, b, ab, abp = pm_parts(x0, xt, t, s)
        c0, ct = abp.sqrt() * b / (1 - ab), a.sqrt() * (1 - abp) / (1 - ab)
        if variant == "swap":
            return ct * x0 + c0 * xt
        if variant == "ab":
            return ab.sqrt() * b / (1 - ab) * x0 + ct * xt
        if variant == "nosqrt":
            return c0 * x0 + a * (1 - abp) / (1 - ab) * xt
        if variant == "wrap":      # alpha_bars[t - 1]: right for t >= 1, alpha_bars[-1] at t = 0
            abw = col(s.alpha_bars[t - 1], x0)
            return abw.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - abw) / (1 - ab) * xt
        return c0 * x0 + ct * xt
    run(checks.check_posterior_mean, fn, hint)


@pytest.mark.parametrize("variant, hint", [
    ("ok", None), ("noise_at_0", "no noise is added at the last step"), ("var", "standard deviation"),
    ("beta", "posterior variance"), ("no_noise", "must add noise"),
])
def test_check_ddpm_step(variant, hint):
    def fn(x_t, t, x0, s, z):
        tt = torch.full((x_t.shape[0],), t)
        mean = s.posterior_mean(x0, x_t, tt)
        var = s.posterior_variance[t]
        if variant == "noise_at_0":
            return mean + s.betas[t].sqrt() * z if t == 0 else mean + var.sqrt() * z
        if variant == "var":
            return mean + var * z if t > 0 else mean
        if variant == "beta":
            return mean + s.betas[t].sqrt() * z if t > 0 else mean
        if variant == "no_noise":
            return mean
        return mean + var.sqrt() * z if t > 0 else mean
    run(checks.check_ddpm_step, fn, hint)


# notebook 3 ------------------------------------------------------------------
def emb_parts(t, dim, denom):
    i = torch.arange(dim // 2, dtype=torch.float32)
    return t.float()[:, None] * 10000 ** (-i / denom)[None]


@pytest.mark.parametrize("fn, hint", [
    (lambda t, d: sinusoidal_embedding(t, d), None),
    (lambda t, d: torch.cat([emb_parts(t, d, d // 2).cos(), emb_parts(t, d, d // 2).sin()], 1), "wrong order"),
    (lambda t, d: torch.cat([emb_parts(t, d, d).sin(), emb_parts(t, d, d).cos()], 1), "exponent"),
    (lambda t, d: torch.stack([emb_parts(t, d, d // 2).sin(), emb_parts(t, d, d // 2).cos()], 2).flatten(1),
     "interleaving"),
])
def test_check_sinusoidal_embedding(fn, hint):
    run(checks.check_sinusoidal_embedding, fn, hint)


@pytest.mark.parametrize("variant, hint", [
    ("ok", None), ("x0_target", "not x0"), ("clean_input", "noisy x_t"), ("sum", "mean of the squared"),
])
def test_check_eps_loss(variant, hint):
    def fn(model, x0, t, noise, s):
        x_t = s.q_sample(x0, t, noise)
        if variant == "x0_target":
            return F.mse_loss(model(x_t, t), x0)
        if variant == "clean_input":
            return F.mse_loss(model(x0, t), noise)
        if variant == "sum":
            return ((model(x_t, t) - noise) ** 2).sum()
        return F.mse_loss(model(x_t, t), noise)
    run(checks.check_eps_loss, fn, hint)


@pytest.mark.parametrize("variant, hint", [
    ("ok", None), ("misprint", "misprint"), ("no_div", "divided by sqrt"), ("ab", "not sqrt\\(alpha_bar_t\\)"),
    ("sign", "subtracted"),
])
def test_check_reverse_mean(variant, hint):
    def fn(x_t, t, eps, s):
        a, b, ab = col(s.alphas[t], x_t), col(s.betas[t], x_t), col(s.alpha_bars[t], x_t)
        if variant == "misprint":
            return (x_t - b / (1 - a).sqrt() * eps) / a.sqrt()
        if variant == "no_div":
            return x_t - b / (1 - ab).sqrt() * eps
        if variant == "ab":
            return (x_t - b / (1 - ab).sqrt() * eps) / ab.sqrt()
        if variant == "sign":
            return (x_t + b / (1 - ab).sqrt() * eps) / a.sqrt()
        return (x_t - b / (1 - ab).sqrt() * eps) / a.sqrt()
    run(checks.check_reverse_mean, fn, hint)


# notebook 4 ------------------------------------------------------------------
@pytest.mark.parametrize("fn, hint", [
    (lambda h, e, p: h + p(e)[:, :, None, None], None),
    (lambda h, e, p: h + e[:, :h.shape[1], None, None], "project"),
    (lambda h, e, p: h * p(e)[:, :, None, None], "do not multiply"),
    (lambda h, e, p: h + p(e)[:, None, :, None],
     "raised RuntimeError(.|\\n)*index it as proj\\(emb\\)\\[:, :, None, None\\]"),
])
def test_check_add_time_embedding(fn, hint):
    run(checks.check_add_time_embedding, fn, hint)


@pytest.mark.parametrize("variant, hint", [
    ("ok", None), ("clean", "noisy x_t"), ("no_t", "timesteps"), ("nll", "cross-entropy"),
])
def test_check_classifier_loss(variant, hint):
    def fn(clf, x0, y, t, noise, s):
        x_t = s.q_sample(x0, t, noise)
        if variant == "clean":
            return F.cross_entropy(clf(x0, t), y)
        if variant == "no_t":
            return F.cross_entropy(clf(x_t, torch.zeros_like(t)), y)
        if variant == "nll":
            return F.nll_loss(clf(x_t, t), y)
        return F.cross_entropy(clf(x_t, t), y)
    run(checks.check_classifier_loss, fn, hint)


# notebook 5 ------------------------------------------------------------------
# the classifier gradient's mistakes (softmax, raw logit, all classes, sign, ...) are in test_check_catalogue.py
def test_check_classifier_grad_needs_enable_grad():
    def forgets_enable_grad(clf, x, t, y):
        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(F.log_softmax(clf(x, t), 1).gather(1, y[:, None]).sum(), x)[0]
    with pytest.raises(CheckFailed, match="raised RuntimeError(.|\n)*torch.enable_grad"):
        checks.check_classifier_grad(forgets_enable_grad)


@pytest.mark.parametrize("fn, hint", [
    (lambda m, v, g, s: m + s * v * g, None),
    (lambda m, v, g, s: m - s * v * g, "sign"),
    (lambda m, v, g, s: m + s * v.sqrt() * g, "standard deviation"),
    (lambda m, v, g, s: m + v * g, "scale s is missing"),
])
def test_check_guided_mean(fn, hint):
    run(checks.check_guided_mean, fn, hint)


@pytest.mark.parametrize("variant, hint", [
    ("ok", None), ("sign", "sign"), ("sigma", "not by sigma_t"), ("shift_x", "shift eps, not x_t"),
    ("half", "both places"),
])
def test_check_guided_ddim_step(variant, hint):
    def fn(x, t, tp, eps, g, scale, s):
        ab, abp = s.alpha_bars[t], (s.alpha_bars[tp] if tp >= 0 else torch.tensor(1.0))
        e = eps - scale * (1 - ab).sqrt() * g
        if variant == "sign":
            e = eps + scale * (1 - ab).sqrt() * g
        if variant == "sigma":
            e = eps - scale * s.betas[t].sqrt() * g
        if variant == "shift_x":
            x, e = x - scale * s.betas[t].sqrt() * g, eps
        x0 = (x - (1 - ab).sqrt() * e) / ab.sqrt()
        if variant == "half":
            return abp.sqrt() * x0 + (1 - abp).sqrt() * eps
        return abp.sqrt() * x0 + (1 - abp).sqrt() * e
    run(checks.check_guided_ddim_step, fn, hint)


# notebook 6 ------------------------------------------------------------------
@pytest.mark.parametrize("fn, hint", [
    (lambda y, p, null, u: torch.where(u < p, torch.full_like(y, null), y), None),
    (lambda y, p, null, u: torch.where(u >= p, torch.full_like(y, null), y), "1 - p"),
    (lambda y, p, null, u: torch.where(u < p, torch.zeros_like(y), y), "not class 0"),
])
def test_check_drop_labels(fn, hint):
    run(checks.check_drop_labels, fn, hint)


@pytest.mark.parametrize("fn, hint", [
    (lambda u, c, s: u + s * (c - u), None),
    (lambda u, c, s: c + s * (u - c), "swapped"),
    (lambda u, c, s: (1 + s) * c - s * u, "w-convention"),
    (lambda u, c, s: s * (c - u), "missing"),
])
def test_check_cfg_eps(fn, hint):
    run(checks.check_cfg_eps, fn, hint)
