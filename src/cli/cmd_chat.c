/* ftc chat: an interactive conversation with a causal LM on standard input, using the chat template the model
 * (or the run) was trained with. Works the same when standard input is a pipe: one reply line per input line. */
#include "cli.h"
#include "ftc/export.h"
#include "ftc/data.h"
#include "ftc/infer.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/quant.h"
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "Usage: ftc chat --model RUNDIR|DIR [--chat-template T] [--system TEXT] [--max-tokens N]\n"
            "                [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stats] [--adapter DIR]\n"
            "                [--precision fp32|bf16] [--base-dtype q8_0|q4_0|q4_1|q4_k|nf4|nf4dq] [--kv-type f16|f32|q8_0]\n\n"
            "Reads messages from standard input, one per line, and prints the model's answers as they are\n"
            "generated, one answer per line. The conversation is kept: each answer sees the earlier turns.\n"
            "  /reset   forget the conversation (the --system message stays)\n"
            "  /exit    quit (so does the end of input)\n\n"
            "  --model RUNDIR|DIR     an ftc run directory (causal-lm) or a model directory\n"
            "  --chat-template T      chatml, llama3, llama2, zephyr, plain, model or a .jinja file. Default: the\n"
            "                         template the run was trained with, else the model's own (tokenizer_config.json\n"
            "                         chat_template), else plain\n"
            "  --system TEXT          a system message at the start of the conversation\n"
            "  --max-tokens N         most tokens per answer (default 256)\n"
            "  --adapter DIR   apply a PEFT LoRA adapter to the model first (merged)\n"
            "  --precision P, --base-dtype Q   weights in bf16 / block-quantized, as in ftc generate\n"
            "  --kv-type T     the key/value cache in f16 (default), f32 or q8_0, as in ftc generate\n"
            "  --temperature T, --top-k K, --top-p P, --seed S   sampling as in ftc generate (default greedy)\n"
            "  --stats                per answer, on standard error: prompt tokens, tokens reused from the cache,\n"
            "                         generated tokens, speed\n"
            "\nHeld-out conversations (instead of standard input):\n"
            "  --data FILE            chat JSONL ({\"messages\": [...]}): each conversation's last assistant message is\n"
            "                         the reference; the model answers the user message before it, one conversation\n"
            "                         at a time (earlier turns as written), and a JSON line per conversation goes to\n"
            "                         standard output: question, answer, reference, prompt_tokens, generated_tokens,\n"
            "                         stop (end_of_turn|max_tokens|context_full), ttft_ms (to the first answer text),\n"
            "                         latency_ms (to the whole answer), token_f1, rouge_l (docs/generate.md)\n"
            "  --summary FILE         the means of those, the share ended at the end of turn and peak_rss_mb (JSON)\n"
            "  --rag-index FILE       retrieval-augmented: the texts of FILE ({\"text\"} records) are embedded with\n"
            "                         --rag-model; each conversation's user messages are embedded and the --rag-k\n"
            "                         nearest texts are added to its system message after --rag-prompt (retrieval\n"
            "                         time counts in ttft_ms and latency_ms)\n"
            "  --rag-model DIR        the embedding model (e.g. all-MiniLM-L6-v2; mean-pooled as ftc retrieve)\n"
            "  --rag-k K              entries per question (default 3)\n"
            "  --rag-prompt TEXT      the instruction before the entries (default: answer only from them, else say\n"
            "                         politely that you can only help with questions about the service)\n"
            "  --rag-out FILE         the conversations as the model saw them (with the entries), for ftc eval\n"
            "  --progress             count the answered conversations on standard error\n"
            "Exit codes: 0 ok, 1 usage error, 2 bad input (model, tokenizer, template, or an input line that was not\n"
            "answered: invalid UTF-8, a NUL byte, too long for the context, an unknown /command), 3 internal error.\n"
            "\nExamples:\n"
            "  ftc chat --model SmolLM2-135M-Instruct.Q4_1.gguf\n"
            "  printf 'How do I unlock a bike?\\n' | ftc chat runs/assistant --system \"You answer for Velora.\"\n");
}

/* Offset of the first byte that is not well-formed UTF-8 (RFC 3629: no overlongs, surrogates or code points
 * past U+10FFFF), or -1 when all n bytes are. */
static long bad_utf8_at(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!k || i + k > n || (k == 2 && c < 0xC2) || (k == 4 && c > 0xF4)) return (long)i;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return (long)i;
        if (k == 3 && ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0))) return (long)i;
        if (k == 4 && ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90))) return (long)i;
        i += k;
    }
    return -1;
}

static void print_text(void *ctx, const char *text) {
    (void)ctx;
    fputs(text, stdout);
    fflush(stdout);
}

/* --chat-template, else the run's, else the model's own, else plain (with a note). */
static int choose_template(const char *flag, const ftc_infer_model *im, ftc_chat_template **t, const char **why) {
    ftc_err err;
    ftc_status s = ftc_infer_chat_template(im, flag, t, why, &err);
    if (s == FTC_E_USAGE) return cli_usage_error("chat", "%s", err.msg);
    if (s != FTC_OK) return cli_fail("chat", &err);
    if (!*t) {
        *why = "no template found";
        if (ftc_chat_template_preset("plain", t, &err)) return cli_fail("chat", &err);
    }
    return 0;
}

int cmd_chat(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *model = NULL, *tmpl_flag = NULL, *system = NULL, *adapter = NULL;
    long max_tokens = 256, seed = 0;
    ftc_sampler sampler = {0.0f, 0, 1.0f};
    bool stats = false, bf16 = false;
    int qtype = -1;
    cli_chat_batch_args b = {.rag_k = 3, .kv_type = CLI_KV_DEFAULT};
    static const cli_opt opts[] = {{"model", false, NULL}, {"chat-template", false, NULL}, {"system", false, NULL},
                                   {"adapter", false, NULL}, {"max-tokens", false, NULL}, {"stats", true, NULL},
                                   {"data", false, NULL}, {"summary", false, NULL}, {"rag-index", false, NULL},
                                   {"rag-model", false, NULL}, {"rag-k", false, NULL}, {"rag-prompt", false, NULL},
                                   {"rag-out", false, NULL}, {"progress", true, NULL},
                                   {"precision", false, NULL}, {"base-dtype", false, NULL}, {"kv-type", false, NULL},
                                   CLI_SAMPLING_OPTS, {NULL, false, NULL}};
    cli_args p;
    cli_args_init(&p, "chat", argc, argv, 1, opts, CLI_HAS_POSITIONAL);
    const char *f, *v;
    int r;
    while ((r = cli_next(&p, &f, &v)) > 0) {
        int rc;
        if (!f && !model) { model = v; continue; } /* the model or run directory, positionally */
        if (!f) return cli_usage_error("chat", "unexpected argument '%s'", v);
        if (!strcmp(f, "model")) model = v;
        else if (!strcmp(f, "chat-template")) tmpl_flag = v;
        else if (!strcmp(f, "system")) system = v;
        else if (!strcmp(f, "adapter")) adapter = v;
        else if (!strcmp(f, "stats")) stats = cli_true(v);
        else if (!strcmp(f, "precision")) {
            if (strcmp(v, "fp32") && strcmp(v, "bf16"))
                return cli_usage_error("chat", "--precision takes fp32 or bf16, not '%s'", v);
            bf16 = !strcmp(v, "bf16");
        } else if (!strcmp(f, "kv-type")) {
            if (!ftc_kv_type_parse(v, &b.kv_type))
                return cli_usage_error("chat", "--kv-type takes " CLI_KV_TYPES ", not '%s'", v);
        } else if (!strcmp(f, "base-dtype")) {
            if ((qtype = ftc_quant_from_name(v)) < 0)
                return cli_usage_error("chat", "--base-dtype takes q8_0, q4_0, q4_1, q4_k, nf4 or nf4dq, not '%s'", v);
        }
        else if (!strcmp(f, "data")) b.data = v;
        else if (!strcmp(f, "summary")) b.summary = v;
        else if (!strcmp(f, "rag-index")) b.rag_index = v;
        else if (!strcmp(f, "rag-model")) b.rag_model = v;
        else if (!strcmp(f, "rag-prompt")) b.rag_prompt = v;
        else if (!strcmp(f, "rag-out")) b.rag_out = v;
        else if (!strcmp(f, "progress")) b.progress = cli_true(v);
        else if (!strcmp(f, "rag-k")) {
            long k;
            if (!cli_parse_long(v, 1, 16, &k)) return cli_usage_error("chat", "--rag-k needs an integer from 1 to 16, not '%s'", v);
            b.rag_k = (int)k;
        }
        else if (!strcmp(f, "max-tokens")) {
            if (!cli_parse_long(v, 1, 1 << 24, &max_tokens))
                return cli_usage_error("chat", "--max-tokens needs an integer from 1 to %d, not '%s'", 1 << 24, v);
        } else if ((rc = cli_sampling_flag("chat", f, v, &sampler, &seed)) > 0) return rc;
    }
    if (r < 0) return 1;
    if (!model) return cli_usage_error("chat", "--model RUNDIR|DIR is required");
    if (!b.data && (b.summary || b.rag_index || b.rag_model || b.rag_out || b.rag_prompt || b.progress))
        return cli_usage_error("chat", "--summary, --progress and the --rag-* options go with --data FILE");
    if (b.data && !b.rag_index != !b.rag_model)
        return cli_usage_error("chat", "--rag-index and --rag-model go together");
    if (b.data && (b.rag_out || b.rag_prompt) && !b.rag_index)
        return cli_usage_error("chat", "--rag-out and --rag-prompt need --rag-index");
    if (b.data && system) return cli_usage_error("chat", "--system does not go with --data (the conversations have theirs)");
    if (b.data) {
        b.model = model, b.adapter = adapter, b.chat_template = tmpl_flag, b.max_tokens = (int)max_tokens;
        b.sampler = sampler, b.seed = seed;
        return cli_chat_batch(&b);
    }
    ftc_err err;
    ftc_infer_model im;
    if (ftc_infer_open(model, FTC_TASK_CAUSAL_LM, &im, &err)) return cli_fail("chat", &err);
    im.kv_type = b.kv_type;
    if ((adapter && (ftc_model_load_adapter(im.model, adapter, &err) || ftc_model_merge_lora(im.model, &err))) ||
        (bf16 && ftc_model_use_bf16_weights(im.model, &err)) ||
        (qtype >= 0 && ftc_model_use_quant_weights(im.model, qtype, &err))) {
        ftc_infer_close(&im);
        return cli_fail("chat", &err);
    }
    ftc_chat_template *t;
    const char *why;
    int rc = choose_template(tmpl_flag, &im, &t, &why);
    if (rc) {
        ftc_infer_close(&im);
        return rc;
    }
    bool tty = isatty(STDIN_FILENO);
    if (!strcmp(why, "no template found"))
        fprintf(stderr, "ftc chat: %s names no chat template; using 'plain' (choose one with --chat-template)\n", model);
    if (tty)
        fprintf(stderr, "ftc chat: %s, template %s. Type a message; /reset clears the conversation, /exit quits.\n",
                model, ftc_chat_template_name(t));
    long bad = system ? bad_utf8_at((const unsigned char *)system, strlen(system)) : -1;
    if (bad >= 0) {
        fprintf(stderr, "ftc chat: error: --system: invalid UTF-8 at byte %ld of the message\n", bad + 1);
        ftc_chat_template_free(t);
        ftc_infer_close(&im);
        return 2;
    }
    ftc_chat *chat;
    if (ftc_chat_create(&im, t, system, &chat, &err)) {
        rc = cli_fail("chat", &err);
        ftc_chat_template_free(t);
        ftc_infer_close(&im);
        return rc;
    }
    ftc_rng rng;
    ftc_rng_seed(&rng, (uint64_t)seed);
    ftc_chat_opts o = {.max_new_tokens = (int)max_tokens, .sampler = sampler, .rng = &rng, .on_text = print_text};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    bool input_errors = false; /* a line that could not be answered: the chat goes on, the exit code says so */
    for (;;) {
        if (tty) fputs("> ", stderr);
        errno = 0;
        if ((n = getline(&line, &cap, stdin)) < 0) {
            if (ferror(stdin) || errno == ENOMEM) {
                fprintf(stderr, "ftc chat: error: reading standard input: %s\n", strerror(errno ? errno : EIO));
                rc = errno == ENOMEM ? 3 : 2;
            }
            break;
        }
        lineno++;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        const char *nul = memchr(line, 0, (size_t)n);
        long badc = nul ? -1 : bad_utf8_at((const unsigned char *)line, (size_t)n);
        if (nul || badc >= 0) {
            if (nul) fprintf(stderr, "ftc chat: error: input line %ld: a NUL byte at byte %ld; not sent\n", lineno, (long)(nul - line) + 1);
            else fprintf(stderr, "ftc chat: error: input line %ld: invalid UTF-8 at byte %ld; not sent\n", lineno, badc + 1);
            input_errors = true;
            continue;
        }
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            ftc_chat_reset(chat);
            if (tty || stats) fputs("ftc chat: conversation cleared\n", stderr);
            continue;
        }
        if (line[0] == '/') {
            fprintf(stderr, "ftc chat: error: unknown command '%s' (/reset, /exit)\n", line);
            input_errors = true;
            continue;
        }
        if (!line[0]) continue;
        char *reply;
        ftc_chat_stats st;
        double t0 = ftc_now();
        ftc_status s = ftc_chat_reply(chat, line, &o, &reply, &st, &err);
        if (s == FTC_E_INPUT) { /* a message that cannot fit: say so, keep chatting */
            fprintf(stderr, "ftc chat: error: %s\n", err.msg);
            input_errors = true;
            continue;
        }
        if (s) {
            rc = cli_fail("chat", &err);
            break;
        }
        fputc('\n', stdout);
        if ((rc = cli_check_stdout("chat"))) {
            free(reply);
            break;
        }
        double dt = ftc_now() - t0;
        if (st.stop == FTC_GEN_CONTEXT_FULL || (st.stop == FTC_GEN_MAX_TOKENS && st.generated_tokens < max_tokens))
            fprintf(stderr, "ftc chat: the model's context is full; /reset to start over\n");
        if (st.dropped_messages)
            fprintf(stderr, "ftc chat: %d earliest messages left out to fit the context\n", st.dropped_messages);
        if (stats)
            fprintf(stderr, "ftc chat: prompt %d tokens (%d reused from the cache), generated %d (%s) in %.3f s\n",
                    st.prompt_tokens, st.reused_tokens, st.generated_tokens,
                    st.stop == FTC_GEN_STOP_TOKEN ? "end of turn" : st.stop == FTC_GEN_MAX_TOKENS ? "max tokens"
                                                                                               : "context full",
                    dt);
        free(reply);
    }
    free(line);
    if (rc == 0 && input_errors) rc = 2;
    ftc_chat_free(chat);
    ftc_chat_template_free(t);
    ftc_infer_close(&im);
    return rc;
}
