/* Small shared utilities: files (mmap, whole-file read, atomic write), RNG, time, progress. */
#ifndef FTC_BASE_H
#define FTC_BASE_H
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include "ftc/status.h"

/* The element type of a KV cache: generation's caches (ftc/infer.h, where the types are described) and the decode
 * attention that reads them (ftc/ops.h). */
typedef enum { FTC_KV_F32 = 0, FTC_KV_F16 = 1, FTC_KV_Q8_0 = 2 } ftc_kv_type;

/* ---- files ---- */
typedef struct {
    const uint8_t *data; /* read-only mapping (NULL for an empty file) */
    size_t size;
} ftc_mapped;
ftc_status ftc_map_file(const char *path, ftc_mapped *out, ftc_err *err);
void ftc_unmap_file(ftc_mapped *m);
/* Opens a file for reading; anything but a regular file (FIFO, device, directory) is refused with
 * "not a regular file" before a read could block. Every file ftc reads goes through here. */
ftc_status ftc_open_read(const char *path, FILE **out, ftc_err *err);
/* Reads a whole file into a malloc'd, NUL-terminated buffer. */
ftc_status ftc_read_file(const char *path, char **out, size_t *len, ftc_err *err);
/* True when something other than a directory is at path (a FIFO or device too: reading it then says
 * "not a regular file" rather than the file being missing). */
bool ftc_file_exists(const char *path);
bool ftc_is_dir(const char *path);
/* mkdir -p */
ftc_status ftc_mkdirs(const char *path, ftc_err *err);
/* Joins a and b with one '/', into out (size n). Returns false if truncated. */
bool ftc_path_join(char *out, size_t n, const char *a, const char *b);

/* Atomic write: nothing is lost. Data goes to "<path>.tmp.<pid>", is fsynced, renamed over
 * path, and the directory is fsynced. Either the old or the new file exists, never half. */
typedef struct {
    FILE *f;
    int fd; /* f's descriptor (fsync) */
    char path[4096];
    char tmp[4200];
} ftc_atomic_file;
ftc_status ftc_atomic_open(ftc_atomic_file *af, const char *path, ftc_err *err);
ftc_status ftc_atomic_commit(ftc_atomic_file *af, ftc_err *err); /* fsync + rename */
void ftc_atomic_abort(ftc_atomic_file *af);                       /* remove the temp file */
ftc_status ftc_write_file_atomic(const char *path, const void *data, size_t len, ftc_err *err);

/* I/O fault injection for the atomic writes above and ftc_dir_replace (every checkpoint, model and run file):
 * when a hook is set, each write(2) of an atomic file's data, its fsync and the final rename first call
 * hook(ud, op, path) with path the file's final name (the directory's for ftc_dir_replace); a non-zero return
 * is an errno value (ENOSPC, EIO) the operation then fails with, as the kernel would have. None by default.
 * Process-wide: set it while no other thread writes through libftc. tests/test_io_faults.c, and the CLI's
 * FTC_TEST_IO_FAULT (docs/train.md). */
typedef enum { FTC_IO_WRITE, FTC_IO_FSYNC, FTC_IO_RENAME } ftc_io_op;
typedef int (*ftc_io_hook)(void *ud, ftc_io_op op, const char *path);
void ftc_io_hook_set(ftc_io_hook hook, void *ud);

/* Whole directories: built in a sibling "<dir>.tmp.<pid>", then put in place in one step. */
/* Removes a directory tree (symlinks are removed, never followed); a missing path is fine. */
ftc_status ftc_remove_tree(const char *path, ftc_err *err);
/* Moves the complete directory tmp to dir. An existing dir is swapped with tmp in one rename
 * (renameat2 RENAME_EXCHANGE) and the old one, now at tmp, removed: a crash at any point leaves the
 * old or the new directory at dir, never a mix. Where the filesystem cannot exchange, the old one is
 * renamed to "<dir>.old.<pid>" first; ftc_remove_stale_temps puts it back if a crash came between. */
ftc_status ftc_dir_replace(const char *tmp, const char *dir, ftc_err *err);
/* Cleans up after interrupted writes in dir: entries "NAME.tmp.PID" and "NAME.old.PID" whose process
 * is gone are removed (an "old" whose NAME is missing is renamed back to NAME first). Returns how many
 * were removed or restored. */
int ftc_remove_stale_temps(const char *dir);

/* ---- random numbers: xoshiro256**, state is plain data so checkpoints can save it ---- */
typedef struct { uint64_t s[4]; } ftc_rng;
void ftc_rng_seed(ftc_rng *r, uint64_t seed);
uint64_t ftc_rng_u64(ftc_rng *r);
float ftc_rng_uniform(ftc_rng *r);            /* [0, 1) */
float ftc_rng_normal(ftc_rng *r);             /* N(0, 1) */
uint64_t ftc_rng_below(ftc_rng *r, uint64_t n); /* [0, n) without modulo bias */
void ftc_rng_shuffle_i32(ftc_rng *r, int32_t *a, size_t n);

/* ---- time ---- */
double ftc_now(void); /* monotonic seconds */

/* "Did you mean": up to 3 of names (n entries, NULL ones skipped) closest to word (edit distance, or sharing a
 * '-'-separated word), each with prefix, written to out as "a, b or c". Returns how many (0: none close). */
int ftc_closest_names(const char *word, const char *const *names, size_t n, const char *prefix, char *out, size_t cap);

/* ---- progress: a bar on a TTY, plain periodic lines otherwise (to stderr) ---- */
typedef struct {
    const char *label;
    long total, done;
    double t_start, t_last_print;
    bool tty;
    char extra[256];
} ftc_progress;
void ftc_progress_start(ftc_progress *p, const char *label, long total);
/* Updates to `done`; extra is a short status like "loss 1.23 lr 2e-5 tok/s 4100". */
void ftc_progress_update(ftc_progress *p, long done, const char *extra);
void ftc_progress_finish(ftc_progress *p);

#endif
