/* A LoRA run's adapters as llama.cpp's LoRA GGUF (what convert_lora_to_gguf.py writes, for `llama-cli --lora`):
 * general.type = adapter, adapter.type = lora, adapter.lora.alpha; per adapted weight W (GGUF name, e.g.
 * blk.0.attn_q.weight) the tensors W.lora_a [r, in] and W.lora_b [out, r] (row-major; GGUF ne [in, r] and [r, out]),
 * f32, so that W' = W + alpha / r * lora_b @ lora_a in the GGUF's orientation. llama's q/k rows are permuted as
 * the base weights are (lora_b's rows; lora_a is untouched); GPT-2's weights are [out, in] in the GGUF, which is
 * PEFT's B @ A already. */
#include "model_internal.h"
#include "ftc/export.h"
#include "ftc/gguf.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ftc_status ftc_export_gguf_lora(const ftc_model *m, const char *out, const char *name, ftc_err *err) {
    const char *mt = m->cfg.model_type, *arch;
    bool permute = false;
    if (!strcmp(mt, "llama") || !strcmp(mt, "mistral")) arch = "llama", permute = true;
    else if (!strcmp(mt, "qwen2")) arch = "qwen2";
    else if (!strcmp(mt, "gpt2")) arch = "gpt2";
    else return ftc_errf(err, FTC_E_UNSUPPORTED, "GGUF LoRA export supports llama, mistral, qwen2, gpt2 (this is %s)", mt);
    if (m->task != FTC_TASK_CAUSAL_LM)
        return ftc_errf(err, FTC_E_USAGE, "--format gguf-lora exports a causal language model's adapters");
    /* GGUF's names in layer_mod's order */
    static const char *const gname[FTC_LAYER_MODS] = {"attn_qkv", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_gate",
                                        "ffn_down"};
    float alpha = 0;
    int r0 = 0, n = 0;
    ftc_gguf_writer *w = ftc_gguf_writer_new();
    if (!w) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    ftc_status s = FTC_OK;
    for (int i = 0; !s && i < m->L; i++) {
        layer_params *l = &m->layers[i];
        for (int j = 0; !s && j < FTC_LAYER_MODS; j++) {
            linear_mod *lm = layer_mod(l, j);
            if (lm->w < 0 || lm->lora_a < 0) continue;
            const ftc_param *a = &m->params[lm->lora_a], *b = &m->params[lm->lora_b];
            int64_t r = a->shape[0], in = a->shape[1], o = b->shape[0];
            float al = lm->lora_scale * (float)r;
            if (!n) alpha = al, r0 = (int)r;
            else if (fabsf(al - alpha) > 1e-5f * fabsf(alpha) || r != r0)
                s = ftc_errf(err, FTC_E_UNSUPPORTED, "%s: LoRA rank/alpha (%lld, %g) differ from the others (%d, %g): "
                             "llama.cpp's adapter has one alpha", lm->module, (long long)r, al, r0, alpha);
            if (s) break;
            float *da = malloc(sizeof(float) * (size_t)(r * in)), *db = malloc(sizeof(float) * (size_t)(o * r));
            if (!da || !db) { free(da), free(db); s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); break; }
            memcpy(da, a->data, sizeof(float) * (size_t)(r * in));
            if (permute && (j == 1 || j == 2))
                ftc_gguf_permute_qk_rows(b->data, db, j == 1 ? m->cfg.n_heads : m->cfg.n_kv_heads, o, r, true);
            else memcpy(db, b->data, sizeof(float) * (size_t)(o * r));
            char t[96];
            snprintf(t, sizeof t, "blk.%d.%s.weight.lora_a", i, gname[j]);
            s = ftc_gguf_writer_add_tensor(w, t, FTC_GGML_F32, 2, (int64_t[]){r, in}, da, err);
            snprintf(t, sizeof t, "blk.%d.%s.weight.lora_b", i, gname[j]);
            if (!s) s = ftc_gguf_writer_add_tensor(w, t, FTC_GGML_F32, 2, (int64_t[]){o, r}, db, err);
            else free(db);
            n++;
        }
    }
    if (!s && !n) s = ftc_errf(err, FTC_E_USAGE, "the model has no LoRA adapters to export");
    if (!s) s = ftc_gguf_writer_set_str(w, "general.architecture", arch, err);
    if (!s) s = ftc_gguf_writer_set_str(w, "general.type", "adapter", err);
    if (!s) s = ftc_gguf_writer_set_str(w, "adapter.type", "lora", err);
    if (!s) s = ftc_gguf_writer_set_f32(w, "adapter.lora.alpha", alpha, err);
    if (!s && name) s = ftc_gguf_writer_set_str(w, "general.name", name, err);
    if (!s) s = ftc_gguf_writer_set_u32(w, "general.quantization_version", 2, err);
    if (!s) s = ftc_gguf_writer_write(w, out, err);
    ftc_gguf_writer_free(w);
    return s;
}
