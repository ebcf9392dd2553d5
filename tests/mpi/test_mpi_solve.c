/* test_mpi_solve.c -- run under mpirun (tests/test_mpi.sh): the ScaLAPACK ridge solve and
 * eigenvalues of a block-cyclic kernel Gram (nk_mpi_kernel_solve) against LAPACK on the whole
 * matrix from nk_kernel_matrix on rank 0.  Sizes not multiples of the block, so edge blocks and
 * uneven ownership are exercised. */
#include "nk_mpi.h"
#include "nkern.h"
#include "../nk_test.h"

#include <lapacke.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void check_arch(const char *spec, const size_t *shape, int ndim, size_t n, size_t nb, int get, int rank)
{
    nk_error err = {{0}};
    nk_arch *a = NULL;
    nk_plan *p = NULL;
    unsigned long long seed = 42;
    size_t xs[4] = {n, shape[0], shape[1], shape[2]};
    nk_array x = nk_test_random_array(ndim + 1, xs, &seed);
    const size_t k = 3;
    double *y = malloc(n * k * sizeof(double)), *alpha = malloc(n * k * sizeof(double)), *eig = malloc(n * sizeof(double));
    const double times[2] = {0.7, INFINITY}, lr = 1.3;
    double *alpha_t = malloc(2 * n * k * sizeof(double));
    for (size_t i = 0; i < n * k; i++) y[i] = nk_test_gauss(&seed);
    CHECK(nk_arch_parse(spec, NULL, &a, &err) == NK_OK, "%s", err.msg);
    CHECK(nk_plan_create(a, ndim, shape, &p, &err) == NK_OK, "%s", err.msg);
    nk_kernel_opts o;
    nk_kernel_opts_default(&o);
    o.get = get;
    o.nthreads = 1;
    const double reg = 1e-3;
    nk_status st = nk_mpi_kernel_solve(MPI_COMM_WORLD, p, &x, &o, nb, spec, NULL, y, k, reg, 0, alpha, eig, times, 2, lr, alpha_t,
                                       NULL, &err);
    CHECK(st == NK_OK, "%s", err.msg);
    if (rank == 0 && st == NK_OK) {
        /* the reference: the whole matrix, LAPACK's Cholesky solve and symmetric eigenvalues */
        nk_array K = {0}, T = {0};
        CHECK(nk_kernel_matrix(p, &x, NULL, &o, &K, &T, &err) == NK_OK, "%s", err.msg);
        nk_array *M = get == NK_GET_NTK ? &T : &K;
        double *A = malloc(n * n * sizeof(double)), *X = malloc(n * k * sizeof(double)), *w = malloc(n * sizeof(double));
        memcpy(A, M->data, n * n * sizeof(double));
        for (size_t i = 0; i < n; i++) A[i * n + i] += reg;
        memcpy(X, y, n * k * sizeof(double));
        CHECK(LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', (int)n, (int)k, A, (int)n, X, (int)k) == 0, "dposv");
        double amax = 0, dmax = 0;
        for (size_t i = 0; i < n * k; i++) {
            amax = fmax(amax, fabs(X[i]));
            dmax = fmax(dmax, fabs(X[i] - alpha[i]));
        }
        /* the solutions agree to rounding times the condition number (~1e3 here) */
        CHECK(dmax <= 1e-10 * amax, "%s: alpha differs by %.3g (scale %.3g)", spec, dmax, amax);
        memcpy(A, M->data, n * n * sizeof(double));
        for (size_t i = 0; i < n; i++) A[i * n + i] += reg;
        CHECK(LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', (int)n, A, (int)n, w) == 0, "dsyevd");
        double emax = fabs(w[n - 1]), edif = 0;
        for (size_t i = 0; i < n; i++) edif = fmax(edif, fabs(w[i] - eig[i]));
        CHECK(edif <= 1e-10 * emax, "%s: eigenvalues differ by %.3g (largest %.3g)", spec, edif, emax);
        /* the flow from LAPACK's eigenvectors: alpha_t = V diag((1 - e^{-lr t w}) / w) V^T y; at
         * t = inf it is the ridge solution, which the Cholesky solve gave independently */
        double fdif = 0, fscale = 0, idif = 0;
        for (int t = 0; t < 2; t++)
            for (size_t i = 0; i < n; i++)
                for (size_t c = 0; c < k; c++) {
                    double acc = 0;
                    for (size_t j = 0; j < n; j++) {
                        double vty = 0;
                        for (size_t l = 0; l < n; l++) vty += A[l * n + j] * y[l * k + c];
                        const double g = isinf(times[t]) ? 1 / w[j] : -expm1(-w[j] * lr * times[t]) / w[j];
                        acc += A[i * n + j] * g * vty;
                    }
                    fscale = fmax(fscale, fabs(acc));
                    fdif = fmax(fdif, fabs(acc - alpha_t[(t * n + i) * k + c]));
                    if (t == 1) idif = fmax(idif, fabs(X[i * k + c] - alpha_t[(t * n + i) * k + c]));
                }
        CHECK(fdif <= 1e-10 * fscale, "%s: flow coefficients differ by %.3g (scale %.3g)", spec, fdif, fscale);
        CHECK(idif <= 1e-10 * amax, "%s: the flow at t = inf differs from the ridge solve by %.3g", spec, idif);
        printf("%s, n %zu, block %zu: alpha max diff %.2e (scale %.2e), eigenvalues %.2e (largest %.2e), flow %.2e (scale %.2e)\n",
               spec, n, nb, dmax, amax, edif, emax, fdif, fscale);
        free(A); free(X); free(w);
        nk_array_free(&K);
        nk_array_free(&T);
    }
    free(y); free(alpha); free(eig); free(alpha_t);
    nk_array_free(&x);
    nk_plan_free(p);
    nk_arch_free(a);
}

/* The journaled solve: stopped after one block per rank (NK_JOURNAL_STOP_AFTER), then run again,
 * it reads those blocks back, computes the rest and gives the bytes of an uninterrupted solve; a
 * journal of another block size is refused; a finished solve leaves no journal. */
static void check_resume(int rank)
{
    const char *spec = "[conv(3) relu]*2 gap dense", *journal = "solve.journal";
    enum { n = 45, k = 2 };
    const size_t shape[3] = {5, 5, 2}, nb = 8;
    nk_error err = {{0}};
    nk_arch *a = NULL;
    nk_plan *p = NULL;
    unsigned long long seed = 7;
    size_t xs[4] = {n, 5, 5, 2};
    nk_array x = nk_test_random_array(4, xs, &seed);
    double y[n * k], ref[n * k], alpha[n * k], eig_ref[n], eig[n], at[n * k];
    const double t_inf = INFINITY;
    for (size_t i = 0; i < n * k; i++) y[i] = nk_test_gauss(&seed);
    CHECK(nk_arch_parse(spec, NULL, &a, &err) == NK_OK, "%s", err.msg);
    CHECK(nk_plan_create(a, 3, shape, &p, &err) == NK_OK, "%s", err.msg);
    nk_kernel_opts o;
    nk_kernel_opts_default(&o);
    o.get = NK_GET_NTK;
    o.nthreads = 1;
    nk_journal_stats js;
    nk_status st = nk_mpi_kernel_solve(MPI_COMM_WORLD, p, &x, &o, nb, spec, NULL, y, k, 1e-3, 0, ref, eig_ref, &t_inf, 1, 1, at,
                                       NULL, &err);
    CHECK(st == NK_OK, "uninterrupted: %s", err.msg);
    setenv("NK_JOURNAL_STOP_AFTER", "1", 1);
    st = nk_mpi_kernel_solve(MPI_COMM_WORLD, p, &x, &o, nb, spec, journal, y, k, 1e-3, 0, alpha, eig, &t_inf, 1, 1, at, &js, &err);
    unsetenv("NK_JOURNAL_STOP_AFTER");
    CHECK(st == NK_ERR_RUN, "the stop hook did not stop the solve (status %d)", (int)st);
    st = nk_mpi_kernel_solve(MPI_COMM_WORLD, p, &x, &o, 16, spec, journal, y, k, 1e-3, 0, alpha, eig, &t_inf, 1, 1, at, &js, &err);
    /* rank 0 reads the journal and says why; the others learn that it failed */
    CHECK(rank ? st != NK_OK : st == NK_ERR_INPUT && strstr(err.msg, "tile 8"), "rank %d: another block size accepted (status %d): %s",
          rank, (int)st, err.msg);
    st = nk_mpi_kernel_solve(MPI_COMM_WORLD, p, &x, &o, nb, spec, journal, y, k, 1e-3, 0, alpha, eig, &t_inf, 1, 1, at, &js, &err);
    CHECK(st == NK_OK, "resumed: %s", err.msg);
    CHECK(js.resumed == 1 && js.computed >= 1, "rank %d: %zu blocks resumed, %zu computed (expected 1 resumed)", rank, js.resumed,
          js.computed);
    /* the Cholesky solve is bit-reproducible; pdsyevd is not from run to run on every grid (1 x 3
     * varies in the last bits even uninterrupted), so its eigenvalues get a tolerance */
    double edif = 0;
    for (int i = 0; i < n; i++) edif = fmax(edif, fabs(eig[i] - eig_ref[i]));
    CHECK(st == NK_OK && !memcmp(alpha, ref, sizeof ref), "the resumed solve differs from the uninterrupted one");
    CHECK(edif <= 1e-12 * fabs(eig_ref[n - 1]), "the resumed eigenvalues differ by %.3g", edif);
    char path[64];
    snprintf(path, sizeof path, "%s.blocks.%d", journal, rank);
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK(access(journal, F_OK) != 0 && access(path, F_OK) != 0, "a finished solve left its journal or blocks");
    nk_array_free(&x);
    nk_plan_free(p);
    nk_arch_free(a);
}

int main(int argc, char **argv)
{
    int rank;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const size_t img[3] = {5, 5, 2}, vec[3] = {7, 0, 0};
    check_arch("[conv(3) relu]*2 gap dense", img, 3, 45, 8, NK_GET_NTK, rank);
    check_arch("[conv(3) relu]*2 flatten dense", img, 3, 30, 16, NK_GET_NNGP, rank);
    check_arch("b=0.1 dense relu dense relu dense", vec, 1, 300, 128, NK_GET_NNGP, rank);
    check_resume(rank);
    /* every rank's count: the failures of any rank decide */
    int fails = nk_test_failed, all;
    MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    nk_test_failed = all;
    if (rank) nk_test_passed = 0;
    MPI_Finalize();
    return rank == 0 ? nk_test_summary("test_mpi_solve") : 0;
}
