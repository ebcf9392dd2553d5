/* common.c -- helpers shared by the subcommands: errors, number parsing, data files,
 * the progress line. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cli_fail(nk_status st, const nk_error *err)
{
    fprintf(stderr, "nkern: error: %s\n", err && err->msg[0] ? err->msg : "unknown failure");
    return st == NK_ERR_INPUT || st == NK_ERR_NOMEM ? 2 : 1;
}

int cli_reject_repeats(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) || !a[2] || (!strcmp(a, "--arch") && !strcmp(argv[0], "curve"))) continue;
        for (int k = 1; k < i; k++)
            if (!strcmp(argv[k], a))
                return cli_usage_error("%s %s: %s is given twice (give it once)", argv[0], a, a);
    }
    return 0;
}

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("nkern: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

int cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi)
        return cli_usage_error("%s: '%s' is not an integer in %ld..%ld", opt, s ? s : "", lo, hi);
    *out = v;
    return 0;
}

int cli_parse_double(const char *opt, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !isfinite(v)) return cli_usage_error("%s: '%s' is not a finite number", opt, s ? s : "");
    *out = v;
    return 0;
}

int cli_parse_precision(const char *opt, const char *s, int *f32)
{
    if (s && !strcmp(s, "f64")) *f32 = 0;
    else if (s && !strcmp(s, "f32")) *f32 = 1;
    else return cli_usage_error("%s: '%s' (use f64 or f32)", opt, s ? s : "");
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

#define CLI_VALUE_MAX 1e150
static int check_values(const char *path, nk_array *out);

int cli_read_npy(const char *path, nk_array *out)
{
    nk_error err = {{0}};
    nk_status st = nk_npy_read(path, out, &err);
    if (st == NK_ERR_IO) st = NK_ERR_INPUT; /* an unreadable input file is bad input: exit 2 */
    return st ? cli_fail(st, &err) : check_values(path, out);
}

int cli_read_data(const char *path, size_t n_max, nk_array *out)
{
    nk_error err = {{0}};
    nk_status st;
    if (ends_with(path, ".npy")) st = nk_npy_read(path, out, &err);
    else if (ends_with(path, ".gz") || strstr(path, "idx") || strstr(path, "ubyte")) st = nk_idx_read(path, out, &err);
    else return cli_usage_error("%s: unknown data format (use .npy, or IDX files named *-ubyte[.gz])", path);
    if (st == NK_ERR_IO) st = NK_ERR_INPUT; /* an unreadable input file is bad input: exit 2 */
    if (st != NK_OK) return cli_fail(st, &err);
    if (n_max > 0 && out->shape[0] > n_max) {
        /* keep the first n_max samples: a prefix of a C-order array */
        out->shape[0] = n_max;
        double *d = realloc(out->data, nk_array_size(out) * sizeof(double));
        if (d) out->data = d;
    }
    return check_values(path, out);
}

/* Every number nkern reads must be finite, and small enough that its square is too: 0, or the
 * error (naming the file and position) and 2, with out freed. */
static int check_values(const char *path, nk_array *out)
{
    size_t n = nk_array_size(out), len = out->shape[0] ? n / out->shape[0] : 1;
    for (size_t i = 0; i < n; i++) {
        double v = out->data[i];
        if (isfinite(v) && fabs(v) <= CLI_VALUE_MAX) continue;
        nk_array_free(out);
        char val[32];
        if (isfinite(v)) snprintf(val, sizeof val, "%g", v);
        else snprintf(val, sizeof val, "%s", isnan(v) ? "NaN" : "infinite");
        return cli_usage_error("%s: sample %zu, element %zu is %s (flat index %zu; %s)", path, i / len, i % len, val, i,
                               isfinite(v) ? "beyond +-1e150, where products of values overflow: rescale the data"
                                           : "remove or impute non-finite values");
    }
    return 0;
}

/* ------------------------------------------------------ kernel inputs -- */

void cli_kernel_inputs_default(cli_kernel_inputs *k)
{
    memset(k, 0, sizeof *k);
    k->get = "nngp";
    nk_arch_opts_default(&k->ao);
}

int cli_kernel_input_option(int argc, char **argv, int *i, cli_kernel_inputs *k)
{
    int rc = cli_arch_option(argc, argv, i, &k->ao);
    if (rc >= 0) return rc;
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (!strcmp(a, "--f32")) { k->f32 = 1; return 0; }
    if (!strcmp(a, "--quiet")) { k->quiet = 1; return 0; }
    if (!strcmp(a, "--progress")) { k->force = 1; return 0; }
    const char **path = !strcmp(a, "--arch") ? &k->arch : !strcmp(a, "--x1") ? &k->x1 : !strcmp(a, "--x2") ? &k->x2
                      : !strcmp(a, "--out") ? &k->out : !strcmp(a, "--get") ? &k->get : NULL;
    long *count = !strcmp(a, "--threads") ? &k->threads : !strcmp(a, "--n1") ? &k->n1 : !strcmp(a, "--n2") ? &k->n2 : NULL;
    if ((!path && !count) || !v) return -1; /* the caller's "unknown option or missing value" */
    (*i)++;
    if (path) *path = v;
    else if (cli_parse_int(a, v, 1, count == &k->threads ? 4096 : 1L << 40, count)) return 2;
    return 0;
}

int cli_kernel_inputs_check(cli_kernel_inputs *k, const char *cmd, const char *arch_example, const char *out_hint)
{
    if (!k->arch) return cli_usage_error("%s: missing --arch SPEC (e.g. --arch '%s')", cmd, arch_example);
    if (!k->x1) return cli_usage_error("%s: missing --x1 DATA.npy", cmd);
    if (!k->out && out_hint) return cli_usage_error("%s: missing --out K.npy%s", cmd, out_hint);
    k->getv = !strcmp(k->get, "nngp") ? NK_GET_NNGP : !strcmp(k->get, "ntk") ? NK_GET_NTK : !strcmp(k->get, "both") ? NK_GET_BOTH : 0;
    if (!k->getv) return cli_usage_error("--get: '%s' (use nngp, ntk or both)", k->get);
    return 0;
}

int cli_kernel_inputs_load(const cli_kernel_inputs *k, nk_arch **arch, nk_plan **plan,
                           nk_array *x1, nk_array *x2)
{
    nk_error err = {{0}};
    nk_status st = nk_arch_parse(k->arch, &k->ao, arch, &err);
    if (st != NK_OK) return cli_fail(st, &err);
    int rc = cli_read_data(k->x1, (size_t)k->n1, x1);
    if (!rc && k->x2) rc = cli_read_data(k->x2, (size_t)k->n2, x2);
    if (!rc && x1->ndim < 2) rc = cli_usage_error("%s: shape has one axis; expected (N,D), (N,L,C) or (N,H,W,C)", k->x1);
    if (!rc && k->x2) {
        int same = x2->ndim == x1->ndim;
        for (int a = 1; same && a < x1->ndim; a++) same = x1->shape[a] == x2->shape[a];
        if (!same) rc = cli_usage_error("%s and %s: sample shapes differ (the same architecture needs the same input shape)", k->x1, k->x2);
    }
    if (!rc) {
        st = nk_plan_create(*arch, x1->ndim - 1, x1->shape + 1, plan, &err);
        if (st != NK_OK) rc = cli_fail(st, &err);
    }
    return rc;
}

int cli_parse_times(const char *s, double *times, size_t max, size_t *n)
{
    for (const char *p = s; p && *p;) {
        char item[64];
        size_t len = strcspn(p, ",");
        if (!len || len >= sizeof item || *n == max) return cli_usage_error("--time: '%s' (up to %zu comma-separated times)", s, max);
        memcpy(item, p, len);
        item[len] = 0;
        if (!strcmp(item, "inf")) times[*n] = INFINITY;
        else if (cli_parse_double("--time", item, &times[*n])) return 2;
        if (times[*n] < 0) return cli_usage_error("--time: %s is negative", item);
        (*n)++;
        p += len + (p[len] == ',');
    }
    return 0;
}

/* ------------------------------------------------------------ progress -- */

double cli_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

void cli_progress_init(cli_progress *pr, const char *what, int enabled)
{
    memset(pr, 0, sizeof *pr);
    pr->what = what;
    pr->unit = "entries";
    pr->enabled = enabled;
    pr->start = pr->last = cli_seconds();
}

void cli_format_duration(double s, char *buf, size_t n)
{
    if (!(s < 1e12)) snprintf(buf, n, "more than 30000 years");
    else if (s < 60) snprintf(buf, n, "%.3g s", s);
    else if (s < 3600) snprintf(buf, n, "%d min %02d s", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%.0f h %02d min", floor(s / 3600), (int)fmod(s / 60, 60));
}

double cli_mean_square(const nk_array *x)
{
    size_t n = nk_array_size(x);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x->data[i] * x->data[i];
    return n ? s / n : 1;
}

void cli_warn_long_run(const char *what, const nk_plan *p, size_t n1, size_t n2, int threads, double input_ms, int f32,
                       int shift)
{
    int op;
    const double reach = nk_plan_mehler_reach(p, input_ms, &op);
    if (reach < 0.9)
        /* (0.9: stored terms to 0.95 hold up to variances ~10-30 for tanh; raw pixels are ~1e4) */
        fprintf(stderr, "nkern: warning: %s: inputs of mean square %.3g: the Mehler series of op %d (tanh, sigmoid, "
                "softplus or swish) covers only |rho| <= %g at this scale; entries above are integrated one by one "
                "(~0.1 s each, not in the time estimate; raw pixel values?): scale the inputs, e.g. to [0, 1]\n",
                what, input_ms, op + 1, reach);
    double t = nk_plan_seconds(p, n1, n2, threads, input_ms, f32, shift);
    if (t < 3600) return;
    char d[64];
    cli_format_duration(t, d, sizeof d);
    fprintf(stderr, "nkern: warning: %s: estimated at %s on %d threads (calibrated per-op costs, +-2x; `nkern arch` "
            "shows the layers' share; fewer samples, a smaller input, avgpool first or --precision f32 cut it)\n",
            what, d, nk_num_threads(threads));
}

int cli_progress_cb(void *ctx, size_t done, size_t total)
{
    cli_progress *pr = ctx;
    if (!pr->enabled) return 0;
    double t = cli_seconds();
    if (done < total && t - pr->last < 0.5) return 0;
    pr->last = t;
    double el = t - pr->start, rate = el > 0 && done > pr->resumed ? (done - pr->resumed) / el : 0;
    double left = rate > 0 ? (total - done) / rate : 0;
    char d[64], tiles[64] = "";
    cli_format_duration(done < total ? left : el, d, sizeof d);
    if (pr->tiles_total) snprintf(tiles, sizeof tiles, "tiles %zu/%zu, ", pr->tiles_done, pr->tiles_total);
    fprintf(stderr, "\r%s: %s%zu/%zu %s (%.1f%%), %.3g %s/s, %s %s   ", pr->what, tiles, done, total, pr->unit,
            total ? 100.0 * done / total : 100.0, rate, pr->unit, done < total ? "left" : "took", d);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
    return 0;
}

void cli_print_rank_loads(const char *what, const unsigned long long *tiles, const double *seconds, int ranks)
{
    double most = 0, sum = 0;
    fprintf(stderr, "%s: per rank", what);
    for (int r = 0; r < ranks; r++) {
        fprintf(stderr, "%s %d: %llu tiles in %.1f s", r ? "," : "", r, tiles[r], seconds[r]);
        sum += seconds[r];
        if (seconds[r] > most) most = seconds[r];
    }
    /* the busiest rank's time over the mean: 1 is a perfect balance, R all on one rank */
    if (sum > 0) fprintf(stderr, "; busiest/mean %.2f", most * ranks / sum);
    fputc('\n', stderr);
}

int cli_progress_default(int quiet, int force)
{
    if (quiet) return 0;
    if (force) return 1;
    return isatty(STDERR_FILENO);
}

/* -------------------------------------------------------- ranges, lists -- */

int cli_parse_range(const char *opt, const char *s, double *lo, double *hi, long *n)
{
    char *end;
    const char *p = s;
    *lo = strtod(p, &end);
    if (end == p || *end != ':') goto bad;
    p = end + 1;
    *hi = strtod(p, &end);
    if (end == p || *end != ':') goto bad;
    p = end + 1;
    *n = strtol(p, &end, 10);
    if (end == p || *end || *n < 1 || *n > 100000 || !isfinite(*lo) || !isfinite(*hi)) goto bad;
    return 0;
bad:
    return cli_usage_error("%s: '%s' (use LO:HI:N, e.g. 0.5:4:36)", opt, s);
}

int cli_parse_int_list(const char *opt, const char *s, long *vals, int max, int *n)
{
    const char *p = s;
    *n = 0;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || *n == max) return cli_usage_error("%s: '%s' (use positive integers separated by commas, at most %d)", opt, s, max);
        vals[(*n)++] = v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return cli_usage_error("%s: '%s' (use positive integers separated by commas)", opt, s);
    }
    return *n ? 0 : cli_usage_error("%s: empty list", opt);
}

/* ---------------------------------------------------------- output files -- */

int cli_out_open(cli_out *o, const char *path)
{
    o->path = path;
    o->f = NULL;
    const char *tmp = cli_txn_add(path); /* registered: removed on a signal */
    if (!tmp) return 1;
    snprintf(o->tmp, sizeof o->tmp, "%s", tmp);
    o->f = fopen(o->tmp, "w");
    if (!o->f) {
        cli_txn_release(o->tmp);
        return fprintf(stderr, "nkern: error: %s: cannot open for writing: %s (check the directory)\n", path, strerror(errno)), 1;
    }
    return 0;
}

int cli_out_close(cli_out *o)
{
    int bad = ferror(o->f) != 0;
    bad |= fclose(o->f) != 0;
    if (!bad && rename(o->tmp, o->path) == 0) {
        cli_txn_release(o->tmp);
        return 0;
    }
    fprintf(stderr, "nkern: error: %s: write failed: %s (check free space and permissions)\n", o->path, strerror(errno));
    remove(o->tmp);
    cli_txn_release(o->tmp);
    return 1;
}
