"""The injection-recovery benchmark: every method on every scene of every field type, summarised."""

from __future__ import annotations

import contextlib
import importlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..inference.fill import median_fill
from ..sim import Sample
from .config import RECALL_FPR, TARGET_FPRS, BenchmarkConfig
from .methods import Detection, Inputs, Method, build_method, checksum, prepare_inputs
from .metrics import Tally, default_thresholds, inpainting_error, tally_masks, tally_scores
from .scenes import build_scenes

__all__ = ["RECALL_FPR", "TARGET_FPRS", "BenchmarkConfig", "build_methods", "run_benchmark"]

class _Threads:
    """Context manager: run torch and every loaded thread pool (astroscrappy's OpenMP, BLAS) on ``n`` threads.

    One thread per method is the fair comparison, and on a shared machine it is also much faster:
    OpenMP teams spin-wait when the cores are busy (4x slower measured at load 5 on 2 cores).
    """

    def __init__(self, n: int | None):
        self.n = n
        self._stack = contextlib.ExitStack()

    def __enter__(self):
        if not self.n:
            return self
        import torch
        from threadpoolctl import threadpool_limits

        previous = torch.get_num_threads()
        torch.set_num_threads(self.n)
        self._stack.callback(torch.set_num_threads, previous)
        with contextlib.suppress(ImportError):  # load astroscrappy's OpenMP runtime now, to limit it too
            importlib.import_module("astroscrappy")
        self._stack.enter_context(threadpool_limits(limits=self.n))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()


def build_methods(config: BenchmarkConfig) -> tuple[list[Method], list[str]]:
    """Adapters for ``config.methods``; those that cannot be built are skipped with a note."""
    methods, notes = [], []
    for spec in config.methods:
        try:
            methods.append(build_method(spec, inpaint=config.inpaint, device=config.device,
                                        sigclips=config.sigclips, objlim=config.objlim))
        except Exception as exc:  # a missing package or model must not stop the other methods
            notes.append(f"{spec} skipped: {type(exc).__name__}: {exc}")
            print(f"note: {notes[-1]}")
    return methods, notes


@dataclass
class _Accumulator:
    """One method's running totals over the scenes of a field type."""

    tally: Tally | None = None
    seconds: float = 0.0
    mpix: float = 0.0
    sq_err: float = 0.0
    abs_err: float = 0.0
    n_err: int = 0
    checksums: list[dict] = field(default_factory=list)

    def add(self, tally: Tally, detection: Detection, mpix: float) -> None:
        self.tally = tally if self.tally is None else self.tally + tally
        self.seconds += detection.seconds
        self.mpix += mpix

    def add_inpaint(self, error: dict) -> None:
        if error["n"]:
            self.sq_err += error["rms"] ** 2 * error["n"]
            self.abs_err += error["mae"] * error["n"]
            self.n_err += error["n"]

    def inpaint_summary(self) -> dict[str, float] | None:
        if not self.n_err:
            return None
        return {"rms": math.sqrt(self.sq_err / self.n_err), "mae": self.abs_err / self.n_err, "n": self.n_err}


def _tally(detection: Detection, scene: Sample, inputs: Inputs, config: BenchmarkConfig) -> Tally:
    if detection.score is not None:
        return tally_scores(detection.score, scene.truth, inputs.ignore, default_thresholds(config.n_thresholds),
                            footprint=config.footprint)
    return tally_masks(detection.masks, scene.truth, inputs.ignore, detection.params, footprint=config.footprint)


def _run_scene(scene: Sample, methods: Sequence[Method], accs: dict[str, _Accumulator], median: _Accumulator,
               config: BenchmarkConfig) -> None:
    inputs = prepare_inputs(scene.image, scene.ignore, read_noise=scene.instrument.read_noise)
    before = checksum(inputs.image)
    targets = scene.truth & ~inputs.ignore
    baseline = median_fill(inputs.image, targets, ~(targets | inputs.ignore),
                           background=float(np.median(inputs.image[~inputs.ignore])))
    median.add_inpaint(inpainting_error(baseline, scene.clean, targets, inputs.ignore))
    for method in methods:
        detection = method.detect(inputs)
        accs[method.name].add(_tally(detection, scene, inputs, config), detection, scene.image.size / 1e6)
        cleaned = method.inpaint(inputs, targets)
        if cleaned is not None:
            accs[method.name].add_inpaint(inpainting_error(cleaned, scene.clean, targets, inputs.ignore))
        if checksum(inputs.image) != before:
            raise RuntimeError(f"{method.name} modified its input image")


def _method_summary(acc: _Accumulator, received: list[dict], median_rms: float | None,
                    config: BenchmarkConfig) -> dict:
    curve = acc.tally.curve()
    inpaint = acc.inpaint_summary()
    if inpaint is not None and median_rms:
        inpaint["rms_vs_median"] = inpaint["rms"] / median_rms
    fprs = list(config.target_fprs)
    return {
        "tpr_at_fpr": dict(zip(map(str, fprs), curve.at_fpr(fprs, "tpr").tolist())),
        "tpr_dilated_at_fpr": dict(zip(map(str, fprs), curve.at_fpr(fprs, "tpr_dilated").tolist())),
        "object_recall": float(curve.at_fpr(config.recall_fpr, "recall")),
        "object_recall_dilated": float(curve.at_fpr(config.recall_fpr, "recall_dilated")),
        "lowest_fpr": float(np.nanmin(curve.fpr)) if np.isfinite(curve.fpr).any() else float("nan"),
        "inpaint": inpaint,
        "seconds_per_mpix": acc.seconds / acc.mpix if acc.mpix else float("nan"),
        "input_checksums": [r["image"] for r in received],
        "ignore_checksums": [r["ignore"] for r in received],
        "curve": curve.to_dict(),
    }


def _field_summary(scenes: Sequence[Sample]) -> dict:
    pixels = sum(s.image.size for s in scenes)
    return {"scenes": [s.name for s in scenes], "pixels": pixels,
            "injected_rays": sum(len(s.footprints) for s in scenes),
            "ignored_fraction": sum(int(s.ignore.sum()) for s in scenes) / pixels,
            "truth_fraction": sum(int(s.truth.sum()) for s in scenes) / pixels}


def run_benchmark(config: BenchmarkConfig | None = None, *, log: Callable[[str], None] = print) -> dict:
    """Run every method on every scene of every field type and summarise.

    Returns
    -------
    dict
        JSON-ready: ``config``, ``methods`` (name -> description), ``fields`` (field -> summary with a
        ``methods`` entry per method: TPR at the target FPRs, plain and dilated; per-object recall at
        ``recall_fpr``; inpainting RMS/MAE on the true cosmic-ray pixels against the clean scene, and
        relative to the median fallback; seconds per Mpix of detection; the ROC curve; checksums of
        every input), ``inputs_identical`` and ``notes``.
    """
    config = config or BenchmarkConfig()
    methods, notes = build_methods(config)
    results: dict = {"config": _config_dict(config), "methods": {m.name: m.description for m in methods},
                     "fields": {}, "notes": notes}
    with _Threads(config.threads):
        for field_type in config.fields:
            _run_field(field_type, methods, config, results, log)
    results["inputs_identical"] = all(f["inputs_identical"] for f in results["fields"].values())
    if not results["inputs_identical"]:
        raise RuntimeError("methods received different inputs")
    return results


def _run_field(field_type: str, methods: Sequence[Method], config: BenchmarkConfig, results: dict,
               log: Callable[[str], None]) -> None:
    """Run every method on the scenes of one field type and add its summary to ``results``."""
    start = time.perf_counter()
    scenes = build_scenes(field_type, config)
    if not scenes:
        results["notes"].append(f"{field_type}: no scenes (data or simulator missing)")
        return
    for m in methods:
        m.received.clear()
    accs = {m.name: _Accumulator() for m in methods}
    median = _Accumulator()
    for scene in scenes:
        _run_scene(scene, methods, accs, median, config)
    summary = _field_summary(scenes)
    median_inpaint = median.inpaint_summary()
    summary["median_fallback"] = median_inpaint
    summary["methods"] = {m.name: _method_summary(accs[m.name], m.received, (median_inpaint or {}).get("rms"),
                                                  config) for m in methods}
    summary["inputs_identical"] = _identical(summary["methods"])
    results["fields"][field_type] = summary
    log(f"{field_type}: {len(scenes)} scenes, {summary['pixels'] / 1e6:.2f} Mpix, "
        f"{summary['injected_rays']} rays, {time.perf_counter() - start:.1f} s")


def _identical(per_method: dict) -> bool:
    """Every method got the same images; those given an ignore mask got the same one."""
    images = {tuple(m["input_checksums"]) for m in per_method.values()}
    ignores = {tuple(m["ignore_checksums"]) for m in per_method.values() if all(m["ignore_checksums"])}
    return len(images) <= 1 and len(ignores) <= 1


def _config_dict(config: BenchmarkConfig) -> dict:
    out = asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
