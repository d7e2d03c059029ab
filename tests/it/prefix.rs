//! The prefix cache: a prompt that reuses cached blocks gets exactly what a
//! cold prompt gets (the same greedy tokens, the same log probabilities bit
//! for bit: they are a function of every logit) on every fixture
//! architecture and the demo, on every backend compiled in (ort when
//! ORT_DYLIB_PATH is set); a small budget evicts and stays exact.

use std::path::PathBuf;

use moe_edge::bundle::{Dtype, Verify};
use moe_edge::config::Board;
use moe_edge::engine::{Engine, Finished, GenParams};
use moe_edge::eval::golden;
use moe_edge::runtime::BackendKind;

use crate::harness::{import_fixture, repo};

const FIXTURES: [&str; 4] = ["qwen3_moe", "qwen2_moe", "mixtral", "olmoe"];

/// (name, bundle, prompt token ids to build prompts from)
fn models(tmp: &tempfile::TempDir) -> Vec<(String, PathBuf, Vec<Vec<u32>>)> {
    let mut out = Vec::new();
    for arch in FIXTURES {
        let hf = repo().join("tests/fixtures").join(arch);
        let bundle = import_fixture(arch, &tmp.path().join(arch), Dtype::F32, None);
        let g = golden::read_golden(&hf.join("golden.safetensors")).unwrap();
        out.push((
            arch.to_string(),
            bundle,
            g.into_iter().map(|p| p.input_ids).collect(),
        ));
    }
    let demo = repo().join("models/assist-moe");
    let g = golden::read_golden(&demo.join("golden.safetensors")).unwrap();
    out.push((
        "assist-moe".into(),
        demo.join("bundle"),
        g.into_iter().map(|p| p.input_ids).collect(),
    ));
    out
}

fn backends() -> Vec<BackendKind> {
    let mut v = vec![BackendKind::Native, BackendKind::Tract];
    if std::env::var_os("ORT_DYLIB_PATH").is_some_and(|p| !p.is_empty()) {
        v.push(BackendKind::Ort);
    } else {
        eprintln!("NOTE prefix cache on ort not checked: ORT_DYLIB_PATH is not set");
    }
    v
}

fn board(kind: BackendKind, block: usize, budget: u64) -> Board {
    let mut b = Board::load("host-cpu").unwrap();
    b.backend.kind = kind;
    b.backend.ort.providers = vec!["cpu".into()];
    b.kv.block_tokens = block;
    b.kv.prefix_cache_bytes = budget;
    b
}

fn run(e: &Engine, prompt: &[u32]) -> Finished {
    let params = GenParams {
        max_tokens: 6,
        logprobs: Some(5),
        ..GenParams::default()
    };
    let mut g = e.begin_tokens(prompt.to_vec(), params).unwrap();
    e.run(&mut g, |_| {}).unwrap()
}

/// The same reply bit for bit (timings aside).
fn same(what: &str, cold: &Finished, warm: &Finished) {
    assert_eq!(cold.text, warm.text, "{what}: text");
    assert_eq!(cold.logprobs, warm.logprobs, "{what}: log probabilities");
    assert_eq!(
        cold.min_token_p.to_bits(),
        warm.min_token_p.to_bits(),
        "{what}"
    );
    assert_eq!(cold.completion_tokens, warm.completion_tokens, "{what}");
}

#[test]
fn a_reused_prefix_gives_exactly_the_cold_reply_on_every_backend() {
    let tmp = tempfile::tempdir().unwrap();
    const BLOCK: usize = 4;
    for (name, bundle, prompts) in models(&tmp) {
        // a long prompt and one that shares its first blocks then differs
        let long: Vec<u32> = prompts.iter().flatten().copied().take(40).collect();
        let shared = (long.len() / 2) / BLOCK * BLOCK + 1;
        let mut branch = long[..shared].to_vec();
        branch.extend(prompts[0].iter().rev());
        assert!(long.len() > 3 * BLOCK, "{name}: prompts too short");
        for kind in backends() {
            let what = format!("{name} on {kind}");
            let e = Engine::load(&bundle, &board(kind, BLOCK, 64 << 20), Verify::Sizes)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let cold_branch = run(&e, &branch);
            assert_eq!(cold_branch.cached_prompt_tokens, 0, "{what}");
            e.clear_prefix_cache();
            let cold = run(&e, &long);
            assert_eq!(cold.cached_prompt_tokens, 0, "{what}");
            let warm = run(&e, &long);
            assert_eq!(
                warm.cached_prompt_tokens,
                (long.len() - 1) / BLOCK * BLOCK,
                "{what}: every whole block but the one holding the last token"
            );
            same(&format!("{what}, same prompt"), &cold, &warm);
            let warm_branch = run(&e, &branch);
            assert_eq!(
                warm_branch.cached_prompt_tokens,
                shared / BLOCK * BLOCK,
                "{what}"
            );
            same(
                &format!("{what}, shared prefix"),
                &cold_branch,
                &warm_branch,
            );
            let s = e.prefix_stats();
            assert_eq!(s.hits, 2, "{what}: {s:?}");
        }
    }
}

#[test]
fn a_small_budget_evicts_and_stays_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = import_fixture("qwen3_moe", &tmp.path().join("b"), Dtype::F32, None);
    let hf = repo().join("tests/fixtures/qwen3_moe");
    let prompts: Vec<Vec<u32>> = golden::read_golden(&hf.join("golden.safetensors"))
        .unwrap()
        .into_iter()
        .map(|p| p.input_ids)
        .collect();
    let flat: Vec<u32> = prompts.iter().flatten().copied().collect();
    let system: Vec<u32> = flat.iter().copied().take(8).collect();
    // four apps: a shared system prompt, then their own text
    let apps: Vec<Vec<u32>> = (0..4)
        .map(|i| {
            let mut p = system.clone();
            p.extend(flat.iter().rev().cycle().copied().skip(3 * i).take(9));
            p
        })
        .collect();
    let reference =
        Engine::load(&bundle, &board(BackendKind::Native, 4, 0), Verify::Sizes).unwrap();
    let cold: Vec<Finished> = apps.iter().map(|p| run(&reference, p)).collect();
    assert_eq!(
        reference.prefix_stats().lookups,
        0,
        "a zero budget turns the cache off"
    );
    // a block of the fixture: 2 (k, v) x layers x 4 tokens x kv row x 4 bytes
    let a = moe_edge::bundle::Bundle::open(&bundle, Verify::Sizes)
        .unwrap()
        .manifest
        .architecture;
    let block_bytes = (2 * a.num_layers * 4 * a.num_kv_heads * a.head_dim * 4) as u64;
    let e = Engine::load(
        &bundle,
        &board(BackendKind::Native, 4, 5 * block_bytes),
        Verify::Sizes,
    )
    .unwrap();
    for round in 0..3 {
        for (i, p) in apps.iter().enumerate() {
            let f = run(&e, p);
            same(&format!("round {round} app {i}"), &cold[i], &f);
            let s = e.prefix_stats();
            assert!(s.bytes <= 5 * block_bytes, "{s:?}");
        }
    }
    let s = e.prefix_stats();
    assert!(s.evicted_blocks > 0, "{s:?}");
    // the shared system prompt (2 blocks) is reused by every request after the first
    assert!(s.reused_tokens >= 11 * 8, "{s:?}");
}

/// A prompt whose prefill substituted experts the device lacks is not
/// cached: its KV is not what the prompt gets when the experts are there.
#[test]
fn prefixes_computed_with_substituted_experts_are_not_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = repo().join("models/assist-moe/bundle");
    let pruned = crate::harness::plan_device_bundle(&demo, 0.25, tmp.path(), "dev25");
    let g = golden::read_golden(&repo().join("models/assist-moe/golden.safetensors")).unwrap();
    let prompt: Vec<u32> = g
        .iter()
        .flat_map(|p| p.input_ids.clone())
        .take(40)
        .collect();
    let mut b = board(BackendKind::Native, 4, 64 << 20);
    b.offload.on_miss = moe_edge::config::OnMiss::Substitute;
    let e = Engine::load(&pruned, &b, Verify::Sizes).unwrap();
    let first = run(&e, &prompt);
    assert!(
        first.experts.substituted > 0,
        "the pruned bundle substitutes"
    );
    let again = run(&e, &prompt);
    assert_eq!(again.cached_prompt_tokens, 0);
    assert_eq!(e.prefix_stats().inserted_blocks, 0);
    same("pruned, twice", &first, &again);
    // the whole bundle caches the same prompt
    let full = Engine::load(
        &demo,
        &board(BackendKind::Native, 4, 64 << 20),
        Verify::Sizes,
    )
    .unwrap();
    run(&full, &prompt);
    assert_eq!(run(&full, &prompt).cached_prompt_tokens, 36);
}
