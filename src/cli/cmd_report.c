/* ftc report --run RUNDIR: (re)writes RUNDIR/report.html from the run's metrics.jsonl, eval.json and
 * samples.jsonl (formats in docs/report.md). */
#include "cli.h"
#include "ftc/eval.h"
#include <stdio.h>
#include <string.h>

static void report_help(FILE *out) {
    fprintf(out,
            "Usage: ftc report --run RUNDIR\n\n"
            "Writes RUNDIR/report.html: training and validation loss, the validation metrics and the learning rate\n"
            "against step as inline SVG charts, the final metrics table (base and tuned side by side when\n"
            "eval.json has \"base\"), for classification a confusion heat map and the worst classes, for\n"
            "causal-lm the sample answers. One self-contained file: no JavaScript, no network.\n\n"
            "Reads RUNDIR/metrics.jsonl (required), RUNDIR/eval.json and RUNDIR/samples.jsonl (if present).\n"
            "Formats: docs/report.md.\n");
}

int cmd_report(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { report_help(stdout); return 0; }
    const char *run = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--run") && i + 1 < argc) run = argv[++i];
        else if (!strncmp(argv[i], "--run=", 6)) run = argv[i] + 6;
        else return cli_usage_error("report", "unexpected argument '%s'", argv[i]);
    }
    if (!run || !*run) return cli_usage_error("report", "--run RUNDIR is required");
    ftc_err err;
    if (ftc_report_write(run, &err) != FTC_OK) return cli_fail("report", &err);
    printf("%s/report.html\n", run);
    return 0;
}
