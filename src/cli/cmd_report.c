/* ftc report --run RUNDIR: (re)writes RUNDIR/report.html from the run's metrics.jsonl, eval.json and
 * samples.jsonl (formats in docs/report.md). */
#include "cli.h"
#include "ftc/eval.h"
#include <stdio.h>
#include <string.h>

static void report_help(FILE *out) {
    fprintf(out,
            "Usage: ftc report RUNDIR   (or --run RUNDIR)\n\n"
            "Writes RUNDIR/report.html: training and validation loss, the validation metrics and the learning rate\n"
            "against step as inline SVG charts, the final metrics table (base and tuned side by side when\n"
            "eval.json has \"base\"), for classification a confusion heat map and the worst classes, for\n"
            "causal-lm the sample answers. One self-contained file: no JavaScript, no network.\n\n"
            "Reads RUNDIR/metrics.jsonl (required), RUNDIR/eval.json and RUNDIR/samples.jsonl (if present).\n"
            "Formats: docs/report.md.\n"
            "\nExamples:\n"
            "  ftc report runs/faq && xdg-open runs/faq/report.html\n");
}

int cmd_report(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { report_help(stdout); return 0; }
    const char *run = NULL;
    static const cli_opt opts[] = {{"run", false, NULL}, {NULL, false, NULL}};
    cli_args p;
    cli_args_init(&p, "report", argc, argv, 1, opts, CLI_HAS_POSITIONAL);
    const char *a, *v;
    int r;
    while ((r = cli_next(&p, &a, &v)) > 0) {
        if (run) return cli_usage_error("report", "one run directory at a time ('%s' and '%s')", run, v);
        run = v; /* --run RUNDIR or RUNDIR */
    }
    if (r < 0) return 1;
    if (!run || !*run) return cli_usage_error("report", "--run RUNDIR is required");
    ftc_err err;
    if (ftc_report_write(run, &err) != FTC_OK) return cli_fail("report", &err);
    printf("%s/report.html\n", run);
    return 0;
}
