/* llama.cpp's own logits along its greedy path, for scripts/check-llamacpp.sh (not part of ftc's build: compiled
 * there against the static libraries of the llama.cpp build that scripts/build-llamacpp.sh makes).
 *   llamacpp_logits MODEL.gguf N PROMPT OUT.bin > steps.txt
 * Tokenizes PROMPT as llama-simple does (special tokens parsed, BOS as the model says), decodes the prompt, then
 * N greedy tokens one at a time, stopping at an end-of-generation token. Prints "prompt ID..." and then one line
 * per step: "STEP ID LOGIT RUNNER_UP_ID RUNNER_UP_LOGIT MARGIN"; writes each step's logits (float32, vocabulary
 * size each) to OUT.bin. Environment: KV_F32=1 keeps the KV cache in f32 (default f16), FA_OFF=1 turns flash
 * attention off (default: llama.cpp's choice), so the comparison with ftc's f32 forward can leave only the
 * matmuls' summation orders. */
#include "llama.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set_tokens(struct llama_batch_ext *b, const llama_token *t, int n, llama_pos p0) {
    llama_batch_ext_clear(b);
    for (int i = 0; i < n; i++) {
        int idx = llama_batch_ext_add_token(b, 0, t[i]);
        llama_pos p = p0 + i;
        llama_batch_ext_set_pos(b, idx, &p);
    }
    llama_batch_ext_set_output_logits(b, n - 1, true);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL.gguf N PROMPT OUT.bin\n", argv[0]);
        return 1;
    }
    const int n_predict = atoi(argv[2]);
    const char *prompt = argv[3];
    const int32_t plen = (int32_t)strlen(prompt);
    llama_backend_init();
    struct llama_model *model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) return 2;
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    const int n_prompt = -llama_tokenize(vocab, prompt, plen, NULL, 0, true, true);
    llama_token *toks = malloc(sizeof *toks * (size_t)(n_prompt > 0 ? n_prompt : 1));
    if (!toks || n_prompt < 1 || llama_tokenize(vocab, prompt, plen, toks, n_prompt, true, true) < 0) return 2;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_prompt + n_predict;
    cp.n_batch = n_prompt;
    if (getenv("FA_OFF")) cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    if (getenv("KV_F32")) cp.type_k = cp.type_v = GGML_TYPE_F32;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) return 2;
    FILE *bin = fopen(argv[4], "wb");
    if (!bin) return 2;
    const int nv = llama_vocab_n_tokens(vocab);
    printf("prompt");
    for (int i = 0; i < n_prompt; i++) printf(" %d", toks[i]);
    printf("\n");
    struct llama_batch_ext *b = llama_batch_ext_init(ctx);
    set_tokens(b, toks, n_prompt, 0);
    int pos = n_prompt;
    for (int s = 0; s < n_predict; s++) {
        if (llama_process(ctx, LLAMA_PROCESS_TYPE_DECODE, b)) return 3;
        const float *lg = llama_get_logits_ith(ctx, -1);
        if (fwrite(lg, sizeof(float), (size_t)nv, bin) != (size_t)nv) return 3;
        int a = 0, c = -1;
        for (int i = 1; i < nv; i++)
            if (lg[i] > lg[a]) a = i;
        for (int i = 0; i < nv; i++)
            if (i != a && (c < 0 || lg[i] > lg[c])) c = i;
        printf("%d %d %.6f %d %.6f %.6f\n", s, a, lg[a], c, lg[c], lg[a] - lg[c]);
        if (llama_vocab_is_eog(vocab, a)) break;
        llama_token t = a;
        set_tokens(b, &t, 1, pos++);
    }
    fclose(bin);
    llama_batch_ext_free(b);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    free(toks);
    return 0;
}
