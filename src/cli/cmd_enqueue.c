/*
 * `mongoq enqueue`: one JSON payload from the command line, or one per line on stdin. Every
 * payload is parsed before the first is written, so bad JSON anywhere writes nothing.
 */
#include <inttypes.h>
#include <string.h>

#include "cli.h"

/* The most lines read from stdin in one call. */
#define MAX_LINES 1000000
/* The longest line (a payload is at most MONGOQ_MAX_PAYLOAD_BYTES of BSON; JSON is longer). */
#define MAX_LINE_BYTES (32 * 1024 * 1024)

typedef struct {
    bson_t **docs;
    size_t n, cap;
} payloads_t;

static void
payloads_free(payloads_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        bson_destroy(p->docs[i]);
    }
    bson_free(p->docs);
}

/* Parses one payload; false after printing where it is bad. */
static bool
add_payload(cli_t *cli, payloads_t *p, const char *json, size_t line)
{
    bson_error_t error;
    bson_t *doc = bson_new_from_json((const uint8_t *)json, -1, &error);
    if (!doc) {
        if (line) {
            cli_fail(cli, CLI_USAGE, "line %zu: bad JSON: %s", line, error.message);
        } else {
            cli_fail(cli, CLI_USAGE, "bad JSON: %s", error.message);
        }
        return false;
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->docs = bson_realloc(p->docs, p->cap * sizeof *p->docs);
    }
    p->docs[p->n++] = doc;
    return true;
}

/* Reads every line of stdin (blank lines skipped); false after printing an error. */
static bool
read_stdin(cli_t *cli, payloads_t *p)
{
    bson_string_t *line = bson_string_new(NULL);
    size_t number = 0;
    bool ok = true;
    int c = 0;
    while (ok && c != EOF) {
        bson_string_truncate(line, 0);
        while ((c = getchar()) != EOF && c != '\n' && line->len < MAX_LINE_BYTES) {
            bson_string_append_c(line, (char)c);
        }
        if (c == EOF && line->len == 0) {
            break; /* the end of input after the last newline is not a line */
        }
        number++;
        if (line->len >= MAX_LINE_BYTES || number > MAX_LINES) {
            ok = false;
            cli_fail(cli, CLI_USAGE, "line %zu: too long, or more than %d lines", number,
                     MAX_LINES);
        } else if (strspn(line->str, " \t\r") != line->len) {
            ok = add_payload(cli, p, line->str, number);
        }
    }
    bson_string_free(line, true);
    if (ok && p->n == 0) {
        cli_fail(cli, CLI_USAGE, "no payload on stdin");
        return false;
    }
    return ok;
}

/* Options into o; false after printing a usage error. */
static bool
enqueue_options(cli_t *cli, size_t n, mongoq_enqueue_opts_t *o, bson_oid_t *id)
{
    const cli_args_t *a = &cli->args;
    if (a->has_priority && (a->priority < INT32_MIN || a->priority > INT32_MAX)) {
        cli_fail(cli, CLI_USAGE, "--priority must be a 32-bit integer");
        return false;
    }
    if (a->has_delay && (a->delay_ms < 0 || a->delay_ms > MONGOQ_MAX_DURATION_MS)) {
        cli_fail(cli, CLI_USAGE, "--delay must be 0 to %" PRId64 " ms", MONGOQ_MAX_DURATION_MS);
        return false;
    }
    if ((a->dedup || a->id) && n != 1) {
        cli_fail(cli, CLI_USAGE, "--dedup and --id name one message: give one payload");
        return false;
    }
    if (a->id && !cli_parse_id(cli, a->id, id)) {
        return false;
    }
    o->priority = (int32_t)a->priority;
    o->delay_ms = a->delay_ms;
    o->dedup_key = a->dedup;
    o->caller_ids = a->id != NULL;
    return true;
}

/* Enqueues every payload (one call each: a --dedup or --id needs a call of its own). */
static int
enqueue_all(cli_t *cli, mongoq_queue_t *queue, payloads_t *p, mongoq_enqueue_opts_t *o,
            bson_oid_t *id)
{
    bson_t doc = BSON_INITIALIZER, ids;
    bson_error_t error;
    int rc = CLI_OK;
    size_t done = 0;
    BSON_APPEND_ARRAY_BEGIN(&doc, "ids", &ids);
    for (size_t i = 0; i < p->n && rc == CLI_OK; i++) {
        bson_oid_t out = *id;
        char hex[25], key[16];
        const char *k;
        if (!mongoq_enqueue(queue, p->docs[i], o, &out, &error)) {
            rc = cli_fail_error(cli, "enqueue", &error);
            if (done > 0) {
                fprintf(stderr, "mongoq: enqueue: %zu of %zu were enqueued before the error\n",
                        done, p->n);
            }
            break;
        }
        bson_oid_to_string(&out, hex);
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
        BSON_APPEND_UTF8(&ids, k, hex);
        if (!cli->args.json) {
            fprintf(cli->out, "%s\n", hex);
        }
        done++;
    }
    bson_append_array_end(&doc, &ids);
    if (rc == CLI_OK && cli->args.json) {
        cli_print_json(cli->out, &doc);
    }
    bson_destroy(&doc);
    return rc;
}

int
cli_cmd_enqueue(cli_t *cli)
{
    payloads_t p = {0};
    mongoq_enqueue_opts_t o = MONGOQ_ENQUEUE_OPTS_INIT;
    bson_oid_t id;
    memset(&id, 0, sizeof id);
    int rc = CLI_USAGE;
    const char *arg = cli->args.npositional > 1 ? cli->args.positional[1] : NULL;
    if (cli->args.npositional > 2) {
        cli_fail(cli, CLI_USAGE, "give one JSON payload (quote it), or lines on stdin");
        goto done;
    }
    if (arg && strcmp(arg, "-") != 0 ? !add_payload(cli, &p, arg, 0) : !read_stdin(cli, &p)) {
        goto done;
    }
    if (!enqueue_options(cli, p.n, &o, &id)) {
        goto done;
    }
    mongoq_queue_t *queue = cli_queue(cli);
    bson_error_t error;
    /* The one command that creates a queue: give it its indexes (dedup keys need one). */
    if (queue && !mongoq_queue_ensure_indexes(queue, &error)) {
        rc = cli_fail_error(cli, "ensure_indexes", &error);
        goto done;
    }
    rc = queue ? enqueue_all(cli, queue, &p, &o, &id) : CLI_FAILED;
done:
    payloads_free(&p);
    return rc;
}
