"""Repeat exposures of one pointing: finding them, and fusing what they say with the network's probability.

**Groups.** Exposures travel together when they show the same sky through the same camera: the imsets of
one STIS file taken as a CR-SPLIT or REPEAT-OBS series; HST files of one association (``ASN_ID``); HST
files of one visit (the rootname's first six characters) with the same instrument, detector, filter and
chips whose pointings agree to within :data:`ALIGNED_PX`. Further apart (a dither) they are aligned
through the WCS with ``reproject`` when it is installed, or cleaned as single frames with a note.
Ground frames are cleaned as single frames.

**Fusion**, per pixel of exposure ``k`` (like calacs' ``acsrej`` and calstis' ``ocrreject``, with the
network deciding inside): the other exposures give a reference rate (their median; for a pair, the other
one), taken as the maximum over the 3x3 neighbourhood so that a star's core shifted by a fraction of a
pixel still agrees. The excess ``z = (rate_k - reference) / sigma`` uses each exposure's own noise (ERR,
or Poisson plus read noise) and a term ``SCALE_NOISE x reference`` for PSF and pointing differences.

The evidence enters as a likelihood ratio added to the network's log-odds (:func:`evidence_logodds`):
without a cosmic ray ``z`` is normal noise, with one it carries an extra charge of 1 to 1000 sigma. A pixel
that agrees with the other exposures (``z`` near 0, -3.2 in log-odds) is not a cosmic ray however sure the
network is (this is what keeps crowded fields' star cores); one far above them (``z`` > 5, +10 and more) is
one however unsure it is; in between both count. Agreement counts against a cosmic ray only where the
other exposures show a source (3 sigma above their 9x9 median): on empty sky the network's reading of a
faint ray's shape is trusted, and only excess counts. Where fewer than two exposures see the pixel, the
network's probability stands. The fused probability is thresholded as usual, so the threshold keeps its
meaning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..io.fits import ExposureInfo

__all__ = ["ALIGNED_PX", "SCALE_NOISE", "Group", "evidence_logodds", "fuse", "group_exposures", "offset_px"]

CHARGE_RANGE = (1.0, 1000.0)  # a cosmic ray's excess over the noise, in sigma
LIMIT_LOGODDS = 12.0
SCALE_NOISE = 0.05
ALIGNED_PX = 0.5


@dataclass
class Group:
    """Exposures to clean together: several files, or one file's imsets (``within_file``)."""

    paths: list[str]
    within_file: bool = False
    offsets: dict[str, tuple[float, float]] = field(default_factory=dict)  # path -> (dx, dy) px from the first
    note: str = ""

    @property
    def key(self) -> str:
        return "+".join(sorted(self.paths)) if not self.within_file else f"{self.paths[0]}[imsets]"


def offset_px(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float] | None:
    """Where exposure ``b``'s reference pixel falls on ``a``'s pixel grid, minus ``b``'s own (linear WCS).

    Both are ``(CRVAL1, CRVAL2, CRPIX1, CRPIX2, CD1_1, CD1_2, CD2_1, CD2_2)``. None when the orientations
    differ by more than a thousandth (a rotation is not a small shift).
    """
    if a is None or b is None:
        return None
    cd_a, cd_b = np.array(a[4:]).reshape(2, 2), np.array(b[4:]).reshape(2, 2)
    if not np.allclose(cd_a, cd_b, rtol=1e-3, atol=1e-3 * float(np.abs(cd_a).max())):
        return None
    # Sky offset of b's reference point from a's, in degrees (tangent plane, small angles).
    dra = (b[0] - a[0]) * math.cos(math.radians(a[1]))
    ddec = b[1] - a[1]
    try:
        pixel = np.linalg.solve(cd_a, [dra, ddec])
    except np.linalg.LinAlgError:
        return None
    dx = a[2] + pixel[0] - b[2]
    dy = a[3] + pixel[1] - b[3]
    return float(dx), float(dy)


def _same_camera(a: ExposureInfo, b: ExposureInfo) -> bool:
    return (a.instrument, a.detector, a.filter, [c.name for c in a.chips], [c.shape for c in a.chips]) == \
        (b.instrument, b.detector, b.filter, [c.name for c in b.chips], [c.shape for c in b.chips])


def group_exposures(infos: Sequence[ExposureInfo], *, aligned_px: float = ALIGNED_PX,
                    resample: bool | None = None) -> list[Group]:
    """Groups of repeat exposures among ``infos`` (single files come back as groups of one).

    Parameters
    ----------
    infos : ExposureInfo
        Files to clean (images only).
    aligned_px : float
        Largest pointing difference (pixels) compared pixel to pixel.
    resample : bool, optional
        Align farther pointings with ``reproject`` (default: when it is installed).
    """
    if resample is None:
        try:
            import reproject  # noqa: F401

            resample = True
        except ImportError:
            resample = False
    groups: list[Group] = []
    pending: dict[tuple, list[ExposureInfo]] = {}
    for info in infos:
        if info.repeats > 1:
            groups.append(Group([info.path], within_file=True, note=f"{info.repeats} imsets of one pointing"))
            continue
        if info.telescope != "HST" or not info.chips:
            groups.append(Group([info.path]))
            continue
        pending.setdefault((info.asn_id or info.visit, info.instrument, info.detector, info.filter), []).append(info)
    for members in pending.values():
        while members:
            first, rest = members[0], members[1:]
            group = Group([first.path], offsets={first.path: (0.0, 0.0)})
            remaining = []
            for other in rest:
                offset = offset_px(first.chips[0].wcs, other.chips[0].wcs) if _same_camera(first, other) else None
                if offset is None:
                    remaining.append(other)
                elif math.hypot(*offset) <= aligned_px or resample:
                    group.paths.append(other.path)
                    group.offsets[other.path] = offset
                else:
                    remaining.append(other)
                    group.note = (f"{other.path} lies {math.hypot(*offset):.1f} px away: aligning it needs the "
                                  "`reproject` package; cleaned as a single frame")
            if len(group.paths) > 1:
                shifted = max(math.hypot(*o) for o in group.offsets.values())
                group.note = group.note or (f"{len(group.paths)} exposures" +
                                            (f", aligned by WCS (up to {shifted:.1f} px)" if shifted > aligned_px
                                             else ""))
            groups.append(group)
            members = remaining
    return groups


def _evidence_table(limit: float) -> tuple[np.ndarray, np.ndarray]:
    z = np.linspace(-10.0, 12.0, 441)
    charge = np.geomspace(CHARGE_RANGE[0], CHARGE_RANGE[1], 4000)  # sigma units, log-uniform
    density = np.exp(-0.5 * (z[:, None] - charge[None]) ** 2) / np.sqrt(2 * np.pi)
    cosmic = np.trapezoid(density / (charge * np.log(CHARGE_RANGE[1] / CHARGE_RANGE[0])), charge, axis=1)
    noise = np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
    return z, np.clip(np.log(cosmic) - np.log(noise), -limit, limit)


def evidence_logodds(z: np.ndarray, *, limit: float = LIMIT_LOGODDS) -> np.ndarray:
    """How much an exposure's excess ``z`` over the others shifts the log-odds that a pixel is a cosmic ray.

    Without a cosmic ray ``z`` is normal noise; a cosmic ray adds a charge of 1 to 1000 sigma, taken
    log-uniform (faint wings are as common as bright cores). The log-likelihood ratio of the two, clipped to
    ``+-limit``: -3.2 at ``z = 0`` (agrees: not a cosmic ray whatever the network says), 0.1 at 2, +2.5 at 3,
    +9.9 at 5 (far above: a cosmic ray whatever the network says).
    """
    grid, table = _evidence_table(limit) if limit != LIMIT_LOGODDS else _TABLE
    return np.interp(z, grid, table)


_TABLE = _evidence_table(LIMIT_LOGODDS)


def fuse(rates: Sequence[np.ndarray], sigmas: Sequence[np.ndarray], probabilities: Sequence[np.ndarray],
         ignores: Sequence[np.ndarray], *,
         scale_noise: float = SCALE_NOISE) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Fuse the evidence of aligned repeat exposures with each one's network probability.

    Parameters
    ----------
    rates, sigmas : sequences of 2-D arrays
        Each exposure in electrons per second and its noise sigma in the same unit.
    probabilities : sequence of 2-D arrays
        The network's cosmic-ray probability of each exposure.
    ignores : sequence of 2-D bool arrays
        Pixels each exposure cannot vouch for (bad, saturated, NaN, outside after alignment).

    Returns
    -------
    fused : list of 2-D float32 arrays
        ``sigmoid(logit(p) + evidence_logodds(z))`` where the others see the pixel, ``p`` elsewhere.
    excess : list of 2-D float32 arrays
        ``z`` of each exposure against the others (NaN where it has no reference): the multi-exposure
        evidence alone.
    """
    stack = np.stack([np.where(ign, np.nan, r) for r, ign in zip(rates, ignores)]).astype(np.float64)
    variances = np.stack([np.square(s) for s in sigmas]).astype(np.float64)
    fused, excess = [], []
    for k in range(len(stack)):
        others = np.delete(stack, k, axis=0)
        with np.errstate(all="ignore"):
            count = np.sum(np.isfinite(others), axis=0)
            reference = np.nanmedian(others, axis=0) if len(others) > 1 else others[0]
            ref_var = np.nanmean(np.delete(variances, k, axis=0), axis=0)
            if len(others) > 1:  # the variance of a median of n values: about pi / 2 / n of one
                ref_var = ref_var * (math.pi / 2) / np.maximum(count, 1)
        # Tolerance for small shifts and PSF changes: where the reference has structure (a star), the
        # brightest neighbour's value counts as agreeing too.
        local_max = ndimage.maximum_filter(np.nan_to_num(reference, nan=-np.inf), size=3)
        structure = np.where(np.isfinite(reference), local_max - reference, 0.0)
        structure = np.where(structure > 3 * np.sqrt(ref_var), structure, 0.0)
        sigma = np.sqrt(variances[k] + ref_var + (scale_noise * np.clip(reference, 0, None)) ** 2 + structure**2)
        with np.errstate(all="ignore"):
            z = (stack[k] - reference) / sigma
        seen = np.isfinite(z)
        # Where the others show a source, agreement with them is what tells a star from a cosmic ray, and
        # counts against; on empty sky the network's reading of a faint ray's shape is trusted, and only
        # the excess (more evidence for a ray) counts.
        background = ndimage.median_filter(np.nan_to_num(reference), size=9)
        source = np.nan_to_num(reference - background) > 3 * np.sqrt(ref_var)
        source = ndimage.binary_dilation(source, iterations=1)
        evidence = evidence_logodds(np.nan_to_num(z))
        evidence = np.where(source | (evidence > 0), evidence, 0.0)
        p = np.clip(np.asarray(probabilities[k], np.float64), 1e-6, 1 - 1e-6)
        logodds = np.log(p / (1 - p)) + np.where(seen, evidence, 0.0)
        fused.append(np.where(seen, 1 / (1 + np.exp(-logodds)), probabilities[k]).astype(np.float32))
        excess.append(np.where(seen, z, np.nan).astype(np.float32))
    return fused, excess
