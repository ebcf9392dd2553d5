/*
 * nkern.h -- exact infinite-width NNGP and NTK kernels of deep MLPs and CNNs.
 *
 * The header is the manual.  Flow of data:
 *
 *   spec text --nk_arch_parse--> nk_arch --nk_plan_create(input shape)--> nk_plan
 *             --nk_kernel_matrix(x1, x2)--> NNGP / NTK matrices
 *
 * Conventions follow neural-tangents (stax), so results compare entry by entry:
 *   input covariance  K0[p,p'] = <x_p, x'_p'> / C             (C = input channels)
 *   dense / conv      K <- w^2 * mean_{d in window} K[p s+d, p' s+d] + b^2
 *                     T <- K_new + w^2 * mean_d T[p s+d, p' s+d]      (NTK param.)
 *   activation        K <- E[phi(u) phi(v)],  T <- T * E[phi'(u) phi'(v)]
 *   flatten           mean of K[p,p] over p;   gap: mean of K[p,p'] over p, p'
 *   res(f)            K <- K + K_f(K)  (the two branches' covariances add)
 *
 * Every call returns an nk_status; on failure, if err is not NULL, err->msg holds a
 * one-line message "WHERE: WHAT (HOW TO FIX)".  The library never exits or aborts.
 */
#ifndef NKERN_H
#define NKERN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NK_VERSION "0.1.0"

typedef enum {
    NK_OK = 0,
    NK_ERR_INPUT = 2,  /* bad usage, spec, data or shapes: the caller can fix it */
    NK_ERR_NOMEM = 3,  /* an allocation failed, or the estimate exceeds the memory limit */
    NK_ERR_IO = 4,     /* a file could not be read or written */
    NK_ERR_RUN = 5,    /* a numerical failure during the run */
    NK_ERR_NONFINITE = 6 /* a result overflowed to Inf or NaN: the message names the layer, the
                            pair (i, j) and the quantity (nngp, ntk or a self-variance) */
} nk_status;

typedef struct {
    char msg[1024];
} nk_error;

/* Set err (if not NULL) from a printf-style format and return code. */
nk_status nk_fail(nk_error *err, nk_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---------------------------------------------------------------- data ---- */

/* A dense float64 array in C order.  ndim 1..4.  The owner frees data with nk_array_free. */
typedef struct {
    double *data;
    int ndim;
    size_t shape[4];
} nk_array;

size_t nk_array_size(const nk_array *a);           /* product of shape[0..ndim) */
void nk_array_free(nk_array *a);                     /* frees data, zeroes the struct */
nk_status nk_array_alloc(nk_array *a, int ndim, const size_t *shape, nk_error *err);

/* ---------------------------------------------------------- architecture -- */

typedef enum { NK_PARAM_NTK = 0, NK_PARAM_STANDARD = 1 } nk_param;

/* Global defaults for layers that do not set their own values.  Defaults as neural-tangents:
 * w_std 1, b_std 0 (no bias), NTK parameterization; width (channels of a hidden layer) only
 * matters for the standard parameterization's NTK. */
typedef struct {
    double w_std;
    double b_std;
    nk_param param;
    double width;
    int quad_order; /* Gauss-Hermite points per axis for activations without closed form;
                       0 (default): automatic, growing with the pre-activation variance */
} nk_arch_opts;

void nk_arch_opts_default(nk_arch_opts *o);

typedef struct nk_arch nk_arch;

/* Parse an architecture spec, e.g. "[conv(3) relu]*5 gap dense" or
 * "w=1.41 b=0.1 dense relu dense".  Grammar (whitespace separates items):
 *   spec    := { key=value } item*            global defaults: w, b, param, width, quad
 *   item    := layer | '[' item* ']' '*' N | 'res(' item* ')'
 *   layer   := dense[(opts)] | conv(F[,opts]) | avgpool(F[,opts]) | gap | flatten
 *            | relu | erf | identity | tanh | gelu | sigmoid | sin | softplus | swish
 *            | cos | exp | sign | rbf[(G)] | rbf(gamma=G) | leaky_relu(a) | abrelu(a,b)
 *   F       := N | NxN (per-axis filter or window size)
 *   opts    := key=value,...  with keys w, b, width, stride (N|NxN), pad (same|valid|circular)
 * On error, err->msg names the character position and what was expected. */
nk_status nk_arch_parse(const char *spec, const nk_arch_opts *opts, nk_arch **out,
                        nk_error *err);
void nk_arch_free(nk_arch *a);

/* -------------------------------------------------------------- the plan -- */

typedef enum { NK_MODE_SCALAR = 0, NK_MODE_DIAG = 1, NK_MODE_FULL = 2 } nk_mode;

typedef struct nk_plan nk_plan;

/* Bind an architecture to an input shape (one sample): ndim 1 (D), 2 (L, C) or 3 (H, W, C).
 * Computes every layer's output shape and the covariance mode it needs, chosen backwards from
 * the readout; fails with NK_ERR_INPUT if the architecture does not fit the input (a valid
 * conv larger than the image, a spatial output without flatten/gap, ...). */
nk_status nk_plan_create(const nk_arch *arch, int in_ndim, const size_t *in_shape,
                         nk_plan **out, nk_error *err);
void nk_plan_free(nk_plan *p);

/* Print the layers, shapes, covariance modes, memory and flop estimates for n1 x n2
 * entries (n2 = 0: a symmetric n1 x n1 Gram) to a caller-provided buffer.  _prec: the memory
 * of a run in float32 (f32 != 0: nk_kernel_opts.f32, whose engine keeps its samples and self
 * states in 4 bytes), otherwise float64. */
nk_status nk_plan_describe(const nk_plan *p, size_t n1, size_t n2, int nthreads, char *buf,
                           size_t buflen);
nk_status nk_plan_describe_prec(const nk_plan *p, size_t n1, size_t n2, int nthreads, int f32, char *buf,
                                size_t buflen);

/* Estimates for computing an n1 x n2 matrix (n2 = 0: symmetric Gram of n1). */
typedef struct {
    double bytes;        /* peak memory: inputs, outputs, per-sample state, per-thread work */
    double flops;        /* floating point operations of the recursion */
    double pair_flops;   /* flops for one kernel entry */
} nk_cost;
nk_status nk_plan_cost(const nk_plan *p, size_t n1, size_t n2, int nthreads, nk_cost *c);
/* the same for a run in float32 (f32 != 0: nk_kernel_opts.f32) */
nk_status nk_plan_cost_prec(const nk_plan *p, size_t n1, size_t n2, int nthreads, int f32, nk_cost *c);

/* Estimated time to compute an n1 x n2 matrix (n2 = 0: the symmetric Gram of n1, pairs i <= j,
 * plus each sample's self pass), in seconds of ONE core: divide by the cores that share the
 * work (threads x MPI ranks) for a wall time; nk_plan_seconds does it for threads of one
 * process.  From a per-op cost table calibrated on the reference machine (see plan.c: conv
 * taps, closed-form and quadrature activations, pools, the MLP tile path, the plane engine in
 * float64 or float32), with the quadrature order each activation will use, predicted from the
 * variance propagated through the network for inputs of mean square input_ms (<= 0: 1; for
 * raw 0..255 pixels, ~1e4).  f32: the plane engine in float32 (nk_kernel_opts.f32).  Expect
 * a factor ~2 either way on another machine; the order of magnitude is the point.  shift: each
 * entry summed over the translations by 0..shift pixels (nk_kernel_opts.shift; 0: none). */
double nk_plan_core_seconds(const nk_plan *p, size_t n1, size_t n2, double input_ms, int f32, int shift);
double nk_plan_seconds(const nk_plan *p, size_t n1, size_t n2, int nthreads, double input_ms, int f32, int shift);

/* The reach of the stored Mehler series (tanh, sigmoid, softplus, swish) at the variances the
 * time model propagates for inputs of mean square input_ms: the largest |rho| up to which every
 * such layer sums its series from the stored terms, 1 if all do (or there is no such layer).
 * Entries past it are integrated one by one (~0.1 s each: nk_dual_nested), which the time model
 * does not price; raw 0..255 pixels put a tanh CNN there.  op (may be NULL): the 0-based op of
 * the first layer that sets the reach, -1 if none. */
double nk_plan_mehler_reach(const nk_plan *p, double input_ms, int *op);

/* ------------------------------------------------------------ kernels ---- */

enum { NK_GET_NNGP = 1, NK_GET_NTK = 2, NK_GET_BOTH = 3 };

/* Progress callback: called from the calling thread with entries done and total; return
 * nonzero to cancel (the call then fails with NK_ERR_RUN). */
typedef int (*nk_progress_fn)(void *ctx, size_t done, size_t total);

typedef struct {
    int nthreads;          /* 0: all cores */
    int get;               /* NK_GET_* */
    double mem_limit;      /* bytes; 0: physical memory of the machine */
    nk_progress_fn progress;
    void *progress_ctx;
    int f32;               /* 1: the convolutional stack in float32 (sums in float64); 0: float64 */
    size_t first1, first2; /* messages number x1's samples from first1, x2's from first2 (a
                              caller computing a block of a larger matrix); default 0 */
    int shift;             /* 1..8: the kernel of the data closed under translations by 0..shift
                              pixels with wrap-around, as nk_kernel_matrix_augment (flip 0)
                              computes it, for plans of stride-1 circular convs (dense, 1x1) and
                              activations read out by a flatten (NK_ERR_INPUT otherwise; use
                              nk_kernel_matrix_augment); every entry is then one pair's planes
                              at all the translations, so tiles and journals work as for plain
                              kernels.  0: none (default) */
} nk_kernel_opts;

void nk_kernel_opts_default(nk_kernel_opts *o);

/* Kernel matrices between x1 (N1 samples) and x2 (N2 samples; NULL for the symmetric Gram of
 * x1, computing only i <= j).  Samples are the leading axis; the rest of each array's shape
 * must equal the plan's input shape.  nngp / ntk (either may be NULL if not requested) receive
 * newly allocated N1 x N2 arrays owned by the caller.  Data must be finite, with |x| <= 1e150
 * (NK_ERR_INPUT names the sample and element otherwise).
 * Every output and every sample's self-variances are checked as they are computed; the first
 * non-finite one stops the run with NK_ERR_NONFINITE and a message naming the pair (i, j) (or
 * the sample), the quantity (nngp, ntk, self-variance) and the first layer where it overflowed,
 * found by recomputing that pair layer by layer. */
nk_status nk_kernel_matrix(const nk_plan *p, const nk_array *x1, const nk_array *x2,
                           const nk_kernel_opts *o, nk_array *nngp, nk_array *ntk,
                           nk_error *err);

/* The checks nk_kernel_ctx_create makes of the options o against plan p before any work (shift's
 * range, and a plan that takes translations per entry), for callers that create files first:
 * NK_OK, or NK_ERR_INPUT with the reason and the fix. */
nk_status nk_kernel_opts_check(const nk_plan *p, const nk_kernel_opts *o, nk_error *err);

/* Tiles of a kernel matrix, for runs split over processes or resumed after an interruption.
 * nk_kernel_ctx_create does the per-sample work once (the same checks and arguments as
 * nk_kernel_matrix; x1, x2 must outlive the context); nk_kernel_tile then computes the entries
 * (i, c) for r0 <= i < r1, c0 <= c < c1 into nngp / ntk at [(i - r0) * ld + (c - c0)] (either
 * may be NULL if not requested).  Every entry is bit-identical to the one nk_kernel_matrix
 * returns, however the matrix is split, provided r0 and c0 are multiples of
 * nk_kernel_tile_align (128 for MLPs, whose first layer is one GEMM per 128 x 128 block; 8
 * otherwise).  For a Gram (x2 NULL) only entries with c >= i are computed; those below the
 * diagonal whose mirror lies in the tile are copied from it, the others are left untouched.
 * A context is used by one caller at a time (the tile itself runs on o->nthreads threads). */
typedef struct nk_kernel_ctx nk_kernel_ctx;
nk_status nk_kernel_ctx_create(const nk_plan *p, const nk_array *x1, const nk_array *x2,
                               const nk_kernel_opts *o, nk_kernel_ctx **out, nk_error *err);
size_t nk_kernel_tile_align(const nk_kernel_ctx *c);
/* the same, known from the plan alone (before any context or file exists) */
size_t nk_plan_tile_align(const nk_plan *p);
nk_status nk_kernel_tile(nk_kernel_ctx *c, size_t r0, size_t r1, size_t c0, size_t c1, double *nngp,
                         double *ntk, size_t ld, nk_error *err);
void nk_kernel_ctx_free(nk_kernel_ctx *c);
/* Horizontal-flip augmentation as a kernel: with f the mirror image along the last spatial
 * axis (W of (H, W, C) images, L of (L, C) signals),
 *   K_G(x, x') = 1/4 [K(x, x') + K(x, f x') + K(f x, x') + K(f x, f x')],
 * the kernel of the infinite ensemble trained on the data and its mirror images (always PSD).
 * If the plan is mirror-symmetric (nk_plan_flip_invariant) and full_sum is 0, the equal
 * 1/2 [K(x, x') + K(x, f x')] is computed instead (half the pairs); full_sum = 1 forces the
 * four terms.  Arguments and outputs as nk_kernel_matrix; inputs need a spatial axis. */
nk_status nk_kernel_matrix_flip(const nk_plan *p, const nk_array *x1, const nk_array *x2,
                                const nk_kernel_opts *o, int full_sum, nk_array *nngp, nk_array *ntk,
                                nk_error *err);
/* Flip and translation augmentation: A = {mirror^a then translate by (dy, dx) with wrap-around :
 * a in {0, flip}, dy, dx in 0..shift} (dy only on images), K_A(x, x') = |A|^-2 sum_{u,v in A}
 * K(u x, v x').  When the plan commutes with A (an MLP on flattened data commutes with any
 * permutation of positions; stride-1 circular convolutions without pooling with translations;
 * flips as nk_plan_flip_invariant), K(u x, v x') = K(x, u^-1 v x') and the sum is computed as
 * one kernel matrix per distinct u^-1 v (flip and shift 1 on images: 18 of them), weighted by
 * their counts.  Otherwise flips (shift 0) take the four-term sum and translations are refused
 * (NK_ERR_INPUT).  shift 0..8; full_sum as nk_kernel_matrix_flip. */
nk_status nk_kernel_matrix_augment(const nk_plan *p, const nk_array *x1, const nk_array *x2,
                                   const nk_kernel_opts *o, int flip, int shift, int full_sum,
                                   nk_array *nngp, nk_array *ntk, nk_error *err);
/* 1 if every window (conv, dense, pool, and the leading pools on the data) maps the mirrored
 * input to the mirrored output exactly, so that K(f x, f x') = K(x, x'): odd filters with
 * symmetric same padding, valid windows and strides that cover the axis evenly; 0 otherwise or
 * for inputs without a spatial axis. */
int nk_plan_flip_invariant(const nk_plan *p);

/* ----------------------------------------------------- dual activations -- */

typedef enum {
    NK_ACT_IDENTITY, NK_ACT_RELU, NK_ACT_ABRELU, NK_ACT_ERF, NK_ACT_TANH, NK_ACT_GELU,
    NK_ACT_SIGMOID, NK_ACT_SIN, NK_ACT_SOFTPLUS, NK_ACT_SWISH,
    NK_ACT_COS, NK_ACT_EXP, NK_ACT_RBF, NK_ACT_SIGN
} nk_act_kind;

typedef struct {
    nk_act_kind kind;
    double a, b;       /* abrelu slopes: phi(x) = a x (x < 0), b x (x >= 0); rbf: gamma = a
                          (phi(x) = sqrt 2 sin(sqrt(2 gamma) x + pi/4), neural-tangents' Rbf) */
} nk_act;

/* Pointwise activation and its derivative (for Monte Carlo and quadrature); sign' = 0
 * (its derivative almost everywhere). */
double nk_act_value(const nk_act *act, double x);
double nk_act_deriv(const nk_act *act, double x);

/* Dual of an activation for (u, v) ~ N(0, [[a, c], [c, b]]):
 *   *k = E[phi(u) phi(v)],  *kdot = E[phi'(u) phi'(v)]   (either pointer may be NULL).
 * Closed forms for identity, relu/abrelu, erf, gelu, sin, cos, exp, rbf and sign (whose
 * *kdot is 0: its derivative almost everywhere, as neural-tangents' Sign; exp's values are
 * +inf past e^709); Gauss-Hermite quadrature of `order` points per axis otherwise (order <= 0:
 * closed form only, NK_ERR_INPUT if none exists). */
nk_status nk_act_dual(const nk_act *act, double a, double b, double c, int order, double *k,
                      double *kdot);

/* Same expectations by quadrature regardless of closed forms (used to check them). */
nk_status nk_act_dual_quad(const nk_act *act, double a, double b, double c, int order,
                           double *k, double *kdot);

/* ---------------------------------------------------------------- I/O ---- */

/* Read a .npy file (float32, float64 or uint8, little-endian, C order) into float64. */
nk_status nk_npy_read(const char *path, nk_array *out, nk_error *err);
/* Parse .npy bytes already in memory (same rules; `name` appears in messages). */
nk_status nk_npy_parse(const unsigned char *buf, size_t len, const char *name, nk_array *out,
                       nk_error *err);
/* Write a float64 .npy (or float32 if as_f32) to path via a temporary name and rename. */
nk_status nk_npy_write(const char *path, const nk_array *a, int as_f32, nk_error *err);
/* The header nk_npy_write puts before the data of an array of this shape (data then starts at
 * byte *len, a multiple of 64): writers that place blocks of a matrix at their offsets. */
size_t nk_npy_header(int ndim, const size_t *shape, int as_f32, unsigned char head[512], size_t *len);
/* The same written straight to path (no temporary, no rename; synced to disk; removed on a
 * failure), for callers that manage their own temporary names (nkern's output transactions).
 * as_f32 with a value beyond float32's range: NK_ERR_NONFINITE, before the file is created. */
nk_status nk_npy_write_file(const char *path, const nk_array *a, int as_f32, nk_error *err);
/* Read an IDX file (MNIST / Fashion-MNIST; gzip or plain), any element type, into float64.
 * Images (N, H, W) come back with a trailing channel axis: (N, H, W, 1). */
nk_status nk_idx_read(const char *path, nk_array *out, nk_error *err);
nk_status nk_idx_parse(const unsigned char *buf, size_t len, const char *name, nk_array *out,
                       nk_error *err);

/* ------------------------------------------------------------ threads ---- */

/* The one parallel-for through which all threading goes: calls fn(ctx, i, thread) for
 * i in [0, n), scheduled dynamically over nthreads (0: all cores). */
typedef void (*nk_loop_fn)(void *ctx, size_t i, int thread);
void nk_parallel_for(size_t n, int nthreads, nk_loop_fn fn, void *ctx);
int nk_num_threads(int requested);

/* The instruction set the convolutional kernels run with on this machine: "avx512", "avx2" or
 * "portable" (chosen at run time; the environment variable NK_ISA can lower it). */
const char *nk_simd_isa(void);

#ifdef __cplusplus
}
#endif
#endif
