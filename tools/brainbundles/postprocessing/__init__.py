"""Post-processing of segmentations: connected components, small-lesion removal, tumour clean-up."""

from brainbundles.postprocessing.components import (
    RemoveSmallLesionsd,
    TumourPostprocessd,
    remove_small_components,
    voxel_volume_mm3,
)

__all__ = ["RemoveSmallLesionsd", "TumourPostprocessd", "remove_small_components", "voxel_volume_mm3"]
