#!/usr/bin/env python
"""Digest of everything the package computes on fixed inputs, to prove a refactoring changed no output.

Run it before and after a change and compare the two JSON files (``--compare OLD NEW``)::

    python workflows/output_digest.py -o before.json
    ... change the code ...
    python workflows/output_digest.py -o after.json --compare before.json

It hashes (SHA-256 of the raw array bytes) the outputs of: the demo archive run through
``process_archive`` on a local cluster (cleaned FITS data and Zarr arrays), ``Cleaner.run`` on every
chip of every real frame in ``../shared/data/real/`` with its default model (and with network
inpainting), ``clean_dask`` on a real frame in odd chunks, and the simulator and evaluation scenes
for fixed seeds. FITS headers are left out (they carry the date of cleaning).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def digest(array) -> str:
    array = np.ascontiguousarray(np.asarray(array))
    return f"{array.dtype.str}{list(array.shape)}:" + hashlib.sha256(array.tobytes()).hexdigest()[:20]


def archive_digests(work: Path) -> dict[str, str]:
    from astropy.io import fits

    from deepcr_dask import make_cluster, process_archive
    from deepcr_dask.demo import make_demo_archive

    inputs = work / "inputs"
    make_demo_archive(inputs, n_files=4)
    out = {}
    with make_cluster("local", n_workers=2, threads_per_worker=1) as handle:
        summary = process_archive(inputs, work / "cleaned", zarr_path=work / "cleaned.zarr", cluster=handle,
                                  overwrite=True, probability=True, progress=False)
    out["archive/summary"] = json.dumps({"done": len(summary.done), "failed": len(summary.failed),
                                         "skipped": len(summary.skipped), "cr_pixels": summary.cr_pixels})
    for path in sorted((work / "cleaned").rglob("*.fits")):
        with fits.open(path) as hdul:
            for i, hdu in enumerate(hdul):
                if hdu.data is not None and hdu.is_image:
                    out[f"archive/{path.name}/{i}:{hdu.name},{hdu.ver}"] = digest(hdu.data)
    import zarr

    root = zarr.open_group(str(work / "cleaned.zarr"), mode="r")
    for exposure_name, exposure in sorted(root.groups()):
        for chip_name, chip in sorted(exposure.groups()):
            for name, array in sorted(chip.arrays()):
                out[f"zarr/{exposure_name}/{chip_name}/{name}"] = digest(array[...])
    return out


def frame_digests(real: Path) -> dict[str, str]:
    from deepcr_dask.inference.cleaner import get_cleaner
    from deepcr_dask.io.fits import inspect_file, read_chip

    out = {}
    for path in sorted(real.glob("*.fits")):
        info = inspect_file(path)
        for inpaint in (None, "ACS-WFC-F606W-2-32"):
            cleaner = get_cleaner(info.model, inpaint, "cpu")
            for chip in info.chips:
                electrons, ignore = read_chip(path, chip)
                result = cleaner.run(electrons, threshold=0.5, ignore=ignore)
                for name, array in sorted(result.items()):
                    out[f"frame/{path.name}/{chip.name}/{inpaint}/{name}"] = digest(array)
    return out


def dask_digests(real: Path) -> dict[str, str]:
    import dask
    import dask.array as da

    from deepcr_dask import clean_dask
    from deepcr_dask.io.fits import inspect_file, read_chip

    path = real / "acs_hrc_j8bt06nyq_flt.fits"
    info = inspect_file(path)
    electrons, ignore = read_chip(path, info.chips[0])
    image = da.from_array(electrons, chunks=(257, 301))
    with dask.config.set(scheduler="threads"):
        mask, cleaned, prob = dask.compute(*clean_dask(image, mask="ACS-WFC", ignore=ignore, return_probability=True))
    return {"dask/hrc/mask": digest(mask), "dask/hrc/cleaned": digest(cleaned), "dask/hrc/probability": digest(prob)}


def simulator_digests() -> dict[str, str]:
    from deepcr_dask import evaluate, sim

    out = {}
    for instrument, field, seed in (("ACS-WFC", "sparse", 1), ("WFPC2", "globular", 2), ("ground", "galaxy", 3),
                                    ("WFC3-UVIS", "sparse", 4)):
        s = sim.simulate((128, 160), instrument=instrument, exptime=400.0, seed=seed, field=field)
        for name in ("image", "truth", "ignore", "clean", "noise_sigma", "charge"):
            out[f"sim/{instrument}/{field}/{seed}/{name}"] = digest(getattr(s, name))
    scene = sim.simulate((96, 96), seed=5).clean
    pair = sim.training_pair_from_real(scene, "WFPC2", exptime=300.0, seed=6)
    for name in ("image", "truth", "ignore"):
        out[f"sim/real-pair/{name}"] = digest(getattr(pair, name))
    config = evaluate.BenchmarkConfig.quick()
    for field_type in config.fields:
        for scene in evaluate.build_scenes(field_type, config):
            for name in ("image", "truth", "ignore", "clean"):
                out[f"eval/{scene.name}/{name}"] = digest(getattr(scene, name))
    return out


def compare(old: dict[str, str], new: dict[str, str]) -> int:
    changed = sorted(k for k in old.keys() & new.keys() if old[k] != new[k])
    missing, added = sorted(old.keys() - new.keys()), sorted(new.keys() - old.keys())
    for key in changed:
        print(f"CHANGED {key}: {old[key]} -> {new[key]}")
    for key in missing:
        print(f"MISSING {key}")
    for key in added:
        print(f"ADDED   {key}")
    same = len(old.keys() & new.keys()) - len(changed)
    print(f"{same} identical, {len(changed)} changed, {len(missing)} missing, {len(added)} added")
    return 1 if changed or missing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="JSON file of digests to write")
    parser.add_argument("--compare", type=Path, help="an earlier JSON file to compare with")
    parser.add_argument("--parts", nargs="+", default=["archive", "frames", "dask", "simulator"])
    args = parser.parse_args(argv)
    from deepcr_dask.data import real_data_dir

    real = real_data_dir()
    if not real.is_dir():
        print(f"real frames not found at {real}", file=sys.stderr)
        return 2
    digests: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "archive" in args.parts:
            digests |= archive_digests(Path(tmp))
        if "frames" in args.parts:
            digests |= frame_digests(real)
        if "dask" in args.parts:
            digests |= dask_digests(real)
        if "simulator" in args.parts:
            digests |= simulator_digests()
    args.output.write_text(json.dumps(digests, indent=1, sort_keys=True))
    print(f"wrote {len(digests)} digests to {args.output}")
    if args.compare:
        return compare(json.loads(args.compare.read_text()), digests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
