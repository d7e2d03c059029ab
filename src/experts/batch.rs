//! The routed experts of one layer step computed together on the compute
//! pool. Few tokens per expert (decode): every expert's gate/up rows are cut
//! into blocks that threads claim, then its down rows likewise, each thread
//! adding into its own output that is summed at the end; so two threads
//! stream disjoint weight rows whatever the number of experts. Many tokens
//! per expert (prefill): each expert is one piece of work, its gate/up and
//! down products batched GEMMs over its tokens. Owns no weights and no
//! routing; the engine decides which experts run for which tokens.

use super::ExpertWeights;
use crate::experts::kernels::kernels;
use crate::runtime::native::linear::{
    matmul, matmul_t_acc, Act, Rows, GEMM_FROM_TOKENS, SERIAL_BELOW_BYTES,
};
use crate::runtime::pool::{Pool, SharedMut};

/// One expert and the (token, router weight) pairs it serves; tokens distinct.
pub struct Work<'a> {
    pub w: ExpertWeights<'a>,
    pub tokens: &'a [(usize, f32)],
}

/// Intermediate rows per block of decode work.
const BLOCK: usize = 32;

fn parts(w: ExpertWeights<'_>, h: usize) -> [Rows<'_>; 3] {
    let enc = w.dtype();
    let i = w.inter(h);
    let all = Rows::new(enc, 3 * i, h, w.as_bytes());
    [all.sub(0, i), all.sub(i, 2 * i), all.sub(2 * i, 3 * i)]
}

/// Add `weight * ffn(x_token)` of every work item into `out` ([T, H]).
pub fn run(pool: &Pool, h: usize, x: &[f32], items: &[Work<'_>], out: &mut [f32]) {
    if items.is_empty() {
        return;
    }
    let t = x.len() / h;
    if items.iter().any(|it| it.tokens.len() >= GEMM_FROM_TOKENS) {
        return run_batched(pool, h, x, t, items, out);
    }
    let k = kernels();
    // every token in the form the weights take, quantised once for all items
    let enc = items[0].w.dtype();
    assert!(
        items.iter().all(|it| it.w.dtype() == enc),
        "one call runs experts of one dtype"
    );
    let acts: Vec<Act<'_>> = x.chunks_exact(h).map(|x| Act::new(x, enc)).collect();
    // blocks: (item, first row)
    let mut blocks = Vec::new();
    let mut act_off = Vec::with_capacity(items.len());
    let mut total_act = 0;
    let mut bytes = 0;
    for (n, it) in items.iter().enumerate() {
        let i = it.w.inter(h);
        act_off.push(total_act);
        total_act += i * it.tokens.len();
        bytes += it.w.bytes();
        for r in (0..i).step_by(BLOCK) {
            blocks.push((n, r));
        }
    }
    let mut act = vec![0f32; total_act];
    let serial = bytes < SERIAL_BELOW_BYTES || pool.threads() == 1;
    // Down rows are summed per group of blocks, groups fixed by the sizes and
    // the thread count alone, then the groups in order: the result does not
    // depend on which thread ran what.
    let groups = if serial {
        1
    } else {
        (pool.threads() * 2).min(blocks.len())
    };
    let per_group = blocks.len().div_ceil(groups);
    let mut partial = vec![0f32; groups * t * h];
    {
        let act_w = SharedMut::new(&mut act);
        let gate_up = |b: usize, _slot: usize| {
            let (n, r0) = blocks[b];
            let it = &items[n];
            let [g, u, _] = parts(it.w, h);
            let r1 = (r0 + BLOCK).min(g.rows);
            let i = g.rows;
            for (j, &(ti, wt)) in it.tokens.iter().enumerate() {
                let a = &acts[ti];
                // SAFETY: block (n, r0) owns act[item n, token j, rows r0..r1].
                let dst = unsafe { act_w.slice(act_off[n] + j * i + r0..act_off[n] + j * i + r1) };
                for (d, r) in dst.iter_mut().zip(r0..r1) {
                    let gv = g.dot(k, r, a);
                    let uv = u.dot(k, r, a);
                    *d = super::kernels::silu(gv) * uv * wt;
                }
            }
        };
        if serial {
            (0..blocks.len()).for_each(|b| gate_up(b, 0));
        } else {
            pool.run(blocks.len(), &gate_up);
        }
    }
    {
        let part_w = SharedMut::new(&mut partial);
        let act = &act;
        let down = |grp: usize, _slot: usize| {
            // SAFETY: group `grp` owns its part of `partial`.
            let mine = unsafe { part_w.slice(grp * t * h..(grp + 1) * t * h) };
            for &(n, r0) in blocks.iter().skip(grp * per_group).take(per_group) {
                let it = &items[n];
                let [_, _, d] = parts(it.w, h);
                let r1 = (r0 + BLOCK).min(d.rows);
                let i = d.rows;
                for (j, &(ti, _)) in it.tokens.iter().enumerate() {
                    let y = &mut mine[ti * h..(ti + 1) * h];
                    for r in r0..r1 {
                        let s = act[act_off[n] + j * i + r];
                        if s != 0.0 {
                            d.axpy(k, r, s, y);
                        }
                    }
                }
            }
        };
        if serial {
            down(0, 0);
        } else {
            pool.run(groups, &down);
        }
    }
    for part in partial.chunks_exact(t * h) {
        for (o, p) in out.iter_mut().zip(part) {
            *o += p;
        }
    }
}

/// Prefill: one piece of work per expert, GEMMs over its tokens; each
/// expert's rows are added into `out` in item order afterwards (deterministic).
fn run_batched(pool: &Pool, h: usize, x: &[f32], _t: usize, items: &[Work<'_>], out: &mut [f32]) {
    let offs: Vec<usize> = items
        .iter()
        .scan(0, |o, it| {
            let start = *o;
            *o += it.tokens.len() * h;
            Some(start)
        })
        .collect();
    let total: usize = items.iter().map(|it| it.tokens.len() * h).sum();
    let mut ys = vec![0f32; total];
    let ys_w = SharedMut::new(&mut ys);
    pool.run(items.len(), &|n, _slot| {
        let it = &items[n];
        let [g, u, d] = parts(it.w, h);
        let (m, i) = (it.tokens.len(), g.rows);
        let mut xs = Vec::with_capacity(m * h);
        for &(ti, _) in it.tokens {
            xs.extend_from_slice(&x[ti * h..(ti + 1) * h]);
        }
        let mut gv = vec![0f32; m * i];
        let mut uv = vec![0f32; m * i];
        // inside a region these run on this thread alone
        matmul(pool, g, &xs, m, &mut gv);
        matmul(pool, u, &xs, m, &mut uv);
        for (j, &(_, wt)) in it.tokens.iter().enumerate() {
            for (gv, uv) in gv[j * i..(j + 1) * i]
                .iter_mut()
                .zip(&uv[j * i..(j + 1) * i])
            {
                *gv = super::kernels::silu(*gv) * uv * wt;
            }
        }
        // SAFETY: item n owns ys[offs[n]..offs[n] + m * h].
        let y = unsafe { ys_w.slice(offs[n]..offs[n] + m * h) };
        matmul_t_acc(d, &gv, m, y, &mut Vec::new());
    });
    for (n, it) in items.iter().enumerate() {
        for (j, &(ti, _)) in it.tokens.iter().enumerate() {
            let y = &ys[offs[n] + j * h..offs[n] + (j + 1) * h];
            for (o, v) in out[ti * h..(ti + 1) * h].iter_mut().zip(y) {
                *o += v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::manifest::ExpertDtype;
    use crate::bundle::quant::encode_rows;
    use crate::experts::kernels::expert_ffn_tokens;

    fn weights(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2246822519) ^ seed) % 997) as f32 / 2000.0 - 0.25)
            .collect()
    }

    /// Against the one-expert-at-a-time kernel the engine used before.
    #[test]
    fn matches_expert_at_a_time() {
        let (h, i, t) = (64, 96, 9);
        let x = weights(t * h, 1);
        for enc in [
            ExpertDtype::F32,
            ExpertDtype::F16,
            ExpertDtype::Q8,
            ExpertDtype::Q4,
        ] {
            let raw: Vec<Vec<u8>> = (0..3)
                .map(|e| {
                    let mut b = Vec::new();
                    encode_rows(&weights(3 * i * h, 10 + e), h, enc, &mut b);
                    b
                })
                .collect();
            fn ew(enc: ExpertDtype, b: &[u8]) -> ExpertWeights<'_> {
                match enc {
                    ExpertDtype::F32 => ExpertWeights::F32(bytemuck::cast_slice(b)),
                    ExpertDtype::F16 => ExpertWeights::F16(bytemuck::cast_slice(b)),
                    ExpertDtype::Q8 => ExpertWeights::Q8(b),
                    ExpertDtype::Q4 => ExpertWeights::Q4(b),
                }
            }
            // aligned copies for the f32/f16 casts
            let aligned: Vec<Vec<f32>> = raw
                .iter()
                .map(|b| {
                    let mut v = vec![0f32; b.len().div_ceil(4)];
                    bytemuck::cast_slice_mut::<f32, u8>(&mut v)[..b.len()].copy_from_slice(b);
                    v
                })
                .collect();
            let bytes: Vec<&[u8]> = aligned
                .iter()
                .zip(&raw)
                .map(|(v, b)| &bytemuck::cast_slice::<f32, u8>(v)[..b.len()])
                .collect();
            for tokens in [
                vec![vec![(0, 0.7)], vec![(0, 0.3)], vec![]],
                (0..3)
                    .map(|e| {
                        (0..t)
                            .filter(|ti| (ti + e) % 2 == 0)
                            .map(|ti| (ti, 0.5))
                            .collect()
                    })
                    .collect::<Vec<Vec<(usize, f32)>>>(),
            ] {
                let mut want = vec![0f32; t * h];
                let mut act = Vec::new();
                for (e, toks) in tokens.iter().enumerate() {
                    if !toks.is_empty() {
                        expert_ffn_tokens(
                            ew(enc, bytes[e]),
                            h,
                            &x,
                            &mut toks.clone(),
                            &mut act,
                            &mut want,
                        );
                    }
                }
                for threads in [1, 2] {
                    let pool = Pool::new(threads);
                    let items: Vec<Work<'_>> = tokens
                        .iter()
                        .enumerate()
                        .filter(|(_, toks)| !toks.is_empty())
                        .map(|(e, toks)| Work {
                            w: ew(enc, bytes[e]),
                            tokens: toks,
                        })
                        .collect();
                    let mut got = vec![0f32; t * h];
                    run(&pool, h, &x, &items, &mut got);
                    for (a, b) in got.iter().zip(&want) {
                        assert!(
                            (a - b).abs() < 2e-3 * (1.0 + b.abs()),
                            "{enc:?} {threads}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}
