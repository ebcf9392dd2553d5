/* cmd_finite.c -- `nkern lkr` (the kernel renormalization theory of a finite one-hidden-layer
 * network) and `nkern langevin` (its posterior sampled by Langevin dynamics), sharing the
 * network and data options. */
#include "cli.h"
#include "nk_data.h"
#include "nk_finite.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WIDTHS 32

static const char *common_help =
    "network   --net dense|conv|lc (default dense)  --mask m (conv, lc: non-overlapping m x m\n"
    "          patches, stride m)  --act erf|identity (default erf)  --lambda0 L0 --lambda1 L1\n"
    "          (prior precisions of hidden and readout weights, default 1)  --T T (temperature =\n"
    "          noise variance of the likelihood, default 0.1)\n"
    "data      --x X.npy --y Y.npy --x-test XT.npy --y-test YT.npy ((N, D) or (N, H, W, C)\n"
    "          inputs, (N) targets), or Fashion-MNIST: --fmnist A,B (class A -> +1, B -> -1)\n"
    "          --n-train P --n-test N0 (default 100, 500) --pool F (F x F average pooling of the\n"
    "          28 x 28 images, F in 1,2,4,7,14; default 4) --seed S; each image is standardized\n"
    "          to zero mean and unit variance.  Subsets are balanced and seeded.\n";

typedef struct {
    nk_finite_net net;
    const char *x, *y, *xt, *yt;
    long fm_a, fm_b, n_train, n_test, pool, seed;
    int fmnist;
} finite_args;

static void finite_args_default(finite_args *a)
{
    memset(a, 0, sizeof *a);
    nk_finite_net_default(&a->net);
    a->n_train = 100;
    a->n_test = 500;
    a->pool = 4;
    a->seed = 1;
}

/* -1: not a shared option; 0: consumed (i advanced past its value); 2: usage error */
static int finite_option(int argc, char **argv, int *i, finite_args *a)
{
    const char *o = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    static const char *const opts[] = {"--net", "--mask", "--act", "--lambda0", "--lambda1", "--T", "--x", "--y", "--x-test",
                                       "--y-test", "--fmnist", "--n-train", "--n-test", "--pool", "--seed"};
    int known = 0;
    for (size_t k = 0; k < sizeof opts / sizeof *opts; k++) known |= !strcmp(o, opts[k]);
    if (!known) return -1;
    if (!v) return cli_usage_error("%s: missing value", o);
    (*i)++;
    long m;
    if (!strcmp(o, "--net")) {
        if (!strcmp(v, "dense")) a->net.kind = NK_NET_DENSE;
        else if (!strcmp(v, "conv")) a->net.kind = NK_NET_CONV;
        else if (!strcmp(v, "lc")) a->net.kind = NK_NET_LC;
        else return cli_usage_error("--net: '%s' (use dense, conv or lc)", v);
    } else if (!strcmp(o, "--act")) {
        if (!strcmp(v, "erf")) a->net.act.kind = NK_ACT_ERF;
        else if (!strcmp(v, "identity") || !strcmp(v, "linear")) a->net.act.kind = NK_ACT_IDENTITY;
        else return cli_usage_error("--act: '%s' (use erf or identity: the theory is for odd activations)", v);
    } else if (!strcmp(o, "--mask")) {
        if (cli_parse_int(o, v, 1, 4096, &m)) return 2;
        a->net.mask = (int)m;
    } else if (!strcmp(o, "--lambda0") || !strcmp(o, "--lambda1") || !strcmp(o, "--T")) {
        double d;
        if (cli_parse_double(o, v, &d)) return 2;
        if (!(d > 0)) return cli_usage_error("%s: '%s' must be positive", o, v);
        *(o[2] == 'T' ? &a->net.temperature : o[8] == '0' ? &a->net.lambda0 : &a->net.lambda1) = d;
    } else if (!strcmp(o, "--x")) a->x = v;
    else if (!strcmp(o, "--y")) a->y = v;
    else if (!strcmp(o, "--x-test")) a->xt = v;
    else if (!strcmp(o, "--y-test")) a->yt = v;
    else if (!strcmp(o, "--fmnist")) {
        char *end;
        a->fm_a = strtol(v, &end, 10);
        if (end == v || *end != ',' || a->fm_a < 0 || a->fm_a > 9) return cli_usage_error("--fmnist: '%s' (use two classes A,B in 0..9)", v);
        const char *b = end + 1;
        a->fm_b = strtol(b, &end, 10);
        if (end == b || *end || a->fm_b < 0 || a->fm_b > 9 || a->fm_b == a->fm_a)
            return cli_usage_error("--fmnist: '%s' (use two different classes A,B in 0..9)", v);
        a->fmnist = 1;
    } else if (!strcmp(o, "--n-train")) return cli_parse_int(o, v, 2, 60000, &a->n_train);
    else if (!strcmp(o, "--n-test")) return cli_parse_int(o, v, 1, 10000, &a->n_test);
    else if (!strcmp(o, "--pool")) {
        if (cli_parse_int(o, v, 1, 28, &a->pool)) return 2;
        if (28 % a->pool) return cli_usage_error("--pool: %ld does not divide 28 (use 1, 2, 4, 7 or 14)", a->pool);
    } else if (!strcmp(o, "--seed")) return cli_parse_int(o, v, 0, 1L << 62, &a->seed);
    return 0;
}

/* classes A, B of one split: n balanced samples, pooled, standardized, labels +-1 */
static nk_status fmnist_part(const finite_args *a, nk_split split, size_t n, uint64_t seed, nk_array *x, double **y, nk_error *err)
{
    nk_dataset full = {0}, two = {0}, sub = {0};
    size_t *idx = NULL;
    nk_status st = nk_fashion_mnist_load(NULL, split, &full, err);
    if (st == NK_OK) {
        size_t N = full.y.shape[0], k = 0;
        idx = malloc(N * sizeof *idx);
        if (!idx) st = nk_fail(err, NK_ERR_NOMEM, "fmnist: out of memory");
        for (size_t i = 0; st == NK_OK && i < N; i++)
            if (full.y.data[i] == a->fm_a || full.y.data[i] == a->fm_b) idx[k++] = i;
        if (st == NK_OK) st = nk_dataset_take(&full, idx, k, &two, err);
    }
    if (st == NK_OK) st = nk_dataset_subset(&two, n, 1, seed, &sub, err);
    size_t F = (size_t)a->pool, side = 28 / F, shape[4] = {n, side, side, 1};
    if (st == NK_OK) st = nk_array_alloc(x, 4, shape, err);
    if (st == NK_OK && !(*y = malloc(n * sizeof **y))) st = nk_fail(err, NK_ERR_NOMEM, "fmnist: out of memory");
    if (st == NK_OK) {
        for (size_t s = 0; s < n; s++) {
            for (size_t r = 0; r < side; r++)
                for (size_t c = 0; c < side; c++) {
                    double sum = 0;
                    for (size_t i = 0; i < F; i++)
                        for (size_t j = 0; j < F; j++) sum += sub.x.data[(s * 28 + r * F + i) * 28 + c * F + j];
                    x->data[(s * side + r) * side + c] = sum / (double)(F * F);
                }
            (*y)[s] = sub.y.data[s] == a->fm_a ? 1 : -1;
        }
        st = nk_prep_standardize(x, NK_STD_UNIT_VAR, err);
    }
    free(idx);
    nk_dataset_free(&full);
    nk_dataset_free(&two);
    nk_dataset_free(&sub);
    return st;
}

static int read_targets(const char *path, size_t n, double **y)
{
    nk_array a = {0};
    int rc = cli_read_data(path, 0, &a);
    if (rc) return rc;
    if (nk_array_size(&a) != n) {
        nk_array_free(&a);
        return cli_usage_error("%s: %zu targets for %zu samples (give one target per sample)", path, nk_array_size(&a), n);
    }
    *y = a.data;
    return 0;
}

/* training and test data from the options; exit status */
static int load_data(const finite_args *a, nk_array *x, double **y, nk_array *xt, double **yt)
{
    if (a->fmnist) {
        if (a->x || a->xt) return cli_usage_error("--fmnist: give either --fmnist or --x/--y/--x-test/--y-test, not both");
        nk_error err = {{0}};
        nk_status st = fmnist_part(a, NK_SPLIT_TRAIN, (size_t)a->n_train, (uint64_t)a->seed, x, y, &err);
        if (st == NK_OK) st = fmnist_part(a, NK_SPLIT_TEST, (size_t)a->n_test, (uint64_t)a->seed + 1, xt, yt, &err);
        return st == NK_OK ? 0 : cli_fail(st, &err);
    }
    if (!a->x || !a->y || !a->xt || !a->yt)
        return cli_usage_error("data: give --x, --y, --x-test and --y-test, or --fmnist A,B (see --help)");
    int rc = cli_read_data(a->x, 0, x);
    if (!rc) rc = read_targets(a->y, x->shape[0], y);
    if (!rc) rc = cli_read_data(a->xt, 0, xt);
    if (!rc) rc = read_targets(a->yt, xt->shape[0], yt);
    return rc;
}

static void print_setting(const finite_args *a, const nk_array *x, size_t n0, size_t np, size_t M)
{
    const char *kind = a->net.kind == NK_NET_DENSE ? "dense" : a->net.kind == NK_NET_CONV ? "conv" : "lc";
    printf("# net %s, act %s, P = %zu train, %zu test, %zu patch%s of M = %zu, lambda0 = %g, lambda1 = %g, T = %g\n", kind,
           a->net.act.kind == NK_ACT_ERF ? "erf" : "identity", x->shape[0], n0, np, np == 1 ? "" : "es", M, a->net.lambda0,
           a->net.lambda1, a->net.temperature);
}

/* test loss of a predictor: bias = mean (y0 - mean)^2, variance = mean var, sign error */
static void test_loss(const double *yt, const double *mean, const double *var, size_t n0, double *bias, double *variance, double *err01)
{
    *bias = *variance = *err01 = 0;
    for (size_t s = 0; s < n0; s++) {
        *bias += (yt[s] - mean[s]) * (yt[s] - mean[s]) / (double)n0;
        if (var) *variance += var[s] / (double)n0;
        *err01 += ((mean[s] >= 0) != (yt[s] >= 0)) / (double)n0;
    }
}

/* ------------------------------------------------------------------ lkr -- */

static const char *lkr_help_head =
    "usage: nkern lkr [network] [data] [--widths 16,64,inf] [--tol E] [--max-iter K]\n"
    "                 [--show-width N] [--q-out Q.npy] [--kernel-out K.npy] [--pred-out P.tsv]\n"
    "                 [--heatmap Q.svg|png] [--out TABLE.tsv]\n"
    "\n"
    "Kernel renormalization theory of a one-hidden-layer network of finite width N (Pacelli et\n"
    "al. 2023 dense; Aiudi et al. 2023 conv and lc): for each width in --widths (hidden units or\n"
    "channels; 'inf' = the infinite-width NNGP) alpha = P/N, the order parameter Q minimizing\n"
    "S(Q) = tr Q - log det Q + (alpha/P)[log det(T + K_R) + y^T (T + K_R)^{-1} y] with\n"
    "K_R = sum_ij Q_ij K_ij / (lambda1 Np) (Q scalar: dense; Np x Np symmetric: conv; diagonal:\n"
    "lc), the Newton steps taken and the largest residual of the saddle equation, and the\n"
    "predicted test loss = bias + variance of the posterior predictor, and its sign error.\n"
    "Q of --show-width (default the smallest width) is printed, and written by --q-out and as a\n"
    "gnuplot heat map by --heatmap; --kernel-out writes its K_R on the training set, --pred-out\n"
    "the test targets, predictor mean and variance at that width and at infinite width.\n"
    "Equations: docs/finite-width.md.\n\n";

static int write_q_heatmap(const char *path, const double *Q, size_t np, long width)
{
    double mx = 0;
    for (size_t i = 0; i < np * np; i++) mx = fmax(mx, fabs(Q[i]));
    cli_script sc;
    FILE *s = cli_script_open(&sc);
    if (!s) return 2;
    /* a diverging palette centred on 0: off-diagonal entries of either sign stand out */
    fprintf(s,
            "set title 'renormalization matrix Q (N = %ld, %zu patches, row-major over the image)'\n"
            "set xlabel 'patch j'\nset ylabel 'patch i'\nset yrange [] reverse\nset size ratio -1\n"
            "set palette defined (-1 'blue', 0 'white', 1 'red')\nset cbrange [%g:%g]\nset cblabel 'Q_{ij}'\n"
            "plot '-' matrix with image notitle\n",
            width, np, -mx, mx);
    for (size_t i = 0; i < np; i++) {
        for (size_t j = 0; j < np; j++) fprintf(s, "%.6g ", Q[i * np + j]);
        fputc('\n', s);
    }
    fputs("e\n", s);
    return cli_script_plot(&sc, path, 900, 620);
}

int cmd_lkr(int argc, char **argv)
{
    finite_args a;
    finite_args_default(&a);
    long widths[MAX_WIDTHS];
    int nw = 0, has_inf = 0;
    long show = 0, max_iter = 200;
    double tol = 1e-12;
    const char *q_out = NULL, *k_out = NULL, *pred_out = NULL, *heat = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) { fputs(lkr_help_head, stdout); fputs(common_help, stdout); return 0; }
        int rc = finite_option(argc, argv, &i, &a);
        if (rc == 0) continue;
        if (rc > 0) return rc;
        if (!v) return cli_usage_error("%s: unknown option or missing value (see nkern lkr --help)", o);
        i++;
        if (!strcmp(o, "--widths")) {
            char buf[512];
            if (strlen(v) >= sizeof buf) return cli_usage_error("--widths: list too long");
            strcpy(buf, v);
            nw = 0;
            has_inf = 0;
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                if (!strcmp(tok, "inf")) { has_inf = 1; continue; }
                if (nw == MAX_WIDTHS) return cli_usage_error("--widths: at most %d finite widths", MAX_WIDTHS);
                if (cli_parse_int("--widths", tok, 1, 1L << 40, &widths[nw++])) return 2;
            }
        } else if (!strcmp(o, "--tol")) {
            if (cli_parse_double(o, v, &tol)) return 2;
            if (!(tol > 0)) return cli_usage_error("--tol: must be positive");
        } else if (!strcmp(o, "--max-iter")) { if (cli_parse_int(o, v, 1, 100000, &max_iter)) return 2; }
        else if (!strcmp(o, "--show-width")) { if (cli_parse_int(o, v, 1, 1L << 40, &show)) return 2; }
        else if (!strcmp(o, "--q-out")) q_out = v;
        else if (!strcmp(o, "--kernel-out")) k_out = v;
        else if (!strcmp(o, "--pred-out")) pred_out = v;
        else if (!strcmp(o, "--heatmap")) { if (cli_plot_check(v)) return 2; heat = v; }
        else if (!strcmp(o, "--out")) out = v;
        else return cli_usage_error("%s: unknown option (see nkern lkr --help)", o);
    }
    if (nw == 0 && !has_inf) { widths[0] = 16; widths[1] = 64; widths[2] = 256; nw = 3; has_inf = 1; }
    if (show == 0 && nw > 0) {
        show = widths[0];
        for (int k = 1; k < nw; k++) show = widths[k] < show ? widths[k] : show;
    }
    nk_array x = {0}, xt = {0};
    double *y = NULL, *yt = NULL, *Q = NULL, *Qshow = NULL, *mean = NULL, *var = NULL, *mean_show = NULL, *var_show = NULL;
    double *mean_inf = NULL, *var_inf = NULL;
    nk_lkr *m = NULL;
    nk_error err = {{0}};
    int rc = load_data(&a, &x, &y, &xt, &yt);
    nk_status st = NK_OK;
    if (!rc && (st = nk_lkr_create(&a.net, &x, y, &m, &err)) != NK_OK) rc = cli_fail(st, &err);
    if (rc) goto done;
    size_t np = nk_lkr_npatch(m), n0 = xt.shape[0], P = x.shape[0], M = 1;
    for (int d = 1; d < x.ndim; d++) M *= x.shape[d];
    M /= np;
    print_setting(&a, &x, n0, np, M);
    Q = malloc(np * np * sizeof *Q);
    Qshow = calloc(np * np, sizeof *Qshow);
    mean = malloc(n0 * sizeof *mean);
    var = malloc(n0 * sizeof *var);
    mean_show = calloc(n0, sizeof *mean_show);
    var_show = calloc(n0, sizeof *var_show);
    mean_inf = calloc(n0, sizeof *mean_inf);
    var_inf = calloc(n0, sizeof *var_inf);
    if (!Q || !Qshow || !mean || !var || !mean_show || !var_show || !mean_inf || !var_inf) { rc = cli_usage_error("lkr: out of memory"); goto done; }
    cli_out tab;
    if (out && (rc = cli_out_open(&tab, out))) goto done;
    printf("%10s %10s %6s %10s %12s %12s %12s %12s %10s %10s\n", "width", "alpha", "iters", "residual", "Q_diag", "Q_offdiag",
           "bias", "variance", "loss", "sign_err");
    if (out) fprintf(tab.f, "width\talpha\titerations\tresidual\tQ_diag_mean\tQ_offdiag_mean\tbias\tvariance\tloss\tsign_error\n");
    nk_lkr_opts lo = {(int)max_iter, tol};
    for (int k = 0; k <= nw && !rc; k++) {
        int inf = k == nw;
        if (inf && !has_inf) break;
        double alpha = inf ? 0 : (double)P / (double)widths[k];
        nk_lkr_info info;
        st = nk_lkr_solve(m, alpha, &lo, Q, &info, &err);
        if (st != NK_OK) { rc = cli_fail(st, &err); break; }
        if ((st = nk_lkr_predict(m, Q, &xt, mean, var, &err)) != NK_OK) { rc = cli_fail(st, &err); break; }
        double bias, variance, e01, dsum = 0, osum = 0;
        test_loss(yt, mean, var, n0, &bias, &variance, &e01);
        for (size_t i = 0; i < np; i++)
            for (size_t j = 0; j < np; j++) *(i == j ? &dsum : &osum) += Q[i * np + j];
        double dmean = dsum / (double)np, omean = np > 1 ? osum / (double)(np * (np - 1)) : 0;
        char wname[32];
        if (inf) strcpy(wname, "inf");
        else snprintf(wname, sizeof wname, "%ld", widths[k]);
        printf("%10s %10.4g %6d %10.2e %12.6g %12.6g %12.6g %12.6g %10.6g %10.4f\n", wname, alpha, info.iterations, info.residual,
               dmean, omean, bias, variance, bias + variance, e01);
        if (out) fprintf(tab.f, "%s\t%.10g\t%d\t%.3e\t%.10g\t%.10g\t%.10g\t%.10g\t%.10g\t%.6g\n", wname, alpha, info.iterations,
                         info.residual, dmean, omean, bias, variance, bias + variance, e01);
        if (!inf && widths[k] == show) {
            memcpy(Qshow, Q, np * np * sizeof *Q);
            memcpy(mean_show, mean, n0 * sizeof *mean);
            memcpy(var_show, var, n0 * sizeof *var);
        }
        if (inf) memcpy(mean_inf, mean, n0 * sizeof *mean), memcpy(var_inf, var, n0 * sizeof *var);
    }
    if (out) rc = rc ? (fclose(tab.f), remove(tab.tmp), rc) : cli_out_close(&tab);
    if (rc) goto done;
    int shown = 0;
    for (int k = 0; k < nw; k++) shown |= widths[k] == show;
    if (!shown) goto done;
    printf("# Q at N = %ld (row i, column j: patches in row-major order over the image)\n", show);
    for (size_t i = 0; i < np; i++) {
        printf("#");
        for (size_t j = 0; j < np; j++) printf(" %9.5f", Qshow[i * np + j]);
        printf("\n");
    }
    if (q_out) {
        size_t sh[2] = {np, np};
        nk_array qa = {Qshow, 2, {sh[0], sh[1], 0, 0}};
        if ((rc = cli_txn_write_npy(q_out, &qa, 0)) || (rc = cli_txn_commit())) goto done;
    }
    if (k_out) {
        nk_array K = {0};
        size_t sh[2] = {P, P};
        if ((st = nk_array_alloc(&K, 2, sh, &err)) != NK_OK || (st = nk_lkr_gram(m, Qshow, K.data, &err)) != NK_OK)
            rc = cli_fail(st, &err);
        else if (!(rc = cli_txn_write_npy(k_out, &K, 0)))
            rc = cli_txn_commit();
        nk_array_free(&K);
        if (rc) goto done;
    }
    if (pred_out) {
        cli_out po;
        if ((rc = cli_out_open(&po, pred_out))) goto done;
        fprintf(po.f, "y\tmean_N%ld\tvar_N%ld\tmean_inf\tvar_inf\n", show, show);
        for (size_t s = 0; s < n0; s++)
            fprintf(po.f, "%.10g\t%.10g\t%.10g\t%.10g\t%.10g\n", yt[s], mean_show[s], var_show[s], mean_inf[s], var_inf[s]);
        if ((rc = cli_out_close(&po))) goto done;
    }
    if (heat && np < 2) fprintf(stderr, "nkern: --heatmap: Q is a single number here (one patch): no heat map\n");
    else if (heat) rc = write_q_heatmap(heat, Qshow, np, show);
done:
    nk_lkr_free(m);
    nk_array_free(&x);
    nk_array_free(&xt);
    free(y); free(yt); free(Q); free(Qshow); free(mean); free(var); free(mean_show); free(var_show); free(mean_inf); free(var_inf);
    return rc;
}

/* ------------------------------------------------------------- langevin -- */

static const char *langevin_help_head =
    "usage: nkern langevin [network] [data] --width N [--step ETA] [--burn-in B] [--run R]\n"
    "                      [--chains C] [--sample-every K] [--threads T] [--chain-seed S]\n"
    "                      [--theory] [--quiet] [--progress]\n"
    "\n"
    "Samples the Bayesian posterior of the finite network (N hidden units or channels) at\n"
    "temperature T by Langevin dynamics, theta <- theta - eta grad U + sqrt(2 eta T) xi with\n"
    "U = (1/2) sum (y - f)^2 + (T lambda0/2)|W|^2 + (T lambda1/2)|v|^2, from a prior draw, C\n"
    "independent chains (default 2, in parallel).  The run is measured in relaxation times of the\n"
    "prior-dominated directions, tau = 1/(eta T min(lambda0, lambda1)) steps: B (default 5) are\n"
    "discarded, R (default 20) sampled.  ETA defaults to 0.1 / (largest eigenvalue of the\n"
    "Gauss-Newton matrix at the start).  Prints the posterior-averaged test loss = bias + variance\n"
    "with its standard error over chains, each chain's loss, the step, steps, samples and the\n"
    "wall time; --theory adds the lkr prediction at the same width and the relative difference.\n\n";

int cmd_langevin(int argc, char **argv)
{
    finite_args a;
    finite_args_default(&a);
    nk_langevin_opts o;
    nk_langevin_opts_default(&o);
    long width = 0, chains = 2, every = 0, threads = 0, chain_seed = 1;
    int theory = 0, quiet = 0, force = 0;
    for (int i = 1; i < argc; i++) {
        const char *op = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(op, "--help") || !strcmp(op, "-h")) { fputs(langevin_help_head, stdout); fputs(common_help, stdout); return 0; }
        if (!strcmp(op, "--theory")) { theory = 1; continue; }
        if (!strcmp(op, "--quiet")) { quiet = 1; continue; }
        if (!strcmp(op, "--progress")) { force = 1; continue; }
        int rc = finite_option(argc, argv, &i, &a);
        if (rc == 0) continue;
        if (rc > 0) return rc;
        if (!v) return cli_usage_error("%s: unknown option or missing value (see nkern langevin --help)", op);
        i++;
        if (!strcmp(op, "--width")) { if (cli_parse_int(op, v, 1, 1L << 30, &width)) return 2; }
        else if (!strcmp(op, "--step")) {
            if (cli_parse_double(op, v, &o.step)) return 2;
            if (!(o.step > 0)) return cli_usage_error("--step: must be positive");
        } else if (!strcmp(op, "--burn-in")) {
            if (cli_parse_double(op, v, &o.burn_in)) return 2;
            if (o.burn_in < 0) return cli_usage_error("--burn-in: must be >= 0 relaxation times");
        } else if (!strcmp(op, "--run")) {
            if (cli_parse_double(op, v, &o.run)) return 2;
            if (!(o.run > 0)) return cli_usage_error("--run: must be > 0 relaxation times");
        } else if (!strcmp(op, "--chains")) { if (cli_parse_int(op, v, 1, NK_LANGEVIN_MAX_CHAINS, &chains)) return 2; }
        else if (!strcmp(op, "--sample-every")) { if (cli_parse_int(op, v, 1, 1L << 40, &every)) return 2; }
        else if (!strcmp(op, "--threads")) { if (cli_parse_int(op, v, 0, 1024, &threads)) return 2; }
        else if (!strcmp(op, "--chain-seed")) { if (cli_parse_int(op, v, 0, 1L << 62, &chain_seed)) return 2; }
        else return cli_usage_error("%s: unknown option (see nkern langevin --help)", op);
    }
    if (!width) return cli_usage_error("--width: required (hidden units or channels N)");
    o.width = (size_t)width;
    o.chains = (int)chains;
    o.sample_every = every;
    o.nthreads = (int)threads;
    o.seed = (uint64_t)chain_seed;
    cli_progress pr;
    cli_progress_init(&pr, "langevin steps", cli_progress_default(quiet, force));
    o.progress = cli_progress_cb;
    o.progress_ctx = &pr;
    nk_array x = {0}, xt = {0};
    double *y = NULL, *yt = NULL, *mean = NULL, *var = NULL;
    nk_lkr *m = NULL;
    nk_error err = {{0}};
    nk_status st;
    int rc = load_data(&a, &x, &y, &xt, &yt);
    if (rc) goto done;
    size_t np, M, n0 = xt.shape[0], P = x.shape[0];
    if ((st = nk_finite_shape(&a.net, &x, &np, &M, &err)) != NK_OK) { rc = cli_fail(st, &err); goto done; }
    print_setting(&a, &x, n0, np, M);
    nk_langevin_result r;
    if ((st = nk_langevin_run(&a.net, &x, y, &xt, yt, &o, &r, NULL, NULL, &err)) != NK_OK) { rc = cli_fail(st, &err); goto done; }
    printf("width %ld alpha %.4g: test loss %.6g +- %.2g (bias %.6g, variance %.6g), train mse %.6g\n", width, (double)P / width,
           r.loss, r.loss_err, r.bias, r.variance, r.train_loss);
    printf("chains:");
    for (int c = 0; c < o.chains; c++) printf(" %.6g", r.chain_loss[c]);
    printf("\nstep %.4g, relaxation time %.4g steps, %ld steps per chain (%.3g relaxation times, burn-in %.3g), %ld samples per chain, %.2f s\n",
           r.step, r.relax_steps, r.steps, r.steps / r.relax_steps, o.burn_in, r.samples, r.seconds);
    if (theory) {
        double Q[4096];
        nk_lkr_info info;
        mean = malloc(n0 * sizeof *mean);
        var = malloc(n0 * sizeof *var);
        if (!mean || !var) { rc = cli_usage_error("langevin: out of memory"); goto done; }
        if (np * np > sizeof Q / sizeof *Q) { rc = cli_usage_error("--theory: at most 64 patches"); goto done; }
        if ((st = nk_lkr_create(&a.net, &x, y, &m, &err)) != NK_OK || (st = nk_lkr_solve(m, (double)P / width, NULL, Q, &info, &err)) != NK_OK ||
            (st = nk_lkr_predict(m, Q, &xt, mean, var, &err)) != NK_OK) { rc = cli_fail(st, &err); goto done; }
        double bias, variance, e01;
        test_loss(yt, mean, var, n0, &bias, &variance, &e01);
        double loss = bias + variance;
        printf("theory: test loss %.6g (bias %.6g, variance %.6g), residual %.1e; langevin - theory = %+.4g (%+.2f%%, %.1f standard errors)\n",
               loss, bias, variance, info.residual, r.loss - loss, 100 * (r.loss - loss) / loss,
               r.loss_err > 0 ? (r.loss - loss) / r.loss_err : 0.0);
    }
done:
    nk_lkr_free(m);
    nk_array_free(&x);
    nk_array_free(&xt);
    free(y); free(yt); free(mean); free(var);
    return rc;
}
