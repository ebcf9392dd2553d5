/* langevin.c -- the Bayesian posterior of the finite one-hidden-layer network sampled by
 * unadjusted Langevin dynamics, the experimental check of the theory in lkr.c.
 *
 * Parameters of one chain: hidden filters W ((N, M) shared: dense and conv; (Np, N, M) lc)
 * and readout v (Np, N), v[i N + c] = v_ci.  Training patches Xp are (P Np, M), row (mu, i);
 * the pre-activations H = Xp W^T / sqrt(M) are (P Np, N), so that f_mu is the dot product of
 * row mu of s(H) viewed as (P, Np N) with v, times (N Np)^{-1/2}. */
#include "nk_finite.h"
#include "nk_data.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PI 3.14159265358979323846
#define TWO_OVER_SQRT_PI 1.12837916709551257390

void nk_langevin_opts_default(nk_langevin_opts *o)
{
    memset(o, 0, sizeof *o);
    o->width = 100;
    o->burn_in = 5;
    o->run = 20;
    o->chains = 2;
    o->seed = 1;
}

typedef struct {
    const nk_finite_net *net;
    const nk_langevin_opts *o;
    size_t P, n0, np, M, N, nw, nv;
    const double *xp, *xt, *y;
    double eta;
    long steps, burn, every;
    /* per chain results: mean and second moment of f at every test point, train loss */
    double *sum_f, *sum_f2, *train_loss;
    long *samples;
    int *failed;
    atomic_long done;
    long total;
} job;

static double gauss(nk_rng *r)
{
    double u = ((nk_rng_next(r) >> 11) + 0.5) * 0x1.0p-53, v = (nk_rng_next(r) >> 11) * 0x1.0p-53;
    return sqrt(-2 * log(u)) * cos(2 * PI * v);
}

static double act_value(nk_act_kind a, double h) { return a == NK_ACT_IDENTITY ? h : erf(h); }
static double act_deriv(nk_act_kind a, double h) { return a == NK_ACT_IDENTITY ? 1 : TWO_OVER_SQRT_PI * exp(-h * h); }

/* pre-activations of n samples' patches X (n Np, M) into H (n Np, N) */
static void preact(const job *j, const double *W, const double *X, size_t n, double *H)
{
    double s = 1 / sqrt((double)j->M);
    size_t np = j->np, N = j->N, M = j->M;
    if (j->net->kind != NK_NET_LC) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(n * np), (int)N, (int)M, s, X, (int)M, W, (int)M, 0.0, H, (int)N);
        return;
    }
    for (size_t i = 0; i < np; i++)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)N, (int)M, s, X + i * M, (int)(np * M), W + i * N * M,
                    (int)M, 0.0, H + i * N, (int)(np * N));
}

/* f = s(H) v / sqrt(N Np) for n samples; s(H) left in H */
static void outputs(const job *j, double *H, const double *v, size_t n, double *f)
{
    size_t len = n * j->np * j->N;
    for (size_t k = 0; k < len; k++) H[k] = act_value(j->net->act.kind, H[k]);
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)(j->np * j->N), 1 / sqrt((double)(j->N * j->np)), H,
                (int)(j->np * j->N), v, 1, 0.0, f, 1);
}

static void chain(void *ctx, size_t c, int thread)
{
    (void)thread;
    job *j = ctx;
    const nk_finite_net *net = j->net;
    size_t P = j->P, n0 = j->n0, np = j->np, M = j->M, N = j->N, nw = j->nw, nv = j->nv, rows = P * np;
    double T = net->temperature, eta = j->eta, noise = sqrt(2 * eta * T), sf = 1 / sqrt((double)(N * np));
    double *W = malloc(nw * sizeof *W), *v = malloc(nv * sizeof *v), *gW = malloc(nw * sizeof *gW);
    double *gv = malloc(nv * sizeof *gv), *H = malloc(rows * N * sizeof *H), *Hpre = malloc(rows * N * sizeof *Hpre);
    double *f = malloc(P * sizeof *f), *Ht = malloc(n0 * np * N * sizeof *Ht), *ft = malloc(n0 * sizeof *ft);
    if (!W || !v || !gW || !gv || !H || !Hpre || !f || !Ht || !ft) {
        j->failed[c] = 1;
        goto done;
    }
    nk_rng rng;
    nk_rng_seed(&rng, j->o->seed * 0x9E3779B97F4A7C15ULL + c + 1);
    /* a prior draw: W ~ N(0, 1/lambda0), v ~ N(0, 1/lambda1) */
    for (size_t k = 0; k < nw; k++) W[k] = gauss(&rng) / sqrt(net->lambda0);
    for (size_t k = 0; k < nv; k++) v[k] = gauss(&rng) / sqrt(net->lambda1);
    if (j->o->hidden_init) memcpy(W, j->o->hidden_init, nw * sizeof *W);
    double *sum_f = j->sum_f + c * n0, *sum_f2 = j->sum_f2 + c * n0;
    int frozen = j->o->freeze_hidden;
    if (frozen) preact(j, W, j->xp, P, Hpre);
    for (long step = 0; step < j->steps; step++) {
        if (frozen) memcpy(H, Hpre, rows * N * sizeof *H);
        else preact(j, W, j->xp, P, H);
        if (!frozen) memcpy(Hpre, H, rows * N * sizeof *H);
        outputs(j, H, v, P, f);
        double loss = 0;
        for (size_t mu = 0; mu < P; mu++) f[mu] -= j->y[mu], loss += f[mu] * f[mu]; /* f <- residual r */
        /* grad_v = s(H)^T r / sqrt(N Np) + T lambda1 v */
        cblas_dgemv(CblasRowMajor, CblasTrans, (int)P, (int)nv, sf, H, (int)nv, f, 1, 0.0, gv, 1);
        if (!frozen) {
            /* dU/dH[mu,i,c] = r_mu v_ci s'(H) / sqrt(N Np); grad_W = (dU/dH)^T Xp / sqrt(M) + T lambda0 W */
            for (size_t mu = 0; mu < P; mu++)
                for (size_t k = 0; k < nv; k++) {
                    size_t at = mu * nv + k;
                    Hpre[at] = f[mu] * v[k] * sf * act_deriv(net->act.kind, Hpre[at]);
                }
            double sm = 1 / sqrt((double)M);
            if (net->kind != NK_NET_LC)
                cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)N, (int)M, (int)rows, sm, Hpre, (int)N, j->xp, (int)M, 0.0, gW,
                            (int)M);
            else
                for (size_t i = 0; i < np; i++)
                    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)N, (int)M, (int)P, sm, Hpre + i * N, (int)(np * N),
                                j->xp + i * M, (int)(np * M), 0.0, gW + i * N * M, (int)M);
            for (size_t k = 0; k < nw; k++) W[k] -= eta * (gW[k] + T * net->lambda0 * W[k]) - noise * gauss(&rng);
        }
        for (size_t k = 0; k < nv; k++) v[k] -= eta * (gv[k] + T * net->lambda1 * v[k]) - noise * gauss(&rng);
        if (step >= j->burn && (step - j->burn) % j->every == 0) {
            preact(j, W, j->xt, n0, Ht);
            outputs(j, Ht, v, n0, ft);
            for (size_t s = 0; s < n0; s++) sum_f[s] += ft[s], sum_f2[s] += ft[s] * ft[s];
            j->train_loss[c] += loss / (double)P;
            j->samples[c]++;
        }
        if ((step & 255) == 255) {
            long d = atomic_fetch_add(&j->done, 256) + 256;
            if (c == 0 && j->o->progress && j->o->progress(j->o->progress_ctx, (size_t)d, (size_t)j->total)) {
                j->failed[c] = 2;
                break;
            }
        }
        if (!isfinite(v[0])) { j->failed[c] = 3; break; }
    }
done:
    free(W); free(v); free(gW); free(gv); free(H); free(Hpre); free(f); free(Ht); free(ft);
}

/* Largest eigenvalue of the Gauss-Newton matrix J J^T (J = df/dtheta on the training set, a
 * P x P Gram) at the prior draw of chain 0's seed: the curvature that limits the step. */
static double start_curvature(const job *j, nk_error *err, nk_status *st)
{
    const nk_finite_net *net = j->net;
    size_t P = j->P, np = j->np, M = j->M, N = j->N, nv = j->nv, rows = P * np;
    size_t cols = nv + (j->o->freeze_hidden ? 0 : N * M * (net->kind == NK_NET_LC ? np : 1));
    double *W = malloc(j->nw * sizeof *W), *v = malloc(nv * sizeof *v), *H = malloc(rows * N * sizeof *H);
    double *Jac = calloc(P * cols, sizeof *Jac), *G = malloc(P * P * sizeof *G), *ev = malloc(P * sizeof *ev);
    double L = 0;
    if (!W || !v || !H || !Jac || !G || !ev) {
        *st = nk_fail(err, NK_ERR_NOMEM, "langevin: out of memory for the %zu x %zu Jacobian (set the step size)", P, cols);
        goto done;
    }
    nk_rng rng;
    nk_rng_seed(&rng, j->o->seed * 0x9E3779B97F4A7C15ULL + 1);
    for (size_t k = 0; k < j->nw; k++) W[k] = gauss(&rng) / sqrt(net->lambda0);
    for (size_t k = 0; k < nv; k++) v[k] = gauss(&rng) / sqrt(net->lambda1);
    if (j->o->hidden_init) memcpy(W, j->o->hidden_init, j->nw * sizeof *W);
    preact(j, W, j->xp, P, H);
    double sf = 1 / sqrt((double)(N * np)), sm = 1 / sqrt((double)M);
    for (size_t mu = 0; mu < P; mu++)
        for (size_t i = 0; i < np; i++)
            for (size_t c = 0; c < N; c++) {
                double h = H[(mu * np + i) * N + c];
                Jac[mu * cols + i * N + c] = sf * act_value(net->act.kind, h); /* df/dv_ci */
                if (j->o->freeze_hidden) continue;
                /* df/dw = sf v_ci s'(h) x_i / sqrt(M): summed over patches for shared filters */
                double g = sf * sm * v[i * N + c] * act_deriv(net->act.kind, h);
                double *dst = Jac + mu * cols + nv + ((net->kind == NK_NET_LC ? i * N : 0) + c) * M;
                cblas_daxpy((int)M, g, j->xp + (mu * np + i) * M, 1, dst, 1);
            }
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, (int)P, (int)cols, 1.0, Jac, (int)cols, 0.0, G, (int)P);
    if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'L', (int)P, G, (int)P, ev) != 0) {
        *st = nk_fail(err, NK_ERR_RUN, "langevin: eigenvalues of the Gauss-Newton matrix failed (set the step size)");
        goto done;
    }
    L = ev[P - 1] + net->temperature * fmax(net->lambda0, net->lambda1);
done:
    free(W); free(v); free(H); free(Jac); free(G); free(ev);
    return L;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

nk_status nk_langevin_run(const nk_finite_net *net, const nk_array *x, const double *y, const nk_array *x_test,
                          const double *y_test, const nk_langevin_opts *opts, nk_langevin_result *res, double *mean_test,
                          double *var_test, nk_error *err)
{
    nk_langevin_opts def;
    if (!opts) nk_langevin_opts_default(&def), opts = &def;
    memset(res, 0, sizeof *res);
    if (opts->width < 1) return nk_fail(err, NK_ERR_INPUT, "langevin: the width N must be >= 1");
    if (opts->chains < 1 || opts->chains > NK_LANGEVIN_MAX_CHAINS)
        return nk_fail(err, NK_ERR_INPUT, "langevin: chains must be in 1..%d, got %d", NK_LANGEVIN_MAX_CHAINS, opts->chains);
    if (!(opts->step >= 0) || !(opts->burn_in >= 0) || !(opts->run > 0) || opts->sample_every < 0)
        return nk_fail(err, NK_ERR_INPUT, "langevin: step >= 0, burn-in >= 0, run > 0 relaxation times and sample_every >= 0 are needed");
    for (int d = 1; d < x->ndim; d++)
        if (x_test->ndim != x->ndim || x_test->shape[d] != x->shape[d])
            return nk_fail(err, NK_ERR_INPUT, "langevin: test samples do not have the training samples' shape");
    nk_array xp = {0}, xt = {0};
    nk_status st = nk_finite_patches(net, x, &xp, err);
    if (st == NK_OK) st = nk_finite_patches(net, x_test, &xt, err);
    job j;
    memset(&j, 0, sizeof j);
    if (st != NK_OK) goto out;
    j.net = net;
    j.o = opts;
    j.P = xp.shape[0];
    j.np = xp.shape[1];
    j.M = xp.shape[2];
    j.n0 = xt.shape[0];
    j.N = opts->width;
    j.nw = j.N * j.M * (net->kind == NK_NET_LC ? j.np : 1);
    j.nv = j.N * j.np;
    j.xp = xp.data;
    j.xt = xt.data;
    j.y = y;
    int C = opts->chains;
    double L = opts->step > 0 ? 0 : start_curvature(&j, err, &st);
    if (st != NK_OK) goto out;
    j.eta = opts->step > 0 ? opts->step : 0.1 / L;
    double relax = 1 / (j.eta * net->temperature * fmin(net->lambda0, net->lambda1));
    j.burn = (long)ceil(opts->burn_in * relax);
    long run = (long)ceil(opts->run * relax);
    j.every = opts->sample_every > 0 ? opts->sample_every : (run + 1999) / 2000;
    if (j.every < 1) j.every = 1;
    j.steps = j.burn + run;
    j.total = j.steps * C;
    j.sum_f = calloc((size_t)C * j.n0, sizeof *j.sum_f);
    j.sum_f2 = calloc((size_t)C * j.n0, sizeof *j.sum_f2);
    j.train_loss = calloc((size_t)C, sizeof *j.train_loss);
    j.samples = calloc((size_t)C, sizeof *j.samples);
    j.failed = calloc((size_t)C, sizeof *j.failed);
    if (!j.sum_f || !j.sum_f2 || !j.train_loss || !j.samples || !j.failed) {
        st = nk_fail(err, NK_ERR_NOMEM, "langevin: out of memory");
        goto out;
    }
    double t0 = now_seconds();
    /* one chain per thread, each running its own BLAS calls: OpenBLAS single-threaded inside */
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    nk_parallel_for((size_t)C, opts->nthreads, chain, &j);
    openblas_set_num_threads(blas_threads);
    res->seconds = now_seconds() - t0;
    for (int c = 0; c < C; c++) {
        if (j.failed[c] == 1) { st = nk_fail(err, NK_ERR_NOMEM, "langevin: out of memory for chain %d", c); goto out; }
        if (j.failed[c] == 2) { st = nk_fail(err, NK_ERR_RUN, "langevin: cancelled"); goto out; }
        if (j.failed[c] == 3) {
            st = nk_fail(err, NK_ERR_RUN, "langevin: chain %d diverged with step %.3g (use a smaller --step)", c, j.eta);
            goto out;
        }
        if (j.samples[c] < 2) { st = nk_fail(err, NK_ERR_INPUT, "langevin: fewer than two samples per chain (lower sample_every)"); goto out; }
    }
    /* per chain: bias_c + var_c; pooled: the mean over chains of the means, pooled variance */
    double sum_loss = 0, sum_loss2 = 0;
    for (int c = 0; c < C; c++) {
        double ns = (double)j.samples[c], b = 0, v = 0;
        for (size_t s = 0; s < j.n0; s++) {
            double m = j.sum_f[c * j.n0 + s] / ns, m2 = j.sum_f2[c * j.n0 + s] / ns;
            b += (y_test[s] - m) * (y_test[s] - m);
            v += fmax(m2 - m * m, 0) * ns / (ns - 1);
        }
        res->chain_loss[c] = (b + v) / (double)j.n0;
        sum_loss += res->chain_loss[c];
        sum_loss2 += res->chain_loss[c] * res->chain_loss[c];
        res->train_loss += j.train_loss[c] / ns / C;
    }
    double ntot = 0;
    for (int c = 0; c < C; c++) ntot += (double)j.samples[c];
    for (size_t s = 0; s < j.n0; s++) {
        double m = 0, m2 = 0;
        for (int c = 0; c < C; c++) m += j.sum_f[c * j.n0 + s], m2 += j.sum_f2[c * j.n0 + s];
        m /= ntot;
        m2 /= ntot;
        double var = fmax(m2 - m * m, 0) * ntot / (ntot - 1);
        res->bias += (y_test[s] - m) * (y_test[s] - m) / (double)j.n0;
        res->variance += var / (double)j.n0;
        if (mean_test) mean_test[s] = m;
        if (var_test) var_test[s] = var;
    }
    res->loss = res->bias + res->variance;
    double mean_loss = sum_loss / C;
    res->loss_err = C > 1 ? sqrt(fmax(sum_loss2 / C - mean_loss * mean_loss, 0) * C / (C - 1) / C) : 0;
    res->step = j.eta;
    res->relax_steps = relax;
    res->steps = j.steps;
    res->samples = j.samples[0];
out:
    free(j.sum_f); free(j.sum_f2); free(j.train_loss); free(j.samples); free(j.failed);
    nk_array_free(&xp);
    nk_array_free(&xt);
    return st;
}
