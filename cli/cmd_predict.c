/* cmd_predict.c -- `nkern predict`: NNGP posterior or NTK gradient-flow predictions from
 * kernel matrices stored as .npy files (e.g. written by `nkern kernel`). */
#include "cli.h"
#include "nk_infer.h"
#include "nk_dist.h"

#include <cblas.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *predict_help =
    "usage: nkern predict --k-train K.npy --y Y.npy --k-test K_TEST_TRAIN.npy --out PREFIX\n"
    "                     [--ntk-train T.npy --ntk-test T_TEST_TRAIN.npy] [--time T1,T2,inf]\n"
    "                     [--cov none|diag|full --k-test-test KTT.npy] [--reg R] [--reg-absolute]\n"
    "                     [--lr ETA] [--one-hot] [--labels-test L.npy]\n"
    "Kernels: K (N, N) NNGP of the training set, K_TEST_TRAIN (M, N) with test rows, KTT (M)\n"
    "(its diagonal) or (M, M); the same for the NTK.  Y (N) or (N, k) targets; with --one-hot,\n"
    "Y holds integer labels and the targets are 0.9 for the class, -0.1 elsewhere.\n"
    "Without --ntk-*: NNGP posterior (Cholesky), or with --time the flow driven by K.\n"
    "With --ntk-*: infinite ensemble after gradient flow for time t (Lee et al. 2019); its\n"
    "covariance needs the NNGP kernels too.  --reg is relative to the mean diagonal of the\n"
    "kernel that is inverted (default 0).  Writes PREFIX.mean.npy ((M, k), or (T, M, k) for\n"
    "flow) and PREFIX.cov.npy.  --labels-test prints accuracy and MSE against one-hot labels.\n"
    "--cg RANK: the posterior mean by conjugate gradients over K memory-mapped from its file (so\n"
    "K may exceed memory; float32 files too), preconditioned by a rank-RANK Nystrom approximation\n"
    "(0: none); the residual is printed per iteration.  Needs --reg > 0; no --time, --cov, --ntk-*.\n";

static void cg_report(void *ctx, int iter, double rel)
{
    (void)ctx;
    fprintf(stderr, "cg: iteration %d, relative residual %.3e\n", iter, rel);
}

/* --cg: mean = K_test (K + reg I)^{-1} Y with K mapped from ktr_path, never read into memory. */
static nk_status cg_mean(const char *ktr_path, const nk_array *kte, const nk_array *targets, double reg, int reg_absolute,
                         long rank, nk_array *mean, nk_error *err)
{
    nk_mapped K;
    nk_status st = nk_npy_map(ktr_path, &K, err);
    if (st) return st;
    size_t n = K.n, k = targets->ndim == 1 ? 1 : targets->shape[1], m = kte->shape[0];
    double *diag = malloc(n * sizeof(double)), *alpha = malloc(n * k * sizeof(double)), mean_diag = 0;
    if (!diag || !alpha) st = nk_fail(err, NK_ERR_NOMEM, "predict --cg: out of memory");
    else if (targets->shape[0] != n || kte->ndim != 2 || kte->shape[1] != n)
        st = nk_fail(err, NK_ERR_INPUT, "%s: %zu training samples, but the targets have %zu and --k-test %zu columns", ktr_path, n,
                     targets->shape[0], kte->ndim == 2 ? kte->shape[1] : 0);
    for (size_t i = 0; !st && i < n; i++) {
        nk_mapped_column(&K, i, alpha, err);  /* row i, to read its diagonal entry */
        diag[i] = alpha[i];
        mean_diag += diag[i] / (double)n;
    }
    const double eps = reg_absolute ? reg : reg * mean_diag;
    if (!st && !(eps > 0)) st = nk_fail(err, NK_ERR_INPUT, "predict --cg: needs --reg > 0 (the preconditioner's floor)");
    size_t shape[2] = {m, k};
    if (!st) {
        nk_cg_opts co = {0};
        co.rank = (size_t)rank;
        co.tol = 1e-8;
        co.report = cg_report;
        st = nk_cg_solve(n, k, nk_mapped_matvec, nk_mapped_column, diag, &K, eps, targets->data, alpha, &co, NULL, NULL, err);
    }
    if (!st) st = nk_array_alloc(mean, 2, shape, err);
    if (!st)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)k, (int)n, 1.0, kte->data, (int)n, alpha, (int)k,
                    0.0, mean->data, (int)k);
    nk_npy_unmap(&K);
    free(diag);
    free(alpha);
    return st;
}

static int read_npy(const char *path, nk_array *a)
{
    return cli_read_npy(path, a);
}

int cmd_predict(int argc, char **argv)
{
    const char *ktr_p = NULL, *y_p = NULL, *kte_p = NULL, *ktt_p = NULL, *ttr_p = NULL;
    const char *tte_p = NULL, *out = NULL, *cov_s = "none", *time_s = NULL, *lab_p = NULL;
    double reg = 0, lr = 1, times[64];
    size_t ntimes = 0;
    int reg_absolute = 0, one_hot = 0, rc = 0;
    long cg_rank = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(predict_help, stdout); return 0; }
        if (!strcmp(a, "--reg-absolute")) { reg_absolute = 1; continue; }
        if (!strcmp(a, "--one-hot")) { one_hot = 1; continue; }
        if (!v) return cli_usage_error("%s: unknown option or missing value (see nkern predict --help)", a);
        i++;
        if (!strcmp(a, "--k-train")) ktr_p = v;
        else if (!strcmp(a, "--y")) y_p = v;
        else if (!strcmp(a, "--k-test")) kte_p = v;
        else if (!strcmp(a, "--k-test-test")) ktt_p = v;
        else if (!strcmp(a, "--ntk-train")) ttr_p = v;
        else if (!strcmp(a, "--ntk-test")) tte_p = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--cov")) cov_s = v;
        else if (!strcmp(a, "--time")) time_s = v;
        else if (!strcmp(a, "--labels-test")) lab_p = v;
        else if (!strcmp(a, "--cg")) { if (cli_parse_int(a, v, 0, 1L << 20, &cg_rank)) return 2; }
        else if (!strcmp(a, "--reg")) {
            if (cli_parse_double(a, v, &reg)) return 2;
            if (reg < 0) return cli_usage_error("--reg %s: must be >= 0", v);
        } else if (!strcmp(a, "--lr")) {
            if (cli_parse_double(a, v, &lr)) return 2;
            if (lr <= 0) return cli_usage_error("--lr %s: must be > 0", v);
        } else return cli_usage_error("%s: unknown option (see nkern predict --help)", a);
    }
    nk_cov_mode cov_mode = !strcmp(cov_s, "none") ? NK_COV_NONE : !strcmp(cov_s, "diag") ? NK_COV_DIAG
                         : !strcmp(cov_s, "full") ? NK_COV_FULL : (nk_cov_mode)-1;
    if ((int)cov_mode < 0) return cli_usage_error("--cov: '%s' (use none, diag or full)", cov_s);
    int use_ntk = ttr_p || tte_p;
    if (use_ntk && !(ttr_p && tte_p)) return cli_usage_error("predict: give both --ntk-train and --ntk-test");
    if (!y_p || !out) return cli_usage_error("predict: missing --y or --out (see nkern predict --help)");
    if (cli_check_out_dir("--out", out)) return 2;
    if (!use_ntk && !(ktr_p && kte_p)) return cli_usage_error("predict: missing --k-train and --k-test (or --ntk-train and --ntk-test)");
    if (cov_mode != NK_COV_NONE && !(ktr_p && kte_p && ktt_p))
        return cli_usage_error("--cov %s needs the NNGP kernels --k-train, --k-test and --k-test-test", cov_s);
    if (cli_parse_times(time_s, times, 64, &ntimes)) return 2;
    if (!ntimes) { times[0] = INFINITY; ntimes = 1; }
    int use_flow = use_ntk || time_s;
    if (cg_rank >= 0 && (use_flow || cov_mode != NK_COV_NONE))
        return cli_usage_error("--cg: solves for the posterior mean only (drop --time, --cov and --ntk-*)");

    nk_error err = {{0}};
    nk_status st = NK_OK;
    nk_array ktr = {0}, kte = {0}, ktt = {0}, ttr = {0}, tte = {0}, y = {0}, yt = {0};
    nk_array lab = {0}, lab_hot = {0}, mean = {0}, cov = {0};
    nk_gp *gp = NULL;
    nk_flow *flow = NULL;
    char *path = NULL;
    if ((ktr_p && cg_rank < 0 && (rc = read_npy(ktr_p, &ktr))) || (kte_p && (rc = read_npy(kte_p, &kte))) ||
        (ktt_p && (rc = read_npy(ktt_p, &ktt))) || (ttr_p && (rc = read_npy(ttr_p, &ttr))) ||
        (tte_p && (rc = read_npy(tte_p, &tte))) || (rc = read_npy(y_p, &y)) ||
        (lab_p && (rc = read_npy(lab_p, &lab))))
        goto done;
    if (lab_p) {
        /* one label per test sample: a shorter or longer file would be scored on a part */
        const nk_array *kt = kte_p ? &kte : &tte;
        size_t m = kt->ndim == 2 ? kt->shape[0] : 0;
        if (lab.ndim != 1 || lab.shape[0] != m) {
            rc = cli_usage_error("--labels-test %s: %zu labels%s, but %s has %zu test samples (give one label per test sample)",
                                 lab_p, lab.ndim == 1 ? lab.shape[0] : nk_array_size(&lab), lab.ndim == 1 ? "" : " (not a vector)",
                                 kte_p ? kte_p : tte_p, m);
            goto done;
        }
    }
    if (one_hot) {
        st = nk_one_hot(&y, 0, 0.9, -0.1, &yt, &err);
        if (st) goto fail;
    }
    const nk_array *targets = one_hot ? &yt : &y;

    nk_infer_opts io;
    nk_infer_opts_default(&io);
    io.diag_reg = reg;
    io.reg_absolute = reg_absolute;
    io.lr = lr;
    if (cg_rank >= 0) {
        st = cg_mean(ktr_p, &kte, targets, reg, reg_absolute, cg_rank, &mean, &err);
    } else if (use_flow) {
        const nk_array *t_train = use_ntk ? &ttr : &ktr, *t_test = use_ntk ? &tte : &kte;
        st = nk_flow_create(t_train, cov_mode ? &ktr : NULL, targets, &io, &flow, &err);
        if (!st) st = nk_flow_predict(flow, t_test, cov_mode ? &kte : NULL, cov_mode ? &ktt : NULL, times, ntimes,
                                      cov_mode, &mean, &cov, &err);
    } else {
        st = nk_gp_create(&ktr, targets, &io, &gp, &err);
        if (!st) st = nk_gp_predict(gp, &kte, cov_mode ? &ktt : NULL, cov_mode, &mean, &cov, &err);
    }
    if (st) goto fail;

    size_t len = strlen(out);
    path = malloc(len + 16);
    if (!path) { st = nk_fail(&err, NK_ERR_NOMEM, "predict: out of memory"); goto fail; }
    memcpy(path, out, len + 1);
    if (len > 4 && !strcmp(path + len - 4, ".npy")) path[len -= 4] = 0;
    /* mean and cov appear together or not at all */
    strcpy(path + len, ".mean.npy");
    rc = cli_txn_write_npy(path, &mean, 0);
    if (!rc && cov_mode) {
        strcpy(path + len, ".cov.npy");
        rc = cli_txn_write_npy(path, &cov, 0);
    }
    if (!rc) rc = cli_txn_commit();
    if (rc) goto done;

    if (lab_p) {
        size_t m = kte_p ? kte.shape[0] : tte.shape[0], k = mean.shape[mean.ndim - 1];
        st = nk_one_hot(&lab, k, 0.9, -0.1, &lab_hot, &err);
        if (st) goto fail;
        for (size_t t = 0; t < (use_flow ? ntimes : 1); t++) {
            nk_array slice = lab_hot;
            double acc = 0, mse = 0;
            slice.data = mean.data + t * m * k;
            st = nk_accuracy(&slice, &lab, &acc, &err);
            if (!st) st = nk_mse(&slice, &lab_hot, &mse, &err);
            if (st) goto fail;
            if (use_flow) printf("t=%g: ", times[t]);
            printf("accuracy %.4f, mse %.5f\n", acc, mse);
        }
    }
    goto done;
fail:
    rc = cli_fail(st, &err);
done:
    nk_gp_free(gp);
    nk_flow_free(flow);
    nk_array_free(&ktr); nk_array_free(&kte); nk_array_free(&ktt); nk_array_free(&ttr);
    nk_array_free(&tte); nk_array_free(&y); nk_array_free(&yt); nk_array_free(&lab);
    nk_array_free(&lab_hot); nk_array_free(&mean); nk_array_free(&cov);
    free(path);
    return rc;
}
