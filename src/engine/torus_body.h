/* torus_body.h -- the torus path's planes in one precision: included by torus.c with R = double,
 * FN(x) = x##_f64, RELU_POINTS = nk_relu_points, and with R = float, FN(x) = x##_f32,
 * RELU_POINTS = nk_relu_points32 (float32 takes only ReLU stacks).  Sums over the grid, the
 * flatten's mean and everything after it stay float64. */

/* dst (a padded plane, C values per entry) <- src (n0 x n1 positions, C values each, float64)
 * with its halo wrapped */
static void FN(pad_plane)(const nk_torus *t, const double *src, int C, R *dst)
{
    for (int i = -t->h0; i < t->n0 + t->h0; i++) {
        int si = ((i % t->n0) + t->n0) % t->n0;
        R *row = dst + (size_t)(i + t->h0) * t->Wp * C;
        for (int j = -t->h1; j < t->n1 + t->h1; j++) {
            int sj = ((j % t->n1) + t->n1) % t->n1;
            for (int c = 0; c < C; c++) row[(size_t)(j + t->h1) * C + c] = (R)src[((size_t)si * t->n1 + sj) * C + c];
        }
    }
}

/* The halo of a padded plane from its interior (wrap-around). */
static void FN(halo_fill)(const nk_torus *t, R *X)
{
    const int Wp = t->Wp, h0 = t->h0, h1 = t->h1, n0 = t->n0, n1 = t->n1;
    if (h1 <= n1)   /* the halo wraps once: plain copies */
        for (int i = 0; i < n0; i++) {
            R *row = X + (size_t)(i + h0) * Wp + h1;
            for (int j = -h1; j < 0; j++) row[j] = row[j + n1];
            for (int j = 0; j < h1; j++) row[n1 + j] = row[j];
        }
    else
        for (int i = 0; i < n0; i++) {
            R *row = X + (size_t)(i + h0) * Wp + h1;
            for (int j = -h1; j < 0; j++) row[j] = row[((j % n1) + n1) % n1];
            for (int j = n1; j < n1 + h1; j++) row[j] = row[j % n1];
        }
    for (int i = -h0; i < 0; i++)
        memcpy(X + (size_t)(i + h0) * Wp, X + (size_t)(((i % n0) + n0) % n0 + h0) * Wp, (size_t)Wp * sizeof(R));
    for (int i = n0; i < n0 + h0; i++)
        memcpy(X + (size_t)(i + h0) * Wp, X + (size_t)(i % n0 + h0) * Wp, (size_t)Wp * sizeof(R));
}

/* The window mean of a stride-1 circular conv on padded planes over [lo, hi), fused with its
 * affine map: K2 = w2 M(K) + b2, T2 = alpha M(K) + w2 M(T) + beta (T NULL: NNGP only). */
NK_CLONES static void FN(conv_affine)(const nk_torus *t, const nk_op *op, const R *restrict K, const R *restrict T,
                                      R *restrict K2, R *restrict T2)
{
    long off[NK_TORUS_TAPS];
    int nt = 0;
    for (int a = 0; a < op->f[0]; a++)
        for (int b = 0; b < op->f[1]; b++) off[nt++] = (long)(a - op->pb[0]) * t->Wp + (b - op->pb[1]);
    const R scale = (R)(1.0 / nt), w2 = (R)op->w2, b2 = (R)op->b2, al = (R)op->alpha, be = (R)op->beta;
    const size_t lo = t->lo, hi = t->hi;
    if (nt == 9) {
        const long o0 = off[0], o1 = off[1], o2 = off[2], o3 = off[3], o4 = off[4], o5 = off[5], o6 = off[6],
                   o7 = off[7], o8 = off[8];
        if (T)
            for (size_t k = lo; k < hi; k++) {
                R m = (K[k + o0] + K[k + o1] + K[k + o2] + K[k + o3] + K[k + o4] + K[k + o5] + K[k + o6] + K[k + o7] +
                       K[k + o8]) * scale;
                R mt = (T[k + o0] + T[k + o1] + T[k + o2] + T[k + o3] + T[k + o4] + T[k + o5] + T[k + o6] +
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
                R m = K2[k] * scale;
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
 * layout the pointwise activations read with roots PL apart), so that the second sample's
 * planes are read at -off with no copy; entries in the halo read values of the neighbouring
 * rows or planes (finite, and overwritten by the halo fill before any window reads them).
 * Self pass (self_out non-NULL, xa = xb, d = 0): each activation's input variances are first
 * written to self_out (float64, as the layer-by-layer path lays them out) and to sa (padded),
 * and read from there, so that a sample paired with itself sees exactly its own variances. */
static void FN(one_plane)(const nk_torus *t, const nk_plan *p, const R *xa, const R *xb, const R *sa, const R *sb,
                          int dy, int dx, double *self_out, R *sa_out, int want_ntk, R *buf, double *k_out,
                          double *t_out)
{
    R *K = buf, *T = buf + t->PL, *K2 = buf + 2 * t->PL, *T2 = buf + 3 * t->PL;
    const size_t PL = t->PL, P = (size_t)t->n0 * t->n1;
    const long off = (long)dy * t->Wp + dx;
    const int C = t->C;
    /* K0[p] = <x_p, x'_(p - d)> / C (the layer-by-layer path's sum and division); T0 = 0 */
    const R *xs = xb - off * C;
    if (C == 1)
        for (size_t q = 0; q < PL; q++) K[q] = xa[q] * xs[q];
    else
        for (size_t q = 0; q < PL; q++) {
            R acc = 0;
            for (int c = 0; c < C; c++) acc += xa[q * C + c] * xs[q * C + c];
            K[q] = acc / (R)C;
        }
    if (want_ntk) memset(T, 0, PL * sizeof(R));
    for (int i = 0, n = 0; i < t->e; i++) {
        const nk_op *op = &p->ops[i];
        if (op->kind == OP_ACT) {
            const R *a = sa + 3 * (size_t)n * PL, *b = sb + 3 * (size_t)n * PL - off;
            if (self_out) {
                double *s = self_out + op->self_off;
                R *pa = sa_out + 3 * (size_t)n * PL;
                for (int r = 0; r < t->n0; r++)
                    for (int j = 0; j < t->n1; j++)
                        s[(size_t)r * t->n1 + j] = (double)K[(size_t)(r + t->h0) * t->Wp + t->h1 + j];
                nk_self_roots(s, P);
                for (int q = 0; q < 3; q++) FN(pad_plane)(t, s + q * P, 1, pa + q * PL);
                a = b = pa;
            }
            n++;
            ACT_POINTS(op, p->quad_order, K, want_ntk ? T : NULL, PL, a, b);
        } else {
            /* a conv, or a dense / 1x1 layer (one tap: no halo read) */
            if (op->f[0] * op->f[1] > 1) {
                FN(halo_fill)(t, K);
                if (want_ntk) FN(halo_fill)(t, T);
            }
            FN(conv_affine)(t, op, K, want_ntk ? T : NULL, K2, want_ntk ? T2 : NULL);
            { R *x = K; K = K2; K2 = x; }
            { R *x = T; T = T2; T2 = x; }
        }
    }
    /* the flatten: the mean over the grid in float64, eight partial sums (position mod 8 within
     * each row) so that the adds do not wait on one another */
    double ks[8] = {0}, ts[8] = {0};
    for (int r = 0; r < t->n0; r++) {
        const R *kr = K + (size_t)(r + t->h0) * t->Wp + t->h1, *tr = T + (size_t)(r + t->h0) * t->Wp + t->h1;
        int j = 0;
        for (; j + 8 <= t->n1; j += 8)
            for (int l = 0; l < 8; l++) {
                ks[l] += kr[j + l];
                if (want_ntk) ts[l] += tr[j + l];
            }
        for (int l = 0; j < t->n1; j++, l++) {
            ks[l] += kr[j];
            if (want_ntk) ts[l] += tr[j];
        }
    }
    double k = ((ks[0] + ks[1]) + (ks[2] + ks[3])) + ((ks[4] + ks[5]) + (ks[6] + ks[7]));
    double tt = ((ts[0] + ts[1]) + (ts[2] + ts[3])) + ((ts[4] + ts[5]) + (ts[6] + ts[7]));
    *k_out = k / (double)P;
    *t_out = want_ntk ? tt / (double)P : 0;
}
