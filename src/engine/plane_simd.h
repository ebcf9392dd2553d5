/* plane_simd.h -- the vector operations plane_body.h is written in, for one instruction set
 * and element type, from the intrinsics' naming scheme.  Expects VW, the intrinsics' prefix
 * (_mm512_ or _mm256_), VS their suffix (pd or ps), VT the vector type, VLEN its lanes and, for
 * AVX-512, MT the mask type and VEPI the integer lane type of the element size (epi64, epi32).
 * plane_body.h undefines all of these at its end. */
#define VI_(w, op, s) w##op##s
#define VI__(w, op, s) VI_(w, op, s)
#define VI(op) VI__(VW, op, VS)
#define VI4_(w, op, s, t) w##op##s##t
#define VI4__(w, op, s, t) VI4_(w, op, s, t)
#define SIMD 1
#define VSET1(x) VI(set1_)(x)
#define VLOADU(p) VI(loadu_)(p)
#define VSTOREU(p, v) VI(storeu_)(p, v)
#define VADD(a, b) VI(add_)(a, b)
#define VSUB(a, b) VI(sub_)(a, b)
#define VMUL(a, b) VI(mul_)(a, b)
#define VFMA(a, b, c) VI(fmadd_)(a, b, c)
#define VFMS(a, b, c) VI(fmsub_)(a, b, c)
#define VFNMA(a, b, c) VI(fnmadd_)(a, b, c)
#define VSQRT(a) VI(sqrt_)(a)
#define VMAX(a, b) VI(max_)(a, b)
#define VABS(a) VI(andnot_)(VSET1(-0.0), a)
#ifdef MT
/* AVX-512: compares give mask registers; lane shifts across the vector for the fused 3x3 loop */
/* a b rounded toward zero */
#define VMUL_RZ(a, b) VI(mul_round_)(a, b, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC)
#define VCMPLE(a, b) VI4__(VW, cmp_, VS, _mask)(a, b, _CMP_LE_OQ)
#define VCMPGT(a, b) VI4__(VW, cmp_, VS, _mask)(a, b, _CMP_GT_OQ)
#define VBLEND(m, a, b) VI(mask_blend_)(m, b, a)
/* m ? a - b : src */
#define VMSUB(src, m, a, b) VI(mask_sub_)(src, m, a, b)
/* a with its sign flipped where s >= 0 (a ^ (~s & -0.0)), in one ternary-logic operation; the
 * same where m is set and s itself elsewhere */
#define VTERN(a, b, c, imm) VCAST_R(VI__(_mm512_ternarylogic_, VEPI, )(VCAST_I(a), VCAST_I(b), VCAST_I(c), imm))
#define VFLIPNN(a, s) VTERN(a, s, VSET1(-0.0), 0xD2)
#define VMFLIPNN_S(m, a, s) VCAST_R(VI__(_mm512_mask_ternarylogic_, VEPI, )(VCAST_I(s), m, VCAST_I(a), VCAST_I(VSET1(-0.0)), 0xC6))
/* the largest lane */
#define VHMAX(v) VI(reduce_max_)(v)
/* the mask of VLEN bits at p (into a mask register: half an FMA's slot on Zen 4, measured) */
#define VLOADMASK(p) (__extension__({ MT m_; memcpy(&m_, (p), sizeof m_); m_; }))
/* a ^ b in mask registers (kxor: no cost beside the FMAs) */
#define VKXOR(a, b)                                                                                  \
    (sizeof(MT) == 2 ? (MT)_kxor_mask16((__mmask16)(a), (__mmask16)(b))                              \
                     : (MT)_kxor_mask8((__mmask8)(a), (__mmask8)(b)))
#define VCAST_I(v) VI__(_mm512_cast, VS, _si512)(v)
#define VCAST_R(v) VI__(_mm512_castsi512_, VS, )(v)
/* lane shifts (a:b by n lanes), 0 in the lanes whose bit of m is clear */
#define VALIGNRZ(m, a, b, n) VCAST_R(VI__(_mm512_maskz_alignr_, VEPI, )(m, VCAST_I(a), VCAST_I(b), n))
#define VALIGN_PREV_Z(m, c, p) VALIGNRZ(m, c, p, VLEN - 1)
#define VALIGN_NEXT_Z(m, n, c) VALIGNRZ(m, n, c, 1)
#else
#define MT VT
#define VCAST_I(v) VI__(_mm256_cast, VS, _si256)(v)
#define VCAST_R(v) VI__(_mm256_castsi256_, VS, )(v)
#define VCMPLE(a, b) VI(cmp_)(a, b, _CMP_LE_OQ)
#define VCMPGT(a, b) VI(cmp_)(a, b, _CMP_GT_OQ)
#define VBLEND(m, a, b) VI(blendv_)(b, a, m)
#define VMSUB(src, m, a, b) VBLEND(m, VSUB(a, b), src)
#define VFLIPNN(a, s) VI(xor_)(a, VI(andnot_)(s, VSET1(-0.0)))
#define VMFLIPNN_S(m, a, s) VBLEND(m, VFLIPNN(a, s), s)
#endif
