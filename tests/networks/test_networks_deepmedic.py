"""DeepMedic: dual pathway, residual connections, 'same' padding for any input size, learning sanity."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.export import Dim

from brainbundles.networks import DeepMedic, output_layer_parameters

TINY = {"features": (4, 4, 6, 6, 8, 8), "fc_features": (8, 8)}


def _tiny(spatial_dims: int = 3, in_channels: int = 2, out_channels: int = 3, **kwargs) -> DeepMedic:
    return DeepMedic(spatial_dims, in_channels, out_channels, **{**TINY, **kwargs})


def test_defaults_are_the_papers() -> None:
    net = DeepMedic()
    assert (net.spatial_dims, net.in_channels, net.out_channels) == (3, 4, 3)
    assert net.features == (30, 30, 40, 40, 40, 40, 50, 50) == net.subsampled_features
    assert net.fc_features == (150, 150) and net.subsample_factor == 3 and net.dropout == 0.0
    for pathway in (net.normal_pathway, net.context_pathway):
        assert len(pathway.layers) == 8
        assert all(layer.conv.kernel_size == (3, 3, 3) for layer in pathway.layers)
        assert pathway.residual_layers == (3, 5, 7)  # 1-based layers 4, 6, 8
        assert not hasattr(pathway.layers[0], "norm")  # the first layer sees the image itself
        assert isinstance(pathway.layers[1].norm, torch.nn.BatchNorm3d)
        assert isinstance(pathway.layers[1].act, torch.nn.PReLU)
        assert pathway.layers[1].act.num_parameters == 30  # one slope per channel
    assert [layer.conv.out_channels for layer in net.fc_layers] == [150, 150]
    assert net.fc_layers[0].conv.in_channels == 100 and net.fc_layers[0].conv.kernel_size == (1, 1, 1)
    assert net.output_layer.kernel_size == (1, 1, 1) and net.output_layer.out_channels == 3
    x = torch.randn(1, 4, 9, 10, 11)
    with torch.no_grad():
        assert net.eval()(x).shape == (1, 3, 9, 10, 11)


@pytest.mark.parametrize(
    ("spatial_dims", "shape"),
    [(3, (9, 9, 9)), (3, (7, 10, 13)), (3, (1, 5, 2)), (3, (16, 3, 8)), (2, (17, 10)), (2, (1, 1))],
)
def test_output_has_the_input_size(spatial_dims: int, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = _tiny(spatial_dims, 2, 3).eval()
    x = torch.randn(2, 2, *shape)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 3, *shape) and y.dtype == torch.float32
    assert torch.isfinite(y).all()


def test_forward_rejects_wrong_dimensionality() -> None:
    with pytest.raises(ValueError, match="spatial"):
        _tiny(3).eval()(torch.randn(1, 2, 8, 8))


def test_subsample_averages_real_voxels_only() -> None:
    net = _tiny(3)
    x = torch.randn(2, 2, 9, 6, 12)
    torch.testing.assert_close(net.subsample(x), F.avg_pool3d(x, 3))  # multiples of 3: plain pooling
    x = torch.randn(1, 2, 7, 8, 4)
    pooled = net.subsample(x)
    assert pooled.shape == (1, 2, 3, 3, 2)
    torch.testing.assert_close(pooled[..., 2, 2, 1], x[..., 6:, 6:, 3:].mean(dim=(-3, -2, -1)))
    torch.testing.assert_close(
        net.subsample(torch.full((1, 1, 4, 5, 2), 2.5)), torch.full((1, 1, 2, 2, 1), 2.5)
    )


def test_upsample_repeats_and_crops() -> None:
    net = _tiny(3)
    context = torch.randn(1, 2, 3, 2, 1)
    up = net.upsample(context, (7, 6, 2))
    assert up.shape == (1, 2, 7, 6, 2)
    for i, j, k in [(0, 0, 0), (2, 5, 1), (6, 3, 1), (3, 2, 0)]:
        torch.testing.assert_close(up[..., i, j, k], context[..., i // 3, j // 3, k // 3])


def test_context_pathway_sees_the_pooled_input_and_returns_at_full_resolution() -> None:
    torch.manual_seed(0)
    net = _tiny(3).eval()
    seen: dict[str, torch.Tensor] = {}
    net.context_pathway.register_forward_pre_hook(lambda m, a: seen.__setitem__("in", a[0]))
    net.fc_layers[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("fc", a[0]))
    x = torch.randn(1, 2, 10, 9, 8)
    with torch.no_grad():
        net(x)
    torch.testing.assert_close(seen["in"], net.subsample(x))
    assert seen["in"].shape == (1, 2, 4, 3, 3)
    assert seen["fc"].shape == (1, 8 + 8, 10, 9, 8)  # normal + context features, concatenated


def test_residual_connections_add_the_output_of_layer_k_minus_2() -> None:
    torch.manual_seed(0)
    net = _tiny(3, features=(4, 4, 6, 6, 6, 8)).eval()
    pathway = net.normal_pathway
    assert pathway.residual_layers == (3, 5)
    conv_out: dict[int, torch.Tensor] = {}  # each layer's own output, before any residual addition
    layer_in: dict[int, torch.Tensor] = {}
    for i, layer in enumerate(pathway.layers):
        layer.register_forward_hook(lambda m, a, out, i=i: conv_out.__setitem__(i, out))
        layer.register_forward_pre_hook(lambda m, a, i=i: layer_in.__setitem__(i, a[0]))
    with torch.no_grad():
        out = pathway(torch.randn(1, 2, 6, 6, 6))
    layer_out = {i: layer_in[i + 1] for i in range(5)} | {5: out}
    for i in (0, 1, 2, 4):
        torch.testing.assert_close(layer_out[i], conv_out[i], rtol=0, atol=0)
    # layer 4 (1-based): 6 + 4 channels, zero-padded; layer 6: 8 + 6 channels, zero-padded
    for i in (3, 5):
        earlier = layer_out[i - 2]
        c = earlier.shape[1]
        torch.testing.assert_close(layer_out[i][:, :c], conv_out[i][:, :c] + earlier)
        torch.testing.assert_close(layer_out[i][:, c:], conv_out[i][:, c:])


def test_context_pathway_widens_the_receptive_field() -> None:
    # 6 layers of 3³ convolutions: the normal pathway reaches 6 voxels from the output voxel, the context
    # pathway (at 1/3 resolution) about 3 * 6.
    torch.manual_seed(0)
    net = _tiny(3).eval()

    def reach() -> torch.Tensor:
        x = torch.randn(1, 2, 27, 27, 27, requires_grad=True)
        net(x)[0, 0, 13, 13, 13].backward()
        return x.grad.abs().sum(dim=(0, 1))[13, 13]  # along the last axis through the output voxel

    grad = reach()
    assert grad[13 + 6] > 0 and grad[13 + 10] > 0 and grad[13 - 12] > 0
    with torch.no_grad():  # a constant context pathway: only the normal pathway depends on the input
        for layer in net.context_pathway.layers:
            layer.conv.weight.zero_()
    grad = reach()
    assert grad[13 + 6] > 0 and grad[13 + 7 :].sum() == 0 and grad[: 13 - 6].sum() == 0


def test_dropout_in_the_fc_and_classification_layers() -> None:
    assert not [m for m in _tiny(3).modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    net = _tiny(3, dropout=0.5)
    assert not hasattr(net.fc_layers[0], "dropout")
    assert isinstance(net.fc_layers[1].dropout, torch.nn.Dropout) and net.fc_layers[1].dropout.p == 0.5
    assert isinstance(net.final_dropout, torch.nn.Dropout)
    x = torch.randn(2, 2, 6, 6, 6)
    torch.manual_seed(0)
    assert not torch.allclose(net.train()(x), net(x))
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


def test_backward_reaches_every_parameter_and_output_layer() -> None:
    torch.manual_seed(0)
    net = _tiny(3, dropout=0.2).train()
    x = torch.randn(2, 2, 7, 8, 9)
    target = (torch.rand(2, 3, 7, 8, 9) > 0.5).float()
    F.binary_cross_entropy_with_logits(net(x), target).backward()
    params = dict(net.named_parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params.values())
    assert all(p.grad.abs().sum() > 0 for p in params.values() if p.dim() > 1)
    out = output_layer_parameters(net)
    assert [p.shape for p in out] == [(3, 8, 1, 1, 1), (3,)]
    assert out[0] is net.output_layer.weight


def test_no_norm_and_other_activations() -> None:
    for act, norm in [("relu", None), (("prelu", {"num_parameters": 1}), "instance"), ("leakyrelu", "batch")]:
        net = _tiny(3, act=act, norm=norm, subsampled_features=(4, 6, 6)).eval()
        with torch.no_grad():
            assert net(torch.randn(1, 2, 5, 6, 7)).shape == (1, 3, 5, 6, 7)
    net = _tiny(3, fc_features=(), subsample_factor=2)
    assert len(net.fc_layers) == 0 and net.output_layer.in_channels == 16
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 2, 5, 6, 7)).shape == (1, 3, 5, 6, 7)


BAD = [
    ("spatial_dims", {"spatial_dims": 1}),
    ("spatial_dims", {"spatial_dims": 3.0}),
    ("in_channels", {"in_channels": 0}),
    ("out_channels", {"out_channels": -1}),
    ("features", {"features": ()}),
    ("features", {"features": (4, 0)}),
    ("features", {"features": 8}),
    ("subsampled_features", {"subsampled_features": (4, 2.5)}),
    ("fc_features", {"fc_features": (0,)}),
    ("fc_features", {"fc_features": "8"}),
    ("subsample_factor", {"subsample_factor": 1}),
    ("subsample_factor", {"subsample_factor": True}),
    ("dropout", {"dropout": 1.0}),
    ("dropout", {"dropout": math.nan}),
    ("act", {"act": "notanactivation"}),
    ("norm", {"norm": "notanorm"}),
    ("norm", {"norm": ("group", {"num_groups": 3})}),
]


@pytest.mark.parametrize(("name", "override"), BAD, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD)])
def test_bad_argument_raises_value_error_naming_it(name: str, override: dict) -> None:
    kwargs = {"spatial_dims": 3, "in_channels": 2, "out_channels": 3, **TINY, **override}
    with pytest.raises(ValueError, match=name):
        DeepMedic(**kwargs)


def test_a_few_adam_steps_learn_more_than_the_class_frequencies(learning) -> None:
    # 10 seeds measured: the final loss is 0.28-0.52 of the loss of the best constant prediction
    # (the class frequencies), which bounds any network that ignores its input.
    torch.manual_seed(0)
    x, target = learning.smooth_field_batch(seed=0, spatial_dims=3, batch=2, size=12, smooth=5)
    learning.assert_learns(_tiny(3, 2, 3), x, target, steps=25, lr=1e-2)


def test_torch_export_with_dynamic_shapes() -> None:
    # Dim.AUTO: the pooled size ceil(n / 3) is not a linear expression of the input size, which explicit Dims
    # cannot express; AUTO lets export derive the valid range (any size >= 2) itself.
    torch.manual_seed(0)
    net = _tiny(3).eval()
    dynamic = {"x": {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO, 4: Dim.AUTO}}
    exported = torch.export.export(net, (torch.randn(2, 2, 9, 10, 11),), dynamic_shapes=dynamic).module()
    with torch.no_grad():
        for shape in [(2, 2, 9, 10, 11), (1, 2, 4, 13, 6), (3, 2, 7, 5, 8)]:
            x = torch.randn(*shape)
            torch.testing.assert_close(exported(x), net(x))
