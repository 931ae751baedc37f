/*
 * Fault rules: which requests a fault hits. A rule names commands (or "*") and optionally an
 * appName, and hits the next `times` requests that match. Rules are kept after they are spent
 * so their hit counts stay readable; the proxy holds them under its mutex.
 */
#include "faultproxy-private.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* Commands a driver sends on its own (handshake, monitoring, session cleanup): "*" skips them,
 * so a wildcard rule hits the application's commands; name one to target it. */
static const char *const never_by_wildcard[] = {"hello", "isMaster", "ping", "endSessions"};

static bool
invalid(bson_error_t *error, const char *what)
{
    bson_set_error(error, MONGOQ_FAULTPROXY_ERROR_DOMAIN, MONGOQ_FAULTPROXY_ERROR_INVALID_ARG,
                   "invalid fault rule: %s", what);
    return false;
}

static bool
is_name(const char *p, size_t len)
{
    if (len == 0 || len >= FP_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!isalnum((unsigned char)p[i]) && p[i] != '_' && p[i] != '$') {
            return false;
        }
    }
    return true;
}

/* Splits "a,b,c" into rule->commands. */
static bool
parse_commands(fp_rule_t *rule, const char *list, bson_error_t *error)
{
    const char *p = list;
    if (strcmp(list, "*") == 0) {
        rule->any_command = true;
        return true;
    }
    while (*p) {
        size_t len = strcspn(p, ",");
        if (!is_name(p, len)) {
            return invalid(error, "commands must be names separated by commas, or \"*\"");
        }
        if (rule->n_commands == FP_MAX_RULE_COMMANDS) {
            return invalid(error, "too many commands");
        }
        rule->commands[rule->n_commands++] = bson_strndup(p, len);
        p += len + (p[len] == ',' ? 1 : 0);
    }
    return rule->n_commands > 0 || invalid(error, "no command named");
}

static bool
check_spec(const mongoq_fault_rule_t *spec, bson_error_t *error)
{
    if (spec->version == 0 || spec->version > MONGOQ_FAULT_RULE_VERSION) {
        return invalid(error, "unknown version (use MONGOQ_FAULT_RULE_INIT)");
    }
    if (!fp_fault_by_kind(spec->kind)) {
        return invalid(error, "unknown kind");
    }
    if (!spec->commands || !*spec->commands) {
        return invalid(error, "no commands");
    }
    if (spec->times < 0 || spec->hang_ms < 0 ||
        (spec->hang_ms && spec->kind != MONGOQ_FAULT_HANG)) {
        return invalid(error, "times and hang_ms must be >= 0, hang_ms only for a hang");
    }
    if (spec->app_name && (!*spec->app_name || strlen(spec->app_name) >= FP_APP_MAX)) {
        return invalid(error, "app_name must be 1 to 127 bytes");
    }
    return true;
}

/* On failure the rule holds nothing (no cleanup needed). */
bool
fp_rule_init(fp_rule_t *rule, int32_t id, const mongoq_fault_rule_t *spec, bson_error_t *error)
{
    memset(rule, 0, sizeof *rule);
    if (!check_spec(spec, error)) {
        return false;
    }
    rule->id = id;
    rule->kind = spec->kind;
    rule->remaining = spec->times ? spec->times : 1;
    rule->hang_ms = spec->hang_ms;
    rule->app_name = spec->app_name ? bson_strdup(spec->app_name) : NULL;
    if (!parse_commands(rule, spec->commands, error)) {
        fp_rule_cleanup(rule);
        return false;
    }
    return true;
}

void
fp_rule_cleanup(fp_rule_t *rule)
{
    for (size_t i = 0; i < rule->n_commands; i++) {
        bson_free(rule->commands[i]);
    }
    bson_free(rule->app_name);
    memset(rule, 0, sizeof *rule);
}

static bool
takes_command(const fp_rule_t *rule, const char *command)
{
    if (!*command) {
        return false;
    }
    for (size_t i = 0; i < rule->n_commands; i++) {
        if (strcasecmp(rule->commands[i], command) == 0) {
            return true;
        }
    }
    if (!rule->any_command) {
        return false;
    }
    for (size_t i = 0; i < sizeof never_by_wildcard / sizeof never_by_wildcard[0]; i++) {
        if (strcasecmp(never_by_wildcard[i], command) == 0) {
            return false;
        }
    }
    return true;
}

bool
fp_rules_match(fp_rule_t *rules, size_t n_rules, const char *command, const char *app_name,
               fp_hit_t *hit)
{
    for (size_t i = 0; i < n_rules; i++) {
        fp_rule_t *rule = &rules[i];
        if (rule->remaining == 0 || !takes_command(rule, command) ||
            (rule->app_name && strcmp(rule->app_name, app_name) != 0)) {
            continue;
        }
        rule->remaining--;
        rule->hits++;
        hit->rule_id = rule->id;
        hit->kind = rule->kind;
        hit->hang_ms = rule->hang_ms;
        return true;
    }
    return false;
}
