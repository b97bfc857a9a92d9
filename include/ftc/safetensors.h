/* safetensors: read (mmap, validated), and write (atomic). Format:
 *   u64 little-endian header length N | N bytes of JSON header | data
 *   header: {"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
 * Offsets are relative to the start of the data section; ranges must tile it without gaps/overlap. */
#ifndef FTC_SAFETENSORS_H
#define FTC_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>
#include "ftc/base.h"

typedef enum { FTC_F32, FTC_F16, FTC_BF16, FTC_I64, FTC_I32, FTC_I8, FTC_U8, FTC_BOOL, FTC_F64 } ftc_dtype;
const char *ftc_dtype_name(ftc_dtype d);
size_t ftc_dtype_size(ftc_dtype d);

#define FTC_MAX_DIMS 8
typedef struct {
    char *name;
    ftc_dtype dtype;
    int ndim;
    int64_t shape[FTC_MAX_DIMS];
    int64_t numel;
    const void *data; /* raw bytes inside the mapping (little-endian, possibly unaligned) */
    size_t nbytes;
    const char *file; /* path of the file that holds it (for error messages) */
} ftc_tensor_view;

/* One checkpoint: a single .safetensors file or several shards (model.safetensors.index.json). */
typedef struct ftc_st_set ftc_st_set;

/* Opens a file path, or a directory holding model.safetensors or model.safetensors.index.json. */
ftc_status ftc_st_open(const char *path, ftc_st_set **out, ftc_err *err);
void ftc_st_close(ftc_st_set *s);
int ftc_st_count(const ftc_st_set *s);
const ftc_tensor_view *ftc_st_get(const ftc_st_set *s, int i);
const ftc_tensor_view *ftc_st_find(const ftc_st_set *s, const char *name); /* NULL if absent */
size_t ftc_st_bytes_on_disk(const ftc_st_set *s);
/* The files behind the set: one, or the shards in the order weight_map first names them. */
int ftc_st_file_count(const ftc_st_set *s);
const char *ftc_st_file_path(const ftc_st_set *s, int i);
/* Metadata value from __metadata__ (first file), or NULL. */
const char *ftc_st_metadata(const ftc_st_set *s, const char *key);

/* Converts any float dtype (F32/F16/BF16/F64) to f32; out holds t->numel floats. */
ftc_status ftc_tensor_to_f32(const ftc_tensor_view *t, float *out, ftc_err *err);
/* The n elements first, first + stride, ... of t (flat indices, within t->numel) to f32 into out[0..n): a piece
 * of a tensor (row chunks; stride > 1 reads a column of a row-major matrix). */
ftc_status ftc_tensor_to_f32_range(const ftc_tensor_view *t, int64_t first, int64_t n, int64_t stride, float *out,
                                   ftc_err *err);
/* Checks that `name` is there with shape[0..ndim) (the errors of ftc_st_load_f32), reading no data. */
ftc_status ftc_st_check_shape(const ftc_st_set *s, const char *name, int ndim, const int64_t *shape, ftc_err *err);
/* Finds `name`, checks its shape equals shape[0..ndim) and converts to f32 into out.
 * Errors name the file and tensor: "missing tensor", "shape [a,b] but config needs [c,d]". */
ftc_status ftc_st_load_f32(const ftc_st_set *s, const char *name, int ndim, const int64_t *shape, float *out,
                           ftc_err *err);

/* f16/bf16 conversions (round-to-nearest-even on the way down). */
float ftc_f16_to_f32(uint16_t h);
uint16_t ftc_f32_to_f16(float f);
float ftc_bf16_to_f32(uint16_t h);
uint16_t ftc_f32_to_bf16(float f);

/* Writer: collect tensors (data is copied or referenced until write), then write atomically. */
typedef struct ftc_st_writer ftc_st_writer;
ftc_st_writer *ftc_st_writer_new(void);
ftc_status ftc_st_writer_metadata(ftc_st_writer *w, const char *key, const char *value, ftc_err *err);
/* data: numel elements of dtype laid out row-major; it must stay valid until ftc_st_writer_write. */
ftc_status ftc_st_writer_add(ftc_st_writer *w, const char *name, ftc_dtype dtype, int ndim, const int64_t *shape,
                             const void *data, ftc_err *err);
/* Adds an f32 buffer converted to dtype (F32, F16 or BF16); the converted copy is owned by the writer.
 * F32 needs no conversion: that data is referenced, like ftc_st_writer_add, and must stay valid until write. */
ftc_status ftc_st_writer_add_f32_as(ftc_st_writer *w, const char *name, ftc_dtype dtype, int ndim,
                                    const int64_t *shape, const float *data, ftc_err *err);
ftc_status ftc_st_writer_write(ftc_st_writer *w, const char *path, ftc_err *err); /* temp + fsync + rename */
void ftc_st_writer_free(ftc_st_writer *w);

/* Parse-only entry for fuzzing and tests: validates a whole file image held in memory.
 * The set's views point into buf, which must outlive the set. */
ftc_status ftc_st_parse_buffer(const uint8_t *buf, size_t len, const char *name_for_errors, ftc_st_set **out,
                               ftc_err *err);
#endif
