import math

import pytest
import torch

from course_utils import NoiseSchedule


def test_linear_betas_and_cumulative_product_convention(linear):
    assert linear.betas.shape == (1000,)
    assert linear.betas[0].item() == pytest.approx(1e-4)
    assert linear.betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(linear.alphas, 1 - linear.betas)
    # alpha_bars[t] is the product of alphas[0..t], so alpha_bars[0] == alphas[0]
    manual = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    assert torch.allclose(linear.alpha_bars.double(), manual, rtol=1e-5)
    assert linear.alpha_bars[0].item() == pytest.approx(1 - 1e-4)
    assert linear.alpha_bars[-1].item() == pytest.approx(4.04e-5, rel=0.02)


def test_posterior_variance_formula(linear):
    pv = linear.posterior_variance.double()
    assert pv[0] == 0
    b = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    ab = torch.cumprod(1 - b, 0)
    t = torch.arange(1, 1000)
    assert torch.allclose(pv[t], b[t] * (1 - ab[t - 1]) / (1 - ab[t]), rtol=1e-4)


def test_cosine_schedule_matches_its_definition():
    s = NoiseSchedule(T=1000, kind="cosine")
    u = torch.arange(1001, dtype=torch.float64)
    f = torch.cos((u / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2
    ab = f[1:] / f[0]
    ok = s.betas < 0.999  # the clipped tail no longer follows f exactly
    assert torch.allclose(s.alpha_bars.double()[ok], ab[ok], rtol=1e-4, atol=1e-7)
    assert bool((s.betas <= 0.999).all()) and bool((s.alpha_bars[1:] < s.alpha_bars[:-1]).all())


def test_closed_form_matches_the_step_by_step_chain():
    """q(x_t | x_0) in one step has the moments of t+1 single steps x_s = sqrt(a_s) x_{s-1} + sqrt(b_s) z."""
    s = NoiseSchedule(T=8, kind="linear", beta_start=0.05, beta_end=0.4)  # big steps: an off-by-one shows
    g = torch.Generator().manual_seed(0)
    n = 40000
    x0 = torch.tensor([0.8, -0.5]).expand(n, 2)
    x = x0.clone()
    for t in range(s.T):
        x = (1 - s.betas[t]).sqrt() * x + s.betas[t].sqrt() * torch.randn(n, 2, generator=g)
        closed = s.q_sample(x0, t, generator=g)
        ab = s.alpha_bars[t]
        for sample in (x, closed):
            assert torch.allclose(sample.mean(0), ab.sqrt() * x0[0], atol=0.02), t
            assert torch.allclose(sample.var(0), (1 - ab).expand(2), rtol=0.04), t


def test_q_sample_uses_the_given_noise(linear):
    x0, eps = torch.randn(5, 1, 32, 32), torch.randn(5, 1, 32, 32)
    t = torch.tensor([0, 10, 500, 998, 999])
    ab = linear.alpha_bars[t].view(-1, 1, 1, 1)
    assert torch.allclose(linear.q_sample(x0, t, eps), ab.sqrt() * x0 + (1 - ab).sqrt() * eps)


def test_x0_eps_round_trips(linear):
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(64, 1, 8, 8, generator=g), torch.randn(64, 1, 8, 8, generator=g)
    t = torch.randint(0, 1000, (64,), generator=g)
    x_t = linear.q_sample(x0, t, eps)
    assert torch.allclose(linear.x0_from_eps(x_t, t, eps), x0, atol=2e-3)
    assert torch.allclose(linear.eps_from_x0(x_t, t, x0), eps, atol=1e-4)
    assert torch.allclose(linear.eps_from_x0(x_t, t, linear.x0_from_eps(x_t, t, eps)), eps, atol=1e-4)


def test_v_round_trips(linear):
    """v = sqrt(ab) eps - sqrt(1 - ab) x0, and (x_t, v) gives back both x0 and eps exactly (no division)."""
    g = torch.Generator().manual_seed(7)
    x0, eps = torch.randn(64, 1, 8, 8, generator=g), torch.randn(64, 1, 8, 8, generator=g)
    t = torch.cat([torch.tensor([0, 999]), torch.randint(0, 1000, (62,), generator=g)])
    x_t, v = linear.q_sample(x0, t, eps), linear.v_target(x0, t, eps)
    ab = linear.alpha_bars[t].view(-1, 1, 1, 1)
    assert torch.allclose(v, ab.sqrt() * eps - (1 - ab).sqrt() * x0)
    assert torch.allclose(linear.x0_from_v(x_t, t, v), x0, atol=1e-5)
    assert torch.allclose(linear.eps_from_v(x_t, t, v), eps, atol=1e-5)


def test_posterior_mean_from_x0_equals_the_mean_from_eps(linear):
    g = torch.Generator().manual_seed(2)
    x_t, eps = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g)
    t = torch.randint(0, 1000, (64,), generator=g)
    x0 = linear.x0_from_eps(x_t, t, eps)
    assert torch.allclose(linear.posterior_mean(x0, x_t, t), linear.mean_from_eps(x_t, t, eps), atol=1e-4)
    # and the seed's formula, written out: 1/sqrt(a_t) (x_t - b_t / sqrt(1 - ab_t) eps)
    a, b, ab = (v[t][:, None] for v in (linear.alphas, linear.betas, linear.alpha_bars))
    assert torch.allclose(linear.mean_from_eps(x_t, t, eps), (x_t - b / (1 - ab).sqrt() * eps) / a.sqrt(), atol=1e-5)


def test_posterior_is_the_gaussian_conditional(linear):
    """Condition the joint Gaussian of (x_{t-1}, x_t) given x_0 by hand and compare."""
    x0 = torch.tensor([[0.3, -0.7]])
    x_t = torch.tensor([[0.1, 0.4]])
    alphas = 1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alpha_bars = torch.cumprod(alphas, 0)
    for t in (1, 5, 250, 999):
        a, ab, ab_prev = float(alphas[t]), float(alpha_bars[t]), float(alpha_bars[t - 1])
        cov = math.sqrt(a) * (1 - ab_prev)            # Cov(x_{t-1}, x_t | x0)
        mean = math.sqrt(ab_prev) * x0 + cov / (1 - ab) * (x_t - math.sqrt(ab) * x0)
        var = (1 - ab_prev) - cov**2 / (1 - ab)
        tt = torch.tensor([t])
        assert torch.allclose(linear.posterior_mean(x0, x_t, tt), mean.float(), atol=1e-6)
        assert float(linear.posterior_variance[t]) == pytest.approx(var, rel=1e-3)
    # at t = 0 the posterior is x_0 itself
    assert torch.allclose(linear.posterior_mean(x0, x_t, torch.tensor([0])), x0, atol=1e-6)


def test_schedule_moves_with_to_and_snr(linear):
    assert set(dict(linear.named_buffers())) >= {"betas", "alphas", "alpha_bars", "posterior_variance"}
    assert torch.allclose(linear.snr(), linear.alpha_bars / (1 - linear.alpha_bars))
    assert bool((linear.snr()[1:] < linear.snr()[:-1]).all())


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="quadratic"), "unknown schedule kind"),
    (dict(T=0), "positive integer"),
    (dict(T=2.5), "positive integer"),
    (dict(beta_start=0.1, beta_end=0.01), "beta_start <= beta_end"),
])
def test_bad_schedule_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NoiseSchedule(**kwargs)


def test_bad_timesteps_are_named(linear):
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"0\.\.999"):
        linear.q_sample(x, torch.tensor([0, 1, 1000]))
    with pytest.raises(ValueError, match=r"0\.\.999"):
        linear.q_sample(x, torch.tensor([-1, 1, 2]))
    with pytest.raises(ValueError, match=r"shape \[3\]"):
        linear.q_sample(x, torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="integer"):
        linear.q_sample(x, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="shape of x0"):
        linear.q_sample(x, 3, noise=torch.zeros(3, 3))
    assert linear.q_sample(x, 5).shape == (3, 2)  # an int is one t for the whole batch
