/* ops.c -- the operations of the recursion on one state: window means of covariances and
 * activations.  Plain C; SIMD versions go beside these, with these as the reference. */
#include "internal.h"

#include <math.h>
#include <string.h>

#define PI 3.14159265358979323846

void nk_window_full(const nk_op *op, int pool, const double *in, double *out, double *tmp)
{
    const int h = op->in_hw[0], w = op->in_hw[1], H = op->out_hw[0], W = op->out_hw[1];
    const int f0 = op->f[0], f1 = op->f[1];
    /* Pass along axis 0 on the pair of axes (h, h'): tmp[H][w][H][w]. */
    memset(tmp, 0, sizeof(double) * (size_t)H * w * H * w);
    for (int q = 0; q < H; q++)
        for (int q2 = 0; q2 < H; q2++)
            for (int d = 0; d < f0; d++) {
                int i = nk_axis_index(q, d, op->s[0], op->pb[0], h, op->pad);
                if (i < 0) continue;
                for (int d2 = pool ? 0 : d; d2 < (pool ? f0 : d + 1); d2++) {
                    int i2 = nk_axis_index(q2, d2, op->s[0], op->pb[0], h, op->pad);
                    if (i2 < 0) continue;
                    for (int a = 0; a < w; a++) {
                        const double *src = in + (((size_t)i * w + a) * h + i2) * w;
                        double *dst = tmp + (((size_t)q * w + a) * H + q2) * w;
                        for (int c = 0; c < w; c++) dst[c] += src[c];
                    }
                }
            }
    /* Pass along axis 1 on (w, w'): out[H][W][H][W]. */
    double scale = pool ? 1.0 / ((double)f0 * f0 * f1 * f1) : 1.0 / ((double)f0 * f1);
    for (int q = 0; q < H; q++)
        for (int r = 0; r < W; r++)
            for (int q2 = 0; q2 < H; q2++) {
                const double *src = tmp + (size_t)q * w * H * w + (size_t)q2 * w;
                double *dst = out + (((size_t)q * W + r) * H + q2) * W;
                for (int r2 = 0; r2 < W; r2++) {
                    double acc = 0;
                    for (int d = 0; d < f1; d++) {
                        int j = nk_axis_index(r, d, op->s[1], op->pb[1], w, op->pad);
                        if (j < 0) continue;
                        for (int d2 = pool ? 0 : d; d2 < (pool ? f1 : d + 1); d2++) {
                            int j2 = nk_axis_index(r2, d2, op->s[1], op->pb[1], w, op->pad);
                            if (j2 >= 0) acc += src[(size_t)j * H * w + j2];
                        }
                    }
                    dst[r2] = acc * scale;
                }
            }
}

void nk_window_diag(const nk_op *op, const double *in, double *out)
{
    const int h = op->in_hw[0], w = op->in_hw[1], H = op->out_hw[0], W = op->out_hw[1];
    const double scale = 1.0 / ((double)op->f[0] * op->f[1]);
    for (int q = 0; q < H; q++)
        for (int r = 0; r < W; r++) {
            double acc = 0;
            for (int d = 0; d < op->f[0]; d++) {
                int i = nk_axis_index(q, d, op->s[0], op->pb[0], h, op->pad);
                if (i < 0) continue;
                for (int e = 0; e < op->f[1]; e++) {
                    int j = nk_axis_index(r, e, op->s[1], op->pb[1], w, op->pad);
                    if (j >= 0) acc += in[(size_t)i * w + j];
                }
            }
            out[(size_t)q * W + r] = acc * scale;
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
    *k = sab * (1.0 / (2 * PI)) * (sqrt(1 - rho * rho) + (PI - th) * rho);
    if (t) *t *= (PI - th) * (1.0 / (2 * PI));
}

static inline void generic_entry(const nk_act *act, int quad, double *k, double *t, double a, double b)
{
    double kk, kd;
    nk_act_dual(act, a, b, *k, quad, &kk, t ? &kd : NULL);
    *k = kk;
    if (t) *t *= kd;
}

void nk_act_grid(const nk_op *op, int quad, double *K, double *T, int nr, int nc,
                 const double *sa, size_t sa_step, const double *sb, size_t sb_step, double *work)
{
    if (op->act.kind == NK_ACT_RELU) {
        double *b = work;
        for (int c = 0; c < nc; c++) b[c] = sb[(size_t)c * sb_step];
        for (int r = 0; r < nr; r++) {
            double a = sa[(size_t)r * sa_step];
            double *kr = K + (size_t)r * nc, *tr = T ? T + (size_t)r * nc : NULL;
            for (int c = 0; c < nc; c++) relu_entry(kr + c, tr ? tr + c : NULL, a, b[c]);
        }
        return;
    }
    for (int r = 0; r < nr; r++) {
        double a = sa[(size_t)r * sa_step];
        double *kr = K + (size_t)r * nc, *tr = T ? T + (size_t)r * nc : NULL;
        for (int c = 0; c < nc; c++) generic_entry(&op->act, quad, kr + c, tr ? tr + c : NULL, a, sb[(size_t)c * sb_step]);
    }
}

void nk_act_pointwise(const nk_op *op, int quad, double *K, double *T, size_t n, const double *sa, const double *sb)
{
    if (op->act.kind == NK_ACT_RELU) {
        for (size_t i = 0; i < n; i++) relu_entry(K + i, T ? T + i : NULL, sa[i], sb[i]);
        return;
    }
    for (size_t i = 0; i < n; i++) generic_entry(&op->act, quad, K + i, T ? T + i : NULL, sa[i], sb[i]);
}
