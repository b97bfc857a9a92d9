/* ftc eval --model DIR --data FILE [--json]: how well a model fits held-out data.
 * Today: plain text with a causal LM (mean NLL of every token after the first, perplexity).
 * Classification data (labelled JSONL/CSV -> accuracy, macro-F1) plugs in as another eval_* function
 * chosen in cmd_eval by the data and the model's task. */
#include "cli.h"
#include "ftc/base.h"
#include "ftc/export.h"
#include "ftc/hf_config.h"
#include "ftc/model.h"
#include "ftc/tokenizer.h"
#include "ftc/train.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "Usage: ftc eval --model DIR [--adapter DIR] --data FILE.txt [--context N] [--json]\n\n"
            "Evaluates a causal language model (GPT-2, Llama family) on plain text. The file is encoded as the\n"
            "model's tokenizer does by default (with BOS where it adds one) and split into windows of the\n"
            "model's context length; consecutive windows share one token so that every token after the first\n"
            "is predicted exactly once from the tokens before it (up to a window).\n\n"
            "  --model DIR    Hugging Face model directory (config.json, *.safetensors, tokenizer files)\n"
            "  --adapter DIR  apply a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) first\n"
            "  --data FILE    UTF-8 text file\n"
            "  --context N    window length (default and maximum: the model's context length)\n"
            "  --json         print {\"loss\", \"perplexity\", \"n_tokens\"} as JSON\n\n"
            "loss = mean negative log-likelihood (nats) over n_tokens predicted tokens; perplexity = exp(loss).\n");
}

typedef struct {
    double loss, perplexity;
    long n_tokens;
    int windows, context;
} lm_result;

/* Mean NLL of ids[1..n) given the preceding tokens, in windows of `context` sharing one token. */
static ftc_status eval_lm_ids(ftc_model *m, const int32_t *ids, size_t n, int context, lm_result *r, ftc_err *err) {
    memset(r, 0, sizeof *r);
    r->context = context;
    ftc_status s = ftc_model_reserve(m, 1, context, err);
    if (s) return s;
    double sum = 0;
    long counted = 0;
    for (size_t start = 0; start + 1 < n; start += (size_t)context - 1) {
        int len = (int)(n - start < (size_t)context ? n - start : (size_t)context);
        ftc_batch b = {1, len, ids + start, NULL, NULL, ids + start}; /* labels = ids: the model shifts */
        float loss;
        s = ftc_model_forward(m, &b, false, &loss, err);
        if (s) return s;
        sum += (double)loss * (len - 1);
        counted += len - 1;
        r->windows++;
    }
    r->n_tokens = counted;
    r->loss = sum / (double)counted;
    r->perplexity = exp(r->loss);
    return FTC_OK;
}

static int eval_lm_text(const char *model_dir, const char *adapter, const char *data, int context, bool as_json) {
    ftc_err err;
    ftc_model *m = NULL;
    ftc_tokenizer *tok = NULL;
    char *text = NULL;
    ftc_ids ids = {0};
    int rc = 0;
    if (ftc_model_load(model_dir, FTC_TASK_CAUSAL_LM, &m, &err)) { rc = cli_fail("eval", &err); goto done; }
    if (adapter && (ftc_model_load_adapter(m, adapter, &err) || ftc_model_merge_lora(m, &err))) {
        rc = cli_fail("eval", &err);
        goto done;
    }
    /* evaluation only: no gradient memory */
    for (int i = 0; i < ftc_model_n_params(m); i++) ftc_model_set_trainable(m, i, false);
    int max_ctx = ftc_model_config_of(m)->max_positions;
    if (context <= 0 || context > max_ctx) context = max_ctx;
    if (ftc_tokenizer_load(model_dir, &tok, &err)) { rc = cli_fail("eval", &err); goto done; }
    size_t len;
    if (ftc_read_file(data, &text, &len, &err)) { rc = cli_fail("eval", &err); goto done; }
    if (ftc_tokenizer_encode(tok, text, len, true, 0, &ids, &err)) {
        ftc_err_prefix(&err, "%s", data);
        rc = cli_fail("eval", &err);
        goto done;
    }
    if (ids.n < 2) {
        ftc_errf(&err, FTC_E_INPUT, "%s: %zu token(s): a loss needs at least two", data, ids.n);
        rc = cli_fail("eval", &err);
        goto done;
    }
    lm_result r;
    if (eval_lm_ids(m, ids.ids, ids.n, context, &r, &err)) { rc = cli_fail("eval", &err); goto done; }
    if (as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "loss", json_real(r.loss));
        json_object_set_new(o, "perplexity", json_real(r.perplexity));
        json_object_set_new(o, "n_tokens", json_integer(r.n_tokens));
        json_object_set_new(o, "windows", json_integer(r.windows));
        json_object_set_new(o, "context", json_integer(r.context));
        char *s = json_dumps(o, JSON_REAL_PRECISION(8));
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        printf("loss        %.4f\nperplexity  %.3f\ntokens      %ld (in %d window%s of up to %d)\n", r.loss,
               r.perplexity, r.n_tokens, r.windows, r.windows == 1 ? "" : "s", r.context);
    }
done:
    ftc_ids_free(&ids);
    free(text);
    ftc_tokenizer_free(tok);
    ftc_model_free(m);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { usage(stdout); return 0; }
    const char *model = NULL, *data = NULL, *adapter = NULL;
    bool as_json = false;
    int context = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) as_json = true;
        else if (!strcmp(a, "--model") || !strcmp(a, "--data") || !strcmp(a, "--context") || !strcmp(a, "--adapter")) {
            if (i + 1 >= argc) return cli_usage_error("eval", "%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--model")) model = v;
            else if (!strcmp(a, "--adapter")) adapter = v;
            else if (!strcmp(a, "--data")) data = v;
            else {
                char *end;
                long c = strtol(v, &end, 10);
                if (*end || c < 2 || c > 1 << 20) return cli_usage_error("eval", "--context must be an integer >= 2");
                context = (int)c;
            }
        } else return cli_usage_error("eval", "unknown argument '%s'", a);
    }
    if (!model) return cli_usage_error("eval", "missing --model DIR");
    if (!data) return cli_usage_error("eval", "missing --data FILE");
    if (ftc_is_run_dir(model)) return cli_eval_run_dir(model, data, as_json); /* an ftc train run directory */
    ftc_model_config cfg;
    ftc_err err;
    if (ftc_config_load(model, &cfg, &err)) return cli_fail("eval", &err);
    ftc_family fam = cfg.family;
    ftc_config_free(&cfg);
    if (fam == FTC_FAMILY_BERT) {
        ftc_errf(&err, FTC_E_UNSUPPORTED, "%s is a BERT-family encoder: text loss needs a causal LM (GPT-2, Llama "
                 "family); classification eval is not available yet", model);
        return cli_fail("eval", &err);
    }
    return eval_lm_text(model, adapter, data, context, as_json);
}
