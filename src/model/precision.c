/* BF16 matmuls and bf16 storage of matmul weights (docs/train.md "Precision").
 * A matmul weight (block linear W, LM head, BERT pooler) may carry data_bf16, the bf16 bits its matmuls read:
 *   precision bf16, f32 weight:  data (master, what the optimizer updates) + data_bf16 (copy, refreshed lazily);
 *   frozen weight stored bf16:   data == NULL, data_bf16 only (used through bf16 matmuls at either precision).
 * Copies go stale when weights change (ftc_model_weights_changed after an optimizer step; merges) and are
 * refreshed at the next forward, so gradient accumulation converts once per optimizer step. */
#include "model_internal.h"
#include "ftc/matmul.h"
#include "ftc/ops.h"
#include "ftc/quant.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ftc_precision_name(ftc_precision p) { return p == FTC_PREC_BF16 ? "bf16" : "fp32"; }
ftc_precision ftc_model_precision(const ftc_model *m) { return m->precision; }

bool ftc_model_is_matmul_weight(const ftc_model *m, int i) {
    if (i < 0 || i >= m->n_params || m->params[i].is_lora) return false;
    if (i == m->lm_head || i == m->pooler_w) return true;
    for (int l = 0; l < m->L; l++) {
        const layer_params *lp = &m->layers[l];
        const linear_mod *mods[] = {&lp->qkv, &lp->q, &lp->k, &lp->v, &lp->o, &lp->up, &lp->gate, &lp->down};
        for (int j = 0; j < 8; j++)
            if (mods[j]->w == i) return true;
    }
    return false;
}

/* A tied LM head is also the embedding table, which lookups read in f32: it keeps its f32 value in bf16 storage. */
bool ftc_model_bf16_storable(const ftc_model *m, int i) {
    return ftc_model_is_matmul_weight(m, i) && i != m->wte && i != m->wpe && i != m->wtt;
}

/* A quantized base also packs a causal LM's token table, tied to the LM head or not (the embedding lookup
 * dequantizes the rows it reads, ftc_model_embed_forward): on SmolLM2 the tied head is half the bytes of a decoded
 * token, on llama-1b the untied table a fifth of a q4_0 base's memory. Encoders' and classify models' tables and
 * position tables stay f32. */
bool ftc_model_quant_storable(const ftc_model *m, int i) {
    return ftc_model_bf16_storable(m, i) || (i >= 0 && i == m->wte && m->lm_head >= 0);
}

/* llama-quantize's rule: the output tensor (a tied token_embd is the same tensor) ftc_quant_type_for_output's type,
 * an untied token_embd the file's type, as the block linears. NF4DQ's scales span rows, and the embedding lookup
 * dequantizes single rows: an untied token table of an nf4dq base takes NF4 (the same 4-bit codes, each block's
 * absmax in f32). */
int ftc_model_quant_type_of(const ftc_model *m, int i, int qtype) {
    const ftc_param *p = &m->params[i];
    int64_t I = p->numel / p->shape[0];
    if (i == m->lm_head) return ftc_quant_type_for_output(qtype, I);
    if (i == m->wte && qtype == FTC_QUANT_NF4DQ) qtype = FTC_QUANT_NF4;
    return ftc_quant_type_for_row(qtype, I);
}

void ftc_model_embed_forward(ftc_model *m, float *out, const int32_t *ids, const int32_t *pos, const int32_t *types,
                             int N) {
    const ftc_param *p = &m->params[m->wte];
    const float *wpe = pos ? P(m, m->wpe) : NULL, *wtt = types ? P(m, m->wtt) : NULL;
    if (p->data_q) ftc_embedding_forward_q(out, ids, pos, types, p->data_q, p->qtype, wpe, wtt, N, m->C);
    else ftc_embedding_forward(out, ids, pos, types, P(m, m->wte), wpe, wtt, N, m->C);
}

static uint16_t *alloc_bf16(int64_t n) {
    void *p = NULL;
    if (ftc_mem_alloc_weights(&p, (size_t)(n > 0 ? n : 1) * sizeof(uint16_t))) return NULL;
    return p;
}

typedef struct {
    const float *in;
    void *out;
    int64_t n, I;
    size_t rb;
    int qtype;
    float offset; /* NF4DQ: the weight's mean absmax */
    int64_t g0;   /* the row (NF4DQ: the group) the piece in `in` starts at */
} convert_job;

enum { BLK = 1 << 16 };

static void convert_range(void *ctx, int64_t lo, int64_t hi) {
    const convert_job *j = ctx;
    int64_t o = lo * BLK, end = hi * BLK < j->n ? hi * BLK : j->n;
    ftc_f32_to_bf16_n(j->in + o, (uint16_t *)j->out + o, (size_t)(end - o));
}

/* f32 -> bf16 in blocks over the pool (a 100M-value LM head would otherwise cost one core ~0.1 s) */
static void convert(const float *in, uint16_t *out, int64_t n) {
    convert_job j = {in, out, n, 0, 0, 0, 0.0f, 0};
    ftc_parallel_range((n + BLK - 1) / BLK, n > 4 * BLK, convert_range, &j);
}

/* rows g0 + [lo, hi) of the weight, whose values are at j->in + lo * I (a piece starting at row g0) */
static void quantize_range(void *ctx, int64_t lo, int64_t hi) {
    const convert_job *j = ctx;
    for (int64_t o = lo; o < hi; o++)
        ftc_quantize_row(j->qtype, j->in + o * j->I, (uint8_t *)j->out + (size_t)(j->g0 + o) * j->rb, j->I);
}
/* NF4DQ: groups of 256 blocks (j->n: the weight's rows O; j->in: the values from group j->g0 on), independent once
 * the mean absmax (offset) is known */
static void nf4dq_range(void *ctx, int64_t lo, int64_t hi) {
    const convert_job *j = ctx;
    const float *x = j->in + lo * FTC_NF4DQ_GROUP * 64;
    ftc_nf4dq_quantize_groups(x, j->out, j->n, j->I, j->offset, j->g0 + lo, j->g0 + hi);
}

enum { PACK_CHUNK = 1 << 20 }; /* values a piece: a 4 MB f32 scratch */

ftc_status ftc_model_pack(int kind, void *dst, int64_t O, int64_t I, ftc_values_fn fill, void *ctx, ftc_err *err) {
    int64_t n = O * I, gvals = (int64_t)FTC_NF4DQ_GROUP * 64;
    bool dq = kind == FTC_QUANT_NF4DQ;
    /* pieces end on rows (whole blocks) for the row quantizers, on groups of 256 blocks for NF4DQ */
    int64_t unit = dq ? gvals : kind >= 0 ? I : 1, chunk = unit >= PACK_CHUNK ? unit : PACK_CHUNK / unit * unit;
    if (n <= 0) return FTC_OK;
    if (chunk > n) chunk = n;
    float *scratch = NULL, *absmax = NULL;
    if (kind != FTC_PACK_F32 && !(scratch = malloc((size_t)chunk * sizeof(float))))
        return ftc_errf(err, FTC_E_NOMEM, "out of memory for a %lld-value scratch", (long long)chunk);
    if (dq && !(absmax = malloc((size_t)(n / 64) * sizeof(float)))) {
        free(scratch);
        return ftc_errf(err, FTC_E_NOMEM, "out of memory for %lld block scales", (long long)(n / 64));
    }
    ftc_status s = FTC_OK;
    const float *v;
    /* NF4DQ's offset is the mean absmax of the whole weight: a first pass computes every block's */
    for (int64_t a = 0; dq && !s && a < n; a += chunk) {
        int64_t b = a + chunk < n ? a + chunk : n;
        if (!(s = fill(ctx, a, b, scratch, &v, err))) ftc_nf4_absmax_blocks(v, (b - a) / 64, absmax + a / 64);
    }
    convert_job j = {NULL, dst, O, I, kind >= 0 ? ftc_quant_row_bytes(kind, I) : 0, kind, 0.0f, 0};
    if (dq && !s) j.offset = ftc_nf4dq_offset_absmax(absmax, n / 64);
    for (int64_t a = 0; !s && a < n; a += chunk) {
        int64_t b = a + chunk < n ? a + chunk : n;
        float *room = kind == FTC_PACK_F32 ? (float *)dst + a : scratch;
        if ((s = fill(ctx, a, b, room, &v, err))) break;
        j.in = v;
        if (kind == FTC_PACK_F32) {
            if (v != room) memcpy(room, v, (size_t)(b - a) * sizeof(float));
        } else if (kind == FTC_PACK_BF16) {
            ftc_f32_to_bf16_n(v, (uint16_t *)dst + a, (size_t)(b - a));
        } else if (dq) {
            j.g0 = a / gvals;
            int64_t groups = (b - a + gvals - 1) / gvals;
            ftc_parallel_range(groups, b - a > 65536, nf4dq_range, &j); /* the job of group 0 writes the offset */
        } else {
            j.g0 = a / I;
            ftc_parallel_range((b - a) / I, b - a > 65536, quantize_range, &j);
        }
    }
    free(scratch);
    free(absmax);
    return s;
}

ftc_status ftc_model_set_precision(ftc_model *m, ftc_precision prec, ftc_err *err) {
    if (prec != FTC_PREC_FP32 && prec != FTC_PREC_BF16) return ftc_errf(err, FTC_E_USAGE, "unknown precision %d", prec);
    for (int i = 0; i < m->n_params; i++) {
        ftc_param *p = &m->params[i];
        if (!p->data || !ftc_model_is_matmul_weight(m, i)) continue; /* bf16-only weights stay as they are */
        if (prec == FTC_PREC_BF16 && !p->data_bf16) {
            p->data_bf16 = alloc_bf16(p->numel);
            if (!p->data_bf16) return ftc_errf(err, FTC_E_NOMEM, "out of memory for the bf16 copy of %s", p->name);
            convert(p->data, p->data_bf16, p->numel);
        } else if (prec == FTC_PREC_FP32 && p->data_bf16) {
            free(p->data_bf16);
            p->data_bf16 = NULL;
        }
    }
    m->precision = prec;
    return FTC_OK;
}

void ftc_model_weights_changed(ftc_model *m) { m->bf16_stale_trainable = true; }

void ftc_model_refresh_bf16(ftc_model *m) {
    if (!m->bf16_stale_all && !m->bf16_stale_trainable) return;
    for (int i = 0; i < m->n_params; i++) {
        ftc_param *p = &m->params[i];
        if (p->data && p->data_bf16 && (m->bf16_stale_all || p->trainable)) convert(p->data, p->data_bf16, p->numel);
    }
    m->bf16_stale_all = m->bf16_stale_trainable = false;
}

ftc_status ftc_model_store_frozen_bf16(ftc_model *m, ftc_err *err) {
    ftc_model_refresh_bf16(m);
    bool changed = false;
    for (int i = 0; i < m->n_params; i++) {
        ftc_param *p = &m->params[i];
        if (p->trainable || !p->data || !ftc_model_bf16_storable(m, i)) continue;
        if (!p->data_bf16) {
            p->data_bf16 = alloc_bf16(p->numel);
            if (!p->data_bf16) return ftc_errf(err, FTC_E_NOMEM, "out of memory storing %s in bf16", p->name);
            convert(p->data, p->data_bf16, p->numel);
        }
        p->data = NULL; /* ftc_model_alloc_params gives it no f32 storage */
        m->offsets[i] = -1;
        changed = true;
    }
    return changed ? ftc_model_alloc_params(m, err) : FTC_OK;
}

ftc_status ftc_model_use_bf16_weights(ftc_model *m, ftc_err *err) {
    for (int i = 0; i < m->n_params; i++) ftc_model_set_trainable(m, i, false);
    ftc_status s = ftc_model_store_frozen_bf16(m, err);
    return s ? s : ftc_model_set_precision(m, FTC_PREC_BF16, err);
}

ftc_status ftc_model_use_quant_weights(ftc_model *m, int qtype, ftc_err *err) {
    for (int i = 0; i < m->n_params; i++) ftc_model_set_trainable(m, i, false);
    return ftc_model_store_frozen_quant(m, qtype, err);
}

/* values [a, b) of a weight held in memory: its f32 value as it is, or its bf16 bits widened into the scratch */
static ftc_status param_values(void *ctx, int64_t a, int64_t b, float *scratch, const float **vals, ftc_err *err) {
    const ftc_param *p = ctx;
    (void)err;
    if (p->data) *vals = p->data + a;
    else ftc_bf16_to_f32_n(p->data_bf16 + a, scratch, (size_t)(b - a)), *vals = scratch;
    return FTC_OK;
}

/* Quantizes frozen weight i from its f32 value or bf16 bits into data_q (piece by piece: no f32 copy of a bf16
 * weight); false (nothing changed) when its input size does not fit the block. */
static ftc_status quantize_param(ftc_model *m, int i, int qtype, bool *done, ftc_err *err) {
    ftc_param *p = &m->params[i];
    int64_t O = p->shape[0], I = p->numel / O;
    *done = false;
    qtype = ftc_model_quant_type_of(m, i, qtype);
    if (qtype < 0) return FTC_OK;
    void *q = NULL;
    if (ftc_mem_alloc_weights(&q, ftc_quant_tensor_bytes(qtype, O, I)))
        return ftc_errf(err, FTC_E_NOMEM, "out of memory storing %s in %s", p->name, ftc_quant_name(qtype));
    ftc_status s = ftc_model_pack(qtype, q, O, I, param_values, p, err);
    if (s) {
        free(q);
        return s;
    }
    free(p->data_bf16);
    p->data_bf16 = NULL;
    p->data_q = q;
    p->qtype = qtype;
    *done = true;
    return FTC_OK;
}

ftc_status ftc_model_store_frozen_quant(ftc_model *m, int qtype, ftc_err *err) {
    if (!ftc_quant_supported(qtype))
        return ftc_errf(err, FTC_E_USAGE, "quantized base: type %d is not one of q8_0, q4_0, q4_1, q4_k, nf4, nf4dq", qtype);
    ftc_model_refresh_bf16(m);
    bool changed = false;
    for (int i = 0; i < m->n_params; i++) {
        ftc_param *p = &m->params[i];
        if (p->trainable || p->data_q || !ftc_model_quant_storable(m, i)) continue;
        bool done;
        ftc_status s = quantize_param(m, i, qtype, &done, err);
        if (s) return s;
        if (!done) continue; /* no block fits its rows: stays as it is */
        p->data = NULL;
        m->offsets[i] = -1;
        changed = true;
    }
    return changed ? ftc_model_alloc_params(m, err) : FTC_OK;
}

ftc_status ftc_model_inflate_f32(ftc_model *m, int i, ftc_err *err) {
    ftc_param *p = &m->params[i];
    if (p->data || (!p->data_bf16 && !p->data_q)) return FTC_OK;
    float *tmp = malloc((size_t)p->numel * sizeof(float));
    if (!tmp) return ftc_errf(err, FTC_E_NOMEM, "out of memory restoring %s to f32", p->name);
    if (p->data_q) { /* dequantized: the values the quantized matmuls used */
        int64_t O = p->shape[0], I = p->numel / O;
        ftc_dequantize_tensor(p->qtype, p->data_q, tmp, O, I);
        free(p->data_q);
        p->data_q = NULL;
    } else
        ftc_bf16_to_f32_n(p->data_bf16, tmp, (size_t)p->numel);
    p->data = tmp;
    m->offsets[i] = -2; /* a private f32 value: ftc_model_alloc_params moves it into the buffer and frees it */
    ftc_status s = ftc_model_alloc_params(m, err);
    if (m->precision != FTC_PREC_BF16 && p->data) { /* fp32 matmuls from now on: the copy is not needed */
        free(p->data_bf16);
        p->data_bf16 = NULL;
    }
    return s;
}

void ftc_model_base_storage(const ftc_model *m, char *out, size_t n) {
    /* -1: bf16 only, -2: f32; else the block type (nf4 numbers are outside ggml's: no array by type) */
    int kinds[8], counts[8], nk = 0;
    for (int i = 0; i < m->n_params; i++) {
        const ftc_param *p = &m->params[i];
        if (!ftc_model_quant_storable(m, i)) continue;
        int k = p->data_q ? p->qtype : p->data ? -2 : -1, j = 0;
        while (j < nk && kinds[j] != k) j++;
        if (j == nk && nk < 8) kinds[nk] = k, counts[nk++] = 0;
        if (j < nk) counts[j]++;
    }
    size_t len = 0;
    out[0] = 0;
    for (int j = 0; j < nk && len < n; j++)
        len += (size_t)snprintf(out + len, n - len, "%s%s x %d", len ? ", " : "",
                                kinds[j] == -1 ? "bf16" : kinds[j] == -2 ? "fp32" : ftc_quant_name(kinds[j]), counts[j]);
}

int64_t ftc_model_param_bytes(const ftc_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->n_params; i++) {
        const ftc_param *p = &m->params[i];
        n += (p->data ? 4 : 0) * p->numel + (p->data_bf16 ? 2 : 0) * p->numel;
        if (p->data_q) n += (int64_t)ftc_quant_tensor_bytes(p->qtype, p->shape[0], p->numel / p->shape[0]);
    }
    return n;
}

static const uint16_t *bf16_weight(const ftc_model *m, int w) {
    const ftc_param *p = &m->params[w];
    return p->data_bf16 && (m->precision == FTC_PREC_BF16 || !p->data) ? p->data_bf16 : NULL;
}

/* A packed (quantized) frozen weight's training products: bf16 operands with f32 accumulation, as a bf16 base
 * computes (QLoRA's compute dtype), under --precision bf16, and at fp32 where this CPU runs vdpbf16ps at the FMA's
 * instruction rate (ftc_matmul_bf16_dot() "dpbf16": AMD Zen 4, twice the f32 GEMM's multiply-adds; a q4_0 base's
 * LoRA step on gpt2-small took 1.42x the bf16 base's CPU time with f32 products there, bench/RESULTS.md
 * 2026-12-04). Elsewhere f32 products (on the Intel Xeon vdpbf16ps runs at a third of the FMA rate). The
 * rounding to bf16 (8 bits of mantissa) adds far less error than the 4- or 8-bit weights carry. */
static bool packed_bf16_products(const ftc_model *m) {
    return m->precision == FTC_PREC_BF16 || strcmp(ftc_matmul_bf16_dot(), "dpbf16") == 0;
}

void ftc_model_linear_forward(ftc_model *m, int w, int b, float *y, const float *x, int N, int I, int O) {
    const ftc_param *pw = &m->params[w];
    if (pw->data_q) {
        ftc_linear_forward_q(y, x, pw->data_q, pw->qtype, P(m, b), N, I, O, packed_bf16_products(m));
        return;
    }
    const uint16_t *w16 = bf16_weight(m, w);
    if (w16) ftc_linear_forward_bf16(y, x, w16, P(m, b), N, I, O);
    else ftc_linear_forward(y, x, P(m, w), P(m, b), N, I, O);
}

void ftc_model_linear_forward_gen(ftc_model *m, int w, int b, float *y, const float *x, int N, int I, int O, bool gemm) {
    const ftc_param *pw = &m->params[w];
    if (pw->data_q && m->precision != FTC_PREC_BF16 && ftc_qmatmul_q8act_supported(pw->qtype, I))
        ftc_linear_forward_q8act(y, x, pw->data_q, pw->qtype, P(m, b), N, I, O, gemm);
    else ftc_model_linear_forward(m, w, b, y, x, N, I, O);
}

bool ftc_model_linear_forward_gen_multi(ftc_model *m, const int *w, const int *b, float *const *y, const int *O, int n,
                                       const float *x, int N, int I, void (*ep)(void *ctx, int o0, int o1),
                                       void *ep_ctx) {
    enum { MAXP = 4 };
    if (n < 1 || n > MAXP || m->precision == FTC_PREC_BF16) return false;
    const ftc_param *p0 = &m->params[w[0]];
    if (!p0->data_q || !ftc_qmatmul_q8act_supported(p0->qtype, I)) return false;
    const void *W[MAXP];
    const float *bias[MAXP];
    for (int p = 0; p < n; p++) {
        const ftc_param *pw = &m->params[w[p]];
        if (!pw->data_q || pw->qtype != p0->qtype) return false;
        W[p] = pw->data_q, bias[p] = P(m, b[p]);
    }
    ftc_linear_forward_q8act_multi(y, x, W, p0->qtype, bias, O, n, N, I, ep, ep_ctx);
    return true;
}

void ftc_model_linear_backward(ftc_model *m, int w, int b, float *dx, const float *dy, const float *x, int N, int I,
                           int O) {
    const ftc_param *pw = &m->params[w];
    if (pw->data_q) { /* frozen: no weight gradient */
        ftc_linear_backward_q(dx, G(m, b), dy, pw->data_q, pw->qtype, N, I, O, packed_bf16_products(m));
        return;
    }
    const uint16_t *w16 = bf16_weight(m, w);
    if (w16) ftc_linear_backward_bf16(dx, G(m, w), G(m, b), dy, x, w16, N, I, O);
    else ftc_linear_backward(dx, G(m, w), G(m, b), dy, x, P(m, w), N, I, O);
}
