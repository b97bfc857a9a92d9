/* The parameter table: Hugging Face names <-> our layout, f32 values in one buffer (plus a segment for each later
 * growth: LoRA adapters, a head), gradients only for trainable parameters. Loading and saving are this table plus
 * a transpose for GPT-2's Conv1D. */
#include "model_internal.h"
#include "ftc/matmul.h"
#include "ftc/quant.h"
#include "base/base_internal.h"
#include "ftc/gguf.h"
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int ftc_model_add_param(ftc_model *m, const char *name, int ndim, const int64_t *shape, bool transposed, bool decay) {
    if (m->n_params == m->cap_params) {
        int cap = m->cap_params ? 2 * m->cap_params : 64;
        ftc_param *p = realloc(m->params, (size_t)cap * sizeof *p);
        if (!p) return m->table_oom = true, -1;
        m->params = p;
        int64_t *o = realloc(m->offsets, (size_t)cap * sizeof *o);
        if (!o) return m->table_oom = true, -1;
        m->offsets = o;
        m->cap_params = cap;
    }
    ftc_param *p = &m->params[m->n_params];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->numel = 1;
    for (int d = 0; d < ndim; d++) p->shape[d] = shape[d], p->numel *= shape[d];
    p->trainable = true;
    p->decay = decay;
    p->transposed = transposed;
    p->role = FTC_PARAM_OTHER;
    p->block = -1;
    m->offsets[m->n_params] = -1; /* no storage yet */
    return m->n_params++;
}

/* Gives every parameter that needs f32 values (all but those stored in bf16 or quantized only: precision.c) its
 * storage, keeping the values of those that had it. Called after the table changes (load, classifier, LoRA,
 * an f32 value restored): never inside a step.
 * When the table only grew (LoRA adapters, a new head, a weight made trainable again) the values already held
 * stay where they are and the new parameters get a segment of their own: no second copy of the table (a bf16 or
 * quantized base's f32 part, GPT-2's 154 MB token table, would otherwise be held twice while it is copied).
 * When storage was given up, segments none of whose values are kept are freed (adapters merged away: their
 * segment); if a kept value shares a segment with given-up storage (weights moved to bf16 or packed blocks, a head
 * resized) the values are laid out again in one new segment and the old ones freed. */
static inline int64_t padded(int64_t n) { return (n + 15) & ~(int64_t)15; } /* 64-byte aligned starts */

static bool needs_f32(const ftc_param *p) { return p->data || !(p->data_bf16 || p->data_q); }

static ftc_status add_segment(ftc_model *m, int64_t n, float **seg, ftc_err *err) {
    *seg = NULL;
    float **v = realloc(m->segs, (size_t)(m->n_segs + 1) * sizeof *v);
    if (!v) return ftc_errf(err, FTC_E_NOMEM, "out of memory for the parameter table");
    m->segs = v;
    int64_t *sn = realloc(m->seg_numel, (size_t)(m->n_segs + 1) * sizeof *sn);
    if (!sn) return ftc_errf(err, FTC_E_NOMEM, "out of memory for the parameter table");
    m->seg_numel = sn;
    if (n && ftc_mem_alloc_weights((void **)seg, (size_t)n * sizeof(float))) *seg = NULL;
    if (n && !*seg) return ftc_errf(err, FTC_E_NOMEM, "out of memory for %lld parameters", (long long)n);
    if (n) memset(*seg, 0, (size_t)n * sizeof(float));
    m->seg_numel[m->n_segs] = n;
    m->segs[m->n_segs++] = *seg;
    return FTC_OK;
}

/* Storage was given up: frees the segments that hold no kept value and returns true when every other segment
 * is kept whole (nothing to lay out again); false (nothing freed) when a kept value shares a segment with
 * given-up storage. */
static bool drop_unused_segments(ftc_model *m, int64_t kept) {
    if (m->n_segs == 0) return false;
    int64_t *in = calloc((size_t)m->n_segs, sizeof *in);
    if (!in) return false; /* the full layout instead */
    for (int i = 0; i < m->n_params; i++) {
        const ftc_param *p = &m->params[i];
        if (m->offsets[i] < 0 || !needs_f32(p)) continue;
        uintptr_t a = (uintptr_t)p->data;
        for (int k = 0; k < m->n_segs; k++)
            if (m->segs[k] && a >= (uintptr_t)m->segs[k] && a < (uintptr_t)(m->segs[k] + m->seg_numel[k])) {
                in[k] += padded(p->numel);
                break;
            }
    }
    int64_t whole = 0;
    bool ok = true;
    for (int k = 0; k < m->n_segs && ok; k++) {
        ok = in[k] == 0 || in[k] == m->seg_numel[k];
        whole += in[k];
    }
    if (ok && whole == kept) {
        int n = 0;
        for (int k = 0; k < m->n_segs; k++) {
            if (in[k] == 0) {
                free(m->segs[k]);
                continue;
            }
            m->segs[n] = m->segs[k], m->seg_numel[n] = m->seg_numel[k], n++;
        }
        m->n_segs = n;
        m->buf_numel = kept;
    }
    free(in);
    return ok && whole == kept;
}

ftc_status ftc_model_alloc_params(ftc_model *m, ftc_err *err) {
    int64_t kept = 0, added = 0, total = 0;
    for (int i = 0; i < m->n_params; i++) {
        const ftc_param *p = &m->params[i];
        if (!needs_f32(p)) continue;
        int64_t n = padded(p->numel);
        total += n;
        if (m->offsets[i] >= 0) kept += n;
        else added += n;
    }
    ftc_status s;
    float *seg;
    if (kept == m->buf_numel || drop_unused_segments(m, kept)) { /* append the new parameters */
        if (added == 0) goto grads;
        if ((s = add_segment(m, added, &seg, err))) return s;
        int64_t off = 0;
        for (int i = 0; i < m->n_params; i++) {
            ftc_param *p = &m->params[i];
            if (!needs_f32(p) || m->offsets[i] >= 0) continue;
            if (m->offsets[i] == -2 && p->data) {
                memcpy(seg + off, p->data, (size_t)p->numel * sizeof(float));
                free(p->data);
            }
            p->data = seg + off;
            m->offsets[i] = m->buf_numel + off;
            off += padded(p->numel);
        }
        m->buf_numel += added;
        goto grads;
    }
    /* a full layout in one new segment */
    int64_t *noff = malloc((size_t)(m->n_params ? m->n_params : 1) * sizeof *noff);
    if (!noff) return ftc_errf(err, FTC_E_NOMEM, "out of memory for the parameter table");
    float **old = m->segs;
    int64_t *old_numel = m->seg_numel;
    int n_old = m->n_segs;
    m->segs = NULL, m->seg_numel = NULL, m->n_segs = 0;
    if ((s = add_segment(m, total, &seg, err))) {
        free(m->segs), free(m->seg_numel);
        m->segs = old, m->seg_numel = old_numel, m->n_segs = n_old;
        free(noff);
        return s;
    }
    for (int i = 0, t = 0; i < m->n_params; i++) {
        const ftc_param *p = &m->params[i];
        noff[i] = needs_f32(p) ? t : -1;
        if (noff[i] >= 0) t += padded(p->numel);
    }
    for (int i = 0; i < m->n_params; i++) {
        ftc_param *p = &m->params[i];
        if (noff[i] < 0) {
            m->offsets[i] = -1;
            continue;
        }
        /* offset -2: a private f32 value (ftc_model_inflate_f32) that moves into the segment */
        if ((m->offsets[i] >= 0 || m->offsets[i] == -2) && p->data)
            memcpy(seg + noff[i], p->data, (size_t)p->numel * sizeof(float));
        if (m->offsets[i] == -2) free(p->data);
        p->data = seg + noff[i];
        m->offsets[i] = noff[i];
    }
    for (int k = 0; k < n_old; k++) free(old[k]);
    free(old), free(old_numel);
    free(noff);
    m->buf_numel = total;
grads:
    /* the table changed: gradients follow at the next reserve */
    if (m->grads_planned) return ftc_model_plan_grads(m, err);
    return FTC_OK;
}

ftc_status ftc_model_plan_grads(ftc_model *m, ftc_err *err) {
    int64_t total = 0;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].trainable) total += (m->params[i].numel + 15) & ~(int64_t)15;
    free(m->gradbuf);
    m->gradbuf = NULL;
    if (total && posix_memalign((void **)&m->gradbuf, 64, (size_t)total * sizeof(float))) m->gradbuf = NULL;
    if (total && !m->gradbuf) return ftc_errf(err, FTC_E_NOMEM, "out of memory for %lld gradients", (long long)total);
    if (total) memset(m->gradbuf, 0, (size_t)total * sizeof(float));
    int64_t off = 0;
    for (int i = 0; i < m->n_params; i++) {
        ftc_param *p = &m->params[i];
        p->grad = NULL;
        if (!p->trainable) continue;
        p->grad = m->gradbuf + off;
        off += (p->numel + 15) & ~(int64_t)15;
    }
    m->grad_numel = total;
    m->grads_planned = true;
    return FTC_OK;
}

void ftc_model_init_linear(linear_mod *l, int w, int b, int in, int out, const char *module) {
    memset(l, 0, sizeof *l);
    l->w = w, l->b = b, l->in = in, l->out = out;
    l->lora_a = l->lora_b = -1;
    snprintf(l->module, sizeof l->module, "%s", module);
}

/* ---- the name table ---- */

static int addf(ftc_model *m, ftc_param_role role, int block, bool transposed, bool decay, int ndim, int64_t d0,
                int64_t d1, const char *fmt, ...) __attribute__((format(printf, 9, 10)));
static int addf(ftc_model *m, ftc_param_role role, int block, bool transposed, bool decay, int ndim, int64_t d0,
                int64_t d1, const char *fmt, ...) {
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int64_t shape[2] = {d0, d1};
    int i = ftc_model_add_param(m, name, ndim, shape, transposed, decay);
    if (i >= 0) m->params[i].role = role, m->params[i].block = role == FTC_PARAM_BLOCK ? block : -1;
    return i;
}

/* A linear of block `block` named MODULE.weight (+ .bias), stored [out,in] in our layout. */
static void add_linear(ftc_model *m, linear_mod *l, int block, bool conv1d, bool bias, int in, int out,
                       const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static void add_linear(ftc_model *m, linear_mod *l, int block, bool conv1d, bool bias, int in, int out,
                       const char *fmt, ...) {
    char mod[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(mod, sizeof mod, fmt, ap);
    va_end(ap);
    int w = addf(m, FTC_PARAM_BLOCK, block, conv1d, true, 2, out, in, "%s.weight", mod);
    int b = bias ? addf(m, FTC_PARAM_BLOCK, block, false, false, 1, out, 0, "%s.bias", mod) : -1;
    ftc_model_init_linear(l, w, b, in, out, mod);
}

static void add_norm(ftc_model *m, int *w, int *b, int C, const char *fmt, const char *wname, const char *bname, int i) {
    char mod[128];
    snprintf(mod, sizeof mod, fmt, m->prefix, i);
    *w = addf(m, FTC_PARAM_BLOCK, i, false, false, 1, C, 0, "%s.%s", mod, wname);
    *b = m->rmsnorm ? -1 : addf(m, FTC_PARAM_BLOCK, i, false, false, 1, C, 0, "%s.%s", mod, bname);
}

/* Declares every parameter of the configured model. pooler/classifier: whether to include them. */
static ftc_status declare_params(ftc_model *m, bool pooler, int cls_labels, bool cls_bias, ftc_err *err) {
    const ftc_model_config *c = &m->cfg;
    const char *px = m->prefix;
    int C = m->C, F = m->F, V = m->V;
    m->wte = m->wpe = m->wtt = m->emb_n_w = m->emb_n_b = m->lnf_w = m->lnf_b = m->lm_head = -1;
    m->pooler_w = m->pooler_b = m->cls_w = m->cls_b = -1;
    m->layers = calloc((size_t)m->L, sizeof *m->layers);
    if (!m->layers) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    for (int i = 0; i < m->L; i++) { /* modules a family lacks (GPT-2 gate, Llama fused qkv) stay absent */
        layer_params *l = &m->layers[i];
        for (int j = 0; j < FTC_LAYER_MODS; j++) ftc_model_init_linear(layer_mod(l, j), -1, -1, 0, 0, "");
    }
    switch (c->family) {
    case FTC_FAMILY_GPT2:
        m->wte = addf(m, FTC_PARAM_EMBEDDING, -1, false, false, 2, V, C, "%swte.weight", px);
        m->wpe = addf(m, FTC_PARAM_EMBEDDING, -1, false, false, 2, c->max_positions, C, "%swpe.weight", px);
        for (int i = 0; i < m->L; i++) {
            layer_params *l = &m->layers[i];
            add_norm(m, &l->n1_w, &l->n1_b, C, "%sh.%d.ln_1", "weight", "bias", i);
            add_linear(m, &l->qkv, i, true, true, C, 3 * C, "%sh.%d.attn.c_attn", px, i);
            add_linear(m, &l->o, i, true, true, C, C, "%sh.%d.attn.c_proj", px, i);
            add_norm(m, &l->n2_w, &l->n2_b, C, "%sh.%d.ln_2", "weight", "bias", i);
            add_linear(m, &l->up, i, true, true, C, F, "%sh.%d.mlp.c_fc", px, i);
            add_linear(m, &l->down, i, true, true, F, C, "%sh.%d.mlp.c_proj", px, i);
        }
        m->lnf_w = addf(m, FTC_PARAM_FINAL_NORM, -1, false, false, 1, C, 0, "%sln_f.weight", px);
        m->lnf_b = addf(m, FTC_PARAM_FINAL_NORM, -1, false, false, 1, C, 0, "%sln_f.bias", px);
        break;
    case FTC_FAMILY_LLAMA: {
        bool qwen = !strcmp(c->model_type, "qwen2");
        m->wte = addf(m, FTC_PARAM_EMBEDDING, -1, false, false, 2, V, C, "%sembed_tokens.weight", px);
        for (int i = 0; i < m->L; i++) {
            layer_params *l = &m->layers[i];
            add_norm(m, &l->n1_w, &l->n1_b, C, "%slayers.%d.input_layernorm", "weight", "", i);
            add_linear(m, &l->q, i, false, c->attention_bias, C, m->qdim, "%slayers.%d.self_attn.q_proj", px, i);
            add_linear(m, &l->k, i, false, c->attention_bias, C, m->kvdim, "%slayers.%d.self_attn.k_proj", px, i);
            add_linear(m, &l->v, i, false, c->attention_bias, C, m->kvdim, "%slayers.%d.self_attn.v_proj", px, i);
            add_linear(m, &l->o, i, false, c->attention_bias && !qwen, m->qdim, C, "%slayers.%d.self_attn.o_proj", px,
                       i);
            add_norm(m, &l->n2_w, &l->n2_b, C, "%slayers.%d.post_attention_layernorm", "weight", "", i);
            add_linear(m, &l->gate, i, false, c->mlp_bias, C, F, "%slayers.%d.mlp.gate_proj", px, i);
            add_linear(m, &l->up, i, false, c->mlp_bias, C, F, "%slayers.%d.mlp.up_proj", px, i);
            add_linear(m, &l->down, i, false, c->mlp_bias, F, C, "%slayers.%d.mlp.down_proj", px, i);
        }
        m->lnf_w = addf(m, FTC_PARAM_FINAL_NORM, -1, false, false, 1, C, 0, "%snorm.weight", px);
        break;
    }
    case FTC_FAMILY_BERT:
        m->wte = addf(m, FTC_PARAM_EMBEDDING, -1, false, false, 2, V, C, "%sembeddings.word_embeddings.weight", px);
        m->wpe = addf(m, FTC_PARAM_EMBEDDING, -1, false, false, 2, c->max_positions, C,
                      "%sembeddings.position_embeddings.weight", px);
        if (c->type_vocab_size > 0)
            m->wtt = addf(m, FTC_PARAM_EMBEDDING, -1, false, false, 2, c->type_vocab_size, C,
                          "%sembeddings.token_type_embeddings.weight", px);
        m->emb_n_w = addf(m, FTC_PARAM_EMBEDDING, -1, false, false, 1, C, 0, "%sembeddings.LayerNorm.weight", px);
        m->emb_n_b = addf(m, FTC_PARAM_EMBEDDING, -1, false, false, 1, C, 0, "%sembeddings.LayerNorm.bias", px);
        for (int i = 0; i < m->L; i++) {
            layer_params *l = &m->layers[i];
            add_linear(m, &l->q, i, false, true, C, C, "%sencoder.layer.%d.attention.self.query", px, i);
            add_linear(m, &l->k, i, false, true, C, C, "%sencoder.layer.%d.attention.self.key", px, i);
            add_linear(m, &l->v, i, false, true, C, C, "%sencoder.layer.%d.attention.self.value", px, i);
            add_linear(m, &l->o, i, false, true, C, C, "%sencoder.layer.%d.attention.output.dense", px, i);
            add_norm(m, &l->n1_w, &l->n1_b, C, "%sencoder.layer.%d.attention.output.LayerNorm", "weight", "bias", i);
            add_linear(m, &l->up, i, false, true, C, F, "%sencoder.layer.%d.intermediate.dense", px, i);
            add_linear(m, &l->down, i, false, true, F, C, "%sencoder.layer.%d.output.dense", px, i);
            add_norm(m, &l->n2_w, &l->n2_b, C, "%sencoder.layer.%d.output.LayerNorm", "weight", "bias", i);
        }
        if (pooler) {
            m->pooler_w = addf(m, FTC_PARAM_POOLER, -1, false, true, 2, C, C, "%spooler.dense.weight", px);
            m->pooler_b = addf(m, FTC_PARAM_POOLER, -1, false, false, 1, C, 0, "%spooler.dense.bias", px);
        }
        break;
    }
    if (m->task == FTC_TASK_CAUSAL_LM)
        m->lm_head = c->tie_word_embeddings ? m->wte
                                            : addf(m, FTC_PARAM_LM_HEAD, -1, false, true, 2, V, C, "lm_head.weight");
    if (cls_labels > 0) {
        const char *head = c->family == FTC_FAMILY_BERT ? "classifier" : "score";
        m->cls_w = addf(m, FTC_PARAM_CLASSIFIER, -1, false, true, 2, cls_labels, C, "%s.weight", head);
        m->cls_b = cls_bias ? addf(m, FTC_PARAM_CLASSIFIER, -1, false, false, 1, cls_labels, 0, "%s.bias", head) : -1;
        m->num_labels = cls_labels;
    }
    if (m->table_oom) return ftc_errf(err, FTC_E_NOMEM, "out of memory for the parameter table");
    return FTC_OK;
}

/* Flags and sizes of the one block for this family. */
static ftc_status setup_shape(ftc_model *m, const ftc_model_config *cfg, ftc_task task, ftc_err *err) {
    m->cfg = *cfg;
    m->cfg.id2label = NULL; /* copied below */
    m->cfg.num_labels = 0;
    if (cfg->num_labels > 0 && cfg->id2label) {
        m->cfg.id2label = calloc((size_t)cfg->num_labels, sizeof(char *));
        if (!m->cfg.id2label) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
        m->cfg.num_labels = cfg->num_labels;
        for (int i = 0; i < cfg->num_labels; i++) m->cfg.id2label[i] = strdup(cfg->id2label[i] ? cfg->id2label[i] : "");
    }
    m->task = task;
    ftc_family f = cfg->family;
    m->pre_norm = f != FTC_FAMILY_BERT;
    m->rmsnorm = f == FTC_FAMILY_LLAMA;
    m->rope = f == FTC_FAMILY_LLAMA;
    m->swiglu = f == FTC_FAMILY_LLAMA;
    m->causal = f != FTC_FAMILY_BERT;
    m->learned_pos = f != FTC_FAMILY_LLAMA;
    m->fused_qkv = f == FTC_FAMILY_GPT2;
    m->C = cfg->hidden_size, m->H = cfg->n_heads, m->Hkv = cfg->n_kv_heads, m->D = cfg->head_dim;
    m->F = cfg->intermediate_size, m->V = cfg->vocab_size, m->L = cfg->n_layers;
    m->qdim = m->H * m->D, m->kvdim = m->Hkv * m->D;
    m->pooling = f == FTC_FAMILY_BERT ? FTC_POOL_CLS : FTC_POOL_LAST;
    if (!strcmp(cfg->pooling, "mean")) m->pooling = FTC_POOL_MEAN; /* a classifier ftc saved records its pooling */
    else if (!strcmp(cfg->pooling, "cls")) m->pooling = FTC_POOL_CLS;
    m->cls_dropout = f == FTC_FAMILY_BERT ? cfg->hidden_dropout : 0.0f;
    if (m->C <= 0 || m->H <= 0 || m->Hkv <= 0 || m->D <= 0 || m->H % m->Hkv || m->L <= 0 || m->V <= 0 || m->F <= 0)
        return ftc_errf(err, FTC_E_INPUT, "model config has invalid sizes (hidden %d, heads %d/%d, head_dim %d)", m->C,
                        m->H, m->Hkv, m->D);
    if (task == FTC_TASK_CAUSAL_LM && f == FTC_FAMILY_BERT)
        return ftc_errf(err, FTC_E_UNSUPPORTED,
                        "BERT-family models have no causal LM head; use them for classification or encoding");
    if (f == FTC_FAMILY_GPT2 && cfg->activation != FTC_ACT_GELU_TANH && cfg->activation != FTC_ACT_GELU_ERF)
        return ftc_errf(err, FTC_E_UNSUPPORTED, "gpt2: only GELU activations are supported");
    if (f == FTC_FAMILY_LLAMA && cfg->activation != FTC_ACT_SILU)
        return ftc_errf(err, FTC_E_UNSUPPORTED, "%s: only the SiLU-gated MLP (hidden_act \"silu\") is supported",
                        cfg->model_type);
    if (f == FTC_FAMILY_BERT && cfg->activation != FTC_ACT_GELU_ERF && cfg->activation != FTC_ACT_GELU_TANH)
        return ftc_errf(err, FTC_E_UNSUPPORTED, "bert: only GELU activations are supported");
    if (m->rope) {
        if (cfg->rope_scaling_type[0] && strcmp(cfg->rope_scaling_type, "llama3") &&
            strcmp(cfg->rope_scaling_type, "default"))
            return ftc_errf(err, FTC_E_UNSUPPORTED, "rope_scaling type \"%s\" is not supported (only \"llama3\")",
                            cfg->rope_scaling_type);
        m->inv_freq = malloc((size_t)(m->D / 2) * sizeof(float));
        if (!m->inv_freq) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
        ftc_rope_inv_freq_scaled(m->inv_freq, cfg, m->D);
    }
    ftc_rng_seed(&m->rng, 0x5eedf7c);
    return FTC_OK;
}

static ftc_model *model_new(void) {
    ftc_model *m = calloc(1, sizeof *m);
    if (m) m->loss_weight = 1.0f;
    return m;
}

void ftc_model_free(ftc_model *m) {
    if (!m) return;
    ftc_config_free(&m->cfg);
    free(m->config_json);
    for (int i = 0; i < m->n_params; i++) free(m->params[i].data_bf16), free(m->params[i].data_q);
    free(m->params);
    free(m->offsets);
    for (int k = 0; k < m->n_segs; k++) free(m->segs[k]);
    free(m->segs);
    free(m->seg_numel);
    free(m->gradbuf);
    free(m->layers);
    free(m->inv_freq);
    free(m->act);
    free(m->ck_out);
    free(m->ck_rng);
    free(m);
}

const ftc_model_config *ftc_model_config_of(const ftc_model *m) { return &m->cfg; }
ftc_task ftc_model_task(const ftc_model *m) { return m->task; }
int ftc_model_n_params(const ftc_model *m) { return m->n_params; }
ftc_param *ftc_model_param(ftc_model *m, int i) { return i >= 0 && i < m->n_params ? &m->params[i] : NULL; }
ftc_rng *ftc_model_rng(ftc_model *m) { return &m->rng; }

ftc_param *ftc_model_find_param(ftc_model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

void ftc_model_set_trainable(ftc_model *m, int i, bool trainable) {
    if (i < 0 || i >= m->n_params) return;
    if (trainable && !m->params[i].data) { /* stored in bf16 only: training needs an f32 value again */
        ftc_err e;
        if (ftc_model_inflate_f32(m, i, &e)) {
            m->storage_oom = true;
            return;
        }
    }
    if (m->params[i].trainable == trainable) return;
    m->params[i].trainable = trainable;
    if (m->grads_planned) {
        ftc_err e;
        if (ftc_model_plan_grads(m, &e)) m->grads_planned = false; /* retried (and reported) by the next reserve */
    }
    /* reserved for inference only, now something trains: plan the gradient scratch too (outside any step) */
    if (trainable && m->act && !m->g_res) {
        ftc_err e;
        if (ftc_model_reserve(m, m->max_B, m->max_T, &e)) m->forward_done = false;
    }
}

int64_t ftc_model_count_params(const ftc_model *m, bool trainable_only) {
    int64_t n = 0;
    for (int i = 0; i < m->n_params; i++)
        if (!trainable_only || m->params[i].trainable) n += m->params[i].numel;
    return n;
}

enum { ZERO_BLOCK = 1 << 18 };

static void zero_range(void *ctx, int64_t lo, int64_t hi) {
    const ftc_model *m = ctx;
    int64_t o = lo * ZERO_BLOCK, end = hi * ZERO_BLOCK < m->grad_numel ? hi * ZERO_BLOCK : m->grad_numel;
    memset(m->gradbuf + o, 0, (size_t)(end - o) * sizeof(float));
}

void ftc_model_zero_grad(ftc_model *m) {
    /* once per optimizer step over every trainable value (500 MB for GPT-2 small): the pool, in 1 MB blocks */
    int64_t n = m->gradbuf ? m->grad_numel : 0, nblk = (n + ZERO_BLOCK - 1) / ZERO_BLOCK;
    ftc_parallel_range(nblk, nblk > 4, zero_range, m);
}

/* ---- loading ---- */

static const char *EMBED_SUFFIX[] = {"wte.weight", "embed_tokens.weight", "embeddings.word_embeddings.weight"};

/* A PEFT base (bf16 or quantized) is a fraction of its checkpoint: the mapped file's pages of a tensor already
 * converted are dropped from memory (read-only mapping: they would come back from the file if touched again),
 * so that the peak RSS of loading is not the whole checkpoint plus the converted base. */
static void release_pages(const void *data, size_t nbytes) {
    if (!nbytes) return;
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)data;
    uintptr_t start = (a + pg - 1) & ~(pg - 1), end = (a + nbytes) & ~(pg - 1);
    if (end > start) madvise((void *)start, end - start, MADV_DONTNEED);
}

/* A file tensor read piece by piece into param p (ftc_model_pack's values): GPT-2's Conv1D [in, out] transposed
 * into our [out, in] as it is read; a NaN or Inf weight (every output would be NaN: generate printing blanks, eval
 * "loss nan") refused by name; the pages read dropped at once where the base keeps a converted copy. */
typedef struct {
    const ftc_tensor_view *t;
    const ftc_param *p;
    bool check, release;
} file_piece;

static ftc_status file_values(void *ctx, int64_t a, int64_t b, float *out, const float **vals, ftc_err *err) {
    const file_piece *f = ctx;
    const ftc_tensor_view *t = f->t;
    int64_t O = f->p->shape[0], I = f->p->numel / O;
    ftc_status s = FTC_OK;
    *vals = out;
    if (!f->p->transposed) {
        s = ftc_tensor_to_f32_range(t, a, b - a, 1, out, err);
        size_t es = ftc_dtype_size(t->dtype);
        if (!s && f->release) release_pages((const uint8_t *)t->data + (size_t)a * es, (size_t)(b - a) * es);
    }
    for (int64_t e = a; f->p->transposed && !s && e < b;) { /* our row o is the file's column o */
        int64_t o = e / I, i = e % I, n = I - i < b - e ? I - i : b - e;
        s = ftc_tensor_to_f32_range(t, i * O + o, n, O, out + (e - a), err);
        e += n;
    }
    for (int64_t k = 0; f->check && !s && k < b - a; k++)
        if (!isfinite(out[k])) {
            int64_t e = a + k, at = f->p->transposed ? e % I * O + e / I : e; /* the file's element */
            s = ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s' holds a non-finite value (%s at element %lld of %lld); "
                         "refusing to load it (--allow-nonfinite, or FTC_ALLOW_NONFINITE=1, loads it anyway)",
                         t->file, f->p->name, isnan(out[k]) ? "NaN" : out[k] > 0 ? "+Inf" : "-Inf", (long long)at,
                         (long long)f->p->numel);
        }
    return s;
}

/* Param p from the file: into its f32 value, or straight into its bf16 or quantized storage a piece at a time
 * (never an f32 copy of a whole weight: the 50257 x 768 table of GPT-2 alone is 154 MB in f32) */
static ftc_status load_param(const ftc_st_set *st, ftc_param *p, bool check, bool release, ftc_err *err) {
    int64_t fshape[2] = {p->ndim == 2 ? p->shape[1] : 0, p->shape[0]};
    ftc_status s = ftc_st_check_shape(st, p->name, p->ndim, p->transposed ? fshape : p->shape, err);
    if (s || p->numel == 0) return s;
    file_piece f = {ftc_st_find(st, p->name), p, check, release};
    int kind = p->data ? FTC_PACK_F32 : p->data_q ? p->qtype : FTC_PACK_BF16;
    void *dst = p->data ? (void *)p->data : p->data_q ? p->data_q : (void *)p->data_bf16;
    return ftc_model_pack(kind, dst, p->shape[0], p->numel / p->shape[0], file_values, &f, err);
}

static ftc_status load_model(const char *dir, ftc_task task, bool bf16_base, int qtype, const json_t *types,
                             ftc_model **out, ftc_err *err);

ftc_status ftc_model_load(const char *dir, ftc_task task, ftc_model **out, ftc_err *err) {
    return load_model(dir, task, false, -1, NULL, out, err);
}
ftc_status ftc_model_load_bf16_base(const char *dir, ftc_task task, ftc_model **out, ftc_err *err) {
    return load_model(dir, task, true, -1, NULL, out, err);
}
ftc_status ftc_model_load_quant_base(const char *dir, ftc_task task, int qtype, ftc_model **out, ftc_err *err) {
    *out = NULL;
    if (!ftc_quant_supported(qtype))
        return ftc_errf(err, FTC_E_USAGE, "quantized base: type %d is not one of q8_0, q4_0, q4_1, q4_k, nf4, nf4dq", qtype);
    return load_model(dir, task, true, qtype, NULL, out, err);
}

bool ftc_model_has_gguf_types(const char *dir) {
    char path[4200];
    return ftc_path_join(path, sizeof path, dir, FTC_GGUF_TYPES_FILE) && ftc_file_exists(path);
}

ftc_status ftc_model_load_gguf_base(const char *dir, ftc_task task, bool bf16_rest, ftc_model **out, ftc_err *err) {
    *out = NULL;
    char path[4200];
    if (!ftc_path_join(path, sizeof path, dir, FTC_GGUF_TYPES_FILE)) return ftc_errf(err, FTC_E_USAGE, "path too long: %s", dir);
    json_t *types;
    ftc_status s = ftc_json_load_object(path, &types, err);
    if (s) return s;
    s = load_model(dir, task, bf16_rest, -1, types, out, err);
    json_decref(types);
    return s;
}

/* The type a frozen weight keeps from its GGUF (gguf_types.json): one ftc packs, with a block that fits its rows
 * (re-quantizing the file's dequantized values with the same quantizer gives the file's blocks back), else -1. */
static int file_qtype(const json_t *types, const ftc_param *p) {
    const json_t *v = json_object_get(types, p->name);
    int t = json_is_integer(v) ? (int)json_integer_value(v) : -1;
    bool packed = t == FTC_GGML_Q8_0 || t == FTC_GGML_Q4_0 || t == FTC_GGML_Q4_1 || t == FTC_GGML_Q4_K;
    return packed && ftc_quant_type_for_row(t, p->numel / p->shape[0]) == t ? t : -1;
}

/* config.json's sizes against the checkpoint, before any of them sizes an allocation: the embedding is
 * [vocab_size, hidden_size] and the file has the layers num_hidden_layers counts (a config saying 2^24 of
 * anything is a mismatch to name, not an allocation to attempt). */
static ftc_status check_sizes_against_file(const ftc_model *m, const ftc_st_set *st, const char *dir, ftc_err *err) {
    char name[192];
    snprintf(name, sizeof name, "%s%s", m->prefix, EMBED_SUFFIX[m->cfg.family]);
    const ftc_tensor_view *e = ftc_st_find(st, name);
    if (e && (e->ndim != 2 || e->shape[0] != m->cfg.vocab_size || e->shape[1] != m->cfg.hidden_size))
        return ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s' has shape [%lld,%lld] but config.json says vocab_size %d, "
                        "hidden_size %d", e->file, name, (long long)e->shape[0], (long long)(e->ndim > 1 ? e->shape[1] : 0),
                        m->cfg.vocab_size, m->cfg.hidden_size);
    /* layers in the file: the highest index after "h.", "layers." or "layer." */
    long n_file = 0;
    for (int i = 0; i < ftc_st_count(st); i++) {
        const char *nm = ftc_st_get(st, i)->name;
        static const char *const keys[] = {"h.", "layers.", "layer."};
        for (int k = 0; k < 3; k++)
            for (const char *p = strstr(nm, keys[k]); p; p = strstr(p + 1, keys[k])) {
                if (p != nm && p[-1] != '.') continue;
                const char *d = p + strlen(keys[k]);
                char *end;
                long v = strtol(d, &end, 10);
                if (end != d && *end == '.' && v >= n_file) n_file = v + 1;
            }
    }
    if (m->cfg.n_layers > n_file)
        return ftc_errf(err, FTC_E_INPUT, "%s: config.json says %d layers but the weights hold %ld", dir, m->cfg.n_layers,
                        n_file);
    return FTC_OK;
}

static ftc_status load_model(const char *dir, ftc_task task, bool bf16_base, int qtype, const json_t *types,
                             ftc_model **out, ftc_err *err) {
    *out = NULL;
    ftc_model_config cfg;
    ftc_status s = ftc_config_load(dir, &cfg, err);
    if (s) return s;
    ftc_model *m = model_new();
    if (!m) {
        ftc_config_free(&cfg);
        return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    }
    s = setup_shape(m, &cfg, task, err);
    ftc_config_free(&cfg);
    if (!s) {
        char path[4200];
        size_t len;
        if (ftc_is_dir(dir) && ftc_path_join(path, sizeof path, dir, "config.json"))
            s = ftc_read_file(path, &m->config_json, &len, err);
    }
    ftc_st_set *st = NULL;
    if (!s) s = ftc_st_open(dir, &st, err);
    if (!s) {
        /* which prefix the base model's names carry: "transformer.", "model.", "bert." or none */
        const char *suffix = EMBED_SUFFIX[m->cfg.family];
        const char *prefixes[] = {"", "transformer.", "model.", "bert."};
        bool found = false;
        for (int i = 0; i < 4 && !found; i++) {
            char name[192];
            snprintf(name, sizeof name, "%s%s", prefixes[i], suffix);
            if (ftc_st_find(st, name)) snprintf(m->prefix, sizeof m->prefix, "%s", prefixes[i]), found = true;
        }
        if (!found)
            s = ftc_errf(err, FTC_E_INPUT, "%s: missing tensor '%s' (looked for it with prefixes '', 'transformer.', "
                         "'model.', 'bert.'): not a %s checkpoint?", dir, suffix, m->cfg.model_type);
    }
    if (!s) s = check_sizes_against_file(m, st, dir, err); /* before anything is allocated from config sizes */
    if (!s) {
        char name[192];
        snprintf(name, sizeof name, "%spooler.dense.weight", m->prefix);
        bool pooler = m->cfg.family == FTC_FAMILY_BERT && ftc_st_find(st, name);
        int cls_labels = 0;
        bool cls_bias = false;
        if (task == FTC_TASK_CLASSIFY) {
            const char *head = m->cfg.family == FTC_FAMILY_BERT ? "classifier" : "score";
            snprintf(name, sizeof name, "%s.weight", head);
            const ftc_tensor_view *t = ftc_st_find(st, name);
            if (t && t->ndim == 2 && t->shape[0] > 0 && t->shape[0] <= FTC_MAX_LABELS) {
                cls_labels = (int)t->shape[0];
                snprintf(name, sizeof name, "%s.bias", head);
                cls_bias = ftc_st_find(st, name) != NULL;
            }
        }
        s = declare_params(m, pooler, cls_labels, cls_bias, err);
        for (int i = 0; !s && (bf16_base || types) && i < m->n_params; i++) { /* no f32 storage for these */
            ftc_param *p = &m->params[i];
            bool qs = ftc_model_quant_storable(m, i);
            int qt = qtype >= 0 && qs ? ftc_model_quant_type_of(m, i, qtype) : types && qs ? file_qtype(types, p) : -1;
            /* types: the others as a bf16 base (bf16_base) or f32 keeps them */
            bool bf16 = qtype < 0 && qt < 0 && bf16_base && ftc_model_bf16_storable(m, i);
            if ((qtype >= 0 && qs) || qt >= 0 || bf16) {
                p->trainable = false; /* frozen until ftc_model_set_trainable restores an f32 value */
                if (qt >= 0) { /* quantized */
                    p->qtype = qt;
                    if (posix_memalign(&p->data_q, 64, ftc_quant_tensor_bytes(qt, p->shape[0], p->numel / p->shape[0]))) {
                        p->data_q = NULL;
                        s = ftc_errf(err, FTC_E_NOMEM, "out of memory for %s in %s", p->name, ftc_quant_name(qt));
                    }
                } else if (!bf16) { /* no block fits its rows: stays f32 */
                } else if (posix_memalign((void **)&p->data_bf16, 64, (size_t)p->numel * sizeof(uint16_t))) {
                    p->data_bf16 = NULL;
                    s = ftc_errf(err, FTC_E_NOMEM, "out of memory for %s in bf16", p->name);
                }
            }
        }
        for (int i = 0; !s && i < m->n_params; i++) { /* every shape, before the memory for them is taken */
            const ftc_param *p = &m->params[i];
            int64_t fshape[2] = {p->ndim == 2 ? p->shape[1] : 0, p->shape[0]};
            s = ftc_st_check_shape(st, p->name, p->ndim, p->transposed ? fshape : p->shape, err);
        }
        if (!s) s = ftc_model_alloc_params(m, err);
        /* non-finite weights are refused unless the caller's environment says it knows (the CLI's
         * --allow-nonfinite sets FTC_ALLOW_NONFINITE=1) */
        const char *allow = getenv("FTC_ALLOW_NONFINITE");
        bool check = !(allow && allow[0] && strcmp(allow, "0"));
        /* every weight lands in its own storage (f32, bf16 or packed), never used from the mapping: the file's
         * pages are dropped as they are read, so a load does not hold the file beside the model (an f32 model
         * was held twice at its peak: SmolLM2's 538 MB file + its 538 MB of values) */
        for (int i = 0; !s && i < m->n_params; i++) {
            s = load_param(st, &m->params[i], check, true, err);
            const ftc_tensor_view *t = !s ? ftc_st_find(st, m->params[i].name) : NULL;
            if (t) release_pages(t->data, t->nbytes); /* what the pieces left: a transposed weight, page edges */
        }
    }
    ftc_st_close(st);
    if (s) {
        ftc_model_free(m);
        return s;
    }
    *out = m;
    return FTC_OK;
}

/* ---- random initialisation, as transformers' _init_weights ---- */

static void init_normal(ftc_rng *r, float *x, int64_t n, float std) {
    for (int64_t i = 0; i < n; i++) x[i] = std * ftc_rng_normal(r);
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static void init_param(ftc_model *m, int i, ftc_rng *r) {
    ftc_param *p = &m->params[i];
    float std = m->cfg.initializer_range;
    bool is_norm = (i == m->emb_n_w || i == m->lnf_w);
    for (int l = 0; l < m->L && !is_norm; l++) is_norm = i == m->layers[l].n1_w || i == m->layers[l].n2_w;
    if (is_norm) {
        for (int64_t k = 0; k < p->numel; k++) p->data[k] = 1.0f;
    } else if (p->ndim == 1) {
        memset(p->data, 0, (size_t)p->numel * sizeof(float));
    } else {
        /* GPT-2 scales the residual projections by 1/sqrt(2 n_layer) */
        if (m->cfg.family == FTC_FAMILY_GPT2 && ends_with(p->name, "c_proj.weight")) std /= sqrtf(2.0f * (float)m->L);
        init_normal(r, p->data, p->numel, std);
        int pad = m->cfg.pad_token_id;
        if (i == m->wte && m->cfg.family != FTC_FAMILY_GPT2 && pad >= 0 && pad < m->V)
            memset(p->data + (int64_t)pad * m->C, 0, (size_t)m->C * sizeof(float));
    }
}

ftc_status ftc_model_create(const ftc_model_config *cfg, ftc_task task, uint64_t seed, ftc_model **out, ftc_err *err) {
    *out = NULL;
    ftc_model *m = model_new();
    if (!m) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    ftc_status s = setup_shape(m, cfg, task, err);
    if (!s) {
        /* names as the matching transformers class writes them */
        const char *px = task == FTC_TASK_ENCODE ? ""
                         : cfg->family == FTC_FAMILY_GPT2 ? "transformer."
                         : cfg->family == FTC_FAMILY_LLAMA ? "model." : "bert.";
        snprintf(m->prefix, sizeof m->prefix, "%s", px);
        bool pooler = cfg->family == FTC_FAMILY_BERT && task == FTC_TASK_CLASSIFY;
        int labels = task == FTC_TASK_CLASSIFY ? cfg->num_labels : 0;
        s = declare_params(m, pooler, labels, cfg->family == FTC_FAMILY_BERT, err);
        if (!s) s = ftc_model_alloc_params(m, err);
    }
    if (s) {
        ftc_model_free(m);
        return s;
    }
    ftc_rng r;
    ftc_rng_seed(&r, seed);
    for (int i = 0; i < m->n_params; i++) init_param(m, i, &r);
    *out = m;
    return FTC_OK;
}

ftc_status ftc_model_set_classifier(ftc_model *m, int num_labels, ftc_pooling pooling, uint64_t seed, ftc_err *err) {
    if (m->task != FTC_TASK_CLASSIFY)
        return ftc_errf(err, FTC_E_USAGE, "a classification head needs a model loaded for classification");
    if (num_labels < 1 || num_labels > FTC_MAX_LABELS)
        return ftc_errf(err, FTC_E_INPUT, "number of labels %d out of range 1..%d", num_labels, FTC_MAX_LABELS);
    if (pooling == FTC_POOL_LAST && !m->causal)
        return ftc_errf(err, FTC_E_INPUT, "last-token pooling is for decoders; use cls or mean pooling for %s",
                        m->cfg.model_type);
    m->pooling = pooling;
    if (m->cls_w >= 0 && m->num_labels == num_labels) return FTC_OK; /* the checkpoint's head fits */
    if (m->cls_w >= 0) {
        /* resize the existing head's entries; the buffer is laid out again */
        m->params[m->cls_w].shape[0] = num_labels;
        m->params[m->cls_w].numel = (int64_t)num_labels * m->C;
        m->offsets[m->cls_w] = -1;
        if (m->cls_b >= 0) {
            m->params[m->cls_b].shape[0] = num_labels;
            m->params[m->cls_b].numel = num_labels;
            m->offsets[m->cls_b] = -1;
        }
    } else {
        const char *head = m->cfg.family == FTC_FAMILY_BERT ? "classifier" : "score";
        m->cls_w = addf(m, FTC_PARAM_CLASSIFIER, -1, false, true, 2, num_labels, m->C, "%s.weight", head);
        m->cls_b = m->cfg.family == FTC_FAMILY_BERT
                       ? addf(m, FTC_PARAM_CLASSIFIER, -1, false, false, 1, num_labels, 0, "%s.bias", head)
                       : -1;
        if (m->cls_w < 0 || (m->cfg.family == FTC_FAMILY_BERT && m->cls_b < 0))
            return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    }
    m->num_labels = num_labels;
    ftc_status s = ftc_model_alloc_params(m, err);
    if (s) return s;
    ftc_rng r;
    ftc_rng_seed(&r, seed);
    init_normal(&r, m->params[m->cls_w].data, m->params[m->cls_w].numel, 0.02f);
    if (m->cls_b >= 0) memset(m->params[m->cls_b].data, 0, (size_t)num_labels * sizeof(float));
    /* activations for the head depend on num_labels */
    if (m->max_B > 0) return ftc_model_reserve(m, m->max_B, m->max_T, err);
    return FTC_OK;
}
