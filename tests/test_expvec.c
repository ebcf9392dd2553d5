/* test_expvec.c -- the plane engine's vectorized exponential (plane_body.h: vexp) and the sin,
 * cos, exp and rbf steps built on it, on every instruction set the machine runs:
 *  - e^x against libm over the whole range (float64: against exp; float32: against exp in
 *    double, rounded), relative error in ulps where the result is normal, absolute in units of
 *    the smallest subnormal below, +inf past the overflow threshold, 0 past underflow, NaN kept;
 *  - random CNNs with each activation (strided, pooled and GAP levels, and mixed with relu)
 *    through the plane engine, float64 and float32, against the layer-by-layer path in float64
 *    (which forms each entry with libm exp, act.c);
 *  - exp overflowing in the engine is still an error naming the layer. */
#include "internal.h"
#include "nk_test.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *isas[3] = {"avx512", "avx2", "portable"};

static double uniform(unsigned long long *s)
{
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    return (*s >> 11) / 9007199254740992.0;
}

/* test points: the edges given, first (so that they go through the vector loop, not its scalar
 * tail), then uniform over [lo, hi] */
static size_t fill_points(double *x, size_t n, double lo, double hi, const double *edge, size_t ne)
{
    unsigned long long s = 11;
    size_t i = 0;
    for (size_t e = 0; e < ne; e++) x[i++] = edge[e];
    for (; i < n + ne; i++) x[i] = lo + (hi - lo) * uniform(&s);
    return i;
}

/* e^x of one precision against libm's exp in double (float32: its inputs and results rounded to
 * float): ulps where the result is normal, units of the smallest subnormal below, +inf past the
 * overflow threshold, 0 (or the smallest subnormal) past underflow, NaN kept */
static void test_exp(const char *isa, int f32)
{
    enum { N = 200000 };
    static double x[N + 64], y[N + 64];
    static float xf[N + 64], yf[N + 64];
    /* float64: around the overflow threshold log(DBL_MAX) = 709.7827128933840, the normal one
     * -708.3964, the last subnormal -745.1332; zeros, huge, inf, small */
    static const double edge64[] = {0.0, -0.0, 1e-300, -1e-300, 5e-324, 1e-17, -1e-17, 0.34657359027997264,
                                    -0.34657359027997264, 709.78271289338397, 709.782712893384, 709.78271289338408,
                                    709.79, 710, 720, 1e300, INFINITY, -708.39641853226408, -708.3964185322641, -708.4,
                                    -720, -740, -745.13321910194110, -745.1332191019412, -745.2, -746, -800, -1e300,
                                    -INFINITY, 1, -1, 2, 0.5, 100, -100};
    /* float32: log(FLT_MAX) = 88.7228391, normal threshold -87.3365447, last subnormal -103.2789 */
    static const double edge32[] = {0.0, -0.0, 1e-40, -1e-40, 1e-9, -1e-9, 88.72283, 88.722839, 88.72284, 88.7229, 89,
                                    100, 1e30, INFINITY, -87.33654, -87.3365, -87.34, -90, -100, -103.27892, -103.2789,
                                    -103.3, -104, -1e30, -INFINITY, 1, -1, 0.34657359, -0.34657359};
    const double *edge = f32 ? edge32 : edge64;
    const size_t ne = f32 ? sizeof edge32 / sizeof *edge32 : sizeof edge64 / sizeof *edge64;
    const double ulp = f32 ? 0x1p-23 : 0x1p-52, sub = f32 ? 0x1p-149 : 0x1p-1074, normal = f32 ? FLT_MIN : DBL_MIN;
    size_t n = f32 ? fill_points(x, N, -104, 89, edge, ne) : fill_points(x, N, -746, 710, edge, ne);
    double nan_out;
    if (f32) {
        for (size_t i = 0; i < n; i++) xf[i] = (float)x[i], x[i] = xf[i];
        nk_exp_points32(yf, xf, n);
        for (size_t i = 0; i < n; i++) y[i] = yf[i];
        float nan_in = NAN, out;
        nk_exp_points32(&out, &nan_in, 1);
        nan_out = out;
    } else {
        nk_exp_points(y, x, n);
        double nan_in = NAN;
        nk_exp_points(&nan_out, &nan_in, 1);
    }
    double worst = 0, worst_sub = 0;
    size_t bad_special = 0;
    for (size_t i = 0; i < n; i++) {
        const double r = exp(x[i]), rounded = f32 ? (float)r : r;
        if (isinf(rounded) || rounded == 0)
            bad_special += isinf(rounded) ? !(isinf(y[i]) && y[i] > 0) : !(y[i] >= 0 && y[i] <= sub);
        else if (r < normal)
            worst_sub = fmax(worst_sub, fabs(y[i] - r) / sub);
        else
            worst = fmax(worst, fabs(y[i] - r) / r / ulp);
    }
    const char *prec = f32 ? "float32" : "float64";
    printf("%s %s exp: %.3g ulp, %.3g subnormal ulp\n", isa, prec, worst, worst_sub);
    /* (libm's exp is within an ulp; 2 ulps of the difference leave the vexp within ~3) */
    CHECK(worst <= 2 && worst_sub <= 1 && bad_special == 0 && isnan(nan_out),
          "%s %s exp vs libm: %.3g ulp (normal), %.3g of the smallest subnormal, %zu wrong past the thresholds, NaN %g",
          isa, prec, worst, worst_sub, bad_special, nan_out);
}

/* The engine on each instruction set, float64 and float32, against layer by layer in float64:
 * every entry within 1e-14 (float64; the portable build, libm exp, measured 3e-15 on four cos
 * layers) and 2e-6 (float32) of the Cauchy-Schwarz scale sqrt(K_ii K_jj) of its row and column */
static void test_networks(const char *isa)
{
    const char *specs[] = {
        "w=1.2 b=0.1 [conv(3) cos]*4 gap dense",
        "w=1.1 b=0.1 [conv(3) sin]*3 avgpool(2) conv(3) sin gap dense",
        "w=0.6 b=0.1 conv(3) exp conv(3) exp avgpool(2) conv(3) exp gap dense",
        "w=1.3 conv(3) rbf conv(3) rbf(gamma=0.3) avgpool(2) conv(3) rbf(0.5) flatten dense",
        "w=1.4 b=0.1 conv(3) relu conv(3) sin conv(3,pad=circular) cos conv(3) relu gap dense",
        "w=0.9 conv(5) sin conv(2) cos flatten dense",
    };
    const size_t shape[4] = {4, 8, 8, 3};
    unsigned long long seed = 7;
    nk_array x = nk_test_random_array(4, shape, &seed);
    for (size_t q = 0; q < sizeof specs / sizeof *specs; q++) {
        double e64, e32, scale;
        int pe = 0;
        int ok = nk_test_engine_vs_layers(specs[q], &x, &e64, &e32, &scale, &pe);
        printf("%s %s: pe %d, f64 %.3g, f32 %.3g\n", isa, specs[q], pe, e64, e32);
        CHECK(ok && pe > 0 && e64 <= 1e-14 && e32 <= 2e-6,
              "%s %s: plane engine (%d ops) vs layer by layer, float64 %.3g, float32 %.3g of the scale", isa, specs[q], pe,
              e64, e32);
    }
    /* exp overflowing inside the engine: still an error naming the layer */
    for (int f32 = 0; f32 < 2; f32++) {
        nk_array K = {0}, T = {0};
        nk_error err = {{0}};
        nk_status st = nk_test_kernel_path("w=2 [conv(3) exp]*3 gap dense", &x, 1, f32, &K, &T, NULL, &err);
        CHECK(st != NK_OK && strstr(err.msg, "exp") && strstr(err.msg, "column"), "%s exp overflow (f32 %d): '%s'", isa,
              f32, err.msg);
        nk_array_free(&K);
        nk_array_free(&T);
    }
    nk_array_free(&x);
}

/* sin's e^-m sinh c at small c keeps its relative accuracy (the difference (e^(c-m) - e^(-c-m))/2
 * would lose it: ~eps e^-m absolute).  One conv(1) on two samples whose position vectors are
 * nearly orthogonal, u = s (1, 1/2), v = s (-1/2, 1 + 2^-20) with s a power of two, so that every
 * covariance is exact in float64 and c = s^2 2^-22 exact in float32 too; then a flatten readout:
 * the NNGP of the pair is mean_p e^-(a_p + b_p)/2 sinh c_p (w = 1, b = 0), formed here in double
 * with libm sinh.  (float64 needs 1e-13 relative, float32 1e-5: the difference would be off by
 * ~eps/c, 5e-10 and 0.25.) */
static void test_small_c(const char *isa)
{
    enum { H = 4, W = 4, C = 2, P = H * W };
    const size_t shape[4] = {2, H, W, C};
    unsigned long long seed = 3;
    nk_array x = nk_test_random_array(4, shape, &seed);
    double ref = 0;
    for (int p = 0; p < P; p++) {
        double *u = x.data + p * C, *v = x.data + P * C + p * C;
        const double sp = ldexp(1, p % 3 - 1);
        u[0] = sp; u[1] = sp / 2;
        v[0] = -sp / 2; v[1] = sp * (1 + 0x1p-20);
        const double a = (u[0] * u[0] + u[1] * u[1]) / C, b = (v[0] * v[0] + v[1] * v[1]) / C;
        const double c = (u[0] * v[0] + u[1] * v[1]) / C;
        ref += exp(-(a + b) / 2) * sinh(c) / P;
    }
    for (int f32 = 0; f32 < 2; f32++) {
        nk_array K = {0}, T = {0};
        nk_error err = {{0}};
        nk_status st = nk_test_kernel_path("w=1 b=0 conv(1) sin flatten dense", &x, 1, f32, &K, &T, NULL, &err);
        const double e = st == NK_OK ? fabs(K.data[1] - ref) / fabs(ref) : 1;
        printf("%s small c (f32 %d): K %.17g, reference %.17g, relative %.3g\n", isa, f32, st == NK_OK ? K.data[1] : 0, ref, e);
        CHECK(st == NK_OK && e <= (f32 ? 1e-5 : 1e-13), "%s sin at c ~ 1e-9 (f32 %d): relative error %.3g (%s)", isa, f32,
              e, err.msg);
        nk_array_free(&K);
        nk_array_free(&T);
    }
    nk_array_free(&x);
}

int main(void)
{
    for (int s = 0; s < 3; s++) {
        nk_plane_force_isa(isas[s]);
        if (strcmp(nk_plane_isa(), isas[s])) {
            printf("%s not supported here, skipped\n", isas[s]);
            continue;
        }
        test_exp(isas[s], 0);
        test_exp(isas[s], 1);
        test_networks(isas[s]);
        test_small_c(isas[s]);
    }
    nk_plane_force_isa(NULL);
    return nk_test_summary("test_expvec");
}
