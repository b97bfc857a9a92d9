/* ftc generate: continue a prompt with a causal LM (a model directory or a run directory), streaming the
 * generated text to standard output as tokens come. */
#include "cli.h"
#include "ftc/base.h"
#include "ftc/export.h"
#include "ftc/infer.h"
#include "ftc/quant.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "Usage: ftc generate --model DIR|RUNDIR --prompt TEXT [--max-tokens N] [--temperature T] [--top-k K]\n"
            "                    [--top-p P] [--seed S] [--stats] [--adapter DIR] [--precision fp32|bf16]\n"
            "                    [--base-dtype q8_0|q4_0|q4_1|q4_k|nf4|nf4dq] [--kv-type f16|f32|q8_0]\n\n"
            "Continues TEXT with the model and prints only the generated text, token by token as it is produced.\n"
            "The prompt is tokenized as Hugging Face's encode() does (BOS added for Llama-family tokenizers); an\n"
            "empty prompt starts from the BOS token alone. Generation stops at EOS, after N tokens or when the\n"
            "model's context is full. Keys and values of earlier positions are cached, so each token costs one\n"
            "position's forward pass.\n\n"
            "  --model DIR|RUNDIR  a model directory (config.json, *.safetensors, tokenizer files) or an ftc run\n"
            "                      directory (its model/, trained for causal-lm)\n"
            "  --adapter DIR       apply a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors)\n"
            "                      to the model first (merged)\n"
            "  --prompt TEXT       the text to continue (\"\" = start from BOS)\n"
            "  --max-tokens N      most tokens to generate (default 256)\n"
            "  --temperature T     0 = greedy, the most likely token each step (default); > 0 samples from\n"
            "                      softmax(logits / T)\n"
            "  --top-k K           sample only among the K most likely tokens (0 = all; default 0)\n"
            "  --top-p P           sample only from the smallest set of tokens whose probability reaches P\n"
            "                      (default 1 = all)\n"
            "  --seed S            sampling seed (default 0): the same seed gives the same text\n"
            "  --stats             print the token counts and speed to standard error at the end\n"
            "  --precision P       fp32 (default) or bf16: matmul weights kept in bf16 only (half the memory\n"
            "                      and half the bytes read per token), products in bf16 with f32 sums\n"
            "  --base-dtype Q      keep the matmul weights block-quantized (q8_0, q4_0, q4_1, q4_k, nf4, nf4dq), decoded\n"
            "                      as they are multiplied; the LM head (a tied one is the embedding table) in q8_0\n"
            "  --kv-type T         the cache of keys and values: f16 (default, as llama.cpp's: half the memory and\n"
            "                      reads of f32; logits within about 1e-2 of f32's), f32 (the keys and values as\n"
            "                      computed: the library's default, bit-exact with a full recompute) or q8_0\n"
            "                      (llama.cpp's -ctk q8_0 -ctv q8_0: blocks of 32 int8 and a scale, 53%% of f16's\n"
            "                      bytes; needs kv heads x head dim a multiple of 32)\n"
            "Exit codes: 0 ok, 1 usage error, 2 bad input (model, tokenizer), 3 internal error.\n"
            "\nExamples:\n"
            "  ftc generate stories260K --prompt \"Once upon a time\" --max-tokens 64\n"
            "  ftc generate runs/stories --prompt \"One day\" --temperature 0.8 --top-p 0.95 --seed 1 --stats\n");
}

typedef struct {
    ftc_text_stream ts;
    ftc_err err;
    bool failed;
} stream_ctx;

static bool on_token(void *p, int32_t id) {
    stream_ctx *c = p;
    char *piece;
    if (ftc_text_stream_push(&c->ts, id, &piece, &c->err)) {
        c->failed = true;
        return false;
    }
    fputs(piece, stdout);
    free(piece);
    return cli_check_stdout("generate") == 0; /* a failed write stops generation; the cause is printed once */
}

int cmd_generate(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *model = NULL, *prompt = NULL, *adapter = NULL;
    long max_tokens = 256, seed = 0;
    ftc_sampler sampler = {0.0f, 0, 1.0f};
    bool stats = false, bf16 = false;
    int qtype = -1;
    ftc_kv_type kv_type = CLI_KV_DEFAULT;
    static const cli_opt opts[] = {{"model", false, NULL},      {"prompt", false, NULL}, {"adapter", false, NULL},
                                   {"max-tokens", false, NULL}, {"stats", true, NULL},   {"precision", false, NULL},
                                   {"base-dtype", false, NULL}, {"kv-type", false, NULL}, CLI_SAMPLING_OPTS,
                                   {NULL, false, NULL}};
    cli_args p;
    cli_args_init(&p, "generate", argc, argv, 1, opts, CLI_HAS_POSITIONAL);
    const char *f, *v;
    int r;
    while ((r = cli_next(&p, &f, &v)) > 0) {
        int rc;
        if (!f && !model) { model = v; continue; } /* the model or run directory, positionally */
        if (!f) return cli_usage_error("generate", "unexpected argument '%s'", v);
        if (!strcmp(f, "model")) model = v;
        else if (!strcmp(f, "prompt")) prompt = v;
        else if (!strcmp(f, "adapter")) adapter = v;
        else if (!strcmp(f, "stats")) stats = cli_true(v);
        else if (!strcmp(f, "precision")) {
            if (strcmp(v, "fp32") && strcmp(v, "bf16"))
                return cli_usage_error("generate", "--precision takes fp32 or bf16, not '%s'", v);
            bf16 = !strcmp(v, "bf16");
        } else if (!strcmp(f, "kv-type")) {
            if (!ftc_kv_type_parse(v, &kv_type))
                return cli_usage_error("generate", "--kv-type takes " CLI_KV_TYPES ", not '%s'", v);
        } else if (!strcmp(f, "base-dtype")) {
            if ((qtype = ftc_quant_from_name(v)) < 0)
                return cli_usage_error("generate", "--base-dtype takes q8_0, q4_0, q4_1, q4_k, nf4 or nf4dq, not '%s'", v);
        }
        else if (!strcmp(f, "max-tokens")) {
            if (!cli_parse_long(v, 0, 1 << 24, &max_tokens))
                return cli_usage_error("generate", "--max-tokens needs an integer from 0 to %d, not '%s'", 1 << 24, v);
        } else if ((rc = cli_sampling_flag("generate", f, v, &sampler, &seed)) > 0) return rc;
    }
    if (r < 0) return 1;
    if (!model) return cli_usage_error("generate", "--model DIR|RUNDIR is required");
    if (!prompt) return cli_usage_error("generate", "--prompt TEXT is required (\"\" starts from BOS)");

    ftc_err err;
    ftc_infer_model im;
    if (ftc_infer_open(model, FTC_TASK_CAUSAL_LM, &im, &err)) return cli_fail("generate", &err);
    if ((adapter && (ftc_model_load_adapter(im.model, adapter, &err) || ftc_model_merge_lora(im.model, &err))) ||
        (bf16 && ftc_model_use_bf16_weights(im.model, &err)) ||
        (qtype >= 0 && ftc_model_use_quant_weights(im.model, qtype, &err))) {
        ftc_infer_close(&im);
        return cli_fail("generate", &err);
    }
    int rc = 0;
    ftc_ids ids = {0};
    ftc_kv_cache *cache = NULL;
    int32_t *out = NULL;
    stream_ctx sc = {0};
    const ftc_model_config *cfg = ftc_model_config_of(im.model);
    if (ftc_tokenizer_encode(im.tok, prompt, strlen(prompt), true, 0, &ids, &err)) {
        ftc_err_prefix(&err, "--prompt");
        rc = cli_fail("generate", &err);
        goto done;
    }
    if (ids.n == 0) { /* nothing to condition on: BOS, as transformers' generate() starts without input ids */
        int32_t bos = ftc_tokenizer_special(im.tok).bos;
        if (bos < 0) bos = cfg->bos_token_id;
        if (bos < 0 || bos >= cfg->vocab_size) {
            ftc_errf(&err, FTC_E_INPUT, "the prompt is empty and %s defines no BOS token to start from", model);
            rc = cli_fail("generate", &err);
            goto done;
        }
        ids.ids = malloc(sizeof *ids.ids);
        if (!ids.ids) {
            ftc_errf(&err, FTC_E_NOMEM, "out of memory");
            rc = cli_fail("generate", &err);
            goto done;
        }
        ids.ids[0] = bos, ids.n = 1, ids.cap = 1;
    }
    int n_prompt = (int)ids.n;
    if (n_prompt >= cfg->max_positions) {
        ftc_errf(&err, FTC_E_INPUT, "--prompt has %d tokens; the model's context is %d positions", n_prompt,
                 cfg->max_positions);
        rc = cli_fail("generate", &err);
        goto done;
    }
    if (max_tokens == 0) goto done;
    long room = (long)cfg->max_positions - n_prompt + 1; /* the last token is sampled, never fed */
    int want = (int)(max_tokens < room ? max_tokens : room);
    im.kv_type = kv_type;
    if ((rc = ftc_kv_cache_create_typed(im.model, n_prompt + want, im.kv_type, &cache, &err) ? cli_fail("generate", &err) : 0))
        goto done;
    out = malloc((size_t)want * sizeof *out);
    if (!out || ftc_text_stream_init(&sc.ts, im.tok, ids.ids, ids.n, &err)) {
        if (!out) ftc_errf(&err, FTC_E_NOMEM, "out of memory");
        rc = cli_fail("generate", &err);
        goto done;
    }
    int32_t stop[8];
    ftc_generate_opts o = {.max_new_tokens = want, .sampler = sampler, .seed = (uint64_t)seed, .stop_ids = stop,
                           .n_stop = ftc_infer_generate_stop_ids(&im, stop, 8), .on_token = on_token, .ctx = &sc};
    int n = 0;
    ftc_gen_stop why;
    double t0 = ftc_now();
    if (ftc_generate(im.model, cache, ids.ids, n_prompt, &o, out, &n, &why, &err)) {
        rc = cli_fail("generate", &err);
        goto done;
    }
    double dt = ftc_now() - t0;
    if (sc.failed) {
        rc = cli_fail("generate", &sc.err);
        goto done;
    }
    char *tail = NULL;
    if (ftc_text_stream_flush(&sc.ts, &tail, &err)) {
        rc = cli_fail("generate", &err);
        goto done;
    }
    fputs(tail, stdout);
    free(tail);
    if (isatty(STDOUT_FILENO)) fputc('\n', stdout); /* keep the shell prompt off the text; files get it exact */
    if ((rc = cli_check_stdout("generate"))) goto done;
    if (why == FTC_GEN_CONTEXT_FULL || (why == FTC_GEN_MAX_TOKENS && want < max_tokens))
        fprintf(stderr, "ftc generate: stopped after %d tokens: the model's context (%d positions) is full\n", n,
                cfg->max_positions);
    if (stats)
        fprintf(stderr, "ftc generate: prompt %d tokens, generated %d (%s) in %.3f s, %.1f tokens/s\n", n_prompt, n,
                why == FTC_GEN_STOP_TOKEN ? "stopped at EOS" : why == FTC_GEN_MAX_TOKENS ? "max tokens" : "context full",
                dt, dt > 0 ? n / dt : 0.0);
done:
    ftc_text_stream_free(&sc.ts);
    free(out);
    ftc_kv_cache_free(cache);
    ftc_ids_free(&ids);
    ftc_infer_close(&im);
    return rc;
}
