/* Run records in HDF5: the layout is documented in results/record.h.
 *
 * Every group is self-contained: its dimension scales live in the group itself (/latents has its own "step",
 * /metrics its own "frame"), so replacing /metrics never leaves a scale pointing at deleted datasets, and
 * xarray.open_dataset(path, group=G, engine="h5netcdf") sees each group as one netCDF-like dataset.
 *
 * Error convention inside this file: helpers fill err with a message that does not name the file, and the
 * public entry points prefix it with the path, so every message reads "PATH: what is wrong". */
#include "results/record.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <hdf5_hl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFLATE_LEVEL 4
/* Upper bounds for sizes read from a file, so a corrupt attribute cannot ask for an absurd allocation. */
#define MAX_STEPS 1000000
#define MAX_DIM 1000000

/* ---------------------------------------------------------------------------------------------------------- */
/* HDF5 error handling */

/* HDF5 prints its error stack to stderr by default. Library code must not print, so each entry point silences it
 * and restores the caller's setting on the way out. */
typedef struct {
    H5E_auto2_t func;
    void *data;
} H5Quiet;

static H5Quiet h5_quiet(void) {
    H5Quiet q = {NULL, NULL};
    H5Eget_auto2(H5E_DEFAULT, &q.func, &q.data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return q;
}

static void h5_restore(H5Quiet q) { H5Eset_auto2(H5E_DEFAULT, q.func, q.data); }

static herr_t innermost_cb(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    char *buf = data;
    if (buf[0] != '\0' || !e->desc || !e->desc[0]) return 0;
    /* I/O failures read "file write failed: time = <ctime with newline>, filename = ..., errno = 28, error message =
     * 'No space left on device', buf = ..."; keep the head and the system's message only. */
    const char *m = strstr(e->desc, "error message = '");
    const char *colon = strchr(e->desc, ':');
    if (m && colon) {
        m += strlen("error message = '");
        const char *end = strchr(m, '\'');
        snprintf(buf, 256, "%.*s: %.*s", (int)(colon - e->desc), e->desc, (int)(end ? end - m : 100), m);
    } else {
        snprintf(buf, 256, "%s", e->desc);
    }
    return 0;
}

/* The most specific non-empty message on HDF5's error stack (e.g. "truncated file: eof = ..."), to make our
 * message useful without printing the whole stack. Must be called right after the failing call: any other HDF5
 * API call clears the stack. Empty when the stack is empty. */
static const char *h5_detail(char buf[256]) {
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_cb, buf);
    return buf;
}

/* Files are opened with the strong close degree: closing the file closes anything a bug left open, so a leaked
 * handle can never keep a half-written file alive after rename. */
static hid_t fapl_strong(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0) H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    return fapl;
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Writing */

/* Creation order is tracked so that h5py lists attributes and members in the order we wrote them. */
static hid_t create_group(hid_t file, const char *name, Error *err) {
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    H5Pset_attr_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    hid_t g = H5Gcreate2(file, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    H5Pclose(gcpl);
    if (g < 0) error_set(err, "cannot create group /%s", name);
    return g;
}

/* "/steps" for messages; the HDF5 error stack must already have been read, as this call clears it. */
static const char *obj_name(hid_t obj, char buf[256]) {
    if (H5Iget_name(obj, buf, 256) <= 0) snprintf(buf, 256, "?");
    return buf;
}

static int attr_write(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *value, Error *err) {
    char d[256] = "", o[256];
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a >= 0 && H5Awrite(a, mtype, value) >= 0) ? 0 : -1;
    if (rc) h5_detail(d);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    if (rc) return error_set(err, "cannot write attribute %s of %s (HDF5: %s)", name, obj_name(obj, o), d);
    return 0;
}

/* Variable-length UTF-8: h5py returns these as str (fixed-length strings come back as bytes). The struct fields
 * are fixed arrays, so the length is bounded by the array even if a caller forgot the terminator. */
static int attr_str(hid_t obj, const char *name, const char *value, size_t cap, Error *err) {
    char buf[2048];
    size_t n = strnlen(value, cap < sizeof buf ? cap : sizeof buf - 1);
    memcpy(buf, value, n);
    buf[n] = '\0';
    const char *p = buf;
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    int rc = attr_write(obj, name, t, t, &p, err);
    H5Tclose(t);
    return rc;
}
#define ATTR_STR(obj, name, field, err) attr_str(obj, name, field, sizeof(field), err)

static int attr_i32(hid_t obj, const char *name, int v, Error *err) {
    int32_t x = v;
    return attr_write(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT32, &x, err);
}
static int attr_f32(hid_t obj, const char *name, float v, Error *err) {
    return attr_write(obj, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &v, err);
}
static int attr_f64(hid_t obj, const char *name, double v, Error *err) {
    return attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, err);
}

/* Writes data[n] (file type ftype, memory type mtype) as a dataset made a dimension scale named after itself.
 * h5netcdf treats it as both the dimension and its coordinate variable. */
static int write_scale_data(hid_t g, const char *name, hid_t ftype, hid_t mtype, hsize_t n, const void *data,
                            Error *err) {
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(g, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (d >= 0 && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0 && H5DSset_scale(d, name) >= 0)
                 ? 0
                 : -1;
    char dd[256] = "", o[256];
    if (rc) h5_detail(dd);
    if (d >= 0) H5Dclose(d);
    H5Sclose(space);
    if (rc) return error_set(err, "cannot write dimension scale %s/%s (HDF5: %s)", obj_name(g, o), name, dd);
    return 0;
}

/* A coordinate: int32 0..n-1. */
static int write_scale(hid_t g, const char *name, hsize_t n, Error *err) {
    int32_t *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return error_set(err, "out of memory");
    for (hsize_t i = 0; i < n; i++) v[i] = (int32_t)i;
    int rc = write_scale_data(g, name, H5T_STD_I32LE, H5T_NATIVE_INT32, n, v, err);
    free(v);
    return rc;
}

/* A coordinate of names (variable-length UTF-8 strings), so that xarray selects by name: ds.sel(branch="cond"). */
static int write_name_scale(hid_t g, const char *name, const char *const *names, hsize_t n, Error *err) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    int rc = write_scale_data(g, name, t, t, n, names, err);
    H5Tclose(t);
    return rc;
}

/* Writes a variable and attaches (and labels) the dimension scales dims[i], which must already exist in g.
 * chunk0 > 0 asks for chunks of chunk0 entries along the first axis, compressed with shuffle + deflate. */
static int write_var(hid_t g, const char *name, hid_t ftype, hid_t mtype, int rank, const hsize_t *shape,
                     const char *const *dims, hsize_t chunk0, const void *data, Error *err) {
    hid_t space = H5Screate_simple(rank, shape, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t n = 1;
    for (int i = 0; i < rank; i++) n *= shape[i];
    /* Chunking needs every chunk dimension >= 1, so an empty array is simply stored contiguous. */
    if (chunk0 > 0 && n > 0) {
        hsize_t chunk[8];
        chunk[0] = chunk0;
        for (int i = 1; i < rank; i++) chunk[i] = shape[i];
        H5Pset_chunk(dcpl, rank, chunk);
        H5Pset_shuffle(dcpl);
        H5Pset_deflate(dcpl, DEFLATE_LEVEL);
    }
    hid_t d = H5Dcreate2(g, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    int rc = (d >= 0 && (n == 0 || H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0)) ? 0 : -1;
    char dd[256] = "", o[256];
    if (rc) h5_detail(dd);
    for (int i = 0; i < rank && rc == 0; i++) {
        hid_t s = H5Dopen2(g, dims[i], H5P_DEFAULT);
        if (s < 0 || H5DSattach_scale(d, s, (unsigned)i) < 0 || H5DSset_label(d, (unsigned)i, dims[i]) < 0) {
            h5_detail(dd);
            rc = -1;
        }
        if (s >= 0) H5Dclose(s);
    }
    if (d >= 0) H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
    if (rc) return error_set(err, "cannot write dataset %s/%s (HDF5: %s)", obj_name(g, o), name, dd);
    return 0;
}

static int write_root_attrs(hid_t f, const RunRecord *r, Error *err) {
    uint64_t seed = r->seed;
    if (ATTR_STR(f, "strategy", r->strategy, err) || ATTR_STR(f, "strategy_spec", r->strategy_spec, err) ||
        ATTR_STR(f, "model", r->model, err) || ATTR_STR(f, "weights_path", r->weights_path, err) ||
        ATTR_STR(f, "weights_sha256", r->weights_sha256, err) || ATTR_STR(f, "prompt_id", r->prompt_id, err) ||
        ATTR_STR(f, "prompt", r->prompt, err) || ATTR_STR(f, "negative_prompt", r->negative_prompt, err) ||
        attr_write(f, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &seed, err) ||
        attr_i32(f, "steps", r->steps, err) || ATTR_STR(f, "solver", r->solver, err) ||
        attr_f32(f, "shift", r->shift, err) || attr_f32(f, "guidance", r->guidance, err) ||
        ATTR_STR(f, "backend", r->backend, err) || ATTR_STR(f, "device", r->device, err) ||
        ATTR_STR(f, "version", r->version, err) || ATTR_STR(f, "start_time", r->start_time, err))
        return -1;
    const char *status = r->failed ? "failed" : "complete";
    if (attr_str(f, "status", status, strlen(status) + 1, err) ||
        attr_i32(f, "failed_step", r->failed ? r->failed_step : -1, err) ||
        ATTR_STR(f, "failure", r->failure, err) || attr_i32(f, "frames", r->frames, err) ||
        attr_i32(f, "height", r->height, err) || attr_i32(f, "width", r->width, err) ||
        ATTR_STR(f, "conditioning", r->conditioning, err) || ATTR_STR(f, "contexts_path", r->contexts_path, err) ||
        ATTR_STR(f, "contexts_sha256", r->contexts_sha256, err) ||
        ATTR_STR(f, "contexts_negative_id", r->contexts_negative_id, err) ||
        ATTR_STR(f, "strategy_source_sha256", r->strategy_source_sha256, err) ||
        ATTR_STR(f, "video_space", r->video_space, err) || ATTR_STR(f, "vae_path", r->vae_path, err) ||
        ATTR_STR(f, "vae_sha256", r->vae_sha256, err) || attr_i32(f, "latent_frames", r->grid[0], err) ||
        attr_i32(f, "latent_height", r->grid[1], err) || attr_i32(f, "latent_width", r->grid[2], err))
        return -1;
    return 0;
}

/* The optional SVG trace in /steps: its own layer and head scales beside step and branch. */
static int write_svg_trace(hid_t g, const RunRecord *r, Error *err) {
    static const char *const d1[] = {"step"};
    static const char *const d3[] = {"step", "branch", "layer"};
    static const char *const d4[] = {"step", "branch", "layer", "head"};
    hsize_t n = (hsize_t)r->steps, s1[1] = {n}, s3[3] = {n, 2, (hsize_t)r->svg_layers},
            s4[4] = {n, 2, (hsize_t)r->svg_layers, (hsize_t)r->svg_heads};
    int rc = write_scale(g, "layer", s3[2], err);
    if (!rc) rc = write_scale(g, "head", s4[3], err);
    if (!rc) rc = write_var(g, "svg_spatial_heads", H5T_STD_I32LE, H5T_NATIVE_INT32, 3, s3, d3, 0, r->svg_spatial_heads, err);
    if (!rc)
        rc = write_var(g, "svg_temporal_heads", H5T_STD_I32LE, H5T_NATIVE_INT32, 3, s3, d3, 0, r->svg_temporal_heads,
                       err);
    if (!rc) rc = write_var(g, "svg_density", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, s4, d4, 0, r->svg_density, err);
    if (!rc) rc = write_var(g, "attn_flops", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, s1, d1, 0, r->attn_flops, err);
    if (!rc)
        rc = write_var(g, "attn_flops_dense", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, s1, d1, 0, r->attn_flops_dense, err);
    return rc;
}

static int write_steps(hid_t f, const RunRecord *r, Error *err) {
    hid_t g = create_group(f, "steps", err);
    if (g < 0) return -1;
    hsize_t n = (hsize_t)r->steps;
    /* The struct is an array of records; HDF5 wants columns, so each field is gathered into scratch. */
    double *col = malloc((n ? n : 1) * 2 * sizeof *col);
    int rc = col ? 0 : error_set(err, "out of memory");
    static const char *const d1[] = {"step"};
    static const char *const d2[] = {"step", "branch"};
    hsize_t s1[1] = {n}, s2[2] = {n, 2};
    if (!rc) rc = write_scale(g, "step", n, err);
    static const char *const branch_names[2] = {"cond", "uncond"};
    if (!rc) rc = write_name_scale(g, "branch", branch_names, 2, err);
    if (!rc) {
        hid_t b = H5Dopen2(g, "branch", H5P_DEFAULT);
        rc = b >= 0 ? attr_str(b, "names", "cond,uncond", 12, err) : error_set(err, "cannot open branch");
        if (b >= 0) H5Dclose(b);
    }
    float *cf = (float *)col;
    uint8_t *cu = (uint8_t *)col;
#define COL1(FIELD, TYPE, BUF, FT, MT)                                                    \
    if (!rc) {                                                                            \
        for (hsize_t i = 0; i < n; i++) ((TYPE *)BUF)[i] = r->step[i].FIELD;              \
        rc = write_var(g, #FIELD, FT, MT, 1, s1, d1, 0, BUF, err);                        \
    }
#define COL2(FIELD, TYPE, BUF, FT, MT)                                                    \
    if (!rc) {                                                                            \
        for (hsize_t i = 0; i < n; i++)                                                   \
            for (int b = 0; b < 2; b++) ((TYPE *)BUF)[2 * i + b] = r->step[i].FIELD[b];   \
        rc = write_var(g, #FIELD, FT, MT, 2, s2, d2, 0, BUF, err);                        \
    }
    COL1(timestep, float, cf, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT)
    COL1(sigma, float, cf, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT)
    COL1(wall_seconds, double, col, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE)
    COL1(cpu_seconds, double, col, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE)
    COL1(flops, double, col, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE)
    COL2(computed, uint8_t, cu, H5T_STD_U8LE, H5T_NATIVE_UINT8)
    COL2(signal, float, cf, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT)
    COL2(accumulator, float, cf, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT)
    COL2(threshold, float, cf, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT)
    COL2(k, float, cf, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT)
    COL2(call_seconds, double, col, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE)
    COL2(layers_run, int32_t, col, H5T_STD_I32LE, H5T_NATIVE_INT32)
    COL2(shared, uint8_t, cu, H5T_STD_U8LE, H5T_NATIVE_UINT8)
    COL1(strategy_bytes, double, col, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE)
#undef COL1
#undef COL2
    if (!rc && r->svg_layers > 0) rc = write_svg_trace(g, r, err);
    free(col);
    H5Gclose(g);
    return rc;
}

static int write_video(hid_t f, const RunRecord *r, Error *err) {
    hid_t g = create_group(f, "video", err);
    if (g < 0) return -1;
    static const char *const dims[] = {"frame", "height", "width", "rgb"};
    hsize_t shape[4] = {(hsize_t)r->frames, (hsize_t)r->height, (hsize_t)r->width, 3};
    int rc = 0;
    for (int i = 0; i < 4 && !rc; i++) rc = write_scale(g, dims[i], shape[i], err);
    if (!rc) {
        hid_t d = H5Dopen2(g, "rgb", H5P_DEFAULT);
        rc = d >= 0 ? attr_str(d, "names", "r,g,b", 6, err) : error_set(err, "cannot open rgb");
        if (d >= 0) H5Dclose(d);
    }
    /* One frame per chunk: compresses well and lets a reader pull single frames. */
    if (!rc) rc = write_var(g, "frames", H5T_STD_U8LE, H5T_NATIVE_UINT8, 4, shape, dims, 1, r->video, err);
    H5Gclose(g);
    return rc;
}

static int write_latents(hid_t f, const RunRecord *r, Error *err) {
    hid_t g = create_group(f, "latents", err);
    if (g < 0) return -1;
    static const char *const dims[] = {"step", "channel", "lframe", "lheight", "lwidth"};
    hsize_t shape[5] = {(hsize_t)r->steps, (hsize_t)r->lc, (hsize_t)r->lf, (hsize_t)r->lh, (hsize_t)r->lw};
    int rc = 0;
    for (int i = 0; i < 5 && !rc; i++) rc = write_scale(g, dims[i], shape[i], err);
    if (!rc) rc = write_var(g, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 5, shape, dims, 1, r->latents, err);
    H5Gclose(g);
    return rc;
}

static int write_totals(hid_t f, const RunRecord *r, Error *err) {
    hid_t g = create_group(f, "totals", err);
    if (g < 0) return -1;
    /* Derived figures are stored too, so a reader without this code gets the headline numbers directly. */
    double hit_rate = r->calls_total > 0 ? (double)r->calls_skipped / r->calls_total : 0.0;
    double speedup = r->flops_spent > 0 ? r->flops_full / r->flops_spent : NAN;
    int64_t rss = r->peak_rss_kb;
    int rc = attr_f64(g, "wall_seconds", r->wall_seconds, err) || attr_f64(g, "model_seconds", r->model_seconds, err) ||
             attr_i32(g, "calls_total", r->calls_total, err) || attr_i32(g, "calls_computed", r->calls_computed, err) ||
             attr_i32(g, "calls_skipped", r->calls_skipped, err) || attr_f64(g, "hit_rate", hit_rate, err) ||
             attr_i32(g, "calls_shared", r->calls_shared, err) ||
             attr_f64(g, "flops_spent", r->flops_spent, err) || attr_f64(g, "flops_full", r->flops_full, err) ||
             attr_f64(g, "speedup_flops", speedup, err) ||
             attr_f64(g, "cpu_seconds", r->cpu_seconds, err) ||
             attr_f64(g, "load_average_start", r->load_average_start, err) ||
             attr_f64(g, "load_average_end", r->load_average_end, err) ||
             attr_f64(g, "strategy_bytes_peak", r->strategy_bytes_peak, err) ||
             attr_write(g, "peak_rss_kb", H5T_STD_I64LE, H5T_NATIVE_INT64, &rss, err)
                 ? -1
                 : 0;
    H5Gclose(g);
    return rc;
}

static int check_metrics(const RunMetrics *m, Error *err) {
    if (m->frames <= 0 || m->frames > MAX_DIM) return error_set(err, "metrics: invalid frame count %d", m->frames);
    if (!m->psnr || !m->ssim) return error_set(err, "metrics: psnr and ssim arrays are required");
    return 0;
}

/* LPIPS may be unavailable (no weights); the dataset is then NAN-filled with lpips_available = 0, so the layout
 * is the same for every record. */
static int write_metrics_group(hid_t f, const RunMetrics *m, Error *err) {
    hid_t g = create_group(f, "metrics", err);
    if (g < 0) return -1;
    int avail = m->lpips_available && m->lpips;
    hsize_t shape[1] = {(hsize_t)m->frames};
    static const char *const dims[] = {"frame"};
    double *nans = NULL;
    const double *lpips = m->lpips;
    int rc = write_scale(g, "frame", shape[0], err);
    if (!rc && !avail) {
        nans = malloc(shape[0] * sizeof *nans);
        if (!nans) rc = error_set(err, "out of memory");
        for (hsize_t i = 0; nans && i < shape[0]; i++) nans[i] = NAN;
        lpips = nans;
    }
    if (!rc) rc = write_var(g, "psnr", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, shape, dims, 0, m->psnr, err);
    if (!rc) rc = write_var(g, "ssim", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, shape, dims, 0, m->ssim, err);
    if (!rc) rc = write_var(g, "lpips", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, shape, dims, 0, lpips, err);
    if (!rc)
        rc = attr_f64(g, "psnr_mean", m->psnr_mean, err) || attr_f64(g, "ssim_mean", m->ssim_mean, err) ||
                     attr_f64(g, "lpips_mean", avail ? m->lpips_mean : NAN, err) ||
                     attr_i32(g, "lpips_available", avail, err) || ATTR_STR(g, "baseline", m->baseline, err)
                 ? -1
                 : 0;
    free(nans);
    H5Gclose(g);
    return rc;
}

static int check_record(const RunRecord *r, Error *err) {
    if (r->steps < 0 || r->steps > MAX_STEPS) return error_set(err, "invalid step count %d", r->steps);
    if (r->steps > 0 && !r->step) return error_set(err, "step records missing");
    if (r->frames < 0 || r->height < 0 || r->width < 0 || r->frames > MAX_DIM || r->height > MAX_DIM ||
        r->width > MAX_DIM)
        return error_set(err, "invalid video size %dx%dx%d", r->frames, r->height, r->width);
    if ((size_t)r->frames * r->height * r->width > 0 && !r->video) return error_set(err, "video missing");
    if (r->latents && (r->lc <= 0 || r->lf <= 0 || r->lh <= 0 || r->lw <= 0))
        return error_set(err, "invalid latent shape %dx%dx%dx%d", r->lc, r->lf, r->lh, r->lw);
    if (r->svg_layers < 0 || r->svg_layers > MAX_DIM ||
        (r->svg_layers > 0 && (r->svg_heads <= 0 || r->svg_heads > MAX_DIM || !r->svg_spatial_heads ||
                               !r->svg_temporal_heads || !r->svg_density || !r->attn_flops || !r->attn_flops_dense)))
        return error_set(err, "invalid SVG trace (%d layers, %d heads)", r->svg_layers, r->svg_heads);
    if (r->metrics.frames > 0) {
        if (check_metrics(&r->metrics, err)) return -1;
        if (r->metrics.frames != r->frames)
            return error_set(err, "metrics have %d frames, the video has %d", r->metrics.frames, r->frames);
    }
    return 0;
}

/* rename() only makes the record atomic with respect to crashes if the data reached the disk first. */
static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* The end of every atomic write: close the HDF5 file written as tmp (a failing close is a failed write: HDF5 flushes
 * there), restore error printing, fsync, rename over path; on any failure remove tmp. rc is the writing's result. */
static int finish_tmp_file(hid_t f, H5Quiet q, const char *tmp, const char *path, int rc, Error *err) {
    if (f >= 0 && H5Fclose(f) < 0 && !rc) {
        char d[256];
        rc = error_set(err, "cannot write %s (HDF5: %s)", tmp, h5_detail(d));
    }
    h5_restore(q);
    if (!rc && fsync_path(tmp) < 0) rc = error_set(err, "cannot sync %s: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, path) < 0) rc = error_set(err, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (rc) {
        unlink(tmp);
        return error_prefix(err, "%s", path);
    }
    return 0;
}


int record_write(const char *path, const RunRecord *r, Error *err) {
    if (check_record(r, err)) return error_prefix(err, "%s", path);
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return error_set(err, "%s: path too long", path);
    /* Create the file ourselves first: HDF5's own failure message is a stack dump, errno gives a clear reason. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return error_set(err, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    close(fd);

    H5Quiet q = h5_quiet();
    hid_t fapl = fapl_strong();
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_link_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    H5Pset_attr_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl);
    int rc = 0;
    if (f < 0) {
        char d[256];
        rc = error_set(err, "cannot create %s (HDF5: %s)", tmp, h5_detail(d));
    }
    H5Pclose(fcpl);
    H5Pclose(fapl);
    if (!rc) rc = write_root_attrs(f, r, err);
    if (!rc) rc = write_steps(f, r, err);
    if (!rc) rc = write_video(f, r, err);
    if (!rc && r->latents) rc = write_latents(f, r, err);
    if (!rc) rc = write_totals(f, r, err);
    if (!rc && r->metrics.frames > 0) rc = write_metrics_group(f, &r->metrics, err);
    return finish_tmp_file(f, q, tmp, path, rc, err);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Reading and validation */

enum { READ_VIDEO = 1, READ_LATENTS = 2, READ_ALL = 3 };

/* obj_name is only for messages ("/", "/totals"). */
static hid_t attr_open(hid_t obj, const char *obj_name, const char *name, Error *err) {
    htri_t e = H5Aexists(obj, name);
    if (e < 0) {
        /* Not "missing": HDF5 could not even read the attribute table, i.e. the metadata is damaged. */
        char d[256];
        error_set(err, "cannot read the attributes of %s (HDF5: %s)", obj_name, h5_detail(d));
        return H5I_INVALID_HID;
    }
    if (e == 0) {
        error_set(err, "missing attribute %s%s%s", obj_name, strcmp(obj_name, "/") ? "/" : "", name);
        return H5I_INVALID_HID;
    }
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) error_set(err, "cannot open attribute %s:%s", obj_name, name);
    return a;
}

static int attr_is_single(hid_t a) {
    hid_t s = H5Aget_space(a);
    hssize_t n = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
    if (s >= 0) H5Sclose(s);
    return n == 1;
}

/* Reads a numeric scalar attribute, converting to mtype (HDF5 converts between integer and float types). */
static int attr_read_num(hid_t obj, const char *obj_name, const char *name, hid_t mtype, void *out, Error *err) {
    hid_t a = attr_open(obj, obj_name, name, err);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    int rc = 0;
    if ((c != H5T_INTEGER && c != H5T_FLOAT) || !attr_is_single(a))
        rc = error_set(err, "attribute %s %s is not a number", obj_name, name);
    else if (H5Aread(a, mtype, out) < 0)
        rc = error_set(err, "cannot read attribute %s %s", obj_name, name);
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return rc;
}

static int attr_read_int(hid_t obj, const char *obj_name, const char *name, int *out, Error *err) {
    return attr_read_num(obj, obj_name, name, H5T_NATIVE_INT, out, err);
}
static int attr_read_double(hid_t obj, const char *obj_name, const char *name, double *out, Error *err) {
    return attr_read_num(obj, obj_name, name, H5T_NATIVE_DOUBLE, out, err);
}

/* Accepts variable-length (what we write) and fixed-length strings (what other tools may write). A value longer
 * than the struct field is an error rather than a silent truncation. */
static int attr_read_str(hid_t obj, const char *obj_name, const char *name, char *out, size_t cap, Error *err) {
    hid_t a = attr_open(obj, obj_name, name, err);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    hid_t mt = H5I_INVALID_HID;
    int rc = 0;
    if (t < 0 || H5Tget_class(t) != H5T_STRING || !attr_is_single(a)) {
        rc = error_set(err, "attribute %s %s is not a string", obj_name, name);
    } else if (H5Tis_variable_str(t) > 0) {
        mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        char *s = NULL;
        if (H5Aread(a, mt, &s) < 0) {
            rc = error_set(err, "cannot read attribute %s %s", obj_name, name);
        } else {
            const char *v = s ? s : "";
            if (strlen(v) >= cap) rc = error_set(err, "attribute %s %s too long (%zu bytes)", obj_name, name, strlen(v));
            else memcpy(out, v, strlen(v) + 1);
            if (s) H5free_memory(s);
        }
    } else {
        size_t n = H5Tget_size(t);
        char *s = malloc(n + 1);
        mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, n + 1);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        H5Tset_cset(mt, H5Tget_cset(t));
        if (!s) {
            rc = error_set(err, "out of memory");
        } else if (H5Aread(a, mt, s) < 0) {
            rc = error_set(err, "cannot read attribute %s %s", obj_name, name);
        } else {
            s[n] = '\0';
            if (strlen(s) >= cap) rc = error_set(err, "attribute %s %s too long (%zu bytes)", obj_name, name, strlen(s));
            else memcpy(out, s, strlen(s) + 1);
        }
        free(s);
    }
    if (mt >= 0) H5Tclose(mt);
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return rc;
}
#define ATTR_READ_STR(obj, obj_name, name, field, err) attr_read_str(obj, obj_name, name, field, sizeof(field), err)

/* A string attribute added after the first records were written: absent reads as "". */
static int attr_read_str_optional(hid_t obj, const char *obj_name, const char *name, char *out, size_t cap,
                                  Error *err) {
    out[0] = '\0';
    if (H5Aexists(obj, name) == 0) return 0;
    return attr_read_str(obj, obj_name, name, out, cap, err);
}
#define ATTR_READ_STR_OPTIONAL(obj, obj_name, name, field, err)                                                     \
    attr_read_str_optional(obj, obj_name, name, field, sizeof(field), err)

/* An integer attribute added after the first records were written: absent reads as 0. */
static int attr_read_int_optional(hid_t obj, const char *obj_name, const char *name, int *out, Error *err) {
    *out = 0;
    if (H5Aexists(obj, name) == 0) return 0;
    return attr_read_int(obj, obj_name, name, out, err);
}

/* Opens group /name; *g stays invalid and 0 is returned when it is absent and optional. */
static int group_open(hid_t f, const char *name, int required, hid_t *g, Error *err) {
    *g = H5I_INVALID_HID;
    htri_t e = H5Lexists(f, name, H5P_DEFAULT);
    if (e < 0) {
        char d[256];
        return error_set(err, "cannot read the root group (HDF5: %s)", h5_detail(d));
    }
    if (e == 0) return required ? error_set(err, "missing group /%s", name) : 0;
    *g = H5Gopen2(f, name, H5P_DEFAULT);
    if (*g < 0) {
        char d[256];
        return error_set(err, "cannot open /%s as a group (HDF5: %s)", name, h5_detail(d));
    }
    return 0;
}

static void fmt_shape(char *buf, size_t cap, int rank, const hsize_t *dims) {
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < rank && o < cap; i++) o += snprintf(buf + o, cap - o, "[%llu]", (unsigned long long)dims[i]);
    if (rank == 0) snprintf(buf, cap, "scalar");
}

/* Opens dataset gname/name and checks it is numeric with the given rank; returns its shape in dims. */
static hid_t var_open(hid_t g, const char *gname, const char *name, int rank, hsize_t *dims, Error *err) {
    htri_t e = H5Lexists(g, name, H5P_DEFAULT);
    if (e < 0) {
        char d[256];
        error_set(err, "cannot read group /%s (HDF5: %s)", gname, h5_detail(d));
        return H5I_INVALID_HID;
    }
    if (e == 0) {
        error_set(err, "missing dataset /%s/%s", gname, name);
        return H5I_INVALID_HID;
    }
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) {
        char dd[256];
        error_set(err, "cannot open /%s/%s as a dataset (HDF5: %s)", gname, name, h5_detail(dd));
        return H5I_INVALID_HID;
    }
    hid_t t = H5Dget_type(d);
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    if (t >= 0) H5Tclose(t);
    hid_t s = H5Dget_space(d);
    int r = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    hsize_t got[H5S_MAX_RANK];
    if (r >= 0 && r <= H5S_MAX_RANK && s >= 0) H5Sget_simple_extent_dims(s, got, NULL);
    if (s >= 0) H5Sclose(s);
    if (c != H5T_INTEGER && c != H5T_FLOAT) {
        error_set(err, "dataset /%s/%s is not numeric", gname, name);
    } else if (r != rank) {
        error_set(err, "dataset /%s/%s has %d dimensions, expected %d", gname, name, r, rank);
    } else {
        memcpy(dims, got, (size_t)rank * sizeof *dims);
        return d;
    }
    H5Dclose(d);
    return H5I_INVALID_HID;
}

/* Reads gname/name, which must have exactly shape want, into buf (converted to mtype). buf NULL: check only. */
static int var_read(hid_t g, const char *gname, const char *name, hid_t mtype, int rank, const hsize_t *want,
                    void *buf, Error *err) {
    hsize_t dims[H5S_MAX_RANK];
    hid_t d = var_open(g, gname, name, rank, dims, err);
    if (d < 0) return -1;
    int rc = 0;
    hsize_t n = 1;
    for (int i = 0; i < rank; i++) n *= want[i];
    if (memcmp(dims, want, (size_t)rank * sizeof *dims) != 0) {
        char a[128], b[128];
        fmt_shape(a, sizeof a, rank, dims);
        fmt_shape(b, sizeof b, rank, want);
        rc = error_set(err, "dataset /%s/%s has shape %s, expected %s", gname, name, a, b);
    } else if (buf && n > 0 && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        char dd[256];
        rc = error_set(err, "cannot read dataset /%s/%s (HDF5: %s)", gname, name, h5_detail(dd));
    }
    H5Dclose(d);
    return rc;
}

static int read_root_attrs(hid_t f, RunRecord *r, Error *err) {
    char status[32];
    if (ATTR_READ_STR(f, "/", "strategy", r->strategy, err) ||
        ATTR_READ_STR(f, "/", "strategy_spec", r->strategy_spec, err) ||
        ATTR_READ_STR(f, "/", "model", r->model, err) || ATTR_READ_STR(f, "/", "weights_path", r->weights_path, err) ||
        ATTR_READ_STR(f, "/", "weights_sha256", r->weights_sha256, err) ||
        ATTR_READ_STR(f, "/", "prompt_id", r->prompt_id, err) || ATTR_READ_STR(f, "/", "prompt", r->prompt, err) ||
        ATTR_READ_STR(f, "/", "negative_prompt", r->negative_prompt, err) ||
        attr_read_num(f, "/", "seed", H5T_NATIVE_UINT64, &r->seed, err) ||
        attr_read_int(f, "/", "steps", &r->steps, err) || ATTR_READ_STR(f, "/", "solver", r->solver, err) ||
        attr_read_num(f, "/", "shift", H5T_NATIVE_FLOAT, &r->shift, err) ||
        attr_read_num(f, "/", "guidance", H5T_NATIVE_FLOAT, &r->guidance, err) ||
        ATTR_READ_STR(f, "/", "backend", r->backend, err) || ATTR_READ_STR(f, "/", "device", r->device, err) ||
        ATTR_READ_STR(f, "/", "version", r->version, err) ||
        ATTR_READ_STR(f, "/", "start_time", r->start_time, err) || ATTR_READ_STR(f, "/", "status", status, err) ||
        attr_read_int(f, "/", "failed_step", &r->failed_step, err) ||
        ATTR_READ_STR(f, "/", "failure", r->failure, err) || attr_read_int(f, "/", "frames", &r->frames, err) ||
        attr_read_int(f, "/", "height", &r->height, err) || attr_read_int(f, "/", "width", &r->width, err) ||
        ATTR_READ_STR_OPTIONAL(f, "/", "conditioning", r->conditioning, err) ||
        ATTR_READ_STR_OPTIONAL(f, "/", "contexts_path", r->contexts_path, err) ||
        ATTR_READ_STR_OPTIONAL(f, "/", "contexts_sha256", r->contexts_sha256, err) ||
        ATTR_READ_STR_OPTIONAL(f, "/", "contexts_negative_id", r->contexts_negative_id, err) ||
        ATTR_READ_STR_OPTIONAL(f, "/", "strategy_source_sha256", r->strategy_source_sha256, err) ||
        ATTR_READ_STR_OPTIONAL(f, "/", "video_space", r->video_space, err) ||
        attr_read_int_optional(f, "/", "latent_frames", &r->grid[0], err) ||
        attr_read_int_optional(f, "/", "latent_height", &r->grid[1], err) ||
        attr_read_int_optional(f, "/", "latent_width", &r->grid[2], err) ||
        ATTR_READ_STR_OPTIONAL(f, "/", "vae_path", r->vae_path, err) ||
        ATTR_READ_STR_OPTIONAL(f, "/", "vae_sha256", r->vae_sha256, err))
        return -1;
    if (strcmp(status, "complete") == 0) r->failed = 0;
    else if (strcmp(status, "failed") == 0) r->failed = 1;
    else return error_set(err, "attribute status is '%s', expected 'complete' or 'failed'", status);
    if (r->steps < 0 || r->steps > MAX_STEPS) return error_set(err, "attribute steps = %d is out of range", r->steps);
    if (r->frames < 0 || r->frames > MAX_DIM || r->height < 0 || r->height > MAX_DIM || r->width < 0 ||
        r->width > MAX_DIM)
        return error_set(err, "attributes frames/height/width = %d/%d/%d are out of range", r->frames, r->height,
                         r->width);
    for (int i = 0; i < 3; i++)
        if (r->grid[i] < 0 || r->grid[i] > MAX_DIM)
            return error_set(err, "attributes latent_frames/height/width = %d/%d/%d are out of range", r->grid[0],
                             r->grid[1], r->grid[2]);
    return 0;
}

/* The optional SVG trace: present when /steps/svg_spatial_heads is; its layer and head counts come from the
 * shapes of svg_density, and every other dataset must agree with them. */
static int read_svg_trace(hid_t g, RunRecord *r, Error *err) {
    htri_t e = H5Lexists(g, "svg_spatial_heads", H5P_DEFAULT);
    if (e <= 0) return 0;
    hsize_t dims[4];
    hid_t d = var_open(g, "steps", "svg_density", 4, dims, err);
    if (d < 0) return -1;
    H5Dclose(d);
    if (dims[0] != (hsize_t)r->steps || dims[1] != 2 || dims[2] == 0 || dims[2] > MAX_DIM || dims[3] == 0 ||
        dims[3] > MAX_DIM)
        return error_set(err, "dataset /steps/svg_density has an invalid shape");
    const int steps = r->steps;
    if (record_alloc_svg(r, steps, (int)dims[2], (int)dims[3], err)) return -1;
    hsize_t s1[1] = {(hsize_t)steps}, s3[3] = {(hsize_t)steps, 2, dims[2]};
    return var_read(g, "steps", "svg_spatial_heads", H5T_NATIVE_INT32, 3, s3, r->svg_spatial_heads, err) ||
                   var_read(g, "steps", "svg_temporal_heads", H5T_NATIVE_INT32, 3, s3, r->svg_temporal_heads, err) ||
                   var_read(g, "steps", "svg_density", H5T_NATIVE_FLOAT, 4, dims, r->svg_density, err) ||
                   var_read(g, "steps", "attn_flops", H5T_NATIVE_DOUBLE, 1, s1, r->attn_flops, err) ||
                   var_read(g, "steps", "attn_flops_dense", H5T_NATIVE_DOUBLE, 1, s1, r->attn_flops_dense, err)
               ? -1
               : 0;
}

static int read_steps(hid_t f, RunRecord *r, Error *err) {
    hid_t g;
    if (group_open(f, "steps", 1, &g, err)) return -1;
    hsize_t n = (hsize_t)r->steps;
    hsize_t s1[1] = {n}, s2[2] = {n, 2};
    r->step = calloc(n ? n : 1, sizeof *r->step);
    double *col = malloc((n ? n : 1) * 2 * sizeof *col);
    int rc = (r->step && col) ? 0 : error_set(err, "out of memory");
    float *cf = (float *)col;
    uint8_t *cu = (uint8_t *)col;
#define COL1(FIELD, TYPE, BUF, MT)                                                               \
    if (!rc && !(rc = var_read(g, "steps", #FIELD, MT, 1, s1, BUF, err)))                        \
        for (hsize_t i = 0; i < n; i++) r->step[i].FIELD = ((TYPE *)BUF)[i];
#define COL2(FIELD, TYPE, BUF, MT)                                                               \
    if (!rc && !(rc = var_read(g, "steps", #FIELD, MT, 2, s2, BUF, err)))                        \
        for (hsize_t i = 0; i < n; i++)                                                          \
            for (int b = 0; b < 2; b++) r->step[i].FIELD[b] = ((TYPE *)BUF)[2 * i + b];
    COL1(timestep, float, cf, H5T_NATIVE_FLOAT)
    COL1(sigma, float, cf, H5T_NATIVE_FLOAT)
    COL1(wall_seconds, double, col, H5T_NATIVE_DOUBLE)
    if (!rc && H5Lexists(g, "cpu_seconds", H5P_DEFAULT) > 0) {
        COL1(cpu_seconds, double, col, H5T_NATIVE_DOUBLE)
    } else {
        for (hsize_t i = 0; i < n && r->step; i++) r->step[i].cpu_seconds = NAN; /* written before it existed */
    }
    COL1(flops, double, col, H5T_NATIVE_DOUBLE)
    COL2(computed, uint8_t, cu, H5T_NATIVE_UINT8)
    COL2(signal, float, cf, H5T_NATIVE_FLOAT)
    COL2(accumulator, float, cf, H5T_NATIVE_FLOAT)
    COL2(threshold, float, cf, H5T_NATIVE_FLOAT)
    COL2(k, float, cf, H5T_NATIVE_FLOAT)
    COL2(call_seconds, double, col, H5T_NATIVE_DOUBLE)
    /* Interface v2 columns: records written before they existed read as -1 and NAN. */
    if (!rc && H5Lexists(g, "layers_run", H5P_DEFAULT) > 0) {
        COL2(layers_run, int32_t, col, H5T_NATIVE_INT32)
    } else {
        for (hsize_t i = 0; i < n && r->step; i++) r->step[i].layers_run[0] = r->step[i].layers_run[1] = -1;
    }
    if (!rc && H5Lexists(g, "shared", H5P_DEFAULT) > 0) {
        COL2(shared, uint8_t, cu, H5T_NATIVE_UINT8)
    } /* else 0 from the zeroed allocation: older records ran alone */
    if (!rc && H5Lexists(g, "strategy_bytes", H5P_DEFAULT) > 0) {
        COL1(strategy_bytes, double, col, H5T_NATIVE_DOUBLE)
    } else {
        for (hsize_t i = 0; i < n && r->step; i++) r->step[i].strategy_bytes = NAN;
    }
#undef COL1
#undef COL2
    if (!rc) rc = read_svg_trace(g, r, err);
    free(col);
    H5Gclose(g);
    return rc;
}

static int read_video(hid_t f, RunRecord *r, int flags, Error *err) {
    hid_t g;
    if (group_open(f, "video", 1, &g, err)) return -1;
    hsize_t shape[4] = {(hsize_t)r->frames, (hsize_t)r->height, (hsize_t)r->width, 3};
    size_t n = (size_t)shape[0] * shape[1] * shape[2] * 3;
    /* The shape is checked before allocating: the size comes from attributes, and when those are corrupt the
     * message must say that the dataset does not match them, not that gigabytes could not be allocated. */
    int rc = var_read(g, "video", "frames", H5T_NATIVE_UINT8, 4, shape, NULL, err);
    if (!rc && (flags & READ_VIDEO)) {
        r->video = malloc(n ? n : 1);
        if (!r->video) rc = error_set(err, "out of memory (video of %zu bytes)", n);
        if (!rc) rc = var_read(g, "video", "frames", H5T_NATIVE_UINT8, 4, shape, r->video, err);
    }
    H5Gclose(g);
    return rc;
}

static int read_latents(hid_t f, RunRecord *r, int flags, Error *err) {
    hid_t g;
    if (group_open(f, "latents", 0, &g, err)) return -1;
    if (g < 0) return 0;
    hsize_t dims[5];
    int rc = 0;
    hid_t d = var_open(g, "latents", "latents", 5, dims, err);
    if (d < 0) rc = -1;
    else H5Dclose(d);
    if (!rc && dims[0] != (hsize_t)r->steps)
        rc = error_set(err, "dataset /latents/latents has %llu steps, expected %d", (unsigned long long)dims[0],
                       r->steps);
    for (int i = 1; i < 5 && !rc; i++)
        if (dims[i] == 0 || dims[i] > MAX_DIM) rc = error_set(err, "dataset /latents/latents has an invalid shape");
    if (!rc) {
        r->lc = (int)dims[1], r->lf = (int)dims[2], r->lh = (int)dims[3], r->lw = (int)dims[4];
        if (flags & READ_LATENTS) {
            /* Each factor is bounded, but the product can still overflow or be absurd; check before malloc. */
            size_t n = (size_t)dims[0];
            for (int i = 1; i < 5 && n; i++) {
                if (n > SIZE_MAX / sizeof(float) / dims[i]) {
                    rc = error_set(err, "dataset /latents/latents is too large");
                    break;
                }
                n *= dims[i];
            }
            if (!rc) {
                /* Allocated even for zero steps, so latents != NULL always means "recorded". */
                r->latents = malloc(n ? n * sizeof(float) : sizeof(float));
                if (!r->latents) rc = error_set(err, "out of memory (latents of %zu floats)", n);
            }
            if (!rc) rc = var_read(g, "latents", "latents", H5T_NATIVE_FLOAT, 5, dims, r->latents, err);
        }
    }
    H5Gclose(g);
    return rc;
}

static int read_totals(hid_t f, RunRecord *r, Error *err) {
    hid_t g;
    if (group_open(f, "totals", 1, &g, err)) return -1;
    int64_t rss = 0;
    int rc = attr_read_double(g, "/totals", "wall_seconds", &r->wall_seconds, err) ||
             attr_read_double(g, "/totals", "model_seconds", &r->model_seconds, err) ||
             attr_read_int(g, "/totals", "calls_total", &r->calls_total, err) ||
             attr_read_int(g, "/totals", "calls_computed", &r->calls_computed, err) ||
             attr_read_int(g, "/totals", "calls_skipped", &r->calls_skipped, err) ||
             attr_read_double(g, "/totals", "flops_spent", &r->flops_spent, err) ||
             attr_read_double(g, "/totals", "flops_full", &r->flops_full, err) ||
             attr_read_num(g, "/totals", "peak_rss_kb", H5T_NATIVE_INT64, &rss, err)
                 ? -1
                 : 0;
    r->peak_rss_kb = (long)rss;
    /* Optional: records written before they existed read as NAN. */
    static const char *const optional[4] = {"cpu_seconds", "load_average_start", "load_average_end",
                                            "strategy_bytes_peak"};
    double *fields[4] = {&r->cpu_seconds, &r->load_average_start, &r->load_average_end, &r->strategy_bytes_peak};
    for (int i = 0; i < 4; i++) {
        *fields[i] = NAN;
        if (!rc && H5Aexists(g, optional[i]) > 0) rc = attr_read_double(g, "/totals", optional[i], fields[i], err);
    }
    if (!rc) rc = attr_read_int_optional(g, "/totals", "calls_shared", &r->calls_shared, err);
    H5Gclose(g);
    return rc;
}

/* Reads /metrics into m (zeroed first); m->frames stays 0 when the group is absent. frames: the record's frame
 * count, which the metrics must match. */
static int read_metrics(hid_t f, int frames, RunMetrics *m, Error *err) {
    memset(m, 0, sizeof *m);
    hid_t g;
    if (group_open(f, "metrics", 0, &g, err)) return -1;
    if (g < 0) return 0;
    hsize_t dims[1];
    int rc = 0;
    hid_t d = var_open(g, "metrics", "psnr", 1, dims, err);
    if (d < 0) rc = -1;
    else H5Dclose(d);
    if (!rc && dims[0] != (hsize_t)frames)
        rc = error_set(err, "dataset /metrics/psnr has %llu frames, the video has %d", (unsigned long long)dims[0],
                       frames);
    if (!rc && frames == 0) rc = error_set(err, "group /metrics is present but the video has no frames");
    if (!rc) {
        m->frames = frames;
        m->psnr = malloc((size_t)frames * sizeof(double));
        m->ssim = malloc((size_t)frames * sizeof(double));
        m->lpips = malloc((size_t)frames * sizeof(double));
        if (!m->psnr || !m->ssim || !m->lpips) rc = error_set(err, "out of memory");
    }
    if (!rc)
        rc = var_read(g, "metrics", "psnr", H5T_NATIVE_DOUBLE, 1, dims, m->psnr, err) ||
                     var_read(g, "metrics", "ssim", H5T_NATIVE_DOUBLE, 1, dims, m->ssim, err) ||
                     var_read(g, "metrics", "lpips", H5T_NATIVE_DOUBLE, 1, dims, m->lpips, err) ||
                     attr_read_double(g, "/metrics", "psnr_mean", &m->psnr_mean, err) ||
                     attr_read_double(g, "/metrics", "ssim_mean", &m->ssim_mean, err) ||
                     attr_read_double(g, "/metrics", "lpips_mean", &m->lpips_mean, err) ||
                     attr_read_int(g, "/metrics", "lpips_available", &m->lpips_available, err) ||
                     ATTR_READ_STR(g, "/metrics", "baseline", m->baseline, err)
                 ? -1
                 : 0;
    /* In memory, unavailable LPIPS is a NULL array (record.h); on disk it is NAN-filled. */
    if (!rc && !m->lpips_available) {
        free(m->lpips);
        m->lpips = NULL;
        m->lpips_mean = NAN;
    }
    H5Gclose(g);
    if (rc) run_metrics_free(m);
    return rc;
}

/* Opens path read-only (or read-write) with messages for the usual failure modes. Returns the file id or -1. */
static hid_t open_h5(const char *path, unsigned flags, Error *err) {
    struct stat st;
    if (stat(path, &st) < 0) {
        error_set(err, "cannot open: %s", strerror(errno));
        return H5I_INVALID_HID;
    }
    if (!S_ISREG(st.st_mode)) {
        error_set(err, "not a regular file");
        return H5I_INVALID_HID;
    }
    if (H5Fis_hdf5(path) <= 0) {
        error_set(err, "not an HDF5 file");
        return H5I_INVALID_HID;
    }
    hid_t fapl = fapl_strong();
    hid_t f = H5Fopen(path, flags, fapl);
    if (f < 0) {
        /* Before any other HDF5 call: the next one clears the error stack. */
        char d[256];
        error_set(err, "corrupt or truncated HDF5 file (HDF5: %s)", h5_detail(d));
    }
    H5Pclose(fapl);
    return f;
}

static int read_record_here(const char *path, RunRecord *r, int flags, Error *err) {
    memset(r, 0, sizeof *r);
    H5Quiet q = h5_quiet();
    hid_t f = open_h5(path, H5F_ACC_RDONLY, err);
    int rc = f < 0 ? -1 : 0;
    if (!rc) rc = read_root_attrs(f, r, err);
    if (!rc) rc = read_steps(f, r, err);
    if (!rc) rc = read_video(f, r, flags, err);
    if (!rc) rc = read_latents(f, r, flags, err);
    if (!rc) rc = read_totals(f, r, err);
    if (!rc) rc = read_metrics(f, r->frames, &r->metrics, err);
    if (f >= 0) H5Fclose(f);
    h5_restore(q);
    if (rc) {
        record_free(r);
        return error_prefix(err, "%s", path);
    }
    return 0;
}

/* HDF5 1.10 trusts some fields of a corrupt file and can crash or loop forever inside the library. Both were found
 * by fuzz/fuzz_record.c in the global heap that holds variable-length strings (our string attributes): H5HG_read
 * copies an object with an index and size it never checks (a memcpy of (size_t)-1 bytes: SIGSEGV), and the heap
 * collection's parser never advances past an object of size 0. h5dump crashes and hangs on the same files. Nothing
 * we can check before handing the file to HDF5 reaches those fields, so the read is first done in a child process
 * with a time limit (60 s plus 1 s per 8 MiB, far above what a real record needs): when HDF5 crashes or runs out of
 * time there the file is reported corrupt, otherwise the same read runs here (same code, same bytes, same result).
 * The child leaves with _exit: no atexit handlers, so HDF5's shutdown never flushes files the parent has open.
 * CACHEBENCH_HDF5_TIME_LIMIT=N sets the limit to N seconds. Set CACHEBENCH_HDF5_IN_PROCESS=1 to read in this
 * process only (debuggers; the fuzz target, which screens its inputs itself). When no child can be made (out of
 * processes or memory) the read happens here, as it would without this. */
static int read_in_child(const char *path, int flags, Error *err) {
    const char *in_process = getenv("CACHEBENCH_HDF5_IN_PROCESS");
    if (in_process && strcmp(in_process, "1") == 0) return 0;
    struct stat st;
    unsigned limit = 60 + (stat(path, &st) == 0 ? (unsigned)(st.st_size >> 23) : 0);
    const char *limit_text = getenv("CACHEBENCH_HDF5_TIME_LIMIT"); /* seconds; the tests use a short one */
    if (limit_text && atoi(limit_text) > 0) limit = (unsigned)atoi(limit_text);
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        signal(SIGALRM, SIG_DFL); /* a handler the caller installed must not stop the limit from killing */
        alarm(limit);
        RunRecord r;
        Error e;
        int rc = read_record_here(path, &r, flags, &e);
        if (rc == 0) record_free(&r);
        _exit(rc == 0 ? 0 : 3);
    }
    int status;
    pid_t got;
    while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
    }
    if (got < 0 || (WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 3))) return 0;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        return error_set(err, "%s: corrupt HDF5 file: the HDF5 library did not finish reading it in %u s", path, limit);
    if (WIFSIGNALED(status))
        return error_set(err, "%s: corrupt HDF5 file: the HDF5 library crashed reading it (%s)", path,
                         strsignal(WTERMSIG(status)));
    return error_set(err, "%s: corrupt HDF5 file: the process reading it aborted (exit status %d)", path,
                     WEXITSTATUS(status));
}

static int read_record(const char *path, RunRecord *r, int flags, Error *err) {
    memset(r, 0, sizeof *r);
    if (read_in_child(path, flags, err)) return -1;
    return read_record_here(path, r, flags, err);
}

int record_read(const char *path, RunRecord *r, Error *err) { return read_record(path, r, READ_ALL, err); }

int record_read_header(const char *path, RunRecord *r, Error *err) { return read_record(path, r, 0, err); }


void record_free(RunRecord *r) {
    free(r->step);
    free(r->video);
    free(r->latents);
    run_metrics_free(&r->metrics);
    free(r->svg_spatial_heads);
    free(r->svg_temporal_heads);
    free(r->svg_density);
    free(r->attn_flops);
    free(r->attn_flops_dense);
    memset(r, 0, sizeof *r);
}

int record_alloc_svg(RunRecord *r, int steps, int layers, int heads, Error *err) {
    if (steps < 0 || steps > MAX_STEPS || layers <= 0 || layers > MAX_DIM || heads <= 0 || heads > MAX_DIM)
        return error_set(err, "invalid SVG trace size: %d steps, %d layers, %d heads", steps, layers, heads);
    const size_t s = steps ? (size_t)steps : 1, per_step = 2 * (size_t)layers;
    r->svg_spatial_heads = calloc(s * per_step, sizeof *r->svg_spatial_heads);
    r->svg_temporal_heads = calloc(s * per_step, sizeof *r->svg_temporal_heads);
    r->svg_density = malloc(s * per_step * heads * sizeof *r->svg_density);
    r->attn_flops = calloc(s, sizeof *r->attn_flops);
    r->attn_flops_dense = calloc(s, sizeof *r->attn_flops_dense);
    if (!r->svg_spatial_heads || !r->svg_temporal_heads || !r->svg_density || !r->attn_flops || !r->attn_flops_dense) {
        free(r->svg_spatial_heads), free(r->svg_temporal_heads), free(r->svg_density);
        free(r->attn_flops), free(r->attn_flops_dense);
        r->svg_spatial_heads = r->svg_temporal_heads = NULL, r->svg_density = NULL;
        r->attn_flops = r->attn_flops_dense = NULL;
        return error_set(err, "out of memory for the SVG trace");
    }
    for (size_t i = 0; i < s * per_step * heads; i++) r->svg_density[i] = NAN;
    r->svg_layers = layers, r->svg_heads = heads;
    return 0;
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Metrics */

static int copy_file(const char *src, const char *dst, Error *err) {
    FILE *in = fopen(src, "rb");
    if (!in) return error_set(err, "cannot open: %s", strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) {
        int e = errno;
        fclose(in);
        return error_set(err, "cannot create %s: %s", dst, strerror(e));
    }
    char buf[1 << 16];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) {
            rc = error_set(err, "cannot write %s: %s", dst, strerror(errno));
            break;
        }
    if (!rc && ferror(in)) rc = error_set(err, "cannot read: %s", strerror(errno));
    fclose(in);
    if (fclose(out) != 0 && !rc) rc = error_set(err, "cannot write %s: %s", dst, strerror(errno));
    return rc;
}

int record_write_metrics(const char *path, const RunMetrics *m, Error *err) {
    if (check_metrics(m, err)) return error_prefix(err, "%s", path);
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return error_set(err, "%s: path too long", path);

    /* Validate the original first (read-only), so a foreign file is reported as such, not half-modified. */
    RunRecord r;
    if (read_record(path, &r, 0, err)) return -1;
    int frames = r.frames;
    record_free(&r);
    if (m->frames != frames)
        return error_set(err, "%s: metrics have %d frames, the record has %d", path, m->frames, frames);

    if (copy_file(path, tmp, err)) {
        unlink(tmp);
        return error_prefix(err, "%s", path);
    }
    H5Quiet q = h5_quiet();
    hid_t f = open_h5(tmp, H5F_ACC_RDWR, err);
    int rc = f < 0 ? -1 : 0;
    /* The old group goes entirely: its own "frame" scale goes with it, so nothing refers to deleted objects. */
    if (!rc && H5Lexists(f, "metrics", H5P_DEFAULT) > 0 && H5Ldelete(f, "metrics", H5P_DEFAULT) < 0)
        rc = error_set(err, "cannot delete the old /metrics");
    if (!rc) rc = write_metrics_group(f, m, err);
    return finish_tmp_file(f, q, tmp, path, rc, err);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Summary */

static const char *fmt_num(char *buf, size_t cap, double v, const char *fmt) {
    if (isinf(v)) snprintf(buf, cap, "%sinf", v < 0 ? "-" : "");
    else if (isnan(v)) snprintf(buf, cap, "nan");
    else snprintf(buf, cap, fmt, v);
    return buf;
}

/* One character per step: C computed, R reused, '-' not run (after the step where a failed run stopped).
 * Wrapped at 100 steps per line so long schedules stay readable. */
static void print_decisions(FILE *out, const RunRecord *r, int b) {
    fprintf(out, "  %-8s ", b == 0 ? "cond" : "uncond");
    for (int i = 0; i < r->steps; i++) {
        if (i > 0 && i % 100 == 0) fprintf(out, "\n  %-8s ", "");
        char c = r->step[i].computed[b] ? 'C' : 'R';
        if (r->failed && r->failed_step >= 0 && i > r->failed_step) c = '-';
        fputc(c, out);
    }
    fputc('\n', out);
}

int record_print_info(const char *path, FILE *out, Error *err) {
    RunRecord r;
    if (read_record(path, &r, 0, err)) return -1;
    char a[32], b[32], c[32];
    fprintf(out, "%s\n", path);
    fprintf(out, "  run        %s / %s / seed %llu, started %s\n", r.strategy, r.prompt_id,
            (unsigned long long)r.seed, r.start_time);
    fprintf(out, "  strategy   %s\n", r.strategy_spec);
    fprintf(out, "  model      %s (weights %s, sha256 %s)\n", r.model, r.weights_path[0] ? r.weights_path : "-",
            r.weights_sha256[0] ? r.weights_sha256 : "-");
    fprintf(out, "  prompt     \"%s\"\n", r.prompt);
    if (r.negative_prompt[0]) fprintf(out, "  negative   \"%s\"\n", r.negative_prompt);
    if (strcmp(r.conditioning, "contexts") == 0)
        fprintf(out, "  text       contexts from %s (sha256 %s), negative key %s\n", r.contexts_path,
                r.contexts_sha256, r.contexts_negative_id);
    else if (r.conditioning[0])
        fprintf(out, "  text       %s%s\n", r.conditioning,
                strcmp(r.conditioning, "random-stand-in") == 0 ? " (seeded random contexts: timing only)" : "");
    if (r.vae_path[0])
        fprintf(out, "  video      decoded by the VAE %s (sha256 %s)\n", r.vae_path, r.vae_sha256);
    else if (strcmp(r.video_space, "latent") == 0)
        fprintf(out, "  video      latent space (no VAE: metrics compare latents, not pixels)\n");
    fprintf(out, "  seed       %llu\n", (unsigned long long)r.seed);
    fprintf(out, "  sampling   %d steps, solver %s, shift %g, guidance %g\n", r.steps, r.solver, r.shift, r.guidance);
    fprintf(out, "  backend    %s on %s, cachebench %s\n", r.backend, r.device, r.version);
    fprintf(out, "  video      %d frames of %dx%d\n", r.frames, r.width, r.height);
    if (r.lc > 0)
        fprintf(out, "  latents    [%d][%d][%d][%d][%d] per step\n", r.steps, r.lc, r.lf, r.lh, r.lw);
    else
        fprintf(out, "  latents    not recorded\n");
    if (r.failed)
        fprintf(out, "  status     failed at step %d: %s\n", r.failed_step, r.failure[0] ? r.failure : "(no reason)");
    else
        fprintf(out, "  status     complete\n");
    double hit = r.calls_total > 0 ? 100.0 * r.calls_skipped / r.calls_total : 0.0;
    double speedup = r.flops_spent > 0 ? r.flops_full / r.flops_spent : NAN;
    fprintf(out, "  totals     wall %.3f s (model %.3f s), peak RSS %ld kB\n", r.wall_seconds, r.model_seconds,
            r.peak_rss_kb);
    if (!isnan(r.cpu_seconds) && !isnan(r.load_average_start)) {
        char c[32];
        fprintf(out, "  machine    CPU %s s, load average %.2f before, %.2f after\n",
                fmt_num(c, sizeof c, r.cpu_seconds, "%.3f"), r.load_average_start, r.load_average_end);
    }
    fprintf(out, "  calls      %d of %d computed, %d reused, hit rate %.1f%%, FLOP speed-up %sx\n", r.calls_computed,
            r.calls_total, r.calls_skipped, hit, fmt_num(a, sizeof a, speedup, "%.2f"));
    /* Interface v2 accounting, when the record has it: the layers the calls ran and the strategy's memory. */
    long layers = 0, calls = 0;
    for (int i = 0; i < r.steps; i++)
        for (int b = 0; b < 2; b++)
            if (r.step[i].layers_run[b] >= 0) layers += r.step[i].layers_run[b], calls++;
    if (calls > 0)
        fprintf(out, "  layers     %.2f block layers per model call on average (%ld calls)\n", (double)layers / calls,
                calls);
    if (!isnan(r.strategy_bytes_peak))
        fprintf(out, "  memory     the strategy held at most %.3f MiB (after any step)\n",
                r.strategy_bytes_peak / (1024.0 * 1024.0));
    if (r.calls_shared > 0)
        fprintf(out, "  shared     %d calls computed together with other settings of its sweep (times as if alone)\n",
                r.calls_shared);
    fprintf(out, "  decisions  (C computed, R reused%s)\n", r.failed ? ", - not run" : "");
    print_decisions(out, &r, 0);
    print_decisions(out, &r, 1);
    if (r.svg_layers > 0) {
        double spent = 0.0, dense = 0.0;
        long spatial = 0, temporal = 0;
        for (int i = 0; i < r.steps; i++) spent += r.attn_flops[i], dense += r.attn_flops_dense[i];
        for (size_t i = 0; i < (size_t)r.steps * 2 * r.svg_layers; i++)
            spatial += r.svg_spatial_heads[i], temporal += r.svg_temporal_heads[i];
        fprintf(out, "  attention  %s of the dense self-attention FLOPs in computed calls; sparse heads: %ld spatial, "
                     "%ld temporal (over steps, branches, layers)\n",
                fmt_num(a, sizeof a, dense > 0 ? spent / dense : NAN, "%.3f"), spatial, temporal);
    }
    const RunMetrics *m = &r.metrics;
    if (m->frames > 0) {
        fprintf(out, "  metrics    vs %s over %d frames: PSNR %s dB, SSIM %s, LPIPS %s\n", m->baseline, m->frames,
                fmt_num(a, sizeof a, m->psnr_mean, "%.2f"), fmt_num(b, sizeof b, m->ssim_mean, "%.4f"),
                m->lpips_available ? fmt_num(c, sizeof c, m->lpips_mean, "%.4f") : "unavailable");
    } else {
        fprintf(out, "  metrics    none\n");
    }
    record_free(&r);
    return 0;
}
