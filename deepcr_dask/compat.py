"""Drop-ins for the calls astronomers already have in their scripts: astroscrappy's ``detect_cosmics`` and
ccdproc's ``cosmicray_lacosmic``, with their names, order and defaults.

What a network needs from those calls is the data in electrons: ``gain`` converts to electrons and the
results come back in the input's units (as astroscrappy >= 1.1 returns them); ``inmask`` and ``satlevel``
mark pixels to ignore; ``inbkg`` (and ccdproc's ``pssl``) are taken off before the network and put back
after, where astroscrappy does. The L.A.Cosmic knobs (``sigclip``, ``objlim``, ``niter``, the PSF ...) have
no meaning for a network: they are accepted, and a call that sets one is told so once in a warning (the
network's own knob is the probability threshold, or ``fpr``: a false-positive rate the model records).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

from .errors import InputError
from .inference.cleaner import get_cleaner
from .inference.units import GAIN_KEYS, ccd_to_electrons, is_ccd, meta_number

__all__ = ["cosmicray_lacosmic", "detect_cosmics"]


class _Default(float):
    """A default value that prints as its number but tells that the caller did not give it."""


class _DefaultText(str):
    """The same for text defaults."""


# astroscrappy's and ccdproc's algorithm knobs: (name, default). sepmed and verbose are plain booleans.
_KNOBS = ("sigclip", "sigfrac", "objlim", "readnoise", "invar", "niter", "sepmed", "cleantype", "fsmode",
          "psfmodel", "psffwhm", "psfsize", "psfk", "psfbeta")
# Plain defaults of the knobs (sepmed, niter... cannot carry a marker): a value other than these was set.
_PLAIN_DEFAULTS = {"invar": None, "psfk": None, "niter": 4, "sepmed": True, "psfsize": 7}
_GIVEN_HELP = ("deepcr-dask flags pixels by the model's probability threshold (threshold=, or fpr= for a "
               "false-positive rate the model records) and fills them with the masked median or inpaint_model")


def _given(value, default) -> bool:
    """Whether the caller set a knob (a value other than the signature's own default object)."""
    if isinstance(value, (_Default, _DefaultText)):
        return False
    if isinstance(value, np.ndarray):
        return True
    return value is not default if default is None else value != default


def _warn_knobs(function: str, values: dict) -> None:
    given = [name for name in _KNOBS if name in values and _given(values[name], _PLAIN_DEFAULTS.get(name))]
    if given:
        warnings.warn(f"{function}: {', '.join(given)} {'has' if len(given) == 1 else 'have'} no meaning for a "
                      f"network and {'is' if len(given) == 1 else 'are'} ignored; {_GIVEN_HELP}",
                      UserWarning, stacklevel=3)


def _saturated(electrons: np.ndarray, satlevel: float) -> np.ndarray:
    """astroscrappy's saturated-star mask: pixels at or above ``satlevel`` (electrons) whose 5x5 median is
    above a tenth of it (a star's core, not a lone bright ray), grown by two pixels."""
    if not np.isfinite(satlevel):
        return np.zeros(electrons.shape, bool)
    level = np.nan_to_num(electrons, nan=0.0)
    cores = (level >= satlevel) & (ndimage.median_filter(level, size=5, mode="mirror") > satlevel / 10.0)
    return ndimage.binary_dilation(cores, structure=np.ones((5, 5), bool), iterations=1) if cores.any() else cores


def _clean_electrons(electrons, ignore, background, satlevel, *, model, threshold, fpr, inpaint_model,
                     device) -> tuple[np.ndarray, np.ndarray]:
    """The network's mask and the cleaned image, in electrons, with the background put back."""
    ignore = ignore | _saturated(electrons + background, satlevel)
    cleaner = get_cleaner(model, inpaint_model, device)
    crmask, cleaned = cleaner.clean(electrons, threshold=threshold, inpaint=True, ignore=ignore, fpr=fpr)
    return crmask, cleaned.astype(np.float64) + background


def _gain_value(gain) -> float:
    value = float(getattr(gain, "value", gain))
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"gain must be a positive number of electrons per ADU, got {gain!r}")
    return value


def detect_cosmics(
    indat,
    inmask=None,
    inbkg=None,
    invar=None,
    sigclip: float = _Default(4.5),
    sigfrac: float = _Default(0.3),
    objlim: float = _Default(5.0),
    gain: float = _Default(1.0),
    readnoise: float = _Default(6.5),
    satlevel: float = _Default(65536.0),
    niter: int = 4,
    sepmed: bool = True,
    cleantype: str = _DefaultText("meanmask"),
    fsmode: str = _DefaultText("median"),
    psfmodel: str = _DefaultText("gauss"),
    psffwhm: float = _Default(2.5),
    psfsize: int = 7,
    psfk=None,
    psfbeta: float = _Default(4.765),
    verbose: bool = False,
    *,
    model: str = "ACS-WFC",
    threshold: float | None = None,
    fpr: float | None = None,
    inpaint_model: str | None = None,
    device: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """astroscrappy's ``detect_cosmics``, with a network: ``(crmask, cleanarr)``.

    Parameters
    ----------
    indat : 2-D array, numpy.ma array or CCDData
        The image, in ADU with ``gain`` (or in electrons, gain 1). A CCDData is converted by its unit (its
        mask ignored) and ``gain`` is needed only for ADU without a GAIN keyword in its meta.
    inmask : 2-D bool array, optional
        Bad pixels: never flagged and never used to fill neighbours.
    inbkg : 2-D array, optional
        A background in ``indat``'s units: taken off before the network and put back into ``cleanarr``.
    invar : 2-D array, optional
        Accepted; a network has no noise model to give it to (named in the warning).
    sigclip, sigfrac, objlim, readnoise, niter, sepmed, cleantype, fsmode, psfmodel, psffwhm, psfsize, psfk, psfbeta
        L.A.Cosmic's knobs: accepted, ignored, and named once in a warning when set.
    gain : float
        Electrons per ADU of ``indat`` (astroscrappy's default 1.0: data in electrons). The networks read
        electrons, so data in ADU need it; a call on a plain array without it is warned that the data are
        taken as electrons.
    satlevel : float
        Saturation in electrons: saturated star cores (and 2 px around) are ignored, as astroscrappy masks them.
    verbose : bool
        Print how many pixels were flagged.
    model, threshold, fpr, inpaint_model, device
        The network's own settings (keyword only): mask model, probability threshold or false-positive
        rate, inpaint model (default the masked median), ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    crmask : bool array
    cleanarr : float32 array
        In ``indat``'s units (astroscrappy >= 1.1).
    """
    _warn_knobs("detect_cosmics", locals())
    gain_given = not isinstance(gain, _Default)
    if is_ccd(indat):
        electrons, ignore, factor = ccd_to_electrons(indat, gain if gain_given else None)
    else:
        data = np.ma.getdata(indat)
        if np.ndim(data) != 2:
            raise InputError(f"detect_cosmics: expected a 2-D image, got shape {np.shape(data)}")
        factor = _gain_value(gain)
        if not gain_given:
            warnings.warn("detect_cosmics: no gain given: indat is taken to be in electrons (gain 1.0, as "
                          "astroscrappy's default); give gain= (e-/ADU) for data in ADU", UserWarning, stacklevel=2)
        electrons = np.asarray(data, np.float64) * factor
        ignore = np.asarray(np.ma.getmaskarray(indat), bool) | ~np.isfinite(electrons)
    if inmask is not None:
        ignore = ignore | np.asarray(inmask, bool)
    background = 0.0 if inbkg is None else np.asarray(inbkg, np.float64) * factor
    crmask, cleaned = _clean_electrons((electrons - background).astype(np.float32), ignore, background,
                                       float(satlevel), model=model, threshold=threshold, fpr=fpr,
                                       inpaint_model=inpaint_model, device=device)
    if verbose:
        print(f"detect_cosmics: {int(crmask.sum())} cosmic-ray pixels ({crmask.mean():.4%}) with {model}")
    return crmask, (cleaned / factor).astype(np.float32)


def cosmicray_lacosmic(
    ccd,
    sigclip: float = _Default(4.5),
    sigfrac: float = _Default(0.3),
    objlim: float = _Default(5.0),
    gain: float = _Default(1.0),
    readnoise: float = _Default(6.5),
    satlevel: float = _Default(65535.0),
    pssl: float = 0.0,
    niter: int = 4,
    sepmed: bool = True,
    cleantype: str = _DefaultText("meanmask"),
    fsmode: str = _DefaultText("median"),
    psfmodel: str = _DefaultText("gauss"),
    psffwhm: float = _Default(2.5),
    psfsize: int = 7,
    psfk=None,
    psfbeta: float = _Default(4.765),
    verbose: bool = False,
    gain_apply: bool = True,
    inbkg=None,
    invar=None,
    *,
    model: str = "ACS-WFC",
    threshold: float | None = None,
    fpr: float | None = None,
    inpaint_model: str | None = None,
    device: str = "auto",
):
    """ccdproc's ``cosmicray_lacosmic``, with a network; returns what ccdproc returns.

    Parameters
    ----------
    ccd : numpy.ndarray or CCDData
        The image. An array is in ADU with ``gain`` (electrons with the default gain 1); a CCDData is
        converted by its unit, an ADU one with ``gain`` or its meta's GAIN keyword (else an error).
    gain : float or Quantity
        Electrons per ADU (a Quantity in electron / adu is taken by its value).
    satlevel : float
        Saturation in electrons (saturated star cores are ignored).
    pssl : float
        Previously subtracted sky level, in the input's units: added back before the network, taken off after.
    gain_apply : bool
        As ccdproc: True returns the data multiplied by the gain (a CCDData's unit times electron / adu),
        False in the input's units.
    inbkg : 2-D array, optional
        A background in the input's units, taken off before the network and put back after.
    sigclip, sigfrac, objlim, readnoise, niter, sepmed, cleantype, fsmode, psfmodel, psffwhm, psfsize, psfk, \
psfbeta, invar
        L.A.Cosmic's knobs: accepted, ignored, and named once in a warning when set.
    verbose : bool
    model, threshold, fpr, inpaint_model, device
        The network's own settings (keyword only), as :func:`detect_cosmics`.

    Returns
    -------
    (cleaned, crmask) for an array, or a CCDData
        The CCDData's mask is its input mask OR the cosmic rays; its data the cleaned pixels.
    """
    import astropy.units as u

    _warn_knobs("cosmicray_lacosmic", locals())
    gain_given = not isinstance(gain, _Default)
    settings = {"model": model, "threshold": threshold, "fpr": fpr, "inpaint_model": inpaint_model,
                "device": device}
    background = 0.0 if inbkg is None else np.asarray(inbkg, np.float64)
    if is_ccd(ccd):
        if ccd.unit is not None and ccd.unit.is_equivalent(u.electron) and gain_given and _gain_value(gain) != 1:
            warnings.warn("cosmicray_lacosmic: the image is in electrons but the gain is not 1.0; the gain is "
                          "not applied twice", UserWarning, stacklevel=2)
            gain, gain_given = 1.0, False
        electrons, ignore, factor = ccd_to_electrons(ccd, gain if gain_given else None)
        shifted = electrons + np.float32(pssl * factor) - background * factor
        crmask, cleaned = _clean_electrons(shifted.astype(np.float32), ignore, background * factor,
                                           float(satlevel), **settings)
        data = cleaned / factor - pssl
        data[ignore] = np.asarray(ccd.data, np.float64)[ignore]
        in_adu = ccd.unit.is_equivalent(u.adu) or ccd.unit.is_equivalent(u.adu / u.s)
        out = ccd.copy()
        if gain_apply and in_adu:  # as ccdproc: the data times the gain, the unit times electron / adu
            data = data * (_gain_value(gain) if gain_given else meta_number(ccd.meta, GAIN_KEYS))
            out.unit = ccd.unit * u.electron / u.adu
        out.data = data.astype(np.float32)
        out.mask = crmask if ccd.mask is None else (np.asarray(ccd.mask, bool) | crmask)
        return out
    if not isinstance(ccd, np.ndarray):
        raise TypeError("ccd is not a CCDData or ndarray object.")
    factor = _gain_value(gain)
    crmask, cleaned = detect_cosmics(np.asarray(ccd, np.float64) + pssl, inbkg=inbkg,
                                     gain=gain if not gain_given else factor, satlevel=satlevel, verbose=verbose,
                                     **settings)
    data = cleaned.astype(np.float64) - pssl
    return (data * factor if gain_apply else data).astype(np.float32), crmask
