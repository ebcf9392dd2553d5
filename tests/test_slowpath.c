/* test_slowpath.c -- a deliberately simple second implementation of the recursion, compared
 * with the library on random architectures and inputs.
 *
 * Independent of plan.c / ops.c / kernel.c: it walks the parsed layer tree, always keeps the
 * full P x P covariances of (x, x'), (x, x) and (x', x') for every pair (no covariance modes,
 * no cached self-variances, no separable passes, no tiles), sums windows with four nested
 * loops, and writes the ReLU and erf duals out again.  Only the spec parser is shared. */
#include "internal.h"
#include "nk_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PI 3.14159265358979323846

typedef struct {
    int h, w;           /* spatial size; 1x1 for vectors */
    int rank;           /* spatial axes present */
    double c;           /* channels */
    double *k12, *k11, *k22, *t12;   /* (h w) x (h w) */
} sstate;

static size_t npos(const sstate *s) { return (size_t)s->h * s->w; }

static double *alloc_sq(size_t P) { return calloc(P * P, sizeof(double)); }

static void free_state(sstate *s) { free(s->k12); free(s->k11); free(s->k22); free(s->t12); }

static sstate copy_state(const sstate *s)
{
    sstate c = *s;
    size_t n = npos(s) * npos(s) * sizeof(double);
    c.k12 = malloc(n); c.k11 = malloc(n); c.k22 = malloc(n); c.t12 = malloc(n);
    memcpy(c.k12, s->k12, n); memcpy(c.k11, s->k11, n); memcpy(c.k22, s->k22, n); memcpy(c.t12, s->t12, n);
    return c;
}

/* out size and padding-before of a window on an axis of n, as neural-tangents */
static void geometry(int n, int f, int s, nk_pad pad, int *out, int *pb)
{
    if (pad == PAD_VALID) { *out = (n - f) / s + 1; *pb = 0; return; }
    *out = (n + s - 1) / s;
    int t = (*out - 1) * s + f - n;
    *pb = t > 0 ? t / 2 : 0;
}

static int src_index(int q, int d, int s, int pb, int n, nk_pad pad)
{
    int i = q * s + d - pb;
    if (pad == PAD_CIRCULAR) { i %= n; if (i < 0) i += n; return i; }
    return i >= 0 && i < n ? i : -1;
}

/* window mean of one P x P matrix: same offsets (conv) or independent offsets (pool) */
static double *window(const double *in, int h, int w, int H, int W, const int f[2], const int s[2],
                      const int pb[2], nk_pad pad, int pool)
{
    size_t Pin = (size_t)h * w, Pout = (size_t)H * W;
    double *out = calloc(Pout * Pout, sizeof(double));
    for (int q0 = 0; q0 < H; q0++) for (int q1 = 0; q1 < W; q1++)
    for (int r0 = 0; r0 < H; r0++) for (int r1 = 0; r1 < W; r1++) {
        double acc = 0; int cnt = 0;
        for (int d0 = 0; d0 < f[0]; d0++) for (int d1 = 0; d1 < f[1]; d1++)
        for (int e0 = 0; e0 < f[0]; e0++) for (int e1 = 0; e1 < f[1]; e1++) {
            if (!pool && (e0 != d0 || e1 != d1)) continue;
            cnt++;
            int i0 = src_index(q0, d0, s[0], pb[0], h, pad), i1 = src_index(q1, d1, s[1], pb[1], w, pad);
            int j0 = src_index(r0, e0, s[0], pb[0], h, pad), j1 = src_index(r1, e1, s[1], pb[1], w, pad);
            if (i0 < 0 || i1 < 0 || j0 < 0 || j1 < 0) continue;
            acc += in[((size_t)i0 * w + i1) * Pin + (size_t)j0 * w + j1];
        }
        out[((size_t)q0 * W + q1) * Pout + (size_t)r0 * W + r1] = acc / cnt;
    }
    return out;
}

static void dual(const nk_act *act, int quad, double a, double b, double c, double *k, double *kd)
{
    if (act->kind == NK_ACT_RELU || act->kind == NK_ACT_ABRELU) {
        double al = act->kind == NK_ACT_RELU ? 0 : act->a, be = act->kind == NK_ACT_RELU ? 1 : act->b;
        /* theta = atan2(sqrt(ab - c^2), c), with ab - c^2 formed from the exact rounding error
         * of c^2 (fma): well conditioned as the correlation approaches +-1, where acos(c/sqrt
         * (ab)) loses half the digits */
        double n = sqrt(a * b), cc = c * c;
        double d = fma(a, b, -cc) - fma(c, c, -cc);
        double t = n > 0 ? atan2(sqrt(d > 0 ? d : 0), c) : PI / 2;
        double cs = n > 0 ? cos(t) : 0, sn = sin(t);
        /* E[phi phi] for phi = be relu(x) - al relu(-x), expanded term by term */
        double pp = n / (2 * PI) * (sn + (PI - t) * cs);         /* E[relu(u) relu(v)] */
        double pm = n / (2 * PI) * (sn - t * cs);                /* E[relu(u) relu(-v)] */
        *k = be * be * pp + al * al * pp - 2 * al * be * pm;
        *kd = (be * be + al * al) * (PI - t) / (2 * PI) + 2 * al * be * t / (2 * PI);
    } else if (act->kind == NK_ACT_ERF) {
        double d = sqrt((1 + 2 * a) * (1 + 2 * b));
        *k = 2 / PI * asin(fmax(-1, fmin(1, 2 * c / d)));
        *kd = 4 / PI / sqrt(d * d - 4 * c * c);
    } else if (act->kind == NK_ACT_IDENTITY) {
        *k = c; *kd = 1;
    } else if (quad > 0 || !nk_mehler_act(act->kind)) {
        nk_act_dual_quad(act, a, b, c, quad > 0 ? quad : nk_quad_auto(act, a, b), k, kd);
    } else {
        /* the library's default for tanh, sigmoid, softplus, swish is the Mehler series (5e-11):
         * here nested adaptive integration instead (no table, no series; Gauss-Hermite of the
         * automatic order missed by 2e-7 at variance ~9), its value taken as it is */
        double e;
        nk_dual_nested(act, 0, a, b, c, 1e-10, k, &e);
        nk_dual_nested(act, 1, a, b, c, 1e-10, kd, &e);
    }
}

static void apply_layers(const nk_layer *ls, int n, sstate *s, nk_param param, int quad)
{
    for (int li = 0; li < n; li++) {
        const nk_layer *l = &ls[li];
        size_t P = npos(s);
        if (l->type == L_DENSE || l->type == L_CONV || l->type == L_AVGPOOL) {
            int f[2] = {1, 1}, st[2] = {1, 1}, pb[2] = {0, 0}, H = s->h, W = s->w;
            if (l->type != L_DENSE) {
                for (int a = 0; a < s->rank; a++) { f[a] = l->filt[a]; st[a] = l->stride[a]; }
                geometry(s->h, f[0], st[0], l->pad, &H, &pb[0]);
                geometry(s->w, f[1], st[1], l->pad, &W, &pb[1]);
            }
            int pool = l->type == L_AVGPOOL;
            double *m12 = window(s->k12, s->h, s->w, H, W, f, st, pb, l->pad, pool);
            double *m11 = window(s->k11, s->h, s->w, H, W, f, st, pb, l->pad, pool);
            double *m22 = window(s->k22, s->h, s->w, H, W, f, st, pb, l->pad, pool);
            double *mt = window(s->t12, s->h, s->w, H, W, f, st, pb, l->pad, pool);
            size_t Q = (size_t)H * W;
            if (!pool) {
                double w2 = l->w * l->w, b2 = l->b * l->b, fan_in = s->c * f[0] * f[1];
                for (size_t e = 0; e < Q * Q; e++) {
                    double t = param == NK_PARAM_NTK ? w2 * m12[e] + b2 + w2 * mt[e]
                                                     : fan_in * m12[e] + w2 * mt[e] + (l->b != 0);
                    mt[e] = t;
                    m12[e] = w2 * m12[e] + b2; m11[e] = w2 * m11[e] + b2; m22[e] = w2 * m22[e] + b2;
                }
                s->c = l->width;
            }
            free_state(s);
            s->k12 = m12; s->k11 = m11; s->k22 = m22; s->t12 = mt; s->h = H; s->w = W;
        } else if (l->type == L_ACT) {
            double *n12 = alloc_sq(P), *n11 = alloc_sq(P), *n22 = alloc_sq(P);
            for (size_t p = 0; p < P; p++)
                for (size_t q = 0; q < P; q++) {
                    double k, kd;
                    dual(&l->act, quad, s->k11[p * P + p], s->k22[q * P + q], s->k12[p * P + q], &k, &kd);
                    n12[p * P + q] = k;
                    s->t12[p * P + q] *= kd;
                    dual(&l->act, quad, s->k11[p * P + p], s->k11[q * P + q], s->k11[p * P + q], &k, &kd);
                    n11[p * P + q] = k;
                    dual(&l->act, quad, s->k22[p * P + p], s->k22[q * P + q], s->k22[p * P + q], &k, &kd);
                    n22[p * P + q] = k;
                }
            free(s->k12); free(s->k11); free(s->k22);
            s->k12 = n12; s->k11 = n11; s->k22 = n22;
        } else if (l->type == L_FLATTEN || l->type == L_GAP) {
            double *m[4] = {s->k12, s->k11, s->k22, s->t12};
            for (int k = 0; k < 4; k++) {
                double acc = 0;
                for (size_t p = 0; p < P; p++)
                    for (size_t q = 0; q < P; q++)
                        if (l->type == L_GAP || p == q) acc += m[k][p * P + q];
                m[k][0] = acc / (l->type == L_GAP ? (double)P * P : (double)P);
            }
            if (l->type == L_FLATTEN) s->c *= (double)P;
            s->h = s->w = 1;
            s->rank = 0;
        } else if (l->type == L_RES) {
            sstate body = copy_state(s);
            apply_layers(l->body, l->nbody, &body, param, quad);
            for (size_t e = 0; e < P * P; e++) {
                s->k12[e] += body.k12[e]; s->k11[e] += body.k11[e];
                s->k22[e] += body.k22[e]; s->t12[e] += body.t12[e];
            }
            s->c = body.c;
            free_state(&body);
        }
    }
}

/* kernels of one pair; x has shape (h, w, c) flattened */
static void slow_pair(const nk_arch *a, int rank, int h, int w, int c, const double *x1, const double *x2,
                      double *nngp, double *ntk)
{
    sstate s = {h, w, rank, c, NULL, NULL, NULL, NULL};
    size_t P = (size_t)h * w;
    s.k12 = alloc_sq(P); s.k11 = alloc_sq(P); s.k22 = alloc_sq(P); s.t12 = alloc_sq(P);
    for (size_t p = 0; p < P; p++)
        for (size_t q = 0; q < P; q++) {
            double d12 = 0, d11 = 0, d22 = 0;
            for (int k = 0; k < c; k++) {
                d12 += x1[p * c + k] * x2[q * c + k];
                d11 += x1[p * c + k] * x1[q * c + k];
                d22 += x2[p * c + k] * x2[q * c + k];
            }
            s.k12[p * P + q] = d12 / c; s.k11[p * P + q] = d11 / c; s.k22[p * P + q] = d22 / c;
        }
    apply_layers(a->layers, a->n, &s, a->param, a->quad_order);
    *nngp = s.k12[0];
    *ntk = s.t12[0];
    free_state(&s);
}

static unsigned long long rng_state = 88172645463325252ULL;
static unsigned long long xorshift(void)
{
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return rng_state;
}
static double uniform(void) { return (xorshift() >> 11) * (1.0 / 9007199254740992.0); }
static int pick(int n) { return (int)(xorshift() % (unsigned long long)n); }
static double gauss(void)
{
    double u = uniform() + 1e-300, v = uniform();
    return sqrt(-2 * log(u)) * cos(2 * PI * v);
}

static const char *acts[] = {"relu", "erf", "identity", "leaky_relu(0.2)", "abrelu(-0.5,1.5)", "relu", "tanh", "gelu"};

/* A random spatial block: convs with various windows, strides, paddings, pools, res. */
static void random_spatial(char *buf, size_t cap, int rank, int allow_stride)
{
    int n = 1 + pick(3);
    for (int i = 0; i < n; i++) {
        int kind = pick(6);
        char item[160];
        const char *pads[] = {"same", "valid", "circular"};
        const char *act = acts[pick(6)];
        if (kind <= 2) {
            int f = 1 + pick(3), s = allow_stride && pick(3) == 0 ? 2 : 1;
            const char *pad = pads[pick(3)];
            if (rank == 2 && pick(2))
                snprintf(item, sizeof item, "conv(%dx%d,stride=%d,pad=%s,w=%.2f,b=%.2f) %s ", f, 1 + pick(2), s, pad, 0.8 + uniform(), pick(2) ? 0.3 * uniform() : 0.0, act);
            else
                snprintf(item, sizeof item, "conv(%d,stride=%d,pad=%s) %s ", f, s, pad, act);
        } else if (kind == 3) {
            snprintf(item, sizeof item, "res(conv(3) %s conv(%d)) ", act, 1 + 2 * pick(2));
        } else if (kind == 4 && allow_stride) {
            snprintf(item, sizeof item, "avgpool(2%s) ", pick(2) ? ",stride=1" : "");
        } else {
            snprintf(item, sizeof item, "dense %s ", act);
        }
        strncat(buf, item, cap - strlen(buf) - 1);
    }
}

static void compare(const char *spec, int rank, int h, int w, int c, int n1, int n2)
{
    nk_arch *a = NULL;
    nk_plan *p = NULL;
    nk_error err = {{0}};
    if (nk_arch_parse(spec, NULL, &a, &err) != NK_OK) { CHECK(0, "parse %s: %s", spec, err.msg); return; }
    size_t shape[3];
    int nd = 0;
    if (rank >= 1) shape[nd++] = (size_t)h;
    if (rank == 2) shape[nd++] = (size_t)w;
    shape[nd++] = (size_t)c;
    if (nk_plan_create(a, nd, shape, &p, &err) != NK_OK) {
        /* random specs may not fit the input (valid windows, strides): that is an honest refusal */
        CHECK(strstr(err.msg, "larger than") != NULL || strstr(err.msg, "changes the shape") != NULL, "plan %s: %s", spec, err.msg);
        nk_arch_free(a);
        return;
    }
    size_t len = (size_t)h * w * c;
    nk_array x1 = {0}, x2 = {0};
    size_t s1[4] = {(size_t)n1}, s2[4] = {(size_t)n2};
    for (int i = 0; i < nd; i++) s1[i + 1] = s2[i + 1] = shape[i];
    nk_array_alloc(&x1, nd + 1, s1, NULL);
    nk_array_alloc(&x2, nd + 1, s2, NULL);
    for (size_t i = 0; i < (size_t)n1 * len; i++) x1.data[i] = gauss();
    for (size_t i = 0; i < (size_t)n2 * len; i++) x2.data[i] = gauss();
    for (int sym = 0; sym < 2; sym++) {
        nk_array K = {0}, T = {0};
        nk_kernel_opts o;
        nk_kernel_opts_default(&o);
        o.nthreads = 2;
        nk_status st = nk_kernel_matrix(p, &x1, sym ? NULL : &x2, &o, &K, &T, &err);
        CHECK(st == NK_OK, "%s: %s", spec, err.msg);
        if (st != NK_OK) continue;
        const nk_array *xb = sym ? &x1 : &x2;
        int nb = sym ? n1 : n2;
        double maxk = 0, maxt = 0, ek = 0, et = 0;
        for (int i = 0; i < n1; i++)
            for (int j = 0; j < nb; j++) {
                double kk, tt;
                /* the symmetric Gram is computed for i <= j and mirrored: do the same here, so
                 * that quadrature activations (not exactly symmetric in the two variances)
                 * are evaluated on the same arguments */
                int lo = sym && j < i ? j : i, hi = sym && j < i ? i : j;
                slow_pair(a, rank, h, w, c, x1.data + lo * len, xb->data + hi * len, &kk, &tt);
                maxk = fmax(maxk, fabs(kk)); maxt = fmax(maxt, fabs(tt));
                ek = fmax(ek, fabs(kk - K.data[i * nb + j]));
                et = fmax(et, fabs(tt - T.data[i * nb + j]));
            }
        /* relative to the largest entry; rounding is amplified where a correlation is near +-1
         * (arccos is ill-conditioned there), hence 1e-9 rather than 1e-15.  The NTK's factor
         * pi - theta is linear in theta, and where a correlation is exactly 1 (one input channel
         * of one sign makes every one so) ab - c^2 is pure rounding of a, b, c, of either sign:
         * theta = sqrt(ab - c^2)/sqrt(ab) is then anything up to sqrt(eps) = 1.5e-8 in any
         * implementation, the NTK off by up to sqrt(eps)/pi per ReLU (measured 2.9e-9 relative on
         * dense relu gap dense relu dense, 4x1x1 positive inputs) */
        double tol = 1e-9, tolt = 2e-8;
        CHECK(ek <= tol * maxk && et <= tolt * maxt, "%s (%s, input %dx%dx%d): nngp err %.3g of %.3g, ntk err %.3g of %.3g",
              spec, sym ? "sym" : "x1/x2", h, w, c, ek, maxk, et, maxt);
        nk_array_free(&K);
        nk_array_free(&T);
    }
    nk_array_free(&x1); nk_array_free(&x2);
    nk_plan_free(p);
    nk_arch_free(a);
}

int main(void)
{
    int quick = getenv("NK_TEST_QUICK") != NULL;
    int cases = quick ? 12 : 60;
    for (int t = 0; t < cases; t++) {
        char spec[1024] = "";
        int shape_kind = pick(3);
        if (t % 7 == 0) strcat(spec, "param=standard width=3 ");
        if (t % 5 == 1) strcat(spec, "w=1.3 b=0.2 ");
        if (shape_kind == 0) {
            /* MLP on (N, D) */
            int depth = 1 + pick(4);
            for (int i = 0; i < depth; i++) {
                char it[64];
                snprintf(it, sizeof it, "%s %s ", pick(3) ? "dense" : "res(dense relu dense)", acts[pick(8)]);
                strcat(spec, it);
            }
            strcat(spec, "dense");
            compare(spec, 0, 1, 1, 2 + pick(6), 4, 3);
        } else {
            int rank = shape_kind;
            random_spatial(spec, sizeof spec, rank, 1);
            strcat(spec, pick(2) ? "flatten dense" : "gap dense relu dense");
            int h = 3 + pick(4), w = rank == 2 ? 2 + pick(4) : 1;
            compare(spec, rank, h, w, 1 + pick(3), 3, 2);
        }
    }
    /* fixed cases that must always be covered */
    compare("[conv(3) relu]*3 gap dense", 2, 5, 5, 2, 3, 2);
    compare("conv(3,pad=circular) erf conv(2,stride=2,pad=valid) relu flatten dense", 2, 6, 5, 1, 3, 2);
    compare("res(conv(3) relu conv(3)) avgpool(2) conv(3) relu gap dense", 2, 4, 4, 3, 3, 2);
    compare("conv(3) relu res(avgpool(3,stride=1,pad=same)) flatten dense", 1, 6, 1, 2, 3, 2);
    /* leading pools are applied to the data (plan.c): zero, wrapped and no padding */
    compare("avgpool(2) avgpool(3,stride=1,pad=same) conv(3) relu gap dense", 2, 7, 6, 2, 3, 2);
    compare("avgpool(3,stride=2,pad=circular) conv(3) relu flatten dense", 2, 7, 5, 3, 3, 2);
    compare("avgpool(2) gap dense relu dense", 1, 9, 1, 2, 3, 2);
    return nk_test_summary("test_slowpath");
}
