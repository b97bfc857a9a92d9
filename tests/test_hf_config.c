/* config.json parsing for each supported model_type, defaults per family, and the errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/hf_config.h"

static ftc_status parse(const char *json, ftc_model_config *c, ftc_err *e) {
    return ftc_config_parse(json, strlen(json), "config.json", c, e);
}

static void test_gpt2_defaults(void **state) {
    (void)state;
    ftc_model_config c;
    ftc_err e;
    assert_int_equal(parse("{\"model_type\":\"gpt2\",\"n_layer\":2,\"n_embd\":64,\"n_head\":4,\"vocab_size\":100,"
                           "\"n_positions\":32,\"n_inner\":null}", &c, &e), FTC_OK);
    assert_int_equal(c.family, FTC_FAMILY_GPT2);
    assert_int_equal(c.intermediate_size, 256);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.activation, FTC_ACT_GELU_TANH);
    assert_true(c.tie_word_embeddings && c.attention_bias);
    assert_float_equal(c.norm_eps, 1e-5, 1e-12);
    ftc_config_free(&c);
}

static void test_llama_family(void **state) {
    (void)state;
    ftc_model_config c;
    ftc_err e;
    const char *base = "{\"model_type\":\"%s\",\"num_hidden_layers\":2,\"hidden_size\":64,\"num_attention_heads\":8,"
                       "\"num_key_value_heads\":2,\"intermediate_size\":128,\"vocab_size\":300,\"rms_norm_eps\":1e-5,"
                       "\"rope_theta\":500000.0,\"tie_word_embeddings\":true,\"bos_token_id\":1,\"eos_token_id\":[2,3]}";
    const char *types[] = {"llama", "mistral", "qwen2"};
    for (int i = 0; i < 3; i++) {
        char buf[600];
        snprintf(buf, sizeof buf, base, types[i]);
        assert_int_equal(parse(buf, &c, &e), FTC_OK);
        assert_int_equal(c.family, FTC_FAMILY_LLAMA);
        assert_int_equal(c.n_kv_heads, 2);
        assert_int_equal(c.head_dim, 8);
        assert_float_equal(c.rope_theta, 500000.0, 1e-3);
        assert_true(c.tie_word_embeddings);
        assert_int_equal(c.activation, FTC_ACT_SILU);
        assert_int_equal(c.attention_bias, i == 2); /* only qwen2 has q/k/v biases */
        assert_int_equal(c.eos_token_id, 2);
        ftc_config_free(&c);
    }
    /* defaults: kv heads = heads, theta 10000, untied */
    assert_int_equal(parse("{\"model_type\":\"llama\",\"num_hidden_layers\":1,\"hidden_size\":16,\"num_attention_heads\":2,"
                           "\"intermediate_size\":32,\"vocab_size\":10,\"rope_scaling\":{\"rope_type\":\"llama3\","
                           "\"factor\":8.0,\"original_max_position_embeddings\":8192}}", &c, &e), FTC_OK);
    assert_int_equal(c.n_kv_heads, 2);
    assert_float_equal(c.rope_theta, 10000.0, 1e-3);
    assert_false(c.tie_word_embeddings);
    assert_string_equal(c.rope_scaling_type, "llama3");
    assert_float_equal(c.rope_scaling_factor, 8.0, 1e-6);
    ftc_config_free(&c);
}

static void test_bert_with_labels(void **state) {
    (void)state;
    ftc_model_config c;
    ftc_err e;
    assert_int_equal(parse("{\"model_type\":\"bert\",\"num_hidden_layers\":6,\"hidden_size\":384,\"num_attention_heads\":12,"
                           "\"intermediate_size\":1536,\"vocab_size\":30522,\"hidden_act\":\"gelu\","
                           "\"id2label\":{\"1\":\"refund\",\"0\":\"card_lost\"}}", &c, &e), FTC_OK);
    assert_int_equal(c.family, FTC_FAMILY_BERT);
    assert_int_equal(c.type_vocab_size, 2);
    assert_int_equal(c.activation, FTC_ACT_GELU_ERF);
    assert_float_equal(c.norm_eps, 1e-12, 1e-18);
    assert_int_equal(c.num_labels, 2);
    assert_string_equal(c.id2label[0], "card_lost");
    assert_string_equal(c.id2label[1], "refund");
    ftc_config_free(&c);
}

static void test_errors_name_file_and_field(void **state) {
    (void)state;
    ftc_model_config c;
    ftc_err e;
    assert_int_equal(parse("{\"model_type\":\"t5\"}", &c, &e), FTC_E_UNSUPPORTED);
    assert_string_equal(e.msg, "config.json: unsupported model_type \"t5\" (supported: gpt2, llama, mistral, qwen2, bert)");
    assert_int_equal(parse("{\"model_type\":\"llama\",\"hidden_size\":16}", &c, &e), FTC_E_INPUT);
    assert_string_equal(e.msg, "config.json: missing required field \"num_hidden_layers\"");
    assert_int_equal(parse("{\"model_type\":\"bert\",\"num_hidden_layers\":\"six\"}", &c, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "\"num_hidden_layers\" must be a non-negative integer"));
    assert_int_equal(parse("{\"model_type\":", &c, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "config.json: line 1"));
    assert_int_equal(parse("{}", &c, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "missing field \"model_type\""));
    assert_int_equal(parse("{\"model_type\":\"llama\",\"num_hidden_layers\":1,\"hidden_size\":16,\"num_attention_heads\":4,"
                           "\"num_key_value_heads\":3,\"intermediate_size\":32,\"vocab_size\":10}", &c, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "num_key_value_heads (3) must divide"));
    assert_int_equal(parse("{\"model_type\":\"gpt2\",\"activation_function\":\"mish\"}", &c, &e), FTC_E_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "unsupported activation \"mish\""));
}

static void test_family_defaults_follow_transformers(void **state) {
    (void)state;
    ftc_model_config c;
    ftc_err e;
    const char *dims = "\"num_hidden_layers\":1,\"hidden_size\":64,\"num_attention_heads\":16,\"intermediate_size\":32,"
                       "\"vocab_size\":10}";
    char buf[400];
    /* LlamaConfig: 2048 positions, eps 1e-6, bos 1 / eos 2, kv heads = heads, no window */
    snprintf(buf, sizeof buf, "{\"model_type\":\"llama\",%s", dims);
    assert_int_equal(parse(buf, &c, &e), FTC_OK);
    assert_int_equal(c.max_positions, 2048);
    assert_float_equal(c.norm_eps, 1e-6, 1e-12);
    assert_int_equal(c.n_kv_heads, 16);
    assert_true(c.bos_token_id == 1 && c.eos_token_id == 2 && c.pad_token_id == -1);
    assert_int_equal(c.sliding_window, 0);
    assert_false(c.attention_bias || c.mlp_bias);
    assert_string_equal(c.rope_scaling_type, "");
    ftc_config_free(&c);
    /* MistralConfig: 8 kv heads, 4096*32 positions, sliding window 4096 */
    snprintf(buf, sizeof buf, "{\"model_type\":\"mistral\",%s", dims);
    assert_int_equal(parse(buf, &c, &e), FTC_OK);
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.max_positions, 131072);
    assert_int_equal(c.sliding_window, 4096);
    ftc_config_free(&c);
    snprintf(buf, sizeof buf, "{\"model_type\":\"mistral\",\"sliding_window\":null,%s", dims);
    assert_int_equal(parse(buf, &c, &e), FTC_OK);
    assert_int_equal(c.sliding_window, 0);
    ftc_config_free(&c);
    /* Qwen2Config: q/k/v biases, 32768 positions, no bos/eos, window only with use_sliding_window */
    snprintf(buf, sizeof buf, "{\"model_type\":\"qwen2\",%s", dims);
    assert_int_equal(parse(buf, &c, &e), FTC_OK);
    assert_true(c.attention_bias && !c.mlp_bias);
    assert_int_equal(c.max_positions, 32768);
    assert_true(c.bos_token_id == -1 && c.eos_token_id == -1);
    assert_int_equal(c.sliding_window, 0);
    ftc_config_free(&c);
    snprintf(buf, sizeof buf, "{\"model_type\":\"qwen2\",\"use_sliding_window\":true,\"sliding_window\":128,%s", dims);
    assert_int_equal(parse(buf, &c, &e), FTC_OK);
    assert_int_equal(c.sliding_window, 128);
    ftc_config_free(&c);
    /* GPT2Config: everything defaulted but the sizes; bos = eos = 50256, dropouts 0.1 */
    assert_int_equal(parse("{\"model_type\":\"gpt2\"}", &c, &e), FTC_OK);
    assert_true(c.n_layers == 12 && c.hidden_size == 768 && c.n_heads == 12 && c.intermediate_size == 3072);
    assert_true(c.vocab_size == 50257 && c.max_positions == 1024);
    assert_true(c.bos_token_id == 50256 && c.eos_token_id == 50256);
    assert_float_equal(c.hidden_dropout, 0.1, 1e-7);
    assert_float_equal(c.attention_dropout, 0.1, 1e-7);
    assert_float_equal(c.initializer_range, 0.02, 1e-9);
    ftc_config_free(&c);
    /* BertConfig: pad 0, 512 positions, no bos/eos, gelu (erf), eps 1e-12 */
    snprintf(buf, sizeof buf, "{\"model_type\":\"bert\",%s", dims);
    assert_int_equal(parse(buf, &c, &e), FTC_OK);
    assert_true(c.pad_token_id == 0 && c.bos_token_id == -1 && c.max_positions == 512);
    assert_int_equal(c.n_kv_heads, 16);
    assert_int_equal(c.head_dim, 4);
    ftc_config_free(&c);
    /* explicit head_dim (newer Llama/Mistral configs) may differ from hidden / heads */
    assert_int_equal(parse("{\"model_type\":\"mistral\",\"num_hidden_layers\":1,\"hidden_size\":64,\"num_attention_heads\":4,"
                           "\"num_key_value_heads\":2,\"head_dim\":32,\"intermediate_size\":32,\"vocab_size\":10}", &c, &e),
                     FTC_OK);
    assert_int_equal(c.head_dim, 32);
    ftc_config_free(&c);
}

static void test_real_configs(void **state) {
    (void)state;
    ftc_model_config c;
    ftc_err e;
    const char *shared = getenv("FTC_SHARED_DATA"), *minilm = getenv("FTC_MINILM_DIR");
    char p[4096];
    if (!shared) skip();
    snprintf(p, sizeof p, "%s/models/stories260K-hf", shared);
    if (ftc_config_load(p, &c, &e)) fail_msg("%s", e.msg);
    assert_string_equal(c.model_type, "llama");
    assert_string_equal(c.architecture, "LlamaForCausalLM");
    assert_true(c.n_layers == 5 && c.hidden_size == 64 && c.n_heads == 8 && c.n_kv_heads == 4 && c.head_dim == 8);
    assert_true(c.intermediate_size == 172 && c.vocab_size == 512 && c.max_positions == 512);
    assert_true(c.tie_word_embeddings && c.bos_token_id == 1 && c.eos_token_id == 2);
    assert_float_equal(c.norm_eps, 1e-5, 1e-12);
    ftc_config_free(&c);
    if (!minilm || !*minilm) return;
    if (ftc_config_load(minilm, &c, &e)) fail_msg("%s", e.msg);
    assert_true(c.family == FTC_FAMILY_BERT && c.n_layers == 6 && c.hidden_size == 384 && c.n_heads == 12);
    assert_true(c.intermediate_size == 1536 && c.vocab_size == 30522 && c.type_vocab_size == 2 && c.pad_token_id == 0);
    assert_int_equal(c.activation, FTC_ACT_GELU_ERF);
    assert_int_equal(c.num_labels, 0);
    ftc_config_free(&c);
    assert_int_equal(ftc_config_load("/nonexistent/model", &c, &e), FTC_E_IO);
    assert_non_null(strstr(e.msg, "/nonexistent/model"));
}

/* Each bad value is refused with the file and the field named. */
static void test_bad_values_name_the_field(void **state) {
    (void)state;
    ftc_model_config c;
    ftc_err e;
    static const struct { const char *json, *want; } cases[] = {
        {"{\"model_type\":\"gpt2\",\"n_embd\":1073741824}", "config.json: field \"n_embd\" = 1073741824 is too large"},
        {"{\"model_type\":\"gpt2\",\"layer_norm_epsilon\":-1}", "config.json: field \"layer_norm_epsilon\" = -1 is out of range"},
        {"{\"model_type\":\"gpt2\",\"attn_pdrop\":1.5}", "field \"attn_pdrop\" = 1.5 is out of range [0, 1]"},
        {"{\"model_type\":\"gpt2\",\"activation_function\":7}", "field \"activation_function\" must be a string"},
        {"{\"model_type\":\"gpt2\",\"eos_token_id\":\"</s>\"}", "field \"eos_token_id\" must be a token id"},
        {"{\"model_type\":\"gpt2\",\"n_embd\":100,\"n_head\":12}", "hidden size 100 is not divisible by 12 heads"},
        {"{\"model_type\":\"gpt2\",\"tie_word_embeddings\":1}", "field \"tie_word_embeddings\" must be true or false"},
        {"{\"model_type\":\"llama\",\"num_hidden_layers\":1,\"hidden_size\":20,\"num_attention_heads\":8,"
         "\"intermediate_size\":8,\"vocab_size\":4}", "hidden size 20 is not divisible by 8 heads"},
        {"{\"model_type\":\"llama\",\"num_hidden_layers\":1,\"hidden_size\":12,\"num_attention_heads\":4,"
         "\"intermediate_size\":8,\"vocab_size\":4}", "head_dim 3 must be positive and even"},
        {"{\"model_type\":\"llama\",\"num_hidden_layers\":1,\"hidden_size\":16,\"num_attention_heads\":2,"
         "\"intermediate_size\":8,\"vocab_size\":4,\"rope_theta\":0}", "field \"rope_theta\" = 0 is out of range"},
        {"{\"model_type\":\"llama\",\"num_hidden_layers\":1,\"hidden_size\":16,\"num_attention_heads\":2,"
         "\"intermediate_size\":8,\"vocab_size\":4,\"rope_scaling\":{\"factor\":2}}", "field \"rope_scaling\" must be an object with"},
        {"{\"model_type\":\"mistral\",\"num_hidden_layers\":1,\"hidden_size\":16,\"num_attention_heads\":4,"
         "\"intermediate_size\":8,\"vocab_size\":4}", "num_key_value_heads (8) must divide num_attention_heads (4)"},
        {"{\"model_type\":\"bert\",\"num_hidden_layers\":1,\"hidden_size\":8,\"num_attention_heads\":2,"
         "\"intermediate_size\":8,\"vocab_size\":4,\"id2label\":{\"0\":\"a\",\"2\":\"b\"}}", "id2label must map each id 0..1"},
        {"{\"model_type\":\"bert\",\"num_hidden_layers\":1,\"hidden_size\":8,\"num_attention_heads\":2,"
         "\"intermediate_size\":8,\"vocab_size\":4,\"position_embedding_type\":\"relative_key\"}",
         "field \"position_embedding_type\": unsupported \"relative_key\""},
        {"{\"model_type\":\"bert\",\"num_hidden_layers\":1,\"hidden_size\":8,\"num_attention_heads\":2,\"vocab_size\":4}",
         "missing required field \"intermediate_size\""},
        {"[1,2]", "config.json: not a JSON object"},
        {"{\"model_type\":3}", "missing field \"model_type\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ftc_status st = parse(cases[i].json, &c, &e);
        if (st == FTC_OK || !strstr(e.msg, cases[i].want) || strncmp(e.msg, "config.json: ", 13))
            fail_msg("%s: status %d, message '%s', wanted '%s'", cases[i].json, st, e.msg, cases[i].want);
        assert_null(c.id2label); /* nothing left allocated after a failure */
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_defaults),
        cmocka_unit_test(test_llama_family),
        cmocka_unit_test(test_bert_with_labels),
        cmocka_unit_test(test_errors_name_file_and_field),
        cmocka_unit_test(test_family_defaults_follow_transformers),
        cmocka_unit_test(test_real_configs),
        cmocka_unit_test(test_bad_values_name_the_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
