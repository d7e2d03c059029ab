//! Quantised experts (q8/q4) and mixed-precision residency on the demo model:
//! import round trip against the f32 bundle, logits against the transformers
//! golden vectors, and a device bundle with 25 % of the experts at full
//! precision plus a q4 copy of all of them (misses run the q4 copy locally).

use crate::harness::repo;
use std::path::{Path, PathBuf};

use moe_edge::bundle::import::{import, ImportOptions};
use moe_edge::bundle::manifest::{expert_tensor_name, ExpertDtype};
use moe_edge::bundle::{quant, Bundle, Dtype, Verify};
use moe_edge::config::Board;
use moe_edge::engine::model::StepTimes;
use moe_edge::engine::{Engine, ExpertCounts};
use moe_edge::eval::golden::{argmax, read_golden};

fn import_demo(dir: &Path, name: &str, experts: ExpertDtype) -> PathBuf {
    let out = dir.join(name);
    import(&ImportOptions {
        experts_dtype: Some(experts),
        ..ImportOptions::new(repo().join("models/assist-moe/hf"), &out)
    })
    .unwrap_or_else(|e| panic!("import {name}: {e}"));
    out
}

/// Over every prompt row: mean |Δlogit| against the golden logits, how many
/// rows agree on the argmax, the row count, and where the experts ran.
fn logits_vs_golden(bundle: &Path) -> (f32, usize, usize, ExpertCounts) {
    let board = Board::load("host-cpu").unwrap();
    let engine = Engine::load(bundle, &board, Verify::Full).unwrap();
    let v = engine.model.manifest.architecture.vocab_size;
    let golden = read_golden(&repo().join("models/assist-moe/golden.safetensors")).unwrap();
    let (mut sum, mut n, mut agree, mut rows) = (0f64, 0usize, 0, 0);
    let mut counts = ExpertCounts::default();
    for g in &golden {
        let mut kv = engine.model.new_kv();
        let mut tm = StepTimes::default();
        let logits = engine
            .model
            .forward(&mut kv, &g.input_ids, true, &mut counts, &mut tm, None)
            .unwrap();
        let logits = logits.as_f32().unwrap();
        for (got, want) in logits.chunks(v).zip(g.logits.chunks(v)) {
            sum += got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs() as f64)
                .sum::<f64>();
            n += v;
            agree += (argmax(got) == argmax(want)) as usize;
            rows += 1;
        }
    }
    ((sum / n.max(1) as f64) as f32, agree, rows, counts)
}

#[test]
fn import_round_trip_within_half_a_step() {
    let tmp = tempfile::tempdir().unwrap();
    let f32b = Bundle::open(
        &import_demo(tmp.path(), "f32", ExpertDtype::F32),
        Verify::Full,
    )
    .unwrap();
    let raw = std::fs::read(f32b.path(&f32b.manifest.experts.file)).unwrap();
    let reference = safetensors::SafeTensors::deserialize(&raw).unwrap();
    let h = f32b.manifest.architecture.hidden_size;
    for dt in [ExpertDtype::Q8, ExpertDtype::Q4] {
        let b = Bundle::open(&import_demo(tmp.path(), dt.name(), dt), Verify::Full).unwrap();
        assert_eq!(b.manifest.experts.dtype, dt);
        assert_eq!(b.manifest.dtype, Dtype::F32, "dense graphs stay f32");
        let qraw = std::fs::read(b.path(&b.manifest.experts.file)).unwrap();
        let q = safetensors::SafeTensors::deserialize(&qraw).unwrap();
        let (mut n, mut worst_rel) = (0usize, 0f32);
        for (l, e) in [(0, 0), (1, 7), (3, 15)] {
            let name = expert_tensor_name(l, e);
            let want: Vec<f32> = reference
                .tensor(&name)
                .unwrap()
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let mut got = Vec::new();
            for row in q.tensor(&name).unwrap().data().chunks(dt.row_bytes(h)) {
                quant::decode_row(row, h, dt, &mut got);
            }
            assert_eq!(got.len(), want.len());
            // every value within half a quantisation step of its block (one step for q4's clamp)
            for (gb, wb) in got.chunks(32).zip(want.chunks(32)) {
                let amax = wb.iter().fold(0f32, |m, v| m.max(v.abs()));
                let step = match dt {
                    ExpertDtype::Q8 => 0.5 * amax / 127.0,
                    _ => amax / 8.0,
                };
                for (a, b) in gb.iter().zip(wb) {
                    // plus the f16 rounding of the scale (|q| * d * 2^-11 <= amax / 2048)
                    let tol = step + amax / 1024.0 + 1e-7;
                    assert!((a - b).abs() <= tol, "{dt:?} {name}: {a} vs {b}");
                    worst_rel = worst_rel.max((a - b).abs() / amax.max(1e-12));
                    n += 1;
                }
            }
        }
        assert!(
            n > 0 && worst_rel > 0.0,
            "{dt:?}: quantisation changed nothing?"
        );
    }
}

/// q8 experts stay closer to the transformers logits than q4; both keep almost
/// every argmax. (A single row can still move by more than a logit when a
/// router top-k choice flips, so the mean is compared, not the maximum.)
#[test]
fn quantized_demo_tracks_golden_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let (f32_mean, f32_agree, rows, _) =
        logits_vs_golden(&import_demo(tmp.path(), "f32", ExpertDtype::F32));
    assert!(
        f32_mean < 1e-5 && f32_agree == rows,
        "f32 {f32_mean} {f32_agree}/{rows}"
    );
    let (q8_mean, q8_agree, _, c) =
        logits_vs_golden(&import_demo(tmp.path(), "q8", ExpertDtype::Q8));
    let (q4_mean, q4_agree, _, _) =
        logits_vs_golden(&import_demo(tmp.path(), "q4", ExpertDtype::Q4));
    eprintln!(
        "rows {rows}: mean |Δlogit| q8 {q8_mean} q4 {q4_mean}; argmax q8 {q8_agree} q4 {q4_agree}"
    );
    assert!(c.resident + c.paged > 0 && c.substituted == 0);
    assert!(
        q8_mean > f32_mean,
        "q8 logits identical to f32: quantisation not applied?"
    );
    assert!(q4_mean > q8_mean, "q4 should be coarser than q8");
    assert!(
        q8_agree * 100 >= rows * 95,
        "q8 argmax agreement {q8_agree}/{rows}"
    );
    assert!(
        q4_agree * 100 >= rows * 90,
        "q4 argmax agreement {q4_agree}/{rows}"
    );
}

/// 25 % of the experts at full precision + all of them at q4: every miss runs the
/// q4 copy locally (counted), nothing is substituted, and the result stays
/// closer to f32 than all-q4.
#[test]
fn mixed_residency_runs_misses_on_the_low_precision_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let f32_dir = import_demo(tmp.path(), "f32", ExpertDtype::F32);
    let q4_dir = import_demo(tmp.path(), "q4", ExpertDtype::Q4);
    let src = Bundle::open(&f32_dir, Verify::Full).unwrap();
    let lowp = Bundle::open(&q4_dir, Verify::Full).unwrap();
    let a = &src.manifest.architecture;
    let keep = a.num_experts / 4;
    let per_layer: Vec<Vec<u16>> = (0..a.num_layers)
        .map(|l| {
            (0..keep as u16)
                .map(|e| (e + 3 * l as u16) % a.num_experts as u16)
                .collect()
        })
        .collect();
    let mixed = tmp.path().join("mixed");
    moe_edge::plan::device_bundle::write_device_bundle(
        &src,
        &per_layer,
        Some(&lowp),
        &mixed,
        false,
    )
    .unwrap();
    let m = Bundle::open(&mixed, Verify::Full).unwrap();
    let lp = m
        .manifest
        .experts_lowp
        .as_ref()
        .expect("experts_lowp in manifest");
    assert_eq!(lp.dtype, ExpertDtype::Q4);
    assert!(m.manifest.experts.present.is_some());

    let (mean, agree, rows, c) = logits_vs_golden(&mixed);
    let (q4_mean, q4_agree, _, _) = logits_vs_golden(&q4_dir);
    eprintln!("mixed: mean |Δ| {mean} argmax {agree}/{rows} counts {c:?}; q4 {q4_mean} {q4_agree}");
    assert!(c.low_precision > 0, "{c:?}");
    assert!(c.resident + c.paged > 0, "{c:?}");
    assert_eq!(c.substituted + c.remote, 0, "{c:?}");
    // about 3/4 of the routed slots miss the full-precision quarter
    let total = c.low_precision + c.resident + c.paged;
    assert!(c.low_precision * 10 >= total * 4, "{c:?}");
    assert!(
        agree * 100 >= rows * 80,
        "mixed argmax agreement {agree}/{rows}"
    );

    // without the low-precision copy the same pruned bundle substitutes instead
    let pruned = tmp.path().join("pruned");
    moe_edge::plan::device_bundle::write_device_bundle(&src, &per_layer, None, &pruned, false)
        .unwrap();
    let (_, _, _, c) = logits_vs_golden(&pruned);
    assert!(c.substituted > 0 && c.low_precision == 0, "{c:?}");
}
