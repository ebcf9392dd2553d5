/* data_fmnist.c -- Fashion-MNIST through the IDX reader (Debian: dataset-fashion-mnist). */
#include "nk_data.h"

#include <stdio.h>
#include <unistd.h>

/* dir/name.gz, else dir/name if only the uncompressed file is there. */
static nk_status find_file(const char *dir, const char *name, char *path, size_t len,
                           nk_error *err)
{
    int n = snprintf(path, len, "%s/%s.gz", dir, name);
    if (n < 0 || (size_t)n >= len)
        return nk_fail(err, NK_ERR_INPUT, "nk_fashion_mnist_load: directory name too long");
    if (access(path, R_OK) == 0) return NK_OK;
    snprintf(path, len, "%s/%s", dir, name);
    if (access(path, R_OK) == 0) return NK_OK;
    return nk_fail(err, NK_ERR_IO,
                   "nk_fashion_mnist_load: %s/%s(.gz) not found (install Debian's "
                   "dataset-fashion-mnist package, or give the directory of the IDX files)",
                   dir, name);
}

nk_status nk_fashion_mnist_load(const char *dir, nk_split split, nk_dataset *out,
                                nk_error *err)
{
    char ipath[4096], lpath[4096];
    const char *prefix = split == NK_SPLIT_TEST ? "t10k" : "train";
    char iname[64], lname[64];
    nk_dataset d = {{0}, {0}};
    nk_status st;
    if (!dir) dir = NK_FASHION_MNIST_DIR;
    snprintf(iname, sizeof iname, "%s-images-idx3-ubyte", prefix);
    snprintf(lname, sizeof lname, "%s-labels-idx1-ubyte", prefix);
    st = find_file(dir, iname, ipath, sizeof ipath, err);
    if (!st) st = find_file(dir, lname, lpath, sizeof lpath, err);
    if (!st) st = nk_idx_read(ipath, &d.x, err);
    if (!st) st = nk_idx_read(lpath, &d.y, err);
    if (!st && d.x.ndim != 4)
        st = nk_fail(err, NK_ERR_INPUT, "%s: expected images (N, H, W, 1), got %d dimensions",
                     ipath, d.x.ndim);
    if (!st && d.y.ndim != 1)
        st = nk_fail(err, NK_ERR_INPUT, "%s: expected a label vector, got %d dimensions", lpath,
                     d.y.ndim);
    if (!st && d.x.shape[0] != d.y.shape[0])
        st = nk_fail(err, NK_ERR_INPUT,
                     "nk_fashion_mnist_load: %zu images in %s but %zu labels in %s (labels "
                     "must match images in count; reinstall the data set)",
                     d.x.shape[0], ipath, d.y.shape[0], lpath);
    if (st) {
        nk_dataset_free(&d);
        return st;
    }
    *out = d;
    return NK_OK;
}
