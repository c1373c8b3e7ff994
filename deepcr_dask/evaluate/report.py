"""Presenting benchmark results: the markdown table with its caption, ROC plots, result files."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from .methods import SWEEP_METHODS

__all__ = ["markdown_table", "plot_rocs", "save_results"]


def _pct(x: float) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def _fpr_label(fpr: float) -> str:
    return f"{100 * fpr:g}%"


def markdown_table(results: dict) -> str:
    """A markdown table, method x field type, with a caption saying how it was measured."""
    cfg = results["config"]
    fprs = cfg["target_fprs"]
    key = "tpr_dilated_at_fpr" if cfg["dilate"] else "tpr_at_fpr"
    recall_key = "object_recall_dilated" if cfg["dilate"] else "object_recall"
    head = (["field", "method"] + [f"TPR @ FPR {_fpr_label(f)}" for f in fprs]
            + [f"object recall @ {_fpr_label(cfg['recall_fpr'])}", "inpaint RMS e- (x median)", "s / Mpix"])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for field_type, summary in results["fields"].items():
        for name, m in summary["methods"].items():
            below = [f < m.get("lowest_fpr", 0.0) for f in fprs]  # reached only by mixing with "flag nothing"
            cells = [field_type, name] + [_pct(m[key][str(f)]) + ("†" if b else "") for f, b in zip(fprs, below)]
            cells.append(_pct(m[recall_key]) + ("†" if cfg["recall_fpr"] < m.get("lowest_fpr", 0.0) else ""))
            inp = m["inpaint"]
            cells.append("-" if inp is None else f"{inp['rms']:.3g} ({inp.get('rms_vs_median', float('nan')):.2f})")
            cells.append(f"{m['seconds_per_mpix']:.2f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", *_caption(results)]) + "\n"


def _caption(results: dict) -> list[str]:
    cfg = results["config"]
    convention = ("TPR of the prediction dilated by a 3x3 kernel (deepCR paper convention), FPR undilated"
                  if cfg["dilate"] else "TPR and FPR of the undilated prediction")
    lines = [f"- {convention}; ignored pixels count as neither positives nor negatives; rates interpolated "
             "linearly in FPR between operating points (probability thresholds; astroscrappy's sigclip sweep). "
             "† marks an FPR below the method's lowest operating point, reached only by mixing it with "
             "flagging nothing (the value is that mix's expected TPR).",
             "- Object recall: fraction of injected cosmic rays (8-connected) with at least half their pixels found.",
             "- Inpaint RMS: on the true cosmic-ray pixels against the scene without them; in brackets, relative "
             "to the 5x5 median fallback. s / Mpix: detection only (sigclip sweeps: per run), "
             f"{cfg.get('threads') or 'default'} thread(s) per method, {cfg['device']}.",
             "- Every method receives the same image (ignored pixels median-filled) and ignore mask; "
             f"checksums identical: {results['inputs_identical']}."]
    for field_type, s in results["fields"].items():
        median = s["median_fallback"]
        lines.append(f"- `{field_type}`: {len(s['scenes'])} scenes, {s['pixels'] / 1e6:.2f} Mpix, "
                     f"{s['injected_rays']} cosmic rays ({100 * s['truth_fraction']:.2f}% of pixels), "
                     f"{100 * s['ignored_fraction']:.2f}% ignored; median-fallback RMS "
                     f"{'-' if median is None else format(median['rms'], '.3g')} e-.")
    lines += [f"- `{name}`: {desc}" for name, desc in results["methods"].items()]
    lines += [f"- note: {n}" for n in results["notes"]]
    lines.append("- Highest TPR @ FPR " + _fpr_label(min(cfg["target_fprs"])) + " per field: "
                 + "; ".join(f"{field}: {name} ({_pct(value)})" for field, name, value in winners(results)) + ".")
    return lines


def winners(results: dict) -> list[tuple[str, str, float]]:
    """``(field, method, TPR)`` of the method with the highest TPR at the lowest target FPR, per field."""
    cfg = results["config"]
    key = "tpr_dilated_at_fpr" if cfg["dilate"] else "tpr_at_fpr"
    fpr = str(min(cfg["target_fprs"]))
    out = []
    for field_type, summary in results["fields"].items():
        scored = [(m[key][fpr], name) for name, m in summary["methods"].items() if np.isfinite(m[key][fpr])]
        if scored:
            value, name = max(scored)
            out.append((field_type, name, value))
    return out


def plot_rocs(results: dict, directory: str | os.PathLike) -> list[Path]:
    """One ROC plot per field type (``roc_<field>.png``): TPR against log FPR, every method.

    Returns
    -------
    list of Path
        The files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    what = "tpr_dilated" if results["config"]["dilate"] else "tpr"
    written = []
    for field_type, summary in results["fields"].items():
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for i, (name, m) in enumerate(summary["methods"].items()):
            curve = m["curve"]
            fpr, tpr = np.asarray(curve["fpr"]), np.asarray(curve[what])
            keep = fpr > 0
            # identical networks give identical curves: distinct dashes keep both visible
            sweep = name in SWEEP_METHODS
            style = {"marker": "os^"[i % 3], "ms": 3} if sweep else {"ls": ("-", "--", "-.", ":")[i % 4]}
            ax.plot(fpr[keep], tpr[keep], label=name, lw=1.5, **style)
        for f in results["config"]["target_fprs"]:
            ax.axvline(f, color="0.8", lw=0.8, ls=":")
        ax.set(xscale="log", xlim=(1e-5, 1e-1), ylim=(0, 1), xlabel="false positive rate",
               ylabel="true positive rate" + (" (3x3 dilated)" if what == "tpr_dilated" else ""),
               title=f"{field_type}: {summary['injected_rays']} injected rays, {summary['pixels'] / 1e6:.2f} Mpix")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        path = directory / f"roc_{field_type}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def save_results(results: dict, directory: str | os.PathLike, *, plots: bool = True) -> list[Path]:
    """Write ``quality.md``, ``quality.json`` and (optionally) ``roc_*.png`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    md, js = directory / "quality.md", directory / "quality.json"
    md.write_text("# Detection and inpainting quality\n\n" + markdown_table(results))
    text = json.dumps(results, indent=1, default=_json_default)
    # one line per list of numbers or strings: the curves would otherwise take a line per value
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    js.write_text(text + "\n")
    return [md, js] + (plot_rocs(results, directory) if plots else [])


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
