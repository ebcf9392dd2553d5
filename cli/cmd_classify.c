/* cmd_classify.c -- `nkern classify`: kernel regression on one-hot targets, end to end:
 * load, subset, preprocess, kernels, regularization chosen on a validation part of the
 * training set, then test accuracy and MSE. */
#include "cli.h"
#include "nk_data.h"
#include "nk_dist.h"
#include "nk_infer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <sys/stat.h>

static const char *classify_help =
    "usage: nkern classify --data SRC --arch SPEC [--kernel nngp|ntk|both] [--train N] [--test N]\n"
    "                      [--reg R1,R2,...] [--reg-absolute] [--val FRAC] [--time T1,T2,inf]\n"
    "                      [--prep none|unit|standardize|zca[:EPS]] [--balanced] [--seed N]\n"
    "                      [--threads N] [--precision f64|f32] [--out PRED.npy] [--quiet|--progress]\n"
    "                      [--journal DIR [--tile N]]\n"
    "                      [--w-std W] [--b-std B] [--param ntk|standard] [--width N] [--quad N]\n"
    "SRC: fashion-mnist (Debian's dataset-fashion-mnist), cifar10:DIR (binary batches), or\n"
    "     npy:X.npy,Y.npy (samples and integer labels; the test set is drawn from them).\n"
    "Pixels of fashion-mnist and cifar10 are scaled to [0, 1]; npy data is used as stored.\n"
    "--prep unit: per image zero mean, unit L2 norm; standardize: per image zero mean, unit\n"
    "     variance; zca[:EPS]: standardize, then ZCA whitening fitted on the training set with\n"
    "     eps = EPS * mean eigenvalue (default 0.1).  Default none.\n"
    "Targets are one-hot, centred: 0.9 for the class, -0.1 elsewhere.\n"
    "--kernel nngp: NNGP posterior mean (with --time: gradient flow of the readout only);\n"
    "     ntk: infinite ensemble after gradient flow for each --time (default inf);\n"
    "     both: the two from one kernel computation (--out PREFIX: PREFIX.nngp.npy, PREFIX.ntk.npy).\n"
    "--reg: diag_reg relative to the mean diagonal of the training kernel (default 1e-4).\n"
    "     With several values, each is fitted on the training set minus a held-out validation\n"
    "     part (--val, default 0.2), the best validation accuracy at the last --time wins, and\n"
    "     the model is refitted on the full training set.  The test set is never used to choose.\n"
    "--precision f64|f32: arithmetic of the kernels' leading stack of stride-1 convs and\n"
    "     activations: float64 (default) or float32 (faster; ~1e-6 relative error in the\n"
    "     kernels).  Later layers and the regression are always float64.\n"
    "--journal DIR: the kernels in tiles of N x N (--tile, default 256) written into DIR\n"
    "     (train.*.npy, test.*.npy) with journals of finished tiles: after an interruption\n"
    "     (even kill -9) the same command computes only the missing tiles, and a finished\n"
    "     kernel is reused.  Remove DIR when done.  See docs/cluster.md.\n"
    "--out: test predictions (T, M, classes) for flow, (M, classes) for the NNGP posterior.\n";

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Comma-separated numbers >= 0 (and "inf" if allow_inf); at most cap of them. */
static int parse_list(const char *opt, const char *s, int allow_inf, double *v, size_t cap,
                      size_t *n)
{
    const char *p = s;
    *n = 0;
    while (*p) {
        char item[64];
        size_t len = strcspn(p, ",");
        if (!len || len >= sizeof item || *n == cap)
            return cli_usage_error("%s: '%s' (give up to %zu comma-separated values)", opt, s, cap);
        memcpy(item, p, len);
        item[len] = 0;
        if (allow_inf && !strcmp(item, "inf")) v[*n] = INFINITY;
        else if (cli_parse_double(opt, item, &v[*n])) return 2;
        if (v[*n] < 0) return cli_usage_error("%s: %s is negative (values must be >= 0)", opt, item);
        (*n)++;
        p += len;
        if (*p == ',') p++;
    }
    return *n ? 0 : cli_usage_error("%s: empty list", opt);
}

/* Rows `rows` and columns `cols` of the (., ld) matrix k into a new array. */
static int sub_block(const nk_array *k, const size_t *rows, size_t nr, const size_t *cols,
                     size_t nc, nk_array *out)
{
    nk_error err = {{0}};
    size_t shape[2] = {nr, nc}, ld = k->shape[1];
    nk_status st = nk_array_alloc(out, 2, shape, &err);
    if (st) return cli_fail(st, &err);
    for (size_t i = 0; i < nr; i++)
        for (size_t j = 0; j < nc; j++) out->data[i * nc + j] = k->data[rows[i] * ld + cols[j]];
    return 0;
}

typedef struct {
    int use_flow;           /* gradient flow (ntk, or nngp with --time) vs NNGP posterior */
    const double *times;
    size_t ntimes;
    nk_infer_opts io;
} solver;

/* Fit on (k_train, targets), predict rows of k_test_train: mean (T, M, k) or (M, k). */
static nk_status fit_predict(const solver *s, const nk_array *k_train, const nk_array *targets,
                             const nk_array *k_test_train, double reg, nk_array *mean,
                             double *eps, nk_error *err)
{
    nk_infer_opts io = s->io;
    io.diag_reg = reg;
    nk_status st;
    if (s->use_flow) {
        nk_flow *f = NULL;
        st = nk_flow_create(k_train, NULL, targets, &io, &f, err);
        if (!st) st = nk_flow_predict(f, k_test_train, NULL, NULL, s->times, s->ntimes,
                                      NK_COV_NONE, mean, NULL, err);
        if (f) *eps = nk_flow_reg(f);
        nk_flow_free(f);
    } else {
        nk_gp *gp = NULL;
        st = nk_gp_create(k_train, targets, &io, &gp, err);
        if (!st) st = nk_gp_predict(gp, k_test_train, NULL, NK_COV_NONE, mean, NULL, err);
        if (gp) *eps = nk_gp_reg(gp);
        nk_gp_free(gp);
    }
    return st;
}

/* Accuracy and MSE of time slice t of the predictions against labels / one-hot targets. */
static nk_status score(const nk_array *mean, size_t t, const nk_array *labels,
                       const nk_array *onehot, double *acc, double *mse, nk_error *err)
{
    nk_array slice = *onehot; /* same (M, k) shape, data pointing into mean */
    slice.data = mean->data + t * nk_array_size(onehot);
    nk_status st = nk_accuracy(&slice, labels, acc, err);
    if (!st) st = nk_mse(&slice, onehot, mse, err);
    return st;
}

/* --journal DIR: the training Gram and the test x train kernel through nk_kernel_journaled into
 * DIR/train.*.npy and DIR/test.*.npy, then read back.  The journals stay, so a run interrupted
 * during the second kernel reuses the first. */
static nk_status journaled_kernels(const nk_plan *plan, const char *runspec, const nk_array *xtr, const nk_array *xte,
                                   const nk_kernel_opts *ko, size_t tile, const char *dir, nk_array kt[2], nk_array ks[2],
                                   int quiet, nk_error *err)
{
    if (mkdir(dir, 0777) && errno != EEXIST)
        return nk_fail(err, NK_ERR_INPUT, "--journal %s: cannot create the directory: %s (choose a writable path)", dir, strerror(errno));
    static const char *names[2] = {"train", "test"}, *kinds[2] = {"nngp", "ntk"};
    nk_status st = NK_OK;
    for (int part = 0; part < 2 && st == NK_OK; part++) {
        char paths[2][4200], jpath[4200];
        const char *outs[2] = {paths[0], paths[1]};
        for (int w = 0; w < 2; w++) snprintf(paths[w], sizeof paths[w], "%s/%s.%s.npy", dir, names[part], kinds[w]);
        snprintf(jpath, sizeof jpath, "%s/%s.journal", dir, names[part]);
        nk_journal_stats js;
        st = nk_kernel_journaled(plan, runspec, part ? xte : xtr, part ? xtr : NULL, ko, tile, outs, 0, jpath, &js, err);
        if (st == NK_OK && !quiet && js.resumed)
            fprintf(stderr, "\njournal: %s kernel: %zu of %zu tiles resumed, %zu computed\n", names[part], js.resumed, js.tiles, js.computed);
        for (int w = 0; w < 2 && st == NK_OK; w++)
            if (ko->get & (w ? NK_GET_NTK : NK_GET_NNGP)) st = nk_npy_read(paths[w], part ? &ks[w] : &kt[w], err);
    }
    return st;
}

int cmd_classify(int argc, char **argv)
{
    const char *data = NULL, *spec = NULL, *kernel = "ntk", *prep = "none", *out = NULL;
    const char *reg_s = "1e-4", *time_s = NULL, *journal_dir = NULL;
    long n_train = 1000, n_test = 1000, seed = 0, threads = 0, tile = 256;
    double val_frac = 0.2, regs[32], times[64];
    size_t nregs = 0, ntimes = 0;
    int balanced = 0, quiet = 0, force = 0, reg_absolute = 0, prec32 = 0, rc = 0;
    nk_arch_opts ao;
    nk_arch_opts_default(&ao);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(classify_help, stdout); return 0; }
        if ((rc = cli_arch_option(argc, argv, &i, &ao)) >= 0) { if (rc) return rc; continue; }
        if (!strcmp(a, "--balanced")) { balanced = 1; continue; }
        if (!strcmp(a, "--reg-absolute")) { reg_absolute = 1; continue; }
        if (!strcmp(a, "--quiet")) { quiet = 1; continue; }
        if (!strcmp(a, "--progress")) { force = 1; continue; }
        if (!v) return cli_usage_error("%s: unknown option or missing value (see nkern classify --help)", a);
        i++;
        if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--arch")) spec = v;
        else if (!strcmp(a, "--kernel")) kernel = v;
        else if (!strcmp(a, "--prep")) prep = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--reg")) reg_s = v;
        else if (!strcmp(a, "--time")) time_s = v;
        else if (!strcmp(a, "--precision")) { if (cli_parse_precision(a, v, &prec32)) return 2; }
        else if (!strcmp(a, "--train")) { if (cli_parse_int(a, v, 2, 1L << 30, &n_train)) return 2; }
        else if (!strcmp(a, "--test")) { if (cli_parse_int(a, v, 1, 1L << 30, &n_test)) return 2; }
        else if (!strcmp(a, "--seed")) { if (cli_parse_int(a, v, 0, 1L << 62, &seed)) return 2; }
        else if (!strcmp(a, "--threads")) { if (cli_parse_int(a, v, 1, 4096, &threads)) return 2; }
        else if (!strcmp(a, "--journal")) journal_dir = v;
        else if (!strcmp(a, "--tile")) { if (cli_parse_int(a, v, 8, 1L << 20, &tile)) return 2; }
        else if (!strcmp(a, "--val")) {
            if (cli_parse_double(a, v, &val_frac)) return 2;
            if (!(val_frac > 0 && val_frac < 1)) return cli_usage_error("--val: %s (use a fraction in (0, 1), e.g. 0.2)", v);
        }
        else return cli_usage_error("%s: unknown option (see nkern classify --help)", a);
    }
    rc = 0; /* cli_arch_option left -1 for options that were not its own */
    if (!data) return cli_usage_error("classify: missing --data (fashion-mnist, cifar10:DIR or npy:X.npy,Y.npy)");
    if (!spec) return cli_usage_error("classify: missing --arch SPEC (e.g. --arch '[conv(3) relu]*4 gap dense')");
    if (out && cli_check_out_dir("--out", out)) return 2;
    /* passes over the kernels: 0 = nngp, 1 = ntk; both come from one kernel computation */
    int first = !strcmp(kernel, "ntk") ? 1 : 0, last = !strcmp(kernel, "nngp") ? 0 : 1;
    if (strcmp(kernel, "ntk") && strcmp(kernel, "nngp") && strcmp(kernel, "both"))
        return cli_usage_error("--kernel: '%s' (use nngp, ntk or both)", kernel);
    if (parse_list("--reg", reg_s, 0, regs, 32, &nregs)) return 2;
    if (time_s && parse_list("--time", time_s, 1, times, 64, &ntimes)) return 2;
    if (!time_s) { times[0] = INFINITY; ntimes = 1; }
    double zca_eps = 0.1;
    int prep_kind = -1; /* -1 none, NK_STD_* or 2 for zca */
    if (!strcmp(prep, "unit")) prep_kind = NK_STD_UNIT_NORM;
    else if (!strcmp(prep, "standardize")) prep_kind = NK_STD_UNIT_VAR;
    else if (!strncmp(prep, "zca", 3) && (!prep[3] || prep[3] == ':')) {
        prep_kind = 2;
        if (prep[3] && cli_parse_double("--prep zca:EPS", prep + 4, &zca_eps)) return 2;
        if (zca_eps < 0) return cli_usage_error("--prep zca:%s: EPS must be >= 0", prep + 4);
    } else if (strcmp(prep, "none")) return cli_usage_error("--prep: '%s' (use none, unit, standardize or zca[:EPS])", prep);

    nk_error err = {{0}};
    nk_status st = NK_OK;
    nk_dataset full = {{0}, {0}}, full_test = {{0}, {0}}, rest = {{0}, {0}};
    nk_dataset train = {{0}, {0}}, test = {{0}, {0}};
    nk_arch *arch = NULL;
    nk_plan *plan = NULL;
    nk_zca *zca = NULL;
    nk_array kt[2] = {{0}}, ks[2] = {{0}}, y_train = {0}, y_test = {0}, pred = {0};
    nk_array k_fit = {0}, k_val = {0}, y_fit = {0}, y_val = {0}, lab_val = {0}, val_pred = {0};
    size_t *val_idx = NULL, *fit_idx = NULL;
    unsigned char *in_val = NULL;
    double t_load = 0, t_kernel = 0, t_solve = 0, t0;
    uint64_t useed = (uint64_t)seed;

    st = nk_arch_parse(spec, &ao, &arch, &err);
    if (st) goto fail;

    /* ---- load and subset */
    t0 = seconds();
    int scale_pixels = 1;
    if (!strcmp(data, "fashion-mnist")) {
        st = nk_fashion_mnist_load(NULL, NK_SPLIT_TRAIN, &full, &err);
        if (!st) st = nk_fashion_mnist_load(NULL, NK_SPLIT_TEST, &full_test, &err);
    } else if (!strncmp(data, "cifar10:", 8)) {
        st = nk_cifar10_load(data + 8, NK_SPLIT_TRAIN, 0, &full, &err);
        if (!st) st = nk_cifar10_load(data + 8, NK_SPLIT_TEST, 0, &full_test, &err);
    } else if (!strncmp(data, "npy:", 4)) {
        char xp[4096], yp[4096];
        const char *comma = strchr(data + 4, ',');
        size_t xl = comma ? (size_t)(comma - data - 4) : 0;
        if (!comma || !xl || xl >= sizeof xp || strlen(comma + 1) >= sizeof yp || !comma[1]) {
            rc = cli_usage_error("--data npy:X.npy,Y.npy: '%s' (give samples and labels, comma-separated)", data);
            goto done;
        }
        memcpy(xp, data + 4, xl);
        xp[xl] = 0;
        strcpy(yp, comma + 1);
        scale_pixels = 0;
        nk_dataset all = {{0}, {0}};
        st = nk_npy_read(xp, &all.x, &err);
        if (!st) st = nk_npy_read(yp, &all.y, &err);
        if (!st && (all.y.ndim != 1 || all.x.ndim < 2 || all.x.shape[0] != all.y.shape[0]))
            st = nk_fail(&err, NK_ERR_INPUT, "%s, %s: need samples (N, ...) and N labels (N); got %zu samples and %s%zu labels",
                         xp, yp, all.x.shape[0], all.y.ndim == 1 ? "" : "a non-vector of ", all.y.shape[0]);
        if (!st && (size_t)(n_train + n_test) > all.y.shape[0])
            st = nk_fail(&err, NK_ERR_INPUT, "%s: %zu samples, fewer than --train %ld + --test %ld", xp,
                         all.y.shape[0], n_train, n_test);
        /* The test set is drawn first from all samples; training samples from the rest. */
        if (!st) st = nk_dataset_split(&all, (size_t)n_test, balanced, useed + 1, &rest, &test, &err);
        if (!st) st = nk_dataset_subset(&rest, (size_t)n_train, balanced, useed, &train, &err);
        nk_dataset_free(&all);
    } else {
        rc = cli_usage_error("--data: '%s' (use fashion-mnist, cifar10:DIR or npy:X.npy,Y.npy)", data);
        goto done;
    }
    if (st == NK_ERR_IO) st = NK_ERR_INPUT; /* an input that cannot be read is bad input: exit 2 */
    if (!st && full.x.data) {
        st = nk_dataset_subset(&full, (size_t)n_train, balanced, useed, &train, &err);
        if (!st) st = nk_dataset_subset(&full_test, (size_t)n_test, balanced, useed + 1, &test, &err);
        nk_dataset_free(&full);
        nk_dataset_free(&full_test);
    }
    if (st) goto fail;

    /* ---- preprocess: statistics from the training set only */
    if (scale_pixels) {
        st = nk_prep_unit_range(&train.x, 0, 255, &err);
        if (!st) st = nk_prep_unit_range(&test.x, 0, 255, &err);
    }
    if (!st && prep_kind >= 0) {
        nk_std_kind k = prep_kind == NK_STD_UNIT_NORM ? NK_STD_UNIT_NORM : NK_STD_UNIT_VAR;
        st = nk_prep_standardize(&train.x, k, &err);
        if (!st) st = nk_prep_standardize(&test.x, k, &err);
    }
    if (!st && prep_kind == 2) {
        st = nk_zca_fit(&train.x, zca_eps, &zca, &err);
        if (!st) st = nk_zca_apply(zca, &train.x, &err);
        if (!st) st = nk_zca_apply(zca, &test.x, &err);
    }
    if (st) goto fail;
    t_load = seconds() - t0;

    size_t n = train.y.shape[0], m = test.y.shape[0];
    if (!quiet) {
        fprintf(stderr, "data: %s, %zu train, %zu test%s, sample shape", data, n, m, balanced ? " (balanced)" : "");
        for (int a = 1; a < train.x.ndim; a++) fprintf(stderr, "%s%zu", a > 1 ? "x" : " ", train.x.shape[a]);
        fprintf(stderr, ", prep %s, %.2f s\n", prep, t_load);
    }

    /* ---- kernels: one Gram of the training set (validation blocks are sub-blocks of it) */
    st = nk_plan_create(arch, train.x.ndim - 1, train.x.shape + 1, &plan, &err);
    if (!st && !quiet) /* the training Gram and the test-train block */
        cli_warn_long_run("classify", plan, train.x.shape[0] + test.x.shape[0], 0, (int)threads, cli_mean_square(&train.x), prec32);
    if (st) goto fail;
    t0 = seconds();
    {
        cli_progress pr;
        cli_progress_init(&pr, "kernel", cli_progress_default(quiet, force));
        nk_kernel_opts ko;
        nk_kernel_opts_default(&ko);
        ko.nthreads = (int)threads;
        ko.get = (first == 0 ? NK_GET_NNGP : 0) | (last == 1 ? NK_GET_NTK : 0);
        ko.f32 = prec32;
        ko.progress = cli_progress_cb;
        ko.progress_ctx = &pr;
        if (journal_dir) {
            char runspec[8192];
            cli_run_spec(runspec, sizeof runspec, spec, &ao);
            st = journaled_kernels(plan, runspec, &train.x, &test.x, &ko, (size_t)tile, journal_dir, kt, ks, quiet, &err);
        } else {
            st = nk_kernel_matrix(plan, &train.x, NULL, &ko, first == 0 ? &kt[0] : NULL, last == 1 ? &kt[1] : NULL, &err);
            if (!st)
                st = nk_kernel_matrix(plan, &test.x, &train.x, &ko, first == 0 ? &ks[0] : NULL, last == 1 ? &ks[1] : NULL, &err);
        }
    }
    if (st) goto fail;
    t_kernel = seconds() - t0;

    /* ---- solve */
    t0 = seconds();
    solver sv;
    sv.times = times;
    sv.ntimes = ntimes;
    nk_infer_opts_default(&sv.io);
    sv.io.reg_absolute = reg_absolute;
    /* Classes: one more than the largest label of either set (nk_one_hot checks labels). */
    st = nk_one_hot(&train.y, 0, 0.9, -0.1, &y_train, &err);
    if (!st) st = nk_one_hot(&test.y, 0, 0.9, -0.1, &y_test, &err);
    size_t ncls = y_train.shape[1] > y_test.shape[1] ? y_train.shape[1] : y_test.shape[1];
    if (!st && (y_train.shape[1] != ncls || y_test.shape[1] != ncls)) {
        nk_array_free(&y_train);
        nk_array_free(&y_test);
        st = nk_one_hot(&train.y, ncls, 0.9, -0.1, &y_train, &err);
        if (!st) st = nk_one_hot(&test.y, ncls, 0.9, -0.1, &y_test, &err);
    }
    if (st) goto fail;

    for (int pass = first; pass <= last; pass++) {
    const nk_array ktr = kt[pass], kte = ks[pass];
    const char *kname = pass ? "ntk" : "nngp";
    sv.use_flow = pass == 1 || time_s != NULL;
    double best_reg = regs[0];
    if (nregs > 1) {
        size_t n_val = (size_t)llround(val_frac * (double)n);
        if (n_val < 1 || n_val >= n) {
            rc = cli_usage_error("--val %g of %zu training samples leaves no validation or no fitting part", val_frac, n);
            goto done;
        }
        size_t n_fit = n - n_val;
        val_idx = malloc(n_val * sizeof *val_idx);
        fit_idx = malloc(n_fit * sizeof *fit_idx);
        in_val = calloc(n, 1);
        if (!val_idx || !fit_idx || !in_val) { st = nk_fail(&err, NK_ERR_NOMEM, "classify: out of memory"); goto fail; }
        st = nk_subset_indices(&train.y, n_val, balanced, useed + 2, val_idx, &err);
        if (st) goto fail;
        for (size_t i = 0; i < n_val; i++) in_val[val_idx[i]] = 1;
        for (size_t i = 0, k = 0; i < n; i++)
            if (!in_val[i]) fit_idx[k++] = i;
        if ((rc = sub_block(&ktr, fit_idx, n_fit, fit_idx, n_fit, &k_fit)) ||
            (rc = sub_block(&ktr, val_idx, n_val, fit_idx, n_fit, &k_val)))
            goto done;
        size_t ys[2] = {n_fit, ncls}, vs[2] = {n_val, ncls};
        st = nk_array_alloc(&y_fit, 2, ys, &err);
        if (!st) st = nk_array_alloc(&y_val, 2, vs, &err);
        if (!st) st = nk_array_alloc(&lab_val, 1, &n_val, &err);
        if (st) goto fail;
        for (size_t i = 0; i < n_fit; i++) memcpy(y_fit.data + i * ncls, y_train.data + fit_idx[i] * ncls, ncls * sizeof(double));
        for (size_t i = 0; i < n_val; i++) {
            memcpy(y_val.data + i * ncls, y_train.data + val_idx[i] * ncls, ncls * sizeof(double));
            lab_val.data[i] = train.y.data[val_idx[i]];
        }
        double best_acc = -1, best_mse = INFINITY;
        for (size_t r = 0; r < nregs; r++) {
            double eps = 0, acc = 0, mse = 0;
            nk_error verr = {{0}};
            nk_status vst = fit_predict(&sv, &k_fit, &y_fit, &k_val, regs[r], &val_pred, &eps, &verr);
            if (!vst) vst = score(&val_pred, sv.use_flow ? ntimes - 1 : 0, &lab_val, &y_val, &acc, &mse, &verr);
            nk_array_free(&val_pred);
            if (vst) {
                /* A regularization too small for this kernel is skipped, not fatal. */
                if (!quiet) fprintf(stderr, "validation: reg %g failed: %s\n", regs[r], verr.msg);
                continue;
            }
            if (!quiet) printf("validation: reg %g (eps %.3g): accuracy %.4f, mse %.5f (%zu fit, %zu held out)\n",
                               regs[r], eps, acc, mse, n_fit, n_val);
            if (acc > best_acc || (acc == best_acc && mse < best_mse)) {
                best_acc = acc;
                best_mse = mse;
                best_reg = regs[r];
            }
        }
        if (best_acc < 0) {
            st = nk_fail(&err, NK_ERR_INPUT, "classify: every --reg value failed on the validation split (try larger values, e.g. --reg 1e-3,1e-2,1e-1)");
            goto fail;
        }
        if (!quiet) printf("validation: chose reg %g\n", best_reg);
    }

    double eps = 0;
    st = fit_predict(&sv, &ktr, &y_train, &kte, best_reg, &pred, &eps, &err);
    if (st) goto fail;
    t_solve += seconds() - t0;
    for (size_t t = 0; t < (sv.use_flow ? ntimes : 1); t++) {
        double acc = 0, mse = 0;
        st = score(&pred, t, &test.y, &y_test, &acc, &mse, &err);
        if (st) goto fail;
        char tbuf[32] = "";
        if (sv.use_flow) snprintf(tbuf, sizeof tbuf, " t=%g", times[t]);
        printf("test: %s%s reg %g (eps %.3g): accuracy %.4f, mse %.5f (%zu test, %zu train)\n", kname, tbuf, best_reg, eps,
               acc, mse, m, n);
    }
    if (out) {
        /* with --kernel both, PREFIX.nngp.npy and PREFIX.ntk.npy */
        char path[4096];
        size_t ol = strlen(out);
        if (first != last)
            snprintf(path, sizeof path, "%.*s.%s.npy", (int)(ol > 4 && !strcmp(out + ol - 4, ".npy") ? ol - 4 : ol), out, kname);
        else
            snprintf(path, sizeof path, "%s", out);
        if ((rc = cli_txn_write_npy(path, &pred, 0))) goto done; /* committed with the other kernel's */
    }
    /* what the next pass builds again */
    nk_array_free(&pred); nk_array_free(&k_fit); nk_array_free(&k_val); nk_array_free(&y_fit);
    nk_array_free(&y_val); nk_array_free(&lab_val); nk_array_free(&val_pred);
    free(val_idx); free(fit_idx); free(in_val);
    val_idx = fit_idx = NULL;
    in_val = NULL;
    t0 = seconds();
    }
    printf("time: load %.2f s, kernel %.2f s, solve %.2f s\n", t_load, t_kernel, t_solve);
    rc = cli_txn_commit();
    goto done;
fail:
    rc = cli_fail(st, &err);
done:
    if (rc) cli_txn_abort();
    nk_dataset_free(&full);
    nk_dataset_free(&full_test);
    nk_dataset_free(&rest);
    nk_dataset_free(&train);
    nk_dataset_free(&test);
    nk_zca_free(zca);
    nk_plan_free(plan);
    nk_arch_free(arch);
    nk_array_free(&kt[0]); nk_array_free(&kt[1]); nk_array_free(&ks[0]); nk_array_free(&ks[1]); nk_array_free(&y_train); nk_array_free(&y_test);
    nk_array_free(&pred); nk_array_free(&k_fit); nk_array_free(&k_val); nk_array_free(&y_fit);
    nk_array_free(&y_val); nk_array_free(&lab_val); nk_array_free(&val_pred);
    free(val_idx);
    free(fit_idx);
    free(in_val);
    return rc;
}
