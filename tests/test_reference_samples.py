"""Samples from fixed seeds must stay bit for bit what they were: a change to how the samplers are written
(not to what they compute) must not change what a learner sees.

The references in tests/data/reference_samples.safetensors were made with the samplers as they stood before
any such change. Bits are only comparable on one machine: the float kernels PyTorch picks (AVX2, AVX-512, MKL's
paths) round differently, by 1e-7 on the toy and up to about 6e-5 on the small U-Nets between two x86-64 CPUs.
So the file records the machine it was written on (:func:`machine`): there the test asks for equal bits; on any
other it asks for agreement within ``ACROSS_MACHINES``, far below what a change to the formulas moves (a sign, an
off-by-one timestep, a dropped clamp move samples by 1e-2 and more). To make them anew, which is right after a
change that is meant to change samples, or to hold bit-identity on a new machine before a rewrite:

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
ACROSS_MACHINES = 1e-3   # largest difference allowed against references written on another machine


def machine() -> str:
    """What the samples' last bits depend on: PyTorch's version, the vector instructions its kernels dispatch to
    (``ATEN_CPU_CAPABILITY`` can lower them) and the CPU's vector-instruction flags."""
    from course_utils.cpu import cpu_flags

    vector = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "fma", "f16c", "sse")))
    return f"torch {torch.__version__}; kernels {torch.backends.cpu.get_cpu_capability()}; {' '.join(vector)}"


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
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(REFERENCES), "pt") as f:
        written_on = (f.metadata() or {}).get("machine")
    return load_file(REFERENCES), written_on == machine()


@pytest.mark.parametrize("name", list(cases()))
def test_samples_are_bit_identical_to_the_references(references, name):
    tensors, same_machine = references
    got, want = cases()[name](), tensors[name]
    assert got.shape == want.shape
    largest = (got - want).abs().max().item()
    if same_machine:
        assert torch.equal(got, want), f"{name}: largest difference {largest:.3g} on the machine of the references"
    else:
        assert largest <= ACROSS_MACHINES, (f"{name}: largest difference {largest:.3g}, more than a machine's "
                                            f"rounding ({ACROSS_MACHINES:g}; references from another machine)")


def test_the_references_hold_every_case_and_name_their_machine():
    from safetensors import safe_open

    with safe_open(str(REFERENCES), "pt") as f:
        assert set(f.keys()) == set(cases()) and "kernels" in (f.metadata() or {}).get("machine", "")


if __name__ == "__main__" and "--write" in sys.argv:
    from safetensors.torch import save_file

    REFERENCES.parent.mkdir(exist_ok=True)
    tmp = REFERENCES.with_suffix(".tmp")
    save_file(draw_all(), str(tmp), metadata={"machine": machine()})
    tmp.replace(REFERENCES)
    print(f"wrote {REFERENCES}")
