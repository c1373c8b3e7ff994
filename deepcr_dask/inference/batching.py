"""Forward passes batched across the tasks of a worker: tiles of several blocks or frames in one pass.

One task cleans one block or one chip, and its tiles fill a batch only when the chip is large; a GPU wants
many tiles per pass. A :class:`TileBatcher` owns a worker's forward passes: every task thread puts its
windows into one bounded queue and waits on their futures; the batcher's thread takes windows of the
same network and shape, up to a batch size set from the device's free memory, waiting a moment
(``linger``) for more to arrive, and runs them as one pass. While it computes, the task threads read
files and copy the next regions to the device, so reading overlaps compute. The queue's bound is the
back-pressure: a task whose windows do not fit waits, so device memory held by queued windows stays
bounded whatever the number of tasks.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import torch

from .devices import float32_proper, run_batch

__all__ = ["TileBatcher", "activation_elements_per_pixel", "batch_size_for", "free_device_memory"]

_PROBE = 64  # side of the probe window that measures a network's activations


def activation_elements_per_pixel(network: torch.nn.Module, channels: int) -> float:
    """Activation elements a forward pass holds per input pixel: every module output of a probe pass
    (an upper bound on the peak: inference frees most of them, the skip connections keep some)."""
    cached = getattr(network, "_deepcr_activation_elements", None)
    if cached is not None:
        return cached
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(output, torch.Tensor) and not list(module.children()):
            total += output.numel()

    hooks = [m.register_forward_hook(count) for m in network.modules()]
    parameter = next(network.parameters())
    try:
        with torch.inference_mode():
            network(torch.zeros(1, channels, _PROBE, _PROBE, device=parameter.device, dtype=parameter.dtype))
    finally:
        for hook in hooks:
            hook.remove()
    per_pixel = (total + channels * _PROBE * _PROBE) / (_PROBE * _PROBE)
    network._deepcr_activation_elements = per_pixel
    return per_pixel


def batch_size_for(elements_per_pixel: float, window: tuple[int, ...], dtype: torch.dtype, free_bytes: int, *,
                   fraction: float = 0.5, cap: int = 256) -> int:
    """Windows per forward pass that fit in ``fraction`` of ``free_bytes`` (at least 1, at most ``cap``).

    Parameters
    ----------
    elements_per_pixel : float
        From :func:`activation_elements_per_pixel`.
    window : tuple of int
        The window's shape; its last two entries are its height and width.
    dtype : torch.dtype
        The compute dtype (bytes per element).
    free_bytes : int
        Free device memory (``torch.cuda.mem_get_info``), or the host's for a CPU.
    """
    height, width = window[-2:]
    per_window = elements_per_pixel * height * width * torch.finfo(dtype).bits / 8
    return int(max(1, min(cap, (free_bytes * fraction) // max(per_window, 1.0))))


def free_device_memory(device: torch.device) -> int:
    """Free bytes on ``device``: CUDA's own figure, or the host's available memory for a CPU."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return 4 << 30


@dataclass(eq=False)  # identity: windows are compared as objects, never by their pixels
class _Window:
    network: torch.nn.Module
    tensor: torch.Tensor
    future: Future

    @property
    def key(self) -> tuple:
        return id(self.network), tuple(self.tensor.shape)


class TileBatcher:
    """Runs the forward passes of every task of a worker in shared batches.

    Parameters
    ----------
    device, dtype : torch device and compute dtype of the networks.
    queue_size : int
        Windows waiting at most; a task that would exceed it waits (the memory bound).
    linger : float
        Seconds to wait for more windows of the same shape before running a partial batch.
    free_memory : callable, optional
        ``free_memory() -> bytes``, read before each batch (default :func:`free_device_memory`);
        tests pass a fixed figure.
    max_batch : int, optional
        A ceiling on the batch size whatever the memory.
    memory_fraction : float
        Share of the free memory one batch's activations may take.
    """

    def __init__(self, device: torch.device, dtype: torch.dtype = torch.float32, *, queue_size: int = 64,
                 linger: float = 0.002, free_memory: Callable[[], int] | None = None, max_batch: int | None = None,
                 memory_fraction: float = 0.5):
        self.device, self.dtype = device, dtype
        self.linger, self.max_batch, self.memory_fraction = linger, max_batch, memory_fraction
        self.free_memory = free_memory or (lambda: free_device_memory(device))
        self._queue: queue.Queue[_Window | None] = queue.Queue(maxsize=queue_size)
        self._held: list[_Window] = []  # taken from the queue for a later batch (another shape)
        self.batches: list[int] = []  # sizes of the passes run, for tests and benchmarks
        self._thread = threading.Thread(target=self._loop, name="deepcr-tile-batcher", daemon=True)
        self._thread.start()

    @property
    def queue_size(self) -> int:
        return self._queue.maxsize

    def forward(self, network: torch.nn.Module, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Float32 ``(H, W)`` outputs of ``network`` for ``(C, H, W)`` windows, batched with other callers'.

        Blocks while the queue is full and until every window has run.
        """
        futures = []
        for tensor in tensors:
            future: Future = Future()
            self._queue.put(_Window(network, tensor, future))
            futures.append(future)
        return [f.result() for f in futures]

    def batch_size(self, window: _Window) -> int:
        elements = activation_elements_per_pixel(window.network, window.tensor.shape[0])
        size = batch_size_for(elements, tuple(window.tensor.shape), self.dtype, self.free_memory(),
                              fraction=self.memory_fraction)
        return min(size, self.max_batch) if self.max_batch else size

    def close(self) -> None:
        """Stop the batcher's thread once the queued windows have run."""
        self._queue.put(None)
        self._thread.join()

    def _next(self, timeout: float | None) -> _Window | None:
        return self._queue.get(timeout=timeout) if timeout is None or timeout > 0 else self._queue.get_nowait()

    def _loop(self) -> None:
        while True:
            first = self._held.pop(0) if self._held else self._next(None)
            if first is None:
                return
            try:
                limit = self.batch_size(first)
            except Exception:  # a network the probe cannot run: one window per pass, and _run reports it
                limit = 1
            batch = [first]
            for held in list(self._held):  # windows of this shape set aside earlier come first
                if len(batch) < limit and held.key == first.key:
                    self._held.remove(held)
                    batch.append(held)
            deadline = time.monotonic() + self.linger
            stop = False
            while len(batch) < limit and len(self._held) < self._queue.maxsize:
                try:
                    window = self._next(deadline - time.monotonic())
                except queue.Empty:
                    break
                if window is None:
                    stop = True
                    break
                (batch if window.key == first.key else self._held).append(window)
            self._run(batch)
            if stop:
                for window in self._held:
                    self._run([window])
                return

    def _run(self, batch: list[_Window]) -> None:
        try:
            with torch.inference_mode(), float32_proper(self.device, self.dtype):
                outputs = run_batch(batch[0].network, [w.tensor for w in batch], self.device, self.dtype)
            self.batches.append(len(batch))
            for window, output in zip(batch, outputs):
                window.future.set_result(output[0])
        except BaseException as exc:  # the callers get the error, the batcher goes on
            for window in batch:
                if not window.future.done():
                    window.future.set_exception(exc)
