"""The lesion probability threshold: applying it, storing it, and tuning it on validation cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from brainbundles.postprocessing import (
    DEFAULT_THRESHOLDS,
    LesionThresholdd,
    load_threshold,
    threshold_dice,
    tune_lesion_threshold,
)


def test_lesion_threshold_keeps_metadata_and_uses_the_lesion_channel():
    prob = torch.zeros(2, 4, 4, 4)
    prob[1, 0, 0, :] = torch.tensor([0.2, 0.3, 0.35, 0.9])
    prob[0] = 1 - prob[1]
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    out = LesionThresholdd("pred", threshold=0.3)({"pred": MetaTensor(prob, affine=affine)})["pred"]
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, affine)
    assert out.shape == (1, 4, 4, 4)
    assert out[0, 0, 0].tolist() == [0, 1, 1, 1] and int(out.sum()) == 3
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        LesionThresholdd("pred", threshold=1.0)
    with pytest.raises(ValueError, match="no lesion channel 1"):
        LesionThresholdd("pred")({"pred": torch.zeros(1, 2, 2, 2)})


def test_load_threshold_default_file_and_bad_file(tmp_path):
    path = tmp_path / "threshold.json"
    assert load_threshold(path) == 0.5 and load_threshold(path, default=0.3) == 0.3
    path.write_text(json.dumps({"threshold": 0.35}))
    assert load_threshold(path) == 0.35
    path.write_text("{not json")
    with pytest.raises(ValueError, match="threshold.json: not a valid threshold file"):
        load_threshold(path)
    path.write_text(json.dumps({"threshold": 7}))
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        load_threshold(path)


def test_threshold_dice_by_hand_with_small_lesion_removal():
    prob = np.zeros((10, 10, 10))
    prob[:2, :2, :2] = 0.8  # 8 voxels, the reference lesion
    prob[5, 5, 5] = 0.6  # a 1-voxel speck, not in the reference
    ref = prob == 0.8
    d = threshold_dice(prob, ref, thresholds=[0.5, 0.7, 0.9])
    assert d == pytest.approx([2 * 8 / (9 + 8), 1.0, 0.0])
    assert threshold_dice(prob, ref, thresholds=[0.5], min_voxels=2) == [1.0]


class _Prob(torch.nn.Module):
    """A 'network' whose lesion logit is the input's first channel: softmax([0, x]) = sigmoid(x)."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.cat([torch.zeros_like(x[:, :1]), x[:, :1]], dim=1) + 0 * self.dummy


def test_tune_lesion_threshold_picks_the_best_mean_dice_and_stores_it(tmp_path):
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(3):
        ref = np.zeros((1, 12, 12, 12), np.float32)
        ref[0, 3:7, 3:7, 3:7] = 1
        # lesion probability 0.8 inside, 0.62 on a shell around it, low elsewhere: best cut is in (0.62, 0.8]
        p = np.full(ref.shape, 0.05)
        p[0, 2:8, 2:8, 2:8] = 0.62
        p[ref > 0] = 0.8
        p = np.clip(p + rng.normal(0, 0.005, p.shape), 0.01, 0.99)
        logit = np.log(p / (1 - p)).astype(np.float32)
        cases.append({"image": torch.from_numpy(logit), "label": MetaTensor(torch.from_numpy(ref))})
    net = _Prob()
    ckpt = tmp_path / "models"
    ckpt.mkdir()
    torch.save(net.state_dict(), ckpt / "model.pt")
    out = tmp_path / "models" / "threshold.json"
    best = tune_lesion_threshold(net, cases, lambda x, n: n(x), ckpt, out, min_lesion_mm3=0)
    assert 0.62 < best <= 0.8
    stored = json.loads(out.read_text())
    assert stored["threshold"] == best == load_threshold(out) and stored["cases"] == 3
    assert set(stored["mean_dice"]) == {f"{t:g}" for t in DEFAULT_THRESHOLDS}
    assert stored["mean_dice"][f"{best:g}"] == pytest.approx(1.0, abs=1e-6)
    assert stored["mean_dice"]["0.5"] < 0.5  # the shell is included at 0.5
    assert (
        tune_lesion_threshold(net, cases, lambda x, n: n(x), ckpt, tmp_path / "x.json", enabled=False) is None
    )
    assert not (tmp_path / "x.json").exists()


def test_tune_lesion_threshold_ignores_the_ignore_label(tmp_path):
    """A shell labelled 2 ("other pathology" in the WMH challenge) counts neither way: with it ignored,
    every cut between the background and the lesion is perfect and the tie goes to 0.5."""
    ref = np.zeros((1, 12, 12, 12), np.float32)
    ref[0, 2:8, 2:8, 2:8] = 2
    ref[0, 3:7, 3:7, 3:7] = 1
    p = np.full(ref.shape, 0.05)
    p[ref == 2] = 0.62
    p[ref == 1] = 0.8
    logit = np.log(p / (1 - p)).astype(np.float32)
    cases = [{"image": torch.from_numpy(logit), "label": MetaTensor(torch.from_numpy(ref))}]
    net = _Prob()
    ckpt = tmp_path / "models"
    ckpt.mkdir()
    torch.save(net.state_dict(), ckpt / "model.pt")
    infer = lambda x, n: n(x)  # noqa: E731
    assert tune_lesion_threshold(net, cases, infer, ckpt, tmp_path / "a.json", ignore_label=2) == 0.5
    assert 0.62 < tune_lesion_threshold(net, cases, infer, ckpt, tmp_path / "b.json") <= 0.8


def test_load_threshold_of_a_fold_ensemble_is_the_folds_mean(tmp_path):
    for k, t in enumerate((0.55, 0.7, 0.6)):
        (tmp_path / f"fold_{k}").mkdir()
        (tmp_path / f"fold_{k}" / "threshold.json").write_text(json.dumps({"threshold": t}))
    assert load_threshold(tmp_path / "threshold.json") == pytest.approx(0.6167, abs=1e-4)
    (tmp_path / "threshold.json").write_text(json.dumps({"threshold": 0.4}))  # a bundle's own file wins
    assert load_threshold(tmp_path / "threshold.json") == 0.4
    (tmp_path / "fold_1" / "threshold.json").write_text("{")
    (tmp_path / "threshold.json").unlink()
    with pytest.raises(ValueError, match="fold_1"):
        load_threshold(tmp_path / "threshold.json")
