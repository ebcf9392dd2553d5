/* cmd_curve.c -- `nkern curve`: measured and predicted learning curves of kernel regression on
 * synthetic product-of-spheres data. */
#include "cli.h"
#include "nk_synth.h"
#include "nk_theory.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARCH 4
#define MAX_N 64

static const char *curve_help =
    "usage: nkern curve --arch SPEC [--arch SPEC2 ...] --patches M --dim N0 --target T\n"
    "                   [--n 10,20,50,100] [--seeds R] [--test T] [--get ntk|nngp] [--ridge R]\n"
    "                   [--noise V] [--seed S] [--kmax K] [--nquad Q] [--threads N]\n"
    "                   [--out CURVE.tsv] [--plot F.svg|png] [--w-std W] [--b-std B] ...\n"
    "\n"
    "Learning curve of kernel regression f = k*^T (K + delta I)^{-1} y with the NNGP or the NTK\n"
    "(the infinite-time gradient-flow predictor) of each SPEC (up to 4), on `nkern synth` data\n"
    "(M patches on S^(N0-1), target T as in nkern synth --help; inputs (M, N0): use\n"
    "'flatten dense ...' for an MLP).  delta = RIDGE * K(x,x) (default 1e-6).\n"
    "\n"
    "measured   for each n and each of R seeds (default 5), train on the first n samples of a\n"
    "           seeded pool, test on one fixed held-out set of T samples (default 1000): the\n"
    "           mean and standard deviation over seeds of the test MSE (noisy test targets).\n"
    "predicted  eigenlearning (Simon et al. 2021; Bordelon, Canatar, Pehlevan 2020) with the\n"
    "           product-of-spheres eigenvalues lambda_k (nkern spectrum --patches), every degree\n"
    "           vector with k_i <= K (default: max(4, the target's largest degree + 2)), each with\n"
    "           multiplicity prod_i N(N0, k_i), and the target's exact power on its levels.\n"
    "           Modes above the truncation (kernel trace K(x,x) minus the kept trace) act like\n"
    "           white noise on the Gram: their trace is added to the ridge.\n"
    "Prints n, measured mean and sd, predicted MSE and kappa per SPEC; --out writes the table.\n";

typedef struct {
    double mean[MAX_N], sd[MAX_N], pred[MAX_N], kappa[MAX_N];
    double k_diag, kept_trace;
} arch_curve;

static double default_kmax(const nk_synth_target *t)
{
    int k = 0;
    for (size_t j = 0; j < t->nterms; j++)
        for (int i = 0; i < t->m; i++) k = t->term[j].degree[i] > k ? t->term[j].degree[i] : k;
    return k + 2 > 4 ? k + 2 : 4;
}

/* measured curve of one spec: a Gram per seed over the largest n, prefixes for smaller n */
static nk_status measure(const char *spec, const nk_arch_opts *ao, int get, const nk_synth_target *t, const long *ns,
                         int nn, long seeds, long ntest, uint64_t seed, double ridge, int threads, arch_curve *c,
                         nk_error *err)
{
    size_t nmax = 0;
    for (int j = 0; j < nn; j++) nmax = (size_t)ns[j] > nmax ? (size_t)ns[j] : nmax;
    nk_arch *arch = NULL;
    nk_plan *plan = NULL;
    nk_array xt = {0}, yt = {0};
    size_t in[2] = {(size_t)t->m, (size_t)t->n0};
    double *mse = malloc((size_t)seeds * nn * sizeof *mse);
    nk_status st = mse ? nk_arch_parse(spec, ao, &arch, err) : nk_fail(err, NK_ERR_NOMEM, "curve: out of memory");
    if (st == NK_OK) st = nk_plan_create(arch, 2, in, &plan, err);
    /* the held-out set: its own sample stream, shared by every seed and spec */
    if (st == NK_OK) st = nk_synth_sample(t, (size_t)ntest, seed ^ 0x7E57ULL, &xt, &yt, NULL, err);
    nk_kernel_opts ko;
    nk_kernel_opts_default(&ko);
    ko.get = get;
    ko.nthreads = threads;
    c->k_diag = 0;
    for (long r = 0; st == NK_OK && r < seeds; r++) {
        nk_array xp = {0}, yp = {0}, K = {0}, C = {0};
        st = nk_synth_sample(t, nmax, seed + 1 + (uint64_t)r, &xp, &yp, NULL, err);
        if (st == NK_OK) st = nk_kernel_matrix(plan, &xp, NULL, &ko, get == NK_GET_NNGP ? &K : NULL, get == NK_GET_NTK ? &K : NULL, err);
        if (st == NK_OK) st = nk_kernel_matrix(plan, &xt, &xp, &ko, get == NK_GET_NNGP ? &C : NULL, get == NK_GET_NTK ? &C : NULL, err);
        if (st == NK_OK && r == 0) {
            for (size_t i = 0; i < nmax; i++) c->k_diag += K.data[i * nmax + i];
            c->k_diag /= (double)nmax;
        }
        for (int j = 0; st == NK_OK && j < nn; j++)
            st = nk_krr_test_mse(&K, &C, yp.data, yt.data, (size_t)ns[j], ridge * c->k_diag, &mse[r * nn + j], err);
        nk_array_free(&xp); nk_array_free(&yp); nk_array_free(&K); nk_array_free(&C);
    }
    for (int j = 0; st == NK_OK && j < nn; j++) {
        double s = 0, s2 = 0;
        for (long r = 0; r < seeds; r++) s += mse[r * nn + j];
        s /= (double)seeds;
        for (long r = 0; r < seeds; r++) s2 += (mse[r * nn + j] - s) * (mse[r * nn + j] - s);
        c->mean[j] = s;
        c->sd[j] = seeds > 1 ? sqrt(s2 / (double)(seeds - 1)) : 0;
    }
    free(mse);
    nk_array_free(&xt); nk_array_free(&yt);
    nk_plan_free(plan);
    nk_arch_free(arch);
    return st;
}

static nk_status predict(const char *spec, const nk_arch_opts *ao, int get, const nk_synth_target *t, int kmax, long nquad,
                         const long *ns, int nn, double ridge, arch_curve *c, nk_error *err)
{
    size_t total = 1;
    for (int i = 0; i < t->m; i++) total *= (size_t)kmax + 1;
    double *lam = malloc(total * sizeof *lam);
    nk_eig_level *lev = malloc(total * sizeof *lev);
    nk_status st = lam && lev ? NK_OK : nk_fail(err, NK_ERR_NOMEM, "curve: out of memory for %zu degree vectors", total);
    if (st == NK_OK) st = nk_product_sphere_eigen(spec, ao, get, t->m, t->n0, kmax, (size_t)nquad, lam, err);
    if (st == NK_OK) st = nk_product_levels(lam, t->m, t->n0, kmax, t, lev, &c->kept_trace, err);
    double tail = fmax(c->k_diag - c->kept_trace, 0);
    for (int j = 0; st == NK_OK && j < nn; j++) {
        nk_eigenlearn_result r;
        st = nk_eigenlearn(lev, total, (double)ns[j], ridge * c->k_diag + tail, t->noise, &r, NULL, err);
        if (st != NK_OK) break;
        c->pred[j] = r.mse;
        c->kappa[j] = r.kappa;
    }
    free(lam);
    free(lev);
    return st;
}

static int plot_curves(const char *plot, const char *title, char *const *specs, int na, const arch_curve *c, const long *ns,
                       int nn, double power)
{
    cli_script sc;
    FILE *s = cli_script_open(&sc);
    if (!s) return 2;
    static const char *colors[MAX_ARCH] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd"};
    for (int a = 0; a < na; a++) {
        fprintf(s, "$d%d << EOD\n", a);
        for (int j = 0; j < nn; j++) fprintf(s, "%ld %.10g %.10g %.10g\n", ns[j], c[a].mean[j], c[a].sd[j], c[a].pred[j]);
        fputs("EOD\n", s);
    }
    fprintf(s, "set title '%s'\nset xlabel 'training samples n'\nset ylabel 'test MSE'\n", title);
    /* the key below the plot, one entry per line: inside it, long spec names made it wider than
     * the plot and gnuplot dropped it whole */
    fputs("set logscale xy\nset grid\nset key outside below left Left reverse maxcols 1\nset format y '10^{%L}'\n", s);
    fprintf(s, "plot %.10g with lines dt 2 lc rgb 'gray40' title 'E[f^2] (predicting 0)', ", power);
    for (int a = 0; a < na; a++) {
        /* at most 90 characters of the spec, shown as typed (noenhanced: no ^ _ { } markup) */
        char name[96];
        if (snprintf(name, sizeof name, "%s", specs[a]) > 90) strcpy(name + 87, "...");
        for (char *p = name; *p; p++) if (*p == '\'') *p = '"';
        fprintf(s, "%s$d%d using 1:2:3 with yerrorbars pt 7 ps 0.7 lc rgb '%s' title 'measured: %s' noenhanced, "
                   "$d%d using 1:4 with lines lw 2 lc rgb '%s' title 'predicted: %s' noenhanced",
                a ? ", " : "", a, colors[a], name, a, colors[a], name);
    }
    fputc('\n', s);
    int rc = cli_script_plot(&sc, plot, 900, 620 + 22 * (2 * na + 1)); /* room for the key's lines */
    return rc;
}

int cmd_curve(int argc, char **argv)
{
    char *specs[MAX_ARCH];
    int na = 0, nn = 0, rc;
    const char *target = NULL, *get = "ntk", *out = NULL, *plot = NULL, *nlist = "10,20,50,100,200";
    long m = 0, n0 = 0, seeds = 5, ntest = 1000, seed = 1, kmax = -1, nquad = 0, threads = 0;
    double ridge = 1e-6, noise = 0;
    nk_arch_opts ao;
    nk_arch_opts_default(&ao);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(curve_help, stdout); return 0; }
        if ((rc = cli_arch_option(argc, argv, &i, &ao)) >= 0) { if (rc) return rc; continue; }
        if (!v) return cli_usage_error("%s: unknown option or missing value (see nkern curve --help)", a);
        i++;
        if (!strcmp(a, "--arch")) {
            if (na == MAX_ARCH) return cli_usage_error("--arch: at most %d specs", MAX_ARCH);
            specs[na++] = argv[i];
        }
        else if (!strcmp(a, "--target")) target = v;
        else if (!strcmp(a, "--get")) get = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--plot")) plot = v;
        else if (!strcmp(a, "--n")) nlist = v;
        else if (!strcmp(a, "--patches")) { if (cli_parse_int(a, v, 1, 12, &m)) return 2; }
        else if (!strcmp(a, "--dim")) { if (cli_parse_int(a, v, 2, 100000, &n0)) return 2; }
        else if (!strcmp(a, "--seeds")) { if (cli_parse_int(a, v, 1, 1000, &seeds)) return 2; }
        else if (!strcmp(a, "--test")) { if (cli_parse_int(a, v, 1, 1000000, &ntest)) return 2; }
        else if (!strcmp(a, "--seed")) { if (cli_parse_int(a, v, 0, 1L << 62, &seed)) return 2; }
        else if (!strcmp(a, "--kmax")) { if (cli_parse_int(a, v, 0, 1000, &kmax)) return 2; }
        else if (!strcmp(a, "--nquad")) { if (cli_parse_int(a, v, 1, 100000, &nquad)) return 2; }
        else if (!strcmp(a, "--threads")) { if (cli_parse_int(a, v, 0, 4096, &threads)) return 2; }
        else if (!strcmp(a, "--ridge")) { if (cli_parse_double(a, v, &ridge)) return 2; }
        else if (!strcmp(a, "--noise")) { if (cli_parse_double(a, v, &noise)) return 2; }
        else return cli_usage_error("%s: unknown option (see nkern curve --help)", a);
    }
    if (cli_plot_check(plot) || (out && cli_check_out_dir("--out", out))) return 2;
    if (!na) return cli_usage_error("curve: missing --arch SPEC (e.g. 'conv(1) relu conv(2,stride=2,pad=valid) relu flatten dense')");
    if (!m) return cli_usage_error("curve: missing --patches M");
    if (!n0) return cli_usage_error("curve: missing --dim N0 (each patch lies on S^(N0-1))");
    if (!target) return cli_usage_error("curve: missing --target (e.g. '0:2,1:2')");
    if (ridge < 0) return cli_usage_error("--ridge: %g (use >= 0)", ridge);
    if (noise < 0) return cli_usage_error("--noise: %g (a variance: use >= 0)", noise);
    int g = !strcmp(get, "ntk") ? NK_GET_NTK : !strcmp(get, "nngp") ? NK_GET_NNGP : 0;
    if (!g) return cli_usage_error("--get: '%s' (use ntk or nngp)", get);
    long ns[MAX_N];
    if (cli_parse_int_list("--n", nlist, ns, MAX_N, &nn)) return 2;
    for (int j = 0; j < nn; j++)
        if (ns[j] > 20000) return cli_usage_error("--n: %ld samples (at most 20000: the Gram is n x n)", ns[j]);

    nk_error err = {{0}};
    nk_synth_target t;
    nk_status st = NK_OK;
    int trc = cli_synth_target(target, m, n0, noise, seed, &t);
    if (trc) return trc;
    if (kmax < 0) kmax = (long)default_kmax(&t);
    arch_curve *c = calloc((size_t)na, sizeof *c);
    if (!c) return cli_usage_error("out of memory");
    /* measured first: the prediction needs K(x,x) from the Gram for the truncated tail */
    for (int a = 0; st == NK_OK && a < na; a++) {
        st = measure(specs[a], &ao, g, &t, ns, nn, seeds, ntest, (uint64_t)seed, ridge, (int)threads, &c[a], &err);
        if (st == NK_OK) st = predict(specs[a], &ao, g, &t, (int)kmax, nquad, ns, nn, ridge, &c[a], &err);
        if (st != NK_OK) {
            free(c);
            return cli_fail(st, &err);
        }
    }
    printf("# %s kernel regression on %ld patches on S^%ld, target '%s' (E[f^2] = %.6g), noise %g\n",
           g == NK_GET_NTK ? "NTK" : "NNGP", m, n0 - 1, target, nk_synth_power(&t), noise);
    printf("# ridge %g x K(x,x); %ld seeds; %ld test samples; eigenvalues of degree <= %ld per patch\n", ridge, seeds, ntest, kmax);
    for (int a = 0; a < na; a++)
        printf("# [%d] %s: K(x,x) = %.6g, kept trace %.6g (%.2f%%)\n", a, specs[a], c[a].k_diag, c[a].kept_trace,
               100 * c[a].kept_trace / c[a].k_diag);
    printf("# n");
    for (int a = 0; a < na; a++) printf("\t[%d]measured\t[%d]sd\t[%d]predicted\t[%d]kappa", a, a, a, a);
    printf("\n");
    cli_out ofile;
    if (out && cli_out_open(&ofile, out)) { free(c); return 1; }
    FILE *fo = out ? ofile.f : NULL;
    if (fo) {
        fprintf(fo, "# n");
        for (int a = 0; a < na; a++) fprintf(fo, "\tmeasured_%d\tsd_%d\tpredicted_%d\tkappa_%d", a, a, a, a);
        fprintf(fo, "\n");
    }
    for (int j = 0; j < nn; j++) {
        printf("%ld", ns[j]);
        if (fo) fprintf(fo, "%ld", ns[j]);
        for (int a = 0; a < na; a++) {
            printf("\t%.6g\t%.3g\t%.6g\t%.4g", c[a].mean[j], c[a].sd[j], c[a].pred[j], c[a].kappa[j]);
            if (fo) fprintf(fo, "\t%.10g\t%.10g\t%.10g\t%.10g", c[a].mean[j], c[a].sd[j], c[a].pred[j], c[a].kappa[j]);
        }
        printf("\n");
        if (fo) fprintf(fo, "\n");
    }
    rc = 0;
    if (fo && cli_out_close(&ofile)) rc = 1;
    if (!rc && plot) {
        char title[512];
        snprintf(title, sizeof title, "%s regression, %ld patches on S^{%ld}, target %s", g == NK_GET_NTK ? "NTK" : "NNGP", m, n0 - 1, target);
        for (char *p = title; *p; p++) if (*p == '\'' || *p == '_') *p = ' ';
        rc = plot_curves(plot, title, specs, na, c, ns, nn, nk_synth_power(&t) + noise);
    }
    free(c);
    return rc;
}
