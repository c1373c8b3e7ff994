"""astropy CCDData in and out: units converted at the boundary, masks, uncertainty, WCS and meta kept.

The networks work in electrons. :func:`clean_ccd` converts a ``CCDData`` to electrons (adu through the
gain, per-second units through the exposure time), cleans it, and returns a new ``CCDData`` in the input's
unit, as ccdproc's ``cosmicray_lacosmic`` does: the input mask is ignored (never flagged, never used to
fill) and OR-ed with the cosmic-ray mask, the uncertainty at replaced pixels becomes that of their
neighbours, and the provenance goes into ``meta``.
"""

from __future__ import annotations

import numpy as np

from .inference.fill import median_fill
from .inference.units import ccd_to_electrons, is_ccd

__all__ = ["ccd_to_electrons", "clean_ccd", "is_ccd"]

def _neighbour_sigma(sigma: np.ndarray, replaced: np.ndarray) -> np.ndarray:
    """Each replaced pixel's sigma: the median over its unreplaced neighbours (5x5, as the median fill)."""
    sigma = np.asarray(sigma, np.float32)
    good = ~replaced & np.isfinite(sigma)
    background = float(np.median(sigma[good])) if good.any() else 0.0
    return median_fill(sigma, replaced, good, background=background)


def clean_ccd(ccd, *, mask: str | None = None, inpaint: str | None = None, threshold: float | None = None,
              fpr: float | None = None, gain=None, device: str = "auto"):
    """Detect and replace cosmic rays in a ``CCDData``; a new ``CCDData`` in the input's unit.

    Parameters
    ----------
    ccd : astropy.nddata.CCDData
        2-D, with a unit (see :func:`ccd_to_electrons`); its ``mask`` marks pixels to ignore.
    mask : str, optional
        Mask model; default chosen from ``meta``'s TELESCOP / INSTRUME / DETECTOR as the archive does
        (``generic-HST`` when ``meta`` says nothing).
    inpaint : str, optional
        Inpaint model; a local median of good pixels when None.
    threshold, fpr : float, optional
        Probability threshold, or a false-positive rate the model records (not both).
    gain : float or Quantity, optional
        Electrons per adu for adu data (default the GAIN keyword).
    device : str

    Returns
    -------
    CCDData
        ``data``: float32 in the input's unit, cosmic-ray pixels replaced; ``mask``: the input mask OR the
        cosmic rays; ``uncertainty``: the input's, with replaced pixels given their neighbours' value
        (same class); ``wcs`` and ``meta`` kept, with CRMODEL, CRTHRESH, CRNPIX... and a HISTORY line.
    """
    from astropy.nddata import CCDData, StdDevUncertainty

    from .inference.cleaner import get_cleaner
    from .models.choice import default_model
    from .models.provenance import Provenance

    electrons, ignored, factor = ccd_to_electrons(ccd, gain)
    meta = ccd.meta if ccd.meta is not None else {}
    if mask is None:
        def text(key):
            return str(meta.get(key, "") or "").strip().upper()

        mask = default_model(text("INSTRUME"), text("DETECTOR"), text("TELESCOP"))
    cleaner = get_cleaner(mask, inpaint, device)
    used = cleaner.threshold_for(threshold, fpr)
    crmask, cleaned = cleaner.clean(electrons, threshold=used, inpaint=True, ignore=ignored)
    data = (cleaned.astype(np.float64) / factor).astype(np.float32)
    data[ignored] = np.asarray(ccd.data, np.float32)[ignored]  # ignored pixels come back exactly as they were
    uncertainty = None
    if ccd.uncertainty is not None:
        kind = type(ccd.uncertainty)
        std = ccd.uncertainty.represent_as(StdDevUncertainty)
        sigma = _neighbour_sigma(np.broadcast_to(std.array, data.shape), crmask) if crmask.any() else std.array
        uncertainty = StdDevUncertainty(sigma, unit=std.unit).represent_as(kind)
    combined = crmask if ccd.mask is None else (np.asarray(ccd.mask, bool) | crmask)
    out_meta = meta.copy()
    provenance = Provenance.of(cleaner, mask, used, inpaint)
    for key, (value, _) in provenance.fits_cards(0, int(crmask.sum())).items():
        if key != "CRBIT":  # no DQ array here: the cosmic rays are in the mask
            out_meta[key] = value
    history = provenance.history(0, int(crmask.sum())).replace(" with DQ bit 0", " in the mask")
    if hasattr(out_meta, "add_history"):
        out_meta.add_history(history)
    else:
        out_meta["HISTORY"] = [*list(np.atleast_1d(out_meta.get("HISTORY", []))), history]
    return CCDData(data, unit=ccd.unit, mask=combined, uncertainty=uncertainty, wcs=ccd.wcs, meta=out_meta)
