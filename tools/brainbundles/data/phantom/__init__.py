"""Synthetic, skull-stripped brain MRI phantoms, deterministic per seed.

:func:`make_phantom` renders one case: a 4-class tissue label map (0 background, 1 CSF, 2 GM, 3 WM) and
any of the contrasts in :data:`CONTRASTS`; with ``tumour=True`` also a brain tumour (BraTS-like) and its
label map, with ``wmh=True`` white-matter hyperintensities (WMH challenge-like) and theirs, with ``ms=True``
multiple-sclerosis lesions (MSSEG-like) and their mask.
:func:`write_phantom_dataset` writes a whole data set on disk in the layout of a real one (``"tissue"``:
IBSR18; ``"tumour"``: BraTS 2018-2021; ``"wmh"``: the MICCAI 2017 WMH challenge; ``"ms"``: the MICCAI 2016
MSSEG challenge), with a manifest and a MONAI (Decathlon-style) datalist.

The package holds one module a job: :mod:`~brainbundles.data.phantom.anatomy` (the healthy brain),
:mod:`~brainbundles.data.phantom.tumour`, :mod:`~brainbundles.data.phantom.wmh` and
:mod:`~brainbundles.data.phantom.ms` (the lesions), :mod:`~brainbundles.data.phantom.render` (the contrasts'
intensities), :mod:`~brainbundles.data.phantom.make` (:class:`Phantom` and :func:`make_phantom`: the checks
and the geometry of a case) and :mod:`~brainbundles.data.phantom.dataset` (:func:`write_phantom_dataset`);
:mod:`~brainbundles.data.phantom.grid` and :mod:`~brainbundles.data.phantom.tissue` hold what they share.
Each module's docstring describes its part.

Randomness comes only from ``numpy.random.default_rng`` seeded with ``[seed, stream]`` (one stream for the
anatomy, one per contrast for its intensities and one for its noise; with a tumour, WMH or MS lesions, one
for their geometry and one per contrast for their intensities), so a contrast renders the same whatever
other contrasts are asked for, and the lesion options leave the healthy anatomy and its intensities as they
are.
"""

from brainbundles.data.labels import PHANTOM_LABELS
from brainbundles.data.phantom.dataset import PHANTOM_TASKS, write_phantom_dataset
from brainbundles.data.phantom.make import Phantom, make_phantom
from brainbundles.data.phantom.render import CONTRASTS

__all__ = [
    "CONTRASTS",
    "PHANTOM_LABELS",
    "PHANTOM_TASKS",
    "Phantom",
    "make_phantom",
    "write_phantom_dataset",
]
