"""What each file is, from its headers: cleaned, or skipped with its product type and reason."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from conftest import real_file

from deepcr_dask.archive.pipeline import CleanOptions, open_for_cleaning
from deepcr_dask.errors import InputError
from deepcr_dask.io.fits import check_dq_bit, inspect_file
from deepcr_dask.io.products import classify, suffix_of


def write_hst(path, *, instrument="ACS", detector="WFC", filetype="SCI", obstype="IMAGING", switches=None,
              chips=1, dq_dtype=np.int16, shape=(32, 48), extra=None, table=False):
    """A file with HST's header layout: primary with the calibration switches, then SCI/ERR/DQ imsets."""
    primary = fits.PrimaryHDU()
    for key, value in {"TELESCOP": "HST", "INSTRUME": instrument, "DETECTOR": detector, "FILETYPE": filetype,
                       "OBSTYPE": obstype, "ROOTNAME": path.stem.split("_")[0], "EXPTIME": 100.0,
                       **(switches or {"BIASCORR": "COMPLETE", "FLATCORR": "COMPLETE"}), **(extra or {})}.items():
        primary.header[key] = value
    hdus = [primary]
    if table:
        hdus.append(fits.BinTableHDU.from_columns([fits.Column("MEMNAME", "14A", array=["J8BT06NYQ"]),
                                                   fits.Column("MEMTYPE", "14A", array=["EXP-CRJ"])], name="ASN"))
    else:
        for ver in range(1, chips + 1):
            sci = fits.ImageHDU(np.full(shape, 100, np.float32), name="SCI", ver=ver)
            sci.header["BUNIT"] = "ELECTRONS"
            hdus += [sci, fits.ImageHDU(np.full(shape, 10, np.float32), name="ERR", ver=ver),
                     fits.ImageHDU(np.zeros(shape, dq_dtype), name="DQ", ver=ver)]
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


CASES = [
    ("j8bt06nyq_flc.fits", {}, "image"),
    ("j8bt06nyq_flt.fits", {"detector": "HRC"}, "image"),
    ("ib1f01abq_flt.fits", {"instrument": "WFC3", "detector": "UVIS"}, "image"),
    ("o4sp040b0_flt.fits", {"instrument": "STIS", "detector": "CCD"}, "image"),
    ("j8bt06nyq_raw.fits", {"switches": {"BIASCORR": "PERFORM", "FLATCORR": "PERFORM"}}, "raw"),
    ("renamed.fits", {"switches": {"BIASCORR": "PERFORM", "FLATCORR": "PERFORM"}}, "raw"),
    ("j8bt06010_drz.fits", {"switches": {"DRIZCORR": "COMPLETE"}}, "combined"),
    ("j8bt06011_crj.fits", {"extra": {"NCOMBINE": 2}}, "combined"),
    ("combined.fits", {"extra": {"NCOMBINE": 4}}, "combined"),
    ("o4sp040b0_x1d.fits", {"instrument": "STIS", "detector": "CCD"}, "spectrum"),
    ("o4sp040b0_flt.fits", {"instrument": "STIS", "detector": "CCD", "obstype": "SPECTROSCOPIC"}, "spectrum"),
    ("j8bt06010_asn.fits", {"filetype": "ASN_TABLE", "table": True}, "table"),
    ("j8bt06nyq_spt.fits", {"filetype": "SPT"}, "table"),
    ("ib1f01abq_flt.fits", {"instrument": "WFC3", "detector": "IR"}, "up-the-ramp"),
    ("n8u301abq_cal.fits", {"instrument": "NICMOS", "detector": "NIC2"}, "up-the-ramp"),
    ("o4sp040b0_flt.fits", {"instrument": "STIS", "detector": "FUV-MAMA"}, "photon-counting"),
    ("j8bt06nyq_flt.fits", {"detector": "SBC"}, "photon-counting"),
    ("u40x010hm_c1f.fits", {"instrument": "WFPC2", "filetype": "SDQ"}, "dq"),
]


@pytest.mark.parametrize(("name", "layout", "kind"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_product_types_from_headers(tmp_path, name, layout, kind):
    path = write_hst(tmp_path / name, **layout)
    with fits.open(path) as hdul:
        product = classify(path, hdul)
    assert product.kind == kind, product
    if kind == "image":
        open_for_cleaning(path, CleanOptions())
    else:
        assert kind in product.skip_message() and str(path) in product.skip_message()


def test_a_product_type_can_be_cleaned_anyway_but_never_a_dq_file(tmp_path):
    raw = write_hst(tmp_path / "j8bt06nyq_raw.fits", switches={"BIASCORR": "PERFORM", "FLATCORR": "PERFORM"})
    with fits.open(raw) as hdul:
        assert not classify(raw, hdul).cleanable()
        assert classify(raw, hdul).cleanable(("raw",))
    assert open_for_cleaning(raw, CleanOptions(clean_anyway=("raw",))).chips
    stis = real_file("stis_o4sp040b0_raw.fits")  # a raw spectrum: both types are needed
    with fits.open(stis) as hdul:
        product = classify(stis, hdul)
    assert product.kinds == ("spectrum", "raw")
    assert not product.cleanable(("spectrum",)) and product.cleanable(("spectrum", "raw"))
    dq = write_hst(tmp_path / "u40x010hm_c1f.fits", instrument="WFPC2", filetype="SDQ")
    with fits.open(dq) as hdul:
        assert not classify(dq, hdul).cleanable(("raw", "combined", "spectrum", "dq"))


def test_wfpc2_c0f_reads_its_dq_from_the_c1f():
    info = inspect_file(real_file("wfpc2_u40x010hm_c0f.fits"))
    assert info.product.dq_companion.endswith("wfpc2_u40x010hm_c1f.fits")
    assert all(chip.dq_path == info.product.dq_companion and chip.dq_plane == chip.plane for chip in info.chips)
    from deepcr_dask.io.fits import read_chip

    with fits.open(info.product.dq_companion) as hdul:
        dq = hdul[0].data
    for chip in info.chips:
        _, ignore = read_chip(info.path, chip)
        assert ignore.any()
        np.testing.assert_array_equal(ignore, (dq[chip.plane].astype(np.int64) & CleanOptions().ignore_bits) != 0)


def test_dq_bit_that_does_not_fit_is_refused_before_any_work(tmp_path):
    path = write_hst(tmp_path / "j8bt06nyq_flt.fits", dq_dtype=np.uint8)
    info = inspect_file(path)
    check_dq_bit(info, 128)
    with pytest.raises(InputError, match=r"DQ bit 8192 does not fit its uint8 DQ array \(largest bit 128\)"):
        check_dq_bit(info, 8192)
    with pytest.raises(InputError, match=str(path)):
        open_for_cleaning(path, CleanOptions())


def test_suffixes():
    assert suffix_of("a/j8xi01abq_flc.fits") == "flc" and suffix_of("u40x010hm_c0f.fits.gz") == "c0f"
    assert suffix_of("a8280271.fits") == ""


@pytest.mark.parametrize(("name", "family"), [
    ("wfpc2_u40x010hm_c0f.fits", "WFPC2"),
    ("wfpc2_u5780205r_c0f.fits", "WFPC2"),
    ("acs_hrc_j8bt06nyq_flt.fits", "HST"),  # an HST camera without a deepCR model of its own
    ("gmos_S20190808S0048_cutout.fits", "ground"),  # TELESCOP Gemini-South
    ("saao_a8280271.fits", "ground"),
])
def test_default_model_per_camera(name, family):
    """Each file gets its camera family's default as the rule chose it (weights/defaults/cameras.json)."""
    from deepcr_dask.models.choice import load_defaults

    assert inspect_file(real_file(name)).model == load_defaults()[family]["model"]
