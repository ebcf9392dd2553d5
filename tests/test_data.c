/* test_data.c -- CIFAR-10 reader on synthetic files, seeded subsets and splits,
 * per-image standardization and ZCA whitening (covariance of whitened data = I). */
#include "nk_data.h"
#include "nk_test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Pixel of record r, channel c, row h, column w in the synthetic files. */
static unsigned char pix(size_t r, int c, int h, int w)
{
    return (unsigned char)((r * 7 + (size_t)c * 50 + (size_t)h * 3 + (size_t)w) % 256);
}

/* A CIFAR batch of n records starting at global record r0; labels (r0 + i) % 10. */
static int write_batch(const char *path, size_t r0, size_t n, size_t extra_bytes)
{
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    for (size_t i = 0; i < n; i++) {
        size_t r = r0 + i;
        fputc((int)(r % 10), fp);
        for (int c = 0; c < 3; c++)
            for (int h = 0; h < 32; h++)
                for (int w = 0; w < 32; w++) fputc(pix(r, c, h, w), fp);
    }
    for (size_t i = 0; i < extra_bytes; i++) fputc(0, fp);
    return fclose(fp);
}

static void test_cifar(void)
{
    char dir[] = "/tmp/nk_cifar_XXXXXX", path[256];
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp failed");
        return;
    }
    size_t counts[5] = {3, 2, 1, 2, 2}, r0 = 0;
    for (int b = 0; b < 5; b++) {
        snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, b + 1);
        CHECK(write_batch(path, r0, counts[b], 0) == 0, "write %s", path);
        r0 += counts[b];
    }
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    CHECK(write_batch(path, 100, 2, 0) == 0, "write test batch");

    nk_dataset d = {{0}, {0}};
    nk_error err = {{0}};
    nk_status st = nk_cifar10_load(dir, NK_SPLIT_TRAIN, 0, &d, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (!st) {
        CHECK(d.x.ndim == 4 && d.x.shape[0] == 10 && d.x.shape[1] == 32 && d.x.shape[2] == 32 &&
                  d.x.shape[3] == 3,
              "train shape (10, 32, 32, 3)");
        int ok = 1;
        for (size_t r = 0; r < 10; r++) {
            ok &= d.y.data[r] == (double)(r % 10);
            for (int h = 0; h < 32; h++)
                for (int w = 0; w < 32; w++)
                    for (int c = 0; c < 3; c++)
                        ok &= d.x.data[((r * 32 + h) * 32 + w) * 3 + c] == pix(r, c, h, w);
        }
        CHECK(ok, "CHW records become NHWC images with their labels, batches in order");
    }
    nk_dataset_free(&d);
    st = nk_cifar10_load(dir, NK_SPLIT_TRAIN, 4, &d, &err);
    CHECK(st == NK_OK && d.x.shape[0] == 4 && d.y.data[3] == 3 &&
              d.x.data[((3 * 32 + 5) * 32 + 6) * 3 + 2] == pix(3, 2, 5, 6),
          "n_max = 4 crosses a batch boundary: %s", err.msg);
    nk_dataset_free(&d);
    st = nk_cifar10_load(dir, NK_SPLIT_TEST, 0, &d, &err);
    CHECK(st == NK_OK && d.x.shape[0] == 2 && d.y.data[1] == 1 &&
              d.x.data[(31 * 32 + 31) * 3 + 1] == pix(100, 1, 31, 31),
          "test batch: %s", err.msg);
    nk_dataset_free(&d);

    /* A truncated record: labels and images no longer match. */
    snprintf(path, sizeof path, "%s/data_batch_2.bin", dir);
    write_batch(path, 3, 2, 100);
    CHECK(nk_cifar10_load(dir, NK_SPLIT_TRAIN, 0, &d, &err) == NK_ERR_INPUT &&
              strstr(err.msg, "whole number"),
          "partial record: %s", err.msg);
    /* A label beyond 9 at the first record of batch 2. */
    write_batch(path, 3, 2, 0);
    FILE *fp = fopen(path, "r+b");
    if (fp) {
        fputc(42, fp);
        fclose(fp);
    }
    CHECK(nk_cifar10_load(dir, NK_SPLIT_TRAIN, 0, &d, &err) == NK_ERR_INPUT &&
              strstr(err.msg, "label 42"),
          "bad label: %s", err.msg);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/none", dir);
    CHECK(nk_cifar10_load(missing, NK_SPLIT_TEST, 0, &d, &err) == NK_ERR_IO &&
              strstr(err.msg, "test_batch.bin"),
          "missing directory: %s", err.msg);

    for (int b = 0; b < 5; b++) {
        snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, b + 1);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    unlink(path);
    rmdir(dir);
}

static void test_rng(void)
{
    nk_rng a, b;
    nk_rng_seed(&a, 42);
    nk_rng_seed(&b, 42);
    int same = 1;
    for (int i = 0; i < 100; i++) same &= nk_rng_next(&a) == nk_rng_next(&b);
    CHECK(same, "same seed, same stream");
    /* splitmix64 from seed 0: the published first output. */
    nk_rng_seed(&a, 0);
    CHECK(nk_rng_next(&a) == 0xe220a8397b1dcdafull, "splitmix64 reference value");
    size_t hist[7] = {0};
    for (int i = 0; i < 70000; i++) hist[nk_rng_below(&a, 7)]++;
    int flat = 1;
    for (int i = 0; i < 7; i++) flat &= hist[i] > 9500 && hist[i] < 10500;
    CHECK(flat, "nk_rng_below(7) roughly uniform");
}

/* Labels 0..4, class c holding 20 + 5c samples (unbalanced on purpose). */
static nk_dataset make_labelled(void)
{
    nk_dataset d = {{0}, {0}};
    size_t n = 0;
    for (int c = 0; c < 5; c++) n += 20 + 5 * (size_t)c;
    size_t xs[2] = {n, 3};
    nk_array_alloc(&d.x, 2, xs, NULL);
    nk_array_alloc(&d.y, 1, &n, NULL);
    size_t i = 0;
    for (int c = 0; c < 5; c++)
        for (int k = 0; k < 20 + 5 * c; k++, i++) {
            d.y.data[i] = c;
            for (int j = 0; j < 3; j++) d.x.data[i * 3 + j] = (double)i + j / 10.0;
        }
    return d;
}

/* nk_dataset_range: rows [start, start + n) in order (row i of make_labelled holds i + j/10). */
static void test_range(void)
{
    nk_dataset d = make_labelled(), r = {{0}, {0}};
    nk_error err = {{0}};
    size_t total = d.y.shape[0];
    nk_status st = nk_dataset_range(&d, 17, 40, &r, &err);
    CHECK(st == NK_OK && r.x.shape[0] == 40 && r.y.shape[0] == 40, "range: %s", err.msg);
    int same = st == NK_OK;
    for (size_t i = 0; same && i < 40; i++)
        same = r.x.data[i * 3 + 2] == (double)(17 + i) + 0.2 && r.y.data[i] == d.y.data[17 + i];
    CHECK(same, "range: rows 17..56 in order with their labels");
    nk_dataset_free(&r);
    st = nk_dataset_range(&d, total - 5, 6, &r, &err);
    CHECK(st == NK_ERR_INPUT && strstr(err.msg, "fewer"), "range past the end refused: %d %s", st, err.msg);
    st = nk_dataset_range(&d, total, 0, &r, &err);
    CHECK(st == NK_OK && r.y.shape[0] == 0, "empty range at the end");
    nk_dataset_free(&r);
    nk_dataset_free(&d);
}

static void test_subsets(void)
{
    nk_dataset d = make_labelled(), s = {{0}, {0}}, s2 = {{0}, {0}};
    nk_error err = {{0}};
    size_t total = d.y.shape[0];
    nk_status st = nk_dataset_subset(&d, 50, 1, 7, &s, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (!st) {
        size_t cnt[5] = {0};
        int rows_ok = 1, distinct = 1;
        for (size_t i = 0; i < 50; i++) {
            cnt[(size_t)s.y.data[i]]++;
            /* rows travel with their labels: x[i][0] is the source row index */
            size_t src = (size_t)s.x.data[i * 3];
            rows_ok &= d.y.data[src] == s.y.data[i] && s.x.data[i * 3 + 2] == src + 0.2;
            for (size_t j = 0; j < i; j++) distinct &= s.x.data[j * 3] != s.x.data[i * 3];
        }
        CHECK(cnt[0] == 10 && cnt[1] == 10 && cnt[2] == 10 && cnt[3] == 10 && cnt[4] == 10,
              "balanced: equal counts %zu %zu %zu %zu %zu", cnt[0], cnt[1], cnt[2], cnt[3], cnt[4]);
        CHECK(rows_ok && distinct, "rows match labels, all distinct");
    }
    st = nk_dataset_subset(&d, 50, 1, 7, &s2, &err);
    CHECK(st == NK_OK && memcmp(s.x.data, s2.x.data, 150 * sizeof(double)) == 0,
          "same seed, same subset");
    nk_dataset_free(&s2);
    st = nk_dataset_subset(&d, 50, 1, 8, &s2, &err);
    CHECK(st == NK_OK && memcmp(s.x.data, s2.x.data, 150 * sizeof(double)) != 0,
          "another seed, another subset");
    nk_dataset_free(&s);
    nk_dataset_free(&s2);

    /* 52 = 5 * 10 + 2: classes 0 and 1 get one more. */
    size_t idx[200];
    st = nk_subset_indices(&d.y, 52, 1, 3, idx, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (!st) {
        size_t cnt[5] = {0};
        for (size_t i = 0; i < 52; i++) cnt[(size_t)d.y.data[idx[i]]]++;
        CHECK(cnt[0] == 11 && cnt[1] == 11 && cnt[2] == 10 && cnt[4] == 10, "remainder spread");
    }
    CHECK(nk_subset_indices(&d.y, 110, 1, 3, idx, &err) == NK_ERR_INPUT &&
              strstr(err.msg, "class 0"),
          "too few samples in a class: %s", err.msg);
    CHECK(nk_subset_indices(&d.y, total + 1, 0, 3, idx, &err) == NK_ERR_INPUT,
          "more than the set: %s", err.msg);
    st = nk_subset_indices(&d.y, total, 0, 3, idx, &err);
    if (!st) {
        unsigned char seen[200] = {0};
        int perm = 1;
        for (size_t i = 0; i < total; i++) perm &= !seen[idx[i]]++;
        CHECK(perm, "a subset of all samples is a permutation");
    }

    nk_dataset tr = {{0}, {0}}, va = {{0}, {0}};
    st = nk_dataset_split(&d, 25, 1, 11, &tr, &va, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (!st) {
        CHECK(tr.y.shape[0] == total - 25 && va.y.shape[0] == 25 && tr.x.shape[1] == 3,
              "split sizes");
        unsigned char seen[200] = {0};
        int ok = 1;
        for (size_t i = 0; i < tr.y.shape[0]; i++) ok &= !seen[(size_t)tr.x.data[i * 3]]++;
        for (size_t i = 0; i < va.y.shape[0]; i++) ok &= !seen[(size_t)va.x.data[i * 3]]++;
        CHECK(ok, "train and validation disjoint and covering");
        size_t cnt[5] = {0};
        for (size_t i = 0; i < 25; i++) cnt[(size_t)va.y.data[i]]++;
        CHECK(cnt[0] == 5 && cnt[4] == 5, "balanced validation part");
    }
    nk_dataset_free(&tr);
    nk_dataset_free(&va);
    CHECK(nk_dataset_split(&d, total, 0, 1, &tr, &va, &err) == NK_ERR_INPUT,
          "validation takes everything: %s", err.msg);
    /* labels must match images in count */
    d.y.shape[0]--;
    CHECK(nk_dataset_subset(&d, 5, 0, 1, &s, &err) == NK_ERR_INPUT && strstr(err.msg, "match"),
          "count mismatch: %s", err.msg);
    d.y.shape[0]++;
    nk_dataset_free(&d);
}

static void test_prep(void)
{
    nk_error err = {{0}};
    size_t xs[4] = {3, 2, 2, 2};
    nk_array x;
    nk_array_alloc(&x, 4, xs, NULL);
    for (size_t i = 0; i < 16; i++) x.data[i] = (double)(i * 37 % 256);
    for (size_t i = 16; i < 24; i++) x.data[i] = 128; /* a constant image */
    CHECK(nk_prep_unit_range(&x, 0, 255, &err) == NK_OK, "%s", err.msg);
    CHECK(fabs(x.data[1] - 37.0 / 255) < 1e-15, "unit range");
    CHECK(nk_prep_unit_range(&x, 1, 1, &err) == NK_ERR_INPUT, "empty range: %s", err.msg);
    nk_array y;
    nk_array_alloc(&y, 4, xs, NULL);
    memcpy(y.data, x.data, 24 * sizeof(double));
    CHECK(nk_prep_standardize(&x, NK_STD_UNIT_NORM, &err) == NK_OK, "%s", err.msg);
    CHECK(nk_prep_standardize(&y, NK_STD_UNIT_VAR, &err) == NK_OK, "%s", err.msg);
    for (int i = 0; i < 2; i++) {
        double m1 = 0, s1 = 0, m2 = 0, s2 = 0;
        for (int j = 0; j < 8; j++) {
            m1 += x.data[i * 8 + j]; s1 += x.data[i * 8 + j] * x.data[i * 8 + j];
            m2 += y.data[i * 8 + j]; s2 += y.data[i * 8 + j] * y.data[i * 8 + j];
        }
        CHECK(fabs(m1) < 1e-14 && fabs(s1 - 1) < 1e-14, "unit norm image %d: %g %g", i, m1, s1);
        CHECK(fabs(m2) < 1e-14 && fabs(s2 / 8 - 1) < 1e-14, "unit variance image %d", i);
    }
    int zero = 1;
    for (int j = 16; j < 24; j++) zero &= x.data[j] == 0 && y.data[j] == 0;
    CHECK(zero, "constant image becomes zeros");
    nk_array_free(&x);
    nk_array_free(&y);
}

static void test_zca(void)
{
    /* Correlated features: x = A z with z uniform, D = 6, N = 400, plus an offset. */
    enum { N = 400, D = 6 };
    nk_rng r;
    nk_rng_seed(&r, 5);
    double a[D][D];
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++)
            a[i][j] = (double)(nk_rng_next(&r) >> 11) / 9007199254740992.0 - 0.5 + (i == j);
    size_t xs[2] = {N, D};
    nk_array x, x2;
    nk_array_alloc(&x, 2, xs, NULL);
    nk_array_alloc(&x2, 2, xs, NULL);
    for (int n = 0; n < N; n++) {
        double z[D];
        for (int j = 0; j < D; j++) z[j] = (double)(nk_rng_next(&r) >> 11) / 9007199254740992.0;
        for (int i = 0; i < D; i++) {
            double s = 3.0 + i;
            for (int j = 0; j < D; j++) s += a[i][j] * z[j] * (j + 1);
            x.data[n * D + i] = s;
        }
    }
    memcpy(x2.data, x.data, sizeof(double) * N * D);
    nk_error err = {{0}};
    nk_zca *z = NULL;
    nk_status st = nk_zca_fit(&x, 1e-10, &z, &err);
    if (!st) st = nk_zca_apply(z, &x, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (!st) {
        double worst = 0, mean_max = 0;
        for (int i = 0; i < D; i++) {
            double m = 0;
            for (int n = 0; n < N; n++) m += x.data[n * D + i];
            mean_max = fmax(mean_max, fabs(m / N));
            for (int j = 0; j < D; j++) {
                double c = 0;
                for (int n = 0; n < N; n++) c += x.data[n * D + i] * x.data[n * D + j];
                worst = fmax(worst, fabs(c / N - (i == j)));
            }
        }
        CHECK(worst < 1e-7, "whitened covariance = I: max deviation %g", worst);
        CHECK(mean_max < 1e-12, "whitened training mean 0: %g", mean_max);
        /* The same transform on a "test" copy gives the same rows. */
        CHECK(nk_zca_apply(z, &x2, &err) == NK_OK &&
                  fabs(x2.data[17] - x.data[17]) < 1e-12,
              "apply to another set");
    }
    nk_zca_free(z);
    z = NULL;
    /* eps > 0 shrinks: covariance eigenvalues lambda / (lambda + eps mean(lambda)) < 1. */
    st = nk_zca_fit(&x2, 0.1, &z, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    nk_zca_free(z);
    z = NULL;
    size_t bad[2] = {N, D - 1};
    nk_array xb;
    nk_array_alloc(&xb, 2, bad, NULL);
    st = nk_zca_fit(&x2, 0.0, &z, &err);
    if (!st) {
        CHECK(nk_zca_apply(z, &xb, &err) == NK_ERR_INPUT && strstr(err.msg, "features"),
              "feature mismatch: %s", err.msg);
    }
    nk_zca_free(z);
    z = NULL;
    /* Rank-deficient with eps = 0: fewer samples than features. */
    size_t fs[2] = {3, D};
    nk_array xf;
    nk_array_alloc(&xf, 2, fs, NULL);
    for (int i = 0; i < 3 * D; i++) xf.data[i] = i % 5;
    CHECK(nk_zca_fit(&xf, 0.0, &z, &err) == NK_ERR_INPUT && strstr(err.msg, "eps"),
          "singular covariance: %s", err.msg);
    CHECK(nk_zca_fit(&xf, 0.1, &z, &err) == NK_OK, "regularized: %s", err.msg);
    nk_zca_free(z);
    nk_array_free(&x);
    nk_array_free(&x2);
    nk_array_free(&xb);
    nk_array_free(&xf);
}

/* Only where Debian's dataset-fashion-mnist is installed. */
static void test_fashion_mnist(void)
{
    const char *f = NK_FASHION_MNIST_DIR "/t10k-labels-idx1-ubyte.gz";
    if (access(f, R_OK) != 0) {
        printf("  skipping Fashion-MNIST: %s not installed\n", f);
        return;
    }
    nk_dataset d = {{0}, {0}};
    nk_error err = {{0}};
    nk_status st = nk_fashion_mnist_load(NULL, NK_SPLIT_TEST, &d, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (!st) {
        CHECK(d.x.ndim == 4 && d.x.shape[0] == 10000 && d.x.shape[1] == 28 &&
                  d.x.shape[2] == 28 && d.x.shape[3] == 1 && d.y.shape[0] == 10000,
              "Fashion-MNIST test set (10000, 28, 28, 1)");
        size_t cnt[10] = {0};
        double lo = 1e9, hi = -1e9;
        for (size_t i = 0; i < 10000; i++) cnt[(size_t)d.y.data[i] % 10]++;
        for (size_t i = 0; i < nk_array_size(&d.x); i++) {
            lo = fmin(lo, d.x.data[i]);
            hi = fmax(hi, d.x.data[i]);
        }
        CHECK(cnt[0] == 1000 && cnt[9] == 1000, "1000 test images per class");
        CHECK(lo == 0 && hi == 255, "pixels span 0..255");
    }
    nk_dataset_free(&d);
    CHECK(nk_fashion_mnist_load("/nonexistent", NK_SPLIT_TRAIN, &d, &err) == NK_ERR_IO &&
              strstr(err.msg, "dataset-fashion-mnist"),
          "missing files: %s", err.msg);
}

int main(void)
{
    test_fashion_mnist();
    test_cifar();
    test_rng();
    test_subsets();
    test_range();
    test_prep();
    test_zca();
    return nk_test_summary("test_data");
}
