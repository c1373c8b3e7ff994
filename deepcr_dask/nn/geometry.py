"""Geometry of a UNet read from its layers: receptive field, reach and the pooling grid."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .networks import DoubleConv, UNet, conv_layers

__all__ = ["pooling_alignment", "reach", "receptive_field"]


@dataclass(frozen=True)
class _Step:
    """One layer on the network's deepest path, as far as geometry goes."""

    kind: str  # "conv" (same-padded), "pool", or "up" (transposed conv)
    kernel: int
    jump: int  # image pixels between neighbouring samples of the layer's input
    dilation: int = 1
    stride: int = 1

    @property
    def span(self) -> int:
        """Image pixels between the first and last input sample one output sample uses."""
        if self.kind == "conv":
            return (self.kernel - 1) * self.dilation * self.jump
        if self.kind == "pool":
            return (self.kernel - 1) * self.jump
        return (math.ceil(self.kernel / self.stride) - 1) * self.jump  # a transposed conv's output sees ceil(k/s)


def _deepest_path(net: UNet) -> list[_Step]:
    """The layers of the deepest path, with kernel sizes and strides read from the layers themselves."""
    steps: list[_Step] = []
    jump = 1

    def convs(block: DoubleConv) -> None:
        for conv in conv_layers(block):
            k, d = conv.kernel_size[0], conv.dilation[0]
            if k % 2 == 0 or conv.padding[0] != (k - 1) // 2 * d:
                raise ValueError(f"only odd, same-padded convolutions are supported, got {conv}")
            steps.append(_Step("conv", k, jump, dilation=d))

    convs(net.inc.conv)
    for down in net.downs():
        pool, block = down.mpconv
        steps.append(_Step("pool", as_pair(pool.kernel_size), jump, stride=as_pair(pool.stride)))
        jump *= as_pair(pool.stride)
        convs(block)
    for up in net.ups():
        steps.append(_Step("up", up.up.kernel_size[0], jump, stride=up.up.stride[0]))
        jump //= up.up.stride[0]
        convs(up.conv)
    steps.append(_Step("conv", net.outc.conv.kernel_size[0], jump))
    return steps


def receptive_field(net: UNet) -> int:
    """Width in pixels of the input region that one output pixel depends on.

    The usual recurrence (``r += (k - 1) * jump``, ``jump *= stride``) along the deepest path.
    """
    return 1 + sum(step.span for step in _deepest_path(net))


def reach(net: UNet) -> int:
    """Largest distance in pixels, on either side, from an output pixel to an input pixel it uses.

    This, not the receptive field's full width, is the margin a window needs around the pixels it
    must compute exactly (with windows on the pooling grid). A same-padded convolution spans
    symmetrically, half each side; a pooling cell or a transposed conv's inputs lie to one side of a
    pixel, which side depending on the pixel, so their span counts fully on both. For the 2-32
    networks this is 9 px (receptive field 18), for the 3-32 networks 23 px (44).
    """
    return sum(step.span // 2 if step.kind == "conv" else step.span for step in _deepest_path(net))


def pooling_alignment(net: UNet) -> int:
    """Product of the pooling strides: windows must start on this grid to reproduce whole-image output."""
    alignment = 1
    for down in net.downs():
        alignment *= as_pair(down.mpconv[0].stride)
    return alignment


def as_pair(value: int | tuple[int, int]) -> int:
    if isinstance(value, tuple):
        if value[0] != value[1]:
            raise ValueError(f"non-square pooling {value} is not supported")
        return value[0]
    return value


