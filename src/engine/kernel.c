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
/* Inputs beyond this magnitude are refused: K0 = <x, x'>/C squares them (1e300), and any
 * weight above 1 would then overflow in the first layer. */
#define NK_DATA_MAX 1e150
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
    double *torus;         /* the torus path's planes (torus.c), then its per-translation K, T */
    void *se;              /* plane engine, self states by window: a sample's self state at creation */
} workspace;

static void ws_free(workspace *w)
{
    free(w->K); free(w->T); free(w->K2); free(w->T2); free(w->tmp); free(w->work); free(w->save); free(w->plane); free(w->torus); free(w->se);
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
    w->work = malloc((nk_mehler_work(side) + 4 * (size_t)p->in_hw[1] * p->in_hw[1]) * sizeof(double));
    w->save = malloc((2 * (size_t)p->res_depth + 1) * n * sizeof(double));
    w->plane = p->pe ? nk_calloc64(nk_plane_work(p->pg), sizeof(double)) : NULL;
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
static void run_ops(const nk_plan *p, workspace *w, int start, int end, int want_ntk, int nr, int nc,
                    const double *sa, size_t sa_step, const double *sb, size_t sb_step, double *self_out)
{
    size_t block = (size_t)nr * nc;
    double *T = want_ntk ? w->T : NULL;
    for (int i = start; i < end; i++) {
        const nk_op *op = &p->ops[i];
        size_t n_in = state_size(op->mode, op->in_hw, block);
        nk_mode natural = op->mode;
        switch (op->kind) {
        case OP_AFFINE:
            if (op->f[0] == 1 && op->f[1] == 1 && op->s[0] == 1 && op->s[1] == 1) {
                /* dense (or 1x1 conv): the window mean is the identity; an activation on a tile
                 * of pairs right after it takes the affine map along (not in a self pass, which
                 * records the variances in between) */
                const nk_op *nx = i + 1 < end ? &p->ops[i + 1] : NULL;
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
                const nk_op *nx = i + 1 < end ? &p->ops[i + 1] : NULL;
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
                if (op->mehler)
                    for (size_t e = 0; e < P; e++)
                        nk_mehler_record(&op->act, self_out[op->self_off + e], NK_MEHLER_TOL64,
                                         self_out + op->self_off + 3 * P + e, P);
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
    /* plane engine, self states by window (all of them above nk_kernel_window_bytes: a Mehler
     * layer's records make them ~7-40 MB a sample): only the current tile's rows' (ser, samples
     * wr0..wr1) and columns' (scol, samples wc0..wc1), made again per tile by the same self pass
     * (the same bits), se1 and se2 unused.  The tile's columns are read through sec, first sample
     * sc0: scol, or ser for a diagonal tile of a Gram.  cap_r, cap_c: the samples ser, scol
     * have room for */
    int win;
    void *ser, *scol, *sec;
    size_t wr0, wr1, wc0, wc1, sc0, cap_r, cap_c;
    size_t fill_r0, fill_nr, fill_c0;   /* window_unit: rows fill_r0.. (fill_nr of them), then columns */
    int f32;
    size_t n1, n2, sample_len;
    int sym, want_ntk;
    double *self1, *self2;
    double *nngp, *ntk;          /* the tile being computed: entry (i, c) at [(i - r0) * ld + c - c0] */
    size_t r0, r1, c0, c1, ld;   /* the tile's rows r0..r1 and columns c0..c1 */
    const double *gram_diag;     /* MLP symmetric Gram: <x_i, x_i> from the diagonal tile's GEMM */
    workspace *ws;
    size_t cols_per_unit, units_per_row;
    atomic_size_t done;
    atomic_int cancel;
    nk_progress_fn progress;
    void *progress_ctx;
    size_t total;
    size_t first1, first2;       /* messages number x1's samples from first1, x2's from first2 */
    atomic_size_t first_bad;     /* smallest i * n2 + j of a non-finite output (SIZE_MAX: none) */
    atomic_size_t first_bad_self; /* smallest sample (x2's after x1's) with a non-finite self state */
    int torus;                   /* ops [0, tor.e) on the torus path (torus.c), at tor's translations */
    nk_torus tor;
    char *tx1, *tx2, *ts1, *ts2; /* torus path: padded samples and variances (after a margin) */
    size_t tx_len, ts_len, tel;  /* elements per sample, bytes per element */
} job;
static void atomic_min_size(atomic_size_t *a, size_t v)
{
    size_t cur = atomic_load(a);
    while (v < cur && !atomic_compare_exchange_weak(a, &cur, v)) {}
}

/* A sample whose self-variances are non-finite: every pair with it would be wrong. */
static void note_self_nonfinite(job *j, size_t sample)
{
    atomic_min_size(&j->first_bad_self, sample);
    atomic_store(&j->cancel, 1);
}

/* A non-finite output at pair (i, c): remember the first (in row-major order) and stop the
 * run (the other pairs are not worth hours once the result is known to be unusable). */
static void note_nonfinite(job *j, size_t i, size_t c)
{
    atomic_min_size(&j->first_bad, i * j->n2 + c);
    atomic_store(&j->cancel, 1);
}


/* Sample i of a per-sample array of the plane engine (len elements each, in its precision). */
static void *plane_at(const job *j, const void *base, size_t len, size_t i)
{
    return (char *)base + i * len * (j->f32 ? sizeof(float) : sizeof(double));
}

/* the plane engine's self state of row sample i (of x1) and of column sample c (of x2, or of x1
 * for a Gram) */
static void *se_row(const job *j, size_t i)
{
    return j->win ? plane_at(j, j->ser, j->se_len, i - j->wr0) : plane_at(j, j->se1, j->se_len, i);
}

static void *se_col(const job *j, size_t c)
{
    return j->win ? plane_at(j, j->sec, j->se_len, c - j->sc0) : plane_at(j, j->se2, j->se_len, c);
}

size_t nk_kernel_window_bytes = (size_t)1 << 30;

/* The state after the stack's global pooling from the engine's sums of K and T over all
 * entries; returns the index of the op after the pooling. */
static int pooled_state(const nk_plan *p, workspace *w, const double *sums)
{
    const double n = (double)nk_mode_size(NK_MODE_FULL, p->ops[p->pe].in_hw);   /* the pooled grid */
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
    if (self_out && p->pg->gap) {
        all = 0;
        for (int i = p->pe; i < p->nops; i++) all |= p->ops[i].kind == OP_ACT;
    }
    if (p->pg->gap) {
        double sums[2];
        nk_plane_pair(p->pg, j->f32, all, xa, xb, sa, sb, self_out, w->plane, sums, NULL, NULL);
        return pooled_state(p, w, sums);
    }
    nk_plane_pair(p->pg, j->f32, all, xa, xb, sa, sb, self_out, w->plane, NULL, w->K, want_ntk ? w->T : NULL);
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
    if (j->torus) {
        const int one = i < j->n1;
        const size_t k = one ? i : i - j->n1;
        w->K[0] = nk_torus_self(&j->tor, p, (one ? j->tx1 : j->tx2) + k * j->tx_len * j->tel, s,
                                (one ? j->ts1 : j->ts2) + k * j->ts_len * j->tel, w->torus);
        start = j->tor.e + 1;
    } else if (p->pe) {
        const void *xe = plane_at(j, i < j->n1 ? j->xe1 : j->xe2, j->xe_len, i < j->n1 ? i : i - j->n1);
        void *se = j->win ? w->se : plane_at(j, i < j->n1 ? j->se1 : j->se2, j->se_len, i < j->n1 ? i : i - j->n1);
        start = plane_run(j, w, xe, xe, se, se, se, 0);
        int finite = 1;
        if (j->f32)
            for (size_t k = 0; k < j->se_len; k++) finite &= isfinite(((const float *)se)[k]);
        else
            for (size_t k = 0; k < j->se_len; k++) finite &= isfinite(((const double *)se)[k]);
        if (!finite) note_self_nonfinite(j, i);
    } else if (j->gram_diag && i < j->n1) {
        /* MLP Gram: the sample's K0 is the diagonal tile GEMM's own entry, so that a sample
         * paired with itself has correlation exactly 1 (see relu_entry in plane_body.h). */
        w->K[0] = j->gram_diag[i] * (1.0 / p->in_c);
    } else {
        input_state(p, x, x, w, 0);
    }
    run_ops(p, w, start, p->nops, 0, 1, 1, s, 0, s, 0, s);
    /* the variances the later activations read: an infinite one would not always show in the
     * pairs' outputs (erf's dual tends to a finite limit) */
    for (int k = j->torus ? 0 : start; k < p->nops; k++)
        if (p->ops[k].kind == OP_ACT) {
            const double *a = s + p->ops[k].self_off;
            size_t n = (size_t)p->ops[k].in_hw[0] * p->ops[k].in_hw[1];
            int finite = 1;
            for (size_t e = 0; e < n; e++) finite &= isfinite(a[e]);
            if (!finite) note_self_nonfinite(j, i);
        }
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
    const size_t i0 = j->r0 + u / j->units_per_row * PAIR_ROWS, i1 = i0 + PAIR_ROWS < j->r1 ? i0 + PAIR_ROWS : j->r1;
    const size_t c0 = j->c0 + (u % j->units_per_row) * j->cols_per_unit;
    const size_t c1 = c0 + j->cols_per_unit < j->c1 ? c0 + j->cols_per_unit : j->c1;
    size_t done = 0;
    /* a stack ending in global pooling: the unit's pairs of column c in one nk_plane_pairs call,
     * the column sample first (its layouts per da are made once for all of them; the pooled
     * sum is symmetric in the two samples) */
    const int batch = p->pe && nk_plane_batch(p->pg);
    for (size_t c = c0; c < c1; c++) {
        const double *sc = j->self2 + c * p->self_len;
        double sums[2 * PAIR_ROWS];
        if (batch) {
            const void *xb[PAIR_ROWS], *sb[PAIR_ROWS];
            int nb = 0;
            for (size_t i = i0; i < i1; i++) {
                if (j->sym && c < i) continue;
                xb[nb] = plane_at(j, j->xe1, j->xe_len, i);
                sb[nb++] = se_row(j, i);
            }
            if (nb)
                nk_plane_pairs(p->pg, j->f32, plane_at(j, j->xe2, j->xe_len, c), se_col(j, c),
                               nb, xb, sb, w->plane, sums);
        }
        int b = 0;
        for (size_t i = i0; i < i1; i++) {
            if (j->sym && c < i) continue;
            const double *xi = j->x1 + i * j->sample_len, *si = j->self1 + i * p->self_len;
            int start = 0;
            if (j->torus) {
                /* the translations' planes, each through the ops after the flatten, weighted */
                const nk_torus *t = &j->tor;
                double *Kd = w->torus + nk_torus_work(t), *Td = Kd + t->nd, k = 0, tk = 0;   /* past the planes in either precision */
                const size_t xl = j->tx_len * j->tel, sl = j->ts_len * j->tel;
                nk_torus_pair(t, p, j->tx1 + i * xl, j->tx2 + c * xl, j->ts1 + i * sl, j->ts2 + c * sl, j->want_ntk,
                              w->torus, Kd, Td);
                for (int d = 0; d < t->nd; d++) {
                    w->K[0] = Kd[d];
                    w->T[0] = Td[d];
                    run_ops(p, w, t->e + 1, p->nops, j->want_ntk, 1, 1, si, 0, sc, 0, NULL);
                    k += t->wt[d] * w->K[0];
                    tk += t->wt[d] * w->T[0];
                }
                w->K[0] = k;
                w->T[0] = tk;
                start = p->nops;
            } else if (batch)
                start = pooled_state(p, w, sums + 2 * b++);
            else if (p->pe)
                start = plane_run(j, w, plane_at(j, j->xe1, j->xe_len, i), plane_at(j, j->xe2, j->xe_len, c),
                                  se_row(j, i), se_col(j, c), NULL,
                                  j->want_ntk);
            else
                input_state(p, xi, j->x2 + c * j->sample_len, w, j->want_ntk);
            run_ops(p, w, start, p->nops, j->want_ntk, 1, 1, si, 0, sc, 0, NULL);
            const size_t at = (i - j->r0) * j->ld + (c - j->c0);
            if (j->nngp) j->nngp[at] = w->K[0];
            if (j->want_ntk) j->ntk[at] = w->T[0];
            if (!isfinite(w->K[0]) || (j->want_ntk && !isfinite(w->T[0]))) note_nonfinite(j, i, c);
            done++;
        }
    }
    if (done) report_progress(j, thread, done);
}

/* <x_r, x_c> for the rows r0..r0+nr of x1 and the columns c0..c0+nc of x2 into G (nr x nc): one
 * GEMM per MLP tile, the same call in every run that covers the tile, so its bits never
 * depend on how the matrix is split. */
static void mlp_tile_gemm(const job *j, size_t r0, int nr, size_t c0, int nc, double *G)
{
    const int C = j->p->in_c;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nc, C, 1.0, j->x1 + r0 * C, C, j->x2 + c0 * C, C, 0.0, G,
                nc);
}

/* MLP Gram, self pass: sample i's <x_i, x_i> is read off its diagonal tile's GEMM (unit u is
 * the row block), so that the pair (i, i) and the sample's own state agree to the bit. */
static void mlp_diag_unit(void *ctx, size_t u, int thread)
{
    job *j = ctx;
    workspace *w = &j->ws[thread];
    size_t r0 = u * MLP_TILE;
    int nr = (int)(r0 + MLP_TILE <= j->n1 ? MLP_TILE : j->n1 - r0);
    mlp_tile_gemm(j, r0, nr, r0, nr, w->tmp);
    for (int r = 0; r < nr; r++) ((double *)j->gram_diag)[r0 + r] = w->tmp[(size_t)r * nr + r];
}

/* MLP tile: rows r0.., cols c0.. (absolute, multiples of MLP_TILE); layers elementwise. */
static void mlp_unit(void *ctx, size_t u, int thread)
{
    job *j = ctx;
    if (atomic_load(&j->cancel)) return;
    const nk_plan *p = j->p;
    workspace *w = &j->ws[thread];
    size_t tiles_c = (j->c1 - j->c0 + MLP_TILE - 1) / MLP_TILE;
    size_t r0 = j->r0 + (u / tiles_c) * MLP_TILE, c0 = j->c0 + (u % tiles_c) * MLP_TILE;
    if (j->sym && c0 + MLP_TILE <= r0) return;
    int nr = (int)(r0 + MLP_TILE <= j->r1 ? MLP_TILE : j->r1 - r0);
    int nc = (int)(c0 + MLP_TILE <= j->c1 ? MLP_TILE : j->c1 - c0);
    const double inv_c = 1.0 / p->in_c;  /* the same scaling as the self pass */
    mlp_tile_gemm(j, r0, nr, c0, nc, w->tmp);
    for (int r = 0; r < nr; r++) {
        const double *src = w->tmp + (size_t)r * nc;
        double *dst = w->K + (size_t)r * nc;
        if (j->sym && r0 == c0)   /* a diagonal tile: its upper triangle, mirrored */
            for (int c = 0; c < nc; c++) dst[c] = (c >= r ? src[c] : w->tmp[(size_t)c * nc + r]) * inv_c;
        else
            for (int c = 0; c < nc; c++) dst[c] = src[c] * inv_c;
    }
    if (j->want_ntk) memset(w->T, 0, (size_t)nr * nc * sizeof(double));
    run_ops(p, w, 0, p->nops, j->want_ntk, nr, nc, j->self1 + r0 * p->self_len, p->self_len,
            j->self2 + c0 * p->self_len, p->self_len, NULL);
    int finite = 1;
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++) {
            const size_t at = (r0 + r - j->r0) * j->ld + (c0 + c - j->c0);
            const double k = w->K[(size_t)r * nc + c], t = j->want_ntk ? w->T[(size_t)r * nc + c] : 0;
            finite &= isfinite(k) & isfinite(t);
            if (j->nngp) j->nngp[at] = k;
            if (j->want_ntk) j->ntk[at] = t;
        }
    if (!finite) /* rare: find the tile's first such pair */
        for (int r = 0; r < nr; r++)
            for (int c = 0; c < nc; c++)
                if (!isfinite(w->K[(size_t)r * nc + c]) || (j->want_ntk && !isfinite(w->T[(size_t)r * nc + c])))
                    note_nonfinite(j, r0 + r, c0 + c);
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
    for (size_t i = 0; i < nk_array_size(x); i++) {
        if (!isfinite(x->data[i]))
            return nk_fail(err, NK_ERR_INPUT, "%s: sample %zu, element %zu is %s (remove or impute non-finite values)",
                           name, i / len, i % len, isnan(x->data[i]) ? "NaN" : "infinite");
        if (fabs(x->data[i]) > NK_DATA_MAX)
            return nk_fail(err, NK_ERR_INPUT, "%s: sample %zu, element %zu is %g, beyond +-%g where products of inputs "
                           "overflow (rescale the data)", name, i / len, i % len, x->data[i], NK_DATA_MAX);
    }
    return NK_OK;
}

/* ------------------------------------------------ non-finite diagnosis -- */

/* "op 7 (relu, column 23 of the spec)": ops numbered as `nkern arch` lists them. */
static void op_label(const nk_plan *p, int k, char *buf, size_t n)
{
    const nk_op *op = &p->ops[k];
    const char *name = "";
    switch (op->kind) {
    case OP_AFFINE: name = op->layer && op->layer->type == L_CONV ? "conv" : "dense"; break;
    case OP_POOL: name = "avgpool"; break;
    case OP_GAP: name = "gap"; break;
    case OP_FLATTEN: name = "flatten"; break;
    case OP_ACT: name = nk_act_name(op->act.kind); break;
    case OP_RES_BEGIN: name = "res begin"; break;
    case OP_RES_END: name = "res end, x + f(x)"; break;
    }
    snprintf(buf, n, "op %d (%s, column %d of the spec)", k + 1, name, op->layer ? op->layer->pos : 0);
}

/* Index of the first non-finite value of x[0..n), or n. */
static size_t first_nonfinite(const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

/* Run the self pass (pair = 0: x = xb, into self state sa) or a pair (sa, sb: both samples'
 * self states; the NTK too if ntk) layer by layer, checking the state after each op.  Returns
 * the op index of the first non-finite value (-1: the input covariance; nops: none) and its
 * quantity and value. */
static int layer_by_layer(const nk_plan *q, workspace *w, const double *xa, const double *xb, double *sa, const double *sb,
                          int pair, int ntk, const char **what, double *value)
{
    size_t n = nk_mode_size(q->in_mode, q->in_hw), e;
    ntk = pair && ntk;
    input_state(q, xa, xb, w, ntk);
    *what = pair ? "nngp" : "self-variance";
    if ((e = first_nonfinite(w->K, n)) < n) { *value = w->K[e]; return -1; }
    for (int k = 0; k < q->nops; k++) {
        const nk_op *op = &q->ops[k];
        run_ops(q, w, k, k + 1, ntk, 1, 1, sa, 0, pair ? sb : sa, 0, pair ? NULL : sa);
        n = nk_mode_size(op->out_mode, op->out_hw);
        if ((e = first_nonfinite(w->K, n)) < n) { *value = w->K[e]; return k; }
        if (ntk && (e = first_nonfinite(w->T, n)) < n) { *what = "ntk"; *value = w->T[e]; return k; }
    }
    return q->nops;
}

/* The run found a non-finite value: recompute that sample (self) or pair layer by layer, in
 * float64 without the plane engine, to name the first op where it appears. */
static nk_status diagnose_nonfinite(const job *j, size_t first1, size_t first2, nk_error *err)
{
    nk_plan q = *j->p;
    q.pe = 0;
    q.state_max = j->p->state_max_layers;
    workspace w;
    double *s1 = malloc(q.self_len * sizeof(double)), *s2 = malloc(q.self_len * sizeof(double));
    if (!s1 || !s2 || ws_alloc(&w, &q)) {
        free(s1); free(s2);
        return nk_fail(err, NK_ERR_NONFINITE, "kernel: a value overflowed to Inf or NaN (no memory left to find where; "
                       "use smaller weights, fewer layers or rescaled inputs)");
    }
    size_t bad_self = atomic_load(&j->first_bad_self), bad = atomic_load(&j->first_bad);
    size_t i, c;
    const char *name1 = "x1", *name2 = j->sym ? "x1" : "x2";
    if (bad_self != SIZE_MAX) { i = c = bad_self; }
    else { i = bad / j->n2; c = bad % j->n2; }
    const char *what;
    double value = 0;
    char label[128];
    int k;
    nk_status st = NK_ERR_NONFINITE;
    if (bad_self != SIZE_MAX) {
        /* one sample: x1's first, then x2's */
        const int in1 = i < j->n1;
        const double *x = in1 ? j->x1 + i * j->sample_len : j->x2 + (i - j->n1) * j->sample_len;
        size_t num = in1 ? i + first1 : i - j->n1 + first2;
        k = layer_by_layer(&q, &w, x, x, s1, NULL, 0, 0, &what, &value);
        int reported = 0;
        if (k < q.nops && j->want_ntk) {
            /* the sample's NTK with itself grows faster (it sums over layers): it may overflow
             * first; s1 holds the variances of every op before k */
            const char *wp;
            double vp;
            int kp = layer_by_layer(&q, &w, x, x, s1, s1, 1, 1, &wp, &vp);
            if (kp < k) {
                if (kp >= 0) op_label(&q, kp, label, sizeof label);
                nk_fail(err, st, "kernel: the %s of pair (%zu, %zu) (%s sample %zu with itself) overflows to %g at %s "
                        "(kernels grow with w^2 and b^2 at every layer, the NTK also with depth: use smaller w or b, "
                        "fewer layers, or rescale the inputs)", wp, num, num, in1 ? name1 : "x2", num, vp,
                        kp >= 0 ? label : "the input covariance <x, x>/C");
                reported = 1;
            }
        }
        if (!reported && k < q.nops) {
            if (k >= 0) op_label(&q, k, label, sizeof label);
            nk_fail(err, st, "kernel: the self-variance of %s sample %zu overflows to %g at %s (variances grow with "
                    "w^2 and b^2 at every layer: use smaller w or b, fewer layers, or rescale the inputs)",
                    in1 ? name1 : "x2", num, value, k >= 0 ? label : "the input covariance <x, x>/C");
        } else if (!reported) {
            nk_fail(err, st, "kernel: the self-variance of %s sample %zu is not finite%s", in1 ? name1 : "x2", num,
                    j->f32 ? " in float32 but finite in float64 (use --precision f64)" :
                             " in the fast path but finite layer by layer (an internal error: please report it with the spec)");
        }
    } else {
        const double *xi = j->x1 + i * j->sample_len, *xc = j->x2 + c * j->sample_len;
        double vi = 0, vc = 0;
        const char *wi, *wc;
        int ki = layer_by_layer(&q, &w, xi, xi, s1, NULL, 0, 0, &wi, &vi);
        int kc = layer_by_layer(&q, &w, xc, xc, s2, NULL, 0, 0, &wc, &vc);
        if (ki < q.nops || kc < q.nops) {
            /* a self-variance the fast path did not flag: say which */
            int first_i = ki <= kc;
            k = first_i ? ki : kc;
            value = first_i ? vi : vc;
            what = "self-variance";
            if (k >= 0) op_label(&q, k, label, sizeof label);
            nk_fail(err, st, "kernel: pair (%zu, %zu): the self-variance of %s sample %zu overflows to %g at %s (use "
                    "smaller w or b, fewer layers, or rescale the inputs)", i + first1, c + first2,
                    first_i ? name1 : name2, first_i ? i + first1 : c + first2, value,
                    k >= 0 ? label : "the input covariance <x, x>/C");
        } else {
            k = layer_by_layer(&q, &w, xi, xc, s1, s2, 1, j->want_ntk, &what, &value);
            if (k < q.nops) {
                if (k >= 0) op_label(&q, k, label, sizeof label);
                nk_fail(err, st, "kernel: the %s of pair (%zu, %zu) (%s sample %zu, %s sample %zu) overflows to %g at %s "
                        "(kernels grow with w^2 and b^2 at every layer: use smaller w or b, fewer layers, or rescale "
                        "the inputs)", what, i + first1, c + first2, name1, i + first1, name2, c + first2, value,
                        k >= 0 ? label : "the input covariance <x, x'>/C");
            } else {
                nk_fail(err, st, "kernel: pair (%zu, %zu) is not finite%s", i + first1, c + first2,
                        j->f32 ? " in float32 but finite in float64 (use --precision f64)" :
                                 " in the fast path but finite layer by layer (an internal error: please report it with the spec)");
            }
        }
    }
    ws_free(&w);
    free(s1);
    free(s2);
    return st;
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

/* The per-sample work of a kernel computation, done once; tiles of pairs are then computed
 * on demand (nk_kernel_tile). */
struct nk_kernel_ctx {
    job j;
    int nt;
    size_t n1, n2;
    double *pooled1, *pooled2, *gram_diag;
    char *tor[4];          /* the torus path's arrays (job.tx1, tx2, ts1, ts2 after their margin) */
};

void nk_kernel_ctx_free(nk_kernel_ctx *c)
{
    if (!c) return;
    job *j = &c->j;
    for (int t = 0; j->ws && t < c->nt; t++) ws_free(&j->ws[t]);
    free(j->ws);
    if (j->xe2 != j->xe1) free(j->xe2);
    free(j->xe1);
    if (j->se2 != j->se1) free(j->se2);
    free(j->se1);
    free(j->scol);
    free(j->ser);
    if (j->self2 != j->self1) free(j->self2);
    free(j->self1);
    free(c->pooled1);
    free(c->pooled2);
    if (c->tor[1] != c->tor[0]) free(c->tor[1]);
    free(c->tor[0]);
    if (c->tor[3] != c->tor[2]) free(c->tor[3]);
    free(c->tor[2]);
    free(c->gram_diag);
    free(c);
}

nk_status nk_kernel_opts_check(const nk_plan *p, const nk_kernel_opts *o, nk_error *err)
{
    nk_torus t;
    if (o->shift < 0 || o->shift > 8) return nk_fail(err, NK_ERR_INPUT, "kernel: shift %d out of range 0..8", o->shift);
    if (o->shift && !nk_torus_setup(p, o->shift, o->f32, &t))
        return nk_fail(err, NK_ERR_INPUT, "kernel: translations (shift %d) per entry need stride-1 conv(F,pad=circular) layers "
                       "and activations read out by a flatten (other plans: nk_kernel_matrix_augment, or nkern classify without --journal)", o->shift);
    return NK_OK;
}

nk_status nk_kernel_ctx_create(const nk_plan *p, const nk_array *x1, const nk_array *x2,
                               const nk_kernel_opts *o, nk_kernel_ctx **out, nk_error *err)
{
    nk_kernel_opts def;
    nk_kernel_opts_default(&def);
    if (!o) o = &def;
    *out = NULL;
    if (!(o->get & NK_GET_BOTH)) return nk_fail(err, NK_ERR_INPUT, "kernel: nothing requested (get nngp, ntk or both)");
    nk_status st = check_data(p, x1, "x1", err);
    if (st == NK_OK && x2) st = check_data(p, x2, "x2", err);
    if (st != NK_OK) return st;
    nk_kernel_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return nk_fail(err, NK_ERR_NOMEM, "kernel: out of memory");
    int nt = nk_num_threads(o->nthreads);
    nk_simd_prepare();
    size_t n1 = x1->shape[0], n2 = x2 ? x2->shape[0] : n1;
    job *jp = &ctx->j;
    ctx->nt = nt;
    ctx->n1 = n1;
    ctx->n2 = n2;
    jp->p = p;
    jp->x1 = x1->data;
    jp->x2 = x2 ? x2->data : x1->data;
    jp->n1 = n1;
    jp->n2 = n2;
    jp->sample_len = nk_array_size(x1) / n1;
    if (p->npre) {
        /* the plan's leading pools, applied to the data once */
        double *pool_buf = malloc(2 * jp->sample_len * sizeof(double));
        ctx->pooled1 = malloc(n1 * p->pre_len * sizeof(double));
        ctx->pooled2 = x2 ? malloc(n2 * p->pre_len * sizeof(double)) : NULL;
        if (!ctx->pooled1 || (x2 && !ctx->pooled2) || !pool_buf) {
            free(pool_buf);
            nk_kernel_ctx_free(ctx);
            return nk_fail(err, NK_ERR_NOMEM, "kernel: out of memory for the pooled inputs");
        }
        pool_data(p, x1->data, n1, ctx->pooled1, pool_buf);
        if (x2) pool_data(p, x2->data, n2, ctx->pooled2, pool_buf);
        free(pool_buf);
        jp->x1 = ctx->pooled1;
        jp->x2 = x2 ? ctx->pooled2 : ctx->pooled1;
        jp->sample_len = p->pre_len;
    }
    jp->sym = x2 == NULL;
    jp->want_ntk = (o->get & NK_GET_NTK) != 0;
    if ((st = nk_kernel_opts_check(p, o, err)) != NK_OK) {
        nk_kernel_ctx_free(ctx);
        return st;
    }
    jp->torus = nk_torus_setup(p, o->shift, o->f32, &jp->tor);
    jp->progress = o->progress;
    jp->progress_ctx = o->progress_ctx;
    atomic_init(&jp->done, 0);
    atomic_init(&jp->cancel, 0);
    atomic_init(&jp->first_bad, SIZE_MAX);
    atomic_init(&jp->first_bad_self, SIZE_MAX);
    jp->first1 = o->first1;
    jp->first2 = x2 ? o->first2 : o->first1;
    jp->self1 = malloc(n1 * p->self_len * sizeof(double));
    jp->self2 = x2 ? malloc(n2 * p->self_len * sizeof(double)) : jp->self1;
    jp->ws = calloc((size_t)nt, sizeof *jp->ws);
    if (!jp->self1 || !jp->self2 || !jp->ws) st = nk_fail(err, NK_ERR_NOMEM, "kernel: out of memory for per-sample state");
    if (st == NK_OK && p->pe) {
        /* the plane engine's samples and self states, in its layout and precision; SLACK zeros
         * after each array: it reads whole vectors past the end of a row */
        jp->f32 = o->f32 != 0;
        size_t el = jp->f32 ? sizeof(float) : sizeof(double);
        jp->xe_len = nk_plane_sample_len(p->pg);
        jp->se_len = nk_plane_self_len(p->pg);
        jp->xe1 = nk_calloc64(n1 * jp->xe_len + SLACK, el);
        jp->xe2 = x2 ? nk_calloc64(n2 * jp->xe_len + SLACK, el) : jp->xe1;
        jp->win = (double)(n1 + (x2 ? n2 : 0)) * jp->se_len * el > (double)nk_kernel_window_bytes;
        if (!jp->win) {
            jp->se1 = nk_calloc64(n1 * jp->se_len + SLACK, el);
            jp->se2 = x2 ? nk_calloc64(n2 * jp->se_len + SLACK, el) : jp->se1;
        }
        if (!jp->xe1 || !jp->xe2 || (!jp->win && (!jp->se1 || !jp->se2)))
            st = nk_fail(err, NK_ERR_NOMEM, "kernel: out of memory for per-sample state");
        for (size_t i = 0; st == NK_OK && i < n1; i++)
            nk_plane_data(p, jp->f32, jp->x1 + i * jp->sample_len, (char *)jp->xe1 + i * jp->xe_len * el);
        for (size_t i = 0; st == NK_OK && x2 && i < n2; i++)
            nk_plane_data(p, jp->f32, jp->x2 + i * jp->sample_len, (char *)jp->xe2 + i * jp->xe_len * el);
    }
    if (st == NK_OK && jp->torus) {
        /* the torus path's padded samples and (filled by the self pass) padded variances */
        const size_t m = NK_TORUS_MARGIN(&jp->tor);
        jp->tx_len = nk_torus_sample_len(&jp->tor);
        jp->ts_len = nk_torus_self_len(&jp->tor);
        const size_t el = jp->tel = jp->tor.f32 ? sizeof(float) : sizeof(double);
        ctx->tor[0] = nk_calloc64(n1 * jp->tx_len + 2 * m, el);
        ctx->tor[1] = x2 ? nk_calloc64(n2 * jp->tx_len + 2 * m, el) : ctx->tor[0];
        ctx->tor[2] = nk_calloc64(n1 * jp->ts_len + 2 * m, el);
        ctx->tor[3] = x2 ? nk_calloc64(n2 * jp->ts_len + 2 * m, el) : ctx->tor[2];
        if (!ctx->tor[0] || !ctx->tor[1] || !ctx->tor[2] || !ctx->tor[3])
            st = nk_fail(err, NK_ERR_NOMEM, "kernel: out of memory for per-sample state");
        else {
            jp->tx1 = ctx->tor[0] + m * el;
            jp->tx2 = ctx->tor[1] + m * el;
            jp->ts1 = ctx->tor[2] + m * el;
            jp->ts2 = ctx->tor[3] + m * el;
            for (size_t i = 0; i < n1; i++) nk_torus_data(&jp->tor, jp->x1 + i * jp->sample_len, jp->tx1 + i * jp->tx_len * el);
            for (size_t i = 0; x2 && i < n2; i++)
                nk_torus_data(&jp->tor, jp->x2 + i * jp->sample_len, jp->tx2 + i * jp->tx_len * el);
        }
    }
    for (int t = 0; st == NK_OK && t < nt; t++) {
        if (ws_alloc(&jp->ws[t], p)) st = nk_fail(err, NK_ERR_NOMEM, "kernel: out of memory for thread workspaces");
        if (st == NK_OK && jp->torus &&
            !(jp->ws[t].torus = nk_calloc64(nk_torus_work(&jp->tor) + 2 * (size_t)jp->tor.nd, sizeof(double))))
            st = nk_fail(err, NK_ERR_NOMEM, "kernel: out of memory for thread workspaces");
        if (st == NK_OK && jp->win &&
            !(jp->ws[t].se = nk_calloc64(jp->se_len + SLACK, jp->f32 ? sizeof(float) : sizeof(double))))
            st = nk_fail(err, NK_ERR_NOMEM, "kernel: out of memory for thread workspaces");
    }
    if (st == NK_OK && p->mlp && jp->sym) {
        ctx->gram_diag = malloc(n1 * sizeof(double));
        if (!ctx->gram_diag) st = nk_fail(err, NK_ERR_NOMEM, "kernel: out of memory for per-sample state");
        jp->gram_diag = ctx->gram_diag;
    }
    if (st == NK_OK) {
        /* Our threads each run one BLAS call at a time: keep OpenBLAS single-threaded inside. */
        int blas_threads = openblas_get_num_threads();
        openblas_set_num_threads(1);
        if (jp->gram_diag) nk_parallel_for((n1 + MLP_TILE - 1) / MLP_TILE, nt, mlp_diag_unit, jp);
        nk_parallel_for(n1 + (x2 ? n2 : 0), nt, self_unit, jp);
        openblas_set_num_threads(blas_threads);
        if (atomic_load(&jp->first_bad_self) != SIZE_MAX) st = diagnose_nonfinite(jp, jp->first1, jp->first2, err);
    }
    if (st != NK_OK) {
        nk_kernel_ctx_free(ctx);
        return st;
    }
    *out = ctx;
    return NK_OK;
}

/* Self states by window: one sample's plane-engine self pass into its slot (the rows to fill
 * first, then the columns); the rest of its self state (self1, self2) was made at creation. */
static void window_unit(void *ctx, size_t u, int thread)
{
    job *j = ctx;
    const int col = u >= j->fill_nr;
    const size_t i = col ? j->fill_c0 + (u - j->fill_nr) : j->fill_r0 + u;
    const void *xe = plane_at(j, col && !j->sym ? j->xe2 : j->xe1, j->xe_len, i);
    void *se = col ? se_col(j, i) : se_row(j, i);
    plane_run(j, &j->ws[thread], xe, xe, se, se, se, 0);
}

/* Room for n samples' self states in *a (*cap samples now): an array made anew holds nothing
 * (*hi = lo: after a failed allocation no range claims samples that were not made) */
static nk_status window_room(const job *j, void **a, size_t *cap, size_t *hi, size_t lo, size_t n, nk_error *err)
{
    if (n <= *cap) return NK_OK;
    free(*a);
    *hi = lo;
    *cap = 0;
    if (!(*a = nk_calloc64(n * j->se_len + SLACK, j->f32 ? sizeof(float) : sizeof(double))))
        return nk_fail(err, NK_ERR_NOMEM, "kernel: out of memory for the self states of a tile");
    *cap = n;
    return NK_OK;
}

/* The window for a tile of rows r0..r1 and columns c0..c1: what it does not hold yet, made by
 * the self passes (a diagonal tile of a Gram: the rows' array serves the columns). */
static nk_status window_fill(nk_kernel_ctx *c, size_t r0, size_t r1, size_t c0, size_t c1, nk_error *err)
{
    job *j = &c->j;
    const int share = j->sym && r0 == c0 && r1 == c1;
    const size_t nr = j->ser && j->wr0 == r0 && j->wr1 == r1 ? 0 : r1 - r0;
    const size_t nc = share || (j->scol && j->wc0 == c0 && j->wc1 == c1) ? 0 : c1 - c0;
    /* room first, then the ranges */
    nk_status st;
    if ((st = window_room(j, &j->ser, &j->cap_r, &j->wr1, j->wr0, nr, err)) ||
        (st = window_room(j, &j->scol, &j->cap_c, &j->wc1, j->wc0, nc, err)))
        return st;
    if (nr) {
        j->wr0 = r0;
        j->wr1 = r1;
    }
    if (nc) {
        j->wc0 = c0;
        j->wc1 = c1;
    }
    j->sec = share ? j->ser : j->scol;
    j->sc0 = share ? r0 : c0;
    j->fill_r0 = r0;
    j->fill_nr = nr;
    j->fill_c0 = c0;
    if (nr + nc) nk_parallel_for(nr + nc, c->nt, window_unit, j);
    return NK_OK;
}

size_t nk_plan_tile_align(const nk_plan *p)
{
    return p->mlp ? MLP_TILE : PAIR_ROWS;
}

size_t nk_kernel_tile_align(const nk_kernel_ctx *c)
{
    return nk_plan_tile_align(c->j.p);
}

nk_status nk_kernel_tile(nk_kernel_ctx *c, size_t r0, size_t r1, size_t c0, size_t c1, double *nngp,
                         double *ntk, size_t ld, nk_error *err)
{
    job *j = &c->j;
    const size_t align = nk_kernel_tile_align(c);
    if (r0 >= r1 || c0 >= c1 || r1 > c->n1 || c1 > c->n2 || r0 % align || c0 % align || ld < c1 - c0)
        return nk_fail(err, NK_ERR_INPUT, "kernel tile: rows %zu..%zu, columns %zu..%zu, ld %zu do not fit a %zu x %zu matrix "
                       "(starts must be multiples of %zu, ld at least the tile's width)", r0, r1, c0, c1, ld, c->n1, c->n2, align);
    if (j->want_ntk && !ntk) return nk_fail(err, NK_ERR_INPUT, "kernel tile: NTK requested but no output given");
    j->r0 = r0; j->r1 = r1; j->c0 = c0; j->c1 = c1; j->ld = ld;
    j->nngp = nngp;
    j->ntk = j->want_ntk ? ntk : NULL;
    atomic_store(&j->done, 0);
    atomic_store(&j->cancel, 0);
    atomic_store(&j->first_bad, SIZE_MAX);
    const size_t nr = r1 - r0, nc = c1 - c0;
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    if (j->win) {
        const nk_status st = window_fill(c, r0, r1, c0, c1, err);
        if (st != NK_OK) {
            openblas_set_num_threads(blas_threads);
            return st;
        }
    }
    if (j->p->mlp) {
        size_t tr = (nr + MLP_TILE - 1) / MLP_TILE, tc = (nc + MLP_TILE - 1) / MLP_TILE;
        j->total = nr * nc;
        nk_parallel_for(tr * tc, c->nt, mlp_unit, j);
    } else {
        /* Units of PAIR_ROWS rows and a block of columns: enough units for balance and progress. */
        size_t cpu = nc / 64 + 1;
        if (cpu > 256) cpu = 256;
        j->cols_per_unit = cpu;
        j->units_per_row = (nc + cpu - 1) / cpu;
        j->total = nr * nc;
        if (j->sym && r0 == c0 && r1 == c1) j->total = nr * (nr + 1) / 2;
        nk_parallel_for((nr + PAIR_ROWS - 1) / PAIR_ROWS * j->units_per_row, c->nt, pair_unit, j);
    }
    openblas_set_num_threads(blas_threads);
    if (atomic_load(&j->first_bad) != SIZE_MAX) return diagnose_nonfinite(j, j->first1, j->first2, err);
    if (atomic_load(&j->cancel)) return nk_fail(err, NK_ERR_RUN, "kernel: cancelled");
    if (j->sym) {
        /* entries below the diagonal whose mirror lies in the tile: copied from it, in blocks
         * so that the transposed reads stay in cache */
        const size_t B = 64;
        for (size_t i0 = r0; i0 < r1; i0 += B)
            for (size_t k0 = c0; k0 < c1 && k0 <= i0; k0 += B)
                for (size_t i = i0; i < i0 + B && i < r1; i++)
                    for (size_t k = k0; k < k0 + B && k < c1 && k < i; k++) {
                        if (k < r0 || i >= c1) continue;
                        const size_t dst = (i - r0) * ld + (k - c0), src = (k - r0) * ld + (i - c0);
                        if (nngp) nngp[dst] = nngp[src];
                        if (j->ntk) ntk[dst] = ntk[src];
                    }
    }
    if (j->progress) j->progress(j->progress_ctx, j->total, j->total);
    return NK_OK;
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
    size_t n1 = x1->shape[0], n2 = x2 ? x2->shape[0] : n1;
    nk_cost cost;
    nk_plan_cost_prec(p, n1, x2 ? n2 : 0, nt, o->f32, &cost);
    double limit = o->mem_limit > 0 ? o->mem_limit : machine_memory();
    if (limit > 0 && cost.bytes > limit)
        return nk_fail(err, NK_ERR_NOMEM, "kernel: the run needs about %.2f GiB but the limit is %.2f GiB (use fewer samples, compute in tiles: nkern kernel --journal, nk_kernel_tile; or fewer threads)",
                       cost.bytes / 1073741824.0, limit / 1073741824.0);

    /* the whole matrix is one tile of the tile path, so that tiles computed anywhere else
     * (nk_kernel_tile, MPI ranks) give the same bits */
    size_t shape[2] = {n1, n2};
    nk_array K = {0}, T = {0};
    nk_kernel_ctx *ctx = NULL;
    st = nk_kernel_ctx_create(p, x1, x2, o, &ctx, err);
    if (st == NK_OK) st = nk_array_alloc(&K, 2, shape, err);
    if (st == NK_OK && (o->get & NK_GET_NTK)) st = nk_array_alloc(&T, 2, shape, err);
    if (st == NK_OK) st = nk_kernel_tile(ctx, 0, n1, 0, n2, K.data, T.data, n2, err);
    nk_kernel_ctx_free(ctx);
    if (st != NK_OK) {
        nk_array_free(&K);
        nk_array_free(&T);
        return st;
    }
    if (nngp && (o->get & NK_GET_NNGP)) *nngp = K; else nk_array_free(&K);
    if (ntk && (o->get & NK_GET_NTK)) *ntk = T; else nk_array_free(&T);
    return NK_OK;
}
