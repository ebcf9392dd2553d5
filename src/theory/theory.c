/* theory.c -- mean-field maps of deep networks: length and correlation maps, their fixed
 * points, the slopes chi_1, chi_c, chi_q and depth scales (Schoenholz et al. 2017), and the
 * critical line chi_1 = 1.  Uses only the public dual activations of nkern.h. */
#include "nk_theory.h"
#include "internal.h"

#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PI 3.14159265358979323846
/* steps of the q iteration before the fixed point is searched by a scan (solve_q) */
#define Q_ITERS 400
/* Lengths are clamped here when evaluating the maps, so that q* = 0 or infinity (homogeneous
 * activations without bias) still give the limits of the slopes. */
#define Q_TINY 1e-150
#define Q_HUGE 1e150

nk_status nk_act_parse(const char *name, nk_act *out, nk_error *err)
{
    static const struct { const char *name; nk_act_kind kind; } plain[] = {
        {"identity", NK_ACT_IDENTITY}, {"relu", NK_ACT_RELU}, {"erf", NK_ACT_ERF},
        {"tanh", NK_ACT_TANH}, {"gelu", NK_ACT_GELU}, {"sigmoid", NK_ACT_SIGMOID},
        {"sin", NK_ACT_SIN}, {"softplus", NK_ACT_SOFTPLUS}, {"swish", NK_ACT_SWISH},
        {"cos", NK_ACT_COS}, {"exp", NK_ACT_EXP}, {"sign", NK_ACT_SIGN}, {"rbf", NK_ACT_RBF}};
    if (!name) return nk_fail(err, NK_ERR_INPUT, "activation: no name given");
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < sizeof plain / sizeof *plain; i++)
        if (!strcmp(name, plain[i].name)) {
            out->kind = plain[i].kind;
            if (out->kind == NK_ACT_RBF) out->a = 1; /* rbf alone: gamma 1 */
            return NK_OK;
        }
    double a = 0, b = 0;
    int n = 0;
    if ((sscanf(name, "rbf(gamma=%lf%n", &a, &n) == 1 || sscanf(name, "rbf(%lf%n", &a, &n) == 1) && !strcmp(name + n, ")")) {
        if (!(a > 0) || !isfinite(a))
            return nk_fail(err, NK_ERR_INPUT, "activation '%s': gamma must be a finite number > 0 (write rbf(0.5) or rbf(gamma=0.5))", name);
        out->kind = NK_ACT_RBF; out->a = a;
        return NK_OK;
    }
    if (sscanf(name, "leaky_relu(%lf%n", &a, &n) == 1 && !strcmp(name + n, ")")) {
        out->kind = NK_ACT_ABRELU; out->a = a; out->b = 1;
        return NK_OK;
    }
    if (sscanf(name, "abrelu(%lf,%lf%n", &a, &b, &n) == 2 && !strcmp(name + n, ")")) {
        out->kind = NK_ACT_ABRELU; out->a = a; out->b = b;
        return NK_OK;
    }
    return nk_fail(err, NK_ERR_INPUT,
                   "activation: unknown name '%s' (use identity, relu, erf, tanh, gelu, sigmoid, "
                   "sin, cos, exp, sign, rbf, rbf(gamma=G), softplus, swish, leaky_relu(A) or abrelu(A,B))", name);
}

/* ------------------------------------------------------ 1-D expectations -- */

/* Every expectation below is a closed form (nk_act_dual with order 0) or an adaptive
 * integration that carries an error estimate (gauss.c): relative MF_TOL on the 1-D moments,
 * and for the correlated pair either the Mehler series with its tail bounded or nested
 * adaptive integration.  A missed tolerance is an error, never a silent number. */
#define MF_TOL 1e-12
/* Mehler terms for the correlation maps (h_k of the activation at the one length q) */
#define MF_TERMS 256

static double clamp_q(double q) { return q < Q_TINY ? Q_TINY : q > Q_HUGE ? Q_HUGE : q; }

static nk_status refuse(nk_error *err, const char *what, double q, double c)
{
    return nk_fail(err, NK_ERR_RUN,
                   "mean field: %s at q=%g, c=%g did not reach relative accuracy %g (the activation is too "
                   "irregular at this length for the adaptive quadrature)", what, q, c, MF_TOL);
}

typedef struct {
    const nk_act *act;
    double s;
} moment_ctx;

static void moment_fn(double z, double *out, void *ctx)
{
    const moment_ctx *m = ctx;
    const double f = nk_act_value(m->act, m->s * z), g = nk_act_deriv(m->act, m->s * z);
    out[0] = f * f;
    out[1] = g * g;
}

/* E[phi(sqrt(q) z)^2] and E[phi'(sqrt(q) z)^2]: closed form when nkern has one, otherwise
 * adaptive 1-D integration with break points at the activation's scale 1/sqrt(q). */
static nk_status diag_moments(const nk_mf_params *p, double q, double *m2, double *d2, nk_error *err)
{
    if (nk_act_dual(&p->act, q, q, q, 0, m2, d2) == NK_OK) return NK_OK;
    moment_ctx c = {&p->act, sqrt(q)};
    double v[2], e[2];
    if (nk_gauss_expect_vec(moment_fn, &c, 2, 0, 1 / sqrt(q), NULL, MF_TOL, v, e)) return refuse(err, "E[phi^2]", q, 1);
    *m2 = v[0];
    *d2 = v[1];
    return NK_OK;
}

/* The Hermite coefficients of phi or phi' at one length, kept per thread for the last q
 * (the correlation maps are evaluated many times at q* by the bisection for c*). */
typedef struct {
    nk_act act;
    int deriv, ok;
    double q, e2, tail, h[MF_TERMS + 1];
} mf_coeffs;

static _Thread_local mf_coeffs mf_cache[2];

static const mf_coeffs *coeffs_at(const nk_act *act, int deriv, double q)
{
    mf_coeffs *c = &mf_cache[deriv];
    if (!(c->ok && c->q == q && c->act.kind == act->kind && c->act.a == act->a && c->act.b == act->b)) {
        c->act = *act;
        c->deriv = deriv;
        c->q = q;
        c->ok = nk_hermite_coeffs(act, deriv, q, MF_TERMS, c->h, &c->e2, &c->tail) == 0;
    }
    return c->ok ? c : NULL;
}

/* E[g(u) g(v)] for u, v of variance q and correlation c, g = phi or phi': the Mehler series
 * sum_k h_k^2 c^k where its tail |c|^(n+1) sum_{k>n} h_k^2 is within the tolerance, else
 * nested adaptive integration. */
static nk_status pair_moment(const nk_act *act, int deriv, double q, double c, double *out, nk_error *err)
{
    const mf_coeffs *h = coeffs_at(act, deriv, q);
    if (h && pow(fabs(c), MF_TERMS + 1) * h->tail <= MF_TOL * h->e2) {
        double s = 0;
        for (int k = MF_TERMS; k >= 0; k--) s = s * c + h->h[k] * h->h[k];
        *out = s;
        return NK_OK;
    }
    double e;
    if (nk_dual_nested(act, deriv, q, q, q * c, MF_TOL, out, &e)) return refuse(err, deriv ? "E[phi'(u) phi'(v)]" : "E[phi(u) phi(v)]", q, c);
    return NK_OK;
}

static nk_status check_params(const nk_mf_params *p, nk_error *err)
{
    if (!(p->sw2 >= 0) || !(p->sb2 >= 0) || !isfinite(p->sw2) || !isfinite(p->sb2))
        return nk_fail(err, NK_ERR_INPUT, "mean field: variances sw2=%g, sb2=%g must be finite and >= 0", p->sw2, p->sb2);
    return NK_OK;
}

nk_status nk_mf_qmap(const nk_mf_params *p, double q, double *q_next, nk_error *err)
{
    nk_status st = check_params(p, err);
    if (st != NK_OK) return st;
    if (!(q >= 0)) return nk_fail(err, NK_ERR_INPUT, "mean field: length q=%g must be >= 0", q);
    double m2, d2;
    if (q == 0) m2 = nk_act_value(&p->act, 0) * nk_act_value(&p->act, 0);
    else st = diag_moments(p, q, &m2, &d2, err);
    if (st != NK_OK) return st;
    *q_next = p->sw2 * m2 + p->sb2;
    return NK_OK;
}

nk_status nk_mf_cmap(const nk_mf_params *p, double q, double c, double *c_next, nk_error *err)
{
    nk_status st = check_params(p, err);
    if (st != NK_OK) return st;
    if (!(c >= -1 - 1e-9 && c <= 1 + 1e-9)) return nk_fail(err, NK_ERR_INPUT, "mean field: correlation c=%g outside [-1, 1]", c);
    c = c > 1 ? 1 : c < -1 ? -1 : c;
    double qe = clamp_q(q), k, k1, d;
    if (c == 1) { *c_next = 1; return NK_OK; }
    if (nk_act_dual(&p->act, qe, qe, qe * c, 0, &k, NULL) == NK_OK) {
        nk_act_dual(&p->act, qe, qe, qe, 0, &k1, NULL);
    } else {
        if ((st = diag_moments(p, qe, &k1, &d, err)) != NK_OK) return st;
        if ((st = pair_moment(&p->act, 0, qe, c, &k, err)) != NK_OK) return st;
    }
    /* normalize by the next length: equal to q* at the fixed point, and scale-free for
     * homogeneous activations whose q* is 0 or infinite (cmap(1) = 1 exactly, above) */
    double qn = p->sw2 * k1 + p->sb2, cn = qn > 0 ? (p->sw2 * k + p->sb2) / qn : 1;
    *c_next = cn > 1 ? 1 : cn < -1 ? -1 : cn;
    return NK_OK;
}

nk_status nk_mf_chi(const nk_mf_params *p, double q, double c, double *chi, nk_error *err)
{
    nk_status st = check_params(p, err);
    if (st != NK_OK) return st;
    double qe = clamp_q(q), kd, m2;
    if (p->act.kind == NK_ACT_SIGN) {
        /* sign' = 2 delta: the slope of its correlation map (2/pi) asin(c) is
         * E[2 delta(u) 2 delta(v)] = 4 p(0, 0) = 2 / (pi q sqrt(1 - c^2)), infinite at c = 1
         * (Price's theorem; the NTK instead takes sign' = 0 almost everywhere, act.c) */
        *chi = c >= 1 ? INFINITY : p->sw2 * 2 / (PI * qe * sqrt((1 - c) * (1 + c)));
        return NK_OK;
    }
    if (c >= 1) st = diag_moments(p, qe, &m2, &kd, err);
    else if (nk_act_dual(&p->act, qe, qe, qe * c, 0, NULL, &kd) != NK_OK)
        st = pair_moment(&p->act, 1, qe, c, &kd, err);
    if (st != NK_OK) return st;
    *chi = p->sw2 * kd;
    return NK_OK;
}

/* 1/|log |chi||: the depth over which deviations shrink (|chi| < 1) or grow by e (a negative
 * slope, as cos's length map has, alternates their sign); infinite within 1e-9 of |chi| = 1,
 * the tolerance of the phase classification. */
static double depth_scale(double chi)
{
    double l = fabs(log(fabs(chi)));
    return l > 1e-9 ? 1 / l : INFINITY;
}

/* g(q) = f(q) - q of the length map f */
static nk_status q_gap(const nk_mf_params *p, double q, double *g, nk_error *err)
{
    double f;
    nk_status st = nk_mf_qmap(p, q, &f, err);
    *g = f - q;
    return st;
}

/* q* (see nk_mf_solve); *iters receives the number of map evaluations, *diverges 1 if q grows
 * without bound. */
static nk_status solve_q(const nk_mf_params *p, double *q_star, int *iters, int *diverges, nk_error *err)
{
    nk_status st;
    *diverges = 0;
    /* Plain iteration finds the stable fixed point but crawls (like 1/l) near criticality;
     * once the map is locally contracting (f'(q) < 1 - 1e-8: a neutral map, f' = 1 as for relu
     * at sw2 = 2, measures a slope 1 - 1e-10 by rounding, and a Newton step on that would jump
     * by 1e10 q), Newton steps on f(q) - q take over. */
    double q = p->q0 > 0 ? p->q0 : 1, qn = q;
    int it = 0, done = 0;
    for (; it < Q_ITERS && !done; it++) {
        double f;
        if ((st = nk_mf_qmap(p, q, &f, err)) != NK_OK) return st;
        /* a residual at rounding level ends the search: near criticality (f' -> 1) Newton
         * steps amplify that rounding and would never meet the step tolerance */
        if (q > 0 && fabs(f - q) <= 1e-15 * q) { qn = f; done = 1; break; }
        qn = f;
        if (it >= 20 && q > Q_TINY) {
            double h = 1e-6 * q, fp, fm;
            if ((st = nk_mf_qmap(p, q + h, &fp, err)) != NK_OK) return st;
            if ((st = nk_mf_qmap(p, q - h, &fm, err)) != NK_OK) return st;
            double slope = (fp - fm) / (2 * h);
            if (fabs(slope) < 1 - 1e-8) {
                double cand = q - (f - q) / (slope - 1);
                /* an overshoot below 0 is replaced by halving, which keeps q positive */
                if (isfinite(cand)) qn = cand >= 0 ? cand : 0.5 * q;
            }
        }
        if (!(qn < Q_HUGE)) { q = Q_HUGE; break; }
        if (qn < Q_TINY) { qn = 0; done = 1; break; }
        double dq = fabs(qn - q);
        q = qn;
        if (dq <= 1e-14 * q) done = 1;
    }
    *iters = it + 1;
    if (done) {
        *q_star = qn;
        return NK_OK;
    }
    /* Not settled: q still moves one way, toward a distant fixed point, 0 or infinity.  Scan
     * g(q) = f(q) - q at q 2^j in the direction it moves: a change of sign brackets the fixed
     * point (then bisection); none up to 1e150 means the map has no fixed point there and q
     * diverges (none down to 1e-150: it collapses to 0). */
    double lo = q, glo, ghi, hi;
    if ((st = q_gap(p, lo, &glo, err)) != NK_OK) return st;
    if (glo == 0) { *q_star = lo; return NK_OK; }
    const double step = glo > 0 ? 2 : 0.5;
    for (;;) {
        hi = lo * step;
        (*iters)++;
        if (hi > Q_HUGE) { *q_star = INFINITY; *diverges = 1; return NK_OK; }
        if (hi < Q_TINY) { *q_star = 0; return NK_OK; }
        if ((st = q_gap(p, hi, &ghi, err)) != NK_OK) return st;
        /* (g = 0 here is rounding: f(q) - q below an ulp of q, as q + sb2 at q = 1e16) */
        if (ghi != 0 && (ghi > 0) != (glo > 0)) break;
        lo = hi;
    }
    for (int i = 0; i < 200 && fabs(hi - lo) > 1e-15 * fmax(lo, hi); i++, (*iters)++) {
        double mid = 0.5 * (lo + hi), g;
        if ((st = q_gap(p, mid, &g, err)) != NK_OK) return st;
        if ((g > 0) == (glo > 0) && g != 0) lo = mid;
        else hi = mid;
    }
    *q_star = 0.5 * (lo + hi);
    return NK_OK;
}

nk_status nk_mf_solve(const nk_mf_params *p, nk_mf_result *r, nk_error *err)
{
    memset(r, 0, sizeof *r);
    nk_status st = check_params(p, err);
    if (st != NK_OK) return st;
    double qn;
    if ((st = solve_q(p, &qn, &r->q_iters, &r->q_diverges, err)) != NK_OK) return st;
    r->q_star = qn;
    double qe = clamp_q(qn);
    /* chi_q: central difference of the length map at q* */
    double h = 1e-5 * qe, fp, fm;
    if ((st = nk_mf_qmap(p, qe + h, &fp, err)) != NK_OK) return st;
    if ((st = nk_mf_qmap(p, qe - h, &fm, err)) != NK_OK) return st;
    r->chi_q = (fp - fm) / (2 * h);
    /* a length map that overflows past q* = 1e150 (exp: e^{2q}) has no finite slope there */
    if (r->q_diverges && !isfinite(r->chi_q)) r->chi_q = INFINITY;
    if ((st = nk_mf_chi(p, qe, 1, &r->chi1, err)) != NK_OK) return st;
    r->phase = fabs(r->chi1 - 1) <= 1e-9 ? NK_PHASE_CRITICAL : r->chi1 < 1 ? NK_PHASE_ORDERED : NK_PHASE_CHAOTIC;
    r->c_star = 1;
    if (r->phase == NK_PHASE_CHAOTIC) {
        /* g(c) = cmap(c) - c: g(1) = 0, g'(1) = chi_1 - 1 > 0 and g convex, so g < 0 just
         * below 1 and g(0) >= 0 (cmap(0) = (sw2 E[phi]^2 + sb2)/q* >= 0): one root in [0, 1). */
        double lo = 0, hi = 1 - 1e-9, g;
        if ((st = nk_mf_cmap(p, qe, hi, &g, err)) != NK_OK) return st;
        if (g - hi < 0) {
            for (int i = 0; i < 100 && hi - lo > 1e-13; i++) {
                double mid = 0.5 * (lo + hi);
                if ((st = nk_mf_cmap(p, qe, mid, &g, err)) != NK_OK) return st;
                if (g - mid >= 0) lo = mid;
                else hi = mid;
            }
            r->c_star = 0.5 * (lo + hi);
        }
    }
    if ((st = nk_mf_chi(p, qe, r->c_star, &r->chi_c, err)) != NK_OK) return st;
    r->xi_q = depth_scale(r->chi_q);
    r->xi_c = depth_scale(r->chi_c);
    return NK_OK;
}

/* chi_1 - 1 at weight variance sw2 (no correlation fixed point needed) */
static nk_status chi1_minus_1(const nk_mf_params *base, double sw2, double *g, nk_error *err)
{
    nk_mf_params p = *base;
    p.sw2 = sw2;
    double q, chi;
    int iters, diverges;
    nk_status st = solve_q(&p, &q, &iters, &diverges, err);
    if (st == NK_OK) st = nk_mf_chi(&p, clamp_q(q), 1, &chi, err);
    if (st == NK_OK) *g = chi - 1;
    return st;
}

nk_status nk_mf_critical_sw2(const nk_mf_params *p, double sb2, double lo, double hi,
                             double *sw2, nk_error *err)
{
    nk_mf_params q = *p;
    nk_status st = check_params(p, err);
    if (st != NK_OK) return st;
    q.sb2 = sb2;
    if (p->act.kind == NK_ACT_SIGN)
        return nk_fail(err, NK_ERR_INPUT, "critical line: sign has chi_1 = infinity at every sw2 (its correlation map "
                       "(2/pi) asin c has an infinite slope at c = 1): there is no critical line (use a smooth activation such as erf)");
    double glo, ghi, g;
    if ((st = chi1_minus_1(&q, lo, &glo, err)) != NK_OK) return st;
    if ((st = chi1_minus_1(&q, hi, &ghi, err)) != NK_OK) return st;
    if ((glo > 0) == (ghi > 0))
        return nk_fail(err, NK_ERR_RUN, "critical line: chi_1 - 1 has the same sign at sw2=%g and %g (sb2=%g) (widen the sw2 range)", lo, hi, sb2);
    for (int i = 0; i < 60 && hi - lo > 1e-12 * hi; i++) {
        double mid = 0.5 * (lo + hi);
        if ((st = chi1_minus_1(&q, mid, &g, err)) != NK_OK) return st;
        if ((g > 0) == (ghi > 0)) hi = mid;
        else lo = mid;
    }
    *sw2 = 0.5 * (lo + hi);
    return NK_OK;
}
