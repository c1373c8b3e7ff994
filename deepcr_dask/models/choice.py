"""Which mask model is a camera's default, and the rule that decides it on independent truth.

The rule (:func:`choose_default`): a model of ours becomes a camera's default only where it beats deepCR's
best model for that camera on *every* independent-truth validation set of the camera
(:data:`CAMERA_SETS`: pair differences of real repeat exposures, real HST rays injected into real frames of
other cameras) at every deciding FPR (:data:`DECIDING_FPRS`), and keeps the crowded-field results
(:data:`CROWDED_LIMITS`). deepCR's best model is the one of its zoo with the highest worst-set TPR. Where no
model of ours wins, deepCR's stays the default. Truth made by our own code (own-ray heuristics, our
simulator) never takes part.

The default inpainting is chosen the same way (:func:`choose_inpaint`): a network only where it beats the
5x5 median on every inpainting set of the camera. The choices, with the numbers that made them, are kept in
``weights/defaults/cameras.json`` (written by ``bench/defaults.py``); :func:`default_model` and
:func:`default_inpaint` read them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from .zoo import WEIGHTS_DIR

__all__ = ["CAMERA_SETS", "CROWDED_LIMITS", "DECIDING_FPRS", "DEFAULTS_FILE", "INPAINT_SETS", "Choice",
           "camera_family", "choose_default", "choose_inpaint", "default_inpaint", "default_model", "load_defaults",
           "save_defaults"]

DECIDING_FPRS = (1e-4, 5e-4)
# The independent-truth validation sets that decide each camera family's default.
CAMERA_SETS = {
    "WFPC2": ("stis", "hstrays-wfpc2"),
    "HST": ("stis", "hstrays-wfpc2"),  # ACS/HRC, STIS CCD and other HST CCDs without a model of their own
    "ground": ("wht", "hstrays-saao", "hstrays-gmos"),
}
# Crowded fields a default of ours must keep: WFPC2 Omega Cen's WF chips at most 0.5% flagged and star cores
# touched no more often than a random mask of the same size would; ACS/HRC 47 Tuc not suspect.
CROWDED_LIMITS = {"max_flagged": 0.005, "cores_at_most_chance": True, "not_suspect": True}
DEFAULTS_FILE = WEIGHTS_DIR / "defaults" / "cameras.json"  # beside, not among, the model cards
# Cameras whose default is deepCR's model trained on that very camera (no independent truth of ours for them).
FIXED = {("ACS", "WFC"): "ACS-WFC", ("WFC3", "UVIS"): "WFC3-UVIS", ("DECAM", ""): "decam"}
FALLBACK = {"WFPC2": "ACS-WFC", "HST": "ACS-WFC", "ground": "ACS-WFC"}  # before any measurement


@dataclass(frozen=True)
class Choice:
    """A camera family's default and why.

    Attributes
    ----------
    camera : str
        ``"WFPC2"``, ``"HST"`` or ``"ground"``.
    model : str
        The default mask model.
    deepcr_best : str
        deepCR's best model for the camera (highest worst-set TPR at the first deciding FPR).
    reasons : dict
        Per model of ours: ``"wins"`` or the first set, FPR or crowded check where it loses.
    tpr : dict
        ``set -> model -> fpr -> TPR`` that decided.
    inpaint : str or None
        The default inpaint network, None for the 5x5 median (:func:`choose_inpaint`).
    inpaint_rms : dict
        ``set -> inpainter -> RMS`` (electrons) that decided it.
    """

    camera: str
    model: str
    deepcr_best: str
    reasons: dict[str, str] = field(default_factory=dict)
    tpr: dict = field(default_factory=dict)
    inpaint: str | None = None
    inpaint_rms: dict = field(default_factory=dict)


def _worst(tpr: Mapping, model: str, sets: Sequence[str], fpr: float) -> float:
    return min(float(tpr[s][model][str(fpr)]) for s in sets)


def _crowded_failure(result: Mapping | None) -> str | None:
    """Why a model fails the crowded-field checks, or None."""
    if result is None:
        return "no crowded-field measurement"
    if result.get("flagged") is not None and result["flagged"] > CROWDED_LIMITS["max_flagged"]:
        return f"flags {result['flagged']:.2%} of a crowded chip (limit {CROWDED_LIMITS['max_flagged']:.1%})"
    if result.get("cores") is not None and result["cores"] > result.get("cores_chance", float("inf")):
        return f"touches {result['cores']:.1%} of star cores (chance {result['cores_chance']:.1%})"
    if result.get("suspect"):
        return "the gates call a crowded chip suspect"
    return None


def choose_default(camera: str, tpr: Mapping, ours: Sequence[str], deepcr: Sequence[str], *,
                   crowded: Mapping[str, Mapping | None] | None = None,
                   fprs: Sequence[float] = DECIDING_FPRS) -> Choice:
    """Apply the default rule to one camera family.

    Parameters
    ----------
    camera : {"WFPC2", "HST", "ground"}
    tpr : mapping
        ``set -> model -> str(fpr) -> TPR`` on the camera's validation sets (:data:`CAMERA_SETS`).
    ours, deepcr : sequences of str
        Candidate models of ours, and deepCR's zoo models.
    crowded : mapping, optional
        ``model -> {"flagged", "cores", "cores_chance", "suspect"}`` (each optional) for our candidates;
        a candidate without one cannot become the default of a camera with crowded checks (not ``ground``).
    fprs : sequence of float

    Returns
    -------
    Choice
    """
    sets = CAMERA_SETS[camera]
    missing = [s for s in sets if s not in tpr]
    if missing:
        raise ValueError(f"{camera}: no validation results for {', '.join(missing)}")
    first = fprs[0]
    best = max(deepcr, key=lambda m: (_worst(tpr, m, sets, first), _worst(tpr, m, sets, fprs[-1])))
    reasons, winners = {}, []
    for model in ours:
        reason = None
        for s in sets:
            for fpr in fprs:
                mine, theirs = float(tpr[s][model][str(fpr)]), float(tpr[s][best][str(fpr)])
                if reason is None and mine <= theirs:
                    reason = f"{s} at FPR {fpr:g}: {mine:.3f} against {best}'s {theirs:.3f}"
        if reason is None and camera != "ground":
            reason = _crowded_failure((crowded or {}).get(model))
        reasons[model] = reason or "wins"
        if reason is None:
            winners.append(model)
    model = max(winners, key=lambda m: _worst(tpr, m, sets, first)) if winners else best
    table = {s: {m: {str(f): float(tpr[s][m][str(f)]) for f in fprs} for m in (*ours, best)} for s in sets}
    return Choice(camera, model, best, reasons, table)


INPAINT_SETS = {"WFPC2": ("stis", "hstrays-wfpc2"), "HST": ("stis", "hstrays-wfpc2"),
                "ground": ("wht", "hstrays-saao", "hstrays-gmos")}
MEDIAN = "median"


def choose_inpaint(camera: str, rms: Mapping[str, Mapping[str, float]]) -> tuple[str | None, dict]:
    """The default inpainting of a camera family: a network only where its RMS error on the rays of every
    inpainting set of the camera (:data:`INPAINT_SETS`: the other exposure of a real pair, or the frame
    without the injected rays, as truth) is below the 5x5 median's; the lowest worst-set ratio wins.

    Returns
    -------
    (str or None, dict)
        The network (None: the median) and ``set -> inpainter -> RMS`` on the camera's sets.
    """
    sets = INPAINT_SETS[camera]
    table = {s: dict(rms[s]) for s in sets if s in rms}
    if len(table) < len(sets):
        return None, table
    networks = [m for m in table[sets[0]] if m != MEDIAN]
    ratio = {m: max(table[s][m] / table[s][MEDIAN] for s in sets) for m in networks}
    winners = [m for m in networks if ratio[m] < 1.0]
    return (min(winners, key=ratio.__getitem__) if winners else None), table


@functools.lru_cache(maxsize=1)
def load_defaults() -> dict[str, dict]:
    """``camera -> Choice`` fields from ``weights/defaults/cameras.json`` (empty when it is missing)."""
    if not DEFAULTS_FILE.is_file():
        return {}
    return json.loads(DEFAULTS_FILE.read_text())["cameras"]


def save_defaults(choices: Sequence[Choice], *, note: str = "") -> None:
    """Write ``weights/defaults/cameras.json`` (temporary name, then rename)."""
    payload = {"rule": __doc__.split("\n\n")[1].replace("\n", " "), "note": note,
               "cameras": {c.camera: asdict(c) for c in choices}}
    DEFAULTS_FILE.parent.mkdir(exist_ok=True)
    tmp = DEFAULTS_FILE.with_suffix(".json.part")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(DEFAULTS_FILE)
    load_defaults.cache_clear()


def camera_family(instrument: str, detector: str = "", telescope: str = "HST") -> str | None:
    """``"WFPC2"``, ``"HST"`` or ``"ground"`` for a camera without a deepCR model of its own, else None."""
    instrument, detector = instrument.upper(), detector.upper()
    if FIXED.get((instrument, detector)) or FIXED.get((instrument, "")):
        return None
    return "WFPC2" if instrument == "WFPC2" else "HST" if telescope in ("HST", "") else "ground"


def default_inpaint(instrument: str, detector: str = "", telescope: str = "HST") -> str | None:
    """The default inpaint network of a camera (None: the 5x5 median), as :func:`choose_inpaint` chose it.
    Cameras with a deepCR model of their own keep the median."""
    camera = camera_family(instrument, detector, telescope)
    return None if camera is None else load_defaults().get(camera, {}).get("inpaint")


def default_model(instrument: str, detector: str = "", telescope: str = "HST") -> str:
    """The default mask model of a camera (header values, upper case).

    deepCR's own model for ACS/WFC, WFC3/UVIS and DECam; for WFPC2, other HST CCDs and ground CCDs the model
    that :func:`choose_default` chose (``weights/defaults/cameras.json``).
    """
    camera = camera_family(instrument, detector, telescope)
    if camera is None:
        instrument, detector = instrument.upper(), detector.upper()
        return FIXED.get((instrument, detector)) or FIXED[(instrument, "")]
    chosen = load_defaults().get(camera, {}).get("model", FALLBACK[camera])
    if chosen in ("WFPC2", "generic-HST", "ground") and not (WEIGHTS_DIR / f"{chosen}-mask.json").is_file():
        return FALLBACK[camera]
    return chosen
