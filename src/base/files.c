#include "ftc/base.h"
#include "base/base_internal.h"
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Every file ftc reads is opened here. O_NONBLOCK makes open() return at once on a FIFO without a
 * writer (a plain open would wait for one forever); the file type is checked before any read, and
 * only then is the descriptor made blocking again. Directories, FIFOs, sockets and devices
 * (/dev/zero would never end) are refused by name. */
static ftc_status open_regular(const char *path, int *fd_out, struct stat *st, ftc_err *err) {
    *fd_out = -1;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return ftc_errf(err, FTC_E_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        return ftc_errf(err, FTC_E_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        const char *what = S_ISDIR(st->st_mode) ? "a directory" : S_ISFIFO(st->st_mode) ? "a FIFO"
                           : S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode) ? "a device" : S_ISSOCK(st->st_mode) ? "a socket" : "special";
        return ftc_errf(err, FTC_E_IO, "%s: not a regular file (%s)", path, what);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return ftc_errf(err, FTC_E_IO, "%s: fcntl: %s", path, strerror(e));
    }
    *fd_out = fd;
    return FTC_OK;
}

ftc_status ftc_open_read(const char *path, FILE **out, ftc_err *err) {
    *out = NULL;
    int fd;
    struct stat st;
    ftc_status s = open_regular(path, &fd, &st, err);
    if (s) return s;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return ftc_errf(err, e == ENOMEM ? FTC_E_NOMEM : FTC_E_IO, "%s: cannot open: %s", path, strerror(e));
    }
    *out = f;
    return FTC_OK;
}

ftc_status ftc_json_save_file(const char *path, const json_t *o, ftc_err *err) {
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    if (!text) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    ftc_status s = ftc_write_file_atomic(path, text, strlen(text), err);
    free(text);
    return s;
}

json_t *ftc_json_load_file(const char *path, size_t flags, json_error_t *je) {
    ftc_err err;
    FILE *f;
    if (ftc_open_read(path, &f, &err) != FTC_OK) {
        if (je) {
            memset(je, 0, sizeof *je);
            je->line = je->column = je->position = -1;
            size_t ls = strlen(path) < sizeof je->source - 1 ? strlen(path) : sizeof je->source - 1;
            memcpy(je->source, path, ls);
            je->source[ls] = 0;
            /* the path is in source; text is what went wrong after "PATH: " */
            const char *m = err.msg;
            size_t n = strlen(path);
            if (!strncmp(m, path, n) && !strncmp(m + n, ": ", 2)) m += n + 2;
            size_t lt = strlen(m) < sizeof je->text - 1 ? strlen(m) : sizeof je->text - 1;
            memcpy(je->text, m, lt);
            je->text[lt] = 0;
        }
        return NULL;
    }
    json_t *j = json_loadf(f, flags, je);
    fclose(f);
    if (je && !j) {
        size_t ls = strlen(path) < sizeof je->source - 1 ? strlen(path) : sizeof je->source - 1;
        memcpy(je->source, path, ls);
        je->source[ls] = 0;
    }
    return j;
}

ftc_status ftc_json_load_object(const char *path, json_t **out, ftc_err *err) {
    *out = NULL;
    json_error_t je;
    json_t *j = ftc_json_load_file(path, 0, &je);
    if (!j) {
        if (json_error_code(&je) == json_error_out_of_memory)
            return ftc_errf(err, FTC_E_NOMEM, "%s: out of memory while parsing JSON", path);
        if (je.line < 0) return ftc_errf(err, FTC_E_IO, "%s: %s", path, je.text);
        return ftc_errf(err, FTC_E_INPUT, "%s:%d:%d: not valid JSON: %s", path, je.line, je.column, je.text);
    }
    if (!json_is_object(j)) {
        json_decref(j);
        return ftc_errf(err, FTC_E_INPUT, "%s: not a JSON object", path);
    }
    *out = j;
    return FTC_OK;
}

ftc_status ftc_map_file(const char *path, ftc_mapped *out, ftc_err *err) {
    out->data = NULL;
    out->size = 0;
    int fd;
    struct stat st;
    ftc_status s = open_regular(path, &fd, &st, err);
    if (s) return s;
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return ftc_errf(err, FTC_E_IO, "%s: mmap failed: %s", path, strerror(errno));
        }
        out->data = p;
        out->size = (size_t)st.st_size;
    }
    close(fd);
    return FTC_OK;
}

void ftc_unmap_file(ftc_mapped *m) {
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

ftc_status ftc_read_file(const char *path, char **out, size_t *len, ftc_err *err) {
    *out = NULL;
    FILE *f;
    ftc_status s = ftc_open_read(path, &f, err);
    if (s) return s;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) { fclose(f); return ftc_errf(err, FTC_E_NOMEM, "%s: out of memory", path); }
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        cap *= 2;
        char *nb = realloc(buf, cap);
        if (!nb) free(buf);
        buf = nb;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return ftc_errf(err, FTC_E_IO, "%s: read error", path); }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return FTC_OK;
}

bool ftc_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
}

bool ftc_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

ftc_status ftc_mkdirs(const char *path, ftc_err *err) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return ftc_errf(err, FTC_E_INPUT, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return ftc_errf(err, FTC_E_IO, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return ftc_errf(err, FTC_E_IO, "%s: cannot create directory: %s", buf, strerror(errno));
    return FTC_OK;
}

bool ftc_path_join(char *out, size_t n, const char *a, const char *b) {
    size_t la = strlen(a);
    int w = (la > 0 && a[la - 1] == '/') ? snprintf(out, n, "%s%s", a, b) : snprintf(out, n, "%s/%s", a, b);
    return w >= 0 && (size_t)w < n;
}

static ftc_io_hook io_hook;
static void *io_hook_ud;

void ftc_io_hook_set(ftc_io_hook hook, void *ud) {
    io_hook = hook;
    io_hook_ud = ud;
}

/* 0, or the errno the I/O hook wants op on path to fail with */
static int io_fault(ftc_io_op op, const char *path) { return io_hook ? io_hook(io_hook_ud, op, path) : 0; }

/* While an I/O hook is set, an atomic file's stream writes through these (fopencookie), so that each write(2)
 * asks the hook first. */
typedef struct {
    int fd;
    const char *path; /* the ftc_atomic_file's final path: it outlives the stream */
} hooked_file;

static ssize_t hooked_write(void *c, const char *buf, size_t n) {
    hooked_file *h = c;
    size_t done = 0;
    while (done < n) {
        int e = io_fault(FTC_IO_WRITE, h->path);
        ssize_t w = e ? -1 : write(h->fd, buf + done, n - done);
        if (e) errno = e;
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return (ssize_t)done; /* short, 0 if nothing: fopencookie's error return; errno says why */
        done += (size_t)w;
    }
    return (ssize_t)n;
}
static int hooked_close(void *c) {
    hooked_file *h = c;
    int r = close(h->fd);
    free(h);
    return r;
}

ftc_status ftc_atomic_open(ftc_atomic_file *af, const char *path, ftc_err *err) {
    memset(af, 0, sizeof *af);
    af->fd = -1;
    if (snprintf(af->path, sizeof af->path, "%s", path) >= (int)sizeof af->path)
        return ftc_errf(err, FTC_E_INPUT, "%s: path too long", path);
    snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "wb");
    if (!af->f) return ftc_errf(err, FTC_E_IO, "%s: cannot create: %s", af->tmp, strerror(errno));
    af->fd = fileno(af->f);
    if (io_hook) { /* the same file, written through the hook */
        hooked_file *h = malloc(sizeof *h);
        int fd = h ? dup(af->fd) : -1;
        FILE *f = fd >= 0 ? fopencookie(h, "wb", (cookie_io_functions_t){.write = hooked_write, .close = hooked_close})
                          : NULL;
        if (!f) {
            int e = h ? errno : ENOMEM;
            if (fd >= 0) close(fd);
            free(h);
            ftc_atomic_abort(af);
            return ftc_errf(err, e == ENOMEM ? FTC_E_NOMEM : FTC_E_IO, "%s: cannot create: %s", af->tmp, strerror(e));
        }
        *h = (hooked_file){fd, af->path};
        fclose(af->f);
        af->f = f;
        af->fd = fd;
    }
    return FTC_OK;
}

static void fsync_parent_dir(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    int fd = open(dirname(buf), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) { fsync(fd); close(fd); }
}

ftc_status ftc_atomic_commit(ftc_atomic_file *af, ftc_err *err) {
    if (!af->f) return ftc_errf(err, FTC_E_INTERNAL, "%s: atomic file not open", af->path);
    int bad = fflush(af->f) != 0 || ferror(af->f);
    if (!bad && (errno = io_fault(FTC_IO_FSYNC, af->path)) == 0) bad = fsync(af->fd) != 0;
    else bad = 1;
    int saved = errno;
    bad |= fclose(af->f) != 0;
    af->f = NULL;
    if (bad) {
        unlink(af->tmp);
        return ftc_errf(err, FTC_E_IO, "%s: write failed: %s", af->path, strerror(saved));
    }
    if ((errno = io_fault(FTC_IO_RENAME, af->path)) != 0 || rename(af->tmp, af->path) != 0) {
        saved = errno;
        unlink(af->tmp);
        return ftc_errf(err, FTC_E_IO, "%s: rename failed: %s", af->path, strerror(saved));
    }
    fsync_parent_dir(af->path);
    return FTC_OK;
}

void ftc_atomic_abort(ftc_atomic_file *af) {
    if (af->f) fclose(af->f);
    af->f = NULL;
    if (af->tmp[0]) unlink(af->tmp);
}

ftc_status ftc_write_file_atomic(const char *path, const void *data, size_t len, ftc_err *err) {
    ftc_atomic_file af;
    ftc_status s = ftc_atomic_open(&af, path, err);
    if (s) return s;
    if (len && fwrite(data, 1, len, af.f) != len) {
        int e = errno;
        ftc_atomic_abort(&af);
        return ftc_errf(err, FTC_E_IO, "%s: write failed: %s", path, strerror(e));
    }
    return ftc_atomic_commit(&af, err);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path) != 0 && errno != ENOENT;
}

ftc_status ftc_remove_tree(const char *path, ftc_err *err) {
    struct stat st;
    if (lstat(path, &st) != 0) return FTC_OK;
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return ftc_errf(err, FTC_E_IO, "%s: cannot remove: %s", path, strerror(errno));
    return FTC_OK;
}

ftc_status ftc_dir_replace(const char *tmp, const char *dir, ftc_err *err) {
    struct stat st;
    int fault = io_fault(FTC_IO_RENAME, dir);
    if (fault) return ftc_errf(err, FTC_E_IO, "%s: cannot move %s into place: %s", dir, tmp, strerror(fault));
    if (lstat(dir, &st) != 0) {
        if (rename(tmp, dir) != 0)
            return ftc_errf(err, FTC_E_IO, "%s: cannot move %s into place: %s", dir, tmp, strerror(errno));
        fsync_parent_dir(dir);
        return FTC_OK;
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) == 0) {
        fsync_parent_dir(dir);
        return ftc_remove_tree(tmp, err); /* the old directory, now at tmp */
    }
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP && errno != EXDEV)
        return ftc_errf(err, FTC_E_IO, "%s: cannot exchange with %s: %s", dir, tmp, strerror(errno));
    char old[4200];
    if (snprintf(old, sizeof old, "%s.old.%ld", dir, (long)getpid()) >= (int)sizeof old)
        return ftc_errf(err, FTC_E_INPUT, "%s: path too long", dir);
    if (rename(dir, old) != 0) return ftc_errf(err, FTC_E_IO, "%s: cannot move aside: %s", dir, strerror(errno));
    if (rename(tmp, dir) != 0) {
        int e = errno;
        rename(old, dir);
        return ftc_errf(err, FTC_E_IO, "%s: cannot move %s into place: %s", dir, tmp, strerror(e));
    }
    fsync_parent_dir(dir);
    return ftc_remove_tree(old, err);
}

/* "NAME.tmp.PID" / "NAME.old.PID": true with the NAME length and PID when e is one. */
static bool temp_name(const char *e, const char *kind, size_t *name_len, long *pid) {
    const char *p = strstr(e, kind);
    while (p) {
        const char *q = p + strlen(kind);
        char *end;
        long v = strtol(q, &end, 10);
        if (q[0] >= '0' && q[0] <= '9' && !*end && v > 0) {
            *name_len = (size_t)(p - e);
            *pid = v;
            return true;
        }
        p = strstr(p + 1, kind);
    }
    return false;
}

int ftc_remove_stale_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t nl;
        long pid;
        bool old = false;
        if (!temp_name(e->d_name, ".tmp.", &nl, &pid) && !(old = temp_name(e->d_name, ".old.", &nl, &pid))) continue;
        if (pid != (long)getpid() && (kill((pid_t)pid, 0) == 0 || errno != ESRCH)) continue; /* its writer runs */
        char p[4400], orig[4400];
        if (!ftc_path_join(p, sizeof p, dir, e->d_name) || nl >= sizeof orig - strlen(dir) - 2) continue;
        struct stat st;
        if (old) {
            snprintf(orig, sizeof orig, "%s/%.*s", dir, (int)nl, e->d_name);
            if (lstat(orig, &st) != 0 && rename(p, orig) == 0) { n++; continue; }
        }
        ftc_err err;
        if (ftc_remove_tree(p, &err) == FTC_OK) n++;
    }
    closedir(d);
    return n;
}
