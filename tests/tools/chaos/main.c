/*
 * mongoq-chaos: a chaos run against mongoq (README.md in this folder).
 *
 *   mongoq-chaos [--seconds N] [--seed S] [options]     the driver
 *   mongoq-chaos --role worker|producer --key value ...  its children (started by the driver)
 */
#include "chaos.h"

#include <stdio.h>
#include <string.h>

int
main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--role") == 0) {
        if (strcmp(argv[2], "worker") == 0) {
            return chaos_worker_main(argc, argv);
        }
        if (strcmp(argv[2], "producer") == 0) {
            return chaos_producer_main(argc, argv);
        }
        fprintf(stderr, "mongoq-chaos: unknown role %s\n", argv[2]);
        return 2;
    }
    return chaos_driver_main(argc, argv);
}
