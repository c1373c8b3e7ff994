"""`deepcr-dask demo`: a small archive of ACS/WFC-like FLC files (plus the real frames when present),
cleaned on the embedded local cluster."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from .data import real_data_dir

__all__ = ["make_demo_archive", "run_demo", "write_flc"]

REAL_FRAMES = ("wfpc2_u5780205r_c0f.fits", "stis_o4sp040b0_raw.fits", "saao_a8280271.fits",
               "gmos_S20190808S0048_cutout.fits")


def write_flc(
    path: str | os.PathLike,
    chips: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    exptime: float = 500.0,
    rootname: str = "jdemo01",
    filter_name: str = "F606W",
    bunit: str = "ELECTRONS",
) -> Path:
    """Write an ACS/WFC FLC-like file: primary header + (SCI, ERR, DQ) per chip.

    ``chips`` holds ``(sci, err, dq)`` per chip, SCI in ``bunit``.
    """
    primary = fits.PrimaryHDU()
    header = primary.header
    for key, value in (("TELESCOP", "HST"), ("INSTRUME", "ACS"), ("DETECTOR", "WFC"), ("ROOTNAME", rootname),
                       ("FILTER1", "CLEAR1L"), ("FILTER2", filter_name), ("EXPTIME", exptime),
                       ("FILETYPE", "SCI"), ("NEXTEND", 3 * len(chips)), ("ORIGIN", "deepcr-dask demo")):
        header[key] = value
    hdus = [primary]
    for ver, (sci, err, dq) in enumerate(chips, start=1):
        for name, data in (("SCI", sci.astype(np.float32)), ("ERR", err.astype(np.float32)),
                           ("DQ", dq.astype(np.int16))):
            hdu = fits.ImageHDU(data, name=name, ver=ver)
            hdu.header["BUNIT"] = bunit if name != "DQ" else "UNITLESS"
            hdu.header["CCDCHIP"] = 2 if ver == 1 else 1  # ACS/WFC: SCI,1 is chip 2
            hdus.append(hdu)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def make_demo_archive(folder: Path, n_files: int = 4, shape: tuple[int, int] = (512, 1024), seed: int = 0,
                      include_real: bool = True) -> list[Path]:
    """Synthetic ACS/WFC-like FLC files with real-shaped cosmic rays, plus copies of the real frames."""
    from .sim import simulate

    written = []
    for i in range(n_files):
        chips = []
        for chip in range(2):
            sample = simulate(shape, instrument="ACS-WFC", exptime=500.0, seed=seed + 10 * i + chip,
                              field=("sparse", "globular", "galaxy")[(i + chip) % 3])
            dq = np.where(sample.ignore, 16, 0).astype(np.int16)
            err = np.sqrt(np.maximum(sample.noise_sigma, 0) ** 2 + np.maximum(sample.image - sample.clean, 0))
            chips.append((sample.image, err, dq))
        written.append(write_flc(folder / "acs" / f"jdemo{i:02d}q_flc.fits", chips, rootname=f"jdemo{i:02d}q"))
    real = real_data_dir() if include_real else None
    if real is not None and real.is_dir():
        for name in REAL_FRAMES:
            if (real / name).is_file():
                target = folder / "real" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(real / name, target)  # a copy inside the demo folder, never in the repo
                written.append(target)
    return written


def run_demo(output: Path, *, workers: int = 2, n_files: int = 4) -> int:
    """Make the demo archive under ``output/inputs`` and clean it on a local cluster; prints a summary."""
    from .archive.run import process_archive
    from .distributed.cluster import make_cluster

    start = time.perf_counter()
    output = Path(output)
    inputs = output / "inputs"
    files = make_demo_archive(inputs, n_files=n_files)
    print(f"demo archive: {len(files)} files in {inputs} ({time.perf_counter() - start:.1f} s)")
    with make_cluster("local", n_workers=workers, threads_per_worker=1) as handle:
        print(f"dashboard: {handle.dashboard_link}")
        summary = process_archive(inputs, output / "cleaned", zarr_path=output / "cleaned.zarr", cluster=handle,
                                  overwrite=True, probability=True)
    print(summary.table())
    print(f"\ncleaned FITS and manifest: {summary.output_dir}\nZarr store: {summary.zarr_path}")
    print(f"found {summary.cr_pixels} cosmic-ray pixels in {len(summary.done)} files "
          f"({time.perf_counter() - start:.1f} s in all)")
    sys.stdout.flush()
    return summary.exit_code
