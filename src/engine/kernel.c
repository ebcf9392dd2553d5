/* kernel.c -- drivers: the per-sample self-variance pass, the pair recursion, the MLP tile
 * path (one GEMM, then elementwise layers over tiles), threads and progress. */
#include "internal.h"

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MLP_TILE 128
#define SLACK 64

void nk_kernel_opts_default(nk_kernel_opts *o)
{
    memset(o, 0, sizeof *o);
    o->get = NK_GET_BOTH;
}

/* Per-thread buffers; hot loops never allocate. */
typedef struct {
    double *K, *T, *K2, *T2, *tmp, *work;
    double *save;          /* res stack: 2 * res_depth states */
    double *plane;         /* the plane engine's buffers */
} workspace;

static void ws_free(workspace *w)
{
    free(w->K); free(w->T); free(w->K2); free(w->T2); free(w->tmp); free(w->work); free(w->save); free(w->plane);
    memset(w, 0, sizeof *w);
}

static int ws_alloc(workspace *w, const nk_plan *p)
{
    size_t n = p->mlp ? (size_t)MLP_TILE * MLP_TILE : p->state_max;
    size_t side = p->mlp ? MLP_TILE : (size_t)p->in_hw[0] * p->in_hw[1];
    memset(w, 0, sizeof *w);
    w->K = malloc(n * sizeof(double));
    w->T = malloc(n * sizeof(double));
    w->K2 = malloc(n * sizeof(double));
    w->T2 = malloc(n * sizeof(double));
    w->tmp = malloc(n * sizeof(double));
    /* activations: 3 per column; fused conv: two input and two output blocks */
    w->work = malloc((3 * side + 4 * (size_t)p->in_hw[1] * p->in_hw[1]) * sizeof(double));
    w->save = malloc((2 * (size_t)p->res_depth + 1) * n * sizeof(double));
    w->plane = p->pe ? nk_calloc64(nk_plane_work(&p->pg), sizeof(double)) : NULL;
    if (!w->K || !w->T || !w->K2 || !w->T2 || !w->tmp || !w->work || !w->save || (p->pe && !w->plane)) {
        ws_free(w);
        return -1;
    }
    return 0;
}

static size_t state_size(nk_mode m, const int hw[2], size_t block)
{
    return nk_mode_size(m, hw) * block;
}

/* Keep only what the next op reads: full -> diagonal. */
static void restrict_state(double *X, nk_mode from, nk_mode to, const int hw[2])
{
    if (from == NK_MODE_FULL && to == NK_MODE_DIAG) {
        for (int i = 0; i < hw[0]; i++)
            for (int a = 0; a < hw[1]; a++) X[(size_t)i * hw[1] + a] = X[nk_full_index(i, a, i, a, hw[0], hw[1])];
    }
}

static void extract_diag(const double *K, nk_mode m, const int hw[2], double *out)
{
    for (int i = 0; i < hw[0]; i++)
        for (int a = 0; a < hw[1]; a++) {
            size_t p = (size_t)i * hw[1] + a;
            out[p] = m == NK_MODE_FULL ? K[nk_full_index(i, a, i, a, hw[0], hw[1])] : K[m == NK_MODE_DIAG ? p : 0];
        }
}

/* Run the program on a state already holding K0 (and T0 = 0).  `block` is the number of
 * independent pairs held side by side (an MLP tile of nr x nc; 1 for spatial networks).
 * Self-variances of the rows are sa[row * sa_step + op->self_off], of the columns likewise.
 * With self_out non-NULL this is the self pass of one sample: it writes each activation's
 * input variances there first (sa, sb must then point at self_out). */
static void run_ops(const nk_plan *p, workspace *w, int start, int want_ntk, int nr, int nc,
                    const double *sa, size_t sa_step, const double *sb, size_t sb_step, double *self_out)
{
    size_t block = (size_t)nr * nc;
    double *T = want_ntk ? w->T : NULL;
    for (int i = start; i < p->nops; i++) {
        const nk_op *op = &p->ops[i];
        size_t n_in = state_size(op->mode, op->in_hw, block);
        nk_mode natural = op->mode;
        switch (op->kind) {
        case OP_AFFINE:
            if (op->f[0] == 1 && op->f[1] == 1 && op->s[0] == 1 && op->s[1] == 1) {
                /* dense (or 1x1 conv): the window mean is the identity; an activation on a tile
                 * of pairs right after it takes the affine map along (not in a self pass, which
                 * records the variances in between) */
                const nk_op *nx = i + 1 < p->nops ? &p->ops[i + 1] : NULL;
                if (!self_out && nx && nx->kind == OP_ACT && op->mode == NK_MODE_SCALAR && nx->mode == NK_MODE_SCALAR &&
                    nx->out_mode == NK_MODE_SCALAR) {
                    const double aff[4] = {op->w2, op->b2, op->alpha, op->beta};
                    nk_affine_act_grid(nx, p->quad_order, aff, w->K, T, nr, nc, sa + nx->self_off, sa_step,
                                       sb + nx->self_off, sb_step, 1, w->work);
                    i++;
                    break;
                }
                nk_affine_update(w->K, T, n_in, op->w2, op->b2, op->alpha, op->beta);
                break;
            }
            if (op->mode == NK_MODE_FULL && op->s[0] == 1 && op->s[1] == 1 && op->pad != PAD_CIRCULAR) {
                /* fuse the following ReLU too, once its self-variances are known (pair passes) */
                const nk_op *nx = i + 1 < p->nops ? &p->ops[i + 1] : NULL;
                int relu = !self_out && nx && nx->kind == OP_ACT && nx->act.kind == NK_ACT_RELU && nx->mode == NK_MODE_FULL;
                nk_conv_full_fused(op, w->K, T, w->K2, T ? w->T2 : NULL, relu, relu ? sa + nx->self_off : NULL,
                                   relu ? sb + nx->self_off : NULL, w->work);
                { double *x = w->K; w->K = w->K2; w->K2 = x; }
                if (T) { double *x = w->T; w->T = w->T2; w->T2 = x; T = w->T; }
                if (relu) op = &p->ops[++i];
                break;
            }
            if (op->mode == NK_MODE_FULL) {
                nk_window_full(op, 0, w->K, w->K2, w->tmp);
                if (T) nk_window_full(op, 0, T, w->T2, w->tmp);
            } else {
                nk_window_diag(op, w->K, w->K2, w->tmp);
                if (T) nk_window_diag(op, T, w->T2, w->tmp);
            }
            nk_affine_update(w->K2, T ? w->T2 : NULL, state_size(op->mode, op->out_hw, 1), op->w2, op->b2,
                             op->alpha, op->beta);
            { double *x = w->K; w->K = w->K2; w->K2 = x; }
            if (T) { double *x = w->T; w->T = w->T2; w->T2 = x; T = w->T; }
            break;
        case OP_POOL:
            nk_window_full(op, 1, w->K, w->K2, w->tmp);
            if (T) nk_window_full(op, 1, T, w->T2, w->tmp);
            { double *x = w->K; w->K = w->K2; w->K2 = x; }
            if (T) { double *x = w->T; w->T = w->T2; w->T2 = x; T = w->T; }
            natural = NK_MODE_FULL;
            break;
        case OP_GAP:
        case OP_FLATTEN: {
            /* flatten reads the diagonal state, gap the full one: both are plain means */
            double k = 0, t = 0;
            for (size_t j = 0; j < n_in; j++) { k += w->K[j]; if (T) t += T[j]; }
            w->K[0] = k / (double)n_in;
            if (T) T[0] = t / (double)n_in;
            natural = NK_MODE_SCALAR;
            break;
        }
        case OP_ACT:
        {
            size_t P = (size_t)op->in_hw[0] * op->in_hw[1];
            if (self_out) {
                extract_diag(w->K, op->mode, op->in_hw, self_out + op->self_off);
                nk_self_roots(self_out + op->self_off, P);
            }
            if (op->mode == NK_MODE_FULL)
                nk_act_full(op, p->quad_order, w->K, T, op->in_hw[0], op->in_hw[1], sa + op->self_off, sb + op->self_off, w->work);
            else if (op->mode == NK_MODE_DIAG)
                nk_act_pointwise(op, p->quad_order, w->K, T, n_in, sa + op->self_off, sb + op->self_off);
            else
                nk_act_grid(op, p->quad_order, w->K, T, nr, nc, sa + op->self_off, sa_step,
                            sb + op->self_off, sb_step, 1, w->work);
            break;
        }
        case OP_RES_BEGIN: {
            size_t n = p->mlp ? (size_t)MLP_TILE * MLP_TILE : p->state_max;
            double *sk = w->save + 2 * (size_t)op->slot * n;
            memcpy(sk, w->K, n_in * sizeof(double));
            if (T) memcpy(sk + n, T, n_in * sizeof(double));
            break;
        }
        case OP_RES_END: {
            /* x + f(x): the saved input state, restricted to what is read next, plus the body's */
            size_t n = p->mlp ? (size_t)MLP_TILE * MLP_TILE : p->state_max;
            double *sk = w->save + 2 * (size_t)op->slot * n;
            nk_mode saved = op->saved_mode;
            restrict_state(sk, saved, op->mode, op->in_hw);
            if (T) restrict_state(sk + n, saved, op->mode, op->in_hw);
            for (size_t k = 0; k < n_in; k++) w->K[k] += sk[k];
            if (T) for (size_t k = 0; k < n_in; k++) T[k] += sk[n + k];
            break;
        }
        }
        if (natural != op->out_mode) {
            restrict_state(w->K, natural, op->out_mode, op->out_hw);
            if (T) restrict_state(T, natural, op->out_mode, op->out_hw);
        }
    }
}

/* K0[p,p'] = <x_p, x'_p'> / C in the input mode; T0 = 0. */
static void input_state(const nk_plan *p, const double *x1, const double *x2, workspace *w, int want_ntk)
{
    int P = p->in_hw[0] * p->in_hw[1], C = p->in_c;
    size_t n = nk_mode_size(p->in_mode, p->in_hw);
    if (p->in_mode == NK_MODE_FULL) {
        /* one GEMM in position order, then to the block-major layout */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, P, P, C, 1.0 / C, x1, C, x2, C, 0.0, w->tmp, P);
        const int h = p->in_hw[0], wd = p->in_hw[1];
        for (int i = 0; i < h; i++)
            for (int a = 0; a < wd; a++)
                for (int i2 = 0; i2 < h; i2++)
                    memcpy(w->K + nk_full_index(i, a, i2, 0, h, wd), w->tmp + ((size_t)i * wd + a) * P + (size_t)i2 * wd,
                           sizeof(double) * wd);
    } else if (p->in_mode == NK_MODE_DIAG) {
        /* P independent dot products of C channels (few): a plain loop beats P BLAS calls */
        for (int i = 0; i < P; i++) {
            double acc = 0;
            for (int c = 0; c < C; c++) acc += x1[(size_t)i * C + c] * x2[(size_t)i * C + c];
            w->K[i] = acc / C;
        }
    } else {
        w->K[0] = cblas_ddot(P * C, x1, 1, x2, 1) / C;
    }
    if (want_ntk) memset(w->T, 0, n * sizeof(double));
}

/* ---------------------------------------------------------------- driver -- */

typedef struct {
    const nk_plan *p;
    const double *x1, *x2;       /* x2 == x1 for the symmetric Gram */
    void *xe1, *xe2;             /* plane engine: the samples in its layout and precision */
    void *se1, *se2;             /* plane engine: self states in its layout and precision */
    size_t xe_len, se_len;       /* elements per sample of xe, se */
    int f32;
    size_t n1, n2, sample_len;
    int sym, want_ntk;
    double *self1, *self2;
    double *nngp, *ntk;          /* n1 x n2 */
    const double *gram;          /* MLP symmetric Gram: X X^T, for the self pass */
    workspace *ws;
    size_t cols_per_unit, units_per_row;
    atomic_size_t done;
    atomic_int cancel;
    nk_progress_fn progress;
    void *progress_ctx;
    size_t total;
} job;

/* Sample i of a per-sample array of the plane engine (len elements each, in its precision). */
static void *plane_at(const job *j, const void *base, size_t len, size_t i)
{
    return (char *)base + i * len * (j->f32 ? sizeof(float) : sizeof(double));
}

/* The state after the stack's global pooling from the engine's sums of K and T over all
 * entries; returns the index of the op after the pooling. */
static int pooled_state(const nk_plan *p, workspace *w, const double *sums)
{
    const double n = (double)nk_mode_size(NK_MODE_FULL, p->in_hw);
    w->K[0] = sums[0] / n;
    w->T[0] = sums[1] / n;
    return p->pe + 1;
}

/* The plan's leading stack through the plane engine; leaves the state the next op reads in
 * w->K (and w->T) and returns that op's index. */
static int plane_run(const job *j, workspace *w, const void *xa, const void *xb, const void *sa, const void *sb,
                     void *self_out, int want_ntk)
{
    const nk_plan *p = j->p;
    /* a self pass needs the planes off the diagonal only if an activation after the stack
     * reads the sample's full self state */
    int all = 1;
    if (self_out && p->pg.gap) {
        all = 0;
        for (int i = p->pe; i < p->nops; i++) all |= p->ops[i].kind == OP_ACT;
    }
    if (p->pg.gap) {
        double sums[2];
        nk_plane_pair(&p->pg, j->f32, all, xa, xb, sa, sb, self_out, w->plane, sums, NULL, NULL);
        return pooled_state(p, w, sums);
    }
    nk_plane_pair(&p->pg, j->f32, all, xa, xb, sa, sb, self_out, w->plane, NULL, w->K, want_ntk ? w->T : NULL);
    return p->pe;
}

static void self_unit(void *ctx, size_t i, int thread)
{
    job *j = ctx;
    const nk_plan *p = j->p;
    workspace *w = &j->ws[thread];
    const double *x;
    double *s;
    if (i < j->n1) { x = j->x1 + i * j->sample_len; s = j->self1 + i * p->self_len; }
    else { x = j->x2 + (i - j->n1) * j->sample_len; s = j->self2 + (i - j->n1) * p->self_len; }
    int start = 0;
    if (p->pe) {
        const void *xe = plane_at(j, i < j->n1 ? j->xe1 : j->xe2, j->xe_len, i < j->n1 ? i : i - j->n1);
        void *se = plane_at(j, i < j->n1 ? j->se1 : j->se2, j->se_len, i < j->n1 ? i : i - j->n1);
        start = plane_run(j, w, xe, xe, se, se, se, 0);
    } else if (j->gram && i < j->n1) {
        /* MLP Gram: the sample's K0 is the GEMM's own diagonal entry, so that a sample paired
         * with itself has correlation exactly 1 (see relu_entry in plane_body.h). */
        w->K[0] = j->gram[i * j->n2 + i] * (1.0 / p->in_c);
    } else {
        input_state(p, x, x, w, 0);
    }
    run_ops(p, w, start, 0, 1, 1, s, 0, s, 0, s);
}

static void report_progress(job *j, int thread, size_t add)
{
    size_t d = atomic_fetch_add(&j->done, add) + add;
    if (thread == 0 && j->progress && j->progress(j->progress_ctx, d, j->total)) atomic_store(&j->cancel, 1);
}

/* One unit: a block of PAIR_ROWS rows and a block of columns, column by column, the rows of
 * a column one after the other: a column sample's self states (hundreds of KB for a deep CNN)
 * are then read from memory once per PAIR_ROWS pairs, not once per pair.  Symmetric: only
 * j >= i. */
#define PAIR_ROWS 8
static void pair_unit(void *ctx, size_t u, int thread)
{
    job *j = ctx;
    if (atomic_load(&j->cancel)) return;
    const nk_plan *p = j->p;
    workspace *w = &j->ws[thread];
    const size_t i0 = u / j->units_per_row * PAIR_ROWS, i1 = i0 + PAIR_ROWS < j->n1 ? i0 + PAIR_ROWS : j->n1;
    const size_t c0 = (u % j->units_per_row) * j->cols_per_unit;
    const size_t c1 = c0 + j->cols_per_unit < j->n2 ? c0 + j->cols_per_unit : j->n2;
    size_t done = 0;
    /* a stack ending in global pooling: the unit's pairs of column c in one nk_plane_pairs call,
     * the column sample first (its layouts per da are made once for all of them; the pooled
     * sum is symmetric in the two samples) */
    const int batch = p->pe && nk_plane_batch(&p->pg);
    for (size_t c = c0; c < c1; c++) {
        const double *sc = j->self2 + c * p->self_len;
        double sums[2 * PAIR_ROWS];
        if (batch) {
            const void *xb[PAIR_ROWS], *sb[PAIR_ROWS];
            int nb = 0;
            for (size_t i = i0; i < i1; i++) {
                if (j->sym && c < i) continue;
                xb[nb] = plane_at(j, j->xe1, j->xe_len, i);
                sb[nb++] = plane_at(j, j->se1, j->se_len, i);
            }
            if (nb)
                nk_plane_pairs(&p->pg, j->f32, plane_at(j, j->xe2, j->xe_len, c), plane_at(j, j->se2, j->se_len, c),
                               nb, xb, sb, w->plane, sums);
        }
        int b = 0;
        for (size_t i = i0; i < i1; i++) {
            if (j->sym && c < i) continue;
            const double *xi = j->x1 + i * j->sample_len, *si = j->self1 + i * p->self_len;
            int start = 0;
            if (batch)
                start = pooled_state(p, w, sums + 2 * b++);
            else if (p->pe)
                start = plane_run(j, w, plane_at(j, j->xe1, j->xe_len, i), plane_at(j, j->xe2, j->xe_len, c),
                                  plane_at(j, j->se1, j->se_len, i), plane_at(j, j->se2, j->se_len, c), NULL,
                                  j->want_ntk);
            else
                input_state(p, xi, j->x2 + c * j->sample_len, w, j->want_ntk);
            run_ops(p, w, start, j->want_ntk, 1, 1, si, 0, sc, 0, NULL);
            j->nngp[i * j->n2 + c] = w->K[0];
            if (j->want_ntk) j->ntk[i * j->n2 + c] = w->T[0];
            done++;
        }
    }
    if (done) report_progress(j, thread, done);
}

/* MLP tile: rows r0.., cols c0.. of the Gram already holding X1 X2^T; layers elementwise. */
static void mlp_unit(void *ctx, size_t u, int thread)
{
    job *j = ctx;
    if (atomic_load(&j->cancel)) return;
    const nk_plan *p = j->p;
    workspace *w = &j->ws[thread];
    size_t tiles_c = (j->n2 + MLP_TILE - 1) / MLP_TILE;
    size_t r0 = (u / tiles_c) * MLP_TILE, c0 = (u % tiles_c) * MLP_TILE;
    if (j->sym && c0 + MLP_TILE <= r0) return;
    int nr = (int)(r0 + MLP_TILE <= j->n1 ? MLP_TILE : j->n1 - r0);
    int nc = (int)(c0 + MLP_TILE <= j->n2 ? MLP_TILE : j->n2 - c0);
    const double inv_c = 1.0 / p->in_c;  /* the same scaling as the self pass */
    for (int r = 0; r < nr; r++) {
        const double *src = j->nngp + (r0 + r) * j->n2 + c0;
        double *dst = w->K + (size_t)r * nc;
        if (j->sym && r0 == c0)   /* a diagonal tile: the upper triangle holds X X^T */
            for (int c = 0; c < nc; c++) dst[c] = (c >= r ? src[c] : j->nngp[(c0 + c) * j->n2 + r0 + r]) * inv_c;
        else
            for (int c = 0; c < nc; c++) dst[c] = src[c] * inv_c;
    }
    if (j->want_ntk) memset(w->T, 0, (size_t)nr * nc * sizeof(double));
    run_ops(p, w, 0, j->want_ntk, nr, nc, j->self1 + r0 * p->self_len, p->self_len,
            j->self2 + c0 * p->self_len, p->self_len, NULL);
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++) {
            j->nngp[(r0 + r) * j->n2 + c0 + c] = w->K[(size_t)r * nc + c];
            if (j->want_ntk) j->ntk[(r0 + r) * j->n2 + c0 + c] = w->T[(size_t)r * nc + c];
        }
    if (j->sym && c0 > r0)
        /* the mirrored tile, while this one is in cache (no tile writes there: i > j is skipped) */
        for (int c = 0; c < nc; c++)
            for (int r = 0; r < nr; r++) {
                j->nngp[(c0 + c) * j->n2 + r0 + r] = w->K[(size_t)r * nc + c];
                if (j->want_ntk) j->ntk[(c0 + c) * j->n2 + r0 + r] = w->T[(size_t)r * nc + c];
            }
    report_progress(j, thread, (size_t)nr * nc);
}

static nk_status check_data(const nk_plan *p, const nk_array *x, const char *name, nk_error *err)
{
    if (!x || !x->data) return nk_fail(err, NK_ERR_INPUT, "%s: no data", name);
    if (x->ndim != p->in_ndim + 1)
        return nk_fail(err, NK_ERR_INPUT, "%s: has %d axes, the plan expects %d (samples first, then the input shape)",
                       name, x->ndim, p->in_ndim + 1);
    for (int a = 0; a < p->in_ndim; a++)
        if (x->shape[a + 1] != p->in_shape[a])
            return nk_fail(err, NK_ERR_INPUT, "%s: axis %d has size %zu, expected %zu (all inputs must have the same sample shape)",
                           name, a + 1, x->shape[a + 1], p->in_shape[a]);
    if (x->shape[0] == 0) return nk_fail(err, NK_ERR_INPUT, "%s: no samples", name);
    size_t len = nk_array_size(x) / x->shape[0];
    for (size_t i = 0; i < nk_array_size(x); i++)
        if (!isfinite(x->data[i]))
            return nk_fail(err, NK_ERR_INPUT, "%s: sample %zu, element %zu is %s (remove or impute non-finite values)",
                           name, i / len, i % len, isnan(x->data[i]) ? "NaN" : "infinite");
    return NK_OK;
}

/* Apply the plan's leading pools to each sample: x (n samples of the data shape) -> out
 * (n samples of p->pre_len values), channels last. */
static void pool_data(const nk_plan *p, const double *x, size_t n, double *out, double *buf)
{
    const int C = (int)p->in_shape[p->in_ndim - 1]; /* the data's channels (in_c counts P C after a flatten on the data) */
    for (size_t s = 0; s < n; s++) {
        size_t in_len = (size_t)p->pre[0].in_hw[0] * p->pre[0].in_hw[1] * C;
        const double *src = x + s * in_len;
        for (int k = 0; k < p->npre; k++) {
            const nk_op *op = &p->pre[k];
            const int h = op->in_hw[0], w = op->in_hw[1], H = op->out_hw[0], W = op->out_hw[1];
            double *dst = k == p->npre - 1 ? out + s * p->pre_len : (k % 2 ? buf + in_len : buf);
            const double scale = 1.0 / ((double)op->f[0] * op->f[1]);
            for (int q = 0; q < H; q++)
                for (int r = 0; r < W; r++)
                    for (int c = 0; c < C; c++) {
                        double acc = 0;
                        for (int d = 0; d < op->f[0]; d++) {
                            int i = nk_axis_index(q, d, op->s[0], op->pb[0], h, op->pad);
                            if (i < 0) continue;
                            for (int e = 0; e < op->f[1]; e++) {
                                int j = nk_axis_index(r, e, op->s[1], op->pb[1], w, op->pad);
                                if (j >= 0) acc += src[((size_t)i * w + j) * C + c];
                            }
                        }
                        dst[((size_t)q * W + r) * C + c] = acc * scale;
                    }
            src = dst;
        }
    }
}

static double machine_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), sz = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && sz > 0 ? (double)pages * sz : 0;
}

nk_status nk_kernel_matrix(const nk_plan *p, const nk_array *x1, const nk_array *x2,
                           const nk_kernel_opts *o, nk_array *nngp, nk_array *ntk, nk_error *err)
{
    nk_kernel_opts def;
    nk_kernel_opts_default(&def);
    if (!o) o = &def;
    if (nngp) memset(nngp, 0, sizeof *nngp);
    if (ntk) memset(ntk, 0, sizeof *ntk);
    if ((o->get & NK_GET_NTK) && !ntk) return nk_fail(err, NK_ERR_INPUT, "kernel: NTK requested but no output array given");
    if ((o->get & NK_GET_NNGP) && !nngp) return nk_fail(err, NK_ERR_INPUT, "kernel: NNGP requested but no output array given");
    if (!(o->get & NK_GET_BOTH)) return nk_fail(err, NK_ERR_INPUT, "kernel: nothing requested (get nngp, ntk or both)");
    nk_status st = check_data(p, x1, "x1", err);
    if (st == NK_OK && x2) st = check_data(p, x2, "x2", err);
    if (st != NK_OK) return st;

    int nt = nk_num_threads(o->nthreads);
    nk_simd_prepare();
    size_t n1 = x1->shape[0], n2 = x2 ? x2->shape[0] : n1;
    nk_cost cost;
    nk_plan_cost(p, n1, x2 ? n2 : 0, nt, &cost);
    double limit = o->mem_limit > 0 ? o->mem_limit : machine_memory();
    if (limit > 0 && cost.bytes > limit)
        return nk_fail(err, NK_ERR_NOMEM, "kernel: the run needs about %.2f GiB but the limit is %.2f GiB (use fewer samples, compute in blocks with --x2, or fewer threads)",
                       cost.bytes / 1073741824.0, limit / 1073741824.0);

    job j;
    memset(&j, 0, sizeof j);
    j.p = p;
    j.x1 = x1->data;
    j.x2 = x2 ? x2->data : x1->data;
    j.n1 = n1;
    j.n2 = n2;
    j.sample_len = nk_array_size(x1) / n1;
    double *pooled1 = NULL, *pooled2 = NULL, *pool_buf = NULL;
    if (p->npre) {
        /* the plan's leading pools, applied to the data once */
        pooled1 = malloc(n1 * p->pre_len * sizeof(double));
        pooled2 = x2 ? malloc(n2 * p->pre_len * sizeof(double)) : NULL;
        pool_buf = malloc(2 * j.sample_len * sizeof(double));
        if (!pooled1 || (x2 && !pooled2) || !pool_buf) {
            free(pooled1); free(pooled2); free(pool_buf);
            return nk_fail(err, NK_ERR_NOMEM, "kernel: out of memory for the pooled inputs");
        }
        pool_data(p, x1->data, n1, pooled1, pool_buf);
        if (x2) pool_data(p, x2->data, n2, pooled2, pool_buf);
        j.x1 = pooled1;
        j.x2 = x2 ? pooled2 : pooled1;
        j.sample_len = p->pre_len;
    }
    j.sym = x2 == NULL;
    j.want_ntk = (o->get & NK_GET_NTK) != 0;
    j.progress = o->progress;
    j.progress_ctx = o->progress_ctx;
    atomic_init(&j.done, 0);
    atomic_init(&j.cancel, 0);

    size_t shape[2] = {n1, n2};
    nk_array K = {0}, T = {0};
    j.self1 = malloc(n1 * p->self_len * sizeof(double));
    j.self2 = x2 ? malloc(n2 * p->self_len * sizeof(double)) : j.self1;
    j.ws = calloc((size_t)nt, sizeof *j.ws);
    if (!j.self1 || !j.self2 || !j.ws) st = nk_fail(err, NK_ERR_NOMEM, "kernel: out of memory for per-sample state");
    if (st == NK_OK && p->pe) {
        /* the plane engine's samples and self states, in its layout and precision; SLACK zeros
         * after each array: it reads whole vectors past the end of a row */
        j.f32 = o->f32 != 0;
        size_t el = j.f32 ? sizeof(float) : sizeof(double);
        j.xe_len = nk_plane_sample_len(&p->pg);
        j.se_len = nk_plane_self_len(&p->pg);
        j.xe1 = nk_calloc64(n1 * j.xe_len + SLACK, el);
        j.xe2 = x2 ? nk_calloc64(n2 * j.xe_len + SLACK, el) : j.xe1;
        j.se1 = nk_calloc64(n1 * j.se_len + SLACK, el);
        j.se2 = x2 ? nk_calloc64(n2 * j.se_len + SLACK, el) : j.se1;
        if (!j.xe1 || !j.xe2 || !j.se1 || !j.se2) st = nk_fail(err, NK_ERR_NOMEM, "kernel: out of memory for per-sample state");
        for (size_t i = 0; st == NK_OK && i < n1; i++)
            nk_plane_data(p, j.f32, j.x1 + i * j.sample_len, (char *)j.xe1 + i * j.xe_len * el);
        for (size_t i = 0; st == NK_OK && x2 && i < n2; i++)
            nk_plane_data(p, j.f32, j.x2 + i * j.sample_len, (char *)j.xe2 + i * j.xe_len * el);
    }
    for (int t = 0; st == NK_OK && t < nt; t++)
        if (ws_alloc(&j.ws[t], p)) st = nk_fail(err, NK_ERR_NOMEM, "kernel: out of memory for thread workspaces");
    if (st == NK_OK) st = nk_array_alloc(&K, 2, shape, err);
    if (st == NK_OK && j.want_ntk) st = nk_array_alloc(&T, 2, shape, err);
    if (st == NK_OK) {
        j.nngp = K.data;
        j.ntk = T.data;
        /* Our threads each run one BLAS call at a time: keep OpenBLAS single-threaded inside. */
        int blas_threads = openblas_get_num_threads();
        if (p->mlp) {
            openblas_set_num_threads(nt);
            if (j.sym) {
                /* X X^T: only the upper triangle (the tiles read j >= i, mirrored in a tile) */
                cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)n1, p->in_c, 1.0, j.x1, p->in_c, 0.0,
                            K.data, (int)n2);
                j.gram = K.data;
            } else {
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n1, (int)n2, p->in_c, 1.0,
                            j.x1, p->in_c, j.x2, p->in_c, 0.0, K.data, (int)n2);
            }
        }
        openblas_set_num_threads(1);
        nk_parallel_for(n1 + (x2 ? n2 : 0), nt, self_unit, &j);
        if (p->mlp) {
            size_t tr = (n1 + MLP_TILE - 1) / MLP_TILE, tc = (n2 + MLP_TILE - 1) / MLP_TILE;
            j.total = n1 * n2;
            nk_parallel_for(tr * tc, nt, mlp_unit, &j);
        } else {
            /* Units of PAIR_ROWS rows and a block of columns: enough units for balance and progress. */
            size_t cpu = n2 / 64 + 1;
            if (cpu > 256) cpu = 256;
            j.cols_per_unit = cpu;
            j.units_per_row = (n2 + cpu - 1) / cpu;
            j.total = j.sym ? n1 * (n1 + 1) / 2 : n1 * n2;
            nk_parallel_for((n1 + PAIR_ROWS - 1) / PAIR_ROWS * j.units_per_row, nt, pair_unit, &j);
        }
        openblas_set_num_threads(blas_threads);
        if (atomic_load(&j.cancel)) st = nk_fail(err, NK_ERR_RUN, "kernel: cancelled");
    }
    if (st == NK_OK && j.sym && !p->mlp) {
        /* mirror the upper triangle (the MLP tiles wrote theirs), in blocks so that the
         * transposed reads stay in cache */
        const size_t B = 64;
        for (size_t i0 = 0; i0 < n1; i0 += B)
            for (size_t c0 = 0; c0 <= i0; c0 += B)
                for (size_t i = i0; i < i0 + B && i < n1; i++)
                    for (size_t c = c0; c < c0 + B && c < i; c++) {
                        K.data[i * n2 + c] = K.data[c * n2 + i];
                        if (j.want_ntk) T.data[i * n2 + c] = T.data[c * n2 + i];
                    }
    }
    if (st == NK_OK && j.progress) j.progress(j.progress_ctx, j.total, j.total);
    for (int t = 0; j.ws && t < nt; t++) ws_free(&j.ws[t]);
    free(j.ws);
    if (j.xe2 != j.xe1) free(j.xe2);
    free(j.xe1);
    if (j.se2 != j.se1) free(j.se2);
    free(j.se1);
    if (j.self2 != j.self1) free(j.self2);
    free(j.self1);
    free(pooled1);
    free(pooled2);
    free(pool_buf);
    if (st != NK_OK) {
        nk_array_free(&K);
        nk_array_free(&T);
        return st;
    }
    if (nngp && (o->get & NK_GET_NNGP)) *nngp = K; else nk_array_free(&K);
    if (ntk && j.want_ntk) *ntk = T; else nk_array_free(&T);
    return NK_OK;
}
