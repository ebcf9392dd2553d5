/* tiles.c -- the tile plan, the journal of finished tiles, tiles written at their offsets in
 * the output .npy, and the single-process journaled driver (nk_dist.h).  No MPI here: nkern-mpi
 * (src/dist/mpi/) runs the same plan, journal and layout over ranks. */
#include "nk_dist.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* --------------------------------------------------------------- tile plan -- */

nk_status nk_tile_plan_init(nk_tile_plan *tp, size_t n1, size_t n2, size_t tile, nk_error *err)
{
    memset(tp, 0, sizeof *tp);
    if (!n1 || !tile) return nk_fail(err, NK_ERR_INPUT, "tile plan: %zu rows, tile %zu (both must be positive)", n1, tile);
    tp->n1 = n1;
    tp->sym = n2 == 0;
    tp->n2 = n2 ? n2 : n1;
    tp->tile = tile;
    tp->rows = (n1 + tile - 1) / tile;
    tp->cols = (tp->n2 + tile - 1) / tile;
    tp->count = tp->sym ? tp->rows * (tp->rows + 1) / 2 : tp->rows * tp->cols;
    return NK_OK;
}

void nk_tile_plan_get(const nk_tile_plan *tp, size_t t, size_t *r0, size_t *r1, size_t *c0, size_t *c1)
{
    size_t I, J;
    if (tp->sym) {
        /* row I holds the tiles J = I .. rows-1: rows - I of them */
        I = 0;
        while (t >= tp->rows - I) t -= tp->rows - I++;
        J = I + t;
    } else {
        I = t / tp->cols;
        J = t % tp->cols;
    }
    *r0 = I * tp->tile;
    *r1 = *r0 + tp->tile < tp->n1 ? *r0 + tp->tile : tp->n1;
    *c0 = J * tp->tile;
    *c1 = *c0 + tp->tile < tp->n2 ? *c0 + tp->tile : tp->n2;
}

/* ----------------------------------------------------------------- journal -- */

struct nk_journal {
    char *path;          /* the description; records in path.W */
    FILE *log;           /* this writer's records */
    unsigned char *done; /* per tile: recorded */
    uint32_t *crc;
    size_t ntiles, ndone;
};

static uint32_t crc_of(const nk_array *a)
{
    if (!a) return 0;
    uLong c = crc32(0L, Z_NULL, 0);
    const unsigned char *p = (const unsigned char *)a->data;
    size_t n = nk_array_size(a) * sizeof(double);
    /* zlib's length is a uInt: feed it in pieces */
    for (size_t off = 0; off < n; off += 1u << 30) c = crc32(c, p + off, (uInt)(n - off < (1u << 30) ? n - off : 1u << 30));
    return (uint32_t)c;
}

int nk_journal_describe(char *buf, size_t cap, const char *spec, const nk_array *x1, const nk_array *x2, int get,
                        int f32, int shift, int out_f32, const nk_tile_plan *tp)
{
    char aug[40] = "";
    if (shift) snprintf(aug, sizeof aug, "augment shift:%d\n", shift);
    return snprintf(buf, cap,
                    "nkern journal 1\nspec %s\nget %s\nshape %zu %zu %s\ndata %08x %08x\nprecision %s\n%soutput %s\ntile %zu\n",
                    spec, get == NK_GET_BOTH ? "both" : get == NK_GET_NTK ? "ntk" : "nngp", tp->n1, tp->n2,
                    tp->sym ? "gram" : "cross", (unsigned)crc_of(x1), (unsigned)crc_of(x2), f32 ? "f32" : "f64", aug,
                    out_f32 ? "f32" : "f64", tp->tile);
}

/* The first line where two descriptions differ, for the message. */
static void first_difference(const char *a, const char *b, char *wa, char *wb, size_t cap)
{
    while (*a && *b) {
        size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
        if (la != lb || memcmp(a, b, la)) break;
        a += la + (a[la] == '\n');
        b += lb + (b[lb] == '\n');
    }
    snprintf(wa, cap, "%.*s", (int)strcspn(a, "\n"), a);
    snprintf(wb, cap, "%.*s", (int)strcspn(b, "\n"), b);
}

/* Load one writer's records: lines "tile T CRC"; a torn last line (a kill during the write) or
 * a tile out of range is ignored. */
static void load_records(nk_journal *j, const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f) return;
    char line[128];
    while (fgets(line, sizeof line, f)) {
        size_t t;
        unsigned c;
        char nl;
        if (sscanf(line, "tile %zu %8x%c", &t, &c, &nl) != 3 || nl != '\n' || t >= j->ntiles) continue;
        if (!j->done[t]) j->ndone++;
        j->done[t] = 1;
        j->crc[t] = c;
    }
    fclose(f);
}

nk_status nk_journal_open(const char *path, const char *run, size_t ntiles, int writer, int create,
                          nk_journal **out, nk_error *err)
{
    *out = NULL;
    nk_journal *j = calloc(1, sizeof *j);
    size_t plen = strlen(path);
    if (j) {
        j->path = malloc(plen + 1);
        j->done = calloc(ntiles ? ntiles : 1, 1);
        j->crc = calloc(ntiles ? ntiles : 1, sizeof *j->crc);
    }
    if (!j || !j->path || !j->done || !j->crc) {
        nk_journal_close(j);
        return nk_fail(err, NK_ERR_NOMEM, "%s: out of memory for the journal", path);
    }
    memcpy(j->path, path, plen + 1);
    j->ntiles = ntiles;
    char have[8192];
    FILE *f = fopen(path, "r");
    if (f) {
        size_t got = fread(have, 1, sizeof have - 1, f);
        have[got] = 0;
        fclose(f);
        if (strcmp(have, run)) {
            char wa[1100], wb[1100];
            first_difference(have, run, wa, wb, sizeof wa);
            nk_journal_close(j);
            return nk_fail(err, NK_ERR_INPUT,
                           "%s: the journal belongs to another run: it says '%s', this run '%s' (run the command "
                           "that wrote it, or remove %s* and the .part output to start over)",
                           path, wa, wb, path);
        }
    } else if (!create) {
        nk_journal_close(j);
        return nk_fail(err, NK_ERR_IO, "%s: the journal is missing (rank 0 creates it first)", path);
    } else {
        /* a new run: records of an earlier journal under this name are stale */
        nk_journal_remove(path);
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        f = fopen(tmp, "w");
        if (!f || fputs(run, f) < 0 || fclose(f) || rename(tmp, path)) {
            nk_journal_close(j);
            return nk_fail(err, NK_ERR_IO, "%s: cannot write the journal: %s (choose a writable directory)", path,
                           strerror(errno));
        }
    }
    /* every writer's records: path.0, path.1, ... in the journal's directory */
    char dir[4096], file[4400];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    if (!dir[0]) snprintf(dir, sizeof dir, "/");
    DIR *d = opendir(dir);
    size_t blen = strlen(base);
    for (struct dirent *e; d && (e = readdir(d));) {
        const char *n = e->d_name;
        if (strncmp(n, base, blen) || n[blen] != '.' || !n[blen + 1] || strspn(n + blen + 1, "0123456789") != strlen(n + blen + 1))
            continue;
        snprintf(file, sizeof file, "%s/%s", dir, n);
        load_records(j, file);
    }
    if (d) closedir(d);
    snprintf(file, sizeof file, "%s.%d", path, writer);
    j->log = fopen(file, "a");
    if (!j->log) {
        nk_journal_close(j);
        return nk_fail(err, NK_ERR_IO, "%s: cannot append to the journal: %s (choose a writable directory)", file, strerror(errno));
    }
    *out = j;
    return NK_OK;
}

int nk_journal_has(const nk_journal *j, size_t t, uint32_t *crc)
{
    if (t >= j->ntiles || !j->done[t]) return 0;
    if (crc) *crc = j->crc[t];
    return 1;
}

void nk_journal_forget(nk_journal *j, size_t t)
{
    if (t < j->ntiles && j->done[t]) {
        j->done[t] = 0;
        j->ndone--;
    }
}

size_t nk_journal_count(const nk_journal *j)
{
    return j->ndone;
}

nk_status nk_journal_record(nk_journal *j, size_t t, uint32_t crc, nk_error *err)
{
    if (fprintf(j->log, "tile %zu %08x\n", t, (unsigned)crc) < 0 || fflush(j->log))
        return nk_fail(err, NK_ERR_IO, "%s: cannot append to the journal: %s (check free disk space)", j->path, strerror(errno));
    if (t < j->ntiles && !j->done[t]) j->ndone++;
    if (t < j->ntiles) { j->done[t] = 1; j->crc[t] = crc; }
    return NK_OK;
}

void nk_journal_close(nk_journal *j)
{
    if (!j) return;
    if (j->log) fclose(j->log);
    free(j->path);
    free(j->done);
    free(j->crc);
    free(j);
}

void nk_journal_remove(const char *path)
{
    char dir[4096], file[4400];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    if (!dir[0]) snprintf(dir, sizeof dir, "/");
    size_t blen = strlen(base);
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        const char *n = e->d_name;
        if (strncmp(n, base, blen) || n[blen] != '.' || !n[blen + 1] || strspn(n + blen + 1, "0123456789") != strlen(n + blen + 1))
            continue;
        snprintf(file, sizeof file, "%s/%s", dir, n);
        unlink(file);
    }
    if (d) closedir(d);
    unlink(path);
}

/* ------------------------------------------------------------ tile output -- */

/* Little-endian bytes of v (float32 when as_f32), as nk_npy_write stores them. */
static void put_element(unsigned char *p, double v, int as_f32)
{
    if (as_f32) {
        float y = (float)v;
        uint32_t w;
        memcpy(&w, &y, sizeof w);
        for (int b = 0; b < 4; b++, w >>= 8) p[b] = (unsigned char)(w & 0xff);
    } else {
        uint64_t w;
        memcpy(&w, &v, sizeof w);
        for (int b = 0; b < 8; b++, w >>= 8) p[b] = (unsigned char)(w & 0xff);
    }
}

/* The pieces of tile t in the order they are written and checksummed: for each output, the
 * tile's rows, then (a Gram's off-diagonal tile) the mirror's rows. */
typedef struct {
    size_t r0, r1, c0, c1;
    int mirror;
} tile_geom;

static tile_geom geom(const nk_tile_plan *tp, size_t t)
{
    tile_geom g;
    nk_tile_plan_get(tp, t, &g.r0, &g.r1, &g.c0, &g.c1);
    g.mirror = tp->sym && g.r0 != g.c0;
    return g;
}

void nk_tile_store_init(nk_tile_store *s, const nk_tile_plan *tp, int get, int as_f32,
                        int (*write_at)(void *, int, uint64_t, const void *, size_t),
                        int (*read_at)(void *, int, uint64_t, void *, size_t), void *ctx,
                        unsigned char head[512], size_t *hlen)
{
    memset(s, 0, sizeof *s);
    s->write_at = write_at;
    s->read_at = read_at;
    s->ctx = ctx;
    s->as_f32 = as_f32;
    s->have[0] = (get & NK_GET_NNGP) != 0;
    s->have[1] = (get & NK_GET_NTK) != 0;
    size_t shape[2] = {tp->n1, tp->n2};
    nk_npy_header(2, shape, as_f32, head, hlen);
    s->data_off = *hlen;
}

nk_status nk_journal_test_hooks(size_t computed, nk_error *err)
{
    /* the pause gives tests a kill -9 mid-run that does not depend on the machine's speed */
    const char *pause = getenv("NK_JOURNAL_PAUSE_AFTER"), *stop = getenv("NK_JOURNAL_STOP_AFTER");
    while (pause && (long)computed >= atol(pause)) sleep(1);
    if (stop && (long)computed >= atol(stop))
        return nk_fail(err, NK_ERR_RUN, "kernel: stopped after %zu tiles (NK_JOURNAL_STOP_AFTER); run the same command to resume",
                       computed);
    return NK_OK;
}

nk_status nk_tile_store_put(const nk_tile_store *s, const nk_tile_plan *tp, size_t t, const double *nngp,
                            const double *ntk, size_t ld, uint32_t *crc, nk_error *err)
{
    const tile_geom g = geom(tp, t);
    const size_t el = s->as_f32 ? 4 : 8, nr = g.r1 - g.r0, nc = g.c1 - g.c0;
    const size_t longest = nr > nc ? nr : nc;
    unsigned char *row = malloc(longest * el);
    if (!row) return nk_fail(err, NK_ERR_NOMEM, "tile %zu: out of memory", t);
    uLong c = crc32(0L, Z_NULL, 0);
    nk_status st = NK_OK;
    for (int which = 0; which < 2 && st == NK_OK; which++) {
        const double *src = which ? ntk : nngp;
        if (!s->have[which]) continue;
        for (size_t i = 0; i < nr && st == NK_OK; i++) {
            for (size_t k = 0; k < nc; k++) put_element(row + k * el, src[i * ld + k], s->as_f32);
            c = crc32(c, row, (uInt)(nc * el));
            if (s->write_at(s->ctx, which, s->data_off + ((g.r0 + i) * tp->n2 + g.c0) * el, row, nc * el))
                st = nk_fail(err, NK_ERR_IO, "tile %zu: cannot write row %zu of output %d (check free disk space)", t, g.r0 + i, which);
        }
        for (size_t k = 0; g.mirror && k < nc && st == NK_OK; k++) {
            for (size_t i = 0; i < nr; i++) put_element(row + i * el, src[i * ld + k], s->as_f32);
            c = crc32(c, row, (uInt)(nr * el));
            if (s->write_at(s->ctx, which, s->data_off + ((g.c0 + k) * tp->n2 + g.r0) * el, row, nr * el))
                st = nk_fail(err, NK_ERR_IO, "tile %zu: cannot write row %zu of output %d (check free disk space)", t, g.c0 + k, which);
        }
    }
    free(row);
    *crc = (uint32_t)c;
    return st;
}

nk_status nk_tile_store_crc(const nk_tile_store *s, const nk_tile_plan *tp, size_t t, uint32_t *crc, nk_error *err)
{
    const tile_geom g = geom(tp, t);
    const size_t el = s->as_f32 ? 4 : 8, nr = g.r1 - g.r0, nc = g.c1 - g.c0;
    unsigned char *row = malloc((nr > nc ? nr : nc) * el);
    if (!row) return nk_fail(err, NK_ERR_NOMEM, "tile %zu: out of memory", t);
    uLong c = crc32(0L, Z_NULL, 0);
    nk_status st = NK_OK;
    for (int which = 0; which < 2 && st == NK_OK; which++) {
        if (!s->have[which]) continue;
        for (size_t i = 0; i < nr && st == NK_OK; i++) {
            if (s->read_at(s->ctx, which, s->data_off + ((g.r0 + i) * tp->n2 + g.c0) * el, row, nc * el))
                st = nk_fail(err, NK_ERR_IO, "tile %zu: cannot read row %zu of output %d back", t, g.r0 + i, which);
            else c = crc32(c, row, (uInt)(nc * el));
        }
        for (size_t k = 0; g.mirror && k < nc && st == NK_OK; k++) {
            /* the mirror's row c0 + k, columns r0..r1 */
            if (s->read_at(s->ctx, which, s->data_off + ((g.c0 + k) * tp->n2 + g.r0) * el, row, nr * el))
                st = nk_fail(err, NK_ERR_IO, "tile %zu: cannot read row %zu of output %d back", t, g.c0 + k, which);
            else c = crc32(c, row, (uInt)(nr * el));
        }
    }
    free(row);
    *crc = (uint32_t)c;
    return st;
}

/* ------------------------------------------------- single-process driver -- */

typedef struct {
    int fd[2];
} posix_files;

static int pwrite_all(int fd, uint64_t off, const void *buf, size_t len)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}

int nk_pread_all(int fd, uint64_t off, void *buf, size_t len)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}

static int posix_write(void *ctx, int which, uint64_t off, const void *buf, size_t len)
{
    return pwrite_all(((const posix_files *)ctx)->fd[which], off, buf, len);
}

static int posix_read(void *ctx, int which, uint64_t off, void *buf, size_t len)
{
    return nk_pread_all(((const posix_files *)ctx)->fd[which], off, buf, len);
}

nk_status nk_tile_parts_open(const nk_tile_store *s, const nk_tile_plan *tp, nk_journal *jn, char part[2][4200],
                             const unsigned char *head, size_t hlen, int fd[2], size_t *rejected, nk_error *err)
{
    nk_status st = NK_OK;
    for (int w = 0; w < 2 && st == NK_OK; w++) {
        if (!s->have[w]) continue;
        int existed = access(part[w], F_OK) == 0;
        fd[w] = open(part[w], O_RDWR | O_CREAT, 0666);
        if (fd[w] < 0) {
            st = nk_fail(err, NK_ERR_IO, "%s: cannot open: %s (check that the directory exists and is writable)", part[w], strerror(errno));
            break;
        }
        uint64_t bytes = hlen + (uint64_t)tp->n1 * tp->n2 * (s->as_f32 ? 4 : 8);
        if (!existed) {
            /* a fresh output: recorded tiles (of a removed .part) are not in it */
            for (size_t t = 0; t < tp->count; t++) nk_journal_forget(jn, t);
        }
        if (pwrite_all(fd[w], 0, head, hlen) || ftruncate(fd[w], (off_t)bytes))
            st = nk_fail(err, NK_ERR_IO, "%s: cannot write: %s (check free disk space)", part[w], strerror(errno));
    }
    /* recorded tiles are trusted only if their bytes still match */
    for (size_t t = 0; st == NK_OK && t < tp->count; t++) {
        uint32_t want, have;
        if (!nk_journal_has(jn, t, &want)) continue;
        st = nk_tile_store_crc(s, tp, t, &have, err);
        if (st == NK_OK && have != want) {
            nk_journal_forget(jn, t);
            (*rejected)++;
        }
    }
    return st;
}

int nk_tile_outputs_finished(const nk_tile_store *s, const nk_tile_plan *tp, const nk_journal *jn, const char *const out[2],
                             int fd[2])
{
    int finished = nk_journal_count(jn) == tp->count;
    for (int w = 0; w < 2 && finished; w++) {
        if (!s->have[w]) continue;
        fd[w] = open(out[w], O_RDONLY);
        finished = fd[w] >= 0;
    }
    nk_error ignored;
    for (size_t t = 0; finished && t < tp->count; t++) {
        uint32_t want, have;
        nk_journal_has(jn, t, &want);
        finished = nk_tile_store_crc(s, tp, t, &have, &ignored) == NK_OK && have == want;
    }
    for (int w = 0; w < 2; w++)
        if (fd[w] >= 0) { close(fd[w]); fd[w] = -1; }
    return finished;
}

typedef struct {
    nk_progress_fn fn;
    void *ctx;
    size_t before, total;
} progress_offset;

static int progress_shifted(void *ctx, size_t done, size_t total)
{
    (void)total;
    const progress_offset *p = ctx;
    return p->fn(p->ctx, p->before + done, p->total);
}

nk_status nk_tile_check(const nk_plan *p, size_t tile, nk_error *err)
{
    const size_t a = nk_plan_tile_align(p);
    if (tile && tile % a == 0) return NK_OK;
    const size_t up = (tile + a - 1) / a * a;
    return nk_fail(err, NK_ERR_INPUT, "--tile %zu: must be a multiple of %zu for this architecture (%s): use --tile %zu",
                   tile, a, a > 8 ? "an MLP's first layer is one GEMM per 128 x 128 block" : "the engine takes pairs in rows of 8",
                   up ? up : a);
}

nk_status nk_tile_job_init(const nk_plan *p, const nk_kernel_opts *o, const char *spec, const nk_array *x1, const nk_array *x2, size_t tile,
                           int out_f32, nk_kernel_opts *ko, nk_tile_plan *tp, char *run, size_t cap,
                           nk_journal_stats *stats, nk_error *err)
{
    nk_kernel_opts_default(ko);
    if (o) *ko = *o;
    memset(stats, 0, sizeof *stats);
    nk_status st = nk_kernel_opts_check(p, ko, err);
    if (st == NK_OK) st = nk_tile_check(p, tile, err);
    if (st == NK_OK) st = nk_tile_plan_init(tp, x1->shape[0], x2 ? x2->shape[0] : 0, tile, err);
    if (st == NK_OK) nk_journal_describe(run, cap, spec, x1, x2, ko->get, ko->f32, ko->shift, out_f32, tp);
    return st;
}

nk_status nk_kernel_journaled(const nk_plan *p, const char *spec, const nk_array *x1, const nk_array *x2,
                              const nk_kernel_opts *o, size_t tile, const char *const out[2], int out_f32,
                              const char *journal_path, nk_journal_stats *stats, nk_error *err)
{
    nk_kernel_opts ko;
    nk_tile_plan tp;
    char run[8192];
    nk_status st = nk_tile_job_init(p, o, spec, x1, x2, tile, out_f32, &ko, &tp, run, sizeof run, stats, err);
    if (st != NK_OK) return st;
    posix_files files = {{-1, -1}};
    nk_tile_store store;
    unsigned char head[512];
    size_t hlen;
    nk_tile_store_init(&store, &tp, ko.get, out_f32, posix_write, posix_read, &files, head, &hlen);

    nk_journal *jn = NULL;
    nk_kernel_ctx *ctx = NULL;
    double *buf[2] = {NULL, NULL};
    char part[2][4200];
    st = nk_journal_open(journal_path, run, tp.count, 0, 1, &jn, err);
    if (st == NK_OK && nk_tile_outputs_finished(&store, &tp, jn, out, files.fd)) {
        stats->tiles = stats->resumed = tp.count;
        nk_journal_close(jn);
        return NK_OK;
    }
    for (int w = 0; w < 2; w++) snprintf(part[w], sizeof part[w], "%s.part", store.have[w] ? out[w] : "");
    if (st == NK_OK) st = nk_tile_parts_open(&store, &tp, jn, part, head, hlen, files.fd, &stats->rejected, err);
    stats->tiles = tp.count;
    if (st == NK_OK) stats->resumed = nk_journal_count(jn);
    progress_offset po = {ko.progress, ko.progress_ctx, 0, 0};
    if (st == NK_OK) {
        for (size_t t = 0; t < tp.count; t++) {
            size_t r0, r1, c0, c1;
            nk_tile_plan_get(&tp, t, &r0, &r1, &c0, &c1);
            size_t entries = tp.sym && r0 == c0 ? (r1 - r0) * (r1 - r0 + 1) / 2 : (r1 - r0) * (c1 - c0);
            po.total += entries;
            if (nk_journal_has(jn, t, NULL)) po.before += entries;
        }
        if (ko.progress) {
            ko.progress = progress_shifted;
            ko.progress_ctx = &po;
        }
        st = nk_kernel_ctx_create(p, x1, x2, &ko, &ctx, err);
    }
    if (st == NK_OK) {
        for (int w = 0; w < 2; w++)
            if (store.have[w] && !(buf[w] = malloc(tile * tile * sizeof(double))))
                st = nk_fail(err, NK_ERR_NOMEM, "kernel: out of memory for a tile");
    }
    for (size_t t = 0; st == NK_OK && t < tp.count; t++) {
        if (nk_journal_has(jn, t, NULL)) continue;
        if ((st = nk_journal_test_hooks(stats->computed, err)) != NK_OK) break;
        size_t r0, r1, c0, c1;
        uint32_t crc;
        nk_tile_plan_get(&tp, t, &r0, &r1, &c0, &c1);
        st = nk_kernel_tile(ctx, r0, r1, c0, c1, buf[0], buf[1], tile, err);
        if (st == NK_OK) st = nk_tile_store_put(&store, &tp, t, buf[0], buf[1], tile, &crc, err);
        if (st == NK_OK) st = nk_journal_record(jn, t, crc, err);
        if (st == NK_OK) {
            stats->computed++;
            po.before += tp.sym && r0 == c0 ? (r1 - r0) * (r1 - r0 + 1) / 2 : (r1 - r0) * (c1 - c0);
        }
    }
    for (int w = 0; w < 2; w++) {
        if (files.fd[w] < 0) continue;
        /* on disk before the rename exposes it (devices that cannot sync: EINVAL, fine) */
        if (st == NK_OK && fsync(files.fd[w]) && errno != EINVAL)
            st = nk_fail(err, NK_ERR_IO, "%s: cannot sync: %s", part[w], strerror(errno));
        close(files.fd[w]);
    }
    for (int w = 0; w < 2 && st == NK_OK; w++)
        if (store.have[w] && rename(part[w], out[w]))
            st = nk_fail(err, NK_ERR_IO, "%s: cannot rename %s to it: %s (check the path)", out[w], part[w], strerror(errno));
    nk_journal_close(jn);
    nk_kernel_ctx_free(ctx);
    free(buf[0]);
    free(buf[1]);
    return st;
}
