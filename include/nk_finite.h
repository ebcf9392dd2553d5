/*
 * nk_finite.h -- finite-width one-hidden-layer networks: the kernel renormalization theory of
 * Pacelli et al. 2023 (arXiv 2209.04882, dense) and Aiudi et al. 2023 (arXiv 2307.11807,
 * convolutional and locally connected), and Langevin sampling of the actual network's
 * Bayesian posterior to check it.  docs/finite-width.md gives every equation.
 *
 * The network (scalar output, N hidden units or channels, input x split into Np patches
 * x_1..x_Np of M values each):
 *   dense:  f(x) = N^{-1/2} sum_c v_c s(w_c . x / sqrt(M))                  (Np = 1, M = N0)
 *   conv:   f(x) = (N Np)^{-1/2} sum_{c,i} v_ci s(w_c . x_i / sqrt(M))      (filters shared)
 *   lc:     f(x) = (N Np)^{-1/2} sum_{c,i} v_ci s(w_ci . x_i / sqrt(M))     (a filter per patch)
 * Patches are non-overlapping mask x mask blocks of an (H, W, C) image (stride = mask),
 * numbered row-major; inside a patch the values are in (row, column, channel) order, so
 * M = mask^2 C.  A (D) or (H, W, C) input of a dense network is one patch of M = D or H W C.
 * Posterior at temperature T with Gaussian priors (precisions lambda0, lambda1):
 *   p(W, v) ~ exp(-(1/2T) sum_mu (y_mu - f(x_mu))^2 - (lambda0/2)|W|^2 - (lambda1/2)|v|^2).
 *
 * Theory (proportional limit, alpha = P / N): the posterior predictor is kernel regression with
 *   K_R(x, x') = sum_ij Q_ij K_ij(x, x') / (lambda1 Np),
 *   K_ij(x, x') = E[s(h_i) s(h'_j)], (h_i, h'_j) Gaussian with covariances x_i . x'_j / (lambda0 M),
 * where Q (1 x 1 dense, Np x Np symmetric positive definite conv, diagonal lc) minimizes
 *   S(Q) = tr Q - log det Q + (alpha/P) [log det(T I + K_R) + y^T (T I + K_R)^{-1} y].
 * The theory is for odd activations; identity and erf (closed-form K_ij) are offered.  A non-odd
 * one (relu, ...) gives the hidden features a mean that this action does not have (the papers'
 * group treats it with an extra order parameter): refused.
 */
#ifndef NK_FINITE_H
#define NK_FINITE_H

#include "nkern.h"
#include "nk_mc.h" /* Monte Carlo and empirical kernels of finite networks */

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { NK_NET_DENSE = 0, NK_NET_CONV = 1, NK_NET_LC = 2 } nk_net_kind;

typedef struct {
    nk_net_kind kind;
    nk_act act;          /* identity or erf */
    int mask;            /* conv / lc: patch side (mask x mask, stride mask); ignored for dense */
    double lambda0;      /* prior precision of the hidden weights (> 0) */
    double lambda1;      /* prior precision of the readout weights (> 0) */
    double temperature;  /* T > 0: the likelihood's noise variance */
} nk_finite_net;

/* dense, erf, lambda0 = lambda1 = 1, T = 0.1 (mask 1). */
void nk_finite_net_default(nk_finite_net *net);

/* Check the network against an input array x (N, D) or (N, H, W, C) and give its patch count
 * and patch size.  NK_ERR_INPUT with the reason (non-odd activation, mask not dividing H or W,
 * a conv net on (N, D) data, non-positive priors or temperature). */
nk_status nk_finite_shape(const nk_finite_net *net, const nk_array *x, size_t *npatch,
                          size_t *patch_size, nk_error *err);

/* Rearrange x into patch-major rows: out (N, Np, M), each row one patch in the order above. */
nk_status nk_finite_patches(const nk_finite_net *net, const nk_array *x, nk_array *out,
                            nk_error *err);

/* ------------------------------------------------------------- theory ---- */

/* The theory on one training set: the patch kernels K_ij on it, built once by
 * nk_lkr_create and reused for every alpha.  Memory: about 2 nq P^2 doubles during a solve,
 * nq = Np (Np + 1) / 2 for conv, Np for lc, 1 for dense. */
typedef struct nk_lkr nk_lkr;

nk_status nk_lkr_create(const nk_finite_net *net, const nk_array *x, const double *y,
                        nk_lkr **out, nk_error *err);
void nk_lkr_free(nk_lkr *m);
size_t nk_lkr_npatch(const nk_lkr *m);

typedef struct {
    int max_iter;   /* Newton iterations (default 200) */
    double tol;     /* stop when the largest residual of the saddle equation is below (1e-12) */
} nk_lkr_opts;
void nk_lkr_opts_default(nk_lkr_opts *o);

typedef struct {
    int iterations;   /* Newton steps taken */
    double residual;  /* max_ij |(Q^{-1})_ij - I_ij - alpha/(P lambda1 Np) G_ij| at the result */
    double action;    /* S(Q) at the result */
} nk_lkr_info;

/* Minimize S over Q for alpha = P / N >= 0 (alpha = 0: Q = I, the infinite-width NNGP).
 * Q is an Np x Np row-major array (zero off the diagonal for dense and lc) written on success.
 * dense: S is one-dimensional; the global minimum is bracketed on a logarithmic grid and
 * refined by safeguarded Newton steps.  conv / lc: damped Newton on the free entries of Q
 * from Q = I, a backtracking line search that keeps Q positive definite and decreases S.
 * NK_ERR_RUN if the residual does not reach opts->tol within max_iter (Q and info are then
 * still written with the last point), or if the Newton matrix cannot be made positive definite. */
nk_status nk_lkr_solve(const nk_lkr *m, double alpha, const nk_lkr_opts *opts, double *Q,
                       nk_lkr_info *info, nk_error *err);

/* S(Q) and the largest saddle residual at any symmetric positive definite Q (for checks). */
nk_status nk_lkr_action(const nk_lkr *m, double alpha, const double *Q, double *action,
                        double *residual, nk_error *err);

/* The renormalized training Gram K_R(Q) (P x P, row-major, caller's buffer). */
nk_status nk_lkr_gram(const nk_lkr *m, const double *Q, double *KR, nk_error *err);

/* Posterior mean and variance of f at test inputs (N0 samples of the training shape):
 *   mean = k_R(x0)^T (T I + K_R)^{-1} y,  var = K_R(x0, x0) - k_R(x0)^T (T I + K_R)^{-1} k_R(x0).
 * var may be NULL. */
nk_status nk_lkr_predict(const nk_lkr *m, const double *Q, const nk_array *x_test,
                         double *mean, double *var, nk_error *err);

/* ----------------------------------------------------------- Langevin ---- */

typedef struct {
    size_t width;       /* N: hidden units (dense) or channels (conv, lc) */
    double step;        /* eta; 0: 0.1 / (largest curvature of the loss at the start) */
    double burn_in;     /* relaxation times discarded first (default 5) */
    double run;         /* relaxation times sampled after burn-in (default 20) */
    long sample_every;  /* steps between test predictions (0: about 2000 samples per chain) */
    int chains;         /* independent chains (default 2) */
    uint64_t seed;
    int nthreads;       /* chains run in parallel (0: all cores) */
    int freeze_hidden;  /* 1: hidden weights stay at their start, only v is sampled (the
                           posterior is then exactly Gaussian: a check of the sampler) */
    const double *hidden_init; /* NULL: each chain starts from its own prior draw of W; else
                           every chain starts from these hidden weights ((N, M) for dense and
                           conv, (Np, N, M) for lc, row-major) */
    nk_progress_fn progress;  /* steps done / total over all chains; called from chain 0's thread */
    void *progress_ctx;
} nk_langevin_opts;
void nk_langevin_opts_default(nk_langevin_opts *o);

#define NK_LANGEVIN_MAX_CHAINS 64

typedef struct {
    /* over all chains pooled: mean over the test set of (y0 - <f>)^2, of Var f, and their sum */
    double bias, variance, loss;
    double loss_err;               /* standard error of loss: sd over chains / sqrt(chains) */
    double chain_loss[NK_LANGEVIN_MAX_CHAINS];
    double train_loss;             /* posterior mean of (1/P) sum_mu (y_mu - f(x_mu))^2 */
    double step;                   /* the eta used */
    double relax_steps;            /* 1 / (eta T min(lambda0, lambda1)): one relaxation time */
    long steps;                    /* steps per chain, burn-in included */
    long samples;                  /* test predictions per chain */
    double seconds;                /* wall time of the run (all chains) */
} nk_langevin_result;

/* Sample the posterior of the finite network on (x, y) by unadjusted Langevin dynamics
 *   theta <- theta - eta grad U(theta) + sqrt(2 eta T) xi,
 *   U = (1/2) sum_mu (y_mu - f(x_mu))^2 + (T lambda0 / 2)|W|^2 + (T lambda1 / 2)|v|^2,
 * (stationary density exp(-U/T), up to O(eta)) from a prior draw, and average the test loss.
 * mean_test (N0 values) receives the pooled posterior mean of f at x_test, var_test its
 * variance; either may be NULL. */
nk_status nk_langevin_run(const nk_finite_net *net, const nk_array *x, const double *y,
                          const nk_array *x_test, const double *y_test,
                          const nk_langevin_opts *opts, nk_langevin_result *res,
                          double *mean_test, double *var_test, nk_error *err);

#ifdef __cplusplus
}
#endif
#endif
