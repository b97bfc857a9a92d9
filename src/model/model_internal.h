/* Inside the model: the parameter table (params.c), the block (transformer.c), LoRA (lora.c), save (save.c).
 * One transformer block, parameterised by flags derived from the family config:
 *   pre-norm (GPT-2, Llama):  a = n1(x); s1 = x + drop(o(attn(a)));  b = n2(s1); out = s1 + drop(mlp(b))
 *   post-norm (BERT):         s1 = x + drop(o(attn(x))); a = n1(s1); s2 = a + drop(mlp(a)); out = n2(s2)
 * Linears are always nn.Linear layout W[out,in]; GPT-2 Conv1D weights are transposed at load. */
#ifndef FTC_MODEL_INTERNAL_H
#define FTC_MODEL_INTERNAL_H
#include "ftc/base.h"
#include "ftc/model.h"
#include "ftc/safetensors.h"

/* A linear module y = x W^T + b (+ (alpha/r) B A x with LoRA). Indices into the param table, -1 = none. */
typedef struct {
    int w, b;
    int in, out;
    int lora_a, lora_b; /* LoRA adapters (lora.c) */
    float lora_scale;   /* alpha / r */
    float lora_dropout;
    float *lora_ax;     /* activation [N, r] saved for backward (in the activation block) */
    float *lora_xd;     /* dropped-out input [N, in] when lora_dropout > 0 while training */
    float *lora_mask;   /* its dropout mask */
    char module[128];   /* HF module name, e.g. "model.layers.0.self_attn.q_proj" */
} linear_mod;

typedef struct {
    int n1_w, n1_b, n2_w, n2_b; /* norms; *_b = -1 for RMSNorm */
    linear_mod qkv;             /* GPT-2 fused c_attn (w = -1 otherwise) */
    linear_mod q, k, v, o;
    linear_mod up, gate, down; /* up = c_fc | intermediate.dense | up_proj; gate only for SwiGLU */
    /* saved activations of this layer (planned by ftc_model_reserve) */
    float *n1, *n1_mean, *n1_rstd, *s1, *n2, *n2_mean, *n2_rstd, *s2;
    float *xq, *xk, *xv, *lse, *attn_out, *o_out, *o_mask, *r1; /* lse [B,H,T]: tiled attention's row stats */
    float *h_up, *h_gate, *h_act, *down_out, *down_mask, *r2;
    uint64_t att_drop_key; /* the attention dropout mask's key drawn by the last training forward */
} layer_params;

/* A block's linear modules in one order (fused qkv, q, k, v, o, up, gate, down; absent ones have w < 0): the loops
 * over "every linear of a block" index them with j < FTC_LAYER_MODS. */
enum { FTC_LAYER_MODS = 8 };
static inline linear_mod *layer_mod(layer_params *l, int j) {
    linear_mod *mods[FTC_LAYER_MODS] = {&l->qkv, &l->q, &l->k, &l->v, &l->o, &l->up, &l->gate, &l->down};
    return mods[j];
}
static inline const linear_mod *layer_mod_const(const layer_params *l, int j) {
    return layer_mod((layer_params *)l, j);
}
/* the activation fields above, for code that handles them all (gradient checkpointing shares one set) */
#define LAYER_ACT_FIELDS(X)                                                                                       \
    X(n1) X(n1_mean) X(n1_rstd) X(s1) X(n2) X(n2_mean) X(n2_rstd) X(s2) X(xq) X(xk) X(xv) X(lse)                \
    X(attn_out) X(o_out) X(o_mask) X(r1) X(h_up) X(h_gate) X(h_act) X(down_out) X(down_mask) X(r2)

struct ftc_model {
    ftc_model_config cfg;
    ftc_task task;
    /* block flags derived from the family */
    bool pre_norm, rmsnorm, rope, swiglu, causal, learned_pos, fused_qkv;
    int C, H, Hkv, D, F, V, L, qdim, kvdim;
    char *config_json; /* config.json as loaded (save keeps every field we do not model) */
    char prefix[32]; /* "transformer." / "model." / "bert." / "" as in the loaded file */

    /* parameters: f32 values in segments (one after a full layout; ftc_model_alloc_params appends one for
     * parameters added later); offsets[i] >= 0: params[i].data is in a segment, -1: no f32 storage, -2: a private
     * value (ftc_model_inflate_f32) to take over */
    int n_params, cap_params;
    ftc_param *params;
    int64_t *offsets;
    float **segs;
    int64_t *seg_numel; /* values in each segment */
    int n_segs;
    int64_t buf_numel; /* values (64-byte aligned sizes) the parameters with offsets >= 0 hold */
    float *gradbuf;
    int64_t grad_numel;
    bool grads_planned;
    ftc_model_block_done_fn block_done; /* ftc_model_set_block_done: the backward's per-block callback */
    void *block_done_ctx;
    bool table_oom; /* an allocation in ftc_model_add_param failed */
    bool storage_oom; /* restoring an f32 value for a bf16-stored weight failed (reported by the next reserve) */
    /* BF16 (precision.c): matmul precision, and which bf16 copies of f32 weights are out of date */
    ftc_precision precision;
    bool bf16_stale_all, bf16_stale_trainable;

    int wte, wpe, wtt, emb_n_w, emb_n_b, lnf_w, lnf_b, lm_head; /* lm_head == wte when tied */
    int pooler_w, pooler_b, cls_w, cls_b;
    layer_params *layers;
    int num_labels;
    ftc_pooling pooling;
    float cls_dropout;
    float label_smoothing; /* classify training loss: the target is (1 - eps) on the label + eps / K on each */
    float rdrop;           /* classify training loss: R-Drop's alpha (0: off); each example runs twice */
    int rdrop_pairs;       /* the forward's pairs: rows i and i + rdrop_pairs are one example (0: no R-Drop) */
    float *inv_freq; /* [D/2] RoPE */
    ftc_rng rng;     /* dropout randomness; plain data so checkpoints can save it */
    /* gradient checkpointing: blocks share one activation set; each block's output and dropout RNG state
     * are kept, and backward recomputes the block before differentiating it */
    bool grad_ckpt;
    float **ck_out;  /* [L] block outputs [N,C] */
    /* forward-only plan (nothing trains): one activation set for all blocks, each block's input in fwd_x;
     * loss_only (ftc_model_set_loss_only): LM logits in lm_rows-row pieces, only the loss is kept; when
     * training, the forward also takes the LM head's gradient into g_res chunk by chunk (head_done, for the
     * backward weight head_w; the weight comes from ftc_model_set_loss_weight) */
    bool fwd_only, loss_only, head_done;
    int lm_rows;
    float loss_weight, head_w;
    double *nll; /* [N] per-position losses (loss_only) */
    float *fwd_x;
    ftc_rng *ck_rng; /* [L] */

    /* activations, planned by ftc_model_reserve for max_B x max_T */
    int max_B, max_T;
    float *act;
    size_t act_floats;
    int32_t *ids, *pos, *types, *targets, *cls_targets;
    uint8_t *mask;
    float *emb_sum, *emb_n, *emb_mean, *emb_rstd, *emb_mask, *emb_out; /* embeddings (+ BERT LN) (+ dropout) */
    float *lnf, *lnf_mean, *lnf_rstd;                                  /* final norm (pre-norm families) */
    float *hidden;                                                     /* alias: last hidden state */
    float *logits, *dlogits;
    float *pooled, *pool_dense, *pool_tanh, *cls_in, *cls_mask;        /* classification head */
    float *qkv_tmp, *lora_tmp;                                         /* transient */
    /* gradient scratch shared by all layers */
    float *g_res, *g_a, *g_b, *g_q, *g_k, *g_v, *g_attn, *g_qkv, *g_up, *g_gate, *g_act, *g_att_scratch;
    float *g_pooled, *g_pool_dense, *g_cls_in, *g_lora;

    /* the last forward */
    int B, T;
    bool training, have_labels, forward_done;
    float loss;
};

/* params.c */
int ftc_model_add_param(ftc_model *m, const char *name, int ndim, const int64_t *shape, bool transposed, bool decay);
ftc_status ftc_model_alloc_params(ftc_model *m, ftc_err *err); /* (re)allocates the buffer, keeps old values */
ftc_status ftc_model_plan_grads(ftc_model *m, ftc_err *err);
void ftc_model_init_linear(linear_mod *l, int w, int b, int in, int out, const char *module);
/* Short on purpose (model math reads like the paper); static inline so they are not library exports. */
static inline float *P(ftc_model *m, int i) { return i < 0 ? NULL : m->params[i].data; } /* NULL for i < 0 */
static inline float *G(ftc_model *m, int i) { return i < 0 ? NULL : m->params[i].grad; } /* NULL: frozen/absent */

/* precision.c: bf16 copies and bf16-only storage of matmul weights */
/* Values [a, b) of a weight [O, I] (row-major, our layout) for ftc_model_pack: written into scratch (room for b - a
 * values), *vals pointing at them, or *vals pointing at the source's own f32 values; an error stops the packing. */
typedef ftc_status (*ftc_values_fn)(void *ctx, int64_t a, int64_t b, float *scratch, const float **vals, ftc_err *err);
enum { FTC_PACK_F32 = -2, FTC_PACK_BF16 = -1 }; /* ftc_model_pack's kinds besides the quant types */
/* Packs a weight [O, I] into dst, in a quant type (ftc_quant_tensor_bytes of it, rows quantized on the pool), bf16
 * (O * I uint16) or f32 (O * I floats, fill writing in place), from values fill delivers in pieces of at most 1M
 * (whole rows; NF4DQ: whole groups, read twice, its offset needing every block's absmax first): the bytes of
 * converting the whole f32 weight at once (ftc_quantize_tensor) without an f32 copy of it (precision.c). */
ftc_status ftc_model_pack(int kind, void *dst, int64_t O, int64_t I, ftc_values_fn fill, void *ctx, ftc_err *err);
bool ftc_model_is_matmul_weight(const ftc_model *m, int i); /* block linear W, LM head (tied: wte), pooler */
bool ftc_model_bf16_storable(const ftc_model *m, int i);    /* matmul weight that is not also an embedding */
bool ftc_model_quant_storable(const ftc_model *m, int i);   /* the same, or a causal LM's token table (tied or not) */
/* The type weight i of a base quantized to qtype is stored in: the LM head (tied: the token table)
 * ftc_quant_type_for_output's, the others (an untied token table too) ftc_quant_type_for_row's; -1: stays f32 */
int ftc_model_quant_type_of(const ftc_model *m, int i, int qtype);
/* The token (+ position, + type) embeddings of N tokens into out [N, C]: from the f32 table, or the looked-up
 * rows of a quantized one dequantized (a tied LM head of a quantized base); pos/types NULL: none */
void ftc_model_embed_forward(ftc_model *m, float *out, const int32_t *ids, const int32_t *pos, const int32_t *types,
                             int N);
void ftc_model_refresh_bf16(ftc_model *m);                 /* brings stale bf16 copies up to date */
ftc_status ftc_model_inflate_f32(ftc_model *m, int i, ftc_err *err); /* bf16-only param -> f32 value again */
/* y = x W^T + b and its backward for param w (bias b, -1 = none), in bf16 when the precision or the weight's
 * storage says so, else f32 (ops_linear.c either way) */
void ftc_model_linear_forward(ftc_model *m, int w, int b, float *y, const float *x, int N, int I, int O);
/* The same for generation (never training): a Q8_0/Q4_0/Q4_1 weight at f32 precision takes 8-bit activations
 * (ftc_qmatmul_forward_q8act: faster, values off by the activations' rounding; gemm: the rows are a prompt chunk,
 * ftc_qgemm_q8act_forward's int8 GEMM); everything else as above */
void ftc_model_linear_forward_gen(ftc_model *m, int w, int b, float *y, const float *x, int N, int I, int O, bool gemm);
/* n (<= 4) such products of one x [N, I] (not a prompt chunk's GEMM): when all n weights are Q8_0/Q4_0/Q4_1 of
 * one type taking 8-bit activations, x is quantized once and the products run as one parallel pass (the bits of
 * n ftc_model_linear_forward_gen calls) and true; else false and nothing done. ep (may be NULL): a column epilogue
 * run in that pass (ftc_linear_forward_q8act_multi), only when true is returned */
bool ftc_model_linear_forward_gen_multi(ftc_model *m, const int *w, const int *b, float *const *y, const int *O, int n,
                                       const float *x, int N, int I, void (*ep)(void *ctx, int o0, int o1),
                                       void *ep_ctx);
void ftc_model_linear_backward(ftc_model *m, int w, int b, float *dx, const float *dy, const float *x, int N, int I,
                           int O);

/* transformer.c */
void ftc_rope_inv_freq_scaled(float *inv_freq, const ftc_model_config *cfg, int D);

/* linear modules with LoRA (lora.c) */
void ftc_linear_mod_forward(ftc_model *m, linear_mod *l, float *y, const float *x, int N, bool training);
/* The same without adding l->b (y = x W^T + LoRA): for a caller that fuses the bias with the next op. */
void ftc_linear_mod_forward_nobias(ftc_model *m, linear_mod *l, float *y, const float *x, int N, bool training);
/* dx may be NULL (no input gradient needed) */
void ftc_linear_mod_backward(ftc_model *m, linear_mod *l, float *dx, const float *dy, const float *x, int N);
int ftc_model_max_lora_rank(const ftc_model *m);
#endif
