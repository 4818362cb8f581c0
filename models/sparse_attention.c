/* Sparse VideoGen attention on the CPU: the band, the layout permutation, the row-sampling profiler and the
 * block-sparse kernel. Definitions and formulas: models/sparse_attention.h.
 *
 * The kernel follows models/kernels.c attention(): one OpenMP task per (head, query tile), OpenBLAS GEMMs for QKᵀ
 * and PV (single-threaded inside our parallel region), one softmax over each query row's computed keys. What
 * differs is which keys a row sees: the key blocks svg_tile_keys gives its tile (band and sink), never the full row. */
#include "models/sparse_attention.h"
#include "models/fast_math.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

FAST_SOFTMAX_ROW(softmax_row_unnormalised_base_e, fast_expf)

/* Row copies go parallel only from this many floats (an OpenMP fork costs more than a small copy). */
enum { PAR_MIN_FLOATS = 1 << 16 };

/* ---------------------------------------------------------------------------------------------- */
/* the mask */

int svg_band_for_sparsity(int L, int P, double sparsity, int block) {
    if (!(sparsity > 0.0)) return L; /* 0 (and NaN): dense */
    double w;
    if (block > 0 && P > 0) {
        /* utils.py, operation for operation (context_length 0): sparsity_to_width turns the kept fraction into a
         * width in frames, width_frame = L·(1 - sqrt(1 - kept·L²/L²)) / P; the mask rounds width_frame·P up to a
         * multiple of 128 (round_to_multiple). */
        const double kept = 1.0 - (sparsity < 1.0 ? sparsity : 1.0), total = (double)L * (double)L;
        const double width_frame = (double)L * (1.0 - sqrt(1.0 - (kept * total - 0.0) / total)) / P;
        w = ceil(width_frame * P / block) * block;
    } else {
        if (sparsity >= 1.0) return 0;
        /* The 1e-9 keeps an exact product (L = 512, s = 0.25: 256) from rounding up by one ulp. */
        w = ceil((double)L * (1.0 - sqrt(sparsity)) - 1e-9);
    }
    return w <= 0.0 ? 0 : w >= L ? L : (int)w;
}

unsigned long long svg_call_seed(unsigned long long row_seed, int step, int branch, int layer) {
    const unsigned long long call = ((unsigned long long)(unsigned)step << 32) ^
                                    ((unsigned long long)(unsigned)branch << 24) ^ (unsigned long long)(unsigned)layer;
    return svg_mix64(row_seed + svg_mix64(call + 1));
}

int svg_tile(int L) { return L < SVG_TILE ? (L > 0 ? L : 1) : SVG_TILE; }

double svg_mask_density(const SvgShape *g, AttnPattern p) {
    const int P = g->tokens_per_frame, L = g->frames * P, w = g->band;
    if (p == ATTN_DENSE || w >= L - 1) return 1.0;
    /* Rows in pattern order (the mask is the same there for both patterns): the band's keys [a, b] plus the sink
     * positions [0, P) outside it. */
    long long kept = 0;
    for (int i = 0; i < L; i++) {
        const int a = svg_grid_max(0, i - w), b = svg_grid_min(L - 1, i + w);
        const int sink_in_band = a <= P - 1 ? svg_grid_min(P - 1, b) - a + 1 : 0;
        kept += (b - a + 1) + (P - sink_in_band);
    }
    return (double)kept / ((double)L * L);
}

/* Keys computed for a query tile: band tiles plus sink ranges. */
static int tile_keys_count(const SvgTileKeys *tk) {
    int n = tk->band_hi - tk->band_lo;
    for (int s = 0; s < tk->nsink; s++) n += tk->sink_hi[s] - tk->sink_lo[s];
    return n;
}

double svg_pattern_flops(const SvgShape *g, AttnPattern p, int head_dim) {
    const int L = g->frames * g->tokens_per_frame, T = svg_tile(L);
    double pairs = 0.0;
    for (int q0 = 0; q0 < L; q0 += T) {
        const int q1 = svg_grid_min(L, q0 + T);
        SvgTileKeys tk;
        svg_tile_keys(g, p, q0, q1, &tk);
        pairs += (double)(q1 - q0) * tile_keys_count(&tk);
    }
    return 4.0 * head_dim * pairs;
}

long long svg_blocks_computed(const SvgShape *g, AttnPattern p) {
    const int L = g->frames * g->tokens_per_frame, QB = g->block > 0 ? g->block : svg_tile(L), KB = svg_key_block(g);
    long long blocks = 0;
    for (int q0 = 0; q0 < L; q0 += QB) {
        SvgTileKeys tk;
        svg_tile_keys(g, p, q0, svg_grid_min(L, q0 + QB), &tk);
        blocks += svg_grid_ceil_div(tk.band_hi - tk.band_lo, KB);
        for (int s = 0; s < tk.nsink; s++) blocks += svg_grid_ceil_div(tk.sink_hi[s] - tk.sink_lo[s], KB);
    }
    return blocks;
}

void svg_permute_rows(float *dst, const float *src, const SvgShape *g, int ld, int col, int width, int inverse) {
    const int F = g->frames, P = g->tokens_per_frame;
#pragma omp parallel for schedule(static) if ((long)F * P * width >= PAR_MIN_FLOATS)
    for (int f = 0; f < F; f++)
        for (int p = 0; p < P; p++) {
            const size_t i = (size_t)f * P + p, t = (size_t)p * F + f; /* frame-major i, token-major t = pos(i) */
            memcpy(dst + (inverse ? i : t) * ld + col, src + (inverse ? t : i) * ld + col, (size_t)width * sizeof(float));
        }
}

AttnPattern svg_pattern_for_mse(const double mse[2]) { return mse[1] < mse[0] ? ATTN_TEMPORAL : ATTN_SPATIAL; }

int svg_plan_is_sparse(const AttentionPlan *plan) {
    if (!plan || !plan->pattern) return 0;
    for (int h = 0; h < plan->num_heads; h++)
        if (plan->pattern[h] != ATTN_DENSE) return 1;
    return 0;
}

/* Per thread: a score block of T rows × L keys plus one row (room for the profiler's two blocks of T/2 rows, or
 * of one row when T = 1), then the gathered queries, the output block and the row sums (the profiler's queries,
 * two outputs and row sums). */
size_t svg_thread_floats(int L, int head_dim) {
    const size_t T = (size_t)svg_tile(L);
    return (T + 1) * (size_t)L + 3 * T * (size_t)head_dim + T;
}

/* ---------------------------------------------------------------------------------------------- */
/* profiling */

static int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); } /* b > 0 */

/* Calls fn(lo, hi, user) for the ranges of keys [lo, hi) (frame-major) whose positions in pattern p's order lie in
 * [a, b): one range for spatial heads, one per frame for temporal ones (position q·F + f is key f·P + q). */
typedef void (*RangeFn)(int lo, int hi, void *user);
static void position_ranges(const SvgShape *g, AttnPattern p, int a, int b, RangeFn fn, void *user) {
    if (a >= b) return;
    if (p != ATTN_TEMPORAL) {
        fn(a, b, user);
        return;
    }
    const int F = g->frames, P = g->tokens_per_frame;
    for (int f = 0; f < F; f++) {
        const int lo = svg_grid_max(0, -floor_div(-(a - f), F)), hi = svg_grid_min(P, -floor_div(-(b - f), F));
        if (lo < hi) fn(f * P + lo, f * P + hi, user);
    }
}

/* The keys query i attends under pattern p's profiling mask (svg_profile_mask): the sink positions [0, P), then the
 * blocks of SVG_PROFILE_BLOCK positions less than floor(2P / SVG_PROFILE_BLOCK) blocks from the query's (the two may
 * overlap; every use below is idempotent). */
static void profile_ranges(const SvgShape *g, AttnPattern p, int i, RangeFn fn, void *user) {
    const int P = g->tokens_per_frame, L = g->frames * P, B = SVG_PROFILE_BLOCK, nb = 2 * P / B;
    position_ranges(g, p, 0, P, fn, user);
    if (nb > 0) {
        const int qb = svg_pos(g, p, i) / B;
        position_ranges(g, p, svg_grid_max(0, (qb - nb + 1) * B), svg_grid_min(L, (qb + nb) * B), fn, user);
    }
}

typedef struct {
    float *dst;
    const float *src;
} CopyRange;

static void copy_range(int lo, int hi, void *user) {
    CopyRange *c = user;
    memcpy(c->dst + lo, c->src + lo, (size_t)(hi - lo) * sizeof(float));
}

/* Recomputes the scores of query row qi (head columns) for the attended keys only, -inf elsewhere: the fallback
 * when every attended key underflowed against the row's overall maximum. */
typedef struct {
    float *dst;
    const float *qi, *k;
    int ld, hd;
    float scale;
} ScoreRange;

static void score_range(int lo, int hi, void *user) {
    ScoreRange *c = user;
    for (int j = lo; j < hi; j++) {
        const float *kj = c->k + (size_t)j * c->ld;
        float dot = 0.0f;
        for (int d = 0; d < c->hd; d++) dot += c->qi[d] * kj[d];
        c->dst[j] = c->scale * dot;
    }
}

static float row_sum(const float *x, int n) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) sum += x[j];
    return sum;
}

/* Exact and masked outputs share one exponentiation per row: E = exp(s - max s) over all keys; a mask keeps the
 * entries of E it attends (a copy of ranges) and divides by their sum. Every mask attends the row's own key and
 * the first frame, so its sum underflows only when its best score is ~87 below the row's best; that row is then
 * recomputed from its attended keys alone. */
void svg_profile_head(const float *q, const float *k, const float *v, const SvgShape *g, int heads, int head_dim,
                      int head, int rows, unsigned long long seed, float *scratch, double mse[2]) {
    const int L = g->frames * g->tokens_per_frame, ld = heads * head_dim, col = head * head_dim, hd = head_dim;
    const int T = svg_tile(L), c = T / 2 > 0 ? T / 2 : 1;
    mse[0] = mse[1] = 0.0;
    if (rows > L) rows = L;
    if (rows < 1) return;
    const int limit = svg_profile_limit(L);
    float *E = scratch, *Pr = E + (size_t)c * L;
    float *Q = scratch + (size_t)(T + 1) * L, *O0 = Q + (size_t)c * hd, *O1 = O0 + (size_t)c * hd;
    float *z = O1 + (size_t)c * hd; /* c row sums: inside the thread's last T floats */
    const float scale = 1.0f / sqrtf((float)hd);
    double sse[2] = {0.0, 0.0};
    for (int r0 = 0; r0 < rows; r0 += c) {
        const int n = svg_grid_min(c, rows - r0);
        int idx[SVG_TILE];
        for (int a = 0; a < n; a++) {
            idx[a] = svg_profile_row(seed, r0 + a, limit);
            memcpy(Q + (size_t)a * hd, q + (size_t)idx[a] * ld + col, (size_t)hd * sizeof(float));
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, L, hd, scale, Q, hd, k + col, ld, 0.0f, E, L);
        for (int a = 0; a < n; a++) z[a] = softmax_row_unnormalised_base_e(E + (size_t)a * L, L);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, L, 1.0f, E, L, v + col, ld, 0.0f, O0, hd);
        for (int a = 0; a < n; a++)
            for (int d = 0; d < hd; d++) O0[a * hd + d] /= z[a];
        for (int m = 0; m < 2; m++) {
            const AttnPattern p = m == 0 ? ATTN_SPATIAL : ATTN_TEMPORAL;
            for (int a = 0; a < n; a++) {
                float *pr = Pr + (size_t)a * L;
                memset(pr, 0, (size_t)L * sizeof(float));
                CopyRange cr = {.dst = pr, .src = E + (size_t)a * L};
                profile_ranges(g, p, idx[a], copy_range, &cr);
                z[a] = row_sum(pr, L);
                if (!(z[a] > 1e-30f)) {
                    for (int j = 0; j < L; j++) pr[j] = -INFINITY;
                    ScoreRange sr = {.dst = pr, .qi = Q + (size_t)a * hd, .k = k + col, .ld = ld, .hd = hd, .scale = scale};
                    profile_ranges(g, p, idx[a], score_range, &sr);
                    z[a] = softmax_row_unnormalised_base_e(pr, L);
                }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, L, 1.0f, Pr, L, v + col, ld, 0.0f, O1, hd);
            for (int a = 0; a < n; a++)
                for (int d = 0; d < hd; d++) {
                    const double diff = (double)O1[a * hd + d] / z[a] - O0[a * hd + d];
                    sse[m] += diff * diff;
                }
        }
    }
    mse[0] = sse[0] / ((double)rows * hd);
    mse[1] = sse[1] / ((double)rows * hd);
}

/* ---------------------------------------------------------------------------------------------- */
/* the block-sparse kernel */

typedef struct {
    const float *q, *k, *v, *k_perm, *v_perm;
    float *out;
    SvgShape g;
    int ld, hd;
} SvgArgs;

/* Query tile [q0, q0 + rows) (pattern order) of head h under pattern p. S: rows × (computed keys) scores; Qb, Ob:
 * rows × hd; rowsum: rows. */
static void tile_attention(const SvgArgs *A, int h, AttnPattern p, int q0, int rows, float *S, float *Qb, float *Ob,
                           float *rowsum) {
    const SvgShape *g = &A->g;
    const int P = g->tokens_per_frame, L = g->frames * P, w = g->band;
    const int ld = A->ld, hd = A->hd, col = h * hd, temporal = p == ATTN_TEMPORAL;
    SvgTileKeys tk;
    svg_tile_keys(g, p, q0, q0 + rows, &tk);
    /* Key ranges in pattern order: the band tiles, then the sink ranges. */
    int lo[3] = {tk.band_lo}, hi[3] = {tk.band_hi}, nr = 1 + tk.nsink, n = 0;
    for (int s = 0; s < tk.nsink; s++) lo[1 + s] = tk.sink_lo[s], hi[1 + s] = tk.sink_hi[s];
    for (int r = 0; r < nr; r++) n += hi[r] - lo[r];

    /* Queries in place for frame-major patterns; gathered into token-major order for temporal heads. */
    const float *Q = A->q + (size_t)q0 * ld + col;
    int ldq = ld;
    if (temporal) {
        for (int a = 0; a < rows; a++)
            memcpy(Qb + (size_t)a * hd, A->q + (size_t)svg_token(g, p, q0 + a) * ld + col, (size_t)hd * sizeof(float));
        Q = Qb, ldq = hd;
    }
    const float *K = (temporal ? A->k_perm : A->k) + col, *V = (temporal ? A->v_perm : A->v) + col;
    const float scale = 1.0f / sqrtf((float)hd);

    for (int r = 0, off = 0; r < nr; off += hi[r] - lo[r], r++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, hi[r] - lo[r], hd, scale, Q, ldq,
                    K + (size_t)lo[r] * ld, ld, 0.0f, S + off, n);

    /* The mask, exactly: a computed key outside the row's band stays only when it is a sink position (< P). In the
     * band tiles only their edges can hold such keys; the sink ranges lie outside every band of the tile. */
    if (p != ATTN_DENSE && w < L - 1) {
        for (int a = 0; a < rows; a++) {
            float *s = S + (size_t)a * n - tk.band_lo; /* s[j] for band position j */
            const int i = q0 + a;
            const int left_end = svg_grid_min(i - w, tk.band_hi), right_start = svg_grid_max(i + w + 1, tk.band_lo);
            for (int j = svg_grid_max(tk.band_lo, P); j < left_end; j++) s[j] = -INFINITY;
            for (int j = svg_grid_max(right_start, P); j < tk.band_hi; j++) s[j] = -INFINITY;
            for (int r = 1, off = hi[0] - lo[0]; r < nr; off += hi[r] - lo[r], r++)
                for (int j = svg_grid_max(lo[r], P); j < hi[r]; j++) S[(size_t)a * n + off + j - lo[r]] = -INFINITY;
        }
    }
    for (int a = 0; a < rows; a++) rowsum[a] = softmax_row_unnormalised_base_e(S + (size_t)a * n, n);

    for (int r = 0, off = 0; r < nr; off += hi[r] - lo[r], r++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, hi[r] - lo[r], 1.0f, S + off, n,
                    V + (size_t)lo[r] * ld, ld, r ? 1.0f : 0.0f, Ob, hd);

    for (int a = 0; a < rows; a++) {
        const float inv = 1.0f / rowsum[a];
        float *o = A->out + (size_t)svg_token(g, p, q0 + a) * ld + col;
        const float *ob = Ob + (size_t)a * hd;
#pragma omp simd
        for (int d = 0; d < hd; d++) o[d] = ob[d] * inv;
    }
}

int svg_attention(float *out, const float *q, const float *k, const float *v, int heads, int head_dim,
                  AttentionPlan *plan, float *k_perm, float *v_perm, float *scratch, size_t scratch_floats) {
    const long Ll = (long)plan->frames * plan->tokens_per_frame;
    const int ok = plan->frames > 0 && plan->tokens_per_frame > 0 && Ll <= INT_MAX / 2 && heads > 0 &&
                   head_dim > 0 && plan->num_heads == heads && plan->pattern && out && q && k && v && k_perm &&
                   v_perm && scratch;
    const int L = ok ? (int)Ll : 0;
    const size_t per_thread = ok ? svg_thread_floats(L, head_dim) : 1;
    int nt = omp_get_max_threads();
    if ((size_t)nt * per_thread > scratch_floats) nt = (int)(scratch_floats / per_thread);
    if (!ok || nt < 1) {
        /* The caller runs dense attention instead; the plan says so. */
        if (plan->pattern)
            for (int h = 0; h < plan->num_heads; h++) plan->pattern[h] = ATTN_DENSE;
        return -1;
    }
    const int hd = head_dim, ld = heads * hd, T = svg_tile(L), ntiles = (L + T - 1) / T;
    SvgArgs A = {.q = q, .k = k, .v = v, .k_perm = k_perm, .v_perm = v_perm, .out = out, .ld = ld, .hd = hd};
    A.g.frames = plan->frames, A.g.tokens_per_frame = plan->tokens_per_frame, A.g.block = plan->block;
    A.g.band = plan->band_tokens > 0 ? svg_grid_min(plan->band_tokens, L)
                                     : svg_band_for_sparsity(L, plan->tokens_per_frame, plan->sparsity, plan->block);
    plan->band_tokens = A.g.band;
    plan->sink_tokens = plan->tokens_per_frame;
    double flops = 0.0;

    /* 1. Classify the heads that are to run sparse. */
    if (plan->profile_rows > 0) {
        const int rows = svg_grid_min(plan->profile_rows, L);
        int nprof = 0;
        for (int h = 0; h < heads; h++) nprof += plan->pattern[h] != ATTN_DENSE;
#pragma omp parallel for num_threads(svg_grid_max(1, svg_grid_min(nt, nprof))) schedule(dynamic, 1)
        for (int h = 0; h < heads; h++) {
            if (plan->pattern[h] == ATTN_DENSE) continue;
            double mse[2];
            svg_profile_head(q, k, v, &A.g, heads, hd, h, rows, plan->profile_seed,
                             scratch + (size_t)omp_get_thread_num() * per_thread, mse);
            plan->pattern[h] = svg_pattern_for_mse(mse);
        }
        flops += nprof * 8.0 * hd * rows * (double)L;
    }

    /* 2. Temporal heads: K and V into token-major order, so that their pattern is a band too. */
    for (int h = 0; h < heads; h++) {
        if (plan->pattern[h] != ATTN_TEMPORAL) continue;
        svg_permute_rows(k_perm, k, &A.g, ld, h * hd, hd, 0);
        svg_permute_rows(v_perm, v, &A.g, ld, h * hd, hd, 0);
    }

    /* 3. The tiles. */
    const int ntasks = heads * ntiles;
#pragma omp parallel num_threads(svg_grid_min(nt, ntasks))
    {
        float *S = scratch + (size_t)omp_get_thread_num() * per_thread;
        float *Qb = S + (size_t)(T + 1) * L, *Ob = Qb + (size_t)T * hd, *rowsum = Ob + (size_t)T * hd;
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < ntasks; t++) {
            const int h = t / ntiles, q0 = (t % ntiles) * T;
            tile_attention(&A, h, plan->pattern[h], q0, svg_grid_min(T, L - q0), S, Qb, Ob, rowsum);
        }
    }

    for (int h = 0; h < heads; h++) {
        flops += svg_pattern_flops(&A.g, plan->pattern[h], hd);
        if (plan->density) plan->density[h] = (float)svg_mask_density(&A.g, plan->pattern[h]);
    }
    plan->flops_dense = 4.0 * (double)L * L * ld;
    plan->flops_done = flops;
    return 0;
}
