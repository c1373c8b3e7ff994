"""The deepcr-dask command: models table, single-file clean, exit codes and one-line errors."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
from astropy.io import fits
from conftest import REPO, real_file

import deepcr_dask as dcr
from deepcr_dask.models.choice import default_inpaint, default_model


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepcr_dask.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_models_table_lists_receptive_fields_and_reach(deepcr_module):
    result = _run("models")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "kind", "instrument", "units", "threshold", "thresholds@fpr(1e-4/5e-4/5e-3)",
                                "receptive_field", "reach", "source"]
    rows = {tuple(line.split()[:2]): line.split() for line in lines[2:]}
    assert rows[("ACS-WFC", "mask")][-3:] == ["18", "9", "deepcr"]
    recorded = dcr.Cleaner("ACS-WFC", device="cpu").fpr_thresholds
    assert rows[("ACS-WFC", "mask")][-4] == "/".join(f"{recorded[f]:.3g}" for f in (1e-4, 5e-4, 5e-3))
    assert rows[("ACS-WFC-F606W-3-32", "inpaint")][-3:-1] == ["44", "23"]


def test_clean_one_file(tmp_path):
    src = real_file("gmos_S20190808S0048_cutout.fits")
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    out = tmp_path / "gmos_clean.fits"
    result = _run("clean", str(src), "-o", str(out), "--device", "cpu", "--crprob")
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    with fits.open(src) as original, fits.open(out, checksum=True) as cleaned:
        sci = original["SCI"].data.astype(np.float32)
        camera = ("GMOS-S", "GMOS + HAMAMATSU_NEW", "GEMINI-SOUTH")  # a ground-based camera: the ground default
        assert cleaned[0].header["CRMODEL"] == default_model(*camera)
        mask, expected = dcr.Cleaner(default_model(*camera), default_inpaint(*camera), device="cpu").clean(sci)
        np.testing.assert_array_equal(cleaned["CRMASK"].data.astype(bool), mask)
        np.testing.assert_allclose(cleaned["SCI"].data, expected, rtol=1e-6)
        assert cleaned["CRPROB"].data.shape == sci.shape
        assert cleaned[0].header["CRNPIX"] == mask.sum()
        np.testing.assert_array_equal(cleaned["VAR"].data, original["VAR"].data)
    assert f"wrote {out}" in result.stdout


def test_bad_input_is_one_line_error_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.fits"
    bad.write_text("not fits")
    result = _run("clean", str(bad), "-o", str(tmp_path / "x.fits"))
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()
    assert len(message) == 1 and str(bad) in message[0] and "not a readable FITS file" in message[0]
    assert not (tmp_path / "x.fits").exists()
    assert _run("clean", str(bad), "-o", str(tmp_path / "y.fits"), "--model", "nope").returncode == 2


def test_fpr_picks_the_recorded_threshold_and_rejects_unrecorded_rates(tmp_path):
    src = real_file("gmos_S20190808S0048_cutout.fits")
    out = tmp_path / "gmos_fpr.fits"
    result = _run("clean", str(src), "-o", str(out), "--device", "cpu", "--fpr", "1e-4")
    assert result.returncode == 0, result.stderr
    cleaner = dcr.Cleaner(default_model("GMOS-S", "GMOS + HAMAMATSU_NEW", "GEMINI-SOUTH"), device="cpu")
    with fits.open(out) as cleaned:
        assert cleaned[0].header["CRTHRESH"] == cleaner.fpr_thresholds[1e-4] != cleaner.threshold
        mask, _ = cleaner.clean(fits.getdata(src, "SCI").astype(np.float32), fpr=1e-4)
        assert cleaned[0].header["CRNPIX"] == mask.sum()
    wrong = _run("clean", str(src), "-o", str(tmp_path / "x.fits"), "--fpr", "1e-3")
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr
    both = _run("clean", str(src), "-o", str(tmp_path / "y.fits"), "--fpr", "1e-4", "--threshold", "0.5")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    assert not (tmp_path / "x.fits").exists() and not (tmp_path / "y.fits").exists()


def test_version_and_an_archive_run_over_tls(tmp_path):
    version = _run("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"deepcr-dask {dcr.__version__}"
    from conftest import synthetic_frame

    from deepcr_dask.demo import write_flc

    sci, _ = synthetic_frame((96, 128), seed=5, n_rays=8)
    write_flc(tmp_path / "in" / "jtls01q_flc.fits", [(sci, np.sqrt(np.abs(sci) + 25), np.zeros(sci.shape, np.int16))],
              rootname="jtls01q")
    result = _run("archive", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--tls", "--workers", "1",
                  "--model", "generic-HST", "--device", "cpu", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "scheduler tls://" in result.stderr  # the run's client, scheduler and worker spoke TLS
    assert (tmp_path / "out" / "jtls01q_flc_crclean.fits").is_file()


def test_archive_progress_off_a_terminal_is_plain_lines(tmp_path):
    from conftest import synthetic_frame

    from deepcr_dask.demo import write_flc

    for i in range(2):
        sci, _ = synthetic_frame((64, 96), seed=60 + i, n_rays=5)
        write_flc(tmp_path / "in" / f"jpro{i}q_flc.fits", [(sci, np.sqrt(np.abs(sci) + 25),
                                                             np.zeros(sci.shape, np.int16))], rootname=f"jpro{i}q")
    result = _run("archive", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--workers", "1",
                  "--model", "generic-HST", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr  # a SLURM log gets lines, not a redrawn bar
    assert "deepcr-dask: 2/2 files, 0 failed, 0 suspect (" in result.stderr
