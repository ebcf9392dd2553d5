/* synth.c -- samples on products of spheres and Gegenbauer product targets (nk_synth.h). */
#include "nk_synth.h"
#include "nk_data.h"
#include "nk_theory.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PI 3.14159265358979323846
#define MAX_DEGREE 1000

/* uniform in (0, 1): 53 random bits, offset by half a step so log() is finite */
static double unit_uniform(nk_rng *r) { return ((nk_rng_next(r) >> 11) + 0.5) / 9007199254740992.0; }

static double std_normal(nk_rng *r)
{
    /* Box-Muller, one of the pair */
    return sqrt(-2 * log(unit_uniform(r))) * cos(2 * PI * unit_uniform(r));
}

/* a uniform unit vector in R^d (normalized Gaussian; a zero draw has probability 0 but is
 * redrawn anyway) */
static void unit_vector(nk_rng *r, int d, double *u)
{
    double s;
    do {
        s = 0;
        for (int j = 0; j < d; j++) { u[j] = std_normal(r); s += u[j] * u[j]; }
    } while (!(s > 0));
    s = 1 / sqrt(s);
    for (int j = 0; j < d; j++) u[j] *= s;
}

nk_status nk_synth_parse_target(const char *s, int m, nk_synth_target *t, nk_error *err)
{
    if (m < 1 || m > NK_SYNTH_MAX_PATCHES)
        return nk_fail(err, NK_ERR_INPUT, "target: %d patches (use 1..%d)", m, NK_SYNTH_MAX_PATCHES);
    t->m = m;
    t->nterms = 0;
    const char *p = s;
    if (!s || !*s) return nk_fail(err, NK_ERR_INPUT, "target: empty (use e.g. '0:2,1:2' = P_2 on patch 0 times P_2 on patch 1)");
    for (;;) {
        if (t->nterms == NK_SYNTH_MAX_TERMS)
            return nk_fail(err, NK_ERR_INPUT, "target '%s': more than %d terms (combine terms)", s, NK_SYNTH_MAX_TERMS);
        nk_synth_term *term = &t->term[t->nterms++];
        memset(term, 0, sizeof *term);
        term->coef = 1;
        char seen[NK_SYNTH_MAX_PATCHES] = {0};
        /* optional coefficient "C*" */
        const char *star = p;
        while (*star && *star != '*' && *star != '+' && *star != ':') star++;
        if (*star == '*') {
            char *end;
            errno = 0;
            double c = strtod(p, &end);
            if (end != star || errno || !isfinite(c))
                return nk_fail(err, NK_ERR_INPUT, "target '%s': at position %d: coefficient is not a finite number (use C*P:K)", s, (int)(p - s) + 1);
            term->coef = c;
            p = star + 1;
        }
        for (;;) {
            char *end;
            if (!isdigit((unsigned char)*p))
                return nk_fail(err, NK_ERR_INPUT, "target '%s': at position %d: expected a patch number (use P:K, e.g. 0:2)", s, (int)(p - s) + 1);
            long patch = strtol(p, &end, 10);
            if (*end != ':')
                return nk_fail(err, NK_ERR_INPUT, "target '%s': at position %d: expected ':' after the patch (use P:K)", s, (int)(end - s) + 1);
            if (patch >= m)
                return nk_fail(err, NK_ERR_INPUT, "target '%s': at position %d: patch %ld does not exist (%d patches: 0..%d)", s, (int)(p - s) + 1, patch, m, m - 1);
            p = end + 1;
            if (!isdigit((unsigned char)*p))
                return nk_fail(err, NK_ERR_INPUT, "target '%s': at position %d: expected a degree (use P:K, e.g. 0:2)", s, (int)(p - s) + 1);
            long k = strtol(p, &end, 10);
            if (k > MAX_DEGREE)
                return nk_fail(err, NK_ERR_INPUT, "target '%s': at position %d: degree %ld (use 0..%d)", s, (int)(p - s) + 1, k, MAX_DEGREE);
            if (seen[patch])
                return nk_fail(err, NK_ERR_INPUT, "target '%s': at position %d: patch %ld appears twice in one term (give each patch one degree)", s, (int)(p - s) + 1, patch);
            term->degree[patch] = (int)k;
            seen[patch] = 1;
            p = end;
            if (*p == ',') { p++; continue; }
            break;
        }
        if (*p == '+') { p++; continue; }
        if (*p)
            return nk_fail(err, NK_ERR_INPUT, "target '%s': at position %d: unexpected '%c' (terms are P:K,P:K joined by '+')", s, (int)(p - s) + 1, *p);
        return NK_OK;
    }
}

nk_status nk_synth_check(const nk_synth_target *t, nk_error *err)
{
    if (t->m < 1 || t->m > NK_SYNTH_MAX_PATCHES)
        return nk_fail(err, NK_ERR_INPUT, "synth: %d patches (use 1..%d)", t->m, NK_SYNTH_MAX_PATCHES);
    if (t->n0 < 2) return nk_fail(err, NK_ERR_INPUT, "synth: patch dimension n0=%d (use >= 2: each patch lies on S^(n0-1))", t->n0);
    if (t->nterms > NK_SYNTH_MAX_TERMS) return nk_fail(err, NK_ERR_INPUT, "synth: %zu terms (at most %d)", t->nterms, NK_SYNTH_MAX_TERMS);
    if (!(t->noise >= 0) || !isfinite(t->noise)) return nk_fail(err, NK_ERR_INPUT, "synth: noise variance %g (use a finite value >= 0)", t->noise);
    for (size_t j = 0; j < t->nterms; j++) {
        if (!isfinite(t->term[j].coef)) return nk_fail(err, NK_ERR_INPUT, "synth: term %zu has a non-finite coefficient", j);
        for (int i = 0; i < NK_SYNTH_MAX_PATCHES; i++)
            if (t->term[j].degree[i] < 0 || t->term[j].degree[i] > MAX_DEGREE || (i >= t->m && t->term[j].degree[i]))
                return nk_fail(err, NK_ERR_INPUT, "synth: term %zu: degree %d on patch %d (degrees 0..%d on patches 0..%d)", j,
                               t->term[j].degree[i], i, MAX_DEGREE, t->m - 1);
    }
    return NK_OK;
}

nk_status nk_synth_directions(const nk_synth_target *t, double *z, nk_error *err)
{
    nk_status st = nk_synth_check(t, err);
    if (st != NK_OK) return st;
    nk_rng r;
    nk_rng_seed(&r, t->dir_seed ^ 0x5A17D1EC7105ULL);
    for (int i = 0; i < t->m; i++) unit_vector(&r, t->n0, z + (size_t)i * t->n0);
    return NK_OK;
}

static int max_degree(const nk_synth_target *t)
{
    int kmax = 0;
    for (size_t j = 0; j < t->nterms; j++)
        for (int i = 0; i < t->m; i++) kmax = t->term[j].degree[i] > kmax ? t->term[j].degree[i] : kmax;
    return kmax;
}

nk_status nk_synth_sample(const nk_synth_target *t, size_t n, uint64_t sample_seed, nk_array *x, nk_array *y,
                          double *f_clean, nk_error *err)
{
    memset(x, 0, sizeof *x);
    if (y) memset(y, 0, sizeof *y);
    nk_status st = nk_synth_check(t, err);
    if (st != NK_OK) return st;
    if (n == 0) return nk_fail(err, NK_ERR_INPUT, "synth: no samples requested (use n >= 1)");
    int m = t->m, n0 = t->n0, kmax = max_degree(t);
    size_t shape[3] = {n, (size_t)m, (size_t)n0};
    double *z = malloc((size_t)m * n0 * sizeof *z), *p = malloc((size_t)m * (kmax + 1) * sizeof *p);
    if (!z || !p) st = nk_fail(err, NK_ERR_NOMEM, "synth: out of memory");
    if (st == NK_OK) st = nk_synth_directions(t, z, err);
    if (st == NK_OK) st = nk_array_alloc(x, 3, shape, err);
    if (st == NK_OK && y) st = nk_array_alloc(y, 1, &n, err);
    if (st == NK_OK) {
        nk_rng r;
        nk_rng_seed(&r, sample_seed ^ 0xC0FFEE5EED5ULL);
        double radius = sqrt((double)n0), sd = sqrt(t->noise);
        for (size_t s = 0; s < n; s++) {
            double *xs = x->data + s * (size_t)m * n0;
            for (int i = 0; i < m; i++) {
                double *u = xs + (size_t)i * n0, c = 0;
                unit_vector(&r, n0, u);
                for (int j = 0; j < n0; j++) c += u[j] * z[(size_t)i * n0 + j];
                nk_gegenbauer(n0, kmax, c, p + (size_t)i * (kmax + 1));
                for (int j = 0; j < n0; j++) u[j] *= radius;
            }
            double f = 0;
            for (size_t j = 0; j < t->nterms; j++) {
                double v = t->term[j].coef;
                for (int i = 0; i < m; i++) v *= p[(size_t)i * (kmax + 1) + t->term[j].degree[i]];
                f += v;
            }
            if (f_clean) f_clean[s] = f;
            /* the noise draw is made for every sample so that noise does not shift the inputs' stream */
            double e = std_normal(&r);
            if (y) y->data[s] = f + sd * e;
        }
    }
    free(z);
    free(p);
    if (st != NK_OK) {
        nk_array_free(x);
        if (y) nk_array_free(y);
    }
    return st;
}

double nk_synth_power(const nk_synth_target *t)
{
    double total = 0;
    int done[NK_SYNTH_MAX_TERMS] = {0};
    for (size_t j = 0; j < t->nterms; j++) {
        if (done[j]) continue;
        double c = 0;
        for (size_t l = j; l < t->nterms; l++)
            if (!memcmp(t->term[j].degree, t->term[l].degree, sizeof t->term[j].degree)) { c += t->term[l].coef; done[l] = 1; }
        double norm = 1;
        for (int i = 0; i < t->m; i++) norm /= nk_sphere_multiplicity(t->n0, t->term[j].degree[i]);
        total += c * c * norm;
    }
    return total;
}
