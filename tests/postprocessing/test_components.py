"""Connected-component clean-up of tumour regions, with sizes in mm³."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from brainbundles.postprocessing import TumourPostprocessd, remove_small_components, voxel_volume_mm3


def test_remove_small_components_uses_26_connectivity():
    m = np.zeros((10, 10, 10), bool)
    m[1:4, 1:4, 1:4] = True  # 27 voxels
    m[6, 6, 6] = m[7, 7, 7] = True  # 2 voxels touching by a corner: one 26-connected component
    out = remove_small_components(m, 3)
    assert out.sum() == 27
    assert remove_small_components(m, 2).sum() == 29
    assert remove_small_components(m, 28).sum() == 0
    assert remove_small_components(m, 0).sum() == 29


def _regions(shape=(20, 20, 20)) -> np.ndarray:
    r = np.zeros((3, *shape), np.float32)
    r[0, 2:12, 2:12, 2:12] = 1  # WT 1000 voxels
    r[1, 4:10, 4:10, 4:10] = 1  # TC 216
    r[2, 4:6, 4:6, 4:6] = 1  # ET 8
    r[0, 16, 16, 16] = 1  # a 1-voxel WT speck
    return r


def test_tumour_postprocess_thresholds_in_mm3():
    t = TumourPostprocessd("pred", min_component_mm3=(5, 5, 5), min_enhancing_mm3=50)
    out = t({"pred": torch.as_tensor(_regions())})["pred"].numpy()  # 1 mm³ voxels
    assert out[0].sum() == 1000  # speck removed
    assert out[2].sum() == 0 and out[1].sum() == 216  # ET of 8 mm³ < 50 mm³ became core (it was in TC)
    # the same voxels at 2 mm: the speck is 8 mm³ (kept), ET 64 mm³ (kept)
    pred = MetaTensor(torch.as_tensor(_regions()), affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    out2 = t({"pred": pred})["pred"]
    assert isinstance(out2, MetaTensor) and voxel_volume_mm3(out2.affine) == pytest.approx(8.0)
    assert float(out2[0].sum()) == 1001 and float(out2[2].sum()) == 8


def test_tumour_postprocess_bad_args():
    with pytest.raises(ValueError, match="min_component_mm3"):
        TumourPostprocessd("pred", min_component_mm3=(1, 2))
    with pytest.raises(ValueError, match="min_enhancing_mm3"):
        TumourPostprocessd("pred", min_enhancing_mm3=-1)
    with pytest.raises(ValueError, match="3 region channels"):
        TumourPostprocessd("pred")({"pred": torch.zeros(2, 4, 4, 4)})


def test_remove_small_components_in_a_box_equals_labelling_the_whole_volume():
    """Labelling only the mask's bounding box keeps exactly the components a whole-volume labelling
    keeps, wherever the mask lies (touching the volume's faces included)."""
    from scipy import ndimage

    from brainbundles.postprocessing.components import bounding_box

    rng = np.random.default_rng(0)
    for _ in range(30):
        m = np.zeros((30, 34, 26), bool)
        size = rng.integers(1, 20, 3)
        at = [rng.integers(0, s - n + 1) for s, n in zip(m.shape, size, strict=True)]
        m[tuple(slice(a, a + n) for a, n in zip(at, size, strict=True))] = rng.random(size) < rng.random()
        m[0, 0, 0] |= rng.random() < 0.3  # sometimes a speck in a corner
        if m.any():
            box = bounding_box(m)
            assert m[box].sum() == m.sum()  # holds every true voxel
            for axis in range(3):  # and is the smallest such box: each face touches the mask
                along = m[box].any(axis=tuple(j for j in range(3) if j != axis))
                assert along[0] and along[-1]
        for min_voxels in (2, 5, 30):
            labels, n = ndimage.label(m, structure=np.ones((3, 3, 3), bool))
            sizes = np.bincount(labels.ravel(), minlength=n + 1)
            keep = sizes >= min_voxels
            keep[0] = False
            np.testing.assert_array_equal(remove_small_components(m, min_voxels), keep[labels])
