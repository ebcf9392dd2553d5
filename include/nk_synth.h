/*
 * nk_synth.h -- synthetic data on products of spheres and learning curves of kernel
 * regression, measured and predicted (SCIENCE.md section 3, "Learning curves").
 *
 * Inputs x = (x_1, ..., x_m): m patches, each uniform on the sphere of radius sqrt(n0) in
 * R^{n0} (a normalized Gaussian vector times sqrt(n0)).  Stored as (m, n0) -- m positions with
 * the patch as channels -- nkern's input covariance K0[p,p'] = <x_p, x'_p'> / n0 is then the
 * patch cosine t_p = <u_p, u'_p> of the unit patches u_p = x_p / sqrt(n0), the convention of
 * nk_product_sphere_eigen.  Flattened to (m n0) for an MLP, K0 = mean_p t_p.
 *
 * Targets: sums of terms, each a product of Gegenbauer polynomials (P_k(1) = 1, dimension n0)
 *   f(x) = sum_terms c_term prod_{i in term} P_{k_i}(<u_i, z_i>)
 * with one fixed random unit direction z_i per patch.  A term with degree vector
 * k = (k_1..k_m) (k_i = 0 off the term's patches) lies in the eigenspace of lambda_k of every
 * kernel of the patch cosines, with squared norm under the uniform measure
 *   E[f_term^2] = c^2 prod_i 1 / N(n0, k_i),
 * and terms with different degree vectors are orthogonal.  Optional Gaussian noise of
 * variance noise is added to y.
 *
 * Random numbers: splitmix64 (nk_rng of nk_data.h), Gaussians by Box-Muller.  Directions come
 * from the direction seed, samples from the sample seed, so training sets of different seeds
 * and one held-out set share the target.
 *
 * Eigenlearning (Simon et al. 2021; Bordelon, Canatar, Pehlevan 2020): kernel regression
 * f = k*^T (K + delta I)^{-1} y on n samples of a kernel with eigenvalues lambda_i (under the
 * sampling measure) and target coefficients v_i has expected test MSE (noisy test targets)
 *   n = sum_i lambda_i / (lambda_i + kappa) + delta / kappa         (defines kappa > 0)
 *   L_i = lambda_i / (lambda_i + kappa),   E0 = n / (n - sum_i L_i^2),
 *   MSE = E0 (sum_i (1 - L_i)^2 v_i^2 + noise).
 * Eigenvalues are given as levels: value lambda, multiplicity M (modes sharing lambda) and
 * the target's power V = sum v_i^2 over the level.
 *
 * All calls return an nk_status and fill err (if not NULL) with "WHERE: WHAT (HOW TO FIX)".
 */
#ifndef NK_SYNTH_H
#define NK_SYNTH_H

#include "nkern.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NK_SYNTH_MAX_PATCHES 64
#define NK_SYNTH_MAX_TERMS 32

/* One term of a target: coefficient and a degree per patch (0 = the patch is not used). */
typedef struct {
    double coef;
    int degree[NK_SYNTH_MAX_PATCHES];
} nk_synth_term;

typedef struct {
    int m, n0;                              /* patches, dimension of each patch (n0 >= 2) */
    size_t nterms;
    nk_synth_term term[NK_SYNTH_MAX_TERMS];
    double noise;                           /* variance of the Gaussian noise on y */
    uint64_t dir_seed;                      /* seed of the directions z_i */
} nk_synth_target;

/* Parse a target "P:K,P:K+C*P:K" for m patches: '+' separates terms, ',' the factors of a
 * term, P the patch (0..m-1), K the degree (0..1000); an optional "C*" prefix sets the term's
 * coefficient (default 1).  Example: "0:2,1:2+0.5*0:1,3:1".  Fills t->m, nterms, term[];
 * leaves n0, noise, dir_seed to the caller.  Errors name the character position. */
nk_status nk_synth_parse_target(const char *s, int m, nk_synth_target *t, nk_error *err);

/* Check a target (patch counts, degrees, noise >= 0). */
nk_status nk_synth_check(const nk_synth_target *t, nk_error *err);

/* The unit directions z (m x n0, row-major) of a target, from t->dir_seed. */
nk_status nk_synth_directions(const nk_synth_target *t, double *z, nk_error *err);

/* n samples: x receives a new (n, m, n0) array (patch radius sqrt(n0)), y a new (n) array
 * with the target plus noise (y may be NULL for inputs only).  f_clean (optional, n values)
 * receives the target without noise. */
nk_status nk_synth_sample(const nk_synth_target *t, size_t n, uint64_t sample_seed,
                          nk_array *x, nk_array *y, double *f_clean, nk_error *err);

/* Squared norm E[f^2] of the target without noise under the uniform measure: terms grouped by
 * degree vector (equal vectors give the same function: coefficients add), each group
 * (sum c)^2 prod_i 1/N(n0, k_i). */
double nk_synth_power(const nk_synth_target *t);

/* -------------------------------------------------------- eigenlearning -- */

typedef struct {
    double lambda;   /* eigenvalue (>= 0) */
    double mult;     /* number of modes with this eigenvalue (> 0) */
    double power;    /* target power sum v_i^2 over the level (>= 0) */
} nk_eig_level;

typedef struct {
    double kappa;          /* effective regularization; 0 in the ridgeless limit n >= modes */
    double sum_l;          /* sum_i L_i over modes (= n - delta / kappa) */
    double e0;             /* n / (n - sum_i L_i^2); INFINITY at the interpolation peak */
    double mse;            /* predicted test MSE */
    double learned_power;  /* sum_i L_i v_i^2: target power reproduced by the mean predictor */
} nk_eigenlearn_result;

/* Solve the eigenlearning equations for n samples, ridge delta >= 0 and noise variance
 * noise >= 0 (kappa by bisection in log kappa to relative precision 1e-14).  Ridgeless
 * (delta = 0) with n at least the number of modes with lambda > 0: kappa = 0, every L = 1,
 * E0 = n / (n - modes).  L_i of each level go to L (optional, nlev values). */
nk_status nk_eigenlearn(const nk_eig_level *lev, size_t nlev, double n, double delta,
                        double noise, nk_eigenlearn_result *r, double *L, nk_error *err);

/* Levels of a kernel on a product of m spheres S^{n0-1} for a target: eigenvalues lambda
 * (index sum_i k_i (kmax+1)^(m-1-i), as from nk_product_sphere_eigen) for every degree vector
 * with k_i <= kmax, multiplicity prod_i N(n0, k_i), and the target's power on each.  levels
 * receives (kmax+1)^m entries.  Fails if a target degree exceeds kmax.  Eigenvalues that
 * come out negative from quadrature rounding (|lambda| <= 1e-10 max lambda) are set to 0,
 * larger negative ones are an error.  *trace_out (optional) gets sum mult * lambda. */
nk_status nk_product_levels(const double *lambda, int m, int n0, int kmax,
                            const nk_synth_target *t, nk_eig_level *levels, double *trace_out,
                            nk_error *err);

/* Measured test MSE of kernel regression on the first n samples of a pool: k_pool (N, N) the
 * pool's Gram, k_test_pool (T, N) the kernel between test points and the pool, y_pool (N) and
 * y_test (T) the targets; predictions k*^T (K_nn + ridge I)^{-1} y_n with an absolute ridge
 * (nk_gp with reg_absolute).  Taking prefixes lets one Gram serve every n of a curve. */
nk_status nk_krr_test_mse(const nk_array *k_pool, const nk_array *k_test_pool, const double *y_pool,
                          const double *y_test, size_t n, double ridge, double *mse, nk_error *err);

#ifdef __cplusplus
}
#endif
#endif
