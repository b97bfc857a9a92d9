/* config.json -> ftc_model_config, with the defaults transformers uses per family. */
#include "ftc/hf_config.h"
#include "ftc/base.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *SUPPORTED = "gpt2, llama, mistral, qwen2, bert";

const char *ftc_family_name(ftc_family f) {
    switch (f) {
    case FTC_FAMILY_GPT2: return "gpt2";
    case FTC_FAMILY_LLAMA: return "llama";
    default: return "bert";
    }
}

typedef struct {
    json_t *root;
    const char *file;
    ftc_err *err;
    ftc_status st;
} reader;

/* Sizes above this are refused: no real model comes near, and products such as 4 * n_embd or
 * n_heads * head_dim then stay far inside int. */
#define MAX_DIM (1 << 24)

/* Integer field: the first of the names present; required unless def is given (has_def). */
static int get_int(reader *r, const char *a, const char *b, bool has_def, int def) {
    if (r->st) return 0;
    const char *names[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        if (!names[i]) continue;
        json_t *v = json_object_get(r->root, names[i]);
        if (!v || json_is_null(v)) continue;
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            r->st = ftc_errf(r->err, FTC_E_INPUT, "%s: field \"%s\" must be a non-negative integer", r->file, names[i]);
            return 0;
        }
        if (json_integer_value(v) > MAX_DIM) {
            r->st = ftc_errf(r->err, FTC_E_INPUT, "%s: field \"%s\" = %lld is too large (at most %d)", r->file,
                             names[i], (long long)json_integer_value(v), MAX_DIM);
            return 0;
        }
        return (int)json_integer_value(v);
    }
    if (!has_def) r->st = ftc_errf(r->err, FTC_E_INPUT, "%s: missing required field \"%s\"", r->file, a);
    return def;
}

static float get_float(reader *r, const char *a, const char *b, float def) {
    if (r->st) return 0;
    const char *names[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        if (!names[i]) continue;
        json_t *v = json_object_get(r->root, names[i]);
        if (!v || json_is_null(v)) continue;
        if (!json_is_number(v)) {
            r->st = ftc_errf(r->err, FTC_E_INPUT, "%s: field \"%s\" must be a number", r->file, names[i]);
            return 0;
        }
        return (float)json_number_value(v);
    }
    return def;
}

/* A float field that must lie in [lo, hi] (norm eps, dropout, rope theta): nonsense there gives NaNs later. */
static float get_float_in(reader *r, const char *name, float def, double lo, double hi) {
    float x = get_float(r, name, NULL, def);
    if (!r->st && !(x >= lo && x <= hi))
        r->st = ftc_errf(r->err, FTC_E_INPUT, "%s: field \"%s\" = %g is out of range [%g, %g]", r->file, name, x, lo, hi);
    return x;
}

static bool get_bool(reader *r, const char *name, bool def) {
    if (r->st) return def;
    json_t *v = json_object_get(r->root, name);
    if (!v || json_is_null(v)) return def;
    if (!json_is_boolean(v)) {
        r->st = ftc_errf(r->err, FTC_E_INPUT, "%s: field \"%s\" must be true or false", r->file, name);
        return def;
    }
    return json_is_true(v);
}

/* bos/eos/pad: an id, null (absent: the family's default), or a list of ids (Llama 3 eos) of which we keep the first. */
static int get_token_id(reader *r, const char *name, int def) {
    json_t *v = json_object_get(r->root, name);
    if (r->st || !v || json_is_null(v)) return def;
    if (json_is_array(v)) v = json_array_get(v, 0);
    if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > MAX_DIM) {
        r->st = ftc_errf(r->err, FTC_E_INPUT, "%s: field \"%s\" must be a token id (an integer, a list of them, or null)",
                         r->file, name);
        return def;
    }
    return (int)json_integer_value(v);
}

static ftc_activation parse_act(reader *r, const char *field, const char *def) {
    if (r->st) return FTC_ACT_GELU_ERF;
    json_t *v = json_object_get(r->root, field);
    if (v && !json_is_null(v) && !json_is_string(v)) {
        r->st = ftc_errf(r->err, FTC_E_INPUT, "%s: field \"%s\" must be a string", r->file, field);
        return FTC_ACT_GELU_ERF;
    }
    const char *a = json_is_string(v) ? json_string_value(v) : def;
    if (!strcmp(a, "gelu_new") || !strcmp(a, "gelu_pytorch_tanh") || !strcmp(a, "gelu_fast")) return FTC_ACT_GELU_TANH;
    if (!strcmp(a, "gelu")) return FTC_ACT_GELU_ERF;
    if (!strcmp(a, "silu") || !strcmp(a, "swish")) return FTC_ACT_SILU;
    if (!strcmp(a, "relu")) return FTC_ACT_RELU;
    r->st = ftc_errf(r->err, FTC_E_UNSUPPORTED, "%s: field \"%s\": unsupported activation \"%s\"", r->file, field, a);
    return FTC_ACT_GELU_ERF;
}

static void parse_labels(reader *r, ftc_model_config *c) {
    json_t *m = json_object_get(r->root, "id2label");
    if (r->st || !json_is_object(m) || json_object_size(m) == 0) return;
    size_t n = json_object_size(m);
    if (n > FTC_MAX_LABELS) {
        r->st = ftc_errf(r->err, FTC_E_INPUT, "%s: id2label has %zu labels (at most %d)", r->file, n, FTC_MAX_LABELS);
        return;
    }
    c->id2label = calloc(n, sizeof(char *));
    if (!c->id2label) { r->st = ftc_errf(r->err, FTC_E_NOMEM, "out of memory"); return; }
    c->num_labels = (int)n;
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) {
        char *end;
        long id = strtol(k, &end, 10);
        if (*k == 0 || *end || id < 0 || id >= (long)n || !json_is_string(v) || c->id2label[id]) {
            r->st = ftc_errf(r->err, FTC_E_INPUT, "%s: id2label must map each id 0..%zu to a string (bad key \"%s\")",
                             r->file, n - 1, k);
            return;
        }
        if (!(c->id2label[id] = strdup(json_string_value(v)))) {
            r->st = ftc_errf(r->err, FTC_E_NOMEM, "out of memory");
            return;
        }
    }
}

static void parse_rope_scaling(reader *r, ftc_model_config *c) {
    json_t *rs = json_object_get(r->root, "rope_scaling");
    if (r->st || !rs || json_is_null(rs)) return;
    json_t *t = json_object_get(rs, "rope_type");
    if (!json_is_string(t)) t = json_object_get(rs, "type");
    if (!json_is_object(rs) || !json_is_string(t)) {
        r->st = ftc_errf(r->err, FTC_E_INPUT, "%s: field \"rope_scaling\" must be an object with \"rope_type\"", r->file);
        return;
    }
    snprintf(c->rope_scaling_type, sizeof c->rope_scaling_type, "%s", json_string_value(t));
    reader sub = {rs, r->file, r->err, FTC_OK};
    c->rope_scaling_factor = get_float(&sub, "factor", NULL, 1.0f);
    c->rope_low_freq_factor = get_float(&sub, "low_freq_factor", NULL, 1.0f);
    c->rope_high_freq_factor = get_float(&sub, "high_freq_factor", NULL, 4.0f);
    c->rope_original_max_positions = get_int(&sub, "original_max_position_embeddings", NULL, true, 8192);
    r->st = sub.st;
}

ftc_status ftc_config_parse(const char *json, size_t len, const char *file, ftc_model_config *c, ftc_err *err) {
    memset(c, 0, sizeof *c);
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (!root && json_error_code(&jerr) == json_error_out_of_memory)
        return ftc_errf(err, FTC_E_NOMEM, "%s: out of memory while parsing JSON", file);
    if (!root)
        return ftc_errf(err, FTC_E_INPUT, "%s: line %d, column %d: not valid JSON: %s", file, jerr.line, jerr.column,
                        jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return ftc_errf(err, FTC_E_INPUT, "%s: not a JSON object", file);
    }
    reader r = {root, file, err, FTC_OK};
    json_t *mt = json_object_get(root, "model_type");
    if (!json_is_string(mt)) {
        json_decref(root);
        return ftc_errf(err, FTC_E_INPUT, "%s: missing field \"model_type\" (supported: %s)", file, SUPPORTED);
    }
    snprintf(c->model_type, sizeof c->model_type, "%s", json_string_value(mt));
    json_t *arch = json_array_get(json_object_get(root, "architectures"), 0);
    if (json_is_string(arch)) snprintf(c->architecture, sizeof c->architecture, "%s", json_string_value(arch));
    const char *t = c->model_type;
    if (!strcmp(t, "gpt2")) {
        c->family = FTC_FAMILY_GPT2;
        c->n_layers = get_int(&r, "n_layer", NULL, true, 12);
        c->hidden_size = get_int(&r, "n_embd", NULL, true, 768);
        c->n_heads = get_int(&r, "n_head", NULL, true, 12);
        c->intermediate_size = get_int(&r, "n_inner", NULL, true, 4 * c->hidden_size);
        c->vocab_size = get_int(&r, "vocab_size", NULL, true, 50257);
        c->max_positions = get_int(&r, "n_positions", NULL, true, 1024);
        c->norm_eps = get_float_in(&r, "layer_norm_epsilon", 1e-5f, 0, 1);
        c->activation = parse_act(&r, "activation_function", "gelu_new");
        c->tie_word_embeddings = get_bool(&r, "tie_word_embeddings", true);
        c->attention_bias = c->mlp_bias = true;
        c->hidden_dropout = get_float_in(&r, "resid_pdrop", 0.1f, 0, 1);
        c->attention_dropout = get_float_in(&r, "attn_pdrop", 0.1f, 0, 1);
        c->bos_token_id = get_token_id(&r, "bos_token_id", 50256);
        c->eos_token_id = get_token_id(&r, "eos_token_id", 50256);
    } else if (!strcmp(t, "llama") || !strcmp(t, "mistral") || !strcmp(t, "qwen2")) {
        c->family = FTC_FAMILY_LLAMA;
        c->n_layers = get_int(&r, "num_hidden_layers", NULL, false, 0);
        c->hidden_size = get_int(&r, "hidden_size", NULL, false, 0);
        c->n_heads = get_int(&r, "num_attention_heads", NULL, false, 0);
        c->intermediate_size = get_int(&r, "intermediate_size", NULL, false, 0);
        c->vocab_size = get_int(&r, "vocab_size", NULL, false, 0);
        bool qwen = !strcmp(t, "qwen2"), mistral = !strcmp(t, "mistral");
        /* transformers' defaults differ per model_type: LlamaConfig 2048, MistralConfig 4096 * 32, Qwen2Config 32768 */
        c->max_positions = get_int(&r, "max_position_embeddings", NULL, true, qwen ? 32768 : mistral ? 131072 : 2048);
        c->norm_eps = get_float_in(&r, "rms_norm_eps", 1e-6f, 0, 1);
        c->rope_theta = get_float_in(&r, "rope_theta", 10000.0f, 1e-3, 1e12);
        c->activation = parse_act(&r, "hidden_act", "silu");
        c->tie_word_embeddings = get_bool(&r, "tie_word_embeddings", false);
        c->attention_bias = get_bool(&r, "attention_bias", qwen); /* Qwen2: q/k/v biases, no o bias */
        c->mlp_bias = get_bool(&r, "mlp_bias", false);
        c->attention_dropout = get_float_in(&r, "attention_dropout", 0.0f, 0, 1);
        /* LlamaConfig and MistralConfig default to bos 1 / eos 2; Qwen2Config sets none */
        c->bos_token_id = get_token_id(&r, "bos_token_id", qwen ? -1 : 1);
        c->eos_token_id = get_token_id(&r, "eos_token_id", qwen ? -1 : 2);
        /* MistralConfig's default is 8 kv heads; Llama and Qwen2 fall back to num_attention_heads */
        c->n_kv_heads = get_int(&r, "num_key_value_heads", NULL, true, mistral ? 8 : c->n_heads);
        /* Mistral always uses its window (default 4096, null = off); Qwen2 only with use_sliding_window */
        if (mistral || (qwen && get_bool(&r, "use_sliding_window", false)))
            c->sliding_window = get_int(&r, "sliding_window", NULL, true, mistral && json_is_null(json_object_get(root, "sliding_window")) ? 0 : 4096);
        parse_rope_scaling(&r, c);
    } else if (!strcmp(t, "bert")) {
        c->family = FTC_FAMILY_BERT;
        c->n_layers = get_int(&r, "num_hidden_layers", NULL, false, 0);
        c->hidden_size = get_int(&r, "hidden_size", NULL, false, 0);
        c->n_heads = get_int(&r, "num_attention_heads", NULL, false, 0);
        c->intermediate_size = get_int(&r, "intermediate_size", NULL, false, 0);
        c->vocab_size = get_int(&r, "vocab_size", NULL, false, 0);
        c->max_positions = get_int(&r, "max_position_embeddings", NULL, true, 512);
        c->type_vocab_size = get_int(&r, "type_vocab_size", NULL, true, 2);
        c->norm_eps = get_float_in(&r, "layer_norm_eps", 1e-12f, 0, 1);
        c->activation = parse_act(&r, "hidden_act", "gelu");
        c->tie_word_embeddings = true; /* only matters for masked-LM heads, which we do not build */
        c->attention_bias = c->mlp_bias = true;
        c->hidden_dropout = get_float_in(&r, "hidden_dropout_prob", 0.1f, 0, 1);
        c->attention_dropout = get_float_in(&r, "attention_probs_dropout_prob", 0.1f, 0, 1);
        c->bos_token_id = get_token_id(&r, "bos_token_id", -1);
        c->eos_token_id = get_token_id(&r, "eos_token_id", -1);
        json_t *pe = json_object_get(root, "position_embedding_type");
        if (json_is_string(pe) && strcmp(json_string_value(pe), "absolute"))
            r.st = ftc_errf(err, FTC_E_UNSUPPORTED, "%s: field \"position_embedding_type\": unsupported \"%s\" "
                            "(only \"absolute\")", file, json_string_value(pe));
    } else {
        json_decref(root);
        return ftc_errf(err, FTC_E_UNSUPPORTED, "%s: unsupported model_type \"%s\" (supported: %s)", file, t, SUPPORTED);
    }
    if (c->family != FTC_FAMILY_LLAMA) c->n_kv_heads = c->n_heads;
    c->initializer_range = get_float_in(&r, "initializer_range", 0.02f, 0, 10);
    c->pad_token_id = get_token_id(&r, "pad_token_id", c->family == FTC_FAMILY_BERT ? 0 : -1); /* BertConfig: 0 */
    json_t *pool = json_object_get(root, "ftc_pooling");
    if (json_is_string(pool)) {
        const char *pv = json_string_value(pool);
        if (strcmp(pv, "cls") && strcmp(pv, "mean") && strcmp(pv, "last"))
            r.st = ftc_errf(err, FTC_E_INPUT, "%s: field \"ftc_pooling\" must be \"cls\", \"mean\" or \"last\"", file);
        else snprintf(c->pooling, sizeof c->pooling, "%s", pv);
    }
    parse_labels(&r, c);
    if (!r.st) {
        if (c->n_layers <= 0 || c->hidden_size <= 0 || c->n_heads <= 0 || c->vocab_size <= 0 ||
            c->intermediate_size <= 0 || c->max_positions <= 0)
            r.st = ftc_errf(err, FTC_E_INPUT, "%s: layers, hidden size, heads, vocab size, intermediate size and "
                            "max positions must all be positive", file);
        else if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads)
            r.st = ftc_errf(err, FTC_E_INPUT, "%s: num_key_value_heads (%d) must divide num_attention_heads (%d)", file,
                            c->n_kv_heads, c->n_heads);
    }
    if (!r.st) {
        /* Only the Llama family may give head_dim explicitly (then n_heads * head_dim may differ from hidden size);
         * otherwise the heads must split the hidden size evenly, as transformers requires. */
        json_t *hd = json_object_get(root, "head_dim");
        bool explicit_hd = c->family == FTC_FAMILY_LLAMA && hd && !json_is_null(hd);
        c->head_dim = explicit_hd ? get_int(&r, "head_dim", NULL, false, 0) : c->hidden_size / c->n_heads;
        if (!r.st && !explicit_hd && c->hidden_size % c->n_heads)
            r.st = ftc_errf(err, FTC_E_INPUT, "%s: hidden size %d is not divisible by %d heads", file, c->hidden_size,
                            c->n_heads);
        else if (!r.st && c->family == FTC_FAMILY_LLAMA && (c->head_dim <= 0 || c->head_dim % 2))
            r.st = ftc_errf(err, FTC_E_INPUT, "%s: head_dim %d must be positive and even (RoPE rotates pairs)", file,
                            c->head_dim);
    }
    json_decref(root);
    if (r.st) ftc_config_free(c);
    return r.st;
}

ftc_status ftc_config_load(const char *path, ftc_model_config *cfg, ftc_err *err) {
    char file[4096];
    if (ftc_is_dir(path)) {
        if (!ftc_path_join(file, sizeof file, path, "config.json")) return ftc_errf(err, FTC_E_INPUT, "path too long");
    } else snprintf(file, sizeof file, "%s", path);
    char *text;
    size_t len;
    ftc_status st = ftc_read_file(file, &text, &len, err);
    if (st) return st;
    st = ftc_config_parse(text, len, file, cfg, err);
    free(text);
    return st;
}

void ftc_config_free(ftc_model_config *c) {
    for (int i = 0; i < c->num_labels; i++) free(c->id2label ? c->id2label[i] : NULL);
    free(c->id2label);
    c->id2label = NULL;
    c->num_labels = 0;
}
