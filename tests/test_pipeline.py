"""pipeline.clean_file: one way to clean a file; large chips through clean_dask give the same result."""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from conftest import real_file

import deepcr_dask as dcr
from deepcr_dask.archive.pipeline import CleanOptions, clean_file
from deepcr_dask.io.fits import inspect_file, read_chip
from deepcr_dask.models.choice import default_inpaint, default_model

HRC = "acs_hrc_j8bt06nyq_flt.fits"


def _compare(a, b) -> None:
    for x, y in zip(a.chips, b.chips):
        np.testing.assert_array_equal(x.mask, y.mask)
        np.testing.assert_allclose(x.probability, y.probability, rtol=0, atol=1e-6)
        np.testing.assert_allclose(x.cleaned, y.cleaned, rtol=1e-6, atol=1e-3)


def test_clean_file_writes_the_copy_with_provenance_and_gates(tmp_path, deepcr_module):
    """The 60 s ACS/HRC frame of 47 Tuc (cosmic rays touch at most ~0.2% of it in 60 s). The default generic
    model flags 0.25%: the chip passes the gates and is inpainted, only at flagged pixels. deepCR's ACS-WFC
    F814W model flags 1.4% and the cores of half its stars: suspect, flagged in DQ, left as it was."""
    src = real_file(HRC)
    before = src.read_bytes()
    result = clean_file(src, CleanOptions(), output=tmp_path / "out.fits", zarr_path=tmp_path / "out.zarr")
    assert src.read_bytes() == before  # the input is never modified
    model, inpaint = default_model("ACS", "HRC"), default_inpaint("ACS", "HRC")  # the rule's choice for HRC
    assert result.info.model == model and len(result.chips) == 1
    chip = result.chips[0]
    electrons, ignore = read_chip(src, inspect_file(src).chips[0])
    expected = dcr.Cleaner(model, inpaint, device="auto").run(electrons, ignore=ignore)
    np.testing.assert_array_equal(chip.mask, expected["mask"])
    assert not chip.suspect and chip.inpainted and 1e-3 < chip.mask.mean() < 5e-3
    with fits.open(result.fits_output) as hdul, fits.open(src) as original:
        header = hdul[0].header
        assert header["CRMODEL"] == model and header["CRWHASH"] == result.provenance.weight_hash
        assert header["CRNPIX"] == int(expected["mask"].sum()) > 0
        assert "deepcr-dask" in str(header["HISTORY"])
        assert ((hdul["DQ", 1].data & 8192) != 0).sum() == int(expected["mask"].sum())
        changed = hdul["SCI", 1].data != original["SCI", 1].data
        assert changed.any() and not (changed & ~chip.mask).any()  # only flagged pixels change
        # ERR at the replaced pixels: the Poisson and read noise of the new value (4.71 e- read noise).
        err = hdul["ERR", 1].data[chip.mask]
        np.testing.assert_allclose(err, np.sqrt(np.clip(chip.cleaned[chip.mask], 0, None) + 4.71**2), rtol=1e-5)
    rows = result.rows({"path": str(src)})
    assert rows[0]["status"] == "done" and rows[0]["zarr_group"] == result.zarr_groups["SCI,1"]

    suspect = clean_file(src, CleanOptions(model="ACS-WFC-F814W-2-32"), output=tmp_path / "suspect.fits")
    chip = suspect.chips[0]
    assert chip.suspect and not chip.inpainted
    assert any("over 3x" in r for r in chip.suspect) and any("stars" in r for r in chip.suspect)
    with fits.open(suspect.fits_output) as hdul, fits.open(src) as original:
        np.testing.assert_array_equal(hdul["SCI", 1].data, original["SCI", 1].data)  # flagged, not inpainted
        np.testing.assert_array_equal(hdul["ERR", 1].data, original["ERR", 1].data)
        assert ((hdul["DQ", 1].data & 8192) != 0).sum() == int(chip.mask.sum())
    rows = suspect.rows({"path": str(src)})
    assert rows[0]["status"] == "suspect" and "stars" in rows[0]["error"]
    asked = clean_file(src, CleanOptions(model="ACS-WFC-F814W-2-32", inpaint_suspect=True),
                       output=tmp_path / "inpainted.fits")
    flagged = asked.chips[0].mask
    with fits.open(asked.fits_output) as hdul, fits.open(src) as original:
        replaced = hdul["SCI", 1].data[flagged] != original["SCI", 1].data[flagged]
        assert replaced.mean() > 0.9


def test_a_large_chip_through_dask_on_threads_equals_one_piece(tmp_path):
    src = real_file(HRC)
    whole = clean_file(src, CleanOptions(), output=tmp_path / "whole.fits")
    # 1024x1024 > 200k pixels: the chip is read block by block (LazyChip) and cleaned by clean_dask.
    tiled = clean_file(src, CleanOptions(dask_chip_pixels=200_000, dask_chunk=300), output=tmp_path / "tiled.fits")
    _compare(whole, tiled)
    with fits.open(whole.fits_output) as a, fits.open(tiled.fits_output) as b:
        np.testing.assert_array_equal(a["DQ", 1].data, b["DQ", 1].data)


def test_a_large_chip_in_an_archive_run_spreads_over_the_cluster(tmp_path, client):
    src = real_file(HRC)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / src.name).write_bytes(src.read_bytes())
    one = dcr.process_archive(folder, tmp_path / "one", cluster=client, progress=False, probability=True)
    spread = dcr.process_archive(folder, tmp_path / "spread", cluster=client, progress=False, probability=True,
                                 dask_chip_pixels=200_000)
    assert one.done and spread.done and not one.failed and not spread.failed
    assert one.cr_pixels == spread.cr_pixels > 0
    name = src.name.replace(".fits", "_crclean.fits")
    with fits.open(tmp_path / "one" / name) as a, fits.open(tmp_path / "spread" / name) as b:
        np.testing.assert_array_equal(a["DQ", 1].data, b["DQ", 1].data)
        np.testing.assert_allclose(a["CRPROB", 1].data, b["CRPROB", 1].data, rtol=0, atol=1e-6)
