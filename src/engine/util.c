/* util.c -- status messages, arrays and the one parallel-for of the library. */
#define _DEFAULT_SOURCE   /* madvise */
#include "nkern.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <unistd.h>
#include <sys/mman.h>

nk_status nk_fail(nk_error *err, nk_status code, const char *fmt, ...)
{
    if (err) {
        /* format into a copy first: a caller may pass err->msg itself as an argument, to wrap
         * an inner message ("outer: %s"), and vsnprintf into its own source is undefined */
        char msg[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        memcpy(err->msg, msg, sizeof msg);
    }
    return code;
}

size_t nk_array_size(const nk_array *a)
{
    size_t n = 1;
    for (int i = 0; i < a->ndim; i++) n *= a->shape[i];
    return n;
}

void nk_array_free(nk_array *a)
{
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

nk_status nk_array_alloc(nk_array *a, int ndim, const size_t *shape, nk_error *err)
{
    memset(a, 0, sizeof *a);
    if (ndim < 1 || ndim > 4) return nk_fail(err, NK_ERR_INPUT, "array: %d dimensions (use 1 to 4)", ndim);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] && n > SIZE_MAX / sizeof(double) / shape[i])
            return nk_fail(err, NK_ERR_NOMEM, "array: size overflows");
        n *= shape[i];
        a->shape[i] = shape[i];
    }
    a->ndim = ndim;
    a->data = calloc(n ? n : 1, sizeof(double));
    if (!a->data) {
        memset(a, 0, sizeof *a);
        return nk_fail(err, NK_ERR_NOMEM, "array: cannot allocate %zu doubles", n);
    }
    return NK_OK;
}

void *nk_calloc64(size_t n, size_t size)
{
    void *p = NULL;
    if (size && n > ((size_t)-1 - 63) / size) return NULL;
    size_t bytes = (n * size + 63) / 64 * 64;
#ifdef MADV_HUGEPAGE
    /* large arrays (the samples' self states: ~40 MB each for a smooth-activation CNN) in huge
     * pages where the kernel gives them: one page fault per 2 MB instead of 512 (a fault cost
     * ~7 us on the virtual machines measured: most of a tanh CNN's self pass) */
    const size_t huge = (size_t)2 << 20;
    if (bytes >= 4 * huge) {
        bytes = (bytes + huge - 1) / huge * huge;
        if (posix_memalign(&p, huge, bytes)) return NULL;
        (void)madvise(p, bytes, MADV_HUGEPAGE);   /* (a hint: without it, ordinary pages) */
        memset(p, 0, bytes);
        return p;
    }
#endif
    if (posix_memalign(&p, 64, bytes ? bytes : 64)) return NULL;
    memset(p, 0, bytes);
    return p;
}

int nk_num_threads(int requested)
{
    if (requested > 0) return requested;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
#endif
}

void nk_parallel_for(size_t n, int nthreads, nk_loop_fn fn, void *ctx)
{
    int nt = nk_num_threads(nthreads);
    if (nt > 1 && n > 1) {
#ifdef _OPENMP
        #pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
        for (size_t i = 0; i < n; i++) fn(ctx, i, omp_get_thread_num());
        return;
#endif
    }
    for (size_t i = 0; i < n; i++) fn(ctx, i, 0);
}
