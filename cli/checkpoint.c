/* checkpoint.c -- `nkern kernel --checkpoint DIR`: the kernel matrix in strips of rows, each
 * saved to DIR as soon as it is done (written to a temporary name and renamed), so that an
 * interrupted run started again with the same command computes only the missing strips.
 *
 * A strip holds rows r0..r1 against every column (x1/x2), or, for a symmetric Gram, against the
 * columns r0..n1: its square block through the symmetric path (a sample paired with itself stays
 * exact) and the rest as a rectangle.  DIR/run.txt records what is being computed; a directory
 * holding another run is refused rather than mixed in.  Each strip's values carry a CRC-32
 * (zlib) in DIR/stripNNNN.crc, written after the strip: a strip whose values do not match it (a
 * corrupted or truncated file of the right shape), or that has none, is computed again. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define STRIPS 64  /* at most this many strips: enough to lose little, few enough files */

/* FNV-1a over the bytes of the data: a fingerprint that changes with any value */
static unsigned long long fingerprint(const nk_array *a, unsigned long long h)
{
    const unsigned char *p = (const unsigned char *)a->data;
    size_t n = nk_array_size(a) * sizeof(double);
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static int describe_run(char *buf, size_t cap, const char *spec, const nk_array *x1, const nk_array *x2, int get, int f32)
{
    unsigned long long h = fingerprint(x1, 1469598103934665603ULL);
    if (x2) h = fingerprint(x2, h ^ 0x9E3779B97F4A7C15ULL);
    /* the precision only when float32, so that float64 directories of earlier versions resume */
    return snprintf(buf, cap, "nkern kernel checkpoint\nspec %s\nget %d\nn1 %zu\nn2 %zu\ndata %016llx\n%s", spec, get,
                    x1->shape[0], x2 ? x2->shape[0] : 0, h, f32 ? "precision f32\n" : "");
}

/* rows r0..r1 of a C-order array, without copying */
static nk_array rows(const nk_array *a, size_t r0, size_t r1)
{
    nk_array v = *a;
    size_t len = nk_array_size(a) / a->shape[0];
    v.data = a->data + r0 * len;
    v.shape[0] = r1 - r0;
    return v;
}

static int strip_path(char *buf, size_t cap, const char *dir, size_t s, const char *kind)
{
    return snprintf(buf, cap, "%s/strip%04zu.%s.npy", dir, s, kind) >= (int)cap;
}

static int crc_path(char *buf, size_t cap, const char *dir, size_t s)
{
    return snprintf(buf, cap, "%s/strip%04zu.crc", dir, s) >= (int)cap;
}

/* CRC-32 of an array's values (as the bytes of the doubles) */
static unsigned long values_crc(const nk_array *a)
{
    const unsigned char *p = (const unsigned char *)a->data;
    size_t n = nk_array_size(a) * sizeof(double);
    uLong crc = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return crc;
}

/* The text of strip s's checksum file for the kinds present */
static void crc_text(char *buf, size_t cap, const nk_array strip[2])
{
    snprintf(buf, cap, "nngp %08lx\nntk %08lx\n", strip[0].data ? values_crc(&strip[0]) : 0UL,
             strip[1].data ? values_crc(&strip[1]) : 0UL);
}

/* 1 if DIR/stripNNNN.crc exists and matches the loaded strip */
static int crc_matches(const char *dir, size_t s, const nk_array strip[2])
{
    char path[4096], have[128] = {0}, want[128];
    if (crc_path(path, sizeof path, dir, s)) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t got = fread(have, 1, sizeof have - 1, f);
    fclose(f);
    have[got] = 0;
    crc_text(want, sizeof want, strip);
    return !strcmp(have, want);
}

/* Strip s's files: both kinds, then their checksums, each complete before the next */
static int save_strip(const char *dir, size_t s, const nk_array strip[2], const int want[2])
{
    const char *kinds[2] = {"nngp", "ntk"};
    char path[4096], text[128];
    int rc = 0;
    for (int k = 0; k < 2 && !rc; k++) {
        if (!want[k]) continue;
        strip_path(path, sizeof path, dir, s, kinds[k]);
        rc = cli_txn_write_npy(path, &strip[k], 0);
    }
    if (!rc) rc = cli_txn_commit();
    if (rc) return rc;
    cli_out o;
    crc_path(path, sizeof path, dir, s);
    crc_text(text, sizeof text, strip);
    if (cli_out_open(&o, path)) return 1;
    fputs(text, o.f);
    return cli_out_close(&o);
}

/* Compute strip s into out[0] (NNGP) / out[1] (NTK): len rows x ncols. */
static nk_status compute_strip(const nk_plan *plan, const nk_array *x1, const nk_array *x2, const nk_kernel_opts *ko,
                               size_t r0, size_t r1, nk_array out[2], nk_error *err)
{
    size_t n1 = x1->shape[0];
    if (x2) {
        nk_array xa = rows(x1, r0, r1);
        return nk_kernel_matrix(plan, &xa, x2, ko, &out[0], &out[1], err);
    }
    /* symmetric: [ square block (r0..r1)^2 | rectangle r0..r1 x r1..n1 ] */
    nk_array sq[2] = {{0}}, re[2] = {{0}}, xa = rows(x1, r0, r1), xb = rows(x1, r1, n1);
    nk_status st = nk_kernel_matrix(plan, &xa, NULL, ko, &sq[0], &sq[1], err);
    if (st == NK_OK && r1 < n1) st = nk_kernel_matrix(plan, &xa, &xb, ko, &re[0], &re[1], err);
    size_t len = r1 - r0, ncols = n1 - r0, shape[2] = {len, ncols};
    for (int k = 0; st == NK_OK && k < 2; k++) {
        if (!sq[k].data) continue;
        st = nk_array_alloc(&out[k], 2, shape, err);
        for (size_t i = 0; st == NK_OK && i < len; i++) {
            memcpy(out[k].data + i * ncols, sq[k].data + i * len, len * sizeof(double));
            if (r1 < n1) memcpy(out[k].data + i * ncols + len, re[k].data + i * (n1 - r1), (n1 - r1) * sizeof(double));
        }
    }
    for (int k = 0; k < 2; k++) { nk_array_free(&sq[k]); nk_array_free(&re[k]); }
    return st;
}

int cli_kernel_checkpointed(const nk_plan *plan, const char *spec, const nk_array *x1, const nk_array *x2,
                            const nk_kernel_opts *ko, const char *dir, nk_array *K, nk_array *T, int quiet)
{
    nk_error err = {{0}};
    char run[8192], path[4096], have[8192];
    size_t n1 = x1->shape[0], n2 = x2 ? x2->shape[0] : n1;
    describe_run(run, sizeof run, spec, x1, x2, ko->get, ko->f32);
    const int tty = isatty(STDERR_FILENO); /* the \r progress line only on a terminal */
    if (mkdir(dir, 0777) && errno != EEXIST)
        return cli_usage_error("--checkpoint %s: cannot create the directory: %s (choose a writable path)", dir, strerror(errno));
    if (snprintf(path, sizeof path, "%s/run.txt", dir) >= (int)sizeof path) return cli_usage_error("--checkpoint: path too long");
    FILE *f = fopen(path, "r");
    if (f) {
        size_t got = fread(have, 1, sizeof have - 1, f);
        have[got] = 0;
        fclose(f);
        if (strcmp(have, run))
            return cli_usage_error("--checkpoint %s: the directory holds another run (other spec, data, --get or --precision; see %s); use a new directory or remove it", dir, path);
    } else {
        cli_out o;
        if (cli_out_open(&o, path)) return 2;
        fputs(run, o.f);
        if (cli_out_close(&o)) return cli_usage_error("--checkpoint %s: cannot write %s (choose a writable directory)", dir, path);
    }
    size_t per = (n1 + STRIPS - 1) / STRIPS, nstrips = (n1 + per - 1) / per, resumed = 0;
    const char *kinds[2] = {"nngp", "ntk"};
    int want[2] = {(ko->get & NK_GET_NNGP) != 0, (ko->get & NK_GET_NTK) != 0};
    size_t shape[2] = {n1, n2};
    nk_status st = NK_OK;
    if (want[0]) st = nk_array_alloc(K, 2, shape, &err);
    if (st == NK_OK && want[1]) st = nk_array_alloc(T, 2, shape, &err);
    const char *stop_env = getenv("NK_CHECKPOINT_STOP_AFTER"); /* tests: simulate an interruption */
    long stop_after = stop_env ? atol(stop_env) : -1, computed = 0;
    for (size_t s = 0; st == NK_OK && s < nstrips; s++) {
        size_t r0 = s * per, r1 = r0 + per < n1 ? r0 + per : n1, c0 = x2 ? 0 : r0, ncols = n2 - c0;
        nk_array strip[2] = {{0}, {0}};
        int loaded = 1;
        for (int k = 0; k < 2 && loaded; k++) {
            if (!want[k]) continue;
            strip_path(path, sizeof path, dir, s, kinds[k]);
            nk_error lerr = {{0}};
            if (access(path, F_OK) || nk_npy_read(path, &strip[k], &lerr) != NK_OK || strip[k].ndim != 2 ||
                strip[k].shape[0] != r1 - r0 || strip[k].shape[1] != ncols)
                loaded = 0;
        }
        if (loaded && !crc_matches(dir, s, strip)) {
            fprintf(stderr, "%scheckpoint: strip %zu does not match its checksum (corrupted or incomplete): computing it again\n",
                    tty && !quiet ? "\n" : "", s);
            loaded = 0;
        }
        if (loaded) resumed++;
        else {
            if (stop_after >= 0 && computed >= stop_after) {
                nk_array_free(&strip[0]); nk_array_free(&strip[1]);
                nk_array_free(K); nk_array_free(T);
                fprintf(stderr, "nkern: stopped after %ld strips (NK_CHECKPOINT_STOP_AFTER)\n", computed);
                return 1;
            }
            nk_array_free(&strip[0]); nk_array_free(&strip[1]);
            nk_kernel_opts so = *ko; /* messages number the strip's rows as the whole matrix's */
            so.first1 = r0;
            so.first2 = x2 ? 0 : r0;
            st = compute_strip(plan, x1, x2, &so, r0, r1, strip, &err);
            if (st == NK_OK && save_strip(dir, s, strip, want)) {
                nk_array_free(&strip[0]); nk_array_free(&strip[1]);
                nk_array_free(K); nk_array_free(T);
                return 1;
            }
            computed++;
        }
        for (int k = 0; st == NK_OK && k < 2; k++) {
            nk_array *dst = k ? T : K;
            if (!want[k]) continue;
            for (size_t i = r0; i < r1; i++) {
                memcpy(dst->data + i * n2 + c0, strip[k].data + (i - r0) * ncols, ncols * sizeof(double));
                if (!x2)
                    for (size_t j = r0; j < n1; j++) dst->data[j * n2 + i] = strip[k].data[(i - r0) * ncols + (j - r0)];
            }
        }
        nk_array_free(&strip[0]);
        nk_array_free(&strip[1]);
        if (!quiet && tty) fprintf(stderr, "\rcheckpoint: %zu/%zu strips (%zu resumed)   ", s + 1, nstrips, resumed);
    }
    if (!quiet && tty) fputc('\n', stderr);
    else if (!quiet && st == NK_OK) fprintf(stderr, "checkpoint: %zu strips (%zu resumed)\n", nstrips, resumed);
    if (st != NK_OK) {
        nk_array_free(K);
        nk_array_free(T);
        return cli_fail(st, &err);
    }
    return 0;
}

int cli_checkpoint_remove(const char *dir)
{
    char path[4096];
    for (size_t s = 0; s < STRIPS; s++) {
        for (int k = 0; k < 2; k++)
            if (!strip_path(path, sizeof path, dir, s, k ? "ntk" : "nngp")) unlink(path);
        if (!crc_path(path, sizeof path, dir, s)) unlink(path);
    }
    snprintf(path, sizeof path, "%s/run.txt", dir);
    unlink(path);
    return rmdir(dir);
}
