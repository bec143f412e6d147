import math

import pytest
import torch

from course_utils import cfg_eps, classifier_grad, guided_eps, guided_mean


def test_guided_mean_shifts_by_scale_times_variance_times_grad():
    mean, grad = torch.randn(4, 2), torch.randn(4, 2)
    var = torch.tensor([0.5, 0.1, 0.0, 2.0])[:, None]
    assert torch.allclose(guided_mean(mean, var, grad, 3.0), mean + 3.0 * var * grad)
    assert torch.equal(guided_mean(mean, var, grad, 0.0), mean)


def test_guided_eps_subtracts_the_scaled_gradient():
    eps, grad = torch.randn(4, 2), torch.randn(4, 2)
    ab = torch.tensor([0.9, 0.5, 0.1, 0.01])[:, None]
    assert torch.allclose(guided_eps(eps, ab, grad, 2.0), eps - 2.0 * (1 - ab).sqrt() * grad)
    assert torch.equal(guided_eps(eps, ab, grad, 0.0), eps)


def test_cfg_eps_scale_zero_is_unconditional_and_one_is_conditional():
    u, c = torch.randn(3, 2), torch.randn(3, 2)
    assert torch.allclose(cfg_eps(u, c, 0.0), u)
    assert torch.allclose(cfg_eps(u, c, 1.0), c)
    assert torch.allclose(cfg_eps(u, c, 4.0), u + 4.0 * (c - u))
    # the w = s - 1 convention of other papers: (1 + w) eps_c - w eps_u
    w = 3.0
    assert torch.allclose(cfg_eps(u, c, w + 1), (1 + w) * c - w * u, atol=1e-6)


def test_classifier_grad_is_the_gradient_of_log_p_y(toy, linear):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, generator=g)
    t = torch.randint(0, 1000, (16,), generator=g)
    y = torch.randint(0, 3, (16,), generator=g)
    grad = classifier_grad(toy.classifier(linear), x, t, y)
    # Bayes: grad log p(y | x_t) = grad log q(x_t | y) - grad log q(x_t)
    exact = toy.score(x, t, linear, y) - toy.score(x, t, linear)
    assert torch.allclose(grad, exact, atol=1e-4)


def test_classifier_grad_works_inside_no_grad(toy, linear):
    with torch.no_grad():
        grad = classifier_grad(toy.classifier(linear), torch.randn(4, 2), torch.full((4,), 300), 1)
    assert grad.shape == (4, 2) and grad.abs().sum() > 0


def test_bayes_rule_in_eps_form(toy, linear):
    """With the exact classifier at scale 1, guided_eps turns the unconditional eps into the conditional one."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(32, 2, generator=g) * 1.5
    t = torch.randint(0, 1000, (32,), generator=g)
    eps_model = toy.eps_model(linear)
    ab = linear.alpha_bars[t][:, None]
    grad = classifier_grad(toy.classifier(linear), x, t, 2)
    assert torch.allclose(guided_eps(eps_model(x, t), ab, grad, 1.0), eps_model(x, t, torch.full((32,), 2)), atol=1e-4)


def test_classifier_grad_rejects_labels_outside_the_classes(toy, linear):
    x, t = torch.randn(4, 2), torch.full((4,), 10)
    with pytest.raises(ValueError, match=r"class label 3 is out of range: expected 0\.\.2"):
        classifier_grad(toy.classifier(linear), x, t, 3)
    with pytest.raises(ValueError, match="out of range"):
        classifier_grad(toy.classifier(linear), x, t, torch.tensor([0, 1, -1, 2]))
    with pytest.raises(ValueError, match=r"shape \[4\]"):
        classifier_grad(toy.classifier(linear), x, t, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="integers"):
        classifier_grad(toy.classifier(linear), x, t, torch.tensor([0.0, 1, 1, 2]))
    with pytest.raises(ValueError, match=r"logits of shape \[B, K\]"):
        classifier_grad(lambda x, t: x.sum(1), x, t, 0)


def test_nan_in_scale_is_caught_by_check_scale():
    from course_utils import validate_scale
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="finite number >= 0"):
            validate_scale(bad)
    with pytest.raises(TypeError):
        validate_scale("big")
    assert validate_scale(2) == 2.0
