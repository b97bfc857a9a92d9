/* kvppl_bench: what an f16 or a q8_0 KV cache costs in quality (issue 24: the cache type's default is a product
 * decision). Decodes a text one token at a time (as generation does: every new position's attention reads the cache)
 * with an f32, an f16 and a q8_0 cache (q8_0 where the model's key/value width is a multiple of 32), and prints for
 * f16 and q8_0 their perplexity of the text against the f32 cache's, the largest logit difference from the f32
 * cache's logits and at how many positions their greedy (argmax) token differs from it.
 *   kvppl_bench MODEL [--base q8_0|q4_0|q4_1] [--tokens N] [--text FILE]
 * The text: FILE (default: the Banking77 test set's questions under $FTC_SHARED_DATA, joined by spaces).
 * KVPPL_SAME=1: every cache f32 (a check of the tool: no difference). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/gguf.h"
#include "ftc/infer.h"
#include "ftc/model.h"
#include "ftc/quant.h"
#include "ftc/tokenizer.h"
#include "model/model_internal.h" /* m->V */

static int die(const char *what, const ftc_err *e) {
    fprintf(stderr, "kvppl_bench: %s: %s\n", what, e->msg);
    return 1;
}

/* The file's bytes; a CSV's first column (quotes dropped) when csv */
static char *read_text(const char *path, bool csv) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1), *o = malloc((size_t)n + 1);
    if (!b || !o || fread(b, 1, (size_t)n, f) != (size_t)n) return fclose(f), free(b), free(o), NULL;
    fclose(f);
    b[n] = 0;
    if (!csv) return free(o), b;
    size_t k = 0;
    char *line = strchr(b, '\n'); /* skip the header */
    while (line && *++line) {
        bool q = false;
        char *p = line;
        for (; *p && *p != '\n' && (q || *p != ','); p++)
            if (*p == '"') q = !q;
            else o[k++] = *p;
        o[k++] = ' ';
        line = strchr(p, '\n');
    }
    o[k] = 0;
    free(b);
    return o;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: kvppl_bench MODEL [--base q8_0|q4_0|q4_1] [--tokens N] [--text FILE]\n");
        return 2;
    }
    const char *model = argv[1], *base = NULL, *text_path = NULL;
    int ntok = 512;
    for (int i = 2; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--base")) base = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--tokens")) ntok = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--text")) text_path = argv[++i];
        else {
            fprintf(stderr, "kvppl_bench: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    char csv[4096];
    if (!text_path) {
        const char *d = getenv("FTC_SHARED_DATA");
        snprintf(csv, sizeof csv, "%s/banking77/test.csv", d ? d : "/work/shared/data");
        text_path = csv;
    }
    char *text = read_text(text_path, text_path == csv);
    if (!text) {
        fprintf(stderr, "kvppl_bench: cannot read %s\n", text_path);
        return 1;
    }
    ftc_err e;
    char dir[8192];
    if (ftc_gguf_resolve(model, dir, sizeof dir, &e)) return die(model, &e);
    ftc_model *m;
    ftc_tokenizer *tok;
    ftc_status s;
    if (base) {
        int qt = !strcmp(base, "q8_0") ? FTC_GGML_Q8_0 : !strcmp(base, "q4_0") ? FTC_GGML_Q4_0
               : !strcmp(base, "q4_1") ? FTC_GGML_Q4_1 : -1;
        if (qt < 0) {
            fprintf(stderr, "kvppl_bench: --base q8_0|q4_0|q4_1\n");
            return 2;
        }
        s = ftc_model_load_quant_base(dir, FTC_TASK_CAUSAL_LM, qt, &m, &e);
    } else {
        s = ftc_model_load(dir, FTC_TASK_CAUSAL_LM, &m, &e);
    }
    if (s || ftc_tokenizer_load(dir, &tok, &e)) return die(dir, &e);
    ftc_ids ids = {0};
    if (ftc_tokenizer_encode(tok, text, strlen(text), true, 0, &ids, &e)) return die("tokenize", &e);
    if ((int)ids.n < ntok) ntok = (int)ids.n;
    if (ntok < 2) {
        fprintf(stderr, "kvppl_bench: the text has fewer than 2 tokens\n");
        return 1;
    }
    const int V = m->V;
    enum { NC = 3 }; /* f32, f16, q8_0 */
    const ftc_kv_type types[NC] = {FTC_KV_F32, FTC_KV_F16, FTC_KV_Q8_0};
    float *lg[NC];
    ftc_kv_cache *c[NC];
    int nc = NC;
    for (int k = 0; k < NC; k++) {
        if (!(lg[k] = malloc(sizeof(float) * (size_t)V))) return 1;
        if (ftc_kv_cache_create_typed(m, ntok, getenv("KVPPL_SAME") ? FTC_KV_F32 : types[k], &c[k], &e)) {
            if (types[k] != FTC_KV_Q8_0 || e.code != FTC_E_UNSUPPORTED) return die("cache", &e);
            printf("no q8_0 cache: %s\n", e.msg); /* the model's key/value width */
            nc = k;
            break;
        }
    }
    double nll[NC] = {0}, maxd[NC] = {0}, maxl = 0;
    int differ[NC] = {0};
    for (int t = 0; t + 1 < ntok; t++) {
        int am[NC] = {0};
        for (int k = 0; k < nc; k++) {
            if (ftc_model_decode(m, c[k], ids.ids + t, 1, lg[k], false, &e)) return die("decode", &e);
            double mx = -INFINITY, sum = 0;
            for (int v = 0; v < V; v++) {
                if (lg[k][v] > mx) mx = lg[k][v];
                if (lg[k][v] > lg[k][am[k]]) am[k] = v;
            }
            for (int v = 0; v < V; v++) sum += exp(lg[k][v] - mx);
            nll[k] += mx + log(sum) - lg[k][ids.ids[t + 1]];
        }
        for (int v = 0; v < V; v++) maxl = fmax(maxl, fabs((double)lg[0][v]));
        for (int k = 1; k < nc; k++) {
            for (int v = 0; v < V; v++) maxd[k] = fmax(maxd[k], fabs((double)lg[0][v] - lg[k][v]));
            differ[k] += am[0] != am[k];
        }
    }
    for (int k = 1; k < nc; k++)
        printf("%s%s%s, %d tokens of %s decoded one at a time: perplexity f32 cache %.4f, %s cache %.4f (%+.3f%%); max "
               "|logit f32 - %s| %.3g (max |logit| %.3g); greedy token differs at %d of %d positions\n",
               model, base ? " --base " : "", base ? base : "", ntok, text_path, exp(nll[0] / (ntok - 1)), ftc_kv_type_name(types[k]),
               exp(nll[k] / (ntok - 1)), 100 * (exp(nll[k] / (ntok - 1)) / exp(nll[0] / (ntok - 1)) - 1), ftc_kv_type_name(types[k]),
               maxd[k], maxl, differ[k], ntok - 1);
    for (int k = 0; k < NC; k++) free(lg[k]);
    for (int k = 0; k < nc; k++) ftc_kv_cache_free(c[k]);
    free(text);
    ftc_ids_free(&ids);
    ftc_tokenizer_free(tok);
    ftc_model_free(m);
    return 0;
}
