/* test_kernel.c -- the kernels against closed forms and identities:
 * one-hidden-layer ReLU (arc-cosine) and erf (arcsine) kernels, the standard parameterization
 * by hand, 1x1 conv on a 1x1 image = dense, a conv(1) stack + flatten = the MLP kernel
 * averaged over pixels, NTK >= NNGP on the diagonal for ReLU nets, positive semi-definite
 * Gram matrices, Gauss-Hermite quadrature against closed forms (relu, erf, sin). */
#include "internal.h"
#include "nk_test.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PI 3.14159265358979323846

static unsigned long long rs = 0x9E3779B97F4A7C15ULL;
static nk_array random_array(int ndim, const size_t *shape) { return nk_test_random_array(ndim, shape, &rs); }

/* kernels of spec on x1 (and x2, or NULL for the Gram); returns status */
static nk_status kern(const char *spec, const nk_array *x1, const nk_array *x2, nk_array *K, nk_array *T)
{
    nk_arch *a = NULL;
    nk_plan *p = NULL;
    nk_error err = {{0}};
    nk_status st = nk_arch_parse(spec, NULL, &a, &err);
    if (st == NK_OK) st = nk_plan_create(a, x1->ndim - 1, x1->shape + 1, &p, &err);
    if (st == NK_OK) st = nk_kernel_matrix(p, x1, x2, NULL, K, T, &err);
    if (st != NK_OK) fprintf(stderr, "%s: %s\n", spec, err.msg);
    nk_plan_free(p);
    nk_arch_free(a);
    return st;
}

static double max_rel(const nk_array *a, const double *ref)
{
    double e = 0, m = 0;
    for (size_t i = 0; i < nk_array_size(a); i++) {
        e = fmax(e, fabs(a->data[i] - ref[i]));
        m = fmax(m, fabs(ref[i]));
    }
    return e / (m > 0 ? m : 1);
}

/* the inner products <x_i, x_j>, |x_i|^2, |x_j|^2 of two rows of an (N, D) array */
static void dots(const nk_array *x, size_t i, size_t j, double *xy, double *xx, double *yy)
{
    size_t D = x->shape[1];
    *xy = *xx = *yy = 0;
    for (size_t d = 0; d < D; d++) {
        *xy += x->data[i * D + d] * x->data[j * D + d];
        *xx += x->data[i * D + d] * x->data[i * D + d];
        *yy += x->data[j * D + d] * x->data[j * D + d];
    }
}

static void test_closed_forms(void)
{
    size_t n = 6, D = 5, sh[2] = {n, D};
    nk_array x = random_array(2, sh);
    double *ref_k = calloc(n * n, sizeof(double)), *ref_t = calloc(n * n, sizeof(double));
    /* Cho & Saul arc-cosine kernel of degree 1, NTK = K + K0 (pi - theta)/2pi */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double xy, xx, yy;
            dots(&x, i, j, &xy, &xx, &yy);
            double cs = fmax(-1, fmin(1, xy / sqrt(xx * yy))), th = acos(cs);
            ref_k[i * n + j] = sqrt(xx * yy) / D / (2 * PI) * (sin(th) + (PI - th) * cs);
            ref_t[i * n + j] = ref_k[i * n + j] + xy / D * (PI - th) / (2 * PI);
        }
    nk_array K = {0}, T = {0};
    CHECK(kern("dense relu dense", &x, NULL, &K, &T) == NK_OK, "relu mlp");
    CHECK(max_rel(&K, ref_k) < 1e-13, "relu NNGP vs arc-cosine: %.3g", max_rel(&K, ref_k));
    CHECK(max_rel(&T, ref_t) < 1e-13, "relu NTK vs arc-cosine: %.3g", max_rel(&T, ref_t));
    nk_array_free(&K); nk_array_free(&T);

    /* Williams' arcsine kernel with w = 1.5, b = 0.5: K1 = w^2 x.y/D + b^2 */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double xy, xx, yy;
            dots(&x, i, j, &xy, &xx, &yy);
            double k = 2.25 * xy / D + 0.25, a = 2.25 * xx / D + 0.25, b = 2.25 * yy / D + 0.25;
            double e = 2 / PI * asin(2 * k / sqrt((1 + 2 * a) * (1 + 2 * b)));
            double ed = 4 / PI / sqrt((1 + 2 * a) * (1 + 2 * b) - 4 * k * k);
            ref_k[i * n + j] = 2.25 * e + 0.25;
            ref_t[i * n + j] = ref_k[i * n + j] + 2.25 * k * ed;
        }
    CHECK(kern("w=1.5 b=0.5 dense erf dense", &x, NULL, &K, &T) == NK_OK, "erf mlp");
    CHECK(max_rel(&K, ref_k) < 1e-13, "erf NNGP vs arcsine: %.3g", max_rel(&K, ref_k));
    CHECK(max_rel(&T, ref_t) < 1e-13, "erf NTK vs arcsine: %.3g", max_rel(&T, ref_t));
    nk_array_free(&K); nk_array_free(&T);

    /* standard parameterization by hand (neural-tangents' Dense): widths D and 7 */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double xy, xx, yy;
            dots(&x, i, j, &xy, &xx, &yy);
            double w2 = 1.69, b2 = 0.01;
            double k1 = w2 * xy / D + b2, a = w2 * xx / D + b2, b = w2 * yy / D + b2;
            double t1 = D * (xy / D) + 1;
            double cs = fmax(-1, fmin(1, k1 / sqrt(a * b))), th = acos(cs);
            double k2 = sqrt(a * b) / (2 * PI) * (sin(th) + (PI - th) * cs);
            double t2 = t1 * (PI - th) / (2 * PI);
            ref_k[i * n + j] = w2 * k2 + b2;
            ref_t[i * n + j] = 7 * k2 + w2 * t2 + 1;
        }
    CHECK(kern("param=standard w=1.3 b=0.1 dense(7) relu dense", &x, NULL, &K, &T) == NK_OK, "standard");
    CHECK(max_rel(&K, ref_k) < 1e-13, "standard NNGP: %.3g", max_rel(&K, ref_k));
    CHECK(max_rel(&T, ref_t) < 1e-13, "standard NTK: %.3g", max_rel(&T, ref_t));
    nk_array_free(&K); nk_array_free(&T);
    free(ref_k); free(ref_t);
    nk_array_free(&x);
}

static void test_identities(void)
{
    /* a 1x1 conv on a 1x1 image is a dense layer */
    size_t n = 5, C = 4, sh_img[4] = {n, 1, 1, C}, sh_vec[2] = {n, C};
    nk_array img = random_array(4, sh_img), vec;
    nk_array_alloc(&vec, 2, sh_vec, NULL);
    memcpy(vec.data, img.data, n * C * sizeof(double));
    nk_array K1 = {0}, T1 = {0}, K2 = {0}, T2 = {0};
    CHECK(kern("w=1.2 b=0.3 [conv(1) relu]*3 conv(1) erf flatten dense", &img, NULL, &K1, &T1) == NK_OK, "conv 1x1");
    CHECK(kern("w=1.2 b=0.3 [dense relu]*3 dense erf dense", &vec, NULL, &K2, &T2) == NK_OK, "dense");
    CHECK(max_rel(&K1, K2.data) < 1e-14 && max_rel(&T1, T2.data) < 1e-14, "1x1 conv on 1x1 image != dense: %.3g %.3g",
          max_rel(&K1, K2.data), max_rel(&T1, T2.data));
    nk_array_free(&K1); nk_array_free(&T1); nk_array_free(&K2); nk_array_free(&T2);
    nk_array_free(&img); nk_array_free(&vec);

    /* conv(1) stack + flatten = the MLP kernel of each pixel's channel vector, averaged */
    size_t H = 3, W = 4, P = H * W, sh[4] = {n, H, W, C};
    nk_array x = random_array(4, sh), pix;
    nk_array_alloc(&pix, 2, sh_vec, NULL);
    double *acc_k = calloc(n * n, sizeof(double)), *acc_t = calloc(n * n, sizeof(double));
    for (size_t p = 0; p < P; p++) {
        for (size_t i = 0; i < n; i++) memcpy(pix.data + i * C, x.data + (i * P + p) * C, C * sizeof(double));
        CHECK(kern("b=0.2 dense relu dense relu", &pix, NULL, &K1, &T1) == NK_OK, "pixel mlp");
        for (size_t e = 0; e < n * n; e++) { acc_k[e] += K1.data[e] / P; acc_t[e] += T1.data[e] / P; }
        nk_array_free(&K1); nk_array_free(&T1);
    }
    /* The readout dense after flatten adds K (NTK) with w = 1, b = 0.2: K' = K + 0.04, T' = K' + T */
    for (size_t e = 0; e < n * n; e++) { acc_k[e] += 0.04; acc_t[e] += acc_k[e]; }
    CHECK(kern("b=0.2 conv(1) relu conv(1) relu flatten dense", &x, NULL, &K1, &T1) == NK_OK, "conv1 stack");
    CHECK(max_rel(&K1, acc_k) < 1e-13 && max_rel(&T1, acc_t) < 1e-13, "conv(1)+flatten != pixel-averaged MLP: %.3g %.3g",
          max_rel(&K1, acc_k), max_rel(&T1, acc_t));
    nk_array_free(&K1); nk_array_free(&T1);
    free(acc_k); free(acc_t);
    nk_array_free(&pix);

    /* NTK >= NNGP on the diagonal for ReLU nets; Gram matrices PSD and symmetric */
    const char *specs[] = {"[conv(3) relu]*3 gap dense", "[conv(3) relu]*3 flatten dense",
                           "b=0.1 res(conv(3) relu conv(3)) relu avgpool(2) conv(2,pad=valid) relu gap dense",
                           "w=1.41 [conv(3,stride=2) relu]*2 flatten dense relu dense"};
    for (size_t s = 0; s < sizeof specs / sizeof *specs; s++) {
        nk_array K = {0}, T = {0};
        size_t sh8[4] = {8, 6, 6, 2};
        nk_array x8 = random_array(4, sh8);
        CHECK(kern(specs[s], &x8, NULL, &K, &T) == NK_OK, "%s", specs[s]);
        if (!K.data) continue;
        int diag_ok = 1, sym_ok = 1;
        for (size_t i = 0; i < 8; i++) {
            if (T.data[i * 8 + i] < K.data[i * 8 + i]) diag_ok = 0;
            for (size_t j = 0; j < 8; j++)
                if (K.data[i * 8 + j] != K.data[j * 8 + i] || T.data[i * 8 + j] != T.data[j * 8 + i]) sym_ok = 0;
        }
        CHECK(diag_ok, "%s: NTK < NNGP on the diagonal", specs[s]);
        CHECK(sym_ok, "%s: Gram not symmetric", specs[s]);
        for (int m = 0; m < 2; m++) {
            double ev[8], *A = malloc(64 * sizeof(double));
            memcpy(A, m ? T.data : K.data, 64 * sizeof(double));
            LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', 8, A, 8, ev);
            CHECK(ev[0] >= -1e-12 * ev[7], "%s: %s has eigenvalue %.3g (max %.3g)", specs[s], m ? "NTK" : "NNGP", ev[0], ev[7]);
            free(A);
        }
        nk_array_free(&K); nk_array_free(&T); nk_array_free(&x8);
    }
    nk_array_free(&x);
}

static void test_quadrature(void)
{
    nk_act relu = {NK_ACT_RELU, 0, 0}, erf_ = {NK_ACT_ERF, 0, 0}, sn = {NK_ACT_SIN, 0, 0};
    nk_act ab = {NK_ACT_ABRELU, -0.3, 1.7};
    double cases[][3] = {{1, 1, 0.3}, {0.5, 2, -0.6}, {2, 3, 2.2}, {1, 1, 0.999}, {0.2, 0.1, 0}};
    double worst_erf = 0, worst_sin = 0, worst_relu = 0, worst_relu_d = 0;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        double a = cases[c][0], b = cases[c][1], k = cases[c][2], q, qd, e, ed;
        nk_act_dual(&erf_, a, b, k, 0, &e, &ed);
        nk_act_dual_quad(&erf_, a, b, k, 64, &q, &qd);
        worst_erf = fmax(worst_erf, fmax(fabs(q - e) / fmax(fabs(e), 1e-3), fabs(qd - ed) / ed));
        /* E[sin u sin v] = e^{-(a+b)/2} sinh c, E[cos u cos v] = e^{-(a+b)/2} cosh c */
        nk_act_dual_quad(&sn, a, b, k, 64, &q, &qd);
        e = exp(-(a + b) / 2) * sinh(k); ed = exp(-(a + b) / 2) * cosh(k);
        worst_sin = fmax(worst_sin, fmax(fabs(q - e) / fmax(fabs(e), 1e-3), fabs(qd - ed) / ed));
        for (int r = 0; r < 2; r++) {
            const nk_act *act = r ? &ab : &relu;
            nk_act_dual(act, a, b, k, 0, &e, &ed);
            nk_act_dual_quad(act, a, b, k, 256, &q, &qd);
            worst_relu = fmax(worst_relu, fabs(q - e) / e);
            /* relative to the derivative's scale (al^2 + be^2)/2: the value itself can be near 0 */
            worst_relu_d = fmax(worst_relu_d, fabs(qd - ed) / (r ? (0.09 + 2.89) / 2 : 0.5));
        }
    }
    /* erf is entire, so convergence is fast; variances up to 3 leave ~3e-8 at order 64 */
    CHECK(worst_erf < 1e-7, "erf quadrature vs arcsine: %.3g", worst_erf);
    CHECK(worst_sin < 1e-10, "sin quadrature vs closed form: %.3g", worst_sin);
    /* The ReLU kink limits tensor Gauss-Hermite to algebraic convergence: measured errors fall
     * as 1/n for E[phi phi] and ~1/sqrt(n) for the step E[phi' phi'] (n = 64..256). */
    CHECK(worst_relu < 1e-2, "relu quadrature vs arc-cosine: %.3g", worst_relu);
    CHECK(worst_relu_d < 3e-2, "relu' quadrature vs (pi - theta)/2pi: %.3g", worst_relu_d);
    printf("quadrature: erf %.2g, sin %.2g (order 64); relu/abrelu %.2g, derivative %.2g (order 256)\n",
           worst_erf, worst_sin, worst_relu, worst_relu_d);
    /* quadrature activations through the whole engine: sin MLP vs its closed form */
    size_t sh[2] = {4, 3};
    nk_array x = random_array(2, sh), K = {0}, T = {0};
    CHECK(kern("dense sin dense", &x, NULL, &K, &T) == NK_OK, "sin mlp");
    double err = 0;
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 4; j++) {
            double xy = 0, xx = 0, yy = 0;
            for (size_t d = 0; d < 3; d++) {
                xy += x.data[i * 3 + d] * x.data[j * 3 + d] / 3;
                xx += x.data[i * 3 + d] * x.data[i * 3 + d] / 3;
                yy += x.data[j * 3 + d] * x.data[j * 3 + d] / 3;
            }
            double ref = exp(-(xx + yy) / 2) * sinh(xy);
            double reft = ref + xy * exp(-(xx + yy) / 2) * cosh(xy);
            err = fmax(err, fmax(fabs(K.data[i * 4 + j] - ref), fabs(T.data[i * 4 + j] - reft)));
        }
    CHECK(err < 1e-10, "sin network vs closed form: %.3g", err);
    nk_array_free(&x); nk_array_free(&K); nk_array_free(&T);
}

/* The vectorized ReLU (polynomial arccos, every SIMD clone the CPU runs) against the libm
 * reference, on correlations across [-1, 1] including the ends and zero variances. */
static void test_fast_relu(void)
{
    enum { N = 4001 };
    static double a[3 * N], b[3 * N], k[N], t[N];
    double worst_k = 0, worst_t = 0;
    for (int i = 0; i < N; i++) {
        double rho = -1 + 2.0 * i / (N - 1);
        if (i % 500 == 7) rho = 1 - 1e-12 * i;   /* near +1, where arccos is ill-conditioned */
        a[i] = 0.3 + 0.001 * i;
        b[i] = i % 97 == 0 ? 0.0 : 2.0 - 0.0004 * i;
        k[i] = rho * sqrt(a[i] * b[i]);
        t[i] = 1.0 + 0.001 * i;
    }
    nk_self_roots(a, N);
    nk_self_roots(b, N);
    static double kr[N], tr[N], k0[N], t0[N];
    memcpy(k0, k, sizeof k0);
    memcpy(t0, t, sizeof t0);
    for (int i = 0; i < N; i++) { kr[i] = k[i]; tr[i] = t[i]; nk_relu_reference(&kr[i], &tr[i], a[i], b[i]); }
    nk_op op;
    memset(&op, 0, sizeof op);
    op.act.kind = NK_ACT_RELU;
    nk_act_pointwise(&op, 0, k, t, N, a, b);
    for (int i = 0; i < N; i++) {
        /* in units of the output's scale sqrt(ab): near rho = -1 the value itself vanishes as theta^3 */
        if (a[i] * b[i] > 0) worst_k = fmax(worst_k, fabs(k[i] - kr[i]) / sqrt(a[i] * b[i]));
        else worst_k = fmax(worst_k, fabs(k[i] - kr[i]));
        /* The factor (pi - theta)/2pi in absolute terms (it vanishes at rho = -1), against the
         * problem's own conditioning: a rounding of ~2e-16 in rho (or in ab - c^2) moves theta by
         * 2e-16 / sin(theta), so near |rho| = 1 neither path can do better than that. */
        if (a[i] * b[i] > 0) {
            double rho = k0[i] / sqrt(a[i] * b[i]), sn = sqrt(fmax(1 - rho * rho, 1e-300));
            double tol = 1e-14 + 4e-16 / sn / (2 * PI);
            double e = fabs(t[i] - tr[i]) / t0[i];
            worst_t = fmax(worst_t, e / tol);
        }
    }
    /* exact ends: rho = 1 gives theta = 0, so K' = sqrt(ab)/2 and T' = T/2 exactly */
    double kk = 2.0, tt = 3.0, va = 2.0;
    double self[3] = {va, sqrt(va), 1 / sqrt(va)};
    nk_act_pointwise(&op, 0, &kk, &tt, 1, self, self);
    /* theta must be exactly 0 (the NTK factor exactly 1/2); K' = sqrt(ab)/2 to rounding */
    CHECK(fabs(kk - 1.0) <= 4e-16 && tt == 1.5, "relu at rho = 1: K' %.17g T' %.17g (expected 1 and 1.5)", kk, tt);
    CHECK(worst_k < 1e-13, "fast relu NNGP vs libm, in units of sqrt(ab): %.3g", worst_k);
    CHECK(worst_t <= 1, "fast relu NTK factor vs libm: %.3g of the conditioning bound", worst_t);
    printf("fast relu vs libm: NNGP %.2g, NTK factor at %.2g of its conditioning bound\n", worst_k, worst_t);
}

/* The float32 ReLU of the plane engine (two sectors, a degree-6 arcsine) on a sweep of
 * correlations like test_fast_relu's (its points near +1 at float32's resolution, and points
 * near -1 and at rho = 1 exactly added), on every instruction set the machine runs, against libm
 * in double on the same float inputs.  Tolerances in float32's epsilon e = 2^-23: the NNGP within 4e in units of
 * sqrt(ab) (the polynomial alone is 1.8e-7 = 1.5e); the NTK factor within 4e plus the
 * conditioning bound 4e / sin(theta) / 2pi (one rounding of the correlation moves theta by
 * e / sin(theta)); and at rho = 1 exactly (a sample with itself) theta exactly 0. */
static void test_fast_relu32(void)
{
    enum { N = 4001 };
    static float a[3 * N], b[3 * N], k[N], t[N];
    static double kr[N], tr[N];
    const double e32 = 0x1p-23;
    const char *isas[3] = {"avx512", "avx2", "portable"};
    for (int s = 0; s < 3; s++) {
        nk_plane_force_isa(isas[s]);
        if (strcmp(nk_plane_isa(), isas[s])) {
            printf("fast relu float32: %s not supported, skipped\n", isas[s]);
            continue;
        }
        for (int i = 0; i < N; i++) {
            double rho = -1 + 2.0 * i / (N - 1);
            if (i % 500 == 7) rho = 1 - 1e-6 * i / N;   /* near +1 */
            if (i % 500 == 9) rho = -1 + 1e-6 * i / N;  /* near -1 */
            a[i] = (float)(0.3 + 0.001 * i);
            b[i] = i % 97 == 0 ? 0.0f : (float)(2.0 - 0.0004 * i);
            if (i % 250 == 3) b[i] = a[i];
            k[i] = (float)(rho * sqrt((double)a[i] * b[i]));
            if (i % 250 == 3 && i % 500 == 3) k[i] = a[i];   /* rho = 1 exactly */
            t[i] = (float)(1.0 + 0.001 * i);
            for (int m = 1; m < 3; m++) {
                const double r = sqrt((double)a[i]), q = sqrt((double)b[i]);
                a[m * N + i] = (float)(m == 1 ? r : 1 / r);
                b[m * N + i] = b[i] > 0 ? (float)(m == 1 ? q : 1 / q) : 0.0f;
            }
            kr[i] = k[i];
            tr[i] = t[i];
            nk_relu_reference(&kr[i], &tr[i], a[i], b[i]);
        }
        static float k0[N], t0[N];
        memcpy(k0, k, sizeof k0);
        memcpy(t0, t, sizeof t0);
        nk_relu_points32(k, t, N, a, b);
        double worst_k = 0, worst_t = 0;
        int exact = 1;
        for (int i = 0; i < N; i++) {
            const double ab = (double)a[i] * b[i];
            worst_k = fmax(worst_k, fabs(k[i] - kr[i]) / (ab > 0 ? sqrt(ab) : 1) / e32);
            if (ab > 0) {
                double rho = k0[i] / sqrt(ab), sn = sqrt(fmax(1 - rho * rho, 1e-300));
                double tol = 4 * e32 + 4 * e32 / sn / (2 * PI);
                worst_t = fmax(worst_t, fabs(t[i] - tr[i]) / t0[i] / tol);
            }
            /* theta = 0: T' = T/2 up to the two roundings of T (1/2pi) pi (theta ~ sqrt(e) if
             * ab - c^2 came out positive: ~1e-4) */
            if (k0[i] == a[i] && a[i] == b[i]) exact &= fabs(t[i] - t0[i] / 2.0) <= e32 * t0[i] / 2;
            t[i] = t0[i];
            k[i] = k0[i];
        }
        CHECK(exact, "fast relu float32 (%s): T' = T/2 at rho = 1 (theta = 0)", isas[s]);
        CHECK(worst_k <= 4, "fast relu float32 (%s): NNGP vs libm %.3g eps32 in units of sqrt(ab)", isas[s], worst_k);
        CHECK(worst_t <= 1, "fast relu float32 (%s): NTK factor at %.3g of its bound", isas[s], worst_t);
        printf("fast relu float32 (%s) vs libm: NNGP %.2g eps32 in units of sqrt(ab), NTK factor at %.2g of its "
               "bound\n",
               isas[s], worst_k, worst_t);
    }
    nk_plane_force_isa(NULL);
}

int main(void)
{
    test_fast_relu();
    test_fast_relu32();
    test_closed_forms();
    test_identities();
    test_quadrature();
    return nk_test_summary("test_kernel");
}
