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
import torch.nn.functional as F
from torch import nn

__all__ = [
    "KERNELS",
    "Architecture",
    "PatchConv2d",
    "PointwiseConv2d",
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


class PatchConv2d(nn.Module):
    """A stride-1 "same" convolution of a few-channel input, as one matrix product over patches.

    Each pixel's ``k*k*C_in`` neighbours (and a 1 for the bias) are unfolded into a row and
    multiplied by the ``(k*k*C_in + 1, C_out)`` weight matrix. The product comes out channels-last,
    ready for channels-last layers, or is copied to NCHW with ``channels_last=False``.

    Why: for 1-2 input channels oneDNN's direct kernels choose their algorithm from the image shape
    and round differently between them (up to 1e-6 in a mask probability), which would make tiled
    output depend on the tile size. A GEMM with a reduction this short sums each pixel's products in
    the same order whatever the shape.
    """

    def __init__(self, conv: nn.Conv2d, channels_last: bool = True):
        super().__init__()
        if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1:
            raise ValueError("PatchConv2d needs a stride-1, undilated, ungrouped convolution")
        if conv.padding != tuple((k - 1) // 2 for k in conv.kernel_size) or conv.kernel_size[0] % 2 == 0:
            raise ValueError("PatchConv2d needs an odd kernel with 'same' padding")
        self.kernel_size = conv.kernel_size
        self.padding = conv.padding
        self.out_channels = conv.out_channels
        self.channels_last = channels_last
        weight = conv.weight.detach().reshape(conv.out_channels, -1)
        self.reduction = weight.shape[1]  # multiply-adds per output value (k*k*C_in)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.register_buffer("matrix", torch.cat([weight, bias[:, None]], dim=1).t().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        patches = F.unfold(x, self.kernel_size, padding=self.padding)  # (n, k*k*C_in, h*w)
        patches = torch.cat([patches, patches.new_ones(n, 1, h * w)], dim=1)
        y = torch.matmul(patches.transpose(1, 2), self.matrix.to(patches.dtype))  # (n, h*w, C_out)
        y = y.view(n, h, w, self.out_channels).permute(0, 3, 1, 2)
        return y if self.channels_last else y.contiguous()


class PointwiseConv2d(nn.Module):
    """A 1x1 convolution as a matrix product over the channel axis (a view for channels-last input).

    Why: oneDNN's 1x1 kernel with a single output channel splits the channel sum between threads,
    so its output changed with the thread count (by up to 4e-6 in a logit); this product does not.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1:
            raise ValueError("PointwiseConv2d needs a 1x1, stride-1, ungrouped convolution")
        self.out_channels = conv.out_channels
        self.register_buffer("matrix", conv.weight.detach().reshape(conv.out_channels, -1).t().contiguous())
        self.reduction = self.matrix.shape[0]  # multiply-adds per output value (C_in)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.register_buffer("bias", bias.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view for channels-last input, else a copy
        y = torch.matmul(pixels, self.matrix.to(pixels.dtype)) + self.bias.to(pixels.dtype)
        y = y.view(n, h, w, self.out_channels).permute(0, 3, 1, 2)
        return y if x.is_contiguous(memory_format=torch.channels_last) else y.contiguous()


KERNELS = ("reference", "fast")


def fuse_for_inference(net: UNet, kernels: str = "reference") -> UNet:
    """Return an eval-mode copy with normalisation folded into plain convolutions.

    BatchNorm (eval statistics) becomes a per-channel affine map of the preceding conv; weight norm
    becomes a fixed weight. The first convolution (1-2 input channels) becomes a
    :class:`PatchConv2d` and the 1x1 head a :class:`PointwiseConv2d`, so that every layer's output at
    a pixel is independent of the thread count, and of the window shape, bit for bit, as long as the
    coarsest level is at least 32 px a side. (oneDNN picks other algorithms for convolutions on
    smaller maps; such windows only occur at image corners and in tiny images, and round apart by
    about 1e-6.)

    Parameters
    ----------
    net : UNet
    kernels : {"reference", "fast"}
        ``"reference"`` keeps the other layers NCHW, where oneDNN runs the same kernels as deepCR
        (probabilities within 1e-5 of deepCR's). ``"fast"`` runs them channels-last, about 1.6x as
        fast on CPUs; it rounds differently from deepCR, by up to 1.1e-5 in a probability on real
        frames (identical masks), which is the same size as deepCR's own float32 rounding error.
    """
    import copy

    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}")
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
    channels_last = kernels == "fast"
    if channels_last:
        fused.to(memory_format=torch.channels_last)
    first = fused.inc.conv.conv
    first[0] = PatchConv2d(first[0], channels_last=channels_last)
    fused.outc.conv = PointwiseConv2d(fused.outc.conv)
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused
