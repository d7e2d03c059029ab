//! The aarch64 build (tract backend; `scripts/cross-aarch64.sh` builds it with
//! Debian's cross linker) run under qemu-aarch64 answers the golden prompts
//! of every fixture bundle exactly like this x86-64 build: same greedy
//! tokens, logits within 1e-4 of each other, both passing the reference.
//! Skipped with a notice unless MOE_EDGE_AARCH64_BIN names the binary.
#![cfg(feature = "tract")]

use std::path::{Path, PathBuf};
use std::process::Command;

use moe_edge::bundle::import::{import, ImportOptions};
use serde_json::Value;

const FIXTURES: [&str; 4] = ["qwen3_moe", "qwen2_moe", "mixtral", "olmoe"];
const SYSROOT: &str = "/usr/aarch64-linux-gnu";
/// JetPack 6 (Ubuntu 22.04).
const JETPACK_GLIBC: (u32, u32) = (2, 35);

fn aarch64_bin(test: &str) -> Option<PathBuf> {
    match std::env::var_os("MOE_EDGE_AARCH64_BIN") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "MOE_EDGE_AARCH64_BIN={} is not a file",
                p.display()
            );
            Some(p)
        }
        _ => {
            eprintln!(
                "SKIPPED {test}: MOE_EDGE_AARCH64_BIN is not set \
                 (export MOE_EDGE_AARCH64_BIN=\"$(scripts/cross-aarch64.sh | tail -n 1)\")"
            );
            None
        }
    }
}

fn qemu(bin: &Path) -> Command {
    let mut c = Command::new("qemu-aarch64");
    c.arg("-L").arg(SYSROOT).arg(bin);
    c
}

fn native() -> Command {
    Command::new(env!("CARGO_BIN_EXE_moe-edge"))
}

/// Run `moe-edge golden` through `cmd`; the parsed JSON.
fn golden(mut cmd: Command, board: &str, bundle: &Path, golden: &Path, what: &str) -> Value {
    let out = cmd
        .arg("golden")
        .arg("--board")
        .arg(board)
        .arg("--bundle")
        .arg(bundle)
        .arg("--golden")
        .arg(golden)
        .arg("--logits")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{what}: no JSON ({e}); status {:?}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success() && v["ok"] == true,
        "{what}: golden check failed: {v}"
    );
    v
}

fn logits(p: &Value) -> Vec<f32> {
    p["logits"]
        .as_array()
        .expect("logits")
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn aarch64_build_answers_golden_prompts_like_x86_64() {
    let Some(bin) = aarch64_bin("aarch64_build_answers_golden_prompts_like_x86_64") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let mut cases: Vec<(String, PathBuf, PathBuf)> = FIXTURES
        .iter()
        .map(|name| {
            let hf = root.join("tests/fixtures").join(name);
            let out = tmp.path().join(name);
            import(&ImportOptions::new(&hf, &out)).unwrap_or_else(|e| panic!("import {name}: {e}"));
            (name.to_string(), out, hf.join("golden.safetensors"))
        })
        .collect();
    let demo = root.join("models/assist-moe");
    if demo.join("bundle/manifest.json").exists() && demo.join("golden.safetensors").exists() {
        cases.push((
            "assist-moe".into(),
            demo.join("bundle"),
            demo.join("golden.safetensors"),
        ));
    }
    let mut worst = 0f32;
    // the native backend (host-cpu) and tract (host-cpu-tract)
    for ((name, bundle, gold), (board, backend)) in cases.iter().flat_map(|c| {
        [
            (c, ("host-cpu", "native")),
            (c, ("host-cpu-tract", "tract")),
        ]
    }) {
        let name = &format!("{name} {backend}");
        let x = golden(native(), board, bundle, gold, &format!("{name} x86-64"));
        let a = golden(
            qemu(&bin),
            board,
            bundle,
            gold,
            &format!("{name} aarch64 under qemu"),
        );
        assert_eq!(
            a["arch"], "aarch64",
            "{name}: the qemu run is not aarch64: {}",
            a["arch"]
        );
        assert_eq!(a["backend"], backend);
        assert_eq!(x["backend"], backend);
        let (xp, ap) = (
            x["prompts"].as_array().unwrap(),
            a["prompts"].as_array().unwrap(),
        );
        assert_eq!(xp.len(), ap.len());
        for (px, pa) in xp.iter().zip(ap) {
            assert_eq!(
                px["tokens"], pa["tokens"],
                "{name} p{}: greedy tokens x86-64 vs aarch64",
                px["prompt"]
            );
            let d = logits(px)
                .iter()
                .zip(logits(pa))
                .map(|(u, v)| (u - v).abs())
                .fold(0f32, f32::max);
            worst = worst.max(d);
            assert!(
                d < 1e-4,
                "{name} p{}: logits x86-64 vs aarch64 differ by {d}",
                px["prompt"]
            );
            eprintln!(
                "{name} p{}: tokens equal ({} tokens), x86-64 vs aarch64 max|dlogit|={d:.3e}, vs reference {:.3e} / {:.3e}",
                px["prompt"],
                px["tokens"].as_array().unwrap().len(),
                px["max_abs_dlogit"].as_f64().unwrap(),
                pa["max_abs_dlogit"].as_f64().unwrap()
            );
        }
    }
    eprintln!(
        "aarch64 vs x86-64: {} bundles, worst max|dlogit| = {worst:.3e}",
        cases.len()
    );
}

#[test]
fn aarch64_build_describes_the_jetson_boards() {
    let Some(bin) = aarch64_bin("aarch64_build_describes_the_jetson_boards") else {
        return;
    };
    let out = qemu(&bin)
        .args(["boards", "--board", "jetson-orin-nano-8gb"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("tensorrt > cuda > cpu") && text.contains("GPU arena"),
        "{text}"
    );
}

/// The newest `GLIBC_x.y` symbol version the binary asks for must exist on JetPack 6.
#[test]
fn aarch64_build_runs_on_jetpack6_glibc() {
    let Some(bin) = aarch64_bin("aarch64_build_runs_on_jetpack6_glibc") else {
        return;
    };
    let out = match Command::new("aarch64-linux-gnu-objdump")
        .arg("-T")
        .arg(&bin)
        .output()
    {
        Ok(o) if o.status.success() => o,
        _ => {
            eprintln!("SKIPPED aarch64_build_runs_on_jetpack6_glibc: aarch64-linux-gnu-objdump not available");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let newest = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut it = v.split('.').map(|x| x.parse::<u32>().ok());
            Some((it.next()??, it.next().flatten().unwrap_or(0)))
        })
        .max()
        .expect("no GLIBC_ symbol versions");
    eprintln!("aarch64 binary needs glibc {}.{}", newest.0, newest.1);
    assert!(
        newest <= JETPACK_GLIBC,
        "the aarch64 binary needs glibc {}.{}, JetPack 6 has {}.{}",
        newest.0,
        newest.1,
        JETPACK_GLIBC.0,
        JETPACK_GLIBC.1
    );
}
