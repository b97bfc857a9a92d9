/* The run-directory lock: one `ftc train` (or one program's ftc_train_run) per RUNDIR at a time.
 * RUNDIR/train.lock holds the holder's pid and an flock(2) on it while the holder lives; the kernel drops the
 * flock when the holder exits or is killed, so a lock left by a killed run (SIGKILL, a crash, a power cut) is
 * stale and the next run takes it over. Works between processes on one machine (flock: not across NFS
 * clients). A program that calls ftc_train_run itself should hold this lock on c->out around it, as the CLI does. */
#ifndef FTC_RUNLOCK_H
#define FTC_RUNLOCK_H
#include "ftc/status.h"

typedef struct ftc_runlock ftc_runlock;

/* Creates dir if needed and locks it. A live holder: FTC_E_IO, the message naming its pid and the lock file.
 * *stale_pid (may be NULL) gets the pid a killed run left in the file when this call took its lock over, else 0. */
ftc_status ftc_runlock_acquire(const char *dir, ftc_runlock **out, long *stale_pid, ftc_err *err);
/* Unlocks and removes the lock file (and dir, when acquire created it and nothing else was put there). NULL: no-op. */
void ftc_runlock_release(ftc_runlock *l);

#endif
