"""Model registry and safe loading."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import deepcr_dask as dcr
from deepcr_dask.errors import ModelError
from deepcr_dask.models.zoo import load_model
from deepcr_dask.nn import Architecture


def test_list_models_has_the_deepcr_zoo(deepcr_module):
    names = dcr.list_models()
    for name in ("ACS-WFC", "WFC3-UVIS", "decam", "ACS-WFC-F606W-2-32", "ACS-WFC-F606W-3-32"):
        assert name in names
    assert "ACS-WFC-F606W-3-32" in dcr.list_models("inpaint")
    assert "ACS-WFC-F606W-3-32" not in dcr.list_models("mask")


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ModelError, match="unknown mask model 'NOPE'"):
        dcr.Cleaner("NOPE")


class _Payload:
    """Unpickling this object would create a file: the proof that pickled code ran."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_malicious_pth_is_refused_and_runs_nothing(tmp_path):
    target = tmp_path / "pwned"
    weights = tmp_path / "evil.pth"
    with open(weights, "wb") as fh:
        pickle.dump({"inc.conv.conv.0.weight": _Payload(str(target))}, fh)
    # The same file with torch.load(weights_only=False) would create the target (sanity check of the payload).
    with pytest.raises(ModelError, match="refused"):
        dcr.Cleaner(str(weights), device="cpu")
    assert not target.exists()
    torch_zip = tmp_path / "evil_zip.pth"
    torch.save({"x": _Payload(str(target))}, torch_zip)
    with pytest.raises(ModelError, match="refused"):
        load_model(str(torch_zip))
    assert not target.exists()


def test_user_pth_and_safetensors_load_with_inferred_architecture(tmp_path, deepcr_module):
    torch.manual_seed(0)
    net = Architecture(1, 1, 8, 3, "batch", True).build().eval()
    pth = tmp_path / "mine.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, pth)
    model = load_model(str(pth))
    assert model.spec.architecture == Architecture(1, 1, 8, 3, "batch", True)
    assert model.receptive_field == 44 and model.alignment == 4

    st = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(st))
    meta = {"kind": "mask", "architecture": {"in_channels": 1, "out_channels": 1, "hidden": 8, "depth": 3,
                                              "norm": "batch", "sigmoid": True},
            "scale": 10.0, "units": "electrons", "threshold": 0.3}
    (tmp_path / "mine.json").write_text(json.dumps(meta))
    cleaner = dcr.Cleaner(str(st), device="cpu")
    assert cleaner.scale == 10.0
    image = np.random.default_rng(0).normal(100, 5, (64, 64)).astype(np.float32)
    with torch.inference_mode():
        expected = net(torch.from_numpy(image / 10.0)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(cleaner.probability(image), expected, atol=1e-5)


def test_checkpoint_that_does_not_fit_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    save_file({"inc.conv.conv.0.weight": torch.zeros(8, 1, 3, 3), "outc.conv.weight": torch.zeros(1, 8, 1, 1)},
              str(bad))
    with pytest.raises(ModelError, match="do not fit"):
        load_model(str(bad))
