/* test_infer.c -- NNGP posterior and gradient-flow predictions against independent
 * references: a dense Gaussian elimination (not Cholesky), a matrix exponential by
 * scaling and squaring of a Taylor series (not an eigendecomposition), and closed forms
 * for N = 2. */
#include "nk_infer.h"
#include "nk_test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers ---- */

static uint64_t rng_state = 88172645463325252ull;
static double urand(void) /* xorshift64, uniform in [0, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static nk_array mat(size_t r, size_t c)
{
    nk_array a;
    size_t s[2] = {r, c};
    nk_array_alloc(&a, 2, s, NULL);
    return a;
}

static nk_array vec(size_t n)
{
    nk_array a;
    nk_array_alloc(&a, 1, &n, NULL);
    return a;
}

/* Points in R^d. */
static double *points(size_t n, size_t d)
{
    double *x = malloc(n * d * sizeof *x);
    for (size_t i = 0; i < n * d; i++) x[i] = 2 * urand() - 1;
    return x;
}

/* kind 0: Gaussian RBF exp(-|x-y|^2 / 2) (a stand-in NNGP); kind 1: RBF + 0.5 <x,y> + 0.3
 * (a stand-in NTK).  Both positive definite on distinct points. */
static nk_array kern(const double *a, size_t na, const double *b, size_t nb, size_t d, int kind)
{
    nk_array k = mat(na, nb);
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++) {
            double s = 0, dot = 0;
            for (size_t l = 0; l < d; l++) {
                double t = a[i * d + l] - b[j * d + l];
                s += t * t;
                dot += a[i * d + l] * b[j * d + l];
            }
            k.data[i * nb + j] = exp(-s / 2) + (kind ? 0.5 * dot + 0.3 : 0);
        }
    return k;
}

/* Solve A Z = B (A n x n, B n x m) by Gaussian elimination with partial pivoting, in place
 * on copies: the independent reference for every inverse in this file. */
static double *gauss_solve(const double *a_in, size_t n, const double *b_in, size_t m)
{
    double *a = malloc(n * n * sizeof *a), *b = malloc(n * m * sizeof *b);
    memcpy(a, a_in, n * n * sizeof *a);
    memcpy(b, b_in, n * m * sizeof *b);
    for (size_t c = 0; c < n; c++) {
        size_t piv = c;
        for (size_t r = c + 1; r < n; r++)
            if (fabs(a[r * n + c]) > fabs(a[piv * n + c])) piv = r;
        for (size_t j = 0; j < n; j++) {
            double t = a[c * n + j]; a[c * n + j] = a[piv * n + j]; a[piv * n + j] = t;
        }
        for (size_t j = 0; j < m; j++) {
            double t = b[c * m + j]; b[c * m + j] = b[piv * m + j]; b[piv * m + j] = t;
        }
        for (size_t r = c + 1; r < n; r++) {
            double f = a[r * n + c] / a[c * n + c];
            for (size_t j = c; j < n; j++) a[r * n + j] -= f * a[c * n + j];
            for (size_t j = 0; j < m; j++) b[r * m + j] -= f * b[c * m + j];
        }
    }
    for (size_t c = n; c-- > 0;)
        for (size_t j = 0; j < m; j++) {
            double s = b[c * m + j];
            for (size_t l = c + 1; l < n; l++) s -= a[c * n + l] * b[l * m + j];
            b[c * m + j] = s / a[c * n + c];
        }
    free(a);
    return b;
}

/* C = A B (plain loops). */
static double *matmul(const double *a, const double *b, size_t n, size_t k, size_t m)
{
    double *c = calloc(n * m, sizeof *c);
    for (size_t i = 0; i < n; i++)
        for (size_t l = 0; l < k; l++)
            for (size_t j = 0; j < m; j++) c[i * m + j] += a[i * k + l] * b[l * m + j];
    return c;
}

static double *transpose(const double *a, size_t r, size_t c)
{
    double *t = malloc(r * c * sizeof *t);
    for (size_t i = 0; i < r; i++)
        for (size_t j = 0; j < c; j++) t[j * r + i] = a[i * c + j];
    return t;
}

/* e^{-A s} by scaling and squaring: Taylor series of e^{-A s / 2^q} to 30 terms, then q
 * squarings, with 2^q >= ||A s||_inf. */
static double *expm_neg(const double *a, size_t n, double s)
{
    double norm = 0;
    for (size_t i = 0; i < n; i++) {
        double r = 0;
        for (size_t j = 0; j < n; j++) r += fabs(a[i * n + j]);
        if (r > norm) norm = r;
    }
    int q = 0;
    while (norm * s / ldexp(1.0, q) > 0.5) q++;
    double h = -s / ldexp(1.0, q);
    double *e = calloc(n * n, sizeof *e), *term = calloc(n * n, sizeof *term);
    for (size_t i = 0; i < n; i++) e[i * n + i] = term[i * n + i] = 1;
    for (int p = 1; p <= 30; p++) {
        double *nt = matmul(term, a, n, n, n);
        for (size_t i = 0; i < n * n; i++) {
            term[i] = nt[i] * h / p;
            e[i] += term[i];
        }
        free(nt);
    }
    for (int i = 0; i < q; i++) {
        double *sq = matmul(e, e, n, n, n);
        free(e);
        e = sq;
    }
    free(term);
    return e;
}

static double maxrel(const double *a, const double *b, size_t n, double floor_)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double r = nk_relerr(a[i], b[i], floor_);
        if (r > m) m = r;
    }
    return m;
}

/* --------------------------------------------------------------- tests ---- */

typedef struct {
    size_t n, m, d, k;
    double *xtr, *xte;
    nk_array ktr, kte, ktt, ttr, tte, y;
} problem;

static problem make_problem(size_t n, size_t m, size_t d, size_t k)
{
    problem p;
    p.n = n; p.m = m; p.d = d; p.k = k;
    p.xtr = points(n, d);
    p.xte = points(m, d);
    p.ktr = kern(p.xtr, n, p.xtr, n, d, 0);
    p.kte = kern(p.xte, m, p.xtr, n, d, 0);
    p.ktt = kern(p.xte, m, p.xte, m, d, 0);
    p.ttr = kern(p.xtr, n, p.xtr, n, d, 1);
    p.tte = kern(p.xte, m, p.xtr, n, d, 1);
    p.y = mat(n, k);
    for (size_t i = 0; i < n * k; i++) p.y.data[i] = 2 * urand() - 1;
    return p;
}

static void free_problem(problem *p)
{
    free(p->xtr); free(p->xte);
    nk_array_free(&p->ktr); nk_array_free(&p->kte); nk_array_free(&p->ktt);
    nk_array_free(&p->ttr); nk_array_free(&p->tte); nk_array_free(&p->y);
}

/* Reference GP: Z = (K + eps I)^-1 [Y | K*^T] by elimination. */
static void test_gp_reference(void)
{
    problem p = make_problem(40, 7, 3, 3);
    size_t n = p.n, m = p.m, k = p.k;
    nk_infer_opts o;
    nk_infer_opts_default(&o);
    o.diag_reg = 1e-3;
    nk_gp *gp = NULL;
    nk_error err = {{0}};
    nk_status st = nk_gp_create(&p.ktr, &p.y, &o, &gp, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (st) { free_problem(&p); return; }
    double md = 0;
    for (size_t i = 0; i < n; i++) md += p.ktr.data[i * n + i];
    md /= n;
    CHECK(fabs(nk_gp_reg(gp) - 1e-3 * md) < 1e-15, "relative eps %g", nk_gp_reg(gp));

    double *a = malloc(n * n * sizeof *a);
    memcpy(a, p.ktr.data, n * n * sizeof *a);
    for (size_t i = 0; i < n; i++) a[i * n + i] += nk_gp_reg(gp);
    double *kst = transpose(p.kte.data, m, n);
    double *zy = gauss_solve(a, n, p.y.data, k), *zk = gauss_solve(a, n, kst, m);
    double *mref = matmul(p.kte.data, zy, m, n, k), *cref = matmul(p.kte.data, zk, m, n, m);
    for (size_t i = 0; i < m * m; i++) cref[i] = p.ktt.data[i] - cref[i];

    nk_array mean = {0}, cov = {0}, var = {0};
    st = nk_gp_predict(gp, &p.kte, &p.ktt, NK_COV_FULL, &mean, &cov, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (!st) {
        CHECK(mean.ndim == 2 && mean.shape[0] == m && mean.shape[1] == k, "mean shape");
        double e1 = maxrel(mean.data, mref, m * k, 1e-3), e2 = maxrel(cov.data, cref, m * m, 1e-3);
        CHECK(e1 < 1e-8, "GP mean vs elimination: %g", e1);
        CHECK(e2 < 1e-8, "GP covariance vs elimination: %g", e2);
        int sym = 1;
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < m; j++) sym &= cov.data[i * m + j] == cov.data[j * m + i];
        CHECK(sym, "full covariance exactly symmetric");
    }
    /* Diagonal from a full or a diagonal-only test-test kernel. */
    nk_array d = vec(m);
    for (size_t i = 0; i < m; i++) d.data[i] = p.ktt.data[i * m + i];
    nk_array mean2 = {0};
    st = nk_gp_predict(gp, &p.kte, &d, NK_COV_DIAG, &mean2, &var, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (!st) {
        double e = 0;
        for (size_t i = 0; i < m; i++) e = fmax(e, nk_relerr(var.data[i], cref[i * m + i], 1e-3));
        CHECK(e < 1e-8, "GP variance vs elimination: %g", e);
        CHECK(var.ndim == 1 && var.shape[0] == m, "variance shape");
    }
    nk_array_free(&mean2);
    nk_array_free(&var);
    st = nk_gp_predict(gp, &p.kte, &p.ktt, NK_COV_DIAG, &mean2, &var, &err);
    CHECK(st == NK_OK && var.shape[0] == m && fabs(var.data[2] - cref[2 * m + 2]) < 1e-9,
          "diag from full test-test kernel");
    free(a); free(kst); free(zy); free(zk); free(mref); free(cref);
    nk_array_free(&mean); nk_array_free(&cov); nk_array_free(&var); nk_array_free(&mean2);
    nk_array_free(&d);
    nk_gp_free(gp);
    free_problem(&p);
}

/* N = 2 by hand.  K = [[a, b], [b, a]] + eps I: (K + eps I)^-1 = [[a', -b], [-b, a']] / (a'^2 - b^2). */
static void test_gp_closed_form(void)
{
    double a = 2, b = 0.5, c1 = 0.7, c2 = 0.2, kss = 1.5, y1 = 1, y2 = -2;
    nk_array k = mat(2, 2), y = vec(2), ks = mat(1, 2), kt = vec(1);
    k.data[0] = k.data[3] = a;
    k.data[1] = k.data[2] = b;
    y.data[0] = y1; y.data[1] = y2;
    ks.data[0] = c1; ks.data[1] = c2;
    kt.data[0] = kss;
    nk_infer_opts o;
    nk_infer_opts_default(&o);
    o.diag_reg = 0.1;
    o.reg_absolute = 1;
    double ap = a + 0.1, det = ap * ap - b * b;
    double z1 = (ap * y1 - b * y2) / det, z2 = (-b * y1 + ap * y2) / det;
    double mean_ref = c1 * z1 + c2 * z2;
    double var_ref = kss - (ap * (c1 * c1 + c2 * c2) - 2 * b * c1 * c2) / det;
    nk_gp *gp = NULL;
    nk_error err = {{0}};
    nk_array mean = {0}, var = {0};
    nk_status st = nk_gp_create(&k, &y, &o, &gp, &err);
    if (!st) st = nk_gp_predict(gp, &ks, &kt, NK_COV_DIAG, &mean, &var, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (!st) {
        CHECK(fabs(mean.data[0] - mean_ref) < 1e-14, "N=2 GP mean %.17g vs %.17g", mean.data[0], mean_ref);
        CHECK(fabs(var.data[0] - var_ref) < 1e-14, "N=2 GP variance %.17g vs %.17g", var.data[0], var_ref);
    }
    nk_array_free(&mean); nk_array_free(&var);
    nk_gp_free(gp);

    /* Gradient flow, Theta = [[a, b], [b, a]]: eigenvectors (1, 1)/sqrt2 and (1, -1)/sqrt2
     * with eigenvalues a + b, a - b, so
     * f_t = (c1 + c2) u (1 - e^{-(a+b)t})/(a+b) + (c1 - c2) w (1 - e^{-(a-b)t})/(a-b),
     * u = (y1 + y2)/2, w = (y1 - y2)/2. */
    nk_flow *f = NULL;
    nk_infer_opts_default(&o);
    o.lr = 0.5;
    double times[3] = {0.0, 3.0, INFINITY};
    st = nk_flow_create(&k, NULL, &y, &o, &f, &err);
    if (!st) st = nk_flow_predict(f, &ks, NULL, NULL, times, 3, NK_COV_NONE, &mean, NULL, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (!st) {
        double u = (y1 + y2) / 2, w = (y1 - y2) / 2;
        for (int t = 0; t < 3; t++) {
            double s = o.lr * times[t];
            double g1 = isinf(s) ? 1 / (a + b) : (1 - exp(-(a + b) * s)) / (a + b);
            double g2 = isinf(s) ? 1 / (a - b) : (1 - exp(-(a - b) * s)) / (a - b);
            double ref = (c1 + c2) * u * g1 + (c1 - c2) * w * g2;
            CHECK(fabs(mean.data[t] - ref) < 1e-14, "N=2 flow t=%g: %.17g vs %.17g", times[t],
                  mean.data[t], ref);
        }
        CHECK(mean.data[0] == 0.0, "t = 0 gives the prior mean 0");
    }
    nk_array_free(&mean);
    nk_flow_free(f);
    nk_array_free(&k); nk_array_free(&y); nk_array_free(&ks); nk_array_free(&kt);
}

/* Flow against e^{-eta Theta t} by scaling and squaring and Theta^-1 by elimination, with
 * regularization: Theta_r = Theta + eps I in the dynamics, K unregularized in the middle of
 * the covariance (eq. 16 of Lee et al. 2019, as neural-tangents). */
static void test_flow_reference(void)
{
    problem p = make_problem(25, 6, 2, 2);
    size_t n = p.n, m = p.m, k = p.k;
    nk_infer_opts o;
    nk_infer_opts_default(&o);
    o.diag_reg = 1e-2;
    o.lr = 0.7;
    nk_flow *f = NULL;
    nk_error err = {{0}};
    nk_status st = nk_flow_create(&p.ttr, &p.ktr, &p.y, &o, &f, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (st) { free_problem(&p); return; }
    double eps = nk_flow_reg(f);
    double *th = malloc(n * n * sizeof *th);
    memcpy(th, p.ttr.data, n * n * sizeof *th);
    for (size_t i = 0; i < n; i++) th[i * n + i] += eps;
    double times[4] = {0.0, 0.3, 2.0, INFINITY};
    nk_array mean = {0}, cov = {0}, mean_d = {0}, var = {0};
    st = nk_flow_predict(f, &p.tte, &p.kte, &p.ktt, times, 4, NK_COV_FULL, &mean, &cov, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (!st) st = nk_flow_predict(f, &p.tte, &p.kte, &p.ktt, times, 4, NK_COV_DIAG, &mean_d, &var, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (!st) {
        CHECK(mean.ndim == 3 && mean.shape[0] == 4 && mean.shape[1] == m && mean.shape[2] == k,
              "flow mean shape");
        double *tst = transpose(p.tte.data, m, n), *kst = transpose(p.kte.data, m, n);
        /* W = Theta_r^-1 Theta*  (n x m);  B^T = (I - E) W since E commutes with Theta_r. */
        double *w = gauss_solve(th, n, tst, m);
        for (int t = 0; t < 4; t++) {
            double *bt;
            if (isinf(times[t])) {
                bt = malloc(n * m * sizeof *bt);
                memcpy(bt, w, n * m * sizeof *bt);
            } else {
                double *e = expm_neg(th, n, o.lr * times[t]);
                for (size_t i = 0; i < n * n; i++) e[i] = -e[i];
                for (size_t i = 0; i < n; i++) e[i * n + i] += 1;
                bt = matmul(e, w, n, n, m);
                free(e);
            }
            double *b = transpose(bt, n, m);
            double *mref = matmul(b, p.y.data, m, n, k);
            double *bk = matmul(b, p.ktr.data, m, n, n);
            double *bkb = matmul(bk, bt, m, n, m);
            double *bks = matmul(b, kst, m, n, m);
            double *cref = malloc(m * m * sizeof *cref);
            for (size_t i = 0; i < m; i++)
                for (size_t j = 0; j < m; j++)
                    cref[i * m + j] = p.ktt.data[i * m + j] + bkb[i * m + j] - bks[i * m + j] -
                                      bks[j * m + i];
            double e1 = maxrel(mean.data + t * m * k, mref, m * k, 1e-2);
            double e2 = maxrel(cov.data + t * m * m, cref, m * m, 1e-2);
            double e3 = 0;
            for (size_t i = 0; i < m; i++)
                e3 = fmax(e3, nk_relerr(var.data[t * m + i], cref[i * m + i], 1e-2));
            CHECK(e1 < 1e-8, "flow mean t=%g vs expm: %g", times[t], e1);
            CHECK(e2 < 1e-7, "flow covariance t=%g vs expm: %g", times[t], e2);
            CHECK(e3 < 1e-7, "flow variance t=%g vs expm: %g", times[t], e3);
            CHECK(maxrel(mean_d.data + t * m * k, mean.data + t * m * k, m * k, 1e-12) == 0,
                  "mean independent of cov mode");
            free(bt); free(b); free(mref); free(bk); free(bkb); free(cref); free(bks);
        }
        free(w); free(tst); free(kst);
        /* t = 0: prior mean 0 and prior covariance K**. */
        double z = 0;
        for (size_t i = 0; i < m * k; i++) z = fmax(z, fabs(mean.data[i]));
        CHECK(z == 0.0, "t = 0 mean is exactly 0 (%g)", z);
        CHECK(maxrel(cov.data, p.ktt.data, m * m, 1e-12) < 1e-14, "t = 0 covariance is K**");
    }
    nk_array_free(&mean); nk_array_free(&cov); nk_array_free(&mean_d); nk_array_free(&var);

    /* t = inf equals the t-dependent formula at a large t (e^{-lambda_min t} ~ e^{-60}). */
    size_t ne;
    const double *ev = nk_flow_eigenvalues(f, &ne);
    CHECK(ne == n && ev[0] > 0 && ev[0] <= ev[n - 1], "eigenvalues ascending and positive");
    double tl[2] = {INFINITY, 60.0 / (o.lr * ev[0])};
    st = nk_flow_predict(f, &p.tte, &p.kte, &p.ktt, tl, 2, NK_COV_DIAG, &mean, &var, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (!st) {
        CHECK(maxrel(mean.data, mean.data + m * k, m * k, 1e-3) < 1e-10, "t = inf vs large t mean");
        CHECK(maxrel(var.data, var.data + m, m, 1e-3) < 1e-8, "t = inf vs large t variance");
    }
    nk_array_free(&mean); nk_array_free(&var);

    /* Only eta t matters. */
    nk_flow *f2 = NULL;
    o.lr = 1.4;
    double t1 = 1.0, t2 = 2.0;
    nk_array m1 = {0}, m2 = {0};
    st = nk_flow_create(&p.ttr, NULL, &p.y, &o, &f2, &err);
    if (!st) st = nk_flow_predict(f2, &p.tte, NULL, NULL, &t1, 1, NK_COV_NONE, &m1, NULL, &err);
    if (!st) st = nk_flow_predict(f, &p.tte, NULL, NULL, &t2, 1, NK_COV_NONE, &m2, NULL, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (!st) CHECK(maxrel(m1.data, m2.data, m * k, 1e-6) < 1e-12, "eta t invariance");
    nk_array_free(&m1); nk_array_free(&m2);
    nk_flow_free(f2);
    free(th);
    nk_flow_free(f);
    free_problem(&p);
}

/* With Theta = K and eps = 0, the flow at t = inf is the NNGP posterior (mean and cov). */
static void test_flow_equals_gp(void)
{
    problem p = make_problem(30, 5, 3, 1);
    size_t m = p.m;
    nk_array y1 = vec(p.n);
    memcpy(y1.data, p.y.data, p.n * sizeof *y1.data);
    nk_gp *gp = NULL;
    nk_flow *f = NULL;
    nk_error err = {{0}};
    nk_array gm = {0}, gc = {0}, fm = {0}, fc = {0};
    double t = INFINITY;
    nk_status st = nk_gp_create(&p.ktr, &y1, NULL, &gp, &err);
    if (!st) st = nk_gp_predict(gp, &p.kte, &p.ktt, NK_COV_FULL, &gm, &gc, &err);
    if (!st) st = nk_flow_create(&p.ktr, &p.ktr, &y1, NULL, &f, &err);
    if (!st) st = nk_flow_predict(f, &p.kte, &p.kte, &p.ktt, &t, 1, NK_COV_FULL, &fm, &fc, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (!st) {
        CHECK(gm.shape[1] == 1 && fm.shape[2] == 1, "1-D targets give one output");
        CHECK(maxrel(gm.data, fm.data, m, 1e-3) < 1e-6, "flow(Theta=K, inf) mean = GP mean: %g",
              maxrel(gm.data, fm.data, m, 1e-3));
        CHECK(maxrel(gc.data, fc.data, m * m, 1e-3) < 1e-5, "flow(Theta=K, inf) cov = GP cov: %g",
              maxrel(gc.data, fc.data, m * m, 1e-3));
    }
    nk_array_free(&gm); nk_array_free(&gc); nk_array_free(&fm); nk_array_free(&fc);
    nk_gp_free(gp);
    nk_flow_free(f);
    nk_array_free(&y1);
    free_problem(&p);
}

/* More test points than one block of nk_flow_predict (512 rows): blocks must join up. */
static void test_flow_blocks(void)
{
    problem p = make_problem(20, 1100, 2, 2);
    size_t m = p.m, k = p.k;
    nk_array d = vec(m);
    for (size_t i = 0; i < m; i++) d.data[i] = p.ktt.data[i * m + i];
    nk_gp *gp = NULL;
    nk_flow *f = NULL;
    nk_error err = {{0}};
    nk_array gm = {0}, gv = {0}, fm = {0}, fv = {0};
    double t = INFINITY;
    nk_status st = nk_gp_create(&p.ktr, &p.y, NULL, &gp, &err);
    if (!st) st = nk_gp_predict(gp, &p.kte, &d, NK_COV_DIAG, &gm, &gv, &err);
    if (!st) st = nk_flow_create(&p.ktr, &p.ktr, &p.y, NULL, &f, &err);
    if (!st) st = nk_flow_predict(f, &p.kte, &p.kte, &d, &t, 1, NK_COV_DIAG, &fm, &fv, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (!st) {
        CHECK(maxrel(gm.data, fm.data, m * k, 1e-3) < 1e-6, "blocked flow mean = GP mean: %g",
              maxrel(gm.data, fm.data, m * k, 1e-3));
        CHECK(maxrel(gv.data, fv.data, m, 1e-3) < 1e-5, "blocked flow variance = GP variance: %g",
              maxrel(gv.data, fv.data, m, 1e-3));
    }
    nk_array_free(&gm); nk_array_free(&gv); nk_array_free(&fm); nk_array_free(&fv);
    nk_array_free(&d);
    nk_gp_free(gp);
    nk_flow_free(f);
    free_problem(&p);
}

static void test_errors(void)
{
    nk_error err = {{0}};
    nk_gp *gp = NULL;
    nk_flow *f = NULL;
    nk_array k = mat(3, 3), y = vec(3), y4 = vec(4), ks = mat(2, 4), mean = {0}, cov = {0};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) k.data[i * 3 + j] = i == j ? 2 : 0.5;

    CHECK(nk_gp_create(&k, &y4, NULL, &gp, &err) == NK_ERR_INPUT && strstr(err.msg, "4 targets"),
          "target count: %s", err.msg);
    CHECK(nk_gp_create(&k, &y, NULL, &gp, &err) == NK_OK, "%s", err.msg);
    CHECK(nk_gp_predict(gp, &ks, NULL, NK_COV_NONE, &mean, NULL, &err) == NK_ERR_INPUT &&
              strstr(err.msg, "(2, 4)"),
          "test-train shape: %s", err.msg);
    nk_array ks3 = mat(2, 3), kt = vec(3);
    CHECK(nk_gp_predict(gp, &ks3, &kt, NK_COV_DIAG, &mean, &cov, &err) == NK_ERR_INPUT,
          "test-test shape: %s", err.msg);
    CHECK(nk_gp_predict(gp, &ks3, NULL, NK_COV_DIAG, &mean, &cov, &err) == NK_ERR_INPUT,
          "missing test-test: %s", err.msg);
    ks3.data[4] = NAN;
    CHECK(nk_gp_predict(gp, &ks3, NULL, NK_COV_NONE, &mean, NULL, &err) == NK_ERR_INPUT &&
              strstr(err.msg, "non-finite"),
          "NaN test kernel: %s", err.msg);
    nk_gp_free(gp);
    gp = NULL;

    y.data[1] = INFINITY;
    CHECK(nk_gp_create(&k, &y, NULL, &gp, &err) == NK_ERR_INPUT && strstr(err.msg, "targets"),
          "Inf target: %s", err.msg);
    y.data[1] = 0;
    k.data[1] = 0.6;
    CHECK(nk_gp_create(&k, &y, NULL, &gp, &err) == NK_ERR_INPUT && strstr(err.msg, "symmetric"),
          "asymmetric: %s", err.msg);
    CHECK(nk_flow_create(&k, NULL, &y, NULL, &f, &err) == NK_ERR_INPUT && strstr(err.msg, "symmetric"),
          "asymmetric NTK: %s", err.msg);
    k.data[1] = 0.5;
    k.data[8] = NAN;
    CHECK(nk_gp_create(&k, &y, NULL, &gp, &err) == NK_ERR_INPUT && strstr(err.msg, "non-finite"),
          "NaN kernel: %s", err.msg);

    /* Not PSD: [[1, 2], [2, 1]] has eigenvalue -1. */
    nk_array kn = mat(2, 2), y2 = vec(2);
    kn.data[0] = kn.data[3] = 1;
    kn.data[1] = kn.data[2] = 2;
    CHECK(nk_gp_create(&kn, &y2, NULL, &gp, &err) == NK_ERR_INPUT &&
              strstr(err.msg, "not positive semi-definite"),
          "non-PSD GP: %s", err.msg);
    CHECK(nk_flow_create(&kn, NULL, &y2, NULL, &f, &err) == NK_ERR_INPUT &&
              strstr(err.msg, "not positive semi-definite"),
          "non-PSD flow: %s", err.msg);

    /* Singular: rank-1 Gram [[1, 1], [1, 1]] with no regularization. */
    kn.data[1] = kn.data[2] = 1;
    CHECK(nk_gp_create(&kn, &y2, NULL, &gp, &err) == NK_ERR_INPUT && strstr(err.msg, "singular") &&
              strstr(err.msg, "--reg"),
          "singular GP: %s", err.msg);
    printf("  message: %s\n", err.msg);
    nk_infer_opts o;
    nk_infer_opts_default(&o);
    o.diag_reg = 1e-4;
    CHECK(nk_gp_create(&kn, &y2, &o, &gp, &err) == NK_OK, "regularized singular GP: %s", err.msg);
    nk_gp_free(gp);
    gp = NULL;
    CHECK(nk_flow_create(&kn, NULL, &y2, NULL, &f, &err) == NK_OK, "singular flow plan: %s", err.msg);
    double tinf = INFINITY, t1 = 1.0, tneg = -1;
    nk_array ks2 = mat(1, 2);
    ks2.data[0] = ks2.data[1] = 1;
    CHECK(nk_flow_predict(f, &ks2, NULL, NULL, &tinf, 1, NK_COV_NONE, &mean, NULL, &err) ==
                  NK_ERR_INPUT && strstr(err.msg, "--reg"),
          "singular flow at inf: %s", err.msg);
    CHECK(nk_flow_predict(f, &ks2, NULL, NULL, &tneg, 1, NK_COV_NONE, &mean, NULL, &err) ==
              NK_ERR_INPUT,
          "negative time: %s", err.msg);
    CHECK(nk_flow_predict(f, &ks2, NULL, NULL, &t1, 1, NK_COV_DIAG, &mean, &cov, &err) ==
              NK_ERR_INPUT && strstr(err.msg, "nngp_train"),
          "cov without NNGP: %s", err.msg);
    /* Finite t on a singular kernel is fine: the zero mode contributes g = t. */
    y2.data[0] = 1;
    y2.data[1] = 1;
    CHECK(nk_flow_predict(f, &ks2, NULL, NULL, &t1, 1, NK_COV_NONE, &mean, NULL, &err) == NK_OK,
          "%s", err.msg);
    nk_flow_free(f);

    nk_array_free(&mean);
    nk_array_free(&k); nk_array_free(&y); nk_array_free(&y4); nk_array_free(&ks);
    nk_array_free(&ks3); nk_array_free(&kt); nk_array_free(&kn); nk_array_free(&y2);
    nk_array_free(&ks2);
}

static void test_classification(void)
{
    nk_error err = {{0}};
    nk_array lab = vec(4), oh = {0};
    double l[4] = {2, 0, 1, 2};
    memcpy(lab.data, l, sizeof l);
    CHECK(nk_one_hot(&lab, 0, 0.9, -0.1, &oh, &err) == NK_OK, "%s", err.msg);
    CHECK(oh.shape[0] == 4 && oh.shape[1] == 3, "one-hot shape");
    CHECK(oh.data[2] == 0.9 && oh.data[0] == -0.1 && oh.data[3] == 0.9 && oh.data[11] == 0.9,
          "one-hot values");
    double acc = 0, mse = 0;
    nk_array pred = mat(4, 3);
    memcpy(pred.data, oh.data, 12 * sizeof(double));
    pred.data[3 * 3 + 0] = 5; /* row 3 now predicts class 0 */
    CHECK(nk_accuracy(&pred, &lab, &acc, &err) == NK_OK && acc == 0.75, "accuracy %g", acc);
    CHECK(nk_mse(&pred, &oh, &mse, &err) == NK_OK && fabs(mse - 5.1 * 5.1 / 12) < 1e-15,
          "mse %g", mse);
    nk_array_free(&oh);
    CHECK(nk_one_hot(&lab, 2, 1, 0, &oh, &err) == NK_ERR_INPUT, "label beyond nclass: %s", err.msg);
    lab.data[1] = 0.5;
    CHECK(nk_one_hot(&lab, 0, 1, 0, &oh, &err) == NK_ERR_INPUT, "fractional label: %s", err.msg);
    nk_array lab3 = vec(3);
    CHECK(nk_accuracy(&pred, &lab3, &acc, &err) == NK_ERR_INPUT, "label count: %s", err.msg);
    nk_array_free(&lab); nk_array_free(&pred); nk_array_free(&lab3);
}

int main(void)
{
    test_gp_reference();
    test_gp_closed_form();
    test_flow_reference();
    test_flow_equals_gp();
    test_flow_blocks();
    test_errors();
    test_classification();
    return nk_test_summary("test_infer");
}
