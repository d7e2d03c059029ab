//! The element-wise and attention operations of the native step, in f32, in
//! the order transformers (and the bundle's ONNX graphs) compute them, so
//! results agree within float rounding.

use super::linear::SERIAL_BELOW_BYTES;
use crate::experts::kernels::kernels;
use crate::runtime::pool::{Pool, SharedMut};

#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// RMSNorm of every row of `w.len()` values of `x`, in place:
/// `x / sqrt(mean(x^2) + eps) * w`.
pub fn rms_norm_rows(x: &mut [f32], w: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(w.len()) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for (v, w) in row.iter_mut().zip(w) {
            *v = *v * inv * w;
        }
    }
}

/// rotate-half RoPE in place on `x` [T, heads, D] with `cos`/`sin` [T, D]:
/// `x * cos + cat(-x2, x1) * sin`.
pub fn rope(x: &mut [f32], cos: &[f32], sin: &[f32], heads: usize, d: usize) {
    let half = d / 2;
    for (ti, tok) in x.chunks_exact_mut(heads * d).enumerate() {
        let (c, s) = (&cos[ti * d..(ti + 1) * d], &sin[ti * d..(ti + 1) * d]);
        for head in tok.chunks_exact_mut(d) {
            for i in 0..half {
                let (a, b) = (head[i], head[i + half]);
                head[i] = a * c[i] - b * s[i];
                head[i + half] = b * c[i + half] + a * s[i + half];
            }
        }
    }
}

/// Grouped-query attention of `t` new tokens over `p` past and the `t` new
/// positions: `q` [T, NH, D], keys/values [P, KVH, D] (past) and [T, KVH, D]
/// (new), `mask` [T, P+T] additive. Returns the context [T, NH * D].
#[allow(clippy::too_many_arguments)]
pub fn attention(
    pool: &Pool,
    q: &[f32],
    past_k: &[f32],
    new_k: &[f32],
    past_v: &[f32],
    new_v: &[f32],
    mask: &[f32],
    t: usize,
    p: usize,
    nh: usize,
    kvh: usize,
    d: usize,
) -> Vec<f32> {
    let s = p + t;
    let groups = nh / kvh;
    let scale = 1.0 / (d as f32).sqrt();
    let row = kvh * d;
    let key = |j: usize, g: usize| -> &[f32] {
        if j < p {
            &past_k[j * row + g * d..j * row + (g + 1) * d]
        } else {
            &new_k[(j - p) * row + g * d..(j - p) * row + (g + 1) * d]
        }
    };
    let value = |j: usize, g: usize| -> &[f32] {
        if j < p {
            &past_v[j * row + g * d..j * row + (g + 1) * d]
        } else {
            &new_v[(j - p) * row + g * d..(j - p) * row + (g + 1) * d]
        }
    };
    let mut ctx = vec![0f32; t * nh * d];
    let out = SharedMut::new(&mut ctx);
    let k = kernels();
    // one unit: token i, head hh
    let unit = |u: usize, scores: &mut Vec<f32>| {
        let (i, hh) = (u / nh, u % nh);
        let g = hh / groups;
        let qv = &q[(i * nh + hh) * d..(i * nh + hh + 1) * d];
        let m = &mask[i * s..(i + 1) * s];
        scores.clear();
        let mut max = f32::NEG_INFINITY;
        for (j, mj) in m.iter().enumerate() {
            let sc = (k.dot_f32)(qv, key(j, g)) * scale + mj;
            max = max.max(sc);
            scores.push(sc);
        }
        let mut sum = 0f32;
        for sc in scores.iter_mut() {
            *sc = if *sc == f32::NEG_INFINITY {
                0.0
            } else {
                (*sc - max).exp()
            };
            sum += *sc;
        }
        // SAFETY: unit u owns ctx[u * d..(u + 1) * d].
        let c = unsafe { out.slice(u * d..(u + 1) * d) };
        for (j, sc) in scores.iter().enumerate() {
            if *sc != 0.0 {
                (k.axpy_f32)(c, sc / sum, value(j, g));
            }
        }
    };
    let units = t * nh;
    let work_bytes = units * s * d * 8;
    if work_bytes < SERIAL_BELOW_BYTES || pool.threads() == 1 {
        let mut scores = Vec::with_capacity(s);
        (0..units).for_each(|u| unit(u, &mut scores));
    } else {
        let chunks = units.min(pool.threads() * 8);
        let per = units.div_ceil(chunks);
        pool.run(chunks, &|c, _| {
            let mut scores = Vec::with_capacity(s);
            for u in c * per..((c + 1) * per).min(units) {
                unit(u, &mut scores);
            }
        });
    }
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_single_position_returns_its_value() {
        let pool = Pool::new(1);
        let (nh, kvh, d) = (4, 2, 8);
        let q: Vec<f32> = (0..nh * d).map(|i| i as f32 * 0.1).collect();
        let k: Vec<f32> = (0..kvh * d).map(|i| i as f32 * 0.2).collect();
        let v: Vec<f32> = (0..kvh * d).map(|i| i as f32).collect();
        let ctx = attention(&pool, &q, &[], &k, &[], &v, &[0.0], 1, 0, nh, kvh, d);
        // every head sees one position: its context is that position's value
        for hh in 0..nh {
            let g = hh / (nh / kvh);
            assert_eq!(&ctx[hh * d..(hh + 1) * d], &v[g * d..(g + 1) * d]);
        }
    }

    #[test]
    fn masked_positions_are_ignored() {
        let pool = Pool::new(2);
        let (nh, kvh, d) = (2, 1, 4);
        let q = vec![1.0; 2 * nh * d];
        let k = vec![0.5; 2 * kvh * d];
        let v: Vec<f32> = (0..2 * kvh * d).map(|i| i as f32).collect();
        let mask = [0.0, f32::NEG_INFINITY, 0.0, 0.0];
        let ctx = attention(&pool, &q, &[], &k, &[], &v, &mask, 2, 0, nh, kvh, d);
        // token 0 sees only position 0; token 1 averages both (equal scores)
        assert_eq!(&ctx[..d], &v[..d]);
        assert_eq!(ctx[nh * d], (v[0] + v[d]) / 2.0);
    }

    #[test]
    fn rope_at_position_zero_is_identity() {
        let d = 8;
        let mut x: Vec<f32> = (0..2 * d).map(|i| i as f32).collect();
        let want = x.clone();
        rope(&mut x, &[1.0; 8], &[0.0; 8], 2, d);
        assert_eq!(x, want);
    }
}
