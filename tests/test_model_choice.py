"""The default-model rule: ours only where it beats deepCR's best on every independent set and FPR and keeps
the crowded fields; and the file-level choice follows the recorded defaults."""

from __future__ import annotations

import pytest

from deepcr_dask.models.choice import CAMERA_SETS, choose_default, default_model, load_defaults


def _tpr(values: dict[str, dict[str, tuple[float, float]]]) -> dict:
    return {s: {m: {"0.0001": a, "0.0005": b} for m, (a, b) in per.items()} for s, per in values.items()}


GOOD_CROWD = {"flagged": 0.0015, "cores": 0.01, "cores_chance": 0.026, "suspect": False}


def test_ours_wins_only_everywhere():
    tpr = _tpr({"stis": {"mine": (0.90, 0.95), "A": (0.85, 0.96), "B": (0.60, 0.70)},
                "hstrays-wfpc2": {"mine": (0.90, 0.95), "A": (0.80, 0.90), "B": (0.95, 0.97)}})
    choice = choose_default("WFPC2", tpr, ["mine"], ["A", "B"], crowded={"mine": GOOD_CROWD})
    # deepCR's best is the one with the best worst set at 1e-4: A (0.80) over B (0.60)
    assert choice.deepcr_best == "A"
    # mine loses to A at 5e-4 on stis: deepCR stays the default
    assert choice.model == "A"
    assert choice.reasons["mine"].startswith("stis at FPR 0.0005")


def test_ours_wins_with_crowded_fields_kept():
    tpr = _tpr({"stis": {"mine": (0.90, 0.97), "A": (0.85, 0.96)},
                "hstrays-wfpc2": {"mine": (0.90, 0.95), "A": (0.80, 0.90)}})
    assert choose_default("WFPC2", tpr, ["mine"], ["A"], crowded={"mine": GOOD_CROWD}).model == "mine"
    flags = {**GOOD_CROWD, "flagged": 0.02}
    lost = choose_default("WFPC2", tpr, ["mine"], ["A"], crowded={"mine": flags})
    assert lost.model == "A" and "flags 2.00%" in lost.reasons["mine"]
    cores = {**GOOD_CROWD, "cores": 0.05}
    assert choose_default("WFPC2", tpr, ["mine"], ["A"], crowded={"mine": cores}).model == "A"
    assert choose_default("WFPC2", tpr, ["mine"], ["A"], crowded={}).model == "A"  # unmeasured: not chosen
    # ground has no crowded checks
    ground = _tpr({s: {"mine": (0.9, 0.95), "A": (0.8, 0.9)} for s in CAMERA_SETS["ground"]})
    assert choose_default("ground", ground, ["mine"], ["A"]).model == "mine"


def test_ties_go_to_deepcr_and_missing_sets_are_an_error():
    tpr = _tpr({"stis": {"mine": (0.9, 0.95), "A": (0.9, 0.95)},
                "hstrays-wfpc2": {"mine": (0.95, 0.99), "A": (0.9, 0.95)}})
    assert choose_default("HST", tpr, ["mine"], ["A"], crowded={"mine": GOOD_CROWD}).model == "A"
    with pytest.raises(ValueError, match="hstrays-wfpc2"):
        choose_default("HST", {"stis": tpr["stis"]}, ["mine"], ["A"])


def test_files_get_the_recorded_defaults():
    recorded = load_defaults()
    assert set(recorded) == set(CAMERA_SETS), "weights/defaults/cameras.json holds a choice per camera family"
    assert default_model("WFPC2", "1") == recorded["WFPC2"]["model"]
    assert default_model("STIS", "CCD") == recorded["HST"]["model"]
    assert default_model("ACS", "HRC") == recorded["HST"]["model"]
    assert default_model("ISIS", "", "WHT") == recorded["ground"]["model"]
    # cameras deepCR trained a model for keep it
    assert default_model("ACS", "WFC") == "ACS-WFC"
    assert default_model("WFC3", "UVIS") == "WFC3-UVIS"
    assert default_model("DECAM", "", "CTIO 4.0-M TELESCOPE") == "decam"
    for camera, choice in recorded.items():  # every recorded choice follows the rule from its own numbers
        sets = CAMERA_SETS[camera]
        assert set(choice["tpr"]) == set(sets)
        ours = [m for m in choice["reasons"]]
        winners = [m for m, r in choice["reasons"].items() if r == "wins"]
        assert (choice["model"] in winners) if winners else (choice["model"] == choice["deepcr_best"])
        if choice["model"] in ours:
            for s in sets:
                for fpr, value in choice["tpr"][s][choice["model"]].items():
                    assert value > choice["tpr"][s][choice["deepcr_best"]][fpr]
