"""The shipped weights: where they live, how they are checked and loaded.

Each network ``NAME`` ships as ``weights/NAME.safetensors`` (float16, to stay small)
with a manifest entry ``weights/NAME.json`` beside it: the sha256 of the file, the
architecture, the noise schedule, the command that trained it, the data it saw, its
steps and time, and the quality measured for it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .core.device import pick_device
from .core.models import EpsUNet, Evaluator, NoisyClassifier, TimeMapUNet
from .core.schedule import NoiseSchedule
from .files import atomic_write

WEIGHTS_DIR = Path(__file__).parent / "weights"
NAMES = ("ddpm_x0", "ddpm_eps", "noisy_classifier", "cfg_eps", "evaluator")
ARCHITECTURES = {cls.__name__: cls for cls in (TimeMapUNet, EpsUNet, NoisyClassifier, Evaluator)}


class WeightsError(RuntimeError):
    """A weight file is missing, unknown, altered, or does not fit its network."""


class UnknownWeightsError(WeightsError, KeyError):
    """No weights have that name: also a ``KeyError``, as a failed look-up by name is in Python."""

    def __str__(self) -> str:  # the message itself, not KeyError's quoted repr of it
        return str(self.args[0])


# which notebook trains each network live (and saves it to the learner's folder)
TRAINED_IN = {"ddpm_x0": "02_ddpm_x0", "ddpm_eps": "03_ddpm_eps", "noisy_classifier": "04_noisy_classifier",
              "cfg_eps": "06_classifier_free_guidance"}


@dataclass
class Pretrained:
    model: nn.Module                  # in eval mode, on the chosen device
    schedule: NoiseSchedule | None    # the schedule it was trained with (None for the evaluator)
    info: dict                        # its manifest entry
    owner: str = "shipped"            # "shipped" (inside the package) or "your" (trained in a notebook)

    @property
    def prediction(self) -> str:
        """What the network outputs, "eps", "x0" or "v", as its manifest records (the sampler's ``prediction``)."""
        return self.info.get("prediction") or "eps"

    @property
    def label(self) -> str:
        """Whose model this is and how long it trained, for figure titles."""
        how = f"{self.info['steps']:,} steps"
        if self.owner == "your":
            how += f", {self.info['train_seconds'] / 60:.1f} min here"
        return f"{self.owner} {self.info['name']} ({how})"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_model(info: dict) -> nn.Module:
    arch = info["architecture"]
    cls = ARCHITECTURES.get(arch["class"])
    if cls is None:
        raise WeightsError(f"unknown architecture {arch['class']!r} in the manifest")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in arch.get("kwargs", {}).items()}
    return cls(**kwargs)


def save_weights(model: nn.Module, name: str, info: dict, weights_dir: Path = WEIGHTS_DIR) -> dict:
    """Write NAME.safetensors (float16) and NAME.json with its sha256, both atomically."""
    weights_dir = Path(weights_dir)
    state = {k: v.detach().to("cpu", torch.float16 if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    path = weights_dir / f"{name}.safetensors"
    atomic_write(path, lambda tmp: save_file(state, str(tmp)))
    info = dict(info, file=path.name, sha256=sha256_of(path), bytes=path.stat().st_size)
    write_info(name, info, weights_dir)
    return info


def write_info(name: str, info: dict, weights_dir: Path = WEIGHTS_DIR) -> None:
    text = json.dumps(info, indent=2, sort_keys=True) + "\n"
    atomic_write(Path(weights_dir) / f"{name}.json", lambda tmp: Path(tmp).write_text(text))


def read_info(name: str, weights_dir: Path = WEIGHTS_DIR) -> dict:
    if name not in NAMES:
        raise UnknownWeightsError(f"no pretrained weights named {name!r}: the names are {', '.join(NAMES)}")
    path = Path(weights_dir) / f"{name}.json"
    if not path.exists():
        raise WeightsError(f"the manifest entry {path} is missing: retrain with `python -m course_utils train {name}`")
    return json.loads(path.read_text())


def manifest(weights_dir: Path = WEIGHTS_DIR) -> dict:
    """Every manifest entry that exists, by name."""
    return {n: read_info(n, weights_dir) for n in NAMES if (Path(weights_dir) / f"{n}.json").exists()}


def my_models_dir() -> Path:
    """The learner's own models: ``$COURSE_MODELS``, or ``my_models/`` beside the notebooks."""
    return Path(os.environ.get("COURSE_MODELS") or "my_models")


def save_my_model(model: nn.Module, name: str, info: dict) -> dict:
    """Save a network trained in a notebook to :func:`my_models_dir` (atomically, with its manifest
    entry), where the later notebooks find it. Returns the manifest entry."""
    if name not in TRAINED_IN:
        raise WeightsError(f"{name!r} is not a network the notebooks train: expected one of {', '.join(TRAINED_IN)}")
    info = save_weights(model.float(), name, info, my_models_dir())
    print(f"saved your {name} to {my_models_dir() / info['file']} ({info['steps']:,} steps)")
    return info


def load_model(name: str, device=None) -> Pretrained:
    """The learner's own ``name`` when an earlier notebook saved one (see :func:`save_my_model`),
    otherwise the shipped one. ``.owner`` says which, ``.label`` says it for a figure title."""
    folder = my_models_dir()
    if name in TRAINED_IN and (folder / f"{name}.json").exists():
        try:
            return dataclasses.replace(load_pretrained(name, device, folder), owner="your")
        except WeightsError as err:
            raise WeightsError(f"your {name} in {folder} cannot be used: {err}. To fix it, run notebook "
                               f"{TRAINED_IN[name]} again (it saves a new one), or delete {folder / name}.json "
                               "and its .safetensors file to use the shipped model.") from None
    return load_pretrained(name, device)


def load_pretrained(name: str, device=None, weights_dir: Path = WEIGHTS_DIR) -> Pretrained:
    """Load shipped weights ``name`` after checking their sha256 against the manifest.

    Returns ``Pretrained(model, schedule, info)`` with the model in eval mode on ``device``
    (default: :func:`pick_device`). Refuses an unknown name, a missing file, a file whose
    hash differs from the manifest, and weights that do not fit the architecture.
    """
    info = read_info(name, weights_dir)
    path = Path(weights_dir) / info["file"]
    if not path.exists():
        raise WeightsError(f"{path} is missing: retrain with `python -m course_utils train {name}`")
    digest = sha256_of(path)
    if digest != info["sha256"]:
        raise WeightsError(f"{path} does not match its manifest (sha256 {digest[:12]}..., expected "
                           f"{info['sha256'][:12]}...): the file was altered or replaced. Restore it "
                           f"or retrain with `python -m course_utils train {name}`")
    model = build_model(info)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise WeightsError(f"{path} does not fit {info['architecture']['class']}: {str(err)[:300]}") from None
    device = torch.device(device) if device is not None else pick_device()
    model.to(device).eval()
    if device.type == "cpu":  # NHWC convolutions: 1.2x to 1.6x faster sampling on a CPU (bench_cpu.py)
        model.to(memory_format=torch.channels_last)
    schedule = NoiseSchedule(**info["schedule"]).to(device) if info.get("schedule") else None
    return Pretrained(model, schedule, info)
