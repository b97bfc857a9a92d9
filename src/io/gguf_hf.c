/* GGUF model -> Hugging Face directory (config.json, model.safetensors in f32, tokenizer.json,
 * tokenizer_config.json, generation_config.json), so a .gguf works wherever ftc takes a model: the CLI
 * resolves a .gguf path to this directory, converted once into a cache (ftc_gguf_resolve).
 * Architectures llama (incl. SmolLM2 / Llama 3 style), qwen2, gpt2. What llama.cpp's converter changed
 * is undone: the Q/K row permutation (llama), GPT-2's Conv1D transpose, the tensor names. The tokenizer
 * is written as the tokenizer.json the HF tokenizer of that kind has: gpt2-type byte-level BPE with the
 * pre-tokenizer tokenizer.ggml.pre names, llama-type SentencePiece as byte-fallback BPE whose merges come
 * from the scores (as transformers' LlamaConverter builds them). See docs/gguf.md. */
#include "ftc/gguf.h"
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ftc/safetensors.h"

#define CHECK(x) do { if ((s = (x))) goto done; } while (0)

typedef enum { ARCH_LLAMA, ARCH_QWEN2, ARCH_GPT2 } arch_kind;

typedef struct {
    const ftc_gguf *g;
    arch_kind arch;
    const char *arch_name;
    int64_t L, C, F, H, KV, D, V, ctx;
    double eps, theta;
    bool tied;
} hp;

static ftc_status key_int(const ftc_gguf *g, const char *arch, const char *suffix, bool optional, int64_t *out,
                          ftc_err *err) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, suffix);
    return ftc_gguf_get_int(g, k, optional, out, err);
}
static ftc_status key_float(const ftc_gguf *g, const char *arch, const char *suffix, bool optional, double *out,
                            ftc_err *err) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, suffix);
    return ftc_gguf_get_float(g, k, optional, out, err);
}

static ftc_status read_hparams(const ftc_gguf *g, hp *h, ftc_err *err) {
    memset(h, 0, sizeof *h);
    h->g = g;
    const char *a;
    ftc_status s = ftc_gguf_get_str(g, "general.architecture", false, &a, err);
    if (s) return s;
    h->arch_name = a;
    if (!strcmp(a, "llama")) h->arch = ARCH_LLAMA;
    else if (!strcmp(a, "qwen2")) h->arch = ARCH_QWEN2;
    else if (!strcmp(a, "gpt2")) h->arch = ARCH_GPT2;
    else
        return ftc_errf(err, FTC_E_UNSUPPORTED, "%s: architecture '%s' is not supported (ftc maps llama, qwen2, gpt2)",
                        ftc_gguf_path(g), a);
    if ((s = key_int(g, a, "block_count", false, &h->L, err)) || (s = key_int(g, a, "embedding_length", false, &h->C, err)) ||
        (s = key_int(g, a, "feed_forward_length", false, &h->F, err)) ||
        (s = key_int(g, a, "attention.head_count", false, &h->H, err)))
        return s;
    h->KV = h->H;
    h->ctx = 2048;
    if ((s = key_int(g, a, "attention.head_count_kv", true, &h->KV, err)) ||
        (s = key_int(g, a, "context_length", true, &h->ctx, err)))
        return s;
    if (h->L < 1 || h->C < 1 || h->F < 1 || h->H < 1 || h->KV < 1 || h->H % h->KV || h->C % h->H || h->L > 4096 ||
        h->C > (1 << 20) || h->F > (1 << 22))
        return ftc_errf(err, FTC_E_INPUT, "%s: implausible hyperparameters: %lld layers, width %lld, ffn %lld, %lld "
                        "heads, %lld kv heads", ftc_gguf_path(g), (long long)h->L, (long long)h->C, (long long)h->F,
                        (long long)h->H, (long long)h->KV);
    h->D = h->C / h->H;
    int64_t kl = h->D, rd = h->D;
    if ((s = key_int(g, a, "attention.key_length", true, &kl, err)) || (s = key_int(g, a, "rope.dimension_count", true, &rd, err)))
        return s;
    if (kl != h->D)
        return ftc_errf(err, FTC_E_UNSUPPORTED, "%s: %s.attention.key_length %lld differs from width/heads %lld",
                        ftc_gguf_path(g), a, (long long)kl, (long long)h->D);
    if (h->arch != ARCH_GPT2 && rd != h->D)
        return ftc_errf(err, FTC_E_UNSUPPORTED, "%s: %s.rope.dimension_count %lld: partial rotary embeddings (head "
                        "size %lld) are not supported", ftc_gguf_path(g), a, (long long)rd, (long long)h->D);
    if (h->arch != ARCH_GPT2 && ftc_gguf_find_tensor(g, "rope_freqs.weight"))
        return ftc_errf(err, FTC_E_UNSUPPORTED, "%s: rope_freqs.weight (Llama 3.1 rope scaling) is not supported yet",
                        ftc_gguf_path(g));
    h->eps = h->arch == ARCH_GPT2 ? 1e-5 : 1e-6;
    h->theta = 10000;
    if ((s = key_float(g, a, h->arch == ARCH_GPT2 ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon",
                       true, &h->eps, err)) ||
        (s = key_float(g, a, "rope.freq_base", true, &h->theta, err)))
        return s;
    const ftc_gguf_tensor *emb = ftc_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->ndim != 2 || emb->shape[1] != h->C)
        return ftc_errf(err, FTC_E_INPUT, "%s: token_embd.weight missing or not [vocab, %lld]", ftc_gguf_path(g),
                        (long long)h->C);
    h->V = emb->shape[0];
    h->tied = !ftc_gguf_find_tensor(g, "output.weight");
    return FTC_OK;
}

/* ---- config.json ---- */
static int64_t opt_id(const ftc_gguf *g, const char *key) {
    int64_t v = -1;
    ftc_err e;
    if (ftc_gguf_get_int(g, key, true, &v, &e)) v = -1;
    return v;
}

static json_t *make_config(const hp *h) {
    json_t *c = json_object();
    int64_t bos = opt_id(h->g, "tokenizer.ggml.bos_token_id"), eos = opt_id(h->g, "tokenizer.ggml.eos_token_id"),
            pad = opt_id(h->g, "tokenizer.ggml.padding_token_id");
    if (h->arch == ARCH_GPT2) {
        json_object_set_new(c, "architectures", json_pack("[s]", "GPT2LMHeadModel"));
        json_object_set_new(c, "model_type", json_string("gpt2"));
        json_object_set_new(c, "n_embd", json_integer(h->C));
        json_object_set_new(c, "n_layer", json_integer(h->L));
        json_object_set_new(c, "n_head", json_integer(h->H));
        json_object_set_new(c, "n_inner", json_integer(h->F));
        json_object_set_new(c, "n_positions", json_integer(h->ctx));
        json_object_set_new(c, "n_ctx", json_integer(h->ctx));
        json_object_set_new(c, "layer_norm_epsilon", json_real(h->eps));
        json_object_set_new(c, "activation_function", json_string("gelu_new"));
    } else {
        bool qwen = h->arch == ARCH_QWEN2;
        json_object_set_new(c, "architectures", json_pack("[s]", qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"));
        json_object_set_new(c, "model_type", json_string(qwen ? "qwen2" : "llama"));
        json_object_set_new(c, "hidden_size", json_integer(h->C));
        json_object_set_new(c, "intermediate_size", json_integer(h->F));
        json_object_set_new(c, "num_hidden_layers", json_integer(h->L));
        json_object_set_new(c, "num_attention_heads", json_integer(h->H));
        json_object_set_new(c, "num_key_value_heads", json_integer(h->KV));
        json_object_set_new(c, "max_position_embeddings", json_integer(h->ctx));
        json_object_set_new(c, "rms_norm_eps", json_real(h->eps));
        json_object_set_new(c, "rope_theta", json_real(h->theta));
        json_object_set_new(c, "hidden_act", json_string("silu"));
        json_object_set_new(c, "tie_word_embeddings", json_boolean(h->tied));
        if (!qwen) json_object_set_new(c, "attention_bias", json_boolean(ftc_gguf_find_tensor(h->g, "blk.0.attn_q.bias")));
        if (qwen) json_object_set_new(c, "use_sliding_window", json_false());
    }
    json_object_set_new(c, "vocab_size", json_integer(h->V));
    json_object_set_new(c, "torch_dtype", json_string("float32"));
    if (bos >= 0) json_object_set_new(c, "bos_token_id", json_integer(bos));
    if (eos >= 0) json_object_set_new(c, "eos_token_id", json_integer(eos));
    if (pad >= 0) json_object_set_new(c, "pad_token_id", json_integer(pad));
    return c;
}

/* ---- weights ---- */
typedef struct {
    ftc_st_writer *w;
    float **bufs;
    int n, cap;
    json_t *types; /* HF name -> the GGUF tensor's ggml type (gguf_types.json) */
} wlist;

static float *keep(wlist *wl, size_t n) {
    if (wl->n == wl->cap) {
        int cap = wl->cap ? 2 * wl->cap : 64;
        float **nb = realloc(wl->bufs, sizeof *nb * (size_t)cap);
        if (!nb) return NULL;
        wl->bufs = nb;
        wl->cap = cap;
    }
    float *p = malloc(n ? n * sizeof(float) : sizeof(float));
    if (p) wl->bufs[wl->n++] = p;
    return p;
}

void ftc_gguf_permute_qk_rows(const float *in, float *out, int64_t heads, int64_t rows, int64_t cols, bool to_gguf) {
    const int64_t D = rows / heads;
    const size_t bytes = sizeof(float) * (size_t)cols;
    for (int64_t h = 0; h < heads; h++)
        for (int64_t i = 0; i < D / 2; i++)
            for (int64_t j = 0; j < 2; j++) {
                const int64_t g = h * D + 2 * i + j, hf = h * D + j * (D / 2) + i; /* the row in each order */
                if (to_gguf) memcpy(out + g * cols, in + hf * cols, bytes);
                else memcpy(out + hf * cols, in + g * cols, bytes);
            }
}

typedef enum { AS_IS, UNPERMUTE_Q, UNPERMUTE_K, TRANSPOSE } fix;

static ftc_status add_tensor(const hp *h, wlist *wl, const char *gname, const char *hfname, int ndim,
                             const int64_t *shape, fix how, bool optional, ftc_err *err) {
    const ftc_gguf_tensor *t = ftc_gguf_find_tensor(h->g, gname);
    if (!t) {
        if (optional) return FTC_OK;
        return ftc_errf(err, FTC_E_INPUT, "%s: missing tensor '%s' (architecture %s)", ftc_gguf_path(h->g), gname,
                        h->arch_name);
    }
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= shape[d];
    /* the gguf shape is the HF [out, in] (GPT-2's Conv1D [in, out] is transposed back below) */
    int64_t want[2] = {shape[0], ndim > 1 ? shape[1] : 0};
    if (how == TRANSPOSE) want[0] = shape[1], want[1] = shape[0];
    bool ok = t->ndim == ndim && t->numel == numel;
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == want[d];
    if (!ok)
        return ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s' has %d dims [%lld, %lld], the hyperparameters need [%lld, %lld]",
                        ftc_gguf_path(h->g), gname, t->ndim, (long long)t->shape[0],
                        (long long)(t->ndim > 1 ? t->shape[1] : 0), (long long)want[0], (long long)want[1]);
    float *v = keep(wl, (size_t)numel);
    if (!v) return ftc_errf(err, FTC_E_NOMEM, "out of memory for tensor '%s'", gname);
    ftc_status s = ftc_gguf_to_f32(h->g, t, v, err);
    if (s) return s;
    if (how != AS_IS) {
        float *o = keep(wl, (size_t)numel);
        if (!o) return ftc_errf(err, FTC_E_NOMEM, "out of memory for tensor '%s'", gname);
        int64_t rows = t->shape[0], cols = ndim > 1 ? t->shape[1] : 1;
        if (how == TRANSPOSE)
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < cols; c++) o[c * rows + r] = v[r * cols + c];
        else ftc_gguf_permute_qk_rows(v, o, how == UNPERMUTE_Q ? h->H : h->KV, rows, cols, false);
        v = o;
    }
    if (json_object_set_new(wl->types, hfname, json_integer(t->type)))
        return ftc_errf(err, FTC_E_NOMEM, "out of memory for tensor '%s'", gname);
    return ftc_st_writer_add_f32_as(wl->w, hfname, FTC_F32, ndim, shape, v, err);
}

static ftc_status write_weights(const hp *h, const char *path, json_t *types, ftc_err *err) {
    wlist wl = {ftc_st_writer_new(), NULL, 0, 0, types};
    if (!wl.w) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    ftc_status s = FTC_OK;
    int64_t C = h->C, F = h->F, V = h->V, KVD = h->KV * h->D;
    char g[128], n[160];
    if ((s = ftc_st_writer_metadata(wl.w, "format", "pt", err))) goto done;
    if (h->arch == ARCH_GPT2) {
        const ftc_gguf_tensor *pe = ftc_gguf_find_tensor(h->g, "position_embd.weight");
        int64_t P = pe && pe->ndim == 2 ? pe->shape[0] : h->ctx;
        CHECK(add_tensor(h, &wl, "token_embd.weight", "transformer.wte.weight", 2, (int64_t[]){V, C}, AS_IS, false, err));
        CHECK(add_tensor(h, &wl, "position_embd.weight", "transformer.wpe.weight", 2, (int64_t[]){P, C}, AS_IS, false, err));
        for (int64_t i = 0; i < h->L; i++) {
            static const struct { const char *g, *hf; int kind; } M[] = {
                {"attn_norm", "ln_1", 0}, {"ffn_norm", "ln_2", 0}, {"attn_qkv", "attn.c_attn", 1},
                {"attn_output", "attn.c_proj", 2}, {"ffn_up", "mlp.c_fc", 3}, {"ffn_down", "mlp.c_proj", 4}};
            for (size_t k = 0; k < sizeof M / sizeof *M; k++) {
                int64_t in = M[k].kind == 4 ? F : C, out = M[k].kind == 1 ? 3 * C : M[k].kind == 3 ? F : C;
                snprintf(g, sizeof g, "blk.%lld.%s.weight", (long long)i, M[k].g);
                snprintf(n, sizeof n, "transformer.h.%lld.%s.weight", (long long)i, M[k].hf);
                if (M[k].kind == 0) CHECK(add_tensor(h, &wl, g, n, 1, (int64_t[]){C}, AS_IS, false, err));
                else CHECK(add_tensor(h, &wl, g, n, 2, (int64_t[]){in, out}, TRANSPOSE, false, err));
                snprintf(g, sizeof g, "blk.%lld.%s.bias", (long long)i, M[k].g);
                snprintf(n, sizeof n, "transformer.h.%lld.%s.bias", (long long)i, M[k].hf);
                CHECK(add_tensor(h, &wl, g, n, 1, (int64_t[]){out}, AS_IS, false, err));
            }
        }
        CHECK(add_tensor(h, &wl, "output_norm.weight", "transformer.ln_f.weight", 1, (int64_t[]){C}, AS_IS, false, err));
        CHECK(add_tensor(h, &wl, "output_norm.bias", "transformer.ln_f.bias", 1, (int64_t[]){C}, AS_IS, false, err));
        /* transformers' GPT-2 always ties lm_head to wte: an untied output has no place in the HF layout */
        if (!h->tied) {
            s = ftc_errf(err, FTC_E_UNSUPPORTED, "%s: gpt2 with a separate output.weight (untied) has no Hugging Face "
                         "GPT-2 equivalent", ftc_gguf_path(h->g));
            goto done;
        }
    } else {
        bool llama = h->arch == ARCH_LLAMA;
        CHECK(add_tensor(h, &wl, "token_embd.weight", "model.embed_tokens.weight", 2, (int64_t[]){V, C}, AS_IS, false, err));
        for (int64_t i = 0; i < h->L; i++) {
            static const struct { const char *g, *hf; int kind; } M[] = {
                {"attn_norm", "input_layernorm", 0}, {"ffn_norm", "post_attention_layernorm", 0},
                {"attn_q", "self_attn.q_proj", 1},   {"attn_k", "self_attn.k_proj", 2},
                {"attn_v", "self_attn.v_proj", 3},   {"attn_output", "self_attn.o_proj", 4},
                {"ffn_gate", "mlp.gate_proj", 5},    {"ffn_up", "mlp.up_proj", 5},
                {"ffn_down", "mlp.down_proj", 6}};
            for (size_t k = 0; k < sizeof M / sizeof *M; k++) {
                int kind = M[k].kind;
                int64_t out = kind == 0 ? C : kind == 1 ? C : kind <= 3 ? KVD : kind == 4 ? C : kind == 5 ? F : C;
                int64_t in = kind == 6 ? F : C;
                fix how = llama && kind == 1 ? UNPERMUTE_Q : llama && kind == 2 ? UNPERMUTE_K : AS_IS;
                snprintf(g, sizeof g, "blk.%lld.%s.weight", (long long)i, M[k].g);
                snprintf(n, sizeof n, "model.layers.%lld.%s.weight", (long long)i, M[k].hf);
                if (kind == 0) CHECK(add_tensor(h, &wl, g, n, 1, (int64_t[]){C}, AS_IS, false, err));
                else CHECK(add_tensor(h, &wl, g, n, 2, (int64_t[]){out, in}, how, false, err));
                if (kind >= 1 && kind <= 3) { /* q/k/v biases: Qwen2 always, Llama with attention_bias */
                    snprintf(g, sizeof g, "blk.%lld.%s.bias", (long long)i, M[k].g);
                    snprintf(n, sizeof n, "model.layers.%lld.%s.bias", (long long)i, M[k].hf);
                    CHECK(add_tensor(h, &wl, g, n, 1, (int64_t[]){out}, how, !(h->arch == ARCH_QWEN2), err));
                }
            }
        }
        CHECK(add_tensor(h, &wl, "output_norm.weight", "model.norm.weight", 1, (int64_t[]){C}, AS_IS, false, err));
        if (!h->tied) CHECK(add_tensor(h, &wl, "output.weight", "lm_head.weight", 2, (int64_t[]){V, C}, AS_IS, false, err));
    }
    s = ftc_st_writer_write(wl.w, path, err);
done:
    ftc_st_writer_free(wl.w);
    for (int i = 0; i < wl.n; i++) free(wl.bufs[i]);
    free(wl.bufs);
    return s;
}

/* ---- tokenizer ---- */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* The pre-tokenizer regexes of the HF tokenizers llama.cpp names in tokenizer.ggml.pre. */
#define RE_LLAMA3 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static json_t *bytelevel(bool use_regex) {
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
                     "use_regex", use_regex);
}
static json_t *split_then_bytelevel(const char *re) {
    return json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, o]}", "type", "Sequence", "pretokenizers", "type", "Split",
                     "pattern", "Regex", re, "behavior", "Isolated", "invert", 0, bytelevel(false));
}

/* pre-tokenizer (and normalizer) for a gpt2-type vocabulary, by tokenizer.ggml.pre */
static ftc_status bpe_pre(const ftc_gguf *g, const char *pre, json_t **pt, json_t **norm, ftc_err *err) {
    *norm = json_null();
    if (!pre || !strcmp(pre, "gpt2") || !strcmp(pre, "default")) *pt = bytelevel(true);
    else if (!strcmp(pre, "smollm") || !strcmp(pre, "starcoder") || !strcmp(pre, "refact"))
        *pt = json_pack("{s:s, s:[{s:s, s:b}, o]}", "type", "Sequence", "pretokenizers", "type", "Digits",
                        "individual_digits", 1, bytelevel(true));
    else if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3") || !strcmp(pre, "smaug-bpe"))
        *pt = split_then_bytelevel(RE_LLAMA3);
    else if (!strcmp(pre, "qwen2")) {
        *pt = split_then_bytelevel(RE_QWEN2);
        json_decref(*norm);
        *norm = json_pack("{s:s}", "type", "NFC");
    } else {
        json_decref(*norm);
        return ftc_errf(err, FTC_E_UNSUPPORTED, "%s: tokenizer.ggml.pre '%s' is not supported (ftc maps gpt2, smollm, "
                        "starcoder, refact, llama-bpe, qwen2)", ftc_gguf_path(g), pre);
    }
    return *pt ? FTC_OK : ftc_errf(err, FTC_E_NOMEM, "out of memory");
}

typedef struct { const char *piece; size_t k; double score; int64_t idl, idr; size_t order; } spm_merge;
static int cmp_spm(const void *a, const void *b) {
    const spm_merge *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1; /* higher score merges first */
    return (x->order > y->order) - (x->order < y->order);            /* stable */
}
static int cmp_ids(const void *a, const void *b) {
    const spm_merge *x = a, *y = b;
    return x->idl != y->idl ? (x->idl > y->idl) - (x->idl < y->idl) : (x->idr > y->idr) - (x->idr < y->idr);
}

/* transformers' SentencePieceExtractor: every split of every piece into two pieces of the vocabulary is
 * a merge, ranked by the piece's score (stable: vocabulary order, then the ids of the two halves). */
static ftc_status spm_merges(const ftc_gguf_value *tok, const ftc_gguf_value *scores, json_t *vocab, json_t *out,
                             ftc_err *err) {
    size_t cap = 1 << 16, n = 0, bufcap = 256;
    spm_merge *m = malloc(sizeof *m * cap);
    char *buf = malloc(bufcap);
    ftc_status s = FTC_OK;
    if (!m || !buf) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); goto done; }
    for (uint64_t i = 0; i < tok->arr.n; i++) {
        const char *p = tok->arr.items[i].str.s;
        size_t len = tok->arr.items[i].str.len, first = n;
        if (len + 2 > bufcap) {
            bufcap = 2 * (len + 2);
            char *nb = realloc(buf, bufcap);
            if (!nb) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); goto done; }
            buf = nb;
        }
        for (size_t k = 1; k < len; k++) {
            if (((unsigned char)p[k] & 0xc0) == 0x80) continue; /* split between characters only */
            memcpy(buf, p, k);
            buf[k] = 0;
            json_t *l = json_object_get(vocab, buf), *r = json_object_get(vocab, p + k);
            if (!l || !r) continue;
            if (n == cap) {
                cap *= 2;
                spm_merge *nm = realloc(m, sizeof *m * cap);
                if (!nm) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); goto done; }
                m = nm;
            }
            m[n++] = (spm_merge){p, k, ftc_gguf_arr_float(scores, i), json_integer_value(l), json_integer_value(r), 0};
        }
        qsort(m + first, n - first, sizeof *m, cmp_ids);
    }
    for (size_t i = 0; i < n; i++) m[i].order = i;
    qsort(m, n, sizeof *m, cmp_spm);
    for (size_t i = 0; i < n && !s; i++) {
        size_t len = strlen(m[i].piece);
        memcpy(buf, m[i].piece, m[i].k);
        buf[m[i].k] = ' ';
        memcpy(buf + m[i].k + 1, m[i].piece + m[i].k, len - m[i].k + 1);
        if (json_array_append_new(out, json_string(buf))) s = ftc_errf(err, FTC_E_INPUT, "merge %zu: bad UTF-8", i);
    }
done:
    free(m);
    free(buf);
    return s;
}

static json_t *special_token(const char *content, int64_t id, bool special) {
    return json_pack("{s:I, s:s, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)id, "content", content, "single_word", 0,
                     "lstrip", 0, "rstrip", 0, "normalized", 0, "special", special);
}

static json_t *template_processing(const char *bos, int64_t bos_id, const char *eos, int64_t eos_id) {
    json_t *single = json_array(), *pair = json_array(), *sp = json_object();
    for (int half = 0; half < 2; half++) {
        json_t *arr = half ? pair : single;
        for (int seg = 0; seg < (half ? 2 : 1); seg++) {
            if (bos) json_array_append_new(arr, json_pack("{s:{s:s, s:i}}", "SpecialToken", "id", bos, "type_id", seg));
            json_array_append_new(arr, json_pack("{s:{s:s, s:i}}", "Sequence", "id", seg ? "B" : "A", "type_id", seg));
            if (eos) json_array_append_new(arr, json_pack("{s:{s:s, s:i}}", "SpecialToken", "id", eos, "type_id", seg));
        }
    }
    if (bos) json_object_set_new(sp, bos, json_pack("{s:s, s:[I], s:[s]}", "id", bos, "ids", (json_int_t)bos_id, "tokens", bos));
    if (eos) json_object_set_new(sp, eos, json_pack("{s:s, s:[I], s:[s]}", "id", eos, "ids", (json_int_t)eos_id, "tokens", eos));
    return json_pack("{s:s, s:o, s:o, s:o}", "type", "TemplateProcessing", "single", single, "pair", pair,
                     "special_tokens", sp);
}

static ftc_status make_tokenizer(const ftc_gguf *g, json_t **tok_out, json_t **cfg_out, ftc_err *err) {
    const char *model = NULL, *pre = NULL, *tmpl = NULL;
    ftc_status s;
    if ((s = ftc_gguf_get_str(g, "tokenizer.ggml.model", false, &model, err)) ||
        (s = ftc_gguf_get_str(g, "tokenizer.ggml.pre", true, &pre, err)) ||
        (s = ftc_gguf_get_str(g, "tokenizer.chat_template", true, &tmpl, err)))
        return s;
    bool spm = !strcmp(model, "llama");
    if (!spm && strcmp(model, "gpt2"))
        return ftc_errf(err, FTC_E_UNSUPPORTED, "%s: tokenizer.ggml.model '%s' is not supported (gpt2, llama)",
                        ftc_gguf_path(g), model);
    const ftc_gguf_value *tok = ftc_gguf_find(g, "tokenizer.ggml.tokens"), *types = ftc_gguf_find(g, "tokenizer.ggml.token_type"),
                         *merges = ftc_gguf_find(g, "tokenizer.ggml.merges"), *scores = ftc_gguf_find(g, "tokenizer.ggml.scores");
    if (!tok || tok->type != FTC_GGUF_ARRAY || tok->arr.elem != FTC_GGUF_STRING || tok->arr.n == 0)
        return ftc_errf(err, FTC_E_INPUT, "%s: tokenizer.ggml.tokens missing or not a list of strings", ftc_gguf_path(g));
    uint64_t nt = tok->arr.n;
    if (types && (types->type != FTC_GGUF_ARRAY || !types->arr.raw || types->arr.n != nt))
        return ftc_errf(err, FTC_E_INPUT, "%s: tokenizer.ggml.token_type is not a list of %llu integers", ftc_gguf_path(g),
                        (unsigned long long)nt);
    if (!spm && (!merges || merges->type != FTC_GGUF_ARRAY || merges->arr.elem != FTC_GGUF_STRING))
        return ftc_errf(err, FTC_E_INPUT, "%s: tokenizer.ggml.merges missing or not a list of strings", ftc_gguf_path(g));
    if (spm && (!scores || scores->type != FTC_GGUF_ARRAY || !scores->arr.raw || scores->arr.n != nt))
        return ftc_errf(err, FTC_E_INPUT, "%s: tokenizer.ggml.scores missing or not a list of %llu numbers",
                        ftc_gguf_path(g), (unsigned long long)nt);
    int64_t bos = opt_id(g, "tokenizer.ggml.bos_token_id"), eos = opt_id(g, "tokenizer.ggml.eos_token_id"),
            unk = opt_id(g, "tokenizer.ggml.unknown_token_id"), pad = opt_id(g, "tokenizer.ggml.padding_token_id");
    bool add_bos = spm, add_eos = false, add_space = true;
    if ((s = ftc_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", true, &add_bos, err)) ||
        (s = ftc_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", true, &add_eos, err)) ||
        (s = ftc_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", true, &add_space, err)))
        return s;
    int64_t ids[4] = {bos, eos, unk, pad};
    for (int i = 0; i < 4; i++)
        if (ids[i] >= (int64_t)nt)
            return ftc_errf(err, FTC_E_INPUT, "%s: special token id %lld is outside the %llu tokens", ftc_gguf_path(g),
                            (long long)ids[i], (unsigned long long)nt);
    json_t *vocab = json_object(), *added = json_array(), *mlist = json_array();
    for (uint64_t i = 0; i < nt; i++) {
        const char *t = tok->arr.items[i].str.s;
        if (!json_object_get(vocab, t) && json_object_set_new(vocab, t, json_integer((json_int_t)i))) {
            json_decref(vocab), json_decref(added), json_decref(mlist);
            return ftc_errf(err, FTC_E_INPUT, "%s: token %llu is not valid UTF-8", ftc_gguf_path(g), (unsigned long long)i);
        }
        int64_t ty = types ? ftc_gguf_arr_int(types, i) : TT_NORMAL;
        bool is_special = ty == TT_CONTROL || (int64_t)i == bos || (int64_t)i == eos || (int64_t)i == unk;
        if (ty == TT_CONTROL || ty == TT_USER || (spm && is_special))
            json_array_append_new(added, special_token(t, (int64_t)i, is_special && ty != TT_USER));
    }
    s = FTC_OK;
    if (spm) s = spm_merges(tok, scores, vocab, mlist, err);
    else
        for (uint64_t i = 0; i < merges->arr.n && !s; i++)
            if (json_array_append_new(mlist, json_string(merges->arr.items[i].str.s)))
                s = ftc_errf(err, FTC_E_INPUT, "%s: merge %llu is not valid UTF-8", ftc_gguf_path(g), (unsigned long long)i);
    if (s) { json_decref(vocab), json_decref(added), json_decref(mlist); return s; }
    const char *bos_s = bos >= 0 ? tok->arr.items[bos].str.s : NULL, *eos_s = eos >= 0 ? tok->arr.items[eos].str.s : NULL;
    json_t *j = json_object(), *pt = NULL, *norm = NULL, *post, *dec, *mod;
    if (spm) {
        norm = add_space ? json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}", "type", "Sequence", "normalizers",
                                     "type", "Prepend", "prepend", "\xe2\x96\x81", "type", "Replace", "pattern", "String",
                                     " ", "content", "\xe2\x96\x81")
                         : json_pack("{s:s, s:{s:s}, s:s}", "type", "Replace", "pattern", "String", " ", "content",
                                     "\xe2\x96\x81");
        pt = json_null();
        dec = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}]}", "type", "Sequence", "decoders", "type", "Replace",
                        "pattern", "String", "\xe2\x96\x81", "content", " ", "type", "ByteFallback", "type", "Fuse");
        if (add_space)
            json_array_append_new(json_object_get(dec, "decoders"),
                                  json_pack("{s:s, s:s, s:i, s:i}", "type", "Strip", "content", " ", "start", 1, "stop", 0));
        mod = json_pack("{s:s, s:n, s:s?, s:n, s:n, s:b, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout",
                        "unk_token", unk >= 0 ? tok->arr.items[unk].str.s : NULL, "continuing_subword_prefix",
                        "end_of_word_suffix", "fuse_unk", 1, "byte_fallback", 1, "ignore_merges", 0, "vocab", vocab,
                        "merges", mlist);
    } else {
        if ((s = bpe_pre(g, pre, &pt, &norm, err))) { json_decref(vocab), json_decref(added), json_decref(mlist), json_decref(j); return s; }
        dec = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1,
                        "use_regex", 1);
        mod = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout", "unk_token",
                        "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
                        "ignore_merges", pre && (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3")), "vocab", vocab,
                        "merges", mlist);
    }
    if ((add_bos && bos_s) || (add_eos && eos_s))
        post = template_processing(add_bos ? bos_s : NULL, bos, add_eos ? eos_s : NULL, eos);
    else if (!spm) post = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 0, "use_regex", 1);
    else post = json_null();
    json_object_set_new(j, "version", json_string("1.0"));
    json_object_set_new(j, "truncation", json_null());
    json_object_set_new(j, "padding", json_null());
    json_object_set_new(j, "added_tokens", added);
    json_object_set_new(j, "normalizer", norm);
    json_object_set_new(j, "pre_tokenizer", pt);
    json_object_set_new(j, "post_processor", post);
    json_object_set_new(j, "decoder", dec);
    json_object_set_new(j, "model", mod);
    if (!mod || !dec || !post) { json_decref(j); return ftc_errf(err, FTC_E_NOMEM, "out of memory building tokenizer.json"); }
    /* tokenizer_config.json: what transformers and ftc's chat templates read next to tokenizer.json */
    json_t *c = json_object();
    json_object_set_new(c, "tokenizer_class", json_string(spm ? "LlamaTokenizerFast" : "PreTrainedTokenizerFast"));
    json_object_set_new(c, "add_bos_token", json_boolean(add_bos));
    json_object_set_new(c, "add_eos_token", json_boolean(add_eos));
    json_object_set_new(c, "clean_up_tokenization_spaces", json_false());
    if (bos_s) json_object_set_new(c, "bos_token", json_string(bos_s));
    if (eos_s) json_object_set_new(c, "eos_token", json_string(eos_s));
    if (unk >= 0) json_object_set_new(c, "unk_token", json_string(tok->arr.items[unk].str.s));
    if (pad >= 0) json_object_set_new(c, "pad_token", json_string(tok->arr.items[pad].str.s));
    if (tmpl) json_object_set_new(c, "chat_template", json_string(tmpl));
    if (spm) json_object_set_new(c, "legacy", json_true());
    *tok_out = j;
    *cfg_out = c;
    return FTC_OK;
}

static ftc_status write_json(const char *dir, const char *file, json_t *o, ftc_err *err) {
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(17) | JSON_PRESERVE_ORDER);
    if (!text) return ftc_errf(err, FTC_E_NOMEM, "out of memory writing %s", file);
    char path[4400];
    ftc_status s = ftc_path_join(path, sizeof path, dir, file) ? FTC_OK : ftc_errf(err, FTC_E_USAGE, "path too long: %s", dir);
    if (!s) s = ftc_write_file_atomic(path, text, strlen(text), err);
    free(text);
    return s;
}

ftc_status ftc_gguf_export_hf(const char *gguf_path, const char *out_dir, ftc_err *err) {
    ftc_gguf *g = NULL;
    json_t *cfg = NULL, *tok = NULL, *tcfg = NULL, *gen = NULL, *types = json_object();
    if (!types) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    ftc_status s = ftc_gguf_open(gguf_path, &g, err);
    if (s) {
        json_decref(types);
        return s;
    }
    hp h;
    char path[4400];
    CHECK(read_hparams(g, &h, err));
    CHECK(make_tokenizer(g, &tok, &tcfg, err));
    CHECK(ftc_mkdirs(out_dir, err));
    cfg = make_config(&h);
    CHECK(write_json(out_dir, "config.json", cfg, err));
    CHECK(write_json(out_dir, "tokenizer.json", tok, err));
    CHECK(write_json(out_dir, "tokenizer_config.json", tcfg, err));
    gen = json_object();
    int64_t bos = opt_id(g, "tokenizer.ggml.bos_token_id"), eos = opt_id(g, "tokenizer.ggml.eos_token_id");
    if (bos >= 0) json_object_set_new(gen, "bos_token_id", json_integer(bos));
    if (eos >= 0) json_object_set_new(gen, "eos_token_id", json_integer(eos));
    CHECK(write_json(out_dir, "generation_config.json", gen, err));
    if (!ftc_path_join(path, sizeof path, out_dir, "model.safetensors")) {
        s = ftc_errf(err, FTC_E_USAGE, "path too long: %s", out_dir);
        goto done;
    }
    CHECK(write_weights(&h, path, types, err));
    /* which type each weight came in: --base-dtype auto keeps the ones ftc packs (ftc_model_load_gguf_base) */
    CHECK(write_json(out_dir, FTC_GGUF_TYPES_FILE, types, err));
done:
    json_decref(cfg), json_decref(tok), json_decref(tcfg), json_decref(gen), json_decref(types);
    ftc_gguf_close(g);
    return s;
}

ftc_status ftc_gguf_write_tokenizer(const char *gguf_path, const char *out_dir, ftc_err *err) {
    ftc_gguf *g = NULL;
    json_t *tok = NULL, *tcfg = NULL;
    ftc_status s = ftc_gguf_open(gguf_path, &g, err);
    if (s) return s;
    CHECK(make_tokenizer(g, &tok, &tcfg, err));
    CHECK(ftc_mkdirs(out_dir, err));
    CHECK(write_json(out_dir, "tokenizer.json", tok, err));
    CHECK(write_json(out_dir, "tokenizer_config.json", tcfg, err));
done:
    json_decref(tok), json_decref(tcfg);
    ftc_gguf_close(g);
    return s;
}

bool ftc_is_gguf_path(const char *path) {
    size_t n = strlen(path);
    return n > 5 && !strcmp(path + n - 5, ".gguf") && !ftc_is_dir(path);
}

/* FNV-1a over the bytes */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ ((const uint8_t *)p)[i]) * 0x100000001b3ULL;
    return h;
}

static void remove_tree(const char *dir) {
    static const char *files[] = {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
                                  "model.safetensors", "source.json"};
    char p[4400];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        if (ftc_path_join(p, sizeof p, dir, files[i])) unlink(p);
    rmdir(dir);
}

ftc_status ftc_gguf_resolve(const char *path, char *out, size_t n, ftc_err *err) {
    if (!ftc_is_gguf_path(path)) {
        if ((size_t)snprintf(out, n, "%s", path) >= n) return ftc_errf(err, FTC_E_USAGE, "path too long: %s", path);
        return FTC_OK;
    }
    struct stat st;
    char real[PATH_MAX];
    if (stat(path, &st) != 0 || !realpath(path, real))
        return ftc_errf(err, FTC_E_IO, "%s: cannot open: %s", path, strerror(errno));
    char root[4096];
    const char *c = getenv("FTC_CACHE_DIR"), *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (c && *c) snprintf(root, sizeof root, "%s/gguf", c);
    else if (x && *x) snprintf(root, sizeof root, "%s/ftc/gguf", x);
    else if (home && *home) snprintf(root, sizeof root, "%s/.cache/ftc/gguf", home);
    else snprintf(root, sizeof root, "/tmp/ftc-cache-%d/gguf", (int)getuid());
    /* the key: the file's real path, size and modification time, and the converter's version */
    uint64_t key = fnv(0xcbf29ce484222325ULL, real, strlen(real));
    int64_t meta[3] = {(int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec, (int64_t)st.st_mtim.tv_nsec};
    key = fnv(key, meta, sizeof meta);
    key = fnv(key, "ftc-gguf-hf-2", 13); /* 2: writes gguf_types.json */
    const char *base = strrchr(real, '/') ? strrchr(real, '/') + 1 : real;
    char dir[4400], marker[4500];
    snprintf(dir, sizeof dir, "%s/%.*s-%016llx", root, (int)(strlen(base) - 5), base, (unsigned long long)key);
    snprintf(marker, sizeof marker, "%s/source.json", dir);
    if ((size_t)snprintf(out, n, "%s", dir) >= n) return ftc_errf(err, FTC_E_USAGE, "path too long: %s", dir);
    if (ftc_file_exists(marker)) return FTC_OK; /* converted before */
    ftc_status s = ftc_mkdirs(root, err);
    if (s) return ftc_err_prefix(err, "cache for %s: ", path);
    char tmp[4500];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", dir, (int)getpid());
    remove_tree(tmp);
    if ((s = ftc_gguf_export_hf(path, tmp, err))) { remove_tree(tmp); return s; }
    json_t *src = json_pack("{s:s, s:I, s:I}", "gguf", real, "size", (json_int_t)st.st_size, "mtime",
                            (json_int_t)st.st_mtim.tv_sec);
    s = write_json(tmp, "source.json", src, err);
    json_decref(src);
    if (s) { remove_tree(tmp); return s; }
    if (rename(tmp, dir) != 0) {
        int e = errno;
        remove_tree(tmp);
        if (ftc_file_exists(marker)) return FTC_OK; /* another process converted it meanwhile */
        return ftc_errf(err, FTC_E_IO, "%s: cannot move the converted model into place: %s", dir, strerror(e));
    }
    return FTC_OK;
}
