"""Every numeric tolerance of the test suite, in one table.

Each entry says what it bounds and why that figure. Tests import from here; an override
in a test carries a comment saying why.
"""

from __future__ import annotations

TOL: dict[str, float] = {
    # Farneback torch path vs cv2.calcOpticalFlowFarneback (issue 4 targets), px,
    # over all pixels, borders included.
    "flow_epe_mean": 0.01,
    "flow_epe_p99": 0.05,
    # cupy kernels vs torch path on the same GPU (issue 4), mean EPE in px.
    "flow_cupy_vs_torch_mean": 1e-3,
}
# Same pair solved alone, in a batch, or through farneback_pairs (issue 4), max |diff| px.
# Only the order of float32 operations may change (batch and chunk sizes of the GEMMs).
TOL["flow_batch_vs_single"] = 1e-4
