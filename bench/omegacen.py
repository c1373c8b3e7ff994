#!/usr/bin/env python
"""Single-frame false positives on the hardest real field: WFPC2 Omega Cen (u40x010hm, 100 s, F555W).

Cleans the real c0f (DQ from its c1f) with ``clean_file`` as an archive run would, once per mask model,
and reports the fraction of each chip's pixels flagged. A 100 s WFPC2 exposure holds about 0.1-0.3%
cosmic-ray pixels, so much more than that is star cores. For the first model it also draws 50 random
flagged groups of the WF chips (image cutout beside the mask) into a PNG sheet, so a person can judge
whether they are cosmic rays.

    python bench/omegacen.py                         # default model for WFPC2, then ACS-WFC and generic-HST
    python bench/omegacen.py --models WFPC2 ACS-WFC

Writes ``bench/results/omegacen.md`` and ``bench/results/omegacen_flagged.png``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

import numpy as np
from exactness import cpu_name  # bench/: the CPU as /proc/cpuinfo names it
from scipy import ndimage

from deepcr_dask.archive.pipeline import CleanOptions, clean_file
from deepcr_dask.data import real_data_dir

RESULTS = Path(__file__).resolve().parent / "results"
C0F = "wfpc2_u40x010hm_c0f.fits"


def sheet(results, cube: np.ndarray, path: Path, n: int = 50, seed: int = 0) -> int:
    """PNG of ``n`` random flagged groups (8-connected) of the WF chips: image (asinh stretch) and mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = []
    for plane, chip in enumerate(results.chips[1:], start=1):  # WF2-4; PC1 is another sampling
        labels, _ = ndimage.label(chip.mask, np.ones((3, 3), bool))
        for window in ndimage.find_objects(labels):
            cy = (window[0].start + window[0].stop) // 2
            cx = (window[1].start + window[1].stop) // 2
            groups.append((plane, chip, cy, cx))
    rng = np.random.default_rng(seed)
    picks = [groups[i] for i in rng.choice(len(groups), size=min(n, len(groups)), replace=False)]
    cols = 10
    rows = 2 * int(np.ceil(len(picks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.3))
    for ax in axes.ravel():
        ax.set_axis_off()
    half = 7
    for k, (plane, chip, cy, cx) in enumerate(picks):
        ys = slice(max(cy - half, 0), cy + half + 1)
        xs = slice(max(cx - half, 0), cx + half + 1)
        image = cube[plane][ys, xs]
        sky = float(np.median(image))
        top = float(np.max(image)) - sky
        row, col = 2 * (k // cols), k % cols
        axes[row, col].imshow(np.arcsinh((image - sky) / max(top / 50.0, 1.0)), cmap="gray", origin="lower")
        axes[row, col].set_title(f"WF{plane + 1} y{cy} x{cx}", fontsize=5)
        axes[row + 1, col].imshow(chip.mask[ys, xs], cmap="Reds", origin="lower", vmin=0, vmax=1)
    fig.suptitle("WFPC2 Omega Cen WF2-4: random flagged groups (top: image, asinh; bottom: mask)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return len(groups)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[None, "ACS-WFC", "generic-HST"],
                        help="mask models (default: the WFPC2 default, ACS-WFC, generic-HST)")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    source = real_data_dir() / C0F
    if not source.is_file():
        print(f"{source} not found: nothing to measure")
        return 1
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    from astropy.io import fits

    from deepcr_dask.archive.gates import CORE_GROW, star_cores

    core_pixels = 2 * CORE_GROW * (CORE_GROW + 1) + 1  # as the gates count a core

    cube = fits.getdata(source).astype(np.float32) * 7.0  # electrons (ATODGAIN 7)
    dq = fits.getdata(source.with_name(source.name.replace("_c0f", "_c1f")))
    stars = [star_cores(cube[c], dq[c] != 0) for c in range(cube.shape[0])]
    rows, groups = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for k, model in enumerate(args.models):
            options = CleanOptions(model=model, device="cpu", inpaint_suspect=True)
            result = clean_file(source, options, output=Path(tmp) / f"{k}.fits")
            fractions = [float(chip.mask.mean()) for chip in result.chips]
            cores = [(len(np.unique(labels[chip.mask & (labels > 0)])), n)
                     for chip, (labels, n) in zip(result.chips, stars)]
            rows.append((result.provenance.model, result.provenance.threshold, fractions,
                         [bool(chip.suspect) for chip in result.chips], cores))
            print(result.provenance.model, " ".join(f"{f:.3%}" for f in fractions), flush=True)
            if k == 0:
                groups = sheet(result, cube, out_dir / "omegacen_flagged.png")
    lines = [f"# Single-frame flags on WFPC2 Omega Cen ({dt.date.today().isoformat()})", "",
             f"`{C0F}` (100 s, F555W; DQ from its c1f), cleaned with `clean_file` as an archive run would; "
             f"`python bench/omegacen.py`; {cpu_name()}. Expected cosmic-ray "
             "pixels in a 100 s WFPC2 exposure: about 0.1-0.3%.", "",
             "Per chip: pixels flagged, and (in brackets) the star cores touched by a flag out of the stars the "
             f"quality gates find (5x5 peaks 10 sigma above the sky; {core_pixels} pixels each: a random 0.2% of "
             f"the pixels would touch {1 - 0.998 ** core_pixels:.1%} of them).", "",
             "| mask model | threshold | PC1 | WF2 | WF3 | WF4 | gates call suspect |", "|---|--:|--:|--:|--:|--:|---|"]
    for model, threshold, fractions, suspect, cores in rows:
        cells = " | ".join(f"{f:.2%} ({hit}/{n})" for f, (hit, n) in zip(fractions, cores))
        lines.append(f"| {model} | {threshold:.3g} | {cells} | {', '.join('yes' if s else 'no' for s in suspect)} |")
    lines += ["", f"`omegacen_flagged.png`: 50 random flagged groups of WF2-4 ({groups} groups in all) under the first "
              "row's model. WF2 and WF3 (and PC1) were training frames of the WFPC2 model, WF4 was held out."]
    (out_dir / "omegacen.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out_dir / 'omegacen.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
