"""Networks: deepCR checkpoints load unchanged; receptive field, reach and alignment come from the layers."""

from __future__ import annotations

import pytest
import torch

from deepcr_dask.models.zoo import load_model, registered_specs
from deepcr_dask.nn import Architecture, UNet, fuse_for_inference, pooling_alignment, reach, receptive_field


@pytest.mark.parametrize(("depth", "rf", "distance", "alignment"), [(2, 18, 9, 2), (3, 44, 23, 4), (4, 96, 51, 8)])
def test_receptive_field_and_alignment_from_layers(depth, rf, distance, alignment):
    net = UNet(1, 1, 8, depth)
    assert receptive_field(net) == rf
    assert reach(net) == distance
    assert pooling_alignment(net) == alignment


@pytest.mark.parametrize("depth", [2, 3])
def test_reach_is_the_farthest_input_any_output_pixel_uses(depth):
    """Measured with gradients at every offset on the pooling grid: never beyond, and attained."""
    torch.manual_seed(5)
    net = Architecture(1, 1, 4, depth, "batch", False).build().eval()
    distance, align = reach(net), pooling_alignment(net)
    size = 4 * distance + 4 * align
    farthest = 0
    for offset in range(align):
        x = (torch.rand(1, 1, size, size) + 0.5).requires_grad_()  # positive: few ReLUs cut off
        centre = size // 2 + offset
        net(x)[0, 0, centre, centre].backward()
        rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
        seen = max(int((rows - centre).abs().max()), int((cols - centre).abs().max()))
        assert seen <= distance, offset
        farthest = max(farthest, seen)
    assert farthest == distance


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
        assert model.receptive_field == {2: 18, 3: 44}[spec.architecture.depth]
        x = torch.randn(1, spec.architecture.in_channels, 64, 64) * 5 + 3
        reference = spec.architecture.build()
        from deepcr_dask.models.zoo import read_state_dict, weights_path

        reference.load_state_dict(read_state_dict(weights_path(spec)))
        with torch.inference_mode():
            expected = reference.eval()(x)
            fused = fuse_for_inference(reference)(x)
            assert torch.allclose(model.network(x), fused)
        assert torch.allclose(fused, expected, rtol=1e-4, atol=1e-5), spec.name


@pytest.mark.parametrize("kernels", ["reference", "fast"])
@pytest.mark.parametrize(("name", "kind"), [("ACS-WFC", "mask"), ("WFC3-UVIS", "mask"),
                                            ("ACS-WFC-F606W-3-32", "inpaint")])
def test_inference_layers_do_not_depend_on_shape_or_threads(name, kind, kernels):
    """Each output pixel is bit-identical whatever the window's shape and the thread count.

    oneDNN's direct kernels for 1-2 input channels, and its 1x1 single-output kernel, broke this
    (shape-dependent algorithms, thread-split sums); PatchConv2d and PointwiseConv2d fix it. Windows
    whose coarsest level is under 32 px a side (image corners, tiny images) may still round apart.
    """
    model = load_model(name, kind, kernels)
    net, margin = model.network, model.reach
    if torch.backends.mkldnn.enabled:
        same = torch.equal
    else:
        # Without oneDNN, PyTorch's own convolution is a GEMM whose library splits the long reductions of
        # the 3-level net (9 x 128 terms) between threads: 1e-7 relative apart (measured), not bit-equal.
        # DESIGN's tiling rule (1e-6) is what that path keeps.
        def same(a, b):
            return torch.allclose(a, b, rtol=1e-6, atol=1e-6 * float(b.abs().max()))
    torch.manual_seed(2)
    channels = 1 if kind == "mask" else 2
    x = (torch.randn(1, channels, 160, 352) * 40).clamp(min=-3) + 2  # bright outliers, like stars and rays
    if channels == 2:
        x[:, 1] = (torch.rand(160, 352) < 0.02).float()
    threads = torch.get_num_threads()
    try:
        with torch.inference_mode():
            torch.set_num_threads(2)
            whole = net(x)
            torch.set_num_threads(1)
            assert same(net(x), whole)
            torch.set_num_threads(2)
            align = model.alignment
            smallest = 32 * align
            for h, w in [(64, 64), (96, 100), (100, 64), (128, 128), (160, 200), (128, 260), (72, 352), (144, 352)]:
                if min(h, w) < smallest:
                    continue
                h, w = h - h % align, w - w % align  # windows start on the pooling grid
                got = net(x[..., :h, :w].contiguous())
                core = (..., slice(0, h - margin), slice(0, w - margin))  # away from the crop's own edges
                assert same(got[core], whole[..., :h, :w][core]), (h, w)
    finally:
        torch.set_num_threads(threads)


def test_fast_and_reference_kernels_compute_the_same_function():
    torch.manual_seed(3)
    x = torch.randn(2, 1, 96, 128) * 5 + 3
    with torch.inference_mode():
        ref = load_model("ACS-WFC", "mask", "reference").network(x)
        fast = load_model("ACS-WFC", "mask", "fast").network(x)
    assert torch.allclose(fast, ref, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="kernels"):
        load_model("ACS-WFC", "mask", "fastest")


@pytest.mark.parametrize("shape", [(1, 64, 60, 84), (2, 64, 31, 17)])
def test_inference_layers_equal_the_pytorch_layers_they_replace(shape):
    """The rewritten layers change speed only: bit-identical to the layers deepCR runs."""
    import torch.nn.functional as F
    from torch import nn

    from deepcr_dask.nn import ConcatUp, ConvReLU, MaxPool2x2, PatchConv2d, PointwiseConv2d
    from deepcr_dask.nn.networks import Up

    torch.manual_seed(4)
    n, c, h, w = shape
    deep = torch.randn(n, c, h, w) * 3
    skip = torch.randn(n, c // 2, 2 * h, 2 * w) * 3
    up = Up(c, c // 2, "batch").eval()
    conv = nn.Conv2d(c // 2, c // 2, 3, padding=1).eval()
    first = nn.Conv2d(2, c // 2, 3, padding=1).eval()
    head = nn.Conv2d(c // 2, 1, 1).eval()
    image = torch.randn(n, 2, 2 * h, 2 * w) * 10
    with torch.inference_mode():
        assert torch.equal(ConcatUp(up)(deep, skip), up(deep, skip))
        assert torch.equal(ConvReLU(conv)(skip), torch.relu(conv(skip)))
        assert torch.equal(MaxPool2x2()(skip), F.max_pool2d(skip, 2))
        assert torch.equal(MaxPool2x2()(skip[..., :-1, :]), F.max_pool2d(skip[..., :-1, :], 2))  # odd rows
        nchw = PatchConv2d(first, channels_last=False)(image)
        assert nchw.is_contiguous()
        assert torch.equal(nchw, PatchConv2d(first, channels_last=True)(image))
        torch.testing.assert_close(nchw, first(image), rtol=1e-5, atol=1e-5)  # another summation order
        last = skip.contiguous(memory_format=torch.channels_last)
        pointwise = PointwiseConv2d(head)
        assert pointwise(skip).is_contiguous()
        # The two layouts sum the channels in other orders (each fixed: see the shape test above).
        torch.testing.assert_close(pointwise(skip), pointwise(last), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(pointwise(skip), head(skip), rtol=1e-6, atol=1e-6)
        # bfloat16, as the Cleaner runs it (network and input cast): oneDNN's fused call where this CPU
        # has bfloat16 kernels, relu(conv2d) where it does not; the same numbers either way.
        half = skip.to(torch.bfloat16)
        fused, plain = ConvReLU(conv).to(torch.bfloat16)(half), torch.relu(conv.to(torch.bfloat16)(half))
        assert fused.dtype == plain.dtype == torch.bfloat16
        assert torch.equal(fused, plain)
