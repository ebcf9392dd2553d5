/* lkr.c -- local kernel renormalization: the saddle point of the effective action of a finite
 * one-hidden-layer network (Pacelli et al. 2023; Aiudi et al. 2023), the renormalized kernel
 * and its predictor.  Equations and symbols: docs/finite-width.md.
 *
 * The free entries of Q are a vector q: q_r = Q_ab for the pairs r = (a, b), a <= b (conv) or
 * a = b (dense, lc).  With J_r = dK_R/dq_r = (K_ab + K_ab^T) / (lambda1 Np) for a < b and
 * K_aa / (lambda1 Np) for a = b, the training Gram is A = T I + sum_r q_r J_r. */
#include "nk_finite.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PI 3.14159265358979323846

struct nk_lkr {
    nk_finite_net net;
    size_t P, np, M, nq;
    int in_ndim;
    size_t in_shape[4];
    double *xp;     /* (P, Np, M) training patches */
    double *selfc;  /* (P, Np): |x_i^mu|^2 / (lambda0 M) */
    double *y;      /* (P) */
    size_t *qa, *qb; /* the pair (a, b) of each free entry r */
    double *J;      /* (nq, P, P) */
    double *evals, *ytil; /* dense: eigenvalues e_n of J_0 and the labels in its eigenbasis */
};

size_t nk_lkr_npatch(const nk_lkr *m) { return m->np; }

void nk_lkr_opts_default(nk_lkr_opts *o)
{
    o->max_iter = 200;
    o->tol = 1e-12;
}

/* The activation's kernel for (u, v) ~ N(0, [[a, c], [c, b]]): E[s(u) s(v)].
 * identity: c;  erf: (2/pi) asin(2c / sqrt((1 + 2a)(1 + 2b))). */
static double act_kernel(nk_act_kind act, double a, double b, double c)
{
    if (act == NK_ACT_IDENTITY) return c;
    double r = 2 * c / sqrt((1 + 2 * a) * (1 + 2 * b));
    return (2 / PI) * asin(r > 1 ? 1 : r < -1 ? -1 : r);
}

/* out (na x nb) = K(patch rows xa, patch rows xb): covariances xa . xb / (lambda0 M) through
 * the activation's kernel, with the rows' own variances da, db. */
static void patch_kernel(const nk_finite_net *net, size_t M, const double *xa, size_t lda, const double *da, size_t dstra,
                         size_t na, const double *xb, size_t ldb, const double *db, size_t dstrb, size_t nb, double *out)
{
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)na, (int)nb, (int)M, 1.0 / (net->lambda0 * (double)M), xa,
                (int)lda, xb, (int)ldb, 0.0, out, (int)nb);
    if (net->act.kind == NK_ACT_IDENTITY) return;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++) out[i * nb + j] = act_kernel(net->act.kind, da[i * dstra], db[j * dstrb], out[i * nb + j]);
}

static void self_cov(const nk_finite_net *net, const double *xp, size_t n, size_t np, size_t M, double *selfc)
{
    for (size_t r = 0; r < n * np; r++) selfc[r] = cblas_ddot((int)M, xp + r * M, 1, xp + r * M, 1) / (net->lambda0 * (double)M);
}

void nk_lkr_free(nk_lkr *m)
{
    if (!m) return;
    free(m->xp); free(m->selfc); free(m->y); free(m->qa); free(m->qb); free(m->J); free(m->evals); free(m->ytil);
    free(m);
}

nk_status nk_lkr_create(const nk_finite_net *net, const nk_array *x, const double *y, nk_lkr **out, nk_error *err)
{
    *out = NULL;
    nk_array xp = {0};
    nk_status st = nk_finite_patches(net, x, &xp, err);
    if (st != NK_OK) return st;
    nk_lkr *m = calloc(1, sizeof *m);
    if (!m) { nk_array_free(&xp); return nk_fail(err, NK_ERR_NOMEM, "lkr: out of memory"); }
    m->net = *net;
    m->P = xp.shape[0];
    m->np = xp.shape[1];
    m->M = xp.shape[2];
    m->xp = xp.data;
    m->in_ndim = x->ndim;
    memcpy(m->in_shape, x->shape, sizeof m->in_shape);
    size_t P = m->P, np = m->np;
    m->nq = net->kind == NK_NET_CONV ? np * (np + 1) / 2 : np;
    for (size_t i = 0; i < P; i++)
        if (!isfinite(y[i])) { nk_lkr_free(m); return nk_fail(err, NK_ERR_INPUT, "lkr: label %zu is not finite", i); }
    for (size_t i = 0; i < P * np * m->M; i++)
        if (!isfinite(m->xp[i])) { nk_lkr_free(m); return nk_fail(err, NK_ERR_INPUT, "lkr: input value %zu is not finite", i); }
    m->selfc = malloc(P * np * sizeof *m->selfc);
    m->y = malloc(P * sizeof *m->y);
    m->qa = malloc(m->nq * sizeof *m->qa);
    m->qb = malloc(m->nq * sizeof *m->qb);
    m->J = malloc(m->nq * P * P * sizeof *m->J);
    double *tmp = net->kind == NK_NET_CONV ? malloc(P * P * sizeof *tmp) : NULL;
    if (!m->selfc || !m->y || !m->qa || !m->qb || !m->J || (net->kind == NK_NET_CONV && !tmp)) {
        free(tmp);
        nk_status st_mem = nk_fail(err, NK_ERR_NOMEM, "lkr: out of memory for %zu patch kernels of %zu x %zu (use fewer samples or patches)",
                                   m->nq, P, P);
        nk_lkr_free(m);
        return st_mem;
    }
    memcpy(m->y, y, P * sizeof *y);
    self_cov(net, m->xp, P, np, m->M, m->selfc);
    size_t r = 0, ld = np * m->M;
    double scale = 1.0 / (net->lambda1 * (double)np);
    for (size_t a = 0; a < np; a++)
        for (size_t b = a; b < np; b++) {
            if (b != a && net->kind != NK_NET_CONV) continue;
            m->qa[r] = a;
            m->qb[r] = b;
            double *Jr = m->J + r * P * P;
            if (a == b) {
                patch_kernel(net, m->M, m->xp + a * m->M, ld, m->selfc + a, np, P, m->xp + a * m->M, ld, m->selfc + a, np, P, Jr);
                for (size_t i = 0; i < P * P; i++) Jr[i] *= scale;
            } else {
                patch_kernel(net, m->M, m->xp + a * m->M, ld, m->selfc + a, np, P, m->xp + b * m->M, ld, m->selfc + b, np, P, tmp);
                for (size_t i = 0; i < P; i++)
                    for (size_t j = 0; j < P; j++) Jr[i * P + j] = scale * (tmp[i * P + j] + tmp[j * P + i]);
            }
            r++;
        }
    free(tmp);
    if (net->kind == NK_NET_DENSE) {
        /* S(Q) is one-dimensional: diagonalize J_0 = K / lambda1 once, then every alpha costs O(P) */
        m->evals = malloc(P * sizeof *m->evals);
        m->ytil = malloc(P * sizeof *m->ytil);
        double *U = malloc(P * P * sizeof *U);
        if (!m->evals || !m->ytil || !U) { free(U); nk_lkr_free(m); return nk_fail(err, NK_ERR_NOMEM, "lkr: out of memory"); }
        memcpy(U, m->J, P * P * sizeof *U);
        if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'L', (int)P, U, (int)P, m->evals) != 0) {
            free(U); nk_lkr_free(m);
            return nk_fail(err, NK_ERR_RUN, "lkr: eigendecomposition of the %zu x %zu kernel failed", P, P);
        }
        cblas_dgemv(CblasRowMajor, CblasTrans, (int)P, (int)P, 1.0, U, (int)P, y, 1, 0.0, m->ytil, 1);
        for (size_t i = 0; i < P; i++) m->evals[i] = fmax(m->evals[i], 0); /* a Gram: negatives are rounding */
        free(U);
    }
    *out = m;
    return NK_OK;
}

/* ------------------------------------------------------------ dense: 1D -- */

/* S(Q), S'(Q), S''(Q) for the scalar action
 *   S = Q - log Q + (alpha/P) sum_n [log(T + Q e_n) + yt_n^2 / (T + Q e_n)]. */
static void dense_action(const nk_lkr *m, double alpha, double Q, double *S, double *dS, double *d2S)
{
    double T = m->net.temperature, s0 = 0, s1 = 0, s2 = 0;
    for (size_t n = 0; n < m->P; n++) {
        double e = m->evals[n], g = T + Q * e, y2 = m->ytil[n] * m->ytil[n];
        s0 += log(g) + y2 / g;
        s1 += e / g - y2 * e / (g * g);
        s2 += -e * e / (g * g) + 2 * y2 * e * e / (g * g * g);
    }
    double c = alpha / (double)m->P;
    if (S) *S = Q - log(Q) + c * s0;
    if (dS) *dS = 1 - 1 / Q + c * s1;
    if (d2S) *d2S = 1 / (Q * Q) + c * s2;
}

static nk_status dense_solve(const nk_lkr *m, double alpha, const nk_lkr_opts *o, double *Qout, nk_lkr_info *info, nk_error *err)
{
    /* S' -> -inf as Q -> 0 and S' -> 1 as Q -> inf: every local minimum is a sign change of S'
     * from - to +; bracket them all on a log grid and keep the lowest */
    enum { GRID = 481 };
    double best_lo = 0, best_hi = 0, best_S = INFINITY, prev_Q = 0, prev_d = 0;
    for (int k = 0; k < GRID; k++) {
        double Q = pow(10.0, -12 + 24.0 * k / (GRID - 1)), S, d;
        dense_action(m, alpha, Q, &S, &d, NULL);
        if (k > 0 && prev_d < 0 && d >= 0) {
            double Smid;
            dense_action(m, alpha, sqrt(prev_Q * Q), &Smid, NULL, NULL);
            if (Smid < best_S) { best_S = Smid; best_lo = prev_Q; best_hi = Q; }
        }
        prev_Q = Q;
        prev_d = d;
    }
    if (!isfinite(best_S))
        return nk_fail(err, NK_ERR_RUN, "lkr: no minimum of S(Q) in 1e-12 < Q < 1e12 at alpha = %g (check the kernel and labels)", alpha);
    /* safeguarded Newton: a Newton step if it stays in the bracket, else bisection */
    double lo = best_lo, hi = best_hi, Q = sqrt(lo * hi), d, d2;
    int it = 0;
    dense_action(m, alpha, Q, NULL, &d, &d2);
    while (fabs(d) > o->tol && it < o->max_iter) {
        it++;
        if (d < 0) lo = Q; else hi = Q;
        double next = d2 > 0 ? Q - d / d2 : -1;
        if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
        if (next == Q) break;
        Q = next;
        dense_action(m, alpha, Q, NULL, &d, &d2);
    }
    *Qout = Q;
    info->iterations = it;
    info->residual = fabs(d);
    dense_action(m, alpha, Q, &info->action, NULL, NULL);
    if (fabs(d) > o->tol)
        return nk_fail(err, NK_ERR_RUN, "lkr: the saddle equation reached residual %.3g, not %.3g, in %d steps at alpha = %g",
                       fabs(d), o->tol, it, alpha);
    return NK_OK;
}

/* ------------------------------------------------------- matrix: Newton -- */

typedef struct {
    double *A, *Ainv, *u, *w, *Mr, *z, *Qm, *R, *H, *Hs, *g, *dq, *qt;
} work;

static void work_free(work *w)
{
    free(w->A); free(w->Ainv); free(w->u); free(w->w); free(w->Mr); free(w->z);
    free(w->Qm); free(w->R); free(w->H); free(w->Hs); free(w->g); free(w->dq); free(w->qt);
}

static int work_alloc(const nk_lkr *m, work *w, int hessian)
{
    size_t P = m->P, nq = m->nq, np = m->np;
    memset(w, 0, sizeof *w);
    w->A = malloc(P * P * sizeof(double));
    w->Ainv = malloc(P * P * sizeof(double));
    w->u = malloc(P * sizeof(double));
    w->w = malloc(nq * P * sizeof(double));
    w->Qm = malloc(np * np * sizeof(double));
    w->R = malloc(np * np * sizeof(double));
    w->g = malloc(nq * sizeof(double));
    w->dq = malloc(nq * sizeof(double));
    w->qt = malloc(nq * sizeof(double));
    int ok = w->A && w->Ainv && w->u && w->w && w->Qm && w->R && w->g && w->dq && w->qt;
    if (hessian) {
        w->Mr = malloc(nq * P * P * sizeof(double));
        w->z = malloc(nq * P * sizeof(double));
        w->H = malloc(nq * nq * sizeof(double));
        w->Hs = malloc(nq * nq * sizeof(double));
        ok = ok && w->Mr && w->z && w->H && w->Hs;
    }
    if (!ok) work_free(w);
    return ok;
}

static void q_to_matrix(const nk_lkr *m, const double *q, double *Q)
{
    size_t np = m->np;
    memset(Q, 0, np * np * sizeof *Q);
    for (size_t r = 0; r < m->nq; r++) Q[m->qa[r] * np + m->qb[r]] = Q[m->qb[r] * np + m->qa[r]] = q[r];
}

/* S at q (+inf outside the positive definite cone); with grad, also w->g and the residual
 * max_r |g_r| / (1 or 2); with hess, w->H.  Leaves the Cholesky factor of A in w->A. */
static double eval_action(const nk_lkr *m, double alpha, const double *q, work *w, int grad, int hess, double *residual)
{
    size_t P = m->P, np = m->np, nq = m->nq;
    double T = m->net.temperature, c = alpha / (double)P;
    q_to_matrix(m, q, w->Qm);
    memcpy(w->R, w->Qm, np * np * sizeof(double));
    if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (int)np, w->R, (int)np) != 0) return INFINITY;
    double logdetQ = 0, trQ = 0;
    for (size_t a = 0; a < np; a++) logdetQ += 2 * log(w->R[a * np + a]), trQ += w->Qm[a * np + a];
    memset(w->A, 0, P * P * sizeof(double));
    for (size_t r = 0; r < nq; r++) cblas_daxpy((int)(P * P), q[r], m->J + r * P * P, 1, w->A, 1);
    for (size_t i = 0; i < P; i++) w->A[i * P + i] += T;
    if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (int)P, w->A, (int)P) != 0) return INFINITY;
    double logdetA = 0;
    for (size_t i = 0; i < P; i++) logdetA += 2 * log(w->A[i * P + i]);
    memcpy(w->u, m->y, P * sizeof(double));
    LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'L', (int)P, 1, w->A, (int)P, w->u, 1);
    double S = trQ - logdetQ + c * (logdetA + cblas_ddot((int)P, m->y, 1, w->u, 1));
    if (!grad) return S;
    /* R = Q^{-1}; A^{-1} from the factor (lower triangle filled, then mirrored) */
    LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', (int)np, w->R, (int)np);
    for (size_t a = 0; a < np; a++)
        for (size_t b = a + 1; b < np; b++) w->R[a * np + b] = w->R[b * np + a];
    memcpy(w->Ainv, w->A, P * P * sizeof(double));
    LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', (int)P, w->Ainv, (int)P);
    for (size_t i = 0; i < P; i++)
        for (size_t j = i + 1; j < P; j++) w->Ainv[i * P + j] = w->Ainv[j * P + i];
    double res = 0;
    for (size_t r = 0; r < nq; r++) {
        const double *Jr = m->J + r * P * P;
        size_t a = m->qa[r], b = m->qb[r];
        double tr = cblas_ddot((int)(P * P), w->Ainv, 1, Jr, 1); /* tr(A^{-1} J_r), both symmetric */
        cblas_dsymv(CblasRowMajor, CblasLower, (int)P, 1.0, Jr, (int)P, w->u, 1, 0.0, w->w + r * P, 1);
        double quad = cblas_ddot((int)P, w->u, 1, w->w + r * P, 1);
        double ent = a == b ? 1 - w->R[a * np + a] : -2 * w->R[a * np + b];
        w->g[r] = ent + c * (tr - quad);
        res = fmax(res, fabs(w->g[r]) / (a == b ? 1 : 2));
    }
    if (residual) *residual = res;
    if (!hess) return S;
    /* data part: (alpha/P) [-tr(A^{-1} J_r A^{-1} J_s) + 2 (J_r u)^T A^{-1} (J_s u)]
     * = (alpha/P) [-<M_r, M_s> + 2 z_r . z_s],  M_r = L^{-1} J_r L^{-T},  z_r = L^{-1} J_r u */
    for (size_t r = 0; r < nq; r++) {
        double *Mr = w->Mr + r * P * P, *zr = w->z + r * P;
        memcpy(Mr, m->J + r * P * P, P * P * sizeof(double));
        cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, (int)P, (int)P, 1.0, w->A, (int)P, Mr, (int)P);
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, (int)P, (int)P, 1.0, w->A, (int)P, Mr, (int)P);
        memcpy(zr, w->w + r * P, P * sizeof(double));
        cblas_dtrsv(CblasRowMajor, CblasLower, CblasNoTrans, CblasNonUnit, (int)P, w->A, (int)P, zr, 1);
    }
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, (int)nq, (int)(P * P), -c, w->Mr, (int)(P * P), 0.0, w->H, (int)nq);
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, (int)nq, (int)P, 2 * c, w->z, (int)P, 1.0, w->H, (int)nq);
    /* entropy part: d^2(-log det Q)/dq_r dq_s = tr(R E_r R E_s), E_r = e_a e_b^T + e_b e_a^T
     * (or e_a e_a^T), using tr(R e_a e_b^T R e_c e_d^T) = R_da R_bc */
    for (size_t r = 0; r < nq; r++)
        for (size_t s = 0; s <= r; s++) {
            size_t ar[2] = {m->qa[r], m->qb[r]}, as[2] = {m->qa[s], m->qb[s]};
            int nr = ar[0] == ar[1] ? 1 : 2, ns = as[0] == as[1] ? 1 : 2;
            double h = 0;
            for (int i = 0; i < nr; i++)
                for (int j = 0; j < ns; j++) {
                    size_t a = ar[i], b = ar[1 - i], cc = as[j], d = as[1 - j];
                    h += w->R[d * np + a] * w->R[b * np + cc];
                }
            w->H[r * nq + s] += h;
        }
    for (size_t r = 0; r < nq; r++)
        for (size_t s = r + 1; s < nq; s++) w->H[r * nq + s] = w->H[s * nq + r];
    return S;
}

static nk_status matrix_solve(const nk_lkr *m, double alpha, const nk_lkr_opts *o, double *Qout, nk_lkr_info *info, nk_error *err)
{
    size_t nq = m->nq;
    work w;
    if (!work_alloc(m, &w, 1))
        return nk_fail(err, NK_ERR_NOMEM, "lkr: out of memory for the Newton step (%zu free entries of Q, %zu samples: "
                       "use fewer patches or samples)", nq, m->P);
    double *q = malloc(nq * sizeof *q);
    if (!q) { work_free(&w); return nk_fail(err, NK_ERR_NOMEM, "lkr: out of memory"); }
    for (size_t r = 0; r < nq; r++) q[r] = m->qa[r] == m->qb[r] ? 1 : 0;
    double res = INFINITY, S = 0;
    int it = 0;
    nk_status st = NK_OK;
    for (;; it++) {
        S = eval_action(m, alpha, q, &w, 1, 1, &res);
        if (res <= o->tol || it >= o->max_iter) break;
        /* Newton direction (H + mu I) dq = -g; mu grows until the matrix is positive definite */
        double maxdiag = 0, mu = 0;
        for (size_t r = 0; r < nq; r++) maxdiag = fmax(maxdiag, fabs(w.H[r * nq + r]));
        for (int tries = 0;; tries++) {
            memcpy(w.Hs, w.H, nq * nq * sizeof(double));
            for (size_t r = 0; r < nq; r++) w.Hs[r * nq + r] += mu;
            if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (int)nq, w.Hs, (int)nq) == 0) break;
            mu = mu > 0 ? 10 * mu : 1e-10 * (maxdiag > 0 ? maxdiag : 1);
            if (tries > 40) { st = nk_fail(err, NK_ERR_RUN, "lkr: Newton matrix not positive definite at alpha = %g", alpha); break; }
        }
        if (st != NK_OK) break;
        for (size_t r = 0; r < nq; r++) w.dq[r] = -w.g[r];
        LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'L', (int)nq, 1, w.Hs, (int)nq, w.dq, 1);
        double slope = cblas_ddot((int)nq, w.g, 1, w.dq, 1);
        /* backtracking: Armijo decrease of S inside the positive definite cone.  Once the
         * predicted decrease -slope (~ residual^2) is below the rounding of S, comparisons of S
         * are noise that would accept random fractions of the step: then take the full Newton
         * step if it lowers the residual, and stop at the precision floor otherwise. */
        int accepted = 0;
        if (-slope > 1e-13 * (1 + fabs(S))) {
            double t = 1;
            for (int k = 0; k < 60 && !accepted; k++, t *= 0.5) {
                for (size_t r = 0; r < nq; r++) w.qt[r] = q[r] + t * w.dq[r];
                double St = eval_action(m, alpha, w.qt, &w, 0, 0, NULL);
                if (St <= S + 1e-4 * t * slope) accepted = 1;
            }
        }
        if (!accepted) {
            double rt;
            for (size_t r = 0; r < nq; r++) w.qt[r] = q[r] + w.dq[r];
            if (eval_action(m, alpha, w.qt, &w, 1, 0, &rt) < INFINITY && rt < res) accepted = 1;
            if (!accepted) break;
        }
        memcpy(q, w.qt, nq * sizeof *q);
    }
    if (st == NK_OK) {
        q_to_matrix(m, q, Qout);
        info->iterations = it;
        info->residual = res;
        info->action = S;
        if (!(res <= o->tol))
            st = nk_fail(err, NK_ERR_RUN, "lkr: the saddle equation reached residual %.3g, not %.3g, in %d Newton steps at alpha = %g",
                         res, o->tol, it, alpha);
    }
    free(q);
    work_free(&w);
    return st;
}

nk_status nk_lkr_solve(const nk_lkr *m, double alpha, const nk_lkr_opts *opts, double *Q, nk_lkr_info *info, nk_error *err)
{
    nk_lkr_opts def;
    nk_lkr_info scratch;
    if (!opts) nk_lkr_opts_default(&def), opts = &def;
    if (!info) info = &scratch;
    if (!(alpha >= 0) || !isfinite(alpha)) return nk_fail(err, NK_ERR_INPUT, "lkr: alpha = P/N must be >= 0 and finite, got %g", alpha);
    if (m->net.kind == NK_NET_DENSE) {
        if (alpha == 0) {
            Q[0] = 1;
            info->iterations = 0;
            dense_action(m, 0, 1, &info->action, &info->residual, NULL);
            info->residual = fabs(info->residual);
            return NK_OK;
        }
        return dense_solve(m, alpha, opts, Q, info, err);
    }
    return matrix_solve(m, alpha, opts, Q, info, err);
}

/* The free entries of a full Np x Np Q; NK_ERR_INPUT if Q is not symmetric or has entries
 * that the network's structure does not allow. */
static nk_status matrix_to_q(const nk_lkr *m, const double *Q, double *q, nk_error *err)
{
    size_t np = m->np;
    for (size_t a = 0; a < np; a++)
        for (size_t b = 0; b < np; b++) {
            if (Q[a * np + b] != Q[b * np + a]) return nk_fail(err, NK_ERR_INPUT, "lkr: Q is not symmetric at (%zu, %zu)", a, b);
            if (a != b && m->net.kind != NK_NET_CONV && Q[a * np + b] != 0)
                return nk_fail(err, NK_ERR_INPUT, "lkr: Q must be diagonal for a dense or locally connected network");
        }
    for (size_t r = 0; r < m->nq; r++) q[r] = Q[m->qa[r] * np + m->qb[r]];
    return NK_OK;
}

nk_status nk_lkr_action(const nk_lkr *m, double alpha, const double *Q, double *action, double *residual, nk_error *err)
{
    work w;
    if (!work_alloc(m, &w, 0)) return nk_fail(err, NK_ERR_NOMEM, "lkr: out of memory");
    double res = 0;
    nk_status st = matrix_to_q(m, Q, w.qt, err);
    double S = st == NK_OK ? eval_action(m, alpha, w.qt, &w, 1, 0, &res) : 0;
    if (st == NK_OK && !(S < INFINITY)) st = nk_fail(err, NK_ERR_INPUT, "lkr: Q is not positive definite");
    if (action) *action = S;
    if (residual) *residual = res;
    work_free(&w);
    return st;
}

nk_status nk_lkr_gram(const nk_lkr *m, const double *Q, double *KR, nk_error *err)
{
    size_t P = m->P;
    double *q = malloc(m->nq * sizeof *q);
    if (!q) return nk_fail(err, NK_ERR_NOMEM, "lkr: out of memory");
    nk_status st = matrix_to_q(m, Q, q, err);
    if (st == NK_OK) {
        memset(KR, 0, P * P * sizeof *KR);
        for (size_t r = 0; r < m->nq; r++) cblas_daxpy((int)(P * P), q[r], m->J + r * P * P, 1, KR, 1);
    }
    free(q);
    return st;
}

nk_status nk_lkr_predict(const nk_lkr *m, const double *Q, const nk_array *x_test, double *mean, double *var, nk_error *err)
{
    size_t P = m->P, np = m->np, M = m->M;
    if (x_test->ndim != m->in_ndim)
        return nk_fail(err, NK_ERR_INPUT, "lkr: test inputs have %d axes, training inputs %d", x_test->ndim, m->in_ndim);
    for (int d = 1; d < m->in_ndim; d++)
        if (x_test->shape[d] != m->in_shape[d])
            return nk_fail(err, NK_ERR_INPUT, "lkr: test sample shape differs from the training samples' on axis %d (%zu vs %zu)", d,
                           x_test->shape[d], m->in_shape[d]);
    nk_array xt = {0};
    nk_status st = nk_finite_patches(&m->net, x_test, &xt, err);
    if (st != NK_OK) return st;
    size_t n0 = xt.shape[0], ld = np * M;
    double *selft = malloc(n0 * np * sizeof *selft), *kR = calloc(n0 * P, sizeof *kR), *blk = malloc(n0 * P * sizeof *blk);
    double *kdiag = calloc(n0, sizeof *kdiag);
    work w;
    int have_work = work_alloc(m, &w, 0);
    if (!selft || !kR || !blk || !kdiag || !have_work) {
        st = nk_fail(err, NK_ERR_NOMEM, "lkr: out of memory for %zu x %zu test kernels", n0, P);
        goto done;
    }
    if ((st = matrix_to_q(m, Q, w.qt, err)) != NK_OK) goto done;
    if (!(eval_action(m, 0, w.qt, &w, 0, 0, NULL) < INFINITY)) { st = nk_fail(err, NK_ERR_INPUT, "lkr: Q is not positive definite"); goto done; }
    /* w.A is now the Cholesky factor of T I + K_R, w.u = (T I + K_R)^{-1} y */
    self_cov(&m->net, xt.data, n0, np, M, selft);
    double scale = 1.0 / (m->net.lambda1 * (double)np);
    for (size_t a = 0; a < np; a++)
        for (size_t b = 0; b < np; b++) {
            double qab = Q[a * np + b];
            if (qab == 0) continue;
            patch_kernel(&m->net, M, xt.data + a * M, ld, selft + a, np, n0, m->xp + b * M, ld, m->selfc + b, np, P, blk);
            cblas_daxpy((int)(n0 * P), qab * scale, blk, 1, kR, 1);
            for (size_t s = 0; s < n0; s++) {
                const double *xa = xt.data + (s * np + a) * M, *xb = xt.data + (s * np + b) * M;
                double c = cblas_ddot((int)M, xa, 1, xb, 1) / (m->net.lambda0 * (double)M);
                kdiag[s] += qab * scale * act_kernel(m->net.act.kind, selft[s * np + a], selft[s * np + b], c);
            }
        }
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)n0, (int)P, 1.0, kR, (int)P, w.u, 1, 0.0, mean, 1);
    if (var) {
        /* rows of kR L^{-T} are (L^{-1} k_R(x0))^T: var = K_R(x0, x0) - |L^{-1} k_R(x0)|^2 */
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, (int)n0, (int)P, 1.0, w.A, (int)P, kR, (int)P);
        for (size_t s = 0; s < n0; s++) var[s] = kdiag[s] - cblas_ddot((int)P, kR + s * P, 1, kR + s * P, 1);
    }
done:
    if (have_work) work_free(&w);
    free(selft); free(kR); free(blk); free(kdiag);
    nk_array_free(&xt);
    return st;
}
