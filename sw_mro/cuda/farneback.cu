// Fused CUDA kernels of Farneback dense optical flow (our own code; see
// sw_mro/ops/_farneback_kernels.py and SPEC.md section 2, "Farneback exactness notes").
//
// Layouts (all float32, contiguous):
//   level image   (F, h, w)
//   expansion R   (F, 5, h, w), planes Y, X, YY, XY, XX (linear y, x; quadratic yy, xy, xx)
//   vertical pass (F, 3, h, w) of the expansion (g, xg, xxg along y)
//   flow          (P, 2, h, w), dx then dy
//   matrices M    (P, 5, h, w), planes g11, g22, g12, h1, h2
// Pair p uses frames ref[p] (prev) and tgt[p] (next) of R.
//
// One iteration is two kernels: fb_blur_rows (vertical window of M) and
// fb_blur_cols_solve (horizontal window, 2x2 solve for the flow, then the next
// update-matrices at the same pixel, which needs only that pixel's new flow).

#define FB_PLANES 5

__device__ __forceinline__ int fb_clamp(int v, int lo, int hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

// Border attenuation of r2..r6 at (x, y) (note 5), multiplied in OpenCV's order.
__device__ __forceinline__ float fb_border_scale(int x, int y, int w, int h) {
    const float b[5] = {0.14f, 0.14f, 0.4472f, 0.4472f, 0.4472f};
    float s = 1.f;
    if (x < 5) s *= b[x];
    if (x >= w - 5) s *= b[w - x - 1];
    if (y < 5) s *= b[y];
    if (y >= h - 5) s *= b[h - y - 1];
    return s;
}

// FarnebackUpdateMatrices at one pixel (note 5). r0: R of the reference frame at (y, x);
// r1f: R of the target frame at (0, 0); ps: plane stride h * w; m: M of the pair at (y, x).
__device__ __forceinline__ void fb_update_pixel(const float* __restrict__ r0,
                                                const float* __restrict__ r1f, int x, int y,
                                                int w, int h, float dx, float dy,
                                                float* __restrict__ m) {
    const long long ps = (long long)w * h;
    float fx = x + dx, fy = y + dy;
    float fx1 = floorf(fx), fy1 = floorf(fy);
    float r2, r3, r4, r5, r6;
    // In bounds only if floor(fx) in [0, w - 2] and floor(fy) in [0, h - 2]; NaN fails.
    if (fx1 >= 0.f && fx1 < (float)(w - 1) && fy1 >= 0.f && fy1 < (float)(h - 1)) {
        int x1 = (int)fx1, y1 = (int)fy1;
        fx -= fx1;
        fy -= fy1;
        float a00 = (1.f - fx) * (1.f - fy), a01 = fx * (1.f - fy);
        float a10 = (1.f - fx) * fy, a11 = fx * fy;
        const float* p = r1f + (long long)y1 * w + x1;
#define FB_SAMPLE(pl) \
    (a00 * p[(pl) * ps] + a01 * p[(pl) * ps + 1] + a10 * p[(pl) * ps + w] + a11 * p[(pl) * ps + w + 1])
        r2 = FB_SAMPLE(0);
        r3 = FB_SAMPLE(1);
        r4 = FB_SAMPLE(2);
        r6 = FB_SAMPLE(3);
        r5 = FB_SAMPLE(4);
#undef FB_SAMPLE
        r4 = (r0[2 * ps] + r4) * 0.5f;
        r5 = (r0[4 * ps] + r5) * 0.5f;
        r6 = (r0[3 * ps] + r6) * 0.25f;
    } else {
        r2 = r3 = 0.f;
        r4 = r0[2 * ps];
        r5 = r0[4 * ps];
        r6 = r0[3 * ps] * 0.5f;
    }
    r2 = (r0[0] - r2) * 0.5f;
    r3 = (r0[ps] - r3) * 0.5f;
    r2 += r4 * dy + r6 * dx;
    r3 += r6 * dy + r5 * dx;
    if (x < 5 || x >= w - 5 || y < 5 || y >= h - 5) {
        float s = fb_border_scale(x, y, w, h);
        r2 *= s; r3 *= s; r4 *= s; r5 *= s; r6 *= s;
    }
    m[0] = r4 * r4 + r6 * r6;       // g11
    m[ps] = r5 * r5 + r6 * r6;      // g22
    m[2 * ps] = (r4 + r5) * r6;     // g12
    m[3 * ps] = r4 * r2 + r6 * r3;  // h1
    m[4 * ps] = r6 * r2 + r5 * r3;  // h2
}

// The 2x2 solve of the five window sums s (note 6, in double as OpenCV), the flow of pair
// p at pixel pix, then (if update) the next update-matrices at that pixel (note 7).
__device__ __forceinline__ void fb_solve_store(const double* s, double scale,
                                               float* __restrict__ flow,
                                               float* __restrict__ m,
                                               const float* __restrict__ r, long long rp,
                                               long long tp, long long p, long long pix, int x,
                                               int y, int w, int h, int update) {
    const long long ps = (long long)w * h;
    double g11 = s[0] * scale, g22 = s[1] * scale, g12 = s[2] * scale;
    double h1 = s[3] * scale, h2 = s[4] * scale;
    double idet = 1.0 / (g11 * g22 - g12 * g12 + 1e-3);
    float dx = (float)((g11 * h2 - g12 * h1) * idet);
    float dy = (float)((g22 * h1 - g12 * h2) * idet);
    float* fl = flow + p * 2 * ps + pix;
    fl[0] = dx;
    fl[ps] = dy;
    if (update)
        fb_update_pixel(r + rp * FB_PLANES * ps + pix, r + tp * FB_PLANES * ps, x, y, w, h, dx,
                        dy, m + p * FB_PLANES * ps + pix);
}

// Polynomial expansion, vertical pass (note 4): replicate borders, float sums as OpenCV.
// kg, kxg, kxxg: the n + 1 non-negative taps of g, x g, x^2 g.
extern "C" __global__ void fb_poly_rows(const float* __restrict__ img, float* __restrict__ v,
                                        int frames, int h, int w, int n,
                                        const float* __restrict__ kg,
                                        const float* __restrict__ kxg,
                                        const float* __restrict__ kxxg) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long ps = (long long)w * h;
    if (i >= frames * ps) return;
    int x = (int)(i % w), y = (int)((i / w) % h);
    long long f = i / ps;
    const float* src = img + f * ps + x;
    float t0 = src[(long long)y * w] * kg[0], t1 = 0.f, t2 = 0.f;
    for (int k = 1; k <= n; k++) {
        float s0 = src[(long long)max(y - k, 0) * w];
        float s1 = src[(long long)min(y + k, h - 1) * w];
        float p = s0 + s1;
        t0 += kg[k] * p;
        t1 += kxg[k] * (s1 - s0);
        t2 += kxxg[k] * p;
    }
    float* dst = v + f * 3 * ps + (long long)y * w + x;
    dst[0] = t0;
    dst[ps] = t1;
    dst[2 * ps] = t2;
}

// Polynomial expansion, horizontal pass in double and the inverse-moment combination.
extern "C" __global__ void fb_poly_cols(const float* __restrict__ v, float* __restrict__ r,
                                        int frames, int h, int w, int n,
                                        const float* __restrict__ kg,
                                        const float* __restrict__ kxg,
                                        const float* __restrict__ kxxg, double ig11,
                                        double ig03, double ig33, double ig55) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long ps = (long long)w * h;
    if (i >= frames * ps) return;
    int x = (int)(i % w), y = (int)((i / w) % h);
    long long f = i / ps;
    const float* row0 = v + f * 3 * ps + (long long)y * w;
    const float* row1 = row0 + ps;
    const float* row2 = row1 + ps;
    double g0 = kg[0];
    double b1 = row0[x] * g0, b2 = 0, b3 = row1[x] * g0, b4 = 0, b5 = row2[x] * g0, b6 = 0;
    for (int k = 1; k <= n; k++) {
        int xl = max(x - k, 0), xr = min(x + k, w - 1);
        double tg = (double)row0[xr] + row0[xl];
        b1 += tg * kg[k];
        b4 += tg * kxxg[k];
        b2 += ((double)row0[xr] - row0[xl]) * kxg[k];
        b3 += ((double)row1[xr] + row1[xl]) * kg[k];
        b6 += ((double)row1[xr] - row1[xl]) * kxg[k];
        b5 += ((double)row2[xr] + row2[xl]) * kg[k];
    }
    float* dst = r + f * FB_PLANES * ps + (long long)y * w + x;
    dst[0] = (float)(b3 * ig11);                 // Y
    dst[ps] = (float)(b2 * ig11);                // X
    dst[2 * ps] = (float)(b1 * ig03 + b5 * ig33);  // YY
    dst[3 * ps] = (float)(b6 * ig55);            // XY
    dst[4 * ps] = (float)(b1 * ig03 + b4 * ig33);  // XX
}

// The matrices of every pair from its current flow (before the first iteration).
extern "C" __global__ void fb_update_matrices(const float* __restrict__ r,
                                              const long long* __restrict__ ref,
                                              const long long* __restrict__ tgt,
                                              const float* __restrict__ flow,
                                              float* __restrict__ m, int pairs, int h, int w) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long ps = (long long)w * h;
    if (i >= pairs * ps) return;
    long long pix = i % ps;
    long long p = i / ps;
    int x = (int)(pix % w), y = (int)(pix / w);
    const float* fl = flow + p * 2 * ps + pix;
    fb_update_pixel(r + ref[p] * FB_PLANES * ps + pix, r + tgt[p] * FB_PLANES * ps, x, y, w, h,
                    fl[0], fl[ps], m + p * FB_PLANES * ps + pix);
}

// Vertical window over the 5 planes (note 6): replicate borders; kern == nullptr means
// the box (unit weights; the 1/k^2 is applied in fb_blur_cols_solve).
extern "C" __global__ void fb_blur_rows(const float* __restrict__ m, float* __restrict__ mv,
                                        int pairs, int h, int w, int half,
                                        const float* __restrict__ kern) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long ps = (long long)w * h;
    if (i >= pairs * FB_PLANES * ps) return;
    int x = (int)(i % w), y = (int)((i / w) % h);
    const float* src = m + (i / ps) * ps + x;
    float s = 0.f;
    for (int j = -half; j <= half; j++) {
        float val = src[(long long)fb_clamp(y + j, 0, h - 1) * w];
        s += kern ? kern[j + half] * val : val;
    }
    mv[i] = s;
}

// Horizontal window, the 2x2 solve for the flow (note 6, in double as OpenCV), then
// (if update) the next update-matrices at this pixel with the new flow.
extern "C" __global__ void fb_blur_cols_solve(const float* __restrict__ mv,
                                              float* __restrict__ m,
                                              float* __restrict__ flow,
                                              const float* __restrict__ r,
                                              const long long* __restrict__ ref,
                                              const long long* __restrict__ tgt, int pairs,
                                              int h, int w, int half,
                                              const float* __restrict__ kern, double scale,
                                              int update) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long ps = (long long)w * h;
    if (i >= pairs * ps) return;
    long long pix = i % ps;
    long long p = i / ps;
    int x = (int)(pix % w), y = (int)(pix / w);
    const float* row = mv + p * FB_PLANES * ps + (long long)y * w;
    // Double sums, as OpenCV's running sums: next to the discontinuous out-of-bounds
    // rule a float32 sum moved one test scene by 5e-4 px mean EPE.
    double s[FB_PLANES] = {0.0, 0.0, 0.0, 0.0, 0.0};
    for (int j = -half; j <= half; j++) {
        int xx = fb_clamp(x + j, 0, w - 1);
        float k = kern ? kern[j + half] : 1.f;
#pragma unroll
        for (int c = 0; c < FB_PLANES; c++) s[c] += (double)(k * row[c * ps + xx]);
    }
    fb_solve_store(s, scale, flow, m, r, ref[p], tgt[p], p, pix, x, y, w, h, update);
}

// One whole iteration in one launch, on tiles held in shared memory: the vertical and
// horizontal windows, the solve and the next update-matrices. The split pair of kernels
// above reads each M value once per vertical tap (15 times at winsize 15) from L2; here a
// block loads its tile of M with a (half)-pixel halo once, so M is read about 2.7 times
// per pixel per iteration from L2 and mv never goes through device memory. The sums are
// the split kernels' sums in the same order (float vertical, double horizontal), so the
// flows are the same to the last bit. Blocks read m_in around their tile while other
// blocks write their own pixels, so m_in and m_out must be different buffers.
//
// Launch: grid (ceil(w / FB_TW), ceil(h / FB_TH), pairs), any block shape (32 x 8 on the
// GPU), dynamic shared memory tile_shared_bytes(half) (sw_mro/cuda/farneback.py).
#define FB_TW 32
#define FB_TH 16

extern "C" __global__ void fb_iter_tiled(const float* __restrict__ m_in,
                                         float* __restrict__ m_out,
                                         float* __restrict__ flow,
                                         const float* __restrict__ r,
                                         const long long* __restrict__ ref,
                                         const long long* __restrict__ tgt, int pairs, int h,
                                         int w, int half, const float* __restrict__ kern,
                                         double scale, int update) {
    extern __shared__ float fb_smem[];
    const int ew = FB_TW + 2 * half, eh = FB_TH + 2 * half;
    float* sm = fb_smem;                        // [5][eh][ew]: M around the tile
    float* sv = fb_smem + FB_PLANES * eh * ew;  // [5][FB_TH][ew]: vertical window sums
    const int x0 = blockIdx.x * FB_TW, y0 = blockIdx.y * FB_TH;
    const long long p = blockIdx.z;
    if (p >= pairs) return;
    const long long ps = (long long)w * h;
    const float* mp = m_in + p * FB_PLANES * ps;
    for (int c = 0; c < FB_PLANES; c++)
        for (int yy = threadIdx.y; yy < eh; yy += blockDim.y) {
            const float* src = mp + c * ps + (long long)fb_clamp(y0 - half + yy, 0, h - 1) * w;
            float* dst = sm + (c * eh + yy) * ew;
            for (int xx = threadIdx.x; xx < ew; xx += blockDim.x)
                dst[xx] = src[fb_clamp(x0 - half + xx, 0, w - 1)];
        }
    __syncthreads();
    for (int c = 0; c < FB_PLANES; c++)
        for (int ty = threadIdx.y; ty < FB_TH; ty += blockDim.y)
            for (int xx = threadIdx.x; xx < ew; xx += blockDim.x) {
                const float* col = sm + (c * eh + ty) * ew + xx;
                float s = 0.f;
                for (int j = 0; j <= 2 * half; j++) {
                    float val = col[j * ew];
                    s += kern ? kern[j] * val : val;
                }
                sv[(c * FB_TH + ty) * ew + xx] = s;
            }
    __syncthreads();
    for (int ty = threadIdx.y; ty < FB_TH; ty += blockDim.y)
        for (int tx = threadIdx.x; tx < FB_TW; tx += blockDim.x) {
            const int x = x0 + tx, y = y0 + ty;
            if (x >= w || y >= h) continue;
            double s[FB_PLANES] = {0.0, 0.0, 0.0, 0.0, 0.0};
            for (int j = 0; j <= 2 * half; j++) {
                float k = kern ? kern[j] : 1.f;
#pragma unroll
                for (int c = 0; c < FB_PLANES; c++)
                    s[c] += (double)(k * sv[(c * FB_TH + ty) * ew + tx + j]);
            }
            fb_solve_store(s, scale, flow, m_out, r, ref[p], tgt[p], p, (long long)y * w + x, x,
                           y, w, h, update);
        }
}

// The box window (flags 0, SPEC's default) as OpenCV computes it: running double sums.
// One iteration per launch on the same tiles as fb_iter_tiled, with far fewer
// instructions per pixel (fb_iter_tiled is bound by issuing them: 15 vertical and 15
// horizontal taps per plane, each horizontal one converted to double):
//   1. vertical: one thread per column of the tile and its halo runs a double sum down
//      the column (read straight from M; 2 loads per output row after the first),
//   2. horizontal: one thread per row turns the vertical sums into inclusive prefix sums
//      in place, so each box sum is one subtraction,
//   3. per pixel: the 2x2 solve and the next update-matrices, as fb_blur_cols_solve.
// The sums are OpenCV's in double, in another order than the split kernels: the flows
// agree with theirs to rounding (tests/test_cuda_kernels.py states the bound).
// Launch as fb_iter_tiled; dynamic shared memory box_shared_bytes(half).
extern "C" __global__ void fb_iter_box(const float* __restrict__ m_in,
                                       float* __restrict__ m_out,
                                       float* __restrict__ flow,
                                       const float* __restrict__ r,
                                       const long long* __restrict__ ref,
                                       const long long* __restrict__ tgt, int pairs, int h,
                                       int w, int half, double scale, int update) {
    extern __shared__ double fb_smem_d[];
    const int ew = FB_TW + 2 * half;
    double* sv = fb_smem_d;  // [5][FB_TH][ew]: vertical sums, then their prefix along x
    const int x0 = blockIdx.x * FB_TW, y0 = blockIdx.y * FB_TH;
    const long long p = blockIdx.z;
    if (p >= pairs) return;
    const long long ps = (long long)w * h;
    const float* mp = m_in + p * FB_PLANES * ps;
    const int threads = blockDim.x * blockDim.y;
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
    for (int task = tid; task < FB_PLANES * ew; task += threads) {
        const int c = task / ew, xx = task - c * ew;
        const float* col = mp + c * ps + fb_clamp(x0 - half + xx, 0, w - 1);
        double s = 0.0;
        for (int j = -half; j <= half; j++)
            s += (double)col[(long long)fb_clamp(y0 + j, 0, h - 1) * w];
        double* out = sv + c * FB_TH * ew + xx;
        for (int ty = 0; ty < FB_TH; ty++) {
            out[ty * ew] = s;
            if (ty + 1 < FB_TH) {
                const int y = y0 + ty;
                s += (double)col[(long long)fb_clamp(y + half + 1, 0, h - 1) * w] -
                     (double)col[(long long)fb_clamp(y - half, 0, h - 1) * w];
            }
        }
    }
    __syncthreads();
    for (int task = tid; task < FB_PLANES * FB_TH; task += threads) {
        double* row = sv + task * ew;
        double s = 0.0;
        for (int xx = 0; xx < ew; xx++) {
            s += row[xx];
            row[xx] = s;
        }
    }
    __syncthreads();
    for (int ty = threadIdx.y; ty < FB_TH; ty += blockDim.y)
        for (int tx = threadIdx.x; tx < FB_TW; tx += blockDim.x) {
            const int x = x0 + tx, y = y0 + ty;
            if (x >= w || y >= h) continue;
            double s[FB_PLANES];
#pragma unroll
            for (int c = 0; c < FB_PLANES; c++) {
                const double* row = sv + (c * FB_TH + ty) * ew;
                s[c] = row[tx + 2 * half] - (tx > 0 ? row[tx - 1] : 0.0);
            }
            fb_solve_store(s, scale, flow, m_out, r, ref[p], tgt[p], p, (long long)y * w + x, x,
                           y, w, h, update);
        }
}
