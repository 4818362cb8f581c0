/* Claim files for sweep workers sharing a folder. Protocol and files: claims.h. */
#define _GNU_SOURCE
#include "harness/claims.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness/sweep.h"

static long long unix_now(void) { return (long long)time(NULL); }

static void format_claim(const ClaimInfo *me, long long started, long long heartbeat, char *buf, size_t cap) {
    snprintf(buf, cap, "host=%s\npid=%ld\ntoken=%s\nstarted=%lld\nheartbeat=%lld\n", me->host, me->pid, me->token,
             started, heartbeat);
}

int claims_parse(const char *text, ClaimInfo *out) {
    memset(out, 0, sizeof *out);
    int have = 0;
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[256];
        if (len < sizeof buf) {
            memcpy(buf, line, len);
            buf[len] = '\0';
            if (strncmp(buf, "host=", 5) == 0) snprintf(out->host, sizeof out->host, "%.127s", buf + 5), have |= 1;
            else if (strncmp(buf, "pid=", 4) == 0) out->pid = strtol(buf + 4, NULL, 10), have |= 2;
            else if (strncmp(buf, "token=", 6) == 0)
                snprintf(out->token, sizeof out->token, "%.191s", buf + 6), have |= 4;
            else if (strncmp(buf, "started=", 8) == 0) out->started = strtoll(buf + 8, NULL, 10), have |= 8;
            else if (strncmp(buf, "heartbeat=", 10) == 0) out->heartbeat = strtoll(buf + 10, NULL, 10), have |= 16;
        }
        line = end ? end + 1 : NULL;
    }
    return have == 31 ? 0 : -1;
}

static int read_text(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0) return -1;
    buf[n] = '\0';
    return 1;
}

static void claim_path(const char *dir, const char *name, const char *suffix, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s%s", dir, name, suffix);
}

int claims_read(const char *dir, const char *name, ClaimInfo *out) {
    char path[4096 + CLAIM_NAME_MAX + 16], text[1024];
    claim_path(dir, name, ".claim", path, sizeof path);
    int r = read_text(path, text, sizeof text);
    if (r <= 0) return r;
    return claims_parse(text, out) ? -1 : 1;
}

/* Creates path holding text, atomically and only if it does not exist: a private temporary file, then link(2).
 * Returns 0 created, 1 exists, -1 error. NFS may report a failed link that in fact succeeded (a lost reply to a
 * retried request): the temporary file's link count tells. */
static int create_exclusive(const Claims *c, const char *path, const char *text, Error *err) {
    char tmp[8400];
    snprintf(tmp, sizeof tmp, "%s.%s-%ld.tmp", path, c->me.host, c->me.pid);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) return error_set(err, "%s: cannot create: %s", tmp, strerror(errno));
    size_t len = strlen(text);
    int ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    close(fd);
    if (!ok) {
        unlink(tmp);
        return error_set(err, "%s: cannot write: %s", tmp, strerror(errno));
    }
    int rc = 0;
    if (link(tmp, path) != 0) {
        int e = errno;
        struct stat st;
        if (stat(tmp, &st) == 0 && st.st_nlink == 2) rc = 0;
        else if (e == EEXIST) rc = 1;
        else rc = error_set(err, "%s: cannot create: %s", path, strerror(e));
    }
    unlink(tmp);
    return rc;
}

int claims_open(Claims *c, const char *out, double stale_after, Error *err) {
    memset(c, 0, sizeof *c);
    if (!(stale_after > 0)) return error_set(err, "stale time must be > 0");
    c->stale_after = stale_after;
    snprintf(c->dir, sizeof c->dir, "%s/claims", out);
    snprintf(c->workers_dir, sizeof c->workers_dir, "%s/workers", out);
    if (sweep_make_dirs(c->dir, err) || sweep_make_dirs(c->workers_dir, err)) return -1;
    if (gethostname(c->me.host, sizeof c->me.host) != 0) snprintf(c->me.host, sizeof c->me.host, "unknown");
    c->me.host[sizeof c->me.host - 1] = '\0';
    for (char *p = c->me.host; *p; p++) /* the host names file names and lines */
        if (*p == '/' || *p == '\n' || *p == '\t' || *p == ' ') *p = '_';
    c->me.pid = (long)getpid();
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    snprintf(c->me.token, sizeof c->me.token, "%s:%ld:%lld.%09ld", c->me.host, c->me.pid, (long long)t.tv_sec,
             t.tv_nsec);
    c->me.started = unix_now();
    return 0;
}

void claims_close(Claims *c) {
    if (c->held[0]) claims_release(c, c->held);
}

/* A claim (or takeover) file is stale when its heartbeat is older than stale_after; one that cannot be parsed (being
 * rewritten right now, or damaged) by its modification time. */
static int is_stale(const Claims *c, const char *path, const ClaimInfo *info, int parsed) {
    /* A claim of this host whose process is gone (Ctrl-C, kill -9, then the same command again) needs no wait. */
    if (parsed && strcmp(info->host, c->me.host) == 0 && info->pid > 0 && kill((pid_t)info->pid, 0) != 0 &&
        errno == ESRCH)
        return 1;
    long long beat = info->heartbeat;
    if (!parsed) {
        struct stat st;
        if (stat(path, &st) != 0) return 0;
        beat = (long long)st.st_mtime;
    }
    return (double)(unix_now() - beat) > c->stale_after;
}

int claims_try(Claims *c, const char *name, ClaimInfo *previous, Error *err) {
    char path[4096 + CLAIM_NAME_MAX + 16], takeover[4096 + CLAIM_NAME_MAX + 16], text[1024];
    claim_path(c->dir, name, ".claim", path, sizeof path);
    claim_path(c->dir, name, ".takeover", takeover, sizeof takeover);
    if (previous) memset(previous, 0, sizeof *previous);
    for (int attempt = 0; attempt < 4; attempt++) {
        long long now = unix_now();
        format_claim(&c->me, now, now, text, sizeof text);
        int r = create_exclusive(c, path, text, err);
        if (r <= 0) return r == 0 ? 1 : -1;
        ClaimInfo held;
        char held_text[1024];
        int got = read_text(path, held_text, sizeof held_text);
        if (got == 0) continue; /* released meanwhile */
        int parsed = got > 0 && claims_parse(held_text, &held) == 0;
        if (!is_stale(c, path, &held, parsed)) return 0;
        /* Stale: one taker at a time. */
        r = create_exclusive(c, takeover, text, err);
        if (r < 0) return -1;
        if (r == 1) {
            ClaimInfo t;
            char t_text[1024];
            int tg = read_text(takeover, t_text, sizeof t_text);
            if (tg == 0) continue; /* the other taker is done: look again */
            if (tg > 0 && is_stale(c, takeover, &t, claims_parse(t_text, &t) == 0)) { /* it died taking over */
                unlink(takeover);
                continue;
            }
            return 0;
        }
        /* We are the only taker: is it the same stale claim still? */
        char again[1024];
        ClaimInfo now_held;
        int g2 = read_text(path, again, sizeof again);
        int same = g2 > 0 && strcmp(again, held_text) == 0;
        int p2 = g2 > 0 && claims_parse(again, &now_held) == 0;
        if (g2 > 0 && !same && !is_stale(c, path, &now_held, p2)) {
            unlink(takeover);
            return 0;
        }
        if (g2 > 0) unlink(path);
        r = create_exclusive(c, path, text, err);
        unlink(takeover);
        if (r < 0) return -1;
        if (r == 1) return 0; /* a worker that never saw the stale claim got it first */
        if (previous && parsed) *previous = held;
        return 1;
    }
    return 0;
}

/* Rewrites the heartbeat of name's claim if the claim is ours; returns 1 if it is. */
static int refresh(Claims *c, const char *name, int write_beat) {
    char path[4096 + CLAIM_NAME_MAX + 16], text[1024];
    claim_path(c->dir, name, ".claim", path, sizeof path);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, text, sizeof text - 1);
    ClaimInfo info;
    int ours = 0;
    if (n > 0) {
        text[n] = '\0';
        ours = claims_parse(text, &info) == 0 && strcmp(info.token, c->me.token) == 0;
    }
    if (ours && write_beat) { /* the fd is our file even if a taker replaced the name meanwhile */
        format_claim(&c->me, info.started, unix_now(), text, sizeof text);
        size_t len = strlen(text);
        if (pwrite(fd, text, len, 0) == (ssize_t)len) {
            int ignored = ftruncate(fd, (off_t)len);
            (void)ignored;
        }
    }
    close(fd);
    return ours;
}

int claims_still_ours(Claims *c, const char *name) { return refresh(c, name, 0); }

/* The heartbeat process: rewrites the claim every stale_after/4 seconds until its worker stops it, and dies with
 * its worker (a killed worker's claim must go stale). Only file I/O and formatting, no allocation. */
static void heartbeat_main(Claims *c, pid_t worker) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    double interval = c->stale_after / 4;
    if (interval < 0.05) interval = 0.05;
    while (getppid() == worker) {
        struct timespec t = {(time_t)interval, (long)((interval - (double)(time_t)interval) * 1e9)};
        while (nanosleep(&t, &t) != 0 && errno == EINTR) {
        }
        if (getppid() != worker) break;
        refresh(c, c->held, 1);
    }
    _exit(0);
}

int claims_hold(Claims *c, const char *name, Error *err) {
    snprintf(c->held, sizeof c->held, "%s", name);
    const pid_t worker = getpid();
    fflush(NULL); /* nothing buffered is written twice */
    const pid_t pid = fork();
    if (pid < 0) {
        c->held[0] = '\0';
        return error_set(err, "cannot start the heartbeat process: %s", strerror(errno));
    }
    if (pid == 0) heartbeat_main(c, worker);
    c->heartbeat_pid = pid;
    c->beating = 1;
    return 0;
}

void claims_release(Claims *c, const char *name) {
    if (c->beating) {
        kill(c->heartbeat_pid, SIGKILL);
        while (waitpid(c->heartbeat_pid, NULL, 0) < 0 && errno == EINTR) {
        }
        c->beating = 0;
    }
    if (claims_still_ours(c, name)) {
        char path[4096 + CLAIM_NAME_MAX + 16];
        claim_path(c->dir, name, ".claim", path, sizeof path);
        unlink(path);
    }
    if (strcmp(c->held, name) == 0) c->held[0] = '\0';
}

int claims_check_plan(const Claims *c, const char *text, Error *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/plan.tsv", c->dir);
    int r = create_exclusive(c, path, text, err);
    if (r <= 0) return r;
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, "%s: cannot read: %s", path, strerror(errno));
    size_t len = strlen(text);
    char *have = malloc(len + 2);
    size_t got = have ? fread(have, 1, len + 1, f) : 0;
    fclose(f);
    int same = have && got == len && memcmp(have, text, len) == 0;
    /* The first line that differs says what. */
    char mine[512] = "", theirs[512] = "";
    if (!same && have) {
        have[got] = '\0';
        size_t i = 0;
        while (i < len && i < got && text[i] == have[i]) i++;
        while (i > 0 && text[i - 1] != '\n') i--;
        sscanf(text + i, "%511[^\n]", mine);
        sscanf(have + i, "%511[^\n]", theirs);
    }
    free(have);
    if (same) return 0;
    return error_set(err,
                     "%s: this folder's sweep differs from this worker's: it has \"%s\", this worker \"%s\". Workers "
                     "of one sweep need the same config, model weights (sha256) and backend",
                     path, theirs, mine);
}

int claims_log_run(const Claims *c, const char *run_id, const char *status, double seconds, Error *err) {
    char path[4400], line[1024];
    snprintf(path, sizeof path, "%s/%s-%ld.tsv", c->workers_dir, c->me.host, c->me.pid);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd < 0) return error_set(err, "%s: cannot open: %s", path, strerror(errno));
    int n = snprintf(line, sizeof line, "%s\t%s\t%.3f\t%lld\n", run_id, status, seconds, unix_now());
    int ok = write(fd, line, (size_t)n) == n;
    close(fd);
    return ok ? 0 : error_set(err, "%s: cannot write: %s", path, strerror(errno));
}

int claims_parse_duration(const char *text, double *seconds) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || !(v > 0)) return -1;
    if (*end == 's') end++;
    else if (*end == 'm') v *= 60, end++;
    else if (*end == 'h') v *= 3600, end++;
    if (*end) return -1;
    *seconds = v;
    return 0;
}
