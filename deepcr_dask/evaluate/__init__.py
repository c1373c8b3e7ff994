"""Detection and inpainting quality: method adapters and an injection-recovery benchmark.

* **Adapters** (:mod:`.methods`) run each method (our :class:`~deepcr_dask.Cleaner`, deepCR 0.3.1,
  astroscrappy, the optional lacosmic and dfcosmic) on the same :class:`Inputs`, recording a checksum of
  the exact array each one receives.
* **Scenes** (:mod:`.scenes`), independent truth first: real repeat pairs scored against their difference
  (STIS CR-SPLIT, WHT), and real HST rays harvested from the STIS pairs injected into real frames of other
  cameras; then real frames with imSim footprints injected (their own rays found by our heuristics and
  ignored) and the simulator's field types. All from :mod:`deepcr_dask.sim`.
* **Inpainting on pairs** (:mod:`.inpainting`): each inpainter against the other exposure under a ray.
* **Benchmark** (:mod:`.benchmark`): :func:`run_benchmark` returns a JSON-ready dict scored with
  :mod:`deepcr_dask.evaluate.metrics`; :mod:`.report` presents it (:func:`markdown_table`, :func:`plot_rocs`);
  :func:`evaluate_main` is the ``deepcr-dask evaluate`` command.
"""

from __future__ import annotations

from .benchmark import BenchmarkConfig, build_methods, run_benchmark
from .cli import config_from_args, evaluate_main
from .methods import SWEEP_METHODS, Detection, Inputs, Method, build_method, checksum, prepare_inputs
from .report import markdown_table, plot_rocs, save_results
from .scenes import FOOTPRINT_FILE, REAL_FIELDS, SIM_FIELDS, build_scenes, injected_scenes, simulated_scenes

__all__ = [
    "FOOTPRINT_FILE",
    "REAL_FIELDS",
    "SIM_FIELDS",
    "SWEEP_METHODS",
    "BenchmarkConfig",
    "Detection",
    "Inputs",
    "Method",
    "build_method",
    "build_methods",
    "build_scenes",
    "checksum",
    "config_from_args",
    "evaluate_main",
    "injected_scenes",
    "markdown_table",
    "plot_rocs",
    "prepare_inputs",
    "run_benchmark",
    "save_results",
    "simulated_scenes",
]
