/*
 * nk_data.h -- image data sets, subsets and preprocessing for kernel experiments.
 *
 * A data set is images x (N, H, W, C) in NHWC order with raw pixel values (0..255 for the
 * loaders below) and labels y (N) holding class numbers 0, 1, ...
 *
 * Typical use (Lee et al. 2020, "Finite versus infinite neural networks": ZCA is the best
 * preprocessing for CNN kernels):
 *   nk_fashion_mnist_load(NULL, NK_SPLIT_TRAIN, &full, err);
 *   nk_dataset_subset(&full, 2000, 1, seed, &train, err);        balanced, seeded
 *   nk_prep_unit_range(&train.x, 0, 255);                        pixels to [0, 1]
 *   nk_prep_standardize(&train.x, NK_STD_UNIT_VAR);              per image
 *   nk_zca_fit(&train.x, 0.1, &zca, err);  nk_zca_apply(zca, &train.x, err);  and on test
 *
 * Random choices come from splitmix64 (Steele, Lea, Flood 2014): state += 0x9e3779b97f4a7c15,
 * then two xor-shift-multiply rounds.  The same seed gives the same subsets on every machine.
 */
#ifndef NK_DATA_H
#define NK_DATA_H

#include "nkern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    nk_array x; /* (N, H, W, C) images, or (N, D) features */
    nk_array y; /* (N) labels */
} nk_dataset;

void nk_dataset_free(nk_dataset *d);

typedef enum { NK_SPLIT_TRAIN = 0, NK_SPLIT_TEST = 1 } nk_split;

/* Default location of Debian's dataset-fashion-mnist package. */
#define NK_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* Fashion-MNIST from dir (NULL: NK_FASHION_MNIST_DIR): {train,t10k}-images-idx3-ubyte.gz and
 * {train,t10k}-labels-idx1-ubyte.gz (plain files without .gz are also tried).  x is
 * (N, 28, 28, 1) in 0..255.  Needs nk_idx_read.  Fails with NK_ERR_IO if the files are
 * missing, NK_ERR_INPUT if image and label counts differ. */
nk_status nk_fashion_mnist_load(const char *dir, nk_split split, nk_dataset *out,
                                nk_error *err);

/* CIFAR-10 binary version from dir: data_batch_1.bin .. data_batch_5.bin (train) or
 * test_batch.bin (test).  Each record is 1 label byte and 3072 pixel bytes, three 32 x 32
 * planes (R, G, B: CHW order); x comes back as (N, 32, 32, 3) NHWC in 0..255.  n_max > 0
 * keeps only the first n_max records (the full training set is 1.2 GB as float64). */
nk_status nk_cifar10_load(const char *dir, nk_split split, size_t n_max, nk_dataset *out,
                          nk_error *err);
/* One batch file (any number of records). */
nk_status nk_cifar10_read_batch(const char *path, size_t n_max, nk_dataset *out,
                                nk_error *err);

/* ------------------------------------------------------------- subsets ---- */

typedef struct {
    uint64_t state;
} nk_rng;

void nk_rng_seed(nk_rng *r, uint64_t seed);
uint64_t nk_rng_next(nk_rng *r);                 /* splitmix64 */
size_t nk_rng_below(nk_rng *r, size_t n);        /* uniform in [0, n), unbiased; n > 0 */

/* n distinct row indices of a set with labels (N), in random order.  balanced: each class
 * present gets floor(n / C) or one more (the first n mod C classes, by class number), so
 * counts are equal when C divides n; fails if a class has too few samples. */
nk_status nk_subset_indices(const nk_array *labels, size_t n, int balanced, uint64_t seed,
                            size_t *idx, nk_error *err);

/* Rows idx[0..n) of src (copies). */
nk_status nk_dataset_take(const nk_dataset *src, const size_t *idx, size_t n,
                          nk_dataset *out, nk_error *err);

/* Rows [start, start + n) of src, in order (copies): the first n of a split, so that results
 * compare with other methods on identical subsets.  Fails if src has fewer rows. */
nk_status nk_dataset_range(const nk_dataset *src, size_t start, size_t n, nk_dataset *out,
                           nk_error *err);

/* A random subset of n samples (balanced per class on request). */
nk_status nk_dataset_subset(const nk_dataset *src, size_t n, int balanced, uint64_t seed,
                            nk_dataset *out, nk_error *err);

/* Split src into a training part and a held-out validation part of n_val random samples
 * (balanced per class on request); both in random order, disjoint, covering src. */
nk_status nk_dataset_split(const nk_dataset *src, size_t n_val, int balanced, uint64_t seed,
                           nk_dataset *train, nk_dataset *val, nk_error *err);

/* -------------------------------------------------------- preprocessing ---- */

/* x <- (x - lo) / (hi - lo): pixel values 0..255 to [0, 1] with lo = 0, hi = 255. */
nk_status nk_prep_unit_range(nk_array *x, double lo, double hi, nk_error *err);

typedef enum {
    NK_STD_UNIT_NORM = 0, /* per image: subtract its mean, divide by its L2 norm (norm 1) */
    NK_STD_UNIT_VAR = 1   /* per image: subtract its mean, divide by its standard deviation
                             (mean 0, variance 1 over the image's H W C values) */
} nk_std_kind;

/* Per-image standardization over all H W C values of each image.  A constant image
 * becomes all zeros. */
nk_status nk_prep_standardize(nk_array *x, nk_std_kind kind, nk_error *err);

/* ZCA whitening fitted on training images only.  With features f = flattened image minus
 * the training mean mu, covariance C = F^T F / N = U diag(Lambda) U^T (dsyevd), and
 *   W = U (Lambda + eps mean(Lambda) I)^{-1/2} U^T,   x <- W (x - mu)
 * eps is relative to the mean eigenvalue (Lee et al. 2020 use eps = 0.1 on CIFAR-10);
 * eps -> 0 gives whitened training features of covariance I (if N > D). */
typedef struct nk_zca nk_zca;
nk_status nk_zca_fit(const nk_array *x_train, double eps, nk_zca **out, nk_error *err);
/* Apply to any set of the fitted shape (train, validation, test), in place. */
nk_status nk_zca_apply(const nk_zca *z, nk_array *x, nk_error *err);
void nk_zca_free(nk_zca *z);

#ifdef __cplusplus
}
#endif
#endif
