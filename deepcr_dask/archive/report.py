"""A quality-assurance page for an archive run: one self-contained HTML file to look at.

``deepcr-dask report OUTPUT`` (or ``archive --qa-report``) reads the run's manifest and cleaned FITS
copies and writes ``OUTPUT/report.html``: the run summary, a histogram of the fraction of pixels flagged
per chip against the rate expected from the exposure time (the quality gates' rate), failed and suspect
files first, then every cleaned chip with a thumbnail of its input (mask in red) and its most-flagged
cutouts, and the
skipped files with their reasons. Images are PNGs (matplotlib) embedded in the page, so it can be mailed
or opened from a cluster's shared disk.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import remote

__all__ = ["write_report"]

ORDER = {"failed": 0, "suspect": 1, "done": 2, "skipped": 3}


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _stretch(image: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """asinh stretch around the sky of ``reference`` (default the image itself)."""
    reference = image if reference is None else reference
    finite = np.isfinite(reference)
    if not finite.any():
        return np.zeros(image.shape)
    sky = float(np.median(reference[finite]))
    spread = float(np.percentile(reference[finite], 99.5)) - sky
    return np.arcsinh(np.nan_to_num(image - sky) / max(spread / 30.0, 1e-6))


def _chip_arrays(source: str, fits_output: str, chip_name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(image as it came in, cosmic-ray mask) of one chip: the mask from the cleaned copy's DQ bit or CRMASK,
    the pixels from the input (the rays are gone from the copy), or from the copy if the input has moved."""
    from ..io.fits import inspect_file, open_fits, read_chip

    try:
        info = inspect_file(fits_output)
        chip = next(c for c in info.chips if c.name == chip_name)
        with open_fits(fits_output) as hdul:
            data = hdul[chip.hdu].data
            image = np.asarray(data[chip.plane] if chip.plane is not None else data, np.float32)
            bit = int(hdul[0].header.get("CRBIT", 8192))
            ver = (chip.plane + 1) if chip.plane is not None else int(hdul[chip.hdu].header.get("EXTVER", 1))
            names = [(h.name, h.header.get("EXTVER", 1)) for h in hdul]
            if ("CRMASK", ver) in names:
                mask = np.asarray(hdul["CRMASK", ver].data, bool)
            elif chip.dq_hdu is not None and chip.dq_path is None:
                mask = (np.asarray(hdul[chip.dq_hdu].data).astype(np.int64) & bit) != 0
            else:
                mask = np.zeros(image.shape, bool)
        if remote.exists(source):
            original = next((c for c in inspect_file(source).chips if c.name == chip_name), None)
            if original is not None:
                image = read_chip(source, original, ignore_bits=0)[0]
        return image, mask
    except (OSError, ValueError, StopIteration, InputError):
        return None


def _chip_figure(image: np.ndarray, mask: np.ndarray, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import ndimage

    step = max(1, max(image.shape) // 256)
    thumb = image[::step, ::step]
    flagged = ndimage.maximum_filter(mask, size=step)[::step, ::step] if step > 1 else mask
    counts = ndimage.uniform_filter(mask.astype(np.float32), size=32, mode="constant")
    cutouts = []
    work = counts.copy()
    for _ in range(4):  # the most-flagged 32x32 windows, not overlapping
        if work.max() <= 0:
            break
        y, x = np.unravel_index(int(np.argmax(work)), work.shape)
        window = mask[max(0, y - 16):y + 16, max(0, x - 16):x + 16]
        ys, xs = np.nonzero(window)  # centre on the flagged pixels, not on the window's corner
        if ys.size:
            y, x = max(0, y - 16) + round(float(ys.mean())), max(0, x - 16) + round(float(xs.mean()))
        cutouts.append((y, x))
        work[max(0, y - 32):y + 32, max(0, x - 32):x + 32] = 0
    fig, axes = plt.subplots(1, 1 + max(len(cutouts), 1), figsize=(2.6 * (1 + max(len(cutouts), 1)), 2.8))
    axes = np.atleast_1d(axes)
    axes[0].imshow(_stretch(thumb), cmap="gray", origin="lower")
    overlay = np.zeros((*flagged.shape, 4))
    overlay[flagged] = (1, 0, 0, 0.9)
    axes[0].imshow(overlay, origin="lower")
    axes[0].set_title(title, fontsize=7)
    for ax, (y, x) in zip(axes[1:], cutouts):
        ys, xs = slice(max(0, y - 16), y + 16), slice(max(0, x - 16), x + 16)
        ax.imshow(_stretch(image[ys, xs], thumb), cmap="gray", origin="lower")
        ax.contour(mask[ys, xs], levels=[0.5], colors="red", linewidths=0.6)
        ax.set_title(f"y {y}, x {x}", fontsize=7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return _png(fig)


def _histogram(rows: list[dict], expected: list[float]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = [100 * (r["cr_fraction"] or 0.0) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 2.8))
    if fractions:
        ax.hist(fractions, bins=min(30, max(5, len(fractions))), color="tab:blue", alpha=0.8,
                label="chips")
    for value in sorted(set(round(e, 6) for e in expected if e)):
        ax.axvline(100 * value, color="tab:red", linestyle="--", linewidth=1)
    if expected:
        ax.axvline(np.nan, color="tab:red", linestyle="--", label="expected from exposure time")
    ax.set(xlabel="pixels flagged (%)", ylabel="chips")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _expected(fits_output: str | None) -> float | None:
    from ..io.fits import open_fits
    from .gates import expected_fraction

    try:
        if not fits_output or not remote.exists(fits_output):
            return None
        with open_fits(fits_output) as hdul:
            header = hdul[0].header
    except (OSError, InputError):
        return None
    exptime = header.get("EXPTIME")
    return expected_fraction(float(exptime) if exptime else None, space=header.get("TELESCOP") == "HST")


def _skipped_by_kind(files, file_status) -> dict[str, tuple[int, dict]]:
    """Product type -> (files skipped as it, the first one's row), most files first."""
    kinds: dict[str, list[dict]] = defaultdict(list)
    for _, chips in files:
        if file_status(chips) == "skipped":
            kinds[chips[0].get("product") or "other"].append(chips[0])
    return {kind: (len(rows), rows[0]) for kind, rows in sorted(kinds.items(), key=lambda kv: -len(kv[1]))}


def write_report(output_dir: str | os.PathLike, path: str | os.PathLike | None = None, *,
                 max_chips: int = 200, manifest: str | os.PathLike | None = None) -> Path:
    """Write the QA page of the archive run in ``output_dir``; returns its path.

    Parameters
    ----------
    output_dir : path or URL
        An archive run's output folder (with ``manifest.sqlite``), or its output URL.
    path : path, optional
        Where to write (default ``output_dir/report.html``, or beside the manifest for an output URL);
        written to a temporary name, then renamed.
    max_chips : int
        Chips drawn (failed and suspect first); the others are listed without pictures.
    manifest : path, optional
        The run's manifest, where ``--manifest`` put it (default: where the run keeps it by default).
    """
    from .manifest import Manifest, default_manifest_path

    output = str(output_dir) if remote.is_url(output_dir) else Path(remote.local_path(output_dir))
    manifest_path = Path(manifest) if manifest else default_manifest_path(output if remote.is_url(output)
                                                                          else output.resolve())
    if not manifest_path.is_file():
        if manifest is None and not remote.is_url(output):
            raise InputError(f"{output}: no manifest.sqlite here; not the output folder of an archive run")
        raise InputError(f"{manifest_path}: no manifest here for {output} (give the run's --manifest)")
    manifest = Manifest(manifest_path)
    try:
        rows = manifest.rows()
    finally:
        manifest.close()
    by_file: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_file[row["path"]].append(row)

    def file_status(chips: list[dict]) -> str:
        return min((c["status"] for c in chips), key=lambda s: ORDER.get(s, 9))

    files = sorted(by_file.items(), key=lambda item: (ORDER.get(file_status(item[1]), 9), item[0]))
    counts = defaultdict(int)
    for _, chips in files:
        counts[file_status(chips)] += 1
    cleaned = [r for r in rows if r["status"] in ("done", "suspect")]
    expected = [_expected(r["fits_output"]) for r in cleaned]
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>deepcr-dask run report</title>",
             "<style>body{font-family:sans-serif;margin:1.5em;max-width:1200px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}.failed{color:#b00}.suspect{color:#c60}"
             "img{max-width:100%}</style></head><body>",
             f"<h1>Cosmic-ray cleaning report</h1><p>{html.escape(str(output))}</p>",
             "<table><tr><th>outcome</th><th>files</th></tr>"]
    for status in ("failed", "suspect", "done", "skipped"):
        parts.append(f"<tr><td class='{status}'>{status}</td><td>{counts.get(status, 0)}</td></tr>")
    parts.append("</table>")
    skipped = _skipped_by_kind(files, file_status)
    if skipped:
        parts.append("<h2>Skipped by kind</h2><table id='skipped-kinds'><tr><th>skipped as</th><th>files</th>"
                     "<th>for example</th><th>why</th></tr>")
        for kind, (count, example) in skipped.items():
            parts.append(f"<tr><td>{html.escape(kind)}</td><td>{count}</td>"
                         f"<td>{html.escape(Path(example['path']).name)}</td>"
                         f"<td>{html.escape(example['error'] or '')}</td></tr>")
        parts.append("</table>")
    parts.append("<h2>Flagged fraction per chip</h2>")
    parts.append(f"<img alt='histogram' src='{_histogram(cleaned, [e for e in expected if e])}'>")
    parts.append("<h2>Files</h2><table><tr><th>file</th><th>chip</th><th>outcome</th><th>flagged</th>"
                 "<th>model</th><th>reason</th></tr>")
    for name, chips in files:
        for chip in chips:
            fraction = "" if chip["cr_fraction"] is None else f"{100 * chip['cr_fraction']:.3f}%"
            parts.append(f"<tr class='{chip['status']}'><td>{html.escape(name)}</td>"
                         f"<td>{html.escape(chip['chip'] or '')}</td><td>{chip['status']}</td><td>{fraction}</td>"
                         f"<td>{html.escape(chip['model'] or '')}</td>"
                         f"<td>{html.escape(chip['error'] or '')}</td></tr>")
    parts.append("</table><h2>Chips</h2>")
    drawn = 0
    for name, chips in files:
        for chip in chips:
            if chip["status"] not in ("done", "suspect") or drawn >= max_chips:
                continue
            arrays = _chip_arrays(name, chip["fits_output"], chip["chip"]) if chip["fits_output"] else None
            if arrays is None:
                continue
            title = f"{Path(name).name} {chip['chip']}: {100 * (chip['cr_fraction'] or 0):.3f}%"
            parts.append(f"<div class='chip {chip['status']}'><h3>{html.escape(title)} ({chip['status']})</h3>"
                         f"<img alt='{html.escape(title)}' src='{_chip_figure(*arrays, title)}'></div>")
            drawn += 1
    parts.append("</body></html>")
    target = Path(path) if path else (manifest_path.with_suffix(".html") if remote.is_url(output)
                                      else output / "report.html")
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, target)
    return target
