/* plane_body.h -- the plane engine's hot code for one element type and one instruction set;
 * included by plane.c once per combination (see there for the method).  Expects:
 *   R            element type (double or float)
 *   FN(x)        name mangling for this instantiation (undefined at the end, with the vector
 *                layer of plane_simd.h and TGT: the per-precision ones stay)
 *   TGT          target attribute of this instantiation (empty for the portable one)
 *   FMA(a, b, c) a * b + c, fused (one rounding) where the target has FMA, else two roundings
 *   FUSED        1 if FMA is fused
 *   SQRT(x)      square root in R
 *   ASIN_G(t)    asin(sqrt t) / sqrt t for t in [0, 1/2], in R */

/* ReLU at one entry, from c = K[p, p'] and the variances a, b of the two positions (with
 * ra = 1/sqrt a, rb = 1/sqrt b):
 *   K' = (sqrt(ab - c^2) + (pi - theta) c) / 2pi,   T' = T (pi - theta) / 2pi,
 * with cos theta = c ra rb and sin theta = sqrt(ab - c^2) ra rb: one square root, no division,
 * and no product with sqrt(ab) (sqrt(ab) sin theta = sqrt(ab - c^2), sqrt(ab) cos theta = c).
 * theta comes from one arcsine x p(x^2) of a polynomial p (ASIN_G), on sectors of the half
 * circle.  Float64 (RELU_SECT2 0): sectors of pi/4 and |x| <= sin(pi/8), degree 9: x is the
 * cosine (theta near pi/2), the sine (theta near 0 or pi) or sin(theta' - pi/4) =
 * (sin - |cos|)/sqrt 2 in between (theta' = theta or pi - theta).  Float32 (RELU_SECT2 1): two
 * sectors and |x| <= sin(pi/4), degree 6: x is the cosine where |c| <= sqrt(ab - c^2), else the
 * sine, which saves the middle sector's nine operations for three more FMAs (3.5% of a float32
 * pair, measured).  Every sector's pi - theta is then one FMA after the polynomial:
 * pi - theta = base + sx p, with
 *   cosine sector:  sx = cs,    base = pi/2;
 *   sine sector:    sx = -+sn,  base = pi or 0       (cs > 0 or cs < 0);
 *   middle sector:  sx = -+x,   base = 3pi/4 or pi/4,
 * so pi - theta keeps its relative accuracy as the correlation approaches -1.  With FMA, ab - c^2
 * is formed here with the exact rounding error of c^2 (the AVX-512 vectors instead round ab
 * toward zero: relu_d): it is exactly 0 for a sample paired with itself, and keeps its relative
 * accuracy as the correlation approaches 1 to within the roundings c, a and b carry.  cs and sn may
 * exceed 1 by rounding; the sectors take that without a clamp.  A zero variance has ra = 0:
 * then cs = sn = 0, the cosine sector gives pi - theta = pi/2 (independent units, as the
 * reference) and sqrt(ab - c^2) = 0.
 * f multiplies both outputs: 1/2pi for the true values; the plane engine passes 1 and leaves
 * the 1/2pi to the next affine map. */
static inline __attribute__((always_inline)) void FN(relu_entry)(R *k, R *t, R a, R ra, R b, R rb, R f)
{
    const R c = *k, rab = ra * rb;
#if FUSED
    const R cc = c * c;
    R d = FMA(a, b, -cc) - FMA(c, c, -cc);
#else
    R d = a * b - c * c;
#endif
    d = d > 0 ? d : 0;
#if RELU_SECT2
    const R rd = SQRT(d), sg = c >= 0 ? 1 : -1;
    const int far_c = __builtin_fabs(c) > rd;   /* the sine sector */
    const R base = far_c ? FMA(sg, (R)NK_PI_2, (R)NK_PI_2) : (R)NK_PI_2;
    const R sx = (far_c ? -sg * rd : c) * rab;
#else
    const R cs = c * rab, rd = SQRT(d), sn = rd * rab, acs = __builtin_fabs(cs);
    const int near_c = acs <= (R)0.38268343236508978, near_s = sn <= (R)0.38268343236508978;
    const R sg = cs >= 0 ? 1 : -1;
    const R xm = (sn - acs) * (R)0.70710678118654752;
    const R b0 = near_c ? 0 : near_s ? (R)NK_PI_2 : (R)(NK_PI / 4);
    const R base = FMA(sg, b0, (R)NK_PI_2);
    const R sx = near_c ? cs : -sg * (near_s ? sn : xm);
#endif
    const R pmt = FMA(sx, ASIN_G(sx * sx), base);   /* pi - theta */
    *k = f * FMA(pmt, c, rd);
    *t = *t * f * pmt;
}

#if SIMD
/* The same ReLU on one vector of VLEN entries, written with the instruction set's intrinsics
 * (the selects must stay selects: a compiler left to itself evaluates the polynomial once per
 * branch), in three stages, so that a loop can run them on three different vectors at once
 * (conv3_chain): ab - c^2 (relu_d); the square root and the sector (relu_sect); the polynomial
 * (relu_pmt).  The scalar relu_entry above is its reference. */
typedef struct {
    VT c, rd, sx, base;   /* c, sqrt(ab - c^2), the polynomial's argument and pi - theta - sx p */
} FN(relu_mid);

/* ab - c^2, clamped at 0.  With AVX-512, ab is rounded toward zero (embedded rounding, no cost)
 * and c^2 taken from it in one FMA: ab - c^2 is then never above its exact value, so it is
 * exactly 0 (clamped) where c^2 = ab, as for a sample paired with itself, and off by at most one
 * ulp of ab elsewhere, below what the roundings of c, a and b already carry (one ulp of c is two
 * of c^2).  Elsewhere the exact rounding error of c^2 is added back instead (two operations
 * more: 5% of a float64 pair with AVX-512, measured). */
static inline TGT __attribute__((always_inline)) VT FN(relu_d)(VT c, VT va, VT vb)
{
#ifdef VMUL_RZ
    return VMAX(VFNMA(c, c, VMUL_RZ(va, vb)), VSET1(0));
#else
    const VT cc = VMUL(c, c);
    return VMAX(VSUB(VFMS(va, vb, cc), VFMS(c, c, cc)), VSET1(0));
#endif
}

static inline TGT __attribute__((always_inline)) FN(relu_mid) FN(relu_sect)(VT c, VT d, VT rab)
{
    FN(relu_mid) m;
    m.c = c;
    m.rd = VSQRT(d);
#if RELU_SECT2
    /* the sine sector where |c| > sqrt(ab - c^2): sx = -+rd rab, base = pi/2 +- pi/2; else
     * sx = c rab, base = pi/2 */
    const MT far = VCMPGT(VABS(c), m.rd);
    m.sx = VMUL(VMFLIPNN_S(far, m.rd, c), rab);
    m.base = VMSUB(VSET1((R)NK_PI_2), far, VSET1((R)NK_PI_2), VFLIPNN(VSET1((R)NK_PI_2), c));
#else
    const VT s8 = VSET1((R)0.38268343236508978);
    const VT cs = VMUL(c, rab), acs = VABS(cs);
    const MT far_c = VCMPGT(acs, s8);                  /* not the cosine sector */
    const VT sn = VMUL(m.rd, rab);
    const MT near_s = VCMPLE(sn, s8);
    const VT xm = VMUL(VSUB(sn, acs), VSET1((R)0.70710678118654752));
    /* outside the cosine sector: sx = -+(sn or xm), base = pi/2 +- (pi/2 or pi/4) */
    const VT y = VBLEND(near_s, sn, xm), b1 = VBLEND(near_s, VSET1((R)NK_PI_2), VSET1((R)(NK_PI / 4)));
    m.sx = VMFLIPNN_S(far_c, y, cs);
    m.base = VMSUB(VSET1((R)NK_PI_2), far_c, VSET1((R)NK_PI_2), VFLIPNN(b1, cs));
#endif
    return m;
}

/* pi - theta: the polynomial by Horner's rule, as relu_entry (the software-pipelined loop
 * is bound by the number of operations, not by this chain: Estrin's scheme, two multiplies
 * more, measured 3% slower there) */
static inline TGT __attribute__((always_inline)) VT FN(relu_pmt)(const FN(relu_mid) *m)
{
    const VT sx = m->sx, x2 = VMUL(sx, sx);
    VT p = VSET1(ASIN_C[0]);
    for (int i = 1; i < ASIN_N; i++) p = VFMA(p, x2, VSET1(ASIN_C[i]));
    return VFMA(sx, p, m->base);
}

/* The ReLU with its true outputs (MLP tiles and diagonal states) */
static inline TGT __attribute__((always_inline)) void FN(relu_vv)(VT *k, VT *t, VT va, VT vra, VT vb, VT vrb)
{
    const FN(relu_mid) m = FN(relu_sect)(*k, FN(relu_d)(*k, va, vb), VMUL(vra, vrb));
    const VT pmt = FN(relu_pmt)(&m), f = VSET1((R)(1.0 / (2 * NK_PI)));
    *k = VMUL(VFMA(pmt, m.c, m.rd), f);
    *t = VMUL(VMUL(*t, f), pmt);
}

/* The plane engine's form: no 1/2pi */
static inline TGT __attribute__((always_inline)) void FN(relu_out)(const FN(relu_mid) *m, VT pmt, VT t, VT *ko, VT *to)
{
    *ko = VFMA(pmt, m->c, m->rd);
    *to = VMUL(t, pmt);
}

/* The engine's ReLU with its self states: variances at A and B, 1/sqrt at +P */
static inline TGT __attribute__((always_inline)) void FN(relu_vec)(VT *k, VT *t, const R *A, const R *B, int P)
{
    const FN(relu_mid) m = FN(relu_sect)(*k, FN(relu_d)(*k, VLOADU(A), VLOADU(B)), VMUL(VLOADU(A + P), VLOADU(B + P)));
    FN(relu_out)(&m, FN(relu_pmt)(&m), *t, k, t);
}

/* The software pipeline of the engine's fused loops (conv3_chain, affine_act): each step runs
 * stage A (window sums, affine map, ab - c^2; the caller's STAGE_A(j) sets ak, ad, at) on
 * vector j + 2, stage B (square root, sector) on j + 1 and stage C (polynomial, output) on j.
 * One vector's work is a chain of ~100 cycles; written one vector per step, the out-of-order
 * window (~64 floating-point operations, measured here) cannot reach the next vector's independent
 * work, and each step took about half again the time of its instructions (measured: 51 cycles
 * per float64 vector unpipelined, ~41 pipelined).  Expects ak, ad, at, bm, bt, A, B, P, ko, to
 * in scope; n a multiple of VLEN. */
#define SP3_STAGE_B(jj)                                                                              \
    do {                                                                                             \
        bm = FN(relu_sect)(ak, ad, VMUL(VLOADU(A + P + (jj)), VLOADU(B + P + (jj))));                \
        bt = at;                                                                                     \
    } while (0)
#define SP3_STAGE_C(mm, tt, jj)                                                                      \
    do {                                                                                             \
        VT k_, t_;                                                                                   \
        FN(relu_out)(&(mm), FN(relu_pmt)(&(mm)), tt, &k_, &t_);                                      \
        VSTOREU(ko + (jj), k_);                                                                      \
        VSTOREU(to + (jj), t_);                                                                      \
    } while (0)
#define SP3_RUN(STAGE_A, n) SP3_RUN3(STAGE_A, SP3_STAGE_B, SP3_STAGE_C, n)
/* the pipeline's fill (stage A on the first two vectors, B on the first), its steady steps from
 * vector j on while vector j + 2 is in range, and its drain from j (stages B, C on the last
 * ones); conv3_chain runs these with its own layer-to-layer overlap between them */
#define SP3_FILL(STAGE_A, STAGE_B, n)                                                                \
    do {                                                                                             \
        STAGE_A(0);                                                                                  \
        STAGE_B(0);                                                                                  \
        if ((n) > VLEN) STAGE_A(VLEN);                                                               \
    } while (0)
#define SP3_STEP(STAGE_A, STAGE_B, STAGE_C, j)                                                       \
    do {                                                                                             \
        const FN(relu_mid) cm_ = bm;                                                                 \
        const VT ct_ = bt;                                                                           \
        STAGE_B((j) + VLEN);                                                                         \
        STAGE_A((j) + 2 * VLEN);                                                                     \
        STAGE_C(cm_, ct_, (j));                                                                      \
    } while (0)
#define SP3_STEADY(STAGE_A, STAGE_B, STAGE_C, j, n)                                                  \
    for (; (j) + 2 * VLEN < (n); (j) += VLEN) SP3_STEP(STAGE_A, STAGE_B, STAGE_C, j);
#define SP3_DRAIN(STAGE_B, STAGE_C, j, n)                                                            \
    do {                                                                                             \
        STAGE_C(bm, bt, (j));                                                                        \
        if ((j) + VLEN < (n)) {                                                                      \
            STAGE_B((j) + VLEN);                                                                     \
            STAGE_C(bm, bt, (j) + VLEN);                                                             \
        }                                                                                            \
    } while (0)
#define SP3_RUN3(STAGE_A, STAGE_B, STAGE_C, n)                                                       \
    do {                                                                                             \
        SP3_FILL(STAGE_A, STAGE_B, n);                                                               \
        int j_ = 0;                                                                                  \
        SP3_STEADY(STAGE_A, STAGE_B, STAGE_C, j_, n)                                                 \
        SP3_DRAIN(STAGE_B, STAGE_C, j_, n);                                                          \
    } while (0)
#endif

/* Activations without a vectorized form: the library's dual, entry by entry, in double. */
static void FN(generic_row)(const nk_act *act, int quad, R *k, R *t, int n, const R *A, const R *B)
{
    for (int j = 0; j < n; j++) {
        double kk = k[j], tt = t[j];
        nk_act_entry(act, quad, &kk, &tt, A[j], B[j]);
        k[j] = (R)kk;
        t[j] = (R)tt;
    }
}

/* GELU, phi(x) = x Phi(x), on n entries in place (n a multiple of NV), from its closed form
 * (act.c): with S^2 = (1 + a)(1 + b), D = S^2 - c^2 = 1 + a + b + (ab - c^2) and
 * pi - theta = pi/2 + asin(c/S) (theta the angle of cos theta = c/S, sin theta = sqrt(D)/S),
 *   E[phi phi]   = [c (pi - theta) + (ab D + c^2) / (S^2 sqrt D)] / 2pi,
 *   E[phi' phi'] = [(pi - theta) + c (3 + a + b + c^2/D) / (S^2 sqrt D)] / 2pi.
 * pi - theta is the ReLU's (relu_sect, relu_pmt) on the shifted variances 1 + a, 1 + b, whose
 * inverse roots the self state holds at +P for a GELU layer (plane: the self pass).  D >= 1 +
 * a + b is never small, so rho -> +-1 needs no care.  The portable form takes asin from libm. */
static inline TGT __attribute__((always_inline)) void FN(gelu_row)(R *restrict k, R *restrict t, int n,
                                                                   const R *restrict A, const R *restrict B, int P)
{
    const R f = (R)(1 / (2 * NK_PI));
#if SIMD
    const VT one = VSET1(1), three = VSET1(3), vf = VSET1(f);
    for (int j = 0; j < n; j += VLEN) {
        const VT c = VLOADU(k + j), va = VLOADU(A + j), vb = VLOADU(B + j);
        const VT rab = VMUL(VLOADU(A + P + j), VLOADU(B + P + j));
        const VT apb = VADD(va, vb);
        const VT d = VADD(VADD(one, apb), FN(relu_d)(c, va, vb));
        const FN(relu_mid) m = FN(relu_sect)(c, d, rab);
        const VT pmt = FN(relu_pmt)(&m);
        const VT ir = VI(div_)(one, m.rd), q = VMUL(VMUL(rab, rab), ir), cc = VMUL(c, c);
        const VT kk = VFMA(VFMA(VMUL(va, vb), d, cc), q, VMUL(c, pmt));
        const VT kd = VFMA(VMUL(c, VFMA(VMUL(cc, ir), ir, VADD(three, apb))), q, pmt);
        VSTOREU(k + j, VMUL(kk, vf));
        VSTOREU(t + j, VMUL(VMUL(VLOADU(t + j), kd), vf));
    }
#else
    for (int j = 0; j < n; j++) {
        const R c = k[j], a = A[j], b = B[j], rab = A[P + j] * B[P + j];
        R e = a * b - c * c;
        const R d = 1 + a + b + (e > 0 ? e : 0), rd = SQRT(d);
        R x = c * rab;
        x = x > 1 ? 1 : x < -1 ? -1 : x;
        const R pmt = (R)NK_PI_2 + (sizeof(R) == sizeof(float) ? asinf((float)x) : (R)asin(x));
        const R q = rab * rab / rd;
        k[j] = (c * pmt + (a * b * d + c * c) * q) * f;
        t[j] = t[j] * (pmt + c * (3 + a + b + c * c / d) * q) * f;
    }
#endif
}

/* erf on n entries in place (n a multiple of NV), from its closed form: with
 * S^2 = (1 + 2a)(1 + 2b) and D = S^2 - 4c^2 = 1 + 2a + 2b + 4(ab - c^2),
 *   E[phi phi] = (2/pi) asin(2c/S),   E[phi' phi'] = (4/pi) / sqrt D,
 * the arcsine as the ReLU's pi - theta less pi/2 (relu_sect, relu_pmt) on the angle of
 * cos theta = 2c/S, sin theta = sqrt(D)/S; the self state holds 1/sqrt(1 + 2a) at +P for an
 * erf layer.  D >= 1 + 2a + 2b: rho -> +-1 needs no care. */
static inline TGT __attribute__((always_inline)) void FN(erf_row)(R *restrict k, R *restrict t, int n,
                                                                  const R *restrict A, const R *restrict B, int P)
{
    const R f = (R)(2 / NK_PI);
#if SIMD
    const VT one = VSET1(1), two = VSET1(2), four = VSET1(4), vf = VSET1(f), h = VSET1((R)NK_PI_2);
    for (int j = 0; j < n; j += VLEN) {
        const VT c = VLOADU(k + j), va = VLOADU(A + j), vb = VLOADU(B + j);
        const VT rab = VMUL(VLOADU(A + P + j), VLOADU(B + P + j));
        const VT d = VFMA(four, FN(relu_d)(c, va, vb), VFMA(two, VADD(va, vb), one));
        FN(relu_mid) m = FN(relu_sect)(VMUL(two, c), d, rab);
        /* asin = pi - theta - pi/2: the sector's base less pi/2 (exactly 0 in the cosine sector,
         * so a small arcsine keeps its relative accuracy), then the polynomial */
        m.base = VSUB(m.base, h);
        VSTOREU(k + j, VMUL(FN(relu_pmt)(&m), vf));
        VSTOREU(t + j, VMUL(VLOADU(t + j), VI(div_)(VMUL(two, vf), m.rd)));
    }
#else
    for (int j = 0; j < n; j++) {
        const R c = k[j], a = A[j], b = B[j], rab = A[P + j] * B[P + j];
        R e = a * b - c * c;
        const R d = 1 + 2 * (a + b) + 4 * (e > 0 ? e : 0);
        R x = 2 * c * rab;
        x = x > 1 ? 1 : x < -1 ? -1 : x;
        k[j] = f * (sizeof(R) == sizeof(float) ? asinf((float)x) : (R)asin(x));
        t[j] = t[j] * 2 * f / SQRT(d);
    }
#endif
}

/* sign on n entries in place (n a multiple of NV): E[phi phi] = (2/pi) asin(c / sqrt(ab)), the
 * arcsine as erf's (the ReLU's pi - theta less pi/2, on cos theta = c ra rb, sin theta =
 * sqrt(ab - c^2) ra rb, with the self state's 1/sqrt a at +P; a zero variance has ra = 0 and
 * gives 0, as sign 0 = 0); E[phi' phi'] = 0 (sign' = 0 almost everywhere: act.c). */
static inline TGT __attribute__((always_inline)) void FN(sign_row)(R *restrict k, R *restrict t, int n,
                                                                   const R *restrict A, const R *restrict B, int P)
{
    const R f = (R)(2 / NK_PI);
#if SIMD
    const VT vf = VSET1(f), h = VSET1((R)NK_PI_2), zero = VSET1(0);
    for (int j = 0; j < n; j += VLEN) {
        const VT c = VLOADU(k + j);
        const VT rab = VMUL(VLOADU(A + P + j), VLOADU(B + P + j));
        FN(relu_mid) m = FN(relu_sect)(c, FN(relu_d)(c, VLOADU(A + j), VLOADU(B + j)), rab);
        m.base = VSUB(m.base, h);
        VSTOREU(k + j, VMUL(FN(relu_pmt)(&m), vf));
        VSTOREU(t + j, zero);
    }
#else
    (void)P;
    for (int j = 0; j < n; j++) {
        /* asin rho = atan2(c, sqrt(ab - c^2)): exact at rho = 1 (c = a = b gives atan2(c, 0)),
         * where asin(c ra rb) would turn a rounding of rho into sqrt of it; 0 when a variance
         * is 0 (then c = 0) */
        const R c = k[j], e = A[j] * B[j] - c * c, d = SQRT(e > 0 ? e : 0);
        k[j] = f * (sizeof(R) == sizeof(float) ? atan2f((float)c, (float)d) : (R)atan2(c, d));
        t[j] = 0;
    }
#endif
}

/* e^x in R, vectorized: x = k ln2 + r (k = round(x / ln2), r = x - k ln2_hi - k ln2_lo, |r| <=
 * ln2/2), e^r from its Taylor polynomial (exp_taylor: float64 degree 13, float32 degree 7) and
 * 2^k as 2^k1 2^k2 with k1 = round(k/2), k2 = k - k1, each built in the exponent bits from the
 * magic-number rounding, so that both are normal over the whole range: results below the normal
 * range come out subnormal (one extra rounding: within an ulp of the subnormal), x past the
 * overflow threshold gives +inf from the last product (as libm does), x below the underflow
 * threshold 0.  x is clamped first to [-746, 710] (float32 [-104, 89]), past both thresholds;
 * the order of the clamps keeps a NaN.  Measured against libm over the whole range: tests/
 * test_expvec.c. */
#define EXP_N (sizeof(R) == sizeof(float) ? 8 : 14)
#define SINHC_N (sizeof(R) == sizeof(float) ? 6 : 10)
#define COSH_N (sizeof(R) == sizeof(float) ? 6 : 10)
#if SIMD
static inline TGT __attribute__((always_inline)) VT FN(vexp)(VT x)
{
    const int f32 = sizeof(R) == sizeof(float);
    const VT magic = VSET1(f32 ? (R)12582912.0f : (R)6755399441055744.0);   /* 1.5 2^(mantissa bits) */
    const VT bias = VSET1(f32 ? 127 : 1023);
    x = VMAX(VSET1(f32 ? -104 : -746), VI(min_)(VSET1(f32 ? 89 : 710), x));
    const VT tk = VFMA(x, VSET1((R)1.4426950408889634), magic), kf = VSUB(tk, magic);
    VT r = VFNMA(kf, VSET1(f32 ? (R)0.6931471824645996 : (R)0.6931471805599453), x);
    r = VFNMA(kf, VSET1(f32 ? (R)-1.9046542121259336e-09 : (R)2.3190468138462996e-17), r);
    const double *c = exp_taylor + 14 - EXP_N;
    VT p = VSET1((R)c[0]);
    for (int i = 1; i < (int)EXP_N; i++) p = VFMA(p, r, VSET1((R)c[i]));
    const VT t1 = VFMA(kf, VSET1(0.5), magic), k2 = VSUB(kf, VSUB(t1, magic));
    const int sh = f32 ? 23 : 52;
    const VT s1 = VCAST_R(VI__(VW, slli_, VEPI)(VCAST_I(VADD(t1, bias)), sh));
    const VT s2 = VCAST_R(VI__(VW, slli_, VEPI)(VCAST_I(VADD(k2, VADD(magic, bias))), sh));
    return VMUL(VMUL(p, s1), s2);
}
#endif

/* e^x on n entries (tests: the vectorized exp against libm; the portable build uses libm) */
static TGT __attribute__((unused)) void FN(exp_points)(R *y, const R *x, size_t n)
{
    size_t j = 0;
#if SIMD
    for (; j + VLEN <= n; j += VLEN) VSTOREU(y + j, FN(vexp)(VLOADU(x + j)));
#endif
    for (; j < n; j++) y[j] = sizeof(R) == sizeof(float) ? expf((float)x[j]) : (R)exp(x[j]);
}

/* sin, cos, exp, rbf(gamma) on n entries in place (n a multiple of NV), from their closed forms
 * (act.c), m = (a + b)/2:
 *   sin: E[phi phi] = e^-m sinh c, E[phi' phi'] = e^-m cosh c;  cos: the two the other way round;
 *   exp: both e^(m + c);  rbf: e^(-gamma d) and 2 gamma e^(-gamma d), d = max(a + b - 2c, 0).
 * e^-m cosh c and e^-m sinh c are (e^(|c|-m) +- e^(-|c|-m))/2 (arguments <= 0 for |c| <= m: no
 * overflow at any variance), as act.c forms them, except for |c| < 1, where the difference would
 * cancel: there e^-m times the Taylor polynomials of cosh c and sinh c (relative error within a
 * few ulps for every c).  The exponentials are the vectorized vexp (two per entry for sin and
 * cos, one for exp and rbf); the portable form takes them from libm. */
static inline TGT __attribute__((always_inline)) R FN(exp_r)(R x)
{
    return sizeof(R) == sizeof(float) ? expf((float)x) : (R)exp(x);
}

static inline TGT __attribute__((always_inline)) void FN(exp_row)(nk_act_kind kind, R gamma, R *restrict k,
                                                                  R *restrict t, int n, const R *restrict A,
                                                                  const R *restrict B)
{
    const double *sc = sinhc_taylor + 10 - SINHC_N, *cc = cosh_taylor + 10 - COSH_N;
#if SIMD
    const VT half = VSET1((R)0.5), zero = VSET1(0), one = VSET1(1), sgn = VSET1((R)-0.0);
    for (int j = 0; j < n; j += VLEN) {
        const VT c = VLOADU(k + j), m = VMUL(half, VADD(VLOADU(A + j), VLOADU(B + j)));
        VT kv, tv;
        if (kind == NK_ACT_EXP) {
            kv = tv = FN(vexp)(VADD(m, c));
        } else if (kind == NK_ACT_RBF) {
            const VT d = VMAX(VSUB(VADD(VLOADU(A + j), VLOADU(B + j)), VMUL(VSET1(2), c)), zero);
            kv = FN(vexp)(VMUL(VSET1(-gamma), d));
            tv = VMUL(VSET1(2 * gamma), kv);
        } else {
            const VT ac = VABS(c), c2 = VMUL(c, c);
            const MT big = VCMPLE(one, ac);
            const VT x1 = FN(vexp)(VBLEND(big, VSUB(ac, m), VSUB(zero, m)));   /* e^(|c|-m), e^-m */
            const VT x2 = FN(vexp)(VSUB(VSUB(zero, ac), m));                    /* e^(-|c|-m) */
            VT ps = VSET1((R)sc[0]), pc = VSET1((R)cc[0]);
            for (int i = 1; i < (int)SINHC_N; i++) ps = VFMA(ps, c2, VSET1((R)sc[i]));
            for (int i = 1; i < (int)COSH_N; i++) pc = VFMA(pc, c2, VSET1((R)cc[i]));
            const VT sh = VBLEND(big, VI(xor_)(VMUL(half, VSUB(x1, x2)), VI(and_)(c, sgn)), VMUL(x1, VMUL(c, ps)));
            const VT ch = VBLEND(big, VMUL(half, VADD(x1, x2)), VMUL(x1, pc));
            kv = kind == NK_ACT_SIN ? sh : ch;
            tv = kind == NK_ACT_SIN ? ch : sh;
        }
        VSTOREU(k + j, kv);
        VSTOREU(t + j, VMUL(VLOADU(t + j), tv));
    }
#else
    for (int j = 0; j < n; j++) {
        const R c = k[j], a = A[j], b = B[j], m = (R)0.5 * (a + b);
        R kv, tv;
        if (kind == NK_ACT_EXP) {
            kv = tv = FN(exp_r)(m + c);
        } else if (kind == NK_ACT_RBF) {
            const R d = a + b - 2 * c;
            kv = FN(exp_r)(-gamma * (d > 0 ? d : 0));
            tv = 2 * gamma * kv;
        } else {
            const R ac = __builtin_fabs(c), c2 = c * c;
            R sh, ch;
            if (ac >= 1) {
                const R x1 = FN(exp_r)(ac - m), x2 = FN(exp_r)(-ac - m);
                sh = (R)0.5 * (x1 - x2);
                sh = c < 0 ? -sh : sh;
                ch = (R)0.5 * (x1 + x2);
            } else {
                R ps = (R)sc[0], pc = (R)cc[0];
                for (int i = 1; i < (int)SINHC_N; i++) ps = FMA(ps, c2, (R)sc[i]);
                for (int i = 1; i < (int)COSH_N; i++) pc = FMA(pc, c2, (R)cc[i]);
                const R g = FN(exp_r)(-m);
                sh = g * (c * ps);
                ch = g * pc;
            }
            kv = kind == NK_ACT_SIN ? sh : ch;
            tv = kind == NK_ACT_SIN ? ch : sh;
        }
        k[j] = kv;
        t[j] *= tv;
    }
#endif
}

/* The Mehler form of tanh, sigmoid, softplus, swish (gauss.c: nk_mehler_coeffs) on the n
 * entries of a plane (rows of W), in place.  The self state of such a layer holds, per position,
 * planes of P:
 * [a | 1/sqrt a | need phi per level of |rho| (NK_MEHLER_LEVELS) | need phi' (the same) |
 * tau phi | tau phi' | g phi (1 + NK_MEHLER_TERMS)], written by the self pass (MEHLER_NEED,
 * MEHLER_TAU, MEHLER_G: the first plane of each), which sets every position's need to the
 * largest of its image row.  With Q_j = g_{1+j}(a) g_{1+j}(b) and p(x) = sum_{j < m} Q_j x^j,
 * x = rho^2, each entry is
 *   odd phi:  E phi phi = Q_l + rho p(x),   E phi' phi' = (p(x) + 2 x p'(x)) / sqrt(a b)
 *   even phi: E phi phi = Q_l rho + p(x),   E phi' phi' = (Q_l + 2 rho p'(x)) / sqrt(a b)
 * (Q_l the lone degree's product; E phi' phi' = d E phi phi / dc), p and p' by Horner's rule,
 * block by block of MEHLER_NB entries (mehler_block), with m = nk_mehler_span of the largest
 * needs of the block's rows at the first level above the block's largest |rho|: each entry
 * then leaves out at most MEHLER_TOL sqrt(E g(u)^2 E g(v)^2) of each series.  (Both series
 * from phi's terms: half the coefficient lines of a separate series for phi', one pass, and a
 * self state of 119 planes per layer instead of 216.)  (A plane row pairs one image row of
 * each sample, the first sample's rotated by da: the row's largest need is the same.)  Where a position needs more terms than are stored (large variances:
 * tanh(sqrt(a) z) tends to sign(z), whose coefficients decay like k^(-3/4)), each entry is
 * checked against tau_a tau_b |rho|^(first degree left out) and, where that is above the
 * tolerance, computed by nested adaptive integration (nk_dual_nested, in double; NaN if even
 * that misses it: never a value outside the tolerance unflagged).
 * Why blocks: the coefficients are read from the self states (two samples x ~10 rows of the
 * plane per layer: from L2 for the planes of a group after the first, plane.c: plane_pairs),
 * and a block's sums stay in registers through all its terms: per term and vector, two loads,
 * three multiplies and two adds, and a block at small |rho| sums only the terms it needs. */
#define MEHLER_TOL (sizeof(R) == sizeof(float) ? 2e-7 : NK_MEHLER_TOL64)
#define MEHLER_NEED(d) (2 + NK_MEHLER_NEED(d))
#define MEHLER_TAU(d) (2 + NK_MEHLER_TAU(d))
#define MEHLER_G (2 + NK_MEHLER_G)
#define MEHLER_CHUNK 16   /* positions per batch of the self pass's records */
/* vectors per block: as many as keep p, p' and rho^2 of each in registers (24 of AVX-512's 32;
 * 12 of AVX2's 16).  Per block the needs' pass (rho^2's largest, its level, the rows' needs)
 * was ~1/3 of mehler_planes' time with four AVX-512 vectors (perf, float32 tanh), ~1/5 with
 * eight; a block's m is then the largest of twice the entries, and the tanh CNN came out ~5%
 * faster in float32 and float64 (alternating driver runs) */
#define MEHLER_NV ((int)(VLEN * sizeof(R)) == 64 ? 8 : 4)
#if SIMD
#define MEHLER_NB (MEHLER_NV * VLEN)
#else
#define MEHLER_NB NV
#endif

/* Both series of the nb entries of a block at entry j (rho at r, rho^2 at x) from phi's
 * coefficient planes ga, gb (the lone degree, then m parity terms) and the inverse roots ia, ib,
 * into s0 (E phi phi) and s1 (E phi' phi'): p(x) and p'(x) by Horner's rule, then NK_MEHLER_CLOSE (as
 * gauss.c: nk_mehler_grid).
 * Per term and entry: two loads (the coefficient of each sample), three multiplies and two adds;
 * mehler_vec, the blocks without a tail to check, runs the same operations on vectors (no FMA:
 * the vectors round as this loop, the portable form the others are tested against to 1e-13). */
static inline TGT __attribute__((always_inline)) void FN(mehler_sums)(const R *restrict ga, const R *restrict gb,
                                                                      const R *restrict ia, const R *restrict ib,
                                                                      int m, int odd, const R *restrict r,
                                                                      const R *restrict x, R *restrict s0,
                                                                      R *restrict s1, int j, int nb, int P)
{
    R p[MEHLER_NB], d[MEHLER_NB];
    for (int u = 0; u < nb; u++) p[u] = d[u] = 0;
    for (int i = m; i >= 1; i--) {
        const R *restrict ca = ga + (size_t)i * P + j, *restrict cb = gb + (size_t)i * P + j;
        for (int u = 0; u < nb; u++) {
            d[u] = d[u] * x[u] + p[u];
            p[u] = p[u] * x[u] + ca[u] * cb[u];
        }
    }
    for (int u = 0; u < nb; u++) {
        const R q0 = ga[j + u] * gb[j + u], rab = (ia[j + u] > 0 ? ia[j + u] : 1) * (ib[j + u] > 0 ? ib[j + u] : 1);
        NK_MEHLER_CLOSE(odd, q0, r[u], x[u], p[u], d[u], rab, s0[u], s1[u]);
    }
}

/* rho of entries j .. j + nb - 1 into r[0 .. nb) (clamped to [-1, 1]; as mehler_vec's vectors) */
static inline TGT __attribute__((always_inline)) void FN(mehler_rho)(const R *restrict k, R *restrict r, int j, int nb,
                                                                     const R *restrict A, const R *restrict B, int P)
{
    for (int u = 0; u < nb; u++) {
        const R rho = k[j + u] * A[P + j + u] * B[P + j + u];
        r[u] = rho > 1 ? 1 : rho < -1 ? -1 : rho;
    }
}

/* The terms entries j .. j + nb - 1 need per series (m: the largest need of the block's rows at
 * the level of the block's largest rho^2, every position of a row holding it; unclamped: a rho^2
 * past 1 has the last level as 1 has; a NaN leaves the maximum as it is) */
static inline TGT __attribute__((always_inline)) void FN(mehler_need)(const R *restrict k, int j, int nb, int W,
                                                                      const R *restrict A, const R *restrict B, int P,
                                                                      int m[2])
{
    R xmax = 0;
    int u = 0;
#if SIMD
    VT vm = VSET1(0);
    for (; u + VLEN <= nb; u += VLEN) {
        const VT rho = VMUL(VMUL(VLOADU(k + j + u), VLOADU(A + P + j + u)), VLOADU(B + P + j + u));
        vm = VMAX(VMUL(rho, rho), vm);
    }
#ifdef VHMAX
    xmax = VHMAX(vm);   /* (vm holds no NaN) */
#else
    R lanes[VLEN];
    VSTOREU(lanes, vm);
    for (int l = 0; l < VLEN; l++) xmax = lanes[l] > xmax ? lanes[l] : xmax;
#endif
#endif
    for (; u < nb; u++) {
        const R rho = k[j + u] * A[P + j + u] * B[P + j + u];
        xmax = rho * rho > xmax ? rho * rho : xmax;
    }
    const int lev = nk_mehler_level_of((double)xmax);
    for (int d = 0; d < 2; d++) {
        const R *na = A + (MEHLER_NEED(d) + lev) * P, *nbr = B + (MEHLER_NEED(d) + lev) * P;
        R mx = 0;
        for (int q = j / W * W; q < j + nb; q += W) {
            mx = na[q] > mx ? na[q] : mx;
            mx = nbr[q] > mx ? nbr[q] : mx;
        }
        m[d] = (int)mx;
    }
}

#if SIMD
/* nv whole vectors of entries from j whose terms are all stored (no entry's tail to check):
 * mehler_rho, mehler_sums and mehler_block's output, the same operations in the same order (the
 * same bits), rho^2 and both sums in registers (rho formed again for the closing forms, from the
 * lines it reads there anyway), without their round trips through the stack (~1/6 of
 * mehler_planes' time) */
static inline TGT __attribute__((always_inline)) void FN(mehler_vec)(R *restrict k, R *restrict t, int j, int nv, int m,
                                                                     int odd, const R *restrict A, const R *restrict B,
                                                                     int P)
{
    const R *restrict ga = A + MEHLER_G * P, *restrict gb = B + MEHLER_G * P;
    const VT one = VSET1(1), mone = VSET1(-1), zero = VSET1(0);
    VT p[MEHLER_NV], d[MEHLER_NV], vx[MEHLER_NV];
    /* (rho clamped as mehler_rho: max(-1, rho) and min(1, .) return rho where it is NaN) */
    for (int v = 0; v < nv; v++) {
        const int o = j + v * VLEN;
        const VT rho = VI(min_)(one, VMAX(mone, VMUL(VMUL(VLOADU(k + o), VLOADU(A + P + o)), VLOADU(B + P + o))));
        vx[v] = VMUL(rho, rho);
        p[v] = d[v] = zero;
    }
    for (int i = m; i >= 1; i--) {
        const R *ca = ga + (size_t)i * P + j, *cb = gb + (size_t)i * P + j;
        for (int v = 0; v < nv; v++) {
            d[v] = VADD(VMUL(d[v], vx[v]), p[v]);
            p[v] = VADD(VMUL(p[v], vx[v]), VMUL(VLOADU(ca + v * VLEN), VLOADU(cb + v * VLEN)));
        }
    }
    for (int v = 0; v < nv; v++) {
        const int o = j + v * VLEN;
        const VT via = VLOADU(A + P + o), vib = VLOADU(B + P + o);
        const VT vr = VI(min_)(one, VMAX(mone, VMUL(VMUL(VLOADU(k + o), via), vib)));
        const VT q0 = VMUL(VLOADU(ga + o), VLOADU(gb + o));
        const VT rab = VMUL(VBLEND(VCMPGT(via, zero), via, one), VBLEND(VCMPGT(vib, zero), vib, one));
        VT s0, s1;
        if (odd) {
            s1 = VMUL(VADD(p[v], VMUL(VADD(vx[v], vx[v]), d[v])), rab);
            s0 = VADD(q0, VMUL(vr, p[v]));
        } else {
            s1 = VMUL(VADD(q0, VMUL(VADD(vr, vr), d[v])), rab);
            s0 = VADD(VMUL(q0, vr), p[v]);
        }
        VSTOREU(k + o, s0);
        VSTOREU(t + o, VMUL(VLOADU(t + o), s1));
    }
}
#endif

/* Entries j .. j + nb - 1 of the plane (nb <= MEHLER_NB; vec: a multiple of VLEN), phi's first
 * `terms` terms (nk_mehler_span of the block's needs; over: its bits, the series whose need is
 * past the stored terms: check each entry's tail) */
static inline TGT __attribute__((always_inline)) void FN(mehler_block)(const nk_act *act, R *restrict k, R *restrict t,
                                                                       int j, int nb, int vec, int terms, int over,
                                                                       const R *restrict A, const R *restrict B, int P)
{
#if SIMD
    if (vec && !over) {
        FN(mehler_vec)(k, t, j, nb / VLEN, terms, nk_mehler_odd(act->kind, 0), A, B, P);
        return;
    }
#else
    (void)vec;
#endif
    R r[MEHLER_NB], x[MEHLER_NB], s0[MEHLER_NB], s1[MEHLER_NB];
    FN(mehler_rho)(k, r, j, nb, A, B, P);
    for (int u = 0; u < nb; u++) x[u] = r[u] * r[u];
    FN(mehler_sums)(A + MEHLER_G * P, B + MEHLER_G * P, A + P, B + P, terms, nk_mehler_odd(act->kind, 0), r, x,
                    s0, s1, j, nb, P);
    if (over) {
        /* some position needs more terms than are stored: check each entry's bound */
        const double tol = MEHLER_TOL;
        for (int u = 0; u < nb; u++) {
            const int e = j + u;
            const double ta[2] = {A[MEHLER_TAU(0) * P + e], A[MEHLER_TAU(1) * P + e]};
            const double tb[2] = {B[MEHLER_TAU(0) * P + e], B[MEHLER_TAU(1) * P + e]};
            const int bad = nk_mehler_tail_over(act->kind, ta, tb, __builtin_fabs(r[u]), tol) & over;
            if (!bad) continue;
            double v0 = s0[u], v1 = s1[u];
            nk_mehler_nested(act, bad, A[e], B[e], k[e], tol, &v0, &v1);
            s0[u] = (R)v0;
            s1[u] = (R)v1;
        }
    }
    for (int u = 0; u < nb; u++) {
        k[j + u] = s0[u];
        t[j + u] *= s1[u];
    }
}

/* The Mehler steps of np planes (plane p: k[p], t[p], n[p] entries in rows of W, its self states
 * at A[p], B[p]): first every block's needs, so that the first sample's terms can be rotated as
 * far as the planes need them (rot, for the layer whose self state is at so: plane.c,
 * rotate_terms), then the sums, block i of every plane before block i + 1 of any.  plane_pairs
 * passes a group's planes (one da, consecutive di): those of di >= 0 read the second sample's
 * coefficients at the same place, those of di < 0 the first sample's, so that a block's
 * shared coefficient lines come from L2 once for all of them (measured: a tanh CNN ~8% faster
 * than plane by plane, the series alone ~20%; the lines are not the whole bound).  Each entry
 * is computed as plane by plane (np = 1): the same bits. */
static TGT void FN(mehler_planes)(const nk_act *act, int np, R *const *k, R *const *t, const int *n, int W,
                                  const R *const *A, const R *const *B, int P, nk_prot *rot, size_t so)
{
    int nblk = 0, most = 0;
    for (int p = 0; p < np; p++) {
        const int b = (n[p] + MEHLER_NB - 1) / MEHLER_NB;
        nblk = b > nblk ? b : nblk;
    }
    int bm[np][nblk][2];   /* per block: the terms it sums, and its over bits (nk_mehler_span) */
    for (int p = 0; p < np; p++)
        for (int i = 0; i * MEHLER_NB < n[p]; i++) {
            const int j = i * MEHLER_NB, nb = n[p] - j < MEHLER_NB ? n[p] - j : MEHLER_NB;
            int m[2];
            FN(mehler_need)(k[p], j, nb, W, A[p], B[p], P, m);
            bm[p][i][0] = nk_mehler_span(act->kind, m, &bm[p][i][1]);
            most = bm[p][i][0] > most ? bm[p][i][0] : most;
        }
    if (rot) rotate_terms(rot, so, most);
    for (int i = 0; i < nblk; i++)
        for (int p = 0; p < np; p++) {
            int j = i * MEHLER_NB;
            if (j >= n[p]) continue;
            const int e = n[p] - j < MEHLER_NB ? n[p] : j + MEHLER_NB;
#if SIMD
            /* whole vectors, then the last entries one by one */
            const int nv = (e - j) / VLEN * VLEN;
            if (nv == MEHLER_NB)   /* (the whole block: a constant count of vectors, in registers) */
                FN(mehler_block)(act, k[p], t[p], j, MEHLER_NB, 1, bm[p][i][0], bm[p][i][1], A[p], B[p], P);
            else if (nv)
                FN(mehler_block)(act, k[p], t[p], j, nv, 1, bm[p][i][0], bm[p][i][1], A[p], B[p], P);
            j += nv;
#endif
            if (j < e) FN(mehler_block)(act, k[p], t[p], j, e - j, 0, bm[p][i][0], bm[p][i][1], A[p], B[p], P);
        }
}

/* The Mehler steps a group's planes left to plane_pairs (nk_pseg: mop), together */
static TGT void FN(mehler_group)(nk_pseg *run, int np, int W, int P, nk_prot *rot)
{
    R *k[np], *t[np];
    const R *A[np], *B[np];
    int n[np], q = 0;
    const nk_op *op = NULL;
    for (int p = 0; p < np; p++) {
        if (!run[p].mop) continue;
        op = run[p].mop;
        k[q] = run[p].mk;
        t[q] = run[p].mt;
        A[q] = run[p].ma;
        B[q] = run[p].mb;
        n[q++] = run[p].mn;
        run[p].mop = NULL;
    }
    if (q) FN(mehler_planes)(&op->act, q, k, t, n, W, A, B, P, rot, op->pself);
}

/* The affine map of the window sums mk, mt and, if relu, the ReLU in the engine's form (see
 * relu_entry), on n entries (a multiple of NV), written to ko, to.  scale multiplies the window
 * sums: 1 / (window size x the factor the input states carry).  hk3 != 0: mk, mt are row sums
 * and the 3-wide column sums are taken here, mk[j] + wl[j] mk[j-1] + wr[j] mk[j+1] (wl, wr: 1
 * where the neighbour is in the same part of the same row, else 0; in this order, which is
 * conv3_chain's, so that a sample's self pass and its pairs round alike).  The variances of
 * entry j are at A + j and B + j, their inverse roots at +P. */
static inline TGT __attribute__((always_inline)) void FN(affine_act)(const nk_op *op, double scale, const R *restrict mk,
                                                                     const R *restrict mt, int hk3, R *restrict ko,
                                                                     R *restrict to, int n, int relu,
                                                                     const R *restrict A, const R *restrict B,
                                                                     const R *restrict wl, const R *restrict wr, int P)
{
    const R cw = (R)(op->w2 * scale), ca = (R)(op->alpha * scale), b2 = (R)op->b2, beta = (R)op->beta;
    const int ntkp = NTK_PARAM(op);
#if SIMD
    if (relu) {
        const VT vcw = VSET1(cw), vca = VSET1(ca), vb2 = VSET1(b2), vbeta = VSET1(beta);
        VT ak, ad, at, bt = VSET1(0);
        FN(relu_mid) bm = {0};
#define AFF_A(sk, st, jj)                                                                            \
    do {                                                                                             \
        ak = VFMA(vcw, sk, vb2);                                                                     \
        at = ntkp ? VFMA(vcw, st, ak) : VFMA(vca, sk, VFMA(vcw, st, vbeta));                         \
        ad = FN(relu_d)(ak, VLOADU(A + (jj)), VLOADU(B + (jj)));                                     \
    } while (0)
#define AFF_H3(m, jj)                                                                                \
    VFMA(VLOADU(wr + (jj)), VLOADU(m + (jj) + 1), VFMA(VLOADU(wl + (jj)), VLOADU(m + (jj) - 1), VLOADU(m + (jj))))
#define AFF_A3(jj) AFF_A(AFF_H3(mk, jj), AFF_H3(mt, jj), jj)
#define AFF_A1(jj) AFF_A(VLOADU(mk + (jj)), VLOADU(mt + (jj)), jj)
        if (hk3) SP3_RUN(AFF_A3, n);
        else SP3_RUN(AFF_A1, n);
#undef AFF_A
#undef AFF_A3
#undef AFF_H3
#undef AFF_A1
        return;
    }
#endif
    for (int j = 0; j < n; j++) {
        const R sk = hk3 ? FMA(wr[j], mk[j + 1], FMA(wl[j], mk[j - 1], mk[j])) : mk[j];
        const R st = hk3 ? FMA(wr[j], mt[j + 1], FMA(wl[j], mt[j - 1], mt[j])) : mt[j];
        R k = FMA(cw, sk, b2), t = ntkp ? FMA(cw, st, k) : FMA(ca, sk, FMA(cw, st, beta));
        if (relu) FN(relu_entry)(&k, &t, A[j], A[P + j], B[j], B[P + j], 1);
        ko[j] = k;
        to[j] = t;
    }
}

#if SIMD
/* A 3x3 window's sums and affine map, as conv3_chain and conv3_affine both form them (so that a
 * layer rounds alike on either): the sum of the three rows from p at entry m (rows Wp apart),
 * the column sums of the current vector's row sums c with its neighbours from the previous and
 * next vectors' p, n (lanes whose bit of ml, mr is clear get 0), and T after the affine map
 * (NTK_PARAM: one FMA after K; else the standard form) from the window sums sk, st and K ak */
#define C3_ROWS(p, m) VADD(VADD(VLOADU((p) + (m)), VLOADU((p) + Wp + (m))), VLOADU((p) + 2 * Wp + (m)))
#ifdef VALIGN_PREV_Z
/* AVX-512: the neighbours by masked lane shifts across two vectors, the masks from the bits bl,
 * br (C3W: their type; C3_MASK(w, jj): the mask of vector jj) */
#define C3_COLS(ml, mr, p, c, n) VADD(VADD(c, VALIGN_PREV_Z(ml, c, p)), VALIGN_NEXT_Z(mr, n, c))
#define C3W unsigned char
#define C3_MASK(w, jj) VLOADMASK((w) + (jj) / 8)
#else
/* AVX2: the neighbours by two lane permutations and a blend (no shift of lanes across two
 * vectors), zeroed by masks from the weights wl, wr (1 where the neighbour is in the same part of
 * the same row, else 0: the same entries as AVX-512's bits); the same operations in the same
 * order, so the same bits as the row sums' pass and affine_act.  lanes_shift: c's lanes moved one
 * place, the lane left empty taken from o: up (the previous entries), [o's last lane, c's lanes
 * 0 .. VLEN - 2]; else (the next), [c's lanes 1 .. VLEN - 1, o's first]. */
static inline TGT __attribute__((always_inline)) VT FN(lanes_shift)(VT c, VT o, int up)
{
    if (sizeof(R) == 4) {
        const __m256i ix = up ? _mm256_setr_epi32(7, 0, 1, 2, 3, 4, 5, 6) : _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0);
        const __m256 x = _mm256_permutevar8x32_ps((__m256)c, ix), y = _mm256_permutevar8x32_ps((__m256)o, ix);
        return (VT)(up ? _mm256_blend_ps(x, y, 0x01) : _mm256_blend_ps(x, y, 0x80));
    }
    const __m256d x = up ? _mm256_permute4x64_pd((__m256d)c, _MM_SHUFFLE(2, 1, 0, 3))
                         : _mm256_permute4x64_pd((__m256d)c, _MM_SHUFFLE(0, 3, 2, 1));
    const __m256d y = up ? _mm256_permute4x64_pd((__m256d)o, _MM_SHUFFLE(2, 1, 0, 3))
                         : _mm256_permute4x64_pd((__m256d)o, _MM_SHUFFLE(0, 3, 2, 1));
    return (VT)(up ? _mm256_blend_pd(x, y, 0x1) : _mm256_blend_pd(x, y, 0x8));
}

#define C3_COLS(ml, mr, p, c, n)                                                                     \
    VADD(VADD(c, VBLEND(ml, FN(lanes_shift)(c, p, 1), VSET1(0))), VBLEND(mr, FN(lanes_shift)(c, n, 0), VSET1(0)))
#define C3W R
#define C3_MASK(w, jj) VCMPGT(VLOADU((w) + (jj)), VSET1(0))
#endif
#define C3_T_NTK VFMA(vcw, st, ak)
#define C3_T_STD VFMA(vca, sk, VFMA(vcw, st, vbeta))

#ifdef VALIGN_PREV_Z
/* One layer of a chain of 3x3 windows (one zero row and column of padding each side), each
 * fused with its affine map and ReLU: the affine constants (window scale folded in) and the
 * ReLU's self states (variances at A, B; inverse roots at +P).  (AVX-512 only: on AVX2, with the
 * neighbours by lane permutations, the chain measured no faster than the row sums' pass and
 * affine_act's fused ReLU, float64 ~7% slower.) */
typedef struct {
    R cw, ca, b2, beta;
    const R *A, *B;
    int pb;                        /* padding rows above: the window of row r starts at r - pb */
} FN(c3layer);

/* nl such layers on one plane of n entries (nr: n rounded up to vectors; entries n..nr-1 come
 * out 0), layer l reading the planes (k_a, t_a) for l even and (k_b, t_b) for l odd and writing
 * the others, each with one zero row above and below.  The row sums of a vector are formed from
 * its three rows as the loop goes, and their column neighbours come from the previous and next
 * vectors by lane shifts, zeroed where the mask bits bl, br say the neighbour is not in the same
 * part of the same row (bit j of the arrays), so the row sums never go through memory.
 * Software-pipelined as described at SP3_RUN, and the pipeline runs on from one layer into the
 * next: the next layer's first two vectors (stage A) start while this layer's last two finish
 * (stages B, C), which needs the rows these read finished by then (rows up to 1 with one
 * padding row: nr >= Wp + 4 vectors; smaller planes drain between layers).  Between layers
 * the pipeline is otherwise empty for ~100 cycles: on the planes of a 32x32 image (16 rows on
 * average) that was ~10% of the float32 time. */
static inline TGT __attribute__((always_inline)) void FN(conv3_chain)(const FN(c3layer) *ly, int nl, int ntkp,
                                                                      R *k_a, R *t_a, R *k_b, R *t_b, int Wp, int n,
                                                                      int nr, const unsigned char *bl,
                                                                      const unsigned char *br, int P)
{
    VT vcw, vca, vb2, vbeta;       /* stage A's layer */
    VT pk, pt, ck, ct;             /* column sums of the previous and current vectors */
    VT ak, ad, at;                 /* stage A's results: c, ab - c^2, T after the affine map */
    FN(relu_mid) bm = {0};         /* stage B's results */
    VT bt = VSET1(0);
    const R *k0, *t0, *aA, *aB;    /* stage A's inputs (from the row above) and self states */
    const R *A = ly[0].A, *B = ly[0].B;   /* stage B's self states (SP3_STAGE_B) */
    R *ko = k_b, *to = t_b;        /* stage C's outputs (SP3_STAGE_C) */
#define C3_LAYER_A(L)                                                                                        \
    do {                                                                                                     \
        const FN(c3layer) *l_ = &ly[L];                                                                      \
        vcw = VSET1(l_->cw); vca = VSET1(l_->ca); vb2 = VSET1(l_->b2); vbeta = VSET1(l_->beta);              \
        k0 = ((L) & 1 ? k_b : k_a) - l_->pb * Wp;                                                            \
        t0 = ((L) & 1 ? t_b : t_a) - l_->pb * Wp;                                                            \
        aA = l_->A; aB = l_->B;                                                                              \
        pk = pt = VSET1(0);                                                                                  \
        ck = C3_ROWS(k0, 0);                                                                                 \
        ct = C3_ROWS(t0, 0);                                                                                 \
    } while (0)
#define C3_A(jj) C3_AM(jj, VLOADMASK(bl + (jj) / 8), VLOADMASK(br + (jj) / 8))
#define C3_AM(jj, ml_, mr_)                                                                                  \
    do {                                                                                                     \
        const int m_ = (jj) + VLEN;                                                                          \
        const VT nk = C3_ROWS(k0, m_), nt = C3_ROWS(t0, m_);                                                 \
        const MT ml = (ml_), mr = (mr_);                                                                     \
        const VT sk = C3_COLS(ml, mr, pk, ck, nk), st = C3_COLS(ml, mr, pt, ct, nt);                         \
        ak = VFMA(vcw, sk, vb2);                                                                             \
        at = AT;                                                                                             \
        ad = FN(relu_d)(ak, VLOADU(aA + (jj)), VLOADU(aB + (jj)));                                           \
        pk = ck; ck = nk;                                                                                    \
        pt = ct; ct = nt;                                                                                    \
    } while (0)
#define C3_AR(jj) C3_AM(jj, kl, kr)
#define C3_BODY                                                                                              \
    do {                                                                                                     \
        C3_LAYER_A(0);                                                                                       \
        SP3_FILL(C3_A, SP3_STAGE_B, nr);                                                                     \
        for (int L = 0; L < nl; L++) {                                                                       \
            int j = 0;                                                                                       \
            if (alt) {                                                                                       \
                MT kl = ml0, kr = mr0;                                                                       \
                for (; j + 2 * VLEN < nr; j += VLEN) {                                                       \
                    SP3_STEP(C3_AR, SP3_STAGE_B, SP3_STAGE_C, j);                                            \
                    kl = VKXOR(kl, dl);                                                                      \
                    kr = VKXOR(kr, dr);                                                                      \
                }                                                                                            \
            }                                                                                                \
            SP3_STEADY(C3_A, SP3_STAGE_B, SP3_STAGE_C, j, nr)                                                \
            const int more = L + 1 < nl;                                                                     \
            const int overlap = more && nr >= (2 - ly[L + 1].pb) * Wp + 4 * VLEN;                            \
            if (overlap) {                                                                                   \
                /* j = nr - 2 vectors: this layer's last two with the next layer's first two */              \
                FN(relu_mid) cm = bm;                                                                        \
                VT ctt = bt;                                                                                 \
                SP3_STAGE_B(j + VLEN);                                                                       \
                C3_LAYER_A(L + 1);                                                                           \
                C3_A(0);                                                                                     \
                SP3_STAGE_C(cm, ctt, j);                                                                     \
                cm = bm;                                                                                     \
                ctt = bt;                                                                                    \
                A = ly[L + 1].A;                                                                             \
                B = ly[L + 1].B;                                                                             \
                SP3_STAGE_B(0);                                                                              \
                C3_A(VLEN);                                                                                  \
                SP3_STAGE_C(cm, ctt, j + VLEN);                                                              \
            } else {                                                                                         \
                SP3_DRAIN(SP3_STAGE_B, SP3_STAGE_C, j, nr);                                                  \
            }                                                                                                \
            for (int e = n; e < nr; e++) ko[e] = to[e] = 0;                                                  \
            ko = (L + 1) & 1 ? k_a : k_b;                                                                    \
            to = (L + 1) & 1 ? t_a : t_b;                                                                    \
            if (more && !overlap) {                                                                          \
                C3_LAYER_A(L + 1);                                                                           \
                A = ly[L + 1].A;                                                                             \
                B = ly[L + 1].B;                                                                             \
                SP3_FILL(C3_A, SP3_STAGE_B, nr);                                                             \
            }                                                                                                \
        }                                                                                                    \
    } while (0)
    /* rows of one or two whole vectors: the masks of a row's vectors in mask registers for the
     * whole plane, stage A's flipped from one vector to the next by kxor (a mask loaded per
     * vector costs two half FMA slots: 2.2% of a float32 pair, measured) */
    const int alt = Wp % VLEN == 0 && Wp <= 2 * VLEN;
    const MT ml0 = VLOADMASK(bl), mr0 = VLOADMASK(br);
    const MT dl = VKXOR(ml0, VLOADMASK(bl + (Wp > VLEN ? VLEN / 8 : 0)));
    const MT dr = VKXOR(mr0, VLOADMASK(br + (Wp > VLEN ? VLEN / 8 : 0)));
    if (ntkp) {
#define AT C3_T_NTK
        C3_BODY;
#undef AT
    } else {
#define AT C3_T_STD
        C3_BODY;
#undef AT
    }
#undef C3_BODY
#undef C3_LAYER_A
#undef C3_A
#undef C3_AM
#undef C3_AR
}
#endif

/* One 3x3 window layer (as conv3_chain's: C3_ROWS, C3_COLS, the same bits as the row sums and
 * affine_act) and its affine map alone, where no ReLU is fused with it (another
 * activation, none, as a residual block's last conv, or a sample's self pass):
 * window sums of (k_in, t_in) into (ko, to), nr entries.  One pass, the row sums in registers
 * (the row sums' pass and affine_act's pass through memory took ~1/4 of a tanh CNN's time). */
static inline TGT __attribute__((always_inline)) void FN(conv3_affine)(R cw, R ca, R b2, R beta, int ntkp,
                                                                       const R *k_in, const R *t_in, R *restrict ko,
                                                                       R *restrict to, int Wp, int pb, int nr,
                                                                       const C3W *bl, const C3W *br)
{
    const VT vcw = VSET1(cw), vca = VSET1(ca), vb2 = VSET1(b2), vbeta = VSET1(beta);
    const R *k0 = k_in - (size_t)pb * Wp, *t0 = t_in - (size_t)pb * Wp;
    VT pk = VSET1(0), pt = VSET1(0);
    VT ck = C3_ROWS(k0, 0), ct = C3_ROWS(t0, 0);
#define C3F_LOOP(AT_)                                                                                        \
    for (int j = 0; j < nr; j += VLEN) {                                                                     \
        const int m_ = j + VLEN;                                                                             \
        const VT nk = C3_ROWS(k0, m_), nt = C3_ROWS(t0, m_);                                                 \
        const MT ml = C3_MASK(bl, j), mr = C3_MASK(br, j);                                                   \
        const VT sk = C3_COLS(ml, mr, pk, ck, nk), st = C3_COLS(ml, mr, pt, ct, nt);                         \
        const VT ak = VFMA(vcw, sk, vb2);                                                                    \
        VSTOREU(ko + j, ak);                                                                                 \
        VSTOREU(to + j, AT_);                                                                                \
        pk = ck; ck = nk;                                                                                    \
        pt = ct; ct = nt;                                                                                    \
    }
    if (ntkp) {
        C3F_LOOP(C3_T_NTK)
    } else {
        C3F_LOOP(C3_T_STD)
    }
#undef C3F_LOOP
}
#undef C3_ROWS
#undef C3_COLS
#undef C3_T_NTK
#undef C3_T_STD
#undef C3_MASK
#undef C3W
#endif

/* The ReLU alone, in place, on n entries (n as above). */
static inline TGT __attribute__((always_inline)) void FN(relu_inplace)(R *restrict k, R *restrict t, int n,
                                                                       const R *restrict A, const R *restrict B, int P)
{
#if SIMD
    /* in the software pipeline of the fused loops (SP3_RUN3: stage A reads vector j + 2 before
     * stage C writes vector j, so in place is safe), the same operations as relu_vec: the ReLU
     * after a residual block's addition, vector by vector, took 31 TSC cycles per float64 vector
     * against ~17 pipelined (one thread) */
    VT ak, ad, at, bt = VSET1(0);
    FN(relu_mid) bm = {0};
    R *ko = k, *to = t;
#define RELU_A(jj)                                                                                   \
    do {                                                                                             \
        ak = VLOADU(k + (jj));                                                                       \
        at = VLOADU(t + (jj));                                                                       \
        ad = FN(relu_d)(ak, VLOADU(A + (jj)), VLOADU(B + (jj)));                                     \
    } while (0)
    SP3_RUN(RELU_A, n);
#undef RELU_A
#else
    for (int j = 0; j < n; j++)
        FN(relu_entry)(k + j, t + j, A[j], A[P + j], B[j], B[P + j], 1);
#endif
}

/* Position i of a level on engine axis a -> its position in the next level (nk_pgeom.moff),
 * or -1 */
static inline int FN(down_pos)(const nk_pgeom *g, int a, int i)
{
    const int x = i + g->moff[a], Q = x / g->ms[a], n = a ? g[1].W : g[1].H;
    return x % g->ms[a] < g->mf[a] && Q < n ? Q : -1;
}

/* floor(x / s) and x - s floor(x / s), for any sign of x (s > 0) */
static inline int FN(fdiv)(int x, int s) { return x >= 0 ? x / s : -((-x + s - 1) / s); }

/* Where row q of the plane of row displacement di lands in the next level's store: 0 if the row
 * is in no window; else *mw, the entries of one plane of its coarse row displacement, and *row,
 * the offset of its coarse row (see store_rows). */
static inline int FN(store_row)(const nk_pgeom *g, int q, int di, size_t *mw, size_t *row)
{
    const int H2 = g[1].H, W2 = g[1].W, Q = FN(down_pos)(g, 0, q), Q2 = FN(down_pos)(g, 0, q - di);
    if (Q < 0 || Q2 < 0) return 0;
    const int ei = Q - Q2;
    *mw = (size_t)(H2 - (ei > 0 ? ei : -ei)) * W2;
    *row = store_rows(H2, ei) * W2 * W2 + (size_t)(Q - (ei > 0 ? ei : 0)) * W2;
    return 1;
}

/* The step down to the next level: each entry of the plane (di, da) (true values: times f, with
 * the pool's 1/f^4) added to the entry of the next level's store it falls in.  A position falls
 * in at most one window, so that entry is unique: (Q, R) of the first sample's position against
 * (Q2, R2) of the second's, in the plane (Q - Q2, (R - R2) mod W2) at row Q - max(Q - Q2, 0) and
 * column R2 (the layout the next level reads, see store_rows).  Along a row, a part of
 * displacement D (da, or da - W) and the second sample's column c = s R2 + phi - moff go to
 * R = R2 + floor((phi + D) / s): each phase phi < f of the window is one strided run of the row
 * into a contiguous run of one plane of the store (vectorized for s = 1, 2). */
static TGT __attribute__((noinline)) void FN(step_down)(const nk_pgeom *g, const R *kr, const R *tr, R f, int di, int da, const nk_pio *io)
{
    const int H = g->H, W = g->W, W2 = g[1].W;
    const int q_lo = di > 0 ? di : 0, m0 = H - (di > 0 ? di : -di);
    const int s = g->ms[1], fw = g->mf[1], o = g->moff[1];
    R *restrict dk = io->dstK, *restrict dt = io->dstT;
    if (s == 2 && fw == 2 && o == 0) {
        /* windows of two from column 0 (Myrtle's pools): the coarse column R2 = j takes the
         * columns 2j and 2j + 1 of a row.  Per part and phase, a weight per j (f where that
         * column is in the part and its R = j + E in range, else 0), so that each row is two or
         * four full-length loops over j (runs of a few entries cost more in their set-up than
         * in their adds) */
        R *wt = (R *)io->cols;   /* [part][phase][W2] */
        int Ep[2][2];
#if SIMD && defined(VALIGN_PREV_Z)
        /* lane indices of the even and odd entries of two vectors */
        __m512i ieven, iodd;
        if (sizeof(R) == 4) {
            int e[16], od[16];
            for (int l = 0; l < 16; l++) { e[l] = 2 * l; od[l] = 2 * l + 1; }
            ieven = _mm512_loadu_si512(e);
            iodd = _mm512_loadu_si512(od);
        } else {
            long long e[8], od[8];
            for (int l = 0; l < 8; l++) { e[l] = 2 * l; od[l] = 2 * l + 1; }
            ieven = _mm512_loadu_si512(e);
            iodd = _mm512_loadu_si512(od);
        }
#endif
        for (int part = 0; part < 2; part++) {
            const int c_lo = part ? W - da : 0, c_hi = part ? W : W - da, D = part ? da - W : da;
            for (int phi = 0; phi < 2; phi++) {
                const int E = FN(fdiv)(phi + D, 2);
                Ep[part][phi] = (E % W2 + W2) % W2;
                for (int j = 0; j < W2; j++) {
                    const int c = 2 * j + phi;
                    wt[(2 * part + phi) * W2 + j] = c >= c_lo && c < c_hi && j + E >= 0 && j + E < W2 ? f : 0;
                }
            }
        }
        /* windows of two rows from row 0 as well: row q goes to the coarse row q / 2 and the
         * second sample's row q - di to (q - di) / 2, by shifts instead of store_row's divisions */
        const int rows2 = g->ms[0] == 2 && g->mf[0] == 2 && g->moff[0] == 0, H2 = g[1].H;
#define STEP_DOWN_ROW(y, mw, row)                                                                    \
        if (rows2) {                                                                                 \
            const int q_ = q_lo + (y), Q_ = q_ >> 1, Q2_ = (q_ - di) >> 1, ei_ = Q_ - Q2_;           \
            if (Q_ >= H2 || Q2_ >= H2) continue;                                                     \
            mw = (size_t)(H2 - (ei_ > 0 ? ei_ : -ei_)) * W2;                                         \
            row = store_rows(H2, ei_) * W2 * W2 + (size_t)(Q_ - (ei_ > 0 ? ei_ : 0)) * W2;           \
        } else if (!FN(store_row)(g, q_lo + (y), di, &mw, &row)) {                                   \
            continue;                                                                                \
        }
#if SIMD && defined(VALIGN_PREV_Z)
        /* AVX-512: the even and odd columns of two vectors by one permutation each, the last
         * vector's lanes past W2 masked (the weights and the row are read past their ends into
         * the buffers' slack).  With W = 2 W2 both parts of a row go to the same planes of the
         * store (E of the second part is that of the first minus W2), so their weights are
         * added (each column is in one part: one of the two is 0) and a row is one pass; and
         * with di even the rows 2Q and 2Q + 1 go to the same coarse row, so they are added in
         * registers before one read and write of the store.  Both keep the order of the
         * nonzero terms (bit-identical results) and remove a masked store's reload right after
         * it, which costs ~50 cycles (no store forwarding): measured, the step down of
         * Myrtle's 32x32 level took as long as a 3x3 ReLU layer. */
        const int merged = Ep[0][0] == Ep[1][0] && Ep[0][1] == Ep[1][1];
        if (merged)
            for (int j = 0; j < 2 * W2; j++) wt[j] += wt[2 * W2 + j];
        for (int y = 0; y < m0; y++) {
            size_t mw, row;
            STEP_DOWN_ROW(y, mw, row)
            const int pair = merged && rows2 && !(di & 1) && !((q_lo + y) & 1) && y + 1 < m0;
            for (int part = 0; part < 2 - merged; part++) {
                if (part && da == 0) continue;
                const R *restrict w0 = wt + 2 * part * W2, *restrict w1 = w0 + W2;
                R *restrict k0 = dk + row + Ep[part][0] * mw, *restrict t0 = dt + row + Ep[part][0] * mw;
                R *restrict k1 = dk + row + Ep[part][1] * mw, *restrict t1 = dt + row + Ep[part][1] * mw;
                const int same = Ep[part][0] == Ep[part][1];
                for (int j = 0; j < W2; j += VLEN) {
                    const MT m = W2 - j >= VLEN ? (MT)-1 : (MT)((1u << (W2 - j)) - 1);
                    const VT v0 = VLOADU(w0 + j), v1 = VLOADU(w1 + j);
                    VT xk0 = VI(maskz_loadu_)(m, k0 + j), xt0 = VI(maskz_loadu_)(m, t0 + j), xk1 = xk0, xt1 = xt0;
                    if (!same) {
                        xk1 = VI(maskz_loadu_)(m, k1 + j);
                        xt1 = VI(maskz_loadu_)(m, t1 + j);
                    }
                    for (int r = 0; r <= pair; r++) {
                        const R *restrict k = kr + (size_t)(y + r) * W + 2 * j, *restrict t = tr + (size_t)(y + r) * W + 2 * j;
                        const VT ka = VLOADU(k), kb = VLOADU(k + VLEN), ta = VLOADU(t), tb = VLOADU(t + VLEN);
                        const VT ke = VI(permutex2var_)(ka, ieven, kb), ko = VI(permutex2var_)(ka, iodd, kb);
                        const VT te = VI(permutex2var_)(ta, ieven, tb), to = VI(permutex2var_)(ta, iodd, tb);
                        if (same) {
                            xk0 = VFMA(v1, ko, VFMA(v0, ke, xk0));
                            xt0 = VFMA(v1, to, VFMA(v0, te, xt0));
                        } else {
                            xk0 = VFMA(v0, ke, xk0);
                            xt0 = VFMA(v0, te, xt0);
                            xk1 = VFMA(v1, ko, xk1);
                            xt1 = VFMA(v1, to, xt1);
                        }
                    }
                    VI(mask_storeu_)(k0 + j, m, xk0);
                    VI(mask_storeu_)(t0 + j, m, xt0);
                    if (!same) {
                        VI(mask_storeu_)(k1 + j, m, xk1);
                        VI(mask_storeu_)(t1 + j, m, xt1);
                    }
                }
            }
            y += pair;
        }
        return;
#endif
        for (int y = 0; y < m0; y++) {
            size_t mw, row;
            STEP_DOWN_ROW(y, mw, row)
            const R *restrict k = kr + (size_t)y * W, *restrict t = tr + (size_t)y * W;
            for (int part = 0; part < 2; part++) {
                if (part ? da == 0 : da == W) continue;
                const R *restrict w0 = wt + 2 * part * W2, *restrict w1 = w0 + W2;
                R *restrict k0 = dk + row + Ep[part][0] * mw, *restrict t0 = dt + row + Ep[part][0] * mw;
                if (Ep[part][0] == Ep[part][1]) {
                    for (int j = 0; j < W2; j++) {
                        k0[j] += w0[j] * k[2 * j] + w1[j] * k[2 * j + 1];
                        t0[j] += w0[j] * t[2 * j] + w1[j] * t[2 * j + 1];
                    }
                } else {
                    R *restrict k1 = dk + row + Ep[part][1] * mw, *restrict t1 = dt + row + Ep[part][1] * mw;
                    for (int j = 0; j < W2; j++) { k0[j] += w0[j] * k[2 * j]; t0[j] += w0[j] * t[2 * j]; }
                    for (int j = 0; j < W2; j++) { k1[j] += w1[j] * k[2 * j + 1]; t1[j] += w1[j] * t[2 * j + 1]; }
                }
            }
        }
        return;
#undef STEP_DOWN_ROW
    }
    for (int y = 0; y < m0; y++) {
        size_t mw, row;
        if (!FN(store_row)(g, q_lo + y, di, &mw, &row)) continue;
        const R *k = kr + (size_t)y * W, *t = tr + (size_t)y * W;
        for (int part = 0; part < 2; part++) {
            const int c_lo = part ? W - da : 0, c_hi = part ? W : W - da, D = part ? da - W : da;
            if (c_lo >= c_hi) continue;
            for (int phi = 0; phi < fw; phi++) {
                const int E = FN(fdiv)(phi + D, s);
                if (phi + D - s * E >= fw) continue;
                /* R2 with c = s R2 + phi - o in [c_lo, c_hi), R2 and R2 + E in [0, W2) */
                int lo = FN(fdiv)(c_lo - phi + o + s - 1, s), hi = FN(fdiv)(c_hi - 1 - phi + o, s) + 1;
                if (lo < 0) lo = 0;
                if (lo < -E) lo = -E;
                if (hi > W2) hi = W2;
                if (hi > W2 - E) hi = W2 - E;
                if (lo >= hi) continue;
                R *restrict ok = dk + row + (size_t)((E + W2) % W2) * mw, *restrict ot = dt + row + (size_t)((E + W2) % W2) * mw;
                const R *restrict ik = k + phi - o, *restrict it = t + phi - o;
                if (s == 2)
                    for (int j = lo; j < hi; j++) { ok[j] += f * ik[2 * j]; ot[j] += f * it[2 * j]; }
                else if (s == 1)
                    for (int j = lo; j < hi; j++) { ok[j] += f * ik[j]; ot[j] += f * it[j]; }
                else
                    for (int j = lo; j < hi; j++) { ok[j] += f * ik[(size_t)s * j]; ot[j] += f * it[(size_t)s * j]; }
            }
        }
    }
}

/* One combined plane (di, da), 0 <= da < W: the displacements (di, da) and (di, da - W) side by
 * side, so that the plane's m0 rows hold W entries each and the plane is one flat array.  Entry
 * c of a row pairs the first sample's column (c + da) mod W with the second's column c: the
 * row is [part 1: c < W - da, displacement da | part 2: displacement da - W] (Wp = W).  The
 * second sample is read in its own layout; the first sample's data and self states were laid
 * out rotated by da (nk_plane_pair).  Every loop below is a flat vector loop over the plane; a
 * window along a row adds a neighbour only where it is in the same part of the same row (pm:
 * the weights wl, wr, the mask bits bl, br of the 3-wide window, the part index seg of any
 * wider one), which is the zero padding of both displacements' planes. */
/* (no memset calls for the short zeroing loops: thousands of planes per pair) */
static TGT __attribute__((optimize("no-tree-loop-distribute-patterns"))) void FN(plane)(const nk_pgeom *g, const R *xa, const R *xb, const R *sa, const R *sb, const nk_pmask *pm,
                          const R *G, R *self_out, R *scratch, nk_pseg *run, int i0, int i1, int di, int da,
                          const nk_pio *io, double *sums, double *outK, double *outT)
{
    const R *wl = pm->wl, *wr = pm->wr;
    const int H = g->H, W = g->W, Wp = g->Wp, Pp = H * Wp;
    const int q_lo = di > 0 ? di : 0, m0 = H - (di > 0 ? di : -di);
    const int n = m0 * Wp, nr = (n + NV - 1) / NV * NV;
    const size_t plane = nk_plane_stride(g), base = nk_plane_base(g), ps = run->stride;
    /* the plane's own buffers (K and T in and out: what one segment of ops leaves for the next,
     * see plane_pairs) and the shared scratch of the window sums */
    R *const own = run->own;
    R *Kin = own, *Tin = Kin + ps, *Kout = Tin + ps, *Tout = Kout + ps;
    if (run->flip) {
        Kin = Kout; Kout = own;
        Tin = Tout; Tout = own + ps;
    }
    R *Vk = scratch + NV, *Vt = Vk + plane, *Mk = Vt + plane, *Mt = Mk + plane;
    /* first-sample and second-sample offsets of the plane's entry 0 */
    const size_t oa = (size_t)q_lo * Wp, ob = (size_t)(q_lo - di) * Wp;
    /* the stored K and T are the true ones times sc: a ReLU leaves out its 1/2pi (relu_entry),
     * which the next affine map takes into its weights */
    const double relu_sc = 2 * NK_PI;
    double sc = run->sc;
    double *res_sc = run->res_sc;   /* the factor sc of each open residual block's saved input */
    if (i0 == g->s) {
        /* zero padding: the rows above and below the plane, and the tail of the last vector */
        for (int b = 0; b < 4; b++) {
            R *restrict X = own + b * ps;   /* (loops: a few dozen entries, not worth a call) */
            for (size_t j = 0; j < base; j++) X[j] = 0;
            for (size_t j = base + n, e = j + (size_t)g->HA0 * Wp + NV; j < e; j++) X[j] = 0;
        }
        sc = 1;
        /* K0 = <x_p, x'_p'> / C, T0 = 0; after the first level, the plane from the level's store */
        if (g->lev > 0) {
            R *restrict kr = Kin + base, *restrict tr = Tin + base;
            const size_t off = store_rows(H, di) * W * W + (size_t)da * n;
            const R *restrict sk = (const R *)io->srcK + off, *restrict st = (const R *)io->srcT + off;
            for (int j = 0; j < n; j++) { kr[j] = sk[j]; tr[j] = st[j]; }
            for (int j = n; j < nr; j++) kr[j] = tr[j] = 0;
        } else {
            R *restrict kr = Kin + base, *restrict tr = Tin + base;
            const R invc = (R)(1.0 / g->C);
            for (int j = 0; j < nr; j++) tr[j] = 0;
            if (G) {
                for (int j = 0; j < nr; j++) kr[j] = 0;
                /* many channels: from the pair's P x P Gram <x_p, x'_p'>/C (one GEMM per pair, in
                 * the da = 0 layout), entry by entry */
                for (int y = 0; y < m0; y++) {
                    const int q = q_lo + y, q2 = q - di;
                    for (int c = 0; c < W; c++) {
                        int r, r2;
                        nk_plane_column(g, da, c, &r, &r2);
                        kr[y * Wp + c] = G[((size_t)q * Wp + r) * Pp + (size_t)q2 * Wp + r2];
                    }
                }
            } else if (g->C <= 4) {
                /* few channels (images): one pass */
                const R *restrict u[4], *restrict v[4];
                for (int ch = 0; ch < 4; ch++) {
                    const int cc = ch < g->C ? ch : 0;
                    u[ch] = xa + (size_t)cc * Pp + oa;
                    v[ch] = xb + (size_t)cc * Pp + ob;
                }
                const int C = g->C;
                for (int j = 0; j < nr; j++) {
                    R acc = u[0][j] * v[0][j];
                    if (C > 1) acc = FMA(u[1][j], v[1][j], acc);
                    if (C > 2) acc = FMA(u[2][j], v[2][j], acc);
                    if (C > 3) acc = FMA(u[3][j], v[3][j], acc);
                    kr[j] = acc * invc;
                }
            } else {
                for (int j = 0; j < nr; j++) kr[j] = 0;
                for (int ch = 0; ch < g->C; ch++) {
                    const R *restrict u = xa + (size_t)ch * Pp + oa, *restrict v = xb + (size_t)ch * Pp + ob;
                    for (int j = 0; j < nr; j++) kr[j] = FMA(u[j], v[j], kr[j]);
                }
                for (int j = 0; j < nr; j++) kr[j] *= invc;
            }
            for (int j = n; j < nr; j++) kr[j] = 0;
        }
    }
    for (int i = i0; i < i1; i++) {
        const nk_op *op = &g->ops[i], *act = NULL;
        if (op->kind == OP_RES_BEGIN || op->kind == OP_RES_END) {
            /* res(f) = x + f(x): the plane x saved at the block's begin (two of the plane's
             * buffers per open block), added to f(x) at its end, both as true values unless they
             * carry the same factor */
            R *restrict xk = (R *)run->res + 2 * (size_t)op->slot * ps, *restrict xt = xk + ps;
            R *restrict k = Kin + base, *restrict t = Tin + base;
            if (op->kind == OP_RES_BEGIN) {
                for (int j = 0; j < nr; j++) { xk[j] = k[j]; xt[j] = t[j]; }
                res_sc[op->slot] = sc;
            } else if (res_sc[op->slot] == sc) {
                for (int j = 0; j < nr; j++) { k[j] += xk[j]; t[j] += xt[j]; }
            } else {
                const R fa = (R)(1 / sc), fx = (R)(1 / res_sc[op->slot]);
                for (int j = 0; j < nr; j++) { k[j] = k[j] * fa + xk[j] * fx; t[j] = t[j] * fa + xt[j] * fx; }
                sc = 1;
            }
            continue;
        }
        if (op->kind == OP_AFFINE && i + 1 < i1 && g->ops[i + 1].kind == OP_ACT) act = &g->ops[++i];
        else if (op->kind == OP_ACT) act = op;
        const int relu = act && act->act.kind == NK_ACT_RELU, gelu = act && act->act.kind == NK_ACT_GELU;
        const int erfa = act && act->act.kind == NK_ACT_ERF, mehler = act && nk_mehler_act(act->act.kind);
        const int signa = act && act->act.kind == NK_ACT_SIGN;
        /* (with a quadrature order given, quad=N, its Gauss-Hermite rule as asked: generic_row) */
        /* the act's self state in the engine's layout: [a | 1/sqrt a], Pp each */
        const size_t so = act ? act->pself : 0;
        const R *A = act ? sa + so + oa : NULL, *B = act ? sb + so + ob : NULL;
        R *ko = Kin + base, *to = Tin + base;
        if (op->kind == OP_AFFINE) {
            const int f0 = op->f[g->swap], f1 = op->f[!g->swap], pb0 = op->pb[g->swap], pb1 = op->pb[!g->swap];
            double scale = (sc == 1 ? 1 : 1 / relu_sc) / ((double)f0 * f1);
            const int fuse = relu && !self_out;
#if SIMD && defined(VALIGN_PREV_Z)
            if (fuse && C3_SHAPE(op, g->swap)) {
                /* this layer and the fused 3x3 ReLU layers after it, in one pipeline */
                FN(c3layer) ly[C3_MAX];
                const int ntkp = NTK_PARAM(op);
                int nl = 0;
                for (;;) {
                    ly[nl] = (FN(c3layer)){(R)(op->w2 * scale), (R)(op->alpha * scale), (R)op->b2, (R)op->beta, A, B,
                                             op->pb[g->swap]};
                    nl++;
                    /* the next layer, if it is one of these too (then the scale has its 1/2pi) */
                    if (nl == C3_MAX || i + 2 >= i1) break;
                    const nk_op *o2 = &g->ops[i + 1], *a2 = &g->ops[i + 2];
                    if (o2->kind != OP_AFFINE || a2->kind != OP_ACT || a2->act.kind != NK_ACT_RELU ||
                        !C3_SHAPE(o2, g->swap) || NTK_PARAM(o2) != ntkp)
                        break;
                    op = o2;
                    i += 2;
                    scale = 1 / (relu_sc * 9);
                    const size_t so2 = a2->pself;
                    A = sa + so2 + oa;
                    B = sb + so2 + ob;
                }
                FN(conv3_chain)(ly, nl, ntkp, Kin + base, Tin + base, Kout + base, Tout + base, Wp, n, nr, pm->bl,
                                pm->br, Pp);
                sc = relu_sc;
                if (nl & 1) {
                    R *x = Kin; Kin = Kout; Kout = x;
                    x = Tin; Tin = Tout; Tout = x;
                }
                continue;
            }
#endif
#if SIMD
            const int c3 = !fuse && C3_SHAPE(op, g->swap);
#else
            const int c3 = 0;
#endif
            if (c3) {
#if SIMD
                /* a 3x3 window not fused with a ReLU (another activation, none, the self pass): the
                 * window and the affine map in one pass */
                FN(conv3_affine)((R)(op->w2 * scale), (R)(op->alpha * scale), (R)op->b2, (R)op->beta, NTK_PARAM(op),
                                 Kin + base, Tin + base, Kout + base, Tout + base, Wp, op->pb[g->swap], nr,
#ifdef VALIGN_PREV_Z
                                 pm->bl, pm->br);   /* (the columns' masks: AVX-512's bits, AVX2's weights) */
#else
                                 wl, wr);
#endif
#endif
                ko = Kout + base;
                to = Tout + base;
                sc = 1;
            } else {
                /* row sums: the window along the rows, over the zero rows around the plane */
                {
                    const R *restrict k0 = Kin + base - (size_t)pb0 * Wp, *restrict t0 = Tin + base - (size_t)pb0 * Wp;
                    R *restrict vk = Vk, *restrict vt = Vt;
                    if (f0 == 3) {
                        for (int j = 0; j < nr; j++) vk[j] = k0[j] + k0[Wp + j] + k0[2 * Wp + j];
                        for (int j = 0; j < nr; j++) vt[j] = t0[j] + t0[Wp + j] + t0[2 * Wp + j];
                    } else {
                        for (int j = 0; j < nr; j++) { vk[j] = k0[j]; vt[j] = t0[j]; }
                        for (int d = 1; d < f0; d++)
                            for (int j = 0; j < nr; j++) { vk[j] += k0[(size_t)d * Wp + j]; vt[j] += t0[(size_t)d * Wp + j]; }
                    }
                    /* the neighbours read past the ends get weight 0: keep them finite */
                    for (int j = -NV; j < 0; j++) vk[j] = vt[j] = 0;
                    for (int j = nr; j < nr + NV; j++) vk[j] = vt[j] = 0;
                }
                /* column sums along the rows: of the neighbours in the same part of the same row */
                const R *mk = Vk, *mt = Vt;
                int hk3 = 0;
                if (f1 == 3 && pb1 == 1) {
                    hk3 = 1;
                } else if (f1 > 1) {
                    R *restrict hk = Mk, *restrict ht = Mt;
                    const R *restrict vk = Vk, *restrict vt = Vt;
                    const int *restrict seg = pm->seg;
                    for (int j = 0; j < nr; j++) { hk[j] = 0; ht[j] = 0; }
                    for (int e = 0; e < f1; e++)
                        for (int j = 0; j < nr; j++) {
                            const int on = seg[j] == seg[j + e - pb1];
                            hk[j] += on ? vk[j + e - pb1] : 0;
                            ht[j] += on ? vt[j + e - pb1] : 0;
                        }
                    mk = Mk;
                    mt = Mt;
                }
                ko = Kout + base;
                to = Tout + base;
                FN(affine_act)(op, scale, mk, mt, hk3, ko, to, nr, fuse, A, B, wl, wr, Pp);
                sc = fuse ? relu_sc : 1;
                if (fuse) act = NULL;
            }
        }
        if (act) {
            /* an activation not fused above, in place, on the true values (an activation right
             * after a ReLU gets them back first); the self pass (the plane (0, 0) of a
             * sample with itself, whose entries are the variances) records them first, with
             * their roots (in the layout of da = 0, which the ReLU then reads) */
            if (sc != 1) {
                const R inv = (R)(1 / sc);
                for (int j = 0; j < nr; j++) { ko[j] *= inv; to[j] *= inv; }
                sc = 1;
            }
            if (self_out) {
                R *aa = self_out + so;
                for (int q = 0; q < H; q++) {
                    for (int r = 0; r < W; r++) {
                        const R v = ko[q * Wp + r];
                        aa[q * Wp + r] = v;
                        aa[Pp + q * Wp + r] = gelu ? 1 / SQRT(1 + v) : erfa ? 1 / SQRT(1 + 2 * v) : v > 0 ? 1 / SQRT(v) : 0;
                    }
                }
                if (mehler && !g->quad)
                    for (int q = 0; q < H; q++)
                        for (int r0 = 0; r0 < W; r0 += MEHLER_CHUNK) {
                            /* the positions' Hermite coefficients (see mehler_planes), a chunk of
                             * a row at a time, so that each plane of the record is written
                             * MEHLER_CHUNK entries at once (one position at a time wrote one
                             * element into each of ~200 planes) */
                            const int nc = W - r0 < MEHLER_CHUNK ? W - r0 : MEHLER_CHUNK;
                            double rec[NK_MEHLER_REC * MEHLER_CHUNK];
                            for (int c = 0; c < nc; c++)
                                nk_mehler_record(&act->act, aa[(size_t)q * Wp + r0 + c], MEHLER_TOL, rec + c, MEHLER_CHUNK);
                            for (int p = 0; p < NK_MEHLER_REC; p++) {
                                R *dst = aa + (2 + (size_t)p) * Pp + (size_t)q * Wp + r0;
                                for (int c = 0; c < nc; c++) dst[c] = (R)rec[p * MEHLER_CHUNK + c];
                            }
                        }
                if (mehler && !g->quad)
                    /* every position's need becomes its row's largest (mehler_block reads one
                     * position per row) */
                    for (int d = 0; d < 2; d++)
                        for (int l = 0; l < NK_MEHLER_LEVELS; l++)
                            for (int q = 0; q < H; q++) {
                                R *nd = aa + (MEHLER_NEED(d) + l) * Pp + (size_t)q * Wp, mx = 0;
                                for (int r = 0; r < W; r++) mx = nd[r] > mx ? nd[r] : mx;
                                for (int r = 0; r < W; r++) nd[r] = mx;
                            }
            }
            if (relu) {
                FN(relu_inplace)(ko, to, nr, A, B, Pp);
                sc = relu_sc;
            } else if (gelu) {
                FN(gelu_row)(ko, to, nr, A, B, Pp);
            } else if (erfa) {
                FN(erf_row)(ko, to, nr, A, B, Pp);
            } else if (signa) {
                FN(sign_row)(ko, to, nr, A, B, Pp);
            } else if (nk_act_exp_dual(act->act.kind)) {
                FN(exp_row)(act->act.kind, (R)act->act.a, ko, to, nr, A, B);
            } else if (mehler && !g->quad) {
                if (run->defer && i + 1 == i1) {
                    /* the last op of the segment: plane_pairs takes the group's series together */
                    run->mop = act;
                    run->mk = ko;
                    run->mt = to;
                    run->ma = A;
                    run->mb = B;
                    run->mn = n;
                } else {
                    R *kp[1] = {ko}, *tp[1] = {to};
                    const R *ap[1] = {A}, *bp[1] = {B};
                    FN(mehler_planes)(&act->act, 1, kp, tp, &n, Wp, ap, bp, Pp, io->rot, so);
                }
            } else {
                FN(generic_row)(&act->act, g->quad, ko, to, n, A, B);
            }
        }
        for (int j = n; j < nr; j++) ko[j] = to[j] = 0;
        if (op->kind == OP_AFFINE) {
            R *x = Kin; Kin = Kout; Kout = x;
            x = Tin; Tin = Tout; Tout = x;
        }
    }
    if (i1 < g->e || run->mop) {
        /* the next segment starts from here (after plane_pairs' Mehler step, if one is left) */
        run->flip = Kin != own;
        run->sc = sc;
        return;
    }
    const R *kr = Kin + base, *tr = Tin + base;
    const double inv = 1 / sc;
    if (g->down) {
        FN(step_down)(g, kr, tr, (R)(g->mscale * inv), di, da, io);
        return;
    }
    if (sums) {
        /* the GAP sum, accumulated in double, NV lanes wide (the tail is 0): lanes 0..7 and 8..15
         * of a float32 step in two accumulators of one register each (a 16-double vector type
         * lived on the stack, and its sums went through memory: 2.6% of a float32 pair) */
        typedef R rvec __attribute__((vector_size(8 * sizeof(R))));
        typedef double dvec __attribute__((vector_size(8 * sizeof(double))));
        dvec sk0 = {0}, st0 = {0}, sk1 = {0}, st1 = {0};
        for (int j = 0; j < nr; j += NV) {
            rvec vk, vt;
            memcpy(&vk, kr + j, sizeof vk);
            memcpy(&vt, tr + j, sizeof vt);
            sk0 += __builtin_convertvector(vk, dvec);
            st0 += __builtin_convertvector(vt, dvec);
            if (NV == 16) {
                memcpy(&vk, kr + j + 8, sizeof vk);
                memcpy(&vt, tr + j + 8, sizeof vt);
                sk1 += __builtin_convertvector(vk, dvec);
                st1 += __builtin_convertvector(vt, dvec);
            }
        }
        double s0 = 0, s1 = 0;
        for (int l = 0; l < 8; l++) { s0 += sk0[l]; s1 += st0[l]; }
        for (int l = 0; l < 8 && NV == 16; l++) { s0 += sk1[l]; s1 += st1[l]; }
        sums[0] += s0 * inv;
        sums[1] += s1 * inv;
    }
    if (outK && g->diag) {
        /* the plane (0, 0): row q's columns 0..W-1 are the diagonal entries of row q */
        for (int q = 0; q < H; q++)
            for (int r = 0; r < W; r++) {
                outK[(size_t)q * W + r] = kr[q * Wp + r] * inv;
                if (outT) outT[(size_t)q * W + r] = tr[q * Wp + r] * inv;
            }
    } else if (outK) {
        for (int y = 0; y < m0; y++) {
            const int q = q_lo + y, q2 = q - di;
            for (int c = 0; c < W; c++) {
                int r, r2;
                nk_plane_column(g, da, c, &r, &r2);
                const size_t ix = g->diag ? (size_t)q * W + r : nk_full_index(q, r, q2, r2, H, W);
                outK[ix] = kr[y * Wp + c] * inv;
                if (outT) outT[ix] = tr[y * Wp + c] * inv;
            }
        }
    }
}

/* The ReLU on an nr x nc tile of independent pairs (the MLP path): row r's sample has variance
 * a[r * astep] (roots at +plen, +2 plen), column c's b[c], sb[c], rb[c] (contiguous).  T may be
 * NULL.  Whole vectors only: a row's last partial vector goes through a padded copy, so that
 * every entry is computed by the same instructions (a sample paired with itself then gets the
 * same value in its self pass, a 1 x 1 tile, as in a tile). */
static TGT __attribute__((unused)) void FN(relu_grid)(R *K, R *T, int nr, int nc, const R *a, size_t astep, size_t plen, const R *b,
                              const R *sb, const R *rb, const double *aff)
{
    (void)sb;   /* sqrt(b) is not needed: see relu_entry */
#if SIMD
    /* the dense layer before, if aff (w2, b2, alpha, beta): the same operations, in the same
     * order (no fused multiply-add), as nk_affine_update */
    const VT aw2 = VSET1(aff ? (R)aff[0] : 0), ab2 = VSET1(aff ? (R)aff[1] : 0);
    const VT aal = VSET1(aff ? (R)aff[2] : 0), abe = VSET1(aff ? (R)aff[3] : 0);
#define GRID_AFF(k, t)                                                                               \
    do {                                                                                             \
        (t) = VADD(VADD(VMUL(aal, (k)), VMUL(aw2, (t))), abe);                                       \
        (k) = VADD(VMUL(aw2, (k)), ab2);                                                             \
    } while (0)
    for (int r = 0; r < nr; r++) {
        const R *ar = a + (size_t)r * astep;
        const VT va = VSET1(ar[0]), vra = VSET1(ar[2 * plen]);
        R *kr = K + (size_t)r * nc, *tr = T ? T + (size_t)r * nc : NULL;
        /* the whole vectors, software-pipelined (SP3_RUN3), with relu_vv's operations */
        const int nv = nc / VLEN * VLEN;
        int j = nv;
        if (nv) {
            VT ak, ad, at, bt = VSET1(0);
            FN(relu_mid) bm = {0};
            const VT f = VSET1((R)(1.0 / (2 * NK_PI)));
#define GRID_A(jj)                                                                                   \
    do {                                                                                             \
        VT k_ = VLOADU(kr + (jj)), t_ = tr ? VLOADU(tr + (jj)) : VSET1(0);                           \
        if (aff) GRID_AFF(k_, t_);                                                                   \
        ak = k_;                                                                                     \
        at = t_;                                                                                     \
        ad = FN(relu_d)(k_, va, VLOADU(b + (jj)));                                                   \
    } while (0)
#define GRID_B(jj)                                                                                   \
    do {                                                                                             \
        bm = FN(relu_sect)(ak, ad, VMUL(vra, VLOADU(rb + (jj))));                                    \
        bt = at;                                                                                     \
    } while (0)
#define GRID_C(mm, tt, jj)                                                                           \
    do {                                                                                             \
        const VT pmt_ = FN(relu_pmt)(&(mm));                                                         \
        VSTOREU(kr + (jj), VMUL(VFMA(pmt_, (mm).c, (mm).rd), f));                                    \
        if (tr) VSTOREU(tr + (jj), VMUL(VMUL(tt, f), pmt_));                                         \
    } while (0)
            SP3_RUN3(GRID_A, GRID_B, GRID_C, nv);
#undef GRID_A
#undef GRID_B
#undef GRID_C
        }
        if (j < nc) {
            R kb[VLEN], tb[VLEN], bb[VLEN], rbb[VLEN];
            for (int l = 0; l < VLEN; l++) {
                const int in = j + l < nc;
                kb[l] = in ? kr[j + l] : 0;
                tb[l] = in && tr ? tr[j + l] : 0;
                bb[l] = in ? b[j + l] : 1;
                rbb[l] = in ? rb[j + l] : 1;
            }
            VT k = VLOADU(kb), t = VLOADU(tb);
            if (aff) GRID_AFF(k, t);
            FN(relu_vv)(&k, &t, va, vra, VLOADU(bb), VLOADU(rbb));
            VSTOREU(kb, k);
            VSTOREU(tb, t);
            for (int l = 0; j + l < nc; l++) {
                kr[j + l] = kb[l];
                if (tr) tr[j + l] = tb[l];
            }
        }
    }
#undef GRID_AFF
#else
    for (int r = 0; r < nr; r++) {
        const R *ar = a + (size_t)r * astep;
        R *kr = K + (size_t)r * nc, *tr = T ? T + (size_t)r * nc : NULL;
        for (int j = 0; j < nc; j++) {
            R t = tr ? tr[j] : 0;
            if (aff) {
                const R m = kr[j];
                t = (R)aff[2] * m + (R)aff[0] * t + (R)aff[3];
                kr[j] = (R)aff[0] * m + (R)aff[1];
            }
            FN(relu_entry)(kr + j, &t, ar[0], ar[2 * plen], b[j], rb[j], (R)(1.0 / (2 * NK_PI)));
            if (tr) tr[j] = t;
        }
    }
#endif
}

/* The ReLU on n independent entries (layer-by-layer path, diagonal states): entry i has the
 * variances A[i], B[i] with roots at +n and +2n.  T may be NULL.  Tails as in relu_grid. */
static TGT __attribute__((unused)) void FN(relu_points)(R *K, R *T, size_t n, const R *A, const R *B)
{
#if SIMD
    size_t j = 0;
    for (; j + VLEN <= n; j += VLEN) {
        VT k = VLOADU(K + j), t = T ? VLOADU(T + j) : VSET1(0);
        FN(relu_vv)(&k, &t, VLOADU(A + j), VLOADU(A + 2 * n + j), VLOADU(B + j), VLOADU(B + 2 * n + j));
        VSTOREU(K + j, k);
        if (T) VSTOREU(T + j, t);
    }
    if (j < n) {
        R kb[VLEN], tb[VLEN], ab[3][VLEN], bb[3][VLEN];
        for (size_t l = 0; l < VLEN; l++) {
            const int in = j + l < n;
            kb[l] = in ? K[j + l] : 0;
            tb[l] = in && T ? T[j + l] : 0;
            for (int m = 0; m < 3; m++) {
                ab[m][l] = in ? A[m * n + j + l] : 1;
                bb[m][l] = in ? B[m * n + j + l] : 1;
            }
        }
        VT k = VLOADU(kb), t = VLOADU(tb);
        FN(relu_vv)(&k, &t, VLOADU(ab[0]), VLOADU(ab[2]), VLOADU(bb[0]), VLOADU(bb[2]));
        VSTOREU(kb, k);
        VSTOREU(tb, t);
        for (size_t l = 0; j + l < n; l++) {
            K[j + l] = kb[l];
            if (T) T[j + l] = tb[l];
        }
    }
#else
    for (size_t j = 0; j < n; j++) {
        R t = T ? T[j] : 0;
        FN(relu_entry)(K + j, &t, A[j], A[2 * n + j], B[j], B[2 * n + j], (R)(1.0 / (2 * NK_PI)));
        if (T) T[j] = t;
    }
#endif
}

/* this instantiation's parameters (see plane_inst.h and plane_simd.h) */
#undef TGT
#undef FN
#undef SIMD
#undef VW
#undef VT
#undef MT
#undef VLEN
#undef VI_
#undef VI__
#undef VI
#undef VI4_
#undef VI4__
#undef VSET1
#undef VLOADU
#undef VSTOREU
#undef VADD
#undef VSUB
#undef VMUL
#undef VMUL_RZ
#undef VFNMA
#undef VFMA
#undef VFMS
#undef VSQRT
#undef VMAX
#undef VABS
#undef VCMPLE
#undef VCMPGT
#undef VTERN
#undef VFLIPNN
#undef VMFLIPNN_S
#undef VMSUB
#undef VALIGNRZ
#undef VALIGN_PREV_Z
#undef VALIGN_NEXT_Z
#undef VLOADMASK
#undef VHMAX
#undef VKXOR
#undef VBLEND
#undef VCAST_I
#undef VCAST_R
#undef SP3_STAGE_B
#undef SP3_STAGE_C
#undef SP3_RUN
#undef SP3_RUN3
#undef SP3_FILL
#undef SP3_STEADY
#undef SP3_STEP
#undef SP3_DRAIN
#undef MEHLER_TOL
#undef EXP_N
#undef SINHC_N
#undef COSH_N
#undef MEHLER_NEED
#undef MEHLER_TAU
#undef MEHLER_G
#undef MEHLER_NB
#undef MEHLER_NV
#undef MEHLER_CHUNK
