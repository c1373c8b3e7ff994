#!/usr/bin/env python
"""Choose each camera's default mask model on independent truth (the rule of ``deepcr_dask.models.choice``).

1. Every mask model (ours and deepCR's zoo, through the Cleaner, which equals deepCR within 1e-5) on the
   *validation* split of the independent-truth sets: the STIS CR-SPLIT pair of the validation association
   (pair-difference truth), the WHT pair, and the validation association's harvested HST rays injected
   into real WFPC2, SAAO and GMOS frames. The tables use the test split instead (``bench/quality.py``).
2. The crowded-field checks of our models: WFPC2 Omega Cen cleaned as an archive run would (flagged fraction
   of each WF chip, star cores touched against chance, gates), and ACS/HRC 47 Tuc (gates).
3. Every inpainter (the 5x5 median, ours, deepCR's) on the same validation sets: rays grown by a pixel, the
   other exposure (pairs) or the frame without the injected rays as truth.
4. :func:`~deepcr_dask.models.choice.choose_default` and ``choose_inpaint`` per camera family; the choices and
   the numbers that made them go to ``deepcr_dask/weights/defaults/cameras.json`` and ``bench/results/defaults.md``.

    python bench/defaults.py                      # ~15 min on 2 cores
    python bench/defaults.py --results q.json     # reuse a validation-split quality.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from exactness import cpu_name  # bench/: the CPU as /proc/cpuinfo names it

from deepcr_dask.data import real_data_dir
from deepcr_dask.models.choice import (
    CAMERA_SETS,
    DECIDING_FPRS,
    INPAINT_SETS,
    choose_default,
    choose_inpaint,
    save_defaults,
)
from deepcr_dask.models.zoo import get_spec, list_models

RESULTS = Path(__file__).resolve().parent / "results"


def mask_models() -> tuple[list[str], list[str]]:
    """(ours, deepCR's) mask models, deepCR's hidden-4 model left out (not a candidate: 8x less capacity)."""
    ours, theirs = [], []
    for name in list_models("mask"):
        source = get_spec(name, "mask").source
        if source == "deepcr":
            if not name.endswith("-2-4"):
                theirs.append(name)
        elif source == "deepcr-dask":
            ours.append(name)
    return ours, theirs


def validation_tprs(models: list[str], output: Path) -> dict:
    """``set -> cleaner:model -> fpr -> TPR`` on the validation split (runs the benchmark)."""
    from deepcr_dask.evaluate import evaluate_main

    fields = sorted({s for sets in CAMERA_SETS.values() for s in sets})
    evaluate_main(["--split", "validation", "--fields", *fields, "--models", *models, "--methods", "cleaner",
                   "--inpaint", "none", "--no-plots", "--output", str(output)])
    return json.loads((output / "quality.json").read_text())


def tpr_table(results: dict) -> dict:
    """``set -> model -> str(fpr) -> TPR`` from a quality.json (cleaner rows, model names bare)."""
    table = {}
    for field_type, summary in results["fields"].items():
        table[field_type] = {name.split(":", 1)[1]: m["tpr_at_fpr"] for name, m in summary["methods"].items()
                             if name.startswith("cleaner:")}
    return table


def crowded_checks(models: list[str]) -> dict[str, dict]:
    """Per model: the worst WF chip of Omega Cen (flagged, cores touched, chance) and whether any Omega Cen
    or HRC chip is suspect."""
    from astropy.io import fits

    from deepcr_dask.archive.gates import CORE_GROW, star_cores
    from deepcr_dask.archive.pipeline import CleanOptions, clean_file

    folder = real_data_dir()
    c0f, hrc = folder / "wfpc2_u40x010hm_c0f.fits", folder / "acs_hrc_j8bt06nyq_flt.fits"
    if not c0f.is_file():
        print(f"note: {c0f} not found: no crowded-field checks")
        return {}
    cube = fits.getdata(c0f).astype(np.float32) * 7.0
    dq = fits.getdata(folder / "wfpc2_u40x010hm_c1f.fits")
    stars = [star_cores(cube[c], dq[c] != 0) for c in range(cube.shape[0])]
    core_pixels = 2 * CORE_GROW * (CORE_GROW + 1) + 1
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, model in enumerate(models):
            options = CleanOptions(model=model, device="cpu", inpaint_suspect=True)
            result = clean_file(c0f, options, output=Path(tmp) / f"o{k}.fits")
            worst = {"flagged": 0.0, "cores": 0.0, "cores_chance": 1.0}
            for chip, (labels, n) in list(zip(result.chips, stars))[1:]:  # WF2-4 (PC1 is another sampling)
                flagged = float(chip.mask.mean())
                touched = len(np.unique(labels[chip.mask & (labels > 0)])) / max(n, 1)
                chance = 1 - (1 - flagged) ** core_pixels
                if touched - chance > worst["cores"] - worst["cores_chance"]:
                    worst.update(cores=touched, cores_chance=chance)
                worst["flagged"] = max(worst["flagged"], flagged)
            suspect = any(chip.suspect for chip in result.chips)
            if hrc.is_file():
                suspect |= any(c.suspect for c in clean_file(hrc, options, output=Path(tmp) / f"h{k}.fits").chips)
            out[model] = {**worst, "suspect": bool(suspect)}
            print(f"crowded {model}: {out[model]}", flush=True)
    return out


def inpainting_rms(camera: str, mask: str, cache: dict) -> dict:
    """``set -> inpainter -> RMS`` on the validation split of the camera's inpainting sets, inpainted by a
    Cleaner with the camera's mask model, as an archive run inpaints."""
    from deepcr_dask.evaluate import BenchmarkConfig, build_scenes
    from deepcr_dask.evaluate.inpainting import pair_inpainting

    models = list_models("inpaint")
    config = replace(BenchmarkConfig(), split="validation")
    table = {}
    for field_type in INPAINT_SETS[camera]:
        if (field_type, mask) not in cache:
            if field_type in ("stis", "wht"):
                result = pair_inpainting(models, field_type, "validation", mask=mask)
            else:
                result = pair_inpainting(models, scenes=build_scenes(field_type, config), mask=mask)
            cache[field_type, mask] = result
            print(f"inpainting {field_type} (mask {mask}): " + ", ".join(
                f"{k} {v['rms']:.2f} (bias {v['bias']:+.2f})" for k, v in result.items()), flush=True)
        table[field_type] = {name: r["rms"] for name, r in cache[field_type, mask].items()}
    return table


def report(choices, crowded: dict, path: Path) -> None:
    fprs = [str(f) for f in DECIDING_FPRS]
    lines = [f"# Default mask model per camera ({dt.date.today().isoformat()})", "",
             "`python bench/defaults.py`; validation split (STIS association o56502040: its pair and its harvested "
             f"rays); {cpu_name()}. TPR at FPR {' / '.join(fprs)}.", ""]
    for c in choices:
        lines += [f"## {c.camera}: **{c.model}** (deepCR's best: {c.deepcr_best})", "",
                  "| model | " + " | ".join(c.tpr) + " | crowded | verdict |",
                  "|---|" + "--:|" * len(c.tpr) + "---|---|"]
        for model in dict.fromkeys([*c.reasons, c.deepcr_best]):
            cells = [" / ".join(f"{c.tpr[s][model][f]:.3f}" for f in fprs) for s in c.tpr]
            crowd = crowded.get(model)
            crowd_cell = "" if crowd is None or c.camera == "ground" else (
                f"{crowd['flagged']:.2%} flagged, cores {crowd['cores']:.1%} (chance {crowd['cores_chance']:.1%})"
                + (", suspect" if crowd["suspect"] else ""))
            lines.append(f"| {model} | " + " | ".join(cells) + f" | {crowd_cell} | {c.reasons.get(model, 'deepCR')} |")
        lines.append("")
        if c.inpaint_rms:
            names = list(next(iter(c.inpaint_rms.values())))
            lines += [f"Inpainting: **{c.inpaint or 'median'}** (RMS e- on the rays grown by a pixel)", "",
                      "| set | " + " | ".join(names) + " |", "|---|" + "--:|" * len(names)]
            lines += [f"| {s} | " + " | ".join(f"{v[n]:.2f}" for n in names) + " |" for s, v in c.inpaint_rms.items()]
            lines.append("")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", help="a validation-split quality.json to reuse")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--dry-run", action="store_true", help="print the choices, write nothing")
    args = parser.parse_args(argv)
    ours, theirs = mask_models()
    if args.results:
        results = json.loads(Path(args.results).read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            results = validation_tprs(ours + theirs, Path(tmp))
    table = tpr_table(results)
    crowded = crowded_checks(ours)
    choices, cache = [], {}
    for camera in CAMERA_SETS:
        choice = choose_default(camera, table, ours, theirs, crowded=crowded)
        network, rms = choose_inpaint(camera, inpainting_rms(camera, choice.model, cache))
        choices.append(replace(choice, inpaint=network, inpaint_rms=rms))
    for c in choices:
        print(f"{c.camera}: {c.model} (deepCR's best {c.deepcr_best}), inpaint {c.inpaint or 'median'}; " +
              "; ".join(f"{m}: {r}" for m, r in c.reasons.items()))
    if not args.dry_run:
        save_defaults(choices, note=f"bench/defaults.py, {dt.date.today().isoformat()}, validation split")
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        report(choices, crowded, out / "defaults.md")
        print(f"wrote {out / 'defaults.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
