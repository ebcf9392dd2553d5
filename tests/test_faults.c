/* test_faults.c -- every input of issue 16 that used to give a silent NaN or Inf, in the library:
 * the call must fail with a status and a message that names what overflowed, where and for which
 * sample or pair.  The expected layer is derived independently, from the closed-form growth of
 * the self-variance (dense: q <- w^2 q + b^2, ReLU: q <- q / 2), not from the code under test. */
#include "nkern.h"
#include "nk_theory.h"
#include "nk_test.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Kernel of spec on x1 (x2 may be NULL); returns the status, the message in err. */
static nk_status run(const char *spec, const nk_array *x1, const nk_array *x2, int get, int f32, size_t first1,
                     nk_error *err)
{
    nk_arch *a = NULL;
    nk_plan *p = NULL;
    nk_array K = {0}, T = {0};
    nk_status st = nk_arch_parse(spec, NULL, &a, err);
    if (st == NK_OK) st = nk_plan_create(a, x1->ndim - 1, x1->shape + 1, &p, err);
    if (st == NK_OK) {
        nk_kernel_opts o;
        nk_kernel_opts_default(&o);
        o.nthreads = 2;
        o.get = get;
        o.f32 = f32;
        o.first1 = first1;
        st = nk_kernel_matrix(p, x1, x2, &o, &K, &T, err);
        if (st == NK_OK) {
            /* a success must be finite everywhere: nothing silent */
            int finite = 1;
            for (size_t i = 0; K.data && i < nk_array_size(&K); i++) finite &= isfinite(K.data[i]);
            for (size_t i = 0; T.data && i < nk_array_size(&T); i++) finite &= isfinite(T.data[i]);
            CHECK(finite, "%s: NK_OK with a non-finite output", spec);
        }
    }
    nk_array_free(&K);
    nk_array_free(&T);
    nk_plan_free(p);
    nk_arch_free(a);
    return st;
}

static int has(const nk_error *e, const char *s) { return strstr(e->msg, s) != NULL; }

int main(void)
{
    unsigned long long seed = 7;
    size_t vs[2] = {4, 5}, is[4] = {3, 6, 6, 2};
    nk_array x = nk_test_random_array(2, vs, &seed), img = nk_test_random_array(4, is, &seed);
    nk_error e;

    /* control: an ordinary run succeeds */
    CHECK(run("dense relu dense", &x, NULL, NK_GET_BOTH, 0, 0, &e) == NK_OK, "control: %s", e.msg);

    /* 'w=1e200 dense relu dense': w^2 overflows -> refused when the plan is made, naming the layer */
    CHECK(run("w=1e200 dense relu dense", &x, NULL, NK_GET_BOTH, 0, 0, &e) == NK_ERR_INPUT && has(&e, "column") &&
              has(&e, "overflows"), "w=1e200: %s", e.msg);
    CHECK(run("dense(b=1e160) relu dense", &x, NULL, NK_GET_BOTH, 0, 0, &e) == NK_ERR_INPUT && has(&e, "column 1"),
          "b=1e160: %s", e.msg);

    /* 'w=1.5 [dense relu]*10000 dense' --get ntk.  Closed forms for a sample with itself
     * (correlation 1, so the ReLU halves K and T): after dense layer k (op 2k - 1) the NNGP is
     * q_k = 2 q0 (w^2/2)^k and the NTK Theta_k = q_k + w^2/2 Theta_(k-1) = 2 q0 k (w^2/2)^k, so the
     * NTK overflows first, at the first dense k with log(2 q0 k) + k log(w^2/2) > log(DBL_MAX).
     * The fast path (MLP tiles) agrees with that layer-by-layer diagnosis: the network cut just
     * before the op is finite, cut after it is not (a readout dense(w=1) adds no growth). */
    {
        double q0 = 0;
        for (size_t c = 0; c < 5; c++) q0 += x.data[c] * x.data[c] / 5;
        int k = 1;
        while (log(2 * q0 * k) + k * log(1.125) <= log(DBL_MAX)) k++;
        char want[64], before[128], after[128];
        snprintf(want, sizeof want, "at op %d (dense", 2 * k - 1);
        nk_status st = run("w=1.5 [dense relu]*10000 dense", &x, NULL, NK_GET_NTK, 0, 0, &e);
        CHECK(st == NK_ERR_NONFINITE && has(&e, "ntk of pair (0, 0)") && has(&e, want) && has(&e, "inf"),
              "deep MLP (expected %s): %s", want, e.msg);
        snprintf(before, sizeof before, "w=1.5 [dense relu]*%d dense(w=1)", k - 1);
        snprintf(after, sizeof after, "w=1.5 [dense relu]*%d dense dense(w=1)", k - 1);
        CHECK(run(before, &x, NULL, NK_GET_NTK, 0, 0, &e) == NK_OK, "cut before op %d: %s", 2 * k - 1, e.msg);
        CHECK(run(after, &x, NULL, NK_GET_NTK, 0, 0, &e) == NK_ERR_NONFINITE, "cut after op %d: %s", 2 * k - 1, e.msg);
        /* the NNGP alone overflows later: at the dense layer where q_k passes DBL_MAX, or at the
         * ReLU before it if that forms the product a b of its variances */
        st = run("w=1.5 [dense relu]*10000 dense", &x, NULL, NK_GET_NNGP, 0, 0, &e);
        const char *at = strstr(e.msg, " at op ");
        int op = at ? atoi(at + 7) : 0, hi = 1;
        while (log(2 * q0) + (hi + 1) / 2 * log(1.125) <= log(DBL_MAX)) hi += 2;
        CHECK(st == NK_ERR_NONFINITE && has(&e, "self-variance of x1 sample 0") && op > 2 * k - 1 && op <= hi,
              "deep MLP NNGP (op in %d..%d): %s", 2 * k, hi, e.msg);
        /* shallow enough: finite, so no error */
        CHECK(run("w=1.5 [dense relu]*200 dense", &x, NULL, NK_GET_NTK, 0, 0, &e) == NK_OK, "200 layers: %s", e.msg);
    }

    /* the same growth in a CNN through the plane engine, float64 and float32: w^2 = 1e200, so
     * the second conv (op 3) takes K from ~1e200 to ~1e400 */
    for (int f32 = 0; f32 < 2; f32++) {
        nk_status st = run("w=1e100 conv(3) relu conv(3) relu gap dense", &img, NULL, NK_GET_BOTH, f32, 0, &e);
        CHECK(st == NK_ERR_NONFINITE && has(&e, "op 3 (conv, column 22"), "CNN %s: %s", f32 ? "f32" : "f64", e.msg);
        st = run("w=1e100 conv(3) relu conv(3) relu flatten dense", &img, &img, NK_GET_NNGP, f32, 0, &e);
        CHECK(st == NK_ERR_NONFINITE && has(&e, "op 3 (conv"), "CNN flatten %s: %s", f32 ? "f32" : "f64", e.msg);
    }

    /* a saturating activation after the overflow: erf's dual of an infinite variance tends to a
     * finite value, so only the self-variance shows it: op 2 (the second dense) */
    CHECK(run("w=1e100 dense dense erf dense", &x, NULL, NK_GET_BOTH, 0, 0, &e) == NK_ERR_NONFINITE &&
              has(&e, "op 2 (dense"), "erf after overflow: %s", e.msg);

    /* one sample of x2 large (1e150, allowed): only its self-variance overflows, at op 1; the
     * message names it; with first1 = 100, x1's samples are numbered from 100 */
    {
        size_t s2[2] = {3, 5};
        nk_array y = nk_test_random_array(2, s2, &seed);
        for (size_t c = 0; c < 5; c++) y.data[2 * 5 + c] = 1e150;
        CHECK(run("w=1e5 dense relu dense", &x, &y, NK_GET_BOTH, 0, 0, &e) == NK_ERR_NONFINITE &&
                  has(&e, "x2 sample 2") && has(&e, "op 1 (dense"), "x2 sample 2: %s", e.msg);
        CHECK(run("w=1e5 dense relu dense", &y, NULL, NK_GET_BOTH, 0, 100, &e) == NK_ERR_NONFINITE &&
                  has(&e, "x1 sample 102"), "numbered from first1: %s", e.msg);
        nk_array_free(&y);
    }

    /* inputs of 1e200, NaN, Inf: refused before any work, naming sample and element */
    {
        nk_array b = x;
        double *d = malloc(nk_array_size(&x) * sizeof *d);
        memcpy(d, x.data, nk_array_size(&x) * sizeof *d);
        b.data = d;
        d[3 * 5 + 2] = 1e200;
        CHECK(run("dense relu dense", &b, NULL, NK_GET_BOTH, 0, 0, &e) == NK_ERR_INPUT && has(&e, "sample 3, element 2") &&
                  has(&e, "1e+200"), "1e200 input: %s", e.msg);
        d[3 * 5 + 2] = NAN;
        CHECK(run("dense relu dense", &b, NULL, NK_GET_BOTH, 0, 0, &e) == NK_ERR_INPUT && has(&e, "NaN"), "NaN input: %s", e.msg);
        d[3 * 5 + 2] = -INFINITY;
        CHECK(run("dense relu dense", &b, NULL, NK_GET_BOTH, 0, 0, &e) == NK_ERR_INPUT && has(&e, "infinite"),
              "Inf input: %s", e.msg);
        free(d);
    }

    /* 'w=1e30 dense relu dense' --f32: the kernel (~1e60) is finite in float64, its float32 file is
     * refused before it exists */
    {
        nk_arch *a = NULL;
        nk_plan *p = NULL;
        nk_array K = {0};
        nk_kernel_opts o;
        nk_kernel_opts_default(&o);
        o.get = NK_GET_NNGP;
        char dir[] = "/tmp/nk_test_faults.XXXXXX", path[64];
        CHECK(mkdtemp(dir) != NULL, "mkdtemp");
        snprintf(path, sizeof path, "%s/k.npy", dir);
        nk_status st = nk_arch_parse("w=1e30 dense relu dense", NULL, &a, &e);
        if (!st) st = nk_plan_create(a, 1, x.shape + 1, &p, &e);
        if (!st) st = nk_kernel_matrix(p, &x, NULL, &o, &K, NULL, &e);
        CHECK(st == NK_OK && K.data[0] > 1e50, "w=1e30 in float64: %s", e.msg);
        CHECK(nk_npy_write(path, &K, 1, &e) == NK_ERR_NONFINITE && has(&e, "float32") && access(path, F_OK) != 0,
              "float32 file: %s", e.msg);
        CHECK(nk_npy_write_file(path, &K, 1, &e) == NK_ERR_NONFINITE && access(path, F_OK) != 0, "float32 file: %s", e.msg);
        CHECK(nk_npy_write(path, &K, 0, &e) == NK_OK && access(path, F_OK) == 0, "float64 file: %s", e.msg);
        /* no temporary left beside it */
        char tmp[96];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
        CHECK(access(tmp, F_OK) != 0, "temporary left");
        unlink(path);
        rmdir(dir);
        nk_array_free(&K);
        nk_plan_free(p);
        nk_arch_free(a);
    }

    /* an overflowed kernel handed to the eigensolver: named, not "dsyevd info -5" */
    {
        double m[9] = {1, 0, 0, 0, INFINITY, 0, 0, 0, 1}, ev[3];
        CHECK(nk_sym_eig(m, 3, 0, ev, &e) == NK_ERR_NONFINITE && has(&e, "entry (1, 1)") && !has(&e, "info"),
              "eig of Inf: %s", e.msg);
    }

    /* nk_fail formatting its own message into itself (a wrapped inner error) */
    {
        nk_fail(&e, NK_ERR_INPUT, "inner: %s", "what (fix)");
        nk_fail(&e, NK_ERR_INPUT, "outer: %s", e.msg);
        CHECK(!strcmp(e.msg, "outer: inner: what (fix)"), "self-wrap: '%s'", e.msg);
    }

    nk_array_free(&x);
    nk_array_free(&img);
    return nk_test_summary("test_faults");
}
