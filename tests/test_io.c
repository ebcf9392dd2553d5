/* test_io.c -- .npy and IDX readers and the .npy writer against independent references:
 * byte buffers built by hand from the format specifications, files written by numpy itself
 * (when /usr/bin/python3 has numpy), and the real Fashion-MNIST files when installed. */
#include "nkern.h"
#include "nk_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#define PY "/usr/bin/python3"
#define FMNIST "/usr/share/datasets/fashion-mnist/"

static char tmpdir[64];

static const char *tmp_path(const char *file)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, file);
    return buf[k];
}

static int write_file(const char *path, const unsigned char *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = fwrite(buf, 1, len, f);
    return fclose(f) == 0 && n == len ? 0 : -1;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        rewind(f);
        buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
        if (buf) *len = fread(buf, 1, (size_t)n, f);
    }
    fclose(f);
    return buf;
}

/* A .npy file by the specification: "\x93NUMPY", major, minor 0, header length (2 bytes
 * little-endian in 1.0, 4 in 2.0/3.0), header text, data. */
static size_t make_npy(unsigned char *buf, int major, const char *header,
                       const unsigned char *data, size_t data_len)
{
    size_t pre = major == 1 ? 10 : 12, hl = strlen(header);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    buf[8] = (unsigned char)(hl & 0xff);
    buf[9] = (unsigned char)((hl >> 8) & 0xff);
    if (pre == 12) {
        buf[10] = (unsigned char)((hl >> 16) & 0xff);
        buf[11] = (unsigned char)(hl >> 24);
    }
    memcpy(buf + pre, header, hl);
    if (data_len) memcpy(buf + pre + hl, data, data_len);
    return pre + hl + data_len;
}

/* An IDX file: 0, 0, type, ndim, big-endian 4-byte dims, data. */
static size_t make_idx(unsigned char *buf, int type, int ndim, const unsigned *dims,
                       const unsigned char *data, size_t data_len)
{
    buf[0] = 0;
    buf[1] = 0;
    buf[2] = (unsigned char)type;
    buf[3] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++) {
        buf[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
        buf[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
        buf[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
        buf[7 + 4 * i] = (unsigned char)dims[i];
    }
    if (data_len) memcpy(buf + 4 + 4 * ndim, data, data_len);
    return 4 + 4 * (size_t)ndim + data_len;
}

/* Read .npy bytes through a pipe, as from a shell's process substitution. */
static nk_status read_via_pipe(const unsigned char *buf, size_t len, nk_array *a, nk_error *e)
{
    int fd[2];
    char path[64];
    if (pipe(fd) != 0) return nk_fail(e, NK_ERR_IO, "pipe failed");
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        ssize_t n = write(fd[1], buf, len);
        _exit(n == (ssize_t)len ? 0 : 1);
    }
    close(fd[1]);
    snprintf(path, sizeof path, "/dev/fd/%d", fd[0]);
    nk_status st = pid > 0 ? nk_npy_read(path, a, e) : nk_fail(e, NK_ERR_IO, "fork failed");
    close(fd[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
    return st;
}

/* memmem is not in POSIX. */
static int contains(const unsigned char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return 1;
    return 0;
}

static int same_bits(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

static int shape_is(const nk_array *a, int ndim, size_t s0, size_t s1, size_t s2, size_t s3)
{
    size_t s[4] = {s0, s1, s2, s3};
    if (a->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (a->shape[i] != s[i]) return 0;
    return 1;
}

/* A parse that must fail with NK_ERR_INPUT, name the file, contain `needle` and leave the
 * output empty. */
static void expect_fail(int is_idx, const unsigned char *buf, size_t len, const char *needle,
                        const char *what)
{
    nk_array a;
    nk_error e;
    memset(&e, 0, sizeof e);
    nk_status st = is_idx ? nk_idx_parse(buf, len, "case.bin", &a, &e)
                          : nk_npy_parse(buf, len, "case.bin", &a, &e);
    CHECK(st == NK_ERR_INPUT, "%s: status %d, message '%s'", what, st, e.msg);
    CHECK(strncmp(e.msg, "case.bin: ", 10) == 0, "%s: message '%s' does not start with the name",
          what, e.msg);
    CHECK(strstr(e.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, e.msg, needle);
    CHECK(strchr(e.msg, '(') && e.msg[strlen(e.msg) - 1] == ')',
          "%s: message '%s' lacks a (how to fix)", what, e.msg);
    CHECK(a.data == NULL && a.ndim == 0, "%s: output not left empty", what);
    nk_array_free(&a);
}

static void expect_npy_fail(int major, const char *header, size_t data_len, const char *needle,
                            const char *what)
{
    static unsigned char buf[4096], zeros[512];
    size_t len = make_npy(buf, major, header, zeros, data_len);
    expect_fail(0, buf, len, needle, what);
}

/* Little-endian float64 1.0, -2.5, 0.1, -0.0, +inf, NaN. */
static const unsigned char f8_bytes[6][8] = {
    {0, 0, 0, 0, 0, 0, 0xF0, 0x3F},          {0, 0, 0, 0, 0, 0, 0x04, 0xC0},
    {0x9A, 0x99, 0x99, 0x99, 0x99, 0x99, 0xB9, 0x3F}, {0, 0, 0, 0, 0, 0, 0, 0x80},
    {0, 0, 0, 0, 0, 0, 0xF0, 0x7F},          {0, 0, 0, 0, 0, 0, 0xF8, 0x7F}};

static void check_f8_values(const nk_array *a, const char *what)
{
    CHECK(a->data[0] == 1.0 && a->data[1] == -2.5 && a->data[2] == 0.1, "%s: values %g %g %g",
          what, a->data[0], a->data[1], a->data[2]);
    CHECK(a->data[3] == 0.0 && signbit(a->data[3]), "%s: -0.0 lost", what);
    CHECK(isinf(a->data[4]) && a->data[4] > 0 && isnan(a->data[5]), "%s: inf/nan lost", what);
}

static void test_npy_versions(void)
{
    unsigned char buf[1024];
    nk_array a;
    nk_error e;
    const char *headers[3] = {
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }          \n",
        /* keys in another order, double quotes, odd spacing, no trailing comma */
        "{ \"shape\" :( 2 ,3 ) ,'fortran_order':False,\t'descr':\"<f8\"}\n",
        "{'fortran_order': False, 'shape': (2L, 3L), 'descr': '<f8'}",
    };
    for (int major = 1; major <= 3; major++) {
        char what[32];
        size_t len = make_npy(buf, major, headers[major - 1], &f8_bytes[0][0], sizeof f8_bytes);
        snprintf(what, sizeof what, "npy v%d.0", major);
        nk_status st = nk_npy_parse(buf, len, "v.npy", &a, &e);
        CHECK(st == NK_OK, "%s: %s", what, e.msg);
        if (st != NK_OK) continue;
        CHECK(shape_is(&a, 2, 2, 3, 0, 0), "%s: shape", what);
        check_f8_values(&a, what);
        nk_array_free(&a);
    }

    /* float32: 1.0, -2.5, 0.1f (exactly 13421773 / 2^27), 3.0 */
    static const unsigned char f4[] = {0, 0, 0x80, 0x3F, 0, 0, 0x20, 0xC0,
                                       0xCD, 0xCC, 0xCC, 0x3D, 0, 0, 0x40, 0x40};
    size_t len = make_npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }\n",
                          f4, sizeof f4);
    CHECK(nk_npy_parse(buf, len, "f4.npy", &a, &e) == NK_OK, "f4: %s", e.msg);
    CHECK(shape_is(&a, 1, 4, 0, 0, 0), "f4 shape");
    if (a.data)
        CHECK(a.data[0] == 1.0 && a.data[1] == -2.5 && a.data[2] == 13421773.0 / 134217728.0 &&
                  a.data[3] == 3.0,
              "f4 values %.17g %.17g %.17g %.17g", a.data[0], a.data[1], a.data[2], a.data[3]);
    nk_array_free(&a);

    /* uint8 as numpy writes it ('|u1') and as other writers do ('<u1'), 4-d */
    static const unsigned char u1[] = {0, 1, 127, 128, 200, 255, 7, 9};
    const char *u1_headers[2] = {
        "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 1, 2, 2), }\n",
        "{'descr': '<u1', 'fortran_order': False, 'shape': (1, 2, 2, 2), }\n"};
    for (int k = 0; k < 2; k++) {
        len = make_npy(buf, 1, u1_headers[k], u1, sizeof u1);
        CHECK(nk_npy_parse(buf, len, "u1.npy", &a, &e) == NK_OK, "u1: %s", e.msg);
        CHECK(a.ndim == 4 && nk_array_size(&a) == 8, "u1 shape");
        int ok = a.data != NULL;
        for (int i = 0; ok && i < 8; i++) ok = a.data[i] == (double)u1[i];
        CHECK(ok, "u1 values");
        nk_array_free(&a);
    }

    /* int32 and int64: -1, 100000, -2^31; -3, 2^40 */
    static const unsigned char i4[] = {0xFF, 0xFF, 0xFF, 0xFF, 0xA0, 0x86, 0x01, 0x00,
                                       0x00, 0x00, 0x00, 0x80};
    len = make_npy(buf, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }\n", i4,
                   sizeof i4);
    CHECK(nk_npy_parse(buf, len, "i4.npy", &a, &e) == NK_OK, "i4: %s", e.msg);
    if (a.data)
        CHECK(a.data[0] == -1 && a.data[1] == 100000 && a.data[2] == -2147483648.0, "i4 values");
    nk_array_free(&a);
    static const unsigned char i8[] = {0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                       0, 0, 0, 0, 0, 0x01, 0, 0};
    len = make_npy(buf, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }\n", i8,
                   sizeof i8);
    CHECK(nk_npy_parse(buf, len, "i8.npy", &a, &e) == NK_OK, "i8: %s", e.msg);
    if (a.data) CHECK(a.data[0] == -3 && a.data[1] == 1099511627776.0, "i8 values");
    nk_array_free(&a);

    /* an empty array is valid: shape (0, 3), no data */
    len = make_npy(buf, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 3), }\n",
                   NULL, 0);
    CHECK(nk_npy_parse(buf, len, "empty.npy", &a, &e) == NK_OK, "empty: %s", e.msg);
    CHECK(shape_is(&a, 2, 0, 3, 0, 0) && nk_array_size(&a) == 0, "empty shape");
    nk_array_free(&a);
}

static void test_npy_errors(void)
{
    unsigned char buf[256];
    nk_array a;
    nk_error e;
    const char *ok_hdr = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }\n";
    size_t len;

    /* the exact message form of the specification */
    len = make_npy(buf, 1, "['descr']\n", NULL, 0);
    CHECK(nk_npy_parse(buf, len, "x.npy", &a, &e) == NK_ERR_INPUT, "list header");
    CHECK(strcmp(e.msg, "x.npy: byte 10: header is not a Python dict literal (write the file "
                        "with numpy.save)") == 0,
          "message '%s'", e.msg);

    expect_fail(0, buf, 0, "empty", "empty buffer");
    expect_fail(0, (const unsigned char *)"PK\3\4abcdefgh", 12, ".npz", "zip archive");
    expect_fail(0, (const unsigned char *)"\x1f\x8b\x08\0abcdefgh", 12, "gzip", "gzip");
    expect_fail(0, (const unsigned char *)"NUMPY\x01\0abcdefgh", 12, "not a .npy file", "magic");
    len = make_npy(buf, 1, ok_hdr, NULL, 0);
    expect_fail(0, buf, 8, "preamble", "cut in preamble");
    expect_fail(0, buf, 30, "runs past the end", "cut in header");
    buf[6] = 4;
    expect_fail(0, buf, len, "version 4.0", "version 4");
    buf[6] = 1;
    buf[7] = 1;
    expect_fail(0, buf, len, "version 1.1", "version 1.1");
    buf[7] = 0;
    buf[8] = buf[9] = 0;
    expect_fail(0, buf, len, "length is 0", "header length 0");
    len = make_npy(buf, 2, ok_hdr, NULL, 0);
    buf[10] = 0x20; /* 2 MiB */
    expect_fail(0, buf, len, "implausibly large", "huge header length");
    expect_fail(0, buf, 11, "preamble", "v2 cut in preamble");

    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': False}\n", 0, "lacks the key 'shape'",
                    "missing shape");
    expect_npy_fail(1, "{'descr': '<f8', 'shape': (1,)}", 8, "lacks the key 'fortran_order'",
                    "missing fortran_order");
    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'foo': 1}", 8,
                    "unknown key 'foo'", "unknown key");
    expect_npy_fail(1, "{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (1,)}",
                    8, "duplicate key", "duplicate key");
    expect_npy_fail(1, "{'descr': '<c16', 'fortran_order': False, 'shape': (1,)}", 16,
                    "unsupported dtype '<c16'", "complex");
    expect_npy_fail(1, "{'descr': '|b1', 'fortran_order': False, 'shape': (1,)}", 1,
                    "unsupported dtype", "bool");
    expect_npy_fail(1, "{'descr': '>f8', 'fortran_order': False, 'shape': (1,)}", 8,
                    "astype('<f8')", "big-endian");
    expect_npy_fail(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1,)}", 4,
                    "big-endian", "big-endian f4");
    expect_npy_fail(1, "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,)}", 8,
                    "structured", "structured dtype");
    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2)}", 32,
                    "numpy.ascontiguousarray", "fortran order");
    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': maybe, 'shape': (2, 2)}", 32,
                    "True or False", "fortran value");
    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': Falsely, 'shape': (2, 2)}", 32,
                    "True or False", "fortran word boundary");
    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': False, 'shape': ()}", 8,
                    "0 dimensions", "0-d");
    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1)}", 8,
                    "5 dimensions", "5-d");
    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3)}", 40,
                    "expected 48 bytes of data, found 40", "truncated data");
    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3)}", 49,
                    "trailing", "trailing garbage");
    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 3)}", 1,
                    "trailing", "empty array with data");
    expect_npy_fail(1,
                    "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, "
                    "4294967296)}",
                    0, "too large", "shape overflow");
    expect_npy_fail(1,
                    "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 4294967296, "
                    "4294967296)}",
                    0, "too large", "shape overflow with a zero");
    expect_npy_fail(1,
                    "{'descr': '<f8', 'fortran_order': False, "
                    "'shape': (99999999999999999999999,)}",
                    0, "too large", "dimension overflow");
    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}", 0,
                    "negative", "negative dimension");
    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3)}", 24,
                    "not a tuple", "shape not a tuple");
    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1 2)}", 16,
                    "expected ',' or ')'", "shape without comma");
    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': False, 'shape': [2, 3]}", 48,
                    "must be a tuple", "shape as list");
    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3", 48,
                    "shape tuple", "unterminated tuple");
    expect_npy_fail(1, "{'descr': '<f8, 'fortran_order': False, 'shape': (2, 3)}", 48,
                    "", "bad quoting");
    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)", 8,
                    "expected ',' or '}'", "unterminated dict");
    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)} x", 8,
                    "unexpected text", "text after dict");
    expect_npy_fail(1, "{'descr': '<f8' 'fortran_order': False, 'shape': (1,)}", 8,
                    "expected ',' or '}'", "missing comma");
    expect_npy_fail(1, "{'descr' '<f8', 'fortran_order': False, 'shape': (1,)}", 8,
                    "expected ':'", "missing colon");
    expect_npy_fail(1, "{descr: '<f8', 'fortran_order': False, 'shape': (1,)}", 8,
                    "quoted key", "unquoted key");
    expect_npy_fail(1, "{'descr': 'f\\x38', 'fortran_order': False, 'shape': (1,)}", 8,
                    "escape", "escape in string");
    expect_npy_fail(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'unterminated", 8,
                    "unterminated string", "unterminated string");

    /* no name: messages still say where */
    len = make_npy(buf, 1, ok_hdr, NULL, 0);
    CHECK(nk_npy_parse(buf, len, NULL, &a, &e) == NK_ERR_INPUT && strstr(e.msg, "<memory>"),
          "NULL name: %s", e.msg);
}

static void test_npy_files(void)
{
    nk_array a, b;
    nk_error e;
    size_t shape[3] = {2, 3, 4};
    unsigned char *raw;
    size_t raw_len = 0;

    CHECK(nk_array_alloc(&a, 3, shape, &e) == NK_OK, "alloc: %s", e.msg);
    for (size_t i = 0; i < 24; i++) a.data[i] = (double)i * 0.37 - 3.0;
    a.data[1] = 1e-310;  /* subnormal */
    a.data[2] = -0.0;
    a.data[3] = 1e308;   /* overflows float32 */
    a.data[4] = INFINITY;
    a.data[5] = NAN;
    a.data[6] = 0.1;

    const char *p64 = tmp_path("round64.npy"), *p32 = tmp_path("round32.npy");
    CHECK(nk_npy_write(p64, &a, 0, &e) == NK_OK, "write f64: %s", e.msg);
    CHECK(nk_npy_read(p64, &b, &e) == NK_OK, "read f64: %s", e.msg);
    CHECK(shape_is(&b, 3, 2, 3, 4, 0), "f64 round trip shape");
    int ok = b.data != NULL;
    for (size_t i = 0; ok && i < 24; i++) ok = same_bits(a.data[i], b.data[i]);
    CHECK(ok, "f64 round trip is not bit-exact");
    nk_array_free(&b);

    /* the layout numpy writes: version 1.0, header ending in '\n', data at a multiple of 64 */
    raw = slurp(p64, &raw_len);
    CHECK(raw != NULL, "cannot reread %s", p64);
    if (raw) {
        size_t hl = raw[8] | (size_t)raw[9] << 8, off = 10 + hl;
        CHECK(memcmp(raw, "\x93NUMPY\x01\x00", 8) == 0, "f64 magic/version");
        CHECK(off % 64 == 0 && raw[off - 1] == '\n', "data offset %zu", off);
        CHECK(raw_len == off + 24 * 8, "file size %zu", raw_len);
        CHECK(contains(raw, off, "'descr': '<f8'") && contains(raw, off, "(2, 3, 4)"),
              "f64 header text");
        /* element 0 is -3.0: bytes 00..00 08 C0 */
        CHECK(off + 8 <= raw_len && raw[off + 7] == 0xC0 && raw[off + 6] == 0x08,
              "f64 data is little-endian");
        free(raw);
    }

    /* 1e308 does not fit float32: refused before any file exists (it would be Inf) */
    CHECK(nk_npy_write(p32, &a, 1, &e) == NK_ERR_NONFINITE && strstr(e.msg, "float32") && access(p32, F_OK) != 0,
          "f32 overflow: %s", e.msg);
    a.data[3] = 3e38; /* within float32's range */
    CHECK(nk_npy_write(p32, &a, 1, &e) == NK_OK, "write f32: %s", e.msg);
    CHECK(nk_npy_read(p32, &b, &e) == NK_OK, "read f32: %s", e.msg);
    CHECK(shape_is(&b, 3, 2, 3, 4, 0), "f32 round trip shape");
    ok = b.data != NULL;
    for (size_t i = 0; ok && i < 24; i++)
        ok = i == 5 ? isnan(b.data[i]) : same_bits(b.data[i], (double)(float)a.data[i]);
    CHECK(ok, "f32 round trip differs from (float) rounding");
    CHECK(b.data && b.data[3] == (double)3e38f, "3e38 as float32");
    nk_array_free(&b);
    raw = slurp(p32, &raw_len);
    if (raw) {
        size_t off = 10 + (raw[8] | (size_t)raw[9] << 8);
        CHECK(off % 64 == 0 && raw_len == off + 24 * 4, "f32 layout");
        CHECK(contains(raw, off, "'descr': '<f4'"), "f32 descr");
        free(raw);
    }

    /* a 1-d array is written with shape (N,); overwriting an existing file works */
    a.ndim = 1;
    a.shape[0] = 5;
    CHECK(nk_npy_write(p64, &a, 0, &e) == NK_OK, "write 1-d: %s", e.msg);
    raw = slurp(p64, &raw_len);
    CHECK(raw && contains(raw, raw_len < 128 ? raw_len : 128, "'shape': (5,)"), "1-d header");
    free(raw);
    CHECK(nk_npy_read(p64, &b, &e) == NK_OK && shape_is(&b, 1, 5, 0, 0, 0), "1-d read");
    nk_array_free(&b);
    a.ndim = 3;
    a.shape[0] = 2;

    /* a failing write leaves no temporary file behind */
    const char *sub = tmp_path("subdir");
    char tmp[300];
    CHECK(mkdir(sub, 0700) == 0, "mkdir %s", sub);
    CHECK(nk_npy_write(sub, &a, 0, &e) == NK_ERR_IO && strstr(e.msg, sub), "write onto a "
          "directory: %s", e.msg);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", sub, (long)getpid());
    CHECK(access(tmp, F_OK) != 0, "temporary file %s left behind", tmp);
    const char *nodir = tmp_path("no/such/dir/x.npy");
    CHECK(nk_npy_write(nodir, &a, 0, &e) == NK_ERR_IO && strstr(e.msg, nodir) &&
              strstr(e.msg, "No such file"),
          "write into a missing directory: %s", e.msg);
    a.ndim = 0;
    CHECK(nk_npy_write(p64, &a, 0, &e) == NK_ERR_INPUT, "write 0-d");
    a.ndim = 3;
    nk_array_free(&a);

    /* reading: missing file, directory, truncated and padded files */
    const char *missing = tmp_path("missing.npy");
    CHECK(nk_npy_read(missing, &b, &e) == NK_ERR_IO && strstr(e.msg, missing) &&
              strstr(e.msg, "No such file"),
          "missing file: %s", e.msg);
    CHECK(nk_npy_read(sub, &b, &e) == NK_ERR_IO && strstr(e.msg, "directory"), "directory: %s",
          e.msg);
    unsigned char buf[512];
    size_t len = make_npy(buf, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (6,), }\n",
                          &f8_bytes[0][0], sizeof f8_bytes);
    const char *cut = tmp_path("cut.npy");
    CHECK(write_file(cut, buf, len - 5) == 0, "write %s", cut);
    CHECK(nk_npy_read(cut, &b, &e) == NK_ERR_INPUT && strstr(e.msg, cut) &&
              strstr(e.msg, "expected 48 bytes of data, found 43"),
          "truncated file: %s", e.msg);
    CHECK(write_file(cut, buf, 40) == 0, "write %s", cut);
    CHECK(nk_npy_read(cut, &b, &e) == NK_ERR_INPUT && strstr(e.msg, "runs past the end"),
          "file cut in the header: %s", e.msg);
    buf[len] = 0;
    CHECK(write_file(cut, buf, len + 1) == 0, "write %s", cut);
    CHECK(nk_npy_read(cut, &b, &e) == NK_ERR_INPUT && strstr(e.msg, "trailing"),
          "padded file: %s", e.msg);
    CHECK(write_file(cut, buf, len) == 0, "write %s", cut);
    CHECK(nk_npy_read(cut, &b, &e) == NK_OK && shape_is(&b, 1, 6, 0, 0, 0), "read: %s", e.msg);
    if (b.data) check_f8_values(&b, "file");
    nk_array_free(&b);
    /* a pipe (not a regular file) goes through the streaming checks */
    CHECK(read_via_pipe(buf, len, &b, &e) == NK_OK && shape_is(&b, 1, 6, 0, 0, 0),
          "pipe: %s", e.msg);
    if (b.data) check_f8_values(&b, "pipe");
    nk_array_free(&b);
    CHECK(read_via_pipe(buf, len - 3, &b, &e) == NK_ERR_INPUT &&
              strstr(e.msg, "expected 48 bytes of data, found 45"),
          "truncated pipe: %s", e.msg);
    CHECK(read_via_pipe(buf, len + 1, &b, &e) == NK_ERR_INPUT &&
              strstr(e.msg, "found at least 49"),
          "padded pipe: %s", e.msg);
}

static void test_idx_buffers(void)
{
    unsigned char buf[256];
    nk_array a;
    nk_error e;
    size_t len;
    unsigned dims[4];

    /* ubyte images (2, 2, 3) -> (2, 2, 3, 1) */
    static const unsigned char img[12] = {0, 1, 2, 3, 127, 128, 129, 200, 250, 253, 254, 255};
    dims[0] = 2, dims[1] = 2, dims[2] = 3;
    len = make_idx(buf, 0x08, 3, dims, img, sizeof img);
    CHECK(nk_idx_parse(buf, len, "img", &a, &e) == NK_OK, "ubyte images: %s", e.msg);
    CHECK(shape_is(&a, 4, 2, 2, 3, 1), "images get a channel axis");
    int ok = a.data != NULL;
    for (int i = 0; ok && i < 12; i++) ok = a.data[i] == img[i];
    CHECK(ok, "ubyte values");
    nk_array_free(&a);

    /* labels (5) */
    static const unsigned char lab[5] = {0, 9, 3, 255, 7};
    dims[0] = 5;
    len = make_idx(buf, 0x08, 1, dims, lab, sizeof lab);
    CHECK(nk_idx_parse(buf, len, "lab", &a, &e) == NK_OK, "labels: %s", e.msg);
    CHECK(shape_is(&a, 1, 5, 0, 0, 0) && a.data[1] == 9 && a.data[3] == 255, "label values");
    nk_array_free(&a);

    /* signed byte, int16, int32 (2-d stays 2-d), float32, float64, all big-endian */
    static const unsigned char i1[3] = {0x80, 0x7F, 0xFF};
    dims[0] = 3;
    len = make_idx(buf, 0x09, 1, dims, i1, sizeof i1);
    CHECK(nk_idx_parse(buf, len, "i1", &a, &e) == NK_OK && a.data[0] == -128 && a.data[1] == 127 &&
              a.data[2] == -1,
          "sbyte: %s", e.msg);
    nk_array_free(&a);
    static const unsigned char i2[4] = {0x80, 0x00, 0x01, 0x02};
    dims[0] = 2;
    len = make_idx(buf, 0x0B, 1, dims, i2, sizeof i2);
    CHECK(nk_idx_parse(buf, len, "i2", &a, &e) == NK_OK && a.data[0] == -32768 && a.data[1] == 258,
          "int16: %s", e.msg);
    nk_array_free(&a);
    static const unsigned char i4[16] = {0x00, 0x01, 0x86, 0xA0, 0xFF, 0xFF, 0xFF, 0xFF,
                                         0x80, 0x00, 0x00, 0x00, 0x7F, 0xFF, 0xFF, 0xFF};
    dims[0] = 2, dims[1] = 2;
    len = make_idx(buf, 0x0C, 2, dims, i4, sizeof i4);
    CHECK(nk_idx_parse(buf, len, "i4", &a, &e) == NK_OK, "int32: %s", e.msg);
    CHECK(shape_is(&a, 2, 2, 2, 0, 0) && a.data[0] == 100000 && a.data[1] == -1 &&
              a.data[2] == -2147483648.0 && a.data[3] == 2147483647.0,
          "int32 values");
    nk_array_free(&a);
    static const unsigned char f4[8] = {0x3F, 0x80, 0, 0, 0xC0, 0x20, 0, 0};
    dims[0] = 2;
    len = make_idx(buf, 0x0D, 1, dims, f4, sizeof f4);
    CHECK(nk_idx_parse(buf, len, "f4", &a, &e) == NK_OK && a.data[0] == 1.0 && a.data[1] == -2.5,
          "float32: %s", e.msg);
    nk_array_free(&a);
    static const unsigned char f8[24] = {0x3F, 0xF0, 0, 0, 0, 0, 0, 0,
                                         0xC0, 0x04, 0, 0, 0, 0, 0, 0,
                                         0x3F, 0xB9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9A};
    dims[0] = 1, dims[1] = 1, dims[2] = 3;
    len = make_idx(buf, 0x0E, 3, dims, f8, sizeof f8);
    CHECK(nk_idx_parse(buf, len, "f8", &a, &e) == NK_OK && shape_is(&a, 4, 1, 1, 3, 1) &&
              a.data[0] == 1.0 && a.data[1] == -2.5 && a.data[2] == 0.1,
          "float64: %s", e.msg);
    nk_array_free(&a);

    /* zero dimensions are fine when the data is empty too */
    dims[0] = 0, dims[1] = 5;
    len = make_idx(buf, 0x08, 2, dims, NULL, 0);
    CHECK(nk_idx_parse(buf, len, "zero", &a, &e) == NK_OK && shape_is(&a, 2, 0, 5, 0, 0),
          "zero dim: %s", e.msg);
    nk_array_free(&a);
    buf[len] = 1;
    expect_fail(1, buf, len + 1, "trailing", "zero dim with data");

    /* errors */
    dims[0] = 5;
    len = make_idx(buf, 0x08, 1, dims, lab, sizeof lab);
    expect_fail(1, buf, 0, "empty", "idx empty");
    expect_fail(1, buf, 3, "magic", "idx cut in magic");
    expect_fail(1, buf, 6, "ends inside the IDX header", "idx cut in dims");
    expect_fail(1, buf, len - 2, "expected 5 bytes of data, found 3", "idx truncated");
    buf[len] = 0;
    expect_fail(1, buf, len + 1, "trailing", "idx trailing");
    buf[0] = 1;
    expect_fail(1, buf, len, "not an IDX file", "idx magic");
    buf[0] = 0x1f, buf[1] = 0x8b;
    expect_fail(1, buf, len, "gzip", "idx gzip in memory");
    buf[0] = 0, buf[1] = 0, buf[2] = 0x0A;
    expect_fail(1, buf, len, "element type 0x0A", "idx type");
    buf[2] = 0x08, buf[3] = 0;
    expect_fail(1, buf, len, "0 dimensions", "idx 0-d");
    buf[3] = 5;
    expect_fail(1, buf, len, "5 dimensions", "idx 5-d");
    dims[0] = 100000, dims[1] = 100000, dims[2] = 100000;
    len = make_idx(buf, 0x08, 3, dims, NULL, 0);
    expect_fail(1, buf, len, "GiB limit", "idx too large");
    dims[0] = 0xFFFFFFFFu, dims[1] = 0xFFFFFFFFu, dims[2] = 0xFFFFFFFFu;
    len = make_idx(buf, 0x0E, 3, dims, NULL, 0);
    expect_fail(1, buf, len, "too large", "idx size overflow");
}

/* Write bytes gzip-compressed. */
static int write_gz(const char *path, const unsigned char *buf, size_t len)
{
    gzFile gz = gzopen(path, "wb");
    if (!gz) return -1;
    int n = gzwrite(gz, buf, (unsigned)len);
    return gzclose(gz) == Z_OK && n == (int)len ? 0 : -1;
}

static void test_idx_files(void)
{
    unsigned char buf[4096];
    unsigned dims[3] = {3, 10, 10};
    unsigned char pix[300];
    nk_array a;
    nk_error e;
    for (int i = 0; i < 300; i++) pix[i] = (unsigned char)(i * 7);
    size_t len = make_idx(buf, 0x08, 3, dims, pix, sizeof pix);
    const char *plain = tmp_path("img-idx3-ubyte"), *gz = tmp_path("img-idx3-ubyte.gz");
    CHECK(write_file(plain, buf, len) == 0 && write_gz(gz, buf, len) == 0, "write idx files");
    for (int k = 0; k < 2; k++) {
        const char *p = k ? gz : plain;
        CHECK(nk_idx_read(p, &a, &e) == NK_OK, "%s: %s", p, e.msg);
        CHECK(shape_is(&a, 4, 3, 10, 10, 1), "%s shape", p);
        int ok = a.data != NULL;
        for (int i = 0; ok && i < 300; i++) ok = a.data[i] == pix[i];
        CHECK(ok, "%s values", p);
        nk_array_free(&a);
    }

    /* plain file truncated or padded; gzip stream truncated, damaged, or with padded data */
    CHECK(write_file(plain, buf, len - 1) == 0, "write");
    CHECK(nk_idx_read(plain, &a, &e) == NK_ERR_INPUT && strstr(e.msg, plain) &&
              strstr(e.msg, "expected 300 bytes of data, found 299"),
          "plain truncated: %s", e.msg);
    buf[len] = 0;
    CHECK(write_file(plain, buf, len + 1) == 0, "write");
    CHECK(nk_idx_read(plain, &a, &e) == NK_ERR_INPUT && strstr(e.msg, "trailing"),
          "plain padded: %s", e.msg);
    CHECK(write_gz(gz, buf, len + 1) == 0, "write");
    CHECK(nk_idx_read(gz, &a, &e) == NK_ERR_INPUT && strstr(e.msg, "trailing"),
          "gzip padded: %s", e.msg);
    CHECK(write_gz(gz, buf, len - 10) == 0, "write");
    CHECK(nk_idx_read(gz, &a, &e) == NK_ERR_INPUT && strstr(e.msg, "expected 300 bytes of data, "
                                                                   "found 290"),
          "gzip with short data: %s", e.msg);

    CHECK(write_gz(gz, buf, len) == 0, "write");
    size_t zlen = 0;
    unsigned char *z = slurp(gz, &zlen);
    CHECK(z != NULL && zlen > 30, "reread gz");
    if (z) {
        CHECK(write_file(gz, z, zlen / 2) == 0, "write");
        nk_status st = nk_idx_read(gz, &a, &e);
        CHECK(st == NK_ERR_INPUT && strstr(e.msg, gz), "gzip cut in half: %d %s", st, e.msg);
        CHECK(write_file(gz, z, zlen - 4) == 0, "write");
        st = nk_idx_read(gz, &a, &e);
        CHECK(st == NK_ERR_INPUT, "gzip without its length trailer: %d %s", st, e.msg);
        z[zlen - 6] ^= 0x55; /* the CRC-32 */
        CHECK(write_file(gz, z, zlen) == 0, "write");
        st = nk_idx_read(gz, &a, &e);
        CHECK(st == NK_ERR_INPUT && strstr(e.msg, "gzip"), "gzip with a bad CRC: %d %s", st, e.msg);
        free(z);
    }

    /* a tiny gzip file promising a gigabyte is refused before allocating */
    dims[0] = 1000, dims[1] = 1000, dims[2] = 1000;
    len = make_idx(buf, 0x08, 3, dims, pix, sizeof pix);
    CHECK(write_gz(gz, buf, len) == 0, "write");
    CHECK(nk_idx_read(gz, &a, &e) == NK_ERR_INPUT && strstr(e.msg, "promises"),
          "gzip bomb header: %s", e.msg);

    const char *missing = tmp_path("missing-idx1-ubyte.gz");
    CHECK(nk_idx_read(missing, &a, &e) == NK_ERR_IO && strstr(e.msg, missing) &&
              strstr(e.msg, "No such file"),
          "missing: %s", e.msg);
    CHECK(nk_idx_read(tmpdir, &a, &e) == NK_ERR_IO && strstr(e.msg, "directory"),
          "directory: %s", e.msg);
}

static void test_fashion_mnist(void)
{
    nk_array a;
    nk_error e;
    const char *labels = FMNIST "train-labels-idx1-ubyte.gz";
    const char *images = FMNIST "t10k-images-idx3-ubyte.gz";
    if (access(labels, R_OK) != 0 || access(images, R_OK) != 0) {
        printf("test_io: Fashion-MNIST not installed, skipping the real-data checks\n");
        return;
    }
    CHECK(nk_idx_read(labels, &a, &e) == NK_OK, "%s", e.msg);
    CHECK(shape_is(&a, 1, 60000, 0, 0, 0), "train labels shape");
    if (a.data) {
        size_t counts[10] = {0}, bad = 0;
        for (size_t i = 0; i < nk_array_size(&a); i++) {
            double v = a.data[i];
            if (v >= 0 && v <= 9 && v == (int)v) counts[(int)v]++;
            else bad++;
        }
        int balanced = !bad;
        for (int c = 0; c < 10; c++) balanced = balanced && counts[c] == 6000;
        CHECK(balanced, "labels are not 6000 of each class 0..9 (%zu bad)", bad);
    }
    nk_array_free(&a);
    CHECK(nk_idx_read(images, &a, &e) == NK_OK, "%s", e.msg);
    CHECK(shape_is(&a, 4, 10000, 28, 28, 1), "t10k images shape");
    if (a.data) {
        double lo = 255, hi = 0;
        size_t bad = 0;
        for (size_t i = 0; i < nk_array_size(&a); i++) {
            double v = a.data[i];
            if (!(v >= 0 && v <= 255 && v == (int)v)) bad++;
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
        CHECK(!bad && lo == 0 && hi == 255, "pixel range %g..%g, %zu bad", lo, hi, bad);
    }
    nk_array_free(&a);
}

/* Read whitespace-separated doubles (Python's repr, which round-trips exactly). */
static size_t read_values(const char *path, double *v, size_t max)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    char word[64];
    if (!f) return 0;
    while (n < max && fscanf(f, "%63s", word) == 1) v[n++] = strtod(word, NULL);
    fclose(f);
    return n;
}

static void test_numpy_cross_check(void)
{
    if (access(PY, X_OK) != 0 || system(PY " -c 'import numpy' 2>/dev/null") != 0) {
        printf("test_io: %s with numpy not found, skipping the numpy cross-check\n", PY);
        return;
    }
    const char *script = tmp_path("make.py");
    FILE *f = fopen(script, "w");
    CHECK(f != NULL, "write %s", script);
    if (!f) return;
    fputs("import sys, numpy as np\n"
          "d = sys.argv[1]\n"
          "def save(name, x):\n"
          "    np.save(d + '/' + name + '.npy', x)\n"
          "    with open(d + '/' + name + '.txt', 'w') as f:\n"
          "        f.write(' '.join(repr(float(v)) for v in x.ravel(order='C')))\n"
          "rng = np.random.default_rng(7)\n"
          "save('py_f64', rng.standard_normal((7, 5)) * 10.0 ** rng.integers(-300, 300, (7, 5)))\n"
          "save('py_f32', (rng.standard_normal((3, 4, 5, 2)) * 1e3).astype(np.float32))\n"
          "save('py_u8', rng.integers(0, 256, (16, 9), dtype=np.uint8))\n"
          "save('py_i64', rng.integers(-2**40, 2**40, (6,)))\n"
          "save('py_i32', rng.integers(-2**31, 2**31, (2, 3), dtype=np.int32))\n"
          "save('py_1d', np.linspace(-1.0, 1.0, 11))\n"
          "save('py_t', np.arange(12.0).reshape(3, 4).T.copy())\n"
          "np.save(d + '/py_fortran.npy', np.asfortranarray(np.ones((3, 4))))\n"
          "np.save(d + '/py_big.npy', np.arange(3, dtype='>f8'))\n"
          "np.save(d + '/py_scalar.npy', np.float64(3.0))\n"
          "np.save(d + '/py_5d.npy', np.zeros((1, 2, 1, 2, 1)))\n",
          f);
    fclose(f);
    char cmd[512];
    snprintf(cmd, sizeof cmd, PY " %s %s", script, tmpdir);
    CHECK(system(cmd) == 0, "python failed: %s", cmd);

    const char *good[] = {"py_f64", "py_f32", "py_u8", "py_i64", "py_i32", "py_1d", "py_t"};
    static double want[512];
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
        char name[64];
        nk_array a;
        nk_error e;
        snprintf(name, sizeof name, "%s.npy", good[k]);
        CHECK(nk_npy_read(tmp_path(name), &a, &e) == NK_OK, "%s: %s", name, e.msg);
        snprintf(name, sizeof name, "%s.txt", good[k]);
        size_t n = read_values(tmp_path(name), want, 512);
        CHECK(a.data && n == nk_array_size(&a) && n > 0, "%s: %zu values", good[k], n);
        int ok = a.data != NULL;
        for (size_t i = 0; ok && i < n; i++) ok = same_bits(a.data[i], want[i]);
        CHECK(ok, "%s: values differ from numpy's", good[k]);
        if (k == 1) CHECK(shape_is(&a, 4, 3, 4, 5, 2), "py_f32 shape");
        if (k == 6) CHECK(shape_is(&a, 2, 4, 3, 0, 0), "py_t shape");
        nk_array_free(&a);
    }
    const char *bad[][2] = {{"py_fortran.npy", "ascontiguousarray"},
                            {"py_big.npy", "astype('<f8')"},
                            {"py_scalar.npy", "0 dimensions"},
                            {"py_5d.npy", "5 dimensions"}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        nk_array a;
        nk_error e;
        const char *p = tmp_path(bad[k][0]);
        CHECK(nk_npy_read(p, &a, &e) == NK_ERR_INPUT && strstr(e.msg, p) &&
                  strstr(e.msg, bad[k][1]),
              "%s: %s", p, e.msg);
    }

    /* numpy reads what nk_npy_write writes */
    nk_array a;
    nk_error e;
    size_t shape[4] = {2, 3, 2, 2};
    CHECK(nk_array_alloc(&a, 4, shape, &e) == NK_OK, "alloc");
    for (size_t i = 0; i < 24; i++) a.data[i] = ((double)i - 11.5) / 3.0;
    CHECK(nk_npy_write(tmp_path("c_f64.npy"), &a, 0, &e) == NK_OK, "%s", e.msg);
    CHECK(nk_npy_write(tmp_path("c_f32.npy"), &a, 1, &e) == NK_OK, "%s", e.msg);
    nk_array_free(&a);
    snprintf(cmd, sizeof cmd,
             PY " -c \"import numpy as np, sys; d = sys.argv[1]; "
                "x = ((np.arange(24.0) - 11.5) / 3.0).reshape(2, 3, 2, 2); "
                "a = np.load(d + '/c_f64.npy'); b = np.load(d + '/c_f32.npy'); "
                "sys.exit(not (a.dtype == np.float64 and b.dtype == np.float32 and "
                "np.array_equal(a, x) and np.array_equal(b, x.astype(np.float32))))\" %s",
             tmpdir);
    CHECK(system(cmd) == 0, "numpy does not read nk_npy_write's files back");
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/nk_test_io.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_npy_versions();
    test_npy_errors();
    test_npy_files();
    test_idx_buffers();
    test_idx_files();
    test_fashion_mnist();
    test_numpy_cross_check();

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "test_io: could not remove %s\n", tmpdir);
    return nk_test_summary("test_io");
}
