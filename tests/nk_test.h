/* nk_test.h -- a minimal test harness: CHECK counts failures, nk_test_summary prints the
 * closing line "N passed, N failed" that the runner aggregates. */
#ifndef NK_TEST_H
#define NK_TEST_H
#include <math.h>
#include <stdio.h>

static int nk_test_passed, nk_test_failed;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) nk_test_passed++;                                             \
        else {                                                                  \
            nk_test_failed++;                                                   \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

/* relative error |a-b| / max(|a|, |b|, floor) */
static inline double nk_relerr(double a, double b, double floor_)
{
    double m = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    if (m < floor_) m = floor_;
    return fabs(a - b) / m;
}

static inline int nk_test_summary(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, nk_test_passed, nk_test_failed);
    return nk_test_failed ? 1 : 0;
}
#endif
