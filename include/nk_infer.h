/*
 * nk_infer.h -- predictions of infinitely wide networks from their kernel matrices.
 *
 * Two plans, each built once from the training kernel and targets, then queried for
 * many test sets (and, for gradient flow, many times):
 *
 *   nk_gp    NNGP (Bayesian) posterior, through the Cholesky factor of K + eps I:
 *              mean = K*^T (K + eps I)^-1 Y
 *              cov  = K** - K*^T (K + eps I)^-1 K*
 *   nk_flow  the infinite ensemble trained by gradient flow on the MSE loss
 *            (Lee et al. 2019, "Wide neural networks of any depth evolve as linear models
 *            under gradient descent", eqs. 15-16), through one eigendecomposition
 *            Theta + eps I = V diag(lambda) V^T reused for every time:
 *              mean_t = Theta*^T Theta^-1 (I - e^{-eta Theta t}) Y        (t = inf: Theta*^T Theta^-1 Y)
 *              cov_t  = K** + B K B^T - (B K* + K*^T B^T),   B = Theta*^T Theta^-1 (I - e^{-eta Theta t})
 *            K is the NNGP kernel (the ensemble's distribution at initialisation) and Theta
 *            the NTK.  With Theta = K this reduces to the NNGP posterior at t = inf (and to
 *            training only the readout layer at finite t).
 *
 * Shapes (neural-tangents' order: test rows, train columns):
 *   k_train       (N, N)   symmetric training kernel
 *   y_train       (N) or (N, k)  targets; k outputs share one covariance
 *   k_test_train  (M, N)   kernel between test (rows) and training points (columns)
 *   k_test_test   (M) diagonal only, or (M, M)
 *
 * Regularization: eps = diag_reg * mean(diag of the kernel being inverted) by default
 * (neural-tangents' diag_reg), or eps = diag_reg with reg_absolute.
 *
 * Time: predictions depend on eta * t only.  neural-tangents normalises the loss by the
 * number of targets (N k), so its gradient_descent_mse_ensemble(learning_rate = lr_nt) at
 * time t_nt equals ours with lr = lr_nt / (N k) at the same t.
 *
 * Bad input (shapes, NaN/Inf, non-symmetric or non-PSD kernels, a singular kernel without
 * regularization) fails with NK_ERR_INPUT and a message "WHERE: WHAT (HOW TO FIX)".
 */
#ifndef NK_INFER_H
#define NK_INFER_H

#include "nkern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    double diag_reg;     /* regularization strength; default 0 (as neural-tangents) */
    int reg_absolute;    /* 0: eps = diag_reg * mean(diag K); 1: eps = diag_reg */
    double lr;           /* learning rate eta of gradient flow; default 1 */
    double sym_tol;      /* |K_ij - K_ji| allowed, relative to max |K_ii|; default 1e-6 */
    double psd_tol;      /* eigenvalue of K + eps I below -psd_tol * lambda_max is an error;
                            default 1e-6 (float32 kernels carry ~1e-7 relative rounding) */
} nk_infer_opts;

void nk_infer_opts_default(nk_infer_opts *o);

/* Which part of the predictive covariance to return. */
typedef enum { NK_COV_NONE = 0, NK_COV_DIAG = 1, NK_COV_FULL = 2 } nk_cov_mode;

/* ------------------------------------------------------- NNGP posterior -- */

typedef struct nk_gp nk_gp;

/* Factor K + eps I (dpotrf) and solve for alpha = (K + eps I)^-1 Y (dpotrs).
 * Fails with NK_ERR_INPUT if the factorization breaks down: the message gives the smallest
 * eigenvalue and a regularization that would work. */
nk_status nk_gp_create(const nk_array *k_train, const nk_array *y_train,
                       const nk_infer_opts *o, nk_gp **out, nk_error *err);
void nk_gp_free(nk_gp *gp);

/* Posterior for M test points.  mean receives a new (M, k) array (k = 1 for 1-D targets).
 * cov_mode NK_COV_NONE: k_test_test and cov are ignored (may be NULL);
 * NK_COV_DIAG: k_test_test is (M) or (M, M), cov receives (M) variances;
 * NK_COV_FULL: k_test_test is (M, M), cov receives (M, M). */
nk_status nk_gp_predict(const nk_gp *gp, const nk_array *k_test_train,
                        const nk_array *k_test_test, nk_cov_mode cov_mode, nk_array *mean,
                        nk_array *cov, nk_error *err);

/* eps actually added to the diagonal. */
double nk_gp_reg(const nk_gp *gp);

/* --------------------------------------------------------- gradient flow -- */

typedef struct nk_flow nk_flow;

/* Eigendecompose Theta + eps I (dsyevd) once.  nngp_train (N, N) is needed only for
 * covariances (NULL otherwise).  Negative eigenvalues within psd_tol are set to zero, as
 * neural-tangents does; larger ones fail with NK_ERR_INPUT. */
nk_status nk_flow_create(const nk_array *ntk_train, const nk_array *nngp_train,
                         const nk_array *y_train, const nk_infer_opts *o, nk_flow **out,
                         nk_error *err);
void nk_flow_free(nk_flow *f);

/* Predictions at ntimes times (INFINITY allowed; t >= 0).
 * mean receives (T, M, k).  cov_mode NK_COV_DIAG gives cov (T, M), NK_COV_FULL (T, M, M);
 * both need nngp_test_train (M, N), k_test_test as in nk_gp_predict (NNGP of the test
 * points), and a plan created with nngp_train.  t = inf needs every eigenvalue of
 * Theta + eps I positive (else NK_ERR_INPUT suggesting a regularization).
 * Cost: 2 M N^2 once, then per time M N k (mean) and 2 M N^2 (covariance; + M^2 N full).
 * Workspace: up to 4 x min(M, 512) x N doubles (4 M N with full covariance). */
nk_status nk_flow_predict(const nk_flow *f, const nk_array *ntk_test_train,
                          const nk_array *nngp_test_train, const nk_array *nngp_test_test,
                          const double *times, size_t ntimes, nk_cov_mode cov_mode,
                          nk_array *mean, nk_array *cov, nk_error *err);

/* eps added to the diagonal, and the eigenvalues (ascending, N of them) of Theta + eps I. */
double nk_flow_reg(const nk_flow *f);
const double *nk_flow_eigenvalues(const nk_flow *f, size_t *n);

/* -------------------------------------------------------- classification -- */

/* Targets for regression on classes: out (N, nclass) with `on` at the label's column and
 * `off` elsewhere (Lee et al.: on = 0.9, off = -0.1, i.e. one-hot minus 1/10 for 10 classes).
 * labels (N) hold integers in [0, nclass); nclass 0 means max(label) + 1. */
nk_status nk_one_hot(const nk_array *labels, size_t nclass, double on, double off,
                     nk_array *out, nk_error *err);

/* Fraction of rows of pred (M, k) whose arg-max (first on ties) equals labels (M). */
nk_status nk_accuracy(const nk_array *pred, const nk_array *labels, double *acc,
                      nk_error *err);

/* Mean of (pred - target)^2 over all entries (samples and outputs); shapes must match. */
nk_status nk_mse(const nk_array *pred, const nk_array *target, double *mse, nk_error *err);

#ifdef __cplusplus
}
#endif
#endif
