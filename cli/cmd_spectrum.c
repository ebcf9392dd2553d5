/* cmd_spectrum.c -- `nkern spectrum`: eigenvalues of a kernel matrix (.npy), or the exact
 * eigenvalues mu_k and multiplicities N(d,k) of an MLP's NNGP/NTK on the sphere S^{d-1}. */
#include "cli.h"
#include "nk_theory.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *spectrum_help =
    "usage: nkern spectrum --kernel K.npy [--fit I0:I1] [--top N] [--out EIG.tsv] [--vectors V.npy]\n"
    "                      [--plot F.svg|png]\n"
    "       nkern spectrum --sphere --arch SPEC --dim D [--kmax K] [--get ntk|nngp] [--nquad N]\n"
    "                      [--fit K0:K1] [--out MU.tsv] [--plot F.svg|png] [--w-std W] [--b-std B] ...\n"
    "       nkern spectrum --patches M --arch SPEC --dim D [--kmax K] [--get ntk|nngp] [--nquad N]\n"
    "                      [--out LAMBDA.tsv]\n"
    "\n"
    "--kernel   eigenvalues of a symmetric N x N kernel matrix (LAPACK dsyevd): lambda_max,\n"
    "           lambda_min, condition number, effective rank (sum l)^2 / sum l^2, and the decay\n"
    "           exponent alpha of lambda_i ~ i^-alpha fitted by least squares of log lambda_i on\n"
    "           log i over ranks I0..I1 (default 10:N/2).  --out: TSV of rank and eigenvalue\n"
    "           (descending); --vectors: the eigenvectors as the columns of an N x N .npy, in\n"
    "           the same order.\n"
    "--sphere   exact eigenvalues of the kernel of an MLP SPEC on the unit sphere S^{D-1}:\n"
    "           k(t) = sum_k mu_k N(D,k) P_k(t), mu_k by Gauss-Jacobi quadrature (NQUAD nodes,\n"
    "           default max(2000, 8 K)) of k(t) P_k(t) (1-t^2)^((D-3)/2).  Inputs are taken with\n"
    "           |x|^2 = D, so nkern's K0 = <x,x'>/D is the cosine t.  Prints k, N(D,k), mu_k,\n"
    "           N mu_k and the cumulative fraction of k(1); the fit is over degrees K0..K1\n"
    "           (default K/4:K) with mu_k > 1e-12 max mu.\n"
    "--patches M  eigenvalues lambda_k on a product of M spheres S^{D-1} (one per patch) for\n"
    "           degree vectors k with |k| = sum k_i <= K (--kmax, default 4), by tensor Gauss-Jacobi\n"
    "           quadrature (NQUAD per patch, default 2K + 8).  SPEC acts on M positions whose\n"
    "           channels are the patch, e.g. 'conv(1) relu conv(2,stride=2,pad=valid) relu flatten\n"
    "           dense' (conv(1) here = a non-overlapping conv(D, stride=D) on the raw signal).\n"
    "           Prints lambda_k grouped by frequency |k| and spatial extent (last - first patch with\n"
    "           k_i > 0, plus 1); --out writes every degree vector.\n";

static int parse_fit(const char *s, long *a, long *b)
{
    char *end;
    *a = strtol(s, &end, 10);
    if (end == s || *end != ':' || *a < 0) return cli_usage_error("--fit: '%s' (use FROM:TO, e.g. 10:200)", s);
    const char *p = end + 1;
    *b = strtol(p, &end, 10);
    if (end == p || *end || *b <= *a) return cli_usage_error("--fit: '%s' (use FROM:TO with FROM < TO)", s);
    return 0;
}

static int write_tsv(const char *path, const char *header, const double *x, const double *y, size_t n)
{
    cli_out o;
    if (cli_out_open(&o, path)) return 1;
    fprintf(o.f, "# %s\n", header);
    for (size_t i = 0; i < n; i++) fprintf(o.f, "%.10g\t%.12g\n", x[i], y[i]);
    return cli_out_close(&o);
}

/* log-log plot of y against x (positive y only) with the fitted power law C x^-alpha */
static int plot_decay(const char *plot, const char *title, const char *xlabel, const char *ylabel, const double *x,
                      const double *y, size_t n, double alpha, double log_c, double f0, double f1)
{
    cli_script sc;
    FILE *s = cli_script_open(&sc);
    if (!s) return 2;
    fputs("$d << EOD\n", s);
    for (size_t i = 0; i < n; i++)
        if (y[i] > 0) fprintf(s, "%.10g %.12g\n", x[i], y[i]);
    fputs("EOD\n", s);
    fprintf(s, "set title '%s'\nset xlabel '%s'\nset ylabel '%s'\n", title, xlabel, ylabel);
    fputs("set logscale xy\nset grid\nset key top right\nset format y '10^{%L}'\n", s);
    fprintf(s, "f(x) = (x >= %g && x <= %g) ? exp(%.12g) * x**(-%.12g) : 1/0\n", f0, f1, log_c, alpha);
    fprintf(s, "set samples 400\nplot $d using 1:2 with points pt 7 ps 0.6 title 'eigenvalues', "
               "f(x) with lines lw 2 lc rgb 'black' title sprintf('fit  %%.3g^{ } x^{-%%.3f}', exp(%.12g), %.12g)\n",
            log_c, alpha);
    int rc = cli_script_plot(&sc, plot, 900, 620);
    return rc;
}

static int spectrum_kernel(const char *path, const char *fit, long top, const char *out, const char *vectors,
                           const char *plot)
{
    nk_error err = {{0}};
    nk_array a = {0};
    if (cli_read_npy(path, &a)) return 2;
    nk_status st = nk_check_symmetric(&a, 1e-8, path, &err);
    if (st != NK_OK) { nk_array_free(&a); return cli_fail(st, &err); }
    size_t n = a.shape[0];
    long f0 = n >= 40 ? 10 : 1, f1 = n >= 40 ? (long)(n / 2) : (long)n;
    int rc = fit ? parse_fit(fit, &f0, &f1) : 0;
    double *eig = malloc(n * sizeof *eig), *desc = malloc(n * sizeof *desc), *rank = malloc(n * sizeof *rank);
    if (!rc && (!eig || !desc || !rank)) rc = cli_usage_error("out of memory for n = %zu", n);
    if (!rc) {
        st = nk_sym_eig(a.data, n, vectors != NULL, eig, &err);
        if (st != NK_OK) rc = cli_fail(st, &err);
    }
    if (!rc) {
        for (size_t i = 0; i < n; i++) { desc[i] = eig[n - 1 - i]; rank[i] = (double)(i + 1); }
        nk_spec_stats s;
        nk_spec_stats_compute(eig, n, &s);
        double alpha = NAN, log_c = NAN;
        nk_error ferr = {{0}};
        int fitted = nk_decay_fit(desc, n, (size_t)f0, (size_t)f1, &alpha, &log_c, &ferr) == NK_OK;
        printf("matrix\t%s\nn\t%zu\nlambda_max\t%.10g\nlambda_min\t%.10g\ncondition\t%.6g\n", path, n, s.lmax, s.lmin, s.cond);
        printf("effective_rank\t%.6g\ntrace\t%.10g\nbulk_median\t%.10g\nlr_max\t%.6g\n", s.eff_rank, s.trace, s.bulk_median, s.lr_max);
        if (fitted) printf("decay_alpha\t%.6g\t(lambda_i ~ %.4g i^-alpha over ranks %ld..%ld)\n", alpha, exp(log_c), f0, f1 < (long)n ? f1 : (long)n);
        else fprintf(stderr, "spectrum: no decay fit: %s\n", ferr.msg);
        if (top > 0) {
            printf("# rank\teigenvalue\n");
            for (size_t i = 0; i < n && (long)i < top; i++) printf("%zu\t%.12g\n", i + 1, desc[i]);
        }
        if (out) rc = write_tsv(out, "rank\teigenvalue (descending)", rank, desc, n);
        if (!rc && vectors) {
            /* dsyevd leaves the eigenvectors as columns in ascending order: reverse the columns */
            for (size_t r = 0; r < n; r++)
                for (size_t c = 0; c < n / 2; c++) {
                    double t = a.data[r * n + c];
                    a.data[r * n + c] = a.data[r * n + n - 1 - c];
                    a.data[r * n + n - 1 - c] = t;
                }
            rc = cli_txn_write_npy(vectors, &a, 0);
            if (!rc) rc = cli_txn_commit();
        }
        if (!rc && plot) {
            char title[512];
            snprintf(title, sizeof title, "Eigenvalues of %s (n = %zu)", path, n);
            for (char *p = title; *p; p++) if (*p == '\'' || *p == '_') *p = ' ';
            rc = plot_decay(plot, title, "rank i", "eigenvalue {/Symbol l}_i", rank, desc, n, fitted ? alpha : 0,
                            fitted ? log_c : -INFINITY, (double)f0, (double)f1);
        }
    }
    free(eig); free(desc); free(rank);
    nk_array_free(&a);
    return rc;
}

static int spectrum_sphere(const char *spec, const nk_arch_opts *ao, int get, long d, long kmax, long nquad,
                           const char *fit, const char *out, const char *plot)
{
    long f0 = kmax / 4 > 1 ? kmax / 4 : 1, f1 = kmax;
    if (fit && parse_fit(fit, &f0, &f1)) return 2;
    if (f0 < 1) f0 = 1;
    double *mu = malloc(((size_t)kmax + 1) * sizeof *mu), *kk = malloc(((size_t)kmax + 1) * sizeof *kk);
    double *pos = malloc(((size_t)kmax + 1) * sizeof *pos), k1 = 0;
    int rc = 0;
    nk_error err = {{0}};
    if (!mu || !kk || !pos) rc = cli_usage_error("out of memory for kmax = %ld", kmax);
    if (!rc) {
        nk_status st = nk_sphere_eigen(spec, ao, get, (int)d, (int)kmax, (size_t)nquad, mu, &k1, &err);
        if (st != NK_OK) rc = cli_fail(st, &err);
    }
    if (!rc) {
        double mmax = 0, sum = 0;
        for (long k = 0; k <= kmax; k++) mmax = fmax(mmax, fabs(mu[k]));
        /* degrees whose eigenvalue is zero up to quadrature rounding are left out of the fit */
        for (long k = 0; k <= kmax; k++) { kk[k] = (double)k; pos[k] = mu[k] > 1e-12 * mmax ? mu[k] : 0; }
        double alpha = NAN, log_c = NAN;
        nk_error ferr = {{0}};
        int fitted = f1 >= 1 && nk_decay_fit(pos + 1, (size_t)kmax, (size_t)f0, (size_t)f1, &alpha, &log_c, &ferr) == NK_OK;
        printf("# %s of '%s' on S^%ld (d = %ld), %ld quadrature nodes\n", get == NK_GET_NTK ? "NTK" : "NNGP", spec, d - 1, d,
               nquad ? nquad : (8 * kmax > 2000 ? 8 * kmax : 2000));
        printf("# k\tN(d,k)\tmu_k\tN*mu_k\tcumulative/k(1)\n");
        for (long k = 0; k <= kmax; k++) {
            double N = nk_sphere_multiplicity((int)d, (int)k);
            sum += N * mu[k];
            printf("%ld\t%.0f\t%.10e\t%.10e\t%.10f\n", k, N, mu[k], N * mu[k], sum / k1);
        }
        printf("# k(1) = %.12g, sum_k N(d,k) mu_k = %.12g (missing %.3g: degrees above %ld)\n", k1, sum, k1 - sum, kmax);
        if (fitted) printf("# decay: mu_k ~ %.4g k^-%.4f over k = %ld..%ld\n", exp(log_c), alpha, f0, f1);
        else fprintf(stderr, "spectrum: no decay fit: %s\n", ferr.msg);
        if (out) rc = write_tsv(out, "k\tmu_k", kk, mu, (size_t)kmax + 1);
        if (!rc && plot) {
            char title[512];
            snprintf(title, sizeof title, "%s eigenvalues on S^{%ld}: %s", get == NK_GET_NTK ? "NTK" : "NNGP", d - 1, spec);
            for (char *p = title; *p; p++) if (*p == '\'' || *p == '_') *p = ' ';
            rc = plot_decay(plot, title, "degree k", "eigenvalue {/Symbol m}_k", kk + 1, pos + 1, (size_t)kmax,
                            fitted ? alpha : 0, fitted ? log_c : -INFINITY, (double)f0, (double)f1);
        }
    }
    free(mu); free(kk); free(pos);
    return rc;
}

/* span of the patches a degree vector involves: last - first nonzero index + 1 (0 if none) */
static int extent_of(const int *k, int m)
{
    int first = -1, last = -1;
    for (int i = 0; i < m; i++)
        if (k[i]) { if (first < 0) first = i; last = i; }
    return first < 0 ? 0 : last - first + 1;
}

static int spectrum_patches(const char *spec, const nk_arch_opts *ao, int get, long m, long d, long kmax, long nquad,
                            const char *out)
{
    size_t K1 = (size_t)kmax + 1, total = 1;
    for (long i = 0; i < m; i++) total *= K1;
    double *lam = malloc(total * sizeof *lam);
    if (!lam) return cli_usage_error("out of memory for %zu degree vectors", total);
    nk_error err = {{0}};
    nk_status st = nk_product_sphere_eigen(spec, ao, get, (int)m, (int)d, (int)kmax, (size_t)nquad, lam, &err);
    if (st != NK_OK) { free(lam); return cli_fail(st, &err); }
    cli_out ofile;
    if (out && cli_out_open(&ofile, out)) { free(lam); return 1; }
    FILE *fo = out ? ofile.f : NULL;
    if (fo) fprintf(fo, "# k (per patch)\tfrequency\textent\tlambda_k\tmultiplicity\n");
    /* groups by (frequency, extent): count, sum, min, max */
    size_t ng = K1 * ((size_t)m + 1);
    double *gs = calloc(ng, sizeof *gs), *gmin = malloc(ng * sizeof *gmin), *gmax = malloc(ng * sizeof *gmax);
    long *gc = calloc(ng, sizeof *gc);
    int k[12];
    for (size_t idx = 0; gs && gmin && gmax && gc && idx < total; idx++) {
        size_t rem = idx;
        int f = 0;
        for (long i = m - 1; i >= 0; i--) { k[i] = (int)(rem % K1); rem /= K1; f += k[i]; }
        if (f > kmax) continue;
        int e = extent_of(k, (int)m);
        double mult = 1;
        for (long i = 0; i < m; i++) mult *= nk_sphere_multiplicity((int)d, k[i]);
        size_t g = (size_t)f * ((size_t)m + 1) + (size_t)e;
        if (!gc[g]) { gmin[g] = gmax[g] = lam[idx]; }
        gc[g]++;
        gs[g] += lam[idx];
        gmin[g] = fmin(gmin[g], lam[idx]);
        gmax[g] = fmax(gmax[g], lam[idx]);
        if (fo) {
            fputc('(', fo);
            for (long i = 0; i < m; i++) fprintf(fo, "%s%d", i ? "," : "", k[i]);
            fprintf(fo, ")\t%d\t%d\t%.10e\t%.0f\n", f, e, lam[idx], mult);
        }
    }
    int rc = 0;
    if (fo && cli_out_close(&ofile)) rc = 1;
    if (!gs || !gmin || !gmax || !gc) rc = cli_usage_error("out of memory");
    else {
        printf("# %s of '%s' on %ld patches, each on S^%ld; eigenvalues by frequency |k| and spatial extent\n",
               get == NK_GET_NTK ? "NTK" : "NNGP", spec, m, d - 1);
        printf("# frequency\textent\tcount\tmean_lambda\tmin_lambda\tmax_lambda\n");
        for (size_t f = 0; f < K1; f++)
            for (size_t e = 0; e <= (size_t)m; e++) {
                size_t g = f * ((size_t)m + 1) + e;
                if (gc[g]) printf("%zu\t%zu\t%ld\t%.6e\t%.6e\t%.6e\n", f, e, gc[g], gs[g] / gc[g], gmin[g], gmax[g]);
            }
    }
    free(gs); free(gmin); free(gmax); free(gc); free(lam);
    return rc;
}

int cmd_spectrum(int argc, char **argv)
{
    const char *kernel = NULL, *spec = NULL, *fit = NULL, *out = NULL, *vectors = NULL, *plot = NULL, *get = "ntk";
    long top = 0, d = 0, kmax = -1, nquad = 0, patches = 0;
    int sphere = 0, rc;
    nk_arch_opts ao;
    nk_arch_opts_default(&ao);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(spectrum_help, stdout); return 0; }
        if (!strcmp(a, "--sphere")) { sphere = 1; continue; }
        if ((rc = cli_arch_option(argc, argv, &i, &ao)) >= 0) { if (rc) return rc; continue; }
        if (!v) return cli_usage_error("%s: unknown option or missing value (see nkern spectrum --help)", a);
        i++;
        if (!strcmp(a, "--kernel")) kernel = v;
        else if (!strcmp(a, "--arch")) spec = v;
        else if (!strcmp(a, "--fit")) fit = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--vectors")) vectors = v;
        else if (!strcmp(a, "--plot")) plot = v;
        else if (!strcmp(a, "--get")) get = v;
        else if (!strcmp(a, "--top")) { if (cli_parse_int(a, v, 0, 1L << 40, &top)) return 2; }
        else if (!strcmp(a, "--dim")) { if (cli_parse_int(a, v, 2, 100000, &d)) return 2; }
        else if (!strcmp(a, "--kmax")) { if (cli_parse_int(a, v, 0, 100000, &kmax)) return 2; }
        else if (!strcmp(a, "--patches")) { if (cli_parse_int(a, v, 1, 12, &patches)) return 2; }
        else if (!strcmp(a, "--nquad")) { if (cli_parse_int(a, v, 1, 10000000, &nquad)) return 2; }
        else return cli_usage_error("%s: unknown option (see nkern spectrum --help)", a);
    }
    if (cli_plot_check(plot) || (out && cli_check_out_dir("--out", out)) || (vectors && cli_check_out_dir("--vectors", vectors)))
        return 2;
    if (patches) {
        if (kernel || sphere) return cli_usage_error("spectrum: --patches excludes --kernel and --sphere");
        if (!spec) return cli_usage_error("spectrum --patches: missing --arch SPEC (e.g. 'conv(1) relu conv(2,stride=2,pad=valid) relu flatten dense')");
        if (!d) return cli_usage_error("spectrum --patches: missing --dim D (each patch lies on S^(D-1))");
        int g = !strcmp(get, "ntk") ? NK_GET_NTK : !strcmp(get, "nngp") ? NK_GET_NNGP : 0;
        if (!g) return cli_usage_error("--get: '%s' (use ntk or nngp)", get);
        return spectrum_patches(spec, &ao, g, patches, d, kmax < 0 ? 4 : kmax, nquad, out);
    }
    if (kmax < 0) kmax = 50;
    if (sphere) {
        if (kernel) return cli_usage_error("spectrum: --sphere and --kernel exclude each other");
        if (!spec) return cli_usage_error("spectrum --sphere: missing --arch SPEC (an MLP, e.g. 'dense relu dense')");
        if (!d) return cli_usage_error("spectrum --sphere: missing --dim D (the sphere is S^(D-1) in R^D)");
        int g = !strcmp(get, "ntk") ? NK_GET_NTK : !strcmp(get, "nngp") ? NK_GET_NNGP : 0;
        if (!g) return cli_usage_error("--get: '%s' (use ntk or nngp)", get);
        return spectrum_sphere(spec, &ao, g, d, kmax, nquad, fit, out, plot);
    }
    if (!kernel) return cli_usage_error("spectrum: missing --kernel K.npy (or --sphere --arch SPEC --dim D)");
    return spectrum_kernel(kernel, fit, top, out, vectors, plot);
}
