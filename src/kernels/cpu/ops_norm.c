/* LayerNorm (biased variance, as torch.nn.LayerNorm) and RMSNorm (as LlamaRMSNorm, in float). Rows are
 * independent, so forward and dx run one row per thread; dw/db sum over rows, so threads split channels
 * and each sums its rows in order n = 0..N-1 (deterministic whatever the thread count).
 * Row statistics are double sums over 16 lanes (vm_sum16: vectorisable, fixed order); every kernel is
 * compiled twice (VM_TWO_PATHS: portable and AVX-512, bit-identical) and picked by ftc_vm_use_avx512(). */
#include "ftc/ops.h"
#include "ftc/threads.h"
#include "vmath.h"
#include <math.h>

enum { CBLOCK = 128 };

/* Arguments of one parallel pass (rows or channel blocks) and the kernel it runs, for ftc_parallel_range. */
typedef struct {
    float *y, *mean, *rstd, *dx, *dw, *db;
    const float *x, *w, *b, *dy;
    const float *cmean, *crstd;
    int C;
    float eps;
    void (*ln_fwd)(float *, float *, float *, const float *, const float *, const float *, int, float);
    void (*ln_dx)(float *, const float *, const float *, const float *, float, float, int);
    void (*ln_dwdb)(float *, float *, const float *, const float *, const float *, const float *, int, int, int, int);
    void (*rms_fwd)(float *, float *, const float *, const float *, int, float);
    void (*rms_dx)(float *, const float *, const float *, const float *, float, int);
    void (*rms_dw)(float *, const float *, const float *, const float *, int, int, int, int);
    int N, cb; /* rows (for the channel passes), channel block */
} norm_job;

/* ---- LayerNorm ---- */

/* one row: y = (x - mean) * rstd * w + b */
VM_FORCE_INLINE void ln_fwd_row_body(float *yr, float *mean, float *rstd, const float *xr, const float *w,
                                     const float *b, int C, float eps) {
    double a[16] = {0};
    int c = 0;
    for (; c + 16 <= C; c += 16)
        for (int j = 0; j < 16; j++) a[j] += xr[c + j];
    for (int j = 0; c + j < C; j++) a[j] += xr[c + j];
    float mu = (float)(vm_sum16(a) / C);
    for (int j = 0; j < 16; j++) a[j] = 0;
    for (c = 0; c + 16 <= C; c += 16)
        for (int j = 0; j < 16; j++) {
            double d = (double)xr[c + j] - mu;
            a[j] += d * d;
        }
    for (int j = 0; c + j < C; j++) {
        double d = (double)xr[c + j] - mu;
        a[j] += d * d;
    }
    float rs = (float)(1.0 / sqrt(vm_sum16(a) / C + (double)eps));
    if (b)
        for (c = 0; c < C; c++) yr[c] = (xr[c] - mu) * rs * w[c] + b[c];
    else
        for (c = 0; c < C; c++) yr[c] = (xr[c] - mu) * rs * w[c] + 0.0f;
    *mean = mu;
    *rstd = rs;
}
VM_TWO_PATHS(ln_fwd_row, (float *yr, float *mean, float *rstd, const float *xr, const float *w, const float *b, int C,
                          float eps),
             (yr, mean, rstd, xr, w, b, C, eps))

static void ln_fwd_range(void *ctx, int64_t lo, int64_t hi) {
    const norm_job *j = ctx;
    size_t C = (size_t)j->C;
    for (int64_t n = lo; n < hi; n++) j->ln_fwd(j->y + n * C, j->mean + n, j->rstd + n, j->x + n * C, j->w, j->b, j->C, j->eps);
}

/* y[N,C] = (x - mean) * rstd * w + b, mean = sum x / C, rstd = 1/sqrt(sum (x-mean)^2 / C + eps) */
void ftc_layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                       int C, float eps) {
    norm_job j = {.y = y, .mean = mean, .rstd = rstd, .x = x, .w = w, .b = b, .C = C, .eps = eps,
                  .ln_fwd = ftc_vm_use_avx512() ? ln_fwd_row_avx512 : ln_fwd_row_generic};
    ftc_parallel_range(N, (long)N * C > 16384, ln_fwd_range, &j);
}

/* one row of dx += rstd * (dxhat - mean_c(dxhat) - xhat * mean_c(dxhat*xhat)), dxhat = dy*w */
VM_FORCE_INLINE void ln_dx_row_body(float *d, const float *g, const float *xr, const float *w, float mu, float rs,
                                    int C) {
    double a1[16] = {0}, a2[16] = {0};
    int c = 0;
    for (; c + 16 <= C; c += 16) { /* two loops: GCC does not vectorise the two sums in one */
        for (int j = 0; j < 16; j++) a1[j] += g[c + j] * w[c + j];
        for (int j = 0; j < 16; j++) a2[j] += (double)(g[c + j] * w[c + j]) * ((xr[c + j] - mu) * rs);
    }
    for (int j = 0; c + j < C; j++) {
        float dxh = g[c + j] * w[c + j];
        a1[j] += dxh;
        a2[j] += (double)dxh * ((xr[c + j] - mu) * rs);
    }
    float m1 = (float)(vm_sum16(a1) / C), m2 = (float)(vm_sum16(a2) / C);
    for (c = 0; c < C; c++) {
        float xh = (xr[c] - mu) * rs;
        d[c] += rs * (g[c] * w[c] - m1 - xh * m2);
    }
}
VM_TWO_PATHS(ln_dx_row, (float *d, const float *g, const float *xr, const float *w, float mu, float rs, int C),
             (d, g, xr, w, mu, rs, C))

/* channels [c0, c0 + len) of dw += sum_n dy*xhat, db += sum_n dy, rows in order. A full block (len == 64)
 * sums in local arrays that stay in registers over all rows (the compiler unrolls the fixed-length loops);
 * the last C % 64 channels take the general loop. */
enum { DW_CB = 64 };
VM_FORCE_INLINE void ln_dwdb_block_body(float *dw, float *db, const float *dy, const float *x, const float *mean,
                                        const float *rstd, int N, int C, int c0, int len) {
    if (len != DW_CB) {
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C + c0, *g = dy + (size_t)n * C + c0;
            float mu = mean[n], rs = rstd[n];
            for (int j = 0; j < len; j++) {
                if (dw) dw[c0 + j] += g[j] * ((xr[j] - mu) * rs);
                if (db) db[c0 + j] += g[j];
            }
        }
        return;
    }
    float aw[DW_CB], ab[DW_CB];
    for (int j = 0; j < DW_CB; j++) aw[j] = dw ? dw[c0 + j] : 0.0f, ab[j] = db ? db[c0 + j] : 0.0f;
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C + c0, *g = dy + (size_t)n * C + c0;
        float mu = mean[n], rs = rstd[n];
        if (dw)
            for (int j = 0; j < DW_CB; j++) aw[j] += g[j] * ((xr[j] - mu) * rs);
        if (db)
            for (int j = 0; j < DW_CB; j++) ab[j] += g[j];
    }
    for (int j = 0; j < DW_CB; j++) {
        if (dw) dw[c0 + j] = aw[j];
        if (db) db[c0 + j] = ab[j];
    }
}
VM_TWO_PATHS(ln_dwdb_block, (float *dw, float *db, const float *dy, const float *x, const float *mean,
                             const float *rstd, int N, int C, int c0, int len),
             (dw, db, dy, x, mean, rstd, N, C, c0, len))

static void ln_dx_range(void *ctx, int64_t lo, int64_t hi) {
    const norm_job *j = ctx;
    size_t C = (size_t)j->C;
    for (int64_t n = lo; n < hi; n++) j->ln_dx(j->dx + n * C, j->dy + n * C, j->x + n * C, j->w, j->cmean[n], j->crstd[n], j->C);
}

static void ln_dwdb_range(void *ctx, int64_t lo, int64_t hi) {
    const norm_job *j = ctx;
    for (int b = (int)lo; b < (int)hi; b++) {
        int c0 = b * j->cb, len = c0 + j->cb < j->C ? j->cb : j->C - c0;
        j->ln_dwdb(j->dw, j->db, j->dy, j->x, j->cmean, j->crstd, j->N, j->C, c0, len);
    }
}

/* xhat = (x-mean)*rstd; dxhat = dy*w;
 * dx += rstd * (dxhat - mean_c(dxhat) - xhat * mean_c(dxhat*xhat)); dw += sum_n dy*xhat; db += sum_n dy */
void ftc_layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                        const float *mean, const float *rstd, int N, int C) {
    bool avx512 = ftc_vm_use_avx512();
    norm_job j = {.dx = dx, .dw = dw, .db = db, .x = x, .w = w, .dy = dy, .cmean = mean, .crstd = rstd, .C = C,
                  .ln_dx = avx512 ? ln_dx_row_avx512 : ln_dx_row_generic,
                  .ln_dwdb = avx512 ? ln_dwdb_block_avx512 : ln_dwdb_block_generic, .N = N, .cb = DW_CB};
    if (dx) ftc_parallel_range(N, (long)N * C > 16384, ln_dx_range, &j);
    if (dw || db) ftc_parallel_range((C + DW_CB - 1) / DW_CB, (long)N * C > 16384, ln_dwdb_range, &j);
}

/* ---- RMSNorm ---- */

/* one row: y = w * (x * rstd) (LlamaRMSNorm order: normalise first, then scale by the weight) */
VM_FORCE_INLINE void rms_fwd_row_body(float *yr, float *rstd, const float *xr, const float *w, int C, float eps) {
    float rs = (float)(1.0 / sqrt(vm_sum_squares16(xr, C) / C + (double)eps));
    for (int c = 0; c < C; c++) yr[c] = w[c] * (xr[c] * rs);
    *rstd = rs;
}
VM_TWO_PATHS(rms_fwd_row, (float *yr, float *rstd, const float *xr, const float *w, int C, float eps),
             (yr, rstd, xr, w, C, eps))

/* y[N,C] = x * rstd * w, rstd = 1/sqrt(sum x^2 / C + eps) */
static void rms_fwd_range(void *ctx, int64_t lo, int64_t hi) {
    const norm_job *j = ctx;
    size_t C = (size_t)j->C;
    for (int64_t n = lo; n < hi; n++) j->rms_fwd(j->y + n * C, j->rstd + n, j->x + n * C, j->w, j->C, j->eps);
}

void ftc_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int N, int C, float eps) {
    norm_job j = {.y = y, .rstd = rstd, .x = x, .w = w, .C = C, .eps = eps,
                  .rms_fwd = ftc_vm_use_avx512() ? rms_fwd_row_avx512 : rms_fwd_row_generic};
    ftc_parallel_range(N, (long)N * C > 16384, rms_fwd_range, &j);
}

/* one row of dx += rstd * (dy*w - x * rstd^2 * mean_c(dy*w*x)) */
VM_FORCE_INLINE void rms_dx_row_body(float *d, const float *g, const float *xr, const float *w, float rs, int C) {
    double a[16] = {0};
    int c = 0;
    for (; c + 16 <= C; c += 16)
        for (int j = 0; j < 16; j++) a[j] += (double)g[c + j] * w[c + j] * xr[c + j];
    for (int j = 0; c + j < C; j++) a[j] += (double)g[c + j] * w[c + j] * xr[c + j];
    float k = (float)(vm_sum16(a) / C) * rs * rs;
    for (c = 0; c < C; c++) d[c] += rs * (g[c] * w[c] - xr[c] * k);
}
VM_TWO_PATHS(rms_dx_row, (float *d, const float *g, const float *xr, const float *w, float rs, int C),
             (d, g, xr, w, rs, C))

/* channels [c0, c1) of dw += sum_n dy * x * rstd, rows in order */
VM_FORCE_INLINE void rms_dw_block_body(float *dw, const float *dy, const float *x, const float *rstd, int N, int C,
                                       int c0, int c1) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C, *g = dy + (size_t)n * C;
        float rs = rstd[n];
        for (int c = c0; c < c1; c++) dw[c] += g[c] * (xr[c] * rs);
    }
}
VM_TWO_PATHS(rms_dw_block, (float *dw, const float *dy, const float *x, const float *rstd, int N, int C, int c0, int c1),
             (dw, dy, x, rstd, N, C, c0, c1))

static void rms_dx_range(void *ctx, int64_t lo, int64_t hi) {
    const norm_job *j = ctx;
    size_t C = (size_t)j->C;
    for (int64_t n = lo; n < hi; n++) j->rms_dx(j->dx + n * C, j->dy + n * C, j->x + n * C, j->w, j->crstd[n], j->C);
}

static void rms_dw_range(void *ctx, int64_t lo, int64_t hi) {
    const norm_job *j = ctx;
    for (int b = (int)lo; b < (int)hi; b++) {
        int c0 = b * j->cb, c1 = c0 + j->cb < j->C ? c0 + j->cb : j->C;
        j->rms_dw(j->dw, j->dy, j->x, j->crstd, j->N, j->C, c0, c1);
    }
}

/* dx += rstd * (dy*w - x * rstd^2 * mean_c(dy*w*x)); dw += sum_n dy * x * rstd */
void ftc_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd, int N,
                      int C) {
    bool avx512 = ftc_vm_use_avx512();
    norm_job j = {.dx = dx, .dw = dw, .x = x, .w = w, .dy = dy, .crstd = rstd, .C = C,
                  .rms_dx = avx512 ? rms_dx_row_avx512 : rms_dx_row_generic,
                  .rms_dw = avx512 ? rms_dw_block_avx512 : rms_dw_block_generic, .N = N, .cb = CBLOCK};
    if (dx) ftc_parallel_range(N, (long)N * C > 16384, rms_dx_range, &j);
    if (dw) ftc_parallel_range((C + CBLOCK - 1) / CBLOCK, (long)N * C > 16384, rms_dw_range, &j);
}
