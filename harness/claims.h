/* Claims: how many sweep workers share one sweep folder (on one machine or many, over NFS) without a lock server.
 *
 * Work is claimed in groups, one (prompt, seed) each: its baseline, then its strategy runs, so a run and its
 * baseline are computed by one worker. A group is named by its baseline's run id. The claim is the file
 * OUT/claims/<group>.claim, created atomically with link(2) from a private temporary file (link is atomic on NFS,
 * where O_EXCL was not always), holding
 *     host=<hostname>  pid=<pid>  token=<unique per worker process>  started=<unix s>  heartbeat=<unix s>
 * one per line. A heartbeat process (a child that dies with its worker: PR_SET_PDEATHSIG) rewrites the heartbeat
 * every stale_after/4 seconds while the group runs; a process rather than a thread, so that the worker stays
 * single-threaded and the children it forks to read run files (results/record.c) cannot inherit a lock another
 * thread held (AddressSanitizer's allocator deadlocked them). A claim whose
 * heartbeat is older than stale_after (its worker died, or lost its machine), or of this host whose process is
 * gone, is taken over: the taker first
 * creates <group>.takeover the same atomic way, so only one worker takes a claim over, re-reads the claim (still
 * stale, same token), and replaces it. A worker checks that its claim is still its own before it writes a run file:
 * two workers never write the same run file. Finished groups have no claim (run files say they are finished).
 *
 * OUT/claims/plan.tsv: written by the first worker, checked by every other one: the sweep's identity (model,
 * weights sha256, backend, steps, solver, grid) and its runs, one line each: group, setting index, run id. A worker
 * of another identity or plan is refused (machines mixed in one sweep must compute the same thing).
 * OUT/workers/<host>-<pid>.tsv: one line per run a worker finished: run id, status, seconds, unix time.
 * `cachebench status DIR` reads the three. */
#ifndef CACHEBENCH_CLAIMS_H
#define CACHEBENCH_CLAIMS_H

#include <sys/types.h>
#include <time.h>

#include "core/error.h"

#define CLAIM_NAME_MAX 512

typedef struct {
    char host[128];
    long pid;
    char token[192];
    long long started, heartbeat;   /* unix seconds */
} ClaimInfo;

typedef struct {
    char dir[4096];                 /* OUT/claims */
    char workers_dir[4096];         /* OUT/workers */
    ClaimInfo me;                   /* host, pid, token of this process */
    double stale_after;             /* seconds */
    /* The heartbeat process, while a group is held. */
    pid_t heartbeat_pid;
    int beating;
    char held[CLAIM_NAME_MAX];
} Claims;

/* Creates OUT/claims and OUT/workers; stale_after > 0. */
int claims_open(Claims *c, const char *out, double stale_after, Error *err);
/* Stops the heartbeat (if any) and releases the held claim. */
void claims_close(Claims *c);

/* Tries to claim group name: 1 claimed (a stale claim taken over: its holder in *previous, else previous->pid 0),
 * 0 held by a live worker, -1 error. */
int claims_try(Claims *c, const char *name, ClaimInfo *previous, Error *err);
/* Starts the heartbeat process for the claimed group (one at a time). */
int claims_hold(Claims *c, const char *name, Error *err);
/* 1 when the claim file of name is still this process's. */
int claims_still_ours(Claims *c, const char *name);
/* Stops the heartbeat and removes the claim if it is still ours. */
void claims_release(Claims *c, const char *name);

/* Parses a claim file (NUL-terminated text). */
int claims_parse(const char *text, ClaimInfo *out);
/* Reads dir/name.claim: 1 read, 0 missing, -1 unreadable. */
int claims_read(const char *dir, const char *name, ClaimInfo *out);

/* Writes OUT/claims/plan.tsv when missing; otherwise checks that it is text (the same identity and runs). */
int claims_check_plan(const Claims *c, const char *text, Error *err);
/* Appends a line to this worker's log OUT/workers/<host>-<pid>.tsv. */
int claims_log_run(const Claims *c, const char *run_id, const char *status, double seconds, Error *err);

/* "90", "90s", "10m", "2h" -> seconds (> 0). */
int claims_parse_duration(const char *text, double *seconds);

#endif
