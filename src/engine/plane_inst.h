/* plane_inst.h -- the plane engine for one element type, three times: AVX-512 and AVX2 (with
 * FMA) and portable C.  Included by plane.c once per precision; expects R, SFX (f64 or f32),
 * SQRT, FMAB (the FMA builtin for R), ASIN_C / ASIN_N (the arcsine polynomial), RELU_SECT2 (its
 * sectors: see relu_entry), NV (entries per step of the plain loops), VS (pd or ps), VEPI (epi64
 * or epi32), MT512 (the AVX-512 mask type), VT512 and VT256 (the vector types).  Undefines these
 * and what it defines at its end. */
#define NK_CAT4_(a, b, c, d) a##b##c##d
#define NK_CAT4(a, b, c, d) NK_CAT4_(a, b, c, d)

#if NK_X86_SIMD
#define FUSED 1
#define FMA(a, b, c) FMAB(a, b, c)
static inline __attribute__((always_inline)) R NK_CAT4(asin_g_, SFX, _, fma)(R t) { ASIN_BODY(ASIN_C, ASIN_N, FMAB) }
#define ASIN_G NK_CAT4(asin_g_, SFX, _, fma)

#define TGT __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma")))
#define FN(x) NK_CAT4(x, _, SFX, _avx512)
#define VW _mm512_
#define VT VT512
#define MT MT512
#define VLEN (64 / (int)sizeof(R))
#include "plane_simd.h"
#include "plane_body.h"

#define TGT __attribute__((target("avx2,fma")))
#define FN(x) NK_CAT4(x, _, SFX, _avx2)
#define VW _mm256_
#define VT VT256
#define VLEN (32 / (int)sizeof(R))
#include "plane_simd.h"
#include "plane_body.h"

#undef FUSED
#undef FMA
#undef ASIN_G
#endif

#define FUSED 0
#define FMA(a, b, c) ((a) * (b) + (c))
static inline R NK_CAT4(asin_g_, SFX, _, plain)(R t) { ASIN_BODY(ASIN_C, ASIN_N, FMA) }
#define ASIN_G NK_CAT4(asin_g_, SFX, _, plain)
#define TGT
#define FN(x) NK_CAT4(x, _, SFX, _portable)
#define SIMD 0
#include "plane_body.h"
#undef FUSED
#undef FMA
#undef ASIN_G
#undef R
#undef SFX
#undef SQRT
#undef FMAB
#undef ASIN_C
#undef ASIN_N
#undef RELU_SECT2
#undef NV
#undef VS
#undef VEPI
#undef MT512
#undef VT512
#undef VT256
