/* `ftc eval --model RUNDIR`: evaluates a training run's model (RUNDIR/model: the best, adapters merged)
 * on data read the way the run read its own (src/train/rundir.c). Called from cmd_eval. */
#include "cli.h"
#include "ftc/train.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static double num(const json_t *o, const char *k) {
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

int cli_eval_run_dir(const char *rundir, const char *data, bool as_json) {
    ftc_err err;
    json_t *j = NULL;
    if (ftc_run_dir_eval(rundir, data, 0, &j, &err) != FTC_OK) return cli_fail("eval", &err);
    if (!j) {
        ftc_errf(&err, FTC_E_NOMEM, "out of memory");
        return cli_fail("eval", &err);
    }
    if (as_json) {
        char *s = json_dumps(j, JSON_REAL_PRECISION(8));
        printf("%s\n", s);
        free(s);
    } else if (json_object_get(j, "accuracy")) {
        printf("loss        %.4f\naccuracy    %.4f\nmacro-F1    %.4f\nexamples    %lld\n", num(j, "loss"),
               num(j, "accuracy"), num(j, "macro_f1"), (long long)num(j, "n_examples"));
    } else {
        printf("loss        %.4f\nperplexity  %.3f\ntoken acc.  %.4f\ntokens      %lld (trained tokens of %lld examples)\n",
               num(j, "loss"), num(j, "perplexity"), num(j, "token_accuracy"), (long long)num(j, "n_tokens"),
               (long long)num(j, "n_examples"));
    }
    json_decref(j);
    return 0;
}
