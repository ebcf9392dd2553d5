/*
 * nk_theory.h -- eigenstructure and trainability of infinite-width networks, on top of nkern.h.
 *
 * Mean field (Poole et al. 2016; Schoenholz et al. 2017), for a deep network whose layers are
 * x -> phi(W x + b) with Var W = sw2 / fan_in, Var b = sb2 (neural-tangents' NTK
 * parameterization, so sw2 = w_std^2 and sb2 = b_std^2 of an architecture spec):
 *   length map       q_{l+1} = sw2 E_z[phi(sqrt(q_l) z)^2] + sb2,        fixed point q*
 *   correlation map  c_{l+1} = (sw2 E[phi(u) phi(v)] + sb2) / q*,  (u, v) of variance q*
 *                    and correlation c_l,                                 fixed point c*
 *   chi_1  = sw2 E[phi'(sqrt(q*) z)^2]        (slope of the correlation map at c = 1)
 *   chi_c  = sw2 E[phi'(u) phi'(v)] at c*     (slope of the correlation map at c*)
 *   chi_q  = d q_{l+1} / d q_l at q*
 *   xi_q = -1 / log chi_q,  xi_c = -1 / log chi_c   (depth scales of the two maps)
 * Ordered phase chi_1 < 1 (c* = 1), chaotic chi_1 > 1 (c* < 1), critical chi_1 = 1.
 *
 * Eigenstructure (SCIENCE.md section 3): dot-product kernels on the sphere S^{d-1},
 *   k(t) = sum_k mu_k N(d,k) P_k(t),   P_k the Gegenbauer polynomial with P_k(1) = 1,
 *   mu_k = c_d int_{-1}^{1} k(t) P_k(t) (1 - t^2)^{(d-3)/2} dt,
 *   c_d  = Gamma(d/2) / (sqrt(pi) Gamma((d-1)/2)),
 *   N(d,k) = (2k + d - 2)/k * binom(k + d - 3, d - 2)   (N(d,0) = 1).
 * The kernel of an MLP on the sphere: inputs x with |x|^2 = D, so that nkern's input
 * covariance K0 = <x, x'>/D equals the cosine t.  An MLP kernel depends on its inputs only
 * through K0(x,x), K0(x',x'), K0(x,x'), so k(t) is evaluated on 2-dimensional inputs
 * x = sqrt(2) (1, 0), x' = sqrt(2) (t, sqrt(1 - t^2)) whatever d is.
 *
 * All calls return an nk_status and fill err (if not NULL) with "WHERE: WHAT (HOW TO FIX)".
 */
#ifndef NK_THEORY_H
#define NK_THEORY_H

#include "nkern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Parse an activation name as in architecture specs: identity, relu, erf, tanh, gelu,
 * sigmoid, sin, cos, exp, sign, rbf, rbf(G), rbf(gamma=G), softplus, swish, leaky_relu(A),
 * abrelu(A,B). */
nk_status nk_act_parse(const char *name, nk_act *out, nk_error *err);

/* ------------------------------------------------------------ mean field -- */

typedef struct {
    nk_act act;
    double sw2, sb2; /* weight and bias variances sigma_w^2, sigma_b^2 */
    int quad_order;  /* not used by the maps (kept for source compatibility): every expectation
                        is a closed form or adaptive with an error estimate (relative 1e-12;
                        NK_ERR_RUN if it is not met) */
    double q0;       /* starting length for the q iteration (<= 0: 1) */
} nk_mf_params;

typedef enum { NK_PHASE_ORDERED = -1, NK_PHASE_CRITICAL = 0, NK_PHASE_CHAOTIC = 1 } nk_phase;

typedef struct {
    double q_star;   /* fixed point; 0 or INFINITY when the iteration collapses or diverges */
    double c_star;
    double chi1, chi_c, chi_q;
    double xi_q, xi_c; /* INFINITY at criticality */
    nk_phase phase;  /* by chi1, with |chi1 - 1| <= 1e-9 counted as critical */
    int q_iters;     /* evaluations of the q map the search took */
    int q_diverges;  /* 1: f(q) > q at every q from the iteration's end up to 1e150 (q* = INFINITY):
                        no fixed point, the length grows without bound with depth */
} nk_mf_result;

/* One step of each map: q_next = sw2 E[phi(sqrt(q) z)^2] + sb2;
 * c_next = (sw2 E[phi(u)phi(v)] + sb2) / q_next for (u,v) of variance q and correlation c
 * (q_next = q at the fixed point; normalizing by q_next keeps the map scale-free when q* is 0
 * or infinite, as for relu without bias).  Lengths are clamped to [1e-150, 1e150]. */
nk_status nk_mf_qmap(const nk_mf_params *p, double q, double *q_next, nk_error *err);
nk_status nk_mf_cmap(const nk_mf_params *p, double q, double c, double *c_next, nk_error *err);
/* chi = sw2 E[phi'(u) phi'(v)] for variance q and correlation c (c = 1 gives chi_1 at q).
 * sign: its distributional derivative 2 delta, sw2 2 / (pi q sqrt(1 - c^2)) (infinite at c = 1:
 * always chaotic), the slope of its correlation map. */
nk_status nk_mf_chi(const nk_mf_params *p, double q, double c, double *chi, nk_error *err);
/* Fixed points, slopes, depth scales and phase.  q* by iterating the length map from q0
 * (Newton steps once the map contracts; relative tolerance 1e-14); if it has not settled after
 * 400 steps, by a scan of f(q) - q over q 2^j and bisection: 0 if it collapses below 1e-150,
 * INFINITY with q_diverges = 1 if f(q) > q up to 1e150 (slopes are then the limits); c* = 1 in the ordered phase, otherwise the
 * root of c_map(c) = c in [0, 1) by bisection (the map is convex in c, so the root is unique). */
nk_status nk_mf_solve(const nk_mf_params *p, nk_mf_result *r, nk_error *err);
/* The critical weight variance at bias variance sb2: the sw2 in [lo, hi] with chi_1 = 1, by
 * bisection on chi_1(sw2) - 1.  NK_ERR_RUN if chi_1 - 1 has the same sign at both ends. */
nk_status nk_mf_critical_sw2(const nk_mf_params *p, double sb2, double lo, double hi,
                             double *sw2, nk_error *err);

/* ----------------------------------------------------- spectra of Grams -- */

/* Eigenvalues (ascending) of a symmetric n x n matrix a (row-major, overwritten by the
 * eigenvectors as columns if vectors is nonzero, else destroyed), by LAPACKE_dsyevd. */
nk_status nk_sym_eig(double *a, size_t n, int vectors, double *eig, nk_error *err);
/* Check that a is square and symmetric to relative tolerance tol (of max |a_ij|);
 * `name` appears in the message. */
nk_status nk_check_symmetric(const nk_array *a, double tol, const char *name, nk_error *err);

typedef struct {
    double lmax, lmin, cond;   /* cond = lmax / lmin (INFINITY if lmin <= 0) */
    double bulk_median;        /* median of the eigenvalues other than lmax */
    double bulk_mean;          /* mean of the eigenvalues other than lmax */
    double cond_bulk;          /* bulk_mean / lmin */
    double eff_rank;           /* (sum l)^2 / sum l^2 */
    double trace;
    double lr_max;             /* 2 / lmax: the largest stable learning rate of gradient descent */
} nk_spec_stats;

/* Statistics of n eigenvalues sorted ascending. */
void nk_spec_stats_compute(const double *eig, size_t n, nk_spec_stats *s);

/* Least-squares slope alpha of log lambda_i against log i for i in [i0, i1] (1-based ranks
 * of the eigenvalues sorted descending; only positive ones), so lambda_i ~ C i^{-alpha}.
 * `desc` holds n eigenvalues sorted descending.  Returns NK_ERR_INPUT if fewer than 2 usable. */
nk_status nk_decay_fit(const double *desc, size_t n, size_t i0, size_t i1, double *alpha,
                       double *log_c, nk_error *err);

/* Predictions P(Theta) = Theta_{test,train} Theta^{-1} Y of the infinite-time gradient-flow
 * (Xiao, Pennington, Schoenholz 2020): theta (n x n train Gram, destroyed), cross (m x n),
 * y (n x c), pred (m x c).  Solved by Cholesky with diagonal regularization reg * mean diag. */
nk_status nk_ptheta_predict(double *theta, size_t n, const double *cross, size_t m,
                            const double *y, size_t c, double reg, double *pred, nk_error *err);

/* ---------------------------------------------------------- the sphere -- */

/* Gauss-Jacobi rule for the weight (1 - t^2)^{(d-3)/2} on [-1, 1] with n nodes, d >= 2
 * (Golub-Welsch: nodes are the eigenvalues of the Jacobi matrix, by LAPACKE_dstev; weights
 * are the Christoffel numbers 1 / sum_k p_k(t_j)^2 of the orthonormal polynomials, scaled to
 * the weight's total mass).  Caller allocates t[n], w[n]. */
nk_status nk_gauss_jacobi_sym(int d, size_t n, double *t, double *w, nk_error *err);
/* P_0..P_kmax of dimension d at t (P_k(1) = 1), into p[kmax+1]. */
void nk_gegenbauer(int d, int kmax, double t, double *p);
/* Multiplicity N(d,k) of degree-k spherical harmonics on S^{d-1}. */
double nk_sphere_multiplicity(int d, int k);
/* c_d = Gamma(d/2) / (sqrt(pi) Gamma((d-1)/2)): int c_d (1-t^2)^{(d-3)/2} dt = 1. */
double nk_sphere_cd(int d);

/* Values k(t_j) of the NNGP (get = NK_GET_NNGP) or NTK (NK_GET_NTK) of an MLP spec at
 * cosines t[0..n) (inputs on the sphere scaled so K0 = t; see the header comment). */
nk_status nk_sphere_kernel(const char *spec, const nk_arch_opts *ao, int get, const double *t,
                           size_t n, double *k, nk_error *err);

/* Eigenvalues mu_0..mu_kmax of the kernel of an MLP spec on S^{d-1}, by Gauss-Jacobi
 * quadrature with nquad nodes (0: max(2000, 8 kmax)).  Optional k1: the kernel at t = 1. */
nk_status nk_sphere_eigen(const char *spec, const nk_arch_opts *ao, int get, int d, int kmax,
                          size_t nquad, double *mu, double *k1, nk_error *err);

/* ------------------------------------------------- products of spheres -- */

/* Kernel eigenvalues on a product of m spheres (Geifman et al. 2022; Xiao 2022): input
 * x = (x_1..x_m), patch x_i on S^{n0-1}; a kernel that depends only on the patch cosines
 * t_i = <x_i, x'_i>/n0 (|x_i|^2 = n0) expands as
 *   K(t) = sum_k lambda_k prod_i N(n0, k_i) P_{k_i}(t_i),
 *   lambda_k = prod_i c_{n0} int K(t) prod_i P_{k_i}(t_i) (1 - t_i^2)^{(n0-3)/2} dt.
 * spec acts on inputs of shape (m, C): m positions with the patch as channels, so a
 * non-overlapping conv(n0, stride=n0) on the raw signal is conv(1) here; later layers may
 * combine positions (conv(2,stride=2,pad=valid), flatten, dense).  The kernel is evaluated on
 * 2-channel patches with cosines t_i; the call first checks, by rotating the patches
 * independently, that it depends on nothing else (it would through gap or avgpool, which
 * need covariances between different positions: NK_ERR_INPUT; convolutions over positions
 * with a flatten readout only use same-position entries and are fine).  Tensor-product Gauss-Jacobi rule with nquad nodes per patch
 * (nquad^m kernel evaluations, at most 2^24).  lambda receives (kmax+1)^m values, index
 * sum_i k_i (kmax+1)^(m-1-i). */
nk_status nk_product_sphere_eigen(const char *spec, const nk_arch_opts *ao, int get, int m,
                                  int n0, int kmax, size_t nquad, double *lambda, nk_error *err);

#ifdef __cplusplus
}
#endif
#endif
