/* kvcache_bench: decode attention alone over an f32, an f16 and a q8_0 KV cache (issue 24), in SmolLM2-135M's shape
 * (30 layers, 9 query heads, 3 key/value heads, head dim 64): S sequences of T cached positions each, one new query
 * per sequence, ftc_attention_decode_seqs_forward[_f16|_q8_0] layer after layer; a 64 MB buffer is walked before each
 * step so that the caches come from memory, as after a step's pass over the weights. Prints CPU ms per step.
 *   kvcache_bench [S [T [reps]]]   (defaults 8 288 10; FTC_THREADS=1 for one core; KVB_ONLY=0|1|2: the f32, f16 or
 *   q8_0 cache alone) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "ftc/infer.h"
#include "ftc/ops.h"
#include "ftc/quant.h"
#include "ftc/safetensors.h"

static double wall_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const int L = getenv("KVB_LAYERS") ? atoi(getenv("KVB_LAYERS")) : 30, H = 9, Hkv = 3, D = 64; /* KVB_LAYERS=1 with
                                                                  * KVB_WARM=1: one sequence's rows stay in L2 */
    int S = argc > 1 ? atoi(argv[1]) : 8, T = argc > 2 ? atoi(argv[2]) : 288, reps = argc > 3 ? atoi(argv[3]) : 10;
    if (S < 1 || S > 64 || T < 1 || reps < 1 || L < 1) {
        fprintf(stderr, "usage: kvcache_bench [S 1..64 [T [reps]]]\n");
        return 2;
    }
    const size_t ks = (size_t)Hkv * D, n = (size_t)T * ks, junk_bytes = (size_t)64 << 20;
    float **kf = malloc(sizeof(float *) * (size_t)L * S * 2);
    uint16_t **kh = malloc(sizeof(uint16_t *) * (size_t)L * S * 2);
    void **k8 = malloc(sizeof(void *) * (size_t)L * S * 2);
    float *q = malloc(sizeof(float) * (size_t)S * H * D), *out = malloc(sizeof(float) * (size_t)S * H * D);
    float *att[64];
    int len[64];
    volatile unsigned char *junk = malloc(junk_bytes);
    if (!kf || !kh || !k8 || !q || !out || !junk) return 1;
    for (int i = 0; i < L * S * 2; i++) {
        kf[i] = malloc(sizeof(float) * n), kh[i] = malloc(sizeof(uint16_t) * n);
        k8[i] = malloc(n / 32 * sizeof(ftc_block_q8_0));
        if (!kf[i] || !kh[i] || !k8[i]) return 1;
        for (size_t j = 0; j < n; j++) {
            kf[i][j] = (float)((j * 2654435761u + (size_t)i) % 1000) / 500.0f - 1.0f;
            kh[i][j] = ftc_f32_to_f16(kf[i][j]);
        }
        ftc_quantize_row(FTC_GGML_Q8_0, kf[i], k8[i], (int64_t)n);
    }
    for (int i = 0; i < S * H * D; i++) q[i] = (float)(i % 17) / 17.0f;
    for (int s = 0; s < S; s++) {
        att[s] = malloc(sizeof(float) * (size_t)H * T);
        if (!att[s]) return 1;
        len[s] = T;
    }
    const int walk = !getenv("KVB_WARM"); /* KVB_WARM=1: no walk, the caches stay in L2/L3 (the compute alone) */
    for (int round = 0; round < 2; round++)
        for (ftc_kv_type t = FTC_KV_F32; t <= FTC_KV_Q8_0; t++) { /* 0 f32, 1 f16, 2 q8_0 */
            if (getenv("KVB_ONLY") && atoi(getenv("KVB_ONLY")) != (int)t) continue; /* KVB_ONLY=0|1|2: that cache alone */
            double total = 0, wall = 1e30; /* CPU: the mean over reps; wall: the best rep */
            for (int r = 0; r < reps; r++) {
                if (walk)
                    for (size_t i = 0; i < junk_bytes; i += 64) junk[i]++;
                double t0 = cpu_s(), w0 = wall_s();
                for (int l = 0; l < L; l++) {
                    size_t o = (size_t)l * S * 2;
                    if (t == FTC_KV_Q8_0)
                        ftc_attention_decode_seqs_forward_q8_0(out, att, q, (const void *const *)k8 + o,
                                                               (const void *const *)k8 + o + S, len, S, H, Hkv, D);
                    else if (t == FTC_KV_F16)
                        ftc_attention_decode_seqs_forward_f16(out, att, q, (const uint16_t *const *)kh + o,
                                                              (const uint16_t *const *)kh + o + S, len, S, H, Hkv, D);
                    else
                        ftc_attention_decode_seqs_forward(out, att, q, (const float *const *)kf + o,
                                                          (const float *const *)kf + o + S, len, S, H, Hkv, D);
                }
                total += cpu_s() - t0;
                if (wall_s() - w0 < wall) wall = wall_s() - w0;
            }
            const double mb = 2.0 * L * S * (double)ftc_kv_type_bytes(t, n) / 1e6;
            printf("%s cache, %d sequences x %d positions: %.3f ms CPU a step (%d layers, %.1f MB of KV read); "
                   "best wall %.3f ms (%.1f GB/s)\n",
                   ftc_kv_type_name(t), S, T, total / reps * 1e3, L, mb, wall * 1e3, mb / wall / 1e3);
        }
    return 0;
}
