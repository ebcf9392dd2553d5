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

/* a <- 1/2 (a + b). */
static void half_sum(nk_array *a, const nk_array *b)
{
    for (size_t i = 0; i < nk_array_size(a); i++) a->data[i] = 0.5 * (a->data[i] + b->data[i]);
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

nk_status nk_kernel_matrix_flip(const nk_plan *p, const nk_array *x1, const nk_array *x2,
                                const nk_kernel_opts *o, int full_sum, nk_array *nngp, nk_array *ntk,
                                nk_error *err)
{
    if (nngp) memset(nngp, 0, sizeof *nngp);
    if (ntk) memset(ntk, 0, sizeof *ntk);
    if (p->in_ndim < 2)
        return nk_fail(err, NK_ERR_INPUT, "flip augmentation: the input has no spatial axis to mirror (give images (N,H,W,C) or signals (N,L,C))");
    if (!x1 || x1->ndim != p->in_ndim + 1 || (x2 && x2->ndim != p->in_ndim + 1))
        return nk_fail(err, NK_ERR_INPUT, "flip augmentation: data must have %d axes (samples first) to match the plan", p->in_ndim + 1);
    nk_array m1 = {0}, m2 = {0}, g[2] = {{0}}, h[2] = {{0}};
    nk_status st;
    size_t n1 = x1->shape[0], n2 = x2 ? x2->shape[0] : n1;
    if (full_sum || !nk_plan_flip_invariant(p)) {
        st = with_mirrors(p, x1, &m1, err);
        if (!st && x2) st = with_mirrors(p, x2, &m2, err);
        if (!st) st = nk_kernel_matrix(p, &m1, x2 ? &m2 : NULL, o, nngp ? &g[0] : NULL, ntk ? &g[1] : NULL, err);
        nk_array_free(&m1);
        nk_array_free(&m2);
        if (!st && g[0].data) st = quarter_sum(&g[0], n1, n2, nngp, err);
        if (!st && g[1].data) st = quarter_sum(&g[1], n1, n2, ntk, err);
    } else {
        /* K(x1, x2) and K(x1, f x2); for a Gram, K(x1, f x1) */
        const nk_array *right = x2 ? x2 : x1;
        st = with_mirrors(p, right, &m2, err);
        nk_array mirrored = m2;
        if (!st) {
            mirrored.shape[0] = n2;
            mirrored.data = m2.data + nk_array_size(right);
        }
        if (!st) st = nk_kernel_matrix(p, x1, x2, o, nngp, ntk, err);
        if (!st) st = nk_kernel_matrix(p, x1, &mirrored, o, nngp ? &h[0] : NULL, ntk ? &h[1] : NULL, err);
        nk_array_free(&m2);
        if (!st && h[0].data) half_sum(nngp, &h[0]);
        if (!st && h[1].data) half_sum(ntk, &h[1]);
    }
    if (!st && !x2 && nngp) symmetrize(nngp);
    if (!st && !x2 && ntk) symmetrize(ntk);
    for (int k = 0; k < 2; k++) {
        nk_array_free(&g[k]);
        nk_array_free(&h[k]);
    }
    if (st) {
        if (nngp) nk_array_free(nngp);
        if (ntk) nk_array_free(ntk);
    }
    return st;
}
