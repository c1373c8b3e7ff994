"""Dask path: cosmic-ray cleaning of arbitrarily chunked 2-D dask arrays, one model call per block.

``clean_dask`` overlaps the blocks by the Cleaner's halo (``boundary="none"``: the networks' own
zero padding at the true image edge, as in whole-image inference), runs one kernel per block that
produces mask, cleaned image and probability together, and crops each block back to its core. Each
worker builds its Cleaner once (``CleanerPlugin``); threaded and synchronous schedulers share a
process-level cache.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import accumulate

import dask
import dask.array as da
import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin

from . import cleaner as cleaner_module
from .cleaner import BACKGROUND_STRIDE, Geometry, ImageStats, Region, get_cleaner
from .errors import InputError
from .tiling import Span
from .zoo import get_spec

__all__ = ["CleanerConfig", "CleanerPlugin", "clean_dask", "load_count", "worker_cleaner"]

_LAYERS = ("mask", "cleaned", "probability")


@dataclass(frozen=True)
class CleanerConfig:
    """Hashable description of a Cleaner; workers build one per config, once."""

    mask: str = "ACS-WFC"
    inpaint: str | None = None
    device: str = "auto"
    tile: int = 512
    batch_size: int | None = None
    precision: str = "float32"
    kernels: str = "reference"

    def build(self):
        options = {k: v for k, v in asdict(self).items() if k not in ("mask", "inpaint", "device")}
        return get_cleaner(self.mask, self.inpaint, self.device, **options)


def load_count() -> int:
    """How many Cleaners this process has built (each loads its networks once)."""
    return cleaner_module.LOAD_COUNT


class CleanerPlugin(WorkerPlugin):
    """Builds the worker's Cleaner when the worker starts (or joins later), and sets torch threads.

    The nanny pins a worker's native thread pools to one thread; a worker with ``nthreads`` task
    threads runs the network with that many torch threads instead. Concurrent tasks take turns on
    the worker's Cleaner (a whole block per turn on CPUs, a forward pass on GPUs), so they share
    those threads rather than multiplying them.
    """

    def __init__(self, config: CleanerConfig):
        self.config = config
        self.name = f"deepcr-dask-{abs(hash(config)):x}"

    def setup(self, worker) -> None:
        import torch

        torch.set_num_threads(max(1, worker.state.nthreads))
        self.config.build()  # process-level cache: a re-registered plugin reuses the loaded Cleaner


def worker_cleaner(config: CleanerConfig):
    """The Cleaner for ``config`` in this process (built on first use if no plugin did it)."""
    return config.build()


def ensure_plugin(config: CleanerConfig) -> None:
    """Register the Cleaner plugin on the current distributed client, if there is one."""
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        return  # no distributed client: local schedulers use the process-level cache
    registered = getattr(client, "_deepcr_dask_plugins", set())
    plugin = CleanerPlugin(config)
    if plugin.name not in registered:
        client.register_plugin(plugin, name=plugin.name)
        registered.add(plugin.name)
        client._deepcr_dask_plugins = registered


def _merge_small_chunks(chunks: tuple[int, ...], minimum: int) -> tuple[int, ...]:
    """Merge neighbouring chunks until each is at least ``minimum`` (the overlap needs it)."""
    merged: list[int] = []
    for size in chunks:
        if merged and merged[-1] < minimum:
            merged[-1] += size
        else:
            merged.append(size)
    if len(merged) > 1 and merged[-1] < minimum:
        last = merged.pop()
        merged[-1] += last
    return tuple(merged)


def _stats(image: da.Array, ignored: da.Array, scale: float, standardize: bool):
    """Lazy whole-image statistics, defined exactly as :func:`deepcr_dask.cleaner.image_stats`."""
    s = slice(None, None, BACKGROUND_STRIDE)

    @dask.delayed(pure=True)
    def assemble(sample, sample_ignored, total, count, squares):
        sample = np.asarray(sample)[~np.asarray(sample_ignored)]
        background = float(np.median(sample)) if sample.size else 0.0
        if not standardize or not count:
            return ImageStats(background=background)
        mean = float(total) / float(count)
        std = float(np.sqrt(float(squares) / float(count)))
        return ImageStats(mean, std if std > 0 else 1.0, background)

    if standardize:
        valid = ~ignored
        scaled = da.where(valid, image.astype(np.float64) / scale, 0.0)
        count = valid.sum()
        total = scaled.sum()
        mean = total / da.maximum(count, 1)
        squares = da.where(valid, (scaled - mean) ** 2, 0.0).sum()
    else:
        count = total = squares = 0
    return assemble(image[s, s], ignored[s, s], total, count, squares)


def _kernel(block, ignored, *, stats, config, layers, threshold, want, image_shape, block_chunks, depth,
            block_info=None):
    """Clean one overlapped block and return its core as a stacked float32 array (layers, h, w)."""
    chunks = block_chunks
    i, j = block_info[0]["chunk-location"]
    cores = [
        Span(starts[k], starts[k] + sizes[k])
        for starts, sizes, k in ((_starts(chunks[0]), chunks[0], i), (_starts(chunks[1]), chunks[1], j))
    ]
    rows = Span(cores[0].start - (depth if i > 0 else 0), cores[0].stop + (depth if i < len(chunks[0]) - 1 else 0))
    cols = Span(cores[1].start - (depth if j > 0 else 0), cores[1].stop + (depth if j < len(chunks[1]) - 1 else 0))
    data = np.asarray(block, dtype=np.float32)
    ignore = ~np.isfinite(data)
    if ignored is not None:
        ignore |= np.asarray(ignored, dtype=bool)
    if data.shape != (rows.size, cols.size):
        raise RuntimeError(f"block {i, j}: expected overlapped shape {(rows.size, cols.size)}, got {data.shape}")
    cleaner = worker_cleaner(config)
    out = cleaner.run_region(Region(data, ignore, rows, cols), image_shape, stats, want=want,
                             threshold=threshold, core=(cores[0], cores[1]))
    return np.stack([out[name].astype(np.float32, copy=False) for name in layers])


def _starts(sizes: tuple[int, ...]) -> list[int]:
    return [0, *accumulate(sizes)][:-1]


def clean_dask(
    image,
    *,
    mask: str = "ACS-WFC",
    inpaint: str | None = None,
    threshold: float = 0.5,
    return_probability: bool = False,
    ignore=None,
    inpaint_pixels: bool = True,
    device: str = "auto",
    tile: int = 512,
    batch_size: int | None = None,
    precision: str = "float32",
    kernels: str = "reference",
):
    """Lazy cosmic-ray mask and cleaned image of a 2-D dask array.

    Results equal ``Cleaner(mask, inpaint).clean(image.compute())`` for any chunking: each block is
    overlapped by the Cleaner's halo, processed on windows aligned to the networks' pooling grid in
    whole-image coordinates, and cropped back to its core.

    Parameters
    ----------
    image : dask.array.Array or array-like
        2-D image in the mask model's units. Chunks smaller than the halo are merged first; outputs
        come back in the input's chunking.
    mask, inpaint : str
        Model names or weight paths (see :class:`deepcr_dask.Cleaner`).
    threshold : float
        Probability threshold.
    return_probability : bool
        Also return the probability image.
    ignore : 2-D bool array, optional
        Known bad pixels (never flagged, never used for filling, returned unchanged).
    inpaint_pixels : bool
        Replace flagged pixels in ``cleaned`` (True), or return the image unchanged.
    device, tile, batch_size, precision, kernels
        Passed to the worker's :class:`deepcr_dask.Cleaner`.

    Returns
    -------
    mask : dask array of bool
    cleaned : dask array of float32
    probability : dask array of float32, only with ``return_probability=True``
    """
    image = image if isinstance(image, da.Array) else da.from_array(np.asarray(image))
    if image.ndim != 2:
        raise InputError(f"clean_dask: expected a 2-D image, got shape {image.shape}")
    if image.dtype.kind not in "fiu":
        raise InputError(f"clean_dask: expected real numbers, got dtype {image.dtype}")
    config = CleanerConfig(mask, inpaint, device, tile, batch_size, precision, kernels)
    geometry = Geometry.for_models(mask, inpaint)
    depth = geometry.margin(inpaint=inpaint_pixels)
    spec = get_spec(str(mask), "mask")

    original_chunks = image.chunks
    work = image.rechunk(tuple(_merge_small_chunks(c, depth) for c in image.chunks))
    if ignore is not None:
        ignore = ignore if isinstance(ignore, da.Array) else da.from_array(np.asarray(ignore, dtype=bool))
        if ignore.shape != image.shape:
            raise InputError(f"clean_dask: ignore shape {ignore.shape} differs from image shape {image.shape}")
        ignore = ignore.astype(bool).rechunk(work.chunks)
    ignored = ~da.isfinite(work) if ignore is None else (~da.isfinite(work) | ignore)
    stats = _stats(work, ignored, spec.scale, spec.normalize == "standardize")

    overlapped = da.overlap.overlap(work, depth=depth, boundary="none", allow_rechunk=False)
    ignore_overlapped = (
        da.overlap.overlap(ignore, depth=depth, boundary="none", allow_rechunk=False) if ignore is not None else None
    )
    layers = _LAYERS if return_probability else _LAYERS[:2]
    want = "clean" if inpaint_pixels else "mask"
    ensure_plugin(config)
    stacked = _map(overlapped, ignore_overlapped, stats, config, layers, threshold, want, image.shape,
                   work.chunks, depth)
    outputs = []
    for index, name in enumerate(layers):
        layer = stacked[index]
        layer = layer.astype(bool) if name == "mask" else layer
        outputs.append(layer.rechunk(original_chunks) if work.chunks != original_chunks else layer)
    return tuple(outputs)


def _map(overlapped, ignore_overlapped, stats, config, layers, threshold, want, image_shape, chunks, depth):
    args = [overlapped] if ignore_overlapped is None else [overlapped, ignore_overlapped]

    def kernel(block, *rest, block_info=None, **kwargs):
        ignored = rest[0] if rest else None
        return _kernel(block, ignored, block_info=block_info, **kwargs)

    return da.map_blocks(
        kernel,
        *args,
        stats=stats,
        config=config,
        layers=layers,
        threshold=threshold,
        want=want,
        image_shape=image_shape,
        block_chunks=chunks,
        depth=depth,
        chunks=((len(layers),), *chunks),
        new_axis=[0],
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
        token="deepcr-clean",
    )
