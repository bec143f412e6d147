"""The exercise checks measured on a catalogue of plausible student answers.

MISTAKES: wrong answers a student might write, each with the words its hint must contain
(``caught``: the check fails; ``named``: its message contains those words). CORRECT: other
right ways to write each answer, all of which must be accepted. The test prints the table.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from course_utils import checks
from course_utils.checks import CheckFailed

CHECKS = {
    "1.1": checks.check_q_sample, "1.2": checks.check_snr, "2.1": checks.check_time_map,
    "2.2": checks.check_posterior_mean, "2.3": checks.check_ddpm_step, "3.1": checks.check_sinusoidal_embedding,
    "3.2": checks.check_eps_loss,
    "3.3": checks.check_reverse_mean, "4.1": checks.check_add_time_embedding, "4.2": checks.check_classifier_loss,
    "5.1": checks.check_classifier_grad, "5.2": checks.check_guided_mean, "5.3": checks.check_guided_ddim_step,
    "6.1": checks.check_drop_labels, "6.2": checks.check_cfg_eps,
}


def col(v, x):
    return v.view(-1, *([1] * (x.dim() - 1)))


# ---------------------------------------------------------------- the coefficients, and the right formulas
def A(s, t, x):        # alpha_t, shaped to broadcast against x
    return col(s.alphas[t], x)


def B(s, t, x):        # beta_t
    return col(s.betas[t], x)


def AB(s, t, x):       # alpha_bar_t
    return col(s.alpha_bars[t], x)


def ABP(s, t, x):      # alpha_bar_{t-1}, 1 at t = 0
    return col(s.alpha_bars_prev[t], x)


def q_sample(x0, t, noise, s):
    """x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise"""
    return AB(s, t, x0).sqrt() * x0 + (1 - AB(s, t, x0)).sqrt() * noise


def posterior(x0, xt, t, s):
    """mu = sqrt(ab_{t-1}) b_t / (1 - ab_t) x0 + sqrt(a_t) (1 - ab_{t-1}) / (1 - ab_t) x_t"""
    a, b, ab, abp = A(s, t, x0), B(s, t, x0), AB(s, t, x0), ABP(s, t, x0)
    return abp.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - abp) / (1 - ab) * xt


def step_mean(xt, t, x0, s):
    """The posterior mean at the int timestep t, for the whole batch."""
    return posterior(x0, xt, torch.full((xt.shape[0],), t), s)


def ddpm_step(xt, t, x0, s, z):
    """x_{t-1} = mu + sqrt(posterior_variance_t) z, and mu alone at t = 0"""
    return step_mean(xt, t, x0, s) + (s.posterior_variance[t].sqrt() * z if t > 0 else 0)


def angles(t, exponent):
    """t 10000^exponent_i, [B, dim / 2]"""
    return t.float()[:, None] * 10000 ** exponent[None]


def freq(d):           # the right exponents -i / (d / 2)
    return -torch.arange(d // 2, dtype=torch.float32) / (d // 2)


def eps_loss(model, x0, t, noise, s):
    """mean (eps_theta(x_t, t) - noise)^2"""
    return F.mse_loss(model(q_sample(x0, t, noise, s), t), noise)


def grad_of(objective, clf, xt, t):
    """The gradient with respect to x_t of objective(the classifier's logits), summed over the batch."""
    with torch.enable_grad():
        x = xt.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(objective(clf(x, t)).sum(), x)
    return g


def grad_log_p(clf, xt, t, y):
    """grad_x log softmax(logits)[y]"""
    return grad_of(lambda lg: F.log_softmax(lg, 1).gather(1, y[:, None]), clf, xt, t)


def ab_at(s, t):       # alpha_bar at one int timestep, 1 at t = -1 (after the last step)
    return s.alpha_bars[t] if t >= 0 else torch.tensor(1.0)


def ddim_to(x, eps_for_x0, ab, abp, eps_direction=None):
    """sqrt(ab') x0_hat + sqrt(1 - ab') eps, x0_hat = (x - sqrt(1 - ab) eps) / sqrt(ab)"""
    x0_hat = (x - (1 - ab).sqrt() * eps_for_x0) / ab.sqrt()
    return abp.sqrt() * x0_hat + (1 - abp).sqrt() * (eps_for_x0 if eps_direction is None else eps_direction)


# ---------------------------------------------------------------- wrong answers that need more than one line
def leaks_gradients(clf, xt, t, y):
    """A gradient taken with .backward() on the caller's tensor: it accumulates from call to call."""
    with torch.enable_grad():
        xt.requires_grad_(True)
        F.log_softmax(clf(xt, t), 1).gather(1, y[:, None]).sum().backward()
    return xt.grad


def whole_batch_dropout(y, p, null, u):
    return torch.full_like(y, null) if u[0] < p else y


def dropout_in_place(y, p, null, u):
    y[u < p] = null
    return y


def q_sample_fresh_noise(x0, t, noise, s):
    return q_sample(x0, t, torch.randn_like(noise), s)


def ddim_shifting_x_t(x, t, tp, e, g, c, s):
    """x_t moved by s sqrt(beta_t) grad, eps left alone"""
    return ddim_to(x - c * s.betas[t].sqrt() * g, e, ab_at(s, t), ab_at(s, tp))


def ddim_eps_hat_only_in_x0(x, t, tp, e, g, c, s):
    """eps_hat in x0_hat, the plain eps in the direction term"""
    ab = ab_at(s, t)
    return ddim_to(x, e - c * (1 - ab).sqrt() * g, ab, ab_at(s, tp), eps_direction=e)


MISTAKES = [
    # 1.1 q_sample(x0, t, noise, schedule)
    ("1.1", "no square roots", lambda x0, t, e, s: AB(s, t, x0) * x0 + (1 - AB(s, t, x0)) * e, "square roots"),
    ("1.1", "alpha_t for alpha_bar_t", lambda x0, t, e, s: A(s, t, x0).sqrt() * x0 + (1 - A(s, t, x0)).sqrt() * e,
     "alpha_t"),
    ("1.1", "off-by-one t", lambda x0, t, e, s: AB(s, t - 1, x0).sqrt() * x0 + (1 - AB(s, t - 1, x0)).sqrt() * e,
     "off-by-one"),
    ("1.1", "coefficients swapped", lambda x0, t, e, s: AB(s, t, x0).sqrt() * e + (1 - AB(s, t, x0)).sqrt() * x0,
     "swapped"),
    ("1.1", "noise scaled by sqrt(beta_t)", lambda x0, t, e, s: AB(s, t, x0).sqrt() * x0 + B(s, t, x0).sqrt() * e,
     "sqrt\\(beta_t\\)"),
    ("1.1", "no reshape of alpha_bars[t]", lambda x0, t, e, s: s.alpha_bars[t].sqrt() * x0,
     "reshaped to \\[B, 1, 1, 1\\]"),
    ("1.1", "float64 coefficients", lambda x0, t, e, s: q_sample(x0, t, e, s).double(), "dtype"),
    ("1.1", "draws its own noise", q_sample_fresh_noise, "different results"),
    # 1.2 snr(alpha_bars)
    ("1.2", "ratio of standard deviations", lambda ab: ab.sqrt() / (1 - ab).sqrt(), "ratio of standard deviations"),
    ("1.2", "upside down", lambda ab: (1 - ab) / ab, "upside down"),
    ("1.2", "log SNR", lambda ab: ab.log() - (1 - ab).log(), "log SNR"),
    ("1.2", "alpha_bar_t alone", lambda ab: ab.clone(), "alpha_bar_t itself"),
    ("1.2", "a list, not a tensor", lambda ab: [a / (1 - a) for a in ab.tolist()], "expected a tensor"),
    # 2.1 make_time_map(t, T, x)
    ("2.1", "t not divided by T", lambda t, T, x: t.float().view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:]),
     "not scaled"),
    ("2.1", "divided by T - 1", lambda t, T, x: (t.float() / (T - 1)).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:]),
     "not T - 1"),
    ("2.1", "not expanded", lambda t, T, x: (t.float() / T).view(-1, 1, 1, 1), "expand"),
    ("2.1", "integer division", lambda t, T, x: (t // T).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:]),
     "integer division"),
    # 2.2 posterior_mean(x0_hat, x_t, t, schedule)
    ("2.2", "coefficients swapped", lambda x0, xt, t, s: (ABP(s, t, x0).sqrt() * B(s, t, x0) * xt
                                                          + A(s, t, x0).sqrt() * (1 - ABP(s, t, x0)) * x0)
     / (1 - AB(s, t, x0)), "swapped"),
    ("2.2", "alpha_bar_t in the x0 coefficient", lambda x0, xt, t, s: (AB(s, t, x0).sqrt() * B(s, t, x0) * x0
                                                                       + A(s, t, x0).sqrt() * (1 - ABP(s, t, x0)) * xt)
     / (1 - AB(s, t, x0)), "alpha_bars_prev"),
    ("2.2", "alpha_t without sqrt", lambda x0, xt, t, s: (ABP(s, t, x0).sqrt() * B(s, t, x0) * x0
                                                          + A(s, t, x0) * (1 - ABP(s, t, x0)) * xt)
     / (1 - AB(s, t, x0)), "sqrt\\(alpha_t\\)"),
    ("2.2", "alpha_bars[t - 1], wrong at t = 0", lambda x0, xt, t, s: (AB(s, t - 1, x0).sqrt() * B(s, t, x0) * x0
                                                                       + A(s, t, x0).sqrt() * (1 - AB(s, t - 1, x0))
                                                                       * xt) / (1 - AB(s, t, x0)),
     "wrong only at t = 0"),
    ("2.2", "divides by 1 - alpha_bar_{t-1}", lambda x0, xt, t, s: (ABP(s, t, x0).sqrt() * B(s, t, x0) * x0
                                                                    + A(s, t, x0).sqrt() * (1 - ABP(s, t, x0)) * xt)
     / (1 - ABP(s, t, x0)), "NaN or inf|1 - alpha_bar_t"),
    ("2.2", "no reshape", lambda x0, xt, t, s: s.alpha_bars_prev[t].sqrt() * x0, "reshaped to \\[B, 1, 1, 1\\]"),
    # 2.3 ddpm_step(x_t, t, x0_hat, schedule, noise)
    ("2.3", "variance for the standard deviation",
     lambda xt, t, x0, s, z: step_mean(xt, t, x0, s) + (s.posterior_variance[t] * z if t > 0 else 0),
     "standard deviation"),
    ("2.3", "beta_t for the posterior variance, noise at t = 0 too",
     lambda xt, t, x0, s, z: step_mean(xt, t, x0, s) + s.betas[t].sqrt() * z, "not beta_t"),
    ("2.3", "posterior_variance[t - 1]",
     lambda xt, t, x0, s, z: step_mean(xt, t, x0, s) + (s.posterior_variance[t - 1].sqrt() * z if t > 0 else 0),
     "posterior_variance\\[t-1\\]"),
    ("2.3", "no noise at all", lambda xt, t, x0, s, z: step_mean(xt, t, x0, s), "must add noise"),
    ("2.3", "no noise at t = 1 either",
     lambda xt, t, x0, s, z: step_mean(xt, t, x0, s) + (s.posterior_variance[t].sqrt() * z if t > 1 else 0),
     "must add noise"),
    # 3.1 sinusoidal(t, dim)
    ("3.1", "cos before sin", lambda t, d: torch.cat([angles(t, freq(d)).cos(), angles(t, freq(d)).sin()], 1),
     "wrong order"),
    ("3.1", "exponent -i / dim", lambda t, d: torch.cat([angles(t, freq(d) / 2).sin(), angles(t, freq(d) / 2).cos()],
                                                         1), "-i / \\(dim/2\\)"),
    ("3.1", "exponent without its minus sign",
     lambda t, d: torch.cat([angles(t, -freq(d)).sin(), angles(t, -freq(d)).cos()], 1), "minus sign"),
    ("3.1", "sin and cos interleaved",
     lambda t, d: torch.stack([angles(t, freq(d)).sin(), angles(t, freq(d)).cos()], 2).reshape(len(t), d),
     "interleaving"),
    # 3.2 eps_loss(model, x0, t, noise, schedule)
    ("3.2", "x0 as the target", lambda m, x0, t, e, s: F.mse_loss(m(q_sample(x0, t, e, s), t), x0), "not x0"),
    ("3.2", "model sees x0", lambda m, x0, t, e, s: F.mse_loss(m(x0, t), e), "noisy x_t, not the clean"),
    ("3.2", "model sees the noise", lambda m, x0, t, e, s: F.mse_loss(m(e, t), e), "not the noise itself"),
    ("3.2", "sum, not mean", lambda m, x0, t, e, s: F.mse_loss(m(q_sample(x0, t, e, s), t), e, reduction="sum"),
     "mean of the squared"),
    ("3.2", "L1 loss", lambda m, x0, t, e, s: F.l1_loss(m(q_sample(x0, t, e, s), t), e), "absolute error"),
    ("3.2", "x_t without square roots",
     lambda m, x0, t, e, s: F.mse_loss(m(AB(s, t, x0) * x0 + (1 - AB(s, t, x0)) * e, t), e), "square roots"),
    ("3.2", "returns .item()", lambda m, x0, t, e, s: eps_loss(m, x0, t, e, s).item(), "not a Python number"),
    ("3.2", "fresh noise inside", lambda m, x0, t, e, s: eps_loss(m, x0, t, torch.randn_like(e), s),
     "different results"),
    ("3.2", "computed under no_grad", lambda m, x0, t, e, s: torch.no_grad()(eps_loss)(m, x0, t, e, s),
     "no gradient"),
    # 3.3 reverse_mean(x_t, t, eps, schedule)
    ("3.3", "sqrt(1 - alpha_t) misprint",
     lambda xt, t, e, s: (xt - B(s, t, xt) / (1 - A(s, t, xt)).sqrt() * e) / A(s, t, xt).sqrt(), "misprint"),
    ("3.3", "bracket not divided", lambda xt, t, e, s: xt - B(s, t, xt) / (1 - AB(s, t, xt)).sqrt() * e,
     "whole bracket is divided"),
    ("3.3", "only x_t divided",
     lambda xt, t, e, s: xt / A(s, t, xt).sqrt() - B(s, t, xt) / (1 - AB(s, t, xt)).sqrt() * e, "not only x_t"),
    ("3.3", "divided by sqrt(alpha_bar_t)",
     lambda xt, t, e, s: (xt - B(s, t, xt) / (1 - AB(s, t, xt)).sqrt() * e) / AB(s, t, xt).sqrt(),
     "not sqrt\\(alpha_bar_t\\)"),
    ("3.3", "noise term added",
     lambda xt, t, e, s: (xt + B(s, t, xt) / (1 - AB(s, t, xt)).sqrt() * e) / A(s, t, xt).sqrt(), "subtracted"),
    ("3.3", "eps coefficient without sqrt",
     lambda xt, t, e, s: (xt - B(s, t, xt) / (1 - AB(s, t, xt)) * e) / A(s, t, xt).sqrt(), "square root is missing"),
    ("3.3", "no reshape", lambda xt, t, e, s: xt / s.alphas[t].sqrt(), "reshaped to \\[B, 1, 1, 1\\]"),
    # 4.1 add_time_embedding(h, emb, proj)
    ("4.1", "embedding not projected", lambda h, e, p: h + e[:, :h.shape[1], None, None], "project"),
    ("4.1", "multiplied", lambda h, e, p: h * p(e)[:, :, None, None], "do not multiply"),
    ("4.1", "wrong axes", lambda h, e, p: h + p(e)[:, None, :, None], "proj\\(emb\\)\\[:, :, None, None\\]"),
    ("4.1", "features dropped", lambda h, e, p: p(e)[:, :, None, None].expand_as(h), "features h must be kept"),
    # 4.2 classifier_loss(classifier, x0, y, t, noise, schedule)
    ("4.2", "clean x0", lambda c, x0, y, t, e, s: F.cross_entropy(c(x0, t), y), "noisy x_t"),
    ("4.2", "t not passed", lambda c, x0, y, t, e, s: F.cross_entropy(c(s.q_sample(x0, t, e), torch.zeros_like(t)), y),
     "timesteps"),
    ("4.2", "nll_loss on logits", lambda c, x0, y, t, e, s: F.nll_loss(c(s.q_sample(x0, t, e), t), y),
     "applies log-softmax itself"),
    ("4.2", "softmax before cross_entropy",
     lambda c, x0, y, t, e, s: F.cross_entropy(c(s.q_sample(x0, t, e), t).softmax(1), y), "do not apply softmax"),
    ("4.2", "sum over the batch",
     lambda c, x0, y, t, e, s: F.cross_entropy(c(s.q_sample(x0, t, e), t), y, reduction="sum"), "mean over the batch"),
    ("4.2", "returns .item()", lambda c, x0, y, t, e, s: F.cross_entropy(c(s.q_sample(x0, t, e), t), y).item(),
     "not a Python number"),
    # 5.1 grad_log_p(classifier, x_t, t, y)
    ("5.1", "gradient of softmax",
     lambda c, x, t, y: grad_of(lambda lg: F.softmax(lg, 1).gather(1, y[:, None]), c, x, t), "LOG-probability"),
    ("5.1", "gradient of the raw logit", lambda c, x, t, y: grad_of(lambda lg: lg.gather(1, y[:, None]), c, x, t),
     "raw logit"),
    ("5.1", "all classes summed", lambda c, x, t, y: grad_of(lambda lg: F.log_softmax(lg, 1), c, x, t), "own class"),
    ("5.1", "log_p[:, y]", lambda c, x, t, y: grad_of(lambda lg: F.log_softmax(lg, 1)[:, y], c, x, t), "arange"),
    ("5.1", "sign flipped", lambda c, x, t, y: -grad_log_p(c, x, t, y), "sign is flipped"),
    ("5.1", "no enable_grad", lambda c, x, t, y: torch.autograd.grad(
        F.log_softmax(c(x.detach().requires_grad_(True), t), 1).gather(1, y[:, None]).sum(), x)[0], "enable_grad"),
    ("5.1", ".backward() on the caller's x_t", leaks_gradients, "changed the caller's x_t|accumulate"),
    # 5.2 shift_mean(mean, variance, grad, scale)
    ("5.2", "sign", lambda m, v, g, s: m - s * v * g, "sign of the guidance"),
    ("5.2", "standard deviation", lambda m, v, g, s: m + s * v.sqrt() * g, "not by the standard deviation"),
    ("5.2", "no scale", lambda m, v, g, s: m + v * g, "scale s is missing"),
    ("5.2", "no variance", lambda m, v, g, s: m + s * g, "variance Sigma_t is missing"),
    # 5.3 guided_ddim_step(x_t, t, t_prev, eps, grad, scale, schedule): eps_hat = eps - s sqrt(1 - ab_t) grad
    ("5.3", "sign", lambda x, t, tp, e, g, c, s: ddim_to(x, e + c * (1 - ab_at(s, t)).sqrt() * g, ab_at(s, t),
                                                        ab_at(s, tp)), "the sign"),
    ("5.3", "sigma_t for sqrt(1 - alpha_bar_t)",
     lambda x, t, tp, e, g, c, s: ddim_to(x, e - c * s.betas[t].sqrt() * g, ab_at(s, t), ab_at(s, tp)), "sigma_t"),
    ("5.3", "1 - alpha_bar_t without sqrt",
     lambda x, t, tp, e, g, c, s: ddim_to(x, e - c * (1 - ab_at(s, t)) * g, ab_at(s, t), ab_at(s, tp)),
     "square root is missing"),
    ("5.3", "shifts x_t", ddim_shifting_x_t, "shift eps, not x_t"),
    ("5.3", "eps_hat only in x0_hat", ddim_eps_hat_only_in_x0, "both places"),
    ("5.3", "alpha_bars[-1] at the last step", lambda x, t, tp, e, g, c, s: ddim_to(
        x, e - c * (1 - ab_at(s, t)).sqrt() * g, ab_at(s, t), s.alpha_bars[tp]), "noisiest entry"),
    ("5.3", "alpha_bars[0] at the last step", lambda x, t, tp, e, g, c, s: ddim_to(
        x, e - c * (1 - ab_at(s, t)).sqrt() * g, ab_at(s, t), s.alpha_bars[max(tp, 0)]), "not alpha_bars\\[0\\]"),
    ("5.3", "steps to t - 1", lambda x, t, tp, e, g, c, s: ddim_to(
        x, e - c * (1 - ab_at(s, t)).sqrt() * g, ab_at(s, t), ab_at(s, t - 1)), "not of t - 1"),
    # 6.1 drop_labels(y, p_uncond, null_label, u)
    ("6.1", "keeps with probability p", lambda y, p, n, u: torch.where(u >= p, torch.full_like(y, n), y),
     "probability 1 - p"),
    ("6.1", "drops to class 0", lambda y, p, n, u: torch.where(u < p, torch.zeros_like(y), y), "not class 0"),
    ("6.1", "u > 1 - p", lambda y, p, n, u: torch.where(u > 1 - p, torch.full_like(y, n), y),
     "use the u you are given"),
    ("6.1", "whole batch at once", whole_batch_dropout, "whole batch|no label was dropped"),
    ("6.1", "float labels", lambda y, p, n, u: torch.where(u < p, float(n), y.float()), "integers"),
    ("6.1", "nothing dropped", lambda y, p, n, u: y.clone(), "no label was dropped"),
    # 6.2 guide(eps_uncond, eps_cond, scale)
    ("6.2", "swapped", lambda u, c, s: c + s * (u - c), "swapped"),
    ("6.2", "the w-convention with w = s", lambda u, c, s: (1 + s) * c - s * u, "w-convention"),
    ("6.2", "starts from eps_cond", lambda u, c, s: c + s * (c - u), "w-convention"),   # the same formula
    ("6.2", "s - 1 for s", lambda u, c, s: u + (s - 1) * (c - u), "s - 1 in place of s"),
    ("6.2", "eps_uncond missing", lambda u, c, s: s * (c - u), "unconditional prediction is missing"),
]


def guided_ddim_via_prev_table(x, t, tp, e, g, c, s):
    """alpha_bars_prev[t_prev + 1] is alpha_bars[t_prev], and 1 at t_prev = -1."""
    ab, abp = s.alpha_bars[t], s.alpha_bars_prev[tp + 1]
    eps_hat = e - c * torch.sqrt(1 - ab) * g
    return torch.sqrt(abp) * (x - torch.sqrt(1 - ab) * eps_hat) / torch.sqrt(ab) + torch.sqrt(1 - abp) * eps_hat


def grad_with_backward_on_a_copy(c, x, t, y):
    with torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        log_p = c(x, t).log_softmax(dim=-1)
        log_p[torch.arange(len(y)), y].sum().backward()
    return x.grad


def grad_via_logsumexp(c, x, t, y):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = c(x, t)
        log_p_y = logits.gather(1, y[:, None]) - logits.logsumexp(1, keepdim=True)
        return torch.autograd.grad(log_p_y.sum(), x)[0]


def drop_on_a_copy(y, p, n, u):
    out = y.clone()
    out[u < p] = n
    return out


def posterior_with_where(x0, xt, t, s):
    a, b, ab = col(s.alphas[t], x0), col(s.betas[t], x0), col(s.alpha_bars[t], x0)
    abp = col(torch.where(t > 0, s.alpha_bars[(t - 1).clamp(min=0)], torch.ones(())), x0)
    return (abp ** 0.5 * b * x0 + a ** 0.5 * (1 - abp) * xt) / (1 - ab)


def ddpm_step_masked(xt, t, x0, s, z):
    mean = posterior(x0, xt, torch.full((xt.shape[0],), t), s)
    return mean + float(t > 0) * s.posterior_variance[t] ** 0.5 * z


CORRECT = [
    ("1.1", "gather and torch.sqrt", lambda x0, t, e, s: torch.sqrt(s.alpha_bars.gather(0, t))[:, None, None, None] * x0
     + torch.sqrt(1 - s.alpha_bars.gather(0, t))[:, None, None, None] * e),
    ("1.1", "** 0.5 and reshape", lambda x0, t, e, s: s.alpha_bars[t].reshape(-1, 1, 1, 1) ** 0.5 * x0
     + (1 - s.alpha_bars[t].reshape(-1, 1, 1, 1)) ** 0.5 * e),
    ("1.1", "the package's q_sample", lambda x0, t, e, s: s.q_sample(x0, t, e)),
    ("1.2", "1 / (1 / alpha_bar - 1)", lambda ab: 1 / (1 / ab - 1)),
    ("1.2", "torch.div", lambda ab: torch.div(ab, torch.ones_like(ab) - ab)),
    ("1.2", "exp of the log-ratio", lambda ab: torch.exp(torch.log(ab) - torch.log1p(-ab))),
    ("2.1", "ones_like times t / T", lambda t, T, x: torch.ones_like(x) * (t.float() / T).view(-1, 1, 1, 1)),
    ("2.1", "repeat", lambda t, T, x: (t / T).float()[:, None, None, None].repeat(1, 1, x.shape[2], x.shape[3])),
    ("2.1", "expand_as", lambda t, T, x: (t.float() / T).view(-1, 1, 1, 1).expand_as(x)),
    ("2.2", "alpha_bars_prev and ** 0.5", lambda x0, xt, t, s: posterior(x0, xt, t, s)),
    ("2.2", "torch.where for t = 0", posterior_with_where),
    ("2.2", "the package's posterior_mean", lambda x0, xt, t, s: s.posterior_mean(x0, xt, t)),
    ("2.3", "if t > 0", lambda xt, t, x0, s, z: ddpm_step(xt, t, x0, s, z)),
    ("2.3", "noise masked by (t > 0)", ddpm_step_masked),
    ("3.1", "exp and log", lambda t, d: (lambda a: torch.cat([a.sin(), a.cos()], 1))(
        t.float()[:, None] * torch.exp(-math.log(10000) * torch.arange(d // 2).float() / (d // 2))[None])),
    ("3.1", "torch.outer", lambda t, d: (lambda a: torch.cat([torch.sin(a), torch.cos(a)], dim=-1))(
        torch.outer(t.float(), 1.0 / 10000 ** (torch.arange(0, d // 2).float() / (d // 2))))),
    ("3.2", "(pred - noise) ** 2 mean", lambda m, x0, t, e, s: ((m(s.q_sample(x0, t, e), t) - e) ** 2).mean()),
    ("3.2", "mse_loss arguments reversed", lambda m, x0, t, e, s: F.mse_loss(e, m(s.q_sample(x0, t, e), t))),
    ("3.2", "x_t written out", lambda m, x0, t, e, s: eps_loss(m, x0, t, e, s)),
    ("3.3", "1 - alpha_t for beta_t", lambda xt, t, e, s: (1 / col(s.alphas[t], xt).sqrt()) * (
        xt - (1 - col(s.alphas[t], xt)) / (1 - col(s.alpha_bars[t], xt)).sqrt() * e)),
    ("3.3", "** -0.5", lambda xt, t, e, s: col(s.alphas[t], xt) ** -0.5 * (
        xt - col(s.betas[t], xt) * (1 - col(s.alpha_bars[t], xt)) ** -0.5 * e)),
    ("4.1", "view(B, C, 1, 1)", lambda h, e, p: h + p(e).view(h.shape[0], h.shape[1], 1, 1)),
    ("4.1", "unsqueeze twice", lambda h, e, p: h + p(e).unsqueeze(-1).unsqueeze(-1)),
    ("4.1", "in place on a copy", lambda h, e, p: h.clone().add_(p(e)[..., None, None])),
    ("4.2", "nll_loss of log_softmax",
     lambda c, x0, y, t, e, s: F.nll_loss(F.log_softmax(c(s.q_sample(x0, t, e), t), 1), y)),
    ("4.2", "gather written out", lambda c, x0, y, t, e, s: -F.log_softmax(c(s.q_sample(x0, t, e), t), 1).gather(
        1, y[:, None]).mean()),
    ("5.1", "gather and autograd.grad", lambda c, x, t, y: grad_log_p(c, x, t, y)),
    ("5.1", ".backward() on a fresh copy", grad_with_backward_on_a_copy),
    ("5.1", "logits - logsumexp", grad_via_logsumexp),
    ("5.2", "addcmul", lambda m, v, g, s: torch.addcmul(m, v, g, value=s)),
    ("5.2", "scale times grad first", lambda m, v, g, s: m + v * (s * g)),
    ("5.3", "alpha_bars_prev[t_prev + 1]", guided_ddim_via_prev_table),
    ("5.3", "math on floats", lambda x, t, tp, e, g, c, s: (lambda ab, abp: math.sqrt(abp) * (
        x - math.sqrt(1 - ab) * (e - c * math.sqrt(1 - ab) * g)) / math.sqrt(ab) + math.sqrt(1 - abp) * (
        e - c * math.sqrt(1 - ab) * g))(float(s.alpha_bars[t]), 1.0 if tp < 0 else float(s.alpha_bars[tp]))),
    ("6.1", "masked_fill", lambda y, p, n, u: y.masked_fill(u < p, n)),
    ("6.1", "in place on a copy", drop_on_a_copy),
    ("6.1", "in place on y", dropout_in_place),
    ("6.2", "(1 - s) eps_u + s eps_c", lambda u, c, s: (1 - s) * u + s * c),
    ("6.2", "torch.lerp", lambda u, c, s: torch.lerp(u, c, s)),
]


def verdict(exercise, fn):
    """("accepted", "") or ("caught", the check's message)."""
    try:
        CHECKS[exercise](fn)
    except CheckFailed as err:
        return "caught", str(err)
    return "accepted", ""


def test_catalogue_sizes():
    assert len(MISTAKES) >= 50 and len(CORRECT) >= 30
    assert {m[0] for m in MISTAKES} == set(CHECKS) and {c[0] for c in CORRECT} == set(CHECKS)


def test_checks_catch_and_name_the_mistakes_and_accept_correct_rewrites(capsys):
    import re

    rows, caught, named = [], 0, 0
    for exercise, what, fn, expected in MISTAKES:
        result, message = verdict(exercise, fn)
        hit = result == "caught"
        says = hit and re.search(expected, message) is not None
        caught, named = caught + hit, named + says
        rows.append(f"{exercise}  {what:42s} {'caught' if hit else 'MISSED':7s} {'named' if says else '-':6s} "
                    f"{message.splitlines()[0][:90] if message else ''}")
    rejected = [(ex, what, verdict(ex, fn)[1]) for ex, what, fn in CORRECT if verdict(ex, fn)[0] != "accepted"]
    with capsys.disabled():
        print("\n" + "\n".join(rows))
        print(f"mistakes: {len(MISTAKES)}, caught {caught} ({caught / len(MISTAKES):.0%}), named {named} "
              f"({named / len(MISTAKES):.0%}); correct rewrites: {len(CORRECT)}, "
              f"accepted {len(CORRECT) - len(rejected)}")
    assert not rejected, rejected
    assert caught == named == len(MISTAKES), "\n".join(
        r for r in rows if "MISSED" in r or " -  " in r)


@pytest.mark.parametrize("exercise, what, fn, expected", MISTAKES, ids=[f"{m[0]} {m[1]}" for m in MISTAKES])
def test_each_mistake_is_caught(exercise, what, fn, expected):
    assert verdict(exercise, fn)[0] == "caught"
