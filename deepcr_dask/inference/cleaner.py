"""The Cleaner: cosmic-ray probability, mask and inpainting on numpy images, tiled without seams.

A short facade over three parts, read in this order: :mod:`deepcr_dask.inference.tiling` plans the tiles and their
windows, :mod:`deepcr_dask.inference.preprocess` turns a window's pixels into network input (and back), and
:mod:`deepcr_dask.inference.runner` runs the networks (device, precision, batching, turns). For one tile core ``C``:

1. raw pixels of the mask window ``M`` +- the fill reach -> ignored pixels filled by a local median
   -> divided by the model's scale (and standardised) -> zero-padded like deepCR;
2. mask network on ``M`` -> probability, exact on ``I = M - reach_mask``;
3. inpaint network on the aligned window ``I`` (or a local median) -> cleaned pixels, exact on ``C``.

Every step is local with a known reach, so ``Cleaner.halo`` is all the margin a tile, or a Dask block,
needs to reproduce whole-image output.
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache

import numpy as np

from ..errors import InputError, ModelError
from ..models.thresholds import fpr_thresholds, resolve_threshold
from ..models.zoo import LoadedModel, load_model
from .devices import resolve_kernels
from .fill import fill_support, median_fill
from .preprocess import ImageStats, Region, denormalize, given_mask, image_stats, network_input, prepare_image
from .runner import Runner
from .tiling import Geometry, Span, Tile, TilePlan, crop, image_part, image_span
from .units import ccd_to_electrons, is_ccd

__all__ = ["PIPELINES", "Cleaner", "get_cleaner"]

PIPELINES = ("auto", "host", "device")

LOAD_COUNT = 0  # Cleaners built in this process (each loads its networks once)


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
    pipeline : {"auto", "host", "device"}
        Where the steps around the networks run: ``"host"`` in numpy (one copy to the device per window),
        ``"device"`` in torch on the device (:mod:`deepcr_dask.inference.device_path`: one copy per region each way).
        ``"auto"``: the device path on CUDA, the host path on CPUs. Both give the same results.

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
        pipeline: str = "auto",
    ):
        self.runner = Runner(device, precision, batch_size)
        if pipeline not in PIPELINES:
            raise ModelError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}")
        # The device path keeps a region on the device from fill to compositing; the host path (numpy)
        # is the faster one on CPUs, where there is no copy to save.
        self.pipeline = ("device" if self.runner.device.type == "cuda" else "host") if pipeline == "auto" \
            else pipeline
        self.kernels = resolve_kernels(kernels, self.runner.device)
        self.mask_model: LoadedModel = load_model(mask, "mask", self.kernels)
        self.inpaint_model: LoadedModel | None = load_model(inpaint, "inpaint", self.kernels) if inpaint else None
        models = [m for m in (self.mask_model, self.inpaint_model) if m is not None]
        for model in models:
            self.runner.place(model.network)
        self.geometry = Geometry(
            self.mask_model.reach,
            self.inpaint_model.reach if self.inpaint_model else None,
            math.lcm(*(m.alignment for m in models)),
            fill_support(),
        )
        self.tile = max(1, int(tile))  # cores need no alignment: windows are aligned around them
        self.halo = self.geometry.margin(inpaint=True)
        global LOAD_COUNT
        LOAD_COUNT += 1

    # -- public API -----------------------------------------------------------------------------
    @property
    def device(self):
        return self.runner.device

    @property
    def dtype(self):
        return self.runner.dtype

    @property
    def scale(self) -> float:
        return self.mask_model.spec.scale

    @property
    def _standardize(self) -> bool:
        return self.mask_model.spec.normalize in ("standardize", "sky")

    @property
    def _inpaint_standardize(self) -> bool:
        """The inpaint network's normalisation: a standardised mask model's, as before; never the mask model's
        "sky" shift (no inpaint network was trained on it: it gets the image as it is)."""
        return self.mask_model.spec.normalize == "standardize"

    @property
    def _sky(self) -> float | None:
        """The reference sky (electrons) of a ``"sky"``-normalised mask model, else None."""
        spec = self.mask_model.spec
        return spec.sky if spec.normalize == "sky" else None

    def stats(self, data: np.ndarray, ignored: np.ndarray) -> ImageStats:
        """Whole-image statistics this Cleaner's models need."""
        return image_stats(data, ignored, self.scale, self._standardize, self._sky)

    def probability(self, image, ignore=None) -> np.ndarray:
        """Per-pixel cosmic-ray probability in [0, 1] (0 at ignored pixels), float32, same shape."""
        return self._whole(image, ignore, want="probability")["probability"]

    def clean(self, image, threshold: float | None = None, inpaint: bool = True,
              ignore=None, *, fpr: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Cosmic-ray mask and cleaned image.

        Parameters
        ----------
        image : 2-D array in the units the mask model expects (any real dtype, any byte order)
        threshold : float, optional
            Probability above which a pixel is a cosmic ray; the mask model's default when None (0.5 for
            ACS-WFC and decam, 0.1 for WFC3-UVIS).
        inpaint : bool
            Replace flagged pixels (with the inpaint network, or a local median when there is none);
            if False the image is returned unchanged (as float32).
        ignore : 2-D bool array, optional
            Pixels known bad: never flagged, never used to fill others, returned unchanged.
        fpr : float, optional
            Instead of ``threshold``: the false-positive rate (1e-4, 5e-4 or 5e-3) whose threshold the
            model's metadata records (:meth:`threshold_for`).

        Returns
        -------
        mask : bool array
        cleaned : float32 array
            In the image's units; a ``CCDData`` is converted to electrons and back (its mask ignored), a
            ``numpy.ma`` array's masked pixels are ignored. :func:`deepcr_dask.clean_ccd` returns a CCDData.
        """
        if is_ccd(image):
            electrons, ignored, factor = ccd_to_electrons(image)
            ignored = ignored if ignore is None else (ignored | np.asarray(ignore, bool))
            mask, cleaned = self.clean(electrons, threshold, inpaint, ignored, fpr=fpr)
            return mask, (cleaned.astype(np.float64) / factor).astype(np.float32)
        out = self._whole(image, ignore, want="clean" if inpaint else "mask",
                          threshold=self.threshold_for(threshold, fpr))
        return out["mask"], out["cleaned"]

    def run(self, image, threshold: float | None = None, ignore=None, *,
            fpr: float | None = None) -> dict[str, np.ndarray]:
        """Mask, cleaned image and probability from one pass: ``{"mask", "cleaned", "probability"}``."""
        return self._whole(image, ignore, want="clean", threshold=self.threshold_for(threshold, fpr))

    def threshold_for(self, threshold: float | None = None, fpr: float | None = None) -> float:
        """The probability threshold for an explicit ``threshold``, a false-positive rate, or neither.

        Raises :class:`~deepcr_dask.errors.ModelError` when the model records no threshold for ``fpr``
        (see :attr:`fpr_thresholds`) or when both are given.
        """
        return resolve_threshold(self.mask_model.spec, threshold, fpr)

    @property
    def fpr_thresholds(self) -> dict[float, float]:
        """``{false-positive rate: probability threshold}`` measured on the mask model's validation frames."""
        return fpr_thresholds(self.mask_model.spec)

    def inpaint(self, image, mask, ignore=None) -> np.ndarray:
        """Replace the pixels of ``mask`` (inpaint network, or local median), float32."""
        data, ignored = prepare_image(image, ignore)
        given = np.asarray(mask)
        if given.shape != data.shape:
            raise InputError(f"mask shape {given.shape} differs from image shape {data.shape}")
        out = self.run_region(Region.whole(data, ignored), data.shape, self.stats(data, ignored), want="inpaint",
                              given=given.astype(bool))
        return out["cleaned"]

    # -- region processing (shared by the in-memory and Dask paths) ---------------------------------
    @property
    def threshold(self) -> float:
        """The mask model's default probability threshold."""
        return self.mask_model.spec.threshold

    def _whole(self, image, ignore, *, want: str, threshold: float | None = None) -> dict[str, np.ndarray]:
        data, ignored = prepare_image(image, ignore)
        return self.run_region(Region.whole(data, ignored), data.shape, self.stats(data, ignored), want=want,
                               threshold=threshold)

    def run_region(
        self,
        region: Region,
        image_shape: tuple[int, int],
        stats: ImageStats,
        *,
        want: str = "clean",
        threshold: float | None = None,
        core: tuple[Span, Span] | None = None,
        given: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Outputs for ``core`` (image coordinates; the whole region by default).

        ``want`` is ``"probability"``, ``"mask"`` (mask and probability), ``"clean"`` (mask, probability
        and cleaned image) or ``"inpaint"`` (cleaned image for the ``given`` mask, which covers the region).
        The region must hold ``self.halo`` pixels around the core, or reach the image edge.
        """
        threshold = self.threshold if threshold is None else threshold
        if self.pipeline == "device":
            from .device_path import DevicePath

            return DevicePath(self).run_region(region, image_shape, stats, want=want, threshold=threshold, core=core,
                                               given=given)
        plan = TilePlan.make(image_shape, core or (region.rows, region.cols), self.geometry, self.tile, want=want)
        shape = (plan.core[0].size, plan.core[1].size)
        out: dict[str, np.ndarray] = {}
        if want != "inpaint":
            out["probability"] = np.zeros(shape, np.float32)
            out["mask"] = np.zeros(shape, bool)
        if want in ("clean", "inpaint"):
            out["cleaned"] = np.empty(shape, np.float32)
        with self.runner.region_turn():
            if want == "mask":
                out["cleaned"] = region.raw(plan, plan.core)[0].copy()
            for start in range(0, len(plan.tiles), self.runner.batch_size):
                self._run_tiles(region, plan, stats, plan.tiles[start:start + self.runner.batch_size], out, want,
                                threshold, given)
        return out

    def _run_tiles(self, region: Region, plan: TilePlan, stats: ImageStats, batch: tuple[Tile, ...], out, want,
                   threshold, given) -> None:
        if want == "inpaint":
            masks = [given_mask(region, plan, t.inner, given) for t in batch]
        else:
            masks = self._detect(region, plan, stats, batch, out, threshold)
        if want not in ("clean", "inpaint"):
            return
        if self.inpaint_model is not None:
            inputs = [network_input(region, plan, stats, t.inner, self.geometry.fill_reach, self.scale,
                                    self._inpaint_standardize)[0] for t in batch]
            stacks = []
            for x, mask in zip(inputs, masks):
                m = mask.astype(np.float32)
                stacks.append(np.stack([x * (1 - m), m]))
            predictions = self.runner.forward(self.inpaint_model.network, stacks)
        for i, (t, mask) in enumerate(zip(batch, masks)):
            raw, ignored = region.raw(plan, t.inner)
            mask = mask[image_part(t.inner, plan.frames)] & ~ignored
            if self.inpaint_model is not None:
                pred = predictions[i][image_part(t.inner, plan.frames)]
                cleaned = np.where(mask, denormalize(pred, self.scale, self._inpaint_standardize, stats), raw)
            else:
                cleaned = median_fill(raw, mask, ~(mask | ignored), background=stats.background)
            out["cleaned"][crop(t.core, plan.core)] = cleaned[crop(t.core, image_span(t.inner, plan.frames))]

    def _detect(self, region: Region, plan: TilePlan, stats: ImageStats, batch: tuple[Tile, ...], out,
                threshold) -> list[np.ndarray]:
        """Mask network on each tile's outer window: probability and mask of the core into ``out``, and the
        mask on the inner window (what inpainting replaces)."""
        inputs = [network_input(region, plan, stats, t.outer, self.geometry.fill_reach, self.scale,
                                self._standardize) for t in batch]
        probs = self.runner.forward(self.mask_model.network, [x[None] for x, _ in inputs])
        masks = []
        for prob, (_, ignored), t in zip(probs, inputs, batch):
            prob[ignored] = 0.0
            prob = prob[crop(t.inner, t.outer)]
            mask = prob > threshold
            masks.append(mask)
            dst = crop(t.core, plan.core)
            out["probability"][dst] = prob[crop(t.core, t.inner)]
            out["mask"][dst] = mask[crop(t.core, t.inner)]
        return masks


_BUILDING = threading.Lock()  # a worker's task threads ask at once: one builds, the others wait for it


def get_cleaner(mask: str = "ACS-WFC", inpaint: str | None = None, device: str = "auto", *,
                shared_batches: bool | None = None, **options) -> Cleaner:
    """Process-level cache: one Cleaner per configuration (serves the threaded and sync schedulers).

    The first tasks of a worker with several threads ask for the same Cleaner at the same moment; the cache
    is filled under a lock, so they get one Cleaner, built once (an unlocked ``lru_cache`` builds one per
    thread that misses). With ``shared_batches`` (default: on CUDA) the tasks sharing it (a GPU worker's
    threads) also share forward passes: windows of several blocks or frames go through one
    :class:`~deepcr_dask.inference.batching.TileBatcher`.
    """
    with _BUILDING:
        return _cached_cleaner(mask, inpaint, device, shared_batches, tuple(sorted(options.items())))


@lru_cache(maxsize=8)
def _cached_cleaner(mask: str, inpaint: str | None, device: str, shared_batches: bool | None,
                    options: tuple[tuple[str, object], ...]) -> Cleaner:
    cleaner = Cleaner(mask, inpaint, device, **dict(options))
    if shared_batches or (shared_batches is None and cleaner.device.type == "cuda"):
        cleaner.runner.share_batches()
    return cleaner


get_cleaner.cache_info = _cached_cleaner.cache_info  # the lru_cache's own counters, as before
get_cleaner.cache_clear = _cached_cleaner.cache_clear
