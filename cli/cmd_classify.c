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

/* What `classify --data fashion-mnist` runs without --arch: the best setting found by validation
 * on held-out parts of the Fashion-MNIST training split (images 50000-54999; experiments/README.md,
 * issue 17): four circular 3x3 convolutions and a flatten readout, with the kernel averaged over
 * translations by 0..1 pixel (Li et al. 2019's local average pooling), NTK 0.849 / 0.867 fitted
 * on 1000 / 2000 against 0.840 / 0.860 for the MLP kernel under the same shifts (one circular
 * conv, deeper or shallower MLPs, ZCA, flips, standardization all validated at or below the MLP).
 * Its circular stack runs on the torus path (src/engine/torus.c: every entry one pair's planes at
 * the nine translations), in float32 unless --precision says otherwise (~2e-6 of an entry's
 * Cauchy-Schwarz scale; 1000 / 1000 images: the same accuracy, half the kernel time). */
#define DEFAULT_ARCH "w=1.41 b=0.1 [conv(3,pad=circular) relu]*4 flatten dense"
#define DEFAULT_PREP "none"
#define DEFAULT_AUGMENT "shift:1"
#define DEFAULT_REGS "1e-4,1e-3,1e-2,1e-1"
#define DEFAULT_PREC32 1
/* The template --search uses without --arch. */
#define SEARCH_TEMPLATE "w={w} b={b} avgpool(2) [conv(3) relu]*{depth} {readout} dense"

static const char *classify_help =
    "usage: nkern classify --data SRC [--test-data SRC2] [--arch SPEC] [--kernel nngp|ntk|both]\n"
    "                      [--train N] [--test N] [--first | --balanced] [--seed N]\n"
    "                      [--reg R1,R2,...] [--reg-absolute] [--val FRAC] [--time T1,T2,inf]\n"
    "                      [--prep none|unit|standardize|zca[:EPS[,EPS2,...]]] [--augment none|flip|shift:S|flip,shift:S]\n"
    "                      [--search 'w=.. b=.. depth=.. readout=.. zca=..']\n"
    "                      [--threads N] [--precision f64|f32] [--out PRED.npy] [--quiet|--progress]\n"
    "                      [--w-std W] [--b-std B] [--param ntk|standard] [--width N] [--quad N]\n"
    "SRC: fashion-mnist (Debian's dataset-fashion-mnist), cifar10:DIR (binary batches), or\n"
    "     npy:X.npy,Y.npy (samples and integer labels).  Training samples come from SRC's training\n"
    "     split, test samples from the test split of SRC2 (default SRC); npy data has no splits: without\n"
    "     --test-data the test set is drawn from the same samples.\n"
    "--first: the first N of each split (npy without --test-data: the first --train samples, then the\n"
    "     next --test), so results compare with other methods on identical subsets; default a seeded\n"
    "     random draw (class-balanced with --balanced).\n"
    "Pixels of fashion-mnist and cifar10 are scaled to [0, 1]; npy data is used as stored.\n"
    "--prep unit: per image zero mean, unit L2 norm; standardize: per image zero mean, unit\n"
    "     variance; zca[:EPS]: standardize, then ZCA whitening fitted on the training set with\n"
    "     eps = EPS * mean eigenvalue (default 0.1); several EPS are chosen by validation.\n"
    "--augment: the kernel of the data set closed under flips (mirror images) and/or translations\n"
    "     by 0..S pixels (wrapping around), computed by the engine on transformed inputs\n"
    "     (K_A = |A|^-2 sum over pairs of transforms; translations need an MLP (flatten first) or\n"
    "     circular stride-1 convolutions).\n"
    "--search: candidate settings, each scored on the held-out part of the training set (--val);\n"
    "     the best is refitted on the whole training set and tested.  The values replace {w}, {b},\n"
    "     {depth}, {readout} in --arch (default '" SEARCH_TEMPLATE "');\n"
    "     zca=E1,E2 varies the ZCA regularization.\n"
    "Without --arch and --search: the best setting found by validation on Fashion-MNIST's training\n"
    "     split (printed on the 'setting:' line), with its preprocessing, augmentation, --reg list\n"
    "     and precision (float32).\n"
    "Targets are one-hot, centred: 0.9 for the class, -0.1 elsewhere.\n"
    "--kernel nngp: NNGP posterior mean (with --time: gradient flow of the readout only);\n"
    "     ntk: infinite ensemble after gradient flow for each --time (default inf);\n"
    "     both: the two from one kernel computation (--out PREFIX: PREFIX.nngp.npy, PREFIX.ntk.npy).\n"
    "--reg: diag_reg relative to the mean diagonal of the training kernel (default 1e-4).\n"
    "     With several values, each is fitted on the training set minus a held-out validation\n"
    "     part (--val, default 0.2), the best validation accuracy at the last --time wins, and\n"
    "     the model is refitted on the full training set.  The test set is never used to choose.\n"
    "--precision f64|f32: arithmetic of the kernels' leading stack of stride-1 convs and\n"
    "     activations: float64 (default; the default setting: float32) or float32 (faster; ~1e-6\n"
    "     relative error in the kernels).  Later layers and the regression are always float64.\n"
    "--journal DIR: the kernels of the chosen setting (and each --search candidate's Gram) in tiles\n"
    "     of N x N (--tile, default 256) written into DIR (train.*.npy, test.*.npy, search-*.npy)\n"
    "     with journals of finished tiles: after an interruption (even kill -9) the same command\n"
    "     computes only the missing tiles, and a finished kernel is reused.  Remove DIR when done.\n"
    "     With --augment shift:S each entry holds all its translations (stride-1 circular conv\n"
    "     stacks read out by a flatten, such as the default; flips are not available).\n"
    "     See docs/cluster.md; over MPI ranks: mpirun -n R nkern-mpi classify.\n"
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

/* --journal DIR: one kernel (the Gram of x1 if x2 is NULL) in tiles into DIR/NAME.nngp.npy and
 * DIR/NAME.ntk.npy with the journal DIR/NAME.journal (in this process by nk_kernel_journaled, or
 * by be->kernel over MPI ranks), then read back.  The journals stay, so a run interrupted in a
 * later kernel reuses the finished ones. */
static nk_status journaled_kernel(const cli_classify_backend *be, const nk_plan *plan, const char *spec,
                                  const nk_arch_opts *ao, const nk_array *x1, const nk_array *x2,
                                  const nk_kernel_opts *ko, size_t tile, const char *dir, const char *name, nk_array k[2],
                                  int quiet, nk_error *err)
{
    nk_status st = nk_kernel_opts_check(plan, ko, err);   /* refused before anything is created */
    if (!st) st = nk_tile_check(plan, tile, err);
    if (st) return st;
    if (mkdir(dir, 0777) && errno != EEXIST)
        return nk_fail(err, NK_ERR_INPUT, "--journal %s: cannot create the directory: %s (choose a writable path)", dir, strerror(errno));
    static const char *kinds[2] = {"nngp", "ntk"};
    char paths[2][4200], jpath[4200], runspec[8192];
    const char *outs[2] = {paths[0], paths[1]};
    for (int w = 0; w < 2; w++) snprintf(paths[w], sizeof paths[w], "%s/%s.%s.npy", dir, name, kinds[w]);
    snprintf(jpath, sizeof jpath, "%s/%s.journal", dir, name);
    cli_run_spec(runspec, sizeof runspec, spec, ao);
    nk_journal_stats js;
    st = be ? be->kernel(be->ctx, plan, spec, ao, x1, x2, ko, tile, outs, jpath, quiet, &js, err)
            : nk_kernel_journaled(plan, runspec, x1, x2, ko, tile, outs, 0, jpath, &js, err);
    if (st == NK_OK && !quiet && js.resumed)
        fprintf(stderr, "\njournal: %s kernel: %zu of %zu tiles resumed, %zu computed\n", name, js.resumed, js.tiles,
                js.tiles - js.resumed);
    for (int w = 0; w < 2 && st == NK_OK; w++)
        if (ko->get & (w ? NK_GET_NTK : NK_GET_NNGP)) st = nk_npy_read(paths[w], &k[w], err);
    return st;
}

/* Samples and labels of one source: fashion-mnist or cifar10:DIR (the given split; pixels
 * to be scaled, *scale = 1) or npy:X.npy,Y.npy (all samples, used as stored, *scale = 0). */
static nk_status load_source(const char *opt, const char *src, nk_split split, nk_dataset *out,
                             int *scale, nk_error *err)
{
    *scale = 1;
    if (!strcmp(src, "fashion-mnist")) return nk_fashion_mnist_load(NULL, split, out, err);
    if (!strncmp(src, "cifar10:", 8)) return nk_cifar10_load(src + 8, split, 0, out, err);
    if (strncmp(src, "npy:", 4))
        return nk_fail(err, NK_ERR_INPUT, "%s: '%s' (use fashion-mnist, cifar10:DIR or npy:X.npy,Y.npy)", opt, src);
    char xp[4096], yp[4096];
    const char *comma = strchr(src + 4, ',');
    size_t xl = comma ? (size_t)(comma - src - 4) : 0;
    if (!comma || !xl || xl >= sizeof xp || strlen(comma + 1) >= sizeof yp || !comma[1])
        return nk_fail(err, NK_ERR_INPUT, "%s npy:X.npy,Y.npy: '%s' (give samples and labels, comma-separated)", opt, src);
    memcpy(xp, src + 4, xl);
    xp[xl] = 0;
    strcpy(yp, comma + 1);
    *scale = 0;
    nk_status st = nk_npy_read(xp, &out->x, err);
    if (!st) st = nk_npy_read(yp, &out->y, err);
    if (!st && (out->y.ndim != 1 || out->x.ndim < 2 || out->x.shape[0] != out->y.shape[0]))
        st = nk_fail(err, NK_ERR_INPUT, "%s, %s: need samples (N, ...) and N labels (N); got %zu samples and %s%zu labels",
                     xp, yp, out->x.shape[0], out->y.ndim == 1 ? "" : "a non-vector of ", out->y.shape[0]);
    if (st) nk_dataset_free(out);
    return st;
}

/* ---- validation: the regularization (and, with --search, the setting) chosen on a held-out
 * part of the training set.  The split is drawn from the training labels alone, with the same
 * seed for every candidate, so candidates are compared on identical folds. */
typedef struct {
    size_t n, n_fit, n_val, ncls;
    size_t *fit_idx, *val_idx;
    nk_array y_fit, y_val, lab_val; /* one-hot targets of both parts, labels of the held-out */
} val_split;

static void val_split_free(val_split *v)
{
    free(v->fit_idx);
    free(v->val_idx);
    nk_array_free(&v->y_fit);
    nk_array_free(&v->y_val);
    nk_array_free(&v->lab_val);
    memset(v, 0, sizeof *v);
}

static nk_status val_split_make(const nk_array *labels, const nk_array *y_train, double frac, int balanced,
                                uint64_t seed, val_split *v, nk_error *err)
{
    memset(v, 0, sizeof *v);
    v->n = labels->shape[0];
    v->ncls = y_train->shape[1];
    v->n_val = (size_t)llround(frac * (double)v->n);
    if (v->n_val < 1 || v->n_val >= v->n)
        return nk_fail(err, NK_ERR_INPUT, "--val %g of %zu training samples leaves no validation or no fitting part (use more --train or another --val)",
                       frac, v->n);
    v->n_fit = v->n - v->n_val;
    v->val_idx = malloc(v->n_val * sizeof *v->val_idx);
    v->fit_idx = malloc(v->n_fit * sizeof *v->fit_idx);
    unsigned char *in_val = calloc(v->n, 1);
    nk_status st = NK_OK;
    if (!v->val_idx || !v->fit_idx || !in_val) st = nk_fail(err, NK_ERR_NOMEM, "classify: out of memory");
    if (!st) st = nk_subset_indices(labels, v->n_val, balanced, seed, v->val_idx, err);
    size_t ys[2] = {v->n_fit, v->ncls}, vs[2] = {v->n_val, v->ncls};
    if (!st) st = nk_array_alloc(&v->y_fit, 2, ys, err);
    if (!st) st = nk_array_alloc(&v->y_val, 2, vs, err);
    if (!st) st = nk_array_alloc(&v->lab_val, 1, &v->n_val, err);
    if (!st) {
        for (size_t i = 0; i < v->n_val; i++) in_val[v->val_idx[i]] = 1;
        for (size_t i = 0, k = 0; i < v->n; i++)
            if (!in_val[i]) v->fit_idx[k++] = i;
        for (size_t i = 0; i < v->n_fit; i++)
            memcpy(v->y_fit.data + i * v->ncls, y_train->data + v->fit_idx[i] * v->ncls, v->ncls * sizeof(double));
        for (size_t i = 0; i < v->n_val; i++) {
            memcpy(v->y_val.data + i * v->ncls, y_train->data + v->val_idx[i] * v->ncls, v->ncls * sizeof(double));
            v->lab_val.data[i] = labels->data[v->val_idx[i]];
        }
    }
    free(in_val);
    if (st) val_split_free(v);
    return st;
}

/* Fit every regularization on the fitting part of the training Gram ktr, score on the held-out
 * part; the best accuracy at the last time wins (ties: smaller MSE).  *acc < 0 if all failed. */
static nk_status choose_reg(const solver *sv, const nk_array *ktr, const val_split *v, const double *regs,
                            size_t nregs, int verbose, double *best_reg, double *best_acc, double *best_mse,
                            nk_error *err)
{
    nk_array k_fit = {0}, k_val = {0}, pred = {0};
    *best_acc = -1;
    *best_mse = INFINITY;
    *best_reg = regs[0];
    if (sub_block(ktr, v->fit_idx, v->n_fit, v->fit_idx, v->n_fit, &k_fit) ||
        sub_block(ktr, v->val_idx, v->n_val, v->fit_idx, v->n_fit, &k_val)) {
        nk_array_free(&k_fit);
        return nk_fail(err, NK_ERR_NOMEM, "classify: out of memory for the validation blocks");
    }
    for (size_t r = 0; r < nregs; r++) {
        double eps = 0, acc = 0, mse = 0;
        nk_error verr = {{0}};
        nk_status vst = fit_predict(sv, &k_fit, &v->y_fit, &k_val, regs[r], &pred, &eps, &verr);
        if (!vst) vst = score(&pred, sv->use_flow ? sv->ntimes - 1 : 0, &v->lab_val, &v->y_val, &acc, &mse, &verr);
        nk_array_free(&pred);
        if (vst) {
            /* A regularization too small for this kernel is skipped, not fatal. */
            if (verbose) fprintf(stderr, "validation: reg %g failed: %s\n", regs[r], verr.msg);
            continue;
        }
        if (verbose)
            printf("validation: reg %g (eps %.3g): accuracy %.4f, mse %.5f (%zu fit, %zu held out)\n", regs[r], eps, acc,
                   mse, v->n_fit, v->n_val);
        if (acc > *best_acc || (acc == *best_acc && mse < *best_mse)) {
            *best_acc = acc;
            *best_mse = mse;
            *best_reg = regs[r];
        }
    }
    nk_array_free(&k_fit);
    nk_array_free(&k_val);
    return NK_OK;
}

/* ---- preprocessing, fitted on the training set only */
typedef struct {
    int kind;       /* -1 none, NK_STD_UNIT_NORM, NK_STD_UNIT_VAR, or PREP_ZCA */
    double zca_eps; /* relative to the mean eigenvalue */
} prep_cfg;
enum { PREP_ZCA = 2 };

static void prep_name(const prep_cfg *p, char *buf, size_t len)
{
    if (p->kind == PREP_ZCA) snprintf(buf, len, "zca:%g", p->zca_eps);
    else snprintf(buf, len, "%s", p->kind == NK_STD_UNIT_NORM ? "unit" : p->kind == NK_STD_UNIT_VAR ? "standardize" : "none");
}

/* Apply to the training images x (in place) and return the fitted ZCA (or NULL) for the test set. */
static nk_status prep_fit(const prep_cfg *p, nk_array *x, nk_zca **zca, nk_error *err)
{
    *zca = NULL;
    if (p->kind < 0) return NK_OK;
    nk_status st = nk_prep_standardize(x, p->kind == NK_STD_UNIT_NORM ? NK_STD_UNIT_NORM : NK_STD_UNIT_VAR, err);
    if (!st && p->kind == PREP_ZCA) st = nk_zca_fit(x, p->zca_eps, zca, err);
    if (!st && *zca) st = nk_zca_apply(*zca, x, err);
    return st;
}

static nk_status prep_apply(const prep_cfg *p, const nk_zca *zca, nk_array *x, nk_error *err)
{
    if (p->kind < 0) return NK_OK;
    nk_status st = nk_prep_standardize(x, p->kind == NK_STD_UNIT_NORM ? NK_STD_UNIT_NORM : NK_STD_UNIT_VAR, err);
    if (!st && zca) st = nk_zca_apply(zca, x, err);
    return st;
}

/* --augment: flips and/or translations by 0..shift pixels */
typedef struct {
    int flip, shift;
} augment_cfg;

/* "none", "flip", "shift:S", "flip,shift:S"; 0 or 2 (usage error). */
static int parse_augment(const char *s, augment_cfg *a)
{
    a->flip = a->shift = 0;
    if (!strcmp(s, "none")) return 0;
    const char *p = s;
    while (*p) {
        size_t len = strcspn(p, ",");
        long v;
        char num[16];
        if (len == 4 && !strncmp(p, "flip", 4)) a->flip = 1;
        else if (len > 6 && len < 6 + sizeof num && !strncmp(p, "shift:", 6)) {
            memcpy(num, p + 6, len - 6);
            num[len - 6] = 0;
            if (cli_parse_int("--augment shift:S", num, 1, 8, &v)) return 2;
            a->shift = (int)v;
        } else return cli_usage_error("--augment: '%s' (use none, flip, shift:S or flip,shift:S with S in 1..8)", s);
        p += len;
        if (*p == ',') p++;
    }
    return 0;
}

static void augment_name(const augment_cfg *a, char *buf, size_t len)
{
    if (a->flip && a->shift) snprintf(buf, len, "flip,shift:%d", a->shift);
    else if (a->shift) snprintf(buf, len, "shift:%d", a->shift);
    else snprintf(buf, len, "%s", a->flip ? "flip" : "none");
}

/* Kernels between x1 and x2 (NULL: the Gram of x1), augmented on request. */
static nk_status kernels(const nk_plan *plan, const nk_array *x1, const nk_array *x2, const nk_kernel_opts *ko,
                         const augment_cfg *aug, nk_array k[2], nk_error *err)
{
    nk_array *nngp = (ko->get & NK_GET_NNGP) ? &k[0] : NULL, *ntk = (ko->get & NK_GET_NTK) ? &k[1] : NULL;
    if (aug->flip || aug->shift) return nk_kernel_matrix_augment(plan, x1, x2, ko, aug->flip, aug->shift, 0, nngp, ntk, err);
    return nk_kernel_matrix(plan, x1, x2, ko, nngp, ntk, err);
}

/* ---- --search: candidate settings from a template spec with {key} placeholders */
#define SEARCH_KEYS 5
static const char *const search_keys[SEARCH_KEYS] = {"w", "b", "depth", "readout", "zca"};
#define SEARCH_VALS 16

typedef struct {
    char vals[SEARCH_KEYS][SEARCH_VALS][32];
    int nvals[SEARCH_KEYS];
} search_space;

/* "w=1,1.41 b=0,0.1 depth=2,3 readout=gap,flatten zca=0.01,0.1" (spaces or ';' between keys). */
static int parse_search(const char *s, search_space *sp)
{
    memset(sp, 0, sizeof *sp);
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ';') p++;
        if (!*p) break;
        size_t klen = strcspn(p, "=");
        int k;
        for (k = 0; k < SEARCH_KEYS; k++)
            if (strlen(search_keys[k]) == klen && !strncmp(p, search_keys[k], klen)) break;
        if (k == SEARCH_KEYS || p[klen] != '=')
            return cli_usage_error("--search: '%.*s' (give KEY=V1,V2,... with KEY one of w, b, depth, readout, zca)",
                                   (int)strcspn(p, " ;"), p);
        if (sp->nvals[k]) return cli_usage_error("--search: %s given twice (list its values once: %s=V1,V2)", search_keys[k], search_keys[k]);
        p += klen + 1;
        size_t vlen = strcspn(p, " ;");
        if (!vlen) return cli_usage_error("--search: %s has no values (e.g. %s=V1,V2)", search_keys[k], search_keys[k]);
        while (vlen) {
            size_t one = strcspn(p, ",; ");
            if (one > vlen) one = vlen;
            if (!one || one >= sizeof sp->vals[k][0] || sp->nvals[k] == SEARCH_VALS)
                return cli_usage_error("--search: the values of %s (give up to %d comma-separated values)", search_keys[k], SEARCH_VALS);
            memcpy(sp->vals[k][sp->nvals[k]], p, one);
            sp->vals[k][sp->nvals[k]++][one] = 0;
            p += one;
            vlen -= one;
            if (vlen && *p == ',') { p++; vlen--; }
        }
    }
    return 0;
}

/* The template with each {key} replaced by value choice[key]; 0, or 2 with a usage error. */
static int expand_template(const char *tmpl, const search_space *sp, const int *choice, char *out, size_t len)
{
    size_t o = 0;
    for (const char *p = tmpl; *p;) {
        const char *val = NULL;
        size_t skip = 1;
        if (*p == '{') {
            size_t klen = strcspn(p + 1, "}");
            for (int k = 0; k < SEARCH_KEYS - 1; k++)
                if (strlen(search_keys[k]) == klen && !strncmp(p + 1, search_keys[k], klen) && p[1 + klen] == '}') {
                    if (!sp->nvals[k])
                        return cli_usage_error("--arch: the template uses {%s} but --search gives no values for it (add %s=V1,V2)",
                                               search_keys[k], search_keys[k]);
                    val = sp->vals[k][choice[k]];
                    skip = klen + 2;
                }
        }
        size_t add = val ? strlen(val) : 1;
        if (o + add + 1 > len) return cli_usage_error("--arch: the expanded spec is longer than %zu characters", len - 1);
        memcpy(out + o, val ? val : p, add);
        o += add;
        p += skip;
    }
    out[o] = 0;
    return 0;
}


/* FNV-1a of two texts: a short file name for a --search candidate. */
static unsigned text_hash(const char *a, const char *b)
{
    uint32_t h = 2166136261u;
    for (const char *t = a; t; t = t == a ? b : NULL) {
        for (const unsigned char *p = (const unsigned char *)t; *p; p++) h = (h ^ *p) * 16777619u;
        h = (h ^ 0xff) * 16777619u; /* a separator, so ("ab", "c") and ("a", "bc") differ */
    }
    return h;
}

int cmd_classify(int argc, char **argv)
{
    return cli_classify(argc, argv, NULL);
}

int cli_classify(int argc, char **argv, const cli_classify_backend *be)
{
    const char *data = NULL, *test_data = NULL, *spec = NULL, *kernel = "ntk", *prep = NULL, *out = NULL;
    const char *reg_s = NULL, *time_s = NULL, *augment = NULL, *search_s = NULL;
    long n_train = 1000, n_test = 1000, seed = 0, threads = 0, tile = 256;
    const char *journal_dir = NULL;
    double val_frac = 0.2, regs[32], times[64];
    size_t nregs = 0, ntimes = 0;
    int balanced = 0, first_n = 0, quiet = 0, force = 0, reg_absolute = 0, prec32 = 0, prec_set = 0, rc = 0;
    nk_arch_opts ao;
    nk_arch_opts_default(&ao);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (be && be->help) fputs(be->help, stdout);
            fputs(classify_help, stdout);
            return 0;
        }
        if ((rc = cli_arch_option(argc, argv, &i, &ao)) >= 0) { if (rc) return rc; continue; }
        if (!strcmp(a, "--balanced")) { balanced = 1; continue; }
        if (!strcmp(a, "--first")) { first_n = 1; continue; }
        if (!strcmp(a, "--reg-absolute")) { reg_absolute = 1; continue; }
        if (!strcmp(a, "--quiet")) { quiet = 1; continue; }
        if (!strcmp(a, "--progress")) { force = 1; continue; }
        if (!v) return cli_usage_error("%s: unknown option or missing value (see nkern classify --help)", a);
        i++;
        if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--test-data")) test_data = v;
        else if (!strcmp(a, "--arch")) spec = v;
        else if (!strcmp(a, "--kernel")) kernel = v;
        else if (!strcmp(a, "--prep")) prep = v;
        else if (!strcmp(a, "--augment")) augment = v;
        else if (!strcmp(a, "--search")) search_s = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--reg")) reg_s = v;
        else if (!strcmp(a, "--time")) time_s = v;
        else if (!strcmp(a, "--precision")) { if (cli_parse_precision(a, v, &prec32)) return 2; prec_set = 1; }
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
    if (out && cli_check_out_dir("--out", out)) return 2;
    if (first_n && balanced) return cli_usage_error("--first and --balanced: choose one (the first N of each split, or a class-balanced random draw)");
    /* Without --arch (and --search) the validated default setting; its preprocessing,
     * augmentation and regularizations apply unless given. */
    int use_default = !spec && !search_s;
    if (use_default) {
        spec = DEFAULT_ARCH;
        if (!prep) prep = DEFAULT_PREP;
        if (!augment) augment = DEFAULT_AUGMENT;
        if (!reg_s) reg_s = DEFAULT_REGS;
        if (!prec_set) prec32 = DEFAULT_PREC32;
    }
    if (!spec) spec = SEARCH_TEMPLATE;
    if (!prep) prep = "none";
    if (!augment) augment = "none";
    if (!reg_s) reg_s = search_s ? DEFAULT_REGS : "1e-4";
    augment_cfg aug;
    if (parse_augment(augment, &aug)) return 2;
    char aug_name[32];
    augment_name(&aug, aug_name, sizeof aug_name);
    if (be && !journal_dir)
        return cli_usage_error("%s: needs --journal DIR (the kernels' tiles are written there by every rank, and the run resumes from it)", be->cmd);
    if (journal_dir && aug.flip)
        return cli_usage_error("--journal with --augment %s: journaled kernels take translations (shift:S), not flips (drop flip, or drop --journal)", augment);
    /* passes over the kernels: 0 = nngp, 1 = ntk; both come from one kernel computation */
    int first = !strcmp(kernel, "ntk") ? 1 : 0, last = !strcmp(kernel, "nngp") ? 0 : 1;
    if (strcmp(kernel, "ntk") && strcmp(kernel, "nngp") && strcmp(kernel, "both"))
        return cli_usage_error("--kernel: '%s' (use nngp, ntk or both)", kernel);
    if (parse_list("--reg", reg_s, 0, regs, 32, &nregs)) return 2;
    if (time_s && parse_list("--time", time_s, 1, times, 64, &ntimes)) return 2;
    if (!time_s) { times[0] = INFINITY; ntimes = 1; }
    search_space sp;
    memset(&sp, 0, sizeof sp);
    if (search_s && parse_search(search_s, &sp)) return 2;
    prep_cfg pc = {-1, 0.1};
    if (!strcmp(prep, "unit")) pc.kind = NK_STD_UNIT_NORM;
    else if (!strcmp(prep, "standardize")) pc.kind = NK_STD_UNIT_VAR;
    else if (!strncmp(prep, "zca", 3) && (!prep[3] || prep[3] == ':')) {
        /* zca:E1,E2,... with several values: the eps is chosen by validation like --search zca= */
        pc.kind = PREP_ZCA;
        if (prep[3]) {
            double eps[SEARCH_VALS];
            size_t ne = 0;
            if (parse_list("--prep zca:EPS", prep + 4, 0, eps, SEARCH_VALS, &ne)) return 2;
            pc.zca_eps = eps[0];
            if (ne > 1) {
                if (sp.nvals[4]) return cli_usage_error("--prep zca:%s and --search zca=...: give the ZCA values once", prep + 4);
                for (size_t e = 0; e < ne; e++) snprintf(sp.vals[4][e], sizeof sp.vals[4][e], "%.17g", eps[e]);
                sp.nvals[4] = (int)ne;
            }
        }
    } else if (strcmp(prep, "none")) return cli_usage_error("--prep: '%s' (use none, unit, standardize or zca[:EPS[,EPS2...]])", prep);
    if (sp.nvals[4] && pc.kind != PREP_ZCA) pc.kind = PREP_ZCA;
    /* defaults of keys the template uses but the search does not vary */
    static const char *const key_default[SEARCH_KEYS - 1] = {"1.41", "0.1", "3", "gap"};
    for (int k = 0; search_s && k < SEARCH_KEYS - 1; k++) {
        char ph[16];
        snprintf(ph, sizeof ph, "{%s}", search_keys[k]);
        if (!sp.nvals[k] && strstr(spec, ph)) {
            strcpy(sp.vals[k][0], key_default[k]);
            sp.nvals[k] = 1;
        }
    }

    nk_error err = {{0}};
    nk_status st = NK_OK;
    nk_dataset full = {{0}, {0}}, full_test = {{0}, {0}}, rest = {{0}, {0}};
    nk_dataset train = {{0}, {0}}, test = {{0}, {0}};
    nk_array train_x = {0}; /* the training images after pixel scaling, before --prep */
    nk_arch *arch = NULL;
    nk_plan *plan = NULL;
    nk_zca *zca = NULL;
    nk_array kt[2] = {{0}}, ks[2] = {{0}}, y_train = {0}, y_test = {0}, pred = {0};
    val_split vs;
    memset(&vs, 0, sizeof vs);
    double t_load = 0, t_kernel = 0, t_solve = 0, t_search = 0, t0;
    uint64_t useed = (uint64_t)seed;
    char chosen[4096];

    /* ---- load and subset */
    t0 = seconds();
    int scale_pixels = 1, test_scale = 1;
    const char *test_src = test_data ? test_data : data;
    st = load_source("--data", data, NK_SPLIT_TRAIN, &full, &scale_pixels, &err);
    /* npy data without --test-data: the test set comes from the same samples */
    int shared = !test_data && !strncmp(data, "npy:", 4);
    if (!st && !shared) st = load_source(test_data ? "--test-data" : "--data", test_src, NK_SPLIT_TEST, &full_test, &test_scale, &err);
    if (st == NK_ERR_IO) st = NK_ERR_INPUT; /* an input that cannot be read is bad input: exit 2 */
    if (st) goto fail;
    if (shared) test_scale = scale_pixels;
    if (scale_pixels != test_scale) {
        rc = cli_usage_error("--test-data %s: the training data is %s and the test data is not (give both as image sets or both as npy)",
                             test_src, scale_pixels ? "an image set" : "npy");
        goto done;
    }
    if (shared && (size_t)(n_train + n_test) > full.y.shape[0])
        st = nk_fail(&err, NK_ERR_INPUT, "%s: %zu samples, fewer than --train %ld + --test %ld (ask for fewer)", data,
                     full.y.shape[0], n_train, n_test);
    if (!st && shared && first_n) {
        /* the first n_train samples train, the next n_test test */
        st = nk_dataset_range(&full, 0, (size_t)n_train, &train, &err);
        if (!st) st = nk_dataset_range(&full, (size_t)n_train, (size_t)n_test, &test, &err);
    } else if (!st && shared) {
        /* The test set is drawn first from all samples; training samples from the rest. */
        st = nk_dataset_split(&full, (size_t)n_test, balanced, useed + 1, &rest, &test, &err);
        if (!st) st = nk_dataset_subset(&rest, (size_t)n_train, balanced, useed, &train, &err);
    } else if (!st && first_n) {
        st = nk_dataset_range(&full, 0, (size_t)n_train, &train, &err);
        if (!st) st = nk_dataset_range(&full_test, 0, (size_t)n_test, &test, &err);
    } else if (!st) {
        st = nk_dataset_subset(&full, (size_t)n_train, balanced, useed, &train, &err);
        if (!st) st = nk_dataset_subset(&full_test, (size_t)n_test, balanced, useed + 1, &test, &err);
    }
    nk_dataset_free(&full);
    nk_dataset_free(&full_test);
    nk_dataset_free(&rest);
    if (st) goto fail;
    if (train.x.ndim != test.x.ndim || nk_array_size(&train.x) / train.y.shape[0] != nk_array_size(&test.x) / test.y.shape[0]) {
        rc = cli_usage_error("--test-data %s: its samples differ in shape from those of --data %s (give data of one kind)", test_src, data);
        goto done;
    }
    if (scale_pixels) {
        st = nk_prep_unit_range(&train.x, 0, 255, &err);
        if (!st) st = nk_prep_unit_range(&test.x, 0, 255, &err);
    }
    /* a copy of the scaled training images: each candidate of --search preprocesses its own */
    if (!st) st = nk_array_alloc(&train_x, train.x.ndim, train.x.shape, &err);
    if (st) goto fail;
    memcpy(train_x.data, train.x.data, nk_array_size(&train.x) * sizeof(double));
    t_load = seconds() - t0;

    size_t n = train.y.shape[0], m = test.y.shape[0];
    if (!quiet) {
        fprintf(stderr, "data: %s%s%s, %zu train, %zu test%s%s, sample shape", data, test_data ? ", test from " : "",
                test_data ? test_data : "", n, m, balanced ? " (balanced)" : "", first_n ? " (the first of each split)" : "");
        for (int a = 1; a < train.x.ndim; a++) fprintf(stderr, "%s%zu", a > 1 ? "x" : " ", train.x.shape[a]);
        fprintf(stderr, ", %.2f s\n", t_load);
    }

    /* ---- targets and the validation split: from the training labels only */
    solver sv;
    sv.times = times;
    sv.ntimes = ntimes;
    nk_infer_opts_default(&sv.io);
    sv.io.reg_absolute = reg_absolute;
    /* Classes: one more than the largest label of either set (nk_one_hot checks labels). */
    st = nk_one_hot(&train.y, 0, 0.9, -0.1, &y_train, &err);
    if (!st) st = nk_one_hot(&test.y, 0, 0.9, -0.1, &y_test, &err);
    size_t ncls = !st && y_train.shape[1] > y_test.shape[1] ? y_train.shape[1] : y_test.shape[1];
    if (!st && (y_train.shape[1] != ncls || y_test.shape[1] != ncls)) {
        nk_array_free(&y_train);
        nk_array_free(&y_test);
        st = nk_one_hot(&train.y, ncls, 0.9, -0.1, &y_train, &err);
        if (!st) st = nk_one_hot(&test.y, ncls, 0.9, -0.1, &y_test, &err);
    }
    int validate = nregs > 1 || search_s || sp.nvals[4];
    if (!st && validate) st = val_split_make(&train.y, &y_train, val_frac, balanced, useed + 2, &vs, &err);
    if (st) goto fail;

    nk_kernel_opts ko;
    nk_kernel_opts_default(&ko);
    ko.nthreads = (int)threads;
    ko.get = (first == 0 ? NK_GET_NNGP : 0) | (last == 1 ? NK_GET_NTK : 0);
    ko.f32 = prec32;
    /* journaled kernels take translations per entry (the library refuses plans it cannot
     * translate on the fly, naming the fix); the others go through nk_kernel_matrix_augment */
    nk_kernel_opts kj = ko;
    kj.shift = aug.shift;
    cli_progress pr;
    ko.progress = cli_progress_cb;
    ko.progress_ctx = &pr;

    /* ---- --search: every candidate's training Gram, scored on the held-out part of the training
     * set.  Only training samples and labels enter; the best candidate's Gram is kept. */
    snprintf(chosen, sizeof chosen, "%s", spec);
    if (search_s || sp.nvals[4]) {
        t0 = seconds();
        int choice[SEARCH_KEYS] = {0}, best_choice[SEARCH_KEYS] = {0}, sel = last; /* pass that decides */
        for (int k = 0; k < SEARCH_KEYS; k++)
            if (!sp.nvals[k]) sp.nvals[k] = 1; /* one (unused) value: the loop below runs once */
        double best_acc = -1, best_mse = INFINITY;
        for (;;) {
            char cand[4096], pname[64];
            if ((rc = expand_template(spec, &sp, choice, cand, sizeof cand))) goto done;
            prep_cfg cp = pc;
            if (sp.vals[4][0][0]) cp.zca_eps = strtod(sp.vals[4][choice[4]], NULL);
            prep_name(&cp, pname, sizeof pname);
            nk_array x = {0}, k[2] = {{0}};
            nk_zca *z = NULL;
            nk_arch *ca = NULL;
            nk_plan *cplan = NULL;
            double c0 = seconds(), reg = 0, acc = -1, mse = INFINITY;
            st = nk_array_alloc(&x, train_x.ndim, train_x.shape, &err);
            if (!st) {
                memcpy(x.data, train_x.data, nk_array_size(&x) * sizeof(double));
                st = prep_fit(&cp, &x, &z, &err);
            }
            if (!st) st = nk_arch_parse(cand, &ao, &ca, &err);
            if (!st) st = nk_plan_create(ca, x.ndim - 1, x.shape + 1, &cplan, &err);
            if (!st) {
                cli_progress_init(&pr, "kernel", cli_progress_default(quiet, force));
                if (journal_dir) {
                    /* a candidate's files are named by its spec and preprocessing: a rerun reuses them */
                    char name[64];
                    snprintf(name, sizeof name, "search-%08x", text_hash(cand, pname));
                    st = journaled_kernel(be, cplan, cand, &ao, &x, NULL, &kj, (size_t)tile, journal_dir, name, k, quiet, &err);
                } else {
                    st = kernels(cplan, &x, NULL, &ko, &aug, k, &err);
                }
            }
            if (!st) {
                sv.use_flow = sel == 1 || time_s != NULL;
                st = choose_reg(&sv, &k[sel], &vs, regs, nregs, 0, &reg, &acc, &mse, &err);
            }
            if (!st)
                printf("search: %s | prep %s | augment %s: validation accuracy %.4f, mse %.5f (reg %g, %s, %.1f s)\n", cand,
                       pname, aug_name, acc, mse, reg, sel ? "ntk" : "nngp", seconds() - c0);
            int better = !st && (acc > best_acc || (acc == best_acc && mse < best_mse));
            if (better) {
                /* keep this candidate's Gram, preprocessed images, ZCA and plan */
                best_acc = acc;
                best_mse = mse;
                memcpy(best_choice, choice, sizeof choice);
                snprintf(chosen, sizeof chosen, "%s", cand);
                pc = cp;
                for (int q = 0; q < 2; q++) { nk_array_free(&kt[q]); kt[q] = k[q]; k[q] = (nk_array){0}; }
                nk_array_free(&train.x); train.x = x; x = (nk_array){0};
                nk_zca_free(zca); zca = z; z = NULL;
                nk_plan_free(plan); plan = cplan; cplan = NULL;
                nk_arch_free(arch); arch = ca; ca = NULL;
            }
            for (int q = 0; q < 2; q++) nk_array_free(&k[q]);
            nk_array_free(&x);
            nk_zca_free(z);
            nk_plan_free(cplan);
            nk_arch_free(ca);
            if (st) goto fail;
            int key;
            for (key = 0; key < SEARCH_KEYS; key++) {
                if (++choice[key] < sp.nvals[key]) break;
                choice[key] = 0;
            }
            if (key == SEARCH_KEYS) break;
        }
        if (best_acc < 0) {
            st = nk_fail(&err, NK_ERR_INPUT, "--search: every candidate failed on the validation split (try larger --reg values)");
            goto fail;
        }
        char pname[64];
        prep_name(&pc, pname, sizeof pname);
        printf("search: chose %s | prep %s | augment %s (validation accuracy %.4f)\n", chosen, pname, aug_name, best_acc);
        t_search = seconds() - t0;
    }

    /* ---- the chosen setting: preprocess (statistics of the training set only), kernels */
    t0 = seconds();
    if (!plan) {
        st = prep_fit(&pc, &train.x, &zca, &err);
        if (!st) st = nk_arch_parse(chosen, &ao, &arch, &err);
        if (!st) st = nk_plan_create(arch, train.x.ndim - 1, train.x.shape + 1, &plan, &err);
    }
    if (!st) st = prep_apply(&pc, zca, &test.x, &err);
    if (st) goto fail;
    if (!quiet) {
        char pname[64];
        prep_name(&pc, pname, sizeof pname);
        fprintf(stderr, "setting: %s | prep %s | augment %s | precision %s%s\n", chosen, pname, aug_name,
                prec32 ? "f32" : "f64", use_default ? " (the default; give --arch to choose)" : "");
    }
    if (!quiet) /* the training Gram and the test-train block */
        cli_warn_long_run("classify", plan, train.x.shape[0] + test.x.shape[0], 0, (int)threads, cli_mean_square(&train.x), prec32,
                          aug.shift);
    cli_progress_init(&pr, "kernel", cli_progress_default(quiet, force));
    if (journal_dir) {
        /* with --search, the chosen candidate's Gram is already in kt (and in its own journal) */
        if (!kt[first].data)
            st = journaled_kernel(be, plan, chosen, &ao, &train.x, NULL, &kj, (size_t)tile, journal_dir, "train", kt, quiet, &err);
        if (!st) st = journaled_kernel(be, plan, chosen, &ao, &test.x, &train.x, &kj, (size_t)tile, journal_dir, "test", ks, quiet, &err);
    } else {
        if (!kt[first].data) st = kernels(plan, &train.x, NULL, &ko, &aug, kt, &err);
        if (!st) st = kernels(plan, &test.x, &train.x, &ko, &aug, ks, &err);
    }
    if (st) goto fail;
    t_kernel = seconds() - t0;

    /* ---- solve */
    t0 = seconds();
    for (int pass = first; pass <= last; pass++) {
        const nk_array ktr = kt[pass], kte = ks[pass];
        const char *kname = pass ? "ntk" : "nngp";
        sv.use_flow = pass == 1 || time_s != NULL;
        double best_reg = regs[0];
        if (nregs > 1) {
            double acc, mse;
            st = choose_reg(&sv, &ktr, &vs, regs, nregs, !quiet, &best_reg, &acc, &mse, &err);
            if (!st && acc < 0)
                st = nk_fail(&err, NK_ERR_INPUT, "classify: every --reg value failed on the validation split (try larger values, e.g. --reg 1e-3,1e-2,1e-1)");
            if (st) goto fail;
            if (!quiet) printf("validation: chose reg %g\n", best_reg);
        }
        double eps = 0;
        st = fit_predict(&sv, &ktr, &y_train, &kte, best_reg, &pred, &eps, &err);
        if (st) goto fail;
        for (size_t t = 0; t < (sv.use_flow ? ntimes : 1); t++) {
            double acc = 0, mse = 0;
            st = score(&pred, t, &test.y, &y_test, &acc, &mse, &err);
            if (st) goto fail;
            char tbuf[32] = "";
            if (sv.use_flow) snprintf(tbuf, sizeof tbuf, " t=%g", times[t]);
            printf("test: %s%s reg %g (eps %.3g): accuracy %.4f, mse %.5f (%zu test, %zu train)\n", kname, tbuf, best_reg,
                   eps, acc, mse, m, n);
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
        nk_array_free(&pred);
    }
    t_solve = seconds() - t0;
    if (search_s || sp.nvals[4]) printf("time: load %.2f s, search %.2f s, kernel %.2f s, solve %.2f s\n", t_load, t_search, t_kernel, t_solve);
    else printf("time: load %.2f s, kernel %.2f s, solve %.2f s\n", t_load, t_kernel, t_solve);
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
    nk_array_free(&train_x);
    nk_zca_free(zca);
    nk_plan_free(plan);
    nk_arch_free(arch);
    for (int q = 0; q < 2; q++) { nk_array_free(&kt[q]); nk_array_free(&ks[q]); }
    nk_array_free(&y_train);
    nk_array_free(&y_test);
    nk_array_free(&pred);
    val_split_free(&vs);
    return rc;
}
