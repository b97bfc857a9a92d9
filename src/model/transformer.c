/* The transformer: embeddings, one block for every family (see model_internal.h), final norm, heads.
 * Memory is planned once by ftc_model_reserve; forward and backward allocate nothing. */
#include "model_internal.h"
#include "ftc/matmul.h"
#include "ftc/ops.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* HF rotate_half RoPE frequencies, with Llama-3 rope_scaling when the config has it. */
void ftc_rope_inv_freq_scaled(float *inv_freq, const ftc_model_config *cfg, int D) {
    if (!strcmp(cfg->rope_scaling_type, "llama3"))
        ftc_rope_inv_freq_llama3(inv_freq, D, cfg->rope_theta, cfg->rope_scaling_factor, cfg->rope_low_freq_factor,
                             cfg->rope_high_freq_factor, cfg->rope_original_max_positions);
    else
        ftc_rope_inv_freq(inv_freq, D, cfg->rope_theta);
}

/* ---- memory plan ---- */

typedef struct {
    float *base;
    size_t off;
} planner;

static float *take(planner *p, size_t n) {
    float *r = p->base ? p->base + p->off : NULL;
    p->off += (n + 15) & ~(size_t)15;
    return r;
}

/* Rows of vocabulary logits computed (and differentiated) at a time, on every path. With loss_only the logits
 * exist for these rows alone and their gradient overwrites them: gpt2's 50257 words at batch 4 x 128 take 51 MB
 * instead of 103 MB of logits + 51 MB of gradient. Fewer rows would save more but cost time: every piece decodes
 * (or packs) the whole head weight again, twice (gpt2-small LoRA on a q8_0 base, CPU s a step: 4.4 at 64 rows,
 * 4.2 at 128, 4.1 at 256, 3.9 in one piece of 512). The full-logits path runs its head in the same pieces, so
 * both give the same values bit for bit whatever the matmul does with the row count. */
enum { LM_CHUNK = 256, LM_MIN_ROWS = 96 };

/* The rows of a piece for N positions: as many pieces as LM_CHUNK rows need, of equal size (SmolLM2 at 4 x 134:
 * three pieces of 179 rows instead of 256 + 256 + 24, the same passes over the head weight, 30% less memory).
 * fit (0: no limit): the rows whose logits fit in the block scratch the piece overlays (a training plan with
 * --grad-checkpoint, which asks for memory over time). When a piece would be larger, more pieces are taken, as
 * many as fit needs but none under LM_MIN_ROWS rows: each piece costs two more passes over the head weight
 * (SmolLM2 4 x 128, q4_0 base: 2 -> 5 pieces of 103 rows, about 1.5% of a step's CPU time; the peak 20 MiB
 * lower, since the 48 MiB piece no longer outgrows the 20 MiB scratch). */
static int lm_piece_rows(size_t N, size_t fit) {
    size_t pieces = (N + LM_CHUNK - 1) / LM_CHUNK;
    if (fit > 0 && (N + pieces - 1) / pieces > fit) {
        size_t want = (N + fit - 1) / fit, most = N / LM_MIN_ROWS;
        want = want < most ? want : most;
        pieces = want > pieces ? want : pieces;
    }
    return (int)((N + pieces - 1) / pieces);
}

static bool any_trainable(const ftc_model *m) {
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].trainable) return true;
    return false;
}

/* The MLP's activations (h_up, h_gate, h_act): contiguous, so that the attention's gradients can overlay them. */
static void plan_mlp_acts(ftc_model *m, layer_params *l, planner *p) {
    size_t NF = (size_t)m->max_B * (size_t)m->max_T * (size_t)m->F;
    l->h_up = take(p, NF);
    l->h_gate = m->swiglu ? take(p, NF) : NULL;
    l->h_act = take(p, NF);
}

/* One block's activations (LAYER_ACT_FIELDS); the branch outputs o_out and down_out and their dropped-out r1 and r2
 * (read only by the residual add right after them) only with transients (else the caller plans them: buffers
 * shared by every block); the MLP's activations only with mlp, the block's output s2 only with out (else the
 * caller plans them). */
static void plan_layer_acts(ftc_model *m, layer_params *l, planner *p, bool transients, bool mlp, bool out) {
    size_t N = (size_t)m->max_B * (size_t)m->max_T, NB = (size_t)m->max_B, NT = (size_t)m->max_T;
    size_t C = (size_t)m->C, Q = (size_t)m->qdim, KV = (size_t)m->kvdim;
    bool hdrop = m->cfg.hidden_dropout > 0;
    l->n1 = take(p, N * C), l->n1_mean = take(p, N), l->n1_rstd = take(p, N), l->s1 = take(p, N * C);
    l->n2 = take(p, N * C), l->n2_mean = take(p, N), l->n2_rstd = take(p, N), l->s2 = out ? take(p, N * C) : NULL;
    l->xq = take(p, N * Q), l->xk = take(p, N * KV), l->xv = take(p, N * KV);
    l->lse = take(p, NB * (size_t)m->H * NT);
    l->attn_out = take(p, N * Q);
    l->o_out = transients ? take(p, N * C) : NULL;
    l->o_mask = hdrop ? take(p, N * C) : NULL;
    l->r1 = hdrop && transients ? take(p, N * C) : NULL;
    if (mlp) plan_mlp_acts(m, l, p);
    l->down_out = transients ? take(p, N * C) : NULL;
    l->down_mask = hdrop ? take(p, N * C) : NULL;
    l->r2 = hdrop && transients ? take(p, N * C) : NULL;
}

/* The attention's gradients (attention_block_backward). */
static void plan_attention_grads(ftc_model *m, planner *p) {
    size_t NB = (size_t)m->max_B, NT = (size_t)m->max_T, N = NB * NT;
    size_t Q = (size_t)m->qdim, KV = (size_t)m->kvdim;
    m->g_q = take(p, N * Q), m->g_k = take(p, N * KV), m->g_v = take(p, N * KV), m->g_attn = take(p, N * Q);
    m->g_qkv = m->fused_qkv ? take(p, N * (Q + 2 * KV)) : NULL;
    m->g_att_scratch = take(p, ftc_attention_flash_scratch_floats((int)NB, (int)NT, m->H, m->Hkv, m->D));
}

/* The block scratch: what lives only while one block runs (forward or backward), planned from p's offset. With a
 * training plan its parts share memory by lifetime (all of this is on one thread of control, one block at a time):
 * - the attention's gradients (g_q .. g_att_scratch) live only in attention_block_backward, the MLP's
 *   (g_up, g_gate, g_act) only in mlp_backward, which runs before it: one overlays the other;
 * - qkv_tmp (the fused q|k|v product) lives only inside attention_block_forward, o_out / down_out (a branch's
 *   output) and r1 / r2 (the same dropped out) from their product to the residual add right after it (the
 *   backward reads neither): one buffer each for all blocks, over the attention's gradients (a recomputing
 *   backward runs a block's forward before that block's backward, never inside it);
 * - without hidden dropout g_b is only the final norm's backward output, which runs before any block's backward:
 *   it overlays the gradients' scratch;
 * - the LM head's logits piece (the plan's head_overlay) lives only in the head (the end of the forward, the start
 *   of the backward), when no block runs: it overlays the whole scratch, the shared block activations included
 *   (with --grad-checkpoint the last block's output is in ck_out, and the backward recomputes each block).
 * With --grad-checkpoint (one activation set shared by all blocks, which the backward recomputes block by block
 * before it reads them) also:
 * - the adapters' buffers are one set;
 * - a pre-norm block's output s2 is written straight into ck_out (the recompute writes the same values again);
 * - the MLP's activations (h_up, h_gate, h_act) are dead once mlp_backward has read them: its gradients g_up and
 *   g_gate take their places (h_act is read by the down projection's backward alone, h_up by gate's gradient
 *   alone) and the attention's gradients overlay all three; g_act, which lives beside them, has the forward's
 *   transients and g_b over it. SmolLM2 at 4 x 128: the scratch 27.9 -> 19.6 MiB.
 * g_res (the head's output gradient), g_lora and the per-layer buffers stay outside. */
static void plan_scratch(ftc_model *m, planner *p) {
    size_t NB = (size_t)m->max_B, NT = (size_t)m->max_T, N = NB * NT;
    size_t C = (size_t)m->C, F = (size_t)m->F, Q = (size_t)m->qdim, KV = (size_t)m->kvdim;
    bool hdrop = m->cfg.hidden_dropout > 0;
    bool grads = !m->fwd_only, share = m->grad_ckpt || m->fwd_only, ck = share && grads;
    bool out_ck = ck && m->pre_norm; /* a block's output straight into ck_out */
    m->g_a = m->g_b = m->g_q = m->g_k = m->g_v = m->g_attn = m->g_qkv = NULL;
    m->g_up = m->g_gate = m->g_act = m->g_att_scratch = NULL;
    if (share) {
        plan_layer_acts(m, &m->layers[0], p, !grads, !ck, !out_ck);
        for (int i = 1; i < m->L; i++) { /* one activation set for all blocks */
            layer_params *l = &m->layers[i];
#define SHARE(f) l->f = m->layers[0].f;
            LAYER_ACT_FIELDS(SHARE)
#undef SHARE
        }
        for (int i = 0; out_ck && i < m->L; i++) m->layers[i].s2 = m->ck_out[i];
        /* the adapters' A x (and dropped-out input): a block's forward writes them, its backward (after the
         * recompute) reads them; one set for all blocks, sized for the largest adapter of each module */
        for (int j = 0; j < FTC_LAYER_MODS; j++) {
            size_t r = 0, in = 0;
            for (int i = 0; i < m->L; i++) {
                linear_mod *lm = layer_mod(&m->layers[i], j);
                if (lm->lora_a < 0) continue;
                size_t ri = (size_t)m->params[lm->lora_a].shape[0];
                r = ri > r ? ri : r;
                if (lm->lora_dropout > 0 && (size_t)lm->in > in) in = (size_t)lm->in;
            }
            float *ax = r ? take(p, N * r) : NULL, *xd = in ? take(p, N * in) : NULL, *mask = in ? take(p, N * in) : NULL;
            for (int i = 0; i < m->L; i++) {
                linear_mod *lm = layer_mod(&m->layers[i], j);
                if (lm->lora_a < 0) continue;
                lm->lora_ax = ax;
                lm->lora_xd = lm->lora_dropout > 0 ? xd : NULL;
                lm->lora_mask = lm->lora_dropout > 0 ? mask : NULL;
            }
        }
    }
    if (!grads) {
        m->qkv_tmp = m->fused_qkv ? take(p, N * (Q + 2 * KV)) : NULL;
        return;
    }
    m->g_a = take(p, N * C);
    m->g_b = hdrop ? take(p, N * C) : NULL;
    if (ck) { /* the MLP's activations, the attention's gradients over them */
        size_t h = p->off;
        plan_mlp_acts(m, &m->layers[0], p);
        for (int i = 1; i < m->L; i++) {
            layer_params *l = &m->layers[i];
            l->h_up = m->layers[0].h_up, l->h_gate = m->layers[0].h_gate, l->h_act = m->layers[0].h_act;
        }
        size_t hend = p->off;
        p->off = h;
        plan_attention_grads(m, p);
        p->off = p->off > hend ? p->off : hend;
    }
    size_t u = p->off, end = u;
    if (ck) {
        m->g_act = take(p, N * F);
        m->g_up = m->swiglu ? m->layers[0].h_up : m->layers[0].h_act;
        m->g_gate = m->swiglu ? m->layers[0].h_act : NULL;
    } else {
        plan_attention_grads(m, p);
    }
    end = p->off;
    p->off = u; /* the forward's transients: the fused q|k|v product, the dropped-out branch outputs */
    m->qkv_tmp = m->fused_qkv ? take(p, N * (Q + 2 * KV)) : NULL;
    float *branch = take(p, N * C), *dropped_branch = hdrop ? take(p, N * C) : NULL;
    for (int i = 0; i < m->L; i++) {
        layer_params *l = &m->layers[i];
        l->o_out = l->down_out = branch;
        l->r1 = l->r2 = dropped_branch;
    }
    end = p->off > end ? p->off : end;
    p->off = u;
    if (!hdrop) m->g_b = take(p, N * C); /* over the transients (branch is as large) */
    p->off = u;
    if (!ck) m->g_up = take(p, N * F), m->g_gate = m->swiglu ? take(p, N * F) : NULL, m->g_act = take(p, N * F);
    p->off = p->off > end ? p->off : end;
}

/* The activation plan. Sequence length is an axis of every entry: nothing grows with T x T (attention keeps
 * lse [B,H,T] per block, its backward a per-call scratch of O(B T H D)). With nothing trainable the plan is
 * forward-only: one block's activations shared by all blocks, no gradient scratch. */
static void plan(ftc_model *m, planner *p) {
    size_t NB = (size_t)m->max_B, NT = (size_t)m->max_T, N = NB * NT;
    size_t C = (size_t)m->C;
    bool hdrop = m->cfg.hidden_dropout > 0;
    bool grads = any_trainable(m);
    m->fwd_only = !grads;
    bool share = m->grad_ckpt || m->fwd_only;
    m->ids = (int32_t *)take(p, N);
    m->pos = (int32_t *)take(p, N);
    m->types = (int32_t *)take(p, N);
    m->targets = (int32_t *)take(p, N);
    m->cls_targets = (int32_t *)take(p, NB);
    m->mask = (uint8_t *)take(p, (N + 3) / 4);
    /* with --grad-checkpoint (two blocks or more, no embedding LayerNorm) the embeddings' sum, block 0's input, is
     * held in the last block's ck_out, which is written after block 0 has read it; the backward takes the
     * embeddings again there for block 0, once the final norm's backward has read the last block's output */
    bool emb_in_ck = m->grad_ckpt && !m->fwd_only && m->L >= 2 && m->emb_n_w < 0;
    m->emb_sum = emb_in_ck ? NULL : take(p, N * C);
    m->emb_n = m->emb_n_w >= 0 ? take(p, N * C) : NULL;
    m->emb_mean = m->emb_n_w >= 0 ? take(p, N) : NULL;
    m->emb_rstd = m->emb_n_w >= 0 ? take(p, N) : NULL;
    m->emb_mask = hdrop ? take(p, N * C) : NULL;
    m->emb_out = hdrop ? take(p, N * C) : NULL;
    m->fwd_x = m->fwd_only ? take(p, N * C) : NULL;
    for (int i = 0; i < m->L; i++) {
        layer_params *l = &m->layers[i];
        if (m->grad_ckpt && !m->fwd_only) m->ck_out[i] = take(p, N * C);
        if (emb_in_ck && i == m->L - 1) m->emb_sum = m->ck_out[i];
        if (share) continue; /* one activation set for all blocks, the adapters' buffers too (below) */
        plan_layer_acts(m, l, p, !grads, true, true);
        for (int j = 0; j < FTC_LAYER_MODS; j++) {
            linear_mod *lm = layer_mod(l, j);
            if (lm->lora_a < 0) continue;
            size_t r = (size_t)m->params[lm->lora_a].shape[0];
            lm->lora_ax = take(p, N * r);
            lm->lora_xd = lm->lora_dropout > 0 ? take(p, N * (size_t)lm->in) : NULL;
            lm->lora_mask = lm->lora_dropout > 0 ? take(p, N * (size_t)lm->in) : NULL;
        }
    }
    m->lnf = m->lnf_w >= 0 ? take(p, N * C) : NULL;
    m->lnf_mean = m->lnf_w >= 0 ? take(p, N) : NULL;
    m->lnf_rstd = m->lnf_w >= 0 ? take(p, N) : NULL;
    size_t nl = (size_t)(m->num_labels > 0 ? m->num_labels : 1);
    m->logits = m->dlogits = NULL;
    m->nll = NULL;
    m->lm_rows = 0;
    m->pooled = m->pool_dense = m->pool_tanh = m->cls_in = m->cls_mask = NULL;
    /* a training plan with loss_only: the head's logits piece overlays the block scratch below (head_overlay) */
    bool head_overlay = grads && m->task == FTC_TASK_CAUSAL_LM && m->loss_only;
    if (m->task == FTC_TASK_CAUSAL_LM) {
        /* the LM head's backward runs in row chunks: its logits gradient needs LM_CHUNK rows, not N; with
         * loss_only the logits too, never [N, V]. With --grad-checkpoint a piece fits in the block scratch (its
         * size from a dry run of the scratch's plan), with or without loss_only: both run the same pieces */
        size_t fit = 0;
        if (grads && m->grad_ckpt) {
            planner dry = {NULL, 0};
            plan_scratch(m, &dry);
            fit = dry.off / (size_t)m->V;
            fit = fit > 0 ? fit : 1;
        }
        m->lm_rows = lm_piece_rows(N, fit);
        if (!head_overlay) {
            m->logits = take(p, (m->loss_only ? (size_t)m->lm_rows : N) * m->V);
            /* loss_only: the gradient overwrites the piece's logits (ftc_cross_entropy_backward works in place) */
            m->dlogits = !grads ? NULL : m->loss_only ? m->logits : take(p, (size_t)m->lm_rows * m->V);
        }
        m->nll = m->loss_only ? (double *)take(p, N * (sizeof(double) / sizeof(float))) : NULL;
    } else if (m->task == FTC_TASK_CLASSIFY) {
        m->pooled = take(p, NB * C);
        m->pool_dense = m->pooler_w >= 0 ? take(p, NB * C) : NULL;
        m->pool_tanh = m->pooler_w >= 0 ? take(p, NB * C) : NULL;
        m->cls_in = m->cls_dropout > 0 ? take(p, NB * C) : NULL;
        m->cls_mask = m->cls_dropout > 0 ? take(p, NB * C) : NULL;
        m->logits = take(p, NB * nl);
        m->dlogits = grads ? take(p, NB * nl) : NULL;
    }
    int rmax = ftc_model_max_lora_rank(m);
    m->g_res = NULL;
    m->g_pooled = m->g_pool_dense = m->g_cls_in = m->g_lora = NULL;
    if (grads) {
        m->g_res = take(p, N * C);
        m->g_pooled = take(p, NB * C), m->g_pool_dense = take(p, NB * C), m->g_cls_in = take(p, NB * C);
        m->g_lora = rmax > 0 ? take(p, N * (size_t)rmax) : NULL;
    }
    size_t region = p->off;
    plan_scratch(m, p);
    if (head_overlay) {
        size_t end = p->off;
        p->off = region;
        m->logits = m->dlogits = take(p, (size_t)m->lm_rows * m->V);
        p->off = p->off > end ? p->off : end;
    }
}

int64_t ftc_model_activation_bytes(const ftc_model *m) { return (int64_t)m->act_floats * (int64_t)sizeof(float); }

int64_t ftc_model_activation_bytes_for(ftc_model *m, int B, int T) {
    if (B < 1 || T < 1 || !m->act) return 0;
    int ob = m->max_B, ot = m->max_T;
    m->max_B = B, m->max_T = T;
    planner p = {NULL, 0};
    plan(m, &p); /* sizes only: every pointer it sets is NULL */
    m->max_B = ob, m->max_T = ot;
    planner q = {m->act, 0}; /* the reserved plan's pointers back */
    plan(m, &q);
    return (int64_t)p.off * (int64_t)sizeof(float);
}

ftc_status ftc_model_reserve(ftc_model *m, int max_B, int max_T, ftc_err *err) {
    if (max_B < 1 || max_T < 1) return ftc_errf(err, FTC_E_USAGE, "reserve needs a positive batch size and length");
    if (m->learned_pos && max_T > m->cfg.max_positions)
        return ftc_errf(err, FTC_E_INPUT, "sequence length %d exceeds the model's %d positions", max_T,
                        m->cfg.max_positions);
    if (m->storage_oom) return ftc_errf(err, FTC_E_NOMEM, "out of memory restoring bf16-stored weights to f32");
    if (!m->grads_planned || m->table_oom) {
        ftc_status s = ftc_model_plan_grads(m, err);
        if (s) return s;
    }
    m->max_B = max_B, m->max_T = max_T;
    free(m->ck_out), free(m->ck_rng);
    m->ck_out = NULL, m->ck_rng = NULL;
    if (m->grad_ckpt) {
        m->ck_out = calloc((size_t)m->L, sizeof *m->ck_out);
        m->ck_rng = calloc((size_t)m->L, sizeof *m->ck_rng);
        if (!m->ck_out || !m->ck_rng) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    }
    planner p = {NULL, 0};
    plan(m, &p);
    free(m->act);
    m->act = NULL;
    m->act_floats = 0;
    if (posix_memalign((void **)&m->act, 64, p.off * sizeof(float))) {
        m->act = NULL;
        m->max_B = m->max_T = 0;
        return ftc_errf(err, FTC_E_NOMEM, "out of memory for activations (%.1f MiB for batch %dx%d)",
                        (double)p.off * 4 / (1 << 20), max_B, max_T);
    }
    m->act_floats = p.off;
    p = (planner){m->act, 0};
    plan(m, &p);
    m->forward_done = false;
    return FTC_OK;
}

static bool layer_trainable(const ftc_model *m, const layer_params *l) {
    int idx[] = {l->n1_w, l->n1_b, l->n2_w, l->n2_b};
    for (int j = 0; j < 4; j++)
        if (idx[j] >= 0 && m->params[idx[j]].trainable) return true;
    for (int j = 0; j < FTC_LAYER_MODS; j++) {
        const linear_mod *lm = layer_mod_const(l, j);
        int pi[] = {lm->w, lm->b, lm->lora_a, lm->lora_b};
        for (int k = 0; k < 4; k++)
            if (pi[k] >= 0 && m->params[pi[k]].trainable) return true;
    }
    return false;
}

static bool embeddings_trainable(const ftc_model *m) {
    int idx[] = {m->wte, m->wpe, m->wtt, m->emb_n_w, m->emb_n_b};
    for (int j = 0; j < 5; j++)
        if (idx[j] >= 0 && m->params[idx[j]].trainable) return true;
    return false;
}

void ftc_model_set_block_done(ftc_model *m, ftc_model_block_done_fn fn, void *ctx) {
    m->block_done = fn;
    m->block_done_ctx = ctx;
}

/* whether the backward needs the gradient of the last hidden state (something below the head trains) */
static bool need_hidden_grad(const ftc_model *m) {
    if (embeddings_trainable(m)) return true;
    for (int i = 0; i < m->L; i++)
        if (layer_trainable(m, &m->layers[i])) return true;
    return (m->lnf_w >= 0 && m->params[m->lnf_w].trainable) || (m->lnf_b >= 0 && m->params[m->lnf_b].trainable);
}

static bool lm_head_trains(const ftc_model *m) { return m->params[m->lm_head].trainable; }

/* The LM head's backward for rows [r0, r0 + rows) of the N positions, whose logits are in logits [rows, V]:
 * the gradient of weight x the mean loss over all total counted targets (this chunk's gradient is scaled by
 * its share of them: ftc_cross_entropy_backward divides by the chunk's own count), added into g (the hidden
 * state's gradient [N, C], rows r0.., or NULL) and the head weight's gradient when it trains. */
static void lm_head_backward_rows(ftc_model *m, const float *logits, int r0, int rows, int total, float weight,
                                  float *g) {
    int here = 0, C = m->C, N = m->B * m->T;
    for (int n = r0; n < r0 + rows; n++) here += m->targets[n] >= 0;
    if (!here) return;
    /* each row's scale as in the pieces of lm_piece_rows(max_B x max_T, 0) rows ("accounting" pieces: those of a
     * plan without --grad-checkpoint), whatever rows this piece holds: the gradient does not depend on the plan
     * (with bf16 products the last bit of the scale moves many dlogits' roundings) */
    int acct = lm_piece_rows((size_t)m->max_B * (size_t)m->max_T, 0);
    for (int a0 = r0; a0 < r0 + rows;) {
        int k0 = a0 / acct * acct, k1 = k0 + acct < N ? k0 + acct : N, a1 = k1 < r0 + rows ? k1 : r0 + rows, cnt = 0;
        for (int n = k0; n < k1; n++) cnt += m->targets[n] >= 0;
        float dloss = (float)cnt / (float)total * weight, gk = cnt ? dloss / (float)cnt : 0.0f;
        ftc_cross_entropy_backward_rows(m->dlogits + (size_t)(a0 - r0) * m->V, logits + (size_t)(a0 - r0) * m->V,
                                        m->targets + a0, a1 - a0, m->V, gk);
        a0 = a1;
    }
    ftc_model_linear_backward(m, m->lm_head, -1, g ? g + (size_t)r0 * C : NULL, m->dlogits, m->hidden + (size_t)r0 * C,
                              rows, C, m->V);
}

/* ---- forward ---- */

static void norm_forward(const ftc_model *m, float *y, float *mean, float *rstd, const float *x, int w, int b, int N) {
    if (m->rmsnorm)
        ftc_rmsnorm_forward(y, rstd, x, m->params[w].data, N, m->C, m->cfg.norm_eps);
    else
        ftc_layernorm_forward(y, mean, rstd, x, m->params[w].data, b >= 0 ? m->params[b].data : NULL, N, m->C,
                          m->cfg.norm_eps);
}

/* s = a + b (residual), y = norm(s), fused (ops_fused.c) */
static void add_norm_forward(const ftc_model *m, float *s, float *y, float *mean, float *rstd, const float *a,
                             const float *b, int w, int bias, int N) {
    if (m->rmsnorm)
        ftc_add_rmsnorm_forward(s, y, rstd, a, b, m->params[w].data, N, m->C, m->cfg.norm_eps);
    else
        ftc_add_layernorm_forward(s, y, mean, rstd, a, b, m->params[w].data, bias >= 0 ? m->params[bias].data : NULL, N,
                              m->C, m->cfg.norm_eps);
}

static void norm_backward(ftc_model *m, float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                          int w, int b, int N) {
    if (m->rmsnorm)
        ftc_rmsnorm_backward(dx, G(m, w), dy, x, P(m, w), rstd, N, m->C);
    else
        ftc_layernorm_backward(dx, G(m, w), G(m, b), dy, x, P(m, w), mean, rstd, N, m->C);
}

/* y = dropout(x) when training with p > 0, else x itself (no copy). */
static const float *maybe_dropout(ftc_model *m, float *y, float *mask, const float *x, size_t n, float p) {
    if (!m->training || p <= 0 || !y) return x;
    ftc_dropout_forward(y, mask, x, (int)n, p, &m->rng);
    return y;
}

static bool dropped(const ftc_model *m, float p) { return m->training && p > 0; }

/* Attention's training options: probability dropout when training (BERT, GPT-2), bf16 products at bf16.
 * The forward draws the dropout mask's key (one draw, as ftc_dropout_forward takes) and keeps it for backward. */
static attention_opts attn_opts(ftc_model *m, layer_params *l, bool forward) {
    attention_opts o = {0};
    if (dropped(m, m->cfg.attention_dropout)) {
        o.dropout_p = m->cfg.attention_dropout;
        if (forward) l->att_drop_key = ftc_rng_u64(&m->rng);
        o.drop_key = l->att_drop_key;
    }
    o.bf16 = m->precision == FTC_PREC_BF16;
    return o;
}

static void attention_block_forward(ftc_model *m, layer_params *l, const float *in, int B, int T) {
    int N = B * T;
    if (m->fused_qkv) {
        int W = m->qdim + 2 * m->kvdim;
        ftc_linear_mod_forward(m, &l->qkv, m->qkv_tmp, in, N, m->training);
        for (int n = 0; n < N; n++) {
            const float *row = m->qkv_tmp + (size_t)n * W;
            memcpy(l->xq + (size_t)n * m->qdim, row, (size_t)m->qdim * sizeof(float));
            memcpy(l->xk + (size_t)n * m->kvdim, row + m->qdim, (size_t)m->kvdim * sizeof(float));
            memcpy(l->xv + (size_t)n * m->kvdim, row + m->qdim + m->kvdim, (size_t)m->kvdim * sizeof(float));
        }
    } else {
        ftc_linear_mod_forward(m, &l->q, l->xq, in, N, m->training);
        ftc_linear_mod_forward(m, &l->k, l->xk, in, N, m->training);
        ftc_linear_mod_forward(m, &l->v, l->xv, in, N, m->training);
    }
    if (m->rope) {
        ftc_rope_forward(l->xq, m->pos, m->inv_freq, N, m->H, m->D);
        ftc_rope_forward(l->xk, m->pos, m->inv_freq, N, m->Hkv, m->D);
    }
    attention_opts ao = attn_opts(m, l, true);
    ftc_attention_flash_forward(l->attn_out, l->lse, l->xq, l->xk, l->xv, m->mask, B, T, m->H, m->Hkv, m->D, m->causal,
                                &ao);
    ftc_linear_mod_forward(m, &l->o, l->o_out, l->attn_out, N, m->training);
}

static void mlp_forward(ftc_model *m, layer_params *l, const float *in, int N) {
    if (m->swiglu) {
        ftc_linear_mod_forward(m, &l->up, l->h_up, in, N, m->training);
        ftc_linear_mod_forward(m, &l->gate, l->h_gate, in, N, m->training);
        ftc_swiglu_forward(l->h_act, l->h_gate, l->h_up, N * m->F);
    } else { /* the up projection's bias is added together with the GELU */
        ftc_linear_mod_forward_nobias(m, &l->up, l->h_up, in, N, m->training);
        ftc_bias_gelu_forward(l->h_act, l->h_up, P(m, l->up.b), N, m->F, m->cfg.activation == FTC_ACT_GELU_TANH);
    }
    ftc_linear_mod_forward(m, &l->down, l->down_out, l->h_act, N, m->training);
}

/* One block; returns its output (inside the layer's activations). */
static const float *layer_forward(ftc_model *m, layer_params *l, const float *x, int B, int T) {
    int N = B * T;
    size_t NC = (size_t)N * m->C;
    float p = m->cfg.hidden_dropout;
    if (m->pre_norm) {
        norm_forward(m, l->n1, l->n1_mean, l->n1_rstd, x, l->n1_w, l->n1_b, N);
        attention_block_forward(m, l, l->n1, B, T);
        add_norm_forward(m, l->s1, l->n2, l->n2_mean, l->n2_rstd, x,
                         maybe_dropout(m, l->r1, l->o_mask, l->o_out, NC, p), l->n2_w, l->n2_b, N);
        mlp_forward(m, l, l->n2, N);
        ftc_add_forward(l->s2, l->s1, maybe_dropout(m, l->r2, l->down_mask, l->down_out, NC, p), (int)NC);
        return l->s2;
    }
    attention_block_forward(m, l, x, B, T);
    add_norm_forward(m, l->s1, l->n1, l->n1_mean, l->n1_rstd, x,
                     maybe_dropout(m, l->r1, l->o_mask, l->o_out, NC, p), l->n1_w, l->n1_b, N);
    mlp_forward(m, l, l->n1, N);
    add_norm_forward(m, l->s2, l->n2, l->n2_mean, l->n2_rstd, l->n1,
                     maybe_dropout(m, l->r2, l->down_mask, l->down_out, NC, p), l->n2_w, l->n2_b, N);
    return l->n2;
}

static ftc_status check_batch(ftc_model *m, const ftc_batch *b, ftc_err *err) {
    if (!m->act) return ftc_errf(err, FTC_E_USAGE, "call ftc_model_reserve before ftc_model_forward");
    if (b->B < 1 || b->T < 1 || b->B > m->max_B || b->T > m->max_T)
        return ftc_errf(err, FTC_E_USAGE, "batch %dx%d does not fit the reserved %dx%d", b->B, b->T, m->max_B,
                        m->max_T);
    if (!b->ids) return ftc_errf(err, FTC_E_USAGE, "batch without token ids");
    if (m->cfg.sliding_window > 0 && b->T > m->cfg.sliding_window) /* within the window it is plain causal */
        return ftc_errf(err, FTC_E_UNSUPPORTED, "sequence length %d exceeds the %s sliding window of %d tokens, "
                        "which is not supported; use sequences of at most %d", b->T, m->cfg.model_type,
                        m->cfg.sliding_window, m->cfg.sliding_window);
    if (m->task == FTC_TASK_CLASSIFY && m->cls_w < 0)
        return ftc_errf(err, FTC_E_USAGE, "the model has no classification head (a causal LM or a bare encoder): classify and --task classify need a "
                        "classifier checkpoint (score/classifier weights) or a run of ftc train --task classify");
    int N = b->B * b->T;
    /* positions count from each row's start, so padding must come last; a row needs one real token */
    for (int r = 0; b->mask && r < b->B; r++) {
        const uint8_t *mr = b->mask + (size_t)r * b->T;
        if (!mr[0]) return ftc_errf(err, FTC_E_INPUT, "batch row %d has no real token (mask starts with 0)", r);
        for (int t = 1; t < b->T; t++)
            if (mr[t] && !mr[t - 1])
                return ftc_errf(err, FTC_E_INPUT, "batch row %d: padding must come after the tokens (right padding); "
                                "position %d is real after padding", r, t);
    }
    for (int n = 0; n < N; n++) {
        if (b->ids[n] < 0 || b->ids[n] >= m->V)
            return ftc_errf(err, FTC_E_INPUT, "token id %d at batch row %d, position %d is outside the vocabulary "
                            "(size %d)", b->ids[n], n / b->T, n % b->T, m->V);
        int tt = b->type_ids ? b->type_ids[n] : 0;
        if (tt < 0 || (m->wtt >= 0 && tt >= m->cfg.type_vocab_size) || (m->wtt < 0 && tt != 0))
            return ftc_errf(err, FTC_E_INPUT, "token type %d at batch row %d, position %d is out of range", tt,
                            n / b->T, n % b->T);
    }
    if (b->labels && m->task == FTC_TASK_CAUSAL_LM)
        for (int n = 0; n < N; n++)
            if (b->labels[n] >= m->V)
                return ftc_errf(err, FTC_E_INPUT, "label %d at batch row %d, position %d is outside the vocabulary "
                                "(size %d)", b->labels[n], n / b->T, n % b->T, m->V);
    if (b->labels && m->task == FTC_TASK_CLASSIFY)
        for (int i = 0; i < b->B; i++)
            if (b->labels[i] >= m->num_labels)
                return ftc_errf(err, FTC_E_INPUT, "class label %d of batch row %d is out of range (%d labels)",
                                b->labels[i], i, m->num_labels);
    return FTC_OK;
}

static bool uses_pooler(const ftc_model *m) { return m->pooler_w >= 0 && m->pooling == FTC_POOL_CLS; }

/* The classification head's input z [B, C]: the pooled state, through the BERT pooler when it is used. */
static float *head_input(const ftc_model *m) { return uses_pooler(m) ? m->pool_tanh : m->pooled; }

/* logits = classifier(dropout(z)) (+ loss with labels), z = head_input(m) already filled. R-Drop (m->rdrop_pairs
 * = P > 0): B = 2P rows, row P + i the second pass of example i, whose label is labels[i]. */
static void classify_head_forward(ftc_model *m, int B, const int32_t *labels) {
    const float *z = maybe_dropout(m, m->cls_in, m->cls_mask, head_input(m), (size_t)B * m->C, m->cls_dropout);
    ftc_linear_forward(m->logits, z, P(m, m->cls_w), P(m, m->cls_b), B, m->C, m->num_labels);
    if (labels) {
        int pairs = m->rdrop_pairs;
        for (int i = 0; i < B; i++) m->cls_targets[i] = labels[pairs > 0 ? i % pairs : i];
        int counted;
        m->loss = ftc_cross_entropy_forward(m->logits, m->cls_targets, B, m->num_labels, &counted);
        float eps = m->training ? m->label_smoothing : 0.0f;
        if (eps > 0 && counted > 0) { /* + eps x (mean over labels of -log p - CE): -log p_k = lse - z_k */
            int K = m->num_labels;
            double uniform = 0;
            for (int i = 0; i < B; i++) {
                if (m->cls_targets[i] < 0) continue;
                const float *z = m->logits + (size_t)i * K;
                double mx = z[0], se = 0, sz = 0;
                for (int k = 1; k < K; k++) mx = z[k] > mx ? z[k] : mx;
                for (int k = 0; k < K; k++) se += exp(z[k] - mx), sz += z[k];
                uniform += mx + log(se) - sz / K;
            }
            m->loss = (float)((1.0 - eps) * m->loss + eps * uniform / counted);
        }
        if (pairs > 0) /* + alpha/4 x the mean over pairs of KL(p1||p2) + KL(p2||p1) */
            m->loss = (float)(m->loss + m->rdrop / 4.0 * ftc_rdrop_kl_forward(m->logits, m->cls_targets, pairs,
                                                                              m->num_labels, NULL));
    }
}

ftc_status ftc_model_forward(ftc_model *m, const ftc_batch *batch, bool training, float *loss, ftc_err *err) {
    m->forward_done = false;
    ftc_status s = check_batch(m, batch, err);
    if (s) return s;
    /* R-Drop: every example twice (rows i and B + i), each row with its own dropout masks */
    bool rdrop = training && m->rdrop > 0 && m->task == FTC_TASK_CLASSIFY && batch->labels;
    if (rdrop && 2 * batch->B > m->max_B)
        return ftc_errf(err, FTC_E_USAGE, "R-Drop runs each example twice: a batch of %d needs %d reserved rows, "
                        "%d are (ftc_model_reserve)", batch->B, 2 * batch->B, m->max_B);
    m->rdrop_pairs = rdrop ? batch->B : 0;
    ftc_model_refresh_bf16(m); /* bf16 copies of weights the optimizer changed, once per step */
    int B = rdrop ? 2 * batch->B : batch->B, T = batch->T, N = B * T, C = m->C, N1 = batch->B * T;
    size_t NC = (size_t)N * C;
    m->B = B, m->T = T, m->training = training;
    for (int n = 0; n < N; n++) {
        int k = n % N1; /* the batch's own row (R-Drop: the second half repeats the first) */
        m->ids[n] = batch->ids[k];
        m->pos[n] = n % T; /* right padding: positions count from each row's start */
        m->types[n] = batch->type_ids ? batch->type_ids[k] : 0;
        m->mask[n] = batch->mask ? (batch->mask[k] != 0) : 1;
    }
    ftc_model_embed_forward(m, m->emb_sum, m->ids, m->learned_pos ? m->pos : NULL, m->wtt >= 0 ? m->types : NULL, N);
    const float *x = m->emb_sum;
    if (m->emb_n_w >= 0) {
        ftc_layernorm_forward(m->emb_n, m->emb_mean, m->emb_rstd, x, P(m, m->emb_n_w), P(m, m->emb_n_b), N, C,
                          m->cfg.norm_eps);
        x = m->emb_n;
    }
    x = maybe_dropout(m, m->emb_out, m->emb_mask, x, NC, m->cfg.hidden_dropout);
    bool ckpt = m->grad_ckpt && !m->fwd_only;
    for (int i = 0; i < m->L; i++) {
        if (ckpt) m->ck_rng[i] = m->rng; /* backward replays this block's dropout masks */
        if (m->fwd_only && x != m->fwd_x) { /* the blocks share one activation set: the input has its own copy */
            memcpy(m->fwd_x, x, NC * sizeof(float));
            x = m->fwd_x;
        }
        x = layer_forward(m, &m->layers[i], x, B, T);
        if (ckpt && x != m->ck_out[i]) { /* (a pre-norm block writes its output there itself) */
            memcpy(m->ck_out[i], x, NC * sizeof(float));
            x = m->ck_out[i];
        }
    }
    if (m->lnf_w >= 0) {
        norm_forward(m, m->lnf, m->lnf_mean, m->lnf_rstd, x, m->lnf_w, m->lnf_b, N);
        x = m->lnf;
    }
    m->hidden = (float *)x;
    m->have_labels = batch->labels != NULL;
    m->loss = 0;
    m->head_done = false;
    if (m->task == FTC_TASK_CAUSAL_LM && m->loss_only) {
        /* lm_rows rows of logits at a time: each row's loss kept (the mean is then the unchunked one, bit for
         * bit); when training with a frozen head, also the head's gradient into g_res, so that the backward
         * needs no second pass over the logits */
        for (int n = 0; n < N; n++) m->targets[n] = batch->labels && (n % T) + 1 < T ? batch->labels[n + 1] : -100;
        if (batch->labels) {
            int total = 0, counted;
            for (int n = 0; n < N; n++) total += m->targets[n] >= 0;
            bool fuse = training && m->g_res && !lm_head_trains(m);
            float *g = fuse && need_hidden_grad(m) ? m->g_res : NULL;
            if (g) memset(g, 0, NC * sizeof(float));
            for (int r0 = 0; r0 < N; r0 += m->lm_rows) {
                int rows = N - r0 < m->lm_rows ? N - r0 : m->lm_rows;
                ftc_model_linear_forward(m, m->lm_head, -1, m->logits, x + (size_t)r0 * C, rows, C, m->V);
                ftc_cross_entropy_rows(m->nll + r0, m->logits, m->targets + r0, rows, m->V);
                if (g) lm_head_backward_rows(m, m->logits, r0, rows, total, m->loss_weight, g);
            }
            m->loss = ftc_cross_entropy_reduce(m->nll, m->targets, N, &counted);
            m->head_done = g != NULL, m->head_w = m->loss_weight;
        }
    } else if (m->task == FTC_TASK_CAUSAL_LM) {
        for (int r0 = 0; r0 < N; r0 += m->lm_rows) /* the pieces the loss_only path computes */
            ftc_model_linear_forward(m, m->lm_head, -1, m->logits + (size_t)r0 * m->V, x + (size_t)r0 * C,
                                     N - r0 < m->lm_rows ? N - r0 : m->lm_rows, C, m->V);
        if (batch->labels) {
            /* HF convention: position t predicts labels[t+1] */
            for (int n = 0; n < N; n++) m->targets[n] = (n % T) + 1 < T ? batch->labels[n + 1] : -100;
            int counted;
            m->loss = ftc_cross_entropy_forward(m->logits, m->targets, N, m->V, &counted);
        }
    } else if (m->task == FTC_TASK_CLASSIFY) {
        if (m->pooling == FTC_POOL_CLS)
            ftc_pool_cls_forward(m->pooled, x, B, T, C);
        else if (m->pooling == FTC_POOL_MEAN)
            ftc_pool_mean_forward(m->pooled, x, m->mask, B, T, C);
        else
            ftc_pool_last_forward(m->pooled, x, m->mask, B, T, C);
        if (uses_pooler(m)) { /* BERT pooler: tanh(dense(CLS)) */
            ftc_model_linear_forward(m, m->pooler_w, m->pooler_b, m->pool_dense, m->pooled, B, C, C);
            ftc_tanh_forward(m->pool_tanh, m->pool_dense, B * C);
        }
        classify_head_forward(m, B, batch->labels);
    }
    if (loss) *loss = m->loss;
    m->forward_done = true;
    return FTC_OK;
}

const float *ftc_model_logits(const ftc_model *m) {
    return m->task == FTC_TASK_CAUSAL_LM && m->loss_only ? NULL : m->logits;
}

int ftc_model_lm_chunk_rows(const ftc_model *m) { return m->task == FTC_TASK_CAUSAL_LM ? m->lm_rows : 0; }

const float *ftc_model_lm_logits_rows(ftc_model *m, int r0, int rows) {
    if (m->task != FTC_TASK_CAUSAL_LM || !m->forward_done || r0 < 0 || rows < 1 || rows > m->lm_rows ||
        r0 + rows > m->B * m->T)
        return NULL;
    ftc_model_linear_forward(m, m->lm_head, -1, m->logits, m->hidden + (size_t)r0 * m->C, rows, m->C, m->V);
    return m->logits;
}

void ftc_model_set_loss_weight(ftc_model *m, float weight) { m->loss_weight = weight; }

ftc_status ftc_model_set_loss_only(ftc_model *m, bool on, ftc_err *err) {
    if (m->loss_only == on) return FTC_OK;
    m->loss_only = on;
    m->forward_done = false;
    return m->max_B > 0 ? ftc_model_reserve(m, m->max_B, m->max_T, err) : FTC_OK;
}

ftc_status ftc_model_head_features(ftc_model *m, const ftc_batch *batch, float *out, ftc_err *err) {
    if (m->task != FTC_TASK_CLASSIFY)
        return ftc_errf(err, FTC_E_USAGE, "head features need a model loaded for classification");
    ftc_batch b = *batch;
    b.labels = NULL;
    ftc_status s = ftc_model_forward(m, &b, false, NULL, err);
    if (s) return s;
    memcpy(out, head_input(m), (size_t)b.B * m->C * sizeof(float));
    return FTC_OK;
}

ftc_status ftc_model_head_forward(ftc_model *m, const float *features, int B, const int32_t *labels, bool training,
                                  float *loss, ftc_err *err) {
    m->forward_done = false;
    if (m->task != FTC_TASK_CLASSIFY || m->cls_w < 0)
        return ftc_errf(err, FTC_E_USAGE, "the model has no classification head (a causal LM or a bare encoder): classify and --task classify need a "
                        "classifier checkpoint (score/classifier weights) or a run of ftc train --task classify");
    if (!m->act) return ftc_errf(err, FTC_E_USAGE, "call ftc_model_reserve before ftc_model_head_forward");
    if (B < 1 || B > m->max_B)
        return ftc_errf(err, FTC_E_USAGE, "batch of %d features does not fit the reserved %d", B, m->max_B);
    /* backward after this forward stops at the head: anything below it that trains would get no gradient */
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].trainable && i != m->cls_w && i != m->cls_b)
            return ftc_errf(err, FTC_E_USAGE, "training on features needs a frozen backbone, but %s trains",
                            m->params[i].name);
    for (int i = 0; labels && i < B; i++)
        if (labels[i] < 0 || labels[i] >= m->num_labels)
            return ftc_errf(err, FTC_E_INPUT, "class label %d of batch row %d is out of range (%d labels)", labels[i],
                            i, m->num_labels);
    m->B = B, m->T = 1, m->training = training;
    m->rdrop_pairs = 0; /* the head alone runs each example once */
    m->hidden = NULL;
    memcpy(head_input(m), features, (size_t)B * m->C * sizeof(float));
    m->loss = 0;
    classify_head_forward(m, B, labels);
    m->have_labels = labels != NULL;
    if (loss) *loss = m->loss;
    m->forward_done = true;
    return FTC_OK;
}

ftc_status ftc_model_set_label_smoothing(ftc_model *m, float eps, ftc_err *err) {
    if (!(eps >= 0 && eps < 1)) return ftc_errf(err, FTC_E_USAGE, "label smoothing %g is outside [0, 1)", eps);
    m->label_smoothing = eps;
    return FTC_OK;
}

ftc_status ftc_model_set_rdrop(ftc_model *m, float alpha, ftc_err *err) {
    if (!(alpha >= 0 && alpha <= 1e6)) return ftc_errf(err, FTC_E_USAGE, "R-Drop alpha %g is outside [0, 1e6]", alpha);
    m->rdrop = alpha;
    return FTC_OK;
}

ftc_status ftc_model_set_grad_checkpoint(ftc_model *m, bool on, ftc_err *err) {
    if (m->grad_ckpt == on) return FTC_OK;
    m->grad_ckpt = on;
    m->forward_done = false;
    return m->max_B > 0 ? ftc_model_reserve(m, m->max_B, m->max_T, err) : FTC_OK;
}
const float *ftc_model_hidden(const ftc_model *m) { return m->hidden; }

/* ---- backward ---- */

/* dx = dy * mask when the forward dropped out, else dy itself. */
static const float *maybe_dropout_back(ftc_model *m, float *dx, const float *dy, const float *mask, size_t n, float p) {
    if (!dropped(m, p)) return dy;
    memset(dx, 0, n * sizeof(float));
    ftc_dropout_backward(dx, dy, mask, (int)n);
    return dx;
}

/* d_out: gradient of the block's output projection; d_in (may alias d_out, NULL = not needed) += grad of in. */
static void attention_block_backward(ftc_model *m, layer_params *l, const float *in, const float *d_out, float *d_in,
                                     int B, int T) {
    int N = B * T;
    memset(m->g_attn, 0, (size_t)N * m->qdim * sizeof(float));
    ftc_linear_mod_backward(m, &l->o, m->g_attn, d_out, l->attn_out, N);
    memset(m->g_q, 0, (size_t)N * m->qdim * sizeof(float));
    memset(m->g_k, 0, (size_t)N * m->kvdim * sizeof(float));
    memset(m->g_v, 0, (size_t)N * m->kvdim * sizeof(float));
    attention_opts ao = attn_opts(m, l, false);
    ftc_attention_flash_backward(m->g_q, m->g_k, m->g_v, m->g_attn, l->attn_out, l->lse, l->xq, l->xk, l->xv, m->mask, B,
                                 T, m->H, m->Hkv, m->D, m->causal, m->g_att_scratch, &ao);
    if (m->rope) {
        ftc_rope_backward(m->g_q, m->pos, m->inv_freq, N, m->H, m->D);
        ftc_rope_backward(m->g_k, m->pos, m->inv_freq, N, m->Hkv, m->D);
    }
    if (m->fused_qkv) {
        int W = m->qdim + 2 * m->kvdim;
        for (int n = 0; n < N; n++) {
            float *row = m->g_qkv + (size_t)n * W;
            memcpy(row, m->g_q + (size_t)n * m->qdim, (size_t)m->qdim * sizeof(float));
            memcpy(row + m->qdim, m->g_k + (size_t)n * m->kvdim, (size_t)m->kvdim * sizeof(float));
            memcpy(row + m->qdim + m->kvdim, m->g_v + (size_t)n * m->kvdim, (size_t)m->kvdim * sizeof(float));
        }
        ftc_linear_mod_backward(m, &l->qkv, d_in, m->g_qkv, in, N);
    } else {
        ftc_linear_mod_backward(m, &l->q, d_in, m->g_q, in, N);
        ftc_linear_mod_backward(m, &l->k, d_in, m->g_k, in, N);
        ftc_linear_mod_backward(m, &l->v, d_in, m->g_v, in, N);
    }
}

static void mlp_backward(ftc_model *m, layer_params *l, const float *in, const float *d_out, float *d_in, int N) {
    size_t nf = (size_t)N * m->F;
    memset(m->g_act, 0, nf * sizeof(float));
    ftc_linear_mod_backward(m, &l->down, m->g_act, d_out, l->h_act, N);
    if (m->swiglu && m->g_gate == l->h_act) {
        /* --grad-checkpoint: gate's gradient over h_act (read by the down projection's backward alone), then up's
         * over h_up (read by gate's gradient alone); each value as in one pass, the sigmoid computed twice */
        memset(m->g_gate, 0, nf * sizeof(float));
        ftc_swiglu_backward(m->g_gate, NULL, m->g_act, l->h_gate, l->h_up, (int)nf);
        memset(m->g_up, 0, nf * sizeof(float));
        ftc_swiglu_backward(NULL, m->g_up, m->g_act, l->h_gate, NULL, (int)nf);
        ftc_linear_mod_backward(m, &l->gate, d_in, m->g_gate, in, N);
        ftc_linear_mod_backward(m, &l->up, d_in, m->g_up, in, N);
        return;
    }
    memset(m->g_up, 0, nf * sizeof(float)); /* (--grad-checkpoint, GELU: over h_act, which is read no more) */
    if (m->swiglu) {
        memset(m->g_gate, 0, nf * sizeof(float));
        ftc_swiglu_backward(m->g_gate, m->g_up, m->g_act, l->h_gate, l->h_up, (int)nf);
        ftc_linear_mod_backward(m, &l->gate, d_in, m->g_gate, in, N);
    } else if (m->cfg.activation == FTC_ACT_GELU_TANH) {
        ftc_gelu_tanh_backward(m->g_up, m->g_act, l->h_up, (int)nf);
    } else {
        ftc_gelu_erf_backward(m->g_up, m->g_act, l->h_up, (int)nf);
    }
    ftc_linear_mod_backward(m, &l->up, d_in, m->g_up, in, N);
}

/* g: on entry d(layer output), on exit d(layer input x) (when need_dx). */
static void layer_backward(ftc_model *m, layer_params *l, const float *x, float *g, bool need_dx, int B, int T) {
    int N = B * T;
    size_t NC = (size_t)N * m->C;
    float p = m->cfg.hidden_dropout;
    if (m->pre_norm) {
        /* out = s1 + drop(mlp(n2(s1))); s1 = x + drop(attn(n1(x))) */
        const float *d_down = maybe_dropout_back(m, m->g_b, g, l->down_mask, NC, p);
        memset(m->g_a, 0, NC * sizeof(float));
        mlp_backward(m, l, l->n2, d_down, m->g_a, N);
        norm_backward(m, g, m->g_a, l->s1, l->n2_mean, l->n2_rstd, l->n2_w, l->n2_b, N); /* g = d s1 */
        const float *d_o = maybe_dropout_back(m, m->g_b, g, l->o_mask, NC, p);
        memset(m->g_a, 0, NC * sizeof(float));
        attention_block_backward(m, l, l->n1, d_o, m->g_a, B, T);
        norm_backward(m, need_dx ? g : NULL, m->g_a, x, l->n1_mean, l->n1_rstd, l->n1_w, l->n1_b, N);
        return;
    }
    /* out = n2(s2); s2 = n1 + drop(mlp(n1)); n1 = n1(s1); s1 = x + drop(attn(x)) */
    memset(m->g_a, 0, NC * sizeof(float));
    norm_backward(m, m->g_a, g, l->s2, l->n2_mean, l->n2_rstd, l->n2_w, l->n2_b, N); /* g_a = d s2 */
    const float *d_down = maybe_dropout_back(m, m->g_b, m->g_a, l->down_mask, NC, p);
    mlp_backward(m, l, l->n1, d_down, m->g_a, N); /* g_a = d n1 (d_down consumed before g_a is written) */
    memset(g, 0, NC * sizeof(float));
    norm_backward(m, g, m->g_a, l->s1, l->n1_mean, l->n1_rstd, l->n1_w, l->n1_b, N); /* g = d s1 */
    const float *d_o = maybe_dropout_back(m, m->g_b, g, l->o_mask, NC, p);
    attention_block_backward(m, l, x, d_o, need_dx ? g : NULL, B, T);
}

static const float *block_output(const ftc_model *m, int i) {
    return m->pre_norm ? m->layers[i].s2 : m->layers[i].n2;
}

ftc_status ftc_model_backward(ftc_model *m, ftc_err *err) { return ftc_model_backward_weighted(m, 1.0f, err); }

ftc_status ftc_model_backward_weighted(ftc_model *m, float weight, ftc_err *err) {
    if (!m->forward_done || !m->have_labels)
        return ftc_errf(err, FTC_E_USAGE, "backward needs a preceding forward with labels");
    if (!m->g_res) return ftc_errf(err, FTC_E_USAGE, "no trainable parameters: nothing to differentiate");
    if (m->task == FTC_TASK_ENCODE) return ftc_errf(err, FTC_E_USAGE, "an encoder-only model has no loss");
    int B = m->B, T = m->T, N = B * T, C = m->C;
    size_t NC = (size_t)N * C;
    /* lowest block that needs gradients: nothing below it is visited (head-only training stops at the head) */
    int lowest = m->L;
    bool emb = embeddings_trainable(m);
    if (emb) lowest = 0;
    else
        for (int i = 0; i < m->L; i++)
            if (layer_trainable(m, &m->layers[i])) { lowest = i; break; }
    bool need_hidden = need_hidden_grad(m);
    float *g = m->g_res;
    /* loss_only: the forward took the head's gradient for this weight already (g_res holds it) */
    bool head_done = m->task == FTC_TASK_CAUSAL_LM && m->loss_only && m->head_done && m->head_w == weight;
    m->head_done = false; /* the blocks' backward below turns g_res into something else */
    if (!head_done) memset(g, 0, NC * sizeof(float));
    if (m->task == FTC_TASK_CAUSAL_LM && m->loss_only) {
        /* the logits again, lm_rows rows at a time (a trainable head, or a weight the forward did not know) */
        int total = 0;
        for (int n = 0; n < N; n++) total += m->targets[n] >= 0;
        for (int r0 = 0; r0 < N && total > 0 && !head_done; r0 += m->lm_rows) {
            int rows = N - r0 < m->lm_rows ? N - r0 : m->lm_rows;
            ftc_model_linear_forward(m, m->lm_head, -1, m->logits, m->hidden + (size_t)r0 * C, rows, C, m->V);
            lm_head_backward_rows(m, m->logits, r0, rows, total, weight, need_hidden ? g : NULL);
        }
    } else if (m->task == FTC_TASK_CAUSAL_LM) {
        /* mean over all counted targets, computed chunk by chunk: a chunk's gradient is scaled by its
         * share of the counted targets (ftc_cross_entropy_backward divides by the chunk's own count) */
        int total = 0;
        for (int n = 0; n < N; n++) total += m->targets[n] >= 0;
        for (int r0 = 0; r0 < N && total > 0; r0 += m->lm_rows) {
            int rows = N - r0 < m->lm_rows ? N - r0 : m->lm_rows;
            lm_head_backward_rows(m, m->logits + (size_t)r0 * m->V, r0, rows, total, weight, need_hidden ? g : NULL);
        }
    } else {
        int nl = m->num_labels;
        ftc_cross_entropy_backward(m->dlogits, m->logits, m->cls_targets, B, nl, weight);
        float eps = m->training ? m->label_smoothing : 0.0f;
        if (eps > 0) { /* (p - onehot) g becomes (p - (1 - eps) onehot - eps / K) g */
            int counted = 0;
            for (int i = 0; i < B; i++) counted += m->cls_targets[i] >= 0;
            float g = counted ? weight / (float)counted * eps : 0.0f;
            for (int i = 0; i < B; i++) {
                if (m->cls_targets[i] < 0) continue;
                float *d = m->dlogits + (size_t)i * nl;
                for (int k = 0; k < nl; k++) d[k] -= g / (float)nl;
                d[m->cls_targets[i]] += g;
            }
        }
        if (m->rdrop_pairs > 0)
            ftc_rdrop_kl_backward(m->dlogits, m->logits, m->cls_targets, m->rdrop_pairs, nl, weight * m->rdrop / 4.0f);
        bool use_pooler = uses_pooler(m);
        const float *z = head_input(m);
        const float *zin = dropped(m, m->cls_dropout) ? m->cls_in : z;
        bool need_z = need_hidden || (use_pooler && (m->params[m->pooler_w].trainable ||
                                                           m->params[m->pooler_b].trainable));
        memset(m->g_cls_in, 0, (size_t)B * C * sizeof(float));
        ftc_linear_backward(need_z ? m->g_cls_in : NULL, G(m, m->cls_w), G(m, m->cls_b), m->dlogits, zin, P(m, m->cls_w), B,
                        C, nl);
        if (need_z) {
            const float *dz = maybe_dropout_back(m, m->g_pooled, m->g_cls_in, m->cls_mask, (size_t)B * C,
                                                 m->cls_dropout);
            const float *dpooled = dz;
            if (use_pooler) {
                memset(m->g_pool_dense, 0, (size_t)B * C * sizeof(float));
                ftc_tanh_backward(m->g_pool_dense, dz, m->pool_tanh, B * C);
                float *dp = dz == m->g_pooled ? m->g_cls_in : m->g_pooled; /* a buffer dz does not occupy */
                memset(dp, 0, (size_t)B * C * sizeof(float));
                ftc_model_linear_backward(m, m->pooler_w, m->pooler_b, need_hidden ? dp : NULL, m->g_pool_dense,
                                      m->pooled, B, C, C);
                dpooled = dp;
            }
            if (need_hidden) {
                if (m->pooling == FTC_POOL_CLS)
                    ftc_pool_cls_backward(g, dpooled, B, T, C);
                else if (m->pooling == FTC_POOL_MEAN)
                    ftc_pool_mean_backward(g, dpooled, m->mask, B, T, C);
                else
                    ftc_pool_last_backward(g, dpooled, m->mask, B, T, C);
            }
        }
    }
    if (!need_hidden) return FTC_OK;
    if (m->lnf_w >= 0) {
        const float *x = m->grad_ckpt ? m->ck_out[m->L - 1] : block_output(m, m->L - 1);
        memset(m->g_b, 0, NC * sizeof(float));
        norm_backward(m, lowest < m->L ? m->g_b : NULL, g, x, m->lnf_mean, m->lnf_rstd, m->lnf_w, m->lnf_b, N);
        memcpy(g, m->g_b, NC * sizeof(float));
    }
    for (int i = m->L - 1; i >= lowest; i--) {
        const float *x = i == 0 ? NULL : m->grad_ckpt ? m->ck_out[i - 1] : block_output(m, i - 1);
        if (i == 0) {
            x = m->emb_n_w >= 0 ? m->emb_n : m->emb_sum;
            if (dropped(m, m->cfg.hidden_dropout)) x = m->emb_out;
            if (m->grad_ckpt && m->L > 1 && x == m->emb_sum && x == m->ck_out[m->L - 1]) { /* the plan's emb_in_ck */
                ftc_model_embed_forward(m, m->emb_sum, m->ids, m->learned_pos ? m->pos : NULL,
                                        m->wtt >= 0 ? m->types : NULL, N);
                m->forward_done = false; /* the last block's output is gone: a backward needs a new forward */
            }
        }
        if (m->grad_ckpt) { /* recompute the block's activations, with the same dropout masks */
            ftc_rng after = m->rng;
            m->rng = m->ck_rng[i];
            layer_forward(m, &m->layers[i], x, B, T);
            m->rng = after;
        }
        layer_backward(m, &m->layers[i], x, g, i > lowest || emb, B, T);
        ftc_status s;
        if (m->block_done && (s = m->block_done(m->block_done_ctx, i, err)) != FTC_OK) return s;
    }
    if (!emb) return FTC_OK;
    const float *d = maybe_dropout_back(m, m->g_a, g, m->emb_mask, NC, m->cfg.hidden_dropout);
    if (m->emb_n_w >= 0) {
        float *dsum = d == m->g_a ? m->g_b : m->g_a;
        memset(dsum, 0, NC * sizeof(float));
        ftc_layernorm_backward(dsum, G(m, m->emb_n_w), G(m, m->emb_n_b), d, m->emb_sum, P(m, m->emb_n_w), m->emb_mean,
                           m->emb_rstd, N, C);
        d = dsum;
    }
    ftc_embedding_backward(G(m, m->wte), G(m, m->wpe), G(m, m->wtt), d, m->ids, m->learned_pos ? m->pos : NULL,
                       m->wtt >= 0 ? m->types : NULL, N, C);
    return FTC_OK;
}
