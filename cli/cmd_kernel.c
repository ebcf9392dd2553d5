/* cmd_kernel.c -- `nkern kernel` and `nkern arch`. */
#include "cli.h"
#include "nk_dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_arch_option(int argc, char **argv, int *i, nk_arch_opts *o)
{
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (strcmp(a, "--w-std") && strcmp(a, "--b-std") && strcmp(a, "--param") && strcmp(a, "--width") && strcmp(a, "--quad"))
        return -1;
    if (!v) return cli_usage_error("%s needs a value", a);
    (*i)++;
    if (!strcmp(a, "--param")) {
        if (!strcmp(v, "ntk")) o->param = NK_PARAM_NTK;
        else if (!strcmp(v, "standard")) o->param = NK_PARAM_STANDARD;
        else return cli_usage_error("--param: '%s' (use ntk or standard)", v);
        return 0;
    }
    if (!strcmp(a, "--quad")) {
        long q;
        if (cli_parse_int(a, v, 1, 512, &q)) return 2;
        o->quad_order = (int)q;
        return 0;
    }
    double d;
    if (cli_parse_double(a, v, &d)) return 2;
    if (d < 0 || (!strcmp(a, "--width") && d <= 0)) return cli_usage_error("%s must be %s", a, strcmp(a, "--width") ? ">= 0" : "> 0");
    if (!strcmp(a, "--w-std")) o->w_std = d;
    else if (!strcmp(a, "--b-std")) o->b_std = d;
    else o->width = d;
    return 0;
}

static const char *kernel_help =
    "usage: nkern kernel --arch SPEC --x1 A.npy [--x2 B.npy] [--get nngp|ntk|both] --out K.npy\n"
    "                    [--n1 N] [--n2 N] [--threads N] [--precision f64|f32] [--f32]\n"
    "                    [--quiet|--progress] [--checkpoint DIR] [--journal [--tile N]]\n"
    "                    [--w-std W] [--b-std B] [--param ntk|standard] [--width N] [--quad N]\n"
    "Data: .npy (float32/float64/uint8, C order) or IDX (*-ubyte[.gz]); shape (N,D), (N,L,C) or\n"
    "(N,H,W,C).  Without --x2 the symmetric Gram of x1 is computed (i <= j only).  With --get both,\n"
    "--out is a prefix: PREFIX.nngp.npy and PREFIX.ntk.npy (a trailing .npy is dropped).\n"
    "--n1/--n2 keep the first N samples.  Values are used as stored (no scaling).\n"
    "--precision f64|f32: arithmetic of the leading stack of stride-1 convs and activations:\n"
    "float64 (default) or float32 (faster; ~1e-6 relative error, within 1e-5 in the tests).  The\n"
    "sums and every later layer stay float64; architectures without such a stack are unaffected.\n"
    "--f32: write the output .npy files as float32.  Only the file format: the kernels are\n"
    "computed as --precision says either way.\n"
    "--checkpoint DIR: compute in strips of rows saved to DIR as they finish; after an\n"
    "interruption, the same command computes only the missing strips (DIR is removed at the end).\n"
    "--journal: compute in tiles of N x N entries (--tile, default 256) written straight into\n"
    "OUT.part, with a journal OUT.journal of finished tiles and their crc32; after an\n"
    "interruption (even kill -9), the same command computes only the missing tiles, and the\n"
    "final file is byte-identical to an uninterrupted run (also one of nkern-mpi, see\n"
    "docs/cluster.md).  A journal of another spec, data, precision or tile size is refused.\n";


int cli_output_paths(const char *out, int get, char paths[2][4096], char *journal, size_t cap)
{
    char prefix[4096];
    size_t n = strlen(out);
    if (n + 16 > sizeof prefix) return cli_usage_error("--out: path too long");
    memcpy(prefix, out, n + 1);
    if (get == NK_GET_BOTH) {
        if (n > 4 && !strcmp(prefix + n - 4, ".npy")) prefix[n - 4] = 0;
        snprintf(paths[0], 4096, "%.4000s.nngp.npy", prefix);
        snprintf(paths[1], 4096, "%.4000s.ntk.npy", prefix);
        snprintf(journal, cap, "%s.journal", prefix);
    } else {
        snprintf(paths[get == NK_GET_NTK], 4096, "%s", out);
        paths[get != NK_GET_NTK][0] = 0;
        snprintf(journal, cap, "%s.journal", out);
    }
    return 0;
}

void cli_run_spec(char *buf, size_t cap, const char *spec, const nk_arch_opts *o)
{
    snprintf(buf, cap, "%s [w=%.17g b=%.17g param=%s width=%.17g quad=%d]", spec, o->w_std, o->b_std,
             o->param == NK_PARAM_NTK ? "ntk" : "standard", o->width, o->quad_order);
}

int cli_kernel_journaled(const nk_plan *plan, const char *spec, const nk_array *x1, const nk_array *x2,
                         const nk_kernel_opts *ko, size_t tile, const char *out, int out_f32, int quiet)
{
    char paths[2][4096], jpath[4200];
    if (cli_output_paths(out, ko->get, paths, jpath, sizeof jpath)) return 2;
    const char *outs[2] = {paths[0], paths[1]};
    nk_journal_stats js;
    nk_error err = {{0}};
    nk_status st = nk_kernel_journaled(plan, spec, x1, x2, ko, tile, outs, out_f32, jpath, &js, &err);
    if (st == NK_OK) nk_journal_remove(jpath); /* the outputs are complete: the journal has served */
    if (!quiet && (js.resumed || js.rejected))
        fprintf(stderr, "journal: %zu of %zu tiles resumed, %zu computed%s\n", js.resumed, js.tiles, js.computed,
                js.rejected ? " (some recorded tiles did not match their crc and were computed again)" : "");
    return st == NK_OK ? 0 : cli_fail(st, &err);
}

int cmd_kernel(int argc, char **argv)
{
    const char *ckpt = NULL;
    long tile = 256;
    int prec32 = 0, journal = 0, rc;
    cli_kernel_inputs in;
    cli_kernel_inputs_default(&in);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(kernel_help, stdout); return 0; }
        if ((rc = cli_kernel_input_option(argc, argv, &i, &in)) >= 0) { if (rc) return rc; continue; }
        if (!strcmp(a, "--journal")) { journal = 1; continue; }
        if (!v) return cli_usage_error("%s: unknown option or missing value (see nkern kernel --help)", a);
        i++;
        if (!strcmp(a, "--checkpoint")) ckpt = v;
        else if (!strcmp(a, "--precision")) { if (cli_parse_precision(a, v, &prec32)) return 2; }
        else if (!strcmp(a, "--tile")) { if (cli_parse_int(a, v, 8, 1L << 20, &tile)) return 2; }
        else return cli_usage_error("%s: unknown option (see nkern kernel --help)", a);
    }
    if (cli_kernel_inputs_check(&in, "kernel", "[conv(3) relu]*5 gap dense", "")) return 2;
    const char *spec = in.arch, *x2p = in.x2, *out = in.out;
    long threads = in.threads, n2 = in.n2;
    int f32 = in.f32, quiet = in.quiet, force = in.force, getv = in.getv;
    if (n2 && !x2p) return cli_usage_error("--n2 %ld: given without --x2 (the Gram of --x1 takes --n1 only)", n2);
    if (cli_check_out_dir("--out", out)) return 2; /* before the run, not after it */

    nk_error err = {{0}};
    nk_arch *arch = NULL;
    nk_plan *plan = NULL;
    nk_array x1 = {0}, x2 = {0}, K = {0}, T = {0};
    nk_status st = NK_OK;
    if ((rc = cli_kernel_inputs_load(&in, &arch, &plan, &x1, &x2)) && !arch) return rc;
    if (!rc && !quiet)
        cli_warn_long_run("kernel", plan, x1.shape[0], x2p ? x2.shape[0] : 0, (int)threads, cli_mean_square(&x1), prec32, 0);
    if (!rc) {
        cli_progress pr;
        cli_progress_init(&pr, "kernel", cli_progress_default(quiet, force));
        nk_kernel_opts ko;
        nk_kernel_opts_default(&ko);
        ko.nthreads = (int)threads;
        ko.get = getv;
        ko.f32 = prec32;
        ko.progress = cli_progress_cb;
        ko.progress_ctx = &pr;
        double t0 = cli_seconds();
        if (journal && ckpt) {
            rc = cli_usage_error("kernel: --journal and --checkpoint are two ways of resuming (use one)");
        } else if (journal) {
            char runspec[8192];
            cli_run_spec(runspec, sizeof runspec, spec, &in.ao);
            rc = cli_kernel_journaled(plan, runspec, &x1, x2p ? &x2 : NULL, &ko, (size_t)tile, out, f32, quiet);
            if (!rc) journal = 2; /* the outputs are in place */
        } else if (ckpt) {
            rc = cli_kernel_checkpointed(plan, spec, &x1, x2p ? &x2 : NULL, &ko, ckpt, &K, &T, quiet);
        } else {
            st = nk_kernel_matrix(plan, &x1, x2p ? &x2 : NULL, &ko, &K, &T, &err);
            if (st != NK_OK) rc = cli_fail(st, &err);
        }
        double dt = cli_seconds() - t0;
        if (!rc && !quiet) {
            size_t a = x1.shape[0], b = x2p ? x2.shape[0] : a;
            double entries = x2p ? (double)a * b : (double)a * (a + 1) / 2;
            fprintf(stderr, "kernel: %zu x %zu in %.3f s, %.4g ms per entry, %d threads\n", a, b, dt,
                    1e3 * dt / entries, nk_num_threads((int)threads));
        }
    }
    if (!rc && journal != 2) {
        if (getv == NK_GET_BOTH) {
            size_t n = strlen(out);
            char *prefix = malloc(n + 16), *path = malloc(n + 32);
            if (!prefix || !path) rc = cli_usage_error("out of memory");
            else {
                memcpy(prefix, out, n + 1);
                if (n > 4 && !strcmp(prefix + n - 4, ".npy")) prefix[n - 4] = 0;
                /* both temporaries first, then both renames: the pair appears together */
                snprintf(path, n + 32, "%s.nngp.npy", prefix);
                rc = cli_txn_write_npy(path, &K, f32);
                snprintf(path, n + 32, "%s.ntk.npy", prefix);
                if (!rc) rc = cli_txn_write_npy(path, &T, f32);
            }
            free(prefix);
            free(path);
        } else {
            rc = cli_txn_write_npy(out, getv == NK_GET_NNGP ? &K : &T, f32);
        }
        if (!rc) rc = cli_txn_commit();
    }
    if (!rc && ckpt) cli_checkpoint_remove(ckpt); /* the output is written: the strips are no longer needed */
    nk_array_free(&x1); nk_array_free(&x2); nk_array_free(&K); nk_array_free(&T);
    nk_plan_free(plan);
    nk_arch_free(arch);
    return rc;
}

static int parse_shape(const char *s, size_t *shape, int *ndim)
{
    *ndim = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v <= 0 || *ndim == 3) return cli_usage_error("--input: '%s' (use D, LxC or HxWxC, e.g. 28x28x1)", s);
        shape[(*ndim)++] = (size_t)v;
        p = end;
        if (*p == 'x') p++;
        else if (*p) return cli_usage_error("--input: '%s' (use D, LxC or HxWxC, e.g. 28x28x1)", s);
    }
    return *ndim ? 0 : cli_usage_error("--input: empty shape");
}

int cmd_arch(int argc, char **argv)
{
    const char *spec = NULL, *input = NULL;
    long n1 = 0, n2 = 0, threads = 0, ranks = 1, shift = 0;
    double input_ms = 1;
    int prec32 = 0;
    int rc;
    nk_arch_opts ao;
    nk_arch_opts_default(&ao);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            puts("usage: nkern arch SPEC --input 28x28x1 [--n N] [--n2 N] [--threads N] [--ranks R] [--input-ms M]\n"
                 "                  [--precision f64|f32] [--shift S] [--w-std W] [--b-std B] [--param ntk|standard]\n"
                 "With --n: the estimated time of the N x N2 matrix (N2 = 0: the Gram) on R processes (MPI ranks) of\n"
                 "N threads each: one core's total / (R x threads), from per-op costs calibrated on the reference\n"
                 "machine (make calibrate), quadrature orders from inputs of mean square M (default 1; raw 0..255\n"
                 "pixels: ~1e4).  --shift S: each entry over the translations by 0..S pixels (classify\n"
                 "--augment shift:S).");
            return 0;
        }
        if ((rc = cli_arch_option(argc, argv, &i, &ao)) >= 0) { if (rc) return rc; continue; }
        if (a[0] != '-' && !spec) { spec = a; continue; }
        if (!v) return cli_usage_error("%s: unknown option or missing value (see nkern arch --help)", a);
        i++;
        if (!strcmp(a, "--input")) input = v;
        else if (!strcmp(a, "--arch")) spec = v;
        else if (!strcmp(a, "--n")) { if (cli_parse_int(a, v, 0, 1L << 40, &n1)) return 2; }
        else if (!strcmp(a, "--n2")) { if (cli_parse_int(a, v, 0, 1L << 40, &n2)) return 2; }
        else if (!strcmp(a, "--threads")) { if (cli_parse_int(a, v, 1, 4096, &threads)) return 2; }
        else if (!strcmp(a, "--ranks")) { if (cli_parse_int(a, v, 1, 1L << 20, &ranks)) return 2; }
        else if (!strcmp(a, "--input-ms")) {
            if (cli_parse_double(a, v, &input_ms)) return 2;
            if (input_ms <= 0) return cli_usage_error("--input-ms: %g (the inputs' mean square: use > 0)", input_ms);
        }
        else if (!strcmp(a, "--precision")) { if (cli_parse_precision(a, v, &prec32)) return 2; }
        else if (!strcmp(a, "--shift")) { if (cli_parse_int(a, v, 0, 8, &shift)) return 2; }
        else return cli_usage_error("%s: unknown option (see nkern arch --help)", a);
    }
    if (!spec) return cli_usage_error("arch: missing SPEC (e.g. nkern arch '[conv(3) relu]*5 gap dense' --input 28x28x1)");
    if (!input) return cli_usage_error("arch: missing --input SHAPE of one sample (D, LxC or HxWxC)");
    size_t shape[3];
    int ndim;
    if (parse_shape(input, shape, &ndim)) return 2;
    nk_error err = {{0}};
    nk_arch *arch = NULL;
    nk_plan *plan = NULL;
    nk_status st = nk_arch_parse(spec, &ao, &arch, &err);
    if (st == NK_OK) st = nk_plan_create(arch, ndim, shape, &plan, &err);
    if (st == NK_OK) {
        size_t cap = 1 << 20;
        char *buf = malloc(cap);
        if (!buf) st = nk_fail(&err, NK_ERR_NOMEM, "out of memory");
        else {
            nk_plan_describe_prec(plan, (size_t)n1, (size_t)n2, (int)threads, prec32, buf, cap);
            fputs(buf, stdout);
            free(buf);
            /* the time model: one core's seconds shared by ranks x threads */
            int nt = nk_num_threads((int)threads);
            /* a cross entry without its samples' self passes: T(n, n) = n^2 pair + 2n self */
            double pair = (nk_plan_core_seconds(plan, 2, 2, input_ms, prec32, (int)shift) - 2 * nk_plan_core_seconds(plan, 1, 1, input_ms, prec32, (int)shift)) / 2;
            char d[64];
            cli_format_duration(pair, d, sizeof d);
            printf("estimated time per kernel entry: %s on one core (%s, inputs of mean square %g%s)\n", d,
                   prec32 ? "float32" : "float64", input_ms, shift ? ", with its translations" : "");
            if (n1) {
                double core = nk_plan_core_seconds(plan, (size_t)n1, (size_t)n2, input_ms, prec32, (int)shift);
                cli_format_duration(core / ((double)ranks * nt), d, sizeof d);
                printf("estimated wall time for %ld x %ld: %s on %ld rank%s x %d threads (%.3g core-hours; calibrated per-op "
                       "costs, +-2x)\n", n1, n2 ? n2 : n1, d, ranks, ranks > 1 ? "s" : "", nt, core / 3600);
            }
        }
    }
    nk_plan_free(plan);
    nk_arch_free(arch);
    return st == NK_OK ? 0 : cli_fail(st, &err);
}
