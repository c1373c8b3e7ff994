"""Detection and inpainting quality: ROC metrics, method adapters and an injection-recovery benchmark.

Three layers, each usable on its own:

* **Metrics** on numpy arrays: ROC curves (TPR and FPR over thresholds, or over a list of binary
  masks), TPR at a fixed FPR (interpolated), per-object recall and inpainting error. Ignored pixels
  count as neither positives nor negatives, and predictions on them never spread by dilation.
  The deepCR paper's convention (TPR of the prediction dilated by a 3x3 kernel, FPR undilated) is
  computed alongside the plain one.
* **Adapters** that run each method (our :class:`~deepcr_dask.Cleaner`, deepCR 0.3.1, astroscrappy) on
  the same :class:`Inputs`, recording a checksum of the exact array each one receives.
* **Benchmark**: real frames with their own cosmic rays found conservatively and ignored, plus real
  cosmic-ray footprints (the imSim catalogue) injected at the instrument's rate; and the simulator's
  field types when :mod:`deepcr_dask.simulate` is available. :func:`run_benchmark` returns a
  JSON-ready dict; :func:`markdown_table` and :func:`plot_rocs` present it; :func:`evaluate_main` is
  the ``deepcr-dask evaluate`` command.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from .data import real_data_dir
from .errors import ModelError
from .fill import median_fill

__all__ = [
    "BenchmarkConfig",
    "Detection",
    "Inputs",
    "RocCurve",
    "Scene",
    "Tally",
    "build_method",
    "checksum",
    "confusion",
    "default_thresholds",
    "evaluate_main",
    "inpainting_error",
    "markdown_table",
    "object_recall",
    "plot_rocs",
    "prepare_inputs",
    "roc_curve",
    "roc_from_masks",
    "run_benchmark",
    "save_results",
    "tpr_at_fpr",
]

TARGET_FPRS = (1e-4, 5e-4, 5e-3)
RECALL_FPR = 5e-4  # per-object recall is reported at this FPR
# astroscrappy's ROC sweeps sigclip at fixed objlim, as the deepCR paper did (objlim 2, sigfrac 0.3).
SIGCLIPS = (2.0, 3.0, 4.0, 4.5, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0)
OBJLIM = 2.0
FOOTPRINTS = {
    "square": np.ones((3, 3), bool),  # the 3x3 dilation
    "cross": np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool),  # deepCR's code: skimage disk(1)
}
SIDE_MULTIPLE = 4  # deepCR's inpaint nets need sides that are multiples of 4; scenes are cropped to it


# ================================================================================================
# Metrics
# ================================================================================================
def default_thresholds(n: int = 641, span: float = 16.0) -> np.ndarray:
    """Probability thresholds evenly spaced in logit, dense near 0 and 1.

    ``sigmoid(linspace(-span, span, n))``: the default reaches 1e-7 from either end, so FPRs down to
    1e-5 are resolved even for confident networks, and includes 0.5 exactly (``n`` odd).
    """
    return 1.0 / (1.0 + np.exp(-np.linspace(-span, span, n)))


def _as_masks(truth, ignore) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth, dtype=bool)
    ignore = np.zeros_like(truth) if ignore is None else np.asarray(ignore, dtype=bool)
    if ignore.shape != truth.shape:
        raise ValueError(f"ignore shape {ignore.shape} differs from truth shape {truth.shape}")
    return truth, ignore


def _count_above(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many ``values`` exceed each threshold (prediction is ``score > threshold``, as deepCR)."""
    ordered = np.sort(values.astype(np.float64, copy=False), kind="stable")
    return ordered.size - np.searchsorted(ordered, thresholds, side="right")


def _group_keys(score: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per cosmic-ray group, the score its ``ceil(n / 2)``-th best valid pixel reaches.

    A group (8-connected truth pixels) counts as recovered at threshold ``t`` when at least half of
    its valid pixels score above ``t``, i.e. when this key exceeds ``t``. Fully ignored groups are left out.
    """
    labels, _ = ndimage.label(truth, structure=np.ones((3, 3)))
    pos = truth & valid
    lab, vals = labels[pos], score[pos].astype(np.float64)
    order = np.lexsort((-vals, lab))
    lab, vals = lab[order], vals[order]
    groups, starts, sizes = np.unique(lab, return_index=True, return_counts=True)
    return vals[starts + (sizes + 1) // 2 - 1] if groups.size else np.empty(0)


@dataclass
class Tally:
    """Counts over a set of operating points, summable over images.

    ``tp_dilated`` and ``found_dilated`` use the prediction dilated by ``footprint`` (the deepCR
    paper's TPR convention); false positives are always counted undilated.
    """

    params: np.ndarray  # thresholds, or a method parameter (astroscrappy's sigclip) per mask
    tp: np.ndarray
    fp: np.ndarray
    tp_dilated: np.ndarray
    found: np.ndarray  # cosmic-ray groups recovered (at least half their pixels)
    found_dilated: np.ndarray
    n_pos: int = 0
    n_neg: int = 0
    n_groups: int = 0

    def __add__(self, other: Tally) -> Tally:
        if not np.array_equal(self.params, other.params):
            raise ValueError("tallies over different operating points cannot be added")
        return Tally(self.params, *(getattr(self, k) + getattr(other, k) for k in
                                    ("tp", "fp", "tp_dilated", "found", "found_dilated", "n_pos", "n_neg", "n_groups")))

    @classmethod
    def concat(cls, tallies: Sequence[Tally]) -> Tally:
        """Join tallies of the same image at different operating points (one per binary mask)."""
        cat = {k: np.concatenate([getattr(t, k) for t in tallies])
               for k in ("params", "tp", "fp", "tp_dilated", "found", "found_dilated")}
        first = tallies[0]
        return cls(**cat, n_pos=first.n_pos, n_neg=first.n_neg, n_groups=first.n_groups)

    def curve(self) -> RocCurve:
        """Rates from the counts (NaN where a denominator is zero)."""
        return RocCurve(self.params.astype(np.float64), _rate(self.fp, self.n_neg), _rate(self.tp, self.n_pos),
                        _rate(self.tp_dilated, self.n_pos), _rate(self.found, self.n_groups),
                        _rate(self.found_dilated, self.n_groups), self.n_pos, self.n_neg, self.n_groups)


def _rate(count: np.ndarray, total: int) -> np.ndarray:
    return np.asarray(count, np.float64) / total if total else np.full(len(count), np.nan)


def tally_scores(score, truth, ignore=None, thresholds=None, *, footprint: str = "square") -> Tally:
    """Count TP, FP and recovered groups of ``score > t`` for every threshold ``t``.

    Parameters
    ----------
    score : 2-D float array
        Cosmic-ray probability (or any score; higher means more likely a cosmic ray).
    truth : 2-D bool array
        True cosmic-ray pixels.
    ignore : 2-D bool array, optional
        Pixels counted neither as positives nor negatives; their scores never count nor spread by dilation.
    thresholds : 1-D array, optional
        Defaults to :func:`default_thresholds`.
    footprint : {"square", "cross"}
        Dilation kernel for the paper convention: 3x3 square, or deepCR's own ``disk(1)`` cross.

    Returns
    -------
    Tally
    """
    truth, ignore = _as_masks(truth, ignore)
    thresholds = default_thresholds() if thresholds is None else np.asarray(thresholds, np.float64)
    valid = ~ignore
    score = np.where(ignore, -np.inf, np.asarray(score, np.float64))  # never predicted, never spread
    # dilate(score > t) == (max-filtered score) > t, so every threshold costs one filter in all.
    dilated = ndimage.maximum_filter(score, footprint=FOOTPRINTS[footprint], mode="constant", cval=-np.inf)
    pos, neg = truth & valid, ~truth & valid
    keys, keys_dilated = _group_keys(score, truth, valid), _group_keys(dilated, truth, valid)
    return Tally(thresholds, _count_above(score[pos], thresholds), _count_above(score[neg], thresholds),
                 _count_above(dilated[pos], thresholds), _count_above(keys, thresholds),
                 _count_above(keys_dilated, thresholds), int(pos.sum()), int(neg.sum()), int(keys.size))


def tally_masks(masks: Sequence[np.ndarray], truth, ignore=None, params=None, *, footprint: str = "square") -> Tally:
    """:func:`tally_scores` for a list of binary predictions (one operating point each)."""
    params = np.arange(len(masks), dtype=np.float64) if params is None else np.asarray(params, np.float64)
    if len(params) != len(masks):
        raise ValueError(f"{len(masks)} masks but {len(params)} parameters")
    parts = [tally_scores(np.asarray(m, np.float64), truth, ignore, [0.5], footprint=footprint) for m in masks]
    parts = [replace(t, params=np.array([p])) for t, p in zip(parts, params)]
    return Tally.concat(parts)


@dataclass
class RocCurve:
    """Rates at each operating point; ``tpr_dilated`` and ``recall_dilated`` follow the deepCR paper."""

    params: np.ndarray
    fpr: np.ndarray
    tpr: np.ndarray
    tpr_dilated: np.ndarray
    recall: np.ndarray  # per-object recall
    recall_dilated: np.ndarray
    n_pos: int
    n_neg: int
    n_groups: int

    def at_fpr(self, fpr: float | Sequence[float], what: str = "tpr") -> np.ndarray:
        """Interpolate ``what`` (``"tpr"``, ``"tpr_dilated"``, ``"recall"``, ...) at the given FPR(s).

        Linear in FPR between operating points, with (0, 0) and (1, 1) as end points: flagging
        nothing or everything is always possible, and a random mix of two operating points reaches
        every point between them. Among points of equal FPR the best is used.
        """
        x, y = self.fpr, getattr(self, what)
        keep = np.isfinite(x) & np.isfinite(y)
        x = np.concatenate(([0.0], x[keep], [1.0]))
        y = np.concatenate(([0.0], y[keep], [1.0]))
        order = np.lexsort((y, x))
        x, y = x[order], y[order]
        last = np.r_[x[1:] != x[:-1], True]  # the highest y of each run of equal x
        return np.interp(np.asarray(fpr, np.float64), x[last], y[last])

    def to_dict(self, digits: int = 5) -> dict:
        """JSON-ready lists rounded to ``digits`` significant figures, repeated operating points dropped."""
        rates = ("fpr", "tpr", "tpr_dilated", "recall", "recall_dilated")
        stacked = np.stack([getattr(self, k) for k in rates])
        keep = np.r_[True, np.any(stacked[:, 1:] != stacked[:, :-1], axis=0)]  # first of each run of equal rates
        out = {}
        for key, value in asdict(self).items():
            out[key] = [float(f"{v:.{digits}g}") for v in value[keep]] if isinstance(value, np.ndarray) else value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> RocCurve:
        arrays = {k: np.asarray(v, np.float64) for k, v in data.items() if isinstance(v, list)}
        return cls(**arrays, n_pos=data["n_pos"], n_neg=data["n_neg"], n_groups=data["n_groups"])


def roc_curve(score, truth, ignore=None, thresholds=None, *, footprint: str = "square") -> RocCurve:
    """ROC curve of a probability map: TPR, FPR, per-object recall, each also under the paper convention.

    Parameters
    ----------
    score, truth, ignore, thresholds, footprint
        As :func:`tally_scores`.

    Returns
    -------
    RocCurve
        ``tpr`` uses the prediction as is; ``tpr_dilated`` the prediction dilated by ``footprint``
        (the deepCR paper's convention); ``fpr`` is always undilated.
    """
    return tally_scores(score, truth, ignore, thresholds, footprint=footprint).curve()


def roc_from_masks(masks: Sequence[np.ndarray], truth, ignore=None, params=None, *,
                   footprint: str = "square") -> RocCurve:
    """ROC points of binary predictions, e.g. astroscrappy at a sweep of ``sigclip``."""
    return tally_masks(masks, truth, ignore, params, footprint=footprint).curve()


def tpr_at_fpr(curve: RocCurve, fpr: float | Sequence[float], *, dilate: bool = False) -> np.ndarray:
    """TPR at fixed FPR(s), interpolated (see :meth:`RocCurve.at_fpr`); ``dilate`` for the paper convention."""
    return curve.at_fpr(fpr, "tpr_dilated" if dilate else "tpr")


def confusion(prediction, truth, ignore=None, *, dilate: bool = False, footprint: str = "square") -> dict[str, int]:
    """TP, FP, FN, TN pixel counts of a binary prediction, ignored pixels excluded from all four.

    With ``dilate`` the prediction is dilated for TP and FN only (the deepCR paper's convention).
    """
    truth, ignore = _as_masks(truth, ignore)
    pred = np.asarray(prediction, bool) & ~ignore
    hit = ndimage.binary_dilation(pred, FOOTPRINTS[footprint]) if dilate else pred
    valid = ~ignore
    return {"tp": int((hit & truth & valid).sum()), "fn": int((~hit & truth & valid).sum()),
            "fp": int((pred & ~truth & valid).sum()), "tn": int((~pred & ~truth & valid).sum())}


def object_recall(prediction, truth, ignore=None, *, min_fraction: float = 0.5) -> float:
    """Fraction of cosmic-ray groups with at least ``min_fraction`` of their valid pixels predicted.

    Groups are 8-connected components of ``truth``; ignored pixels do not count towards a group's
    size, and groups that are entirely ignored are left out. NaN when there is no group.
    """
    truth, ignore = _as_masks(truth, ignore)
    labels, n = ndimage.label(truth, structure=np.ones((3, 3)))
    valid = truth & ~ignore
    sizes = np.bincount(labels[valid], minlength=n + 1)[1:]
    hits = np.bincount(labels[valid & np.asarray(prediction, bool)], minlength=n + 1)[1:]
    present = sizes > 0
    if not present.any():
        return float("nan")
    return float(np.mean(hits[present] >= min_fraction * sizes[present]))


def inpainting_error(cleaned, reference, mask, ignore=None) -> dict[str, float]:
    """RMS and mean absolute error of ``cleaned`` against ``reference`` on ``mask`` pixels not ignored.

    Returns
    -------
    dict
        ``rms``, ``mae`` (image units; NaN when no pixel) and ``n`` (pixels compared).
    """
    mask, ignore = _as_masks(mask, ignore)
    sel = mask & ~ignore
    diff = np.asarray(cleaned, np.float64)[sel] - np.asarray(reference, np.float64)[sel]
    if diff.size == 0:
        return {"rms": float("nan"), "mae": float("nan"), "n": 0}
    return {"rms": float(np.sqrt(np.mean(diff**2))), "mae": float(np.mean(np.abs(diff))), "n": int(diff.size)}


# ================================================================================================
# Inputs and method adapters
# ================================================================================================
@dataclass(frozen=True)
class Inputs:
    """What every method receives: the same filled image and the same ignore mask.

    ``image`` is float32 electrons with ignored pixels already replaced by a local median
    (:func:`prepare_inputs`), because deepCR has no ignore input; methods that take a mask
    (Cleaner, astroscrappy) get ``ignore`` as well.
    """

    image: np.ndarray
    ignore: np.ndarray
    read_noise: float = 5.0  # e-, for astroscrappy's noise model (images are in electrons: gain 1)


def prepare_inputs(image, ignore=None, *, read_noise: float = 5.0) -> Inputs:
    """The inputs every method gets: ignored and non-finite pixels filled by a local median.

    Parameters
    ----------
    image : 2-D array
        Electrons.
    ignore : 2-D bool array, optional
        Pixels to leave out (bad, saturated, the frame's own cosmic rays).
    read_noise : float
        Electrons; for the L.A.Cosmic-type methods.

    Returns
    -------
    Inputs
        ``image``: the median of good pixels in a 5x5 window (3 passes, then the global median of good
        pixels) replaces each ignored one; read-only, C-ordered native float32, so no method can alter
        what the next one sees. ``ignore`` includes the non-finite pixels.
    """
    data = np.asarray(image, dtype=np.float32)
    bad = ~np.isfinite(data) if ignore is None else (np.asarray(ignore, bool) | ~np.isfinite(data))
    good = data[~bad]
    background = float(np.median(good)) if good.size else 0.0
    filled = median_fill(data, bad, background=background) if bad.any() else data.copy()
    filled = np.ascontiguousarray(filled, dtype=np.float32)
    filled.flags.writeable = False
    bad.flags.writeable = False
    return Inputs(filled, bad, float(read_noise))


def checksum(array: np.ndarray | None) -> str | None:
    """SHA-256 of an array's dtype, shape and bytes (None for None)."""
    if array is None:
        return None
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class Detection:
    """A method's output on one image: a score map, or binary masks at several operating points."""

    score: np.ndarray | None = None
    masks: list[np.ndarray] | None = None
    params: np.ndarray | None = None  # operating point of each mask
    seconds: float = 0.0  # detection time per run
    runs: int = 1


class Method:
    """Base adapter: runs one cosmic-ray method and logs a checksum of each input it is given."""

    name = "method"
    description = ""

    def __init__(self) -> None:
        self.received: list[dict[str, str | None]] = []

    def _record(self, image: np.ndarray, ignore: np.ndarray | None) -> None:
        self.received.append({"image": checksum(image), "ignore": checksum(ignore)})

    def detect(self, inputs: Inputs) -> Detection:  # pragma: no cover - abstract
        raise NotImplementedError

    def inpaint(self, inputs: Inputs, mask: np.ndarray) -> np.ndarray | None:
        """Replace ``mask`` pixels; None if the method cannot inpaint a given mask."""
        return None


def _timed(fn: Callable, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


class CleanerMethod(Method):
    """deepcr-dask's :class:`~deepcr_dask.Cleaner` (any mask model; network or median inpainting)."""

    def __init__(self, model: str = "ACS-WFC", inpaint: str | None = None, device: str = "cpu"):
        super().__init__()
        from .cleaner import Cleaner

        self.cleaner = Cleaner(model, inpaint=inpaint, device=device)
        self.name = f"cleaner:{model}"
        self.description = f'deepcr-dask `Cleaner("{model}", inpaint={inpaint!r}).probability(img, ignore)`'
        self.cleaner.probability(np.zeros((64, 64), np.float32))  # warm-up, untimed

    def detect(self, inputs: Inputs) -> Detection:
        self._record(inputs.image, inputs.ignore)
        prob, seconds = _timed(self.cleaner.probability, inputs.image, ignore=inputs.ignore)
        return Detection(score=prob, seconds=seconds)

    def inpaint(self, inputs: Inputs, mask: np.ndarray) -> np.ndarray:
        return self.cleaner.inpaint(inputs.image, mask, ignore=inputs.ignore)


def _import_deepcr():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module("deepCR")


class DeepCRMethod(Method):
    """deepCR 0.3.1 through its own API: whole-image ``clean(binary=False, segment=False)``, no grad.

    deepCR takes no ignore mask; it sees the same median-filled image as every other method.
    """

    def __init__(self, model: str = "ACS-WFC", inpaint: str | None = None):
        super().__init__()
        import torch

        self._torch = torch
        self.model = _import_deepcr().deepCR(mask=model, inpaint=inpaint, device="CPU")
        self.name = f"deepcr:{model}"
        self.description = f'deepCR 0.3.1 `deepCR(mask="{model}", inpaint={inpaint!r}).clean(img, binary=False, ' \
                           "segment=False)` under `torch.no_grad()`"
        self._probability(np.zeros((64, 64), np.float32))  # warm-up, untimed

    def _probability(self, image: np.ndarray) -> np.ndarray:
        with self._torch.no_grad():
            return np.asarray(self.model.clean(image, binary=False, segment=False), np.float32)

    def detect(self, inputs: Inputs) -> Detection:
        self._record(inputs.image, None)
        prob, seconds = _timed(self._probability, inputs.image)
        return Detection(score=prob, seconds=seconds)

    def inpaint(self, inputs: Inputs, mask: np.ndarray) -> np.ndarray:
        with self._torch.no_grad():
            return np.asarray(self.model.inpaint(inputs.image, mask), np.float32)


class AstroscrappyMethod(Method):
    """astroscrappy ``detect_cosmics`` swept over ``sigclip`` at fixed ``objlim`` (the deepCR paper's ROC).

    Settings follow the deepCR paper's comparison: ``sigfrac=0.3``, ``sepmed=False``,
    ``cleantype="medmask"``, ``niter=4``, ``satlevel=inf`` (saturated pixels are in ``inmask``), with
    ``gain=1`` because images are in electrons and the instrument's read noise. Subclasses change
    :meth:`run` only.
    """

    name = "astroscrappy"

    def __init__(self, sigclips: Sequence[float] = SIGCLIPS, objlim: float = OBJLIM):
        super().__init__()
        self._detect = importlib.import_module("astroscrappy").detect_cosmics
        self.sigclips = tuple(float(s) for s in sigclips)
        self.objlim = float(objlim)
        self.description = (f"astroscrappy `detect_cosmics(img, inmask=ignore, sigclip in {list(self.sigclips)}, "
                            f"objlim={self.objlim:g}, sigfrac=0.3, gain=1, readnoise=instrument)`")

    def run(self, inputs: Inputs, sigclip: float) -> np.ndarray:
        """Binary mask at one ``sigclip``."""
        mask, _ = self._detect(inputs.image, inmask=inputs.ignore, sigclip=sigclip, sigfrac=0.3, objlim=self.objlim,
                               gain=1.0, readnoise=inputs.read_noise, satlevel=np.inf, niter=4, sepmed=False,
                               cleantype="medmask")
        return np.asarray(mask, bool)

    def detect(self, inputs: Inputs) -> Detection:
        self._record(inputs.image, inputs.ignore)
        start = time.perf_counter()
        masks = [self.run(inputs, s) for s in self.sigclips]
        seconds = (time.perf_counter() - start) / len(masks)
        return Detection(masks=masks, params=np.array(self.sigclips), seconds=seconds, runs=len(masks))


class LacosmicMethod(AstroscrappyMethod):
    """The ``lacosmic`` package (``remove_cosmics``), swept like astroscrappy: ``cr_threshold`` = sigclip,
    ``contrast`` = objlim, ``neighbor_threshold`` = 0.3 sigclip, ``mask`` = ignore, ``effective_gain=1``.
    Optional: used only when ``lacosmic`` is installed.
    """

    name = "lacosmic"

    def __init__(self, sigclips: Sequence[float] = SIGCLIPS, objlim: float = OBJLIM):
        Method.__init__(self)
        self._remove = importlib.import_module("lacosmic").remove_cosmics
        self.sigclips, self.objlim = tuple(float(x) for x in sigclips), float(objlim)
        self.description = (f"lacosmic `remove_cosmics(img, contrast={self.objlim:g}, cr_threshold in "
                            f"{list(self.sigclips)}, neighbor_threshold=0.3 cr_threshold, mask=ignore, "
                            "effective_gain=1, readnoise=instrument)`")

    def run(self, inputs: Inputs, sigclip: float) -> np.ndarray:
        from astropy import log

        level = log.level
        log.setLevel("WARNING")  # it logs every iteration at INFO
        try:
            _, mask = self._remove(inputs.image, contrast=self.objlim, cr_threshold=sigclip,
                                   neighbor_threshold=0.3 * sigclip, mask=inputs.ignore, effective_gain=1.0,
                                   readnoise=inputs.read_noise, maxiter=4)
        finally:
            log.setLevel(level)
        return np.asarray(mask, bool)


class DfcosmicMethod(AstroscrappyMethod):
    """The ``dfcosmic`` package (torch L.A.Cosmic), swept like astroscrappy. It takes no ignore mask: it
    sees the same median-filled image as deepCR. Optional: used only when ``dfcosmic`` is installed.
    """

    name = "dfcosmic"

    def __init__(self, sigclips: Sequence[float] = SIGCLIPS, objlim: float = OBJLIM):
        Method.__init__(self)
        self._lacosmic = importlib.import_module("dfcosmic").lacosmic
        self.sigclips, self.objlim = tuple(float(x) for x in sigclips), float(objlim)
        self.description = (f"dfcosmic `lacosmic(img, sigclip in {list(self.sigclips)}, sigfrac=0.3, "
                            f"objlim={self.objlim:g}, niter=4, gain=1, readnoise=instrument)`")

    def _record(self, image: np.ndarray, ignore: np.ndarray | None) -> None:
        super()._record(image, None)  # no ignore input

    def run(self, inputs: Inputs, sigclip: float) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch on our read-only array; dfcosmic never writes
            _, mask = self._lacosmic(inputs.image, sigclip=sigclip, sigfrac=0.3, objlim=self.objlim, niter=4,
                                     gain=1.0, readnoise=inputs.read_noise, device="cpu")
        return np.asarray(mask, bool)


SWEEP_METHODS = {"astroscrappy": AstroscrappyMethod, "lacosmic": LacosmicMethod, "dfcosmic": DfcosmicMethod}


def build_method(spec: str, *, inpaint: str | None = None, device: str = "cpu", sigclips: Sequence[float] = SIGCLIPS,
                 objlim: float = OBJLIM) -> Method:
    """A method from ``"cleaner:MODEL"``, ``"deepcr:MODEL"``, ``"astroscrappy"``, ``"lacosmic"`` or ``"dfcosmic"``.

    Raises ImportError when the method's package is missing and ValueError for an unknown spec.
    """
    kind, _, model = spec.partition(":")
    model = model or "ACS-WFC"
    if kind == "cleaner":
        return CleanerMethod(model, inpaint, device)
    if kind == "deepcr":
        return DeepCRMethod(model, inpaint)
    if kind in SWEEP_METHODS:
        return SWEEP_METHODS[kind](sigclips, objlim)
    raise ValueError(f"unknown method {spec!r} (cleaner:MODEL, deepcr:MODEL, {', '.join(SWEEP_METHODS)})")


# ================================================================================================
# Scenes: real frames with injected real cosmic rays, and simulated fields
# ================================================================================================
@dataclass(frozen=True)
class Instrument:
    """What injection and astroscrappy need to know about a detector."""

    name: str
    read_noise: float  # e-
    pixel_um: float
    cr_rate: float  # cosmic-ray events per cm^2 per second

    def expected_rays(self, n_pixels: int, exptime: float) -> float:
        return self.cr_rate * (self.pixel_um * 1e-4) ** 2 * n_pixels * exptime


HST_RATE = 1.2  # events / cm^2 / s in low Earth orbit (HST instrument handbooks quote about 1-2)
# The imSim ITL lab darks: 1764 events in 1500 s over 16.288 Mpix of 10 um pixels (sea level, muons + radioactivity).
GROUND_RATE = 1764 / (1500.0 * 16.288e6 * (10e-4) ** 2)
INSTRUMENTS = {
    "WFPC2": Instrument("WFPC2", 5.3, 15.0, HST_RATE),  # gain 7 read noise
    "ACS-WFC": Instrument("ACS-WFC", 4.0, 15.0, HST_RATE),
    "SAAO-STE3": Instrument("SAAO-STE3", 5.0, 24.0, GROUND_RATE),  # RDNOISE keyword; pixel size assumed
    "GMOS-S": Instrument("GMOS-S", 4.24, 15.0, GROUND_RATE),  # read noise of astroscrappy's own GMOS test
}
REAL_FIELDS = ("wfpc2", "saao", "gmos")
SIM_FIELDS = ("sparse", "globular", "galaxy")
FOOTPRINT_FILE = "imsim_cosmic_rays_itl_2017.fits.gz"


@dataclass
class Scene:
    """One benchmark image: ``image`` = ``clean`` + injected cosmic rays (``truth``), electrons."""

    field: str
    name: str
    image: np.ndarray
    truth: np.ndarray
    ignore: np.ndarray
    clean: np.ndarray
    read_noise: float
    n_rays: int


@dataclass(frozen=True)
class Footprint:
    """One real cosmic ray: pixel offsets from its bounding box corner and values in electrons."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.rows.max()) + 1, int(self.cols.max()) + 1

    def oriented(self, k: int, flip: bool) -> Footprint:
        """Rotated by ``k`` quarter turns (and transposed if ``flip``): shapes seen at any angle."""
        rows, cols = (self.cols, self.rows) if flip else (self.rows, self.cols)
        h, w = int(rows.max()) + 1, int(cols.max()) + 1
        for _ in range(k % 4):
            rows, cols, h, w = cols, h - 1 - rows, w, h
        return Footprint(rows, cols, self.values)


@lru_cache(maxsize=2)
def load_footprints(path: str) -> tuple[Footprint, ...]:
    """Cosmic-ray footprints of the imSim catalogue, as read by :func:`deepcr_dask.simulate.footprint_catalogue`.

    The evaluation injects them with their exact pixels and charges (no rescaling to another detector).
    """
    from .simulate import footprint_catalogue

    out = []
    for fp in footprint_catalogue(path).footprints:
        rows, cols = np.nonzero(fp.stamp)
        out.append(Footprint(rows, cols, fp.stamp[rows, cols].astype(np.float32)))
    return tuple(out)


def inject_footprints(clean: np.ndarray, footprints: Sequence[Footprint], n: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Add ``n`` randomly chosen, oriented and placed footprints; returns ``(image, truth)``."""
    image = np.array(clean, np.float32, copy=True)
    truth = np.zeros(image.shape, bool)
    for _ in range(n):
        fp = footprints[rng.integers(len(footprints))].oriented(int(rng.integers(4)), bool(rng.integers(2)))
        h, w = fp.shape
        # Whole footprints where they fit (so every injected ray lands); longer ones cross the edge.
        y0 = int(rng.integers(min(0, image.shape[0] - h), max(image.shape[0] - h, 0) + 1))
        x0 = int(rng.integers(min(0, image.shape[1] - w), max(image.shape[1] - w, 0) + 1))
        rows, cols = fp.rows + y0, fp.cols + x0
        inside = (rows >= 0) & (rows < image.shape[0]) & (cols >= 0) & (cols < image.shape[1])
        np.add.at(image, (rows[inside], cols[inside]), fp.values[inside])
        truth[rows[inside], cols[inside]] = True
    return image, truth


def crop_to_multiple(array: np.ndarray, multiple: int = SIDE_MULTIPLE, size: int | None = None) -> np.ndarray:
    """The top-left part whose sides are multiples of ``multiple`` (and at most ``size``)."""
    h, w = array.shape
    if size is not None:
        h, w = min(h, size), min(w, size)
    return array[: h - h % multiple, : w - w % multiple]


@dataclass
class RealFrame:
    """A real frame in electrons with the pixels to ignore (bad, saturated, its own cosmic rays)."""

    name: str
    image: np.ndarray
    ignore: np.ndarray
    instrument: Instrument
    exptime: float


def _wfpc2_frames(folder: Path, chips: Sequence[int]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    from astropy.io import fits

    with fits.open(folder / "wfpc2_u5780205r_c0f.fits") as hdul:
        cube, gain = hdul[0].data.astype(np.float32), float(hdul[0].header.get("ATODGAIN", 7.0))
    return [(f"wfpc2-chip{c + 1}", cube[c] * gain, (cube[c] >= 4095) | ~np.isfinite(cube[c])) for c in chips]


def _saao_frame(folder: Path) -> tuple[str, np.ndarray, np.ndarray]:
    from astropy.io import fits

    with fits.open(folder / "saao_a8280271.fits") as hdul:
        raw, header = hdul[0].data.astype(np.float32), hdul[0].header
    bias = float(np.median(raw[:, 3:13]))  # BIASSEC [4:13, 1:520]
    science = raw[:, 16:528]  # TRIMSEC [17:528, 1:520]
    return "saao", (science - bias) * float(header.get("GAIN", 1.9)), science >= 65535


def _gmos_frame(folder: Path) -> tuple[str, np.ndarray, np.ndarray]:
    from astropy.io import fits

    with fits.open(folder / "gmos_S20190808S0048_cutout.fits") as hdul:
        sci = hdul["SCI"].data.astype(np.float32)
    ignore = ~np.isfinite(sci)
    for rows, cols in ((slice(41, 72), slice(142, 161)), (slice(117, 147), slice(35, 43))):  # its 2 known rays
        ignore[rows, cols] = True
    return "gmos", sci, ignore


class _optional:
    """Context manager: skip a missing optional component with a printed note."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if kind is not None and issubclass(kind, (ImportError, ModelError)):
            print(f"note: {self.what} unavailable ({exc}); skipped")
            return True
        return False


def _source_pixels(image: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """Stars, galaxies and sky lines: where a 5x5 median (which removes cosmic rays) is above the sky."""
    valid = image[~ignore]
    sky = float(np.median(valid))
    sigma = 1.4826 * float(np.median(np.abs(valid - sky)))
    smooth = ndimage.median_filter(np.where(ignore, sky, image), size=5)
    return ndimage.binary_dilation(smooth > sky + 1.5 * sigma, iterations=2)


def find_own_cosmic_rays(image: np.ndarray, ignore: np.ndarray, read_noise: float, *,
                         model: str | None = "ACS-WFC") -> np.ndarray:
    """The frame's own cosmic rays, found generously so that they can be ignored.

    Union of astroscrappy (sigclip 4, objlim 2) and the mask network at p > 0.5, grown by 2 px; but
    never on or next to a source, so that false positives on stars still count for every method.
    """
    inputs = prepare_inputs(image, ignore, read_noise=read_noise)
    found = np.zeros(image.shape, bool)
    with _optional("astroscrappy"):
        found |= AstroscrappyMethod((4.0,), 2.0).run(inputs, 4.0)
    if model is not None:
        with _optional(f"model {model}"):
            from .cleaner import get_cleaner

            found |= get_cleaner(model, None, "cpu").probability(inputs.image, ignore=inputs.ignore) > 0.5
    grown = ndimage.binary_dilation(found, np.ones((3, 3), bool), iterations=2)
    return grown & ~_source_pixels(image, ignore)


def real_frames(field: str, folder: Path, *, chips: Sequence[int] = (0, 1, 2, 3), crop: int | None = None,
                find_model: str | None = "ACS-WFC") -> list[RealFrame]:
    """Frames of a real field type, cropped to multiples of 4, their own cosmic rays in ``ignore``."""
    from astropy.io import fits

    if field == "wfpc2":
        raw, inst = _wfpc2_frames(folder, chips), INSTRUMENTS["WFPC2"]
        exptime = float(fits.getheader(folder / "wfpc2_u5780205r_c0f.fits").get("EXPTIME", 300.0))
    elif field == "saao":
        raw, inst, exptime = [_saao_frame(folder)], INSTRUMENTS["SAAO-STE3"], 150.0
    elif field == "gmos":
        raw, inst, exptime = [_gmos_frame(folder)], INSTRUMENTS["GMOS-S"], 90.0
    else:
        raise ValueError(f"unknown real field {field!r}")
    frames = []
    for name, image, ignore in raw:
        image, ignore = crop_to_multiple(image, size=crop), crop_to_multiple(ignore, size=crop)
        if field != "gmos":  # GMOS's two cosmic rays are known exactly
            ignore = ignore | find_own_cosmic_rays(image, ignore, inst.read_noise, model=find_model)
        frames.append(RealFrame(name, np.ascontiguousarray(image), ignore, inst, exptime))
    return frames


def injected_scenes(field: str, frames: Sequence[RealFrame], footprints: Sequence[Footprint], realisations: int,
                    seed: int = 0) -> list[Scene]:
    """Each frame ``realisations`` times, with a fresh draw of footprints at the instrument's rate.

    The number per draw is the expected count (rate x pixel area x pixels x exposure), rounded, at least 1.
    """
    scenes = []
    for i, frame in enumerate(frames):
        n = max(1, round(frame.instrument.expected_rays(frame.image.size, frame.exptime)))
        for r in range(realisations):
            rng = np.random.default_rng([seed, i, r])
            image, truth = inject_footprints(frame.image, footprints, n, rng)
            scenes.append(Scene(field, f"{frame.name}-r{r}", image, truth, frame.ignore, frame.image,
                                frame.instrument.read_noise, n))
    return scenes


def _simulator():
    try:
        return importlib.import_module("deepcr_dask.simulate")
    except ImportError as exc:
        print(f"note: deepcr_dask.simulate is not available ({exc}); simulated field types skipped")
        return None


def simulated_scenes(field: str, shape: tuple[int, int], seeds: Sequence[int], exptime: float) -> list[Scene]:
    """Scenes of a simulator field type (ACS/WFC-like); empty, with a note, if there is no simulator."""
    sim = _simulator()
    if sim is None:
        return []
    scenes = []
    for seed in seeds:
        s = sim.simulate(shape=tuple(shape), instrument="ACS-WFC", exptime=exptime, seed=seed, field=field)
        image, truth = crop_to_multiple(np.asarray(s.image, np.float32)), crop_to_multiple(np.asarray(s.truth, bool))
        ignore = np.zeros(truth.shape, bool) if s.ignore is None else crop_to_multiple(np.asarray(s.ignore, bool))
        clean = crop_to_multiple(np.asarray(s.clean, np.float32))
        n_rays = len(getattr(s, "footprints", None) or ()) or int(ndimage.label(truth, structure=np.ones((3, 3)))[1])
        read_noise = getattr(getattr(s, "instrument", None), "read_noise", INSTRUMENTS["ACS-WFC"].read_noise)
        scenes.append(Scene(field, f"{field}-s{seed}", image, truth, ignore, clean, float(read_noise), n_rays))
    return scenes


# ================================================================================================
# Benchmark
# ================================================================================================
@dataclass
class BenchmarkConfig:
    """What :func:`run_benchmark` measures. :meth:`quick` is the CI size; the defaults the full run."""

    fields: tuple[str, ...] = REAL_FIELDS + SIM_FIELDS
    methods: tuple[str, ...] = ("cleaner:ACS-WFC", "deepcr:ACS-WFC", "astroscrappy")
    inpaint: str | None = "ACS-WFC-F606W-2-32"  # network inpainting for cleaner and deepcr; None: median
    realisations: dict[str, int] = field(default_factory=lambda: {"wfpc2": 3, "saao": 4, "gmos": 30})
    wfpc2_chips: tuple[int, ...] = (0, 1, 2, 3)
    crop: int | None = None  # largest side of real frames
    sim_shape: tuple[int, int] = (512, 512)
    sim_seeds: tuple[int, ...] = (1000, 1001)  # disjoint from the seeds the shipped models were trained on
    sim_exptime: float = 500.0
    target_fprs: tuple[float, ...] = TARGET_FPRS
    recall_fpr: float = RECALL_FPR
    dilate: bool = False  # table under the deepCR paper's convention (TPR of the 3x3-dilated prediction)
    footprint: str = "square"
    n_thresholds: int = 641
    sigclips: tuple[float, ...] = SIGCLIPS
    objlim: float = OBJLIM
    device: str = "cpu"
    threads: int | None = 1  # per method, for torch and OpenMP; None leaves them alone
    seed: int = 0
    data_dir: str | None = None

    @classmethod
    def quick(cls, **overrides) -> BenchmarkConfig:
        """Small enough for CI (seconds): one WFPC2 chip, GMOS, a small sparse field, 4 sigclips."""
        base = cls(fields=("wfpc2", "gmos", "sparse"), realisations={"wfpc2": 1, "saao": 1, "gmos": 2},
                   wfpc2_chips=(1,), crop=128, sim_shape=(128, 128), sim_seeds=(1000,), n_thresholds=161,
                   sigclips=(3.0, 4.5, 6.0, 10.0))
        return replace(base, **overrides)


def build_scenes(field_type: str, config: BenchmarkConfig) -> list[Scene]:
    """The scenes of one field type; empty (with a printed note) when its data or simulator is missing."""
    if field_type in SIM_FIELDS:
        return simulated_scenes(field_type, config.sim_shape, config.sim_seeds, config.sim_exptime)
    folder = real_data_dir(config.data_dir)
    if not (folder / FOOTPRINT_FILE).is_file():
        print(f"note: real data not found in {folder} (set DEEPCR_DASK_REAL_DATA); {field_type} skipped")
        return []
    frames = real_frames(field_type, folder, chips=config.wfpc2_chips, crop=config.crop)
    footprints = load_footprints(str(folder / FOOTPRINT_FILE))
    return injected_scenes(field_type, frames, footprints, config.realisations.get(field_type, 1), config.seed)


class _Threads:
    """Context manager: run torch and every loaded OpenMP runtime (astroscrappy's) on ``n`` threads.

    One thread per method is the fair comparison, and on a shared machine it is also much faster:
    OpenMP teams spin-wait when the cores are busy (4x slower measured at load 5 on 2 cores).
    """

    def __init__(self, n: int | None):
        self.n = n
        self.saved: list[tuple[Callable, int]] = []

    def __enter__(self):
        if not self.n:
            return self
        import torch

        self.saved.append((torch.set_num_threads, torch.get_num_threads()))
        torch.set_num_threads(self.n)
        with contextlib.suppress(ImportError):  # load astroscrappy's OpenMP runtime now, to limit it too
            importlib.import_module("astroscrappy")
        for lib in _openmp_libraries():
            self.saved.append((lib.omp_set_num_threads, lib.omp_get_max_threads()))
            lib.omp_set_num_threads(self.n)
        return self

    def __exit__(self, *exc) -> None:
        for setter, value in reversed(self.saved):
            setter(value)
        self.saved.clear()


def _openmp_libraries() -> list:
    """The OpenMP runtimes loaded in this process (Linux: from /proc/self/maps; elsewhere none)."""
    import ctypes

    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    paths = {line.split()[-1] for line in maps if any(k in line for k in ("libgomp", "libomp", "libiomp"))}
    libs = []
    for path in sorted(paths):
        try:
            libs.append(ctypes.CDLL(path))
        except OSError:
            continue
    return [lib for lib in libs if hasattr(lib, "omp_set_num_threads") and hasattr(lib, "omp_get_max_threads")]


def build_methods(config: BenchmarkConfig) -> tuple[list[Method], list[str]]:
    """Adapters for ``config.methods``; those that cannot be built are skipped with a note."""
    methods, notes = [], []
    for spec in config.methods:
        try:
            methods.append(build_method(spec, inpaint=config.inpaint, device=config.device,
                                        sigclips=config.sigclips, objlim=config.objlim))
        except Exception as exc:  # a missing package or model must not stop the other methods
            notes.append(f"{spec} skipped: {type(exc).__name__}: {exc}")
            print(f"note: {notes[-1]}")
    return methods, notes


@dataclass
class _Accumulator:
    """One method's running totals over the scenes of a field type."""

    tally: Tally | None = None
    seconds: float = 0.0
    mpix: float = 0.0
    sq_err: float = 0.0
    abs_err: float = 0.0
    n_err: int = 0
    checksums: list[dict] = field(default_factory=list)

    def add(self, tally: Tally, detection: Detection, mpix: float) -> None:
        self.tally = tally if self.tally is None else self.tally + tally
        self.seconds += detection.seconds
        self.mpix += mpix

    def add_inpaint(self, error: dict) -> None:
        if error["n"]:
            self.sq_err += error["rms"] ** 2 * error["n"]
            self.abs_err += error["mae"] * error["n"]
            self.n_err += error["n"]

    def inpaint_summary(self) -> dict[str, float] | None:
        if not self.n_err:
            return None
        return {"rms": math.sqrt(self.sq_err / self.n_err), "mae": self.abs_err / self.n_err, "n": self.n_err}


def _tally(detection: Detection, scene: Scene, inputs: Inputs, config: BenchmarkConfig) -> Tally:
    if detection.score is not None:
        return tally_scores(detection.score, scene.truth, inputs.ignore, default_thresholds(config.n_thresholds),
                            footprint=config.footprint)
    return tally_masks(detection.masks, scene.truth, inputs.ignore, detection.params, footprint=config.footprint)


def _run_scene(scene: Scene, methods: Sequence[Method], accs: dict[str, _Accumulator], median: _Accumulator,
               config: BenchmarkConfig) -> None:
    inputs = prepare_inputs(scene.image, scene.ignore, read_noise=scene.read_noise)
    before = checksum(inputs.image)
    targets = scene.truth & ~inputs.ignore
    baseline = median_fill(inputs.image, targets, ~(targets | inputs.ignore),
                           background=float(np.median(inputs.image[~inputs.ignore])))
    median.add_inpaint(inpainting_error(baseline, scene.clean, targets, inputs.ignore))
    for method in methods:
        detection = method.detect(inputs)
        accs[method.name].add(_tally(detection, scene, inputs, config), detection, scene.image.size / 1e6)
        cleaned = method.inpaint(inputs, targets)
        if cleaned is not None:
            accs[method.name].add_inpaint(inpainting_error(cleaned, scene.clean, targets, inputs.ignore))
        if checksum(inputs.image) != before:
            raise RuntimeError(f"{method.name} modified its input image")


def _method_summary(acc: _Accumulator, received: list[dict], median_rms: float | None,
                    config: BenchmarkConfig) -> dict:
    curve = acc.tally.curve()
    inpaint = acc.inpaint_summary()
    if inpaint is not None and median_rms:
        inpaint["rms_vs_median"] = inpaint["rms"] / median_rms
    fprs = list(config.target_fprs)
    return {
        "tpr_at_fpr": dict(zip(map(str, fprs), curve.at_fpr(fprs, "tpr").tolist())),
        "tpr_dilated_at_fpr": dict(zip(map(str, fprs), curve.at_fpr(fprs, "tpr_dilated").tolist())),
        "object_recall": float(curve.at_fpr(config.recall_fpr, "recall")),
        "object_recall_dilated": float(curve.at_fpr(config.recall_fpr, "recall_dilated")),
        "lowest_fpr": float(np.nanmin(curve.fpr)) if np.isfinite(curve.fpr).any() else float("nan"),
        "inpaint": inpaint,
        "seconds_per_mpix": acc.seconds / acc.mpix if acc.mpix else float("nan"),
        "input_checksums": [r["image"] for r in received],
        "ignore_checksums": [r["ignore"] for r in received],
        "curve": curve.to_dict(),
    }


def _field_summary(scenes: Sequence[Scene]) -> dict:
    pixels = sum(s.image.size for s in scenes)
    return {"scenes": [s.name for s in scenes], "pixels": pixels,
            "injected_rays": sum(s.n_rays for s in scenes),
            "ignored_fraction": sum(int(s.ignore.sum()) for s in scenes) / pixels,
            "truth_fraction": sum(int(s.truth.sum()) for s in scenes) / pixels}


def run_benchmark(config: BenchmarkConfig | None = None, *, log: Callable[[str], None] = print) -> dict:
    """Run every method on every scene of every field type and summarise.

    Returns
    -------
    dict
        JSON-ready: ``config``, ``methods`` (name -> description), ``fields`` (field -> summary with a
        ``methods`` entry per method: TPR at the target FPRs, plain and dilated; per-object recall at
        ``recall_fpr``; inpainting RMS/MAE on the true cosmic-ray pixels against the clean scene, and
        relative to the median fallback; seconds per Mpix of detection; the ROC curve; checksums of
        every input), ``inputs_identical`` and ``notes``.
    """
    config = config or BenchmarkConfig()
    methods, notes = build_methods(config)
    results: dict = {"config": _config_dict(config), "methods": {m.name: m.description for m in methods},
                     "fields": {}, "notes": notes}
    with _Threads(config.threads):
        for field_type in config.fields:
            _run_field(field_type, methods, config, results, log)
    results["inputs_identical"] = all(f["inputs_identical"] for f in results["fields"].values())
    if not results["inputs_identical"]:
        raise RuntimeError("methods received different inputs")
    return results


def _run_field(field_type: str, methods: Sequence[Method], config: BenchmarkConfig, results: dict,
               log: Callable[[str], None]) -> None:
    """Run every method on the scenes of one field type and add its summary to ``results``."""
    start = time.perf_counter()
    scenes = build_scenes(field_type, config)
    if not scenes:
        results["notes"].append(f"{field_type}: no scenes (data or simulator missing)")
        return
    for m in methods:
        m.received.clear()
    accs = {m.name: _Accumulator() for m in methods}
    median = _Accumulator()
    for scene in scenes:
        _run_scene(scene, methods, accs, median, config)
    summary = _field_summary(scenes)
    median_inpaint = median.inpaint_summary()
    summary["median_fallback"] = median_inpaint
    summary["methods"] = {m.name: _method_summary(accs[m.name], m.received, (median_inpaint or {}).get("rms"),
                                                  config) for m in methods}
    summary["inputs_identical"] = _identical(summary["methods"])
    results["fields"][field_type] = summary
    log(f"{field_type}: {len(scenes)} scenes, {summary['pixels'] / 1e6:.2f} Mpix, "
        f"{summary['injected_rays']} rays, {time.perf_counter() - start:.1f} s")


def _identical(per_method: dict) -> bool:
    """Every method got the same images; those given an ignore mask got the same one."""
    images = {tuple(m["input_checksums"]) for m in per_method.values()}
    ignores = {tuple(m["ignore_checksums"]) for m in per_method.values() if all(m["ignore_checksums"])}
    return len(images) <= 1 and len(ignores) <= 1


def _config_dict(config: BenchmarkConfig) -> dict:
    out = asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


# ================================================================================================
# Presentation
# ================================================================================================
def _pct(x: float) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def _fpr_label(fpr: float) -> str:
    return f"{100 * fpr:g}%"


def markdown_table(results: dict) -> str:
    """A markdown table, method x field type, with a caption saying how it was measured."""
    cfg = results["config"]
    fprs = cfg["target_fprs"]
    key = "tpr_dilated_at_fpr" if cfg["dilate"] else "tpr_at_fpr"
    recall_key = "object_recall_dilated" if cfg["dilate"] else "object_recall"
    head = (["field", "method"] + [f"TPR @ FPR {_fpr_label(f)}" for f in fprs]
            + [f"object recall @ {_fpr_label(cfg['recall_fpr'])}", "inpaint RMS e- (x median)", "s / Mpix"])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for field_type, summary in results["fields"].items():
        for name, m in summary["methods"].items():
            below = [f < m.get("lowest_fpr", 0.0) for f in fprs]  # reached only by mixing with "flag nothing"
            cells = [field_type, name] + [_pct(m[key][str(f)]) + ("†" if b else "") for f, b in zip(fprs, below)]
            cells.append(_pct(m[recall_key]) + ("†" if cfg["recall_fpr"] < m.get("lowest_fpr", 0.0) else ""))
            inp = m["inpaint"]
            cells.append("-" if inp is None else f"{inp['rms']:.3g} ({inp.get('rms_vs_median', float('nan')):.2f})")
            cells.append(f"{m['seconds_per_mpix']:.2f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", *_caption(results)]) + "\n"


def _caption(results: dict) -> list[str]:
    cfg = results["config"]
    convention = ("TPR of the prediction dilated by a 3x3 kernel (deepCR paper convention), FPR undilated"
                  if cfg["dilate"] else "TPR and FPR of the undilated prediction")
    lines = [f"- {convention}; ignored pixels count as neither positives nor negatives; rates interpolated "
             "linearly in FPR between operating points (probability thresholds; astroscrappy's sigclip sweep). "
             "† marks an FPR below the method's lowest operating point, reached only by mixing it with "
             "flagging nothing (the value is that mix's expected TPR).",
             "- Object recall: fraction of injected cosmic rays (8-connected) with at least half their pixels found.",
             "- Inpaint RMS: on the true cosmic-ray pixels against the scene without them; in brackets, relative "
             "to the 5x5 median fallback. s / Mpix: detection only (sigclip sweeps: per run), "
             f"{cfg.get('threads') or 'default'} thread(s) per method, {cfg['device']}.",
             "- Every method receives the same image (ignored pixels median-filled) and ignore mask; "
             f"checksums identical: {results['inputs_identical']}."]
    for field_type, s in results["fields"].items():
        median = s["median_fallback"]
        lines.append(f"- `{field_type}`: {len(s['scenes'])} scenes, {s['pixels'] / 1e6:.2f} Mpix, "
                     f"{s['injected_rays']} cosmic rays ({100 * s['truth_fraction']:.2f}% of pixels), "
                     f"{100 * s['ignored_fraction']:.2f}% ignored; median-fallback RMS "
                     f"{'-' if median is None else format(median['rms'], '.3g')} e-.")
    lines += [f"- `{name}`: {desc}" for name, desc in results["methods"].items()]
    lines += [f"- note: {n}" for n in results["notes"]]
    return lines


def plot_rocs(results: dict, directory: str | os.PathLike) -> list[Path]:
    """One ROC plot per field type (``roc_<field>.png``): TPR against log FPR, every method.

    Returns
    -------
    list of Path
        The files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    what = "tpr_dilated" if results["config"]["dilate"] else "tpr"
    written = []
    for field_type, summary in results["fields"].items():
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for i, (name, m) in enumerate(summary["methods"].items()):
            curve = m["curve"]
            fpr, tpr = np.asarray(curve["fpr"]), np.asarray(curve[what])
            keep = fpr > 0
            # identical networks give identical curves: distinct dashes keep both visible
            sweep = name in SWEEP_METHODS
            style = {"marker": "os^"[i % 3], "ms": 3} if sweep else {"ls": ("-", "--", "-.", ":")[i % 4]}
            ax.plot(fpr[keep], tpr[keep], label=name, lw=1.5, **style)
        for f in results["config"]["target_fprs"]:
            ax.axvline(f, color="0.8", lw=0.8, ls=":")
        ax.set(xscale="log", xlim=(1e-5, 1e-1), ylim=(0, 1), xlabel="false positive rate",
               ylabel="true positive rate" + (" (3x3 dilated)" if what == "tpr_dilated" else ""),
               title=f"{field_type}: {summary['injected_rays']} injected rays, {summary['pixels'] / 1e6:.2f} Mpix")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        path = directory / f"roc_{field_type}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def save_results(results: dict, directory: str | os.PathLike, *, plots: bool = True) -> list[Path]:
    """Write ``quality.md``, ``quality.json`` and (optionally) ``roc_*.png`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    md, js = directory / "quality.md", directory / "quality.json"
    md.write_text("# Detection and inpainting quality\n\n" + markdown_table(results))
    text = json.dumps(results, indent=1, default=_json_default)
    # one line per list of numbers or strings: the curves would otherwise take a line per value
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    js.write_text(text + "\n")
    return [md, js] + (plot_rocs(results, directory) if plots else [])


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# ================================================================================================
# Command line
# ================================================================================================
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deepcr-dask evaluate",
                                description="Injection-recovery benchmark: ROC, TPR at fixed FPR, per-object recall, "
                                            "inpainting error and speed of each method on real and simulated fields.")
    p.add_argument("--quick", action="store_true", help="small configuration (seconds; used in CI)")
    p.add_argument("--output", default="evaluate-results", help="folder for quality.md, quality.json and roc_*.png")
    p.add_argument("--models", nargs="+", default=["ACS-WFC"], help="mask models for cleaner and deepcr")
    p.add_argument("--methods", nargs="+", default=["cleaner", "deepcr", "astroscrappy"],
                   choices=["cleaner", "deepcr", *SWEEP_METHODS],
                   help="lacosmic and dfcosmic are optional packages, used when installed")
    p.add_argument("--fields", nargs="+", choices=REAL_FIELDS + SIM_FIELDS, help="field types (default: all)")
    p.add_argument("--inpaint", default="ACS-WFC-F606W-2-32",
                   help="inpaint network for cleaner and deepcr, or 'none' for the median fallback")
    p.add_argument("--dilate", action="store_true", help="tabulate the deepCR paper's convention (3x3-dilated TPR)")
    p.add_argument("--data-dir", help="real frames folder (default $DEEPCR_DASK_REAL_DATA or ../shared/data/real)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch and OpenMP threads per method (0: leave as is)")
    p.add_argument("--no-plots", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> BenchmarkConfig:
    """The :class:`BenchmarkConfig` for parsed ``deepcr-dask evaluate`` arguments."""
    from .zoo import get_spec

    methods = []
    for kind in args.methods:
        if kind in SWEEP_METHODS:
            methods.append(kind)
        else:  # deepCR itself only runs the models of its own zoo
            models = [m for m in args.models if kind != "deepcr" or get_spec(m, "mask").source == "deepcr"]
            methods += [f"{kind}:{m}" for m in models]
    overrides = {"methods": tuple(methods), "inpaint": None if args.inpaint.lower() == "none" else args.inpaint,
                 "dilate": args.dilate, "data_dir": args.data_dir, "device": args.device,
                 "threads": args.threads or None}
    if args.fields:
        overrides["fields"] = tuple(args.fields)
    return BenchmarkConfig.quick(**overrides) if args.quick else replace(BenchmarkConfig(), **overrides)


def evaluate_main(argv: list[str] | None = None) -> int:
    """``deepcr-dask evaluate``: run the benchmark, print the table, write results to ``--output``."""
    args = _parser().parse_args(argv)
    config = config_from_args(args)
    start = time.perf_counter()
    results = run_benchmark(config)
    results["seconds"] = time.perf_counter() - start
    print(markdown_table(results))
    for path in save_results(results, args.output, plots=not args.no_plots):
        print(f"wrote {path}")
    return 0
