/* bench.c -- nkern's speed benchmarks: ms per kernel entry for the architectures of the speed
 * issue, the fraction of the machine's limits achieved, scaling with depth, image size and
 * threads.  Prints a table and writes JSON lines to the file given as argv[1].
 * Timings are wall-clock medians of repeated runs of nk_kernel_matrix, in one process. */
#include "nkern.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PEAK_FLOPS 250e9   /* float64 FMA peak of the 2-core machine (issue #4) */
#define DGEMM_FLOPS 200e9  /* measured dgemm on 2 cores (issue #4) */
#define BANDWIDTH 70e9     /* bytes/s */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static unsigned long long rs = 12345;
static double gauss(void)
{
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    double u = ((rs >> 11) + 0.5) / 9007199254740992.0;
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    double v = (rs >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static nk_array random_data(int ndim, const size_t *shape)
{
    nk_array a;
    if (nk_array_alloc(&a, ndim, shape, NULL) != NK_OK) { fprintf(stderr, "bench: out of memory\n"); exit(1); }
    for (size_t i = 0; i < nk_array_size(&a); i++) a.data[i] = gauss();
    return a;
}

typedef struct {
    double ms_per_entry, pair_flops, entries, seconds;
} result;

/* Time the kernel of spec on n1 x n2 samples (n2 = 0: symmetric Gram), best of reps. */
static int run(const char *spec, int ndim, const size_t *in_shape, size_t n1, size_t n2, int threads, int reps,
               result *r)
{
    nk_arch *a = NULL;
    nk_plan *p = NULL;
    nk_error err = {{0}};
    if (nk_arch_parse(spec, NULL, &a, &err) || nk_plan_create(a, ndim, in_shape, &p, &err)) {
        fprintf(stderr, "bench: %s: %s\n", spec, err.msg);
        return 1;
    }
    size_t sh[4] = {n1};
    for (int i = 0; i < ndim; i++) sh[i + 1] = in_shape[i];
    nk_array x1 = random_data(ndim + 1, sh), x2 = {0};
    if (n2) { sh[0] = n2; x2 = random_data(ndim + 1, sh); }
    nk_kernel_opts o;
    nk_kernel_opts_default(&o);
    o.nthreads = threads;
    double best = 1e300;
    for (int k = 0; k < reps; k++) {
        nk_array K = {0}, T = {0};
        double t0 = now();
        nk_status st = nk_kernel_matrix(p, &x1, n2 ? &x2 : NULL, &o, &K, &T, &err);
        double dt = now() - t0;
        nk_array_free(&K); nk_array_free(&T);
        if (st) { fprintf(stderr, "bench: %s: %s\n", spec, err.msg); return 1; }
        if (dt < best) best = dt;
    }
    nk_cost c;
    nk_plan_cost(p, n1, n2, threads, &c);
    r->entries = n2 ? (double)n1 * n2 : (double)n1 * (n1 + 1) / 2;
    r->seconds = best;
    r->ms_per_entry = 1e3 * best / r->entries;
    r->pair_flops = c.pair_flops;
    nk_array_free(&x1); nk_array_free(&x2);
    nk_plan_free(p);
    nk_arch_free(a);
    return 0;
}

static FILE *json;

static void emit(const char *name, const char *spec, const char *input, int threads, const result *r,
                 double fraction, const char *limit)
{
    printf("%-34s %-9s %2d  %12.4f  %10.3g  %6.1f%% of %s\n", name, input, threads, r->ms_per_entry,
           r->pair_flops, 100 * fraction, limit);
    fprintf(json, "{\"name\": \"%s\", \"arch\": \"%s\", \"input\": \"%s\", \"precision\": \"float64\", "
                  "\"threads\": %d, \"ms_per_entry\": %.6g, \"entries\": %.0f, \"seconds\": %.4g, "
                  "\"flops_per_entry\": %.4g, \"fraction_of_limit\": %.4g, \"limit\": \"%s\"}\n",
            name, spec, input, threads, r->ms_per_entry, r->entries, r->seconds, r->pair_flops, fraction, limit);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: bench OUT.jsonl [quick]\n"); return 2; }
    json = fopen(argv[1], "w");
    if (!json) { perror(argv[1]); return 1; }
    int quick = argc > 2;
    printf("OpenBLAS core: %s; peak %.0f GFLOP/s, dgemm %.0f GFLOP/s, %.0f GB/s assumed (2 cores)\n",
           openblas_get_corename(), PEAK_FLOPS / 1e9, DGEMM_FLOPS / 1e9, BANDWIDTH / 1e9);
    printf("%-34s %-9s %2s  %12s  %10s  %s\n", "benchmark", "input", "th", "ms/entry", "flops/entry", "achieved");
    size_t c32[3] = {32, 32, 3}, c16[3] = {16, 16, 3}, f28[3] = {28, 28, 1}, mlp[1] = {784};
    result r;
    const char *gap21 = "w=1.41421356 b=0.1 [conv(3) relu]*21 gap dense";
    const char *flat21 = "w=1.41421356 b=0.1 [conv(3) relu]*21 flatten dense";
    /* the three targets */
    if (!run(gap21, 3, c32, quick ? 2 : 4, quick ? 2 : 4, 2, 1, &r))
        emit("cnn-gap-21", gap21, "32x32x3", 2, &r, r.pair_flops / (r.ms_per_entry * 1e-3) / PEAK_FLOPS, "fp64 peak");
    if (!run(flat21, 3, c32, quick ? 32 : 128, quick ? 32 : 128, 2, 2, &r))
        emit("cnn-flatten-21", flat21, "32x32x3", 2, &r, r.pair_flops / (r.ms_per_entry * 1e-3) / PEAK_FLOPS, "fp64 peak");
    {
        const char *spec = "w=1.41421356 b=0.1 [dense relu]*10 dense";
        size_t n = quick ? 2000 : 10000;
        if (!run(spec, 1, mlp, n, 0, 2, 1, &r)) {
            /* bound: the first GEMM at dgemm speed (symmetric: half) plus one pass of memory over
             * the NNGP and NTK matrices per layer (read and write, 8 bytes each) */
            double gemm = 2.0 * n * n * 784 / DGEMM_FLOPS;
            double mem = 11 * 2 * 2 * 8.0 * n * n / 2 / BANDWIDTH;
            char in[32];
            snprintf(in, sizeof in, "%zux784", n);
            emit("mlp-10", spec, in, 2, &r, (gemm + mem) / r.seconds, "GEMM + memory bound");
        }
    }
    /* scaling: depth, image size, threads */
    const int depths[] = {5, 10, 21};
    for (int d = 0; d < 3; d++) {
        char spec[128], name[64];
        snprintf(spec, sizeof spec, "w=1.41421356 b=0.1 [conv(3) relu]*%d gap dense", depths[d]);
        snprintf(name, sizeof name, "cnn-gap-depth-%d", depths[d]);
        if (!run(spec, 3, c16, 4, 4, 2, 1, &r))
            emit(name, spec, "16x16x3", 2, &r, r.pair_flops / (r.ms_per_entry * 1e-3) / PEAK_FLOPS, "fp64 peak");
        snprintf(spec, sizeof spec, "w=1.41421356 b=0.1 [conv(3) relu]*%d flatten dense", depths[d]);
        snprintf(name, sizeof name, "cnn-flatten-depth-%d", depths[d]);
        if (!run(spec, 3, c32, 64, 64, 2, 1, &r))
            emit(name, spec, "32x32x3", 2, &r, r.pair_flops / (r.ms_per_entry * 1e-3) / PEAK_FLOPS, "fp64 peak");
    }
    for (int th = 1; th <= 2; th++) {
        char name[64];
        const char *spec = "w=1.41421356 b=0.1 [conv(3) relu]*10 gap dense";
        snprintf(name, sizeof name, "cnn-gap-10-threads-%d", th);
        if (!run(spec, 3, f28, 2, 2, th, 1, &r))
            emit(name, spec, "28x28x1", th, &r, r.pair_flops / (r.ms_per_entry * 1e-3) / (PEAK_FLOPS / 2 * th), "fp64 peak");
    }
    fclose(json);
    return 0;
}
