/* GGUF: dequantization bit-identical to the gguf Python package for every type, typed metadata of
 * every value type, and one test per way a file can be wrong (tools/gen_gguf_fixtures.py). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/gguf.h"

static const char *fixture(const char *rel) {
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    const char *src = getenv("FTC_SOURCE_DIR");
    snprintf(buf[k], sizeof buf[k], "%s/tests/fixtures/gguf/%s", src ? src : ".", rel);
    return buf[k];
}

static void test_dequant_matches_gguf_python(void **state) {
    (void)state;
    ftc_gguf *g;
    ftc_err e = {0};
    if (ftc_gguf_open(fixture("dequant.gguf"), &g, &e)) fail_msg("%s", e.msg);
    FILE *f = fopen(fixture("dequant.f32"), "rb");
    assert_non_null(f);
    typedef struct { const char *type; int tensors; int64_t values; double maxdiff; int bits_differ; } trow;
    trow row[32];
    int nrow = 0;
    for (int i = 0; i < ftc_gguf_tensor_count(g); i++) {
        const ftc_gguf_tensor *t = ftc_gguf_tensor_at(g, i);
        float *got = malloc(sizeof(float) * (size_t)t->numel), *want = malloc(sizeof(float) * (size_t)t->numel);
        assert_int_equal(fread(want, sizeof(float), (size_t)t->numel, f), (size_t)t->numel);
        if (ftc_gguf_to_f32(g, t, got, &e)) fail_msg("%s", e.msg);
        const char *tn = ftc_ggml_type_name(t->type);
        int r = 0;
        while (r < nrow && strcmp(row[r].type, tn)) r++;
        if (r == nrow) row[nrow++] = (trow){tn, 0, 0, 0, 0};
        row[r].tensors++;
        row[r].values += t->numel;
        for (int64_t k = 0; k < t->numel; k++) {
            double d = fabs((double)got[k] - (double)want[k]);
            if (isinf(want[k]) && got[k] == want[k]) d = 0;
            if (d > row[r].maxdiff || isnan(d)) row[r].maxdiff = isnan(d) ? INFINITY : d;
            row[r].bits_differ += memcmp(&got[k], &want[k], 4) != 0;
        }
        /* a row range gives the same values as the whole tensor */
        int64_t ne0 = t->shape[t->ndim - 1], rows = t->numel / ne0;
        if (rows > 1) {
            float *part = malloc(sizeof(float) * (size_t)ne0);
            if (ftc_gguf_rows_to_f32(g, t, rows - 1, 1, part, &e)) fail_msg("%s", e.msg);
            assert_memory_equal(part, got + (rows - 1) * ne0, sizeof(float) * (size_t)ne0);
            assert_int_equal(ftc_gguf_rows_to_f32(g, t, rows, 1, part, &e), FTC_E_INPUT);
            free(part);
        }
        free(got);
        free(want);
    }
    char extra;
    assert_int_equal(fread(&extra, 1, 1, f), 0); /* every expected value was compared */
    fclose(f);
    printf("  type   tensors  values  max|diff|  bits differ\n");
    for (int r = 0; r < nrow; r++)
        printf("  %-6s %7d %7lld  %9g  %d\n", row[r].type, row[r].tensors, (long long)row[r].values, row[r].maxdiff,
               row[r].bits_differ);
    assert_int_equal(nrow, 13); /* F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K */
    for (int r = 0; r < nrow; r++) {
        assert_true(row[r].maxdiff == 0);
        assert_int_equal(row[r].bits_differ, 0);
    }
    ftc_gguf_close(g);
}

static void test_metadata_every_type(void **state) {
    (void)state;
    ftc_gguf *g;
    ftc_err e = {0};
    if (ftc_gguf_open(fixture("meta.gguf"), &g, &e)) fail_msg("%s", e.msg);
    assert_int_equal(ftc_gguf_version(g), 3);
    assert_int_equal(ftc_gguf_alignment(g), 64);
    int64_t i;
    double d;
    bool b;
    const char *s;
    assert_int_equal(ftc_gguf_get_int(g, "t.u8", false, &i, &e), FTC_OK); assert_int_equal(i, 200);
    assert_int_equal(ftc_gguf_get_int(g, "t.i8", false, &i, &e), FTC_OK); assert_int_equal(i, -100);
    assert_int_equal(ftc_gguf_get_int(g, "t.u16", false, &i, &e), FTC_OK); assert_int_equal(i, 60000);
    assert_int_equal(ftc_gguf_get_int(g, "t.i16", false, &i, &e), FTC_OK); assert_int_equal(i, -30000);
    assert_int_equal(ftc_gguf_get_int(g, "t.u32", false, &i, &e), FTC_OK); assert_int_equal(i, 4000000000LL);
    assert_int_equal(ftc_gguf_get_int(g, "t.i32", false, &i, &e), FTC_OK); assert_int_equal(i, -2000000000LL);
    assert_int_equal(ftc_gguf_get_int(g, "t.i64", false, &i, &e), FTC_OK); assert_true(i == -(1LL << 40));
    assert_true(ftc_gguf_find(g, "t.u64")->u == (1ULL << 63) + 5);
    assert_int_equal(ftc_gguf_get_int(g, "t.u64", false, &i, &e), FTC_E_INPUT); /* too large for int64 */
    assert_non_null(strstr(e.msg, "'t.u64'"));
    assert_int_equal(ftc_gguf_get_float(g, "t.f32", false, &d, &e), FTC_OK); assert_true(d == 0.15625);
    assert_int_equal(ftc_gguf_get_float(g, "t.f64", false, &d, &e), FTC_OK); assert_true(d == 1e-300);
    assert_int_equal(ftc_gguf_get_bool(g, "t.bool", false, &b, &e), FTC_OK); assert_true(b);
    assert_int_equal(ftc_gguf_get_str(g, "t.str", false, &s, &e), FTC_OK);
    assert_string_equal(s, "h\xc3\xa9llo <|im_start|>");
    assert_int_equal(ftc_gguf_get_str(g, "general.architecture", false, &s, &e), FTC_OK);
    assert_string_equal(s, "llama");
    /* wrong type and absent keys name the key */
    assert_int_equal(ftc_gguf_get_str(g, "t.u8", false, &s, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "'t.u8' has type u8, expected string"));
    assert_int_equal(ftc_gguf_get_int(g, "nope", false, &i, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "missing metadata key 'nope'"));
    i = 42;
    assert_int_equal(ftc_gguf_get_int(g, "nope", true, &i, &e), FTC_OK);
    assert_int_equal(i, 42);
    const ftc_gguf_value *a = ftc_gguf_find(g, "t.arr_str");
    assert_int_equal(a->type, FTC_GGUF_ARRAY);
    assert_int_equal(a->arr.elem, FTC_GGUF_STRING);
    assert_int_equal(a->arr.n, 3);
    assert_string_equal(a->arr.items[0].str.s, "a");
    assert_int_equal(a->arr.items[1].str.len, 0);
    assert_string_equal(a->arr.items[2].str.s, "\xc3\xbc\xe2\x82\xac");
    a = ftc_gguf_find(g, "t.arr_i32");
    assert_int_equal(a->arr.n, 3);
    assert_int_equal(ftc_gguf_arr_int(a, 1), -7);
    assert_int_equal(ftc_gguf_arr_int(a, 2), 11);
    assert_true(ftc_gguf_arr_float(a, 0) == 3.0);
    a = ftc_gguf_find(g, "t.arr_f32");
    assert_true(ftc_gguf_arr_float(a, 1) == -2.25);
    a = ftc_gguf_find(g, "t.arr_bool");
    assert_int_equal(ftc_gguf_arr_int(a, 0), 1);
    assert_int_equal(ftc_gguf_arr_int(a, 1), 0);
    a = ftc_gguf_find(g, "t.arr_nested");
    assert_int_equal(a->arr.elem, FTC_GGUF_ARRAY);
    assert_int_equal(a->arr.n, 2);
    assert_int_equal(a->arr.items[0].arr.n, 2);
    assert_int_equal(ftc_gguf_arr_int(&a->arr.items[0], 1), 2);
    assert_int_equal(ftc_gguf_arr_int(&a->arr.items[1], 0), 3);
    /* tensors: row-major shapes, data aligned to 64 */
    assert_int_equal(ftc_gguf_tensor_count(g), 2);
    const ftc_gguf_tensor *t = ftc_gguf_find_tensor(g, "b");
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 3);
    assert_int_equal(t->offset % 64, 0);
    float v[6];
    assert_int_equal(ftc_gguf_to_f32(g, t, v, &e), FTC_OK);
    for (int k = 0; k < 6; k++) assert_true(v[k] == (float)k);
    assert_null(ftc_gguf_find_tensor(g, "c"));
    ftc_gguf_close(g);
}

/* ---- hand-built images for the malformed cases ---- */
typedef struct { uint8_t *b; size_t n, cap; } buf;
static void put(buf *x, const void *p, size_t n) {
    if (x->n + n > x->cap) { x->cap = (x->n + n) * 2 + 64; x->b = realloc(x->b, x->cap); }
    memcpy(x->b + x->n, p, n);
    x->n += n;
}
static void u32(buf *x, uint32_t v) { put(x, &v, 4); }
static void u64(buf *x, uint64_t v) { put(x, &v, 8); }
static void str(buf *x, const char *s) { u64(x, strlen(s)); put(x, s, strlen(s)); }
static void pad(buf *x, size_t align) { while (x->n % align) put(x, "", 1); }
static void header(buf *x, uint32_t version, uint64_t nt, uint64_t nkv) {
    put(x, "GGUF", 4);
    u32(x, version);
    u64(x, nt);
    u64(x, nkv);
}
static void tinfo(buf *x, const char *name, int nd, const uint64_t *ne, uint32_t type, uint64_t off) {
    str(x, name);
    u32(x, (uint32_t)nd);
    for (int i = 0; i < nd; i++) u64(x, ne[i]);
    u32(x, type);
    u64(x, off);
}

static void expect_error_buf(const buf *x, const char *want) {
    uint8_t *copy = malloc(x->n ? x->n : 1); /* exact size: ASan sees reads past the image */
    if (x->n) memcpy(copy, x->b, x->n);
    ftc_gguf *g = NULL;
    ftc_err e = {0};
    ftc_status st = ftc_gguf_parse_buffer(copy, x->n, "bad.gguf", &g, &e);
    if (st == FTC_OK || !strstr(e.msg, want) || !strstr(e.msg, "bad.gguf"))
        fail_msg("status %d, message '%s', wanted '%s'", st, e.msg, want);
    assert_null(g);
    free(copy);
}

/* A valid two-tensor file: F32 [4] at 0, Q8_0 [2,32] at 32. */
static buf valid_image(void) {
    buf x = {0};
    header(&x, 3, 2, 2);
    str(&x, "general.architecture"); u32(&x, FTC_GGUF_STRING); str(&x, "llama");
    str(&x, "tokens"); u32(&x, FTC_GGUF_ARRAY); u32(&x, FTC_GGUF_STRING); u64(&x, 2); str(&x, "a"); str(&x, "bc");
    uint64_t ne1[1] = {4}, ne2[2] = {32, 2};
    tinfo(&x, "w", 1, ne1, FTC_GGML_F32, 0);
    tinfo(&x, "q", 2, ne2, FTC_GGML_Q8_0, 32);
    pad(&x, 32);
    float w[4] = {1, 2, 3, 4};
    put(&x, w, 16);
    pad(&x, 32);
    uint8_t q[68] = {0};
    q[1] = 0x3c; /* d = 1.0 */
    q[2] = 5;
    put(&x, q, 68);
    return x;
}

static void test_valid_image_and_versions(void **state) {
    (void)state;
    buf x = valid_image();
    for (uint32_t v = 2; v <= 3; v++) {
        memcpy(x.b + 4, &v, 4);
        ftc_gguf *g;
        ftc_err e = {0};
        if (ftc_gguf_parse_buffer(x.b, x.n, "ok.gguf", &g, &e)) fail_msg("%s", e.msg);
        assert_int_equal(ftc_gguf_version(g), v);
        const ftc_gguf_tensor *t = ftc_gguf_find_tensor(g, "q");
        assert_int_equal(t->shape[0], 2);
        assert_int_equal(t->nbytes, 68);
        float out[64];
        assert_int_equal(ftc_gguf_to_f32(g, t, out, &e), FTC_OK);
        assert_true(out[0] == 5.0f && out[1] == 0.0f);
        ftc_gguf_close(g);
    }
    uint32_t v1 = 1, v4 = 4;
    memcpy(x.b + 4, &v1, 4);
    expect_error_buf(&x, "GGUF version 1");
    memcpy(x.b + 4, &v4, 4);
    expect_error_buf(&x, "bad version 4");
    free(x.b);
}

static void test_every_truncation_refused(void **state) {
    (void)state;
    buf x = valid_image();
    size_t full = x.n;
    for (size_t n = 0; n < full; n++) {
        x.n = n;
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, x.b, n);
        ftc_gguf *g = NULL;
        ftc_err e = {0};
        ftc_status st = ftc_gguf_parse_buffer(copy, n, "cut.gguf", &g, &e);
        if (st == FTC_OK) fail_msg("prefix of %zu/%zu bytes accepted", n, full);
        assert_non_null(strstr(e.msg, "cut.gguf"));
        if (n >= 24) /* past magic, version and counts: says what was cut */
            if (!strstr(e.msg, "truncated") && !strstr(e.msg, "past the end") && !strstr(e.msg, "overruns"))
                fail_msg("prefix %zu: '%s'", n, e.msg);
        free(copy);
    }
    free(x.b);
}

static void test_bad_magic_and_empty(void **state) {
    (void)state;
    buf x = {0};
    expect_error_buf(&x, "file is empty");
    put(&x, "GGML", 4);
    u32(&x, 3);
    expect_error_buf(&x, "bad magic");
    free(x.b);
}

static void test_counts_overrun(void **state) {
    (void)state;
    buf x = {0};
    header(&x, 3, 0, 1000000);
    expect_error_buf(&x, "metadata count 1000000 overruns the file");
    free(x.b);
    x = (buf){0};
    header(&x, 3, 1ULL << 60, 0);
    expect_error_buf(&x, "tensor count 1152921504606846976 overruns the file");
    free(x.b);
    x = (buf){0};
    header(&x, 3, 0, 1);
    str(&x, "k"); u32(&x, FTC_GGUF_ARRAY); u32(&x, FTC_GGUF_U32); u64(&x, 1ULL << 40);
    expect_error_buf(&x, "key 'k': array at byte");
    free(x.b);
}

static void test_string_past_end(void **state) {
    (void)state;
    buf x = {0};
    header(&x, 3, 0, 1);
    str(&x, "k"); u32(&x, FTC_GGUF_STRING); u64(&x, 100); put(&x, "abc", 3);
    expect_error_buf(&x, "string value of k at byte");
    expect_error_buf(&x, "string length 100 runs past the end");
    free(x.b);
    x = (buf){0};
    header(&x, 3, 0, 1);
    u64(&x, 1ULL << 62); put(&x, "key-and-more", 12);
    expect_error_buf(&x, "key of metadata entry 0");
    free(x.b);
}

static void test_unknown_value_type(void **state) {
    (void)state;
    buf x = {0};
    header(&x, 3, 0, 1);
    str(&x, "k"); u32(&x, 13); u32(&x, 0);
    expect_error_buf(&x, "key 'k': unknown value type 13");
    free(x.b);
    x = (buf){0};
    header(&x, 3, 0, 1);
    str(&x, "k"); u32(&x, FTC_GGUF_ARRAY); u32(&x, 99); u64(&x, 0);
    expect_error_buf(&x, "unknown element type 99");
    free(x.b);
    x = (buf){0};
    header(&x, 3, 0, 1);
    str(&x, "k"); u32(&x, FTC_GGUF_BOOL); put(&x, "\x02", 1);
    expect_error_buf(&x, "key 'k': bool at byte");
    free(x.b);
}

static void test_duplicates(void **state) {
    (void)state;
    buf x = {0};
    header(&x, 3, 0, 2);
    str(&x, "k"); u32(&x, FTC_GGUF_U8); put(&x, "\x01", 1);
    str(&x, "k"); u32(&x, FTC_GGUF_U8); put(&x, "\x02", 1);
    expect_error_buf(&x, "duplicate metadata key 'k'");
    free(x.b);
    x = (buf){0};
    header(&x, 3, 2, 0);
    uint64_t ne[1] = {4};
    tinfo(&x, "w", 1, ne, FTC_GGML_F32, 0);
    tinfo(&x, "w", 1, ne, FTC_GGML_F32, 32);
    pad(&x, 32);
    uint8_t z[64] = {0};
    put(&x, z, 64);
    expect_error_buf(&x, "duplicate tensor name 'w'");
    free(x.b);
}

static void one_tensor(buf *x, int nd, const uint64_t *ne, uint32_t type, uint64_t off, size_t data) {
    header(x, 3, 1, 0);
    tinfo(x, "w", nd, ne, type, off);
    pad(x, 32);
    uint8_t *z = calloc(1, data ? data : 1);
    put(x, z, data);
    free(z);
}

static void test_tensor_errors(void **state) {
    (void)state;
    uint64_t ne[2] = {4, 2}, neq[1] = {48};
    buf x = {0};
    one_tensor(&x, 1, ne, 17 + 100, 0, 64);
    expect_error_buf(&x, "tensor 'w': unknown ggml type 117");
    free(x.b); x = (buf){0};
    one_tensor(&x, 1, ne, FTC_GGML_F32, 8, 64);
    expect_error_buf(&x, "tensor 'w': offset 8 is not a multiple of the alignment 32");
    free(x.b); x = (buf){0};
    one_tensor(&x, 2, ne, FTC_GGML_F32, 0, 16); /* needs 32 bytes */
    expect_error_buf(&x, "tensor 'w': data [0, 32) runs past the end of the data section (16 bytes)");
    free(x.b); x = (buf){0};
    one_tensor(&x, 1, neq, FTC_GGML_Q4_0, 0, 64);
    expect_error_buf(&x, "tensor 'w': row length 48 is not a multiple of the Q4_0 block size 32");
    free(x.b); x = (buf){0};
    one_tensor(&x, 5, (uint64_t[5]){1, 1, 1, 1, 1}, FTC_GGML_F32, 0, 64);
    expect_error_buf(&x, "tensor 'w': 5 dimensions");
    free(x.b); x = (buf){0};
    one_tensor(&x, 0, ne, FTC_GGML_F32, 0, 64);
    expect_error_buf(&x, "tensor 'w': 0 dimensions");
    free(x.b); x = (buf){0};
    one_tensor(&x, 2, (uint64_t[2]){1ULL << 32, 1ULL << 32}, FTC_GGML_F32, 0, 64);
    expect_error_buf(&x, "tensor 'w': shape overflows");
    free(x.b); x = (buf){0};
    /* overlapping */
    header(&x, 3, 2, 0);
    tinfo(&x, "a", 1, (uint64_t[1]){16}, FTC_GGML_F32, 0);
    tinfo(&x, "b", 1, (uint64_t[1]){4}, FTC_GGML_F32, 32);
    pad(&x, 32);
    uint8_t z[64] = {0};
    put(&x, z, 64);
    expect_error_buf(&x, "tensor 'b' overlaps tensor 'a'");
    free(x.b); x = (buf){0};
    /* bad alignment values */
    header(&x, 3, 0, 1);
    str(&x, "general.alignment"); u32(&x, FTC_GGUF_U32); u32(&x, 48);
    expect_error_buf(&x, "'general.alignment' is 48, not a power of two");
    free(x.b); x = (buf){0};
    header(&x, 3, 0, 1);
    str(&x, "general.alignment"); u32(&x, FTC_GGUF_U64); u64(&x, 64);
    expect_error_buf(&x, "'general.alignment' has type u64, must be u32");
    free(x.b); x = (buf){0};
    /* a type the reader knows but cannot dequantize */
    one_tensor(&x, 1, (uint64_t[1]){256}, FTC_GGML_Q8_K, 0, 292);
    ftc_gguf *g;
    ftc_err e = {0};
    assert_int_equal(ftc_gguf_parse_buffer(x.b, x.n, "iq.gguf", &g, &e), FTC_OK);
    float out[256];
    assert_int_equal(ftc_gguf_to_f32(g, ftc_gguf_tensor_at(g, 0), out, &e), FTC_E_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "type Q8_K cannot be dequantized"));
    ftc_gguf_close(g);
    free(x.b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequant_matches_gguf_python), cmocka_unit_test(test_metadata_every_type),
        cmocka_unit_test(test_valid_image_and_versions),    cmocka_unit_test(test_every_truncation_refused),
        cmocka_unit_test(test_bad_magic_and_empty),         cmocka_unit_test(test_counts_overrun),
        cmocka_unit_test(test_string_past_end),             cmocka_unit_test(test_unknown_value_type),
        cmocka_unit_test(test_duplicates),                  cmocka_unit_test(test_tensor_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
