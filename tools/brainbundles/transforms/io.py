"""Writing results in the input scan's native space, whole or not at all.

A segmentation is written with exactly the shape, affine and orientation of the scan it was computed
from (the header of the reference scan is reused), through a temporary file in the output folder that
is renamed into place only once complete, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Hashable, Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.transforms import MapTransform
from scipy import ndimage

from brainbundles.fileio import atomic_write, write_json_atomic

__all__ = [
    "save_like",
    "label_lesion_counts",
    "label_volumes_ml",
    "SaveSegmentationd",
    "collect_volumes",
]


def save_like(
    array: np.ndarray, reference: str | os.PathLike, path: str | os.PathLike, dtype=np.uint8
) -> Path:
    """Write ``array`` as NIfTI at ``path`` on the grid of ``reference`` (same shape, affine, qform/sform).

    Raises ``ValueError`` naming the reference when the array's shape is not the reference's.
    """
    ref = nib.load(str(reference))
    shape = tuple(ref.shape[:3])
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if tuple(array.shape) != shape:
        raise ValueError(
            f"{reference}: result shape {tuple(array.shape)} differs from the scan's shape {shape}"
        )
    data = np.ascontiguousarray(array.astype(dtype))
    # a 3D scan stored as 4D with a trailing axis of 1 (IBSR18): the output keeps that exact shape
    trailing_one = len(ref.shape) == 4 and ref.shape[3] == 1
    if trailing_one:
        data = data[..., None]
    if isinstance(ref, nib.Nifti1Pair) and (len(ref.shape) == 3 or trailing_one):  # NIfTI-1/2, file or pair
        cls = nib.Nifti2Image if isinstance(ref, nib.Nifti2Pair) else nib.Nifti1Image
        img = cls(data, ref.affine, header=ref.header.copy())
        img.set_qform(ref.get_qform(), code=int(ref.header["qform_code"]))
        img.set_sform(ref.get_sform(), code=int(ref.header["sform_code"]))
    else:  # Analyze, or a 4D multi-channel reference: keep the affine
        img = nib.Nifti1Image(data, ref.affine)
        img.set_qform(ref.affine, code=1)
        img.set_sform(ref.affine, code=1)
    img.set_data_dtype(dtype)
    img.header["scl_slope"], img.header["scl_inter"] = 1.0, 0.0
    img.header["cal_min"], img.header["cal_max"] = 0, 0
    return atomic_write(path, lambda tmp: nib.save(img, tmp))


def label_volumes_ml(labels: np.ndarray, affine: np.ndarray, names: Mapping[int, str]) -> dict[str, float]:
    """Volume in mL of each named label (voxel volume from the affine) and their ``total``."""
    voxel_ml = float(abs(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel(), minlength=max(names, default=0) + 1)
    vols = {name: float(counts[int(k)]) * voxel_ml for k, name in sorted(names.items()) if int(k) != 0}
    vols["total"] = float(sum(vols.values()))
    return vols


def label_lesion_counts(labels: np.ndarray, names: Mapping[int, str]) -> dict[str, int]:
    """Number of lesions (26-connected components) of each named non-background label."""
    structure = np.ones((3,) * np.asarray(labels).ndim, dtype=bool)
    return {
        name: int(ndimage.label(np.asarray(labels) == int(k), structure=structure)[1])
        for k, name in sorted(names.items())
        if int(k) != 0
    }


class SaveSegmentationd(MapTransform):
    """Write a label map already inverted to the input's native grid, with its volumes and a preview.

    Expects in the data dict: ``keys`` (the label map, 1 x H x W x D or H x W x D, in the scan's
    native voxel order, e.g. after ``Invertd`` and ``AsDiscreted(argmax=True)``), ``reference_key`` (the
    path of the scan whose grid the output takes) and ``case_key`` (the case id). With
    ``background_outside_input`` (the default) every voxel where the reference scan is zero (in every
    volume of a 4D file) is written as background: a skull-stripped scan's outside, where no tissue or
    lesion can be and where interpolation and the network's padding otherwise leave stray labels. Writes
    ``<case>_seg.nii.gz``, ``<case>_volumes.json`` and (optionally) ``<case>_overlay.png``. With
    ``count_lesions`` the JSON also holds the number of lesions (26-connected components) per label, and
    after :class:`brainbundles.postprocessing.UncertaintyMapd` its per-case ``uncertainty`` summary.
    """

    def __init__(
        self,
        keys: str = "pred",
        output_dir: str | os.PathLike = "./output",
        label_names: Mapping[int | str, str] | None = None,
        reference_key: str = "reference",
        case_key: str = "case",
        output_postfix: str = "seg",
        write_volumes: bool = True,
        write_png: bool = True,
        count_lesions: bool = False,
        background_outside_input: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.background_outside_input = background_outside_input
        self.output_dir = Path(output_dir)
        self.label_names = {int(k): str(v) for k, v in (label_names or {}).items()}
        self.reference_key, self.case_key = reference_key, case_key
        self.output_postfix, self.write_volumes, self.write_png = output_postfix, write_volumes, write_png
        self.count_lesions = count_lesions

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        reference, case = str(d[self.reference_key]), str(d[self.case_key])
        ref = nib.load(reference)
        outside = None
        if self.background_outside_input:  # voxels where the scan is zero (outside a skull-stripped brain)
            values = np.asanyarray(ref.dataobj)
            outside = (values == 0).all(axis=3) if values.ndim == 4 else values == 0
        for key in self.key_iterator(d):
            pred = d[key]
            arr = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
            arr = np.rint(arr).astype(np.uint8)
            labels = arr[0] if arr.ndim == 4 else arr
            if outside is not None:
                if labels.shape != outside.shape:
                    raise ValueError(
                        f"{reference}: result shape {labels.shape} differs from the scan's shape {outside.shape}"
                    )
                labels[outside] = 0  # in place: arr holds the same voxels
            seg_path = save_like(arr, reference, self.output_dir / f"{case}_{self.output_postfix}.nii.gz")
            d[f"{key}_path"] = str(seg_path)
            volumes = label_volumes_ml(labels, ref.affine, self.label_names)
            if self.write_volumes:
                record = {
                    "case": case,
                    "image": reference,
                    "segmentation": str(seg_path),
                    "volumes_ml": volumes,
                }
                if self.count_lesions:
                    record["lesions"] = label_lesion_counts(labels, self.label_names)
                if isinstance(d.get("uncertainty"), Mapping):  # from UncertaintyMapd
                    record["uncertainty"] = dict(d["uncertainty"])
                write_json_atomic(record, self.output_dir / f"{case}_volumes.json")
            if self.write_png:
                from brainbundles.visualize import save_overlay_png

                save_overlay_png(
                    ref,
                    nib.Nifti1Image(labels, ref.affine),
                    self.output_dir / f"{case}_overlay.png",
                    label_names=self.label_names,
                    volumes_ml=volumes,
                    title=Path(reference).name,
                )
        return d


def collect_volumes(output_dir: str | os.PathLike, out_name: str = "volumes.csv") -> Path | None:
    """Gather every ``*_volumes.json`` in ``output_dir`` into one CSV (one row per case)."""
    output_dir = Path(output_dir)
    records = [json.loads(p.read_text()) for p in sorted(output_dir.glob("*_volumes.json"))]
    if not records:
        return None
    names = list(records[0]["volumes_ml"])
    counted = list(records[0].get("lesions") or {})
    unsure = [k for k in ("uncertain_ml", "mean_in_segmentation") if any("uncertainty" in r for r in records)]
    rows = [
        [r["case"]]
        + [f"{r['volumes_ml'].get(n, float('nan')):.3f}" for n in names]
        + [str(r.get("lesions", {}).get(n, "")) for n in counted]
        + [str(r.get("uncertainty", {}).get(k, "")) for k in unsure]
        for r in records
    ]

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["case"] + [f"{n}_ml" for n in names] + [f"{n}_lesions" for n in counted] + unsure)
            w.writerows(rows)

    return atomic_write(output_dir / out_name, write)
