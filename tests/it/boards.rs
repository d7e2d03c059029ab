//! `moe-edge boards` / `config::describe::dry_run` with a real bundle: how
//! many experts fit the expert budget follows the manifest's expert size, the
//! memory split adds up, and the CLI prints the same plan as text and JSON.
#![cfg(feature = "tract")]

use std::path::Path;
use std::process::Command;

use moe_edge::bundle::{Bundle, Verify};
use moe_edge::config::describe::dry_run;
use moe_edge::config::Board;

fn fixture_bundle(dir: &Path) -> std::path::PathBuf {
    crate::harness::import_fixture(
        "qwen3_moe",
        &dir.join("qwen3_moe"),
        moe_edge::bundle::Dtype::F32,
        None,
    )
}

#[test]
fn experts_that_fit_follow_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture_bundle(tmp.path());
    let m = Bundle::open(&dir, Verify::Sizes).unwrap().manifest;
    let total = m.architecture.num_layers * m.architecture.num_experts;
    let eb = m.experts.expert_bytes as u64;

    let board = Board::load("glasses-arm64").unwrap();
    let p = dry_run(&board, Some(&dir)).unwrap();
    let b = p.bundle.as_ref().unwrap();
    assert_eq!(
        (b.experts_total, b.experts_fit, b.expert_bytes),
        (total, total, eb)
    );
    assert_eq!(b.layers, m.architecture.num_layers);

    // A budget of 5.5 experts holds 5.
    let mut small = board.clone();
    small.memory.experts_bytes = eb * 11 / 2;
    let p = dry_run(&small, Some(&dir)).unwrap();
    assert_eq!(p.bundle.as_ref().unwrap().experts_fit, 5);
    // pinned without a plan: the board says to run `moe-edge plan`.
    assert!(
        p.warnings.iter().any(|w| w.contains("moe-edge plan")),
        "{:?}",
        p.warnings
    );
    let text = p.to_string();
    assert!(text.contains(&format!("5 of {total} fit")), "{text}");
}

#[test]
fn cli_prints_text_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture_bundle(tmp.path());
    let bin = env!("CARGO_BIN_EXE_moe-edge");
    let out = Command::new(bin)
        .args(["boards", "--board", "jetson-orin-nx-16gb", "--bundle"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "jetson-orin-nx-16gb",
        "tensorrt > cuda > cpu",
        "GPU arena",
        "fit the expert budget",
        "KV cache",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let out = Command::new(bin)
        .args(["boards", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["board"].as_str().unwrap())
        .collect();
    for b in [
        "host-cpu",
        "jetson-orin-nano-8gb",
        "jetson-orin-nx-16gb",
        "jetson-agx-orin-64gb",
        "glasses-arm64",
    ] {
        assert!(names.contains(&b), "{names:?}");
    }
    let out = Command::new(bin)
        .args(["boards", "--board", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown board `nope`"));
}
