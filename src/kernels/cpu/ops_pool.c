/* Sequence pooling [B,T,C] -> [B,C] for classification heads. mask [B,T]: 1 = real token (NULL = all real). */
#include "ftc/ops.h"
#include <string.h>

/* out[b,:] = x[b,0,:]  (BERT [CLS]) */
void ftc_pool_cls_forward(float *out, const float *x, int B, int T, int C) {
    for (int b = 0; b < B; b++) memcpy(out + (size_t)b * C, x + (size_t)b * T * C, sizeof(float) * C);
}

/* dx[b,0,:] += dout[b,:] */
void ftc_pool_cls_backward(float *dx, const float *dout, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        float *d = dx + (size_t)b * T * C;
        const float *g = dout + (size_t)b * C;
        for (int c = 0; c < C; c++) d[c] += g[c];
    }
}

static int count_real(const uint8_t *mask, int b, int T) {
    if (!mask) return T;
    int n = 0;
    for (int t = 0; t < T; t++) n += mask[(size_t)b * T + t] != 0;
    return n;
}

/* out[b,:] = sum_{t: mask[b,t]} x[b,t,:] / count (sentence-transformers mean pooling); zeros if no real token */
void ftc_pool_mean_forward(float *out, const float *x, const uint8_t *mask, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * C;
        memset(o, 0, sizeof(float) * C);
        int n = count_real(mask, b, T);
        if (n == 0) continue;
        for (int t = 0; t < T; t++) {
            if (mask && !mask[(size_t)b * T + t]) continue;
            const float *xr = x + ((size_t)b * T + t) * C;
            for (int c = 0; c < C; c++) o[c] += xr[c];
        }
        float inv = 1.0f / (float)n;
        for (int c = 0; c < C; c++) o[c] *= inv;
    }
}

/* dx[b,t,:] += dout[b,:] / count for real t */
void ftc_pool_mean_backward(float *dx, const float *dout, const uint8_t *mask, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        int n = count_real(mask, b, T);
        if (n == 0) continue;
        float inv = 1.0f / (float)n;
        const float *g = dout + (size_t)b * C;
        for (int t = 0; t < T; t++) {
            if (mask && !mask[(size_t)b * T + t]) continue;
            float *d = dx + ((size_t)b * T + t) * C;
            for (int c = 0; c < C; c++) d[c] += g[c] * inv;
        }
    }
}

/* index of the last real token of row b (works for left and right padding); -1 if none */
static int last_real(const uint8_t *mask, int b, int T) {
    if (!mask) return T - 1;
    for (int t = T - 1; t >= 0; t--)
        if (mask[(size_t)b * T + t]) return t;
    return -1;
}

/* out[b,:] = x[b,t_last,:] (GPT-2/Llama sequence classification); zeros if no real token */
void ftc_pool_last_forward(float *out, const float *x, const uint8_t *mask, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        int t = last_real(mask, b, T);
        if (t < 0) memset(out + (size_t)b * C, 0, sizeof(float) * C);
        else memcpy(out + (size_t)b * C, x + ((size_t)b * T + t) * C, sizeof(float) * C);
    }
}

/* dx[b,t_last,:] += dout[b,:] */
void ftc_pool_last_backward(float *dx, const float *dout, const uint8_t *mask, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        int t = last_real(mask, b, T);
        if (t < 0) continue;
        float *d = dx + ((size_t)b * T + t) * C;
        const float *g = dout + (size_t)b * C;
        for (int c = 0; c < C; c++) d[c] += g[c];
    }
}
