"""clean_dask on a real LocalCluster: equivalence with the Cleaner, one model load per worker, laziness."""

from __future__ import annotations

import re

import dask
import dask.array as da
import numpy as np
import pytest
import torch
from astropy.io import fits
from conftest import real_file, synthetic_frame

import deepcr_dask as dcr
from deepcr_dask.distributed.engine import load_count
from deepcr_dask.errors import InputError, ModelError
from deepcr_dask.inference.devices import resolve_device, resolve_precision


def _reference(image, mask="ACS-WFC", inpaint=None, **options):
    cleaner = dcr.Cleaner(mask, inpaint=inpaint, device="cpu", **options)
    return (*cleaner.clean(image), cleaner.probability(image))


def _compute_and_compare(image, chunks, reference, **kw):
    ref_mask, ref_clean, ref_prob = reference
    mask, cleaned, prob = dcr.clean_dask(da.from_array(image, chunks=chunks), return_probability=True,
                                         device="cpu", **kw)
    assert mask.chunks == da.from_array(image, chunks=chunks).chunks
    mask, cleaned, prob = dask.compute(mask, cleaned, prob)
    np.testing.assert_array_equal(mask, ref_mask)
    np.testing.assert_allclose(prob, ref_prob, rtol=0, atol=1e-6)
    np.testing.assert_allclose(cleaned, ref_clean, rtol=1e-6, atol=1e-4)
    return mask


@pytest.mark.parametrize("inpaint", [None, "ACS-WFC-F606W-3-32"])
def test_real_frame_any_chunking_equals_whole_image(client, inpaint):
    with fits.open(real_file("wfpc2_u5780205r_c0f.fits")) as hdul:
        chip = hdul[0].data[2].astype(np.float32) * 7.0  # electrons
    reference = _reference(chip, inpaint=inpaint)
    for chunks in [(200, 200), (64, 64), (57, 101), (20, 13)]:
        mask = _compute_and_compare(chip, chunks, reference, inpaint=inpaint)
        assert mask.sum() > 0


def test_reference_kernels_on_workers_equal_the_reference_cleaner(client):
    with fits.open(real_file("wfpc2_u5780205r_c0f.fits")) as hdul:
        chip = hdul[0].data[1].astype(np.float32) * 7.0  # electrons
    reference = _reference(chip, kernels="reference")  # in-process: 2 torch threads; workers run 1
    for chunks in [(300, 300), (57, 101)]:
        assert _compute_and_compare(chip, chunks, reference, kernels="reference").sum() > 0


@pytest.mark.slow
def test_large_frame_four_chunkings(client):
    # 1536 px a side (2.4 Mpix; 4 Mpix took 3.6 min of CI's 2 cores): whole-width, whole-height, odd and
    # half chunks, each block far larger than the networks' reach.
    image, truth = synthetic_frame((1536, 1536), seed=11, n_rays=225)
    reference = _reference(image)
    for chunks in [(768, 768), (257, 301), (1536, 700), (160, 1536)]:
        mask = _compute_and_compare(image, chunks, reference)
        assert (mask & truth).sum() > 0.5 * truth.sum()


def _cleaner_builds() -> int:
    from deepcr_dask.inference.cleaner import get_cleaner

    return get_cleaner.cache_info().misses


def test_model_loaded_once_per_worker_and_never_while_building(client):
    images = [synthetic_frame((300, 260), seed=s)[0] for s in (12, 13)]
    before_client = load_count()
    lazy = [dcr.clean_dask(da.from_array(img, chunks=(100, 130)), mask="decam", device="cpu") for img in images]
    assert load_count() == before_client  # building graphs loads nothing here
    dask.compute(*lazy)
    counts = client.run(load_count)
    assert set(counts) == set(client.scheduler_info()["workers"])
    # A second pair of images with the same model: no worker loads anything again.
    dask.compute(*[dcr.clean_dask(da.from_array(img, chunks=(100, 130)), mask="decam", device="cpu")
                   for img in images])
    assert client.run(load_count) == counts
    decam_builds = client.run(_cleaner_builds)
    assert all(n >= 1 for n in decam_builds.values())
    assert set(client.run(lambda: __import__("torch").get_num_threads()).values()) == {1}


def test_workers_that_join_later_load_the_model(client):
    dcr.clean_dask(da.zeros((64, 64), chunks=32), mask="ACS-WFC-F606W-2-4", device="cpu")
    cluster = client.cluster
    cluster.scale(3)
    client.wait_for_workers(3, timeout=120)
    try:
        new = [w for w in client.scheduler_info()["workers"]]
        counts = client.run(load_count, workers=new)
        assert all(count >= 1 for count in counts.values())
    finally:
        cluster.scale(2)
        client.wait_for_workers(2, timeout=60)


def test_graph_building_computes_nothing():
    def refuse(*args, **kwargs):
        raise AssertionError("something was computed while building the graph")

    image = da.from_array(synthetic_frame((128, 128), seed=14)[0], chunks=64)
    with dask.config.set(scheduler=refuse):
        mask, cleaned, prob = dcr.clean_dask(image, mask="WFC3-UVIS", device="cpu", return_probability=True)
    assert mask.dtype == bool and cleaned.dtype == np.float32 and prob.shape == (128, 128)


def test_threaded_scheduler_and_ignore_mask():
    image, _ = synthetic_frame((150, 170), seed=15)
    ignore = np.zeros(image.shape, bool)
    ignore[40:45, 60:70] = True
    reference = dcr.Cleaner("ACS-WFC", device="cpu").clean(image, ignore=ignore)
    with dask.config.set(scheduler="threads"):
        mask, cleaned = dask.compute(*dcr.clean_dask(da.from_array(image, chunks=(41, 77)), ignore=ignore,
                                                     device="cpu"))
    np.testing.assert_array_equal(mask, reference[0])
    np.testing.assert_allclose(cleaned, reference[1], rtol=1e-6)


def test_bad_dask_input_is_a_clear_error():
    with pytest.raises(InputError, match="2-D"):
        dcr.clean_dask(da.zeros((3, 8, 8)))


def test_device_choice_without_cuda():
    assert resolve_device("auto", cuda_available=False) == torch.device("cpu")
    assert resolve_device("auto", cuda_available=True) == torch.device("cuda:0")
    assert resolve_device("cuda", cuda_available=True) == torch.device("cuda:0")  # own CUDA_VISIBLE_DEVICES
    assert resolve_device("cuda:1", cuda_available=True) == torch.device("cuda:1")
    with pytest.raises(ModelError, match="not available"):
        resolve_device("cuda", cuda_available=False)
    with pytest.raises(ModelError, match="unknown device"):
        resolve_device("tpu")
    with pytest.raises(ModelError, match="only supported on CUDA"):
        resolve_precision("float16", torch.device("cpu"))
    with pytest.raises(ModelError, match="precision must be"):
        resolve_precision("int8", torch.device("cpu"))
    assert resolve_precision("bfloat16", torch.device("cuda:0")) is torch.bfloat16


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (20, 20), (20, 300)])
@pytest.mark.parametrize("model", ["ACS-WFC", "WFC3-UVIS"])
def test_images_smaller_than_the_halo_equal_the_cleaner(shape, model):
    """Axes shorter than the halo (22 px) come as one chunk, cleaned without overlap: whole-image results."""
    rng = np.random.default_rng(sum(shape))
    image = rng.normal(100, 10, shape).astype(np.float32)
    image.flat[:: max(1, image.size // 7)] += 2000  # a few hot pixels to flag
    reference = dcr.Cleaner(model, device="cpu")
    ref_mask, ref_clean = reference.clean(image)
    ref_prob = reference.probability(image)
    chunks = (shape[0], 64)  # the long axis of (20, 300) in several chunks, overlapped
    with dask.config.set(scheduler="threads"):
        mask, cleaned, prob = dask.compute(*dcr.clean_dask(da.from_array(image, chunks=chunks), mask=model,
                                                           device="cpu", return_probability=True))
    assert mask.dtype == bool and mask.shape == shape
    np.testing.assert_array_equal(mask, ref_mask)
    np.testing.assert_allclose(prob, ref_prob, rtol=0, atol=1e-6)
    np.testing.assert_allclose(cleaned, ref_clean, rtol=1e-6, atol=1e-4)


def test_one_kernel_call_per_block_gives_every_output():
    """Mask, cleaned image and probability are fields of one kernel's output: one task per block in all."""
    image = da.from_array(synthetic_frame((160, 200), seed=16)[0], chunks=(80, 100))
    outputs = dcr.clean_dask(image, device="cpu", return_probability=True)
    kernels = [{name for name in dict(out.dask.layers) if name.startswith("deepcr-clean")} for out in outputs]
    assert len(kernels[0]) == 1 and kernels[0] == kernels[1] == kernels[2]  # the same layer feeds all three
    layer = outputs[0].dask.layers[next(iter(kernels[0]))]
    assert len(layer) == image.npartitions == 4
    assert [o.dtype for o in outputs] == [np.dtype(bool), np.dtype(np.float32), np.dtype(np.float32)]


def test_cleaning_pass_reads_its_blocks_after_the_statistics(tmp_path):
    """The statistics come from their own reads of the input; the cleaning pass's reads wait for them, so a
    worker never holds all blocks waiting for the whole-image numbers."""
    import zarr

    store = zarr.open_array(tmp_path / "frame.zarr", mode="w", shape=(192, 192), chunks=(64, 64), dtype="f4")
    store[:] = synthetic_frame((192, 192), seed=17)[0]
    source = da.from_zarr(store)
    mask, _ = dcr.clean_dask(source, mask="WFC3-UVIS", device="cpu")
    graph = dict(mask.__dask_graph__())
    stats_keys = {k for k in graph if isinstance(k, str) and k.startswith("_assemble_stats")}
    assert len(stats_keys) == 1
    stats_key = next(iter(stats_keys))

    def ancestors(key, seen=None):
        seen = set() if seen is None else seen
        for dep in dask.core.get_dependencies(graph, key):
            if dep not in seen:
                seen.add(dep)
                ancestors(dep, seen)
        return seen

    before_stats = ancestors(stats_key)
    needed = set().union(*(ancestors(k) for k in dask.core.flatten(mask.__dask_keys__())))
    reads = [k for k in needed if isinstance(k, tuple) and re.fullmatch(r"from-zarr-[0-9a-f]{32}", str(k[0]))]
    first_reads = [k for k in reads if k in before_stats]
    cleaning_reads = [k for k in reads if k not in before_stats]
    assert len(first_reads) == len(cleaning_reads) == source.npartitions
    assert all(stats_key in ancestors(k) for k in cleaning_reads)

def _load_frame(seed):
    return synthetic_frame((300, 260), seed=seed)[0]


@pytest.mark.parametrize("kind", ["from_delayed", "sliced", "rechunked", "stacked", "persisted"])
def test_any_dask_input_equals_the_cleaner(client, kind):
    """Inputs whose graphs hold materialised tasks (dask's clone and bind fail on these) clean like arrays."""
    image = _load_frame(18)
    lazy = da.from_delayed(dask.delayed(_load_frame, pure=True)(18), image.shape, np.float32)
    inputs = {
        "from_delayed": lazy,
        "sliced": da.from_array(np.pad(image, 10), chunks=100)[10:-10, 10:-10],
        "rechunked": lazy.rechunk((120, 97)),
        "stacked": da.stack([lazy, lazy + 1])[0].rechunk(150),
        "persisted": client.persist(lazy.rechunk(128)),
    }
    ref_mask, ref_clean = dcr.Cleaner("ACS-WFC", device="cpu").clean(image)
    mask, cleaned = dask.compute(*dcr.clean_dask(inputs[kind], device="cpu"))
    np.testing.assert_array_equal(mask, ref_mask)
    np.testing.assert_allclose(cleaned, ref_clean, rtol=1e-6, atol=1e-4)
    assert ref_mask.sum() > 10


def test_copied_reads_wait_for_their_trigger():
    """A graph copy with ``after`` starts reading only once ``after`` ran, whatever the scheduler's order."""
    import threading
    import time

    from deepcr_dask.distributed.graphs import copy_arrays

    events, lock = [], threading.Lock()

    def read(i):
        with lock:
            events.append(("read", i))
        return np.full((4, 4), i, np.float32)

    def trigger():
        time.sleep(0.2)
        with lock:
            events.append(("after", 0))
        return 0

    blocks = [da.from_delayed(dask.delayed(read, pure=True)(i), (4, 4), np.float32) for i in range(6)]
    source = da.concatenate(blocks)[2:].rechunk(5)
    copy, = copy_arrays([source], "test", after=dask.delayed(trigger, pure=True)())
    with dask.config.set(scheduler="threads"):  # the closures hold a lock: no process workers
        result = copy.compute()
        expected = source.compute()
    np.testing.assert_array_equal(result, expected)
    first_read = next(i for i, e in enumerate(events) if e[0] == "read")
    assert events[0] == ("after", 0) and first_read == 1
    assert not set(dict(copy.__dask_graph__())) & set(dict(source.__dask_graph__()))
