/* gauss.c -- Gaussian expectations E[f(z)], z ~ N(0, 1), with an error estimate, and the
 * Hermite coefficients of an activation they give.
 *
 * Why not Gauss-Hermite: a rule of n nodes spaces them ~pi/sqrt(2n) apart near 0, so
 * phi(sqrt(q) z) with a transition (tanh, sigmoid) or a kink (relu-like) of width 1/sqrt(q)
 * is resolved only when n grows like q; at q = 300 the 512-point rule gave chi_1 0.78 for
 * the true 9.43 with nothing to say it was wrong.  Here the line is cut into panels, with
 * break points at the caller's feature (center +- scale 2^j), each panel gets a 16-point
 * Gauss-Legendre rule, and a panel is accepted when the rule on it agrees with the sum of the
 * rule on its two halves within the panel's share of the tolerance (the halves' value is
 * kept, so the estimate bounds the error of a value more accurate than the one it measures).
 * A panel bisected 48 times without meeting its share makes the call report failure: the
 * callers refuse rather than return an unchecked number. */
#include "internal.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define GL_N 16
#define Z_MAX 38.5       /* exp(-z^2/2) < 1e-321 beyond: the weight underflows */
#define MAX_DEPTH 48
#define MAX_BREAKS 160
#define MAX_SPLITS 6000  /* panels bisected per call: past it the call fails (depth-first
                            bisection to MAX_DEPTH everywhere would never end) */

static double gl_x[GL_N], gl_w[GL_N];
static pthread_once_t gl_once = PTHREAD_ONCE_INIT;

/* Gauss-Legendre nodes on [-1, 1]: Newton on P_n from the Chebyshev guess, weights
 * 2 / ((1 - x^2) P_n'(x)^2). */
static void gl_init(void)
{
    for (int i = 0; i < GL_N; i++) {
        double x = cos(NK_PI * (i + 0.75) / (GL_N + 0.5)), dp = 1;
        for (int it = 0; it < 100; it++) {
            double p0 = 1, p1 = x;
            for (int k = 2; k <= GL_N; k++) {
                double p2 = ((2 * k - 1) * x * p1 - (k - 1) * p0) / k;
                p0 = p1;
                p1 = p2;
            }
            dp = GL_N * (x * p1 - p0) / (x * x - 1);
            double dx = p1 / dp;
            x -= dx;
            if (fabs(dx) < 1e-17) break;
        }
        gl_x[i] = x;
        gl_w[i] = 2 / ((1 - x * x) * dp * dp);
    }
}

/* sum over the panel [lo, hi] of w_i gamma(z_i) f(z_i) into acc[m] */
static void panel_rule(nk_vfn f, void *ctx, int m, double lo, double hi, double *acc, double *tmp)
{
    const double h = 0.5 * (hi - lo), c = 0.5 * (hi + lo);
    for (int j = 0; j < m; j++) acc[j] = 0;
    for (int i = 0; i < GL_N; i++) {
        const double z = c + h * gl_x[i], w = h * gl_w[i] * exp(-0.5 * z * z) * 0.39894228040143267794;
        f(z, tmp, ctx);
        for (int j = 0; j < m; j++) acc[j] += w * tmp[j];
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int nk_gauss_expect_vec(nk_vfn f, void *ctx, int m, double center, double scale, const double *tol_abs,
                        double tol_rel, double *val, double *err)
{
    pthread_once(&gl_once, gl_init);
    /* break points: a fixed grid, denser near 0, and the feature's center +- scale 2^j */
    static const double grid[] = {0, 0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 13, 17, 22, 28, Z_MAX};
    double br[MAX_BREAKS];
    int nb = 0;
    for (size_t i = 0; i < sizeof grid / sizeof *grid; i++) {
        br[nb++] = grid[i];
        if (grid[i] > 0) br[nb++] = -grid[i];
    }
    if (isfinite(center) && fabs(center) < Z_MAX) br[nb++] = center;
    if (scale > 0 && isfinite(scale) && isfinite(center))
        for (int j = -4; j < 60 && nb + 2 <= MAX_BREAKS; j++) {
            const double d = scale * ldexp(1, j);
            if (d > 2 * Z_MAX) break;
            if (d < 1e-300) continue;
            if (fabs(center + d) < Z_MAX) br[nb++] = center + d;
            if (fabs(center - d) < Z_MAX) br[nb++] = center - d;
        }
    qsort(br, (size_t)nb, sizeof *br, cmp_double);
    int nu = 0;
    for (int i = 0; i < nb; i++)
        if (nu == 0 || br[i] > br[nu - 1]) br[nu++] = br[i];
    /* work: the values of the halves and a stack of (lo, hi, depth, whole[m]) */
    const int slot = m + 3;
    double *w = malloc(sizeof(double) * ((size_t)5 * m + (size_t)slot * (MAX_DEPTH + 2) + (size_t)nu * m));
    if (!w) return -1;
    double *tmp = w, *left = w + m, *right = w + 2 * m, *tol = w + 3 * m, *stack = w + 5 * m;
    double *first = stack + (size_t)slot * (MAX_DEPTH + 2);
    int ok = 1, splits = 0;
    /* the tolerance: absolute, or relative to the sum of |panel values| (a scale of the
     * integrand that does not vanish when the integral does, as for odd integrands) */
    for (int j = 0; j < m; j++) val[j] = err[j] = tol[j] = 0;
    for (int p = 0; p + 1 < nu; p++) {
        panel_rule(f, ctx, m, br[p], br[p + 1], first + (size_t)p * m, tmp);
        for (int j = 0; j < m; j++) tol[j] += fabs(first[(size_t)p * m + j]);
    }
    /* (never below the rounding of the values: 64 ulps of their scale) */
    for (int j = 0; j < m; j++) {
        tol[j] *= fmax(tol_rel, 64 * DBL_EPSILON);
        if (tol_abs && tol_abs[j] > tol[j]) tol[j] = tol_abs[j];
    }
    const double span = br[nu - 1] - br[0];
    for (int p = 0; p + 1 < nu; p++) {
        int top = 0;
        double *s = stack;
        s[0] = br[p];
        s[1] = br[p + 1];
        s[2] = 0;
        memcpy(s + 3, first + (size_t)p * m, sizeof(double) * m);
        top = 1;
        while (top > 0) {
            double *e = stack + (size_t)(top - 1) * slot;
            const double lo = e[0], hi = e[1], mid = 0.5 * (lo + hi);
            const int depth = (int)e[2];
            panel_rule(f, ctx, m, lo, mid, left, tmp);
            panel_rule(f, ctx, m, mid, hi, right, tmp);
            /* the panel's share of each tolerance: in proportion to its width */
            const double share = (hi - lo) / span;
            int accept = 1;
            /* (a difference at the rounding level of the values is accepted: a share of the
             * tolerance can fall below it on the narrow panels at a sharp feature) */
            for (int j = 0; j < m && accept; j++)
                if (fabs(left[j] + right[j] - e[3 + j]) >
                    fmax(share * tol[j], 64 * DBL_EPSILON * (fabs(left[j]) + fabs(right[j]))))
                    accept = 0;
            if (accept || depth >= MAX_DEPTH || splits >= MAX_SPLITS || !(mid > lo && mid < hi)) {
                if (!accept) ok = 0;
                for (int j = 0; j < m; j++) {
                    val[j] += left[j] + right[j];
                    err[j] += fabs(left[j] + right[j] - e[3 + j]);
                }
                top--;
                continue;
            }
            splits++;
            /* replace the panel by its halves (right below, left on top) */
            e[0] = mid;
            e[2] = depth + 1;
            memcpy(e + 3, right, sizeof(double) * m);
            double *l = stack + (size_t)top * slot;
            l[0] = lo;
            l[1] = mid;
            l[2] = depth + 1;
            memcpy(l + 3, left, sizeof(double) * m);
            top++;
        }
    }
    for (int j = 0; j < m; j++)
        if (!isfinite(val[j]) || err[j] > tol[j]) ok = 0;
    free(w);
    return ok ? 0 : -1;
}

typedef struct {
    nk_dfn f;
    void *ctx;
} scalar_ctx;

static void scalar_fn(double z, double *out, void *ctx)
{
    const scalar_ctx *s = ctx;
    out[0] = s->f(z, s->ctx);
}

int nk_gauss_expect(nk_dfn f, void *ctx, double center, double scale, double tol_abs, double tol_rel, double *val,
                    double *err)
{
    scalar_ctx s = {f, ctx};
    return nk_gauss_expect_vec(scalar_fn, &s, 1, center, scale, &tol_abs, tol_rel, val, err);
}

/* ---- Hermite coefficients h_k = E[g(sqrt(a) z) He_k(z)] / sqrt(k!) of g = phi or phi' ---- */

typedef struct {
    const nk_act *act;
    int deriv, n;
    double sa;
} herm_ctx;

/* out[0..n]: g(sqrt(a) z) He_k(z)/sqrt(k!) by the normalized recurrence
 * p_{k+1} = (z p_k - sqrt(k) p_{k-1}) / sqrt(k+1); out[n+1] = g^2 */
static void herm_fn(double z, double *out, void *ctx)
{
    const herm_ctx *h = ctx;
    const double x = h->sa * z;
    const double g = h->deriv ? nk_act_deriv(h->act, x) : nk_act_value(h->act, x);
    double p0 = 1, p1 = z;
    out[0] = g;
    if (h->n >= 1) out[1] = g * z;
    for (int k = 1; k < h->n; k++) {
        const double p2 = (z * p1 - sqrt((double)k) * p0) / sqrt((double)k + 1);
        out[k + 1] = g * p2;
        p0 = p1;
        p1 = p2;
    }
    out[h->n + 1] = g * g;
}

static double gsq_fn(double z, void *ctx)
{
    const herm_ctx *h = ctx;
    const double x = h->sa * z, g = h->deriv ? nk_act_deriv(h->act, x) : nk_act_value(h->act, x);
    return g * g;
}

int nk_hermite_coeffs(const nk_act *act, int deriv, double a, int n, double *h, double *e2, double *tail)
{
    herm_ctx c = {act, deriv, n, sqrt(a)};
    double *v = malloc(sizeof(double) * 3 * (size_t)(n + 2));
    if (!v) return -1;
    double *err = v + n + 2, *tol = err + n + 2;
    /* E[g^2] first: the coefficients need only an absolute accuracy against sqrt(E[g^2]) (what
     * the Mehler sum and Parseval's tail are measured against); a tolerance relative to each
     * coefficient's own size made the tiny high-degree ones bisect the line ~10x further */
    double e, ee;
    if (nk_gauss_expect(gsq_fn, &c, 0, a > 0 ? 1 / sqrt(a) : INFINITY, 0, 1e-13, &e, &ee)) e = 0;
    for (int k = 0; k <= n; k++) tol[k] = 1e-14 * sqrt(e);
    tol[n + 1] = 0;
    const int rc = nk_gauss_expect_vec(herm_fn, &c, n + 2, 0, a > 0 ? 1 / sqrt(a) : INFINITY, tol, 1e-13, v, err);
    /* the energy left after n terms, E[g^2] - sum h_k^2 (Parseval), plus what the errors of
     * the coefficients and the rounding of the sum could hide */
    double s = 0, slack = err[n + 1];
    for (int k = 0; k <= n; k++) {
        h[k] = v[k];
        s += v[k] * v[k];
        slack += 2 * fabs(v[k]) * err[k] + err[k] * err[k];
    }
    *e2 = v[n + 1];
    *tail = fmax(v[n + 1] - s, 0) + slack + 4e-16 * (n + 2) * v[n + 1];
    free(v);
    return rc;
}

/* ---- E[g(u) g(v)] for (u, v) ~ N(0, [[a, c], [c, b]]) by nested adaptive integration ---- */

typedef struct {
    const nk_act *act;
    int deriv;
    double sa, sb, rho, s;
    double tol_rel, inner_err;
    int fail;
} nest_ctx;

static double gval(const nest_ctx *n, double x)
{
    return n->deriv ? nk_act_deriv(n->act, x) : nk_act_value(n->act, x);
}

typedef struct {
    const nest_ctx *n;
    double m;
} inner_ctx;

static double inner_fn(double z2, void *ctx)
{
    const inner_ctx *i = ctx;
    return gval(i->n, i->n->sb * (i->m + i->n->s * z2));
}

/* u = sqrt(a) z1, v = sqrt(b) (rho z1 + s z2), s = sqrt(1 - rho^2): the inner expectation
 * over z2 has its feature where rho z1 + s z2 = 0, of width 1/(sqrt(b) s) */
static double outer_fn(double z1, void *ctx)
{
    nest_ctx *n = ctx;
    const double gu = gval(n, n->sa * z1);
    if (gu == 0) return 0;
    double inner, e;
    if (n->s == 0) {
        inner = gval(n, n->sb * n->rho * z1);
    } else {
        inner_ctx ic = {n, n->rho * z1};
        /* an absolute floor: an inner value near the underflow (phi' far in a tail) meets no
         * relative tolerance, and adds < 1e-290 through gu anyway */
        if (nk_gauss_expect(inner_fn, &ic, -n->rho * z1 / n->s, n->sb > 0 ? 1 / (n->sb * n->s) : INFINITY,
                            1e-290 / fabs(gu), n->tol_rel, &inner, &e))
            n->fail = 1;
        if (fabs(gu) * e > n->inner_err) n->inner_err = fabs(gu) * e;
    }
    return gu * inner;
}

int nk_dual_nested(const nk_act *act, int deriv, double a, double b, double c, double tol_rel, double *val,
                   double *err)
{
    const double sab = sqrt(a * b);
    double rho = sab > 0 ? c / sab : 0;
    rho = rho > 1 ? 1 : rho < -1 ? -1 : rho;
    nest_ctx n = {act, deriv, sqrt(a), sqrt(b), rho, sqrt((1 - rho) * (1 + rho)), tol_rel, 0, 0};
    double e;
    int rc = nk_gauss_expect(outer_fn, &n, 0, a > 0 ? 1 / sqrt(a) : INFINITY, 0, tol_rel, val, &e);
    /* the inner values enter with weights summing to at most 1 in absolute value */
    *err = e + n.inner_err;
    return rc || n.fail ? -1 : 0;
}

/* ---- the Mehler form of a smooth activation, per variance (the plane engine's self state) ---- */

/* bounds on |rho|: the cross pairs of the bench's CNNs have |rho| 0.1-0.3 in most blocks of
 * entries, which need about half the terms at 0.25 that they need at 0.5 */
const double nk_mehler_level[NK_MEHLER_LEVELS] = {0.125, 0.25, 0.375, 0.5, 0.65, 0.8, 0.9, 0.95, 1};

int nk_mehler_act(nk_act_kind k)
{
    return k == NK_ACT_TANH || k == NK_ACT_SIGMOID || k == NK_ACT_SOFTPLUS || k == NK_ACT_SWISH;
}

/* The coefficients of one variance cost ~3 ms by the adaptive quadrature (130 degrees), and a
 * 32x32 image has 1024 variances per layer: they come from a table instead, made once per
 * process.  h_k(a) and E[g^2] are smooth in u = ln a; the table cuts u in [ln 1e-4, ln 1e8) into
 * cells of width 1/4, each holding the Chebyshev interpolant of degree 19 of every component
 * (from 20 quadratures at its Chebyshev points), built when first needed.  A cell is used only
 * if, at three more points (near both ends and the middle), the interpolant agrees with the
 * quadrature to |h - h_quad| <= 1e-12 sqrt(E[g^2]) (2-norm over the degrees) and E[g^2] to 1e-12
 * relative; otherwise (and outside the range) the variance gets its own quadrature.  (The range
 * reached 1e3 until raw 0..255 pixels, first-layer variances ~1e4, made every position cost a
 * quadrature: 8 ms per record instead of 2 us, measured; every cell up to 1e8 passes its check
 * for all four activations but one of swish's, near 112.) */
#define MT_ULO (-9.21034037197618)   /* ln 1e-4 */
#define MT_WIDTH 0.25
#define MT_CELLS 111                 /* up to ln 1e8 */
#define MT_NODES 20
#define MT_COMP (2 * NK_MEHLER_TERMS + 3)   /* h_0 .. h_{2 NS + 1}, E[g^2] */
#define MT_TOL 1e-12
/* A cell's components are stored in the order of mt_slot: g's lone degree, then its parity's
 * degrees (nk_mehler_odd), then E[g^2] (slot MT_E), then the other parity's degrees, which
 * vanish by symmetry (what a cell holds there is its interpolation error, <= 1e-12 sqrt(E) in
 * all).  A lookup evaluates the first MT_EV slots only and gives the others as 0: half the
 * recurrence of a record. */
#define MT_E (NK_MEHLER_TERMS + 2)
#define MT_EV (MT_E + 1)
/* k over the degrees 0 .. n a lookup can give nonzero (the lone degree and g's parity, odd: as
 * nk_mehler_odd), in increasing order: a sum over them is the sum over all (the others are 0) */
#define MT_EACH(k, odd, n) for (int k = 0; k <= (n); k = k < 2 - (odd) ? k + 1 : k + 2)
/* MT_EACH's j-th degree (j < 2: j; then 2 j - 1 for odd, 2 j - 2 for even): n = 2 NS + 1 gives
 * NS + 2 of them for either parity (record_tab runs several such sums in one loop) */
static inline int mt_each_k(int j, int odd) { return j < 2 ? j : odd ? 2 * j - 1 : 2 * j - 2; }
/* The tail past the degrees summed to `sum` of a table's E[g^2] = e2, by difference, with
 * `margin` times the table's error (herm_at: 3; phi''s terms formed from phi's: 5) */
static inline double mt_tail(double e2, double sum, double margin) { return fmax(e2 - sum, 0) + margin * MT_TOL * e2; }
/* phi_terms takes phi's degrees past 0 from phi''s where sum_k k h_k^2 < MT_OWN E[phi^2] */
#define MT_OWN 1e-2
static int mt_slot(int odd, int k)
{
    if (k == MT_COMP - 1) return MT_E;
    if (k == !odd) return 0;
    return (k & 1) == odd ? 1 + k / 2 : MT_E + k / 2;
}

static struct {
    pthread_mutex_t lock;
    double *cell[4][2][MT_CELLS];   /* [act][deriv][cell]: MT_NODES x MT_COMP Chebyshev coefficients */
    signed char bad[4][2][MT_CELLS];
} mtab = {PTHREAD_MUTEX_INITIALIZER, {{{0}}}, {{{0}}}};

static int mt_act(nk_act_kind k)
{
    return k == NK_ACT_TANH ? 0 : k == NK_ACT_SIGMOID ? 1 : k == NK_ACT_SOFTPLUS ? 2 : 3;
}

/* the interpolant of every component at x in [-1, 1] (Clenshaw's recurrence, all components at
 * once: the coefficients are stored [degree][component], so that the loop over components is
 * a vector loop and not ~200 dependent chains) */
/* (its lanes are independent and no FMA is contracted, so every target gives the same bits; the
 * AVX-512 clone: nk_mehler_record of tanh at variance 1-2 in 2.5 us instead of 3.5-5.1, measured) */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void mt_eval(const double *c, double x, double *out, int nc)
{
    double b1[MT_COMP], b2[MT_COMP];
    for (int m = 0; m < nc; m++) b1[m] = b2[m] = 0;
    for (int l = MT_NODES - 1; l >= 1; l--) {
        const double *cl = c + (size_t)l * MT_COMP;
        for (int m = 0; m < nc; m++) {
            const double b0 = 2 * x * b1[m] - b2[m] + cl[m];
            b2[m] = b1[m];
            b1[m] = b0;
        }
    }
    for (int m = 0; m < nc; m++) out[m] = x * b1[m] - b2[m] + c[m];
}

static int mt_quad(const nk_act *act, int deriv, double u, double *out)
{
    double tail;
    return nk_hermite_coeffs(act, deriv, exp(u), MT_COMP - 2, out, &out[MT_COMP - 1], &tail);
}

static double *mt_build(const nk_act *act, int deriv, int i)
{
    const double u0 = MT_ULO + i * MT_WIDTH;
    double *f = malloc(sizeof(double) * MT_COMP * MT_NODES), *c = malloc(sizeof(double) * MT_COMP * MT_NODES);
    double q[MT_COMP], v[MT_COMP];
    int ok = f && c, slot[MT_COMP];
    for (int m = 0; m < MT_COMP; m++) slot[m] = mt_slot(nk_mehler_odd(act->kind, deriv), m);
    for (int j = 0; j < MT_NODES && ok; j++) {
        const double x = cos(NK_PI * (j + 0.5) / MT_NODES);
        ok = mt_quad(act, deriv, u0 + 0.5 * MT_WIDTH * (1 + x), q) == 0;
        for (int m = 0; m < MT_COMP; m++) f[(size_t)j * MT_COMP + slot[m]] = q[m];
    }
    /* c_l = (2 / N) sum_j f(x_j) cos(pi l (j + 1/2) / N), c_0 halved */
    for (int m = 0; m < MT_COMP && ok; m++)
        for (int l = 0; l < MT_NODES; l++) {
            double sum = 0;
            for (int j = 0; j < MT_NODES; j++) sum += f[(size_t)j * MT_COMP + m] * cos(NK_PI * l * (j + 0.5) / MT_NODES);
            c[(size_t)l * MT_COMP + m] = sum * (l ? 2.0 : 1.0) / MT_NODES;
        }
    static const double checks[] = {-0.97, 0.03, 0.97};
    for (int t = 0; t < 3 && ok; t++) {
        ok = mt_quad(act, deriv, u0 + 0.5 * MT_WIDTH * (1 + checks[t]), q) == 0;
        mt_eval(c, checks[t], v, MT_COMP);
        const double e = q[MT_COMP - 1];
        double d2 = 0;
        for (int m = 0; m < MT_COMP - 1; m++) d2 += (v[slot[m]] - q[m]) * (v[slot[m]] - q[m]);
        if (ok && !(sqrt(d2) <= MT_TOL * sqrt(e) && fabs(v[MT_E] - e) <= MT_TOL * e)) ok = 0;
    }
    free(f);
    if (!ok) {
        free(c);
        return NULL;
    }
    return c;
}

/* The table's cell of a (built when first needed) and a's place in it, *x in [-1, 1]; NULL if
 * a is outside the table or its cell failed */
static const double *mt_cell(const nk_act *act, int deriv, double a, double *x)
{
    const double u = log(a);
    if (!(u >= MT_ULO && u < MT_ULO + MT_CELLS * MT_WIDTH)) return NULL;
    int i = (int)((u - MT_ULO) / MT_WIDTH);
    if (i >= MT_CELLS) i = MT_CELLS - 1;
    const int k = mt_act(act->kind);
    double *c = __atomic_load_n(&mtab.cell[k][deriv][i], __ATOMIC_ACQUIRE);
    if (!c) {
        pthread_mutex_lock(&mtab.lock);
        c = mtab.cell[k][deriv][i];
        if (!c && !mtab.bad[k][deriv][i]) {
            c = mt_build(act, deriv, i);
            if (c) __atomic_store_n(&mtab.cell[k][deriv][i], c, __ATOMIC_RELEASE);
            else mtab.bad[k][deriv][i] = 1;
        }
        pthread_mutex_unlock(&mtab.lock);
        if (!c) return NULL;
    }
    *x = 2 * (u - MT_ULO - i * MT_WIDTH) / MT_WIDTH - 1;
    return c;
}

/* h[0 .. 2 NS + 1] and E[g^2] at a from the table (the degrees of the other parity past the lone one
 * as 0: mt_slot); -1 if a is outside it or its cell failed */
static int mt_lookup(const nk_act *act, int deriv, double a, double *h, double *e2)
{
    double x, v[MT_EV];
    const double *c = mt_cell(act, deriv, a, &x);
    if (!c) return -1;
    mt_eval(c, x, v, MT_EV);
    const int odd = nk_mehler_odd(act->kind, deriv);
    for (int m = 0; m < MT_COMP - 1; m++) h[m] = 0;
    h[!odd] = v[0];
    for (int j = 0; j <= NK_MEHLER_TERMS; j++) h[2 * j + odd] = v[1 + j];
    *e2 = v[MT_E];
    return 0;
}

/* E[g^2] alone from the table (mt_eval's recurrence on its one component); -1 as mt_lookup */
static int mt_lookup_e2(const nk_act *act, int deriv, double a, double *e2)
{
    double x;
    const double *c = mt_cell(act, deriv, a, &x);
    if (!c) return -1;
    double b1 = 0, b2 = 0;
    for (int l = MT_NODES - 1; l >= 1; l--) {
        const double b0 = 2 * x * b1 - b2 + c[(size_t)l * MT_COMP + MT_E];
        b2 = b1;
        b1 = b0;
    }
    *e2 = x * b1 - b2 + c[MT_E];
    return 0;
}

/* h[0 .. n] (n = 2 NS + 1) of g = phi or phi' at a, E[g^2] and the tail past them: from the
 * table (*tab = 1), or a constant (a = 0), or by quadrature; returns -1 if the quadrature
 * failed */
static int herm_at(const nk_act *act, int deriv, double a, int n, double *h, double *e2, double *tail, int *tab)
{
    *tab = 0;
    if (a > 0 && mt_lookup(act, deriv, a, h, e2) == 0) {
        /* Parseval's tail by difference, with the table's error: |h - h_quad| <= 1e-12 sqrt(E)
         * moves sum h_k^2 by at most ~2e-12 E, and the quadrature's own floor is ~1e-13 E */
        double sum = 0;
        MT_EACH(k, nk_mehler_odd(act->kind, deriv), n) sum += h[k] * h[k];
        *tail = mt_tail(*e2, sum, 3);
        *tab = 1;
        return 0;
    }
    if (a == 0) {
        /* a constant: h_0 = g(0), no other degree */
        for (int k = 0; k <= n; k++) h[k] = 0;
        h[0] = deriv ? nk_act_deriv(act, 0) : nk_act_value(act, 0);
        *e2 = h[0] * h[0];
        *tail = 0;
        return 0;
    }
    return nk_hermite_coeffs(act, deriv, a, n, h, e2, tail);
}

/* phi's h[0 .. n] as the sums use them (herm_at): both series are summed from phi's terms, phi'
 * as sqrt((k + 1) / a) h_{k+1}, so an error e sqrt(E phi^2) in h_{k+1} becomes
 * e sqrt((k + 1) E phi^2 / a) in phi''s term, large against sqrt(E phi'^2) where
 * a E phi'^2 << E phi^2 (sigmoid, softplus at small a: measured 6e-11 at a = 1e-8 by the
 * quadrature).  There phi's degrees past 0 come from phi''s, h_{k+1} = sqrt(a / (k + 1))
 * h_k(phi'), whose errors shrink instead (sum_k k h_k^2 = a E phi'^2 up to the tail); phi''s
 * own degrees, E[phi'^2] and tail are then left in hd, *e2d, *taild and *own = 0 (1 where phi's
 * own terms are kept and hd is not written).  *tab: every degree used came from a table (phi''s
 * too where own = 0), so the other parity's are 0. */
static int phi_terms(const nk_act *act, double a, int n, double *h, double *e2, double *tail, int *tab, int *own,
                     double *hd, double *e2d, double *taild)
{
    const int rc = herm_at(act, 0, a, n, h, e2, tail, tab);
    *own = 1;
    if (rc || !(a > 0)) return rc;
    double s1 = 0;
    if (*tab) {
        MT_EACH(k, nk_mehler_odd(act->kind, 0), n) s1 += k * h[k] * h[k];
    } else {
        for (int k = 1; k <= n; k++) s1 += k * h[k] * h[k];
    }
    int tabd;
    if (s1 < MT_OWN * *e2 && herm_at(act, 1, a, n, hd, e2d, taild, &tabd) == 0) {
        for (int k = 0; k < n; k++) h[k + 1] = sqrt(a / (k + 1)) * hd[k];
        *own = 0;
        *tab = *tab && tabd;
    }
    return 0;
}

/* The need per level of |rho| from the energies rest[m] past m parity terms (mehler_terms):
 * rest(m) r^(first degree left out) falls with m, and the need rises with the level, so each
 * level's search starts at the need of the one below (one pass over m for all levels) */
static void terms_levels(int odd, int use, const double *rest, double other, double tol, double e2, double *need)
{
    int m = 0;
    for (int l = 0; l < NK_MEHLER_LEVELS; l++) {
        const double r = nk_mehler_level[l];
        /* r^(first degree left out after m terms), (r^2)^m by squaring (pow() was ~10% of a
         * record) */
        double pw = odd ? r : 1;
        double sq = r * r;
        for (int e = m; e > 0; e >>= 1, sq *= sq)
            if (e & 1) pw *= sq;
        while (m <= use && !(rest[m] * pw + other <= tol * e2)) {
            m++;
            pw *= r * r;
        }
        need[l] = m;
    }
}

/* g, need, tau (nk_mehler_coeffs) from the degrees h[0 .. n], E[g^2] and the tail past them;
 * sym: the degrees of the other parity past the lone one are 0 (from the table: mt_lookup) */
static int mehler_terms(nk_act_kind kind, int deriv, const double *h, int n, double e2, double tail, int rc,
                        int sym, double tol, double *g, double *need, double *tau)
{
    const int ns = NK_MEHLER_TERMS, odd = nk_mehler_odd(kind, deriv);
    const int use = nk_mehler_terms(kind, deriv);   /* (the terms the engine can sum) */
    /* g[0]: the one degree of the other parity (0 for an odd form, 1 for an even one), g[1 + j]:
     * degree 2j + 1 (odd) or 2j (even).  The degrees of the other parity past it vanish by
     * symmetry; what the quadrature left there is added to the tail. */
    g[0] = h[odd ? 0 : 1];
    double other = 0;
    for (int k = odd ? 2 : 3; k <= n && !sym; k += 2) other += h[k] * h[k];
    for (int j = 0; j < ns; j++) g[1 + j] = h[odd ? 2 * j + 1 : 2 * j];
    /* the energy after m parity terms, summed from the end (no cancellation against E[g^2]),
     * and at each level r of |rho| the fewest m with rest(m) r^(first degree left out) <=
     * tol E (the quadrature's residue in the other parity, ~1e-28 E, counted unscaled) */
    double rest[NK_MEHLER_TERMS + 1];
    rest[ns] = tail;
    for (int m = ns - 1; m >= 0; m--) rest[m] = rest[m + 1] + g[1 + m] * g[1 + m];
    *tau = e2 > 0 ? sqrt((rest[use] + other) / e2) : 0;
    terms_levels(odd, use, rest, other, tol, e2, need);
    if (rc) {
        *tau = 1;
        for (int l = 0; l < NK_MEHLER_LEVELS; l++) need[l] = use + 1;
    }
    return rc;
}

int nk_mehler_coeffs(const nk_act *act, int deriv, double a, double tol, double *g, double *need, double *tau)
{
    const int n = 2 * NK_MEHLER_TERMS + 1;
    double h[2 * NK_MEHLER_TERMS + 2], e2, tail, hd[2 * NK_MEHLER_TERMS + 2], e2d, taild;
    int tab, own;
    const int rc = deriv ? herm_at(act, 1, a, n, h, &e2, &tail, &tab)
                         : phi_terms(act, a, n, h, &e2, &tail, &tab, &own, hd, &e2d, &taild);
    return mehler_terms(act->kind, deriv, h, n, e2, tail, rc, tab, tol, g, need, tau);
}

/* sqrt(k), k <= 2 NS + 2 (a record forms phi''s terms with them) */
static double root_k[2 * NK_MEHLER_TERMS + 3];
static pthread_once_t root_once = PTHREAD_ONCE_INIT;
static void root_init(void)
{
    for (int k = 0; k < 2 * NK_MEHLER_TERMS + 3; k++) root_k[k] = sqrt(k);
}

/* phi''s terms as the sums form them from phi's h[0 .. 2 NS + 1] at a > 0: hd[k] =
 * sqrt((k + 1) / a) h[k + 1], hd[2 NS + 1] = 0 */
static void phid_terms(double a, const double *h, double *hd)
{
    enum { n = 2 * NK_MEHLER_TERMS + 1 };
    pthread_once(&root_once, root_init);
    const double ra = 1 / sqrt(a);
    for (int k = 0; k < n; k++) hd[k] = root_k[k + 1] * ra * h[k + 1];
    hd[n] = 0;
}

/* series d's needs per level and tau into a record (planes `stride` apart) */
static void rec_series(double *rec, size_t stride, int d, const double *need, double tau)
{
    for (int l = 0; l < NK_MEHLER_LEVELS; l++) rec[(NK_MEHLER_NEED(d) + l) * stride] = need[l];
    rec[NK_MEHLER_TAU(d) * stride] = tau;
}

/* nk_mehler_record where phi's degrees come from its table and are its own, and E[phi'^2] from
 * phi''s table (the common case; -1 otherwise, for the general path below): the same operations
 * as that path (herm_at, phi_terms, mehler_terms for phi and phi'), each sum in the same order,
 * so the same bits, but the independent sums side by side in one loop: herm_at's sum of
 * squares, phi_terms' weighted sum and phi''s sum of squares forward, both series' energies
 * past m terms backward.  Each was a chain of ~100 dependent adds of its own, run one after
 * another: a tanh record at variances 0.3-3 took 0.77-0.82 us before, 0.60-0.65 after (one
 * thread, alternating builds). */
static int record_tab(const nk_act *act, double a, double tol, double *rec, size_t stride)
{
    enum { n = 2 * NK_MEHLER_TERMS + 1, ns = NK_MEHLER_TERMS };
    const nk_act_kind kind = act->kind;
    const int odd = nk_mehler_odd(kind, 0), oddd = nk_mehler_odd(kind, 1);
    double h[n + 1], hd[n + 1], e2, e2d;
    if (!(a > 0) || mt_lookup(act, 0, a, h, &e2) != 0) return -1;
    phid_terms(a, h, hd);
    /* the degrees MT_EACH gives (mt_each_k), NS + 2 of each parity */
    double sum = 0, s1 = 0, sumd = 0;
    for (int j = 0; j < ns + 2; j++) {
        const int k = mt_each_k(j, odd), kd = mt_each_k(j, oddd);
        sum += h[k] * h[k];
        s1 += k * h[k] * h[k];
        sumd += hd[kd] * hd[kd];
    }
    /* phi_terms would take phi's degrees from phi''s (own = 0) */
    if (s1 < MT_OWN * e2 || mt_lookup_e2(act, 1, a, &e2d) != 0) return -1;
    const double tail = mt_tail(e2, sum, 3), taild = mt_tail(e2d, sumd, 5);
    /* mehler_terms of both series (sym: the other parity's degrees are 0) */
    const int use = nk_mehler_terms(kind, 0), used = nk_mehler_terms(kind, 1);
    double g[ns + 1], gd[ns + 1], rest[ns + 1], restd[ns + 1], need[NK_MEHLER_LEVELS], needd[NK_MEHLER_LEVELS];
    const double other = 0;
    for (int j = 0; j < ns; j++) {
        g[1 + j] = h[odd ? 2 * j + 1 : 2 * j];
        gd[1 + j] = hd[oddd ? 2 * j + 1 : 2 * j];
    }
    g[0] = h[odd ? 0 : 1];
    rest[ns] = tail;
    restd[ns] = taild;
    for (int m = ns - 1; m >= 0; m--) {
        rest[m] = rest[m + 1] + g[1 + m] * g[1 + m];
        restd[m] = restd[m + 1] + gd[1 + m] * gd[1 + m];
    }
    terms_levels(odd, use, rest, other, tol, e2, need);
    terms_levels(oddd, used, restd, other, tol, e2d, needd);
    rec_series(rec, stride, 0, need, e2 > 0 ? sqrt((rest[use] + other) / e2) : 0);
    rec_series(rec, stride, 1, needd, e2d > 0 ? sqrt((restd[used] + other) / e2d) : 0);
    for (int i = 0; i <= ns; i++) rec[(NK_MEHLER_G + i) * stride] = g[i];
    return 0;
}

void nk_mehler_record(const nk_act *act, double a, double tol, double *rec, size_t stride)
{
    if (record_tab(act, a, tol, rec, stride) == 0) return;
    const int n = 2 * NK_MEHLER_TERMS + 1;
    double h[2 * NK_MEHLER_TERMS + 2], e2, tail, g[NK_MEHLER_TERMS + 1], need[NK_MEHLER_LEVELS], tau;
    double hd[2 * NK_MEHLER_TERMS + 2], e2d, taild;
    int tab, own;
    /* a failed quadrature leaves need past the stored terms and tau = 1: every entry of this
     * variance then goes to the nested integration */
    const int rc = phi_terms(act, a, n, h, &e2, &tail, &tab, &own, hd, &e2d, &taild);
    mehler_terms(act->kind, 0, h, n, e2, tail, rc, tab, tol, g, need, &tau);
    rec_series(rec, stride, 0, need, tau);
    for (int i = 0; i <= NK_MEHLER_TERMS; i++) rec[(NK_MEHLER_G + i) * stride] = g[i];
    /* a variance 0 (u = 0): h_1(a) / sqrt(a) -> phi'(0), held as phi's degree-1 term with the
     * inverse root counted as 1 where the sums form E phi' phi' (rho is 0 there: every other use
     * of the term is multiplied by it), so E phi'(0) phi'(v) = phi'(0) E phi'(v) */
    if (a == 0) rec[(NK_MEHLER_G + (nk_mehler_odd(act->kind, 0) ? 1 : 0)) * stride] = nk_act_deriv(act, 0);
    /* phi''s needs and tail: from phi''s terms as the sums form them, sqrt((k + 1) / a) h_{k+1}
     * (within 1e-12 of phi''s own table or quadrature: test_smooth, test_mehler_derived), and
     * E[phi'^2] from phi''s table, one component: half the table's work of a record (phi''s
     * whole interpolant otherwise).  The tail by difference gets 2e-12 E more for those 1e-12.
     * Where phi's terms are phi''s (own = 0), phi''s own as phi_terms left them; off the
     * table, phi''s own. */
    if (!own) {
        mehler_terms(act->kind, 1, hd, n, e2d, taild, 0, tab, tol, g, need, &tau);
    } else if (!rc && tab && mt_lookup_e2(act, 1, a, &e2d) == 0) {
        double sum = 0;
        phid_terms(a, h, hd);
        MT_EACH(k, nk_mehler_odd(act->kind, 1), n) sum += hd[k] * hd[k];
        taild = mt_tail(e2d, sum, 5);
        mehler_terms(act->kind, 1, hd, n, e2d, taild, 0, 1, tol, g, need, &tau);
    } else {
        nk_mehler_coeffs(act, 1, a, tol, g, need, &tau);
    }
    rec_series(rec, stride, 1, need, tau);
}

int nk_mehler_tail_over(nk_act_kind k, const double ta[2], const double tb[2], double ar, double tol)
{
    int over = 0;
    for (int d = 0; d < 2; d++) {
        const int first = 2 * nk_mehler_terms(k, d) + nk_mehler_odd(k, d);
        if (ta[d] * tb[d] > tol && ta[d] * tb[d] * pow(ar, first) > tol) over |= 1 << d;
    }
    return over;
}

void nk_mehler_nested(const nk_act *act, int over, double a, double b, double c, double tol, double *k, double *kd)
{
    double v, e;
    if (over & 1) *k = nk_dual_nested(act, 0, a, b, c, 0.1 * tol, &v, &e) ? NAN : v;
    if (kd && (over & 2)) *kd = nk_dual_nested(act, 1, a, b, c, 0.1 * tol, &v, &e) ? NAN : v;
}

/* ---- the Mehler form on a grid of pairs (the layer-by-layer and MLP paths, float64) ---- */

size_t nk_mehler_work(size_t nc) { return (NK_MEHLER_REC + 6) * nc; }

/* Each entry is, with p(x) = sum_{j < m} Q_j x^j, Q_j = g_{1+j}(a) g_{1+j}(b) phi's parity terms
 * (nk_mehler_coeffs), Q_l the lone degree's product and x = rho^2,
 *   odd phi:  E phi phi = Q_l + rho p(x),   E phi' phi' = (p(x) + 2 x p'(x)) / sqrt(a b)
 *   even phi: E phi phi = Q_l rho + p(x),   E phi' phi' = (Q_l + 2 rho p'(x)) / sqrt(a b)
 * (E phi' phi' = d E phi phi / dc, Price), p and p' by Horner's rule, as the plane engine's
 * mehler_planes: one m per row of the grid (nk_mehler_span of the largest needs of the row's and
 * the columns' variances at the first level above the row's largest |rho|), so that the loop
 * over the columns is a vector loop.  The columns' records are gathered first into planes of nc
 * (the row's are scalars in that loop).  Entries past the usable terms: nk_mehler_tail_over,
 * nk_mehler_nested. */
void nk_mehler_grid(const nk_act *act, double *K, double *T, int nr, int nc, const double *sa, size_t sa_step,
                    const double *sb, size_t sb_step, size_t plen, double *work)
{
    const double tol = NK_MEHLER_TOL64;
    const int odd = nk_mehler_odd(act->kind, 0);
    double *restrict rec = work, *restrict bv = work + (size_t)NK_MEHLER_REC * nc, *restrict rbv = bv + nc;
    double *restrict r = rbv + nc, *restrict x = r + nc, *restrict p = x + nc, *restrict dp = x + 2 * (size_t)nc;
    double colneed[2][NK_MEHLER_LEVELS] = {{0}};
    for (int c = 0; c < nc; c++) {
        const double *q = sb + (size_t)c * sb_step;
        bv[c] = q[0];
        rbv[c] = q[2 * plen];
        for (size_t i = 0; i < NK_MEHLER_REC; i++) rec[i * nc + c] = q[(3 + i) * plen];
        for (int d = 0; d < 2; d++)
            for (int l = 0; l < NK_MEHLER_LEVELS; l++)
                colneed[d][l] = fmax(colneed[d][l], rec[(NK_MEHLER_NEED(d) + l) * nc + c]);
    }
    for (int row = 0; row < nr; row++) {
        const double *pa = sa + (size_t)row * sa_step, *ga = pa + 3 * plen;
        const double ra = pa[2 * plen];
        double *restrict kr = K + (size_t)row * nc, *restrict tr = T ? T + (size_t)row * nc : NULL;
        double rmax = 0;
        for (int c = 0; c < nc; c++) {
            double rho = kr[c] * ra * rbv[c];
            rho = rho > 1 ? 1 : rho < -1 ? -1 : rho;
            r[c] = rho;
            x[c] = rho * rho;
            rmax = x[c] > rmax ? x[c] : rmax;
        }
        const int lev = nk_mehler_level_of(rmax);
        int need[2], over;
        for (int d = 0; d < 2; d++)
            need[d] = (int)fmax(ga[(NK_MEHLER_NEED(d) + lev) * plen], colneed[d][lev]);
        const int m = nk_mehler_span(act->kind, need, &over);
        if (!T) over &= 1;
        for (int c = 0; c < nc; c++) p[c] = dp[c] = 0;
        for (int i = m; i >= 1; i--) {
            const double gi = ga[(NK_MEHLER_G + i) * plen];
            const double *restrict cb = rec + (NK_MEHLER_G + i) * nc;
            for (int c = 0; c < nc; c++) {
                dp[c] = dp[c] * x[c] + p[c];
                p[c] = p[c] * x[c] + gi * cb[c];
            }
        }
        const double g0 = ga[NK_MEHLER_G * plen];
        const double *restrict cb0 = rec + NK_MEHLER_G * nc;
        for (int c = 0; c < nc; c++) {
            const double q0 = g0 * cb0[c], rab = (ra > 0 ? ra : 1) * (rbv[c] > 0 ? rbv[c] : 1);
            NK_MEHLER_CLOSE(odd, q0, r[c], x[c], p[c], dp[c], rab, p[c], dp[c]);
        }
        if (over) {
            const double ta[2] = {ga[NK_MEHLER_TAU(0) * plen], ga[NK_MEHLER_TAU(1) * plen]};
            for (int c = 0; c < nc; c++) {
                const double tb[2] = {rec[NK_MEHLER_TAU(0) * nc + c], rec[NK_MEHLER_TAU(1) * nc + c]};
                const int bad = nk_mehler_tail_over(act->kind, ta, tb, fabs(r[c]), tol) & over;
                if (bad) nk_mehler_nested(act, bad, pa[0], bv[c], kr[c], tol, &p[c], T ? &dp[c] : NULL);
            }
        }
        for (int c = 0; c < nc; c++) kr[c] = p[c];
        if (tr)
            for (int c = 0; c < nc; c++) tr[c] *= dp[c];
    }
}
