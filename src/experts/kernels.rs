//! The expert FFN: `down(silu(gate·x) * (up·x))` computed as GEMV straight
//! from the memmapped weights ([3, I, H]: gate, up, down^T rows of H).
//! x86-64 uses AVX2+FMA (and F16C for f16) when the CPU has them, chosen at
//! run time; everything else uses portable code written so the compiler
//! vectorises it (aarch64 has NEON as baseline). Quantised experts (Q8/Q4)
//! use `qkernels` (int8 activations, integer dot products) through the same row
//! loop. No allocation per call for f32/f16 experts; quantised experts allocate
//! the int8 copy of the activations (H bytes per token).

use half::f16;

use super::qkernels::{self, QAct};
use super::ExpertWeights;

/// Accumulate `scale * ffn(x)` into `out` for one token.
/// `act` is scratch of length I.
pub fn expert_ffn(
    w: ExpertWeights<'_>,
    hidden: usize,
    x: &[f32],
    scale: f32,
    act: &mut [f32],
    out: &mut [f32],
) {
    expert_ffn_batch(w, hidden, &[x], &[scale], act, &mut [out]);
}

/// Experts at least this large (bytes of weights) are split over two
/// threads: one thread cannot saturate DRAM read bandwidth.
pub const PARALLEL_ABOVE_BYTES: usize = 1 << 20;

/// Runs one expert over the tokens in `work` (token index into `x`'s rows,
/// router weight), adding into those tokens' rows of `out`. Sorts `work` by
/// token; its tokens must be distinct. `act` is resized as scratch.
pub fn expert_ffn_tokens(
    w: ExpertWeights<'_>,
    hidden: usize,
    x: &[f32],
    work: &mut [(usize, f32)],
    act: &mut Vec<f32>,
    out: &mut [f32],
) {
    work.sort_unstable_by_key(|&(ti, _)| ti);
    let h = hidden;
    let xs: Vec<&[f32]> = work
        .iter()
        .map(|&(ti, _)| &x[ti * h..(ti + 1) * h])
        .collect();
    let scales: Vec<f32> = work.iter().map(|&(_, wt)| wt).collect();
    act.resize(w.inter(h) * xs.len(), 0.0);
    // Tokens are distinct and sorted: borrow their rows once.
    let mut rows: Vec<&mut [f32]> = Vec::with_capacity(work.len());
    let mut want = work.iter().map(|&(ti, _)| ti).peekable();
    for (ti, row) in out.chunks_mut(h).enumerate() {
        if want.peek() == Some(&ti) {
            rows.push(row);
            want.next();
        }
    }
    expert_ffn_batch(w, h, &xs, &scales, act, &mut rows);
}

/// The same for several tokens routed to one expert: each weight row is read
/// once and applied to every token while it is in cache.
/// `act` is scratch of length `I * xs.len()`.
///
/// Experts of `PARALLEL_ABOVE_BYTES` or more run on two threads: each takes
/// half of the intermediate rows (gate/up rows and the matching down rows),
/// the second thread accumulates into a private output that is added after.
pub fn expert_ffn_batch(
    w: ExpertWeights<'_>,
    hidden: usize,
    xs: &[&[f32]],
    scales: &[f32],
    act: &mut [f32],
    outs: &mut [&mut [f32]],
) {
    let n = xs.len();
    let inter = w.inter(hidden);
    debug_assert_eq!(act.len(), inter * n);
    debug_assert_eq!(scales.len(), n);
    let qxs: Vec<QAct> = if w.dtype().is_quantized() && quant_dot() == QuantDot::Int8 {
        xs.iter().map(|x| QAct::quantize(x)).collect()
    } else {
        Vec::new()
    };
    if w.bytes() >= PARALLEL_ABOVE_BYTES && inter >= 2 {
        return expert_ffn_batch_2t(w, hidden, xs, &qxs, scales, act, outs);
    }
    ffn_rows(w, hidden, inter, 0..inter, xs, &qxs, scales, act, outs);
}

fn expert_ffn_batch_2t(
    w: ExpertWeights<'_>,
    hidden: usize,
    xs: &[&[f32]],
    qxs: &[QAct],
    scales: &[f32],
    act: &mut [f32],
    outs: &mut [&mut [f32]],
) {
    let n = xs.len();
    let inter = w.inter(hidden);
    let mid = inter / 2;
    let (act0, act1) = act.split_at_mut(mid * n);
    std::thread::scope(|s| {
        let second = s.spawn(move || {
            let mut buf = vec![0f32; n * hidden];
            {
                let mut rows: Vec<&mut [f32]> = buf.chunks_mut(hidden).collect();
                ffn_rows(
                    w,
                    hidden,
                    inter,
                    mid..inter,
                    xs,
                    qxs,
                    scales,
                    act1,
                    &mut rows,
                );
            }
            buf
        });
        ffn_rows(w, hidden, inter, 0..mid, xs, qxs, scales, act0, outs);
        let buf = second.join().expect("expert worker thread panicked");
        for (out, part) in outs.iter_mut().zip(buf.chunks(hidden)) {
            for (o, p) in out.iter_mut().zip(part) {
                *o += p;
            }
        }
    });
}

/// `down(silu(gate·x) * (up·x))` restricted to the intermediate `rows`,
/// accumulated into `outs`. `act` is scratch of length `rows.len() * xs.len()`.
/// `qxs` holds the int8 activations when `w` is quantised (else it is empty).
#[allow(clippy::too_many_arguments)]
fn ffn_rows(
    w: ExpertWeights<'_>,
    hidden: usize,
    inter: usize,
    rows: std::ops::Range<usize>,
    xs: &[&[f32]],
    qxs: &[QAct],
    scales: &[f32],
    act: &mut [f32],
    outs: &mut [&mut [f32]],
) {
    let k = kernels();
    let q: Vec<&QAct> = qxs.iter().collect();
    match w {
        ExpertWeights::F32(w) => ffn_rows_typed(
            w, hidden, k.dot_f32, k.axpy_f32, None, inter, rows, xs, scales, act, outs,
        ),
        ExpertWeights::F16(w) => ffn_rows_typed(
            w, hidden, k.dot_f16, k.axpy_f16, None, inter, rows, xs, scales, act, outs,
        ),
        ExpertWeights::Q8(w) if q.is_empty() => ffn_rows_typed(
            w,
            w.len() / (3 * inter),
            k.dot_q8_f32,
            k.axpy_q8,
            Some(k.axpy_f32),
            inter,
            rows,
            xs,
            scales,
            act,
            outs,
        ),
        ExpertWeights::Q4(w) if q.is_empty() => ffn_rows_typed(
            w,
            w.len() / (3 * inter),
            k.dot_q4_f32,
            k.axpy_q4,
            Some(k.axpy_f32),
            inter,
            rows,
            xs,
            scales,
            act,
            outs,
        ),
        ExpertWeights::Q8(w) => ffn_rows_typed(
            w,
            w.len() / (3 * inter),
            k.dot_q8,
            k.axpy_q8,
            Some(k.axpy_f32),
            inter,
            rows,
            &q,
            scales,
            act,
            outs,
        ),
        ExpertWeights::Q4(w) => ffn_rows_typed(
            w,
            w.len() / (3 * inter),
            k.dot_q4,
            k.axpy_q4,
            Some(k.axpy_f32),
            inter,
            rows,
            &q,
            scales,
            act,
            outs,
        ),
    }
}

/// `y += a * x` on f32.
type Axpy32 = fn(&mut [f32], f32, &[f32]);

/// The FFN over `rows` of the intermediate dimension for one weight element
/// type (`row` elements of `T` per weight row; `X` is the activation form the
/// dot product takes): gate/up dot products into `act`, then the down rows accumulated.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn ffn_rows_typed<T, X: ?Sized>(
    w: &[T],
    row: usize,
    dot: fn(&[T], &X) -> f32,
    axpy: fn(&mut [f32], f32, &[T]),
    widen: Option<Axpy32>,
    inter: usize,
    rows: std::ops::Range<usize>,
    xs: &[&X],
    scales: &[f32],
    act: &mut [f32],
    outs: &mut [&mut [f32]],
) {
    let n = xs.len();
    let r = rows.len();
    let (gate, rest) = w.split_at(inter * row);
    let (up, down) = rest.split_at(inter * row);
    for (j, i) in rows.clone().enumerate() {
        let g_row = &gate[i * row..(i + 1) * row];
        let u_row = &up[i * row..(i + 1) * row];
        for t in 0..n {
            let g = dot(g_row, xs[t]);
            let u = dot(u_row, xs[t]);
            act[t * r + j] = silu(g) * u * scales[t];
        }
    }
    // Quantised rows shared by several tokens are dequantised once.
    let mut wide = match widen {
        Some(_) if n > 1 => vec![0f32; outs[0].len()],
        _ => Vec::new(),
    };
    for (j, i) in rows.enumerate() {
        let d_row = &down[i * row..(i + 1) * row];
        if let (Some(axpy_f32), false) = (widen, wide.is_empty()) {
            wide.fill(0.0);
            axpy(&mut wide, 1.0, d_row);
            for t in 0..n {
                axpy_f32(&mut outs[t][..], act[t * r + j], &wide);
            }
            continue;
        }
        for t in 0..n {
            axpy(&mut outs[t][..], act[t * r + j], d_row);
        }
    }
}

#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// The selected implementations (chosen once per process).
#[derive(Clone, Copy)]
pub struct Kernels {
    pub name: &'static str,
    pub dot_f32: fn(&[f32], &[f32]) -> f32,
    pub axpy_f32: fn(&mut [f32], f32, &[f32]),
    pub dot_f16: fn(&[f16], &[f32]) -> f32,
    pub axpy_f16: fn(&mut [f32], f32, &[f16]),
    /// Quantised (Q8/Q4) rows: dot with int8 activations, axpy dequantising.
    pub dot_q8: fn(&[u8], &QAct) -> f32,
    pub dot_q4: fn(&[u8], &QAct) -> f32,
    pub axpy_q8: fn(&mut [f32], f32, &[u8]),
    pub axpy_q4: fn(&mut [f32], f32, &[u8]),
    /// Quantised rows dequantised into f32 FMAs against f32 activations.
    pub dot_q8_f32: fn(&[u8], &[f32]) -> f32,
    pub dot_q4_f32: fn(&[u8], &[f32]) -> f32,
}

/// How quantised gate/up rows meet the activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantDot {
    /// Activations quantised to int8 per block of 32, integer dot products (default).
    Int8,
    /// Weights dequantised on the fly into f32 FMAs.
    F32,
}

static QUANT_DOT_F32: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Process-wide choice for quantised experts (benchmarks compare the two).
pub fn set_quant_dot(q: QuantDot) {
    QUANT_DOT_F32.store(q == QuantDot::F32, std::sync::atomic::Ordering::Relaxed);
}

pub fn quant_dot() -> QuantDot {
    if QUANT_DOT_F32.load(std::sync::atomic::Ordering::Relaxed) {
        QuantDot::F32
    } else {
        QuantDot::Int8
    }
}

pub fn kernels() -> &'static Kernels {
    static K: std::sync::OnceLock<Kernels> = std::sync::OnceLock::new();
    K.get_or_init(select)
}

/// The portable kernels (also the reference the SIMD ones are tested against).
pub fn portable_kernels() -> Kernels {
    Kernels {
        name: "portable",
        dot_f32: portable::dot_f32,
        axpy_f32: portable::axpy_f32,
        dot_f16: portable::dot_f16,
        axpy_f16: portable::axpy_f16,
        dot_q8: qkernels::portable::dot_q8,
        dot_q4: qkernels::portable::dot_q4,
        axpy_q8: qkernels::portable::axpy_q8,
        axpy_q4: qkernels::portable::axpy_q4,
        dot_q8_f32: qkernels::portable::dot_q8_f32,
        dot_q4_f32: qkernels::portable::dot_q4_f32,
    }
}

fn select() -> Kernels {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
        {
            use qkernels::x86 as q;
            return Kernels {
                name: "avx2+fma+f16c",
                dot_f32: |a, b| unsafe { x86::dot_f32(a, b) },
                axpy_f32: |y, a, x| unsafe { x86::axpy_f32(y, a, x) },
                dot_f16: |a, b| unsafe { x86::dot_f16(a, b) },
                axpy_f16: |y, a, x| unsafe { x86::axpy_f16(y, a, x) },
                dot_q8: |w, x| unsafe { q::dot_q8(w, x) },
                dot_q4: |w, x| unsafe { q::dot_q4(w, x) },
                axpy_q8: |y, a, w| unsafe { q::axpy_q8(y, a, w) },
                axpy_q4: |y, a, w| unsafe { q::axpy_q4(y, a, w) },
                dot_q8_f32: |w, x| unsafe { q::dot_q8_f32(w, x) },
                dot_q4_f32: |w, x| unsafe { q::dot_q4_f32(w, x) },
            };
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        use qkernels::neon as q;
        // NEON is baseline on aarch64; sdot (dotprod) is optional (Cortex-A55+, Orin's A78AE has it).
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            return Kernels {
                name: "neon+dotprod",
                dot_q8: |w, x| unsafe { q::dot_q8_dotprod(w, x) },
                dot_q4: |w, x| unsafe { q::dot_q4_dotprod(w, x) },
                ..portable_kernels()
            };
        }
        return Kernels {
            name: "neon",
            dot_q8: |w, x| unsafe { q::dot_q8(w, x) },
            dot_q4: |w, x| unsafe { q::dot_q4(w, x) },
            ..portable_kernels()
        };
    }
    #[allow(unreachable_code)]
    portable_kernels()
}

/// Portable versions: 8 independent lanes so LLVM vectorises them (NEON on aarch64).
pub mod portable {
    use half::f16;

    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let mut acc = [0f32; 8];
        let (ac, ar) = a.split_at(a.len() / 8 * 8);
        let (bc, br) = b.split_at(ac.len());
        for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
            for l in 0..8 {
                acc[l] = x[l].mul_add(y[l], acc[l]);
            }
        }
        let mut s: f32 = acc.iter().sum();
        for (x, y) in ar.iter().zip(br) {
            s += x * y;
        }
        s
    }

    pub fn axpy_f32(y: &mut [f32], a: f32, x: &[f32]) {
        assert_eq!(y.len(), x.len());
        for (yi, xi) in y.iter_mut().zip(x) {
            *yi = a.mul_add(*xi, *yi);
        }
    }

    pub fn dot_f16(a: &[f16], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let mut acc = [0f32; 8];
        let (ac, ar) = a.split_at(a.len() / 8 * 8);
        let (bc, br) = b.split_at(ac.len());
        for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
            for l in 0..8 {
                acc[l] = x[l].to_f32().mul_add(y[l], acc[l]);
            }
        }
        let mut s: f32 = acc.iter().sum();
        for (x, y) in ar.iter().zip(br) {
            s += x.to_f32() * y;
        }
        s
    }

    pub fn axpy_f16(y: &mut [f32], a: f32, x: &[f16]) {
        assert_eq!(y.len(), x.len());
        for (yi, xi) in y.iter_mut().zip(x) {
            *yi = a.mul_add(xi.to_f32(), *yi);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use half::f16;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_loadu_ps(pa.add(i + 8 * j));
                let y = _mm256_loadu_ps(pb.add(i + 8 * j));
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i)),
                _mm256_loadu_ps(pb.add(i)),
                acc[0],
            );
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut r = hsum(s);
        while i < n {
            r += a[i] * b[i];
            i += 1;
        }
        r
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpy_f32(y: &mut [f32], a: f32, x: &[f32]) {
        assert_eq!(y.len(), x.len());
        let n = y.len();
        let (py, px) = (y.as_mut_ptr(), x.as_ptr());
        let va = _mm256_set1_ps(a);
        let mut i = 0;
        while i + 8 <= n {
            let r = _mm256_fmadd_ps(va, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)));
            _mm256_storeu_ps(py.add(i), r);
            i += 8;
        }
        while i < n {
            y[i] = a.mul_add(x[i], y[i]);
            i += 1;
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(a: &[f16], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let n = a.len();
        let (pa, pb) = (a.as_ptr() as *const u16, b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let h = _mm_loadu_si128(pa.add(i + 8 * j) as *const __m128i);
                let x = _mm256_cvtph_ps(h);
                *acc = _mm256_fmadd_ps(x, _mm256_loadu_ps(pb.add(i + 8 * j)), *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            let x = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(i) as *const __m128i));
            acc[0] = _mm256_fmadd_ps(x, _mm256_loadu_ps(pb.add(i)), acc[0]);
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut r = hsum(s);
        while i < n {
            r += a[i].to_f32() * b[i];
            i += 1;
        }
        r
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy_f16(y: &mut [f32], a: f32, x: &[f16]) {
        assert_eq!(y.len(), x.len());
        let n = y.len();
        let (py, px) = (y.as_mut_ptr(), x.as_ptr() as *const u16);
        let va = _mm256_set1_ps(a);
        let mut i = 0;
        while i + 8 <= n {
            let xv = _mm256_cvtph_ps(_mm_loadu_si128(px.add(i) as *const __m128i));
            _mm256_storeu_ps(
                py.add(i),
                _mm256_fmadd_ps(va, xv, _mm256_loadu_ps(py.add(i))),
            );
            i += 8;
        }
        while i < n {
            y[i] = a.mul_add(x[i].to_f32(), y[i]);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    fn scalar_ffn(w: &[f32], hidden: usize, x: &[f32]) -> Vec<f32> {
        let inter = w.len() / (3 * hidden);
        let mut out = vec![0f32; hidden];
        for i in 0..inter {
            let g: f64 = (0..hidden)
                .map(|h| w[i * hidden + h] as f64 * x[h] as f64)
                .sum();
            let u: f64 = (0..hidden)
                .map(|h| w[(inter + i) * hidden + h] as f64 * x[h] as f64)
                .sum();
            let a = (g / (1.0 + (-g).exp())) * u;
            for h in 0..hidden {
                out[h] += (a * w[(2 * inter + i) * hidden + h] as f64) as f32;
            }
        }
        out
    }

    #[test]
    fn kernels_match_scalar_reference() {
        let mut seed = 7;
        for &(hidden, inter) in &[(64usize, 32usize), (37, 11), (128, 256)] {
            let w: Vec<f32> = (0..3 * hidden * inter).map(|_| lcg(&mut seed)).collect();
            let x: Vec<f32> = (0..hidden).map(|_| lcg(&mut seed)).collect();
            let want = scalar_ffn(&w, hidden, &x);
            let mut act = vec![0f32; inter];
            let mut out = vec![0f32; hidden];
            expert_ffn(ExpertWeights::F32(&w), hidden, &x, 1.0, &mut act, &mut out);
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
            // f16 weights against the reference on the rounded weights
            let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
            let wr: Vec<f32> = wh.iter().map(|v| v.to_f32()).collect();
            let want = scalar_ffn(&wr, hidden, &x);
            let mut out = vec![0f32; hidden];
            expert_ffn(ExpertWeights::F16(&wh), hidden, &x, 1.0, &mut act, &mut out);
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn large_expert_on_two_threads_matches_scalar_reference() {
        let mut seed = 11;
        // 3 * 256 * 384 * 4 B = 1.1 MiB f32: the two-thread path (f16 also, at 2 * 1152 * 256 * 3)
        for &(hidden, inter) in &[(256usize, 384usize), (1152, 257)] {
            let w: Vec<f32> = (0..3 * hidden * inter)
                .map(|_| lcg(&mut seed) * 0.1)
                .collect();
            assert!(w.len() * 4 >= PARALLEL_ABOVE_BYTES);
            let xs: Vec<Vec<f32>> = (0..3)
                .map(|_| (0..hidden).map(|_| lcg(&mut seed)).collect())
                .collect();
            let scales = [1.0f32, 0.5, 0.25];
            let x_refs: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
            let mut act = vec![0f32; inter * xs.len()];
            let mut outs = vec![vec![0.1f32; hidden]; xs.len()];
            {
                let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
                expert_ffn_batch(
                    ExpertWeights::F32(&w),
                    hidden,
                    &x_refs,
                    &scales,
                    &mut act,
                    &mut o,
                );
            }
            for (t, out) in outs.iter().enumerate() {
                let want = scalar_ffn(&w, hidden, &xs[t]);
                for (a, b) in out.iter().zip(&want) {
                    assert!((a - (0.1 + scales[t] * b)).abs() < 1e-4, "{a} vs {b}");
                }
            }
            let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
            let wr: Vec<f32> = wh.iter().map(|v| v.to_f32()).collect();
            if wh.len() * 2 >= PARALLEL_ABOVE_BYTES {
                let want = scalar_ffn(&wr, hidden, &xs[0]);
                let mut act = vec![0f32; inter];
                let mut out = vec![0f32; hidden];
                expert_ffn(
                    ExpertWeights::F16(&wh),
                    hidden,
                    &xs[0],
                    1.0,
                    &mut act,
                    &mut out,
                );
                for (a, b) in out.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-4, "{a} vs {b}");
                }
            }
        }
    }

    /// Quantised experts (one and two threads, one and three tokens) against the
    /// f64 reference on the decoded weights and the int8-rounded activations.
    #[test]
    fn quantized_experts_match_scalar_reference() {
        use crate::bundle::manifest::ExpertDtype;
        use crate::bundle::quant::{decode_row, encode_rows};
        let mut seed = 5;
        // (256, 2048): Q8 is 3 * 2048 * 8 * 34 B = 1.6 MiB, the two-thread path
        for &(hidden, inter) in &[(64usize, 24usize), (256, 2048)] {
            let w: Vec<f32> = (0..3 * hidden * inter)
                .map(|_| lcg(&mut seed) * 0.2)
                .collect();
            let xs: Vec<Vec<f32>> = (0..3)
                .map(|_| (0..hidden).map(|_| lcg(&mut seed)).collect())
                .collect();
            let scales = [1.0f32, -0.5, 0.25];
            for dt in [ExpertDtype::Q8, ExpertDtype::Q4] {
                let mut bytes = Vec::new();
                encode_rows(&w, hidden, dt, &mut bytes);
                let mut wd = Vec::new();
                for r in bytes.chunks(dt.row_bytes(hidden)) {
                    decode_row(r, hidden, dt, &mut wd);
                }
                let weights = match dt {
                    ExpertDtype::Q8 => ExpertWeights::Q8(&bytes),
                    _ => ExpertWeights::Q4(&bytes),
                };
                assert_eq!(weights.inter(hidden), inter);
                let x_refs: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
                let mut act = vec![0f32; inter * xs.len()];
                let mut outs = vec![vec![0f32; hidden]; xs.len()];
                {
                    let mut o: Vec<&mut [f32]> =
                        outs.iter_mut().map(|v| v.as_mut_slice()).collect();
                    expert_ffn_batch(weights, hidden, &x_refs, &scales, &mut act, &mut o);
                }
                for (t, out) in outs.iter().enumerate() {
                    let q = QAct::quantize(&xs[t]);
                    let xq: Vec<f32> =
                        q.qs.iter()
                            .enumerate()
                            .map(|(j, &v)| v as f32 * q.d[j / 32])
                            .collect();
                    let want = scalar_ffn(&wd, hidden, &xq);
                    let mag = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                    for (a, b) in out.iter().zip(&want) {
                        assert!(
                            (a - scales[t] * b).abs() < 1e-4 * mag.max(1.0),
                            "{dt:?} {hidden}x{inter}: {a} vs {}",
                            scales[t] * b
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn portable_and_selected_agree() {
        let mut seed = 3;
        let a: Vec<f32> = (0..1027).map(|_| lcg(&mut seed)).collect();
        let b: Vec<f32> = (0..1027).map(|_| lcg(&mut seed)).collect();
        let k = kernels();
        assert!(((k.dot_f32)(&a, &b) - portable::dot_f32(&a, &b)).abs() < 1e-4);
        let h: Vec<f16> = a.iter().map(|&v| f16::from_f32(v)).collect();
        assert!(((k.dot_f16)(&h, &b) - portable::dot_f16(&h, &b)).abs() < 1e-4);
        let mut y1 = b.clone();
        let mut y2 = b.clone();
        (k.axpy_f16)(&mut y1, 0.5, &h);
        portable::axpy_f16(&mut y2, 0.5, &h);
        assert!(y1.iter().zip(&y2).all(|(p, q)| (p - q).abs() < 1e-5));
    }
}
