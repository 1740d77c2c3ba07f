"""Writing results in the input scan's native space, whole or not at all.

A segmentation is written with exactly the shape, affine and orientation of the scan it was computed
from (the header of the reference scan is reused), through a temporary file in the output folder that
is renamed into place only once complete, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.transforms import MapTransform
from scipy import ndimage

from brainbundles.bundle.weights import find_weights, fold_weights
from brainbundles.errors import InputError
from brainbundles.fileio import atomic_write, save_like, sha256_file, write_json_atomic
from brainbundles.visualize import save_overlay_png

logger = logging.getLogger("brainbundles")

__all__ = [
    "RUN_RECORD",
    "case_complete",
    "pending_cases",
    "label_lesion_counts",
    "label_volumes_ml",
    "SaveSegmentationd",
    "collect_volumes",
]


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
        written: list[Path] = []
        try:
            self._write(d, reference, case, written)
        except BaseException as e:  # no half-written case: what this call wrote goes
            for path in written:
                path.unlink(missing_ok=True)
            e.add_note(f"{reference}: writing the results of case {case} failed; its outputs were removed")
            raise
        return d

    def _write(self, d: dict, reference: str, case: str, written: list[Path]) -> None:
        ref = nib.load(reference)
        outside = None
        if self.background_outside_input or self.write_png:  # the scan's voxels, read once
            values = np.asanyarray(ref.dataobj)
            ref = nib.Nifti1Image(values, ref.affine)  # in memory: the overlay reads no file again
        if self.background_outside_input:  # voxels where the scan is zero (outside a skull-stripped brain)
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
            written.append(seg_path)
            d[f"{key}_path"] = str(seg_path)
            volumes = label_volumes_ml(labels, ref.affine, self.label_names)
            record: dict = {}
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
            if self.write_png:
                png = save_overlay_png(
                    ref,
                    nib.Nifti1Image(labels, ref.affine),
                    self.output_dir / f"{case}_overlay.png",
                    label_names=self.label_names,
                    volumes_ml=volumes,
                    title=Path(reference).name,
                )
                written.append(png)
                if self.write_volumes:
                    record["overlay"] = str(png)
            if self.write_volumes:  # written last: the record marks the case complete (case_complete)
                written.append(write_json_atomic(record, self.output_dir / f"{case}_volumes.json"))


def case_complete(output_dir: str | os.PathLike, case: str, reference: str | os.PathLike) -> bool:
    """Whether ``case`` was already written to ``output_dir`` from the scan ``reference``: its record
    ``<case>_volumes.json`` (written after the label map and the overlay) names that scan, and every
    file the record lists exists."""
    try:
        record = json.loads((Path(output_dir) / f"{case}_volumes.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("image") != str(reference):
        return False
    return all(Path(str(record[k])).is_file() for k in ("segmentation", "overlay") if record.get(k))


#: written into an inference output folder: which weights its outputs came from
RUN_RECORD = "brainbundles_run.json"


def _weights_id(ckpt_dir: str | os.PathLike) -> str | None:
    """sha256 over the sha256 of the weights inference loads from ``ckpt_dir`` (every fold model);
    None without weights (loading them reports that)."""
    try:
        files = fold_weights(ckpt_dir) or [find_weights(ckpt_dir, folds=True)]
    except FileNotFoundError:
        return None
    digest = hashlib.sha256()
    for f in files:
        digest.update(sha256_file(f).encode())
    return digest.hexdigest()


def pending_cases(
    items: list[dict],
    output_dir: str | os.PathLike,
    resume: bool = True,
    ckpt_dir: str | os.PathLike | None = None,
) -> list[dict]:
    """The cases of an inference run still to compute. Temporary files that a killed run left in
    ``output_dir`` (``.<name>.part-*``) are removed first. With ``resume``, cases whose outputs are
    complete (:func:`case_complete`) are skipped, so a rerun after an interruption writes only the
    missing ones; but when the weights in ``ckpt_dir`` differ from those that wrote the folder
    (:data:`RUN_RECORD`), every case is computed again. ``resume=False`` (``--resume false``)
    recomputes all, e.g. after changing inference settings such as test-time augmentation."""
    if isinstance(resume, str):  # from a command line: --resume false
        flags = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if resume.strip().lower() not in flags:
            raise InputError(f"resume: expected true or false, got {resume!r}")
        resume = flags[resume.strip().lower()]
    out = Path(output_dir)
    if out.is_dir():
        for stale in out.glob(".*.part-*"):
            stale.unlink(missing_ok=True)
    weights = _weights_id(ckpt_dir) if ckpt_dir is not None else None
    try:
        previous = json.loads((out / RUN_RECORD).read_text()).get("weights_sha256")
    except (OSError, ValueError, AttributeError):
        previous = None
    same_model = previous == weights
    if items:
        write_json_atomic({"weights_sha256": weights}, out / RUN_RECORD)
    if not resume or not same_model:
        return list(items)
    todo = [it for it in items if not case_complete(out, it["case"], it["reference"])]
    if len(todo) < len(items):
        logger.info(
            "%d of %d cases already written in %s by the same weights: skipped (--resume false "
            "recomputes them)",
            len(items) - len(todo),
            len(items),
            out,
        )
    return todo


def collect_volumes(
    output_dir: str | os.PathLike, cases: Sequence[str] | None = None, out_name: str = "volumes.csv"
) -> Path | None:
    """Gather the ``<case>_volumes.json`` of ``cases`` (default: every one in ``output_dir``) that
    exist into one CSV, one row per case."""
    output_dir = Path(output_dir)
    files = (
        sorted(output_dir.glob("*_volumes.json"))
        if cases is None
        else [output_dir / f"{c}_volumes.json" for c in cases]
    )
    records = [json.loads(p.read_text()) for p in files if p.is_file()]
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
