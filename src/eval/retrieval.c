/* Mean-pooled sentence embeddings and nearest-neighbour search (the retrieval baseline). */
#include "ftc/retrieval.h"
#include "ftc/matmul.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

ftc_status ftc_embed_texts(ftc_model *m, const ftc_tokenizer *tok, const char *const *texts, size_t n, int max_len,
                           int batch, float *out, ftc_err *err) {
    int C = ftc_model_config_of(m)->hidden_size;
    ftc_ids *ids = calloc(n ? n : 1, sizeof *ids);
    size_t *lens = malloc(sizeof *lens * (n ? n : 1));
    int32_t *bid = malloc(sizeof *bid * (size_t)batch * max_len);
    uint8_t *mask = malloc((size_t)batch * max_len);
    ftc_status st = (!ids || !lens || !bid || !mask) ? ftc_errf(err, FTC_E_NOMEM, "out of memory") : FTC_OK;
    for (size_t i = 0; !st && i < n; i++) lens[i] = strlen(texts[i]);
    if (!st) st = ftc_tokenizer_encode_batch(tok, texts, lens, n, true, max_len, ids, 0, err);
    if (!st) st = ftc_model_reserve(m, batch, max_len, err);
    int32_t pad = ftc_tokenizer_special(tok).pad;
    if (pad < 0) pad = 0;
    for (size_t b0 = 0; !st && b0 < n; b0 += (size_t)batch) {
        int B = (int)(n - b0 < (size_t)batch ? n - b0 : (size_t)batch), T = 1;
        for (int b = 0; b < B; b++)
            if ((int)ids[b0 + b].n > T) T = (int)ids[b0 + b].n;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                bool real = t < (int)ids[b0 + b].n;
                bid[b * T + t] = real ? ids[b0 + b].ids[t] : pad;
                mask[b * T + t] = real;
            }
        ftc_batch bt = {.B = B, .T = T, .ids = bid, .mask = mask};
        float loss;
        if ((st = ftc_model_forward(m, &bt, false, &loss, err))) break;
        const float *h = ftc_model_hidden(m);
        for (int b = 0; b < B; b++) {
            float *e = out + (b0 + b) * (size_t)C;
            memset(e, 0, sizeof(float) * C);
            int cnt = 0;
            for (int t = 0; t < T; t++) {
                if (!mask[b * T + t]) continue;
                cnt++;
                for (int c = 0; c < C; c++) e[c] += h[((size_t)b * T + t) * C + c];
            }
            double norm = 0;
            for (int c = 0; c < C; c++) { e[c] /= cnt ? cnt : 1; norm += (double)e[c] * e[c]; }
            float inv = norm > 0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
            for (int c = 0; c < C; c++) e[c] *= inv;
        }
    }
    for (size_t i = 0; ids && i < n; i++) ftc_ids_free(&ids[i]);
    free(ids);
    free(lens);
    free(bid);
    free(mask);
    return st;
}

void ftc_nearest(const float *q, size_t nq, const float *k, size_t nk, int dim, int32_t *best, float *best_sim) {
    enum { CHUNK = 256 }; /* similarities for CHUNK queries at a time: bounded memory for large sets */
    float *sim = malloc(sizeof(float) * CHUNK * (nk ? nk : 1));
    for (size_t q0 = 0; q0 < nq; q0 += CHUNK) {
        int m = (int)(nq - q0 < CHUNK ? nq - q0 : CHUNK);
        if (sim) ftc_matmul(false, true, m, (int)nk, dim, 1.0f, q + q0 * dim, dim, k, dim, 0.0f, sim, (int)nk);
        for (int i = 0; i < m; i++) {
            int32_t bi = 0;
            float bs = -INFINITY;
            for (size_t j = 0; j < nk; j++) {
                float s;
                if (sim) s = sim[(size_t)i * nk + j];
                else { s = 0; for (int c = 0; c < dim; c++) s += q[(q0 + i) * dim + c] * k[j * dim + c]; }
                if (s > bs) { bs = s; bi = (int32_t)j; }
            }
            best[q0 + i] = bi;
            if (best_sim) best_sim[q0 + i] = bs;
        }
    }
    free(sim);
}
