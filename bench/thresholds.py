#!/usr/bin/env python
"""Thresholds by false-positive rate for the models that have no validation record of their own.

deepCR's zoo models (and ``generic-HST``, trained before models recorded them) are run on the project's
real frames with injected real cosmic rays (the evaluation's scenes: WFPC2 NGC 4151 WF3/WF4, SAAO, GMOS;
their own rays ignored as :mod:`deepcr_dask.sim.real` says; not the crowded Omega Cen and 47 Tuc frames,
whose own rays stay unlabelled and would pass for false positives), and the probability
thresholds that give FPR 1e-4, 5e-4 and 5e-3 on the pooled negatives are written to
``deepcr_dask/weights/thresholds/deepcr-zoo.json`` (deepCR models) and into ``generic-HST``'s metadata.
Models trained by ``deepcr-dask train`` record theirs from their own validation frames instead.

    python bench/thresholds.py            # about 3 minutes on 2 cores
    python bench/thresholds.py --dry-run  # print only
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import deepcr_dask as dcr
from deepcr_dask.evaluate.benchmark import BenchmarkConfig
from deepcr_dask.evaluate.scenes import build_scenes, pooled_probabilities
from deepcr_dask.models import thresholds, zoo

FIELDS = {"wfpc2": 6, "saao": 4, "gmos": 10}  # realisations
CHIPS = (2, 3)  # NGC 4151 WF3, WF4: held out from every model trained here


def scenes():
    config = BenchmarkConfig(realisations=FIELDS, wfpc2_chips=CHIPS)
    out = []
    for field in FIELDS:
        out.extend(build_scenes(field, config))
    return out


def calibrate(name: str, samples) -> dict:
    cleaner = dcr.Cleaner(name, device="cpu")
    prob, truth, ignore = pooled_probabilities(cleaner, samples)
    by_fpr = thresholds.calibrate_thresholds(prob, truth, ignore)
    positives = prob[truth & ~ignore]
    tpr = {k: float((positives > v).mean()) for k, v in by_fpr.items()}
    default_fpr = float((prob[~truth & ~ignore] > cleaner.threshold).mean())
    return {"fpr_thresholds": by_fpr, "tpr": tpr, "default_threshold_fpr": default_fpr}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    samples = scenes()
    frames = sorted({s.name.rsplit("-r", 1)[0] for s in samples})
    pixels = sum(s.image.size for s in samples)
    zoo_table, own = {}, {}
    for spec in zoo.registered_specs():
        if spec.kind != "mask" or (spec.source != "deepcr" and "fpr_thresholds" in spec.extra):
            continue
        record = calibrate(spec.name, samples)
        line = ", ".join(f"FPR {k}: {v:.4g} (TPR {record['tpr'][k]:.3f})" for k, v in record["fpr_thresholds"].items())
        print(f"{spec.name}: {line}; default threshold {spec.threshold:g} gives FPR "
              f"{record['default_threshold_fpr']:.2e}", flush=True)
        (zoo_table if spec.source == "deepcr" else own)[spec.name] = record
    calibration = {"date": dt.date.today().isoformat(), "frames": frames, "pixels": pixels,
                   "command": "python bench/thresholds.py", "deepcr_dask": dcr.__version__}
    if args.dry_run:
        return 0
    thresholds.ZOO_FILE.parent.mkdir(parents=True, exist_ok=True)
    thresholds.ZOO_FILE.write_text(json.dumps({"calibration": calibration, "models": zoo_table}, indent=2) + "\n")
    for name, record in own.items():
        meta_path = Path(zoo.get_spec(name, "mask").filename).with_suffix(".json")
        meta = json.loads(meta_path.read_text())
        meta["fpr_thresholds"] = record["fpr_thresholds"]
        meta["fpr_calibration"] = {**calibration, "tpr": record["tpr"]}
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {thresholds.ZOO_FILE} and the metadata of {', '.join(own) or 'no own model'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
