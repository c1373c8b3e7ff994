"""Metrics against hand-computed cases, identical inputs for every adapter, and the benchmark end to end."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from conftest import real_file, synthetic_frame
from scipy import ndimage

from deepcr_dask import evaluate as ev
from deepcr_dask import sim
from deepcr_dask.evaluate import metrics as mt
from deepcr_dask.evaluate.benchmark import _Accumulator, _identical, _method_summary, _run_scene, _Threads

# -- ROC: perfect, empty, inverted -----------------------------------------------------------------


def _truth() -> np.ndarray:
    truth = np.zeros((10, 10), bool)
    truth[2, 2:5] = True  # one 3-px ray
    truth[7, 7] = True  # one 1-px ray
    return truth


def test_perfect_prediction():
    truth = _truth()
    curve = mt.roc_curve(truth.astype(float), truth)
    inner = (curve.params > 0) & (curve.params < 1)
    assert np.all(curve.tpr[inner] == 1) and np.all(curve.fpr[inner] == 0)
    assert np.all(curve.recall[inner] == 1)
    assert curve.n_pos == 4 and curve.n_neg == 96 and curve.n_groups == 2
    assert mt.tpr_at_fpr(curve, 1e-4) == pytest.approx(1.0)


def test_empty_prediction():
    truth = _truth()
    curve = mt.roc_curve(np.zeros(truth.shape), truth)
    assert np.all(curve.tpr == 0) and np.all(curve.fpr == 0) and np.all(curve.recall == 0)
    # Only (0, 0) and flagging everything (1, 1) are reachable: their mix gives TPR = FPR.
    assert mt.tpr_at_fpr(curve, [1e-4, 0.3]) == pytest.approx([1e-4, 0.3])


def test_inverted_prediction():
    truth = _truth()
    curve = mt.roc_curve((~truth).astype(float), truth)
    inner = (curve.params > 0) & (curve.params < 1)
    assert np.all(curve.tpr[inner] == 0) and np.all(curve.fpr[inner] == 1)
    assert mt.tpr_at_fpr(curve, 0.5) == pytest.approx(0.5)  # no better than chance anywhere


def test_graded_scores_and_interpolation():
    truth = np.array([[1, 1, 0, 0, 0]], bool)
    score = np.array([[0.9, 0.3, 0.6, 0.1, 0.0]])
    curve = mt.roc_curve(score, truth, thresholds=[0.05, 0.2, 0.5, 0.8])
    # t=0.05: TP 2, FP 2 of 3; t=0.2: TP 2, FP 1; t=0.5: TP 1, FP 1; t=0.8: TP 1, FP 0
    assert curve.tpr.tolist() == [1, 1, 0.5, 0.5]
    assert curve.fpr.tolist() == pytest.approx([2 / 3, 1 / 3, 1 / 3, 0])
    # best TPR at FPR 1/3 is 1 (t=0.2, not t=0.5); halfway between (0, 0.5) and (1/3, 1): 0.75
    assert curve.at_fpr(1 / 3) == pytest.approx(1.0)
    assert curve.at_fpr(1 / 6) == pytest.approx(0.75)


# -- ignore masks and dilation -----------------------------------------------------------------------


def test_ignored_pixels_are_neither_positive_nor_negative():
    truth = _truth()
    ignore = np.zeros_like(truth)
    ignore[7, 7] = True  # the 1-px ray
    ignore[0, :] = True  # 10 background pixels
    score = np.zeros(truth.shape)
    score[2, 2:5] = 1.0
    score[0, 0] = 1.0  # a "false positive" on an ignored pixel: not counted
    score[7, 7] = 0.0  # a missed ray on an ignored pixel: not counted
    curve = mt.roc_curve(score, truth, ignore, thresholds=[0.5])
    assert (curve.n_pos, curve.n_neg, curve.n_groups) == (3, 86, 1)  # ignored pixels are not true negatives
    assert curve.tpr[0] == 1 and curve.fpr[0] == 0 and curve.recall[0] == 1
    assert mt.confusion(score > 0.5, truth, ignore) == {"tp": 3, "fn": 0, "fp": 0, "tn": 86}


def test_dilation_paper_convention():
    truth = np.zeros((7, 7), bool)
    truth[3, 2:5] = True
    truth[2, 2] = True  # diagonal neighbour of the centre
    score = np.zeros(truth.shape)
    score[3, 3] = 1.0
    square = mt.roc_curve(score, truth, thresholds=[0.5])
    cross = mt.roc_curve(score, truth, thresholds=[0.5], footprint="cross")
    assert square.tpr[0] == pytest.approx(1 / 4) and square.tpr_dilated[0] == pytest.approx(1.0)
    assert cross.tpr_dilated[0] == pytest.approx(3 / 4)  # deepCR's disk(1) misses the diagonal
    assert square.fpr[0] == 0  # FPR stays undilated although the dilated mask covers 8 negatives
    assert mt.tpr_at_fpr(square, 0.0, dilate=True) == pytest.approx(1.0)
    assert mt.confusion(score > 0.5, truth, dilate=True) == {"tp": 4, "fn": 0, "fp": 0, "tn": 45}
    assert square.recall[0] == 0 and square.recall_dilated[0] == 1  # 1 of 4 px < half; dilated: all


def test_predictions_on_ignored_pixels_do_not_spread():
    truth = np.zeros((5, 5), bool)
    truth[2, 2] = True
    ignore = np.zeros_like(truth)
    ignore[2, 3] = True
    score = np.zeros(truth.shape)
    score[2, 3] = 1.0
    assert mt.roc_curve(score, truth, ignore, thresholds=[0.5]).tpr_dilated[0] == 0


def test_masks_and_pooling():
    truth = _truth()
    masks = [truth, np.zeros_like(truth), np.ones_like(truth)]
    curve = mt.roc_from_masks(masks, truth, params=[4.5, 20, 2])
    assert curve.params.tolist() == [4.5, 20, 2]
    assert curve.tpr.tolist() == [1, 0, 1] and curve.fpr.tolist() == [0, 0, 1]
    # tallies of two images add up to the tally of both side by side
    rng = np.random.default_rng(1)
    a, b = rng.random((8, 8)), rng.random((8, 8))
    ta, tb = rng.random((8, 8)) > 0.8, rng.random((8, 8)) > 0.8
    gap = np.zeros((8, 2))  # keeps groups apart and dilation from crossing
    pooled = mt.tally_scores(a, ta) + mt.tally_scores(b, tb)
    joined = mt.tally_scores(np.hstack([a, gap, b]), np.hstack([ta, gap > 0, tb]))
    pooled.n_neg += 16  # the gap's negatives
    for key in ("tp", "tp_dilated", "found", "found_dilated"):
        assert np.array_equal(getattr(pooled, key), getattr(joined, key))
    assert np.array_equal(pooled.fp, joined.fp) and pooled.n_neg == joined.n_neg


# -- per-object recall and inpainting error ------------------------------------------------------------


def test_object_recall():
    truth = np.zeros((8, 8), bool)
    truth[1, 1:5] = True  # 4 px
    truth[5:7, 5] = True  # 2 px
    truth[3, 7] = True  # 1 px
    pred = np.zeros_like(truth)
    pred[1, 1:3] = True  # 2 of 4: found (at least half)
    pred[5, 5] = True  # 1 of 2: found
    assert mt.object_recall(pred, truth) == pytest.approx(2 / 3)
    pred[1, 2] = False  # 1 of 4: missed
    assert mt.object_recall(pred, truth) == pytest.approx(1 / 3)
    ignore = np.zeros_like(truth)
    ignore[3, 7] = True  # the missed 1-px group is left out altogether
    ignore[1, 3:5] = True  # the 4-px group now has 2 valid px, 1 found
    assert mt.object_recall(pred, truth, ignore) == pytest.approx(1.0)
    assert np.isnan(mt.object_recall(pred, np.zeros_like(truth)))
    # the curve's recall agrees with the direct count at every threshold
    rng = np.random.default_rng(2)
    score = rng.random(truth.shape)
    curve = mt.roc_curve(score, truth, ignore, thresholds=[0.2, 0.5, 0.8])
    direct = [mt.object_recall(score > t, truth, ignore) for t in (0.2, 0.5, 0.8)]
    assert curve.recall.tolist() == pytest.approx(direct)


def test_inpainting_error():
    reference = np.zeros((4, 4))
    cleaned = reference.copy()
    mask = np.zeros((4, 4), bool)
    mask[0, :2] = True
    mask[1, 0] = True
    cleaned[0, 0], cleaned[0, 1], cleaned[1, 0] = 3.0, -4.0, 100.0
    cleaned[3, 3] = 50.0  # off the mask: not counted
    ignore = np.zeros_like(mask)
    ignore[1, 0] = True
    err = mt.inpainting_error(cleaned, reference, mask, ignore)
    assert err == {"rms": pytest.approx(np.sqrt(12.5)), "mae": pytest.approx(3.5), "n": 2}
    assert np.isnan(mt.inpainting_error(cleaned, reference, np.zeros_like(mask))["rms"])


def test_thresholds_are_dense_at_both_ends():
    t = mt.default_thresholds()
    assert t[0] < 1e-6 and 1 - t[-1] < 1e-6 and 0.5 in t and np.all(np.diff(t) > 0)


# -- adapters and scenes -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def methods(deepcr_module):
    pytest.importorskip("astroscrappy")
    return [ev.build_method(s, sigclips=(4.5, 10.0)) for s in ("cleaner:ACS-WFC", "deepcr:ACS-WFC", "astroscrappy")]


def test_every_adapter_receives_identical_inputs(methods):
    image, _ = synthetic_frame((96, 96), seed=3)
    image[10, 10] = np.nan
    ignore = np.zeros(image.shape, bool)
    ignore[40:44, 50:60] = True
    inputs = ev.prepare_inputs(image, ignore, read_noise=5.0)
    assert np.isfinite(inputs.image).all() and inputs.ignore[10, 10] and not inputs.image.flags.writeable
    expected = ev.checksum(inputs.image)
    detections = {}
    for m in methods:
        m.received.clear()
        detections[m.name] = m.detect(inputs)
    assert {m.received[0]["image"] for m in methods} == {expected}
    assert {m.received[0]["ignore"] for m in methods if m.name != "deepcr:ACS-WFC"} == {ev.checksum(inputs.ignore)}
    assert ev.checksum(inputs.image) == expected  # nobody wrote into it
    # same network, same input: our probabilities equal deepCR's off the ignored pixels
    ours, theirs = detections["cleaner:ACS-WFC"].score, detections["deepcr:ACS-WFC"].score
    far = ~ndimage.binary_dilation(inputs.ignore, iterations=20)
    assert np.abs(ours - theirs)[far].max() < 1e-5
    assert len(detections["astroscrappy"].masks) == 2


def test_run_scene_checks_inputs(methods):
    image, truth = synthetic_frame((64, 64), seed=4)
    scene = sim.Sample(image, truth, np.zeros_like(truth), image.copy(), np.full(image.shape, 5.0, np.float32),
                       image * 0, [], sim.get_instrument("ACS-WFC"), 500.0, "toy", "toy")
    accs = {m.name: _Accumulator() for m in methods}
    median = _Accumulator()
    _run_scene(scene, methods, accs, median, ev.BenchmarkConfig.quick())
    summaries = {m.name: _method_summary(accs[m.name], m.received[-1:], 1.0, ev.BenchmarkConfig.quick())
                 for m in methods}
    assert _identical(summaries)
    summaries["astroscrappy"]["input_checksums"] = ["different"]
    assert not _identical(summaries)


def test_catalogue_footprints_injected_exactly():
    """The evaluation injects the catalogue's own pixels and charges (no rescaling): every orientation of a
    footprint starts at its corner and keeps its extent; truth is exactly the charged pixels."""
    from deepcr_dask.sim.rays import _oriented

    catalogue = sim.footprint_catalogue(real_file(ev.FOOTPRINT_FILE))
    assert len(catalogue) == 1764
    assert np.median(catalogue.n_pixels) == 7
    fp = max(catalogue.footprints, key=lambda f: np.count_nonzero(f.stamp))
    for k in range(4):
        for flip in (False, True):
            rows, cols, values = _oriented(fp.stamp, k, flip)
            extent = sorted((rows.max() + 1, cols.max() + 1))
            assert rows.min() == 0 and cols.min() == 0 and extent == sorted(fp.stamp.shape)
            assert np.isclose(values.sum(), fp.stamp.sum(), rtol=1e-6)
    clean = np.zeros((64, 64), np.float32)
    injection = sim.inject_catalogue_footprints(clean, catalogue, 5, np.random.default_rng(0))
    image, truth = injection.image, injection.truth
    assert truth.any() and np.all(image[~truth] == 0) and np.all(image[truth] > 0)
    assert len(injection.footprints) == 5 and np.array_equal(injection.charge, image)


def test_real_frames_ignore_their_own_cosmic_rays():
    real_file("gmos_S20190808S0048_cutout.fits")
    folder = real_file("wfpc2_u5780205r_c0f.fits").parent
    gmos = sim.real_frames("gmos", folder)[0]
    assert gmos.image.shape == (148, 200) and gmos.ignore[50, 150] and gmos.ignore[120, 40]
    wfpc2 = sim.real_frames("wfpc2", folder, chips=(1,), crop=96)[0]
    assert wfpc2.image.shape == (96, 96) and 0 < wfpc2.ignore.mean() < 0.2


# -- end to end --------------------------------------------------------------------------------------


def test_benchmark_end_to_end(tmp_path, deepcr_module, capsys):
    pytest.importorskip("astroscrappy")
    pytest.importorskip("matplotlib")
    real_file(ev.FOOTPRINT_FILE)
    out = tmp_path / "results"
    assert ev.evaluate_main(["--quick", "--fields", "wfpc2", "gmos", "sparse", "--output", str(out)]) == 0
    table = (out / "quality.md").read_text()
    results = json.loads((out / "quality.json").read_text())
    assert results["inputs_identical"] is True
    assert set(results["fields"]) >= {"wfpc2", "gmos"}
    if importlib.util.find_spec("deepcr_dask.sim"):
        assert "sparse" in results["fields"]
    for summary in results["fields"].values():
        peers = {"cosmic-conn:ground_imaging", "cosmic-conn:HST_ACS_WFC"}  # the peers extra (in the test extras)
        assert set(summary["methods"]) == {"cleaner:ACS-WFC", "deepcr:ACS-WFC", "astroscrappy", *peers}
        for m in summary["methods"].values():
            assert all(0 <= v <= 1 for v in m["tpr_at_fpr"].values())
            assert len(set(m["input_checksums"])) == len(summary["scenes"])
        assert summary["methods"]["cleaner:ACS-WFC"]["input_checksums"] == \
            summary["methods"]["astroscrappy"]["input_checksums"]
        assert summary["methods"]["cosmic-conn:ground_imaging"]["input_checksums"] == \
            summary["methods"]["deepcr:ACS-WFC"]["input_checksums"]  # neither takes an ignore mask
    assert "| wfpc2 | astroscrappy |" in table and "TPR @ FPR 0.01%" in table
    assert (out / "roc_wfpc2.png").stat().st_size > 1000
    assert "| wfpc2 | cleaner:ACS-WFC |" in capsys.readouterr().out


def test_missing_data_is_skipped_with_a_note(tmp_path):
    pytest.importorskip("astroscrappy")
    config = ev.BenchmarkConfig.quick(fields=("gmos",), methods=("astroscrappy", "nosuch:method"),
                                      data_dir=str(tmp_path))
    results = ev.run_benchmark(config)
    assert results["fields"] == {} and results["inputs_identical"] is True
    assert any("nosuch:method" in n for n in results["notes"]) and any("gmos" in n for n in results["notes"])
    assert "note: gmos" in ev.markdown_table(results)


def test_thread_limit_is_restored():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    with _Threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("package", ["lacosmic", "dfcosmic"])
def test_optional_sweep_adapters(package):
    pytest.importorskip(package, reason=f"{package} is an optional comparison method")
    method = ev.build_method(package, sigclips=(4.5, 10.0))
    image, truth = synthetic_frame((64, 64), seed=5)
    inputs = ev.prepare_inputs(image, np.zeros(image.shape, bool), read_noise=5.0)
    detection = method.detect(inputs)
    assert len(detection.masks) == 2 and detection.masks[0].shape == image.shape
    assert method.received[0]["image"] == ev.checksum(inputs.image)
    assert mt.roc_from_masks(detection.masks, truth, params=detection.params).tpr[0] > 0.5
