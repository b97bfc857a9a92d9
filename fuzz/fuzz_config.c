/* libFuzzer: config.json text of any shape must parse or fail with a message, never crash or leak;
 * an accepted config must satisfy the invariants the model code relies on. */
#include <stdint.h>
#include <stdlib.h>
#include "ftc/hf_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ftc_model_config cfg;
    ftc_err err;
    err.msg[0] = 0;
    ftc_status st = ftc_config_parse((const char *)data, size, "fuzz/config.json", &cfg, &err);
    if (st != FTC_OK) {
        if (!err.msg[0]) abort();
        return 0;
    }
    if (cfg.n_layers <= 0 || cfg.hidden_size <= 0 || cfg.n_heads <= 0 || cfg.n_kv_heads <= 0 ||
        cfg.n_heads % cfg.n_kv_heads || cfg.head_dim <= 0 || cfg.vocab_size <= 0 || cfg.intermediate_size <= 0 ||
        cfg.max_positions <= 0 || cfg.num_labels < 0 || cfg.num_labels > FTC_MAX_LABELS)
        abort();
    for (int i = 0; i < cfg.num_labels; i++)
        if (!cfg.id2label[i]) abort();
    (void)ftc_family_name(cfg.family);
    ftc_config_free(&cfg);
    return 0;
}
