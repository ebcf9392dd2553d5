/* test_plane.c -- the plane engine (plane.c) against independent references:
 *   a. the layer-by-layer path (plans created with nk_plane_enabled = 0), float64, on stacks of
 *      every shape the engine takes or declines, followed by every kind of readout;
 *   b. every instruction set the machine runs against the portable variant (float64), and
 *      float32 against float64;
 *   c. float32 against float64 on the three benchmark architectures (small inputs);
 *   d. a sample paired with itself: the Gram's diagonal against the same pair given as x1, x2;
 *   e. an all-zero image in a batch (and one zero but for a row): finite, and the layer-by-layer
 *      path's NNGP and NTK, in float64 and float32 and every instruction set;
 *   f. positive homogeneity of bias-free ReLU networks: K(a x, b x') = a b K(x, x');
 *   g. Mehler layers run by groups of planes: the same bits for every group size (one plane,
 *      groups split by the byte budget, every plane of a da), float64 and float32, and within
 *      the truncation bound of the layer-by-layer path.
 * The maximum measured errors are printed.  NK_TEST_QUICK=1 (the sanitizer run) drops the
 * largest inputs. */
#include "internal.h"
#include "nk_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PI 3.14159265358979323846

static int quick;
/* Threads per kernel call: 1 for the many small calls (OpenMP's barriers cost more than the
 * work, and much more on a loaded machine); the benchmark architectures use every core. */
static int nthreads = 1;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static unsigned long long rs = 0x2545F4914F6CDD1DULL;
static double gauss(void) { return nk_test_gauss(&rs); }
static nk_array random_array(int ndim, const size_t *shape) { return nk_test_random_array(ndim, shape, &rs); }

static size_t sample_len(const nk_array *x) { return nk_array_size(x) / x->shape[0]; }

/* A pair of batches of one sample shape: x1 of n1 samples, x2 of n2 whose sample 1 is a copy of
 * x1's sample 2 (a sample present in both). */
typedef struct {
    const char *name;
    nk_array x1, x2;
} inputs;

static inputs make_inputs(const char *name, int ndim, const size_t *sample, size_t n1, size_t n2)
{
    inputs in;
    size_t sh[4];
    in.name = name;
    for (int a = 0; a < ndim; a++) sh[a + 1] = sample[a];
    sh[0] = n1;
    in.x1 = random_array(ndim + 1, sh);
    sh[0] = n2;
    in.x2 = random_array(ndim + 1, sh);
    size_t len = sample_len(&in.x1);
    memcpy(in.x2.data + 1 * len, in.x1.data + 2 * len, len * sizeof(double));
    return in;
}

static void free_inputs(inputs *in) { nk_array_free(&in->x1); nk_array_free(&in->x2); }

typedef struct {
    nk_array K, T;
    int pe;        /* ops run by the plane engine (0: the layer-by-layer path) */
} result;

static void free_result(result *r) { nk_array_free(&r->K); nk_array_free(&r->T); }

/* NNGP and NTK of spec on (x1, x2) (x2 NULL: the symmetric Gram).  engine 0 creates the plan
 * with the plane engine disabled; isa forces the engine's instruction set (NULL: the best). */
static int compute(const char *spec, const nk_array *x1, const nk_array *x2, int engine, int f32, const char *isa,
                   result *r)
{
    memset(r, 0, sizeof *r);
    nk_arch *a = NULL;
    nk_plan *p = NULL;
    nk_error err = {{0}};
    nk_status st = nk_arch_parse(spec, NULL, &a, &err);
    nk_plane_enabled = engine;
    if (st == NK_OK) st = nk_plan_create(a, x1->ndim - 1, x1->shape + 1, &p, &err);
    nk_plane_enabled = 1;
    if (st == NK_OK) {
        r->pe = p->pe;
        nk_kernel_opts o;
        nk_kernel_opts_default(&o);
        o.get = NK_GET_BOTH;
        o.f32 = f32;
        o.nthreads = nthreads;
        nk_plane_force_isa(isa);
        st = nk_kernel_matrix(p, x1, x2, &o, &r->K, &r->T, &err);
        nk_plane_force_isa(NULL);
    }
    if (st != NK_OK) fprintf(stderr, "%s: %s\n", spec, err.msg);
    nk_plan_free(p);
    nk_arch_free(a);
    return st == NK_OK;
}

/* Largest entrywise relative error of a against ref; entries below 1e-9 of the matrix's
 * largest are measured against that floor (their relative error carries no meaning). */
static double rel(const nk_array *a, const nk_array *ref)
{
    if (!a->data || !ref->data || nk_array_size(a) != nk_array_size(ref)) return INFINITY;
    double m = 0, e = 0;
    for (size_t i = 0; i < nk_array_size(ref); i++) m = fmax(m, fabs(ref->data[i]));
    for (size_t i = 0; i < nk_array_size(ref); i++) {
        double d = nk_relerr(a->data[i], ref->data[i], 1e-9 * m);
        if (!(d <= e)) e = isnan(d) ? INFINITY : d;
    }
    return e;
}

static double rel2(const result *a, const result *ref)
{
    return fmax(rel(&a->K, &ref->K), rel(&a->T, &ref->T));
}

static int all_finite(const result *r)
{
    for (size_t i = 0; i < nk_array_size(&r->K); i++)
        if (!isfinite(r->K.data[i]) || !isfinite(r->T.data[i])) return 0;
    return r->K.data != NULL;
}

/* ------------------------------------------------------------------ cases -- */

enum { IMG_A, IMG_B, SEQ, THIN_W, THIN_H, IMG_C, WIDE_C, ROW16, ROW8, MYRTLE, MYRTLE16, NINPUTS };

typedef struct {
    const char *spec;
    int in;        /* which inputs */
    int engine;    /* 1: the engine must take the plan's leading stack */
} tcase;

/* Stacks the engine takes, stacks it declines (stride, valid or circular padding: both paths
 * must then agree trivially), and every kind of op after the stack. */
static const tcase cases[] = {
    /* 40 channels: K0 of a pair from one GEMM, gathered plane by plane (plane.c, GRAM_CHANNELS) */
    {"[conv(3) relu]*3 gap dense", WIDE_C, 1},
    {"conv(3) erf conv(3) relu avgpool(2) gap dense", WIDE_C, 1},
    {"[conv(3) relu]*2 flatten dense", WIDE_C, 1},
    {"[conv(3) relu]*1 gap dense", IMG_A, 1},
    {"[conv(3) relu]*3 gap dense", IMG_A, 1},
    {"[conv(3) relu]*8 gap dense", IMG_A, 1},
    {"[conv(3) relu]*1 gap dense", IMG_B, 1},
    {"[conv(3) relu]*3 gap dense", IMG_B, 1},
    {"[conv(3) relu]*8 gap dense", IMG_B, 1},
    {"[conv(3) relu]*1 flatten dense", IMG_A, 1},
    {"[conv(3) relu]*3 flatten dense", IMG_A, 1},
    {"[conv(3) relu]*8 flatten dense", IMG_A, 1},
    {"[conv(3) relu]*1 flatten dense", IMG_B, 1},
    {"[conv(3) relu]*3 flatten dense", IMG_B, 1},
    {"[conv(3) relu]*8 flatten dense", IMG_B, 1},
    {"w=1.41421356 b=0.1 [conv(3) relu]*3 gap dense", IMG_B, 1},
    {"w=1.41421356 b=0.1 [conv(3) relu]*3 flatten dense", IMG_B, 1},
    {"conv(3,b=0.3) relu conv(3,w=0.8) relu conv(3,w=1.2,b=0.05) relu gap dense", IMG_B, 1},
    /* 1-D inputs (N, L, C) */
    {"[conv(3) relu]*3 gap dense", SEQ, 1},
    {"[conv(3) relu]*3 flatten dense", SEQ, 1},
    {"b=0.2 [conv(5) relu]*3 gap dense", SEQ, 1},
    {"b=0.2 [conv(5) relu]*3 flatten dense", SEQ, 1},
    {"conv(5) relu conv(3) relu conv(2) relu gap dense", SEQ, 1},
    /* images one position wide or high */
    {"b=0.1 [conv(3) relu]*3 gap dense", THIN_W, 1},
    {"b=0.1 [conv(3) relu]*3 gap dense", THIN_H, 1},
    {"b=0.1 [conv(3) relu]*3 flatten dense", THIN_W, 1},
    {"b=0.1 [conv(3) relu]*3 flatten dense", THIN_H, 1},
    /* even and non-square windows (same padding: more reach after than before) */
    {"conv(2) relu conv(2) relu gap dense", IMG_A, 1},
    {"b=0.1 [conv(2) relu]*3 flatten dense", IMG_B, 1},
    {"conv(2x3) relu conv(3x2) relu conv(4) relu gap dense", IMG_B, 1},
    {"b=0.1 conv(1x5) relu conv(5x1) relu flatten dense", IMG_B, 1},
    /* valid / circular padding and strides: the engine may decline (then both paths agree) */
    {"conv(3,pad=valid) relu conv(3) relu gap dense", IMG_B, 0},
    {"conv(3) relu conv(3,pad=valid) relu gap dense", IMG_B, 0},
    {"conv(3) relu conv(3,pad=valid) relu flatten dense", IMG_A, 0},
    {"conv(3,pad=circular) relu conv(3) relu gap dense", IMG_A, 0},
    /* strided and valid convs: a step down to the next level of the engine (the window sum and
     * affine map on the planes, then the positions s Q on both sides) */
    {"conv(3) relu conv(3,stride=2) relu gap dense", IMG_B, 1},
    {"conv(3) relu conv(3,stride=2) relu gap dense", IMG_A, 1},
    {"b=0.1 conv(3,stride=2) relu conv(3) relu flatten dense", IMG_C, 1},
    {"conv(3,stride=2,pad=valid) erf conv(3) relu gap dense", IMG_C, 1},
    {"conv(3) relu conv(2,stride=2) relu conv(3) relu gap dense", IMG_A, 1},
    {"b=0.1 conv(3) relu conv(3x2,stride=2x1) relu conv(3) relu gap dense", IMG_B, 1},
    {"conv(3) relu conv(3,stride=3) relu gap dense relu dense", IMG_C, 1},
    {"conv(3,stride=2) relu conv(3) relu gap dense", SEQ, 1},
    {"conv(3) relu conv(3,stride=2) relu flatten dense", ROW16, 1},
    /* average pools inside the engine: levels joined by a store of planes (Myrtle's pattern,
     * odd sizes whose last row or column no window takes, windows narrower than their stride,
     * non-square ones, same padding, pools in a row, a 1x1 level, and what follows) */
    {"w=1.41421356 [conv(3) relu]*2 avgpool(2) conv(3) relu avgpool(2) gap dense", IMG_A, 1},
    {"w=1.41421356 [conv(3) relu]*2 avgpool(2) conv(3) relu avgpool(2) conv(3) relu avgpool(2) flatten dense", MYRTLE, 1},
    {"w=1.41421356 [conv(3) relu]*2 avgpool(2) conv(3) relu avgpool(2) conv(3) relu [avgpool(2)]*2 flatten dense", MYRTLE16, 1},
    {"w=1.41421356 [conv(3) relu]*2 avgpool(2) conv(3) relu avgpool(2) flatten dense", ROW16, 1},
    {"w=1.41421356 conv(3) relu avgpool(2) [conv(3) relu]*2 avgpool(2) conv(3) relu avgpool(2) flatten dense", IMG_C, 1},
    {"b=0.1 conv(3) relu avgpool(2) conv(3) relu flatten dense", IMG_B, 1},
    {"conv(3) relu avgpool(2,pad=same) conv(3) erf gap dense", IMG_B, 1},
    {"conv(3) relu avgpool(3) conv(3) relu gap dense", IMG_C, 1},
    {"conv(3) relu avgpool(2,stride=3) conv(3) relu gap dense", IMG_C, 1},
    {"conv(3) relu avgpool(2x3) conv(2) relu gap dense", IMG_C, 1},
    {"conv(3) relu avgpool(2) avgpool(2) conv(3) relu gap dense", IMG_C, 1},
    {"conv(3) relu avgpool(2) conv(3) relu gap dense relu dense", ROW8, 1},
    {"conv(3) relu avgpool(2) conv(3) relu avgpool(3,stride=1,pad=same) gap dense", IMG_C, 1},
    {"conv(3) relu avgpool(2) conv(3,stride=2) relu gap dense", ROW16, 1},
    {"b=0.2 [conv(5) relu]*2 avgpool(2) conv(3) relu gap dense", SEQ, 1},
    {"param=standard w=1.3 b=0.2 width=4 conv(3) relu avgpool(2) conv(3) relu gap dense", IMG_C, 1},
    /* residual blocks on the planes: nested, with other activations, before a pool and a stride */
    {"b=0.1 conv(3) relu res(conv(3) relu res(conv(3) relu conv(3)) conv(3)) relu gap dense", IMG_B, 1},
    {"conv(3) erf res(conv(3) erf conv(3)) relu res(conv(3) relu conv(3)) gap dense", IMG_A, 1},
    {"conv(3) relu res(conv(3) relu conv(3)) relu avgpool(2) res(conv(3) relu conv(3)) relu gap dense", IMG_C, 1},
    {"w=1.41421356 conv(3) relu [res(conv(3) relu conv(3)) relu]*2 conv(3,stride=2) relu res(conv(3) relu conv(3)) relu gap dense", ROW16, 1},
    {"param=standard b=0.1 conv(3,width=3) relu res(conv(3) relu conv(3)) relu flatten dense", SEQ, 1},
    /* dense (1x1) inside the stack, two affine maps in a row, an activation first */
    {"b=0.1 conv(3) relu dense relu conv(3) relu gap dense", IMG_B, 1},
    {"b=0.1 conv(3) relu dense(width=3) relu conv(3) relu flatten dense", IMG_A, 1},
    {"conv(3) conv(3) relu dense conv(3) relu gap dense", IMG_A, 1},
    {"relu conv(3) relu conv(3) relu gap dense", IMG_B, 1},
    /* activations other than ReLU, mixed with it */
    {"b=0.1 conv(3) erf conv(3) relu gap dense", IMG_B, 1},
    {"b=0.1 conv(3) relu conv(3) erf conv(3) relu flatten dense", IMG_A, 1},
    {"conv(3) abrelu(-0.3,1.2) conv(3) relu gap dense", IMG_B, 1},
    {"conv(3) leaky_relu(0.1) conv(3) identity conv(3) relu gap dense", IMG_A, 1},
    {"b=0.1 conv(3) identity conv(3) relu conv(3) erf flatten dense", IMG_B, 1},
    {"quad=12 b=0.1 conv(3) tanh conv(3) relu gap dense", IMG_A, 1},
    {"b=0.1 [conv(3) erf]*3 gap dense", SEQ, 1},
    /* an activation right after a ReLU (the engine's ReLU leaves out its 1/2pi: the next op
     * must get the true values back) */
    {"b=0.1 conv(3) relu relu conv(3) relu gap dense", IMG_B, 1},
    {"b=0.1 conv(3) relu erf conv(3) relu flatten dense", IMG_A, 1},
    {"conv(3) relu conv(3) relu tanh gap dense", SEQ, 1},
    /* standard parameterization */
    {"param=standard w=1.3 b=0.2 width=4 [conv(3) relu]*3 gap dense", IMG_B, 1},
    {"param=standard w=1.3 b=0.2 width=4 [conv(3) relu]*3 flatten dense", IMG_A, 1},
    {"param=standard conv(3,width=5) relu conv(3,width=2) erf gap dense", SEQ, 1},
    /* what follows the stack: pooling (a full state handed on), residual blocks, activations
     * after the GAP (the full self state), dense layers after flatten */
    {"conv(3) relu avgpool(2) conv(3) relu gap dense", IMG_A, 1},
    {"b=0.1 [conv(3) relu]*2 avgpool(2) conv(2) relu gap dense", IMG_B, 1},
    {"b=0.1 [conv(3) relu]*2 res(conv(3) relu conv(3)) relu gap dense", IMG_B, 1},
    {"b=0.1 [conv(3) relu]*2 res(conv(3) relu conv(3)) relu flatten dense", IMG_A, 1},
    {"[conv(3) relu]*2 gap dense relu dense", IMG_A, 1},
    {"b=0.1 [conv(3) relu]*3 gap dense erf dense", IMG_B, 1},
    {"b=0.1 [conv(3) relu]*3 flatten dense relu dense", IMG_B, 1},
    {"[conv(3) relu]*2 gap dense relu dense", SEQ, 1},
    /* rows longer than a vector (17 > 16 float32 lanes), odd sizes */
    {"w=1.41421356 b=0.1 [conv(3) relu]*5 gap dense", IMG_C, 1},
    {"w=1.41421356 b=0.1 [conv(3) relu]*5 flatten dense", IMG_C, 1},
    {"b=0.1 conv(5) relu conv(2) erf conv(3) relu gap dense", IMG_C, 1},
    /* rows of one or two whole vectors (16 and 8 wide): the 3x3 chain keeps its masks in
     * registers (float32 at 16, float64 at 16 and 8) */
    {"w=1.41421356 b=0.1 [conv(3) relu]*4 gap dense", ROW16, 1},
    {"w=1.41421356 b=0.1 [conv(3) relu]*4 flatten dense", ROW16, 1},
    {"param=standard w=1.3 b=0.2 [conv(3) relu]*3 gap dense", ROW16, 1},
    {"w=1.41421356 b=0.1 [conv(3) relu]*4 gap dense", ROW8, 1},
    {"param=standard w=1.3 b=0.2 [conv(3) relu]*3 flatten dense", ROW8, 1},
};
#define NCASES (sizeof cases / sizeof *cases)

static inputs inp[NINPUTS];

static void make_all_inputs(void)
{
    size_t a[3] = {6, 6, 2}, b[3] = {5, 7, 3}, s[2] = {9, 2}, tw[3] = {7, 1, 2}, th[3] = {1, 7, 2}, c[3] = {11, 17, 3};
    size_t wc[3] = {5, 6, 40};
    size_t n1 = quick ? 4 : 5, n2 = quick ? 3 : 4;
    inp[IMG_A] = make_inputs("6x6x2", 3, a, n1, n2);
    inp[IMG_B] = make_inputs("5x7x3", 3, b, n1, n2);
    inp[SEQ] = make_inputs("9x2 (1-D)", 2, s, n1, n2);
    inp[THIN_W] = make_inputs("7x1x2", 3, tw, n1, n2);
    inp[THIN_H] = make_inputs("1x7x2", 3, th, n1, n2);
    inp[IMG_C] = make_inputs("11x17x3", 3, c, 3, 3);
    inp[WIDE_C] = make_inputs("5x6x40", 3, wc, 3, 3);
    size_t r16[3] = {5, 16, 3}, r8[3] = {7, 8, 2};
    inp[ROW16] = make_inputs("5x16x3", 3, r16, 3, 2);
    inp[ROW8] = make_inputs("7x8x2", 3, r8, 3, 2);
    size_t m8[3] = {8, 8, 3}, m16[3] = {16, 16, 3};
    inp[MYRTLE] = make_inputs("8x8x3", 3, m8, 3, 2);
    inp[MYRTLE16] = make_inputs("16x16x3", 3, m16, 3, 2);
}

/* ------------------------------------------------------------------ tests -- */

/* a. the engine (float64, best instruction set) against the layer-by-layer path */
static void test_vs_layer_path(void)
{
    double worst = 0, worst_sym = 0;
    int engaged = 0;
    for (size_t c = 0; c < NCASES; c++) {
        const tcase *tc = &cases[c];
        const inputs *in = &inp[tc->in];
        for (int g = 0; g < 2; g++) {
            const nk_array *x2 = g ? &in->x2 : NULL;
            result e, r;
            int ok = compute(tc->spec, &in->x1, x2, 1, 0, NULL, &e) & compute(tc->spec, &in->x1, x2, 0, 0, NULL, &r);
            CHECK(ok, "%s on %s: the kernel failed", tc->spec, in->name);
            CHECK(r.pe == 0, "%s: a plan created with nk_plane_enabled = 0 uses the engine (pe %d)", tc->spec, r.pe);
            if (tc->engine) CHECK(e.pe > 0, "%s on %s: the engine declined the stack", tc->spec, in->name);
            engaged += g == 0 && e.pe > 0;
            double ek = rel(&e.K, &r.K), et = rel(&e.T, &r.T);
            /* tanh with the automatic order: the engine's Mehler form (1e-10 per entry) against the
             * layer path's Gauss-Hermite rule (~1e-11 at these variances) */
            const double tol = strstr(tc->spec, "tanh") && !strstr(tc->spec, "quad=") ? 1e-9 : 1e-12;
            CHECK(ek <= tol && et <= tol, "%s on %s (%s, engine ops %d): engine vs layer-by-layer: NNGP %.3g, NTK %.3g",
                  tc->spec, in->name, g ? "x1, x2" : "Gram", e.pe, ek, et);
            worst = fmax(worst, fmax(ek, et));
            if (g && e.K.data && !strstr(tc->spec, "quad=")) {
                /* x2's sample 1 is x1's sample 2: that column equals the Gram's column 2, whose
                 * entries below the diagonal are the mirrored pairs (x1_2, x1_i).  Not with a
                 * fixed low quadrature order: its rule is not symmetric under swapping the
                 * samples (the layer-by-layer path alike: 6e-11 at quad=12). */
                result s;
                if (compute(tc->spec, &in->x1, NULL, 1, 0, NULL, &s)) {
                    size_t n1 = in->x1.shape[0], n2 = in->x2.shape[0];
                    double d = 0;
                    for (size_t i = 0; i < n1; i++) {
                        d = fmax(d, nk_relerr(e.K.data[i * n2 + 1], s.K.data[i * n1 + 2], 1e-300));
                        d = fmax(d, nk_relerr(e.T.data[i * n2 + 1], s.T.data[i * n1 + 2], 1e-300));
                    }
                    CHECK(d <= 1e-13, "%s on %s: a sample in x1 and x2: K(x1_i, x2_1) vs Gram K(x1_i, x1_2): %.3g", tc->spec,
                          in->name, d);
                    worst_sym = fmax(worst_sym, d);
                }
                free_result(&s);
            }
            free_result(&e);
            free_result(&r);
        }
    }
    printf("engine vs layer-by-layer (float64, %s): max relative error %.3g over %zu architectures (%d run by the engine)\n",
           nk_plane_isa(), worst, NCASES, engaged);
    printf("sample in both x1 and x2 vs the Gram's entry: max relative difference %.3g\n", worst_sym);
}

static const char *isas[] = {"avx512", "avx2"};

/* Largest error of a against ref in units of each entry's natural scale
 * max(|K_ij|, sqrt(K_ii K'_jj)) (the diagonals d1, d2 of the two batches' own Grams): entries
 * that a GAP over correlations of both signs brings near zero (erf networks) carry the rounding
 * of the terms summed, which is relative to that scale, not to the small sum. */
static double rel_scaled(const nk_array *a, const nk_array *ref, const nk_array *g1, const nk_array *g2)
{
    if (!a->data || !ref->data || nk_array_size(a) != nk_array_size(ref)) return INFINITY;
    size_t n1 = ref->shape[0], n2 = ref->shape[1];
    double e = 0;
    for (size_t i = 0; i < n1; i++)
        for (size_t j = 0; j < n2; j++) {
            double s = sqrt(fabs(g1->data[i * n1 + i] * g2->data[j * n2 + j]));
            double d = nk_relerr(a->data[i * n2 + j], ref->data[i * n2 + j], s > 1e-300 ? s : 1e-300);
            if (!(d <= e)) e = isnan(d) ? INFINITY : d;
        }
    return e;
}

/* b. every instruction set against the portable variant; float32 against float64 */
static void test_isas(void)
{
    double worst[2] = {0, 0}, worst32[3] = {0, 0, 0}, worst32_entry[3] = {0, 0, 0};
    int have[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        nk_plane_force_isa(isas[k]);
        have[k] = !strcmp(nk_plane_isa(), isas[k]);
        nk_plane_force_isa(NULL);
        if (!have[k]) printf("instruction set %s: not supported by this machine, skipped\n", isas[k]);
    }
    nk_plane_force_isa("portable");
    CHECK(!strcmp(nk_plane_isa(), "portable"), "forcing portable gives %s", nk_plane_isa());
    nk_plane_force_isa(NULL);
    for (size_t c = 0; c < NCASES; c++) {
        const tcase *tc = &cases[c];
        const inputs *in = &inp[tc->in];
        /* the two batches' own Grams, portable float64: the reference for g = 0, and the
         * diagonals that set each entry's scale */
        result g1, g2;
        int ok = compute(tc->spec, &in->x1, NULL, 1, 0, "portable", &g1) & compute(tc->spec, &in->x2, NULL, 1, 0, "portable", &g2);
        CHECK(ok, "%s: portable failed", tc->spec);
        if (!ok || !g1.pe) { free_result(&g1); free_result(&g2); continue; }
        for (int g = 0; g < 2; g++) {
            const nk_array *x2 = g ? &in->x2 : NULL;
            const result *sc2 = g ? &g2 : &g1;
            result ref;
            if (g && !compute(tc->spec, &in->x1, x2, 1, 0, "portable", &ref)) { CHECK(0, "%s: portable failed", tc->spec); continue; }
            if (!g) ref = g1;
            for (int k = 0; k < 3; k++) {
                const char *isa = k < 2 ? isas[k] : "portable";
                if (k < 2 && !have[k]) continue;
                result r;
                if (k < 2) {
                    CHECK(compute(tc->spec, &in->x1, x2, 1, 0, isa, &r), "%s: %s failed", tc->spec, isa);
                    double e = rel2(&r, &ref);
                    /* the Mehler series (tanh, automatic order) is truncated per block of four
                     * vectors, whose width differs by instruction set: each sum is within its 5e-11
                     * bound of the exact value, so two instruction sets may differ by twice that */
                    const double tol = strstr(tc->spec, "tanh") && !strstr(tc->spec, "quad=") ? 1e-10 : 1e-13;
                    CHECK(e <= tol, "%s on %s (%s): %s vs portable, float64: %.3g", tc->spec, in->name,
                          g ? "x1, x2" : "Gram", isa, e);
                    worst[k] = fmax(worst[k], e);
                    free_result(&r);
                }
                CHECK(compute(tc->spec, &in->x1, x2, 1, 1, isa, &r), "%s: %s float32 failed", tc->spec, isa);
                double e = fmax(rel_scaled(&r.K, &ref.K, &g1.K, &sc2->K), rel_scaled(&r.T, &ref.T, &g1.T, &sc2->T));
                CHECK(e <= 1e-5, "%s on %s (%s): %s float32 vs float64: %.3g", tc->spec, in->name, g ? "x1, x2" : "Gram",
                      isa, e);
                worst32[k] = fmax(worst32[k], e);
                worst32_entry[k] = fmax(worst32_entry[k], rel2(&r, &ref));
                free_result(&r);
            }
            if (g) free_result(&ref);
        }
        free_result(&g1);
        free_result(&g2);
    }
    for (int k = 0; k < 2; k++)
        if (have[k]) printf("%s vs portable, float64: max relative error %.3g\n", isas[k], worst[k]);
    for (int k = 0; k < 3; k++)
        if (k == 2 || have[k])
            printf("%s float32 vs portable float64: max error %.3g in units of max(|K_ij|, sqrt(K_ii K_jj)) "
                   "(%.3g entrywise)\n", k < 2 ? isas[k] : "portable", worst32[k], worst32_entry[k]);
}

/* c. float32 on the benchmark architectures (small inputs) */
static void test_bench_f32(void)
{
    nthreads = 0;
    struct {
        const char *spec;
        size_t H, W, n;
        int full;     /* only without NK_TEST_QUICK */
    } bc[] = {
        {"w=1.41421356 b=0.1 [conv(3) relu]*21 gap dense", 12, 12, 4, 0},
        {"w=1.41421356 b=0.1 [conv(3) relu]*21 gap dense", 32, 32, 2, 1},
        {"w=1.41421356 b=0.1 [conv(3) relu]*21 flatten dense", 32, 32, 4, 0},
    };
    for (size_t b = 0; b < sizeof bc / sizeof *bc; b++) {
        if (bc[b].full && quick) { printf("bench f32: %s on %zux%zux3 skipped (NK_TEST_QUICK)\n", bc[b].spec, bc[b].H, bc[b].W); continue; }
        size_t sh[4] = {bc[b].n, bc[b].H, bc[b].W, 3};
        nk_array x = random_array(4, sh);
        /* every instruction set on the small input, the best one on the large */
        for (int k = 0; k < 3; k++) {
            const char *isa = k == 0 ? NULL : k == 1 ? "avx2" : "portable";
            if (k > 0 && bc[b].H * bc[b].W > 144) break;
            if (k == 1) {
                nk_plane_force_isa("avx2");
                int have = !strcmp(nk_plane_isa(), "avx2");
                nk_plane_force_isa(NULL);
                if (!have) continue;
            }
            nk_plane_force_isa(isa);
            const char *name = nk_plane_isa();
            nk_plane_force_isa(NULL);
            result r64, r32;
            int ok = compute(bc[b].spec, &x, NULL, 1, 0, isa, &r64) & compute(bc[b].spec, &x, NULL, 1, 1, isa, &r32);
            CHECK(ok && r64.pe > 0, "%s: failed or the engine declined", bc[b].spec);
            double ek = rel(&r32.K, &r64.K), et = rel(&r32.T, &r64.T);
            CHECK(ek <= 1e-5 && et <= 1e-5, "%s on %zux%zux3 (%s): float32 vs float64: NNGP %.3g NTK %.3g", bc[b].spec,
                  bc[b].H, bc[b].W, name, ek, et);
            printf("bench f32: %s on %zux%zux3, %zu samples (%s): float32 vs float64: NNGP %.3g, NTK %.3g\n", bc[b].spec,
                   bc[b].H, bc[b].W, bc[b].n, name, ek, et);
            if (bc[b].H * bc[b].W <= 144) {
                /* and the deep stack against the layer-by-layer path, float64 */
                result r;
                CHECK(compute(bc[b].spec, &x, NULL, 0, 0, NULL, &r), "%s: layer-by-layer failed", bc[b].spec);
                double e = rel2(&r64, &r);
                CHECK(e <= 1e-12, "%s on %zux%zux3 (%s): engine vs layer-by-layer: %.3g", bc[b].spec, bc[b].H, bc[b].W, name, e);
                printf("bench f64: %s on %zux%zux3 (%s): engine vs layer-by-layer %.3g\n", bc[b].spec, bc[b].H, bc[b].W, name, e);
                free_result(&r);
            }
            if (k == 0 && !b) {
                /* one thread gives the same bits as all of them */
                result s64, s32;
                nthreads = 1;
                ok = compute(bc[b].spec, &x, NULL, 1, 0, isa, &s64) & compute(bc[b].spec, &x, NULL, 1, 1, isa, &s32);
                nthreads = 0;
                CHECK(ok && rel2(&s64, &r64) == 0 && rel2(&s32, &r32) == 0, "%s: 1 thread vs %d: %.3g (float64), %.3g (float32)",
                      bc[b].spec, nk_num_threads(0), rel2(&s64, &r64), rel2(&s32, &r32));
                free_result(&s64);
                free_result(&s32);
            }
            free_result(&r64);
            free_result(&r32);
        }
        nk_array_free(&x);
    }
    nthreads = 1;
}

/* d. a sample paired with itself: the Gram's diagonal against x1 = x2 = that sample */
static void test_self_pairs(void)
{
    const char *specs[] = {"[conv(3) relu]*3 gap dense", "w=1.41421356 b=0.1 [conv(3) relu]*8 flatten dense",
                           "b=0.1 conv(3) erf conv(3) relu gap dense", "b=0.1 [conv(3) relu]*2 res(conv(3) relu conv(3)) relu gap dense",
                           "[conv(3) relu]*2 gap dense relu dense", "w=1.41421356 b=0.1 [conv(3) relu]*8 gap dense",
                           "w=1.41421356 [conv(3) relu]*2 avgpool(2) conv(3) relu gap dense",
                           "conv(3) relu conv(3,stride=2) relu res(conv(3) relu conv(3)) relu flatten dense"};
    double worst = 0;
    for (size_t s = 0; s < sizeof specs / sizeof *specs; s++)
        for (int in = IMG_A; in <= SEQ; in++)
            for (int k = 0; k < 3; k++) {
                const char *isa = k < 2 ? isas[k] : "portable";
                nk_plane_force_isa(isa);
                int have = !strcmp(nk_plane_isa(), isa);
                nk_plane_force_isa(NULL);
                if (!have) continue;
                const nk_array *x = &inp[in].x1;
                result gram;
                if (!compute(specs[s], x, NULL, 1, 0, isa, &gram)) { CHECK(0, "%s failed", specs[s]); continue; }
                CHECK(gram.pe > 0, "%s on %s: the engine declined", specs[s], inp[in].name);
                size_t n = x->shape[0], len = sample_len(x);
                double d = 0;
                for (size_t i = 0; i < n; i++) {
                    nk_array one;
                    size_t sh[4];
                    memcpy(sh, x->shape, sizeof sh);
                    sh[0] = 1;
                    nk_array_alloc(&one, x->ndim, sh, NULL);
                    memcpy(one.data, x->data + i * len, len * sizeof(double));
                    result r;
                    if (compute(specs[s], &one, &one, 1, 0, isa, &r)) {
                        d = fmax(d, nk_relerr(r.K.data[0], gram.K.data[i * n + i], 1e-300));
                        d = fmax(d, nk_relerr(r.T.data[0], gram.T.data[i * n + i], 1e-300));
                    } else CHECK(0, "%s: x1 = x2 failed", specs[s]);
                    free_result(&r);
                    nk_array_free(&one);
                }
                CHECK(d <= 1e-14, "%s on %s (%s): Gram diagonal vs x1 = x2: %.3g", specs[s], inp[in].name, isa, d);
                worst = fmax(worst, d);
                free_result(&gram);
            }
    printf("Gram diagonal vs the same pair as x1 = x2 (float64, every instruction set): max relative difference %.3g\n", worst);
}

/* e. an all-zero image in the batch (and one zero but for a row) */
static void test_zero_image(void)
{
    const char *specs[] = {"[conv(3) relu]*3 gap dense", "b=0.1 [conv(3) relu]*3 gap dense",
                           "[conv(3) relu]*3 flatten dense", "w=1.41421356 b=0.1 [conv(3) relu]*3 flatten dense",
                           "b=0.1 conv(3) erf conv(3) relu gap dense", "[conv(3) relu]*2 gap dense relu dense",
                           "conv(3) relu avgpool(2) conv(3) relu gap dense", "conv(3,stride=2) relu conv(3) relu gap dense",
                           "b=0.1 conv(3) relu res(conv(3) relu conv(3)) relu flatten dense"};
    size_t sh[4] = {4, 6, 5, 2};
    nk_array x1 = random_array(4, sh);
    sh[0] = 3;
    nk_array x2 = random_array(4, sh);
    size_t len = 6 * 5 * 2;
    memset(x1.data + 1 * len, 0, len * sizeof(double));
    memset(x2.data + 0 * len, 0, len * sizeof(double));
    /* and an image zero but for its first row: zero variances at the positions far from it */
    memset(x1.data + 3 * len + 5 * 2, 0, (len - 5 * 2) * sizeof(double));
    double worst = 0, worst_t = 0;
    for (size_t s = 0; s < sizeof specs / sizeof *specs; s++)
        for (int g = 0; g < 2; g++) {
            const nk_array *y = g ? &x2 : NULL;
            result ref;
            CHECK(compute(specs[s], &x1, y, 0, 0, NULL, &ref) && all_finite(&ref), "%s: layer-by-layer with a zero image", specs[s]);
            for (int k = 0; k < 3; k++)
                for (int f32 = 0; f32 < 2; f32++) {
                    const char *isa = k < 2 ? isas[k] : "portable";
                    nk_plane_force_isa(isa);
                    int have = !strcmp(nk_plane_isa(), isa);
                    nk_plane_force_isa(NULL);
                    if (!have) continue;
                    result r;
                    int ok = compute(specs[s], &x1, y, 1, f32, isa, &r);
                    CHECK(ok && r.pe > 0 && all_finite(&r), "%s (%s, %s, %s): a zero image gives a non-finite kernel", specs[s],
                          isa, f32 ? "float32" : "float64", g ? "x1, x2" : "Gram");
                    double ek = rel(&r.K, &ref.K), et = rel(&r.T, &ref.T);
                    double tol = f32 ? 1e-5 : 1e-12;
                    CHECK(ek <= tol, "%s (%s, %s, %s): zero image: NNGP vs layer-by-layer %.3g", specs[s], isa,
                          f32 ? "float32" : "float64", g ? "x1, x2" : "Gram", ek);
                    CHECK(et <= tol, "%s (%s, %s, %s): zero image: NTK vs layer-by-layer %.3g", specs[s], isa,
                          f32 ? "float32" : "float64", g ? "x1, x2" : "Gram", et);
                    if (!f32) { worst = fmax(worst, ek); worst_t = fmax(worst_t, et); }
                    free_result(&r);
                }
            free_result(&ref);
        }
    printf("zero image in the batch (float64, every instruction set): NNGP vs layer-by-layer %.3g, NTK %.3g\n", worst, worst_t);
    nk_array_free(&x1);
    nk_array_free(&x2);
}

/* f. without biases a ReLU network is positively homogeneous of degree 1 in each sample:
 * K(a x, b x') = a b K(x, x'), and the NTK alike, whatever the architecture's shape.  Fresh
 * samples (no two collinear: see the end for a collinear pair). */
static void test_homogeneity(void)
{
    const char *specs[] = {"[conv(3) relu]*4 gap dense", "w=1.41421356 [conv(3) relu]*4 flatten dense",
                           "conv(2) relu dense relu conv(5x3) relu gap dense", "[conv(3) relu]*2 gap dense relu dense"};
    const double scale[] = {1000.0, 1e-3, 3.0, 0.5};
    size_t sample[3] = {5, 7, 3};
    inputs in = make_inputs("5x7x3", 3, sample, 4, 4);
    for (size_t i = 0; i < sample_len(&in.x2); i++) in.x2.data[sample_len(&in.x2) + i] = gauss();   /* no shared sample */
    nk_array y1, y2;
    size_t len = sample_len(&in.x1), n1 = in.x1.shape[0], n2 = in.x2.shape[0];
    nk_array_alloc(&y1, in.x1.ndim, in.x1.shape, NULL);
    nk_array_alloc(&y2, in.x2.ndim, in.x2.shape, NULL);
    for (size_t i = 0; i < n1 * len; i++) y1.data[i] = in.x1.data[i] * scale[(i / len) % 4];
    for (size_t i = 0; i < n2 * len; i++) y2.data[i] = in.x2.data[i] * scale[(i / len + 2) % 4];
    double worst[2] = {0, 0};
    for (size_t s = 0; s < sizeof specs / sizeof *specs; s++)
        for (int f32 = 0; f32 < 2; f32++) {
            result r, q;
            int ok = compute(specs[s], &in.x1, &in.x2, 1, f32, NULL, &r) & compute(specs[s], &y1, &y2, 1, f32, NULL, &q);
            CHECK(ok && r.pe > 0, "%s: failed or the engine declined", specs[s]);
            if (!ok) { free_result(&r); free_result(&q); continue; }
            double e = 0;
            for (size_t i = 0; i < n1; i++)
                for (size_t j = 0; j < n2; j++) {
                    double ab = scale[i % 4] * scale[(j + 2) % 4];
                    e = fmax(e, nk_relerr(q.K.data[i * n2 + j], ab * r.K.data[i * n2 + j], 1e-300));
                    e = fmax(e, nk_relerr(q.T.data[i * n2 + j], ab * r.T.data[i * n2 + j], 1e-300));
                }
            CHECK(e <= (f32 ? 1e-5 : 1e-13), "%s (%s): K(a x, b x') vs a b K(x, x'): %.3g", specs[s], f32 ? "float32" : "float64", e);
            worst[f32] = fmax(worst[f32], e);
            free_result(&r);
            free_result(&q);
        }
    printf("homogeneity K(a x, b x') = a b K(x, x'), a, b in [1e-3, 1e3] (%s): float64 %.3g, float32 %.3g\n", nk_plane_isa(),
           worst[0], worst[1]);
    /* A collinear pair (3 z, z / 2) against 1.5 K(z, z): the correlation is 1 only to rounding,
     * and the ReLU's angle theta ~ sqrt(2 (1 - rho)) turns a rounding of 1e-16 in rho into 1e-8
     * in theta, so the NTK factor (pi - theta) / 2 pi moves by ~1e-9 in either path (the pair
     * (z, z) is exact: ab - c^2 is exactly 0).  Measured for the record, bounded by sqrt(eps). */
    {
        nk_array z, z3, zh;
        size_t sh[4] = {1, 5, 7, 3};
        nk_array_alloc(&z, 4, sh, NULL);
        nk_array_alloc(&z3, 4, sh, NULL);
        nk_array_alloc(&zh, 4, sh, NULL);
        for (size_t i = 0; i < len; i++) { z.data[i] = in.x1.data[i]; z3.data[i] = 3 * z.data[i]; zh.data[i] = 0.5 * z.data[i]; }
        for (int engine = 1; engine >= 0; engine--) {
            result r, q;
            int ok = compute(specs[0], &z, &z, engine, 0, NULL, &r) & compute(specs[0], &z3, &zh, engine, 0, NULL, &q);
            double ek = ok ? nk_relerr(q.K.data[0], 1.5 * r.K.data[0], 1e-300) : INFINITY;
            double et = ok ? nk_relerr(q.T.data[0], 1.5 * r.T.data[0], 1e-300) : INFINITY;
            CHECK(ek <= 1.5e-8 && et <= 1.5e-8, "%s, %s: K(3 z, z/2) vs 1.5 K(z, z): NNGP %.3g, NTK %.3g", specs[0],
                  engine ? "engine" : "layer-by-layer", ek, et);
            printf("collinear pair K(3 z, z/2) vs 1.5 K(z, z), %s, float64 (%s): NNGP %.3g, NTK %.3g\n", specs[0],
                   engine ? "engine" : "layer-by-layer", ek, et);
            free_result(&r);
            free_result(&q);
        }
        nk_array_free(&z);
        nk_array_free(&z3);
        nk_array_free(&zh);
    }
    nk_array_free(&y1);
    nk_array_free(&y2);
    free_inputs(&in);
}

/* g: a level with Mehler layers runs groups of planes through each segment of its ops (plane.c):
 * an entry's operations do not depend on the group, so every group size gives the same bits.
 * 16x16: a da's 31 planes (~2-12 KB of buffers each in float64, half that in float32) fill
 * several groups of a 32 KB budget, one of 1 byte holds one plane, one of 64 MB all of them; a residual block is cut
 * by the segments (its saved input kept per plane), a pool leads to a second level. */
static void test_groups(void)
{
    const char *spec = "w=1.3 b=0.1 conv(3) tanh res(conv(3) sigmoid conv(3)) avgpool(2) conv(3) swish relu "
                       "conv(3) softplus gap dense";
    const size_t shape[4] = {3, 16, 16, 2};
    unsigned long long seed = 29;
    nk_array x = nk_test_random_array(4, shape, &seed);
    const size_t budget[3] = {1, 32768, (size_t)64 << 20};
    for (int f32 = 0; f32 < 2; f32++) {
        nk_array K[3] = {{0}}, T[3] = {{0}};
        for (int b = 0; b < 3; b++) {
            nk_error err = {{0}};
            nk_plane_group_bytes = budget[b];
            int pe = 0;
            CHECK(nk_test_kernel_path(spec, &x, 1, f32, &K[b], &T[b], &pe, &err) == NK_OK, "%s: %s", spec, err.msg);
            CHECK(pe > 0, "%s: the plane engine runs it", spec);
        }
        nk_plane_group_bytes = 0;
        for (int b = 1; b < 3; b++)
            CHECK(K[0].data && K[b].data && !memcmp(K[0].data, K[b].data, 9 * sizeof(double)) &&
                      !memcmp(T[0].data, T[b].data, 9 * sizeof(double)),
                  "%s, %s: groups of a %zu-byte budget give other bits than one plane at a time", spec,
                  f32 ? "float32" : "float64", budget[b]);
        for (int b = 0; b < 3; b++) { nk_array_free(&K[b]); nk_array_free(&T[b]); }
    }
    double e64, e32, scale;
    int pe;
    nk_plane_group_bytes = 32768;
    if (nk_test_engine_vs_layers(spec, &x, &e64, &e32, &scale, &pe))
        CHECK(e64 <= 1e-9 && e32 <= 1e-5, "%s: engine (groups) vs layer by layer: float64 %.3g, float32 %.3g", spec,
              e64, e32);
    nk_plane_group_bytes = 0;
    printf("groups of planes vs layer by layer (%s): float64 %.3g, float32 %.3g\n", spec, e64, e32);
    nk_array_free(&x);
}

int main(void)
{
    quick = getenv("NK_TEST_QUICK") != NULL;
    make_all_inputs();
    double t = now();
    test_vs_layer_path();
    printf("(a) %.2f s\n", now() - t); t = now();
    test_isas();
    printf("(b) %.2f s\n", now() - t); t = now();
    test_bench_f32();
    printf("(c) %.2f s\n", now() - t); t = now();
    test_self_pairs();
    printf("(d) %.2f s\n", now() - t); t = now();
    test_zero_image();
    printf("(e) %.2f s\n", now() - t); t = now();
    test_homogeneity();
    printf("(f) %.2f s\n", now() - t); t = now();
    test_groups();
    printf("(g) %.2f s\n", now() - t); t = now();
    for (int i = 0; i < NINPUTS; i++) free_inputs(&inp[i]);
    return nk_test_summary("test_plane");
}
