/* mpi_solve.c -- nk_mpi_kernel_solve: the Gram filled block by block straight into ScaLAPACK's
 * block-cyclic layout (each rank computes only the upper-triangle blocks it owns; with a journal
 * each block is also kept in the rank's own file, so an interrupted solve resumes), then the
 * ridge / GP solve by pdpotrf + pdpotrs and the eigenvalues by pdsyevd (nk_mpi.h). */
#include "nk_mpi.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* BLACS and ScaLAPACK (Debian's libscalapack-openmpi ships no C header). */
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int ctxt);
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb, const int *irsrc,
               const int *icsrc, const int *ctxt, const int *lld, int *info);
void pdpotrf_(const char *uplo, const int *n, double *a, const int *ia, const int *ja, const int *desca, int *info);
void pdpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a, const int *ia, const int *ja,
              const int *desca, double *b, const int *ib, const int *jb, const int *descb, int *info);
void pdsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *ia, const int *ja,
              const int *desca, double *w, double *z, const int *iz, const int *jz, const int *descz, double *work,
              const int *lwork, int *iwork, const int *liwork, int *info);

/* The process grid closest to square: nprow the largest divisor of R not above sqrt(R). */
static void grid_shape(int R, int *nprow, int *npcol)
{
    int r = (int)sqrt((double)R);
    while (r > 1 && R % r) r--;
    *nprow = r < 1 ? 1 : r;
    *npcol = R / *nprow;
}

/* g(lambda, s) = (1 - e^{-lambda s}) / lambda: the gradient flow's gain (1 / lambda at s = inf) */
static double flow_gain(double lambda, double s)
{
    if (isinf(s)) return 1.0 / lambda;
    if (lambda == 0.0) return s;
    return -expm1(-lambda * s) / lambda;
}

/* Fill block rows r0..r1, columns c0..c1 (r0 <= c0) of the training kernel into buf (row i at
 * buf + (i - r0) * ld). */
typedef nk_status (*block_fn)(void *ctx, size_t r0, size_t r1, size_t c0, size_t c1, double *buf, size_t ld,
                              nk_error *err);

static nk_status solve_core(MPI_Comm comm, int n, block_fn fill, void *fill_ctx, size_t nb_, const double *y, size_t k,
                            double reg, int reg_relative, double *alpha, double *eig, const double *times, size_t ntimes,
                            double lr, double *alpha_t, nk_error *err)
{
    int size;
    MPI_Comm_size(comm, &size);
    const int nb = (int)nb_, nrhs = (int)k, zero = 0, one = 1;
    int nprow, npcol, myrow, mycol, ctxt, info = 0;
    grid_shape(size, &nprow, &npcol);
    int handle = Csys2blacs_handle(comm);
    ctxt = handle;
    Cblacs_gridinit(&ctxt, "Row", nprow, npcol);
    Cblacs_gridinfo(ctxt, &nprow, &npcol, &myrow, &mycol);
    const int mloc = numroc_(&n, &nb, &myrow, &zero, &nprow), nloc = numroc_(&n, &nb, &mycol, &zero, &npcol);
    const int lld = mloc > 1 ? mloc : 1;
    const int bloc = numroc_(&nrhs, &nb, &mycol, &zero, &npcol), lldb = lld;
    int desca[9], descb[9];
    descinit_(desca, &n, &n, &nb, &nb, &zero, &zero, &ctxt, &lld, &info);
    if (!info) descinit_(descb, &n, &nrhs, &nb, &nb, &zero, &zero, &ctxt, &lldb, &info);
    nk_status st = info ? nk_fail(err, NK_ERR_INPUT, "kernel solve: ScaLAPACK descriptor (argument %d)", -info) : NK_OK;

    double *A = calloc((size_t)lld * (nloc ? nloc : 1), sizeof(double));
    double *Acopy = NULL;
    double *B = calloc((size_t)lldb * (bloc ? bloc : 1), sizeof(double));
    double *tileb = malloc(nb_ * nb_ * sizeof(double));
    if (!A || !B || !tileb) st = nk_fail(err, NK_ERR_NOMEM, "kernel solve: out of memory for the local blocks");
    /* the blocks (I, J), I <= J, this rank owns: global block I sits on process row I % nprow,
     * at local block row I / nprow (column-major, leading dimension lld) */
    const int nblk = (n + nb - 1) / nb;
    for (int I = myrow; st == NK_OK && I < nblk; I += nprow)
        for (int J = mycol; st == NK_OK && J < nblk; J += npcol) {
            if (J < I) continue;
            size_t r0 = (size_t)I * nb, r1 = r0 + nb_ < (size_t)n ? r0 + nb_ : (size_t)n;
            size_t c0 = (size_t)J * nb, c1 = c0 + nb_ < (size_t)n ? c0 + nb_ : (size_t)n;
            st = fill(fill_ctx, r0, r1, c0, c1, tileb, nb_, err);
            const size_t lr0 = (size_t)(I / nprow) * nb, lc0 = (size_t)(J / npcol) * nb;
            for (size_t i = 0; st == NK_OK && i < r1 - r0; i++)
                for (size_t c = 0; c < c1 - c0; c++)
                    A[(lr0 + i) + (lc0 + c) * (size_t)lld] = tileb[i * nb_ + c];
        }
    /* the right-hand sides, from the copy every rank holds */
    for (int I = myrow; st == NK_OK && I < nblk; I += nprow)
        for (int J = mycol; J * nb < nrhs; J += npcol)
            for (int i = 0; i < nb && I * nb + i < n; i++)
                for (int c = 0; c < nb && J * nb + c < nrhs; c++)
                    B[((size_t)(I / nprow) * nb + i) + ((size_t)(J / npcol) * nb + c) * (size_t)lldb] =
                        y[(size_t)(I * nb + i) * k + (size_t)(J * nb + c)];
    int any = st != NK_OK, fail;
    MPI_Allreduce(&any, &fail, 1, MPI_INT, MPI_MAX, comm);
    if (fail && st == NK_OK) st = nk_fail(err, NK_ERR_RUN, "kernel solve: another rank failed");
    /* + reg I, reg relative to the mean diagonal (as nkern predict and classify take it) if asked:
     * the diagonal entry (i, i) lives on the rank owning diagonal block I = i / nb */
    double diag_sum = 0;
    for (int pass = reg_relative ? 0 : 1; !fail && pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            const int I = i / nb;
            if (I % nprow != myrow || I % npcol != mycol) continue;
            double *d = &A[((size_t)(I / nprow) * nb + i % nb) + ((size_t)(I / npcol) * nb + i % nb) * (size_t)lld];
            if (pass) *d += reg;
            else diag_sum += *d;
        }
        if (!pass) {
            MPI_Allreduce(MPI_IN_PLACE, &diag_sum, 1, MPI_DOUBLE, MPI_SUM, comm);
            reg *= diag_sum / n;
        }
    }
    if (st == NK_OK && eig) {
        Acopy = malloc((size_t)lld * (nloc ? nloc : 1) * sizeof(double));
        if (Acopy) memcpy(Acopy, A, (size_t)lld * (nloc ? nloc : 1) * sizeof(double));
        any = !Acopy;
        MPI_Allreduce(&any, &fail, 1, MPI_INT, MPI_MAX, comm);
        if (fail) st = nk_fail(err, NK_ERR_NOMEM, "kernel solve: out of memory for the eigendecomposition");
    }
    if (st == NK_OK) {
        pdpotrf_("U", &n, A, &one, &one, desca, &info);
        if (info > 0)
            st = nk_fail(err, NK_ERR_RUN, "kernel solve: K + reg I is not positive definite (leading minor %d; raise --reg)", info);
        else if (info < 0) st = nk_fail(err, NK_ERR_RUN, "kernel solve: pdpotrf argument %d", -info);
    }
    if (st == NK_OK) {
        pdpotrs_("U", &n, &nrhs, A, &one, &one, desca, B, &one, &one, descb, &info);
        if (info) st = nk_fail(err, NK_ERR_RUN, "kernel solve: pdpotrs argument %d", -info);
    }
    if (st == NK_OK) {
        /* alpha on every rank: each rank's local entries, summed */
        memset(alpha, 0, (size_t)n * k * sizeof(double));
        for (int I = myrow; I < nblk; I += nprow)
            for (int J = mycol; J * nb < nrhs; J += npcol)
                for (int i = 0; i < nb && I * nb + i < n; i++)
                    for (int c = 0; c < nb && J * nb + c < nrhs; c++)
                        alpha[(size_t)(I * nb + i) * k + (size_t)(J * nb + c)] =
                            B[((size_t)(I / nprow) * nb + i) + ((size_t)(J / npcol) * nb + c) * (size_t)lldb];
        MPI_Allreduce(MPI_IN_PLACE, alpha, n * nrhs, MPI_DOUBLE, MPI_SUM, comm);
    }
    if (st == NK_OK && eig) {
        /* pdsyevd: workspace sizes from a query call */
        double *Z = malloc((size_t)lld * (nloc ? nloc : 1) * sizeof(double)), wq;
        int iwq, lwork = -1, liwork = -1;
        pdsyevd_("V", "U", &n, Acopy, &one, &one, desca, eig, Z, &one, &one, desca, &wq, &lwork, &iwq, &liwork, &info);
        /* the query can answer too little on some grids: at least the documented minima,
         * LWORK >= max(1 + 6N + 2 NP NQ, 3N + max(NB (NP + 1), 3 NB)) + 2N, LIWORK >= 7N + 8 NPCOL + 2 */
        long need = 1 + 6L * n + 2L * mloc * nloc, tri = 3L * n + (nb * (mloc + 1) > 3 * nb ? nb * (mloc + 1) : 3 * nb);
        need = (need > tri ? need : tri) + 2L * n;
        lwork = 2 * (int)(wq > (double)need ? wq : (double)need) + 1;
        liwork = iwq > 7 * n + 8 * npcol + 2 ? iwq : 7 * n + 8 * npcol + 2;
        double *work = malloc((size_t)lwork * sizeof(double));
        int *iwork = malloc((size_t)liwork * sizeof(int));
        if (!Z || !work || !iwork) st = nk_fail(err, NK_ERR_NOMEM, "kernel solve: out of memory for pdsyevd");
        else {
            pdsyevd_("V", "U", &n, Acopy, &one, &one, desca, eig, Z, &one, &one, desca, work, &lwork, iwork, &liwork, &info);
            if (info) st = nk_fail(err, NK_ERR_RUN, "kernel solve: pdsyevd failed (info %d)", info);
        }
        /* the flow: alpha_t = V diag(g(lambda, lr t)) V^T Y.  Each rank's entries of V give
         * partial sums of V^T Y and of V W; summing them over the ranks needs only n x k numbers. */
        double *vty = st == NK_OK && ntimes ? calloc((size_t)n * k, sizeof(double)) : NULL;
        if (st == NK_OK && ntimes && !vty) st = nk_fail(err, NK_ERR_NOMEM, "kernel solve: out of memory for the flow");
        if (vty) {
            for (int lc = 0; lc < nloc; lc++) {
                const int J = (lc / nb) * npcol + mycol, jg = J * nb + lc % nb;
                for (int lr_ = 0; lr_ < mloc; lr_++) {
                    const int I = (lr_ / nb) * nprow + myrow, ig = I * nb + lr_ % nb;
                    const double v = Z[lr_ + (size_t)lc * lld];
                    for (size_t c = 0; c < k; c++) vty[(size_t)jg * k + c] += v * y[(size_t)ig * k + c];
                }
            }
            MPI_Allreduce(MPI_IN_PLACE, vty, n * nrhs, MPI_DOUBLE, MPI_SUM, comm);
            for (size_t t = 0; t < ntimes; t++) {
                double *at = alpha_t + t * (size_t)n * k;
                memset(at, 0, (size_t)n * k * sizeof(double));
                for (int lc = 0; lc < nloc; lc++) {
                    const int J = (lc / nb) * npcol + mycol, jg = J * nb + lc % nb;
                    const double g = flow_gain(eig[jg], lr * times[t]);
                    for (int lr_ = 0; lr_ < mloc; lr_++) {
                        const int I = (lr_ / nb) * nprow + myrow, ig = I * nb + lr_ % nb;
                        const double v = Z[lr_ + (size_t)lc * lld] * g;
                        for (size_t c = 0; c < k; c++) at[(size_t)ig * k + c] += v * vty[(size_t)jg * k + c];
                    }
                }
                MPI_Allreduce(MPI_IN_PLACE, at, n * nrhs, MPI_DOUBLE, MPI_SUM, comm);
            }
            free(vty);
        }
        free(Z);
        free(work);
        free(iwork);
    }
    free(A);
    free(Acopy);
    free(B);
    free(tileb);
    Cblacs_gridexit(ctxt);
    Cfree_blacs_system_handle(handle);
    return st;
}

typedef struct {
    nk_kernel_ctx *ctx;
    int ntk;
} kernel_blocks;

static nk_status kernel_block(void *c, size_t r0, size_t r1, size_t c0, size_t c1, double *buf, size_t ld, nk_error *err)
{
    const kernel_blocks *kb = c;
    return nk_kernel_tile(kb->ctx, r0, r1, c0, c1, kb->ntk ? NULL : buf, kb->ntk ? buf : NULL, ld, err);
}

/* The journaled blocks: every block this rank fills goes, in the order the rank fills them (fixed
 * by the grid, so a rerun on the same grid visits them in the same order), into slot `filled` of
 * its file JOURNAL.blocks.RANK, and is recorded with the crc32 of its bytes in the journal
 * (writer RANK, tiles numbered as nk_tile_plan numbers a Gram's).  A recorded block whose bytes
 * still match is read back instead of computed. */
typedef struct {
    kernel_blocks kb;
    nk_journal *jn;
    int fd;
    size_t nb, nblk, filled;
    nk_journal_stats stats;
} journaled_blocks;

static nk_status journaled_block(void *c, size_t r0, size_t r1, size_t c0, size_t c1, double *buf, size_t ld, nk_error *err)
{
    journaled_blocks *jb = c;
    const size_t I = r0 / jb->nb, J = c0 / jb->nb, bytes = jb->nb * ld * sizeof(double);
    /* (I, J), I <= J: after the rows i < I of nblk - i tiles each */
    const size_t t = I * jb->nblk - I * (I - 1) / 2 + (J - I);
    const uint64_t off = (uint64_t)jb->filled++ * bytes;
    uint32_t want;
    if (nk_journal_has(jb->jn, t, &want) && !nk_pread_all(jb->fd, off, buf, bytes) &&
        (uint32_t)crc32(0L, (const Bytef *)buf, (uInt)bytes) == want) {
        jb->stats.resumed++;
        return NK_OK;
    }
    nk_status st = nk_journal_test_hooks(jb->stats.computed, err);
    if (st != NK_OK) return st;
    memset(buf, 0, bytes); /* an edge block's unused part is stored too: its crc must not vary */
    st = kernel_block(&jb->kb, r0, r1, c0, c1, buf, ld, err);
    for (size_t done = 0; st == NK_OK && done < bytes;) {
        ssize_t w = pwrite(jb->fd, (const char *)buf + done, bytes - done, (off_t)(off + done));
        if (w <= 0) st = nk_fail(err, NK_ERR_IO, "kernel solve: cannot write block (%zu, %zu) to the journal's block file (check free disk space)", I, J);
        else done += (size_t)w;
    }
    if (st == NK_OK) st = nk_journal_record(jb->jn, t, (uint32_t)crc32(0L, (const Bytef *)buf, (uInt)bytes), err);
    if (st == NK_OK) jb->stats.computed++;
    return st;
}

/* Every rank agrees on failure: the first failing rank's status (its message stays its own). */
static nk_status any_failed(MPI_Comm comm, nk_status st, nk_error *err)
{
    int bad = st != NK_OK, any;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm);
    return any && st == NK_OK ? nk_fail(err, NK_ERR_RUN, "kernel solve: another rank failed") : st;
}

/* The journal (rank 0 creates it, then the others join) and this rank's block file. */
static nk_status journal_open(MPI_Comm comm, const char *spec, const nk_array *x, const nk_kernel_opts *ko, size_t nb,
                              const char *journal, journaled_blocks *jb, nk_error *err)
{
    int rank, size, nprow, npcol;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    grid_shape(size, &nprow, &npcol);
    nk_tile_plan tp;
    nk_status st = nk_tile_plan_init(&tp, x->shape[0], 0, nb, err);
    char run[8192];
    int len = nk_journal_describe(run, sizeof run, spec, x, NULL, ko->get, ko->f32, ko->shift, 0, &tp);
    /* the blocks a rank holds depend on the grid: another rank count cannot reuse them */
    if (len > 0 && (size_t)len < sizeof run) snprintf(run + len, sizeof run - (size_t)len, "layout block-cyclic %d x %d\n", nprow, npcol);
    jb->nblk = tp.rows;
    jb->nb = nb;
    if (st == NK_OK && rank == 0) st = nk_journal_open(journal, run, tp.count, 0, 1, &jb->jn, err);
    st = any_failed(comm, st, err);
    if (st == NK_OK && rank != 0) st = nk_journal_open(journal, run, tp.count, rank, 0, &jb->jn, err);
    if (st == NK_OK) {
        char path[4200];
        snprintf(path, sizeof path, "%s.blocks.%d", journal, rank);
        jb->fd = open(path, O_RDWR | O_CREAT, 0666);
        if (jb->fd < 0) st = nk_fail(err, NK_ERR_IO, "%s: cannot open: %s (check that the directory exists and is writable)", path, strerror(errno));
    }
    return any_failed(comm, st, err);
}

nk_status nk_mpi_kernel_solve(MPI_Comm comm, const nk_plan *p, const nk_array *x, const nk_kernel_opts *o,
                              size_t nb, const char *spec, const char *journal, const double *y, size_t k, double reg,
                              int reg_relative, double *alpha, double *eig, const double *times, size_t ntimes, double lr,
                              double *alpha_t, nk_journal_stats *stats, nk_error *err)
{
    nk_kernel_opts ko;
    nk_kernel_opts_default(&ko);
    if (o) ko = *o;
    ko.progress = NULL;
    if (ko.get != NK_GET_NNGP && ko.get != NK_GET_NTK)
        return nk_fail(err, NK_ERR_INPUT, "kernel solve: get one kernel (nngp or ntk)");
    kernel_blocks kb = {NULL, ko.get == NK_GET_NTK};
    nk_status st = nk_kernel_ctx_create(p, x, NULL, &ko, &kb.ctx, err);
    if (st == NK_OK && nb % nk_kernel_tile_align(kb.ctx))
        st = nk_fail(err, NK_ERR_INPUT, "kernel solve: block size %zu must be a multiple of %zu", nb, nk_kernel_tile_align(kb.ctx));
    /* every rank must reach the collective solve, failed or not */
    int bad = st != NK_OK, any;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm);
    if (any) {
        nk_kernel_ctx_free(kb.ctx);
        return st != NK_OK ? st : nk_fail(err, NK_ERR_RUN, "kernel solve: another rank failed");
    }
    journaled_blocks jb = {kb, NULL, -1, 0, 0, 0, {0, 0, 0, 0}};
    if (journal) st = journal_open(comm, spec ? spec : "", x, &ko, nb, journal, &jb, err);
    if (st == NK_OK)
        st = solve_core(comm, (int)x->shape[0], journal ? journaled_block : kernel_block, journal ? (void *)&jb : (void *)&kb,
                        nb, y, k, reg, reg_relative, alpha, eig, times, ntimes, lr, alpha_t, err);
    if (stats) {
        *stats = jb.stats;
        stats->tiles = jb.stats.resumed + jb.stats.computed;
    }
    if (jb.fd >= 0) close(jb.fd);
    nk_journal_close(jb.jn);
    if (journal && st == NK_OK) {
        /* solved: the blocks have served (an interruption from here on recomputes them) */
        int rank;
        MPI_Comm_rank(comm, &rank);
        char path[4200];
        snprintf(path, sizeof path, "%s.blocks.%d", journal, rank);
        unlink(path);
        MPI_Barrier(comm);
        if (rank == 0) nk_journal_remove(journal);
    }
    nk_kernel_ctx_free(kb.ctx);
    return st;
}

/* Blocks read from a kernel .npy (float32 or float64), row by row. */
typedef struct {
    int fd;
    size_t n, data_off;
    int f32;
} file_blocks;

static nk_status file_block(void *c, size_t r0, size_t r1, size_t c0, size_t c1, double *buf, size_t ld, nk_error *err)
{
    const file_blocks *fb = c;
    const size_t el = fb->f32 ? 4 : 8, w = c1 - c0;
    unsigned char *row = malloc(w * el);
    if (!row) return nk_fail(err, NK_ERR_NOMEM, "kernel solve: out of memory");
    nk_status st = NK_OK;
    for (size_t i = r0; i < r1 && st == NK_OK; i++) {
        const off_t off = (off_t)(fb->data_off + (i * fb->n + c0) * el);
        if (pread(fb->fd, row, w * el, off) != (ssize_t)(w * el)) {
            st = nk_fail(err, NK_ERR_IO, "kernel solve: cannot read row %zu of the kernel file", i);
            break;
        }
        for (size_t c = 0; c < w; c++) {
            if (fb->f32) { float v; memcpy(&v, row + c * 4, 4); buf[(i - r0) * ld + c] = v; }
            else memcpy(&buf[(i - r0) * ld + c], row + c * 8, 8);
        }
    }
    free(row);
    return st;
}

nk_status nk_mpi_npy_solve(MPI_Comm comm, const char *path, size_t nb, const double *y, size_t n, size_t k, double reg,
                           int reg_relative, double *alpha, double *eig, const double *times, size_t ntimes, double lr,
                           double *alpha_t, nk_error *err)
{
    /* the header must be the one nkern writes for an n x n matrix (checked by nk_npy_map's rules) */
    file_blocks fb = {-1, n, 0, 0};
    unsigned char head[512], want[512];
    size_t hlen = 0, shape[2] = {n, n};
    nk_status st = NK_OK;
    fb.fd = open(path, O_RDONLY);
    if (fb.fd < 0) st = nk_fail(err, NK_ERR_IO, "%s: cannot open: %s (check the path; every rank must see it)", path, strerror(errno));
    for (int f32 = 0; st == NK_OK && f32 < 2 && !fb.data_off; f32++) {
        nk_npy_header(2, shape, f32, want, &hlen);
        if (pread(fb.fd, head, hlen, 0) == (ssize_t)hlen && !memcmp(head, want, hlen)) {
            fb.data_off = hlen;
            fb.f32 = f32;
        }
    }
    if (st == NK_OK && !fb.data_off)
        st = nk_fail(err, NK_ERR_INPUT, "%s: not a %zu x %zu float32/float64 matrix as nkern kernel writes it (the targets have %zu rows)",
                     path, n, n, n);
    if (st == NK_OK && reg_relative) {
        /* reg relative to the mean diagonal, as nkern predict and classify take it */
        double d, sum = 0;
        for (size_t i = 0; i < n && st == NK_OK; i++) {
            st = file_block(&fb, i, i + 1, i, i + 1, &d, 1, err);
            sum += d;
        }
        reg *= sum / (double)n;
    }
    int bad = st != NK_OK, any;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm);
    if (!any) st = solve_core(comm, (int)n, file_block, &fb, nb, y, k, reg, 0, alpha, eig, times, ntimes, lr, alpha_t, err);
    else if (st == NK_OK) st = nk_fail(err, NK_ERR_RUN, "kernel solve: another rank failed");
    if (fb.fd >= 0) close(fb.fd);
    return st;
}
