/*
 * Conformance of the test server's wire layer: malformed, truncated or hostile messages close
 * only their own connection; other clients keep working. Uses a private test server (skipped
 * when MONGOQ_TEST_NO_SPAWN is set, e.g. against a real replica set).
 */
#include "cf_util.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static mtest_server_t server;
static mongoc_client_t *good;

static void
setup(void)
{
    if (!mtest_can_spawn()) {
        cr_skip_test("needs a private test server");
    }
    cr_assert(mtest_server_start(&server, NULL, 0));
    good = mongoc_client_new(server.uri);
    mongoc_client_set_error_api(good, MONGOC_ERROR_API_VERSION_2);
}

static void
teardown(void)
{
    if (good) {
        mongoc_client_destroy(good);
        good = NULL;
    }
    mtest_server_stop(&server, false);
}

TestSuite(wire_robustness, .init = setup, .fini = teardown, .timeout = 60);

static int
raw_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)server.port);
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    cr_assert(connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    return fd;
}

/* True when the server closed fd (EOF) within timeout_ms. */
static bool
closed_by_server(int fd, int timeout_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) {
        return false;
    }
    uint8_t buf[256];
    return recv(fd, buf, sizeof buf, 0) <= 0;
}

static void
assert_good_client_works(void)
{
    bson_error_t error;
    cr_assert(mtest_command(good, "admin", "{\"ping\": 1}", NULL, &error), "%s", error.message);
}

/* An OP_MSG with body doc and flags; checksum appended when with_crc. */
static size_t
build_msg(uint8_t *buf, size_t cap, const bson_t *doc, uint32_t flags, bool with_crc,
          bool bad_crc)
{
    size_t len = 16 + 4 + 1 + doc->len + (with_crc ? 4 : 0);
    cr_assert(len <= cap);
    cf_put_i32(buf, (int32_t)len);
    cf_put_i32(buf + 4, 7);
    cf_put_i32(buf + 8, 0);
    cf_put_i32(buf + 12, 2013);
    cf_put_i32(buf + 16, (int32_t)flags);
    buf[20] = 0;
    memcpy(buf + 21, bson_get_data(doc), doc->len);
    if (with_crc) {
        /* CRC-32C over everything before the checksum. */
        uint32_t c = 0xFFFFFFFFu;
        for (size_t i = 0; i < len - 4; i++) {
            c ^= buf[i];
            for (int k = 0; k < 8; k++) {
                c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            }
        }
        c ^= 0xFFFFFFFFu;
        cf_put_i32(buf + len - 4, (int32_t)(bad_crc ? c ^ 1 : c));
    }
    return len;
}

Test(wire_robustness, garbage_closes_only_that_connection)
{
    int fd = raw_connect();
    const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert(send(fd, junk, sizeof junk - 1, 0) > 0);
    cr_assert(closed_by_server(fd, 5000));
    close(fd);
    assert_good_client_works();
}

Test(wire_robustness, absurd_length_is_refused)
{
    int fd = raw_connect();
    uint8_t header[16];
    cf_put_i32(header, 60 * 1000 * 1000);
    cf_put_i32(header + 4, 1);
    cf_put_i32(header + 8, 0);
    cf_put_i32(header + 12, 2013);
    cr_assert(send(fd, header, sizeof header, 0) == sizeof header);
    cr_assert(closed_by_server(fd, 5000));
    close(fd);
    assert_good_client_works();
}

Test(wire_robustness, truncated_message_and_unknown_opcode)
{
    int fd = raw_connect();
    uint8_t header[16];
    cf_put_i32(header, 100);
    cf_put_i32(header + 4, 1);
    cf_put_i32(header + 8, 0);
    cf_put_i32(header + 12, 2013);
    cr_assert(send(fd, header, sizeof header, 0) == sizeof header);
    close(fd); /* the rest never comes */
    fd = raw_connect();
    uint8_t msg[32] = {0};
    cf_put_i32(msg, 32);
    cf_put_i32(msg + 12, 9999);
    cr_assert(send(fd, msg, sizeof msg, 0) == sizeof msg);
    cr_assert(closed_by_server(fd, 5000));
    close(fd);
    assert_good_client_works();
}

Test(wire_robustness, invalid_bson_body_is_refused)
{
    int fd = raw_connect();
    uint8_t msg[64];
    memset(msg, 0, sizeof msg);
    cf_put_i32(msg, 40);
    cf_put_i32(msg + 12, 2013);
    msg[20] = 0;
    cf_put_i32(msg + 21, 19); /* claims 19 bytes: an element with a bad type inside */
    msg[25] = 0x7A;       /* unknown element type */
    msg[26] = 'a';
    msg[27] = 0;
    cr_assert(send(fd, msg, 40, 0) == 40);
    cr_assert(closed_by_server(fd, 5000));
    close(fd);
    assert_good_client_works();
}

Test(wire_robustness, checksum_is_verified)
{
    uint8_t buf[512];
    bson_t *ping = BCON_NEW("ping", BCON_INT32(1), "$db", BCON_UTF8("admin"));
    int fd = raw_connect();
    size_t len = build_msg(buf, sizeof buf, ping, 1, true, false);
    cr_assert(send(fd, buf, len, 0) == (ssize_t)len);
    uint8_t reply[16];
    struct pollfd p = {fd, POLLIN, 0};
    cr_assert(poll(&p, 1, 5000) == 1);
    cr_assert(recv(fd, reply, sizeof reply, MSG_WAITALL) == sizeof reply, "a good checksum gets "
              "a reply");
    close(fd);
    fd = raw_connect();
    len = build_msg(buf, sizeof buf, ping, 1, true, true);
    cr_assert(send(fd, buf, len, 0) == (ssize_t)len);
    cr_assert(closed_by_server(fd, 5000), "a bad checksum closes the connection");
    close(fd);
    bson_destroy(ping);
    assert_good_client_works();
}

static bool
one_document(void *ctx)
{
    bson_t empty = BSON_INITIALIZER;
    return mongoc_collection_count_documents(ctx, &empty, NULL, NULL, NULL, NULL) == 1;
}

Test(wire_robustness, more_to_come_gets_no_reply)
{
    uint8_t buf[512];
    bson_t *ins = BCON_NEW("insert", BCON_UTF8("c"), "$db", BCON_UTF8("wire"), "documents", "[",
                           "{", "_id", BCON_INT32(1), "}", "]", "writeConcern", "{", "w",
                           BCON_INT32(0), "}");
    int fd = raw_connect();
    size_t len = build_msg(buf, sizeof buf, ins, 2, false, false);
    cr_assert(send(fd, buf, len, 0) == (ssize_t)len);
    struct pollfd p = {fd, POLLIN, 0};
    cr_assert_eq(poll(&p, 1, 300), 0, "no reply to a moreToCome message");
    close(fd);
    bson_destroy(ins);
    mongoc_collection_t *coll = mongoc_client_get_collection(good, "wire", "c");
    cr_assert(mtest_wait_until(one_document, coll, 5000), "the unacknowledged insert is applied");
    mongoc_collection_destroy(coll);
}
