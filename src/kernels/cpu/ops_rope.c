/* Rotary position embedding, Hugging Face rotate_half convention: dimension i pairs with i + D/2 and
 * out = x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x[D/2:], x[:D/2]), angle = pos * inv_freq[i]. */
#include "ftc/ops.h"
#include "ftc/threads.h"
#include <math.h>

/* inv_freq[i] = 1 / theta^(2i/D), i < D/2. Every step in float as transformers does it (the power, then the
 * reciprocal): a 1-ulp difference here becomes ~5e-4 in the angle at position 8k. */
void ftc_rope_inv_freq(float *inv_freq, int D, float theta) {
    for (int i = 0; i < D / 2; i++) {
        float expo = (float)(2 * i) / (float)D;
        float p = powf(theta, expo);
        inv_freq[i] = 1.0f / p;
    }
}

/* Llama-3 rope_scaling: wavelengths longer than L/low_freq_factor (L = original_max_position_embeddings) are
 * divided by `factor`, shorter than L/high_freq_factor are kept, and those between are blended linearly in
 * L/wavelen: s = (L/wavelen - low) / (high - low), f = (1 - s) f/factor + s f. */
void ftc_rope_inv_freq_llama3(float *inv_freq, int D, float theta, float factor, float low_freq_factor,
                          float high_freq_factor, int original_max_position_embeddings) {
    ftc_rope_inv_freq(inv_freq, D, theta);
    double L = original_max_position_embeddings;
    double low_wavelen = L / low_freq_factor, high_wavelen = L / high_freq_factor;
    for (int i = 0; i < D / 2; i++) {
        float f = inv_freq[i];
        double wavelen = 2.0 * M_PI / f;
        if (wavelen > low_wavelen) {
            inv_freq[i] = f / factor;
        } else if (wavelen >= high_wavelen) {
            float smooth = (float)((L / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor));
            inv_freq[i] = (1.0f - smooth) * f / factor + smooth * f;
        }
    }
}

/* cos/sin of the float angle pos * inv_freq (float product as torch forms it, then an accurate cos/sin) */
static inline void rope_cs(float *c, float *s, int32_t pos, float inv_freq) {
    float angle = (float)pos * inv_freq;
    *c = (float)cos((double)angle);
    *s = (float)sin((double)angle);
}

/* sign 1: the rotation by pos * inv_freq (forward); -1: by minus that angle, its transpose (backward) */
typedef struct {
    float *x;
    const int32_t *pos;
    const float *inv_freq;
    const float *cs; /* non-NULL: the rows' cos/sin from ftc_rope_cos_sin (forward only) */
    int H, D;
    float sign;
} rope_job;

static void rope_range(void *ctx, int64_t lo, int64_t hi) {
    const rope_job *j = ctx;
    float *x = j->x;
    const int32_t *pos = j->pos;
    const float *inv_freq = j->inv_freq;
    int H = j->H, D = j->D, half = D / 2;
    for (int n = (int)lo; n < (int)hi; n++) {
        for (int i = 0; i < half; i++) {
            float c, s;
            if (j->cs) {
                c = j->cs[(size_t)n * D + i], s = j->cs[(size_t)n * D + half + i];
            } else {
                rope_cs(&c, &s, pos[n], inv_freq[i]);
                s *= j->sign; /* exact: sin(-angle) = -sin(angle) */
            }
            for (int h = 0; h < H; h++) {
                float *r = x + ((size_t)n * H + h) * D;
                float a = r[i], b = r[i + half];
                r[i] = a * c - b * s;
                r[i + half] = b * c + a * s;
            }
        }
    }
}

/* x[N,H,D] in place: (a, b) = (x[i], x[i+D/2]) -> (a cos - b sin, b cos + a sin) */
void ftc_rope_forward(float *x, const int32_t *pos, const float *inv_freq, int N, int H, int D) {
    rope_job j = {x, pos, inv_freq, NULL, H, D, 1.0f};
    ftc_parallel_range(N, (long)N * H * D > 32768, rope_range, &j);
}

/* cs[N, D]: row n's cos (first D/2) and sin (last D/2) of pos[n] * inv_freq[i], the values ftc_rope_forward computes */
void ftc_rope_cos_sin(float *cs, const int32_t *pos, const float *inv_freq, int N, int D) {
    const int half = D / 2;
    for (int n = 0; n < N; n++)
        for (int i = 0; i < half; i++) rope_cs(cs + (size_t)n * D + i, cs + (size_t)n * D + half + i, pos[n], inv_freq[i]);
}

/* ftc_rope_forward with the rows' cos/sin from ftc_rope_cos_sin: the same bits */
void ftc_rope_forward_cs(float *x, const float *cs, int N, int H, int D) {
    rope_job j = {x, NULL, NULL, cs, H, D, 1.0f};
    ftc_parallel_range(N, (long)N * H * D > 32768, rope_range, &j);
}

/* dx[N,H,D] in place (the transpose rotation): (da, db) -> (da cos + db sin, db cos - da sin) */
void ftc_rope_backward(float *dx, const int32_t *pos, const float *inv_freq, int N, int H, int D) {
    rope_job j = {dx, pos, inv_freq, NULL, H, D, -1.0f};
    ftc_parallel_range(N, (long)N * H * D > 32768, rope_range, &j);
}
