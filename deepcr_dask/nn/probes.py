"""Capability probes: which kernels beyond standard torch ops work here, decided once per device type.

Each inference layer that can use more than standard torch ops asks :func:`capabilities` for the
tensor's device type and falls back to standard ops when a probe says no. A probe is a check made
once (per device type and oneDNN switch) and cached: whether the op exists, a flag torch reports,
and a tiny trial call that is allowed to fail. An op that exists but fails, or gives other numbers
than the standard op it stands for, counts as absent.

The probes:

``fused_conv_relu``
    oneDNN's convolution with ReLU as a post-op (``torch.ops.mkldnn._convolution_pointwise``), per
    dtype: the trial call must give ``relu(conv2d(x))`` bit for bit. CPUs with oneDNN only.
``bf16_kernels``
    oneDNN has native bfloat16 kernels on this CPU (AVX512-BW/VL/DQ, AVX512-BF16, AMX or
    AVX-NE-CONVERT). Without them a bfloat16 convolution runs on reference code 10-30x slower than
    float32 (measured under AVX2), so ``precision="bfloat16"`` is refused there (:mod:`deepcr_dask.inference.devices`).
``channels_last``
    A channels-last convolution runs and equals the NCHW one within float32 rounding; ``kernels="fast"``
    falls back to NCHW without it.
``weight_norm_kernel``
    ``torch._weight_norm`` (the kernel deepCR's ``weight_norm`` calls) runs and agrees with the formula;
    otherwise the formula is spelled out (up to 2e-7 apart in the weights).
The order in which the platform's own convolution sums a few-channel 3x3 layer (the networks' first
    layer), found by comparing it bit for bit with :class:`~deepcr_dask.nn.layers.PatchConv2d` in each
    candidate order. oneDNN sums the taps with the channel innermost, adding the bias last on AVX-512
    and starting from it on AVX2; PyTorch's own code (oneDNN off) sums channel-major, bias last. With
    the matching order the first layer is bit-identical to deepCR's on each CPU, and still independent
    of the tile shape. (Not an op beyond standard torch, so never turned off: the product is a plain
    matrix product whatever the order.)

``DEEPCR_DASK_PORTABLE=1`` turns every probe off (standard torch ops only: the path CUDA and CPUs
without oneDNN run); ``DEEPCR_DASK_DISABLE=name,name`` turns off the named ones. :func:`forced`
does the same inside a ``with`` block (tests).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

__all__ = [
    "PROBES",
    "Capabilities",
    "ConvOrder",
    "capabilities",
    "cpu_isa",
    "forced",
    "no_tf32",
    "portable",
]

PROBES = ("fused_conv_relu", "bf16_kernels", "channels_last", "weight_norm_kernel")
PORTABLE_ENV = "DEEPCR_DASK_PORTABLE"
DISABLE_ENV = "DEEPCR_DASK_DISABLE"


@dataclass(frozen=True)
class ConvOrder:
    """How a convolution sums one output value: tap order over the patch, and where the bias enters."""

    channel_innermost: bool = False  # (dy, dx, c) rather than (c, dy, dx)
    bias_first: bool = False  # the sum starts from the bias rather than adding it at the end

    def rows(self, channels: int, kh: int, kw: int) -> list[tuple[int, int, int]]:
        """The patch rows ``(c, dy, dx)`` in summation order."""
        if self.channel_innermost:
            return [(c, dy, dx) for dy, dx, c in itertools.product(range(kh), range(kw), range(channels))]
        return list(itertools.product(range(channels), range(kh), range(kw)))


STANDARD_ORDER = ConvOrder()  # PyTorch's own convolution: im2col (c, dy, dx), then the bias
CANDIDATE_ORDERS = tuple(ConvOrder(inner, first) for inner, first in itertools.product((False, True), repeat=2))


@dataclass(frozen=True)
class Capabilities:
    """What a device type offers beyond standard torch ops (see the module docstring)."""

    device_type: str
    fused_conv_relu: frozenset[torch.dtype] = frozenset()
    bf16_kernels: bool = False
    channels_last: bool = False
    weight_norm_kernel: bool = False
    conv_orders: dict[int, ConvOrder] = field(default_factory=dict, compare=False, hash=False)
    isa: str = ""

    def conv_order(self, channels: int) -> ConvOrder:
        """Summation order of the platform's convolution for ``channels`` input channels (probed once)."""
        if self.device_type == "meta":  # shapes only (FLOP counting): nothing to compare
            return STANDARD_ORDER
        with _LOCK:
            if channels not in self.conv_orders:
                trial = _CONV_ORDER_TRIAL[0]
                self.conv_orders[channels] = trial(self.device_type, channels) if trial else STANDARD_ORDER
            return self.conv_orders[channels]

    def summary(self) -> dict[str, object]:
        """Plain values, for benchmark tables and provenance."""
        return {
            "device": self.device_type,
            "isa": self.isa,
            "fused_conv_relu": sorted(str(d).removeprefix("torch.") for d in self.fused_conv_relu),
            "bf16_kernels": self.bf16_kernels,
            "channels_last": self.channels_last,
            "weight_norm_kernel": self.weight_norm_kernel,
            "conv_order": {c: _order_name(self.conv_order(c)) for c in (1, 2)},
        }


def _order_name(order: ConvOrder) -> str:
    return ("(dy,dx,c)" if order.channel_innermost else "(c,dy,dx)") + (", bias first" if order.bias_first
                                                                         else ", bias last")


_LOCK = threading.RLock()
# The conv-order trial runs PatchConv2d, which itself asks these capabilities for its order: nn.layers
# hands the trial in when it is imported (the nn package imports it first), so this module imports no layer.
_CONV_ORDER_TRIAL: list = [None]


def set_conv_order_trial(trial) -> None:
    """Register ``trial(device_type, channels) -> ConvOrder``, the probe of the convolution's summation order."""
    _CONV_ORDER_TRIAL[0] = trial
_CACHE: dict[tuple, Capabilities] = {}
_FORCED: list[frozenset[str]] = []


def cpu_isa() -> str:
    """The instruction set ATen dispatches to (``"AVX512"``, ``"AVX2"``, ``"DEFAULT"``, ...) and AMX if oneDNN
    may use it; honours ``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA``."""
    getter = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    isa = str(getter()) if getter is not None else "unknown"
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if _cpu_flag("amx_bf16") and isa.startswith("AVX512") and (not limit or "AMX" in limit or limit == "ALL"):
        isa += "+AMX"
    return isa


def _cpu_flag(name: str) -> bool:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return name in line.split()
    except OSError:
        pass
    return False


def _disabled() -> frozenset[str]:
    if os.environ.get(PORTABLE_ENV, "") not in ("", "0"):
        return frozenset(PROBES)
    names = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
    unknown = names - set(PROBES)
    if unknown:
        raise ValueError(f"{DISABLE_ENV}: unknown probe(s) {sorted(unknown)}; known: {', '.join(PROBES)}")
    return frozenset(names).union(*_FORCED)


def capabilities(device_type: str = "cpu") -> Capabilities:
    """The probed capabilities of ``device_type`` (``"cpu"``, ``"cuda"``, ...), cached.

    The cache key includes oneDNN's on/off switch (``torch.backends.mkldnn.flags``) and the probes
    turned off by the environment or :func:`forced`.
    """
    key = (device_type, bool(torch.backends.mkldnn.enabled), _disabled())
    with _LOCK:
        found = _CACHE.get(key)
        if found is None:
            found = _probe(device_type, key[2])
            _CACHE[key] = found
        return found


def portable(device_type: str = "cpu") -> Capabilities:
    """Standard torch ops only: what every probe turned off gives (and what CUDA runs)."""
    return Capabilities(device_type, isa=cpu_isa() if device_type == "cpu" else "")


@contextlib.contextmanager
def forced(*names: str) -> Iterator[None]:
    """Turn the named probes off (all of them with no names) inside a ``with`` block."""
    unknown = set(names) - set(PROBES)
    if unknown:
        raise ValueError(f"unknown probe(s) {sorted(unknown)}; known: {', '.join(PROBES)}")
    with _LOCK:
        _FORCED.append(frozenset(names or PROBES))
    try:
        yield
    finally:
        with _LOCK:
            _FORCED.pop()


def _probe(device_type: str, disabled: frozenset[str]) -> Capabilities:
    base = portable(device_type)
    if device_type == "meta":  # shapes only (FLOP counting): nothing to compute, nothing to probe
        return base
    onednn = device_type == "cpu" and torch.backends.mkldnn.is_available() and bool(torch.backends.mkldnn.enabled)
    found = {
        "fused_conv_relu": frozenset(d for d in (torch.float32, torch.bfloat16) if onednn and _fused_conv_works(d)),
        "bf16_kernels": onednn and _bf16_kernels(),
        "channels_last": _channels_last_works(device_type),
        "weight_norm_kernel": _weight_norm_works(device_type),
    }
    if not found["bf16_kernels"]:
        found["fused_conv_relu"] = found["fused_conv_relu"] - {torch.bfloat16}
    return replace(base, **{name: value for name, value in found.items() if name not in disabled})


@contextlib.contextmanager
def no_tf32(device_type: str = "cuda") -> Iterator[None]:
    """CUDA float32 as float32: PyTorch lets cuDNN convolutions (and, when a user enables it, matmuls) use
    TF32, a 10-bit mantissa. Nothing to do on other devices."""
    if device_type != "cuda":
        yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                         allow_tf32=False):
            yield
    finally:
        matmul.allow_tf32 = before


def _trial(fn) -> bool:
    """Run a trial; any failure (missing op, unsupported CPU, wrong numbers) means no."""
    try:
        with torch.inference_mode():
            return bool(fn())
    except Exception:  # the point of a trial call: whatever torch raises is a "no"
        return False


def _trial_tensors(device: str, dtype: torch.dtype = torch.float32, channels: int = 32, size: int = 32):
    """A layer-sized trial: PyTorch routes convolutions of tiny maps to other kernels than the networks'."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, channels, size, size, generator=generator).to(device=device, dtype=dtype)
    w = torch.randn(channels, channels, 3, 3, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(channels, generator=generator).to(device=device, dtype=dtype)
    return x, w, b


def _fused_conv_works(dtype: torch.dtype) -> bool:
    op = getattr(torch.ops.mkldnn, "_convolution_pointwise", None)
    if op is None:
        return False

    def trial() -> bool:
        x, w, b = _trial_tensors("cpu", dtype)
        for layout in (torch.contiguous_format, torch.channels_last):
            x, w = x.contiguous(memory_format=layout), w.contiguous(memory_format=layout)
            fused = op(x, w, b, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")
            if not torch.equal(fused, torch.relu(F.conv2d(x, w, b, padding=1))):
                return False
        return True

    return _trial(trial)


def _bf16_kernels() -> bool:
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return check is not None and _trial(check)


def _channels_last_works(device_type: str) -> bool:
    def trial() -> bool:
        x, w, b = _trial_tensors(device_type)
        nchw = F.conv2d(x, w, b, padding=1)
        nhwc = F.conv2d(x.contiguous(memory_format=torch.channels_last),
                        w.contiguous(memory_format=torch.channels_last), b, padding=1)
        return torch.allclose(nchw, nhwc, rtol=1e-4, atol=1e-4)  # float32 rounding of 288-term sums

    return _trial(trial)


def _weight_norm_works(device_type: str) -> bool:
    kernel = getattr(torch, "_weight_norm", None)
    if kernel is None:
        return False

    def trial() -> bool:
        _, v, _ = _trial_tensors(device_type)
        g = torch.rand(v.shape[0], 1, 1, 1, device=v.device) + 0.5
        formula = g * v / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        return torch.allclose(kernel(v, g, 0), formula, rtol=1e-6, atol=1e-7)

    return _trial(trial)
