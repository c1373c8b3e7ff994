"""Per-chip quality gates: is a chip's cosmic-ray mask believable, or does it flag the sky's own structure?

Two tests, each against what cosmic rays alone would do:

* **Flagged fraction.** Cosmic rays affect "1.5% to 3% [of pixels] during a 1000 second exposure" on ACS/WFC
  and ACS/HRC, "similar to what was seen on WFPC2 and STIS" (ACS Instrument Handbook, section 4.3.7, Cosmic
  Rays), and "the cosmic-ray fluxes for WFC3 UVIS are comparable to the levels seen in ACS, STIS CCD, and
  WFPC2" (WFC3 Instrument Handbook, section 6.10.2). For HST CCDs the expected fraction is therefore at
  most 3% x EXPTIME / 1000 s. On the ground, secondary muons arrive at about 1 per cm^2 per minute at sea
  level; with a sensor's own radioactivity we allow 0.05 per cm^2 per second (the imSim ITL lab darks
  measured 0.072), each spreading over up to 20 pixels of a thick CCD. A chip flags too much when it
  flags more than :data:`FRACTION_FACTOR` times the expected fraction, and more than 0.1% of its pixels
  and 500 pixels (small chips and short exposures see a few long rays).
* **Point-source cores.** A cosmic ray lands on a star's core about as often as on any other pixel. Stars
  are local maxima whose 5x5 median (which a cosmic ray cannot raise) is 10 sigma above the sky; a core
  is the peak grown by 2 px (13 pixels). A chip is suspect when it has at least 20 stars and more of their cores
  carry flags than :data:`CORE_FACTOR` times what its expected cosmic-ray fraction would hit, and at least
  20% of them: the network is flagging stars (WFPC2's undersampled cores, crowded fields).

A suspect chip is flagged but not inpainted unless asked (``--inpaint-suspect``); its reasons go to the
manifest, the FITS header and the run summary. :func:`run_outliers` adds the run's own view: chips whose
flagged fraction lies far above the other chips of their instrument in the same run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

__all__ = ["CORE_FACTOR", "FRACTION_FACTOR", "Gate", "check_chip", "expected_fraction", "run_outliers"]

HST_FRACTION_PER_KS = 0.03  # the upper end of the ACS Instrument Handbook's 1.5-3% per 1000 s
GROUND_RATE_PER_CM2_S = 0.05
GROUND_PIXELS_PER_RAY = 20
FRACTION_FACTOR = 3.0
FLOOR_FRACTION, FLOOR_PIXELS = 0.001, 500
CORE_FACTOR = 5.0
CORE_GROW = 2
MIN_STARS, MIN_CORE_SHARE = 20, 0.2


@dataclass(frozen=True)
class Gate:
    """The gates' verdict on one chip."""

    flagged_fraction: float
    expected_fraction: float
    stars: int = 0
    cores_flagged: int = 0
    reasons: tuple[str, ...] = ()

    @property
    def suspect(self) -> bool:
        return bool(self.reasons)


def expected_fraction(exptime: float | None, *, space: bool, pixel_um: float = 15.0) -> float:
    """The largest fraction of pixels cosmic rays alone should touch in an exposure (see the module docstring)."""
    seconds = float(exptime or 0.0)
    if space:
        return HST_FRACTION_PER_KS * seconds / 1000.0
    area_cm2 = (pixel_um * 1e-4) ** 2
    return GROUND_RATE_PER_CM2_S * seconds * area_cm2 * GROUND_PIXELS_PER_RAY


def star_cores(image: np.ndarray, ignore: np.ndarray) -> tuple[np.ndarray, int]:
    """Labelled cores of point sources and their number.

    A source peak is a local maximum (5x5) whose 5x5 median, which a cosmic ray cannot raise, stands 10
    sigma above the sky; the median is taken at the candidate peaks only (the whole frame's would cost
    a third of the network's time).
    """
    usable = ~ignore & np.isfinite(image)
    valid = image[usable]
    if valid.size < 100:
        return np.zeros(image.shape, np.int32), 0
    sky = float(np.median(valid))
    sigma = 1.4826 * float(np.median(np.abs(valid - sky))) or 1.0
    filled = np.where(usable, image, sky).astype(np.float32)
    peaks = (filled == ndimage.maximum_filter(filled, 5)) & (filled > sky + 10 * sigma)
    ys, xs = np.nonzero(peaks)
    if ys.size:
        windows = sliding_window_view(np.pad(filled, 2, mode="edge"), (5, 5))[ys, xs].reshape(ys.size, 25)
        source = np.median(windows, axis=1) > sky + 10 * sigma
        peaks = np.zeros(image.shape, bool)
        peaks[ys[source], xs[source]] = True
    cores = ndimage.binary_dilation(peaks, iterations=CORE_GROW)
    labels, n = ndimage.label(cores)
    return labels, int(n)


def check_chip(mask: np.ndarray, image: np.ndarray, ignore: np.ndarray, *, exptime: float | None, space: bool,
               pixel_um: float = 15.0) -> Gate:
    """The gates for one chip's mask (pixels of ``image`` in electrons; ``ignore`` as the Cleaner used it)."""
    valid = ~ignore
    n_valid = max(int(valid.sum()), 1)
    flagged = int((mask & valid).sum())
    fraction = flagged / n_valid
    expected = expected_fraction(exptime, space=space, pixel_um=pixel_um)
    reasons = []
    allowed = max(FRACTION_FACTOR * expected * n_valid, FLOOR_FRACTION * n_valid, FLOOR_PIXELS)
    if flagged > allowed:
        reasons.append(f"flags {fraction:.2%} of its pixels, over {FRACTION_FACTOR:g}x the {expected:.2%} cosmic "
                       f"rays can touch in {exptime or 0:g} s")
    labels, stars = star_cores(image, ignore)
    hit = 0
    if stars:
        hit = int(np.count_nonzero(np.unique(labels[mask & (labels > 0)])))
        core_pixels = (2 * CORE_GROW * (CORE_GROW + 1)) + 1
        by_chance = 1.0 - (1.0 - max(expected, FLOOR_FRACTION)) ** core_pixels
        share = hit / stars
        if stars >= MIN_STARS and share > max(MIN_CORE_SHARE, CORE_FACTOR * by_chance):
            reasons.append(f"flags the cores of {hit} of {stars} stars ({share:.0%}; cosmic rays would hit "
                           f"{by_chance:.1%})")
    return Gate(fraction, expected, stars, hit, tuple(reasons))


def run_outliers(fractions: dict[tuple[str, str], tuple[str, float]], *, minimum: int = 5,
                 spread: float = 5.0) -> dict[tuple[str, str], str]:
    """Chips whose flagged fraction lies far above the others of their instrument in the same run.

    Parameters
    ----------
    fractions : dict
        ``(path, chip) -> (instrument, flagged fraction)``.
    minimum : int
        Chips of an instrument needed before its distribution says anything.
    spread : float
        How many robust standard deviations (1.4826 MAD) above the median count as far.

    Returns
    -------
    dict
        ``(path, chip) -> reason`` for the outliers.
    """
    by_instrument: dict[str, list[tuple[tuple[str, str], float]]] = {}
    for key, (instrument, fraction) in fractions.items():
        by_instrument.setdefault(instrument, []).append((key, fraction))
    out = {}
    for instrument, items in by_instrument.items():
        if len(items) < minimum:
            continue
        values = np.array([f for _, f in items])
        median = float(np.median(values))
        scale = 1.4826 * float(np.median(np.abs(values - median))) or max(median, 1e-6) * 0.1
        for key, fraction in items:
            if fraction > median + spread * scale:
                out[key] = (f"flags {fraction:.2%}, far above the run's other {instrument or 'unknown-instrument'} "
                            f"chips (median {median:.2%})")
    return out
