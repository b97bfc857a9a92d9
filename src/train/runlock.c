/* The run-directory lock (include/ftc/runlock.h): RUNDIR/train.lock, flock(2)ed by the holder, with its pid. */
#include "ftc/runlock.h"
#include "ftc/base.h"
#include "ftc/train.h" /* FTC_PATH_MAX */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct ftc_runlock {
    int fd;
    bool made_dir;
    char dir[FTC_PATH_MAX], path[FTC_PATH_MAX + 16];
};

/* The pid written in the lock file, 0 when there is none (the holder has not written it yet). */
static long read_pid(int fd) {
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return 0;
    buf[n] = 0;
    return strtol(buf, NULL, 10);
}

ftc_status ftc_runlock_acquire(const char *dir, ftc_runlock **out, long *stale_pid, ftc_err *err) {
    *out = NULL;
    if (stale_pid) *stale_pid = 0;
    ftc_runlock *l = calloc(1, sizeof *l);
    if (!l) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    l->fd = -1;
    if (snprintf(l->dir, sizeof l->dir, "%s", dir) >= (int)sizeof l->dir) {
        free(l);
        return ftc_errf(err, FTC_E_INPUT, "%s: path too long", dir);
    }
    snprintf(l->path, sizeof l->path, "%s/train.lock", dir);
    l->made_dir = !ftc_is_dir(dir);
    ftc_status s = ftc_mkdirs(dir, err);
    if (s) { free(l); return s; }
    for (;;) {
        int fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            s = ftc_errf(err, FTC_E_IO, "%s: cannot create: %s", l->path, strerror(errno));
            break;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            long pid = read_pid(fd);
            close(fd);
            if (e != EWOULDBLOCK) {
                s = ftc_errf(err, FTC_E_IO, "%s: cannot lock: %s", l->path, strerror(e));
                break;
            }
            char who[48] = "a process that has not written its pid yet";
            if (pid > 0) snprintf(who, sizeof who, "pid %ld", pid);
            s = ftc_errf(err, FTC_E_IO, "%s is in use by another run (%s, lock %s): wait for it to end, or stop it",
                         dir, who, l->path);
            break;
        }
        /* the holder before us may have removed the file after we opened it: then ours is not the lock */
        struct stat a, b;
        if (fstat(fd, &a) != 0 || stat(l->path, &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
            close(fd);
            continue;
        }
        long pid = read_pid(fd);
        if (stale_pid && pid > 0 && pid != (long)getpid()) *stale_pid = pid;
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
        if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
            s = ftc_errf(err, FTC_E_IO, "%s: cannot write: %s", l->path, strerror(errno));
            unlink(l->path);
            close(fd);
            break;
        }
        l->fd = fd;
        *out = l;
        return FTC_OK;
    }
    if (l->made_dir) rmdir(dir);
    free(l);
    return s;
}

void ftc_runlock_release(ftc_runlock *l) {
    if (!l) return;
    unlink(l->path); /* before the unlock: a waiter that opened this file sees it gone and opens a new one */
    close(l->fd);
    if (l->made_dir) rmdir(l->dir); /* fails, as meant, unless the run left nothing */
    free(l);
}
