"""Drop-ins shaped like the tools astronomers know: astroscrappy's ``detect_cosmics(indat, inmask)``
(ccdproc's shape, CCDData in and out, is :func:`deepcr_dask.clean_ccd`)."""

from __future__ import annotations

import numpy as np

from .cleaner import get_cleaner

__all__ = ["detect_cosmics"]


def detect_cosmics(
    indat,
    inmask=None,
    *,
    model: str = "ACS-WFC",
    threshold: float | None = None,
    inpaint_model: str | None = None,
    device: str = "auto",
    fpr: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Detect and clean cosmic rays, returning astroscrappy's ``(crmask, cleanarr)``.

    Parameters
    ----------
    indat : 2-D array, numpy.ma array or CCDData
        Image in the units ``model`` expects (electrons for the HST models); a CCDData is converted from
        its unit and ``cleanarr`` returned in it; masked pixels are ignored.
    inmask : 2-D bool array, optional
        Bad pixels, as astroscrappy's ``inmask``: never flagged and never used to fill neighbours.
    model : str
        Mask model name or weight path.
    threshold : float, optional
        Probability threshold; the model's default when None.
    inpaint_model : str, optional
        Inpaint network; a local median of good pixels when None.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    fpr : float, optional
        Instead of ``threshold``: a false-positive rate the model records (1e-4, 5e-4, 5e-3).

    Returns
    -------
    crmask : bool array
    cleanarr : float32 array
    """
    cleaner = get_cleaner(model, inpaint_model, device)
    return cleaner.clean(indat, threshold=threshold, inpaint=True, ignore=inmask, fpr=fpr)
