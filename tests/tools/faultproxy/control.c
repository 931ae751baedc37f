/*
 * The text control protocol: one command per line, one reply line, "ok ..." or "error ...".
 * Fault commands are the rows of the fault table (faults.c) by name:
 *     NAME COMMANDS [TIMES] [MS] [app=NAME]      (MS only for faults that take a duration)
 * the others are the rows of command_table below. The same function serves the standalone
 * binary's control port and tests that drive the library in-process.
 */
#include "faultproxy-private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE 1024
#define MAX_ARGS 8

typedef bool (*command_fn)(mongoq_faultproxy_t *proxy, char **args, size_t n_args,
                           bson_string_t *reply);

static bool
reply_error(bson_string_t *reply, const char *message)
{
    bson_string_append_printf(reply, "error %s", message);
    return false;
}

static bool
reply_result(bson_string_t *reply, bool ok, const bson_error_t *error)
{
    if (!ok) {
        return reply_error(reply, error->message);
    }
    bson_string_append(reply, "ok");
    return true;
}

static bool
parse_number(const char *s, long long lo, long long hi, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        return false;
    }
    *out = v;
    return true;
}

/* NAME COMMANDS [TIMES] [MS] [app=NAME] */
static bool
cmd_fault(mongoq_faultproxy_t *proxy, char **args, size_t n_args, bson_string_t *reply)
{
    const fp_fault_def_t *fault = fp_fault_by_name(args[0]);
    mongoq_fault_rule_t rule = MONGOQ_FAULT_RULE_INIT;
    static const long long limits[2][2] = {{1, 1000000000}, {0, 86400000}}; /* TIMES, MS */
    long long numbers[2] = {1, 0};
    size_t n_numbers = 0, max_numbers = fault->takes_duration ? 2 : 1;
    bson_error_t error;
    if (n_args < 2) {
        return reply_error(reply, "usage: FAULT COMMANDS [TIMES] [MS] [app=NAME]");
    }
    for (size_t i = 2; i < n_args; i++) {
        if (strncmp(args[i], "app=", 4) == 0 && !rule.app_name) {
            rule.app_name = args[i] + 4;
        } else if (n_numbers == max_numbers ||
                   !parse_number(args[i], limits[n_numbers][0], limits[n_numbers][1],
                                 &numbers[n_numbers])) {
            return reply_error(reply, "expected TIMES (>= 1), MS (>= 0, hang only), app=NAME");
        } else {
            n_numbers++;
        }
    }
    rule.kind = fault->kind;
    rule.commands = args[1];
    rule.times = (int32_t)numbers[0];
    rule.hang_ms = numbers[1];
    int32_t id = mongoq_faultproxy_add_rule(proxy, &rule, &error);
    if (!id) {
        return reply_error(reply, error.message);
    }
    bson_string_append_printf(reply, "ok rule=%d", (int)id);
    return true;
}

static bool
cmd_partition(mongoq_faultproxy_t *proxy, char **args, size_t n_args, bson_string_t *reply)
{
    static const struct {
        const char *word;
        mongoq_partition_t mode;
    } modes[] = {{"on", MONGOQ_PARTITION_CLOSE},
                 {"close", MONGOQ_PARTITION_CLOSE},
                 {"refuse", MONGOQ_PARTITION_REFUSE},
                 {"off", MONGOQ_PARTITION_OFF}};
    bson_error_t error;
    for (size_t i = 0; n_args == 2 && i < sizeof modes / sizeof modes[0]; i++) {
        if (strcmp(args[1], modes[i].word) == 0) {
            return reply_result(reply, mongoq_faultproxy_partition(proxy, modes[i].mode, &error),
                                &error);
        }
    }
    return reply_error(reply, "usage: partition on|close|refuse|off");
}

static bool
cmd_reset(mongoq_faultproxy_t *proxy, char **args, size_t n_args, bson_string_t *reply)
{
    bson_error_t error;
    (void)args;
    (void)n_args;
    return reply_result(reply, mongoq_faultproxy_reset(proxy, &error), &error);
}

static bool
cmd_clear(mongoq_faultproxy_t *proxy, char **args, size_t n_args, bson_string_t *reply)
{
    bson_error_t error;
    (void)args;
    (void)n_args;
    return reply_result(reply, mongoq_faultproxy_clear(proxy, &error), &error);
}

static bool
cmd_heal(mongoq_faultproxy_t *proxy, char **args, size_t n_args, bson_string_t *reply)
{
    bson_error_t error;
    (void)args;
    (void)n_args;
    return reply_result(reply, mongoq_faultproxy_heal(proxy, &error), &error);
}

static bool
cmd_stats(mongoq_faultproxy_t *proxy, char **args, size_t n_args, bson_string_t *reply)
{
    mongoq_faultproxy_stats_t stats = MONGOQ_FAULTPROXY_STATS_INIT;
    bson_error_t error;
    (void)args;
    (void)n_args;
    if (!mongoq_faultproxy_stats(proxy, &stats, &error)) {
        return reply_error(reply, error.message);
    }
    bson_string_append(reply, "ok");
#define APPEND_STAT_(field, key, desc)                                                             \
    bson_string_append_printf(reply, " %s=%lld", key, (long long)stats.field);
    MONGOQ_FAULTPROXY_STATS_MAP(APPEND_STAT_)
#undef APPEND_STAT_
    return true;
}

static bool
cmd_hits(mongoq_faultproxy_t *proxy, char **args, size_t n_args, bson_string_t *reply)
{
    long long id = 0;
    int64_t hits = -1;
    if (n_args == 2 && parse_number(args[1], 1, INT32_MAX, &id)) {
        hits = mongoq_faultproxy_rule_hits(proxy, (int32_t)id);
    }
    if (hits < 0) {
        return reply_error(reply, "usage: hits RULE (an id from a fault command)");
    }
    bson_string_append_printf(reply, "ok hits=%lld", (long long)hits);
    return true;
}

static bool
cmd_count(mongoq_faultproxy_t *proxy, char **args, size_t n_args, bson_string_t *reply)
{
    if (n_args != 2) {
        return reply_error(reply, "usage: count COMMAND");
    }
    bson_string_append_printf(reply, "ok count=%lld",
                              (long long)mongoq_faultproxy_command_count(proxy, args[1]));
    return true;
}

static bool cmd_help(mongoq_faultproxy_t *proxy, char **args, size_t n_args, bson_string_t *reply);

static const struct {
    const char *name;
    command_fn run;
} command_table[] = {
    {"partition", cmd_partition}, {"reset", cmd_reset}, {"clear", cmd_clear}, {"heal", cmd_heal},
    {"stats", cmd_stats},         {"hits", cmd_hits},   {"count", cmd_count}, {"help", cmd_help},
};

static bool
cmd_help(mongoq_faultproxy_t *proxy, char **args, size_t n_args, bson_string_t *reply)
{
    (void)proxy;
    (void)args;
    (void)n_args;
    bson_string_append(reply, "ok");
    for (size_t i = 0; fp_fault_at(i); i++) {
        bson_string_append_printf(reply, " %s", fp_fault_at(i)->name);
    }
    for (size_t i = 0; i < sizeof command_table / sizeof command_table[0]; i++) {
        bson_string_append_printf(reply, " %s", command_table[i].name);
    }
    return true;
}

/* Splits line (modified) at blanks; false when there are too many words. */
static bool
split_words(char *line, char **args, size_t *n_args)
{
    char *save = NULL;
    *n_args = 0;
    for (char *w = strtok_r(line, " \t\r\n", &save); w; w = strtok_r(NULL, " \t\r\n", &save)) {
        if (*n_args == MAX_ARGS) {
            return false;
        }
        args[(*n_args)++] = w;
    }
    return true;
}

static bool
dispatch(mongoq_faultproxy_t *proxy, char **args, size_t n_args, bson_string_t *reply)
{
    if (fp_fault_by_name(args[0])) {
        return cmd_fault(proxy, args, n_args, reply);
    }
    for (size_t i = 0; i < sizeof command_table / sizeof command_table[0]; i++) {
        if (strcmp(command_table[i].name, args[0]) == 0) {
            return command_table[i].run(proxy, args, n_args, reply);
        }
    }
    bson_string_append_printf(reply, "error unknown command '%.64s' (try help)", args[0]);
    return false;
}

bool
mongoq_faultproxy_control(mongoq_faultproxy_t *proxy, const char *line, char **reply)
{
    char *args[MAX_ARGS];
    size_t n_args = 0;
    bool ok = false;
    BSON_ASSERT_PARAM(proxy);
    BSON_ASSERT_PARAM(line);
    BSON_ASSERT_PARAM(reply);
    bson_string_t *out = bson_string_new(NULL);
    char *copy = bson_strndup(line, MAX_LINE + 1);
    if (strlen(copy) > MAX_LINE) {
        reply_error(out, "line too long");
    } else if (!split_words(copy, args, &n_args)) {
        reply_error(out, "too many words");
    } else if (n_args == 0) {
        reply_error(out, "empty line (try help)");
    } else {
        ok = dispatch(proxy, args, n_args, out);
    }
    bson_free(copy);
    *reply = bson_string_free(out, false);
    return ok;
}
