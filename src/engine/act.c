/* act.c -- activations and their duals E[phi(u)phi(v)], E[phi'(u)phi'(v)] for
 * (u, v) ~ N(0, [[a, c], [c, b]]): closed forms where they exist, Gauss-Hermite otherwise. */
#include "internal.h"

#include <lapacke.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PI 3.14159265358979323846
#define GH_MAX_ORDER 512

const char *nk_act_name(nk_act_kind k)
{
    static const char *names[] = {"identity", "relu", "abrelu", "erf", "tanh", "gelu",
                                  "sigmoid", "sin", "softplus", "swish", "cos", "exp", "rbf", "sign"};
    return (unsigned)k < sizeof names / sizeof *names ? names[k] : "?";
}

int nk_act_has_closed_form(nk_act_kind k)
{
    return k == NK_ACT_IDENTITY || k == NK_ACT_RELU || k == NK_ACT_ABRELU || k == NK_ACT_ERF || k == NK_ACT_GELU ||
           k == NK_ACT_SIN || k == NK_ACT_COS || k == NK_ACT_EXP || k == NK_ACT_RBF || k == NK_ACT_SIGN;
}

int nk_act_exp_dual(nk_act_kind k)
{
    return k == NK_ACT_SIN || k == NK_ACT_COS || k == NK_ACT_EXP || k == NK_ACT_RBF;
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

double nk_act_value(const nk_act *act, double x)
{
    switch (act->kind) {
    case NK_ACT_IDENTITY: return x;
    case NK_ACT_RELU: return x > 0 ? x : 0;
    case NK_ACT_ABRELU: return x < 0 ? act->a * x : act->b * x;
    case NK_ACT_ERF: return erf(x);
    case NK_ACT_TANH: return tanh(x);
    case NK_ACT_GELU: return 0.5 * x * erfc(-x / sqrt(2.0));
    case NK_ACT_SIGMOID: return sigmoid(x);
    case NK_ACT_SIN: return sin(x);
    case NK_ACT_SOFTPLUS: return x > 30 ? x : log1p(exp(x));
    case NK_ACT_SWISH: return x * sigmoid(x);
    case NK_ACT_COS: return cos(x);
    case NK_ACT_EXP: return exp(x);
    case NK_ACT_RBF: return sqrt(2.0) * sin(sqrt(2 * act->a) * x + PI / 4);
    case NK_ACT_SIGN: return x > 0 ? 1 : x < 0 ? -1 : 0;
    }
    return NAN;
}

double nk_act_deriv(const nk_act *act, double x)
{
    switch (act->kind) {
    case NK_ACT_IDENTITY: return 1;
    case NK_ACT_RELU: return x > 0 ? 1 : 0;
    case NK_ACT_ABRELU: return x < 0 ? act->a : act->b;
    case NK_ACT_ERF: return 2.0 / sqrt(PI) * exp(-x * x);
    /* the tails by products that keep their relative accuracy (1 - tanh^2 and 1 - sigmoid lose
     * all digits past |x| ~ 18: noise the nested integration of E[phi' phi'] could not meet its
     * relative tolerance against) */
    case NK_ACT_TANH: { double ch = cosh(x); return 1 / (ch * ch); }
    case NK_ACT_GELU: return 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) / sqrt(2 * PI);
    case NK_ACT_SIGMOID: return sigmoid(x) * sigmoid(-x);
    case NK_ACT_SIN: return cos(x);
    case NK_ACT_SOFTPLUS: return sigmoid(x);
    case NK_ACT_SWISH: { double s = sigmoid(x); return s + x * s * sigmoid(-x); }
    case NK_ACT_COS: return -sin(x);
    case NK_ACT_EXP: return exp(x);
    case NK_ACT_RBF: return 2 * sqrt(act->a) * cos(sqrt(2 * act->a) * x + PI / 4);
    case NK_ACT_SIGN: return 0; /* almost everywhere (a delta at 0: see nk_act_dual) */
    }
    return NAN;
}

/* Golub-Welsch: the nodes of the probabilists' Hermite rule are the eigenvalues of the
 * Jacobi matrix with zero diagonal and off-diagonal sqrt(k); the weights are the squared
 * first components of the normalized eigenvectors (the weight function has mass 1). */
int nk_quad_auto(const nk_act *act, double a, double b)
{
    double v = a > b ? a : b;
    if (act->kind == NK_ACT_SIGMOID) v *= 0.25;
    double n = 64 + 60 * v;
    return n > GH_MAX_ORDER ? GH_MAX_ORDER : (int)n;
}

static struct {
    pthread_mutex_t lock;
    double *x[GH_MAX_ORDER + 1], *w[GH_MAX_ORDER + 1];
} gh_cache = {PTHREAD_MUTEX_INITIALIZER, {0}, {0}};

nk_status nk_gh_rule(int order, const double **x, const double **w, nk_error *err)
{
    if (order < 1 || order > GH_MAX_ORDER)
        return nk_fail(err, NK_ERR_INPUT, "quadrature: order %d out of range (use 1..%d)", order, GH_MAX_ORDER);
    /* computed rules are never freed or changed: a published pointer can be read without the lock */
    double *ready = __atomic_load_n(&gh_cache.w[order], __ATOMIC_ACQUIRE);
    if (ready) {
        *x = gh_cache.x[order];
        *w = ready;
        return NK_OK;
    }
    nk_status st = NK_OK;
    pthread_mutex_lock(&gh_cache.lock);
    if (!gh_cache.w[order]) {
        int n = order;
        double *d = calloc((size_t)n, sizeof *d), *e = calloc((size_t)n, sizeof *e);
        double *z = calloc((size_t)n * n, sizeof *z), *wt = calloc((size_t)n, sizeof *wt);
        if (!d || !e || !z || !wt) {
            st = nk_fail(err, NK_ERR_NOMEM, "quadrature: out of memory");
        } else {
            for (int k = 1; k < n; k++) e[k - 1] = sqrt((double)k);
            lapack_int info = LAPACKE_dstev(LAPACK_COL_MAJOR, 'V', n, d, e, z, n);
            if (info != 0) {
                st = nk_fail(err, NK_ERR_RUN, "quadrature: dstev failed (info %d)", (int)info);
            } else {
                for (int k = 0; k < n; k++) wt[k] = z[(size_t)k * n] * z[(size_t)k * n];
                gh_cache.x[order] = d;
                __atomic_store_n(&gh_cache.w[order], wt, __ATOMIC_RELEASE);
                d = wt = NULL;
            }
        }
        free(d); free(e); free(z); free(wt);
    }
    if (st == NK_OK) {
        *x = gh_cache.x[order];
        *w = gh_cache.w[order];
    }
    pthread_mutex_unlock(&gh_cache.lock);
    return st;
}

/* Correlation with the convention rho = 0 when a variance is zero (a zero-variance unit is
 * constant, hence independent of everything), clamped to [-1, 1] against rounding. */
static double correlation(double a, double b, double c)
{
    double sab = sqrt(a * b);  /* exact for a == b, so x with itself gets rho == 1 exactly */
    if (!(sab > 0)) return 0;
    double rho = c / sab;
    return rho > 1 ? 1 : rho < -1 ? -1 : rho;
}

nk_status nk_act_dual_quad(const nk_act *act, double a, double b, double c, int order,
                           double *k, double *kdot)
{
    const double *x, *w;
    nk_status st = nk_gh_rule(order, &x, &w, NULL);
    if (st != NK_OK) return st;
    if (a < 0 || b < 0) return NK_ERR_INPUT;
    double rho = correlation(a, b, c), s = sqrt(1 - rho * rho), sa = sqrt(a), sb = sqrt(b);
    /* u = sqrt(a) z1, v = sqrt(b) (rho z1 + s z2): the pair has the required covariance. */
    double kk = 0, kd = 0;
    for (int i = 0; i < order; i++) {
        double u = sa * x[i], fi = 0, gi = 0;
        for (int j = 0; j < order; j++) {
            double v = sb * (rho * x[i] + s * x[j]);
            if (k) fi += w[j] * nk_act_value(act, v);
            if (kdot) gi += w[j] * nk_act_deriv(act, v);
        }
        if (k) kk += w[i] * nk_act_value(act, u) * fi;
        if (kdot) kd += w[i] * nk_act_deriv(act, u) * gi;
    }
    if (k) *k = kk;
    if (kdot) *kdot = kd;
    return NK_OK;
}

nk_status nk_act_dual(const nk_act *act, double a, double b, double c, int order, double *k,
                      double *kdot)
{
    switch (act->kind) {
    case NK_ACT_IDENTITY:
        if (k) *k = c;
        if (kdot) *kdot = 1;
        return NK_OK;
    case NK_ACT_RELU:
    case NK_ACT_ABRELU: {
        /* phi = beta relu(x) - alpha relu(-x).  With J(theta) = sin + (pi - theta) cos and
         * the pair (u, -v) at angle pi - theta:
         * E[phi phi] = sqrt(ab)/2pi [(al^2 + be^2) J(theta) - 2 al be (sin - theta cos)],
         * E[phi' phi'] = [(al^2 + be^2)(pi - theta) + 2 al be theta] / 2pi. */
        double al = act->kind == NK_ACT_RELU ? 0 : act->a, be = act->kind == NK_ACT_RELU ? 1 : act->b;
        double rho = correlation(a, b, c), th = acos(rho), sn = sqrt(1 - rho * rho);
        if (k)
            *k = sqrt(a * b) / (2 * PI) *
                 ((al * al + be * be) * (sn + (PI - th) * rho) - 2 * al * be * (sn - th * rho));
        if (kdot) *kdot = ((al * al + be * be) * (PI - th) + 2 * al * be * th) / (2 * PI);
        return NK_OK;
    }
    case NK_ACT_ERF: {
        double q = (1 + 2 * a) * (1 + 2 * b);
        double r = 2 * c / sqrt(q);
        if (r > 1) r = 1;
        if (r < -1) r = -1;
        if (k) *k = 2 / PI * asin(r);
        if (kdot) *kdot = 4 / PI / sqrt(q - 4 * c * c);
        return NK_OK;
    }
    case NK_ACT_GELU: {
        /* gelu(x) = x Phi(x) = E_w[x 1{w <= x}], w ~ N(0, 1): with s = u - w1, t = v - w2 (variances
         * 1 + a, 1 + b, covariance c), Gaussian integration by parts on E[u v 1{s > 0} 1{t > 0}]
         * gives, with S2 = (1 + a)(1 + b) and D = S2 - c^2 >= 1 + a + b,
         *   E[phi phi]   = c/4 + c asin(c/S)/2pi + (ab D + c^2) / (2pi S2 sqrt D),
         * and its derivative in c (Price's theorem),
         *   E[phi' phi'] = 1/4 + asin(c/S)/2pi + c (3 + a + b + c^2/D) / (2pi S2 sqrt D).
         * D is formed as 1 + a + b + (ab - c^2), without the cancellation of S2 - c^2. */
        double s2 = (1 + a) * (1 + b), d = a * b - c * c;
        d = 1 + a + b + (d > 0 ? d : 0);
        double r = c / sqrt(s2), as = asin(r > 1 ? 1 : r < -1 ? -1 : r), rd = sqrt(d);
        if (k) *k = 0.25 * c + c * as / (2 * PI) + (a * b * d + c * c) / (2 * PI * s2 * rd);
        if (kdot) *kdot = 0.25 + as / (2 * PI) + c * (3 + a + b + c * c / d) / (2 * PI * s2 * rd);
        return NK_OK;
    }
    case NK_ACT_SIN: {
        /* E[sin u sin v] = (E cos(u - v) - E cos(u + v)) / 2 = e^{-(a+b)/2} sinh c and, the same
         * way, E[cos u cos v] = e^{-(a+b)/2} cosh c (E cos w = e^{-var w / 2}).  Formed as
         * (e^{c-m} -+ e^{-c-m}) / 2 with m = (a+b)/2 >= |c|: no overflow at any variance. */
        const double m = 0.5 * (a + b), ep = exp(c - m), em = exp(-c - m);
        if (k) *k = 0.5 * (ep - em);
        if (kdot) *kdot = 0.5 * (ep + em);
        return NK_OK;
    }
    case NK_ACT_COS: {
        /* the same two terms as sin, the other way round: E[cos u cos v] = e^{-(a+b)/2} cosh c,
         * E[sin u sin v] = e^{-(a+b)/2} sinh c (cos' = -sin, the signs cancel) */
        const double m = 0.5 * (a + b), ep = exp(c - m), em = exp(-c - m);
        if (k) *k = 0.5 * (ep + em);
        if (kdot) *kdot = 0.5 * (ep - em);
        return NK_OK;
    }
    case NK_ACT_EXP: {
        /* u + v ~ N(0, a + b + 2c) and E e^w = e^{var w / 2}: E[e^u e^v] = e^{(a+b)/2 + c}, and
         * exp' = exp.  +inf once (a+b)/2 + c > ~709.78 (the kernel drivers then name the layer) */
        const double e = exp(0.5 * (a + b) + c);
        if (k) *k = e;
        if (kdot) *kdot = e;
        return NK_OK;
    }
    case NK_ACT_RBF: {
        /* phi(x) = sqrt 2 sin(s x + pi/4), s^2 = 2 gamma: 2 sin(s u + pi/4) sin(s v + pi/4) =
         * cos(s(u - v)) + sin(s(u + v)), whose means are e^{-s^2 (a+b-2c)/2} and 0 (odd), so
         * E[phi phi] = e^{-gamma (a+b-2c)}; phi' = 2 sqrt(gamma) cos(s x + pi/4) and
         * 2 cos cos = cos(s(u - v)) - sin(s(u + v)) give E[phi' phi'] = 2 gamma e^{-gamma (a+b-2c)}.
         * a + b - 2c = Var(u - v) >= 0, clamped against rounding (the entry stays <= 1). */
        const double d = a + b - 2 * c, e = exp(-act->a * (d > 0 ? d : 0));
        if (k) *k = e;
        if (kdot) *kdot = 2 * act->a * e;
        return NK_OK;
    }
    case NK_ACT_SIGN: {
        /* E[sign u sign v] = 1 - 2 P(sign u != sign v) = 1 - 2 theta/pi = (2/pi) asin(rho)
         * (0 when a variance is 0: sign 0 = 0).  The derivative is 0 almost everywhere, so
         * no parameter below a sign layer moves the output: E[phi' phi'] = 0, which drops the
         * NTK accumulated below, as neural-tangents' Sign does and as the gradients of a
         * finite network are.  (The distributional derivative 2 delta would give
         * 2 / (pi sqrt(ab - c^2)), the slope of the NNGP map in c: the mean-field code uses
         * that one, src/theory/theory.c.) */
        if (k) *k = 2 / PI * asin(correlation(a, b, c));
        if (kdot) *kdot = 0;
        return NK_OK;
    }
    default:
        if (order <= 0) return NK_ERR_INPUT;
        return nk_act_dual_quad(act, a, b, c, order, k, kdot);
    }
}
