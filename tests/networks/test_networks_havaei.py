"""TwoPathwayCNN / InputCascadeCNN: dense evaluation equals the paper's patch-wise classification, slice-wise
5D inputs, two-phase training through output_layer_parameters, learning sanity."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.export import Dim

from brainbundles.networks import InputCascadeCNN, TwoPathwayCNN, UNetIN, output_layer_parameters

TINY = {"local_features": (4, 5), "global_features": 6}
CLASSES = [TwoPathwayCNN, InputCascadeCNN]


def _ids(cls: type) -> str:
    return cls.__name__


def _tiny(cls: type, in_channels: int = 2, out_channels: int = 3, **kwargs) -> torch.nn.Module:
    return cls(2, in_channels, out_channels, **{**TINY, **kwargs})


def test_defaults_are_the_papers() -> None:
    net = TwoPathwayCNN()
    assert (net.spatial_dims, net.in_channels, net.out_channels) == (2, 4, 3)
    assert net.local_features == (64, 64) and net.global_features == 160 and net.maxout == 2
    assert net.patch_size == 33 and net.dropout == 0.0
    assert net.local_conv1.conv.kernel_size == (7, 7) and net.local_conv1.conv.out_channels == 128
    assert net.local_pool1.kernel_size == 4 and net.local_pool1.stride == 1
    assert net.local_conv2.conv.kernel_size == (3, 3) and net.local_conv2.conv.out_channels == 128
    assert net.local_pool2.kernel_size == 2 and net.local_pool2.stride == 1
    assert net.global_conv.conv.kernel_size == (13, 13) and net.global_conv.conv.out_channels == 320
    assert net.output_layer.kernel_size == (21, 21) and net.output_layer.in_channels == 224
    cascade = InputCascadeCNN()
    assert cascade.first_activation == "sigmoid" and cascade.patch_size == 65
    assert cascade.first.in_channels == 4 and cascade.second.in_channels == 4 + 3
    assert cascade.output_layer is cascade.second.output_layer
    x = torch.randn(1, 4, 33, 35)
    with torch.no_grad():
        assert net.eval()(x).shape == (1, 3, 33, 35)
        assert cascade.eval()(x).shape == (1, 3, 33, 35)


def test_both_pathways_map_a_33_patch_to_21x21_and_the_output_to_one_pixel() -> None:
    net = TwoPathwayCNN(2, 4, 5).eval()
    patch = torch.randn(1, 4, 33, 33)
    with torch.no_grad():
        local = net.local_pool2(net.local_conv2(net.local_pool1(net.local_conv1(patch))))
        assert local.shape == (1, 64, 21, 21)
        assert net.global_conv(patch).shape == (1, 160, 21, 21)
        assert net.forward_valid(patch).shape == (1, 5, 1, 1)


def test_maxout_is_the_maximum_over_groups_of_consecutive_maps() -> None:
    torch.manual_seed(0)
    net = _tiny(TwoPathwayCNN, maxout=3)
    x = torch.randn(2, 2, 9, 8)
    raw = net.local_conv1.conv(x)
    assert raw.shape[1] == 4 * 3
    torch.testing.assert_close(
        net.local_conv1(x), torch.stack([raw[:, 3 * i : 3 * i + 3].amax(1) for i in range(4)], 1)
    )
    net1 = _tiny(TwoPathwayCNN, maxout=1)
    assert net1.local_conv1.conv.out_channels == 4


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
@pytest.mark.parametrize("shape", [(33, 33), (1, 1), (17, 40), (2, 9), (64, 31)])
def test_output_shape_and_values_4d(cls: type, shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = _tiny(cls).eval()
    with torch.no_grad():
        y = net(torch.randn(2, 2, *shape))
    assert y.shape == (2, 3, *shape) and y.dtype == torch.float32 and torch.isfinite(y).all()


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
def test_runs_under_monai_sliding_window_inference_on_a_volume(cls: type) -> None:
    # 3D bundle pipelines: windows of a few slices over a volume (sizes not multiples of the window).
    from monai.inferers import SlidingWindowInferer

    torch.manual_seed(0)
    net = _tiny(cls).eval()
    volume = torch.randn(1, 2, 30, 27, 5)
    inferer = SlidingWindowInferer(roi_size=(24, 24, 2), sw_batch_size=2, overlap=0.25, mode="gaussian")
    with torch.no_grad():
        y = inferer(volume, net)
    assert y.shape == (1, 3, 30, 27, 5) and torch.isfinite(y).all()


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
@pytest.mark.parametrize("shape", [(16, 16, 1), (15, 10, 3), (9, 20, 8)])
def test_5d_input_is_processed_slice_by_slice(cls: type, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    net = _tiny(cls).eval()
    x = torch.randn(2, 2, *shape)
    with torch.no_grad():
        y = net(x)
        assert y.shape == (2, 3, *shape) and y.is_contiguous()
        for k in range(shape[2]):
            torch.testing.assert_close(y[..., k], net(x[..., k]))


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
def test_forward_rejects_other_dimensionalities(cls: type) -> None:
    net = _tiny(cls).eval()
    for shape in [(2, 8, 8), (1, 2, 8, 8, 8, 2)]:
        with pytest.raises(ValueError, match="slice by slice"):
            net(torch.randn(*shape))


def test_two_pathway_dense_output_equals_patch_wise_classification() -> None:
    torch.manual_seed(0)
    net = _tiny(TwoPathwayCNN).double().eval()
    x = torch.randn(1, 2, 40, 37, dtype=torch.float64)
    padded = F.pad(x, (16, 16, 16, 16))  # the patch-wise classifier sees zeros outside the image
    with torch.no_grad():
        dense = net(x)
        for i, j in [(0, 0), (0, 20), (20, 18), (39, 36), (25, 3), (16, 16)]:
            patch = padded[:, :, i : i + 33, j : j + 33]
            assert patch.shape[-2:] == (33, 33)
            patch_wise = net.forward_valid(patch)  # the paper's network: 33×33 patch -> one prediction
            assert patch_wise.shape == (1, 3, 1, 1)
            torch.testing.assert_close(dense[:, :, i, j], patch_wise[:, :, 0, 0], rtol=1e-12, atol=1e-12)
    # and the prediction at a pixel depends on exactly the 33×33 patch around it
    x = torch.randn(1, 2, 50, 50, requires_grad=True)
    net.float()(x)[0, 0, 25, 25].backward()
    rows, cols = (x.grad.abs().sum(dim=(0, 1)) > 0).nonzero().unbind(1)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (9, 41, 9, 41)


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_input_cascade_dense_output_equals_the_papers_65_patch_cascade(activation: str) -> None:
    torch.manual_seed(0)
    net = _tiny(InputCascadeCNN, first_activation=activation).double().eval()
    x = torch.randn(1, 2, 80, 75, dtype=torch.float64)
    with torch.no_grad():
        dense = net(x)
        logits = net.first(x)
        expected = logits.sigmoid() if activation == "sigmoid" else logits.softmax(dim=1)
        torch.testing.assert_close(net.first_probabilities(x), expected)
        for i, j in [(32, 32), (40, 40), (47, 42), (32, 42)]:  # the 65×65 patch lies inside the image
            window = x[:, :, i - 32 : i + 33, j - 32 : j + 33]
            # the first network, unpadded, on the 65×65 patch: a 33×33 map of probabilities
            probs = net.first.forward_valid(window)
            probs = probs.sigmoid() if activation == "sigmoid" else probs.softmax(dim=1)
            assert probs.shape == (1, 3, 33, 33)
            centre = window[:, :, 16:49, 16:49]
            patch_wise = net.second.forward_valid(torch.cat([centre, probs], dim=1))
            torch.testing.assert_close(dense[:, :, i, j], patch_wise[:, :, 0, 0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
def test_backward_reaches_every_parameter(cls: type) -> None:
    torch.manual_seed(0)
    net = _tiny(cls, dropout=0.3).train()
    x = torch.randn(2, 2, 12, 11, 2)
    target = (torch.rand(2, 3, 12, 11, 2) > 0.5).float()
    F.binary_cross_entropy_with_logits(net(x), target).backward()
    params = dict(net.named_parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params.values())
    dead = [n for n, p in params.items() if p.dim() > 1 and p.grad.abs().sum() == 0]
    assert not dead


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
def test_dropout_only_before_the_output_layer(cls: type) -> None:
    assert not [m for m in _tiny(cls).modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    net = _tiny(cls, dropout=0.5)
    drops = [m for m in net.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    assert drops and all(type(m) is torch.nn.Dropout and m.p == 0.5 for m in drops)
    assert len(drops) == (1 if cls is TwoPathwayCNN else 2)
    x = torch.randn(1, 2, 10, 10)
    torch.manual_seed(0)
    assert not torch.allclose(net.train()(x), net(x))
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


BAD = [
    ("spatial_dims", {"spatial_dims": 3}),
    ("spatial_dims", {"spatial_dims": 2.0}),
    ("in_channels", {"in_channels": 0}),
    ("out_channels", {"out_channels": True}),
    ("local_features", {"local_features": (4,)}),
    ("local_features", {"local_features": (4, 4, 4)}),
    ("local_features", {"local_features": (4, 0)}),
    ("local_features", {"local_features": 64}),
    ("global_features", {"global_features": 0}),
    ("global_features", {"global_features": (160,)}),
    ("maxout", {"maxout": 0}),
    ("dropout", {"dropout": 1.0}),
    ("dropout", {"dropout": math.nan}),
]


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
@pytest.mark.parametrize(("name", "override"), BAD, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD)])
def test_bad_argument_raises_value_error_naming_it(cls: type, name: str, override: dict) -> None:
    kwargs = {"spatial_dims": 2, "in_channels": 2, "out_channels": 3, **TINY, **override}
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


@pytest.mark.parametrize("value", ["relu", "Softmax", None])
def test_bad_first_activation(value: object) -> None:
    with pytest.raises(ValueError, match="first_activation"):
        _tiny(InputCascadeCNN, first_activation=value)


# ---------------------------------------------------------------- two-phase training


def test_output_layer_parameters_unwraps_wrappers_and_rejects_networks_without_one() -> None:
    net = _tiny(InputCascadeCNN)
    expected = [net.second.output_layer.weight, net.second.output_layer.bias]
    for wrapped in (
        net,
        torch.nn.DataParallel(net),
        torch.compile(net),
        torch.nn.DataParallel(torch.compile(net)),
    ):
        got = output_layer_parameters(wrapped)
        assert len(got) == 2 and all(a is b for a, b in zip(got, expected, strict=True))
    with pytest.raises(ValueError, match="output_layer"):
        output_layer_parameters(UNetIN(2, 1, 2, features=(4, 8)))
    with pytest.raises(ValueError, match="output_layer"):
        output_layer_parameters(torch.nn.DataParallel(torch.nn.Conv2d(1, 1, 1)))


def test_output_layer_parameters_unwraps_distributed_data_parallel() -> None:
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        net = _tiny(TwoPathwayCNN)
        ddp = torch.nn.parallel.DistributedDataParallel(net)
        got = output_layer_parameters(ddp)
        assert [
            p is q for p, q in zip(got, [net.output_layer.weight, net.output_layer.bias], strict=True)
        ] == [
            True,
            True,
        ]
    finally:
        if created:
            dist.destroy_process_group()


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
def test_second_phase_updates_only_the_output_layer(cls: type) -> None:
    torch.manual_seed(0)
    net = _tiny(cls).train()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = torch.optim.SGD(output_layer_parameters(net), lr=0.1)
    x = torch.randn(2, 2, 10, 10)
    target = (torch.rand(2, 3, 10, 10) > 0.5).float()
    for _ in range(2):
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(net(x), target).backward()
        opt.step()
    changed = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
    prefix = "output_layer." if cls is TwoPathwayCNN else "second.output_layer."
    assert changed == {prefix + "weight", prefix + "bias"}


# ---------------------------------------------------------------- learning sanity and export


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
def test_a_few_adam_steps_learn_more_than_the_class_frequencies(cls: type, learning) -> None:
    # 10 seeds measured: the final loss is 0.30-0.40 (TwoPathwayCNN) and 0.33-0.46 (InputCascadeCNN) of the loss of the best constant prediction
    # (the class frequencies), which bounds any network that ignores its input.
    torch.manual_seed(0)
    x, target = learning.smooth_field_batch(seed=0, spatial_dims=2, batch=4, size=24, smooth=9)
    learning.assert_learns(_tiny(cls), x, target, steps=25, lr=3e-3)


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
def test_torch_export_with_dynamic_shapes(cls: type) -> None:
    torch.manual_seed(0)
    net = _tiny(cls).eval()
    dims = {0: Dim("batch", min=1, max=8), 2: Dim("h", min=2, max=256), 3: Dim("w", min=2, max=256)}
    exported = torch.export.export(net, (torch.randn(2, 2, 20, 21),), dynamic_shapes={"x": dims}).module()
    dims5 = {**dims, 4: Dim("d", min=2, max=64)}
    exported5 = torch.export.export(
        net, (torch.randn(2, 2, 20, 21, 3),), dynamic_shapes={"x": dims5}
    ).module()
    with torch.no_grad():
        for shape in [(2, 2, 20, 21), (1, 2, 9, 40)]:
            x = torch.randn(*shape)
            torch.testing.assert_close(exported(x), net(x))
        for shape in [(2, 2, 20, 21, 3), (1, 2, 9, 40, 2)]:
            x = torch.randn(*shape)
            torch.testing.assert_close(exported5(x), net(x))
