/* plane.c -- the plane engine: a stack of stride-1 convolutions and activations on the full
 * (or diagonal) covariance of a pair, one "plane" at a time.
 *
 * A convolution moves both positions of a covariance entry by the same offset,
 *   K'[p, p'] = mean over d of K[p + d, p' + d],
 * and an activation acts entry by entry.  So the displacement p - p' = (di, da) never changes
 * along such a stack: the P x P covariance splits into (2H-1)(2W-1) independent planes, each an
 * ordinary image of (H-|di|) x (W-|da|) entries on which the conv is a plain 2-D window sum with
 * zero padding.  A plane of K and T (NTK) fits in the L1/L2 cache, so every layer of the stack
 * runs on it while it is there: the P x P matrices never pass through memory, which is what
 * bounds the layer-by-layer recursion.  A flatten readout needs only the plane (0, 0), the
 * diagonal; a GAP readout sums every plane at the end.
 *
 * The hot code (plane_body.h) is compiled for AVX-512 and AVX2 (with FMA) and portably, in
 * float64 and float32, and chosen once at run time (NK_ISA=avx512|avx2|portable overrides, for
 * tests).  The portable float64 variant is the reference the others are tested against. */
#include "internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define NK_X86_SIMD 1
#include <immintrin.h>
#else
#define NK_X86_SIMD 0
#endif
#include <string.h>


/* asin(sqrt t)/sqrt t on [0, sin^2(pi/8)]: the Chebyshev interpolants of degree 10 (float64)
 * and 4 (float32) converted to monomials, highest first, for Horner's rule.  Measured against
 * an 80-bit reference on 400,001 points, evaluated in the working precision: max relative
 * error 5.6e-16 (float64), 6.9e-8 (float32). */
static const double asin_c64[11] = {
    0.016859105827545802, 0.006544247999501793, 0.012223604632615315, 0.013875446312602372,
    0.017360779894227466, 0.02237167620508159, 0.030381962767792342, 0.04464285677165271,
    0.07500000000223579, 0.1666666666666896, 0.9999999999999997};
static const float asin_c32[5] = {0.04036556929349899f, 0.04328441992402077f, 0.07507298141717911f,
                                  0.16666531562805176f, 1.0f};
#define ASIN_BODY(C, N, FMA_)                                                                          \
    __typeof__(t) p = C[0];                                                                            \
    for (int i = 1; i < N; i++) p = FMA_(p, t, C[i]);                                                  \
    return p;

/* Entry c of a row of the combined plane of da (layout in plane_body.h): the column r of the
 * first sample and r2 of the second it pairs; 0 for a separator. */
static inline int nk_plane_column(const nk_pgeom *g, int da, int c, int *r, int *r2)
{
    const int W = g->W, sw = g->sw;
    if (c < W - da) { *r = da + c; *r2 = c; return 1; }
    if (c >= W - da + sw && c < W + sw) { *r = c - (W - da + sw); *r2 = c - sw; return 1; }
    return 0;
}

/* ---- instantiations: (float64, float32) x (AVX-512, AVX2, portable) ---- */
#define R double
#define SFX f64
#define SQRT(x) __builtin_sqrt(x)
#define FMAB __builtin_fma
#define ASIN_C asin_c64
#define ASIN_N 11
#define NV 8
#define VS pd
#define VEPI epi64
#define MT512 __mmask8
#define VT512 __m512d
#define VT256 __m256d
#include "plane_inst.h"

#define R float
#define SFX f32
#define SQRT(x) __builtin_sqrtf(x)
#define FMAB __builtin_fmaf
#define ASIN_C asin_c32
#define ASIN_N 5
#define NV 16
#define VS ps
#define VEPI epi32
#define MT512 __mmask16
#define VT512 __m512
#define VT256 __m256
#include "plane_inst.h"

/* ---- dispatch ---- */
typedef void (*plane64_fn)(const nk_pgeom *, const double *, const double *, const double *, const double *,
                           const double *, const double *, double *, double *, int, int, double *, double *, double *);
typedef void (*plane32_fn)(const nk_pgeom *, const float *, const float *, const float *, const float *,
                           const float *, const float *, float *, float *, int, int, double *, double *, double *);

static const char *forced_isa;
static int picked_gen;   /* bumped by nk_plane_force_isa: the dispatch is chosen again */

void nk_plane_force_isa(const char *isa)
{
    forced_isa = isa;
    __atomic_add_fetch(&picked_gen, 1, __ATOMIC_RELEASE);
}

typedef void (*grid_fn)(double *, double *, int, int, const double *, size_t, size_t, const double *, const double *,
                        const double *, const double *);
typedef void (*points_fn)(double *, double *, size_t, const double *, const double *);

const char *nk_plane_isa(void)
{
    const char *env = forced_isa ? forced_isa : getenv("NK_ISA");
#if NK_X86_SIMD
    __builtin_cpu_init();
    int has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
    int has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (env && !strcmp(env, "portable")) return "portable";
    if (env && !strcmp(env, "avx2") && has2) return "avx2";
    if (has512 && !(env && !strcmp(env, "avx2"))) return "avx512";
    if (has2) return "avx2";
#else
    (void)env;
#endif
    return "portable";
}

typedef struct {
    plane64_fn f64;
    plane32_fn f32;
    grid_fn grid;
    points_fn points;
} fns;

const char *nk_simd_isa(void)
{
    return nk_plane_isa();
}

static void pick(fns *f)
{
    const char *isa = nk_plane_isa();
    *f = (fns){plane_f64_portable, plane_f32_portable, relu_grid_f64_portable, relu_points_f64_portable};
#if NK_X86_SIMD
    if (!strcmp(isa, "avx512"))
        *f = (fns){plane_f64_avx512, plane_f32_avx512, relu_grid_f64_avx512, relu_points_f64_avx512};
    else if (!strcmp(isa, "avx2"))
        *f = (fns){plane_f64_avx2, plane_f32_avx2, relu_grid_f64_avx2, relu_points_f64_avx2};
#else
    (void)isa;
#endif
}

static plane64_fn f64fn;
static plane32_fn f32fn;
static grid_fn gridfn;
static points_fn pointsfn;

static void dispatch(void)
{
    static int picked;   /* picked_gen + 1 of the choice made */
    const int gen = __atomic_load_n(&picked_gen, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&picked, __ATOMIC_ACQUIRE) != gen + 1) {
        fns f;
        pick(&f);
        f64fn = f.f64;
        f32fn = f.f32;
        gridfn = f.grid;
        pointsfn = f.points;
        __atomic_store_n(&picked, gen + 1, __ATOMIC_RELEASE);
    }
}

void nk_simd_prepare(void)
{
    dispatch();
}

void nk_relu_points(double *K, double *T, size_t n, const double *A, const double *B)
{
    dispatch();
    pointsfn(K, T, n, A, B);
}

void nk_relu_grid(double *K, double *T, int nr, int nc, const double *a, size_t astep, size_t plen, const double *b,
                  const double *sb, const double *rb, const double *aff)
{
    dispatch();
    gridfn(K, T, nr, nc, a, astep, plen, b, sb, rb, aff);
}

/* ---- set-up ---- */

static int plane_op(const nk_plan *p, const nk_op *op)
{
    if (op->mode != p->in_mode || op->out_mode != p->in_mode) return 0;
    if (op->in_hw[0] != p->in_hw[0] || op->in_hw[1] != p->in_hw[1] || op->out_hw[0] != p->in_hw[0] ||
        op->out_hw[1] != p->in_hw[1])
        return 0;
    if (op->kind == OP_ACT) return 1;
    return op->kind == OP_AFFINE && op->s[0] == 1 && op->s[1] == 1 && op->pad != PAD_CIRCULAR;
}

int nk_plane_setup(const nk_plan *p, nk_pgeom *g)
{
    memset(g, 0, sizeof *g);
    if (p->mlp || (p->in_mode != NK_MODE_FULL && p->in_mode != NK_MODE_DIAG)) return 0;
    int e = 0, convs = 0;
    while (e < p->nops && plane_op(p, &p->ops[e])) convs += p->ops[e++].kind == OP_AFFINE;
    if (!convs) return 0;
    g->ops = p->ops;
    g->s = 0;
    g->e = e;
    /* a 1-D input (W = 1) runs along the long axis: the engine's axes are swapped */
    g->swap = p->in_hw[1] == 1 && p->in_hw[0] > 1;
    g->H = p->in_hw[g->swap];
    g->W = p->in_hw[!g->swap];
    g->C = p->in_c;
    g->diag = p->in_mode == NK_MODE_DIAG;
    g->gap = !g->diag && e < p->nops && p->ops[e].kind == OP_GAP;
    g->quad = p->quad_order;
    for (int i = 0; i < e; i++) {
        const nk_op *op = &p->ops[i];
        if (op->kind != OP_AFFINE) continue;
        int b0 = op->pb[g->swap], a0 = op->f[g->swap] - 1 - b0, b1 = op->pb[!g->swap], a1 = op->f[!g->swap] - 1 - b1;
        if (b0 > g->HB0) g->HB0 = b0;
        if (a0 > g->HA0) g->HA0 = a0;
        if (b1 > g->HB1) g->HB1 = b1;
        if (a1 > g->HA1) g->HA1 = a1;
    }
    g->rows = g->H + g->HB0 + g->HA0 + 1;
    g->sw = g->HB1 > g->HA1 ? g->HB1 : g->HA1;
    if (g->sw < 1) g->sw = 1;
    g->Wp = g->W + 2 * g->sw;
    /* the engine's self state of a sample: [a | 1/sqrt a] per activation of the stack (the plan's
     * has sqrt a too; the stack's activations come first there, 3 P apart) */
    for (int i = 0; i < e; i++)
        if (p->ops[i].kind == OP_ACT) g->self_end += 2 * (size_t)g->H * g->Wp;
    return e;
}

/* The per-thread buffer, in elements of either precision: a header, both samples' data and self
 * states laid out for the current da (see plane_body.h), the separator mask tf (1, or 0 in a
 * separator), then eight planes. */
typedef struct {
    size_t xa, xb, sa, sb, tf, gram, planes, total;
} layout;

/* With this many channels or more, K0 of a full-mode pair comes from one GEMM per pair (the
 * channel loop per plane costs C multiply-adds per entry, the GEMM ~ a gather). */
#define GRAM_CHANNELS 32

static int use_gram(const nk_pgeom *g)
{
    return g->C >= GRAM_CHANNELS && !g->diag;
}

static layout buffer_layout(const nk_pgeom *g)
{
    layout l;
    const size_t data = nk_plane_sample_len(g) + 64, self = nk_plane_self_len(g) + 64;
    l.xa = 16;
    l.xb = l.xa + data;
    l.sa = l.xb + data;
    l.sb = l.sa + self;
    l.tf = l.sb + self;
    l.gram = l.tf + (size_t)(g->H + 2) * g->Wp + 64;
    l.planes = l.gram + (use_gram(g) ? (size_t)g->H * g->Wp * g->H * g->Wp + 64 : 0);
    l.total = l.planes + 8 * ((size_t)g->rows * g->Wp + 32) + 64;
    return l;
}

size_t nk_plane_work(const nk_pgeom *g)
{
    return buffer_layout(g).total;
}

size_t nk_plane_sample_len(const nk_pgeom *g)
{
    return (size_t)g->C * g->H * g->Wp;
}

size_t nk_plane_self_len(const nk_pgeom *g)
{
    return g->self_end;
}

/* Rows of the da = 0 layout ([0..W-1 | 2 sw zeros], Wp elements) into the layout of da: the
 * first sample's [da..W-1 | 0 | 0..da-1 | 0], the second's [0..W-da-1 | 0 | W-da..W-1 | 0]
 * (sw zeros each): entry c of a row then pairs the two samples' columns of one displacement
 * (da or da - W).  A row is two pieces, src + off1 -> dst and src + off2 -> dst + at2.
 *
 * exact: the separators are written as zeros (the data: K0 must be 0 there).  Otherwise (the
 * self states, which the engine reads in a separator only where its output is masked off)
 * a row is copied as two whole rows of W elements, rounded up to a vector, the second over
 * the first's tail and the next rows over the second's overrun: no short variable-length
 * loops; the separators then hold copies of finite values. */
#define ARRANGE(T)                                                                                   \
    do {                                                                                             \
        T *restrict d = (T *)dst;                                                                    \
        const T *restrict s = (const T *)src;                                                        \
        size_t i = 0;                                                                                \
        if (!exact)                                                                                  \
            for (; i + tail < rows; i++, d += Wp, s += Wp) {                                         \
                for (int c = 0; c < Wv; c++) d[c] = s[off1 + c];                                     \
                for (int c = 0; c < Wv; c++) d[at2 + c] = s[off2 + c];                               \
            }                                                                                        \
        for (; i < rows; i++, d += Wp, s += Wp) {                                                    \
            for (int c = 0; c < len1; c++) d[c] = s[off1 + c];                                       \
            for (int z = 0; z < sw; z++) d[len1 + z] = 0;                                            \
            for (int c = 0; c < W - len1; c++) d[at2 + c] = s[off2 + c];                             \
            for (int z = 0; z < sw; z++) d[W + sw + z] = 0;                                          \
        }                                                                                            \
    } while (0)

static void arrange(char *dst, const char *src, size_t rows, const nk_pgeom *g, int da, int second, size_t el,
                    int exact)
{
    const int W = g->W, Wp = g->Wp, sw = g->sw, Wv = (W + 15) / 16 * 16;
    /* the whole-row copies of row i reach W + sw + Wv elements past its start: the last rows
     * they could carry past the end of the arrays go the exact way */
    const size_t tail = (size_t)(W + sw + Wv + Wp - 1) / Wp;
    /* the first piece: len1 elements from column off1; the second from off2, at at2 */
    const int len1 = W - da, off1 = second ? 0 : da, off2 = second ? W - da : 0, at2 = W - da + sw;
    if (el == sizeof(float)) ARRANGE(float);
    else ARRANGE(double);
}
#undef ARRANGE

void nk_plane_pair(const nk_pgeom *g, int f32, int all, const void *xa, const void *xb, const void *sa,
                   const void *sb, void *self_out, void *buf, double *sums, double *outK, double *outT)
{
    dispatch();
    if (sums) sums[0] = sums[1] = 0;
    if (self_out) sa = sb = self_out;
    const size_t el = f32 ? sizeof(float) : sizeof(double);
    const layout l = buffer_layout(g);
    char *B = buf;
    char *xa_r = B + l.xa * el, *xb_r = B + l.xb * el, *sa_r = B + l.sa * el, *sb_r = B + l.sb * el;
    char *tf = B + l.tf * el, *planes = B + l.planes * el, *gram = NULL;
    if (use_gram(g)) {
        /* the pair's Gram <x_p, x'_p'>/C over the positions of the da = 0 layout */
        const int Pp = g->H * g->Wp;
        gram = B + l.gram * el;
        if (f32)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Pp, Pp, g->C, (float)(1.0 / g->C), xa, Pp, xb, Pp,
                        0.0f, (float *)gram, Pp);
        else
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Pp, Pp, g->C, 1.0 / g->C, xa, Pp, xb, Pp, 0.0,
                        (double *)gram, Pp);
    }
    int *cached = buf;   /* header: da + 1 and precision of the mask in tf */
    const size_t self_rows = nk_plane_self_len(g) / g->Wp;
    /* the plane (0, 0) first: in the self pass it records the variances the others read */
    const int nda = all && !g->diag ? g->W : 1, ndi = all && !g->diag ? 2 * g->H - 1 : 1;
    for (int da = 0; da < nda; da++) {
        /* the samples' own layout is that of da = 0 */
        const void *xa_d = xa, *xb_d = xb, *sa_d = sa, *sb_d = sb;
        if (da > 0) {
            if (!gram) {   /* with the Gram, K0 does not read the data */
                arrange(xa_r, xa, (size_t)g->C * g->H, g, da, 0, el, 1);
                arrange(xb_r, xb, (size_t)g->C * g->H, g, da, 1, el, 1);
            }
            arrange(sa_r, sa, self_rows, g, da, 0, el, 0);
            arrange(sb_r, sb, self_rows, g, da, 1, el, 0);
            xa_d = xa_r; xb_d = xb_r; sa_d = sa_r; sb_d = sb_r;
        }
        if (cached[0] != da + 1 || cached[1] != f32 + 1) {
            for (int r = 0; r < g->H + 2; r++)
                for (int c = 0; c < g->Wp; c++) {
                    int col, col2;
                    const int on = nk_plane_column(g, da, c, &col, &col2);
                    const double v = on ? 1 : 0;
                    if (f32) ((float *)tf)[(size_t)r * g->Wp + c] = (float)v;
                    else ((double *)tf)[(size_t)r * g->Wp + c] = v;
                }
            cached[0] = da + 1;
            cached[1] = f32 + 1;
        }
        for (int k = 0; k < ndi; k++) {
            const int di = k < g->H ? k : g->H - 1 - k;
            void *so = (di || da) ? NULL : self_out;
            if (f32)
                f32fn(g, xa_d, xb_d, sa_d, sb_d, (float *)tf, (float *)gram, so, (float *)planes, di, da, sums, outK,
                      outT);
            else
                f64fn(g, xa_d, xb_d, sa_d, sb_d, (double *)tf, (double *)gram, so, (double *)planes, di, da, sums,
                      outK, outT);
        }
    }
}

void nk_plane_data(const nk_plan *p, int f32, const double *x, void *out)
{
    /* channels last [P][C] -> channel-planar [C][H][Wp] in the layout of da = 0 (each row
     * followed by 2 sw zeros), in the engine's precision */
    const nk_pgeom *g = &p->pg;
    const size_t C = (size_t)g->C;
    for (size_t c = 0; c < C; c++)
        for (int q = 0; q < g->H; q++)
            for (int r = 0; r < g->Wp; r++) {
                const double v = r < g->W ? x[((size_t)q * g->W + r) * C + c] : 0;
                const size_t o = (c * g->H + q) * g->Wp + r;
                if (f32) ((float *)out)[o] = (float)v;
                else ((double *)out)[o] = v;
            }
}
