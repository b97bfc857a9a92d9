/* safetensors: round trips per dtype, sharded loading, and one test per way a file can be wrong. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ftc/safetensors.h"

static char tmpdir[64];

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ftc_st_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}
static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd);
}

/* A file image: 8-byte length + header + data. */
static uint8_t *image(const char *header, const void *data, size_t dlen, size_t *len) {
    size_t hl = strlen(header);
    *len = 8 + hl + dlen;
    uint8_t *b = malloc(*len);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    if (dlen) memcpy(b + 8 + hl, data, dlen);
    return b;
}

/* Parses header+data and asserts failure with a message containing want (and the tensor name). */
static void expect_error(const char *header, size_t dlen, const char *want) {
    uint8_t data[256] = {0};
    size_t len;
    uint8_t *b = image(header, data, dlen, &len);
    ftc_st_set *s = NULL;
    ftc_err e = {0};
    ftc_status st = ftc_st_parse_buffer(b, len, "bad.safetensors", &s, &e);
    if (st == FTC_OK || !strstr(e.msg, want) || !strstr(e.msg, "bad.safetensors"))
        fail_msg("header %s: status %d, message '%s', wanted '%s'", header, st, e.msg, want);
    assert_null(s);
    free(b);
}

static void test_round_trip_each_dtype(void **state) {
    (void)state;
    float f[6] = {1.0f, -2.5f, 3.14159265f, 1e-3f, 65504.0f, -0.0f};
    int64_t i64[3] = {1, -2, 1LL << 40};
    int32_t i32[2] = {7, -9};
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s2[1] = {2};
    ftc_err e;
    ftc_st_writer *w = ftc_st_writer_new();
    assert_int_equal(ftc_st_writer_metadata(w, "format", "pt", &e), FTC_OK);
    assert_int_equal(ftc_st_writer_add_f32_as(w, "a.f32", FTC_F32, 2, s23, f, &e), FTC_OK);
    assert_int_equal(ftc_st_writer_add_f32_as(w, "a.f16", FTC_F16, 2, s23, f, &e), FTC_OK);
    assert_int_equal(ftc_st_writer_add_f32_as(w, "a.bf16", FTC_BF16, 2, s23, f, &e), FTC_OK);
    assert_int_equal(ftc_st_writer_add(w, "ids", FTC_I64, 1, s3, i64, &e), FTC_OK);
    assert_int_equal(ftc_st_writer_add(w, "small", FTC_I32, 1, s2, i32, &e), FTC_OK);
    assert_int_equal(ftc_st_writer_add(w, "ids", FTC_I64, 1, s3, i64, &e), FTC_E_INPUT); /* duplicate */
    char path[128];
    snprintf(path, sizeof path, "%s/rt.safetensors", tmpdir);
    assert_int_equal(ftc_st_writer_write(w, path, &e), FTC_OK);
    ftc_st_writer_free(w);

    ftc_st_set *s;
    assert_int_equal(ftc_st_open(path, &s, &e), FTC_OK);
    assert_int_equal(ftc_st_count(s), 5);
    assert_string_equal(ftc_st_metadata(s, "format"), "pt");
    float out[6];
    assert_int_equal(ftc_st_load_f32(s, "a.f32", 2, s23, out, &e), FTC_OK);
    for (int i = 0; i < 6; i++) assert_true(out[i] == f[i]);
    assert_int_equal(ftc_st_load_f32(s, "a.f16", 2, s23, out, &e), FTC_OK);
    for (int i = 0; i < 6; i++) assert_true(fabsf(out[i] - f[i]) <= fabsf(f[i]) * (1.0f / 2048));
    assert_true(out[4] == 65504.0f && signbit(out[5]));
    assert_int_equal(ftc_st_load_f32(s, "a.bf16", 2, s23, out, &e), FTC_OK);
    for (int i = 0; i < 6; i++) assert_true(fabsf(out[i] - f[i]) <= fabsf(f[i]) * (1.0f / 256));
    const ftc_tensor_view *t = ftc_st_find(s, "ids");
    assert_non_null(t);
    assert_int_equal(t->dtype, FTC_I64);
    int64_t back[3];
    memcpy(back, t->data, sizeof back);
    assert_memory_equal(back, i64, sizeof back);
    t = ftc_st_find(s, "small");
    assert_memory_equal(t->data, i32, sizeof i32);
    /* wrong shape and missing tensor name the tensor */
    int64_t bad[2] = {3, 2};
    assert_int_equal(ftc_st_load_f32(s, "a.f32", 2, bad, out, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "'a.f32' has shape [2,3] but the config needs [3,2]"));
    assert_int_equal(ftc_st_load_f32(s, "nope", 2, bad, out, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "missing tensor 'nope'"));
    assert_int_equal(ftc_tensor_to_f32(ftc_st_find(s, "ids"), out, &e), FTC_E_INPUT);
    ftc_st_close(s);
    /* the header is padded so data starts 8-byte aligned */
    FILE *fp = fopen(path, "rb");
    uint64_t hl;
    assert_int_equal(fread(&hl, 8, 1, fp), 1);
    fclose(fp);
    assert_int_equal(hl % 8, 0);
}

static void test_half_conversions(void **state) {
    (void)state;
    assert_int_equal(ftc_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(ftc_f32_to_f16(65520.0f), 0x7c00);           /* rounds up to inf */
    assert_int_equal(ftc_f32_to_f16(5.9604645e-8f), 0x0001);      /* smallest subnormal */
    assert_true(ftc_f16_to_f32(0x0001) == 5.9604645e-8f);
    assert_int_equal(ftc_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie to even */
    assert_int_equal(ftc_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);  /* tie to even */
    assert_int_equal(ftc_f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
    assert_true(isnan(ftc_bf16_to_f32(ftc_f32_to_bf16(NAN))));
    for (uint32_t h = 0; h < 0x7c00; h++) assert_int_equal(ftc_f32_to_f16(ftc_f16_to_f32((uint16_t)h)), h);
}

static void test_sharded_checkpoint(void **state) {
    (void)state;
    float a[4] = {1, 2, 3, 4}, b[2] = {5, 6};
    int64_t s4[1] = {4}, s2[1] = {2};
    ftc_err e;
    char p[160];
    ftc_st_writer *w = ftc_st_writer_new();
    ftc_st_writer_add(w, "x.weight", FTC_F32, 1, s4, a, &e);
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", tmpdir);
    assert_int_equal(ftc_st_writer_write(w, p, &e), FTC_OK);
    ftc_st_writer_free(w);
    w = ftc_st_writer_new();
    ftc_st_writer_add(w, "y.weight", FTC_F32, 1, s2, b, &e);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", tmpdir);
    assert_int_equal(ftc_st_writer_write(w, p, &e), FTC_OK);
    ftc_st_writer_free(w);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", tmpdir);
    const char *idx = "{\"metadata\":{},\"weight_map\":{\"x.weight\":\"model-00001-of-00002.safetensors\","
                      "\"y.weight\":\"model-00002-of-00002.safetensors\"}}";
    assert_int_equal(ftc_write_file_atomic(p, idx, strlen(idx), &e), FTC_OK);
    ftc_st_set *s;
    assert_int_equal(ftc_st_open(tmpdir, &s, &e), FTC_OK);
    assert_int_equal(ftc_st_count(s), 2);
    float out[4];
    assert_int_equal(ftc_st_load_f32(s, "y.weight", 1, s2, out, &e), FTC_OK);
    assert_true(out[0] == 5 && out[1] == 6);
    ftc_st_close(s);
    /* an index that promises a tensor its shard lacks */
    const char *bad = "{\"weight_map\":{\"x.weight\":\"model-00001-of-00002.safetensors\","
                      "\"z.weight\":\"model-00001-of-00002.safetensors\"}}";
    assert_int_equal(ftc_write_file_atomic(p, bad, strlen(bad), &e), FTC_OK);
    assert_int_equal(ftc_st_open(tmpdir, &s, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "'z.weight'"));
    unlink(p);
}

static void test_empty_file(void **state) {
    (void)state;
    ftc_st_set *s;
    ftc_err e;
    assert_int_equal(ftc_st_parse_buffer((const uint8_t *)"", 0, "bad.safetensors", &s, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "bad.safetensors: file is empty"));
}
static void test_truncated_length(void **state) {
    (void)state;
    ftc_st_set *s;
    ftc_err e;
    assert_int_equal(ftc_st_parse_buffer((const uint8_t *)"\x10\0\0", 3, "bad.safetensors", &s, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "truncated: 3 bytes"));
}
static void test_header_larger_than_file(void **state) {
    (void)state;
    uint8_t b[16] = {0x40, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    ftc_st_set *s;
    ftc_err e;
    assert_int_equal(ftc_st_parse_buffer(b, 10, "bad.safetensors", &s, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "header length 64 is larger than the file (10 bytes)"));
}
static void test_header_absurd(void **state) {
    (void)state;
    uint8_t b[16] = {0, 0, 0, 0, 0, 0, 0, 0x7f, '{', '}'};
    ftc_st_set *s;
    ftc_err e;
    assert_int_equal(ftc_st_parse_buffer(b, 10, "bad.safetensors", &s, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "is absurd"));
}
static void test_header_not_json(void **state) { (void)state; expect_error("{\"a\": [1,", 0, "header is not valid JSON"); }
static void test_header_not_object(void **state) { (void)state; expect_error("[1, 2]", 0, "header is not a JSON object"); }
static void test_unknown_dtype(void **state) {
    (void)state;
    expect_error("{\"w\":{\"dtype\":\"F8_E9\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "tensor 'w': unknown dtype 'F8_E9'");
}
static void test_shape_dtype_disagree(void **state) {
    (void)state;
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 16,
                 "tensor 'w': shape and dtype F32 need 24 bytes but data_offsets [0, 16] span 16");
}
static void test_range_out_of_file(void **state) {
    (void)state;
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
                 "tensor 'w': data_offsets [0, 16] out of range: the data section has 8 bytes");
}
static void test_overlap(void **state) {
    (void)state;
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "tensor 'b' overlaps tensor 'a'");
}
static void test_gap(void **state) {
    (void)state;
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "tensor 'b': gap of 4 bytes");
}
static void test_trailing_bytes(void **state) {
    (void)state;
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "4 bytes after the last tensor");
}
static void test_duplicate_names(void **state) {
    (void)state;
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate tensor name");
}
static void test_bad_entry(void **state) {
    (void)state;
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'w': entry needs");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0] is not a non-negative");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "0 <= begin <= end");
    expect_error("{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ value 'k' is not a string");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_each_dtype), cmocka_unit_test(test_half_conversions),
        cmocka_unit_test(test_sharded_checkpoint),    cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_truncated_length),      cmocka_unit_test(test_header_larger_than_file),
        cmocka_unit_test(test_header_absurd),         cmocka_unit_test(test_header_not_json),
        cmocka_unit_test(test_header_not_object),     cmocka_unit_test(test_unknown_dtype),
        cmocka_unit_test(test_shape_dtype_disagree),  cmocka_unit_test(test_range_out_of_file),
        cmocka_unit_test(test_overlap),               cmocka_unit_test(test_gap),
        cmocka_unit_test(test_trailing_bytes),        cmocka_unit_test(test_duplicate_names),
        cmocka_unit_test(test_bad_entry),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
