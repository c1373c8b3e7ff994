"""Networks: deepCR checkpoints load unchanged; halo and alignment come from the layers."""

from __future__ import annotations

import pytest
import torch

from deepcr_dask.nn import Architecture, UNet, fuse_for_inference, pooling_alignment, receptive_field
from deepcr_dask.zoo import load_model, registered_specs


@pytest.mark.parametrize(("depth", "rf", "alignment"), [(2, 18, 2), (3, 44, 4), (4, 96, 8)])
def test_receptive_field_and_alignment_from_layers(depth, rf, alignment):
    net = UNet(1, 1, 8, depth)
    assert receptive_field(net) == rf
    assert pooling_alignment(net) == alignment


def test_receptive_field_bounds_the_influence_of_a_pixel():
    torch.manual_seed(0)
    net = Architecture(1, 1, 8, 3, "batch", False).build().eval()
    rf = receptive_field(net)
    x = torch.zeros(1, 1, 128, 128, requires_grad=True)
    net(x)[0, 0, 64, 64].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    extent = max(int(rows.max() - rows.min()), int(cols.max() - cols.min())) + 1
    assert 0 < extent <= rf


def test_every_zoo_checkpoint_loads_and_fuses_exactly(deepcr_module):
    specs = [s for s in registered_specs() if s.source == "deepcr"]
    assert len(specs) >= 9
    torch.manual_seed(1)
    for spec in specs:
        model = load_model(spec.name, spec.kind)
        assert model.halo == {2: 18, 3: 44}[spec.architecture.depth]
        x = torch.randn(1, spec.architecture.in_channels, 64, 64) * 5 + 3
        reference = spec.architecture.build()
        from deepcr_dask.zoo import _read_state_dict, weights_path

        reference.load_state_dict(_read_state_dict(weights_path(spec)))
        with torch.inference_mode():
            expected = reference.eval()(x)
            fused = fuse_for_inference(reference)(x)
            assert torch.allclose(model.network(x), fused)
        assert torch.allclose(fused, expected, rtol=1e-4, atol=1e-5), spec.name
