"""Multiple sclerosis lesion layouts: ``isbi2015`` (and :func:`write_isbi_consensus`, the step that writes
its raters' consensus masks), ``msseg2016`` and ``ms_open``; channels FLAIR, T1 (required), T2, PD, T1Gd."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

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
from brainbundles.data.labels import MS_CHANNELS, MS_LABELS, MS_REQUIRED_CHANNELS
from brainbundles.fileio import atomic_write

__all__ = ["write_isbi_consensus"]


def _ms_case(
    layout: str, cid: str, found: Mapping[str, Path], label: Path | None, folder: Path, expect: str
) -> Case:
    """A case from its ``{channel: file}``: FLAIR and T1 required (a ValueError names ``folder`` and the
    files ``expect``-ed), the files in :data:`MS_CHANNELS` order, and ``channels`` set when some are
    missing."""
    missing = [c for c in MS_REQUIRED_CHANNELS if c not in found]
    if missing:
        raise ValueError(
            f"{layout} layout: case {cid} in folder {folder} has no {' and no '.join(missing)} image "
            f"({expect}); FLAIR and T1 are required in every case"
        )
    names = [c for c in MS_CHANNELS if c in found]
    return Case(
        cid, [found[c] for c in names], label, channels=None if len(names) == len(MS_CHANNELS) else names
    )


#: ISBI 2015 file-name sequences -> channels
_ISBI_SEQUENCES = {"flair": "FLAIR", "mprage": "T1", "t2": "T2", "pd": "PD"}
_ISBI_FILE = re.compile(r"(?P<tp>.+)_(?P<seq>flair|mprage|t2|pd)_pp\.nii(?:\.gz)?", re.IGNORECASE)
_ISBI_RATERS = ("mask1", "mask2", "consensus")


def _isbi_images(folder: Path) -> dict[str, dict[str, Path]]:
    """``{time point: {channel: file}}`` of the ``<tp>_<seq>_pp.nii[.gz]`` files in ``folder``; one
    sequence in two files (``.nii`` and ``.nii.gz``) is an error."""
    out: dict[str, dict[str, Path]] = {}
    if not folder.is_dir():
        return out
    for f in sorted(folder.iterdir()):
        m = _ISBI_FILE.fullmatch(f.name)
        if m is None or not f.is_file():
            continue
        channel = _ISBI_SEQUENCES[m["seq"].lower()]
        slot = out.setdefault(m["tp"], {})
        if channel in slot:
            raise ValueError(
                f"isbi2015 layout: time point {m['tp']} has {channel} twice: {slot[channel]} and {f}"
            )
        slot[channel] = f
    return out


def _isbi_time_points(root: Path) -> Iterator[tuple[Path, str, dict[str, Path]]]:
    """``(subject folder, time point, {channel: file})`` of every ISBI time point under ``root``: subjects
    (folders whose ``preprocessed/`` holds ``<tp>_<seq>_pp`` files, at any depth) sorted, then time points."""
    for d in _case_dirs(root, lambda d: bool(_isbi_images(d / "preprocessed"))):
        for tp, found in sorted(_isbi_images(d / "preprocessed").items()):
            yield d, tp, found


def _isbi_masks(masks: Path, tp: str, wanted: Sequence[str], who: str) -> dict[str, Path] | None:
    """The ``wanted`` raters' masks ``<masks>/<tp>_<rater>.nii[.gz]`` of a time point, or None when it has
    neither rater's mask (a test time point); a ValueError starting with ``who`` names a wanted mask that is
    missing while the other rater's exists."""
    mask = {r: _first_existing([masks / f"{tp}_{r}{ext}" for ext in NIFTI_EXTS]) for r in ("mask1", "mask2")}
    if all(m is None for m in mask.values()):
        return None
    found = {}
    for r in wanted:
        m = mask[r]
        if m is None:
            other = mask["mask2" if r == "mask1" else "mask1"]
            raise ValueError(
                f"{who} needs {masks / f'{tp}_{r}.nii'}[.gz], which is missing (while {other} exists)"
            )
        found[r] = m
    return found


def _isbi_consensus(mask1: Path, mask2: Path, out: Path) -> Path:
    """Write ``out``: the voxels both raters marked (``mask1 > 0`` and ``mask2 > 0``), uint8 0/1, on
    ``mask1``'s grid and with its header. Written atomically (a temporary file in the same folder, then
    renamed)."""
    a, b = nib.load(str(mask1)), nib.load(str(mask2))
    if a.shape != b.shape or not np.allclose(a.affine, b.affine, atol=1e-3):
        raise ValueError(
            f"isbi2015 consensus: {mask1} and {mask2} are not on the same voxel grid (shapes {a.shape} and "
            f"{b.shape}); cannot make their consensus"
        )
    data = ((np.asanyarray(a.dataobj) > 0) & (np.asanyarray(b.dataobj) > 0)).astype(np.uint8)
    header = a.header.copy()
    header.set_data_dtype(np.uint8)
    header["cal_min"], header["cal_max"] = 0, 1
    img = nib.Nifti1Image(data, a.affine, header)
    try:
        atomic_write(out, lambda tmp: nib.save(img, tmp))
    except OSError as e:
        raise ValueError(f"isbi2015 consensus: cannot write the consensus mask {out}: {e}") from e
    return out


def write_isbi_consensus(root: str | Path) -> list[Path]:
    """Write the raters' consensus masks of the ISBI 2015 data set under ``root`` (the ``isbi2015`` layout).

    For every time point with both raters' masks, ``<subject>/masks/<tp>_consensus.nii.gz``: the voxels
    **both** raters marked (the intersection of ``mask1 > 0`` and ``mask2 > 0``, not the union), uint8 0/1,
    with mask1's affine and header; each written atomically (a temporary file in the same folder, then
    renamed), replacing an existing one. Time points with neither mask (the test release) are skipped.
    ``make_datalist("isbi2015", root, rater="consensus")`` lists these files and does not write them; the
    command line's ``brainbundles isbi-consensus -i ROOT`` calls this.

    Returns:
        the consensus masks written, in subject and time point order.

    Raises:
        ValueError: ``root`` is not a folder, no time point under it has the raters' masks, a time point
            has one rater's mask but not the other's (the missing file named; nothing is written then),
            the two masks are not on one voxel grid, or a mask cannot be written.
    """
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise ValueError(f"isbi2015 consensus: root {root} does not exist or is not a folder")
    todo = []
    for d, tp, _found in _isbi_time_points(root):
        mask = _isbi_masks(d / "masks", tp, ("mask1", "mask2"), f"isbi2015 consensus of time point {tp}")
        if mask is not None:
            todo.append((mask["mask1"], mask["mask2"], d / "masks" / f"{tp}_consensus.nii.gz"))
    if not todo:
        raise ValueError(
            "isbi2015 consensus: no time point with the raters' masks: searched for folders <subject>/"
            "preprocessed/<tp>_flair_pp.nii with <subject>/masks/<tp>_mask1.nii and <tp>_mask2.nii (.nii or "
            f".nii.gz), at any depth, under root {root}"
        )
    return [_isbi_consensus(mask1, mask2, out) for mask1, mask2, out in todo]


@register_layout("isbi2015")
def _layout_isbi2015(root: Path, channels: Sequence[str] | None = None, rater: str = "mask1") -> LayoutResult:
    """ISBI 2015 longitudinal MS lesion segmentation challenge (Carass et al., NeuroImage 2017).

    ``<root>/training0N/preprocessed/training0N_0M_{flair,mprage,t2,pd}_pp.nii[.gz]`` with the two raters'
    masks ``<root>/training0N/masks/training0N_0M_mask1.nii[.gz]`` and ``_mask2``; the test release has
    ``testNN/preprocessed/testNN_0M_*_pp.nii`` and no masks. Any folder, at any depth, whose
    ``preprocessed/`` holds such files is a subject; each time point is a case, its id the files' prefix
    (``training01_01``, ``test03_02``). ``mprage`` is channel T1; FLAIR and T1 are required, T2 and PD
    optional (ISBI has no T1Gd, so every item names its channels). The ``orig/`` folder is ignored.

    Option ``rater``: ``"mask1"`` (default) or ``"mask2"``, that rater's mask; or ``"consensus"``, the voxels
    **both** raters marked, ``masks/<tp>_consensus.nii[.gz]``, which :func:`write_isbi_consensus`
    (``brainbundles isbi-consensus -i ROOT``) writes beforehand: listing writes nothing, and a labelled time
    point without its consensus mask is an error naming the file and that command. A time point with
    neither rater's mask has no label (it goes to "testing"); one with only the other rater's mask is an
    error naming the missing file. Labels: 1 lesion.
    """
    channels = _check_channels(channels, list(MS_CHANNELS), "isbi2015")
    if rater not in _ISBI_RATERS:
        raise ValueError(f"isbi2015 layout: rater={rater!r}, expected one of {list(_ISBI_RATERS)}")
    wanted = ("mask1", "mask2") if rater == "consensus" else (rater,)
    cases: list[Case] = []
    for d, tp, found in _isbi_time_points(root):
        pre, masks = d / "preprocessed", d / "masks"
        case = _ms_case("isbi2015", tp, found, None, pre, f"{tp}_flair_pp.nii[.gz], {tp}_mprage_pp.nii[.gz]")
        mask = _isbi_masks(masks, tp, wanted, f"isbi2015 layout: rater={rater!r}")
        if mask is not None and rater == "consensus":
            case.label = _first_existing([masks / f"{tp}_consensus{ext}" for ext in NIFTI_EXTS])
            if case.label is None:
                raise ValueError(
                    f"isbi2015 layout: rater='consensus' needs {masks / f'{tp}_consensus.nii.gz'}, which is "
                    f"missing: write the consensus masks first with `brainbundles isbi-consensus -i {root}` "
                    "(brainbundles.data.write_isbi_consensus)"
                )
        elif mask is not None:
            case.label = mask[rater]
        cases.append(case)
    if not cases:
        raise ValueError(
            "isbi2015 layout: no cases found: searched for folders <subject>/preprocessed/<tp>_flair_pp.nii "
            f"(or _mprage_pp, _t2_pp, _pd_pp; .nii or .nii.gz), at any depth, under root {root}"
        )
    return LayoutResult(cases=cases, channels=channels, name="ISBI2015", labels=dict(MS_LABELS))


#: MSSEG 2016 file-name sequences (``<NAME>_preprocessed.nii.gz``) -> channels
_MSSEG_SEQUENCES = {"FLAIR": "FLAIR", "T1": "T1", "T2": "T2", "DP": "PD", "GADO": "T1Gd"}


def _msseg_images(folder: Path) -> dict[str, Path]:
    pre = folder / "Preprocessed_Data"
    found = {}
    for name, channel in _MSSEG_SEQUENCES.items():
        f = _first_existing([pre / f"{name}_preprocessed{ext}" for ext in NIFTI_EXTS])
        if f is not None:
            found[channel] = f
    return found


@register_layout("msseg2016")
def _layout_msseg2016(root: Path, channels: Sequence[str] | None = None) -> LayoutResult:
    """MICCAI 2016 MS lesion segmentation challenge, MSSEG (Commowick et al., Sci. Rep. 2018).

    ``<root>/<patient>/Preprocessed_Data/{FLAIR,T1,T2,DP,GADO}_preprocessed.nii[.gz]`` and the label
    ``<root>/<patient>/Masks/Consensus.nii[.gz]`` (the 7 raters' consensus). Any folder, at any depth, whose
    ``Preprocessed_Data/`` holds one of these files is a case; its id is its path under ``root`` joined with
    ``_`` (centres nest patients: ``Center_01/Patient_01`` -> ``Center_01_Patient_01``). ``DP`` is channel PD
    and ``GADO`` T1Gd; FLAIR and T1 are required, T2, PD and T1Gd optional. A case without
    ``Masks/Consensus`` goes to "testing"; the raters' own masks and ``Raw_Data/`` are ignored. Labels: 1
    lesion.
    """
    channels = _check_channels(channels, list(MS_CHANNELS), "msseg2016")
    cases = []
    for d in _case_dirs(root, lambda d: bool(_msseg_images(d))):
        cid = _path_id(d, root)
        label = _first_existing([d / "Masks" / f"Consensus{ext}" for ext in NIFTI_EXTS])
        expect = "FLAIR_preprocessed.nii.gz, T1_preprocessed.nii.gz"
        cases.append(_ms_case("msseg2016", cid, _msseg_images(d), label, d / "Preprocessed_Data", expect))
    if not cases:
        raise ValueError(
            "msseg2016 layout: no cases found: searched for folders <patient>/Preprocessed_Data/"
            f"FLAIR_preprocessed.nii.gz (or T1, T2, DP, GADO; .nii.gz or .nii), at any depth, under root {root}"
        )
    return LayoutResult(cases=cases, channels=channels, name="MSSEG2016", labels=dict(MS_LABELS))


#: open MS data file names -> channels
_OPEN_MS_SEQUENCES = {"FLAIR": "FLAIR", "T1": "T1", "T2": "T2", "PD": "PD", "T1POST": "T1Gd"}


def _open_ms_files(folder: Path) -> tuple[dict[str, Path], Path | None]:
    found = {}
    for name, channel in _OPEN_MS_SEQUENCES.items():
        f = _first_existing([folder / f"{name}{ext}" for ext in NIFTI_EXTS])
        if f is not None:
            found[channel] = f
    return found, _first_existing([folder / f"consensus_gt{ext}" for ext in NIFTI_EXTS])


def _open_ms_is_case(folder: Path) -> bool:
    """FLAIR and T1 both, or one of them with another sequence or the label (a case missing the other:
    an error later, rather than a silently skipped folder)."""
    found, label = _open_ms_files(folder)
    required = [c for c in MS_REQUIRED_CHANNELS if c in found]
    return len(required) == len(MS_REQUIRED_CHANNELS) or (
        bool(required) and (len(found) > 1 or label is not None)
    )


@register_layout("ms_open")
def _layout_ms_open(root: Path, channels: Sequence[str] | None = None) -> LayoutResult:
    """The open MS lesion data of Lesjak et al. (Neuroinformatics 2018), as shared:
    ``<root>/<patient>/{FLAIR,T1,T2,T1POST,PD}.nii[.gz]`` and the label ``<root>/<patient>/consensus_gt.nii[.gz]``
    (the raters' consensus).

    A folder, at any depth, holding ``FLAIR`` and ``T1`` is a case (so is one holding one of them and
    another of these files, which is then an error naming it); its id is its path under ``root`` joined with
    ``_`` (``patient07``). ``T1POST`` is channel T1Gd; FLAIR and T1 are required, T2, PD and T1Gd optional.
    A case without ``consensus_gt`` goes to "testing". Labels: 1 lesion.
    """
    channels = _check_channels(channels, list(MS_CHANNELS), "ms_open")
    cases = []
    for d in _case_dirs(root, _open_ms_is_case):
        found, label = _open_ms_files(d)
        cases.append(_ms_case("ms_open", _path_id(d, root), found, label, d, "FLAIR.nii.gz, T1.nii.gz"))
    if not cases:
        raise ValueError(
            "ms_open layout: no cases found: searched for folders <patient>/ holding FLAIR.nii.gz and T1.nii.gz "
            f"(or .nii), at any depth, under root {root}"
        )
    return LayoutResult(cases=cases, channels=channels, name="OpenMS", labels=dict(MS_LABELS))
