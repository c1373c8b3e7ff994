"""Where a task ran, and which tasks a lost worker took with it.

When a worker dies (its node lost, its job preempted or out of time), the scheduler reschedules the tasks it
held on the workers that remain, up to ``distributed.scheduler.allowed-failures`` times. It says so in a
``remove-worker`` event on the ``all`` topic, with the keys the worker was processing. :class:`LostWorkers`
subscribes to that topic for the length of a run and answers, per task key, why it ran again. The events
travel on the client's own stream, ahead of the results of the tasks they reschedule, so a result is never
looked up before its event arrived.
"""

from __future__ import annotations

import datetime as _dt
import threading
from typing import Any

__all__ = ["LostWorkers", "worker_address"]

TOPIC = "all"


def worker_address() -> str:
    """The address of the Dask worker running this code (``tcp://host:port``), or ``"in-process"``."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):  # not inside a worker's task
        return "in-process"


def _why(stimulus_id: str) -> str:
    """A scheduler stimulus, said in words (the stimulus ends with a timestamp)."""
    if stimulus_id.startswith("handle-worker-cleanup"):
        return "its connection closed"
    if stimulus_id.startswith(("check-worker-ttl", "worker-ttl")):
        return "it missed its heartbeats"
    if stimulus_id.startswith("worker-stream-broken"):
        return "its stream broke"
    return stimulus_id.rsplit("-", 1)[0] or "removed"


class LostWorkers:
    """The ``remove-worker`` events of one run, collected as they arrive.

    Parameters
    ----------
    client : distributed.Client
        Subscribed on entry, unsubscribed on exit (use as a context manager).
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._reasons: dict[str, list[str]] = {}  # task key -> one line per loss
        self.lost: list[tuple[float, str, int]] = []  # (time, worker, tasks it held), in order

    def __enter__(self) -> LostWorkers:
        self.client.subscribe_topic(TOPIC, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.client.unsubscribe_topic(TOPIC)
        except Exception:  # a client already closing: nothing left to stop
            pass

    def _handle(self, event: tuple[float, dict]) -> None:
        timestamp, message = event
        if not isinstance(message, dict) or message.get("action") != "remove-worker" or message.get("expected"):
            return  # a worker retired on purpose (scale-down, close) takes nothing with it
        worker = str(message.get("worker", "?"))
        keys = [str(key) for key in message.get("processing-tasks", ())]
        when = _dt.datetime.fromtimestamp(timestamp).strftime("%H:%M:%S")
        line = f"its worker {worker} was lost at {when} ({_why(str(message.get('stimulus_id', '')))})"
        with self._lock:
            self.lost.append((timestamp, worker, len(keys)))
            for key in keys:
                self._reasons.setdefault(key, []).append(line)

    def reasons(self, key: str) -> list[str]:
        """Why the task ``key`` was rescheduled: one line per worker lost while it held the task."""
        with self._lock:
            return list(self._reasons.get(str(key), ()))
