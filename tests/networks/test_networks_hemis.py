"""HeMIS: per-modality encoders fused by mean and variance over the PRESENT modalities (zero channel = absent)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.export import Dim

from brainbundles.networks import HeMIS, output_layer_parameters

TINY = {"features": (3, 4), "backend_features": (5,)}
SUBSETS = [s for r in range(1, 5) for s in itertools.combinations(range(4), r)]


def _tiny(spatial_dims: int = 3, in_channels: int = 4, out_channels: int = 3, **kwargs) -> HeMIS:
    return HeMIS(spatial_dims, in_channels, out_channels, **{**TINY, **kwargs})


def _restricted(net: HeMIS, keep: tuple[int, ...]) -> HeMIS:
    """A HeMIS that only has the encoders ``keep`` of ``net`` (same back end): it never saw the others."""
    small = HeMIS(
        net.spatial_dims,
        len(keep),
        net.out_channels,
        features=net.features,
        backend_features=net.backend_features,
    )
    small.encoders = torch.nn.ModuleList(net.encoders[i] for i in keep)
    small.backend = net.backend
    small.output_layer = net.output_layer
    return small.eval()


def _input(shape: tuple[int, ...], absent: tuple[int, ...] = (), seed: int = 0) -> torch.Tensor:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    x[:, list(absent)] = 0.0
    return x


def test_defaults() -> None:
    net = HeMIS()
    assert (net.spatial_dims, net.in_channels, net.out_channels) == (3, 4, 3)
    assert net.features == (16, 32) and net.backend_features == (32, 32) and net.dropout == 0.0
    assert len(net.encoders) == 4
    for enc in net.encoders:
        convs = [m for m in enc if isinstance(m, torch.nn.Conv3d)]
        assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
            (1, 16, (3, 3, 3)),
            (16, 32, (3, 3, 3)),
        ]
    assert net.backend[0].in_channels == 64  # mean and variance of 32 maps
    assert net.output_layer.kernel_size == (1, 1, 1) and net.output_layer.out_channels == 3
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 4, 7, 8, 9)).shape == (1, 3, 7, 8, 9)


@pytest.mark.parametrize(
    ("spatial_dims", "shape"), [(3, (7, 8, 9)), (3, (1, 1, 1)), (3, (5, 12, 3)), (2, (15, 8)), (2, (1, 9))]
)
def test_output_shape_and_values(spatial_dims: int, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = _tiny(spatial_dims).eval()
    with torch.no_grad():
        y = net(_input((2, 4, *shape), absent=(1,)))
    assert y.shape == (2, 3, *shape) and y.dtype == torch.float32 and torch.isfinite(y).all()


def test_forward_rejects_bad_inputs() -> None:
    net = _tiny(3).eval()
    with pytest.raises(ValueError, match="spatial"):
        net(torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError, match="in_channels"):
        net(torch.randn(1, 3, 8, 8, 8))


def test_presence_is_a_non_zero_channel_per_sample_and_all_for_an_empty_sample() -> None:
    x = torch.zeros(3, 4, 5, 5, 5)
    x[0, 1, 2, 2, 2] = 1e-6
    x[0, 3] = -1.0
    x[1, :3] = torch.randn(3, 5, 5, 5)
    present = HeMIS.present(x)
    assert present.tolist() == [[False, True, False, True], [True, True, True, False], [True] * 4]


def test_fusion_is_mean_and_unbiased_variance_over_present_encoders() -> None:
    torch.manual_seed(0)
    net = _tiny(3).eval()
    x = _input((2, 4, 6, 5, 7), absent=(2,))
    x[1, 0] = 0.0  # sample 1 also lacks modality 0
    with torch.no_grad():
        fused = net.fuse(x)
        encoded = [enc(x[:, i : i + 1]) for i, enc in enumerate(net.encoders)]
        for b, present in [(0, (0, 1, 3)), (1, (1, 3))]:
            stack = torch.stack([encoded[i][b] for i in present])
            expected = torch.cat([stack.mean(0), stack.var(0, unbiased=True)])
            torch.testing.assert_close(fused[b], expected)
        assert fused.shape == (2, 2 * 4, 6, 5, 7)


def test_one_present_modality_gives_its_encoding_and_zero_variance() -> None:
    torch.manual_seed(0)
    net = _tiny(3).eval()
    x = _input((1, 4, 6, 6, 6), absent=(0, 1, 3))
    with torch.no_grad():
        fused = net.fuse(x)
        torch.testing.assert_close(fused[:, :4], net.encoders[2](x[:, 2:3]), rtol=0, atol=0)
        assert torch.equal(fused[:, 4:], torch.zeros_like(fused[:, 4:]))


def test_background_patch_counts_every_modality_as_present() -> None:
    torch.manual_seed(0)
    net = _tiny(3).eval()
    x = torch.zeros(1, 4, 5, 5, 5)
    with torch.no_grad():
        fused = net.fuse(x)
        stack = torch.stack([enc(x[:, :1]) for enc in net.encoders])
        torch.testing.assert_close(fused, torch.cat([stack.mean(0), stack.var(0)], dim=1))
        assert torch.isfinite(net(x)).all()


@pytest.mark.parametrize("keep", SUBSETS, ids=["".join(map(str, s)) for s in SUBSETS])
def test_every_subset_equals_a_network_that_only_saw_the_present_modalities(keep: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = _tiny(3).eval()
    absent = tuple(i for i in range(4) if i not in keep)
    x = _input((2, 4, 6, 7, 5), absent=absent)
    with torch.no_grad():
        y = net(x)
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y, _restricted(net, keep)(x[:, list(keep)]), rtol=1e-5, atol=1e-6)
        # the absent encoders' weights play no part
        for i in absent:
            for p in net.encoders[i].parameters():
                p.add_(torch.randn_like(p))
        torch.testing.assert_close(net(x), y, rtol=0, atol=0)


def test_presence_is_decided_per_sample() -> None:
    torch.manual_seed(0)
    net = _tiny(3).eval()
    a, b = _input((1, 4, 5, 6, 7), absent=(1,), seed=1), _input((1, 4, 5, 6, 7), absent=(0, 2, 3), seed=2)
    with torch.no_grad():
        torch.testing.assert_close(net(torch.cat([a, b])), torch.cat([net(a), net(b)]))


def test_permuting_modalities_together_with_their_encoders_changes_nothing() -> None:
    torch.manual_seed(0)
    net = _tiny(3).eval()
    x = _input((2, 4, 6, 5, 4), absent=(2,))
    with torch.no_grad():
        y = net(x)
        for perm in [(3, 2, 1, 0), (1, 3, 0, 2), (2, 0, 3, 1)]:
            permuted = _tiny(3).eval()
            permuted.load_state_dict(net.state_dict())
            permuted.encoders = torch.nn.ModuleList(net.encoders[i] for i in perm)
            torch.testing.assert_close(permuted(x[:, list(perm)]), y, rtol=1e-5, atol=1e-6)


def test_gradients_reach_only_the_encoders_of_present_modalities() -> None:
    torch.manual_seed(0)
    net = _tiny(3, dropout=0.2).train()
    x = _input((2, 4, 6, 6, 6), absent=(1, 3))
    target = (torch.rand(2, 3, 6, 6, 6) > 0.5).float()
    F.binary_cross_entropy_with_logits(net(x), target).backward()
    for i, enc in enumerate(net.encoders):
        grads = [p.grad for p in enc.parameters()]
        if i in (1, 3):
            assert all(g is None or torch.equal(g, torch.zeros_like(g)) for g in grads)
        else:
            assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    for p in [*net.backend.parameters(), *net.output_layer.parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    out = output_layer_parameters(net)
    assert len(out) == 2 and out[0] is net.output_layer.weight


def test_dropout_is_spatial_and_before_the_output_layer() -> None:
    assert not [m for m in _tiny(3).modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    assert isinstance(_tiny(3, dropout=0.3).output_dropout, torch.nn.Dropout3d)
    assert isinstance(_tiny(2, dropout=0.3).output_dropout, torch.nn.Dropout2d)


def test_norm_act_kernel_and_no_backend() -> None:
    for kwargs in [
        {"norm": "instance"},
        {"norm": ("group", {"num_groups": 1}), "act": "prelu"},
        {"kernel_size": 5},
        {"backend_features": ()},
    ]:
        net = _tiny(3, **kwargs).eval()
        with torch.no_grad():
            assert net(_input((1, 4, 5, 6, 7), absent=(0,))).shape == (1, 3, 5, 6, 7)
    assert _tiny(3, backend_features=()).output_layer.in_channels == 8


BAD = [
    ("spatial_dims", {"spatial_dims": 1}),
    ("in_channels", {"in_channels": 0}),
    ("out_channels", {"out_channels": 0}),
    ("features", {"features": ()}),
    ("features", {"features": (4, 0)}),
    ("backend_features", {"backend_features": (0,)}),
    ("backend_features", {"backend_features": 8}),
    ("kernel_size", {"kernel_size": 4}),
    ("kernel_size", {"kernel_size": 0}),
    ("dropout", {"dropout": 1.0}),
    ("dropout", {"dropout": math.nan}),
    ("act", {"act": "notanactivation"}),
    ("norm", {"norm": "notanorm"}),
    ("norm", {"norm": ("group", {"num_groups": 2})}),  # 3 channels
]


@pytest.mark.parametrize(("name", "override"), BAD, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD)])
def test_bad_argument_raises_value_error_naming_it(name: str, override: dict) -> None:
    kwargs = {"spatial_dims": 3, "in_channels": 4, "out_channels": 3, **TINY, **override}
    with pytest.raises(ValueError, match=name):
        HeMIS(**kwargs)


SIZE, SMOOTH = 12, 5  # the learning sanity batch
ABSENT = [(), (1,), (0, 2), (1, 2, 3)]  # absent modalities of each sample


def _smooth_field_batch(
    seed: int, size: int = SIZE, smooth: int = SMOOTH
) -> tuple[torch.Tensor, torch.Tensor]:
    """One smooth random field (noise box-filtered over ``smooth`` voxels, unit variance) seen by each of the
    four modalities with its own contrast (1, -1, 0.5, 2) and noise; some modalities absent (zero) in some
    samples. The three nested target regions are thresholds of the field."""
    g = torch.Generator().manual_seed(seed)
    field = F.avg_pool3d(
        torch.randn(len(ABSENT), 1, *(size + smooth - 1,) * 3, generator=g), smooth, stride=1
    )
    field = field / field.std()
    contrast = torch.tensor([1.0, -1.0, 0.5, 2.0]).reshape(1, 4, 1, 1, 1)
    x = contrast * field + 0.3 * torch.randn(len(ABSENT), 4, *field.shape[2:], generator=g)
    for b, absent in enumerate(ABSENT):
        x[b, list(absent)] = 0.0
    target = torch.cat([(field > t).float() for t in (-0.5, 0.0, 0.5)], dim=1)
    return x, target


def test_a_few_adam_steps_learn_more_than_the_class_frequencies(learning) -> None:
    # 10 seeds measured: the final loss is 0.23-0.48 of the loss of the best constant prediction
    # (the class frequencies), which bounds any network that ignores its input.
    torch.manual_seed(0)
    x, target = _smooth_field_batch(seed=0)
    learning.assert_learns(_tiny(3), x, target, steps=40, lr=3e-2)


def test_torch_export_with_dynamic_shapes() -> None:
    torch.manual_seed(0)
    net = _tiny(3).eval()
    dims = {0: Dim("batch", min=1, max=8), **{i: Dim(f"s{i}", min=2, max=128) for i in (2, 3, 4)}}
    example = _input((2, 4, 6, 7, 5), absent=(1,))
    exported = torch.export.export(net, (example,), dynamic_shapes={"x": dims}).module()
    with torch.no_grad():
        for x in [example, _input((1, 4, 9, 4, 11), absent=(0, 3)), torch.zeros(3, 4, 5, 5, 5)]:
            torch.testing.assert_close(exported(x), net(x))
