/* io.c -- arrays in and out: NumPy .npy files and IDX files (MNIST, Fashion-MNIST).
 *
 * Readers validate every number of a header before trusting it, require the data to fill
 * the rest of the file exactly, convert to float64 into a freshly allocated nk_array and
 * report problems as "FILE: [byte N: ]WHAT (HOW TO FIX)": NK_ERR_INPUT for malformed
 * content, NK_ERR_IO for files that cannot be opened, read or written, NK_ERR_NOMEM when
 * the array does not fit in memory.  On failure the output array is left empty.
 *
 * Values are assembled from bytes explicitly (not by casting the buffer), so the code is
 * independent of the host's byte order and alignment.  Non-finite values pass through
 * unchanged; the kernel layer decides what to do with them.
 */
#include "nkern.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* A .npy file starts with a 6-byte magic, a major and a minor version byte, and the header
 * length: 2 bytes little-endian in version 1.0, 4 bytes in 2.0 and 3.0 (3.0 only allows
 * UTF-8 in the header, which changes nothing for the keys read here). */
static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
/* numpy's own headers are about a hundred bytes; anything this long is a corrupt length. */
#define NPY_MAX_HEADER ((size_t)1 << 20)
/* numpy aligns the start of the data to 64 bytes so the file can be memory-mapped. */
#define NPY_ALIGN 64
/* An IDX header may promise at most this much data: a tiny gzip file cannot make us
 * allocate or inflate without bound. */
#define IDX_MAX_DATA ((uint64_t)16 << 30)
/* deflate compresses at most about 1032:1, so a gzip file of S bytes inflates to less than
 * this factor times S (plus a little for headers). */
#define GZIP_MAX_RATIO 1100u
/* Bytes converted per read or write call. */
#define IO_CHUNK 65536

#define NPY_FIX "write the file with numpy.save"
#define IDX_FIX "the file is damaged; download it again"

/* Element type of a file's data: kind 'u' (unsigned), 'i' (two's complement) or 'f'
 * (IEEE 754 binary32/binary64), size in bytes, byte order. */
typedef struct {
    char kind;
    size_t size;
    int big_endian;
} elem_type;

/* Where a file's array lives and what it holds; shape is the file's own. */
typedef struct {
    elem_type type;
    int ndim;
    size_t shape[4];
    size_t count;       /* number of elements */
    size_t data_offset; /* file offset of the first data byte */
    size_t data_bytes;  /* count * type.size */
} data_layout;

/* A byte source for the streaming readers: a stdio file or a zlib stream. */
typedef struct {
    FILE *f;
    gzFile gz;
    int failed; /* a read failed (as opposed to reaching the end of the data) */
} byte_reader;

static nk_status fail_at(nk_error *err, const char *name, size_t offset, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* "NAME: byte OFFSET: WHAT (HOW TO FIX)" with NK_ERR_INPUT: malformed content. */
static nk_status fail_at(nk_error *err, const char *name, size_t offset, const char *fmt, ...)
{
    char what[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return nk_fail(err, NK_ERR_INPUT, "%s: byte %zu: %s", name, offset, what);
}

/* Copy text from a file into a message: printable ASCII only, at most 32 characters. */
static void safe_text(const unsigned char *s, size_t n, char *out, size_t outn)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 4 < outn; i++) {
        if (i == 32) {
            memcpy(out + k, "...", 3);
            k += 3;
            break;
        }
        out[k++] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
    }
    out[k] = '\0';
}

/* Python's repr of a shape tuple: "(5,)", "(2, 3)". */
static void shape_text(int ndim, const size_t *shape, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%zu", i ? ", " : "", shape[i]);
    if (k < n) snprintf(buf + k, n - k, ndim == 1 ? ",)" : ")");
}

/* An unsigned integer of `size` bytes in the given byte order. */
static uint64_t load_uint(const unsigned char *p, size_t size, int big_endian)
{
    uint64_t v = 0;
    for (size_t i = 0; i < size; i++) v = (v << 8) | p[big_endian ? i : size - 1 - i];
    return v;
}

/* Convert `count` stored elements of type t to float64.  Integers wider than 53 bits round
 * to the nearest double. */
static void convert_elements(const unsigned char *src, size_t count, elem_type t, double *dst)
{
    const uint16_t probe = 1;
    int host_little = *(const unsigned char *)&probe == 1;
    /* little-endian float64 on a little-endian host is already in place: the common case,
     * and several times faster than assembling bytes */
    if (host_little && t.kind == 'f' && t.size == 8 && !t.big_endian) {
        if (count) memcpy(dst, src, count * sizeof *dst);
        return;
    }
    for (size_t i = 0; i < count; i++, src += t.size) {
        uint64_t u = load_uint(src, t.size, t.big_endian);
        if (t.kind == 'u') {
            dst[i] = (double)u;
        } else if (t.kind == 'i') {
            int64_t v;
            if (t.size < 8 && (u >> (8 * t.size - 1)) & 1) u |= ~(uint64_t)0 << (8 * t.size);
            memcpy(&v, &u, sizeof v); /* two's complement bit pattern, no overflow */
            dst[i] = (double)v;
        } else if (t.size == 4) {
            uint32_t w = (uint32_t)u;
            float f;
            memcpy(&f, &w, sizeof f);
            dst[i] = f;
        } else {
            memcpy(&dst[i], &u, sizeof dst[i]);
        }
    }
}

/* Read up to n bytes; short only at the end of the data or on failure (then r->failed). */
static size_t reader_read(byte_reader *r, void *buf, size_t n)
{
    if (r->f) {
        size_t got = fread(buf, 1, n, r->f);
        if (got < n && ferror(r->f)) r->failed = 1;
        return got;
    }
    size_t total = 0;
    while (total < n) {
        size_t want = n - total < IO_CHUNK ? n - total : IO_CHUNK; /* gzread takes an int */
        int got = gzread(r->gz, (unsigned char *)buf + total, (unsigned)want);
        if (got < 0) {
            r->failed = 1;
            break;
        }
        if (got == 0) break;
        total += (size_t)got;
    }
    return total;
}

/* Read and convert `count` elements into dst; returns the number of bytes read, which is
 * short of count * t.size when the data ends early or a read fails. */
static size_t read_elements(byte_reader *r, elem_type t, size_t count, double *dst)
{
    unsigned char chunk[IO_CHUNK];
    size_t per_chunk = sizeof chunk / t.size, done = 0, bytes = 0;
    while (done < count) {
        size_t want = count - done < per_chunk ? count - done : per_chunk;
        size_t got = reader_read(r, chunk, want * t.size);
        convert_elements(chunk, got / t.size, t, dst + done);
        bytes += got;
        done += got / t.size;
        if (got < want * t.size) break;
    }
    return bytes;
}

/* Element count and data size of a layout, refusing shapes whose byte size overflows even
 * when a zero dimension makes the array empty (later code multiplies dimensions freely). */
static nk_status layout_size(data_layout *l, const char *name, size_t offset, const char *fix,
                             nk_error *err)
{
    size_t bytes = l->type.size;
    int empty = 0;
    for (int i = 0; i < l->ndim; i++) {
        if (l->shape[i] == 0) {
            empty = 1;
            continue;
        }
        if (bytes > SIZE_MAX / l->shape[i]) {
            char sh[128];
            shape_text(l->ndim, l->shape, sh, sizeof sh);
            return fail_at(err, name, offset,
                           "shape %s of %zu-byte elements is too large to address "
                           "(the header is corrupt; %s)",
                           sh, l->type.size, fix);
        }
        bytes *= l->shape[i];
    }
    l->data_bytes = empty ? 0 : bytes;
    l->count = l->data_bytes / l->type.size;
    return NK_OK;
}

/* The data after the header must be exactly data_bytes long.  found_at_least: found is a
 * lower bound (a stream that had more bytes than expected). */
static nk_status layout_check_length(const data_layout *l, const char *name, size_t found,
                                     int found_at_least, const char *fix, nk_error *err)
{
    char sh[128];
    if (found == l->data_bytes && !found_at_least) return NK_OK;
    shape_text(l->ndim, l->shape, sh, sizeof sh);
    if (found < l->data_bytes)
        return nk_fail(err, NK_ERR_INPUT,
                       "%s: expected %zu bytes of data, found %zu: the file is truncated (shape "
                       "%s of %zu-byte elements after the header at byte %zu; %s)",
                       name, l->data_bytes, found, sh, l->type.size, l->data_offset, fix);
    return nk_fail(err, NK_ERR_INPUT,
                   "%s: expected %zu bytes of data, found %s%zu: trailing bytes after the array "
                   "(shape %s of %zu-byte elements after the header at byte %zu; %s)",
                   name, l->data_bytes, found_at_least ? "at least " : "", found, sh,
                   l->type.size, l->data_offset, fix);
}

/* Allocate the float64 output; IDX images (N, H, W) get a channel axis: (N, H, W, 1). */
static nk_status layout_alloc(const data_layout *l, int add_channel, const char *name,
                              nk_array *out, nk_error *err)
{
    size_t shape[4] = {0, 0, 0, 1};
    int ndim = l->ndim;
    memcpy(shape, l->shape, (size_t)ndim * sizeof shape[0]);
    if (add_channel && ndim == 3) ndim = 4;
    if (nk_array_alloc(out, ndim, shape, NULL) != NK_OK) {
        char sh[128];
        shape_text(ndim, shape, sh, sizeof sh);
        return nk_fail(err, NK_ERR_NOMEM,
                       "%s: cannot allocate %zu float64 values for shape %s (not enough "
                       "memory; use fewer samples)",
                       name, l->count, sh);
    }
    return NK_OK;
}

/* ------------------------------------------------------------------ .npy ---- */

/* Check the magic and version and find the header: it occupies bytes
 * [*header_start, *header_start + *header_len). */
static nk_status npy_preamble(const unsigned char *buf, size_t len, const char *name,
                              size_t *header_start, size_t *header_len, nk_error *err)
{
    if (len == 0) return fail_at(err, name, 0, "the file is empty (" NPY_FIX ")");
    if (len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b)
        return fail_at(err, name, 0, "the file is gzip-compressed (decompress it with gunzip)");
    if (len >= 2 && buf[0] == 'P' && buf[1] == 'K')
        return fail_at(err, name, 0,
                       "the file is a zip archive such as a .npz (load it with numpy.load and "
                       "save the array you need with numpy.save)");
    if (memcmp(buf, npy_magic, len < 6 ? len : 6) != 0)
        return fail_at(err, name, 0,
                       "not a .npy file: it does not start with \\x93NUMPY (" NPY_FIX ")");
    if (len < 10)
        return fail_at(err, name, len,
                       "the file ends inside the 10-byte .npy preamble (the file is truncated; "
                       NPY_FIX ")");
    if (buf[6] < 1 || buf[6] > 3 || buf[7] != 0)
        return fail_at(err, name, 6,
                       "unsupported .npy format version %d.%d (nkern reads 1.0, 2.0 and 3.0; "
                       NPY_FIX ")",
                       buf[6], buf[7]);
    if (buf[6] == 1) {
        *header_start = 10;
        *header_len = (size_t)load_uint(buf + 8, 2, 0);
    } else {
        if (len < 12)
            return fail_at(err, name, len,
                           "the file ends inside the 12-byte .npy preamble (the file is "
                           "truncated; " NPY_FIX ")");
        *header_start = 12;
        *header_len = (size_t)load_uint(buf + 8, 4, 0);
    }
    if (*header_len == 0)
        return fail_at(err, name, 8, "the header length is 0 (" NPY_FIX ")");
    if (*header_len > NPY_MAX_HEADER)
        return fail_at(err, name, 8,
                       "header length %zu is implausibly large (the file is corrupt; " NPY_FIX ")",
                       *header_len);
    return NK_OK;
}

/* A parse position in the header dict; base is the file offset of s[0]. */
typedef struct {
    const unsigned char *s;
    size_t n, i, base;
    const char *name;
    nk_error *err;
} hdr_cursor;

static nk_status hdr_fail(const hdr_cursor *c, size_t i, const char *what)
{
    return fail_at(c->err, c->name, c->base + i, "%s", what);
}

static int hdr_peek(const hdr_cursor *c)
{
    return c->i < c->n ? c->s[c->i] : -1;
}

static void hdr_skip_space(hdr_cursor *c)
{
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n' ||
                           c->s[c->i] == '\r'))
        c->i++;
}

static int is_digit(int ch)
{
    return ch >= '0' && ch <= '9';
}

static int is_word_char(int ch)
{
    return is_digit(ch) || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

/* A Python string literal in single or double quotes; numpy never writes escapes. */
static nk_status hdr_string(hdr_cursor *c, size_t *start, size_t *len, const char *what)
{
    int quote = hdr_peek(c);
    size_t open = c->i;
    if (quote != '\'' && quote != '"') return hdr_fail(c, c->i, what);
    for (c->i++; c->i < c->n && c->s[c->i] != quote; c->i++) {
        if (c->s[c->i] == '\\' || c->s[c->i] == '\n')
            return hdr_fail(c, c->i,
                            "escape sequences and line breaks in header strings are not "
                            "supported (" NPY_FIX ")");
    }
    if (c->i >= c->n) return hdr_fail(c, open, "unterminated string in the header (" NPY_FIX ")");
    *start = open + 1;
    *len = c->i - open - 1;
    c->i++;
    return NK_OK;
}

/* The Python keyword w, not followed by more identifier characters. */
static int hdr_word(hdr_cursor *c, const char *w)
{
    size_t k = strlen(w);
    if (c->n - c->i < k || memcmp(c->s + c->i, w, k) != 0) return 0;
    if (c->i + k < c->n && is_word_char(c->s[c->i + k])) return 0;
    c->i += k;
    return 1;
}

/* A tuple of non-negative integers: "()", "(5,)", "(2, 3)", "(2L, 3L)" (Python 2's long
 * literals, as old numpy versions wrote them).  "(5)" is an int in Python, not a tuple. */
static nk_status hdr_shape(hdr_cursor *c, int *ndim, size_t shape[4])
{
    size_t open = c->i;
    int count = 0, comma = 0;
    if (hdr_peek(c) != '(')
        return hdr_fail(c, c->i, "'shape' must be a tuple such as (60000, 784) (" NPY_FIX ")");
    c->i++;
    for (;;) {
        hdr_skip_space(c);
        int ch = hdr_peek(c);
        if (ch == ')') {
            c->i++;
            break;
        }
        if (count > 0 && !comma)
            return hdr_fail(c, c->i, "expected ',' or ')' in the shape tuple (" NPY_FIX ")");
        if (ch == '-') return hdr_fail(c, c->i, "negative dimension in 'shape' (" NPY_FIX ")");
        if (!is_digit(ch))
            return hdr_fail(c, c->i,
                            "expected a dimension (a non-negative integer) or ')' in 'shape' "
                            "(" NPY_FIX ")");
        size_t v = 0, at = c->i;
        while (c->i < c->n && is_digit(c->s[c->i])) {
            size_t d = (size_t)(c->s[c->i] - '0');
            if (v > (SIZE_MAX - d) / 10)
                return hdr_fail(c, at,
                                "a dimension in 'shape' is too large (the header is corrupt; "
                                NPY_FIX ")");
            v = v * 10 + d;
            c->i++;
        }
        if (hdr_peek(c) == 'L' || hdr_peek(c) == 'l') c->i++;
        if (count < 4) shape[count] = v;
        count++;
        hdr_skip_space(c);
        comma = hdr_peek(c) == ',';
        if (comma) c->i++;
    }
    if (count == 1 && !comma)
        return hdr_fail(c, open,
                        "'shape' (N) is a number, not a tuple; a 1-d shape is written (N,) "
                        "(" NPY_FIX ")");
    *ndim = count;
    return NK_OK;
}

/* Map a descr string such as '<f8' to an element type. */
static nk_status npy_descr(const unsigned char *s, size_t len, const char *name, size_t offset,
                           elem_type *t, nk_error *err)
{
    char shown[48];
    int order = len == 3 ? s[0] : 0, kind = len == 3 ? s[1] : 0;
    size_t size = len == 3 && s[2] >= '1' && s[2] <= '8' ? (size_t)(s[2] - '0') : 0;
    int sized = size == 1 || size == 2 || size == 4 || size == 8;
    int known = (kind == 'f' && (size == 4 || size == 8)) ||
                ((kind == 'u' || kind == 'i') && sized);
    safe_text(s, len, shown, sizeof shown);
    /* A single byte has no byte order: numpy writes '|u1', other writers '<u1'. */
    if (known && order == '>' && size > 1)
        return fail_at(err, name, offset,
                       "big-endian dtype '%s' is not supported (convert with x.astype('<%c%zu') "
                       "before numpy.save)",
                       shown, kind, size);
    if (!known || !(order == '<' || (size == 1 && (order == '|' || order == '>'))))
        return fail_at(err, name, offset,
                       "unsupported dtype '%s' (nkern reads float64 '<f8', float32 '<f4', uint8 "
                       "'|u1' and little-endian integers; convert with x.astype(numpy.float64) "
                       "before numpy.save)",
                       shown);
    t->kind = (char)kind;
    t->size = size;
    t->big_endian = 0;
    return NK_OK;
}

/* Parse and check the preamble and header dict of buf[0..len): fills the layout.  The
 * header is a Python dict literal with exactly the keys 'descr', 'fortran_order' and
 * 'shape' in any order, e.g. "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
 * padded with spaces and ended by '\n'. */
static nk_status npy_header(const unsigned char *buf, size_t len, const char *name,
                            data_layout *l, nk_error *err)
{
    size_t start = 0, hlen = 0;
    nk_status st = npy_preamble(buf, len, name, &start, &hlen, err);
    if (st != NK_OK) return st;
    if (hlen > len - start)
        return fail_at(err, name, 8,
                       "header length %zu runs past the end of the file (%zu bytes) (the file is "
                       "truncated; " NPY_FIX ")",
                       hlen, len);

    hdr_cursor c = {buf + start, hlen, 0, start, name, err};
    size_t descr_at = 0, descr_len = 0, descr_value = 0, fortran_at = 0, shape_at = 0;
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
    hdr_skip_space(&c);
    if (hdr_peek(&c) != '{')
        return hdr_fail(&c, c.i, "header is not a Python dict literal (" NPY_FIX ")");
    c.i++;
    for (;;) {
        size_t key, key_len, key_at;
        hdr_skip_space(&c);
        if (hdr_peek(&c) == '}') break;
        key_at = c.i;
        st = hdr_string(&c, &key, &key_len,
                        "expected a quoted key such as 'descr' or '}' in the header dict "
                        "(" NPY_FIX ")");
        if (st != NK_OK) return st;
        hdr_skip_space(&c);
        if (hdr_peek(&c) != ':')
            return hdr_fail(&c, c.i, "expected ':' after a key in the header dict (" NPY_FIX ")");
        c.i++;
        hdr_skip_space(&c);

        const unsigned char *k = c.s + key;
        int *seen = key_len == 5 && !memcmp(k, "descr", 5)           ? &have_descr
                    : key_len == 13 && !memcmp(k, "fortran_order", 13) ? &have_fortran
                    : key_len == 5 && !memcmp(k, "shape", 5)           ? &have_shape
                                                                       : NULL;
        if (!seen) {
            char shown[48];
            safe_text(k, key_len, shown, sizeof shown);
            return fail_at(err, name, start + key_at,
                           "unknown key '%s' in the header (a .npy header has only 'descr', "
                           "'fortran_order' and 'shape'; " NPY_FIX ")",
                           shown);
        }
        if (*seen) return hdr_fail(&c, key_at, "duplicate key in the header dict (" NPY_FIX ")");
        *seen = 1;

        if (seen == &have_descr) {
            descr_at = c.i;
            if (hdr_peek(&c) == '[')
                return hdr_fail(&c, c.i,
                                "structured dtypes (records with named fields) are not "
                                "supported (save a plain numeric array, e.g. "
                                "x.astype(numpy.float64))");
            st = hdr_string(&c, &descr_value, &descr_len,
                            "'descr' must be a quoted dtype such as '<f8' (" NPY_FIX ")");
        } else if (seen == &have_fortran) {
            fortran_at = c.i;
            if (hdr_word(&c, "True")) fortran = 1;
            else if (!hdr_word(&c, "False"))
                st = hdr_fail(&c, c.i, "'fortran_order' must be True or False (" NPY_FIX ")");
        } else {
            shape_at = c.i;
            st = hdr_shape(&c, &l->ndim, l->shape);
        }
        if (st != NK_OK) return st;

        hdr_skip_space(&c);
        if (hdr_peek(&c) == ',') c.i++;
        else if (hdr_peek(&c) != '}')
            return hdr_fail(&c, c.i, "expected ',' or '}' in the header dict (" NPY_FIX ")");
    }
    c.i++;
    hdr_skip_space(&c);
    if (c.i != c.n)
        return hdr_fail(&c, c.i, "unexpected text after the header dict (" NPY_FIX ")");
    if (!have_descr || !have_fortran || !have_shape)
        return fail_at(err, name, start, "the header dict lacks the key '%s' (" NPY_FIX ")",
                       !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");

    st = npy_descr(c.s + descr_value, descr_len, name, start + descr_at, &l->type, err);
    if (st != NK_OK) return st;
    if (fortran)
        return fail_at(err, name, start + fortran_at,
                       "Fortran-order (column-major) arrays are not supported (save "
                       "numpy.ascontiguousarray(x) instead)");
    if (l->ndim < 1 || l->ndim > 4)
        return fail_at(err, name, start + shape_at,
                       "the array has %d dimensions; nkern reads 1 to 4 (%s)", l->ndim,
                       l->ndim < 1 ? "save numpy.atleast_1d(x)" : "reshape it before numpy.save");
    l->data_offset = start + hlen;
    return layout_size(l, name, start + shape_at, NPY_FIX, err);
}

typedef nk_status (*header_fn)(const unsigned char *, size_t, const char *, data_layout *, nk_error *);

/* A whole file already in memory: header, length check, conversion to float64.  `image_axis`
 * asks layout_alloc for the trailing channel axis of IDX images. */
static nk_status parse_buffer(const unsigned char *buf, size_t len, const char *name, nk_array *out,
                              nk_error *err, header_fn header, const char *fix, int image_axis)
{
    data_layout l;
    nk_status st;
    if (!name) name = "<memory>";
    if (!out) return nk_fail(err, NK_ERR_INPUT, "%s: no output array (pass an nk_array)", name);
    memset(out, 0, sizeof *out);
    if (!buf && len) return nk_fail(err, NK_ERR_INPUT, "%s: no data (pass a buffer)", name);
    memset(&l, 0, sizeof l);
    st = header(buf, len, name, &l, err);
    if (st == NK_OK) st = layout_check_length(&l, name, len - l.data_offset, 0, fix, err);
    if (st == NK_OK) st = layout_alloc(&l, image_axis, name, out, err);
    if (st == NK_OK) convert_elements(buf + l.data_offset, l.count, l.type, out->data);
    return st;
}

nk_status nk_npy_parse(const unsigned char *buf, size_t len, const char *name, nk_array *out,
                       nk_error *err)
{
    return parse_buffer(buf, len, name, out, err, npy_header, NPY_FIX, 0);
}

nk_status nk_npy_read(const char *path, nk_array *out, nk_error *err)
{
    nk_status st = NK_OK;
    FILE *f = NULL;
    unsigned char *head = NULL;
    unsigned char pre[12];
    byte_reader r = {0};
    data_layout l;
    struct stat sb;
    int regular = 0;
    size_t got, start = 0, hlen = 0, total;

    if (!path || !out) return nk_fail(err, NK_ERR_INPUT, "nk_npy_read: path and out are required");
    memset(out, 0, sizeof *out);
    memset(&l, 0, sizeof l);
    f = fopen(path, "rb");
    if (!f) {
        st = nk_fail(err, NK_ERR_IO, "%s: cannot open: %s (check the path and permissions)",
                     path, strerror(errno));
        goto done;
    }
    if (fstat(fileno(f), &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) {
            st = nk_fail(err, NK_ERR_IO, "%s: is a directory (give a .npy file)", path);
            goto done;
        }
        regular = S_ISREG(sb.st_mode);
    }
    /* Read exactly the preamble, so that every later byte belongs to the header. */
    got = fread(pre, 1, 10, f);
    if (got == 10 && (pre[6] == 2 || pre[6] == 3)) got += fread(pre + 10, 1, 2, f);
    if (ferror(f)) goto read_error;
    st = npy_preamble(pre, got, path, &start, &hlen, err);
    if (st != NK_OK) goto done;
    total = start + hlen;
    head = malloc(total);
    if (!head) {
        st = nk_fail(err, NK_ERR_NOMEM, "%s: cannot allocate %zu bytes for the header (not "
                     "enough memory)", path, total);
        goto done;
    }
    memcpy(head, pre, got);
    got += fread(head + got, 1, total - got, f);
    if (ferror(f)) goto read_error;
    st = npy_header(head, got, path, &l, err);
    if (st != NK_OK) goto done;
    /* A regular file's size tells at once whether the data fits, before any allocation. */
    if (regular && (uintmax_t)sb.st_size >= total) {
        uintmax_t rest = (uintmax_t)sb.st_size - total;
        size_t found = rest > SIZE_MAX ? SIZE_MAX : (size_t)rest;
        st = layout_check_length(&l, path, found, rest > SIZE_MAX, NPY_FIX, err);
        if (st != NK_OK) goto done;
    }
    st = layout_alloc(&l, 0, path, out, err);
    if (st != NK_OK) goto done;
    r.f = f;
    got = read_elements(&r, l.type, l.count, out->data);
    if (r.failed) goto read_error;
    if (got < l.data_bytes) {
        st = layout_check_length(&l, path, got, 0, NPY_FIX, err);
        goto done;
    }
    if (fgetc(f) != EOF) {
        st = layout_check_length(&l, path, got + 1, 1, NPY_FIX, err);
        goto done;
    }
    if (ferror(f)) goto read_error;
    goto done;

read_error:
    st = nk_fail(err, NK_ERR_IO, "%s: cannot read: %s (check the file and the disk)", path,
                 strerror(errno));
done:
    if (f) fclose(f);
    free(head);
    if (st != NK_OK) nk_array_free(out);
    return st;
}

/* Store v in `size` bytes, little-endian. */
static void store_le(unsigned char *p, uint64_t v, size_t size)
{
    for (size_t i = 0; i < size; i++, v >>= 8) p[i] = (unsigned char)(v & 0xff);
}

size_t nk_npy_header(int ndim, const size_t *shape, int as_f32, unsigned char head[512], size_t *len)
{
    char dict[256], sh[128];
    size_t pre = 10, hlen;
    shape_text(ndim, shape, sh, sizeof sh);
    int dict_len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                            as_f32 ? "<f4" : "<f8", sh);
    /* Header = dict, spaces, '\n', so that the data starts at a multiple of 64 bytes.
     * Version 1.0 stores the header length in 2 bytes; longer headers need 2.0. */
    hlen = ((pre + (size_t)dict_len + 1 + NPY_ALIGN - 1) / NPY_ALIGN) * NPY_ALIGN - pre;
    if (hlen > 0xffff) {
        pre = 12;
        hlen = ((pre + (size_t)dict_len + 1 + NPY_ALIGN - 1) / NPY_ALIGN) * NPY_ALIGN - pre;
    }
    memcpy(head, npy_magic, sizeof npy_magic);
    head[6] = pre == 10 ? 1 : 2;
    head[7] = 0;
    store_le(head + 8, hlen, pre - 8);
    memcpy(head + pre, dict, (size_t)dict_len);
    memset(head + pre + dict_len, ' ', hlen - (size_t)dict_len - 1);
    head[pre + hlen - 1] = '\n';
    *len = pre + hlen;
    return *len;
}

static nk_status write_npy(const char *path, const char *file, const nk_array *a, int as_f32, nk_error *err);

nk_status nk_npy_write(const char *path, const nk_array *a, int as_f32, nk_error *err)
{
    if (!path || !a) return nk_fail(err, NK_ERR_INPUT, "nk_npy_write: path and array are required");
    size_t tmp_len = strlen(path) + 32;
    char *tmp = malloc(tmp_len);
    if (!tmp) return nk_fail(err, NK_ERR_NOMEM, "%s: cannot allocate a file name", path);
    snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());
    nk_status st = write_npy(path, tmp, a, as_f32, err);
    if (st == NK_OK && rename(tmp, path) != 0) {
        st = nk_fail(err, NK_ERR_IO, "%s: cannot rename %s to it: %s (check the path)", path, tmp, strerror(errno));
        remove(tmp);
    }
    free(tmp);
    return st;
}

/* Write a to the file `file`; messages name `path` (the name the file will have). */
static nk_status write_npy(const char *path, const char *file, const nk_array *a, int as_f32, nk_error *err)
{
    nk_status st = NK_OK;
    FILE *f = NULL;
    unsigned char head[512];
    unsigned char chunk[IO_CHUNK];
    size_t count, itemsize = as_f32 ? 4 : 8, pre, done;

    if (!path || !file || !a) return nk_fail(err, NK_ERR_INPUT, "nk_npy_write: path and array are required");
    if (a->ndim < 1 || a->ndim > 4)
        return nk_fail(err, NK_ERR_INPUT,
                       "%s: cannot write an array of %d dimensions (nkern arrays have 1 to 4)",
                       path, a->ndim);
    count = nk_array_size(a);
    if (count && !a->data)
        return nk_fail(err, NK_ERR_INPUT, "%s: the array has no data (allocate it first)", path);

    if (as_f32)
        /* a value beyond float32's range would be written as Inf: refuse before any file exists */
        for (size_t i = 0; i < count; i++)
            if (isfinite(a->data[i]) && fabs(a->data[i]) > FLT_MAX) {
                size_t cols = a->ndim > 1 ? count / a->shape[0] : count;
                return nk_fail(err, NK_ERR_NONFINITE,
                               "%s: entry %zu (row %zu, column %zu) is %g, beyond float32's range +-%g (write "
                               "float64: drop --f32)", path, i, a->ndim > 1 ? i / cols : 0, a->ndim > 1 ? i % cols : i,
                               a->data[i], (double)FLT_MAX);
            }
    nk_npy_header(a->ndim, a->shape, as_f32, head, &pre);  /* pre: the header's bytes */

    f = fopen(file, "wb");
    if (!f) {
        st = nk_fail(err, NK_ERR_IO, "%s: cannot create %s: %s (check that the directory exists and is writable)", path,
                     file, strerror(errno));
        goto done;
    }
    if (fwrite(head, 1, pre, f) != pre) goto write_error;
    for (done = 0; done < count;) {
        size_t n = count - done < sizeof chunk / itemsize ? count - done : sizeof chunk / itemsize;
        for (size_t i = 0; i < n; i++) {
            double x = a->data[done + i];
            if (as_f32) {
                float y = (float)x;
                uint32_t w;
                memcpy(&w, &y, sizeof w);
                store_le(chunk + 4 * i, w, 4);
            } else {
                uint64_t w;
                memcpy(&w, &x, sizeof w);
                store_le(chunk + 8 * i, w, 8);
            }
        }
        if (fwrite(chunk, itemsize, n, f) != n) goto write_error;
        done += n;
    }
    /* fsync so that the rename never exposes a file whose data is not on disk yet; devices
     * that cannot sync (EINVAL) are fine. */
    if (fflush(f) != 0) goto write_error;
    if (fsync(fileno(f)) != 0 && errno != EINVAL) goto write_error;
    if (fclose(f) != 0) {
        f = NULL;
        goto write_error;
    }
    f = NULL;
    goto done;

write_error:
    st = nk_fail(err, NK_ERR_IO, "%s: cannot write %s: %s (check free disk space)", path, file, strerror(errno));
    remove(file);
done:
    if (f) {
        fclose(f);
        if (st != NK_OK) remove(file);
    }
    return st;
}

nk_status nk_npy_write_file(const char *path, const nk_array *a, int as_f32, nk_error *err)
{
    return write_npy(path, path, a, as_f32, err);
}

/* ------------------------------------------------------------------- IDX ---- */

/* IDX: bytes 0 and 1 are zero, byte 2 the element type, byte 3 the number of dimensions;
 * then one 4-byte big-endian size per dimension, then the elements, big-endian, C order. */
static nk_status idx_magic(const unsigned char *buf, size_t len, const char *name,
                           data_layout *l, nk_error *err)
{
    static const struct {
        unsigned char code;
        char kind;
        size_t size;
    } types[] = {{0x08, 'u', 1}, {0x09, 'i', 1}, {0x0B, 'i', 2},
                 {0x0C, 'i', 4}, {0x0D, 'f', 4}, {0x0E, 'f', 8}};
    const char *fix = "expected an MNIST-style file such as train-images-idx3-ubyte.gz";
    size_t k;
    if (len == 0) return fail_at(err, name, 0, "the file is empty (%s)", fix);
    if (len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b)
        return fail_at(err, name, 0,
                       "gzip-compressed data (decompress it first, or read the file with "
                       "nk_idx_read)");
    if (buf[0] != 0 || (len >= 2 && buf[1] != 0))
        return fail_at(err, name, 0,
                       "not an IDX file: it does not start with two zero bytes (%s)", fix);
    if (len < 4)
        return fail_at(err, name, len,
                       "the file ends inside the 4-byte IDX magic number (the file is truncated)");
    for (k = 0; k < sizeof types / sizeof types[0] && types[k].code != buf[2]; k++) continue;
    if (k == sizeof types / sizeof types[0])
        return fail_at(err, name, 2,
                       "unknown IDX element type 0x%02X (expected 0x08 ubyte, 0x09 byte, 0x0B "
                       "short, 0x0C int, 0x0D float or 0x0E double; %s)",
                       buf[2], fix);
    if (buf[3] < 1 || buf[3] > 4)
        return fail_at(err, name, 3, "the IDX file has %d dimensions; nkern reads 1 to 4 (%s)",
                       buf[3], fix);
    l->type.kind = types[k].kind;
    l->type.size = types[k].size;
    l->type.big_endian = 1;
    l->ndim = buf[3];
    l->data_offset = 4 + 4 * (size_t)l->ndim;
    return NK_OK;
}

/* Parse the magic and the dimensions from buf[0..len). */
static nk_status idx_header(const unsigned char *buf, size_t len, const char *name,
                            data_layout *l, nk_error *err)
{
    nk_status st = idx_magic(buf, len, name, l, err);
    if (st != NK_OK) return st;
    if (len < l->data_offset)
        return fail_at(err, name, len,
                       "the file ends inside the IDX header (%d dimensions need %zu header "
                       "bytes; the file is truncated)",
                       l->ndim, l->data_offset);
    for (int i = 0; i < l->ndim; i++) l->shape[i] = (size_t)load_uint(buf + 4 + 4 * i, 4, 1);
    st = layout_size(l, name, 4, IDX_FIX, err);
    if (st != NK_OK) return st;
    if ((uint64_t)l->data_bytes > IDX_MAX_DATA)
        return fail_at(err, name, 4,
                       "the header promises %zu bytes of data, more than the %llu GiB limit (the "
                       "file is corrupt, or split it into smaller files)",
                       l->data_bytes, (unsigned long long)(IDX_MAX_DATA >> 30));
    return NK_OK;
}

nk_status nk_idx_parse(const unsigned char *buf, size_t len, const char *name, nk_array *out,
                       nk_error *err)
{
    return parse_buffer(buf, len, name, out, err, idx_header, IDX_FIX, 1);
}

/* Status for a failed or short gzread: an I/O error, or damaged compressed data. */
static nk_status gz_failure(gzFile gz, const char *path, nk_error *err)
{
    int code = Z_OK;
    const char *msg = gzerror(gz, &code);
    if (code == Z_ERRNO)
        return nk_fail(err, NK_ERR_IO, "%s: cannot read: %s (check the file and the disk)", path,
                       strerror(errno));
    if (code == Z_MEM_ERROR)
        return nk_fail(err, NK_ERR_NOMEM, "%s: out of memory while decompressing", path);
    return nk_fail(err, NK_ERR_INPUT, "%s: damaged gzip data: %s (download the file again)", path,
                   msg);
}

nk_status nk_idx_read(const char *path, nk_array *out, nk_error *err)
{
    nk_status st = NK_OK;
    byte_reader r = {0};
    data_layout l;
    struct stat sb;
    unsigned char head[4 + 4 * 4];
        size_t got;
    int code = Z_OK;

    if (!path || !out) return nk_fail(err, NK_ERR_INPUT, "nk_idx_read: path and out are required");
    memset(out, 0, sizeof *out);
    memset(&l, 0, sizeof l);
    if (stat(path, &sb) != 0) {
        st = nk_fail(err, NK_ERR_IO, "%s: cannot open: %s (check the path and permissions)",
                     path, strerror(errno));
        goto done;
    }
    if (S_ISDIR(sb.st_mode)) {
        st = nk_fail(err, NK_ERR_IO, "%s: is a directory (give an IDX file)", path);
        goto done;
    }
    /* gzread passes files that are not gzip through unchanged, so one path reads both. */
    errno = 0;
    r.gz = gzopen(path, "rb");
    if (!r.gz) {
        st = nk_fail(err, NK_ERR_IO, "%s: cannot open: %s (check the path and permissions)",
                     path, errno ? strerror(errno) : "out of memory");
        goto done;
    }
    gzbuffer(r.gz, 1u << 17);
    got = reader_read(&r, head, 4);
    if (r.failed) goto gz_error;
    st = idx_magic(head, got, path, &l, err);
    if (st != NK_OK) goto done;
    got += reader_read(&r, head + 4, l.data_offset - 4);
    if (r.failed) goto gz_error;
    st = idx_header(head, got, path, &l, err);
    if (st != NK_OK) goto done;
    /* Before allocating: a plain file must hold the data exactly; a gzip file must at least
     * be able to inflate to that much. */
    if (S_ISREG(sb.st_mode)) {
        uintmax_t size = (uintmax_t)sb.st_size;
        if (gzdirect(r.gz)) {
            size_t found = size > l.data_offset ? (size_t)(size - l.data_offset) : 0;
            st = layout_check_length(&l, path, found, 0, IDX_FIX, err);
            if (st != NK_OK) goto done;
        } else if ((uintmax_t)l.data_bytes / GZIP_MAX_RATIO > size + 4096) {
            st = nk_fail(err, NK_ERR_INPUT,
                         "%s: the header promises %zu bytes of data, more than %ju compressed "
                         "bytes can hold (the file is truncated or damaged; download it again)",
                         path, l.data_bytes, size);
            goto done;
        }
    }
    st = layout_alloc(&l, 1, path, out, err);
    if (st != NK_OK) goto done;
    got = read_elements(&r, l.type, l.count, out->data);
    if (r.failed) goto gz_error;
    if (got < l.data_bytes) {
        /* A short read is the end of the data, possibly a gzip stream cut short (Z_BUF_ERROR);
         * anything else is damage. */
        gzerror(r.gz, &code);
        if (code != Z_OK && code != Z_BUF_ERROR) goto gz_error;
        st = layout_check_length(&l, path, got, 0, IDX_FIX, err);
        goto done;
    }
    if (reader_read(&r, head, 1) == 1) {
        st = layout_check_length(&l, path, got + 1, 1, IDX_FIX, err);
        goto done;
    }
    if (r.failed) goto gz_error;
    /* The data is complete; a gzip stream that still ends early lacks its checksum. */
    gzerror(r.gz, &code);
    if (code != Z_OK) goto gz_error;
    goto done;

gz_error:
    st = gz_failure(r.gz, path, err);
done:
    if (r.gz) gzclose(r.gz);
    if (st != NK_OK) nk_array_free(out);
    return st;
}
