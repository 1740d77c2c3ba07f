"""Input checks: validate a case (image channels and optional label) before anything is computed or written.

A bundle's inference/evaluation run calls :class:`CaseList` on its datalist first: every case is checked
up front, the good ones are processed, each bad one is logged, and :meth:`CaseList.raise_if_invalid`
makes the run exit non-zero at the end, with one line per bad case.

Every problem raises :class:`InputError` whose message starts with the offending file path, followed by
``": "`` and a plain-language description of the problem, e.g.::

    /data/case1_T1.nii.gz: contains 3 NaN voxels (non-finite values are not allowed in an image)

What is checked (in this order, the first failure is reported):

* each image file (one per channel, or one 4D file holding all channels in its 4th axis) and the label
  exist (for an Analyze ``.hdr``/``.img`` pair, both halves) and can be loaded by nibabel;
* each file's header, before any voxel is read: the voxel count is at most :data:`MAX_VOXELS`, the
  voxel data the header describes fits in the file (for gzip, within deflate's largest ratio), the
  affine is finite and invertible, and the voxel sizes stored in the header are finite and positive;
* each image is 3D: a 2D image, a volume with a singleton spatial axis, or a 4D file where a single 3D
  channel is expected is rejected; trailing singleton axes (``(X, Y, Z, 1)``) are fine;
* the number of channels matches ``channels``, and no two channels are the same file (or
  byte-identical files);
* all channels have the same shape and the same affine (``np.allclose(rtol=0, atol=1e-3)``, in mm), or,
  with ``same_grid=False``, each covers most of the first channel's field of view in world space;
* image voxels are finite (no NaN / Inf), no channel is constant (all zero or one value), some voxels
  are positive (MRI magnitude images are not negative) and none exceeds :data:`MAX_ABS_INTENSITY`; the
  values are scanned in slabs, so the check holds no second copy of the image;
* the label has the image's shape and affine, integer values, and (when ``label_values`` is given) only
  the allowed values.

The package holds one module a job: :mod:`~brainbundles.data.checks.files` (a file exists, loads and has a
sane header; its voxels read), :mod:`~brainbundles.data.checks.grids` (shapes, affines, fields of view),
:mod:`~brainbundles.data.checks.values` (image and label values) and :mod:`~brainbundles.data.checks.case`
(:func:`check_case`, which runs them on a datalist item in the order above, and :class:`CaseList`).
"""

from brainbundles.data.checks.case import CaseList, check_case, resolve_item
from brainbundles.data.checks.files import MAX_VOXELS
from brainbundles.data.checks.grids import AFFINE_ATOL_MM, MIN_GRID_OVERLAP
from brainbundles.data.checks.values import MAX_ABS_INTENSITY
from brainbundles.errors import InputError

__all__ = [
    "AFFINE_ATOL_MM",
    "MAX_ABS_INTENSITY",
    "MAX_VOXELS",
    "MIN_GRID_OVERLAP",
    "CaseList",
    "InputError",
    "check_case",
    "resolve_item",
]
