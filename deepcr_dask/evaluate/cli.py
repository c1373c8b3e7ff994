"""The ``deepcr-dask evaluate`` command."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from .benchmark import BenchmarkConfig, run_benchmark
from .methods import SWEEP_METHODS
from .report import markdown_table, save_results
from .scenes import INDEPENDENT_FIELDS, REAL_FIELDS, SIM_FIELDS

__all__ = ["config_from_args", "evaluate_main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deepcr-dask evaluate",
                                description="Injection-recovery benchmark: ROC, TPR at fixed FPR, per-object recall, "
                                            "inpainting error and speed of each method on real and simulated fields.")
    p.add_argument("--quick", action="store_true", help="small configuration (seconds; used in CI)")
    p.add_argument("--output", default="evaluate-results", help="folder for quality.md, quality.json and roc_*.png")
    p.add_argument("--models", nargs="+", default=["ACS-WFC"], help="mask models for cleaner and deepcr")
    p.add_argument("--methods", nargs="+", default=["cleaner", "deepcr", "cosmic-conn", "astroscrappy"],
                   choices=["cleaner", "deepcr", "cosmic-conn", *SWEEP_METHODS],
                   help="cosmic-conn (the peers extra), lacosmic and dfcosmic are optional packages, used when "
                        "installed")
    p.add_argument("--cosmic-conn-models", nargs="+", default=["ground_imaging", "HST_ACS_WFC"],
                   help="Cosmic-CoNN models (those its package ships: ground_imaging, NRES, HST_ACS_WFC)")
    p.add_argument("--fields", nargs="+", choices=INDEPENDENT_FIELDS + REAL_FIELDS + SIM_FIELDS,
                   help="field types (default: all, independent truth first)")
    p.add_argument("--split", default="test", choices=["test", "validation"],
                   help="STIS associations (pairs and harvested rays) of the independent-truth fields")
    p.add_argument("--inpaint", default="ACS-WFC-F606W-2-32",
                   help="inpaint network for cleaner and deepcr, or 'none' for the median fallback")
    p.add_argument("--dilate", action="store_true", help="tabulate the deepCR paper's convention (3x3-dilated TPR)")
    p.add_argument("--data-dir", help="real frames folder (default $DEEPCR_DASK_REAL_DATA or ../shared/data/real)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch and OpenMP threads per method (0: leave as is)")
    p.add_argument("--no-plots", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> BenchmarkConfig:
    """The :class:`BenchmarkConfig` for parsed ``deepcr-dask evaluate`` arguments."""
    from ..models.zoo import get_spec

    methods = []
    for kind in args.methods:
        if kind in SWEEP_METHODS:
            methods.append(kind)
        elif kind == "cosmic-conn":
            methods += [f"cosmic-conn:{m}" for m in args.cosmic_conn_models]
        else:  # deepCR itself only runs the models of its own zoo
            models = [m for m in args.models if kind != "deepcr" or get_spec(m, "mask").source == "deepcr"]
            methods += [f"{kind}:{m}" for m in models]
    overrides = {"methods": tuple(methods), "inpaint": None if args.inpaint.lower() == "none" else args.inpaint,
                 "dilate": args.dilate, "data_dir": args.data_dir, "device": args.device,
                 "threads": args.threads or None, "split": args.split}
    if args.fields:
        overrides["fields"] = tuple(args.fields)
    return BenchmarkConfig.quick(**overrides) if args.quick else replace(BenchmarkConfig(), **overrides)


def evaluate_main(argv: list[str] | None = None) -> int:
    """``deepcr-dask evaluate``: run the benchmark, print the table, write results to ``--output``."""
    args = _parser().parse_args(argv)
    config = config_from_args(args)
    start = time.perf_counter()
    results = run_benchmark(config)
    results["seconds"] = time.perf_counter() - start
    print(markdown_table(results))
    for path in save_results(results, args.output, plots=not args.no_plots):
        print(f"wrote {path}")
    return 0
