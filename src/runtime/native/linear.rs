//! Linear algebra over encoded weight rows (f32, f16, q8, q4; the layouts of
//! `ExpertDtype`), spread over the compute pool. Decode is mat-vec work: each
//! chunk of output rows streams its own weight rows through the SIMD dot
//! kernels (`experts::kernels`, chosen at run time). Prefill is matrix work:
//! each chunk of weight rows is widened to an f32 tile once and multiplied
//! with all tokens by the `gemm` crate (single-threaded per chunk; the pool
//! spreads the chunks). Owns no weights and no model logic.

use half::f16;

use crate::bundle::manifest::ExpertDtype;
use crate::experts::kernels::{kernels, Kernels};
use crate::experts::qkernels::QAct;
use crate::runtime::pool::{Pool, SharedMut};

/// Below this many tokens a product runs as mat-vec work (weights read once,
/// every token dotted against each row), above it as GEMM.
pub const GEMM_FROM_TOKENS: usize = 6;
/// Work below this many weight bytes runs on the caller alone.
pub const SERIAL_BELOW_BYTES: usize = 96 * 1024;
/// Rows per chunk of a GEMM (one f32 tile of this many rows per thread).
const GEMM_ROWS: usize = 64;

/// `rows` rows of `cols` values, encoded as `enc`, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    pub enc: ExpertDtype,
    pub rows: usize,
    pub cols: usize,
    pub bytes: &'a [u8],
}

/// An activation row in the forms the kernels take: f32, plus int8 blocks
/// when the weights are quantised.
pub struct Act<'a> {
    pub x: &'a [f32],
    pub q: Option<QAct>,
}

impl<'a> Act<'a> {
    pub fn new(x: &'a [f32], enc: ExpertDtype) -> Act<'a> {
        Act {
            x,
            q: enc.is_quantized().then(|| QAct::quantize(x)),
        }
    }
}

impl<'a> Rows<'a> {
    pub fn new(enc: ExpertDtype, rows: usize, cols: usize, bytes: &'a [u8]) -> Rows<'a> {
        assert_eq!(
            bytes.len(),
            rows * enc.row_bytes(cols),
            "rows and bytes disagree"
        );
        Rows {
            enc,
            rows,
            cols,
            bytes,
        }
    }
    pub fn row_bytes(&self) -> usize {
        self.enc.row_bytes(self.cols)
    }
    pub fn row(&self, r: usize) -> &'a [u8] {
        let b = self.row_bytes();
        &self.bytes[r * b..(r + 1) * b]
    }
    /// Rows `r0..r1` as their own view.
    pub fn sub(&self, r0: usize, r1: usize) -> Rows<'a> {
        let b = self.row_bytes();
        Rows {
            rows: r1 - r0,
            bytes: &self.bytes[r0 * b..r1 * b],
            ..*self
        }
    }
    /// Row `r` dotted with `x`.
    #[inline]
    pub fn dot(&self, k: &Kernels, r: usize, x: &Act<'_>) -> f32 {
        let w = self.row(r);
        match (self.enc, &x.q) {
            (ExpertDtype::F32, _) => (k.dot_f32)(bytemuck::cast_slice(w), x.x),
            (ExpertDtype::F16, _) => (k.dot_f16)(bytemuck::cast_slice(w), x.x),
            (ExpertDtype::Q8, Some(q)) => (k.dot_q8)(w, q),
            (ExpertDtype::Q4, Some(q)) => (k.dot_q4)(w, q),
            (ExpertDtype::Q8, None) => (k.dot_q8_f32)(w, x.x),
            (ExpertDtype::Q4, None) => (k.dot_q4_f32)(w, x.x),
        }
    }
    /// `y += a * row r`.
    #[inline]
    pub fn axpy(&self, k: &Kernels, r: usize, a: f32, y: &mut [f32]) {
        let w = self.row(r);
        match self.enc {
            ExpertDtype::F32 => (k.axpy_f32)(y, a, bytemuck::cast_slice(w)),
            ExpertDtype::F16 => (k.axpy_f16)(y, a, bytemuck::cast_slice(w)),
            ExpertDtype::Q8 => (k.axpy_q8)(y, a, w),
            ExpertDtype::Q4 => (k.axpy_q4)(y, a, w),
        }
    }
    /// Rows widened to f32 into `out` (`rows * cols` values).
    pub fn widen(&self, k: &Kernels, out: &mut [f32]) {
        match self.enc {
            ExpertDtype::F32 => out.copy_from_slice(bytemuck::cast_slice(self.bytes)),
            ExpertDtype::F16 => {
                let src: &[f16] = bytemuck::cast_slice(self.bytes);
                half::slice::HalfFloatSliceExt::convert_to_f32_slice(src, out);
            }
            _ => {
                for (r, o) in out.chunks_exact_mut(self.cols).enumerate() {
                    o.fill(0.0);
                    self.axpy(k, r, 1.0, o);
                }
            }
        }
    }
    /// Row `r` as f32 (an embedding lookup).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        self.sub(r, r + 1).widen(kernels(), out);
    }
}

/// Chunks of about equal rows for a pool: enough that a thread losing its
/// core holds back little, not so many that claiming them costs.
fn row_chunks(rows: usize, threads: usize, min_rows: usize) -> usize {
    let want = threads * 4;
    (rows / min_rows).clamp(1, want)
}

/// `y[t][r] = w_r · x_t` for `t` tokens (`x` is [t, cols], `y` is [t, rows]).
pub fn matmul(pool: &Pool, w: Rows<'_>, x: &[f32], t: usize, y: &mut [f32]) {
    assert_eq!(x.len(), t * w.cols);
    assert_eq!(y.len(), t * w.rows);
    if t >= GEMM_FROM_TOKENS {
        return gemm_rows(pool, w, x, t, y);
    }
    let acts: Vec<Act<'_>> = x.chunks_exact(w.cols).map(|x| Act::new(x, w.enc)).collect();
    let serial = w.bytes.len() < SERIAL_BELOW_BYTES;
    let chunks = if serial {
        1
    } else {
        row_chunks(w.rows, pool.threads(), 16)
    };
    let per = w.rows.div_ceil(chunks);
    let out = SharedMut::new(y);
    let k = kernels();
    let job = |c: usize, _slot: usize| {
        let (r0, r1) = (c * per, ((c + 1) * per).min(w.rows));
        for r in r0..r1 {
            for (ti, a) in acts.iter().enumerate() {
                let v = w.dot(k, r, a);
                // SAFETY: element (ti, r) belongs to this chunk's rows only.
                unsafe { out.slice(ti * w.rows + r..ti * w.rows + r + 1)[0] = v };
            }
        }
    };
    if serial {
        job(0, 0);
    } else {
        pool.run(chunks, &job);
    }
}

/// The GEMM path of `matmul`.
fn gemm_rows(pool: &Pool, w: Rows<'_>, x: &[f32], t: usize, y: &mut [f32]) {
    let chunks = w.rows.div_ceil(GEMM_ROWS);
    let tile_len = GEMM_ROWS * w.cols;
    let needs_tile = w.enc != ExpertDtype::F32;
    let mut tiles = vec![
        0f32;
        if needs_tile {
            pool.threads() * tile_len
        } else {
            0
        }
    ];
    let tiles = SharedMut::new(&mut tiles);
    let out = SharedMut::new(y);
    let k = kernels();
    pool.run(chunks, &|c, slot| {
        let (r0, r1) = (c * GEMM_ROWS, ((c + 1) * GEMM_ROWS).min(w.rows));
        let part = w.sub(r0, r1);
        let n = r1 - r0;
        let tile: &[f32] = if needs_tile {
            // SAFETY: each slot is one thread at a time; slots own disjoint tiles.
            let tile = unsafe { tiles.slice(slot * tile_len..slot * tile_len + n * w.cols) };
            part.widen(k, tile);
            tile
        } else {
            bytemuck::cast_slice(part.bytes)
        };
        // SAFETY: columns r0..r1 of every row of y belong to this chunk; gemm
        // writes exactly dst[i * rows + r0 + j] for i < t, j < n.
        unsafe {
            let dst = out.slice(0..t * w.rows).as_mut_ptr().add(r0);
            gemm::gemm(
                t,
                n,
                w.cols,
                dst,
                1,
                w.rows as isize,
                false,
                x.as_ptr(),
                1,
                w.cols as isize,
                tile.as_ptr(),
                w.cols as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    });
}

/// `y[t] += a[t][i] * w_i` summed over rows i (`a` is [t, rows], `y` [t, cols]):
/// the transposed product, for weights stored as rows of the output (down^T).
/// Serial: callers parallelise over whole experts or row ranges.
pub fn matmul_t_acc(w: Rows<'_>, a: &[f32], t: usize, y: &mut [f32], tile: &mut Vec<f32>) {
    assert_eq!(a.len(), t * w.rows);
    assert_eq!(y.len(), t * w.cols);
    let k = kernels();
    if t < GEMM_FROM_TOKENS {
        for r in 0..w.rows {
            for ti in 0..t {
                let s = a[ti * w.rows + r];
                if s != 0.0 {
                    w.axpy(k, r, s, &mut y[ti * w.cols..(ti + 1) * w.cols]);
                }
            }
        }
        return;
    }
    let b: &[f32] = if w.enc == ExpertDtype::F32 {
        bytemuck::cast_slice(w.bytes)
    } else {
        tile.resize(w.rows * w.cols, 0.0);
        w.widen(k, tile);
        tile
    };
    // SAFETY: plain row-major buffers of the asserted sizes.
    unsafe {
        gemm::gemm(
            t,
            w.cols,
            w.rows,
            y.as_mut_ptr(),
            1,
            w.cols as isize,
            true,
            a.as_ptr(),
            1,
            w.rows as isize,
            b.as_ptr(),
            1,
            w.cols as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::quant::{decode_row, encode_rows};

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// The reference: decode every row to f32 and multiply in f64.
    fn reference(
        enc: ExpertDtype,
        bytes: &[u8],
        rows: usize,
        cols: usize,
        x: &[f32],
        t: usize,
    ) -> Vec<f32> {
        let rb = enc.row_bytes(cols);
        let mut y = vec![0f32; t * rows];
        for r in 0..rows {
            let mut w = Vec::new();
            decode_row(&bytes[r * rb..(r + 1) * rb], cols, enc, &mut w);
            for ti in 0..t {
                let s: f64 = w
                    .iter()
                    .zip(&x[ti * cols..])
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum();
                y[ti * rows + r] = s as f32;
            }
        }
        y
    }

    #[test]
    fn matmul_matches_reference_for_every_encoding_and_path() {
        let pool = Pool::new(2);
        let (rows, cols) = (200, 96);
        let w = data(rows * cols, 7);
        for enc in [
            ExpertDtype::F32,
            ExpertDtype::F16,
            ExpertDtype::Q8,
            ExpertDtype::Q4,
        ] {
            let mut bytes = Vec::new();
            encode_rows(&w, cols, enc, &mut bytes);
            let m = Rows::new(enc, rows, cols, &bytes);
            for t in [1, 3, GEMM_FROM_TOKENS, 17] {
                let x = data(t * cols, 11 + t as u32);
                let want = reference(enc, &bytes, rows, cols, &x, t);
                let mut y = vec![f32::NAN; t * rows];
                matmul(&pool, m, &x, t, &mut y);
                // int8 activations (q8/q4 at mat-vec sizes) round x per block
                let tol = if enc.is_quantized() && t < GEMM_FROM_TOKENS {
                    0.05
                } else {
                    1e-3
                };
                for (a, b) in y.iter().zip(&want) {
                    assert!((a - b).abs() <= tol, "{enc:?} t={t}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn transposed_accumulate_matches_reference() {
        let (rows, cols) = (64, 64);
        let w = data(rows * cols, 3);
        for enc in [
            ExpertDtype::F32,
            ExpertDtype::F16,
            ExpertDtype::Q8,
            ExpertDtype::Q4,
        ] {
            let mut bytes = Vec::new();
            encode_rows(&w, cols, enc, &mut bytes);
            let m = Rows::new(enc, rows, cols, &bytes);
            for t in [1, 8] {
                let a = data(t * rows, 5);
                let mut y = vec![1f32; t * cols];
                matmul_t_acc(m, &a, t, &mut y, &mut Vec::new());
                for ti in 0..t {
                    for c in 0..cols {
                        let mut s = 1f64;
                        for r in 0..rows {
                            let mut row = Vec::new();
                            decode_row(m.row(r), cols, enc, &mut row);
                            s += a[ti * rows + r] as f64 * row[c] as f64;
                        }
                        assert!((y[ti * cols + c] as f64 - s).abs() < 1e-3, "{enc:?}");
                    }
                }
            }
        }
    }
}
