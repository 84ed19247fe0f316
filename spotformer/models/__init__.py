"""SpotFormer and its variants."""

from spotformer.models.blocks import FACE_PARTS, FLGP, flgp
from spotformer.models.spotformer import (
    APEX_INDEX,
    EXPR_INDEX,
    NONE,
    NUM_OUTPUTS,
    OFFSET,
    ONOFF_SLICE,
    ONSET,
    VARIANTS,
    SpotFormer,
    SpotFormerConfig,
    SpotFormerOutput,
    Variant,
    count_parameters,
)

__all__ = [
    "APEX_INDEX",
    "EXPR_INDEX",
    "FACE_PARTS",
    "FLGP",
    "NONE",
    "NUM_OUTPUTS",
    "OFFSET",
    "ONOFF_SLICE",
    "ONSET",
    "VARIANTS",
    "SpotFormer",
    "SpotFormerConfig",
    "SpotFormerOutput",
    "Variant",
    "count_parameters",
    "flgp",
]
