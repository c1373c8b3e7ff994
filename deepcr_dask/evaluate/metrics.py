"""Detection and inpainting metrics on numpy arrays: ROC curves, TPR at a fixed FPR, per-object recall,
inpainting error.

Ignored pixels count as neither positives nor negatives, and predictions on them never spread by dilation.
The deepCR paper's convention (TPR of the prediction dilated by a 3x3 kernel, FPR undilated) is computed
alongside the plain one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import ndimage

__all__ = [
    "FOOTPRINTS",
    "RocCurve",
    "Tally",
    "confusion",
    "default_thresholds",
    "inpainting_error",
    "object_recall",
    "roc_curve",
    "roc_from_masks",
    "tally_masks",
    "tally_scores",
    "tpr_at_fpr",
]

FOOTPRINTS = {
    "square": np.ones((3, 3), bool),  # the 3x3 dilation
    "cross": np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool),  # deepCR's code: skimage disk(1)
}


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
