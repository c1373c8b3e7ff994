"""The calls of astroscrappy's and ccdproc's documentation, run against ours with a real frame in ADU."""

from __future__ import annotations

import inspect
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from conftest import real_file

import deepcr_dask as dcr
from deepcr_dask.errors import InputError

GAIN = 1.9  # SAAO STE3, e-/ADU (its header's GAIN)
SETTINGS = {"model": "ground", "device": "cpu"}


@pytest.fixture(scope="module")
def adu():
    with fits.open(real_file("saao_a8280271.fits")) as hdul:
        return np.asarray(hdul[0].data, np.float32)


@pytest.fixture(scope="module")
def reference(adu):
    """The network on the same frame in electrons (nothing ignored but the saturated star cores)."""
    cleaner = dcr.Cleaner("ground", device="cpu")
    return cleaner.clean(adu.astype(np.float64) * GAIN)


def test_the_signatures_are_astroscrappys_and_ccdprocs():
    names = list(inspect.signature(dcr.detect_cosmics).parameters)
    assert names[:20] == ["indat", "inmask", "inbkg", "invar", "sigclip", "sigfrac", "objlim", "gain", "readnoise",
                          "satlevel", "niter", "sepmed", "cleantype", "fsmode", "psfmodel", "psffwhm", "psfsize",
                          "psfk", "psfbeta", "verbose"]
    defaults = {k: p.default for k, p in inspect.signature(dcr.detect_cosmics).parameters.items()}
    assert [defaults[k] for k in ("sigclip", "gain", "readnoise", "satlevel")] == [4.5, 1.0, 6.5, 65536.0]
    lacosmic = list(inspect.signature(dcr.cosmicray_lacosmic).parameters)
    assert lacosmic[:21] == ["ccd", "sigclip", "sigfrac", "objlim", "gain", "readnoise", "satlevel", "pssl", "niter",
                             "sepmed", "cleantype", "fsmode", "psfmodel", "psffwhm", "psfsize", "psfk", "psfbeta",
                             "verbose", "gain_apply", "inbkg", "invar"]


def test_astroscrappys_documented_call_on_a_frame_in_adu(adu, reference):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        crmask, cleanarr = dcr.detect_cosmics(adu, inmask=None, sigclip=4.5, sigfrac=0.3, objlim=5.0, gain=GAIN,
                                              readnoise=5.0, satlevel=65536.0, niter=4, sepmed=True,
                                              cleantype="meanmask", fsmode="median", psfmodel="gauss", psffwhm=2.5,
                                              psfsize=7, psfk=None, psfbeta=4.765, verbose=False, **SETTINGS)
    knobs = [str(w.message) for w in caught if "no meaning for a network" in str(w.message)]
    assert len(knobs) == 1 and all(k in knobs[0] for k in ("sigclip", "sigfrac", "objlim", "readnoise"))
    assert not any("no gain given" in str(w.message) for w in caught)
    mask, cleaned_e = reference
    np.testing.assert_array_equal(crmask, mask)  # masks computed in electrons: the gain was applied
    assert 10 < crmask.sum() < 0.01 * crmask.size
    assert cleanarr.dtype == np.float32
    np.testing.assert_allclose(cleanarr, cleaned_e / GAIN, rtol=1e-5)  # back in ADU (astroscrappy >= 1.1)
    np.testing.assert_array_equal(cleanarr[~crmask], adu[~crmask])


def test_a_call_without_gain_is_told_the_data_are_taken_as_electrons(adu):
    with pytest.warns(UserWarning, match="no gain given: indat is taken to be in electrons"):
        dcr.detect_cosmics(adu[:128, :128], **SETTINGS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all defaults, gain given: nothing to say
        dcr.detect_cosmics(adu[:128, :128], gain=GAIN, **SETTINGS)


def test_inmask_satlevel_and_inbkg_as_astroscrappy_uses_them(adu):
    frame = adu[:200, :200].copy()
    star = np.zeros(frame.shape, bool)
    star[90:99, 90:99] = True
    frame[star] = 40000.0  # a saturated star core (76,000 e- at this gain)
    frame[30, 150] = 40000.0  # a lone saturated hit: a ray, not a star
    crmask, cleanarr = dcr.detect_cosmics(frame, gain=GAIN, satlevel=65000.0, **SETTINGS)
    grown = np.zeros_like(star)
    grown[88:101, 88:101] = True
    assert not crmask[grown].any() and (cleanarr[grown] == frame[grown]).all()  # ignored, returned unchanged
    assert crmask[30, 150]
    bad = np.zeros(frame.shape, bool)
    bad[30, 150] = True
    masked, _ = dcr.detect_cosmics(frame, inmask=bad, gain=GAIN, satlevel=65000.0, **SETTINGS)
    assert not masked[30, 150]
    background = np.full(frame.shape, 50.0, np.float32)
    with_bkg, clean_bkg = dcr.detect_cosmics(frame, inbkg=background, gain=GAIN, satlevel=65000.0, **SETTINGS)
    without, clean_without = dcr.detect_cosmics(frame - background, gain=GAIN, satlevel=65000.0, **SETTINGS)
    np.testing.assert_array_equal(with_bkg, without)
    np.testing.assert_allclose(clean_bkg, clean_without + background, rtol=1e-6)  # the background put back


def test_ccdprocs_documented_calls(adu, reference):
    mask, cleaned_e = reference
    # 1) an array: (newdata, mask); gain applied to the returned data by default, as ccdproc does.
    with pytest.warns(UserWarning, match="sigclip has no meaning"):
        newdata, crmask = dcr.cosmicray_lacosmic(adu, sigclip=5, gain=GAIN, **SETTINGS)
    np.testing.assert_array_equal(crmask, mask)
    np.testing.assert_allclose(newdata, cleaned_e, rtol=1e-5)
    in_adu, _ = dcr.cosmicray_lacosmic(adu, gain=GAIN, gain_apply=False, **SETTINGS)
    np.testing.assert_allclose(in_adu, cleaned_e / GAIN, rtol=1e-5)
    # 2) a CCDData: a CCDData back, its mask OR the rays; in adu with the gain as a Quantity.
    ccd = CCDData(adu, unit="adu", mask=np.zeros(adu.shape, bool))
    ccd.mask[0, 0] = True
    with pytest.warns(UserWarning, match="sigclip has no meaning"):
        newccd = dcr.cosmicray_lacosmic(ccd, sigclip=5, gain=GAIN * u.electron / u.adu, **SETTINGS)
    assert isinstance(newccd, CCDData) and newccd.unit == u.electron
    assert newccd.mask[0, 0] and (newccd.mask[1:] == mask[1:]).all()
    # The GAIN keyword of meta serves when no gain is given; without either, one clear error.
    keyworded = CCDData(adu, unit="adu", meta={"GAIN": GAIN})
    np.testing.assert_array_equal(dcr.cosmicray_lacosmic(keyworded, **SETTINGS).mask, mask)
    with pytest.raises(InputError, match="give gain="):
        dcr.cosmicray_lacosmic(CCDData(adu, unit="adu"), **SETTINGS)
    # Electrons with a gain: ccdproc warns that the gain would be applied twice; it is not applied.
    electrons = CCDData(adu * GAIN, unit="electron")
    with pytest.warns(UserWarning, match="not applied twice"):
        out = dcr.cosmicray_lacosmic(electrons, gain=GAIN, **SETTINGS)
    assert out.unit == u.electron
    np.testing.assert_array_equal(out.mask, mask)
