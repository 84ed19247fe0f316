"""Pure tensor functions: Farneback flow, MDMO, ROI pooling, warps."""
from sw_mro.ops.farneback import farneback, farneback_pairs  # noqa: F401
from sw_mro.ops.mdmo import mdmo  # noqa: F401
from sw_mro.ops.roi import box_mask, gather_patches, patch_origins  # noqa: F401
from sw_mro.ops.warp import crop_resize, crop_to_frame, frame_to_crop, shift  # noqa: F401
