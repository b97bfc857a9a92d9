/* CPU ops as forward/backward pairs (src/kernels/cpu/ops_*.c). Shapes: B batch, T time, C channels,
 * V vocab, H heads, Hkv kv heads, D head dim (C = H*D), F ffn width, N = B*T rows. All row-major f32.
 * Backward functions ACCUMULATE (+=) into every gradient they write, so callers zero once per step;
 * a NULL gradient pointer means "not needed" (frozen parameter / input that needs no grad) and
 * its work is skipped. Nothing here allocates: scratch comes from the caller. */
#ifndef FTC_OPS_H
#define FTC_OPS_H
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "ftc/base.h"

/* out[n,:] = wte[ids[n],:]  (+ wpe[pos[n],:] if wpe) (+ wtt[types[n],:] if wtt) */
void ftc_embedding_forward(float *out, const int32_t *ids, const int32_t *pos, const int32_t *types, const float *wte,
                       const float *wpe, const float *wtt, int N, int C);
/* The same with the token table block-quantized (rows of C values in type qtype, include/ftc/quant.h): only the
 * looked-up rows are dequantized; equal bit for bit to ftc_embedding_forward on the dequantized table. */
void ftc_embedding_forward_q(float *out, const int32_t *ids, const int32_t *pos, const int32_t *types, const void *wte_q,
                             int qtype, const float *wpe, const float *wtt, int N, int C);
void ftc_embedding_backward(float *dwte, float *dwpe, float *dwtt, const float *dout, const int32_t *ids,
                        const int32_t *pos, const int32_t *types, int N, int C);

/* y = (x - mean) / sqrt(var + eps) * w + b; saves mean and rstd [N] for backward. b may be NULL. */
void ftc_layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                       int C, float eps);
void ftc_layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                        const float *mean, const float *rstd, int N, int C);
/* y = x / sqrt(mean(x^2) + eps) * w; saves rstd [N]. */
void ftc_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int N, int C, float eps);
void ftc_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd, int N,
                      int C);

/* y[N,O] = x[N,I] @ W^T + b, W stored [O,I] (nn.Linear). GPT-2 Conv1D weights [I,O] are transposed
 * once at load, so every linear here has the same layout. b may be NULL. */
void ftc_linear_forward(float *y, const float *x, const float *W, const float *b, int N, int I, int O);
/* dx += dy @ W; dW += dy^T @ x; db += sum_n dy. Any of dx/dW/db may be NULL (skipped). */
void ftc_linear_backward(float *dx, float *dW, float *db, const float *dy, const float *x, const float *W, int N, int I,
                     int O);
/* The same with W as bf16 bits: products in bf16 (x, dy rounded to nearest even as they are read), f32
 * accumulation (ftc_matmul_bf16); dW and db stay f32. */
/* The same with W block-quantized (include/ftc/quant.h: rows of I values in type qtype): forward and input
 * gradient on the packed blocks (ftc_qmatmul_*), f32 activations, products in f32 or (bf16) bf16; no weight
 * gradient (the weight is frozen). */
void ftc_linear_forward_q(float *y, const float *x, const void *W, int qtype, const float *b, int N, int I, int O,
                          bool bf16);
/* Generation's forward on a block-quantized W: activations quantized to 8-bit blocks (ftc_qmatmul_forward_q8act;
 * gemm: a prompt chunk's rows, through the int8 GEMM ftc_qgemm_q8act_forward) */
void ftc_linear_forward_q8act(float *y, const float *x, const void *W, int qtype, const float *b, int N, int I, int O,
                              bool gemm);
/* n of those (gemm false) on one x [N, I], weights of one type (a decoding step's q/k/v, up/gate): y[p] = x W[p]^T
 * + b[p] (b[p] NULL: none; W[p] O[p] rows), x quantized once and every product in one parallel pass; each y[p] has
 * the bits of its own ftc_linear_forward_q8act. ep (may be NULL): a column epilogue; when every O[p] is equal (a
 * decoding step's up/gate), once a parallel chunk's columns [o0, o1) are written in every y[p], ep(ep_ctx, o0, o1)
 * runs on the thread that wrote the last of them (e.g. the SwiGLU of those columns, so that work runs in the
 * products' pass instead of after it on one thread); other shapes call ep(ep_ctx, 0, O[0]) after the products. */
void ftc_linear_forward_q8act_multi(float *const *y, const float *x, const void *const *W, int qtype,
                                    const float *const *b, const int *O, int n, int N, int I,
                                    void (*ep)(void *ctx, int o0, int o1), void *ep_ctx);
void ftc_linear_backward_q(float *dx, float *db, const float *dy, const void *W, int qtype, int N, int I, int O,
                           bool bf16);
void ftc_linear_forward_bf16(float *y, const float *x, const uint16_t *W, const float *b, int N, int I, int O);
void ftc_linear_backward_bf16(float *dx, float *dW, float *db, const float *dy, const float *x, const uint16_t *W, int N,
                          int I, int O);

/* Activations, elementwise over n values. */
void ftc_gelu_tanh_forward(float *y, const float *x, int n); /* GPT-2 gelu_new */
void ftc_gelu_tanh_backward(float *dx, const float *dy, const float *x, int n);
void ftc_gelu_erf_forward(float *y, const float *x, int n); /* BERT gelu */
void ftc_gelu_erf_backward(float *dx, const float *dy, const float *x, int n);
/* Bias + GELU after a bias-less matmul (ops_fused.c): x[n,:] += b (b NULL: none), y = gelu(x) (tanh form when
 * tanh_form, else erf), one row block at a time while it is in cache. x keeps the pre-activation for backward. */
void ftc_bias_gelu_forward(float *y, float *x, const float *b, int N, int O, bool tanh_form);
/* Residual add + norm (ops_fused.c): s = a + b, then y = layernorm(s) / rmsnorm(s) as the functions above,
 * one row block at a time; s is written (the residual stream and the norm's backward input). */
void ftc_add_layernorm_forward(float *s, float *y, float *mean, float *rstd, const float *a, const float *b,
                           const float *w, const float *bias, int N, int C, float eps);
void ftc_add_rmsnorm_forward(float *s, float *y, float *rstd, const float *a, const float *b, const float *w, int N, int C,
                         float eps);
/* SwiGLU: y[N,F] = silu(gate[N,F]) * up[N,F] */
void ftc_swiglu_forward(float *y, const float *gate, const float *up, int n);
/* The same on columns [c0, c1) of N rows of stride ld (y, gate, up [N, ld]), on the calling thread, the exp of
 * several rows' columns in one call: element-wise, so the values ftc_swiglu_forward gives them (a column epilogue of
 * a decoding step's up/gate products) */
void ftc_swiglu_forward_cols(float *y, const float *gate, const float *up, int N, int ld, int c0, int c1);
void ftc_swiglu_backward(float *dgate, float *dup, const float *dy, const float *gate, const float *up, int n);
/* y = a + b (residual) */
void ftc_add_forward(float *y, const float *a, const float *b, int n);

/* RoPE in place on x [N, H, D] (HF rotate_half: pairs (i, i+D/2)); pos[n] gives the position.
 * inv_freq[D/2] = 1 / theta^(2i/D) from ftc_rope_inv_freq (or ftc_rope_inv_freq_llama3).
 * ftc_rope_backward rotates dx back in place (the gradient w.r.t. the pre-rotation x replaces dx). */
void ftc_rope_inv_freq(float *inv_freq, int D, float theta);
/* Llama-3 rope_scaling {"rope_type": "llama3", factor, low_freq_factor, high_freq_factor,
 * original_max_position_embeddings}: ftc_rope_inv_freq, then long wavelengths divided by factor, short ones kept,
 * the band between blended (transformers' _compute_llama3_parameters). */
void ftc_rope_inv_freq_llama3(float *inv_freq, int D, float theta, float factor, float low_freq_factor,
                          float high_freq_factor, int original_max_position_embeddings);
void ftc_rope_forward(float *x, const int32_t *pos, const float *inv_freq, int N, int H, int D);
void ftc_rope_backward(float *dx, const int32_t *pos, const float *inv_freq, int N, int H, int D); /* in place */
/* The same rotation in two steps, for several tensors at the same positions (a decoding step's q and k in every
 * layer): cs[N, D] = each row's cos (first D/2) and sin (last D/2), then ftc_rope_forward_cs rotates x[N,H,D] by
 * them, bit for bit ftc_rope_forward */
void ftc_rope_cos_sin(float *cs, const int32_t *pos, const float *inv_freq, int N, int D);
void ftc_rope_forward_cs(float *x, const float *cs, int N, int H, int D);

/* Scaled dot-product attention. q [B,T,H,D], k,v [B,T,Hkv,D] (GQA: head h uses kv head h/(H/Hkv)).
 * causal: key j visible to query i iff j <= i. key_mask [B,T] (1 = real token, 0 = padding; NULL = all real).
 * A query always sees itself (j == i), so padded query rows stay finite; real rows are unaffected.
 * att [B,H,T,T] saves softmax probabilities for backward. out [B,T,H,D]. */
void ftc_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       const uint8_t *key_mask, int B, int T, int H, int Hkv, int D, bool causal);
/* Accumulates into dq, dk, dv (each may be NULL: not needed). scratch: at least B*H*T*T floats. */
void ftc_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                        const float *k, const float *v, int B, int T, int H, int Hkv, int D, float *scratch);
/* Training options of attention (NULL: none, what the two functions above do). */
typedef struct {
    float dropout_p;            /* > 0: dropout on the probabilities (BERT, GPT-2): forward draws drop_mask for the
                                 * whole att in one ftc_dropout_forward call after the softmax and multiplies
                                 * att_drop = att * drop_mask by v; backward reads both */
    ftc_rng *rng;               /* the dropout randomness */
    float *att_drop, *drop_mask; /* [B,H,T,T] each, when dropout_p > 0 */
    uint64_t drop_key;          /* ftc_attention_flash_*: the dropout mask's key (see there) */
    bool bf16;                  /* the products in bf16 with f32 accumulation (--precision bf16), except the scores
                                 * q k^T, whose rounding the softmax amplifies (stories260K's loss curve moved 5%
                                 * per step from fp32 with them in bf16, 1.5% without) */
} attention_opts;
void ftc_attention_forward_ex(float *out, float *att, const float *q, const float *k, const float *v,
                          const uint8_t *key_mask, int B, int T, int H, int Hkv, int D, bool causal,
                          const attention_opts *opts);
void ftc_attention_backward_ex(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                           const float *k, const float *v, int B, int T, int H, int Hkv, int D, float *scratch,
                           const attention_opts *opts);

/* Tiled attention (FlashAttention-style, src/kernels/cpu/ops_attention.c): the same function as
 * ftc_attention_forward_ex / ftc_attention_backward_ex without any [T, T] buffer. Forward walks key tiles
 * with an online softmax (running row max and sum) and keeps only lse [B,H,T] = the log of each row's
 * softmax denominator (max + log sum); backward recomputes every tile's probabilities from q, k and lse.
 * Tiles above the causal diagonal are skipped in both. Same masks as ftc_attention_forward.
 * Dropout (opts->dropout_p > 0): value (b,h,i,j) is kept iff dropout_keep(opts->drop_key, ((b*H+h)*T+i)*T+j),
 * the mask ftc_dropout_forward would draw over the [B,H,T,T] probabilities with drop_key as its key (the one
 * draw it takes from the rng), recomputed in backward rather than stored. opts->rng, att_drop and drop_mask
 * are not used. bf16: the same products in bf16 as the materialising path. */
void ftc_attention_flash_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                                 const uint8_t *key_mask, int B, int T, int H, int Hkv, int D, bool causal,
                                 const attention_opts *opts);
/* Accumulates into dq, dk, dv (each may be NULL). out and lse are the forward's. scratch: at least
 * ftc_attention_flash_scratch_floats(B, T, H, Hkv, D) floats. */
void ftc_attention_flash_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                  const float *lse, const float *q, const float *k, const float *v,
                                  const uint8_t *key_mask, int B, int T, int H, int Hkv, int D, bool causal,
                                  float *scratch, const attention_opts *opts);
size_t ftc_attention_flash_scratch_floats(int B, int T, int H, int Hkv, int D);

/* Attention for incremental decoding over a KV cache (forward only; src/kernels/cpu/ops_attention_decode.c).
 * q, out [B,Tn,H,D]: the queries of the Tn newest positions Tk-Tn .. Tk-1. k_cache, v_cache [B,Tcap,Hkv,D]
 * (Tcap >= Tk rows per batch entry) already hold the keys/values of positions 0..Tk-1, the new ones included.
 * Causal: new query i sees keys 0..Tk-Tn+i. att [B,H,Tn,Tk] receives the probabilities (0 for hidden keys).
 * Gives the rows Tk-Tn.. of ftc_attention_forward(causal) on the whole sequence. */
void ftc_attention_decode_forward(float *out, float *att, const float *q, const float *k_cache, const float *v_cache,
                              int B, int Tn, int Tk, int Tcap, int H, int Hkv, int D);
/* One new query for each of S sequences with caches of their own (batched decoding): q, out [S,H,D]; sequence s
 * has len[s] cached positions (its new one last) in k_cache[s], v_cache[s] [>= len[s], Hkv, D]; att[s] receives
 * H x len[s] probabilities. Each row equals ftc_attention_decode_forward on that sequence alone. */
void ftc_attention_decode_seqs_forward(float *out, float *const *att, const float *q, const float *const *k_cache,
                                       const float *const *v_cache, const int *len, int S, int H, int Hkv, int D);
/* The same two over caches of IEEE halves (an f16 KV cache, issue 24): widened exactly on the fly, so the outputs
 * are, bit for bit, those of the f32 functions on f32 caches holding the same values (every Tn takes the
 * dot-product rows here, not the GEMM of a prompt chunk; generation widens the cache for those). */
void ftc_attention_decode_forward_f16(float *out, float *att, const float *q, const uint16_t *k_cache,
                                      const uint16_t *v_cache, int B, int Tn, int Tk, int Tcap, int H, int Hkv, int D);
void ftc_attention_decode_seqs_forward_f16(float *out, float *const *att, const float *q,
                                           const uint16_t *const *k_cache, const uint16_t *const *v_cache,
                                           const int *len, int S, int H, int Hkv, int D);
/* The same two over Q8_0 caches (a q8_0 KV cache, issue 24; llama.cpp's -ctk q8_0 -ctv q8_0): each cached row of
 * Hkv * D values (a multiple of 32) is Hkv * D / 32 Q8_0 blocks (ftc_block_q8_0 of ftc/quant.h: 32 int8 q and an
 * f16 scale d), so a cache [B, Tcap] rows is one array of blocks; every Tn by the rows, as the _f16 ones. The values
 * are decoded as they are read (d * q, ftc_dequantize_row's values). Where D is a multiple of 32 (at most 1024), as
 * llama.cpp does, each head's query is quantized to 8-bit blocks (f32 scales) and a score is the blocks' integer
 * dot products times both scales (AVX-512 VNNI, or a portable twin with the same bits), and the value sums are fused
 * multiply-adds; elsewhere the keys are decoded too and the outputs are, bit for bit, those of the f32 functions on
 * f32 caches holding the dequantized values. Either way a sequence's outputs do not depend on the batch. */
void ftc_attention_decode_forward_q8_0(float *out, float *att, const float *q, const void *k_cache, const void *v_cache,
                                       int B, int Tn, int Tk, int Tcap, int H, int Hkv, int D);
void ftc_attention_decode_seqs_forward_q8_0(float *out, float *const *att, const float *q, const void *const *k_cache,
                                            const void *const *v_cache, const int *len, int S, int H, int Hkv, int D);
/* ftc_attention_decode_seqs_forward (type FTC_KV_F32: float caches), _f16 (FTC_KV_F16: halves) or _q8_0
 * (FTC_KV_Q8_0: Q8_0 blocks) with pre(pre_ctx, s) run
 * for each sequence s before its attention reads q[s] and its cache: inside the sequence's job of the parallel pass
 * when it has one job (a batch of >= 4), else for every sequence before the pass. A decoding step gives it the new
 * row's RoPE and its store into the cache, which then run on the pool's threads instead of one; the same outputs. */
void ftc_attention_decode_seqs_forward_pre(float *out, float *const *att, const float *q, const void *const *k_cache,
                                           const void *const *v_cache, ftc_kv_type type, const int *len, int S, int H,
                                           int Hkv, int D, void (*pre)(void *ctx, int s), void *pre_ctx);
/* out[i] = the float value of the IEEE half in[i] (exact; F16C / AVX-512 where the CPU has them) */
void ftc_f16_to_f32_n(const uint16_t *in, float *out, size_t n);
/* out[i] = in[i] as an IEEE half, the halves of ftc_f32_to_f16 (nearest even; F16C / AVX-512 where the CPU has them) */
void ftc_f32_to_f16_n(const float *in, uint16_t *out, size_t n);

/* Softmax cross-entropy over V for N rows. targets[n] < 0 (e.g. -100) is ignored.
 * Returns the mean loss over counted rows (0 if none) and writes *n_counted.
 * Backward: dlogits = (softmax - onehot) * dloss / n_counted for counted rows, 0 for ignored rows.
 * (dlogits is written, not accumulated: logits are never shared; dlogits == logits works in place.) */
float ftc_cross_entropy_forward(const float *logits, const int32_t *targets, int N, int V, int *n_counted);
void ftc_cross_entropy_backward(float *dlogits, const float *logits, const int32_t *targets, int N, int V, float dloss);
/* The same with the scale of a counted row given: dlogits = (softmax - onehot) * g (the LM head's pieces keep each
 * row's scale whatever rows a piece holds) */
void ftc_cross_entropy_backward_rows(float *dlogits, const float *logits, const int32_t *targets, int N, int V, float g);
/* The forward in two steps, for logits that come a chunk of rows at a time: rows writes each row's loss
 * nll[n] (logsumexp - the target's logit; 0 for an ignored row), reduce their mean over counted rows.
 * reduce over all N rows' nll equals ftc_cross_entropy_forward over the N rows bit for bit (the same
 * per-row values, summed in the same fixed order). */
void ftc_cross_entropy_rows(double *nll, const float *logits, const int32_t *targets, int N, int V);
float ftc_cross_entropy_reduce(const double *nll, const int32_t *targets, int N, int *n_counted);
/* R-Drop's consistency term (Liang et al. 2021): rows [0, P) and [P, 2P) of logits [2P, K] are two dropout passes
 * over the same P examples. Forward: the mean over counted pairs (targets[i] >= 0 for i < P; targets NULL: all)
 * of S_i = KL(p_i || q_i) + KL(q_i || p_i), p_i = softmax(row i), q_i = softmax(row P + i); *n_pairs (may be
 * NULL) the pairs counted; 0 when none. Backward: dlogits += dS_i/dlogits x dloss / n_pairs for every counted
 * pair (accumulated: it adds to the cross-entropy's gradient already there). Computed in double. */
double ftc_rdrop_kl_forward(const float *logits, const int32_t *targets, int P, int K, int *n_pairs);
void ftc_rdrop_kl_backward(float *dlogits, const float *logits, const int32_t *targets, int P, int K, float dloss);

/* Pooling [B,T,C] -> [B,C]. mask [B,T] 1 = real token. */
void ftc_pool_cls_forward(float *out, const float *x, int B, int T, int C); /* first token */
void ftc_pool_cls_backward(float *dx, const float *dout, int B, int T, int C);
void ftc_pool_mean_forward(float *out, const float *x, const uint8_t *mask, int B, int T, int C);
void ftc_pool_mean_backward(float *dx, const float *dout, const uint8_t *mask, int B, int T, int C);
void ftc_pool_last_forward(float *out, const float *x, const uint8_t *mask, int B, int T, int C); /* last real token */
void ftc_pool_last_backward(float *dx, const float *dout, const uint8_t *mask, int B, int T, int C);
void ftc_tanh_forward(float *y, const float *x, int n); /* BERT pooler activation */
void ftc_tanh_backward(float *dx, const float *dy, const float *y, int n);

/* Inverted dropout with probability p: mask[i] = (keep ? 1/(1-p) : 0), y = x * mask (y == x allowed).
 * Each call takes ONE 64-bit draw from rng as a key; value i is kept iff a counter-based hash of (key, i)
 * (splitmix64's finaliser, top 24 bits) is >= ceil(p 2^24), so P(keep) = 1 - p at ftc_rng_uniform's
 * resolution. The mask depends only on the rng state and i: not on the thread count, the CPU path or n.
 * p == 0 copies x, fills mask with 1 and draws nothing. */
void ftc_dropout_forward(float *y, float *mask, const float *x, int n, float p, ftc_rng *rng);
void ftc_dropout_backward(float *dx, const float *dy, const float *mask, int n);

/* sum of x[i]^2 in double: 16 lanes (lane k takes i = k mod 16) and a fixed tree, so the same bits on every
 * path (AVX-512, AVX2, portable) and machine (the gradient norm that --clip reads) */
double ftc_sum_squares(const float *x, int64_t n);

/* AdamW (decoupled weight decay, PyTorch semantics) on n values; step t starts at 1. */
void ftc_adamw_update(float *w, const float *g, float *m, float *v, int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int64_t t);
/* The same with the gradient read as g[i] * grad_scale (one float product, as a clip's ftc_scale_grads would
 * have stored it): the same bits as scaling first, without a pass of its own over the gradients. */
void ftc_adamw_update_scaled(float *w, const float *g, float *m, float *v, int64_t n, float lr, float beta1,
                             float beta2, float eps, float weight_decay, int64_t t, float grad_scale);
#endif
