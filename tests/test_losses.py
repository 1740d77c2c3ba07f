"""Tests of brainbundles.losses.MaskedDiceCELoss: MONAI's Dice + CE with the voxels of one label ignored."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss

from brainbundles.losses import MaskedDiceCELoss

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
