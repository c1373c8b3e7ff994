"""What the benchmark measures: its fields, false-positive rates and settings (:class:`BenchmarkConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..sim import REAL_FIELDS
from .methods import OBJLIM, SIGCLIPS

__all__ = ["HSTRAY_FIELDS", "INDEPENDENT_FIELDS", "PAIR_FIELDS", "RECALL_FPR", "SIM_FIELDS", "TARGET_FPRS",
           "BenchmarkConfig"]

SIM_FIELDS = ("sparse", "globular", "galaxy")
PAIR_FIELDS = ("stis", "wht")
HSTRAY_FIELDS = ("hstrays-wfpc2", "hstrays-saao", "hstrays-gmos")
INDEPENDENT_FIELDS = PAIR_FIELDS + HSTRAY_FIELDS  # truth from outside our code: these decide rankings

TARGET_FPRS = (1e-4, 5e-4, 5e-3)
RECALL_FPR = 5e-4  # per-object recall is reported at this FPR


@dataclass
class BenchmarkConfig:
    """What :func:`run_benchmark` measures. :meth:`quick` is the CI size; the defaults the full run."""

    fields: tuple[str, ...] = INDEPENDENT_FIELDS + REAL_FIELDS + SIM_FIELDS
    methods: tuple[str, ...] = ("cleaner:ACS-WFC", "deepcr:ACS-WFC", "astroscrappy")
    inpaint: str | None = "ACS-WFC-F606W-2-32"  # network inpainting for cleaner and deepcr; None: median
    realisations: dict[str, int] = field(default_factory=lambda: {"wfpc2": 6, "omegacen": 1, "hrc": 1, "saao": 4,
                                                                  "gmos": 30})
    # Real frames held out from the training of every shipped model: NGC 4151 WF3/WF4, Omega Cen WF4.
    wfpc2_chips: tuple[int, ...] = (2, 3)
    omegacen_chips: tuple[int, ...] = (3,)
    crop: int | None = None  # largest side of real frames
    sim_shape: tuple[int, int] = (512, 512)
    sim_seeds: tuple[int, ...] = (1000, 1001)  # disjoint from the seeds the shipped models were trained on
    sim_exptime: float = 500.0
    target_fprs: tuple[float, ...] = TARGET_FPRS
    recall_fpr: float = RECALL_FPR
    dilate: bool = False  # table under the deepCR paper's convention (TPR of the 3x3-dilated prediction)
    footprint: str = "square"
    n_thresholds: int = 641
    sigclips: tuple[float, ...] = SIGCLIPS
    objlim: float = OBJLIM
    device: str = "cpu"
    threads: int | None = 1  # per method, for torch and OpenMP; None leaves them alone
    seed: int = 0
    data_dir: str | None = None
    # Which whole STIS associations the independent-truth fields use: "test" for the tables, "validation" for
    # choosing epochs and defaults (sim.harvest.HARVEST_SPLITS); "train" rays are for training only.
    split: str = "test"

    @classmethod
    def quick(cls, **overrides) -> BenchmarkConfig:
        """Small enough for CI (seconds): one WFPC2 chip, GMOS, a small sparse field, 4 sigclips."""
        base = cls(fields=("stis", "hstrays-gmos", "wfpc2", "gmos", "sparse"),
                   realisations={"wfpc2": 1, "saao": 1, "gmos": 2},
                   wfpc2_chips=(2,), crop=128, sim_shape=(128, 128), sim_seeds=(1000,), n_thresholds=161,
                   sigclips=(3.0, 4.5, 6.0, 10.0))
        return replace(base, **overrides)
