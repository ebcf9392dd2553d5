/* internal.h -- shared between the library's source files; not installed. */
#ifndef NK_INTERNAL_H
#define NK_INTERNAL_H
#include "nkern.h"

#define NK_PI 3.14159265358979323846
#define NK_PI_2 1.57079632679489661923

typedef enum { L_DENSE, L_CONV, L_AVGPOOL, L_GAP, L_FLATTEN, L_ACT, L_RES } nk_layer_type;
typedef enum { PAD_SAME, PAD_VALID, PAD_CIRCULAR } nk_pad;

/* One layer of the parsed architecture; a residual block owns its body. */
typedef struct nk_layer {
    nk_layer_type type;
    int pos;                 /* 1-based column in the spec, for messages */
    double w, b, width;      /* resolved: per-layer value or the global default */
    int filt[2], stride[2];  /* conv / avgpool, per spatial axis (spec order) */
    int nfilt;               /* 1 if one size was given for all axes, 2 for NxM */
    int nstride;
    nk_pad pad;
    int pad_set;             /* pad given explicitly */
    nk_act act;
    struct nk_layer *body;   /* L_RES */
    int nbody;
} nk_layer;

struct nk_arch {
    nk_layer *layers;
    int n;
    nk_param param;
    int quad_order;
    char *spec;
};

/* Gauss-Hermite rule for the standard normal weight: E[f(z)] ~ sum_i w[i] f(x[i]).
 * Cached per order; thread-safe.  Returns NULL pointers if order is out of range. */
nk_status nk_gh_rule(int order, const double **x, const double **w, nk_error *err);
/* The automatic quadrature order for variances a, b: Gauss-Hermite resolves phi(sqrt(a) z) only
 * when its node spacing (~pi / sqrt(2n)) is fine against the activation's transition width
 * 1/sqrt(a), so n grows linearly with the variance: n = 64 + 60 max(a, b) (a/4 for sigmoid,
 * whose transition is twice as wide), at most 512.  Measured: ~1e-9 relative for tanh at
 * variance 2.5 (the fixed order 64 gave 1.5e-4). */
int nk_quad_auto(const nk_act *act, double a, double b);
/* Which activations have closed-form duals. */
int nk_act_has_closed_form(nk_act_kind k);
/* 1 for the closed forms made of exponentials (sin, cos, exp, rbf), which the plane engine
 * evaluates with its vectorized exp (plane_body.h: exp_row) */
int nk_act_exp_dual(nk_act_kind k);
const char *nk_act_name(nk_act_kind k);
#endif

/* ------------------------------------------------------------------ plan -- */

typedef enum { OP_AFFINE, OP_POOL, OP_GAP, OP_FLATTEN, OP_ACT, OP_RES_BEGIN, OP_RES_END } nk_op_kind;

/* One step of the bound recursion.  Spatial axes: 0 = H (or L), 1 = W (1 for 1-D inputs). */
typedef struct {
    nk_op_kind kind;
    const nk_layer *layer;
    int in_hw[2], out_hw[2];
    nk_mode mode;          /* mode of the state this op reads */
    nk_mode out_mode;      /* mode of the state the next op reads (restricted if needed) */
    int f[2], s[2], pb[2]; /* window, stride, padding before, per axis */
    nk_pad pad;
    double w2, b2;         /* K' = w2 * mean K + b2 */
    double alpha, beta;    /* T' = alpha * mean K + w2 * mean T + beta */
    double cin, cout;      /* channels before and after */
    nk_act act;
    size_t self_off;       /* ACT: offset of its self-variances in a sample's self state:
                              P variances a, then sqrt(a), then 1/sqrt(a) (0 where a = 0) */
    int slot;              /* RES_*: stack slot */
    nk_mode saved_mode;    /* RES_END: mode of the state saved at the matching RES_BEGIN */
    int mehler;            /* ACT in the layer-by-layer path whose self state holds, per position, the
                              Mehler record (NK_MEHLER_REC planes after a, sqrt a, 1/sqrt a) */
    size_t pself;          /* ACT run by the plane engine: offset of its [a | 1/sqrt a] in a sample's
                              engine self state (plane.c) */
} nk_op;

/* Geometry of the plane engine (plane.c) for ops [s, e) of a plan: stride-1 zero-padded convs,
 * dense, activations and residual blocks on a full or diagonal state of an H x W grid (axes
 * swapped for 1-D).  The engine runs a chain of such levels (nk_plan.pg[0 .. nlev-1]): a level
 * ends in an op that changes the grid (an average pool, or a strided or valid conv, whose window
 * sum and affine map are the level's last op) and hands the next level its state through a
 * store of planes (plane.c). */
#define NK_PLANE_LEVELS 8
#define NK_PLANE_RES 16     /* residual blocks open at once in the engine */
typedef struct {
    const nk_op *ops;
    int s, e;
    int H, W, C, swap;
    int diag;              /* the state is diagonal: only the plane (0, 0) */
    int gap;               /* ops[e] of the last level is the global average pool (or a pool over
                              the whole grid): planes are summed.  Set on every level. */
    int quad;
    int rows;              /* rows of a plane buffer: the plane's and the zero rows around it */
    int Wp;                /* row length of a plane: W (see plane_body.h) */
    int HB0, HA0, HB1, HA1; /* window reach before / after, per axis */
    size_t self_end;       /* level 0: elements of a sample's self state in the engine (see plane.c) */
    int nlev, lev;         /* number of levels (in every level), this one's index */
    const nk_op *down;     /* the op to the next level (NULL: the last level) */
    int moff[2], mf[2], ms[2]; /* position i of this level -> Q = (i + moff) / ms of the next, if
                                  (i + moff) mod ms < mf and Q is in range (engine axes) */
    double mscale;         /* the next level's entry is mscale times the sum of this level's */
    size_t self_beg, self_stop; /* this level's part of the engine self state */
    int res_slots;         /* residual blocks open at once (level 0: over all levels) */
} nk_pgeom;

struct nk_plan {
    nk_op *ops;
    int nops;
    int in_ndim;
    size_t in_shape[3];
    int in_hw[2], in_c, rank;
    nk_mode in_mode;       /* mode of the input covariance K0 */
    size_t state_max;      /* largest state (elements of K) over the program */
    size_t state_max_layers; /* the same without the plane engine (the layer-by-layer path) */
    int res_depth;
    size_t self_len;       /* doubles of self-variances per sample */
    int quad_order;
    nk_param param;
    int mlp;               /* input has one position: tiles of pairs, one GEMM */
    nk_op *pre;            /* leading average pools, applied to the data itself: pooling K0 =
                              <x_p, x'_p'>/C with independent offsets on the two sides equals
                              K0 of the pooled inputs, exactly, at a fraction of the cost */
    int npre;
    size_t pre_len;        /* values per sample after the pools */
    int flat_input;        /* a flatten straight on the (pooled) data, taken as a reshape: its
                              mean_p <x_p, x'_p>/C is <x, x'>/(P C), the first covariance of an
                              MLP on the flattened vector, so the MLP path (one GEMM) runs it */
    char *spec;
    nk_pgeom pg[NK_PLANE_LEVELS]; /* the plane engine's levels, ops [0, pe), if pe > 0 (plane.c) */
    int pe;
};

size_t nk_mode_size(nk_mode m, const int hw[2]);
const char *nk_mode_name(nk_mode m);
/* The full covariance of a pair over positions p = (i, a), p' = (i2, c) of an h x w grid is
 * stored block-major, [i][i2][a][c]: each w x w block of two rows of the grid is contiguous, so
 * the window sums along the first axis add whole blocks and never stride through memory. */
static inline size_t nk_full_index(int i, int a, int i2, int c, int h, int w)
{
    return (((size_t)i * h + i2) * w + a) * w + c;
}
/* Index of input position for output q and window offset d on one axis; -1 if in padding. */
static inline int nk_axis_index(int q, int d, int s, int pb, int n, nk_pad pad)
{
    int i = q * s + d - pb;
    if (pad == PAD_CIRCULAR) return ((i % n) + n) % n;
    return (i < 0 || i >= n) ? -1 : i;
}

/* ------------------------------------------------------------- operations -- */

/* Hot loops are compiled for several instruction sets and chosen at load time (GCC's
 * target_clones through an ifunc); the "default" clone is the portable reference. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(NK_NO_CLONES)
#define NK_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NK_CLONES
#endif

/* Dense / conv after the window mean M (in K):  T <- alpha M + w2 T + beta,  K <- w2 M + b2. */
void nk_affine_update(double *restrict K, double *restrict T, size_t n, double w2, double b2, double alpha,
                      double beta);

/* Window mean of a full covariance state (block-major, see nk_full_index) h x w -> H x W: the
 * same offset on both sides (conv) or independent offsets (pool).  tmp holds H*H*w*w elements. */
void nk_window_full(const nk_op *op, int pool, const double *in, double *out, double *tmp);
/* Window mean of a diagonal state [h][w] -> [H][W]; tmp holds h*W elements. */
void nk_window_diag(const nk_op *op, const double *in, double *out, double *tmp);
/* Activation on an nr x nc grid of covariances K (and NTK T, may be NULL): row r has
 * variance sa[r * sa_step], column c variance sb[c * sb_step]; sqrt and 1/sqrt of each follow
 * at +plen and +2 plen (self state layout).  work holds 3 * nc doubles. */
void nk_act_grid(const nk_op *op, int quad, double *K, double *T, int nr, int nc,
                 const double *sa, size_t sa_step, const double *sb, size_t sb_step, size_t plen,
                 double *work);
/* A stride-1, zero-padded conv on a full state fused with its affine map and, if relu, the
 * ReLU that follows (self-variances sa, sb in self-state layout of the output size): each
 * W x W output block is summed from the input blocks on its diagonal while they are in cache
 * and written once.  Tin/Tout may be NULL (NNGP only).  work: 2 w^2 + 2 W^2 doubles. */
void nk_conv_full_fused(const nk_op *op, const double *Kin, const double *Tin, double *Kout, double *Tout,
                        int relu, const double *sa, const double *sb, double *work);
/* Fill sqrt(a) and 1/sqrt(a) (0 where a = 0) after the n variances at a. */
void nk_self_roots(double *a, size_t n);
/* The ReLU dual at one entry with libm's arccos: the reference for the vectorized path. */
void nk_relu_reference(double *k, double *t, double a, double b);
/* Activation on a full state (block-major) of an h x w grid; self-variances in self-state
 * layout (plen = h w).  work holds 3 * h * w doubles. */
void nk_act_full(const nk_op *op, int quad, double *K, double *T, int h, int w, const double *sa,
                 const double *sb, double *work);
/* Activation on n same-position covariances: variances sa[i], sb[i], roots at +n, +2n. */
/* One entry of any activation's dual by the library's general path: k <- E phi phi,
 * t <- t E phi' phi' (t may be NULL). */
void nk_act_entry(const nk_act *act, int quad, double *k, double *t, double a, double b);

/* ------------------------------------------------------------ torus path -- */

/* Stacks of stride-1 circular convs (and dense / 1x1 layers) and activations read out by a
 * flatten, with translations of the second sample (torus.c): ops [0, e) on planes of the
 * n0 x n1 grid with a wrapped halo of h0 rows and h1 columns (pitch Wp, R rows, PL elements);
 * a window's computed range [lo, hi) runs from the first interior entry to the last.
 * The translations d = (dy[i], dx[i]), i < nd, with weights wt[i]: the differences of
 * translations by 0..s0 rows and 0..s1 columns (s0 = s1 = 0: the plain kernel, nd = 1). */
#define NK_TORUS_TAPS 289
#define NK_TORUS_MAXD 289
typedef struct {
    int e, nact, f32;      /* f32: the planes in float32 (ReLU stacks asked for float32) */
    int n0, n1, C, s0, s1, h0, h1, Wp, R;
    size_t PL, lo, hi;
    int nd, dy[NK_TORUS_MAXD], dx[NK_TORUS_MAXD];
    double wt[NK_TORUS_MAXD];
} nk_torus;
/* Tests: plans set up while this is 0 do not take the torus path. */
extern int nk_torus_enabled;
/* Plane engine: above this many bytes of self states (all samples), a kernel context keeps only
 * the current tile's (kernel.c: window_fill); tests lower it. */
extern size_t nk_kernel_window_bytes;
/* 1 if the plan's stack runs on the torus (with translations by 0..shift), filling t; f32:
 * float32 planes if every activation of the stack is a ReLU. */
int nk_torus_setup(const nk_plan *p, int shift, int f32, nk_torus *t);
/* Elements (of t->f32 ? float : double) of per-thread buffer. */
size_t nk_torus_work(const nk_torus *t);
/* Per sample, in the planes' precision: the padded input (nk_torus_data, nk_torus_sample_len
 * elements) and the padded variances [a | sqrt a | 1/sqrt a] of every activation
 * (nk_torus_self_len).  Arrays of them need NK_TORUS_MARGIN(t) elements before the first sample
 * and after the last (the pairs read the second sample up to lo entries away, see torus.c). */
size_t nk_torus_sample_len(const nk_torus *t);
size_t nk_torus_self_len(const nk_torus *t);
#define NK_TORUS_MARGIN(t) (((t)->lo + 1) * (size_t)(t)->C + 16)
void nk_torus_data(const nk_torus *t, const double *x, void *out);
/* Self pass of sample x (padded): writes each activation's variances to its self state as the
 * layer-by-layer path does (float64) and, padded, to spad; returns the flatten's K (the state
 * ops[e + 1] reads). */
double nk_torus_self(const nk_torus *t, const nk_plan *p, const void *xpad, double *self_out, void *spad, void *buf);
/* The flatten's K and T of K(xa, t_d xb) for each translation d into Kd[d], Td[d] (padded
 * samples and variances). */
void nk_torus_pair(const nk_torus *t, const nk_plan *p, const void *xa, const void *xb, const void *sa,
                   const void *sb, int want_ntk, void *buf, double *Kd, double *Td);

/* ---------------------------------------------------------- plane engine -- */

/* Find the plan's leading stack of plane ops; returns its end (0: none) and fills g. */
int nk_plane_setup(const nk_plan *p, nk_pgeom *g);
/* Doubles of per-thread buffer the engine needs. */
size_t nk_plane_work(const nk_pgeom *g);
/* The instruction set the engine runs with: "avx512", "avx2" or "portable" (NK_ISA overrides). */
const char *nk_plane_isa(void);
/* The ReLU on a tile of independent pairs (MLP path), vectorized like the plane engine: row r
 * has variance a[r astep] (sqrt, 1/sqrt at +plen, +2 plen), column c has b[c], sb[c], rb[c].
 * aff: the dense layer before it, fused (w2, b2, alpha, beta, as nk_affine_update), or NULL. */
void nk_relu_grid(double *K, double *T, int nr, int nc, const double *a, size_t astep, size_t plen, const double *b,
                  const double *sb, const double *rb, const double *aff);
/* nk_act_grid with the dense layer aff (as above) fused before a ReLU; other activations: the
 * affine map first, then nk_act_grid. */
void nk_affine_act_grid(const nk_op *op, int quad, const double *aff, double *K, double *T, int nr, int nc,
                        const double *sa, size_t sa_step, const double *sb, size_t sb_step, size_t plen, double *work);
/* The ReLU on n independent entries: A[i], B[i] variances, roots at +n, +2n. */
void nk_relu_points(double *K, double *T, size_t n, const double *A, const double *B);
/* Tests: the same in float32, as the plane engine's float32 ReLU computes it. */
void nk_relu_points32(float *K, float *T, size_t n, const float *A, const float *B);
/* Tests: e^x on n entries with the plane engine's exp (vectorized: vexp in plane_body.h) for
 * the instruction set in use (nk_plane_isa), float64 and float32. */
void nk_exp_points(double *y, const double *x, size_t n);
void nk_exp_points32(float *y, const float *x, size_t n);
/* Choose the vectorized kernels (done on first use; call before starting threads, so that the
 * choice is made by one thread). */
void nk_simd_prepare(void);
/* Tests: run with this instruction set from now on ("avx512", "avx2", "portable"; NULL: the
 * machine's best or NK_ISA).  Not thread-safe against running kernels. */
void nk_plane_force_isa(const char *isa);
/* Tests: plans created while this is 0 do not use the plane engine (the layer-by-layer path). */
extern int nk_plane_enabled;
/* Tests: the bytes of a group of planes' buffers in the plane engine (plane.c: groups of planes
 * through the Mehler layers); 0 (default): half the per-core L2 cache. */
extern size_t nk_plane_group_bytes;
/* calloc of n elements of size bytes at a 64-byte boundary (the engine's arrays: a vector load
 * across two cache lines costs two); free with free().  NULL if out of memory. */
void *nk_calloc64(size_t n, size_t size);
/* A sample in the engine's layout and precision (nk_plane_sample_len elements, float if f32: a
 * multiple of 16, so that consecutive samples keep a 64-byte alignment). */
void nk_plane_data(const nk_plan *p, int f32, const double *x, void *out);
size_t nk_plane_sample_len(const nk_pgeom *g);
/* Elements of a sample's self state for the engine (its activations, in the engine's layout; a
 * multiple of 16). */
size_t nk_plane_self_len(const nk_pgeom *g);
/* Run the stack on one pair of samples xa, xb (from nk_plane_data) with self states sa, sb (in
 * the engine's layout and precision; buf: nk_plane_work elements, zeroed once).  Self pass:
 * xa = xb, sa = sb = self_out, which receives the activations' variances.  Output: sums[0], sums[1] of K and T over all entries (g->gap), or
 * the state written to outK / outT (diag, or full block-major; outT may be NULL).  all = 0:
 * only the plane (0, 0) (a self pass whose full state nothing reads). */
void nk_plane_pair(const nk_pgeom *g, int f32, int all, const void *xa, const void *xb, const void *sa, const void *sb,
                   void *self_out, void *buf, double *sums, double *outK, double *outT);
/* nb pairs (xa, xb[b]) of a stack ending in global pooling, not a self pass: sums[2b], sums[2b + 1]
 * as nk_plane_pair's for pair b.  The first sample's layout for each da (a copy per da) and the
 * window reach are made once for all nb.  Only where nk_plane_batch(g): no per-pair Gram, and
 * every activation a ReLU (the callers swap the samples, see there). */
int nk_plane_batch(const nk_pgeom *g);
void nk_plane_pairs(const nk_pgeom *g, int f32, const void *xa, const void *sa, int nb, const void *const *xb,
                    const void *const *sb, void *buf, double *sums);

void nk_act_pointwise(const nk_op *op, int quad, double *K, double *T, size_t n,
                      const double *sa, const double *sb);

/* ------------------------------------------------- Gaussian expectations -- */

/* E[f(z)] for z ~ N(0, 1) by adaptive Gauss-Legendre panels on [-38.5, 38.5] (gauss.c), with
 * break points at center +- scale 2^j (the integrand's kink or transition: 0 and 1/sqrt(q) for
 * phi(sqrt(q) z)).  Each component j meets |error| <= max(tol_abs[j], tol_rel sum |panel
 * values|) by the estimate (rule on a panel vs on its halves); *err receives the estimates.
 * Returns 0, or -1 if a tolerance was not met (or out of memory): the value is then unchecked. */
typedef void (*nk_vfn)(double z, double *out, void *ctx);
typedef double (*nk_dfn)(double z, void *ctx);
int nk_gauss_expect_vec(nk_vfn f, void *ctx, int m, double center, double scale, const double *tol_abs,
                        double tol_rel, double *val, double *err);
int nk_gauss_expect(nk_dfn f, void *ctx, double center, double scale, double tol_abs, double tol_rel, double *val,
                    double *err);
/* h[k] = E[g(sqrt(a) z) He_k(z)] / sqrt(k!), k = 0..n, for g = phi (deriv 0) or phi' (1), so
 * that E[g(u) g(v)] = sum_k h_k(a) h_k(b) rho^k (Mehler); *e2 = E[g(sqrt(a) z)^2] and *tail
 * bounds what the terms after n hold, sum_{k > n} h_k^2 <= *tail (Parseval, with the
 * coefficients' error estimates added).  Returns 0, or -1 if the quadrature missed its
 * tolerance (relative 1e-14). */
int nk_hermite_coeffs(const nk_act *act, int deriv, double a, int n, double *h, double *e2, double *tail);
/* E[g(u) g(v)] for (u, v) ~ N(0, [[a, c], [c, b]]), g = phi or phi', by nested adaptive
 * integration (relative tolerance tol_rel on each level); *err is the error estimate.
 * Returns 0, or -1 if a tolerance was missed. */
int nk_dual_nested(const nk_act *act, int deriv, double a, double b, double c, double tol_rel, double *val,
                   double *err);

/* The Mehler form E[g(u) g(v)] = sum_k h_k(a) h_k(b) rho^k (g = phi or phi') of the activations
 * whose Hermite coefficients have a parity (nk_mehler_act: tanh, sigmoid, softplus, swish): all
 * nonzero degrees but one share a parity (nk_mehler_odd: odd degrees and degree 0; else even
 * degrees and degree 1).  nk_mehler_coeffs: g[0] = h of the lone degree, g[1 + j] = h of the
 * j-th degree of the parity (2j + 1 or 2j), j < NK_MEHLER_TERMS; need[l] = the fewest parity
 * terms m for which left(m) r_l^(first degree left out) <= tol E[g^2], left(m) the energy of the
 * degrees past them (Parseval) and r_l = nk_mehler_level[l] a bound on |rho|
 * (NK_MEHLER_TERMS + 1 if even all of them leave more, or the quadrature failed); *tau =
 * sqrt(left after all of them / E[g^2]) (1 on failure).  Then for two variances and
 * |rho| <= r_l, m >= both needs: |E[g(u) g(v)] - the sum to m terms| <= tol sqrt(E_a E_b)
 * (Cauchy-Schwarz); past the stored terms the error is <= tau_a tau_b |rho|^(first degree left
 * out) relative.  Returns 0, or -1 if the quadrature missed its tolerance. */
#define NK_MEHLER_TERMS 96
#define NK_MEHLER_LEVELS 9
extern const double nk_mehler_level[NK_MEHLER_LEVELS];
int nk_mehler_act(nk_act_kind k);
/* the Mehler series is what computes activation k (on every path): a Mehler activation, and no
 * quadrature order asked for (0: automatic) */
static inline int nk_mehler_used(nk_act_kind k, int quad_order) { return quad_order <= 0 && nk_mehler_act(k); }
static inline int nk_mehler_odd(nk_act_kind k, int deriv)
{
    /* tanh is odd and sigmoid - 1/2 too (sigmoid(x) = (1 + tanh(x/2)) / 2); softplus - x/2 =
     * log(2 cosh(x/2)) and swish - x/2 = x tanh(x/2) / 2 are even; a derivative swaps */
    const int odd = k == NK_ACT_TANH || k == NK_ACT_SIGMOID;
    return deriv ? !odd : odd;
}
/* Both series are summed from phi's coefficients alone (h_k(phi') = sqrt((k + 1) / a)
 * h_{k+1}(phi): E phi' phi' = d E phi phi / dc): phi' parity term j is phi's parity term j + s,
 * s = nk_mehler_shift (1 for an even phi, 0 for an odd one), so phi' has NK_MEHLER_TERMS - s
 * usable terms (nk_mehler_terms) and m of its terms take phi's first m + s. */
static inline int nk_mehler_shift(nk_act_kind k) { return nk_mehler_odd(k, 1); }
static inline int nk_mehler_terms(nk_act_kind k, int deriv) { return NK_MEHLER_TERMS - (deriv ? nk_mehler_shift(k) : 0); }
/* Both series of an entry from p = p(x) and d = p'(x) (Horner's rule over phi's parity terms,
 * x = rho^2), q0 the lone degree's product and rab = 1/sqrt(ab) (an inverse root 0 counted as 1:
 * nk_mehler_record):
 *   odd phi:  k = q0 + rho p,   kd = (p + 2 x d) rab;   even phi: k = q0 rho + p,   kd = (q0 + 2 rho d) rab
 * (E phi phi and E phi' phi' = d E phi phi / dc), in the caller's floating type (float32 rounds as
 * the engine's vectors); kd is assigned first, so k may overwrite p and kd d */
#define NK_MEHLER_CLOSE(odd, q0, rho, x, p, d, rab, k, kd)                                           \
    do {                                                                                             \
        if (odd) {                                                                                   \
            (kd) = ((p) + ((x) + (x)) * (d)) * (rab);                                                \
            (k) = (q0) + (rho) * (p);                                                                \
        } else {                                                                                     \
            (kd) = ((q0) + ((rho) + (rho)) * (d)) * (rab);                                           \
            (k) = (q0) * (rho) + (p);                                                                \
        }                                                                                            \
    } while (0)
/* The parity terms of phi to sum for needs m[0] (phi), m[1] (phi'), each capped at its usable
 * terms; *over: bit d set if m[d] is past them (nk_mehler_tail_over decides each entry). */
static inline int nk_mehler_span(nk_act_kind k, const int m[2], int *over)
{
    const int n0 = nk_mehler_terms(k, 0), n1 = nk_mehler_terms(k, 1), s = nk_mehler_shift(k);
    const int a = m[0] > n0 ? n0 : m[0], b = (m[1] > n1 ? n1 : m[1]) + s;
    *over = (m[0] > n0) | (m[1] > n1) << 1;
    return a > b ? a : b;
}
int nk_mehler_coeffs(const nk_act *act, int deriv, double a, double tol, double *g, double *need, double *tau);

/* The record of one variance for both series (phi, deriv 0, and phi', deriv 1), planes of
 * `stride` doubles apart: need per level (NK_MEHLER_NEED(d) + l), tau (NK_MEHLER_TAU(d)), and
 * phi's coefficients (NK_MEHLER_G + j, j <= NK_MEHLER_TERMS), from which both series are summed
 * (nk_mehler_shift); NK_MEHLER_REC planes in all.  The plane engine's self state holds it after
 * [a | 1/sqrt a], the layer-by-layer one after [a | sqrt a | 1/sqrt a] (nk_op.mehler).  Each
 * entry then leaves out at most NK_MEHLER_TOL64 sqrt(E g(u)^2 E g(v)^2) in float64 (the issue's
 * 1e-10, with room for the table's error: 1e-12 sqrt(E phi^2) in phi's coefficients moves
 * E phi' phi' by at most ~sqrt(2 NK_MEHLER_TERMS) 1e-12 sqrt(E phi^2 / a) sqrt(E_b phi'^2),
 * ~1.4e-11 of its scale where E phi^2 ~ a E phi'^2 (small a), less elsewhere). */
#define NK_MEHLER_NEED(d) ((size_t)(d) * NK_MEHLER_LEVELS)
#define NK_MEHLER_TAU(d) (2 * (size_t)NK_MEHLER_LEVELS + (d))
#define NK_MEHLER_G (2 + 2 * (size_t)NK_MEHLER_LEVELS)
#define NK_MEHLER_REC (2 + 2 * NK_MEHLER_LEVELS + (NK_MEHLER_TERMS + 1))
#define NK_MEHLER_TOL64 5e-11
void nk_mehler_record(const nk_act *act, double a, double tol, double *rec, size_t stride);
/* The first level whose bound r_l satisfies r_l^2 >= rho2 (the largest rho^2 of the entries). */
static inline int nk_mehler_level_of(double rho2)
{
    /* (the levels rise: the count of those below rho2, without a branch per level; a NaN counts
     * past them all) */
    int l = 0;
    for (int i = 0; i + 1 < NK_MEHLER_LEVELS; i++) l += !(rho2 <= nk_mehler_level[i] * nk_mehler_level[i]);
    return l;
}
/* Bit d set (d = 0: phi, 1: phi') if an entry at |rho| = ar whose positions have the taus ta[d],
 * tb[d] may leave more than tol past the stored terms: tau_a tau_b ar^(first degree left out) > tol. */
int nk_mehler_tail_over(nk_act_kind k, const double ta[2], const double tb[2], double ar, double tol);
/* The series of the bits `over` by nested adaptive integration (relative 0.1 tol): *k = E phi phi
 * (bit 0), *kd = E phi' phi' (bit 1; kd may be NULL), NaN where the integration missed its
 * tolerance; the others are left as they are. */
void nk_mehler_nested(const nk_act *act, int over, double a, double b, double c, double tol, double *k, double *kd);
/* The Mehler form on an nr x nc grid of entries K (and T, may be NULL: T <- T E phi' phi'),
 * row r's variance at sa[r sa_step] (sqrt, 1/sqrt and the record NK_MEHLER_REC at +plen, +2 plen,
 * +(3 + q) plen), column c's at sb[c sb_step] likewise.  work: nk_mehler_work(nc) doubles. */
void nk_mehler_grid(const nk_act *act, double *K, double *T, int nr, int nc, const double *sa, size_t sa_step,
                    const double *sb, size_t sb_step, size_t plen, double *work);
size_t nk_mehler_work(size_t nc);
