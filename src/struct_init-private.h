/*
 * How many bytes a caller's versioned option struct holds: the one list of each struct's
 * version ends, read by the _init functions (struct_init.c) and by the code that copies a
 * caller's options (queue.c, producer.c), so an older caller's shorter struct is never read or
 * written past its end.
 */
#ifndef MONGOQ_STRUCT_INIT_PRIVATE_H
#define MONGOQ_STRUCT_INIT_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of a mongoq_queue_opts_t of `version`; 0 for a version this library does not know. */
size_t mongoq__queue_opts_size(uint32_t version);

/* Bytes of a mongoq_enqueue_opts_t of `version`; 0 for a version this library does not know. */
size_t mongoq__enqueue_opts_size(uint32_t version);

#endif
