/* Internals of the tokenizer: strings, hash maps, Unicode helpers and the pipeline stages
 * (normalizer -> pre-tokenizer -> model -> post-processor; decoder) as HF tokenizers defines them. */
#ifndef FTC_TK_H
#define FTC_TK_H
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include "ftc/status.h"
#include "ftc/tokenizer.h"

/* ---- growable byte string ---- */
typedef struct {
    char *p;
    size_t n, cap;
} tk_buf;
bool ftc_tk_buf_reserve(tk_buf *b, size_t extra);
bool ftc_tk_buf_put(tk_buf *b, const void *s, size_t n);
bool ftc_tk_buf_putc(tk_buf *b, char c);
bool ftc_tk_buf_put_cp(tk_buf *b, uint32_t cp); /* UTF-8 encode */
void ftc_tk_buf_free(tk_buf *b);

/* ---- string -> int32 hash map (keys copied) ---- */
typedef struct {
    char **keys;
    uint32_t *klen;
    int32_t *vals;
    uint64_t *hashes;
    size_t cap, count;
} tk_map;
uint64_t ftc_tk_hash(const void *s, size_t n);
bool ftc_tk_map_put(tk_map *m, const char *k, size_t n, int32_t v); /* overwrites */
int32_t ftc_tk_map_get(const tk_map *m, const char *k, size_t n);  /* -1 if absent */
void ftc_tk_map_free(tk_map *m);

/* ---- (id,id) -> (rank,new id) for BPE merges ---- */
typedef struct {
    uint64_t *keys; /* (a<<32|b)+1, 0 = empty */
    int32_t *rank, *merged;
    size_t cap, count;
} tk_pairmap;
bool ftc_tk_pairmap_put(tk_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged);
bool ftc_tk_pairmap_get(const tk_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged);
void ftc_tk_pairmap_free(tk_pairmap *m);

/* ---- Unicode ---- */
/* Decodes one code point at s[i..n); returns its length (1..4), 0 if invalid UTF-8. */
int ftc_tk_utf8_next(const char *s, size_t n, size_t i, uint32_t *cp);
/* Index of the first invalid byte, or n when s is valid UTF-8. */
size_t ftc_tk_utf8_check(const char *s, size_t n);
bool ftc_tk_is_whitespace(uint32_t c);  /* Rust char::is_whitespace (Unicode White_Space) */
bool ftc_tk_is_alnum(uint32_t c);       /* Rust char::is_alphanumeric */
bool ftc_tk_is_punct_cat(uint32_t c);   /* general category P* */
bool ftc_tk_is_mark_nonspacing(uint32_t c);
bool ftc_tk_is_other(uint32_t c); /* Cc Cf Cs Co Cn */
/* Rust String::from_utf8_lossy: invalid maximal subparts become U+FFFD. */
bool ftc_tk_utf8_lossy(tk_buf *out, const uint8_t *s, size_t n);

/* ---- regex ---- */
typedef struct {
    pcre2_code *code;
    bool jit;
} tk_regex;
ftc_status ftc_tk_regex_compile(tk_regex *r, const char *pattern, size_t len, bool literal, ftc_err *err);
void ftc_tk_regex_free(tk_regex *r);
/* Finds non-overlapping matches in s; calls cb(start,end) per match. md: scratch (may be NULL). */
typedef bool (*tk_match_cb)(void *ctx, size_t start, size_t end);
bool ftc_tk_regex_each(const tk_regex *r, const char *s, size_t n, pcre2_match_data *md, tk_match_cb cb, void *ctx);

/* ---- pipeline stages ---- */
typedef enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS } tk_split_behavior;

typedef enum {
    NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_LOWERCASE, NORM_STRIP_ACCENTS, NORM_BERT, NORM_PREPEND,
    NORM_REPLACE, NORM_STRIP, NORM_SEQUENCE
} tk_norm_kind;
typedef struct tk_normalizer {
    tk_norm_kind kind;
    bool clean_text, chinese, strip_accents, lowercase; /* Bert */
    bool strip_left, strip_right;                       /* Strip */
    char *str;                                          /* Prepend text; Replace content */
    tk_regex re;                                        /* Replace pattern */
    struct tk_normalizer *items;
    size_t n_items;
} tk_normalizer;

typedef enum {
    PRE_BYTELEVEL, PRE_SPLIT, PRE_BERT, PRE_METASPACE, PRE_DIGITS, PRE_WHITESPACE, PRE_WHITESPACE_SPLIT,
    PRE_PUNCTUATION, PRE_SEQUENCE
} tk_pre_kind;
typedef struct tk_pretok {
    tk_pre_kind kind;
    bool add_prefix_space, use_regex;   /* ByteLevel */
    tk_regex re;                         /* Split, ByteLevel */
    tk_split_behavior behavior;          /* Split, Punctuation */
    bool invert;                         /* Split */
    bool individual_digits;              /* Digits */
    char replacement[8];                 /* Metaspace, UTF-8 */
    int prepend_scheme;                  /* Metaspace: 0 always, 1 first, 2 never */
    bool meta_split;
    struct tk_pretok *items;
    size_t n_items;
} tk_pretok;

typedef enum { DEC_BYTELEVEL, DEC_WORDPIECE, DEC_METASPACE, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP,
               DEC_BPE, DEC_SEQUENCE } tk_dec_kind;
typedef struct tk_decoder {
    tk_dec_kind kind;
    char *prefix;          /* WordPiece prefix; BPE suffix */
    bool cleanup;          /* WordPiece */
    char replacement[8];   /* Metaspace */
    int prepend_scheme;    /* Metaspace */
    char *pattern, *content; /* Replace (literal); Strip content */
    tk_regex re;             /* Replace with regex */
    bool regex;
    uint32_t strip_cp;
    int start, stop;         /* Strip */
    struct tk_decoder *items;
    size_t n_items;
} tk_decoder;

typedef struct {
    bool is_seq; /* Sequence A/B, else special token */
    int seq;     /* 0 = A, 1 = B */
    int type_id;
    int32_t *ids; /* special token ids */
    size_t n_ids;
} tk_tmpl_item;
typedef struct {
    tk_tmpl_item *single, *pair;
    size_t n_single, n_pair;
} tk_post;

typedef struct {
    char *content;
    size_t len;
    int32_t id;
    bool special, single_word, lstrip, rstrip, normalized;
} tk_added;

/* Added tokens of one kind (normalized or not), for leftmost-longest matching. */
typedef struct {
    tk_added **toks;  /* sorted by first byte, then longer first */
    size_t n;
    int32_t first[257]; /* toks[first[b]..first[b+1]) start with byte b */
} tk_added_set;

typedef struct {
    int32_t *ids;
    uint32_t n;
    char *key;
    uint32_t klen;
    uint64_t hash;
} tk_cache_entry;

struct ftc_tokenizer {
    char name[512];
    /* model */
    bool is_wordpiece;
    tk_map vocab;            /* model vocab */
    char **id_to_tok;        /* model + added tokens */
    size_t n_ids;            /* size of id_to_tok (max id + 1) */
    int32_t unk_id;
    /* BPE */
    tk_pairmap merges;
    bool byte_fallback, fuse_unk, ignore_merges;
    bool meta_boundaries; /* no vocab token has U+2581 after another char: words may be cut before it */
    int32_t byte_ids[256];   /* byte-level: id of the char standing for byte b; fallback: <0xXX> id */
    /* WordPiece */
    char *wp_prefix;
    size_t wp_prefix_len;
    int max_input_chars;
    size_t max_tok_len;
    /* stages */
    tk_normalizer *norm;
    tk_pretok *pre;
    bool pre_bytelevel; /* the pre-tokenizer ends with ByteLevel: pieces are raw bytes for the model */
    tk_post post;
    bool has_post;
    tk_decoder *dec;
    /* added tokens */
    tk_added *added;
    size_t n_added;
    tk_added_set raw_set, norm_set;
    bool *is_special; /* per id */
    ftc_special_ids specials;
    /* BPE word cache */
    pthread_mutex_t cache_lock;
    tk_cache_entry *cache;
    size_t cache_cap, cache_count;
};

/* A pre-tokenized segment: pieces as [start,end) into text. */
typedef struct {
    tk_buf text;
    size_t *start, *end;
    size_t n, cap;
} tk_pieces;
bool ftc_tk_pieces_add(tk_pieces *p, size_t s, size_t e);
void ftc_tk_pieces_free(tk_pieces *p);

ftc_status ftc_tk_normalize(const tk_normalizer *nz, const char *s, size_t n, tk_buf *out, ftc_err *err);
ftc_status ftc_tk_pretokenize(const tk_pretok *pt, tk_pieces *p, bool at_start, ftc_err *err);
ftc_status ftc_tk_model_encode(const ftc_tokenizer *t, const char *s, size_t n, bool raw_bytes, ftc_ids *out,
                           ftc_err *err);
ftc_status ftc_tk_decode_tokens(const tk_decoder *d, tk_buf *toks, size_t *n_toks, ftc_err *err);
bool ftc_tk_ids_push(ftc_ids *ids, int32_t v);

/* byte-level alphabet: byte b <-> code point */
uint32_t ftc_tk_byte_to_cp(uint8_t b);
int ftc_tk_cp_to_byte(uint32_t cp); /* -1 if not in the alphabet */

void ftc_tk_normalizer_free(tk_normalizer *n);
void ftc_tk_pretok_free(tk_pretok *p);
void ftc_tk_decoder_free(tk_decoder *d);

/* Builders for the older file sets (legacy.c) */
ftc_status ftc_tk_load_legacy(const char *dir, ftc_tokenizer **out, ftc_err *err);
ftc_status ftc_tk_finish(ftc_tokenizer *t, ftc_err *err); /* shared final setup after the stages are set */
ftc_tokenizer *ftc_tk_alloc(const char *name);
#endif
