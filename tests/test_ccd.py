"""CCDData and numpy.ma in and out: units, masks, uncertainty, WCS and provenance."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty, VarianceUncertainty
from astropy.wcs import WCS
from conftest import real_file

import deepcr_dask as dcr
from deepcr_dask.ccd import ccd_to_electrons
from deepcr_dask.errors import InputError
from deepcr_dask.models.choice import default_model

GAIN, EXPTIME = 1.933, 90.0


@pytest.fixture(scope="module")
def gmos():
    """The real GMOS-S cutout (electrons, two real cosmic rays), with a WCS and a few masked pixels."""
    with fits.open(real_file("gmos_S20190808S0048_cutout.fits")) as hdul:
        electrons = hdul["SCI"].data.astype(np.float32)
        header = fits.Header({"TELESCOP": "Gemini-South", "INSTRUME": "GMOS-S", "EXPTIME": EXPTIME,
                              "GAIN": GAIN})
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval, wcs.wcs.crpix, wcs.wcs.cdelt = [150.0, -30.0], [100.0, 75.0], [-2.2e-5, 2.2e-5]
    mask = np.zeros(electrons.shape, bool)
    mask[10:12, 20:40] = True  # "bad" pixels: ignored, kept, in the output mask
    return electrons, header, wcs, mask


def _ccd(gmos, unit):
    electrons, header, wcs, mask = gmos
    factor = {"electron": 1.0, "adu": 1.0 / GAIN, "electron / s": 1.0 / EXPTIME}[unit]
    data = (electrons.astype(np.float64) * factor).astype(np.float32)
    sigma = np.sqrt(np.clip(data * 0 + electrons, 0, None) + 4.24**2) * factor
    return CCDData(data, unit=unit, mask=mask, uncertainty=StdDevUncertainty(sigma.astype(np.float32)), wcs=wcs,
                   meta=header.copy())


@pytest.mark.parametrize("unit", ["electron", "adu", "electron / s"])
def test_ccddata_round_trip_equals_the_array_api(gmos, unit):
    ccd = _ccd(gmos, unit)
    out = dcr.clean_ccd(ccd, device="cpu")
    assert out.unit == ccd.unit and out.data.dtype == np.float32
    electrons, ignored, factor = ccd_to_electrons(ccd)
    model = default_model("GMOS-S", "GMOS + HAMAMATSU_NEW", "GEMINI-SOUTH")  # the ground default
    crmask, cleaned = dcr.Cleaner(model, device="cpu").clean(electrons, ignore=ignored)
    expected = (cleaned.astype(np.float64) / factor).astype(np.float32)
    expected[ignored] = ccd.data[ignored]
    np.testing.assert_array_equal(out.data, expected)
    np.testing.assert_array_equal(out.mask, crmask | ccd.mask)
    assert crmask.sum() >= 100 and not (crmask & ccd.mask).any()  # both real rays found; bad pixels never flagged
    np.testing.assert_array_equal(out.data[ccd.mask], ccd.data[ccd.mask])
    # uncertainty: unchanged where nothing was replaced, the neighbours' level where something was
    np.testing.assert_array_equal(out.uncertainty.array[~crmask], ccd.uncertainty.array[~crmask])
    assert np.all(np.isfinite(out.uncertainty.array[crmask]))
    assert np.median(out.uncertainty.array[crmask]) < np.median(ccd.uncertainty.array[crmask])
    for x, y in ((0, 0), (57, 103), (199, 147)):
        a, b = out.wcs.pixel_to_world(x, y), ccd.wcs.pixel_to_world(x, y)
        assert a.separation(b).arcsec == 0.0
    assert out.meta["CRMODEL"] == model and out.meta["CRNPIX"] == crmask.sum()
    assert any("deepcr-dask" in str(h) for h in out.meta["HISTORY"])
    assert "CRMODEL" not in ccd.meta  # the input is not modified


def test_unit_gain_and_exposure_problems_are_input_errors(gmos):
    electrons = gmos[0]
    with pytest.raises(InputError, match="no unit"):
        dcr.clean_ccd(CCDData(electrons, unit=u.dimensionless_unscaled))
    with pytest.raises(InputError, match="give gain="):
        dcr.clean_ccd(CCDData(electrons, unit="adu"))
    with pytest.raises(InputError, match="EXPTIME"):
        dcr.clean_ccd(CCDData(electrons, unit="electron / s"))
    with pytest.raises(InputError, match="not electrons or adu"):
        dcr.clean_ccd(CCDData(electrons, unit="Jy"))
    out = dcr.clean_ccd(CCDData(electrons / GAIN, unit="adu"), gain=GAIN * u.electron / u.adu, device="cpu")
    assert out.unit == u.adu and out.mask.sum() > 100


def test_variance_uncertainty_keeps_its_class_and_fpr_picks_the_recorded_threshold(gmos):
    ccd = _ccd(gmos, "electron")
    ccd.uncertainty = VarianceUncertainty(ccd.uncertainty.array ** 2)
    out = dcr.clean_ccd(ccd, device="cpu", fpr=5e-4)
    assert isinstance(out.uncertainty, VarianceUncertainty)
    model = default_model("GMOS-S", "GMOS + HAMAMATSU_NEW", "GEMINI-SOUTH")
    assert out.meta["CRMODEL"] == model
    assert out.meta["CRTHRESH"] == dcr.Cleaner(model, device="cpu").fpr_thresholds[5e-4]


def test_cleaner_and_detect_cosmics_take_ccddata_and_masked_arrays(gmos):
    electrons, _, _, mask = gmos
    cleaner = dcr.Cleaner("ground", device="cpu")
    plain = cleaner.clean(electrons, ignore=mask)
    masked = cleaner.clean(np.ma.MaskedArray(electrons, mask=mask))
    for a, b in zip(plain, masked):
        np.testing.assert_array_equal(a, b)
    ccd = _ccd(gmos, "adu")
    crmask, cleaned = dcr.detect_cosmics(ccd, model="ground", device="cpu")
    assert cleaned.dtype == np.float32 and np.nanmax(np.abs(cleaned - ccd.data)) > 100  # rays removed, in adu
    np.testing.assert_array_equal(crmask, plain[0])
