"""Choosing the torch device and precision a Cleaner runs on."""

from __future__ import annotations

import contextlib

import torch

from ..errors import ModelError
from ..nn import KERNELS
from ..nn.probes import capabilities, no_tf32

__all__ = ["float32_proper", "resolve_device", "resolve_kernels", "resolve_precision", "run_batch", "visible_gpu"]

_PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str | torch.device = "auto", *, cuda_available: bool | None = None) -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N" | "gpu"`` into a torch device.

    ``"auto"`` and ``"cuda"`` mean ``cuda:0``: under dask-cuda each worker sees only its own GPU
    through ``CUDA_VISIBLE_DEVICES``, so index 0 is always the worker's GPU and never another's.

    Parameters
    ----------
    device : str or torch.device
    cuda_available : bool, optional
        Override the CUDA check (for tests and for planning on a machine without a GPU).
    """
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda:0" if available else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name in ("cuda", "gpu") or name.startswith("cuda:"):
        if not available:
            raise ModelError(f"device {device!r} requested but CUDA is not available here; use device='cpu' or 'auto'")
        return torch.device("cuda:0" if name in ("cuda", "gpu") else name)
    raise ModelError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def visible_gpu() -> str | None:
    """The GPU that ``cuda:0`` is in this process: the first entry of ``CUDA_VISIBLE_DEVICES`` (an index or
    a UUID, as SLURM or dask-cuda set it), or None when the variable is unset or empty."""
    import os

    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not value or not value.strip() or value.strip() == "-1":
        return None
    return value.split(",")[0].strip()


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """Compute dtype for the networks: float32 by default.

    ``bfloat16`` runs on CUDA and on CPUs with native bfloat16 kernels (AVX512-BW/VL/DQ, AVX512-BF16, AMX or
    AVX-NE-CONVERT, as oneDNN reports them); ``float16`` on CUDA only. On a CPU without those kernels
    bfloat16 would run 10-30x slower than float32 (measured under AVX2), so it stops with a
    :class:`~deepcr_dask.errors.ModelError` naming what is missing. bfloat16 changes probabilities by up
    to ~0.04 (measured: 0.042 on a 256x256 test frame, 0 of 258 mask pixels changed at threshold 0.5;
    tests/test_precision.py), so results are no longer bit-comparable with deepCR; masks agree on
    nearly every pixel.
    """
    if precision not in _PRECISIONS:
        raise ModelError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
    dtype = _PRECISIONS[precision]
    if dtype is torch.float16 and device.type != "cuda":
        raise ModelError(f"precision {precision!r} is only supported on CUDA devices (got {device})")
    if dtype is torch.bfloat16 and device.type == "cpu" and not capabilities("cpu").bf16_kernels:
        isa = capabilities("cpu").isa
        raise ModelError(
            f"precision 'bfloat16' needs native bfloat16 CPU kernels (AVX512-BW/VL/DQ, AVX512-BF16, AMX or "
            f"AVX-NE-CONVERT), which this CPU lacks (instruction set in use: {isa}; or oneDNN is off); "
            "it would run 10-30x slower than float32: use precision='float32'"
        )
    return dtype


def resolve_kernels(kernels: str, device: torch.device) -> str:
    """The kernel set a Cleaner runs: ``"fast"`` (channels-last) becomes ``"reference"`` (NCHW) where the
    ``channels_last`` probe finds no working channels-last convolution."""
    if kernels not in KERNELS:
        raise ModelError(f"kernels must be one of {KERNELS}, got {kernels!r}")
    if kernels == "fast" and not capabilities(device.type).channels_last:
        return "reference"
    return kernels


def float32_proper(device: torch.device, dtype: torch.dtype):
    """A context in which CUDA computes float32 as float32: PyTorch lets cuDNN convolutions (and, when a
    user enables it, matmuls, which ``PatchConv2d``, ``PointwiseConv2d`` and ``ConcatUp`` are) use TF32,
    a 10-bit mantissa, which would move probabilities by ~1e-3 from deepCR's float32 ones."""
    if device.type != "cuda" or dtype is not torch.float32:
        return contextlib.nullcontext()
    return no_tf32(device.type)


def run_batch(network: torch.nn.Module, tensors: list[torch.Tensor], device: torch.device,
              dtype: torch.dtype) -> torch.Tensor:
    """One forward pass over equal-shape ``(C, H, W)`` tensors: stacked, moved to ``device`` in ``dtype``;
    float32 ``(N, 1, H, W)`` out. The caller holds ``torch.inference_mode`` and :func:`float32_proper`."""
    return network(torch.stack(tensors).to(device=device, dtype=dtype)).float()
