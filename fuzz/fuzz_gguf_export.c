/* libFuzzer: any bytes as the tokenizer.json of a model directory handed to the GGUF exporter (ftc_gguf_from_hf)
 * must give FTC_OK or an error with a message, never a crash, leak or out-of-bounds access; an accepted export
 * must be a GGUF the reader accepts, with tokenizer.ggml.tokens of the embedding's size. The directory (a tiny
 * llama, vocabulary 64, a ChatML chat template in tokenizer_config.json) is made once per process. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ftc/base.h"
#include "ftc/gguf.h"
#include "ftc/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static int make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/ftc_fuzz_gguf_export_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    ftc_err e;
    char p[256];
    static const char cfg[] =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 8, "
        "\"intermediate_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, "
        "\"vocab_size\": 64, \"max_position_embeddings\": 16, \"rms_norm_eps\": 1e-5, \"tie_word_embeddings\": true}";
    static const char tcfg[] =
        "{\"bos_token\": \"a\", \"eos_token\": \"<|im_end|>\", \"chat_template\": \"{% for m in messages %}"
        "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}\"}";
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (ftc_write_file_atomic(p, cfg, strlen(cfg), &e)) return -1;
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    if (ftc_write_file_atomic(p, tcfg, strlen(tcfg), &e)) return -1;
    static float w[64 * 8];
    for (int i = 0; i < 64 * 8; i++) w[i] = (float)((i * 37) % 17) / 17.0f - 0.5f;
    ftc_st_writer *sw = ftc_st_writer_new();
    struct { const char *n; int64_t r, c; } T[] = {
        {"model.embed_tokens.weight", 64, 8}, {"model.layers.0.self_attn.q_proj.weight", 8, 8},
        {"model.layers.0.self_attn.k_proj.weight", 4, 8}, {"model.layers.0.self_attn.v_proj.weight", 4, 8},
        {"model.layers.0.self_attn.o_proj.weight", 8, 8}, {"model.layers.0.mlp.gate_proj.weight", 8, 8},
        {"model.layers.0.mlp.up_proj.weight", 8, 8}, {"model.layers.0.mlp.down_proj.weight", 8, 8},
        {"model.layers.0.input_layernorm.weight", 8, 0}, {"model.layers.0.post_attention_layernorm.weight", 8, 0},
        {"model.norm.weight", 8, 0}};
    for (size_t i = 0; i < sizeof T / sizeof *T; i++) {
        int64_t shape[2] = {T[i].r, T[i].c};
        if (ftc_st_writer_add(sw, T[i].n, FTC_F32, T[i].c ? 2 : 1, shape, w, &e)) return -1;
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    ftc_status s = ftc_st_writer_write(sw, p, &e);
    ftc_st_writer_free(sw);
    return s ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0] && make_dir()) abort();
    char p[256], out[256];
    ftc_err e;
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    if (ftc_write_file_atomic(p, data, size, &e)) abort();
    e.msg[0] = 0;
    ftc_status s = ftc_gguf_from_hf(dir, out, NULL, &e);
    if (s) {
        if (!e.msg[0]) abort(); /* an error must say what */
        return 0;
    }
    ftc_gguf *g;
    if (ftc_gguf_open(out, &g, &e)) abort(); /* what ftc writes, ftc reads */
    const ftc_gguf_value *t = ftc_gguf_find(g, "tokenizer.ggml.tokens");
    if (!t || t->type != FTC_GGUF_ARRAY || t->arr.n != 64) abort();
    ftc_gguf_close(g);
    unlink(out);
    return 0;
}
