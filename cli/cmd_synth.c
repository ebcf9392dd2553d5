/* cmd_synth.c -- `nkern synth`: samples on products of spheres with Gegenbauer product targets. */
#include "cli.h"
#include "nk_synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *synth_help =
    "usage: nkern synth --patches M --dim N0 --n N --target T [--noise V] [--seed S]\n"
    "                   [--sample-seed S2] [--flat] --x X.npy [--y Y.npy]\n"
    "\n"
    "N samples of M patches, each uniform on the sphere of radius sqrt(N0) in R^N0, so that\n"
    "nkern's input covariance <x_p, x'_p>/N0 is the cosine of the unit patches.  X.npy has shape\n"
    "(N, M, N0) (1-D input: M positions, N0 channels; a CNN with a non-overlapping\n"
    "conv(N0, stride=N0) on the raw signal is conv(1) here), or (N, M*N0) with --flat (an MLP\n"
    "on the concatenation; 'flatten dense ...' on the (N, M, N0) array gives the same kernel).\n"
    "\n"
    "--target  sum of products of Gegenbauer polynomials P_k (dimension N0, P_k(1) = 1) of\n"
    "          <u_i, z_i>, u_i the unit patch and z_i a fixed random unit direction per patch\n"
    "          (from --seed).  'P:K,P:K' is a product over patches, '+' separates terms, 'C*'\n"
    "          scales a term: '0:2,1:2' = P_2 on patch 0 times P_2 on patch 1 (order 4);\n"
    "          '0:1,3:1' a long-range order-2 term; '0:2,1:2+0.5*2:1'.\n"
    "          E[f^2] = sum over distinct degree vectors of C^2 prod_i 1/N(N0, k_i).\n"
    "--noise   variance of Gaussian noise added to Y (default 0).\n"
    "--seed    seed of the directions (default 1); --sample-seed of the samples (default: --seed).\n"
    "Prints the target's exact E[f^2] and the sample mean of f^2.\n";

int cli_synth_target(const char *target, long m, long n0, double noise, long seed, nk_synth_target *t)
{
    nk_error err = {{0}};
    memset(t, 0, sizeof *t);
    nk_status st = nk_synth_parse_target(target, (int)m, t, &err);
    if (st != NK_OK) return cli_fail(st, &err);
    t->n0 = (int)n0;
    t->noise = noise;
    t->dir_seed = (uint64_t)seed;
    return 0;
}

int cmd_synth(int argc, char **argv)
{
    const char *target = NULL, *xout = NULL, *yout = NULL;
    long m = 0, n0 = 0, n = 0, seed = 1, sample_seed = -1;
    double noise = 0;
    int flat = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(synth_help, stdout); return 0; }
        if (!strcmp(a, "--flat")) { flat = 1; continue; }
        if (!v) return cli_usage_error("%s: unknown option or missing value (see nkern synth --help)", a);
        i++;
        if (!strcmp(a, "--target")) target = v;
        else if (!strcmp(a, "--x")) xout = v;
        else if (!strcmp(a, "--y")) yout = v;
        else if (!strcmp(a, "--patches")) { if (cli_parse_int(a, v, 1, NK_SYNTH_MAX_PATCHES, &m)) return 2; }
        else if (!strcmp(a, "--dim")) { if (cli_parse_int(a, v, 2, 100000, &n0)) return 2; }
        else if (!strcmp(a, "--n")) { if (cli_parse_int(a, v, 1, 100000000, &n)) return 2; }
        else if (!strcmp(a, "--seed")) { if (cli_parse_int(a, v, 0, 1L << 62, &seed)) return 2; }
        else if (!strcmp(a, "--sample-seed")) { if (cli_parse_int(a, v, 0, 1L << 62, &sample_seed)) return 2; }
        else if (!strcmp(a, "--noise")) { if (cli_parse_double(a, v, &noise)) return 2; }
        else return cli_usage_error("%s: unknown option (see nkern synth --help)", a);
    }
    if (!m) return cli_usage_error("synth: missing --patches M");
    if (!n0) return cli_usage_error("synth: missing --dim N0 (each patch lies on S^(N0-1))");
    if (!n) return cli_usage_error("synth: missing --n N (number of samples)");
    if (!target) return cli_usage_error("synth: missing --target (e.g. '0:2,1:2')");
    if (!xout) return cli_usage_error("synth: missing --x X.npy");
    if (noise < 0) return cli_usage_error("--noise: %g (a variance: use >= 0)", noise);
    if (cli_check_out_dir("--x", xout) || (yout && cli_check_out_dir("--y", yout))) return 2;
    if (yout && cli_same_file(xout, yout))
        return cli_usage_error("--y %s: the same file as --x %s (the targets would overwrite the samples; give two names)", yout, xout);
    if ((double)n * m * n0 > 2e9) return cli_usage_error("synth: %ld x %ld x %ld values is too many (at most 2e9)", n, m, n0);

    nk_error err = {{0}};
    nk_synth_target t;
    nk_status st = NK_OK;
    int trc = cli_synth_target(target, m, n0, noise, seed, &t);
    if (trc) return trc;
    nk_array x = {0}, y = {0};
    double *f = malloc((size_t)n * sizeof *f);
    if (!f) return cli_usage_error("out of memory for %ld samples", n);
    st = nk_synth_sample(&t, (size_t)n, (uint64_t)(sample_seed < 0 ? seed : sample_seed), &x, &y, f, &err);
    if (st != NK_OK) { free(f); return cli_fail(st, &err); }
    int rc = 0;
    if (flat) { x.ndim = 2; x.shape[1] = (size_t)(m * n0); x.shape[2] = 0; }
    rc = cli_txn_write_npy(xout, &x, 0);
    if (!rc && yout) rc = cli_txn_write_npy(yout, &y, 0);
    if (!rc) rc = cli_txn_commit();
    if (!rc) {
        double s = 0, s2 = 0;
        for (long i = 0; i < n; i++) { s += f[i] * f[i]; s2 += f[i] * f[i] * f[i] * f[i]; }
        double mean = s / n, sd = n > 1 ? sqrt(fmax(s2 / n - mean * mean, 0) / (n - 1)) : NAN;
        printf("samples\t%ld\npatches\t%ld\ndim\t%ld\nx_shape\t(%ld, ", n, m, n0, n);
        if (flat) printf("%ld)\n", m * n0);
        else printf("%ld, %ld)\n", m, n0);
        printf("target_power\t%.10g\t(exact E[f^2])\nsample_power\t%.10g\t(mean f^2 over the samples, +- %.3g)\nnoise\t%.10g\n",
               nk_synth_power(&t), mean, sd, noise);
    }
    free(f);
    nk_array_free(&x);
    nk_array_free(&y);
    return rc;
}
