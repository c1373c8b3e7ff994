"""bench/gpu.py is one prepared script for a lent GPU; its --smoke run takes every step on the CPU, so the
script that must work the first time on the GPU host has run here."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_gpu_script_smoke_run(tmp_path):
    run = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--smoke", "--results", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    text = (tmp_path / "gpu-smoke.md").read_text()
    for section in ("## CUDA against the CPU", "## Throughput", "## Archive"):
        assert section in text
    rows = [line for line in text.splitlines() if line.startswith("| mask")]
    assert len(rows) == 3  # the three modes (float32 only on a CPU)
    assert "2/2 files" in text
    check = [line for line in text.splitlines() if "| float32 |" in line and "| 0 |" in line]
    assert check, text  # CPU against itself: no mask pixel differs
