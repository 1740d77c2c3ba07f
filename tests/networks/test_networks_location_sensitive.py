"""LocationSensitiveCNN: multi-scale streams with independent weights, spatial features fused at full
resolution, the stated receptive field, slice-wise 5D inputs, learning sanity."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.export import Dim

from brainbundles.networks import LocationSensitiveCNN, output_layer_parameters

# 2 image channels + 2 spatial-feature channels, the default three scales and three blocks, tiny widths.
TINY = {"spatial_features": 2, "features": (4, 5, 6), "dense_features": (8, 7)}
LEAKY = ("leakyrelu", {"negative_slope": 0.1})  # no dead units: gradients show every dependence


def _tiny(in_channels: int = 4, out_channels: int = 3, **kwargs) -> LocationSensitiveCNN:
    return LocationSensitiveCNN(2, in_channels, out_channels, **{**TINY, **kwargs})


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_defaults() -> None:
    net = LocationSensitiveCNN()
    assert (net.spatial_dims, net.in_channels, net.out_channels, net.spatial_features) == (2, 8, 2, 6)
    assert net.image_channels == 2 and net.scales == (1, 2, 4) and net.features == (32, 64, 128)
    assert net.dense_features == (256, 128) and net.dropout == 0.3
    assert net.stream_receptive_field == 32 and net.receptive_radius == 79
    assert [(s.scale, s.stride) for s in net.streams] == [(1, 4), (2, 8), (4, 16)]
    for stream in net.streams:
        convs = _convs(stream)
        assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
        assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
        assert convs[0].in_channels == 2 and stream.last_conv is convs[-1]
    dense = _convs(net.dense)
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in dense] == [
        (3 * 128 + 6, 256, (1, 1)),
        (256, 128, (1, 1)),
    ]
    assert (net.output_layer.in_channels, net.output_layer.out_channels) == (128, 2)
    assert net.output_layer.kernel_size == (1, 1)
    out = output_layer_parameters(net)
    assert len(out) == 2 and out[0] is net.output_layer.weight and out[1] is net.output_layer.bias
    # no batch-dependent (or any) normalisation by default; ReLU everywhere
    assert not [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._NormBase | nn.GroupNorm)]
    assert sum(isinstance(m, nn.ReLU) for m in net.modules()) == 3 * 6 + 2
    # 3 streams x 286,720 + fusion 100,096 + 32,896 + output 258
    assert sum(p.numel() for p in net.parameters()) == 993_410
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 8, 37, 29)).shape == (1, 2, 37, 29)


@pytest.mark.parametrize("shape", [(37, 29), (1, 1), (2, 3), (17, 40), (64, 48)])
def test_output_shape_and_values_4d(shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = _tiny().eval()
    with torch.no_grad():
        y = net(torch.randn(2, 4, *shape))
    assert y.shape == (2, 3, *shape) and y.dtype == torch.float32 and torch.isfinite(y).all()


@pytest.mark.parametrize("shape", [(37, 29, 5), (16, 16, 1), (9, 20, 3)])
def test_5d_input_is_processed_slice_by_slice(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    net = _tiny().eval()
    x = torch.randn(2, 4, *shape)
    with torch.no_grad():
        y = net(x)
        assert y.shape == (2, 3, *shape) and y.is_contiguous()
        for k in range(shape[2]):
            torch.testing.assert_close(y[..., k], net(x[..., k]))


def test_forward_rejects_other_dimensionalities() -> None:
    net = _tiny().eval()
    for shape in [(2, 4, 8), (1, 4, 8, 8, 8, 2)]:
        with pytest.raises(ValueError, match="slice by slice"):
            net(torch.randn(*shape))


def test_runs_under_monai_sliding_window_inference_on_a_volume() -> None:
    from monai.inferers import SlidingWindowInferer

    torch.manual_seed(0)
    net = _tiny().eval()
    volume = torch.randn(1, 4, 30, 27, 5)
    inferer = SlidingWindowInferer(roi_size=(24, 24, 2), sw_batch_size=2, overlap=0.25, mode="gaussian")
    with torch.no_grad():
        y = inferer(volume, net)
    assert y.shape == (1, 3, 30, 27, 5) and torch.isfinite(y).all()


# ---------------------------------------------------------------- spatial features and streams


def test_spatial_features_reach_the_fusion_unmodified_and_only_their_own_pixel() -> None:
    torch.manual_seed(0)
    net = _tiny().double().eval()
    x = torch.randn(1, 4, 37, 29, dtype=torch.float64)
    fused = []
    net.dense.register_forward_hook(lambda module, args, out: fused.append(args[0]))
    with torch.no_grad():
        y = net(x)
        assert fused[0].shape[1] == 3 * 6 + 2
        assert torch.equal(fused[0][:, -2:], x[:, 2:])  # the feature channels, at full resolution
        for channel in (2, 3):  # a spatial feature changes the output at its own pixel only
            x2 = x.clone()
            x2[0, channel, 20, 11] += 1.0
            changed = (net(x2) - y).abs().amax(dim=(0, 1)) > 0
            assert changed.nonzero().tolist() == [[20, 11]]
        x2 = x.clone()  # an image pixel reaches its neighbours through the streams
        x2[0, 1, 20, 11] += 1.0
        assert ((net(x2) - y).abs().amax(dim=(0, 1)) > 0).sum() > 100


def test_without_spatial_features_the_network_takes_only_image_channels() -> None:
    torch.manual_seed(0)
    net = _tiny(in_channels=2, spatial_features=0).eval()
    assert net.image_channels == 2
    assert all(_convs(s)[0].in_channels == 2 for s in net.streams)
    assert _convs(net.dense)[0].in_channels == 3 * 6  # stream features only
    with torch.no_grad():
        assert net(torch.randn(2, 2, 21, 19)).shape == (2, 3, 21, 19)
    for channels in (1, 3):  # an extra channel is not silently dropped
        with pytest.raises(ValueError, match="in_channels = 2 channels"):
            net(torch.randn(2, channels, 21, 19))
    with pytest.raises(ValueError, match="2 image channels, then 2 spatial features"):
        _tiny()(torch.randn(1, 5, 8, 8, 2))


def test_streams_have_independent_weights_and_each_contributes() -> None:
    torch.manual_seed(0)
    net = _tiny().eval()
    pointers = [p.data_ptr() for p in net.parameters()]
    assert len(pointers) == len(set(pointers))  # no shared storage anywhere
    x = torch.randn(2, 4, 37, 29)
    with torch.no_grad():
        y = net(x)
        per_stream = [s(x[:, :2]) for s in net.streams]
        for k in range(len(net.streams)):
            zeroed = copy.deepcopy(net)
            zeroed.streams[k].last_conv.weight.zero_()
            zeroed.streams[k].last_conv.bias.zero_()
            assert (zeroed(x) - y).abs().max() > 1e-3, f"stream {k} does not contribute"
            # stream k's weights affect stream k only
            for j, stream in enumerate(zeroed.streams):
                same = torch.equal(stream(x[:, :2]), per_stream[j])
                assert same == (j != k)


@pytest.mark.parametrize("shape", [(37, 29), (16, 16), (3, 1)])
def test_each_stream_averages_the_image_over_its_scale(shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = _tiny()
    x = torch.randn(1, 2, *shape)
    for stream in net.streams[1:]:
        s = stream.scale
        pooled = stream.downsample(x)
        assert pooled.shape[-2:] == (math.ceil(shape[0] / s), math.ceil(shape[1] / s))
        for a in range(pooled.shape[2]):
            for b in range(pooled.shape[3]):
                window = x[:, :, a * s : (a + 1) * s, b * s : (b + 1) * s]  # real pixels only at the end
                torch.testing.assert_close(pooled[:, :, a, b], window.mean(dim=(2, 3)))


@pytest.mark.parametrize("shape", [(37, 29), (64, 48), (5, 1)])
def test_stream_equals_pooling_convolutions_and_upsampling_by_its_stride_cropped(
    shape: tuple[int, int],
) -> None:
    # written independently: ceil-mode max-pooling, and F.interpolate by exactly the stride, cropped to H×W
    torch.manual_seed(0)
    net = _tiny().double()
    x = torch.randn(2, 2, *shape, dtype=torch.float64)
    for stream in net.streams:
        h = stream.downsample(x) if stream.scale > 1 else x
        for i, block in enumerate(stream.blocks):
            h = block(F.max_pool2d(h, 2, 2, ceil_mode=True) if i > 0 else h)
        up = F.interpolate(
            h, scale_factor=stream.stride, mode="bilinear", align_corners=False, recompute_scale_factor=False
        )
        torch.testing.assert_close(stream(x), up[:, :, : shape[0], : shape[1]], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- receptive field


@pytest.mark.parametrize(
    ("kwargs", "radius"),
    [({}, 79), ({"scales": (3,), "features": (3,)}, 9), ({"scales": (2, 5), "features": (3, 4)}, 44)],
    ids=["default-scales", "one-block", "two-blocks"],
)
def test_receptive_radius_is_exact(kwargs: dict, radius: int) -> None:
    # the gradient of one logit: non-zero exactly on the image pixels it depends on
    torch.manual_seed(0)
    net = _tiny(in_channels=1, out_channels=1, spatial_features=0, act=LEAKY, **kwargs).double().eval()
    assert net.receptive_radius == radius
    period = max(s.stride for s in net.streams)
    size = period * math.ceil((2 * radius + period + 8) / period)
    for shape in [(size, size), (size + 5, size + 3)]:  # multiples of every stream's stride, and not
        worst = [0, 0, 0, 0]  # above, below, left, right
        for i in range(radius, radius + period):  # every position relative to the coarsest grid
            x = torch.randn(1, 1, *shape, dtype=torch.float64, requires_grad=True)
            net(x)[0, 0, i, i].backward()
            rows, cols = (x.grad[0, 0] != 0).nonzero().unbind(1)
            extents = [i - rows.min(), rows.max() - i, i - cols.min(), cols.max() - i]
            assert max(extents) <= radius, (shape, i, extents)
            worst = [max(a, int(b)) for a, b in zip(worst, extents, strict=True)]
        assert worst == [radius] * 4, (shape, worst)


def test_perturbations_beyond_the_receptive_radius_do_not_change_a_pixel() -> None:
    torch.manual_seed(0)
    net = _tiny().double().eval()  # ReLU, spatial features, default scales: radius 79
    r = net.receptive_radius
    x = torch.randn(1, 4, 201, 197, dtype=torch.float64)
    rows = torch.arange(201).view(-1, 1)
    cols = torch.arange(197).view(1, -1)
    with torch.no_grad():
        for i, j in [(100, 98), (87, 111), (5, 190)]:
            y = net(x)[0, :, i, j]
            distance = torch.maximum((rows - i).abs(), (cols - j).abs())
            far = torch.randn_like(x) * (distance > r)  # image and spatial-feature channels
            torch.testing.assert_close(net(x + 10 * far)[0, :, i, j], y, rtol=1e-12, atol=1e-12)
            ring = torch.randn_like(x) * ((distance > r - 16) & (distance <= r))
            ring[:, 2:] = 0  # through the image channels
            assert (net(x + 10 * ring)[0, :, i, j] - y).abs().max() > 1e-6


# ---------------------------------------------------------------- validation


BAD = [
    ("spatial_dims", {"spatial_dims": 3}),
    ("spatial_dims", {"spatial_dims": 2.0}),
    ("in_channels", {"in_channels": 0}),
    ("out_channels", {"out_channels": True}),
    ("spatial_features", {"spatial_features": -1}),
    ("spatial_features", {"spatial_features": 4}),  # == in_channels: no image channel left
    ("spatial_features", {"spatial_features": 5}),
    ("spatial_features", {"spatial_features": 1.0}),
    ("scales", {"scales": ()}),
    ("scales", {"scales": (1, 0)}),
    ("scales", {"scales": 2}),
    ("features", {"features": ()}),
    ("features", {"features": (4, 0)}),
    ("dense_features", {"dense_features": ()}),
    ("dense_features", {"dense_features": (8, -1)}),
    ("dropout", {"dropout": 1.0}),
    ("dropout", {"dropout": -0.1}),
    ("dropout", {"dropout": math.nan}),
    ("dropout", {"dropout": True}),
    ("act", {"act": "notanactivation"}),
    ("norm", {"norm": "notanorm"}),
    ("norm", {"norm": "batch"}),  # batch-dependent: slices are folded into the batch
    ("norm", {"norm": ("group", {"num_groups": 3})}),  # 4 channels are not divisible into 3 groups
]


@pytest.mark.parametrize(("name", "override"), BAD, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD)])
def test_bad_argument_raises_value_error_naming_it(name: str, override: dict) -> None:
    kwargs = {"spatial_dims": 2, "in_channels": 4, "out_channels": 3, **TINY, **override}
    with pytest.raises(ValueError, match=name):
        LocationSensitiveCNN(**kwargs)


@pytest.mark.parametrize("norm", [None, ("instance", {"affine": True}), ("group", {"num_groups": 1})])
def test_no_sample_depends_on_the_rest_of_the_batch_in_training(norm: object) -> None:
    torch.manual_seed(0)
    net = _tiny(norm=norm, dropout=0.0).train()
    if norm is not None:
        assert len([m for m in net.modules() if isinstance(m, nn.GroupNorm)]) == 3 * 6
    x = torch.randn(3, 4, 19, 21)
    y = net(x)
    torch.testing.assert_close(net(x[1:2]), y[1:2])  # alone
    torch.testing.assert_close(net(torch.cat([5 * x[2:], x[1:2]]))[1:], y[1:2])  # with another sample


# ---------------------------------------------------------------- dropout, gradients, precision


def test_dropout_in_the_dense_layers_and_only_in_training() -> None:
    assert not [m for m in _tiny(dropout=0.0).modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    net = _tiny()  # the default dropout 0.3
    drops = [m for m in net.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    assert len(drops) == 2 and all(type(m) is nn.Dropout and m.p == 0.3 for m in drops)
    assert all(any(m is d for m in net.dense) for d in drops)
    x = torch.randn(1, 4, 20, 18)
    torch.manual_seed(0)
    a, b = net.train()(x), net(x)
    assert not torch.allclose(a, b)
    net.eval()
    plain = _tiny(dropout=0.0).eval()  # the same weights without dropout
    for a, b in zip(net.parameters(), plain.parameters(), strict=True):
        b.data.copy_(a.data)
    with torch.no_grad():
        torch.manual_seed(1)
        c = net(x)
        torch.manual_seed(2)
        assert torch.equal(c, net(x))
        torch.testing.assert_close(c, plain(x), rtol=0, atol=0)


def test_backward_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    net = _tiny(norm=("instance", {"affine": True})).train()
    x = torch.randn(2, 4, 19, 21, 2)
    target = torch.randint(0, 3, (2, 19, 21, 2))
    F.cross_entropy(net(x), target).backward()
    params = dict(net.named_parameters())
    assert len(params) == 3 * 6 * 4 + 2 * 2 + 2  # streams: conv and norm weights and biases; fusion; output
    missing = [n for n, p in params.items() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in params.values())
    dead = [n for n, p in params.items() if p.grad.abs().sum() == 0]
    assert not dead


def test_bf16_autocast_with_channels_last_is_close_to_float32() -> None:
    torch.manual_seed(0)
    net = _tiny(features=(8, 8, 8), dense_features=(16,)).eval()
    x = torch.randn(2, 4, 37, 29)
    with torch.no_grad():
        reference = net(x)
        net = net.to(memory_format=torch.channels_last)
        assert net.streams[0].last_conv.weight.is_contiguous(memory_format=torch.channels_last)
        x_cl = x.to(memory_format=torch.channels_last)
        torch.testing.assert_close(net(x_cl), reference, rtol=1e-4, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x_cl)
    assert out.shape == reference.shape and out.dtype == torch.bfloat16
    rel = ((out.float() - reference).norm() / reference.norm()).item()
    assert rel < 0.05, rel
    assert (out.float().argmax(1) == reference.argmax(1)).float().mean() > 0.95


def test_torch_export_with_dynamic_shapes() -> None:
    # Exported programs are specialised to inputs whose every stream keeps more than one row and column
    # in its last map (H, W > the largest stride; 8 here): F.interpolate's decomposition guards size 1.
    torch.manual_seed(0)
    net = _tiny(in_channels=3, spatial_features=1, scales=(1, 4), features=(3, 4), dense_features=(5,)).eval()
    auto = {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}
    exported = torch.export.export(net, (torch.randn(2, 3, 20, 21),), dynamic_shapes={"x": auto}).module()
    with torch.no_grad():
        for shape in [(2, 3, 20, 21), (1, 3, 9, 40), (3, 3, 37, 29)]:
            x = torch.randn(*shape)
            torch.testing.assert_close(exported(x), net(x))


# ---------------------------------------------------------------- learning sanity


def test_a_few_dozen_adam_steps_fit_a_random_two_class_problem() -> None:
    # Random smooth blobs (a box-filtered noise field thresholded at 0) seen through a noisy image channel, a
    # pure-noise channel and two coordinate channels as spatial features, 2 x 32 x 32 pixels. 10 seeds
    # measured after 40 steps (eval mode): the loss falls to 0.21-0.50 of the initial loss and to
    # 0.33-0.54 of the loss of the best constant prediction (the class frequencies).
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    field = F.avg_pool2d(torch.randn(2, 1, 40, 40, generator=g), 9, stride=1)
    field = field / field.std()
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    x = torch.cat(
        [
            field + 0.1 * torch.randn(field.shape, generator=g),
            torch.randn(field.shape, generator=g),
            torch.stack([rows, cols]).expand(2, 2, 32, 32),
        ],
        dim=1,
    )
    target = (field[:, 0] > 0).long()
    net = LocationSensitiveCNN(2, 4, 2, spatial_features=2, features=(8, 8, 8), dense_features=(16,))
    with torch.no_grad():
        initial = F.cross_entropy(net.eval()(x), target).item()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(40):
        opt.zero_grad()
        F.cross_entropy(net(x), target).backward()
        opt.step()
    with torch.no_grad():
        final = F.cross_entropy(net.eval()(x), target).item()
    p = target.float().mean().item()
    constant = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert final < 0.6 * initial and final < 0.6 * constant, (initial, final, constant)
