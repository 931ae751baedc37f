/*
 * The fault proxy's API without traffic: URI rewriting, what start and add_rule refuse, and the
 * text control protocol line by line (the same function serves mongoq-fault-proxy's control
 * port). No server needed: the upstream is never connected to.
 */
#include "faultproxy.h"

#include <criterion/criterion.h>
#include <string.h>

static mongoq_faultproxy_t *proxy;

static void
setup(void)
{
    bson_error_t error;
    proxy = mongoq_faultproxy_start("127.0.0.1:1", NULL, &error);
    cr_assert(proxy, "%s", error.message);
}

static void
teardown(void)
{
    mongoq_faultproxy_stop(proxy);
}

TestSuite(faultproxy_api, .init = setup, .fini = teardown, .timeout = 30);

static void
assert_uri(const char *server_uri, const char *expected)
{
    bson_error_t error;
    char *uri = mongoq_faultproxy_uri(server_uri, 4242, &error);
    cr_assert(uri, "%s: %s", server_uri, error.message);
    cr_assert_str_eq(uri, expected);
    bson_free(uri);
}

Test(faultproxy_api, uri_points_at_the_proxy_and_keeps_the_rest)
{
    assert_uri("mongodb://127.0.0.1:27017/?replicaSet=rs0",
               "mongodb://127.0.0.1:4242/?replicaSet=rs0&directConnection=true");
    assert_uri("mongodb://localhost", "mongodb://127.0.0.1:4242/?directConnection=true");
    assert_uri("mongodb://u%40x:p@127.0.0.1:1/app?directConnection=false&compressors=zlib&"
               "w=majority;retryWrites=true",
               "mongodb://u%40x:p@127.0.0.1:4242/app?w=majority&retryWrites=true&"
               "directConnection=true");
    assert_uri("mongodb://127.0.0.1:1/?tls=false", "mongodb://127.0.0.1:4242/?tls=false&"
                                                   "directConnection=true");
}

Test(faultproxy_api, uri_refuses_what_the_proxy_cannot_carry)
{
    const char *refused[] = {"mongodb+srv://cluster.example.com",
                             "mongodb://a:1,b:2/",
                             "mongodb://127.0.0.1:1/?tls=true",
                             "mongodb://127.0.0.1/?ssl=TRUE",
                             "mongodb://127.0.0.1/?loadBalanced=true",
                             "http://127.0.0.1",
                             "mongodb:///?x=1"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        bson_error_t error;
        char *uri = mongoq_faultproxy_uri(refused[i], 1, &error);
        cr_assert_null(uri, "%s was accepted", refused[i]);
        cr_assert_eq(error.domain, MONGOQ_FAULTPROXY_ERROR_DOMAIN);
        cr_assert_eq(error.code, MONGOQ_FAULTPROXY_ERROR_INVALID_ARG);
    }
}

Test(faultproxy_api, upstream_of_a_uri)
{
    char *a = mongoq_faultproxy_upstream_of("mongodb://127.0.0.1:45045/?replicaSet=rs0", NULL);
    char *b = mongoq_faultproxy_upstream_of("mongodb://user:pw@localhost/db", NULL);
    cr_assert_str_eq(a, "127.0.0.1:45045");
    cr_assert_str_eq(b, "localhost:27017");
    cr_assert_null(mongoq_faultproxy_upstream_of("mongodb://[::1]:27017", NULL));
    bson_free(a);
    bson_free(b);
}

Test(faultproxy_api, start_refuses_anything_but_loopback)
{
    const char *refused[] = {
        "10.0.0.1:27017", "example.com:27017",        "127.0.0.1:0", "127.0.0.1", "127.0.0.1:70000",
        "127.0.0.1:x",    "mongodb://10.1.1.1:27017/"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        bson_error_t error;
        mongoq_faultproxy_t *p = mongoq_faultproxy_start(refused[i], NULL, &error);
        cr_assert_null(p, "%s was accepted", refused[i]);
        cr_assert_eq(error.domain, MONGOQ_FAULTPROXY_ERROR_DOMAIN);
    }
    mongoq_faultproxy_opts_t opts = {.version = 99};
    cr_assert_null(mongoq_faultproxy_start("127.0.0.1:1", &opts, NULL));
    mongoq_faultproxy_stop(NULL);
}

Test(faultproxy_api, add_rule_refuses_bad_rules)
{
    struct {
        mongoq_fault_kind_t kind;
        const char *commands;
        int32_t times;
        int64_t hang_ms;
    } bad[] = {{MONGOQ_FAULT_DROP_REPLY, NULL, 1, 0},
               {MONGOQ_FAULT_DROP_REPLY, "", 1, 0},
               {MONGOQ_FAULT_DROP_REPLY, "insert,,update", 1, 0},
               {MONGOQ_FAULT_DROP_REPLY, "in sert", 1, 0},
               {MONGOQ_FAULT_DROP_REPLY, "insert", -1, 0},
               {MONGOQ_FAULT_DROP_REPLY, "insert", 1, 100},
               {(mongoq_fault_kind_t)42, "insert", 1, 0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mongoq_fault_rule_t rule = MONGOQ_FAULT_RULE_INIT;
        bson_error_t error;
        rule.kind = bad[i].kind;
        rule.commands = bad[i].commands;
        rule.times = bad[i].times;
        rule.hang_ms = bad[i].hang_ms;
        cr_assert_eq(mongoq_faultproxy_add_rule(proxy, &rule, &error), 0, "bad rule %zu", i);
        cr_assert_eq(error.code, MONGOQ_FAULTPROXY_ERROR_INVALID_ARG);
    }
    mongoq_fault_rule_t unversioned = {.kind = MONGOQ_FAULT_HANG, .commands = "find"};
    cr_assert_eq(mongoq_faultproxy_add_rule(proxy, &unversioned, NULL), 0);
    cr_assert_eq(mongoq_faultproxy_rule_hits(proxy, 1), -1, "no rule was added");
}

Test(faultproxy_api, stats_check_their_version)
{
    mongoq_faultproxy_stats_t stats = {.version = 0};
    cr_assert_not(mongoq_faultproxy_stats(proxy, &stats, NULL));
    stats.version = MONGOQ_FAULTPROXY_STATS_VERSION;
    cr_assert(mongoq_faultproxy_stats(proxy, &stats, NULL));
    cr_assert_eq(stats.connections_open, 0);
}

/* Runs a control line; asserts the reply starts with expected_prefix. */
static void
control(const char *line, const char *expected_prefix)
{
    char *reply = NULL;
    bool ok = mongoq_faultproxy_control(proxy, line, &reply);
    cr_assert(reply);
    cr_assert(strncmp(reply, expected_prefix, strlen(expected_prefix)) == 0,
              "'%s' answered '%s', expected '%s...'", line, reply, expected_prefix);
    cr_assert_eq(ok, strncmp(reply, "ok", 2) == 0);
    cr_assert_null(strchr(reply, '\n'), "one line");
    bson_free(reply);
}

Test(faultproxy_api, control_protocol_lines)
{
    control("drop-reply insert,update 1", "ok rule=1");
    control("hang getMore 1 2000", "ok rule=2");
    control("drop-request * 3 app=worker-1\r\n", "ok rule=3");
    control("hang find", "ok rule=4");
    control("hits 2", "ok hits=0");
    control("count insert", "ok count=0");
    control("partition on", "ok");
    control("partition refuse", "ok");
    control("partition off", "ok");
    control("reset", "ok");
    control("clear", "ok");
    control("heal", "ok");
    control("help", "ok drop-reply drop-request hang partition");
    control("stats", "ok accepted=0 refused=0 open=0 closed=0 forwarded=0 legacy=0 replies=0 "
                     "exhaust=0 replies_dropped=0 requests_dropped=0 held=0 hits=0");
}

Test(faultproxy_api, control_protocol_errors)
{
    char long_line[2000];
    memset(long_line, 'x', sizeof long_line - 1);
    long_line[sizeof long_line - 1] = '\0';
    control("", "error empty");
    control("   ", "error empty");
    control("fly away", "error unknown command 'fly'");
    control("drop-reply", "error usage");
    control("drop-reply insert 0", "error expected TIMES");
    control("drop-reply insert 1 2000", "error expected TIMES");
    control("hang find 1 -5", "error expected TIMES");
    control("hang find 1 10 20", "error expected TIMES");
    control("drop-reply insert,,x 1", "error invalid fault rule");
    control("partition sideways", "error usage: partition");
    control("hits 99", "error usage: hits");
    control("hits x", "error usage: hits");
    control("count", "error usage: count");
    control("a b c d e f g h i", "error too many words");
    control(long_line, "error line too long");
}
