/* config.json parsing for each supported model_type, defaults per family, and the errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_defaults),
        cmocka_unit_test(test_llama_family),
        cmocka_unit_test(test_bert_with_labels),
        cmocka_unit_test(test_errors_name_file_and_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
