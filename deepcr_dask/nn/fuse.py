"""Turning a trained UNet into its inference form: the same arithmetic as deepCR, or folded and channels-last."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .geometry import as_pair
from .layers import ConcatUp, ConvReLU, MaxPool2x2, PatchConv2d, PointwiseConv2d
from .networks import DoubleConv, UNet, WeightNormConv2d, up_name

__all__ = ["KERNELS", "fuse_for_inference"]


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


KERNELS = ("reference", "fast")


def fuse_for_inference(net: UNet, kernels: str = "reference") -> UNet:
    """Return an eval-mode copy of ``net`` in its inference form.

    Parameters
    ----------
    net : UNet
    kernels : {"reference", "fast"}
        ``"reference"`` (the default) computes what deepCR computes, operation for operation: NCHW
        convolutions (oneDNN's, on CPUs: deepCR's kernels), BatchNorm applied by PyTorch's own
        eval-mode kernel after each convolution, weight norm materialised by the kernel deepCR's
        ``weight_norm`` calls. Its probabilities are within 1e-5 of deepCR's on every real frame and
        CPU family measured (largest 3.3e-6: ``bench/results/exactness-*.md``). ``"fast"`` folds
        BatchNorm into the convolution weights and runs the 3x3 convolutions channels-last, about
        1.1-1.5x as fast on CPUs; it rounds differently, up to 2.1e-5 from deepCR on real frames, so
        it is outside DESIGN's 1e-5 rule (masks equal on all but a pixel in millions).

    Both kernel sets replace the first convolution (1-2 input channels) by a :class:`PatchConv2d` and
    the 1x1 head by a :class:`PointwiseConv2d`, so that every layer's output at a pixel is independent
    of the thread count and of the window shape, bit for bit, as long as the coarsest level is at least
    32 px a side. (oneDNN picks other algorithms for convolutions on smaller maps; such windows only
    occur at image corners and in tiny images, and round apart by about 1e-6.) They also use layers
    that give bit-identical output faster: convolution and ReLU as one call where no BatchNorm sits
    between them (:class:`ConvReLU`), NCHW max pooling from strided views (:class:`MaxPool2x2`) and,
    for NCHW, the up-step's transposed conv as a matrix product written into the concatenation
    (:class:`ConcatUp`).
    """
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}")
    fold = kernels == "fast"
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
            elif fold and isinstance(layer, nn.Conv2d) and i + 1 < len(items) and \
                    isinstance(items[i + 1], nn.BatchNorm2d):
                layers.append(_fold_batchnorm(layer, items[i + 1]))
                i += 1
            else:
                layers.append(layer)
            i += 1
        block.conv = nn.Sequential(*layers)
    channels_last = kernels == "fast"
    if channels_last:
        fused.to(memory_format=torch.channels_last)
    for down in fused.downs():
        pool = down.mpconv[0]
        if as_pair(pool.kernel_size) == 2 and as_pair(pool.stride) == 2 and as_pair(pool.padding) == 0:
            down.mpconv[0] = MaxPool2x2()
    first = fused.inc.conv.conv
    first[0] = PatchConv2d(first[0], channels_last=channels_last)
    for block in [m for m in fused.modules() if isinstance(m, DoubleConv)]:
        block.conv = nn.Sequential(*_pair_conv_relu(list(block.conv)))
    if not channels_last:
        for level, up in enumerate(fused.ups()):
            setattr(fused, up_name(fused.depth, level), ConcatUp(up))
    fused.outc.conv = PointwiseConv2d(fused.outc.conv)
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused


def _pair_conv_relu(layers: list[nn.Module]) -> list[nn.Module]:
    paired: list[nn.Module] = []
    for layer in layers:
        if isinstance(layer, nn.ReLU) and paired and type(paired[-1]) is nn.Conv2d:
            paired[-1] = ConvReLU(paired[-1])
        else:
            paired.append(layer)
    return paired
