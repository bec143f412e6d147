"""Our samplers, step by step, against the field's reference implementation: diffusers' DDPMScheduler and
DDIMScheduler, on the 2-D toy whose exact noise predictor is known, with the same starting points and the same
noise draws. The settings are the ones that match ours: the linear betas of Ho et al., linspace timestep spacing,
alpha_bar = 1 after the last step, the "fixed_small" variance (the posterior variance) and no clipping.

diffusers is a test dependency only: the course's code never imports it.
"""
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from course_utils import GaussianMixture2D, NoiseSchedule, sampling_steps

T, N = 1000, 512
SETTINGS = dict(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", clip_sample=False,
                prediction_type="epsilon", timestep_spacing="linspace")


@pytest.fixture(scope="module")
def toy():
    schedule = NoiseSchedule(T=T, kind="linear")
    return GaussianMixture2D(weights=[0.5, 0.3, 0.2]).eps_model(schedule), schedule


def run_ours(model, schedule, **kw):
    """Every state of our chain, x_t before each step and the sample at the end (on the CPU, float32)."""
    return list(sampling_steps(model, schedule, (N, 2), generator=torch.Generator().manual_seed(0), **kw))


def eps_at(model, x, t):
    return model(x, torch.full((N,), int(t), dtype=torch.long)).float()


def assert_close(ours, theirs, what):
    err = (ours - theirs).abs().max().item()
    assert err < 5e-4, f"{what}: ours and diffusers' differ by {err:.2e}"   # measured: 1e-4 at most (DDPM-1000)


@pytest.mark.parametrize("steps", [None, 25])
def test_ddpm_matches_diffusers_ddpm_scheduler_step_by_step(toy, steps):
    """Ancestral DDPM on all 1,000 steps, and on the respaced chain of 25 (diffusers: set_timesteps(25), whose
    step to the previous listed timestep uses beta' = 1 - ab_t / ab_t', as our respaced schedule does)."""
    model, schedule = toy
    ours = run_ours(model, schedule, sampler="ddpm", steps=steps)
    scheduler = DDPMScheduler(variance_type="fixed_small", **SETTINGS)
    scheduler.set_timesteps(steps or T)
    assert [s.t for s in ours[:-1]] == scheduler.timesteps.tolist()          # the same timesteps, T-1 first
    g = torch.Generator().manual_seed(0)
    x = torch.randn((N, 2), generator=g)                                      # our x_{T-1}: the same first draw
    assert torch.equal(x, ours[0].x_t)
    for state, t in zip(ours[:-1], scheduler.timesteps):
        assert_close(state.x_t, x, f"x_t at t = {int(t)}")
        x = scheduler.step(eps_at(model, x, t), t, x, generator=g).prev_sample  # draws its noise from g, as we do
    assert_close(ours[-1].x_t, x, "the sample")
    assert ours[-1].x_t.std() > 0.3                                           # a spread of points, not one point


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_matches_diffusers_ddim_scheduler_step_by_step(toy, eta):
    """DDIM on 50 linspace timesteps, deterministic (eta = 0) and with fresh noise (eta = 1).

    diffusers' DDIM step takes its previous timestep as t - T // num_inference_steps (20 here), which is not the
    next timestep of its own linspace list where the gap is 21; for each step we set num_inference_steps so that
    the stride is the list's gap (T // (T // gap) == gap for gaps 20 and 21), so diffusers' update runs on the
    timesteps both lists share. The noise our sampler drew (the same generator, in the same order) is passed to
    diffusers as variance_noise."""
    model, schedule = toy
    steps = 50
    ours = run_ours(model, schedule, sampler="ddim", steps=steps, eta=eta)
    scheduler = DDIMScheduler(set_alpha_to_one=True, steps_offset=0, **SETTINGS)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps.tolist()
    assert [s.t for s in ours[:-1]] == timesteps
    g = torch.Generator().manual_seed(0)
    x = torch.randn((N, 2), generator=g)
    assert torch.equal(x, ours[0].x_t)
    for i, (state, t) in enumerate(zip(ours[:-1], timesteps)):
        assert_close(state.x_t, x, f"x_t at t = {t}")
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        if t_prev >= 0:
            scheduler.num_inference_steps = T // (t - t_prev)
            assert t - T // scheduler.num_inference_steps == t_prev
        noise = torch.randn((N, 2), generator=g) if eta > 0 and t_prev >= 0 else torch.zeros(N, 2)
        x = scheduler.step(eps_at(model, x, t), t, x, eta=eta, variance_noise=noise).prev_sample
    assert_close(ours[-1].x_t, x, "the sample")


def test_a_wrong_step_is_caught_by_the_comparison(toy):
    """The comparison can fail: diffusers with the "fixed_large" variance (beta_t in place of the posterior
    variance) does not reproduce our chain."""
    model, schedule = toy
    ours = run_ours(model, schedule, sampler="ddpm", steps=25)
    scheduler = DDPMScheduler(variance_type="fixed_large", **SETTINGS)
    scheduler.set_timesteps(25)
    g = torch.Generator().manual_seed(0)
    x = torch.randn((N, 2), generator=g)
    for t in scheduler.timesteps:
        x = scheduler.step(eps_at(model, x, t), t, x, generator=g).prev_sample
    assert (ours[-1].x_t - x).abs().max() > 1e-2
