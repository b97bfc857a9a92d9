/* One option parser for every subcommand, so the conventions are the same everywhere:
 *   --name VALUE, --name=VALUE                     options that take a value
 *   --flag, --flag true|false, --flag=BOOL, --no-flag   booleans (bare = true)
 *   an unknown --x: "unknown option '--x'" with the closest known names
 *   --  ends the options; the rest is positional. */
#include "cli.h"
#include "ftc/base.h"
#include <stdio.h>
#include <string.h>

static const cli_opt *find(const cli_args *p, const char *name) {
    for (const cli_opt *o = p->opts; o->name; o++)
        if (!strcmp(o->name, name)) return o;
    return NULL;
}

static int bool_word(const char *v, bool loose) { /* 1 true, 0 false, -1 neither */
    if (!strcmp(v, "true")) return 1;
    if (!strcmp(v, "false")) return 0;
    if (!loose) return -1;
    if (!strcmp(v, "yes") || !strcmp(v, "1") || !strcmp(v, "on")) return 1;
    if (!strcmp(v, "no") || !strcmp(v, "0") || !strcmp(v, "off")) return 0;
    return -1;
}

void cli_args_init(cli_args *p, const char *cmd, int argc, char **argv, int first, const cli_opt *opts, int flags) {
    memset(p, 0, sizeof *p);
    p->cmd = cmd, p->argc = argc, p->argv = argv, p->i = first, p->opts = opts, p->flags = flags;
}

int cli_unknown_option(const cli_args *p, const char *name) {
    const char *names[256];
    size_t n = 0;
    for (const cli_opt *o = p->opts; o->name && n < 256; o++)
        if (o->name[0] != '-') names[n++] = o->name;
    char list[256];
    if (ftc_closest_names(name, names, n, "--", list, sizeof list))
        return cli_usage_error(p->cmd, "unknown option '--%s' (did you mean %s?)", name, list);
    return cli_usage_error(p->cmd, "unknown option '--%s'", name);
}

int cli_next(cli_args *p, const char **name, const char **value) {
    *name = *value = NULL;
    if (p->i >= p->argc) return 0;
    const char *a = p->argv[p->i++];
    bool dashdash = !strcmp(a, "--");
    if (p->rest || dashdash) { /* positional from here on */
        if (dashdash && !p->rest) {
            p->rest = true;
            if (p->i >= p->argc) return 0;
            a = p->argv[p->i++];
        }
        *value = a;
        return 1;
    }
    bool long_opt = a[0] == '-' && a[1] == '-';
    const cli_opt *o = NULL;
    if (!long_opt) {
        for (const cli_opt *s = p->opts; s->name; s++) /* short options are listed with their dash ("-n") */
            if (s->name[0] == '-' && !strcmp(s->name, a)) o = s;
        if (!o) {
            if (p->flags & CLI_POSITIONAL_ENDS) p->rest = true;
            *value = a;
            return 1;
        }
    }
    char key[128];
    snprintf(key, sizeof key, "%s", a);
    const char *eq = NULL;
    if (long_opt) {
        eq = strchr(a + 2, '=');
        size_t kl = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (kl >= sizeof key) kl = sizeof key - 1;
        memcpy(key, a + 2, kl);
        key[kl] = 0;
        o = find(p, key);
        /* --no-flag: a boolean set to false */
        const cli_opt *neg = o || strncmp(key, "no-", 3) ? NULL : find(p, key + 3);
        if (neg && neg->is_bool == true) {
            o = neg;
            if (eq) { cli_usage_error(p->cmd, "--%s takes no value", key); return -1; }
            *name = o->canon ? o->canon : o->name;
            *value = "false";
            return 1;
        }
        if (!o || (o->name[0] == '-')) { cli_unknown_option(p, key); return -1; }
    }
    *name = o->canon ? o->canon : o->name;
    if (o->is_bool == true) {
        if (eq) {
            int b = bool_word(eq + 1, true);
            if (b < 0) { cli_usage_error(p->cmd, "--%s is true or false, not '%s'", key, eq + 1); return -1; }
            *value = b ? "true" : "false";
        } else {
            /* --flag true|false; commands without positional arguments also take yes/no/1/0 here */
            const char *next = p->i < p->argc ? p->argv[p->i] : NULL;
            int b = next ? bool_word(next, !(p->flags & CLI_HAS_POSITIONAL)) : -1;
            if (b >= 0) p->i++;
            else if (next && next[0] != '-' && !(p->flags & CLI_HAS_POSITIONAL)) {
                cli_usage_error(p->cmd, "--%s is true or false, not '%s'", key, next);
                return -1;
            }
            *value = b == 0 ? "false" : "true";
        }
        return 1;
    }
    if (eq) { *value = eq + 1; return 1; }
    if (o->is_bool == CLI_VALUE_OPTIONAL && (p->i >= p->argc || p->argv[p->i][0] == '-')) {
        *value = "";
        return 1;
    }
    if (p->i >= p->argc) { cli_usage_error(p->cmd, "%s needs a value", a); return -1; }
    *value = p->argv[p->i++];
    return 1;
}

bool cli_true(const char *v) { return v && !strcmp(v, "true"); }
