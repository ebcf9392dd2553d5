/*
 * nk_dist.h -- kernel matrices in tiles: a tile plan, a journal of finished tiles, tiles written
 * straight into the output .npy at their offsets, and solvers that never form the whole matrix.
 *
 * Nothing here needs MPI: the single-process `nkern kernel --journal` and `nkern-mpi` (built by
 * `make mpi`, which adds MPI-IO and ScaLAPACK on top) share the plan, the journal and the tile
 * layout, so a run interrupted under one resumes under the other.
 *
 *   plan:     tiles of T x T entries (T a multiple of nk_kernel_tile_align); a Gram has only the
 *             tiles (I, J) with I <= J, each also written mirrored at (J, I).
 *   journal:  OUT.journal holds a description of the run (spec, data checksums, precision, output
 *             type, tile size); OUT.journal.W (one per writer W) one line per finished tile with
 *             the crc32 of its bytes in the file.  A journal of another run is refused with the line
 *             that differs; a recorded tile whose bytes no longer match its crc is computed again.
 *   output:   OUT.part (the .npy header, then the matrix as tiles arrive), renamed to OUT when
 *             every tile is in; with --get both, PREFIX.nngp.npy and PREFIX.ntk.npy.
 */
#ifndef NK_DIST_H
#define NK_DIST_H

#include "nkern.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --------------------------------------------------------------- tile plan -- */

typedef struct {
    size_t n1, n2;      /* matrix rows and columns */
    size_t tile;        /* tile side */
    int sym;            /* 1: a Gram, tiles I <= J only */
    size_t rows, cols;  /* tile rows and columns of the grid */
    size_t count;       /* tiles to compute */
} nk_tile_plan;

/* n2 = 0: the symmetric Gram of n1 samples. */
nk_status nk_tile_plan_init(nk_tile_plan *tp, size_t n1, size_t n2, size_t tile, nk_error *err);
/* Tile t (0 <= t < count): rows r0..r1, columns c0..c1. */
void nk_tile_plan_get(const nk_tile_plan *tp, size_t t, size_t *r0, size_t *r1, size_t *c0, size_t *c1);

/* ----------------------------------------------------------------- journal -- */

typedef struct nk_journal nk_journal;

/* The description of a kernel run that a journal must match to be reused (shift:
 * nk_kernel_opts.shift, a line of its own only when nonzero, so that plain journals stay as
 * they were). */
int nk_journal_describe(char *buf, size_t cap, const char *spec, const nk_array *x1, const nk_array *x2, int get,
                        int f32, int shift, int out_f32, const nk_tile_plan *tp);
/* Open the journal at path for the run `run` over ntiles tiles, appending as writer number
 * `writer`.  create = 1: write the description if the journal is new; 0: it must exist (the
 * other ranks of an MPI job, after rank 0 created it).  NK_ERR_INPUT if it describes another
 * run (the message names the line that differs).  Records of every writer are loaded. */
nk_status nk_journal_open(const char *path, const char *run, size_t ntiles, int writer, int create,
                          nk_journal **out, nk_error *err);
/* 1 and *crc if tile t is recorded as finished. */
int nk_journal_has(const nk_journal *j, size_t t, uint32_t *crc);
void nk_journal_forget(nk_journal *j, size_t t);
size_t nk_journal_count(const nk_journal *j);
/* Append "tile t crc" for this writer and flush it to the operating system (survives kill -9). */
nk_status nk_journal_record(nk_journal *j, size_t t, uint32_t crc, nk_error *err);
void nk_journal_close(nk_journal *j);
/* Remove the description and every writer's records. */
void nk_journal_remove(const char *path);

/* ------------------------------------------------------------ tile output -- */

/* Where tiles go: write_at / read_at move len bytes at byte offset off of output `which` (0 the
 * NNGP, 1 the NTK); 0 on success. */
typedef struct {
    int (*write_at)(void *ctx, int which, uint64_t off, const void *buf, size_t len);
    int (*read_at)(void *ctx, int which, uint64_t off, void *buf, size_t len);
    void *ctx;
    int have[2];        /* which outputs exist */
    int as_f32;         /* element type in the files */
    uint64_t data_off;  /* the .npy header's length */
} nk_tile_store;

/* A store for the outputs of a tp.n1 x tp.n2 run writing `get` (NK_GET_*) in float32 or float64
 * through write_at / read_at on ctx; head (hlen bytes) is the .npy header each file starts with. */
void nk_tile_store_init(nk_tile_store *s, const nk_tile_plan *tp, int get, int as_f32,
                        int (*write_at)(void *, int, uint64_t, const void *, size_t),
                        int (*read_at)(void *, int, uint64_t, void *, size_t), void *ctx,
                        unsigned char head[512], size_t *hlen);
/* len bytes at byte offset off of fd, however many reads it takes; 0, or -1 at a failure or EOF. */
int nk_pread_all(int fd, uint64_t off, void *buf, size_t len);
/* The .part file of each output the store has (names in part[w]), opened read-write into fd[w]
 * and given its .npy header and full size; a file that did not exist holds no recorded tile, so
 * the journal forgets them all.  Then every recorded tile whose bytes no longer match its crc is
 * forgotten and counted in *rejected.  The store's read_at must read through the same fd[]. */
nk_status nk_tile_parts_open(const nk_tile_store *s, const nk_tile_plan *tp, nk_journal *jn, char part[2][4200],
                             const unsigned char *head, size_t hlen, int fd[2], size_t *rejected, nk_error *err);
/* 1 if every tile is recorded in jn and the finished outputs out[] (opened read-only into fd[],
 * through which the store's read_at reads, and closed again) still hold the recorded bytes: the
 * run is done, as a journal kept after it says. */
int nk_tile_outputs_finished(const nk_tile_store *s, const nk_tile_plan *tp, const nk_journal *jn, const char *const out[2],
                             int fd[2]);
/* Tests' interruptions, read from the environment once per run: before the next tile, with
 * `computed` tiles done so far, NK_JOURNAL_PAUSE_AFTER=N waits (alive, to be killed) once N are
 * done, and NK_JOURNAL_STOP_AFTER=N makes this return NK_ERR_RUN (a resumable stop). */
nk_status nk_journal_test_hooks(size_t computed, nk_error *err);

/* Write tile t (nngp / ntk at [(i - r0) * ld + c - c0]) and, for a Gram, its mirror; *crc is the
 * crc32 of every byte written, in order. */
nk_status nk_tile_store_put(const nk_tile_store *s, const nk_tile_plan *tp, size_t t, const double *nngp,
                            const double *ntk, size_t ld, uint32_t *crc, nk_error *err);
/* The crc32 of tile t's bytes as they are in the files now (the order of nk_tile_store_put). */
nk_status nk_tile_store_crc(const nk_tile_store *s, const nk_tile_plan *tp, size_t t, uint32_t *crc, nk_error *err);

/* ------------------------------------------------- single-process driver -- */

typedef struct {
    size_t tiles, resumed, computed, rejected;  /* rejected: recorded, but the bytes did not match */
} nk_journal_stats;

/* A tile side the plan can take (a multiple of nk_plan_tile_align); the error names the nearest
 * that can.  nk_tile_job_init checks it; callers that create files first (classify's journal
 * directory) call it before. */
nk_status nk_tile_check(const nk_plan *p, size_t tile, nk_error *err);

/* The start every tiled kernel run shares (this driver and the MPI one), before it creates any
 * file: the options checked against plan p (nk_kernel_opts_check) and the tile side
 * (nk_tile_check), *ko = *o (the defaults if o
 * is NULL), *stats zeroed, the tile plan of x1 against x2 (NULL: the Gram) and the run's
 * description (run, cap bytes) that its journal must match. */
nk_status nk_tile_job_init(const nk_plan *p, const nk_kernel_opts *o, const char *spec, const nk_array *x1, const nk_array *x2, size_t tile,
                           int out_f32, nk_kernel_opts *ko, nk_tile_plan *tp, char *run, size_t cap,
                           nk_journal_stats *stats, nk_error *err);

/* The kernel matrix in tiles written straight to out[0] (NNGP) / out[1] (NTK) as requested by
 * o->get, with the journal at journal_path: started again after an interruption, it computes
 * only the tiles not yet recorded.  The final files are byte-identical to nk_npy_write of
 * nk_kernel_matrix's result.  o->progress receives entries done / total over the whole run.
 * The journal stays when the run is done: run again, the call checks the outputs against it and
 * computes nothing (how `nkern classify --journal DIR` resumes after its first kernel); remove
 * it with nk_journal_remove once the outputs are no longer to be reused. */
nk_status nk_kernel_journaled(const nk_plan *p, const char *spec, const nk_array *x1, const nk_array *x2,
                              const nk_kernel_opts *o, size_t tile, const char *const out[2], int out_f32,
                              const char *journal_path, nk_journal_stats *stats, nk_error *err);

/* ------------------------------------------------------ past memory -- */

/* A square kernel .npy as nkern kernel writes it (float64, or float32 storage with --f32),
 * memory-mapped read-only: the operating system pages it in and out, so the matrix may exceed
 * the memory (`nkern arch` reports the estimate; see docs/cluster.md). */
typedef struct {
    const void *data;   /* n x n elements, C order */
    size_t n;
    int f32;
    void *map;
    size_t map_len;
} nk_mapped;
nk_status nk_npy_map(const char *path, nk_mapped *m, nk_error *err);
void nk_npy_unmap(nk_mapped *m);

/* ---------------------------------------------------- conjugate gradients -- */

/* y = K x for the n x n symmetric positive definite operator K (x, y: n x k, row major). */
typedef nk_status (*nk_matvec_fn)(void *ctx, const double *x, double *y, size_t k, nk_error *err);
/* One line per iteration: relative residual max over columns of |r| / |b|. */
typedef void (*nk_cg_report_fn)(void *ctx, int iter, double rel_residual);

typedef struct {
    int max_iter;        /* 0: n */
    double tol;          /* relative residual; 0: 1e-10 */
    size_t rank;         /* preconditioner rank m (partial pivoted Cholesky); 0: no preconditioner */
    nk_cg_report_fn report;
    void *report_ctx;
} nk_cg_opts;

/* Solve (K + reg I) X = B (n x k) by conjugate gradients, preconditioned with the Nystrom
 * approximation L L^T of K from a partial pivoted Cholesky of rank m (the pivots' columns,
 * as FALKON and EigenPro do): P = L L^T + reg I, applied through the Woodbury identity
 * P^{-1} r = (r - L (reg I + L^T L)^{-1} L^T r) / reg.  column(ctx, i, out) fills column i of K,
 * diag the n diagonal entries.  *iters and *rel_residual (either may be NULL) receive the result. */
typedef nk_status (*nk_column_fn)(void *ctx, size_t i, double *out, nk_error *err);
nk_status nk_cg_solve(size_t n, size_t k, nk_matvec_fn matvec, nk_column_fn column, const double *diag, void *ctx,
                      double reg, const double *B, double *X, const nk_cg_opts *o, int *iters, double *rel_residual,
                      nk_error *err);

/* The operator and columns of a memory-mapped kernel (ctx: the nk_mapped), for nk_cg_solve. */
nk_status nk_mapped_matvec(void *ctx, const double *x, double *y, size_t k, nk_error *err);
nk_status nk_mapped_column(void *ctx, size_t i, double *out, nk_error *err);

#ifdef __cplusplus
}
#endif
#endif
