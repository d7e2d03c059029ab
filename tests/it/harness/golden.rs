//! Golden reference vectors written by `models/forge` next to each fixture
//! checkpoint (`golden.safetensors`: per prompt `p{i}.input_ids`,
//! `p{i}.logits`, `p{i}.hidden`, `p{i}.router_ids`, `p{i}.router_weights`,
//! `p{i}.greedy`), as transformers computed them.

use std::path::Path;

use safetensors::SafeTensors;

/// One prompt's references.
pub struct GoldenPrompt {
    pub ids: Vec<i64>,
    pub logits: Vec<f32>,
    pub hidden: Vec<f32>,
    pub router_ids: Vec<i64>,
    /// Empty when the file has none.
    pub router_weights: Vec<f32>,
    /// Empty when the file has none.
    pub greedy: Vec<i64>,
}

/// Every prompt of a golden file.
pub fn read_golden(path: &Path) -> Vec<GoldenPrompt> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |n: &str| -> Vec<f32> {
        let t = st
            .tensor(n)
            .unwrap_or_else(|e| panic!("{}: {n}: {e}", path.display()));
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{n}");
        t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let i64s = |n: &str| -> Vec<i64> {
        let t = st
            .tensor(n)
            .unwrap_or_else(|e| panic!("{}: {n}: {e}", path.display()));
        assert_eq!(t.dtype(), safetensors::Dtype::I64, "{n}");
        t.data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let has = |n: &str| st.tensor(n).is_ok();
    let mut prompts = Vec::new();
    for i in 0.. {
        let name = |what: &str| format!("p{i}.{what}");
        if !has(&name("input_ids")) {
            break;
        }
        prompts.push(GoldenPrompt {
            ids: i64s(&name("input_ids")),
            logits: f32s(&name("logits")),
            hidden: f32s(&name("hidden")),
            router_ids: i64s(&name("router_ids")),
            router_weights: if has(&name("router_weights")) {
                f32s(&name("router_weights"))
            } else {
                Vec::new()
            },
            greedy: if has(&name("greedy")) {
                i64s(&name("greedy"))
            } else {
                Vec::new()
            },
        });
    }
    assert!(!prompts.is_empty(), "{}: no prompts", path.display());
    prompts
}
