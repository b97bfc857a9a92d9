/* The older file sets, built into the same pipeline HF's converters produce:
 * GPT-2 vocab.json + merges.txt (byte-level BPE) and BERT vocab.txt (+ tokenizer_config.json do_lower_case). */
#include "tokenize/tk.h"
#include "ftc/base.h"
#include "base/base_internal.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOMEM(err) ftc_errf(err, FTC_E_NOMEM, "out of memory")

static ftc_status add_token(ftc_tokenizer *t, const char *s, bool special, bool normalized, ftc_err *err) {
    int32_t id = ftc_tk_map_get(&t->vocab, s, strlen(s));
    if (id < 0) return FTC_OK;
    tk_added *a = realloc(t->added, (t->n_added + 1) * sizeof *a);
    if (!a) return NOMEM(err);
    t->added = a;
    a = &t->added[t->n_added];
    memset(a, 0, sizeof *a);
    a->content = malloc(strlen(s) + 1);
    if (!a->content) return NOMEM(err);
    strcpy(a->content, s);
    a->len = strlen(s);
    a->id = id;
    a->special = special;
    a->normalized = normalized;
    t->n_added++;
    return FTC_OK;
}

static ftc_status load_gpt2(const char *dir, const char *vocab_path, ftc_tokenizer *t, ftc_err *err) {
    char mp[4096];
    json_error_t je;
    json_t *v = ftc_json_load_file(vocab_path, 0, &je);
    if (!json_is_object(v)) {
        json_decref(v);
        return ftc_errf(err, FTC_E_INPUT, "%s: line %d: %s", vocab_path, je.line, v ? "expected an object" : je.text);
    }
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > 10000000) {
            ftc_errf(err, FTC_E_INPUT, "%s: entry '%.100s' has no valid id", vocab_path, k);
            json_decref(v);
            return FTC_E_INPUT;
        }
        if (!ftc_tk_map_put(&t->vocab, k, strlen(k), (int32_t)json_integer_value(x))) { json_decref(v); return NOMEM(err); }
    }
    json_decref(v);
    if (!ftc_path_join(mp, sizeof mp, dir, "merges.txt") || !ftc_file_exists(mp))
        return ftc_errf(err, FTC_E_INPUT, "%s: vocab.json needs merges.txt beside it", dir);
    char *text;
    size_t len;
    ftc_status st = ftc_read_file(mp, &text, &len, err);
    if (st) return st;
    tk_buf joined = {0};
    int32_t rank = 0;
    size_t line = 0;
    for (char *p = text; p < text + len && !st;) {
        char *e = memchr(p, '\n', (size_t)(text + len - p));
        if (!e) e = text + len;
        line++;
        size_t n = (size_t)(e - p);
        if (n && p[n - 1] == '\r') n--;
        if (n && !(line == 1 && n >= 8 && !memcmp(p, "#version", 8))) {
            char *sp = memchr(p, ' ', n);
            if (!sp) { st = ftc_errf(err, FTC_E_INPUT, "%s: line %zu: expected 'a b'", mp, line); break; }
            size_t al = (size_t)(sp - p), bl = n - al - 1;
            int32_t ia = ftc_tk_map_get(&t->vocab, p, al), ib = ftc_tk_map_get(&t->vocab, sp + 1, bl);
            joined.n = 0;
            if (!ftc_tk_buf_put(&joined, p, al) || !ftc_tk_buf_put(&joined, sp + 1, bl)) { st = NOMEM(err); break; }
            int32_t im = ftc_tk_map_get(&t->vocab, joined.p, joined.n);
            if (ia < 0 || ib < 0 || im < 0) {
                st = ftc_errf(err, FTC_E_INPUT, "%s: line %zu: merge uses a token missing from vocab.json", mp, line);
                break;
            }
            if (!ftc_tk_pairmap_put(&t->merges, ia, ib, rank++, im)) st = NOMEM(err);
        }
        p = e + 1;
    }
    ftc_tk_buf_free(&joined);
    free(text);
    if (st) return st;
    /* GPT2TokenizerFast: ByteLevel pre-tokenizer (no prefix space) and decoder; <|endoftext|> added */
    t->pre = calloc(1, sizeof *t->pre);
    t->dec = calloc(1, sizeof *t->dec);
    if (!t->pre || !t->dec) return NOMEM(err);
    t->pre->kind = PRE_BYTELEVEL;
    t->pre->use_regex = true;
    static const char GPT2_PATTERN[] =
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
    if ((st = ftc_tk_regex_compile(&t->pre->re, GPT2_PATTERN, sizeof GPT2_PATTERN - 1, false, err))) return st;
    t->pre_bytelevel = true;
    t->dec->kind = DEC_BYTELEVEL;
    return add_token(t, "<|endoftext|>", true, true, err);
}

static ftc_status load_bert(const char *dir, const char *vocab_path, ftc_tokenizer *t, ftc_err *err) {
    char *text;
    size_t len;
    ftc_status st = ftc_read_file(vocab_path, &text, &len, err);
    if (st) return st;
    int32_t id = 0;
    for (char *p = text; p < text + len;) {
        char *e = memchr(p, '\n', (size_t)(text + len - p));
        if (!e) e = text + len;
        size_t n = (size_t)(e - p);
        if (n && p[n - 1] == '\r') n--;
        /* HF's load_vocab strips the line (trailing whitespace) and numbers lines in order */
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
        if (!ftc_tk_map_put(&t->vocab, p, n, id++)) { free(text); return NOMEM(err); }
        p = e + 1;
    }
    free(text);
    bool lower = true;
    char cp[4096];
    if (ftc_path_join(cp, sizeof cp, dir, "tokenizer_config.json") && ftc_file_exists(cp)) {
        json_error_t je;
        json_t *c = ftc_json_load_file(cp, 0, &je);
        if (!json_is_object(c)) {
            json_decref(c);
            return ftc_errf(err, FTC_E_INPUT, "%s: line %d: %s", cp, je.line, c ? "expected an object" : je.text);
        }
        json_t *dl = json_object_get(c, "do_lower_case");
        if (json_is_boolean(dl)) lower = json_is_true(dl);
        json_decref(c);
    }
    t->is_wordpiece = true;
    t->wp_prefix = malloc(3);
    if (!t->wp_prefix) return NOMEM(err);
    strcpy(t->wp_prefix, "##");
    t->wp_prefix_len = 2;
    t->unk_id = ftc_tk_map_get(&t->vocab, "[UNK]", 5);
    if (t->unk_id < 0) return ftc_errf(err, FTC_E_INPUT, "%s: no [UNK] token", vocab_path);
    t->norm = calloc(1, sizeof *t->norm);
    t->pre = calloc(1, sizeof *t->pre);
    t->dec = calloc(1, sizeof *t->dec);
    if (!t->norm || !t->pre || !t->dec) return NOMEM(err);
    *t->norm = (tk_normalizer){.kind = NORM_BERT, .clean_text = true, .chinese = true, .lowercase = lower,
                               .strip_accents = lower};
    t->pre->kind = PRE_BERT;
    t->dec->kind = DEC_WORDPIECE;
    t->dec->cleanup = true;
    if (!(t->dec->prefix = malloc(3))) return NOMEM(err);
    strcpy(t->dec->prefix, "##");
    static const char *special[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (size_t i = 0; i < 5; i++)
        if ((st = add_token(t, special[i], true, false, err))) return st;
    int32_t cls = ftc_tk_map_get(&t->vocab, "[CLS]", 5), sep = ftc_tk_map_get(&t->vocab, "[SEP]", 5);
    if (cls >= 0 && sep >= 0) {
        tk_post *p = &t->post;
        p->single = calloc(3, sizeof *p->single);
        p->pair = calloc(5, sizeof *p->pair);
        if (!p->single || !p->pair) return NOMEM(err);
        /* each special item owns a one-element id array */
        int32_t *own[5];
        for (int i = 0; i < 5; i++) {
            own[i] = malloc(sizeof(int32_t));
            if (!own[i]) { for (int j = 0; j < i; j++) free(own[j]); return NOMEM(err); }
        }
        *own[0] = cls; *own[1] = sep; *own[2] = cls; *own[3] = sep; *own[4] = sep;
        p->single[0] = (tk_tmpl_item){.ids = own[0], .n_ids = 1};
        p->single[1] = (tk_tmpl_item){.is_seq = true};
        p->single[2] = (tk_tmpl_item){.ids = own[1], .n_ids = 1};
        p->pair[0] = (tk_tmpl_item){.ids = own[2], .n_ids = 1};
        p->pair[1] = (tk_tmpl_item){.is_seq = true};
        p->pair[2] = (tk_tmpl_item){.ids = own[3], .n_ids = 1};
        p->pair[3] = (tk_tmpl_item){.is_seq = true, .seq = 1, .type_id = 1};
        p->pair[4] = (tk_tmpl_item){.ids = own[4], .n_ids = 1, .type_id = 1};
        p->n_single = 3;
        p->n_pair = 5;
        t->has_post = true;
    }
    return FTC_OK;
}

ftc_status ftc_tk_load_legacy(const char *dir, ftc_tokenizer **out, ftc_err *err) {
    char vp[4096];
    *out = NULL;
    ftc_tokenizer *t = NULL;
    ftc_status st;
    if (ftc_path_join(vp, sizeof vp, dir, "vocab.json") && ftc_file_exists(vp)) {
        if (!(t = ftc_tk_alloc(vp))) return NOMEM(err);
        st = load_gpt2(dir, vp, t, err);
    } else if (ftc_path_join(vp, sizeof vp, dir, "vocab.txt") && ftc_file_exists(vp)) {
        if (!(t = ftc_tk_alloc(vp))) return NOMEM(err);
        st = load_bert(dir, vp, t, err);
    } else if (ftc_path_join(vp, sizeof vp, dir, "tokenizer.model") && ftc_file_exists(vp)) {
        return ftc_errf(err, FTC_E_UNSUPPORTED,
                        "unsupported: %s (SentencePiece .model alone); use the model's tokenizer.json", vp);
    } else
        return ftc_errf(err, FTC_E_INPUT, "%s: no tokenizer.json, vocab.json+merges.txt or vocab.txt found", dir);
    if (!st) st = ftc_tk_finish(t, err);
    if (st) { ftc_tokenizer_free(t); return st; }
    *out = t;
    return FTC_OK;
}

ftc_status ftc_tokenizer_load_legacy(const char *dir, ftc_tokenizer **out, ftc_err *err) {
    return ftc_tk_load_legacy(dir, out, err);
}
