import math

import pytest
import torch

from course_utils import ddim_sample, ddpm_sample, record_trajectory, sampling_steps, spaced_timesteps

N = 3000


def assign(toy, x):
    """The component each point is nearest to."""
    return torch.cdist(x, toy.means).argmin(1)


def assert_reproduces_mixture(toy, x, weights=None, tol=0.035):
    weights = toy.weights if weights is None else torch.as_tensor(weights)
    comp = assign(toy, x)
    frac = torch.bincount(comp, minlength=toy.K).float() / len(x)
    assert torch.allclose(frac, weights, atol=tol), (frac, weights)
    for k in range(toy.K):
        pts = x[comp == k]
        if len(pts) < 100:
            continue
        assert torch.allclose(pts.mean(0), toy.means[k], atol=0.03), (k, pts.mean(0))
        assert pts.std(0).mean().item() == pytest.approx(toy.std, rel=0.2), (k, pts.std(0))


def exact_model(toy, schedule, prediction):
    return {"eps": toy.eps_model, "x0": toy.x0_model, "v": toy.v_model}[prediction](schedule)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_ddpm_reproduces_the_mixture_with_the_exact_model(toy, linear, prediction):
    model = exact_model(toy, linear, prediction)
    g = torch.Generator().manual_seed(0)
    x = ddpm_sample(model, linear, (N, 2), prediction=prediction, generator=g, progress=False)
    assert x.shape == (N, 2) and x.dtype == torch.float32
    assert_reproduces_mixture(toy, x)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_ddim_reproduces_the_mixture_with_the_exact_model(toy, linear, prediction):
    model = exact_model(toy, linear, prediction)
    g = torch.Generator().manual_seed(1)
    x = ddim_sample(model, linear, (N, 2), prediction=prediction, generator=g, progress=False, steps=100)
    assert_reproduces_mixture(toy, x)


def test_ddim_with_all_steps_and_eta_one_is_ddpm(toy, linear):
    model = toy.eps_model(linear)
    a = ddpm_sample(model, linear, (200, 2), generator=torch.Generator().manual_seed(5), progress=False)
    b = ddim_sample(model, linear, (200, 2), generator=torch.Generator().manual_seed(5), progress=False,
                    steps=1000, eta=1.0)
    assert torch.allclose(a, b, atol=1e-3)


def test_classifier_guidance_scale_one_samples_the_class(toy, linear):
    """p(x) p(y|x)^1 = p(x, y): scale 1 with the exact classifier gives the class-y component."""
    clf = toy.classifier(linear)
    g = torch.Generator().manual_seed(2)
    x = ddpm_sample(toy.eps_model(linear), linear, (N, 2), y=2, classifier=clf, classifier_scale=1.0,
                    generator=g, progress=False)
    assert_reproduces_mixture(toy, x, weights=[0.0, 0.0, 1.0], tol=0.03)


@pytest.mark.parametrize("sampler", [ddpm_sample, ddim_sample])
def test_stronger_classifier_guidance_moves_more_mass_to_the_class(toy, linear, sampler):
    clf = toy.classifier(linear)
    fractions = []
    for scale in (0.0, 0.3, 3.0):
        g = torch.Generator().manual_seed(3)
        x = sampler(toy.eps_model(linear), linear, (1000, 2), y=1, classifier=clf, classifier_scale=scale,
                    generator=g, progress=False)
        fractions.append((assign(toy, x) == 1).float().mean().item())
    assert fractions[0] == pytest.approx(0.3, abs=0.05)  # unguided: the prior weight
    assert fractions[0] < fractions[1] < fractions[2]
    assert fractions[2] > 0.97


def test_classifier_guidance_with_an_x0_model(toy, linear):
    x = ddim_sample(toy.x0_model(linear), linear, (1000, 2), prediction="x0", y=0,
                    classifier=toy.classifier(linear), classifier_scale=2.0,
                    generator=torch.Generator().manual_seed(4), progress=False)
    assert (assign(toy, x) == 0).float().mean() > 0.95


@pytest.mark.parametrize("sampler", [ddpm_sample, ddim_sample])
def test_classifier_free_guidance(toy, linear, sampler):
    model = toy.eps_model(linear)
    frac = {}
    for s in (0.0, 1.0, 3.0):
        x = sampler(model, linear, (1000, 2), y=2, cfg_scale=s, null_label=3,
                    generator=torch.Generator().manual_seed(6), progress=False)
        frac[s] = (assign(toy, x) == 2).float().mean().item()
    assert frac[0.0] == pytest.approx(0.2, abs=0.05)   # scale 0: the unconditional model
    assert frac[1.0] > 0.97                            # scale 1: the conditional model
    assert frac[3.0] >= frac[1.0]


def test_plain_conditional_sampling_calls_the_model_with_y(toy, linear):
    x = ddim_sample(toy.eps_model(linear), linear, (500, 2), y=0, null_label=3, progress=False,
                    generator=torch.Generator().manual_seed(7))
    assert (assign(toy, x) == 0).float().mean() > 0.97


def test_generator_makes_sampling_reproducible(toy, linear):
    model = toy.eps_model(linear)
    runs = [ddim_sample(model, linear, (50, 2), steps=20, eta=0.5, progress=False,
                        generator=torch.Generator().manual_seed(s)) for s in (11, 11, 12)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])


def test_images_are_clipped_and_trajectories_recorded(linear):
    def wild(x, t):  # predicts a far-too-bright x0
        return torch.full_like(x, 5.0)
    rec = record_trajectory(sampling_steps(wild, linear, (2, 1, 8, 8), prediction="x0",
                                           generator=torch.Generator().manual_seed(0)), every=100)
    x = rec.x_t[-1]
    assert x.shape == (2, 1, 8, 8)
    assert x.max() <= 1.0 + 1e-5 and x.min() >= -1.0 - 1e-5
    assert rec.t[0] == 999 and rec.t[-1] == -1 and len(rec.t) == 11
    assert all(v.shape == (2, 1, 8, 8) for v in rec.x0)
    assert max(v.max().item() for v in rec.x0) <= 1.0  # clipped x0 estimates
    raw = ddpm_sample(wild, linear, (2, 1, 8, 8), prediction="x0", progress=False, clip_x0=False,
                      generator=torch.Generator().manual_seed(0))
    assert raw.max() > 4.0


def test_ddim_timesteps():
    assert spaced_timesteps(1000, 50)[0] == 999 and spaced_timesteps(1000, 50)[-1] == 0
    assert len(spaced_timesteps(1000, 50)) == 50
    assert spaced_timesteps(1000, 1000) == list(range(999, -1, -1))
    with pytest.raises(ValueError, match="steps must be an integer in 1..T=1000"):
        spaced_timesteps(1000, 1001)


def test_no_noise_is_added_at_the_last_step(toy, linear):
    """The last step returns the posterior mean at t = 0 itself, with no noise added."""
    model = toy.eps_model(linear)
    states = record_trajectory(sampling_steps(model, linear, (10, 2), generator=torch.Generator().manual_seed(0)))
    assert states.t[-2] == 0 and states.t[-1] == -1
    # the final sample is exactly the posterior mean at t = 0 (no sqrt(var) z term)
    out = ddpm_sample(model, linear, (10, 2), progress=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, states.x_t[-1])
    x1, t0 = states.x_t[-2], torch.zeros(10, dtype=torch.long)
    eps = model(x1, t0)
    assert torch.allclose(out, linear.posterior_mean(linear.x0_from_eps(x1, t0, eps), x1, t0), atol=1e-5)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(prediction="velocity"), ValueError, "prediction must be 'eps', 'x0' or 'v'"),
    (dict(classifier_scale=-1.0, classifier="c", y=1), ValueError, "classifier_scale must be a finite number >= 0"),
    (dict(classifier_scale=math.nan, classifier="c", y=1), ValueError, "classifier_scale"),
    (dict(classifier_scale=2.0), ValueError, "needs a classifier"),
    (dict(classifier_scale=2.0, classifier="c"), ValueError, "classifier guidance needs the target class"),
    (dict(cfg_scale=3.0), ValueError, "classifier-free guidance needs the target class"),
    (dict(cfg_scale=-2.0, y=1), ValueError, "cfg_scale must be a finite number >= 0"),
    (dict(cfg_scale=2.0, y=11, null_label=10), ValueError, r"class label 11 is out of range: expected 0\.\.9"),
    (dict(cfg_scale=2.0, y=torch.tensor([1, 2])), ValueError, r"shape \[4\]"),
])
@pytest.mark.parametrize("sampler", [ddpm_sample, ddim_sample])
def test_bad_sampler_arguments_are_explained(toy, linear, sampler, kwargs, error, match):
    if kwargs.get("classifier") == "c":
        kwargs = dict(kwargs, classifier=toy.classifier(linear))
    with pytest.raises(error, match=match):
        sampler(toy.eps_model(linear), linear, (4, 2), progress=False, **kwargs)


def test_classifier_label_out_of_range_is_explained(toy, linear):
    with pytest.raises(ValueError, match=r"class label 7 is out of range: expected 0\.\.2"):
        ddim_sample(toy.eps_model(linear), linear, (4, 2), y=7, classifier=toy.classifier(linear),
                    classifier_scale=1.0, progress=False)


def test_model_output_of_the_wrong_shape_is_explained(linear):
    with pytest.raises(ValueError, match=r"shaped like its input \[4, 2\]"):
        ddim_sample(lambda x, t: x[:, :1], linear, (4, 2), progress=False)


def test_respacing_all_timesteps_is_the_schedule_itself(linear):
    same = linear.respace(range(1000))
    assert torch.allclose(same.alpha_bars, linear.alpha_bars, rtol=1e-5)
    assert torch.allclose(same.posterior_variance, linear.posterior_variance, rtol=1e-3, atol=1e-9)
    sub = linear.respace([0, 499, 999])
    assert torch.allclose(sub.alpha_bars, linear.alpha_bars[[0, 499, 999]], rtol=1e-5)


def test_respaced_ddpm_reproduces_the_mixture_and_guides(toy, linear):
    x = ddpm_sample(toy.eps_model(linear), linear, (N, 2), steps=100, progress=False,
                    generator=torch.Generator().manual_seed(12))
    assert_reproduces_mixture(toy, x)
    # with 50 coarse steps the one-Gaussian-per-step approximation of the mean shift is rougher than with 1,000
    x = ddpm_sample(toy.eps_model(linear), linear, (1000, 2), steps=50, y=1, classifier=toy.classifier(linear),
                    classifier_scale=2.0, progress=False, generator=torch.Generator().manual_seed(13))
    assert (assign(toy, x) == 1).float().mean() > 0.95


def test_ddpm_step_adds_the_posterior_noise_except_at_t_0(linear):
    from course_utils import ddpm_step

    g = torch.Generator().manual_seed(0)
    x_t, x0, z = (torch.randn(3, 1, 4, 4, generator=g) for _ in range(3))
    mean = linear.posterior_mean(x0, x_t, torch.full((3,), 500))
    assert torch.allclose(ddpm_step(x_t, 500, x0, linear, z), mean + linear.posterior_variance[500].sqrt() * z)
    assert torch.equal(ddpm_step(x_t, 0, x0, linear), linear.posterior_mean(x0, x_t, torch.zeros(3, dtype=torch.long)))
    grad = torch.ones_like(x_t)
    shifted = ddpm_step(x_t, 500, x0, linear, z, grad=grad, scale=2.0)
    assert torch.allclose(shifted - ddpm_step(x_t, 500, x0, linear, z), 2.0 * linear.posterior_variance[500] * grad)
    with pytest.raises(ValueError, match="needs noise"):
        ddpm_step(x_t, 500, x0, linear)


def test_ddim_step_lands_on_x0_hat_at_the_end_and_needs_noise_only_with_eta(linear):
    from course_utils import ddim_step

    g = torch.Generator().manual_seed(1)
    x_t, eps = torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)
    x0 = linear.x0_from_eps(x_t, torch.full((3,), 40), eps)
    assert torch.allclose(ddim_step(x_t, 40, x0, linear, eps_hat=eps, t_prev=-1), x0)   # ab = 1 after the last step
    ab_prev = linear.alpha_bars[20]
    assert torch.allclose(ddim_step(x_t, 40, x0, linear, eps_hat=eps, t_prev=20),
                          ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps)
    with pytest.raises(ValueError, match="needs noise"):
        ddim_step(x_t, 40, x0, linear, eps_hat=eps, t_prev=20, eta=1.0)


def test_sampling_steps_yields_every_state_and_ends_with_the_sample(linear, toy):
    from course_utils import sampling_steps

    model = toy.eps_model(linear)
    steps = list(sampling_steps(model, linear, (8, 2), sampler="ddim", steps=10,
                                generator=torch.Generator().manual_seed(3)))
    assert [s.i for s in steps] == list(range(11)) and steps[-1].t == -1
    assert [s.t for s in steps[:-1]] == spaced_timesteps(1000, 10)
    end = ddim_sample(model, linear, (8, 2), steps=10, generator=torch.Generator().manual_seed(3), progress=False)
    assert torch.equal(steps[-1].x_t, end)
    with pytest.raises(ValueError, match="'ddpm' or 'ddim'"):
        next(sampling_steps(model, linear, (8, 2), sampler="euler"))


def test_guidance_object_is_the_same_as_the_sampler_keywords(linear, toy):
    from course_utils import Guidance, sampling_steps

    model, labels = toy.eps_model(linear), torch.tensor([0, 1, 2, 2])

    def end(**kw):
        return list(sampling_steps(model, linear, (4, 2), sampler="ddim", steps=10, y=labels,
                                   generator=torch.Generator().manual_seed(0), **kw))[-1].x_t

    assert torch.equal(end(guidance=Guidance.classifier_free(3.0, null_label=3)), end(cfg_scale=3.0, null_label=3))
    clf = toy.classifier(linear)
    assert torch.equal(end(guidance=Guidance.by_classifier(clf, 2.0)), end(classifier=clf, classifier_scale=2.0))
    with pytest.raises(ValueError, match="not both"):
        end(guidance=Guidance.none(), cfg_scale=2.0)
    with pytest.raises(ValueError, match="needs a classifier"):
        Guidance(classifier_scale=1.0)


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_guidance_from_x0_or_v_equals_guidance_from_eps(toy, linear, prediction):
    """The same exact model read as x0 or v gives the same guided chain as read as eps, for classifier-free
    guidance (applied to the raw output) and for classifier guidance (applied through eps)."""
    clf = toy.classifier(linear)
    for kw in (dict(cfg_scale=3.0, null_label=toy.K), dict(classifier=clf, classifier_scale=2.0)):
        x = {p: ddim_sample(exact_model(toy, linear, p), linear, (64, 2), prediction=p, y=1, steps=20,
                            generator=torch.Generator().manual_seed(4), progress=False, **kw)
             for p in ("eps", prediction)}
        assert torch.allclose(x["eps"], x[prediction], atol=1e-3), kw


def test_ddim_classifier_shift_follows_the_clipping_and_is_not_clipped_away(linear):
    """On images, DDIM clamps the model's x0_hat, then shifts eps by the classifier (guided-diffusion's
    condition_score): the shifted x0_hat is not clamped again, which at large t would undo the shift."""
    from course_utils.core.guidance import classifier_grad

    class Half(torch.nn.Module):   # eps_hat = x_t / 2: at t = 999 its x0_hat lies far outside [-1, 1]
        def forward(self, x, t):
            return x / 2

    class Brightness(torch.nn.Module):   # class 1 the brighter the image, class 0 the darker
        def forward(self, x, t):
            s = x.flatten(1).mean(1)
            return torch.stack([-s, s], dim=1)

    y, scale = torch.ones(4, dtype=torch.long), 50.0
    first = next(iter(sampling_steps(Half(), linear, (4, 1, 8, 8), sampler="ddim", steps=10, y=y,
                                     classifier=Brightness(), classifier_scale=scale,
                                     generator=torch.Generator().manual_seed(0))))
    x, t = first.x_t, torch.full((4,), 999)
    ab = linear.alpha_bars[999]
    eps = linear.eps_from_x0(x, t, linear.x0_from_eps(x, t, x / 2).clamp(-1, 1))
    shifted = eps - scale * (1 - ab).sqrt() * classifier_grad(Brightness(), x, t, y)
    assert torch.allclose(first.x0_hat, linear.x0_from_eps(x, t, shifted), rtol=1e-4, atol=1e-4)
    assert first.x0_hat.min() > 1.0   # the guidance made every pixel brighter, past what a clamp would keep


def test_the_two_step_rules_take_their_common_arguments_in_one_order():
    import inspect

    from course_utils import ddim_step, ddpm_step

    def first(fn):
        return list(inspect.signature(fn).parameters)[:5]

    assert first(ddpm_step) == first(ddim_step) == ["x_t", "t", "x0_hat", "schedule", "noise"]
