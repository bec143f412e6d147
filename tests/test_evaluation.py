"""The measures that judge samples: Frechet distance, diversity and the recognizable fraction."""
import pytest
import torch

from course_utils import load_mnist, load_pretrained
from course_utils.evaluation import diversity, evaluator_outputs, frechet_distance, recognizable


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=g)
    shift = torch.tensor([1.0, -2.0, 0.5])
    # same covariance: only the means differ, FD = |mu_a - mu_b|^2
    assert frechet_distance(a, a + shift) == pytest.approx(float((shift ** 2).sum()), abs=1e-6)
    # scaled by 2: FD = d (1 + 4 - 2 * 2) = d for unit covariances
    assert frechet_distance(a, 2 * torch.randn(20000, 3, generator=g)) == pytest.approx(3.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_diversity_is_the_mean_distance_within_a_label():
    feats = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 10.0]])
    assert diversity(feats, torch.tensor([0, 0, 1])) == pytest.approx(5.0)   # the lone sample of label 1 is skipped


def test_recognizable_counts_confident_verdicts():
    logits = torch.tensor([[10.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 5.0, 0.0], [2.0, 0.0, 0.0]])
    # softmax maxima: 0.99991, 1/3, 0.9867, 0.7870
    assert recognizable(logits) == pytest.approx(0.5)
    assert recognizable(logits, threshold=0.7) == pytest.approx(0.75)


def test_real_digits_are_recognizable_and_noise_is_not():
    evaluator = load_pretrained("evaluator", device="cpu").model
    digits = load_mnist(train=False, offline=True, verbose=False).images[:200]
    noise = torch.randn(200, 1, 32, 32, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    assert recognizable(evaluator_outputs(evaluator, digits)[0]) > 0.9
    assert recognizable(evaluator_outputs(evaluator, noise)[0]) < 0.5
