/* ftc template: what training and chat feed the model, for a user to see.
 *   ftc template render --model DIR --messages FILE [--add-generation-prompt] [--tokens] [--chat-template T]
 *   ftc template show --model DIR [--chat-template T]
 * render prints the conversation as the chat template renders it (exactly the text training and chat tokenize),
 * or with --tokens one line per token: index, id, trained (T) or not (.), the token's text as JSON. */
#include "cli.h"
#include "ftc/base.h"
#include "base/base_internal.h"
#include "ftc/data.h"
#include "ftc/tokenizer.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "Usage: ftc template render --model DIR|RUNDIR --messages FILE [--add-generation-prompt] [--tokens]\n"
            "                           [--chat-template T]\n"
            "       ftc template show --model DIR|RUNDIR [--chat-template T]\n\n"
            "render: prints the messages as the model's chat template renders them: the text training and\n"
            "ftc chat tokenize. --tokens prints instead one line per token: index, id, T (trained: the loss\n"
            "counts it) or . (not), and the token's text as a JSON string.\n"
            "show: prints the template's name, its end-of-turn and its Jinja source.\n\n"
            "  --model DIR|RUNDIR       a model directory (its tokenizer and tokenizer_config.json chat_template)\n"
            "                           or an ftc run (the template it trained with)\n"
            "  --messages FILE          a JSON list of messages [{\"role\": ..., \"content\": ...}, ...] (any roles,\n"
            "                           tool calls; \"weight\": 0 leaves an answer untrained), or an object\n"
            "                           {\"messages\": [...], \"tools\": [...], ...more template variables}; - reads stdin\n"
            "  --add-generation-prompt  end with the header of the assistant's next answer (as ftc chat does)\n"
            "  --tokens                 token ids with their trained flag instead of the text\n"
            "  --chat-template T        chatml, llama3, llama2, zephyr, plain, model or a .jinja file\n"
            "                           (default: the run's, else the model's own)\n"
            "Exit codes: 0 ok, 1 usage error, 2 bad input (template error with line and column, bad JSON).\n"
            "\nExamples:\n"
            "  ftc template show --model SmolLM2-135M-Instruct.Q4_1.gguf\n"
            "  ftc template render --model SmolLM2-135M-Instruct.Q4_1.gguf --messages conv.json --tokens\n");
}

/* A run directory: its model/ (tokenizer) or the base model, and the template the run recorded. */
static void locate(const char *model, char *tok_dir, size_t n, char *run_tmpl, size_t rn) {
    char p[4400];
    run_tmpl[0] = 0;
    snprintf(tok_dir, n, "%s", model);
    snprintf(p, sizeof p, "%s/config.resolved.json", model);
    if (!ftc_file_exists(p)) return;
    snprintf(p, sizeof p, "%s/chat_template.json", model);
    if (ftc_file_exists(p)) snprintf(run_tmpl, rn, "%s", p);
    snprintf(p, sizeof p, "%s/model/tokenizer.json", model);
    if (ftc_file_exists(p)) {
        snprintf(tok_dir, n, "%s/model", model);
        return;
    }
    snprintf(p, sizeof p, "%s/config.resolved.json", model);
    json_t *cfg = ftc_json_load_file(p, 0, NULL);
    const char *base = json_string_value(json_object_get(cfg, "model"));
    if (base) snprintf(tok_dir, n, "%s", base);
    json_decref(cfg);
}

static ftc_status load_template(const char *value, const char *model_dir, const char *run_tmpl, ftc_chat_template **t,
                                ftc_err *err) {
    if ((!value || !value[0]) && run_tmpl[0]) {
        json_error_t je;
        json_t *o = ftc_json_load_file(run_tmpl, 0, &je);
        if (!o) return ftc_errf(err, FTC_E_INPUT, "%s:%d:%d: %s", run_tmpl, je.line, je.column, je.text);
        json_t *src = json_object_get(o, "jinja");
        const char *name = json_string_value(json_object_get(o, "name"));
        ftc_status s = json_is_string(src)
                           ? ftc_chat_template_from_text(run_tmpl, json_string_value(src), json_string_length(src), t, err)
                           : ftc_chat_template_choose(name, model_dir, t, err);
        json_decref(o);
        return s;
    }
    ftc_status s = ftc_chat_template_choose(value, model_dir, t, err);
    if (s == FTC_OK && !*t)
        s = ftc_errf(err, FTC_E_INPUT, "%s has no chat template (tokenizer_config.json \"chat_template\", "
                                       "chat_template.jinja); choose one with --chat-template", model_dir);
    return s;
}

static int print_tokens(const char *cmd, const ftc_rendered *r, bool add_special, const char *tok_dir) {
    ftc_err err;
    ftc_tokenizer *tok;
    if (ftc_tokenizer_load(tok_dir, &tok, &err)) return cli_fail(cmd, &err);
    ftc_data_encoder enc;
    ftc_data_encoder_from_tokenizer(tok, &enc);
    ftc_example ex;
    int rc = 0;
    if (ftc_data_encode_rendered(r, add_special, &enc, &ex, &err)) {
        rc = cli_fail(cmd, &err);
    } else {
        for (int i = 0; i < ex.len; i++) {
            char *text = NULL;
            json_t *js = NULL;
            if (ftc_tokenizer_decode(tok, ex.ids + i, 1, false, &text, &err) == FTC_OK) js = json_string(text);
            char *q = js ? json_dumps(js, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
            printf("%d\t%d\t%s\t%s\n", i, ex.ids[i], ex.labels[i] != -100 ? "T" : ".", q ? q : "\"?\"");
            free(q);
            json_decref(js);
            free(text);
        }
        ftc_example_free(&ex);
    }
    ftc_tokenizer_free(tok);
    return rc;
}

int cmd_template(int argc, char **argv) {
    if (cli_wants_help(argc, argv) || argc < 2) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    const char *sub = argv[1];
    bool render = !strcmp(sub, "render"), show = !strcmp(sub, "show");
    if (!render && !show) return cli_usage_error("template", "unknown subcommand '%s' (render, show)", sub);
    const char *cmd = render ? "template render" : "template show";
    const char *model = NULL, *messages = NULL, *tmpl_value = NULL;
    bool agp = false, tokens = false;
    static const cli_opt opts[] = {{"model", false, NULL}, {"messages", false, NULL}, {"chat-template", false, NULL},
                                   {"add-generation-prompt", true, NULL}, {"tokens", true, NULL}, {NULL, false, NULL}};
    cli_args p;
    cli_args_init(&p, cmd, argc, argv, 2, opts, CLI_HAS_POSITIONAL);
    const char *a, *v;
    int r;
    while ((r = cli_next(&p, &a, &v)) > 0) {
        if (!a && !model) { model = v; continue; } /* the model or run directory, positionally */
        if (!a) return cli_usage_error(cmd, "unexpected argument '%s'", v);
        if (!strcmp(a, "add-generation-prompt")) agp = cli_true(v);
        else if (!strcmp(a, "tokens")) tokens = cli_true(v);
        else if (!strcmp(a, "model")) model = v;
        else if (!strcmp(a, "messages")) messages = v;
        else tmpl_value = v;
    }
    if (r < 0) return 1;
    if (!model && !(tmpl_value && show)) return cli_usage_error(cmd, "--model DIR|RUNDIR is required");
    if (render && !messages) return cli_usage_error(cmd, "--messages FILE is required");
    char tok_dir[4400] = "", run_tmpl[4400] = "";
    if (model) {
        if (!ftc_is_dir(model)) {
            ftc_err e;
            ftc_errf(&e, FTC_E_IO, "%s: no such model directory", model);
            return cli_fail(cmd, &e);
        }
        locate(model, tok_dir, sizeof tok_dir, run_tmpl, sizeof run_tmpl);
    }
    ftc_err err;
    ftc_chat_template *t = NULL;
    ftc_status s = load_template(tmpl_value, model ? tok_dir : NULL, run_tmpl, &t, &err);
    if (s == FTC_E_USAGE) return cli_usage_error(cmd, "%s", err.msg);
    if (s != FTC_OK) return cli_fail(cmd, &err);
    /* the tokenizer's BOS/EOS are the template's bos_token/eos_token */
    ftc_tokenizer *tok = NULL;
    const char *bos = NULL, *eos = NULL;
    if (model && ftc_tokenizer_load(tok_dir, &tok, &err) == FTC_OK) {
        ftc_special_ids sp = ftc_tokenizer_special(tok);
        bos = sp.bos >= 0 ? ftc_tokenizer_id_to_token(tok, sp.bos) : NULL;
        eos = sp.eos >= 0 ? ftc_tokenizer_id_to_token(tok, sp.eos) : NULL;
    }
    ftc_render_opts o = {.bos = bos, .eos = eos, .add_generation_prompt = agp};
    int rc = 0;
    if (show) {
        char *eot = NULL;
        if (ftc_chat_template_end_of_turn(t, &o, &eot, &err) != FTC_OK) rc = cli_fail(cmd, &err);
        else {
            json_t *e = json_string(eot ? eot : "");
            char *q = json_dumps(e, JSON_ENCODE_ANY);
            printf("template: %s\nend of turn: %s\n\n%s\n", ftc_chat_template_name(t), eot ? q : "(none)",
                   ftc_chat_template_source(t));
            free(q);
            json_decref(e);
            free(eot);
        }
    } else {
        json_error_t je;
        json_t *in = !strcmp(messages, "-") ? json_loadf(stdin, 0, &je) : ftc_json_load_file(messages, 0, &je);
        json_t *msgs = json_is_array(in) ? in : json_object_get(in, "messages");
        json_t *vars = json_is_object(in) ? json_deep_copy(in) : NULL;
        if (vars) json_object_del(vars, "messages");
        o.vars = vars;
        if (!in) {
            ftc_errf(&err, FTC_E_INPUT, "%s:%d:%d: not valid JSON: %s", messages, je.line, je.column, je.text);
            rc = cli_fail(cmd, &err);
        } else if (!json_is_array(msgs)) {
            ftc_errf(&err, FTC_E_INPUT, "%s: expected a list of messages or an object with \"messages\"", messages);
            rc = cli_fail(cmd, &err);
        } else {
            ftc_rendered r;
            if (ftc_template_render_messages(t, msgs, &o, &r, &err)) {
                rc = cli_fail(cmd, &err);
            } else {
                if (tokens) rc = print_tokens(cmd, &r, ftc_chat_template_adds_special(t), tok_dir);
                else fwrite(r.text, 1, r.len, stdout);
                ftc_rendered_free(&r);
            }
        }
        json_decref(vars);
        json_decref(in);
    }
    ftc_tokenizer_free(tok);
    ftc_chat_template_free(t);
    if (rc == 0) rc = cli_check_stdout(cmd);
    return rc;
}
