"""Per-pair half of Farneback compiled with numba for CPU: fused row passes.

Consumes the per-frame pyramid and polynomial expansion of
:mod:`sw_mro.ops._farneback_expand` (shared between pairs) and computes what
:func:`sw_mro.ops._farneback_torch.solve_pairs` computes, with the same math (``note N``
refers to SPEC.md section 2, "Farneback exactness notes"):

- update-matrices (note 5): the coordinate ``x + dx`` is formed in float32 as OpenCV
  forms it; R1 is sampled bilinearly at the floor coordinate with float32 weights (as
  OpenCV; the torch engine needs float64 only because of ``grid_sample``'s coordinate
  normalisation, note 8); a sample is used only if ``floor(x + dx) <= w - 2`` and
  ``floor(y + dy) <= h - 2`` (NaN-safe); border attenuation {0.14, 0.14, 0.4472,
  0.4472, 0.4472} in x and y; then float32 arithmetic in the torch engine's order;
- window (note 6): box with replicate borders, scale 1 / winsize^2 and +1e-3 on the
  determinant, with float64 running sums (as OpenCV); or the Gaussian window
  (sigma 0.3 winsize/2, float64 sums); the 2x2 solve in float64 (as OpenCV);
- update-matrices once before the first iteration, then after every iteration except
  the last (note 7); coarse to fine, the flow is resized linearly (bit-identical to
  ``cv2.resize(INTER_LINEAR)`` of the 2-channel flow, measured) and multiplied by
  1 / pyr_scale (note 3); an initial flow arrives already area-resized to the coarsest
  level (the torch engine's ``resize_area``).

Layout: one pass per iteration runs down the rows. For output row y it keeps the
vertical window sums of the 5 planes of M in a float64 row buffer (box: a running sum,
add row y + k + 1 and subtract row y - k; Gaussian: a weighted sum), takes the
horizontal window along that row (box: a running sum), solves for the flow of the row
and computes the next iteration's M of the row from it into a second M buffer (the old
one is still needed by the rows below). So an iteration reads M, R0, R1 and writes M
and flow once, and the row buffers stay in L1. Expansions and M are pixel-interleaved
(h, w, 5), so that a bilinear sample of R1 touches 2 cache lines per row.

Speed notes: array indices are cast to unsigned (numba emits negative-index wraparound
code for signed ones), ``math.floor`` is avoided (a libcall here) and the per-pixel work
sits in row functions, not in a per-pixel function that takes arrays (numba then emits
reference-count calls per pixel). No ``fastmath``: it would let LLVM drop the NaN-safe
bounds test and reassociate the float64 running sums.

Parallelism: ``numba.prange`` over chunks of :data:`_CHUNK_PAIRS` pairs; each chunk
allocates its work buffers once.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import prange

from sw_mro._numba import njit
from sw_mro.ops._farneback_kernels import (
    BORDER_WEIGHTS,
    DET_EPS,
    FarnebackParams,
    plan_levels,
    window_kernel,
)

__all__ = ["solve_pairs"]

_P = 5  # planes: Y, X, YY, XY, XX (sw_mro.ops._farneback_kernels)
_BORDER = np.array(BORDER_WEIGHTS, dtype=np.float32)
#: Pairs per ``prange`` iteration; each iteration allocates its work buffers once.
_CHUNK_PAIRS = 4


# --------------------------------------------------------------------------- kernels


@njit(nogil=True)
def _update_row(e0, e1, lo, h, w, y, flow, m, border):
    """FarnebackUpdateMatrices along row y from ``flow`` (2, h, w) flat into m (h, w, 5).

    e0, e1: flat expansions of the reference and target frames; lo: this level's offset.
    """
    f32 = np.float32
    u = np.uint64  # unsigned indices: no negative-index wraparound code per access
    n = h * w
    edge_y = y < 5 or y >= h - 5
    sy = f32(1.0)  # squared border attenuation of M (r2..r6 scale by the weights)
    if y < 5:
        sy *= border[y]
    if y >= h - 5:
        sy *= border[h - y - 1]
    sy = sy * sy
    for x in range(w):
        i0 = lo + (y * w + x) * _P
        a_y = e0[u(i0)]
        a_x = e0[u(i0 + 1)]
        a_yy = e0[u(i0 + 2)]
        a_xy = e0[u(i0 + 3)]
        a_xx = e0[u(i0 + 4)]
        dx = flow[u(y * w + x)]
        dy = flow[u(n + y * w + x)]
        fx = f32(f32(x) + dx)  # OpenCV's float32 coordinate
        fy = f32(f32(y) + dy)
        half = f32(0.5)
        # floor(fx) in [0, w - 2] <=> 0 <= fx < w - 1; comparisons with NaN are false.
        if fx >= 0.0 and fy >= 0.0 and fx < w - 1 and fy < h - 1:
            x1 = int(fx)  # fx >= 0 here, so truncation is floor (math.floor is a libcall)
            y1 = int(fy)
            # float32 bilinear weights at the floor coordinate, as OpenCV computes them
            ax = fx - f32(x1)
            ay = fy - f32(y1)
            w00 = (f32(1.0) - ax) * (f32(1.0) - ay)
            w01 = ax * (f32(1.0) - ay)
            w10 = (f32(1.0) - ax) * ay
            w11 = ax * ay
            j = lo + (y1 * w + x1) * _P
            jw = j + w * _P
            s_y = w00 * e1[u(j)] + w01 * e1[u(j + 5)] + w10 * e1[u(jw)] + w11 * e1[u(jw + 5)]
            s_x = (
                w00 * e1[u(j + 1)] + w01 * e1[u(j + 6)] + w10 * e1[u(jw + 1)] + w11 * e1[u(jw + 6)]
            )
            s_yy = (
                w00 * e1[u(j + 2)] + w01 * e1[u(j + 7)] + w10 * e1[u(jw + 2)] + w11 * e1[u(jw + 7)]
            )
            s_xy = (
                w00 * e1[u(j + 3)] + w01 * e1[u(j + 8)] + w10 * e1[u(jw + 3)] + w11 * e1[u(jw + 8)]
            )
            s_xx = (
                w00 * e1[u(j + 4)] + w01 * e1[u(j + 9)] + w10 * e1[u(jw + 4)] + w11 * e1[u(jw + 9)]
            )
            r_y = (a_y - s_y) * half
            r_x = (a_x - s_x) * half
            r_yy = (a_yy + s_yy) * half
            r_xy = (a_xy + s_xy) * f32(0.25)
            r_xx = (a_xx + s_xx) * half
        else:  # out of bounds: R0 only
            r_y = a_y * half
            r_x = a_x * half
            r_yy = a_yy
            r_xy = a_xy * half
            r_xx = a_xx
        # float32 from here on, one rounding per operation in the torch engine's order
        r_y = r_y + r_yy * dy + r_xy * dx
        r_x = r_x + r_xy * dy + r_xx * dx
        g11 = r_yy * r_yy + r_xy * r_xy
        g22 = r_xy * r_xy + r_xx * r_xx
        g12 = (r_yy + r_xx) * r_xy
        h1 = r_yy * r_y + r_xy * r_x
        h2 = r_xy * r_y + r_xx * r_x
        if edge_y or x < 5 or x >= w - 5:
            sx = f32(1.0)
            if x < 5:
                sx *= border[x]
            if x >= w - 5:
                sx *= border[w - x - 1]
            sx = sx * sx
            g11 = g11 * sy * sx
            g22 = g22 * sy * sx
            g12 = g12 * sy * sx
            h1 = h1 * sy * sx
            h2 = h2 * sy * sx
        mi = u((y * w + x) * _P)
        m[mi] = g11
        m[mi + u(1)] = g22
        m[mi + u(2)] = g12
        m[mi + u(3)] = h1
        m[mi + u(4)] = h2


@njit(nogil=True)
def _matrices(e0, e1, lo, h, w, flow, m, border):
    """update-matrices of a whole level from ``flow`` (2, h, w) flat."""
    for y in range(h):
        _update_row(e0, e1, lo, h, w, y, flow, m, border)


@njit(nogil=True)
def _solve_row(h, w, y, hs, flow, scale, eps):
    """2x2 solve along row y from its horizontal window sums ``hs`` (w * 5, float64)."""
    n = h * w
    u = np.uint64
    for x in range(w):
        b = u(x * _P)
        g11 = hs[b] * scale
        g22 = hs[b + u(1)] * scale
        g12 = hs[b + u(2)] * scale
        h1 = hs[b + u(3)] * scale
        h2 = hs[b + u(4)] * scale
        idet = 1.0 / (g11 * g22 - g12 * g12 + eps)
        i = u(y * w + x)
        flow[i] = np.float32((g11 * h2 - g12 * h1) * idet)
        flow[u(n) + i] = np.float32((g22 * h1 - g12 * h2) * idet)


@njit(nogil=True)
def _iterate_box(e0, e1, lo, h, w, k, flow, m_old, m_new, vs, hs, update, scale, eps, border):
    """One box-window iteration (running float64 sums, replicate borders)."""
    u = np.uint64
    w5 = u(w * _P)
    pad = u(k * _P)
    five = u(_P)
    for i in range(w5):
        vs[pad + i] = 0.0
    for j in range(-k, k + 1):
        r = u(min(max(j, 0), h - 1)) * w5
        for i in range(w5):
            vs[pad + i] += m_old[r + i]
    last = u((k + w - 1) * _P)
    for y in range(h):
        for c in range(five):  # replicate the row's ends into the padding
            left = vs[pad + c]
            right = vs[last + c]
            for j in range(u(k)):
                vs[j * five + c] = left
                vs[last + (j + u(1)) * five + c] = right
        for c in range(five):
            t = 0.0
            for j in range(u(2 * k + 1)):
                t += vs[j * five + c]
            hs[c] = t
        # running sum along x: the window of x is vs[x .. x + 2k] (padded coordinates)
        a = u(2 * k + 1) * five
        for d in range(five, w5):
            hs[d] = hs[d - five] + (vs[a + d - five] - vs[d - five])
        _solve_row(h, w, y, hs, flow, scale, eps)
        if update:  # the next M of this row, from its new flow
            _update_row(e0, e1, lo, h, w, y, flow, m_new, border)
        if y < h - 1:  # slide the vertical window down one row
            add = u(min(y + k + 1, h - 1)) * w5
            sub = u(max(y - k, 0)) * w5
            for i in range(w5):
                vs[pad + i] += np.float64(m_old[add + i]) - np.float64(m_old[sub + i])


@njit(nogil=True)
def _iterate_gauss(e0, e1, lo, h, w, k, flow, m_old, m_new, vs, hs, update, kern, eps, border):
    """One Gaussian-window iteration; ``kern`` holds taps 0..k (float32)."""
    w5 = w * _P
    pad = k * _P
    last = (k + w - 1) * _P
    for y in range(h):
        r = y * w5
        k0 = np.float64(kern[0])
        for i in range(w5):
            vs[pad + i] = k0 * m_old[r + i]
        for j in range(1, k + 1):
            up = max(y - j, 0) * w5
            dn = min(y + j, h - 1) * w5
            kj = np.float64(kern[j])
            for i in range(w5):
                vs[pad + i] += kj * (np.float64(m_old[up + i]) + np.float64(m_old[dn + i]))
        for c in range(_P):
            left = vs[pad + c]
            right = vs[last + c]
            for j in range(k):
                vs[j * _P + c] = left
                vs[last + (j + 1) * _P + c] = right
        for i in range(w5):
            hs[i] = k0 * vs[pad + i]
        for j in range(1, k + 1):
            kj = np.float64(kern[j])
            lo_j = pad - j * _P
            hi_j = pad + j * _P
            for i in range(w5):
                hs[i] += kj * (vs[lo_j + i] + vs[hi_j + i])
        _solve_row(h, w, y, hs, flow, 1.0, eps)
        if update:
            _update_row(e0, e1, lo, h, w, y, flow, m_new, border)


@njit(nogil=True)
def _upsample(src, hp, wp, dst, h, w, factor):
    """Bilinear resize (2, hp, wp) -> (2, h, w) as ``F.interpolate(align_corners=False)``,
    times ``factor`` (float32)."""
    f32 = np.float32
    one = f32(1.0)
    half = f32(0.5)
    sy = f32(hp) / f32(h)
    sx = f32(wp) / f32(w)
    for y in range(h):
        ry = sy * (f32(y) + half) - half
        if ry < 0:
            ry = f32(0.0)
        y0 = min(int(ry), hp - 1)
        ly1 = min(max(ry - f32(y0), f32(0.0)), one)
        ly0 = one - ly1
        y1 = y0 + 1 if y0 < hp - 1 else y0
        for x in range(w):
            rx = sx * (f32(x) + half) - half
            if rx < 0:
                rx = f32(0.0)
            x0 = min(int(rx), wp - 1)
            lx1 = min(max(rx - f32(x0), f32(0.0)), one)
            lx0 = one - lx1
            x1 = x0 + 1 if x0 < wp - 1 else x0
            for c in range(2):
                o = c * hp * wp
                top = src[o + y0 * wp + x0] * lx0 + src[o + y0 * wp + x1] * lx1
                bot = src[o + y1 * wp + x0] * lx0 + src[o + y1 * wp + x1] * lx1
                dst[c * h * w + y * w + x] = (top * ly0 + bot * ly1) * factor


@njit(nogil=True)
def _solve_pair(e0, e1, offs, hts, wds, init, has_init, out, fa, fb, ma, mb, vs, hs,
                iterations, k, gaussian, kern, scale, eps, factor, border):  # fmt: skip
    """All levels of one pair, coarse to fine; the flow ends in ``out`` (2 H W)."""
    levels = hts.shape[0]
    hp = 0
    wp = 0
    for li in range(levels - 1, -1, -1):
        h = hts[li]
        w = wds[li]
        lo = offs[li]
        n2 = 2 * h * w
        if li == levels - 1:
            for i in range(n2):
                fa[i] = init[i] if has_init else np.float32(0.0)
        else:
            _upsample(fb, hp, wp, fa, h, w, factor)
        _matrices(e0, e1, lo, h, w, fa, ma, border)
        for it in range(iterations):
            update = it < iterations - 1
            if gaussian:
                _iterate_gauss(e0, e1, lo, h, w, k, fa, ma, mb, vs, hs, update, kern, eps, border)
            else:
                _iterate_box(e0, e1, lo, h, w, k, fa, ma, mb, vs, hs, update, scale, eps, border)
            ma, mb = mb, ma
        fa, fb = fb, fa  # this level's flow is now in fb
        hp = h
        wp = w
    for i in range(2 * hts[0] * wds[0]):
        out[i] = fb[i]


@njit(parallel=True, nogil=True)
def _solve_all(exp, offs, hts, wds, ref, tgt, init, has_init, out, iterations, k, gaussian,
               kern, scale, eps, factor, border, chunk):  # fmt: skip
    pairs = ref.shape[0]
    n = hts[0] * wds[0]
    chunks = (pairs + chunk - 1) // chunk
    for c in prange(chunks):
        fa = np.empty(2 * n, np.float32)
        fb = np.empty(2 * n, np.float32)
        ma = np.empty(_P * n, np.float32)
        mb = np.empty(_P * n, np.float32)
        vs = np.empty((wds[0] + 2 * k) * _P, np.float64)
        hs = np.empty(wds[0] * _P, np.float64)
        for p in range(c * chunk, min((c + 1) * chunk, pairs)):
            ip = p if has_init else 0
            _solve_pair(exp[ref[p]], exp[tgt[p]], offs, hts, wds, init[ip], has_init, out[p],
                        fa, fb, ma, mb, vs, hs, iterations, k, gaussian, kern, scale, eps,
                        factor, border)  # fmt: skip


# --------------------------------------------------------------------------- driver


def pack_expansions(expansions: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Levels of (F, 5, h, w) float32 -> one (F, S) pixel-interleaved array and offsets."""
    flat = torch.cat([e.permute(0, 2, 3, 1).reshape(e.shape[0], -1) for e in expansions], 1)
    sizes = [e[0].numel() for e in expansions]
    offs = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return flat.contiguous().numpy(), offs


def solve_pairs(
    expansions: list[torch.Tensor],
    ref_idx: torch.Tensor,
    tgt_idx: torch.Tensor,
    params: FarnebackParams,
    init_flow: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Flows (P, 2, H, W) of pairs (ref_idx[i] -> tgt_idx[i]) of CPU expansions.

    ``expansions``: per level (F, 5, h, w) float32 as :func:`expand_frames` returns;
    ``init_flow``: (P, 2, H, W) float32 or None. Runs on ``numba.get_num_threads()``
    threads (set it, or ``torch.set_num_threads`` through ``farneback_pairs``).
    """
    from sw_mro.ops._farneback_torch import resize_area

    height, width = expansions[0].shape[-2:]
    levels = plan_levels(height, width, params)
    pairs = ref_idx.numel()
    exp, offs = pack_expansions(expansions)
    hts = np.array([lv.height for lv in levels], dtype=np.int64)
    wds = np.array([lv.width for lv in levels], dtype=np.int64)
    if init_flow is not None:
        top = levels[-1]
        init = (resize_area(init_flow.float(), top.height, top.width) * top.scale).reshape(
            pairs, -1
        )
        init_np = init.contiguous().numpy()
    else:
        init_np = np.zeros((1, 1), dtype=np.float32)
    if out is None:
        out = torch.empty(pairs, 2, height, width)
    k = params.winsize // 2
    kern = window_kernel(params.winsize)[k:].copy()  # taps 0..k
    _solve_all(
        exp, offs, hts, wds,
        ref_idx.to(torch.int64).numpy(), tgt_idx.to(torch.int64).numpy(),
        init_np, init_flow is not None, out.view(pairs, -1).numpy(),
        params.iterations, k, params.gaussian, kern,
        1.0 / float(params.winsize) ** 2, DET_EPS,
        np.float32(1.0 / params.pyr_scale), _BORDER, _CHUNK_PAIRS,
    )  # fmt: skip
    return out
