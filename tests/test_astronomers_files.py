"""Files as astronomers keep them: renamed single exposures, compressed copies, true products, junk; every file
accounted for, exit codes as documented, units said in the header obeyed."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import archive_outcome, real_file

import deepcr_dask as dcr
from deepcr_dask.archive.layout import find_inputs
from deepcr_dask.errors import InputError
from deepcr_dask.io.fits import inspect_file
from deepcr_dask.io.names import split_name
from deepcr_dask.io.products import classify, suffix_of

HRC = "acs_hrc_j8bt06nyq_flt.fits"
WFPC2 = "wfpc2_u5780205r_c0f.fits"
SAAO = "saao_a8280271.fits"


def _copy(name: str, target: Path, primary=None, sci=None, drop=()) -> Path:
    """A copy of a real frame with primary / first-image header cards set (or dropped), as a user's file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(real_file(name), target)
    if primary or sci or drop:
        with fits.open(target, mode="update") as hdul:
            hdul[0].header.update(primary or {})
            image = next(h for h in hdul if h.is_image and h.header.get("NAXIS", 0) >= 2)
            image.header.update(sci or {})
            for key in drop:
                for h in hdul:
                    h.header.remove(key, ignore_missing=True, remove_all=True)
    return target


def _fpack(src: Path, target: Path, float_type: str = "GZIP_2", quantize: float = 0.0) -> Path:
    """Tile-compress every image HDU as fpack does: integers with RICE (lossless); floats losslessly with
    GZIP and no quantisation unless asked."""
    with fits.open(src) as hdul:
        if hdul[0].header["NAXIS"]:  # data in the primary move to a compressed extension (with its header)
            hdus, images = [fits.PrimaryHDU()], list(hdul)
        else:
            hdus, images = [fits.PrimaryHDU(header=hdul[0].header)], list(hdul[1:])
        for hdu in images:
            if hdu.is_image and hdu.data is not None:
                kind = "RICE_1" if hdu.data.dtype.kind in "iu" else float_type
                hdus.append(fits.CompImageHDU(hdu.data, header=hdu.header, compression_type=kind,
                                              quantize_level=quantize if kind != "RICE_1" else 16.0))
            else:
                hdus.append(hdu.copy())
        fits.HDUList(hdus).writeto(target)
    return target


def _squeeze(src: Path, target: Path) -> Path:
    opener = {".gz": gzip.open, ".bz2": bz2.open}[split_name(target)[2]]
    with open(src, "rb") as fin, opener(target, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return target


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- what a file is, best evidence first --------------------------------------------------------------

@pytest.mark.parametrize(("name", "source", "primary", "sci", "drop", "kind"), [
    # A drizzled association's FLT, renamed: DRIZCORR/CRCORR COMPLETE on the primary say the association.
    ("ngc104_f606w.fits", HRC, {"DRIZCORR": "COMPLETE", "CRCORR": "COMPLETE"}, {}, (), "image"),
    # The same without its pipeline name: NCOMBINE = 1 in SCI says one exposure.
    ("ngc104.fits", HRC, {"DRIZCORR": "COMPLETE", "CRCORR": "COMPLETE"}, {}, ("FILENAME",), "image"),
    # WFPC2 keeps its GEIS name (u5780205r_cvt.c0h): a c0f, whatever the switches say.
    ("ngc4151_f533p15.fits", WFPC2, {"DRIZCORR": "COMPLETE", "CRCORR": "COMPLETE"}, {}, (), "image"),
    # True products stay skipped, renamed or not.
    ("ngc104_combined.fits", HRC, {"FILENAME": "j8bt06010_crj.fits"}, {"NCOMBINE": 2}, (), "combined"),
    ("ngc104_deep.fits", HRC, {"FILENAME": "j8bt06010_drz.fits"}, {}, (), "combined"),
    ("stack.fits", HRC, {}, {"NCOMBINE": 3}, ("FILENAME",), "combined"),
    ("drizzled.fits", HRC, {}, {"D001DATA": "j8bt06nyq_flt.fits[sci,1]"}, ("FILENAME", "NCOMBINE"), "combined"),
    # No NCOMBINE and no pipeline name: only then does CRCORR = COMPLETE speak.
    ("crrej.fits", HRC, {"CRCORR": "COMPLETE"}, {}, ("FILENAME", "NCOMBINE"), "combined"),
    ("drizcorr_only.fits", HRC, {"DRIZCORR": "COMPLETE"}, {}, ("FILENAME", "NCOMBINE"), "image"),
    ("j8bt06nyq_raw_renamed.fits", HRC, {"FILENAME": "j8bt06nyq_raw.fits"}, {}, (), "raw"),
])
def test_what_a_file_is_from_the_best_evidence_first(tmp_path, name, source, primary, sci, drop, kind):
    path = _copy(source, tmp_path / name, primary, sci, drop)
    with fits.open(path) as hdul:
        assert classify(path, hdul).kind == kind, classify(path, hdul)


def test_suffixes_of_every_fits_form():
    assert suffix_of("u40x010hm_cvt.c0h") == "c0f" and suffix_of("u40x010hm_cvt.c1h") == "c1f"
    assert suffix_of("j8xi01abq_flc.fits.fz") == "flc" and suffix_of("x_crj.fts.bz2") == "crj"
    assert suffix_of("a8280271.fits") == "" and suffix_of("notes.txt") == ""
    assert split_name("A_FLT.FIT.GZ") == ("A_FLT", ".fit", ".gz")


# -- units the header says ------------------------------------------------------------------------------

def test_a_unit_that_needs_a_gain_stops_that_file_with_one_line(tmp_path):
    adu = _copy(SAAO, tmp_path / "adu_nogain.fits", {"BUNIT": "ADU"}, drop=("GAIN",))
    with pytest.raises(InputError, match=r"adu_nogain.fits: BUNIT is ADU and no gain keyword .* \(--gain\)"):
        inspect_file(adu)
    assert inspect_file(adu, gain=1.9).chips[0].factor == pytest.approx(1.9)
    per_second = _copy(SAAO, tmp_path / "rate.fits", {"BUNIT": "ADU/S"}, drop=())
    assert inspect_file(per_second).chips[0].factor == pytest.approx(1.9 * 150.04)
    cli = subprocess.run([sys.executable, "-m", "deepcr_dask.cli", "clean", str(adu), "-o", str(tmp_path / "o.fits"),
                          "--device", "cpu"], capture_output=True, text=True)
    assert cli.returncode == 2 and "--gain" in cli.stderr and len(cli.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.fits").exists()
    with_gain = subprocess.run([sys.executable, "-m", "deepcr_dask.cli", "clean", str(adu), "-o",
                                str(tmp_path / "o.fits"), "--gain", "1.9", "--device", "cpu"],
                               capture_output=True, text=True)
    assert with_gain.returncode == 0, with_gain.stderr


def test_a_cube_is_a_valid_file_of_a_kind_not_cleaned(tmp_path):
    cube = tmp_path / "ifu_cube.fits"
    fits.PrimaryHDU(np.zeros((6, 20, 24), np.float32)).writeto(cube)
    product = inspect_file(cube).product
    assert product.kind == "cube" and "(shape (6, 20, 24))" in product.reason and "damaged" not in product.reason


# -- a test archive: every file accounted for --------------------------------------------------------------

@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Renamed copies, compressed copies, true products, junk files and a folder of non-FITS files; the
    outcome each file must get."""
    root = tmp_path_factory.mktemp("astro") / "archive"
    expect: dict[Path, str] = {}
    ren = root / "renamed"
    expect[_copy(HRC, ren / "ngc104_f606w.fits", {"DRIZCORR": "COMPLETE", "CRCORR": "COMPLETE"})] = "done"
    expect[_copy(WFPC2, ren / "ngc4151.fits", {"DRIZCORR": "COMPLETE"})] = "done"
    products = root / "products"
    expect[_copy(HRC, products / "ngc104_combined.fits", {"FILENAME": "j8bt06010_crj.fits"},
                 {"NCOMBINE": 2})] = "skipped:combined"
    expect[_copy(HRC, products / "j8bt06010_drz.fits", {"FILENAME": "j8bt06010_drz.fits"},
                 {"D001DATA": "x"})] = "skipped:combined"
    expect[_copy(HRC, products / "stack.fits", {}, {"NCOMBINE": 5}, ("FILENAME",))] = "skipped:combined"
    packed = root / "compressed"
    plain = _copy(SAAO, packed / "a8280271.fits")
    expect[plain] = "done"
    expect[_squeeze(plain, packed / "a8280271_gz.fits.gz")] = "done"
    expect[_squeeze(plain, packed / "a8280271_bz.fit.bz2")] = "done"
    expect[_fpack(plain, packed / "a8280271_fz.fts.fz")] = "done"  # int16 with RICE: lossless
    hrc_plain = _copy(HRC, packed / "j8bt06nyq_flt.fits")
    expect[hrc_plain] = "done"
    expect[_fpack(hrc_plain, packed / "j8bt06nyq_fz_flt.fits.fz")] = "done"  # floats with GZIP, no quantising
    junk = root / "junk"
    junk.mkdir()
    (junk / "broken.fits").write_bytes(b"SIMPLE  =                    T" + b"\0" * 100)
    expect[junk / "broken.fits"] = "failed"
    expect[_copy(SAAO, junk / "adu_nogain.fits", {"BUNIT": "ADU"}, drop=("GAIN",))] = "failed"
    fits.PrimaryHDU(np.zeros((4, 16, 16), np.float32)).writeto(junk / "cube.fits")
    expect[junk / "cube.fits"] = "skipped:cube"
    for name in ("notes.txt", "thumb.png", "README"):
        (junk / name).write_text("not an image")
        expect[junk / name] = "not-fits"
    only_text = root / "logs"
    only_text.mkdir()
    for name in ("run.log", "table.csv"):
        (only_text / name).write_text("text")
        expect[only_text / name] = "not-fits"
    return root, {p.resolve(): outcome for p, outcome in expect.items()}


def _mask(path: Path) -> np.ndarray:
    """The cosmic-ray mask a cleaned copy records: DQ bit 8192 where the file has DQ, else CRMASK."""
    with fits.open(path) as hdul:
        names = [h.name for h in hdul]
        if "DQ" in names:
            return (np.asarray(hdul["DQ"].data) & 8192) != 0
        return np.asarray(hdul["CRMASK"].data, bool)


def test_every_file_of_a_test_archive_is_accounted_for(archive, tmp_path, client):
    root, expect = archive
    found = find_inputs([root])
    assert len(found.files) + len(found.not_fits) == len(expect)
    inputs = {p: _sha(p) for p in expect}
    out = tmp_path / "out"
    summary = dcr.process_archive(root, out, cluster=client, progress=False, use_groups=False)
    assert {p: archive_outcome(summary, p) for p in expect} == expect
    assert summary.exit_code == 1  # two files failed, each with its reason
    assert "--gain" in summary.failed[str(root.resolve() / "junk" / "adu_nogain.fits")]
    assert {p: _sha(p) for p in inputs} == inputs  # inputs byte-identical

    # Outputs are plain FITS whatever the input's compression, and the masks equal the uncompressed original's
    # for lossless compression.
    packed = out / "compressed"
    outputs = sorted(p.name for p in packed.iterdir())
    assert outputs == sorted(["a8280271_crclean.fits", "a8280271_gz_crclean.fits", "a8280271_bz_crclean.fits",
                              "a8280271_fz_crclean.fits", "j8bt06nyq_flt_crclean.fits",
                              "j8bt06nyq_fz_flt_crclean.fits"])
    for name in outputs:
        with open(packed / name, "rb") as fh:
            assert fh.read(6) == b"SIMPLE"  # plain FITS, not a compressed stream
    reference = _mask(packed / "a8280271_crclean.fits")
    assert reference.sum() > 10
    for name in ("a8280271_gz_crclean.fits", "a8280271_bz_crclean.fits", "a8280271_fz_crclean.fits"):
        np.testing.assert_array_equal(_mask(packed / name), reference)
    np.testing.assert_array_equal(_mask(packed / "j8bt06nyq_fz_flt_crclean.fits"),
                                  _mask(packed / "j8bt06nyq_flt_crclean.fits"))

    # The summary says what was skipped by kind, with an example; the manifest records each kind.
    table = summary.table()
    assert "| combined | 3 |" in table and "| cube | 1 |" in table and "| not FITS by name | 5 |" in table
    assert "NOT FITS 5 file(s) whose names do not say FITS" in table
    verbose = summary.table(verbose=True)
    assert all(f"NOT FITS {p}" in verbose for p, o in expect.items() if o == "not-fits")
    kinds = dict(sqlite3.connect(out / "manifest.sqlite").execute(
        "SELECT path, product FROM chips WHERE status = 'skipped'").fetchall())
    assert {Path(p).name: k for p, k in kinds.items()} == {
        "ngc104_combined.fits": "combined", "j8bt06010_drz.fits": "combined", "stack.fits": "combined",
        "cube.fits": "cube"}


def test_compress_keeps_the_inputs_compression(archive, tmp_path, client):
    root, _ = archive
    out = tmp_path / "out"
    summary = dcr.process_archive(root / "compressed", out, cluster=client, progress=False, use_groups=False,
                                  compress=True)
    assert summary.exit_code == 0 and len(summary.done) == 6
    names = sorted(p.name for p in out.iterdir() if p.name != "manifest.sqlite" and not p.name.startswith("."))
    assert names == sorted(["a8280271_crclean.fits", "a8280271_gz_crclean.fits.gz", "a8280271_bz_crclean.fits.bz2",
                            "a8280271_fz_crclean.fits.fz",
                            "j8bt06nyq_flt_crclean.fits", "j8bt06nyq_fz_flt_crclean.fits.fz"])
    with gzip.open(out / "a8280271_gz_crclean.fits.gz") as fh:
        assert fh.read(6) == b"SIMPLE"
    with bz2.open(out / "a8280271_bz_crclean.fits.bz2") as fh:
        assert fh.read(6) == b"SIMPLE"
    with fits.open(out / "j8bt06nyq_fz_flt_crclean.fits.fz") as packed, \
            fits.open(out / "j8bt06nyq_flt_crclean.fits") as plain:
        assert isinstance(packed["SCI"], fits.CompImageHDU) and isinstance(packed["DQ"], fits.CompImageHDU)
        # Lossless input compression stays lossless: the same pixels as the plain output.
        np.testing.assert_array_equal(packed["SCI"].data, plain["SCI"].data)
        np.testing.assert_array_equal(packed["DQ"].data, plain["DQ"].data)
    with fits.open(out / "a8280271_fz_crclean.fits.fz") as packed, \
            fits.open(out / "a8280271_crclean.fits") as plain:
        np.testing.assert_array_equal(packed["CRMASK"].data, plain["CRMASK"].data)  # integers: lossless
        sci = next(h for h in packed if isinstance(h, fits.CompImageHDU) and h.name != "CRMASK")
        # Float pixels are quantised as the input's compression would (RICE q=16: steps of sigma/16).
        sigma = 1.4826 * np.median(np.abs(plain[0].data - np.median(plain[0].data)))
        assert np.abs(sci.data - plain[0].data).max() <= sigma / 16


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepcr_dask.cli", *map(str, args)], capture_output=True, text=True)


def test_a_run_that_cleaned_nothing_says_so_and_exits_4(archive, tmp_path):
    root, _ = archive
    logs = _cli("archive", root / "logs", "-o", tmp_path / "o1", "--no-progress")
    assert logs.returncode == 4, logs.stderr
    assert "NOTHING CLEANED: 2 file(s) found, none an image to clean: 0 skipped by design, 2 not FITS by name" \
        in logs.stdout
    products = _cli("archive", root / "products", "-o", tmp_path / "o2", "--no-progress")
    assert products.returncode == 4 and "3 skipped by design (3 combined)" in products.stdout
    assert "| combined | 3 | " in products.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = _cli("archive", empty, "-o", tmp_path / "o3", "--no-progress")
    assert nothing.returncode == 4 and "no file found" in nothing.stdout


def test_the_qa_page_lists_what_was_skipped_by_kind(archive, tmp_path):
    root, _ = archive
    run = _cli("archive", root / "products", root / "junk" / "cube.fits", "-o", tmp_path / "o", "--no-progress",
               "--report")
    assert run.returncode == 4, run.stderr
    page = (tmp_path / "o" / "report.html").read_text()
    table = page.split("id='skipped-kinds'")[1].split("</table>")[0]
    assert "<td>combined</td><td>3</td>" in table and "<td>cube</td><td>1</td>" in table


def test_a_mosaic_fz_cleans_every_ccd_extension(tmp_path):
    """A ground mosaic as DECam ships it: an .fz whose CCDs are image extensions without SCI names, plus a
    mask extension; every CCD is a chip, the mask extension is not, and each CCD's mask is the plain frame's."""
    from deepcr_dask.archive.pipeline import CleanOptions, clean_file

    with fits.open(real_file(SAAO)) as hdul:
        header, data = hdul[0].header, hdul[0].data
        primary = fits.PrimaryHDU()
        for key in ("TELESCOP", "EXPTIME"):
            primary.header[key] = header[key]
        ccds = [fits.CompImageHDU(data, header=header, name=name, compression_type="RICE_1") for name in ("S1", "N1")]
        fits.HDUList([primary, *ccds, fits.CompImageHDU(np.zeros(data.shape, np.int16), name="MASK")]).writeto(
            tmp_path / "mosaic.fits.fz")
    options = CleanOptions(device="cpu")
    mosaic = clean_file(tmp_path / "mosaic.fits.fz", options, output=tmp_path / "mosaic_crclean.fits")
    plain = clean_file(real_file(SAAO), options, output=tmp_path / "plain_crclean.fits")
    assert [c.chip.name for c in mosaic.chips] == ["HDU1", "HDU2"]
    for chip in mosaic.chips:
        np.testing.assert_array_equal(chip.mask, plain.chips[0].mask)
    assert plain.chips[0].mask.sum() > 10
