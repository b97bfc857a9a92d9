/* libFuzzer: any byte string handed to the safetensors parser must give FTC_OK or an error with a
 * message, never a crash, leak or out-of-bounds read. Accepted images are read back in full. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a private copy whose end is the end of the allocation, so ASan sees reads past the image */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    ftc_st_set *s = NULL;
    ftc_err err;
    err.msg[0] = 0;
    ftc_status st = ftc_st_parse_buffer(buf, size, "fuzz.safetensors", &s, &err);
    if (st != FTC_OK) {
        if (s || !err.msg[0]) abort(); /* an error must come with a message and no set */
    } else {
        for (int i = 0; i < ftc_st_count(s); i++) {
            const ftc_tensor_view *t = ftc_st_get(s, i);
            if (ftc_st_find(s, t->name) != t) abort();
            /* touch every byte the view claims, then convert float tensors */
            volatile uint8_t sink = 0;
            for (size_t k = 0; k < t->nbytes; k++) sink ^= ((const uint8_t *)t->data)[k];
            (void)sink;
            if (t->numel <= (1 << 16)) {
                float *out = malloc((size_t)t->numel * sizeof(float) + 1);
                ftc_err e2;
                if (out) ftc_tensor_to_f32(t, out, &e2);
                free(out);
            }
        }
        (void)ftc_st_metadata(s, "format");
        (void)ftc_st_bytes_on_disk(s);
        ftc_st_close(s);
    }
    free(buf);
    return 0;
}
