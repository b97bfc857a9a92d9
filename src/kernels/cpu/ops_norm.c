/* LayerNorm (biased variance, as torch.nn.LayerNorm) and RMSNorm (as LlamaRMSNorm, in float). Rows are
 * independent, so forward and dx run one row per thread; dw/db sum over rows, so threads split channels
 * and each sums its rows in order n = 0..N-1 (deterministic whatever the thread count). */
#include "ftc/ops.h"
#include <math.h>

enum { CBLOCK = 128 };

/* y[N,C] = (x - mean) * rstd * w + b, mean = sum x / C, rstd = 1/sqrt(sum (x-mean)^2 / C + eps) */
void layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                       int C, float eps) {
#pragma omp parallel for schedule(static) if ((long)N * C > 16384)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *yr = y + (size_t)n * C;
        double s = 0;
        for (int c = 0; c < C; c++) s += xr[c];
        float mu = (float)(s / C);
        double v = 0;
        for (int c = 0; c < C; c++) { double d = (double)xr[c] - mu; v += d * d; }
        float rs = (float)(1.0 / sqrt(v / C + (double)eps));
        for (int c = 0; c < C; c++) yr[c] = (xr[c] - mu) * rs * w[c] + (b ? b[c] : 0.0f);
        mean[n] = mu;
        rstd[n] = rs;
    }
}

/* xhat = (x-mean)*rstd; dxhat = dy*w;
 * dx += rstd * (dxhat - mean_c(dxhat) - xhat * mean_c(dxhat*xhat)); dw += sum_n dy*xhat; db += sum_n dy */
void layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                        const float *mean, const float *rstd, int N, int C) {
    if (dx) {
#pragma omp parallel for schedule(static) if ((long)N * C > 16384)
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C, *g = dy + (size_t)n * C;
            float *d = dx + (size_t)n * C;
            float mu = mean[n], rs = rstd[n];
            double s1 = 0, s2 = 0;
            for (int c = 0; c < C; c++) {
                float dxh = g[c] * w[c];
                s1 += dxh;
                s2 += (double)dxh * ((xr[c] - mu) * rs);
            }
            float m1 = (float)(s1 / C), m2 = (float)(s2 / C);
            for (int c = 0; c < C; c++) {
                float xh = (xr[c] - mu) * rs;
                d[c] += rs * (g[c] * w[c] - m1 - xh * m2);
            }
        }
    }
    if (dw || db) {
        int nblocks = (C + CBLOCK - 1) / CBLOCK;
#pragma omp parallel for schedule(static) if ((long)N * C > 16384)
        for (int blk = 0; blk < nblocks; blk++) {
            int c0 = blk * CBLOCK, c1 = c0 + CBLOCK < C ? c0 + CBLOCK : C;
            for (int n = 0; n < N; n++) {
                const float *xr = x + (size_t)n * C, *g = dy + (size_t)n * C;
                float mu = mean[n], rs = rstd[n];
                for (int c = c0; c < c1; c++) {
                    if (dw) dw[c] += g[c] * ((xr[c] - mu) * rs);
                    if (db) db[c] += g[c];
                }
            }
        }
    }
}

/* y[N,C] = x * rstd * w, rstd = 1/sqrt(sum x^2 / C + eps) */
void rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int N, int C, float eps) {
#pragma omp parallel for schedule(static) if ((long)N * C > 16384)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *yr = y + (size_t)n * C;
        double s = 0;
        for (int c = 0; c < C; c++) s += (double)xr[c] * xr[c];
        float rs = (float)(1.0 / sqrt(s / C + (double)eps));
        /* LlamaRMSNorm order: normalise first, then scale by the weight */
        for (int c = 0; c < C; c++) yr[c] = w[c] * (xr[c] * rs);
        rstd[n] = rs;
    }
}

/* dx += rstd * (dy*w - x * rstd^2 * mean_c(dy*w*x)); dw += sum_n dy * x * rstd */
void rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd, int N,
                      int C) {
    if (dx) {
#pragma omp parallel for schedule(static) if ((long)N * C > 16384)
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C, *g = dy + (size_t)n * C;
            float *d = dx + (size_t)n * C;
            float rs = rstd[n];
            double s = 0;
            for (int c = 0; c < C; c++) s += (double)g[c] * w[c] * xr[c];
            float k = (float)(s / C) * rs * rs;
            for (int c = 0; c < C; c++) d[c] += rs * (g[c] * w[c] - xr[c] * k);
        }
    }
    if (dw) {
        int nblocks = (C + CBLOCK - 1) / CBLOCK;
#pragma omp parallel for schedule(static) if ((long)N * C > 16384)
        for (int blk = 0; blk < nblocks; blk++) {
            int c0 = blk * CBLOCK, c1 = c0 + CBLOCK < C ? c0 + CBLOCK : C;
            for (int n = 0; n < N; n++) {
                const float *xr = x + (size_t)n * C, *g = dy + (size_t)n * C;
                float rs = rstd[n];
                for (int c = c0; c < c1; c++) dw[c] += g[c] * (xr[c] * rs);
            }
        }
    }
}
