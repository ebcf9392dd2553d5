/* plan.c -- binding an architecture to an input shape: the program of ops, every layer's
 * shape, the covariance mode each step needs (chosen backwards from the readout), workspace
 * sizes and cost estimates. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int nk_plane_enabled = 1;

#ifndef NK_COST_TABLE
/* gemm, eng_tap, eng_conv3, eng_plane, eng_plane_f32, eng_diag, eng_diag_f32, eng_closed,
 * eng_mehler, eng_mehler_f32, mehler_self, eng_f32, eng_pool, eng_res, lbl_tap, lbl_relu, lbl_closed, mlp_relu, mlp_closed, mlp_mehler, quad_node,
 * tor_tap, tor_relu, tor_closed, tor_f32: see nk_costs below (the last four: `build/calibrate torus` on a
 * 2-core AMD EPYC Zen 5, family 26, idle, 2026-12-05: the middle of three runs) */
#define NK_COST_TABLE {2e-11, 1.59e-10, 1.17e-09, 7.16e-08, 8.46e-08, 2.27e-09, 5.97e-10, 1.17e-09, 6.29e-09, 2.25e-09, 1.84e-06, 0.339, 1.17e-09, 4.97e-10, 1.33e-10, 1.04e-08, 2.37e-08, 1.77e-09, 1.19e-08, 3.23e-08, 2.27e-08, 5.12e-10, 1.02e-09, 1.51e-08, 0.286}
#endif

size_t nk_mode_size(nk_mode m, const int hw[2])
{
    size_t p = (size_t)hw[0] * (size_t)hw[1];
    return m == NK_MODE_FULL ? p * p : m == NK_MODE_DIAG ? p : 1;
}

const char *nk_mode_name(nk_mode m)
{
    return m == NK_MODE_FULL ? "full" : m == NK_MODE_DIAG ? "diag" : "scalar";
}

typedef struct {
    nk_op *v;
    int n, cap;
    int hw[2];
    int rank;     /* spatial axes still present: 0 after flatten/gap or for (N, D) inputs */
    double c;     /* channels */
    int slot, max_slot;
    nk_param param;
    nk_error *err;
} builder;

static nk_status add(builder *b, const nk_op *op)
{
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 16;
        nk_op *v = realloc(b->v, (size_t)cap * sizeof *v);
        if (!v) return nk_fail(b->err, NK_ERR_NOMEM, "plan: out of memory");
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = *op;
    return NK_OK;
}

static nk_status lerr(builder *b, const nk_layer *l, const char *what)
{
    return nk_fail(b->err, NK_ERR_INPUT, "arch spec, column %d (%s): %s", l->pos,
                   l->type == L_CONV ? "conv" : l->type == L_AVGPOOL ? "avgpool" :
                   l->type == L_DENSE ? "dense" : l->type == L_GAP ? "gap" :
                   l->type == L_FLATTEN ? "flatten" : l->type == L_RES ? "res" :
                   nk_act_name(l->act.kind), what);
}

/* Window geometry of conv / avgpool on each spatial axis, neural-tangents' conventions:
 * same/circular: out = ceil(n/s), total pad max((out-1)s + f - n, 0), before = total/2;
 * valid: out = floor((n-f)/s) + 1. */
static nk_status window(builder *b, const nk_layer *l, nk_op *op)
{
    if (b->rank == 0)
        return lerr(b, l, "needs a spatial input: data (N,L,C) or (N,H,W,C), before any flatten or gap (use dense on (N,D) data)");
    if (b->rank == 1 && (l->nfilt == 2 || l->nstride == 2))
        return lerr(b, l, "2-D window on a 1-D input (use one size, e.g. conv(3))");
    for (int a = 0; a < 2; a++) {
        int n = b->hw[a];
        int f = a < b->rank ? l->filt[a] : 1, s = a < b->rank ? l->stride[a] : 1;
        op->f[a] = f;
        op->s[a] = s;
        if (l->pad == PAD_VALID) {
            if (f > n) {
                char msg[200];
                snprintf(msg, sizeof msg, "window %d is larger than the input size %d on axis %d with pad=valid (use a smaller window or pad=same)", f, n, a);
                return lerr(b, l, msg);
            }
            op->out_hw[a] = (n - f) / s + 1;
            op->pb[a] = 0;
        } else {
            int out = (n + s - 1) / s;
            int total = (out - 1) * s + f - n;
            op->out_hw[a] = out;
            op->pb[a] = total > 0 ? total / 2 : 0;
        }
    }
    op->pad = l->pad;
    return NK_OK;
}

static nk_status build(builder *b, const nk_layer *layers, int n)
{
    nk_status st;
    for (int i = 0; i < n; i++) {
        const nk_layer *l = &layers[i];
        nk_op op;
        memset(&op, 0, sizeof op);
        op.layer = l;
        op.in_hw[0] = op.out_hw[0] = b->hw[0];
        op.in_hw[1] = op.out_hw[1] = b->hw[1];
        op.f[0] = op.f[1] = op.s[0] = op.s[1] = 1;
        op.cin = op.cout = b->c;
        switch (l->type) {
        case L_DENSE:
        case L_CONV:
            op.kind = OP_AFFINE;
            if (l->type == L_CONV && (st = window(b, l, &op)) != NK_OK) return st;
            op.w2 = l->w * l->w;
            op.b2 = l->b * l->b;
            if (!isfinite(op.w2) || !isfinite(op.b2) || op.w2 > 1e300 || op.b2 > 1e300)
                return lerr(b, l, "w or b is so large that its square overflows (use |w|, |b| < 1e150)");
            op.cout = l->width;
            if (b->param == NK_PARAM_NTK) {
                op.alpha = op.w2;
                op.beta = op.b2;
            } else {
                /* Standard parameterization (neural-tangents): the NTK gains fan_in times the
                 * window mean of the incoming NNGP, plus 1 for a bias. */
                op.alpha = b->c * op.f[0] * op.f[1];
                op.beta = l->b != 0 ? 1.0 : 0.0;
            }
            b->c = l->width;
            break;
        case L_AVGPOOL:
            op.kind = OP_POOL;
            if ((st = window(b, l, &op)) != NK_OK) return st;
            break;
        case L_GAP:
        case L_FLATTEN:
            if (b->rank == 0) return lerr(b, l, "needs a spatial input, but there is none here (data (N,D), or already flattened/pooled)");
            op.kind = l->type == L_GAP ? OP_GAP : OP_FLATTEN;
            op.out_hw[0] = op.out_hw[1] = 1;
            if (l->type == L_FLATTEN) op.cout = b->c * b->hw[0] * b->hw[1];
            b->c = op.cout;
            b->rank = 0;
            break;
        case L_ACT:
            op.kind = OP_ACT;
            op.act = l->act;
            break;
        case L_RES: {
            op.kind = OP_RES_BEGIN;
            op.slot = b->slot++;
            if (b->slot > b->max_slot) b->max_slot = b->slot;
            if ((st = add(b, &op)) != NK_OK) return st;
            int hw0[2] = {b->hw[0], b->hw[1]}, rank0 = b->rank;
            if ((st = build(b, l->body, l->nbody)) != NK_OK) return st;
            if (b->hw[0] != hw0[0] || b->hw[1] != hw0[1] || b->rank != rank0) {
                char msg[200];
                snprintf(msg, sizeof msg, "the body changes the shape %dx%d to %dx%d, so it cannot be added to its input (keep stride 1 and pad=same inside res)",
                         hw0[0], hw0[1], b->hw[0], b->hw[1]);
                return lerr(b, l, msg);
            }
            b->slot--;
            memset(&op, 0, sizeof op);
            op.kind = OP_RES_END;
            op.layer = l;
            op.slot = b->slot;
            op.in_hw[0] = op.out_hw[0] = b->hw[0];
            op.in_hw[1] = op.out_hw[1] = b->hw[1];
            op.cin = b->c;
            op.cout = b->c;
            break;
        }
        }
        b->hw[0] = op.out_hw[0];
        b->hw[1] = op.out_hw[1];
        if ((st = add(b, &op)) != NK_OK) return st;
    }
    return NK_OK;
}

static nk_mode max_mode(nk_mode a, nk_mode b) { return a > b ? a : b; }

/* Elements of the largest state an op writes: its output, or the full state a window op
 * computes before restricting it. */
static size_t op_state(const nk_op *op)
{
    size_t s = nk_mode_size(op->out_mode, op->out_hw);
    size_t s2 = nk_mode_size(op->mode == NK_MODE_FULL || op->kind == OP_POOL ? NK_MODE_FULL : op->mode, op->out_hw);
    return s > s2 ? s : s2;
}

nk_status nk_plan_create(const nk_arch *arch, int in_ndim, const size_t *in_shape, nk_plan **out,
                         nk_error *err)
{
    *out = NULL;
    if (in_ndim < 1 || in_ndim > 3)
        return nk_fail(err, NK_ERR_INPUT, "input: %d axes per sample (use (N,D), (N,L,C) or (N,H,W,C))", in_ndim);
    for (int i = 0; i < in_ndim; i++)
        if (in_shape[i] == 0 || in_shape[i] > (1u << 20))
            return nk_fail(err, NK_ERR_INPUT, "input: axis %d of a sample has size %zu (must be 1..%u)", i + 1, in_shape[i], 1u << 20);
    builder b;
    memset(&b, 0, sizeof b);
    b.err = err;
    b.param = arch->param;
    b.hw[0] = b.hw[1] = 1;
    b.rank = in_ndim - 1;
    if (in_ndim >= 2) b.hw[0] = (int)in_shape[0];
    if (in_ndim == 3) b.hw[1] = (int)in_shape[1];
    b.c = (double)in_shape[in_ndim - 1];
    nk_plan *p = calloc(1, sizeof *p);
    if (!p) return nk_fail(err, NK_ERR_NOMEM, "plan: out of memory");
    p->in_ndim = in_ndim;
    for (int i = 0; i < in_ndim; i++) p->in_shape[i] = in_shape[i];
    p->in_hw[0] = b.hw[0];
    p->in_hw[1] = b.hw[1];
    p->in_c = (int)b.c;
    p->rank = b.rank;
    p->param = arch->param;
    p->quad_order = arch->quad_order;
    nk_status st = build(&b, arch->layers, arch->n);
    if (st == NK_OK && (size_t)b.hw[0] * b.hw[1] > 1)
        st = nk_fail(err, NK_ERR_INPUT, "arch spec: the output is spatial (%dx%d positions); end the network with flatten or gap (then dense)", b.hw[0], b.hw[1]);
    p->ops = b.v;
    p->nops = b.n;
    p->res_depth = b.max_slot;
    if (st != NK_OK) {
        nk_plan_free(p);
        return st;
    }
    /* Modes, backwards from the scalar readout. */
    nk_mode need = NK_MODE_SCALAR;
    nk_mode *res_need = calloc((size_t)p->res_depth + 1, sizeof *res_need);
    if (!res_need) { nk_plan_free(p); return nk_fail(err, NK_ERR_NOMEM, "plan: out of memory"); }
    for (int i = p->nops - 1; i >= 0; i--) {
        nk_op *op = &p->ops[i];
        op->out_mode = need;
        switch (op->kind) {
        case OP_FLATTEN: need = NK_MODE_DIAG; break;
        case OP_GAP: case OP_POOL: need = NK_MODE_FULL; break;
        case OP_RES_END: res_need[op->slot] = need; break;
        case OP_RES_BEGIN: need = max_mode(need, res_need[op->slot]); break;
        default: break;
        }
        op->mode = need;
    }
    free(res_need);
    p->in_mode = need;
    {
        /* each RES_END learns the mode its RES_BEGIN saved (slots nest like a stack) */
        nk_mode saved[64];
        for (int i = 0; i < p->nops; i++) {
            if (p->ops[i].kind == OP_RES_BEGIN && p->ops[i].slot < 64) saved[p->ops[i].slot] = p->ops[i].mode;
            if (p->ops[i].kind == OP_RES_END && p->ops[i].slot < 64) p->ops[i].saved_mode = saved[p->ops[i].slot];
        }
    }
    /* Leading pools move onto the data (see struct nk_plan). */
    int npre = 0;
    while (npre < p->nops - 1 && p->ops[npre].kind == OP_POOL) npre++;
    p->pre_len = (size_t)p->in_hw[0] * p->in_hw[1] * p->in_c;
    if (npre > 0) {
        p->pre = malloc((size_t)npre * sizeof *p->pre);
        if (!p->pre) { nk_plan_free(p); return nk_fail(err, NK_ERR_NOMEM, "plan: out of memory"); }
        memcpy(p->pre, p->ops, (size_t)npre * sizeof *p->pre);
        memmove(p->ops, p->ops + npre, (size_t)(p->nops - npre) * sizeof *p->ops);
        p->nops -= npre;
        p->npre = npre;
        p->in_hw[0] = p->pre[npre - 1].out_hw[0];
        p->in_hw[1] = p->pre[npre - 1].out_hw[1];
        p->in_mode = p->ops[0].mode;
        p->pre_len = (size_t)p->in_hw[0] * p->in_hw[1] * p->in_c;
    }
    if (p->nops > 1 && p->ops[0].kind == OP_FLATTEN) {
        p->in_c *= p->in_hw[0] * p->in_hw[1];
        p->in_hw[0] = p->in_hw[1] = 1;
        memmove(p->ops, p->ops + 1, (size_t)(p->nops - 1) * sizeof *p->ops);
        p->nops--;
        p->in_mode = p->ops[0].mode;
        p->flat_input = 1;
    }
    p->mlp = p->rank == 0 && p->in_hw[0] * p->in_hw[1] == 1;
    size_t smax = nk_mode_size(p->in_mode, p->in_hw), self = 0;
    for (int i = 0; i < p->nops; i++) {
        nk_op *op = &p->ops[i];
        size_t s = op_state(op);
        if (s > smax) smax = s;
    }
    p->state_max = p->state_max_layers = smax;
    p->pe = nk_plane_enabled ? nk_plane_setup(p, p->pg) : 0;
    for (int i = 0; i < p->nops; i++) {
        nk_op *op = &p->ops[i];
        if (op->kind != OP_ACT) continue;
        /* a, sqrt a, 1/sqrt a; and the Mehler record of a smooth activation the layer-by-layer
         * path runs (those of the plane engine are in its own self state) */
        op->self_off = self;
        op->mehler = i >= p->pe && nk_mehler_used(op->act.kind, p->quad_order);
        self += (op->mehler ? 3 + NK_MEHLER_REC : 3) * (size_t)op->in_hw[0] * op->in_hw[1];
    }
    p->self_len = self ? self : 1;
    if (p->pe) {
        /* the layer-by-layer states are needed only from the engine's output on */
        int from = p->pg->gap ? p->pe + 1 : p->pe;
        smax = p->pg->gap ? 1 : nk_mode_size(p->ops[p->pe].mode, p->ops[p->pe].in_hw);
        for (int i = from; i < p->nops; i++) {
            size_t s1 = nk_mode_size(p->ops[i].mode, p->ops[i].in_hw), s = op_state(&p->ops[i]);
            if (s1 > smax) smax = s1;
            if (s > smax) smax = s;
        }
        p->state_max = smax;
    }
    p->spec = strdup(arch->spec ? arch->spec : "");
    if (!p->spec) { nk_plan_free(p); return nk_fail(err, NK_ERR_NOMEM, "plan: out of memory"); }
    *out = p;
    return NK_OK;
}

void nk_plan_free(nk_plan *p)
{
    if (!p) return;
    free(p->ops);
    free(p->pre);
    free(p->spec);
    free(p);
}

/* Flops of one op for one pair (NNGP + NTK), counting a window sum as one add per term and
 * an activation as ~30 flops (closed form) or 4 n^2 (quadrature). */
static double op_flops(const nk_plan *p, const nk_op *op)
{
    double in = (double)nk_mode_size(op->mode, op->in_hw);
    double out = (double)nk_mode_size(op->out_mode, op->out_hw);
    switch (op->kind) {
    case OP_AFFINE:
        if (op->mode == NK_MODE_FULL) {
            double mid = (double)op->out_hw[0] * op->in_hw[1];
            /* separable: pass over H gives (H' w H' w) * f0 adds, pass over W (H' W' H' W') * f1 */
            return 2 * (mid * mid * op->f[0] + out * op->f[1]) + 4 * out;
        }
        return 2 * out * op->f[0] * op->f[1] + 4 * out;
    case OP_POOL: {
        double mid = (double)op->out_hw[0] * op->in_hw[1];
        return 2 * (mid * mid * op->f[0] * op->f[0] + out * op->f[1] * op->f[1]);
    }
    case OP_ACT:
        /* the engine's Mehler series: the closed-form part (rho, its powers' start, ~30) and the
         * terms float32 needs, 4.5 per entry (both series from one sum of phi's terms:
         * counted 4.2 at the bench's w, b), 5 flops each (three multiplies and two adds).
         * Conservative: float64 sums ~6.3 terms, ~1.2x this count (docs/smooth-activations.md) */
        if (nk_mehler_used(op->act.kind, p->quad_order)) return in * (30.0 + 4.5 * 5);
        /* the engine's vectorized exp is ~30 flops: sin and cos take two and two polynomials of
         * ten terms (exp_row), exp and rbf one */
        if (nk_act_exp_dual(op->act.kind))
            return in * (op->act.kind == NK_ACT_SIN || op->act.kind == NK_ACT_COS ? 100.0 : 35.0);
        return in * (nk_act_has_closed_form(op->act.kind) ? 30.0 : 6.0 * (p->quad_order ? p->quad_order : 128) * (p->quad_order ? p->quad_order : 128));
    case OP_GAP: case OP_FLATTEN: return 2 * in;
    case OP_RES_BEGIN: case OP_RES_END: return 2 * out;
    }
    return 0;
}

static double input_flops(const nk_plan *p)
{
    return 2.0 * (double)nk_mode_size(p->in_mode, p->in_hw) * p->in_c;
}

static double phys_mem(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), sz = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && sz > 0 ? (double)pages * sz : 0;
}

nk_status nk_plan_cost(const nk_plan *p, size_t n1, size_t n2, int nthreads, nk_cost *c)
{
    return nk_plan_cost_prec(p, n1, n2, nthreads, 0, c);
}

nk_status nk_plan_cost_prec(const nk_plan *p, size_t n1, size_t n2, int nthreads, int f32, nk_cost *c)
{
    int nt = nk_num_threads(nthreads);
    size_t ncols = n2 ? n2 : n1, nsamples = n1 + n2;
    double pairs = n2 ? (double)n1 * n2 : (double)n1 * (n1 + 1) / 2;
    double pf = input_flops(p);
    for (int i = 0; i < p->nops; i++) pf += op_flops(p, &p->ops[i]);
    c->pair_flops = pf;
    c->flops = pf * pairs;
    double in_elems = 1;
    for (int i = 0; i < p->in_ndim; i++) in_elems *= (double)p->in_shape[i];
    double bytes = 8.0 * in_elems * nsamples          /* inputs */
                   + 2 * 8.0 * (double)n1 * ncols      /* NNGP and NTK outputs */
                   + 8.0 * (double)p->self_len * nsamples;  /* self-variances */
    /* per thread: K and T ping-pong, a separable-pass temporary, the residual stack */
    double ws = 8.0 * (double)p->state_max * (5 + 2 * p->res_depth);
    if (p->mlp) ws = 8.0 * 256 * 256 * (2 + 2 * p->res_depth);
    if (p->pe) {
        /* the plane engine: its buffers per thread (float64 room either way), the samples and
         * self states in its layout and precision */
        ws += 8.0 * (double)nk_plane_work(p->pg);
        bytes += (f32 ? 4.0 : 8.0) * (double)(nk_plane_sample_len(p->pg) + nk_plane_self_len(p->pg)) * nsamples;
    }
    nk_torus t;
    if (nk_torus_setup(p, 0, f32, &t)) {
        /* the torus path (no translations): its planes per thread (float64 room), the padded
         * samples and variances in its precision (float32 only where it takes it: t.f32) */
        const double tel = t.f32 ? 4.0 : 8.0;
        ws += 8.0 * (double)nk_torus_work(&t);
        bytes += tel * (double)(nk_torus_sample_len(&t) + nk_torus_self_len(&t)) * nsamples;
    }
    c->bytes = bytes + nt * ws;
    return NK_OK;
}

/* ------------------------------------------------------------ time model -- */

/* Seconds on one core per unit of work, measured by bench/calibrate.c (`make calibrate`): CPU
 * time of nk_kernel_matrix on one thread, NNGP and NTK, cross pairs, random N(0, 1) inputs,
 * each constant from the difference of two architectures that differ only in the op it prices
 * (e.g. [conv(3) relu]*6 vs *2 gap on 16x16x3), or one architecture less the model's price
 * of its other ops; layer-by-layer costs with the plane engine switched off.  Machine: 2-core AMD EPYC (Zen 4, family 25 model
 * 17, AVX-512), shared by other jobs (CPU time, not wall time, so contention matters less);
 * see docs/faults.md for the validation table (estimate vs measured). */
static const struct {
    double gemm;          /* input covariance: per multiply-add (OpenBLAS dgemm, ~50 GFLOP/s/core) */
    double eng_tap;       /* plane engine: per covariance entry and window tap of a conv other than
                             3x3, its ReLU included (the generic loop) */
    double eng_conv3;     /* plane engine: per entry of a 3x3 conv and its ReLU (the fused loop) */
    double eng_plane;     /* plane engine: per conv layer and plane (full mode: P planes of P
                             entries on H x W = P positions; diagonal: one): the loop set-up,
                             halo and step down that make small images dearer per entry */
    double eng_plane_f32; /* the same in float32 */
    double eng_diag;      /* plane engine, diagonal mode (conv ... flatten): per entry (position) of
                             a 3x3 conv and its ReLU, float64 */
    double eng_diag_f32;  /* the same in float32 */
    double eng_closed;    /* plane engine: per entry of another closed-form dual (erf, abrelu, sin, cos, exp, rbf, sign) */
    double eng_mehler;    /* plane engine: per entry of a Mehler-series dual (tanh, sigmoid,
                             softplus, swish) in float64, at the bench's variance ~1-2 */
    double eng_mehler_f32; /* the same in float32 (fewer terms: ~4.2 against 6.3) */
    double mehler_self;   /* a sample's self pass: per position of a Mehler-series layer (its
                             Hermite coefficients at that position's variance, any path) */
    double eng_f32;       /* plane engine in float32: time of the entries' work relative to
                             float64 (16x16 planes; the per-plane overhead is not scaled) */
    double eng_pool;      /* plane engine: per input entry of an average pool between levels */
    double eng_res;       /* plane engine: per entry of a residual block's save or sum */
    double lbl_tap;       /* layer by layer: per entry and window tap (conv, pool, readout) */
    double lbl_relu;      /* layer by layer: per entry of a ReLU */
    double lbl_closed;    /* layer by layer: per entry of erf, abrelu, identity */
    double mlp_relu;      /* MLP tiles: per entry of a dense layer and its ReLU */
    double mlp_closed;    /* MLP tiles: per entry of a dense layer and another closed form */
    double mlp_mehler;    /* MLP tiles: per entry of a dense layer and a Mehler-series dual
                             (per tile row, nk_mehler_grid) */
    double quad_node;     /* any path: per entry and node pair of a Gauss-Hermite dual (n^2 nodes) */
    double tor_tap;       /* torus path (stride-1 circular stacks, torus.c): per image position,
                             window tap and translation of a conv, float64 */
    double tor_relu;      /* torus path: per image position and translation of a ReLU, float64 */
    double tor_closed;    /* torus path: the same for another closed-form dual (erf, gelu, ...) */
    double tor_f32;       /* torus path in float32 (ReLU stacks): time relative to float64 */
} nk_costs = NK_COST_TABLE;

/* E[phi(sqrt(q) z)^2]: the variance after an activation, by 1-D Gauss-Hermite (96 nodes) */
static double act_variance(const nk_act *act, double q)
{
    double k;
    if (nk_act_has_closed_form(act->kind)) {
        nk_act_dual(act, q, q, q, 0, &k, NULL);
        return k;
    }
    const double *x, *w;
    if (nk_gh_rule(96, &x, &w, NULL) != NK_OK) return q;
    k = 0;
    for (int i = 0; i < 96; i++) {
        double v = nk_act_value(act, sqrt(q) * x[i]);
        k += w[i] * v * v;
    }
    return k;
}

/* Seconds of one core for one pair (translations by 0..shift: nk_kernel_opts.shift). */
/* reach (may be NULL): the reach of the stored Mehler series at the propagated variances, and
 * its op (nk_plan_mehler_reach) */
static double pair_seconds(const nk_plan *p, double input_ms, int f32, int shift, double *reach, int *reach_op)
{
    double q = input_ms > 0 ? input_ms : 1, saved[64], t;
    t = (double)nk_mode_size(p->in_mode, p->in_hw) * p->in_c * nk_costs.gemm;
    /* the torus path's ops [0, e] (e: the flatten) per image position and translation */
    nk_torus tt;
    const int tor_e = nk_torus_setup(p, shift, f32, &tt) ? tt.e + 1 : 0;
    const double tel = tor_e ? (double)tt.n0 * tt.n1 * tt.nd * (tt.f32 ? nk_costs.tor_f32 : 1) : 0;
    for (int i = 0; i < p->nops; i++) {
        const nk_op *op = &p->ops[i];
        if (i < tor_e) {
            if (op->kind == OP_AFFINE) {
                t += tel * op->f[0] * op->f[1] * nk_costs.tor_tap;
                q = op->w2 * q + op->b2;
            } else if (op->kind == OP_ACT) {
                if (op->act.kind == NK_ACT_RELU) t += tel * nk_costs.tor_relu;
                else if (nk_act_has_closed_form(op->act.kind)) t += tel * nk_costs.tor_closed;
                else {
                    const int n = p->quad_order > 0 ? p->quad_order : nk_quad_auto(&op->act, q, q);
                    t += tel * nk_costs.quad_node * (double)n * n;
                }
                q = act_variance(&op->act, q);
            } else {
                t += tel * nk_costs.tor_tap;   /* the flatten: a sum over the plane */
            }
            continue;
        }
        const int engine = i < p->pe;
        const double scale = engine && f32 ? nk_costs.eng_f32 : 1;
        const double out = (double)nk_mode_size(op->mode, op->out_hw), in = (double)nk_mode_size(op->mode, op->in_hw);
        const double planes = op->mode == NK_MODE_FULL ? (double)op->out_hw[0] * op->out_hw[1] : 1;
        switch (op->kind) {
        case OP_AFFINE:
            q = op->w2 * q + op->b2;
            if (p->mlp) break; /* priced with the activation it is fused with, or below */
            if (engine && op->mode == NK_MODE_DIAG && op->f[0] == 3 && op->f[1] == 3)
                t += out * (f32 ? nk_costs.eng_diag_f32 : nk_costs.eng_diag);
            else if (engine)
                t += scale * out * (op->f[0] == 3 && op->f[1] == 3 ? nk_costs.eng_conv3 : op->f[0] * op->f[1] * nk_costs.eng_tap) +
                     planes * (f32 ? nk_costs.eng_plane_f32 : nk_costs.eng_plane);
            else
                t += out * op->f[0] * op->f[1] * nk_costs.lbl_tap;
            break;
        case OP_ACT: {
            /* per: a price the engine's float32 gain scales; own: one measured in each precision */
            double per, own = 0;
            int closed = nk_act_has_closed_form(op->act.kind), relu = op->act.kind == NK_ACT_RELU;
            if (p->mlp) per = relu ? nk_costs.mlp_relu : nk_costs.mlp_closed;
            else if (engine) per = relu ? 0 : nk_costs.eng_closed; /* a ReLU: priced with its conv */
            else per = relu ? nk_costs.lbl_relu : nk_costs.lbl_closed;
            if (engine && !closed && nk_mehler_used(op->act.kind, p->quad_order)) {
                /* the Mehler series in the engine: measured per entry in each precision */
                per = 0;
                own = f32 ? nk_costs.eng_mehler_f32 : nk_costs.eng_mehler;
            } else if (closed && engine && (op->act.kind == NK_ACT_SIN || op->act.kind == NK_ACT_COS)) {
                /* sin, cos: two vectorized exponentials per entry (exp and rbf take one, at about
                 * erf's cost): measured ~3x erf's step ([conv(3) ACT]*8 gap on 28x28, the time
                 * above relu's, 2 threads, shared machine: docs/smooth-activations.md) */
                per += 2 * nk_costs.eng_closed;
            } else if (!closed && nk_mehler_used(op->act.kind, p->quad_order)) {
                /* the Mehler series per tile row (measured) or per grid row (nk_mehler_grid):
                 * layer by layer 10-20x the closed-form step (tanh at variance ~1-2) */
                if (p->mlp) per = nk_costs.mlp_mehler;
                else per += 15 * nk_costs.lbl_closed;
            } else if (!closed) {
                int n = p->quad_order > 0 ? p->quad_order : nk_quad_auto(&op->act, q, q);
                per += nk_costs.quad_node * (double)n * n;
            }
            t += scale * in * per + in * own;
            if (reach && !closed && nk_mehler_used(op->act.kind, p->quad_order)) {
                /* the first level of |rho| where the stored terms do not reach the tolerance */
                double rec[NK_MEHLER_REC];
                nk_mehler_record(&op->act, q, NK_MEHLER_TOL64, rec, 1);
                for (int l = 0; l < NK_MEHLER_LEVELS; l++) {
                    const int m[2] = {(int)rec[NK_MEHLER_NEED(0) + l], (int)rec[NK_MEHLER_NEED(1) + l]};
                    int over;
                    (void)nk_mehler_span(op->act.kind, m, &over);
                    if (over) {
                        const double r = l ? nk_mehler_level[l - 1] : 0;
                        if (r < *reach) {
                            *reach = r;
                            *reach_op = i;
                        }
                        break;
                    }
                }
            }
            q = act_variance(&op->act, q);
            break;
        }
        case OP_POOL: t += engine ? scale * in * nk_costs.eng_pool : op_flops(p, op) / 2 * nk_costs.lbl_tap; break;
        case OP_GAP: case OP_FLATTEN: t += in * (engine ? 0 : nk_costs.lbl_tap); break;
        case OP_RES_BEGIN: if (op->slot < 64) saved[op->slot] = q; t += in * (engine ? scale * nk_costs.eng_res : nk_costs.lbl_tap); break;
        case OP_RES_END: if (op->slot < 64) q += saved[op->slot]; t += in * (engine ? scale * nk_costs.eng_res : nk_costs.lbl_tap); break;
        }
        if (p->mlp && op->kind == OP_AFFINE && (i + 1 == p->nops || p->ops[i + 1].kind != OP_ACT))
            t += nk_costs.mlp_closed; /* a dense layer alone: the affine map over the tile */
    }
    /* translations off the torus path: one kernel per translated copy (augment.c) */
    if (shift && !tor_e) t *= (double)(shift + 1) * (p->in_ndim == 3 ? shift + 1 : 1);
    return t;
}

double nk_plan_core_seconds(const nk_plan *p, size_t n1, size_t n2, double input_ms, int f32, int shift)
{
    double pairs = n2 ? (double)n1 * n2 : (double)n1 * (n1 + 1) / 2;
    /* a sample's self pass: the variances of each position, P of a pair's P^2 entries when the
     * network carries the full covariance (conv ... gap), about a pair otherwise */
    const double P = (double)p->in_hw[0] * p->in_hw[1];
    double samples = ((double)n1 + (double)n2) * (p->in_mode == NK_MODE_FULL ? 1 / P : 1);
    /* a Mehler-series layer's self pass also expands the dual at each position's variance */
    double mehler = 0;
    for (int i = 0; i < p->nops; i++)
        if (p->ops[i].kind == OP_ACT && nk_mehler_used(p->ops[i].act.kind, p->quad_order))
            mehler += (double)p->ops[i].in_hw[0] * p->ops[i].in_hw[1] * nk_costs.mehler_self;
    return (pairs + samples) * pair_seconds(p, input_ms, f32, shift, NULL, NULL) + ((double)n1 + (double)n2) * mehler;
}

double nk_plan_mehler_reach(const nk_plan *p, double input_ms, int *op)
{
    double reach = 1;
    int at = -1;
    pair_seconds(p, input_ms, 0, 0, &reach, &at);
    if (op) *op = at;
    return reach;
}

double nk_plan_seconds(const nk_plan *p, size_t n1, size_t n2, int nthreads, double input_ms, int f32, int shift)
{
    return nk_plan_core_seconds(p, n1, n2, input_ms, f32, shift) / nk_num_threads(nthreads);
}

static void human_bytes(double b, char *buf, size_t n)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) { b /= 1024; i++; }
    snprintf(buf, n, "%.1f %s", b, u[i]);
}

nk_status nk_plan_describe(const nk_plan *p, size_t n1, size_t n2, int nthreads, char *buf, size_t buflen)
{
    return nk_plan_describe_prec(p, n1, n2, nthreads, 0, buf, buflen);
}

nk_status nk_plan_describe_prec(const nk_plan *p, size_t n1, size_t n2, int nthreads, int f32, char *buf,
                                size_t buflen)
{
    size_t used = 0;
#define OUT(...) do { int k_ = snprintf(buf + used, used < buflen ? buflen - used : 0, __VA_ARGS__); \
                      if (k_ > 0) used += (size_t)k_; } while (0)
    OUT("arch: %s\n", p->spec);
    OUT("input: ");
    for (int i = 0; i < p->in_ndim; i++) OUT("%s%zu", i ? "x" : "", p->in_shape[i]);
    OUT("  (%d positions, %d channels; K0 in %s mode)\n", p->in_hw[0] * p->in_hw[1], p->in_c, nk_mode_name(p->in_mode));
    OUT("parameterization: %s\n", p->param == NK_PARAM_NTK ? "ntk" : "standard");
    OUT("  #  layer                      out shape    channels  mode    flops/pair\n");
    for (int i = 0; i < p->npre; i++)
        OUT("  -  avgpool %dx%d s%d,%d on the data %-5s %dx%d\n", p->pre[i].f[0], p->pre[i].f[1], p->pre[i].s[0],
            p->pre[i].s[1], "", p->pre[i].out_hw[0], p->pre[i].out_hw[1]);
    if (p->flat_input) OUT("  -  flatten on the data              1x1     %9d\n", p->in_c);
    int depth = 0;
    for (int i = 0; i < p->nops; i++) {
        const nk_op *op = &p->ops[i];
        char name[64], shape[32];
        const nk_layer *l = op->layer;
        switch (op->kind) {
        case OP_AFFINE:
            if (l->type == L_CONV)
                snprintf(name, sizeof name, "conv %dx%d s%d,%d %s w=%.3g b=%.3g", op->f[0], op->f[1], op->s[0], op->s[1],
                         op->pad == PAD_SAME ? "same" : op->pad == PAD_VALID ? "valid" : "circ", l->w, l->b);
            else
                snprintf(name, sizeof name, "dense w=%.3g b=%.3g", l->w, l->b);
            break;
        case OP_POOL: snprintf(name, sizeof name, "avgpool %dx%d s%d,%d", op->f[0], op->f[1], op->s[0], op->s[1]); break;
        case OP_GAP: snprintf(name, sizeof name, "gap"); break;
        case OP_FLATTEN: snprintf(name, sizeof name, "flatten"); break;
        case OP_ACT:
            if (op->act.kind == NK_ACT_ABRELU) snprintf(name, sizeof name, "abrelu(%g,%g)", op->act.a, op->act.b);
            else if (op->act.kind == NK_ACT_RBF) snprintf(name, sizeof name, "rbf(gamma=%g)", op->act.a);
            else
                snprintf(name, sizeof name, "%s%s", nk_act_name(op->act.kind),
                         nk_act_has_closed_form(op->act.kind) ? ""
                         : nk_mehler_used(op->act.kind, p->quad_order) ? " (Mehler series)"
                                                                                          : " (quadrature)");
            break;
        case OP_RES_BEGIN: snprintf(name, sizeof name, "res begin"); break;
        case OP_RES_END: snprintf(name, sizeof name, "res end (x + f(x))"); break;
        }
        if (op->kind == OP_RES_END) depth--;
        snprintf(shape, sizeof shape, "%dx%d", op->out_hw[0], op->out_hw[1]);
        OUT("%3d  %*s%-*s %-12s %8g  %-6s  %.3g\n", i + 1, 2 * depth, "", 26 - 2 * depth, name, shape,
            op->cout, nk_mode_name(op->out_mode), op_flops(p, op));
        if (op->kind == OP_RES_BEGIN) depth++;
    }
    nk_cost c;
    nk_plan_cost_prec(p, n1, n2, nthreads, f32, &c);
    char mem[32], lim[32];
    human_bytes(c.bytes, mem, sizeof mem);
    human_bytes(phys_mem(), lim, sizeof lim);
    OUT("per kernel entry: %.3g flops (NNGP+NTK)\n", c.pair_flops);
    if (n1) {
        OUT("for %zu x %zu%s: %.3g flops, peak memory %s (machine: %s)\n", n1, n2 ? n2 : n1,
            n2 ? "" : " (symmetric, i <= j)", c.flops, mem, lim);
        /* in tiles (--journal, nkern-mpi) the matrices live in files, not in memory: what stays in
         * memory is the per-sample state and two 256 x 256 tiles; a solve past memory maps the
         * file (float32 storage with --f32 halves it) and runs CG (nk_dist.h) */
        const double out_bytes = 2 * 8.0 * (double)n1 * (n2 ? n2 : n1);
        double tiled = c.bytes - out_bytes + 2 * 8.0 * 256 * 256;
        const double se = p->pe ? (f32 ? 4.0 : 8.0) * (double)nk_plane_self_len(p->pg) : 0, ns = (double)n1 + (double)n2;
        if (se * ns > (double)nk_kernel_window_bytes)
            /* the plane engine's self states by window (kernel.c): a tile's rows and columns,
             * and one per thread */
            tiled += se * ((ns < 512 ? ns : 512) + nk_num_threads(nthreads) - ns);
        char tmem[32], disk[32], disk32[32];
        human_bytes(tiled, tmem, sizeof tmem);
        human_bytes(out_bytes, disk, sizeof disk);
        human_bytes(out_bytes / 2, disk32, sizeof disk32);
        OUT("in tiles (--journal, nkern-mpi): memory %s per process, NNGP+NTK files %s on disk (%s with --f32)%s\n", tmem,
            disk, disk32, c.bytes > phys_mem() ? "; the matrices exceed memory: compute them in tiles, then solve by CG over the memory-mapped files" : "");
    }
#undef OUT
    return used < buflen ? NK_OK : NK_ERR_INPUT;
}
