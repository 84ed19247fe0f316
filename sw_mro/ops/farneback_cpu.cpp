// Farneback for CPU in C++ (the "native" backend).
//
// Built on first use by sw_mro/ops/_farneback_native.py with the system C++ compiler
// (-O3 -march=native -ffp-contract=off) and cached per machine. Two entry points:
// - fb_expand: per frame and level, the pyramid image and its polynomial expansion, with
//   the operators and taps of sw_mro/ops/_farneback_expand.py (float32 sums);
// - fb_solve_pairs: the per-pair iterations on shared planar (F, 5, h, w) expansions. It
//   computes exactly what the numba engine (sw_mro/ops/_farneback_numba.py) computes:
//   the same operations in the same order and precision, so that the two agree bit for
//   bit on the same expansions (tested).
// "note N" refers to SPEC.md section 2, "Farneback exactness notes".
//
// What is different is the shape of the loops, for the compiler's vectoriser:
// - planar expansions and M (5 planes), so that the reference's terms load and M stores
//   are contiguous along a row, and R1's bilinear samples are 4 gathers per plane;
// - update-matrices is branch-free: the sample position is clamped into the image and the
//   in-bounds test selects between the two formulas (note 5), NaN-safe as before;
// - the border attenuation is a per-column and per-row factor that is exactly 1 inside
//   (x * 1 is exact, so this equals the reference's "only at the edges").
// No -ffast-math: it would reassociate the float64 running sums and drop the NaN tests.
//
// Parallelism: std::thread workers take pairs in order from an atomic counter; each
// worker owns its buffers.

#include <algorithm>
#include <atomic>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#include <cstdint>
#include <thread>
#include <vector>

namespace {

constexpr int P = 5;  // planes: Y, X, YY, XY, XX (sw_mro.ops._farneback_kernels)

struct Shape {
    int h, w;
};

// The squared border attenuation of M along an axis of `size` (note 5), as the numba
// engine forms it: 1, times border[i] near the start, times border[size-1-i] near the end.
void border_ramp(const float* border, int size, float* out) {
    for (int i = 0; i < size; ++i) {
        float s = 1.0f;
        if (i < 5) s *= border[i];
        if (i >= size - 5) s *= border[size - i - 1];
        out[i] = s * s;
    }
}

// ------------------------------------------------------------------ update-matrices
//
// One loop body (update_span) runs on three operation sets: ScalarOps (one pixel: the
// tail of every row, and the whole row where no SIMD path is compiled), Avx512Ops (16
// pixels) and Avx2Ops (8 pixels). Each set maps the same named operations onto its
// instructions, so every lane does exactly what the scalar code does: no FMA, ordered
// compares (false for NaN), and blends wherever the scalar code would choose.

struct ScalarOps {
    static constexpr int N = 1;
    using F = float;
    using I = int;
    using M = bool;
    static F set(float v) { return v; }
    static F load(const float* p) { return *p; }
    static void store(float* p, F v) { *p = v; }
    static F add(F a, F b) { return a + b; }
    static F sub(F a, F b) { return a - b; }
    static F mul(F a, F b) { return a * b; }
    static M ge(F a, F b) { return a >= b; }
    static M gt(F a, F b) { return a > b; }
    static M lt(F a, F b) { return a < b; }
    static M both(M a, M b) { return a & b; }
    static F select(M m, F if_true, F if_false) { return m ? if_true : if_false; }
    static I trunc(F a) { return (int)a; }
    static F to_float(I a) { return (float)a; }
    static I iota(int x) { return x; }
    static I index(I y, int w, I x) { return y * w + x; }
    static F gather(const float* base, I i) { return base[i]; }
};

#if defined(__AVX512F__)
struct Avx512Ops {
    static constexpr int N = 16;
    using F = __m512;
    using I = __m512i;
    using M = __mmask16;
    static F set(float v) { return _mm512_set1_ps(v); }
    static F load(const float* p) { return _mm512_loadu_ps(p); }
    static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
    static F add(F a, F b) { return _mm512_add_ps(a, b); }
    static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
    static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
    static M ge(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
    static M gt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
    static M lt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
    static M both(M a, M b) { return a & b; }
    static F select(M m, F if_true, F if_false) { return _mm512_mask_blend_ps(m, if_false, if_true); }
    static I trunc(F a) { return _mm512_cvttps_epi32(a); }
    static F to_float(I a) { return _mm512_cvtepi32_ps(a); }
    static I iota(int x) {
        return _mm512_add_epi32(_mm512_set1_epi32(x),
                                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    }
    static I index(I y, int w, I x) { return _mm512_add_epi32(_mm512_mullo_epi32(y, _mm512_set1_epi32(w)), x); }
    static F gather(const float* base, I i) { return _mm512_i32gather_ps(i, base, 4); }
};
using SimdOps = Avx512Ops;
#elif defined(__AVX2__)
struct Avx2Ops {
    static constexpr int N = 8;
    using F = __m256;
    using I = __m256i;
    using M = __m256;  // all-ones lanes where true
    static F set(float v) { return _mm256_set1_ps(v); }
    static F load(const float* p) { return _mm256_loadu_ps(p); }
    static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
    static F add(F a, F b) { return _mm256_add_ps(a, b); }
    static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
    static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
    static M ge(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
    static M gt(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
    static M lt(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
    static M both(M a, M b) { return _mm256_and_ps(a, b); }
    static F select(M m, F if_true, F if_false) { return _mm256_blendv_ps(if_false, if_true, m); }
    static I trunc(F a) { return _mm256_cvttps_epi32(a); }
    static F to_float(I a) { return _mm256_cvtepi32_ps(a); }
    static I iota(int x) {
        return _mm256_add_epi32(_mm256_set1_epi32(x), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    static I index(I y, int w, I x) { return _mm256_add_epi32(_mm256_mullo_epi32(y, _mm256_set1_epi32(w)), x); }
    static F gather(const float* base, I i) { return _mm256_i32gather_ps(base, i, 4); }
};
using SimdOps = Avx2Ops;
#endif

// One row of update-matrices: the reference's planes a, the target's planes b (whole
// level), the output planes m, the flow's two rows, and the row's constants.
struct RowArgs {
    const float* a[P];
    const float* b[P];
    float* m[P];
    const float* dx;
    const float* dy;
    const float* sx;  // squared border attenuation per column (1 inside)
    float sy, fy0, wm1, hm1, wm2, hm2;
    int w, dx1, dyw;
};

// FarnebackUpdateMatrices for pixels x, x + 1, ... of the row, V::N at a time while a
// whole step fits; returns the first pixel not done.
template <class V>
int update_span(const RowArgs& r, int x) {
    using F = typename V::F;
    using I = typename V::I;
    using M = typename V::M;
    const F zero = V::set(0.0f), one = V::set(1.0f), half = V::set(0.5f);
    const F quarter = V::set(0.25f), sy = V::set(r.sy), fy0 = V::set(r.fy0);
    const F wm1 = V::set(r.wm1), hm1 = V::set(r.hm1), wm2 = V::set(r.wm2), hm2 = V::set(r.hm2);
    for (; x + V::N <= r.w; x += V::N) {
        const F dx = V::load(r.dx + x);
        const F dy = V::load(r.dy + x);
        const F fx = V::add(V::to_float(V::iota(x)), dx);  // OpenCV's float32 coordinate
        const F fy = V::add(fy0, dy);
        // floor(fx) in [0, w - 2] <=> 0 <= fx < w - 1; comparisons with NaN are false.
        const M inb = V::both(V::both(V::ge(fx, zero), V::ge(fy, zero)),
                              V::both(V::lt(fx, wm1), V::lt(fy, hm1)));
        // clamped into the image (NaN -> 0), so that all four taps are inside the plane
        F cx = V::select(V::gt(fx, zero), fx, zero);
        cx = V::select(V::lt(cx, wm2), cx, wm2);
        F cy = V::select(V::gt(fy, zero), fy, zero);
        cy = V::select(V::lt(cy, hm2), cy, hm2);
        const I x1 = V::trunc(cx);  // >= 0: truncation is floor; in bounds it is floor(fx)
        const I y1 = V::trunc(cy);
        const F ax = V::sub(fx, V::to_float(x1));
        const F ay = V::sub(fy, V::to_float(y1));
        const F oax = V::sub(one, ax), oay = V::sub(one, ay);
        const F w00 = V::mul(oax, oay), w01 = V::mul(ax, oay);
        const F w10 = V::mul(oax, ay), w11 = V::mul(ax, ay);
        const I j = V::index(y1, r.w, x1);
        F s[P], a[P];
        for (int c = 0; c < P; ++c) {
            const float* b = r.b[c];
            F t = V::add(V::mul(w00, V::gather(b, j)), V::mul(w01, V::gather(b + r.dx1, j)));
            t = V::add(t, V::mul(w10, V::gather(b + r.dyw, j)));
            s[c] = V::add(t, V::mul(w11, V::gather(b + r.dyw + r.dx1, j)));
            a[c] = V::load(r.a[c] + x);
        }
        // in bounds: (R0 -+ R1) * c; out of bounds: R0 only, R1 never enters (it may be
        // non-finite there, and R0 may be -0)
        F r_y = V::select(inb, V::mul(V::sub(a[0], s[0]), half), V::mul(a[0], half));
        F r_x = V::select(inb, V::mul(V::sub(a[1], s[1]), half), V::mul(a[1], half));
        const F r_yy = V::select(inb, V::mul(V::add(a[2], s[2]), half), a[2]);
        const F r_xy = V::select(inb, V::mul(V::add(a[3], s[3]), quarter), V::mul(a[3], half));
        const F r_xx = V::select(inb, V::mul(V::add(a[4], s[4]), half), a[4]);
        r_y = V::add(V::add(r_y, V::mul(r_yy, dy)), V::mul(r_xy, dx));
        r_x = V::add(V::add(r_x, V::mul(r_xy, dy)), V::mul(r_xx, dx));
        const F g[P] = {
            V::add(V::mul(r_yy, r_yy), V::mul(r_xy, r_xy)),  // g11
            V::add(V::mul(r_xy, r_xy), V::mul(r_xx, r_xx)),  // g22
            V::mul(V::add(r_yy, r_xx), r_xy),                 // g12
            V::add(V::mul(r_yy, r_y), V::mul(r_xy, r_x)),    // h1
            V::add(V::mul(r_xy, r_y), V::mul(r_xx, r_x)),    // h2
        };
        const F att = V::load(r.sx + x);
        for (int c = 0; c < P; ++c) V::store(r.m[c] + x, V::mul(V::mul(g[c], sy), att));
    }
    return x;
}

// FarnebackUpdateMatrices along row y: flow (2, h, w) -> m (5, h, w).
// e0, e1: this level's planar expansions of the reference and target frames.
void update_row(const float* __restrict e0, const float* __restrict e1, int h, int w, int y,
                const float* __restrict flow, float* __restrict m, const float* __restrict sx,
                float sy) {
    const int64_t n = (int64_t)h * w;
    const int64_t row = (int64_t)y * w;
    RowArgs r;
    for (int c = 0; c < P; ++c) {
        r.a[c] = e0 + c * n + row;
        r.b[c] = e1 + c * n;
        r.m[c] = m + c * n + row;
    }
    r.dx = flow + row;
    r.dy = flow + n + row;
    r.sx = sx;
    r.sy = sy;
    r.fy0 = (float)y;
    r.wm1 = (float)(w - 1);
    r.hm1 = (float)(h - 1);
    // Sample positions are clamped to [0, w - 2] x [0, h - 2] so that all four taps are
    // inside the plane. An image 1 px wide or high has no in-bounds sample at all; its
    // taps collapse onto the clamped position (offsets 0), where they are not used.
    r.wm2 = (float)std::max(w - 2, 0);
    r.hm2 = (float)std::max(h - 2, 0);
    r.w = w;
    r.dx1 = w >= 2 ? 1 : 0;
    r.dyw = h >= 2 ? w : 0;
    int x = 0;
#if defined(__AVX512F__) || defined(__AVX2__)
    x = update_span<SimdOps>(r, x);
#endif
    update_span<ScalarOps>(r, x);
}

// 2x2 solve along row y from its horizontal window sums hs (5 planes of w, float64).
void solve_row(int h, int w, int y, const double* __restrict hs, float* __restrict flow,
               double scale, double eps) {
    const int64_t n = (int64_t)h * w;
    float* __restrict f0 = flow + (int64_t)y * w;
    float* __restrict f1 = f0 + n;
    const double* __restrict s0 = hs;
    const double* __restrict s1 = hs + w;
    const double* __restrict s2 = hs + 2 * w;
    const double* __restrict s3 = hs + 3 * w;
    const double* __restrict s4 = hs + 4 * w;
    for (int x = 0; x < w; ++x) {
        const double g11 = s0[x] * scale;
        const double g22 = s1[x] * scale;
        const double g12 = s2[x] * scale;
        const double h1 = s3[x] * scale;
        const double h2 = s4[x] * scale;
        const double idet = 1.0 / (g11 * g22 - g12 * g12 + eps);
        f0[x] = (float)((g11 * h2 - g12 * h1) * idet);
        f1[x] = (float)((g22 * h1 - g12 * h2) * idet);
    }
}

struct Work {
    std::vector<float> fa, fb, ma, mb, sx, sy;
    std::vector<double> vs, hs;  // vs: 5 planes of (w + 2k); hs: 5 planes of w
};

// Replicate the row ends of the vertical sums into their padding (plane stride ws).
void pad_row(double* vs, int w, int k) {
    const int ws = w + 2 * k;
    for (int c = 0; c < P; ++c) {
        double* v = vs + (int64_t)c * ws;
        const double left = v[k], right = v[k + w - 1];
        for (int j = 0; j < k; ++j) {
            v[j] = left;
            v[k + w + j] = right;
        }
    }
}

// One box-window iteration (float64 running sums, replicate borders, note 6).
void iterate_box(const float* e0, const float* e1, int h, int w, int k, float* flow,
                 const float* __restrict m_old, float* m_new, Work& wk, bool update,
                 double scale, double eps) {
    const int64_t n = (int64_t)h * w;
    const int ws = w + 2 * k;
    double* __restrict vs = wk.vs.data();
    double* __restrict hs = wk.hs.data();
    for (int c = 0; c < P; ++c) {
        double* v = vs + (int64_t)c * ws + k;
        for (int x = 0; x < w; ++x) v[x] = 0.0;
        for (int j = -k; j <= k; ++j) {
            const float* r = m_old + c * n + (int64_t)std::min(std::max(j, 0), h - 1) * w;
            for (int x = 0; x < w; ++x) v[x] += (double)r[x];
        }
    }
    for (int y = 0; y < h; ++y) {
        pad_row(vs, w, k);
        for (int c = 0; c < P; ++c) {
            const double* v = vs + (int64_t)c * ws;
            double* s = hs + (int64_t)c * w;
            double t = 0.0;
            for (int j = 0; j <= 2 * k; ++j) t += v[j];
            s[0] = t;
            // the running sum's increments (vectorised), then the sum itself below
            for (int x = 1; x < w; ++x) s[x] = v[x + 2 * k] - v[x - 1];
        }
        // running sum along x: the window of x is v[x .. x + 2k] (padded coordinates);
        // the 5 planes' serial chains interleaved, so their add latencies overlap
        for (int x = 1; x < w; ++x) {
            hs[x] += hs[x - 1];
            hs[w + x] += hs[w + x - 1];
            hs[2 * w + x] += hs[2 * w + x - 1];
            hs[3 * w + x] += hs[3 * w + x - 1];
            hs[4 * w + x] += hs[4 * w + x - 1];
        }
        solve_row(h, w, y, hs, flow, scale, eps);
        if (update) {  // the next M of this row, from its new flow
            update_row(e0, e1, h, w, y, flow, m_new, wk.sx.data(), wk.sy[y]);
        }
        if (y < h - 1) {  // slide the vertical window down one row
            const int64_t add = (int64_t)std::min(y + k + 1, h - 1) * w;
            const int64_t sub = (int64_t)std::max(y - k, 0) * w;
            for (int c = 0; c < P; ++c) {
                double* __restrict v = vs + (int64_t)c * ws + k;
                const float* __restrict ra = m_old + c * n + add;
                const float* __restrict rs = m_old + c * n + sub;
                for (int x = 0; x < w; ++x) v[x] += (double)ra[x] - (double)rs[x];
            }
        }
    }
}

// One Gaussian-window iteration; kern holds taps 0..k (float32), sums in float64.
void iterate_gauss(const float* e0, const float* e1, int h, int w, int k, float* flow,
                   const float* __restrict m_old, float* m_new, Work& wk, bool update,
                   const float* kern, double eps) {
    const int64_t n = (int64_t)h * w;
    const int ws = w + 2 * k;
    double* __restrict vs = wk.vs.data();
    double* __restrict hs = wk.hs.data();
    const double k0 = (double)kern[0];
    for (int y = 0; y < h; ++y) {
        for (int c = 0; c < P; ++c) {
            double* __restrict v = vs + (int64_t)c * ws + k;
            const float* __restrict r = m_old + c * n + (int64_t)y * w;
            for (int x = 0; x < w; ++x) v[x] = k0 * (double)r[x];
            for (int j = 1; j <= k; ++j) {
                const float* __restrict up = m_old + c * n + (int64_t)std::max(y - j, 0) * w;
                const float* __restrict dn = m_old + c * n + (int64_t)std::min(y + j, h - 1) * w;
                const double kj = (double)kern[j];
                for (int x = 0; x < w; ++x) v[x] += kj * ((double)up[x] + (double)dn[x]);
            }
        }
        pad_row(vs, w, k);
        for (int c = 0; c < P; ++c) {
            const double* __restrict v = vs + (int64_t)c * ws + k;
            double* __restrict s = hs + (int64_t)c * w;
            for (int x = 0; x < w; ++x) s[x] = k0 * v[x];
            for (int j = 1; j <= k; ++j) {
                const double kj = (double)kern[j];
                for (int x = 0; x < w; ++x) s[x] += kj * (v[x - j] + v[x + j]);
            }
        }
        solve_row(h, w, y, hs, flow, 1.0, eps);
        if (update) update_row(e0, e1, h, w, y, flow, m_new, wk.sx.data(), wk.sy[y]);
    }
}

struct Taps {
    int i0, i1;
    float l0, l1;
};

// Source taps of output index i along an axis resized from n to m samples (scale n / m,
// float32): F.interpolate(align_corners=False)'s coordinate, clamped at both ends.
Taps linear_taps(float scale, int i, int n) {
    const float one = 1.0f, half = 0.5f;
    float r = scale * ((float)i + half) - half;
    if (r < 0) r = 0.0f;
    const int i0 = std::min((int)r, n - 1);
    const float l1 = std::min(std::max(r - (float)i0, 0.0f), one);
    return Taps{i0, i0 < n - 1 ? i0 + 1 : i0, one - l1, l1};
}

// Bilinear resize (2, hp, wp) -> (2, h, w) as F.interpolate(align_corners=False), times
// factor (float32); the numba engine's _upsample, operation for operation.
void upsample(const float* src, int hp, int wp, float* dst, int h, int w, float factor) {
    const float sy = (float)hp / (float)h;
    const float sx = (float)wp / (float)w;
    for (int y = 0; y < h; ++y) {
        const Taps ty = linear_taps(sy, y, hp);
        for (int x = 0; x < w; ++x) {
            const Taps tx = linear_taps(sx, x, wp);
            for (int c = 0; c < 2; ++c) {
                const float* s = src + (int64_t)c * hp * wp;
                const float* r0 = s + (int64_t)ty.i0 * wp;
                const float* r1 = s + (int64_t)ty.i1 * wp;
                const float top = r0[tx.i0] * tx.l0 + r0[tx.i1] * tx.l1;
                const float bot = r1[tx.i0] * tx.l0 + r1[tx.i1] * tx.l1;
                dst[(int64_t)c * h * w + (int64_t)y * w + x] = (top * ty.l0 + bot * ty.l1) * factor;
            }
        }
    }
}

struct Problem {
    const float* const* levels;  // per level: base of (F, 5, h, w) planar expansions
    const Shape* shapes;          // per level, finest first
    int nlevels;
    const int64_t* ref;
    const int64_t* tgt;
    const float* init;  // (pairs, 2, h_top, w_top) or null
    float* out;         // (pairs, 2, H, W)
    int iterations, k, gaussian;
    const float* kern;
    double scale, eps;
    float factor;
    const float* border;
};

void solve_pair(const Problem& pb, int64_t p, Work& wk) {
    float* fa = wk.fa.data();
    float* fb = wk.fb.data();
    float* ma = wk.ma.data();
    float* mb = wk.mb.data();
    int hp = 0, wp = 0;
    for (int li = pb.nlevels - 1; li >= 0; --li) {
        const int h = pb.shapes[li].h, w = pb.shapes[li].w;
        const int64_t frame = (int64_t)P * h * w;
        const float* e0 = pb.levels[li] + pb.ref[p] * frame;
        const float* e1 = pb.levels[li] + pb.tgt[p] * frame;
        const int64_t n2 = 2 * (int64_t)h * w;
        if (li == pb.nlevels - 1) {
            for (int64_t i = 0; i < n2; ++i) fa[i] = pb.init ? pb.init[p * n2 + i] : 0.0f;
        } else {
            upsample(fb, hp, wp, fa, h, w, pb.factor);
        }
        border_ramp(pb.border, w, wk.sx.data());
        border_ramp(pb.border, h, wk.sy.data());
        for (int y = 0; y < h; ++y) update_row(e0, e1, h, w, y, fa, ma, wk.sx.data(), wk.sy[y]);
        for (int it = 0; it < pb.iterations; ++it) {
            const bool update = it < pb.iterations - 1;
            if (pb.gaussian)
                iterate_gauss(e0, e1, h, w, pb.k, fa, ma, mb, wk, update, pb.kern, pb.eps);
            else
                iterate_box(e0, e1, h, w, pb.k, fa, ma, mb, wk, update, pb.scale, pb.eps);
            std::swap(ma, mb);
        }
        std::swap(fa, fb);  // this level's flow is now in fb
        hp = h;
        wp = w;
    }
    const int64_t n2 = 2 * (int64_t)pb.shapes[0].h * pb.shapes[0].w;
    std::copy(fb, fb + n2, pb.out + p * n2);
}


// ------------------------------------------------------------------ per-frame expansion

// A 1-D linear operator along one axis in band form: output i reads `len` source samples
// from start[i] with weights wt[i * len ..] (zeros pad short rows). Borders are folded in.
struct Band {
    const int* start;
    const float* wt;
    int len;
};

// dst (dh, W) = op_y applied along y to src (H, W); vectorised along x.
void apply_rows(const float* __restrict src, int W, const Band& op, int dh,
                float* __restrict dst) {
    for (int i = 0; i < dh; ++i) {
        float* __restrict d = dst + (int64_t)i * W;
        const float* wt = op.wt + (int64_t)i * op.len;
        const float* s0 = src + (int64_t)op.start[i] * W;
        for (int x = 0; x < W; ++x) d[x] = wt[0] * s0[x];
        for (int t = 1; t < op.len; ++t) {
            const float c = wt[t];
            const float* __restrict s = s0 + (int64_t)t * W;
            for (int x = 0; x < W; ++x) d[x] += c * s[x];
        }
    }
}

// dst (h, dw) = op_x applied along x to src (h, W).
void apply_cols(const float* __restrict src, int h, int W, const Band& op, int dw,
                float* __restrict dst) {
    for (int r = 0; r < h; ++r) {
        const float* s = src + (int64_t)r * W;
        float* __restrict d = dst + (int64_t)r * dw;
        for (int j = 0; j < dw; ++j) {
            const float* wt = op.wt + (int64_t)j * op.len;
            const float* sj = s + op.start[j];
            float acc = wt[0] * sj[0];
            for (int t = 1; t < op.len; ++t) acc += wt[t] * sj[t];
            d[j] = acc;
        }
    }
}

// Polynomial expansion of img (h, w) into out (5, h, w) with replicate borders (note 4):
// along x with hk[0..2] (g, xg, c), then along y with vk[0..4] on the planes
// (0, 1, 0, 1, 2): the planes Y, X, YY, XY, XX of sw_mro.ops._farneback_expand.
void poly_expand(const float* __restrict img, int h, int w, int n, const float* hk,
                 const float* vk, float* __restrict hp, float* __restrict pad,
                 float* __restrict out) {
    const int taps = 2 * n + 1;
    const int64_t hw = (int64_t)h * w;
    for (int y = 0; y < h; ++y) {
        const float* s = img + (int64_t)y * w;
        for (int i = 0; i < n; ++i) {
            pad[i] = s[0];
            pad[n + w + i] = s[w - 1];
        }
        std::copy(s, s + w, pad + n);
        for (int q = 0; q < 3; ++q) {
            const float* k = hk + q * taps;
            float* __restrict d = hp + q * hw + (int64_t)y * w;
            for (int x = 0; x < w; ++x) d[x] = k[0] * pad[x];
            for (int t = 1; t < taps; ++t) {
                const float c = k[t];
                const float* __restrict p = pad + t;
                for (int x = 0; x < w; ++x) d[x] += c * p[x];
            }
        }
    }
    static const int source[P] = {0, 1, 0, 1, 2};
    for (int q = 0; q < P; ++q) {
        const float* k = vk + q * taps;
        const float* plane = hp + source[q] * hw;
        float* __restrict o = out + q * hw;
        for (int y = 0; y < h; ++y) {
            float* __restrict d = o + (int64_t)y * w;
            const float* s0 = plane + (int64_t)std::min(std::max(y - n, 0), h - 1) * w;
            for (int x = 0; x < w; ++x) d[x] = k[0] * s0[x];
            for (int t = 1; t < taps; ++t) {
                const float c = k[t];
                const float* __restrict s =
                    plane + (int64_t)std::min(std::max(y - n + t, 0), h - 1) * w;
                for (int x = 0; x < w; ++x) d[x] += c * s[x];
            }
        }
    }
}

// Runs fn(state, i) for i in [0, count) on up to `threads` threads (the caller's
// included), each with its own fn.make() state. Exceptions never cross into Python: a
// worker that throws stops, the others finish, and the result says what happened:
// 0 = done, 1 = out of memory, 2 = another C++ error. If a thread cannot be started,
// the threads already running do its share.
template <class Fn>
int parallel_for(int64_t count, int threads, const Fn& fn) {
    std::atomic<int64_t> next{0};
    std::atomic<int> status{0};
    auto worker = [&]() noexcept {
        try {
            auto state = fn.make();
            for (int64_t i = next++; i < count && status.load() == 0; i = next++) fn(state, i);
        } catch (const std::bad_alloc&) {
            status.store(1);
        } catch (...) {
            status.store(2);
        }
    };
    const int n = (int)std::max<int64_t>(1, std::min<int64_t>(threads, count));
    std::vector<std::thread> pool;
    try {
        pool.reserve(n);
        for (int t = 1; t < n; ++t) pool.emplace_back(worker);
    } catch (...) {  // no more threads: the running ones (and this one) do the work
    }
    worker();
    for (auto& t : pool) t.join();
    return status.load();
}

}  // namespace

extern "C" {

// Flows of `pairs` pairs (ref[i] -> tgt[i]) of shared planar expansions.
// levels[l]: (F, 5, hts[l], wds[l]) float32, finest first; init: (pairs, 2, h_top, w_top)
// float32 or null; out: (pairs, 2, hts[0], wds[0]). kern: the Gaussian window's taps
// 0..k; border: the 5 attenuation weights. Returns 0, or 1 (out of memory) / 2
// (another C++ error) as parallel_for.
int fb_solve_pairs(const float* const* levels, const int* hts, const int* wds, int nlevels,
                   const int64_t* ref, const int64_t* tgt, int64_t pairs, const float* init,
                   float* out, int iterations, int k, int gaussian, const float* kern,
                   double scale, double eps, float factor, const float* border, int threads) {
    try {
        std::vector<Shape> shapes(nlevels);
        int64_t area = 0;  // work buffers fit the largest level
        int wmax = 0, hmax = 0;
        for (int l = 0; l < nlevels; ++l) {
            shapes[l] = Shape{hts[l], wds[l]};
            area = std::max(area, (int64_t)hts[l] * wds[l]);
            wmax = std::max(wmax, wds[l]);
            hmax = std::max(hmax, hts[l]);
        }
        const Problem pb{levels, shapes.data(), nlevels, ref,  tgt,    init,   out,
                         iterations, k,     gaussian,      kern,    scale, eps, factor, border};
        struct Fn {
            const Problem& pb;
            int64_t area;
            int wmax, hmax, k;
            Work make() const {
                Work wk;
                wk.fa.resize(2 * area);
                wk.fb.resize(2 * area);
                wk.ma.resize(P * area);
                wk.mb.resize(P * area);
                wk.sx.resize(wmax);
                wk.sy.resize(hmax);
                wk.vs.resize((size_t)P * (wmax + 2 * k));
                wk.hs.resize((size_t)P * wmax);
                return wk;
            }
            void operator()(Work& wk, int64_t p) const { solve_pair(pb, p, wk); }
        } fn{pb, area, wmax, hmax, k};
        return parallel_for(pairs, threads, fn);
    } catch (const std::bad_alloc&) {
        return 1;
    } catch (...) {
        return 2;
    }
}

// Pyramid levels and polynomial expansions of F frames (F, H, W) float32 (note 2, 4).
// Returns 0, or 1 (out of memory) / 2 (another C++ error) as parallel_for.
// Level l: ys[l]/yw[l] (hts[l] x ylen[l]) and xs[l]/xw[l] (wds[l] x xlen[l]) are the
// band operators of its smoothing and resize along y and x (borders folded in);
// out[l]: (F, 5, hts[l], wds[l]). hk: 3 x (2n+1) taps along x, vk: 5 x (2n+1) along y.
int fb_expand(const float* frames, int64_t F, int H, int W, int nlevels, const int* hts,
              const int* wds, const int* const* ys, const float* const* yw, const int* ylen,
              const int* const* xs, const float* const* xw, const int* xlen, int n,
              const float* hk, const float* vk, float* const* out, int threads) {
    struct Fn {
        const float* frames;
        int H, W, nlevels, n;
        const int *hts, *wds, *ylen, *xlen;
        const int* const* ys;
        const float* const* yw;
        const int* const* xs;
        const float* const* xw;
        const float *hk, *vk;
        float* const* out;
        struct State {
            std::vector<float> rows, level, hp, pad;
        };
        State make() const {
            size_t area = 0, hmax = 0, wmax = 0;  // buffers fit the largest level
            for (int l = 0; l < nlevels; ++l) {
                area = std::max(area, (size_t)hts[l] * wds[l]);
                hmax = std::max(hmax, (size_t)hts[l]);
                wmax = std::max(wmax, (size_t)wds[l]);
            }
            State st;
            st.rows.resize(hmax * W);
            st.level.resize(area);
            st.hp.resize(3 * area);
            st.pad.resize(wmax + 2 * n);
            return st;
        }
        void operator()(State& st, int64_t f) const {
            const float* img = frames + f * H * W;
            for (int l = 0; l < nlevels; ++l) {
                const int h = hts[l], w = wds[l];
                apply_rows(img, W, Band{ys[l], yw[l], ylen[l]}, h, st.rows.data());
                apply_cols(st.rows.data(), h, W, Band{xs[l], xw[l], xlen[l]}, w,
                           st.level.data());
                poly_expand(st.level.data(), h, w, n, hk, vk, st.hp.data(), st.pad.data(),
                            out[l] + f * (int64_t)P * h * w);
            }
        }
    } fn{frames, H, W, nlevels, n, hts, wds, ylen, xlen, ys, yw, xs, xw, hk, vk, out};
    return parallel_for(F, threads, fn);
}

}  // extern "C"
