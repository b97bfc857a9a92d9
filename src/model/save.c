/* Saving in Hugging Face layout: config.json + model.safetensors (F32), names from the parameter table,
 * GPT-2 Conv1D weights transposed back to [in, out]. transformers' from_pretrained reads the result. */
#include "model_internal.h"
#include "ftc/quant.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *class_name(const ftc_model *m) {
    const char *t = m->cfg.model_type;
    bool gpt2 = !strcmp(t, "gpt2"), bert = !strcmp(t, "bert"), mistral = !strcmp(t, "mistral"),
         qwen = !strcmp(t, "qwen2");
    if (m->task == FTC_TASK_CLASSIFY)
        return gpt2 ? "GPT2ForSequenceClassification" : bert ? "BertForSequenceClassification"
               : mistral ? "MistralForSequenceClassification" : qwen ? "Qwen2ForSequenceClassification"
                         : "LlamaForSequenceClassification";
    if (m->task == FTC_TASK_CAUSAL_LM)
        return gpt2 ? "GPT2LMHeadModel" : mistral ? "MistralForCausalLM" : qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
    return gpt2 ? "GPT2Model" : bert ? "BertModel" : mistral ? "MistralModel" : qwen ? "Qwen2Model" : "LlamaModel";
}

/* Each returns non-zero when the entry could not be made (out of memory): config_from_struct and write_config
 * collect them in `bad`, so a config.json is never written with a key missing. */
static int set_real(json_t *o, const char *k, float v) { return json_object_set_new(o, k, json_real((double)v)); }
static int set_int(json_t *o, const char *k, int v) { return json_object_set_new(o, k, json_integer(v)); }
static int set_id(json_t *o, const char *k, int v) { return v >= 0 ? set_int(o, k, v) : 0; }

/* config.json for a model made by ftc_model_create (no file to start from). */
static json_t *config_from_struct(const ftc_model *m) {
    const ftc_model_config *c = &m->cfg;
    json_t *o = json_object();
    int bad = !o;
    bad |= json_object_set_new(o, "model_type", json_string(c->model_type));
    bad |= set_int(o, "vocab_size", c->vocab_size);
    bad |= set_real(o, "initializer_range", c->initializer_range);
    bad |= set_id(o, "bos_token_id", c->bos_token_id);
    bad |= set_id(o, "eos_token_id", c->eos_token_id);
    bad |= set_id(o, "pad_token_id", c->pad_token_id);
    const char *act = c->activation == FTC_ACT_GELU_TANH ? "gelu_new"
                      : c->activation == FTC_ACT_GELU_ERF ? "gelu" : c->activation == FTC_ACT_SILU ? "silu" : "relu";
    switch (c->family) {
    case FTC_FAMILY_GPT2:
        bad |= set_int(o, "n_embd", c->hidden_size), bad |= set_int(o, "n_layer", c->n_layers), bad |= set_int(o, "n_head", c->n_heads);
        bad |= set_int(o, "n_inner", c->intermediate_size), bad |= set_int(o, "n_positions", c->max_positions);
        bad |= set_real(o, "layer_norm_epsilon", c->norm_eps);
        bad |= json_object_set_new(o, "activation_function", json_string(act));
        bad |= set_real(o, "resid_pdrop", c->hidden_dropout), bad |= set_real(o, "embd_pdrop", c->hidden_dropout);
        bad |= set_real(o, "attn_pdrop", c->attention_dropout);
        break;
    case FTC_FAMILY_LLAMA:
        bad |= set_int(o, "hidden_size", c->hidden_size), bad |= set_int(o, "num_hidden_layers", c->n_layers);
        bad |= set_int(o, "num_attention_heads", c->n_heads), bad |= set_int(o, "num_key_value_heads", c->n_kv_heads);
        if (c->head_dim * c->n_heads != c->hidden_size) bad |= set_int(o, "head_dim", c->head_dim);
        bad |= set_int(o, "intermediate_size", c->intermediate_size), bad |= set_int(o, "max_position_embeddings", c->max_positions);
        bad |= set_real(o, "rms_norm_eps", c->norm_eps), bad |= set_real(o, "rope_theta", c->rope_theta);
        bad |= json_object_set_new(o, "hidden_act", json_string(act));
        bad |= json_object_set_new(o, "attention_bias", json_boolean(c->attention_bias));
        bad |= json_object_set_new(o, "mlp_bias", json_boolean(c->mlp_bias));
        bad |= set_real(o, "attention_dropout", c->attention_dropout);
        if (!strcmp(c->rope_scaling_type, "llama3")) {
            json_t *rs = json_object();
            bad |= json_object_set_new(rs, "rope_type", json_string("llama3"));
            bad |= set_real(rs, "factor", c->rope_scaling_factor), bad |= set_real(rs, "low_freq_factor", c->rope_low_freq_factor);
            bad |= set_real(rs, "high_freq_factor", c->rope_high_freq_factor);
            bad |= set_int(rs, "original_max_position_embeddings", c->rope_original_max_positions);
            bad |= json_object_set_new(o, "rope_scaling", rs);
        }
        break;
    case FTC_FAMILY_BERT:
        bad |= set_int(o, "hidden_size", c->hidden_size), bad |= set_int(o, "num_hidden_layers", c->n_layers);
        bad |= set_int(o, "num_attention_heads", c->n_heads), bad |= set_int(o, "intermediate_size", c->intermediate_size);
        bad |= set_int(o, "max_position_embeddings", c->max_positions), bad |= set_int(o, "type_vocab_size", c->type_vocab_size);
        bad |= set_real(o, "layer_norm_eps", c->norm_eps);
        bad |= json_object_set_new(o, "hidden_act", json_string(act));
        bad |= set_real(o, "hidden_dropout_prob", c->hidden_dropout);
        bad |= set_real(o, "attention_probs_dropout_prob", c->attention_dropout);
        break;
    }
    bad |= json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static ftc_status write_config(const ftc_model *m, const char *dir, ftc_err *err) {
    json_t *o = NULL;
    if (m->config_json) {
        json_error_t je;
        o = json_loads(m->config_json, 0, &je);
        if (!o && json_error_code(&je) == json_error_out_of_memory)
            return ftc_errf(err, FTC_E_NOMEM, "out of memory writing config.json");
    }
    if (!o) o = config_from_struct(m);
    if (!o) return ftc_errf(err, FTC_E_NOMEM, "out of memory writing config.json");
    int bad = 0;
    json_t *arch = json_array();
    bad |= json_array_append_new(arch, json_string(class_name(m)));
    bad |= json_object_set_new(o, "architectures", arch);
    if (m->task == FTC_TASK_CLASSIFY && m->num_labels > 0) {
        /* so that loading the saved classifier pools as it was trained (transformers ignores the key) */
        bad |= json_object_set_new(o, "ftc_pooling", json_string(m->pooling == FTC_POOL_MEAN ? "mean"
                                                          : m->pooling == FTC_POOL_CLS ? "cls" : "last"));
        json_t *id2label = json_object(), *label2id = json_object();
        bool named = m->cfg.num_labels == m->num_labels && m->cfg.id2label;
        for (int i = 0; i < m->num_labels; i++) {
            char key[16], def[32];
            snprintf(key, sizeof key, "%d", i);
            snprintf(def, sizeof def, "LABEL_%d", i);
            const char *label = named && m->cfg.id2label[i] ? m->cfg.id2label[i] : def;
            bad |= json_object_set_new(id2label, key, json_string(label));
            bad |= json_object_set_new(label2id, label, json_integer(i));
        }
        bad |= json_object_set_new(o, "id2label", id2label);
        bad |= json_object_set_new(o, "label2id", label2id);
    }
    char *text = bad ? NULL : json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!text) return ftc_errf(err, FTC_E_NOMEM, "out of memory writing config.json");
    char path[4200];
    ftc_status s = ftc_path_join(path, sizeof path, dir, "config.json")
                       ? ftc_write_file_atomic(path, text, strlen(text), err)
                       : ftc_errf(err, FTC_E_INPUT, "output path too long: %s", dir);
    free(text);
    return s;
}

/* Heads live outside the base model's prefix ("lm_head.weight", "classifier.weight", "score.weight"). */
static bool is_head(const char *name) {
    return !strncmp(name, "lm_head.", 8) || !strncmp(name, "classifier.", 11) || !strncmp(name, "score.", 6);
}

ftc_status ftc_model_save(const ftc_model *m, const char *dir, ftc_err *err) {
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].is_lora)
            return ftc_errf(err, FTC_E_USAGE, "the model has unmerged LoRA adapters (%s): merge them first, or export "
                            "the adapter", m->params[i].name);
    ftc_status s = ftc_mkdirs(dir, err);
    if (s) return s;
    /* a base model saved with a head needs the family prefix, or transformers would not find the head */
    const char *family_prefix = m->cfg.family == FTC_FAMILY_GPT2 ? "transformer."
                                : m->cfg.family == FTC_FAMILY_LLAMA ? "model." : "bert.";
    const char *add = !m->prefix[0] && m->task != FTC_TASK_ENCODE ? family_prefix : "";
    ftc_st_writer *w = ftc_st_writer_new();
    if (!w) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    s = ftc_st_writer_metadata(w, "format", "pt", err);
    /* Conv1D weights are written transposed from one scratch block that lives until the write (the writer
     * references F32 data instead of copying it) */
    int64_t tsize = 0;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].transposed || m->params[i].data_q) tsize += m->params[i].numel;
    float *tbuf = tsize ? malloc((size_t)tsize * sizeof(float)) : NULL;
    if (!s && tsize && !tbuf) s = ftc_errf(err, FTC_E_NOMEM, "out of memory saving %s", dir);
    float *tnext = tbuf;
    for (int i = 0; !s && i < m->n_params; i++) {
        const ftc_param *p = &m->params[i];
        char name[200];
        snprintf(name, sizeof name, "%s%s", is_head(p->name) ? "" : add, p->name);
        if (p->data_q) { /* a quantized frozen weight is written dequantized, as F32 */
            int64_t O = p->shape[0], I = p->numel / O;
            float *rows = p->transposed ? malloc((size_t)p->numel * sizeof(float)) : tnext;
            if (!rows) {
                s = ftc_errf(err, FTC_E_NOMEM, "out of memory saving %s", p->name);
                break;
            }
            ftc_dequantize_tensor(p->qtype, p->data_q, rows, O, I);
            int64_t fshape[2] = {I, O};
            if (p->transposed) { /* ours [out,in] -> file [in,out] */
                for (int64_t o = 0; o < O; o++)
                    for (int64_t k = 0; k < I; k++) tnext[k * O + o] = rows[o * I + k];
                free(rows);
            }
            s = ftc_st_writer_add(w, name, FTC_F32, p->ndim, p->transposed ? fshape : p->shape, tnext, err);
            tnext += p->numel;
            continue;
        }
        bool only16 = !p->data && p->data_bf16; /* a frozen weight stored in bf16 is written as BF16 */
        if (!p->transposed) {
            s = only16 ? ftc_st_writer_add(w, name, FTC_BF16, p->ndim, p->shape, p->data_bf16, err)
                       : ftc_st_writer_add(w, name, FTC_F32, p->ndim, p->shape, p->data, err);
            continue;
        }
        int64_t O = p->shape[0], I = p->shape[1], fshape[2] = {I, O}; /* ours [out,in] -> file [in,out] */
        if (only16) {
            uint16_t *t16 = (uint16_t *)tnext;
            for (int64_t o = 0; o < O; o++)
                for (int64_t k = 0; k < I; k++) t16[k * O + o] = p->data_bf16[o * I + k];
            s = ftc_st_writer_add(w, name, FTC_BF16, 2, fshape, t16, err);
        } else {
            for (int64_t o = 0; o < O; o++)
                for (int64_t k = 0; k < I; k++) tnext[k * O + o] = p->data[o * I + k];
            s = ftc_st_writer_add(w, name, FTC_F32, 2, fshape, tnext, err);
        }
        tnext += p->numel;
    }
    char path[4200];
    if (!s && !ftc_path_join(path, sizeof path, dir, "model.safetensors"))
        s = ftc_errf(err, FTC_E_INPUT, "output path too long: %s", dir);
    if (!s) s = ftc_st_writer_write(w, path, err);
    ftc_st_writer_free(w);
    free(tbuf);
    if (!s) s = write_config(m, dir, err);
    return s;
}
