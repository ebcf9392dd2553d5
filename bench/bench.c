/* bench.c -- nkern's speed benchmarks: ms per kernel entry for the architectures of the speed
 * issue, in float64 and float32, the float32 error against float64, the fraction of the
 * machine's limits achieved, and scaling with depth, image size and threads.  Prints a table and
 * writes JSON lines to the file given as argv[1].  Timings are wall-clock bests of repeated runs
 * of nk_kernel_matrix, in one process.  Entries are cross pairs (x1 against x2), so every entry
 * is a full pair; the samples' own passes are included in the time. */
#include "nkern.h"

#include <cblas.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The machine's limits, measured at the start of the run (machine_limits): the float64 FMA
 * peak of all the threads together (float32: twice), dgemm, memory bandwidth.  The issue's
 * figures for its machine (250 GFLOP/s, 200 GFLOP/s, 70 GB/s) are printed beside them. */
static double peak_flops, dgemm_flops, bandwidth;
static const char *peak_isa = "scalar";

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
    double f32_err;        /* float32 runs: max relative error of NNGP and NTK against float64 */
} result;

/* Time the kernel of spec on n1 x n2 samples (n2 = 0: symmetric Gram), best of reps.  f32: also
 * compute the float64 kernel once and record the float32 result's error against it. */
static int run(const char *spec, int ndim, const size_t *in_shape, size_t n1, size_t n2, int threads, int reps, int f32,
               result *r)
{
    nk_arch *a = NULL;
    nk_plan *p = NULL;
    nk_error err = {{0}};
    if (nk_arch_parse(spec, NULL, &a, &err) || nk_plan_create(a, ndim, in_shape, &p, &err)) {
        fprintf(stderr, "bench: %s: %s\n", spec, err.msg);
        return 1;
    }
    rs = 12345;
    size_t sh[4] = {n1};
    for (int i = 0; i < ndim; i++) sh[i + 1] = in_shape[i];
    nk_array x1 = random_data(ndim + 1, sh), x2 = {0};
    if (n2) { sh[0] = n2; x2 = random_data(ndim + 1, sh); }
    nk_kernel_opts o;
    nk_kernel_opts_default(&o);
    o.nthreads = threads;
    o.f32 = f32;
    double best = 1e300;
    nk_array K = {0}, T = {0};
    for (int k = 0; k < reps; k++) {
        nk_array_free(&K); nk_array_free(&T);
        double t0 = now();
        nk_status st = nk_kernel_matrix(p, &x1, n2 ? &x2 : NULL, &o, &K, &T, &err);
        double dt = now() - t0;
        if (st) { fprintf(stderr, "bench: %s: %s\n", spec, err.msg); return 1; }
        if (dt < best) best = dt;
    }
    r->f32_err = 0;
    if (f32) {
        nk_array K64 = {0}, T64 = {0};
        o.f32 = 0;
        if (nk_kernel_matrix(p, &x1, n2 ? &x2 : NULL, &o, &K64, &T64, &err)) { fprintf(stderr, "bench: %s\n", err.msg); return 1; }
        for (size_t i = 0; i < nk_array_size(&K); i++) {
            double ek = fabs(K.data[i] - K64.data[i]) / fabs(K64.data[i]);
            double et = fabs(T.data[i] - T64.data[i]) / fabs(T64.data[i]);
            if (ek > r->f32_err) r->f32_err = ek;
            if (et > r->f32_err) r->f32_err = et;
        }
        nk_array_free(&K64); nk_array_free(&T64);
    }
    nk_array_free(&K); nk_array_free(&T);
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

static void emit(const char *name, const char *spec, const char *input, int threads, int f32, const result *r,
                 double fraction, const char *limit)
{
    char err[32] = "";
    if (f32) snprintf(err, sizeof err, "%.1e", r->f32_err);
    printf("%-28s %-10s %-4s %2d  %11.5g  %9.3g  %5.1f%% of %-22s %s\n", name, input, f32 ? "f32" : "f64", threads,
           r->ms_per_entry, r->pair_flops, 100 * fraction, limit, err);
    fprintf(json, "{\"name\": \"%s\", \"arch\": \"%s\", \"input\": \"%s\", \"precision\": \"%s\", "
                  "\"threads\": %d, \"ms_per_entry\": %.6g, \"entries\": %.0f, \"seconds\": %.4g, "
                  "\"flops_per_entry\": %.4g, \"fraction_of_limit\": %.4g, \"limit\": \"%s\"",
            name, spec, input, f32 ? "float32" : "float64", threads, r->ms_per_entry, r->entries, r->seconds,
            r->pair_flops, fraction, limit);
    if (f32) fprintf(json, ", \"max_rel_err_vs_float64\": %.3g", r->f32_err);
    fprintf(json, "}\n");
    fflush(stdout);
}

/* FMA throughput: NACC independent chains acc = acc * m + c per thread (enough to cover the
 * FMA latency on two pipes), each accumulator starting from its own value so that no two
 * chains are the same computation, and pinned to a register each step so that the compiler
 * keeps every one.  Returns the flops (2 per lane per FMA) of one thread's iters steps. */
#define NACC 16
/* S(k, ...) for k = 0..15 (sixteen named accumulators, not an array: an array indexed in a loop
 * stays in memory) */
#define R16(S, ...)                                                                                  \
    S(0, __VA_ARGS__) S(1, __VA_ARGS__) S(2, __VA_ARGS__) S(3, __VA_ARGS__) S(4, __VA_ARGS__)        \
    S(5, __VA_ARGS__) S(6, __VA_ARGS__) S(7, __VA_ARGS__) S(8, __VA_ARGS__) S(9, __VA_ARGS__)        \
    S(10, __VA_ARGS__) S(11, __VA_ARGS__) S(12, __VA_ARGS__) S(13, __VA_ARGS__) S(14, __VA_ARGS__)   \
    S(15, __VA_ARGS__)
#define FC_INIT(k, VT, SET1) VT a##k = SET1(1.0 + k * 1e-3);
#define FC_STEP(k, FMADD, REG) a##k = FMADD(a##k, m, c); __asm__("" : "+" REG(a##k));
#define FC_SUM(k, STORE) STORE(b, a##k); s += b[0];
/* one instruction set's chains: its vector type, intrinsics, lanes and register constraint */
#define FMA_CHAINS(name, tgt, VT, SET1, FMADD, STORE, LANES, REG)                                    \
    __attribute__((target(tgt))) static double name(long iters, double *sink)                        \
    {                                                                                                \
        const VT m = SET1(0.9999999), c = SET1(1e-7);                                                \
        R16(FC_INIT, VT, SET1)                                                                       \
        for (long i = 0; i < iters; i++) {                                                           \
            R16(FC_STEP, FMADD, REG)                                                                 \
        }                                                                                            \
        double b[LANES], s = 0;                                                                      \
        R16(FC_SUM, STORE)                                                                           \
        *sink += s;                                                                                  \
        return 2.0 * LANES * NACC * iters;                                                           \
    }
#if defined(__x86_64__)
FMA_CHAINS(fma_chains_512, "avx512f", __m512d, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_storeu_pd, 8, "v")
FMA_CHAINS(fma_chains_256, "avx2,fma", __m256d, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_storeu_pd, 4, "x")
#endif
static double fma_chains_scalar(long iters, double *sink)
{
    double a[NACC];
    for (int k = 0; k < NACC; k++) a[k] = 1.0 + k * 1e-3;
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < NACC; k++) a[k] = fma(a[k], 0.9999999, 1e-7);
    for (int k = 0; k < NACC; k++) *sink += a[k];
    return 2.0 * NACC * iters;
}

/* Measure the limits the fractions are taken against, on `threads` threads: FMA peak (all
 * threads at once, best of 5), dgemm (OpenBLAS, n = 3000, best of 3) and memory bandwidth (a
 * triad over 3 x 256 MB, STREAM's count of 24 bytes per element, best of 3). */
static void machine_limits(int threads)
{
    double (*fma_chains)(long, double *) = fma_chains_scalar;   /* the widest this CPU runs */
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) { fma_chains = fma_chains_512; peak_isa = "avx512"; }
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) { fma_chains = fma_chains_256; peak_isa = "avx2"; }
#endif
    double sink = 0;
    fma_chains(1000000, &sink);   /* warm up (clock) */
    for (int rep = 0; rep < 5; rep++) {
        double flops = 0, t0 = now();
#pragma omp parallel num_threads(threads) reduction(+ : flops, sink)
        flops += fma_chains(20000000, &sink);
        double r = flops / (now() - t0);
        if (r > peak_flops) peak_flops = r;
    }
    const int n = 3000;
    double *A = malloc(3 * (size_t)n * n * sizeof(double));
    if (A) {
        for (size_t i = 0; i < 3 * (size_t)n * n; i++) A[i] = 1.0 / (1 + i % 7);
        int bt = openblas_get_num_threads();
        openblas_set_num_threads(threads);
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now();
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, A, n, A + (size_t)n * n, n, 0.0,
                        A + 2 * (size_t)n * n, n);
            double r = 2.0 * n * n * n / (now() - t0);
            if (r > dgemm_flops) dgemm_flops = r;
        }
        openblas_set_num_threads(bt);
        sink += A[2 * (size_t)n * n];
        free(A);
    }
    const size_t len = (size_t)32 << 20;
    double *a = malloc(3 * len * sizeof(double));
    if (a) {
        double *b = a + len, *c = b + len;
#pragma omp parallel for num_threads(threads)
        for (size_t i = 0; i < len; i++) { a[i] = 0; b[i] = 1; c[i] = 2; }   /* first touch */
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now();
#pragma omp parallel for num_threads(threads)
            for (size_t i = 0; i < len; i++) a[i] = b[i] + 0.5 * c[i];
            double r = 24.0 * len / (now() - t0);
            if (r > bandwidth) bandwidth = r;
        }
        sink += a[len / 2];
        free(a);
    }
    if (sink == 42) printf(" ");   /* keeps the measured work */
}

/* flops of the recursion (the plan's count) per second over the peak of the precision */
/* What bounds a tanh layer's Mehler sums (plane_body.h: mehler_sums): the same loop -- Horner
 * in rho^2 for p and p' over blocks of four vectors of 8 entries, 6 of phi's terms (the bench's
 * tanh row averages 6.28), two coefficient lines read per term and vector, three multiplies and
 * two adds -- written here apart from the engine (GCC vector types, no FMA as in the engine),
 * on coefficient planes of P positions, 97 lines per sample, for 16 planes of a group whose
 * first sample's lines are shifted by one row of 32 per plane.  P = 64: every line in L1;
 * P = 1024 (32x32 images, 21 layers' planes in turn): the engine's layout.  ns per vector of 8
 * entries and layer, one thread. */
typedef double v8d __attribute__((vector_size(64), aligned(8)));
volatile double bench_sink;   /* the sums' results end here, so that their loops stay */
#if defined(__x86_64__)
__attribute__((target("avx512f")))
#endif
static double mehler_sums_512(int P, int layers, int reps, double *sink)
{
    enum { NT = 97, NPL = 16, W = 32 };
    const size_t per = (size_t)NT * P;   /* one sample's terms for one layer */
    const size_t na = layers * per + (size_t)NPL * W + 64, nb = layers * per, nk = (size_t)2 * NPL * P;
    double *A = malloc(sizeof(double) * na), *B = malloc(sizeof(double) * nb), *k = malloc(sizeof(double) * nk);
    if (!A || !B || !k) { free(A); free(B); free(k); return -1; }
    for (size_t i = 0; i < na; i++) A[i] = 1e-3 * (double)(i % 97);
    for (size_t i = 0; i < nb; i++) B[i] = 1e-3 * (double)(i % 89);
    for (size_t i = 0; i < nk; i++) k[i] = 0.5;
    const int m = 6;
    double vectors = 0, t0 = now();
    for (int r = 0; r < reps; r++)
        for (int L = 0; L < layers; L++)
            for (int j = 0; j < P; j += 32)
                for (int p = 0; p < NPL; p++) {
                    const int shift = P > 64 ? p * W : 0, n = P - shift;
                    if (j + 32 > n) continue;
                    double *kp = k + (size_t)2 * p * P, *tp = kp + P;
                    v8d x[4], s[4], d[4];
                    for (int v = 0; v < 4; v++) {
                        const v8d rho = *(const v8d *)(kp + j + 8 * v);
                        x[v] = rho * rho;
                        s[v] = d[v] = (v8d){0};
                    }
                    const double *ga = A + L * per + shift, *gb = B + L * per;
                    for (int i = m; i >= 1; i--)
                        for (int v = 0; v < 4; v++) {
                            d[v] = d[v] * x[v] + s[v];
                            s[v] = s[v] * x[v] + *(const v8d *)(ga + (size_t)i * P + j + 8 * v) *
                                                     *(const v8d *)(gb + (size_t)i * P + j + 8 * v);
                        }
                    for (int v = 0; v < 4; v++) {
                        *(v8d *)(kp + j + 8 * v) = s[v] * (v8d){1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3} + 0.5;
                        *(v8d *)(tp + j + 8 * v) *= s[v] + (x[v] + x[v]) * d[v];
                    }
                    vectors += 4;
                }
    const double dt = now() - t0;
    *sink += k[0] + k[P];
    bench_sink = *sink;
    free(A); free(B); free(k);
    return 1e9 * dt / vectors;
}

static double peak_fraction(const result *r, int f32, int threads)
{
    return r->pair_flops / (r->ms_per_entry * 1e-3) / (peak_flops * (f32 ? 2 : 1) * threads / 2);
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: bench OUT.jsonl [quick]\n"); return 2; }
    json = fopen(argv[1], "w");
    if (!json) { perror(argv[1]); return 1; }
    int quick = argc > 2;
    machine_limits(2);
    printf("OpenBLAS core: %s; nkern kernels: %s\n"
           "measured on 2 threads: float64 FMA peak %.0f GFLOP/s (%s chains; float32 twice), dgemm %.0f GFLOP/s, "
           "memory %.0f GB/s (the issue's figures: 250, 200, 70)\n",
           openblas_get_corename(), nk_simd_isa(), peak_flops / 1e9, peak_isa, dgemm_flops / 1e9, bandwidth / 1e9);
    fprintf(json, "{\"machine\": {\"openblas_core\": \"%s\", \"nkern_isa\": \"%s\", \"fma_peak_f64_gflops\": %.1f, "
                  "\"dgemm_gflops\": %.1f, \"bandwidth_gbs\": %.1f}}\n",
            openblas_get_corename(), nk_simd_isa(), peak_flops / 1e9, dgemm_flops / 1e9, bandwidth / 1e9);
    printf("%-28s %-10s %-4s %2s  %11s  %9s  %-31s %s\n", "benchmark", "input", "prec", "th", "ms/entry", "flops/ent",
           "achieved", "f32 err");
    size_t c32[3] = {32, 32, 3}, c16[3] = {16, 16, 3}, c8[3] = {8, 8, 3}, f28[3] = {28, 28, 1}, mlp[1] = {784};
    result r;
    const char *gap21 = "w=1.41421356 b=0.1 [conv(3) relu]*21 gap dense";
    const char *flat21 = "w=1.41421356 b=0.1 [conv(3) relu]*21 flatten dense";
    /* the three targets */
    for (int f32 = 0; f32 <= 1; f32++) {
        if (!run(gap21, 3, c32, quick ? 2 : 4, quick ? 2 : 4, 2, quick ? 1 : 10, f32, &r))   /* best of 10: this VM varies run to run */
            emit("cnn-gap-21", gap21, "32x32x3", 2, f32, &r, peak_fraction(&r, f32, 2), f32 ? "fp32 peak" : "fp64 peak");
        if (!run(flat21, 3, c32, quick ? 32 : 128, quick ? 32 : 128, 2, 3, f32, &r))
            emit("cnn-flatten-21", flat21, "32x32x3", 2, f32, &r, peak_fraction(&r, f32, 2), f32 ? "fp32 peak" : "fp64 peak");
    }
    /* issue 20: pools, strides and residual blocks inside the plane engine, smooth activations
     * (the PyTorch peer bench/peer_nt.py runs the same networks in the same run: bench/run.sh) */
    {
        const struct {
            const char *name, *spec;
            int smooth;    /* a quadrature activation: probed first (see below) */
        } rows[] = {
            {"myrtle-5", "w=1.41421356 [conv(3) relu]*2 avgpool(2) conv(3) relu avgpool(2) conv(3) relu [avgpool(2)]*3 flatten dense", 0},
            {"myrtle-10", "w=1.41421356 [conv(3) relu]*3 avgpool(2) [conv(3) relu]*3 avgpool(2) [conv(3) relu]*3 [avgpool(2)]*3 flatten dense", 0},
            {"strided-8", "w=1.41421356 b=0.1 [conv(3) relu]*2 conv(3,stride=2) relu [conv(3) relu]*2 conv(3,stride=2) relu [conv(3) relu]*2 gap dense", 0},
            {"resnet-4-blocks", "w=1.41421356 b=0.1 conv(3) relu [res(conv(3) relu conv(3)) relu]*4 gap dense", 0},
            {"gelu-gap-21", "w=1.41421356 b=0.1 [conv(3) gelu]*21 gap dense", 1},
            {"tanh-gap-21", "w=1.41421356 b=0.1 [conv(3) tanh]*21 gap dense", 1},
        };
        for (size_t k = 0; k < sizeof rows / sizeof *rows; k++) {
            const int n = quick ? 2 : 4;
            if (rows[k].smooth) {
                /* one layer on 8x8x3, one pair: the row (21 layers, 16x the entries per pair, n^2
                 * pairs) is skipped if that extrapolates past ten minutes (per-entry quadrature
                 * before the smooth-activation work of issue 20 took hours).  Best of two: the
                 * first run also makes the process's table of tanh's Hermite coefficients */
                char probe[128];
                snprintf(probe, sizeof probe, "w=1.41421356 b=0.1 conv(3) %s gap dense", rows[k].name[0] == 'g' ? "gelu" : "tanh");
                if (run(probe, 3, c8, 1, 1, 2, 2, 0, &r)) continue;
                const double est = r.seconds * 21 * 16 * n * n;
                if (est > 600) {
                    printf("%-28s %-10s skipped: one layer on 8x8x3 took %.2f s, the row would take ~%.0f s\n", rows[k].name,
                           "32x32x3", r.seconds, est);
                    continue;
                }
            }
            for (int f32 = 0; f32 <= 1; f32++)
                if (!run(rows[k].spec, 3, c32, n, n, 2, quick ? 1 : rows[k].smooth ? 2 : 5, f32, &r))
                    emit(rows[k].name, rows[k].spec, "32x32x3", 2, f32, &r, peak_fraction(&r, f32, 2), f32 ? "fp32 peak" : "fp64 peak");
        }
    }
    /* the default classify architecture: stride-1 circular convs read out by a flatten, on the
     * torus path (src/engine/torus.c); plain entries (its --augment shift:1 costs nine of them) */
    {
        const char *spec = "w=1.41 b=0.1 [conv(3,pad=circular) relu]*4 flatten dense";
        for (int f32 = 0; f32 <= 1; f32++)
            if (!run(spec, 3, f28, quick ? 64 : 256, quick ? 64 : 256, 2, quick ? 1 : 3, f32, &r))
                emit("fmnist-default-torus", spec, "28x28x1", 2, f32, &r, peak_fraction(&r, f32, 2), f32 ? "fp32 peak" : "fp64 peak");
    }
    /* scaling: depth, image size (GAP grows as P^2 per entry, flatten as P), threads */
    const int depths[] = {5, 10, 21};
    for (int d = 0; d < 3; d++) {
        char spec[128], name[64];
        snprintf(spec, sizeof spec, "w=1.41421356 b=0.1 [conv(3) relu]*%d gap dense", depths[d]);
        snprintf(name, sizeof name, "cnn-gap-depth-%d", depths[d]);
        if (!run(spec, 3, c16, 4, 4, 2, 2, 0, &r)) emit(name, spec, "16x16x3", 2, 0, &r, peak_fraction(&r, 0, 2), "fp64 peak");
        snprintf(spec, sizeof spec, "w=1.41421356 b=0.1 [conv(3) relu]*%d flatten dense", depths[d]);
        snprintf(name, sizeof name, "cnn-flatten-depth-%d", depths[d]);
        if (!run(spec, 3, c32, 64, 64, 2, 2, 0, &r)) emit(name, spec, "32x32x3", 2, 0, &r, peak_fraction(&r, 0, 2), "fp64 peak");
    }
    const size_t *sizes[] = {c8, c16, c32};
    const char *size_names[] = {"8x8x3", "16x16x3", "32x32x3"};
    for (int k = 0; k < 3; k++) {
        const char *spec = "w=1.41421356 b=0.1 [conv(3) relu]*10 gap dense";
        if (!run(spec, 3, sizes[k], k == 2 ? 2 : 4, k == 2 ? 2 : 4, 2, 2, 0, &r))
            emit("cnn-gap-10-size", spec, size_names[k], 2, 0, &r, peak_fraction(&r, 0, 2), "fp64 peak");
        spec = "w=1.41421356 b=0.1 [conv(3) relu]*10 flatten dense";
        if (!run(spec, 3, sizes[k], 64, 64, 2, 2, 0, &r))
            emit("cnn-flatten-10-size", spec, size_names[k], 2, 0, &r, peak_fraction(&r, 0, 2), "fp64 peak");
    }
    for (int th = 1; th <= 2; th++) {
        char name[64];
        const char *spec = "w=1.41421356 b=0.1 [conv(3) relu]*10 gap dense";
        snprintf(name, sizeof name, "cnn-gap-10-threads-%d", th);
        if (!run(spec, 3, f28, 4, 4, th, 3, 0, &r)) emit(name, spec, "28x28x1", th, 0, &r, peak_fraction(&r, 0, th), "fp64 peak");
    }
    /* issue 20: the bound of the Mehler sums (mehler_sums_512) */
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) {
        double sink = 0, l1 = 1e300, eng = 1e300;
        for (int rep = 0; rep < 3; rep++) {   /* fastest of three, alternating */
            const double a = mehler_sums_512(64, 1, quick ? 2000 : 20000, &sink);
            const double b = mehler_sums_512(1024, 21, quick ? 20 : 200, &sink);
            if (a > 0 && a < l1) l1 = a;
            if (b > 0 && b < eng) eng = b;
        }
        printf("%-28s coefficient lines in L1 %.2f ns per 8 entries, in the engine's layout (32x32, 16 planes, 21 "
               "layers) %.2f: %.1fx (1 thread)\n", "mehler-sums (tanh's loop)", l1, eng, eng / l1);
        fprintf(json, "{\"name\": \"mehler-sums\", \"precision\": \"float64\", \"threads\": 1, \"ns_per_8_entries_l1\": %.4g, \"ns_per_8_entries_engine_layout\": %.4g}\n",
                l1, eng);
    }
#endif
    /* issue 20: a smooth MLP, its tanh by the Mehler series per tile row (nk_mehler_grid); best of
     * two, the first run also makes the process's table of tanh's Hermite coefficients */
    {
        const char *spec = "w=1.5 b=0.1 [dense tanh]*5 dense";
        if (!run(spec, 1, mlp, quick ? 500 : 1000, 0, 2, 2, 0, &r))
            emit("mlp-tanh-5", spec, quick ? "500x784" : "1000x784", 2, 0, &r, peak_fraction(&r, 0, 2), "fp64 peak");
    }
    /* last: the MLP allocates 1.6 GB of outputs, whose release disturbs what runs right after */
    {
        const char *spec = "w=1.41421356 b=0.1 [dense relu]*10 dense";
        size_t n = quick ? 2000 : 10000;
        if (!run(spec, 1, mlp, n, 0, 2, quick ? 1 : 2, 0, &r)) {
            /* bound: the first GEMM at dgemm speed (a Gram: the symmetric half, n^2 d of the
             * 2 n^2 d flops, as dsyrk does it) plus one pass of memory over the NNGP and NTK
             * matrices per layer (read and write, 8 bytes each, the half computed) */
            double gemm = 1.0 * n * n * 784 / dgemm_flops;
            double mem = 11 * 2 * 2 * 8.0 * n * n / 2 / bandwidth;
            char in[32];
            snprintf(in, sizeof in, "%zux784", n);
            emit("mlp-10", spec, in, 2, 0, &r, (gemm + mem) / r.seconds, "GEMM + memory bound");
            /* The two n x n outputs are new memory: on this machine (a virtual machine) the first
             * touch of a page costs more than a pass at memory bandwidth.  Printed for the
             * reader, not taken into the bound: touched alone (both threads, fastest of three)
             * it came to more than the run pays for it, which overlaps it with other work (as a
             * term of the bound the fraction came out 103-124%). */
            size_t len = 2 * n * n;
            double touch = -1;
            for (int rep = 0; rep < 3; rep++) {
                double t0 = now();
                double *m = calloc(len, sizeof(double));
                if (!m) break;
#pragma omp parallel for num_threads(2) schedule(static)
                for (size_t i = 0; i < len; i += 512) m[i] = 1;
                double dt = now() - t0;
                free(m);
                if (touch < 0 || dt < touch) touch = dt;
            }
            if (touch >= 0)
                printf("  (run %.3f s; GEMM bound %.3f s, memory pass %.3f s; first touch of the %.2f GB of outputs "
                       "alone, 2 threads, fastest of 3: %.3f s)\n",
                       r.seconds, gemm, mem, len * 8e-9, touch);
        }
    }
    fclose(json);
    return 0;
}
