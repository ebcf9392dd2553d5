/* nkern_mpi.c -- `mpirun -n R nkern-mpi kernel ...`: the kernel command of nkern over MPI ranks
 * (built by `make mpi`).  Options, data reading and output names are nkern kernel's (cli/);
 * the run is always journaled, so the same command resumes an interrupted job. */
#include "cli.h"
#include "nk_infer.h"
#include "nk_mpi.h"

#include <fcntl.h>
#include <math.h>
#include <unistd.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
    "any number of ranks.  The output is byte-identical to `nkern kernel`.  See docs/cluster.md.\n"
    "       mpirun -n R nkern-mpi classify ...   (see nkern-mpi classify --help)\n"
    "       mpirun -n R nkern-mpi solve ...   (see nkern-mpi solve --help)\n";

static const char *solve_help =
    "usage: mpirun -n R nkern-mpi solve --k-train K.npy --y Y.npy --k-test K_TEST_TRAIN.npy --out PREFIX\n"
    "                    [--one-hot] [--reg R] [--reg-absolute] [--time T1,T2,inf] [--lr ETA]\n"
    "                    [--block NB] [--labels-test L.npy]\n"
    "The distributed counterpart of `nkern predict` for kernels written by nkern(-mpi) kernel: each\n"
    "rank reads only its blocks of K (ScaLAPACK's block-cyclic layout, NB x NB blocks, default 256),\n"
    "so no rank holds the N x N matrix.  Without --time: the posterior mean K* (K + reg I)^-1 Y\n"
    "(pdpotrf, pdpotrs); with --time: the gradient flow at each time from the eigendecomposition\n"
    "of K + reg I (pdsyevd), as nkern predict --time.  --reg is relative to the mean diagonal\n"
    "unless --reg-absolute (default 1e-4).  Writes PREFIX.mean.npy; --labels-test prints accuracy.\n"
    "       mpirun -n R nkern-mpi solve --arch SPEC --x-train X [--n-train N] [--get nngp|ntk] [--journal J]\n"
    "                    [--threads N] [--precision f64|f32] --y Y.npy --k-test K_TEST_TRAIN.npy ...\n"
    "The training kernel (--get, default ntk) computed straight into the block-cyclic layout instead\n"
    "of read from a file: each rank computes only its blocks, and no N x N file is written.  With\n"
    "--journal J each rank keeps its computed blocks in J.blocks.RANK and records them in J, so the\n"
    "same command after an interruption computes only the missing blocks (same rank count and\n"
    "--block; the files are removed after the solve).\n";

/* Rank 0's progress line for the job: the tiles and entries every rank has finished, through
 * cli_progress_cb ("kernel: tiles 12/40, 3145728/10485760 entries (30.0%), 2.1e+04 entries/s,
 * 5 min 49 s left"); resumed entries do not count in the rate. */
static void show_progress(void *ctx, const nk_mpi_progress *p)
{
    cli_progress *pr = ctx;
    pr->tiles_done = p->tiles_done;
    pr->tiles_total = p->tiles_total;
    pr->resumed = (size_t)p->entries_resumed;
    cli_progress_cb(pr, (size_t)p->entries_done, (size_t)p->entries_total);
}

/* After a run: every rank's tiles and seconds on rank 0 (the load balance). */
static void report_rank_loads(MPI_Comm comm, const char *what, size_t computed, double seconds, int show)
{
    int rank, ranks;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &ranks);
    unsigned long long mine = computed, *tiles = rank == 0 ? calloc((size_t)ranks, sizeof *tiles) : NULL;
    double *secs = rank == 0 ? calloc((size_t)ranks, sizeof *secs) : NULL;
    MPI_Gather(&mine, 1, MPI_UNSIGNED_LONG_LONG, tiles, 1, MPI_UNSIGNED_LONG_LONG, 0, comm);
    MPI_Gather(&seconds, 1, MPI_DOUBLE, secs, 1, MPI_DOUBLE, 0, comm);
    if (rank == 0 && show && tiles && secs) cli_print_rank_loads(what, tiles, secs, ranks);
    free(tiles);
    free(secs);
}

/* The kernel options and the journal's run spec every MPI command sets up the same way. */
static void kernel_setup(nk_kernel_opts *ko, char *runspec, size_t cap, int nthreads, int get, int f32, int shift,
                         const char *spec, const nk_arch_opts *ao)
{
    nk_kernel_opts_default(ko);
    ko->nthreads = nthreads;
    ko->get = get;
    ko->f32 = f32;
    ko->shift = shift;
    cli_run_spec(runspec, cap, spec, ao);
}

static int cmd_kernel_mpi(int argc, char **argv, int rank)
{
    long tile = 256;
    int prec32 = 0, rc;
    cli_kernel_inputs in;
    cli_kernel_inputs_default(&in);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { if (!rank) fputs(help, stdout); return 0; }
        if ((rc = cli_kernel_input_option(argc, argv, &i, &in)) >= 0) { if (rc) return rc; continue; }
        if (!v) return cli_usage_error("%s: unknown option or missing value (see nkern-mpi kernel --help)", a);
        i++;
        if (!strcmp(a, "--precision")) { if (cli_parse_precision(a, v, &prec32)) return 2; }
        else if (!strcmp(a, "--tile")) { if (cli_parse_int(a, v, 8, 1L << 20, &tile)) return 2; }
        else return cli_usage_error("%s: unknown option (see nkern-mpi kernel --help)", a);
    }
    if (cli_kernel_inputs_check(&in, "kernel", "[conv(3) relu]*5 gap dense", "")) return 2;
    const char *spec = in.arch, *x1p = in.x1, *x2p = in.x2, *out = in.out;
    long threads = in.threads, n1 = in.n1, n2 = in.n2;
    int f32 = in.f32, quiet = in.quiet, force = in.force, getv = in.getv;
    char paths[2][4096], jpath[4200];
    if (cli_output_paths(out, getv, paths, jpath, sizeof jpath)) return 2;

    nk_error err = {{0}};
    nk_arch *arch = NULL;
    nk_plan *plan = NULL;
    nk_array x1 = {0}, x2 = {0};
    nk_status st = nk_arch_parse(spec, &in.ao, &arch, &err);
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
        char runspec[8192];
        kernel_setup(&ko, runspec, sizeof runspec, (int)threads, getv, prec32, 0, spec, &in.ao);
        const char *outs[2] = {paths[0], paths[1]};
        cli_progress pr;
        cli_progress_init(&pr, "kernel", rank == 0 && cli_progress_default(quiet, force));
        nk_journal_stats js;
        double t0 = cli_seconds(), busy = 0;
        st = nk_mpi_kernel(MPI_COMM_WORLD, plan, runspec, &x1, x2p ? &x2 : NULL, &ko, (size_t)tile, outs, f32, jpath,
                           pr.enabled ? show_progress : NULL, &pr, &js, &busy, &err);
        double dt = cli_seconds() - t0;
        if (st != NK_OK) rc = rank == 0 ? cli_fail(st, &err) : (st == NK_ERR_INPUT ? 2 : 1);
        else {
            if (rank == 0) nk_journal_remove(jpath); /* the outputs are complete: the journal has served */
            report_rank_loads(MPI_COMM_WORLD, "kernel", js.computed, busy, !quiet);
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

/* ---- nkern-mpi classify: rank 0 runs `nkern classify` (cli_classify: data, preprocessing,
 * validation, solve with LAPACK, output); each of its kernels is a job that rank 0 hands to
 * every rank (spec, options, the preprocessed samples), computed over all ranks by nk_mpi_kernel.
 * The other ranks wait for jobs until rank 0 says stop. */
typedef struct {
    int op;                     /* 1: a kernel; 0: stop */
    int quiet;                  /* no per-rank report */
    nk_arch_opts ao;
    int nthreads, get, f32, shift, ndim[2];   /* ndim[1] = 0: a Gram; shift: nk_kernel_opts.shift */
    unsigned long long shape[2][4], tile, speclen;
    char out[2][4200], jpath[4200];
} classify_job;

static const char *classify_mpi_help =
    "usage: mpirun -n R nkern-mpi classify --journal DIR [the options of nkern classify]\n"
    "`nkern classify` with its kernels computed over the MPI ranks: rank 0 loads and prepares the\n"
    "data, chooses the regularization and solves (LAPACK); every kernel is computed by all ranks in\n"
    "tiles written with MPI-IO into DIR (a directory every rank sees) with journals, so the same\n"
    "command resumes after an interruption.  Output identical to `nkern classify`.  --augment\n"
    "shift:S works where nkern classify --journal takes it (translations per entry: stride-1\n"
    "circular conv stacks read out by a flatten, e.g. the default); flips are not available.\n"
    "See docs/cluster.md.\n\n";

/* Broadcast n doubles in pieces MPI's int counts can hold. */
static void bcast_doubles(double *v, size_t n, MPI_Comm comm)
{
    for (size_t off = 0; off < n; off += (size_t)1 << 28) {
        size_t len = n - off < ((size_t)1 << 28) ? n - off : (size_t)1 << 28;
        MPI_Bcast(v + off, (int)len, MPI_DOUBLE, 0, comm);
    }
}

/* Wait for rank 0's next job header while sleeping: a waiting rank must not spin on a core the
 * rank 0 solve needs (MPI_Bcast polls). */
static void receive_job(classify_job *job, MPI_Comm comm)
{
    MPI_Request req;
    int done = 0;
    MPI_Ibcast(job, (int)sizeof *job, MPI_BYTE, 0, comm, &req);
    const struct timespec pause = {0, 5000000};
    for (;;) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (done) return;
        nanosleep(&pause, NULL);
    }
}

/* Rank 0's side of receive_job (a non-blocking broadcast matches only another). */
static void send_job(classify_job *job, MPI_Comm comm)
{
    MPI_Request req;
    MPI_Ibcast(job, (int)sizeof *job, MPI_BYTE, 0, comm, &req);
    MPI_Wait(&req, MPI_STATUS_IGNORE);
}

/* One kernel job on every rank: the plan from the spec (rank 0 passes its own), then the tiles. */
static nk_status run_job(const classify_job *job, const char *spec, const nk_plan *plan, const nk_array *x1,
                         const nk_array *x2, nk_progress_fn cb, void *cb_ctx, nk_journal_stats *js, nk_error *err)
{
    MPI_Comm comm = MPI_COMM_WORLD;
    int rank;
    MPI_Comm_rank(comm, &rank);
    nk_arch *arch = NULL;
    nk_plan *own = NULL;
    nk_status st = NK_OK;
    if (!plan) {
        st = nk_arch_parse(spec, &job->ao, &arch, err);
        if (st == NK_OK) st = nk_plan_create(arch, x1->ndim - 1, x1->shape + 1, &own, err);
        plan = own;
    }
    /* every rank has its plan, or none goes on (the collective calls below need all) */
    int bad = st != NK_OK, any;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm);
    if (any && st == NK_OK) st = nk_fail(err, NK_ERR_RUN, "classify: another rank could not build the plan");
    if (!any) {
        nk_kernel_opts ko;
        char runspec[8192];
        kernel_setup(&ko, runspec, sizeof runspec, job->nthreads, job->get, job->f32, job->shift, spec, &job->ao);
        cli_progress *pr = cb == cli_progress_cb ? cb_ctx : NULL;
        const char *outs[2] = {job->out[0], job->out[1]};
        double busy = 0;
        st = nk_mpi_kernel(comm, plan, runspec, x1, x2, &ko, (size_t)job->tile, outs, 0, job->jpath,
                           pr && pr->enabled ? show_progress : NULL, pr, js, &busy, err);
        if (st == NK_OK) report_rank_loads(comm, "kernel", js->computed, busy, !job->quiet);
    }
    nk_plan_free(own);
    nk_arch_free(arch);
    return st;
}

/* cli_classify_backend.kernel on rank 0: the job to every rank, then its share of the tiles. */
static nk_status classify_kernel_mpi(void *ctx, const nk_plan *plan, const char *spec, const nk_arch_opts *ao,
                                     const nk_array *x1, const nk_array *x2, const nk_kernel_opts *ko, size_t tile,
                                     const char *const out[2], const char *jpath, int quiet, nk_journal_stats *js,
                                     nk_error *err)
{
    (void)ctx;
    classify_job job;
    memset(&job, 0, sizeof job);
    job.op = 1;
    job.quiet = quiet;
    job.ao = *ao;
    job.nthreads = ko->nthreads;
    job.get = ko->get;
    job.f32 = ko->f32;
    job.shift = ko->shift;
    job.tile = tile;
    job.speclen = strlen(spec);
    const nk_array *xs[2] = {x1, x2};
    for (int k = 0; k < 2; k++) {
        if (!xs[k]) continue;
        job.ndim[k] = xs[k]->ndim;
        for (int a = 0; a < xs[k]->ndim; a++) job.shape[k][a] = xs[k]->shape[a];
    }
    for (int w = 0; w < 2; w++) snprintf(job.out[w], sizeof job.out[w], "%s", out[w]);
    snprintf(job.jpath, sizeof job.jpath, "%s", jpath);
    send_job(&job, MPI_COMM_WORLD);
    MPI_Bcast((char *)spec, (int)job.speclen + 1, MPI_CHAR, 0, MPI_COMM_WORLD);
    for (int k = 0; k < 2; k++)
        if (xs[k]) bcast_doubles(xs[k]->data, nk_array_size(xs[k]), MPI_COMM_WORLD);
    return run_job(&job, spec, plan, x1, x2, ko->progress, ko->progress_ctx, js, err);
}

static int classify_worker(void)
{
    int failed = 0;
    for (;;) {
        classify_job job;
        receive_job(&job, MPI_COMM_WORLD);
        if (!job.op) return failed;
        nk_error err = {{0}};
        nk_status st = NK_OK;
        nk_array x[2] = {{0}};
        char *spec = malloc(job.speclen + 1);
        if (spec) MPI_Bcast(spec, (int)job.speclen + 1, MPI_CHAR, 0, MPI_COMM_WORLD);
        for (int k = 0; k < 2 && spec; k++) {
            if (!job.ndim[k]) continue;
            size_t shape[4];
            for (int a = 0; a < job.ndim[k]; a++) shape[a] = (size_t)job.shape[k][a];
            if (st == NK_OK) st = nk_array_alloc(&x[k], job.ndim[k], shape, &err);
            if (st == NK_OK) bcast_doubles(x[k].data, nk_array_size(&x[k]), MPI_COMM_WORLD);
        }
        /* out of memory here leaves rank 0 waiting in a collective call: end the job instead */
        if (!spec || st != NK_OK) MPI_Abort(MPI_COMM_WORLD, 1);
        nk_journal_stats js;
        /* a failure reaches rank 0, which reports it and then says stop */
        failed |= run_job(&job, spec, NULL, &x[0], job.ndim[1] ? &x[1] : NULL, NULL, NULL, &js, &err) != NK_OK;
        free(spec);
        nk_array_free(&x[0]);
        nk_array_free(&x[1]);
    }
}

static int cmd_classify_mpi(int argc, char **argv, int rank)
{
    if (rank) return classify_worker() ? 1 : 0;
    cli_classify_backend be = {classify_kernel_mpi, NULL, "nkern-mpi classify", classify_mpi_help};
    int rc = cli_classify(argc, argv, &be);
    classify_job stop;
    memset(&stop, 0, sizeof stop);
    send_job(&stop, MPI_COMM_WORLD);
    return rc;
}

static int read_all(const char *path, nk_array *a)
{
    nk_error err = {{0}};
    nk_status st = nk_npy_read(path, a, &err);
    return st ? cli_fail(st, &err) : 0;
}

static int cmd_solve_mpi(int argc, char **argv, int rank, int ranks)
{
    const char *ktr = NULL, *y_p = NULL, *kte_p = NULL, *out = NULL, *lab_p = NULL, *time_s = NULL;
    const char *spec = NULL, *xtr_p = NULL, *journal = NULL, *get = "ntk";
    double reg = 1e-4, lr = 1, times[64];
    long block = 256, n_train = 0, threads = 0;
    size_t ntimes = 0;
    int one_hot = 0, reg_absolute = 0, rc = 0, prec32 = 0;
    nk_arch_opts ao;
    nk_arch_opts_default(&ao);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { if (!rank) fputs(solve_help, stdout); return 0; }
        if ((rc = cli_arch_option(argc, argv, &i, &ao)) >= 0) { if (rc) return rc; continue; }
        rc = 0;
        if (!strcmp(a, "--one-hot")) { one_hot = 1; continue; }
        if (!strcmp(a, "--reg-absolute")) { reg_absolute = 1; continue; }
        if (!v) return cli_usage_error("%s: unknown option or missing value (see nkern-mpi solve --help)", a);
        i++;
        if (!strcmp(a, "--k-train")) ktr = v;
        else if (!strcmp(a, "--arch")) spec = v;
        else if (!strcmp(a, "--x-train")) xtr_p = v;
        else if (!strcmp(a, "--journal")) journal = v;
        else if (!strcmp(a, "--get")) get = v;
        else if (!strcmp(a, "--n-train")) { if (cli_parse_int(a, v, 1, 1L << 40, &n_train)) return 2; }
        else if (!strcmp(a, "--threads")) { if (cli_parse_int(a, v, 1, 4096, &threads)) return 2; }
        else if (!strcmp(a, "--precision")) { if (cli_parse_precision(a, v, &prec32)) return 2; }
        else if (!strcmp(a, "--y")) y_p = v;
        else if (!strcmp(a, "--k-test")) kte_p = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--labels-test")) lab_p = v;
        else if (!strcmp(a, "--time")) time_s = v;
        else if (!strcmp(a, "--block")) { if (cli_parse_int(a, v, 8, 1L << 16, &block)) return 2; }
        else if (!strcmp(a, "--reg")) { if (cli_parse_double(a, v, &reg)) return 2; if (!(reg > 0)) return cli_usage_error("--reg %s: must be > 0", v); }
        else if (!strcmp(a, "--lr")) { if (cli_parse_double(a, v, &lr)) return 2; if (!(lr > 0)) return cli_usage_error("--lr %s: must be > 0", v); }
        else return cli_usage_error("%s: unknown option (see nkern-mpi solve --help)", a);
    }
    if (!!ktr == !!(spec || xtr_p))
        return cli_usage_error("solve: give the training kernel as --k-train K.npy, or --arch SPEC --x-train X to compute it (not both)");
    if (!ktr && (!spec || !xtr_p)) return cli_usage_error("solve: --arch and --x-train go together (see nkern-mpi solve --help)");
    if (ktr && journal) return cli_usage_error("solve: --journal keeps the blocks of a computed kernel: give it with --arch and --x-train");
    if (strcmp(get, "nngp") && strcmp(get, "ntk")) return cli_usage_error("--get: '%s' (use nngp or ntk)", get);
    if (!y_p || !kte_p || !out) return cli_usage_error("solve: needs --y, --k-test and --out (see nkern-mpi solve --help)");
    if (cli_parse_times(time_s, times, 64, &ntimes)) return 2;
    nk_error err = {{0}};
    nk_status st = NK_OK;
    nk_array y = {0}, yt = {0}, lab = {0}, lab_hot = {0}, mean = {0};
    double *alpha = NULL, *alpha_t = NULL, *eig = NULL, *row = NULL;
    int fd = -1;
    if ((rc = read_all(y_p, &y)) || (lab_p && (rc = read_all(lab_p, &lab)))) return rc;
    if (one_hot && (st = nk_one_hot(&y, 0, 0.9, -0.1, &yt, &err))) goto fail;
    const nk_array *tg = one_hot ? &yt : &y;
    const size_t n = tg->shape[0], k = tg->ndim == 1 ? 1 : tg->shape[1];
    /* the test kernel's shape from its header: m rows of n */
    nk_array kte_head = {0};
    size_t m = 0, el = 8, data_off = 0;
    {
        unsigned char head[512], want[512];
        size_t hlen;
        fd = open(kte_p, O_RDONLY);
        if (fd < 0) { st = nk_fail(&err, NK_ERR_IO, "%s: cannot open (every rank must see it)", kte_p); goto fail; }
        struct stat sb;
        fstat(fd, &sb);
        for (int f32 = 0; f32 < 2 && !data_off; f32++) {
            size_t guess_hlen;
            size_t sh1[2] = {1, n};
            nk_npy_header(2, sh1, f32, want, &guess_hlen);
            /* the header's length does not depend on m for any practical m: try it */
            size_t cand = ((size_t)sb.st_size - guess_hlen) / (n * (f32 ? 4 : 8));
            size_t sh[2] = {cand, n};
            nk_npy_header(2, sh, f32, want, &hlen);
            if (cand && pread(fd, head, hlen, 0) == (ssize_t)hlen && !memcmp(head, want, hlen) &&
                (size_t)sb.st_size == hlen + cand * n * (f32 ? 4 : 8)) {
                m = cand; el = f32 ? 4 : 8; data_off = hlen;
            }
        }
        if (!data_off) { st = nk_fail(&err, NK_ERR_INPUT, "%s: not an (M, %zu) float32/float64 matrix as nkern kernel writes it", kte_p, n); goto fail; }
    }
    (void)kte_head;
    const size_t nt = ntimes ? ntimes : 1;
    alpha = malloc(n * k * sizeof(double));
    alpha_t = malloc(nt * n * k * sizeof(double));
    eig = malloc(n * sizeof(double));
    row = malloc(n * (sizeof(double) + el));
    size_t shape[3] = {nt, m, k};
    if (!alpha || !alpha_t || !eig || !row) { st = nk_fail(&err, NK_ERR_NOMEM, "solve: out of memory"); goto fail; }
    if ((st = nk_array_alloc(&mean, ntimes ? 3 : 2, ntimes ? shape : shape + 1, &err))) goto fail;
    double t0 = cli_seconds();
    if (ktr) {
        st = nk_mpi_npy_solve(MPI_COMM_WORLD, ktr, (size_t)block, tg->data, n, k, reg, !reg_absolute, alpha, ntimes ? eig : NULL,
                              times, ntimes, lr, alpha_t, &err);
    } else {
        /* the training Gram straight into the block-cyclic layout, every rank reading the data */
        nk_arch *arch = NULL;
        nk_plan *plan = NULL;
        nk_array x = {0};
        nk_journal_stats js = {0, 0, 0, 0};
        char runspec[8192];
        if ((rc = cli_read_data(xtr_p, (size_t)n_train, &x))) goto done;
        if (x.ndim < 2 || x.shape[0] != n)
            st = nk_fail(&err, NK_ERR_INPUT, "%s: %zu samples for %zu targets in %s (give as many; --n-train N keeps the first N)",
                         xtr_p, x.ndim < 2 ? 0 : x.shape[0], n, y_p);
        if (!st) st = nk_arch_parse(spec, &ao, &arch, &err);
        if (!st) st = nk_plan_create(arch, x.ndim - 1, x.shape + 1, &plan, &err);
        nk_kernel_opts ko;
        kernel_setup(&ko, runspec, sizeof runspec, (int)threads, strcmp(get, "ntk") ? NK_GET_NNGP : NK_GET_NTK, prec32, 0, spec,
                     &ao);
        if (!st)
            st = nk_mpi_kernel_solve(MPI_COMM_WORLD, plan, &x, &ko, (size_t)block, runspec, journal, tg->data, k, reg, !reg_absolute,
                                     alpha, ntimes ? eig : NULL, times, ntimes, lr, alpha_t, &js, &err);
        unsigned long long counts[2] = {js.resumed, js.computed};
        if (journal && st == NK_OK) MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
        if (journal && st == NK_OK && rank == 0 && counts[0])
            fprintf(stderr, "journal: %llu blocks resumed, %llu computed\n", counts[0], counts[1]);
        nk_array_free(&x);
        nk_plan_free(plan);
        nk_arch_free(arch);
    }
    if (st) goto fail;
    if (!ntimes) memcpy(alpha_t, alpha, n * k * sizeof(double));
    /* mean_t = K* alpha_t: rank r takes the test rows i = r mod R, one row of the file at a time */
    memset(mean.data, 0, nk_array_size(&mean) * sizeof(double));
    double *rv = row;
    unsigned char *raw = (unsigned char *)(row + n);
    for (size_t i = (size_t)rank; i < m && st == NK_OK; i += (size_t)ranks) {
        if (pread(fd, raw, n * el, (off_t)(data_off + i * n * el)) != (ssize_t)(n * el)) {
            st = nk_fail(&err, NK_ERR_IO, "%s: cannot read row %zu", kte_p, i);
            break;
        }
        for (size_t j = 0; j < n; j++) {
            if (el == 4) { float v; memcpy(&v, raw + 4 * j, 4); rv[j] = v; }
            else memcpy(&rv[j], raw + 8 * j, 8);
        }
        for (size_t t = 0; t < nt; t++)
            for (size_t c = 0; c < k; c++) {
                double acc = 0;
                for (size_t j = 0; j < n; j++) acc += rv[j] * alpha_t[(t * n + j) * k + c];
                mean.data[(t * m + i) * k + c] = acc;
            }
    }
    MPI_Allreduce(MPI_IN_PLACE, mean.data, (int)nk_array_size(&mean), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    if (st) goto fail;
    if (rank == 0) {
        char path[4200];
        size_t len = strlen(out);
        snprintf(path, sizeof path, "%.*s.mean.npy", (int)(len > 4 && !strcmp(out + len - 4, ".npy") ? len - 4 : len), out);
        if ((rc = cli_txn_write_npy(path, &mean, 0)) || (rc = cli_txn_commit())) goto done;
        fprintf(stderr, "solve: %zu train, %zu test, %zu targets on %d ranks in %.3f s\n", n, m, k, ranks, cli_seconds() - t0);
        if (!st && lab_p) st = nk_one_hot(&lab, k, 0.9, -0.1, &lab_hot, &err);
        for (size_t t = 0; !st && lab_p && t < nt; t++) {
            nk_array slice = lab_hot;
            double acc = 0, mse = 0;
            slice.data = mean.data + t * m * k;
            st = nk_accuracy(&slice, &lab, &acc, &err);
            if (!st) st = nk_mse(&slice, &lab_hot, &mse, &err);
            if (!st && ntimes) printf("t=%g: ", times[t]);
            if (!st) printf("accuracy %.4f, mse %.5f\n", acc, mse);
        }
        if (st) goto fail;
    }
    goto done;
fail:
    rc = rank == 0 ? cli_fail(st, &err) : (st == NK_ERR_INPUT ? 2 : 1);
done:
    if (fd >= 0) close(fd);
    free(alpha); free(alpha_t); free(eig); free(row);
    nk_array_free(&y); nk_array_free(&yt); nk_array_free(&lab); nk_array_free(&lab_hot); nk_array_free(&mean);
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
    } else if (!strcmp(argv[1], "classify")) {
        rc = cmd_classify_mpi(argc - 1, argv + 1, rank);
    } else if (!strcmp(argv[1], "solve")) {
        int ranks;
        MPI_Comm_size(MPI_COMM_WORLD, &ranks);
        rc = cmd_solve_mpi(argc - 1, argv + 1, rank, ranks);
    } else {
        rc = rank ? 2 : cli_usage_error("unknown command '%s' (nkern-mpi runs: kernel, classify, solve)", argv[1]);
    }
    /* every rank reached here with its status: the job's is the worst */
    int worst;
    MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return worst;
}
