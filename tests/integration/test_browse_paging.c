/*
 * Browse listings page exactly (mongoq/browse.h): whatever the page size, paging from token to
 * token lists every message of the listing once, in the documented order, also where pages
 * split the messages that share one run_at (an enqueue_many) or one lease_expires_at (a
 * claim_many). The expected listing is read straight from the collection and sorted here.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "world.h"

#define MAX_ROWS 512
#define CONSUMER "pager"

TestSuite(browse_paging, .timeout = 120);

typedef struct {
    char status[16];
    int64_t run_at, lease; /* lease: 0 when none */
    bson_oid_t id;
    bool claimed; /* claimed_by == CONSUMER */
} row_t;

typedef struct {
    row_t rows[MAX_ROWS];
    size_t n;
} table_t;

static mongoq_browse_order_t sort_order; /* for by_listing (qsort has no context argument) */
static bool sort_every_status;

static int64_t
row_value(const row_t *r)
{
    return sort_order == MONGOQ_BROWSE_ORDER_LEASE ? r->lease : r->run_at;
}

static int
by_listing(const void *pa, const void *pb)
{
    const row_t *a = pa, *b = pb;
    int c = sort_every_status ? strcmp(a->status, b->status) : 0;
    if (c == 0 && row_value(a) != row_value(b)) {
        c = row_value(a) < row_value(b) ? -1 : 1;
    }
    return c != 0 ? c : bson_oid_compare(&a->id, &b->id);
}

/* Every message of the queue, straight from the collection. */
static void
read_table(world_t *w, table_t *t)
{
    bson_t filter = BSON_INITIALIZER;
    const bson_t *doc;
    bson_iter_t it;
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(w->coll, &filter, NULL, NULL);
    t->n = 0;
    while (mongoc_cursor_next(cursor, &doc)) {
        cr_assert_lt(t->n, MAX_ROWS);
        row_t *r = &t->rows[t->n++];
        memset(r, 0, sizeof *r);
        bson_strncpy(r->status, mtest_doc_str(doc, "status"), sizeof r->status);
        r->run_at = mtest_doc_date(doc, "run_at");
        r->lease = bson_iter_init_find(&it, doc, "lease_expires_at") ? bson_iter_date_time(&it) : 0;
        cr_assert(bson_iter_init_find(&it, doc, "_id"));
        bson_oid_copy(bson_iter_oid(&it), &r->id);
        const char *by = mtest_doc_str(doc, "claimed_by");
        r->claimed = by && strcmp(by, CONSUMER) == 0;
    }
    cr_assert_not(mongoc_cursor_error(cursor, NULL));
    mongoc_cursor_destroy(cursor);
    bson_destroy(&filter);
}

/* The listing o should give: the table's messages it selects, in its order. */
static size_t
expected(const table_t *t, const mongoq_browse_opts_t *o, int64_t now, row_t *out)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        const row_t *r = &t->rows[i];
        bool due = r->run_at <= now;
        if ((o->status && strcmp(r->status, o->status) != 0) ||
            (o->due == MONGOQ_BROWSE_DUE_ONLY && !due) ||
            (o->due == MONGOQ_BROWSE_NOT_DUE && due) || (o->claimed_by && !r->claimed)) {
            continue;
        }
        out[n++] = *r;
    }
    sort_order = o->order;
    sort_every_status = o->status == NULL;
    qsort(out, n, sizeof *out, by_listing);
    return n;
}

/* What check_next checks a listing against, and the page boundaries it counts. */
typedef struct {
    const mongoq_browse_opts_t *o;
    int page;
    const row_t *want;
    size_t n, seen;
    int splits;
} paging_t;

static void
check_next(const mongoq_message_t *msg, bool opens_page, void *ctx)
{
    paging_t *p = ctx;
    const row_t *want = p->want;
    size_t seen = p->seen;
    cr_assert_lt(seen, p->n, "page %d: more messages than the %zu expected", p->page, p->n);
    cr_assert(bson_oid_equal(mongoq_message_id(msg), &want[seen].id),
              "page size %d, order %d, status %s: position %zu holds another message", p->page,
              (int)p->o->order, p->o->status ? p->o->status : "all", seen);
    if (opens_page && seen > 0 && strcmp(want[seen - 1].status, want[seen].status) == 0 &&
        row_value(&want[seen - 1]) == row_value(&want[seen])) {
        p->splits++;
    }
    p->seen++;
}

/*
 * Pages through listing o, `page` at a time, each page by a new browse from the last page's
 * token, and checks it against the table: every message once, in order. Returns how many page
 * boundaries fell between two messages of one sort value (status and run_at / lease).
 */
static int
page_through(world_t *w, const table_t *t, mongoq_browse_opts_t o, int page, int64_t now)
{
    static row_t want[MAX_ROWS];
    paging_t p = {&o, page, want, expected(t, &o, now, want), 0, 0};
    world_browse_pages(w, o, page, MAX_ROWS + 1, check_next, &p);
    cr_assert_eq(p.seen, p.n, "page size %d, order %d, status %s: %zu of %zu messages listed", page,
                 (int)o.order, o.status ? o.status : "all", p.seen, p.n);
    return p.splits;
}

/* Ready messages in enqueue_many groups (ties on run_at), some delayed; three claim_manys
 * (ties on lease_expires_at); a few dead. */
static void
fill(world_t *w)
{
    static const size_t sizes[] = {1, 5, 1, 13, 2, 1, 30, 3, 1, 9, 17, 1};
    bson_error_t error;
    int64_t seq = 0;
    for (size_t g = 0; g < 24; g++) {
        bson_t payloads[30];
        const bson_t *ptrs[30];
        size_t n = sizes[g % (sizeof sizes / sizeof *sizes)];
        for (size_t i = 0; i < n; i++) {
            world_payload(&payloads[i], seq++);
            ptrs[i] = &payloads[i];
        }
        mongoq_enqueue_opts_t o = MONGOQ_ENQUEUE_OPTS_INIT;
        o.delay_ms = g % 3 == 2 ? 600000 + (int64_t)(g % 2) * 1000 : 0;
        cr_assert(mongoq_enqueue_many(w->queue, ptrs, n, &o, NULL, NULL, &error), "%s",
                  error.message);
        for (size_t i = 0; i < n; i++) {
            bson_destroy(&payloads[i]);
        }
    }
    mongoq_consumer_t *c = world_consumer(w, CONSUMER, 600000);
    static const size_t claims[] = {12, 1, 9, 1, 1, 1};
    for (size_t k = 0; k < sizeof claims / sizeof *claims; k++) {
        mongoq_message_t *msgs[16];
        size_t got = 0;
        cr_assert(mongoq_consumer_claim_many(c, claims[k], 0, msgs, &got, &error), "%s",
                  error.message);
        cr_assert_gt(got, 0);
        for (size_t i = 0; i < got; i++) {
            if (k >= 3) { /* the last three die */
                cr_assert(mongoq_message_fail(msgs[i], "boom", &error), "%s", error.message);
            }
            mongoq_message_destroy(msgs[i]);
        }
    }
    mongoq_consumer_destroy(c);
}

Test(browse_paging, every_page_size_lists_each_message_once_in_order)
{
    world_t w;
    static table_t t;
    world_open(&w, NULL, 0);
    fill(&w);
    read_table(&w, &t);
    /* The due ones are due on the library's clock estimate too (a round trip behind at most). */
    int64_t last_due = 0, soon = world_server_now(&w) + 60000;
    for (size_t i = 0; i < t.n; i++) {
        int64_t r = t.rows[i].run_at;
        last_due = r < soon && r > last_due ? r : last_due;
    }
    cr_assert(world_wait_server_past(&w, last_due + 200, 10000));
    int64_t now = world_server_now(&w);

    mongoq_browse_opts_t ready = MONGOQ_BROWSE_OPTS_INIT;
    ready.status = "ready";
    ready.order = MONGOQ_BROWSE_ORDER_RUN_AT;
    int splits = 0;
    static const int pages[] = {1, 2, 4, 7, 50, MONGOQ_MAX_BATCH};
    for (size_t p = 0; p < sizeof pages / sizeof *pages; p++) {
        splits += page_through(&w, &t, ready, pages[p], now);
    }
    cr_assert_gt(splits, 10, "pages split groups of one run_at (%d times)", splits);
    ready.due = MONGOQ_BROWSE_DUE_ONLY;
    page_through(&w, &t, ready, 4, now);
    ready.due = MONGOQ_BROWSE_NOT_DUE;
    page_through(&w, &t, ready, 4, now);

    mongoq_browse_opts_t all = MONGOQ_BROWSE_OPTS_INIT;
    all.order = MONGOQ_BROWSE_ORDER_RUN_AT;
    page_through(&w, &t, all, 3, now);
    page_through(&w, &t, all, 11, now);
    all.claimed_by = CONSUMER;
    page_through(&w, &t, all, 2, now);
    all.claimed_by = NULL;
    all.due = MONGOQ_BROWSE_NOT_DUE;
    page_through(&w, &t, all, 5, now);

    mongoq_browse_opts_t lease = MONGOQ_BROWSE_OPTS_INIT;
    lease.status = "processing";
    lease.order = MONGOQ_BROWSE_ORDER_LEASE;
    splits = page_through(&w, &t, lease, 5, now) + page_through(&w, &t, lease, 2, now);
    cr_assert_gt(splits, 2, "pages split a claim_many's lease (%d times)", splits);
    page_through(&w, &t, lease, 100, now);
    world_close(&w);
}
