/* Hugging Face config.json -> one model description for every family. The transformer block is
 * one piece of code parameterised by this struct (see src/model/). */
#ifndef FTC_HF_CONFIG_H
#define FTC_HF_CONFIG_H
#include <stdbool.h>
#include "ftc/status.h"

typedef enum { FTC_FAMILY_GPT2, FTC_FAMILY_LLAMA, FTC_FAMILY_BERT } ftc_family;
typedef enum { FTC_ACT_GELU_TANH, FTC_ACT_GELU_ERF, FTC_ACT_SILU, FTC_ACT_RELU } ftc_activation;

#define FTC_MAX_LABELS 1024
typedef struct {
    char model_type[32];      /* as in config.json: gpt2, llama, mistral, qwen2, bert */
    ftc_family family;
    char architecture[96];    /* architectures[0] if present, e.g. "BertModel", "LlamaForCausalLM" */
    int n_layers;             /* n_layer | num_hidden_layers */
    int hidden_size;          /* n_embd | hidden_size */
    int n_heads;              /* n_head | num_attention_heads */
    int n_kv_heads;           /* num_key_value_heads (GQA); = n_heads if absent */
    int head_dim;             /* hidden_size / n_heads unless config gives head_dim */
    int intermediate_size;    /* n_inner (default 4*hidden) | intermediate_size */
    int vocab_size;
    int max_positions;        /* n_positions | max_position_embeddings */
    int type_vocab_size;      /* BERT token types; 0 otherwise */
    float norm_eps;           /* layer_norm_epsilon | layer_norm_eps | rms_norm_eps */
    float rope_theta;         /* 10000 if absent (Llama family) */
    bool tie_word_embeddings; /* GPT-2 always true; Llama-family from config (default false) */
    bool attention_bias;      /* q/k/v/o biases: GPT-2, BERT true; Qwen2 q/k/v true, o false; Llama false */
    bool mlp_bias;
    ftc_activation activation;
    float hidden_dropout;     /* BERT hidden_dropout_prob, GPT-2 resid_pdrop (also used for embeddings) */
    float attention_dropout;  /* BERT attention_probs_dropout_prob, GPT-2 attn_pdrop, Llama attention_dropout */
    float initializer_range;  /* std of the normal init transformers uses (0.02 by default) */
    /* rope_scaling: none, or "llama3" with its parameters; other types are recorded and rejected by the model */
    char rope_scaling_type[32]; /* "" when config has no rope_scaling */
    float rope_scaling_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_positions;
    char pooling[8];          /* "ftc_pooling" written by ftc for a classifier: "cls", "mean", "last"; "" = family default */
    int sliding_window;       /* Mistral (default 4096) / Qwen2 with use_sliding_window: window size; 0 when off */
    int bos_token_id, eos_token_id, pad_token_id; /* -1 when absent */
    /* classification heads saved by ftc export / transformers *ForSequenceClassification */
    int num_labels;           /* 0 if no id2label */
    char **id2label;          /* num_labels strings, owned */
} ftc_model_config;

/* Reads DIR/config.json (or a path to a .json file). Unknown model_type: error listing the supported ones. */
ftc_status ftc_config_load(const char *path, ftc_model_config *cfg, ftc_err *err);
/* Same, from a JSON text (fuzzing, tests). */
ftc_status ftc_config_parse(const char *json, size_t len, const char *name_for_errors, ftc_model_config *cfg,
                            ftc_err *err);
void ftc_config_free(ftc_model_config *cfg);
const char *ftc_family_name(ftc_family f);
#endif
