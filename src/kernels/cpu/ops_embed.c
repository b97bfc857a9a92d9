/* Token (+ learned position) (+ token type) embeddings. */
#include "ftc/ops.h"
#include "ftc/quant.h"
#include "ftc/threads.h"
#include <string.h>

typedef struct {
    float *out;
    const int32_t *ids, *pos, *types;
    const float *wte, *wpe, *wtt, *dout;
    int N, C;
    const uint8_t *wte_q; /* ftc_embedding_forward_q: the table's packed rows (row_bytes each, type qtype) */
    size_t row_bytes;
    int qtype;
} embed_job;

static void embed_fwd_range(void *ctx, int64_t lo, int64_t hi) {
    const embed_job *j = ctx;
    const int32_t *ids = j->ids, *pos = j->pos, *types = j->types;
    const float *wte = j->wte, *wpe = j->wpe, *wtt = j->wtt;
    int C = j->C;
    for (int n = (int)lo; n < (int)hi; n++) {
        float *out = j->out;
        float *o = out + (size_t)n * C;
        if (j->wte_q) ftc_dequantize_row(j->qtype, j->wte_q + (size_t)ids[n] * j->row_bytes, o, C);
        else memcpy(o, wte + (size_t)ids[n] * C, sizeof(float) * C);
        if (wpe) {
            const float *p = wpe + (size_t)pos[n] * C;
            for (int c = 0; c < C; c++) o[c] += p[c];
        }
        if (wtt) {
            const float *t = wtt + (size_t)types[n] * C;
            for (int c = 0; c < C; c++) o[c] += t[c];
        }
    }
}

/* out[N,C]: out[n,:] = wte[ids[n],:] + wpe[pos[n],:] + wtt[types[n],:]  (wpe/wtt optional) */
void ftc_embedding_forward(float *out, const int32_t *ids, const int32_t *pos, const int32_t *types, const float *wte,
                       const float *wpe, const float *wtt, int N, int C) {
    embed_job j = {out, ids, pos, types, wte, wpe, wtt, NULL, N, C, NULL, 0, 0};
    ftc_parallel_range(N, N > 64, embed_fwd_range, &j);
}

/* The same with the token table block-quantized: each looked-up row dequantized into out, then the rest added in
 * the same order, so the result is ftc_embedding_forward's on the dequantized table, bit for bit. */
void ftc_embedding_forward_q(float *out, const int32_t *ids, const int32_t *pos, const int32_t *types, const void *wte_q,
                             int qtype, const float *wpe, const float *wtt, int N, int C) {
    embed_job j = {out, ids, pos, types, NULL, wpe, wtt, NULL, N, C, wte_q, ftc_quant_row_bytes(qtype, C), qtype};
    ftc_parallel_range(N, N > 64, embed_fwd_range, &j);
}

/* dwte[ids[n],:] += dout[n,:] (same for dwpe/dwtt). Rows may repeat, so rows are visited in order n = 0..N-1;
 * threads split the channels instead, which keeps every sum in a fixed order (deterministic). */
enum { CB = 256 };

static void scatter_range(void *ctx, int64_t lo, int64_t hi) {
    const embed_job *j = ctx;
    float *dtable = j->out;
    const int32_t *rows = j->ids;
    const float *dout = j->dout;
    int N = j->N, C = j->C;
    for (int blk = (int)lo; blk < (int)hi; blk++) {
        int c0 = blk * CB, c1 = c0 + CB < C ? c0 + CB : C;
        for (int n = 0; n < N; n++) {
            float *d = dtable + (size_t)rows[n] * C;
            const float *g = dout + (size_t)n * C;
            for (int c = c0; c < c1; c++) d[c] += g[c];
        }
    }
}

static void scatter_add_rows(float *dtable, const int32_t *rows, const float *dout, int N, int C) {
    embed_job j = {dtable, rows, NULL, NULL, NULL, NULL, NULL, dout, N, C, NULL, 0, 0};
    ftc_parallel_range((C + CB - 1) / CB, (long)N * C > 65536, scatter_range, &j);
}

void ftc_embedding_backward(float *dwte, float *dwpe, float *dwtt, const float *dout, const int32_t *ids,
                        const int32_t *pos, const int32_t *types, int N, int C) {
    if (dwte) scatter_add_rows(dwte, ids, dout, N, C);
    if (dwpe) scatter_add_rows(dwpe, pos, dout, N, C);
    if (dwtt) scatter_add_rows(dwtt, types, dout, N, C);
}
