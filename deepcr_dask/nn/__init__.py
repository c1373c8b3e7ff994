"""UNet networks whose ``state_dict`` keys match the deepCR model zoo.

deepCR's networks are small UNets: a block is (3x3 conv, norm, ReLU) x 2; going down is
``MaxPool2d(2)`` then a block; going up is a stride-2 transposed conv that halves the channels,
concatenated as ``[skip, up]`` and followed by a block; the head is a 1x1 conv (with a sigmoid for
mask networks). Two normalisations exist: BatchNorm (``ACS-WFC``, ``decam``, the inpaint models) and
weight norm (``WFC3-UVIS``). The attribute names below reproduce deepCR's so that its checkpoints load
unchanged (after stripping the ``module.`` prefix its ``DataParallel`` wrapper added).

The modules hold only the network. Folding normalisation into the convolutions for inference,
device placement and tiling live in :mod:`deepcr_dask.zoo` and :mod:`deepcr_dask.cleaner`.

Modules: :mod:`.networks` (the deepCR-compatible UNets), :mod:`.geometry` (receptive field, reach,
alignment), :mod:`.layers` (inference-only layers), :mod:`.fuse` (building the inference form).
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

