/* ops.c -- the operations of the recursion on one state: window means of covariances and
 * activations.  Plain C; SIMD versions go beside these, with these as the reference. */
#include "internal.h"

#include <math.h>
#include <string.h>


/* out[r] += sum over taps d in [d0, d1) of in[r s + d - pb] (zero outside, or wrapped), for
 * r in [0, n_out).  Stride 1 without wrap-around is a few contiguous, vectorizable adds. */
static inline void add_taps(const double *restrict in, int n_in, double *restrict out, int n_out, int s, int pb,
                     nk_pad pad, int d0, int d1)
{
    if (s == 1 && pad != PAD_CIRCULAR) {
        for (int d = d0; d < d1; d++) {
            int off = d - pb, lo = off < 0 ? -off : 0, hi = n_in - off < n_out ? n_in - off : n_out;
            const double *src = in + off;
            for (int r = lo; r < hi; r++) out[r] += src[r];
        }
        return;
    }
    if (s == 1) {
        /* wrap-around at stride 1: each tap reads the input rotated by its offset, i.e. at most
         * a few contiguous runs that end where the input wraps */
        for (int d = d0; d < d1; d++) {
            int j = (d - pb) % n_in;
            if (j < 0) j += n_in;
            for (int r = 0; r < n_out;) {
                int len = n_in - j < n_out - r ? n_in - j : n_out - r;
                const double *src = in + j - r;
                for (int e = r; e < r + len; e++) out[e] += src[e];
                r += len;
                j = 0;
            }
        }
        return;
    }
    for (int r = 0; r < n_out; r++)
        for (int d = d0; d < d1; d++) {
            int j = nk_axis_index(r, d, s, pb, n_in, pad);
            if (j >= 0) out[r] += in[j];
        }
}

NK_CLONES void nk_window_full(const nk_op *op, int pool, const double *in, double *out, double *tmp)
{
    const int h = op->in_hw[0], w = op->in_hw[1], H = op->out_hw[0], W = op->out_hw[1];
    const int f0 = op->f[0], f1 = op->f[1];
    const size_t bw = (size_t)w * w, bW = (size_t)W * W;
    /* Axis 0: block (q, q2) of tmp [H][H][w][w] sums the input blocks (i, i2) of the window
     * offsets: the same offset on both sides for a conv, every pair for a pool. */
    memset(tmp, 0, sizeof(double) * (size_t)H * H * bw);
    for (int q = 0; q < H; q++)
        for (int q2 = 0; q2 < H; q2++) {
            double *dst = tmp + ((size_t)q * H + q2) * bw;
            for (int d = 0; d < f0; d++) {
                int i = nk_axis_index(q, d, op->s[0], op->pb[0], h, op->pad);
                if (i < 0) continue;
                for (int d2 = pool ? 0 : d; d2 < (pool ? f0 : d + 1); d2++) {
                    int i2 = nk_axis_index(q2, d2, op->s[0], op->pb[0], h, op->pad);
                    if (i2 < 0) continue;
                    const double *src = in + ((size_t)i * h + i2) * bw;
                    for (size_t e = 0; e < bw; e++) dst[e] += src[e];
                }
            }
        }
    /* Axis 1 within each block: out[q][q2][r][r2] from rows j(r, e) of the tmp block. */
    const double scale = pool ? 1.0 / ((double)f0 * f0 * f1 * f1) : 1.0 / ((double)f0 * f1);
    memset(out, 0, sizeof(double) * (size_t)H * H * bW);
    for (size_t blk = 0; blk < (size_t)H * H; blk++) {
        const double *src = tmp + blk * bw;
        double *dst = out + blk * bW;
        for (int r = 0; r < W; r++)
            for (int e = 0; e < f1; e++) {
                int j = nk_axis_index(r, e, op->s[1], op->pb[1], w, op->pad);
                if (j >= 0)
                    add_taps(src + (size_t)j * w, w, dst + (size_t)r * W, W, op->s[1], op->pb[1], op->pad,
                             pool ? 0 : e, pool ? f1 : e + 1);
            }
        for (size_t e = 0; e < bW; e++) dst[e] *= scale;
    }
}

NK_CLONES void nk_window_diag(const nk_op *op, const double *in, double *out, double *tmp)
{
    const int h = op->in_hw[0], w = op->in_hw[1], H = op->out_hw[0], W = op->out_hw[1];
    /* along axis 1 within each input row: tmp[h][W] */
    memset(tmp, 0, sizeof(double) * (size_t)h * W);
    for (int i = 0; i < h; i++)
        add_taps(in + (size_t)i * w, w, tmp + (size_t)i * W, W, op->s[1], op->pb[1], op->pad, 0, op->f[1]);
    /* along axis 0: whole rows */
    const double scale = 1.0 / ((double)op->f[0] * op->f[1]);
    memset(out, 0, sizeof(double) * (size_t)H * W);
    for (int q = 0; q < H; q++) {
        double *o = out + (size_t)q * W;
        for (int d = 0; d < op->f[0]; d++) {
            int i = nk_axis_index(q, d, op->s[0], op->pb[0], h, op->pad);
            if (i < 0) continue;
            const double *t = tmp + (size_t)i * W;
            for (int r = 0; r < W; r++) o[r] += t[r];
        }
        for (int r = 0; r < W; r++) o[r] *= scale;
    }
}

/* ReLU: with rho = c / sqrt(ab), theta = arccos rho,
 * K' = sqrt(ab)/2pi (sin theta + (pi - theta) rho), T' = T (pi - theta)/2pi.
 * rho is formed as c / sqrt(a b), not c (1/sqrt a)(1/sqrt b): sqrt(fl(a a)) == a exactly, so a
 * sample paired with itself gets rho == 1 exactly, where arccos is ill-conditioned (an error
 * of 1e-16 in rho moves theta by 1.5e-8).  A zero variance gives rho = 0 (see act.c). */
static inline void relu_entry(double *k, double *t, double a, double b)
{
    double sab = sqrt(a * b);
    double rho = sab > 0 ? *k / sab : 0;
    rho = rho > 1 ? 1 : rho < -1 ? -1 : rho;
    double th = acos(rho);
    *k = sab * (1.0 / (2 * NK_PI)) * (sqrt(1 - rho * rho) + (NK_PI - th) * rho);
    if (t) *t *= (NK_PI - th) * (1.0 / (2 * NK_PI));
}

NK_CLONES void nk_conv_full_fused(const nk_op *op, const double *Kin, const double *Tin, double *Kout, double *Tout,
                                  int relu, const double *sa, const double *sb, double *work)
{
    const int h = op->in_hw[0], w = op->in_hw[1], H = op->out_hw[0], W = op->out_hw[1];
    const int f0 = op->f[0], f1 = op->f[1], pb0 = op->pb[0], pb1 = op->pb[1];
    const size_t Pout = (size_t)H * W, bw = (size_t)w * w, bW = (size_t)W * W;
    const double scale = 1.0 / ((double)f0 * f1);
    double *restrict acc = work, *restrict acct = work + bw, *restrict ok = work + 2 * bw, *restrict ot = ok + bW;
    const double *rb = relu ? sb + 2 * Pout : NULL, *rtb = relu ? sb + Pout : NULL;
    for (int q = 0; q < H; q++)
        for (int q2 = 0; q2 < H; q2++) {
            /* axis 0: the contiguous blocks (q + d - pb, q2 + d - pb) on the diagonal */
            memset(acc, 0, sizeof(double) * bw);
            if (Tin) memset(acct, 0, sizeof(double) * bw);
            for (int d = 0; d < f0; d++) {
                int i = q + d - pb0, i2 = q2 + d - pb0;
                if (i < 0 || i >= h || i2 < 0 || i2 >= h) continue;
                const double *src = Kin + ((size_t)i * h + i2) * bw;
                for (size_t e = 0; e < bw; e++) acc[e] += src[e];
                if (Tin) {
                    const double *st = Tin + ((size_t)i * h + i2) * bw;
                    for (size_t e = 0; e < bw; e++) acct[e] += st[e];
                }
            }
            /* axis 1 within the block: the same offset e on both sides */
            memset(ok, 0, sizeof(double) * bW);
            if (Tin) memset(ot, 0, sizeof(double) * bW);
            for (int r = 0; r < W; r++)
                for (int e = 0; e < f1; e++) {
                    int j = r + e - pb1;
                    if (j < 0 || j >= w) continue;
                    int off = e - pb1, lo = off < 0 ? -off : 0, hi = w - off < W ? w - off : W;
                    const double *src = acc + (size_t)j * w + off;
                    double *dst = ok + (size_t)r * W;
                    for (int r2 = lo; r2 < hi; r2++) dst[r2] += src[r2];
                    if (Tin) {
                        const double *st = acct + (size_t)j * w + off;
                        double *dt = ot + (size_t)r * W;
                        for (int r2 = lo; r2 < hi; r2++) dt[r2] += st[r2];
                    }
                }
            /* affine map, optional ReLU, one write of the contiguous output block */
            double *kd = Kout + ((size_t)q * H + q2) * bW, *td = Tin ? Tout + ((size_t)q * H + q2) * bW : NULL;
            for (size_t e = 0; e < bW; e++) {
                double m = ok[e] * scale;
                if (td) td[e] = op->alpha * m + op->w2 * (ot[e] * scale) + op->beta;
                kd[e] = op->w2 * m + op->b2;
            }
            if (relu)
                for (int r = 0; r < W; r++) {
                    size_t p = (size_t)q * W + r, c0 = (size_t)q2 * W;
                    nk_relu_grid(kd + (size_t)r * W, td ? td + (size_t)r * W : NULL, 1, W, sa + p, 0, Pout, sb + c0,
                                 rtb + c0, rb + c0, NULL);
                }
        }
}

void nk_act_full(const nk_op *op, int quad, double *K, double *T, int h, int w, const double *sa, const double *sb,
                 double *work)
{
    const size_t P = (size_t)h * w, bw = (size_t)w * w;
    for (int i = 0; i < h; i++)
        for (int i2 = 0; i2 < h; i2++) {
            double *kb = K + ((size_t)i * h + i2) * bw, *tb = T ? T + ((size_t)i * h + i2) * bw : NULL;
            /* rows (i, a) against the columns (i2, 0..w-1): a w x w grid with row variances at
             * i w + a and column variances at i2 w + c */
            nk_act_grid(op, quad, kb, tb, w, w, sa + (size_t)i * w, 1, sb + (size_t)i2 * w, 1, P, work);
        }
}

void nk_self_roots(double *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        a[n + i] = sqrt(a[i]);
        a[2 * n + i] = a[i] > 0 ? 1 / a[n + i] : 0;
    }
}

void nk_relu_reference(double *k, double *t, double a, double b) { relu_entry(k, t, a, b); }

/* The Mehler form at one entry whose variances carry no record (an activation the plane engine
 * runs, recomputed layer by layer): both records made here, at the cost of four table look-ups. */
static void mehler_entry(const nk_act *act, double *k, double *t, double a, double b)
{
    double ra[3 + NK_MEHLER_REC], rb[3 + NK_MEHLER_REC], work[NK_MEHLER_REC + 6];
    ra[0] = a; rb[0] = b;
    nk_self_roots(ra, 1);
    nk_self_roots(rb, 1);
    nk_mehler_record(act, a, NK_MEHLER_TOL64, ra + 3, 1);
    nk_mehler_record(act, b, NK_MEHLER_TOL64, rb + 3, 1);
    nk_mehler_grid(act, k, t, 1, 1, ra, 0, rb, 0, 1, work);
}

static inline void generic_entry(const nk_act *act, int quad, double *k, double *t, double a, double b)
{
    if (nk_mehler_used(act->kind, quad)) {
        mehler_entry(act, k, t, a, b);
        return;
    }
    double kk, kd;
    nk_act_dual(act, a, b, *k, quad > 0 ? quad : nk_quad_auto(act, a, b), &kk, t ? &kd : NULL);
    *k = kk;
    if (t) *t *= kd;
}

void nk_act_entry(const nk_act *act, int quad, double *k, double *t, double a, double b)
{
    generic_entry(act, quad, k, t, a, b);
}

void nk_affine_act_grid(const nk_op *op, int quad, const double *aff, double *K, double *T, int nr, int nc,
                        const double *sa, size_t sa_step, const double *sb, size_t sb_step, size_t plen, double *work)
{
    if (op->act.kind == NK_ACT_RELU) {
        double *b = work, *rtb = work + nc, *rcb = work + 2 * nc;
        for (int c = 0; c < nc; c++) {
            const double *s = sb + (size_t)c * sb_step;
            b[c] = s[0]; rtb[c] = s[plen]; rcb[c] = s[2 * plen];
        }
        nk_relu_grid(K, T, nr, nc, sa, sa_step, plen, b, rtb, rcb, aff);
        return;
    }
    if (aff) nk_affine_update(K, T, (size_t)nr * nc, aff[0], aff[1], aff[2], aff[3]);
    if (op->mehler && quad <= 0) {
        nk_mehler_grid(&op->act, K, T, nr, nc, sa, sa_step, sb, sb_step, plen, work);
        return;
    }
    for (int r = 0; r < nr; r++) {
        double a = sa[(size_t)r * sa_step];
        double *kr = K + (size_t)r * nc, *tr = T ? T + (size_t)r * nc : NULL;
        for (int c = 0; c < nc; c++) generic_entry(&op->act, quad, kr + c, tr ? tr + c : NULL, a, sb[(size_t)c * sb_step]);
    }
}

void nk_act_grid(const nk_op *op, int quad, double *K, double *T, int nr, int nc,
                 const double *sa, size_t sa_step, const double *sb, size_t sb_step, size_t plen, double *work)
{
    nk_affine_act_grid(op, quad, NULL, K, T, nr, nc, sa, sa_step, sb, sb_step, plen, work);
}

void nk_act_pointwise(const nk_op *op, int quad, double *K, double *T, size_t n, const double *sa, const double *sb)
{
    if (op->act.kind == NK_ACT_RELU) {
        nk_relu_points(K, T, n, sa, sb);
        return;
    }
    if (op->mehler && quad <= 0) {
        double work[NK_MEHLER_REC + 6];
        for (size_t i = 0; i < n; i++) nk_mehler_grid(&op->act, K + i, T ? T + i : NULL, 1, 1, sa + i, 0, sb + i, 0, n, work);
        return;
    }
    for (size_t i = 0; i < n; i++) generic_entry(&op->act, quad, K + i, T ? T + i : NULL, sa[i], sb[i]);
}

NK_CLONES void nk_affine_update(double *restrict K, double *restrict T, size_t n, double w2, double b2,
                                double alpha, double beta)
{
    if (T)
        for (size_t k = 0; k < n; k++) {
            double m = K[k];
            T[k] = alpha * m + w2 * T[k] + beta;
            K[k] = w2 * m + b2;
        }
    else
        for (size_t k = 0; k < n; k++) K[k] = w2 * K[k] + b2;
}
