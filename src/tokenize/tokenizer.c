/* tokenizer.json loader and the encode/decode pipeline, following HF tokenizers:
 * added tokens are split out first (non-normalized ones on the raw text, normalized ones after the
 * normalizer), then pre-tokenizer, model, post-processor. */
#include "tokenize/tk.h"
#include "ftc/base.h"
#include "base/base_internal.h"
#include <jansson.h>
#include "ftc/threads.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOMEM(err) ftc_errf(err, FTC_E_NOMEM, "out of memory")

/* ---------------- small JSON helpers ---------------- */
static const char *jstr(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}
static bool jbool(json_t *o, const char *k, bool def) {
    json_t *v = json_object_get(o, k);
    return json_is_boolean(v) ? json_is_true(v) : def;
}
static char *xstrdup(const char *s) {
    size_t n = strlen(s);
    char *c = malloc(n + 1);
    if (c) memcpy(c, s, n + 1);
    return c;
}
static ftc_status need_type(json_t *o, const char *what, const char **type, ftc_err *err) {
    *type = json_is_object(o) ? jstr(o, "type") : NULL;
    if (!*type) return ftc_errf(err, FTC_E_INPUT, "%s: expected an object with a \"type\" field", what);
    return FTC_OK;
}
/* "pattern": {"String": s} or {"Regex": r} */
static ftc_status parse_pattern(json_t *o, const char *what, tk_regex *re, char **literal, ftc_err *err) {
    json_t *p = json_object_get(o, "pattern");
    const char *s;
    if (json_is_object(p) && (s = jstr(p, "String"))) {
        if (literal && !(*literal = xstrdup(s))) return NOMEM(err);
        return ftc_tk_regex_compile(re, s, strlen(s), true, err);
    }
    if (json_is_object(p) && (s = jstr(p, "Regex"))) return ftc_tk_regex_compile(re, s, strlen(s), false, err);
    return ftc_errf(err, FTC_E_INPUT, "%s: \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}", what);
}
static ftc_status utf8_char_field(json_t *o, const char *k, const char *def, char out[8], const char *what,
                                  ftc_err *err) {
    const char *s = jstr(o, k);
    if (!s) s = def;
    uint32_t cp;
    size_t n = strlen(s);
    if (n == 0 || n > 4 || ftc_tk_utf8_next(s, n, 0, &cp) != (int)n)
        return ftc_errf(err, FTC_E_INPUT, "%s: \"%s\" must be one character", what, k);
    memcpy(out, s, n + 1);
    return FTC_OK;
}

/* ---------------- normalizers ---------------- */
static ftc_status load_normalizer(json_t *o, tk_normalizer *nz, ftc_err *err) {
    const char *type;
    ftc_status st = need_type(o, "normalizer", &type, err);
    if (st) return st;
    if (!strcmp(type, "NFC")) nz->kind = NORM_NFC;
    else if (!strcmp(type, "NFD")) nz->kind = NORM_NFD;
    else if (!strcmp(type, "NFKC")) nz->kind = NORM_NFKC;
    else if (!strcmp(type, "NFKD")) nz->kind = NORM_NFKD;
    else if (!strcmp(type, "Lowercase")) nz->kind = NORM_LOWERCASE;
    else if (!strcmp(type, "StripAccents")) nz->kind = NORM_STRIP_ACCENTS;
    else if (!strcmp(type, "Strip")) {
        nz->kind = NORM_STRIP;
        nz->strip_left = jbool(o, "strip_left", true);
        nz->strip_right = jbool(o, "strip_right", true);
    } else if (!strcmp(type, "BertNormalizer")) {
        nz->kind = NORM_BERT;
        nz->clean_text = jbool(o, "clean_text", true);
        nz->chinese = jbool(o, "handle_chinese_chars", true);
        nz->lowercase = jbool(o, "lowercase", true);
        json_t *sa = json_object_get(o, "strip_accents");
        nz->strip_accents = json_is_boolean(sa) ? json_is_true(sa) : nz->lowercase; /* null: follows lowercase */
    } else if (!strcmp(type, "Prepend")) {
        nz->kind = NORM_PREPEND;
        const char *s = jstr(o, "prepend");
        if (!s) return ftc_errf(err, FTC_E_INPUT, "normalizer Prepend: missing \"prepend\"");
        if (!(nz->str = xstrdup(s))) return NOMEM(err);
    } else if (!strcmp(type, "Replace")) {
        nz->kind = NORM_REPLACE;
        const char *c = jstr(o, "content");
        if (!c) return ftc_errf(err, FTC_E_INPUT, "normalizer Replace: missing \"content\"");
        if (!(nz->str = xstrdup(c))) return NOMEM(err);
        return parse_pattern(o, "normalizer Replace", &nz->re, NULL, err);
    } else if (!strcmp(type, "Sequence")) {
        nz->kind = NORM_SEQUENCE;
        json_t *a = json_object_get(o, "normalizers");
        if (!json_is_array(a)) return ftc_errf(err, FTC_E_INPUT, "normalizer Sequence: missing \"normalizers\" array");
        nz->items = calloc(json_array_size(a) + 1, sizeof *nz->items);
        if (!nz->items) return NOMEM(err);
        for (size_t i = 0; i < json_array_size(a); i++) {
            nz->n_items = i + 1;
            if ((st = load_normalizer(json_array_get(a, i), &nz->items[i], err))) return st;
        }
    } else return ftc_errf(err, FTC_E_UNSUPPORTED, "unsupported: normalizer %s", type);
    return FTC_OK;
}

/* ---------------- pre-tokenizers ---------------- */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static ftc_status parse_behavior(json_t *o, tk_split_behavior *b, ftc_err *err) {
    const char *s = jstr(o, "behavior");
    if (!s) { *b = SPLIT_ISOLATED; return FTC_OK; }
    if (!strcmp(s, "Removed")) *b = SPLIT_REMOVED;
    else if (!strcmp(s, "Isolated")) *b = SPLIT_ISOLATED;
    else if (!strcmp(s, "MergedWithPrevious")) *b = SPLIT_MERGED_PREV;
    else if (!strcmp(s, "MergedWithNext")) *b = SPLIT_MERGED_NEXT;
    else if (!strcmp(s, "Contiguous")) *b = SPLIT_CONTIGUOUS;
    else return ftc_errf(err, FTC_E_UNSUPPORTED, "unsupported: split behavior %s", s);
    return FTC_OK;
}
static ftc_status parse_prepend_scheme(json_t *o, int *scheme, ftc_err *err) {
    const char *s = jstr(o, "prepend_scheme");
    if (!s) { *scheme = jbool(o, "add_prefix_space", true) ? 0 : 2; return FTC_OK; }
    if (!strcmp(s, "always")) *scheme = 0;
    else if (!strcmp(s, "first")) *scheme = 1;
    else if (!strcmp(s, "never")) *scheme = 2;
    else return ftc_errf(err, FTC_E_UNSUPPORTED, "unsupported: Metaspace prepend_scheme %s", s);
    return FTC_OK;
}

static ftc_status load_pretok(json_t *o, tk_pretok *pt, ftc_err *err) {
    const char *type;
    ftc_status st = need_type(o, "pre_tokenizer", &type, err);
    if (st) return st;
    if (!strcmp(type, "ByteLevel")) {
        pt->kind = PRE_BYTELEVEL;
        pt->add_prefix_space = jbool(o, "add_prefix_space", true);
        pt->use_regex = jbool(o, "use_regex", true);
        if (pt->use_regex) return ftc_tk_regex_compile(&pt->re, GPT2_PATTERN, sizeof GPT2_PATTERN - 1, false, err);
    } else if (!strcmp(type, "Split")) {
        pt->kind = PRE_SPLIT;
        pt->invert = jbool(o, "invert", false);
        if ((st = parse_behavior(o, &pt->behavior, err))) return st;
        return parse_pattern(o, "pre_tokenizer Split", &pt->re, NULL, err);
    } else if (!strcmp(type, "BertPreTokenizer")) pt->kind = PRE_BERT;
    else if (!strcmp(type, "Whitespace")) {
        pt->kind = PRE_WHITESPACE;
        /* HF's Whitespace uses the Rust regex crate: its \\w is Alphabetic, marks, decimal digits, connector
         * punctuation and joiners; PCRE2's UCP \\w lacks marks and joiners */
        static const char WS[] = "[\\p{L}\\p{M}\\p{Nd}\\p{Nl}\\p{Pc}\\x{200C}\\x{200D}]+|[^\\p{L}\\p{M}\\p{Nd}\\p{Nl}\\p{Pc}\\x{200C}\\x{200D}\\s]+";
        return ftc_tk_regex_compile(&pt->re, WS, sizeof WS - 1, false, err);
    } else if (!strcmp(type, "WhitespaceSplit")) pt->kind = PRE_WHITESPACE_SPLIT;
    else if (!strcmp(type, "Punctuation")) {
        pt->kind = PRE_PUNCTUATION;
        return parse_behavior(o, &pt->behavior, err);
    } else if (!strcmp(type, "Digits")) {
        pt->kind = PRE_DIGITS;
        pt->individual_digits = jbool(o, "individual_digits", false);
    } else if (!strcmp(type, "Metaspace")) {
        pt->kind = PRE_METASPACE;
        pt->meta_split = jbool(o, "split", true);
        if ((st = utf8_char_field(o, "replacement", "\xE2\x96\x81", pt->replacement, "pre_tokenizer Metaspace", err)))
            return st;
        return parse_prepend_scheme(o, &pt->prepend_scheme, err);
    } else if (!strcmp(type, "Sequence")) {
        pt->kind = PRE_SEQUENCE;
        json_t *a = json_object_get(o, "pretokenizers");
        if (!json_is_array(a))
            return ftc_errf(err, FTC_E_INPUT, "pre_tokenizer Sequence: missing \"pretokenizers\" array");
        pt->items = calloc(json_array_size(a) + 1, sizeof *pt->items);
        if (!pt->items) return NOMEM(err);
        for (size_t i = 0; i < json_array_size(a); i++) {
            pt->n_items = i + 1;
            if ((st = load_pretok(json_array_get(a, i), &pt->items[i], err))) return st;
        }
    } else return ftc_errf(err, FTC_E_UNSUPPORTED, "unsupported: pre_tokenizer %s", type);
    return FTC_OK;
}

/* The model sees raw bytes when ByteLevel is the last pre-tokenizer; anything after it is unsupported. */
static ftc_status check_bytelevel_last(const tk_pretok *pt, bool *ends_bytelevel, ftc_err *err) {
    if (pt->kind == PRE_SEQUENCE) {
        *ends_bytelevel = false;
        for (size_t i = 0; i < pt->n_items; i++) {
            if (*ends_bytelevel)
                return ftc_errf(err, FTC_E_UNSUPPORTED, "unsupported: pre_tokenizer after ByteLevel in a Sequence");
            ftc_status st = check_bytelevel_last(&pt->items[i], ends_bytelevel, err);
            if (st) return st;
        }
        return FTC_OK;
    }
    *ends_bytelevel = pt->kind == PRE_BYTELEVEL;
    return FTC_OK;
}

/* ---------------- decoders ---------------- */
static ftc_status load_decoder(json_t *o, tk_decoder *d, ftc_err *err) {
    const char *type;
    ftc_status st = need_type(o, "decoder", &type, err);
    if (st) return st;
    if (!strcmp(type, "ByteLevel")) d->kind = DEC_BYTELEVEL;
    else if (!strcmp(type, "WordPiece")) {
        d->kind = DEC_WORDPIECE;
        const char *p = jstr(o, "prefix");
        if (!(d->prefix = xstrdup(p ? p : "##"))) return NOMEM(err);
        d->cleanup = jbool(o, "cleanup", true);
    } else if (!strcmp(type, "Metaspace")) {
        d->kind = DEC_METASPACE;
        if ((st = utf8_char_field(o, "replacement", "\xE2\x96\x81", d->replacement, "decoder Metaspace", err))) return st;
        return parse_prepend_scheme(o, &d->prepend_scheme, err);
    } else if (!strcmp(type, "Replace")) {
        d->kind = DEC_REPLACE;
        const char *c = jstr(o, "content");
        if (!c) return ftc_errf(err, FTC_E_INPUT, "decoder Replace: missing \"content\"");
        if (!(d->content = xstrdup(c))) return NOMEM(err);
        if ((st = parse_pattern(o, "decoder Replace", &d->re, &d->pattern, err))) return st;
        d->regex = d->pattern == NULL;
    } else if (!strcmp(type, "ByteFallback")) d->kind = DEC_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse")) d->kind = DEC_FUSE;
    else if (!strcmp(type, "Strip")) {
        d->kind = DEC_STRIP;
        const char *c = jstr(o, "content");
        if (!c || ftc_tk_utf8_next(c, strlen(c), 0, &d->strip_cp) != (int)strlen(c) || !*c)
            return ftc_errf(err, FTC_E_INPUT, "decoder Strip: \"content\" must be one character");
        json_t *a = json_object_get(o, "start"), *b = json_object_get(o, "stop");
        d->start = json_is_integer(a) ? (int)json_integer_value(a) : 0;
        d->stop = json_is_integer(b) ? (int)json_integer_value(b) : 0;
        if (d->start < 0 || d->stop < 0) return ftc_errf(err, FTC_E_INPUT, "decoder Strip: negative start/stop");
    } else if (!strcmp(type, "BPEDecoder")) {
        d->kind = DEC_BPE;
        const char *p = jstr(o, "suffix");
        if (!(d->prefix = xstrdup(p ? p : "</w>"))) return NOMEM(err);
    } else if (!strcmp(type, "Sequence")) {
        d->kind = DEC_SEQUENCE;
        json_t *a = json_object_get(o, "decoders");
        if (!json_is_array(a)) return ftc_errf(err, FTC_E_INPUT, "decoder Sequence: missing \"decoders\" array");
        d->items = calloc(json_array_size(a) + 1, sizeof *d->items);
        if (!d->items) return NOMEM(err);
        for (size_t i = 0; i < json_array_size(a); i++) {
            d->n_items = i + 1;
            if ((st = load_decoder(json_array_get(a, i), &d->items[i], err))) return st;
        }
    } else return ftc_errf(err, FTC_E_UNSUPPORTED, "unsupported: decoder %s", type);
    return FTC_OK;
}

/* ---------------- post-processors ---------------- */
static void post_free(tk_post *p) {
    for (size_t i = 0; i < p->n_single; i++) free(p->single[i].ids);
    for (size_t i = 0; i < p->n_pair; i++) free(p->pair[i].ids);
    free(p->single);
    free(p->pair);
    memset(p, 0, sizeof *p);
}
static ftc_status tmpl_special(tk_tmpl_item *it, int type_id, int32_t id) {
    it->is_seq = false;
    it->type_id = type_id;
    it->ids = malloc(sizeof *it->ids);
    if (!it->ids) return FTC_E_NOMEM;
    it->ids[0] = id;
    it->n_ids = 1;
    return FTC_OK;
}
static ftc_status load_template(json_t *arr, json_t *specials, const char *which, tk_tmpl_item **out, size_t *n,
                                ftc_err *err) {
    if (!json_is_array(arr))
        return ftc_errf(err, FTC_E_UNSUPPORTED, "unsupported: post_processor TemplateProcessing \"%s\" (expected a list)",
                        which);
    *out = calloc(json_array_size(arr) + 1, sizeof **out);
    if (!*out) return NOMEM(err);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *e = json_array_get(arr, i), *x;
        tk_tmpl_item *it = &(*out)[i];
        *n = i + 1;
        if ((x = json_object_get(e, "Sequence"))) {
            const char *id = jstr(x, "id");
            it->is_seq = true;
            it->seq = id && !strcmp(id, "B");
            it->type_id = (int)json_integer_value(json_object_get(x, "type_id"));
        } else if ((x = json_object_get(e, "SpecialToken"))) {
            const char *id = jstr(x, "id");
            json_t *sp = id ? json_object_get(specials, id) : NULL;
            json_t *ids = json_object_get(sp, "ids");
            if (!json_is_array(ids))
                return ftc_errf(err, FTC_E_INPUT, "post_processor: special token '%s' is not in \"special_tokens\"",
                                id ? id : "?");
            it->type_id = (int)json_integer_value(json_object_get(x, "type_id"));
            it->n_ids = json_array_size(ids);
            it->ids = calloc(it->n_ids + 1, sizeof *it->ids);
            if (!it->ids) return NOMEM(err);
            for (size_t k = 0; k < it->n_ids; k++) it->ids[k] = (int32_t)json_integer_value(json_array_get(ids, k));
        } else return ftc_errf(err, FTC_E_INPUT, "post_processor TemplateProcessing: bad item in \"%s\"", which);
    }
    return FTC_OK;
}
static ftc_status load_post(json_t *o, tk_post *p, bool *has, ftc_err *err) {
    const char *type;
    ftc_status st = need_type(o, "post_processor", &type, err);
    if (st) return st;
    if (!strcmp(type, "ByteLevel")) return FTC_OK; /* offsets only */
    if (!strcmp(type, "Sequence")) {
        json_t *a = json_object_get(o, "processors");
        if (!json_is_array(a)) return ftc_errf(err, FTC_E_INPUT, "post_processor Sequence: missing \"processors\"");
        for (size_t i = 0; i < json_array_size(a); i++) {
            if (*has) {
                const char *t2 = jstr(json_array_get(a, i), "type");
                if (t2 && !strcmp(t2, "ByteLevel")) continue;
                return ftc_errf(err, FTC_E_UNSUPPORTED, "unsupported: post_processor Sequence with two token-adding steps");
            }
            if ((st = load_post(json_array_get(a, i), p, has, err))) return st;
        }
        return FTC_OK;
    }
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *sp = json_object_get(o, "special_tokens");
        *has = true;
        if ((st = load_template(json_object_get(o, "single"), sp, "single", &p->single, &p->n_single, err))) return st;
        return load_template(json_object_get(o, "pair"), sp, "pair", &p->pair, &p->n_pair, err);
    }
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        json_t *sep = json_object_get(o, "sep"), *cls = json_object_get(o, "cls");
        if (!json_is_array(sep) || !json_is_array(cls) || !json_is_integer(json_array_get(sep, 1)) ||
            !json_is_integer(json_array_get(cls, 1)))
            return ftc_errf(err, FTC_E_INPUT, "post_processor %s: \"sep\"/\"cls\" must be [token, id]", type);
        int32_t s = (int32_t)json_integer_value(json_array_get(sep, 1));
        int32_t c = (int32_t)json_integer_value(json_array_get(cls, 1));
        bool roberta = type[0] == 'R';
        *has = true;
        p->single = calloc(3, sizeof *p->single);
        p->pair = calloc(6, sizeof *p->pair);
        if (!p->single || !p->pair) return NOMEM(err);
        p->n_single = 3;
        if (tmpl_special(&p->single[0], 0, c) || tmpl_special(&p->single[2], 0, s)) return NOMEM(err);
        p->single[1] = (tk_tmpl_item){.is_seq = true, .seq = 0};
        /* BERT: [CLS] A [SEP] B [SEP] with B typed 1; RoBERTa: <s> A </s> </s> B </s>, all type 0 */
        size_t k = 0;
        int tb = roberta ? 0 : 1;
        if (tmpl_special(&p->pair[k++], 0, c)) return NOMEM(err);
        p->pair[k++] = (tk_tmpl_item){.is_seq = true, .seq = 0};
        if (tmpl_special(&p->pair[k++], 0, s)) return NOMEM(err);
        if (roberta && tmpl_special(&p->pair[k++], 0, s)) return NOMEM(err);
        p->pair[k++] = (tk_tmpl_item){.is_seq = true, .seq = 1, .type_id = tb};
        if (tmpl_special(&p->pair[k++], tb, s)) return NOMEM(err);
        p->n_pair = k;
        return FTC_OK;
    }
    return ftc_errf(err, FTC_E_UNSUPPORTED, "unsupported: post_processor %s", type);
}

/* ---------------- tokenizer object ---------------- */
ftc_tokenizer *ftc_tk_alloc(const char *name) {
    ftc_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    snprintf(t->name, sizeof t->name, "%s", name ? name : "tokenizer");
    t->unk_id = -1;
    t->max_input_chars = 100;
    for (int i = 0; i < 256; i++) t->byte_ids[i] = -1;
    pthread_mutex_init(&t->cache_lock, NULL);
    return t;
}

void ftc_tokenizer_free(ftc_tokenizer *t) {
    if (!t) return;
    ftc_tk_map_free(&t->vocab);
    for (size_t i = 0; i < t->n_ids; i++) free(t->id_to_tok[i]);
    free(t->id_to_tok);
    ftc_tk_pairmap_free(&t->merges);
    free(t->wp_prefix);
    if (t->norm) { ftc_tk_normalizer_free(t->norm); free(t->norm); }
    if (t->pre) { ftc_tk_pretok_free(t->pre); free(t->pre); }
    if (t->dec) { ftc_tk_decoder_free(t->dec); free(t->dec); }
    post_free(&t->post);
    for (size_t i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->raw_set.toks);
    free(t->norm_set.toks);
    free(t->is_special);
    for (size_t i = 0; i < t->cache_cap; i++) { free(t->cache[i].key); free(t->cache[i].ids); }
    free(t->cache);
    pthread_mutex_destroy(&t->cache_lock);
    free(t);
}

void ftc_ids_free(ftc_ids *ids) {
    if (!ids) return;
    free(ids->ids);
    memset(ids, 0, sizeof *ids);
}

static int cmp_added(const void *a, const void *b) {
    const tk_added *x = *(tk_added *const *)a, *y = *(tk_added *const *)b;
    uint8_t cx = (uint8_t)x->content[0], cy = (uint8_t)y->content[0];
    if (cx != cy) return cx < cy ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return 0;
}
static bool build_set(ftc_tokenizer *t, tk_added_set *s, bool normalized) {
    s->toks = calloc(t->n_added + 1, sizeof *s->toks);
    if (!s->toks) return false;
    s->n = 0;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].normalized == normalized && t->added[i].len) s->toks[s->n++] = &t->added[i];
    qsort(s->toks, s->n, sizeof *s->toks, cmp_added);
    size_t k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < s->n && (uint8_t)s->toks[k]->content[0] < b) k++;
        s->first[b] = (int32_t)k;
    }
    return true;
}

static bool set_id_token(ftc_tokenizer *t, int32_t id, const char *s, size_t n) {
    if (id < 0 || (size_t)id >= t->n_ids) return true;
    char *c = malloc(n + 1);
    if (!c) return false;
    memcpy(c, s, n);
    c[n] = 0;
    free(t->id_to_tok[id]);
    t->id_to_tok[id] = c;
    return true;
}

/* Shared by the JSON and legacy loaders: id table, byte ids, added-token sets, specials, cache. */
ftc_status ftc_tk_finish(ftc_tokenizer *t, ftc_err *err) {
    int32_t max_id = -1;
    for (size_t i = 0; i < t->vocab.cap; i++)
        if (t->vocab.keys[i] && t->vocab.vals[i] > max_id) max_id = t->vocab.vals[i];
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id > max_id) max_id = t->added[i].id;
    size_t n_ids = (size_t)(max_id + 1);
    t->id_to_tok = calloc(n_ids + 1, sizeof *t->id_to_tok);
    t->is_special = calloc(n_ids + 1, sizeof *t->is_special);
    if (!t->id_to_tok || !t->is_special) return NOMEM(err); /* n_ids stays 0: ftc_tokenizer_free reads it */
    t->n_ids = n_ids;
    for (size_t i = 0; i < t->vocab.cap; i++)
        if (t->vocab.keys[i] && !set_id_token(t, t->vocab.vals[i], t->vocab.keys[i], t->vocab.klen[i])) return NOMEM(err);
    for (size_t i = 0; i < t->n_added; i++) {
        if (!set_id_token(t, t->added[i].id, t->added[i].content, t->added[i].len)) return NOMEM(err);
        if (t->added[i].special) t->is_special[t->added[i].id] = true;
    }
    /* ids no token uses stay NULL: decode drops them as HF does, id_to_token gives "" */
    if (!t->is_wordpiece) {
        if (t->pre_bytelevel && t->byte_fallback)
            return ftc_errf(err, FTC_E_UNSUPPORTED, "unsupported: byte_fallback together with a ByteLevel pre_tokenizer");
        for (int b = 0; b < 256; b++) {
            char s[8];
            if (t->pre_bytelevel) {
                tk_buf x = {0};
                if (!ftc_tk_buf_put_cp(&x, ftc_tk_byte_to_cp((uint8_t)b))) return NOMEM(err);
                t->byte_ids[b] = ftc_tk_map_get(&t->vocab, x.p, x.n);
                ftc_tk_buf_free(&x);
            } else if (t->byte_fallback) {
                snprintf(s, sizeof s, "<0x%02X>", b);
                t->byte_ids[b] = ftc_tk_map_get(&t->vocab, s, strlen(s));
            }
        }
        t->meta_boundaries = !t->pre_bytelevel && !t->ignore_merges;
        for (size_t i = 0; i < t->vocab.cap && t->meta_boundaries; i++) {
            const char *k = t->vocab.keys[i];
            if (!k) continue;
            bool other = false;
            for (size_t j = 0; j < t->vocab.klen[i];) {
                bool meta = j + 3 <= t->vocab.klen[i] && !memcmp(k + j, "\xE2\x96\x81", 3);
                if (meta && other) { t->meta_boundaries = false; break; }
                if (!meta) other = true;
                j += meta ? 3 : 1;
            }
        }
        t->cache = calloc(1 << 15, sizeof *t->cache);
        if (!t->cache) return NOMEM(err);
        t->cache_cap = 1 << 15; /* set once the entries exist: ftc_tokenizer_free walks them */
    } else {
        t->max_tok_len = 1;
        for (size_t i = 0; i < t->vocab.cap; i++)
            if (t->vocab.keys[i] && t->vocab.klen[i] > t->max_tok_len) t->max_tok_len = t->vocab.klen[i];
    }
    if (!build_set(t, &t->raw_set, false) || !build_set(t, &t->norm_set, true)) return NOMEM(err);
    /* special ids by their usual spellings */
    ftc_special_ids *sp = &t->specials;
    *sp = (ftc_special_ids){-1, -1, -1, -1, -1, -1, -1};
    struct { int32_t *dst; const char *names[5]; } table[] = {
        {&sp->bos, {"<s>", "<|begin_of_text|>", "<|endoftext|>", "<|im_start|>", NULL}},
        {&sp->eos, {"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>", NULL}},
        {&sp->pad, {"[PAD]", "<pad>", "<|pad|>", NULL, NULL}},
        {&sp->unk, {"[UNK]", "<unk>", "<|unk|>", NULL, NULL}},
        {&sp->cls, {"[CLS]", "<cls>", NULL, NULL, NULL}},
        {&sp->sep, {"[SEP]", "<sep>", NULL, NULL, NULL}},
        {&sp->mask, {"[MASK]", "<mask>", NULL, NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        for (int k = 0; k < 5 && table[i].names[k] && *table[i].dst < 0; k++)
            *table[i].dst = ftc_tokenizer_token_to_id(t, table[i].names[k]);
    if (sp->unk < 0) sp->unk = t->unk_id;
    return FTC_OK;
}

static ftc_status load_model(json_t *m, ftc_tokenizer *t, ftc_err *err) {
    if (!json_is_object(m)) return ftc_errf(err, FTC_E_INPUT, "\"model\": expected an object");
    const char *type = jstr(m, "type");
    json_t *vocab = json_object_get(m, "vocab");
    if (!type) type = json_object_get(m, "merges") ? "BPE" : "WordPiece";
    if (strcmp(type, "BPE") && strcmp(type, "WordPiece")) return ftc_errf(err, FTC_E_UNSUPPORTED, "unsupported: model %s", type);
    if (!json_is_object(vocab)) return ftc_errf(err, FTC_E_INPUT, "model %s: \"vocab\" must be an object", type);
    const char *k;
    json_t *v;
    json_object_foreach(vocab, k, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 10000000)
            return ftc_errf(err, FTC_E_INPUT, "model %s: vocab entry '%.100s' has no valid id", type, k);
        if (!ftc_tk_map_put(&t->vocab, k, strlen(k), (int32_t)json_integer_value(v))) return NOMEM(err);
    }
    const char *unk = jstr(m, "unk_token");
    if (unk) t->unk_id = ftc_tk_map_get(&t->vocab, unk, strlen(unk));
    if (!strcmp(type, "WordPiece")) {
        t->is_wordpiece = true;
        const char *p = jstr(m, "continuing_subword_prefix");
        if (!(t->wp_prefix = xstrdup(p ? p : "##"))) return NOMEM(err);
        t->wp_prefix_len = strlen(t->wp_prefix);
        json_t *mx = json_object_get(m, "max_input_chars_per_word");
        if (json_is_integer(mx)) t->max_input_chars = (int)json_integer_value(mx);
        if (t->unk_id < 0) return ftc_errf(err, FTC_E_INPUT, "model WordPiece: unk_token '%s' is not in the vocab", unk ? unk : "");
        return FTC_OK;
    }
    json_t *dr = json_object_get(m, "dropout");
    if (json_is_number(dr) && json_number_value(dr) > 0) return ftc_errf(err, FTC_E_UNSUPPORTED, "unsupported: BPE dropout");
    const char *csp = jstr(m, "continuing_subword_prefix"), *eow = jstr(m, "end_of_word_suffix");
    if ((csp && *csp) || (eow && *eow))
        return ftc_errf(err, FTC_E_UNSUPPORTED, "unsupported: BPE continuing_subword_prefix/end_of_word_suffix");
    t->byte_fallback = jbool(m, "byte_fallback", false);
    t->fuse_unk = jbool(m, "fuse_unk", false);
    t->ignore_merges = jbool(m, "ignore_merges", false);
    json_t *merges = json_object_get(m, "merges");
    if (!json_is_array(merges)) return ftc_errf(err, FTC_E_INPUT, "model BPE: \"merges\" must be a list");
    tk_buf joined = {0};
    for (size_t i = 0; i < json_array_size(merges); i++) {
        json_t *e = json_array_get(merges, i);
        const char *a, *b;
        size_t al, bl;
        if (json_is_string(e)) {
            a = json_string_value(e);
            const char *sp = strchr(a, ' ');
            if (!sp) { ftc_tk_buf_free(&joined); return ftc_errf(err, FTC_E_INPUT, "model BPE: merge %zu '%.100s' has no space", i, a); }
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = strlen(b);
        } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            a = json_string_value(json_array_get(e, 0));
            b = json_string_value(json_array_get(e, 1));
            al = strlen(a);
            bl = strlen(b);
        } else { ftc_tk_buf_free(&joined); return ftc_errf(err, FTC_E_INPUT, "model BPE: merge %zu is not \"a b\" or [a, b]", i); }
        int32_t ia = ftc_tk_map_get(&t->vocab, a, al), ib = ftc_tk_map_get(&t->vocab, b, bl);
        joined.n = 0;
        if (!ftc_tk_buf_put(&joined, a, al) || !ftc_tk_buf_put(&joined, b, bl)) { ftc_tk_buf_free(&joined); return NOMEM(err); }
        int32_t im = ftc_tk_map_get(&t->vocab, joined.p, joined.n);
        if (ia < 0 || ib < 0 || im < 0) {
            ftc_errf(err, FTC_E_INPUT, "model BPE: merge %zu ('%.*s' '%.*s') uses a token missing from the vocab", i,
                     (int)(al > 100 ? 100 : al), a, (int)(bl > 100 ? 100 : bl), b);
            ftc_tk_buf_free(&joined);
            return FTC_E_INPUT;
        }
        if (!ftc_tk_pairmap_put(&t->merges, ia, ib, (int32_t)i, im)) { ftc_tk_buf_free(&joined); return NOMEM(err); }
    }
    ftc_tk_buf_free(&joined);
    return FTC_OK;
}

static ftc_status load_json(json_t *root, ftc_tokenizer *t, ftc_err *err) {
    ftc_status st;
    json_t *x;
    if (!json_is_object(root)) return ftc_errf(err, FTC_E_INPUT, "expected a JSON object at the top level");
    if ((st = load_model(json_object_get(root, "model"), t, err))) return ftc_err_prefix(err, "field \"model\"");
    if ((x = json_object_get(root, "normalizer")) && !json_is_null(x)) {
        if (!(t->norm = calloc(1, sizeof *t->norm))) return NOMEM(err);
        if ((st = load_normalizer(x, t->norm, err))) return ftc_err_prefix(err, "field \"normalizer\"");
    }
    if ((x = json_object_get(root, "pre_tokenizer")) && !json_is_null(x)) {
        if (!(t->pre = calloc(1, sizeof *t->pre))) return NOMEM(err);
        if ((st = load_pretok(x, t->pre, err))) return ftc_err_prefix(err, "field \"pre_tokenizer\"");
        if ((st = check_bytelevel_last(t->pre, &t->pre_bytelevel, err))) return ftc_err_prefix(err, "field \"pre_tokenizer\"");
    }
    if ((x = json_object_get(root, "post_processor")) && !json_is_null(x))
        if ((st = load_post(x, &t->post, &t->has_post, err))) return ftc_err_prefix(err, "field \"post_processor\"");
    if ((x = json_object_get(root, "decoder")) && !json_is_null(x)) {
        if (!(t->dec = calloc(1, sizeof *t->dec))) return NOMEM(err);
        if ((st = load_decoder(x, t->dec, err))) return ftc_err_prefix(err, "field \"decoder\"");
    }
    x = json_object_get(root, "added_tokens");
    if (x && !json_is_array(x)) return ftc_errf(err, FTC_E_INPUT, "field \"added_tokens\": expected a list");
    size_t na = json_array_size(x);
    t->added = calloc(na + 1, sizeof *t->added);
    if (!t->added) return NOMEM(err);
    for (size_t i = 0; i < na; i++) {
        json_t *e = json_array_get(x, i);
        const char *c = jstr(e, "content");
        json_t *id = json_object_get(e, "id");
        if (!c || !json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > 10000000)
            return ftc_errf(err, FTC_E_INPUT, "field \"added_tokens\"[%zu]: needs \"content\" and a valid \"id\"", i);
        tk_added *a = &t->added[t->n_added++];
        if (!(a->content = xstrdup(c))) return NOMEM(err);
        a->len = strlen(c);
        a->id = (int32_t)json_integer_value(id);
        a->special = jbool(e, "special", false);
        a->single_word = jbool(e, "single_word", false);
        a->lstrip = jbool(e, "lstrip", false);
        a->rstrip = jbool(e, "rstrip", false);
        a->normalized = jbool(e, "normalized", !a->special);
    }
    return ftc_tk_finish(t, err);
}

ftc_status ftc_tokenizer_from_json(const char *json, size_t len, const char *name, ftc_tokenizer **out, ftc_err *err) {
    *out = NULL;
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &je);
    if (!root && json_error_code(&je) == json_error_out_of_memory)
        return ftc_errf(err, FTC_E_NOMEM, "%s: out of memory while parsing JSON", name ? name : "tokenizer.json");
    if (!root)
        return ftc_errf(err, FTC_E_INPUT, "%s: line %d column %d: %s", name ? name : "tokenizer.json", je.line,
                        je.column, je.text);
    ftc_tokenizer *t = ftc_tk_alloc(name);
    if (!t) { json_decref(root); return NOMEM(err); }
    ftc_status st = load_json(root, t, err);
    json_decref(root);
    if (st) {
        ftc_err_prefix(err, "%s", name ? name : "tokenizer.json");
        ftc_tokenizer_free(t);
        return st;
    }
    *out = t;
    return FTC_OK;
}

/* Picks bos/eos/pad/... from tokenizer_config.json when it names them. A file that is there but is not a
 * JSON object is an error: ignoring it would tokenize without the specials it names. */
static ftc_status apply_config_specials(ftc_tokenizer *t, const char *dir, ftc_err *err) {
    char p[4096];
    if (!ftc_path_join(p, sizeof p, dir, "tokenizer_config.json") || !ftc_file_exists(p)) return FTC_OK;
    json_t *root;
    ftc_status st = ftc_json_load_object(p, &root, err);
    if (st) return st;
    struct { const char *key; int32_t *dst; } keys[] = {
        {"bos_token", &t->specials.bos}, {"eos_token", &t->specials.eos}, {"pad_token", &t->specials.pad},
        {"unk_token", &t->specials.unk}, {"cls_token", &t->specials.cls}, {"sep_token", &t->specials.sep},
        {"mask_token", &t->specials.mask}};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        json_t *v = json_object_get(root, keys[i].key);
        const char *s = json_is_string(v) ? json_string_value(v) : json_is_object(v) ? jstr(v, "content") : NULL;
        int32_t id = s ? ftc_tokenizer_token_to_id(t, s) : -1;
        if (id >= 0) *keys[i].dst = id;
    }
    json_decref(root);
    return FTC_OK;
}

ftc_status ftc_tokenizer_load(const char *dir, ftc_tokenizer **out, ftc_err *err) {
    char p[4096];
    *out = NULL;
    if (!ftc_is_dir(dir)) return ftc_errf(err, FTC_E_IO, "%s: not a directory", dir);
    ftc_status st;
    if (ftc_path_join(p, sizeof p, dir, "tokenizer.json") && ftc_file_exists(p)) {
        char *text = NULL;
        size_t len = 0;
        if ((st = ftc_read_file(p, &text, &len, err))) return st;
        st = ftc_tokenizer_from_json(text, len, p, out, err);
        free(text);
    } else st = ftc_tk_load_legacy(dir, out, err);
    if (!st && (st = apply_config_specials(*out, dir, err))) {
        ftc_tokenizer_free(*out);
        *out = NULL;
    }
    return st;
}

/* ---------------- encode ---------------- */
static bool is_word_char(uint32_t c) { return c == '_' || ftc_tk_is_alnum(c); }

typedef bool (*seg_cb)(void *ctx, const char *s, size_t n, size_t off, int32_t added_id);

/* Splits s by the added tokens of set (leftmost-longest, as HF's Aho-Corasick), with single_word/lstrip/rstrip. */
static bool split_added(const tk_added_set *set, const char *s, size_t n, size_t base, seg_cb cb, void *ctx) {
    size_t start_offset = 0, i = 0;
    if (!set->n) return n ? cb(ctx, s, n, base, -1) : true;
    while (i < n) {
        uint8_t b = (uint8_t)s[i];
        const tk_added *m = NULL;
        for (int32_t k = set->first[b]; k < set->first[b + 1]; k++) {
            const tk_added *a = set->toks[k];
            if (a->len <= n - i && !memcmp(s + i, a->content, a->len)) { m = a; break; }
        }
        if (!m) { i++; continue; }
        size_t start = i, stop = i + m->len;
        if (m->single_word) {
            uint32_t c;
            bool ok = true;
            if (start > 0) {
                size_t j = start - 1;
                while (j > 0 && ((uint8_t)s[j] & 0xC0) == 0x80) j--;
                if (ftc_tk_utf8_next(s, n, j, &c) && is_word_char(c)) ok = false;
            }
            if (stop < n && ftc_tk_utf8_next(s, n, stop, &c) && is_word_char(c)) ok = false;
            if (!ok) { i = stop; continue; }
        }
        if (m->lstrip) {
            size_t j = start;
            while (j > start_offset) {
                size_t k = j - 1;
                while (k > start_offset && ((uint8_t)s[k] & 0xC0) == 0x80) k--;
                uint32_t c;
                if (!ftc_tk_utf8_next(s, n, k, &c) || !ftc_tk_is_whitespace(c)) break;
                j = k;
            }
            start = j;
        }
        if (m->rstrip) {
            uint32_t c;
            int l;
            while (stop < n && (l = ftc_tk_utf8_next(s, n, stop, &c)) && ftc_tk_is_whitespace(c)) stop += (size_t)l;
        }
        if (start_offset < start && !cb(ctx, s + start_offset, start - start_offset, base + start_offset, -1)) return false;
        if (!cb(ctx, s + start, stop - start, base + start, m->id)) return false;
        start_offset = i = stop;
    }
    if (start_offset < n) return cb(ctx, s + start_offset, n - start_offset, base + start_offset, -1);
    return true;
}

typedef struct {
    const ftc_tokenizer *t;
    ftc_ids *out;
    ftc_err *err;
    ftc_status st;
    bool at_start; /* the current normalized segment starts the original input */
} enc_ctx;

static bool on_norm_seg(void *v, const char *s, size_t n, size_t off, int32_t id) {
    enc_ctx *c = v;
    if (id >= 0) {
        if (!ftc_tk_ids_push(c->out, id)) { c->st = NOMEM(c->err); return false; }
        return true;
    }
    tk_pieces p = {0};
    if (!ftc_tk_buf_put(&p.text, s, n) || !ftc_tk_pieces_add(&p, 0, n)) { ftc_tk_pieces_free(&p); c->st = NOMEM(c->err); return false; }
    c->st = ftc_tk_pretokenize(c->t->pre, &p, c->at_start && off == 0, c->err);
    for (size_t i = 0; i < p.n && !c->st; i++)
        c->st = ftc_tk_model_encode(c->t, p.text.p + p.start[i], p.end[i] - p.start[i], c->t->pre_bytelevel, c->out, c->err);
    ftc_tk_pieces_free(&p);
    return c->st == FTC_OK;
}

static bool on_raw_seg(void *v, const char *s, size_t n, size_t off, int32_t id) {
    enc_ctx *c = v;
    if (id >= 0) {
        if (!ftc_tk_ids_push(c->out, id)) { c->st = NOMEM(c->err); return false; }
        return true;
    }
    tk_buf norm = {0};
    c->st = ftc_tk_normalize(c->t->norm, s, n, &norm, c->err);
    if (!c->st) {
        c->at_start = off == 0;
        split_added(&c->t->norm_set, norm.p ? norm.p : "", norm.n, 0, on_norm_seg, c);
    }
    ftc_tk_buf_free(&norm);
    return c->st == FTC_OK;
}

/* Ids of text without special tokens. */
static ftc_status encode_plain(const ftc_tokenizer *t, const char *text, size_t len, ftc_ids *out, ftc_err *err) {
    size_t bad = ftc_tk_utf8_check(text, len);
    if (bad != len) return ftc_errf(err, FTC_E_INPUT, "invalid UTF-8 in the text at byte %zu", bad);
    enc_ctx c = {t, out, err, FTC_OK, true};
    split_added(&t->raw_set, text, len, 0, on_raw_seg, &c);
    return c.st;
}

static size_t count_specials(const tk_tmpl_item *it, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) if (!it[i].is_seq) k += it[i].n_ids;
    return k;
}

static ftc_status apply_template(const tk_tmpl_item *it, size_t n, const ftc_ids *a, const ftc_ids *b, ftc_ids *out,
                                 ftc_ids *types, ftc_err *err) {
    for (size_t i = 0; i < n; i++) {
        const int32_t *src = it[i].ids;
        size_t m = it[i].n_ids;
        if (it[i].is_seq) {
            const ftc_ids *x = it[i].seq ? b : a;
            src = x ? x->ids : NULL;
            m = x ? x->n : 0;
        }
        for (size_t k = 0; k < m; k++)
            if (!ftc_tk_ids_push(out, src[k]) || (types && !ftc_tk_ids_push(types, it[i].type_id))) return NOMEM(err);
    }
    return FTC_OK;
}

ftc_status ftc_tokenizer_encode(const ftc_tokenizer *t, const char *text, size_t len, bool add_special, int max_len,
                                ftc_ids *out, ftc_err *err) {
    ftc_ids a = {0};
    ftc_status st = encode_plain(t, text, len, &a, err);
    if (!st) {
        bool post = add_special && t->has_post;
        size_t budget = (size_t)-1;
        if (max_len > 0) {
            size_t sp = post ? count_specials(t->post.single, t->post.n_single) : 0;
            budget = (size_t)max_len > sp ? (size_t)max_len - sp : 0;
        }
        if (a.n > budget) a.n = budget;
        size_t n0 = out->n;
        if (post) st = apply_template(t->post.single, t->post.n_single, &a, NULL, out, NULL, err);
        else
            for (size_t i = 0; i < a.n && !st; i++)
                if (!ftc_tk_ids_push(out, a.ids[i])) st = NOMEM(err);
        if (st) out->n = n0;
    }
    ftc_ids_free(&a);
    return st;
}

/* A batch in chunks of BATCH_CHUNK texts on the pool; the first failing text (lowest index) is the one reported. */
enum { BATCH_CHUNK = 16 };
typedef struct {
    const ftc_tokenizer *t;
    const char *const *texts;
    const size_t *lens;
    size_t n;
    bool add_special;
    int max_len;
    ftc_ids *outs;
    pthread_mutex_t lock; /* guards first_bad, first_err */
    long first_bad;
    ftc_err first_err;
} batch_job;

static void encode_chunk(void *ctx, int c) {
    batch_job *j = ctx;
    size_t end = ((size_t)c + 1) * BATCH_CHUNK < j->n ? ((size_t)c + 1) * BATCH_CHUNK : j->n;
    for (size_t i = (size_t)c * BATCH_CHUNK; i < end; i++) {
        ftc_err e;
        if (ftc_tokenizer_encode(j->t, j->texts[i], j->lens[i], j->add_special, j->max_len, &j->outs[i], &e)) {
            pthread_mutex_lock(&j->lock);
            if (j->first_bad < 0 || (long)i < j->first_bad) j->first_bad = (long)i, j->first_err = e;
            pthread_mutex_unlock(&j->lock);
            break; /* a later text of this chunk cannot be the first failure */
        }
    }
}

ftc_status ftc_tokenizer_encode_batch(const ftc_tokenizer *t, const char *const *texts, const size_t *lens, size_t n,
                                      bool add_special, int max_len, ftc_ids *outs, int n_threads, ftc_err *err) {
    size_t *n0 = malloc((n ? n : 1) * sizeof *n0);
    if (!n0) return NOMEM(err);
    for (size_t i = 0; i < n; i++) n0[i] = outs[i].n;
    batch_job j = {t, texts, lens, n, add_special, max_len, outs, PTHREAD_MUTEX_INITIALIZER, -1, {FTC_OK, ""}};
    int chunks = (int)((n + BATCH_CHUNK - 1) / BATCH_CHUNK);
    if (n_threads == 1)
        for (int c = 0; c < chunks; c++) encode_chunk(&j, c);
    else
        ftc_parallel_for(chunks, encode_chunk, &j);
    pthread_mutex_destroy(&j.lock);
    ftc_status st = FTC_OK;
    if (j.first_bad >= 0) {
        for (size_t i = 0; i < n; i++) outs[i].n = n0[i];
        if (err) *err = j.first_err;
        st = ftc_err_prefix(err, "text %ld", j.first_bad);
        if (!err) st = j.first_err.code;
    }
    free(n0);
    return st;
}

ftc_status ftc_tokenizer_encode_pair(const ftc_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                                     int max_len, ftc_ids *out, ftc_ids *type_ids, ftc_err *err) {
    ftc_ids x = {0}, y = {0};
    ftc_status st = encode_plain(t, a, alen, &x, err);
    if (!st) st = encode_plain(t, b, blen, &y, err);
    if (!st && max_len > 0) {
        size_t sp = t->has_post ? count_specials(t->post.pair, t->post.n_pair) : 0;
        size_t mx = (size_t)max_len > sp ? (size_t)max_len - sp : 0;
        if (x.n + y.n > mx) { /* HF's LongestFirst */
            size_t n1 = x.n, n2 = y.n;
            bool swap = n1 > n2;
            if (swap) { size_t tmp = n1; n1 = n2; n2 = tmp; }
            if (n1 > mx) n2 = n1;
            else n2 = n1 > mx - n1 ? n1 : mx - n1;
            if (n1 + n2 > mx) { n1 = mx / 2; n2 = n1 + mx % 2; }
            if (swap) { size_t tmp = n1; n1 = n2; n2 = tmp; }
            if (x.n > n1) x.n = n1;
            if (y.n > n2) y.n = n2;
        }
    }
    if (!st) {
        size_t n0 = out->n, t0 = type_ids ? type_ids->n : 0;
        if (t->has_post) st = apply_template(t->post.pair, t->post.n_pair, &x, &y, out, type_ids, err);
        else {
            tk_tmpl_item plain[2] = {{.is_seq = true, .seq = 0}, {.is_seq = true, .seq = 1, .type_id = 1}};
            st = apply_template(plain, 2, &x, &y, out, type_ids, err);
        }
        if (st) { out->n = n0; if (type_ids) type_ids->n = t0; }
    }
    ftc_ids_free(&x);
    ftc_ids_free(&y);
    return st;
}

/* ---------------- decode ---------------- */
ftc_status ftc_tokenizer_decode(const ftc_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **out,
                                ftc_err *err) {
    *out = NULL;
    tk_buf *toks = calloc(n + 1, sizeof *toks);
    if (!toks) return NOMEM(err);
    size_t k = 0;
    ftc_status st = FTC_OK;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || (size_t)id >= t->n_ids) continue; /* HF drops unknown ids */
        if (skip_special && t->is_special[id]) continue;
        const char *s = t->id_to_tok[id];
        if (!s) continue;
        if (!ftc_tk_buf_put(&toks[k], s, strlen(s))) { st = NOMEM(err); k++; goto done; }
        k++;
    }
    tk_buf res = {0};
    if (t->dec) st = ftc_tk_decode_tokens(t->dec, toks, &k, err);
    if (!st) {
        for (size_t i = 0; i < k; i++) {
            if (!t->dec && i && !ftc_tk_buf_putc(&res, ' ')) { st = NOMEM(err); break; }
            if (!ftc_tk_buf_put(&res, toks[i].p, toks[i].n)) { st = NOMEM(err); break; }
        }
        if (!st && !ftc_tk_buf_reserve(&res, 0)) st = NOMEM(err);
    }
    if (!st) { res.p[res.n] = 0; *out = res.p; }
    else ftc_tk_buf_free(&res);
done:
    for (size_t i = 0; i < n + 1; i++) ftc_tk_buf_free(&toks[i]);
    free(toks);
    return st;
}

/* ---------------- lookups ---------------- */
int ftc_tokenizer_vocab_size(const ftc_tokenizer *t) { return (int)t->n_ids; }
int32_t ftc_tokenizer_token_to_id(const ftc_tokenizer *t, const char *token) {
    size_t n = strlen(token);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && !memcmp(t->added[i].content, token, n)) return t->added[i].id;
    return ftc_tk_map_get(&t->vocab, token, n);
}
const char *ftc_tokenizer_id_to_token(const ftc_tokenizer *t, int32_t id) {
    if (id < 0 || (size_t)id >= t->n_ids) return NULL;
    return t->id_to_tok[id] ? t->id_to_tok[id] : "";
}
bool ftc_tokenizer_is_special(const ftc_tokenizer *t, int32_t id) {
    return id >= 0 && (size_t)id < t->n_ids && t->is_special[id];
}
ftc_special_ids ftc_tokenizer_special(const ftc_tokenizer *t) { return t->specials; }
