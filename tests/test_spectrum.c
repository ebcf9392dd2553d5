/* test_spectrum.c -- eigenstructure on the sphere and of Gram matrices:
 * Gauss-Jacobi rules against closed-form Gauss-Legendre and Chebyshev-U rules; Gegenbauer
 * orthogonality under the rule with the normalization c_d and multiplicities N(d,k) (checked
 * against dim Harm_k = binom(k+d-1,d-1) - binom(k+d-3,d-1)); the linear kernel's eigenvalues;
 * sum_k N(d,k) mu_k = k(1) (exactly for a smooth kernel, with the 1/K tail for relu); the
 * relu NTK decay mu_k ~ k^-d (Bietti & Mairal 2019); the analytic eigenvalues against the
 * eigenvalues of an empirical Gram matrix of uniform points on the sphere; the statistics and
 * power-law fit of a known spectrum; P(Theta) on an exactly solvable problem. */
#include "nk_theory.h"
#include "nk_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PI 3.14159265358979323846

static int quick;

static unsigned long long rs = 0x9E3779B97F4A7C15ULL;
static double unif(void)
{
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return ((rs >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(void) { return sqrt(-2 * log(unif())) * cos(2 * PI * unif()); }

static double binom(double n, double k) { return k < 0 || k > n ? 0 : exp(lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1)); }

static void test_rules(void)
{
    double t[8], w[8];
    /* d = 3: Gauss-Legendre, 3 nodes: 0, +-sqrt(3/5), weights 8/9, 5/9 */
    CHECK(nk_gauss_jacobi_sym(3, 3, t, w, NULL) == NK_OK, "legendre rule");
    CHECK(fabs(t[0] + sqrt(0.6)) < 1e-14 && fabs(t[1]) < 1e-14 && fabs(t[2] - sqrt(0.6)) < 1e-14, "legendre nodes %.17g %.17g %.17g", t[0], t[1], t[2]);
    CHECK(fabs(w[0] - 5.0 / 9) < 1e-14 && fabs(w[1] - 8.0 / 9) < 1e-14 && fabs(w[2] - 5.0 / 9) < 1e-14, "legendre weights %.17g %.17g", w[0], w[1]);
    /* d = 4: weight sqrt(1-t^2), Chebyshev U: t_j = cos(j pi/(n+1)), w_j = pi/(n+1) sin^2 */
    int n = 7;
    CHECK(nk_gauss_jacobi_sym(4, (size_t)n, t, w, NULL) == NK_OK, "chebyshev rule");
    for (int j = 1; j <= n; j++) {
        double tj = cos((n + 1 - j) * PI / (n + 1)), wj = PI / (n + 1) * pow(sin((n + 1 - j) * PI / (n + 1)), 2);
        CHECK(fabs(t[j - 1] - tj) < 1e-14 && fabs(w[j - 1] - wj) < 1e-14, "chebyshev U node %d: %.17g %.17g vs %.17g %.17g", j, t[j - 1], w[j - 1], tj, wj);
    }
    /* d = 2: weight 1/sqrt(1-t^2), Chebyshev T: t_j = cos((2j-1) pi / 2n), w_j = pi / n */
    CHECK(nk_gauss_jacobi_sym(2, 5, t, w, NULL) == NK_OK, "chebyshev T rule");
    for (int j = 1; j <= 5; j++)
        CHECK(fabs(t[j - 1] - cos((2 * (5 - j) + 1) * PI / 10)) < 1e-14 && fabs(w[j - 1] - PI / 5) < 1e-14, "chebyshev T node %d", j);
    nk_error err = {{0}};
    CHECK(nk_gauss_jacobi_sym(1, 5, t, w, &err) == NK_ERR_INPUT && strstr(err.msg, "d >= 2"), "d=1 refused: %s", err.msg);
}

static void test_orthogonality(void)
{
    int dims[] = {3, 4, 5, 10}, K = 24;
    size_t n = 40;
    double t[40], w[40], P[40][25];
    for (size_t di = 0; di < 4; di++) {
        int d = dims[di];
        for (int k = 0; k <= 30; k++) {
            double ref = k == 0 ? 1 : binom(k + d - 1, d - 1) - binom(k + d - 3, d - 1);
            CHECK(nk_relerr(nk_sphere_multiplicity(d, k), ref, 1) < 1e-12, "N(%d,%d) = %.17g vs dim Harm %.17g", d, k, nk_sphere_multiplicity(d, k), ref);
        }
        CHECK(nk_gauss_jacobi_sym(d, n, t, w, NULL) == NK_OK, "rule");
        double cd = nk_sphere_cd(d), worst = 0;
        for (size_t j = 0; j < n; j++) nk_gegenbauer(d, K, t[j], P[j]);
        for (int k = 0; k <= K; k++)
            for (int l = 0; l <= K; l++) {
                double s = 0;
                for (size_t j = 0; j < n; j++) s += cd * w[j] * P[j][k] * P[j][l];
                double want = k == l ? 1 / nk_sphere_multiplicity(d, k) : 0;
                worst = fmax(worst, fabs(s - want) * nk_sphere_multiplicity(d, k));
            }
        CHECK(worst < 1e-11, "d=%d: Gegenbauer orthogonality c_d int P_k P_l = delta/N: worst %.3g", d, worst);
        double p1[25];
        nk_gegenbauer(d, K, 1.0, p1);
        for (int k = 0; k <= K; k++) CHECK(fabs(p1[k] - 1) < 1e-12, "P_%d(1) = %.17g", k, p1[k]);
    }
}

static void test_linear_and_sum_rule(void)
{
    /* k(t) = t (one dense layer, w = 1): mu_1 = 1/d, all others 0 */
    double mu[161], k1;
    for (int d = 3; d <= 6; d++) {
        CHECK(nk_sphere_eigen("dense", NULL, NK_GET_NNGP, d, 6, 200, mu, &k1, NULL) == NK_OK, "linear");
        for (int k = 0; k <= 6; k++) CHECK(fabs(mu[k] - (k == 1 ? 1.0 / d : 0)) < 1e-14, "linear d=%d mu_%d = %.3g", d, k, mu[k]);
    }
    /* smooth kernel (erf): the sum rule holds to rounding once the series has converged */
    nk_error err = {{0}};
    CHECK(nk_sphere_eigen("w=1.5 b=0.3 dense erf dense erf dense", NULL, NK_GET_NTK, 4, 40, 1000, mu, &k1, &err) == NK_OK, "%s", err.msg);
    double s = 0;
    for (int k = 0; k <= 40; k++) s += nk_sphere_multiplicity(4, k) * mu[k];
    CHECK(fabs(s - k1) < 1e-9 * k1, "erf NTK: sum N mu = %.15g vs k(1) = %.15g", s, k1);
    /* relu NTK: mu_k ~ k^-d, N ~ k^(d-2), so the truncated sum misses ~C/K: halving doubling */
    CHECK(nk_sphere_eigen("dense relu dense", NULL, NK_GET_NTK, 3, 160, 4000, mu, &k1, NULL) == NK_OK, "relu");
    double s80 = 0, s160 = 0;
    for (int k = 0; k <= 160; k++) {
        double term = nk_sphere_multiplicity(3, k) * mu[k];
        if (k <= 80) s80 += term;
        s160 += term;
    }
    double r = (k1 - s80) / (k1 - s160);
    CHECK(k1 - s160 > 0 && fabs(r - 2) < 0.1, "relu NTK: tails %.4g (K=80) and %.4g (K=160), ratio %.4g (expected ~2)", k1 - s80, k1 - s160, r);
    CHECK(nk_sphere_eigen("conv(3) relu flatten dense", NULL, NK_GET_NTK, 3, 4, 100, mu, &k1, &err) == NK_ERR_INPUT && strstr(err.msg, "MLP"),
          "conv spec refused: %s", err.msg);
}

static void test_relu_decay(void)
{
    /* Bietti & Mairal (2019): the two-layer relu NTK on S^{d-1} has mu_k ~ k^-d (even k; odd
     * k >= 3 vanish without bias).  Fit log mu_k on log k over even k in [K/4, K]. */
    int K = quick ? 80 : 120;
    double mu[121];
    for (int d = 3; d <= 5; d++) {
        CHECK(nk_sphere_eigen("dense relu dense", NULL, NK_GET_NTK, d, K, 4000, mu, NULL, NULL) == NK_OK, "relu d=%d", d);
        double sx = 0, sy = 0, sxx = 0, sxy = 0;
        int m = 0;
        for (int k = K / 4; k <= K; k++) {
            if (k % 2) {
                CHECK(fabs(mu[k]) < 1e-12 * mu[0], "odd mu_%d = %.3g vanishes", k, mu[k]);
                continue;
            }
            double x = log(k), y = log(mu[k]);
            sx += x; sy += y; sxx += x * x; sxy += x * y; m++;
        }
        double slope = (m * sxy - sx * sy) / (m * sxx - sx * sx);
        CHECK(fabs(-slope - d) < 0.1 * d, "relu NTK d=%d: decay exponent %.4g (expected %d within 10%%)", d, -slope, d);
    }
}

/* eigenvalues (descending) of the Gram matrix / n of a kernel spec on n uniform points of S^{d-1} */
static double *empirical_spectrum(const char *spec, int get, int d, size_t n)
{
    size_t sh[2] = {n, (size_t)d};
    nk_array x, K = {0}, T = {0};
    nk_array_alloc(&x, 2, sh, NULL);
    for (size_t i = 0; i < n; i++) {
        double r = 0;
        for (int j = 0; j < d; j++) { x.data[i * d + j] = gauss(); r += x.data[i * d + j] * x.data[i * d + j]; }
        /* |x|^2 = d so K0 = <x,x'>/d is the cosine */
        for (int j = 0; j < d; j++) x.data[i * d + j] *= sqrt(d / r);
    }
    nk_arch *a = NULL;
    nk_plan *p = NULL;
    nk_kernel_opts ko;
    nk_kernel_opts_default(&ko);
    ko.get = get;
    double *eig = malloc(n * sizeof *eig);
    nk_status st = nk_arch_parse(spec, NULL, &a, NULL);
    if (st == NK_OK) st = nk_plan_create(a, 1, x.shape + 1, &p, NULL);
    if (st == NK_OK) st = nk_kernel_matrix(p, &x, NULL, &ko, &K, &T, NULL);
    nk_array *G = get == NK_GET_NNGP ? &K : &T;
    if (st == NK_OK) st = nk_sym_eig(G->data, n, 0, eig, NULL);
    if (st == NK_OK)
        for (size_t i = 0; i < n / 2; i++) { double tmp = eig[i]; eig[i] = eig[n - 1 - i]; eig[n - 1 - i] = tmp; }
    for (size_t i = 0; i < n; i++) eig[i] /= (double)n;
    nk_array_free(&x); nk_array_free(&K); nk_array_free(&T);
    nk_plan_free(p);
    nk_arch_free(a);
    return st == NK_OK ? eig : (free(eig), NULL);
}

static void test_against_gram(void)
{
    /* Nystrom: the eigenvalues of K/n converge to mu_k, each repeated N(d,k) times, with
     * relative fluctuations of order 1/sqrt(n).  Compare the means of the top groups
     * (observed: 0.1-3 %; the tolerance 2/sqrt(n) is 5 % at n = 1500). */
    size_t n = quick ? 700 : 1500;
    int d = 3;
    double mu[9];
    CHECK(nk_sphere_eigen("b=0.5 dense relu dense", NULL, NK_GET_NTK, d, 8, 2000, mu, NULL, NULL) == NK_OK, "analytic");
    double *eig = empirical_spectrum("b=0.5 dense relu dense", NK_GET_NTK, d, n);
    CHECK(eig != NULL, "empirical");
    if (!eig) return;
    /* order the analytic (mu_k, N) by size, as the empirical eigenvalues are */
    int order[9];
    for (int k = 0; k < 9; k++) order[k] = k;
    for (int i = 0; i < 9; i++)
        for (int j = i + 1; j < 9; j++)
            if (mu[order[j]] > mu[order[i]]) { int tmp = order[i]; order[i] = order[j]; order[j] = tmp; }
    size_t pos = 0;
    double tol = 2 / sqrt((double)n);
    for (int g = 0; g < 4; g++) {
        int k = order[g];
        size_t m = (size_t)lround(nk_sphere_multiplicity(d, k));
        double s = 0;
        for (size_t i = 0; i < m; i++) s += eig[pos + i];
        s /= (double)m;
        CHECK(nk_relerr(s, mu[k], 1e-300) < tol, "degree %d (eigenvalues %zu..%zu): empirical %.6g vs analytic %.6g (tol %.3g)", k, pos + 1, pos + m, s, mu[k], tol);
        pos += m;
    }
    free(eig);
}

static void test_stats_and_fit(void)
{
    size_t n = 300;
    double *desc = malloc(n * sizeof *desc), *asc = malloc(n * sizeof *asc);
    for (size_t i = 0; i < n; i++) desc[i] = 3 * pow((double)(i + 1), -1.7);
    for (size_t i = 0; i < n; i++) asc[i] = desc[n - 1 - i];
    double alpha, lc;
    CHECK(nk_decay_fit(desc, n, 10, 200, &alpha, &lc, NULL) == NK_OK && fabs(alpha - 1.7) < 1e-12 && fabs(lc - log(3)) < 1e-12,
          "fit of an exact power law: alpha %.15g", alpha);
    nk_spec_stats s;
    nk_spec_stats_compute(asc, n, &s);
    double sum = 0, sum2 = 0;
    for (size_t i = 0; i < n; i++) { sum += desc[i]; sum2 += desc[i] * desc[i]; }
    CHECK(s.lmax == 3 && s.lmin == desc[n - 1] && fabs(s.cond - pow(300, 1.7)) < 1e-9 * s.cond, "lmax lmin cond");
    CHECK(fabs(s.eff_rank - sum * sum / sum2) < 1e-12 * s.eff_rank && fabs(s.lr_max - 2.0 / 3) < 1e-15, "eff rank, lr");
    /* bulk: eigenvalues 2..300 descending, 299 of them; median is the 150th, i.e. rank 151 */
    CHECK(s.bulk_median == desc[150], "bulk median %.17g vs %.17g", s.bulk_median, desc[150]);
    nk_error err = {{0}};
    CHECK(nk_decay_fit(desc, n, 5, 5, &alpha, NULL, &err) == NK_ERR_INPUT, "one point refused");
    /* symmetric check */
    size_t sh[2] = {3, 3};
    nk_array a;
    nk_array_alloc(&a, 2, sh, NULL);
    double v[9] = {2, 1, 0, 1, 2, 0.5, 0, 0.5, 2};
    memcpy(a.data, v, sizeof v);
    CHECK(nk_check_symmetric(&a, 1e-12, "k.npy", NULL) == NK_OK, "symmetric accepted");
    a.data[5] = 0.6;
    CHECK(nk_check_symmetric(&a, 1e-12, "k.npy", &err) == NK_ERR_INPUT && strstr(err.msg, "k.npy") && strstr(err.msg, "not symmetric"), "%s", err.msg);
    a.shape[0] = 1; a.shape[1] = 9;
    CHECK(nk_check_symmetric(&a, 1e-12, "k.npy", &err) == NK_ERR_INPUT && strstr(err.msg, "not square"), "%s", err.msg);
    nk_array_free(&a);
    /* eigenvalues of a known matrix: [[2,1],[1,2]] -> 1, 3 */
    double m2[4] = {2, 1, 1, 2}, e2[2];
    CHECK(nk_sym_eig(m2, 2, 1, e2, NULL) == NK_OK && fabs(e2[0] - 1) < 1e-15 && fabs(e2[1] - 3) < 1e-15, "2x2 eigenvalues");
    CHECK(fabs(fabs(m2[1]) - sqrt(0.5)) < 1e-15 && fabs(m2[1] - m2[3]) < 1e-15, "top eigenvector (1,1)/sqrt2 in column 1");
    free(desc);
    free(asc);
}

static void test_ptheta(void)
{
    /* the linear kernel predicts a linear target w.x on new points exactly when n >= dim */
    size_t n = 12, D = 5, m = 4;
    double X[12 * 5], Xs[4 * 5], wv[5] = {1, -2, 0.5, 3, -1}, Y[12], Ys[4], T[144], C[48], pred[4];
    for (size_t i = 0; i < n * D; i++) X[i] = gauss();
    for (size_t i = 0; i < m * D; i++) Xs[i] = gauss();
    for (size_t i = 0; i < n; i++) { Y[i] = 0; for (size_t j = 0; j < D; j++) Y[i] += wv[j] * X[i * D + j]; }
    for (size_t i = 0; i < m; i++) { Ys[i] = 0; for (size_t j = 0; j < D; j++) Ys[i] += wv[j] * Xs[i * D + j]; }
    /* Theta = X X^T has rank D < n; with a tiny ridge the predictions tend to those of the
     * min-norm interpolant, which reproduces a linear target w.x* exactly. */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t k = 0; k < D; k++) s += X[i * D + k] * X[j * D + k];
            T[i * n + j] = s;
        }
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t k = 0; k < D; k++) s += Xs[i * D + k] * X[j * D + k];
            C[i * n + j] = s;
        }
    CHECK(nk_ptheta_predict(T, n, C, m, Y, 1, 1e-10, pred, NULL) == NK_OK, "ptheta");
    double worst = 0;
    for (size_t i = 0; i < m; i++) worst = fmax(worst, fabs(pred[i] - Ys[i]));
    CHECK(worst < 1e-5, "linear target predicted by the linear kernel: worst error %.3g", worst);
}

static void test_product_sphere(void)
{
    /* conv(1) relu flatten dense on m patches: K(t) = (1/m) sum_i kappa(t_i), kappa the kernel
     * of dense relu dense on one sphere, so lambda_0 = mu_0, lambda_{k e_i} = mu_k / m and every
     * degree vector with two or more nonzero entries has lambda = 0. */
    int m = 3, n0 = 4, K = 6;
    size_t q = 24, K1 = (size_t)K + 1;
    double mu[7], *lam = malloc(21 * 21 * 21 * sizeof *lam);
    nk_error err = {{0}};
    CHECK(nk_sphere_eigen("dense relu dense", NULL, NK_GET_NTK, n0, K, q, mu, NULL, NULL) == NK_OK, "one sphere");
    CHECK(nk_product_sphere_eigen("conv(1) relu flatten dense", NULL, NK_GET_NTK, m, n0, K, q, lam, &err) == NK_OK, "%s", err.msg);
    double worst = 0;
    for (size_t a = 0; a < K1; a++)
        for (size_t b = 0; b < K1; b++)
            for (size_t c = 0; c < K1; c++) {
                int nz = (a > 0) + (b > 0) + (c > 0);
                size_t k = a + b + c;
                double want = nz == 0 ? mu[0] : nz == 1 ? mu[k] / m : 0;
                worst = fmax(worst, fabs(lam[(a * K1 + b) * K1 + c] - want));
            }
    CHECK(worst < 1e-12, "additive kernel on 3 patches: worst deviation %.3g", worst);
    /* sum rule: K(1,..,1) = sum_k lambda_k prod_i N(n0, k_i) (to the truncation) for a smooth kernel */
    CHECK(nk_product_sphere_eigen("conv(1) erf conv(2,stride=2,pad=valid) erf flatten dense", NULL, NK_GET_NNGP, 2, 3, 20, 44, lam, &err) == NK_OK,
          "%s", err.msg);
    double s = 0;
    for (int a = 0; a <= 20; a++)
        for (int b = 0; b <= 20; b++) s += lam[a * 21 + b] * nk_sphere_multiplicity(3, a) * nk_sphere_multiplicity(3, b);
    double t1[1] = {1}, k1;
    CHECK(nk_sphere_kernel("dense erf dense erf dense", NULL, NK_GET_NNGP, t1, 1, &k1, NULL) == NK_OK, "k(1)");
    /* at t = (1,1) both patches coincide, so the 2-patch kernel equals the MLP's k(1) */
    CHECK(fabs(s - k1) < 1e-8, "two patches, erf: sum lambda N N = %.12g vs K(1,1) = %.12g", s, k1);
    CHECK(nk_product_sphere_eigen("conv(1) relu gap dense", NULL, NK_GET_NTK, 3, 4, 3, 8, lam, &err) == NK_ERR_INPUT &&
              strstr(err.msg, "different patches"), "gap refused: %s", err.msg);
    free(lam);
}

int main(void)
{
    quick = getenv("NK_TEST_QUICK") != NULL;
    test_rules();
    test_orthogonality();
    test_linear_and_sum_rule();
    test_relu_decay();
    test_against_gram();
    test_stats_and_fit();
    test_ptheta();
    test_product_sphere();
    return nk_test_summary("test_spectrum");
}
