/* fastmath.h -- a branchless arccos that compilers vectorize, accurate to ~1 ulp in asin.
 *
 * asin(s) = s * g(s^2) on s in [0, 1/2], with g(t) = asin(sqrt t)/sqrt t written as a degree-14
 * polynomial in u = 4t: the Chebyshev interpolant on [0, 1/4] (g is analytic there, its branch
 * point is at t = 1), converted to monomials.  Measured against libm's asin on 400,001 points:
 * max relative error 4.4e-16.  For |x| > 1/2, asin|x| = pi/2 - 2 asin(sqrt((1 - |x|)/2)), which
 * also gives acos(+-1) exactly (0 and pi) -- the value a sample paired with itself needs. */
#ifndef NK_FASTMATH_H
#define NK_FASTMATH_H
#include <math.h>

#define NK_PI 3.14159265358979323846
#define NK_PI_2 1.57079632679489661923

/* Estrin's scheme: the same polynomial with a dependency chain of depth ~5 instead of 14,
 * so SIMD lanes are not bound by the latency of 14 sequential multiply-adds. */
static inline double nk_asin_core(double t)
{
    static const double c[15] = {
        1.0, 0.041666666666672042, 0.0046874999998641502, 0.00069754464517452906,
        0.00011867943656156119, 2.1848145281969125e-05, 4.2344498551304377e-06,
        8.6066467188117699e-07, 1.5364595102728185e-07, 7.9616162622443652e-08,
        -4.6833323361640969e-08, 4.9886892678037924e-08, -2.6975365511741631e-08,
        9.141148897956773e-09, -1.2929495952659248e-09};
    const double u = 4.0 * t, u2 = u * u, u4 = u2 * u2, u8 = u4 * u4;
    const double p01 = c[0] + c[1] * u, p23 = c[2] + c[3] * u, p45 = c[4] + c[5] * u;
    const double p67 = c[6] + c[7] * u, p89 = c[8] + c[9] * u, p1011 = c[10] + c[11] * u;
    const double p1213 = c[12] + c[13] * u;
    const double q0 = p01 + p23 * u2, q1 = p45 + p67 * u2, q2 = p89 + p1011 * u2, q3 = p1213 + c[14] * u2;
    return (q0 + q1 * u4) + (q2 + q3 * u4) * u8;
}

static inline double nk_acos_fast(double x)
{
    const double ax = fabs(x);
    const int big = ax > 0.5;
    const double t = big ? 0.5 * (1.0 - ax) : ax * ax;
    const double s = big ? sqrt(t) : ax;
    const double a = s * nk_asin_core(t);
    const double asin_ax = big ? NK_PI_2 - 2.0 * a : a;
    return x < 0 ? NK_PI_2 + asin_ax : NK_PI_2 - asin_ax;
}

/* asin(sqrt t)/sqrt t on t in [0, 1/2], degree 21 in u = 2t (Chebyshev interpolant converted to
 * monomials and evaluated as below; max relative error of sqrt(t) * this against libm's asin:
 * 1.0e-15 on 400,001 points).  With it, arccos needs no square root when sin and cos are both known. */
static inline double nk_asin_wide(double t)
{
    static const double c[22] = {
        1.0000000000000007, 0.083333333333021564, 0.018750000035243911, 0.0055803554415567204,
        0.0018989166769817949, 0.00069837479969161868, 0.00027977372685362176, 3.7952213784681098e-05,
        0.00048226346618678354, -0.0020327722899257535, 0.0074884281990697408, -0.021410216033059357,
        0.0484460024261677, -0.086799839789164779, 0.12292859108788894, -0.13667160816401508,
        0.11776817045428652, -0.076988954900242074, 0.036878447325166354, -0.012199988283220772,
        0.0024895312639175247, -0.00023602645059942647};
    const double u = 2.0 * t, u2 = u * u, u4 = u2 * u2, u8 = u4 * u4, u16 = u8 * u8;
    double p[11];
    for (int i = 0; i < 11; i++) p[i] = c[2 * i] + c[2 * i + 1] * u;
    const double q0 = p[0] + p[1] * u2, q1 = p[2] + p[3] * u2, q2 = p[4] + p[5] * u2;
    const double q3 = p[6] + p[7] * u2, q4 = p[8] + p[9] * u2, q5 = p[10];
    const double r0 = q0 + q1 * u4, r1 = q2 + q3 * u4, r2 = q4 + q5 * u4;
    return (r0 + r1 * u8) + r2 * u16;
}
#endif
