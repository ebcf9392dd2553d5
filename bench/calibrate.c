/* calibrate.c -- measures the per-op costs of the time model (nk_costs in src/engine/plan.c)
 * and checks the model against other architectures.  `make calibrate`.
 *
 * Every time is the CPU time of one thread (CLOCK_PROCESS_CPUTIME_ID with nthreads = 1), so a
 * machine shared with other jobs perturbs it less than wall time would; each is the best of
 * three.  A constant is the difference of two architectures that differ only in what it
 * prices, divided by the units of work of the difference (entries x taps, entries, entries x
 * nodes^2).  Prints the table for NK_COST_TABLE, then, for architectures not used to fit it,
 * the model's estimate (with the table compiled in) against the measurement. */
#include "nkern.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* CPU seconds per pair of an n1 x n2 cross matrix (best of 3); *plan_out receives the plan's
 * estimate for the same pairs (per pair) */
static double per_pair(const char *spec, int ndim, const size_t *shape, size_t n1, size_t n2, int f32, double *estimate)
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
    /* the self passes of n1 + n2 samples cost about a pair each, as the model assumes */
    if (estimate) *estimate = nk_plan_core_seconds(p, n1, n2, 1, f32) / ((double)n1 * n2 + n1 + n2);
    nk_array_free(&x1);
    nk_array_free(&x2);
    nk_plan_free(p);
    nk_arch_free(a);
    return best / ((double)n1 * n2 + n1 + n2);
}

int main(void)
{
    const size_t img[3] = {8, 8, 3}, big[3] = {16, 16, 3}, vec[1] = {64};
    const double P2 = 64.0 * 64.0;  /* entries of a full 8x8 covariance */
    const double S2 = 64.0 * 64.0;  /* after conv(3,stride=2) on 16x16: 8x8 again */
    /* plane engine, float64: conv(3) + relu per layer, the tap from conv(5) against conv(3) */
    double e2 = per_pair("[conv(3) relu]*2 gap dense", 3, img, 6, 6, 0, NULL);
    double e8 = per_pair("[conv(3) relu]*8 gap dense", 3, img, 6, 6, 0, NULL);
    double e8f = per_pair("[conv(3) relu]*8 gap dense", 3, img, 6, 6, 1, NULL);
    double e8c5 = per_pair("[conv(5) relu]*8 gap dense", 3, img, 6, 6, 0, NULL);
    double e8erf = per_pair("[conv(3) erf]*8 gap dense", 3, img, 6, 6, 0, NULL);
    double e2q = per_pair("quad=32 [conv(3) tanh]*2 gap dense", 3, img, 2, 2, 0, NULL);
    double e2erf = per_pair("[conv(3) erf]*2 gap dense", 3, img, 6, 6, 0, NULL);
    /* the 3x3 conv and its ReLU are one fused loop; other windows run a generic one, priced per
     * tap with the ReLU included */
    double eng_conv3 = (e8 - e2) / (6 * P2);
    double base = e2 - 2 * eng_conv3 * P2; /* per pair: input, readout, self passes */
    double eng_tap = (e8c5 - base) / (8 * 25 * P2);
    double eng_closed = (e8erf - e8) / (8 * P2);
    double eng_f32 = (e8f - e2) / (e8 - e2) > 0 ? e8f / e8 : 0.5;
    double quad_node = (e2q - e2erf) / (2 * P2 * 32.0 * 32.0);
    /* layer by layer: a stride-2 conv first keeps the plane engine out */
    double l2 = per_pair("conv(3,stride=2) [conv(3) relu]*2 gap dense", 3, big, 4, 4, 0, NULL);
    double l6 = per_pair("conv(3,stride=2) [conv(3) relu]*6 gap dense", 3, big, 4, 4, 0, NULL);
    double l6c5 = per_pair("conv(3,stride=2) [conv(5) relu]*6 gap dense", 3, big, 4, 4, 0, NULL);
    double l6erf = per_pair("conv(3,stride=2) [conv(3) erf]*6 gap dense", 3, big, 4, 4, 0, NULL);
    double lbl_tap = (l6c5 - l6) / (6 * 16 * S2);
    double lbl_relu = (l6 - l2) / (4 * S2) - 9 * lbl_tap;
    double lbl_closed = (l6erf - l6) / (6 * S2) + lbl_relu;
    /* MLP tiles: 256 x 256 pairs */
    double m2 = per_pair("[dense relu]*2 dense", 1, vec, 256, 256, 0, NULL);
    double m10 = per_pair("[dense relu]*10 dense", 1, vec, 256, 256, 0, NULL);
    double m10erf = per_pair("[dense erf]*10 dense", 1, vec, 256, 256, 0, NULL);
    double mlp_relu = (m10 - m2) / 8;
    double mlp_closed = (m10erf - m10) / 10 + mlp_relu;
    printf("/* gemm, eng_tap, eng_conv3, eng_closed, eng_f32, lbl_tap, lbl_relu, lbl_closed, mlp_relu, mlp_closed, quad_node */\n");
    printf("#define NK_COST_TABLE {%.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g, %.3g}\n", 2e-11, eng_tap,
           eng_conv3, eng_closed, eng_f32, lbl_tap, lbl_relu, lbl_closed, mlp_relu, mlp_closed, quad_node);

    /* validation: architectures not used above, estimate (the compiled-in table) vs measured */
    static const struct { const char *spec; int ndim; size_t shape[3]; size_t n; int f32; } v[] = {
        {"w=1.41 b=0.1 [conv(3) relu]*5 gap dense", 3, {12, 12, 1}, 4, 0},
        {"w=1.41 b=0.1 [conv(3) relu]*5 gap dense", 3, {12, 12, 1}, 4, 1},
        {"[conv(3) relu]*10 flatten dense", 3, {16, 16, 3}, 16, 0},
        {"[conv(3) erf]*4 gap dense", 3, {10, 10, 1}, 4, 0},
        {"[conv(3) tanh]*2 gap dense", 3, {6, 6, 1}, 2, 0},
        {"avgpool(2) [conv(3) relu]*3 gap dense", 3, {16, 16, 1}, 4, 0},
        {"conv(3,stride=2) relu conv(3) relu avgpool(2) gap dense", 3, {16, 16, 2}, 4, 0},
        {"[dense relu]*5 dense", 2, {784, 0, 0}, 512, 0},
        {"[dense tanh]*2 dense", 1, {32, 0, 0}, 24, 0},
        {"res(conv(3) relu conv(3)) relu gap dense", 3, {8, 8, 2}, 4, 0},
    };
    printf("\n%-58s %5s %12s %12s %7s\n", "architecture (input, pairs n x n)", "prec", "estimate s", "measured s", "ratio");
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        size_t sh[3] = {v[i].shape[0], v[i].shape[1], v[i].shape[2]};
        int nd = v[i].ndim == 2 ? 1 : v[i].ndim;
        double est, got = per_pair(v[i].spec, nd, sh, v[i].n, v[i].n, v[i].f32, &est);
        char name[128];
        snprintf(name, sizeof name, "%s (%zux%zux%zu, %zu)", v[i].spec, sh[0], nd > 1 ? sh[1] : 1, nd > 2 ? sh[2] : 1, v[i].n);
        printf("%-58s %5s %12.3g %12.3g %7.2f\n", name, v[i].f32 ? "f32" : "f64", est, got, est / got);
    }
    return 0;
}
