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

/* ReLU at one entry with its own pair of variances (a, sqrt a, 1/sqrt a of each sample):
 *   K' = sqrt(ab)/2pi (sin theta + (pi - theta) cos theta),  T' = T (pi - theta)/2pi,
 * with cos theta = c ra rb and sin theta = sqrt(ab - c^2) ra rb: no division, one square root.
 * theta comes from one arcsine on |x| <= sin(pi/8), which a degree-10 polynomial (float64; 4 in
 * float32) covers to a few ulp: the half circle is cut into sectors of pi/4, and x is the
 * cosine (theta near pi/2), the sine (theta near 0 or pi) or sin(theta' - pi/4) =
 * (sin - |cos|)/sqrt 2 in between (theta' = theta or pi - theta).  pi - theta is formed
 * directly, so that it keeps its relative accuracy as the correlation approaches -1.  With FMA,
 * ab - c^2 is formed with the exact rounding error of c^2: it keeps its relative accuracy as the
 * correlation approaches 1, and is exactly 0 for a sample paired with itself.  Clamps are
 * written x < y ? x : y, the form that compiles to one min / max. */
static inline __attribute__((always_inline)) void FN(relu_entry)(R *k, R *t, R a, R sa, R ra, R b, R sb, R rb, R tf)
{
    const R c = *k, rab = ra * rb;
    R cs = c * rab;
    cs = cs < 1 ? cs : 1;
    cs = cs > -1 ? cs : -1;
#if FUSED
    const R cc = c * c;
    R d = FMA(a, b, -cc) - FMA(c, c, -cc);
#else
    R d = a * b - c * c;
#endif
    d = d > 0 ? d : 0;
    /* a zero variance has rab = 0: then cs = sn = 0, the cosine sector gives pi - theta = pi/2
     * (independent units, as the reference) and K' = 0 */
    R sn = SQRT(d) * rab;
    sn = sn < 1 ? sn : 1;
    const R acs = __builtin_fabs(cs);
    const int near_c = acs <= (R)0.38268343236508978, near_s = sn <= (R)0.38268343236508978;
    R x = near_s ? sn : (sn - acs) * (R)0.70710678118654752;
    x = near_c ? cs : x;
    const R as = x * ASIN_G(x * x);
    const R base = near_s ? (R)NK_PI_2 : (R)(NK_PI / 4);
    const R pmt = (R)NK_PI_2 + (near_c ? as : __builtin_copysign(base - as, cs));
    *k = (sa * sb) * (R)(1.0 / (2 * NK_PI)) * FMA(pmt, cs, sn);
    *t *= pmt * tf;   /* tf = 1/2pi; 0 in the separators between the parts of a plane */
}

#if SIMD
/* The same ReLU on one vector of VLEN entries, written with the instruction set's intrinsics
 * (the selects must stay selects: a compiler left to itself evaluates the polynomial once per
 * branch).  The scalar relu_entry above is its reference. */
/* The ReLU in two stages: up to the polynomial's argument, and from there (so that a loop can
 * put two vectors' stages side by side). */
typedef struct {
    VT cs, sn, x, rab;
    MT near_c, near_s;
} FN(relu_mid);

static inline TGT __attribute__((always_inline)) FN(relu_mid) FN(relu_s1)(VT c, VT va, VT vra, VT vb, VT vrb)
{
    FN(relu_mid) m;
    const VT rab = m.rab = VMUL(vra, vrb);
    const VT one = VSET1(1), s8 = VSET1((R)0.38268343236508978);
    m.cs = VMAX(VMIN(VMUL(c, rab), one), VSET1(-1));
    const VT cc = VMUL(c, c);
    VT d = VSUB(VFMA(va, vb, VNEG(cc)), VFMA(c, c, VNEG(cc)));
    d = VMAX(d, VSET1(0));
    m.sn = VMIN(VMUL(VSQRT(d), rab), one);
    const VT acs = VABS(m.cs);
    m.near_c = VCMPLE(acs, s8);
    m.near_s = VCMPLE(m.sn, s8);
    const VT x = VBLEND(m.near_s, m.sn, VMUL(VSUB(m.sn, acs), VSET1((R)0.70710678118654752)));
    m.x = VBLEND(m.near_c, m.cs, x);
    return m;
}

static inline TGT __attribute__((always_inline)) void FN(relu_s2)(const FN(relu_mid) *m, VT *k, VT *t, VT s2, VT vtf)
{
    /* the polynomial by Estrin's scheme (dependency depth ~log2 of the degree: the lanes of a
     * long loop are bound by this chain's latency, not by the FMA units) */
    const VT x = m->x, cs = m->cs, sn = m->sn, x2 = VMUL(x, x), x4 = VMUL(x2, x2);
    VT p;
#if ASIN_N == 11
    const VT x8 = VMUL(x4, x4);
    const VT e0 = VFMA(VSET1(ASIN_C[9]), x2, VSET1(ASIN_C[10])), e1 = VFMA(VSET1(ASIN_C[7]), x2, VSET1(ASIN_C[8]));
    const VT e2 = VFMA(VSET1(ASIN_C[5]), x2, VSET1(ASIN_C[6])), e3 = VFMA(VSET1(ASIN_C[3]), x2, VSET1(ASIN_C[4]));
    const VT e4 = VFMA(VSET1(ASIN_C[1]), x2, VSET1(ASIN_C[2]));
    const VT f0 = VFMA(e1, x4, e0), f1 = VFMA(e3, x4, e2), f2 = VFMA(VSET1(ASIN_C[0]), x4, e4);
    p = VFMA(VFMA(f2, x8, f1), x8, f0);
#else
    const VT e0 = VFMA(VSET1(ASIN_C[3]), x2, VSET1(ASIN_C[4])), e1 = VFMA(VSET1(ASIN_C[1]), x2, VSET1(ASIN_C[2]));
    p = VFMA(VFMA(VSET1(ASIN_C[0]), x4, e1), x4, e0);
#endif
    /* pi - theta = pi/2 + q; the terms that do not wait for the polynomial are formed beside it,
     * so that the chain after it is short: q = as (cosine sector) or +-(base - as) */
    const VT base = VBLEND(m->near_s, VSET1((R)NK_PI_2), VSET1((R)(NK_PI / 4)));
    const VT q = VBLEND(m->near_c, VMUL(x, p), VCOPYSIGN(VFNMA(x, p, base), cs));
    const VT ks = VMUL(s2, VSET1((R)(1.0 / (2 * NK_PI)))), k0 = VFMA(VSET1((R)NK_PI_2), cs, sn);
    const VT tt = VMUL(*t, vtf);
    *k = VMUL(ks, VFMA(q, cs, k0));                       /* sqrt(ab)/2pi (sn + (pi - theta) cs) */
    *t = VFMA(q, tt, VMUL(VSET1((R)NK_PI_2), tt));        /* T tf (pi - theta) */
}

static inline TGT __attribute__((always_inline)) void FN(relu_vv)(VT *k, VT *t, VT va, VT vsa, VT vra, VT vb, VT vsb,
                                                                  VT vrb, VT vtf)
{
    const FN(relu_mid) m = FN(relu_s1)(*k, va, vra, vb, vrb);
    FN(relu_s2)(&m, k, t, VMUL(vsa, vsb), vtf);
}

/* The ReLU with the engine's self states: variances at A and B, 1/sqrt at +P (sqrt(ab) is
 * formed as ab / sqrt(a) / sqrt(b): one multiply instead of two more streams to read). */
static inline TGT __attribute__((always_inline)) void FN(relu_vec)(VT *k, VT *t, const R *A, const R *B, const R *tf, int P)
{
    const VT va = VLOADU(A), vb = VLOADU(B);
    const FN(relu_mid) m = FN(relu_s1)(*k, va, VLOADU(A + P), vb, VLOADU(B + P));
    FN(relu_s2)(&m, k, t, VMUL(VMUL(va, vb), m.rab), VLOADU(tf));
}
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

/* The affine map of the window sums mk, mt (scale: 1 / window size) and, if relu, the ReLU,
 * on n entries (a multiple of NV), written to ko, to.  hk3 != 0: mk, mt are row sums and the
 * 3-wide column sums are taken here (mk[j-1] + mk[j] + mk[j+1]).  The variances of entry j are
 * at A + j and B + j, their roots at +P and +2P; tf[j] as in relu_entry. */
static inline TGT __attribute__((always_inline)) void FN(affine_act)(const nk_op *op, double scale, const R *restrict mk,
                                                                     const R *restrict mt, int hk3, R *restrict ko,
                                                                     R *restrict to, int n, int relu,
                                                                     const R *restrict A, const R *restrict B,
                                                                     const R *restrict tf, int P)
{
    const R cw = (R)(op->w2 * scale), ca = (R)(op->alpha * scale), b2 = (R)op->b2, beta = (R)op->beta;
#if SIMD
    if (relu) {
        const VT vcw = VSET1(cw), vca = VSET1(ca), vb2 = VSET1(b2), vbeta = VSET1(beta);
#pragma GCC unroll 2
        for (int j = 0; j < n; j += VLEN) {
            VT sk, st;
            if (hk3) {
                sk = VADD(VADD(VLOADU(mk + j - 1), VLOADU(mk + j)), VLOADU(mk + j + 1));
                st = VADD(VADD(VLOADU(mt + j - 1), VLOADU(mt + j)), VLOADU(mt + j + 1));
            } else {
                sk = VLOADU(mk + j);
                st = VLOADU(mt + j);
            }
            VT k = VFMA(vcw, sk, vb2), t = VFMA(vca, sk, VFMA(vcw, st, vbeta));
            FN(relu_vec)(&k, &t, A + j, B + j, tf + j, P);
            VSTOREU(ko + j, k);
            VSTOREU(to + j, t);
        }
        return;
    }
#endif
    for (int j = 0; j < n; j++) {
        const R sk = hk3 ? mk[j - 1] + mk[j] + mk[j + 1] : mk[j];
        const R st = hk3 ? mt[j - 1] + mt[j] + mt[j + 1] : mt[j];
        R k = FMA(cw, sk, b2), t = FMA(ca, sk, FMA(cw, st, beta));
        if (relu) FN(relu_entry)(&k, &t, A[j], A[j] * A[P + j], A[P + j], B[j], B[j] * B[P + j], B[P + j], tf[j]);
        ko[j] = k;
        to[j] = t;
    }
}

#if SIMD && defined(VALIGN_PREV)
/* A 3x3 window (one zero row and column of padding each side) fused with its affine map and
 * ReLU: the row sums of a vector are formed from the three rows k0, k0 + Wp, k0 + 2 Wp as the
 * loop goes, and their column neighbours come from the previous and next vectors by lane
 * shifts, so the row sums never go through memory.  Entries before 0 are a zero separator. */
static inline TGT __attribute__((always_inline)) void FN(conv3_relu)(const nk_op *op, const R *restrict k0,
                                                                     const R *restrict t0, int Wp, R *restrict ko,
                                                                     R *restrict to, int n, const R *restrict A,
                                                                     const R *restrict B, const R *restrict tf, int P)
{
    const double scale = 1.0 / 9;
    const VT vcw = VSET1((R)(op->w2 * scale)), vca = VSET1((R)(op->alpha * scale));
    const VT vb2 = VSET1((R)op->b2), vbeta = VSET1((R)op->beta);
    VT pk = VSET1(0), pt = VSET1(0);
    VT ck = VADD(VADD(VLOADU(k0), VLOADU(k0 + Wp)), VLOADU(k0 + 2 * Wp));
    VT ct = VADD(VADD(VLOADU(t0), VLOADU(t0 + Wp)), VLOADU(t0 + 2 * Wp));
    int j = 0;
#if ASIN_N == 5
    /* float32: two vectors per step, their two stages side by side (two independent chains in
     * flight; the float64 version runs out of registers doing this) */
    for (; j + 2 * VLEN <= n; j += 2 * VLEN) {
        const int m = j + VLEN, m2 = j + 2 * VLEN;
        const VT dk = VADD(VADD(VLOADU(k0 + m), VLOADU(k0 + Wp + m)), VLOADU(k0 + 2 * Wp + m));
        const VT dt = VADD(VADD(VLOADU(t0 + m), VLOADU(t0 + Wp + m)), VLOADU(t0 + 2 * Wp + m));
        const VT nk = VADD(VADD(VLOADU(k0 + m2), VLOADU(k0 + Wp + m2)), VLOADU(k0 + 2 * Wp + m2));
        const VT nt = VADD(VADD(VLOADU(t0 + m2), VLOADU(t0 + Wp + m2)), VLOADU(t0 + 2 * Wp + m2));
        const VT sk1 = VADD(VADD(VALIGN_PREV(ck, pk), ck), VALIGN_NEXT(dk, ck));
        const VT st1 = VADD(VADD(VALIGN_PREV(ct, pt), ct), VALIGN_NEXT(dt, ct));
        const VT sk2 = VADD(VADD(VALIGN_PREV(dk, ck), dk), VALIGN_NEXT(nk, dk));
        const VT st2 = VADD(VADD(VALIGN_PREV(dt, ct), dt), VALIGN_NEXT(nt, dt));
        VT k1 = VFMA(vcw, sk1, vb2), t1 = VFMA(vca, sk1, VFMA(vcw, st1, vbeta));
        VT k2 = VFMA(vcw, sk2, vb2), t2 = VFMA(vca, sk2, VFMA(vcw, st2, vbeta));
        const VT va1 = VLOADU(A + j), vb1 = VLOADU(B + j), va2 = VLOADU(A + m), vb2_ = VLOADU(B + m);
        const FN(relu_mid) a1 = FN(relu_s1)(k1, va1, VLOADU(A + P + j), vb1, VLOADU(B + P + j));
        const FN(relu_mid) a2 = FN(relu_s1)(k2, va2, VLOADU(A + P + m), vb2_, VLOADU(B + P + m));
        FN(relu_s2)(&a1, &k1, &t1, VMUL(VMUL(va1, vb1), a1.rab), VLOADU(tf + j));
        FN(relu_s2)(&a2, &k2, &t2, VMUL(VMUL(va2, vb2_), a2.rab), VLOADU(tf + m));
        VSTOREU(ko + j, k1);
        VSTOREU(to + j, t1);
        VSTOREU(ko + m, k2);
        VSTOREU(to + m, t2);
        pk = dk; ck = nk;
        pt = dt; ct = nt;
    }
#endif
    for (; j < n; j += VLEN) {
        const int m = j + VLEN;
        const VT nk = VADD(VADD(VLOADU(k0 + m), VLOADU(k0 + Wp + m)), VLOADU(k0 + 2 * Wp + m));
        const VT nt = VADD(VADD(VLOADU(t0 + m), VLOADU(t0 + Wp + m)), VLOADU(t0 + 2 * Wp + m));
        const VT sk = VADD(VADD(VALIGN_PREV(ck, pk), ck), VALIGN_NEXT(nk, ck));
        const VT st = VADD(VADD(VALIGN_PREV(ct, pt), ct), VALIGN_NEXT(nt, ct));
        VT k = VFMA(vcw, sk, vb2), t = VFMA(vca, sk, VFMA(vcw, st, vbeta));
        FN(relu_vec)(&k, &t, A + j, B + j, tf + j, P);
        VSTOREU(ko + j, k);
        VSTOREU(to + j, t);
        pk = ck; ck = nk;
        pt = ct; ct = nt;
    }
}
#endif

/* The ReLU alone, in place, on n entries (n as above). */
static inline TGT __attribute__((always_inline)) void FN(relu_inplace)(R *restrict k, R *restrict t, int n,
                                                                       const R *restrict A, const R *restrict B,
                                                                       const R *restrict tf, int P)
{
#if SIMD
    for (int j = 0; j < n; j += VLEN) {
        VT kv = VLOADU(k + j), tv = VLOADU(t + j);
        FN(relu_vec)(&kv, &tv, A + j, B + j, tf + j, P);
        VSTOREU(k + j, kv);
        VSTOREU(t + j, tv);
    }
#else
    for (int j = 0; j < n; j++)
        FN(relu_entry)(k + j, t + j, A[j], A[j] * A[P + j], A[P + j], B[j], B[j] * B[P + j], B[P + j], tf[j]);
#endif
}

/* One combined plane (di, da), 0 <= da < W: the displacements (di, da) and (di, da - W) side by
 * side, so that the plane's m0 rows hold W entries each and the plane is one flat array.  A row
 * is laid out as [columns da..W-1 | sw zeros | columns 0..da-1 | sw zeros] (Wp = W + 2 sw
 * entries; the zeros separate the two parts and the rows, so window sums along a row need no
 * bounds), and the samples' data and self states were laid out to match (nk_plane_pair): the
 * first sample's row rotated by da, the second's with the separator inserted.  Every loop below
 * is then a flat vector loop over the plane.  The separators stay zero: their variances are 0,
 * so the ReLU maps them to 0 (tf = 0 there for T); other ops clear them. */
static TGT void FN(plane)(const nk_pgeom *g, const R *xa, const R *xb, const R *sa, const R *sb, const R *tf,
                          const R *G, R *self_out, R *buf, int di, int da, double *sums, double *outK, double *outT)
{
    const int H = g->H, W = g->W, Wp = g->Wp, Pp = H * Wp;
    const int q_lo = di > 0 ? di : 0, m0 = H - (di > 0 ? di : -di);
    const int n = m0 * Wp, nr = (n + NV - 1) / NV * NV;
    const size_t plane = (size_t)g->rows * Wp + 2 * NV, base = (size_t)g->HB0 * Wp;
    R *Kin = buf, *Tin = Kin + plane, *Kout = Tin + plane, *Tout = Kout + plane;
    R *Vk = Tout + plane + NV, *Vt = Vk + plane, *Mk = Vt + plane, *Mt = Mk + plane;
    /* first-sample and second-sample offsets of the plane's entry 0 */
    const size_t oa = (size_t)q_lo * Wp, ob = (size_t)(q_lo - di) * Wp;
    /* zero padding: the rows above and below the plane, and the tail of the last vector */
    for (int b = 0; b < 4; b++) {
        R *X = buf + b * plane;
        memset(X, 0, sizeof(R) * base);
        memset(X + base + n, 0, sizeof(R) * ((size_t)g->HA0 * Wp + NV));
    }
    /* K0 = <x_p, x'_p'> / C, T0 = 0 (0 in the separators, where the data are 0) */
    {
        R *restrict kr = Kin + base, *restrict tr = Tin + base;
        const R invc = (R)(1.0 / g->C);
        for (int j = 0; j < nr; j++) { kr[j] = 0; tr[j] = 0; }
        if (G) {
            /* many channels: from the pair's P x P Gram <x_p, x'_p'>/C (one GEMM per pair, in
             * the da = 0 layout), entry by entry */
            for (int y = 0; y < m0; y++) {
                const int q = q_lo + y, q2 = q - di;
                for (int c = 0; c < Wp; c++) {
                    int r, r2;
                    if (nk_plane_column(g, da, c, &r, &r2))
                        kr[y * Wp + c] = G[((size_t)q * Wp + r) * Pp + (size_t)q2 * Wp + r2];
                }
            }
        } else {
            for (int ch = 0; ch < g->C; ch++) {
                const R *restrict u = xa + (size_t)ch * Pp + oa, *restrict v = xb + (size_t)ch * Pp + ob;
                for (int j = 0; j < nr; j++) kr[j] = FMA(u[j], v[j], kr[j]);
            }
            for (int j = 0; j < nr; j++) kr[j] *= invc;
        }
        for (int j = n; j < nr; j++) kr[j] = 0;
    }
    for (int i = g->s; i < g->e; i++) {
        const nk_op *op = &g->ops[i], *act = NULL;
        if (op->kind == OP_AFFINE && i + 1 < g->e && g->ops[i + 1].kind == OP_ACT) act = &g->ops[++i];
        else if (op->kind == OP_ACT) act = op;
        const int relu = act && act->act.kind == NK_ACT_RELU;
        /* the act's self state in the engine's layout: [a | 1/sqrt a], Pp each */
        const size_t so = act ? act->self_off / (3 * (size_t)H * W) * 2 * Pp : 0;
        const R *A = act ? sa + so + oa : NULL, *B = act ? sb + so + ob : NULL;
        R *ko = Kin + base, *to = Tin + base;
        int clear = 0;   /* the separators need clearing after this op */
        if (op->kind == OP_AFFINE) {
            const int f0 = op->f[g->swap], f1 = op->f[!g->swap], pb0 = op->pb[g->swap], pb1 = op->pb[!g->swap];
            const double scale = 1.0 / ((double)f0 * f1);
            const int fuse = relu && !self_out;
#if SIMD && defined(VALIGN_PREV)
            if (fuse && f0 == 3 && f1 == 3 && pb1 == 1) {
                ko = Kout + base;
                to = Tout + base;
                FN(conv3_relu)(op, Kin + base - (size_t)pb0 * Wp, Tin + base - (size_t)pb0 * Wp, Wp, ko, to, nr, A, B, tf, Pp);
                for (int j = n; j < nr; j++) ko[j] = to[j] = 0;
                R *x = Kin; Kin = Kout; Kout = x;
                x = Tin; Tin = Tout; Tout = x;
                continue;
            }
#endif
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
            }
            /* column sums along the rows: over the separators, which are zero */
            const R *mk = Vk, *mt = Vt;
            int hk3 = 0;
            if (f1 == 3 && pb1 == 1) {
                hk3 = 1;
            } else if (f1 > 1) {
                R *restrict hk = Mk, *restrict ht = Mt;
                const R *restrict vk = Vk, *restrict vt = Vt;
                for (int j = 0; j < nr; j++) { hk[j] = vk[j - pb1]; ht[j] = vt[j - pb1]; }
                for (int e = 1; e < f1; e++)
                    for (int j = 0; j < nr; j++) { hk[j] += vk[j + e - pb1]; ht[j] += vt[j + e - pb1]; }
                mk = Mk;
                mt = Mt;
            }
            ko = Kout + base;
            to = Tout + base;
            FN(affine_act)(op, scale, mk, mt, hk3, ko, to, nr, fuse, A, B, tf, Pp);
            if (fuse) act = NULL;
            else clear = 1;
        }
        if (act) {
            /* an activation not fused above, in place; the self pass (the plane (0, 0) of a
             * sample with itself, whose entries are the variances) records them first, with
             * their roots (in the arranged layout of da = 0, which the ReLU then reads) */
            if (self_out) {
                R *aa = self_out + so;
                for (int q = 0; q < H; q++) {
                    for (int r = 0; r < W; r++) {
                        const R v = ko[q * Wp + r];
                        aa[q * Wp + r] = v;
                        aa[Pp + q * Wp + r] = v > 0 ? 1 / SQRT(v) : 0;
                    }
                    for (int r = W; r < Wp; r++) aa[q * Wp + r] = aa[Pp + q * Wp + r] = 0;
                }
            }
            if (relu) {
                FN(relu_inplace)(ko, to, nr, A, B, tf, Pp);
                clear = 0;
            } else {
                FN(generic_row)(&act->act, g->quad, ko, to, n, A, B);
                clear = 1;
            }
        }
        if (clear)
            for (int y = 0; y < m0; y++)
                for (int c = 0; c < Wp; c++)
                    if (tf[c] == 0) ko[y * Wp + c] = to[y * Wp + c] = 0;
        for (int j = n; j < nr; j++) ko[j] = to[j] = 0;
        if (op->kind == OP_AFFINE) {
            R *x = Kin; Kin = Kout; Kout = x;
            x = Tin; Tin = Tout; Tout = x;
        }
    }
    const R *kr = Kin + base, *tr = Tin + base;
    if (sums) {
        /* the GAP sum, accumulated in double, NV lanes wide (separators and the tail are 0) */
        double sk[NV], st[NV];
        for (int l = 0; l < NV; l++) sk[l] = st[l] = 0;
        for (int j = 0; j < nr; j += NV)
            for (int l = 0; l < NV; l++) { sk[l] += (double)kr[j + l]; st[l] += (double)tr[j + l]; }
        for (int l = 0; l < NV; l++) { sums[0] += sk[l]; sums[1] += st[l]; }
    }
    if (outK) {
        for (int y = 0; y < m0; y++) {
            const int q = q_lo + y, q2 = q - di;
            for (int c = 0; c < Wp; c++) {
                int r, r2;
                if (!nk_plane_column(g, da, c, &r, &r2)) continue;
                const size_t ix = g->diag ? (size_t)q * W + r : nk_full_index(q, r, q2, r2, H, W);
                outK[ix] = kr[y * Wp + c];
                if (outT) outT[ix] = tr[y * Wp + c];
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
#if SIMD
    const VT tfv = VSET1((R)(1.0 / (2 * NK_PI)));
    /* the dense layer before, if aff (w2, b2, alpha, beta): the same operations, in the same
     * order (no fused multiply-add), as nk_affine_update */
    const VT aw2 = VSET1(aff ? (R)aff[0] : 0), ab2 = VSET1(aff ? (R)aff[1] : 0);
    const VT aal = VSET1(aff ? (R)aff[2] : 0), abe = VSET1(aff ? (R)aff[3] : 0);
    for (int r = 0; r < nr; r++) {
        const R *ar = a + (size_t)r * astep;
        const VT va = VSET1(ar[0]), vsa = VSET1(ar[plen]), vra = VSET1(ar[2 * plen]);
        R *kr = K + (size_t)r * nc, *tr = T ? T + (size_t)r * nc : NULL;
        int j = 0;
        for (; j + VLEN <= nc; j += VLEN) {
            VT k = VLOADU(kr + j), t = tr ? VLOADU(tr + j) : VSET1(0);
            if (aff) {
                t = VADD(VADD(VMUL(aal, k), VMUL(aw2, t)), abe);
                k = VADD(VMUL(aw2, k), ab2);
            }
            FN(relu_vv)(&k, &t, va, vsa, vra, VLOADU(b + j), VLOADU(sb + j), VLOADU(rb + j), tfv);
            VSTOREU(kr + j, k);
            if (tr) VSTOREU(tr + j, t);
        }
        if (j < nc) {
            R kb[VLEN], tb[VLEN], bb[VLEN], sbb[VLEN], rbb[VLEN];
            for (int l = 0; l < VLEN; l++) {
                const int in = j + l < nc;
                kb[l] = in ? kr[j + l] : 0;
                tb[l] = in && tr ? tr[j + l] : 0;
                bb[l] = in ? b[j + l] : 1;
                sbb[l] = in ? sb[j + l] : 1;
                rbb[l] = in ? rb[j + l] : 1;
            }
            VT k = VLOADU(kb), t = VLOADU(tb);
            if (aff) {
                t = VADD(VADD(VMUL(aal, k), VMUL(aw2, t)), abe);
                k = VADD(VMUL(aw2, k), ab2);
            }
            FN(relu_vv)(&k, &t, va, vsa, vra, VLOADU(bb), VLOADU(sbb), VLOADU(rbb), tfv);
            VSTOREU(kb, k);
            VSTOREU(tb, t);
            for (int l = 0; j + l < nc; l++) {
                kr[j + l] = kb[l];
                if (tr) tr[j + l] = tb[l];
            }
        }
    }
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
            FN(relu_entry)(kr + j, &t, ar[0], ar[plen], ar[2 * plen], b[j], sb[j], rb[j], (R)(1.0 / (2 * NK_PI)));
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
    const VT tfv = VSET1((R)(1.0 / (2 * NK_PI)));
    size_t j = 0;
    for (; j + VLEN <= n; j += VLEN) {
        VT k = VLOADU(K + j), t = T ? VLOADU(T + j) : VSET1(0);
        FN(relu_vv)(&k, &t, VLOADU(A + j), VLOADU(A + n + j), VLOADU(A + 2 * n + j), VLOADU(B + j), VLOADU(B + n + j),
                    VLOADU(B + 2 * n + j), tfv);
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
        FN(relu_vv)(&k, &t, VLOADU(ab[0]), VLOADU(ab[1]), VLOADU(ab[2]), VLOADU(bb[0]), VLOADU(bb[1]), VLOADU(bb[2]), tfv);
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
        FN(relu_entry)(K + j, &t, A[j], A[n + j], A[2 * n + j], B[j], B[n + j], B[2 * n + j], (R)(1.0 / (2 * NK_PI)));
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
#undef VFMA
#undef VFNMA
#undef VSQRT
#undef VMIN
#undef VMAX
#undef VNEG
#undef VABS
#undef VCOPYSIGN
#undef VCMPLE
#undef VBLEND
#undef VCAST_I
#undef VCAST_R
#undef VALIGNR
#undef VALIGN_PREV
#undef VALIGN_NEXT
