"""UNet networks whose ``state_dict`` keys match the deepCR model zoo.

deepCR's networks are small UNets: a block is (3x3 conv, norm, ReLU) x 2; going down is
``MaxPool2d(2)`` then a block; going up is a stride-2 transposed conv that halves the channels,
concatenated as ``[skip, up]`` and followed by a block; the head is a 1x1 conv (with a sigmoid for
mask networks). Two normalisations exist: BatchNorm (``ACS-WFC``, ``decam``, the inpaint models) and
weight norm (``WFC3-UVIS``). The attribute names below reproduce deepCR's so that its checkpoints load
unchanged (after stripping the ``module.`` prefix its ``DataParallel`` wrapper added).

The modules hold only the network. Folding normalisation into the convolutions for inference,
device placement and tiling live in :mod:`deepcr_dask.zoo` and :mod:`deepcr_dask.cleaner`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "Architecture",
    "UNet",
    "WeightNormConv2d",
    "fuse_for_inference",
    "pooling_alignment",
    "receptive_field",
]


@dataclass(frozen=True)
class Architecture:
    """What it takes to build a network: enough to rebuild one from a checkpoint."""

    in_channels: int = 1
    out_channels: int = 1
    hidden: int = 32
    depth: int = 2
    norm: str = "batch"  # "batch" | "weight"
    sigmoid: bool = True  # mask heads end in a sigmoid, inpaint heads do not

    def build(self) -> UNet:
        return UNet(self.in_channels, self.out_channels, self.hidden, self.depth, self.norm, self.sigmoid)


class WeightNormConv2d(nn.Conv2d):
    """Conv2d with weight normalisation stored as deepCR saved it (``weight_g``, ``weight_v``).

    ``weight = weight_g * weight_v / ||weight_v||`` with the norm over all dimensions but the first,
    as ``torch.nn.utils.weight_norm(..., dim=0)`` defined it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0):
        super().__init__(in_channels, out_channels, kernel_size, padding=padding)
        weight = self.weight.detach()
        del self.weight
        self.weight_v = nn.Parameter(weight.clone())
        self.weight_g = nn.Parameter(weight.flatten(1).norm(dim=1).view(-1, 1, 1, 1))

    def materialized_weight(self) -> torch.Tensor:
        norm = self.weight_v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        return self.weight_g * self.weight_v / norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.materialized_weight(), self.bias)


class DoubleConv(nn.Module):
    """(3x3 conv, norm, ReLU) x 2; ``self.conv`` indices match deepCR's ``double_conv``."""

    def __init__(self, in_ch: int, out_ch: int, norm: str):
        super().__init__()
        if norm == "batch":
            layers = [
                nn.Conv2d(in_ch, out_ch, 3, padding=1),
                nn.BatchNorm2d(out_ch, momentum=0.005),
                nn.ReLU(inplace=True),
                nn.Conv2d(out_ch, out_ch, 3, padding=1),
                nn.BatchNorm2d(out_ch, momentum=0.005),
                nn.ReLU(inplace=True),
            ]
        elif norm == "weight":
            layers = [
                WeightNormConv2d(in_ch, out_ch, 3, padding=1),
                nn.ReLU(inplace=True),
                WeightNormConv2d(out_ch, out_ch, 3, padding=1),
                nn.ReLU(inplace=True),
            ]
        else:
            raise ValueError(f"norm must be 'batch' or 'weight', got {norm!r}")
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class InConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, norm: str):
        super().__init__()
        self.conv = DoubleConv(in_ch, out_ch, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Down(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, norm: str):
        super().__init__()
        self.mpconv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_ch, out_ch, norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mpconv(x)


class Up(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, norm: str):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv = DoubleConv(in_ch, out_ch, norm)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(deep)], dim=1))


class OutConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _up_name(depth: int, level: int) -> str:
    # deepCR names the last up-step "up8" and counts down from there ("up7", ...).
    return f"up{8 - (depth - 2) + level}"


class UNet(nn.Module):
    """deepCR-compatible UNet with ``depth`` resolution levels (2 or 3 in the zoo).

    Parameters
    ----------
    in_channels, out_channels : int
        1 -> 1 for mask networks; 2 (masked image, mask) -> 1 for inpaint networks.
    hidden : int
        Channels at full resolution; doubled at each level down.
    depth : int
        Number of resolution levels (``depth - 1`` poolings).
    norm : {"batch", "weight"}
        BatchNorm after each conv, or weight-normalised convs.
    sigmoid : bool
        Apply a sigmoid to the head (probability output).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        hidden: int = 32,
        depth: int = 2,
        norm: str = "batch",
        sigmoid: bool = True,
    ):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be at least 2, got {depth}")
        self.depth = depth
        self.sigmoid = sigmoid
        self.inc = InConv(in_channels, hidden, norm)
        for level in range(1, depth):
            setattr(self, f"down{level}", Down(hidden * 2 ** (level - 1), hidden * 2**level, norm))
        for level in range(depth - 1):
            channels = hidden * 2 ** (depth - 1 - level)
            setattr(self, _up_name(depth, level), Up(channels, channels // 2, norm))
        self.outc = OutConv(hidden, out_channels)

    def downs(self) -> list[Down]:
        return [getattr(self, f"down{level}") for level in range(1, self.depth)]

    def ups(self) -> list[Up]:
        return [getattr(self, _up_name(self.depth, level)) for level in range(self.depth - 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs():
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups():
            x = up(x, skips.pop())
        x = self.outc(x)
        return torch.sigmoid(x) if self.sigmoid else x


def _conv_layers(block: DoubleConv) -> list[nn.Conv2d]:
    return [m for m in block.conv if isinstance(m, nn.Conv2d)]


def receptive_field(net: UNet) -> int:
    """Width in pixels of the input region that one output pixel depends on.

    Walks the deepest path of the network with the usual recurrence (``r += (k - 1) * jump``,
    ``jump *= stride``), reading kernel sizes and strides from the layers themselves.
    """
    rf, jump = 1, 1

    def convs(block: DoubleConv) -> None:
        nonlocal rf
        for conv in _conv_layers(block):
            rf += (conv.kernel_size[0] - 1) * conv.dilation[0] * jump

    convs(net.inc.conv)
    for down in net.downs():
        pool, block = down.mpconv
        kernel, stride = _pair(pool.kernel_size), _pair(pool.stride)
        rf += (kernel - 1) * jump
        jump *= stride
        convs(block)
    for up in net.ups():
        kernel, stride = up.up.kernel_size[0], up.up.stride[0]
        # One output pixel of a transposed conv sees ceil(k / s) input pixels.
        rf += (math.ceil(kernel / stride) - 1) * jump
        jump //= stride
        convs(up.conv)
    rf += (net.outc.conv.kernel_size[0] - 1) * jump
    return rf


def pooling_alignment(net: UNet) -> int:
    """Product of the pooling strides: windows must start on this grid to reproduce whole-image output."""
    alignment = 1
    for down in net.downs():
        alignment *= _pair(down.mpconv[0].stride)
    return alignment


def _pair(value: int | tuple[int, int]) -> int:
    if isinstance(value, tuple):
        if value[0] != value[1]:
            raise ValueError(f"non-square pooling {value} is not supported")
        return value[0]
    return value


def _fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def _plain_conv(conv: WeightNormConv2d) -> nn.Conv2d:
    plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding)
    with torch.no_grad():
        plain.weight.copy_(conv.materialized_weight())
        plain.bias.copy_(conv.bias)
    return plain


def fuse_for_inference(net: UNet) -> UNet:
    """Return an eval-mode copy with normalisation folded into plain convolutions.

    BatchNorm (eval statistics) becomes a per-channel affine map of the preceding conv; weight norm
    becomes a fixed weight. The result computes the same function with fewer passes over memory
    (about 3x deepCR's speed on CPUs with oneDNN). The layout stays NCHW: oneDNN's channels-last
    kernels round differently for different window widths, which would make tiled output depend on
    the tiling at the 1e-6 level; its NCHW kernels do not (tested).
    """
    import copy

    fused = copy.deepcopy(net).eval()
    for block in fused.modules():
        if not isinstance(block, DoubleConv):
            continue
        layers: list[nn.Module] = []
        items = list(block.conv)
        i = 0
        while i < len(items):
            layer = items[i]
            if isinstance(layer, WeightNormConv2d):
                layers.append(_plain_conv(layer))
            elif isinstance(layer, nn.Conv2d) and i + 1 < len(items) and isinstance(items[i + 1], nn.BatchNorm2d):
                layers.append(_fold_batchnorm(layer, items[i + 1]))
                i += 1
            else:
                layers.append(layer)
            i += 1
        block.conv = nn.Sequential(*layers)
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused
