/* Linear modules and LoRA: y = x W^T + b + (alpha/r) * B(A(dropout(x))), A [r,in], B [out,r] (as PEFT). */
#include "model_internal.h"
#include "ftc/matmul.h"
#include "ftc/ops.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* with_bias false: the caller adds l->b itself (fused with what follows, see ftc_bias_gelu_forward) */
static void forward(ftc_model *m, linear_mod *l, float *y, const float *x, int N, bool training, bool with_bias) {
    ftc_model_linear_forward(m, l->w, with_bias ? l->b : -1, y, x, N, l->in, l->out);
    if (l->lora_a < 0) return;
    int r = (int)m->params[l->lora_a].shape[0];
    const float *xin = x;
    if (training && l->lora_dropout > 0) {
        ftc_dropout_forward(l->lora_xd, l->lora_mask, x, N * l->in, l->lora_dropout, &m->rng);
        xin = l->lora_xd;
    }
    ftc_linear_forward(l->lora_ax, xin, P(m, l->lora_a), NULL, N, l->in, r);
    ftc_matmul(false, true, N, l->out, r, l->lora_scale, l->lora_ax, r, P(m, l->lora_b), r, 1.0f, y, l->out);
}

void ftc_linear_mod_forward(ftc_model *m, linear_mod *l, float *y, const float *x, int N, bool training) {
    forward(m, l, y, x, N, training, true);
}

void ftc_linear_mod_forward_nobias(ftc_model *m, linear_mod *l, float *y, const float *x, int N, bool training) {
    forward(m, l, y, x, N, training, false);
}

void ftc_linear_mod_backward(ftc_model *m, linear_mod *l, float *dx, const float *dy, const float *x, int N) {
    ftc_model_linear_backward(m, l->w, l->b, dx, dy, x, N, l->in, l->out);
    if (l->lora_a < 0) return;
    int r = (int)m->params[l->lora_a].shape[0];
    bool drop = m->training && l->lora_dropout > 0;
    const float *xin = drop ? l->lora_xd : x;
    float *gax = m->g_lora; /* d(A x) = scale * dy B */
    ftc_matmul(false, false, N, r, l->out, l->lora_scale, dy, l->out, P(m, l->lora_b), r, 0.0f, gax, r);
    if (G(m, l->lora_b))
        ftc_matmul(true, false, l->out, r, N, l->lora_scale, dy, l->out, l->lora_ax, r, 1.0f, G(m, l->lora_b), r);
    if (G(m, l->lora_a)) ftc_matmul(true, false, r, l->in, N, 1.0f, gax, r, xin, l->in, 1.0f, G(m, l->lora_a), l->in);
    if (!dx) return;
    if (!drop) {
        ftc_matmul(false, false, N, l->in, r, 1.0f, gax, r, P(m, l->lora_a), l->in, 1.0f, dx, l->in);
        return;
    }
    /* through the dropout: the dropped input is no longer needed, so its buffer holds d(xin) */
    ftc_matmul(false, false, N, l->in, r, 1.0f, gax, r, P(m, l->lora_a), l->in, 0.0f, l->lora_xd, l->in);
    ftc_dropout_backward(dx, l->lora_xd, l->lora_mask, N * l->in);
}

int ftc_model_max_lora_rank(const ftc_model *m) {
    int r = 0;
    for (int i = 0; i < m->L; i++)
        for (int j = 0; j < FTC_LAYER_MODS; j++) {
            linear_mod *lm = layer_mod(&m->layers[i], j);
            if (lm->w >= 0 && lm->lora_a >= 0 && m->params[lm->lora_a].shape[0] > r) r = (int)m->params[lm->lora_a].shape[0];
        }
    return r;
}

/* PEFT's matching: a target key matches a module whose name is the key or ends with ".key". */
static bool module_matches(const char *module, const char *targets) {
    if (!strcmp(targets, "all-linear")) return true;
    const char *p = targets;
    size_t mlen = strlen(module);
    while (*p) {
        while (*p == ',' || *p == ' ') p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        size_t n = (size_t)(e - p);
        while (n && p[n - 1] == ' ') n--;
        if (n && mlen >= n && !strncmp(module + mlen - n, p, n) && (mlen == n || module[mlen - n - 1] == '.'))
            return true;
        p = e;
    }
    return false;
}

/* Short names of the block's linears ("q_proj, k_proj, ...") for error messages. */
static void list_module_kinds(const ftc_model *m, char *out, size_t n) {
    out[0] = 0;
    layer_params *l = &m->layers[0];
    for (int j = 0; j < FTC_LAYER_MODS; j++) {
        linear_mod *lm = layer_mod(l, j);
        if (lm->w < 0) continue;
        const char *dot = strrchr(lm->module, '.');
        const char *kind = dot ? dot + 1 : lm->module;
        /* BERT's "dense" appears twice; keep the list short and unique */
        if (strstr(out, kind)) continue;
        size_t len = strlen(out);
        snprintf(out + len, n - len, "%s%s", len ? ", " : "", kind);
    }
}

ftc_status ftc_model_add_lora(ftc_model *m, const char *targets, int r, float alpha, float dropout, uint64_t seed,
                              ftc_err *err) {
    if (!targets || !*targets) return ftc_errf(err, FTC_E_USAGE, "LoRA needs target modules (e.g. \"q_proj,v_proj\")");
    if (r < 1 || r > 4096) return ftc_errf(err, FTC_E_USAGE, "LoRA rank %d out of range 1..4096", r);
    if (!(alpha > 0)) return ftc_errf(err, FTC_E_USAGE, "LoRA alpha must be positive (got %g)", alpha);
    if (!(dropout >= 0 && dropout < 1)) return ftc_errf(err, FTC_E_USAGE, "LoRA dropout must be in [0, 1)");
    int first_new = m->n_params, matched = 0;
    for (int i = 0; i < m->L; i++)
        for (int j = 0; j < FTC_LAYER_MODS; j++) {
            linear_mod *lm = layer_mod(&m->layers[i], j);
            if (lm->w < 0 || !module_matches(lm->module, targets)) continue;
            if (lm->lora_a >= 0)
                return ftc_errf(err, FTC_E_USAGE, "%s already has a LoRA adapter (merge it first)", lm->module);
            char name[200];
            int64_t sa[2] = {r, lm->in}, sb[2] = {lm->out, r};
            snprintf(name, sizeof name, "base_model.model.%s.lora_A.weight", lm->module);
            lm->lora_a = ftc_model_add_param(m, name, 2, sa, false, true);
            snprintf(name, sizeof name, "base_model.model.%s.lora_B.weight", lm->module);
            lm->lora_b = ftc_model_add_param(m, name, 2, sb, false, true);
            if (m->table_oom) return ftc_errf(err, FTC_E_NOMEM, "out of memory adding LoRA adapters");
            m->params[lm->lora_a].is_lora = m->params[lm->lora_b].is_lora = true;
            /* an adapter belongs where the linear it adapts does (the freeze policy reads this) */
            m->params[lm->lora_a].role = m->params[lm->lora_b].role = m->params[lm->w].role;
            m->params[lm->lora_a].block = m->params[lm->lora_b].block = m->params[lm->w].block;
            lm->lora_scale = alpha / (float)r;
            lm->lora_dropout = dropout;
            matched++;
        }
    if (!matched) {
        char kinds[512];
        list_module_kinds(m, kinds, sizeof kinds);
        return ftc_errf(err, FTC_E_INPUT, "LoRA targets \"%s\" match no linear module of this %s model (its modules: %s, "
                        "or all-linear)", targets, m->cfg.model_type, kinds);
    }
    /* the base is frozen; the adapters and a classification head (PEFT's modules_to_save) train */
    for (int i = 0; i < first_new; i++) m->params[i].trainable = i == m->cls_w || i == m->cls_b;
    ftc_status s = ftc_model_alloc_params(m, err);
    if (s) return s;
    ftc_rng rng;
    ftc_rng_seed(&rng, seed);
    for (int i = first_new; i < m->n_params; i++) {
        ftc_param *p = &m->params[i];
        if (p->shape[0] == 0) continue;
        bool is_a = strstr(p->name, ".lora_A.") != NULL;
        /* A: kaiming_uniform_(a=sqrt(5)) as nn.Linear/PEFT, i.e. U(-1/sqrt(in), 1/sqrt(in)); B: zero */
        float bound = 1.0f / sqrtf((float)p->shape[1]);
        for (int64_t k = 0; k < p->numel; k++) p->data[k] = is_a ? bound * (2 * ftc_rng_uniform(&rng) - 1) : 0.0f;
    }
    if (m->max_B > 0) s = ftc_model_reserve(m, m->max_B, m->max_T, err); /* room for the adapters' activations */
    return s;
}

/* Renumbers every parameter reference after entries were removed from the table. */
static void remap(int *idx, const int *map) {
    if (*idx >= 0) *idx = map[*idx];
}

ftc_status ftc_model_merge_lora(ftc_model *m, ftc_err *err) {
    for (int i = 0; i < m->L; i++)
        for (int j = 0; j < FTC_LAYER_MODS; j++) {
            linear_mod *lm = layer_mod(&m->layers[i], j);
            if (lm->lora_a < 0) continue;
            int r = (int)m->params[lm->lora_a].shape[0];
            ftc_param *w = &m->params[lm->w];
            if (w->data_q) { /* quantized base: merged in f32 (the dequantized base plus the adapter) */
                ftc_status s = ftc_model_inflate_f32(m, lm->w, err);
                if (s) return s;
            }
            float *W = w->data;
            if (!W) { /* stored in bf16: the sum is formed in f32 and rounded once (as PEFT merging into a bf16 base) */
                W = malloc((size_t)w->numel * sizeof(float));
                if (!W) return ftc_errf(err, FTC_E_NOMEM, "out of memory merging the adapter of %s", lm->module);
                ftc_bf16_to_f32_n(w->data_bf16, W, (size_t)w->numel);
            }
            /* W[out,in] += scale * B[out,r] @ A[r,in] */
            ftc_matmul(false, false, lm->out, lm->in, r, lm->lora_scale, P(m, lm->lora_b), r, P(m, lm->lora_a), lm->in,
                       1.0f, W, lm->in);
            if (!w->data) {
                ftc_f32_to_bf16_n(W, w->data_bf16, (size_t)w->numel);
                free(W);
            }
        }
    m->bf16_stale_all = true; /* bf16 copies of merged f32 weights */
    int *map = malloc((size_t)(m->n_params ? m->n_params : 1) * sizeof *map);
    if (!map) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    int n = 0;
    for (int i = 0; i < m->n_params; i++) {
        map[i] = m->params[i].is_lora ? -1 : n;
        if (!m->params[i].is_lora) m->params[n] = m->params[i], m->offsets[n] = m->offsets[i], n++;
    }
    m->n_params = n;
    int *fields[] = {&m->wte, &m->wpe, &m->wtt, &m->emb_n_w, &m->emb_n_b, &m->lnf_w, &m->lnf_b, &m->lm_head,
                     &m->pooler_w, &m->pooler_b, &m->cls_w, &m->cls_b};
    for (size_t k = 0; k < sizeof fields / sizeof *fields; k++) remap(fields[k], map);
    for (int i = 0; i < m->L; i++) {
        layer_params *l = &m->layers[i];
        remap(&l->n1_w, map), remap(&l->n1_b, map), remap(&l->n2_w, map), remap(&l->n2_b, map);
        for (int j = 0; j < FTC_LAYER_MODS; j++) {
            linear_mod *lm = layer_mod(l, j);
            remap(&lm->w, map), remap(&lm->b, map);
            lm->lora_a = lm->lora_b = -1;
            lm->lora_ax = lm->lora_xd = lm->lora_mask = NULL;
        }
    }
    free(map);
    ftc_status s = ftc_model_alloc_params(m, err);
    if (!s && m->max_B > 0) s = ftc_model_reserve(m, m->max_B, m->max_T, err);
    return s;
}
