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
#include <unistd.h>


/* asin(sqrt t)/sqrt t: near-minimax polynomials for the relative error (Lawson's iteration on
 * 600 Chebyshev points, 40 digits: tools/asin_poly.py), highest first, for Horner's rule.
 * Float64: degree 9 on [0, sin^2(pi/8)] (three sectors, RELU_SECT2 0); float32: degree 6 on
 * [0, 1/2] (two sectors, RELU_SECT2 1; fitted to 0.5005, past the rounding of the sector test).
 * Evaluated with FMA in the working precision from the rounded coefficients, against a
 * 40-digit reference on 20,001 points: max relative error 3.0e-16 (float64), 1.8e-7 (float32;
 * the degree-3 polynomial of three sectors had 2.3e-7).  (Float64 degree 10 gave 1.2e-16, one
 * FMA more per entry: ~3% of the fused loop's time; float32 degree 5 gave 8.3e-7 and raised
 * the benchmark architectures' float32 error fourfold, to 1.5e-6, for 2-4% of its time.) */
static const double asin_c64[10] = {
    0.019019509896701304, 0.008293852909934075, 0.01456202391384513, 0.017288168173575195,
    0.022376432996917238, 0.03038177343681958,  0.04464286105707622, 0.07499999995461745,
    0.16666666666687044,  0.9999999999999999};
static const float asin_c32[7] = {0.10339576750993729f,  -0.05870664492249489f, 0.06298588216304779f,
                                  0.03828463703393936f, 0.07557445764541626f,  0.16664747893810272f,
                                  1.0000001192092896f};
/* e^r on |r| <= ln2/2 (vexp), sinh(c)/c and cosh c on |c| < 1 (exp_row): Taylor coefficients
 * 1/n!, highest first.  The first term left out bounds the relative error: float64 takes all,
 * r^14/14! < 5e-18, c^20/21! < 2e-20, c^20/20! < 5e-19; float32 the last 8, 6 and 6
 * (r^8/8! < 6e-9, c^12/13! < 2e-10, c^12/12! < 3e-9). */
static const double exp_taylor[14] = {
    1.6059043836821613e-10, 2.08767569878681e-09, 2.505210838544172e-08, 2.755731922398589e-07,
    2.7557319223985893e-06, 2.48015873015873e-05, 0.0001984126984126984, 0.001388888888888889,
    0.008333333333333333,   0.041666666666666664, 0.16666666666666666,  0.5, 1.0, 1.0};
static const double sinhc_taylor[10] = {
    8.22063524662433e-18,  2.8114572543455206e-15, 7.647163731819816e-13, 1.6059043836821613e-10,
    2.505210838544172e-08, 2.7557319223985893e-06, 0.0001984126984126984, 0.008333333333333333,
    0.16666666666666666,   1.0};
static const double cosh_taylor[10] = {
    1.5619206968586225e-16, 4.779477332387385e-14, 1.1470745597729725e-11, 2.08767569878681e-09,
    2.755731922398589e-07,  2.48015873015873e-05,  0.001388888888888889,  0.041666666666666664,
    0.5,                    1.0};
/* the most 3x3 ReLU layers in one pipeline (conv3_chain), and the window it takes: 3x3, one
 * padding column each side, at most two padding rows above (op->f, op->pb with the plane's swap) */
#define C3_MAX 64
#define C3_SHAPE(op, sw) \
    ((op)->f[sw] == 3 && (op)->f[!(sw)] == 3 && (op)->pb[!(sw)] == 1 && (op)->pb[sw] <= 2)
/* The affine map T' = alpha M + w2 T + beta after the window mean M (K' = w2 M + b2): in the NTK
 * parameterization alpha = w2 and beta = b2, and T' = K' + w2 T is one FMA after K' (every path
 * of the engine forms it so, so that a sample's self pass and its pairs round alike) */
#define NTK_PARAM(op) ((op)->alpha == (op)->w2 && (op)->beta == (op)->b2)
#define ASIN_BODY(C, N, FMA_)                                                                          \
    __typeof__(t) p = C[0];                                                                            \
    for (int i = 1; i < N; i++) p = FMA_(p, t, C[i]);                                                  \
    return p;

/* Entry c of a row of the combined plane of da (layout in plane_body.h): the column r of the
 * first sample and r2 of the second it pairs. */
static inline void nk_plane_column(const nk_pgeom *g, int da, int c, int *r, int *r2)
{
    *r = c < g->W - da ? c + da : c - (g->W - da);
    *r2 = c;
}

/* Where a window along a row of the combined plane of da may reach (see plane_body.h): per
 * entry j of a plane (rows of W from its first), the weights wl, wr (1 if entry j - 1, j + 1 is
 * in the same part of the same row, else 0; in the engine's precision), the same as bits
 * (bit j of bl, br) and the part index seg[j] = 2 row + part (seg[-64..-1] = -1). */
typedef struct {
    const void *wl, *wr;
    const unsigned char *bl, *br;
    const int *seg;
} nk_pmask;

/* n rounded up to 16 elements: 64 bytes (float32) or 128 (float64), so that arrays laid out at
 * such offsets from a 64-byte boundary start on one */
static size_t up16(size_t n)
{
    return (n + 15) / 16 * 16;
}

/* The plane buffers (plane_body.h): a plane's first entry at nk_plane_base, after the zero rows
 * above it, and the next buffer nk_plane_stride elements on; both multiples of 16, so that every
 * row of a plane with W a multiple of the vector length starts on a 64-byte boundary. */
static size_t nk_plane_base(const nk_pgeom *g)
{
    return up16((size_t)g->HB0 * g->Wp);
}

static size_t nk_plane_stride(const nk_pgeom *g)
{
    /* the plane's rows and the zero rows below, a vector's tail and a vector's overrun */
    return up16(nk_plane_base(g) + (size_t)(g->rows - g->HB0) * g->Wp + 32);
}

/* Where a level's planes come from and go (plane_pairs): this level's store (level > 0: K0 and
 * T0 of every plane), the next level's store (accumulated), and room for the column maps of the
 * step down (2 W ints).  A store holds the planes (di, da) of its level, di = -(H-1) .. H-1, each
 * with its W combined planes of H - |di| rows of W (store_rows). */
typedef struct nk_prot nk_prot;
typedef struct {
    const void *srcK, *srcT;
    void *dstK, *dstT;
    int *cols;
    nk_prot *rot;   /* the first sample's Mehler terms still to rotate (da > 0), or NULL */
} nk_pio;
static void rotate_terms(nk_prot *rot, size_t so, int m);

/* One plane's run through a level's ops, which may go segment by segment (plane_pairs: a group
 * of planes through each segment before the next): the plane's own buffers (K and T in and
 * out, four of `stride` elements; two more per open residual block at res) and what a segment
 * leaves for the next. */
typedef struct {
    void *own, *res;
    size_t stride;
    int flip;                       /* K, T in are the second pair of own (an odd number of swaps) */
    double sc;                      /* the factor the stored K, T carry (see plane_body.h) */
    double res_sc[NK_PLANE_RES];    /* the same for each open residual block's saved input */
    /* a segment that ends with a Mehler layer may leave that layer's series to plane_pairs (defer
     * set): the group's planes then take it together, block by block (mehler_group), so that the
     * coefficient rows they share are read once from L2 for all of them.  mop: the layer's act
     * (NULL: nothing left); mk, mt: its K and T in place; ma, mb: its self states at the plane's
     * entry 0; mn: the plane's entries */
    int defer;
    const nk_op *mop;
    void *mk, *mt;
    const void *ma, *mb;
    int mn;
} nk_pseg;

/* entries of a store before the planes of displacement di: W^2 times the rows of the planes of
 * -(H-1) .. di - 1 */
static inline size_t store_rows(int H, int di)
{
    const size_t k = (size_t)(di + H - 1);
    if (di <= 0) return k * (k + 1) / 2;
    return (size_t)H * (H + 1) / 2 + (size_t)(di - 1) * H - (size_t)(di - 1) * di / 2;
}

/* ---- instantiations: (float64, float32) x (AVX-512, AVX2, portable) ---- */
#define R double
#define SFX f64
#define SQRT(x) __builtin_sqrt(x)
#define FMAB __builtin_fma
#define ASIN_C asin_c64
#define ASIN_N 10
#define RELU_SECT2 0
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
#define ASIN_N 7
#define RELU_SECT2 1
#define NV 16
#define VS ps
#define VEPI epi32
#define MT512 __mmask16
#define VT512 __m512
#define VT256 __m256
#include "plane_inst.h"

/* ---- dispatch ---- */
typedef void (*plane64_fn)(const nk_pgeom *, const double *, const double *, const double *, const double *,
                           const nk_pmask *, const double *, double *, double *, nk_pseg *, int, int, int, int,
                           const nk_pio *, double *, double *, double *);
typedef void (*plane32_fn)(const nk_pgeom *, const float *, const float *, const float *, const float *,
                           const nk_pmask *, const float *, float *, float *, nk_pseg *, int, int, int, int,
                           const nk_pio *, double *, double *, double *);

static const char *forced_isa;
static int picked_gen;   /* bumped by nk_plane_force_isa: the dispatch is chosen again */

void nk_plane_force_isa(const char *isa)
{
    forced_isa = isa;
    __atomic_add_fetch(&picked_gen, 1, __ATOMIC_RELEASE);
}

typedef void (*mgroup_fn)(nk_pseg *, int, int, int, nk_prot *);
typedef void (*grid_fn)(double *, double *, int, int, const double *, size_t, size_t, const double *, const double *,
                        const double *, const double *);
typedef void (*points_fn)(double *, double *, size_t, const double *, const double *);
typedef void (*points32_fn)(float *, float *, size_t, const float *, const float *);
typedef void (*exp_fn)(double *, const double *, size_t);
typedef void (*exp32_fn)(float *, const float *, size_t);

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
    points32_fn points32;
    exp_fn exp;
    exp32_fn exp32;
    mgroup_fn mg64, mg32;
} fns;

const char *nk_simd_isa(void)
{
    return nk_plane_isa();
}

static void pick(fns *f)
{
    const char *isa = nk_plane_isa();
    *f = (fns){plane_f64_portable, plane_f32_portable, relu_grid_f64_portable, relu_points_f64_portable,
               relu_points_f32_portable, exp_points_f64_portable, exp_points_f32_portable,
               mehler_group_f64_portable, mehler_group_f32_portable};
#if NK_X86_SIMD
    if (!strcmp(isa, "avx512"))
        *f = (fns){plane_f64_avx512, plane_f32_avx512, relu_grid_f64_avx512, relu_points_f64_avx512,
                   relu_points_f32_avx512, exp_points_f64_avx512, exp_points_f32_avx512,
                   mehler_group_f64_avx512, mehler_group_f32_avx512};
    else if (!strcmp(isa, "avx2"))
        *f = (fns){plane_f64_avx2, plane_f32_avx2, relu_grid_f64_avx2, relu_points_f64_avx2,
                   relu_points_f32_avx2, exp_points_f64_avx2, exp_points_f32_avx2,
                   mehler_group_f64_avx2, mehler_group_f32_avx2};
#else
    (void)isa;
#endif
}

static plane64_fn f64fn;
static plane32_fn f32fn;
static grid_fn gridfn;
static points_fn pointsfn;
static points32_fn points32fn;
static exp_fn expfn;
static exp32_fn exp32fn;
static mgroup_fn mg64fn, mg32fn;

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
        points32fn = f.points32;
        expfn = f.exp;
        exp32fn = f.exp32;
        mg64fn = f.mg64;
        mg32fn = f.mg32;
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

void nk_relu_points32(float *K, float *T, size_t n, const float *A, const float *B)
{
    dispatch();
    points32fn(K, T, n, A, B);
}

/* the vectorized exp of the instruction set in use (tests) */
void nk_exp_points(double *y, const double *x, size_t n)
{
    dispatch();
    expfn(y, x, n);
}

void nk_exp_points32(float *y, const float *x, size_t n)
{
    dispatch();
    exp32fn(y, x, n);
}

void nk_relu_grid(double *K, double *T, int nr, int nc, const double *a, size_t astep, size_t plen, const double *b,
                  const double *sb, const double *rb, const double *aff)
{
    dispatch();
    gridfn(K, T, nr, nc, a, astep, plen, b, sb, rb, aff);
}

/* ---- set-up ---- */

/* An op a level runs on its planes: a stride-1, non-circular conv or dense, an activation, or
 * the begin or end of a residual block, on this level's grid and mode. */
static int plane_op(const nk_op *op, nk_mode mode, const int hw[2])
{
    if (op->mode != mode || op->out_mode != mode) return 0;
    if (op->in_hw[0] != hw[0] || op->in_hw[1] != hw[1] || op->out_hw[0] != hw[0] || op->out_hw[1] != hw[1])
        return 0;
    if (op->kind == OP_ACT) return 1;
    if (op->kind == OP_RES_BEGIN) return op->slot < NK_PLANE_RES;
    if (op->kind == OP_RES_END) return op->saved_mode == mode;
    return op->kind == OP_AFFINE && op->s[0] == 1 && op->s[1] == 1 && op->pad != PAD_CIRCULAR;
}

/* An op that takes a level to the next grid: an average pool of windows no wider than their
 * stride (each position in at most one window: K'[Q, Q'] = mean over d, d' of
 * K[s Q + d - pb, s Q' + d' - pb], so the entries of the plane of displacement D go to the
 * planes near D / s), or a strided or valid conv (the window sum at every position, then the
 * positions s Q on both sides: the planes of displacements s E only). */
static int down_op(const nk_op *op, nk_mode mode, const int hw[2])
{
    if (op->mode != mode || op->pad == PAD_CIRCULAR || op->in_hw[0] != hw[0] || op->in_hw[1] != hw[1]) return 0;
    if (op->kind == OP_POOL) return mode == NK_MODE_FULL && op->f[0] <= op->s[0] && op->f[1] <= op->s[1];
    return op->kind == OP_AFFINE && (op->s[0] > 1 || op->s[1] > 1 || op->out_hw[0] != hw[0] || op->out_hw[1] != hw[1]);
}

/* A pool of one window over the whole grid: the global average pool */
static int pool_all(const nk_op *op)
{
    return op->kind == OP_POOL && op->out_hw[0] == 1 && op->out_hw[1] == 1 && op->f[0] == op->in_hw[0] &&
           op->f[1] == op->in_hw[1] && op->pb[0] == 0 && op->pb[1] == 0;
}

int nk_plane_setup(const nk_plan *p, nk_pgeom *lv)
{
    memset(lv, 0, NK_PLANE_LEVELS * sizeof *lv);
    if (p->mlp || (p->in_mode != NK_MODE_FULL && p->in_mode != NK_MODE_DIAG)) return 0;
    /* a 1-D input (W = 1) runs along the long axis: the engine's axes are swapped */
    const int swap = p->in_hw[1] == 1 && p->in_hw[0] > 1;
    int e = 0, convs = 0, nlev = 0, gap = 0, slots = 0;
    int hw[2] = {p->in_hw[0], p->in_hw[1]};
    nk_mode mode = p->in_mode;
    size_t self = 0;
    for (;;) {
        nk_pgeom *g = &lv[nlev++];
        g->ops = p->ops;
        g->s = e;
        g->swap = swap;
        g->H = hw[swap];
        g->W = hw[!swap];
        g->C = p->in_c;
        g->diag = mode == NK_MODE_DIAG;
        g->quad = p->quad_order;
        /* the level's ops, never ending inside a residual block (its state is saved on the level) */
        int depth = 0, safe = e;
        while (e < p->nops && plane_op(&p->ops[e], mode, hw)) {
            const nk_op *op = &p->ops[e++];
            depth += op->kind == OP_RES_BEGIN;
            depth -= op->kind == OP_RES_END;
            if (depth > slots) slots = depth;
            if (!depth) safe = e;
        }
        e = safe;
        const nk_op *nx = e < p->nops ? &p->ops[e] : NULL;
        const int down = !depth && nx && nlev < NK_PLANE_LEVELS && down_op(nx, mode, hw) && !pool_all(nx);
        if (down && nx->kind == OP_AFFINE) e++;   /* the conv's window sum and affine map run here */
        g->e = e;
        for (int i = g->s; i < e; i++) convs += p->ops[i].kind == OP_AFFINE;
        for (int i = g->s; i < e; i++) {
            const nk_op *op = &p->ops[i];
            if (op->kind != OP_AFFINE) continue;
            int b0 = op->pb[swap], a0 = op->f[swap] - 1 - b0, b1 = op->pb[!swap], a1 = op->f[!swap] - 1 - b1;
            if (b0 > g->HB0) g->HB0 = b0;
            if (a0 > g->HA0) g->HA0 = a0;
            if (b1 > g->HB1) g->HB1 = b1;
            if (a1 > g->HA1) g->HA1 = a1;
        }
        g->rows = g->H + g->HB0 + g->HA0 + 1;
        g->Wp = g->W;
        /* the engine's self state of a sample: [a | 1/sqrt a] per activation, level by level,
         * each level's part at a multiple of 16 elements */
        self = (self + 15) / 16 * 16;
        g->self_beg = self;
        for (int i = g->s; i < e; i++)
            if (p->ops[i].kind == OP_ACT) {
                p->ops[i].pself = self;
                /* [a | 1/sqrt a], and for the Mehler form its terms per position (plane_body.h:
                 * mehler_planes) */
                self += (nk_mehler_act(p->ops[i].act.kind) ? 2 + NK_MEHLER_REC : 2) * (size_t)g->H * g->Wp;
            }
        g->self_stop = self;
        if (!down) {
            gap = mode == NK_MODE_FULL && nx && (nx->kind == OP_GAP || pool_all(nx));
            break;
        }
        g->down = nx;
        for (int a = 0; a < 2; a++) {
            const int ax = a ? !swap : swap;
            const int pool = nx->kind == OP_POOL;
            g->moff[a] = pool ? nx->pb[ax] : 0;
            g->mf[a] = pool ? nx->f[ax] : 1;
            g->ms[a] = nx->s[ax];
        }
        g->mscale = nx->kind == OP_POOL ? 1.0 / ((double)nx->f[0] * nx->f[0] * nx->f[1] * nx->f[1]) : 1.0;
        if (nx->kind == OP_POOL) e++;
        hw[0] = nx->out_hw[0];
        hw[1] = nx->out_hw[1];
        mode = nx->out_mode;
    }
    if (!convs) {
        memset(lv, 0, NK_PLANE_LEVELS * sizeof *lv);
        return 0;
    }
    for (int l = 0; l < nlev; l++) {
        lv[l].nlev = nlev;
        lv[l].lev = l;
        lv[l].gap = gap;
        lv[l].res_slots = slots;
    }
    lv[0].self_end = self;
    return e;
}

/* The per-thread buffer, in elements of either precision: a header, the first sample's data and
 * self states laid out for the current da (see plane_body.h), the window reach of the current
 * level and da (nk_pmask), the pair's Gram if used, eight planes and two per open residual
 * block, then each later level's store (K and T: store_len each), the column maps of a
 * level's step down (2 W ints) and the own buffers of a group of planes (group_len). */
typedef struct {
    size_t xa, sa, masks, gram, planes, stores, cols, group, total;
} layout;

/* entries of one nk_pmask array: a plane's rows and two more, and a vector's slack; bytes of
 * one bit array, a multiple of 64 */
static size_t mask_len(const nk_pgeom *g)
{
    size_t L = 0;
    for (int l = 0; l < g->nlev; l++) {
        const size_t n = (size_t)(g[l].H + 2) * g[l].W + 64;
        if (n > L) L = n;
    }
    return L;
}

static size_t mask_bytes(size_t L)
{
    return (L / 8 + 16 + 63) / 64 * 64;
}

/* With this many channels or more, K0 of a full-mode pair comes from one GEMM per pair (the
 * channel loop per plane costs C multiply-adds per entry, the GEMM ~ a gather). */
#define GRAM_CHANNELS 32

static int use_gram(const nk_pgeom *g)
{
    return g->C >= GRAM_CHANNELS && !g->diag;
}

/* entries of a level's store: every plane of its grid, P^2 (plane_body.h: store_rows) */
static size_t store_len(const nk_pgeom *g)
{
    return up16((size_t)g->H * g->W * g->H * g->W);
}

/* ---- groups of planes through the Mehler layers ----
 * A Mehler layer's step reads, for every plane, the coefficient rows of both samples (need ~6-20
 * terms per series: ~20-40 planes of H x W per sample and layer, ~330 KB for 32x32 in float64).
 * Run plane by plane through the whole stack, the other layers' coefficients evict a layer's
 * between two planes, and every plane streams them from L3 again.  So a level with Mehler
 * layers runs a group of planes (of one da, consecutive di) through each segment of its ops,
 * a segment ending after each Mehler layer, before the next segment: the planes of the group
 * after the first find the layer's coefficients in L2.  A stride-1 stack keeps each plane's
 * displacement, so the planes are independent and every entry is computed by the same
 * operations in the same order as plane by plane (bit-identical results); the planes' sums
 * and steps down are taken in the same order too.  The group's own buffers (K and T in and
 * out per plane) take half of the L2 cache, the other half is for one layer's coefficients. */
#define GROUP_MAX 64   /* planes in a group at most */

size_t nk_plane_group_bytes;

/* bytes of L2 for a group's buffers: half the per-core L2 (sysconf; 1 MB if unknown) */
static size_t group_bytes(void)
{
    static size_t bytes;   /* (the same value from every thread) */
    if (nk_plane_group_bytes) return nk_plane_group_bytes;
    size_t b = __atomic_load_n(&bytes, __ATOMIC_RELAXED);
    if (!b) {
        const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
        b = (l2 >= 65536 ? (size_t)l2 : (size_t)1 << 20) / 2;
        __atomic_store_n(&bytes, b, __ATOMIC_RELAXED);
    }
    return b;
}

/* a level with a Mehler-series activation (not quad=N's rule): it runs in groups */
static int level_grouped(const nk_pgeom *gv)
{
    for (int i = gv->s; i < gv->e; i++)
        if (gv->ops[i].kind == OP_ACT && nk_mehler_used(gv->ops[i].act.kind, gv->quad)) return 1;
    return 0;
}

/* a plane's own buffer in a group, for a plane of m0 rows: its zero rows above, its rows, the
 * zero rows below and a vector's overrun (as nk_plane_stride for a grid of m0 rows) */
static size_t own_stride(const nk_pgeom *gv, int m0)
{
    return up16(nk_plane_base(gv) + (size_t)(m0 + gv->HA0 + 1) * gv->Wp + 32);
}

static size_t own_len(const nk_pgeom *gv, int m0)
{
    return (4 + 2 * (size_t)gv->res_slots) * own_stride(gv, m0);
}

/* elements of the group buffers: group_bytes in float32, and room for one whole plane */
static size_t group_len(const nk_pgeom *g)
{
    size_t len = 0;
    for (int v = 0; v < g->nlev; v++)
        if (level_grouped(&g[v]) && own_len(&g[v], g[v].H) > len) len = own_len(&g[v], g[v].H);
    return len ? up16(group_bytes() / sizeof(float) + len) : 0;
}

static layout buffer_layout(const nk_pgeom *g)
{
    layout l;
    const size_t data = nk_plane_sample_len(g) + 64, self = nk_plane_self_len(g) + 64;
    const size_t L = mask_len(g);
    size_t stride = 0, stores = 0;
    int wmax = 0;
    for (int v = 0; v < g->nlev; v++) {
        if (nk_plane_stride(&g[v]) > stride) stride = nk_plane_stride(&g[v]);
        if (v > 0) stores += 2 * store_len(&g[v]);
        if (g[v].W > wmax) wmax = g[v].W;
    }
    /* every part at a multiple of 16 elements (the buffer is 64-byte aligned: nk_calloc64) */
    l.xa = 16;
    l.sa = l.xa + up16(data);
    l.masks = l.sa + up16(self);
    /* wl, wr in elements; bl, br, seg (with 64 in front) in bytes, counted as 4-byte elements */
    l.gram = l.masks + up16(2 * L + (2 * mask_bytes(L) + 4 * (L + 64)) / 4 + 16);
    l.planes = l.gram + (use_gram(g) ? up16((size_t)g->H * g->Wp * g->H * g->Wp + 64) : 0);
    l.stores = l.planes + (8 + 2 * (size_t)g->res_slots) * stride + 128;
    l.cols = l.stores + stores;
    l.group = l.cols + up16(2 * (size_t)wmax + 16);
    l.total = l.group + group_len(g);
    return l;
}

size_t nk_plane_work(const nk_pgeom *g)
{
    return buffer_layout(g).total;
}

size_t nk_plane_sample_len(const nk_pgeom *g)
{
    return up16((size_t)g->C * g->H * g->Wp);
}

size_t nk_plane_self_len(const nk_pgeom *g)
{
    return up16(g->self_end);
}

/* Rows of W elements rotated by da, d[c] = s[(c + da) mod W]: the first sample's data and self
 * states in the layout of da (plane_body.h).  Every row but the last few is copied as two
 * whole rows of W elements rounded up to a vector, s + da -> d and s -> d + W - da, the second
 * over the first's tail and the next rows over the second's overrun (no short variable-length
 * loops: there are thousands of rows per pair). */
#define ROTATE(T)                                                                                    \
    do {                                                                                             \
        T *restrict d = (T *)dst;                                                                    \
        const T *restrict s = (const T *)src;                                                        \
        size_t i = 0;                                                                                \
        for (; i + tail < rows; i++, d += W, s += W) {                                               \
            for (int c = 0; c < Wv; c++) d[c] = s[da + c];                                           \
            for (int c = 0; c < Wv; c++) d[W - da + c] = s[c];                                       \
        }                                                                                            \
        for (; i < rows; i++, d += W, s += W) {                                                      \
            for (int c = 0; c < W - da; c++) d[c] = s[da + c];                                       \
            for (int c = 0; c < da; c++) d[W - da + c] = s[c];                                       \
        }                                                                                            \
    } while (0)

static void rotate_rows(char *dst, const char *src, size_t rows, int W, int da, size_t el)
{
    const int Wv = (W + 15) / 16 * 16;
    /* the whole-row copies of row i reach 2 W + 15 elements past its start (reads and writes):
     * the last rows they could carry past the ends of the arrays go the exact way */
    const size_t tail = (size_t)(W + Wv + W - 1) / W;
    if (el == sizeof(float)) ROTATE(float);
    else ROTATE(double);
}
#undef ROTATE

/* The first sample's self states in the layout of da (rotate_rows), a Mehler layer's terms only
 * as far as the pairs use them: its coefficients are ~190 of the state's planes, the cross
 * pairs of a CNN read ~10-30 of them (nine tenths of the rotation's time before, ~18% of a
 * tanh pair's).  rotate_acts rotates every plane but the terms past the lone degree; the
 * engine asks for m of phi's terms of the layer at so (both series are summed from them) before
 * it reads them (rotate_terms).  done: terms rotated per layer, indexed by the layer's first
 * plane from beg. */
struct nk_prot {
    const char *src;
    char *dst;
    size_t el, plane, beg;   /* element size, a plane's elements (H W), the level's first */
    int H, W, da;
    int *done;
    int needs;               /* the need planes are in dst (see rotate_acts) */
};

static void rotate_span(nk_prot *rot, size_t off, size_t planes)
{
    rotate_rows(rot->dst + off * rot->el, rot->src + off * rot->el, planes * rot->H, rot->W, rot->da, rot->el);
}

static void rotate_acts(nk_prot *rot, const nk_pgeom *gv)
{
    for (int i = gv->s; i < gv->e; i++) {
        const nk_op *op = &gv->ops[i];
        if (op->kind != OP_ACT) continue;
        const size_t so = op->pself;
        if (!nk_mehler_act(op->act.kind)) {
            rotate_span(rot, so, 2);
            continue;
        }
        /* a, 1/sqrt a, the tails and phi's lone degree; the needs (one value per
         * image row: the same in every layout) once per call */
        rotate_span(rot, so, 2);
        if (!rot->needs) rotate_span(rot, so + 2 * rot->plane, 2 * NK_MEHLER_LEVELS);
        rotate_span(rot, so + (2 + NK_MEHLER_TAU(0)) * rot->plane, 3);
        rot->done[(so - rot->beg) / rot->plane] = 0;
    }
    rot->needs = 1;
}

static void rotate_terms(nk_prot *rot, size_t so, int m)
{
    int *done = rot->done + (so - rot->beg) / rot->plane;
    if (m > *done) {
        rotate_span(rot, so + (2 + NK_MEHLER_G + 1 + (size_t)*done) * rot->plane, (size_t)(m - *done));
        *done = m;
    }
}

/* The window reach of the combined plane of da (nk_pmask), for a plane's rows from its first */
static void build_masks(const nk_pgeom *g, int da, int f32, char *at, int fill, nk_pmask *pm)
{
    const size_t L = mask_len(g - g->lev);
    const int W = g->W, split = W - da;
    const size_t el = f32 ? sizeof(float) : sizeof(double);
    char *wl = at, *wr = at + L * el;
    unsigned char *bl = (unsigned char *)(at + 2 * L * el), *br = bl + mask_bytes(L);
    int *seg = (int *)(br + mask_bytes(L)) + 64;
    pm->wl = wl;
    pm->wr = wr;
    pm->bl = bl;
    pm->br = br;
    pm->seg = seg;
    if (!fill) return;
    memset(bl, 0, 2 * mask_bytes(L));
    for (int j = -64; j < 0; j++) seg[j] = -1;
    for (size_t j = 0; j < L; j++) {
        const int c = (int)(j % (size_t)W), part = c >= split;   /* (rows of this level's W) */
        const int left = c != 0 && c != split, right = c != W - 1 && c != split - 1;
        if (f32) { ((float *)wl)[j] = (float)left; ((float *)wr)[j] = (float)right; }
        else { ((double *)wl)[j] = left; ((double *)wr)[j] = right; }
        bl[j / 8] |= (unsigned char)(left << (j % 8));
        br[j / 8] |= (unsigned char)(right << (j % 8));
        seg[j] = 2 * (int)(j / (size_t)W) + part;
    }
}

/* The reach r[v] of the displacements level v computes, per engine axis, and the step m[v] of
 * those it needs (a strided conv to the next level reads the displacements s E only).  The last
 * level: every plane where all (unless its state is diagonal).  Otherwise (a self pass whose
 * outputs nothing reads) a level needs the plane (0, 0) if it has an activation (its
 * variances), and nothing at all if neither it nor a later level has one (-1: not run).  A
 * level before: also the displacements the next level's planes come from, s r + f - 1
 * (nk_pgeom.moff). */
static void level_reach(const nk_pgeom *g, int all, int r[][2], int m[][2])
{
    const int nl = g->nlev;
    for (int v = nl - 1; v >= 0; v--) {
        int acts = 0;
        for (int i = g[v].s; i < g[v].e; i++) acts |= g[v].ops[i].kind == OP_ACT;
        for (int a = 0; a < 2; a++) {
            const int n = a ? g[v].W : g[v].H;
            int x = acts ? 0 : -1;
            if (v == nl - 1 && all) x = g[v].diag ? 0 : n - 1;
            if (v < nl - 1 && r[v + 1][a] >= 0 && g[v].ms[a] * r[v + 1][a] + g[v].mf[a] - 1 > x)
                x = g[v].ms[a] * r[v + 1][a] + g[v].mf[a] - 1;
            r[v][a] = x < n - 1 ? x : n - 1;
            m[v][a] = v < nl - 1 && g[v].mf[a] == 1 ? g[v].ms[a] : 1;
        }
    }
}

/* nb pairs (xa, xb[b]) at once (nk_plane_pairs), or one with its outputs or self pass */
static void plane_pairs(const nk_pgeom *g, int f32, int all, const void *xa, const void *sa, int nb,
                        const void *const *xbs, const void *const *sbs, void *self_out, void *buf, double *sums,
                        double *outK, double *outT)
{
    dispatch();
    if (sums)
        for (int b = 0; b < 2 * nb; b++) sums[b] = 0;
    if (self_out) sa = self_out;
    const size_t el = f32 ? sizeof(float) : sizeof(double);
    const layout l = buffer_layout(g);
    char *B = buf;
    char *xa_r = B + l.xa * el, *sa_r = B + l.sa * el;
    char *masks = B + l.masks * el, *planes = B + l.planes * el, *gram = NULL;
    if (use_gram(g)) {
        /* the pair's Gram <x_p, x'_p'>/C over the positions of the da = 0 layout (one pair: the
         * callers pass nb = 1 here) */
        const int Pp = g->H * g->Wp;
        gram = B + l.gram * el;
        if (f32)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Pp, Pp, g->C, (float)(1.0 / g->C), xa, Pp, xbs[0],
                        Pp, 0.0f, (float *)gram, Pp);
        else
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Pp, Pp, g->C, 1.0 / g->C, xa, Pp, xbs[0], Pp, 0.0,
                        (double *)gram, Pp);
    }
    int *cached = buf;   /* header: da + 1, precision and level + 1 of the masks */
    int reach[NK_PLANE_LEVELS][2], step[NK_PLANE_LEVELS][2];
    level_reach(g, all, reach, step);
    char *store = B + l.stores * el;
    for (int v = 0; v < g->nlev; v++) {
        const nk_pgeom *gv = &g[v];
        const int H = gv->H, W = gv->W;
        /* this level's store (read) and the next one's (accumulated; one pair at a time: the
         * callers pass nb = 1 with more than one level) */
        nk_pio io = {NULL, NULL, NULL, NULL, (int *)(B + l.cols * el), NULL};
        if (v > 0) {
            io.srcK = store;
            io.srcT = store + store_len(gv) * el;
            store += 2 * store_len(gv) * el;
        }
        if (gv->down) {
            io.dstK = store;
            io.dstT = store + store_len(&g[v + 1]) * el;
            memset(store, 0, 2 * store_len(&g[v + 1]) * el);
        }
        const size_t self_rows = (gv->self_stop - gv->self_beg) / W;
        const int r0 = reach[v][0], r1 = reach[v][1], m0 = step[v][0], m1 = step[v][1];
        if (r0 < 0) break;   /* (neither this level nor a later one is needed) */
        /* the lazy rotation's counters (without them, every plane is rotated) */
        nk_prot rot = {(const char *)sa, sa_r, el, (size_t)H * gv->Wp, gv->self_beg, H, W, 0,
                       malloc(((gv->self_stop - gv->self_beg) / ((size_t)H * gv->Wp) + 1) * sizeof(int)), 0};
        /* the segments of the level's ops: one, or (groups of planes) one ending after each
         * Mehler layer (after the last op too: an empty segment then takes the sums) */
        const int groups = nb == 1 && level_grouped(gv);
        int cut[gv->e - gv->s + 2], ncut = 0;
        cut[ncut++] = gv->s;
        for (int i = gv->s; i < gv->e && groups; i++)
            if (gv->ops[i].kind == OP_ACT && nk_mehler_used(gv->ops[i].act.kind, gv->quad))
                cut[ncut++] = i + 1;
        cut[ncut++] = gv->e;
        /* the plane (0, 0) first: in the self pass it records the variances the others read */
        for (int da = 0; da < W; da++) {
            /* the combined plane of da holds the displacements da and da - W */
            if (!((da <= r1 && da % m1 == 0) || (da > 0 && W - da <= r1 && (W - da) % m1 == 0))) continue;
            /* the samples' own layout is that of da = 0; the first sample's is rotated by da */
            const void *xa_d = xa, *sa_d = sa;
            io.rot = da > 0 && rot.done ? &rot : NULL;
            if (da > 0) {
                if (!gram && v == 0) rotate_rows(xa_r, xa, (size_t)g->C * H, W, da, el);   /* (K0 reads the Gram) */
                if (rot.done) {
                    rot.da = da;
                    rotate_acts(&rot, gv);
                } else {
                    rotate_rows(sa_r + gv->self_beg * el, (const char *)sa + gv->self_beg * el, self_rows, W, da, el);
                }
                xa_d = xa_r;
                sa_d = sa_r;
            }
            nk_pmask pm;
            const int fill = cached[0] != da + 1 || cached[1] != f32 + 1 || cached[2] != v + 1;
            build_masks(gv, da, f32, masks, fill, &pm);
            cached[0] = da + 1;
            cached[1] = f32 + 1;
            cached[2] = v + 1;
            /* the planes of this da, the plane (0, 0) first */
            int dis[2 * H - 1], nd = 0;
            for (int k = 0; k < 2 * H - 1; k++) {
                const int di = k < H ? k : H - 1 - k;
                if (di > r0 || -di > r0 || di % m0) continue;
                dis[nd++] = di;
            }
            for (int b = 0; b < nb; b++) {
                const void *xb = xbs[b], *sb = self_out ? self_out : sbs[b];
                double *sm = sums ? sums + 2 * b : NULL;
                /* a group of planes [p0, p1) through each segment [cut[c], cut[c + 1]) of the ops
                 * (one segment and one plane at a time, in the eight planes, without Mehler
                 * layers), in its own buffers */
                const size_t ps = nk_plane_stride(gv);
                nk_pseg run[GROUP_MAX];
                for (int p0 = 0, p1; p0 < nd; p0 = p1) {
                    p1 = p0 + 1;
                    if (!groups) {
                        run[0] = (nk_pseg){planes, planes + (8 * ps + 64) * el, ps, 0, 1, {0}, .defer = 0};
                    } else {
                        size_t at = 0;
                        for (p1 = p0; p1 < nd && p1 - p0 < GROUP_MAX; p1++) {
                            const int m = H - (dis[p1] > 0 ? dis[p1] : -dis[p1]);
                            const size_t len = own_len(gv, m), os = own_stride(gv, m);
                            if (p1 > p0 && (at + len) * el > group_bytes()) break;
                            char *own = B + (l.group + at) * el;
                            run[p1 - p0] = (nk_pseg){own, own + 4 * os * el, os, 0, 1, {0}, .defer = 1};
                            at += len;
                        }
                    }
                    for (int c = 0; c < ncut - 1; c++) {
                        for (int p = p0; p < p1; p++) {
                            const int di = dis[p];
                            void *so = (di || da) ? NULL : self_out;
                            if (f32)
                                f32fn(gv, xa_d, xb, sa_d, sb, &pm, (float *)gram, so, (float *)(planes + 4 * ps * el),
                                      &run[p - p0], cut[c], cut[c + 1], di, da, &io, sm, outK, outT);
                            else
                                f64fn(gv, xa_d, xb, sa_d, sb, &pm, (double *)gram, so,
                                      (double *)(planes + 4 * ps * el), &run[p - p0], cut[c], cut[c + 1], di, da, &io,
                                      sm, outK, outT);
                        }
                        /* the segment's Mehler series, the group's planes together */
                        if (groups) (f32 ? mg32fn : mg64fn)(run, p1 - p0, gv->Wp, H * gv->Wp, io.rot);
                    }
                }
            }
        }
        free(rot.done);
    }
}

void nk_plane_pair(const nk_pgeom *g, int f32, int all, const void *xa, const void *xb, const void *sa,
                   const void *sb, void *self_out, void *buf, double *sums, double *outK, double *outT)
{
    plane_pairs(g, f32, all, xa, sa, 1, &xb, &sb, self_out, buf, sums, outK, outT);
}

int nk_plane_batch(const nk_pgeom *g)
{
    /* the pair with its samples swapped must give the same sums: ReLU's closed form is
     * symmetric in the two samples (and rounds alike), a quadrature dual only up to its error */
    if (!g->gap || use_gram(g) || g->nlev > 1) return 0;   /* (more levels: a store per pair) */
    for (int i = g->s; i < g->e; i++)
        if (g->ops[i].kind == OP_ACT && g->ops[i].act.kind != NK_ACT_RELU) return 0;
    return 1;
}

void nk_plane_pairs(const nk_pgeom *g, int f32, const void *xa, const void *sa, int nb, const void *const *xb,
                    const void *const *sb, void *buf, double *sums)
{
    plane_pairs(g, f32, 1, xa, sa, nb, xb, sb, NULL, buf, sums, NULL, NULL);
}

void nk_plane_data(const nk_plan *p, int f32, const double *x, void *out)
{
    /* channels last [P][C] -> channel-planar [C][H][W] (the layout of da = 0), in the engine's
     * precision */
    const nk_pgeom *g = p->pg;
    const size_t C = (size_t)g->C;
    for (size_t c = 0; c < C; c++)
        for (int q = 0; q < g->H; q++)
            for (int r = 0; r < g->W; r++) {
                const double v = x[((size_t)q * g->W + r) * C + c];
                const size_t o = (c * g->H + q) * g->Wp + r;
                if (f32) ((float *)out)[o] = (float)v;
                else ((double *)out)[o] = v;
            }
}
