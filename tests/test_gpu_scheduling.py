"""GPU scheduling without a GPU: resource annotations in graphs, the GPU share a task asks for on a real
cluster whose workers advertise GPUs, and the device a worker picks under CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import os
import subprocess
import sys

import dask.array as da
import numpy as np
import pytest
from conftest import synthetic_frame
from distributed import Client, LocalCluster, wait

import deepcr_dask as dcr
from deepcr_dask.distributed.engine import gpu_resources
from deepcr_dask.inference.devices import resolve_device, visible_gpu


def _image():
    return synthetic_frame((256, 320), seed=2, n_rays=20)[0]


def _layers_with(graph, text):
    return {name: layer for name, layer in graph.layers.items() if text in name}


def test_only_the_cleaning_layer_asks_for_the_gpu():
    image = da.from_array(_image(), chunks=(128, 160))
    mask, _ = dcr.clean_dask(image, resources={"GPU": 0.25})
    graph = mask.__dask_graph__()
    cleaning = _layers_with(graph, "deepcr-clean")
    assert cleaning and all(layer.annotations == {"resources": {"GPU": 0.25}} for layer in cleaning.values())
    others = [layer for name, layer in graph.layers.items() if name not in cleaning]
    assert others and all("resources" not in (layer.annotations or {}) for layer in others)
    assert all("resources" not in (layer.annotations or {}) for layer in dcr.clean_dask(image)[0].dask.layers.values())


def test_gpu_resources_of_a_cluster():
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address="127.0.0.1:0") as plain, \
            Client(plain) as client:
        assert gpu_resources(client) is None
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, resources={"GPU": 1},
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        share = gpu_resources(client)
        assert share == {"GPU": 0.5}
        image = _image()
        mask, cleaned = dcr.clean_dask(da.from_array(image, chunks=(128, 160)), device="cpu")
        mask, cleaned = client.persist([mask, cleaned])
        wait([mask, cleaned])
        restrictions = client.run_on_scheduler(
            lambda dask_scheduler: {str(k): ts.resource_restrictions for k, ts in dask_scheduler.tasks.items()})
        model_tasks = {k: r for k, r in restrictions.items() if "deepcr-clean" in k}
        assert model_tasks and all(r == {"GPU": 0.5} for r in model_tasks.values()), model_tasks
        reading = {k: r for k, r in restrictions.items() if "deepcr-clean" not in k}
        assert reading and not any(reading.values())
        expected_mask, expected_clean = dcr.Cleaner("ACS-WFC", device="cpu").clean(image)
        np.testing.assert_array_equal(mask.compute(), expected_mask)
        np.testing.assert_allclose(cleaned.compute(), expected_clean, rtol=1e-6)


@pytest.mark.parametrize("value,expected", [("3,1", "3"), ("GPU-5f1e-ab", "GPU-5f1e-ab"), ("", None), ("-1", None)])
def test_visible_gpu(monkeypatch, value, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert visible_gpu() == expected
    # Whatever the physical GPU, a worker uses cuda:0 of its own view, never another worker's index.
    assert str(resolve_device("auto", cuda_available=True)) == "cuda:0"
    assert str(resolve_device("gpu", cuda_available=True)) == "cuda:0"


def test_no_visible_gpu_means_cpu():
    code = "import deepcr_dask.inference.devices as d; print(d.resolve_device('auto'), d.visible_gpu())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["cpu", "None"]


class _Restrictions:
    """A scheduler plugin recording the resources each task asked for as it started."""

    name = "record-restrictions"

    def __init__(self):
        self.seen = {}

    def transition(self, key, start, finish, *args, stimulus_id=None, **kwargs):
        if finish == "processing":
            ts = self.scheduler.tasks.get(key)
            self.seen[str(key)] = dict(ts.resource_restrictions or {}) if ts is not None else None

    async def start(self, scheduler):
        self.scheduler = scheduler


def test_archive_on_gpu_workers_reads_and_writes_without_the_gpu(tmp_path):
    from astropy.io import fits
    from distributed.diagnostics.plugin import SchedulerPlugin

    from deepcr_dask.demo import write_flc

    for i in range(3):
        sci = synthetic_frame((96, 128), seed=10 + i, n_rays=10)[0]
        chip = (sci, np.sqrt(np.abs(sci) + 25), np.zeros(sci.shape, np.int16))
        write_flc(tmp_path / "in" / f"jgpu{i}q_flc.fits", [chip, chip], rootname=f"jgpu{i}q")
    plugin = type("Recorder", (_Restrictions, SchedulerPlugin), {})()
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, resources={"GPU": 1},
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        client.register_plugin(plugin)
        summary = dcr.process_archive(tmp_path / "in", tmp_path / "gpu", cluster=client, progress=False,
                                      device="cpu")
        seen = cluster.scheduler.plugins[plugin.name].seen  # the scheduler's copy of the plugin
    assert len(summary.done) == 3 and not summary.failed
    by_step = {step: [r for k, r in seen.items() if f"deepcr-{step}-" in k] for step in ("read", "model", "write")}
    assert [len(v) for v in by_step.values()] == [3, 3, 3], seen
    assert all(r == {"GPU": 0.5} for r in by_step["model"])
    assert not any(by_step["read"]) and not any(by_step["write"])
    plain = dcr.process_archive(tmp_path / "in", tmp_path / "cpu", cluster="local", progress=False, device="cpu")
    assert len(plain.done) == 3
    for i in range(3):
        name = f"jgpu{i}q_flc_crclean.fits"
        with fits.open(tmp_path / "gpu" / name) as a, fits.open(tmp_path / "cpu" / name) as b:
            for ext in (("SCI", 1), ("DQ", 1), ("SCI", 2), ("DQ", 2)):
                np.testing.assert_array_equal(a[ext].data, b[ext].data)


def test_clean_dask_through_the_device_path_and_shared_batches_on_a_cluster():
    """What a GPU worker runs (device path, one batcher for its threads), here on CPU tensors."""
    image = synthetic_frame((320, 384), seed=5, n_rays=30)[0]
    expected_mask, expected_clean = dcr.Cleaner("ACS-WFC", device="cpu").clean(image)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster) as client:
        mask, cleaned = dcr.clean_dask(da.from_array(image, chunks=(160, 192)), device="cpu", tile=64,
                                       pipeline="device", shared_batches=True)
        mask, cleaned = client.compute([mask, cleaned], sync=True)

        def batches():
            from deepcr_dask.distributed.engine import CleanerConfig

            cleaner = CleanerConfig("ACS-WFC", None, "cpu", 64, pipeline="device", shared_batches=True).build()
            return cleaner.pipeline, list(cleaner.runner.batcher.batches)

        (pipeline, sizes), = client.run(batches).values()
    assert pipeline == "device" and sum(sizes) > 0
    assert (mask != expected_mask).sum() <= 2 and expected_mask.sum() > 30
    np.testing.assert_allclose(cleaned[mask == expected_mask], expected_clean[mask == expected_mask], rtol=1e-5,
                               atol=1e-3)
