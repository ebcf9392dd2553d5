/* test_curve.c -- learning curves: the eigenlearning solver against closed forms (one level with
 * and without ridge, the ridgeless interpolation regime), the conservation law
 * sum_i L_i = n - delta / kappa; synthetic targets with the norm prod_i 1/N(n0,k_i) (N from
 * dim Harm_k = binom(k+n0-1,n0-1) - binom(k+n0-3,n0-1), independent of the library) and
 * orthogonal across degree vectors, by sampling; the levels' multiplicities against the
 * dimension of polynomials of degree <= K on the sphere; the measured test MSE of kernel
 * regression against the eigenlearning prediction (factor 1.5), and a CNN kernel learning a
 * local order-4 target with fewer samples than an MLP kernel.  NK_TEST_QUICK shrinks sizes. */
#include "nk_data.h"
#include "nk_synth.h"
#include "nk_test.h"
#include "nk_theory.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int quick;

static double binom(double n, double k) { return k < 0 || k > n ? 0 : exp(lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1)); }
static double harm_dim(int d, int k) { return k == 0 ? 1 : nearbyint(binom(k + d - 1, d - 1) - binom(k + d - 3, d - 1)); }

static void test_one_level(void)
{
    nk_eigenlearn_result r;
    double L;
    /* ridgeless, n < M modes of equal eigenvalue: n = M lambda/(lambda+kappa) gives
     * kappa = lambda (M - n)/n, L = n/M, E0 = M/(M - n), MSE = (1 - n/M) V */
    nk_eig_level lev = {0.3, 50, 2.0};
    CHECK(nk_eigenlearn(&lev, 1, 20, 0, 0, &r, &L, NULL) == NK_OK, "solve");
    CHECK(nk_relerr(r.kappa, 0.3 * 30 / 20, 1e-300) < 1e-12, "kappa %.17g vs %.17g", r.kappa, 0.45);
    CHECK(nk_relerr(L, 0.4, 1e-300) < 1e-12, "L %.17g", L);
    CHECK(nk_relerr(r.e0, 50.0 / 30, 1e-300) < 1e-12, "E0 %.17g", r.e0);
    CHECK(nk_relerr(r.mse, 0.6 * 2.0, 1e-300) < 1e-12, "mse %.17g vs 1.2", r.mse);
    /* with noise: MSE = E0 ((1-L)^2 V + s2) */
    CHECK(nk_eigenlearn(&lev, 1, 20, 0, 0.1, &r, NULL, NULL) == NK_OK, "solve");
    CHECK(nk_relerr(r.mse, 50.0 / 30 * (0.36 * 2 + 0.1), 1e-300) < 1e-12, "noisy mse %.17g", r.mse);
    /* ridge delta: n kappa^2 + (n lambda - M lambda - delta) kappa - delta lambda = 0 */
    double lam = 0.3, M = 50, delta = 0.7;
    size_t ns[] = {1, 20, 49, 50, 80, 1000};
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++) {
        double n = (double)ns[i], b = n * lam - M * lam - delta;
        double kappa = (-b + sqrt(b * b + 4 * n * delta * lam)) / (2 * n);
        CHECK(nk_eigenlearn(&lev, 1, n, delta, 0, &r, &L, NULL) == NK_OK, "solve");
        CHECK(nk_relerr(r.kappa, kappa, 1e-300) < 1e-11, "n=%g ridge: kappa %.17g vs closed form %.17g", n, r.kappa, kappa);
        CHECK(nk_relerr(r.sum_l, n - delta / kappa, 1e-12) < 1e-10, "n=%g: sum L %.17g vs n - delta/kappa %.17g", n, r.sum_l, n - delta / kappa);
    }
    /* ridgeless with n >= modes: kappa = 0, everything learned, E0 = n / (n - M) */
    CHECK(nk_eigenlearn(&lev, 1, 80, 0, 0.1, &r, &L, NULL) == NK_OK, "solve");
    CHECK(r.kappa == 0 && L == 1 && nk_relerr(r.e0, 80.0 / 30, 1e-300) < 1e-14 && nk_relerr(r.mse, 0.1 * 80 / 30, 1e-300) < 1e-14,
          "interpolating: kappa %g L %g E0 %g mse %g", r.kappa, L, r.e0, r.mse);
    nk_error err = {{0}};
    lev.mult = -1;
    CHECK(nk_eigenlearn(&lev, 1, 10, 0, 0, &r, NULL, &err) == NK_ERR_INPUT && strstr(err.msg, "multiplicity"), "bad level: %s", err.msg);
    lev.mult = 1;
    CHECK(nk_eigenlearn(&lev, 1, 0, 0, 0, &r, NULL, &err) == NK_ERR_INPUT && strstr(err.msg, "n > 0"), "n = 0: %s", err.msg);
}

static void test_conservation(void)
{
    /* a power law with growing multiplicities, as on the sphere */
    nk_eig_level lev[40];
    for (int k = 0; k < 40; k++) { lev[k].lambda = pow(k + 1.0, -3.0); lev[k].mult = 2 * k + 1; lev[k].power = pow(k + 1.0, -2.0); }
    double L[40], ns[] = {1, 3, 10, 50, 200, 1000}, deltas[] = {0, 1e-6, 1e-2};
    for (size_t d = 0; d < 3; d++)
        for (size_t i = 0; i < 6; i++) {
            nk_eigenlearn_result r;
            CHECK(nk_eigenlearn(lev, 40, ns[i], deltas[d], 0, &r, L, NULL) == NK_OK, "solve");
            double s = 0, s2 = 0, resid = 0;
            for (int k = 0; k < 40; k++) {
                CHECK(L[k] > 0 && L[k] < 1 && (k == 0 || L[k] <= L[k - 1]), "L in (0,1), decreasing in k");
                s += lev[k].mult * L[k];
                s2 += lev[k].mult * L[k] * L[k];
                resid += (1 - L[k]) * (1 - L[k]) * lev[k].power;
            }
            double want = ns[i] - deltas[d] / r.kappa;
            CHECK(fabs(s - want) < 1e-9 * ns[i], "n=%g delta=%g: sum L %.15g vs n - delta/kappa %.15g", ns[i], deltas[d], s, want);
            CHECK(nk_relerr(r.mse, ns[i] / (ns[i] - s2) * resid, 1e-300) < 1e-12, "mse from L");
        }
}

/* mean and standard error of v[0..n) */
static void mean_se(const double *v, size_t n, double *mean, double *se)
{
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) s += v[i];
    s /= (double)n;
    for (size_t i = 0; i < n; i++) s2 += (v[i] - s) * (v[i] - s);
    *mean = s;
    *se = sqrt(s2 / ((double)n - 1) / (double)n);
}

static void test_synth(void)
{
    nk_error err = {{0}};
    nk_synth_target a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    CHECK(nk_synth_parse_target("0:2,1:2", 4, &a, &err) == NK_OK, "%s", err.msg);
    CHECK(nk_synth_parse_target("0:1,3:1+0.5*2:3", 4, &b, &err) == NK_OK, "%s", err.msg);
    CHECK(b.nterms == 2 && b.term[1].coef == 0.5 && b.term[1].degree[2] == 3 && b.term[0].degree[3] == 1, "parsed");
    const char *bad[] = {"", "0:2,", "4:1", "0:2,0:1", "x", "0:2+", "0:2;1:1", "nan*0:1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        nk_synth_target t;
        err.msg[0] = 0;
        CHECK(nk_synth_parse_target(bad[i], 4, &t, &err) == NK_ERR_INPUT && strstr(err.msg, "target"), "'%s' refused: %s", bad[i], err.msg);
    }
    int n0s[] = {3, 5};
    size_t n = quick ? 20000 : 100000;
    for (int di = 0; di < 2; di++) {
        int n0 = n0s[di];
        a.n0 = b.n0 = n0;
        a.dir_seed = b.dir_seed = 7;
        double *fa = malloc(n * sizeof *fa), *fb = malloc(n * sizeof *fb), *prod = malloc(n * sizeof *prod);
        nk_array x = {0}, y = {0}, x2 = {0};
        CHECK(nk_synth_sample(&a, n, 3, &x, &y, fa, &err) == NK_OK, "%s", err.msg);
        CHECK(nk_synth_sample(&b, n, 3, &x2, NULL, fb, &err) == NK_OK, "%s", err.msg);
        CHECK(x.ndim == 3 && x.shape[0] == n && x.shape[1] == 4 && x.shape[2] == (size_t)n0, "shape");
        /* same sample seed, same inputs; patches of radius sqrt(n0) */
        CHECK(!memcmp(x.data, x2.data, nk_array_size(&x) * sizeof(double)), "inputs depend on the sample seed only");
        double worst = 0;
        for (size_t i = 0; i < 4 * n; i++) {
            double s = 0;
            for (int j = 0; j < n0; j++) s += x.data[i * n0 + j] * x.data[i * n0 + j];
            worst = fmax(worst, fabs(s - n0));
        }
        CHECK(worst < 1e-10 * n0, "|x_i|^2 = n0: worst %.3g", worst);
        size_t differ = 0;
        for (size_t i = 0; i < n; i++) differ += y.data[i] != fa[i];
        CHECK(differ == 0, "noiseless y = f: %zu differ", differ);
        /* E[f^2] = prod 1/N: a = P2 x P2, b = P1 x P1 + 0.5 P3 (different degree vectors) */
        double wa = 1 / (harm_dim(n0, 2) * harm_dim(n0, 2));
        double wb = 1 / (harm_dim(n0, 1) * harm_dim(n0, 1)) + 0.25 / harm_dim(n0, 3);
        CHECK(nk_relerr(nk_synth_power(&a), wa, 1e-300) < 1e-12 && nk_relerr(nk_synth_power(&b), wb, 1e-300) < 1e-12, "power %g %g vs %g %g",
              nk_synth_power(&a), nk_synth_power(&b), wa, wb);
        double m, se;
        for (size_t i = 0; i < n; i++) prod[i] = fa[i] * fa[i];
        mean_se(prod, n, &m, &se);
        CHECK(fabs(m - wa) < 4 * se, "n0=%d: mean f_a^2 %.5g vs %.5g (se %.2g)", n0, m, wa, se);
        for (size_t i = 0; i < n; i++) prod[i] = fb[i] * fb[i];
        mean_se(prod, n, &m, &se);
        CHECK(fabs(m - wb) < 4 * se, "n0=%d: mean f_b^2 %.5g vs %.5g (se %.2g)", n0, m, wb, se);
        for (size_t i = 0; i < n; i++) prod[i] = fa[i] * fb[i];
        mean_se(prod, n, &m, &se);
        CHECK(fabs(m) < 4 * se, "n0=%d: orthogonal: mean f_a f_b %.3g (se %.2g)", n0, m, se);
        nk_array_free(&x); nk_array_free(&y); nk_array_free(&x2);
        /* noise of variance s2: mean (y - f)^2 = s2 */
        a.noise = 0.25;
        CHECK(nk_synth_sample(&a, n, 4, &x, &y, fa, &err) == NK_OK, "%s", err.msg);
        for (size_t i = 0; i < n; i++) prod[i] = (y.data[i] - fa[i]) * (y.data[i] - fa[i]);
        mean_se(prod, n, &m, &se);
        CHECK(fabs(m - 0.25) < 4 * se, "noise variance %.4g (se %.2g)", m, se);
        a.noise = 0;
        nk_array_free(&x); nk_array_free(&y);
        free(fa); free(fb); free(prod);
    }
    a.n0 = 1;
    CHECK(nk_synth_sample(&a, 10, 1, &(nk_array){0}, NULL, NULL, &err) == NK_ERR_INPUT && strstr(err.msg, "n0"), "n0 = 1: %s", err.msg);
}

static void test_levels(void)
{
    /* multiplicities: sum over the cube k_i <= K of prod N = (dim of polynomials of degree <= K
     * on S^{n0-1})^m = (binom(K+n0-1, n0-1) + binom(K+n0-2, n0-1))^m */
    int m = 3, n0 = 4, K = 3;
    size_t total = 64;
    double lam[64];
    nk_eig_level lev[64];
    for (size_t i = 0; i < total; i++) lam[i] = 1.0 / (i + 1);
    nk_synth_target t;
    memset(&t, 0, sizeof t);
    CHECK(nk_synth_parse_target("1:2+2*1:2+0:1,2:3", m, &t, NULL) == NK_OK, "parse");
    t.n0 = n0;
    double trace;
    CHECK(nk_product_levels(lam, m, n0, K, &t, lev, &trace, NULL) == NK_OK, "levels");
    double smult = 0, strace = 0, spow = 0;
    for (size_t i = 0; i < total; i++) { smult += lev[i].mult; strace += lev[i].mult * lam[i]; spow += lev[i].power; }
    double dimK = binom(K + n0 - 1, n0 - 1) + binom(K + n0 - 2, n0 - 1);
    CHECK(nk_relerr(smult, pow(dimK, m), 1e-300) < 1e-12, "sum of multiplicities %.17g vs %.17g", smult, pow(dimK, m));
    CHECK(nk_relerr(trace, strace, 1e-300) < 1e-14, "trace");
    /* (0,2,0) gets (1+2)^2 / N(4,2); (1,0,3) gets 1 / (N(4,1) N(4,3)) */
    CHECK(nk_relerr(lev[0 * 16 + 2 * 4 + 0].power, 9 / harm_dim(4, 2), 1e-300) < 1e-12, "power (0,2,0) %g", lev[8].power);
    CHECK(nk_relerr(lev[1 * 16 + 0 * 4 + 3].power, 1 / (harm_dim(4, 1) * harm_dim(4, 3)), 1e-300) < 1e-12, "power (1,0,3)");
    CHECK(nk_relerr(spow, nk_synth_power(&t), 1e-300) < 1e-12, "level powers sum to E[f^2]");
    nk_error err = {{0}};
    CHECK(nk_product_levels(lam, m, n0, 2, &t, lev, NULL, &err) == NK_ERR_INPUT && strstr(err.msg, "kmax"), "degree above kmax: %s", err.msg);
}

/* measured test MSE of kernel regression for spec at the sizes ns, averaged over seeds, and
 * the eigenlearning prediction */
static void curve(const char *spec, const nk_synth_target *t, const size_t *ns, int nn, int seeds, size_t ntest, double *meas,
                  double *pred)
{
    nk_error err = {{0}};
    nk_arch *arch = NULL;
    nk_plan *plan = NULL;
    size_t in[2] = {(size_t)t->m, (size_t)t->n0}, nmax = ns[nn - 1];
    CHECK(nk_arch_parse(spec, NULL, &arch, &err) == NK_OK && nk_plan_create(arch, 2, in, &plan, &err) == NK_OK, "%s", err.msg);
    nk_kernel_opts ko;
    nk_kernel_opts_default(&ko);
    ko.get = NK_GET_NTK;
    ko.nthreads = 1;
    nk_array xt = {0}, yt = {0};
    CHECK(nk_synth_sample(t, ntest, 999, &xt, &yt, NULL, &err) == NK_OK, "%s", err.msg);
    double kdiag = 0, ridge = 1e-6;
    for (int j = 0; j < nn; j++) meas[j] = 0;
    for (int r = 0; r < seeds; r++) {
        nk_array x = {0}, y = {0}, K = {0}, C = {0};
        CHECK(nk_synth_sample(t, nmax, 10 + r, &x, &y, NULL, &err) == NK_OK, "%s", err.msg);
        CHECK(nk_kernel_matrix(plan, &x, NULL, &ko, NULL, &K, &err) == NK_OK, "%s", err.msg);
        CHECK(nk_kernel_matrix(plan, &xt, &x, &ko, NULL, &C, &err) == NK_OK, "%s", err.msg);
        kdiag = K.data[0];
        for (int j = 0; j < nn; j++) {
            double mse = NAN;
            CHECK(nk_krr_test_mse(&K, &C, y.data, yt.data, ns[j], ridge * kdiag, &mse, &err) == NK_OK, "%s", err.msg);
            meas[j] += mse / seeds;
        }
        nk_array_free(&x); nk_array_free(&y); nk_array_free(&K); nk_array_free(&C);
    }
    int kmax = 4;
    size_t total = 625;
    double *lam = malloc(total * sizeof *lam), trace = 0;
    nk_eig_level *lev = malloc(total * sizeof *lev);
    CHECK(nk_product_sphere_eigen(spec, NULL, NK_GET_NTK, t->m, t->n0, kmax, 0, lam, &err) == NK_OK, "%s", err.msg);
    CHECK(nk_product_levels(lam, t->m, t->n0, kmax, t, lev, &trace, &err) == NK_OK, "%s", err.msg);
    CHECK(trace < kdiag && trace > 0.8 * kdiag, "kept trace %g of K(x,x) %g", trace, kdiag);
    for (int j = 0; j < nn; j++) {
        nk_eigenlearn_result res;
        CHECK(nk_eigenlearn(lev, total, (double)ns[j], ridge * kdiag + (kdiag - trace), t->noise, &res, NULL, &err) == NK_OK, "%s", err.msg);
        pred[j] = res.mse;
    }
    free(lam); free(lev);
    nk_array_free(&xt); nk_array_free(&yt);
    nk_plan_free(plan);
    nk_arch_free(arch);
}

static void test_learning_curve(void)
{
    const char *cnn = "conv(1) relu conv(2,stride=2,pad=valid) relu conv(2,stride=2,pad=valid) relu flatten dense";
    const char *mlp = "flatten dense relu dense relu dense";
    nk_synth_target t;
    memset(&t, 0, sizeof t);
    CHECK(nk_synth_parse_target("0:2,1:2", 4, &t, NULL) == NK_OK, "parse");
    t.n0 = 3;
    t.noise = 0.001;
    t.dir_seed = 5;
    size_t ns_full[] = {30, 150, 600}, ns_quick[] = {50, 400};
    const size_t *ns = quick ? ns_quick : ns_full;
    int nn = quick ? 2 : 3, seeds = quick ? 1 : 2;
    double mc[3], pc[3], mm[3], pm[3];
    curve(cnn, &t, ns, nn, seeds, quick ? 300 : 600, mc, pc);
    curve(mlp, &t, ns, nn, seeds, quick ? 300 : 600, mm, pm);
    for (int j = 0; j < nn; j++) {
        printf("n=%zu  CNN measured %.4g predicted %.4g   MLP measured %.4g predicted %.4g\n", ns[j], mc[j], pc[j], mm[j], pm[j]);
        CHECK(mc[j] < 1.5 * pc[j] && pc[j] < 1.5 * mc[j], "CNN n=%zu: measured %.4g vs predicted %.4g", ns[j], mc[j], pc[j]);
        CHECK(mm[j] < 1.5 * pm[j] && pm[j] < 1.5 * mm[j], "MLP n=%zu: measured %.4g vs predicted %.4g", ns[j], mm[j], pm[j]);
    }
    /* at the largest n the CNN has learned a good part of the local order-4 target, the MLP
     * much less: the falsifiable ordering of SCIENCE.md section 3 */
    CHECK(mc[nn - 1] < 0.85 * mm[nn - 1], "CNN %.4g should beat MLP %.4g at n=%zu", mc[nn - 1], mm[nn - 1], ns[nn - 1]);
    CHECK(pc[nn - 1] < 0.85 * pm[nn - 1], "predicted: CNN %.4g vs MLP %.4g", pc[nn - 1], pm[nn - 1]);
}

int main(void)
{
    quick = getenv("NK_TEST_QUICK") != NULL;
    test_one_level();
    test_conservation();
    test_synth();
    test_levels();
    test_learning_curve();
    return nk_test_summary("test_curve");
}
