/* cmd_mc.c -- `nkern mc`: Monte Carlo NNGP / NTK of finite random networks (nk_mc.h). */
#include "cli.h"
#include "nk_mc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *mc_help =
    "usage: nkern mc --arch SPEC --x1 A.npy [--x2 B.npy] [--samples S[,S2,...]] [--width N] [--outputs K]\n"
    "                [--seed N] [--get nngp|ntk|both] [--out K.npy] [--se] [--compare]\n"
    "                [--n1 N] [--n2 N] [--threads N] [--quiet|--progress] [--f32]\n"
    "                [--w-std W] [--b-std B] [--param ntk|standard] [--quad N]\n"
    "Draws S finite networks of the architecture (neural-tangents' init and apply: NTK or standard\n"
    "parameterization) and averages their empirical kernels over the networks:\n"
    "  NNGP  (1/K) sum_j f_j(x) f_j(x')                      (outputs of one network)\n"
    "  NTK   (1/K) sum_j sum_theta df_j(x)/dtheta df_j(x')/dtheta  (by a backward pass)\n"
    "as neural-tangents' monte_carlo_kernel_fn does (trace over the K outputs, divided by K).\n"
    "--width N: channels of every dense/conv layer that does not set its own (default 256; a\n"
    "layer's dense(N) or conv(3,width=N), or a global width=N in the spec, take precedence).\n"
    "--outputs K: units of the readout, when the last layer is dense (default 1; its width in the\n"
    "spec is not used).  A network not ending in dense has every value of its last layer as output.\n"
    "--samples S: networks (default 100); --seed N: network i of seed N is the same in every run,\n"
    "whatever --threads is.  --se: also write the standard errors of the means (OUT.se.npy).\n"
    "--samples 16,64,256: estimates from the first 16, 64 and 256 of the same networks (as\n"
    "neural-tangents' n_samples list); the earlier ones are written as OUT.s16.npy, ... .\n"
    "--compare: also compute the exact infinite-width kernel and print, per kernel, the relative\n"
    "error ||mc - exact||_F / ||exact||_F, the predicted one ||se||_F / ||exact||_F, and the mean\n"
    "of ((mc - exact) / se)^2 (about 1 when only the Monte Carlo error remains).\n"
    "With --get both, --out is a prefix: PREFIX.nngp.npy and PREFIX.ntk.npy.\n";

/* PREFIX + suffix, where PREFIX is out without a trailing .npy */
static char *out_path(const char *out, const char *suffix)
{
    size_t n = strlen(out), m = strlen(suffix);
    char *p = malloc(n + m + 1);
    if (!p) return NULL;
    memcpy(p, out, n + 1);
    if (n > 4 && !strcmp(p + n - 4, ".npy")) p[n - 4] = 0;
    strcat(p, suffix);
    return p;
}

static void compare(const char *name, long networks, const nk_array *mc, const nk_array *se, const nk_array *exact)
{
    double d2 = 0, e2 = 0, s2 = 0, z2 = 0, zmax = 0;
    size_t nz = 0, n = nk_array_size(mc);
    for (size_t i = 0; i < n; i++) {
        double d = mc->data[i] - exact->data[i];
        d2 += d * d;
        e2 += exact->data[i] * exact->data[i];
        s2 += se->data[i] * se->data[i];
        if (se->data[i] > 0) {
            double z = d / se->data[i];
            z2 += z * z;
            nz++;
            if (fabs(z) > zmax) zmax = fabs(z);
        }
    }
    printf("%s: rel_err %.4e  predicted %.4e  mean_z2 %.3f  max_z %.2f  networks %ld\n", name, sqrt(d2 / e2), sqrt(s2 / e2),
           nz ? z2 / nz : NAN, zmax, networks);
}

/* What to do with the estimates after some networks: compare with the exact kernels, write files. */
typedef struct {
    const char *out;
    int get, f32, want_se, final;
    const nk_array *Ke, *Te;    /* exact kernels (--compare), else NULL */
} emit_ctx;

static int emit(void *ctx, long networks, const nk_array *K, const nk_array *Kse, const nk_array *T, const nk_array *Tse)
{
    const emit_ctx *c = ctx;
    if (c->Ke && K) compare("nngp", networks, K, Kse, c->Ke);
    if (c->Te && T) compare("ntk", networks, T, Tse, c->Te);
    fflush(stdout);
    if (!c->out) return 0;
    static const char *names[2] = {"nngp", "ntk"};
    const nk_array *means[2] = {K, T}, *ses[2] = {Kse, Tse};
    char snap[32] = "";
    if (!c->final) snprintf(snap, sizeof snap, ".s%ld", networks);
    int rc = 0;
    for (int g = 0; !rc && g < 2; g++) {
        if (!(c->get & (1 << g))) continue;
        char suffix[64];
        snprintf(suffix, sizeof suffix, c->get == NK_GET_BOTH ? "%s.%s.npy" : "%s.npy", snap, names[g]);
        char *path = c->get == NK_GET_BOTH || !c->final ? out_path(c->out, suffix) : strdup(c->out);
        snprintf(suffix, sizeof suffix, c->get == NK_GET_BOTH ? "%s.%s.se.npy" : "%s.se.npy", snap, names[g]);
        char *sepath = out_path(c->out, suffix);
        if (!path || !sepath) rc = cli_usage_error("out of memory");
        if (!rc) rc = cli_txn_write_npy(path, means[g], c->f32);
        if (!rc && c->want_se) rc = cli_txn_write_npy(sepath, ses[g], c->f32);
        free(path);
        free(sepath);
    }
    /* the files of one estimate appear together, or none of them */
    if (rc) cli_txn_abort();
    else rc = cli_txn_commit();
    return rc;
}

int cmd_mc(int argc, char **argv)
{
    long samples = 100, outputs = 1, seed = 0, counts[64];
    int ncounts = 0;
    int want_se = 0, want_cmp = 0, rc;
    cli_kernel_inputs in;
    cli_kernel_inputs_default(&in);
    in.ao.width = 256;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(mc_help, stdout); return 0; }
        if ((rc = cli_kernel_input_option(argc, argv, &i, &in)) >= 0) { if (rc) return rc; continue; }
        if (!strcmp(a, "--se")) { want_se = 1; continue; }
        if (!strcmp(a, "--compare")) { want_cmp = 1; continue; }
        if (!v) return cli_usage_error("%s: unknown option or missing value (see nkern mc --help)", a);
        i++;
        if (!strcmp(a, "--samples")) {
            if (cli_parse_int_list(a, v, counts, 64, &ncounts)) return 2;
            for (int k = 1; k < ncounts; k++)
                if (counts[k] <= counts[k - 1]) return cli_usage_error("--samples: '%s' (the counts must increase)", v);
            samples = counts[ncounts - 1];
        }
        else if (!strcmp(a, "--outputs")) { if (cli_parse_int(a, v, 1, 1L << 20, &outputs)) return 2; }
        else if (!strcmp(a, "--seed")) { if (cli_parse_int(a, v, 0, 0x7fffffffffffffffL, &seed)) return 2; }
        else return cli_usage_error("%s: unknown option (see nkern mc --help)", a);
    }
    if (cli_kernel_inputs_check(&in, "mc", "[dense relu]*2 dense",
                                want_cmp ? NULL : " (or --compare to only compare with the exact kernel)"))
        return 2;
    const char *x2p = in.x2, *out = in.out;
    long threads = in.threads;
    int f32 = in.f32, quiet = in.quiet, force = in.force, getv = in.getv;
    if (want_cmp && samples < 2) return cli_usage_error("--compare needs --samples >= 2 (the standard error needs a spread)");

    nk_error err = {{0}};
    nk_arch *arch = NULL;
    nk_plan *plan = NULL;
    nk_array x1 = {0}, x2 = {0}, K = {0}, T = {0}, Kse = {0}, Tse = {0}, Ke = {0}, Te = {0};
    nk_status st = NK_OK;
    if ((rc = cli_kernel_inputs_load(&in, &arch, &plan, &x1, &x2)) && !arch) return rc;
    if (!rc && want_cmp) {
        nk_kernel_opts ko;
        nk_kernel_opts_default(&ko);
        ko.nthreads = (int)threads;
        ko.get = getv;
        st = nk_kernel_matrix(plan, &x1, x2p ? &x2 : NULL, &ko, &Ke, &Te, &err);
        if (st != NK_OK) rc = cli_fail(st, &err);
    }
    emit_ctx ec = {out, getv, f32, want_se, 0, want_cmp && (getv & NK_GET_NNGP) ? &Ke : NULL,
                   want_cmp && (getv & NK_GET_NTK) ? &Te : NULL};
    if (!rc) {
        cli_progress pr;
        cli_progress_init(&pr, "mc", cli_progress_default(quiet, force));
        pr.unit = "networks";
        nk_mc_opts o;
        nk_mc_opts_default(&o);
        o.samples = samples;
        o.seed = (uint64_t)seed;
        o.outputs = (int)outputs;
        o.get = getv;
        o.nthreads = (int)threads;
        o.progress = cli_progress_cb;
        o.progress_ctx = &pr;
        o.snapshots = counts;
        o.nsnapshots = ncounts > 1 ? ncounts - 1 : 0;
        o.snapshot = emit;
        o.snapshot_ctx = &ec;
        int need_se = want_se || want_cmp;
        double t0 = cli_seconds();
        st = nk_mc_kernel(plan, &x1, x2p ? &x2 : NULL, &o, &K, &T, need_se ? &Kse : NULL, need_se ? &Tse : NULL, &err);
        if (st != NK_OK) rc = cli_fail(st, &err);
        double dt = cli_seconds() - t0;
        if (!rc && !quiet)
            fprintf(stderr, "mc: %ld networks on %zu x %zu samples in %.3f s (%.4g s per network)\n", samples,
                    x1.shape[0], x2p ? x2.shape[0] : x1.shape[0], dt, dt / samples);
    }
    if (!rc) {
        ec.final = 1;
        rc = emit(&ec, samples, &K, &Kse, &T, &Tse);
    }
    nk_array_free(&x1); nk_array_free(&x2); nk_array_free(&K); nk_array_free(&T);
    nk_array_free(&Kse); nk_array_free(&Tse); nk_array_free(&Ke); nk_array_free(&Te);
    nk_plan_free(plan);
    nk_arch_free(arch);
    return rc;
}
