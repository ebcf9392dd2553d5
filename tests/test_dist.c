/* test_dist.c -- kernels in tiles and past memory (nk_dist.h): tiles of every shape against
 * nk_kernel_matrix bit for bit, also with the plane engine's self states by window (only the
 * current tile's, made again per tile: forced by nk_kernel_window_bytes = 1); the tile plan covers each entry once; the journal refuses
 * another run; a memory-mapped float32/float64 kernel; and CG with the Nystrom preconditioner
 * against a dense Cholesky solve (LAPACK), with and without the preconditioner. */
#include "internal.h"
#include "nk_dist.h"
#include "nkern.h"
#include "nk_test.h"

#include <lapacke.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static nk_plan *make_plan(const char *spec, int ndim, const size_t *shape)
{
    nk_arch *a = NULL;
    nk_plan *p = NULL;
    nk_error err = {{0}};
    CHECK(nk_arch_parse(spec, NULL, &a, &err) == NK_OK, "%s", err.msg);
    if (a) CHECK(nk_plan_create(a, ndim, shape, &p, &err) == NK_OK, "%s", err.msg);
    nk_arch_free(a);
    return p;
}

/* every tile of a plan, computed by nk_kernel_tile, equals the whole matrix entry for entry;
 * window: the context keeps its self states by window (the tiles in order, then in reverse
 * order: every change of window), f32: the plane engine in float32 */
static void test_tiles_bitwise_opts(const char *spec, int ndim, const size_t *shape, size_t n1, size_t n2, size_t tile,
                                    int window, int f32)
{
    unsigned long long seed = 7;
    size_t s1[4] = {n1, shape[0], shape[1], shape[2]}, s2[4] = {n2, shape[0], shape[1], shape[2]};
    nk_array x1 = nk_test_random_array(ndim + 1, s1, &seed), x2 = nk_test_random_array(ndim + 1, s2, &seed);
    nk_plan *p = make_plan(spec, ndim, shape);
    nk_kernel_opts o;
    nk_kernel_opts_default(&o);
    o.nthreads = 2;
    o.f32 = f32;
    const size_t window_bytes = nk_kernel_window_bytes;
    for (int sym = 1; sym >= 0; sym--) {
        const nk_array *xb = sym ? NULL : &x2;
        nk_array K = {0}, T = {0};
        nk_error err = {{0}};
        CHECK(nk_kernel_matrix(p, &x1, xb, &o, &K, &T, &err) == NK_OK, "%s", err.msg);
        nk_kernel_ctx *ctx = NULL;
        if (window) nk_kernel_window_bytes = 1;
        CHECK(nk_kernel_ctx_create(p, &x1, xb, &o, &ctx, &err) == NK_OK, "%s", err.msg);
        nk_kernel_window_bytes = window_bytes;
        nk_tile_plan tp;
        nk_tile_plan_init(&tp, n1, sym ? 0 : n2, tile, &err);
        size_t cols = sym ? n1 : n2, mism = 0, covered = 0;
        unsigned char *seen = calloc(n1 * cols, 1);
        double *a = malloc(tile * tile * sizeof(double)), *b = malloc(tile * tile * sizeof(double));
        for (size_t k = 0; k < (window ? 2 : 1) * tp.count; k++) {
            const size_t t = k < tp.count ? k : 2 * tp.count - 1 - k;
            size_t r0, r1, c0, c1;
            nk_tile_plan_get(&tp, t, &r0, &r1, &c0, &c1);
            CHECK(nk_kernel_tile(ctx, r0, r1, c0, c1, a, b, tile, &err) == NK_OK, "%s", err.msg);
            for (size_t i = r0; i < r1; i++)
                for (size_t c = c0; c < c1; c++) {
                    if (sym && c < i) continue;
                    covered += !seen[i * cols + c];
                    seen[i * cols + c] = 1;
                    mism += memcmp(&a[(i - r0) * tile + c - c0], &K.data[i * cols + c], sizeof(double)) != 0;
                    mism += memcmp(&b[(i - r0) * tile + c - c0], &T.data[i * cols + c], sizeof(double)) != 0;
                }
        }
        CHECK(mism == 0, "%s %s tile %zu%s%s: %zu entries differ from nk_kernel_matrix", spec, sym ? "gram" : "cross", tile,
              window ? " by window" : "", f32 ? " f32" : "", mism);
        CHECK(covered == (sym ? n1 * (n1 + 1) / 2 : n1 * n2), "%s: the tiles cover %zu entries", spec, covered);
        free(seen); free(a); free(b);
        nk_kernel_ctx_free(ctx);
        nk_array_free(&K);
        nk_array_free(&T);
    }
    /* a tile start off the alignment is refused */
    nk_kernel_ctx *ctx = NULL;
    nk_error err = {{0}};
    double buf[64];
    nk_kernel_ctx_create(p, &x1, NULL, &o, &ctx, &err);
    CHECK(ctx && nk_kernel_tile(ctx, 1, 2, 0, 2, buf, buf, 8, &err) == NK_ERR_INPUT, "unaligned start accepted");
    nk_kernel_ctx_free(ctx);
    nk_plan_free(p);
    nk_array_free(&x1);
    nk_array_free(&x2);
}

static void test_journal_refuses(void)
{
    char path[] = "/tmp/nk_test_journal_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
    nk_journal *j = NULL;
    nk_error err = {{0}};
    CHECK(nk_journal_open(path, "run A\n", 10, 0, 1, &j, &err) == NK_OK, "%s", err.msg);
    CHECK(j && nk_journal_record(j, 3, 0xdeadbeef, &err) == NK_OK, "%s", err.msg);
    nk_journal_close(j);
    j = NULL;
    uint32_t crc = 0;
    CHECK(nk_journal_open(path, "run A\n", 10, 1, 0, &j, &err) == NK_OK, "%s", err.msg);
    CHECK(j && nk_journal_has(j, 3, &crc) && crc == 0xdeadbeef && nk_journal_count(j) == 1, "record not reloaded");
    nk_journal_close(j);
    j = NULL;
    CHECK(nk_journal_open(path, "run B\n", 10, 0, 1, &j, &err) == NK_ERR_INPUT && strstr(err.msg, "run B"), "another run accepted: %s", err.msg);
    nk_journal_remove(path);
    CHECK(access(path, F_OK) != 0, "journal not removed");
}

typedef struct {
    const double *K;
    size_t n;
    int products;
} dense_op;

static nk_status dense_matvec(void *ctx, const double *x, double *y, size_t k, nk_error *err)
{
    (void)err;
    dense_op *d = ctx;
    d->products++;
    for (size_t i = 0; i < d->n; i++)
        for (size_t c = 0; c < k; c++) {
            double s = 0;
            for (size_t j = 0; j < d->n; j++) s += d->K[i * d->n + j] * x[j * k + c];
            y[i * k + c] = s;
        }
    return NK_OK;
}

static nk_status dense_column(void *ctx, size_t i, double *out, nk_error *err)
{
    (void)err;
    const dense_op *d = ctx;
    memcpy(out, d->K + i * d->n, d->n * sizeof(double));
    return NK_OK;
}

static void report(void *ctx, int iter, double rel)
{
    double *last = ctx;
    (void)iter;
    last[0] = rel;
}

/* CG against a dense Cholesky solve on a CNN Gram; the mapped float64 file gives the same answer */
static void test_cg(void)
{
    const size_t shape[3] = {6, 6, 1}, n = 160, k = 2;
    unsigned long long seed = 3;
    size_t s[4] = {n, 6, 6, 1};
    nk_array x = nk_test_random_array(4, s, &seed);
    nk_plan *p = make_plan("[conv(3) relu]*2 gap dense", 3, shape);
    nk_array K = {0};
    nk_error err = {{0}};
    nk_kernel_opts o;
    nk_kernel_opts_default(&o);
    o.get = NK_GET_NNGP;
    CHECK(nk_kernel_matrix(p, &x, NULL, &o, &K, NULL, &err) == NK_OK, "%s", err.msg);
    double *B = malloc(n * k * sizeof(double)), *X = malloc(n * k * sizeof(double)), *R = malloc(n * k * sizeof(double));
    double *A = malloc(n * n * sizeof(double)), *diag = malloc(n * sizeof(double));
    for (size_t i = 0; i < n * k; i++) B[i] = nk_test_gauss(&seed);
    double mean_diag = 0;
    for (size_t i = 0; i < n; i++) { diag[i] = K.data[i * n + i]; mean_diag += diag[i] / n; }
    const double reg = 1e-4 * mean_diag;
    memcpy(A, K.data, n * n * sizeof(double));
    for (size_t i = 0; i < n; i++) A[i * n + i] += reg;
    memcpy(R, B, n * k * sizeof(double));
    CHECK(LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', (int)n, (int)k, A, (int)n, R, (int)k) == 0, "dposv");
    double scale = 0;
    for (size_t i = 0; i < n * k; i++) scale = fmax(scale, fabs(R[i]));
    int it_plain = 0, it_pre = 0;
    for (int pre = 0; pre < 2; pre++) {
        dense_op d = {K.data, n, 0};
        double last = -1;
        nk_cg_opts co = {0};
        co.rank = pre ? 40 : 0;
        co.tol = 1e-12;
        co.max_iter = 2000;
        co.report = report;
        co.report_ctx = &last;
        int it = 0;
        double rel = 1;
        CHECK(nk_cg_solve(n, k, dense_matvec, dense_column, diag, &d, reg, B, X, &co, &it, &rel, &err) == NK_OK, "%s", err.msg);
        double dmax = 0;
        for (size_t i = 0; i < n * k; i++) dmax = fmax(dmax, fabs(X[i] - R[i]));
        /* residual 1e-12 times the condition number (~1e4) bounds the error */
        CHECK(dmax <= 1e-7 * scale, "cg (rank %zu): differs from Cholesky by %.3g (scale %.3g)", co.rank, dmax, scale);
        CHECK(last == rel && rel <= 1e-12, "the last reported residual %.3g is not the result %.3g", last, rel);
        if (pre) it_pre = it; else it_plain = it;
    }
    printf("cg: %d iterations plain, %d with a rank-40 Nystrom preconditioner\n", it_plain, it_pre);
    CHECK(it_pre < it_plain, "the preconditioner did not reduce the iterations (%d vs %d)", it_pre, it_plain);
    /* the same system through a memory-mapped float64 kernel file */
    char path[] = "/tmp/nk_test_map_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK(nk_npy_write(path, &K, 0, &err) == NK_OK, "%s", err.msg);
    nk_mapped m;
    CHECK(nk_npy_map(path, &m, &err) == NK_OK && m.n == n && !m.f32, "%s", err.msg);
    nk_cg_opts co = {0};
    co.rank = 40;
    co.tol = 1e-12;
    CHECK(nk_cg_solve(n, k, nk_mapped_matvec, nk_mapped_column, diag, &m, reg, B, X, &co, NULL, NULL, &err) == NK_OK, "%s", err.msg);
    double dmax = 0;
    for (size_t i = 0; i < n * k; i++) dmax = fmax(dmax, fabs(X[i] - R[i]));
    CHECK(dmax <= 1e-7 * scale, "mapped cg differs from Cholesky by %.3g", dmax);
    nk_npy_unmap(&m);
    /* float32 storage: the mapped entries are the float32 roundings */
    CHECK(nk_npy_write(path, &K, 1, &err) == NK_OK, "%s", err.msg);
    CHECK(nk_npy_map(path, &m, &err) == NK_OK && m.f32, "%s", err.msg);
    double col[160];
    nk_mapped_column(&m, 5, col, &err);
    CHECK(col[7] == (double)(float)K.data[5 * n + 7], "float32 mapped entry");
    nk_npy_unmap(&m);
    unlink(path);
    free(B); free(X); free(R); free(A); free(diag);
    nk_array_free(&K);
    nk_array_free(&x);
    nk_plan_free(p);
}

static void test_tiles_bitwise(const char *spec, int ndim, const size_t *shape, size_t n1, size_t n2, size_t tile)
{
    test_tiles_bitwise_opts(spec, ndim, shape, n1, n2, tile, 0, 0);
}

int main(void)
{
    const size_t img[3] = {5, 5, 2}, vec[3] = {6, 0, 0};
    test_tiles_bitwise("[conv(3) relu]*2 gap dense", 3, img, 29, 19, 8);
    test_tiles_bitwise("[conv(3) relu]*2 gap dense", 3, img, 29, 19, 16);
    test_tiles_bitwise("conv(3) relu conv(3) erf flatten dense", 3, img, 21, 13, 8);
    test_tiles_bitwise("b=0.1 dense relu dense erf dense", 1, vec, 300, 170, 128);
    /* self states by window: the pooled batch path, pairs through plane_run, a Mehler layer's
     * records (what makes them large), float32 */
    for (int f32 = 0; f32 < 2; f32++) {
        test_tiles_bitwise_opts("[conv(3) relu]*2 gap dense", 3, img, 29, 19, 8, 1, f32);
        test_tiles_bitwise_opts("w=1.3 conv(3) relu conv(3) tanh flatten dense", 3, img, 21, 13, 8, 1, f32);
        test_tiles_bitwise_opts("b=0.1 conv(3) tanh avgpool(2) conv(3) sigmoid gap dense", 3, img, 17, 11, 16, 1, f32);
    }
    test_journal_refuses();
    test_cg();
    return nk_test_summary("test_dist");
}
