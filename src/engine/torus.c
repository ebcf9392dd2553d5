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

int nk_torus_setup(const nk_plan *p, int shift, nk_torus *t)
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
        for (int a = 0; a < 2; a++) {
            int r = op->pb[a] > op->f[a] - 1 - op->pb[a] ? op->pb[a] : op->f[a] - 1 - op->pb[a];
            if (r > reach[a]) reach[a] = r;
        }
    }
    if (e == p->nops) return 0;
    t->e = e;
    t->n0 = p->in_hw[0];
    t->n1 = p->in_hw[1];
    t->C = p->in_c;
    /* translations: both axes of an image, the one axis of a signal (augment.c) */
    t->s0 = t->n0 > 1 && t->n1 > 1 ? shift : (t->n0 > 1 ? shift : 0);
    t->s1 = t->n1 > 1 ? shift : 0;
    t->h0 = reach[0] > t->s0 ? reach[0] : t->s0;
    t->h1 = reach[1] > t->s1 ? reach[1] : t->s1;
    t->Wp = t->n1 + 2 * t->h1;
    t->R = t->n0 + 2 * t->h0;
    t->PL = (size_t)t->R * t->Wp;
    t->lo = (size_t)t->h0 * t->Wp + t->h1;
    t->hi = (size_t)(t->h0 + t->n0 - 1) * t->Wp + t->h1 + t->n1;
    t->Lr = t->hi - t->lo;
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

size_t nk_torus_sample_len(const nk_torus *t) { return (t->PL * t->C + 7) / 8 * 8; }
size_t nk_torus_self_len(const nk_torus *t) { return 3 * (size_t)t->nact * t->PL; }

/* dst (a padded plane, C values per entry) <- src (n0 x n1 positions, C values each) with its halo
 * wrapped */
static void pad_plane(const nk_torus *t, const double *src, int C, double *dst)
{
    for (int i = -t->h0; i < t->n0 + t->h0; i++) {
        int si = ((i % t->n0) + t->n0) % t->n0;
        double *row = dst + (size_t)(i + t->h0) * t->Wp * C;
        for (int j = -t->h1; j < t->n1 + t->h1; j++) {
            int sj = ((j % t->n1) + t->n1) % t->n1;
            memcpy(row + (size_t)(j + t->h1) * C, src + ((size_t)si * t->n1 + sj) * C, (size_t)C * sizeof(double));
        }
    }
}

void nk_torus_data(const nk_torus *t, const double *x, double *out) { pad_plane(t, x, t->C, out); }

/* The halo of a padded plane from its interior (wrap-around). */
static void halo_fill(const nk_torus *t, double *X)
{
    const int Wp = t->Wp, h0 = t->h0, h1 = t->h1, n0 = t->n0, n1 = t->n1;
    for (int i = 0; i < n0; i++) {
        double *row = X + (size_t)(i + h0) * Wp + h1;
        for (int j = -h1; j < 0; j++) row[j] = row[((j % n1) + n1) % n1];
        for (int j = n1; j < n1 + h1; j++) row[j] = row[j % n1];
    }
    for (int i = -h0; i < 0; i++)
        memcpy(X + (size_t)(i + h0) * Wp, X + (size_t)(((i % n0) + n0) % n0 + h0) * Wp, (size_t)Wp * sizeof(double));
    for (int i = n0; i < n0 + h0; i++)
        memcpy(X + (size_t)(i + h0) * Wp, X + (size_t)(i % n0 + h0) * Wp, (size_t)Wp * sizeof(double));
}

/* The window mean of a stride-1 circular conv on padded planes over [lo, hi), fused with its
 * affine map: K2 = w2 M(K) + b2, T2 = alpha M(K) + w2 M(T) + beta (T NULL: NNGP only). */
NK_CLONES static void conv_affine(const nk_torus *t, const nk_op *op, const double *restrict K, const double *restrict T,
                                  double *restrict K2, double *restrict T2)
{
    long off[NK_TORUS_TAPS];
    int nt = 0;
    for (int a = 0; a < op->f[0]; a++)
        for (int b = 0; b < op->f[1]; b++) off[nt++] = (long)(a - op->pb[0]) * t->Wp + (b - op->pb[1]);
    const double scale = 1.0 / nt, w2 = op->w2, b2 = op->b2, al = op->alpha, be = op->beta;
    const size_t lo = t->lo, hi = t->hi;
    if (nt == 9) {
        const long o0 = off[0], o1 = off[1], o2 = off[2], o3 = off[3], o4 = off[4], o5 = off[5], o6 = off[6],
                   o7 = off[7], o8 = off[8];
        if (T)
            for (size_t k = lo; k < hi; k++) {
                double m = (K[k + o0] + K[k + o1] + K[k + o2] + K[k + o3] + K[k + o4] + K[k + o5] + K[k + o6] +
                            K[k + o7] + K[k + o8]) * scale;
                double mt = (T[k + o0] + T[k + o1] + T[k + o2] + T[k + o3] + T[k + o4] + T[k + o5] + T[k + o6] +
                             T[k + o7] + T[k + o8]) * scale;
                K2[k] = w2 * m + b2;
                T2[k] = al * m + w2 * mt + be;
            }
        else
            for (size_t k = lo; k < hi; k++)
                K2[k] = w2 * ((K[k + o0] + K[k + o1] + K[k + o2] + K[k + o3] + K[k + o4] + K[k + o5] + K[k + o6] +
                               K[k + o7] + K[k + o8]) * scale) + b2;
        return;
    }
    for (size_t k0 = lo; k0 < hi; k0 += 256) {
        size_t k1 = k0 + 256 < hi ? k0 + 256 : hi;
        for (size_t k = k0; k < k1; k++) K2[k] = K[k + off[0]];
        for (int i = 1; i < nt; i++)
            for (size_t k = k0; k < k1; k++) K2[k] += K[k + off[i]];
        if (T) {
            for (size_t k = k0; k < k1; k++) T2[k] = T[k + off[0]];
            for (int i = 1; i < nt; i++)
                for (size_t k = k0; k < k1; k++) T2[k] += T[k + off[i]];
            for (size_t k = k0; k < k1; k++) {
                double m = K2[k] * scale;
                T2[k] = al * m + w2 * (T2[k] * scale) + be;
                K2[k] = w2 * m + b2;
            }
        } else
            for (size_t k = k0; k < k1; k++) K2[k] = w2 * (K2[k] * scale) + b2;
    }
}

/* One plane: the diagonal of K(xa, t_d xb) (and T) through ops [0, e), its mean into *k, *tt.
 * xa, xb: padded samples; sa, sb: padded variances [a | sqrt a | 1/sqrt a] of every activation
 * (nk_torus_self).  An entry's second sample sits d = (dy, dx) back, off = dy Wp + dx elements
 * before it in the padded planes: the activations run over whole planes (PL entries, the
 * layout nk_act_pointwise reads with roots PL apart), so that the second sample's planes are
 * read at -off with no copy; entries in the halo read values of the neighbouring rows or
 * planes (finite, and overwritten by the halo fill before any window reads them).  Self pass
 * (self_out non-NULL, xa = xb, d = 0): each activation's input variances are first written to
 * self_out (as the layer-by-layer path lays them out) and to sa (padded), and read from there,
 * so that a sample paired with itself sees exactly its own variances. */
static void one_plane(const nk_torus *t, const nk_plan *p, const double *xa, const double *xb, const double *sa,
                      const double *sb, int dy, int dx, double *self_out, double *sa_out, int want_ntk, double *buf,
                      double *k_out, double *t_out)
{
    double *K = buf, *T = buf + t->PL, *K2 = buf + 2 * t->PL, *T2 = buf + 3 * t->PL;
    const size_t PL = t->PL, P = (size_t)t->n0 * t->n1;
    const long off = (long)dy * t->Wp + dx;
    const int C = t->C;
    /* K0[p] = <x_p, x'_(p - d)> / C (the layer-by-layer path's sum and division); T0 = 0 */
    const double *xs = xb - off * C;
    if (C == 1)
        for (size_t q = 0; q < PL; q++) K[q] = xa[q] * xs[q];
    else
        for (size_t q = 0; q < PL; q++) {
            double acc = 0;
            for (int c = 0; c < C; c++) acc += xa[q * C + c] * xs[q * C + c];
            K[q] = acc / C;
        }
    if (want_ntk) memset(T, 0, PL * sizeof(double));
    for (int i = 0, n = 0; i < t->e; i++) {
        const nk_op *op = &p->ops[i];
        if (op->kind == OP_ACT) {
            const double *a = sa + 3 * (size_t)n * PL, *b = sb + 3 * (size_t)n * PL - off;
            if (self_out) {
                double *s = self_out + op->self_off, *pa = sa_out + 3 * (size_t)n * PL;
                for (int r = 0; r < t->n0; r++)
                    memcpy(s + (size_t)r * t->n1, K + (size_t)(r + t->h0) * t->Wp + t->h1, (size_t)t->n1 * sizeof(double));
                nk_self_roots(s, P);
                for (int q = 0; q < 3; q++) pad_plane(t, s + q * P, 1, pa + q * PL);
                a = b = pa;
            }
            n++;
            nk_act_pointwise(op, p->quad_order, K, want_ntk ? T : NULL, PL, a, b);
        } else if (op->f[0] * op->f[1] == 1) {
            nk_affine_update(K, want_ntk ? T : NULL, PL, op->w2, op->b2, op->alpha, op->beta);
        } else {
            halo_fill(t, K);
            if (want_ntk) halo_fill(t, T);
            conv_affine(t, op, K, want_ntk ? T : NULL, K2, want_ntk ? T2 : NULL);
            { double *x = K; K = K2; K2 = x; }
            { double *x = T; T = T2; T2 = x; }
        }
    }
    /* the flatten: the mean over the grid, in position order */
    double k = 0, tt = 0;
    for (int r = 0; r < t->n0; r++) {
        const double *kr = K + (size_t)(r + t->h0) * t->Wp + t->h1;
        for (int j = 0; j < t->n1; j++) k += kr[j];
        if (want_ntk) {
            const double *tr = T + (size_t)(r + t->h0) * t->Wp + t->h1;
            for (int j = 0; j < t->n1; j++) tt += tr[j];
        }
    }
    *k_out = k / (double)P;
    *t_out = want_ntk ? tt / (double)P : 0;
}

double nk_torus_self(const nk_torus *t, const nk_plan *p, const double *xpad, double *self_out, double *spad,
                     double *buf)
{
    double k, tt;
    one_plane(t, p, xpad, xpad, spad, spad, 0, 0, self_out, spad, 0, buf, &k, &tt);
    return k;
}

void nk_torus_pair(const nk_torus *t, const nk_plan *p, const double *xa, const double *xb, const double *sa,
                   const double *sb, int want_ntk, double *buf, double *Kd, double *Td)
{
    for (int d = 0; d < t->nd; d++)
        one_plane(t, p, xa, xb, sa, sb, t->dy[d], t->dx[d], NULL, NULL, want_ntk, buf, &Kd[d], &Td[d]);
}
