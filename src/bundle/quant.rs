//! The quantised expert row formats (`ExpertDtype::Q8`, `ExpertDtype::Q4`):
//! encoding f32 rows into blocks and decoding them back. Owns the byte layout
//! only (documented on `ExpertDtype`); the kernels that compute with it live in
//! `experts::qkernels`.

use half::f16;

use super::manifest::{ExpertDtype, QUANT_GROUP};

/// Append one row (`row.len()` a multiple of `QUANT_GROUP`) encoded as `dtype`.
pub fn encode_row(row: &[f32], dtype: ExpertDtype, out: &mut Vec<u8>) {
    match dtype {
        ExpertDtype::F32 => row
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        ExpertDtype::F16 => row
            .iter()
            .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        ExpertDtype::Q8 => row.chunks(QUANT_GROUP).for_each(|b| encode_q8(b, out)),
        ExpertDtype::Q4 => row.chunks(QUANT_GROUP).for_each(|b| encode_q4(b, out)),
    }
}

/// Append `data` (whole rows of `h` values) encoded as `dtype`.
pub fn encode_rows(data: &[f32], h: usize, dtype: ExpertDtype, out: &mut Vec<u8>) {
    debug_assert_eq!(data.len() % h, 0);
    out.reserve(data.len() / h * dtype.row_bytes(h));
    for row in data.chunks(h) {
        encode_row(row, dtype, out);
    }
}

/// Q8_0: d = max|x| / 127, q = round(x / d).
fn encode_q8(b: &[f32], out: &mut Vec<u8>) {
    debug_assert_eq!(b.len(), QUANT_GROUP);
    let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let dh = f16::from_f32(d);
    out.extend_from_slice(&dh.to_le_bytes());
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    for v in b {
        out.push(((v * id).round().clamp(-127.0, 127.0) as i8) as u8);
    }
}

/// Q4_0 (as llama.cpp): the value of largest magnitude maps to -8, d = that / -8,
/// nibble = clamp(round(x / d) + 8, 0, 15).
fn encode_q4(b: &[f32], out: &mut Vec<u8>) {
    debug_assert_eq!(b.len(), QUANT_GROUP);
    let mut max = 0f32;
    for &v in b {
        if v.abs() > max.abs() {
            max = v;
        }
    }
    let d = max / -8.0;
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
    for j in 0..QUANT_GROUP / 2 {
        out.push(q(b[j]) | (q(b[j + QUANT_GROUP / 2]) << 4));
    }
}

/// Decode one encoded row of `h` values into f32 (the reference the kernels are tested against).
pub fn decode_row(bytes: &[u8], h: usize, dtype: ExpertDtype, out: &mut Vec<f32>) {
    assert_eq!(bytes.len(), dtype.row_bytes(h));
    match dtype {
        ExpertDtype::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap())),
        ),
        ExpertDtype::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes(c.try_into().unwrap()).to_f32()),
        ),
        ExpertDtype::Q8 => {
            for b in bytes.chunks_exact(dtype.block_bytes()) {
                let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
                out.extend(b[2..].iter().map(|&q| d * (q as i8) as f32));
            }
        }
        ExpertDtype::Q4 => {
            for b in bytes.chunks_exact(dtype.block_bytes()) {
                let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
                out.extend(b[2..].iter().map(|&q| d * ((q & 15) as i32 - 8) as f32));
                out.extend(b[2..].iter().map(|&q| d * ((q >> 4) as i32 - 8) as f32));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(row: &[f32], dtype: ExpertDtype) -> Vec<f32> {
        let mut bytes = Vec::new();
        encode_row(row, dtype, &mut bytes);
        assert_eq!(bytes.len(), dtype.row_bytes(row.len()));
        let mut back = Vec::new();
        decode_row(&bytes, row.len(), dtype, &mut back);
        back
    }

    proptest! {
        /// Q8: every value within half a step (d/2) of the original, plus f16 rounding of d.
        #[test]
        fn q8_error_is_within_half_a_step(
            row in prop::collection::vec(-4.0f32..4.0, 32 * 4),
        ) {
            let back = roundtrip(&row, ExpertDtype::Q8);
            for (b, chunk) in back.chunks(32).zip(row.chunks(32)) {
                let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
                let step = amax / 127.0;
                for (x, y) in chunk.iter().zip(b) {
                    prop_assert!((x - y).abs() <= 0.5 * step + amax * 1e-3 + 1e-6, "{x} vs {y}");
                }
            }
        }

        /// Q4: within half a step (|max|/8 per step), except values near +max
        /// that clamp at nibble 15 (one step at most).
        #[test]
        fn q4_error_is_within_a_step(
            row in prop::collection::vec(-4.0f32..4.0, 32 * 4),
        ) {
            let back = roundtrip(&row, ExpertDtype::Q4);
            for (b, chunk) in back.chunks(32).zip(row.chunks(32)) {
                let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
                let step = amax / 8.0;
                for (x, y) in chunk.iter().zip(b) {
                    prop_assert!((x - y).abs() <= step + amax * 1e-3 + 1e-6, "{x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn exact_values_survive() {
        // integers with max |x| = 127: d = 1, exact
        let row: Vec<f32> = (0..32).map(|i| (i * 8 - 127) as f32).collect();
        assert_eq!(roundtrip(&row, ExpertDtype::Q8), row);
        // Q4 of -8..7 times a power of two is exact
        let row: Vec<f32> = (0..32).map(|i| ((i % 16) as f32 - 8.0) * 0.25).collect();
        assert_eq!(roundtrip(&row, ExpertDtype::Q4), row);
        // all zeros
        assert_eq!(roundtrip(&[0.0; 32], ExpertDtype::Q4), vec![0.0; 32]);
        assert_eq!(roundtrip(&[0.0; 32], ExpertDtype::Q8), vec![0.0; 32]);
    }

    #[test]
    fn sizes() {
        assert_eq!(ExpertDtype::Q8.row_bytes(128), 4 * 34);
        assert_eq!(ExpertDtype::Q4.row_bytes(128), 4 * 18);
        assert_eq!(ExpertDtype::Q4.expert_bytes(512, 1024), 3 * 512 * 32 * 18);
    }
}
