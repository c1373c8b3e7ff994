"""The deepCR-compatible networks and their inference form.

Modules: :mod:`.networks` (the UNets, whose ``state_dict`` keys match the deepCR model zoo), :mod:`.geometry`
(receptive field, reach, alignment), :mod:`.layers` (inference-only layers), :mod:`.fuse` (building the
inference form), :mod:`.probes` (which kernels beyond standard torch ops work here). Loading, device
placement and tiling live in :mod:`deepcr_dask.models.zoo`, :mod:`deepcr_dask.inference.runner` and
:mod:`deepcr_dask.inference.tiling`.
"""

from __future__ import annotations

from .fuse import KERNELS, fuse_for_inference
from .geometry import pooling_alignment, reach, receptive_field
from .layers import ConcatUp, ConvReLU, MaxPool2x2, PatchConv2d, PointwiseConv2d
from .networks import Architecture, UNet, WeightNormConv2d

__all__ = [
    "KERNELS",
    "Architecture",
    "ConcatUp",
    "ConvReLU",
    "MaxPool2x2",
    "PatchConv2d",
    "PointwiseConv2d",
    "UNet",
    "WeightNormConv2d",
    "fuse_for_inference",
    "pooling_alignment",
    "reach",
    "receptive_field",
]

