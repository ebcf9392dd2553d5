/* test_arch.c -- the spec language: what parses, what is refused and where the error points,
 * shapes and covariance modes of plans, and a mutation fuzzer of the parser. */
#include "internal.h"
#include "nk_test.h"

#include <stdlib.h>
#include <string.h>

static void parses(const char *spec, int nlayers)
{
    nk_arch *a = NULL;
    nk_error err = {{0}};
    nk_status st = nk_arch_parse(spec, NULL, &a, &err);
    CHECK(st == NK_OK, "'%s' should parse: %s", spec, err.msg);
    if (st == NK_OK) CHECK(a->n == nlayers, "'%s': %d top-level layers, expected %d", spec, a->n, nlayers);
    nk_arch_free(a);
}

/* refused, with a message naming the given column and containing `word` */
static void refused(const char *spec, int column, const char *word)
{
    nk_arch *a = NULL;
    nk_error err = {{0}};
    nk_status st = nk_arch_parse(spec, NULL, &a, &err);
    CHECK(st == NK_ERR_INPUT && a == NULL, "'%s' should be refused", spec);
    char col[32];
    snprintf(col, sizeof col, "column %d:", column);
    CHECK(strstr(err.msg, col) != NULL, "'%s': message should name %s got: %s", spec, col, err.msg);
    CHECK(strstr(err.msg, word) != NULL, "'%s': message should mention '%s', got: %s", spec, word, err.msg);
    nk_arch_free(a);
}

static void plan_modes(const char *spec, int ndim, const size_t *shape, const char *modes)
{
    nk_arch *a = NULL;
    nk_plan *p = NULL;
    nk_error err = {{0}};
    CHECK(nk_arch_parse(spec, NULL, &a, &err) == NK_OK, "%s", err.msg);
    nk_status st = nk_plan_create(a, ndim, shape, &p, &err);
    CHECK(st == NK_OK, "plan '%s': %s", spec, err.msg);
    if (st == NK_OK) {
        char got[256] = "";
        strcat(got, p->in_mode == NK_MODE_FULL ? "F" : p->in_mode == NK_MODE_DIAG ? "D" : "S");
        for (int i = 0; i < p->nops && i < 200; i++)
            strcat(got, p->ops[i].out_mode == NK_MODE_FULL ? "F" : p->ops[i].out_mode == NK_MODE_DIAG ? "D" : "S");
        CHECK(!strcmp(got, modes), "'%s': modes %s, expected %s", spec, got, modes);
    }
    nk_plan_free(p);
    nk_arch_free(a);
}

static void plan_refused(const char *spec, int ndim, const size_t *shape, const char *word)
{
    nk_arch *a = NULL;
    nk_plan *p = NULL;
    nk_error err = {{0}};
    CHECK(nk_arch_parse(spec, NULL, &a, &err) == NK_OK, "%s", err.msg);
    nk_status st = nk_plan_create(a, ndim, shape, &p, &err);
    CHECK(st == NK_ERR_INPUT && !p, "plan '%s' should be refused", spec);
    CHECK(strstr(err.msg, word) != NULL, "plan '%s': message should mention '%s', got: %s", spec, word, err.msg);
    nk_plan_free(p);
    nk_arch_free(a);
}

int main(void)
{
    parses("dense relu dense", 3);
    parses("[conv(3) relu]*5 gap dense", 12);
    parses("  w=1.41 b=0.1  param=standard width=64 quad=32 [dense erf]*2 dense", 5);
    parses("conv(3x5,stride=2x1,pad=valid,w=2,b=0.5,width=8) abrelu(-0.5,1.5) leaky_relu(0.1) flatten dense(512)", 5);
    parses("res(conv(3) relu res(conv(3) relu) conv(3)) avgpool(2) avgpool(3,stride=1,pad=same) gap dense", 5);
    parses("[[dense relu]*2 res(dense tanh)]*3 dense", 16);
    parses("dense gelu dense sigmoid dense sin dense softplus dense swish dense identity dense", 13);

    refused("dense relu gapp dense", 12, "unknown layer 'gapp'");
    refused("[conv(3) relu]*5 gap dense)", 27, "unmatched ')'");
    refused("[conv(3) relu*5", 14, "unexpected '*'");
    refused("[conv(3) relu]", 15, "expected '*N'");
    refused("[conv(3) relu]*x", 16, "repeat count");
    refused("conv relu", 5, "needs a filter size");
    refused("conv(0) relu", 6, "filter size must be an integer");
    refused("conv(3,pad=weird)", 12, "pad must be same, valid or circular");
    refused("conv(3,stride=0)", 15, "stride must be an integer");
    refused("dense(w=-1)", 9, "w (weight standard deviation) must be >= 0");
    refused("dense(w=abc)", 9, "expected a number for w");
    refused("dense(q=1)", 7, "unknown option 'q'");
    refused("w=1 b=nan dense", 7, "expected a number for b");
    refused("param=ntx dense", 7, "param must be ntk or standard");
    refused("res() dense", 1, "empty body");
    refused("res(dense", 10, "missing ')'");
    refused("", 1, "no layers");
    refused("relu(2)", 1, "takes no arguments");
    refused("abrelu(1)", 1, "two slopes");
    refused("dense [dense]*100000000 dense", 15, "repeat count");
    refused("gap(3)", 1, "takes no arguments");

    size_t img[3] = {6, 6, 1}, vec[1] = {10}, seq[2] = {8, 3};
    /* covariance modes backwards from the readout: input, then after each op */
    plan_modes("[conv(3) relu]*2 flatten dense", 3, img, "DDDDDSS");
    plan_modes("[conv(3) relu]*2 gap dense", 3, img, "FFFFFSS");
    plan_modes("conv(3) relu avgpool(2) conv(3) relu flatten dense", 3, img, "FFFDDDSS");
    plan_modes("dense relu dense", 1, vec, "SSSS");
    plan_modes("conv(3) res(conv(3) relu) flatten dense", 2, seq, "DDDDDDSS");
    plan_modes("conv(3) res(avgpool(3,stride=1,pad=same)) flatten dense", 2, seq, "FFFDDSS");
    plan_refused("conv(7,pad=valid) relu flatten dense", 3, img, "larger than the input");
    plan_refused("conv(3) relu dense", 3, img, "output is spatial");
    plan_refused("conv(3) relu flatten dense", 1, vec, "needs a spatial input");
    plan_refused("flatten conv(3) dense", 3, img, "needs a spatial input");
    plan_refused("res(conv(3,stride=2)) flatten dense", 3, img, "changes the shape");
    plan_refused("conv(3x3) flatten dense", 2, seq, "2-D window on a 1-D input");

    /* fuzz: random mutations of valid specs never crash, and every refusal has a message */
    const char *seeds[] = {"[conv(3) relu]*5 gap dense", "w=1.41 b=0.1 res(conv(3x3,stride=2,pad=valid) erf) flatten dense(64)",
                           "param=standard [dense abrelu(-0.5,1.5)]*3 dense", "conv(3,pad=circular) avgpool(2,stride=1) gap dense"};
    const char alphabet[] = "[]()*=,x0123456789.- abcdefghijklmnopqrstuvwxyz\t\n\377";
    unsigned long long s = 12345;
    int iters = getenv("NK_TEST_QUICK") ? 5000 : 50000, ok = 0, bad_msg = 0;
    char buf[256];
    for (int it = 0; it < iters; it++) {
        const char *seed = seeds[it % 4];
        size_t n = strlen(seed);
        memcpy(buf, seed, n + 1);
        int muts = 1 + (int)(s % 4);
        for (int m = 0; m < muts; m++) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            size_t pos = (size_t)(s >> 8) % (n + 1);
            char c = alphabet[(s >> 32) % (sizeof alphabet - 1)];
            switch ((s >> 40) % 3) {
            case 0: if (pos < n) buf[pos] = c; break;
            case 1: if (n < sizeof buf - 2) { memmove(buf + pos + 1, buf + pos, n - pos + 1); buf[pos] = c; n++; } break;
            case 2: if (pos < n) { memmove(buf + pos, buf + pos + 1, n - pos); n--; } break;
            }
        }
        nk_arch *a = NULL;
        nk_error err = {{0}};
        nk_status st = nk_arch_parse(buf, NULL, &a, &err);
        if (st == NK_OK) {
            ok++;
            nk_plan *p = NULL;
            if (nk_plan_create(a, 3, img, &p, &err) == NK_OK) nk_plan_free(p);
            else if (!err.msg[0]) bad_msg++;
        } else if (!err.msg[0] || a) {
            bad_msg++;
        }
        nk_arch_free(a);
    }
    CHECK(bad_msg == 0, "%d fuzzed specs failed without a message", bad_msg);
    printf("fuzz: %d specs, %d parsed\n", iters, ok);
    return nk_test_summary("test_arch");
}
