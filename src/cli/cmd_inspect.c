/* ftc inspect DIR [--json]: what a model directory holds. */
#include "cli.h"
#include "ftc/base.h"
#include "ftc/hf_config.h"
#include "ftc/safetensors.h"
#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const char *TOKENIZER_FILES[] = {"tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                                        "merges.txt", "tokenizer.model", "special_tokens_map.json"};

static void usage(FILE *out) {
    fprintf(out, "Usage: ftc inspect DIR [--json]\n\n"
                 "Shows a Hugging Face model directory: family, model_type, layers, hidden size, heads, kv heads,\n"
                 "vocab size, context length, parameter count, dtypes and bytes on disk, tokenizer files.\n\n"
                 "  --json   machine-readable output (keys model_type, n_layers, hidden_size, n_heads,\n"
                 "           n_kv_heads, vocab_size, n_params, ...)\n"
            "\nExamples:\n"
            "  ftc inspect all-MiniLM-L6-v2\n"
            "  ftc inspect --json SmolLM2-135M-Instruct.Q4_1.gguf\n");
}

int cmd_inspect(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { usage(stdout); return 0; }
    const char *dir = NULL;
    bool as_json = false;
    static const cli_opt opts[] = {{"json", true, NULL}, {NULL, false, NULL}};
    cli_args p;
    cli_args_init(&p, "inspect", argc, argv, 1, opts, CLI_HAS_POSITIONAL);
    const char *a, *v;
    int r;
    while ((r = cli_next(&p, &a, &v)) > 0) {
        if (a) as_json = cli_true(v);
        else if (dir) return cli_usage_error("inspect", "more than one directory given");
        else dir = v;
    }
    if (r < 0) return 1;
    if (!dir) return cli_usage_error("inspect", "missing model directory");
    ftc_err err;
    ftc_model_config cfg;
    if (ftc_config_load(dir, &cfg, &err)) return cli_fail("inspect", &err);
    ftc_st_set *st;
    if (ftc_st_open(dir, &st, &err)) { ftc_config_free(&cfg); return cli_fail("inspect", &err); }
    int64_t n_params = 0, per_dtype[16] = {0}, dtype_bytes[16] = {0};
    for (int i = 0; i < ftc_st_count(st); i++) {
        const ftc_tensor_view *t = ftc_st_get(st, i);
        /* integer tensors are buffers (e.g. BERT position_ids), not parameters */
        if (t->dtype == FTC_F32 || t->dtype == FTC_F16 || t->dtype == FTC_BF16 || t->dtype == FTC_F64) n_params += t->numel;
        per_dtype[t->dtype] += t->numel;
        dtype_bytes[t->dtype] += (int64_t)t->nbytes;
    }
    json_t *o = json_object(), *dtypes = json_object(), *tok = json_array();
    json_object_set_new(o, "model_type", json_string(cfg.model_type));
    json_object_set_new(o, "family", json_string(ftc_family_name(cfg.family)));
    json_object_set_new(o, "architecture", json_string(cfg.architecture));
    json_object_set_new(o, "n_layers", json_integer(cfg.n_layers));
    json_object_set_new(o, "hidden_size", json_integer(cfg.hidden_size));
    json_object_set_new(o, "n_heads", json_integer(cfg.n_heads));
    json_object_set_new(o, "n_kv_heads", json_integer(cfg.n_kv_heads));
    json_object_set_new(o, "head_dim", json_integer(cfg.head_dim));
    json_object_set_new(o, "intermediate_size", json_integer(cfg.intermediate_size));
    json_object_set_new(o, "vocab_size", json_integer(cfg.vocab_size));
    json_object_set_new(o, "context_length", json_integer(cfg.max_positions));
    json_object_set_new(o, "n_params", json_integer(n_params));
    json_object_set_new(o, "n_tensors", json_integer(ftc_st_count(st)));
    json_object_set_new(o, "bytes_on_disk", json_integer((json_int_t)ftc_st_bytes_on_disk(st)));
    for (int d = 0; d < 16; d++)
        if (per_dtype[d]) json_object_set_new(dtypes, ftc_dtype_name((ftc_dtype)d), json_integer(per_dtype[d]));
    json_object_set_new(o, "dtypes", dtypes);
    json_t *dbytes = json_object(), *files = json_array();
    for (int d = 0; d < 16; d++)
        if (per_dtype[d]) json_object_set_new(dbytes, ftc_dtype_name((ftc_dtype)d), json_integer(dtype_bytes[d]));
    json_object_set_new(o, "dtype_bytes", dbytes);
    for (int i = 0, n = ftc_st_file_count(st); i < n; i++) {
        const char *p = ftc_st_file_path(st, i), *base = strrchr(p, '/');
        json_array_append_new(files, json_string(base ? base + 1 : p));
    }
    json_object_set_new(o, "safetensors_files", files);
    json_object_set_new(o, "tie_word_embeddings", json_boolean(cfg.tie_word_embeddings));
    json_object_set_new(o, "rope_scaling", cfg.rope_scaling_type[0] ? json_string(cfg.rope_scaling_type) : json_null());
    json_object_set_new(o, "sliding_window", json_integer(cfg.sliding_window));
    json_object_set_new(o, "num_labels", json_integer(cfg.num_labels));
    for (size_t i = 0; i < sizeof TOKENIZER_FILES / sizeof *TOKENIZER_FILES; i++) {
        char p[4096];
        if (ftc_path_join(p, sizeof p, dir, TOKENIZER_FILES[i]) && ftc_file_exists(p))
            json_array_append_new(tok, json_string(TOKENIZER_FILES[i]));
    }
    json_object_set_new(o, "tokenizer_files", tok);
    if (as_json) {
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
    } else {
        printf("%s\n  family          %s (model_type %s%s%s)\n", dir, ftc_family_name(cfg.family), cfg.model_type,
               cfg.architecture[0] ? ", " : "", cfg.architecture);
        printf("  layers          %d\n  hidden size     %d\n  heads           %d (kv heads %d, head dim %d)\n",
               cfg.n_layers, cfg.hidden_size, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim);
        printf("  ffn size        %d\n  vocab size      %d\n  context length  %d\n", cfg.intermediate_size,
               cfg.vocab_size, cfg.max_positions);
        printf("  parameters      %lld (%.1fM) in %d tensors\n", (long long)n_params, n_params / 1e6, ftc_st_count(st));
        printf("  on disk         %.1f MB;", ftc_st_bytes_on_disk(st) / 1e6);
        for (int d = 0; d < 16; d++)
            if (per_dtype[d])
                printf(" %s %lld values (%.1f MB)", ftc_dtype_name((ftc_dtype)d), (long long)per_dtype[d], dtype_bytes[d] / 1e6);
        printf(" in %d file(s)", ftc_st_file_count(st));
        if (cfg.rope_scaling_type[0]) printf("\n  rope scaling    %s", cfg.rope_scaling_type);
        if (cfg.num_labels) printf("\n  labels          %d", cfg.num_labels);
        printf("\n  tokenizer files");
        for (size_t i = 0; i < json_array_size(tok); i++) printf(" %s", json_string_value(json_array_get(tok, i)));
        if (!json_array_size(tok)) printf(" (none)");
        printf("\n");
    }
    json_decref(o);
    ftc_st_close(st);
    ftc_config_free(&cfg);
    return 0;
}
