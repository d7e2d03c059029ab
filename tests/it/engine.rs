//! Engine against the transformers golden vectors, for every supported
//! architecture (fixtures imported into a temp dir) and the demo bundle,
//! through the native backend (`host-cpu`) and tract (`host-cpu-tract`);
//! native against tract on the demo's test split; and the expert budget
//! against an independently simulated LRU trace.

use crate::harness::repo;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use moe_edge::bundle::{Dtype, Verify};
use moe_edge::config::{Board, ExpertPolicy};
use moe_edge::engine::model::StepTimes;
use moe_edge::engine::sampler::argmax;
use moe_edge::engine::{Engine, ExpertCounts, Observer};

use crate::harness::golden::read_golden;

#[derive(Default)]
struct Record {
    hidden: Vec<Vec<f32>>,
    ids: Vec<Vec<u16>>,
    trace: Vec<(u16, u16)>,
}

impl Observer for Record {
    fn layer(
        &mut self,
        layer: usize,
        _x: &[f32],
        hidden: &[f32],
        _probs: &[f32],
        routes: &[Vec<(u16, f32)>],
    ) {
        self.hidden.push(hidden.to_vec());
        let mut ids = Vec::new();
        for r in routes {
            for &(e, _) in r {
                ids.push(e);
            }
        }
        // experts in the order the engine visits them: per layer, ascending expert id
        let mut uniq = ids.clone();
        uniq.sort_unstable();
        uniq.dedup();
        self.trace
            .extend(uniq.into_iter().map(|e| (layer as u16, e)));
        self.ids.push(ids);
    }
}

fn imported(arch: &str, dtype: Dtype) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let out = crate::harness::import_fixture(arch, &tmp.path().join("bundle"), dtype, None);
    (tmp, out)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Prefill all prompt tokens, compare hidden/logits/routes, then greedy-decode.
fn check_golden(bundle: &Path, golden: &Path, tol: f32, exact_argmax_only: bool) {
    for board in BACKENDS {
        check_golden_on(board, bundle, golden, tol, exact_argmax_only);
    }
}

/// The native backend's board and tract's.
const BACKENDS: [&str; 2] = ["host-cpu", "host-cpu-tract"];

fn check_golden_on(board: &str, bundle: &Path, golden: &Path, tol: f32, exact_argmax_only: bool) {
    let board = Board::load(board).unwrap();
    let engine = Engine::load(bundle, &board, Verify::Full).unwrap();
    let backend = engine.model.backend_name();
    assert_eq!(backend, board.backend.kind.to_string());
    let a = engine.model.manifest.architecture.clone();
    for (pi, g) in read_golden(golden).iter().enumerate() {
        let t = g.ids.len();
        let toks: Vec<u32> = g.ids.iter().map(|&x| x as u32).collect();
        let mut kv = engine.model.new_kv();
        let mut rec = Record::default();
        let (mut c, mut tm) = (ExpertCounts::default(), StepTimes::default());
        let logits = engine
            .model
            .forward(&mut kv, &toks, true, &mut c, &mut tm, Some(&mut rec))
            .unwrap();
        let logits = logits.as_f32().unwrap();
        let v = a.vocab_size;
        if exact_argmax_only {
            for row in 0..t {
                assert_eq!(
                    argmax(&logits[row * v..(row + 1) * v]),
                    argmax(&g.logits[row * v..(row + 1) * v]),
                    "{backend} prompt {pi} row {row}: argmax differs"
                );
            }
        } else {
            let d = max_diff(logits, &g.logits);
            assert!(d < tol, "{backend} prompt {pi}: max |Δlogit| = {d}");
            for l in 0..a.num_layers {
                let want = &g.hidden[(l + 1) * t * a.hidden_size..(l + 2) * t * a.hidden_size];
                // The residual stream of a trained model reaches a few hundred (the first
                // token's "massive activations"), where one f32 ulp is already ~3e-5: the
                // bound is relative there (4e-6 of the layer's largest value).
                let bound = tol.max(4e-6 * want.iter().fold(0f32, |m, x| m.max(x.abs())));
                let d = max_diff(&rec.hidden[l], want);
                assert!(
                    d < bound,
                    "{backend} prompt {pi} layer {l}: max |Δhidden| = {d} (bound {bound})"
                );
            }
            for l in 0..a.num_layers {
                let want: Vec<u16> = g.router_ids[l * t * a.top_k..(l + 1) * t * a.top_k]
                    .iter()
                    .map(|&x| x as u16)
                    .collect();
                assert_eq!(
                    rec.ids[l], want,
                    "{backend} prompt {pi} layer {l}: router top-k differs"
                );
            }
        }
        // greedy continuation through the KV cache, token by token
        let mut next = argmax(&logits[(t - 1) * v..]);
        let mut got = vec![next as i64];
        while got.len() < g.greedy.len() {
            let l = engine
                .model
                .forward(&mut kv, &[next], false, &mut c, &mut tm, None)
                .unwrap();
            next = argmax(l.as_f32().unwrap());
            got.push(next as i64);
        }
        assert_eq!(got, g.greedy, "{backend} prompt {pi}: greedy tokens differ");
        assert_eq!(c.substituted + c.remote, 0);
    }
}

#[test]
fn golden_all_architectures_f32() {
    for arch in ["qwen3_moe", "qwen2_moe", "mixtral", "olmoe"] {
        let (_tmp, b) = imported(arch, Dtype::F32);
        check_golden(
            &b,
            &repo()
                .join("tests/fixtures")
                .join(arch)
                .join("golden.safetensors"),
            1e-4,
            false,
        );
    }
}

#[test]
fn golden_all_architectures_f16_argmax() {
    for arch in ["qwen3_moe", "qwen2_moe", "mixtral", "olmoe"] {
        let (_tmp, b) = imported(arch, Dtype::F16);
        check_golden(
            &b,
            &repo()
                .join("tests/fixtures")
                .join(arch)
                .join("golden.safetensors"),
            0.0,
            true,
        );
    }
}

#[test]
fn golden_demo_bundle() {
    let b = repo().join("models/assist-moe/bundle");
    let g = repo().join("models/assist-moe/golden.safetensors");
    if !b.join("manifest.json").exists() || !g.exists() {
        panic!(
            "demo bundle or golden vectors missing: {} {}",
            b.display(),
            g.display()
        );
    }
    check_golden(&b, &g, 1e-4, false);
}

/// A budget of 25 % of the experts: the engine's hits/misses equal an
/// independent LRU simulation of the same routing trace, and the accounted
/// bytes never exceed the budget.
#[test]
fn budget_quarter_lru_matches_simulation() {
    let (_tmp, b) = imported("qwen3_moe", Dtype::F32);
    let mut board = Board::load("host-cpu").unwrap();
    board.policy = ExpertPolicy::Lru;
    // Plain LRU: no experts brought in ahead on predictions.
    board.prefetch.mode = moe_edge::config::Prefetch::Off;
    let probe = Engine::load(&b, &board, Verify::Sizes).unwrap();
    let a = probe.model.manifest.architecture.clone();
    let ebytes = probe.model.store().expert_bytes() as u64;
    let total = (a.num_layers * a.num_experts) as u64;
    let slots = (total / 4) as usize;
    board.memory.experts_bytes = slots as u64 * ebytes + ebytes / 2;
    let engine = Engine::load(&b, &board, Verify::Sizes).unwrap();
    let golden = read_golden(&repo().join("tests/fixtures/qwen3_moe/golden.safetensors"));
    let mut trace = Vec::new();
    for g in &golden {
        let toks: Vec<u32> = g.ids.iter().map(|&x| x as u32).collect();
        let mut kv = engine.model.new_kv();
        let (mut c, mut tm) = (ExpertCounts::default(), StepTimes::default());
        // token by token so the trace has many steps
        for &tok in &toks {
            let mut rec = Record::default();
            engine
                .model
                .forward(&mut kv, &[tok], false, &mut c, &mut tm, Some(&mut rec))
                .unwrap();
            trace.extend(rec.trace);
            let (used, budget) = engine.model.resident_bytes();
            assert!(
                used <= budget && budget <= board.memory.experts_bytes,
                "{used} > {budget}"
            );
        }
    }
    // independent LRU: front = most recent
    let mut lru: VecDeque<(u16, u16)> = VecDeque::new();
    let (mut hits, mut misses) = (0u64, 0u64);
    for id in &trace {
        if let Some(pos) = lru.iter().position(|x| x == id) {
            hits += 1;
            lru.remove(pos);
        } else {
            misses += 1;
            if lru.len() == slots {
                lru.pop_back();
            }
        }
        lru.push_front(*id);
    }
    let s = engine.model.cache_stats();
    assert_eq!(
        (s.hits, s.misses),
        (hits, misses),
        "engine vs simulated LRU over {} accesses",
        trace.len()
    );
    assert!(s.misses > 0 && s.hits > 0);
    assert_eq!(engine.model.resident_experts(), slots.min(lru.len()));
}

/// The native backend answers the demo's test split exactly as tract does:
/// the same score, the same failures with the same outputs, the same number
/// of generated tokens (the first 150 requests; `moe-edge eval` runs all).
#[test]
fn native_matches_tract_on_the_test_split() {
    let run = |board: &str| {
        let (_, v) = moe_edge::eval::run_split(&moe_edge::eval::SplitOptions {
            bundle: repo().join("models/assist-moe/bundle"),
            board: Board::load(board).unwrap(),
            data: repo().join("models/assist-moe/data/test.jsonl"),
            limit: Some(150),
            constrain: false,
            compare: false,
            tools: repo().join("models/assist-moe/tools.json"),
            grounded: Some(false),
            calibrate: false,
            scores: None,
        })
        .unwrap();
        v
    };
    let (native, tract) = (run("host-cpu"), run("host-cpu-tract"));
    for key in [
        "overall",
        "invalid",
        "fallback_tp",
        "fallback_fp",
        "fallback_fn",
        "generated_tokens",
        "failures",
    ] {
        assert_eq!(
            native[key], tract[key],
            "{key} differs between native and tract"
        );
    }
    assert_eq!(native["overall"]["total"], 150);
}
