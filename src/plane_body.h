/* plane_body.h -- the plane engine's hot code for one element type and one instruction set;
 * included by plane.c once per combination (see there for the method).  Expects:
 *   R            element type (double or float)
 *   FN(x)        name mangling for this instantiation
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
static inline __attribute__((always_inline)) void FN(relu_entry)(R *k, R *t, R a, R sa, R ra, R b, R sb, R rb)
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
    *t *= pmt * (R)(1.0 / (2 * NK_PI));
}

#if SIMD
/* The same ReLU on one vector of VLEN entries, written with the instruction set's intrinsics
 * (the selects must stay selects: a compiler left to itself evaluates the polynomial once per
 * branch).  The scalar relu_entry above is its reference. */
static inline TGT __attribute__((always_inline)) void FN(relu_vec)(VT *k, VT *t, const R *A, const R *B, int P)
{
    const VT c = *k, rab = VMUL(VLOADU(A + 2 * P), VLOADU(B + 2 * P));
    const VT one = VSET1(1), s8 = VSET1((R)0.38268343236508978);
    VT cs = VMAX(VMIN(VMUL(c, rab), one), VSET1(-1));
    const VT cc = VMUL(c, c);
    VT d = VSUB(VFMA(VLOADU(A), VLOADU(B), VNEG(cc)), VFMA(c, c, VNEG(cc)));
    d = VMAX(d, VSET1(0));
    const VT sn = VMIN(VMUL(VSQRT(d), rab), one);
    const VT acs = VABS(cs);
    const MT near_c = VCMPLE(acs, s8), near_s = VCMPLE(sn, s8);
    VT x = VBLEND(near_s, sn, VMUL(VSUB(sn, acs), VSET1((R)0.70710678118654752)));
    x = VBLEND(near_c, cs, x);
    const VT x2 = VMUL(x, x);
    VT p = VSET1(ASIN_C[0]);
    for (int i = 1; i < ASIN_N; i++) p = VFMA(p, x2, VSET1(ASIN_C[i]));
    const VT as = VMUL(x, p);
    const VT base = VBLEND(near_s, VSET1((R)NK_PI_2), VSET1((R)(NK_PI / 4)));
    const VT pmt = VADD(VSET1((R)NK_PI_2), VBLEND(near_c, as, VCOPYSIGN(VSUB(base, as), cs)));
    const VT s2 = VMUL(VLOADU(A + P), VLOADU(B + P));
    *k = VMUL(VMUL(s2, VSET1((R)(1.0 / (2 * NK_PI)))), VFMA(pmt, cs, sn));
    *t = VMUL(*t, VMUL(pmt, VSET1((R)(1.0 / (2 * NK_PI)))));
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

/* The affine map and, if relu, the ReLU on n entries of the window means mk, mt (n a multiple
 * of VLEN, NV for the portable code), written to ko, to; the variances of entry i are at
 * A + i (first sample) and B + i (second, rotated), roots at +P and +2P. */
static inline TGT __attribute__((always_inline)) void FN(affine_act)(const nk_op *op, double scale, const R *restrict mk,
                                                                     const R *restrict mt, R *restrict ko,
                                                                     R *restrict to, int n, int relu,
                                                                     const R *restrict A, const R *restrict B, int P)
{
    const R cw = (R)(op->w2 * scale), ca = (R)(op->alpha * scale), b2 = (R)op->b2, beta = (R)op->beta;
    if (relu) {
#if SIMD
        const VT vcw = VSET1(cw), vca = VSET1(ca), vb2 = VSET1(b2), vbeta = VSET1(beta);
        for (int j = 0; j < n; j += VLEN) {
            const VT sk = VLOADU(mk + j);
            VT k = VFMA(vcw, sk, vb2), t = VFMA(vca, sk, VFMA(vcw, VLOADU(mt + j), vbeta));
            FN(relu_vec)(&k, &t, A + j, B + j, P);
            VSTOREU(ko + j, k);
            VSTOREU(to + j, t);
        }
#else
        for (int j = 0; j < n; j++) {
            R k = FMA(cw, mk[j], b2), t = FMA(ca, mk[j], FMA(cw, mt[j], beta));
            FN(relu_entry)(&k, &t, A[j], A[P + j], A[2 * P + j], B[j], B[P + j], B[2 * P + j]);
            ko[j] = k;
            to[j] = t;
        }
#endif
        return;
    }
    for (int j = 0; j < n; j++) {
        const R s = mk[j];
        to[j] = FMA(ca, s, FMA(cw, mt[j], beta));
        ko[j] = FMA(cw, s, b2);
    }
}

/* The ReLU alone, in place, on n entries (n as above). */
static inline TGT __attribute__((always_inline)) void FN(relu_inplace)(R *restrict k, R *restrict t, int n,
                                                                       const R *restrict A, const R *restrict B, int P)
{
#if SIMD
    for (int j = 0; j < n; j += VLEN) {
        VT kv = VLOADU(k + j), tv = VLOADU(t + j);
        FN(relu_vec)(&kv, &tv, A + j, B + j, P);
        VSTOREU(k + j, kv);
        VSTOREU(t + j, tv);
    }
#else
    for (int j = 0; j < n; j++) FN(relu_entry)(k + j, t + j, A[j], A[P + j], A[2 * P + j], B[j], B[P + j], B[2 * P + j]);
#endif
}

/* One combined plane (di, da), 0 <= da < W: the displacements (di, da) and (di, da - W) side by
 * side, so that every row of the plane has W entries, for the columns r >= da and r < da
 * respectively, and the plane is one flat array of m0 rows of W.  With the second sample's
 * arrays rotated by da along each row (xb, sb; see nk_plane_pair), entry r of a row pairs with
 * column r of the first sample's arrays and column r of the rotated second sample's: every
 * loop below is a flat, long loop over the plane.  Row sums (window along the rows) are then
 * plain; column sums are plain except beside the wall between the two parts and at the row ends,
 * where they are recomputed from the terms on the same side. */
static TGT void FN(plane)(const nk_pgeom *g, const R *xa, const R *xb, const R *sa, const R *sb, R *self_out,
                          R *buf, int di, int da, double *sums, double *outK, double *outT)
{
    const int H = g->H, W = g->W, P = H * W;
    const int q_lo = di > 0 ? di : 0, m0 = H - (di > 0 ? di : -di);
    const int n = m0 * W, nr = (n + NV - 1) / NV * NV;
    const size_t plane = (size_t)g->rows * W + 2 * NV, base = (size_t)g->HB0 * W;
    R *Kin = buf, *Tin = Kin + plane, *Kout = Tin + plane, *Tout = Kout + plane;
    R *Vk = Tout + plane + NV, *Vt = Vk + plane, *Mk = Vt + plane, *Mt = Mk + plane;
    if (self_out) sa = sb = self_out;
    /* first-sample and (rotated) second-sample offsets of the plane's entry 0 */
    const size_t oa = (size_t)q_lo * W, ob = (size_t)(q_lo - di) * W;
    /* zero padding: the rows above and below the plane, and the tail of the last vector */
    for (int b = 0; b < 4; b++) {
        R *X = buf + b * plane;
        memset(X, 0, sizeof(R) * base);
        memset(X + base + n, 0, sizeof(R) * ((size_t)g->HA0 * W + NV));
    }
    /* K0 = <x_p, x'_p'> / C, T0 = 0 */
    {
        R *restrict kr = Kin + base, *restrict tr = Tin + base;
        const R invc = (R)(1.0 / g->C);
        for (int j = 0; j < nr; j++) { kr[j] = 0; tr[j] = 0; }
        for (int ch = 0; ch < g->C; ch++) {
            const R *restrict u = xa + (size_t)ch * P + oa, *restrict v = xb + (size_t)ch * P + ob;
            for (int j = 0; j < nr; j++) kr[j] = FMA(u[j], v[j], kr[j]);
        }
        for (int j = 0; j < nr; j++) kr[j] *= invc;
        for (int j = n; j < nr; j++) kr[j] = 0;
    }
    for (int i = g->s; i < g->e; i++) {
        const nk_op *op = &g->ops[i], *act = NULL;
        if (op->kind == OP_AFFINE && i + 1 < g->e && g->ops[i + 1].kind == OP_ACT) act = &g->ops[++i];
        else if (op->kind == OP_ACT) act = op;
        const int relu = act && act->act.kind == NK_ACT_RELU;
        const R *A = act ? sa + act->self_off + oa : NULL, *B = act ? sb + act->self_off + ob : NULL;
        R *ko = Kin + base, *to = Tin + base;
        if (op->kind == OP_AFFINE) {
            const int f0 = op->f[g->swap], f1 = op->f[!g->swap], pb0 = op->pb[g->swap], pb1 = op->pb[!g->swap];
            /* row sums: the window along the rows, over the zero rows around the plane */
            {
                const R *restrict k0 = Kin + base - (size_t)pb0 * W, *restrict t0 = Tin + base - (size_t)pb0 * W;
                R *restrict vk = Vk, *restrict vt = Vt;
                if (f0 == 3) {
                    for (int j = 0; j < nr; j++) vk[j] = k0[j] + k0[W + j] + k0[2 * W + j];
                    for (int j = 0; j < nr; j++) vt[j] = t0[j] + t0[W + j] + t0[2 * W + j];
                } else {
                    for (int j = 0; j < nr; j++) { vk[j] = k0[j]; vt[j] = t0[j]; }
                    for (int d = 1; d < f0; d++)
                        for (int j = 0; j < nr; j++) { vk[j] += k0[(size_t)d * W + j]; vt[j] += t0[(size_t)d * W + j]; }
                }
            }
            /* column sums along each row, then recomputed beside the walls */
            const R *mk = Vk, *mt = Vt;
            if (f1 > 1) {
                R *restrict hk = Mk, *restrict ht = Mt;
                const R *restrict vk = Vk, *restrict vt = Vt;
                if (f1 == 3 && pb1 == 1) {
                    for (int j = 0; j < nr; j++) hk[j] = vk[j - 1] + vk[j] + vk[j + 1];
                    for (int j = 0; j < nr; j++) ht[j] = vt[j - 1] + vt[j] + vt[j + 1];
                } else {
                    for (int j = 0; j < nr; j++) { hk[j] = vk[j - pb1]; ht[j] = vt[j - pb1]; }
                    for (int e = 1; e < f1; e++)
                        for (int j = 0; j < nr; j++) { hk[j] += vk[j + e - pb1]; ht[j] += vt[j + e - pb1]; }
                }
                const int parts = da > 0 ? 2 : 1;
                if (f1 == 3 && pb1 == 1) {
                    /* the first and last column of each part sum two terms (one if the part is
                     * one column wide) */
                    for (int y = 0; y < m0; y++)
                        for (int part = 0; part < parts; part++) {
                            const int c0 = y * W + (part ? 0 : da), c1 = y * W + (part ? da : W);
                            if (c1 - c0 == 1) { hk[c0] = vk[c0]; ht[c0] = vt[c0]; continue; }
                            hk[c0] = vk[c0] + vk[c0 + 1];
                            ht[c0] = vt[c0] + vt[c0 + 1];
                            hk[c1 - 1] = vk[c1 - 2] + vk[c1 - 1];
                            ht[c1 - 1] = vt[c1 - 2] + vt[c1 - 1];
                        }
                } else
                for (int y = 0; y < m0; y++)
                    for (int part = 0; part < parts; part++) {
                        /* the part's columns [c0, c1) of row y */
                        const int c0 = part ? 0 : da, c1 = part ? da : W;
                        for (int r = c0; r < c1; r++) {
                            if (r >= c0 + pb1 && r < c1 - (f1 - 1 - pb1)) { r = c1 - (f1 - 1 - pb1) - 1; continue; }
                            R sk = 0, st = 0;
                            for (int e = 0; e < f1; e++) {
                                const int c = r + e - pb1;
                                if (c >= c0 && c < c1) { sk += vk[y * W + c]; st += vt[y * W + c]; }
                            }
                            hk[y * W + r] = sk;
                            ht[y * W + r] = st;
                        }
                    }
                mk = Mk;
                mt = Mt;
            }
            ko = Kout + base;
            to = Tout + base;
            const double scale = 1.0 / ((double)f0 * f1);
            if (act && self_out) {
                FN(affine_act)(op, scale, mk, mt, ko, to, nr, 0, NULL, NULL, P);
            } else {
                FN(affine_act)(op, scale, mk, mt, ko, to, nr, relu, A, B, P);
                if (act && !relu) FN(generic_row)(&act->act, g->quad, ko, to, n, A, B);
                act = NULL;
            }
        }
        if (act) {
            /* an activation not fused above: in place; the self pass (the plane (0, 0) of a
             * sample with itself, whose entries are the variances) records them first */
            if (self_out) {
                R *a = self_out + act->self_off;
                for (int j = 0; j < P; j++) {
                    a[j] = ko[j];
                    a[P + j] = SQRT(ko[j]);
                    a[2 * P + j] = ko[j] > 0 ? 1 / a[P + j] : 0;
                }
            }
            if (relu) FN(relu_inplace)(ko, to, nr, A, B, P);
            else FN(generic_row)(&act->act, g->quad, ko, to, n, A, B);
        }
        for (int j = n; j < nr; j++) ko[j] = to[j] = 0;
        if (op->kind == OP_AFFINE) {
            R *x = Kin; Kin = Kout; Kout = x;
            x = Tin; Tin = Tout; Tout = x;
        }
    }
    const R *kr = Kin + base, *tr = Tin + base;
    if (sums) {
        /* the GAP sum, accumulated in double, NV lanes wide (entries past n are zero) */
        double sk[NV], st[NV];
        for (int l = 0; l < NV; l++) sk[l] = st[l] = 0;
        for (int j = 0; j < nr; j += NV)
            for (int l = 0; l < NV; l++) { sk[l] += (double)kr[j + l]; st[l] += (double)tr[j + l]; }
        for (int l = 0; l < NV; l++) { sums[0] += sk[l]; sums[1] += st[l]; }
    }
    if (outK) {
        for (int y = 0; y < m0; y++) {
            const int q = q_lo + y, q2 = q - di;
            for (int r = 0; r < W; r++) {
                const int r2 = r >= da ? r - da : r - da + W;
                const size_t ix = g->diag ? (size_t)q * W + r : nk_full_index(q, r, q2, r2, H, W);
                outK[ix] = kr[y * W + r];
                if (outT) outT[ix] = tr[y * W + r];
            }
        }
    }
}
