/* ftc export --model RUNDIR --format hf|peft|gguf --out DIR|FILE.gguf: the tuned model for transformers (merged,
 * HF layout), the LoRA adapter for PEFT, or the merged model as one GGUF file for llama.cpp / Ollama. */
#include "cli.h"
#include "model_arg.h"
#include "ftc/base.h"
#include "ftc/export.h"
#include "ftc/gguf.h"
#include "ftc/quant.h"
#include <unistd.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "Usage: ftc export --model RUNDIR|DIR|X.gguf --format hf|peft|gguf|gguf-lora --out DIR|FILE.gguf [--force]\n"
            "                  [--adapter DIR] [--type f32|f16|bf16|q8_0|q4_0|q4_1|q4_k|base]\n\n"
            "  --format hf    the merged model in Hugging Face layout: config.json (architectures, id2label,\n"
            "                 label2id, num_labels, problem_type for classify), model.safetensors with the names\n"
            "                 of that transformers class, the base model's tokenizer files. Loads with\n"
            "                 AutoModelFor{CausalLM,SequenceClassification}.from_pretrained(DIR).\n"
            "  --format peft  a LoRA run's adapter as PEFT writes it: adapter_config.json +\n"
            "                 adapter_model.safetensors (+ labels.json for classify). Loads with\n"
            "                 PeftModel.from_pretrained(base, DIR), or ftc's --adapter DIR.\n"
            "  --format gguf  the merged model as one GGUF v3 file (llama, mistral, qwen2, gpt2) with the metadata,\n"
            "                 tensor names and tokenizer llama.cpp's convert_hf_to_gguf.py writes, the chat template\n"
            "                 and end-of-turn token; --type sets the weights' type (default f32; norms stay f32);\n"
            "                 --type base: a run's quantized base type (--base-dtype), the LM head as that base\n"
            "                 held it (q8_0): the merged weights re-quantized, with a warning (docs/quant.md).\n"
            "                 Also writes FILE.Modelfile for Ollama (FROM, TEMPLATE, SYSTEM, PARAMETER stop).\n"
            "  --format gguf-lora  a LoRA run's adapter alone as llama.cpp's LoRA GGUF (general.type adapter,\n"
            "                 adapter.lora.alpha), for llama-cli -m BASE.gguf --lora FILE.gguf\n"
            "  --model        a run directory of ftc train, or a model directory (hf: re-export; with\n"
            "                 --adapter DIR: base + PEFT adapter merged)\n"
            "  --force        replace a non-empty --out directory (never an input or a directory holding a run)\n\n"
            "The export is assembled beside DIR and renamed into place: DIR is complete or absent.\n"
            "A classification head no transformers class computes (e.g. mean pooling) is exported with the\n"
            "encoder's bare class and described under config.json's \"ftc_classifier_head\" (docs/export.md).\n"
            "\nExamples:\n"
            "  ftc export runs/faq --format hf --out faq-model        # merged, loads in transformers\n"
            "  ftc export runs/faq-lora --format peft --out faq-adapter # the LoRA adapter for PEFT\n");
}

/* A LoRA run's adapters before merging: the base with the run's method applied, values from the
 * checkpoint the run's final model was made from (best.ftc when there was validation, else the last). */
static ftc_status load_run_adapters(const char *rundir, cli_model *cm, ftc_model **out, ftc_err *err) {
    *out = NULL;
    if (cm->run.method != FTC_METHOD_LORA)
        return ftc_errf(err, FTC_E_USAGE, "run %s trained with method %s: it has no adapter; export it with --format hf",
                        rundir, ftc_method_name(cm->run.method));
    ftc_model *m;
    ftc_status s = ftc_model_load(cm->run.model, cm->task, &m, err);
    if (s) return ftc_err_prefix(err, "base model of run %s", rundir);
    char ck[FTC_PATH_MAX + 64];
    snprintf(ck, sizeof ck, "%s/best.ftc", rundir);
    if (!ftc_file_exists(ck)) snprintf(ck, sizeof ck, "%s/checkpoint.ftc", rundir);
    if (!ftc_file_exists(ck)) { /* --save-only-model: no checkpoint; the run's adapter/ holds the same values */
        snprintf(ck, sizeof ck, "%s/adapter", rundir);
        s = ftc_model_load_adapter(m, ck, err);
        if (!s && cm->task == FTC_TASK_CLASSIFY) {
            ftc_pooling pool = ftc_train_pooling(cm->run.pooling, cm->run.model, ftc_model_config_of(m)->family);
            s = ftc_model_set_classifier(m, cm->n_labels, pool, 0, err);
        }
    } else {
        s = ftc_train_prepare_model(m, &cm->run, cm->n_labels, err);
        if (!s) s = ftc_checkpoint_load(ck, m, NULL, NULL, err);
    }
    if (s) {
        ftc_model_free(m);
        return s;
    }
    *out = m;
    return FTC_OK;
}

/* --out must not be an input or hold one: replacing it would delete what is being exported. */
static ftc_status check_out_overlap(const char *out, const char *const *inputs, int n, ftc_err *err) {
    char ro[PATH_MAX];
    if (!realpath(out, ro)) return FTC_OK; /* not there yet: it can hold nothing */
    size_t lo = strlen(ro);
    for (int i = 0; i < n; i++) {
        char ri[PATH_MAX];
        if (!inputs[i] || !inputs[i][0] || !realpath(inputs[i], ri)) continue;
        if (!strncmp(ri, ro, lo) && (ri[lo] == 0 || ri[lo] == '/' || lo == 1))
            return ftc_errf(err, FTC_E_USAGE, "--out %s %s the input %s: export elsewhere (--force never replaces an input)",
                            out, ri[lo] ? "holds" : "is", inputs[i]);
    }
    return FTC_OK;
}

int cmd_export(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { usage(stdout); return 0; }
    const char *model = NULL, *format = NULL, *out = NULL, *adapter = NULL, *type = NULL;
    bool force = false;
    static const cli_opt opts[] = {{"model", false, NULL}, {"format", false, NULL}, {"out", false, NULL},
                                   {"adapter", false, NULL}, {"force", true, NULL}, {"type", false, NULL},
                                   {NULL, false, NULL}};
    cli_args p;
    cli_args_init(&p, "export", argc, argv, 1, opts, CLI_HAS_POSITIONAL);
    const char *a, *v;
    int r;
    while ((r = cli_next(&p, &a, &v)) > 0) {
        if (!a && !model) { model = v; continue; } /* the model or run directory, positionally */
        if (!a) return cli_usage_error("export", "unexpected argument '%s'", v);
        if (!strcmp(a, "force")) force = cli_true(v);
        else if (!strcmp(a, "model")) model = v;
        else if (!strcmp(a, "format")) format = v;
        else if (!strcmp(a, "out")) out = v;
        else if (!strcmp(a, "type")) type = v;
        else adapter = v;
    }
    if (r < 0) return 1;
    if (!model) return cli_usage_error("export", "missing --model RUNDIR");
    if (!out) return cli_usage_error("export", "missing --out DIR");
    if (!format) return cli_usage_error("export", "missing --format hf|peft|gguf");
    bool peft = !strcmp(format, "peft"), gguf = !strcmp(format, "gguf"), glora = !strcmp(format, "gguf-lora");
    if (!peft && !gguf && !glora && strcmp(format, "hf"))
        return cli_usage_error("export", "unknown --format '%s' (hf, peft, gguf, gguf-lora)", format);
    if (glora && adapter) return cli_usage_error("export", "--format gguf-lora exports a LoRA run's own adapter");
    int gtype = FTC_GGML_F32;
    bool as_base = type && !strcmp(type, "base");
    if (type && !gguf) return cli_usage_error("export", "--type is for --format gguf");
    if (type && !as_base) {
        static const struct { const char *n; int t; } T[] = {{"f32", FTC_GGML_F32}, {"f16", FTC_GGML_F16},
            {"bf16", FTC_GGML_BF16}, {"q8_0", FTC_GGML_Q8_0}, {"q4_0", FTC_GGML_Q4_0}, {"q4_1", FTC_GGML_Q4_1},
            {"q4_k", FTC_GGML_Q4_K}};
        gtype = -1;
        for (size_t i = 0; i < sizeof T / sizeof *T; i++)
            if (!strcmp(type, T[i].n)) gtype = T[i].t;
        if (gtype < 0)
            return cli_usage_error("export", "unknown --type '%s' (f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, base)", type);
    }
    if ((gguf || glora) && !force && ftc_file_exists(out))
        return cli_usage_error("export", "%s exists: choose another --out or add --force", out);
    if (peft && adapter) return cli_usage_error("export", "--adapter is already a PEFT adapter: nothing to export");

    ftc_err err;
    const char *inputs[] = {model, adapter};
    if (check_out_overlap(out, inputs, 2, &err)) return cli_usage_error("export", "%s", err.msg);
    cli_model cm;
    ftc_status s = cli_model_open(model, NULL, adapter, &cm, &err);
    if (s) { cli_model_close(&cm); return cli_fail("export", &err); }
    const char *base_in[] = {cm.base, cm.is_run ? cm.run.model : NULL};
    if (check_out_overlap(out, base_in, 2, &err)) { cli_model_close(&cm); return cli_usage_error("export", "%s", err.msg); }
    /* the frozen base a LoRA or head run trained on, when it was block-quantized (--base-dtype) */
    int qbase = cm.is_run && cm.run.method != FTC_METHOD_FULL ? ftc_train_base_qtype(&cm.run) : -1;
    bool not_gguf = qbase == FTC_QUANT_NF4 || qbase == FTC_QUANT_NF4DQ;
    if (as_base && (qbase < 0 || not_gguf)) { /* the type a merged model is re-quantized to: the run's base's */
        if (not_gguf)
            s = ftc_errf(&err, FTC_E_USAGE, "--type base: the run's base type %s is not a GGUF type; export --type "
                         "f32, bf16, q8_0, q4_0, q4_1 or q4_k", ftc_quant_name(qbase));
        else
            s = ftc_errf(&err, FTC_E_USAGE, "--type base: %s is not a LoRA or head run on a quantized base "
                         "(--base-dtype q8_0|q4_0|q4_1|q4_k)", model);
        cli_model_close(&cm);
        return cli_usage_error("export", "%s", err.msg);
    }
    if (as_base) gtype = qbase;
    bool blocks = gtype != FTC_GGML_F32 && gtype != FTC_GGML_F16 && gtype != FTC_GGML_BF16;
    if (gguf && blocks && qbase >= 0 && cm.run.method == FTC_METHOD_LORA)
        fprintf(stderr, "ftc export: warning: the adapter is merged into the dequantized %s base in f32 and the sum "
                        "re-quantized to %s: that model is not the one the run evaluated (re-quantizing rounds away "
                        "part of the adapter's update); held-out losses measured before and after: docs/quant.md, "
                        "\"Merging adapters back for export\"\n", ftc_quant_name(qbase), ftc_quant_name(gtype));
    ftc_export_opts o = {.tokenizer_dir = cm.base, .overwrite = force, .base_model = cm.base};
    if (cm.task == FTC_TASK_CLASSIFY && cm.labels) o.label_names = (const char *const *)cm.labels, o.n_labels = cm.n_labels;
    if (glora) {
        if (!cm.is_run) s = ftc_errf(&err, FTC_E_USAGE, "%s is not a run directory (no config.resolved.json): "
                                     "--format gguf-lora exports the adapter of an ftc LoRA run", model);
        ftc_model *lm = NULL;
        if (!s) s = load_run_adapters(model, &cm, &lm, &err);
        const char *slash = strrchr(out, '/'), *base = slash ? slash + 1 : out;
        char lname[256];
        size_t bl = strlen(base);
        snprintf(lname, sizeof lname, "%.*s", (int)(bl > 5 && !strcmp(base + bl - 5, ".gguf") ? bl - 5 : bl), base);
        if (!s) s = ftc_export_gguf_lora(lm, out, lname, &err);
        ftc_model_free(lm);
    } else if (peft) {
        if (!cm.is_run) s = ftc_errf(&err, FTC_E_USAGE, "%s is not a run directory (no config.resolved.json): "
                                     "--format peft exports the adapter of an ftc LoRA run", model);
        ftc_model *lm = NULL;
        if (!s) s = load_run_adapters(model, &cm, &lm, &err);
        o.tokenizer_dir = NULL; /* an adapter goes onto the base, which has them */
        if (!s) s = ftc_export_peft(lm, out, &o, &err);
        ftc_model_free(lm);
    } else if (gguf) {
        if (cm.task != FTC_TASK_CAUSAL_LM)
            s = ftc_errf(&err, FTC_E_USAGE, "--format gguf exports causal language models (this is a %s model)",
                         cm.task == FTC_TASK_CLASSIFY ? "classification" : "encoder");
        char tj[FTC_PATH_MAX + 32];
        snprintf(tj, sizeof tj, "%s/tokenizer.json", cm.base);
        if (!s && !ftc_file_exists(tj))
            s = ftc_errf(&err, FTC_E_INPUT, "%s has no tokenizer.json: a GGUF carries the tokenizer (tokenizer.ggml.*)",
                         cm.base);
        if (!s && adapter) s = ftc_model_merge_lora(cm.m, &err);
        /* the merged model in HF layout beside the output, then converted as llama.cpp's converter would */
        char tmp[FTC_PATH_MAX + 64], mf[FTC_PATH_MAX + 64];
        snprintf(tmp, sizeof tmp, "%s.hf.tmp.%d", out, (int)getpid());
        ftc_export_opts ho = o;
        ho.overwrite = true;
        if (!s) s = ftc_export_hf(cm.m, tmp, &ho, &err);
        const char *slash = strrchr(out, '/'), *name = slash ? slash + 1 : out;
        char gname[256];
        snprintf(gname, sizeof gname, "%.*s", (int)(strlen(name) > 5 && !strcmp(name + strlen(name) - 5, ".gguf")
                                                         ? strlen(name) - 5 : strlen(name)), name);
        ftc_gguf_export_opts go = {.type = gtype, .name = gname, .as_base = as_base};
        if (!s) s = ftc_gguf_from_hf(tmp, out, &go, &err);
        snprintf(mf, sizeof mf, "%.*s.Modelfile", (int)(strlen(out) - (strlen(name) - strlen(gname))), out);
        const char *note = NULL;
        if (!s) s = ftc_gguf_write_modelfile(tmp, name, mf, &note, &err);
        ftc_err e2;
        ftc_remove_tree(tmp, &e2);
        if (!s && note) fprintf(stderr, "ftc export: note: %s\n", note);
        if (!s) printf("wrote %s (Ollama Modelfile)\n", mf);
    } else {
        if (adapter) s = ftc_model_merge_lora(cm.m, &err);
        const char *why;
        if (!s && cm.task == FTC_TASK_CLASSIFY && !ftc_export_head_is_hf(cm.m, &why))
            fprintf(stderr, "ftc export: note: no transformers class computes this head (%s); exported as the "
                            "bare encoder plus the head's tensors, see config.json \"ftc_classifier_head\"\n", why);
        if (!s) s = ftc_export_hf(cm.m, out, &o, &err);
    }
    cli_model_close(&cm);
    if (s) return cli_fail("export", &err);
    printf("wrote %s (%s)\n", out, peft ? "PEFT LoRA adapter" : gguf ? "GGUF" : glora ? "GGUF LoRA adapter for llama.cpp --lora"
                                                                                    : "Hugging Face model");
    return 0;
}
