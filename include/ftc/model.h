/* A transformer of any supported family, assembled from config.json + safetensors by HF names.
 * One block implementation, parameterised by ftc_model_config (src/model/transformer.c).
 * Memory: parameters in one buffer (adapters or a head added later: a segment of their own); gradients only for
 * trainable parameters; activations planned once by ftc_model_reserve for the largest batch. No allocation inside
 * forward/backward. */
#ifndef FTC_MODEL_H
#define FTC_MODEL_H
#include <stdbool.h>
#include <stdint.h>
#include "ftc/base.h"
#include "ftc/hf_config.h"
#include "ftc/status.h"

typedef enum {
    FTC_TASK_CAUSAL_LM, /* logits [B,T,V] through the LM head (tied or lm_head.weight) */
    FTC_TASK_CLASSIFY,  /* pooled hidden state -> linear head -> logits [B,num_labels] */
    FTC_TASK_ENCODE,    /* last hidden state only (sentence embeddings, retrieval) */
} ftc_task;
/* "causal-lm", "classify", "encode" (as config.resolved.json and --task write them). */
const char *ftc_task_name(ftc_task t);
typedef enum { FTC_POOL_CLS, FTC_POOL_MEAN, FTC_POOL_LAST } ftc_pooling;

/* What a parameter is, set where the model declares it (src/model/params.c, lora.c): the trainer's freeze policy
 * reads these, never the names. */
typedef enum {
    FTC_PARAM_OTHER = 0,
    FTC_PARAM_EMBEDDING,  /* token, position and token-type embeddings, BERT's embedding LayerNorm */
    FTC_PARAM_BLOCK,      /* inside transformer block ftc_param.block (its norms, attention and MLP linears) */
    FTC_PARAM_FINAL_NORM, /* the norm after the last block (GPT-2 ln_f, Llama norm) */
    FTC_PARAM_LM_HEAD,    /* an untied LM head (a tied one is the token embedding) */
    FTC_PARAM_POOLER,     /* BERT's pooler dense layer */
    FTC_PARAM_CLASSIFIER, /* the classification head (BERT "classifier", decoders "score") */
} ftc_param_role;

typedef struct {
    char name[160];    /* HF name as in the loaded file, e.g. "encoder.layer.0.attention.self.query.weight" */
    ftc_param_role role; /* a LoRA matrix: the role of the linear it adapts */
    int block;         /* FTC_PARAM_BLOCK: the block's index (0 = nearest the embeddings); otherwise -1 */
    int ndim;
    int64_t shape[4];  /* HF shape (nn.Linear [out,in]; GPT-2 Conv1D [in,out] as in the file) */
    int64_t numel;
    float *data;       /* inside the model's parameter buffer */
    float *grad;       /* NULL while frozen */
    bool trainable;
    bool decay;        /* AdamW weight decay applies: weight matrices yes; biases, norms, embeddings no */
    bool transposed;   /* our layout is the transpose of the file's (GPT-2 Conv1D); save transposes back */
    bool is_lora;      /* a LoRA A or B matrix (PEFT name in name[]) */
    uint16_t *data_bf16; /* bf16 bits of a matmul weight: the copy bf16 matmuls read (ftc_model_set_precision),
                            or the only copy of a frozen weight stored in bf16 (then data == NULL) */
    void *data_q;        /* the only copy of a frozen matmul weight stored block-quantized (ftc_model_load_quant_base):
                            rows of our [out, in] layout in type qtype (include/ftc/quant.h); data, data_bf16 NULL */
    int qtype;           /* ftc_ggml_type of data_q */
} ftc_param;

typedef struct ftc_model ftc_model;

/* Loads DIR (config.json + model.safetensors or shards). Accepts base-model names with or without the
 * family prefix ("bert.", "transformer.", "model.") and loads lm_head / classifier / pooler when present.
 * Missing or misshapen tensors: error naming tensor, file and expected shape. */
ftc_status ftc_model_load(const char *dir, ftc_task task, ftc_model **out, ftc_err *err);
/* Random initialisation as transformers does for the family (normal(0, initializer_range), zero biases, ones norms). */
ftc_status ftc_model_create(const ftc_model_config *cfg, ftc_task task, uint64_t seed, ftc_model **out, ftc_err *err);
void ftc_model_free(ftc_model *m);
const ftc_model_config *ftc_model_config_of(const ftc_model *m);
ftc_task ftc_model_task(const ftc_model *m);

/* Classification head: new Linear(C -> num_labels) (normal(0, 0.02) weight, zero bias) on the pooled state,
 * unless the loaded checkpoint already has one of that size. BERT with a pooler uses it (tanh(dense(CLS))). */
ftc_status ftc_model_set_classifier(ftc_model *m, int num_labels, ftc_pooling pooling, uint64_t seed, ftc_err *err);

/* LoRA on the linears whose HF module names match targets ("q_proj,v_proj", "c_attn", "query,value",
 * "all-linear"): y = W x + (alpha/r) B(A x) with A [r,in] Kaiming-uniform (as PEFT), B [out,r] zero.
 * Base weights become frozen; the A/B params appear in the param list with PEFT names. */
ftc_status ftc_model_add_lora(ftc_model *m, const char *targets, int r, float alpha, float dropout, uint64_t seed,
                              ftc_err *err);
/* W += (alpha/r) B A for every adapter, and the adapters are removed. */
ftc_status ftc_model_merge_lora(ftc_model *m, ftc_err *err);

int ftc_model_n_params(const ftc_model *m);
ftc_param *ftc_model_param(ftc_model *m, int i);
ftc_param *ftc_model_find_param(ftc_model *m, const char *name);
void ftc_model_set_trainable(ftc_model *m, int i, bool trainable); /* before ftc_model_reserve */
int64_t ftc_model_count_params(const ftc_model *m, bool trainable_only);

/* Gradient checkpointing: keep only each block's output and recompute the block in backward (one block's
 * activations instead of n_layers'; about one more forward of compute). Same gradients bit for bit. */
ftc_status ftc_model_set_grad_checkpoint(ftc_model *m, bool on, ftc_err *err);
/* Label smoothing of the classification loss while training (transformers' label_smoothing_factor): the target
 * of each row is 1 - eps on its label plus eps / K on each of the K labels, i.e. loss = (1 - eps) CE + eps x the
 * mean over labels of -log p. Evaluation (training false) keeps the plain cross-entropy. eps in [0, 1). */
ftc_status ftc_model_set_label_smoothing(ftc_model *m, float eps, ftc_err *err);
/* R-Drop (Liang et al. 2021) for classification while training: ftc_model_forward with labels and training true
 * runs each of the batch's B examples twice (rows i and B + i, each with its own dropout masks), so the model must
 * be reserved for 2B rows; the loss is the paper's per-example CE(p1) + CE(p2) + alpha/2 (KL(p1||p2) +
 * KL(p2||p1)), halved so that it stays on the cross-entropy's scale: the mean cross-entropy over the 2B rows
 * (label smoothing applies to it) + alpha/4 x the mean symmetric KL (ftc_rdrop_kl_forward). ftc_model_logits
 * then holds 2B rows. Evaluation (training false) and ftc_model_head_forward run each example once. alpha >= 0
 * (0: off). */
ftc_status ftc_model_set_rdrop(ftc_model *m, float alpha, ftc_err *err);
/* Plans activation and gradient memory for batches up to max_B x max_T. Call again to grow. Memory is linear
 * in max_B x max_T (attention keeps [B,H,T] softmax statistics, never [T,T] probabilities). With nothing
 * trainable the plan is forward-only: one block's activations (the blocks run one after another), no
 * gradient scratch; making a parameter trainable re-plans for training. */
ftc_status ftc_model_reserve(ftc_model *m, int max_B, int max_T, ftc_err *err);

typedef struct {
    int B, T;
    const int32_t *ids;      /* [B,T] */
    const int32_t *type_ids; /* [B,T] BERT token types, or NULL (all 0) */
    const uint8_t *mask;     /* [B,T] 1 = real token, 0 = padding; NULL = all real */
    const int32_t *labels;   /* causal-lm: [B,T] HF convention (labels = ids, -100 = not trained; the model
                                shifts: position t predicts labels[t+1]); classify: [B] class ids; or NULL */
} ftc_batch;

/* Forward; with labels, *loss is the mean loss over counted targets. training enables dropout. */
ftc_status ftc_model_forward(ftc_model *m, const ftc_batch *batch, bool training, float *loss, ftc_err *err);
const float *ftc_model_logits(const ftc_model *m); /* LM [B,T,V]; classify [B,num_labels] (2B: R-Drop) */
/* A causal LM whose logits are wanted only for the loss (ftc eval, ftc train): the forward computes the loss
 * through 256 rows of logits at a time instead of holding [B,T,V] (at T = 8192 and a 49152-token vocabulary
 * that is 1.6 GB; for LoRA on gpt2-small at batch 4 x 128, 103 MB of logits and more of their gradient), and
 * ftc_model_logits returns NULL (ftc_model_lm_logits_rows gives them a chunk at a time). The loss equals the
 * full-logits forward's bit for bit. With trainable parameters, a forward with training = true and a frozen
 * LM head also takes the head's gradient into the hidden state as it goes, for the weight set by
 * ftc_model_set_loss_weight (default 1); a backward with that weight then starts below the head, any other
 * weight (or a trainable head) computes the logits again, chunk by chunk. Gradients equal the full-logits
 * path's bit for bit (that path runs its head in the same pieces of rows).
 * Re-plans the reserved memory when needed. */
ftc_status ftc_model_set_loss_only(ftc_model *m, bool on, ftc_err *err);
void ftc_model_set_loss_weight(ftc_model *m, float weight); /* the next backward's weight, see above */
/* With loss_only: the rows of logits one piece holds (0 for a model that is not a causal LM), and the
 * logits of positions [r0, r0 + rows) of the last forward's B x T (rows <= that), computed from its hidden
 * state into the model's piece (valid until the next call or forward); NULL when out of range. */
int ftc_model_lm_chunk_rows(const ftc_model *m);
const float *ftc_model_lm_logits_rows(ftc_model *m, int r0, int rows);
/* Transfer learning on a frozen backbone (the trainer's feature cache, docs/train.md). head_features: the
 * classification head's input for a batch, i.e. the pooled last hidden state (through the BERT pooler when
 * the pooling uses it), computed in eval mode (no dropout), [B, C] into out. head_forward: the head alone on
 * such features [B, C] (labels [B] or NULL), exactly as the head part of ftc_model_forward (head dropout
 * when training); ftc_model_logits and ftc_model_backward then work as after ftc_model_forward. It refuses
 * a model where anything but the head trains. */
ftc_status ftc_model_head_features(ftc_model *m, const ftc_batch *batch, float *out, ftc_err *err);
ftc_status ftc_model_head_forward(ftc_model *m, const float *features, int B, const int32_t *labels, bool training,
                                  float *loss, ftc_err *err);
const float *ftc_model_hidden(const ftc_model *m); /* last hidden state [B,T,C] (after final norm) */
/* Backward of the last forward (which had labels): accumulates into the trainable params' grads. */
ftc_status ftc_model_backward(ftc_model *m, ftc_err *err);
/* The same for the loss times weight (the gradient of weight x mean loss): gradient accumulation passes each
 * micro-batch's share of the window's targets, so no pass over the gradients rescales them. Weight 1 is
 * ftc_model_backward, bit for bit. */
ftc_status ftc_model_backward_weighted(ftc_model *m, float weight, ftc_err *err);
/* Called by the backward after block `block`'s backward (blocks L-1 down to the lowest that trains, in that order):
 * from then on that backward adds nothing to the gradients of blocks >= block nor of the final norm and the heads
 * (an untied LM head, pooler, classifier); embeddings (a tied LM head included) last until the backward returns.
 * Data parallelism starts summing those gradients over the ranks while the earlier blocks' backward runs (the
 * trainer sets it for the last micro-batch of a window only). A status other than FTC_OK ends the backward with it.
 * fn NULL: none (the default). */
typedef ftc_status (*ftc_model_block_done_fn)(void *ctx, int block, ftc_err *err);
void ftc_model_set_block_done(ftc_model *m, ftc_model_block_done_fn fn, void *ctx);
void ftc_model_zero_grad(ftc_model *m);
/* Dropout randomness of the model (plain data: checkpoints save and restore *ftc_model_rng(m)). */
ftc_rng *ftc_model_rng(ftc_model *m);

/* ---- BF16 (docs/train.md "Precision") ----
 * FTC_PREC_BF16: the matmuls of linear layers and heads (block linears, LM head, pooler) take bf16 operands
 * (weights and activations rounded to nearest even) and accumulate in f32 (ftc_matmul_bf16), in forward,
 * input gradient and weight gradient. f32 weights keep a bf16 copy, refreshed before the next forward after
 * ftc_model_weights_changed. Gradients, norms, attention, softmax, loss and LoRA adapters stay f32. */
typedef enum { FTC_PREC_FP32 = 0, FTC_PREC_BF16 = 1 } ftc_precision;
ftc_status ftc_model_set_precision(ftc_model *m, ftc_precision p, ftc_err *err);
ftc_precision ftc_model_precision(const ftc_model *m);
const char *ftc_precision_name(ftc_precision p); /* "fp32" | "bf16" */
/* The f32 values of trainable weights changed (optimizer step, checkpoint restore): their bf16 copies are
 * refreshed once, before the next forward (so gradient accumulation converts once per optimizer step). */
void ftc_model_weights_changed(ftc_model *m);
/* Frozen base weights in bf16: every frozen matmul weight (block linears, untied LM head, pooler) keeps only
 * its bf16 bits; the f32 value is freed. Such weights are used through bf16 matmuls whatever the precision
 * (input gradients still flow through them); save writes them as BF16; merging LoRA into one rounds the sum to
 * bf16. Making one trainable again (ftc_model_set_trainable) restores an f32 value from the bf16 bits. */
ftc_status ftc_model_store_frozen_bf16(ftc_model *m, ftc_err *err);
/* Inference in bf16 (ftc generate/chat/serve --precision bf16): freezes every parameter, keeps only the bf16
 * bits of the matmul weights that are not also embeddings (ftc_model_store_frozen_bf16), gives the others (a
 * tied LM head) a bf16 copy and sets FTC_PREC_BF16, so every matmul reads bf16 weights: half the bytes of f32
 * per decoded token. Products take bf16 operands with f32 accumulation. */
ftc_status ftc_model_use_bf16_weights(ftc_model *m, ftc_err *err);
/* The same with the matmul weights block-quantized (ftc_model_store_frozen_quant; qtype as there): ftc generate
 * --base-dtype. Decoding reads the packed blocks, decoded a panel of whole rows at a time. */
ftc_status ftc_model_use_quant_weights(ftc_model *m, int qtype, ftc_err *err);
/* ftc_model_load that reads the matmul weights (as above) straight into bf16-only storage, never holding
 * them in f32, for PEFT on a frozen base. Embeddings, norms, biases and a classification head stay f32. */
ftc_status ftc_model_load_bf16_base(const char *dir, ftc_task task, ftc_model **out, ftc_err *err);
/* The same with the frozen matmul weights block-quantized (qtype: FTC_GGML_Q8_0, Q4_0, Q4_1 or Q4_K), each
 * quantized from its f32 value as it is read (one tensor in f32 at a time). A causal LM's LM head is stored in Q8_0
 * whatever qtype (ftc_quant_type_for_output) and its token table packed too: tied, that same Q8_0 table with no f32
 * copy; untied, in qtype; lookups dequantize the rows they read. They are used through the fused
 * quantized matmuls (forward and input gradient; no weight gradient) whatever the precision. A weight whose
 * input size fits no block stays f32; Q4_K falls back to Q4_1 where 256 does not divide it (ftc_quant_type_for_row).
 * Making one trainable restores an f32 value (dequantized); merging LoRA into one dequantizes it to f32 first
 * (the merged model is f32 there); save writes such weights dequantized as F32. */
ftc_status ftc_model_load_quant_base(const char *dir, ftc_task task, int qtype, ftc_model **out, ftc_err *err);
/* --base-dtype auto on a model converted from a GGUF (dir holds FTC_GGUF_TYPES_FILE, include/ftc/gguf.h): each
 * frozen weight ftc_model_load_quant_base would pack whose GGUF type is Q8_0, Q4_0, Q4_1 or Q4_K (and whose rows
 * that block fits) is packed in that type, from the dequantized values: the file's blocks again. The others as
 * ftc_model_load_bf16_base keeps them (bf16_rest) or ftc_model_load does (f32). */
ftc_status ftc_model_load_gguf_base(const char *dir, ftc_task task, bool bf16_rest, ftc_model **out, ftc_err *err);
/* Whether dir was converted from a GGUF with its tensor types recorded (ftc_model_load_gguf_base applies). */
bool ftc_model_has_gguf_types(const char *dir);
/* How the frozen-base candidates (the matmul weights and a causal LM's token table) are stored, for the log:
 * "q4_1 x 210, fp32 x 1" (in the order the weights come). */
void ftc_model_base_storage(const ftc_model *m, char *out, size_t n);
/* ftc_model_store_frozen_bf16's counterpart for an already loaded model: quantizes every frozen matmul weight
 * and a causal LM's frozen token table (from f32, or from its bf16 bits); the same types and fallbacks. */
ftc_status ftc_model_store_frozen_quant(ftc_model *m, int qtype, ftc_err *err);
/* Bytes of parameter storage (f32 values + bf16 copies), for logs and tests. */
/* Bytes of the activation/scratch arena ftc_model_reserve planned (forward and backward allocate nothing else). */
int64_t ftc_model_activation_bytes(const ftc_model *m);
/* The bytes ftc_model_reserve(m, B, T) would plan, without allocating them (the plan of the reserve already
 * made stays; 0 before any reserve). Not B times the figure for one row: the LM head's pieces do not grow with B. */
int64_t ftc_model_activation_bytes_for(ftc_model *m, int B, int T);
int64_t ftc_model_param_bytes(const ftc_model *m);

/* Writes the model in HF layout (config.json + model.safetensors), atomically. */
ftc_status ftc_model_save(const ftc_model *m, const char *dir, ftc_err *err);
#endif
