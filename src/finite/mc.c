/* mc.c -- finite random networks of a plan's architecture: forward pass, backward pass, the
 * empirical NNGP and NTK of one network and their Monte Carlo means over many (nk_mc.h).
 *
 * Values of n samples at a layer are stored [sample][position][channel] (positions row-major
 * over the H x W grid), so an n-sample batch of a dense layer is one GEMM and a conv is a GEMM
 * per sample on its im2col patches (rows: output positions; columns: window offsets, then
 * input channels -- the row order of the weight matrix).
 *
 * The NTK of one network is the sum over layers of the Gram of the per-sample parameter
 * gradients.  For an affine layer with input patches A_x (P x fan_in), output gradient G_x
 * (P x Cout) and y = wmul A theta_W + bmul theta_b:
 *   d f / d theta_W = wmul A_x^T G_x,     d f / d theta_b = bmul sum_q G_x[q, :],
 * so with J_x = wmul A_x^T G_x flattened, T(x, x') += <J_x, J_x'> + bmul^2 <sum G_x, sum G_x'>:
 * a SYRK over samples, in chunks of output channels to bound the memory of J.  With one
 * output position (dense layers on vectors) <J_x, J_x'> = wmul^2 (A_x . A_x')(G_x . G_x'):
 * two small Grams instead. */
#include "internal.h"
#include "nk_mc.h"

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_WIDTH (1 << 20)
/* Doubles of the per-sample gradient chunk J (n x fan_in x channels of a chunk): 16 MB. */
#define JBUF_DOUBLES ((size_t)1 << 21)
/* Networks per round of the Monte Carlo driver: each round's results are summed in network
 * order after the round, so the sum does not depend on which thread drew which network.  A
 * round holds as many networks' n x n results as fit in MC_ROUND_DOUBLES (64 MB), at most
 * MC_ROUND_MAX: long rounds keep the threads' wait at the end of each round rare. */
#define MC_ROUND_DOUBLES ((size_t)1 << 23)
#define MC_ROUND_MAX 256

typedef struct {
    nk_op_kind kind;
    int in_hw[2], out_hw[2];
    int f[2], s[2], pb[2];
    nk_pad pad;
    size_t pin, pout, cin, cout; /* positions and channels before / after */
    size_t fanin;               /* affine: f0 f1 cin */
    int direct;                 /* affine with a 1x1 window and stride 1: the input rows are A */
    double wmul, bmul;          /* forward multipliers of theta_W and theta_b */
    double wsd, bsd;            /* standard deviations theta_W and theta_b are drawn with */
    int bias;                   /* the layer has a bias parameter (b != 0) */
    size_t woff, boff;          /* offsets in the parameter vector */
    nk_act act;
    int partner;                /* RES_BEGIN: its RES_END; RES_END: its RES_BEGIN */
    int grad_below;             /* a layer before this one has parameters: propagate gradients */
    int taps;                   /* window layers (affine, pool): f0 f1 window offsets */
    int *src;                   /* src[q taps + t]: the input position under offset t of output
                                 * position q's window, -1 in zero padding */
} mc_layer;

struct nk_mc_net {
    mc_layer *l;
    int nl;
    size_t in_len;              /* doubles of one raw input sample */
    size_t k;                   /* outputs per sample */
    double *params;
    size_t nparams;
    /* workspace for up to cap samples */
    size_t cap;
    int cap_ntk;
    double **val, **grad;       /* nl + 1 arrays: val[0] the input, val[i + 1] layer i's output */
    double *col;                /* one sample's im2col patches (or their gradient) */
    double *jbuf;               /* per-sample gradient chunks, or the patches of all samples */
    double *sb;                 /* per-sample bias gradients, n x Cout */
    double *gram1, *gram2;      /* n x n */
};

/* The window of every output position, once per layer: im2col, its adjoint and pooling (and
 * pooling's adjoint) then walk this table instead of each re-deriving the indices. */
static nk_status window_table(mc_layer *L, nk_error *err)
{
    L->taps = L->f[0] * L->f[1];
    L->src = malloc(L->pout * (size_t)L->taps * sizeof *L->src);
    if (!L->src) return nk_fail(err, NK_ERR_NOMEM, "mc: out of memory");
    int *t = L->src;
    for (int q0 = 0; q0 < L->out_hw[0]; q0++)
        for (int q1 = 0; q1 < L->out_hw[1]; q1++)
            for (int d0 = 0; d0 < L->f[0]; d0++) {
                const int i = nk_axis_index(q0, d0, L->s[0], L->pb[0], L->in_hw[0], L->pad);
                for (int d1 = 0; d1 < L->f[1]; d1++) {
                    const int j = nk_axis_index(q1, d1, L->s[1], L->pb[1], L->in_hw[1], L->pad);
                    *t++ = i < 0 || j < 0 ? -1 : i * L->in_hw[1] + j;
                }
            }
    return NK_OK;
}

/* ------------------------------------------------------------ creation -- */

nk_status nk_mc_net_create(const nk_plan *p, int outputs, nk_mc_net **out, nk_error *err)
{
    *out = NULL;
    if (outputs < 1 || outputs > MAX_WIDTH)
        return nk_fail(err, NK_ERR_INPUT, "mc: %d readout outputs (use 1..%d)", outputs, MAX_WIDTH);
    nk_mc_net *net = calloc(1, sizeof *net);
    if (!net) return nk_fail(err, NK_ERR_NOMEM, "mc: out of memory");
    net->nl = p->npre + p->nops;
    net->l = calloc((size_t)net->nl, sizeof *net->l);
    if (!net->l) { free(net); return nk_fail(err, NK_ERR_NOMEM, "mc: out of memory"); }
    net->in_len = 1;
    for (int i = 0; i < p->in_ndim; i++) net->in_len *= p->in_shape[i];
    size_t c = p->in_shape[p->in_ndim - 1];
    int stack[64], depth = 0;
    size_t np = 0;
    nk_status st = NK_OK;
    for (int i = 0; i < net->nl && st == NK_OK; i++) {
        /* a flatten straight on the (pooled) data is a reshape in the plan (flat_input): the
         * first op then sees one position of P C channels, which is the same vector */
        if (i == p->npre && p->flat_input) c = (size_t)p->in_c;
        const nk_op *op = i < p->npre ? &p->pre[i] : &p->ops[i - p->npre];
        mc_layer *L = &net->l[i];
        L->kind = op->kind;
        memcpy(L->in_hw, op->in_hw, sizeof L->in_hw);
        memcpy(L->out_hw, op->out_hw, sizeof L->out_hw);
        memcpy(L->f, op->f, sizeof L->f);
        memcpy(L->s, op->s, sizeof L->s);
        memcpy(L->pb, op->pb, sizeof L->pb);
        L->pad = op->pad;
        L->pin = (size_t)op->in_hw[0] * op->in_hw[1];
        L->pout = (size_t)op->out_hw[0] * op->out_hw[1];
        L->cin = c;
        L->act = op->act;
        switch (op->kind) {
        case OP_AFFINE: {
            const nk_layer *ly = op->layer;
            double width = ly->width;
            if (i == net->nl - 1) width = outputs;
            else if (width != floor(width) || width < 1 || width > MAX_WIDTH)
                st = nk_fail(err, NK_ERR_INPUT, "arch spec, column %d (%s): width %g is not a whole number of "
                             "channels in 1..%d (set width=N on the layer, or globally with --width N)",
                             ly->pos, ly->type == L_CONV ? "conv" : "dense", width, MAX_WIDTH);
            c = (size_t)width;
            L->fanin = (size_t)op->f[0] * op->f[1] * L->cin;
            L->direct = op->f[0] == 1 && op->f[1] == 1 && op->s[0] == 1 && op->s[1] == 1;
            double s = ly->w / sqrt((double)L->fanin);
            L->bias = ly->b != 0;
            if (p->param == NK_PARAM_NTK) {
                L->wmul = s; L->bmul = ly->b; L->wsd = 1; L->bsd = 1;
            } else {
                L->wmul = 1; L->bmul = 1; L->wsd = s; L->bsd = ly->b;
            }
            L->woff = np;
            np += L->fanin * c;
            L->boff = np;
            if (L->bias) np += c;
            break;
        }
        case OP_FLATTEN: c *= L->pin; break;
        case OP_RES_BEGIN:
            if (depth == 64) st = nk_fail(err, NK_ERR_INPUT, "mc: residual blocks nested deeper than 64");
            else stack[depth++] = i;
            break;
        case OP_RES_END:
            L->partner = stack[--depth];
            net->l[L->partner].partner = i;
            break;
        default: break;
        }
        L->cout = c;
        if (st == NK_OK && (op->kind == OP_AFFINE || op->kind == OP_POOL)) st = window_table(L, err);
    }
    int params_below = 0;
    for (int i = 0; i < net->nl; i++) {
        net->l[i].grad_below = params_below;
        if (net->l[i].kind == OP_AFFINE) params_below = 1;
    }
    net->k = net->nl ? net->l[net->nl - 1].pout * net->l[net->nl - 1].cout : 0;
    net->nparams = np;
    if (st == NK_OK && !(net->params = calloc(np ? np : 1, sizeof(double))))
        st = nk_fail(err, NK_ERR_NOMEM, "mc: out of memory for %zu parameters", np);
    net->val = calloc((size_t)net->nl + 1, sizeof *net->val);
    net->grad = calloc((size_t)net->nl + 1, sizeof *net->grad);
    if (st == NK_OK && (!net->val || !net->grad)) st = nk_fail(err, NK_ERR_NOMEM, "mc: out of memory");
    if (st != NK_OK) {
        nk_mc_net_free(net);
        return st;
    }
    *out = net;
    return NK_OK;
}

static void free_work(nk_mc_net *net)
{
    for (int i = 0; i <= net->nl; i++) {
        free(net->val[i]);
        free(net->grad[i]);
        net->val[i] = net->grad[i] = NULL;
    }
    free(net->col); free(net->jbuf); free(net->sb); free(net->gram1); free(net->gram2);
    net->col = net->jbuf = net->sb = net->gram1 = net->gram2 = NULL;
    net->cap = 0;
    net->cap_ntk = 0;
}

void nk_mc_net_free(nk_mc_net *net)
{
    if (!net) return;
    if (net->val && net->grad) free_work(net);
    free(net->val);
    free(net->grad);
    free(net->params);
    for (int i = 0; i < net->nl; i++) free(net->l[i].src);
    free(net->l);
    free(net);
}

size_t nk_mc_net_nparams(const nk_mc_net *net) { return net->nparams; }
size_t nk_mc_net_outputs(const nk_mc_net *net) { return net->k; }
double *nk_mc_net_params(nk_mc_net *net) { return net->params; }

/* Channels of a layer's per-sample gradient chunk: as many as keep n x fan_in x chunk within
 * JBUF_DOUBLES, at least one. */
static size_t chunk_channels(const mc_layer *L, size_t n)
{
    size_t cb = JBUF_DOUBLES / (n * L->fanin);
    return cb < 1 ? 1 : cb > L->cout ? L->cout : cb;
}

/* Sizes of the workspace for n samples: values (and gradients), col, jbuf, sb, two Grams. */
static void work_sizes(const nk_mc_net *net, size_t n, size_t *col, size_t *jbuf, size_t *sb)
{
    *col = *jbuf = *sb = 0;
    for (int i = 0; i < net->nl; i++) {
        const mc_layer *L = &net->l[i];
        if (L->kind != OP_AFFINE) continue;
        size_t c = L->pout * L->fanin, j = n * L->fanin * chunk_channels(L, n), b = n * L->cout;
        if (!L->direct && c > *col) *col = c;
        if (j > *jbuf) *jbuf = j;
        if (b > *sb) *sb = b;
    }
}

/* Doubles per sample of the values after layer i - 1 (i = 0: the input). */
static size_t value_len(const nk_mc_net *net, int i)
{
    return i == 0 ? net->in_len : net->l[i - 1].pout * net->l[i - 1].cout;
}

/* The gradient of the values after layer i - 1 is needed if layer i passes one down, and at
 * the output. */
static int needs_grad(const nk_mc_net *net, int i)
{
    return i == net->nl || net->l[i].grad_below;
}

double nk_mc_net_bytes(const nk_mc_net *net, size_t n, int ntk)
{
    double b = 0;
    for (int i = 0; i <= net->nl; i++)
        b += (double)n * value_len(net, i) * (1 + (ntk && needs_grad(net, i)));
    size_t col, jbuf, sb;
    work_sizes(net, n, &col, &jbuf, &sb);
    b += col;
    if (ntk) b += jbuf + sb + 2.0 * n * n;
    return 8 * b;
}

static nk_status reserve(nk_mc_net *net, size_t n, int ntk, nk_error *err)
{
    if (n <= net->cap && (!ntk || net->cap_ntk)) return NK_OK;
    free_work(net);
    size_t col, jbuf, sb;
    work_sizes(net, n, &col, &jbuf, &sb);
    int bad = 0;
    for (int i = 0; i <= net->nl; i++) {
        size_t len = value_len(net, i);
        bad |= !(net->val[i] = malloc(n * len * sizeof(double)));
        if (ntk && needs_grad(net, i)) bad |= !(net->grad[i] = malloc(n * len * sizeof(double)));
    }
    bad |= !(net->col = malloc((col ? col : 1) * sizeof(double)));
    if (ntk) {
        bad |= !(net->jbuf = malloc((jbuf ? jbuf : 1) * sizeof(double)));
        bad |= !(net->sb = malloc((sb ? sb : 1) * sizeof(double)));
        bad |= !(net->gram1 = malloc(n * n * sizeof(double)));
        bad |= !(net->gram2 = malloc(n * n * sizeof(double)));
    }
    if (bad) {
        free_work(net);
        return nk_fail(err, NK_ERR_NOMEM, "mc: out of memory for a network's workspace on %zu samples (%.3g GB; use fewer "
                       "samples or smaller widths)", n, nk_mc_net_bytes(net, n, ntk) / 1e9);
    }
    net->cap = n;
    net->cap_ntk = ntk;
    return NK_OK;
}

/* --------------------------------------------------------- random draws -- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** (Blackman and Vigna): 2^256 - 1 period, passes BigCrush. */
static inline uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Standard normals by Marsaglia's polar method: a uniform point (u, v) of the unit disc gives
 * two independent normals u sqrt(-2 ln r / r), v sqrt(-2 ln r / r), r = u^2 + v^2 (no sine or
 * cosine; 21% of the points are rejected). */
static void fill_normal(uint64_t s[4], double *x, size_t n, double sd)
{
    for (size_t i = 0; i < n; i += 2) {
        double u, v, r;
        do {
            u = (double)(int64_t)xoshiro_next(s) * 0x1.0p-63;
            v = (double)(int64_t)xoshiro_next(s) * 0x1.0p-63;
            r = u * u + v * v;
        } while (r >= 1 || r == 0);
        double m = sd * sqrt(-2 * log(r) / r);
        x[i] = u * m;
        if (i + 1 < n) x[i + 1] = v * m;
    }
}

void nk_mc_net_sample(nk_mc_net *net, uint64_t seed, uint64_t index)
{
    /* the stream of network (seed, index): splitmix64 of both, expanded into xoshiro's state */
    uint64_t m = seed, s[4];
    m = splitmix64(&m) ^ (index * 0xD1B54A32D192ED03ULL + 0x8CB92BA72F3D8DD7ULL);
    for (int i = 0; i < 4; i++) s[i] = splitmix64(&m);
    for (int i = 0; i < net->nl; i++) {
        const mc_layer *L = &net->l[i];
        if (L->kind != OP_AFFINE) continue;
        fill_normal(s, net->params + L->woff, L->fanin * L->cout, L->wsd);
        if (L->bias) fill_normal(s, net->params + L->boff, L->cout, L->bsd);
    }
}

/* ------------------------------------------------------------ layers ---- */

/* One sample's im2col patches: col[q][(d0 f1 + d1) cin + c] = in[(i, j)][c], 0 in padding. */
static void im2col(const mc_layer *L, const double *in, double *col)
{
    const size_t n = L->pout * (size_t)L->taps, cb = L->cin * sizeof(double);
    for (size_t e = 0; e < n; e++) {
        double *dst = col + e * L->cin;
        if (L->src[e] < 0) memset(dst, 0, cb);
        else memcpy(dst, in + (size_t)L->src[e] * L->cin, cb);
    }
}

/* The adjoint of im2col: gin (zeroed by the caller) += the patches' gradients at their sources. */
static void col2im(const mc_layer *L, const double *col, double *gin)
{
    const size_t n = L->pout * (size_t)L->taps;
    for (size_t e = 0; e < n; e++) {
        if (L->src[e] < 0) continue;
        const double *g = col + e * L->cin;
        double *dst = gin + (size_t)L->src[e] * L->cin;
        for (size_t c = 0; c < L->cin; c++) dst[c] += g[c];
    }
}

/* Average pooling of one sample, or its adjoint (back: gin += gout / |window| at the sources;
 * gin zeroed by the caller).  The divisor is the whole window, padding included. */
static void pool_sample(const mc_layer *L, int back, const double *in, double *out)
{
    const double inv = 1.0 / L->taps;
    for (size_t q = 0; q < L->pout; q++) {
        if (!back) memset(out + q * L->cin, 0, L->cin * sizeof(double));
        for (int t = 0; t < L->taps; t++) {
            const int src = L->src[q * L->taps + t];
            if (src < 0) continue;
            const size_t o = (size_t)src * L->cin;
            if (back)
                for (size_t c = 0; c < L->cin; c++) out[o + c] += inv * in[q * L->cin + c];
            else
                for (size_t c = 0; c < L->cin; c++) out[q * L->cin + c] += inv * in[o + c];
        }
    }
}

static void affine_forward(nk_mc_net *net, const mc_layer *L, const double *in, double *out, size_t n)
{
    const double *W = net->params + L->woff;
    if (L->direct) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(n * L->pin), (int)L->cout, (int)L->cin, L->wmul, in,
                    (int)L->cin, W, (int)L->cout, 0.0, out, (int)L->cout);
    } else {
        for (size_t s = 0; s < n; s++) {
            im2col(L, in + s * L->pin * L->cin, net->col);
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)L->pout, (int)L->cout, (int)L->fanin, L->wmul,
                        net->col, (int)L->fanin, W, (int)L->cout, 0.0, out + s * L->pout * L->cout, (int)L->cout);
        }
    }
    if (L->bias) {
        const double *b = net->params + L->boff;
        for (size_t r = 0; r < n * L->pout; r++)
            for (size_t c = 0; c < L->cout; c++) out[r * L->cout + c] += L->bmul * b[c];
    }
}

static void forward(nk_mc_net *net, const double *x, size_t n)
{
    memcpy(net->val[0], x, n * net->in_len * sizeof(double));
    for (int i = 0; i < net->nl; i++) {
        const mc_layer *L = &net->l[i];
        const double *in = net->val[i];
        double *out = net->val[i + 1];
        size_t len_in = L->pin * L->cin, len_out = L->pout * L->cout;
        switch (L->kind) {
        case OP_AFFINE: affine_forward(net, L, in, out, n); break;
        case OP_POOL:
            for (size_t s = 0; s < n; s++) pool_sample(L, 0, in + s * len_in, out + s * len_out);
            break;
        case OP_GAP:
            for (size_t s = 0; s < n; s++)
                for (size_t c = 0; c < L->cin; c++) {
                    double sum = 0;
                    for (size_t q = 0; q < L->pin; q++) sum += in[(s * L->pin + q) * L->cin + c];
                    out[s * L->cin + c] = sum / (double)L->pin;
                }
            break;
        case OP_ACT:
            for (size_t e = 0; e < n * len_in; e++) out[e] = nk_act_value(&L->act, in[e]);
            break;
        case OP_FLATTEN:
        case OP_RES_BEGIN:
            memcpy(out, in, n * len_in * sizeof(double));
            break;
        case OP_RES_END: {
            const double *skip = net->val[L->partner + 1];
            for (size_t e = 0; e < n * len_in; e++) out[e] = in[e] + skip[e];
            break;
        }
        }
    }
}

/* T (upper triangle) += the Gram of this affine layer's parameter gradients; G = gradient of
 * the output (n x pout x cout). */
static void affine_ntk(nk_mc_net *net, const mc_layer *L, const double *in, const double *G, size_t n, double *T)
{
    const int N = (int)n;
    if (L->pout == 1) {
        /* <J_x, J_x'> = wmul^2 (A_x . A_x') (G_x . G_x'); the bias adds bmul^2 (G_x . G_x') */
        const double *A = in;
        if (!L->direct) {
            for (size_t s = 0; s < n; s++) im2col(L, in + s * L->pin * L->cin, net->jbuf + s * L->fanin);
            A = net->jbuf;
        }
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, N, (int)L->fanin, L->wmul * L->wmul, A, (int)L->fanin, 0.0,
                    net->gram1, N);
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, N, (int)L->cout, 1.0, G, (int)L->cout, 0.0, net->gram2, N);
        double bb = L->bias ? L->bmul * L->bmul : 0;
        for (size_t i = 0; i < n; i++)
            for (size_t j = i; j < n; j++) T[i * n + j] += (net->gram1[i * n + j] + bb) * net->gram2[i * n + j];
        return;
    }
    const size_t cb_max = chunk_channels(L, n);
    for (size_t c0 = 0; c0 < L->cout; c0 += cb_max) {
        size_t cb = L->cout - c0 < cb_max ? L->cout - c0 : cb_max, jl = L->fanin * cb;
        for (size_t s = 0; s < n; s++) {
            const double *A = in + s * L->pin * L->cin;
            if (!L->direct) {
                im2col(L, A, net->col);
                A = net->col;
            }
            /* J_s = wmul A_s^T G_s[:, c0 : c0 + cb]  (fan_in x cb) */
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)L->fanin, (int)cb, (int)L->pout, L->wmul, A,
                        (int)L->fanin, G + s * L->pout * L->cout + c0, (int)L->cout, 0.0, net->jbuf + s * jl, (int)cb);
        }
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, N, (int)jl, 1.0, net->jbuf, (int)jl, 1.0, T, N);
    }
    if (L->bias) {
        for (size_t s = 0; s < n; s++) {
            double *sb = net->sb + s * L->cout;
            memset(sb, 0, L->cout * sizeof(double));
            for (size_t q = 0; q < L->pout; q++)
                for (size_t c = 0; c < L->cout; c++) sb[c] += G[(s * L->pout + q) * L->cout + c];
        }
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, N, (int)L->cout, L->bmul * L->bmul, net->sb, (int)L->cout,
                    1.0, T, N);
    }
}

/* gin = d f / d in from gout for affine layer L: wmul gout theta_W^T, back through im2col. */
static void affine_backward(nk_mc_net *net, const mc_layer *L, const double *gout, double *gin, size_t n)
{
    const double *W = net->params + L->woff;
    if (L->direct) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(n * L->pin), (int)L->cin, (int)L->cout, L->wmul, gout,
                    (int)L->cout, W, (int)L->cout, 0.0, gin, (int)L->cin);
        return;
    }
    memset(gin, 0, n * L->pin * L->cin * sizeof(double));
    for (size_t s = 0; s < n; s++) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)L->pout, (int)L->fanin, (int)L->cout, L->wmul,
                    gout + s * L->pout * L->cout, (int)L->cout, W, (int)L->cout, 0.0, net->col, (int)L->fanin);
        col2im(L, net->col, gin + s * L->pin * L->cin);
    }
}

/* Backward pass from the output gradient in grad[nl], adding each layer's parameter Gram to T. */
static void backward(nk_mc_net *net, size_t n, double *T)
{
    for (int i = net->nl - 1; i >= 0; i--) {
        const mc_layer *L = &net->l[i];
        const double *gout = net->grad[i + 1], *in = net->val[i];
        double *gin = net->grad[i];
        size_t len_in = n * L->pin * L->cin;
        if (L->kind == OP_AFFINE) affine_ntk(net, L, in, gout, n, T);
        if (!L->grad_below) break;
        switch (L->kind) {
        case OP_AFFINE: affine_backward(net, L, gout, gin, n); break;
        case OP_POOL:
            memset(gin, 0, len_in * sizeof(double));
            for (size_t s = 0; s < n; s++)
                pool_sample(L, 1, gout + s * L->pout * L->cout, gin + s * L->pin * L->cin);
            break;
        case OP_GAP:
            for (size_t s = 0; s < n; s++)
                for (size_t q = 0; q < L->pin; q++)
                    for (size_t c = 0; c < L->cin; c++)
                        gin[(s * L->pin + q) * L->cin + c] = gout[s * L->cin + c] / (double)L->pin;
            break;
        case OP_ACT:
            for (size_t e = 0; e < len_in; e++) gin[e] = gout[e] * nk_act_deriv(&L->act, in[e]);
            break;
        case OP_FLATTEN:
        case OP_RES_END:
            memcpy(gin, gout, len_in * sizeof(double));
            break;
        case OP_RES_BEGIN: {
            /* the block's input feeds the body and the skip: both gradients add */
            const double *skip = net->grad[L->partner + 1];
            for (size_t e = 0; e < len_in; e++) gin[e] = gout[e] + skip[e];
            break;
        }
        }
    }
}

nk_status nk_mc_net_forward(nk_mc_net *net, const double *x, size_t n, double *f, nk_error *err)
{
    nk_status st = reserve(net, n, 0, err);
    if (st != NK_OK) return st;
    forward(net, x, n);
    memcpy(f, net->val[net->nl], n * net->k * sizeof(double));
    return NK_OK;
}

nk_status nk_mc_net_ntk(nk_mc_net *net, const double *x, size_t n, double *f, double *ntk, nk_error *err)
{
    nk_status st = reserve(net, n, 1, err);
    if (st != NK_OK) return st;
    forward(net, x, n);
    if (f) memcpy(f, net->val[net->nl], n * net->k * sizeof(double));
    memset(ntk, 0, n * n * sizeof(double));
    double *g = net->grad[net->nl];
    for (size_t j = 0; j < net->k; j++) {
        /* output j of every sample: the gradient of f_j is the unit vector e_j */
        memset(g, 0, n * net->k * sizeof(double));
        for (size_t s = 0; s < n; s++) g[s * net->k + j] = 1;
        backward(net, n, ntk);
    }
    const double inv = 1.0 / (double)net->k;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i; j < n; j++) ntk[j * n + i] = ntk[i * n + j] *= inv;
    return NK_OK;
}

/* --------------------------------------------------------- Monte Carlo -- */

void nk_mc_opts_default(nk_mc_opts *o)
{
    memset(o, 0, sizeof *o);
    o->samples = 100;
    o->seed = 0;
    o->outputs = 1;
    o->get = NK_GET_BOTH;
}

typedef struct {
    nk_mc_net **nets;
    const double *x;
    size_t n;
    uint64_t seed;
    long first;                 /* network number of slot 0 of this round */
    int want_nngp, want_ntk;
    double **f;                 /* per thread: outputs, n x k */
    double *slot_k, *slot_t;    /* per slot: n x n */
    atomic_int failed;
} mc_job;

static void mc_unit(void *ctx, size_t r, int thread)
{
    mc_job *j = ctx;
    nk_mc_net *net = j->nets[thread];
    const size_t n = j->n, nn = n * n;
    double *f = j->f[thread];
    nk_mc_net_sample(net, j->seed, (uint64_t)(j->first + (long)r));
    nk_status st = j->want_ntk ? nk_mc_net_ntk(net, j->x, n, f, j->slot_t + r * nn, NULL)
                               : nk_mc_net_forward(net, j->x, n, f, NULL);
    if (st != NK_OK) {
        atomic_store(&j->failed, 1);
        return;
    }
    if (j->want_nngp) {
        double *K = j->slot_k + r * nn;
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)n, (int)net->k, 1.0 / (double)net->k, f, (int)net->k,
                    0.0, K, (int)n);
        for (size_t a = 0; a < n; a++)
            for (size_t b = a + 1; b < n; b++) K[b * n + a] = K[a * n + b];
    }
}

/* Welford's running mean and sum of squared deviations of the block rows [0, n1) x columns
 * [c0, c0 + nc) of an n x n slot, network number s (0-based). */
static void accumulate(const double *slot, size_t n, size_t n1, size_t c0, size_t nc, long s, double *mean, double *m2)
{
    for (size_t i = 0; i < n1; i++)
        for (size_t c = 0; c < nc; c++) {
            double v = slot[i * n + c0 + c], d = v - mean[i * nc + c];
            mean[i * nc + c] += d / (double)(s + 1);
            m2[i * nc + c] += d * (v - mean[i * nc + c]);
        }
}

/* The means and standard errors sqrt(m2 / (S (S - 1))) after S networks into the requested
 * outputs {nngp, nngp_se, ntk, ntk_se} (allocated if alloc, else already of the block's size). */
static nk_status write_estimates(nk_array *const outs[4], double *const acc[4], int want_nngp, int want_ntk, long S,
                                 size_t n1, size_t n2, int alloc, nk_error *err)
{
    size_t shape[2] = {n1, n2};
    for (int a = 0; a < 4; a++) {
        if (!outs[a] || !(a < 2 ? want_nngp : want_ntk)) continue;
        if (alloc) {
            nk_status st = nk_array_alloc(outs[a], 2, shape, err);
            if (st != NK_OK) return st;
        }
        const double *mean = acc[a & 2], *m2 = acc[(a & 2) + 1];
        for (size_t e = 0; e < n1 * n2; e++)
            outs[a]->data[e] = (a & 1) == 0 ? mean[e] : S > 1 ? sqrt(fmax(m2[e], 0) / ((double)S * (S - 1))) : 0;
    }
    return NK_OK;
}

static double physical_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), sz = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && sz > 0 ? (double)pages * sz : 0;
}

static nk_status check_shape(const nk_plan *p, const nk_array *x, const char *name, nk_error *err)
{
    int ok = x && x->data && x->ndim == p->in_ndim + 1 && x->shape[0] > 0;
    for (int a = 0; ok && a < p->in_ndim; a++) ok = x->shape[a + 1] == p->in_shape[a];
    if (!ok) return nk_fail(err, NK_ERR_INPUT, "mc: %s does not have the plan's sample shape (samples first, then the input shape the plan was made for)", name);
    for (size_t i = 0; i < nk_array_size(x); i++)
        if (!isfinite(x->data[i])) return nk_fail(err, NK_ERR_INPUT, "mc: %s has a non-finite value at element %zu", name, i);
    return NK_OK;
}

nk_status nk_mc_kernel(const nk_plan *p, const nk_array *x1, const nk_array *x2, const nk_mc_opts *o,
                       nk_array *nngp, nk_array *ntk, nk_array *nngp_se, nk_array *ntk_se, nk_error *err)
{
    nk_mc_opts defaults;
    nk_mc_opts_default(&defaults);
    if (!o) o = &defaults;
    if (nngp) memset(nngp, 0, sizeof *nngp);
    if (ntk) memset(ntk, 0, sizeof *ntk);
    if (nngp_se) memset(nngp_se, 0, sizeof *nngp_se);
    if (ntk_se) memset(ntk_se, 0, sizeof *ntk_se);
    if (o->samples < 1) return nk_fail(err, NK_ERR_INPUT, "mc: %ld networks (use samples >= 1)", o->samples);
    if (o->get < NK_GET_NNGP || o->get > NK_GET_BOTH) return nk_fail(err, NK_ERR_INPUT, "mc: get = %d (use NK_GET_NNGP, NK_GET_NTK or NK_GET_BOTH)", o->get);
    for (int i = 0; i < o->nsnapshots; i++)
        if (o->snapshots[i] < 1 || o->snapshots[i] > o->samples || (i && o->snapshots[i] <= o->snapshots[i - 1]))
            return nk_fail(err, NK_ERR_INPUT, "mc: snapshot %ld (use increasing network counts in 1..%ld)", o->snapshots[i], o->samples);
    nk_status st = check_shape(p, x1, "x1", err);
    if (st == NK_OK && x2) st = check_shape(p, x2, "x2", err);
    if (st != NK_OK) return st;
    const size_t n1 = x1->shape[0], n2 = x2 ? x2->shape[0] : n1, n = x2 ? n1 + n2 : n1, c0 = x2 ? n1 : 0;
    const size_t sample_len = nk_array_size(x1) / n1, nn = n * n, block = n1 * n2;
    const int want_nngp = (o->get & NK_GET_NNGP) != 0, want_ntk = (o->get & NK_GET_NTK) != 0;
    const long S = o->samples;
    int nt = nk_num_threads(o->nthreads);
    size_t R = MC_ROUND_DOUBLES / (nn * (size_t)(want_nngp + want_ntk));
    R = R < 1 ? 1 : R > MC_ROUND_MAX ? MC_ROUND_MAX : R;
    if ((size_t)S < R) R = (size_t)S;
    if ((size_t)nt > R) nt = (int)R;

    mc_job j;
    memset(&j, 0, sizeof j);
    j.n = n;
    j.seed = o->seed;
    j.want_nngp = want_nngp;
    j.want_ntk = want_ntk;
    atomic_init(&j.failed, 0);
    double *xcat = NULL, *acc[4] = {NULL, NULL, NULL, NULL}; /* mean K, m2 K, mean T, m2 T */
    nk_array snap[4];
    memset(snap, 0, sizeof snap);
    nk_array *const snaps[4] = {&snap[0], &snap[1], &snap[2], &snap[3]};
    int next_snap = 0;
    j.nets = calloc((size_t)nt, sizeof *j.nets);
    j.f = calloc((size_t)nt, sizeof *j.f);
    if (!j.nets || !j.f) st = nk_fail(err, NK_ERR_NOMEM, "mc: out of memory");
    for (int t = 0; st == NK_OK && t < nt; t++) st = nk_mc_net_create(p, o->outputs, &j.nets[t], err);
    if (st == NK_OK) {
        double bytes = nt * (nk_mc_net_bytes(j.nets[0], n, want_ntk) + 8.0 * n * j.nets[0]->k) +
                       8.0 * R * nn * (want_nngp + want_ntk) + 8.0 * 2 * block * (want_nngp + want_ntk) +
                       (x2 ? 8.0 * n * sample_len : 0);
        double limit = o->mem_limit > 0 ? o->mem_limit : physical_memory();
        if (limit > 0 && bytes > limit)
            st = nk_fail(err, NK_ERR_NOMEM, "mc: %zu samples x %d threads need %.3g GB, more than the limit %.3g GB "
                         "(use fewer samples, smaller widths or fewer threads)", n, nt, bytes / 1e9, limit / 1e9);
    }
    for (int t = 0; st == NK_OK && t < nt; t++) {
        st = reserve(j.nets[t], n, want_ntk, err);
        if (st == NK_OK && !(j.f[t] = malloc(n * j.nets[t]->k * sizeof(double))))
            st = nk_fail(err, NK_ERR_NOMEM, "mc: out of memory");
    }
    if (st == NK_OK && x2) {
        if (!(xcat = malloc(n * sample_len * sizeof(double)))) st = nk_fail(err, NK_ERR_NOMEM, "mc: out of memory");
        else {
            memcpy(xcat, x1->data, n1 * sample_len * sizeof(double));
            memcpy(xcat + n1 * sample_len, x2->data, n2 * sample_len * sizeof(double));
        }
    }
    j.x = x2 ? xcat : x1->data;
    if (st == NK_OK && want_nngp && !(j.slot_k = malloc(R * nn * sizeof(double)))) st = nk_fail(err, NK_ERR_NOMEM, "mc: out of memory");
    if (st == NK_OK && want_ntk && !(j.slot_t = malloc(R * nn * sizeof(double)))) st = nk_fail(err, NK_ERR_NOMEM, "mc: out of memory");
    for (int a = 0; st == NK_OK && a < 4; a++)
        if ((a < 2 ? want_nngp : want_ntk) && !(acc[a] = calloc(block, sizeof(double))))
            st = nk_fail(err, NK_ERR_NOMEM, "mc: out of memory");
    if (st == NK_OK && o->nsnapshots && o->snapshot)
        st = write_estimates(snaps, acc, want_nngp, want_ntk, 1, n1, n2, 1, err);

    if (st == NK_OK) {
        /* our threads each run one BLAS call at a time: keep OpenBLAS single-threaded inside */
        int blas_threads = openblas_get_num_threads();
        openblas_set_num_threads(1);
        for (long first = 0; first < S; first += (long)R) {
            size_t round = (size_t)(S - first) < R ? (size_t)(S - first) : R;
            j.first = first;
            nk_parallel_for(round, nt, mc_unit, &j);
            if (atomic_load(&j.failed)) {
                st = nk_fail(err, NK_ERR_NOMEM, "mc: out of memory during the run");
                break;
            }
            for (size_t r = 0; r < round && st == NK_OK; r++) {
                long done = first + (long)r + 1;
                if (want_nngp) accumulate(j.slot_k + r * nn, n, n1, c0, n2, done - 1, acc[0], acc[1]);
                if (want_ntk) accumulate(j.slot_t + r * nn, n, n1, c0, n2, done - 1, acc[2], acc[3]);
                if (o->snapshot && next_snap < o->nsnapshots && o->snapshots[next_snap] == done) {
                    next_snap++;
                    write_estimates(snaps, acc, want_nngp, want_ntk, done, n1, n2, 0, err);
                    if (o->snapshot(o->snapshot_ctx, done, want_nngp ? snaps[0] : NULL, want_nngp ? snaps[1] : NULL,
                                    want_ntk ? snaps[2] : NULL, want_ntk ? snaps[3] : NULL))
                        st = nk_fail(err, NK_ERR_RUN, "mc: cancelled");
                }
            }
            if (st != NK_OK) break;
            if (o->progress && o->progress(o->progress_ctx, (size_t)(first + (long)round), (size_t)S)) {
                st = nk_fail(err, NK_ERR_RUN, "mc: cancelled");
                break;
            }
        }
        openblas_set_num_threads(blas_threads);
    }
    nk_array *const outs[4] = {nngp, nngp_se, ntk, ntk_se};
    if (st == NK_OK) st = write_estimates(outs, acc, want_nngp, want_ntk, S, n1, n2, 1, err);
    for (int a = 0; a < 4; a++) nk_array_free(&snap[a]);
    if (st != NK_OK)
        for (int a = 0; a < 4; a++)
            if (outs[a]) nk_array_free(outs[a]);
    for (int t = 0; t < nt; t++) {
        if (j.nets) nk_mc_net_free(j.nets[t]);
        if (j.f) free(j.f[t]);
    }
    free(j.nets);
    free(j.f);
    free(j.slot_k);
    free(j.slot_t);
    free(xcat);
    for (int a = 0; a < 4; a++) free(acc[a]);
    return st;
}
