/* GGUF (llama.cpp's model file, versions 2 and 3): read (mmap, validated) and dequantize to f32.
 * Layout (all little-endian):
 *   "GGUF" | u32 version | u64 tensor_count | u64 kv_count
 *   kv_count x { string key | u32 value_type | value }            string = u64 length + bytes
 *   tensor_count x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   padding to general.alignment (default 32) | tensor data (offsets relative to here, aligned)
 * ne[0] is the fastest-varying dimension; views below give the row-major shape (ne reversed),
 * as PyTorch and safetensors write it. See docs/gguf.md. */
#ifndef FTC_GGUF_H
#define FTC_GGUF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ftc/base.h"

typedef enum {
    FTC_GGUF_U8 = 0, FTC_GGUF_I8 = 1, FTC_GGUF_U16 = 2, FTC_GGUF_I16 = 3, FTC_GGUF_U32 = 4, FTC_GGUF_I32 = 5,
    FTC_GGUF_F32 = 6, FTC_GGUF_BOOL = 7, FTC_GGUF_STRING = 8, FTC_GGUF_ARRAY = 9, FTC_GGUF_U64 = 10,
    FTC_GGUF_I64 = 11, FTC_GGUF_F64 = 12,
} ftc_gguf_vtype;
const char *ftc_gguf_vtype_name(ftc_gguf_vtype t);

/* ggml tensor types (the numbers are the file's). */
typedef enum {
    FTC_GGML_F32 = 0, FTC_GGML_F16 = 1, FTC_GGML_Q4_0 = 2, FTC_GGML_Q4_1 = 3, FTC_GGML_Q5_0 = 6, FTC_GGML_Q5_1 = 7,
    FTC_GGML_Q8_0 = 8, FTC_GGML_Q8_1 = 9, FTC_GGML_Q2_K = 10, FTC_GGML_Q3_K = 11, FTC_GGML_Q4_K = 12,
    FTC_GGML_Q5_K = 13, FTC_GGML_Q6_K = 14, FTC_GGML_Q8_K = 15, FTC_GGML_I8 = 24, FTC_GGML_I16 = 25,
    FTC_GGML_I32 = 26, FTC_GGML_I64 = 27, FTC_GGML_F64 = 28, FTC_GGML_BF16 = 30,
} ftc_ggml_type;
/* Name ("Q4_K"), or NULL for a number the reader does not know. */
const char *ftc_ggml_type_name(int type);
/* Elements per block and bytes per block; false for an unknown type. */
bool ftc_ggml_type_size(int type, int64_t *block, int64_t *bytes);
/* Whether ftc_gguf_to_f32 converts this type. */
bool ftc_ggml_type_dequantizable(int type);

typedef struct ftc_gguf_value ftc_gguf_value;
struct ftc_gguf_value {
    ftc_gguf_vtype type;
    union {
        uint64_t u;  /* U8..U64 */
        int64_t i;   /* I8..I64 */
        double f;    /* F32, F64 */
        bool b;      /* BOOL */
        struct { const char *s; uint64_t len; } str; /* NUL-terminated copy; len excludes the NUL */
        struct {
            ftc_gguf_vtype elem;
            uint64_t n;
            const uint8_t *raw;    /* numeric/bool elements: packed little-endian inside the file */
            ftc_gguf_value *items; /* STRING and ARRAY elements, parsed; NULL otherwise */
        } arr;
    };
};

typedef struct {
    const char *key;
    ftc_gguf_value v;
} ftc_gguf_kv;

#define FTC_GGUF_MAX_DIMS 4
typedef struct {
    const char *name;
    int type;   /* ftc_ggml_type */
    int ndim;
    int64_t shape[FTC_GGUF_MAX_DIMS]; /* row-major: shape[ndim-1] == ne[0] */
    int64_t numel;
    uint64_t offset; /* from the start of the data section */
    const uint8_t *data;
    size_t nbytes;
} ftc_gguf_tensor;

typedef struct ftc_gguf ftc_gguf;

/* Opens and validates a .gguf file (mmap'd; views point into the mapping). */
ftc_status ftc_gguf_open(const char *path, ftc_gguf **out, ftc_err *err);
/* Same over a file image in memory (fuzzing, tests); buf must outlive the handle. */
ftc_status ftc_gguf_parse_buffer(const uint8_t *buf, size_t len, const char *name_for_errors, ftc_gguf **out,
                                 ftc_err *err);
void ftc_gguf_close(ftc_gguf *g);

const char *ftc_gguf_path(const ftc_gguf *g);
uint32_t ftc_gguf_version(const ftc_gguf *g);
uint64_t ftc_gguf_alignment(const ftc_gguf *g);
size_t ftc_gguf_file_size(const ftc_gguf *g);
int ftc_gguf_kv_count(const ftc_gguf *g);
const ftc_gguf_kv *ftc_gguf_kv_at(const ftc_gguf *g, int i);
const ftc_gguf_value *ftc_gguf_find(const ftc_gguf *g, const char *key); /* NULL if absent */
int ftc_gguf_tensor_count(const ftc_gguf *g);
const ftc_gguf_tensor *ftc_gguf_tensor_at(const ftc_gguf *g, int i);
const ftc_gguf_tensor *ftc_gguf_find_tensor(const ftc_gguf *g, const char *name); /* NULL if absent */

/* Typed getters. Absent key: returns FTC_E_INPUT naming the key unless `optional`, in which case
 * *out keeps its value and FTC_OK is returned. Wrong type (or a negative/too large integer for the
 * target) is always an error naming the key, its type and the file. */
ftc_status ftc_gguf_get_int(const ftc_gguf *g, const char *key, bool optional, int64_t *out, ftc_err *err);
ftc_status ftc_gguf_get_float(const ftc_gguf *g, const char *key, bool optional, double *out, ftc_err *err);
ftc_status ftc_gguf_get_bool(const ftc_gguf *g, const char *key, bool optional, bool *out, ftc_err *err);
ftc_status ftc_gguf_get_str(const ftc_gguf *g, const char *key, bool optional, const char **out, ftc_err *err);
/* An array value's element i as a number (any integer/float/bool element type). */
int64_t ftc_gguf_arr_int(const ftc_gguf_value *a, uint64_t i);
double ftc_gguf_arr_float(const ftc_gguf_value *a, uint64_t i);

/* Dequantizes a tensor to t->numel floats, bit-identical to the gguf Python package's
 * gguf.quants.dequantize (F32, F16, BF16, F64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K). */
ftc_status ftc_gguf_to_f32(const ftc_gguf *g, const ftc_gguf_tensor *t, float *out, ftc_err *err);
/* Rows [row0, row0+nrows) of a 2-D-or-more tensor viewed as [numel/ne0, ne0]. */
ftc_status ftc_gguf_rows_to_f32(const ftc_gguf *g, const ftc_gguf_tensor *t, int64_t row0, int64_t nrows, float *out,
                                ftc_err *err);

/* llama.cpp's converter reorders each head's rows of a llama q/k weight (rows = heads x D, cols values a row) from
 * HF's half-split RoPE layout into interleaved pairs: GGUF row h*D + 2i + j holds HF row h*D + j*D/2 + i.
 * to_gguf: HF -> GGUF order (writing a GGUF); else GGUF -> HF (reading one). out and in must not overlap. */
void ftc_gguf_permute_qk_rows(const float *in, float *out, int64_t heads, int64_t rows, int64_t cols, bool to_gguf);

/* ---- GGUF model -> Hugging Face directory (src/io/gguf_hf.c) ---- */
/* Writes out_dir/config.json, model.safetensors (f32: every tensor dequantized; llama.cpp's Q/K row
 * permutation and GPT-2 Conv1D transpose undone), tokenizer.json, tokenizer_config.json (chat_template,
 * special tokens), generation_config.json and FTC_GGUF_TYPES_FILE ({HF tensor name: the GGUF tensor's ggml
 * type number}: what --base-dtype auto keeps), from a llama / qwen2 / gpt2 GGUF. */
#define FTC_GGUF_TYPES_FILE "gguf_types.json"
ftc_status ftc_gguf_export_hf(const char *gguf_path, const char *out_dir, ftc_err *err);
/* Only tokenizer.json and tokenizer_config.json, from tokenizer.ggml.* (a tokenizer-only GGUF is fine). */
ftc_status ftc_gguf_write_tokenizer(const char *gguf_path, const char *out_dir, ftc_err *err);
/* Whether path names a .gguf file (not a directory). */
bool ftc_is_gguf_path(const char *path);
/* A .gguf path: the directory converted from it, in the cache ($FTC_CACHE_DIR/gguf, else
 * $XDG_CACHE_HOME/ftc/gguf, else ~/.cache/ftc/gguf), keyed by the file's real path, size and mtime;
 * converted first when absent (written to a temp directory and renamed: concurrent runs are safe).
 * Any other path is copied to out unchanged. */
ftc_status ftc_gguf_resolve(const char *path, char *out, size_t n, ftc_err *err);

/* ---- GGUF writer (src/io/gguf_write.c): version 3, alignment 32, metadata in the order set ---- */
typedef struct ftc_gguf_writer ftc_gguf_writer;
ftc_gguf_writer *ftc_gguf_writer_new(void);
void ftc_gguf_writer_free(ftc_gguf_writer *w);
ftc_status ftc_gguf_writer_set_str(ftc_gguf_writer *w, const char *key, const char *v, ftc_err *err);
ftc_status ftc_gguf_writer_set_u32(ftc_gguf_writer *w, const char *key, uint32_t v, ftc_err *err);
ftc_status ftc_gguf_writer_set_f32(ftc_gguf_writer *w, const char *key, float v, ftc_err *err);
ftc_status ftc_gguf_writer_set_bool(ftc_gguf_writer *w, const char *key, bool v, ftc_err *err);
ftc_status ftc_gguf_writer_set_strs(ftc_gguf_writer *w, const char *key, const char *const *v, uint64_t n, ftc_err *err);
ftc_status ftc_gguf_writer_set_i32s(ftc_gguf_writer *w, const char *key, const int32_t *v, uint64_t n, ftc_err *err);
ftc_status ftc_gguf_writer_set_f32s(ftc_gguf_writer *w, const char *key, const float *v, uint64_t n, ftc_err *err);
/* Adds a tensor of row-major shape (the last dimension is GGUF's ne[0]) whose bytes are data (malloc'd; the
 * writer owns and frees it, also on error). */
ftc_status ftc_gguf_writer_add_tensor(ftc_gguf_writer *w, const char *name, int type, int ndim, const int64_t *shape,
                                      void *data, ftc_err *err);
/* Writes the file atomically (temp file, fsync, rename). */
ftc_status ftc_gguf_writer_write(ftc_gguf_writer *w, const char *path, ftc_err *err);

/* ---- Hugging Face directory -> GGUF (src/io/gguf_from_hf.c) ---- */
typedef struct {
    int type;            /* FTC_GGML_F32 (default 0), F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K: the 2-D weights' type */
    const char *name;    /* general.name; NULL: the directory's name */
    bool as_base;        /* a block type: every weight as a quantized base of that type holds it (--base-dtype):
                            the LM head (output.weight, or the token_embd tied to it) in ftc_quant_type_for_output's
                            type (Q8_0), position tables and rows no block fits in F32 (not F16) */
} ftc_gguf_export_opts;
/* A llama / mistral / qwen2 / gpt2 checkpoint (config.json, model.safetensors, tokenizer.json,
 * tokenizer_config.json) as llama.cpp's convert_hf_to_gguf.py writes it: its metadata keys and tensor names,
 * the Q/K row permutation (llama), GPT-2's Conv1D weights transposed, tokenizer.ggml.* from tokenizer.json. */
ftc_status ftc_gguf_from_hf(const char *hf_dir, const char *out_path, const ftc_gguf_export_opts *o, ftc_err *err);
/* An Ollama Modelfile for the GGUF gguf_name converted from hf_dir: FROM, TEMPLATE (ChatML or Llama 3 chat
 * templates in Ollama's Go template syntax), SYSTEM (the template's default system prompt), PARAMETER stop.
 * *note (static text, may be NULL) says what was left out. */
ftc_status ftc_gguf_write_modelfile(const char *hf_dir, const char *gguf_name, const char *out_path, const char **note,
                                    ftc_err *err);
#endif
