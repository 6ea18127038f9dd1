"""A 2D U-Net (Ronneberger, Fischer & Brox 2015).

Contracting path of double 3x3 convolutions and 2x2 max pooling, expanding path of transposed
convolutions, skip connections concatenated at every level, and a 1x1 convolution to class logits.
Convolutions are padded ("same"), so the output has the input's height and width whenever both are
multiples of :attr:`UNet.required_multiple`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import InputError

NORMALIZATIONS = ("batch", "group", "instance", "none")


def _norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = max(g for g in range(1, 9) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by normalisation and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, dropout: float = 0.0):
        bias = norm == "none"
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            _norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            _norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class Up(nn.Module):
    """Upsample by 2 with a transposed convolution, concatenate the skip, double convolution."""

    def __init__(self, in_channels: int, out_channels: int, norm: str):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = DoubleConv(2 * out_channels, out_channels, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample ``x``, join it with ``skip`` and convolve."""
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """2D U-Net returning per-pixel class logits.

    Parameters
    ----------
    in_channels
        Number of image channels (1 for grayscale, 3 for RGB, ...).
    num_classes
        Number of output classes, background included (2 for foreground/background).
    depth
        Number of resolution levels; the input is pooled ``depth - 1`` times.
    base_features
        Feature maps at the first level; doubled at each level below.
    norm
        ``"batch"``, ``"group"``, ``"instance"`` or ``"none"``. Batch norm (in eval mode) makes
        every pixel independent of the rest of its tile, which keeps tiled inference seamless.
    dropout
        Dropout probability at the bottleneck.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        depth: int = 4,
        base_features: int = 16,
        norm: str = "batch",
        dropout: float = 0.0,
    ):
        super().__init__()
        if in_channels < 1 or num_classes < 2 or depth < 1 or base_features < 1:
            raise InputError(
                f"invalid U-Net settings: in_channels={in_channels}, num_classes={num_classes}, "
                f"depth={depth}, base_features={base_features}; need in_channels >= 1, "
                "num_classes >= 2 (background included), depth >= 1, base_features >= 1"
            )
        if norm not in NORMALIZATIONS:
            raise InputError(f"unknown normalisation {norm!r}: choose one of {NORMALIZATIONS}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        self.base_features = base_features
        self.norm = norm
        self.dropout = dropout

        widths = [base_features * 2**level for level in range(depth)]
        self.encoders = nn.ModuleList()
        previous = in_channels
        for level, width in enumerate(widths):
            last = level == depth - 1
            self.encoders.append(DoubleConv(previous, width, norm, dropout if last else 0.0))
            previous = width
        self.pool = nn.MaxPool2d(2)
        self.decoders = nn.ModuleList(
            Up(widths[level + 1], widths[level], norm) for level in reversed(range(depth - 1))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    @property
    def required_multiple(self) -> int:
        """Height and width of the input must be multiples of this."""
        return 2 ** (self.depth - 1)

    def config(self) -> dict[str, Any]:
        """Return the constructor arguments, enough to rebuild the network."""
        return {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "depth": self.depth,
            "base_features": self.base_features,
            "norm": self.norm,
            "dropout": self.dropout,
        }

    def check_input_shape(self, x: torch.Tensor) -> None:
        """Raise :class:`InputError` with the fix when ``x`` cannot go through the network."""
        if x.ndim != 4:
            raise InputError(
                f"the U-Net takes a batch shaped (N, C, H, W); got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise InputError(
                f"the U-Net expects {self.in_channels} channel(s), the input has {x.shape[1]}"
            )
        m = self.required_multiple
        h, w = x.shape[-2:]
        if h % m or w % m:
            ph, pw = -(-h // m) * m, -(-w // m) * m
            raise InputError(
                f"input is {h}x{w}; the U-Net needs multiples of {m}: pad to {ph}x{pw} "
                "(predict_probabilities pads and tiles for you)"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits shaped (N, num_classes, H, W) for an input shaped (N, C, H, W)."""
        self.check_input_shape(x)
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x)
            if level < self.depth - 1:
                skips.append(x)
                x = self.pool(x)
        for decoder in self.decoders:
            x = decoder(x, skips.pop())
        return self.head(x)
