/* data.c -- CIFAR-10 reader, seeded subsets and splits, per-image standardization, ZCA.
 * (Fashion-MNIST lives in data_fmnist.c: it needs the IDX reader.) */
#include "nk_data.h"

#include <cblas.h>
#include <errno.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nk_dataset_free(nk_dataset *d)
{
    if (!d) return;
    nk_array_free(&d->x);
    nk_array_free(&d->y);
}

/* --------------------------------------------------------------- CIFAR-10 -- */

enum { CIFAR_SIDE = 32, CIFAR_CH = 3, CIFAR_PIX = CIFAR_SIDE * CIFAR_SIDE * CIFAR_CH,
       CIFAR_REC = 1 + CIFAR_PIX };

/* Records of one batch file: size must be a whole number of records. */
static nk_status cifar_count(const char *path, size_t *n, nk_error *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return nk_fail(err, NK_ERR_IO, "%s: cannot open (%s) (give the directory of the "
                       "CIFAR-10 binary version: data_batch_1.bin ... test_batch.bin)",
                       path, strerror(errno));
    nk_status st = NK_OK;
    long size = -1;
    if (fseek(fp, 0, SEEK_END) == 0) size = ftell(fp);
    fclose(fp);
    if (size < 0) return nk_fail(err, NK_ERR_IO, "%s: cannot determine the file size", path);
    if (size == 0 || (size_t)size % CIFAR_REC)
        st = nk_fail(err, NK_ERR_INPUT,
                     "%s: %ld bytes is not a whole number of %d-byte records (labels and "
                     "images do not match; is this the CIFAR-10 binary version?)",
                     path, size, CIFAR_REC);
    *n = (size_t)size / CIFAR_REC;
    return st;
}

/* Read `count` records of path into rows [row, row + count) of x and y (CHW -> HWC). */
static nk_status cifar_read_into(const char *path, size_t count, nk_dataset *d, size_t row,
                                 nk_error *err)
{
    unsigned char *rec = malloc(CIFAR_REC);
    FILE *fp = NULL;
    nk_status st = NK_OK;
    if (!rec) return nk_fail(err, NK_ERR_NOMEM, "%s: out of memory", path);
    fp = fopen(path, "rb");
    if (!fp) {
        st = nk_fail(err, NK_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
        goto done;
    }
    for (size_t r = 0; r < count; r++) {
        if (fread(rec, 1, CIFAR_REC, fp) != CIFAR_REC) {
            st = nk_fail(err, NK_ERR_IO, "%s: short read at record %zu", path, r);
            goto done;
        }
        if (rec[0] > 9) {
            st = nk_fail(err, NK_ERR_INPUT,
                         "%s: record %zu has label %d (CIFAR-10 labels are 0..9; is this "
                         "CIFAR-100?)",
                         path, r, rec[0]);
            goto done;
        }
        d->y.data[row + r] = rec[0];
        double *img = d->x.data + (row + r) * CIFAR_PIX;
        const unsigned char *pix = rec + 1;
        for (int c = 0; c < CIFAR_CH; c++)
            for (int p = 0; p < CIFAR_SIDE * CIFAR_SIDE; p++)
                img[p * CIFAR_CH + c] = pix[c * CIFAR_SIDE * CIFAR_SIDE + p];
    }
done:
    if (fp) fclose(fp);
    free(rec);
    return st;
}

static nk_status alloc_images(nk_dataset *d, size_t n, size_t h, size_t w, size_t c,
                              nk_error *err)
{
    size_t xs[4] = {n, h, w, c};
    nk_status st = nk_array_alloc(&d->x, 4, xs, err);
    if (!st) st = nk_array_alloc(&d->y, 1, &n, err);
    if (st) nk_dataset_free(d);
    return st;
}

nk_status nk_cifar10_read_batch(const char *path, size_t n_max, nk_dataset *out,
                                nk_error *err)
{
    nk_dataset d = {{0}, {0}};
    size_t n;
    nk_status st = cifar_count(path, &n, err);
    if (st) return st;
    if (n_max && n_max < n) n = n_max;
    st = alloc_images(&d, n, CIFAR_SIDE, CIFAR_SIDE, CIFAR_CH, err);
    if (st) return st;
    st = cifar_read_into(path, n, &d, 0, err);
    if (st) {
        nk_dataset_free(&d);
        return st;
    }
    *out = d;
    return NK_OK;
}

nk_status nk_cifar10_load(const char *dir, nk_split split, size_t n_max, nk_dataset *out,
                          nk_error *err)
{
    char paths[5][4096];
    size_t counts[5], nfiles = split == NK_SPLIT_TEST ? 1 : 5, total = 0;
    nk_dataset d = {{0}, {0}};
    nk_status st;
    if (!dir || !*dir)
        return nk_fail(err, NK_ERR_INPUT, "nk_cifar10_load: no directory given (pass the "
                       "directory holding data_batch_1.bin ... test_batch.bin)");
    for (size_t f = 0; f < nfiles; f++) {
        int len = split == NK_SPLIT_TEST
                      ? snprintf(paths[f], sizeof paths[f], "%s/test_batch.bin", dir)
                      : snprintf(paths[f], sizeof paths[f], "%s/data_batch_%zu.bin", dir, f + 1);
        if (len < 0 || (size_t)len >= sizeof paths[f])
            return nk_fail(err, NK_ERR_INPUT, "nk_cifar10_load: directory name too long");
        st = cifar_count(paths[f], &counts[f], err);
        if (st) return st;
        total += counts[f];
    }
    if (n_max && n_max < total) total = n_max;
    st = alloc_images(&d, total, CIFAR_SIDE, CIFAR_SIDE, CIFAR_CH, err);
    if (st) return st;
    size_t row = 0;
    for (size_t f = 0; f < nfiles && row < total; f++) {
        size_t take = counts[f] < total - row ? counts[f] : total - row;
        st = cifar_read_into(paths[f], take, &d, row, err);
        if (st) {
            nk_dataset_free(&d);
            return st;
        }
        row += take;
    }
    *out = d;
    return NK_OK;
}

/* ----------------------------------------------------------------- random -- */

void nk_rng_seed(nk_rng *r, uint64_t seed) { r->state = seed; }

uint64_t nk_rng_next(nk_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

size_t nk_rng_below(nk_rng *r, size_t n)
{
    /* Reject the top partial block of 2^64 so every residue is equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % (uint64_t)n, v;
    do v = nk_rng_next(r);
    while (v >= limit);
    return (size_t)(v % (uint64_t)n);
}

/* Fisher-Yates shuffle of a[0..n). */
static void shuffle(size_t *a, size_t n, nk_rng *r)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = nk_rng_below(r, i), t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* Labels must be integers in [0, 2^20); sets *nclass = max + 1. */
static nk_status check_labels(const nk_array *labels, const char *where, size_t *nclass,
                              nk_error *err)
{
    if (!labels || !labels->data || labels->ndim != 1)
        return nk_fail(err, NK_ERR_INPUT, "%s: labels must be a 1-D array", where);
    double maxl = -1;
    for (size_t i = 0; i < labels->shape[0]; i++) {
        double l = labels->data[i];
        if (!(l >= 0) || l != floor(l) || l >= 1048576)
            return nk_fail(err, NK_ERR_INPUT,
                           "%s: label %zu is %g (labels must be class numbers 0, 1, ...)",
                           where, i, l);
        if (l > maxl) maxl = l;
    }
    *nclass = (size_t)(maxl + 1);
    return NK_OK;
}

/* Balanced or plain choice of n indices; also returns the complement in rest (N - n
 * entries, may be NULL).  Both lists come out shuffled. */
static nk_status choose(const nk_array *labels, size_t n, int balanced, uint64_t seed,
                        const char *where, size_t *idx, size_t *rest, nk_error *err)
{
    size_t nclass = 0, total;
    size_t *perm = NULL, *have = NULL, *want = NULL;
    unsigned char *taken = NULL;
    nk_status st = check_labels(labels, where, &nclass, err);
    if (st) return st;
    total = labels->shape[0];
    if (n > total)
        return nk_fail(err, NK_ERR_INPUT, "%s: %zu samples requested but the set has %zu",
                       where, n, total);
    nk_rng rng;
    nk_rng_seed(&rng, seed);
    perm = malloc((total ? total : 1) * sizeof *perm);
    taken = calloc(total ? total : 1, 1);
    have = calloc(nclass ? nclass : 1, sizeof *have);
    want = calloc(nclass ? nclass : 1, sizeof *want);
    if (!perm || !taken || !have || !want) {
        st = nk_fail(err, NK_ERR_NOMEM, "%s: out of memory", where);
        goto done;
    }
    for (size_t i = 0; i < total; i++) perm[i] = i;
    shuffle(perm, total, &rng);
    if (balanced && n) {
        /* Classes that occur share n as evenly as possible: floor(n / C) each, and one
         * more for the first n mod C classes by number. */
        size_t present = 0;
        for (size_t i = 0; i < total; i++) have[(size_t)labels->data[i]]++;
        for (size_t c = 0; c < nclass; c++) present += have[c] > 0;
        size_t extra = n % present, seen = 0;
        for (size_t c = 0; c < nclass; c++) {
            if (!have[c]) continue;
            want[c] = n / present + (seen++ < extra);
            if (want[c] > have[c]) {
                st = nk_fail(err, NK_ERR_INPUT,
                             "%s: class %zu has %zu samples but a balanced subset of %zu "
                             "needs %zu (ask for fewer samples or drop --balanced)",
                             where, c, have[c], n, want[c]);
                goto done;
            }
        }
        /* The shuffled order picks a uniform random subset within each class. */
        size_t k = 0;
        for (size_t i = 0; i < total; i++) {
            size_t c = (size_t)labels->data[perm[i]];
            if (want[c]) {
                want[c]--;
                idx[k++] = perm[i];
                taken[perm[i]] = 1;
            }
        }
        shuffle(idx, n, &rng);
    } else {
        for (size_t i = 0; i < n; i++) {
            idx[i] = perm[i];
            taken[perm[i]] = 1;
        }
    }
    if (rest) {
        size_t k = 0;
        for (size_t i = 0; i < total; i++)
            if (!taken[perm[i]]) rest[k++] = perm[i];
    }
done:
    free(perm);
    free(taken);
    free(have);
    free(want);
    return st;
}

nk_status nk_subset_indices(const nk_array *labels, size_t n, int balanced, uint64_t seed,
                            size_t *idx, nk_error *err)
{
    return choose(labels, n, balanced, seed, "nk_subset_indices", idx, NULL, err);
}

nk_status nk_dataset_take(const nk_dataset *src, const size_t *idx, size_t n,
                          nk_dataset *out, nk_error *err)
{
    static const char where[] = "nk_dataset_take";
    nk_dataset d = {{0}, {0}};
    if (!src->x.data || !src->y.data || src->y.ndim != 1 || src->x.shape[0] != src->y.shape[0])
        return nk_fail(err, NK_ERR_INPUT,
                       "%s: %zu images but %zu labels (labels must match images in count)",
                       where, src->x.shape[0], src->y.ndim == 1 ? src->y.shape[0] : 0);
    size_t total = src->x.shape[0], row = total ? nk_array_size(&src->x) / total : 0;
    size_t xs[4];
    for (int i = 0; i < src->x.ndim; i++) xs[i] = src->x.shape[i];
    xs[0] = n;
    nk_status st = nk_array_alloc(&d.x, src->x.ndim, xs, err);
    if (!st) st = nk_array_alloc(&d.y, 1, &n, err);
    if (st) goto fail;
    for (size_t i = 0; i < n; i++) {
        if (idx[i] >= total) {
            st = nk_fail(err, NK_ERR_INPUT, "%s: index %zu out of range (%zu samples)", where,
                         idx[i], total);
            goto fail;
        }
        memcpy(d.x.data + i * row, src->x.data + idx[i] * row, row * sizeof *d.x.data);
        d.y.data[i] = src->y.data[idx[i]];
    }
    *out = d;
    return NK_OK;
fail:
    nk_dataset_free(&d);
    return st;
}

nk_status nk_dataset_range(const nk_dataset *src, size_t start, size_t n, nk_dataset *out,
                           nk_error *err)
{
    size_t total = src->x.ndim >= 1 ? src->x.shape[0] : 0;
    if (start > total || n > total - start)
        return nk_fail(err, NK_ERR_INPUT, "nk_dataset_range: rows %zu..%zu asked of %zu samples "
                       "(ask for fewer samples)", start, start + n, total);
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) return nk_fail(err, NK_ERR_NOMEM, "nk_dataset_range: out of memory");
    for (size_t i = 0; i < n; i++) idx[i] = start + i;
    nk_status st = nk_dataset_take(src, idx, n, out, err);
    free(idx);
    return st;
}

nk_status nk_dataset_subset(const nk_dataset *src, size_t n, int balanced, uint64_t seed,
                            nk_dataset *out, nk_error *err)
{
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) return nk_fail(err, NK_ERR_NOMEM, "nk_dataset_subset: out of memory");
    nk_status st = NK_OK;
    if (src->x.ndim < 1 || src->x.shape[0] != src->y.shape[0])
        st = nk_fail(err, NK_ERR_INPUT, "nk_dataset_subset: %zu images but %zu labels "
                     "(labels must match images in count)", src->x.shape[0], src->y.shape[0]);
    if (!st) st = choose(&src->y, n, balanced, seed, "nk_dataset_subset", idx, NULL, err);
    if (!st) st = nk_dataset_take(src, idx, n, out, err);
    free(idx);
    return st;
}

nk_status nk_dataset_split(const nk_dataset *src, size_t n_val, int balanced, uint64_t seed,
                           nk_dataset *train, nk_dataset *val, nk_error *err)
{
    static const char where[] = "nk_dataset_split";
    nk_dataset tr = {{0}, {0}}, va = {{0}, {0}};
    size_t total = src->y.shape[0];
    if (src->x.ndim < 1 || src->x.shape[0] != total)
        return nk_fail(err, NK_ERR_INPUT, "%s: %zu images but %zu labels (labels must match "
                       "images in count)", where, src->x.shape[0], total);
    if (n_val >= total)
        return nk_fail(err, NK_ERR_INPUT,
                       "%s: validation part of %zu leaves no training samples (of %zu)", where,
                       n_val, total);
    size_t *idx = malloc((n_val ? n_val : 1) * sizeof *idx);
    size_t *rest = malloc(total * sizeof *rest);
    nk_status st = NK_OK;
    if (!idx || !rest) st = nk_fail(err, NK_ERR_NOMEM, "%s: out of memory", where);
    if (!st) st = choose(&src->y, n_val, balanced, seed, where, idx, rest, err);
    if (!st) st = nk_dataset_take(src, rest, total - n_val, &tr, err);
    if (!st) st = nk_dataset_take(src, idx, n_val, &va, err);
    free(idx);
    free(rest);
    if (st) {
        nk_dataset_free(&tr);
        nk_dataset_free(&va);
        return st;
    }
    *train = tr;
    *val = va;
    return NK_OK;
}

/* ----------------------------------------------------------- preprocessing -- */

nk_status nk_prep_unit_range(nk_array *x, double lo, double hi, nk_error *err)
{
    if (!(hi > lo) || !isfinite(hi - lo))
        return nk_fail(err, NK_ERR_INPUT, "nk_prep_unit_range: range [%g, %g] is empty (use "
                       "lo < hi, e.g. 0 and 255 for 8-bit pixels)", lo, hi);
    size_t n = nk_array_size(x);
    double scale = 1.0 / (hi - lo);
    for (size_t i = 0; i < n; i++) x->data[i] = (x->data[i] - lo) * scale;
    return NK_OK;
}

nk_status nk_prep_standardize(nk_array *x, nk_std_kind kind, nk_error *err)
{
    if (!x->data || x->ndim < 2)
        return nk_fail(err, NK_ERR_INPUT, "nk_prep_standardize: need (N, ...) samples");
    if (kind != NK_STD_UNIT_NORM && kind != NK_STD_UNIT_VAR)
        return nk_fail(err, NK_ERR_INPUT, "nk_prep_standardize: unknown kind %d", (int)kind);
    size_t n = x->shape[0], d = n ? nk_array_size(x) / n : 0;
    for (size_t i = 0; i < n; i++) {
        double *v = x->data + i * d, mean = 0, ss = 0;
        for (size_t j = 0; j < d; j++) mean += v[j];
        mean /= (double)d;
        for (size_t j = 0; j < d; j++) {
            v[j] -= mean;
            ss += v[j] * v[j];
        }
        /* unit norm: divide by sqrt(sum v^2); unit variance: by sqrt(sum v^2 / d). */
        double scale = kind == NK_STD_UNIT_NORM ? sqrt(ss) : sqrt(ss / (double)d);
        double inv = scale > 0 ? 1.0 / scale : 0.0;
        for (size_t j = 0; j < d; j++) v[j] *= inv;
    }
    return NK_OK;
}

struct nk_zca {
    size_t d;      /* features per sample */
    double *mean;  /* (D) training mean */
    double *w;     /* (D, D) symmetric whitening matrix */
};

void nk_zca_free(nk_zca *z)
{
    if (!z) return;
    free(z->mean);
    free(z->w);
    free(z);
}

nk_status nk_zca_fit(const nk_array *x_train, double eps, nk_zca **out, nk_error *err)
{
    static const char where[] = "nk_zca_fit";
    nk_zca *z = NULL;
    double *cov = NULL, *lam = NULL, *us = NULL, *f = NULL;
    nk_status st = NK_OK;
    *out = NULL;
    if (!x_train || !x_train->data || x_train->ndim < 2 || x_train->shape[0] < 2)
        return nk_fail(err, NK_ERR_INPUT, "%s: need at least 2 training samples (N, ...)", where);
    if (!(eps >= 0) || !isfinite(eps))
        return nk_fail(err, NK_ERR_INPUT, "%s: eps = %g (use a finite value >= 0, e.g. 0.1)",
                       where, eps);
    size_t n = x_train->shape[0], d = nk_array_size(x_train) / n;
    if (d > 20000)
        return nk_fail(err, NK_ERR_INPUT,
                       "%s: %zu features per sample make a %zu x %zu covariance (ZCA is meant "
                       "for images up to ~100 x 100 x 2)",
                       where, d, d, d);
    z = calloc(1, sizeof *z);
    if (!z) return nk_fail(err, NK_ERR_NOMEM, "%s: out of memory", where);
    z->d = d;
    z->mean = calloc(d, sizeof *z->mean);
    z->w = malloc(d * d * sizeof *z->w);
    cov = malloc(d * d * sizeof *cov);
    lam = malloc(d * sizeof *lam);
    us = malloc(d * d * sizeof *us);
    f = malloc(n * d * sizeof *f);
    if (!z->mean || !z->w || !cov || !lam || !us || !f) {
        st = nk_fail(err, NK_ERR_NOMEM, "%s: cannot allocate %zu x %zu matrices", where, d, d);
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++) z->mean[j] += x_train->data[i * d + j];
    for (size_t j = 0; j < d; j++) z->mean[j] /= (double)n;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++) f[i * d + j] = x_train->data[i * d + j] - z->mean[j];
    for (size_t i = 0; i < n * d; i++)
        if (!isfinite(f[i])) {
            st = nk_fail(err, NK_ERR_INPUT, "%s: non-finite training value at flat index %zu",
                         where, i);
            goto done;
        }
    /* C = F^T F / N (lower triangle), then C = U diag(Lambda) U^T. */
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, (int)d, (int)n, 1.0 / (double)n, f,
                (int)d, 0.0, cov, (int)d);
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'L', (lapack_int)d, cov,
                                     (lapack_int)d, lam);
    if (info) {
        st = nk_fail(err, NK_ERR_RUN, "%s: eigendecomposition failed (dsyevd info %d)", where,
                     (int)info);
        goto done;
    }
    double mean_lam = 0;
    for (size_t j = 0; j < d; j++) mean_lam += lam[j];
    mean_lam /= (double)d;
    double reg = eps * mean_lam;
    /* Eigenvalues within rounding of zero (D eps_machine lambda_max) are zero: the
     * covariance is PSD, and a rank-deficient one must not be inverted without eps. */
    double floor_ = (double)d * DBL_EPSILON * fabs(lam[d - 1]);
    for (size_t j = 0; j < d; j++) {
        double l = (lam[j] > floor_ ? lam[j] : 0.0) + reg;
        if (!(l > 0)) {
            st = nk_fail(err, NK_ERR_INPUT,
                         "%s: the covariance of the training features is singular and eps = "
                         "%g (use eps > 0, e.g. zca:0.1, or more samples than the %zu features)",
                         where, eps, d);
            goto done;
        }
        lam[j] = 1.0 / sqrt(l);
    }
    /* W = (U diag(s)) U^T with s = (Lambda + reg)^{-1/2}. */
    for (size_t i = 0; i < d; i++)
        for (size_t j = 0; j < d; j++) us[i * d + j] = cov[i * d + j] * lam[j];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)d, (int)d, (int)d, 1.0, us,
                (int)d, cov, (int)d, 0.0, z->w, (int)d);
    /* Make W exactly symmetric so x W = W x for rows. */
    for (size_t i = 0; i < d; i++)
        for (size_t j = 0; j < i; j++) {
            double v = 0.5 * (z->w[i * d + j] + z->w[j * d + i]);
            z->w[i * d + j] = z->w[j * d + i] = v;
        }
done:
    free(cov);
    free(lam);
    free(us);
    free(f);
    if (st) nk_zca_free(z);
    else *out = z;
    return st;
}

nk_status nk_zca_apply(const nk_zca *z, nk_array *x, nk_error *err)
{
    static const char where[] = "nk_zca_apply";
    enum { BLOCK = 256 }; /* rows per GEMM: bounds the workspace at 2 * BLOCK * D doubles */
    if (!x->data || x->ndim < 2 || !x->shape[0] || nk_array_size(x) / x->shape[0] != z->d)
        return nk_fail(err, NK_ERR_INPUT,
                       "%s: samples have %zu features but the whitening was fitted on %zu "
                       "(apply it to data of the training shape)",
                       where, x->ndim >= 2 && x->shape[0] ? nk_array_size(x) / x->shape[0] : 0,
                       z->d);
    size_t n = x->shape[0], d = z->d;
    double *in = malloc((size_t)BLOCK * d * sizeof *in);
    if (!in) return nk_fail(err, NK_ERR_NOMEM, "%s: out of memory", where);
    for (size_t r0 = 0; r0 < n; r0 += BLOCK) {
        size_t rows = n - r0 < BLOCK ? n - r0 : BLOCK;
        double *blk = x->data + r0 * d;
        for (size_t i = 0; i < rows; i++)
            for (size_t j = 0; j < d; j++) in[i * d + j] = blk[i * d + j] - z->mean[j];
        /* Rows x_i <- W (x_i - mu), i.e. X <- (X - mu) W with W symmetric. */
        cblas_dsymm(CblasRowMajor, CblasRight, CblasLower, (int)rows, (int)d, 1.0, z->w, (int)d,
                    in, (int)d, 0.0, blk, (int)d);
    }
    free(in);
    return NK_OK;
}
