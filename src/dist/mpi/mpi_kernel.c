/* mpi_kernel.c -- nk_mpi_kernel: the journaled tile run of tiles.c over MPI ranks (nk_mpi.h).
 *
 * Rank 0 opens the journal, checks every recorded tile's crc against the bytes in OUT.part and
 * broadcasts the list of missing tiles; each rank then takes the next missing tile from a
 * counter on rank 0 (MPI_Fetch_and_op: tiles differ in cost, so hand-out is dynamic), computes
 * it with its threads, writes it (and a Gram's mirror) with MPI_File_write_at, and appends it
 * to its own journal file OUT.journal.RANK.  Tiles are the same for any rank count, so a run
 * resumes under another count, or under the single-process `nkern kernel --journal`.
 * The same window on rank 0 counts finished tiles and entries (MPI_Get_accumulate after each
 * tile), which rank 0 reads for the job's progress line. */
#include "nk_mpi.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    MPI_File fh[2];
    int fd[2];     /* rank 0's POSIX view, for checking recorded tiles before MPI-IO opens */
} mpi_files;

static int mpi_write(void *ctx, int which, uint64_t off, const void *buf, size_t len)
{
    mpi_files *f = ctx;
    MPI_Status s;
    return MPI_File_write_at(f->fh[which], (MPI_Offset)off, buf, (int)len, MPI_BYTE, &s) != MPI_SUCCESS;
}

static int mpi_read(void *ctx, int which, uint64_t off, void *buf, size_t len)
{
    return nk_pread_all(((const mpi_files *)ctx)->fd[which], off, buf, len);
}

/* Rank 0: the journal, the .part files (created with their header if new) and the tiles still
 * missing (need[t] = 1).  Recorded tiles are kept only if their bytes match the crc.  *finished:
 * the journal of a finished run, whose outputs still hold its bytes (nothing to do). */
static nk_status prepare(const nk_tile_plan *tp, const char *run, const char *journal_path, nk_tile_store *store,
                         mpi_files *files, const char *const out[2], char part[2][4200], const unsigned char *head,
                         size_t hlen, unsigned char *need, int *finished, nk_journal_stats *stats, nk_error *err)
{
    nk_journal *jn = NULL;
    nk_status st = nk_journal_open(journal_path, run, tp->count, 0, 1, &jn, err);
    *finished = st == NK_OK && nk_tile_outputs_finished(store, tp, jn, out, files->fd);
    if (st == NK_OK && !*finished)
        st = nk_tile_parts_open(store, tp, jn, part, head, hlen, files->fd, &stats->rejected, err);
    for (size_t t = 0; st == NK_OK && t < tp->count; t++) {
        need[t] = !nk_journal_has(jn, t, NULL);
        stats->resumed += !need[t];
    }
    for (int w = 0; w < 2; w++)
        if (files->fd[w] >= 0) { close(files->fd[w]); files->fd[w] = -1; }
    nk_journal_close(jn);
    return st;
}

/* Entries a tile computes: a diagonal tile of a Gram only i <= j. */
static double tile_entries(const nk_tile_plan *tp, size_t t)
{
    size_t r0, r1, c0, c1;
    nk_tile_plan_get(tp, t, &r0, &r1, &c0, &c1);
    return tp->sym && r0 == c0 ? (double)(r1 - r0) * (r1 - r0 + 1) / 2 : (double)(r1 - r0) * (c1 - c0);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* A barrier that sleeps while it waits: a rank out of tiles must not spin on a core that the
 * ranks still computing (or other jobs) need, as MPI_Barrier's busy polling would. */
static void idle_barrier(MPI_Comm comm)
{
    MPI_Request req;
    int done = 0;
    MPI_Ibarrier(comm, &req);
    const struct timespec pause = {0, 2000000};
    for (;;) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (done) break;
        nanosleep(&pause, NULL);
    }
}

/* The first failing rank's message reaches every rank. */
static nk_status agree(MPI_Comm comm, nk_status st, nk_error *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int mine = st != NK_OK ? rank : size, first;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first == size) return NK_OK;
    int code = (int)st;
    MPI_Bcast(&code, 1, MPI_INT, first, comm);
    char msg[sizeof err->msg];
    if (rank == first) snprintf(msg, sizeof msg, "%s", err ? err->msg : "failed");
    MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, comm);
    if (err && rank != first) snprintf(err->msg, sizeof err->msg, "rank %d: %.1000s", first, msg);
    return (nk_status)code;
}

nk_status nk_mpi_kernel(MPI_Comm comm, const nk_plan *p, const char *spec, const nk_array *x1, const nk_array *x2,
                        const nk_kernel_opts *o, size_t tile, const char *const out[2], int out_f32,
                        const char *journal_path, nk_mpi_progress_fn progress, void *progress_ctx,
                        nk_journal_stats *stats, double *seconds, nk_error *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    nk_kernel_opts ko;
    nk_tile_plan tp;
    char run[8192];
    *seconds = 0;
    nk_status st = nk_tile_job_init(p, o, spec, x1, x2, tile, out_f32, &ko, &tp, run, sizeof run, stats, err);
    if (st != NK_OK) return st;
    ko.progress = NULL;  /* progress is per tile, over the job */
    mpi_files files = {{MPI_FILE_NULL, MPI_FILE_NULL}, {-1, -1}};
    nk_tile_store store;
    unsigned char head[512];
    size_t hlen;
    nk_tile_store_init(&store, &tp, ko.get, out_f32, mpi_write, mpi_read, &files, head, &hlen);
    char part[2][4200];
    for (int w = 0; w < 2; w++) snprintf(part[w], sizeof part[w], "%s.part", store.have[w] ? out[w] : "");

    /* the missing tiles, decided on rank 0 */
    unsigned char *need = calloc(tp.count, 1);
    size_t *todo = malloc(tp.count * sizeof *todo);
    if (!need || !todo) st = nk_fail(err, NK_ERR_NOMEM, "kernel: out of memory for the tile list");
    int finished = 0;
    if (st == NK_OK && rank == 0)
        st = prepare(&tp, run, journal_path, &store, &files, out, part, head, hlen, need, &finished, stats, err);
    st = agree(comm, st, err);
    size_t ntodo = 0;
    nk_mpi_progress pg = {0, 0, 0, 0, 0, 0};
    if (st == NK_OK) {
        MPI_Bcast(need, (int)tp.count, MPI_UNSIGNED_CHAR, 0, comm);
        unsigned long long s[3] = {stats->resumed, stats->rejected, (unsigned long long)finished};
        MPI_Bcast(s, 3, MPI_UNSIGNED_LONG_LONG, 0, comm);
        stats->resumed = s[0];
        stats->rejected = s[1];
        stats->tiles = tp.count;
        if (s[2]) {
            /* a finished run (its journal kept): the outputs are in place */
            stats->resumed = tp.count;
            free(need);
            free(todo);
            return NK_OK;
        }
        for (size_t t = 0; t < tp.count; t++) {
            double e = tile_entries(&tp, t);
            pg.entries_total += e;
            if (need[t]) todo[ntodo++] = t;
            else pg.entries_resumed += e;
        }
        pg.tiles_total = tp.count;
        pg.tiles_resumed = pg.tiles_done = stats->resumed;
        pg.entries_done = pg.entries_resumed;
    }
    nk_journal *jn = NULL;
    if (st == NK_OK) st = nk_journal_open(journal_path, run, tp.count, rank, 0, &jn, err);
    st = agree(comm, st, err);
    for (int w = 0; w < 2 && st == NK_OK; w++) {
        if (!store.have[w]) continue;
        if (MPI_File_open(comm, part[w], MPI_MODE_WRONLY, MPI_INFO_NULL, &files.fh[w]) != MPI_SUCCESS)
            st = nk_fail(err, NK_ERR_IO, "%s: MPI-IO cannot open it for writing (check that every rank sees the directory)", part[w]);
        st = agree(comm, st, err);
    }

    /* on rank 0: [0] tiles handed out, [1] tiles finished, [2] entries finished (this run's) */
    long long *counter = NULL;
    MPI_Win win = MPI_WIN_NULL;
    if (st == NK_OK) {
        MPI_Win_allocate(rank == 0 ? 3 * sizeof(long long) : 0, sizeof(long long), MPI_INFO_NULL, comm, &counter, &win);
        if (rank == 0) counter[0] = counter[1] = counter[2] = 0;
        MPI_Barrier(comm);
    }
    nk_kernel_ctx *ctx = NULL;
    double *buf[2] = {NULL, NULL};
    if (st == NK_OK) st = nk_kernel_ctx_create(p, x1, x2, &ko, &ctx, err);
    for (int w = 0; w < 2 && st == NK_OK; w++)
        if (store.have[w] && !(buf[w] = malloc(tile * tile * sizeof(double))))
            st = nk_fail(err, NK_ERR_NOMEM, "kernel: out of memory for a tile");
    while (st == NK_OK && win != MPI_WIN_NULL) {
        long long one = 1, next;
        MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, win);
        MPI_Fetch_and_op(&one, &next, MPI_LONG_LONG, 0, 0, MPI_SUM, win);
        MPI_Win_unlock(0, win);
        if (next >= (long long)ntodo) break;
        if ((st = nk_journal_test_hooks(stats->computed, err)) != NK_OK) break; /* this rank's tiles */
        size_t t = todo[next], r0, r1, c0, c1;
        uint32_t crc;
        double t0 = now_seconds();
        nk_tile_plan_get(&tp, t, &r0, &r1, &c0, &c1);
        st = nk_kernel_tile(ctx, r0, r1, c0, c1, buf[0], buf[1], tile, err);
        if (st == NK_OK) st = nk_tile_store_put(&store, &tp, t, buf[0], buf[1], tile, &crc, err);
        if (st == NK_OK) st = nk_journal_record(jn, t, crc, err);
        *seconds += now_seconds() - t0;
        if (st != NK_OK) break;
        stats->computed++;
        long long add[2] = {1, (long long)tile_entries(&tp, t)}, before[2];
        MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, win);
        MPI_Get_accumulate(add, 2, MPI_LONG_LONG, before, 2, MPI_LONG_LONG, 0, 1, 2, MPI_LONG_LONG, MPI_SUM, win);
        MPI_Win_unlock(0, win);
        pg.tiles_done = stats->resumed + (size_t)(before[0] + add[0]);
        pg.entries_done = pg.entries_resumed + (double)(before[1] + add[1]);
        if (rank == 0 && progress && pg.tiles_done < pg.tiles_total) progress(progress_ctx, &pg); /* the last after the loop */
    }
    if (win != MPI_WIN_NULL) {
        idle_barrier(comm);
        if (rank == 0 && progress && st == NK_OK) {
            /* the last line: every rank's tiles are in */
            long long fin[2];
            MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, win);
            MPI_Get(fin, 2, MPI_LONG_LONG, 0, 1, 2, MPI_LONG_LONG, win);
            MPI_Win_unlock(0, win);
            pg.tiles_done = stats->resumed + (size_t)fin[0];
            pg.entries_done = pg.entries_resumed + (double)fin[1];
            progress(progress_ctx, &pg);
        }
        MPI_Win_free(&win);
    }
    for (int w = 0; w < 2; w++)
        if (files.fh[w] != MPI_FILE_NULL) {
            MPI_File_sync(files.fh[w]);
            MPI_File_close(&files.fh[w]);
        }
    st = agree(comm, st, err);
    if (st == NK_OK && rank == 0) {
        for (int w = 0; w < 2 && st == NK_OK; w++)
            if (store.have[w] && rename(part[w], out[w]))
                st = nk_fail(err, NK_ERR_IO, "%s: cannot rename %s to it: %s (check the path)", out[w], part[w], strerror(errno));
    }
    nk_journal_close(jn);
    st = agree(comm, st, err);
    nk_kernel_ctx_free(ctx);
    free(buf[0]);
    free(buf[1]);
    free(need);
    free(todo);
    return st;
}
