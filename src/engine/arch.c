/* arch.c -- the architecture spec language: parsing, validation, defaults.
 *
 *   spec  := { key=value } item*          (global defaults: w, b, param, width, quad)
 *   item  := layer | '[' item* ']' '*' N | 'res(' item* ')'
 *   layer := NAME [ '(' arg { ',' arg } ')' ]      arg := value | key=value
 * Every error names the 1-based column and shows the spec with a caret under it. */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 100000
#define MAX_NEST 64

void nk_arch_opts_default(nk_arch_opts *o)
{
    o->w_std = 1.0;
    o->b_std = 0.0;
    o->param = NK_PARAM_NTK;
    o->width = 1.0;
    o->quad_order = 0; /* automatic: grows with the pre-activation variance (act.c) */
}

typedef struct {
    const char *s;
    size_t i;
    nk_error *err;
    nk_arch_opts g;   /* global defaults in force */
    int depth;
    int total;        /* layers created so far, against MAX_LAYERS */
} parser;

typedef struct {
    nk_layer *v;
    int n, cap;
} layer_list;

static void free_layers(nk_layer *v, int n)
{
    for (int i = 0; i < n; i++) free_layers(v[i].body, v[i].nbody);
    free(v);
}

static nk_status perr(parser *p, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static nk_status perr(parser *p, size_t at, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    /* Show at most 60 characters of the spec around the error, with a caret. */
    size_t len = strlen(p->s), from = at > 40 ? at - 40 : 0;
    int shown = (int)(len - from < 60 ? len - from : 60);
    return nk_fail(p->err, NK_ERR_INPUT, "arch spec, column %zu: %s\n  %.*s\n  %*s^", at + 1,
                   what, shown, p->s + from, (int)(at - from), "");
}

static void skip_ws(parser *p)
{
    while (isspace((unsigned char)p->s[p->i])) p->i++;
}

static int is_name_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

static nk_status push(parser *p, layer_list *l, const nk_layer *x)
{
    if (++p->total > MAX_LAYERS)
        return perr(p, (size_t)x->pos - 1, "more than %d layers (use fewer repetitions)", MAX_LAYERS);
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 8;
        nk_layer *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return nk_fail(p->err, NK_ERR_NOMEM, "arch spec: out of memory");
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *x;
    return NK_OK;
}

static nk_status copy_layers(parser *p, const nk_layer *src, int n, nk_layer **out)
{
    *out = NULL;
    if (n == 0) return NK_OK;
    nk_layer *v = calloc((size_t)n, sizeof *v);
    if (!v) return nk_fail(p->err, NK_ERR_NOMEM, "arch spec: out of memory");
    for (int i = 0; i < n; i++) {
        v[i] = src[i];
        v[i].body = NULL;
        if (src[i].nbody && copy_layers(p, src[i].body, src[i].nbody, &v[i].body) != NK_OK) {
            v[i].nbody = 0;
            free_layers(v, i + 1);
            return NK_ERR_NOMEM;
        }
    }
    *out = v;
    return NK_OK;
}

/* A number: strtod over the characters a number may contain, finite. */
static nk_status parse_number(parser *p, const char *what, double *out)
{
    size_t start = p->i;
    char buf[64];
    size_t n = 0;
    while (n < sizeof buf - 1 && (isalnum((unsigned char)p->s[p->i]) || strchr("+-.", p->s[p->i])) &&
           p->s[p->i] != 'x') {
        buf[n++] = p->s[p->i++];
    }
    buf[n] = 0;
    char *end;
    errno = 0;
    double v = n ? strtod(buf, &end) : 0;
    if (!n || *end || errno || !isfinite(v))
        return perr(p, start, "expected a number for %s, found '%.*s'", what, (int)(n ? n : 1),
                    n ? buf : p->s + start);
    *out = v;
    return NK_OK;
}

static nk_status parse_int(parser *p, const char *what, long lo, long hi, int *out)
{
    size_t start = p->i;
    double v;
    nk_status st = parse_number(p, what, &v);
    if (st != NK_OK) return st;
    if (v != floor(v) || v < lo || v > hi)
        return perr(p, start, "%s must be an integer in %ld..%ld", what, lo, hi);
    *out = (int)v;
    return NK_OK;
}

/* N or NxM */
static nk_status parse_sizes(parser *p, const char *what, int v[2], int *count)
{
    nk_status st = parse_int(p, what, 1, 4096, &v[0]);
    if (st != NK_OK) return st;
    v[1] = v[0];
    *count = 1;
    if (p->s[p->i] == 'x') {
        p->i++;
        st = parse_int(p, what, 1, 4096, &v[1]);
        *count = 2;
    }
    return st;
}

static nk_status parse_word(parser *p, char *buf, size_t cap)
{
    size_t n = 0, start = p->i;
    while (is_name_char(p->s[p->i])) {
        if (n + 1 >= cap) return perr(p, start, "name too long");
        buf[n++] = p->s[p->i++];
    }
    buf[n] = 0;
    return NK_OK;
}

/* key=value common to global and per-layer settings; *seen marks what was set. */
static nk_status parse_key_value(parser *p, const char *key, size_t kpos, nk_layer *l,
                                 int layer_ok_pool)
{
    if (!strcmp(key, "w")) {
        size_t at = p->i;
        nk_status st = parse_number(p, "w", &l->w);
        if (st == NK_OK && l->w < 0) return perr(p, at, "w (weight standard deviation) must be >= 0");
        return st;
    }
    if (!strcmp(key, "b")) {
        size_t at = p->i;
        nk_status st = parse_number(p, "b", &l->b);
        if (st == NK_OK && l->b < 0) return perr(p, at, "b (bias standard deviation) must be >= 0");
        return st;
    }
    if (!strcmp(key, "width")) {
        size_t at = p->i;
        nk_status st = parse_number(p, "width", &l->width);
        if (st == NK_OK && !(l->width > 0)) return perr(p, at, "width must be > 0");
        return st;
    }
    if (layer_ok_pool && !strcmp(key, "stride")) return parse_sizes(p, "stride", l->stride, &l->nstride);
    if (layer_ok_pool && !strcmp(key, "pad")) {
        char v[32];
        size_t at = p->i;
        nk_status st = parse_word(p, v, sizeof v);
        if (st != NK_OK) return st;
        if (!strcmp(v, "same")) l->pad = PAD_SAME;
        else if (!strcmp(v, "valid")) l->pad = PAD_VALID;
        else if (!strcmp(v, "circular")) l->pad = PAD_CIRCULAR;
        else return perr(p, at, "pad must be same, valid or circular, not '%s'", v);
        l->pad_set = 1;
        return NK_OK;
    }
    return perr(p, kpos, "unknown option '%s' here (options: w, b, width%s)", key,
                layer_ok_pool ? ", stride, pad" : "");
}

static const struct { const char *name; nk_act_kind kind; } simple_acts[] = {
    {"relu", NK_ACT_RELU}, {"erf", NK_ACT_ERF}, {"identity", NK_ACT_IDENTITY},
    {"tanh", NK_ACT_TANH}, {"gelu", NK_ACT_GELU}, {"sigmoid", NK_ACT_SIGMOID},
    {"sin", NK_ACT_SIN}, {"softplus", NK_ACT_SOFTPLUS}, {"swish", NK_ACT_SWISH},
    {"cos", NK_ACT_COS}, {"exp", NK_ACT_EXP}, {"sign", NK_ACT_SIGN},
};

#define KNOWN "dense, conv, avgpool, gap, flatten, res, relu, erf, identity, tanh, gelu, " \
              "sigmoid, sin, cos, exp, sign, rbf, softplus, swish, leaky_relu, abrelu; presets myrtle5, myrtle7, " \
              "myrtle10, cnn_gap(D), cnn_flatten(D), fc(D)"

static nk_status parse_items(parser *p, layer_list *out, char close);

/* Named architectures, expanded in place to a spec of the layers above (the globals in force,
 * w and b, apply to their layers).  Myrtle (Shankar et al. 2020, "Neural kernels without
 * tangents"; neural-tangents' MyrtleNetwork): depth 5, 7, 10 has a, b, c = 2,1,1 / 2,2,2 / 3,3,3
 * blocks of conv(3) relu (same padding), an avgpool(2) after the first two groups, then on 32x32
 * inputs three more avgpool(2) from 8x8 to 1x1 and a dense readout.  Those three pools are
 * exactly the global average of the 8x8 map, so the presets end in gap: identical on 32x32, and
 * on 28x28 images (28 -> 14 -> 7, where a third 2x2 pool would drop a border row and column) the
 * readout averages the 7x7 map.  The paper uses W_std = sqrt 2, b_std = 0: with ReLU and no bias
 * w only scales the kernel (by w^2 per layer), which relative regularization and t = inf ignore;
 * write `w=1.41 myrtle5` for the same scale.  Families of depth D (Lee et al. 2020, "Finite
 * versus infinite neural networks"; the paper's FC, CNN-VEC and CNN-GAP): */
static const struct { const char *name; const char *spec; int takes_depth; } presets[] = {
    {"myrtle5", "[conv(3) relu]*2 avgpool(2) conv(3) relu avgpool(2) conv(3) relu gap dense", 0},
    {"myrtle7", "[conv(3) relu]*2 avgpool(2) [conv(3) relu]*2 avgpool(2) [conv(3) relu]*2 gap dense", 0},
    {"myrtle10", "[conv(3) relu]*3 avgpool(2) [conv(3) relu]*3 avgpool(2) [conv(3) relu]*3 gap dense", 0},
    {"cnn_gap", "[conv(3) relu]*%d gap dense", 1},       /* CNN-GAP(D): D conv layers, global pool */
    {"cnn_flatten", "[conv(3) relu]*%d flatten dense", 1}, /* CNN-VEC(D): D conv layers, flatten */
    {"fc", "flatten [dense relu]*%d dense", 1},          /* FC(D): D hidden dense layers */
};

/* The preset `name` at column `at` (its "(D)" already consumed into depth): its layers appended
 * to out, each reporting the preset's column in messages. */
static nk_status expand_preset(parser *p, size_t k, int depth, size_t at, layer_list *out)
{
    char text[256];
    snprintf(text, sizeof text, presets[k].spec, depth);
    parser sub = {text, 0, p->err, p->g, p->depth + 1, p->total};
    int from = out->n;
    nk_status st = parse_items(&sub, out, 0);
    p->total = sub.total;
    for (int i = from; i < out->n; i++) out->v[i].pos = (int)at + 1;
    return st;
}

/* The argument list of a layer, after its '('.  Positional values go to pos_vals. */
static nk_status parse_args(parser *p, nk_layer *l, const char *name, double *pos_vals,
                            int *npos, int max_pos, int sizes_first)
{
    *npos = 0;
    skip_ws(p);
    if (p->s[p->i] == ')') { p->i++; return NK_OK; }
    for (;;) {
        skip_ws(p);
        size_t at = p->i;
        nk_status st;
        if (is_name_char(p->s[p->i]) && isalpha((unsigned char)p->s[p->i])) {
            char key[32];
            if ((st = parse_word(p, key, sizeof key)) != NK_OK) return st;
            skip_ws(p);
            if (p->s[p->i] != '=') return perr(p, p->i, "expected '=' after '%s'", key);
            p->i++;
            skip_ws(p);
            if ((st = parse_key_value(p, key, at, l, l->type == L_CONV || l->type == L_AVGPOOL)) != NK_OK)
                return st;
        } else {
            if (*npos >= max_pos)
                return perr(p, at, "%s takes %d positional argument%s", name, max_pos, max_pos == 1 ? "" : "s");
            if (sizes_first && *npos == 0) {
                if ((st = parse_sizes(p, "filter size", l->filt, &l->nfilt)) != NK_OK) return st;
            } else if ((st = parse_number(p, name, &pos_vals[*npos])) != NK_OK) {
                return st;
            }
            (*npos)++;
        }
        skip_ws(p);
        if (p->s[p->i] == ',') { p->i++; continue; }
        if (p->s[p->i] == ')') { p->i++; return NK_OK; }
        return perr(p, p->i, "expected ',' or ')' in the arguments of %s", name);
    }
}

static nk_status parse_layer(parser *p, layer_list *out)
{
    size_t at = p->i;
    char name[32];
    nk_status st = parse_word(p, name, sizeof name);
    if (st != NK_OK) return st;
    if (!name[0]) return perr(p, at, "unexpected '%c' (expected a layer: " KNOWN ")", p->s[at]);
    nk_layer l;
    memset(&l, 0, sizeof l);
    l.pos = (int)at + 1;
    l.w = p->g.w_std;
    l.b = p->g.b_std;
    l.width = p->g.width;
    l.stride[0] = l.stride[1] = 1;
    l.nstride = 0; /* 0: not given; resolved after the arguments */
    l.pad = PAD_SAME;
    int has_paren = p->s[p->i] == '(';
    if (has_paren) p->i++;
    double pos[2] = {0, 0};
    int npos = 0;

    for (size_t k = 0; k < sizeof presets / sizeof *presets; k++) {
        if (strcmp(name, presets[k].name)) continue;
        int depth = 0;
        if (presets[k].takes_depth) {
            if (!has_paren) return perr(p, p->i, "%s needs a depth: %s(3)", name, name);
            skip_ws(p);
            if ((st = parse_int(p, "depth", 1, 1000, &depth)) != NK_OK) return st;
            skip_ws(p);
            if (p->s[p->i] != ')') return perr(p, p->i, "expected ')' after the depth of %s", name);
            p->i++;
        } else if (has_paren) {
            return perr(p, at, "%s takes no arguments (its layers are fixed; see nk_arch_parse)", name);
        }
        return expand_preset(p, k, depth, at, out);
    }
    if (!strcmp(name, "res")) {
        if (!has_paren) return perr(p, p->i, "res needs a body: res(LAYERS)");
        l.type = L_RES;
        layer_list body = {0};
        if (++p->depth > MAX_NEST) return perr(p, at, "nesting deeper than %d", MAX_NEST);
        st = parse_items(p, &body, ')');
        p->depth--;
        if (st != NK_OK) { free_layers(body.v, body.n); return st; }
        if (body.n == 0) { free_layers(body.v, body.n); return perr(p, at, "res() has an empty body (write res(conv(3) relu conv(3)) for example)"); }
        l.body = body.v;
        l.nbody = body.n;
        st = push(p, out, &l);
        if (st != NK_OK) free_layers(l.body, l.nbody);
        return st;
    }
    if (!strcmp(name, "dense")) {
        l.type = L_DENSE;
        if (has_paren && (st = parse_args(p, &l, name, pos, &npos, 1, 0)) != NK_OK) return st;
        if (npos == 1) {
            if (!(pos[0] > 0)) return perr(p, at, "dense(N): width must be > 0");
            l.width = pos[0];
        }
    } else if (!strcmp(name, "conv") || !strcmp(name, "avgpool")) {
        l.type = name[0] == 'c' ? L_CONV : L_AVGPOOL;
        if (!has_paren) return perr(p, p->i, "%s needs a filter size: %s(3) or %s(3x3)", name, name, name);
        if ((st = parse_args(p, &l, name, pos, &npos, 1, 1)) != NK_OK) return st;
        if (npos == 0) return perr(p, at, "%s needs a filter size: %s(3) or %s(3x3)", name, name, name);
        if (l.type == L_AVGPOOL) {
            /* Pooling defaults: stride = window, no padding (set explicitly to change). */
            if (!l.nstride) { l.stride[0] = l.filt[0]; l.stride[1] = l.filt[1]; l.nstride = l.nfilt; }
            if (!l.pad_set) l.pad = PAD_VALID;
        }
        if (!l.nstride) l.nstride = 1;
    } else if (!strcmp(name, "gap") || !strcmp(name, "flatten")) {
        l.type = name[0] == 'g' ? L_GAP : L_FLATTEN;
        if (has_paren) return perr(p, at, "%s takes no arguments", name);
    } else if (!strcmp(name, "leaky_relu") || !strcmp(name, "abrelu")) {
        l.type = L_ACT;
        l.act.kind = NK_ACT_ABRELU;
        int want = name[0] == 'l' ? 1 : 2;
        if (!has_paren || (st = parse_args(p, &l, name, pos, &npos, want, 0)) != NK_OK || npos != want) {
            if (!has_paren || st == NK_OK)
                return perr(p, at, "%s needs %s", name, want == 1 ? "a slope: leaky_relu(0.1)" : "two slopes: abrelu(-0.5,1.5)");
            return st;
        }
        l.act.a = pos[0];
        l.act.b = want == 1 ? 1.0 : pos[1];
    } else if (!strcmp(name, "rbf")) {
        /* rbf, rbf(G) or rbf(gamma=G): neural-tangents' Rbf, gamma 1 by default */
        l.type = L_ACT;
        l.act.kind = NK_ACT_RBF;
        l.act.a = 1;
        if (has_paren) {
            skip_ws(p);
            if (!strncmp(p->s + p->i, "gamma", 5) && !is_name_char(p->s[p->i + 5])) {
                p->i += 5;
                skip_ws(p);
                if (p->s[p->i] != '=') return perr(p, p->i, "expected '=' after 'gamma' (write rbf(gamma=0.5))");
                p->i++;
                skip_ws(p);
            }
            const size_t vat = p->i;
            if ((st = parse_number(p, "the gamma of rbf", &l.act.a)) != NK_OK) return st;
            if (!(l.act.a > 0))
                return perr(p, vat, "rbf: gamma must be > 0, not %g (it is 1/(2 l^2) for the length scale l: "
                            "write rbf(0.5) or rbf(gamma=0.5))", l.act.a);
            skip_ws(p);
            if (p->s[p->i] != ')') return perr(p, p->i, "expected ')' after the gamma of rbf (rbf takes one argument: rbf(gamma=0.5))");
            p->i++;
        }
    } else {
        size_t k;
        for (k = 0; k < sizeof simple_acts / sizeof *simple_acts; k++)
            if (!strcmp(name, simple_acts[k].name)) break;
        if (k == sizeof simple_acts / sizeof *simple_acts)
            return perr(p, at, "unknown layer '%s' (known: " KNOWN ")", name);
        if (has_paren) return perr(p, at, "%s takes no arguments", name);
        l.type = L_ACT;
        l.act.kind = simple_acts[k].kind;
    }
    return push(p, out, &l);
}

static nk_status parse_items(parser *p, layer_list *out, char close)
{
    for (;;) {
        skip_ws(p);
        char c = p->s[p->i];
        if (c == 0) {
            if (close) return perr(p, p->i, "missing '%c' at the end", close);
            return NK_OK;
        }
        if (c == close) { p->i++; return NK_OK; }
        if (c == ']' || c == ')') return perr(p, p->i, "unmatched '%c'", c);
        nk_status st;
        if (c == '[') {
            size_t at = p->i++;
            layer_list group = {0};
            if (++p->depth > MAX_NEST) return perr(p, at, "nesting deeper than %d", MAX_NEST);
            int before = p->total;
            st = parse_items(p, &group, ']');
            p->depth--;
            if (st == NK_OK) {
                skip_ws(p);
                if (p->s[p->i] != '*') st = perr(p, p->i, "expected '*N' after ']' (repeat count, e.g. [conv(3) relu]*5)");
            }
            int n = 0;
            if (st == NK_OK) {
                p->i++;
                skip_ws(p);
                st = parse_int(p, "repeat count", 0, MAX_LAYERS, &n);
            }
            if (st == NK_OK && group.n == 0) st = perr(p, at, "empty group [] (put layers inside)");
            int per = p->total - before;
            if (st == NK_OK && (long)per * n > MAX_LAYERS)
                st = perr(p, at, "the repetition makes more than %d layers", MAX_LAYERS);
            p->total = before;
            for (int r = 0; st == NK_OK && r < n; r++) {
                for (int j = 0; st == NK_OK && j < group.n; j++) {
                    nk_layer copy = group.v[j];
                    st = copy_layers(p, group.v[j].body, group.v[j].nbody, &copy.body);
                    if (st == NK_OK) {
                        st = push(p, out, &copy);
                        if (st != NK_OK) free_layers(copy.body, copy.nbody);
                    }
                }
            }
            free_layers(group.v, group.n);
            if (st != NK_OK) return st;
            continue;
        }
        if ((st = parse_layer(p, out)) != NK_OK) return st;
    }
}

/* Leading key=value tokens set the global defaults. */
static nk_status parse_globals(parser *p)
{
    for (;;) {
        skip_ws(p);
        size_t at = p->i, j = p->i;
        while (is_name_char(p->s[j])) j++;
        if (j == at || p->s[j] != '=') return NK_OK;
        char key[32];
        nk_status st = parse_word(p, key, sizeof key);
        if (st != NK_OK) return st;
        p->i++; /* '=' */
        if (!strcmp(key, "param")) {
            char v[32];
            size_t vat = p->i;
            if ((st = parse_word(p, v, sizeof v)) != NK_OK) return st;
            if (!strcmp(v, "ntk")) p->g.param = NK_PARAM_NTK;
            else if (!strcmp(v, "standard")) p->g.param = NK_PARAM_STANDARD;
            else return perr(p, vat, "param must be ntk or standard, not '%s'", v);
        } else if (!strcmp(key, "quad")) {
            if ((st = parse_int(p, "quad", 0, 512, &p->g.quad_order)) != NK_OK) return st;
        } else {
            nk_layer l;
            memset(&l, 0, sizeof l);
            l.w = p->g.w_std; l.b = p->g.b_std; l.width = p->g.width;
            if (strcmp(key, "w") && strcmp(key, "b") && strcmp(key, "width"))
                return perr(p, at, "unknown global option '%s' (global options: w, b, param, width, quad)", key);
            if ((st = parse_key_value(p, key, at, &l, 0)) != NK_OK) return st;
            p->g.w_std = l.w; p->g.b_std = l.b; p->g.width = l.width;
        }
        if (p->s[p->i] && !isspace((unsigned char)p->s[p->i]))
            return perr(p, p->i, "expected a space after the value of %s", key);
    }
}

nk_status nk_arch_parse(const char *spec, const nk_arch_opts *opts, nk_arch **out, nk_error *err)
{
    *out = NULL;
    if (!spec) return nk_fail(err, NK_ERR_INPUT, "arch spec: missing (give --arch SPEC)");
    nk_arch_opts defaults;
    nk_arch_opts_default(&defaults);
    parser p = {spec, 0, err, opts ? *opts : defaults, 0, 0};
    if (p.g.quad_order < 0 || p.g.quad_order > 512)
        return nk_fail(err, NK_ERR_INPUT, "arch options: quadrature order %d out of range 0..512 (0: automatic)", p.g.quad_order);
    layer_list l = {0};
    nk_status st = parse_globals(&p);
    if (st == NK_OK) st = parse_items(&p, &l, 0);
    if (st == NK_OK && l.n == 0) st = perr(&p, p.i, "no layers (e.g. '[dense relu]*3 dense' or '[conv(3) relu]*5 gap dense')");
    nk_arch *a = NULL;
    if (st == NK_OK) {
        a = calloc(1, sizeof *a);
        if (a) a->spec = strdup(spec);
        if (!a || !a->spec) {
            if (a) free(a);
            a = NULL;
            st = nk_fail(err, NK_ERR_NOMEM, "arch spec: out of memory");
        }
    }
    if (st != NK_OK) {
        free_layers(l.v, l.n);
        return st;
    }
    a->layers = l.v;
    a->n = l.n;
    a->param = p.g.param;
    a->quad_order = p.g.quad_order;
    *out = a;
    return NK_OK;
}

void nk_arch_free(nk_arch *a)
{
    if (!a) return;
    free_layers(a->layers, a->n);
    free(a->spec);
    free(a);
}
