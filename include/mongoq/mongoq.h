/*
 * mongoq/mongoq.h - the umbrella header: include this one.
 *
 * mongoq turns a MongoDB collection into a durable message queue. The caller owns libmongoc's
 * global state: call mongoc_init() before using mongoq and mongoc_cleanup() after.
 */
#ifndef MONGOQ_H
#define MONGOQ_H

#include "export.h"
#include "version.h"
#include "error.h"
#include "limits.h"
#include "hooks.h"
#include "queue.h"
#include "message.h"
#include "producer.h"
#include "consumer.h"
#include "worker.h"
#include "browse.h"
#include "admin.h"
#include "shard.h"
#include "check.h"
#include "metrics.h"
#include "schedule.h"
#include "group.h"

#endif /* MONGOQ_H */
