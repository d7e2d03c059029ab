//! The scale bundle: a synthetic Qwen3-MoE checkpoint in a real shape
//! (hidden 1024, 8 layers, 32 experts top-4, expert ff 512; ~425 M params,
//! ~1.7 GB in f32), generated reproducibly from a seed and imported into
//! bundles, and its decode benchmark against the memory-bandwidth roofline
//! (active bytes per token ÷ read bandwidth measured in the same run).
#![cfg_attr(not(feature = "tract"), allow(unused_imports, dead_code))]

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;

use super::bandwidth::Bandwidth;
use super::engine::{EngineBenchOptions, EngineBenchReport};
use super::BenchError;
#[cfg(feature = "tract")]
use crate::bundle::import::{import, ImportOptions};
use crate::bundle::manifest::{Dtype, Manifest};
use crate::engine::Engine;

/// The checkpoint's shape (HF Qwen3MoeConfig names).
#[derive(Debug, Clone, Copy)]
pub struct ScaleShape {
    pub hidden: usize,
    pub layers: usize,
    pub experts: usize,
    pub top_k: usize,
    pub moe_inter: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
}

impl Default for ScaleShape {
    /// The shape of DESIGN.md's speed target (425 M params with a small vocab).
    fn default() -> Self {
        ScaleShape {
            hidden: 1024,
            layers: 8,
            experts: 32,
            top_k: 4,
            moe_inter: 512,
            heads: 16,
            kv_heads: 4,
            head_dim: 64,
            vocab: 512,
        }
    }
}

/// Where the fixture tokenizer lives (497 tokens; the vocab is padded to 512).
pub const FIXTURE_DIR: &str = "tests/fixtures/qwen3_moe";

fn err(msg: impl Into<String>) -> BenchError {
    BenchError::Other(msg.into())
}

fn io(p: &Path, e: std::io::Error) -> BenchError {
    err(format!("{}: {e}", p.display()))
}

/// Tensor name, shape and init (`None`: ones, for norms) in file order.
fn tensors(s: &ScaleShape) -> Vec<(String, Vec<usize>, bool)> {
    let h = s.hidden;
    let mut v = vec![
        (
            "model.embed_tokens.weight".to_string(),
            vec![s.vocab, h],
            true,
        ),
        ("model.norm.weight".to_string(), vec![h], false),
        ("lm_head.weight".to_string(), vec![s.vocab, h], true),
    ];
    for l in 0..s.layers {
        let p = |r: &str| format!("model.layers.{l}.{r}");
        v.push((p("input_layernorm.weight"), vec![h], false));
        v.push((p("post_attention_layernorm.weight"), vec![h], false));
        v.push((
            p("self_attn.q_proj.weight"),
            vec![s.heads * s.head_dim, h],
            true,
        ));
        v.push((
            p("self_attn.k_proj.weight"),
            vec![s.kv_heads * s.head_dim, h],
            true,
        ));
        v.push((
            p("self_attn.v_proj.weight"),
            vec![s.kv_heads * s.head_dim, h],
            true,
        ));
        v.push((
            p("self_attn.o_proj.weight"),
            vec![h, s.heads * s.head_dim],
            true,
        ));
        v.push((p("self_attn.q_norm.weight"), vec![s.head_dim], false));
        v.push((p("self_attn.k_norm.weight"), vec![s.head_dim], false));
        v.push((p("mlp.gate.weight"), vec![s.experts, h], true));
        for e in 0..s.experts {
            let q = |r: &str| p(&format!("mlp.experts.{e}.{r}"));
            v.push((q("gate_proj.weight"), vec![s.moe_inter, h], true));
            v.push((q("up_proj.weight"), vec![s.moe_inter, h], true));
            v.push((q("down_proj.weight"), vec![h, s.moe_inter], true));
        }
    }
    v
}

fn config_json(s: &ScaleShape) -> serde_json::Value {
    json!({
        "architectures": ["Qwen3MoeForCausalLM"],
        "attention_bias": false,
        "attention_dropout": 0.0,
        "decoder_sparse_step": 1,
        "dtype": "float32",
        "bos_token_id": null,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "head_dim": s.head_dim,
        "hidden_act": "silu",
        "hidden_size": s.hidden,
        "initializer_range": 0.02,
        "intermediate_size": 3 * s.hidden,
        "max_position_embeddings": 2048,
        "max_window_layers": s.layers,
        "mlp_only_layers": [],
        "model_type": "qwen3_moe",
        "moe_intermediate_size": s.moe_inter,
        "norm_topk_prob": true,
        "num_attention_heads": s.heads,
        "num_experts": s.experts,
        "num_experts_per_tok": s.top_k,
        "num_hidden_layers": s.layers,
        "num_key_value_heads": s.kv_heads,
        "output_router_logits": false,
        "rms_norm_eps": 1e-06,
        "rope_scaling": null,
        "rope_theta": 1000000.0,
        "router_aux_loss_coef": 0.001,
        "sliding_window": null,
        "tie_word_embeddings": false,
        "transformers_version": "4.57.6",
        "use_cache": true,
        "use_sliding_window": false,
        "vocab_size": s.vocab
    })
}

/// Write `model.safetensors` tensor by tensor (f32; uniform init with std
/// 0.02, norms at 1) from `StdRng::seed_from_u64(seed)`. Returns its size.
pub fn write_checkpoint(hf: &Path, s: &ScaleShape, seed: u64) -> Result<u64, BenchError> {
    let list = tensors(s);
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut off = 0usize;
    for (name, shape, _) in &list {
        let bytes = shape.iter().product::<usize>() * 4;
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [off, off + bytes]}),
        );
        off += bytes;
    }
    let mut hj =
        serde_json::to_vec(&serde_json::Value::Object(header)).map_err(|e| err(e.to_string()))?;
    while hj.len() % 8 != 0 {
        hj.push(b' ');
    }
    let path = hf.join("model.safetensors");
    let f = std::fs::File::create(&path).map_err(|e| io(&path, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let wr = |w: &mut BufWriter<std::fs::File>, b: &[u8]| w.write_all(b).map_err(|e| io(&path, e));
    wr(&mut w, &(hj.len() as u64).to_le_bytes())?;
    wr(&mut w, &hj)?;
    let mut rng = StdRng::seed_from_u64(seed);
    // uniform(-a, a) has std a/sqrt(3)
    let a = 0.02f32 * 3f32.sqrt();
    let mut buf: Vec<u8> = Vec::new();
    for (_, shape, random) in &list {
        let n = shape.iter().product::<usize>();
        buf.clear();
        buf.reserve(n * 4);
        for _ in 0..n {
            let v = if *random {
                rng.gen_range(-a..a)
            } else {
                1.0f32
            };
            buf.extend_from_slice(&v.to_le_bytes());
        }
        wr(&mut w, &buf)?;
    }
    w.flush().map_err(|e| io(&path, e))?;
    Ok((8 + hj.len() + off) as u64)
}

#[derive(Debug, Clone, Serialize)]
pub struct MadeBundle {
    pub dtype: String,
    pub dir: PathBuf,
    pub total_bytes: u64,
    pub experts_bytes: u64,
    pub graph_bytes: u64,
}

/// `DIR/hf` (checkpoint + tokenizer), `DIR/bundle` (f32) and, with
/// `Dtype::F16` in `dtypes`, `DIR/bundle-f16`.
#[cfg(feature = "tract")]
pub fn make(dir: &Path, seed: u64, dtypes: &[Dtype]) -> Result<Vec<MadeBundle>, BenchError> {
    let s = ScaleShape::default();
    let hf = dir.join("hf");
    std::fs::create_dir_all(&hf).map_err(|e| io(&hf, e))?;
    let fixture = Path::new(FIXTURE_DIR);
    let tok = fixture.join("tokenizer.json");
    let text = std::fs::read_to_string(&tok).map_err(|e| io(&tok, e))?;
    let t: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err(format!("{}: {e}", tok.display())))?;
    let n_tok = t["model"]["vocab"].as_object().map_or(0, |m| m.len())
        + t["added_tokens"].as_array().map_or(0, |a| a.len());
    if n_tok > s.vocab {
        return Err(err(format!(
            "fixture tokenizer has {n_tok} tokens > vocab {}",
            s.vocab
        )));
    }
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        let src = fixture.join(f);
        if src.exists() {
            std::fs::copy(&src, hf.join(f)).map_err(|e| io(&src, e))?;
        }
    }
    // The checkpoint's geometry is Qwen3-MoE's, so is its chat template: tools
    // rendered into the prompt as the real checkpoints do.
    let tc = hf.join("tokenizer_config.json");
    let mut tcv: serde_json::Value = match std::fs::read_to_string(&tc) {
        Ok(t) => serde_json::from_str(&t).map_err(|e| err(format!("{}: {e}", tc.display())))?,
        Err(_) => serde_json::json!({}),
    };
    tcv["chat_template"] = include_str!("../../models/templates/qwen3.jinja").into();
    let text = serde_json::to_string_pretty(&tcv).map_err(|e| err(e.to_string()))?;
    std::fs::write(&tc, text).map_err(|e| io(&tc, e))?;
    let cfg = hf.join("config.json");
    let cj = serde_json::to_string_pretty(&config_json(&s)).map_err(|e| err(e.to_string()))?;
    std::fs::write(&cfg, cj).map_err(|e| io(&cfg, e))?;
    let bytes = write_checkpoint(&hf, &s, seed)?;
    log::info!(
        "scale checkpoint dir={} bytes={bytes} seed={seed}",
        hf.display()
    );
    let mut made = Vec::new();
    for &dt in dtypes {
        let out = match dt {
            Dtype::F32 => dir.join("bundle"),
            _ => dir.join(format!("bundle-{}", dtype_name(dt))),
        };
        let mut o = ImportOptions::new(&hf, &out);
        o.dtype = dt;
        o.model_id = Some(format!("scale-qwen3-moe-s{seed}"));
        o.force = true;
        let r = import(&o).map_err(|e| err(format!("import {}: {e}", out.display())))?;
        println!("{r}");
        made.push(MadeBundle {
            dtype: dtype_name(dt).into(),
            dir: out,
            total_bytes: r.total_bytes,
            experts_bytes: r.experts_bytes,
            graph_bytes: r.graph_bytes,
        });
    }
    Ok(made)
}

fn dtype_name(d: Dtype) -> &'static str {
    match d {
        Dtype::F32 => "f32",
        _ => "f16",
    }
}

/// Bytes a decode step reads: the dense weights of every layer and the head,
/// one embedding row, and top-k experts per layer. With the native backend
/// the dense weights are `dense.safetensors`' (in its dtype); with a graph
/// backend, the ONNX files' (weights dominate them).
#[derive(Debug, Clone, Serialize)]
pub struct ActiveBytes {
    pub layer_graphs: u64,
    pub head_graph: u64,
    pub embed_row: u64,
    pub experts: u64,
    pub total: u64,
}

pub fn active_bytes(m: &Manifest, native: bool) -> ActiveBytes {
    let a = &m.architecture;
    let experts = (a.num_layers * a.top_k * m.experts.expert_bytes) as u64;
    if let (true, Some(d)) = (native, &m.dense) {
        use crate::bundle::names::Names;
        let plan = crate::bundle::import::dense::plan(a, d.dtype);
        let bytes = |name: &str| {
            plan.iter()
                .find(|p| p.name == name)
                .map_or(0, |p| p.bytes() as u64)
        };
        let embed = bytes(Names::embed());
        let embed_row = embed / a.vocab_size as u64;
        let head = if a.tie_word_embeddings {
            embed
        } else {
            bytes(Names::lm_head())
        } + bytes(Names::final_norm());
        let all: u64 = plan.iter().map(|p| p.bytes() as u64).sum();
        let layers = all - embed - head + if a.tie_word_embeddings { embed } else { 0 };
        return ActiveBytes {
            layer_graphs: layers,
            head_graph: head,
            embed_row,
            experts,
            total: layers + head + embed_row + experts,
        };
    }
    let size_of = |graph: &str| -> u64 {
        m.files
            .iter()
            .filter(|f| f.path == graph || f.path.starts_with(&format!("{graph}.")))
            .map(|f| f.size)
            .sum()
    };
    let layer_graphs: u64 = m.graphs.layers.iter().map(|g| size_of(g)).sum();
    let head_graph = size_of(&m.graphs.head);
    let embed_row = (a.hidden_size * m.dtype.size()) as u64;
    ActiveBytes {
        layer_graphs,
        head_graph,
        embed_row,
        experts,
        total: layer_graphs + head_graph + embed_row + experts,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    pub bundle: PathBuf,
    pub dtype: String,
    pub bandwidth: Bandwidth,
    pub active: ActiveBytes,
    pub decode_tok_s: f64,
    pub roofline_tok_s: f64,
    pub roofline_share: f64,
    pub engine: EngineBenchReport,
}

/// Measure bandwidth, then decode on `engine`, in the same process.
pub fn run(
    engine: &Engine,
    bundle: &Path,
    board: &str,
    o: &EngineBenchOptions,
    bw_bytes: usize,
) -> Result<ScaleReport, BenchError> {
    let bandwidth = super::bandwidth::measure(bw_bytes, 2, 5);
    let m = &engine.model.manifest;
    let native = engine.model.backend_name() == "native";
    let active = active_bytes(m, native);
    let r = super::engine::run(engine, board, o)?;
    let roofline = bandwidth.read_gb_s * 1e9 / active.total as f64;
    log::info!(
        "scale bench bundle={} decode_tok_s={:.2} roofline_tok_s={roofline:.2} bw_gb_s={:.2} active_bytes={}",
        bundle.display(),
        r.decode_tok_s,
        bandwidth.read_gb_s,
        active.total
    );
    Ok(ScaleReport {
        bundle: bundle.to_path_buf(),
        dtype: m.experts.dtype.name().into(),
        decode_tok_s: r.decode_tok_s,
        roofline_tok_s: roofline,
        roofline_share: r.decode_tok_s / roofline,
        bandwidth,
        active,
        engine: r,
    })
}

impl ScaleReport {
    pub fn table(&self) -> String {
        let mb = |b: u64| b as f64 / 1e6;
        format!(
            "| bundle | dtype | kernels | decode tok/s | roofline tok/s | % of roofline | read GB/s (2 threads) | active MB/token (experts / graphs) |\n\
             |---|---|---|---|---|---|---|---|\n\
             | {} | {} | {} | {:.1} | {:.1} | {:.1} % | {:.2} | {:.1} ({:.1} / {:.1}) |",
            self.bundle.display(),
            self.dtype,
            self.engine.kernels,
            self.decode_tok_s,
            self.roofline_tok_s,
            self.roofline_share * 100.0,
            self.bandwidth.read_gb_s,
            mb(self.active.total),
            mb(self.active.experts),
            mb(self.active.layer_graphs + self.active.head_graph + self.active.embed_row),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_shape_is_the_design_target() {
        let s = ScaleShape::default();
        let params: usize = tensors(&s)
            .iter()
            .map(|(_, sh, _)| sh.iter().product::<usize>())
            .sum();
        assert!((420_000_000..430_000_000).contains(&params), "{params}");
        let c = config_json(&s);
        assert_eq!(c["architectures"][0], "Qwen3MoeForCausalLM");
    }

    #[test]
    fn checkpoint_is_reproducible() {
        let s = ScaleShape {
            hidden: 16,
            layers: 1,
            experts: 2,
            top_k: 1,
            moe_inter: 8,
            heads: 2,
            kv_heads: 1,
            head_dim: 8,
            vocab: 32,
        };
        let d = std::env::temp_dir().join(format!("moe-edge-scale-{}", std::process::id()));
        let (a, b) = (d.join("a"), d.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        write_checkpoint(&a, &s, 1).unwrap();
        write_checkpoint(&b, &s, 1).unwrap();
        let fa = std::fs::read(a.join("model.safetensors")).unwrap();
        assert_eq!(fa, std::fs::read(b.join("model.safetensors")).unwrap());
        let st = safetensors::SafeTensors::deserialize(&fa).unwrap();
        assert_eq!(
            st.tensor("model.layers.0.mlp.experts.1.down_proj.weight")
                .unwrap()
                .shape(),
            &[16, 8]
        );
        std::fs::remove_dir_all(&d).ok();
    }
}
