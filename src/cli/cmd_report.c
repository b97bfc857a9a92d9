/* ftc report RUNDIR... [--out FILE]: one run: (re)writes RUNDIR/report.html from the run's metrics.jsonl,
 * eval.json, samples.jsonl and config.resolved.json; several: one page comparing them, at --out (formats in
 * docs/report.md). */
#include "cli.h"
#include "ftc/eval.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void report_help(FILE *out) {
    fprintf(out,
            "Usage: ftc report RUNDIR [--out FILE.html]\n"
            "       ftc report RUNDIR1 RUNDIR2 ... [--out FILE.html]\n\n"
            "One run: writes RUNDIR/report.html (or FILE.html): training and validation loss, the validation\n"
            "metrics, the gradient norm, the throughput and the learning rate against step as inline SVG charts\n"
            "with the best checkpoint (the step the model and final metrics come from) marked, the training time,\n"
            "the final metrics table (base and tuned side by side when eval.json has \"base\"), for\n"
            "classification a confusion heat map, the worst classes and the most confident mistakes with their\n"
            "text, for causal-lm the sample answers, and the settings that differ from the defaults.\n\n"
            "Several runs: one page at FILE.html (default ./report.html): the curves overlaid (one colour per\n"
            "run, each run's best checkpoint marked), the final metrics side by side (the best of each row\n"
            "marked) and the settings that differ between the runs.\n\n"
            "One self-contained file: no JavaScript, no network, written atomically.\n"
            "Reads RUNDIR/metrics.jsonl (required), RUNDIR/eval.json, RUNDIR/samples.jsonl and\n"
            "RUNDIR/config.resolved.json (if present). --run RUNDIR is the same as RUNDIR.\n"
            "Formats: docs/report.md.\n"
            "\nExamples:\n"
            "  ftc report runs/faq && xdg-open runs/faq/report.html\n"
            "  ftc report runs/head runs/lora runs/full --out compare.html\n");
}

int cmd_report(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { report_help(stdout); return 0; }
    const char *out = NULL;
    static const cli_opt opts[] = {{"run", false, NULL}, {"out", false, NULL}, {NULL, false, NULL}};
    const char **runs = calloc((size_t)argc + 1, sizeof *runs);
    if (!runs) { fprintf(stderr, "ftc report: error: out of memory\n"); return 3; }
    int n = 0;
    cli_args p;
    cli_args_init(&p, "report", argc, argv, 1, opts, CLI_HAS_POSITIONAL);
    const char *a, *v;
    int r;
    while ((r = cli_next(&p, &a, &v)) > 0) {
        if (a && !strcmp(a, "out")) out = v;
        else runs[n++] = v; /* --run RUNDIR or RUNDIR */
    }
    if (r < 0) { free(runs); return 1; }
    if (!n) { free(runs); return cli_usage_error("report", "give a run directory: ftc report RUNDIR [RUNDIR...]"); }
    for (int i = 0; i < n; i++)
        if (!*runs[i]) { free(runs); return cli_usage_error("report", "an empty run directory name"); }
    if (out && !*out) { free(runs); return cli_usage_error("report", "--out needs a file name"); }
    char path[4200];
    if (out) snprintf(path, sizeof path, "%s", out);
    else if (n == 1) snprintf(path, sizeof path, "%s/report.html", runs[0]);
    else snprintf(path, sizeof path, "report.html");
    ftc_err err;
    ftc_status s = ftc_report_write_runs(runs, n, path, &err);
    free(runs);
    if (s != FTC_OK) return cli_fail("report", &err);
    printf("%s\n", path);
    return 0;
}
