"""White-matter hyperintensity layout: ``wmh`` (MICCAI 2017 WMH segmentation challenge)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from brainbundles.data.datalist.registry import (
    NIFTI_EXTS,
    Case,
    LayoutResult,
    _case_dirs,
    _check_channels,
    _first_existing,
    _path_id,
    register_layout,
)
from brainbundles.data.labels import WMH_CHANNELS, WMH_LABELS


def _wmh_case_dirs(root: Path) -> list[Path]:
    """Folders at any depth under ``root`` that hold ``pre/FLAIR.nii[.gz]`` (see :func:`_case_dirs`)."""
    return _case_dirs(
        root, lambda d: _first_existing([d / "pre" / f"FLAIR{ext}" for ext in NIFTI_EXTS]) is not None
    )


@register_layout("wmh")
def _layout_wmh(root: Path, channels: Sequence[str] | None = None) -> LayoutResult:
    """MICCAI 2017 WMH segmentation challenge (Kuijf et al., IEEE TMI 2019).

    ``<root>/<site>/<id>/pre/{FLAIR,T1}.nii[.gz]`` and ``<root>/<site>/<id>/wmh.nii[.gz]`` (sites
    ``Utrecht``, ``Singapore``, ``GE3T``, ...; the 2017 test release nests ``Amsterdam/GE3T/<id>``). Any
    folder, at any depth, holding ``pre/FLAIR`` is a case; its id is its path under ``root`` with ``/``
    replaced by ``_`` (``Utrecht_0``, ``Amsterdam_GE3T_100``). Channels ``FLAIR``, ``T1`` (FLAIR first:
    the challenge's reference grid). A case without ``wmh`` has no label (it goes to "testing"); a case
    without ``pre/T1`` is an error. The ``orig/`` folder and other ``pre/`` files (``3DT1``) are ignored.
    Labels: 1 WMH, 2 other pathology.
    """
    channels = _check_channels(channels, list(WMH_CHANNELS), "wmh")
    cases: list[Case] = []
    for d in _wmh_case_dirs(root):
        cid = _path_id(d, root)
        image = []
        for channel in WMH_CHANNELS:
            f = _first_existing([d / "pre" / f"{channel}{ext}" for ext in NIFTI_EXTS])
            if f is None:
                raise ValueError(
                    f"wmh layout: case folder {d} has pre/FLAIR but no pre/{channel}.nii.gz / .nii"
                )
            image.append(f)
        cases.append(Case(cid, image, _first_existing([d / f"wmh{ext}" for ext in NIFTI_EXTS])))
    if not cases:
        raise ValueError(
            "wmh layout: no cases found: searched for folders <site>/<id>/pre/FLAIR.nii.gz (or .nii), at any "
            f"depth, under root {root}"
        )
    return LayoutResult(cases=cases, channels=channels, name="WMH2017", labels=dict(WMH_LABELS))
