"""Dask path: cosmic-ray cleaning of arbitrarily chunked 2-D dask arrays, one model call per block.

``clean_dask`` runs in two passes over the input. The first reads each block once for the whole-image
statistics the models need (the fill background, and the mean and standard deviation of standardising
models), reduces it to a few numbers and drops it; the second, bound to run after the first, overlaps
the blocks by the Cleaner's halo (``boundary="none"``: the networks' own zero padding at the true image
edge, as in whole-image inference) and runs one kernel per block that gives mask, cleaned image and
probability together, as one structured array split lazily into its fields. A worker therefore holds a
block, its halo and its outputs, not the image. Axes with a single chunk get no overlap, so images
smaller than the halo work too.

Each worker builds its Cleaner once (``CleanerPlugin``); threaded and synchronous schedulers share a
process-level cache.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from itertools import accumulate

import dask
import dask.array as da
import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin

from ..errors import InputError
from ..inference import cleaner as cleaner_module
from ..inference.cleaner import get_cleaner
from ..inference.preprocess import BACKGROUND_STRIDE, ImageStats, Region, sky_stats
from ..inference.tiling import Geometry, Span
from ..models.thresholds import resolve_threshold
from ..models.zoo import get_spec
from .graphs import copy_arrays

__all__ = ["CleanerConfig", "CleanerPlugin", "TorchThreadsPlugin", "clean_dask", "ensure_plugin", "gpu_resources",
           "load_count", "worker_cleaner"]

_LAYERS = {"mask": np.dtype(bool), "cleaned": np.dtype(np.float32), "probability": np.dtype(np.float32)}


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
    pipeline: str = "auto"
    shared_batches: bool | None = None  # None: on CUDA

    def build(self):
        options = {k: v for k, v in asdict(self).items() if k not in ("mask", "inpaint", "device")}
        return get_cleaner(self.mask, self.inpaint, self.device, **options)


def load_count() -> int:
    """How many Cleaners this process has built (each loads its networks once)."""
    return cleaner_module.LOAD_COUNT


class TorchThreadsPlugin(WorkerPlugin):
    """Runs torch on the worker's own thread count.

    The nanny pins a worker's native thread pools to one thread (``OMP_NUM_THREADS=1``); a worker with
    ``nthreads`` task threads runs the networks with that many torch threads instead. Concurrent tasks
    take turns on the worker's Cleaner (a whole block per turn on CPUs, a forward pass on GPUs), so they
    share those threads rather than multiplying them. Registered by ``clean_dask`` and ``process_archive``.
    """

    name = "deepcr-dask-torch-threads"

    def setup(self, worker) -> None:
        import torch

        torch.set_num_threads(max(1, worker.state.nthreads))


class CleanerPlugin(TorchThreadsPlugin):
    """Also builds the worker's Cleaner for ``config`` when the worker starts (or joins later)."""

    def __init__(self, config: CleanerConfig):
        self.config = config
        self.name = f"deepcr-dask-{abs(hash(config)):x}"

    def setup(self, worker) -> None:
        super().setup(worker)
        self.config.build()  # process-level cache: a re-registered plugin reuses the loaded Cleaner


def worker_cleaner(config: CleanerConfig):
    """The Cleaner for ``config`` in this process (built on first use if no plugin did it)."""
    return config.build()


def _current_client():
    """The current distributed client, or None (no distributed, or no client made)."""
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def gpu_resources(client=None) -> dict | None:
    """What a model task asks of a GPU worker: ``{"GPU": 1 / threads}``, so each of the worker's threads
    runs one task and their windows share the GPU's batches (:mod:`deepcr_dask.inference.batching`); None when no
    worker of ``client`` (default: the current one) advertises a ``GPU`` resource.
    """
    client = client if client is not None else _current_client()
    if client is None:
        return None
    try:
        info = client.scheduler_info(n_workers=-1)  # every worker (newer distributed lists 5 by default)
    except TypeError:
        info = client.scheduler_info()
    workers = [w for w in info["workers"].values() if "GPU" in (w.get("resources") or {})]
    if not workers:
        return None
    threads = min(max(1, int(w.get("nthreads") or 1)) for w in workers)
    return {"GPU": min(float(w["resources"]["GPU"]) for w in workers) / threads}


def _fuse_off(dask_scheduler=None) -> None:
    dask.config.set({"optimization.fuse.active": False})  # set, not scoped: for this scheduler's lifetime


def _keep_annotations(client=None) -> None:
    """Keep resource annotations through the scheduler's graph optimisation.

    The scheduler materialises and optimises each graph itself, and dask's low-level task fusion drops
    every annotation (dask/dask#7036), so a GPU request would not reach the tasks. Blockwise fusion, which
    keeps them, still runs; the current client's scheduler is told once to skip the low-level pass.
    """
    client = client if client is not None else _current_client()
    if client is not None and not getattr(client, "_deepcr_dask_annotations_kept", False):
        client.run_on_scheduler(_fuse_off)
        client._deepcr_dask_annotations_kept = True


def ensure_plugin(plugin: WorkerPlugin, client=None) -> None:
    """Register ``plugin`` on ``client`` (default: the current distributed client, if there is one), once."""
    client = client if client is not None else _current_client()
    if client is None:
        return  # no distributed client: local schedulers use the process-level cache
    registered = getattr(client, "_deepcr_dask_plugins", set())
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


# -- first pass: whole-image statistics -------------------------------------------------------------
def _moments(block, ignored, scale: float) -> tuple[int, float, float]:
    """Count, mean and sum of squared deviations of a block's valid pixels (image units / scale), float64."""
    values = np.asarray(block, np.float64)[~np.asarray(ignored, bool)] / scale
    if values.size == 0:
        return 0, 0.0, 0.0
    mean = float(values.mean())
    return int(values.size), mean, float(((values - mean) ** 2).sum())


def _assemble_stats(sample, sample_ignored, moments, standardize: bool, scale: float = 1.0,
                    sky: float | None = None) -> ImageStats:
    """:class:`ImageStats` as :func:`deepcr_dask.inference.preprocess.image_stats` defines them: the background is
    the median of the same strided sample; mean and variance combine the blocks' moments (Chan et al.)."""
    sample = np.asarray(sample)[~np.asarray(sample_ignored)]
    background = float(np.median(sample)) if sample.size else 0.0
    if sky is not None:
        return sky_stats(background, scale, sky)
    if not standardize:
        return ImageStats(background=background)
    count, mean, m2 = 0, 0.0, 0.0
    for n, block_mean, block_m2 in moments:
        if n:
            total = count + n
            delta = block_mean - mean
            mean += delta * n / total
            m2 += block_m2 + delta * delta * count * n / total
            count = total
    if not count:
        return ImageStats(background=background)
    std = float(np.sqrt(m2 / count))
    return ImageStats(mean, std if std > 0 else 1.0, background)


def _statistics(image: da.Array, ignored: da.Array, scale: float, standardize: bool, sky: float | None = None):
    """A delayed :class:`ImageStats`: one small task per block (its moments and its strided sample)."""
    s = slice(None, None, BACKGROUND_STRIDE)
    moments = []
    if standardize and sky is None:
        blocks, flags = image.to_delayed().ravel(), ignored.to_delayed().ravel()
        moments = [dask.delayed(_moments, pure=True)(b, f, scale) for b, f in zip(blocks, flags)]
    return dask.delayed(_assemble_stats, pure=True)(image[s, s], ignored[s, s], moments, standardize, scale, sky)


# -- second pass: one kernel call per block ------------------------------------------------------------
def _starts(sizes: tuple[int, ...]) -> list[int]:
    return [0, *accumulate(sizes)][:-1]


def _kernel(block, *ignored, stats, config, layers, threshold, want, image_shape, block_chunks, depth,
            block_info=None):
    """Clean one overlapped block; its core's outputs as one structured array (one field per layer)."""
    location = block_info[0]["chunk-location"]
    spans = []
    for axis in range(2):
        sizes, k = block_chunks[axis], location[axis]
        start = _starts(sizes)[k]
        core = Span(start, start + sizes[k])
        held = Span(core.start - (depth[axis] if k > 0 else 0), core.stop + (depth[axis] if k < len(sizes) - 1 else 0))
        spans.append((core, held))
    data = np.asarray(block, dtype=np.float32)
    ignore = ~np.isfinite(data)
    if ignored:
        ignore |= np.asarray(ignored[0], dtype=bool)
    held_shape = (spans[0][1].size, spans[1][1].size)
    if data.shape != held_shape:
        raise RuntimeError(f"block {location}: expected overlapped shape {held_shape}, got {data.shape}")
    out = worker_cleaner(config).run_region(Region(data, ignore, spans[0][1], spans[1][1]), image_shape, stats,
                                            want=want, threshold=threshold, core=(spans[0][0], spans[1][0]))
    result = np.empty(out["mask"].shape, np.dtype([(name, _LAYERS[name]) for name in layers]))
    for name in layers:
        result[name] = out[name]
    return result


def clean_dask(
    image,
    *,
    mask: str = "ACS-WFC",
    inpaint: str | None = None,
    threshold: float | None = None,
    return_probability: bool = False,
    ignore=None,
    inpaint_pixels: bool = True,
    device: str = "auto",
    tile: int = 512,
    batch_size: int | None = None,
    precision: str = "float32",
    kernels: str = "reference",
    fpr: float | None = None,
    resources: dict | str | None = "auto",
    pipeline: str = "auto",
    shared_batches: bool | None = None,
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
    threshold : float, optional
        Probability threshold; the mask model's default when None, as in the Cleaner and the archive.
    return_probability : bool
        Also return the probability image.
    ignore : 2-D bool array, optional
        Known bad pixels (never flagged, never used for filling, returned unchanged).
    inpaint_pixels : bool
        Replace flagged pixels in ``cleaned`` (True), or return the image unchanged.
    device, tile, batch_size, precision, kernels
        Passed to the worker's :class:`deepcr_dask.Cleaner`.
    fpr : float, optional
        Instead of ``threshold``: a false-positive rate whose threshold the mask model records.
    resources : dict, "auto" or None
        Worker resources the cleaning tasks ask for (reading, overlapping and statistics never ask):
        ``"auto"`` (default) asks for a share of a ``GPU`` where the current client's workers advertise
        one (:func:`gpu_resources`), nothing otherwise.
    pipeline, shared_batches
        The worker Cleaner's path (``"auto"``: the device path on CUDA) and whether its tasks share forward
        passes (default: on CUDA); see :class:`deepcr_dask.Cleaner` and
        :func:`deepcr_dask.inference.cleaner.get_cleaner`.

    Returns
    -------
    mask : dask array of bool
    cleaned : dask array of float32
    probability : dask array of float32, only with ``return_probability=True``

    Notes
    -----
    The input is read twice, once for the statistics and once for cleaning, so that no worker has to
    hold the whole image; the second pass starts when the statistics are known.
    """
    image = image if isinstance(image, da.Array) else da.from_array(np.asarray(image))
    if image.ndim != 2:
        raise InputError(f"clean_dask: expected a 2-D image, got shape {image.shape}")
    if image.dtype.kind not in "fiu":
        raise InputError(f"clean_dask: expected real numbers, got dtype {image.dtype}")
    config = CleanerConfig(mask, inpaint, device, tile, batch_size, precision, kernels, pipeline, shared_batches)
    margin = Geometry.for_models(mask, inpaint).margin(inpaint=inpaint_pixels)
    spec = get_spec(str(mask), "mask")
    threshold = resolve_threshold(spec, threshold, fpr)

    original_chunks = image.chunks
    merged = tuple(_merge_small_chunks(c, margin) for c in image.chunks)
    depth = {axis: margin if len(merged[axis]) > 1 else 0 for axis in range(2)}  # single chunk: no overlap
    if ignore is not None:
        ignore = ignore if isinstance(ignore, da.Array) else da.from_array(np.asarray(ignore, dtype=bool))
        if ignore.shape != image.shape:
            raise InputError(f"clean_dask: ignore shape {ignore.shape} differs from image shape {image.shape}")
        ignore = ignore.astype(bool)
    sources = [image] if ignore is None else [image, ignore]

    # First pass on a copy of the input's graph: read, reduce, release.
    token = dask.base.tokenize(*sources, spec.scale, spec.normalize, spec.sky)
    first = [x.rechunk(merged) for x in copy_arrays(sources, ("statistics", token))]
    first_ignored = ~da.isfinite(first[0]) if ignore is None else (~da.isfinite(first[0]) | first[1])
    stats = _statistics(first[0], first_ignored, spec.scale, spec.normalize == "standardize",
                        spec.sky if spec.normalize == "sky" else None)
    # Second pass: the input read again, each read waiting for the statistics.
    work = [x.rechunk(merged) for x in copy_arrays(sources, ("cleaning", token), after=stats)]
    overlapped = [da.overlap.overlap(x, depth=depth, boundary="none", allow_rechunk=False) for x in work]

    layers = ("mask", "cleaned", "probability") if return_probability else ("mask", "cleaned")
    dtype = np.dtype([(name, _LAYERS[name]) for name in layers])
    ensure_plugin(CleanerPlugin(config))
    resources = gpu_resources() if resources == "auto" else resources
    if resources:
        _keep_annotations()
    with dask.annotate(resources=resources) if resources else contextlib.nullcontext():
        result = da.map_blocks(
            _kernel, *overlapped, stats=stats, config=config, layers=layers, threshold=threshold,
            want="clean" if inpaint_pixels else "mask", image_shape=image.shape, block_chunks=merged, depth=depth,
            chunks=merged, dtype=dtype, meta=np.empty((0, 0), dtype), token="deepcr-clean",
        )
    outputs = [result[name] for name in layers]
    if merged != original_chunks:
        outputs = [out.rechunk(original_chunks) for out in outputs]
    return tuple(outputs)
