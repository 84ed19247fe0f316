"""Pure tensor functions: Farneback flow, MDMO, ROI pooling, warps."""
