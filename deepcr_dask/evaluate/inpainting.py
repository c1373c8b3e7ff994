"""Inpainting judged on real pairs: the other exposure's pixels are the truth under a ray.

For each exposure of a real repeat pair, the mask is its pair-difference rays grown by one pixel (as a
detector's mask would be); every inpainter fills that mask and is scored where the other exposure, scaled
to this one's time, is a clean reference: off its own rays and off hot and saturated pixels. The RMS
includes the reference's own noise (the same for every inpainter); the bias shows an inpainter that spreads
a ray's wings into its fill.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ..inference.fill import median_fill
from .methods import prepare_inputs

__all__ = ["MEDIAN", "pair_inpainting", "pair_masks"]

MEDIAN = "median"  # the 5x5 median fallback


def pair_masks(pair, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(mask to inpaint: exposure ``k``'s rays grown by a pixel, off ignored pixels; the pixels of it where
    the other exposure is a clean reference: off its own rays)."""
    from ..sim.pairs import AMBIGUOUS_SIGMA, pair_truth

    truth, _ = pair_truth(pair, k)
    mask = ndimage.binary_dilation(truth, np.ones((3, 3), bool)) & ~pair.ignore
    others = ndimage.binary_dilation(pair.significance(k) < -AMBIGUOUS_SIGMA, np.ones((3, 3), bool))
    return mask, mask & ~others


def _pair_cases(field: str, split: str, folder):
    """(image, ignore, mask, scored, reference) of each exposure of the real pairs."""
    from ..sim.pairs import split_pairs

    for pair in split_pairs(field, split, folder):
        for k in (0, 1):
            mask, scored = pair_masks(pair, k)
            yield pair.exposures[k], pair.ignore, mask, scored, pair.reference(k)


def _injected_cases(scenes):
    """(image, ignore, mask, scored, reference) of scenes with injected rays: the clean frame is exact."""
    for scene in scenes:
        mask = ndimage.binary_dilation(scene.truth, np.ones((3, 3), bool)) & ~scene.ignore
        yield scene.image, scene.ignore, mask, mask, scene.clean


def pair_inpainting(models: Sequence[str], field: str = "stis", split: str = "test", folder=None,
                    device: str = "cpu", scenes=None, mask: str = "ACS-WFC") -> dict[str, dict[str, float]]:
    """RMS, bias and count of each inpainter's error on the rays of real pairs (or of ``scenes``).

    Parameters
    ----------
    models : sequence of str
        Inpaint models (ours and deepCR's); the median fallback is always scored too (:data:`MEDIAN`).
    field : {"stis", "wht"}
    split : str
        STIS associations (``deepcr_dask.sim.harvest.HARVEST_SPLITS``).
    scenes : sequence of Sample, optional
        Instead of the pairs: scenes with injected rays (mask: the truth grown by one pixel; reference: the
        frame without them).
    mask : str
        The mask model of the Cleaner that inpaints (a standardised one standardises the inpaint network's
        input too; a "sky" model's shift is its own, the inpaint network sees the image as it is).

    Returns
    -------
    dict
        ``inpainter -> {"rms", "bias", "n"}`` (electrons), pooled over the exposures or scenes.
    """
    from ..inference.cleaner import Cleaner

    cases = _injected_cases(scenes) if scenes is not None else _pair_cases(field, split, folder)
    inpainters = {MEDIAN: None, **{m: Cleaner(mask, inpaint=m, device=device) for m in models}}
    sums = {name: [0.0, 0.0, 0] for name in inpainters}
    for image, ignore, mask, scored, reference in cases:
        inputs = prepare_inputs(image, ignore)
        for name, cleaner in inpainters.items():
            if cleaner is None:
                usable = ~(mask | inputs.ignore)
                filled = median_fill(inputs.image, mask, usable, background=float(np.median(inputs.image[usable])))
            else:
                filled = cleaner.inpaint(inputs.image, mask, ignore=inputs.ignore)
            diff = np.asarray(filled, np.float64)[scored] - np.asarray(reference, np.float64)[scored]
            sums[name][0] += float(np.sum(diff**2))
            sums[name][1] += float(np.sum(diff))
            sums[name][2] += int(diff.size)
    return {name: {"rms": math.sqrt(sq / n) if n else float("nan"), "bias": total / n if n else float("nan"),
                   "n": n} for name, (sq, total, n) in sums.items()}
