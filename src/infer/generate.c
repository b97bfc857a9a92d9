/* Incremental decoding for the decoder families (GPT-2, Llama, Mistral, Qwen2): every position's keys and
 * values stay in a cache, so each new token costs one row through the blocks and attention over the cache,
 * never a recomputation of the prefix. The arithmetic is the model's own block (model_internal.h) in
 * inference form: no dropout, no saved activations, LoRA adapters applied when still unmerged. */
#include "ftc/infer.h"
#include "ftc/matmul.h"
#include "ftc/ops.h"
#include "ftc/quant.h"
#include "ftc/safetensors.h"
#include "model/model_internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A prompt runs through the blocks PREFILL positions at a time: each matmul packs its weight once per chunk,
 * so longer chunks spend less of the prefill packing (64 -> 256: the packing was a third of the GEMM time at 64
 * rows). The scratch rows grow to the longest chunk run so far (decoding alone needs CHUNK). Attention takes
 * the chunk's queries CHUNK at a time, which bounds its probability scratch (H x CHUNK x capacity). */
enum { CHUNK = 64, PREFILL = 256 };
/* A Q8_0/Q4_0/Q4_1 base at f32 precision takes 8-bit activations in generation (issue 24, llama.cpp's way): one
 * decoding step, a batch of sequences (ftc_model_decode_batch, always the row kernels of ftc_qmatmul_forward_q8act,
 * so that a sequence gets the same bits in any batch) and prompt chunks of at most Q8ACT_ROWS tokens take the row
 * kernels; longer prompt chunks the int8 GEMM tile (ftc_qgemm_q8act_forward), which beats both the row kernels
 * (they read each W row once per 8 rows of X) and the f32 panels (decoded W times f32 X) past 16 rows. */
enum { Q8ACT_ROWS = 16 };
/* An f16 or q8_0 cache: a chunk of at least this many positions (a prompt) widens the layer's cached rows to f32 and
 * takes ftc_attention_decode_forward's GEMMs; fewer (decoding) read the halves in ftc_attention_decode_forward_f16
 * (the blocks in _q8_0). */
enum { WIDEN_ROWS = 8 };

struct ftc_kv_cache {
    ftc_model *m;
    int len, cap, max_pos;
    void **k, **v;   /* per layer [cap, kvdim]: floats, IEEE halves (f16) or kvdim / 32 Q8_0 blocks a row (q8_0) */
    ftc_kv_type type; /* FTC_KV_F16: keys and values stored as halves (rounded to nearest even); FTC_KV_Q8_0: as
                       * Q8_0 blocks (ftc_quantize_row) */
    float *kst, *vst; /* f16, q8_0: a chunk's new keys and values in f32 [rows, kvdim] before they are stored */
    float *wide;     /* f16, q8_0: one layer's cached keys then values widened [2, cap, kvdim] for a prompt chunk's GEMM */
    int32_t *ids;    /* [cap] the tokens whose keys and values are cached */
    int32_t pos[PREFILL];
    /* scratch for one chunk of `rows` positions */
    int rows;
    float *x, *a, *q, *qkv, *attn, *o, *up, *gate, *act, *down, *mean, *rstd, *lora, *att;
    size_t att_floats;
    bool prompt; /* these rows are a prompt chunk (one sequence), not a batch of sequences: past Q8ACT_ROWS rows the
                  * quantized products take the int8 GEMM */
};

static void free_layers(ftc_kv_cache *c) {
    if (c->k)
        for (int i = 0; i < c->m->L; i++) free(c->k[i]), free(c->v[i]);
    free(c->k), free(c->v);
    c->k = c->v = NULL;
}

void ftc_kv_cache_free(ftc_kv_cache *c) {
    if (!c) return;
    free_layers(c);
    free(c->ids);
    free(c->x), free(c->a), free(c->q), free(c->qkv), free(c->attn), free(c->o), free(c->up), free(c->gate);
    free(c->act), free(c->down), free(c->mean), free(c->rstd), free(c->lora), free(c->att);
    free(c->kst), free(c->vst), free(c->wide);
    free(c);
}

size_t ftc_kv_type_bytes(ftc_kv_type t, size_t n) {
    return t == FTC_KV_Q8_0 ? n / 32 * sizeof(ftc_block_q8_0) : n * (t == FTC_KV_F16 ? 2 : 4);
}

const char *ftc_kv_type_name(ftc_kv_type t) { return t == FTC_KV_Q8_0 ? "q8_0" : t == FTC_KV_F16 ? "f16" : "f32"; }

bool ftc_kv_type_parse(const char *name, ftc_kv_type *out) {
    for (int t = FTC_KV_F32; t <= FTC_KV_Q8_0; t++)
        if (!strcmp(name, ftc_kv_type_name((ftc_kv_type)t))) return *out = (ftc_kv_type)t, true;
    return false;
}

/* Bytes of n cached rows of the cache's type */
static size_t row_bytes(const ftc_kv_cache *c, size_t n) { return ftc_kv_type_bytes(c->type, n * (size_t)c->m->kvdim); }

/* Grows the cache to hold at least `need` positions (doubling, capped at the model's context). */
static ftc_status grow(ftc_kv_cache *c, int need, ftc_err *err) {
    if (need <= c->cap) return FTC_OK;
    if (need > c->max_pos)
        return ftc_errf(err, FTC_E_INPUT, "context full: %d positions needed, the model has %d", need, c->max_pos);
    int cap = c->cap ? c->cap : 64;
    while (cap < need) cap *= 2;
    if (cap > c->max_pos) cap = c->max_pos;
    size_t kv = (size_t)c->m->kvdim;
    for (int i = 0; i < c->m->L; i++) {
        void *k = realloc(c->k[i], row_bytes(c, (size_t)cap));
        if (k) c->k[i] = k;
        void *v = realloc(c->v[i], row_bytes(c, (size_t)cap));
        if (v) c->v[i] = v;
        if (!k || !v) return ftc_errf(err, FTC_E_NOMEM, "out of memory for a KV cache of %d positions", cap);
    }
    if (c->type != FTC_KV_F32) {
        float *w = realloc(c->wide, 2 * (size_t)cap * kv * sizeof(float));
        if (!w) return ftc_errf(err, FTC_E_NOMEM, "out of memory for a KV cache of %d positions", cap);
        c->wide = w;
    }
    int32_t *ids = realloc(c->ids, (size_t)cap * sizeof *ids);
    if (!ids) return ftc_errf(err, FTC_E_NOMEM, "out of memory for a KV cache of %d positions", cap);
    c->ids = ids;
    size_t att = (size_t)c->m->H * CHUNK * cap;
    float *a = realloc(c->att, att * sizeof(float));
    if (!a) return ftc_errf(err, FTC_E_NOMEM, "out of memory for a KV cache of %d positions", cap);
    c->att = a, c->att_floats = att;
    c->cap = cap;
    return FTC_OK;
}

/* Scratch rows for chunks of up to N positions (N <= PREFILL), grown, never shrunk. */
static ftc_status ensure_rows(ftc_kv_cache *c, int N, ftc_err *err) {
    if (N <= c->rows) return FTC_OK;
    ftc_model *m = c->m;
    size_t n = (size_t)N, C = (size_t)m->C, F = (size_t)m->F, Q = (size_t)m->qdim, KV = (size_t)m->kvdim;
    int r = ftc_model_max_lora_rank(m);
    struct { float **p; size_t floats; bool want; } bufs[] = {
        {&c->x, n * C, true}, {&c->a, n * C, true}, {&c->q, n * Q, true}, {&c->attn, n * Q, true},
        {&c->qkv, n * (Q + 2 * KV), m->fused_qkv}, {&c->o, n * C, true}, {&c->down, n * C, true},
        {&c->up, n * F, true}, {&c->act, n * F, true}, {&c->gate, n * F, m->swiglu}, {&c->mean, n, true},
        {&c->rstd, n, true}, {&c->lora, n * (size_t)(r > 0 ? r : 1), r > 0}, {&c->kst, n * KV, c->type != FTC_KV_F32},
        {&c->vst, n * KV, c->type != FTC_KV_F32},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        if (!bufs[i].want) continue;
        float *p = realloc(*bufs[i].p, bufs[i].floats * sizeof(float));
        if (!p) return ftc_errf(err, FTC_E_NOMEM, "out of memory for the decoding buffers (%d positions)", N);
        *bufs[i].p = p;
    }
    c->rows = N;
    return FTC_OK;
}

ftc_status ftc_kv_cache_create(ftc_model *m, int capacity, ftc_kv_cache **out, ftc_err *err) {
    return ftc_kv_cache_create_typed(m, capacity, FTC_KV_F32, out, err);
}

ftc_status ftc_kv_cache_create_typed(ftc_model *m, int capacity, ftc_kv_type type, ftc_kv_cache **out, ftc_err *err) {
    *out = NULL;
    if (type != FTC_KV_F32 && type != FTC_KV_F16 && type != FTC_KV_Q8_0)
        return ftc_errf(err, FTC_E_USAGE, "unknown KV cache type %d", (int)type);
    if (!m->causal || !m->pre_norm || m->task != FTC_TASK_CAUSAL_LM || m->lm_head < 0)
        return ftc_errf(err, FTC_E_UNSUPPORTED, "%s model loaded for %s: generation needs a decoder (GPT-2, Llama "
                        "family) with its language-model head", m->cfg.model_type,
                        m->task == FTC_TASK_CAUSAL_LM ? "causal-lm" : m->task == FTC_TASK_CLASSIFY ? "classify" : "encode");
    if (type == FTC_KV_Q8_0 && m->kvdim % 32)
        return ftc_errf(err, FTC_E_UNSUPPORTED, "a q8_0 KV cache stores each position's keys in blocks of 32 values: "
                        "this model's key/value width is %d (%d heads of %d), not a multiple of 32; use f16 or f32",
                        m->kvdim, m->Hkv, m->D);
    ftc_kv_cache *c = calloc(1, sizeof *c);
    if (!c) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    c->m = m;
    c->type = type;
    c->max_pos = m->cfg.max_positions > 0 ? m->cfg.max_positions : 1 << 20;
    c->k = calloc((size_t)m->L, sizeof(void *));
    c->v = calloc((size_t)m->L, sizeof(void *));
    ftc_status s = !c->k || !c->v ? ftc_errf(err, FTC_E_NOMEM, "out of memory for the decoding buffers")
                                  : ensure_rows(c, CHUNK, err);
    if (s) {
        ftc_kv_cache_free(c);
        return s;
    }
    s = grow(c, capacity < 1 ? 1 : capacity > c->max_pos ? c->max_pos : capacity, err);
    if (s) {
        ftc_kv_cache_free(c);
        return s;
    }
    *out = c;
    return FTC_OK;
}

void ftc_kv_cache_reset(ftc_kv_cache *c) { c->len = 0; }
int ftc_kv_cache_len(const ftc_kv_cache *c) { return c->len; }
ftc_kv_type ftc_kv_cache_type(const ftc_kv_cache *c) { return c->type; }

/* n rows of keys or values src [n, kvdim] stored into a layer's cache dst from row `at`: floats as they are; halves
 * rounded to nearest, ties to even (ftc_f32_to_f16's, vcvtps2ph where the CPU has it); Q8_0 blocks as
 * ftc_quantize_row makes them (ggml's quantize_row_q8_0_ref: d = max|x| / 127, q = round(x / d)) */
static void store_rows(const ftc_kv_cache *c, void *dst, int at, const float *src, int n) {
    const size_t vals = (size_t)n * c->m->kvdim;
    char *d = (char *)dst + row_bytes(c, (size_t)at);
    if (c->type == FTC_KV_F16) ftc_f32_to_f16_n(src, (uint16_t *)d, vals);
    else if (c->type == FTC_KV_Q8_0) ftc_quantize_row(FTC_GGML_Q8_0, src, d, (int64_t)vals);
    else memcpy(d, src, vals * sizeof(float));
}

/* rows 0..n-1 of a layer's f16 or q8_0 cache src as floats (exact: the values the decode rows compute with) */
static void widen_rows(const ftc_kv_cache *c, float *dst, const void *src, int n) {
    const size_t vals = (size_t)n * c->m->kvdim;
    if (c->type == FTC_KV_Q8_0) ftc_dequantize_row(FTC_GGML_Q8_0, src, dst, (int64_t)vals);
    else ftc_f16_to_f32_n(src, dst, vals);
}
int ftc_kv_cache_max_len(const ftc_kv_cache *c) { return c->max_pos; }
const int32_t *ftc_kv_cache_ids(const ftc_kv_cache *c) { return c->ids; }
void ftc_kv_cache_truncate(ftc_kv_cache *c, int len) {
    if (len >= 0 && len < c->len) c->len = len;
}

/* y = x W^T + b (+ scale * (x A^T) B^T for an unmerged LoRA adapter) */
static void linear_inf(ftc_kv_cache *c, const linear_mod *l, float *y, const float *x, int N) {
    ftc_model *m = c->m;
    ftc_model_linear_forward_gen(m, l->w, l->b, y, x, N, l->in, l->out, c->prompt && N > Q8ACT_ROWS);
    if (l->lora_a < 0) return;
    int r = (int)m->params[l->lora_a].shape[0];
    ftc_linear_forward(c->lora, x, P(m, l->lora_a), NULL, N, l->in, r);
    ftc_matmul(false, true, N, l->out, r, l->lora_scale, c->lora, r, P(m, l->lora_b), r, 1.0f, y, l->out);
}

/* n linear modules of one input x (q/k/v, up/gate): when none has an unmerged adapter and the rows are not a prompt
 * chunk's GEMM, one quantization of x and one parallel pass over all the products where their weights allow
 * (ftc_model_linear_forward_gen_multi: the same bits as one call each), ep (may be NULL) run on the columns in that
 * pass, and true; else one linear_inf each and false (ep not run) */
static bool linear_inf_multi(ftc_kv_cache *c, const linear_mod *const *ls, float *const *ys, int n, const float *x,
                             int N, void (*ep)(void *ctx, int o0, int o1), void *ep_ctx) {
    ftc_model *m = c->m;
    int w[4], b[4], O[4];
    bool ok = n <= 4 && !(c->prompt && N > Q8ACT_ROWS);
    for (int p = 0; ok && p < n; p++) {
        ok = ls[p]->lora_a < 0 && ls[p]->in == ls[0]->in;
        w[p] = ls[p]->w, b[p] = ls[p]->b, O[p] = ls[p]->out;
    }
    if (ok && ftc_model_linear_forward_gen_multi(m, w, b, ys, O, n, x, N, ls[0]->in, ep, ep_ctx)) return true;
    for (int p = 0; p < n; p++) linear_inf(c, ls[p], ys[p], x, N);
    return false;
}

/* Norms, rope, the residual adds and the MLP activation take a chunk's N rows in one call: each row is computed by
 * the same per-row function whatever N (so the bits of a row-by-row loop), and a prompt chunk's rows are past the
 * pool's threshold (ftc_parallel_range's `worth`; one decoding row is not and stays on the calling thread). */
static void norm_inf(ftc_kv_cache *c, float *y, const float *x, int w, int b, int N) {
    ftc_model *m = c->m;
    if (m->rmsnorm) ftc_rmsnorm_forward(y, c->rstd, x, P(m, w), N, m->C, m->cfg.norm_eps);
    else ftc_layernorm_forward(y, c->mean, c->rstd, x, P(m, w), P(m, b), N, m->C, m->cfg.norm_eps);
}

static void add_rows(float *x, const float *y, int N, int C) { ftc_add_forward(x, x, y, N * C); }

/* cs: the rows' cos/sin (ftc_rope_cos_sin, once a step for all layers) or NULL: computed here; the same bits */
static void rope_rows(float *x, const float *cs, const int32_t *pos, const float *inv_freq, int N, int H, int D) {
    if (cs) ftc_rope_forward_cs(x, cs, N, H, D);
    else ftc_rope_forward(x, pos, inv_freq, N, H, D);
}

static void embed_rows(ftc_model *m, float *x, const int32_t *ids, const int32_t *pos, int N) {
    for (int r = 0; r < N; r++) ftc_model_embed_forward(m, x + (size_t)r * m->C, ids + r, m->learned_pos ? pos + r : NULL, NULL, 1);
}

/* act = silu(gate) * up on columns [o0, o1) of the N rows: up/gate's epilogue, element-wise, so the bits of mlp_act */
typedef struct {
    ftc_kv_cache *c;
    int N;
} swiglu_ep;

static void swiglu_cols(void *ctx, int o0, int o1) {
    const swiglu_ep *e = ctx;
    ftc_swiglu_forward_cols(e->c->act, e->c->gate, e->c->up, e->N, e->c->m->F, o0, o1);
}

/* act = activation(up) (or silu(gate) * up), element-wise over the N rows */
static void mlp_act(ftc_kv_cache *c, int N) {
    ftc_model *m = c->m;
    const int n = N * m->F;
    if (m->swiglu) ftc_swiglu_forward(c->act, c->gate, c->up, n);
    else if (m->cfg.activation == FTC_ACT_GELU_TANH) ftc_gelu_tanh_forward(c->act, c->up, n);
    else ftc_gelu_erf_forward(c->act, c->up, n);
}

/* A block's first half for N rows: the norm, q/k/v (fused or one pass over the three), RoPE on q and k (rope false:
 * left to the caller). k and v receive the rows' keys and values; cs: the rows' cos/sin (ftc_rope_cos_sin) or NULL */
static void block_qkv(ftc_kv_cache *c, layer_params *l, int N, float *k, float *v, const float *cs, const int32_t *pos,
                      bool rope) {
    ftc_model *m = c->m;
    const int Q = m->qdim, KV = m->kvdim;
    norm_inf(c, c->a, c->x, l->n1_w, l->n1_b, N);
    if (m->fused_qkv) {
        int W = Q + 2 * KV;
        linear_inf(c, &l->qkv, c->qkv, c->a, N);
        for (int r = 0; r < N; r++) {
            const float *row = c->qkv + (size_t)r * W;
            memcpy(c->q + (size_t)r * Q, row, (size_t)Q * sizeof(float));
            memcpy(k + (size_t)r * KV, row + Q, (size_t)KV * sizeof(float));
            memcpy(v + (size_t)r * KV, row + Q + KV, (size_t)KV * sizeof(float));
        }
    } else {
        const linear_mod *ls[3] = {&l->q, &l->k, &l->v};
        float *ys[3] = {c->q, k, v};
        linear_inf_multi(c, ls, ys, 3, c->a, N, NULL, NULL);
    }
    if (m->rope && rope) {
        rope_rows(c->q, cs, pos, m->inv_freq, N, m->H, m->D);
        rope_rows(k, cs, pos, m->inv_freq, N, m->Hkv, m->D);
    }
}

/* c->x[r, o0:o1] += y[r, o0:o1] for the rows: a residual add as its product's epilogue (element-wise: add_rows'
 * bits) */
typedef struct {
    float *x;
    const float *y;
    int N, C;
} add_ep;

static void add_cols(void *ctx, int o0, int o1) {
    const add_ep *e = ctx;
    for (int r = 0; r < e->N; r++) {
        float *x = e->x + (size_t)r * e->C;
        const float *y = e->y + (size_t)r * e->C;
        for (int o = o0; o < o1; o++) x[o] += y[o];
    }
}

/* y = x W^T (linear_inf's product), then the residual c->x += y: in the product's parallel pass where
 * linear_inf_multi takes it (decoding rows), else after it */
static void linear_residual(ftc_kv_cache *c, const linear_mod *l, float *y, const float *x, int N) {
    add_ep e = {c->x, y, N, c->m->C};
    const linear_mod *ls[1] = {l};
    if (!linear_inf_multi(c, ls, &y, 1, x, N, add_cols, &e)) add_rows(c->x, y, N, c->m->C);
}

/* A block's second half for N rows once c->attn holds the attention: output projection, residual, norm, MLP,
 * residual (c->x updated) */
static void block_out(ftc_kv_cache *c, layer_params *l, int N) {
    ftc_model *m = c->m;
    linear_residual(c, &l->o, c->o, c->attn, N);
    norm_inf(c, c->a, c->x, l->n2_w, l->n2_b, N);
    bool act_done = false; /* SwiGLU computed in up/gate's parallel pass */
    if (m->swiglu) {
        const linear_mod *ls[2] = {&l->up, &l->gate};
        float *ys[2] = {c->up, c->gate};
        swiglu_ep e = {c, N};
        act_done = linear_inf_multi(c, ls, ys, 2, c->a, N, swiglu_cols, &e);
    } else
        linear_inf(c, &l->up, c->up, c->a, N);
    if (!act_done) mlp_act(c, N);
    linear_residual(c, &l->down, c->down, c->act, N);
}

/* N positions starting at c->len: c->x holds their embeddings on entry, their final hidden state on exit. */
static void chunk_forward(ftc_kv_cache *c, int N) {
    ftc_model *m = c->m;
    const int p0 = c->len, Q = m->qdim, KV = m->kvdim;
    const size_t NC = (size_t)N * m->C;
    /* RoPE's cos/sin of these positions once for every layer's q and k (NULL: no memory, each call computes them) */
    float *rcs = m->rope ? malloc((size_t)N * m->D * sizeof(float)) : NULL;
    if (rcs) ftc_rope_cos_sin(rcs, c->pos, m->inv_freq, N, m->D);
    for (int li = 0; li < m->L; li++) {
        layer_params *l = &m->layers[li];
        /* this chunk's cache rows (f16, q8_0: staged in f32, stored once RoPE has turned the keys) */
        const bool narrow = c->type != FTC_KV_F32;
        float *kc = narrow ? c->kst : (float *)c->k[li] + (size_t)p0 * KV;
        float *vc = narrow ? c->vst : (float *)c->v[li] + (size_t)p0 * KV;
        block_qkv(c, l, N, kc, vc, rcs, c->pos, true);
        const float *kf = c->k[li], *vf = c->v[li];
        if (narrow) {
            store_rows(c, c->k[li], p0, kc, N);
            store_rows(c, c->v[li], p0, vc, N);
            if (N >= WIDEN_ROWS) { /* a prompt chunk: the GEMMs of ftc_attention_decode_forward on widened rows */
                widen_rows(c, c->wide, c->k[li], p0 + N);
                widen_rows(c, c->wide + (size_t)c->cap * KV, c->v[li], p0 + N);
                kf = c->wide, vf = c->wide + (size_t)c->cap * KV;
            }
        }
        for (int i = 0; i < N; i += CHUNK) { /* queries i.. of the chunk, over keys 0..p0+i+n-1 */
            int n = N - i < CHUNK ? N - i : CHUNK;
            if (c->type == FTC_KV_F16 && N < WIDEN_ROWS)
                ftc_attention_decode_forward_f16(c->attn + (size_t)i * Q, c->att, c->q + (size_t)i * Q, c->k[li],
                                                 c->v[li], 1, n, p0 + i + n, c->cap, m->H, m->Hkv, m->D);
            else if (c->type == FTC_KV_Q8_0 && N < WIDEN_ROWS)
                ftc_attention_decode_forward_q8_0(c->attn + (size_t)i * Q, c->att, c->q + (size_t)i * Q, c->k[li],
                                                  c->v[li], 1, n, p0 + i + n, c->cap, m->H, m->Hkv, m->D);
            else
                ftc_attention_decode_forward(c->attn + (size_t)i * Q, c->att, c->q + (size_t)i * Q, kf, vf, 1, n,
                                             p0 + i + n, c->cap, m->H, m->Hkv, m->D);
        }
        block_out(c, l, N);
    }
    free(rcs);
    if (m->lnf_w >= 0) {
        norm_inf(c, c->a, c->x, m->lnf_w, m->lnf_b, N);
        memcpy(c->x, c->a, NC * sizeof(float));
    }
}

/* logits [N, V] of the final hidden rows x, 8-bit activations as the chunk's other products */
static void head(ftc_kv_cache *c, float *logits, const float *x, int N) {
    ftc_model *m = c->m;
    ftc_model_linear_forward_gen(m, m->lm_head, -1, logits, x, N, m->C, m->V, c->prompt && N > Q8ACT_ROWS);
}

ftc_status ftc_model_decode(ftc_model *m, ftc_kv_cache *c, const int32_t *ids, int n, float *logits,
                            bool all_positions, ftc_err *err) {
    if (c->m != m) return ftc_errf(err, FTC_E_USAGE, "KV cache belongs to another model");
    if (n < 1) return ftc_errf(err, FTC_E_USAGE, "decode needs at least one token");
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->V)
            return ftc_errf(err, FTC_E_INPUT, "token id %d at position %d is outside the vocabulary (size %d)", ids[i],
                            c->len + i, m->V);
    ftc_status s = grow(c, c->len + n, err);
    if (!s) s = ensure_rows(c, n < PREFILL ? n : PREFILL, err);
    if (s) return s;
    ftc_model_refresh_bf16(m);
    for (int done = 0; done < n;) {
        int N = n - done < PREFILL ? n - done : PREFILL;
        for (int i = 0; i < N; i++) c->pos[i] = c->len + i, c->ids[c->len + i] = ids[done + i];
        embed_rows(m, c->x, ids + done, c->pos, N);
        c->prompt = true;
        chunk_forward(c, N);
        c->len += N;
        done += N;
        if (all_positions)
            head(c, logits + (size_t)(done - N) * m->V, c->x, N);
        else if (done == n) /* only the last position's distribution is wanted */
            head(c, logits, c->x + (size_t)(N - 1) * m->C, 1);
    }
    return FTC_OK;
}

/* ---- several sequences, one new token each ---- */

/* One layer of a batch step: what sequence s's attention needs first, run in its job of the attention pass
 * (ftc_attention_decode_seqs_forward_pre) rather than for all rows on the calling thread: RoPE on its new query and
 * key (the per-row function of rope_rows: the same bits) and the store of its key and value into its cache */
typedef struct {
    ftc_model *m;
    ftc_kv_cache *const *caches;
    float *q, *knew, *vnew;
    const float *rcs; /* the rows' cos/sin, NULL: no RoPE */
    const int32_t *pos;
    int li;
} batch_pre;

static void batch_row_pre(void *ctx, int s) {
    const batch_pre *p = ctx;
    ftc_model *m = p->m;
    const size_t KV = (size_t)m->kvdim;
    float *k = p->knew + s * KV, *v = p->vnew + s * KV;
    if (p->rcs) {
        rope_rows(p->q + (size_t)s * m->qdim, p->rcs + (size_t)s * m->D, NULL, m->inv_freq, 1, m->H, m->D);
        rope_rows(k, p->rcs + (size_t)s * m->D, NULL, m->inv_freq, 1, m->Hkv, m->D);
    }
    ftc_kv_cache *cr = p->caches[s];
    store_rows(cr, cr->k[p->li], p->pos[s], k, 1);
    store_rows(cr, cr->v[p->li], p->pos[s], v, 1);
}

ftc_status ftc_model_decode_batch(ftc_model *m, ftc_kv_cache **caches, const int32_t *ids, int n, float *logits,
                                  ftc_err *err) {
    if (n < 1 || n > CHUNK) return ftc_errf(err, FTC_E_USAGE, "batched decode takes 1..%d sequences, not %d", CHUNK, n);
    for (int i = 0; i < n; i++) {
        if (caches[i]->m != m) return ftc_errf(err, FTC_E_USAGE, "KV cache %d belongs to another model", i);
        if (ids[i] < 0 || ids[i] >= m->V)
            return ftc_errf(err, FTC_E_INPUT, "token id %d of sequence %d is outside the vocabulary (size %d)", ids[i],
                            i, m->V);
        for (int j = 0; j < i; j++)
            if (caches[j] == caches[i]) return ftc_errf(err, FTC_E_USAGE, "KV cache %d is given twice", i);
        if (caches[i]->type != caches[0]->type)
            return ftc_errf(err, FTC_E_USAGE, "KV cache %d is %s, cache 0 %s: a batch takes one cache type", i,
                            ftc_kv_type_name(caches[i]->type), ftc_kv_type_name(caches[0]->type));
        ftc_status s = grow(caches[i], caches[i]->len + 1, err);
        if (s) return s;
    }
    ftc_model_refresh_bf16(m);
    ftc_kv_cache *c = caches[0]; /* its scratch rows hold the batch: row i is sequence i */
    const int KV = m->kvdim;
    const size_t NC = (size_t)n * m->C;
    /* the new keys and values, then RoPE's cos/sin of the rows' positions (once for every layer's q and k) */
    float *knew = malloc((2 * (size_t)n * KV + (size_t)n * m->D) * sizeof(float)), *vnew = knew + (size_t)n * KV;
    if (!knew) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    float *rcs = m->rope ? vnew + (size_t)n * KV : NULL;
    int32_t pos[CHUNK];
    int lens[CHUNK];
    float *atts[CHUNK];
    for (int i = 0; i < n; i++) {
        pos[i] = caches[i]->len;
        lens[i] = pos[i] + 1;
        atts[i] = caches[i]->att;
        caches[i]->ids[caches[i]->len] = ids[i];
    }
    embed_rows(m, c->x, ids, pos, n);
    if (rcs) ftc_rope_cos_sin(rcs, pos, m->inv_freq, n, m->D);
    c->prompt = false;
    for (int li = 0; li < m->L; li++) {
        layer_params *l = &m->layers[li];
        block_qkv(c, l, n, knew, vnew, rcs, pos, !rcs); /* with rcs: RoPE in the attention pass (batch_row_pre) */
        const void *ks[CHUNK], *vs[CHUNK];
        for (int r = 0; r < n; r++) ks[r] = caches[r]->k[li], vs[r] = caches[r]->v[li];
        /* each sequence attends over its own cache, all of them in one pass, each first RoPE-turning and storing
         * its new row */
        batch_pre pre = {m, caches, c->q, knew, vnew, rcs, pos, li};
        ftc_attention_decode_seqs_forward_pre(c->attn, atts, c->q, ks, vs, c->type, lens, n, m->H, m->Hkv, m->D,
                                              batch_row_pre, &pre);
        block_out(c, l, n);
    }
    if (m->lnf_w >= 0) {
        norm_inf(c, c->a, c->x, m->lnf_w, m->lnf_b, n);
        memcpy(c->x, c->a, NC * sizeof(float));
    }
    for (int i = 0; i < n; i++) caches[i]->len++;
    head(c, logits, c->x, n);
    free(knew);
    return FTC_OK;
}

/* ---- the generation loop ---- */

static bool is_stop(const ftc_generate_opts *o, int32_t id) {
    for (int i = 0; i < o->n_stop; i++)
        if (o->stop_ids[i] == id) return true;
    return false;
}

ftc_status ftc_generate(ftc_model *m, ftc_kv_cache *c, const int32_t *prompt, int n_prompt,
                        const ftc_generate_opts *o, int32_t *out, int *n_out, ftc_gen_stop *why, ftc_err *err) {
    *n_out = 0;
    if (why) *why = FTC_GEN_MAX_TOKENS;
    if (n_prompt < 1 && c->len == 0) return ftc_errf(err, FTC_E_USAGE, "generation needs at least one prompt token");
    int V = m->V;
    float *logits = malloc((size_t)V * sizeof(float)), *prob = malloc((size_t)V * sizeof(float));
    int32_t *idx = malloc((size_t)V * sizeof(int32_t));
    ftc_status s = FTC_OK;
    if (!logits || !prob || !idx) {
        s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
        goto done;
    }
    ftc_rng own_rng, *rng = o->rng;
    if (!rng) ftc_rng_seed(&own_rng, o->seed), rng = &own_rng;
    if (n_prompt > 0) {
        s = ftc_model_decode(m, c, prompt, n_prompt, logits, false, err);
    } else { /* continue after the cached tokens: re-run the last one to get its logits */
        int32_t last = c->ids[c->len - 1];
        c->len--;
        s = ftc_model_decode(m, c, &last, 1, logits, false, err);
    }
    if (s) goto done;
    for (int i = 0; i < o->max_new_tokens; i++) {
        int32_t next = ftc_sample(logits, V, &o->sampler, rng, prob, idx);
        if (is_stop(o, next)) {
            if (why) *why = FTC_GEN_STOP_TOKEN;
            break;
        }
        out[(*n_out)++] = next;
        if (o->on_token && !o->on_token(o->ctx, next)) {
            if (why) *why = FTC_GEN_CALLER;
            break;
        }
        if (i + 1 == o->max_new_tokens) break; /* the last token needs no forward pass */
        if (c->len >= c->max_pos) {
            if (why) *why = FTC_GEN_CONTEXT_FULL;
            break;
        }
        s = ftc_model_decode(m, c, &next, 1, logits, false, err);
        if (s) goto done;
    }
done:
    free(logits), free(prob), free(idx);
    return s;
}
