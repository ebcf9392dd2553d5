/* test_finite.c -- the finite-width theory (nk_lkr_*) and the Langevin sampler against
 * independent references: the saddle equation rebuilt from the engine's activation duals,
 * the engine's NNGP kernels (flatten and global-average-pooling readouts), the dense scalar
 * solver vs the matrix solver on one patch, and the closed-form Gaussian posterior of a
 * network whose hidden layer is frozen. */
#include "nk_finite.h"
#include "nk_test.h"

#include <lapacke.h>
#include <stdlib.h>
#include <string.h>

static int quick;

/* (n, H, W, C) images of Gaussian pixels and labels y = sign of a fixed linear read of the
 * top-left patch (a local task) */
static void make_data(size_t n, size_t H, size_t W, size_t C, unsigned long long *s, nk_array *x, double *y)
{
    size_t shape[4] = {n, H, W, C};
    *x = nk_test_random_array(4, shape, s);
    for (size_t i = 0; i < n; i++) {
        double t = x->data[i * H * W * C] + 0.5 * x->data[i * H * W * C + C] - 0.3 * x->data[i * H * W * C + W * C];
        y[i] = t >= 0 ? 1 : -1;
    }
}

/* Patch kernel entry from the definition, with the engine's dual: K_ab(x, x') between patch a
 * of sample s and patch b of sample t (patches: mask x mask blocks, row-major). */
static double slow_patch_kernel(const nk_finite_net *net, const nk_array *x, size_t s, size_t a, size_t t, size_t b)
{
    size_t H = x->shape[1], W = x->shape[2], C = x->shape[3], m = net->kind == NK_NET_DENSE ? H : (size_t)net->mask;
    size_t mw = net->kind == NK_NET_DENSE ? W : m, pw = W / mw;
    double caa = 0, cbb = 0, cab = 0;
    for (size_t r = 0; r < m; r++)
        for (size_t c = 0; c < mw; c++)
            for (size_t k = 0; k < C; k++) {
                size_t ra = (a / pw) * m + r, ca = (a % pw) * mw + c, rb = (b / pw) * m + r, cb = (b % pw) * mw + c;
                double u = x->data[((s * H + ra) * W + ca) * C + k], v = x->data[((t * H + rb) * W + cb) * C + k];
                cab += u * v;
                caa += u * u;
                cbb += v * v;
            }
    double M = (double)(m * mw * C), kv;
    nk_act_dual(&net->act, caa / (net->lambda0 * M), cbb / (net->lambda0 * M), cab / (net->lambda0 * M), 0, &kv, NULL);
    return kv;
}

/* Largest residual of Q^{-1} = I + alpha/(P lambda1 Np) G over the entries Q may have,
 * G_ab = tr(A^{-1} K_ab) - u^T K_ab u, A = T I + sum_ab Q_ab K_ab / (lambda1 Np), u = A^{-1} y. */
static double slow_residual(const nk_finite_net *net, const nk_array *x, const double *y, size_t np, double alpha, const double *Q)
{
    size_t P = x->shape[0];
    double *Kab = malloc(np * np * P * P * sizeof *Kab), *A = calloc(P * P, sizeof *A), *u = malloc(P * sizeof *u);
    double *Qi = malloc(np * np * sizeof *Qi);
    int *piv = malloc((P > np ? P : np) * sizeof *piv);
    for (size_t a = 0; a < np; a++)
        for (size_t b = 0; b < np; b++)
            for (size_t s = 0; s < P; s++)
                for (size_t t = 0; t < P; t++) {
                    double k = (net->kind == NK_NET_CONV || a == b) ? slow_patch_kernel(net, x, s, a, t, b) : 0;
                    Kab[((a * np + b) * P + s) * P + t] = k;
                    A[s * P + t] += Q[a * np + b] * k / (net->lambda1 * (double)np);
                }
    for (size_t s = 0; s < P; s++) A[s * P + s] += net->temperature;
    LAPACKE_dgetrf(LAPACK_ROW_MAJOR, (int)P, (int)P, A, (int)P, piv);
    memcpy(u, y, P * sizeof *u);
    LAPACKE_dgetrs(LAPACK_ROW_MAJOR, 'N', (int)P, 1, A, (int)P, piv, u, 1);
    LAPACKE_dgetri(LAPACK_ROW_MAJOR, (int)P, A, (int)P, piv);
    memcpy(Qi, Q, np * np * sizeof *Qi);
    LAPACKE_dgetrf(LAPACK_ROW_MAJOR, (int)np, (int)np, Qi, (int)np, piv);
    LAPACKE_dgetri(LAPACK_ROW_MAJOR, (int)np, Qi, (int)np, piv);
    double res = 0;
    for (size_t a = 0; a < np; a++)
        for (size_t b = 0; b < np; b++) {
            if (net->kind != NK_NET_CONV && a != b) continue;
            const double *K = Kab + (a * np + b) * P * P;
            double tr = 0, quad = 0;
            for (size_t s = 0; s < P; s++)
                for (size_t t = 0; t < P; t++) tr += A[s * P + t] * K[t * P + s], quad += u[s] * K[s * P + t] * u[t];
            double g = tr - quad, r = Qi[a * np + b] - (a == b) - alpha / (P * net->lambda1 * (double)np) * g;
            res = fmax(res, fabs(r));
        }
    free(Kab); free(A); free(u); free(Qi); free(piv);
    return res;
}

static void test_saddle(void)
{
    unsigned long long seed = 11;
    size_t P = quick ? 12 : 24;
    nk_array x;
    double y[24];
    make_data(P, 4, 4, 1, &seed, &x, y);
    nk_net_kind kinds[3] = {NK_NET_DENSE, NK_NET_CONV, NK_NET_LC};
    nk_act_kind acts[2] = {NK_ACT_ERF, NK_ACT_IDENTITY};
    double alphas[3] = {0.5, 3, 20};
    for (int k = 0; k < 3; k++)
        for (int ai = 0; ai < 2; ai++) {
            nk_finite_net net;
            nk_finite_net_default(&net);
            net.kind = kinds[k];
            net.act.kind = acts[ai];
            net.mask = 2;
            net.temperature = 0.2;
            net.lambda0 = 0.7;
            net.lambda1 = 1.3;
            nk_lkr *m = NULL;
            nk_error err = {{0}};
            nk_status st = nk_lkr_create(&net, &x, y, &m, &err);
            CHECK(st == NK_OK, "create kind %d: %s", k, err.msg);
            if (st != NK_OK) continue;
            size_t np = nk_lkr_npatch(m);
            CHECK(np == (kinds[k] == NK_NET_DENSE ? 1u : 4u), "patches %zu", np);
            double Q[16];
            for (int a = 0; a < 3; a++) {
                nk_lkr_info info;
                st = nk_lkr_solve(m, alphas[a], NULL, Q, &info, &err);
                CHECK(st == NK_OK, "solve kind %d act %d alpha %g: %s", k, ai, alphas[a], err.msg);
                CHECK(info.residual <= 1e-10, "reported residual %.3g", info.residual);
                double r = slow_residual(&net, &x, y, np, alphas[a], Q);
                CHECK(r <= 1e-10, "kind %d act %d alpha %g: independent residual %.3g", k, ai, alphas[a], r);
                /* the minimum: S is not lower at nearby positive definite points */
                double S0, S1, Qp[16];
                nk_lkr_action(m, alphas[a], Q, &S0, NULL, &err);
                for (size_t i = 0; i < np; i++) {
                    memcpy(Qp, Q, np * np * sizeof *Q);
                    Qp[i * np + i] *= 1.01;
                    nk_lkr_action(m, alphas[a], Qp, &S1, NULL, &err);
                    CHECK(S1 >= S0 - 1e-12, "S decreases away from the solution: %.15g < %.15g", S1, S0);
                }
                if (kinds[k] == NK_NET_LC)
                    for (size_t i = 0; i < np; i++)
                        for (size_t j = 0; j < np; j++) CHECK(i == j || Q[i * np + j] == 0, "lc Q off-diagonal %g", Q[i * np + j]);
            }
            nk_lkr_free(m);
        }
    nk_array_free(&x);
}

/* alpha -> 0: Q -> I and the predictor -> the NNGP predictor with the engine's kernel */
static void test_nngp_limit(void)
{
    unsigned long long seed = 5;
    size_t P = 20, n0 = 7;
    nk_array x, xt;
    double y[20], yt[7];
    make_data(P, 4, 4, 1, &seed, &x, y);
    make_data(n0, 4, 4, 1, &seed, &xt, yt);
    nk_finite_net net;
    nk_finite_net_default(&net);
    net.lambda0 = 0.5;
    net.lambda1 = 2;
    net.temperature = 0.3;
    const char *specs[2] = {"flatten dense(w=1.4142135623730951) erf dense(w=0.7071067811865476)",
                            "conv(2,stride=2,pad=valid,w=1.4142135623730951) erf flatten dense(w=0.7071067811865476)"};
    for (int k = 0; k < 2; k++) {
        net.kind = k ? NK_NET_CONV : NK_NET_DENSE;
        net.mask = 2;
        nk_error err = {{0}};
        nk_lkr *m = NULL;
        nk_status st = nk_lkr_create(&net, &x, y, &m, &err);
        CHECK(st == NK_OK, "%s", err.msg);
        if (st != NK_OK) continue;
        size_t np = nk_lkr_npatch(m);
        double Q[16], mean[7], var[7], Qdev = 0;
        st = nk_lkr_solve(m, 1e-9, NULL, Q, NULL, &err);
        CHECK(st == NK_OK, "%s", err.msg);
        for (size_t a = 0; a < np; a++)
            for (size_t b = 0; b < np; b++) Qdev = fmax(Qdev, fabs(Q[a * np + b] - (a == b)));
        CHECK(Qdev < 1e-7, "kind %d: Q deviates from I by %.3g at alpha 1e-9", k, Qdev);
        nk_lkr_predict(m, Q, &xt, mean, var, &err);
        /* the engine's NNGP, then k*^T (K + T I)^{-1} y by LAPACK */
        nk_arch *arch = NULL;
        nk_plan *plan = NULL;
        nk_array K = {0}, Ks = {0}, Kss = {0};
        size_t in[3] = {4, 4, 1};
        st = nk_arch_parse(specs[k], NULL, &arch, &err);
        if (st == NK_OK) st = nk_plan_create(arch, 3, in, &plan, &err);
        CHECK(st == NK_OK, "%s: %s", specs[k], err.msg);
        if (st != NK_OK) { nk_arch_free(arch); nk_lkr_free(m); continue; }
        nk_kernel_opts ko;
        nk_kernel_opts_default(&ko);
        ko.nthreads = 1;
        ko.get = NK_GET_NNGP;
        st = nk_kernel_matrix(plan, &x, NULL, &ko, &K, NULL, &err);
        CHECK(st == NK_OK, "%s", err.msg);
        nk_kernel_matrix(plan, &xt, &x, &ko, &Ks, NULL, &err);
        nk_kernel_matrix(plan, &xt, NULL, &ko, &Kss, NULL, &err);
        double u[20], Kt[20 * 7];
        for (size_t i = 0; i < P; i++) K.data[i * P + i] += net.temperature;
        memcpy(u, y, sizeof u);
        for (size_t s = 0; s < n0; s++)
            for (size_t i = 0; i < P; i++) Kt[i * n0 + s] = Ks.data[s * P + i];
        double Kc[400];
        memcpy(Kc, K.data, sizeof Kc);
        LAPACKE_dposv(LAPACK_ROW_MAJOR, 'L', (int)P, 1, Kc, (int)P, u, 1);
        LAPACKE_dposv(LAPACK_ROW_MAJOR, 'L', (int)P, (int)n0, K.data, (int)P, Kt, (int)n0);
        for (size_t s = 0; s < n0; s++) {
            double ref = 0, v = Kss.data[s * n0 + s];
            for (size_t i = 0; i < P; i++) ref += Ks.data[s * P + i] * u[i], v -= Ks.data[s * P + i] * Kt[i * n0 + s];
            CHECK(fabs(mean[s] - ref) < 1e-6 * (1 + fabs(ref)), "kind %d mean %zu: %.12g vs NNGP %.12g", k, s, mean[s], ref);
            CHECK(fabs(var[s] - v) < 1e-6 * Kss.data[s * n0 + s], "kind %d var %zu: %.12g vs NNGP %.12g", k, s, var[s], v);
        }
        nk_array_free(&K); nk_array_free(&Ks); nk_array_free(&Kss);
        nk_plan_free(plan);
        nk_arch_free(arch);
        nk_lkr_free(m);
    }
    nk_array_free(&x);
    nk_array_free(&xt);
}

/* Q = I is the flatten readout's NNGP, Q = 1 1^T / Np (rank one) the global-average-pooling one */
static void test_rank_one_identity(void)
{
    unsigned long long seed = 9;
    size_t P = 10;
    nk_array x;
    double y[10];
    make_data(P, 6, 6, 2, &seed, &x, y);
    nk_finite_net net;
    nk_finite_net_default(&net);
    net.kind = NK_NET_CONV;
    net.mask = 3;
    net.lambda0 = 1;
    net.lambda1 = 4;
    nk_error err = {{0}};
    nk_lkr *m = NULL;
    CHECK(nk_lkr_create(&net, &x, y, &m, &err) == NK_OK, "%s", err.msg);
    size_t np = nk_lkr_npatch(m);
    CHECK(np == 4, "np %zu", np);
    const char *specs[2] = {"conv(3,stride=3,pad=valid) erf flatten dense(w=0.5)", "conv(3,stride=3,pad=valid) erf gap dense(w=0.5)"};
    for (int k = 0; k < 2; k++) {
        double Q[16], KR[100];
        for (size_t a = 0; a < np; a++)
            for (size_t b = 0; b < np; b++) Q[a * np + b] = k ? 1.0 / np : (a == b);
        nk_lkr_gram(m, Q, KR, &err);
        nk_arch *arch = NULL;
        nk_plan *plan = NULL;
        nk_array K = {0};
        size_t in[3] = {6, 6, 2};
        nk_status st = nk_arch_parse(specs[k], NULL, &arch, &err);
        if (st == NK_OK) st = nk_plan_create(arch, 3, in, &plan, &err);
        CHECK(st == NK_OK, "%s: %s", specs[k], err.msg);
        if (st != NK_OK) { nk_arch_free(arch); continue; }
        nk_kernel_opts ko;
        nk_kernel_opts_default(&ko);
        ko.nthreads = 1;
        ko.get = NK_GET_NNGP;
        CHECK(nk_kernel_matrix(plan, &x, NULL, &ko, &K, NULL, &err) == NK_OK, "%s", err.msg);
        double e = 0, scale = 0;
        for (size_t i = 0; i < P * P; i++) e = fmax(e, fabs(KR[i] - K.data[i])), scale = fmax(scale, fabs(K.data[i]));
        CHECK(e < 1e-12 * scale, "%s: max |K_R - engine| = %.3g", specs[k], e);
        nk_array_free(&K);
        nk_plan_free(plan);
        nk_arch_free(arch);
    }
    nk_lkr_free(m);
    nk_array_free(&x);
}

/* conv with one patch (mask = image side) is the dense network: two different solvers */
static void test_one_patch(void)
{
    unsigned long long seed = 21;
    size_t P = 16;
    nk_array x, xt;
    double y[16], yt[5];
    make_data(P, 3, 3, 2, &seed, &x, y);
    make_data(5, 3, 3, 2, &seed, &xt, yt);
    for (int act = 0; act < 2; act++) {
        nk_finite_net dn, cn;
        nk_finite_net_default(&dn);
        dn.act.kind = act ? NK_ACT_IDENTITY : NK_ACT_ERF;
        dn.temperature = 0.05;
        cn = dn;
        cn.kind = NK_NET_CONV;
        cn.mask = 3;
        nk_error err = {{0}};
        nk_lkr *md = NULL, *mc = NULL;
        nk_lkr_create(&dn, &x, y, &md, &err);
        nk_lkr_create(&cn, &x, y, &mc, &err);
        CHECK(md && mc && nk_lkr_npatch(mc) == 1, "one patch");
        if (!md || !mc) continue;
        double alphas[4] = {0.1, 1, 4, 30};
        for (int a = 0; a < 4; a++) {
            double Qd, Qc, md_mean[5], mc_mean[5], md_var[5], mc_var[5];
            nk_lkr_info id, ic;
            CHECK(nk_lkr_solve(md, alphas[a], NULL, &Qd, &id, &err) == NK_OK, "%s", err.msg);
            CHECK(nk_lkr_solve(mc, alphas[a], NULL, &Qc, &ic, &err) == NK_OK, "%s", err.msg);
            CHECK(fabs(Qd - Qc) < 1e-9 * Qd, "alpha %g: dense Q %.15g vs one-patch conv Q %.15g", alphas[a], Qd, Qc);
            CHECK(fabs(id.action - ic.action) < 1e-9 * (1 + fabs(id.action)), "action %.15g vs %.15g", id.action, ic.action);
            nk_lkr_predict(md, &Qd, &xt, md_mean, md_var, &err);
            nk_lkr_predict(mc, &Qc, &xt, mc_mean, mc_var, &err);
            for (int s = 0; s < 5; s++) {
                CHECK(fabs(md_mean[s] - mc_mean[s]) < 1e-8, "mean %d: %.12g vs %.12g", s, md_mean[s], mc_mean[s]);
                CHECK(fabs(md_var[s] - mc_var[s]) < 1e-8, "var %d: %.12g vs %.12g", s, md_var[s], mc_var[s]);
            }
        }
        nk_lkr_free(md);
        nk_lkr_free(mc);
    }
    nk_array_free(&x);
    nk_array_free(&xt);
}

static void test_bad_input(void)
{
    unsigned long long seed = 3;
    nk_array x;
    double y[4];
    make_data(4, 4, 4, 1, &seed, &x, y);
    nk_finite_net net;
    nk_finite_net_default(&net);
    nk_error err = {{0}};
    nk_lkr *m = NULL;
    net.act.kind = NK_ACT_RELU;
    CHECK(nk_lkr_create(&net, &x, y, &m, &err) == NK_ERR_INPUT && strstr(err.msg, "odd"), "relu refused: %s", err.msg);
    net.act.kind = NK_ACT_ERF;
    net.kind = NK_NET_CONV;
    net.mask = 3;
    CHECK(nk_lkr_create(&net, &x, y, &m, &err) == NK_ERR_INPUT && strstr(err.msg, "mask"), "mask 3 on 4x4: %s", err.msg);
    net.mask = 2;
    net.temperature = 0;
    CHECK(nk_lkr_create(&net, &x, y, &m, &err) == NK_ERR_INPUT, "T = 0 refused");
    nk_array_free(&x);
}

/* frozen hidden layer: f = Phi v / sqrt(N Np) with v ~ N(0, 1/lambda1) and Gaussian likelihood,
 * so the posterior of v is Gaussian with precision Phi^T Phi / (T N Np) + lambda1 I */
static void test_langevin_gaussian(void)
{
    unsigned long long seed = 77;
    size_t P = 6, n0 = 4, N = 3;
    nk_array x, xt;
    double y[6], yt[4];
    make_data(P, 2, 2, 1, &seed, &x, y);
    make_data(n0, 2, 2, 1, &seed, &xt, yt);
    for (int k = 0; k < 2; k++) {
        nk_finite_net net;
        nk_finite_net_default(&net);
        net.kind = k ? NK_NET_CONV : NK_NET_DENSE;
        net.mask = 1;
        net.temperature = 0.5;
        net.lambda1 = 1.5;
        size_t np = k ? 4 : 1, M = k ? 1 : 4, nv = N * np;
        double W[12], Phi[6 * 12], Pt[4 * 12];
        for (size_t i = 0; i < N * M; i++) W[i] = nk_test_gauss(&seed);
        /* features from the definition: s(w_c . x_i / sqrt(M)); patches of a 2x2x1 image with mask 1 are pixels */
        for (int set = 0; set < 2; set++) {
            const nk_array *xs = set ? &xt : &x;
            double *F = set ? Pt : Phi;
            for (size_t s = 0; s < xs->shape[0]; s++)
                for (size_t i = 0; i < np; i++)
                    for (size_t c = 0; c < N; c++) {
                        double h = 0;
                        for (size_t q = 0; q < M; q++) h += W[c * M + q] * xs->data[s * 4 + i * M + q];
                        F[s * nv + i * N + c] = erf(h / sqrt((double)M)) / sqrt((double)(N * np));
                    }
        }
        /* posterior of v: Lambda = F^T F / T + lambda1 I, mean = Lambda^{-1} F^T y / T */
        double Lam[144] = {0}, mv[12] = {0}, Sig[144] = {0};
        for (size_t a = 0; a < nv; a++) {
            for (size_t b = 0; b < nv; b++) {
                for (size_t s = 0; s < P; s++) Lam[a * nv + b] += Phi[s * nv + a] * Phi[s * nv + b] / net.temperature;
                Sig[a * nv + b] = a == b;
            }
            Lam[a * nv + a] += net.lambda1;
            for (size_t s = 0; s < P; s++) mv[a] += Phi[s * nv + a] * y[s] / net.temperature;
        }
        double Lc[144];
        memcpy(Lc, Lam, sizeof Lc);
        LAPACKE_dposv(LAPACK_ROW_MAJOR, 'L', (int)nv, 1, Lc, (int)nv, mv, 1);
        memcpy(Lc, Lam, sizeof Lc);
        LAPACKE_dposv(LAPACK_ROW_MAJOR, 'L', (int)nv, (int)nv, Lc, (int)nv, Sig, (int)nv);
        double bias = 0, variance = 0, meanref[4];
        for (size_t s = 0; s < n0; s++) {
            double m = 0, v = 0;
            for (size_t a = 0; a < nv; a++) {
                m += Pt[s * nv + a] * mv[a];
                for (size_t b = 0; b < nv; b++) v += Pt[s * nv + a] * Sig[a * nv + b] * Pt[s * nv + b];
            }
            meanref[s] = m;
            bias += (yt[s] - m) * (yt[s] - m) / n0;
            variance += v / n0;
        }
        nk_langevin_opts o;
        nk_langevin_opts_default(&o);
        o.width = N;
        o.freeze_hidden = 1;
        o.hidden_init = W;
        o.step = 0.004;
        o.burn_in = 5;
        o.run = quick ? 200 : 600;
        o.chains = 4;
        o.sample_every = 20;
        o.seed = 3;
        nk_langevin_result r;
        double mean[4];
        nk_error err = {{0}};
        nk_status st = nk_langevin_run(&net, &x, y, &xt, yt, &o, &r, mean, NULL, &err);
        CHECK(st == NK_OK, "%s", err.msg);
        double loss = bias + variance;
        /* statistical error (chains) plus the O(eta) discretization bias (eta L ~ 1e-2 here) */
        double tol = 4 * r.loss_err + 0.02 * loss;
        CHECK(fabs(r.loss - loss) < tol, "kind %d: Langevin loss %.5f +- %.5f vs exact %.5f", k, r.loss, r.loss_err, loss);
        CHECK(fabs(r.variance - variance) < 0.05 * variance + 4 * r.loss_err, "variance %.5f vs exact %.5f", r.variance, variance);
        for (size_t s = 0; s < n0; s++)
            CHECK(fabs(mean[s] - meanref[s]) < 0.05 * sqrt(variance * n0) + 0.01, "mean %zu: %.4f vs %.4f", s, mean[s], meanref[s]);
        printf("langevin frozen kind %d: loss %.5f +- %.5f, exact %.5f (bias %.5f var %.5f vs %.5f), %ld steps, %.2f s\n", k, r.loss,
               r.loss_err, loss, r.bias, r.variance, variance, r.steps, r.seconds);
    }
    nk_array_free(&x);
    nk_array_free(&xt);
}

/* linear activation: the fields are exactly Gaussian and the theory holds up to finite-size
 * corrections.  A conv net at alpha = 5 (P = 80, N = 16), where the renormalized Q moves the
 * predicted test loss 3-4 % away from the NNGP's: the sampled loss must sit at the theory's
 * value, not at the NNGP's. */
static void test_langevin_linear_theory(void)
{
    unsigned long long seed = 31;
    size_t P = 80, n0 = 50, N = 16, sh[4] = {P, 4, 4, 1}, st4[4] = {n0, 4, 4, 1};
    nk_array x = nk_test_random_array(4, sh, &seed), xt = nk_test_random_array(4, st4, &seed);
    double y[80], yt[50], Q[16], I4[16] = {0}, mean[50], var[50];
    for (size_t i = 0; i < P; i++) y[i] = x.data[i * 16] + 0.5 * x.data[i * 16 + 5] - 0.3 * x.data[i * 16 + 10] + 0.2 * nk_test_gauss(&seed);
    for (size_t i = 0; i < n0; i++) yt[i] = xt.data[i * 16] + 0.5 * xt.data[i * 16 + 5] - 0.3 * xt.data[i * 16 + 10];
    nk_finite_net net;
    nk_finite_net_default(&net);
    net.kind = NK_NET_CONV;
    net.mask = 2;
    net.act.kind = NK_ACT_IDENTITY;
    net.temperature = 0.2;
    nk_error err = {{0}};
    nk_lkr *m = NULL;
    CHECK(nk_lkr_create(&net, &x, y, &m, &err) == NK_OK, "%s", err.msg);
    CHECK(nk_lkr_solve(m, (double)P / N, NULL, Q, NULL, &err) == NK_OK, "%s", err.msg);
    double loss[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 4; i++) I4[i * 5] = 1;
        nk_lkr_predict(m, k ? I4 : Q, &xt, mean, var, &err);
        for (size_t s = 0; s < n0; s++) loss[k] += ((yt[s] - mean[s]) * (yt[s] - mean[s]) + var[s]) / n0;
    }
    nk_langevin_opts o;
    nk_langevin_opts_default(&o);
    o.width = N;
    o.run = 20;
    o.burn_in = 3;
    o.chains = 4;
    o.seed = 5;
    nk_langevin_result r;
    CHECK(nk_langevin_run(&net, &x, y, &xt, yt, &o, &r, NULL, NULL, &err) == NK_OK, "%s", err.msg);
    printf("linear conv alpha 5: langevin %.5f +- %.5f, theory %.5f, NNGP %.5f (%ld steps, %.2f s)\n", r.loss, r.loss_err, loss[0],
           loss[1], r.steps, r.seconds);
    CHECK(fabs(r.loss - loss[0]) < 3 * r.loss_err + 0.015 * loss[0], "langevin %.5f +- %.5f vs theory %.5f", r.loss, r.loss_err, loss[0]);
    CHECK(fabs(r.loss - loss[0]) < 0.5 * fabs(loss[1] - loss[0]), "langevin %.5f is not nearer the theory %.5f than the NNGP %.5f",
          r.loss, loss[0], loss[1]);
    nk_lkr_free(m);
    nk_array_free(&x);
    nk_array_free(&xt);
}

int main(void)
{
    quick = getenv("NK_TEST_QUICK") != NULL;
    test_bad_input();
    test_rank_one_identity();
    test_one_patch();
    test_nngp_limit();
    test_saddle();
    test_langevin_gaussian();
    if (!quick) test_langevin_linear_theory(); /* ~40k steps: too slow under the sanitizers */
    return nk_test_summary("test_finite");
}
