/* test_smooth.c -- smooth activations at large variance: gelu's and sin's closed-form duals, and
 * the Mehler form of tanh, sigmoid, softplus, swish, against
 * nested adaptive integration (gauss.c, a separate method with its own error estimate) over
 * variances 0..1e3 and correlations in [-1, 1] including the ends; and the adaptive Gaussian
 * expectation itself against closed forms it does not know (E[tanh(sqrt(q) z)^2] has none,
 * so: E[erf(sqrt(q) z)^2] = (2/pi) asin(2q/(1+2q)), E[relu(sqrt(q) z)^2] = q/2). */
#include "internal.h"
#include "nk_test.h"

#include <math.h>
#include <stdlib.h>

static double erf_sq(double z, void *ctx) { double q = *(double *)ctx, e = erf(sqrt(q) * z); return e * e; }
static double relu_sq(double z, void *ctx) { double q = *(double *)ctx, x = sqrt(q) * z; return x > 0 ? x * x : 0; }

static void test_expect(void)
{
    for (double q = 1e-6; q <= 1e6; q *= 10) {
        double v, e;
        CHECK(nk_gauss_expect(erf_sq, &q, 0, 1 / sqrt(q), 0, 1e-13, &v, &e) == 0, "erf^2 q=%g converged", q);
        double ref = 2 / NK_PI * asin(2 * q / (1 + 2 * q));
        CHECK(fabs(v - ref) <= 1e-12 * ref && e <= 1e-12 * ref, "erf^2 q=%g: %.16g vs %.16g (estimate %.2g)", q, v, ref, e);
        CHECK(nk_gauss_expect(relu_sq, &q, 0, 1 / sqrt(q), 0, 1e-13, &v, &e) == 0 && fabs(v - q / 2) <= 1e-12 * q,
              "relu^2 q=%g: %.16g vs %.16g", q, v, q / 2);
    }
}

static void test_gelu(void)
{
    const nk_act g = {NK_ACT_GELU, 0, 0};
    const double vars[] = {0, 1e-3, 0.3, 1, 7, 100, 1000};
    const double rhos[] = {-1, -0.999999, -0.7, 0.3, 0.9999999, 1};
    const int nv = sizeof vars / sizeof *vars, nr = sizeof rhos / sizeof *rhos;
    for (int i = 0; i < nv; i++)
        for (int j = i; j < nv; j += 3)
            for (int l = 0; l < nr; l++) {
                const double a = vars[i], b = vars[j], c = rhos[l] * sqrt(a * b);
                double k, kd, k_ref, kd_ref, e1, e2;
                CHECK(nk_act_dual(&g, a, b, c, 0, &k, &kd) == NK_OK, "closed form");
                const int rk = nk_dual_nested(&g, 0, a, b, c, 1e-12, &k_ref, &e1);
                const int rd = nk_dual_nested(&g, 1, a, b, c, 1e-12, &kd_ref, &e2);
                /* (the reference's own flag: it misses its 1e-13 on the derivative at variance >= 100,
                 * within its budget of panels, while its value still agrees to 1e-10 below) */
                (void)rk;
                (void)rd;
                /* scale: E[phi(u)^2]^(1/2) E[phi(v)^2]^(1/2) >= the entry (Cauchy-Schwarz) */
                double ka, kb, da, db;
                nk_act_dual(&g, a, a, a, 0, &ka, &da);
                nk_act_dual(&g, b, b, b, 0, &kb, &db);
                const double sk = sqrt(ka * kb) + 1e-300, sd = sqrt(da * db);
                CHECK(fabs(k - k_ref) <= 1e-10 * sk && fabs(kd - kd_ref) <= 1e-10 * sd,
                      "gelu a=%g b=%g rho=%g: K %.15g vs %.15g, Kdot %.15g vs %.15g", a, b, rhos[l], k, k_ref, kd, kd_ref);
            }
    /* the plane engine and the layer-by-layer path on a gelu CNN agree */
    const size_t shape[4] = {3, 6, 5, 2};
    unsigned long long seed = 7;
    nk_array x = nk_test_random_array(4, shape, &seed);
    nk_array K[2] = {{0}}, T[2] = {{0}};
    for (int engine = 0; engine < 2; engine++) {
        nk_error err = {{0}};
        nk_status st = nk_test_kernel_path("w=1.3 b=0.2 [conv(3) gelu]*4 gap dense", &x, engine, 0, &K[engine], &T[engine], NULL, &err);
        CHECK(st == NK_OK, "gelu CNN (engine %d): %s", engine, err.msg);
    }
    double worst = 0, scale = 0;
    for (size_t i = 0; K[0].data && K[1].data && i < 9; i++) {
        scale = fmax(scale, fabs(K[0].data[i]) + fabs(T[0].data[i]));
        worst = fmax(worst, fmax(fabs(K[0].data[i] - K[1].data[i]), fabs(T[0].data[i] - T[1].data[i])));
    }
    CHECK(K[0].data && K[1].data && worst <= 1e-12 * scale, "gelu CNN: plane engine vs layer by layer %.3g (scale %.3g)", worst, scale);
    for (int e = 0; e < 2; e++) { nk_array_free(&K[e]); nk_array_free(&T[e]); }
    nk_array_free(&x);
}

/* The Mehler form of tanh, sigmoid, softplus, swish (the records of nk_mehler_record, summed as
 * the plane engine sums them: phi's coefficients for both series, E phi' phi' as the derivative in c of E phi phi, the
 * terms nk_mehler_span asks for at the first level above |rho|, the tau bound past the usable
 * ones, else the engine's nested fallback) against nested adaptive integration at 1e-11 of each
 * series on its own (phi and phi' integrated directly), over variances 1e-8 .. 1e6 (the table's
 * range reaches 1e8: raw 0..255 pixels give first-layer variances ~1e4) and rho in [-1, 1] with
 * its ends and 1 - 1e-12: every entry the form accepts is within 1e-10 of
 * sqrt(E g(u)^2 E g(v)^2). */
static void test_mehler(void)
{
    const nk_act_kind kinds[] = {NK_ACT_TANH, NK_ACT_SIGMOID, NK_ACT_SOFTPLUS, NK_ACT_SWISH};
    /* variance pairs (a, b) and correlations: a reference entry costs ~0.1 s */
    /* (1e-8 and 1e-6: below the table, where sigmoid's and softplus's terms come from phi''s) */
    const double pairs[][2] = {{1e-8, 1e-8}, {1e-6, 2},  {1e-3, 1e-3}, {0.3, 2},
                               {2, 2},       {30, 30},   {2, 1e3},     {1e3, 1e3}, {1.3e4, 1e6}};
    const double rhos[] = {-1, 0.3, 1 - 1e-12};
    const int np = sizeof pairs / sizeof *pairs, nr = sizeof rhos / sizeof *rhos;
    const double tol = 5e-11;
    int accepted[2] = {0, 0}, refused = 0, accepted_large = 0;
    for (int q = 0; q < 4; q++) {
        const nk_act act = {kinds[q], 0, 0};
        const int odd = nk_mehler_odd(kinds[q], 0);
        for (int i = 0; i < np; i++) {
            const double a = pairs[i][0], b = pairs[i][1];
            /* the records the engine reads (nk_mehler_record: phi's terms, both series' needs and
             * tails) */
            double ra[NK_MEHLER_REC], rb[NK_MEHLER_REC], ga[NK_MEHLER_TERMS + 1], gb[NK_MEHLER_TERMS + 1],
                na[2][NK_MEHLER_LEVELS], nb[2][NK_MEHLER_LEVELS], ta[2], tb[2], ea[2], eb[2], e;
            nk_mehler_record(&act, a, tol, ra, 1);
            nk_mehler_record(&act, b, tol, rb, 1);
            for (int k = 0; k <= NK_MEHLER_TERMS; k++) {
                ga[k] = ra[NK_MEHLER_G + k];
                gb[k] = rb[NK_MEHLER_G + k];
            }
            for (int d = 0; d < 2; d++) {
                for (int l = 0; l < NK_MEHLER_LEVELS; l++) {
                    na[d][l] = ra[NK_MEHLER_NEED(d) + l];
                    nb[d][l] = rb[NK_MEHLER_NEED(d) + l];
                }
                ta[d] = ra[NK_MEHLER_TAU(d)];
                tb[d] = rb[NK_MEHLER_TAU(d)];
                CHECK(na[d][0] <= NK_MEHLER_TERMS && nb[d][0] <= NK_MEHLER_TERMS, "%s%s records a=%g b=%g",
                      nk_act_name(kinds[q]), d ? "'" : "", a, b);
                nk_dual_nested(&act, d, a, a, a, 1e-13, &ea[d], &e);
                nk_dual_nested(&act, d, b, b, b, 1e-13, &eb[d], &e);
            }
            for (int l = 0; l < nr; l++) {
                const double rho = rhos[l], x = rho * rho;
                int lev = 0;
                while (lev + 1 < NK_MEHLER_LEVELS && !(rho * rho <= nk_mehler_level[lev] * nk_mehler_level[lev]))
                    lev++;
                const int need[2] = {(int)fmax(na[0][lev], nb[0][lev]), (int)fmax(na[1][lev], nb[1][lev])};
                int over;
                const int m = nk_mehler_span(kinds[q], need, &over);
                const int bad = nk_mehler_tail_over(kinds[q], ta, tb, fabs(rho), tol) & over;
                /* p(x) and p'(x) over phi's parity terms, as the engine */
                double p = 0, dp = 0;
                for (int k = m; k >= 1; k--) {
                    dp = dp * x + p;
                    p = p * x + ga[k] * gb[k];
                }
                const double q0 = ga[0] * gb[0], rab = 1 / sqrt(a * b);
                const double sum[2] = {odd ? q0 + rho * p : q0 * rho + p,
                                       (odd ? p + 2 * x * dp : q0 + 2 * rho * dp) * rab};
                for (int d = 0; d < 2; d++) {
                    if (bad & (1 << d)) {
                        refused++;   /* the engine integrates this entry */
                        continue;
                    }
                    double ref, err;
                    const int rc = nk_dual_nested(&act, d, a, b, rho * sqrt(a * b), 1e-11, &ref, &err);
                    const double scale = sqrt(ea[d] * eb[d]);
                    CHECK(fabs(sum[d] - ref) <= 1e-10 * scale,
                          "%s%s a=%g b=%g rho=%.13g: Mehler %.15g (%d terms) vs nested %.15g (rc %d, est %.2g)",
                          nk_act_name(kinds[q]), d ? "'" : "", a, b, rho, sum[d], m, ref, rc, err / scale);
                    accepted[d]++;
                    accepted_large += a >= 30 && b >= 30;
                }
            }
        }
    }
    /* both branches are exercised: large variances are refused near |rho| = 1 only */
    CHECK(accepted[0] > 25 && accepted[1] > 25 && refused > 0 && accepted_large > 0,
          "Mehler entries: %d + %d accepted (%d at variances >= 30), %d refused", accepted[0], accepted[1],
          accepted_large, refused);
}

/* Whole kernels: the engine (Mehler form, float64 and float32) against the layer-by-layer path
 * (Gauss-Hermite per entry at the automatic order, ~1e-10 at these variances) on random small
 * CNNs of each activation */
static void test_mehler_kernels(void)
{
    const char *acts[] = {"tanh", "sigmoid", "softplus", "swish", "gelu", "erf"};
    unsigned long long seed = 11;
    for (int q = 0; q < 6; q++) {
        char spec[256];
        const int depth = 1 + q % 3;
        snprintf(spec, sizeof spec, "w=%.2f b=0.1 [conv(%d) %s]*%d %s dense", 1.1 + 0.1 * q, q % 2 ? 2 : 3, acts[q], depth,
                 q % 2 ? "flatten" : "gap");
        const size_t shape[4] = {3, 5, 4, 2};
        nk_array x = nk_test_random_array(4, shape, &seed);
        nk_array K[3] = {{0}}, T[3] = {{0}};
        for (int run = 0; run < 3; run++) {
            nk_plane_enabled = run < 2;
            nk_kernel_opts o;
            nk_kernel_opts_default(&o);
            o.get = NK_GET_BOTH;
            o.nthreads = 1;
            o.f32 = run == 1;
            nk_arch *ar = NULL;
            nk_plan *pl = NULL;
            nk_error err = {{0}};
            nk_status st = nk_arch_parse(spec, NULL, &ar, &err);
            if (st == NK_OK) st = nk_plan_create(ar, 3, shape + 1, &pl, &err);
            if (st == NK_OK) st = nk_kernel_matrix(pl, &x, NULL, &o, &K[run], &T[run], &err);
            CHECK(st == NK_OK, "%s (run %d): %s", spec, run, err.msg);
            nk_plan_free(pl);
            nk_arch_free(ar);
        }
        nk_plane_enabled = 1;
        double e64 = 0, e32 = 0, scale = 0;
        for (size_t i = 0; K[0].data && K[1].data && K[2].data && i < 9; i++) {
            scale = fmax(scale, fmax(fabs(K[2].data[i]), fabs(T[2].data[i])));
            e64 = fmax(e64, fmax(fabs(K[0].data[i] - K[2].data[i]), fabs(T[0].data[i] - T[2].data[i])));
            e32 = fmax(e32, fmax(fabs(K[1].data[i] - K[2].data[i]), fabs(T[1].data[i] - T[2].data[i])));
        }
        CHECK(scale > 0 && e64 <= 1e-9 * scale && e32 <= 1e-5 * scale,
              "%s: engine vs layer by layer: float64 %.3g, float32 %.3g (scale %.3g)", spec, e64, e32, scale);
        for (int r = 0; r < 3; r++) { nk_array_free(&K[r]); nk_array_free(&T[r]); }
        nk_array_free(&x);
    }
}

static void test_sin(void)
{
    /* sin's closed form against nested integration, variances 0 .. 3 (sin(sqrt(a) z) oscillates:
     * the reference's panels grow with the variance, and e^{-a} shrinks the scale) */
    const nk_act s = {NK_ACT_SIN, 0, 0};
    const double vars[] = {0, 1e-3, 0.5, 3};
    for (int i = 0; i < 4; i++)
        for (int j = i; j < 4; j++)
            for (double rho = -1; rho <= 1; rho += 0.5) {
                const double a = vars[i], b = vars[j], c = rho * sqrt(a * b);
                double k, kd, kr, kdr, e;
                nk_act_dual(&s, a, b, c, 0, &k, &kd);
                nk_dual_nested(&s, 0, a, b, c, 1e-13, &kr, &e);
                nk_dual_nested(&s, 1, a, b, c, 1e-13, &kdr, &e);
                double ka, kb, da, db;
                nk_act_dual(&s, a, a, a, 0, &ka, &da);
                nk_act_dual(&s, b, b, b, 0, &kb, &db);
                CHECK(fabs(k - kr) <= 1e-11 * sqrt(ka * kb) + 1e-300 && fabs(kd - kdr) <= 1e-11 * sqrt(da * db),
                      "sin a=%g b=%g rho=%g: %.15g vs %.15g, %.15g vs %.15g", a, b, rho, k, kr, kd, kdr);
            }
}

/* phi''s terms as the engine forms them from phi's (sqrt((k + 1) / a) h_{k+1}(phi), with
 * nk_mehler_coeffs(deriv 0)) against phi''s own (nk_mehler_coeffs(deriv 1): a separate table of
 * phi' or its own quadrature), 2-norm over the usable terms relative to theirs, at variances
 * 1e-8 .. 1e8.  (Without phi's terms taken from phi''s at small a E phi'^2 / E phi^2, softplus
 * at 1e-8 was 6.3e-11 off, sigmoid 1.4e-11.) */
static void test_mehler_derived(void)
{
    const nk_act_kind kinds[] = {NK_ACT_TANH, NK_ACT_SIGMOID, NK_ACT_SOFTPLUS, NK_ACT_SWISH};
    for (int q = 0; q < 4; q++) {
        const nk_act act = {kinds[q], 0, 0};
        const int odd = nk_mehler_odd(kinds[q], 0), ns = NK_MEHLER_TERMS;
        double worst = 0, at = 0;
        for (int e = -8; e <= 8; e += 2) {
            const double a = pow(10, e);
            double g0[NK_MEHLER_TERMS + 1], g1[NK_MEHLER_TERMS + 1], nd[NK_MEHLER_LEVELS], t;
            CHECK(nk_mehler_coeffs(&act, 0, a, 5e-11, g0, nd, &t) == 0 && nk_mehler_coeffs(&act, 1, a, 5e-11, g1, nd, &t) == 0,
                  "%s coefficients at %g", nk_act_name(kinds[q]), a);
            /* odd phi: phi' degree 2j (term j) from phi's degree 2j + 1 (term j), phi''s lone degree 1
             * from phi's degree 2 (0); even phi: phi''s lone degree 0 from phi's lone degree 1,
             * phi' degree 2j + 1 (term j) from phi's degree 2j + 2 (term j + 1) */
            double num = 0, den = 0;
            const double lone = odd ? 0 : sqrt(1 / a) * g0[0];
            num += (lone - g1[0]) * (lone - g1[0]);
            den += g1[0] * g1[0];
            for (int j = 0; j < ns - !odd; j++) {
                const double k = odd ? 2 * j + 1 : 2 * j + 2, v = sqrt(k / a) * g0[odd ? 1 + j : 2 + j];
                num += (v - g1[1 + j]) * (v - g1[1 + j]);
                den += g1[1 + j] * g1[1 + j];
            }
            if (sqrt(num / den) > worst) {
                worst = sqrt(num / den);
                at = a;
            }
        }
        CHECK(worst <= 1e-12, "%s: phi' terms from phi's %.3g off (relative 2-norm) at a = %g", nk_act_name(kinds[q]),
              worst, at);
        printf("  %-8s phi' terms from phi's: at most %.2e off (at a = %g)\n", nk_act_name(kinds[q]), worst, at);
    }
}

/* A variance 0 (a position whose window is all zeros, no bias): u = 0, so E phi(u) phi(v) =
 * phi(0) E phi(v) and E phi'(u) phi'(v) = phi'(0) E phi'(v), which the form gets from its
 * convention at a = 0 (nk_mehler_record), through the records and nk_mehler_grid, against
 * nested integration; b = 0 too.  (In a kernel E phi' phi' is multiplied by the NTK at such an
 * entry, which is 0 there: only this direct check sees it.) */
static void test_mehler_zero(void)
{
    const nk_act_kind kinds[] = {NK_ACT_TANH, NK_ACT_SIGMOID, NK_ACT_SOFTPLUS, NK_ACT_SWISH};
    const double bs[] = {0, 0.5, 30};
    for (int q = 0; q < 4; q++)
        for (int i = 0; i < 3; i++) {
            const nk_act act = {kinds[q], 0, 0};
            const double a = 0, b = bs[i];
            double ra[3 + NK_MEHLER_REC], rb[3 + NK_MEHLER_REC], work[NK_MEHLER_REC + 6], k = 0, t = 1;
            ra[0] = a;
            rb[0] = b;
            nk_self_roots(ra, 1);
            nk_self_roots(rb, 1);
            nk_mehler_record(&act, a, NK_MEHLER_TOL64, ra + 3, 1);
            nk_mehler_record(&act, b, NK_MEHLER_TOL64, rb + 3, 1);
            nk_mehler_grid(&act, &k, &t, 1, 1, ra, 0, rb, 0, 1, work);
            double ref[2], scale[2], e;
            for (int d = 0; d < 2; d++) {
                double eb;
                nk_dual_nested(&act, d, a, b, 0, 1e-13, &ref[d], &e);
                nk_dual_nested(&act, d, b, b, b, 1e-13, &eb, &e);
                const double g0 = d ? nk_act_deriv(&act, 0) : nk_act_value(&act, 0);
                scale[d] = fmax(sqrt(g0 * g0 * eb), 1e-300);
            }
            CHECK(fabs(k - ref[0]) <= 1e-10 * scale[0] && fabs(t - ref[1]) <= 1e-10 * scale[1],
                  "%s a=0 b=%g: E phi phi %.15g vs %.15g, E phi' phi' %.15g vs %.15g", nk_act_name(kinds[q]), b, k,
                  ref[0], t, ref[1]);
        }
}

int main(void)
{
    test_expect();
    test_gelu();
    test_sin();
    test_mehler();
    test_mehler_derived();
    test_mehler_zero();
    test_mehler_kernels();
    return nk_test_summary("test_smooth");
}
