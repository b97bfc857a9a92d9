/* Streaming detokenization (ftc_text_stream): pushing ids one at a time and concatenating the pieces gives
 * exactly the text a whole decode gives, with multi-byte characters split over several tokens (GPT-2's
 * byte-level BPE, Llama's and stories260K's byte fallback) never emitted half, and SentencePiece's leading
 * space kept after a prompt but dropped right after BOS (as HF decode() and llama2.c print). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ftc/infer.h"
#include "ftc/tokenizer.h"

static ftc_tokenizer *load_tok(const char *rel) {
    const char *shared = getenv("FTC_SHARED_DATA");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", shared ? shared : "../shared/data", rel);
    if (access(dir, R_OK)) return NULL;
    ftc_tokenizer *t;
    ftc_err e;
    if (ftc_tokenizer_load(dir, &t, &e)) fail_msg("%s: %s", dir, e.msg);
    return t;
}

/* True when s is valid UTF-8 (no character cut in half). */
static bool valid_utf8(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p >> 5) == 6 ? 1 : (*p >> 4) == 14 ? 2 : (*p >> 3) == 30 ? 3 : -1;
        if (n < 0) return false;
        p++;
        for (int i = 0; i < n; i++, p++)
            if ((*p & 0xC0) != 0x80) return false;
    }
    return true;
}

/* Encodes prompt and continuation, streams the continuation's ids after the prompt's and checks the pieces
 * against decode(prompt + continuation) minus decode(prompt). Returns how many pushes emitted nothing. */
static int check_stream(const ftc_tokenizer *t, const char *prompt, const char *text) {
    ftc_err e;
    ftc_ids p = {0}, all = {0};
    size_t np = strlen(prompt), nt = strlen(text);
    char *joined = malloc(np + nt + 1);
    memcpy(joined, prompt, np), memcpy(joined + np, text, nt + 1);
    assert_int_equal(ftc_tokenizer_encode(t, prompt, np, true, 0, &p, &e), FTC_OK);
    assert_int_equal(ftc_tokenizer_encode(t, joined, np + nt, true, 0, &all, &e), FTC_OK);
    size_t k = 0; /* the prompt's ids are a prefix of the whole text's (we cut at a word boundary) */
    while (k < p.n && k < all.n && p.ids[k] == all.ids[k]) k++;
    char *head, *whole;
    assert_int_equal(ftc_tokenizer_decode(t, all.ids, k, true, &head, &e), FTC_OK);
    assert_int_equal(ftc_tokenizer_decode(t, all.ids, all.n, true, &whole, &e), FTC_OK);
    assert_int_equal(strncmp(head, whole, strlen(head)), 0);
    ftc_text_stream s;
    assert_int_equal(ftc_text_stream_init(&s, t, all.ids, k, &e), FTC_OK);
    size_t cap = strlen(whole) + 1, len = 0;
    char *got = calloc(1, cap);
    int held = 0;
    for (size_t i = k; i < all.n; i++) {
        char *piece;
        assert_int_equal(ftc_text_stream_push(&s, all.ids[i], &piece, &e), FTC_OK);
        assert_true(valid_utf8(piece));
        held += piece[0] == 0;
        assert_true(len + strlen(piece) < cap);
        memcpy(got + len, piece, strlen(piece) + 1);
        len += strlen(piece);
        free(piece);
    }
    char *tail;
    assert_int_equal(ftc_text_stream_flush(&s, &tail, &e), FTC_OK);
    assert_true(len + strlen(tail) < cap);
    memcpy(got + len, tail, strlen(tail) + 1);
    free(tail);
    assert_string_equal(got, whole + strlen(head));
    ftc_text_stream_free(&s);
    free(got), free(head), free(whole), free(joined), ftc_ids_free(&p), ftc_ids_free(&all);
    return held;
}

static const char *LONG =
    " café, naïve — “quoted” 日本語のテキスト 🙂👍 and plain words again; Größe ½ €5. More text follows here so the "
    "stream window moves along many tokens: one two three four five six seven eight nine ten eleven twelve "
    "thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty, then 中文 and emoji 🎉 at the end.";

static void test_gpt2_bytes(void **st) {
    (void)st;
    ftc_tokenizer *t = load_tok("tokenizers/gpt2");
    if (!t) skip();
    int held = check_stream(t, "Hello", LONG);
    assert_true(held > 0); /* some characters span several byte-level tokens: held back, then emitted whole */
    check_stream(t, "", "no prompt at all, 日本");
    ftc_tokenizer_free(t);
}

static void test_llama_byte_fallback(void **st) {
    (void)st;
    ftc_tokenizer *t = load_tok("tokenizers/llama2");
    if (!t) skip();
    assert_true(check_stream(t, "Once upon a time", LONG) > 0);
    check_stream(t, "", "Hello there 🙂"); /* after BOS alone: no leading space */
    ftc_tokenizer_free(t);
}

static void test_stories_byte_fallback(void **st) {
    (void)st;
    ftc_tokenizer *t = load_tok("models/stories260K-hf");
    if (!t) skip();
    assert_true(check_stream(t, "Lily", " saw a ball. 日本 ✓") > 0); /* 512 pieces: CJK is all byte fallback */
    ftc_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_bytes),
        cmocka_unit_test(test_llama_byte_fallback),
        cmocka_unit_test(test_stories_byte_fallback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
