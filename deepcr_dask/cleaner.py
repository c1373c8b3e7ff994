"""The Cleaner: cosmic-ray probability, mask and inpainting on numpy images, tiled without seams.

Pixel path, for one tile core ``C`` (global padded coordinates, see :mod:`deepcr_dask.tiling`):

1. raw pixels of ``M ± fill`` -> ignored pixels (NaN/inf/``ignore``) filled by a local median
   -> divided by the model's scale (and standardised) -> zero-padded like deepCR;
2. mask network on the aligned window ``M`` -> probability, exact on ``I = M - reach_mask``;
3. inpaint network on the aligned window ``I`` (or a local median) -> cleaned pixels, exact on ``C``.

Every step is local with a known reach, so ``Cleaner.halo`` (their sum plus pooling alignment) is all
the margin a tile, or a Dask block, needs to reproduce whole-image output.
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .allocator import keep_large_blocks_in_heap
from .devices import float32_proper, resolve_device, resolve_kernels, resolve_precision
from .errors import InputError
from .fill import fill_support, median_fill
from .tiling import Frame, Span, aligned_window, tiles
from .zoo import LoadedModel, load_model, network_geometry

__all__ = ["Cleaner", "Geometry", "ImageStats", "Region", "get_cleaner", "prepare_image"]

DEEPCR_PAD_MULTIPLE = 4  # deepCR zero-pads top/left to a multiple of 4 before whole-image inference
BACKGROUND_STRIDE = 4  # the fill background is the median of every 4th valid pixel in each direction
LOAD_COUNT = 0  # Cleaners built in this process (each loads its networks once)


@dataclass(frozen=True)
class Geometry:
    """How much margin and which grid tiled inference needs for a mask (+ inpaint) model pair."""

    mask_reach: int  # margin the mask network needs on each side (nn.reach)
    inpaint_net_reach: int | None  # the inpaint network's; None: median inpainting
    alignment: int
    fill_reach: int

    @property
    def pad_multiple(self) -> int:
        return math.lcm(DEEPCR_PAD_MULTIPLE, self.alignment)

    @property
    def inpaint_reach(self) -> int:
        """Margin the inpainting step adds around a core (aligned window or median support)."""
        if self.inpaint_net_reach is None:
            return fill_support()
        return self.inpaint_net_reach + self.alignment - 1

    def margin(self, inpaint: bool = True) -> int:
        """Raw-pixel margin a core needs: fill reach + mask halo (+ inpaint reach), each aligned."""
        margin = self.fill_reach + self.mask_reach + self.alignment - 1
        return margin + self.inpaint_reach if inpaint else margin

    @classmethod
    def for_models(cls, mask: str, inpaint: str | None) -> Geometry:
        """Geometry from the architectures alone: no weights are read."""
        mask_reach, mask_align = network_geometry(mask, "mask")
        inpaint_reach, inpaint_align = network_geometry(inpaint, "inpaint") if inpaint else (None, 1)
        return cls(mask_reach, inpaint_reach, math.lcm(mask_align, inpaint_align), fill_support())


@dataclass(frozen=True)
class ImageStats:
    """Whole-image numbers a tile cannot compute on its own."""

    mean: float = 0.0  # of valid pixels (image units / scale), for standardising models
    std: float = 1.0
    background: float = 0.0  # median of valid pixels (image units): fill for unreachable ignored pixels


@dataclass
class Region:
    """Pixels of one image held in memory: the whole image, or a Dask block with its overlap.

    ``rows`` and ``cols`` give the region's position in image pixel coordinates.
    """

    data: np.ndarray  # float32, image units, NaN where invalid
    ignored: np.ndarray  # bool
    rows: Span
    cols: Span


def prepare_image(image, ignore=None, *, name: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Validate a 2-D image and return ``(float32 native-endian copy, ignored mask)``.

    NaN and inf pixels are ignored, as are ``ignore`` pixels.
    """
    array = np.asarray(image)
    if array.ndim != 2:
        raise InputError(f"{name}: expected a 2-D image, got an array of shape {array.shape}")
    if array.size == 0:
        raise InputError(f"{name}: image is empty (shape {array.shape})")
    if array.dtype.kind not in "fiu":
        raise InputError(f"{name}: expected real numbers, got dtype {array.dtype}")
    data = array.astype(np.float32)  # also converts big-endian FITS data to native order
    ignored = ~np.isfinite(data)
    if ignore is not None:
        ignore = np.asarray(ignore)
        if ignore.shape != data.shape:
            raise InputError(f"{name}: ignore mask shape {ignore.shape} differs from image shape {data.shape}")
        ignored |= ignore.astype(bool)
    return data, ignored


def image_stats(data: np.ndarray, ignored: np.ndarray, scale: float, standardize: bool) -> ImageStats:
    """Whole-image statistics of the valid pixels (float64 sums).

    The background is the median of a strided subsample, so the Dask path reproduces it exactly
    by computing the same small array.
    """
    s = slice(None, None, BACKGROUND_STRIDE)
    sample = data[s, s][~ignored[s, s]]
    background = float(np.median(sample)) if sample.size else 0.0
    if not standardize:
        return ImageStats(background=background)
    valid = data[~ignored]
    if valid.size == 0:
        return ImageStats(background=background)
    scaled = valid.astype(np.float64) / scale
    std = float(scaled.std())
    return ImageStats(float(scaled.mean()), std if std > 0 else 1.0, background)


class Cleaner:
    """Detect and remove cosmic rays with a deepCR-style mask network and optional inpaint network.

    Parameters
    ----------
    mask : str
        Mask model name (see :func:`deepcr_dask.list_models`) or a path to weights.
    inpaint : str, optional
        Inpaint model name or path; ``None`` inpaints with a local 5x5 median of good pixels.
    device : {"auto", "cpu", "cuda", "cuda:N"}
    tile : int
        Core tile size in pixels; memory use grows with ``(tile + 2 halo)**2 * batch_size``, not with
        the image.
    batch_size : int, optional
        Tiles per forward pass (1 on CPU, 8 on GPU by default).
    precision : {"float32", "bfloat16", "float16"}
        Network arithmetic: bfloat16 on CPUs and CUDA, float16 on CUDA only.
    kernels : {"reference", "fast"}
        ``"reference"`` (default): the arithmetic deepCR runs (NCHW convolutions, BatchNorm after each),
        within 1e-5 of deepCR's probabilities on every CPU family; ``"fast"``: BatchNorm folded and
        channels-last convolutions, 1.1-1.5x faster on CPUs, up to ~2.1e-5 from deepCR on real frames.
        Both are independent of the tiling and the thread count. ``"fast"`` falls back to
        ``"reference"`` where channels-last convolutions do not work (probe ``channels_last``).

    Attributes
    ----------
    halo : int
        Margin (px) around a tile or block that makes its output identical to whole-image output.
    """

    def __init__(
        self,
        mask: str = "ACS-WFC",
        inpaint: str | None = None,
        device: str = "auto",
        *,
        tile: int = 512,
        batch_size: int | None = None,
        precision: str = "float32",
        kernels: str = "reference",
    ):
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.kernels = resolve_kernels(kernels, self.device)
        self.mask_model: LoadedModel = load_model(mask, "mask", self.kernels)
        self.inpaint_model: LoadedModel | None = load_model(inpaint, "inpaint", self.kernels) if inpaint else None
        if self.device.type == "cpu":
            keep_large_blocks_in_heap()  # activations reuse heap pages instead of fresh mmaps (1.5x)
        self.batch_size = batch_size or (8 if self.device.type == "cuda" else 1)
        models = [m for m in (self.mask_model, self.inpaint_model) if m is not None]
        for model in models:
            # The networks compute in self.dtype throughout (what autocast would do for these layers,
            # without needing autocast to know the inference-only ones).
            model.network.to(device=self.device, dtype=self.dtype)
        self.geometry = Geometry(
            self.mask_model.reach,
            self.inpaint_model.reach if self.inpaint_model else None,
            math.lcm(*(m.alignment for m in models)),
            fill_support(),
        )
        self.alignment = self.geometry.alignment
        self.pad_multiple = self.geometry.pad_multiple
        self.fill_reach = self.geometry.fill_reach
        self.tile = max(1, int(tile))  # cores need no alignment: windows are aligned around them
        self.halo = self.geometry.margin(inpaint=True)
        # Tasks sharing this Cleaner (a worker with several threads) take turns. On a CPU a whole region
        # is one turn: a task's numpy steps running beside another task's torch thread pool would
        # oversubscribe the cores. On a GPU only the forward pass is a turn, so one task's CPU steps
        # overlap another's network.
        self._turn = threading.RLock()
        global LOAD_COUNT
        LOAD_COUNT += 1

    # -- public API -----------------------------------------------------------------------------
    @property
    def scale(self) -> float:
        return self.mask_model.spec.scale

    def stats(self, data: np.ndarray, ignored: np.ndarray) -> ImageStats:
        """Whole-image statistics this Cleaner's models need."""
        return image_stats(data, ignored, self.scale, self.mask_model.spec.normalize == "standardize")

    def probability(self, image, ignore=None) -> np.ndarray:
        """Per-pixel cosmic-ray probability in [0, 1] (0 at ignored pixels), float32, same shape."""
        return self._whole(image, ignore, want="probability")["probability"]

    def clean(self, image, threshold: float = 0.5, inpaint: bool = True, ignore=None) -> tuple[np.ndarray, np.ndarray]:
        """Cosmic-ray mask and cleaned image.

        Parameters
        ----------
        image : 2-D array in the units the mask model expects (any real dtype, any byte order)
        threshold : float
            Probability above which a pixel is a cosmic ray.
        inpaint : bool
            Replace flagged pixels (with the inpaint network, or a local median when there is none);
            if False the image is returned unchanged (as float32).
        ignore : 2-D bool array, optional
            Pixels known bad: never flagged, never used to fill others, returned unchanged.

        Returns
        -------
        mask : bool array
        cleaned : float32 array
        """
        out = self._whole(image, ignore, want="clean" if inpaint else "mask", threshold=threshold)
        return out["mask"], out["cleaned"]

    def run(self, image, threshold: float = 0.5, ignore=None) -> dict[str, np.ndarray]:
        """Mask, cleaned image and probability from one pass: ``{"mask", "cleaned", "probability"}``."""
        return self._whole(image, ignore, want="clean", threshold=threshold)

    def inpaint(self, image, mask, ignore=None) -> np.ndarray:
        """Replace the pixels of ``mask`` (inpaint network, or local median), float32."""
        data, ignored = prepare_image(image, ignore)
        given = np.asarray(mask)
        if given.shape != data.shape:
            raise InputError(f"mask shape {given.shape} differs from image shape {data.shape}")
        region = Region(data, ignored, Span(0, data.shape[0]), Span(0, data.shape[1]))
        out = self.run_region(region, data.shape, self.stats(data, ignored), want="inpaint",
                              given_mask=given.astype(bool))
        return out["cleaned"]

    # -- region processing (shared by the in-memory and Dask paths) ---------------------------------
    def _whole(self, image, ignore, *, want: str, threshold: float = 0.5) -> dict[str, np.ndarray]:
        data, ignored = prepare_image(image, ignore)
        region = Region(data, ignored, Span(0, data.shape[0]), Span(0, data.shape[1]))
        return self.run_region(region, data.shape, self.stats(data, ignored), want=want, threshold=threshold)

    def run_region(
        self,
        region: Region,
        image_shape: tuple[int, int],
        stats: ImageStats,
        *,
        want: str = "clean",
        threshold: float = 0.5,
        core: tuple[Span, Span] | None = None,
        given_mask: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Outputs for ``core`` (image coordinates; the whole region by default).

        ``want`` is ``"probability"``, ``"mask"`` (mask and probability), ``"clean"`` (mask, probability
        and cleaned image) or ``"inpaint"`` (cleaned image for ``given_mask``, which covers the region).
        The region must hold ``self.halo`` pixels around the core, or reach the image edge.
        """
        with self._turn if self.device.type == "cpu" else contextlib.nullcontext():
            return self._run_region(region, image_shape, stats, want, threshold, core, given_mask)

    def _run_region(self, region, image_shape, stats, want, threshold, core, given_mask) -> dict[str, np.ndarray]:
        frames = (Frame(image_shape[0], self.pad_multiple), Frame(image_shape[1], self.pad_multiple))
        core = core or (region.rows, region.cols)
        gcore = (core[0].shift(frames[0].pad), core[1].shift(frames[1].pad))
        shape = (core[0].size, core[1].size)
        out: dict[str, np.ndarray] = {}
        if want != "inpaint":
            out["probability"] = np.zeros(shape, np.float32)
            out["mask"] = np.zeros(shape, bool)
        if want in ("clean", "inpaint"):
            out["cleaned"] = np.empty(shape, np.float32)
        elif want == "mask":
            out["cleaned"] = region.data[self._local(region, frames, gcore)].copy()

        jobs = [(r, c) for r in tiles(gcore[0], self.tile) for c in tiles(gcore[1], self.tile)]
        for start in range(0, len(jobs), self.batch_size):
            self._run_tiles(region, frames, stats, jobs[start:start + self.batch_size], gcore, out,
                            want, threshold, given_mask)
        return out

    def _run_tiles(self, region, frames, stats, jobs, gcore, out, want, threshold, given_mask) -> None:
        cleaning = want in ("clean", "inpaint")
        net_inpaint = cleaning and self.inpaint_model is not None
        # Window each tile's pixels are cleaned from (I), and the mask network's window around it (M).
        if net_inpaint:
            inner = [tuple(aligned_window(s, self.inpaint_model.reach, self.alignment, f)
                           for s, f in zip(job, frames)) for job in jobs]
        elif cleaning:
            inner = [tuple(s.grow(self.geometry.inpaint_reach, f.image) for s, f in zip(job, frames)) for job in jobs]
        else:
            inner = list(jobs)

        if want == "inpaint":
            masks = [self._given(region, frames, win, given_mask) for win in inner]
        else:
            outer = [tuple(aligned_window(s, self.mask_model.reach, self.alignment, f)
                           for s, f in zip(win, frames)) for win in inner]
            inputs = [self._network_input(region, frames, stats, win) for win in outer]
            probs = self._forward(self.mask_model, [x[None] for x, _ in inputs])
            masks = []
            for prob, (_, ignored), win, owin, job in zip(probs, inputs, inner, outer, jobs):
                prob[ignored] = 0.0
                prob = prob[_crop(win, owin)]
                mask = prob > threshold
                masks.append(mask)
                dst = _crop(job, gcore)
                out["probability"][dst] = prob[_crop(job, win)]
                out["mask"][dst] = mask[_crop(job, win)]
        if not cleaning:
            return

        if net_inpaint:
            inputs = [self._network_input(region, frames, stats, win) for win in inner]
            stacks = []
            for (x, _), mask in zip(inputs, masks):
                m = mask.astype(np.float32)
                stacks.append(np.stack([x * (1 - m), m]))
            predictions = self._forward(self.inpaint_model, stacks)
        for i, (win, job, mask) in enumerate(zip(inner, jobs, masks)):
            raw, ignored = self._raw(region, frames, win)
            mask = mask[self._image_part(frames, win)] & ~ignored
            if net_inpaint:
                pred = predictions[i][self._image_part(frames, win)]
                pred = self._denormalize(pred, stats)
                cleaned = np.where(mask, pred, raw)
            else:
                cleaned = median_fill(raw, mask, ~(mask | ignored), background=stats.background)
            out["cleaned"][_crop(job, gcore)] = cleaned[_crop(job, _image_span(win, frames))]

    # -- pixels in and out of the networks ----------------------------------------------------------
    @staticmethod
    def _local(region: Region, frames, window) -> tuple[slice, slice]:
        """Slices of ``region`` arrays for the image part of a global window."""
        rows, cols = _image_span(window, frames)
        return (slice(rows.start - frames[0].pad - region.rows.start, rows.stop - frames[0].pad - region.rows.start),
                slice(cols.start - frames[1].pad - region.cols.start, cols.stop - frames[1].pad - region.cols.start))

    def _raw(self, region, frames, window) -> tuple[np.ndarray, np.ndarray]:
        sl = self._local(region, frames, window)
        return region.data[sl], region.ignored[sl]

    @staticmethod
    def _image_part(frames, window) -> tuple[slice, slice]:
        """Slices of a global window that hold image pixels (not top/left zero padding)."""
        return tuple(slice(f.image.start - w.start if w.start < f.image.start else 0, w.size)
                     for w, f in zip(window, frames))

    def _given(self, region, frames, window, given_mask) -> np.ndarray:
        """The caller's mask on a global window (False on the zero padding)."""
        mask = np.zeros((window[0].size, window[1].size), bool)
        mask[self._image_part(frames, window)] = given_mask[self._local(region, frames, window)]
        return mask

    def _network_input(self, region, frames, stats, window) -> tuple[np.ndarray, np.ndarray]:
        """Normalised, ignore-filled, zero-padded input for a global window, and its ignored pixels."""
        reach = tuple(_image_span(window, frames)[i].grow(self.fill_reach, frames[i].image) for i in range(2))
        raw, ignored = self._raw(region, frames, reach)
        if ignored.any():
            raw = median_fill(raw, ignored, background=stats.background)
        inner = _crop(_image_span(window, frames), reach)
        x = np.zeros((window[0].size, window[1].size), np.float32)
        ign = np.zeros_like(x, dtype=bool)
        part = self._image_part(frames, window)
        x[part] = self._normalize(raw[inner], stats)
        ign[part] = ignored[inner]
        return x, ign

    def _normalize(self, raw: np.ndarray, stats: ImageStats) -> np.ndarray:
        spec = self.mask_model.spec
        x = raw / np.float32(spec.scale)
        if spec.normalize == "standardize":
            x = (x - np.float32(stats.mean)) / np.float32(stats.std)
        return x

    def _denormalize(self, x: np.ndarray, stats: ImageStats) -> np.ndarray:
        spec = self.mask_model.spec
        if spec.normalize == "standardize":
            x = x * np.float32(stats.std) + np.float32(stats.mean)
        return x * np.float32(spec.scale)

    def _forward(self, model: LoadedModel, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Run ``model`` on (C, H, W) arrays, batching those of equal shape."""
        results: list[np.ndarray | None] = [None] * len(arrays)
        by_shape: dict[tuple, list[int]] = {}
        for i, a in enumerate(arrays):
            by_shape.setdefault(a.shape, []).append(i)
        with self._turn, torch.inference_mode(), float32_proper(self.device, self.dtype):
            for indices in by_shape.values():
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start:start + self.batch_size]
                    batch = torch.from_numpy(np.stack([arrays[i] for i in chunk]))
                    batch = batch.to(device=self.device, dtype=self.dtype)
                    y = model.network(batch).float().cpu().numpy()
                    for j, i in enumerate(chunk):
                        results[i] = y[j, 0]
        return results


def _image_span(window, frames) -> tuple[Span, Span]:
    """The part of a global window that lies on image pixels."""
    return tuple(Span(max(w.start, f.image.start), w.stop) for w, f in zip(window, frames))


def _crop(inner, outer) -> tuple[slice, slice]:
    """Slices selecting global box ``inner`` from an array covering global box ``outer``."""
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer))


@lru_cache(maxsize=8)
def get_cleaner(mask: str = "ACS-WFC", inpaint: str | None = None, device: str = "auto", **options) -> Cleaner:
    """Process-level cache: one Cleaner per configuration (serves the threaded and sync schedulers)."""
    return Cleaner(mask, inpaint, device, **options)
