/* ftc init --config CONFIG_JSON --out DIR: a randomly initialised model in Hugging Face layout
 * (config.json + model.safetensors), initialised as transformers does for the family. Benchmarks use it so
 * they need no downloaded weights; users use it to train a small model from scratch. */
#include "cli.h"
#include "ftc/base.h"
#include "base/base_internal.h"
#include "ftc/hf_config.h"
#include "ftc/model.h"
#include "ftc/safetensors.h"
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void init_help(FILE *out) {
    fprintf(out,
            "Usage: ftc init --config CONFIG_JSON --out DIR [--seed S] [--dtype f32|bf16] [--task TASK] [--force]\n\n"
            "Writes a randomly initialised model in Hugging Face layout: DIR/config.json and DIR/model.safetensors.\n"
            "Weights are drawn as transformers initialises the family: normal(0, initializer_range) for linear\n"
            "and embedding weights, zero biases, ones for norm scales.\n\n"
            "Options:\n"
            "  --config CONFIG_JSON  a config.json (model_type gpt2, llama, mistral, qwen2 or bert); examples in\n"
            "                        bench/configs/ (minilm-cls, gpt2-small, llama-1b)\n"
            "  --out DIR             output directory (created if missing)\n"
            "  --seed S              random seed (default 0); the same seed gives the same weights\n"
            "  --dtype f32|bf16      dtype of the stored weights (default f32); bf16 rounds to nearest even\n"
            "  --task TASK           causal-lm, classify or encode; default from the config's architectures\n"
            "                        (...ForSequenceClassification: classify with its id2label; ...LMHeadModel,\n"
            "                        ...ForCausalLM: causal-lm; otherwise causal-lm for GPT-2/Llama, encode for BERT)\n"
            "  --force               overwrite DIR/model.safetensors if it exists\n\n"
            "Every key of CONFIG_JSON is kept in DIR/config.json (torch_dtype is set to the stored dtype), so\n"
            "transformers builds the same model from DIR.\n"
            "\nExamples:\n"
            "  ftc init --config bench/configs/gpt2-small.json --out models/gpt2-random\n"
            "  ftc init --config bench/configs/llama-1b.json --dtype bf16 --out models/llama-1b\n");
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static ftc_task default_task(const ftc_model_config *cfg) {
    if (ends_with(cfg->architecture, "ForSequenceClassification")) return FTC_TASK_CLASSIFY;
    if (ends_with(cfg->architecture, "LMHeadModel") || ends_with(cfg->architecture, "ForCausalLM"))
        return FTC_TASK_CAUSAL_LM;
    return cfg->family == FTC_FAMILY_BERT ? FTC_TASK_ENCODE : FTC_TASK_CAUSAL_LM;
}

/* DIR/config.json as ftc_model_save wrote it, overlaid with every key of the user's config (dropouts,
 * initializer_range and whatever else ftc does not model), torch_dtype set to what is stored. */
static ftc_status write_merged_config(const char *user_path, const char *dir, const char *torch_dtype, ftc_err *err) {
    char saved_path[4096];
    if (!ftc_path_join(saved_path, sizeof saved_path, dir, "config.json"))
        return ftc_errf(err, FTC_E_USAGE, "%s: output path too long", dir);
    json_error_t je;
    json_t *user = ftc_json_load_file(user_path, 0, &je);
    if (!user || !json_is_object(user)) {
        json_decref(user);
        return ftc_errf(err, FTC_E_INPUT, "%s:%d: %s", user_path, je.line, user ? "not a JSON object" : je.text);
    }
    json_t *merged = ftc_json_load_file(saved_path, 0, &je);
    if (!merged || !json_is_object(merged)) {
        json_decref(merged);
        merged = json_object();
    }
    json_object_update(merged, user);
    json_decref(user);
    json_object_set_new(merged, "torch_dtype", json_string(torch_dtype));
    char *text = json_dumps(merged, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(merged);
    if (!text) return ftc_errf(err, FTC_E_NOMEM, "%s: out of memory", saved_path);
    size_t len = strlen(text);
    char *with_nl = realloc(text, len + 2);
    if (!with_nl) { free(text); return ftc_errf(err, FTC_E_NOMEM, "%s: out of memory", saved_path); }
    with_nl[len] = '\n';
    with_nl[len + 1] = '\0';
    ftc_status st = ftc_write_file_atomic(saved_path, with_nl, len + 1, err);
    free(with_nl);
    return st;
}

/* Rewrites DIR/model.safetensors with every F32 tensor stored as BF16 (round to nearest even), atomically.
 * The old file stays mapped until the new one has been renamed over it. */
static ftc_status convert_to_bf16(const char *dir, ftc_err *err) {
    char path[4096];
    if (!ftc_path_join(path, sizeof path, dir, "model.safetensors"))
        return ftc_errf(err, FTC_E_USAGE, "%s: output path too long", dir);
    ftc_st_set *set = NULL;
    ftc_status st = ftc_st_open(path, &set, err);
    if (st != FTC_OK) return st;
    ftc_st_writer *w = ftc_st_writer_new();
    float *buf = NULL;
    size_t buf_cap = 0;
    if (!w) { st = ftc_errf(err, FTC_E_NOMEM, "%s: out of memory", path); goto done; }
    st = ftc_st_writer_metadata(w, "format", "pt", err); /* transformers refuses files without it */
    for (int i = 0; st == FTC_OK && i < ftc_st_count(set); i++) {
        const ftc_tensor_view *t = ftc_st_get(set, i);
        if (t->dtype != FTC_F32) {
            st = ftc_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, err);
            continue;
        }
        if ((size_t)t->numel > buf_cap) {
            float *nb = realloc(buf, (size_t)t->numel * sizeof *buf);
            if (!nb) { st = ftc_errf(err, FTC_E_NOMEM, "%s: tensor %s: out of memory", path, t->name); break; }
            buf = nb;
            buf_cap = (size_t)t->numel;
        }
        st = ftc_tensor_to_f32(t, buf, err);
        if (st == FTC_OK) st = ftc_st_writer_add_f32_as(w, t->name, FTC_BF16, t->ndim, t->shape, buf, err);
    }
    if (st == FTC_OK) st = ftc_st_writer_write(w, path, err);
done:
    free(buf);
    ftc_st_writer_free(w);
    ftc_st_close(set);
    return st;
}

int cmd_init(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { init_help(stdout); return 0; }
    const char *config = NULL, *out = NULL, *dtype = "f32", *task_name = NULL;
    unsigned long long seed = 0;
    bool force = false;
    static const cli_opt opts[] = {{"config", false, NULL}, {"out", false, NULL}, {"seed", false, NULL},
                                   {"dtype", false, NULL}, {"task", false, NULL}, {"force", true, NULL}, {NULL, false, NULL}};
    cli_args p;
    cli_args_init(&p, "init", argc, argv, 1, opts, 0);
    const char *a, *v;
    int r;
    while ((r = cli_next(&p, &a, &v)) > 0) {
        if (!a) return cli_usage_error("init", "unexpected argument '%s'", v);
        if (!strcmp(a, "force")) force = cli_true(v);
        else if (!strcmp(a, "config")) config = v;
        else if (!strcmp(a, "out")) out = v;
        else if (!strcmp(a, "dtype")) dtype = v;
        else if (!strcmp(a, "task")) task_name = v;
        else {
            char *end;
            errno = 0;
            seed = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-')
                return cli_usage_error("init", "--seed '%s' is not a non-negative integer", v);
        }
    }
    if (r < 0) return 1;
    if (!config || !*config) return cli_usage_error("init", "--config CONFIG_JSON is required");
    if (!out || !*out) return cli_usage_error("init", "--out DIR is required");
    if (strcmp(dtype, "f32") && strcmp(dtype, "bf16"))
        return cli_usage_error("init", "--dtype must be f32 or bf16, not '%s'", dtype);

    ftc_err err;
    ftc_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (ftc_config_load(config, &cfg, &err) != FTC_OK) return cli_fail("init", &err);
    ftc_task task = default_task(&cfg);
    if (task_name) {
        if (!strcmp(task_name, "causal-lm")) task = FTC_TASK_CAUSAL_LM;
        else if (!strcmp(task_name, "classify")) task = FTC_TASK_CLASSIFY;
        else if (!strcmp(task_name, "encode")) task = FTC_TASK_ENCODE;
        else {
            ftc_config_free(&cfg);
            return cli_usage_error("init", "--task must be causal-lm, classify or encode, not '%s'", task_name);
        }
    }
    if (task == FTC_TASK_CLASSIFY && cfg.num_labels <= 0) {
        ftc_config_free(&cfg);
        ftc_errf(&err, FTC_E_INPUT, "%s: a classification model needs id2label (the class names) in the config",
                 config);
        return cli_fail("init", &err);
    }
    char st_path[4096];
    if (!ftc_path_join(st_path, sizeof st_path, out, "model.safetensors")) {
        ftc_config_free(&cfg);
        return cli_usage_error("init", "--out path too long");
    }
    if (!force && ftc_file_exists(st_path)) {
        ftc_config_free(&cfg);
        ftc_errf(&err, FTC_E_INPUT, "%s already exists (use --force to overwrite it)", st_path);
        return cli_fail("init", &err);
    }

    ftc_model *m = NULL;
    ftc_status st = ftc_model_create(&cfg, task, (uint64_t)seed, &m, &err);
    /* The head draws from its own seed so that the body's weights do not depend on the task. */
    if (st == FTC_OK && task == FTC_TASK_CLASSIFY)
        st = ftc_model_set_classifier(m, cfg.num_labels, FTC_POOL_CLS, (uint64_t)seed + 1, &err);
    if (st == FTC_OK) st = ftc_mkdirs(out, &err);
    if (st == FTC_OK) st = ftc_model_save(m, out, &err);
    if (st == FTC_OK && !strcmp(dtype, "bf16")) st = convert_to_bf16(out, &err);
    if (st == FTC_OK) st = write_merged_config(config, out, strcmp(dtype, "bf16") ? "float32" : "bfloat16", &err);
    int64_t n_params = st == FTC_OK ? ftc_model_count_params(m, false) : 0;
    ftc_model_free(m);
    if (st != FTC_OK) {
        ftc_config_free(&cfg);
        return cli_fail("init", &err);
    }
    printf("%s: %s %s, %lld parameters (%s, seed %llu) -> %s/config.json, %s\n", config, cfg.model_type,
           task == FTC_TASK_CLASSIFY ? "classify" : task == FTC_TASK_ENCODE ? "encode" : "causal-lm",
           (long long)n_params, dtype, seed, out, st_path);
    ftc_config_free(&cfg);
    return 0;
}
