"""Forward passes batched across callers: assembly, splitting, the queue's bound, memory-based sizes."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from conftest import synthetic_frame

import deepcr_dask as dcr
from deepcr_dask.inference.batching import TileBatcher, activation_elements_per_pixel, batch_size_for


class Doubler(torch.nn.Module):
    """Output channel 0 = 2 x the input's channel 0 (+ the window's mean, so batches cannot mix rows)."""

    def __init__(self, gate: threading.Event | None = None, fail_on: float | None = None):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.gate, self.fail_on, self.calls = gate, fail_on, []

    def forward(self, x):
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail_on is not None and bool((x == self.fail_on).any()):
            raise ValueError("a bad window")
        self.calls.append(x.shape[0])
        return (2 * x[:, :1] + x[:, :1].mean(dim=(2, 3), keepdim=True)) * self.weight


def test_batch_size_from_free_memory():
    # 100 elements per pixel, 256 x 256 windows: 26.2 MB each in float32; half of 1 GiB holds 20
    assert batch_size_for(100.0, (1, 256, 256), torch.float32, 1 << 30) == 20
    assert batch_size_for(100.0, (1, 256, 256), torch.bfloat16, 1 << 30) == 40
    assert batch_size_for(100.0, (1, 256, 256), torch.float32, 1 << 20) == 1  # never below one
    assert batch_size_for(100.0, (1, 64, 64), torch.float32, 1 << 40, cap=32) == 32


def test_activation_count_of_a_mask_network():
    network = dcr.Cleaner("ACS-WFC", device="cpu").mask_model.network
    per_pixel = activation_elements_per_pixel(network, 1)
    assert 40 < per_pixel < 2000  # 2-32 UNet: tens of full-resolution channels
    assert activation_elements_per_pixel(network, 1) == per_pixel  # measured once


def test_windows_from_several_callers_share_batches_and_come_back_to_each():
    net = Doubler()
    batcher = TileBatcher(torch.device("cpu"), linger=0.3, free_memory=lambda: 1 << 30)
    results, inputs = {}, {}
    rng = np.random.default_rng(0)

    def caller(k):
        windows = [torch.from_numpy(rng.normal(size=(1, 16, 24)).astype(np.float32)) for _ in range(3)]
        inputs[k] = windows
        results[k] = batcher.forward(net, windows)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert max(batcher.batches) > 3  # windows of different callers in one pass
    assert sum(batcher.batches) == 12
    for k in range(4):
        for x, y in zip(inputs[k], results[k]):
            np.testing.assert_allclose(y.numpy(), (2 * x[0] + x[0].mean()).numpy(), rtol=1e-6)


def test_shapes_are_split_into_their_own_batches():
    net = Doubler()
    batcher = TileBatcher(torch.device("cpu"), linger=0.2, free_memory=lambda: 1 << 30)
    windows = [torch.full((1, 8 + 4 * (i % 3), 8), float(i)) for i in range(9)]
    out = batcher.forward(net, windows)
    batcher.close()
    for i, (x, y) in enumerate(zip(windows, out)):
        assert y.shape == x.shape[1:]
        assert float(y[0, 0]) == 3.0 * i
    assert sorted(batcher.batches) == [3, 3, 3]


def test_memory_limits_the_batch():
    net = Doubler()
    per_pixel = activation_elements_per_pixel(net, 1)
    window_bytes = per_pixel * 32 * 32 * 4
    # room for two windows in half the (fake) free memory
    batcher = TileBatcher(torch.device("cpu"), linger=0.2, free_memory=lambda: int(4 * window_bytes) + 1)
    batcher.forward(net, [torch.ones(1, 32, 32)] * 7)
    batcher.close()
    assert max(batcher.batches) == 2 and sum(batcher.batches) == 7


def test_the_queue_bound_holds_callers_back():
    gate = threading.Event()
    net = Doubler(gate)
    batcher = TileBatcher(torch.device("cpu"), queue_size=2, linger=0.0, max_batch=1,
                          free_memory=lambda: 1 << 30)
    done = []
    producer = threading.Thread(target=lambda: done.append(batcher.forward(net, [torch.ones(1, 4, 4)] * 6)))
    producer.start()
    time.sleep(0.5)
    # one window in the (blocked) pass, two queued, the producer waiting to put the fourth
    assert batcher._queue.qsize() == 2 and producer.is_alive() and not done
    gate.set()
    producer.join(10)
    batcher.close()
    assert len(done[0]) == 6 and batcher.batches == [1] * 6


def test_an_error_reaches_its_caller_and_the_batcher_goes_on():
    net = Doubler(fail_on=7.0)
    batcher = TileBatcher(torch.device("cpu"), linger=0.0, free_memory=lambda: 1 << 30)
    with pytest.raises(ValueError, match="a bad window"):
        batcher.forward(net, [torch.full((1, 4, 4), 7.0)])
    assert float(batcher.forward(net, [torch.ones(1, 4, 4)])[0][0, 0]) == 3.0
    batcher.close()


def test_cleaner_with_shared_batches_matches_the_host_path():
    frames = [synthetic_frame((150, 170), seed=s, n_rays=15)[0] for s in range(3)]  # 3 x 3 tiles each
    host = dcr.Cleaner("ACS-WFC", device="cpu", tile=64, pipeline="host")
    shared = dcr.Cleaner("ACS-WFC", device="cpu", tile=64, pipeline="device", batch_size=16)
    batcher = shared.runner.share_batches(linger=0.05, free_memory=lambda: 1 << 30)
    got = [None] * 3

    def clean(i):
        got[i] = shared.run(frames[i])

    threads = [threading.Thread(target=clean, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    for frame, out in zip(frames, got):
        expected = host.run(frame)
        np.testing.assert_allclose(out["probability"], expected["probability"], atol=1e-5)
        assert (out["mask"] != expected["mask"]).sum() <= 1 and expected["mask"].sum() > 20
    assert max(batcher.batches) > 1
