"""The archive run's QA page, rendered in a real browser (headless Chromium)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, synthetic_frame

from deepcr_dask.demo import write_flc


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium on this machine (.ci/run installs Debian's chromium)")


def _archive(tmp_path):
    names = []
    for i in range(3):
        sci, _ = synthetic_frame((128, 160), seed=40 + i, n_rays=10 + 5 * i)
        path = write_flc(tmp_path / "in" / f"jqa{i:02d}q_flc.fits",
                         [(sci, np.sqrt(np.abs(sci) + 25), np.zeros(sci.shape, np.int16))], rootname=f"jqa{i:02d}q")
        names.append(path.name)
    (tmp_path / "in" / "broken_flc.fits").write_text("not a FITS file")
    names.append("broken_flc.fits")
    return names


def test_report_page_renders_in_chromium_and_lists_every_file(tmp_path):
    browser = _browser()
    names = _archive(tmp_path)
    run = subprocess.run([sys.executable, "-m", "deepcr_dask.cli", "archive", str(tmp_path / "in"), "-o",
                          str(tmp_path / "out"), "--workers", "1", "--model", "generic-HST", "--device", "cpu",
                          "--no-progress", "--report"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stderr  # one file failed, the others were cleaned
    page = tmp_path / "out" / "report.html"
    assert f"report: {page}" in run.stdout
    text = page.read_text()
    assert text.index("broken_flc.fits") < text.index("jqa00q_flc.fits")  # failed files first
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for name in names:
        assert name in dom.stdout
    assert dom.stdout.count("<img") >= 1 + 3  # the histogram and one picture per cleaned chip
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                   capture_output=True, text=True, timeout=120, check=True)
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    assert pixels[..., :3].std() > 0.05  # not blank: text, tables and pictures
    # the `report` command writes the same page again from the output folder alone
    again = subprocess.run([sys.executable, "-m", "deepcr_dask.cli", "report", str(tmp_path / "out"), "--html",
                            str(tmp_path / "again.html")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and all(n in (tmp_path / "again.html").read_text() for n in names)
    missing = subprocess.run([sys.executable, "-m", "deepcr_dask.cli", "report", str(tmp_path)], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "no manifest.sqlite" in missing.stderr
