/*
 * Connection strings: the upstream address in a server's URI, and the same URI pointed at the
 * proxy. mongodb://[userinfo@]host[:port][/[database]][?options]: only the host list changes,
 * plus the options that would let a driver bypass the proxy or hide commands from it.
 */
#include "faultproxy-private.h"

#include <string.h>
#include <strings.h>

typedef struct {
    const char *userinfo; /* NULL when there is none */
    size_t userinfo_len;
    const char *host;
    size_t host_len;
    const char *path; /* "" or "/" or "/db", up to the options */
    size_t path_len;
    const char *options; /* after '?', or "" */
} uri_parts_t;

/* What the proxied URI does with an option of the server's URI (keys without case). */
typedef enum { OPT_KEEP, OPT_DROP, OPT_REFUSE_IF_TRUE } opt_fate_t;

static const struct {
    const char *key;
    opt_fate_t fate;
} option_table[] = {
    {"directConnection", OPT_DROP}, /* set to true at the end */
    {"compressors", OPT_DROP},      /* OP_COMPRESSED would hide the command names */
    {"tls", OPT_REFUSE_IF_TRUE},    /* the proxy reads plain TCP */
    {"ssl", OPT_REFUSE_IF_TRUE},    {"loadBalanced", OPT_REFUSE_IF_TRUE},
};

static bool
invalid(bson_error_t *error, const char *uri, const char *why)
{
    bson_set_error(error, MONGOQ_FAULTPROXY_ERROR_DOMAIN, MONGOQ_FAULTPROXY_ERROR_INVALID_ARG,
                   "cannot proxy %s: %s", uri, why);
    return false;
}

static bool
split_uri(const char *uri, uri_parts_t *parts, bson_error_t *error)
{
    static const char scheme[] = "mongodb://";
    memset(parts, 0, sizeof *parts);
    if (strncmp(uri, scheme, sizeof scheme - 1) != 0) {
        return invalid(error, uri, "not a mongodb:// URI (mongodb+srv names no one host)");
    }
    const char *authority = uri + sizeof scheme - 1;
    size_t authority_len = strcspn(authority, "/?");
    parts->host = authority;
    for (size_t i = authority_len; i > 0; i--) {
        if (authority[i - 1] == '@') {
            parts->userinfo = authority;
            parts->userinfo_len = i - 1;
            parts->host = authority + i;
            break;
        }
    }
    parts->host_len = authority_len - (size_t)(parts->host - authority);
    parts->path = authority + authority_len;
    parts->path_len = strcspn(parts->path, "?");
    parts->options = parts->path[parts->path_len] == '?' ? parts->path + parts->path_len + 1 : "";
    if (parts->host_len == 0 || memchr(parts->host, ',', parts->host_len)) {
        return invalid(error, uri, "it must name exactly one host");
    }
    return true;
}

char *
mongoq_faultproxy_upstream_of(const char *server_uri, bson_error_t *error)
{
    uri_parts_t parts;
    BSON_ASSERT_PARAM(server_uri);
    if (!split_uri(server_uri, &parts, error)) {
        return NULL;
    }
    if (parts.host[0] == '[') {
        invalid(error, server_uri, "IPv6 hosts are not loopback 127.x.x.x");
        return NULL;
    }
    char *host = bson_strndup(parts.host, parts.host_len);
    if (!strchr(host, ':')) {
        char *with_port = bson_strdup_printf("%s:27017", host);
        bson_free(host);
        host = with_port;
    }
    return host;
}

static opt_fate_t
option_fate(const char *option, size_t len)
{
    size_t key_len = strcspn(option, "=&;");
    key_len = key_len < len ? key_len : len;
    for (size_t i = 0; i < sizeof option_table / sizeof option_table[0]; i++) {
        if (strlen(option_table[i].key) == key_len &&
            strncasecmp(option_table[i].key, option, key_len) == 0) {
            return option_table[i].fate;
        }
    }
    return OPT_KEEP;
}

static bool
is_true(const char *option, size_t len)
{
    const char *eq = memchr(option, '=', len);
    return eq && (size_t)(option + len - eq - 1) == 4 && strncasecmp(eq + 1, "true", 4) == 0;
}

/* Appends the kept options of parts->options to out, each followed by '&'. */
static bool
append_options(bson_string_t *out, const uri_parts_t *parts, const char *uri, bson_error_t *error)
{
    for (const char *p = parts->options; *p;) {
        size_t len = strcspn(p, "&;");
        opt_fate_t fate = len ? option_fate(p, len) : OPT_DROP;
        if (fate == OPT_REFUSE_IF_TRUE && is_true(p, len)) {
            return invalid(error, uri, "tls and loadBalanced cannot go through the proxy");
        }
        if (fate != OPT_DROP) {
            bson_string_append_printf(out, "%.*s&", (int)len, p);
        }
        p += len + (p[len] ? 1 : 0);
    }
    return true;
}

char *
mongoq_faultproxy_uri(const char *server_uri, uint16_t proxy_port, bson_error_t *error)
{
    uri_parts_t parts;
    BSON_ASSERT_PARAM(server_uri);
    if (!split_uri(server_uri, &parts, error)) {
        return NULL;
    }
    bson_string_t *out = bson_string_new("mongodb://");
    if (parts.userinfo) {
        bson_string_append_printf(out, "%.*s@", (int)parts.userinfo_len, parts.userinfo);
    }
    bson_string_append_printf(out, "127.0.0.1:%u/", (unsigned)proxy_port);
    if (parts.path_len > 1) {
        bson_string_append_printf(out, "%.*s", (int)parts.path_len - 1, parts.path + 1);
    }
    bson_string_append(out, "?");
    if (!append_options(out, &parts, server_uri, error)) {
        bson_string_free(out, true);
        return NULL;
    }
    bson_string_append(out, "directConnection=true");
    return bson_string_free(out, false);
}
