/* test_acts.c -- the closed-form duals of cos, exp, rbf(gamma) and sign (act.c):
 *  - against nested adaptive integration (gauss.c: nk_dual_nested, a separate method with its
 *    own error estimate) at variances 1e-3 .. 1e3 and rho = -1, 0.3, 1 - 1e-12;
 *  - sign near rho = 1 against P(sign u != sign v) integrated in one dimension (the nested
 *    rule cannot see a wedge of angle 1e-6);
 *  - whole CNNs: the plane engine (float64, float32) against the layer-by-layer path;
 *  - the documented edges: sign's NTK drops what lies below it (sign' = 0 a.e.), exp's overflow
 *    is an error naming the layer, and bad rbf parameters are errors naming the column. */
#include "internal.h"
#include "nk_test.h"
#include "nk_theory.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Cauchy-Schwarz scale of an entry: sqrt(E g(u)^2 E g(v)^2) >= |E g(u) g(v)| */
static double cs_scale(const nk_act *act, int deriv, double a, double b)
{
    double ka, kb, da, db;
    nk_act_dual(act, a, a, a, 0, &ka, &da);
    nk_act_dual(act, b, b, b, 0, &kb, &db);
    return deriv ? sqrt(da * db) : sqrt(ka * kb);
}

static void test_closed_forms(void)
{
    const nk_act acts[] = {{NK_ACT_COS, 0, 0}, {NK_ACT_EXP, 0, 0}, {NK_ACT_RBF, 1, 0}, {NK_ACT_RBF, 0.3, 0},
                           {NK_ACT_SIGN, 0, 0}};
    /* (cos and rbf oscillate: at variances >= 30 their entries at |rho| < 1 are below e^-20 of
     * the scale and the nested rule, relative on each level, bisects for minutes; there only
     * rho = -1 and 1 - 1e-12 are compared.  exp: up to variance 30, e^60 -- its entries grow
     * like e^{(a+b)/2 + c} and overflow past 709) */
    const double pairs[][2] = {{1e-3, 1e-3}, {0.3, 2}, {7, 7}, {30, 30}, {1e3, 1e3}};
    const double rhos[] = {-1, 0.3, 1 - 1e-12};
    int compared = 0;
    for (int q = 0; q < 5; q++)
        for (int i = 0; i < 5; i++)
            for (int l = 0; l < 3; l++) {
                const nk_act *act = &acts[q];
                const double a = pairs[i][0], b = pairs[i][1], c = rhos[l] * sqrt(a * b);
                if (act->kind == NK_ACT_EXP && a > 30) continue;
                if ((act->kind == NK_ACT_COS || act->kind == NK_ACT_RBF) && a >= 30 && l == 1) continue;
                if (act->kind == NK_ACT_RBF && act->a != 1 && a > 30) continue; /* (1.5 s an entry) */
                if (act->kind == NK_ACT_SIGN && l == 2) continue; /* test_sign_wedge */
                double k, kd, ref[2], e;
                CHECK(nk_act_dual(act, a, b, c, 0, &k, &kd) == NK_OK, "%s: closed form", nk_act_name(act->kind));
                for (int d = 0; d < 2; d++) {
                    nk_dual_nested(act, d, a, b, c, 1e-11, &ref[d], &e);
                    const double got = d ? kd : k, scale = cs_scale(act, d, a, b);
                    CHECK(fabs(got - ref[d]) <= 1e-10 * scale || (scale == 0 && got == 0 && ref[d] == 0),
                          "%s(%g)%s a=%g b=%g rho=%.13g: closed %.15g vs nested %.15g (scale %.3g)",
                          nk_act_name(act->kind), act->a, d ? "'" : "", a, b, rhos[l], got, ref[d], scale);
                    compared++;
                }
            }
    CHECK(compared > 100, "%d entries compared", compared);
    /* sign' = 0 almost everywhere: the derivative kernel is exactly 0, not garbage */
    const nk_act s = {NK_ACT_SIGN, 0, 0};
    double k, kd = -1;
    nk_act_dual(&s, 2, 3, 1, 0, &k, &kd);
    CHECK(kd == 0 && nk_act_deriv(&s, 0.5) == 0 && nk_act_deriv(&s, -2) == 0, "sign: kdot %g", kd);
    /* rbf: E[phi^2] = 1 at every variance (its NNGP on the diagonal), exp at a = 800 is +inf */
    const nk_act r = {NK_ACT_RBF, 0.7, 0}, x = {NK_ACT_EXP, 0, 0};
    nk_act_dual(&r, 123.4, 123.4, 123.4, 0, &k, &kd);
    CHECK(k == 1 && kd == 1.4, "rbf diagonal: %.17g %.17g", k, kd);
    nk_act_dual(&x, 800, 800, 800, 0, &k, &kd);
    CHECK(isinf(k) && isinf(kd), "exp overflow: %g", k);
}

/* P(u > 0, v < 0) = int_0^inf phi(z) Phi(-rho z / s) dz, s = sqrt(1 - rho^2): the integrand
 * changes over a width s / rho, which is the scale given to the adaptive rule */
typedef struct { double rho, s; } wedge_ctx;

static double wedge_fn(double z, void *ctx)
{
    const wedge_ctx *w = ctx;
    return z > 0 ? 0.5 * erfc(w->rho * z / (w->s * sqrt(2.0))) : 0;
}

static void test_sign_wedge(void)
{
    const nk_act s = {NK_ACT_SIGN, 0, 0};
    const double rhos[] = {1 - 1e-12, 1 - 1e-6, 0.3, -0.9};
    for (int i = 0; i < 4; i++) {
        wedge_ctx w = {rhos[i], sqrt((1 - rhos[i]) * (1 + rhos[i]))};
        double p, e, k, kd;
        CHECK(nk_gauss_expect(wedge_fn, &w, 0, w.s, 1e-17, 1e-13, &p, &e) == 0, "wedge rho=%.13g converged", rhos[i]);
        /* E[sign u sign v] = 1 - 2 P(signs differ) = 1 - 4 P(u > 0, v < 0); the variances do not matter */
        nk_act_dual(&s, 3.5, 0.02, rhos[i] * sqrt(3.5 * 0.02), 0, &k, &kd);
        CHECK(fabs(k - (1 - 4 * p)) <= 1e-13, "sign rho=%.13g: closed %.17g vs 1 - 4P %.17g", rhos[i], k, 1 - 4 * p);
    }
}

static void test_networks(void)
{
    const char *specs[] = {
        "w=1.2 b=0.1 [conv(3) cos]*3 gap dense",
        "w=0.8 b=0.1 conv(3) exp conv(2) exp flatten dense",
        "w=1.3 conv(3) rbf conv(3,pad=circular) rbf(gamma=0.3) gap dense",
        "w=1.1 b=0.2 [conv(3) sign]*2 avgpool(2) conv(3) sign gap dense",
        "b=0.1 conv(3) cos conv(3) rbf(0.5) res(conv(3) sign conv(3)) exp gap dense",
    };
    const size_t shape[4] = {3, 6, 5, 2};
    unsigned long long seed = 5;
    nk_array x = nk_test_random_array(4, shape, &seed);
    for (int q = 0; q < 5; q++) {
        double e64, e32, scale;
        int ok = nk_test_engine_vs_layers(specs[q], &x, &e64, &e32, &scale, NULL);
        CHECK(ok && scale > 0 && e64 <= 1e-12 && e32 <= 1e-5,
              "%s: plane engine vs layer by layer, float64 %.3g, float32 %.3g (relative to the scale)", specs[q], e64, e32);
    }
    /* sign' = 0: nothing below the last sign layer reaches the NTK, which is then the readout's
     * own NNGP (ntk parameterization: T = K + w^2 T_below kdot) */
    nk_array K = {0}, T = {0};
    nk_error err = {{0}};
    CHECK(nk_test_kernel_path("w=1.3 b=0.2 conv(3) relu conv(3) sign gap dense", &x, 1, 0, &K, &T, NULL, &err) == NK_OK, "%s", err.msg);
    double worst = 0;
    for (size_t i = 0; K.data && i < 9; i++) worst = fmax(worst, fabs(T.data[i] - K.data[i]));
    CHECK(K.data && worst <= 1e-14 * K.data[0], "sign: NTK - NNGP %.3g", worst);
    nk_array_free(&K);
    nk_array_free(&T);
    /* exp overflowing: an error naming the layer, not a matrix of inf */
    err.msg[0] = 0;
    nk_status st = nk_test_kernel_path("w=2 [conv(3) exp]*3 gap dense", &x, 1, 0, &K, &T, NULL, &err);
    CHECK(st != NK_OK && strstr(err.msg, "exp") && strstr(err.msg, "column"), "exp overflow: status %d, '%s'", st, err.msg);
    nk_array_free(&K);
    nk_array_free(&T);
    nk_array_free(&x);
}

static void test_bad_input(void)
{
    static const struct { const char *spec, *want; } bad[] = {
        {"dense rbf(gamma=-1) dense", "column 17: rbf: gamma must be > 0"},
        {"dense rbf(0) dense", "column 11: rbf: gamma must be > 0"},
        {"dense rbf(gamma 2) dense", "expected '=' after 'gamma'"},
        {"dense rbf(1,2) dense", "rbf takes one argument"},
        {"dense rbf() dense", "expected a number for the gamma of rbf"},
        {"dense sign(2) dense", "sign takes no arguments"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        nk_arch *ar = NULL;
        nk_error err = {{0}};
        nk_status st = nk_arch_parse(bad[i].spec, NULL, &ar, &err);
        CHECK(st == NK_ERR_INPUT && strstr(err.msg, bad[i].want), "'%s': %s", bad[i].spec, err.msg);
        nk_arch_free(ar);
    }
    static const char *good[] = {"dense rbf dense", "dense rbf(0.5) dense", "dense rbf( gamma = 2.5 ) dense",
                                 "dense cos exp sign dense"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        nk_arch *ar = NULL;
        nk_error err = {{0}};
        CHECK(nk_arch_parse(good[i], NULL, &ar, &err) == NK_OK, "'%s': %s", good[i], err.msg);
        nk_arch_free(ar);
    }
    /* the mean-field parser: the same names, the same refusal */
    nk_act a;
    nk_error err = {{0}};
    CHECK(nk_act_parse("rbf(gamma=0.25)", &a, &err) == NK_OK && a.kind == NK_ACT_RBF && a.a == 0.25, "rbf(gamma=0.25)");
    CHECK(nk_act_parse("rbf", &a, &err) == NK_OK && a.kind == NK_ACT_RBF && a.a == 1, "rbf");
    CHECK(nk_act_parse("rbf(-1)", &a, &err) == NK_ERR_INPUT && strstr(err.msg, "gamma must be"), "%s", err.msg);
}

/* Mean field of sign: q* = sw2 + sb2 (E sign^2 = 1), chi_1 infinite (chaotic), and chi_c the
 * slope of the correlation map c -> (sw2 (2/pi) asin c + sb2) / q* at c*, by a difference */
static void test_meanfield_sign(void)
{
    nk_mf_params p = {{NK_ACT_SIGN, 0, 0}, 1.5, 0.05, 0, 0};
    nk_mf_result r;
    nk_error err = {{0}};
    CHECK(nk_mf_solve(&p, &r, &err) == NK_OK, "%s", err.msg);
    const double qs = 1.55, c = r.c_star, h = 1e-6;
    const double slope = 1.5 * (2 / NK_PI) * (asin(c + h) - asin(c - h)) / (2 * h) / qs;
    const double fix = (1.5 * (2 / NK_PI) * asin(c) + 0.05) / qs;
    CHECK(fabs(r.q_star - qs) <= 1e-12 && isinf(r.chi1) && r.phase == NK_PHASE_CHAOTIC && fabs(fix - c) <= 1e-12 &&
              fabs(r.chi_c - slope) <= 1e-8 * slope,
          "sign mean field: q* %.15g, chi1 %g, c* %.15g (map %.15g), chi_c %.12g vs slope %.12g", r.q_star, r.chi1, c, fix,
          r.chi_c, slope);
    double sw2;
    CHECK(nk_mf_critical_sw2(&p, 0.1, 0.5, 4, &sw2, &err) == NK_ERR_INPUT && strstr(err.msg, "no critical line"), "%s", err.msg);
}

int main(void)
{
    test_closed_forms();
    test_sign_wedge();
    test_networks();
    test_bad_input();
    test_meanfield_sign();
    return nk_test_summary("test_acts");
}
