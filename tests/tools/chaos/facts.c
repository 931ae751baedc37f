/*
 * Loading the facts: the producers' records (P/R), the collection (ack mode KEEP, so done
 * messages are there), the workers' records (B/E/O and the trouble records); see README.md for
 * the record formats.
 */
#include "facts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
grow(void **array, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) {
        return;
    }
    *cap = *cap ? *cap * 2 : 1024;
    *array = bson_realloc(*array, *cap * size);
}

/* ---- the message table ------------------------------------------------------------------------ */

static void
table_init(facts_t *f, size_t cap)
{
    f->cap = cap;
    f->n_msgs = 0;
    f->msgs = bson_malloc0(sizeof *f->msgs * cap);
    for (size_t i = 0; i < cap; i++) {
        f->msgs[i].seq = -1;
    }
}

/* The slot holding seq, or the empty slot where it would go (the table is never full). */
static message_t *
slot_of(facts_t *f, int64_t seq)
{
    uint64_t h = (uint64_t)seq * 0x9e3779b97f4a7c15ULL;
    size_t i = (size_t)(h ^ (h >> 29)) & (f->cap - 1);
    for (size_t k = 0; k < f->cap && f->msgs[i].seq != seq && f->msgs[i].seq != -1; k++) {
        i = (i + 1) & (f->cap - 1);
    }
    return &f->msgs[i];
}

static message_t *
msg_add(facts_t *f, int64_t seq)
{
    if ((f->n_msgs + 1) * 2 > f->cap) {
        message_t *old = f->msgs;
        size_t old_cap = f->cap;
        table_init(f, old_cap * 2);
        for (size_t i = 0; i < old_cap; i++) {
            if (old[i].seq >= 0) {
                *slot_of(f, old[i].seq) = old[i];
                f->n_msgs++;
            }
        }
        bson_free(old);
    }
    message_t *m = slot_of(f, seq);
    if (m->seq != seq) {
        m->seq = seq;
        f->n_msgs++;
    }
    return m;
}

/* ---- loading: producers' records, the collection, workers' records ---------------------------- */

static FILE *
open_log(const driver_t *d, int child)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s.log", d->workdir, d->children[child].name);
    return fopen(path, "r");
}

/* o (stored) beats u (unknown) beats n (not stored): a later try can only learn more. */
static void
set_produced(message_t *m, char state)
{
    if (m->produced == 0 || state == 'o' || (state == 'u' && m->produced == 'n')) {
        m->produced = state;
    }
}

/* What one R record says about message i of its call (n messages, k stored). */
static char
state_after_error(char mode, uint32_t domain, uint32_t code, int i, int n, long long k)
{
    if (domain == MONGOQ_ERROR_DOMAIN && code == MONGOQ_ERROR_UNKNOWN_OUTCOME) {
        return 'u';
    }
    if (mode == 'p') {
        return i < k ? 'o' : 'n'; /* ordered: the first k are stored, the rest are not */
    }
    return k == n ? 'o' : k == 0 ? 'n' : 'u'; /* unordered: which ones is not said */
}

static void
load_producer(facts_t *f, int proc)
{
    FILE *fp = open_log(f->d, proc);
    char line[1200], res[8], mode = 'p';
    char before[64] = {0}; /* the states before the call under way: R replaces its P's 'u' */
    long long first, mono, k;
    unsigned domain, code;
    int n, t;
    while (fp && fgets(line, sizeof line, fp)) {
        if (sscanf(line, "P %lld %d %lld %c %d", &first, &n, &mono, &mode, &t) == 5) {
            f->enqueue_calls++;
            for (int i = 0; i < n && i < 64; i++) {
                message_t *m = msg_add(f, first + i);
                before[i] = m->produced;
                set_produced(m, 'u');
                m->produced_real = m->produced_real ? m->produced_real
                                                    : driver_real_of_mono(f->d, mono);
            }
        } else if (sscanf(line, "R %lld %d %7s %lld %u.%u %lld", &first, &n, res, &mono, &domain,
                          &code, &k) == 7) {
            bool ok = strcmp(res, "ok") == 0;
            f->enqueue_errors += !ok;
            f->enqueue_unknown += domain == MONGOQ_ERROR_DOMAIN &&
                                  code == MONGOQ_ERROR_UNKNOWN_OUTCOME;
            for (int i = 0; i < n && i < 64; i++) {
                message_t *m = msg_add(f, first + i);
                m->produced = before[i];
                set_produced(m, ok ? 'o' : state_after_error(mode, domain, code, i, n, k));
            }
        } else {
            f->unparsed_lines++;
        }
    }
    if (fp) {
        fclose(fp);
    }
}

static void
load_doc(facts_t *f, const bson_t *doc)
{
    bson_iter_t it;
    bson_t payload;
    uint32_t len;
    const uint8_t *data;
    int64_t seq;
    bool sum_ok;
    if (!bson_iter_init_find(&it, doc, "payload") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        f->unparsed_docs++;
        return;
    }
    bson_iter_document(&it, &len, &data);
    if (!bson_init_static(&payload, data, len) || !chaos_payload_check(&payload, &seq, &sum_ok)) {
        f->unparsed_docs++;
        return;
    }
    message_t *m = msg_add(f, seq);
    m->sum_ok = m->stored ? m->sum_ok && sum_ok : sum_ok;
    m->stored++;
    if (bson_iter_init_find(&it, doc, "status") && BSON_ITER_HOLDS_UTF8(&it) &&
        (m->stored == 1 || m->status == 'd')) {
        m->status = bson_iter_utf8(&it, NULL)[0]; /* of several copies, one not done shows */
    }
    if (bson_iter_init_find(&it, doc, "attempts") && BSON_ITER_HOLDS_NUMBER(&it)) {
        m->attempts = (int)bson_iter_as_int64(&it);
    }
}

static bool
load_docs(facts_t *f, bson_error_t *error)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(f->d->client, CHAOS_DB, CHAOS_COLL);
    bson_t filter = BSON_INITIALIZER;
    bson_t *opts = BCON_NEW("projection", "{", "payload", BCON_INT32(1), "status", BCON_INT32(1),
                            "attempts", BCON_INT32(1), "}");
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, opts, NULL);
    const bson_t *doc;
    for (int64_t i = 0; i < 100000000 && mongoc_cursor_next(cursor, &doc); i++) {
        load_doc(f, doc);
    }
    bool ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    bson_destroy(opts);
    bson_destroy(&filter);
    mongoc_collection_destroy(coll);
    return ok;
}

/* The claim (seq, attempt, token) among those loaded from index `from` on; added if new. */
static delivery_t *
claim_of(facts_t *f, size_t from, int proc, int64_t seq, int attempt, const char *token)
{
    for (size_t i = f->n_deliveries; i > from; i--) {
        delivery_t *dl = &f->deliveries[i - 1];
        if (dl->seq == seq && dl->attempt == attempt && strcmp(dl->token, token) == 0) {
            return dl;
        }
    }
    grow((void **)&f->deliveries, &f->cap_deliveries, f->n_deliveries, sizeof(delivery_t));
    delivery_t *dl = &f->deliveries[f->n_deliveries++];
    memset(dl, 0, sizeof *dl);
    dl->proc = proc;
    dl->seq = seq;
    dl->attempt = attempt;
    snprintf(dl->token, sizeof dl->token, "%s", token);
    dl->sum_ok = true;
    return dl;
}

static void
set_lease(facts_t *f, delivery_t *dl, long long lease_exp, long long lease_ms)
{
    if (dl->lease_exp == 0) { /* the first seen is the closest to the claim */
        dl->lease_exp = lease_exp;
        dl->lease_ms = lease_ms;
        dl->claim_real = lease_exp - lease_ms;
    }
    f->min_lease_ms = lease_ms < f->min_lease_ms ? lease_ms : f->min_lease_ms;
}

/* A worker's K records (its claims), while its log is read. */
typedef struct {
    char oid[25];
    int attempt;
    int64_t real;
} claim_record_t;

typedef struct {
    claim_record_t *v;
    size_t n, cap;
} claims_t;

/* K oid attempt mono */
static bool
load_claim(facts_t *f, claims_t *k, const char *line)
{
    claim_record_t r;
    long long mono;
    if (sscanf(line, "K %24s %d %lld", r.oid, &r.attempt, &mono) != 3) {
        return false;
    }
    r.real = driver_real_of_mono(f->d, mono);
    grow((void **)&k->v, &k->cap, k->n, sizeof r);
    k->v[k->n++] = r;
    return true;
}

/* When (oid, attempt) was last claimed by this worker before its B record; 0 if unknown. Looks
 * back a bounded way: the B of a claim comes within the batch's records after its K. */
static int64_t
claim_time(const claims_t *k, const char *oid, int attempt)
{
    for (size_t i = k->n, looked = 0; i > 0 && looked < 100000; i--, looked++) {
        const claim_record_t *r = &k->v[i - 1];
        if (r->attempt == attempt && strcmp(r->oid, oid) == 0) {
            return r->real;
        }
    }
    return 0;
}

/* B seq attempt oid token claimed_by lease_exp lease_ms mono sum_ok lease_lost */
static bool
load_begin(facts_t *f, size_t from, int proc, const claims_t *k, const char *line)
{
    long long seq, lease_exp, lease_ms, mono;
    int attempt, sum_ok, lost;
    char oid[32], token[32], by[48];
    if (sscanf(line, "B %lld %d %31s %31s %47s %lld %lld %lld %d %d", &seq, &attempt, oid, token,
               by, &lease_exp, &lease_ms, &mono, &sum_ok, &lost) != 10) {
        return false;
    }
    delivery_t *dl = claim_of(f, from, proc, seq, attempt, token);
    dl->handled = true;
    dl->begin_real = driver_real_of_mono(f->d, mono);
    dl->sum_ok = sum_ok != 0;
    snprintf(dl->claimed_by, sizeof dl->claimed_by, "%s", by);
    set_lease(f, dl, lease_exp, lease_ms);
    int64_t claimed = claim_time(k, oid, attempt);
    if (claimed != 0) {
        dl->claim_real = claimed; /* the claim's own time, not lease_expires_at - lease_ms */
    }
    return true;
}

/* E seq attempt A|R mono: the answer of the handler on the latest claim (seq, attempt). */
static bool
load_end(facts_t *f, size_t from, const char *line)
{
    long long seq, mono;
    int attempt;
    char result;
    if (sscanf(line, "E %lld %d %c %lld", &seq, &attempt, &result, &mono) != 4) {
        return false;
    }
    for (size_t i = f->n_deliveries; i > from; i--) {
        delivery_t *dl = &f->deliveries[i - 1];
        if (dl->seq == seq && dl->attempt == attempt && dl->handled && !dl->result) {
            dl->result = result;
            dl->end_real = driver_real_of_mono(f->d, mono);
            return true;
        }
    }
    return false;
}

/* O seq attempt token handled action ok lease_exp lease_ms mono domain.code text */
static bool
load_outcome(facts_t *f, size_t from, int proc, const char *line)
{
    long long seq, lease_exp, lease_ms, mono;
    int attempt, handled, ok;
    unsigned domain, code;
    char token[32], action[32];
    if (sscanf(line, "O %lld %d %31s %d %31s %d %lld %lld %lld %u.%u", &seq, &attempt, token,
               &handled, action, &ok, &lease_exp, &lease_ms, &mono, &domain, &code) != 11) {
        return false;
    }
    delivery_t *dl = claim_of(f, from, proc, seq, attempt, token);
    dl->handled = dl->handled || handled;
    dl->action = strcmp(action, "LEASE_LOST") == 0 ? 'L'
                 : strcmp(action, "SKIPPED_LOST") == 0 ? 'S'
                 : strcmp(action, "HANDED_BACK") == 0 ? 'H'
                                                      : action[0];
    dl->ok = ok != 0;
    dl->outcome_real = driver_real_of_mono(f->d, mono);
    dl->error_domain = domain;
    dl->error_code = code;
    set_lease(f, dl, lease_exp, lease_ms);
    return true;
}

static void
load_worker(facts_t *f, int proc)
{
    FILE *fp = open_log(f->d, proc);
    char line[1200];
    size_t from = f->n_deliveries;
    claims_t claims = {0};
    long long mono;
    while (fp && fgets(line, sizeof line, fp)) {
        proc_record_t r = {.proc = proc};
        bool parsed = true;
        if (strncmp(line, "K ", 2) == 0) {
            parsed = load_claim(f, &claims, line);
        } else if (strncmp(line, "B ", 2) == 0) {
            parsed = load_begin(f, from, proc, &claims, line);
        } else if (strncmp(line, "E ", 2) == 0) {
            parsed = load_end(f, from, line);
        } else if (strncmp(line, "O ", 2) == 0) {
            parsed = load_outcome(f, from, proc, line);
        } else if (sscanf(line, "%3s %lld", r.kind, &mono) == 2 && strcmp(r.kind, "X") != 0 &&
                   strcmp(r.kind, "Y") != 0 && strcmp(r.kind, "OF") != 0 &&
                   strcmp(r.kind, "C") != 0 && strcmp(r.kind, "D") != 0) {
            r.real = driver_real_of_mono(f->d, mono);
            grow((void **)&f->records, &f->cap_records, f->n_records, sizeof r);
            f->records[f->n_records++] = r;
        }
        f->unparsed_lines += !parsed;
    }
    if (fp) {
        fclose(fp);
    }
    bson_free(claims.v);
}

static int
by_seq_attempt(const void *a, const void *b)
{
    const delivery_t *x = a, *y = b;
    if (x->seq != y->seq) {
        return x->seq < y->seq ? -1 : 1;
    }
    if (x->attempt != y->attempt) {
        return x->attempt < y->attempt ? -1 : 1;
    }
    return x->claim_real < y->claim_real ? -1 : x->claim_real > y->claim_real;
}

/* Sorts the deliveries and gives each message its range. */
static void
index_deliveries(facts_t *f)
{
    qsort(f->deliveries, f->n_deliveries, sizeof *f->deliveries, by_seq_attempt);
    for (size_t i = 0; i < f->n_deliveries;) {
        size_t j = i;
        while (j < f->n_deliveries && f->deliveries[j].seq == f->deliveries[i].seq) {
            j++;
        }
        message_t *m = msg_add(f, f->deliveries[i].seq);
        m->first = i;
        m->n = j - i;
        i = j;
    }
}

bool
facts_load(facts_t *f, driver_t *d)
{
    bson_error_t error;
    memset(f, 0, sizeof *f);
    f->d = d;
    f->min_lease_ms = INT64_MAX;
    table_init(f, 4096);
    for (int i = 0; i < d->n_children; i++) {
        if (d->children[i].kind == CHILD_PRODUCER) {
            load_producer(f, i);
        } else if (d->children[i].kind == CHILD_WORKER) {
            load_worker(f, i);
        }
    }
    if (!load_docs(f, &error)) {
        printf("chaos: cannot read the queue: %s\n", error.message);
        return false;
    }
    index_deliveries(f);
    return true;
}

void
facts_free(facts_t *f)
{
    bson_free(f->msgs);
    bson_free(f->deliveries);
    bson_free(f->records);
}

