"""Samples from fixed seeds must stay bit for bit what they were: a change to how the samplers are written
(not to what they compute) must not change what a learner sees.

The references in tests/data/reference_samples.safetensors were made with the samplers as they stood before
any such change, on this kind of machine (x86-64 CPU). To make them anew, which is right only after a change
that is meant to change samples:

    python tests/test_reference_samples.py --write
"""
import sys
from pathlib import Path

import pytest
import torch

from course_utils import (
    EpsUNet,
    GaussianMixture2D,
    NoiseSchedule,
    NoisyClassifier,
    TimeMapUNet,
    ddim_sample,
    ddpm_sample,
)

REFERENCES = Path(__file__).parent / "data" / "reference_samples.safetensors"


def _seeded(make, seed):
    torch.manual_seed(seed)
    return make().eval()


def cases() -> dict:
    """Each case: a name and a function that samples from fixed seeds."""
    toy, schedule = GaussianMixture2D(weights=[0.5, 0.3, 0.2]), NoiseSchedule(T=200, kind="linear")
    eps, clf = toy.eps_model(schedule), toy.classifier(schedule)
    labels = torch.tensor([0, 1, 2, 2] * 8)
    images = NoiseSchedule(T=1000, kind="linear")
    x0_net = _seeded(lambda: TimeMapUNet(T=1000, channels=(8, 16)), 1)
    eps_net = _seeded(lambda: EpsUNet(channels=(8, 16), emb_dim=16), 2)
    cfg_net = _seeded(lambda: EpsUNet(channels=(8, 16), emb_dim=16, num_classes=10), 3)
    classifier = _seeded(lambda: NoisyClassifier(channels=(8, 16, 16), emb_dim=16), 4)
    digits = torch.tensor([3, 9])

    def gen(seed):
        return torch.Generator().manual_seed(seed)

    common = dict(progress=False, device="cpu")
    return {
        "toy ddpm": lambda: ddpm_sample(eps, schedule, (32, 2), generator=gen(0), **common),
        "toy ddpm classifier": lambda: ddpm_sample(eps, schedule, (32, 2), y=labels, classifier=clf,
                                                   classifier_scale=3.0, generator=gen(1), **common),
        "toy ddpm respaced x0": lambda: ddpm_sample(toy.x0_model(schedule), schedule, (32, 2), prediction="x0",
                                                    steps=20, generator=gen(2), **common),
        "toy ddim": lambda: ddim_sample(eps, schedule, (32, 2), steps=20, generator=gen(3), **common),
        "toy ddim eta classifier": lambda: ddim_sample(eps, schedule, (32, 2), y=labels, classifier=clf,
                                                       classifier_scale=2.0, steps=20, eta=1.0, generator=gen(4),
                                                       **common),
        "toy ddim cfg": lambda: ddim_sample(eps, schedule, (32, 2), y=labels, cfg_scale=3.0, null_label=3,
                                            steps=20, generator=gen(5), **common),
        "unet ddpm x0": lambda: ddpm_sample(x0_net, images, (2, 1, 32, 32), prediction="x0", steps=10,
                                            generator=gen(6), **common),
        "unet ddim eps": lambda: ddim_sample(eps_net, images, (2, 1, 32, 32), steps=10, generator=gen(7), **common),
        "unet ddpm classifier": lambda: ddpm_sample(eps_net, images, (2, 1, 32, 32), y=digits, classifier=classifier,
                                                    classifier_scale=5.0, steps=10, generator=gen(8), **common),
        "unet ddim cfg": lambda: ddim_sample(cfg_net, images, (2, 1, 32, 32), y=digits, cfg_scale=2.0, steps=10,
                                             generator=gen(9), **common),
    }


def draw_all() -> dict:
    with torch.no_grad():
        return {name: run().contiguous() for name, run in cases().items()}


@pytest.fixture(scope="module")
def references():
    from safetensors.torch import load_file

    return load_file(REFERENCES)


@pytest.mark.parametrize("name", list(cases()))
def test_samples_are_bit_identical_to_the_references(references, name):
    got = cases()[name]()
    want = references[name]
    assert got.shape == want.shape
    assert torch.equal(got, want), f"{name}: largest difference {(got - want).abs().max().item():.3g}"


if __name__ == "__main__" and "--write" in sys.argv:
    from safetensors.torch import save_file

    REFERENCES.parent.mkdir(exist_ok=True)
    tmp = REFERENCES.with_suffix(".tmp")
    save_file(draw_all(), str(tmp))
    tmp.replace(REFERENCES)
    print(f"wrote {REFERENCES}")
