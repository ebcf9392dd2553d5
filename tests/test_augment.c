/* test_augment.c -- the flip-augmented kernel against its definition, built here from four plain
 * kernel matrices of inputs mirrored by this file's own code:
 *   K_G(x, x') = 1/4 [K(x, x') + K(x, f x') + K(f x, x') + K(f x, f x')],
 * and nk_plan_flip_invariant against the measured symmetry K(f x, f x') = K(x, x'); translations
 * against the double sum of their definition over plain kernels computed layer by layer. */
#include "internal.h"
#include "nk_test.h"

#include <stdlib.h>
#include <string.h>

/* A copy of x (N, H, W, C) with every image mirrored left-right. */
static nk_array mirror(const nk_array *x)
{
    nk_array m;
    nk_array_alloc(&m, x->ndim, x->shape, NULL);
    size_t n = x->shape[0], h = x->shape[1], w = x->shape[2], c = x->shape[3];
    for (size_t s = 0; s < n; s++)
        for (size_t i = 0; i < h; i++)
            for (size_t j = 0; j < w; j++)
                for (size_t k = 0; k < c; k++)
                    m.data[((s * h + i) * w + j) * c + k] = x->data[((s * h + i) * w + (w - 1 - j)) * c + k];
    return m;
}

static double max_abs(const nk_array *a)
{
    double m = 0;
    for (size_t i = 0; i < nk_array_size(a); i++) m = fmax(m, fabs(a->data[i]));
    return m;
}

static double max_diff(const nk_array *a, const nk_array *b)
{
    double m = 0;
    for (size_t i = 0; i < nk_array_size(a); i++) m = fmax(m, fabs(a->data[i] - b->data[i]));
    return m;
}

/* K(a, b) for one of nngp (which 0) or ntk (1); b NULL: the Gram of a. */
static nk_array kmat(const nk_plan *p, const nk_array *a, const nk_array *b, int which)
{
    nk_kernel_opts o;
    nk_kernel_opts_default(&o);
    o.get = NK_GET_BOTH;
    o.nthreads = 2;
    nk_array k[2] = {{0}};
    nk_error err = {{0}};
    nk_status st = nk_kernel_matrix(p, a, b, &o, &k[0], &k[1], &err);
    CHECK(st == NK_OK, "kernel: %s", err.msg);
    nk_array_free(&k[1 - which]);
    return k[which];
}

typedef struct {
    const char *spec;
    size_t w;      /* image width */
    int invariant; /* expected from the geometry (see augment.c) */
} flip_case;

static void check_case(const flip_case *fc)
{
    unsigned long long seed = 0x5eed + fc->w;
    size_t s1[4] = {5, 5, fc->w, 2}, s2[4] = {4, 5, fc->w, 2};
    nk_array x1 = nk_test_random_array(4, s1, &seed), x2 = nk_test_random_array(4, s2, &seed);
    nk_array f1 = mirror(&x1), f2 = mirror(&x2);
    nk_arch *a = NULL;
    nk_plan *p = NULL;
    nk_error err = {{0}};
    nk_status st = nk_arch_parse(fc->spec, NULL, &a, &err);
    if (!st) st = nk_plan_create(a, 3, s1 + 1, &p, &err);
    CHECK(st == NK_OK, "%s: %s", fc->spec, err.msg);
    if (st) goto done;
    CHECK(nk_plan_flip_invariant(p) == fc->invariant, "%s, width %zu: invariant %d, expected %d", fc->spec, fc->w,
          nk_plan_flip_invariant(p), fc->invariant);
    for (int which = 0; which < 2; which++) {
        /* the measured symmetry agrees with the structural test */
        nk_array k = kmat(p, &x1, &x2, which), kff = kmat(p, &f1, &f2, which);
        double scale = max_abs(&k), asym = max_diff(&k, &kff) / scale;
        if (fc->invariant) CHECK(asym < 1e-12, "%s: K(fx, fx') - K(x, x') = %g (relative) for a symmetric plan", fc->spec, asym);
        else CHECK(asym > 1e-6, "%s: K(fx, fx') = K(x, x') to %g though the plan is not symmetric", fc->spec, asym);
        /* cross kernel and Gram against the four-term definition */
        for (int gram = 0; gram < 2; gram++) {
            const nk_array *b = gram ? NULL : &x2, *fb = gram ? &f1 : &f2, *bb = gram ? &x1 : &x2;
            nk_array t[4] = {kmat(p, &x1, bb, which), kmat(p, &x1, fb, which), kmat(p, &f1, bb, which),
                             kmat(p, &f1, fb, which)};
            nk_array ref;
            nk_array_alloc(&ref, 2, t[0].shape, NULL);
            for (size_t i = 0; i < nk_array_size(&ref); i++)
                ref.data[i] = 0.25 * (t[0].data[i] + t[1].data[i] + t[2].data[i] + t[3].data[i]);
            for (int full = 0; full < 2; full++) {
                nk_kernel_opts o;
                nk_kernel_opts_default(&o);
                o.get = which ? NK_GET_NTK : NK_GET_NNGP;
                nk_array g = {0};
                st = nk_kernel_matrix_flip(p, &x1, b, &o, full, which ? NULL : &g, which ? &g : NULL, &err);
                CHECK(st == NK_OK, "%s: %s", fc->spec, err.msg);
                if (st) continue;
                double d = max_diff(&g, &ref) / max_abs(&ref);
                CHECK(d < 1e-13, "%s %s %s full_sum=%d: %g from the four-term definition", fc->spec,
                      which ? "ntk" : "nngp", gram ? "gram" : "cross", full, d);
                if (gram) {
                    double sym = 0;
                    for (size_t i = 0; i < 5; i++)
                        for (size_t j = 0; j < 5; j++) sym = fmax(sym, fabs(g.data[i * 5 + j] - g.data[j * 5 + i]));
                    CHECK(sym == 0, "%s: augmented Gram not exactly symmetric (%g)", fc->spec, sym);
                }
                nk_array_free(&g);
            }
            if (!fc->invariant && gram) {
                /* why the shortcut is refused here: 1/2 [K(x, x') + K(x, f x')] is not even symmetric */
                double sym = 0;
                for (size_t i = 0; i < 5; i++)
                    for (size_t j = 0; j < 5; j++)
                        sym = fmax(sym, fabs(t[1].data[i * 5 + j] - t[1].data[j * 5 + i]));
                CHECK(sym / max_abs(&ref) > 1e-6, "%s: K(x, f x') symmetric (%g) for an asymmetric plan", fc->spec, sym);
            }
            for (int q = 0; q < 4; q++) nk_array_free(&t[q]);
            nk_array_free(&ref);
        }
        nk_array_free(&k);
        nk_array_free(&kff);
    }
done:
    nk_plan_free(p);
    nk_arch_free(a);
    nk_array_free(&x1); nk_array_free(&x2); nk_array_free(&f1); nk_array_free(&f2);
}

/* A flatten straight on the data runs as a reshape on the MLP path (plan.c); the same network
 * behind a conv(1) (w = 1, b = 0: K = K0 position by position) takes the diagonal path.  Their
 * NNGPs must agree, and equal the MLP on the flattened vectors. */
static void check_flat_input(void)
{
    unsigned long long seed = 77;
    size_t shape[4] = {6, 4, 5, 3}, flat_shape[2] = {6, 60}, in[3] = {4, 5, 3}, flat_in = 60;
    nk_array x = nk_test_random_array(4, shape, &seed), xf = x;
    xf.ndim = 2;
    xf.shape[0] = flat_shape[0];
    xf.shape[1] = flat_shape[1];
    const char *specs[5] = {"b=0.2 flatten [dense relu]*2 dense", "b=0.2 conv(1,b=0) flatten [dense relu]*2 dense",
                            "b=0.2 [dense relu]*2 dense",
                            /* the same behind a pool on the data (4x5 -> 2x2, a column dropped) */
                            "b=0.2 avgpool(2) flatten [dense relu]*2 dense",
                            "b=0.2 avgpool(2) conv(1,b=0) flatten [dense relu]*2 dense"};
    nk_array k[5] = {{0}};
    for (int i = 0; i < 5; i++) {
        nk_arch *a = NULL;
        nk_plan *p = NULL;
        nk_error err = {{0}};
        nk_status st = nk_arch_parse(specs[i], NULL, &a, &err);
        if (!st) st = nk_plan_create(a, i != 2 ? 3 : 1, i != 2 ? in : &flat_in, &p, &err);
        CHECK(st == NK_OK, "%s: %s", specs[i], err.msg);
        if (!st) k[i] = kmat(p, i != 2 ? &x : &xf, NULL, 0);
        nk_plan_free(p);
        nk_arch_free(a);
    }
    if (k[0].data && k[1].data && k[2].data) {
        CHECK(max_diff(&k[0], &k[1]) < 1e-13 * max_abs(&k[1]), "flatten on the data vs behind conv(1): %g", max_diff(&k[0], &k[1]));
        CHECK(max_diff(&k[0], &k[2]) < 1e-13 * max_abs(&k[2]), "flatten on the data vs the flat MLP: %g", max_diff(&k[0], &k[2]));
    }
    if (k[3].data && k[4].data)
        CHECK(max_diff(&k[3], &k[4]) < 1e-13 * max_abs(&k[4]), "pooled data, flatten first vs behind conv(1): %g",
              max_diff(&k[3], &k[4]));
    for (int i = 0; i < 5; i++) nk_array_free(&k[i]);
    nk_array_free(&x);
}

/* The plan of spec for samples of shape (H, W, C); CHECKed. */
static nk_status make_plan(const char *spec, const size_t *shape, nk_arch **a, nk_plan **p, nk_kernel_opts *o,
                           nk_error *err)
{
    *a = NULL;
    *p = NULL;
    nk_kernel_opts_default(o);
    o->get = NK_GET_BOTH;
    nk_status st = nk_arch_parse(spec, NULL, a, err);
    if (!st) st = nk_plan_create(*a, 3, shape, p, err);
    CHECK(st == NK_OK, "%s: %s", spec, err->msg);
    return st;
}

/* (mirror^a then translate by (dy, dx), wrapping around) of every image of x (N, H, W, C). */
static nk_array transformed(const nk_array *x, int a, int dy, int dx)
{
    nk_array m;
    nk_array_alloc(&m, x->ndim, x->shape, NULL);
    int n = (int)x->shape[0], h = (int)x->shape[1], w = (int)x->shape[2], c = (int)x->shape[3];
    for (int s = 0; s < n; s++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) {
                int si = (i - dy + h) % h, sj = (j - dx + w) % w;
                if (a) sj = w - 1 - sj;
                for (int k = 0; k < c; k++)
                    m.data[((s * h + i) * w + j) * c + k] = x->data[((s * h + si) * w + sj) * c + k];
            }
    return m;
}

/* Translation (and flip) augmentation against the double sum over A x A of the definition. */
static void check_shift(const char *spec, int flip, int shift, int refused)
{
    unsigned long long seed = 99;
    size_t s1[4] = {4, 5, 6, 2}, s2[4] = {3, 5, 6, 2};
    nk_array x1 = nk_test_random_array(4, s1, &seed), x2 = nk_test_random_array(4, s2, &seed);
    nk_arch *a;
    nk_plan *p;
    nk_kernel_opts o;
    nk_error err = {{0}};
    nk_status st = make_plan(spec, s1 + 1, &a, &p, &o, &err);
    for (int gram = 0; !st && gram < 2; gram++) {
        const nk_array *b = gram ? &x1 : &x2;
        nk_array g[2] = {{0}};
        st = nk_kernel_matrix_augment(p, &x1, gram ? NULL : &x2, &o, flip, shift, 0, &g[0], &g[1], &err);
        if (refused) {
            CHECK(st == NK_ERR_INPUT && strstr(err.msg, "circular"), "%s: shift refused: %d %s", spec, st, err.msg);
            st = NK_OK;
            break;
        }
        CHECK(st == NK_OK, "%s: %s", spec, err.msg);
        if (st) break;
        for (int which = 0; which < 2; which++) {
            nk_array ref;
            nk_array_alloc(&ref, 2, g[which].shape, NULL);
            memset(ref.data, 0, nk_array_size(&ref) * sizeof(double));
            int na = 0;
            for (int a1 = 0; a1 <= flip; a1++)
                for (int y1 = 0; y1 <= shift; y1++)
                    for (int z1 = 0; z1 <= shift; z1++) {
                        nk_array u = transformed(&x1, a1, y1, z1);
                        na++;
                        for (int a2 = 0; a2 <= flip; a2++)
                            for (int y2 = 0; y2 <= shift; y2++)
                                for (int z2 = 0; z2 <= shift; z2++) {
                                    /* the plain kernels layer by layer: independent of
                                     * the torus path the augmentation takes */
                                    nk_torus_enabled = 0;
                                    nk_array v = transformed(b, a2, y2, z2), k = kmat(p, &u, &v, which);
                                    nk_torus_enabled = 1;
                                    for (size_t i = 0; i < nk_array_size(&ref); i++) ref.data[i] += k.data[i];
                                    nk_array_free(&v);
                                    nk_array_free(&k);
                                }
                        nk_array_free(&u);
                    }
            for (size_t i = 0; i < nk_array_size(&ref); i++) ref.data[i] /= (double)na * na;
            double d = max_diff(&g[which], &ref) / max_abs(&ref);
            CHECK(d < 1e-13, "%s flip %d shift %d %s %s: %g from the double sum", spec, flip, shift,
                  which ? "ntk" : "nngp", gram ? "gram" : "cross", d);
            nk_array_free(&ref);
        }
        nk_array_free(&g[0]);
        nk_array_free(&g[1]);
    }
    nk_plan_free(p);
    nk_arch_free(a);
    nk_array_free(&x1);
    nk_array_free(&x2);
}

/* Tiles of 8 x 8 (a Gram: c >= i only) through a context with options o against the whole
 * matrices g[0] (nngp), g[1] (ntk): 1 if every computed entry has the same bits. */
static int tiles_match(const nk_plan *p, const nk_array *x1, const nk_array *x2, const nk_kernel_opts *o,
                       const nk_array g[2], nk_error *err)
{
    size_t n1 = x1->shape[0], n2 = x2 ? x2->shape[0] : n1;
    nk_kernel_ctx *ctx = NULL;
    nk_status st = nk_kernel_ctx_create(p, x1, x2, o, &ctx, err);
    double *K = calloc(n1 * n2, sizeof *K), *T = calloc(n1 * n2, sizeof *T);
    for (size_t r0 = 0; !st && r0 < n1; r0 += 8)
        for (size_t c0 = x2 ? 0 : r0; !st && c0 < n2; c0 += 8) {
            size_t r1 = r0 + 8 < n1 ? r0 + 8 : n1, c1 = c0 + 8 < n2 ? c0 + 8 : n2;
            st = nk_kernel_tile(ctx, r0, r1, c0, c1, K + r0 * n2 + c0, T + r0 * n2 + c0, n2, err);
        }
    int same = !st;
    for (size_t i = 0; same && i < n1; i++)
        for (size_t c = x2 ? 0 : i; c < n2; c++)
            same &= K[i * n2 + c] == g[0].data[i * n2 + c] && T[i * n2 + c] == g[1].data[i * n2 + c];
    nk_kernel_ctx_free(ctx);
    free(K);
    free(T);
    return same;
}

/* Translations per entry through the tile API (nk_kernel_opts.shift): tiles of any split give
 * the bits of the whole matrix, which is nk_kernel_matrix_augment's; plans off the torus path
 * are refused with a message naming the fix. */
static void check_shift_tiles(void)
{
    unsigned long long seed = 5;
    size_t s1[4] = {19, 6, 7, 2}, s2[4] = {13, 6, 7, 2};
    nk_array x1 = nk_test_random_array(4, s1, &seed), x2 = nk_test_random_array(4, s2, &seed);
    const char *spec = "w=1.3 b=0.1 conv(3,pad=circular) relu conv(3x5,pad=circular) erf conv(1) relu flatten dense relu dense";
    nk_arch *a;
    nk_plan *p;
    nk_kernel_opts o;
    nk_error err = {{0}};
    nk_status st = make_plan(spec, s1 + 1, &a, &p, &o, &err);
    o.nthreads = 2;
    for (int gram = 0; !st && gram < 2; gram++) {
        nk_array g[2] = {{0}};
        const nk_array *b = gram ? NULL : &x2;
        st = nk_kernel_matrix_augment(p, &x1, b, &o, 0, 2, 0, &g[0], &g[1], &err);
        CHECK(st == NK_OK, "%s: %s", spec, err.msg);
        nk_kernel_opts ot = o;
        ot.shift = 2;
        if (!st) CHECK(tiles_match(p, &x1, b, &ot, g, &err), "%s: tiles of 8 with shift 2 differ from the whole augmented matrix %s",
                       gram ? "gram" : "cross", err.msg);
        nk_array_free(&g[0]);
        nk_array_free(&g[1]);
    }
    nk_plan_free(p);
    nk_arch_free(a);
    p = NULL;
    a = NULL;
    st = nk_arch_parse("conv(3) relu flatten dense", NULL, &a, &err);
    if (!st) st = nk_plan_create(a, 3, s1 + 1, &p, &err);
    nk_kernel_opts ot = o;
    ot.shift = 1;
    nk_kernel_ctx *ctx = NULL;
    if (!st) st = nk_kernel_ctx_create(p, &x1, NULL, &ot, &ctx, &err);
    CHECK(st == NK_ERR_INPUT && strstr(err.msg, "circular") && strstr(err.msg, "nk_kernel_matrix_augment") && strstr(err.msg, "--journal"),
          "zero padding with a shift per entry refused: %d %s", st, err.msg);
    nk_kernel_ctx_free(ctx);
    nk_plan_free(p);
    nk_arch_free(a);
    nk_array_free(&x1);
    nk_array_free(&x2);
}

/* The torus path in float32 (ReLU stacks, --precision f32): within 2e-5 of float64 on the
 * Cauchy-Schwarz scale of each entry, and its tiles bit-identical to its whole matrix. */
static void check_shift_f32(void)
{
    unsigned long long seed = 11;
    size_t s1[4] = {17, 7, 6, 2};
    nk_array x1 = nk_test_random_array(4, s1, &seed);
    const char *spec = "w=1.41 b=0.1 [conv(3,pad=circular) relu]*3 conv(1) relu flatten dense relu dense";
    nk_arch *a;
    nk_plan *p;
    nk_kernel_opts o;
    nk_error err = {{0}};
    nk_status st = make_plan(spec, s1 + 1, &a, &p, &o, &err);
    nk_array g[2][2] = {{{0}}};
    for (int f32 = 0; !st && f32 < 2; f32++) {
        o.f32 = f32;
        st = nk_kernel_matrix_augment(p, &x1, NULL, &o, 0, 1, 0, &g[f32][0], &g[f32][1], &err);
        CHECK(st == NK_OK, "f32 %d: %s", f32, err.msg);
    }
    const size_t n = s1[0];
    for (int w = 0; !st && w < 2; w++) {
        double worst = 0;
        for (size_t i = 0; i < n; i++)
            for (size_t c = 0; c < n; c++) {
                double scale = sqrt(g[0][w].data[i * n + i] * g[0][w].data[c * n + c]);
                double e = fabs(g[1][w].data[i * n + c] - g[0][w].data[i * n + c]) / scale;
                if (e > worst) worst = e;
            }
        CHECK(worst < 2e-5 && worst > 0, "%s float32 vs float64: %g", w ? "ntk" : "nngp", worst);
    }
    /* tiles of 8 in float32 against the whole float32 matrix */
    nk_kernel_opts ot = o;
    ot.f32 = 1;
    ot.shift = 1;
    if (!st) CHECK(tiles_match(p, &x1, NULL, &ot, g[1], &err), "float32 tiles differ from the whole float32 matrix: %s", err.msg);
    for (int f = 0; f < 2; f++) {
        nk_array_free(&g[f][0]);
        nk_array_free(&g[f][1]);
    }
    nk_plan_free(p);
    nk_arch_free(a);
    nk_array_free(&x1);
}

/* A circular window of more taps than the torus path holds (18x18 = 324 > NK_TORUS_TAPS) takes
 * the layer-by-layer path: the same kernel as with the torus path switched off. */
static void check_many_taps(void)
{
    unsigned long long seed = 3;
    size_t s1[4] = {3, 18, 19, 1};
    nk_array x1 = nk_test_random_array(4, s1, &seed);
    nk_arch *a;
    nk_plan *p;
    nk_kernel_opts o;
    nk_error err = {{0}};
    nk_array k[2] = {{0}};
    if (!make_plan("conv(18,pad=circular) relu flatten dense", s1 + 1, &a, &p, &o, &err)) {
        for (int torus = 1; torus >= 0; torus--) {
            nk_torus_enabled = torus;
            k[torus] = kmat(p, &x1, &x1, 1);
        }
        nk_torus_enabled = 1;
        CHECK(k[0].data && k[1].data && max_diff(&k[0], &k[1]) == 0, "324 taps: %g", k[0].data && k[1].data ? max_diff(&k[0], &k[1]) : -1.0);
    }
    nk_array_free(&k[0]);
    nk_array_free(&k[1]);
    nk_plan_free(p);
    nk_arch_free(a);
    nk_array_free(&x1);
}

int main(void)
{
    check_many_taps();
    check_shift_tiles();
    check_shift_f32();
    check_shift("b=0.1 conv(3,pad=circular) relu conv(3,pad=circular) relu flatten dense", 0, 2, 0);
    check_shift("w=1.3 conv(3x5,pad=circular) erf conv(1) relu flatten dense(b=0.1) relu dense", 0, 1, 0);
    check_shift("param=standard width=8 conv(2,pad=circular) leaky_relu(0.1) flatten dense", 0, 3, 0);
    check_shift("b=0.1 fc(2)", 1, 1, 0);
    check_shift("b=0.1 fc(2)", 0, 2, 0);
    check_shift("b=0.1 conv(3,pad=circular) relu conv(3,pad=circular) relu gap dense", 0, 1, 0);
    check_shift("b=0.1 conv(3,pad=circular) relu conv(3,pad=circular) relu flatten dense", 1, 1, 0);
    check_shift("conv(3) relu gap dense", 0, 1, 1);
    check_shift("avgpool(2) fc(2)", 0, 1, 1);
    check_flat_input();
    static const flip_case cases[] = {
        {"b=0.1 conv(3) relu conv(3) relu gap dense", 6, 1},
        {"b=0.1 [conv(3) relu]*2 flatten dense", 7, 1},
        {"avgpool(2) conv(3) relu gap dense", 6, 1},           /* 6 = 3 whole windows */
        {"conv(3,pad=valid) relu conv(3,stride=2,pad=valid) relu flatten dense", 7, 1}, /* 7 -> 5 -> 2 */
        {"conv(3,pad=circular) relu gap dense", 6, 1},
        {"myrtle5", 8, 1},
        {"fc(2)", 6, 1},
        {"b=0.1 conv(2) relu gap dense", 6, 0},                /* even filter, same padding */
        {"avgpool(2) conv(3) relu gap dense", 7, 0},           /* drops the last column */
        {"conv(3,stride=2) relu conv(3) relu gap dense", 6, 0}, /* padding 1 only after */
        {"conv(2,pad=circular) relu conv(3) relu gap dense", 6, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_case(&cases[i]);

    /* data without a spatial axis: a clear error */
    nk_arch *a = NULL;
    nk_plan *p = NULL;
    nk_error err = {{0}};
    size_t d = 4, s[2] = {3, 4};
    unsigned long long seed = 9;
    nk_array x = nk_test_random_array(2, s, &seed), k = {0};
    nk_arch_parse("dense relu dense", NULL, &a, &err);
    nk_plan_create(a, 1, &d, &p, &err);
    CHECK(nk_plan_flip_invariant(p) == 0, "flat input is not mirrorable");
    nk_status st = nk_kernel_matrix_flip(p, &x, NULL, NULL, 0, &k, NULL, &err);
    CHECK(st == NK_ERR_INPUT && strstr(err.msg, "spatial"), "flat input refused: %d %s", st, err.msg);
    nk_array_free(&x);
    nk_plan_free(p);
    nk_arch_free(a);
    return nk_test_summary("test_augment");
}
