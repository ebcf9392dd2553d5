/* augment.c -- the kernel of horizontal-flip data augmentation, computed by the engine on
 * flipped copies of the inputs.
 *
 * An infinite ensemble trained on a data set closed under a group G of input transforms (here
 * G = {1, f}, f the mirror image along the last spatial axis) has the kernel
 *   K_G(x, x') = |G|^-2 sum_{g,h in G} K(g x, h x')
 * (NNGP and NTK alike), positive semi-definite because it is K of the averaged features.  If the
 * architecture commutes with f (K(f x, f x') = K(x, x') for all x, x'), the four terms pair up:
 *   K_G(x, x') = 1/2 [K(x, x') + K(x, f x')]
 * at half the cost.  That shortcut is not PSD for an architecture that is not mirror-symmetric
 * (an even filter with same padding, a valid window or a stride that drops a border column), so
 * it is taken only when nk_plan_flip_invariant says the plan is exactly symmetric. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* A window op (conv, dense, pool) maps output q and offset d to input q s + d - pb.  It commutes
 * with the mirror on an axis of n inputs and `out` outputs iff mirroring q and d mirrors the
 * input: (out - 1 - q) s + (f - 1 - d) - pb = n - 1 - (q s + d - pb), i.e.
 *   (out - 1) s + f - n = 2 pb   (modulo n for circular padding). */
static int window_symmetric(const nk_op *op, int axis)
{
    int n = op->in_hw[axis], out = op->out_hw[axis];
    long gap = (long)(out - 1) * op->s[axis] + op->f[axis] - n - 2L * op->pb[axis];
    if (op->pad == PAD_CIRCULAR) return gap % n == 0;
    return gap == 0;
}

/* The mirrored axis of the plan's input: W of (H, W, C) images, L of (L, C) signals. */
static int flip_axis(const nk_plan *p) { return p->in_ndim == 3 ? 1 : 0; }

int nk_plan_flip_invariant(const nk_plan *p)
{
    if (p->in_ndim < 2) return 0;
    int axis = flip_axis(p);
    for (int i = 0; i < p->npre; i++)
        if (!window_symmetric(&p->pre[i], axis)) return 0;
    for (int i = 0; i < p->nops; i++)
        if ((p->ops[i].kind == OP_AFFINE || p->ops[i].kind == OP_POOL) && !window_symmetric(&p->ops[i], axis))
            return 0;
    return 1;
}

/* rows [0, n) of x, then the same samples mirrored along the flip axis: a (2n, ...) array. */
static nk_status with_mirrors(const nk_plan *p, const nk_array *x, nk_array *out, nk_error *err)
{
    size_t n = x->shape[0], shape[4];
    for (int a = 0; a < x->ndim; a++) shape[a] = x->shape[a];
    shape[0] = 2 * n;
    nk_status st = nk_array_alloc(out, x->ndim, shape, err);
    if (st) return st;
    size_t len = nk_array_size(x) / (n ? n : 1);
    /* a sample is [outer][m][inner]: mirror the m positions of the flip axis */
    size_t m = p->in_shape[flip_axis(p)], inner = p->in_shape[p->in_ndim - 1];
    size_t outer = len / (m * inner);
    memcpy(out->data, x->data, n * len * sizeof(double));
    for (size_t s = 0; s < n; s++) {
        const double *src = x->data + s * len;
        double *dst = out->data + (n + s) * len;
        for (size_t o = 0; o < outer; o++)
            for (size_t j = 0; j < m; j++)
                memcpy(dst + (o * m + j) * inner, src + (o * m + (m - 1 - j)) * inner, inner * sizeof(double));
    }
    return NK_OK;
}

/* out (n1, n2) <- 1/4 of the four (n1, n2) blocks of g (2 n1, 2 n2). */
static nk_status quarter_sum(const nk_array *g, size_t n1, size_t n2, nk_array *out, nk_error *err)
{
    size_t shape[2] = {n1, n2}, ld = 2 * n2;
    nk_status st = nk_array_alloc(out, 2, shape, err);
    if (st) return st;
    for (size_t i = 0; i < n1; i++)
        for (size_t j = 0; j < n2; j++) {
            const double *a = g->data + i * ld + j, *b = g->data + (n1 + i) * ld + j;
            out->data[i * n2 + j] = 0.25 * (a[0] + a[n2] + b[0] + b[n2]);
        }
    return NK_OK;
}

/* A Gram's terms are symmetric in exact arithmetic (for the shortcut, K(x_i, f x_j) = K(x_j, f x_i)
 * needs the invariance) but their sums round differently above and below the diagonal: averaging
 * with the transpose makes the result exactly symmetric, as the solvers expect. */
static void symmetrize(nk_array *a)
{
    size_t n = a->shape[0];
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            double v = 0.5 * (a->data[i * n + j] + a->data[j * n + i]);
            a->data[i * n + j] = a->data[j * n + i] = v;
        }
}

/* Translations by (dy, dx) with circular wrap-around commute with a plan whose every window is
 * stride 1 with circular padding (dense layers included) and which has no pooling other than the
 * readout; an MLP on flattened data commutes with every permutation of the positions. */
static int shift_invariant(const nk_plan *p)
{
    if (p->npre) return 0;
    if (p->mlp) return 1;
    for (int i = 0; i < p->nops; i++) {
        const nk_op *op = &p->ops[i];
        if (op->kind == OP_POOL) return 0;
        if (op->kind == OP_AFFINE && (op->s[0] != 1 || op->s[1] != 1 ||
                                      (op->pad != PAD_CIRCULAR && (op->f[0] != 1 || op->f[1] != 1))))
            return 0;
    }
    return 1;
}

/* The transforms of the augmentation set A as maps of positions, (u x)[q] = x[u[q]] on the
 * h x w grid: mirror^a then the translation (dy, dx), a in {0, flip}, dy, dx in 0..shift. */
static int *augment_maps(int h, int w, int flip, int shift, int *count)
{
    int na = (flip ? 2 : 1) * (shift + 1) * (h > 1 ? shift + 1 : 1), P = h * w, k = 0;
    int *maps = malloc((size_t)na * P * sizeof *maps);
    if (!maps) return NULL;
    for (int a = 0; a <= flip; a++)
        for (int dy = 0; dy <= (h > 1 ? shift : 0); dy++)
            for (int dx = 0; dx <= shift; dx++, k++)
                for (int i = 0; i < h; i++)
                    for (int j = 0; j < w; j++) {
                        int si = ((i - dy) % h + h) % h, sj = ((j - dx) % w + w) % w;
                        maps[(size_t)k * P + i * w + j] = si * w + (a ? w - 1 - sj : sj);
                    }
    *count = na;
    return maps;
}

/* x with its positions permuted by map (channels move together): (N, ...) -> a new array. */
static nk_status permuted(const nk_array *x, const int *map, int P, nk_array *out, nk_error *err)
{
    nk_status st = nk_array_alloc(out, x->ndim, x->shape, err);
    if (st) return st;
    size_t n = x->shape[0], len = nk_array_size(x) / (n ? n : 1), c = len / (size_t)P;
    for (size_t s = 0; s < n; s++)
        for (int q = 0; q < P; q++)
            memcpy(out->data + s * len + (size_t)q * c, x->data + s * len + (size_t)map[q] * c, c * sizeof(double));
    return NK_OK;
}

/* For a plan that commutes with every u in A, K(u x, v x') = K(x, u^-1 v x'), so the double sum
 * over A x A is a single sum over the distinct maps u^-1 v (as arrays: q -> v[u^-1[q]]), each
 * weighted by how often it occurs, |A|^-2 times: one kernel matrix per distinct map. */
static nk_status invariant_sum(const nk_plan *p, const nk_array *x1, const nk_array *x2,
                               const nk_kernel_opts *o, const int *maps, int na, int h, int w,
                               nk_array *nngp, nk_array *ntk, nk_error *err)
{
    int P = h * w, nd = 0;
    int *diff = malloc((size_t)na * na * P * sizeof *diff), *count = calloc((size_t)na * na, sizeof *count),
        *inv = malloc((size_t)P * sizeof *inv), *cand = malloc((size_t)P * sizeof *cand);
    nk_status st = NK_OK;
    if (!diff || !count || !inv || !cand) st = nk_fail(err, NK_ERR_NOMEM, "augmentation: out of memory");
    for (int u = 0; !st && u < na; u++) {
        for (int q = 0; q < P; q++) inv[maps[(size_t)u * P + q]] = q;
        for (int v = 0; v < na; v++) {
            for (int q = 0; q < P; q++) cand[q] = maps[(size_t)v * P + inv[q]];
            int d = 0;
            while (d < nd && memcmp(diff + (size_t)d * P, cand, (size_t)P * sizeof *cand)) d++;
            if (d == nd) memcpy(diff + (size_t)nd++ * P, cand, (size_t)P * sizeof *cand);
            count[d]++;
        }
    }
    const nk_array *right = x2 ? x2 : x1;
    size_t n1 = x1->shape[0], n2 = right->shape[0], shape[2] = {n1, n2};
    if (!st && nngp) st = nk_array_alloc(nngp, 2, shape, err);
    if (!st && ntk) st = nk_array_alloc(ntk, 2, shape, err);
    if (!st) {
        if (nngp) memset(nngp->data, 0, n1 * n2 * sizeof(double));
        if (ntk) memset(ntk->data, 0, n1 * n2 * sizeof(double));
    }
    for (int d = 0; !st && d < nd; d++) {
        nk_array moved = {0}, k[2] = {{0}};
        int identity = 1;
        for (int q = 0; q < P && identity; q++) identity = diff[(size_t)d * P + q] == q;
        /* the identity term of a Gram is the symmetric Gram itself (half the pairs) */
        if (!identity) st = permuted(right, diff + (size_t)d * P, P, &moved, err);
        if (!st) st = nk_kernel_matrix(p, x1, identity ? x2 : &moved, o, nngp ? &k[0] : NULL, ntk ? &k[1] : NULL, err);
        double wgt = (double)count[d] / ((double)na * na);
        for (int q = 0; !st && q < 2; q++) {
            nk_array *acc = q ? ntk : nngp;
            if (acc)
                for (size_t i = 0; i < n1 * n2; i++) acc->data[i] += wgt * k[q].data[i];
        }
        nk_array_free(&moved);
        nk_array_free(&k[0]);
        nk_array_free(&k[1]);
    }
    free(diff);
    free(count);
    free(inv);
    free(cand);
    return st;
}

nk_status nk_kernel_matrix_augment(const nk_plan *p, const nk_array *x1, const nk_array *x2,
                                   const nk_kernel_opts *o, int flip, int shift, int full_sum,
                                   nk_array *nngp, nk_array *ntk, nk_error *err)
{
    if (nngp) memset(nngp, 0, sizeof *nngp);
    if (ntk) memset(ntk, 0, sizeof *ntk);
    if (p->in_ndim < 2)
        return nk_fail(err, NK_ERR_INPUT, "augmentation: the input has no spatial axis to mirror or shift (give images (N,H,W,C) or signals (N,L,C))");
    if (!x1 || x1->ndim != p->in_ndim + 1 || (x2 && x2->ndim != p->in_ndim + 1))
        return nk_fail(err, NK_ERR_INPUT, "augmentation: data must have %d axes (samples first) to match the plan", p->in_ndim + 1);
    if (shift < 0 || shift > 8)
        return nk_fail(err, NK_ERR_INPUT, "augmentation: shift %d out of range 0..8", shift);
    int h = p->in_ndim == 3 ? (int)p->in_shape[0] : (int)p->in_shape[0], w = p->in_ndim == 3 ? (int)p->in_shape[1] : 1;
    if (p->in_ndim == 2) { w = h; h = 1; } /* a signal (L, C): the one axis is the mirrored one */
    int invariant = (!shift || shift_invariant(p)) && (!flip || nk_plan_flip_invariant(p));
    if (shift && !invariant)
        return nk_fail(err, NK_ERR_INPUT, "augmentation: translations need an architecture that commutes with them (an MLP on "
                       "flattened data, or stride-1 conv(F,pad=circular) layers without pooling before gap or flatten)");
    nk_status st;
    nk_torus tor;
    if (shift && !flip && nk_torus_setup(p, shift, 0, &tor)) {
        /* every entry is one pair's planes at all the translations (torus.c) */
        nk_kernel_opts def, ot;
        nk_kernel_opts_default(&def);
        ot = o ? *o : def;
        ot.shift = shift;
        return nk_kernel_matrix(p, x1, x2, &ot, nngp, ntk, err);
    }
    if (!invariant || full_sum) {
        /* flips only: the four terms from the Gram (or cross kernel) of the data and its mirrors */
        nk_array m1 = {0}, m2 = {0}, g[2] = {{0}};
        size_t n1 = x1->shape[0], n2 = x2 ? x2->shape[0] : n1;
        if (shift) return nk_fail(err, NK_ERR_INPUT, "augmentation: the four-term sum is for flips only (give shift 0)");
        st = with_mirrors(p, x1, &m1, err);
        if (!st && x2) st = with_mirrors(p, x2, &m2, err);
        if (!st) st = nk_kernel_matrix(p, &m1, x2 ? &m2 : NULL, o, nngp ? &g[0] : NULL, ntk ? &g[1] : NULL, err);
        nk_array_free(&m1);
        nk_array_free(&m2);
        if (!st && g[0].data) st = quarter_sum(&g[0], n1, n2, nngp, err);
        if (!st && g[1].data) st = quarter_sum(&g[1], n1, n2, ntk, err);
        nk_array_free(&g[0]);
        nk_array_free(&g[1]);
    } else {
        int na = 0;
        int *maps = augment_maps(h, w, flip, shift, &na);
        st = maps ? invariant_sum(p, x1, x2, o, maps, na, h, w, nngp, ntk, err)
                  : nk_fail(err, NK_ERR_NOMEM, "augmentation: out of memory");
        free(maps);
    }
    if (!st && !x2 && nngp) symmetrize(nngp);
    if (!st && !x2 && ntk) symmetrize(ntk);
    if (st) {
        if (nngp) nk_array_free(nngp);
        if (ntk) nk_array_free(ntk);
    }
    return st;
}

nk_status nk_kernel_matrix_flip(const nk_plan *p, const nk_array *x1, const nk_array *x2,
                                const nk_kernel_opts *o, int full_sum, nk_array *nngp, nk_array *ntk,
                                nk_error *err)
{
    return nk_kernel_matrix_augment(p, x1, x2, o, 1, 0, full_sum, nngp, ntk, err);
}
