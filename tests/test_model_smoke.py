"""Every listed mask model on a real frame of its camera (or the nearest one here): a sane flagged fraction.

This catches a model listed with the wrong input scale or normalisation (deepCR's ACS-WFC-F606W-2-4 read
as electrons flags 42% of a real frame; as electrons / 100, as deepCR 0.2 listed it, 0.04-0.8%).
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from conftest import real_file

import deepcr_dask as dcr


def _hrc() -> np.ndarray:  # ACS/HRC 47 Tuc, electrons: the ACS frame here
    return fits.getdata(real_file("acs_hrc_j8bt06nyq_flt.fits"), "SCI").astype(np.float32)[:512, :512]


def _wfpc2_ngc4151() -> np.ndarray:  # WFPC2 WF3, 300 s, electrons
    return fits.getdata(real_file("wfpc2_u5780205r_c0f.fits"))[2].astype(np.float32) * 7.0


def _saao_adu() -> np.ndarray:  # bias-subtracted and trimmed, ADU (as decam's model expects)
    raw = fits.getdata(real_file("saao_a8280271.fits")).astype(np.float32)
    return raw[:, 16:528] - np.median(raw[:, 3:13])


def _saao_electrons() -> np.ndarray:
    return _saao_adu() * 1.9


FRAMES = {"WFC3-UVIS": _wfpc2_ngc4151, "decam": _saao_adu, "WFPC2": _wfpc2_ngc4151, "ground": _saao_electrons}


@pytest.mark.parametrize("name", dcr.list_models("mask"))
def test_listed_mask_model_flags_a_sane_fraction_of_a_real_frame(name):
    image = FRAMES.get(name, _hrc)()
    mask, _ = dcr.Cleaner(name, device="cpu").clean(image, inpaint=False)
    # A real frame has 0.05-1% cosmic-ray pixels; 3% would be stars and noise.
    assert 5e-5 < mask.mean() < 0.03, f"{name}: {mask.mean():.3%} flagged"
