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
#include <jansson.h>
#include "ftc/safetensors.h"
#include "lib/test_util.h"

static char tmpdir[64];

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

static void test_header_length_zero(void **state) {
    (void)state;
    uint8_t b[8] = {0};
    ftc_st_set *s;
    ftc_err e;
    assert_int_equal(ftc_st_parse_buffer(b, 8, "bad.safetensors", &s, &e), FTC_E_INPUT);
    assert_string_equal(e.msg, "bad.safetensors: header length is 0: no JSON header");
}
static void test_spec_dtype_we_do_not_read(void **state) {
    (void)state;
    /* a real safetensors dtype that ftc does not handle: named, with the list of those it reads */
    expect_error("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
                 "tensor 'w': unknown dtype 'F8_E4M3' (ftc reads F32, F16, BF16");
}
static void test_gap_before_first_tensor(void **state) {
    (void)state;
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                 "tensor 'a': gap of 4 bytes before it (data_offsets begin 4, previous tensor ends at 0)");
}
static void test_too_many_dims(void **state) {
    (void)state;
    expect_error("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
                 "tensor 'w': 9 dimensions (at most 8)");
}
static void test_offsets_not_integers(void **state) {
    (void)state;
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.0,4]}}", 4,
                 "tensor 'w': data_offsets must be integers");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, "tensor 'w': entry needs");
    expect_error("{\"w\":[1,2]}", 0, "tensor 'w': entry needs");
}
static void test_shape_overflow(void **state) {
    (void)state;
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
                 "tensor 'w': shape overflows");
}
static void test_load_f32_checks_rank(void **state) {
    (void)state;
    float v[4] = {1, 2, 3, 4}, out[4];
    size_t len;
    uint8_t *b = image("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", v, 16, &len);
    ftc_st_set *s;
    ftc_err e;
    assert_int_equal(ftc_st_parse_buffer(b, len, "m.safetensors", &s, &e), FTC_OK);
    int64_t want[2] = {2, 2};
    assert_int_equal(ftc_st_load_f32(s, "w", 2, want, out, &e), FTC_E_INPUT); /* same numel, other rank */
    assert_string_equal(e.msg, "m.safetensors: tensor 'w' has shape [4] but the config needs [2,2]");
    assert_int_equal(ftc_st_load_f32(s, "w", 1, want + 1, out, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "has shape [4] but the config needs [2]"));
    assert_int_equal(ftc_st_load_f32(s, "w.bias", 1, want, out, &e), FTC_E_INPUT);
    assert_string_equal(e.msg, "m.safetensors: missing tensor 'w.bias' that the config requires");
    ftc_st_close(s);
    free(b);
}

/* Two shards x.weight | y.weight and an index text; returns the status of opening tmpdir. */
static ftc_status open_with_index(const char *index_json, ftc_st_set **s, ftc_err *e) {
    float a[4] = {1, 2, 3, 4}, b[2] = {5, 6};
    int64_t s4[1] = {4}, s2[1] = {2};
    char p[160];
    ftc_st_writer *w = ftc_st_writer_new();
    assert_int_equal(ftc_st_writer_add(w, "x.weight", FTC_F32, 1, s4, a, e), FTC_OK);
    snprintf(p, sizeof p, "%s/s1.safetensors", tmpdir);
    assert_int_equal(ftc_st_writer_write(w, p, e), FTC_OK);
    ftc_st_writer_free(w);
    w = ftc_st_writer_new();
    assert_int_equal(ftc_st_writer_add(w, "y.weight", FTC_F32, 1, s2, b, e), FTC_OK);
    snprintf(p, sizeof p, "%s/s2.safetensors", tmpdir);
    assert_int_equal(ftc_st_writer_write(w, p, e), FTC_OK);
    ftc_st_writer_free(w);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", tmpdir);
    assert_int_equal(ftc_write_file_atomic(p, index_json, strlen(index_json), e), FTC_OK);
    ftc_status st = ftc_st_open(tmpdir, s, e);
    unlink(p);
    return st;
}

static void test_shard_errors(void **state) {
    (void)state;
    ftc_st_set *s;
    ftc_err e;
    /* the index promises a tensor its shard lacks, or names the wrong shard */
    assert_int_equal(open_with_index("{\"weight_map\":{\"x.weight\":\"s1.safetensors\",\"z\":\"s1.safetensors\"}}",
                                     &s, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "tensor 'z' listed in weight_map is missing from s1.safetensors"));
    assert_int_equal(open_with_index("{\"weight_map\":{\"x.weight\":\"s2.safetensors\",\"y.weight\":\"s1.safetensors\"}}",
                                     &s, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "weight_map puts tensor 'x.weight' in s2.safetensors but it is in"));
    /* a shard that is not there */
    assert_int_equal(open_with_index("{\"weight_map\":{\"x.weight\":\"s1.safetensors\",\"q\":\"s9.safetensors\"}}", &s,
                                     &e), FTC_E_IO);
    assert_non_null(strstr(e.msg, "s9.safetensors: cannot open"));
    /* shard names stay inside the directory */
    assert_int_equal(open_with_index("{\"weight_map\":{\"x.weight\":\"../s1.safetensors\"}}", &s, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "weight_map[\"x.weight\"] must be a file name in the same directory"));
    assert_int_equal(open_with_index("{\"weight_map\": [", &s, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "model.safetensors.index.json: line 1"));
    assert_int_equal(open_with_index("{\"metadata\":{}}", &s, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "missing object \"weight_map\""));
    /* the same tensor name in two shards */
    float v[2] = {7, 8};
    int64_t s2[1] = {2};
    char p[160];
    ftc_st_writer *w = ftc_st_writer_new();
    assert_int_equal(ftc_st_writer_add(w, "y.weight", FTC_F32, 1, s2, v, &e), FTC_OK);
    snprintf(p, sizeof p, "%s/s3.safetensors", tmpdir);
    assert_int_equal(ftc_st_writer_write(w, p, &e), FTC_OK);
    ftc_st_writer_free(w);
    assert_int_equal(open_with_index("{\"weight_map\":{\"y.weight\":\"s2.safetensors\",\"x\":\"s3.safetensors\"}}", &s,
                                     &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "tensor 'y.weight' appears in more than one shard"));
    unlink(p);
    /* a directory with neither file */
    assert_int_equal(ftc_st_open(tmpdir, &s, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "no model.safetensors or model.safetensors.index.json"));
}

static void test_writer_rejects_bad_tensors(void **state) {
    (void)state;
    ftc_st_writer *w = ftc_st_writer_new();
    ftc_err e;
    float v[2] = {1, 2};
    int64_t neg[1] = {-2}, two[1] = {2};
    assert_int_equal(ftc_st_writer_add(w, "n", FTC_F32, 1, neg, v, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "tensor 'n': bad shape[0] = -2"));
    assert_int_equal(ftc_st_writer_add(w, "__metadata__", FTC_F32, 1, two, v, &e), FTC_E_INPUT);
    assert_int_equal(ftc_st_writer_add(w, "nodata", FTC_F32, 1, two, NULL, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "tensor 'nodata': no data for 8 bytes"));
    assert_int_equal(ftc_st_writer_add_f32_as(w, "d", FTC_I32, 1, two, v, &e), FTC_E_INPUT);
    /* nothing half-added: an empty file results, valid and with no tensors */
    char p[160];
    snprintf(p, sizeof p, "%s/empty.safetensors", tmpdir);
    assert_int_equal(ftc_st_writer_write(w, p, &e), FTC_OK);
    ftc_st_writer_free(w);
    ftc_st_set *s;
    assert_int_equal(ftc_st_open(p, &s, &e), FTC_OK);
    assert_int_equal(ftc_st_count(s), 0);
    ftc_st_close(s);
    unlink(p);
}

/* The sample tools/check_safetensors_writer.py loads in Python: the same values are listed there. */
static const float SAMPLE[15] = {0.0f, -0.0f, 1.0f, -2.5f, 3.14159265f, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048,
                                 65504.0f, 65519.0f, 65520.0f, 1e-8f, 6.1e-5f, 1e30f, -1e-3f, 0.1f};
static void test_writer_sample_for_python(void **state) {
    (void)state;
    int64_t i64[4] = {0, -1, 1LL << 40, INT64_MIN};
    int32_t i32[4] = {1, -2, 2147483647, -2147483647 - 1};
    uint8_t u8[3] = {0, 127, 255};
    double f64[2] = {1.0 / 3, -1e300};
    int64_t s35[2] = {3, 5}, s4[1] = {4}, s22[2] = {2, 2}, s3[1] = {3}, s2[1] = {2}, s03[2] = {0, 3};
    ftc_err e;
    ftc_st_writer *w = ftc_st_writer_new();
    assert_int_equal(ftc_st_writer_metadata(w, "format", "pt", &e), FTC_OK);
    assert_int_equal(ftc_st_writer_metadata(w, "producer", "ftc \xc3\xa9", &e), FTC_OK); /* UTF-8 survives */
    assert_int_equal(ftc_st_writer_add_f32_as(w, "f32", FTC_F32, 2, s35, SAMPLE, &e), FTC_OK);
    assert_int_equal(ftc_st_writer_add_f32_as(w, "f16", FTC_F16, 2, s35, SAMPLE, &e), FTC_OK);
    assert_int_equal(ftc_st_writer_add_f32_as(w, "bf16", FTC_BF16, 2, s35, SAMPLE, &e), FTC_OK);
    assert_int_equal(ftc_st_writer_add(w, "i64", FTC_I64, 1, s4, i64, &e), FTC_OK);
    assert_int_equal(ftc_st_writer_add(w, "i32", FTC_I32, 2, s22, i32, &e), FTC_OK);
    assert_int_equal(ftc_st_writer_add(w, "u8", FTC_U8, 1, s3, u8, &e), FTC_OK);
    assert_int_equal(ftc_st_writer_add(w, "f64", FTC_F64, 1, s2, f64, &e), FTC_OK);
    assert_int_equal(ftc_st_writer_add(w, "scalar", FTC_F32, 0, NULL, SAMPLE + 4, &e), FTC_OK);
    assert_int_equal(ftc_st_writer_add(w, "empty", FTC_F32, 2, s03, NULL, &e), FTC_OK);
    const char *out = getenv("FTC_ST_SAMPLE"); /* set by tools/check_safetensors_writer.py */
    char p[4096];
    if (out) snprintf(p, sizeof p, "%s", out);
    else snprintf(p, sizeof p, "%s/sample.safetensors", tmpdir);
    assert_int_equal(ftc_st_writer_write(w, p, &e), FTC_OK);
    ftc_st_writer_free(w);
    ftc_st_set *s;
    assert_int_equal(ftc_st_open(p, &s, &e), FTC_OK);
    assert_int_equal(ftc_st_count(s), 9);
    assert_string_equal(ftc_st_metadata(s, "producer"), "ftc \xc3\xa9");
    const ftc_tensor_view *t = ftc_st_find(s, "scalar");
    assert_int_equal(t->ndim, 0);
    assert_int_equal(t->numel, 1);
    t = ftc_st_find(s, "empty");
    assert_int_equal(t->numel, 0);
    assert_memory_equal(ftc_st_find(s, "f64")->data, f64, sizeof f64);
    assert_memory_equal(ftc_st_find(s, "i64")->data, i64, sizeof i64);
    float back[15];
    assert_int_equal(ftc_tensor_to_f32(ftc_st_find(s, "f16"), back, &e), FTC_OK);
    assert_true(back[5] == 1.0f && back[6] == 1.0f + 4.0f / 2048); /* ties to even, both ways */
    assert_true(back[8] == 65504.0f && isinf(back[9]));             /* 65519 rounds down, 65520 overflows */
    ftc_st_close(s);
    if (!out) unlink(p);
}

/* The real reader on a real checkpoint, against values the Python safetensors package read
 * (tests/fixtures/safetensors/stories260k_ref.json from tools/gen_safetensors_fixtures.py). */
static void test_real_checkpoint_matches_python(void **state) {
    (void)state;
    const char *shared = getenv("FTC_SHARED_DATA"), *src = getenv("FTC_SOURCE_DIR");
    char dir[4096], ref[4096];
    if (!shared || !src) skip();
    snprintf(dir, sizeof dir, "%s/models/stories260K-hf", shared);
    snprintf(ref, sizeof ref, "%s/tests/fixtures/safetensors/stories260k_ref.json", src);
    json_error_t je;
    json_t *r = json_load_file(ref, 0, &je);
    assert_non_null(r);
    ftc_st_set *s;
    ftc_err e;
    if (ftc_st_open(dir, &s, &e)) fail_msg("%s", e.msg);
    assert_int_equal(ftc_st_count(s), json_integer_value(json_object_get(r, "n_tensors")));
    int64_t n = 0;
    for (int i = 0; i < ftc_st_count(s); i++) n += ftc_st_get(s, i)->numel;
    assert_int_equal(n, json_integer_value(json_object_get(r, "n_params")));
    size_t k;
    json_t *t;
    json_array_foreach(json_object_get(r, "tensors"), k, t) {
        const char *name = json_string_value(json_object_get(t, "name"));
        json_t *shape = json_object_get(t, "shape");
        int64_t sh[4];
        int nd = (int)json_array_size(shape), numel = 1;
        for (int d = 0; d < nd; d++) numel *= (int)(sh[d] = json_integer_value(json_array_get(shape, d)));
        float *v = malloc(sizeof(float) * numel);
        if (ftc_st_load_f32(s, name, nd, sh, v, &e)) fail_msg("%s", e.msg);
        double sum = 0;
        for (int i = 0; i < numel; i++) sum += v[i];
        for (int i = 0; i < 8; i++)
            assert_true(v[i] == (float)json_real_value(json_array_get(json_object_get(t, "first"), i)));
        assert_float_equal(sum, json_real_value(json_object_get(t, "sum")), 1e-9 * numel);
        free(v);
    }
    ftc_st_close(s);
    json_decref(r);
}

static int setup(void **state) { (void)state; return ftc_test_tmpdir_make(tmpdir, sizeof tmpdir, "st"); }
static int teardown(void **state) { (void)state; return ftc_test_tmpdir_remove(tmpdir); }

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
        cmocka_unit_test(test_bad_entry),             cmocka_unit_test(test_header_length_zero),
        cmocka_unit_test(test_spec_dtype_we_do_not_read), cmocka_unit_test(test_gap_before_first_tensor),
        cmocka_unit_test(test_too_many_dims),         cmocka_unit_test(test_offsets_not_integers),
        cmocka_unit_test(test_shape_overflow),        cmocka_unit_test(test_load_f32_checks_rank),
        cmocka_unit_test(test_shard_errors),          cmocka_unit_test(test_writer_rejects_bad_tensors),
        cmocka_unit_test(test_writer_sample_for_python), cmocka_unit_test(test_real_checkpoint_matches_python),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
