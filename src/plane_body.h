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

/* One output row y of a convolution (any window, zero padding) on the plane, its affine map
 * and, if relu, the ReLU, written to ko / to.  Separable: the window's rows are summed into vk,
 * then the columns along the row.  Rows are processed in whole vectors (NV entries): the
 * entries past the plane's width m1 are scratch, and the zero padding beside the row is
 * restored in vk before the column sums read it. */
static inline TGT __attribute__((always_inline)) void FN(conv_row)(const nk_pgeom *g, const nk_op *op, const R *Kin,
                                                                const R *Tin, R *restrict ko, R *restrict to, int y,
                                                                int m1, int m1r, R *tmp, int relu,
                                                                const R *restrict A, const R *restrict B, int P)
{
    const int f0 = op->f[g->swap], f1 = op->f[!g->swap], pb0 = op->pb[g->swap], pb1 = op->pb[!g->swap];
    const double scale = 1.0 / ((double)f0 * f1);
    const R cw = (R)(op->w2 * scale), ca = (R)(op->alpha * scale), b2 = (R)op->b2, beta = (R)op->beta;
    R *restrict vk = tmp + g->O1, *restrict vt = vk + g->S, *restrict hk = vt + g->S, *restrict ht = hk + g->S;
    {
        const R *restrict k0 = PAT(g, Kin, y - pb0, 0), *restrict t0 = PAT(g, Tin, y - pb0, 0);
        const size_t S = (size_t)g->S;
        if (f0 == 3) {
            VFOR(j, 0, m1r) vk[j] = k0[j] + k0[S + j] + k0[2 * S + j];
            VFOR(j, 0, m1r) vt[j] = t0[j] + t0[S + j] + t0[2 * S + j];
        } else {
            VFOR(j, 0, m1r) { vk[j] = k0[j]; vt[j] = t0[j]; }
            for (int d = 1; d < f0; d++)
                VFOR(j, 0, m1r) { vk[j] += k0[d * S + j]; vt[j] += t0[d * S + j]; }
        }
        for (int j = -g->HB1; j < 0; j++) vk[j] = vt[j] = 0;
        for (int j = m1; j < m1 + g->HA1; j++) vk[j] = vt[j] = 0;
    }
    const R *restrict mk = hk, *restrict mt = ht;
    if (f1 == 3 && pb1 == 1) {
        if (relu) {
#if SIMD
            const VT vcw = VSET1(cw), vca = VSET1(ca), vb2 = VSET1(b2), vbeta = VSET1(beta);
            for (int j = 0; j < m1r; j += VLEN) {
                const VT sk = VADD(VADD(VLOADU(vk + j - 1), VLOADU(vk + j)), VLOADU(vk + j + 1));
                const VT st = VADD(VADD(VLOADU(vt + j - 1), VLOADU(vt + j)), VLOADU(vt + j + 1));
                VT k = VFMA(vcw, sk, vb2), t = VFMA(vca, sk, VFMA(vcw, st, vbeta));
                FN(relu_vec)(&k, &t, A + j, B + j, P);
                VSTOREU(ko + j, k);
                VSTOREU(to + j, t);
            }
#else
            VFOR(j, 0, m1r) {
                R k = FMA(cw, vk[j - 1] + vk[j] + vk[j + 1], b2);
                R t = FMA(ca, vk[j - 1] + vk[j] + vk[j + 1], FMA(cw, vt[j - 1] + vt[j] + vt[j + 1], beta));
                FN(relu_entry)(&k, &t, A[j], A[P + j], A[2 * P + j], B[j], B[P + j], B[2 * P + j]);
                ko[j] = k;
                to[j] = t;
            }
#endif
        } else {
            VFOR(j, 0, m1r) {
                R s = vk[j - 1] + vk[j] + vk[j + 1];
                to[j] = FMA(ca, s, FMA(cw, vt[j - 1] + vt[j] + vt[j + 1], beta));
                ko[j] = FMA(cw, s, b2);
            }
        }
        return;
    }
    if (f1 == 1) {
        mk = vk;
        mt = vt;
    } else {
        VFOR(j, 0, m1r) { hk[j] = vk[j - pb1]; ht[j] = vt[j - pb1]; }
        for (int e = 1; e < f1; e++)
            VFOR(j, 0, m1r) { hk[j] += vk[j + e - pb1]; ht[j] += vt[j + e - pb1]; }
    }
    if (relu) {
#if SIMD
        const VT vcw = VSET1(cw), vca = VSET1(ca), vb2 = VSET1(b2), vbeta = VSET1(beta);
        for (int j = 0; j < m1r; j += VLEN) {
            const VT sk = VLOADU(mk + j);
            VT k = VFMA(vcw, sk, vb2), t = VFMA(vca, sk, VFMA(vcw, VLOADU(mt + j), vbeta));
            FN(relu_vec)(&k, &t, A + j, B + j, P);
            VSTOREU(ko + j, k);
            VSTOREU(to + j, t);
        }
#else
        VFOR(j, 0, m1r) {
            R k = FMA(cw, mk[j], b2), t = FMA(ca, mk[j], FMA(cw, mt[j], beta));
            FN(relu_entry)(&k, &t, A[j], A[P + j], A[2 * P + j], B[j], B[P + j], B[2 * P + j]);
            ko[j] = k;
            to[j] = t;
        }
#endif
    } else {
        VFOR(j, 0, m1r) {
            R s = mk[j];
            to[j] = FMA(ca, s, FMA(cw, mt[j], beta));
            ko[j] = FMA(cw, s, b2);
        }
    }
}

/* One plane (di, da) of a pair: K0 from the data, the segment's ops, then the plane's part of
 * the output: its sums (GAP), or its entries written into a double state (diag / full).  All
 * arrays read past a row's end (samples, self states) have NV elements of slack. */
static TGT void FN(plane)(const nk_pgeom *g, const R *xa, const R *xb, const R *sa, const R *sb, R *self_out,
                          R *buf, int di, int da, double *sums, double *outK, double *outT)
{
    const int H = g->H, W = g->W, P = H * W;
    const int q_lo = di > 0 ? di : 0, m0 = H - (di > 0 ? di : -di);
    const int r_lo = da > 0 ? da : 0, m1 = W - (da > 0 ? da : -da), m1r = (m1 + NV - 1) / NV * NV;
    const size_t plane = (size_t)g->rows * g->S;
    R *Kin = buf, *Tin = Kin + plane, *Kout = Tin + plane, *Tout = Kout + plane, *tmp = Tout + plane;
    if (self_out) sa = sb = self_out;
    /* zero padding: the rows above and below the plane (the columns beside it are restored
     * in each row sum) */
    const size_t wrow = (size_t)(m1r + g->HB1 + g->HA1);
    for (int b = 0; b < 4; b++) {
        R *X = buf + b * plane;
        for (int y = -g->HB0; y < 0; y++) memset(PAT(g, X, y, -g->HB1), 0, sizeof(R) * wrow);
        for (int y = m0; y < m0 + g->HA0; y++) memset(PAT(g, X, y, -g->HB1), 0, sizeof(R) * wrow);
    }
    /* K0 = <x_p, x'_p'> / C, T0 = 0 */
    const R invc = (R)(1.0 / g->C);
    for (int y = 0; y < m0; y++) {
        const int q = q_lo + y, q2 = q - di;
        R *restrict kr = PAT(g, Kin, y, 0), *restrict tr = PAT(g, Tin, y, 0);
        VFOR(j, 0, m1r) { kr[j] = 0; tr[j] = 0; }
        for (int ch = 0; ch < g->C; ch++) {
            const R *restrict u = xa + (size_t)ch * P + (size_t)q * W + r_lo;
            const R *restrict v = xb + (size_t)ch * P + (size_t)q2 * W + r_lo - da;
            VFOR(j, 0, m1r) kr[j] = FMA(u[j], v[j], kr[j]);
        }
        VFOR(j, 0, m1r) kr[j] *= invc;
    }
    for (int i = g->s; i < g->e; i++) {
        const nk_op *op = &g->ops[i], *act = NULL;
        if (op->kind == OP_AFFINE && i + 1 < g->e && g->ops[i + 1].kind == OP_ACT) act = &g->ops[++i];
        else if (op->kind == OP_ACT) act = op;
        const int conv = op->kind == OP_AFFINE, relu = act && act->act.kind == NK_ACT_RELU;
        const size_t so = act ? act->self_off : 0;
        for (int y = 0; y < m0; y++) {
            const int q = q_lo + y, q2 = q - di;
            R *ko = conv ? PAT(g, Kout, y, 0) : PAT(g, Kin, y, 0);
            R *to = conv ? PAT(g, Tout, y, 0) : PAT(g, Tin, y, 0);
            const R *A = act ? sa + so + (size_t)q * W + r_lo : NULL;
            const R *B = act ? sb + so + (size_t)q2 * W + r_lo - da : NULL;
            if (act && self_out) {
                /* the self pass is the plane (0, 0) of a sample with itself: its entries are the
                 * variances, recorded (with their roots) before the activation reads them */
                if (conv) FN(conv_row)(g, op, Kin, Tin, ko, to, y, m1, m1r, tmp, 0, NULL, NULL, P);
                R *a = self_out + so + (size_t)q * W;
                for (int j = 0; j < W; j++) {
                    a[j] = ko[j];
                    a[P + j] = SQRT(ko[j]);
                    a[2 * P + j] = ko[j] > 0 ? 1 / a[P + j] : 0;
                }
                if (relu)
                    for (int j = 0; j < m1; j++) FN(relu_entry)(ko + j, to + j, A[j], A[P + j], A[2 * P + j], B[j], B[P + j], B[2 * P + j]);
                else
                    FN(generic_row)(&act->act, g->quad, ko, to, m1, A, B);
                continue;
            }
            if (conv) FN(conv_row)(g, op, Kin, Tin, ko, to, y, m1, m1r, tmp, relu, A, B, P);
            else if (relu)
                VFOR(j, 0, m1r) FN(relu_entry)(ko + j, to + j, A[j], A[P + j], A[2 * P + j], B[j], B[P + j], B[2 * P + j]);
            if (act && !relu) FN(generic_row)(&act->act, g->quad, ko, to, m1, A, B);
        }
        if (conv) {
            R *x = Kin; Kin = Kout; Kout = x;
            x = Tin; Tin = Tout; Tout = x;
        }
    }
    if (sums) {
        /* the GAP sum, accumulated in double, NV lanes wide */
        double sk[NV], st[NV];
        for (int l = 0; l < NV; l++) sk[l] = st[l] = 0;
        for (int y = 0; y < m0; y++) {
            const R *restrict kr = PAT(g, Kin, y, 0), *restrict tr = PAT(g, Tin, y, 0);
            for (int jb = 0; jb < m1r; jb += NV)
                for (int l = 0; l < NV; l++) {
                    sk[l] += jb + l < m1 ? (double)kr[jb + l] : 0.0;
                    st[l] += jb + l < m1 ? (double)tr[jb + l] : 0.0;
                }
        }
        for (int l = 0; l < NV; l++) { sums[0] += sk[l]; sums[1] += st[l]; }
    }
    if (outK) {
        for (int y = 0; y < m0; y++) {
            const int q = q_lo + y, q2 = q - di;
            const R *kr = PAT(g, Kin, y, 0), *tr = PAT(g, Tin, y, 0);
            for (int j = 0; j < m1; j++) {
                const int r = r_lo + j, r2 = r - da;
                const size_t ix = g->diag ? (size_t)q * W + r : nk_full_index(q, r, q2, r2, H, W);
                outK[ix] = kr[j];
                if (outT) outT[ix] = tr[j];
            }
        }
    }
}
