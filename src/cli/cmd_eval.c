/* ftc eval --model DIR|RUNDIR --data FILE [--compare BASE_DIR] [--json]: how well a model fits held-out data.
 * A run directory (ftc train) is evaluated on data read as the run read its own, for its task (causal-lm:
 * loss, perplexity, token accuracy on the trained tokens; classify: accuracy, macro-F1, per class); that part
 * lives in eval_rundir.c. A plain HF directory is a causal LM evaluated on plain text (mean NLL of every token
 * after the first, perplexity). --compare puts the base model's numbers on the same data beside the tuned. */
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
            "Usage: ftc eval [--model] RUNDIR --data FILE [--compare [BASE_DIR]] [--json]\n"
            "       ftc eval [--model] CLASSIFIER_DIR --data FILE [--max-len N] [--compare BASE_DIR] [--json]\n"
            "       ftc eval [--model] DIR [--adapter DIR] --data FILE.txt [--context N] [--compare BASE_DIR] [--json]\n"
            "       ftc eval [--model] DIR [--adapter DIR] --data FILE.jsonl|.csv [--max-len N] [--compare BASE_DIR] [--json]\n\n"
            "Evaluates a tuned model on held-out data.\n\n"
            "A run directory (written by ftc train) is evaluated for the task it was trained for, on FILE read the\n"
            "way the run read its training data (same format detection, tokenizer, chat template, label map, max-len):\n"
            "  causal-lm  loss, perplexity and token accuracy on the trained (answer) tokens\n"
            "  classify   loss, accuracy, macro-F1 (and with --json per-class precision/recall/F1 and the confusion\n"
            "             matrix); labels must be ones the run knows (RUNDIR/labels.json)\n"
            "The result is also saved as RUNDIR/eval.json (with --compare both sides), which ftc report shows.\n\n"
            "A plain Hugging Face directory whose model is a classifier (config.json id2label and a classifier /\n"
            "score head: ftc export --format hf of a classify run, a transformers *ForSequenceClassification) is\n"
            "evaluated as classify runs are, on labelled data (any format ftc train reads for classify): string labels\n"
            "by name through id2label (an unknown label: exit 2), integer labels as class indices; its tokenizer,\n"
            "pooling from config.json \"ftc_pooling\" (else as ftc train --pooling auto picks it).\n"
            "Any other plain Hugging Face directory is evaluated as a causal language model (GPT-2, Llama family) on plain\n"
            "text: the file is encoded as the model's tokenizer does by default (with BOS where it adds one) and split\n"
            "into windows of the model's context length (or --context; a shorter text is one window of its own\n"
            "length); consecutive windows share one token so that every token after the first is predicted exactly\n"
            "once from the tokens before it (up to a window). It runs forward-only: memory grows linearly with the\n"
            "window (one layer's activations, no T x T attention matrix, no full logits). Structured data\n"
            "(.jsonl, .json, .csv, .tsv: prompt/completion, chat messages, text records) is scored as ftc train\n"
            "--task causal-lm would train on it with its defaults: the answer tokens only, the model's own chat\n"
            "template, examples cut at --max-len (default 128, as in training).\n\n"
            "  --model DIR|RUNDIR  an ftc run directory, or a Hugging Face model directory (config.json,\n"
            "                      *.safetensors, tokenizer files)\n"
            "  --adapter DIR       (plain directory) apply a PEFT LoRA adapter first\n"
            "  --data FILE         evaluation data (run, classifier directory: any format ftc train reads; other plain\n"
            "                      directory: UTF-8 text)\n"
            "  --max-len N         (classifier directory, structured data) tokens per example, longer ones cut\n"
            "                      (classifier default and maximum: the model's positions)\n"
            "  --context N         (plain directory) window length (default and maximum: the model's context)\n"
            "  --compare [BASE_DIR] also run the same data through the base model BASE_DIR (for a run, bare\n"
            "                      --compare: the model it was trained from) and print both side by\n"
            "                      side (metric | base | tuned | delta). causal-lm: BASE_DIR's own LM head (for a\n"
            "                      LoRA run or --adapter: the model without adapters). classify: the base model has\n"
            "                      no trained head, so its column is BASE_DIR's encoder with the tuned run's head\n"
            "                      (for a classifier directory: that directory's head). A run's own base is\n"
            "                      held as the run trained on it (--base-dtype q8_0..nf4dq, bf16, or auto on a\n"
            "                      GGUF: the file's types), and read after the tuned model is evaluated.\n"
            "                      BASE_DIR must have the tuned model's architecture and vocabulary (else exit 2)\n"
            "  --json              print JSON: run: {\"task\", \"loss\", \"n_examples\", ...; causal-lm \"perplexity\",\n"
            "                      \"token_accuracy\", \"n_tokens\"; classify \"accuracy\", \"macro_f1\", \"per_class\",\n"
            "                      \"confusion\"} (a classifier directory: the same); causal LM directory: {\"loss\",\n"
            "                      \"perplexity\", \"n_tokens\"}. With --compare the tuned keys stay at the top and \"base\"\n"
            "                      and \"tuned\" hold both sides\n\n"
            "loss = mean negative log-likelihood (nats) over the counted tokens or examples; perplexity = exp(loss).\n"
            "Details: docs/eval.md, docs/report.md (metrics), docs/train.md (run directories).\n\n"
            "Examples:\n"
            "  ftc eval runs/faq --data test.jsonl --compare        # a run against the model it was tuned from\n"
            "  ftc eval runs/intents --data test.csv --json          # accuracy, macro-F1, per class, confusion\n"
            "  ftc eval --model SmolLM2.gguf --data chats.jsonl      # a plain model on the answers of chat data\n"
            "  ftc eval --model gpt2 --data book.txt --context 512   # perplexity of plain text\n");
}

typedef struct {
    double loss, perplexity;
    long n_tokens;
    int windows, context;
} lm_result;

/* Tokens evaluated in one batch of windows (forward-only memory grows with it, not with T x T). */
enum { EVAL_BATCH_TOKENS = 4096 };

/* Mean NLL of ids[1..n) given the preceding tokens, in windows of up to `context` sharing one token. The window
 * is sized by the data (a short text plans for its own length, not the model's context); windows of equal
 * length run together in batches of about EVAL_BATCH_TOKENS tokens. The model runs forward-only and keeps
 * only the loss (ftc_model_set_loss_only): memory grows linearly with the window. */
static ftc_status eval_lm_ids(ftc_model *m, const int32_t *ids, size_t n, int context, lm_result *r, ftc_err *err) {
    memset(r, 0, sizeof *r);
    r->context = context;
    int win = n < (size_t)context ? (int)n : context;
    size_t step = (size_t)win - 1, nwin = (n - 2) / step + 1; /* windows start at 0, step, ... while start + 1 < n */
    size_t full = n >= (size_t)win ? (n - (size_t)win) / step + 1 : 0; /* windows of exactly win tokens */
    int maxb = win >= EVAL_BATCH_TOKENS ? 1 : EVAL_BATCH_TOKENS / win;
    if ((size_t)maxb > full) maxb = full > 0 ? (int)full : 1;
    ftc_status s = ftc_model_set_loss_only(m, true, err);
    if (!s) s = ftc_model_reserve(m, maxb, win, err);
    int32_t *buf = s ? NULL : malloc((size_t)maxb * win * sizeof *buf);
    if (!s && !buf) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    double sum = 0;
    long counted = 0;
    for (size_t w = 0; !s && w < nwin;) {
        size_t start = w * step;
        int len = (int)(n - start < (size_t)win ? n - start : (size_t)win), B = 0;
        /* this window and the following ones of the same length, up to maxb */
        for (; B < maxb && w + (size_t)B < nwin; B++) {
            size_t st = (w + (size_t)B) * step;
            if ((n - st < (size_t)win ? (int)(n - st) : win) != len) break;
            memcpy(buf + (size_t)B * len, ids + st, (size_t)len * sizeof *buf);
        }
        ftc_batch b = {B, len, buf, NULL, NULL, buf}; /* labels = ids: the model shifts */
        float loss;
        s = ftc_model_forward(m, &b, false, &loss, err);
        if (s) break;
        sum += (double)loss * B * (len - 1);
        counted += (long)B * (len - 1);
        r->windows += B;
        w += (size_t)B;
    }
    free(buf);
    if (s) return s;
    r->n_tokens = counted;
    r->loss = sum / (double)counted;
    r->perplexity = exp(r->loss);
    return FTC_OK;
}

/* Loads a causal LM for evaluation only (no gradient memory), with a PEFT adapter merged when given. */
static ftc_status load_lm(const char *dir, const char *adapter, ftc_model **m, ftc_err *err) {
    ftc_status s = ftc_model_load(dir, FTC_TASK_CAUSAL_LM, m, err);
    if (s == FTC_OK && adapter && ((s = ftc_model_load_adapter(*m, adapter, err)) || (s = ftc_model_merge_lora(*m, err))))
        return s;
    for (int i = 0; s == FTC_OK && i < ftc_model_n_params(*m); i++) ftc_model_set_trainable(*m, i, false);
    return s;
}

static json_t *lm_json(const lm_result *r) {
    json_t *o = json_object();
    json_object_set_new(o, "loss", json_real(r->loss));
    json_object_set_new(o, "perplexity", json_real(r->perplexity));
    json_object_set_new(o, "n_tokens", json_integer(r->n_tokens));
    json_object_set_new(o, "windows", json_integer(r->windows));
    json_object_set_new(o, "context", json_integer(r->context));
    return o;
}

/* The base model (compare) on the same ids, after checking it reads them as the tuned model does. */
/* The base model (--compare) for evaluation, after checking it reads token ids as the tuned model does. */
static ftc_status load_lm_base(const char *base_dir, const char *model_dir, const ftc_model *tuned, ftc_model **base,
                               ftc_err *err) {
    ftc_model_config bc;
    ftc_status s = ftc_config_load(base_dir, &bc, err);
    if (s) return ftc_err_prefix(err, "--compare");
    s = ftc_check_same_architecture(ftc_model_config_of(tuned), model_dir, &bc, base_dir, err);
    ftc_config_free(&bc);
    return s ? s : load_lm(base_dir, NULL, base, err);
}

static ftc_status eval_lm_base(const char *base_dir, const char *model_dir, const ftc_model *tuned, const ftc_ids *ids,
                               int context, lm_result *r, ftc_err *err) {
    ftc_model *m = NULL;
    ftc_status s = load_lm_base(base_dir, model_dir, tuned, &m, err);
    if (!s) s = eval_lm_ids(m, ids->ids, ids->n, context, r, err);
    ftc_model_free(m);
    return s;
}

static int eval_lm_text(const char *model_dir, const char *adapter, const char *data, int context, bool as_json,
                        const char *compare) {
    ftc_err err;
    ftc_model *m = NULL;
    ftc_tokenizer *tok = NULL;
    char *text = NULL;
    ftc_ids ids = {0};
    int rc = 0;
    if (load_lm(model_dir, adapter, &m, &err)) { rc = cli_fail("eval", &err); goto done; }
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
    lm_result r, rb;
    if (eval_lm_ids(m, ids.ids, ids.n, context, &r, &err)) { rc = cli_fail("eval", &err); goto done; }
    if (compare && eval_lm_base(compare, model_dir, m, &ids, context, &rb, &err)) {
        rc = cli_fail("eval", &err);
        goto done;
    }
    char note[FTC_PATH_MAX + 200];
    snprintf(note, sizeof note, "base = %s%s, on the same tokens", compare ? compare : "",
             adapter ? " (the model without the adapter)" : "");
    if (as_json) {
        json_t *o = lm_json(&r);
        if (compare) {
            json_object_set_new(o, "tuned", lm_json(&r));
            json_object_set_new(o, "base", lm_json(&rb));
            json_object_set_new(o, "base_model", json_string(compare));
            json_object_set_new(o, "base_note", json_string(note));
        }
        char *s = json_dumps(o, JSON_REAL_PRECISION(8));
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else if (compare) {
        printf("%s\ntuned = %s%s%s\n", note, model_dir, adapter ? " + adapter " : "", adapter ? adapter : "");
        printf("%-12s %12s %12s %12s\n", "metric", "base", "tuned", "delta");
        printf("%-12s %12.4f %12.4f %+12.4f\n", "loss", rb.loss, r.loss, r.loss - rb.loss);
        printf("%-12s %12.4f %12.4f %+12.4f\n", "perplexity", rb.perplexity, r.perplexity, r.perplexity - rb.perplexity);
        printf("%-12s %12ld %12ld\n", "tokens", rb.n_tokens, r.n_tokens);
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

/* Records rather than running text: what ftc train reads as examples (prompt/completion, messages, "text"). */
static bool is_structured(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot && (!strcmp(dot, ".jsonl") || !strcmp(dot, ".json") || !strcmp(dot, ".csv") || !strcmp(dot, ".tsv"));
}

/* A plain causal LM on structured data: the answer tokens training would score (ftc_model_eval_lm_data). */
static int eval_lm_data(const char *model_dir, const char *adapter, const char *data, int max_len, bool as_json,
                        const char *compare) {
    ftc_err err;
    ftc_model *m = NULL;
    json_t *j = NULL, *jb = NULL;
    int rc = 0;
    if (load_lm(model_dir, adapter, &m, &err) || ftc_model_eval_lm_data(m, model_dir, data, max_len, 0, &j, &err)) {
        rc = cli_fail("eval", &err);
        goto done;
    }
    if (compare) {
        ftc_model *b = NULL;
        ftc_status s = load_lm_base(compare, model_dir, m, &b, &err);
        ftc_model_free(m); /* the tuned model's part is done */
        m = NULL;
        if (!s) s = ftc_model_eval_lm_data(b, model_dir, data, max_len, 0, &jb, &err);
        ftc_model_free(b);
        if (s) { rc = cli_fail("eval", &err); goto done; }
    }
    char note[FTC_PATH_MAX + 200], tuned[2 * FTC_PATH_MAX + 16];
    snprintf(note, sizeof note, "base = %s%s, on the same examples (answer tokens, %s's tokenizer and chat template)",
             compare ? compare : "", adapter ? " (the model without the adapter)" : "", model_dir);
    snprintf(tuned, sizeof tuned, "%s%s%s", model_dir, adapter ? " + adapter " : "", adapter ? adapter : "");
    rc = cli_print_eval(j, jb, compare, note, tuned, as_json);
    j = jb = NULL;
done:
    json_decref(j);
    json_decref(jb);
    ftc_model_free(m);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { usage(stdout); return 0; }
    const char *model = NULL, *data = NULL, *adapter = NULL, *compare = NULL;
    bool as_json = false;
    int context = 0, max_len = 0;
    static const cli_opt opts[] = {{"model", false, NULL}, {"data", false, NULL}, {"context", false, NULL},
                                   {"adapter", false, NULL}, {"compare", CLI_VALUE_OPTIONAL, NULL}, {"max-len", false, NULL},
                                   {"json", true, NULL}, {NULL, false, NULL}};
    cli_args p;
    cli_args_init(&p, "eval", argc, argv, 1, opts, CLI_HAS_POSITIONAL);
    const char *a, *v;
    int r;
    while ((r = cli_next(&p, &a, &v)) > 0) {
        if (!a && !model) { model = v; continue; } /* the model or run directory, positionally */
        if (!a) return cli_usage_error("eval", "unexpected argument '%s'", v);
        if (!strcmp(a, "json")) as_json = cli_true(v);
        else if (!strcmp(a, "model")) model = v;
        else if (!strcmp(a, "adapter")) adapter = v;
        else if (!strcmp(a, "data")) data = v;
        else if (!strcmp(a, "compare")) compare = v;
        else if (!strcmp(a, "max-len")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || end == v || n < 1 || n > 1 << 20) return cli_usage_error("eval", "--max-len must be an integer >= 1");
            max_len = (int)n;
        } else {
            char *end;
            long c = strtol(v, &end, 10);
            if (*end || c < 2 || c > 1 << 20) return cli_usage_error("eval", "--context must be an integer >= 2");
            context = (int)c;
        }
    }
    if (r < 0) return 1;
    if (!model) return cli_usage_error("eval", "missing --model DIR");
    if (!data) return cli_usage_error("eval", "missing --data FILE");
    if (ftc_is_run_dir(model)) { /* an ftc train run directory */
        if (adapter || context || max_len)
            return cli_usage_error("eval", "--adapter, --context and --max-len are for a plain model directory, not a "
                                   "run (it reads data with its own settings)");
        return cli_eval_run_dir(model, data, as_json, compare);
    }
    if (compare && !*compare)
        return cli_usage_error("eval", "--compare needs BASE_DIR for a plain model directory (a run directory knows "
                               "its base model)");
    if (ftc_model_dir_has_classifier(model)) {
        if (adapter || context)
            return cli_usage_error("eval", "--adapter and --context are for a causal LM; %s is a classifier", model);
        return cli_eval_classifier_dir(model, data, max_len, as_json, compare);
    }
    bool structured = is_structured(data);
    if (max_len && !structured)
        return cli_usage_error("eval", "--max-len is for a classifier directory or structured data (JSONL, CSV); "
                               "plain text is cut into windows of --context");
    if (context && structured)
        return cli_usage_error("eval", "--context is for plain text; structured data (%s) is read as ftc train reads "
                               "it, examples cut at --max-len", data);
    ftc_model_config cfg;
    ftc_err err;
    if (ftc_config_load(model, &cfg, &err)) return cli_fail("eval", &err);
    ftc_family fam = cfg.family;
    ftc_config_free(&cfg);
    if (fam == FTC_FAMILY_BERT) {
        ftc_errf(&err, FTC_E_UNSUPPORTED, "%s is a BERT-family encoder without a classification head (config.json "
                 "id2label and classifier.weight): classify data needs a classifier (a run directory, or its ftc export "
                 "--format hf), and text loss a causal LM (GPT-2, Llama family)", model);
        return cli_fail("eval", &err);
    }
    if (structured) return eval_lm_data(model, adapter, data, max_len, as_json, compare);
    return eval_lm_text(model, adapter, data, context, as_json, compare);
}
