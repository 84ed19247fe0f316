"""Farneback dense optical flow in batched PyTorch, following OpenCV's CPU code.

Our own port of G. Farneback, "Two-frame motion estimation based on polynomial
expansion" (SCIA 2003), written to reproduce ``cv2.calcOpticalFlowFarneback``
(OpenCV 5.0 ``optflowgf.cpp``); ``note N`` refers to SPEC.md section 2, "Farneback
exactness notes". The work is split so that SW-MRO can share the first half:

1. :func:`expand_frames`: per frame and pyramid level, Gaussian smoothing of the
   full-resolution image, a linear resize and the polynomial expansion (5 planes).
2. :func:`solve_pairs`: per pair, coarse to fine, the iterations of update-matrices,
   window blur and flow update.

Speed notes (CPU): every op runs on one chunk of pairs (:data:`CHUNK_PIXELS`) with
buffers reused across chunks; the box window is a strided sum over rows plus a
cumulative sum over columns. float32, except where OpenCV's discontinuous
out-of-bounds rule makes the flow sensitive to 1e-5 px: R1 is sampled in float64, and
the running sums along x are float64 as in OpenCV. The only Python loops run over
levels, iterations and chunks. Measured on CPU this engine is slower than cv2 per
pair (docs/farneback.md); its value is exactness on any torch device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sw_mro.ops._farneback_expand import _filter_cols, _filter_rows, expand_frames
from sw_mro.ops._farneback_kernels import (
    DET_EPS,
    XX,
    XY,
    YY,
    FarnebackParams,
    Y,
    area_matrix,
    border_ramp,
    plan_levels,
    window_kernel,
)

__all__ = ["CHUNK_PIXELS", "expand_frames", "level_start_flow", "resize_area", "solve_pairs"]

#: Pixels (pairs x h x w) per chunk of the iteration loop on CPU: large enough to
#: amortise per-op overhead at coarse levels, small enough to stay in cache at fine ones.
CHUNK_PIXELS = 65536


# --------------------------------------------------------------------------- per pair


def resize_area(flow: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``cv::resize(..., INTER_AREA)`` of (P, 2, H, W) for a downscale: two coverage matrices.

    A non-finite value reaches only the outputs whose areas cover it, as in OpenCV (found
    in a probe: the dense product's 0 x NaN made one NaN of an initial flow every
    output's, so the whole flow came out NaN where cv2's stayed finite around it). The
    same size is a copy."""
    if tuple(flow.shape[-2:]) == (height, width):
        return flow.clone()
    wy = torch.from_numpy(area_matrix(flow.shape[-2], height)).to(flow)
    wx = torch.from_numpy(area_matrix(flow.shape[-1], width)).to(flow)
    finite = torch.isfinite(flow)
    out = torch.einsum("yi,bcij,xj->bcyx", wy, torch.where(finite, flow, 0.0), wx)
    if bool(finite.all()):  # the usual case (a device sync on a GPU, once per call)
        return out
    cy, cx = (wy > 0).to(flow), (wx > 0).to(flow)

    def reached(mask: torch.Tensor) -> torch.Tensor:
        return torch.einsum("yi,bcij,xj->bcyx", cy, mask.to(flow), cx) > 0

    nan, pos, neg = reached(flow.isnan()), reached(flow == torch.inf), reached(flow == -torch.inf)
    out = torch.where(pos, torch.inf, torch.where(neg, -torch.inf, out))
    return torch.where(nan | (pos & neg), torch.nan, out)


# (R0, sampled R1) -> (r2, r3, r4, r6, r5) of OpenCV's update-matrices, in our plane
# order: r2 = (R0 - s) / 2 for the linear planes; (R0 + s) / 2 for yy and xx and
# (R0 + s) / 4 for xy. Scaling by powers of two is exact, so R0 a + s b reproduces
# (R0 -+ s) c bit for bit. Out of bounds R1 is not used: r2 = R0 / 2, yy and xx = R0,
# xy = R0 / 2 (note 5).
_R0_COEF = (0.5, 0.5, 0.5, 0.25, 0.5)
_S_COEF = (-0.5, -0.5, 0.5, 0.25, 0.5)
_R0_ONLY_COEF = (0.5, 0.5, 1.0, 0.5, 1.0)
# The planes of M, in our order: g11, g22, g12, h1, h2 (the two diagonal entries and
# the two right-hand sides are each one channel slice).
_G11, _G22, _G12, _H1, _H2 = range(5)


class _Chunk:
    """Buffers and per-level constants for chunks of up to ``p`` pairs at one level.

    Allocated once per level and reused by every chunk: fresh multi-MB buffers per chunk
    cost page faults that are as slow as the arithmetic.
    """

    def __init__(self, p: int, h: int, w: int, params: FarnebackParams, dev: torch.device) -> None:
        self.p, self.h, self.w, self.params = p, h, w, params
        coef = torch.tensor([_R0_COEF, _S_COEF, _R0_ONLY_COEF], device=dev)[:, :, None, None]
        self.r0_coef, self.s_coef = coef[0], coef[1]
        self.r0_only_ratio = coef[2] / coef[0]  # powers of two: exact
        # R1 is sampled in float64: grid_sample's normalised coordinates cost about
        # 1e-5 px in float32 (note 8), and next to OpenCV's discontinuous in/out-of-bounds
        # rule (note 5) that moved the flow by up to 0.4 px (a flat image edge, test scene
        # carphone/bump-2px at 256 px). In float64 the sample is taken at OpenCV's
        # float32 coordinate to within 1e-12 px.
        self.r1 = torch.empty(p, 5, h, w, device=dev, dtype=torch.float64)
        self.base = torch.empty(p, 5, h, w, device=dev)
        self.r0_only = torch.empty(p, 5, h, w, device=dev)
        self._ref: list[int] | None = None
        self.coords = torch.stack(
            [
                torch.arange(w, device=dev, dtype=torch.float32).expand(h, w),
                torch.arange(h, device=dev, dtype=torch.float32)[:, None].expand(h, w),
            ]
        )  # (2, h, w): x, y
        # In bounds iff 0 <= fx <= w - 1 - ulp and the same for y (floor(fx) <= w - 2):
        # the largest float below w - 1 turns OpenCV's strict bound into a <= test.
        lim = np.nextafter(np.array([w - 1, h - 1], dtype=np.float32), np.float32(0))
        self.limit = torch.from_numpy(lim).to(dev)[:, None, None]
        # grid_sample (align_corners=True) maps -1..1 onto pixel centres 0..size-1.
        scale = [2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)]
        self.gscale = torch.tensor(scale, device=dev, dtype=torch.float64)[:, None, None]
        self.grid = torch.empty(p, 2, h, w, device=dev, dtype=torch.float64)
        self.fxy = torch.empty(p, 2, h, w, device=dev)
        self.margin = torch.empty(p, 2, h, w, device=dev)
        self.inside = torch.empty(p, 1, h, w, device=dev)
        self.r23 = torch.empty(p, 2, h, w, device=dev)
        self.g12 = torch.empty(p, h, w, device=dev)
        self.by = torch.from_numpy(border_ramp(h)).to(dev)
        self.bx = torch.from_numpy(border_ramp(w)).to(dev)
        self.half = k = params.winsize // 2
        self.mpad = torch.empty(p, 5, h + 2 * k, w + 2 * k, device=dev)
        self.m = self.mpad[:, :, k : k + h, k : k + w]
        if params.gaussian:
            self.kernel = window_kernel(params.winsize)[None]
            self.det_eps = DET_EPS
        else:
            # Box sums: a leading zero column lets one subtraction of the cumulative sum
            # give every horizontal window (see blur_and_solve).
            self.vsum = torch.zeros(p, 5, h, w + 2 * k + 1, device=dev)
            # The running sums along x are float64, as OpenCV's: in float32 a prefix sum
            # that crosses textured parts loses the small window sums of flat parts
            # (measured: 5e-4 px mean EPE on one 256 px scene, against 5e-6 px).
            self.csum = torch.empty(p, 5, h, w + 2 * k + 1, device=dev, dtype=torch.float64)
            self.sums = torch.empty(p, 5, h, w, device=dev)
            # note 6: g = sum / k^2 and idet = 1 / (g11 g22 - g12^2 + 1e-3); working on
            # the sums moves the 1e-3 to 1e-3 k^4 (the 1/k^2 cancels in the solution).
            self.det_eps = DET_EPS * float(params.winsize) ** 4
        # The 2x2 solve stays float32 (OpenCV: double); measured, float64 changed nothing.
        self.det = torch.empty(p, 1, h, w, device=dev)
        self.rr = torch.empty(p, 5, h, w, device=dev)
        self.num = torch.empty(p, 2, h, w, device=dev)

    def load(self, r: torch.Tensor, ref: torch.Tensor, tgt: torch.Tensor) -> None:
        """Take the expansions of the chunk's reference and target frames from ``r``."""
        self.r1.copy_(r.index_select(0, tgt))
        refs = ref.tolist()
        if refs != self._ref:  # SW-MRO: consecutive pairs share their reference frame
            torch.index_select(r, 0, ref, out=self.base).mul_(self.r0_coef)
            torch.mul(self.base, self.r0_only_ratio, out=self.r0_only)
            self._ref = refs

    def run(self, flow: torch.Tensor) -> None:
        """All iterations at this level, updating ``flow`` (p, 2, h, w) in place (note 7)."""
        self.update_matrices(flow)
        for i in range(self.params.iterations):
            self.blur_and_solve(flow)
            if i < self.params.iterations - 1:
                self.update_matrices(flow)

    def update_matrices(self, flow: torch.Tensor) -> None:
        """FarnebackUpdateMatrices into the interior of ``self.mpad`` (note 5)."""
        h, w, m = self.h, self.w, self.m
        fxy = torch.add(flow, self.coords, out=self.fxy)
        # inside = 1.0 where min(fx, fy, lim_x - fx, lim_y - fy) >= 0 (float ops only:
        # torch's bool reductions are several times slower here). Signs of float
        # differences are exact, so this is OpenCV's integer test on floor(fx), floor(fy).
        margin = torch.sub(self.limit, fxy, out=self.margin)
        torch.minimum(fxy, margin, out=margin)
        inside = torch.minimum(margin[:, :1], margin[:, 1:], out=self.inside)
        torch.ge(inside, 0, out=inside)
        # The float32 coordinate x + dx (as OpenCV forms it), normalised in float64.
        grid = torch.mul(fxy, self.gscale, out=self.grid).sub_(1.0).permute(0, 2, 3, 1)
        s = F.grid_sample(self.r1, grid, "bilinear", "border", align_corners=True)
        rr = torch.addcmul(self.base, self.rr.copy_(s), self.s_coef, out=self.rr)
        # lerp with a weight of exactly 0 or 1 returns an endpoint exactly.
        rr = torch.lerp(self.r0_only, rr, inside, out=rr)
        dx, dy = flow[:, :1], flow[:, 1:]
        quad_a, quad_b = rr[:, YY : XY + 1], rr[:, XY : XX + 1]  # [yy, xy] and [xy, xx]
        # [r2, r3] += [r4, r6] dy + [r6, r5] dx
        r23 = torch.addcmul(rr[:, Y : Y + 2], quad_a, dy, out=self.r23).addcmul_(quad_b, dx)
        # g11 = r4^2 + r6^2, g22 = r6^2 + r5^2: one 2-plane op on the two slices.
        diag = m[:, _G11 : _G22 + 1]
        torch.mul(quad_a, quad_a, out=diag).addcmul_(quad_b, quad_b)
        torch.add(rr[:, YY], rr[:, XX], out=self.g12)
        torch.mul(self.g12, rr[:, XY], out=m[:, _G12])
        # [h1, h2] = [r4, r6] r2 + [r6, r5] r3
        hs = m[:, _H1 : _H2 + 1]
        torch.mul(quad_a, r23[:, :1], out=hs).addcmul_(quad_b, r23[:, 1:])
        self._border(m, h, w)

    def _border(self, m: torch.Tensor, h: int, w: int) -> None:
        b = 5
        if h >= 2 * b and w >= 2 * b:
            m[:, :, :b].mul_(self.by[:b, None])
            m[:, :, h - b :].mul_(self.by[h - b :, None])
            m[:, :, :, :b].mul_(self.bx[:b])
            m[:, :, :, w - b :].mul_(self.bx[w - b :])
        else:
            m.mul_(self.by[:, None] * self.bx)

    def blur_and_solve(self, flow: torch.Tensor) -> None:
        """Window blur of the 5 planes and the 2x2 solve, into ``flow`` (note 6)."""
        k, h, w = self.half, self.h, self.w
        mp, m = self.mpad, self.m
        if self.params.gaussian:
            (v,) = _filter_rows(m.flatten(0, 1), self.kernel, "replicate")
            s = _filter_cols(v, self.kernel, "replicate")[0].unflatten(0, (-1, 5))
        else:
            if k:  # replicate borders: edge rows, then edge columns (corners included)
                mp[:, :, :k, k : k + w] = m[:, :, :1]
                mp[:, :, k + h :, k : k + w] = m[:, :, h - 1 :]
                mp[:, :, :, :k] = mp[:, :, :, k : k + 1]
                mp[:, :, :, k + w :] = mp[:, :, :, k + w - 1 : k + w]
            vs = self.vsum
            torch.sum(mp.unfold(2, 2 * k + 1, 1), -1, out=vs[..., 1:])
            cs = torch.cumsum(vs, 3, dtype=torch.float64, out=self.csum)
            s = torch.sub(cs[..., 2 * k + 1 :], cs[..., :w], out=self.sums)
        # det = g11 g22 - g12^2 + eps; [dx, dy] = ([g11 h2, g22 h1] - g12 [h1, h2]) / det
        det = torch.mul(s[:, _G11 : _G11 + 1], s[:, _G22 : _G22 + 1], out=self.det)
        det.addcmul_(s[:, _G12 : _G12 + 1], s[:, _G12 : _G12 + 1], value=-1.0).add_(self.det_eps)
        g11, g22, g12, h1, h2 = s.unbind(1)
        nx, ny = self.num[:, 0], self.num[:, 1]
        torch.mul(g11, h2, out=nx).addcmul_(g12, h1, value=-1.0)
        torch.mul(g22, h1, out=ny).addcmul_(g12, h2, value=-1.0)
        torch.div(self.num, det, out=flow)


def level_start_flow(
    flow: torch.Tensor | None,
    level: Any,
    params: Any,
    init_flow: torch.Tensor | None,
    pairs: int,
    device: torch.device,
) -> torch.Tensor:
    """The flow a pyramid level starts from (shared by the torch and CuPy solvers).

    Coarsest level: ``init_flow`` resized with INTER_AREA and scaled to the level, or
    zeros. Finer levels: SPEC note 3, the coarser flow resized linearly, times
    1 / pyr_scale.
    """
    h, w = level.height, level.width
    if flow is None:
        if init_flow is not None:
            return resize_area(init_flow, h, w) * level.scale
        return torch.zeros(pairs, 2, h, w, device=device, dtype=torch.float32)
    flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
    return flow.mul_(1.0 / params.pyr_scale)


def solve_pairs(
    expansions: list[torch.Tensor],
    ref_idx: torch.Tensor,
    tgt_idx: torch.Tensor,
    params: FarnebackParams,
    init_flow: torch.Tensor | None = None,
) -> torch.Tensor:
    """Flows (P, 2, H, W) of pairs (ref_idx[i] -> tgt_idx[i]) of expanded frames."""
    height, width = expansions[0].shape[-2:]
    dev = expansions[0].device
    pairs = ref_idx.numel()
    budget = CHUNK_PIXELS if dev.type == "cpu" else 1 << 62
    flow: torch.Tensor | None = None
    for level in reversed(plan_levels(height, width, params)):
        h, w = level.height, level.width
        flow = level_start_flow(flow, level, params, init_flow, pairs, dev)
        step = min(pairs, max(1, budget // (h * w)))
        chunk = _Chunk(step, h, w, params, dev)
        for start in range(0, pairs, step):
            sl = slice(start, start + step)
            n = len(range(*sl.indices(pairs)))
            if n != chunk.p:  # the last, smaller chunk
                chunk = _Chunk(n, h, w, params, dev)
            chunk.load(expansions[level.k], ref_idx[sl], tgt_idx[sl])
            chunk.run(flow[sl])
    assert flow is not None
    return flow
