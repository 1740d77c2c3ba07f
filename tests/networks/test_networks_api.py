"""Checks shared by every network in brainbundles.networks: shapes, argument validation, gradients,
dropout placement, torch.export / torch.jit.script, bf16 autocast with channels-last inputs."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.export import Dim

from brainbundles.networks import ResUNet, UNetIN, VNet

NETWORKS = [UNetIN, VNet, ResUNet]
TINY = (4, 8, 16)  # 3 levels: spatial sizes must be divisible by 4


def _ids(cls: type) -> str:
    return cls.__name__


def _tiny(
    cls: type, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 2, **kwargs
) -> torch.nn.Module:
    return cls(spatial_dims, in_channels, out_channels, features=TINY, **kwargs)


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("cls", NETWORKS, ids=_ids)
@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(("in_channels", "out_channels"), [(1, 2), (2, 4), (4, 1), (3, 5)])
def test_output_shape(cls: type, spatial_dims: int, in_channels: int, out_channels: int) -> None:
    torch.manual_seed(0)
    net = _tiny(cls, spatial_dims, in_channels, out_channels).eval()
    spatial = (16, 24, 32)[:spatial_dims] if spatial_dims == 3 else (32, 16)
    x = torch.randn(2, in_channels, *spatial)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, out_channels, *spatial)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("cls", NETWORKS, ids=_ids)
def test_defaults_build_and_run(cls: type) -> None:
    torch.manual_seed(0)
    net = cls(3, 1, 4).eval()
    assert net.divisor == 2 ** (len(net.features) - 1)
    x = torch.randn(1, 1, *(2 * net.divisor,) * 3)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (1, 4, *x.shape[2:])


def test_default_features() -> None:
    assert UNetIN(3, 1, 4).features == (64, 128, 256, 512)
    assert VNet(3, 1, 4).features == (16, 32, 64, 128, 256)
    assert VNet(3, 1, 4).convs_per_stage == (1, 2, 3, 3, 3)
    assert ResUNet(3, 1, 4).features == (16, 32, 64, 128)


@pytest.mark.parametrize("cls", NETWORKS, ids=_ids)
def test_levels_and_divisor_follow_features(cls: type) -> None:
    for features in [(4, 8), (4, 8, 16, 32)]:
        net = cls(2, 1, 2, features=features).eval()
        assert net.divisor == 2 ** (len(features) - 1)
        x = torch.randn(1, 1, 2 * net.divisor, 3 * net.divisor)
        with torch.no_grad():
            assert net(x).shape == (1, 2, *x.shape[2:])


# ---------------------------------------------------------------- argument validation

BAD_COMMON = [
    ("spatial_dims", {"spatial_dims": 1}),
    ("spatial_dims", {"spatial_dims": 4}),
    ("spatial_dims", {"spatial_dims": "3"}),
    ("spatial_dims", {"spatial_dims": True}),
    ("in_channels", {"in_channels": 0}),
    ("in_channels", {"in_channels": -1}),
    ("in_channels", {"in_channels": 1.5}),
    ("out_channels", {"out_channels": 0}),
    ("features", {"features": ()}),
    ("features", {"features": (8,)}),
    ("features", {"features": (4, 0, 8)}),
    ("features", {"features": (4, 8.0)}),
    ("features", {"features": "48"}),
    ("features", {"features": 16}),
    ("dropout", {"dropout": -0.1}),
    ("dropout", {"dropout": 1.0}),
    ("dropout", {"dropout": 1.5}),
    ("dropout", {"dropout": math.nan}),
    ("dropout", {"dropout": True}),
    ("dropout", {"dropout": "0.1"}),
    ("act", {"act": "notanactivation"}),
    ("act", {"act": ("relu",)}),
    ("act", {"act": ("prelu", {"no_such_arg": 1})}),
    ("act", {"act": 3}),
    ("norm", {"norm": "notanorm"}),
    ("norm", {"norm": "group"}),  # GroupNorm needs num_groups
    ("norm", {"norm": ("group", {"num_groups": 3})}),  # 4 channels are not divisible into 3 groups
    ("norm", {"norm": ("group", {"num_groups": 6}), "features": (6, 12, 20)}),  # deeper level 20 % 6 != 0
]


@pytest.mark.parametrize("cls", NETWORKS, ids=_ids)
@pytest.mark.parametrize(
    ("name", "override"), BAD_COMMON, ids=[f"{n}={v[n]!r}-{i}" for i, (n, v) in enumerate(BAD_COMMON)]
)
def test_bad_argument_raises_value_error_naming_it(cls: type, name: str, override: dict) -> None:
    kwargs = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "features": TINY, **override}
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


@pytest.mark.parametrize(
    ("cls", "name", "value"),
    [
        (VNet, "convs_per_stage", (1, 2)),
        (VNet, "convs_per_stage", (1, 0, 2)),
        (VNet, "convs_per_stage", 2),
        (VNet, "kernel_size", 4),
        (VNet, "kernel_size", 0),
        (ResUNet, "num_res_units", 0),
        (ResUNet, "num_res_units", 1.0),
    ],
)
def test_bad_specific_argument_raises_value_error_naming_it(cls: type, name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name):
        cls(3, 1, 2, features=TINY, **{name: value})


@pytest.mark.parametrize(
    ("act", "norm"),
    [
        ("prelu", "instance"),
        (("leakyrelu", {"negative_slope": 0.01}), ("instance", {"affine": True})),
        ("relu", ("group", {"num_groups": 2})),
        ("relu", "batch"),
        ("relu", None),
    ],
)
@pytest.mark.parametrize("cls", NETWORKS, ids=_ids)
def test_act_and_norm_specs_are_accepted(cls: type, act: object, norm: object) -> None:
    net = _tiny(cls, 2, act=act, norm=norm).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, 16, 16)).shape == (2, 2, 16, 16)


@pytest.mark.parametrize("cls", NETWORKS, ids=_ids)
def test_forward_rejects_bad_inputs(cls: type) -> None:
    net = _tiny(cls, 3).eval()
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 1, 16, 18, 16))
    with pytest.raises(ValueError, match="spatial"):
        net(torch.randn(1, 1, 16, 16))


# ---------------------------------------------------------------- gradients and dropout


@pytest.mark.parametrize("cls", NETWORKS, ids=_ids)
@pytest.mark.parametrize("norm", ["instance", ("instance", {"affine": True})])
def test_gradients_reach_every_parameter(cls: type, norm: object) -> None:
    torch.manual_seed(0)
    net = _tiny(cls, 3, 2, 3, norm=norm, dropout=0.1).train()
    x = torch.randn(2, 2, 16, 16, 16)
    target = torch.randint(0, 3, (2, 16, 16, 16))
    loss = torch.nn.functional.cross_entropy(net(x), target)
    loss.backward()
    params = dict(net.named_parameters())
    assert params
    missing = [n for n, p in params.items() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(p.grad).all() for p in params.values())
    dead = [n for n, p in params.items() if p.dim() > 1 and p.grad.abs().sum() == 0]
    assert not dead, f"all-zero gradient for weights {dead}"


@pytest.mark.parametrize("cls", NETWORKS, ids=_ids)
def test_dropout_is_spatial_and_only_in_deep_levels(cls: type) -> None:
    assert not [m for m in _tiny(cls).modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    net = _tiny(cls, 3, dropout=0.5)
    drops = [m for m in net.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    assert drops and all(isinstance(m, torch.nn.Dropout3d) and m.p == 0.5 for m in drops)
    assert net.dropout_levels == (2,)  # the bottleneck of a 3-level network
    assert cls(3, 1, 2, features=(4, 8, 16, 32)).dropout_levels == (2, 3)
    assert all(
        isinstance(m, torch.nn.Dropout2d)
        for m in _tiny(cls, 2, dropout=0.5).modules()
        if "Dropout" in type(m).__name__
    )

    x = torch.randn(1, 1, 16, 16, 16)
    torch.manual_seed(0)
    a, b = net.train()(x), net(x)
    assert not torch.allclose(a, b)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


# ---------------------------------------------------------------- export / scripting


@pytest.mark.parametrize("cls", NETWORKS, ids=_ids)
def test_torch_export_static_and_dynamic_shapes(cls: type) -> None:
    torch.manual_seed(0)
    net = _tiny(cls, 3).eval()
    x = torch.randn(2, 1, 16, 16, 16)
    k = [Dim(f"k{i}", min=2, max=64) for i in range(3)]
    dynamic = {"x": {0: Dim("batch", min=1, max=8), 2: 4 * k[0], 3: 4 * k[1], 4: 4 * k[2]}}
    exported = torch.export.export(net, (x,), dynamic_shapes=dynamic).module()
    with torch.no_grad():
        for shape in [(2, 1, 16, 16, 16), (1, 1, 8, 24, 12)]:
            x2 = torch.randn(*shape)
            torch.testing.assert_close(exported(x2), net(x2))


@pytest.mark.parametrize("cls", NETWORKS, ids=_ids)
def test_torch_jit_script(cls: type) -> None:
    torch.manual_seed(0)
    net = _tiny(cls, 2, 2, 3).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script is deprecated in torch >= 2.10
        scripted = torch.jit.script(net)
    x = torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))
        with pytest.raises(Exception, match="divisible"):
            scripted(torch.randn(1, 2, 16, 18))


# ---------------------------------------------------------------- bf16 autocast + channels-last


@pytest.mark.parametrize("cls", NETWORKS, ids=_ids)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_bf16_autocast_channels_last_close_to_float32(cls: type, spatial_dims: int) -> None:
    torch.manual_seed(0)
    memory_format = torch.channels_last_3d if spatial_dims == 3 else torch.channels_last
    net = _tiny(cls, spatial_dims, 2, 3).eval()
    x = torch.randn(2, 2, *(16,) * spatial_dims)
    with torch.no_grad():
        reference = net(x)
        net = net.to(memory_format=memory_format)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x.to(memory_format=memory_format))
    assert out.shape == reference.shape
    assert out.dtype == torch.bfloat16
    rel = ((out.float() - reference).norm() / reference.norm()).item()
    assert rel < 0.05, rel
    assert (out.float().argmax(1) == reference.argmax(1)).float().mean() > 0.95
