/* AdamW as torch.optim.AdamW (single-tensor path, amsgrad=False), in torch's order of operations. */
#include "ftc/ops.h"
#include "vmath.h"
#include <math.h>

/* w *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 * w -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)   (eps after the bias-corrected sqrt) */
void ftc_adamw_update(float *w, const float *g, float *m, float *v, int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int64_t t) {
    /* torch forms these scalars as Python floats (double) and rounds them once at the tensor op */
    double bc1 = 1.0 - pow((double)beta1, (double)t);
    float step_size = (float)((double)lr / bc1);
    float bc2_sqrt = (float)sqrt(1.0 - pow((double)beta2, (double)t));
    float decay = (float)(1.0 - (double)lr * (double)weight_decay);
    float one_m_b1 = (float)(1.0 - (double)beta1), one_m_b2 = (float)(1.0 - (double)beta2);
    if (ftc_vm_use_avx512()) { /* threads take whole 64-byte blocks of 16 values */
        int64_t blocks = (n + 15) / 16;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t c = 0; c < 64; c++) {
            int64_t b0 = blocks * c / 64, b1 = blocks * (c + 1) / 64, i0 = b0 * 16, i1 = b1 * 16 < n ? b1 * 16 : n;
            if (i1 > i0)
                ftc_vm_adamw_avx512(w + i0, g + i0, m + i0, v + i0, i1 - i0, step_size, bc2_sqrt, decay, beta1, one_m_b1,
                                beta2, one_m_b2, eps);
        }
        return;
    }
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        w[i] *= decay;
        m[i] = beta1 * m[i] + one_m_b1 * g[i];
        v[i] = beta2 * v[i] + one_m_b2 * g[i] * g[i];
        w[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
}
