"""Losses shared by the bundles.

:class:`MaskedDiceCELoss` is MONAI's Dice + cross-entropy for softmax outputs in which voxels of one
label value count for nothing: the WMH challenge's label 2 ("other pathology": infarcts and other
lesions that may look like WMH) is neither lesion nor background, so it must not be learned as either
(Kuijf et al., IEEE TMI 2019; the challenge's evaluation masks it out of every metric).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.losses import DiceLoss

__all__ = ["MaskedDiceCELoss"]


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
