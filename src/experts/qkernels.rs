//! Kernels for quantised experts (`ExpertDtype::Q8` / `Q4`, blocks of 32 along H,
//! layout in `bundle::quant`): activations are quantised per block of 32 to
//! int8 (`QAct`, as llama.cpp does) and gate/up rows are integer dot products
//! (int8 x int8 -> int32 per block, times both scales); down^T rows are
//! dequantised block by block into an f32 FMA (`y += a * d * q`). The
//! alternative for gate/up, dequantising weights into an f32 FMA against the
//! f32 activations (`dot_q*_f32`), is kept for comparison (`QuantDot`).
//! Implementations: AVX2 (x86-64), NEON with `sdot` when the CPU has dotprod
//! and plain NEON otherwise (aarch64), and portable scalar code; `kernels::select`
//! picks them at run time. The portable ones are the reference in tests.

use half::f16;

use crate::bundle::manifest::QUANT_GROUP;

const G: usize = QUANT_GROUP;
/// Bytes of a Q8 block (f16 scale + 32 int8) and of a Q4 block (f16 scale + 16 bytes).
pub const Q8_BLOCK: usize = 2 + G;
pub const Q4_BLOCK: usize = 2 + G / 2;

/// One activation vector quantised per block of 32: `qs[j] * d[j / 32]`.
#[derive(Debug, Clone, Default)]
pub struct QAct {
    pub qs: Vec<i8>,
    pub d: Vec<f32>,
}

impl QAct {
    /// Quantise `x` (length a multiple of 32): d = max|x| / 127 per block.
    pub fn quantize(x: &[f32]) -> QAct {
        let mut q = QAct::default();
        q.set(x);
        q
    }

    pub fn set(&mut self, x: &[f32]) {
        assert_eq!(
            x.len() % G,
            0,
            "activation length must be a multiple of {G}"
        );
        self.qs.clear();
        self.d.clear();
        for b in x.chunks_exact(G) {
            let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            self.d.push(d);
            self.qs.extend(b.iter().map(|v| (v * id).round() as i8));
        }
    }
}

#[inline(always)]
fn scale(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Portable reference versions (LLVM vectorises the inner loops).
pub mod portable {
    use super::*;

    pub fn dot_q8(w: &[u8], x: &QAct) -> f32 {
        assert_eq!(w.len(), x.d.len() * Q8_BLOCK);
        let mut s = 0f32;
        for ((blk, xq), &xd) in w.chunks_exact(Q8_BLOCK).zip(x.qs.chunks_exact(G)).zip(&x.d) {
            let mut i = 0i32;
            for (&q, &v) in blk[2..].iter().zip(xq) {
                i += (q as i8 as i32) * v as i32;
            }
            s += scale(blk) * xd * i as f32;
        }
        s
    }

    pub fn dot_q4(w: &[u8], x: &QAct) -> f32 {
        assert_eq!(w.len(), x.d.len() * Q4_BLOCK);
        let mut s = 0f32;
        for ((blk, xq), &xd) in w.chunks_exact(Q4_BLOCK).zip(x.qs.chunks_exact(G)).zip(&x.d) {
            let mut i = 0i32;
            for (j, &q) in blk[2..].iter().enumerate() {
                i += ((q & 15) as i32 - 8) * xq[j] as i32;
                i += ((q >> 4) as i32 - 8) * xq[j + G / 2] as i32;
            }
            s += scale(blk) * xd * i as f32;
        }
        s
    }

    /// The dequantise-into-f32 alternative: weights times f32 activations.
    pub fn dot_q8_f32(w: &[u8], x: &[f32]) -> f32 {
        assert_eq!(w.len() / Q8_BLOCK * G, x.len());
        let mut s = 0f32;
        for (blk, xb) in w.chunks_exact(Q8_BLOCK).zip(x.chunks_exact(G)) {
            let mut b = 0f32;
            for (&q, &v) in blk[2..].iter().zip(xb) {
                b = (q as i8 as f32).mul_add(v, b);
            }
            s = scale(blk).mul_add(b, s);
        }
        s
    }

    pub fn dot_q4_f32(w: &[u8], x: &[f32]) -> f32 {
        assert_eq!(w.len() / Q4_BLOCK * G, x.len());
        let mut s = 0f32;
        for (blk, xb) in w.chunks_exact(Q4_BLOCK).zip(x.chunks_exact(G)) {
            let mut b = 0f32;
            for (j, &q) in blk[2..].iter().enumerate() {
                b = (((q & 15) as i32 - 8) as f32).mul_add(xb[j], b);
                b = (((q >> 4) as i32 - 8) as f32).mul_add(xb[j + G / 2], b);
            }
            s = scale(blk).mul_add(b, s);
        }
        s
    }

    pub fn axpy_q8(y: &mut [f32], a: f32, w: &[u8]) {
        assert_eq!(w.len() / Q8_BLOCK * G, y.len());
        for (yb, blk) in y.chunks_exact_mut(G).zip(w.chunks_exact(Q8_BLOCK)) {
            let s = a * scale(blk);
            for (yi, &q) in yb.iter_mut().zip(&blk[2..]) {
                *yi = s.mul_add(q as i8 as f32, *yi);
            }
        }
    }

    pub fn axpy_q4(y: &mut [f32], a: f32, w: &[u8]) {
        assert_eq!(w.len() / Q4_BLOCK * G, y.len());
        for (yb, blk) in y.chunks_exact_mut(G).zip(w.chunks_exact(Q4_BLOCK)) {
            let s = a * scale(blk);
            let (lo, hi) = yb.split_at_mut(G / 2);
            for ((l, h), &q) in lo.iter_mut().zip(hi.iter_mut()).zip(&blk[2..]) {
                *l = s.mul_add(((q & 15) as i32 - 8) as f32, *l);
                *h = s.mul_add(((q >> 4) as i32 - 8) as f32, *h);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn d16(p: *const u8) -> f32 {
        let bits = u16::from_le_bytes([*p, *p.add(1)]);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    /// 32 int8 x 32 int8 -> 8 f32 partial sums (|w| <= 127 so maddubs cannot saturate).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn mul_sum_i8(w: __m256i, x: __m256i) -> __m256 {
        let aw = _mm256_sign_epi8(w, w);
        let sx = _mm256_sign_epi8(x, w);
        let p16 = _mm256_maddubs_epi16(aw, sx);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
    }

    /// 16 bytes of nibbles -> 32 int8 in [-8, 7] (low nibbles first, then high).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn unpack_q4(p: *const u8) -> __m256i {
        let raw = _mm_loadu_si128(p as *const __m128i);
        let m = _mm_set1_epi8(15);
        let lo = _mm_and_si128(raw, m);
        let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m);
        _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q8(w: &[u8], x: &QAct) -> f32 {
        let nb = x.d.len();
        assert_eq!(w.len(), nb * Q8_BLOCK);
        assert_eq!(x.qs.len(), nb * G);
        let (pw, px) = (w.as_ptr(), x.qs.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 2];
        for b in 0..nb {
            let p = pw.add(b * Q8_BLOCK);
            let d = _mm256_set1_ps(d16(p) * x.d[b]);
            let wv = _mm256_loadu_si256(p.add(2) as *const __m256i);
            let xv = _mm256_loadu_si256(px.add(b * G) as *const __m256i);
            acc[b & 1] = _mm256_fmadd_ps(d, mul_sum_i8(wv, xv), acc[b & 1]);
        }
        hsum(_mm256_add_ps(acc[0], acc[1]))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q4(w: &[u8], x: &QAct) -> f32 {
        let nb = x.d.len();
        assert_eq!(w.len(), nb * Q4_BLOCK);
        assert_eq!(x.qs.len(), nb * G);
        let (pw, px) = (w.as_ptr(), x.qs.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 2];
        for b in 0..nb {
            let p = pw.add(b * Q4_BLOCK);
            let d = _mm256_set1_ps(d16(p) * x.d[b]);
            let wv = unpack_q4(p.add(2));
            let xv = _mm256_loadu_si256(px.add(b * G) as *const __m256i);
            acc[b & 1] = _mm256_fmadd_ps(d, mul_sum_i8(wv, xv), acc[b & 1]);
        }
        hsum(_mm256_add_ps(acc[0], acc[1]))
    }

    /// sum(q * x) over one block of 32 int8 `v` against f32 at `px`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block_f32(v: __m256i, px: *const f32) -> __m256 {
        let lo = _mm256_castsi256_si128(v);
        let hi = _mm256_extracti128_si256(v, 1);
        let f = |q: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
        let mut s = _mm256_mul_ps(f(lo), _mm256_loadu_ps(px));
        s = _mm256_fmadd_ps(f(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(px.add(8)), s);
        s = _mm256_fmadd_ps(f(hi), _mm256_loadu_ps(px.add(16)), s);
        _mm256_fmadd_ps(f(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(px.add(24)), s)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q8_f32(w: &[u8], x: &[f32]) -> f32 {
        let nb = x.len() / G;
        assert_eq!(w.len(), nb * Q8_BLOCK);
        assert_eq!(x.len(), nb * G);
        let mut acc = _mm256_setzero_ps();
        for b in 0..nb {
            let p = w.as_ptr().add(b * Q8_BLOCK);
            let v = _mm256_loadu_si256(p.add(2) as *const __m256i);
            acc = _mm256_fmadd_ps(
                _mm256_set1_ps(d16(p)),
                block_f32(v, x.as_ptr().add(b * G)),
                acc,
            );
        }
        hsum(acc)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q4_f32(w: &[u8], x: &[f32]) -> f32 {
        let nb = x.len() / G;
        assert_eq!(w.len(), nb * Q4_BLOCK);
        assert_eq!(x.len(), nb * G);
        let mut acc = _mm256_setzero_ps();
        for b in 0..nb {
            let p = w.as_ptr().add(b * Q4_BLOCK);
            let v = unpack_q4(p.add(2));
            acc = _mm256_fmadd_ps(
                _mm256_set1_ps(d16(p)),
                block_f32(v, x.as_ptr().add(b * G)),
                acc,
            );
        }
        hsum(acc)
    }

    /// y[0..8] += s * (8 int8 at the low half of `v`).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fma8(py: *mut f32, s: __m256, v: __m128i) {
        let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
        _mm256_storeu_ps(py, _mm256_fmadd_ps(s, f, _mm256_loadu_ps(py)));
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy_q8(y: &mut [f32], a: f32, w: &[u8]) {
        let nb = y.len() / G;
        assert_eq!(w.len(), nb * Q8_BLOCK);
        assert_eq!(y.len(), nb * G);
        let (pw, py) = (w.as_ptr(), y.as_mut_ptr());
        for b in 0..nb {
            let p = pw.add(b * Q8_BLOCK);
            let s = _mm256_set1_ps(a * d16(p));
            let v = _mm256_loadu_si256(p.add(2) as *const __m256i);
            let lo = _mm256_castsi256_si128(v);
            let hi = _mm256_extracti128_si256(v, 1);
            let y0 = py.add(b * G);
            fma8(y0, s, lo);
            fma8(y0.add(8), s, _mm_srli_si128(lo, 8));
            fma8(y0.add(16), s, hi);
            fma8(y0.add(24), s, _mm_srli_si128(hi, 8));
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy_q4(y: &mut [f32], a: f32, w: &[u8]) {
        let nb = y.len() / G;
        assert_eq!(w.len(), nb * Q4_BLOCK);
        assert_eq!(y.len(), nb * G);
        let (pw, py) = (w.as_ptr(), y.as_mut_ptr());
        for b in 0..nb {
            let p = pw.add(b * Q4_BLOCK);
            let s = _mm256_set1_ps(a * d16(p));
            let v = unpack_q4(p.add(2));
            let lo = _mm256_castsi256_si128(v);
            let hi = _mm256_extracti128_si256(v, 1);
            let y0 = py.add(b * G);
            fma8(y0, s, lo);
            fma8(y0.add(8), s, _mm_srli_si128(lo, 8));
            fma8(y0.add(16), s, hi);
            fma8(y0.add(24), s, _mm_srli_si128(hi, 8));
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub(super) mod neon {
    use super::*;
    use std::arch::aarch64::*;

    #[inline(always)]
    unsafe fn unpack_q4(p: *const u8) -> (int8x16_t, int8x16_t) {
        let raw = vld1q_u8(p);
        let lo = vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(15)));
        let hi = vreinterpretq_s8_u8(vshrq_n_u8(raw, 4));
        let eight = vdupq_n_s8(8);
        (vsubq_s8(lo, eight), vsubq_s8(hi, eight))
    }

    /// 16 int8 x 16 int8 accumulated pairwise into 4 int32 (no dotprod needed).
    #[inline(always)]
    unsafe fn mul_acc(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
        let p0 = vmull_s8(vget_low_s8(w), vget_low_s8(x));
        let p1 = vmull_high_s8(w, x);
        vpadalq_s16(vpadalq_s16(acc, p0), p1)
    }

    /// 32 weights of a q8 block (after its 2-byte scale) as two int8 halves.
    #[inline(always)]
    unsafe fn load_q8(p: *const u8) -> (int8x16_t, int8x16_t) {
        (vld1q_s8(p as *const i8), vld1q_s8(p.add(16) as *const i8))
    }

    /// The loop the four dot kernels share: per block, the weights' two
    /// int8 halves (`load`, from after the scale) times the activations'
    /// (`acc`: widening multiply-add or `sdot`), scaled into f32. Inlined
    /// into each kernel, so it runs with that kernel's target features.
    #[inline(always)]
    unsafe fn dot_blocks(
        w: &[u8],
        x: &QAct,
        block: usize,
        load: impl Fn(*const u8) -> (int8x16_t, int8x16_t),
        acc: impl Fn(int32x4_t, int8x16_t, int8x16_t) -> int32x4_t,
    ) -> f32 {
        let nb = x.d.len();
        assert_eq!(w.len(), nb * block);
        assert_eq!(x.qs.len(), nb * G);
        let mut sum = vdupq_n_f32(0.0);
        for b in 0..nb {
            let px = x.qs.as_ptr().add(b * G);
            let (w0, w1) = load(w.as_ptr().add(b * block + 2));
            let s = acc(
                acc(vdupq_n_s32(0), w0, vld1q_s8(px)),
                w1,
                vld1q_s8(px.add(16)),
            );
            sum = vfmaq_n_f32(sum, vcvtq_f32_s32(s), scale(&w[b * block..]) * x.d[b]);
        }
        vaddvq_f32(sum)
    }

    #[target_feature(enable = "neon")]
    pub unsafe fn dot_q8(w: &[u8], x: &QAct) -> f32 {
        dot_blocks(w, x, Q8_BLOCK, |p| load_q8(p), |a, w, x| mul_acc(a, w, x))
    }

    #[target_feature(enable = "neon")]
    pub unsafe fn dot_q4(w: &[u8], x: &QAct) -> f32 {
        dot_blocks(w, x, Q4_BLOCK, |p| unpack_q4(p), |a, w, x| mul_acc(a, w, x))
    }

    /// `sdot` (four int8 dot products of 4 into int32 lanes). The intrinsic
    /// `vdotq_s32` is still unstable in Rust, so this is inline assembly; only
    /// called from `dotprod` functions, chosen when the CPU has it.
    #[inline(always)]
    unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        std::arch::asm!(
            "sdot {0:v}.4s, {1:v}.16b, {2:v}.16b",
            inout(vreg) acc,
            in(vreg) a,
            in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
        acc
    }

    #[target_feature(enable = "neon,dotprod")]
    pub unsafe fn dot_q8_dotprod(w: &[u8], x: &QAct) -> f32 {
        dot_blocks(w, x, Q8_BLOCK, |p| load_q8(p), |a, w, x| sdot(a, w, x))
    }

    #[target_feature(enable = "neon,dotprod")]
    pub unsafe fn dot_q4_dotprod(w: &[u8], x: &QAct) -> f32 {
        dot_blocks(w, x, Q4_BLOCK, |p| unpack_q4(p), |a, w, x| sdot(a, w, x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::manifest::ExpertDtype;
    use crate::bundle::quant::{decode_row, encode_row};
    use proptest::prelude::*;

    fn exact_dot(w: &[f32], x: &[f32]) -> f64 {
        w.iter().zip(x).map(|(a, b)| *a as f64 * *b as f64).sum()
    }

    /// The selected kernels and the portable ones against an f64 dot product of
    /// the decoded weights and the dequantised activations.
    fn check(w: &[f32], x: &[f32], y0: &[f32], a: f32) -> Result<(), TestCaseError> {
        let k = crate::experts::kernels::kernels();
        let h = w.len();
        let qx = QAct::quantize(x);
        let xd: Vec<f32> = qx
            .qs
            .iter()
            .enumerate()
            .map(|(j, &q)| q as f32 * qx.d[j / G])
            .collect();
        for dt in [ExpertDtype::Q8, ExpertDtype::Q4] {
            let mut bytes = Vec::new();
            encode_row(w, dt, &mut bytes);
            let mut wd = Vec::new();
            decode_row(&bytes, h, dt, &mut wd);
            let want = exact_dot(&wd, &xd);
            let mag: f64 = wd
                .iter()
                .zip(&xd)
                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                .sum();
            let tol = 1e-5 * mag + 1e-5;
            let (sel, port) = match dt {
                ExpertDtype::Q8 => ((k.dot_q8)(&bytes, &qx), portable::dot_q8(&bytes, &qx)),
                _ => ((k.dot_q4)(&bytes, &qx), portable::dot_q4(&bytes, &qx)),
            };
            prop_assert!(
                (sel as f64 - want).abs() <= tol,
                "{dt:?} {} {sel} vs {want}",
                k.name
            );
            prop_assert!(
                (port as f64 - want).abs() <= tol,
                "{dt:?} portable {port} vs {want}"
            );
            // the selected kernel is the dotprod one where the CPU has it:
            // the plain NEON ones are checked too
            #[cfg(target_arch = "aarch64")]
            {
                let plain = match dt {
                    ExpertDtype::Q8 => unsafe { neon::dot_q8(&bytes, &qx) },
                    _ => unsafe { neon::dot_q4(&bytes, &qx) },
                };
                prop_assert!(
                    (plain as f64 - want).abs() <= tol,
                    "{dt:?} plain neon {plain} vs {want}"
                );
            }
            let mut ys = y0.to_vec();
            let mut yp = y0.to_vec();
            match dt {
                ExpertDtype::Q8 => {
                    (k.axpy_q8)(&mut ys, a, &bytes);
                    portable::axpy_q8(&mut yp, a, &bytes);
                }
                _ => {
                    (k.axpy_q4)(&mut ys, a, &bytes);
                    portable::axpy_q4(&mut yp, a, &bytes);
                }
            }
            for j in 0..h {
                let want = y0[j] as f64 + a as f64 * wd[j] as f64;
                let tol = 1e-5 * (y0[j].abs() as f64 + (a * wd[j]).abs() as f64) + 1e-6;
                prop_assert!(
                    (ys[j] as f64 - want).abs() <= tol,
                    "{dt:?} axpy {} vs {want}",
                    ys[j]
                );
                prop_assert!((yp[j] as f64 - want).abs() <= tol, "{dt:?} portable axpy");
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn kernels_match_scalar_reference(
            blocks in 1usize..12,
            seed in any::<u64>(),
            a in -3.0f32..3.0,
        ) {
            let mut s = seed | 1;
            let mut next = || {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            };
            let h = blocks * G;
            let w: Vec<f32> = (0..h).map(|_| next()).collect();
            let x: Vec<f32> = (0..h).map(|_| next()).collect();
            let y: Vec<f32> = (0..h).map(|_| next()).collect();
            check(&w, &x, &y, a)?;
        }
    }

    #[test]
    fn activation_quantisation_error_is_bounded() {
        let x: Vec<f32> = (0..96)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let q = QAct::quantize(&x);
        for (j, v) in x.iter().enumerate() {
            let back = q.qs[j] as f32 * q.d[j / G];
            assert!((v - back).abs() <= 0.5 * q.d[j / G] + 1e-6);
        }
        // zeros stay zeros
        let z = QAct::quantize(&[0.0; 32]);
        assert!(z.qs.iter().all(|&q| q == 0) && z.d == [0.0]);
    }
}
