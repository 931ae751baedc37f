/*
 * libfaketime (Debian's faketime package, which the skew tests and the chaos run preload) keeps
 * its state in /dev/shm/faketime_shm_PID and /dev/shm/sem.faketime_sem_PID, named after the
 * process that loaded it, and removes them only when that process exits cleanly. Every skewed
 * process the tests kill with SIGKILL leaves two behind (846 had piled up on one machine here),
 * and libfaketime's README ("Cleaning up shared memory") warns that a later process given the
 * same pid may fail as it starts ("shm_open failed: File exists"; Debian 12's 0.9.10 started
 * fine over stale files when tried). Call mtest_clear_faketime_shm with the pid of a child
 * just reaped (its files are stale: no process has that pid now), and in a forked child before
 * exec with its own pid (files left under it by an earlier process). Header-only (the chaos
 * program does not link the tests' library); async-signal-safe (unlink only).
 */
#ifndef MONGOQ_TEST_FAKETIME_SHM_H
#define MONGOQ_TEST_FAKETIME_SHM_H

#include <sys/types.h>
#include <unistd.h>

/* Writes "<prefix><pid>" into buf (room for the prefix and 20 digits); no stdio. */
static inline void
mtest__faketime_path(char *buf, const char *prefix, pid_t pid)
{
    char digits[24];
    int n = 0;
    unsigned long v = (unsigned long)pid;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0 && n < (int)sizeof digits);
    while (*prefix) {
        *buf++ = *prefix++;
    }
    while (n > 0) {
        *buf++ = digits[--n];
    }
    *buf = '\0';
}

/* Removes the libfaketime files named after pid, if any (see above for when they are stale). */
static inline void
mtest_clear_faketime_shm(pid_t pid)
{
    char path[80];
    mtest__faketime_path(path, "/dev/shm/faketime_shm_", pid);
    unlink(path);
    mtest__faketime_path(path, "/dev/shm/sem.faketime_sem_", pid);
    unlink(path);
}

#endif
