/* Hugging Face directory -> GGUF, as llama.cpp's convert_hf_to_gguf.py writes it (the same keys, tensor names and
 * tensor layouts; docs/gguf.md has the comparison with the converter), plus an Ollama Modelfile.
 * Architectures llama (and mistral, which llama.cpp runs as llama), qwen2, gpt2. The reverse of gguf_hf.c:
 *   llama: q/k rows permuted from HF's half-split RoPE layout to llama.cpp's interleaved pairs:
 *          GGUF row h*D + 2i + j = HF row h*D + j*D/2 + i (k with the KV head count);
 *   gpt2:  Conv1D weights [in, out] transposed to [out, in];
 *   tokenizer.json -> tokenizer.ggml.*: byte-level BPE as model "gpt2" with the pre-tokenizer's llama.cpp name
 *          (refused when ftc cannot name it: llama.cpp would tokenize differently), byte-fallback BPE
 *          (SentencePiece-style) as model "llama" with scores that make llama.cpp's merge order the HF one. */
#include "ftc/gguf.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base_internal.h"
#include "ftc/data.h"
#include "ftc/hf_config.h"
#include "ftc/quant.h"
#include "ftc/safetensors.h"

#define CHECK(x) do { if ((s = (x))) goto done; } while (0)

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };
typedef enum { A_LLAMA, A_QWEN2, A_GPT2 } arch_kind;

/* ---- tensors ---- */
typedef enum { AS_IS, PERMUTE_Q, PERMUTE_K, TRANSPOSE } fix;

/* The type a 2-D weight of rows of n values is stored in. Quantized types need whole blocks: otherwise Q4_K falls
 * back to Q4_1 (ftc_quant_type_for_row) and anything else to F16, as llama.cpp's converter falls back to F16. */
static int weight_type(int want, int64_t n) {
    if (want == FTC_GGML_F32 || want == FTC_GGML_F16 || want == FTC_GGML_BF16) return want;
    int t = ftc_quant_type_for_row(want, n);
    return t < 0 ? FTC_GGML_F16 : t;
}

/* f32 values -> a malloc'd buffer of `type` (rows of n values). */
static void *encode(const float *v, int64_t numel, int64_t n, int type) {
    if (type == FTC_GGML_F32) {
        float *o = malloc(sizeof(float) * (size_t)numel);
        if (o) memcpy(o, v, sizeof(float) * (size_t)numel);
        return o;
    }
    if (type == FTC_GGML_F16 || type == FTC_GGML_BF16) {
        uint16_t *o = malloc(2 * (size_t)numel);
        for (int64_t i = 0; o && i < numel; i++) o[i] = type == FTC_GGML_F16 ? ftc_f32_to_f16(v[i]) : ftc_f32_to_bf16(v[i]);
        return o;
    }
    size_t rb = ftc_quant_row_bytes(type, n);
    int64_t rows = numel / n;
    uint8_t *o = malloc(rb * (size_t)rows);
    for (int64_t r = 0; o && r < rows; r++) ftc_quantize_row(type, v + r * n, o + (size_t)r * rb, n);
    return o;
}

typedef struct {
    const ftc_st_set *st;
    ftc_gguf_writer *w;
    const char *dir;
    int want;
    bool base;        /* types as a quantized base of type `want` holds its weights (ftc_gguf_export_opts.as_base) */
    const char *head; /* then the GGUF name of the LM head: output.weight, or token_embd.weight tied to it */
    int64_t H, KV;
    int64_t n_params;
} tctx;

static ftc_status add(tctx *c, const char *hf, const char *gg, int ndim, const int64_t *shape, fix how, bool optional,
                      ftc_err *err) {
    const ftc_tensor_view *t = ftc_st_find(c->st, hf);
    if (!t) {
        if (optional) return FTC_OK;
        return ftc_errf(err, FTC_E_INPUT, "%s: missing tensor '%s'", c->dir, hf);
    }
    int64_t hs[2] = {shape[0], ndim > 1 ? shape[1] : 1}; /* the HF shape */
    if (how == TRANSPOSE) hs[0] = shape[1], hs[1] = shape[0];
    ftc_status s = ftc_st_check_shape(c->st, hf, ndim, hs, err);
    if (s) return s;
    int64_t numel = t->numel;
    float *v = malloc(sizeof(float) * (size_t)numel), *o = NULL;
    if (!v) return ftc_errf(err, FTC_E_NOMEM, "out of memory for '%s'", hf);
    if ((s = ftc_tensor_to_f32(t, v, err))) { free(v); return s; }
    if (how != AS_IS) {
        if (!(o = malloc(sizeof(float) * (size_t)numel))) { free(v); return ftc_errf(err, FTC_E_NOMEM, "out of memory"); }
        if (how == TRANSPOSE)
            for (int64_t r = 0; r < hs[0]; r++)
                for (int64_t k = 0; k < hs[1]; k++) o[k * hs[0] + r] = v[r * hs[1] + k];
        else ftc_gguf_permute_qk_rows(v, o, how == PERMUTE_Q ? c->H : c->KV, shape[0], ndim > 1 ? shape[1] : 1, true);
        free(v);
        v = o;
    }
    int type = ndim == 1 ? FTC_GGML_F32 : weight_type(c->want, shape[1]);
    if (ndim == 2 && c->base) { /* the LM head's rule; rows no block fits and position tables stay f32 */
        int t = !strcmp(gg, c->head) ? ftc_quant_type_for_output(c->want, shape[1])
                : strcmp(gg, "position_embd.weight") ? ftc_quant_type_for_row(c->want, shape[1]) : -1;
        type = t < 0 ? FTC_GGML_F32 : t;
    }
    void *data = encode(v, numel, ndim == 1 ? numel : shape[1], type);
    free(v);
    if (!data) return ftc_errf(err, FTC_E_NOMEM, "out of memory for '%s'", hf);
    c->n_params += numel;
    return ftc_gguf_writer_add_tensor(c->w, gg, type, ndim, shape, data, err);
}

static ftc_status add_weights(tctx *c, const ftc_model_config *cfg, arch_kind a, ftc_err *err) {
    ftc_status s = FTC_OK;
    int64_t C = cfg->hidden_size, F = cfg->intermediate_size, V = cfg->vocab_size, L = cfg->n_layers;
    int64_t KVD = (int64_t)cfg->n_kv_heads * cfg->head_dim;
    char hf[200], gg[128];
    if (a == A_GPT2) {
        /* GPT2LMHeadModel's names carry "transformer."; a bare GPT2Model checkpoint's do not */
        const char *p = ftc_st_find(c->st, "transformer.wte.weight") ? "transformer." : "";
        c->head = "token_embd.weight"; /* GPT-2's head is its token table */
        snprintf(hf, sizeof hf, "%swte.weight", p);
        if ((s = add(c, hf, "token_embd.weight", 2, (int64_t[]){V, C}, AS_IS, false, err))) return s;
        snprintf(hf, sizeof hf, "%swpe.weight", p);
        if ((s = add(c, hf, "position_embd.weight", 2, (int64_t[]){cfg->max_positions, C}, AS_IS, false, err))) return s;
        static const struct { const char *hf, *g; int kind; } M[] = {
            {"ln_1", "attn_norm", 0}, {"attn.c_attn", "attn_qkv", 1}, {"attn.c_proj", "attn_output", 2},
            {"ln_2", "ffn_norm", 0},  {"mlp.c_fc", "ffn_up", 3},      {"mlp.c_proj", "ffn_down", 4}};
        for (int64_t i = 0; i < L; i++)
            for (size_t k = 0; k < sizeof M / sizeof *M; k++) {
                int kind = M[k].kind;
                int64_t out = kind == 1 ? 3 * C : kind == 3 ? F : C, in = kind == 4 ? F : C;
                snprintf(hf, sizeof hf, "%sh.%lld.%s.weight", p, (long long)i, M[k].hf);
                snprintf(gg, sizeof gg, "blk.%lld.%s.weight", (long long)i, M[k].g);
                if (kind == 0) s = add(c, hf, gg, 1, (int64_t[]){C}, AS_IS, false, err);
                else s = add(c, hf, gg, 2, (int64_t[]){out, in}, TRANSPOSE, false, err);
                snprintf(hf, sizeof hf, "%sh.%lld.%s.bias", p, (long long)i, M[k].hf);
                snprintf(gg, sizeof gg, "blk.%lld.%s.bias", (long long)i, M[k].g);
                if (!s) s = add(c, hf, gg, 1, (int64_t[]){out}, AS_IS, false, err);
                if (s) return s;
            }
        snprintf(hf, sizeof hf, "%sln_f.weight", p);
        if ((s = add(c, hf, "output_norm.weight", 1, (int64_t[]){C}, AS_IS, false, err))) return s;
        snprintf(hf, sizeof hf, "%sln_f.bias", p);
        return add(c, hf, "output_norm.bias", 1, (int64_t[]){C}, AS_IS, false, err);
    }
    bool llama = a == A_LLAMA;
    if (cfg->tie_word_embeddings && !ftc_st_find(c->st, "lm_head.weight")) c->head = "token_embd.weight";
    if ((s = add(c, "model.embed_tokens.weight", "token_embd.weight", 2, (int64_t[]){V, C}, AS_IS, false, err))) return s;
    static const struct { const char *hf, *g; int kind; } M[] = {
        {"input_layernorm", "attn_norm", 0}, {"self_attn.q_proj", "attn_q", 1}, {"self_attn.k_proj", "attn_k", 2},
        {"self_attn.v_proj", "attn_v", 3},   {"self_attn.o_proj", "attn_output", 4},
        {"post_attention_layernorm", "ffn_norm", 0}, {"mlp.gate_proj", "ffn_gate", 5}, {"mlp.up_proj", "ffn_up", 5},
        {"mlp.down_proj", "ffn_down", 6}};
    for (int64_t i = 0; i < L; i++)
        for (size_t k = 0; k < sizeof M / sizeof *M; k++) {
            int kind = M[k].kind;
            int64_t out = kind == 0 || kind == 1 || kind == 4 || kind == 6 ? C : kind <= 3 ? KVD : F;
            int64_t in = kind == 6 ? F : C;
            fix how = llama && kind == 1 ? PERMUTE_Q : llama && kind == 2 ? PERMUTE_K : AS_IS;
            snprintf(hf, sizeof hf, "model.layers.%lld.%s.weight", (long long)i, M[k].hf);
            snprintf(gg, sizeof gg, "blk.%lld.%s.weight", (long long)i, M[k].g);
            if (kind == 0) s = add(c, hf, gg, 1, (int64_t[]){C}, AS_IS, false, err);
            else s = add(c, hf, gg, 2, (int64_t[]){out, in}, how, false, err);
            if (!s && kind >= 1 && kind <= 4) { /* biases: Qwen2 q/k/v always, Llama with attention_bias */
                snprintf(hf, sizeof hf, "model.layers.%lld.%s.bias", (long long)i, M[k].hf);
                snprintf(gg, sizeof gg, "blk.%lld.%s.bias", (long long)i, M[k].g);
                s = add(c, hf, gg, 1, (int64_t[]){out}, how, !(a == A_QWEN2 && kind <= 3), err);
            }
            if (s) return s;
        }
    if ((s = add(c, "model.norm.weight", "output_norm.weight", 1, (int64_t[]){C}, AS_IS, false, err))) return s;
    if (!cfg->tie_word_embeddings || ftc_st_find(c->st, "lm_head.weight"))
        s = add(c, "lm_head.weight", "output.weight", 2, (int64_t[]){V, C}, AS_IS, cfg->tie_word_embeddings, err);
    return s;
}

/* ---- tokenizer ---- */
#define RE_LLAMA3 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static const char *jstr(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static bool is_bytelevel(json_t *p, int use_regex) {
    if (!p || strcmp(jstr(p, "type") ? jstr(p, "type") : "", "ByteLevel")) return false;
    json_t *r = json_object_get(p, "use_regex");
    bool re = r ? json_is_true(r) : true;
    return use_regex < 0 || re == (bool)use_regex;
}

/* llama.cpp's tokenizer.ggml.pre for a byte-level pre-tokenizer, recognised by structure: the names whose
 * pre-tokenization ftc's GGUF reader maps back to the same HF pre-tokenizer (gguf_hf.c); NULL if none. */
static const char *pre_name(json_t *pt, json_t *norm) {
    if (is_bytelevel(pt, 1)) return json_is_null(norm) || !norm ? "gpt2" : NULL;
    if (!pt || strcmp(jstr(pt, "type") ? jstr(pt, "type") : "", "Sequence")) return NULL;
    json_t *seq = json_object_get(pt, "pretokenizers");
    if (json_array_size(seq) != 2) return NULL;
    json_t *a = json_array_get(seq, 0), *b = json_array_get(seq, 1);
    const char *at = jstr(a, "type") ? jstr(a, "type") : "";
    if (!strcmp(at, "Digits") && json_is_true(json_object_get(a, "individual_digits")) && is_bytelevel(b, 1))
        return "smollm";
    if (!strcmp(at, "Split") && is_bytelevel(b, 0)) {
        const char *re = jstr(json_object_get(a, "pattern"), "Regex");
        if (re && !strcmp(re, RE_LLAMA3)) return "llama-bpe";
        const char *nt = norm ? jstr(norm, "type") : NULL;
        if (re && !strcmp(re, RE_QWEN2) && nt && !strcmp(nt, "NFC")) return "qwen2";
    }
    return NULL;
}

/* A special token's text in tokenizer_config.json: a string or {"content": ...}. */
static const char *special_text(json_t *tcfg, const char *key) {
    json_t *v = json_object_get(tcfg, key);
    return json_is_string(v) ? json_string_value(v) : json_is_object(v) ? jstr(v, "content") : NULL;
}

typedef struct {
    char **tok;
    int32_t *type;
    float *score;
    int64_t n;
    json_t *ids; /* text -> id over vocab and added tokens */
} vocab;

static void vocab_free(vocab *v) {
    if (v->tok)
        for (int64_t i = 0; i < v->n; i++) free(v->tok[i]);
    free(v->tok), free(v->type), free(v->score);
    json_decref(v->ids);
}

static int64_t id_of(const vocab *v, const char *text) {
    json_t *i = text ? json_object_get(v->ids, text) : NULL;
    return i ? (int64_t)json_integer_value(i) : -1;
}

static bool is_byte_token(const char *t) {
    return strlen(t) == 6 && !strncmp(t, "<0x", 3) && t[5] == '>';
}

static ftc_status add_tokenizer(ftc_gguf_writer *w, const char *dir, const ftc_model_config *cfg, ftc_err *err) {
    char path[4400];
    json_t *tj = NULL, *tcfg = NULL;
    vocab v = {0};
    char **mstr = NULL;
    size_t nm = 0;
    ftc_chat_template *ct = NULL;
    char *eot = NULL;
    ftc_status s = FTC_OK;
    if (!ftc_path_join(path, sizeof path, dir, "tokenizer.json")) return ftc_errf(err, FTC_E_USAGE, "path too long: %s", dir);
    CHECK(ftc_json_load_object(path, &tj, err));
    if (!ftc_path_join(path, sizeof path, dir, "tokenizer_config.json")) { s = ftc_errf(err, FTC_E_USAGE, "path too long"); goto done; }
    if (ftc_file_exists(path)) CHECK(ftc_json_load_object(path, &tcfg, err));
    else tcfg = json_object();
    json_t *model = json_object_get(tj, "model"), *vj = json_object_get(model, "vocab");
    const char *mtype = jstr(model, "type");
    if (!mtype || strcmp(mtype, "BPE") || !json_is_object(vj)) {
        s = ftc_errf(err, FTC_E_UNSUPPORTED, "%s/tokenizer.json: model type '%s': GGUF export supports BPE tokenizers "
                     "(byte-level or SentencePiece-style with byte fallback)", dir, mtype ? mtype : "?");
        goto done;
    }
    bool spm = json_is_true(json_object_get(model, "byte_fallback"));
    const char *pre = NULL;
    if (!spm) {
        pre = pre_name(json_object_get(tj, "pre_tokenizer"), json_object_get(tj, "normalizer"));
        if (!pre) {
            char *d = json_dumps(json_object_get(tj, "pre_tokenizer"), JSON_COMPACT);
            s = ftc_errf(err, FTC_E_UNSUPPORTED, "%s/tokenizer.json: pre-tokenizer %.300s has no llama.cpp name ftc knows "
                         "(gpt2, smollm, llama-bpe, qwen2): llama.cpp would split text differently than the model was "
                         "trained on", dir, d ? d : "?");
            free(d);
            goto done;
        }
    }
    /* ids: vocabulary, then added tokens; the size is the embedding's (padded with [PADi] as llama.cpp does) */
    v.ids = json_object();
    int64_t n = cfg->vocab_size;
    const char *k;
    json_t *val;
    json_object_foreach(vj, k, val) {
        int64_t id = json_integer_value(val);
        if (id < 0 || id > (1 << 24)) { s = ftc_errf(err, FTC_E_INPUT, "%s/tokenizer.json: token '%s' has id %lld", dir, k, (long long)id); goto done; }
        if (id >= n) n = id + 1;
    }
    json_t *added = json_object_get(tj, "added_tokens");
    size_t ai;
    json_array_foreach(added, ai, val) {
        int64_t id = json_integer_value(json_object_get(val, "id"));
        if (id < 0 || id > (1 << 24) || !jstr(val, "content")) { s = ftc_errf(err, FTC_E_INPUT, "%s/tokenizer.json: added token %zu is malformed", dir, ai); goto done; }
        if (id >= n) n = id + 1;
    }
    if (n > cfg->vocab_size) {
        s = ftc_errf(err, FTC_E_INPUT, "%s/tokenizer.json: token id %lld is outside the model's vocabulary of %d "
                     "(config.json vocab_size): llama.cpp needs one embedding row per token", dir, (long long)(n - 1),
                     cfg->vocab_size);
        goto done;
    }
    v.n = n;
    v.tok = calloc((size_t)n, sizeof *v.tok);
    v.type = malloc(sizeof *v.type * (size_t)n);
    v.score = malloc(sizeof *v.score * (size_t)n);
    if (!v.tok || !v.type || !v.score) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); goto done; }
    json_object_foreach(vj, k, val) {
        int64_t id = json_integer_value(val);
        free(v.tok[id]);
        v.tok[id] = strdup(k);
        v.type[id] = spm && is_byte_token(k) ? TT_BYTE : TT_NORMAL;
        json_object_set_new(v.ids, k, json_integer(id));
    }
    json_array_foreach(added, ai, val) {
        int64_t id = json_integer_value(json_object_get(val, "id"));
        free(v.tok[id]);
        v.tok[id] = strdup(jstr(val, "content"));
        v.type[id] = json_is_true(json_object_get(val, "special")) ? TT_CONTROL : TT_USER;
        json_object_set_new(v.ids, v.tok[id], json_integer(id));
    }
    for (int64_t i = 0; i < n; i++) {
        v.score[i] = 0;
        if (!v.tok[i]) {
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%lld]", (long long)i);
            v.tok[i] = strdup(pad);
            v.type[i] = TT_UNUSED;
        }
        if (!v.tok[i]) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); goto done; }
    }
    /* merges: "a b" strings or [a, b] pairs */
    json_t *mj = json_object_get(model, "merges");
    nm = json_array_size(mj);
    mstr = calloc(nm ? nm : 1, sizeof *mstr);
    if (!mstr) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); goto done; }
    for (size_t i = 0; i < nm; i++) {
        json_t *m = json_array_get(mj, i);
        if (json_is_string(m)) mstr[i] = strdup(json_string_value(m));
        else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                 json_is_string(json_array_get(m, 1))) {
            const char *a = json_string_value(json_array_get(m, 0)), *b = json_string_value(json_array_get(m, 1));
            size_t la = strlen(a), lb = strlen(b);
            if ((mstr[i] = malloc(la + lb + 2))) memcpy(mstr[i], a, la), mstr[i][la] = ' ', memcpy(mstr[i] + la + 1, b, lb + 1);
        } else { s = ftc_errf(err, FTC_E_INPUT, "%s/tokenizer.json: merge %zu is neither \"a b\" nor [a, b]", dir, i); goto done; }
        if (!mstr[i]) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); goto done; }
    }
    if (spm) {
        /* llama.cpp's SentencePiece tokenizer merges the adjacent pair whose joined piece has the highest score:
         * the piece made by merge r scores -r (its first merge), so the order is the merges' order */
        for (size_t r = nm; r-- > 0;) {
            char *sp = strchr(mstr[r], ' ');
            if (!sp) continue;
            size_t la = (size_t)(sp - mstr[r]);
            char *joined = malloc(strlen(mstr[r]));
            if (!joined) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); goto done; }
            memcpy(joined, mstr[r], la);
            strcpy(joined + la, sp + 1);
            int64_t id = id_of(&v, joined);
            free(joined);
            if (id >= 0) v.score[id] = -(float)r;
        }
    }
    /* special ids: tokenizer_config.json's texts, else config.json's ids */
    int64_t bos = id_of(&v, special_text(tcfg, "bos_token")), eos = id_of(&v, special_text(tcfg, "eos_token")),
            unk = id_of(&v, special_text(tcfg, "unk_token")), pad = id_of(&v, special_text(tcfg, "pad_token"));
    if (unk < 0 && jstr(model, "unk_token")) unk = id_of(&v, jstr(model, "unk_token"));
    if (bos < 0 && cfg->bos_token_id >= 0 && cfg->bos_token_id < n) bos = cfg->bos_token_id;
    if (eos < 0 && cfg->eos_token_id >= 0 && cfg->eos_token_id < n) eos = cfg->eos_token_id;
    if (pad < 0 && cfg->pad_token_id >= 0 && cfg->pad_token_id < n) pad = cfg->pad_token_id;
    if (spm) {
        if (unk >= 0) v.type[unk] = TT_UNKNOWN;
        if (bos >= 0) v.type[bos] = TT_CONTROL;
        if (eos >= 0) v.type[eos] = TT_CONTROL;
    }
    json_t *ab = json_object_get(tcfg, "add_bos_token"), *ae = json_object_get(tcfg, "add_eos_token");
    bool add_bos = json_is_boolean(ab) ? json_is_true(ab) : spm, add_eos = json_is_boolean(ae) && json_is_true(ae);

    CHECK(ftc_gguf_writer_set_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2", err));
    CHECK(ftc_gguf_writer_set_str(w, "tokenizer.ggml.pre", spm ? "default" : pre, err));
    CHECK(ftc_gguf_writer_set_strs(w, "tokenizer.ggml.tokens", (const char *const *)v.tok, (uint64_t)n, err));
    if (spm) CHECK(ftc_gguf_writer_set_f32s(w, "tokenizer.ggml.scores", v.score, (uint64_t)n, err));
    CHECK(ftc_gguf_writer_set_i32s(w, "tokenizer.ggml.token_type", v.type, (uint64_t)n, err));
    if (!spm) CHECK(ftc_gguf_writer_set_strs(w, "tokenizer.ggml.merges", (const char *const *)mstr, nm, err));
    if (bos >= 0) CHECK(ftc_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos, err));
    if (eos >= 0) CHECK(ftc_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos, err));
    if (unk >= 0) CHECK(ftc_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)unk, err));
    if (pad >= 0) CHECK(ftc_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad, err));
    CHECK(ftc_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos, err));
    CHECK(ftc_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", add_eos, err));
    if (spm) {
        json_t *norm = json_object_get(tj, "normalizer");
        char *d = json_dumps(norm, JSON_COMPACT);
        bool prefix = d && strstr(d, "\"Prepend\"");
        free(d);
        CHECK(ftc_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", prefix, err));
    }
    CHECK(ftc_chat_template_from_model_dir(dir, &ct, err));
    if (ct) {
        CHECK(ftc_gguf_writer_set_str(w, "tokenizer.chat_template", ftc_chat_template_source(ct), err));
        /* the end-of-turn token, so generation stops after an answer (llama.cpp also guesses it by text) */
        ftc_render_opts ro = {.bos = bos >= 0 ? v.tok[bos] : NULL, .eos = eos >= 0 ? v.tok[eos] : NULL};
        ftc_err e2;
        if (ftc_chat_template_end_of_turn(ct, &ro, &eot, &e2) == FTC_OK && eot) {
            int64_t id = id_of(&v, eot);
            if (id >= 0) CHECK(ftc_gguf_writer_set_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)id, err));
        }
    }
done:
    free(eot);
    ftc_chat_template_free(ct);
    for (size_t i = 0; mstr && i < nm; i++) free(mstr[i]);
    free(mstr);
    vocab_free(&v);
    json_decref(tj), json_decref(tcfg);
    return s;
}

static int file_type(int t) {
    switch (t) {
    case FTC_GGML_F16: return 1;
    case FTC_GGML_Q4_0: return 2;
    case FTC_GGML_Q4_1: return 3;
    case FTC_GGML_Q8_0: return 7;
    case FTC_GGML_Q4_K: return 14; /* MOSTLY_Q4_K_S */
    case FTC_GGML_BF16: return 32;
    default: return 0;
    }
}

/* general.size_label as gguf-py writes it: parameters rounded to K/M/B/T */
static void size_label(int64_t n, char *out, size_t len) {
    static const char *suf[] = {"K", "M", "B", "T"};
    double x = (double)n / 1e3;
    int i = 0;
    while (i < 3 && x >= 1e3) x /= 1e3, i++;
    if (x < 10 && i >= 2) snprintf(out, len, "%.1f%s", x, suf[i]);
    else snprintf(out, len, "%.0f%s", x, suf[i]);
}

ftc_status ftc_gguf_from_hf(const char *hf_dir, const char *out_path, const ftc_gguf_export_opts *o, ftc_err *err) {
    ftc_gguf_export_opts none = {0};
    if (!o) o = &none;
    int want = o->type;
    if (want != FTC_GGML_F32 && want != FTC_GGML_F16 && want != FTC_GGML_BF16 && want != FTC_GGML_Q8_0 &&
        want != FTC_GGML_Q4_0 && want != FTC_GGML_Q4_1 && want != FTC_GGML_Q4_K)
        return ftc_errf(err, FTC_E_USAGE, "GGUF export: type %d is not one of f32, f16, bf16, q8_0, q4_0, q4_1, q4_k",
                        want);
    ftc_model_config cfg;
    ftc_status s = ftc_config_load(hf_dir, &cfg, err);
    if (s) return s;
    ftc_st_set *st = NULL;
    ftc_gguf_writer *w = NULL;
    arch_kind a;
    const char *an;
    if (!strcmp(cfg.model_type, "llama") || !strcmp(cfg.model_type, "mistral")) a = A_LLAMA, an = "llama";
    else if (!strcmp(cfg.model_type, "qwen2")) a = A_QWEN2, an = "qwen2";
    else if (!strcmp(cfg.model_type, "gpt2")) a = A_GPT2, an = "gpt2";
    else {
        s = ftc_errf(err, FTC_E_UNSUPPORTED, "%s: model_type '%s': GGUF export supports llama, mistral, qwen2, gpt2",
                     hf_dir, cfg.model_type);
        goto done;
    }
    if (cfg.rope_scaling_type[0]) {
        s = ftc_errf(err, FTC_E_UNSUPPORTED, "%s: rope_scaling '%s' is not exported to GGUF yet", hf_dir, cfg.rope_scaling_type);
        goto done;
    }
    if (a != A_GPT2 && cfg.head_dim * cfg.n_heads != cfg.hidden_size) {
        s = ftc_errf(err, FTC_E_UNSUPPORTED, "%s: head_dim %d x %d heads differs from hidden_size %d", hf_dir,
                     cfg.head_dim, cfg.n_heads, cfg.hidden_size);
        goto done;
    }
    CHECK(ftc_st_open(hf_dir, &st, err));
    if (!(w = ftc_gguf_writer_new())) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); goto done; }
    /* tensors first (their count gives general.size_label); keys and tensors are separate lists in the file */
    bool block = want != FTC_GGML_F32 && want != FTC_GGML_F16 && want != FTC_GGML_BF16;
    tctx c = {st, w, hf_dir, want, o->as_base && block, "output.weight", cfg.n_heads, cfg.n_kv_heads, 0};
    CHECK(add_weights(&c, &cfg, a, err));
    char key[96], name[256], label[32];
    const char *base = strrchr(hf_dir, '/');
    snprintf(name, sizeof name, "%s", o->name ? o->name : base && base[1] ? base + 1 : hf_dir);
    size_label(c.n_params, label, sizeof label);
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", an, suffix), key)
    CHECK(ftc_gguf_writer_set_str(w, "general.architecture", an, err));
    CHECK(ftc_gguf_writer_set_str(w, "general.type", "model", err));
    CHECK(ftc_gguf_writer_set_str(w, "general.name", name, err));
    CHECK(ftc_gguf_writer_set_str(w, "general.size_label", label, err));
    CHECK(ftc_gguf_writer_set_u32(w, K("block_count"), (uint32_t)cfg.n_layers, err));
    CHECK(ftc_gguf_writer_set_u32(w, K("context_length"), (uint32_t)cfg.max_positions, err));
    CHECK(ftc_gguf_writer_set_u32(w, K("embedding_length"), (uint32_t)cfg.hidden_size, err));
    CHECK(ftc_gguf_writer_set_u32(w, K("feed_forward_length"), (uint32_t)cfg.intermediate_size, err));
    CHECK(ftc_gguf_writer_set_u32(w, K("attention.head_count"), (uint32_t)cfg.n_heads, err));
    if (a == A_GPT2) CHECK(ftc_gguf_writer_set_f32(w, K("attention.layer_norm_epsilon"), cfg.norm_eps, err));
    else {
        CHECK(ftc_gguf_writer_set_u32(w, K("attention.head_count_kv"), (uint32_t)cfg.n_kv_heads, err));
        CHECK(ftc_gguf_writer_set_f32(w, K("rope.freq_base"), cfg.rope_theta, err));
        CHECK(ftc_gguf_writer_set_f32(w, K("attention.layer_norm_rms_epsilon"), cfg.norm_eps, err));
    }
    CHECK(ftc_gguf_writer_set_u32(w, "general.file_type", (uint32_t)file_type(want), err));
    if (a == A_LLAMA) {
        CHECK(ftc_gguf_writer_set_u32(w, K("vocab_size"), (uint32_t)cfg.vocab_size, err));
        CHECK(ftc_gguf_writer_set_u32(w, K("rope.dimension_count"), (uint32_t)cfg.head_dim, err));
    }
#undef K
    CHECK(ftc_gguf_writer_set_u32(w, "general.quantization_version", 2, err));
    CHECK(add_tokenizer(w, hf_dir, &cfg, err));
    CHECK(ftc_gguf_writer_write(w, out_path, err));
done:
    ftc_gguf_writer_free(w);
    ftc_st_close(st);
    ftc_config_free(&cfg);
    return s;
}

/* ---- Ollama Modelfile ---- */
static const char *OLLAMA_CHATML =
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}{{- if ne .Role \"system\" }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}{{- end }}"
    "<|im_start|>assistant\n";
static const char *OLLAMA_LLAMA3 =
    "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{- range .Messages }}{{- if ne .Role \"system\" }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
    "{{ .Content }}<|eot_id|>{{ end }}{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n";

/* The text between open and close at the start of s (after an optional bos), malloc'd; NULL if absent. */
static char *between(const char *s, const char *bos, const char *open, const char *close) {
    if (strncmp(s, open, strlen(open)) && bos && *bos && !strncmp(s, bos, strlen(bos))) s += strlen(bos);
    if (strncmp(s, open, strlen(open))) return NULL;
    s += strlen(open);
    const char *e = strstr(s, close);
    return e ? strndup(s, (size_t)(e - s)) : NULL;
}

ftc_status ftc_gguf_write_modelfile(const char *hf_dir, const char *gguf_name, const char *out_path, const char **note,
                                    ftc_err *err) {
    *note = NULL;
    ftc_chat_template *ct = NULL;
    json_t *tcfg = NULL, *msgs = NULL;
    char *eot = NULL, *sys = NULL, *text = NULL, path[4400];
    ftc_rendered r = {0};
    ftc_status s = ftc_chat_template_from_model_dir(hf_dir, &ct, err);
    if (s) return s;
    if (ftc_path_join(path, sizeof path, hf_dir, "tokenizer_config.json") && ftc_file_exists(path))
        CHECK(ftc_json_load_object(path, &tcfg, err));
    const char *bos = tcfg ? special_text(tcfg, "bos_token") : NULL, *eos = tcfg ? special_text(tcfg, "eos_token") : NULL;
    const char *style = NULL, *tmpl = NULL;
    if (ct) {
        const char *src = ftc_chat_template_source(ct);
        if (strstr(src, "<|im_start|>")) style = "chatml", tmpl = OLLAMA_CHATML;
        else if (strstr(src, "<|start_header_id|>")) style = "llama3", tmpl = OLLAMA_LLAMA3;
        ftc_render_opts ro = {.bos = bos, .eos = eos, .add_generation_prompt = true};
        ftc_err e2;
        if (ftc_chat_template_end_of_turn(ct, &ro, &eot, &e2)) eot = NULL;
        /* the default system prompt the template writes when the conversation has none */
        msgs = json_pack("[{s:s, s:s}]", "role", "user", "content", "Hi");
        if (tmpl && msgs && !ftc_template_render_messages(ct, msgs, &ro, &r, &e2)) {
            if (!strcmp(style, "chatml")) sys = between(r.text, bos, "<|im_start|>system\n", "<|im_end|>");
            else sys = between(r.text, bos, "<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>");
        }
    }
    if (!tmpl) *note = ct ? "the chat template is neither ChatML nor Llama 3: no TEMPLATE written (Ollama uses the "
                            "GGUF's tokenizer.chat_template only for templates it knows)"
                          : "the model has no chat template: no TEMPLATE written";
    size_t cap = 4096 + (sys ? 2 * strlen(sys) : 0) + (eot ? strlen(eot) : 0) + (eos ? strlen(eos) : 0) + strlen(gguf_name);
    text = malloc(cap);
    if (!text) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); goto done; }
    size_t n = (size_t)snprintf(text, cap, "# Ollama: ollama create NAME -f %s\nFROM ./%s\n", strrchr(out_path, '/') ?
                                strrchr(out_path, '/') + 1 : out_path, gguf_name);
    if (tmpl) n += (size_t)snprintf(text + n, cap - n, "TEMPLATE \"\"\"%s\"\"\"\n", tmpl);
    if (sys && !strstr(sys, "\"\"\"")) n += (size_t)snprintf(text + n, cap - n, "SYSTEM \"\"\"%s\"\"\"\n", sys);
    const char *stops[2] = {eot, eos};
    for (int i = 0; i < 2; i++) {
        const char *t = stops[i];
        if (!t || !*t || strchr(t, '"') || (i == 1 && eot && !strcmp(t, eot))) continue;
        n += (size_t)snprintf(text + n, cap - n, "PARAMETER stop \"%s\"\n", t);
    }
    s = ftc_write_file_atomic(out_path, text, n, err);
done:
    ftc_rendered_free(&r);
    json_decref(msgs), json_decref(tcfg);
    free(eot), free(sys), free(text);
    ftc_chat_template_free(ct);
    return s;
}
