/* libFuzzer target: the HDF5 run-record reader (record_read, results/record.c) on arbitrary bytes, plus the summary
 * `cachebench info` prints (record_print_info, into /dev/null). A record that reads back must be self-consistent:
 * every array the struct claims is there and as long as its counts say, which the target checks by reading it all.
 *
 * HDF5 1.10 itself crashes on some corrupt files (results/record.c, read_in_child). The CLI survives that by reading
 * in a child process first; here that isolation is switched off (CACHEBENCH_HDF5_IN_PROCESS=1) so that libFuzzer
 * sees our code's coverage and crashes, and instead every input is first read by HDF5 alone (every attribute and
 * dataset of every object, no code of ours) in a silenced child. Inputs HDF5 alone crashes or hangs on are skipped:
 * they are HDF5's bugs, and the CLI's child-process read turns them into "corrupt HDF5 file" (the regression inputs
 * tests/regressions/record/hdf5_* keep them). A crash that remains has our code on the stack, or an HDF5 call the
 * probe does not make: the stack trace tells which; in the second case extend probe_object. */
#include "fuzz/fuzz_common.h"

#include <hdf5.h>
#include <sanitizer/common_interface_defs.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "results/record.h"

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    devnull = fopen("/dev/null", "w");
    if (!devnull) abort();
    setenv("CACHEBENCH_HDF5_IN_PROCESS", "1", 1);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the probe's failures are expected; HDF5 would print each one */
    return 0;
}

/* Reads one attribute with every memory type record.c uses for its class. */
static herr_t probe_attribute(hid_t obj, const char *name, const H5A_info_t *info, void *data) {
    (void)info, (void)data;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return 0;
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    hssize_t n = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    if (n > 0 && n <= 4096) {
        if (c == H5T_STRING && H5Tis_variable_str(t) > 0) {
            char **v = calloc((size_t)n, sizeof *v);
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(t));
            if (H5Aread(a, mt, v) >= 0)
                for (hssize_t i = 0; i < n; i++) H5free_memory(v[i]);
            H5Tclose(mt);
            free(v);
        } else if (c == H5T_STRING) {
            size_t size = H5Tget_size(t);
            char *v = size <= 65536 ? malloc((size + 1) * (size_t)n) : NULL;
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, size + 1);
            H5Tset_strpad(mt, H5T_STR_NULLTERM);
            if (v) H5Aread(a, mt, v);
            H5Tclose(mt);
            free(v);
        } else if (c == H5T_INTEGER || c == H5T_FLOAT) {
            static const hid_t *const types[] = {&H5T_NATIVE_DOUBLE_g, &H5T_NATIVE_FLOAT_g, &H5T_NATIVE_INT_g,
                                                 &H5T_NATIVE_INT64_g, &H5T_NATIVE_UINT64_g};
            double *v = malloc(8 * (size_t)n);
            for (size_t i = 0; v && i < sizeof types / sizeof types[0]; i++) H5Aread(a, *types[i], v);
            free(v);
        }
    }
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return 0;
}

/* Every attribute of every object, every numeric dataset read whole (up to 64 MB) as record.c reads them. */
static herr_t probe_object(hid_t root, const char *name, const H5O_info_t *info, void *data) {
    (void)data;
    hid_t o = H5Oopen(root, name, H5P_DEFAULT);
    if (o < 0) return 0;
    char buf[256];
    H5Iget_name(o, buf, sizeof buf);
    H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, probe_attribute, NULL);
    if (info->type == H5O_TYPE_DATASET) {
        hid_t t = H5Dget_type(o), s = H5Dget_space(o);
        hssize_t n = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
        H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
        if ((c == H5T_INTEGER || c == H5T_FLOAT) && n > 0 && n <= (1 << 23)) {
            static const hid_t *const types[] = {&H5T_NATIVE_DOUBLE_g, &H5T_NATIVE_FLOAT_g, &H5T_NATIVE_UINT8_g,
                                                 &H5T_NATIVE_INT32_g};
            double *v = malloc(8 * (size_t)n);
            for (size_t i = 0; v && i < sizeof types / sizeof types[0]; i++)
                H5Dread(o, *types[i], H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
            free(v);
        }
        if (s >= 0) H5Sclose(s);
        if (t >= 0) H5Tclose(t);
    }
    H5Oclose(o);
    return 0;
}

/* 1 when HDF5 alone reads the file (or rejects it) without crashing or hanging, in a child process whose sanitizer
 * reports and libFuzzer crash handling are off, so an HDF5 crash there is neither printed nor saved as a finding. */
static int hdf5_alone_survives(const char *path) {
    pid_t pid = fork();
    if (pid < 0) abort();
    if (pid == 0) {
        __sanitizer_set_report_path("/dev/null");
        __sanitizer_set_death_callback(NULL);
        static const int deadly[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
        for (size_t i = 0; i < sizeof deadly / sizeof deadly[0]; i++) signal(deadly[i], SIG_DFL);
        signal(SIGALRM, SIG_DFL); /* libFuzzer's -timeout handler is inherited; here the alarm must just kill */
        alarm(1); /* inputs are at most tens of KB: HDF5 reads a sound one in milliseconds */
        hid_t f = H5Fis_hdf5(path) > 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
        if (f >= 0) {
            H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, probe_attribute, NULL);
            H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_NATIVE, probe_object, NULL, H5O_INFO_BASIC);
            H5Fclose(f);
        }
        _exit(0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) abort();
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* 1 when our reader, in a child, runs out of time: HDF5's global-heap loop can also be reached along the order in
 * which record.c opens attributes by name, which the probe above (an iteration) does not take
 * (tests/regressions/record/hdf5_hang_global_heap_loop_by_name.h5). A crash there is not screened: the in-process
 * read below then reports it. */
static int reader_hangs(const char *path) {
    pid_t pid = fork();
    if (pid < 0) abort();
    if (pid == 0) {
        __sanitizer_set_report_path("/dev/null");
        __sanitizer_set_death_callback(NULL);
        signal(SIGALRM, SIG_DFL);
        alarm(2);
        RunRecord r;
        Error err = {{0}};
        if (record_read(path, &r, &err) == 0) record_free(&r);
        _exit(0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) abort();
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[256];
    fuzz_realfile(data, size, path);
    if (!hdf5_alone_survives(path) || reader_hangs(path)) {
        fuzz_realfile_done(path);
        return -1; /* HDF5's own crash: not a finding for this target, and not worth keeping in the corpus */
    }
    RunRecord r;
    Error err = {{0}};
    if (record_read(path, &r, &err) == 0) {
        volatile double sum = 0;
        for (int i = 0; i < r.steps; i++) sum += r.step[i].sigma + r.step[i].computed[0] + r.step[i].computed[1];
        for (size_t i = 0; i < (size_t)r.frames * r.height * r.width * 3; i++) sum += r.video[i];
        if (r.latents)
            for (size_t i = 0; i < (size_t)r.steps * r.lc * r.lf * r.lh * r.lw; i++) sum += r.latents[i];
        if (r.svg_layers > 0) {
            for (size_t i = 0; i < (size_t)r.steps * 2 * r.svg_layers; i++)
                sum += r.svg_spatial_heads[i] + r.svg_temporal_heads[i];
            for (size_t i = 0; i < (size_t)r.steps * 2 * r.svg_layers * r.svg_heads; i++) sum += r.svg_density[i];
            for (int i = 0; i < r.steps; i++) sum += r.attn_flops[i] + r.attn_flops_dense[i];
        }
        for (int i = 0; i < r.metrics.frames; i++)
            sum += r.metrics.psnr[i] + r.metrics.ssim[i] + (r.metrics.lpips ? r.metrics.lpips[i] : 0.0);
        (void)sum;
        record_free(&r);
        if (record_print_info(path, devnull, &err) != 0) {
            fprintf(stderr, "record reads but info fails: %s\n", err.msg);
            abort();
        }
    } else if (!strstr(err.msg, path)) {
        fprintf(stderr, "message does not name the file: %s\n", err.msg);
        abort();
    }
    fuzz_realfile_done(path);
    return 0;
}
