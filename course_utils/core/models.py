"""The networks of the course, all small enough to train on a CPU.

- :class:`TimeMapUNet`: predicts x0 from a 2-channel input, the noisy image and a
  constant "time map" channel holding t / T.
- :class:`EpsUNet`: predicts eps; t enters through a sinusoidal embedding added inside
  every residual block; optionally class-conditional with a null label for CFG.
- :class:`MLPDenoiser`: a flattened MLP denoiser (images or 2-D points), for comparison.
- :class:`NoisyClassifier`: a CNN for p(y | x_t, t), its time embedding added to its
  convolutional features.
- :class:`Evaluator`: a clean-image MNIST classifier of another design (batch norm,
  max pooling, no time input), used only to judge samples.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """The Transformer's position code applied to timesteps:

        emb[:, i]         = sin(t * w_i),   emb[:, dim/2 + i] = cos(t * w_i),
        w_i = max_period ** (-i / (dim/2)),   i = 0 .. dim/2 - 1.

    ``t``: shape [B] (integers or floats); returns [B, dim] (``dim`` must be even).
    """
    if dim % 2:
        raise ValueError(f"the embedding dimension must be even, got {dim}")
    if t.dim() != 1:
        raise ValueError(f"t must have shape [B], got {list(t.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def time_map(t: torch.Tensor, T: int, x: torch.Tensor) -> torch.Tensor:
    """The timestep as an image channel: t / T, of shape [B, 1, H, W] for x of shape [B, C, H, W]."""
    b, _, h, w = x.shape
    return (t.to(x.dtype) / T).view(b, 1, 1, 1).expand(b, 1, h, w)


def _validate_image(x: torch.Tensor, channels: int, name: str) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{name} expects images of shape [B, {channels}, H, W], got {list(x.shape)}")
    if x.shape[-1] % 4 or x.shape[-2] % 4:
        raise ValueError(f"{name} needs H and W divisible by 4 (MNIST padded to 32), got {list(x.shape[-2:])}")


def _validate_t(t: torch.Tensor, x: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor) or t.shape != (x.shape[0],):
        shape = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"t must be a tensor of shape [{x.shape[0]}] (one timestep per image), got {shape}")


def _groups(channels: int) -> int:
    return 8 if channels % 8 == 0 else 1


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, plus a projected embedding after the first conv, plus a skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int | None):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(_groups(c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out) if emb_dim else None
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb is not None:
            h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(nn.Module):
    """A plain U-Net: one residual block per level down, a middle block, one per level up,
    with skip connections concatenated, and an optional embedding fed to every block.

    ``skips=False`` is the ablation: the same network, with its skip paths carrying zeros (same
    parameters and cost), so that the decoder sees only what comes up from the bottom."""

    def __init__(self, in_channels: int, out_channels: int, channels=(32, 64, 64), emb_dim: int | None = None,
                 skips: bool = True):
        super().__init__()
        self.skips = skips
        self.inc = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c = channels[0]
        for i, ch in enumerate(channels):
            self.down.append(ResBlock(c, ch, emb_dim))
            last = i == len(channels) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(ch, ch, 3, stride=2, padding=1))
            c = ch
        self.mid = ResBlock(c, c, emb_dim)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(channels))):
            ch = channels[i]
            self.up.append(ResBlock(c + ch, ch, emb_dim))
            self.upsample.append(Upsample(ch) if i > 0 else nn.Identity())
            c = ch
        self.out = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, out_channels, 3, padding=1))

    def forward(self, x, emb=None):
        h = self.inc(x)
        skips = []
        for block, down in zip(self.down, self.downsample):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.mid(h, emb)
        for block, up in zip(self.up, self.upsample):
            skip = skips.pop()
            h = up(block(torch.cat([h, skip if self.skips else torch.zeros_like(skip)], dim=1), emb))
        return self.out(h)


class TimeMapUNet(nn.Module):
    """x0-prediction DDPM network: ``x0_hat = unet( concat[x_t, t/T map] )``, a 2-channel input."""

    def __init__(self, T: int = 1000, channels=(32, 64, 64), skips: bool = True):
        super().__init__()
        self.T = T
        self.unet = UNet(2, 1, channels, skips=skips)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _validate_image(x_t, 1, "TimeMapUNet")
        _validate_t(t, x_t)
        return self.unet(torch.cat([x_t, time_map(t, self.T, x_t)], dim=1))


class TimeEmbedding(nn.Module):
    """sinusoidal_embedding(t) followed by Linear-SiLU-Linear."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t):
        return self.mlp(sinusoidal_embedding(t, self.dim))


class EpsUNet(nn.Module):
    """eps-prediction network ``eps_hat = model(x_t, t)`` or, with ``num_classes``,
    ``model(x_t, t, y)`` where ``y == null_label`` (= ``num_classes``) means "no class".
    """

    def __init__(self, channels=(32, 64, 64), emb_dim: int = 128, num_classes: int | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.null_label = num_classes
        self.time = TimeEmbedding(emb_dim)
        self.label = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.unet = UNet(1, 1, channels, emb_dim)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        _validate_image(x_t, 1, "EpsUNet")
        _validate_t(t, x_t)
        emb = self.time(t)
        if self.label is not None:
            if y is None:
                y = torch.full_like(t, self.null_label)
            if y.shape != t.shape or int(y.min()) < 0 or int(y.max()) > self.null_label:
                raise ValueError(f"y must be labels of shape [{t.shape[0]}] in 0..{self.num_classes - 1}, "
                                 f"or the null label {self.null_label}")
            emb = emb + self.label(y)
        elif y is not None:
            raise ValueError("this EpsUNet is unconditional (num_classes=None): call it as model(x_t, t)")
        return self.unet(x_t, emb)


class MLPDenoiser(nn.Module):
    """A flattened MLP: ``out = MLP( concat[flatten(x_t), emb(t)] )``, reshaped like x_t.

    Works for any sample shape of ``shape`` (e.g. (1, 32, 32) images or (2,) points).
    """

    def __init__(self, shape=(1, 32, 32), hidden: int = 512, emb_dim: int = 64, layers: int = 3):
        super().__init__()
        self.shape = tuple(shape)
        d = math.prod(self.shape)
        self.time = TimeEmbedding(emb_dim)
        dims = [d + emb_dim] + [hidden] * layers
        body = []
        for a, b in zip(dims[:-1], dims[1:]):
            body += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*body, nn.Linear(hidden, d))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if tuple(x_t.shape[1:]) != self.shape:
            raise ValueError(f"MLPDenoiser expects samples of shape [B, {', '.join(map(str, self.shape))}], "
                             f"got {list(x_t.shape)}")
        _validate_t(t, x_t)
        h = torch.cat([x_t.flatten(1), self.time(t)], dim=1)
        return self.net(h).view_as(x_t)


class _ConvStage(nn.Module):
    """conv-GroupNorm-SiLU, plus the projected time embedding, then conv-GroupNorm-SiLU."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.conv1, self.norm1 = nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(_groups(c_out), c_out)
        self.conv2, self.norm2 = nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(_groups(c_out), c_out)
        self.emb = nn.Linear(emb_dim, c_out)

    def forward(self, x, emb):
        h = F.silu(self.norm1(self.conv1(x)))
        h = h + self.emb(emb)[:, :, None, None]  # the time embedding is added to the features
        return F.silu(self.norm2(self.conv2(h)))


class NoisyClassifier(nn.Module):
    """p_phi(y | x_t, t): logits [B, K] for noisy images x_t at timesteps t.

    Three conv stages (32 -> 16 -> 8 -> 4 pixels), each adding a projection of the
    sinusoidal time embedding to its features, then global average pooling and a linear layer.
    """

    def __init__(self, num_classes: int = 10, channels=(32, 64, 128), emb_dim: int = 128):
        super().__init__()
        self.num_classes = num_classes
        self.time = TimeEmbedding(emb_dim)
        stages, c = [], 1
        for ch in channels:
            stages.append(_ConvStage(c, ch, emb_dim))
            c = ch
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _validate_image(x_t, 1, "NoisyClassifier")
        _validate_t(t, x_t)
        emb = self.time(t)
        h = x_t
        for stage in self.stages:
            h = F.avg_pool2d(stage(h, emb), 2)
        return self.head(h.mean(dim=(2, 3)))


class Evaluator(nn.Module):
    """A clean-image MNIST classifier (conv-BN-ReLU, max pooling, dropout, two dense layers).

    ``features(x)`` gives the 128-d penultimate features used for the Frechet distance;
    ``forward(x)`` the logits. It takes no timestep: it was trained on clean digits only.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.num_classes = num_classes

        def block(a, b):
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(),
                                 nn.Conv2d(b, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2))

        self.body = nn.Sequential(block(1, 32), block(32, 64), block(64, 64))
        self.fc = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 4 * 4, 128), nn.ReLU())
        self.head = nn.Linear(128, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 32, 32):
            raise ValueError(f"Evaluator expects images of shape [B, 1, 32, 32] in [-1, 1], got {list(x.shape)}")
        return self.fc(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
