/* AdamW as torch.optim.AdamW (single-tensor path, amsgrad=False), in torch's order of operations. */
#include "ftc/ops.h"
#include "ftc/threads.h"
#include "vmath.h"
#include <math.h>

typedef struct {
    float *w, *m, *v;
    const float *g;
    int64_t n, blocks;
    float step_size, bc2_sqrt, decay, beta1, one_m_b1, beta2, one_m_b2, eps, gscale;
} adamw_job;

/* Chunks c of 64 whole 64-byte blocks of 16 values (a fixed split: the same whatever the thread count). */
static void adamw_avx512_range(void *ctx, int64_t lo, int64_t hi) {
    const adamw_job *j = ctx;
    for (int64_t c = lo; c < hi; c++) {
        int64_t b0 = j->blocks * c / 64, b1 = j->blocks * (c + 1) / 64, i0 = b0 * 16, i1 = b1 * 16 < j->n ? b1 * 16 : j->n;
        if (i1 > i0)
            ftc_vm_adamw_avx512(j->w + i0, j->g + i0, j->m + i0, j->v + i0, i1 - i0, j->step_size, j->bc2_sqrt, j->decay,
                                j->beta1, j->one_m_b1, j->beta2, j->one_m_b2, j->eps, j->gscale);
    }
}

static void adamw_range(void *ctx, int64_t lo, int64_t hi) {
    const adamw_job *j = ctx;
    float *w = j->w, *m = j->m, *v = j->v;
    const float *g = j->g;
    float step_size = j->step_size, bc2_sqrt = j->bc2_sqrt, decay = j->decay, beta1 = j->beta1, beta2 = j->beta2;
    float one_m_b1 = j->one_m_b1, one_m_b2 = j->one_m_b2, eps = j->eps, gscale = j->gscale;
    for (int64_t i = lo; i < hi; i++) {
        float gi = g[i] * gscale;
        w[i] *= decay;
        m[i] = beta1 * m[i] + one_m_b1 * gi;
        v[i] = beta2 * v[i] + one_m_b2 * gi * gi;
        w[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
}

/* w *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 * w -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)   (eps after the bias-corrected sqrt) */
void ftc_adamw_update(float *w, const float *g, float *m, float *v, int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int64_t t) {
    ftc_adamw_update_scaled(w, g, m, v, n, lr, beta1, beta2, eps, weight_decay, t, 1.0f);
}

void ftc_adamw_update_scaled(float *w, const float *g, float *m, float *v, int64_t n, float lr, float beta1,
                             float beta2, float eps, float weight_decay, int64_t t, float grad_scale) {
    /* torch forms these scalars as Python floats (double) and rounds them once at the tensor op */
    double bc1 = 1.0 - pow((double)beta1, (double)t);
    float step_size = (float)((double)lr / bc1);
    float bc2_sqrt = (float)sqrt(1.0 - pow((double)beta2, (double)t));
    float decay = (float)(1.0 - (double)lr * (double)weight_decay);
    float one_m_b1 = (float)(1.0 - (double)beta1), one_m_b2 = (float)(1.0 - (double)beta2);
    adamw_job j = {w, m, v, g, n, (n + 15) / 16, step_size, bc2_sqrt, decay, beta1, one_m_b1, beta2, one_m_b2, eps,
                   grad_scale};
    if (ftc_vm_use_avx512()) /* threads take whole 64-byte blocks of 16 values */
        ftc_parallel_range(64, n > 65536, adamw_avx512_range, &j);
    else
        ftc_parallel_range(n, n > 65536, adamw_range, &j);
}

VM_FORCE_INLINE void sum_squares_body(const float *x, int64_t n, double *out) { *out = vm_sum_squares16(x, n); }
VM_THREE_PATHS(sum_squares, (const float *x, int64_t n, double *out), (x, n, out))

double ftc_sum_squares(const float *x, int64_t n) {
    double s;
    if (ftc_vm_use_avx512()) sum_squares_avx512(x, n, &s);
    else if (ftc_vm_use_avx2()) sum_squares_avx2(x, n, &s);
    else sum_squares_generic(x, n, &s);
    return s;
}
