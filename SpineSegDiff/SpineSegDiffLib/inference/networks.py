"""The dual-encoder diffusion network (SpineSegDiff), in 2D or 3D, from MONAI ``basic_unet`` blocks.

* :class:`ImageEncoder` (IE) - TwoConv + 4 Down blocks over the image; run **once per image**.
* :class:`Denoiser` - a UNet over ``cat(image, x_t)``; a sinusoidal time embedding (128 -> 512 ->
  512) is added after the first convolution of every block, and the IE feature of the same level is
  added after each encoder level. It predicts the logits of x0 (K classes).

Instance norm and LeakyReLU(0.1) throughout, as in the paper. ``spatial_dims`` picks 2D or 3D: the
volumetric Diff-UNet is the same code.

The blocks are MONAI's ``basic_unet`` ``TwoConv``, ``Down`` and ``UpCat``. MONAI is imported when a
network is built, not when this module is imported: importing the library, reading model folders
and presegmentation-only runs do not load MONAI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

ACT = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True})
NORM = ("instance", {"affine": True})
TIME_DIM = 128
TIME_HIDDEN = 512


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of the dual encoder; stored in the model folder's config.json."""

    spatial_dims: int = 2
    num_classes: int = 4
    features: tuple[int, ...] = (16, 16, 32, 64, 128, 16)
    image_channels: int = 1

    def __post_init__(self) -> None:
        if len(self.features) != 6:
            raise ValueError("features needs 6 widths: 5 encoder levels and the last decoder level")


def _basic_unet() -> ModuleType:
    """MONAI's ``monai.networks.nets.basic_unet`` (its blocks build every network here)."""
    from monai.networks.nets import basic_unet as module

    return module


def timestep_embedding(t: torch.Tensor, dim: int = TIME_DIM) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps: ``(B,) -> (B, dim)``."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _broadcast(embedding: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    return embedding.reshape(*embedding.shape, *([1] * spatial_dims))


class TimedTwoConv(nn.Module):
    """MONAI ``TwoConv`` with the time embedding added between its two convolutions."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.convs = _basic_unet().TwoConv(spatial_dims, in_ch, out_ch, ACT, NORM, True)
        self.time = nn.Linear(TIME_HIDDEN, out_ch)
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        x = self.convs.conv_0(x) + _broadcast(self.time(time), self.spatial_dims)
        return self.convs.conv_1(x)


class TimedDown(nn.Module):
    """MONAI ``Down`` (max-pool + TwoConv) with the time embedding."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.down = _basic_unet().Down(spatial_dims, in_ch, out_ch, ACT, NORM, True)
        self.time = nn.Linear(TIME_HIDDEN, out_ch)
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        x = self.down.convs.conv_0(self.down.max_pooling(x))
        x = x + _broadcast(self.time(time), self.spatial_dims)
        return self.down.convs.conv_1(x)


class TimedUpCat(nn.Module):
    """MONAI ``UpCat`` (upsample, concatenate the skip, TwoConv) with the time embedding."""

    def __init__(self, spatial_dims: int, in_ch: int, cat_ch: int, out_ch: int, halves: bool = True):
        super().__init__()
        self.up = _basic_unet().UpCat(spatial_dims, in_ch, cat_ch, out_ch, ACT, NORM, True, halves=halves)
        self.time = nn.Linear(TIME_HIDDEN, out_ch)
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor, skip: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        x = self.up.upsample(x)
        pad = [p for d in reversed(range(self.spatial_dims)) for p in (0, skip.shape[d + 2] - x.shape[d + 2])]
        x = self.up.convs.conv_0(torch.cat([skip, F.pad(x, pad, mode="replicate")], dim=1))
        x = x + _broadcast(self.time(time), self.spatial_dims)
        return self.up.convs.conv_1(x)


class ImageEncoder(nn.Module):
    """IE: ``(B, C_img, *spatial) -> [5 feature maps]`` at full, 1/2, 1/4, 1/8, 1/16 resolution."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        f, d, blocks = config.features, config.spatial_dims, _basic_unet()
        self.conv_0 = blocks.TwoConv(d, config.image_channels, f[0], ACT, NORM, True)
        self.downs = nn.ModuleList(blocks.Down(d, f[i], f[i + 1], ACT, NORM, True) for i in range(4))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = [self.conv_0(image)]
        for down in self.downs:
            features.append(down(features[-1]))
        return features


class Denoiser(nn.Module):
    """UNet predicting x0 logits: ``(x_t (B, K, *spatial), t (B,), image (B|1, C, *spatial),
    image features) -> (B, K, *spatial)``. Image and features with batch 1 broadcast over B."""

    def __init__(self, config: NetworkConfig) -> None:
        from monai.networks.layers.factories import Conv

        super().__init__()
        f, d = config.features, config.spatial_dims
        self.time_mlp = nn.Sequential(
            nn.Linear(TIME_DIM, TIME_HIDDEN), nn.SiLU(), nn.Linear(TIME_HIDDEN, TIME_HIDDEN)
        )
        self.conv_0 = TimedTwoConv(d, config.image_channels + config.num_classes, f[0])
        self.downs = nn.ModuleList(TimedDown(d, f[i], f[i + 1]) for i in range(4))
        self.ups = nn.ModuleList(
            [TimedUpCat(d, f[4], f[3], f[3]), TimedUpCat(d, f[3], f[2], f[2]),
             TimedUpCat(d, f[2], f[1], f[1]), TimedUpCat(d, f[1], f[0], f[5], halves=False)]
        )
        self.final = Conv["conv", d](f[5], config.num_classes, kernel_size=1)

    def forward(self, x_t, t, image, image_features):
        time = self.time_mlp(timestep_embedding(t))
        image = image.expand(x_t.shape[0], *image.shape[1:])
        skips = [self.conv_0(torch.cat([image, x_t], dim=1), time) + image_features[0]]
        for down, feature in zip(self.downs, image_features[1:]):
            skips.append(down(skips[-1], time) + feature)
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop(), time)
        return self.final(x)


class SpineSegDiffNet(nn.Module):
    """Both encoders together; ``forward`` is the training-time call (encoder run every time)."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = ImageEncoder(config)
        self.denoiser = Denoiser(config)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``(B, K, *s), (B,), (B, C, *s) -> (B, K, *s)`` logits of x0."""
        return self.denoiser(x_t, t, image, self.image_encoder(image))
