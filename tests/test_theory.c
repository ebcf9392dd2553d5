/* test_theory.c -- the mean-field maps against independent references:
 * relu without bias in closed form (q' = sw2 q / 2, chi_1 = sw2 / 2, critical sw2 = 2);
 * erf and tanh q*, chi_1 by a 1-D trapezoid integration written here; c* = 1 in the ordered
 * phase and the chaotic c* against plain iteration of the map; the correlation map against
 * Monte Carlo within sampling error; the MLP NTK's condition number growing with depth in
 * the ordered phase on random data. */
#include "nk_theory.h"
#include "nk_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PI 3.14159265358979323846

static int quick;

static unsigned long long rs = 0x2545F4914F6CDD1DULL;
static double unif(void)
{
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return ((rs >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(void) { return sqrt(-2 * log(unif())) * cos(2 * PI * unif()); }

/* E[f(sqrt(q) z)] for z ~ N(0,1) by the trapezoid rule on [-12, 12] (smooth integrands:
 * the trapezoid rule converges geometrically for them). */
static double gauss_mean(double (*f)(double), double q)
{
    int n = 4000;
    double h = 24.0 / n, s = 0;
    for (int i = 0; i <= n; i++) {
        double z = -12 + i * h, wt = (i == 0 || i == n) ? 0.5 : 1;
        s += wt * f(sqrt(q) * z) * exp(-0.5 * z * z);
    }
    return s * h / sqrt(2 * PI);
}
static double erf_sq(double x) { return erf(x) * erf(x); }
static double erf_dsq(double x) { double g = 2 / sqrt(PI) * exp(-x * x); return g * g; }
static double tanh_sq(double x) { return tanh(x) * tanh(x); }
static double tanh_dsq(double x) { double g = 1 - tanh(x) * tanh(x); return g * g; }

static void test_parse(void)
{
    nk_act a;
    CHECK(nk_act_parse("relu", &a, NULL) == NK_OK && a.kind == NK_ACT_RELU, "relu");
    CHECK(nk_act_parse("leaky_relu(0.1)", &a, NULL) == NK_OK && a.kind == NK_ACT_ABRELU && a.a == 0.1 && a.b == 1, "leaky");
    CHECK(nk_act_parse("abrelu(-1,2)", &a, NULL) == NK_OK && a.a == -1 && a.b == 2, "abrelu");
    nk_error err = {{0}};
    CHECK(nk_act_parse("rellu", &a, &err) == NK_ERR_INPUT && strstr(err.msg, "rellu"), "unknown name: %s", err.msg);
    CHECK(nk_act_parse("leaky_relu(0.1", &a, NULL) == NK_ERR_INPUT, "unclosed");
}

static void test_relu_closed_form(void)
{
    nk_mf_params p = {{NK_ACT_RELU, 0, 0}, 1, 0, 0, 0};
    double sws[] = {0.5, 1.0, 1.9, 2.0, 2.5, 4.0};
    for (size_t i = 0; i < sizeof sws / sizeof *sws; i++) {
        p.sw2 = sws[i];
        for (double q = 0.1; q < 100; q *= 3.7) {
            double qn;
            CHECK(nk_mf_qmap(&p, q, &qn, NULL) == NK_OK && nk_relerr(qn, sws[i] * q / 2, 1e-300) < 1e-14,
                  "relu q map sw2=%g q=%g: %.17g vs %.17g", sws[i], q, qn, sws[i] * q / 2);
        }
        nk_mf_result r;
        CHECK(nk_mf_solve(&p, &r, NULL) == NK_OK, "solve");
        CHECK(fabs(r.chi1 - sws[i] / 2) < 1e-14, "relu chi1 sw2=%g: %.17g", sws[i], r.chi1);
        CHECK(fabs(r.chi_q - sws[i] / 2) < 1e-8, "relu chi_q sw2=%g: %.17g", sws[i], r.chi_q);
        nk_phase want = sws[i] < 2 ? NK_PHASE_ORDERED : sws[i] > 2 ? NK_PHASE_CHAOTIC : NK_PHASE_CRITICAL;
        CHECK(r.phase == want, "relu phase sw2=%g: %d", sws[i], (int)r.phase);
        if (sws[i] < 2) CHECK(r.q_star == 0, "relu ordered: q* collapses to 0 (%g)", r.q_star);
        if (sws[i] > 2) CHECK(isinf(r.q_star), "relu chaotic: q* diverges (%g)", r.q_star);
        if (sws[i] == 2) CHECK(r.q_star == 1 && isinf(r.xi_q), "relu critical: q* = q0, xi_q infinite (%g, %g)", r.q_star, r.xi_q);
    }
    double crit;
    CHECK(nk_mf_critical_sw2(&p, 0, 0.5, 5, &crit, NULL) == NK_OK && fabs(crit - 2) < 1e-9, "relu critical sw2 %.12g", crit);
    nk_error err = {{0}};
    CHECK(nk_mf_critical_sw2(&p, 0, 2.5, 5, &crit, &err) == NK_ERR_RUN && strstr(err.msg, "widen"), "no sign change: %s", err.msg);
    p.sw2 = -1;
    CHECK(nk_mf_solve(&p, &(nk_mf_result){0}, &err) == NK_ERR_INPUT, "negative variance refused");
}

static void step_cmap(const nk_mf_params *p, double q, double *c)
{
    double cn = NAN;
    nk_mf_cmap(p, q, *c, &cn, NULL);
    *c = cn;
}

/* q* and chi_1 by plain fixed-point iteration of the trapezoid-rule length map */
static void reference_fixed_point(double (*sq)(double), double (*dsq)(double), double sw2, double sb2,
                                  double *q, double *chi1)
{
    double x = 1;
    for (int i = 0; i < 5000; i++) {
        double xn = sw2 * gauss_mean(sq, x) + sb2;
        if (fabs(xn - x) < 1e-15 * x) { x = xn; break; }
        x = xn;
    }
    *q = x;
    *chi1 = sw2 * gauss_mean(dsq, x);
}

static void test_smooth_fixed_points(void)
{
    struct { nk_act_kind k; double (*sq)(double), (*dsq)(double); const char *name; } acts[] = {
        {NK_ACT_ERF, erf_sq, erf_dsq, "erf"}, {NK_ACT_TANH, tanh_sq, tanh_dsq, "tanh"}};
    double pts[][2] = {{1.0, 0.05}, {1.5, 0.3}, {2.5, 0.05}, {4.0, 0.5}, {0.8, 1.0}};
    for (size_t a = 0; a < 2; a++)
        for (size_t i = 0; i < sizeof pts / sizeof *pts; i++) {
            nk_mf_params p = {{acts[a].k, 0, 0}, pts[i][0], pts[i][1], 96, 0};
            nk_mf_result r;
            double q, chi1;
            reference_fixed_point(acts[a].sq, acts[a].dsq, pts[i][0], pts[i][1], &q, &chi1);
            CHECK(nk_mf_solve(&p, &r, NULL) == NK_OK, "solve");
            CHECK(nk_relerr(r.q_star, q, 1e-12) < 1e-9, "%s q* sw2=%g sb2=%g: %.12g vs ref %.12g", acts[a].name,
                  pts[i][0], pts[i][1], r.q_star, q);
            CHECK(nk_relerr(r.chi1, chi1, 1e-12) < 1e-9, "%s chi1 sw2=%g sb2=%g: %.12g vs ref %.12g", acts[a].name,
                  pts[i][0], pts[i][1], r.chi1, chi1);
            CHECK(r.phase == (chi1 < 1 ? NK_PHASE_ORDERED : NK_PHASE_CHAOTIC), "%s phase", acts[a].name);
            if (chi1 < 1) {
                /* ordered: c* = 1, and iterating the map from c = 0.2 drives c to 1 */
                CHECK(r.c_star == 1, "%s ordered c* = %.17g", acts[a].name, r.c_star);
                double c = 0.2;
                for (int l = 0; l < 3000; l++) step_cmap(&p, r.q_star, &c);
                CHECK(1 - c < 1e-6, "%s ordered: c after 3000 layers %.12g", acts[a].name, c);
                CHECK(fabs(r.chi_c - r.chi1) < 1e-14, "ordered: chi_c = chi_1");
            } else {
                /* chaotic: c* < 1 is the limit of the iterated map and a fixed point */
                double c = 0.5, cn;
                for (int l = 0; l < 3000; l++) step_cmap(&p, r.q_star, &c);
                CHECK(r.c_star < 1 - 1e-6 && fabs(c - r.c_star) < 1e-7, "%s chaotic c* %.12g vs iterated %.12g",
                      acts[a].name, r.c_star, c);
                nk_mf_cmap(&p, r.q_star, r.c_star, &cn, NULL);
                CHECK(fabs(cn - r.c_star) < 1e-12, "c* is a fixed point: %.3g", cn - r.c_star);
                CHECK(r.chi_c < 1, "chaotic c* is stable: chi_c %.6g", r.chi_c);
            }
        }
    /* erf at sb2 = 0: q* = 0 and chi_1 = sw2 * 4/pi in the ordered phase, critical at
     * sw2 = pi/4 (above it q* > 0 grows from 0, so the crossing is only located to ~1e-8) */
    nk_mf_params p = {{NK_ACT_ERF, 0, 0}, 0, 0, 0, 0};
    double crit;
    CHECK(nk_mf_critical_sw2(&p, 0, 0.1, 3, &crit, NULL) == NK_OK && fabs(crit - PI / 4) < 1e-6, "erf critical sw2 %.12g vs pi/4", crit);
}

static void test_cmap_monte_carlo(void)
{
    size_t n = quick ? 40000 : 400000;
    struct { nk_act act; double sw2, sb2; } cases[] = {
        {{NK_ACT_TANH, 0, 0}, 1.7, 0.2}, {{NK_ACT_RELU, 0, 0}, 1.5, 0.4}, {{NK_ACT_GELU, 0, 0}, 2.0, 0.1},
        {{NK_ACT_ERF, 0, 0}, 3.0, 0.05}};
    double cs[] = {-0.6, 0.1, 0.7, 0.95};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        nk_mf_params p = {cases[i].act, cases[i].sw2, cases[i].sb2, 96, 0};
        nk_mf_result r;
        CHECK(nk_mf_solve(&p, &r, NULL) == NK_OK, "solve");
        double q = r.q_star;
        for (size_t j = 0; j < sizeof cs / sizeof *cs; j++) {
            double c = cs[j], s = 0, s2 = 0, cn;
            for (size_t m = 0; m < n; m++) {
                double z1 = gauss(), z2 = gauss();
                double u = sqrt(q) * z1, v = sqrt(q) * (c * z1 + sqrt(1 - c * c) * z2);
                double f = nk_act_value(&p.act, u) * nk_act_value(&p.act, v);
                s += f; s2 += f * f;
            }
            double mean = s / n, se = sqrt((s2 / n - mean * mean) / n);
            double mc = (p.sw2 * mean + p.sb2) / q, mc_se = p.sw2 * se / q;
            CHECK(nk_mf_cmap(&p, q, c, &cn, NULL) == NK_OK, "cmap");
            CHECK(fabs(cn - mc) < 4.5 * mc_se, "act %d c=%g: map %.6g vs Monte Carlo %.6g +- %.2g", (int)p.act.kind, c, cn, mc, mc_se);
        }
    }
}

static double cond_of_mlp_ntk(const char *spec, const nk_array *x)
{
    nk_arch *a = NULL;
    nk_plan *pl = NULL;
    nk_array T = {0};
    nk_error err = {{0}};
    nk_kernel_opts ko;
    nk_kernel_opts_default(&ko);
    ko.get = NK_GET_NTK;
    double cond = NAN;
    size_t n = x->shape[0];
    nk_status st = nk_arch_parse(spec, NULL, &a, &err);
    if (st == NK_OK) st = nk_plan_create(a, 1, x->shape + 1, &pl, &err);
    if (st == NK_OK) st = nk_kernel_matrix(pl, x, NULL, &ko, NULL, &T, &err);
    double *eig = malloc(n * sizeof *eig);
    if (st == NK_OK && eig) st = nk_sym_eig(T.data, n, 0, eig, &err);
    if (st == NK_OK) cond = eig[n - 1] / eig[0];
    else fprintf(stderr, "%s: %s\n", spec, err.msg);
    free(eig);
    nk_array_free(&T);
    nk_plan_free(pl);
    nk_arch_free(a);
    return cond;
}

static void test_condition_grows_with_depth(void)
{
    size_t n = quick ? 24 : 48, D = 16, sh[2] = {n, D};
    nk_array x;
    nk_array_alloc(&x, 2, sh, NULL);
    for (size_t i = 0; i < n * D; i++) x.data[i] = gauss();
    /* ordered phase for erf: chi_1 < 1 at sw2 = 1, sb2 = 0.3 (checked below) */
    nk_mf_params p = {{NK_ACT_ERF, 0, 0}, 1.0, 0.3, 0, 0};
    nk_mf_result r;
    CHECK(nk_mf_solve(&p, &r, NULL) == NK_OK && r.phase == NK_PHASE_ORDERED, "erf sw2=1 sb2=0.3 is ordered (chi1 %g)", r.chi1);
    int depths[] = {1, 4, 16, 64};
    double prev = 0;
    for (size_t i = 0; i < 4; i++) {
        char spec[128];
        snprintf(spec, sizeof spec, "w=1 b=%.17g [dense erf]*%d dense", sqrt(0.3), depths[i]);
        double k = cond_of_mlp_ntk(spec, &x);
        CHECK(k > 1.5 * prev, "ordered phase: condition number at depth %d = %.4g, not larger than %.4g", depths[i], k, prev);
        prev = k;
    }
    nk_array_free(&x);
}

/* E[f(sqrt(q) z)] by the trapezoid rule on [-12, 12] with n points: independent of the
 * library's adaptive Gauss-Legendre panels; the rule converges geometrically for these
 * analytic integrands once its step is small against their strip of analyticity
 * (pi / (2 sqrt(q)) for tanh), which n = 2e5 resolves up to q ~ 1e4 (step 1.2e-4). */
static double trapezoid_mean(double (*f)(double), double q, int n)
{
    double h = 24.0 / n, s = 0;
    for (int i = 0; i <= n; i++) {
        double z = -12 + i * h, wt = (i == 0 || i == n) ? 0.5 : 1;
        s += wt * f(sqrt(q) * z) * exp(-0.5 * z * z);
    }
    return s * h / sqrt(2 * PI);
}

/* tanh's q* and chi_1 at large weight variance (issue 16: a fixed Gauss-Hermite rule gave
 * chi_1 0.78 at sw2 = 300 for the true 9.4), against fixed-point iteration of the trapezoid
 * reference; and divergent lengths reported as such. */
static void test_large_variance(void)
{
    const double sws[] = {1.5, 3, 10, 100, 300, 1000, 10000}, sbs[] = {0, 0.5, 2};
    const int n = quick ? 60000 : 200000;
    for (size_t i = 0; i < sizeof sws / sizeof *sws; i++)
        for (size_t j = 0; j < sizeof sbs / sizeof *sbs; j++) {
            if (quick && j == 1) continue;
            double sw2 = sws[i], sb2 = sbs[j], q = 1;
            for (int it = 0; it < 200; it++) {
                double qn = sw2 * trapezoid_mean(tanh_sq, q, n) + sb2;
                if (fabs(qn - q) < 1e-14 * qn) { q = qn; break; }
                q = qn;
            }
            double chi = sw2 * trapezoid_mean(tanh_dsq, q, n);
            nk_mf_params p = {{NK_ACT_TANH, 0, 0}, sw2, sb2, 0, 0};
            nk_mf_result r;
            nk_error err = {{0}};
            CHECK(nk_mf_solve(&p, &r, &err) == NK_OK, "tanh sw2=%g sb2=%g: %s", sw2, sb2, err.msg);
            CHECK(nk_relerr(r.q_star, q, 1e-300) < 1e-9 && nk_relerr(r.chi1, chi, 1e-300) < 1e-9 && !r.q_diverges,
                  "tanh sw2=%g sb2=%g: q* %.12g chi1 %.12g vs reference %.12g %.12g", sw2, sb2, r.q_star, r.chi1, q, chi);
            CHECK(r.phase == (chi > 1 ? NK_PHASE_CHAOTIC : NK_PHASE_ORDERED), "tanh sw2=%g sb2=%g phase", sw2, sb2);
        }
    /* relu at sw2 = 2 and identity at 1: f(q) = q + sb2, no fixed point; relu at 1.5 has
     * q* = sb2 / (1 - 0.75) */
    struct { nk_act_kind k; double sw2, sb2, q; } cases[] = {
        {NK_ACT_RELU, 2, 0.1, INFINITY}, {NK_ACT_IDENTITY, 1, 0.1, INFINITY}, {NK_ACT_RELU, 1.5, 0.1, 0.4}};
    for (size_t i = 0; i < 3; i++) {
        nk_mf_params p = {{cases[i].k, 0, 0}, cases[i].sw2, cases[i].sb2, 0, 0};
        nk_mf_result r;
        CHECK(nk_mf_solve(&p, &r, NULL) == NK_OK, "solve");
        if (isinf(cases[i].q))
            CHECK(isinf(r.q_star) && r.q_diverges, "act %d sw2=%g sb2=%g diverges: q* %g", (int)cases[i].k,
                  cases[i].sw2, cases[i].sb2, r.q_star);
        else
            CHECK(!r.q_diverges && nk_relerr(r.q_star, cases[i].q, 1e-300) < 1e-12, "relu q* %.15g", r.q_star);
    }
}

int main(void)
{
    quick = getenv("NK_TEST_QUICK") != NULL;
    test_parse();
    test_relu_closed_form();
    test_smooth_fixed_points();
    test_large_variance();
    test_cmap_monte_carlo();
    test_condition_grows_with_depth();
    return nk_test_summary("test_theory");
}
