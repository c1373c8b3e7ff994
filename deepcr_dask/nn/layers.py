"""Inference-only layers: faster ways to compute the layers deepCR runs, with the same output."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from .networks import Up
from .probes import CANDIDATE_ORDERS, STANDARD_ORDER, ConvOrder, capabilities, no_tf32, set_conv_order_trial

__all__ = ["ConcatUp", "ConvReLU", "MaxPool2x2", "PatchConv2d", "PointwiseConv2d"]


def _left_product(matrix: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """``matrix @ b`` for each ``(K, N)`` matrix ``b`` of a ``(n, K, N)`` batch, as plain matrix products.

    Why not ``torch.matmul``: with a batch it becomes a batched product, slower here than ``mm`` per image.
    """
    if len(batch) == 1:
        return torch.mm(matrix, batch[0])[None]
    return torch.stack([torch.mm(matrix, b) for b in batch])


class PatchConv2d(nn.Module):
    """A stride-1 "same" convolution of a few-channel input, as one matrix product over patches.

    Each pixel's ``k*k*C_in`` neighbours and a 1 for the bias are unfolded into a row and multiplied
    by the weight matrix. The product comes out channels-last, ready for channels-last layers, or,
    with ``channels_last=False``, is computed transposed so that it comes out NCHW (bit-identical, no
    copy).

    Why: for 1-2 input channels oneDNN's direct kernels choose their algorithm from the image shape
    and round differently between them (up to 1e-6 in a mask probability), which would make tiled
    output depend on the tile size. A GEMM with a reduction this short sums each pixel's products in
    one fixed order whatever the shape. That order (which tap comes first, and whether the sum starts
    from the bias) is the one the platform's own convolution uses on whole frames, found by a probe
    (:func:`deepcr_dask.nn.probes.capabilities`), so the layer is bit-identical to the convolution
    deepCR runs on the same CPU; ``order`` fixes it instead.
    """

    def __init__(self, conv: nn.Conv2d, channels_last: bool = True, order: ConvOrder | None = None):
        super().__init__()
        if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1:
            raise ValueError("PatchConv2d needs a stride-1, undilated, ungrouped convolution")
        if conv.padding != tuple((k - 1) // 2 for k in conv.kernel_size) or conv.kernel_size[0] % 2 == 0:
            raise ValueError("PatchConv2d needs an odd kernel with 'same' padding")
        self.kernel_size = conv.kernel_size
        self.padding = conv.padding
        self.out_channels = conv.out_channels
        self.in_channels = conv.in_channels
        self.channels_last = channels_last
        self.order = order
        self.reduction = conv.weight[0].numel()  # multiply-adds per output value (k*k*C_in)
        self.register_buffer("weight", conv.weight.detach().clone())
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.register_buffer("bias", bias.clone())
        self._matrices: dict[tuple, torch.Tensor] = {}

    def _matrix(self, order: ConvOrder, rows: list[tuple[int, int, int]], like: torch.Tensor) -> torch.Tensor:
        """``(1 + k*k*C_in, C_out)`` weights in summation order (bias row first or last), cached."""
        # Keyed by the weights' dtype and device too: a moved or cast module builds its matrices anew.
        key = (order, like.dtype, like.device, self.weight.dtype, self.weight.device)
        matrix = self._matrices.get(key)
        if matrix is None:
            taps = torch.stack([self.weight[:, c, dy, dx] for c, dy, dx in rows], dim=1)
            parts = [self.bias[:, None], taps] if order.bias_first else [taps, self.bias[:, None]]
            matrix = torch.cat(parts, dim=1).t().contiguous().to(like.dtype)
            self._matrices[key] = matrix
        return matrix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        kh, kw = self.kernel_size
        order = self.order or capabilities(x.device.type).conv_order(c)
        rows = order.rows(c, kh, kw)
        # Patch rows in summation order, with a row of ones for the bias, written in place: one pass
        # over the output, where unfold + cat took two.
        padded = F.pad(x, (self.padding[1], self.padding[1], self.padding[0], self.padding[0]))
        patches = x.new_empty((n, len(rows) + 1, h, w))
        first = 1 if order.bias_first else 0
        for row, (ch, dy, dx) in enumerate(rows):
            patches[:, row + first].copy_(padded[:, ch, dy:dy + h, dx:dx + w])
        patches[:, 0 if order.bias_first else -1].fill_(1)
        patches = patches.view(n, -1, h * w)
        matrix = self._matrix(order, rows, patches)
        if not self.channels_last:
            # The same products in the other orientation (bit-identical), written NCHW with no copy.
            return _left_product(matrix.t(), patches).view(n, self.out_channels, h, w)
        y = torch.matmul(patches.transpose(1, 2), matrix)  # (n, h*w, C_out)
        return y.view(n, h, w, self.out_channels).permute(0, 3, 1, 2)


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
        matrix, bias = self.matrix.to(x.dtype), self.bias.to(x.dtype)
        if x.is_contiguous():
            # NCHW: a (1, C) x (C, h*w) product with no copy of the input; it sums the channels in
            # another fixed order than the channels-last product below.
            y = _left_product(matrix.t(), x.view(n, c, h * w))
            return (y + bias[:, None]).view(n, self.out_channels, h, w)
        pixels = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view for channels-last input
        y = torch.matmul(pixels, matrix) + bias
        return y.view(n, h, w, self.out_channels).permute(0, 3, 1, 2)


class ConvReLU(nn.Module):
    """A convolution followed by ReLU; where oneDNN offers it, one call with ReLU as a post-op.

    Why: the fused call gives bit-identical output (ReLU commutes with rounding) and saves a
    read and a write of every activation, about 5% of a mask network's time. Where the probe
    ``fused_conv_relu`` says no (CUDA, a torch without oneDNN, a dtype the CPU lacks kernels for)
    it is ``relu(conv2d(x))``.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if isinstance(conv.padding, str):
            raise ValueError("ConvReLU needs numeric padding")
        self.register_buffer("weight", conv.weight.detach().clone())
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.register_buffer("bias", bias.clone())
        self.padding = list(conv.padding)
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups
        self.reduction = self.weight[0].numel()  # multiply-adds per output value (k*k*C_in/groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight.to(x.dtype), self.bias.to(x.dtype)
        if x.dtype in capabilities(x.device.type).fused_conv_relu:
            return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, self.padding, self.stride,
                                                           self.dilation, self.groups, "relu", [], "")
        return F.relu_(F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups))


class MaxPool2x2(nn.Module):
    """2x2, stride-2 max pooling as maxima of strided views (for NCHW input).

    Why: a maximum rounds nothing, so the output is identical to ``max_pool2d``; for NCHW tensors
    PyTorch's pooling kernel also computes the argmax indices, and is 5x slower than this. Channels-last
    input keeps ``max_pool2d``, which is fast there.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_contiguous() or x.shape[-1] % 2 or x.shape[-2] % 2:
            return F.max_pool2d(x, 2)
        rows = torch.maximum(x[..., ::2, :], x[..., 1::2, :])  # row pairs first: contiguous reads
        return torch.maximum(rows[..., ::2], rows[..., 1::2])


class ConcatUp(nn.Module):
    """An :class:`Up` step for NCHW inference: the transposed conv as one matrix product, written
    straight into its half of the concatenation buffer.

    A 2x2, stride-2 transposed conv gives each input pixel's ``C_in`` values a ``(C_in, C_out*2*2)``
    product: the four output pixels it covers. Computed so, and bias-added into the buffer that also
    holds the skip connection, it is bit-identical to ``cat([skip, conv_transpose2d(x)])`` (tested)
    and skips the reorders PyTorch's transposed conv makes of NCHW input and output, and the copy
    ``cat`` makes of its result. Channels-last input keeps the native layers, which are faster there.
    """

    def __init__(self, up: Up):
        super().__init__()
        deconv = up.up
        if deconv.kernel_size != (2, 2) or deconv.stride != (2, 2) or deconv.padding != (0, 0) or deconv.groups != 1:
            raise ValueError("ConcatUp needs a 2x2, stride-2, unpadded, ungrouped transposed convolution")
        self.up = deconv
        self.conv = up.conv
        self.out_channels = deconv.out_channels
        # (C_in, C_out, 2, 2) -> (C_in, C_out*2*2), columns ordered (channel, row offset, column offset).
        self.register_buffer("matrix", deconv.weight.detach().reshape(deconv.in_channels, -1).contiguous())
        bias = deconv.bias.detach() if deconv.bias is not None else torch.zeros(deconv.out_channels)
        self.register_buffer("bias", bias.clone())

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if not (deep.is_contiguous() and skip.is_contiguous()):
            return self.conv(torch.cat([skip, self.up(deep)], dim=1))
        n, c, h, w = deep.shape
        out, skip_channels = self.out_channels, skip.shape[1]
        if skip.shape[-2:] != (2 * h, 2 * w):
            raise ValueError(f"skip connection {tuple(skip.shape)} does not match upsampled {tuple(deep.shape)}")
        joined = deep.new_empty((n, skip_channels + out, 2 * h, 2 * w))
        joined[:, :skip_channels].copy_(skip)
        matrix = self.matrix.to(deep.dtype).t()
        bias = self.bias.to(deep.dtype).view(out, 1, 1)
        for image, target in zip(deep, joined[:, skip_channels:]):
            product = torch.mm(matrix, image.view(c, h * w)).view(out, 2, 2, h, w)  # (out, dy, dx, h, w)
            target = target.view(out, h, 2, w, 2)
            for dy, dx in itertools.product(range(2), range(2)):
                # One output phase at a time: a strided write with contiguous reads.
                torch.add(product[:, dy, dx], bias, out=target[:, :, dy, :, dx])
        return self.conv(joined)


def probe_conv_order(device_type: str, channels: int) -> ConvOrder:
    """The candidate order in which :class:`PatchConv2d` matches the platform's convolution best.

    256 px a side: oneDNN picks another algorithm for small images on some CPUs, and deepCR runs whole
    frames.
    """
    generator = torch.Generator().manual_seed(1)
    conv = torch.nn.Conv2d(channels, 32, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
        conv.bias.copy_(torch.randn(32, generator=generator))
    conv = conv.to(device_type)
    x = (torch.randn(1, channels, 256, 256, generator=generator) * 5).to(device_type)
    mismatches = {}
    with torch.inference_mode(), no_tf32(device_type):
        native = conv(x)
        for order in CANDIDATE_ORDERS:
            try:
                ours = PatchConv2d(conv, channels_last=False, order=order)(x)
            except Exception:  # a candidate that cannot run here is simply not chosen
                continue
            mismatches[order] = int((ours != native).sum())
    if not mismatches:
        return STANDARD_ORDER
    # Fewest mismatching values; ties keep the standard order (it comes first).
    return min(CANDIDATE_ORDERS, key=lambda o: mismatches.get(o, native.numel() + 1))


set_conv_order_trial(probe_conv_order)
