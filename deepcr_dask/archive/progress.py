"""Progress of an archive run: a tqdm bar on a terminal or in a notebook, whole lines in batch logs."""

from __future__ import annotations

import sys
import time

__all__ = ["PlainProgress", "progress_bar"]


class PlainProgress:
    """Progress as whole lines for logs (SLURM output files): no carriage returns, one line every
    ``interval`` seconds and one at the end."""

    def __init__(self, total: int, interval: float = 30.0, stream=None):
        self.total, self.interval, self.stream = total, interval, stream or sys.stderr
        self.done, self.extra, self.start = 0, {}, time.monotonic()
        self.last = self.start

    def __enter__(self):
        return self

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval or self.done >= self.total:
            self.last = now
            self._line(now)

    def set_postfix(self, refresh: bool = False, **values) -> None:
        self.extra = values

    def _line(self, now: float) -> None:
        minutes = max(now - self.start, 1e-9) / 60.0
        extra = "".join(f", {v} {k}" for k, v in self.extra.items())
        print(f"deepcr-dask: {self.done}/{self.total} files{extra} ({self.done / minutes:.1f} files/min)",
              file=self.stream, flush=True)

    def __exit__(self, *exc) -> None:
        return None


def _in_notebook() -> bool:
    """True inside a Jupyter kernel, where tqdm.auto draws a widget (its stderr is no terminal)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def progress_bar(total: int, enabled: bool):
    """A tqdm bar on a terminal or in a notebook, plain lines every 30 s elsewhere, nothing when disabled."""
    from tqdm.auto import tqdm

    if enabled and not sys.stderr.isatty() and not _in_notebook():
        return PlainProgress(total)
    return tqdm(total=total, unit="file", disable=not enabled, dynamic_ncols=True, mininterval=1.0)
