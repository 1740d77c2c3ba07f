"""PereiraCNN: the dense dilated network equals the paper's strided patch classifier at every pixel."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.export import Dim

from brainbundles.networks import PereiraCNN, output_layer_parameters

TINY = {"features": (4, 6), "fc_features": (8, 7)}


def _tiny(in_channels: int = 2, out_channels: int = 3, **kwargs) -> PereiraCNN:
    return PereiraCNN(2, in_channels, out_channels, **{**TINY, **kwargs})


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def _strided_patch_classifier(net: PereiraCNN, patch: torch.Tensor) -> torch.Tensor:
    """The paper's network written independently with the weights of ``net``: (N, C, 33, 33) -> (N, classes).

    Valid 3×3 convolutions, 3×3 max-pooling with stride 2, fully connected layers as matrix products.
    """
    act = net.features_2d[1]
    convs = _convs(net.features_2d)
    h = patch
    for conv in convs[:3]:
        h = act(F.conv2d(h, conv.weight, conv.bias))
    h = F.max_pool2d(h, kernel_size=3, stride=2)  # 27 -> 13
    for conv in convs[3:]:
        h = act(F.conv2d(h, conv.weight, conv.bias))
    h = F.max_pool2d(h, kernel_size=3, stride=2)  # 7 -> 3
    assert h.shape[-2:] == (3, 3)
    h = h.flatten(1)
    for fc in _convs(net.fc):
        h = act(F.linear(h, fc.weight.flatten(1), fc.bias))
    return F.linear(h, net.output_layer.weight.flatten(1), net.output_layer.bias)


def test_defaults_are_the_papers_hgg_architecture() -> None:
    net = PereiraCNN()
    assert (net.spatial_dims, net.in_channels, net.out_channels) == (2, 4, 3)
    assert net.features == (64, 128) and net.fc_features == (256, 256) and net.patch_size == 33
    convs = _convs(net.features_2d)
    assert [c.out_channels for c in convs] == [64] * 3 + [128] * 3
    assert all(c.kernel_size == (3, 3) and c.padding == (0, 0) for c in convs)
    assert [c.dilation for c in convs] == [(1, 1)] * 3 + [(2, 2)] * 3
    pools = [m for m in net.features_2d if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride, p.dilation) for p in pools] == [(3, 1, 1), (3, 1, 2)]
    fc = _convs(net.fc)
    assert (fc[0].kernel_size, fc[0].dilation, fc[0].out_channels) == ((3, 3), (4, 4), 256)
    assert (fc[1].kernel_size, fc[1].out_channels) == ((1, 1), 256)
    assert net.output_layer.kernel_size == (1, 1) and net.output_layer.out_channels == 3
    acts = [m for m in net.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 8 and all(a.negative_slope == 0.333 for a in acts)
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 4, 33, 34)).shape == (1, 3, 33, 34)


def test_dense_output_equals_the_strided_patch_classifier() -> None:
    torch.manual_seed(0)
    net = _tiny().double().eval()
    with torch.no_grad():
        # the centre pixel of 33×33 patches
        patches = torch.randn(5, 2, 33, 33, dtype=torch.float64)
        torch.testing.assert_close(
            net(patches)[:, :, 16, 16], _strided_patch_classifier(net, patches), rtol=1e-12, atol=1e-12
        )
        # every pixel of an image is classified from the (zero-padded) 33×33 patch centred on it
        x = torch.randn(1, 2, 45, 38, dtype=torch.float64)
        dense = net(x)
        padded = F.pad(x, (16, 16, 16, 16))
        for i, j in [(0, 0), (44, 37), (22, 19), (5, 30), (16, 16)]:
            patch = padded[:, :, i : i + 33, j : j + 33]
            expected = _strided_patch_classifier(net, patch)
            torch.testing.assert_close(dense[:, :, i, j], expected, rtol=1e-12, atol=1e-12)


def test_receptive_field_is_exactly_the_33x33_patch() -> None:
    torch.manual_seed(0)
    net = _tiny().eval()
    x = torch.randn(1, 2, 50, 50, requires_grad=True)
    net(x)[0, 0, 25, 25].backward()
    rows, cols = (x.grad.abs().sum(dim=(0, 1)) > 0).nonzero().unbind(1)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (9, 41, 9, 41)


@pytest.mark.parametrize("shape", [(33, 33), (1, 1), (17, 40), (3, 8), (64, 29)])
def test_output_shape_and_values_4d(shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = _tiny().eval()
    with torch.no_grad():
        y = net(torch.randn(2, 2, *shape))
    assert y.shape == (2, 3, *shape) and y.dtype == torch.float32 and torch.isfinite(y).all()


def test_runs_under_monai_sliding_window_inference_on_a_volume() -> None:
    # 3D bundle pipelines: windows of a few slices over a volume (sizes not multiples of the window).
    from monai.inferers import SlidingWindowInferer

    torch.manual_seed(0)
    net = _tiny().eval()
    volume = torch.randn(1, 2, 30, 27, 5)
    inferer = SlidingWindowInferer(roi_size=(24, 24, 2), sw_batch_size=2, overlap=0.25, mode="gaussian")
    with torch.no_grad():
        y = inferer(volume, net)
    assert y.shape == (1, 3, 30, 27, 5) and torch.isfinite(y).all()


@pytest.mark.parametrize("shape", [(16, 16, 1), (15, 11, 3), (9, 20, 8)])
def test_5d_input_is_processed_slice_by_slice(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    net = _tiny().eval()
    x = torch.randn(2, 2, *shape)
    with torch.no_grad():
        y = net(x)
        assert y.shape == (2, 3, *shape)
        for k in range(shape[2]):
            torch.testing.assert_close(y[..., k], net(x[..., k]))
    with pytest.raises(ValueError, match="slice by slice"):
        net(torch.randn(2, 8, 8))


def test_backward_reaches_every_parameter_and_output_layer() -> None:
    torch.manual_seed(0)
    net = _tiny(dropout=0.1).train()
    x = torch.randn(2, 2, 12, 11, 2)
    target = (torch.rand(2, 3, 12, 11, 2) > 0.5).float()
    F.binary_cross_entropy_with_logits(net(x), target).backward()
    params = dict(net.named_parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params.values())
    assert all(p.grad.abs().sum() > 0 for p in params.values() if p.dim() > 1)
    out = output_layer_parameters(net)
    assert len(out) == 2 and out[0] is net.output_layer.weight and out[1] is net.output_layer.bias


def test_dropout_in_the_hidden_fc_layers() -> None:
    assert not [m for m in _tiny().modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    net = _tiny(dropout=0.1)
    drops = [m for m in net.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    assert len(drops) == 2 and all(type(m) is nn.Dropout and m.p == 0.1 for m in drops)
    assert all(any(m is d for m in net.fc) for d in drops)
    x = torch.randn(1, 2, 10, 10)
    torch.manual_seed(0)
    assert not torch.allclose(net.train()(x), net(x))


def test_other_activations_and_widths() -> None:
    net = _tiny(act="relu", fc_features=(5,)).eval()
    assert [type(m) for m in net.modules() if isinstance(m, nn.ReLU | nn.LeakyReLU)] == [nn.ReLU] * 7
    with torch.no_grad():
        assert net(torch.randn(1, 2, 7, 9)).shape == (1, 3, 7, 9)


BAD = [
    ("spatial_dims", {"spatial_dims": 3}),
    ("in_channels", {"in_channels": 0}),
    ("out_channels", {"out_channels": 2.0}),
    ("features", {"features": (4,)}),
    ("features", {"features": (4, 8, 16)}),
    ("features", {"features": (4, 0)}),
    ("fc_features", {"fc_features": ()}),
    ("fc_features", {"fc_features": (8, -1)}),
    ("dropout", {"dropout": 1.0}),
    ("dropout", {"dropout": math.nan}),
    ("act", {"act": "notanactivation"}),
    ("act", {"act": ("leakyrelu", {"slope": 0.3})}),
]


@pytest.mark.parametrize(("name", "override"), BAD, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD)])
def test_bad_argument_raises_value_error_naming_it(name: str, override: dict) -> None:
    kwargs = {"spatial_dims": 2, "in_channels": 2, "out_channels": 3, **TINY, **override}
    with pytest.raises(ValueError, match=name):
        PereiraCNN(**kwargs)


def test_a_few_adam_steps_learn_more_than_the_class_frequencies(learning) -> None:
    # 10 seeds measured: the final loss is 0.39-0.51 of the loss of the best constant prediction
    # (the class frequencies), which bounds any network that ignores its input.
    torch.manual_seed(0)
    x, target = learning.smooth_field_batch(seed=0, spatial_dims=2, batch=4, size=24, smooth=9)
    learning.assert_learns(_tiny(), x, target, steps=40, lr=1e-2)


def test_torch_export_with_dynamic_shapes() -> None:
    torch.manual_seed(0)
    net = _tiny().eval()
    dims = {0: Dim("batch", min=1, max=8), 2: Dim("h", min=2, max=256), 3: Dim("w", min=2, max=256)}
    exported = torch.export.export(net, (torch.randn(2, 2, 20, 21),), dynamic_shapes={"x": dims}).module()
    with torch.no_grad():
        for shape in [(2, 2, 20, 21), (1, 2, 9, 40)]:
            x = torch.randn(*shape)
            torch.testing.assert_close(exported(x), net(x))
