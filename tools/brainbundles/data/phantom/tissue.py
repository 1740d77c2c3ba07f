"""The phantom's internal tissue classes (the values of its tissue map) and the label each maps to."""

from __future__ import annotations

import numpy as np

# internal tissue classes (values of the tissue map); each maps to a label value. The tumour classes only
# appear with ``tumour=True``: :attr:`Phantom.label` is taken before they are added (the healthy anatomy)
_BG, _CSF, _GM, _WM, _DGM, _CHOROID, _VESSEL, _NEC, _EDEMA, _ENH, _WMH, _LACUNE, _GLIOSIS, _MS = range(14)
_TISSUE_LABEL = np.array([0, 1, 2, 3, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0], dtype=np.uint8)
#: tumour classes -> :attr:`Phantom.tumour` values (the internal numbering of ``brainbundles.data.labels``:
#: 1 necrosis / non-enhancing core, 2 edema, 3 enhancing)
_TUMOUR_LABEL = np.array([0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 0, 0, 0, 0], dtype=np.uint8)
#: white-matter lesion classes -> :attr:`Phantom.wmh` values (the WMH challenge's: 1 WMH, 2 other pathology)
_WMH_LABEL = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 0], dtype=np.uint8)
#: multiple-sclerosis lesion class -> :attr:`Phantom.ms` values (MSSEG's consensus: 1 lesion)
_MS_LABEL = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], dtype=np.uint8)
