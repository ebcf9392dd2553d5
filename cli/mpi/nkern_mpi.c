/* nkern_mpi.c -- `mpirun -n R nkern-mpi kernel ...`: the kernel command of nkern over MPI ranks
 * (built by `make mpi`).  Options, data reading and output names are nkern kernel's (cli/);
 * the run is always journaled, so the same command resumes an interrupted job. */
#include "cli.h"
#include "nk_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *help =
    "usage: mpirun -n R nkern-mpi kernel --arch SPEC --x1 A.npy [--x2 B.npy] [--get nngp|ntk|both]\n"
    "                    --out K.npy [--tile N] [--n1 N] [--n2 N] [--threads N] [--precision f64|f32]\n"
    "                    [--f32] [--quiet|--progress] [--w-std W] [--b-std B] [--param ntk|standard]\n"
    "                    [--width N] [--quad N]\n"
    "As `nkern kernel --journal`: tiles of N x N entries (default 256) handed out dynamically to\n"
    "the ranks, each computed with --threads threads per rank and written straight into OUT.part\n"
    "with MPI-IO; OUT.journal records finished tiles with their crc32.  After an interruption\n"
    "(kill -9 of a rank or of the job) the same command computes only the missing tiles, with\n"
    "any number of ranks.  The output is byte-identical to `nkern kernel`.  See docs/cluster.md.\n";

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

typedef struct {
    double start;
    size_t last_done;
    double last;
} job_progress;

/* rank 0: "kernel: tiles 12/40 (3 resumed), 1.2 tiles/s, 23 s left" */
static void show_progress(void *ctx, size_t done, size_t total, size_t resumed)
{
    job_progress *pr = ctx;
    double now = seconds();
    if (now - pr->last < 1.0 && done < total) return;
    pr->last = now;
    double rate = (double)(done - resumed) / (now - pr->start + 1e-9);
    fprintf(stderr, "\rkernel: tiles %zu/%zu (%zu resumed), %.3g tiles/s, %.0f s left   ", done, total, resumed, rate,
            rate > 0 ? (double)(total - done) / rate : 0.0);
    if (done == total) fputc('\n', stderr);
}

static int cmd_kernel_mpi(int argc, char **argv, int rank)
{
    const char *spec = NULL, *x1p = NULL, *x2p = NULL, *out = NULL, *get = "nngp";
    long threads = 0, n1 = 0, n2 = 0, tile = 256;
    int f32 = 0, prec32 = 0, quiet = 0, force = 0, rc;
    nk_arch_opts ao;
    nk_arch_opts_default(&ao);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { if (!rank) fputs(help, stdout); return 0; }
        if ((rc = cli_arch_option(argc, argv, &i, &ao)) >= 0) { if (rc) return rc; continue; }
        if (!strcmp(a, "--f32")) { f32 = 1; continue; }
        if (!strcmp(a, "--quiet")) { quiet = 1; continue; }
        if (!strcmp(a, "--progress")) { force = 1; continue; }
        if (!v) return cli_usage_error("%s: unknown option or missing value (see nkern-mpi kernel --help)", a);
        i++;
        if (!strcmp(a, "--arch")) spec = v;
        else if (!strcmp(a, "--x1")) x1p = v;
        else if (!strcmp(a, "--x2")) x2p = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--get")) get = v;
        else if (!strcmp(a, "--precision")) { if (cli_parse_precision(a, v, &prec32)) return 2; }
        else if (!strcmp(a, "--threads")) { if (cli_parse_int(a, v, 1, 4096, &threads)) return 2; }
        else if (!strcmp(a, "--tile")) { if (cli_parse_int(a, v, 8, 1L << 20, &tile)) return 2; }
        else if (!strcmp(a, "--n1")) { if (cli_parse_int(a, v, 1, 1L << 40, &n1)) return 2; }
        else if (!strcmp(a, "--n2")) { if (cli_parse_int(a, v, 1, 1L << 40, &n2)) return 2; }
        else return cli_usage_error("%s: unknown option (see nkern-mpi kernel --help)", a);
    }
    if (!spec) return cli_usage_error("kernel: missing --arch SPEC (e.g. --arch '[conv(3) relu]*5 gap dense')");
    if (!x1p) return cli_usage_error("kernel: missing --x1 DATA.npy");
    if (!out) return cli_usage_error("kernel: missing --out K.npy");
    int getv = !strcmp(get, "nngp") ? NK_GET_NNGP : !strcmp(get, "ntk") ? NK_GET_NTK : !strcmp(get, "both") ? NK_GET_BOTH : 0;
    if (!getv) return cli_usage_error("--get: '%s' (use nngp, ntk or both)", get);
    char paths[2][4096], jpath[4200];
    if (cli_output_paths(out, getv, paths, jpath, sizeof jpath)) return 2;

    nk_error err = {{0}};
    nk_arch *arch = NULL;
    nk_plan *plan = NULL;
    nk_array x1 = {0}, x2 = {0};
    nk_status st = nk_arch_parse(spec, &ao, &arch, &err);
    if (st != NK_OK) return cli_fail(st, &err);
    rc = cli_read_data(x1p, (size_t)n1, &x1);
    if (!rc && x2p) rc = cli_read_data(x2p, (size_t)n2, &x2);
    if (!rc && x1.ndim < 2) rc = cli_usage_error("%s: shape has one axis; expected (N,D), (N,L,C) or (N,H,W,C)", x1p);
    if (!rc) {
        st = nk_plan_create(arch, x1.ndim - 1, x1.shape + 1, &plan, &err);
        if (st != NK_OK) rc = cli_fail(st, &err);
    }
    if (!rc) {
        nk_kernel_opts ko;
        nk_kernel_opts_default(&ko);
        ko.nthreads = (int)threads;
        ko.get = getv;
        ko.f32 = prec32;
        const char *outs[2] = {paths[0], paths[1]};
        job_progress pr = {seconds(), 0, 0};
        int show = rank == 0 && cli_progress_default(quiet, force);
        nk_journal_stats js;
        double t0 = seconds();
        char runspec[8192];
        cli_run_spec(runspec, sizeof runspec, spec, &ao);
        st = nk_mpi_kernel(MPI_COMM_WORLD, plan, runspec, &x1, x2p ? &x2 : NULL, &ko, (size_t)tile, outs, f32, jpath,
                           show ? show_progress : NULL, &pr, &js, &err);
        double dt = seconds() - t0;
        if (st != NK_OK) rc = rank == 0 ? cli_fail(st, &err) : (st == NK_ERR_INPUT ? 2 : 1);
        else {
            unsigned long long mine = js.computed, most = 0;
            MPI_Reduce(&mine, &most, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, 0, MPI_COMM_WORLD);
            int ranks;
            MPI_Comm_size(MPI_COMM_WORLD, &ranks);
            if (rank == 0 && !quiet) {
                size_t a = x1.shape[0], b = x2p ? x2.shape[0] : a;
                double entries = x2p ? (double)a * b : (double)a * (a + 1) / 2;
                fprintf(stderr, "kernel: %zu x %zu in %.3f s on %d ranks x %d threads, %zu tiles (%zu resumed), %.4g ms per entry per rank\n",
                        a, b, dt, ranks, nk_num_threads((int)threads), js.tiles, js.resumed, 1e3 * dt * ranks / entries);
            }
        }
    }
    nk_array_free(&x1);
    nk_array_free(&x2);
    nk_plan_free(plan);
    nk_arch_free(arch);
    return rc;
}

int main(int argc, char **argv)
{
    int provided, rank;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int rc;
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        if (!rank) fputs(help, argc < 2 ? stderr : stdout);
        rc = argc < 2 ? 2 : 0;
    } else if (!strcmp(argv[1], "kernel")) {
        rc = cmd_kernel_mpi(argc - 1, argv + 1, rank);
    } else {
        rc = rank ? 2 : cli_usage_error("unknown command '%s' (nkern-mpi runs: kernel)", argv[1]);
    }
    /* every rank reached here with its status: the job's is the worst */
    int worst;
    MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return worst;
}
