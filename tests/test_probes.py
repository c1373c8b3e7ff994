"""Capability probes: every kernel beyond standard torch ops is probed, and each fallback keeps the contract."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_cleaner import MASK_MODELS, _real_frames, _reference_probability

import deepcr_dask as dcr
from deepcr_dask.models.zoo import get_spec
from deepcr_dask.nn import PatchConv2d, probes
from deepcr_dask.nn.probes import CANDIDATE_ORDERS, PROBES


@pytest.mark.parametrize("channels", [1, 2])
def test_first_layer_sums_in_the_order_of_this_cpus_own_convolution(channels):
    """The probed order makes PatchConv2d bit-identical to the platform's convolution on whole frames
    (oneDNN: taps with the channel innermost, bias last on AVX-512 and first on AVX2; PyTorch's own
    code: channel-major, bias last); at least one other candidate order is not."""
    torch.manual_seed(channels)
    conv = torch.nn.Conv2d(channels, 32, 3, padding=1).eval()
    x = torch.randn(1, channels, 320, 288) * 40
    order = probes.capabilities("cpu").conv_order(channels)
    with torch.inference_mode():
        native = conv(x)
        assert torch.equal(PatchConv2d(conv, channels_last=False)(x), native)
        assert torch.equal(PatchConv2d(conv, channels_last=True)(x), native)
        others = [o for o in CANDIDATE_ORDERS if o.rows(channels, 3, 3) != order.rows(channels, 3, 3)
                  or o.bias_first != order.bias_first]
        assert any(not torch.equal(PatchConv2d(conv, channels_last=False, order=o)(x), native) for o in others)


def test_cuda_runs_only_standard_ops():
    """oneDNN is a CPU library: the CUDA path never takes its fused or bfloat16 branches, so it runs the
    ops the portable path (every probe off, tested below) runs."""
    cuda = probes.capabilities("cuda")
    assert cuda.fused_conv_relu == frozenset()
    assert not cuda.bf16_kernels


def test_environment_turns_probes_off(monkeypatch):
    everything = probes.capabilities("cpu")
    monkeypatch.setenv(probes.DISABLE_ENV, "fused_conv_relu, channels_last")
    partly = probes.capabilities("cpu")
    assert partly.fused_conv_relu == frozenset() and not partly.channels_last
    assert partly.weight_norm_kernel == everything.weight_norm_kernel
    assert dcr.Cleaner("ACS-WFC", device="cpu", kernels="fast").kernels == "reference"  # its fallback
    monkeypatch.setenv(probes.DISABLE_ENV, "fused_conv_relu,nonsense")
    with pytest.raises(ValueError, match="nonsense"):
        probes.capabilities("cpu")
    monkeypatch.delenv(probes.DISABLE_ENV)
    monkeypatch.setenv(probes.PORTABLE_ENV, "1")
    assert probes.capabilities("cpu") == probes.portable("cpu")
    monkeypatch.delenv(probes.PORTABLE_ENV)
    assert probes.capabilities("cpu") == everything


def test_isa_follows_the_emulation_variables():
    code = "from deepcr_dask.nn.probes import cpu_isa; print(cpu_isa())"
    env = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "AVX2"


def test_a_failing_trial_call_is_a_no():
    assert not probes._trial(lambda: 1 / 0)
    assert not probes._trial(lambda: torch.ops.mkldnn._no_such_op())
    assert probes._trial(lambda: True)


@pytest.fixture(scope="module")
def deepcr_probabilities(deepcr_module):
    frames = _real_frames()
    return frames, {(model, name): _reference_probability(deepcr_module, model, image)
                    for model in MASK_MODELS for name, image in frames.items()}


@pytest.mark.parametrize("kernels", ["reference", "fast"])
@pytest.mark.parametrize("off", [(name,) for name in PROBES] + [()], ids=[*PROBES, "all"])
def test_each_fallback_keeps_the_contract(deepcr_probabilities, off, kernels):
    """With a probe forced off (all of them: ``()``), the Cleaner runs standard torch ops in its place and
    stays within its kernels' bound of deepCR (1e-5 reference, 3e-5 fast), with identical masks."""
    bound = {"reference": 1e-5, "fast": 3e-5}[kernels]
    frames, expected = deepcr_probabilities
    with probes.forced(*off):
        for model in MASK_MODELS:
            cleaner = dcr.Cleaner(model, device="cpu", kernels=kernels)
            threshold = get_spec(model, "mask").threshold
            for name, image in frames.items():
                got = cleaner.probability(image)
                want = expected[(model, name)]
                assert np.abs(got - want).max() <= bound, (model, name)
                assert ((got > threshold) == (want > threshold)).all(), (model, name)


def test_fused_conv_relu_fallback_is_bit_identical():
    """ReLU commutes with rounding: the fused oneDNN call and relu(conv2d) give the same bits, so turning
    the probe off changes speed only."""
    torch.manual_seed(5)
    x = torch.randn(1, 1, 200, 232) * 30 + 100
    cleaner = dcr.Cleaner("WFC3-UVIS", device="cpu")  # weight norm: every conv is followed by ReLU
    fused = cleaner.probability(x[0, 0].numpy())
    with probes.forced("fused_conv_relu"):
        plain = dcr.Cleaner("WFC3-UVIS", device="cpu").probability(x[0, 0].numpy())
    np.testing.assert_array_equal(fused, plain)
    conv = torch.nn.Conv2d(32, 32, 3, padding=1)
    y = torch.randn(1, 32, 40, 40)
    with torch.inference_mode():
        assert torch.equal(torch.relu(F.conv2d(y, conv.weight, conv.bias, padding=1)), torch.relu(conv(y)))
