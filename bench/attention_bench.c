/* Attention forward + backward, the materialising pair (ftc_attention_forward_ex / _backward_ex, [B,H,T,T]
 * probabilities) against the tiled one (ftc_attention_flash_*), on random inputs: best of R repetitions each,
 * alternating, in CPU time of the process. Prints one JSON line per T.
 *   attention_bench [--B 1] [--H 9] [--Hkv 3] [--D 64] [--causal 1] [--reps 3] T...  (SmolLM2-135M's heads) */
#include "ftc/base.h"
#include "ftc/ops.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* CPU seconds of the process (all threads): steadier than wall time on a shared machine */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int main(int argc, char **argv) {
    int B = 1, H = 9, Hkv = 3, D = 64, causal = 1, reps = 3;
    int Ts[32], nT = 0;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--", 2) && i + 1 < argc) {
            int v = atoi(argv[i + 1]);
            if (!strcmp(argv[i], "--B")) B = v;
            else if (!strcmp(argv[i], "--H")) H = v;
            else if (!strcmp(argv[i], "--Hkv")) Hkv = v;
            else if (!strcmp(argv[i], "--D")) D = v;
            else if (!strcmp(argv[i], "--causal")) causal = v;
            else if (!strcmp(argv[i], "--reps")) reps = v;
            else { fprintf(stderr, "unknown %s\n", argv[i]); return 1; }
            i++;
        } else if (nT < 32) Ts[nT++] = atoi(argv[i]);
    }
    ftc_rng r;
    ftc_rng_seed(&r, 1);
    for (int ti = 0; ti < nT; ti++) {
        int T = Ts[ti];
        size_t nq = (size_t)B * T * H * D, nk = (size_t)B * T * Hkv * D, na = (size_t)B * H * T * T;
        float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *dy = malloc(nq * 4), *out = malloc(nq * 4);
        float *dq = calloc(nq, 4), *dk = calloc(nk, 4), *dv = calloc(nk, 4), *lse = malloc((size_t)B * H * T * 4);
        float *att = malloc(na * 4), *scr = malloc(na * 4);
        float *fscr = malloc(ftc_attention_flash_scratch_floats(B, T, H, Hkv, D) * 4);
        if (!q || !k || !v || !dy || !out || !dq || !dk || !dv || !lse || !att || !scr || !fscr) {
            fprintf(stderr, "out of memory at T=%d\n", T);
            return 2;
        }
        for (size_t i = 0; i < nq; i++) q[i] = ftc_rng_normal(&r), dy[i] = ftc_rng_normal(&r);
        for (size_t i = 0; i < nk; i++) k[i] = ftc_rng_normal(&r), v[i] = ftc_rng_normal(&r);
        double best[2][2] = {{1e30, 1e30}, {1e30, 1e30}}; /* [old/tiled][fwd/bwd] */
        for (int rep = 0; rep < reps; rep++)
            for (int w = 0; w < 2; w++) {
                double t0 = cpu_now();
                if (w) ftc_attention_flash_forward(out, lse, q, k, v, NULL, B, T, H, Hkv, D, causal, NULL);
                else ftc_attention_forward_ex(out, att, q, k, v, NULL, B, T, H, Hkv, D, causal, NULL);
                double t1 = cpu_now();
                if (w) ftc_attention_flash_backward(dq, dk, dv, dy, out, lse, q, k, v, NULL, B, T, H, Hkv, D, causal, fscr, NULL);
                else ftc_attention_backward_ex(dq, dk, dv, dy, att, q, k, v, B, T, H, Hkv, D, scr, NULL);
                double t2 = cpu_now();
                if (t1 - t0 < best[w][0]) best[w][0] = t1 - t0;
                if (t2 - t1 < best[w][1]) best[w][1] = t2 - t1;
            }
        printf("{\"T\": %d, \"B\": %d, \"H\": %d, \"Hkv\": %d, \"D\": %d, \"causal\": %d, \"materialising_fwd_cpu_ms\": %.3f, "
               "\"materialising_bwd_cpu_ms\": %.3f, \"tiled_fwd_cpu_ms\": %.3f, \"tiled_bwd_cpu_ms\": %.3f, \"speedup\": %.2f}\n",
               T, B, H, Hkv, D, causal, best[0][0] * 1e3, best[0][1] * 1e3, best[1][0] * 1e3, best[1][1] * 1e3,
               (best[0][0] + best[0][1]) / (best[1][0] + best[1][1]));
        fflush(stdout);
        free(q), free(k), free(v), free(dy), free(out), free(dq), free(dk), free(dv), free(lse), free(att), free(scr), free(fscr);
    }
    return 0;
}
