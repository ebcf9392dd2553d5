/* nk_test.h -- a minimal test harness: CHECK counts failures, nk_test_summary prints the
 * closing line "N passed, N failed" that the runner aggregates. */
#ifndef NK_TEST_H
#define NK_TEST_H
#include <math.h>
#include <stdio.h>

static int nk_test_passed, nk_test_failed;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) nk_test_passed++;                                             \
        else {                                                                  \
            nk_test_failed++;                                                   \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

/* relative error |a-b| / max(|a|, |b|, floor) */
static inline double nk_relerr(double a, double b, double floor_)
{
    double m = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    if (m < floor_) m = floor_;
    return fabs(a - b) / m;
}

/* Standard normal draws (Box-Muller on xorshift64) from the caller's state, and arrays of them:
 * the tests' random inputs, reproducible for a given seed. */
static inline double nk_test_gauss(unsigned long long *s)
{
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    double u = ((*s >> 11) + 0.5) / 9007199254740992.0;
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    double v = (*s >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

#ifdef NKERN_H
static inline nk_array nk_test_random_array(int ndim, const size_t *shape, unsigned long long *s)
{
    nk_array a;
    nk_array_alloc(&a, ndim, shape, NULL);
    for (size_t i = 0; i < nk_array_size(&a); i++) a.data[i] = nk_test_gauss(s);
    return a;
}
#endif

#ifdef NK_INTERNAL_H
/* NNGP K and NTK T of spec on the Gram of x through the plane engine (engine 1) or layer by
 * layer (0), float64 or float32, one thread; *pe (if given): how many ops the engine runs. */
static inline nk_status nk_test_kernel_path(const char *spec, const nk_array *x, int engine, int f32, nk_array *K,
                                            nk_array *T, int *pe, nk_error *err)
{
    nk_plane_enabled = engine;
    nk_kernel_opts o;
    nk_kernel_opts_default(&o);
    o.get = NK_GET_BOTH;
    o.nthreads = 1;
    o.f32 = f32;
    nk_arch *ar = NULL;
    nk_plan *pl = NULL;
    nk_status st = nk_arch_parse(spec, NULL, &ar, err);
    if (st == NK_OK) st = nk_plan_create(ar, x->ndim - 1, x->shape + 1, &pl, err);
    if (st == NK_OK && pe) *pe = pl->pe;
    if (st == NK_OK) st = nk_kernel_matrix(pl, x, NULL, &o, K, T, err);
    nk_plan_free(pl);
    nk_arch_free(ar);
    nk_plane_enabled = 1;
    return st;
}

/* spec's Gram of x layer by layer in float64 (the reference) and through the plane engine in
 * float64 and float32: the largest error of each, entry by entry against the Cauchy-Schwarz
 * scale sqrt(K_ii K_jj) of its row and column (NNGP and NTK alike); *scale: the largest such
 * NNGP scale; *pe: the engine's op count.  0 (and a failed check naming the run) if a run failed. */
static inline int nk_test_engine_vs_layers(const char *spec, const nk_array *x, double *e64, double *e32, double *scale,
                                           int *pe)
{
    nk_array K[3] = {{0}}, T[3] = {{0}};
    int ok = 1;
    for (int r = 0; r < 3; r++) {
        nk_error err = {{0}};
        nk_status st = nk_test_kernel_path(spec, x, r > 0, r == 2, &K[r], &T[r], r ? pe : NULL, &err);
        CHECK(st == NK_OK, "%s (run %d): %s", spec, r, err.msg);
        ok &= st == NK_OK;
    }
    *e64 = *e32 = *scale = 0;
    const size_t n = x->shape[0];
    for (size_t i = 0; ok && i < n * n; i++) {
        const size_t r = i / n, c = i % n;
        const double sk = sqrt(K[0].data[r * (n + 1)] * K[0].data[c * (n + 1)]);
        const double st = sqrt(T[0].data[r * (n + 1)] * T[0].data[c * (n + 1)]);
        *scale = fmax(*scale, sk);
        *e64 = fmax(*e64, fmax(fabs(K[1].data[i] - K[0].data[i]) / sk, fabs(T[1].data[i] - T[0].data[i]) / st));
        *e32 = fmax(*e32, fmax(fabs(K[2].data[i] - K[0].data[i]) / sk, fabs(T[2].data[i] - T[0].data[i]) / st));
    }
    for (int r = 0; r < 3; r++) {
        nk_array_free(&K[r]);
        nk_array_free(&T[r]);
    }
    return ok;
}
#endif

static inline int nk_test_summary(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, nk_test_passed, nk_test_failed);
    return nk_test_failed ? 1 : 0;
}
#endif
