"""Data: dataset layouts -> datalists, input checks, synthetic phantoms."""

from brainbundles.data.cases import IMAGE_SUFFIXES, case_id, inference_items, load_fold
from brainbundles.data.checks import CaseList, check_case
from brainbundles.data.datalist import make_datalist, write_isbi_consensus

__all__ = [
    "IMAGE_SUFFIXES",
    "CaseList",
    "case_id",
    "check_case",
    "inference_items",
    "load_fold",
    "make_datalist",
    "write_isbi_consensus",
]
