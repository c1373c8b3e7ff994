"""Units at the boundary: astropy NDData (CCDData) to electrons, by its unit, gain and exposure time."""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["EXPTIME_KEYS", "GAIN_KEYS", "ccd_to_electrons", "is_ccd", "meta_number"]

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
