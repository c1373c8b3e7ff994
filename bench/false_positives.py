#!/usr/bin/env python
"""What decides TPR at a low FPR on a real field: a sheet of a model's false-positive groups there.

On a real frame the negatives are whatever the labelling did not ignore, own rays it could not find
included. This draws every false-positive group (8-connected) of one mask model at the probability
threshold that gives ``--fpr`` on the evaluation's scenes of a real field (the same scenes, inputs and
ignore masks as ``bench/quality.py``), image cutout above, and below the flags (red), the injected rays
(green) and the ignored pixels (blue), so a person can tell star cores from unlabelled cosmic rays.

    python bench/false_positives.py --field omegacen --model WFPC2 --fpr 1e-4

Writes ``bench/results/false_positives_<field>_<model>.png`` and prints one line per group.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

RESULTS = Path(__file__).resolve().parent / "results"


def false_positive_groups(field: str, model: str, fpr: float):
    """The pooled probability threshold that gives ``fpr`` on the scenes of ``field``, and
    ``(scene, false-positive flags, inputs)`` for each scene."""
    from deepcr_dask import Cleaner
    from deepcr_dask.evaluate.benchmark import BenchmarkConfig
    from deepcr_dask.evaluate.methods import prepare_inputs
    from deepcr_dask.evaluate.scenes import build_scenes

    cleaner = Cleaner(mask=model, device="cpu")
    scenes = build_scenes(field, BenchmarkConfig())
    runs = []
    for scene in scenes:
        inputs = prepare_inputs(scene.image, scene.ignore)
        runs.append((scene, cleaner.probability(inputs.image, inputs.ignore), inputs))
    if not runs:  # the real data is missing (build_scenes said so)
        return 1.0, []
    negatives = np.concatenate([p[~s.truth & ~i.ignore] for s, p, i in runs])
    threshold = float(np.sort(negatives)[::-1][int(fpr * negatives.size)])
    return threshold, [(s, (p > threshold) & ~s.truth & ~i.ignore, i) for s, p, i in runs]


def draw(runs, path: Path, title: str, half: int = 8, cols: int = 14) -> int:
    """The sheet: every false-positive group's cutout and its flags / truth / ignore map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = []
    for scene, flags, inputs in runs:
        labels, _ = ndimage.label(flags, np.ones((3, 3), bool))
        for window in ndimage.find_objects(labels):
            picks.append((scene, flags, inputs, (window[0].start + window[0].stop) // 2,
                          (window[1].start + window[1].stop) // 2))
    rows = 2 * max(1, int(np.ceil(len(picks) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.2), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, (scene, flags, inputs, cy, cx) in enumerate(picks):
        h, w = flags.shape
        y0, x0 = min(max(cy - half, 0), h - 2 * half - 1), min(max(cx - half, 0), w - 2 * half - 1)
        window = (slice(y0, y0 + 2 * half + 1), slice(x0, x0 + 2 * half + 1))
        cut = scene.image[window]
        sky = float(np.median(cut))
        row, col = 2 * (k // cols), k % cols
        axes[row, col].imshow(np.arcsinh((cut - sky) / max((cut.max() - sky) / 50.0, 1.0)), cmap="gray",
                              origin="lower")
        axes[row, col].set_title(f"{scene.name} y{cy} x{cx}", fontsize=4)
        rgb = np.stack([flags[window], scene.truth[window], inputs.ignore[window]], axis=-1).astype(float)
        axes[row + 1, col].imshow(rgb, origin="lower")
        print(f"{scene.name} y{cy} x{cx}: peak {float(cut.max()):.0f} e-, sky {sky:.0f} e-")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return len(picks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--field", default="omegacen", help="a real field of bench/quality.py")
    parser.add_argument("--model", default="WFPC2")
    parser.add_argument("--fpr", type=float, default=1e-4)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    threshold, runs = false_positive_groups(args.field, args.model, args.fpr)
    if not runs:
        print(f"no scenes for {args.field} (real data missing)")
        return 1
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"false_positives_{args.field}_{args.model}.png"
    pixels = int(sum(flags.sum() for _, flags, _ in runs))
    title = (f"{args.field}, {args.model} at FPR {args.fpr:g} (threshold {threshold:.3f}): false-positive groups "
             f"({pixels} px); top image (asinh), bottom red flag, green injected, blue ignored")
    groups = draw(runs, path, title)
    print(f"{groups} groups, {pixels} pixels; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
