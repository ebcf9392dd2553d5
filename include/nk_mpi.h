/*
 * nk_mpi.h -- kernel matrices and solves over MPI ranks (built only by `make mpi`, into
 * build/libnkern-mpi.a; the rest of nkern never needs MPI).  Every call takes an explicit
 * communicator and is collective over it.
 *
 *   nk_mpi_kernel        tiles handed out dynamically (a one-sided counter on rank 0), each
 *                        computed with the rank's threads and written straight into OUT.part at
 *                        its offset with MPI-IO, journaled (nk_dist.h): bit-identical to
 *                        `nkern kernel` for any rank count, and resumable after kill -9.
 *   nk_mpi_kernel_solve  the Gram in ScaLAPACK's block-cyclic layout, each rank computing only
 *                        the blocks it owns (upper triangle): no rank holds the N x N matrix;
 *                        resumable with a journal (each rank's blocks in its own file);
 *                        then (K + reg I) A = Y by pdpotrf/pdpotrs and, on request, the
 *                        eigenvalues of K by pdsyevd (the NTK flow's eigendecomposition).
 */
#ifndef NK_MPI_H
#define NK_MPI_H

#include <mpi.h>

#include "nk_dist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Progress of the whole job (every rank's finished tiles), on rank 0 after each of its tiles.
 * Done counts include the tiles resumed from the journal; entries of a Gram count i <= j. */
typedef struct {
    size_t tiles_done, tiles_total, tiles_resumed;
    double entries_done, entries_total, entries_resumed;
} nk_mpi_progress;
typedef void (*nk_mpi_progress_fn)(void *ctx, const nk_mpi_progress *p);

/* As nk_kernel_journaled (nk_dist.h), over the ranks of comm (the journal stays when the run is
 * done: run again, it computes nothing; remove it with nk_journal_remove); stats are the job's (on every
 * rank); stats->computed counts this rank's tiles and *seconds the time this rank spent
 * computing, writing and recording them (the load balance: compare over ranks). */
nk_status nk_mpi_kernel(MPI_Comm comm, const nk_plan *p, const char *spec, const nk_array *x1, const nk_array *x2,
                        const nk_kernel_opts *o, size_t tile, const char *const out[2], int out_f32,
                        const char *journal_path, nk_mpi_progress_fn progress, void *progress_ctx,
                        nk_journal_stats *stats, double *seconds, nk_error *err);

/* Gram K of x (get: NK_GET_NNGP or NK_GET_NTK) in blocks of nb (a multiple of
 * nk_kernel_tile_align), then alpha = (K + reg I)^{-1} y for y (n x k, on every rank; alpha,
 * n x k, is returned on every rank).  If eig is not NULL: the n eigenvalues of K + reg I in
 * ascending order (on every rank) and, for each of the ntimes times t, the gradient flow's
 * coefficients alpha_t = V diag((1 - e^{-lr t lambda}) / lambda) V^T y into alpha_t (ntimes x n
 * x k; t = INFINITY gives alpha): the test predictions are K_test,train alpha_t, as nk_flow
 * (nk_infer.h) computes them on one machine.  reg_relative: reg times the mean diagonal of K.
 * journal (NULL: none): resumable.  Each rank keeps the blocks it computes in its own file
 * JOURNAL.blocks.RANK (its share of the matrix, never all of it) and records each, with its crc32,
 * in the journal JOURNAL (nk_dist.h; spec, as for nk_kernel_journaled, describes the run with the
 * data, block size and process grid): the same call after an interruption reads the recorded
 * blocks back and computes only the others; a journal of another run or grid is refused
 * (NK_ERR_INPUT).  Removed after a successful solve.  stats (may be NULL): this rank's blocks,
 * resumed and computed. */
nk_status nk_mpi_kernel_solve(MPI_Comm comm, const nk_plan *p, const nk_array *x, const nk_kernel_opts *o,
                              size_t nb, const char *spec, const char *journal, const double *y, size_t k, double reg,
                              int reg_relative, double *alpha, double *eig, const double *times, size_t ntimes, double lr,
                              double *alpha_t, nk_journal_stats *stats, nk_error *err);

/* The same solve (and flow) for a training kernel in a file written by nkern kernel or
 * nk_mpi_kernel (n x n, float32 or float64): each rank reads only its block-cyclic blocks.
 * reg_relative: reg times the mean diagonal of K. */
nk_status nk_mpi_npy_solve(MPI_Comm comm, const char *path, size_t nb, const double *y, size_t n, size_t k, double reg,
                           int reg_relative, double *alpha, double *eig, const double *times, size_t ntimes, double lr,
                           double *alpha_t, nk_error *err);

#ifdef __cplusplus
}
#endif
#endif
