/* curve.c -- learning curves of kernel regression: the eigenlearning equations, the levels of
 * a product-of-spheres kernel for a synthetic target, and the measured test error
 * (nk_synth.h). */
#include "nk_infer.h"
#include "nk_synth.h"
#include "nk_theory.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* sum_i M_i lambda_i / (lambda_i + kappa) + delta / kappa: decreasing in kappa > 0 */
static double modes_learned(const nk_eig_level *lev, size_t nlev, double delta, double kappa)
{
    double s = delta / kappa;
    for (size_t i = 0; i < nlev; i++)
        if (lev[i].lambda > 0) s += lev[i].mult * lev[i].lambda / (lev[i].lambda + kappa);
    return s;
}

nk_status nk_eigenlearn(const nk_eig_level *lev, size_t nlev, double n, double delta, double noise,
                        nk_eigenlearn_result *r, double *L, nk_error *err)
{
    if (!(n > 0) || !isfinite(n)) return nk_fail(err, NK_ERR_INPUT, "eigenlearning: n = %g samples (use n > 0)", n);
    if (!(delta >= 0) || !isfinite(delta)) return nk_fail(err, NK_ERR_INPUT, "eigenlearning: ridge %g (use a finite value >= 0)", delta);
    if (!(noise >= 0) || !isfinite(noise)) return nk_fail(err, NK_ERR_INPUT, "eigenlearning: noise %g (use a finite value >= 0)", noise);
    double modes = 0, trace = 0;
    for (size_t i = 0; i < nlev; i++) {
        const nk_eig_level *l = &lev[i];
        if (!(l->lambda >= 0) || !isfinite(l->lambda) || !(l->mult > 0) || !isfinite(l->mult) || !(l->power >= 0) || !isfinite(l->power))
            return nk_fail(err, NK_ERR_INPUT, "eigenlearning: level %zu has lambda %g, multiplicity %g, power %g (need lambda >= 0, multiplicity > 0, power >= 0, all finite)",
                           i, l->lambda, l->mult, l->power);
        if (l->lambda > 0) { modes += l->mult; trace += l->mult * l->lambda; }
    }
    memset(r, 0, sizeof *r);
    if (delta == 0 && n >= modes) {
        /* ridgeless with at least as many samples as modes: kappa -> 0, every mode learned */
        r->kappa = 0;
    } else {
        if (!(trace + delta > 0))
            return nk_fail(err, NK_ERR_INPUT, "eigenlearning: every eigenvalue is zero and the ridge is zero (nothing to learn)");
        /* sum lambda/(lambda+kappa) <= trace/kappa, so the sum is <= n at hi */
        double hi = (trace + delta) / n, lo = hi;
        int halvings = 0;
        while (modes_learned(lev, nlev, delta, lo) < n) {
            lo *= 0.5;
            if (++halvings > 4000) return nk_fail(err, NK_ERR_RUN, "eigenlearning: no kappa found for n = %g (eigenvalues span too many decades)", n);
        }
        for (int it = 0; it < 400 && hi > lo * (1 + 1e-14); it++) {
            double mid = sqrt(lo * hi);
            if (modes_learned(lev, nlev, delta, mid) > n) lo = mid;
            else hi = mid;
        }
        r->kappa = sqrt(lo * hi);
    }
    double sum_l2 = 0, resid = 0;
    for (size_t i = 0; i < nlev; i++) {
        double li = lev[i].lambda > 0 ? lev[i].lambda / (lev[i].lambda + r->kappa) : 0;
        if (L) L[i] = li;
        r->sum_l += lev[i].mult * li;
        sum_l2 += lev[i].mult * li * li;
        resid += (1 - li) * (1 - li) * lev[i].power;
        r->learned_power += li * lev[i].power;
    }
    r->e0 = n > sum_l2 ? n / (n - sum_l2) : INFINITY;
    double bracket = resid + noise;
    r->mse = isinf(r->e0) ? (bracket > 0 ? INFINITY : 0) : r->e0 * bracket;
    return NK_OK;
}

nk_status nk_product_levels(const double *lambda, int m, int n0, int kmax, const nk_synth_target *t,
                            nk_eig_level *levels, double *trace_out, nk_error *err)
{
    if (m < 1 || m > NK_SYNTH_MAX_PATCHES || n0 < 2 || kmax < 0)
        return nk_fail(err, NK_ERR_INPUT, "product levels: m=%d patches, n0=%d, kmax=%d (need m >= 1, n0 >= 2, kmax >= 0)", m, n0, kmax);
    if (t && (t->m != m || t->n0 != n0))
        return nk_fail(err, NK_ERR_INPUT, "product levels: the target has %d patches of dimension %d, the kernel %d of dimension %d (use the same)",
                       t->m, t->n0, m, n0);
    size_t K1 = (size_t)kmax + 1, total = 1;
    for (int i = 0; i < m; i++) {
        if (total > ((size_t)1 << 40) / K1) return nk_fail(err, NK_ERR_INPUT, "product levels: (kmax+1)^m too large");
        total *= K1;
    }
    double lmax = 0;
    for (size_t idx = 0; idx < total; idx++) {
        if (!isfinite(lambda[idx])) return nk_fail(err, NK_ERR_INPUT, "product levels: eigenvalue %zu is not finite", idx);
        lmax = fmax(lmax, lambda[idx]);
    }
    double trace = 0;
    for (size_t idx = 0; idx < total; idx++) {
        double l = lambda[idx];
        if (l < 0) {
            if (-l > 1e-10 * lmax)
                return nk_fail(err, NK_ERR_RUN, "product levels: eigenvalue %zu is %.3g < 0 (max %.3g; raise the quadrature order nquad)", idx, l, lmax);
            l = 0;
        }
        size_t rem = idx;
        double mult = 1;
        for (int i = m - 1; i >= 0; i--) { mult *= nk_sphere_multiplicity(n0, (int)(rem % K1)); rem /= K1; }
        levels[idx].lambda = l;
        levels[idx].mult = mult;
        levels[idx].power = 0;
        trace += mult * l;
    }
    if (t) {
        /* coefficients of equal degree vectors add (same function); power = c^2 / prod N */
        for (size_t j = 0; j < t->nterms; j++) {
            size_t idx = 0;
            for (int i = 0; i < m; i++) {
                int k = t->term[j].degree[i];
                if (k > kmax)
                    return nk_fail(err, NK_ERR_INPUT, "product levels: the target has degree %d on patch %d, above kmax=%d (raise kmax)", k, i, kmax);
                idx = idx * K1 + (size_t)k;
            }
            levels[idx].power += t->term[j].coef;
        }
        for (size_t idx = 0; idx < total; idx++)
            if (levels[idx].power != 0) levels[idx].power = levels[idx].power * levels[idx].power / levels[idx].mult;
    }
    if (trace_out) *trace_out = trace;
    return NK_OK;
}

nk_status nk_krr_test_mse(const nk_array *k_pool, const nk_array *k_test_pool, const double *y_pool,
                          const double *y_test, size_t n, double ridge, double *mse, nk_error *err)
{
    if (k_pool->ndim != 2 || k_pool->shape[0] != k_pool->shape[1] || k_test_pool->ndim != 2 ||
        k_test_pool->shape[1] != k_pool->shape[0])
        return nk_fail(err, NK_ERR_INPUT, "kernel regression: need an (N, N) pool Gram and a (T, N) test-pool kernel");
    size_t N = k_pool->shape[0], T = k_test_pool->shape[0];
    if (n < 1 || n > N) return nk_fail(err, NK_ERR_INPUT, "kernel regression: n = %zu training samples from a pool of %zu (use 1..%zu)", n, N, N);
    if (!(ridge >= 0)) return nk_fail(err, NK_ERR_INPUT, "kernel regression: ridge %g (use >= 0)", ridge);
    nk_array K = {0}, C = {0}, Y = {0}, pred = {0};
    size_t sk[2] = {n, n}, sc[2] = {T, n};
    nk_status st = nk_array_alloc(&K, 2, sk, err);
    if (st == NK_OK) st = nk_array_alloc(&C, 2, sc, err);
    if (st == NK_OK) st = nk_array_alloc(&Y, 1, &n, err);
    if (st == NK_OK) {
        for (size_t i = 0; i < n; i++) memcpy(K.data + i * n, k_pool->data + i * N, n * sizeof(double));
        for (size_t i = 0; i < T; i++) memcpy(C.data + i * n, k_test_pool->data + i * N, n * sizeof(double));
        memcpy(Y.data, y_pool, n * sizeof(double));
        nk_infer_opts o;
        nk_infer_opts_default(&o);
        o.diag_reg = ridge;
        o.reg_absolute = 1;
        nk_gp *gp = NULL;
        st = nk_gp_create(&K, &Y, &o, &gp, err);
        if (st == NK_OK) st = nk_gp_predict(gp, &C, NULL, NK_COV_NONE, &pred, NULL, err);
        nk_gp_free(gp);
    }
    if (st == NK_OK) {
        double s = 0;
        for (size_t i = 0; i < T; i++) s += (pred.data[i] - y_test[i]) * (pred.data[i] - y_test[i]);
        *mse = s / (double)T;
    }
    nk_array_free(&K); nk_array_free(&C); nk_array_free(&Y); nk_array_free(&pred);
    return st;
}
