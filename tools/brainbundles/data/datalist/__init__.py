"""Dataset layouts -> MONAI (Decathlon-style) datalists with reproducible cross-validation folds.

:func:`make_datalist` finds the cases of a dataset laid out on disk in a known way (a *layout*), and returns
(and optionally writes) a datalist; :mod:`~brainbundles.data.datalist.make` describes the datalist and how
its cases are split into testing and cross-validation folds.

Layouts are functions registered in :data:`LAYOUTS` (see :func:`register_layout`): ``ibsr18``, ``folder``,
``brats``, ``brats2023``, ``msd_task01``, ``wmh``, the MS lesion layouts ``isbi2015``, ``msseg2016`` and
``ms_open``, and ``phantom``; adding one is one decorated function returning a :class:`LayoutResult`.
Layouts only read the data set: the ISBI 2015 raters' consensus masks (``rater="consensus"``) are written
beforehand, as a step of its own, by :func:`write_isbi_consensus` (``brainbundles isbi-consensus``).

The package holds one module a job: :mod:`~brainbundles.data.datalist.registry` (:data:`LAYOUTS`,
:func:`register_layout`, :class:`Case`, :class:`LayoutResult` and the helpers the layouts share), the
layouts by task, :mod:`~brainbundles.data.datalist.tissue` (``ibsr18``, ``folder``),
:mod:`~brainbundles.data.datalist.tumour` (``brats``, ``brats2023``, ``msd_task01``),
:mod:`~brainbundles.data.datalist.wmh`, :mod:`~brainbundles.data.datalist.ms` (``isbi2015`` and its
consensus step, ``msseg2016``, ``ms_open``) and :mod:`~brainbundles.data.datalist.phantom`, and
:mod:`~brainbundles.data.datalist.make` (:func:`make_datalist`). Importing the package imports every layout
module, so every layout is registered.
"""

# importing a layout module registers its layouts
from brainbundles.data.datalist import ms, phantom, tissue, tumour, wmh  # noqa: F401
from brainbundles.data.datalist.make import make_datalist
from brainbundles.data.datalist.ms import write_isbi_consensus
from brainbundles.data.datalist.registry import LAYOUTS, Case, LayoutResult, register_layout
from brainbundles.data.datalist.tissue import IBSR_REFERENCE_VALIDATION

__all__ = [
    "IBSR_REFERENCE_VALIDATION",
    "LAYOUTS",
    "Case",
    "LayoutResult",
    "make_datalist",
    "register_layout",
    "write_isbi_consensus",
]
