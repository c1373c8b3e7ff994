#!/usr/bin/env python
"""Inpainting judged on independent truth: every inpainter on the rays of real pairs and of real HST rays
injected into real frames (test split), each inpainting Cleaner built on the camera family's default mask
model, as an archive run inpaints.

The mask is the rays grown by one pixel, as a detector's mask would be; the truth under it is the other
exposure scaled to this one (pairs; scored only where the other exposure has no ray), or the frame without
the injected rays. Writes ``bench/results/inpainting.md``.

    python bench/inpainting.py
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import replace
from pathlib import Path

from exactness import cpu_name  # bench/: the CPU as /proc/cpuinfo names it

from deepcr_dask.evaluate import BenchmarkConfig, build_scenes
from deepcr_dask.evaluate.inpainting import pair_inpainting
from deepcr_dask.models.choice import INPAINT_SETS, load_defaults
from deepcr_dask.models.zoo import list_models

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    models = list_models("inpaint")
    config = replace(BenchmarkConfig(), split="test")
    defaults = load_defaults()
    lines = [f"# Inpainting on independent truth ({dt.date.today().isoformat()})", "",
             "`python bench/inpainting.py`; test split (STIS association o56502050 and its harvested rays); "
             f"{cpu_name()}. RMS and mean error (e-) on the rays grown by a pixel; "
             "the reference's own noise is in every RMS.", "",
             "| set | mask model | " + " | ".join(["median", *models]) + " | default |",
             "|---|---|" + "--:|" * (len(models) + 1) + "---|"]
    done = {}
    for camera, sets in INPAINT_SETS.items():
        mask = defaults.get(camera, {}).get("model", "ACS-WFC")
        for field_type in sets:
            if (field_type, mask) in done:
                continue
            if field_type in ("stis", "wht"):
                result = pair_inpainting(models, field_type, "test", mask=mask)
            else:
                result = pair_inpainting(models, scenes=build_scenes(field_type, config), mask=mask)
            done[field_type, mask] = result
            cells = [f"{result[m]['rms']:.2f} ({result[m]['bias']:+.2f})" for m in ["median", *models]]
            chosen = defaults.get(camera, {}).get("inpaint") or "median"
            lines.append(f"| {field_type} | {mask} | " + " | ".join(cells) + f" | {camera}: {chosen} |")
            print(lines[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "inpainting.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'inpainting.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
