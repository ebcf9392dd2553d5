/* calibrate.c -- measures the per-op costs of the time model (nk_costs in src/engine/plan.c)
 * and checks the model against other architectures.  `make calibrate`.
 *
 * Every time is the CPU time of one thread (CLOCK_PROCESS_CPUTIME_ID with nthreads = 1), so a
 * machine shared with other jobs perturbs it less than wall time would; each is the best of
 * three.  A constant is the difference of two architectures that differ only in what it
 * prices, divided by the units of work of the difference (entries x taps, entries, entries x
 * nodes^2), or of one architecture less the model's price of its other ops.  Prints the table for NK_COST_TABLE, then, for architectures not used to fit it,
 * the model's estimate (with the table compiled in) against the measurement. */
#include "nkern.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* the library's internal switch of the plane engine (src/engine/plan.c): 0 makes plans layer by
 * layer, so those costs are measured on the same architectures */
extern int nk_plane_enabled;

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static nk_array random_data(size_t n, int ndim, const size_t *shape, unsigned long long seed)
{
    size_t sh[4] = {n, 0, 0, 0};
    for (int i = 0; i < ndim; i++) sh[i + 1] = shape[i];
    nk_array a;
    nk_array_alloc(&a, ndim + 1, sh, NULL);
    for (size_t i = 0; i < nk_array_size(&a); i++) {
        seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
        double u = ((seed >> 11) + 0.5) / 9007199254740992.0;
        seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
        double v = (seed >> 11) / 9007199254740992.0;
        a.data[i] = sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
    }
    return a;
}

/* CPU seconds of an n1 x n2 cross matrix, its self passes included (best of 3); *estimate
 * receives the plan's estimate for the same matrix, *pairs the model's count of its work in
 * pairs: the estimate over the model's price of one pair, (T(2,2) - 2 T(1,1)) / 2 under
 * T(n1, n2) = n1 n2 pair + (n1 + n2) self (as `nkern arch` reads it), so a self pass weighs what
 * the model says it does (1/P of a pair for a full-covariance net) */
static double matrix_seconds(const char *spec, int ndim, const size_t *shape, size_t n1, size_t n2, int f32, double *estimate,
                             double *pairs)
{
    nk_arch *a;
    nk_plan *p;
    nk_error err;
    if (nk_arch_parse(spec, NULL, &a, &err) || nk_plan_create(a, ndim, shape, &p, &err)) {
        fprintf(stderr, "%s: %s\n", spec, err.msg);
        exit(1);
    }
    nk_array x1 = random_data(n1, ndim, shape, 1), x2 = random_data(n2, ndim, shape, 2);
    nk_kernel_opts o;
    nk_kernel_opts_default(&o);
    o.nthreads = 1;
    o.f32 = f32;
    double best = INFINITY;
    for (int r = 0; r < 3; r++) {
        nk_array K, T;
        double t0 = cpu_seconds();
        if (nk_kernel_matrix(p, &x1, &x2, &o, &K, &T, &err)) { fprintf(stderr, "%s: %s\n", spec, err.msg); exit(1); }
        double t = cpu_seconds() - t0;
        if (t < best) best = t;
        nk_array_free(&K);
        nk_array_free(&T);
    }
    if (estimate) *estimate = nk_plan_core_seconds(p, n1, n2, 1, f32, 0);
    if (pairs) {
        const double pair = (nk_plan_core_seconds(p, 2, 2, 1, f32, 0) - 2 * nk_plan_core_seconds(p, 1, 1, 1, f32, 0)) / 2;
        *pairs = nk_plan_core_seconds(p, n1, n2, 1, f32, 0) / pair;
    }
    nk_array_free(&x1);
    nk_array_free(&x2);
    nk_plan_free(p);
    nk_arch_free(a);
    return best;
}

/* CPU seconds per pair of an n1 x n2 cross matrix, its self passes counted as the model does */
static double per_pair(const char *spec, int ndim, const size_t *shape, size_t n1, size_t n2, int f32, double *estimate)
{
    double pairs;
    const double t = matrix_seconds(spec, ndim, shape, n1, n2, f32, estimate, &pairs);
    return t / pairs;
}

/* The engine's per-layer units on P = H x W positions, full mode: P^2 entries in P planes (one
 * position of the first sample against all of the second's) */
static double layer_units(double h, double w, double *planes)
{
    *planes = h * w;
    return h * w * h * w;
}

/* The torus path (stride-1 circular stacks read out by a flatten, src/engine/torus.c), per image
 * position and translation: a 3x3 conv and its ReLU from [conv(3,pad=circular) relu]*6 against
 * *2 (float64 and float32), the taps from conv(7) likewise, another closed form from erf against
 * relu, at 28x28x1 (the classify default's size), 64 x 64 cross pairs; out: tor_tap, tor_relu,
 * tor_closed, tor_f32 */
/* one layer LAYER of the torus path per image position: [LAYER]*6 against *2 */
static double torus_layer(const char *layer, int f32)
{
    const size_t img28[3] = {28, 28, 1};
    char spec[160];
    double t[2];
    for (int k = 0; k < 2; k++) {
        snprintf(spec, sizeof spec, "w=1.41421356 b=0.1 [%s]*%d flatten dense", layer, k ? 6 : 2);
        t[k] = per_pair(spec, 3, img28, 64, 64, f32, NULL);
    }
    return (t[1] - t[0]) / 4 / (28 * 28);
}

static void torus_costs(double out[4])
{
    const double l3[2] = {torus_layer("conv(3,pad=circular) relu", 0), torus_layer("conv(3,pad=circular) relu", 1)};
    const double l7 = torus_layer("conv(7,pad=circular) relu", 0), le = torus_layer("conv(3,pad=circular) erf", 0);
    out[0] = (l7 - l3[0]) / 40;
    out[1] = fmax(l3[0] - 9 * out[0], 0);   /* (the ReLU is cheap against the taps: noise can take it below 0) */
    out[2] = le - 9 * out[0];
    out[3] = l3[1] / l3[0];
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "torus")) {
        /* only the torus path's constants (the table's last four) */
        double tc[4];
        per_pair("[conv(3) relu]*2 gap dense", 3, (const size_t[3]){16, 16, 3}, 2, 2, 0, NULL); /* warm-up */
        torus_costs(tc);
        printf("tor_tap %.3g, tor_relu %.3g, tor_closed %.3g, tor_f32 %.3g\n", tc[0], tc[1], tc[2], tc[3]);
        return 0;
    }
    const size_t img8[3] = {8, 8, 3}, img6[3] = {6, 6, 3}, img16[3] = {16, 16, 3}, vec[1] = {64};
    const char *th = "w=1.41421356 b=0.1 ";
    char spec[160];
    /* plane engine: a 3x3 conv and its ReLU (one fused loop) per entry plus a per-plane overhead,
     * from the per-layer time ([conv(3) relu]*10 or *6 against *2) at 32x32, the bench's size (its
     * planes, 8 MiB a state, stream from memory) and at 6x6, where the planes' share is 28x
     * larger; float32 likewise */
    const size_t img32[3] = {32, 32, 3};
    double b2[2], b10[2], s2[2], s6[2];
    per_pair("[conv(3) relu]*2 gap dense", 3, img32, 2, 2, 0, NULL); /* warm-up: threads, pages, clocks */
    for (int f = 0; f < 2; f++) {
        b2[f] = per_pair("[conv(3) relu]*2 gap dense", 3, img32, 2, 2, f, NULL);
        b10[f] = per_pair("[conv(3) relu]*10 gap dense", 3, img32, 2, 2, f, NULL);
        s2[f] = per_pair("[conv(3) relu]*2 gap dense", 3, img6, 32, 32, f, NULL);
        s6[f] = per_pair("[conv(3) relu]*6 gap dense", 3, img6, 32, 32, f, NULL);
    }
    double e2 = per_pair("[conv(3) relu]*2 gap dense", 3, img16, 8, 8, 0, NULL);
    double r32, r16, r6, r8;
    const double u32 = layer_units(32, 32, &r32), u16 = layer_units(16, 16, &r16), u6 = layer_units(6, 6, &r6),
                 u8 = layer_units(8, 8, &r8);
    /* L = u conv + r plane at both sizes: Cramer's rule, per precision */
    double conv[2], plane[2];
    const double det = u32 * r6 - u6 * r32;
    for (int f = 0; f < 2; f++) {
        const double L32 = (b10[f] - b2[f]) / 8, L6 = (s6[f] - s2[f]) / 4;
        conv[f] = (L32 * r6 - L6 * r32) / det;
        plane[f] = (u32 * L6 - u6 * L32) / det;
    }
    const double eng_conv3 = conv[0], eng_plane = plane[0], eng_plane_f32 = plane[1], eng_f32 = conv[1] / conv[0];
    /* the diagonal mode (conv ... flatten: P variances per layer, a sample's self pass as dear as a
     * pair): per entry of a 3x3 conv and its ReLU, at 32x32 */
    double eng_diag[2];
    for (int f = 0; f < 2; f++) {
        const double units = 24.0 * 24 + 2 * 24;
        const double d2 = matrix_seconds("[conv(3) relu]*2 flatten dense", 3, img32, 24, 24, f, NULL, NULL);
        const double d10 = matrix_seconds("[conv(3) relu]*10 flatten dense", 3, img32, 24, 24, f, NULL, NULL);
        eng_diag[f] = (d10 - d2) / units / (8 * 32 * 32);
    }
    const double L16 = u16 * eng_conv3 + r16 * eng_plane;
    /* other windows: the generic loop, per tap, its ReLU included */
    double e6c5 = per_pair("[conv(5) relu]*6 gap dense", 3, img16, 4, 4, 0, NULL);
    double e2c5 = per_pair("[conv(5) relu]*2 gap dense", 3, img16, 4, 4, 0, NULL);
    const double eng_tap = ((e6c5 - e2c5) / 4 - r16 * eng_plane) / (25 * u16);
    /* closed forms above the ReLU: erf layers against ReLU layers */
    double e6 = per_pair("[conv(3) relu]*6 gap dense", 3, img16, 8, 8, 0, NULL);
    double e6erf = per_pair("[conv(3) erf]*6 gap dense", 3, img16, 8, 8, 0, NULL);
    const double eng_closed = (e6erf - e6) / (6 * u16);
    /* the Mehler series (tanh at the bench's w, b) at the bench's 32x32, where each sample's terms
     * stream from memory; its self pass (the Hermite coefficients at each position) from two
     * matrix sizes, T(n) = n^2 pair + 2n self for n = 1, 4; the conv's share is the model's */
    double tm[2][2][2]; /* [layers 1, 3][n 1, 4][f64, f32]: whole matrices */
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 2; k++)
            for (int f = 0; f < 2; f++) {
                snprintf(spec, sizeof spec, "%s[conv(3) tanh]*%d gap dense", th, d ? 3 : 1);
                tm[d][k][f] = matrix_seconds(spec, 3, img32, k ? 4 : 1, k ? 4 : 1, f, NULL, NULL);
            }
    double pair2[2], self2 = 0; /* two layers' worth */
    for (int f = 0; f < 2; f++) {
        const double t1 = tm[1][0][f] - tm[0][0][f], t4 = tm[1][1][f] - tm[0][1][f];
        pair2[f] = (t4 - 4 * t1) / 12;
        if (!f) self2 = (t1 - pair2[0]) / 2;
    }
    const double eng_mehler = (pair2[0] / 2 - u32 * eng_conv3 - r32 * eng_plane) / u32;
    const double eng_mehler_f32 = (pair2[1] / 2 - eng_f32 * u32 * eng_conv3 - r32 * eng_plane_f32) / u32;
    const double mehler_self = self2 / 2 / (32 * 32);
    /* a 2x2 average pool between levels, per entry of its input: [conv(3) relu]*2 avgpool(2)
     * [conv(3) relu]*2 on 16x16 against *2 alone, less the model's two 8x8 layers */
    double ep = per_pair("[conv(3) relu]*2 avgpool(2) [conv(3) relu]*2 gap dense", 3, img16, 8, 8, 0, NULL);
    const double eng_pool = (ep - e2 - 2 * (u8 * eng_conv3 + r8 * eng_plane)) / u16;
    /* a residual block's save and sum, per entry of each: the same five convs and ReLUs */
    double eres = per_pair("conv(3) relu [res(conv(3) relu conv(3)) relu]*2 gap dense", 3, img16, 8, 8, 0, NULL);
    const double eng_res = (eres - (e2 + 3 * L16)) / (4 * u16);
    /* a Gauss-Hermite dual, per entry and node pair */
    double e2q = per_pair("quad=32 [conv(3) tanh]*2 gap dense", 3, img8, 2, 2, 0, NULL);
    double e2erf = per_pair("[conv(3) erf]*2 gap dense", 3, img8, 2, 2, 0, NULL);
    const double quad_node = (e2q - e2erf) / (2 * u8 * 32.0 * 32.0);
    /* layer by layer: the plane engine switched off (the library's internal switch) */
    nk_plane_enabled = 0;
    double l2 = per_pair("[conv(3) relu]*2 gap dense", 3, img8, 4, 4, 0, NULL);
    double l6 = per_pair("[conv(3) relu]*6 gap dense", 3, img8, 4, 4, 0, NULL);
    double l6c5 = per_pair("[conv(5) relu]*6 gap dense", 3, img8, 4, 4, 0, NULL);
    double l6erf = per_pair("[conv(3) erf]*6 gap dense", 3, img8, 4, 4, 0, NULL);
    nk_plane_enabled = 1;
    const double lbl_tap = (l6c5 - l6) / (6 * 16 * u8);
    const double lbl_relu = (l6 - l2) / (4 * u8) - 9 * lbl_tap;
    const double lbl_closed = (l6erf - l6) / (6 * u8) + lbl_relu;
    /* MLP tiles: 256 x 256 pairs */
    double m2 = per_pair("[dense relu]*2 dense", 1, vec, 256, 256, 0, NULL);
    double m10 = per_pair("[dense relu]*10 dense", 1, vec, 256, 256, 0, NULL);
    double m10erf = per_pair("[dense erf]*10 dense", 1, vec, 256, 256, 0, NULL);
    snprintf(spec, sizeof spec, "%s[dense tanh]*2 dense", th);
    double m2tanh = per_pair(spec, 1, vec, 256, 256, 0, NULL);
    snprintf(spec, sizeof spec, "%s[dense tanh]*6 dense", th);
    double m6tanh = per_pair(spec, 1, vec, 256, 256, 0, NULL);
    const double mlp_mehler = (m6tanh - m2tanh) / 4;
    const double mlp_relu = (m10 - m2) / 8;
    const double mlp_closed = (m10erf - m10) / 10 + mlp_relu;
    double tc[4];
    torus_costs(tc);
    printf("/* gemm, eng_tap, eng_conv3, eng_plane, eng_plane_f32, eng_diag, eng_diag_f32, eng_closed, eng_mehler,\n"
           " * eng_mehler_f32, mehler_self, eng_f32, eng_pool, eng_res, lbl_tap, lbl_relu, lbl_closed, mlp_relu, mlp_closed, mlp_mehler, quad_node,\n"
           " * tor_tap, tor_relu, tor_closed, tor_f32 */\n");
    printf("#define NK_COST_TABLE {%.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g}\n",
           2e-11, eng_tap, eng_conv3, eng_plane, eng_plane_f32, eng_diag[0], eng_diag[1], eng_closed, eng_mehler, eng_mehler_f32, mehler_self, eng_f32, eng_pool, eng_res,
           lbl_tap, lbl_relu, lbl_closed, mlp_relu, mlp_closed, mlp_mehler, quad_node, tc[0], tc[1], tc[2], tc[3]);
    fflush(stdout);

    /* validation: make bench's rows at their size (few pairs: each entry counts) and architectures
     * not used above; estimate (the compiled-in table) against measured, seconds of the whole
     * matrix (self passes included) per cross entry */
#define MYRTLE5 "[conv(3) relu]*2 avgpool(2) conv(3) relu avgpool(2) conv(3) relu [avgpool(2)]*3 flatten dense"
    static const struct { const char *spec; int ndim; size_t shape[3]; size_t n; int f32; } v[] = {
        {"w=1.41421356 b=0.1 [conv(3) relu]*21 gap dense", 3, {32, 32, 3}, 1, 0},
        {"w=1.41421356 b=0.1 [conv(3) relu]*21 gap dense", 3, {32, 32, 3}, 1, 1},
        {"w=1.41421356 b=0.1 [conv(3) relu]*21 flatten dense", 3, {32, 32, 3}, 24, 0},
        {"w=1.41421356 b=0.1 [conv(3) relu]*21 flatten dense", 3, {32, 32, 3}, 24, 1},
        {"w=1.41421356 " MYRTLE5, 3, {32, 32, 3}, 2, 0},
        {"w=1.41421356 " MYRTLE5, 3, {32, 32, 3}, 2, 1},
        {"w=1.41421356 [conv(3) relu]*3 avgpool(2) [conv(3) relu]*3 avgpool(2) [conv(3) relu]*3 [avgpool(2)]*3 flatten dense", 3, {32, 32, 3}, 2, 0},
        {"w=1.41421356 [conv(3) relu]*3 avgpool(2) [conv(3) relu]*3 avgpool(2) [conv(3) relu]*3 [avgpool(2)]*3 flatten dense", 3, {32, 32, 3}, 2, 1},
        {"w=1.41421356 b=0.1 [conv(3) relu]*2 conv(3,stride=2) relu [conv(3) relu]*2 conv(3,stride=2) relu [conv(3) relu]*2 gap dense", 3, {32, 32, 3}, 2, 0},
        {"w=1.41421356 b=0.1 [conv(3) relu]*2 conv(3,stride=2) relu [conv(3) relu]*2 conv(3,stride=2) relu [conv(3) relu]*2 gap dense", 3, {32, 32, 3}, 2, 1},
        {"w=1.41421356 b=0.1 conv(3) relu [res(conv(3) relu conv(3)) relu]*4 gap dense", 3, {32, 32, 3}, 1, 0},
        {"w=1.41421356 b=0.1 conv(3) relu [res(conv(3) relu conv(3)) relu]*4 gap dense", 3, {32, 32, 3}, 1, 1},
        {"w=1.41421356 b=0.1 [conv(3) gelu]*21 gap dense", 3, {32, 32, 3}, 1, 0},
        {"w=1.41421356 b=0.1 [conv(3) gelu]*21 gap dense", 3, {32, 32, 3}, 1, 1},
        {"w=1.41421356 b=0.1 [conv(3) tanh]*21 gap dense", 3, {32, 32, 3}, 2, 0},
        {"w=1.41421356 b=0.1 [conv(3) tanh]*21 gap dense", 3, {32, 32, 3}, 2, 1},
        {"avgpool(2) myrtle5", 3, {28, 28, 1}, 4, 0},
        {"avgpool(2) myrtle5", 3, {28, 28, 1}, 4, 1},
        {"w=1.41421356 b=0.1 [conv(3) erf]*5 gap dense", 3, {16, 16, 3}, 2, 0},
        {"w=1.41421356 b=0.1 [conv(3) sin]*5 gap dense", 3, {16, 16, 3}, 2, 0},
        {"w=0.5 [conv(3) exp]*3 gap dense", 3, {16, 16, 3}, 2, 0},
        {"w=1.41 b=0.1 [conv(3) relu]*5 gap dense", 3, {12, 12, 1}, 4, 0},
        {"[conv(3) relu]*10 gap dense", 3, {28, 28, 1}, 1, 0},
        {"[conv(3) tanh]*2 gap dense", 3, {6, 6, 1}, 2, 0},
        {"conv(3,stride=2) relu conv(3) relu avgpool(2) gap dense", 3, {16, 16, 2}, 4, 0},
        {"w=1.5 b=0.1 [dense tanh]*5 dense", 2, {784, 0, 0}, 256, 0},
        {"[dense relu]*10 dense", 2, {784, 0, 0}, 512, 0},
        {"w=1.41 b=0.1 [conv(3,pad=circular) relu]*4 flatten dense", 3, {28, 28, 1}, 64, 0},
        {"w=1.41 b=0.1 [conv(3,pad=circular) relu]*4 flatten dense", 3, {28, 28, 1}, 64, 1},
    };
    printf("\n%-58s %5s %12s %12s %7s\n", "architecture (input, pairs n x n)", "prec", "estimate s", "measured s", "ratio");
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        size_t sh[3] = {v[i].shape[0], v[i].shape[1], v[i].shape[2]};
        int nd = v[i].ndim == 2 ? 1 : v[i].ndim;
        double est, got = matrix_seconds(v[i].spec, nd, sh, v[i].n, v[i].n, v[i].f32, &est, NULL);
        est /= (double)v[i].n * v[i].n;
        got /= (double)v[i].n * v[i].n;
        char name[256];
        snprintf(name, sizeof name, "%s (%zux%zux%zu, %zu)", v[i].spec, sh[0], nd > 1 ? sh[1] : 1, nd > 2 ? sh[2] : 1, v[i].n);
        printf("%-58s %5s %12.3g %12.3g %7.2f\n", name, v[i].f32 ? "f32" : "f64", est, got, est / got);
        fflush(stdout);
    }
    return 0;
}
