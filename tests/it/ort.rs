//! The ONNX Runtime backend against the tract backend, on the CPU provider of
//! the PyPI wheel's `libonnxruntime.so` (`scripts/fetch-onnxruntime.sh`
//! prints its path; the test script exports it as ORT_DYLIB_PATH). Skipped
//! with a notice when ORT_DYLIB_PATH is not set.
//!
//! - every graph of every fixture bundle loads in ort with tract's inputs and outputs;
//! - ort and tract give the same greedy tokens, and logits within 1e-4, on
//!   the golden prompts (and both match the transformers reference);
//! - a board asking for CUDA/TensorRT on this GPU-less machine fails with a
//!   clear error, and with `allow_cpu_fallback = true` it runs on the CPU
//!   with a warning.
#![cfg(all(feature = "ort", feature = "tract"))]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use moe_edge::bundle::import::{import, ImportOptions};
use moe_edge::bundle::{Bundle, Verify};
use moe_edge::config::Board;
use moe_edge::engine::Model;
use moe_edge::eval::golden::{self, GoldenPrompt, PromptResult};
use moe_edge::runtime::{self, BackendKind, BackendOptions};

const FIXTURES: [&str; 4] = ["qwen3_moe", "qwen2_moe", "mixtral", "olmoe"];
const ORT_VS_TRACT: f32 = 1e-4;

fn ort_available(test: &str) -> bool {
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => true,
        _ => {
            eprintln!(
                "SKIPPED {test}: ORT_DYLIB_PATH is not set (export ORT_DYLIB_PATH=\"$(scripts/fetch-onnxruntime.sh)\")"
            );
            false
        }
    }
}

// ---------------------------------------------------------------- a logger that keeps records

struct Keep(Mutex<Vec<(log::Level, String)>>);

impl log::Log for Keep {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let line = format!("{}", r.args());
            eprintln!("[{}] {line}", r.level());
            self.0.lock().unwrap().push((r.level(), line));
        }
    }
    fn flush(&self) {}
}

fn logs() -> &'static Keep {
    static KEEP: OnceLock<&'static Keep> = OnceLock::new();
    KEEP.get_or_init(|| {
        let k: &'static Keep = Box::leak(Box::new(Keep(Mutex::new(Vec::new()))));
        let _ = log::set_logger(k);
        log::set_max_level(log::LevelFilter::Info);
        k
    })
}

// ---------------------------------------------------------------- fixture bundles

struct Fixture {
    name: String,
    bundle: PathBuf,
    golden: Vec<GoldenPrompt>,
}

/// Every fixture checkpoint imported once into a temp dir (plus the demo
/// bundle when it exists).
fn fixtures() -> &'static [Fixture] {
    static F: OnceLock<(tempfile::TempDir, Vec<Fixture>)> = OnceLock::new();
    &F.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let tmp = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        for name in FIXTURES {
            let hf = root.join("tests/fixtures").join(name);
            let bundle = tmp.path().join(name);
            import(&ImportOptions::new(&hf, &bundle))
                .unwrap_or_else(|e| panic!("import {name}: {e}"));
            let golden = golden::read_golden(&hf.join("golden.safetensors")).unwrap();
            out.push(Fixture {
                name: name.to_string(),
                bundle,
                golden,
            });
        }
        let demo = root.join("models/assist-moe");
        if demo.join("bundle/manifest.json").exists() && demo.join("golden.safetensors").exists() {
            out.push(Fixture {
                name: "assist-moe".into(),
                bundle: demo.join("bundle"),
                golden: golden::read_golden(&demo.join("golden.safetensors")).unwrap(),
            });
        }
        (tmp, out)
    })
    .1
}

/// The ort backend on the CPU provider, default options.
fn ort_backend() -> Box<dyn runtime::Backend> {
    runtime::backend(&BackendOptions {
        kind: BackendKind::Ort,
        ..BackendOptions::default()
    })
    .unwrap()
}

fn board_with(kind: BackendKind) -> Board {
    let mut b = Board::load("host-cpu").unwrap();
    b.backend.kind = kind;
    b.backend.ort.providers = vec!["cpu".into()];
    b
}

fn run_golden(f: &Fixture, board: &Board) -> Vec<PromptResult> {
    let bundle = Bundle::open(&f.bundle, Verify::Full).unwrap();
    let model = Model::load(&bundle, board)
        .unwrap_or_else(|e| panic!("{} on {}: {e}", f.name, board.backend.kind));
    golden::run_all(&model, &f.golden, true).unwrap()
}

// ---------------------------------------------------------------- tests

#[test]
fn every_fixture_graph_loads_in_ort() {
    if !ort_available("every_fixture_graph_loads_in_ort") {
        return;
    }
    logs();
    let ort = ort_backend();
    let tract = runtime::backend(&BackendOptions::default()).unwrap();
    assert_eq!(ort.name(), "ort");
    for f in fixtures() {
        let bundle = Bundle::open(&f.bundle, Verify::Full).unwrap();
        let m = &bundle.manifest;
        let files = std::iter::once(&m.graphs.embed)
            .chain(m.graphs.layers.iter())
            .chain(std::iter::once(&m.graphs.head));
        for rel in files {
            let path = bundle.path(rel);
            let g = ort
                .load(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", f.name));
            let t = tract.load(&path).unwrap();
            assert_eq!(g.input_names(), t.input_names(), "{} {rel}: inputs", f.name);
            assert_eq!(
                g.output_names(),
                t.output_names(),
                "{} {rel}: outputs",
                f.name
            );
        }
    }
}

#[test]
fn ort_and_tract_agree_on_golden_prompts() {
    if !ort_available("ort_and_tract_agree_on_golden_prompts") {
        return;
    }
    logs();
    let (ort_board, tract_board) = (board_with(BackendKind::Ort), board_with(BackendKind::Tract));
    let mut worst = 0f32;
    for f in fixtures() {
        let o = run_golden(f, &ort_board);
        let t = run_golden(f, &tract_board);
        for (ro, rt) in o.iter().zip(&t) {
            let d = ro
                .logits
                .as_ref()
                .unwrap()
                .iter()
                .zip(rt.logits.as_ref().unwrap())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            worst = worst.max(d);
            eprintln!(
                "{} p{}: ort-vs-tract max|dlogit|={d:.3e} ort-vs-ref={:.3e} tract-vs-ref={:.3e} tokens={:?}",
                f.name, ro.prompt, ro.max_abs_dlogit, rt.max_abs_dlogit, ro.tokens
            );
            assert_eq!(
                ro.tokens, rt.tokens,
                "{} p{}: greedy tokens ort vs tract",
                f.name, ro.prompt
            );
            assert!(
                d < ORT_VS_TRACT,
                "{} p{}: ort and tract logits differ by {d}",
                f.name,
                ro.prompt
            );
            assert!(
                ro.tokens_match,
                "{} p{}: ort {:?} vs reference {:?}",
                f.name, ro.prompt, ro.tokens, ro.expected
            );
            assert!(
                ro.max_abs_dlogit < 1e-3,
                "{} p{}: ort vs reference {}",
                f.name,
                ro.prompt,
                ro.max_abs_dlogit
            );
        }
    }
    eprintln!(
        "ort vs tract: worst max|dlogit| = {worst:.3e} over {} bundles",
        fixtures().len()
    );
}

#[test]
fn gpu_board_without_gpu_fails_clearly() {
    if !ort_available("gpu_board_without_gpu_fails_clearly") {
        return;
    }
    logs();
    for name in [
        "jetson-orin-nano-8gb",
        "jetson-orin-nx-16gb",
        "jetson-agx-orin-64gb",
    ] {
        let board = Board::load(name).unwrap();
        assert!(
            !board.backend.ort.allow_cpu_fallback,
            "{name} must not fall back silently"
        );
        let e = runtime::backend(&board.backend)
            .err()
            .expect("a GPU board must fail here")
            .to_string();
        assert!(
            e.contains("tensorrt") && e.contains("allow_cpu_fallback"),
            "{name}: {e}"
        );
        assert!(
            e.contains("built without TensorrtExecutionProvider"),
            "{name}: {e}"
        );
    }
    let mut board = board_with(BackendKind::Ort);
    board.backend.ort.providers = vec!["cuda".into(), "cpu".into()];
    let e = runtime::backend(&board.backend)
        .err()
        .expect("cuda must fail here")
        .to_string();
    assert!(
        e.contains("`cuda` failed to register") && e.contains("CUDAExecutionProvider"),
        "{e}"
    );
}

#[test]
fn gpu_board_with_cpu_fallback_runs_on_cpu_with_a_warning() {
    if !ort_available("gpu_board_with_cpu_fallback_runs_on_cpu_with_a_warning") {
        return;
    }
    let keep = logs();
    let mut board = Board::load("jetson-orin-nano-8gb").unwrap();
    board.backend.ort.allow_cpu_fallback = true;
    board.backend.ort.trt_cache_dir = Some(tempfile::tempdir().unwrap().keep());
    board.backend.threads = 2;
    let f = &fixtures()[0];
    let results = run_golden(f, &board);
    for r in &results {
        assert!(
            r.tokens_match,
            "{} p{} on the CPU fallback: {:?} vs {:?}",
            f.name, r.prompt, r.tokens, r.expected
        );
        assert!(
            r.max_abs_dlogit < 1e-3,
            "{} p{}: {}",
            f.name,
            r.prompt,
            r.max_abs_dlogit
        );
    }
    let warnings: Vec<String> = keep
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, m)| *l == log::Level::Warn && m.contains("falling back to cpu"))
        .map(|(_, m)| m.clone())
        .collect();
    for p in ["tensorrt", "cuda"] {
        assert!(
            warnings
                .iter()
                .any(|m| m.contains(&format!("provider={p}"))),
            "no fallback warning for {p}: {warnings:?}"
        );
    }
}

/// ort's I/O binding writes a layer's new keys and values straight into the
/// caller's buffers (the KV cache's room for this step) and reads the past
/// from the caller's buffers: the written rows equal what a plain run
/// returns, for a prefill chunk over a past and for one decode position.
#[test]
fn ort_writes_the_step_kv_in_place() {
    if !ort_available("ort_writes_the_step_kv_in_place") {
        return;
    }
    logs();
    use moe_edge::runtime::{OutInto, TensorView};
    let ort = ort_backend();
    let f = &fixtures()[0];
    let bundle = Bundle::open(&f.bundle, Verify::Full).unwrap();
    let a = &bundle.manifest.architecture;
    let g = ort
        .load(&bundle.path(&bundle.manifest.graphs.layers[0]))
        .unwrap();
    let pos = |n: &str| g.output_names().iter().position(|o| o == n).unwrap();
    let (h, d, kvh) = (a.hidden_size, a.head_dim, a.num_kv_heads);
    for (p, t) in [(5usize, 3usize), (8, 1)] {
        let s = p + t;
        let wave = |n: usize, k: f32| (0..n).map(|i| ((i as f32) * k).sin()).collect::<Vec<f32>>();
        let hidden = wave(t * h, 0.37);
        let (cos, sin) = moe_edge::engine::model::rope_tables(d, a.rope_theta, s);
        let mut mask = vec![0f32; t * s];
        for i in 0..t {
            for j in (p + i + 1)..s {
                mask[i * s + j] = f32::NEG_INFINITY;
            }
        }
        let (pk, pv) = (wave(p * kvh * d, 0.11), wave(p * kvh * d, 0.23));
        let inputs = [
            TensorView::f32(vec![t, h], &hidden),
            TensorView::f32(vec![t, d], &cos[p * d..]),
            TensorView::f32(vec![t, d], &sin[p * d..]),
            TensorView::f32(vec![t, s], &mask),
            TensorView::f32(vec![p, kvh, d], &pk),
            TensorView::f32(vec![p, kvh, d], &pv),
        ];
        let plain = g.run(&inputs).unwrap();
        let (mut k, mut v) = (vec![f32::NAN; t * kvh * d], vec![f32::NAN; t * kvh * d]);
        let outs = g
            .run_into(
                &inputs,
                &mut [
                    OutInto {
                        index: pos("k"),
                        shape: vec![t, kvh, d],
                        buf: &mut k,
                    },
                    OutInto {
                        index: pos("v"),
                        shape: vec![t, kvh, d],
                        buf: &mut v,
                    },
                ],
            )
            .unwrap();
        assert_eq!(k, plain[pos("k")].as_f32().unwrap(), "p={p} t={t}");
        assert_eq!(v, plain[pos("v")].as_f32().unwrap(), "p={p} t={t}");
        assert!(
            outs[pos("k")].as_f32().unwrap().is_empty(),
            "written in place, not returned"
        );
        assert_eq!(outs[pos("resid")], plain[pos("resid")]);
    }
}
