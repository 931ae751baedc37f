/*
 * The tool's command line: one table of every option (name, kind, where it goes), one parser
 * for all commands; each command's row in main.c names the options it accepts.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef enum { OPT_FLAG, OPT_INT, OPT_STR } opt_kind_t;

static const struct {
    const char *name;
    opt_kind_t kind;
    size_t offset;     /* of the value in cli_args_t */
    size_t has_offset; /* of its "given" flag, for integers (0: none) */
    bool global;
} OPTIONS[] = {
#define STR_(name, field, global) {name, OPT_STR, offsetof(cli_args_t, field), 0, global}
#define FLAG_(name, field, global) {name, OPT_FLAG, offsetof(cli_args_t, field), 0, global}
#define INT_(name, field, has)                                                                     \
    {name, OPT_INT, offsetof(cli_args_t, field), offsetof(cli_args_t, has), false}
    STR_("uri", uri, true),
    STR_("db", db, true),
    STR_("queue", queue, true),
    {"timeout-ms", OPT_INT, offsetof(cli_args_t, timeout_ms), 0, true},
    FLAG_("help", help, true),
    FLAG_("json", json, false),
    FLAG_("all", all, false),
    FLAG_("dry-run", dry_run, false),
    FLAG_("yes", yes, false),
    FLAG_("due", due, false),
    FLAG_("not-due", not_due, false),
    FLAG_("allow-actions", allow_actions, false),
    FLAG_("listen-any", listen_any, false),
    INT_("limit", limit, has_limit),
    INT_("priority", priority, has_priority),
    INT_("delay", delay_ms, has_delay),
    INT_("count", count, has_count),
    INT_("interval", interval_ms, has_interval),
    INT_("batch", batch, has_batch),
    STR_("status", status, false),
    STR_("sort", sort, false),
    STR_("page", page, false),
    STR_("dedup", dedup, false),
    STR_("id", id, false),
    STR_("claimed-by", claimed_by, false),
    STR_("error", error_text, false),
    STR_("listen", listen, false),
    STR_("token", token, false),
#undef STR_
#undef FLAG_
#undef INT_
};
#define N_OPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])

static int
find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (strlen(OPTIONS[i].name) == len && strncmp(OPTIONS[i].name, name, len) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static bool
parse_int(const char *text, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') {
        return false;
    }
    *out = (int64_t)v;
    return true;
}

/* Stores one option's value; CLI_USAGE when it is missing or not a number. */
static int
store(cli_args_t *args, int opt, const char *value)
{
    char *base = (char *)args;
    switch (OPTIONS[opt].kind) {
    case OPT_FLAG:
        if (value) {
            return cli_fail(NULL, CLI_USAGE, "--%s takes no value", OPTIONS[opt].name);
        }
        *(bool *)(base + OPTIONS[opt].offset) = true;
        return CLI_OK;
    case OPT_INT:
        if (!value || !parse_int(value, (int64_t *)(base + OPTIONS[opt].offset))) {
            return cli_fail(NULL, CLI_USAGE, "--%s needs an integer", OPTIONS[opt].name);
        }
        if (OPTIONS[opt].has_offset) {
            *(bool *)(base + OPTIONS[opt].has_offset) = true;
        }
        return CLI_OK;
    case OPT_STR:
        if (!value) {
            return cli_fail(NULL, CLI_USAGE, "--%s needs a value", OPTIONS[opt].name);
        }
        *(const char **)(base + OPTIONS[opt].offset) = value;
        return CLI_OK;
    }
    return CLI_USAGE;
}

int
cli_parse(int argc, char **argv, cli_args_t *args, const char **command)
{
    bool options_end = false;
    *command = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_end || a[0] != '-' || strcmp(a, "-") == 0) {
            if (args->npositional == CLI_MAX_POSITIONAL) {
                return cli_fail(NULL, CLI_USAGE, "too many arguments");
            }
            args->positional[args->npositional++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            options_end = true;
            continue;
        }
        if (strcmp(a, "-h") == 0) {
            args->help = true;
            continue;
        }
        if (a[1] != '-') {
            return cli_fail(NULL, CLI_USAGE, "unknown option %s (options are --long)", a);
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int opt = find_option(name, len);
        if (opt < 0) {
            return cli_fail(NULL, CLI_USAGE, "unknown option --%.*s", (int)len, name);
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!eq && OPTIONS[opt].kind != OPT_FLAG) {
            value = i + 1 < argc ? argv[++i] : NULL;
        }
        int rc = store(args, opt, value);
        if (rc != CLI_OK) {
            return rc;
        }
    }
    if (args->npositional > 0) {
        *command = args->positional[0];
    }
    return CLI_OK;
}

/* Whether the space-separated list holds name exactly. */
static bool
listed(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += len) {
        bool starts = p == list || p[-1] == ' ';
        bool ends = p[len] == '\0' || p[len] == ' ';
        if (starts && ends) {
            return true;
        }
    }
    return false;
}

int
cli_check_options(int argc, char **argv, const cli_command_t *cmd)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            break;
        }
        if (strncmp(a, "--", 2) != 0) {
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int opt = find_option(name, len);
        if (opt >= 0 && !OPTIONS[opt].global && !listed(cmd->options, OPTIONS[opt].name)) {
            return cli_fail(NULL, CLI_USAGE, "%s: unknown option --%s (see mongoq %s --help)",
                            cmd->name, OPTIONS[opt].name, cmd->name);
        }
        if (opt >= 0 && OPTIONS[opt].kind != OPT_FLAG && !eq) {
            i++; /* its value */
        }
    }
    return CLI_OK;
}

bool
cli_parse_id(const cli_t *cli, const char *text, bson_oid_t *id)
{
    if (!text || strlen(text) != 24 || !bson_oid_is_valid(text, 24)) {
        cli_fail(cli, CLI_USAGE, "bad id \"%s\": an ObjectId is 24 hex digits", text ? text : "");
        return false;
    }
    bson_oid_init_from_string(id, text);
    return true;
}

bool
cli_known_status(const char *status, bool all_ok)
{
    static const char *const known[] = {"ready", "processing", "done", "dead"};
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(status, known[i]) == 0) {
            return true;
        }
    }
    return all_ok && strcmp(status, "all") == 0;
}
