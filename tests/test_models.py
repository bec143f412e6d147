
import pytest
import torch

from course_utils import (
    EpsUNet,
    Evaluator,
    MLPDenoiser,
    NoisyClassifier,
    TimeMapUNet,
    count_parameters,
    sinusoidal_embedding,
    time_map,
)


def test_sinusoidal_embedding_formula():
    t = torch.tensor([0, 1, 500])
    emb = sinusoidal_embedding(t, 8)
    assert emb.shape == (3, 8)
    w = torch.tensor([10000 ** (-i / 4) for i in range(4)])
    assert torch.allclose(emb[:, :4], torch.sin(t[:, None] * w), atol=1e-5)
    assert torch.allclose(emb[:, 4:], torch.cos(t[:, None] * w), atol=1e-5)
    assert torch.equal(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    with pytest.raises(ValueError, match="even"):
        sinusoidal_embedding(t, 7)


def test_time_map_is_a_constant_channel_of_t_over_T():
    x = torch.zeros(2, 1, 4, 4)
    m = time_map(torch.tensor([0, 500]), 1000, x)
    assert m.shape == (2, 1, 4, 4)
    assert torch.all(m[0] == 0) and torch.all(m[1] == 0.5)


@pytest.mark.parametrize("make", [lambda: TimeMapUNet(), lambda: EpsUNet(), lambda: EpsUNet(num_classes=10)])
def test_denoisers_map_images_to_images(make):
    model = make()
    x, t = torch.randn(3, 1, 32, 32), torch.tensor([0, 10, 999])
    assert model(x, t).shape == x.shape
    assert count_parameters(model) < 1_000_000


def test_time_map_unet_sees_t():
    torch.manual_seed(0)
    model = TimeMapUNet()
    x = torch.randn(1, 1, 32, 32)
    assert not torch.allclose(model(x, torch.tensor([0])), model(x, torch.tensor([900])))


def test_conditional_unet_uses_the_label_and_the_null_label():
    torch.manual_seed(0)
    model = EpsUNet(num_classes=10)
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([5, 5])
    a = model(x, t, torch.tensor([3, 3]))
    b = model(x, t, torch.tensor([4, 4]))
    assert not torch.allclose(a, b)
    assert torch.allclose(model(x, t), model(x, t, torch.tensor([10, 10])))  # no label = the null label
    with pytest.raises(ValueError, match=r"in 0\.\.9, or the null label 10"):
        model(x, t, torch.tensor([11, 0]))
    with pytest.raises(ValueError, match="unconditional"):
        EpsUNet()(x, t, torch.tensor([1, 1]))


def test_classifiers_give_logits():
    x, t = torch.randn(3, 1, 32, 32), torch.tensor([0, 10, 999])
    clf = NoisyClassifier()
    assert clf(x, t).shape == (3, 10)
    torch.manual_seed(0)
    assert not torch.allclose(clf(x, torch.zeros(3, dtype=torch.long)), clf(x, t))
    ev = Evaluator().eval()
    assert ev(x).shape == (3, 10) and ev.features(x).shape == (3, 128)


def test_mlp_denoiser_handles_points_and_images():
    assert MLPDenoiser(shape=(2,), hidden=32)(torch.randn(5, 2), torch.arange(5)).shape == (5, 2)
    assert MLPDenoiser(hidden=32)(torch.randn(2, 1, 32, 32), torch.arange(2)).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        MLPDenoiser(shape=(2,), hidden=32)(torch.randn(5, 3), torch.arange(5))


@pytest.mark.parametrize("bad, match", [
    ((torch.randn(2, 3, 32, 32), torch.tensor([1, 2])), r"\[B, 1, H, W\]"),
    ((torch.randn(2, 1, 30, 30), torch.tensor([1, 2])), "divisible by 4"),
    ((torch.randn(2, 1, 32, 32), torch.tensor([1, 2, 3])), r"t must be a tensor of shape \[2\]"),
])
def test_models_explain_bad_input(bad, match):
    for model in (TimeMapUNet(), EpsUNet(), NoisyClassifier()):
        with pytest.raises(ValueError, match=match):
            model(*bad)


def test_unet_without_skips_is_the_same_network_with_its_skip_paths_carrying_nothing():
    torch.manual_seed(0)
    with_skips, without = TimeMapUNet(T=100, channels=(8, 16)), TimeMapUNet(T=100, channels=(8, 16), skips=False)
    without.load_state_dict(with_skips.state_dict())      # the same parameters: the ablation adds none
    assert count_parameters(with_skips) == count_parameters(without)
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([3, 60])
    assert not torch.allclose(with_skips(x, t), without(x, t))
    # without skips, the decoder's first block sees zeros where the encoder's features would be
    seen = []
    block = without.unet.up[0]
    hook = block.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    without(x, t)
    hook.remove()
    assert seen and seen[0][:, -16:].abs().max() == 0     # the concatenated skip half is all zeros
