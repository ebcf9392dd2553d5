/* test_mc.c -- finite random networks (nk_mc.h):
 * (a) the backward pass's NTK against the Gram of a finite-difference Jacobian, for tiny
 *     networks of every layer type and activation, in both parameterizations;
 * (b) Monte Carlo means against the exact engine (nk_kernel_matrix) within their estimated
 *     standard errors at two widths (one-hidden-layer networks, whose empirical kernels are
 *     unbiased at any width), the standard error against its Gaussian prediction, and a deep
 *     network's NTK deviation shrinking like 1/width;
 * (c) the standard parameterization: the same function as the NTK one for the same draws, its
 *     NTK converging to the exact standard-parameterization NTK;
 * (d) one seed gives bit-identical results with 1 and 2 threads, and x1 x x2 blocks equal the
 *     Gram of the samples together. */
#include "nk_mc.h"
#include "nk_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long rs = 0x2545F4914F6CDD1DULL;
static int quick;

/* Plans keep pointers into their architecture: every architecture made here is kept until the end. */
static nk_arch *archs[64];
static int narchs;

static nk_plan *make_plan(const char *spec, double width, double b, nk_param param, int ndim, const size_t *shape)
{
    nk_arch_opts ao;
    nk_arch_opts_default(&ao);
    ao.width = width;
    ao.b_std = b;
    ao.w_std = 1.3;
    ao.param = param;
    nk_arch *a = NULL;
    nk_plan *p = NULL;
    nk_error err = {{0}};
    nk_status st = nk_arch_parse(spec, &ao, &a, &err);
    if (st == NK_OK) st = nk_plan_create(a, ndim, shape, &p, &err);
    if (st != NK_OK) fprintf(stderr, "%s: %s\n", spec, err.msg);
    if (narchs < 64) archs[narchs++] = a;
    else nk_arch_free(a);
    return p;
}

/* (a) T from the backward pass vs (1/k) sum_j J_j J_j^T with J by central differences. */
static void gradient_check(const char *spec, int ndim, const size_t *shape, nk_param param, int outputs)
{
    nk_plan *p = make_plan(spec, 3, 0.4, param, ndim, shape);
    CHECK(p != NULL, "plan for %s", spec);
    if (!p) return;
    nk_mc_net *net = NULL;
    nk_error err = {{0}};
    CHECK(nk_mc_net_create(p, outputs, &net, &err) == NK_OK, "%s: %s", spec, err.msg);
    nk_plan_free(p);
    if (!net) return;
    nk_mc_net_sample(net, 7, 3);
    size_t len = 1, n = 3;
    for (int a = 0; a < ndim; a++) len *= shape[a];
    size_t np = nk_mc_net_nparams(net), k = nk_mc_net_outputs(net);
    double *x = malloc(n * len * sizeof(double)), *T = malloc(n * n * sizeof(double)), *Tfd = calloc(n * n, sizeof(double));
    double *fp = malloc(n * k * sizeof(double)), *fm = malloc(n * k * sizeof(double)), *J = malloc(n * k * np * sizeof(double));
    for (size_t i = 0; i < n * len; i++) x[i] = nk_test_gauss(&rs);
    CHECK(nk_mc_net_ntk(net, x, n, NULL, T, &err) == NK_OK, "%s: %s", spec, err.msg);
    double *theta = nk_mc_net_params(net);
    const double h = 1e-6;
    for (size_t t = 0; t < np; t++) {
        double keep = theta[t];
        theta[t] = keep + h;
        nk_mc_net_forward(net, x, n, fp, NULL);
        theta[t] = keep - h;
        nk_mc_net_forward(net, x, n, fm, NULL);
        theta[t] = keep;
        for (size_t e = 0; e < n * k; e++) J[e * np + t] = (fp[e] - fm[e]) / (2 * h);
    }
    for (size_t a = 0; a < n; a++)
        for (size_t b = 0; b < n; b++)
            for (size_t j = 0; j < k; j++)
                for (size_t t = 0; t < np; t++) Tfd[a * n + b] += J[(a * k + j) * np + t] * J[(b * k + j) * np + t] / (double)k;
    double scale = 0, dev = 0;
    for (size_t e = 0; e < n * n; e++) {
        scale = fmax(scale, fabs(Tfd[e]));
        dev = fmax(dev, fabs(T[e] - Tfd[e]));
    }
    CHECK(scale > 0 && dev <= 1e-6 * scale, "%s (%s, %zu outputs, %zu params): backward vs finite differences %.3g of %.3g",
          spec, param == NK_PARAM_NTK ? "ntk" : "standard", k, np, dev, scale);
    free(x); free(T); free(Tfd); free(fp); free(fm); free(J);
    nk_mc_net_free(net);
}

static void test_gradients(void)
{
    size_t vec[1] = {5}, img[3] = {5, 4, 2}, seq[2] = {7, 2};
    static const struct { const char *spec; int ndim; } cases[] = {
        {"dense erf dense", 1},
        {"dense relu dense tanh dense", 1},
        {"conv(3) relu conv(2,stride=2,pad=valid) tanh flatten dense", 3},
        {"conv(3,pad=circular) gelu avgpool(2) conv(3) sigmoid gap dense", 3},
        {"avgpool(2,stride=1,pad=same) conv(3,stride=2) swish res(conv(3) softplus conv(1)) gap dense", 3},
        {"conv(3x2,stride=2x1) sin conv(1,stride=2) leaky_relu(0.2) flatten dense identity dense", 3},
        {"conv(4,pad=valid) abrelu(-0.5,1.5) res(relu conv(3,pad=circular)) flatten dense", 3},
        {"conv(3) relu avgpool(3,stride=1,pad=same) conv(3) erf gap", 3},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int par = 0; par < 2; par++)
            gradient_check(cases[c].spec, cases[c].ndim, cases[c].ndim == 1 ? vec : img, par ? NK_PARAM_STANDARD : NK_PARAM_NTK,
                           c % 3 == 0 ? 2 : 1);
    gradient_check("conv(3) relu conv(3,stride=2) gelu flatten dense", 2, seq, NK_PARAM_NTK, 1);
    gradient_check("conv(3,pad=valid) tanh res(conv(3) relu conv(3)) gap dense", 2, seq, NK_PARAM_STANDARD, 2);
}

typedef struct {
    nk_array K, T, Kse, Tse, Ke, Te;
} mc_result;

static void free_result(mc_result *r)
{
    nk_array_free(&r->K); nk_array_free(&r->T); nk_array_free(&r->Kse); nk_array_free(&r->Tse);
    nk_array_free(&r->Ke); nk_array_free(&r->Te);
}

/* Monte Carlo and exact kernels of spec at width on x (Gram). */
static int run_mc(const char *spec, double width, nk_param param, const nk_array *x, long S, int outputs, int threads,
                  mc_result *r)
{
    memset(r, 0, sizeof *r);
    nk_plan *p = make_plan(spec, width, 0.3, param, x->ndim - 1, x->shape + 1);
    if (!p) return 1;
    nk_mc_opts o;
    nk_mc_opts_default(&o);
    o.samples = S;
    o.seed = 11;
    o.outputs = outputs;
    o.nthreads = threads;
    nk_error err = {{0}};
    nk_status st = nk_mc_kernel(p, x, NULL, &o, &r->K, &r->T, &r->Kse, &r->Tse, &err);
    if (st == NK_OK) st = nk_kernel_matrix(p, x, NULL, NULL, &r->Ke, &r->Te, &err);
    if (st != NK_OK) fprintf(stderr, "%s: %s\n", spec, err.msg);
    nk_plan_free(p);
    return st != NK_OK;
}

/* largest |mc - exact| / se over the upper triangle */
static double max_z(const nk_array *mc, const nk_array *se, const nk_array *exact)
{
    size_t n = mc->shape[0];
    double z = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i; j < n; j++) {
            double d = fabs(mc->data[i * n + j] - exact->data[i * n + j]), s = se->data[i * n + j];
            z = fmax(z, s > 0 ? d / s : d > 0 ? INFINITY : 0);
        }
    return z;
}

static void test_convergence(void)
{
    size_t vsh[2] = {4, 6}, ish[4] = {3, 5, 5, 2};
    nk_array xv = nk_test_random_array(2, vsh, &rs), xi = nk_test_random_array(4, ish, &rs);
    static const struct { const char *spec; int img; } cases[] = {
        {"dense relu dense", 0}, {"dense erf dense", 0}, {"conv(3) relu flatten dense", 1}, {"conv(3,stride=2) tanh gap dense", 1},
    };
    const long S = quick ? 60 : 300;
    const double widths[2] = {16, 128};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int wi = 0; wi < 2; wi++)
            for (int par = 0; par < 2; par++) {
                if (quick && (wi == 1 || c > 1)) continue;
                mc_result r;
                nk_param param = par ? NK_PARAM_STANDARD : NK_PARAM_NTK;
                if (run_mc(cases[c].spec, widths[wi], param, cases[c].img ? &xi : &xv, S, 1, 0, &r)) {
                    CHECK(0, "%s failed", cases[c].spec);
                    continue;
                }
                /* a one-hidden-layer network's empirical kernels are unbiased: only the Monte Carlo error remains */
                double zk = max_z(&r.K, &r.Kse, &r.Ke), zt = max_z(&r.T, &r.Tse, &r.Te);
                CHECK(zk < 4.5 && zt < 4.5, "%s width %g %s: max |mc - exact| / se: nngp %.2f, ntk %.2f", cases[c].spec,
                      widths[wi], par ? "standard" : "ntk", zk, zt);
                if (c == 0 && wi == 1 && !par) {
                    /* with one Gaussian output, Var f(x) f(x') = K(x,x) K(x',x') + K(x,x')^2 */
                    size_t n = r.K.shape[0];
                    double worst = 0;
                    for (size_t i = 0; i < n; i++)
                        for (size_t j = i; j < n; j++) {
                            double kij = r.Ke.data[i * n + j], pred = sqrt((r.Ke.data[i * n + i] * r.Ke.data[j * n + j] + kij * kij) / S);
                            worst = fmax(worst, fabs(log(r.Kse.data[i * n + j] / pred)));
                        }
                    CHECK(worst < log(1.35), "standard error vs its Gaussian prediction: worst ratio %.3f", exp(worst));
                }
                free_result(&r);
            }
    nk_array_free(&xv);
    nk_array_free(&xi);
}

/* ||mc - exact||_F / ||exact||_F and the predicted ||se||_F / ||exact||_F */
static void rel_errors(const nk_array *mc, const nk_array *se, const nk_array *exact, double *err, double *pred)
{
    double d = 0, s = 0, m = 0;
    for (size_t e = 0; e < nk_array_size(mc); e++) {
        d += (mc->data[e] - exact->data[e]) * (mc->data[e] - exact->data[e]);
        s += se->data[e] * se->data[e];
        m += exact->data[e] * exact->data[e];
    }
    *err = sqrt(d / m);
    *pred = sqrt(s / m);
}

/* A deep network's mean empirical NTK deviates from the exact one by O(1/width).  With S
 * proportional to the width the standard error falls like 1/width too, and stays well below
 * the deviation; the deviation beyond the Monte Carlo error, sqrt(err^2 - se^2), times the
 * width is then the same at widths 8 and 32 (a 1/sqrt(width) law would double it). */
static void test_ntk_bias(void)
{
    if (quick) return;
    size_t sh[2] = {8, 16};
    nk_array x = nk_test_random_array(2, sh, &rs);
    const char *spec = "w=1 b=0.2 [dense tanh]*4 dense";
    double excess[2];
    const double widths[2] = {8, 32};
    for (int wi = 0; wi < 2; wi++) {
        mc_result r;
        if (run_mc(spec, widths[wi], NK_PARAM_NTK, &x, 400 * (long)widths[wi], 1, 0, &r)) { CHECK(0, "deep run failed"); return; }
        double err, pred;
        rel_errors(&r.T, &r.Tse, &r.Te, &err, &pred);
        CHECK(err > 2 * pred, "width %g: NTK deviation %.4f not resolved beyond the Monte Carlo error %.4f", widths[wi], err, pred);
        excess[wi] = sqrt(fmax(err * err - pred * pred, 0)) * widths[wi];
        free_result(&r);
    }
    double ratio = excess[1] / excess[0];
    CHECK(ratio > 0.6 && ratio < 1.6, "NTK deviation x width: %.4f (width 8), %.4f (width 32): ratio %.2f, not 1/width",
          excess[0], excess[1], ratio);
    nk_array_free(&x);
}

/* (c) the same draws make the same function in both parameterizations; only the NTK differs */
static void test_parameterizations(void)
{
    size_t sh[4] = {3, 4, 4, 2};
    nk_array x = nk_test_random_array(4, sh, &rs);
    const char *spec = "conv(3) relu conv(3) erf gap dense";
    double *f[2], *T[2];
    size_t k = 0;
    for (int par = 0; par < 2; par++) {
        nk_plan *p = make_plan(spec, 5, 0.3, par ? NK_PARAM_STANDARD : NK_PARAM_NTK, 3, sh + 1);
        nk_mc_net *net = NULL;
        nk_mc_net_create(p, 2, &net, NULL);
        nk_plan_free(p);
        k = nk_mc_net_outputs(net);
        f[par] = malloc(3 * k * sizeof(double));
        T[par] = malloc(9 * sizeof(double));
        nk_mc_net_sample(net, 5, 1);
        nk_mc_net_ntk(net, x.data, 3, f[par], T[par], NULL);
        nk_mc_net_free(net);
    }
    double fd = 0, fs = 0, td = 0;
    for (size_t e = 0; e < 3 * k; e++) { fd = fmax(fd, fabs(f[0][e] - f[1][e])); fs = fmax(fs, fabs(f[0][e])); }
    for (size_t e = 0; e < 9; e++) td = fmax(td, fabs(T[0][e] - T[1][e]) / fabs(T[0][e]));
    CHECK(fd <= 1e-12 * fs, "outputs differ between parameterizations: %.3g of %.3g", fd, fs);
    CHECK(td > 0.1, "the NTKs of the two parameterizations should differ (relative %.3g)", td);
    for (int par = 0; par < 2; par++) { free(f[par]); free(T[par]); }
    nk_array_free(&x);
}

/* snapshot callback: keep a copy of the NTK after the chosen count */
static int keep_ntk(void *ctx, long networks, const nk_array *K, const nk_array *Kse, const nk_array *T, const nk_array *Tse)
{
    (void)networks; (void)K; (void)Kse; (void)Tse;
    memcpy(ctx, T->data, nk_array_size(T) * sizeof(double));
    return 0;
}

/* (d) threads and blocks */
static void test_determinism(void)
{
    size_t sh[4] = {4, 5, 5, 1}, sh2[4] = {2, 5, 5, 1};
    nk_array x = nk_test_random_array(4, sh, &rs), x2 = nk_test_random_array(4, sh2, &rs);
    nk_plan *p = make_plan("conv(3) relu res(conv(3) relu conv(3)) avgpool(2) flatten dense", 6, 0.2, NK_PARAM_NTK, 3, sh + 1);
    nk_mc_opts o;
    nk_mc_opts_default(&o);
    o.samples = quick ? 9 : 21;
    o.seed = 123;
    nk_array K[3], T[3], Kx, Tx;
    nk_error err = {{0}};
    for (int t = 0; t < 3; t++) {
        o.nthreads = t == 2 ? 3 : t + 1;
        CHECK(nk_mc_kernel(p, &x, NULL, &o, &K[t], &T[t], NULL, NULL, &err) == NK_OK, "%s", err.msg);
    }
    for (int t = 1; t < 3; t++)
        CHECK(!memcmp(K[0].data, K[t].data, 16 * sizeof(double)) && !memcmp(T[0].data, T[t].data, 16 * sizeof(double)),
              "1 and %d threads differ", t == 1 ? 2 : 3);
    /* the estimate after the first 5 networks of a longer run is that of a run of 5 */
    double snap_t[16];
    long at[1] = {5};
    nk_mc_opts o5 = o;
    o5.snapshots = at;
    o5.nsnapshots = 1;
    o5.snapshot = keep_ntk;
    o5.snapshot_ctx = snap_t;
    nk_array K5, T5;
    CHECK(nk_mc_kernel(p, &x, NULL, &o5, &K5, &T5, NULL, NULL, &err) == NK_OK, "%s", err.msg);
    nk_array_free(&K5); nk_array_free(&T5);
    o5.samples = 5;
    o5.nsnapshots = 0;
    CHECK(nk_mc_kernel(p, &x, NULL, &o5, &K5, &T5, NULL, NULL, &err) == NK_OK, "%s", err.msg);
    CHECK(!memcmp(snap_t, T5.data, sizeof snap_t), "snapshot after 5 networks differs from a run of 5");
    nk_array_free(&K5); nk_array_free(&T5);
    /* x against x2: each network's outputs on both sets share its parameters, so the block
     * equals the Gram's block of the samples together */
    size_t shc[4] = {6, 5, 5, 1};
    nk_array xc;
    nk_array_alloc(&xc, 4, shc, NULL);
    memcpy(xc.data, x.data, 100 * sizeof(double));
    memcpy(xc.data + 100, x2.data, 50 * sizeof(double));
    nk_array Kc, Tc;
    o.nthreads = 2;
    CHECK(nk_mc_kernel(p, &x, &x2, &o, &Kx, &Tx, NULL, NULL, &err) == NK_OK, "%s", err.msg);
    CHECK(nk_mc_kernel(p, &xc, NULL, &o, &Kc, &Tc, NULL, NULL, &err) == NK_OK, "%s", err.msg);
    double dev = 0, scale = 0;
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 2; j++) {
            dev = fmax(dev, fabs(Kx.data[i * 2 + j] - Kc.data[i * 6 + 4 + j]) + fabs(Tx.data[i * 2 + j] - Tc.data[i * 6 + 4 + j]));
            scale = fmax(scale, fabs(Tc.data[i * 6 + 4 + j]));
        }
    CHECK(dev <= 1e-12 * scale, "x1 x x2 block differs from the joint Gram: %.3g", dev);
    nk_array_free(&Kx); nk_array_free(&Tx);
    /* errors: a bad width, a wrong sample shape */
    nk_plan *bad = make_plan("dense(2.5) relu dense", 4, 0, NK_PARAM_NTK, 1, sh + 1);
    nk_mc_net *net = NULL;
    CHECK(bad && nk_mc_net_create(bad, 1, &net, &err) == NK_ERR_INPUT && strstr(err.msg, "column 1"), "fractional width: %s", err.msg);
    CHECK(nk_mc_kernel(p, &x, &xc, &o, &Kx, &Tx, NULL, NULL, &err) == NK_OK, "same sample shape accepted: %s", err.msg);
    nk_array_free(&Kx); nk_array_free(&Tx);
    size_t shb[2] = {3, 7};
    nk_array xb = nk_test_random_array(2, shb, &rs);
    CHECK(nk_mc_kernel(p, &xb, NULL, &o, &Kx, &Tx, NULL, NULL, &err) == NK_ERR_INPUT && strstr(err.msg, "x1"), "shape: %s", err.msg);
    nk_array_free(&xb);
    nk_mc_net_free(net);
    nk_plan_free(bad);
    for (int t = 0; t < 3; t++) { nk_array_free(&K[t]); nk_array_free(&T[t]); }
    nk_array_free(&Kc); nk_array_free(&Tc);
    nk_array_free(&xc); nk_array_free(&x); nk_array_free(&x2);
    nk_plan_free(p);
}

int main(void)
{
    quick = getenv("NK_TEST_QUICK") != NULL;
    test_gradients();
    test_parameterizations();
    test_determinism();
    test_convergence();
    test_ntk_bias();
    for (int i = 0; i < narchs; i++) nk_arch_free(archs[i]);
    return nk_test_summary("test_mc");
}
