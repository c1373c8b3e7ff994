"""The runner: where and how the networks run (device, precision, TF32, batching, taking turns).

Tasks sharing a runner (a worker with several threads) take turns. On a CPU a whole region is one turn
(:meth:`Runner.region_turn`): a task's numpy steps running beside another task's torch thread pool would
oversubscribe the cores. On a GPU only the forward pass is a turn, so one task's CPU steps overlap
another's network.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import torch

from .allocator import keep_large_blocks_in_heap
from .devices import float32_proper, resolve_device, resolve_precision, run_batch

__all__ = ["Runner", "run_batch"]


class Runner:
    """Runs networks on ``(C, H, W)`` arrays on one device in one precision.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N"}
    precision : {"float32", "bfloat16", "float16"}
    batch_size : int, optional
        Windows per forward pass (1 on CPU, 8 on GPU by default).
    """

    def __init__(self, device: str = "auto", precision: str = "float32", batch_size: int | None = None):
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        if self.device.type == "cpu":
            keep_large_blocks_in_heap()  # activations reuse heap pages instead of fresh mmaps (1.5x)
        self.batch_size = batch_size or (8 if self.device.type == "cuda" else 1)
        self._turn = threading.RLock()
        self.batcher = None  # a TileBatcher shared by the worker's tasks (GPU workers), or None

    def share_batches(self, **options):
        """Route this runner's forward passes through a :class:`~deepcr_dask.inference.batching.TileBatcher`, so the
        windows of every task using it (a GPU worker's threads) share batches; returns the batcher."""
        from .batching import TileBatcher

        if self.batcher is None:
            self.batcher = TileBatcher(self.device, self.dtype, **options)
        return self.batcher

    def place(self, network: torch.nn.Module) -> torch.nn.Module:
        """Move a network to the device, computing in the runner's dtype throughout (what autocast would do
        for these layers, without needing autocast to know the inference-only ones)."""
        return network.to(device=self.device, dtype=self.dtype)

    def region_turn(self):
        """The lock a whole region holds on CPUs (nothing on GPUs, where only forward passes take turns, and
        nothing with a batcher, whose one thread runs every pass)."""
        return self._turn if self.device.type == "cpu" and self.batcher is None else contextlib.nullcontext()

    def forward(self, network: torch.nn.Module, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Run ``network`` on ``(C, H, W)`` arrays, batching those of equal shape; float32 ``(H, W)`` results."""
        outputs = self.forward_tensors(network, [torch.from_numpy(a) for a in arrays])
        return [y.cpu().numpy() for y in outputs]

    def forward_tensors(self, network: torch.nn.Module, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """:meth:`forward` on ``(C, H, W)`` tensors (host or device); float32 ``(H, W)`` tensors on the device.

        With a :class:`~deepcr_dask.inference.batching.TileBatcher` attached (``self.batcher``), the tensors join the
        batches it forms from every task of the worker instead.
        """
        if self.batcher is not None:
            return self.batcher.forward(network, tensors)
        results: list[torch.Tensor | None] = [None] * len(tensors)
        by_shape: dict[tuple, list[int]] = {}
        for i, t in enumerate(tensors):
            by_shape.setdefault(tuple(t.shape), []).append(i)
        with self._turn, torch.inference_mode(), float32_proper(self.device, self.dtype):
            for indices in by_shape.values():
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start:start + self.batch_size]
                    y = run_batch(network, [tensors[i] for i in chunk], self.device, self.dtype)
                    for j, i in enumerate(chunk):
                        results[i] = y[j, 0]
        return results
