"""Tests of brainbundles.losses: MaskedDiceCELoss (MONAI's Dice + CE with the voxels of one label ignored) and
SensitivitySpecificityLoss (Brosch et al.'s loss for rare lesions)."""

from __future__ import annotations

import math

import pytest
import torch
from monai.losses import DiceCELoss

from brainbundles.losses import MaskedDiceCELoss, SensitivitySpecificityLoss

OPTIONS = [
    {},
    {"include_background": False},
    {"squared_pred": True},
    {"batch": True},
    {"smooth_nr": 0.0, "smooth_dr": 1e-6},
    {"lambda_dice": 0.3, "lambda_ce": 1.7},
    {"lambda_dice": 0.0},
    {"lambda_ce": 0.0, "include_background": False, "batch": True},
]


def _data(classes=2, shape=(2, 5, 6, 4), ignore=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn((shape[0], classes, *shape[1:]), generator=g, dtype=torch.float64)
    target = torch.randint(0, classes, (shape[0], 1, *shape[1:]), generator=g)
    if ignore is not None:
        mask = torch.rand((shape[0], 1, *shape[1:]), generator=g) < 0.3
        target[mask] = ignore
    return logits, target


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("classes", [2, 3])
def test_equals_monai_dice_ce_without_ignored_voxels(options, classes):
    logits, target = _data(classes, ignore=None, seed=classes)
    ignore = 7 if classes == 3 else 2  # a label value that does not occur
    ours = MaskedDiceCELoss(ignore_label=ignore, **options)(logits, target)
    ref = DiceCELoss(to_onehot_y=True, softmax=True, **options)(logits, target)
    assert ours.ndim == 0
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("options", OPTIONS)
def test_ignored_voxels_change_neither_loss_nor_gradient(options):
    logits, target = _data(2, ignore=2, seed=1)
    ignored = (target == 2).expand_as(logits)
    assert ignored.any() and not ignored.all()
    loss_fn = MaskedDiceCELoss(ignore_label=2, **options)

    def loss_and_grad(x):
        x = x.clone().requires_grad_(True)
        loss = loss_fn(x, target)
        loss.backward()
        return loss.detach(), x.grad

    loss, grad = loss_and_grad(logits)
    other = logits.clone()
    other[ignored] = torch.randn(int(ignored.sum()), dtype=logits.dtype) * 10
    loss2, grad2 = loss_and_grad(other)
    torch.testing.assert_close(loss2, loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad2, grad, rtol=1e-12, atol=1e-12)
    assert torch.all(grad[ignored] == 0)
    if loss_fn.lambda_dice or loss_fn.lambda_ce:
        assert grad[~ignored].abs().sum() > 0


def test_equals_dice_ce_on_the_kept_voxels_alone():
    """With ``batch=True`` Dice pools the voxels of the batch: the loss is MONAI's on the kept voxels
    gathered into one image (the CE is their mean)."""
    logits, target = _data(3, ignore=5, seed=2)
    keep = target[:, 0] != 5
    kept_logits = logits.movedim(1, -1)[keep].T[None, :, :, None]  # (1, C, K, 1)
    kept_target = target[:, 0][keep][None, None, :, None]
    ours = MaskedDiceCELoss(ignore_label=5, batch=True)(logits, target)
    ref = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)(kept_logits, kept_target)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-9)
    # the cross-entropy alone: the mean over the kept voxels only
    ce = MaskedDiceCELoss(ignore_label=5, lambda_dice=0.0)(logits, target)
    expected = torch.nn.functional.cross_entropy(kept_logits[..., 0], kept_target[:, 0, :, 0])
    torch.testing.assert_close(ce, expected, rtol=1e-6, atol=1e-9)


def test_everything_ignored_is_finite_and_flat():
    logits = torch.randn(1, 2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    target = torch.full((1, 1, 3, 3, 3), 2)
    loss = MaskedDiceCELoss(ignore_label=2)(logits, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.all(logits.grad == 0)


def test_float_targets_and_other_ignore_label():
    logits, target = _data(2, ignore=None, seed=3)
    ours = MaskedDiceCELoss(ignore_label=-1)(logits, target.to(torch.float32))
    ref = DiceCELoss(to_onehot_y=True, softmax=True)(logits, target)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-9)
    masked = target.clone()
    masked[..., 0] = -1
    assert not torch.isclose(MaskedDiceCELoss(ignore_label=-1)(logits, masked), ref)


@pytest.mark.parametrize("bad", [3, -1, 7])
def test_out_of_range_label_raises(bad):
    logits, target = _data(3, ignore=None, seed=4)
    target[0, 0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match="labels must be in 0..2"):
        MaskedDiceCELoss(ignore_label=99)(logits, target)
    # two classes: 2 is ignored, 3 is not a class
    logits2, target2 = _data(2, ignore=2, seed=4)
    target2[0, 0, 0, 0, 0] = 3
    with pytest.raises(ValueError, match="target"):
        MaskedDiceCELoss(ignore_label=2)(logits2, target2)


@pytest.mark.parametrize(
    "target_shape",
    [(2, 2, 5, 6, 4), (2, 1, 5, 6, 3), (2, 1, 6, 5, 4)],
)
def test_bad_target_shape_raises(target_shape):
    logits, _ = _data(2, shape=(2, 5, 6, 4))
    with pytest.raises(ValueError, match="target: expected shape"):
        MaskedDiceCELoss()(logits, torch.zeros(target_shape, dtype=torch.long))


@pytest.mark.parametrize("kwargs", [{"lambda_dice": -0.1}, {"lambda_ce": -1.0}])
def test_negative_weights_raise(kwargs):
    with pytest.raises(ValueError, match="lambda"):
        MaskedDiceCELoss(**kwargs)


# ---------------------------------------------------------------- SensitivitySpecificityLoss


def _binary_data(shape=(2, 5, 6, 4), seed=0, ignore=None):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn((shape[0], 2, *shape[1:]), generator=g, dtype=torch.float64)
    target = (torch.rand((shape[0], 1, *shape[1:]), generator=g) < 0.2).long()
    if ignore is not None:
        target[torch.rand(target.shape, generator=g) < 0.3] = ignore
    return logits, target


def _brosch_by_hand(y, s, r):
    """E = r * sum((S - y)^2 S) / sum(S) + (1 - r) * sum((S - y)^2 (1 - S)) / sum(1 - S), with python floats."""
    sens_num = sum((si - yi) ** 2 * si for si, yi in zip(s, y, strict=True))
    spec_num = sum((si - yi) ** 2 * (1 - si) for si, yi in zip(s, y, strict=True))
    return r * sens_num / sum(s) + (1 - r) * spec_num / sum(1 - si for si in s)


def test_sensitivity_specificity_value_by_hand():
    # one sample, 2x3 voxels; the lesion probability is the softmax's channel 1
    logits1 = torch.tensor([[2.0, -1.0, 0.5], [0.0, -3.0, 1.5]], dtype=torch.float64)
    logits0 = torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, -0.5]], dtype=torch.float64)
    logits = torch.stack([logits0, logits1])[None]  # (1, 2, 2, 3)
    target = torch.tensor([[[[1, 0, 0], [1, 0, 1]]]])  # (1, 1, 2, 3)
    pairs = zip(logits0.flatten().tolist(), logits1.flatten().tolist(), strict=True)
    y = [math.exp(b) / (math.exp(a) + math.exp(b)) for a, b in pairs]
    s = [1, 0, 0, 1, 0, 1]
    for r in (0.05, 0.3, 0.5):
        loss = SensitivitySpecificityLoss(r=r)(logits, target)
        assert loss.ndim == 0 and loss.dtype == torch.float64
        assert loss.item() == pytest.approx(_brosch_by_hand(y, s, r), rel=1e-12)
    # e.g. r = 0.05 by the numbers: y = (0.881, 0.119, 0.5, 0.269, 0.047, 0.881)
    assert SensitivitySpecificityLoss()(logits, target).item() == pytest.approx(
        0.05 * ((1 - y[0]) ** 2 + (1 - y[3]) ** 2 + (1 - y[5]) ** 2) / 3
        + 0.95 * (y[1] ** 2 + y[2] ** 2 + y[4] ** 2) / 3,
        rel=1e-12,
    )


def test_sensitivity_specificity_r_one_and_zero_are_the_two_terms():
    logits, target = _binary_data(seed=5)
    y = torch.softmax(logits, 1)[:, 1:]
    s = target.double()
    sens = ((s - y) ** 2 * s).sum() / s.sum()
    spec = ((s - y) ** 2 * (1 - s)).sum() / (1 - s).sum()
    torch.testing.assert_close(SensitivitySpecificityLoss(r=1.0)(logits, target), sens)
    torch.testing.assert_close(SensitivitySpecificityLoss(r=0.0)(logits, target), spec)
    torch.testing.assert_close(
        SensitivitySpecificityLoss(r=0.2)(logits, target), 0.2 * sens + 0.8 * spec, rtol=1e-12, atol=1e-15
    )
    # binary predictions: the terms are 1 - sensitivity and 1 - specificity
    pred = (y > 0.5).double()
    hard = torch.cat([torch.zeros_like(pred), torch.where(pred > 0, 50.0, -50.0)], 1)
    tp, fn = (pred * s).sum(), ((1 - pred) * s).sum()
    tn, fp = ((1 - pred) * (1 - s)).sum(), (pred * (1 - s)).sum()
    torch.testing.assert_close(SensitivitySpecificityLoss(r=1.0)(hard, target), 1 - tp / (tp + fn))
    torch.testing.assert_close(SensitivitySpecificityLoss(r=0.0)(hard, target), 1 - tn / (tn + fp))


def test_sensitivity_specificity_one_and_two_channels_and_one_hot_agree():
    logits, target = _binary_data(seed=6)
    loss_fn = SensitivitySpecificityLoss(r=0.1)
    two = loss_fn(logits, target)
    one = loss_fn(logits[:, 1:] - logits[:, :1], target)  # sigmoid(l1 - l0) = softmax(l)[1]
    torch.testing.assert_close(one, two, rtol=1e-12, atol=1e-15)
    onehot = torch.cat([1 - target, target], 1)
    torch.testing.assert_close(loss_fn(logits, onehot), two, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(loss_fn(logits, target.float()), two, rtol=1e-12, atol=1e-15)


def test_sensitivity_specificity_ignored_voxels_are_excluded():
    logits, target = _binary_data(seed=7, ignore=2)
    ignored = target == 2
    assert ignored.any() and not ignored.all()
    loss_fn = SensitivitySpecificityLoss(r=0.3, ignore_label=2)

    def loss_and_grad(x):
        x = x.clone().requires_grad_(True)
        loss = loss_fn(x, target)
        loss.backward()
        return loss.detach(), x.grad

    loss, grad = loss_and_grad(logits)
    other = logits.clone()
    mask = ignored.expand_as(logits)
    other[mask] = torch.randn(int(mask.sum()), dtype=logits.dtype) * 10
    loss2, grad2 = loss_and_grad(other)
    torch.testing.assert_close(loss2, loss, rtol=1e-12, atol=1e-15)
    assert torch.all(grad[mask] == 0) and torch.all(grad2[mask] == 0)
    assert grad[~mask].abs().sum() > 0
    # the same as the loss on the kept voxels alone
    keep = ~ignored[:, 0]
    kept_logits = logits.movedim(1, -1)[keep].T[None, :, :, None]  # (1, 2, K, 1)
    kept_target = target[:, 0][keep][None, None, :, None]
    torch.testing.assert_close(
        loss, SensitivitySpecificityLoss(r=0.3)(kept_logits, kept_target), rtol=1e-12, atol=1e-15
    )
    # without ignore_label, label 2 is an error
    with pytest.raises(ValueError, match="labels must be 0, 1"):
        SensitivitySpecificityLoss()(logits, target)


def test_sensitivity_specificity_more_lesion_probability_on_a_lesion_voxel_lowers_the_loss():
    logits, target = _binary_data(seed=8)
    for r in (0.05, 0.5, 1.0):
        x = logits.clone().requires_grad_(True)
        loss = SensitivitySpecificityLoss(r=r)(x, target)
        loss.backward()
        lesion = target[:, 0] == 1
        # d loss / d (l1 - l0) < 0 on lesion voxels, > 0 on background voxels (unless r == 1: no gradient)
        margin_grad = (x.grad[:, 1] - x.grad[:, 0]) / 2
        assert torch.all(margin_grad[lesion] < 0)
        if r < 1:
            assert torch.all(margin_grad[~lesion] > 0)
        else:
            assert torch.all(margin_grad[~lesion] == 0)
        # and a finite step in that direction on one lesion voxel lowers the loss
        v = tuple(torch.nonzero(lesion)[0].tolist())
        bumped = logits.clone()
        bumped[v[0], 1, v[1], v[2], v[3]] += 0.5
        assert SensitivitySpecificityLoss(r=r)(bumped, target) < loss.detach()


def test_sensitivity_specificity_batch_option():
    logits, target = _binary_data(shape=(3, 4, 5, 3), seed=9)
    loss_fn = SensitivitySpecificityLoss(r=0.2, batch=False)
    per_sample = [SensitivitySpecificityLoss(r=0.2)(logits[i : i + 1], target[i : i + 1]) for i in range(3)]
    torch.testing.assert_close(loss_fn(logits, target), torch.stack(per_sample).mean())
    pooled = SensitivitySpecificityLoss(r=0.2)(logits, target)  # batch=True: the sums run over the batch
    flat_logits = logits.movedim(1, -1).reshape(1, -1, 2).movedim(-1, 1)[..., None]  # (1, 2, N, 1)
    torch.testing.assert_close(
        pooled, SensitivitySpecificityLoss(r=0.2)(flat_logits, target.reshape(1, 1, -1, 1))
    )


def test_sensitivity_specificity_empty_terms_are_zero_and_finite():
    logits = torch.randn(2, 2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    no_lesion = torch.zeros(2, 1, 3, 3, 3, dtype=torch.long)
    y = torch.softmax(logits, 1)[:, 1]
    loss = SensitivitySpecificityLoss(r=0.3)(logits, no_lesion)
    torch.testing.assert_close(loss, 0.7 * (y**2).mean())
    all_ignored = torch.full((2, 1, 3, 3, 3), 2)
    loss = SensitivitySpecificityLoss(ignore_label=2)(logits, all_ignored)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0)
    # per sample: a sample without lesions contributes only its specificity term
    target = no_lesion.clone()
    target[0, 0, 1, 1, 1] = 1
    per = SensitivitySpecificityLoss(r=0.3, batch=False)(logits.detach(), target)
    assert torch.isfinite(per)


def test_sensitivity_specificity_low_precision_inputs_are_computed_in_float32():
    logits, target = _binary_data(seed=10)
    ref = SensitivitySpecificityLoss()(logits.float(), target)
    out = SensitivitySpecificityLoss()(logits.to(torch.bfloat16), target)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=2e-2, atol=1e-3)


def test_sensitivity_specificity_from_a_bundle_config():
    from monai.bundle import ConfigParser

    parser = ConfigParser({"loss": {"_target_": "brainbundles.losses.SensitivitySpecificityLoss", "r": 0.1}})
    loss_fn = parser.get_parsed_content("loss")
    assert isinstance(loss_fn, SensitivitySpecificityLoss) and loss_fn.r == 0.1
    logits, target = _binary_data(seed=11)
    torch.testing.assert_close(loss_fn(logits, target), SensitivitySpecificityLoss(r=0.1)(logits, target))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"r": -0.1}, "r"),
        ({"r": 1.5}, "r"),
        ({"r": True}, "r"),
        ({"r": "0.05"}, "r"),
        ({"eps": 0.0}, "eps"),
        ({"ignore_label": 1.5}, "ignore_label"),
        ({"ignore_label": "2"}, "ignore_label"),
        ({"ignore_label": math.nan}, "ignore_label"),
    ],
)
def test_sensitivity_specificity_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SensitivitySpecificityLoss(**kwargs)


@pytest.mark.parametrize(
    ("input_shape", "target_shape", "match"),
    [
        ((2, 3, 4, 4), (2, 1, 4, 4), "input"),
        ((2, 2, 4, 4), (2, 3, 4, 4), "target"),
        ((2, 2, 4, 4), (2, 1, 4, 5), "target"),
        ((2, 2, 4, 4), (1, 1, 4, 4), "target"),
        ((2, 2, 4, 4), (2, 4, 4), "target"),
    ],
)
def test_sensitivity_specificity_bad_shapes_raise(input_shape, target_shape, match):
    with pytest.raises(ValueError, match=match):
        SensitivitySpecificityLoss()(torch.randn(input_shape), torch.zeros(target_shape, dtype=torch.long))
