/*
 * nk_mc.h -- finite random networks: empirical and Monte Carlo NNGP / NTK.
 *
 * A plan (nkern.h) fixes the architecture and the input shape; here it is instantiated as an
 * actual network of finite width: every dense / conv layer has the number of channels its
 * `width` says (per layer, `dense(512)` or `conv(3,width=64)`, or globally, `width=256 ...` or
 * nk_arch_opts.width), and the readout -- the last layer, if it is a dense one (or a conv with
 * one output position) -- has `outputs` units.  Conventions are neural-tangents' (stax, empirical_kernel_fn,
 * monte_carlo_kernel_fn), so that as the width grows the estimates converge entry by entry to
 * nk_kernel_matrix's exact kernels:
 *
 *   affine layer (dense = 1x1 conv), fan_in = Cin * window, s = w / sqrt(fan_in):
 *     NTK parameterization       y = s A theta_W + b theta_b,   theta ~ N(0, 1)
 *     standard parameterization  y = A theta_W + theta_b,       theta_W ~ N(0, s^2),
 *                                                               theta_b ~ N(0, b^2)
 *   (A: the input, or its im2col patches; b = 0 means no bias parameter.)  Both give the same
 *   random function; the NTKs differ because the parameters differ.  avgpool divides by the
 *   whole window (zero padding counts), gap averages positions, flatten concatenates them, res
 *   adds the body's output to its input.
 *
 *   empirical NNGP of one network  K(x, x') = (1/k) sum_j f_j(x) f_j(x')       (k outputs)
 *   empirical NTK of one network   T(x, x') = (1/k) sum_j sum_theta df_j(x)/dtheta df_j(x')/dtheta
 *   Monte Carlo estimates: the mean of these over S independently drawn networks, and the
 *   standard error of that mean from the spread over the S networks.
 *
 * Networks are numbered: network i of seed s has its parameters from a random stream fixed by
 * (s, i) alone, so a run's result does not depend on the number of threads.
 */
#ifndef NK_MC_H
#define NK_MC_H

#include "nkern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------- one network ---- */

typedef struct nk_mc_net nk_mc_net;

/* A network of the plan's architecture (the plan, and the architecture it was made from, may be
 * freed afterwards; both must exist during the call).  outputs: units of the readout if the
 * last layer is dense or conv (>= 1); ignored otherwise (then every value of the last layer is
 * an output).  Fails with NK_ERR_INPUT, naming the layer, if a hidden width is
 * not an integer in 1..2^20.  Parameters are zero until nk_mc_net_sample. */
nk_status nk_mc_net_create(const nk_plan *p, int outputs, nk_mc_net **out, nk_error *err);
void nk_mc_net_free(nk_mc_net *net);

/* Draw the parameters of network `index` of stream `seed`. */
void nk_mc_net_sample(nk_mc_net *net, uint64_t seed, uint64_t index);

size_t nk_mc_net_nparams(const nk_mc_net *net);
size_t nk_mc_net_outputs(const nk_mc_net *net);
/* The parameter vector theta (nparams doubles, in the units of the parameterization above),
 * layer by layer: weights (fan_in x Cout, row-major: window offsets, then input channels),
 * then biases.  Writable: a caller may set its own parameters. */
double *nk_mc_net_params(nk_mc_net *net);

/* Outputs f (n x outputs, row-major) on n samples x (each of the plan's input shape, C order). */
nk_status nk_mc_net_forward(nk_mc_net *net, const double *x, size_t n, double *f, nk_error *err);

/* The empirical NTK of this network on n samples: ntk (n x n) by a backward pass per output;
 * f (n x outputs, may be NULL) receives the outputs of the same forward pass. */
nk_status nk_mc_net_ntk(nk_mc_net *net, const double *x, size_t n, double *f, double *ntk, nk_error *err);

/* Bytes of workspace a network needs for n samples (NTK included if ntk). */
double nk_mc_net_bytes(const nk_mc_net *net, size_t n, int ntk);

/* ------------------------------------------------------- Monte Carlo ---- */

/* Estimates after the first `networks` networks (as neural-tangents' monte_carlo_kernel_fn with a
 * list of n_samples): arrays as nk_mc_kernel's outputs, owned by the library and valid during the
 * call only; NULL where not requested.  Return nonzero to cancel the run. */
typedef int (*nk_mc_snapshot_fn)(void *ctx, long networks, const nk_array *nngp, const nk_array *nngp_se,
                                 const nk_array *ntk, const nk_array *ntk_se);

typedef struct {
    long samples;          /* S, networks to average over (>= 1; >= 2 for standard errors) */
    uint64_t seed;
    int outputs;           /* readout units (see nk_mc_net_create); default 1 */
    int get;               /* NK_GET_NNGP, NK_GET_NTK or NK_GET_BOTH */
    int nthreads;          /* 0: all cores; each thread draws whole networks */
    double mem_limit;      /* bytes; 0: physical memory */
    nk_progress_fn progress;  /* called with networks done and S; nonzero return cancels */
    void *progress_ctx;
    const long *snapshots; /* increasing network counts in 1..S at which to call snapshot */
    int nsnapshots;
    nk_mc_snapshot_fn snapshot;
    void *snapshot_ctx;
} nk_mc_opts;

void nk_mc_opts_default(nk_mc_opts *o);

/* Monte Carlo NNGP / NTK between x1 (N1 samples) and x2 (N2, or NULL for the Gram of x1), as
 * nk_kernel_matrix's arguments.  nngp / ntk receive N1 x N2 means over the S networks (either
 * may be NULL if not requested); nngp_se / ntk_se (may be NULL) their standard errors
 * sqrt(sum_s (K_s - mean)^2 / (S (S - 1))) (zero if S = 1).  The networks run on x1 and x2
 * together, so each network's x1 and x2 outputs share its parameters. */
nk_status nk_mc_kernel(const nk_plan *p, const nk_array *x1, const nk_array *x2, const nk_mc_opts *o,
                       nk_array *nngp, nk_array *ntk, nk_array *nngp_se, nk_array *ntk_se, nk_error *err);

#ifdef __cplusplus
}
#endif
#endif
