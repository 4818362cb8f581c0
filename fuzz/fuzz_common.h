/* Shared by the libFuzzer targets in fuzz/ (built and run by `make fuzz`, tests/reliability.mk).
 *
 * The readers under test take a path, so each input becomes a fresh anonymous in-memory file (memfd) reached through
 * /proc/self/fd/N: no disk traffic and nothing left behind (fuzz_memfile), or, for HDF5, a real file in memory-backed
 * /dev/shm (fuzz_realfile). */
#ifndef CACHEBENCH_FUZZ_COMMON_H
#define CACHEBENCH_FUZZ_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Writes data into a new memfd and its /proc path into path. Returns the fd (close it when done). A failure here
 * is the harness's, not the input's, so it aborts instead of being mistaken for a rejected input. */
static inline int fuzz_memfile(const uint8_t *data, size_t size, char path[64]) {
    int fd = memfd_create("fuzz-input", MFD_CLOEXEC);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    for (size_t done = 0; done < size;) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) {
            perror("write to memfd");
            abort();
        }
        done += (size_t)n;
    }
    snprintf(path, 64, "/proc/self/fd/%d", fd);
    return fd;
}

/* The same as a real file, for readers that need one: HDF5 resolves the real path of what it opens and cannot for
 * a memfd ("can't retrieve real path for file"). One fixed name per process in /dev/shm (memory, when mounted) or
 * $TMPDIR, rewritten for every input; the caller unlinks it with fuzz_realfile_done. */
static inline void fuzz_realfile(const uint8_t *data, size_t size, char path[256]) {
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, 256, "%s/cachebench-fuzz-%d.input", dir, (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

static inline void fuzz_realfile_done(const char *path) { unlink(path); }

/* The input as a NUL-terminated string (cut at an embedded NUL), malloc'd. */
static inline char *fuzz_string(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    for (size_t i = 0; i < size; i++) s[i] = (char)data[i];
    s[size] = '\0';
    return s;
}

#endif
