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
#define GH1_MAX 512
#define Q_MAX_ITERS 100000
/* Lengths are clamped here when evaluating the maps, so that q* = 0 or infinity (homogeneous
 * activations without bias) still give the limits of the slopes. */
#define Q_TINY 1e-150
#define Q_HUGE 1e150

nk_status nk_act_parse(const char *name, nk_act *out, nk_error *err)
{
    static const struct { const char *name; nk_act_kind kind; } plain[] = {
        {"identity", NK_ACT_IDENTITY}, {"relu", NK_ACT_RELU}, {"erf", NK_ACT_ERF},
        {"tanh", NK_ACT_TANH}, {"gelu", NK_ACT_GELU}, {"sigmoid", NK_ACT_SIGMOID},
        {"sin", NK_ACT_SIN}, {"softplus", NK_ACT_SOFTPLUS}, {"swish", NK_ACT_SWISH}};
    if (!name) return nk_fail(err, NK_ERR_INPUT, "activation: no name given");
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < sizeof plain / sizeof *plain; i++)
        if (!strcmp(name, plain[i].name)) { out->kind = plain[i].kind; return NK_OK; }
    double a = 0, b = 0;
    int n = 0;
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
                   "sin, softplus, swish, leaky_relu(A) or abrelu(A,B))", name);
}

/* ------------------------------------------------------ 1-D expectations -- */

/* 1-D expectations use the library's cached Gauss-Hermite rule (nk_gh_rule, act.c). */

static int order_of(const nk_mf_params *p) { return p->quad_order > 0 ? p->quad_order : 64; }
/* 1-D expectations are cheap: use at least 256 points (at most the cache's 512). */
static int order_1d(const nk_mf_params *p)
{
    int o = 4 * order_of(p);
    return o < 256 ? 256 : o > GH1_MAX ? GH1_MAX : o;
}

static double clamp_q(double q) { return q < Q_TINY ? Q_TINY : q > Q_HUGE ? Q_HUGE : q; }

/* E[phi(sqrt(q) z)^2] and E[phi'(sqrt(q) z)^2]: closed form when nkern has one, otherwise
 * 1-D Gauss-Hermite (the 2-D rule would waste order^2 evaluations on a degenerate pair). */
static nk_status diag_moments(const nk_mf_params *p, double q, double *m2, double *d2, nk_error *err)
{
    if (nk_act_dual(&p->act, q, q, q, 0, m2, d2) == NK_OK) return NK_OK;
    const double *x = NULL, *w = NULL;
    int order = order_1d(p);
    nk_status st = nk_gh_rule(order, &x, &w, err);
    if (st != NK_OK) return st;
    double s = sqrt(q), a = 0, b = 0;
    for (int i = 0; i < order; i++) {
        double f = nk_act_value(&p->act, s * x[i]), g = nk_act_deriv(&p->act, s * x[i]);
        a += w[i] * f * f;
        b += w[i] * g * g;
    }
    *m2 = a;
    *d2 = b;
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
    double qe = clamp_q(q), k, k1;
    st = nk_act_dual(&p->act, qe, qe, qe * c, order_of(p), &k, NULL);
    if (st == NK_OK) st = nk_act_dual(&p->act, qe, qe, qe, order_of(p), &k1, NULL);
    if (st != NK_OK) return nk_fail(err, st, "mean field: dual activation failed at q=%g, c=%g", qe, c);
    /* normalize by the next length: equal to q* at the fixed point, and scale-free for
     * homogeneous activations whose q* is 0 or infinite.  The same (2-D) rule computes the
     * numerator and the length, so cmap(1) = 1 exactly whatever the quadrature error. */
    double qn = p->sw2 * k1 + p->sb2, cn = qn > 0 ? (p->sw2 * k + p->sb2) / qn : 1;
    *c_next = cn > 1 ? 1 : cn < -1 ? -1 : cn;
    return NK_OK;
}

nk_status nk_mf_chi(const nk_mf_params *p, double q, double c, double *chi, nk_error *err)
{
    nk_status st = check_params(p, err);
    if (st != NK_OK) return st;
    double qe = clamp_q(q), kd, m2;
    if (c >= 1) st = diag_moments(p, qe, &m2, &kd, err);
    else {
        st = nk_act_dual(&p->act, qe, qe, qe * c, order_of(p), NULL, &kd);
        if (st != NK_OK) st = nk_fail(err, st, "mean field: dual activation failed at q=%g, c=%g", qe, c);
    }
    if (st != NK_OK) return st;
    *chi = p->sw2 * kd;
    return NK_OK;
}

/* 1/|log chi|: the depth over which deviations shrink (chi < 1) or grow by e; infinite
 * within 1e-9 of chi = 1, the tolerance of the phase classification. */
static double depth_scale(double chi)
{
    double l = fabs(log(chi));
    return l > 1e-9 ? 1 / l : INFINITY;
}

/* q* by iteration (see nk_mf_solve); *iters receives the number of steps. */
static nk_status solve_q(const nk_mf_params *p, double *q_star, int *iters, nk_error *err)
{
    nk_status st;
    /* Plain iteration finds the stable fixed point but crawls (like 1/l) near criticality;
     * once the map is locally contracting (|f'(q)| < 1), Newton steps on f(q) - q take over.
     * Newton is never used where f' >= 1, so it cannot land on an unstable fixed point. */
    double q = p->q0 > 0 ? p->q0 : 1, qn = q;
    int it = 0;
    for (; it < Q_MAX_ITERS; it++) {
        double f;
        if ((st = nk_mf_qmap(p, q, &f, err)) != NK_OK) return st;
        /* a residual at rounding level ends the search: near criticality (f' -> 1) Newton
         * steps amplify that rounding and would never meet the step tolerance */
        if (q > 0 && fabs(f - q) <= 1e-15 * q) { qn = f; break; }
        qn = f;
        if (it >= 20 && q > Q_TINY) {
            double h = 1e-6 * q, fp, fm;
            if ((st = nk_mf_qmap(p, q + h, &fp, err)) != NK_OK) return st;
            if ((st = nk_mf_qmap(p, q - h, &fm, err)) != NK_OK) return st;
            double slope = (fp - fm) / (2 * h);
            if (fabs(slope) < 1 - 1e-12) {
                double cand = q - (f - q) / (slope - 1);
                /* an overshoot below 0 is replaced by halving, which keeps q positive */
                if (isfinite(cand)) qn = cand >= 0 ? cand : 0.5 * q;
            }
        }
        if (!(qn < Q_HUGE)) { qn = INFINITY; break; }
        if (qn < Q_TINY) { qn = 0; break; }
        double dq = fabs(qn - q);
        q = qn;
        if (dq <= 1e-14 * q) break;
    }
    *q_star = qn;
    *iters = it + 1;
    return NK_OK;
}

nk_status nk_mf_solve(const nk_mf_params *p, nk_mf_result *r, nk_error *err)
{
    memset(r, 0, sizeof *r);
    nk_status st = check_params(p, err);
    if (st != NK_OK) return st;
    double qn;
    if ((st = solve_q(p, &qn, &r->q_iters, err)) != NK_OK) return st;
    r->q_star = qn;
    double qe = clamp_q(qn);
    /* chi_q: central difference of the length map at q* */
    double h = 1e-5 * qe, fp, fm;
    if ((st = nk_mf_qmap(p, qe + h, &fp, err)) != NK_OK) return st;
    if ((st = nk_mf_qmap(p, qe - h, &fm, err)) != NK_OK) return st;
    r->chi_q = (fp - fm) / (2 * h);
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
    int iters;
    nk_status st = solve_q(&p, &q, &iters, err);
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
