/* cg.c -- kernels past memory: a kernel .npy memory-mapped (float32 or float64 storage), and the
 * conjugate-gradient solve of (K + reg I) X = B with a Nystrom preconditioner from a partial
 * pivoted Cholesky (nk_dist.h).  CG needs only K times a block of vectors and m columns of K,
 * so N is bounded by the disk, not by a dense Cholesky's N^2 doubles in memory. */
#include "nk_dist.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------- memory-mapped .npy -- */

static const unsigned char *find_bytes(const unsigned char *hay, size_t n, const char *needle, size_t len)
{
    for (size_t i = 0; i + len <= n; i++)
        if (!memcmp(hay + i, needle, len)) return hay + i;
    return NULL;
}

nk_status nk_npy_map(const char *path, nk_mapped *m, nk_error *err)
{
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return nk_fail(err, NK_ERR_IO, "%s: cannot open: %s (check the path)", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || sb.st_size < 64) {
        close(fd);
        return nk_fail(err, NK_ERR_INPUT, "%s: too short for a .npy file (write it with nkern kernel)", path);
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return nk_fail(err, NK_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    /* the header must be exactly the one nkern writes for a square float32/float64 matrix */
    const unsigned char *b = map;
    size_t hlen = b[6] == 1 ? 10 + (size_t)(b[8] | b[9] << 8) : 0;
    size_t n = 0;
    const unsigned char *shape = hlen ? find_bytes(b, hlen, "'shape': (", 10) : NULL;
    if (shape) n = strtoul((const char *)shape + 10, NULL, 10);
    int f32 = hlen && find_bytes(b, hlen, "'<f4'", 5) != NULL, f64 = hlen && find_bytes(b, hlen, "'<f8'", 5) != NULL;
    unsigned char head[512];
    size_t want_len = 0, sh[2] = {n, n};
    if (n) nk_npy_header(2, sh, f32, head, &want_len);
    if (!n || !(f32 || f64) || want_len != hlen || memcmp(head, b, hlen) ||
        (size_t)sb.st_size != hlen + n * n * (f32 ? 4 : 8)) {
        munmap(map, (size_t)sb.st_size);
        return nk_fail(err, NK_ERR_INPUT, "%s: not a square float32/float64 C-order matrix as nkern kernel writes it", path);
    }
    m->map = map;
    m->map_len = (size_t)sb.st_size;
    m->data = b + hlen;
    m->n = n;
    m->f32 = f32;
    return NK_OK;
}

void nk_npy_unmap(nk_mapped *m)
{
    if (m->map) munmap(m->map, m->map_len);
    memset(m, 0, sizeof *m);
}

static double mapped_at(const nk_mapped *m, size_t i, size_t j)
{
    return m->f32 ? (double)((const float *)m->data)[i * m->n + j] : ((const double *)m->data)[i * m->n + j];
}

nk_status nk_mapped_matvec(void *ctx, const double *x, double *y, size_t k, nk_error *err)
{
    (void)err;
    const nk_mapped *m = ctx;
    /* row by row: one pass over the file per product, the rows streamed from the page cache */
    for (size_t i = 0; i < m->n; i++) {
        double *yi = y + i * k;
        for (size_t c = 0; c < k; c++) yi[c] = 0;
        for (size_t j = 0; j < m->n; j++) {
            const double a = mapped_at(m, i, j);
            for (size_t c = 0; c < k; c++) yi[c] += a * x[j * k + c];
        }
    }
    return NK_OK;
}

nk_status nk_mapped_column(void *ctx, size_t i, double *out, nk_error *err)
{
    (void)err;
    const nk_mapped *m = ctx;
    for (size_t j = 0; j < m->n; j++) out[j] = mapped_at(m, i, j);  /* K is symmetric: row i */
    return NK_OK;
}

/* -------------------------------------------------------------------- CG -- */

/* The preconditioner P = L L^T + reg I (L: n x m, from m steps of pivoted Cholesky) applied
 * through Woodbury: P^{-1} r = (r - L S^{-1} L^T r) / reg with S = reg I + L^T L (Cholesky). */
typedef struct {
    size_t n, m;
    double *L;    /* n x m, row major */
    double *S;    /* m x m, its Cholesky factor */
    double *tmp;  /* m x k */
    double reg;
} nystrom;

static nk_status nystrom_build(nystrom *pc, size_t n, size_t m, nk_column_fn column, const double *diag, void *ctx,
                               double reg, size_t k, nk_error *err)
{
    memset(pc, 0, sizeof *pc);
    pc->n = n;
    pc->reg = reg;
    double *d = malloc(n * sizeof(double)), *col = malloc(n * sizeof(double));
    pc->L = calloc(n * m, sizeof(double));
    if (!d || !col || !pc->L) {
        free(d); free(col);
        return nk_fail(err, NK_ERR_NOMEM, "cg: out of memory for a rank-%zu preconditioner", m);
    }
    memcpy(d, diag, n * sizeof(double));
    nk_status st = NK_OK;
    /* partial pivoted Cholesky: pick the largest remaining diagonal, L[:, s] = (K[:, p] - L L[p]^T) / sqrt(d_p) */
    size_t s = 0;
    for (; s < m && st == NK_OK; s++) {
        size_t p = 0;
        for (size_t i = 1; i < n; i++)
            if (d[i] > d[p]) p = i;
        if (d[p] <= 1e-12 * diag[p]) break;  /* K is numerically of rank s */
        st = column(ctx, p, col, err);
        const double piv = sqrt(d[p]);
        for (size_t i = 0; st == NK_OK && i < n; i++) {
            double v = col[i];
            for (size_t t = 0; t < s; t++) v -= pc->L[i * m + t] * pc->L[p * m + t];
            pc->L[i * m + s] = v / piv;
        }
        for (size_t i = 0; st == NK_OK && i < n; i++) d[i] -= pc->L[i * m + s] * pc->L[i * m + s];
        d[p] = 0;
    }
    free(d);
    free(col);
    if (st != NK_OK) return st;
    pc->m = s;
    /* L was allocated n x m: compact to n x s */
    for (size_t i = 0; i < n && s < m; i++) memmove(pc->L + i * s, pc->L + i * m, s * sizeof(double));
    pc->S = malloc((s ? s * s : 1) * sizeof(double));
    pc->tmp = malloc((s ? s * k : 1) * sizeof(double));
    if (!pc->S || !pc->tmp) return nk_fail(err, NK_ERR_NOMEM, "cg: out of memory for the preconditioner");
    if (s) {
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)s, (int)n, 1.0, pc->L, (int)s, 0.0, pc->S, (int)s);
        for (size_t i = 0; i < s; i++) pc->S[i * s + i] += reg;
        if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (int)s, pc->S, (int)s))
            return nk_fail(err, NK_ERR_RUN, "cg: the preconditioner's reg I + L^T L is not positive definite (raise reg)");
    }
    return NK_OK;
}

static void nystrom_apply(const nystrom *pc, const double *r, double *z, size_t k)
{
    const size_t n = pc->n, s = pc->m;
    memcpy(z, r, n * k * sizeof(double));
    if (s) {
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)s, (int)k, (int)n, 1.0, pc->L, (int)s, r, (int)k, 0.0,
                    pc->tmp, (int)k);
        LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'U', (int)s, (int)k, pc->S, (int)s, pc->tmp, (int)k);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)k, (int)s, -1.0, pc->L, (int)s, pc->tmp,
                    (int)k, 1.0, z, (int)k);
    }
    for (size_t i = 0; i < n * k; i++) z[i] /= pc->reg;
}

static void nystrom_free(nystrom *pc)
{
    free(pc->L);
    free(pc->S);
    free(pc->tmp);
}

nk_status nk_cg_solve(size_t n, size_t k, nk_matvec_fn matvec, nk_column_fn column, const double *diag, void *ctx,
                      double reg, const double *B, double *X, const nk_cg_opts *o, int *iters, double *rel_residual,
                      nk_error *err)
{
    nk_cg_opts def = {0};
    if (!o) o = &def;
    if (!(reg > 0)) return nk_fail(err, NK_ERR_INPUT, "cg: reg must be > 0 (it is the preconditioner's floor)");
    const int max_iter = o->max_iter > 0 ? o->max_iter : (int)n;
    const double tol = o->tol > 0 ? o->tol : 1e-10;
    nystrom pc = {0};
    double *R = malloc(n * k * sizeof(double)), *Z = malloc(n * k * sizeof(double));
    double *P = malloc(n * k * sizeof(double)), *Q = malloc(n * k * sizeof(double));
    double *rz = malloc(3 * k * sizeof(double)), *bn = rz + k, *pq = rz + 2 * k;
    nk_status st = !R || !Z || !P || !Q || !rz ? nk_fail(err, NK_ERR_NOMEM, "cg: out of memory for %zu x %zu vectors", n, k) : NK_OK;
    if (st == NK_OK) st = nystrom_build(&pc, n, o->rank < n ? o->rank : n, column, diag, ctx, reg, k, err);
    /* k independent CG recurrences side by side (one product with K per iteration for all):
     * x = 0, r = b, z = P^-1 r, p = z; alpha = r.z / p.(K + reg) p; beta = r'.z' / r.z */
    if (st == NK_OK) {
        memset(X, 0, n * k * sizeof(double));
        memcpy(R, B, n * k * sizeof(double));
        nystrom_apply(&pc, R, Z, k);
        memcpy(P, Z, n * k * sizeof(double));
        for (size_t c = 0; c < k; c++) {
            rz[c] = bn[c] = 0;
            for (size_t i = 0; i < n; i++) { rz[c] += R[i * k + c] * Z[i * k + c]; bn[c] += B[i * k + c] * B[i * k + c]; }
            bn[c] = sqrt(bn[c]) > 0 ? sqrt(bn[c]) : 1;
        }
    }
    int it = 0;
    double rel = 1;
    while (st == NK_OK && it < max_iter) {
        st = matvec(ctx, P, Q, k, err);
        if (st != NK_OK) break;
        for (size_t i = 0; i < n * k; i++) Q[i] += reg * P[i];
        for (size_t c = 0; c < k; c++) {
            pq[c] = 0;
            for (size_t i = 0; i < n; i++) pq[c] += P[i * k + c] * Q[i * k + c];
        }
        rel = 0;
        for (size_t c = 0; c < k; c++) {
            const double a = pq[c] > 0 ? rz[c] / pq[c] : 0;
            double rn = 0;
            for (size_t i = 0; i < n; i++) {
                X[i * k + c] += a * P[i * k + c];
                R[i * k + c] -= a * Q[i * k + c];
                rn += R[i * k + c] * R[i * k + c];
            }
            rel = fmax(rel, sqrt(rn) / bn[c]);
        }
        it++;
        if (o->report) o->report(o->report_ctx, it, rel);
        if (rel <= tol) break;
        nystrom_apply(&pc, R, Z, k);
        for (size_t c = 0; c < k; c++) {
            double rz_new = 0;
            for (size_t i = 0; i < n; i++) rz_new += R[i * k + c] * Z[i * k + c];
            const double beta = rz[c] > 0 ? rz_new / rz[c] : 0;
            rz[c] = rz_new;
            for (size_t i = 0; i < n; i++) P[i * k + c] = Z[i * k + c] + beta * P[i * k + c];
        }
    }
    if (iters) *iters = it;
    if (rel_residual) *rel_residual = rel;
    if (st == NK_OK && rel > tol)
        st = nk_fail(err, NK_ERR_RUN, "cg: relative residual %.3g after %d iterations, above %.3g (raise the preconditioner rank, reg or the iteration limit)",
                     rel, it, tol);
    nystrom_free(&pc);
    free(R); free(Z); free(P); free(Q); free(rz);
    return st;
}
