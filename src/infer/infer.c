/* infer.c -- NNGP posterior and NTK gradient-flow predictions from kernel matrices.
 * All linear algebra goes through LAPACKE / CBLAS; formulas are in nk_infer.h. */
#include "nk_infer.h"

#include <cblas.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct nk_gp {
    size_t n, k;
    double eps;
    double *chol;  /* (N, N) row-major; lower triangle holds L with K + eps I = L L^T */
    double *alpha; /* (N, k) = (K + eps I)^-1 Y */
};

struct nk_flow {
    size_t n, k;
    double eps, lr;
    double mdiag;     /* mean diagonal of Theta, the unit of relative regularization */
    int reg_absolute; /* how the caller states regularization, for suggestions */
    double *evals; /* (N) ascending eigenvalues of Theta + eps I, small negatives set to 0 */
    double *evecs; /* (N, N) row-major, column j the eigenvector of evals[j] */
    double *ytil;  /* (N, k) = V^T Y */
    double *ktil;  /* (N, N) = V^T K V (NNGP in the NTK eigenbasis), NULL without nngp */
};

void nk_infer_opts_default(nk_infer_opts *o)
{
    o->diag_reg = 0.0;
    o->reg_absolute = 0;
    o->lr = 1.0;
    o->sym_tol = 1e-6;
    o->psd_tol = 1e-6;
}

/* ------------------------------------------------------------ checks ---- */

static nk_status check_matrix(const nk_array *a, const char *where, const char *name,
                              size_t rows, size_t cols, nk_error *err)
{
    if (!a || !a->data)
        return nk_fail(err, NK_ERR_INPUT, "%s: %s is missing (pass a %zu x %zu matrix)", where,
                       name, rows, cols);
    if (a->ndim != 2 || a->shape[0] != rows || a->shape[1] != cols) {
        if (a->ndim == 2)
            return nk_fail(err, NK_ERR_INPUT,
                           "%s: %s has shape (%zu, %zu), expected (%zu, %zu) (check that "
                           "the kernels and targets come from the same samples)",
                           where, name, a->shape[0], a->shape[1], rows, cols);
        return nk_fail(err, NK_ERR_INPUT,
                       "%s: %s has %d dimensions, expected a (%zu, %zu) matrix", where, name,
                       a->ndim, rows, cols);
    }
    return NK_OK;
}

static nk_status check_finite(const double *x, size_t n, const char *where, const char *name,
                              nk_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return nk_fail(err, NK_ERR_INPUT,
                           "%s: %s has a non-finite value (%g) at flat index %zu (recompute "
                           "it; a kernel of finite inputs is finite)",
                           where, name, x[i], i);
    return NK_OK;
}

/* Square, finite and symmetric within sym_tol * max |K_ii|. */
static nk_status check_train_kernel(const nk_array *kt, const char *where, const char *name,
                                    double sym_tol, nk_error *err)
{
    if (!kt || !kt->data || kt->ndim != 2 || kt->shape[0] != kt->shape[1] || !kt->shape[0])
        return nk_fail(err, NK_ERR_INPUT,
                       "%s: %s must be a non-empty square (N, N) matrix (pass the Gram "
                       "matrix of the training set)",
                       where, name);
    size_t n = kt->shape[0];
    const double *k = kt->data;
    nk_status st = check_finite(k, n * n, where, name, err);
    if (st) return st;
    double scale = 0.0;
    for (size_t i = 0; i < n; i++)
        if (fabs(k[i * n + i]) > scale) scale = fabs(k[i * n + i]);
    if (scale == 0.0) scale = 1.0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (fabs(k[i * n + j] - k[j * n + i]) > sym_tol * scale)
                return nk_fail(err, NK_ERR_INPUT,
                               "%s: %s is not symmetric: [%zu,%zu] = %.17g but [%zu,%zu] = "
                               "%.17g (pass the Gram matrix of one set of inputs)",
                               where, name, i, j, k[i * n + j], j, i, k[j * n + i]);
    return NK_OK;
}

/* Targets (N) or (N, k): sets *k. */
static nk_status check_targets(const nk_array *y, size_t n, const char *where, size_t *k,
                               nk_error *err)
{
    if (!y || !y->data || (y->ndim != 1 && y->ndim != 2))
        return nk_fail(err, NK_ERR_INPUT, "%s: targets must be (N) or (N, k) with N = %zu",
                       where, n);
    if (y->shape[0] != n)
        return nk_fail(err, NK_ERR_INPUT,
                       "%s: %zu targets for %zu training points (give one row per training "
                       "point)",
                       where, y->shape[0], n);
    *k = y->ndim == 2 ? y->shape[1] : 1;
    if (!*k) return nk_fail(err, NK_ERR_INPUT, "%s: targets have 0 outputs", where);
    return check_finite(y->data, n * *k, where, "targets", err);
}

/* k_test_test for M test points: (M) diagonal or (M, M); full needs (M, M). */
static nk_status check_test_test(const nk_array *a, size_t m, nk_cov_mode mode,
                                 const char *where, nk_error *err)
{
    if (!a || !a->data)
        return nk_fail(err, NK_ERR_INPUT,
                       "%s: covariance requested but the test-test kernel is missing", where);
    int diag_ok = a->ndim == 1 && a->shape[0] == m;
    int full_ok = a->ndim == 2 && a->shape[0] == m && a->shape[1] == m;
    if (mode == NK_COV_FULL && !full_ok)
        return nk_fail(err, NK_ERR_INPUT,
                       "%s: full covariance needs the (%zu, %zu) test-test kernel", where, m,
                       m);
    if (!diag_ok && !full_ok)
        return nk_fail(err, NK_ERR_INPUT,
                       "%s: test-test kernel must be (%zu) (its diagonal) or (%zu, %zu)",
                       where, m, m, m);
    return check_finite(a->data, nk_array_size(a), where, "test-test kernel", err);
}

static double mean_diag(const double *k, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += k[i * n + i];
    return s / (double)n;
}

static double reg_eps(const double *k, size_t n, const nk_infer_opts *o)
{
    return o->reg_absolute ? o->diag_reg : o->diag_reg * mean_diag(k, n);
}

/* A regularization (in the caller's units) that makes a kernel with eigenvalues in
 * [lmin, lmax] safely positive definite: ten times the deficit, rounded up to a power of 10. */
static double suggest_reg(double lmin, double lmax, double mdiag, int absolute)
{
    double need = 10.0 * fmax(fabs(lmin), 1e-12 * fabs(lmax));
    if (!absolute && mdiag > 0) need /= mdiag;
    double p = pow(10.0, ceil(log10(need)));
    return absolute ? p : fmax(p, 1e-4);
}

/* Eigenvalues of a copy of the (N, N) matrix k (only on error paths). */
static nk_status extreme_eigenvalues(const double *k, size_t n, double *lmin, double *lmax,
                                     const char *where, nk_error *err)
{
    double *a = malloc(n * n * sizeof *a), *w = malloc(n * sizeof *w);
    nk_status st = NK_OK;
    if (!a || !w) {
        st = nk_fail(err, NK_ERR_NOMEM, "%s: cannot allocate %zu x %zu workspace", where, n, n);
        goto done;
    }
    memcpy(a, k, n * n * sizeof *a);
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'L', (lapack_int)n, a,
                                     (lapack_int)n, w);
    if (info) {
        st = nk_fail(err, NK_ERR_RUN, "%s: eigenvalue solver failed (info %d)", where,
                     (int)info);
        goto done;
    }
    *lmin = w[0];
    *lmax = w[n - 1];
done:
    free(a);
    free(w);
    return st;
}

/* ---------------------------------------------------------- NNGP posterior -- */

void nk_gp_free(nk_gp *gp)
{
    if (!gp) return;
    free(gp->chol);
    free(gp->alpha);
    free(gp);
}

double nk_gp_reg(const nk_gp *gp) { return gp->eps; }

/* The caller's options, or the defaults for NULL; the regularization must be finite, >= 0. */
static nk_status resolve_opts(const nk_infer_opts **opts, nk_infer_opts *defaults, const char *where, nk_error *err)
{
    if (!*opts) {
        nk_infer_opts_default(defaults);
        *opts = defaults;
    }
    if (!((*opts)->diag_reg >= 0) || !isfinite((*opts)->diag_reg))
        return nk_fail(err, NK_ERR_INPUT, "%s: diag_reg = %g (use a finite value >= 0)", where, (*opts)->diag_reg);
    return NK_OK;
}

nk_status nk_gp_create(const nk_array *k_train, const nk_array *y_train,
                       const nk_infer_opts *opts, nk_gp **out, nk_error *err)
{
    static const char where[] = "nk_gp_create";
    nk_infer_opts defaults;
    nk_gp *gp = NULL;
    nk_status st;
    *out = NULL;
    st = resolve_opts(&opts, &defaults, where, err);
    if (st) return st;
    st = check_train_kernel(k_train, where, "training kernel", opts->sym_tol, err);
    if (st) return st;
    size_t n = k_train->shape[0], k;
    st = check_targets(y_train, n, where, &k, err);
    if (st) return st;

    gp = calloc(1, sizeof *gp);
    if (!gp) return nk_fail(err, NK_ERR_NOMEM, "%s: out of memory", where);
    gp->n = n;
    gp->k = k;
    gp->eps = reg_eps(k_train->data, n, opts);
    gp->chol = malloc(n * n * sizeof *gp->chol);
    gp->alpha = malloc(n * k * sizeof *gp->alpha);
    if (!gp->chol || !gp->alpha) {
        st = nk_fail(err, NK_ERR_NOMEM, "%s: cannot allocate the %zu x %zu factor", where, n, n);
        goto fail;
    }
    memcpy(gp->chol, k_train->data, n * n * sizeof *gp->chol);
    for (size_t i = 0; i < n; i++) gp->chol[i * n + i] += gp->eps;
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, gp->chol,
                                     (lapack_int)n);
    if (info > 0) {
        double lmin = 0, lmax = 0;
        st = extreme_eigenvalues(k_train->data, n, &lmin, &lmax, where, err);
        if (st) goto fail;
        double sugg = suggest_reg(lmin, lmax, mean_diag(k_train->data, n), opts->reg_absolute);
        if (lmin < -opts->psd_tol * fabs(lmax))
            st = nk_fail(err, NK_ERR_INPUT,
                         "%s: training kernel is not positive semi-definite (smallest "
                         "eigenvalue %.3g, largest %.3g) (pass a kernel Gram matrix; to force "
                         "a fit, regularize with diag_reg %g%s, e.g. --reg %g)",
                         where, lmin, lmax, sugg, opts->reg_absolute ? " absolute" : "", sugg);
        else
            st = nk_fail(err, NK_ERR_INPUT,
                         "%s: K + eps I is singular (eps = %g; Cholesky failed at row %d; "
                         "eigenvalues of K from %.3g to %.3g) (add regularization, e.g. "
                         "diag_reg %g%s: --reg %g)",
                         where, gp->eps, (int)info, lmin, lmax, sugg,
                         opts->reg_absolute ? " absolute" : "", sugg);
        goto fail;
    }
    if (info < 0) {
        st = nk_fail(err, NK_ERR_RUN, "%s: dpotrf rejected argument %d", where, (int)-info);
        goto fail;
    }
    memcpy(gp->alpha, y_train->data, n * k * sizeof *gp->alpha);
    info = LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, (lapack_int)k, gp->chol,
                          (lapack_int)n, gp->alpha, (lapack_int)k);
    if (info) {
        st = nk_fail(err, NK_ERR_RUN, "%s: dpotrs failed (info %d)", where, (int)info);
        goto fail;
    }
    *out = gp;
    return NK_OK;
fail:
    nk_gp_free(gp);
    return st;
}

nk_status nk_gp_predict(const nk_gp *gp, const nk_array *k_test_train,
                        const nk_array *k_test_test, nk_cov_mode cov_mode, nk_array *mean,
                        nk_array *cov, nk_error *err)
{
    static const char where[] = "nk_gp_predict";
    nk_array mu = {0}, c = {0};
    double *x = NULL;
    nk_status st;
    if (!k_test_train || !k_test_train->data || k_test_train->ndim != 2)
        return nk_fail(err, NK_ERR_INPUT, "%s: test-train kernel must be an (M, %zu) matrix",
                       where, gp->n);
    size_t m = k_test_train->shape[0], n = gp->n, k = gp->k;
    st = check_matrix(k_test_train, where, "test-train kernel", m, n, err);
    if (st) return st;
    st = check_finite(k_test_train->data, m * n, where, "test-train kernel", err);
    if (st) return st;
    if (cov_mode != NK_COV_NONE) {
        if (!cov) return nk_fail(err, NK_ERR_INPUT, "%s: covariance requested but cov is NULL", where);
        st = check_test_test(k_test_test, m, cov_mode, where, err);
        if (st) return st;
    }

    size_t mshape[2] = {m, k};
    st = nk_array_alloc(&mu, 2, mshape, err);
    if (st) goto done;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)k, (int)n, 1.0,
                k_test_train->data, (int)n, gp->alpha, (int)k, 0.0, mu.data, (int)k);

    if (cov_mode != NK_COV_NONE) {
        /* X = K*^T L^-T, so X X^T = K*^T (K + eps I)^-1 K*. */
        x = malloc(m * n * sizeof *x);
        if (!x) {
            st = nk_fail(err, NK_ERR_NOMEM, "%s: cannot allocate %zu x %zu workspace", where, m, n);
            goto done;
        }
        memcpy(x, k_test_train->data, m * n * sizeof *x);
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, (int)m,
                    (int)n, 1.0, gp->chol, (int)n, x, (int)n);
        const double *ktt = k_test_test->data;
        int ktt_full = k_test_test->ndim == 2;
        if (cov_mode == NK_COV_DIAG) {
            st = nk_array_alloc(&c, 1, &m, err);
            if (st) goto done;
            for (size_t i = 0; i < m; i++) {
                double s = cblas_ddot((int)n, x + i * n, 1, x + i * n, 1);
                c.data[i] = (ktt_full ? ktt[i * m + i] : ktt[i]) - s;
            }
        } else {
            size_t cshape[2] = {m, m};
            st = nk_array_alloc(&c, 2, cshape, err);
            if (st) goto done;
            memcpy(c.data, ktt, m * m * sizeof *c.data);
            cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, (int)m, (int)n, -1.0, x,
                        (int)n, 1.0, c.data, (int)m);
            /* dsyrk filled the lower triangle; the result is symmetric by definition. */
            for (size_t i = 0; i < m; i++)
                for (size_t j = i + 1; j < m; j++) c.data[i * m + j] = c.data[j * m + i];
        }
    }
    *mean = mu;
    memset(&mu, 0, sizeof mu);
    if (cov_mode != NK_COV_NONE) {
        *cov = c;
        memset(&c, 0, sizeof c);
    }
done:
    free(x);
    nk_array_free(&mu);
    nk_array_free(&c);
    return st;
}

/* ----------------------------------------------------------- gradient flow -- */

void nk_flow_free(nk_flow *f)
{
    if (!f) return;
    free(f->evals);
    free(f->evecs);
    free(f->ytil);
    free(f->ktil);
    free(f);
}

double nk_flow_reg(const nk_flow *f) { return f->eps; }

const double *nk_flow_eigenvalues(const nk_flow *f, size_t *n)
{
    if (n) *n = f->n;
    return f->evals;
}

nk_status nk_flow_create(const nk_array *ntk_train, const nk_array *nngp_train,
                         const nk_array *y_train, const nk_infer_opts *opts, nk_flow **out,
                         nk_error *err)
{
    static const char where[] = "nk_flow_create";
    nk_infer_opts defaults;
    nk_flow *f = NULL;
    double *tmp = NULL;
    nk_status st;
    *out = NULL;
    st = resolve_opts(&opts, &defaults, where, err);
    if (st) return st;
    if (!(opts->lr > 0) || !isfinite(opts->lr))
        return nk_fail(err, NK_ERR_INPUT, "%s: learning rate %g (use a finite value > 0)",
                       where, opts->lr);
    st = check_train_kernel(ntk_train, where, "training NTK", opts->sym_tol, err);
    if (st) return st;
    size_t n = ntk_train->shape[0], k;
    if (nngp_train) {
        st = check_train_kernel(nngp_train, where, "training NNGP kernel", opts->sym_tol, err);
        if (st) return st;
        if (nngp_train->shape[0] != n)
            return nk_fail(err, NK_ERR_INPUT,
                           "%s: training NNGP kernel is %zu x %zu but the NTK is %zu x %zu "
                           "(compute both on the same training set)",
                           where, nngp_train->shape[0], nngp_train->shape[0], n, n);
    }
    st = check_targets(y_train, n, where, &k, err);
    if (st) return st;

    f = calloc(1, sizeof *f);
    if (!f) return nk_fail(err, NK_ERR_NOMEM, "%s: out of memory", where);
    f->n = n;
    f->k = k;
    f->lr = opts->lr;
    f->eps = reg_eps(ntk_train->data, n, opts);
    f->mdiag = mean_diag(ntk_train->data, n);
    f->reg_absolute = opts->reg_absolute;
    f->evals = malloc(n * sizeof *f->evals);
    f->evecs = malloc(n * n * sizeof *f->evecs);
    f->ytil = malloc(n * k * sizeof *f->ytil);
    if (nngp_train) {
        f->ktil = malloc(n * n * sizeof *f->ktil);
        tmp = malloc(n * n * sizeof *tmp);
    }
    if (!f->evals || !f->evecs || !f->ytil || (nngp_train && (!f->ktil || !tmp))) {
        st = nk_fail(err, NK_ERR_NOMEM, "%s: cannot allocate %zu x %zu matrices", where, n, n);
        goto fail;
    }
    memcpy(f->evecs, ntk_train->data, n * n * sizeof *f->evecs);
    for (size_t i = 0; i < n; i++) f->evecs[i * n + i] += f->eps;
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'L', (lapack_int)n, f->evecs,
                                     (lapack_int)n, f->evals);
    if (info) {
        st = nk_fail(err, NK_ERR_RUN, "%s: eigendecomposition failed (dsyevd info %d)", where,
                     (int)info);
        goto fail;
    }
    double lmax = fabs(f->evals[n - 1]);
    if (f->evals[0] < -opts->psd_tol * lmax) {
        double sugg = suggest_reg(f->evals[0], lmax, f->mdiag, opts->reg_absolute);
        st = nk_fail(err, NK_ERR_INPUT,
                     "%s: training NTK is not positive semi-definite (smallest eigenvalue of "
                     "Theta + eps I %.3g, largest %.3g, eps %g) (pass a kernel Gram matrix; "
                     "to force a fit, regularize with diag_reg %g%s, e.g. --reg %g)",
                     where, f->evals[0], lmax, f->eps, sugg, opts->reg_absolute ? " absolute" : "",
                     sugg);
        goto fail;
    }
    /* Rounding leaves tiny negative eigenvalues on singular kernels; the kernel is PSD. */
    for (size_t i = 0; i < n; i++)
        if (f->evals[i] < 0) f->evals[i] = 0;

    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)k, (int)n, 1.0, f->evecs,
                (int)n, y_train->data, (int)k, 0.0, f->ytil, (int)k);
    if (nngp_train) {
        cblas_dsymm(CblasRowMajor, CblasLeft, CblasLower, (int)n, (int)n, 1.0, nngp_train->data,
                    (int)n, f->evecs, (int)n, 0.0, tmp, (int)n);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0,
                    f->evecs, (int)n, tmp, (int)n, 0.0, f->ktil, (int)n);
    }
    free(tmp);
    *out = f;
    return NK_OK;
fail:
    free(tmp);
    nk_flow_free(f);
    return st;
}

/* Test rows per block of nk_flow_predict (without full covariance). */
enum { FLOW_BLOCK = 512 };

/* g(lambda, s) = (1 - e^{-lambda s}) / lambda, the eigenvalue of Theta^-1 (I - e^{-Theta s});
 * its limit s for lambda = 0 and 1 / lambda for s = inf. */
static double flow_gain(double lambda, double s)
{
    if (isinf(s)) return 1.0 / lambda;
    if (lambda == 0.0) return s;
    return -expm1(-lambda * s) / lambda;
}

nk_status nk_flow_predict(const nk_flow *f, const nk_array *ntk_test_train,
                          const nk_array *nngp_test_train, const nk_array *nngp_test_test,
                          const double *times, size_t ntimes, nk_cov_mode cov_mode,
                          nk_array *mean, nk_array *cov, nk_error *err)
{
    static const char where[] = "nk_flow_predict";
    nk_array mu = {0}, c = {0};
    double *p = NULL, *q = NULL, *r = NULL, *e = NULL, *g = NULL, *yg = NULL;
    nk_status st = NK_OK;
    size_t n = f->n, k = f->k;
    int want_cov = cov_mode != NK_COV_NONE;

    if (!ntk_test_train || !ntk_test_train->data || ntk_test_train->ndim != 2)
        return nk_fail(err, NK_ERR_INPUT, "%s: test-train NTK must be an (M, %zu) matrix",
                       where, n);
    size_t m = ntk_test_train->shape[0];
    st = check_matrix(ntk_test_train, where, "test-train NTK", m, n, err);
    if (st) return st;
    st = check_finite(ntk_test_train->data, m * n, where, "test-train NTK", err);
    if (st) return st;
    if (!times || !ntimes)
        return nk_fail(err, NK_ERR_INPUT, "%s: no times given (pass at least one, e.g. inf)",
                       where);
    int any_inf = 0;
    for (size_t t = 0; t < ntimes; t++) {
        if (!(times[t] >= 0))
            return nk_fail(err, NK_ERR_INPUT, "%s: time %g (use t >= 0 or inf)", where, times[t]);
        if (isinf(times[t])) any_inf = 1;
    }
    /* t = inf inverts Theta + eps I: every eigenvalue must be clearly positive. */
    if (any_inf && f->evals[0] <= (double)n * DBL_EPSILON * f->evals[n - 1]) {
        double sugg = suggest_reg(f->evals[n - 1] * (double)n * DBL_EPSILON, f->evals[n - 1],
                                  f->mdiag, f->reg_absolute);
        return nk_fail(err, NK_ERR_INPUT,
                       "%s: Theta + eps I is singular (eps = %g, smallest eigenvalue %.3g, "
                       "largest %.3g), so t = inf is undefined (add regularization, e.g. "
                       "diag_reg %g%s: --reg %g, or use finite times)",
                       where, f->eps, f->evals[0], f->evals[n - 1], sugg,
                       f->reg_absolute ? " absolute" : "", sugg);
    }
    if (want_cov) {
        if (!cov) return nk_fail(err, NK_ERR_INPUT, "%s: covariance requested but cov is NULL", where);
        if (!f->ktil)
            return nk_fail(err, NK_ERR_INPUT,
                           "%s: covariance needs the training NNGP kernel (pass nngp_train "
                           "to nk_flow_create)",
                           where);
        st = check_matrix(nngp_test_train, where, "test-train NNGP kernel", m, n, err);
        if (st) return st;
        st = check_finite(nngp_test_train->data, m * n, where, "test-train NNGP kernel", err);
        if (st) return st;
        st = check_test_test(nngp_test_test, m, cov_mode, where, err);
        if (st) return st;
    }

    size_t mshape[3] = {ntimes, m, k};
    st = nk_array_alloc(&mu, 3, mshape, err);
    if (st) goto done;
    if (want_cov) {
        size_t cshape[3] = {ntimes, m, m};
        st = nk_array_alloc(&c, cov_mode == NK_COV_FULL ? 3 : 2, cshape, err);
        if (st) goto done;
    }
    /* Test rows go through in blocks, bounding the workspace at 4 * rows * N doubles; the
     * full covariance couples all test points, so it takes them in one block. */
    size_t blk = cov_mode == NK_COV_FULL || m < FLOW_BLOCK ? m : FLOW_BLOCK;
    if (!blk) blk = 1;
    p = malloc(blk * n * sizeof *p);
    g = malloc(n * sizeof *g);
    yg = malloc(n * k * sizeof *yg);
    if (!p || !g || !yg) goto nomem;
    if (want_cov) {
        q = malloc(blk * n * sizeof *q);
        r = malloc(blk * n * sizeof *r);
        e = malloc(blk * n * sizeof *e);
        if (!q || !r || !e) goto nomem;
    }
    for (size_t r0 = 0; r0 < m; r0 += blk) {
        size_t b = m - r0 < blk ? m - r0 : blk;
        /* P = Theta*^T V and Q = K*^T V: the test-train kernels in the eigenbasis, shared by
         * all times. */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)b, (int)n, (int)n, 1.0,
                    ntk_test_train->data + r0 * n, (int)n, f->evecs, (int)n, 0.0, p, (int)n);
        if (want_cov)
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)b, (int)n, (int)n, 1.0,
                        nngp_test_train->data + r0 * n, (int)n, f->evecs, (int)n, 0.0, q,
                        (int)n);
        for (size_t t = 0; t < ntimes; t++) {
            double s = f->lr * times[t];
            for (size_t i = 0; i < n; i++) g[i] = flow_gain(f->evals[i], s);
            /* mean_t = P diag(g) V^T Y. */
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < k; j++) yg[i * k + j] = g[i] * f->ytil[i * k + j];
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)b, (int)k, (int)n, 1.0,
                        p, (int)n, yg, (int)k, 0.0, mu.data + (t * m + r0) * k, (int)k);
            if (!want_cov) continue;
            /* In the eigenbasis B = R V^T with R = P diag(g), so
             *   B K B^T - B K* - K*^T B^T = R Ktil R^T - R Q^T - Q R^T = sym(E R^T),
             * E = R Ktil - 2 Q, sym(A) = (A + A^T) / 2 (R Ktil R^T is symmetric). */
            for (size_t i = 0; i < b; i++)
                for (size_t j = 0; j < n; j++) r[i * n + j] = p[i * n + j] * g[j];
            memcpy(e, q, b * n * sizeof *e);
            cblas_dsymm(CblasRowMajor, CblasRight, CblasLower, (int)b, (int)n, 1.0, f->ktil,
                        (int)n, r, (int)n, -2.0, e, (int)n);
            const double *ktt = nngp_test_test->data;
            int ktt_full = nngp_test_test->ndim == 2;
            if (cov_mode == NK_COV_DIAG) {
                double *ct = c.data + t * m + r0;
                for (size_t i = 0; i < b; i++) {
                    size_t gi = r0 + i;
                    ct[i] = (ktt_full ? ktt[gi * m + gi] : ktt[gi]) +
                            cblas_ddot((int)n, e + i * n, 1, r + i * n, 1);
                }
            } else {
                double *ct = c.data + t * m * m;
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)m, (int)n, 1.0,
                            e, (int)n, r, (int)n, 0.0, ct, (int)m);
                for (size_t i = 0; i < m; i++) {
                    ct[i * m + i] += ktt[i * m + i];
                    for (size_t j = 0; j < i; j++) {
                        double v = 0.5 * (ct[i * m + j] + ct[j * m + i]);
                        ct[i * m + j] = v + ktt[i * m + j];
                        ct[j * m + i] = v + ktt[j * m + i];
                    }
                }
            }
        }
    }
    *mean = mu;
    memset(&mu, 0, sizeof mu);
    if (want_cov) {
        *cov = c;
        memset(&c, 0, sizeof c);
    }
    goto done;
nomem:
    st = nk_fail(err, NK_ERR_NOMEM, "%s: cannot allocate the %zu x %zu workspace", where,
                 m < FLOW_BLOCK ? m : FLOW_BLOCK, n);
done:
    free(p);
    free(q);
    free(r);
    free(e);
    free(g);
    free(yg);
    nk_array_free(&mu);
    nk_array_free(&c);
    return st;
}

/* ---------------------------------------------------------- classification -- */

nk_status nk_one_hot(const nk_array *labels, size_t nclass, double on, double off,
                     nk_array *out, nk_error *err)
{
    static const char where[] = "nk_one_hot";
    if (!labels || !labels->data || labels->ndim != 1)
        return nk_fail(err, NK_ERR_INPUT, "%s: labels must be a 1-D array", where);
    size_t n = labels->shape[0];
    double maxl = -1;
    for (size_t i = 0; i < n; i++) {
        double l = labels->data[i];
        if (!(l >= 0) || l != floor(l) || l > 1e9)
            return nk_fail(err, NK_ERR_INPUT,
                           "%s: label %zu is %g (labels must be integers 0, 1, ...)", where, i,
                           l);
        if (l > maxl) maxl = l;
    }
    if (!nclass) nclass = (size_t)maxl + 1;
    if (maxl >= (double)nclass)
        return nk_fail(err, NK_ERR_INPUT, "%s: label %g but only %zu classes (raise nclass)",
                       where, maxl, nclass);
    size_t shape[2] = {n, nclass};
    nk_status st = nk_array_alloc(out, 2, shape, err);
    if (st) return st;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < nclass; j++)
            out->data[i * nclass + j] = (size_t)labels->data[i] == j ? on : off;
    return NK_OK;
}

nk_status nk_accuracy(const nk_array *pred, const nk_array *labels, double *acc,
                      nk_error *err)
{
    static const char where[] = "nk_accuracy";
    if (!pred || !pred->data || (pred->ndim != 2 && pred->ndim != 1))
        return nk_fail(err, NK_ERR_INPUT, "%s: predictions must be (M, k)", where);
    if (!labels || !labels->data || labels->ndim != 1 || labels->shape[0] != pred->shape[0])
        return nk_fail(err, NK_ERR_INPUT,
                       "%s: need one label per prediction row (%zu rows)", where,
                       pred->shape[0]);
    size_t m = pred->shape[0], k = pred->ndim == 2 ? pred->shape[1] : 1;
    if (!m) return nk_fail(err, NK_ERR_INPUT, "%s: no predictions", where);
    size_t right = 0;
    for (size_t i = 0; i < m; i++) {
        const double *row = pred->data + i * k;
        size_t best = 0;
        for (size_t j = 1; j < k; j++)
            if (row[j] > row[best]) best = j;
        if ((double)best == labels->data[i]) right++;
    }
    *acc = (double)right / (double)m;
    return NK_OK;
}

nk_status nk_mse(const nk_array *pred, const nk_array *target, double *mse, nk_error *err)
{
    static const char where[] = "nk_mse";
    if (!pred || !target || !pred->data || !target->data || pred->ndim != target->ndim)
        return nk_fail(err, NK_ERR_INPUT, "%s: predictions and targets must have one shape",
                       where);
    for (int d = 0; d < pred->ndim; d++)
        if (pred->shape[d] != target->shape[d])
            return nk_fail(err, NK_ERR_INPUT,
                           "%s: axis %d has %zu predictions but %zu targets", where, d,
                           pred->shape[d], target->shape[d]);
    size_t n = nk_array_size(pred);
    if (!n) return nk_fail(err, NK_ERR_INPUT, "%s: empty arrays", where);
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = pred->data[i] - target->data[i];
        s += d * d;
    }
    *mse = s / (double)n;
    return NK_OK;
}
