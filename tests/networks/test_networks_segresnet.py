"""SegResNet: MONAI's network behind the package's signature (dropout -> dropout_prob, validation, divisor)."""

from __future__ import annotations

import math

import monai.networks.nets
import pytest
import torch
import torch.nn.functional as F
from torch.export import Dim

from brainbundles.networks import SegResNet, output_layer_parameters

GROUPS2 = ("group", {"num_groups": 2})


def _tiny(spatial_dims: int = 3, in_channels: int = 2, out_channels: int = 3, **kwargs) -> SegResNet:
    """4-8-16 channels, 3 levels: spatial sizes must be divisible by 4."""
    kwargs = {"init_filters": 4, "blocks_down": (1, 2, 2), "blocks_up": (1, 1), "norm": GROUPS2, **kwargs}
    return SegResNet(spatial_dims, in_channels, out_channels, **kwargs)


def test_defaults_are_the_model_zoo_configuration() -> None:
    net = SegResNet()
    assert (net.spatial_dims, net.in_channels, net.out_channels) == (3, 4, 3)
    assert net.init_filters == 16 and net.blocks_down == (1, 2, 2, 4) and net.blocks_up == (1, 1, 1)
    assert net.features == (16, 32, 64, 128) and net.divisor == 8
    assert net.dropout_prob is None  # dropout=0.0: no dropout layer
    assert not [m for m in net.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    zoo = SegResNet(dropout=0.2)
    assert zoo.dropout_prob == 0.2 and isinstance(zoo.dropout, torch.nn.Dropout3d) and zoo.dropout.p == 0.2
    x = torch.randn(1, 4, 16, 16, 16)
    with torch.no_grad():
        assert net.eval()(x).shape == (1, 3, 16, 16, 16)


def test_same_module_tree_and_outputs_as_monai() -> None:
    torch.manual_seed(0)
    ours = _tiny(dropout=0.2).eval()
    theirs = monai.networks.nets.SegResNet(
        spatial_dims=3,
        init_filters=4,
        in_channels=2,
        out_channels=3,
        dropout_prob=0.2,
        norm=GROUPS2,
        blocks_down=(1, 2, 2),
        blocks_up=(1, 1),
    ).eval()
    assert isinstance(ours, monai.networks.nets.SegResNet)
    assert list(ours.state_dict()) == list(theirs.state_dict())  # model-zoo checkpoints load unchanged
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 2, 12, 8, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("spatial_dims", "shape"),
    [(3, (8, 12, 20)), (3, (4, 4, 4)), (3, (28, 12, 4)), (2, (12, 20)), (2, (4, 36))],
)
def test_output_shape_and_values(spatial_dims: int, shape: tuple[int, ...]) -> None:
    # 12 and 20 are odd multiples of the divisor 4 (odd sizes after downsampling).
    torch.manual_seed(0)
    net = _tiny(spatial_dims, 2, 3).eval()
    x = torch.randn(2, 2, *shape)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 3, *shape) and y.dtype == torch.float32
    assert torch.isfinite(y).all()


def test_forward_rejects_sizes_not_divisible_by_the_divisor() -> None:
    net = _tiny(3).eval()
    assert net.divisor == 4
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 2, 8, 10, 8))
    with pytest.raises(ValueError, match="spatial"):
        net(torch.randn(1, 2, 8, 8))
    assert SegResNet(3, 1, 2, init_filters=8, blocks_down=(1, 1), blocks_up=(1,)).divisor == 2


def test_backward_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    net = _tiny(3, dropout=0.1).train()
    x = torch.randn(2, 2, 8, 8, 8)
    target = (torch.rand(2, 3, 8, 8, 8) > 0.5).float()
    F.binary_cross_entropy_with_logits(net(x), target).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert all(p.grad.abs().sum() > 0 for p in net.parameters() if p.dim() > 1)


def test_output_layer_is_the_final_convolution() -> None:
    net = _tiny(3)
    assert net.output_layer is net.conv_final[-1]
    assert isinstance(net.output_layer.conv, torch.nn.Conv3d)  # MONAI's Convolution wrapper
    assert net.output_layer.conv.kernel_size == (1, 1, 1) and net.output_layer.conv.out_channels == 3
    params = output_layer_parameters(net)
    assert [p is q for p, q in zip(params, net.conv_final[-1].parameters(), strict=True)] == [True, True]
    assert not any(k.startswith("output_layer") for k in net.state_dict())  # a view, not a second copy


BAD = [
    ("spatial_dims", {"spatial_dims": 1}),
    ("spatial_dims", {"spatial_dims": True}),
    ("in_channels", {"in_channels": 0}),
    ("out_channels", {"out_channels": 1.0}),
    ("init_filters", {"init_filters": 0}),
    ("blocks_down", {"blocks_down": ()}),
    ("blocks_down", {"blocks_down": (1, 0, 2)}),
    ("blocks_down", {"blocks_down": 3}),
    ("blocks_up", {"blocks_up": (1,)}),
    ("blocks_up", {"blocks_up": (1, -1)}),
    ("dropout", {"dropout": 1.0}),
    ("dropout", {"dropout": math.nan}),
    ("dropout", {"dropout": -0.2}),
    ("act", {"act": "notanactivation"}),
    ("norm", {"norm": "notanorm"}),
    ("norm", {"norm": ("group", {"num_groups": 3})}),  # 4 channels
    ("norm", {"norm": None}),
    ("upsample_mode", {"upsample_mode": "bicubic"}),
]


@pytest.mark.parametrize(("name", "override"), BAD, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD)])
def test_bad_argument_raises_value_error_naming_it(name: str, override: dict) -> None:
    kwargs = {
        "spatial_dims": 3,
        "in_channels": 2,
        "out_channels": 3,
        "init_filters": 4,
        "blocks_down": (1, 2, 2),
        "blocks_up": (1, 1),
        "norm": GROUPS2,
        **override,
    }
    with pytest.raises(ValueError, match=name):
        SegResNet(**kwargs)


def test_a_few_adam_steps_learn_more_than_the_class_frequencies(learning) -> None:
    # 10 seeds measured: the final loss is 0.26-0.46 of the loss of the best constant prediction
    # (the class frequencies), which bounds any network that ignores its input.
    torch.manual_seed(0)
    x, target = learning.smooth_field_batch(seed=0, spatial_dims=3, batch=2, size=16, smooth=5)
    learning.assert_learns(_tiny(3, 2, 3), x, target, steps=60, lr=2e-2)


def test_torch_export_with_dynamic_shapes() -> None:
    torch.manual_seed(0)
    net = _tiny(3).eval()
    k = [Dim(f"k{i}", min=2, max=32) for i in range(3)]
    dynamic = {"x": {0: Dim("batch", min=1, max=8), 2: 4 * k[0], 3: 4 * k[1], 4: 4 * k[2]}}
    exported = torch.export.export(net, (torch.randn(2, 2, 8, 12, 16),), dynamic_shapes=dynamic).module()
    with torch.no_grad():
        for shape in [(2, 2, 8, 12, 16), (1, 2, 12, 20, 8)]:
            x = torch.randn(*shape)
            torch.testing.assert_close(exported(x), net(x))
