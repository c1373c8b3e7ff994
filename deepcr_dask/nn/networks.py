"""UNet networks whose ``state_dict`` keys match the deepCR model zoo.

deepCR's networks are small UNets: a block is (3x3 conv, norm, ReLU) x 2; going down is
``MaxPool2d(2)`` then a block; going up is a stride-2 transposed conv that halves the channels,
concatenated as ``[skip, up]`` and followed by a block; the head is a 1x1 conv (with a sigmoid for
mask networks). Two normalisations exist: BatchNorm (``ACS-WFC``, ``decam``, the inpaint models) and
weight norm (``WFC3-UVIS``). The attribute names below reproduce deepCR's so that its checkpoints load
unchanged (after stripping the ``module.`` prefix its ``DataParallel`` wrapper added).

The modules hold only the network; geometry is in :mod:`.geometry`, inference-only layers in :mod:`.layers`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Architecture", "DoubleConv", "Down", "InConv", "OutConv", "UNet", "Up", "WeightNormConv2d"]


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
        # The kernel torch.nn.utils.weight_norm (which deepCR used) calls: the same bits as deepCR's
        # weights, where spelling the formula out rounds up to 2e-7 apart. The formula only where the
        # probe finds no working kernel.
        from .probes import capabilities

        if capabilities(self.weight_v.device.type).weight_norm_kernel:
            return torch._weight_norm(self.weight_v, self.weight_g, 0)
        norm = self.weight_v.flatten(1).norm(dim=1).view(-1, *([1] * (self.weight_v.dim() - 1)))
        return self.weight_v * (self.weight_g / norm)

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


def up_name(depth: int, level: int) -> str:
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
            setattr(self, up_name(depth, level), Up(channels, channels // 2, norm))
        self.outc = OutConv(hidden, out_channels)

    def downs(self) -> list[Down]:
        return [getattr(self, f"down{level}") for level in range(1, self.depth)]

    def ups(self) -> list[Up]:
        return [getattr(self, up_name(self.depth, level)) for level in range(self.depth - 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs():
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups():
            x = up(x, skips.pop())
        x = self.outc(x)
        return torch.sigmoid(x) if self.sigmoid else x


def conv_layers(block: DoubleConv) -> list[nn.Conv2d]:
    return [m for m in block.conv if isinstance(m, nn.Conv2d)]


