"""Half precision: the documented accuracy check (bfloat16 against float32), and the refusal where a CPU
has no bfloat16 kernels."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_frame

import deepcr_dask as dcr
from deepcr_dask.errors import ModelError
from deepcr_dask.nn import probes


@pytest.mark.parametrize("kernels", ["reference", "fast"])
def test_bfloat16_agrees_with_float32_within_documented_bounds(kernels):
    if not probes.capabilities("cpu").bf16_kernels:
        pytest.skip(f"this CPU ({probes.cpu_isa()}) has no bfloat16 kernels; the refusal is tested below")
    image, truth = synthetic_frame((256, 256), seed=21, n_rays=60)
    full = dcr.Cleaner("ACS-WFC", device="cpu")
    half = dcr.Cleaner("ACS-WFC", device="cpu", precision="bfloat16", kernels=kernels)
    p32, p16 = full.probability(image), half.probability(image)
    assert np.abs(p32 - p16).max() < 0.05  # documented bound (measured 0.042)
    m32, m16 = p32 > 0.5, p16 > 0.5
    disagree = (m32 != m16).sum()
    assert disagree <= max(3, 0.02 * m32.sum())
    assert (m16 & truth).sum() >= 0.95 * (m32 & truth).sum()


def test_bfloat16_without_cpu_kernels_is_a_model_error_naming_the_feature():
    """Without native bfloat16 kernels (AVX2-only CPUs, or oneDNN off) bfloat16 would run 10-30x slower
    than float32: a clear ModelError, never a RuntimeError from inside torch."""
    with probes.forced("bf16_kernels"), pytest.raises(ModelError, match=r"bfloat16.*AVX512-BF16.*AMX"):
        dcr.Cleaner("ACS-WFC", device="cpu", precision="bfloat16")
    if not probes.capabilities("cpu").bf16_kernels:  # this CPU itself (an AVX2 machine, or the emulation)
        with pytest.raises(ModelError, match="instruction set in use"):
            dcr.Cleaner("ACS-WFC", device="cpu", precision="bfloat16")
    with pytest.raises(ModelError, match="only supported on CUDA"):
        dcr.Cleaner("ACS-WFC", device="cpu", precision="float16")
