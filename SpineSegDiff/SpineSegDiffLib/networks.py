"""The dual-encoder diffusion network (SpineSegDiff), in 2D or 3D, from MONAI ``basic_unet`` blocks.

* :class:`ImageEncoder` (IE) - TwoConv + 4 Down blocks over the image; run **once per image**.
* :class:`Denoiser` - a UNet over ``cat(image, x_t)``; a sinusoidal time embedding (128 -> 512 ->
  512) is added after the first convolution of every block, and the IE feature of the same level is
  added after each encoder level. It predicts the logits of x0 (K classes).

Instance norm and LeakyReLU(0.1) throughout, as in the paper. ``spatial_dims`` picks 2D or 3D: the
volumetric Diff-UNet is the same code.

The blocks (:func:`two_conv`, :func:`down`, :class:`UpCat`) are MONAI's ``basic_unet`` ``TwoConv``,
``Down`` and ``UpCat`` with the same layers and parameter names (``Testing/test_networks.py`` checks
that both give the same outputs from the same weights). They are written out here because importing
any MONAI module runs MONAI's package ``__init__``, which loads most of MONAI (2.5 s of start-up).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

CONV = {2: nn.Conv2d, 3: nn.Conv3d}
CONV_TRANSPOSE = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
INSTANCE_NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
MAX_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
NEGATIVE_SLOPE = 0.1
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


def conv_norm_act(spatial_dims: int, in_ch: int, out_ch: int) -> nn.Sequential:
    """3^d convolution, instance norm, LeakyReLU(0.1): MONAI ``Convolution`` (``conv`` + ``adn.N``, ``adn.A``)."""
    adn = nn.Sequential(OrderedDict(N=INSTANCE_NORM[spatial_dims](out_ch, affine=True),
                                    A=nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True)))
    return nn.Sequential(OrderedDict(conv=CONV[spatial_dims](in_ch, out_ch, 3, padding=1), adn=adn))


def two_conv(spatial_dims: int, in_ch: int, out_ch: int) -> nn.Sequential:
    """MONAI ``TwoConv``: ``conv_0``, ``conv_1``; keeps the spatial size."""
    return nn.Sequential(OrderedDict(conv_0=conv_norm_act(spatial_dims, in_ch, out_ch),
                                     conv_1=conv_norm_act(spatial_dims, out_ch, out_ch)))


def down(spatial_dims: int, in_ch: int, out_ch: int) -> nn.Sequential:
    """MONAI ``Down``: 2x max-pooling, then ``TwoConv``; halves the spatial size."""
    return nn.Sequential(OrderedDict(max_pooling=MAX_POOL[spatial_dims](2),
                                     convs=two_conv(spatial_dims, in_ch, out_ch)))


class UpCat(nn.Module):
    """MONAI ``UpCat`` layers: a 2x transposed convolution (``upsample.deconv``) and ``convs`` over
    ``cat(skip, upsampled)``; the forward pass is :class:`TimedUpCat`'s."""

    def __init__(self, spatial_dims: int, in_ch: int, cat_ch: int, out_ch: int, halves: bool = True) -> None:
        super().__init__()
        up_ch = in_ch // 2 if halves else in_ch
        self.upsample = nn.Sequential(OrderedDict(
            deconv=CONV_TRANSPOSE[spatial_dims](in_ch, up_ch, kernel_size=2, stride=2)))
        self.convs = two_conv(spatial_dims, cat_ch + up_ch, out_ch)


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
        self.convs = two_conv(spatial_dims, in_ch, out_ch)
        self.time = nn.Linear(TIME_HIDDEN, out_ch)
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        x = self.convs.conv_0(x) + _broadcast(self.time(time), self.spatial_dims)
        return self.convs.conv_1(x)


class TimedDown(nn.Module):
    """MONAI ``Down`` (max-pool + TwoConv) with the time embedding."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.down = down(spatial_dims, in_ch, out_ch)
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
        self.up = UpCat(spatial_dims, in_ch, cat_ch, out_ch, halves)
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
        f, d = config.features, config.spatial_dims
        self.conv_0 = two_conv(d, config.image_channels, f[0])
        self.downs = nn.ModuleList(down(d, f[i], f[i + 1]) for i in range(4))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = [self.conv_0(image)]
        for down in self.downs:
            features.append(down(features[-1]))
        return features


class Denoiser(nn.Module):
    """UNet predicting x0 logits: ``(x_t (B, K, *spatial), t (B,), image (B|1, C, *spatial),
    image features) -> (B, K, *spatial)``. Image and features with batch 1 broadcast over B."""

    def __init__(self, config: NetworkConfig) -> None:
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
        self.final = CONV[d](f[5], config.num_classes, kernel_size=1)

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
