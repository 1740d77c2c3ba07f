"""Channel arrangement, sequence dropout and the label-convention / region transforms."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import NormalizeIntensity

from brainbundles.transforms import (
    ArrangeChannelsd,
    ConvertLabelConventiond,
    LabelToRegionsd,
    NyulStandardize,
    RandDropChannelsd,
    RegionsToLabeld,
    regions_to_label,
)

BRATS = ["T1", "T1c", "T2", "FLAIR"]


def _img(n: int) -> torch.Tensor:
    return torch.stack([torch.full((3, 3, 3), float(i + 1)) for i in range(n)])


def test_arrange_reorders_a_4d_file_and_keeps_meta():
    img = MetaTensor(_img(4), affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    out = ArrangeChannelsd("image", BRATS)({"image": img, "channels": ["FLAIR", "T1", "T1c", "T2"]})
    assert [float(out["image"][i, 0, 0, 0]) for i in range(4)] == [2.0, 3.0, 4.0, 1.0]
    assert isinstance(out["image"], MetaTensor) and float(out["image"].affine[0, 0]) == 2.0
    assert "channels" not in out and out["missing_channels"] == ""


def test_arrange_fills_missing_with_zeros_and_logs(caplog):
    with caplog.at_level(logging.WARNING, logger="brainbundles"):
        out = ArrangeChannelsd("image", BRATS)({"image": _img(2), "channels": ["T1c", "flair"], "case": "c1"})
    assert [float(out["image"][i].abs().sum()) for i in range(4)] == [0.0, 27.0, 0.0, 54.0]
    assert out["missing_channels"] == "T1,T2"
    assert "c1: no T1, T2; filled with zeros" in caplog.text


def test_arrange_without_channels_entry_is_a_no_op_and_checks_counts():
    img = _img(4)
    out = ArrangeChannelsd("image", BRATS)({"image": img})
    assert out["image"] is img and out["missing_channels"] == ""
    with pytest.raises(ValueError, match="the image has 2 channels but 'channels' names 3"):
        ArrangeChannelsd("image", BRATS)({"image": _img(2), "channels": ["T1", "T2", "FLAIR"]})


def test_zero_channel_survives_normalisation_and_nyul(tmp_path):
    img = _img(2)
    img[0] = torch.rand(3, 3, 3) + 1
    img[1] = 0
    out = NormalizeIntensity(nonzero=True, channel_wise=True)(img)
    assert float(out[1].abs().sum()) == 0.0
    from brainbundles.transforms import save_landmarks

    landmarks = save_landmarks({"percentiles": [1, 50, 99], "landmarks": [1, 50, 100]}, tmp_path / "l.json")
    out = NyulStandardize(landmarks)(img)
    assert float(out[1].abs().sum()) == 0.0 and bool((out[0] != 0).all())


def test_rand_drop_channels_keeps_one_and_drops_the_same_channels_everywhere():
    t = RandDropChannelsd(["image", "other"], prob=1.0)
    t.set_random_state(0)
    dropped_counts = set()
    for _ in range(50):
        out = t({"image": _img(4), "other": _img(4)})
        present = [bool(out["image"][i].abs().sum()) for i in range(4)]
        assert any(present) and not all(present)
        assert present == [bool(out["other"][i].abs().sum()) for i in range(4)]
        dropped_counts.add(4 - sum(present))
    assert dropped_counts == {1, 2, 3}
    never = RandDropChannelsd("image", prob=0.0)({"image": _img(4)})
    assert all(bool(never["image"][i].abs().sum()) for i in range(4))
    one = RandDropChannelsd("image", prob=1.0, max_drop=1)
    one.set_random_state(1)
    assert sum(bool(one({"image": _img(4)})["image"][i].abs().sum()) for i in range(4)) == 3


def test_rand_drop_channels_only_drops_sequences_the_case_has():
    """A case lacking two of five sequences (zero-filled) keeps at least one of its three."""
    t = RandDropChannelsd("image", prob=1.0)
    t.set_random_state(0)
    seen = set()
    for _ in range(60):
        img = _img(5)
        img[[1, 3]] = 0
        out = t({"image": img})["image"]
        present = tuple(i for i in range(5) if bool(out[i].abs().sum()))
        assert present and set(present) <= {0, 2, 4}
        seen.add(len(present))
    assert seen == {1, 2}
    lone = _img(3)
    lone[1:] = 0  # one sequence only: nothing to drop
    assert bool(RandDropChannelsd("image", prob=1.0)({"image": lone})["image"][0].abs().sum())


@pytest.mark.parametrize(
    ("convention", "values"),
    [("brats2019", [0, 1, 2, 4]), ("brats2023", [0, 1, 2, 3]), ("msd_task01", [0, 2, 1, 3])],
)
def test_convert_then_regions(convention, values):
    """Every convention gives the same regions: WT = all tumour, TC = necrosis + enhancing, ET."""
    lab = MetaTensor(torch.tensor(values, dtype=torch.float32).reshape(1, 4, 1, 1))
    out = ConvertLabelConventiond("label")({"label": lab, "label_convention": convention})
    assert isinstance(out["label"], MetaTensor) and "label_convention" not in out
    assert out["label"].flatten().tolist() == [0, 1, 2, 3]
    regions = LabelToRegionsd("label")(out)["label"]
    assert regions.shape == (3, 4, 1, 1)
    assert regions[:, :, 0, 0].tolist() == [[0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]]


def test_convert_rejects_values_outside_the_convention():
    with pytest.raises(ValueError, match=r"values \[4\]"):
        ConvertLabelConventiond("label")({"label": torch.tensor([[4.0]]), "label_convention": "brats2023"})


def test_regions_to_label_round_trip_and_output_conventions():
    internal = np.array([[0, 1, 2, 3, 3, 2]], dtype=np.uint8)
    regions = LabelToRegionsd("label")({"label": internal[None]})["label"]
    assert regions_to_label(regions).tolist() == internal.tolist()
    out = RegionsToLabeld("pred", convention="brats2019")({"pred": torch.as_tensor(regions)})["pred"]
    assert out.shape == (1, 1, 6) and out.flatten().tolist() == [0, 1, 2, 4, 4, 2]
    # ET outside TC still counts as enhancing; TC outside WT as core
    odd = np.zeros((3, 1, 2), dtype=np.float32)
    odd[2, 0, 0] = 1
    odd[1, 0, 1] = 1
    assert regions_to_label(odd).tolist() == [[3, 1]]
    with pytest.raises(ValueError, match="unknown 'brats2000'"):
        RegionsToLabeld("pred", convention="brats2000")


@pytest.mark.parametrize("classes", [2, 4, 300])
def test_label_argmax_equals_torch_argmax_with_ties(classes):
    from brainbundles.transforms import LabelArgmaxd, label_argmax

    gen = torch.Generator().manual_seed(classes)
    probs = torch.randint(0, 5, (classes, 9, 7, 5), generator=gen).float()  # many ties
    expected = torch.argmax(probs, dim=0, keepdim=True)
    got = label_argmax(probs)
    assert got.dtype == (torch.uint8 if classes <= 256 else torch.int64)
    assert torch.equal(got.long(), expected)
    meta = MetaTensor(probs.softmax(0), affine=torch.diag(torch.tensor([2.0, 1.5, 1.0, 1.0])))
    out = LabelArgmaxd(keys="pred")({"pred": meta, "other": 1})
    assert isinstance(out["pred"], MetaTensor) and torch.equal(out["pred"].affine, meta.affine)
    assert torch.equal(out["pred"].as_tensor().long(), torch.argmax(meta.as_tensor(), 0, keepdim=True))
    assert out["other"] == 1
