/* test_fuzz_io.c -- a deterministic mutation fuzzer for nk_npy_parse and nk_idx_parse.
 *
 * Valid .npy (versions 1.0-3.0; f8, f4, u1, i4; several shapes) and IDX buffers are built in
 * memory, mutated with a fixed-seed xorshift generator (bit flips, interesting bytes,
 * truncations, insertions, deletions, splices, edits of the header length, the shape and the
 * dtype) and fed to both parsers in buffers of exactly their length, so that ASan sees any
 * read past the end.  Properties: no crash; a failure returns a status other than NK_OK with
 * a message that starts with the buffer's name and leaves the output empty; a success
 * returns 1 to 4 dimensions and data whose every element can be read.
 * Iterations: 200000, or 20000 with NK_TEST_QUICK set, or argv[1]; argv[2] changes the seed. */
#include "nkern.h"
#include "nk_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_BUF 4096
#define NTEXTS(a) (sizeof(a) / sizeof(a)[0])

typedef struct {
    unsigned char b[MAX_BUF];
    size_t len;
} buffer;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

/* xorshift64* (Vigna): deterministic across platforms. */
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static size_t rng_below(size_t n)
{
    return n ? (size_t)(rng() % n) : 0;
}

/* not inlined: at -O3 GCC otherwise warns about a memcpy size it cannot bound */
__attribute__((noinline)) static void append(buffer *b, const void *p, size_t n)
{
    if (b->len + n > MAX_BUF) n = MAX_BUF - b->len;
    memcpy(b->b + b->len, p, n);
    b->len += n;
}

/* A valid .npy: header padded to a multiple of 64 as numpy does; data bytes are random. */
static void seed_npy(buffer *b, int major, const char *descr, const char *shape, size_t count,
                     size_t itemsize)
{
    char dict[256];
    size_t pre = major == 1 ? 10 : 12;
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     descr, shape);
    size_t hlen = ((pre + (size_t)n + 1 + 63) / 64) * 64 - pre;
    b->len = 0;
    append(b, "\x93NUMPY", 6);
    unsigned char ver[6] = {(unsigned char)major, 0, (unsigned char)(hlen & 0xff),
                            (unsigned char)(hlen >> 8), 0, 0};
    append(b, ver, pre - 6);
    append(b, dict, (size_t)n);
    while (b->len < pre + hlen - 1) append(b, " ", 1);
    append(b, "\n", 1);
    for (size_t i = 0; i < count * itemsize; i++) {
        unsigned char byte = (unsigned char)rng();
        append(b, &byte, 1);
    }
}

static void seed_idx(buffer *b, int type, int ndim, const unsigned *dims, size_t itemsize)
{
    size_t count = 1;
    b->len = 0;
    unsigned char head[4] = {0, 0, (unsigned char)type, (unsigned char)ndim};
    append(b, head, 4);
    for (int i = 0; i < ndim; i++) {
        unsigned char d[4] = {(unsigned char)(dims[i] >> 24), (unsigned char)(dims[i] >> 16),
                              (unsigned char)(dims[i] >> 8), (unsigned char)dims[i]};
        append(b, d, 4);
        count *= dims[i];
    }
    for (size_t i = 0; i < count * itemsize; i++) {
        unsigned char byte = (unsigned char)rng();
        append(b, &byte, 1);
    }
}

static const unsigned char interesting[] = {0,   0xff, 0x7f, 0x80, 0x01, '0', '1', '4', '9',
                                            '(', ')',  ',',  ' ',  '\'', '"', '{', '}', ':',
                                            'L', '-',  '\n', '[',  '<',  '>', '|', 'f', 'u'};

/* Text that often lands on the parsers' edge cases when written over a shape or dtype. */
static const char *shape_texts[] = {"0", "1", "4294967296", "18446744073709551615",
                                    "99999999999999999999999", "-1", "1, 1, 1, 1, 1", "",
                                    "3L", "2,", ")", "(", "1 1", "65536, 65536, 65536",
                                    "0, 18446744073709551615"};
static const char *descr_texts[] = {"<f8", ">f8", "<f4", "|u1", "<u1", "<i8", "<i4", "<f2",
                                    "|b1", "<c16", "f8", "", "<f8'", "<u2", ">i4", "|f8"};

/* Replace b[at..at+n) by text. */
static void splice_text(buffer *b, size_t at, size_t n, const char *text)
{
    size_t k = strlen(text);
    if (at > b->len || n > b->len - at || b->len - n + k > MAX_BUF) return;
    memmove(b->b + at + k, b->b + at + n, b->len - at - n);
    memcpy(b->b + at, text, k);
    b->len = b->len - n + k;
}

/* Position of the text between "'KEY': " and the next delimiter, or -1. */
static long find_value(const buffer *b, const char *key, size_t *n)
{
    size_t k = strlen(key);
    for (size_t i = 0; i + k <= b->len; i++) {
        if (memcmp(b->b + i, key, k) != 0) continue;
        size_t j = i + k;
        while (j < b->len && b->b[j] != ')' && b->b[j] != '\'' && b->b[j] != '}') j++;
        *n = j - (i + k);
        return (long)(i + k);
    }
    return -1;
}

static void mutate(buffer *b, int is_idx)
{
    size_t at = rng_below(b->len + 1), n;
    long pos;
    unsigned char byte;
    switch (rng_below(10)) {
    case 0: /* bit flip */
        if (b->len) b->b[rng_below(b->len)] ^= (unsigned char)(1u << rng_below(8));
        break;
    case 1: /* interesting byte */
        if (b->len) b->b[rng_below(b->len)] = interesting[rng_below(sizeof interesting)];
        break;
    case 2: /* truncate, mostly near the header or the end */
        if (rng_below(2)) b->len = rng_below(b->len + 1);
        else b->len -= rng_below(b->len < 9 ? b->len + 1 : 9);
        break;
    case 3: /* insert */
        byte = rng_below(2) ? interesting[rng_below(sizeof interesting)] : (unsigned char)rng();
        if (b->len < MAX_BUF) {
            memmove(b->b + at + 1, b->b + at, b->len - at);
            b->b[at] = byte;
            b->len++;
        }
        break;
    case 4: /* delete a few bytes */
        n = 1 + rng_below(8);
        if (at < b->len) {
            if (n > b->len - at) n = b->len - at;
            memmove(b->b + at, b->b + at + n, b->len - at - n);
            b->len -= n;
        }
        break;
    case 5: /* header length (npy) or a dimension (IDX) */
        if (is_idx && b->len >= 8) {
            size_t d = 4 + 4 * rng_below((b->len - 4) / 4 < 4 ? (b->len - 4) / 4 : 4);
            static const uint32_t dims[] = {0, 1, 2, 0xFFFFFFFFu, 0x80000000u, 0x10000u, 28};
            uint32_t v = rng_below(2) ? dims[rng_below(7)] : (uint32_t)rng();
            for (int i = 0; i < 4 && d + (size_t)i < b->len; i++)
                b->b[d + (size_t)i] = (unsigned char)(v >> (24 - 8 * i));
        } else if (!is_idx && b->len >= 12) {
            int delta = (int)rng_below(17) - 8;
            size_t h = b->b[8] | (size_t)b->b[9] << 8;
            h = rng_below(4) ? h + (size_t)delta : (size_t)(rng() & 0xffff);
            b->b[8] = (unsigned char)h;
            b->b[9] = (unsigned char)(h >> 8);
            if (rng_below(4) == 0) b->b[10] = b->b[11] = (unsigned char)rng();
        }
        break;
    case 6: /* shape text */
        pos = find_value(b, "'shape': (", &n);
        if (pos >= 0) splice_text(b, (size_t)pos, n, shape_texts[rng_below(NTEXTS(shape_texts))]);
        break;
    case 7: /* dtype text */
        pos = find_value(b, "'descr': '", &n);
        if (pos >= 0) splice_text(b, (size_t)pos, n, descr_texts[rng_below(NTEXTS(descr_texts))]);
        break;
    case 8: /* copy a chunk elsewhere */
        if (b->len > 2) {
            size_t from = rng_below(b->len), len = 1 + rng_below(16);
            if (len > b->len - from) len = b->len - from;
            if (b->len + len <= MAX_BUF) {
                unsigned char tmp[16];
                memcpy(tmp, b->b + from, len);
                memmove(b->b + at + len, b->b + at, b->len - at);
                memcpy(b->b + at, tmp, len);
                b->len += len;
            }
        }
        break;
    default: /* version byte, magic, or IDX type/ndim */
        if (b->len >= 4) {
            static const unsigned char codes[] = {0,    1,    2,    3,    4,    5,   8,
                                                  9, 0x0B, 0x0C, 0x0D, 0x0E, 0xff};
            size_t where = is_idx ? 2 + rng_below(2) : 6 + rng_below(2);
            if (where < b->len) b->b[where] = codes[rng_below(sizeof codes)];
        }
        break;
    }
}

typedef struct {
    size_t ok, failed, bad_status, bad_message, bad_output;
} tally;

static void run_one(int is_idx, const unsigned char *buf, size_t len, tally *t)
{
    nk_array a;
    nk_error e;
    memset(&a, 0xAB, sizeof a); /* the parser must initialise the output */
    e.msg[0] = '\0';
    nk_status st = is_idx ? nk_idx_parse(buf, len, "fuzz.bin", &a, &e)
                          : nk_npy_parse(buf, len, "fuzz.bin", &a, &e);
    if (st == NK_OK) {
        t->ok++;
        size_t count = 1;
        int shape_ok = a.ndim >= 1 && a.ndim <= 4;
        for (int i = 0; shape_ok && i < a.ndim; i++) count *= a.shape[i];
        /* every stored element takes at least one byte of the input */
        if (!shape_ok || !a.data || count != nk_array_size(&a) || count > len) {
            if (t->bad_output++ == 0) fprintf(stderr, "fuzz: success with a bad shape\n");
        } else {
            volatile double sink = 0;
            for (size_t i = 0; i < count; i++) sink += a.data[i]; /* ASan checks the extent */
            (void)sink;
        }
        nk_array_free(&a);
        return;
    }
    t->failed++;
    if (st != NK_ERR_INPUT && st != NK_ERR_NOMEM) {
        if (t->bad_status++ == 0) fprintf(stderr, "fuzz: status %d: %s\n", st, e.msg);
    }
    if (strncmp(e.msg, "fuzz.bin: ", 10) != 0 || strlen(e.msg) < 20) {
        if (t->bad_message++ == 0) fprintf(stderr, "fuzz: bad message '%s'\n", e.msg);
    }
    if (a.data != NULL || a.ndim != 0) {
        if (t->bad_output++ == 0) fprintf(stderr, "fuzz: failure left output set\n");
    }
}

int main(int argc, char **argv)
{
    size_t iters = getenv("NK_TEST_QUICK") ? 20000 : 200000;
    if (argc > 1) iters = strtoul(argv[1], NULL, 10);
    if (argc > 2) rng_state ^= strtoull(argv[2], NULL, 10) * 0xD1B54A32D192ED03ull;

    enum { NSEEDS = 14 };
    static buffer seeds[NSEEDS];
    unsigned d_img[3] = {2, 2, 3}, d_lab[1] = {5}, d_mat[2] = {2, 2}, d_vec[1] = {3},
             d_zero[2] = {0, 4}, d_4d[4] = {1, 2, 2, 2};
    seed_npy(&seeds[0], 1, "<f8", "(2, 3)", 6, 8);
    seed_npy(&seeds[1], 1, "<f4", "(4,)", 4, 4);
    seed_npy(&seeds[2], 1, "|u1", "(2, 2, 2, 1)", 8, 1);
    seed_npy(&seeds[3], 2, "<f8", "(3, 1)", 3, 8);
    seed_npy(&seeds[4], 3, "<f4", "(1, 2, 3)", 6, 4);
    seed_npy(&seeds[5], 1, "<i4", "(5,)", 5, 4);
    seed_npy(&seeds[6], 1, "<f8", "(0, 3)", 0, 8);
    seed_npy(&seeds[7], 2, "|u1", "(7,)", 7, 1);
    seed_idx(&seeds[8], 0x08, 3, d_img, 1);
    seed_idx(&seeds[9], 0x08, 1, d_lab, 1);
    seed_idx(&seeds[10], 0x0C, 2, d_mat, 4);
    seed_idx(&seeds[11], 0x0E, 1, d_vec, 8);
    seed_idx(&seeds[12], 0x0D, 2, d_zero, 4);
    seed_idx(&seeds[13], 0x0B, 4, d_4d, 2);

    /* every seed parses as what it is */
    for (int s = 0; s < NSEEDS; s++) {
        nk_array a;
        nk_error e;
        nk_status st = s < 8 ? nk_npy_parse(seeds[s].b, seeds[s].len, "seed", &a, &e)
                             : nk_idx_parse(seeds[s].b, seeds[s].len, "seed", &a, &e);
        CHECK(st == NK_OK, "seed %d: %s", s, e.msg);
        nk_array_free(&a);
    }

    tally npy = {0}, idx = {0};
    static buffer work;
    clock_t t0 = clock();
    for (size_t it = 0; it < iters; it++) {
        int s = (int)rng_below(NSEEDS), is_idx = s >= 8;
        work = seeds[s];
        /* mostly one mutation, so that many inputs stay close to valid */
        for (size_t m = rng_below(2) ? 1 : 2 + rng_below(3); m > 0; m--) mutate(&work, is_idx);
        /* an exact-size heap copy: any read past the end is an ASan error */
        unsigned char *copy = work.len ? malloc(work.len) : NULL;
        if (work.len && !copy) {
            fprintf(stderr, "fuzz: out of memory\n");
            return 1;
        }
        if (copy) memcpy(copy, work.b, work.len);
        run_one(0, copy, work.len, &npy);
        run_one(1, copy, work.len, &idx);
        free(copy);
    }
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("test_fuzz_io: %zu iterations in %.2f s; npy %zu accepted, %zu rejected; "
           "idx %zu accepted, %zu rejected\n",
           iters, secs, npy.ok, npy.failed, idx.ok, idx.failed);

    const tally *ts[2] = {&npy, &idx};
    for (int k = 0; k < 2; k++) {
        const char *what = k ? "idx" : "npy";
        CHECK(ts[k]->bad_status == 0, "%s: %zu failures with an unexpected status", what,
              ts[k]->bad_status);
        CHECK(ts[k]->bad_message == 0, "%s: %zu failures without a proper message", what,
              ts[k]->bad_message);
        CHECK(ts[k]->bad_output == 0, "%s: %zu inconsistent outputs", what, ts[k]->bad_output);
        /* the mutations keep some inputs valid, or the fuzzer explores nothing past the header */
        CHECK(iters < 1000 || ts[k]->ok > iters / 100, "%s: only %zu inputs accepted", what,
              ts[k]->ok);
        CHECK(iters < 1000 || ts[k]->failed > iters / 10, "%s: only %zu inputs rejected", what,
              ts[k]->failed);
    }
    return nk_test_summary("test_fuzz_io");
}
