/* spectrum.c -- eigenvalues of kernel matrices and of dot-product kernels on the sphere:
 * symmetric eigensolver, spectrum statistics, power-law fit, P(Theta) predictions,
 * Gauss-Jacobi quadrature, Gegenbauer polynomials and the Funk-Hecke projection. */
#include "nk_theory.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PI 3.14159265358979323846

nk_status nk_sym_eig(double *a, size_t n, int vectors, double *eig, nk_error *err)
{
    if (n == 0) return nk_fail(err, NK_ERR_INPUT, "eigenvalues: empty matrix");
    /* LAPACKE refuses a NaN as "argument 5 invalid" (info -5): say what it is instead */
    for (size_t i = 0; i < n * n; i++)
        if (!isfinite(a[i]))
            return nk_fail(err, NK_ERR_NONFINITE, "eigenvalues: entry (%zu, %zu) of the matrix is %s (the kernel overflowed: "
                           "use smaller weights, fewer layers or rescaled inputs)", i / n, i % n, isnan(a[i]) ? "NaN" : "infinite");
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, vectors ? 'V' : 'N', 'U', (lapack_int)n, a,
                                     (lapack_int)n, eig);
    if (info == LAPACK_WORK_MEMORY_ERROR || info == LAPACK_TRANSPOSE_MEMORY_ERROR)
        return nk_fail(err, NK_ERR_NOMEM, "eigenvalues: out of memory for a %zu x %zu matrix (use fewer samples)", n, n);
    if (info < 0) return nk_fail(err, NK_ERR_RUN, "eigenvalues: dsyevd rejected argument %d", (int)-info);
    if (info > 0) return nk_fail(err, NK_ERR_RUN, "eigenvalues: dsyevd did not converge (info %d; is the matrix finite?)", (int)info);
    return NK_OK;
}

nk_status nk_check_symmetric(const nk_array *a, double tol, const char *name, nk_error *err)
{
    if (a->ndim != 2)
        return nk_fail(err, NK_ERR_INPUT, "%s: %d axes, expected a square N x N kernel matrix", name, a->ndim);
    if (a->shape[0] != a->shape[1])
        return nk_fail(err, NK_ERR_INPUT, "%s: shape (%zu, %zu) is not square (expected an N x N kernel matrix)", name,
                       a->shape[0], a->shape[1]);
    size_t n = a->shape[0];
    double m = 0, worst = 0;
    size_t wi = 0, wj = 0;
    for (size_t i = 0; i < n * n; i++) {
        if (!isfinite(a->data[i])) return nk_fail(err, NK_ERR_INPUT, "%s: entry (%zu, %zu) is not finite", name, i / n, i % n);
        m = fmax(m, fabs(a->data[i]));
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            double d = fabs(a->data[i * n + j] - a->data[j * n + i]);
            if (d > worst) { worst = d; wi = i; wj = j; }
        }
    if (worst > tol * m)
        return nk_fail(err, NK_ERR_INPUT, "%s: not symmetric: entries (%zu, %zu) and (%zu, %zu) differ by %.3g (max |entry| %.3g; pass a symmetric Gram matrix)",
                       name, wi, wj, wj, wi, worst, m);
    return NK_OK;
}

void nk_spec_stats_compute(const double *eig, size_t n, nk_spec_stats *s)
{
    memset(s, 0, sizeof *s);
    if (n == 0) return;
    s->lmax = eig[n - 1];
    s->lmin = eig[0];
    s->cond = s->lmin > 0 ? s->lmax / s->lmin : INFINITY;
    double sum = 0, sum2 = 0;
    for (size_t i = 0; i < n; i++) { sum += eig[i]; sum2 += eig[i] * eig[i]; }
    s->trace = sum;
    s->eff_rank = sum2 > 0 ? sum * sum / sum2 : 0;
    s->lr_max = s->lmax > 0 ? 2 / s->lmax : INFINITY;
    if (n == 1) { s->bulk_mean = s->bulk_median = eig[0]; }
    else {
        /* eig is ascending: the bulk is eig[0 .. n-2] */
        size_t m = n - 1;
        s->bulk_mean = (sum - eig[n - 1]) / (double)m;
        s->bulk_median = m % 2 ? eig[m / 2] : 0.5 * (eig[m / 2 - 1] + eig[m / 2]);
    }
    s->cond_bulk = s->lmin > 0 ? s->bulk_mean / s->lmin : INFINITY;
}

nk_status nk_decay_fit(const double *desc, size_t n, size_t i0, size_t i1, double *alpha,
                       double *log_c, nk_error *err)
{
    if (i0 < 1) i0 = 1;
    if (i1 > n) i1 = n;
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    size_t m = 0;
    for (size_t i = i0; i <= i1; i++) {
        double l = desc[i - 1];
        if (!(l > 0)) continue;
        double x = log((double)i), y = log(l);
        sx += x; sy += y; sxx += x * x; sxy += x * y;
        m++;
    }
    if (m < 2)
        return nk_fail(err, NK_ERR_INPUT, "decay fit: fewer than 2 positive eigenvalues of rank %zu..%zu (choose another --fit range)", i0, i1);
    double den = m * sxx - sx * sx;
    if (!(den > 0)) return nk_fail(err, NK_ERR_INPUT, "decay fit: degenerate rank range %zu..%zu", i0, i1);
    double slope = (m * sxy - sx * sy) / den;
    *alpha = -slope;
    if (log_c) *log_c = (sy - slope * sx) / m;
    return NK_OK;
}

nk_status nk_ptheta_predict(double *theta, size_t n, const double *cross, size_t m,
                            const double *y, size_t c, double reg, double *pred, nk_error *err)
{
    double md = 0;
    for (size_t i = 0; i < n; i++) md += theta[i * n + i];
    md /= (double)n;
    for (size_t i = 0; i < n; i++) theta[i * n + i] += reg * md;
    double *alpha = malloc(n * c * sizeof *alpha);
    if (!alpha) return nk_fail(err, NK_ERR_NOMEM, "P(Theta): out of memory for %zu x %zu", n, c);
    memcpy(alpha, y, n * c * sizeof *alpha);
    lapack_int info = LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, (lapack_int)c, theta, (lapack_int)n,
                                    alpha, (lapack_int)c);
    if (info != 0) {
        free(alpha);
        return nk_fail(err, NK_ERR_RUN, "P(Theta): Cholesky of the train NTK failed (info %d; raise the regularization)", (int)info);
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)c, (int)n, 1.0, cross, (int)n, alpha,
                (int)c, 0.0, pred, (int)c);
    free(alpha);
    return NK_OK;
}

/* ------------------------------------------------------------ the sphere -- */

double nk_sphere_cd(int d) { return exp(lgamma(0.5 * d) - lgamma(0.5 * (d - 1))) / sqrt(PI); }

double nk_sphere_multiplicity(int d, int k)
{
    if (k == 0) return 1;
    if (d == 2) return 2;
    /* (2k + d - 2)/k * binom(k + d - 3, d - 2) */
    double lb = lgamma(k + d - 2.0) - lgamma(d - 1.0) - lgamma(k - 1.0 + 1.0);
    double v = (2.0 * k + d - 2) / k * exp(lb);
    return v < 1e15 ? nearbyint(v) : v; /* an integer: remove the rounding of lgamma */
}

void nk_gegenbauer(int d, int kmax, double t, double *p)
{
    /* P_{k+1} = ((2k + d - 2) t P_k - k P_{k-1}) / (k + d - 2), P_0 = 1, P_1 = t */
    p[0] = 1;
    if (kmax >= 1) p[1] = t;
    for (int k = 1; k < kmax; k++) p[k + 1] = ((2.0 * k + d - 2) * t * p[k] - k * p[k - 1]) / (k + d - 2.0);
}

nk_status nk_gauss_jacobi_sym(int d, size_t n, double *t, double *w, nk_error *err)
{
    if (d < 2) return nk_fail(err, NK_ERR_INPUT, "Gauss-Jacobi: dimension d=%d (use d >= 2)", d);
    if (n < 1) return nk_fail(err, NK_ERR_INPUT, "Gauss-Jacobi: no nodes requested");
    double a = 0.5 * (d - 3);
    double *b = malloc(n * sizeof *b);
    if (!b) return nk_fail(err, NK_ERR_NOMEM, "Gauss-Jacobi: out of memory for %zu nodes", n);
    /* Monic recurrence of the symmetric Jacobi weight (1-t^2)^a: t p_k = p_{k+1} + beta_k p_{k-1},
     * beta_1 = 1/(3 + 2a), beta_k = k (k + 2a) / ((2k + 2a + 1)(2k + 2a - 1)); the Jacobi
     * matrix has zero diagonal and off-diagonal sqrt(beta_k). */
    for (size_t k = 1; k < n; k++) {
        double kk = (double)k;
        b[k - 1] = k == 1 ? sqrt(1 / (3 + 2 * a)) : sqrt(kk * (kk + 2 * a) / ((2 * kk + 2 * a + 1) * (2 * kk + 2 * a - 1)));
    }
    for (size_t j = 0; j < n; j++) t[j] = 0;
    double *e = malloc(n * sizeof *e);
    if (!e) { free(b); return nk_fail(err, NK_ERR_NOMEM, "Gauss-Jacobi: out of memory"); }
    memcpy(e, b, (n - 1) * sizeof *e);
    lapack_int info = LAPACKE_dstev(LAPACK_COL_MAJOR, 'N', (lapack_int)n, t, e, NULL, 1);
    free(e);
    if (info != 0) { free(b); return nk_fail(err, NK_ERR_RUN, "Gauss-Jacobi: dstev failed (info %d)", (int)info); }
    /* Christoffel numbers: w_j = 1 / sum_k p_k(t_j)^2 for the orthonormal p_k, p_0 = 1/sqrt(mu0) */
    double mu0 = sqrt(PI) * exp(lgamma(a + 1) - lgamma(a + 1.5));
    for (size_t j = 0; j < n; j++) {
        double pm = 0, pk = 1 / sqrt(mu0), s = pk * pk;
        for (size_t k = 0; k + 1 < n; k++) {
            double pn = (t[j] * pk - (k ? b[k - 1] * pm : 0)) / b[k];
            pm = pk;
            pk = pn;
            s += pk * pk;
        }
        w[j] = 1 / s;
    }
    free(b);
    return NK_OK;
}

nk_status nk_sphere_kernel(const char *spec, const nk_arch_opts *ao, int get, const double *t,
                           size_t n, double *k, nk_error *err)
{
    if (get != NK_GET_NNGP && get != NK_GET_NTK)
        return nk_fail(err, NK_ERR_INPUT, "sphere kernel: get must be NK_GET_NNGP or NK_GET_NTK");
    nk_arch *arch = NULL;
    nk_plan *plan = NULL;
    nk_array x1 = {0}, x2 = {0}, K = {0}, T = {0};
    size_t s1[2] = {1, 2}, s2[2] = {n, 2}, in = 2;
    nk_status st = nk_arch_parse(spec, ao, &arch, err);
    if (st == NK_OK) {
        st = nk_plan_create(arch, 1, &in, &plan, err);
        if (st != NK_OK)
            st = nk_fail(err, st, "sphere kernel: '%s' does not take vector inputs (an MLP spec is needed): %s", spec,
                         err ? err->msg : "");
    }
    if (st == NK_OK) st = nk_array_alloc(&x1, 2, s1, err);
    if (st == NK_OK) st = nk_array_alloc(&x2, 2, s2, err);
    if (st == NK_OK) {
        /* |x|^2 = D = 2, so K0 = <x, x'>/2 = t */
        x1.data[0] = sqrt(2.0);
        x1.data[1] = 0;
        for (size_t j = 0; j < n; j++) {
            double tj = t[j] > 1 ? 1 : t[j] < -1 ? -1 : t[j];
            x2.data[2 * j] = sqrt(2.0) * tj;
            x2.data[2 * j + 1] = sqrt(2.0) * sqrt(1 - tj * tj);
        }
        nk_kernel_opts ko;
        nk_kernel_opts_default(&ko);
        ko.get = get;
        ko.nthreads = 1;
        st = nk_kernel_matrix(plan, &x1, &x2, &ko, get == NK_GET_NNGP ? &K : NULL, get == NK_GET_NTK ? &T : NULL, err);
    }
    if (st == NK_OK) memcpy(k, (get == NK_GET_NNGP ? K : T).data, n * sizeof *k);
    nk_array_free(&x1); nk_array_free(&x2); nk_array_free(&K); nk_array_free(&T);
    nk_plan_free(plan);
    nk_arch_free(arch);
    return st;
}

nk_status nk_sphere_eigen(const char *spec, const nk_arch_opts *ao, int get, int d, int kmax,
                          size_t nquad, double *mu, double *k1, nk_error *err)
{
    if (d < 2) return nk_fail(err, NK_ERR_INPUT, "sphere eigenvalues: dimension d=%d (use d >= 2)", d);
    if (kmax < 0) return nk_fail(err, NK_ERR_INPUT, "sphere eigenvalues: kmax=%d (use >= 0)", kmax);
    if (nquad == 0) nquad = 8 * (size_t)kmax > 2000 ? 8 * (size_t)kmax : 2000;
    if (nquad <= (size_t)kmax)
        return nk_fail(err, NK_ERR_INPUT, "sphere eigenvalues: %zu quadrature nodes cannot resolve degree %d (use more than kmax)", nquad, kmax);
    double *t = malloc((nquad + 1) * sizeof *t), *w = malloc(nquad * sizeof *w), *kv = malloc((nquad + 1) * sizeof *kv);
    double *p = malloc(((size_t)kmax + 1) * sizeof *p);
    nk_status st = NK_OK;
    if (!t || !w || !kv || !p) st = nk_fail(err, NK_ERR_NOMEM, "sphere eigenvalues: out of memory for %zu nodes", nquad);
    if (st == NK_OK) st = nk_gauss_jacobi_sym(d, nquad, t, w, err);
    if (st == NK_OK) {
        t[nquad] = 1; /* k(1) rides along */
        st = nk_sphere_kernel(spec, ao, get, t, nquad + 1, kv, err);
    }
    if (st == NK_OK) {
        double cd = nk_sphere_cd(d);
        for (int k = 0; k <= kmax; k++) mu[k] = 0;
        for (size_t j = 0; j < nquad; j++) {
            nk_gegenbauer(d, kmax, t[j], p);
            for (int k = 0; k <= kmax; k++) mu[k] += cd * w[j] * kv[j] * p[k];
        }
        if (k1) *k1 = kv[nquad];
    }
    free(t); free(w); free(kv); free(p);
    return st;
}

/* ------------------------------------------------- products of spheres -- */

#define PS_CHUNK 32768

/* Kernel at the patch cosines t (npts x m, row-major) on 2-channel patches; patch i of the
 * first input is sqrt(2) R(phi_i) (1, 0), of the second sqrt(2) R(phi_i) (t_i, sqrt(1-t_i^2)),
 * R a rotation: the angles phi change the cross-patch products but not the cosines. */
static nk_status ps_kernel(const nk_plan *plan, int get, int m, const double *t, size_t npts,
                           const double *phi, double *out, nk_error *err)
{
    nk_array x1 = {0}, x2 = {0}, K = {0}, T = {0};
    size_t s1[3] = {1, (size_t)m, 2};
    nk_status st = nk_array_alloc(&x1, 3, s1, err);
    for (int i = 0; st == NK_OK && i < m; i++) {
        x1.data[2 * i] = sqrt(2.0) * cos(phi[i]);
        x1.data[2 * i + 1] = sqrt(2.0) * sin(phi[i]);
    }
    nk_kernel_opts ko;
    nk_kernel_opts_default(&ko);
    ko.get = get;
    for (size_t at = 0; st == NK_OK && at < npts; at += PS_CHUNK) {
        size_t n = npts - at < PS_CHUNK ? npts - at : PS_CHUNK;
        size_t s2[3] = {n, (size_t)m, 2};
        st = nk_array_alloc(&x2, 3, s2, err);
        if (st != NK_OK) break;
        for (size_t j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                double ti = t[(at + j) * m + i];
                ti = ti > 1 ? 1 : ti < -1 ? -1 : ti;
                double a = ti, b = sqrt(1 - ti * ti), c = cos(phi[i]), s = sin(phi[i]);
                x2.data[(j * m + i) * 2] = sqrt(2.0) * (c * a - s * b);
                x2.data[(j * m + i) * 2 + 1] = sqrt(2.0) * (s * a + c * b);
            }
        st = nk_kernel_matrix(plan, &x1, &x2, &ko, get == NK_GET_NNGP ? &K : NULL, get == NK_GET_NTK ? &T : NULL, err);
        if (st == NK_OK) memcpy(out + at, (get == NK_GET_NNGP ? K : T).data, n * sizeof *out);
        nk_array_free(&x2); nk_array_free(&K); nk_array_free(&T);
    }
    nk_array_free(&x1);
    return st;
}

nk_status nk_product_sphere_eigen(const char *spec, const nk_arch_opts *ao, int get, int m,
                                  int n0, int kmax, size_t nquad, double *lambda, nk_error *err)
{
    if (get != NK_GET_NNGP && get != NK_GET_NTK)
        return nk_fail(err, NK_ERR_INPUT, "product of spheres: get must be NK_GET_NNGP or NK_GET_NTK");
    if (m < 1 || m > 12 || n0 < 2 || kmax < 0)
        return nk_fail(err, NK_ERR_INPUT, "product of spheres: m=%d patches (1..12), n0=%d (>= 2), kmax=%d (>= 0)", m, n0, kmax);
    if (nquad == 0) nquad = (size_t)(2 * kmax + 8);
    double total = pow((double)nquad, m);
    if (nquad <= (size_t)kmax || total > 16777216.0)
        return nk_fail(err, NK_ERR_INPUT, "product of spheres: %zu nodes per patch for %d patches (need more than kmax=%d and nquad^m <= 2^24)",
                       nquad, m, kmax);
    size_t npts = (size_t)total, K1 = (size_t)kmax + 1;
    nk_arch *arch = NULL;
    nk_plan *plan = NULL;
    size_t in[2] = {(size_t)m, 2};
    nk_status st = nk_arch_parse(spec, ao, &arch, err);
    if (st == NK_OK) {
        st = nk_plan_create(arch, 2, in, &plan, err);
        if (st != NK_OK) st = nk_fail(err, st, "product of spheres: '%s' does not take %d positions of patches: %s", spec, m, err ? err->msg : "");
    }
    double *t = malloc(nquad * sizeof *t), *w = malloc(nquad * sizeof *w);
    double *grid = malloc(npts * m * sizeof *grid), *kv = malloc(npts * sizeof *kv);
    double *A = malloc(K1 * nquad * sizeof *A), *p = malloc(K1 * sizeof *p);
    /* tensor contracted one axis at a time: sizes up to max(nquad, K1)^m */
    size_t big = (size_t)pow((double)(nquad > K1 ? nquad : K1), m);
    double *u = malloc(big * sizeof *u), *v = malloc(big * sizeof *v);
    if (st == NK_OK && (!t || !w || !grid || !kv || !A || !p || !u || !v))
        st = nk_fail(err, NK_ERR_NOMEM, "product of spheres: out of memory for %zu quadrature points", npts);
    if (st == NK_OK) st = nk_gauss_jacobi_sym(n0, nquad, t, w, err);
    if (st == NK_OK) {
        /* the kernel must depend on the patch cosines only: compare two embeddings */
        double tc[3 * 12], k0[3], k1[3], phi0[12] = {0}, phi1[12];
        unsigned long long r = 0x9E3779B97F4A7C15ULL;
        for (int j = 0; j < 3 * m; j++) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            tc[j] = 2.0 * ((r >> 11) / 9007199254740992.0) - 1;
        }
        for (int i = 0; i < m; i++) phi1[i] = 0.7 + 1.3 * i;
        st = ps_kernel(plan, get, m, tc, 3, phi0, k0, err);
        if (st == NK_OK) st = ps_kernel(plan, get, m, tc, 3, phi1, k1, err);
        for (int j = 0; st == NK_OK && j < 3; j++)
            if (fabs(k0[j] - k1[j]) > 1e-10 * fmax(fabs(k0[j]), 1e-300))
                st = nk_fail(err, NK_ERR_INPUT, "product of spheres: the kernel of '%s' depends on products between different patches, "
                             "not only on the patch cosines (%.6g vs %.6g): covariances across positions enter through gap or avgpool: read out with flatten", spec, k0[j], k1[j]);
    }
    if (st == NK_OK) {
        for (size_t j = 0; j < npts; j++) {
            size_t rem = j;
            for (int i = m - 1; i >= 0; i--) { grid[j * m + i] = t[rem % nquad]; rem /= nquad; }
        }
        double phi0[12] = {0};
        st = ps_kernel(plan, get, m, grid, npts, phi0, kv, err);
    }
    if (st == NK_OK) {
        double cd = nk_sphere_cd(n0);
        for (size_t j = 0; j < nquad; j++) {
            nk_gegenbauer(n0, kmax, t[j], p);
            for (size_t k = 0; k < K1; k++) A[k * nquad + j] = cd * w[j] * p[k];
        }
        /* contract the leading axis (size nquad) of a tensor [nquad][rest] into [rest][K1]:
         * after m steps the axes are back in order with every one replaced by degrees */
        memcpy(u, kv, npts * sizeof *u);
        size_t rest = npts / nquad;
        for (int axis = 0; axis < m; axis++) {
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasTrans, (int)rest, (int)K1, (int)nquad, 1.0, u, (int)rest, A,
                        (int)nquad, 0.0, v, (int)K1);
            double *tmp = u; u = v; v = tmp;
            /* the new tensor has shape [rest][K1] = [nquad]^{m-axis-1} [K1]^{axis+1}; the next
             * leading axis is again a quadrature axis while axis + 1 < m */
            if (axis + 1 < m) rest = rest / nquad * K1;
        }
        memcpy(lambda, u, (size_t)pow((double)K1, m) * sizeof *lambda);
    }
    free(t); free(w); free(grid); free(kv); free(A); free(p); free(u); free(v);
    nk_plan_free(plan);
    nk_arch_free(arch);
    return st;
}
