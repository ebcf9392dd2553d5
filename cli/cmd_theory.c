/* cmd_theory.c -- `nkern theory`: mean field of one network, the (sw2, sb2) phase diagram
 * with its critical line, and the NTK spectrum against depth on a data set (Schoenholz et al.
 * 2017; Xiao, Pennington, Schoenholz 2020). */
#include "cli.h"
#include "nk_theory.h"
#include "nk_data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A bare file name that is not in the current directory but is one of the Fashion-MNIST files
 * of the Debian package (train-images-idx3-ubyte.gz, ...) is read from there, with a note. */
static const char *dataset_path(const char *path, char *buf, size_t cap)
{
    if (!path || strchr(path, '/') || access(path, F_OK) == 0) return path;
    if (snprintf(buf, cap, "%s/%s", NK_FASHION_MNIST_DIR, path) >= (int)cap || access(buf, R_OK) != 0) return path;
    fprintf(stderr, "depth: %s is not in the current directory: reading %s (Debian's dataset-fashion-mnist)\n", path, buf);
    return buf;
}

static const char *theory_help =
    "usage: nkern theory meanfield [--act A] [--sw2 V] [--sb2 V] [--quad N]\n"
    "       nkern theory phase [--act A] [--sw2 LO:HI:N] [--sb2 LO:HI:N] [--out PREFIX] [--plot F.svg|png]\n"
    "       nkern theory depth --data X [--labels Y] [--n N] [--n-test M] [--depths 1,2,4,...]\n"
    "                          [--families mlp,cnn-flatten,cnn-gap] [--act A] [--sw2 V] [--sb2 V]\n"
    "                          [--downsample F] [--raw] [--reg R] [--threads N] [--out T.tsv] [--plot F]\n"
    "\n"
    "meanfield  q* (fixed point of q <- sw2 E[phi(sqrt(q) z)^2] + sb2), c*, chi_1 = sw2 E[phi'^2],\n"
    "           chi_c (slope of the correlation map at c*), chi_q, depth scales xi = 1/|log chi|,\n"
    "           phase (ordered chi_1 < 1, chaotic chi_1 > 1).  Defaults: relu, sw2 2, sb2 0.\n"
    "phase      the same on a grid (default sw2 0.25:4:64, sb2 0:2:41) as TSV columns\n"
    "           sw2 sb2 q_star c_star chi1 chi_c xi_q xi_c phase, then the critical line chi_1 = 1\n"
    "           (sb2 sw2_crit).  Without --out both go to stdout as two blocks separated by two\n"
    "           blank lines; with --out: PREFIX.grid.tsv and PREFIX.critical.tsv.\n"
    "           --plot: heat map of log10 chi_1 with the critical line (needs gnuplot).\n"
    "depth      NTK Gram of the first N samples (default 128) for the families\n"
    "             mlp          w=.. b=.. [dense A]*L dense\n"
    "             cnn-flatten  w=.. b=.. [conv(3,pad=circular) A]*L flatten dense\n"
    "             cnn-gap      w=.. b=.. [conv(3,pad=circular) A]*L gap dense\n"
    "           (circular padding keeps every pixel's variance on the mean-field recursion; with\n"
    "           zero padding the borders leak variance and deep CNNs drift into the ordered phase)\n"
    "           at each depth L (default 1,2,4,8,16,32): lambda_max, lambda_min, bulk median and\n"
    "           mean (eigenvalues other than lambda_max), condition number, 2/lambda_max.\n"
    "           With --labels and --n-test M, the next M samples are held out and P(Theta) =\n"
    "           Theta_test,train Theta^-1 Y (one-hot targets -0.1/0.9) gives test accuracy and MSE.\n"
    "           Samples are centred and scaled to |x|^2 = dim (K0(x,x) = 1) unless --raw;\n"
    "           --downsample F averages FxF pixel blocks of images first.\n"
    "Activations: identity relu erf tanh gelu sigmoid sin cos exp sign rbf rbf(gamma=G) softplus swish\n"
    "             leaky_relu(A) abrelu(A,B).\n";

typedef struct {
    nk_act act;
    const char *act_name;
    double sw2, sb2;
    long quad;
} mf_opts;

/* shared options; -1 if argv[*i] is not one of them, 0 consumed, 2 error */
static int mf_option(int argc, char **argv, int *i, mf_opts *o)
{
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (strcmp(a, "--act") && strcmp(a, "--sw2") && strcmp(a, "--sb2") && strcmp(a, "--quad")) return -1;
    if (!v) return cli_usage_error("%s needs a value", a);
    (*i)++;
    if (!strcmp(a, "--act")) {
        nk_error err = {{0}};
        nk_status st = nk_act_parse(v, &o->act, &err);
        if (st != NK_OK) return cli_fail(st, &err);
        o->act_name = v;
        return 0;
    }
    if (!strcmp(a, "--quad")) return cli_parse_int(a, v, 1, 512, &o->quad);
    double d;
    if (cli_parse_double(a, v, &d)) return 2;
    if (d < 0) return cli_usage_error("%s must be >= 0", a);
    if (!strcmp(a, "--sw2")) o->sw2 = d;
    else o->sb2 = d;
    return 0;
}

static const char *phase_name(nk_phase p)
{
    return p == NK_PHASE_ORDERED ? "ordered" : p == NK_PHASE_CHAOTIC ? "chaotic" : "critical";
}

static nk_mf_params mf_params(const mf_opts *o)
{
    nk_mf_params p;
    memset(&p, 0, sizeof p);
    p.act = o->act;
    p.sw2 = o->sw2;
    p.sb2 = o->sb2;
    p.quad_order = (int)o->quad;
    return p;
}

static int theory_meanfield(int argc, char **argv, mf_opts *o)
{
    int rc;
    for (int i = 2; i < argc; i++) {
        if ((rc = mf_option(argc, argv, &i, o)) >= 0) { if (rc) return rc; continue; }
        return cli_usage_error("%s: unknown option (see nkern theory --help)", argv[i]);
    }
    nk_mf_params p = mf_params(o);
    nk_mf_result r;
    nk_error err = {{0}};
    nk_status st = nk_mf_solve(&p, &r, &err);
    if (st != NK_OK) return cli_fail(st, &err);
    printf("activation\t%s\nsw2\t%.10g\nsb2\t%.10g\n", o->act_name, o->sw2, o->sb2);
    printf("q_star\t%.12g\nc_star\t%.12g\nchi1\t%.12g\nchi_c\t%.12g\nchi_q\t%.12g\n", r.q_star, r.c_star, r.chi1, r.chi_c, r.chi_q);
    printf("xi_q\t%.6g\nxi_c\t%.6g\nphase\t%s\nq_iterations\t%d\n", r.xi_q, r.xi_c, phase_name(r.phase), r.q_iters);
    if (r.q_diverges)
        printf("q_diverges\tyes (sw2 E[phi(sqrt(q) z)^2] + sb2 > q up to q = 1e150: no fixed point, the length grows "
               "without bound with depth; chi values are the limits q -> infinity)\n");
    return 0;
}

/* ------------------------------------------------------------- phase -- */

typedef struct {
    nk_mf_params base;
    double sw_lo, sw_hi, sb_lo, sb_hi;
    long nw, nb;
    nk_mf_result *grid;
    nk_status *st;
    double *crit;
    nk_error *errs;
} phase_ctx;

static double grid_value(double lo, double hi, long n, long i) { return n > 1 ? lo + (hi - lo) * (double)i / (double)(n - 1) : lo; }

static void phase_point(void *vctx, size_t idx, int thread)
{
    (void)thread;
    phase_ctx *c = vctx;
    nk_mf_params p = c->base;
    p.sw2 = grid_value(c->sw_lo, c->sw_hi, c->nw, (long)(idx % (size_t)c->nw));
    p.sb2 = grid_value(c->sb_lo, c->sb_hi, c->nb, (long)(idx / (size_t)c->nw));
    c->st[idx] = nk_mf_solve(&p, &c->grid[idx], &c->errs[idx]);
}

static void phase_critical(void *vctx, size_t j, int thread)
{
    (void)thread;
    phase_ctx *c = vctx;
    double sb2 = grid_value(c->sb_lo, c->sb_hi, c->nb, (long)j);
    if (nk_mf_critical_sw2(&c->base, sb2, c->sw_lo, c->sw_hi, &c->crit[j], NULL) != NK_OK) c->crit[j] = NAN;
}

static void write_grid(FILE *f, const phase_ctx *c)
{
    fprintf(f, "# sw2\tsb2\tq_star\tc_star\tchi1\tchi_c\txi_q\txi_c\tphase\n");
    for (long b = 0; b < c->nb; b++) {
        for (long w = 0; w < c->nw; w++) {
            const nk_mf_result *r = &c->grid[b * c->nw + w];
            fprintf(f, "%.6g\t%.6g\t%.8g\t%.8g\t%.8g\t%.8g\t%.6g\t%.6g\t%s\n", grid_value(c->sw_lo, c->sw_hi, c->nw, w),
                    grid_value(c->sb_lo, c->sb_hi, c->nb, b), r->q_star, r->c_star, r->chi1, r->chi_c, r->xi_q, r->xi_c,
                    phase_name(r->phase));
        }
        fputc('\n', f); /* gnuplot: a blank line ends a scan line of the grid */
    }
}

static void write_critical(FILE *f, const phase_ctx *c)
{
    fprintf(f, "# sb2\tsw2_critical (chi_1 = 1)\n");
    for (long b = 0; b < c->nb; b++)
        if (isfinite(c->crit[b])) fprintf(f, "%.6g\t%.10g\n", grid_value(c->sb_lo, c->sb_hi, c->nb, b), c->crit[b]);
}

static int write_file(const char *path, void (*fn)(FILE *, const phase_ctx *), const phase_ctx *c)
{
    cli_out o;
    if (cli_out_open(&o, path)) return 1;
    fn(o.f, c);
    if (cli_out_close(&o)) return 1;
    fprintf(stderr, "phase: wrote %s\n", path);
    return 0;
}

static int theory_phase(int argc, char **argv, mf_opts *o)
{
    phase_ctx c;
    memset(&c, 0, sizeof c);
    c.sw_lo = 0.25; c.sw_hi = 4; c.nw = 64;
    c.sb_lo = 0; c.sb_hi = 2; c.nb = 41;
    const char *out = NULL, *plot = NULL;
    long threads = 0;
    int rc;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--sw2") && strcmp(a, "--sb2") && (rc = mf_option(argc, argv, &i, o)) >= 0) { if (rc) return rc; continue; }
        if (!v) return cli_usage_error("%s: unknown option or missing value (see nkern theory --help)", a);
        i++;
        if (!strcmp(a, "--sw2")) { if (cli_parse_range(a, v, &c.sw_lo, &c.sw_hi, &c.nw)) return 2; }
        else if (!strcmp(a, "--sb2")) { if (cli_parse_range(a, v, &c.sb_lo, &c.sb_hi, &c.nb)) return 2; }
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--plot")) plot = v;
        else if (!strcmp(a, "--threads")) { if (cli_parse_int(a, v, 1, 4096, &threads)) return 2; }
        else return cli_usage_error("%s: unknown option (see nkern theory --help)", a);
    }
    if (c.sw_lo < 0 || c.sb_lo < 0 || c.sw_hi < c.sw_lo || c.sb_hi < c.sb_lo)
        return cli_usage_error("phase: ranges must be ascending and >= 0 (got sw2 %g:%g, sb2 %g:%g)", c.sw_lo, c.sw_hi, c.sb_lo, c.sb_hi);
    if (cli_plot_check(plot) || (out && cli_check_out_dir("--out", out))) return 2;
    c.base = mf_params(o);
    size_t n = (size_t)c.nw * (size_t)c.nb;
    c.grid = calloc(n, sizeof *c.grid);
    c.st = calloc(n, sizeof *c.st);
    c.errs = calloc(n, sizeof *c.errs);
    c.crit = calloc((size_t)c.nb, sizeof *c.crit);
    if (!c.grid || !c.st || !c.errs || !c.crit) rc = cli_usage_error("phase: out of memory for a %ld x %ld grid", c.nw, c.nb);
    else {
        rc = 0;
        nk_parallel_for(n, (int)threads, phase_point, &c);
        for (size_t i = 0; i < n && !rc; i++)
            if (c.st[i] != NK_OK) rc = cli_fail(c.st[i], &c.errs[i]);
    }
    if (!rc) {
        nk_parallel_for((size_t)c.nb, (int)threads, phase_critical, &c);
        if (out) {
            size_t m = strlen(out) + 32;
            char *path = malloc(m);
            if (!path) rc = cli_usage_error("out of memory");
            else {
                snprintf(path, m, "%s.grid.tsv", out);
                rc = write_file(path, write_grid, &c);
                snprintf(path, m, "%s.critical.tsv", out);
                if (!rc) rc = write_file(path, write_critical, &c);
                free(path);
            }
        } else {
            write_grid(stdout, &c);
            fputs("\n\n", stdout);
            write_critical(stdout, &c);
        }
    }
    if (!rc && plot) {
        cli_script sc;
        FILE *s = cli_script_open(&sc);
        if (!s) rc = 2;
        else {
            fputs("$grid << EOD\n", s);
            write_grid(s, &c);
            fputs("EOD\n$crit << EOD\n", s);
            write_critical(s, &c);
            fputs("EOD\n", s);
            fprintf(s, "set title 'Mean-field phase diagram, %s: log_{10} {/Symbol c}_1 (ordered < 0 < chaotic)'\n", o->act_name);
            fputs("set xlabel '{/Symbol s}_w^2'\nset ylabel '{/Symbol s}_b^2'\n"
                  "set palette defined (-1 '#2166ac', 0 '#f7f7f7', 1 '#b2182b')\nset cbrange [-0.5:0.5]\n"
                  "set cblabel 'log_{10} {/Symbol c}_1'\nset key top left opaque\n", s);
            fprintf(s, "set xrange [%g:%g]\nset yrange [%g:%g]\n", c.sw_lo, c.sw_hi, c.sb_lo, c.sb_hi);
            fputs("plot $grid using 1:2:(log10($5) > 0.5 ? 0.5 : log10($5) < -0.5 ? -0.5 : log10($5)) with image notitle, "
                  "$crit using 2:1 with lines lw 3 lc rgb 'black' title 'critical line {/Symbol c}_1 = 1'\n", s);
            rc = cli_script_plot(&sc, plot, 900, 620);
        }
    }
    free(c.grid); free(c.st); free(c.errs); free(c.crit);
    return rc;
}

/* ------------------------------------------------------------- depth -- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* average FxF blocks of (N, H, W, C) images */
static int downsample(nk_array *x, long f, const char *path)
{
    if (f <= 1) return 0;
    if (x->ndim != 4) return cli_usage_error("--downsample: %s is not a set of images (N, H, W, C)", path);
    size_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3], h = H / (size_t)f, w = W / (size_t)f;
    if (h == 0 || w == 0) return cli_usage_error("--downsample %ld: larger than the %zux%zu images", f, H, W);
    size_t sh[4] = {N, h, w, C};
    nk_array y;
    nk_error err = {{0}};
    nk_status st = nk_array_alloc(&y, 4, sh, &err);
    if (st != NK_OK) return cli_fail(st, &err);
    for (size_t n = 0; n < N; n++)
        for (size_t i = 0; i < h; i++)
            for (size_t j = 0; j < w; j++)
                for (size_t c = 0; c < C; c++) {
                    double s = 0;
                    for (size_t a = 0; a < (size_t)f; a++)
                        for (size_t b = 0; b < (size_t)f; b++) s += x->data[((n * H + i * f + a) * W + j * f + b) * C + c];
                    y.data[((n * h + i) * w + j) * C + c] = s / (double)(f * f);
                }
    nk_array_free(x);
    *x = y;
    return 0;
}

/* centre each sample and scale it to |x|^2 = dim, so that K0(x, x) = 1 */
static void standardize(nk_array *x)
{
    size_t N = x->shape[0], D = nk_array_size(x) / N;
    for (size_t n = 0; n < N; n++) {
        double *v = x->data + n * D, m = 0, s = 0;
        for (size_t i = 0; i < D; i++) m += v[i];
        m /= (double)D;
        for (size_t i = 0; i < D; i++) { v[i] -= m; s += v[i] * v[i]; }
        double scale = s > 0 ? sqrt((double)D / s) : 0;
        for (size_t i = 0; i < D; i++) v[i] *= scale;
    }
}

typedef struct {
    const char *family;
    long depth;
    nk_spec_stats s;
    double acc, mse, seconds;
} depth_row;

static void write_depth_rows(FILE *f, const depth_row *rows, int nrows, int with_test, int gnuplot_blocks)
{
    fprintf(f, "# family\tL\tlambda_max\tlambda_min\tbulk_median\tbulk_mean\tcond\tcond_bulk\tlr_max%s\n",
            with_test ? "\ttest_acc\ttest_mse" : "");
    for (int r = 0; r < nrows; r++) {
        if (gnuplot_blocks && r > 0 && strcmp(rows[r].family, rows[r - 1].family)) fputs("\n\n", f);
        const nk_spec_stats *s = &rows[r].s;
        fprintf(f, "%s\t%ld\t%.8g\t%.8g\t%.8g\t%.8g\t%.8g\t%.8g\t%.8g", rows[r].family, rows[r].depth, s->lmax, s->lmin,
                s->bulk_median, s->bulk_mean, s->cond, s->cond_bulk, s->lr_max);
        if (with_test) fprintf(f, "\t%.4f\t%.6g", rows[r].acc, rows[r].mse);
        fputc('\n', f);
    }
}

static int theory_depth(int argc, char **argv, mf_opts *o)
{
    const char *data = NULL, *labels = NULL, *out = NULL, *plot = NULL, *fams = "mlp,cnn-flatten,cnn-gap";
    long n = 128, ntest = 0, ds = 1, threads = 0, depths[64];
    int ndepths = 0, raw = 0, rc;
    double reg = 1e-10;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((rc = mf_option(argc, argv, &i, o)) >= 0) { if (rc) return rc; continue; }
        if (!strcmp(a, "--raw")) { raw = 1; continue; }
        if (!v) return cli_usage_error("%s: unknown option or missing value (see nkern theory --help)", a);
        i++;
        if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--labels")) labels = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--plot")) plot = v;
        else if (!strcmp(a, "--families")) fams = v;
        else if (!strcmp(a, "--n")) { if (cli_parse_int(a, v, 2, 100000, &n)) return 2; }
        else if (!strcmp(a, "--n-test")) { if (cli_parse_int(a, v, 0, 100000, &ntest)) return 2; }
        else if (!strcmp(a, "--downsample")) { if (cli_parse_int(a, v, 1, 64, &ds)) return 2; }
        else if (!strcmp(a, "--threads")) { if (cli_parse_int(a, v, 1, 4096, &threads)) return 2; }
        else if (!strcmp(a, "--depths")) { if (cli_parse_int_list(a, v, depths, 64, &ndepths)) return 2; }
        else if (!strcmp(a, "--reg")) { if (cli_parse_double(a, v, &reg) || reg < 0) return cli_usage_error("--reg must be >= 0"); }
        else return cli_usage_error("%s: unknown option (see nkern theory --help)", a);
    }
    if (!data) return cli_usage_error("depth: missing --data X (.npy or IDX), e.g. /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
    if (ntest > 0 && !labels) return cli_usage_error("depth: --n-test needs --labels (the targets of P(Theta))");
    if (cli_plot_check(plot) || (out && cli_check_out_dir("--out", out))) return 2;
    if (!ndepths) { long def[] = {1, 2, 4, 8, 16, 32}; memcpy(depths, def, sizeof def); ndepths = 6; }
    const char *known[] = {"mlp", "cnn-flatten", "cnn-gap"};
    const char *fam[3];
    int nfam = 0;
    for (const char *p = fams; *p;) {
        size_t len = strcspn(p, ",");
        int k = -1;
        for (int j = 0; j < 3; j++) if (strlen(known[j]) == len && !strncmp(p, known[j], len)) k = j;
        if (k < 0 || nfam == 3) return cli_usage_error("--families: '%s' (use a comma list of mlp, cnn-flatten, cnn-gap)", fams);
        fam[nfam++] = known[k];
        p += len;
        if (*p == ',') p++;
    }

    size_t ntot = (size_t)(n + ntest);
    nk_array x = {0}, y = {0};
    char data_buf[4096], labels_buf[4096];
    data = dataset_path(data, data_buf, sizeof data_buf);
    labels = dataset_path(labels, labels_buf, sizeof labels_buf);
    if ((rc = cli_read_data(data, ntot, &x))) return rc;
    if (x.shape[0] < ntot) {
        rc = cli_usage_error("%s: %zu samples, fewer than --n %ld + --n-test %ld", data, x.shape[0], n, ntest);
        goto done;
    }
    if (x.ndim < 2) { rc = cli_usage_error("%s: one axis; expected (N, D) or (N, H, W, C)", data); goto done; }
    if (labels) {
        if ((rc = cli_read_data(labels, ntot, &y))) goto done;
        if (y.shape[0] < ntot || y.ndim != 1) {
            rc = cli_usage_error("%s: expected a vector of at least %zu integer labels", labels, ntot);
            goto done;
        }
    }
    if ((rc = downsample(&x, ds, data))) goto done;
    if (!raw) standardize(&x);

    int nclass = 0;
    double *Y = NULL;
    if (labels) {
        for (size_t i = 0; i < ntot; i++) {
            double l = y.data[i];
            if (l < 0 || l > 1000 || l != floor(l)) { rc = cli_usage_error("%s: label %zu is %g (labels must be integers 0..1000)", labels, i, l); goto done; }
            if ((int)l + 1 > nclass) nclass = (int)l + 1;
        }
        Y = calloc(ntot * (size_t)nclass, sizeof *Y);
        if (!Y) { rc = cli_usage_error("out of memory"); goto done; }
        for (size_t i = 0; i < ntot; i++)
            for (int k = 0; k < nclass; k++) Y[i * nclass + k] = (int)y.data[i] == k ? 0.9 : -0.1;
    }

    depth_row *rows = calloc((size_t)nfam * ndepths, sizeof *rows);
    double *G = malloc((size_t)n * n * sizeof *G), *eig = malloc((size_t)n * sizeof *eig);
    double *cross = ntest ? malloc((size_t)ntest * n * sizeof *cross) : NULL;
    double *pred = ntest ? malloc((size_t)ntest * nclass * sizeof *pred) : NULL;
    if (!rows || !G || !eig || (ntest && (!cross || !pred))) { rc = cli_usage_error("out of memory for n = %ld", n); goto done2; }
    int nrows = 0;
    printf("# %s: n=%ld%s, %s, sw2=%g, sb2=%g\n", data, n, ntest ? " (+ held-out)" : "", o->act_name, o->sw2, o->sb2);
    printf("%-12s %4s %12s %12s %12s %12s %12s %10s%s\n", "family", "L", "lambda_max", "lambda_min", "bulk_median", "cond",
           "cond_bulk", "lr_max", ntest ? "   test_acc   test_mse" : "");
    for (int f = 0; f < nfam && !rc; f++) {
        for (int di = 0; di < ndepths && !rc; di++) {
            long L = depths[di];
            char spec[512];
            const char *body = !strcmp(fam[f], "mlp") ? "dense" : "conv(3,pad=circular)";
            const char *read = !strcmp(fam[f], "mlp") ? "" : !strcmp(fam[f], "cnn-flatten") ? " flatten" : " gap";
            snprintf(spec, sizeof spec, "w=%.17g b=%.17g [%s %s]*%ld%s dense", sqrt(o->sw2), sqrt(o->sb2), body, o->act_name, L, read);
            /* the MLP sees flattened samples; a CNN sees (N, D) data as 1-D signals of one channel */
            size_t in_shape[3];
            int in_ndim;
            size_t D = nk_array_size(&x) / x.shape[0];
            if (!strcmp(fam[f], "mlp")) { in_ndim = 1; in_shape[0] = D; }
            else if (x.ndim == 2) { in_ndim = 2; in_shape[0] = D; in_shape[1] = 1; }
            else { in_ndim = x.ndim - 1; memcpy(in_shape, x.shape + 1, (size_t)in_ndim * sizeof *in_shape); }
            nk_array xv = x;
            xv.ndim = in_ndim + 1;
            memcpy(xv.shape + 1, in_shape, (size_t)in_ndim * sizeof *in_shape);
            nk_error err = {{0}};
            nk_arch *arch = NULL;
            nk_plan *plan = NULL;
            nk_array T = {0};
            nk_kernel_opts ko;
            nk_kernel_opts_default(&ko);
            ko.get = NK_GET_NTK;
            ko.nthreads = (int)threads;
            nk_arch_opts ao;
            nk_arch_opts_default(&ao);
            ao.quad_order = o->quad > 0 ? (int)o->quad : ao.quad_order;
            double t0 = now();
            nk_status st = nk_arch_parse(spec, &ao, &arch, &err);
            if (st == NK_OK) st = nk_plan_create(arch, in_ndim, in_shape, &plan, &err);
            if (st == NK_OK) {
                char what[64];
                snprintf(what, sizeof what, "depth %s L=%ld", fam[f], L);
                cli_warn_long_run(what, plan, (size_t)n, 0, (int)threads, cli_mean_square(&xv), 0, 0);
            }
            if (st == NK_OK) st = nk_kernel_matrix(plan, &xv, NULL, &ko, NULL, &T, &err);
            depth_row *r = &rows[nrows];
            if (st == NK_OK) {
                for (long i = 0; i < n; i++) memcpy(G + i * n, T.data + i * ntot, (size_t)n * sizeof *G);
                st = nk_sym_eig(G, (size_t)n, 0, eig, &err);
            }
            if (st == NK_OK && ntest) {
                for (long i = 0; i < ntest; i++) memcpy(cross + i * n, T.data + (n + i) * ntot, (size_t)n * sizeof *cross);
                for (long i = 0; i < n; i++) memcpy(G + i * n, T.data + i * ntot, (size_t)n * sizeof *G);
                st = nk_ptheta_predict(G, (size_t)n, cross, (size_t)ntest, Y, (size_t)nclass, reg, pred, &err);
                if (st == NK_OK) {
                    int correct = 0;
                    double se = 0;
                    for (long i = 0; i < ntest; i++) {
                        int best = 0;
                        for (int k = 0; k < nclass; k++) {
                            double d = pred[i * nclass + k] - Y[(n + i) * nclass + k];
                            se += d * d;
                            if (pred[i * nclass + k] > pred[i * nclass + best]) best = k;
                        }
                        correct += best == (int)y.data[n + i];
                    }
                    r->acc = (double)correct / (double)ntest;
                    r->mse = se / (double)ntest;
                } else {
                    /* an untrainable kernel is a result, not an error: report it and go on */
                    fprintf(stderr, "depth: %s L=%ld: %s\n", fam[f], L, err.msg);
                    r->acc = r->mse = NAN;
                    st = NK_OK;
                }
            }
            if (st != NK_OK) rc = cli_fail(st, &err);
            else {
                r->family = fam[f];
                r->depth = L;
                r->seconds = now() - t0;
                nk_spec_stats_compute(eig, (size_t)n, &r->s);
                printf("%-12s %4ld %12.5g %12.5g %12.5g %12.5g %12.5g %10.4g", r->family, L, r->s.lmax, r->s.lmin,
                       r->s.bulk_median, r->s.cond, r->s.cond_bulk, r->s.lr_max);
                if (ntest) printf(" %10.4f %10.4g", r->acc, r->mse);
                printf("\n");
                fflush(stdout);
                nrows++;
            }
            nk_array_free(&T);
            nk_plan_free(plan);
            nk_arch_free(arch);
        }
    }
    if (!rc && out) {
        cli_out o;
        if (cli_out_open(&o, out)) rc = 1;
        else {
            write_depth_rows(o.f, rows, nrows, ntest > 0, 0);
            if (cli_out_close(&o)) rc = 1;
        }
    }
    if (!rc && plot) {
        cli_script sc;
        FILE *s = cli_script_open(&sc);
        if (!s) rc = 2;
        else {
            fputs("$d << EOD\n", s);
            write_depth_rows(s, rows, nrows, ntest > 0, 1);
            fputs("EOD\n", s);
            fprintf(s, "set multiplot layout 1,%d title 'NTK of %s nets on %ld samples, {/Symbol s}_w^2=%g, {/Symbol s}_b^2=%g'\n",
                    ntest ? 3 : 2, o->act_name, n, o->sw2, o->sb2);
            fputs("fams = \"", s);
            for (int f = 0; f < nfam; f++) fprintf(s, "%s%s", f ? " " : "", fam[f]);
            fputs("\"\n", s);
            fputs("set logscale x 2\nset logscale y\nset xlabel 'depth L'\nset key top left font ',10'\nset grid\n", s);
            fputs("set ylabel 'condition number {/Symbol l}_{max}/{/Symbol l}_{min}'\n", s);
            fputs("plot for [i=0:*] $d index i using 2:7 with linespoints lw 2 title word(fams, i+1)\n", s);
            fputs("set ylabel 'eigenvalue: {/Symbol l}_{max} (solid), bulk median (dashed)'\n", s);
            fputs("plot for [i=0:*] $d index i using 2:3 with linespoints lw 2 lc i+1 title word(fams, i+1), "
                  "for [i=0:*] $d index i using 2:5 with linespoints dt 2 lw 2 lc i+1 notitle\n", s);
            if (ntest) fputs("unset logscale y\nset ylabel 'P({/Symbol Q}) test accuracy'\n"
                             "plot for [i=0:*] $d index i using 2:10 with linespoints lw 2 title word(fams, i+1)\n", s);
            fputs("unset multiplot\n", s);
            rc = cli_script_plot(&sc, plot, ntest ? 1500 : 1050, 520);
        }
    }
done2:
    free(rows); free(G); free(eig); free(cross); free(pred); free(Y);
done:
    nk_array_free(&x);
    nk_array_free(&y);
    return rc;
}

int cmd_theory(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(theory_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(theory_help, stdout); return 0; }
    mf_opts o;
    memset(&o, 0, sizeof o);
    o.act.kind = NK_ACT_RELU;
    o.act_name = "relu";
    o.sw2 = 2;
    if (!strcmp(argv[1], "meanfield")) return theory_meanfield(argc, argv, &o);
    if (!strcmp(argv[1], "phase")) return theory_phase(argc, argv, &o);
    if (!strcmp(argv[1], "depth")) return theory_depth(argc, argv, &o);
    return cli_usage_error("theory: unknown subcommand '%s' (use meanfield, phase or depth)", argv[1]);
}
