/*
 * mongoq-run-command URI DB JSON: runs one database command (for the CLI tests, which need a
 * few commands the tool does not send, such as dropIndexes). Prints the reply as JSON; exit 0
 * when the server answered ok: 1, 1 otherwise.
 */
#include <mongoc/mongoc.h>
#include <stdio.h>

int
main(int argc, char **argv)
{
    bson_error_t error;
    bson_t reply;
    int rc = 1;
    if (argc != 4) {
        fprintf(stderr, "usage: %s URI DB JSON\n", argv[0]);
        return 2;
    }
    mongoc_init();
    bson_t *cmd = bson_new_from_json((const uint8_t *)argv[3], -1, &error);
    mongoc_client_t *client = cmd ? mongoc_client_new(argv[1]) : NULL;
    if (!cmd || !client) {
        fprintf(stderr, "bad command or URI: %s\n", cmd ? argv[1] : error.message);
    } else if (mongoc_client_command_simple(client, argv[2], cmd, NULL, &reply, &error)) {
        char *json = bson_as_relaxed_extended_json(&reply, NULL);
        printf("%s\n", json);
        bson_free(json);
        rc = 0;
        bson_destroy(&reply);
    } else {
        fprintf(stderr, "%s\n", error.message);
        bson_destroy(&reply);
    }
    mongoc_client_destroy(client);
    bson_destroy(cmd);
    mongoc_cleanup();
    return rc;
}
