"""astropy CCDData in and out: units converted at the boundary, masks, uncertainty, WCS and meta kept.

The networks work in electrons. :func:`clean_ccd` converts a ``CCDData`` to electrons (adu through the
gain, per-second units through the exposure time), cleans it, and returns a new ``CCDData`` in the input's
unit, as ccdproc's ``cosmicray_lacosmic`` does: the input mask is ignored (never flagged, never used to
fill) and OR-ed with the cosmic-ray mask, the uncertainty at replaced pixels becomes that of their
neighbours, and the provenance goes into ``meta``.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .fill import median_fill

__all__ = ["ccd_to_electrons", "clean_ccd", "is_ccd"]

GAIN_KEYS = ("GAIN", "CCDGAIN", "ATODGAIN", "EGAIN")
EXPTIME_KEYS = ("EXPTIME", "EXPOSURE", "TEXPTIME")


def is_ccd(obj) -> bool:
    """True for astropy NDData objects (CCDData and its kin) that carry a unit."""
    try:
        from astropy.nddata import NDData
    except ImportError:  # pragma: no cover - astropy is a core dependency
        return False
    return isinstance(obj, NDData)


def meta_number(meta, keys) -> float | None:
    """The first of `keys` in `meta` that holds a finite positive number (a Quantity by its value)."""
    for key in keys:
        value = meta.get(key) if meta is not None else None
        if value is not None:
            try:
                number = float(getattr(value, "value", value))
            except (TypeError, ValueError):
                continue
            if np.isfinite(number) and number > 0:
                return number
    return None


def ccd_to_electrons(ccd, gain=None) -> tuple[np.ndarray, np.ndarray, float]:
    """``(electrons float32, ignored, factor)``: electrons = data x factor.

    Parameters
    ----------
    ccd : CCDData
        With a unit: electron, adu, electron / s or adu / s (count-like units: photon, ct, are read as
        adu).
    gain : float or Quantity, optional
        Electrons per adu; default the GAIN (CCDGAIN, ATODGAIN, EGAIN) keyword of ``meta``.

    Raises
    ------
    InputError
        When the unit is missing or not convertible, or a gain or exposure time it needs is not known.
    """
    import astropy.units as u

    unit = ccd.unit
    if unit is None or unit == u.dimensionless_unscaled:
        raise InputError("CCDData has no unit: give it one (electron, adu, electron / s or adu / s)")
    factor = 1.0
    per_second = False
    if unit.is_equivalent(u.electron / u.s):
        factor, per_second = (1.0 * unit).to_value(u.electron / u.s), True
    elif unit.is_equivalent(u.adu / u.s):
        factor, per_second = (1.0 * unit).to_value(u.adu / u.s), True
    elif unit.is_equivalent(u.electron):
        factor = (1.0 * unit).to_value(u.electron)
    elif not unit.is_equivalent(u.adu):
        raise InputError(f"CCDData unit {unit} is not electrons or adu (per second or not): cannot convert")
    if unit.is_equivalent(u.adu) or unit.is_equivalent(u.adu / u.s):
        value = meta_number({"gain": gain}, ("gain",)) if gain is not None else meta_number(ccd.meta, GAIN_KEYS)
        if value is None:
            raise InputError(f"CCDData in {unit}: give gain= (electrons per adu) or a GAIN keyword in meta")
        factor *= value
    if per_second:
        exptime = meta_number(ccd.meta, EXPTIME_KEYS)
        if exptime is None:
            raise InputError(f"CCDData in {unit}: needs an EXPTIME keyword in meta to convert to electrons")
        factor *= exptime
    data = np.asarray(ccd.data)
    if data.ndim != 2:
        raise InputError(f"CCDData: expected a 2-D image, got shape {data.shape}")
    ignored = ~np.isfinite(data)
    if ccd.mask is not None:
        ignored |= np.broadcast_to(np.asarray(ccd.mask, bool), data.shape)
    return (data.astype(np.float64) * factor).astype(np.float32), ignored, float(factor)


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

    from .cleaner import get_cleaner
    from .model_choice import default_model
    from .provenance import Provenance

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
