/* torus.c -- stacks of stride-1 circular convolutions and activations read out by a flatten,
 * one pair at a time, with translations of the second sample on the fly.
 *
 * With circular padding every position is interior: a conv moves both positions of a
 * covariance entry by the same offset on the torus, and a translation t_d of one input
 * (t_d x)(p) = x(p - d) commutes with the whole stack.  The flatten reads the diagonal
 * K(x, t_d x')[p, p], and that plane obeys the same recursion as the diagonal of K(x, x'),
 * with the second sample's input and self-variances read at p - d.  So the kernel of the data
 * closed under translations, sum_d w_d K(x, t_d x') (augment.c), is one pair's D planes: no
 * translated copies of the data, no self pass per translation, and a Gram needs only its
 * pairs i <= j (the weights are even in d).
 *
 * A plane is stored with a halo of wrapped rows and columns around the n0 x n1 grid, so each
 * window sum is a few contiguous, vectorizable adds over the rows (the halo columns in between
 * are computed as garbage and overwritten by the next halo fill). */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int nk_torus_enabled = 1;

int nk_torus_setup(const nk_plan *p, int shift, int f32, nk_torus *t)
{
    memset(t, 0, sizeof *t);
    if (!nk_torus_enabled || p->mlp || p->npre || p->flat_input || p->pe || p->in_mode != NK_MODE_DIAG) return 0;
    if (p->in_ndim != 2 && p->in_ndim != 3) return 0;
    int e = 0, reach[2] = {0, 0};
    for (; e < p->nops; e++) {
        const nk_op *op = &p->ops[e];
        if (op->mode != NK_MODE_DIAG) return 0;
        if (op->kind == OP_FLATTEN) break;
        if (op->kind == OP_ACT) {
            if (op->mehler) return 0;   /* its per-position records stay with the general path */
            t->nact++;
            continue;
        }
        if (op->kind != OP_AFFINE || op->s[0] != 1 || op->s[1] != 1) return 0;
        if (op->in_hw[0] != op->out_hw[0] || op->in_hw[1] != op->out_hw[1]) return 0;
        if (op->f[0] * op->f[1] > 1 && op->pad != PAD_CIRCULAR) return 0;
        if (op->f[0] * op->f[1] > NK_TORUS_TAPS) return 0;   /* conv_affine's offsets (torus_body.h) */
        for (int a = 0; a < 2; a++) {
            int r = op->pb[a] > op->f[a] - 1 - op->pb[a] ? op->pb[a] : op->f[a] - 1 - op->pb[a];
            if (r > reach[a]) reach[a] = r;
        }
    }
    if (e == p->nops) return 0;
    t->e = e;
    /* float32 runs the ReLU of the plane engine's float32 arithmetic; other activations stay float64 */
    t->f32 = f32 != 0;
    for (int i = 0; i < e; i++)
        if (p->ops[i].kind == OP_ACT && p->ops[i].act.kind != NK_ACT_RELU) t->f32 = 0;
    t->n0 = p->in_hw[0];
    t->n1 = p->in_hw[1];
    t->C = p->in_c;
    /* translations: both axes of an image, the one axis of a signal (augment.c) */
    t->s0 = t->n0 > 1 ? shift : 0;
    t->s1 = t->n1 > 1 ? shift : 0;
    t->h0 = reach[0] > t->s0 ? reach[0] : t->s0;
    t->h1 = reach[1] > t->s1 ? reach[1] : t->s1;
    t->Wp = t->n1 + 2 * t->h1;
    t->R = t->n0 + 2 * t->h0;
    t->PL = (size_t)t->R * t->Wp;
    t->lo = (size_t)t->h0 * t->Wp + t->h1;
    t->hi = (size_t)(t->h0 + t->n0 - 1) * t->Wp + t->h1 + t->n1;
    /* the distinct differences d = v - u of translations u, v in {0..s}^2, weighted by how often
     * they occur over |A|^2 (augment.c); even in d */
    int na = (t->s0 + 1) * (t->s1 + 1);
    t->nd = 0;
    for (int dy = -t->s0; dy <= t->s0; dy++)
        for (int dx = -t->s1; dx <= t->s1; dx++) {
            t->dy[t->nd] = dy;
            t->dx[t->nd] = dx;
            t->wt[t->nd++] = (double)((t->s0 + 1 - abs(dy)) * (t->s1 + 1 - abs(dx))) / ((double)na * na);
        }
    return 1;
}

size_t nk_torus_work(const nk_torus *t)
{
    /* K, T, K2, T2 planes */
    return 4 * t->PL;
}

size_t nk_torus_sample_len(const nk_torus *t) { return (t->PL * t->C + 15) / 16 * 16; }
size_t nk_torus_self_len(const nk_torus *t) { return (3 * (size_t)t->nact * t->PL + 15) / 16 * 16; }

#define R double
#define FN(x) x##_f64
#define ACT_POINTS nk_act_pointwise
#include "torus_body.h"
#undef R
#undef FN
#undef ACT_POINTS
#define R float
#define FN(x) x##_f32
#define ACT_POINTS(op, quad, K, T, n, A, B) nk_relu_points32(K, T, n, A, B)
#include "torus_body.h"
#undef R
#undef FN
#undef ACT_POINTS

void nk_torus_data(const nk_torus *t, const double *x, void *out)
{
    if (t->f32) pad_plane_f32(t, x, t->C, out);
    else pad_plane_f64(t, x, t->C, out);
}

double nk_torus_self(const nk_torus *t, const nk_plan *p, const void *xpad, double *self_out, void *spad, void *buf)
{
    double k, tt;
    if (t->f32) one_plane_f32(t, p, xpad, xpad, spad, spad, 0, 0, self_out, spad, 0, buf, &k, &tt);
    else one_plane_f64(t, p, xpad, xpad, spad, spad, 0, 0, self_out, spad, 0, buf, &k, &tt);
    return k;
}

void nk_torus_pair(const nk_torus *t, const nk_plan *p, const void *xa, const void *xb, const void *sa,
                   const void *sb, int want_ntk, void *buf, double *Kd, double *Td)
{
    for (int d = 0; d < t->nd; d++)
        if (t->f32) one_plane_f32(t, p, xa, xb, sa, sb, t->dy[d], t->dx[d], NULL, NULL, want_ntk, buf, &Kd[d], &Td[d]);
        else one_plane_f64(t, p, xa, xb, sa, sb, t->dy[d], t->dx[d], NULL, NULL, want_ntk, buf, &Kd[d], &Td[d]);
}

