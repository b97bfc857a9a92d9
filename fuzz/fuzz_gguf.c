/* libFuzzer: any byte string handed to the GGUF parser must give FTC_OK or an error with a message,
 * never a crash, leak or out-of-bounds read. Accepted images are read back in full: every metadata
 * value (arrays element by element), every tensor's bytes, and the dequantization of small tensors. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

static void touch(const ftc_gguf_value *v) {
    if (v->type == FTC_GGUF_STRING) {
        for (uint64_t i = 0; i <= v->str.len; i++) sink ^= (uint8_t)v->str.s[i]; /* includes the NUL */
    } else if (v->type == FTC_GGUF_ARRAY) {
        for (uint64_t i = 0; i < v->arr.n; i++) {
            if (v->arr.items) touch(&v->arr.items[i]);
            else {
                double d = ftc_gguf_arr_float(v, i);
                uint64_t bits;
                memcpy(&bits, &d, 8);
                sink ^= (uint64_t)ftc_gguf_arr_int(v, i) ^ bits;
            }
        }
    } else sink ^= v->u;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a private copy whose end is the end of the allocation, so ASan sees reads past the image */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    ftc_gguf *g = NULL;
    ftc_err err;
    err.msg[0] = 0;
    ftc_status st = ftc_gguf_parse_buffer(buf, size, "fuzz.gguf", &g, &err);
    if (st != FTC_OK) {
        if (g || !err.msg[0]) abort(); /* an error must come with a message and no handle */
    } else {
        for (int i = 0; i < ftc_gguf_kv_count(g); i++) {
            const ftc_gguf_kv *kv = ftc_gguf_kv_at(g, i);
            if (ftc_gguf_find(g, kv->key) != &kv->v) abort(); /* keys are unique */
            touch(&kv->v);
            int64_t x;
            ftc_err e2;
            (void)ftc_gguf_get_int(g, kv->key, false, &x, &e2);
        }
        for (int i = 0; i < ftc_gguf_tensor_count(g); i++) {
            const ftc_gguf_tensor *t = ftc_gguf_tensor_at(g, i);
            if (ftc_gguf_find_tensor(g, t->name) != t) abort(); /* names are unique */
            for (size_t k = 0; k < t->nbytes; k++) sink ^= t->data[k];
            if (t->numel <= (1 << 16)) {
                float *out = malloc((size_t)t->numel * sizeof(float) + 1);
                ftc_err e2;
                if (out) ftc_gguf_to_f32(g, t, out, &e2);
                free(out);
            }
        }
        ftc_gguf_close(g);
    }
    free(buf);
    return 0;
}
