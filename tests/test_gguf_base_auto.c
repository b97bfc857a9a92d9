/* --base-dtype auto on a GGUF (ftc_model_load_gguf_base): the tiny llama fixture exported as a Q8_0 and a Q4_1 GGUF,
 * converted back to a Hugging Face directory (gguf_types.json beside the weights) and loaded as a frozen base:
 * - every weight the file holds in Q8_0/Q4_1 is packed in that type, its bytes equal to the file's tensor bytes
 *   (llama's Q/K rows in HF order: the same rows, reordered);
 * - weights of other types (F16: ffn_down's 48 inputs fit no 32-block; F32 norms) stay as auto kept them (f32,
 *   or bf16-only with bf16_rest);
 * - an F32 GGUF packs nothing, and a directory not converted from a GGUF has no types to keep. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/base.h"
#include "ftc/gguf.h"
#include "ftc/model.h"
#include "ftc/quant.h"
#include "lib/test_util.h"

static char tmpdir[64];

/* the HF name of a llama GGUF weight, and which of q/k (1, 2) llama.cpp permuted; false for norms/biases */
static bool hf_name(const char *g, char *out, size_t n, int *perm) {
    static const struct { const char *g, *hf; int perm; } M[] = {
        {"attn_q", "self_attn.q_proj", 1}, {"attn_k", "self_attn.k_proj", 2}, {"attn_v", "self_attn.v_proj", 0},
        {"attn_output", "self_attn.o_proj", 0}, {"ffn_gate", "mlp.gate_proj", 0}, {"ffn_up", "mlp.up_proj", 0},
        {"ffn_down", "mlp.down_proj", 0}};
    *perm = 0;
    if (!strcmp(g, "token_embd.weight")) return snprintf(out, n, "model.embed_tokens.weight"), true;
    if (!strcmp(g, "output.weight")) return snprintf(out, n, "lm_head.weight"), true;
    int layer, len = 0;
    char part[64];
    if (sscanf(g, "blk.%d.%63[a-z_].weight%n", &layer, part, &len) != 2 || g[len]) return false;
    for (size_t k = 0; k < sizeof M / sizeof *M; k++)
        if (!strcmp(part, M[k].g)) {
            snprintf(out, n, "model.layers.%d.%s.weight", layer, M[k].hf);
            *perm = M[k].perm;
            return true;
        }
    return false;
}

/* Loads dir (converted from gguf_path) as auto would; checks each weight against the file. Returns how many were
 * packed in the file's type. */
static int check_dir(const char *gguf_path, const char *dir, bool bf16_rest) {
    ftc_err e = {0};
    ftc_model *m;
    if (ftc_model_load_gguf_base(dir, FTC_TASK_CAUSAL_LM, bf16_rest, &m, &e)) fail_msg("%s", e.msg);
    ftc_gguf *g;
    if (ftc_gguf_open(gguf_path, &g, &e)) fail_msg("%s", e.msg);
    const ftc_model_config *c = ftc_model_config_of(m);
    int packed = 0, other = 0;
    for (int i = 0; i < ftc_gguf_tensor_count(g); i++) {
        const ftc_gguf_tensor *t = ftc_gguf_tensor_at(g, i);
        char name[160];
        int perm;
        if (!hf_name(t->name, name, sizeof name, &perm)) continue;
        const ftc_param *p = ftc_model_find_param(m, name);
        if (!p) fail_msg("%s: no parameter %s", t->name, name);
        if (t->type != FTC_GGML_Q8_0 && t->type != FTC_GGML_Q4_1) {
            if (p->data_q) fail_msg("%s (%s) packed in %d", name, ftc_ggml_type_name(t->type), p->qtype);
            bool bf16 = bf16_rest && strcmp(name, "model.embed_tokens.weight");
            assert_true(bf16 ? p->data_bf16 && !p->data : p->data != NULL);
            other++;
            continue;
        }
        if (!p->data_q) fail_msg("%s: %s in the file, not packed", name, ftc_ggml_type_name(t->type));
        assert_int_equal(p->qtype, t->type);
        int64_t rows = p->shape[0], I = p->numel / rows;
        size_t rb = ftc_quant_row_bytes(t->type, I);
        assert_int_equal(rb * (size_t)rows, t->nbytes);
        int64_t D = c->head_dim, heads = perm == 1 ? c->n_heads : c->n_kv_heads;
        for (int64_t r = 0; r < rows; r++) { /* HF row h*D + j*D/2 + q is the file's row h*D + 2q + j */
            int64_t fr = r;
            if (perm) {
                int64_t h = r / D, w = r % D, j = w / (D / 2), q = w % (D / 2);
                fr = h * D + 2 * q + j;
                assert_true(h < heads);
            }
            if (memcmp((const uint8_t *)p->data_q + r * rb, t->data + fr * rb, rb))
                fail_msg("%s row %lld: packed bytes differ from the file's", name, (long long)r);
        }
        packed++;
    }
    assert_true(other > 0); /* ffn_down in F16 */
    char kept[256];
    ftc_model_base_storage(m, kept, sizeof kept);
    printf("%s: %d weights packed with the file's bytes, %d of other types kept as auto would (%s)\n", gguf_path,
           packed, other, kept);
    ftc_gguf_close(g);
    ftc_model_free(m);
    return packed;
}

static void test_types_kept(void **state) {
    (void)state;
    char src[4096], hf[4200], gg[4200], dir[4200];
    /* the fixture checkpoint with a tokenizer: its F32 GGUF converted */
    snprintf(src, sizeof src, "%s/tests/fixtures/gguf/llama_gqa.gguf", ftc_test_src_dir());
    snprintf(hf, sizeof hf, "%s/hf", tmpdir);
    ftc_err e = {0};
    if (ftc_gguf_export_hf(src, hf, &e)) fail_msg("%s", e.msg);
    const int types[] = {FTC_GGML_Q8_0, FTC_GGML_Q4_1};
    for (int k = 0; k < 2; k++) {
        snprintf(gg, sizeof gg, "%s/%s.gguf", tmpdir, ftc_quant_name(types[k]));
        snprintf(dir, sizeof dir, "%s/%s", tmpdir, ftc_quant_name(types[k]));
        ftc_gguf_export_opts o = {.type = types[k]};
        if (ftc_gguf_from_hf(hf, gg, &o, &e) || ftc_gguf_export_hf(gg, dir, &e)) fail_msg("%s", e.msg);
        assert_true(ftc_model_has_gguf_types(dir));
        /* 2 layers x q, k, v, o, gate, up (ffn_down's 48 inputs: F16), the token table and the LM head */
        assert_int_equal(check_dir(gg, dir, false), 2 * 6 + 2);
        assert_int_equal(check_dir(gg, dir, true), 2 * 6 + 2);
    }
}

static void test_f32_and_hf(void **state) {
    (void)state;
    char gg[4096], dir[4200], hf[4096];
    snprintf(gg, sizeof gg, "%s/tests/fixtures/gguf/llama_gqa.gguf", ftc_test_src_dir());
    snprintf(dir, sizeof dir, "%s/f32", tmpdir);
    snprintf(hf, sizeof hf, "%s/tests/fixtures/models/llama_gqa", ftc_test_src_dir());
    ftc_err e = {0};
    if (ftc_gguf_export_hf(gg, dir, &e)) fail_msg("%s", e.msg);
    ftc_model *m;
    if (ftc_model_load_gguf_base(dir, FTC_TASK_CAUSAL_LM, false, &m, &e)) fail_msg("%s", e.msg);
    for (int i = 0; i < ftc_model_n_params(m); i++) assert_null(ftc_model_param(m, i)->data_q);
    ftc_model_free(m);
    assert_false(ftc_model_has_gguf_types(hf));
    assert_int_not_equal(ftc_model_load_gguf_base(hf, FTC_TASK_CAUSAL_LM, false, &m, &e), FTC_OK);
    assert_null(m);
}

static int setup(void **state) { (void)state; return ftc_test_tmpdir_make(tmpdir, sizeof tmpdir, "gba"); }
static int teardown(void **state) { (void)state; return ftc_test_tmpdir_remove(tmpdir); }

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_types_kept), cmocka_unit_test(test_f32_and_hf)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
