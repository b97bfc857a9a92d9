/* ftc tokenize: text -> ids/tokens with the model's own tokenizer, or ids -> text (--decode). */
#include "cli.h"
#include "ftc/tokenizer.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "Usage: ftc tokenize --model DIR [--ids|--tokens] [--no-special] [--max-len N] TEXT...\n"
            "       ftc tokenize --model DIR [--ids|--tokens] [--no-special] --file F\n"
            "       ftc tokenize --model DIR --decode [--keep-special] [IDS...]\n\n"
            "Tokenizes each TEXT exactly as Hugging Face tokenizers does with the model's tokenizer.json\n"
            "(or vocab.json+merges.txt, or vocab.txt). DIR may hold only tokenizer files.\n\n"
            "  --ids          print token ids, space-separated, one line per text (default)\n"
            "  --tokens       print the token strings instead of ids\n"
            "  --no-special   do not add the special tokens ([CLS] .. [SEP], <s>) HF's encode adds by default\n"
            "  --max-len N    truncate to N tokens (special tokens kept)\n"
            "  --file F       tokenize each line of F ('-' = standard input); one output line per input line\n"
            "  --decode       turn ids (arguments, or whitespace-separated on standard input) into text;\n"
            "                 special tokens are skipped unless --keep-special\n"
            "\nExamples:\n"
            "  ftc tokenize --model gpt2 --tokens \"Hello world\"\n"
            "  ftc tokenize --model SmolLM2-135M-Instruct.Q4_1.gguf --ids --file prompts.txt\n"
            "  ftc tokenize --model gpt2 --decode 15496 995\n");
}

static int print_encoded(const ftc_tokenizer *t, const char *s, size_t n, bool special, int max_len, bool tokens,
                         ftc_ids *ids, bool encode) {
    ftc_err err;
    if (encode) {
        ids->n = 0;
        if (ftc_tokenizer_encode(t, s, n, special, max_len, ids, &err)) return cli_fail("tokenize", &err);
    }
    for (size_t i = 0; i < ids->n; i++) {
        if (i) fputc(' ', stdout);
        if (tokens) fputs(ftc_tokenizer_id_to_token(t, ids->ids[i]), stdout);
        else printf("%d", ids->ids[i]);
    }
    fputc('\n', stdout);
    return 0;
}

static int parse_id(const char *s, int32_t *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < 0 || v > INT32_MAX) return -1;
    *out = (int32_t)v;
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { usage(stdout); return 0; }
    const char *model = NULL, *file = NULL;
    bool tokens = false, special = true, decode = false, keep_special = false;
    int max_len = 0, first_arg = argc;
    static const cli_opt opts[] = {{"model", false, NULL}, {"file", false, NULL}, {"max-len", false, NULL},
                                   {"ids", true, NULL}, {"tokens", true, NULL}, {"special", true, NULL},
                                   {"decode", true, NULL}, {"keep-special", true, NULL}, {NULL, false, NULL}};
    cli_args p;
    cli_args_init(&p, "tokenize", argc, argv, 1, opts, CLI_HAS_POSITIONAL | CLI_POSITIONAL_ENDS);
    const char *a, *v;
    int r;
    while ((r = cli_next(&p, &a, &v)) > 0) {
        if (!a) { first_arg = p.i - 1; break; }
        if (!strcmp(a, "model")) model = v;
        else if (!strcmp(a, "file")) file = v;
        else if (!strcmp(a, "max-len")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || end == v || n <= 0 || n > 1 << 30) return cli_usage_error("tokenize", "--max-len needs a positive integer");
            max_len = (int)n;
        } else if (!strcmp(a, "ids")) tokens = !cli_true(v); /* --ids: ids (the default), not token strings */
        else if (!strcmp(a, "tokens")) tokens = cli_true(v);
        else if (!strcmp(a, "special")) special = cli_true(v);
        else if (!strcmp(a, "decode")) decode = cli_true(v);
        else keep_special = cli_true(v);
    }
    if (r < 0) return 1;
    if (!model) return cli_usage_error("tokenize", "--model DIR is required");
    if (!decode && !file && first_arg >= argc) return cli_usage_error("tokenize", "give TEXT arguments or --file F");
    ftc_tokenizer *t;
    ftc_err err;
    if (ftc_tokenizer_load(model, &t, &err)) return cli_fail("tokenize", &err);
    int rc = 0;
    ftc_ids ids = {0};
    if (decode) {
        if (first_arg < argc) {
            for (int i = first_arg; i < argc && !rc; i++) {
                int32_t v;
                if (parse_id(argv[i], &v)) { rc = cli_usage_error("tokenize", "'%s' is not a token id", argv[i]); break; }
                if (ids.n == ids.cap) {
                    size_t cap = ids.cap ? ids.cap * 2 : 64;
                    int32_t *p = realloc(ids.ids, cap * sizeof *p);
                    if (!p) { fprintf(stderr, "ftc tokenize: out of memory\n"); rc = 3; break; }
                    ids.ids = p;
                    ids.cap = cap;
                }
                ids.ids[ids.n++] = v;
            }
        } else {
            char word[64];
            while (!rc && scanf("%63s", word) == 1) {
                int32_t v;
                if (parse_id(word, &v)) {
                    fprintf(stderr, "ftc tokenize: error: standard input: '%s' is not a token id\n", word);
                    rc = 2;
                    break;
                }
                if (ids.n == ids.cap) {
                    size_t cap = ids.cap ? ids.cap * 2 : 64;
                    int32_t *p = realloc(ids.ids, cap * sizeof *p);
                    if (!p) { rc = 3; break; }
                    ids.ids = p;
                    ids.cap = cap;
                }
                ids.ids[ids.n++] = v;
            }
        }
        for (size_t i = 0; i < ids.n && !rc; i++)
            if (ids.ids[i] >= ftc_tokenizer_vocab_size(t)) {
                fprintf(stderr, "ftc tokenize: error: id %d is outside the vocabulary (size %d)\n", ids.ids[i],
                        ftc_tokenizer_vocab_size(t));
                rc = 2;
            }
        char *text = NULL;
        if (!rc && ftc_tokenizer_decode(t, ids.ids, ids.n, !keep_special, &text, &err)) rc = cli_fail("tokenize", &err);
        if (!rc) printf("%s\n", text);
        free(text);
    } else if (file) {
        FILE *f = stdin;
        ftc_err oe;
        if (strcmp(file, "-") && ftc_open_read(file, &f, &oe)) {
            rc = cli_fail("tokenize", &oe);
        } else {
            char *line = NULL;
            size_t cap = 0;
            ssize_t n;
            long lineno = 0;
            while (!rc && (n = getline(&line, &cap, f)) >= 0) {
                lineno++;
                if (n && line[n - 1] == '\n') n--;
                if (n && line[n - 1] == '\r') n--;
                ids.n = 0;
                if (ftc_tokenizer_encode(t, line, (size_t)n, special, max_len, &ids, &err)) {
                    ftc_err_prefix(&err, "%s: line %ld", file, lineno);
                    rc = cli_fail("tokenize", &err);
                    break;
                }
                rc = print_encoded(t, line, (size_t)n, special, max_len, tokens, &ids, false);
            }
            free(line);
            if (f != stdin) fclose(f);
        }
    } else {
        for (int i = first_arg; i < argc && !rc; i++)
            rc = print_encoded(t, argv[i], strlen(argv[i]), special, max_len, tokens, &ids, true);
    }
    ftc_ids_free(&ids);
    ftc_tokenizer_free(t);
    if (!rc) rc = cli_check_stdout("tokenize");
    return rc;
}
