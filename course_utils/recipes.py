"""How each shipped network is trained: ``python -m course_utils train NAME``.

Every recipe is reproducible (a fixed seed drives data order, timesteps and noise),
resumable (a checkpoint of model, EMA, optimiser, scheduler and generator every
``--checkpoint-every`` steps, written atomically) and ends by writing the float16
weights and their manifest entry.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .data import load_mnist
from .device import pick_device
from .models import EpsUNet, Evaluator, NoisyClassifier, TimeMapUNet
from .pretrained import NAMES, WEIGHTS_DIR, atomic_write_bytes, save_weights
from .schedule import NoiseSchedule
from .training import EMA, denoiser_loss, fit, noisy_classifier_loss


@dataclass
class Recipe:
    architecture: type
    kwargs: dict
    steps: int
    objective: str                 # "eps", "x0", "noisy-ce" or "clean-ce"
    lr: float = 2e-3
    batch_size: int = 128
    ema_decay: float | None = 0.999
    conditional: bool = False
    cond_drop: float = 0.1
    schedule: dict = field(default_factory=lambda: {"T": 1000, "kind": "linear", "beta_start": 1e-4,
                                                     "beta_end": 0.02})


RECIPES = {
    "ddpm_x0": Recipe(TimeMapUNet, {"T": 1000, "channels": [32, 64, 64]}, 13000, "x0", batch_size=256),
    "ddpm_eps": Recipe(EpsUNet, {"channels": [32, 64, 64], "emb_dim": 128}, 13000, "eps", batch_size=256),
    "cfg_eps": Recipe(EpsUNet, {"channels": [32, 64, 64], "emb_dim": 128, "num_classes": 10}, 13000, "eps",
                      batch_size=256, conditional=True),
    "noisy_classifier": Recipe(NoisyClassifier, {"num_classes": 10, "channels": [32, 64, 128], "emb_dim": 128},
                               10000, "noisy-ce", batch_size=256, ema_decay=None),
    "evaluator": Recipe(Evaluator, {"num_classes": 10}, 5000, "clean-ce", lr=1e-3, ema_decay=None, schedule=None),
}
assert set(RECIPES) == set(NAMES)


def random_shift(x: torch.Tensor, generator, max_shift: int = 2) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (the border is background, -1)."""
    b = x.shape[0]
    dx, dy = (torch.randint(-max_shift, max_shift + 1, (2, b), generator=generator)).tolist()
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    h, w = x.shape[-2:]
    return torch.stack([padded[i, :, max_shift + dy[i]:max_shift + dy[i] + h, max_shift + dx[i]:max_shift + dx[i] + w]
                        for i in range(b)])


def warmup_cosine(steps: int, warmup: int = 200, floor: float = 0.1):
    """LR factor: linear warm-up, then a cosine from 1 down to ``floor`` at the last step."""
    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def train_recipe(name: str, *, steps: int | None = None, device=None, weights_dir: Path = WEIGHTS_DIR,
                 checkpoint_dir: Path = Path("checkpoints"), checkpoint_every: int = 1000, seed: int = 0,
                 offline: bool | None = None, progress: bool = True) -> dict:
    """Train network ``name`` by its recipe (resuming from its checkpoint) and save its weights."""
    if name not in RECIPES:
        raise ValueError(f"no recipe named {name!r}: the names are {', '.join(NAMES)}")
    r = RECIPES[name]
    steps = r.steps if steps is None else steps
    device = torch.device(device) if device is not None else pick_device()
    data = load_mnist(train=True, offline=offline)
    torch.manual_seed(seed)
    model = r.architecture(**{k: tuple(v) if isinstance(v, list) else v for k, v in r.kwargs.items()})
    ema = EMA(model, r.ema_decay) if r.ema_decay else None
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=0.0 if r.ema_decay else 1e-4,
                                  fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps))
    generator = torch.Generator().manual_seed(seed)
    schedule = NoiseSchedule(**r.schedule).to(device) if r.schedule else None

    ckpt = Path(checkpoint_dir) / f"{name}.pt"
    start, losses, seconds = 0, [], 0.0
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state["steps"] != steps:
            raise ValueError(f"{ckpt} belongs to a {state['steps']}-step run, not {steps}: delete it to start over")
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.model.load_state_dict(state["ema"])
            ema.updates = state["ema_updates"]
        model.to(device)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        start, losses, seconds = state["step"], state["losses"], state["seconds"]
        print(f"resuming {name} from step {start} of {steps} ({ckpt})")

    def loss_fn(m, x0, y):
        if r.objective in ("eps", "x0"):
            return denoiser_loss(m, schedule, x0, y if r.conditional else None, prediction=r.objective,
                                 cond_drop=r.cond_drop, null_label=10, generator=generator)
        if r.objective == "noisy-ce":
            return noisy_classifier_loss(m, schedule, x0, y, generator=generator)
        return F.cross_entropy(m(random_shift(x0, generator)).float(), y)

    clock = time.perf_counter()

    def save_checkpoint(step, new_losses):
        done = step + 1
        if done % checkpoint_every and done != steps:
            return
        state = {"steps": steps, "step": done, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                 "losses": losses + new_losses, "seconds": seconds + time.perf_counter() - clock}
        if ema is not None:
            state.update(ema=ema.model.state_dict(), ema_updates=ema.updates)
        atomic_write_bytes(ckpt, lambda tmp: torch.save(state, tmp))

    new_losses = fit(model, loss_fn, (data.images, data.labels), steps=steps - start, batch_size=r.batch_size,
                     optimizer=optimizer, scheduler=scheduler, ema=ema, device=device, generator=generator,
                     progress=progress, desc=f"train {name}", callback=save_checkpoint, start_step=start)
    seconds += time.perf_counter() - clock
    all_losses = losses + new_losses
    final = ema.model if ema is not None else model
    info = {
        "name": name,
        "architecture": {"class": r.architecture.__name__, "kwargs": r.kwargs},
        "schedule": r.schedule,
        "prediction": r.objective if r.objective in ("eps", "x0") else None,
        "null_label": 10 if r.conditional else None,
        "cond_drop": r.cond_drop if r.conditional else None,
        "command": f"python -m course_utils train {name} --steps {steps} --seed {seed}",
        "data": f"MNIST {data.source}, {len(data.labels)} training digits",
        "steps": steps, "batch_size": r.batch_size, "lr": r.lr, "ema_decay": r.ema_decay, "seed": seed,
        "train_seconds": round(seconds, 1), "train_device": str(device),
        "final_loss": round(sum(all_losses[-200:]) / max(1, len(all_losses[-200:])), 5),
        "quality": {},
    }
    return save_weights(final.float(), name, info, weights_dir)


def main_train(args) -> int:
    for name in args.names:
        info = train_recipe(name, steps=args.steps, device=args.device, weights_dir=Path(args.weights_dir),
                            checkpoint_dir=Path(args.checkpoint_dir), checkpoint_every=args.checkpoint_every,
                            seed=args.seed)
        print(f"wrote {info['file']} ({info['bytes'] / 1e6:.2f} MB, sha256 {info['sha256'][:12]}...) "
              f"after {info['steps']} steps in {info['train_seconds']:.0f} s")
    return 0
