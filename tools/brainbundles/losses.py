"""Losses shared by the bundles.

:class:`MaskedDiceCELoss` is MONAI's Dice + cross-entropy for softmax outputs in which voxels of one
label value count for nothing: the WMH challenge's label 2 ("other pathology": infarcts and other
lesions that may look like WMH) is neither lesion nor background, so it must not be learned as either
(Kuijf et al., IEEE TMI 2019; the challenge's evaluation masks it out of every metric).

:class:`SensitivitySpecificityLoss` is Brosch et al.'s loss for rare lesions (IEEE TMI 2016): a weighted
sum of the mean squared error over the lesion voxels and over the non-lesion voxels, so that the few lesion
voxels are not drowned by the many background voxels.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.losses import DiceLoss

__all__ = ["MaskedDiceCELoss", "SensitivitySpecificityLoss"]


class MaskedDiceCELoss(nn.Module):
    """Dice + cross-entropy on softmax outputs, ignoring the voxels whose label is ``ignore_label``.

    ``forward(input, target)``: ``input`` (B, C, *spatial) logits, ``target`` (B, 1, *spatial) integer
    labels in ``0 .. C-1`` or ``ignore_label``. The cross-entropy is the mean over the voxels that are not
    ignored; the Dice term (:class:`monai.losses.DiceLoss` with the given options) sees the ignored voxels
    as empty in both the probabilities and the one-hot target. Without ignored voxels it equals
    ``monai.losses.DiceCELoss(to_onehot_y=True, softmax=True, ...)`` with the same options.
    """

    def __init__(
        self,
        ignore_label: int = 2,
        include_background: bool = True,
        squared_pred: bool = False,
        batch: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
    ) -> None:
        super().__init__()
        if lambda_dice < 0 or lambda_ce < 0:
            raise ValueError(f"lambda_dice, lambda_ce: expected >= 0, got {lambda_dice}, {lambda_ce}")
        self.ignore_label = int(ignore_label)
        self.dice = DiceLoss(
            include_background=include_background,
            squared_pred=squared_pred,
            batch=batch,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
        )
        self.lambda_dice, self.lambda_ce = float(lambda_dice), float(lambda_ce)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape[1] != 1 or target.shape[2:] != input.shape[2:]:
            raise ValueError(
                f"target: expected shape (B, 1, *spatial) matching input {tuple(input.shape)}, "
                f"got {tuple(target.shape)}"
            )
        keep = target != self.ignore_label
        labels = torch.where(keep, target, torch.zeros_like(target)).long()
        if labels.min() < 0 or labels.max() >= input.shape[1]:
            raise ValueError(
                f"target: labels must be in 0..{input.shape[1] - 1} or {self.ignore_label} (ignored), "
                f"got values from {int(labels.min())} to {int(labels.max())}"
            )
        weight = keep[:, 0].to(input.dtype)
        ce = F.cross_entropy(input, labels[:, 0], reduction="none")
        ce = (ce * weight).sum() / weight.sum().clamp_min(1.0)
        mask = keep.to(input.dtype)
        probs = torch.softmax(input, dim=1) * mask
        onehot = F.one_hot(labels[:, 0], input.shape[1]).movedim(-1, 1).to(input.dtype) * mask
        return self.lambda_dice * self.dice(probs, onehot) + self.lambda_ce * ce


class SensitivitySpecificityLoss(nn.Module):
    """Brosch et al.'s sensitivity-specificity loss for a binary (lesion / non-lesion) segmentation.

    With ``S`` the binary reference (1 on lesion voxels) and ``y`` the predicted lesion probability::

        E = r * sum((S - y)^2 * S) / sum(S) + (1 - r) * sum((S - y)^2 * (1 - S)) / sum(1 - S)

    The first term is the mean squared error over the lesion voxels (the sensitivity term: it is 1 minus the
    sensitivity for a binary ``y``), the second the mean squared error over the non-lesion voxels (the
    specificity term). Each term is a mean over its own voxels, so the rare lesion voxels weigh as much as the
    whole background for ``r = 0.5``; the paper weights the sensitivity term with a small ``r`` (the
    "sensitivity ratio"; values from about 0.01 to 0.1 are reported to behave alike). Default ``r = 0.05``.

    Choosing ``r``: with a lesion fraction ``q`` of the counted voxels, one lesion voxel weighs
    ``r (1 - q) / ((1 - r) q)`` background voxels (about 5 for ``r = 0.05`` and ``q = 1%``, the regime of MS
    lesions in whole brain volumes, but below 1 once ``q`` exceeds ``r``), and predicting no lesion anywhere
    costs exactly ``r``: on lesion-rich patches a small ``r`` can make the network settle on the empty
    segmentation (a 16³ toy blob with ``q = 7%`` did so at ``r = 0.05`` and was learnt at ``r = 0.5``).

    References: Brosch, Tang, Yoo, Li, Traboulsee, Tam (2016), "Deep 3D convolutional encoder networks with
    shortcuts for multiscale feature integration applied to multiple sclerosis lesion segmentation", IEEE TMI
    35(5); Brosch et al. (2015), MICCAI.

    ``forward(input, target)``, the call signature of :class:`MaskedDiceCELoss`:

    - ``input`` (B, 2, *spatial) logits, ``y = softmax(input)[:, 1]`` (channel 1 = lesion), or
      (B, 1, *spatial) logits, ``y = sigmoid(input)``; the two agree when the 1-channel logit is the
      difference of the 2-channel ones. Computed in at least float32.
    - ``target`` (B, 1, *spatial) labels, 1 = lesion, 0 = background and ``ignore_label`` (if not ``None``)
      for voxels that count in neither term; or (B, 2, *spatial) one-hot (``S`` = channel 1, possibly soft;
      every voxel counts, ``ignore_label`` does not apply).

    A term whose voxel sum is below ``eps`` (no lesion, or no background) is 0 (the sums are clamped to at
    least ``eps``; for binary references the formula is otherwise exact). With ``batch=True`` [default] the
    sums run over the whole batch; with ``batch=False`` ``E`` is computed per sample and averaged.

    Args:
        r: the sensitivity ratio, the weight of the sensitivity term, in [0, 1]. Default 0.05.
        ignore_label: the label of voxels to leave out of both terms (label-map targets), or ``None``.
            Default ``None``.
        batch: sum over the whole batch (True) or average the per-sample losses (False). Default True.
        eps: lower bound of the denominators, > 0. Default 1e-6.

    Raises:
        ValueError: on an invalid argument, or in ``forward`` on mismatched shapes or labels other than 0, 1
            and ``ignore_label``.
    """

    def __init__(
        self, r: float = 0.05, ignore_label: int | None = None, batch: bool = True, eps: float = 1e-6
    ) -> None:
        super().__init__()
        if isinstance(r, bool) or not isinstance(r, int | float) or not 0.0 <= float(r) <= 1.0:
            raise ValueError(f"r: expected a float in [0, 1], got {r!r}")
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not float(eps) > 0.0:
            raise ValueError(f"eps: expected a float > 0, got {eps!r}")
        integral = (isinstance(ignore_label, int) and not isinstance(ignore_label, bool)) or (
            isinstance(ignore_label, float) and ignore_label.is_integer()
        )
        if ignore_label is not None and not integral:
            raise ValueError(f"ignore_label: expected an int or None, got {ignore_label!r}")
        self.r = float(r)
        self.ignore_label = None if ignore_label is None else int(ignore_label)
        self.batch = bool(batch)
        self.eps = float(eps)

    def reference(self, input: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(S, keep)``, each (B, *spatial) in ``input``'s dtype: the lesion reference and the counted voxels."""
        if input.dim() < 3 or input.shape[1] not in (1, 2):
            raise ValueError(f"input: expected shape (B, 1 or 2, *spatial) logits, got {tuple(input.shape)}")
        if (
            target.dim() != input.dim()
            or target.shape[0] != input.shape[0]
            or target.shape[1] not in (1, 2)
            or target.shape[2:] != input.shape[2:]
        ):
            raise ValueError(
                f"target: expected shape (B, 1, *spatial) labels or (B, 2, *spatial) one-hot matching input "
                f"{tuple(input.shape)}, got {tuple(target.shape)}"
            )
        if target.shape[1] == 2:
            return target[:, 1].to(input.dtype), torch.ones_like(input[:, 0])
        labels = target[:, 0]
        if self.ignore_label is None:
            keep = torch.ones_like(labels, dtype=torch.bool)
        else:
            keep = labels != self.ignore_label
        bad = keep & (labels != 0) & (labels != 1)
        if bool(bad.any()):
            allowed = "0, 1" + ("" if self.ignore_label is None else f" or {self.ignore_label} (ignored)")
            raise ValueError(f"target: labels must be {allowed}, got {float(labels[bad][0])!r}")
        keep = keep.to(input.dtype)
        return (labels == 1).to(input.dtype) * keep, keep

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        input = input.to(torch.promote_types(input.dtype, torch.float32))
        s, keep = self.reference(input, target)
        if input.shape[1] == 2:
            y = torch.softmax(input, dim=1)[:, 1]
        else:
            y = torch.sigmoid(input[:, 0])
        error = (s - y).square()
        background = (1.0 - s) * keep
        dims = tuple(range(0 if self.batch else 1, s.dim()))
        sensitivity = (error * s).sum(dims) / s.sum(dims).clamp_min(self.eps)
        specificity = (error * background).sum(dims) / background.sum(dims).clamp_min(self.eps)
        return (self.r * sensitivity + (1.0 - self.r) * specificity).mean()
