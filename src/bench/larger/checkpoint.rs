//! The larger checkpoint: a seeded random model in OLMoE-1B-7B's published
//! geometry (16 layers, hidden 2048, 64 experts top-8, expert ff 1024, vocab
//! 50 304; about 6.9 B parameters), written as Hugging Face safetensors
//! shards in bf16 with `model.safetensors.index.json`. Every tensor is
//! generated in chunks straight into the shard being written, so the writer
//! never holds more than one chunk of it in RAM. Owns the geometry and the
//! writing; importing and measuring are the caller's.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use half::bf16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::super::BenchError;
use crate::bundle::manifest::{ArchKind, Architecture, QkNorm};
use crate::bundle::names::{dense_tensors, expert_tensors};

/// OLMoE-1B-7B-0924's `config.json` geometry.
pub fn olmoe_1b_7b() -> Architecture {
    Architecture {
        kind: ArchKind::Olmoe,
        hf_architecture: "OlmoeForCausalLM".into(),
        num_layers: 16,
        hidden_size: 2048,
        num_heads: 16,
        num_kv_heads: 16,
        head_dim: 128,
        num_experts: 64,
        top_k: 8,
        expert_intermediate_size: 1024,
        shared_expert_intermediate_size: None,
        norm_topk_prob: false,
        rope_theta: 10000.0,
        rms_norm_eps: 1e-5,
        vocab_size: 50304,
        max_context: 4096,
        qk_norm: QkNorm::Full,
        attention_bias: false,
        tie_word_embeddings: false,
    }
}

/// The geometry with only its first `layers` layers.
pub fn with_layers(mut a: Architecture, layers: usize) -> Architecture {
    a.num_layers = layers;
    a
}

/// `config.json` of an OLMoE geometry (the fields transformers and
/// llama.cpp's converter read).
pub fn config_json(a: &Architecture) -> serde_json::Value {
    json!({
        "architectures": [a.hf_architecture],
        "model_type": "olmoe",
        "attention_bias": a.attention_bias,
        "attention_dropout": 0.0,
        "clip_qkv": null,
        "dtype": "bfloat16",
        "bos_token_id": null,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "hidden_act": "silu",
        "hidden_size": a.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": a.expert_intermediate_size,
        "max_position_embeddings": a.max_context,
        "norm_topk_prob": a.norm_topk_prob,
        "num_attention_heads": a.num_heads,
        "num_experts": a.num_experts,
        "num_experts_per_tok": a.top_k,
        "num_hidden_layers": a.num_layers,
        "num_key_value_heads": a.num_kv_heads,
        "output_router_logits": false,
        "rms_norm_eps": a.rms_norm_eps,
        "rope_scaling": null,
        "rope_theta": a.rope_theta,
        "router_aux_loss_coef": 0.01,
        "tie_word_embeddings": a.tie_word_embeddings,
        "transformers_version": "4.57.6",
        "use_cache": true,
        "vocab_size": a.vocab_size
    })
}

/// Every tensor of the checkpoint in file order: name, shape, and whether it
/// is random (`false`: a norm, all ones).
pub fn tensors(a: &Architecture) -> Vec<(String, Vec<usize>, bool)> {
    dense_tensors(a)
        .into_iter()
        .chain(expert_tensors(a))
        .map(|(n, s)| {
            let random = !n.contains("norm");
            (n, s, random)
        })
        .collect()
}

pub fn parameters(a: &Architecture) -> u64 {
    tensors(a)
        .iter()
        .map(|(_, s, _)| s.iter().product::<usize>() as u64)
        .sum()
}

/// Values generated per seeded chunk (each chunk has its own generator, so
/// the two halves of a tensor can be made on two threads).
const CHUNK: usize = 1 << 20;

fn chunk_seed(seed: u64, tensor: usize, chunk: usize) -> u64 {
    // splitmix64 of the three
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((tensor as u64) << 32 | chunk as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// bf16 bytes of values `[start, start + n)` of tensor `t` (uniform with std
/// 0.02, or ones).
fn fill(seed: u64, t: usize, random: bool, start: usize, out: &mut [u8]) {
    let a = 0.02f32 * 3f32.sqrt();
    debug_assert_eq!(start % CHUNK, 0);
    for (ci, chunk) in out.chunks_mut(CHUNK * 2).enumerate() {
        let mut rng = StdRng::seed_from_u64(chunk_seed(seed, t, start / CHUNK + ci));
        for v in chunk.chunks_exact_mut(2) {
            let x = if random { rng.gen_range(-a..a) } else { 1.0 };
            v.copy_from_slice(&bf16::from_f32(x).to_le_bytes());
        }
    }
}

/// Writes `config.json`-less shards of at most `shard_bytes` each plus the
/// index into `hf`. Returns the bytes of tensor data written.
pub fn write_shards(
    hf: &Path,
    a: &Architecture,
    seed: u64,
    shard_bytes: u64,
) -> Result<u64, BenchError> {
    let list = tensors(a);
    // Assign tensors to shards in order.
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut in_shard = 0u64;
    for (i, (_, shape, _)) in list.iter().enumerate() {
        let b = shape.iter().product::<usize>() as u64 * 2;
        if in_shard > 0 && in_shard + b > shard_bytes {
            shards.push(Vec::new());
            in_shard = 0;
        }
        shards.last_mut().expect("one shard").push(i);
        in_shard += b;
    }
    let n = shards.len();
    let mut weight_map = BTreeMap::new();
    let mut total = 0u64;
    let io = |p: &Path, e: std::io::Error| BenchError::Other(format!("{}: {e}", p.display()));
    for (si, members) in shards.iter().enumerate() {
        let fname = format!("model-{:05}-of-{n:05}.safetensors", si + 1);
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), json!({"format": "pt"}));
        let mut off = 0usize;
        for &i in members {
            let (name, shape, _) = &list[i];
            let bytes = shape.iter().product::<usize>() * 2;
            header.insert(
                name.clone(),
                json!({"dtype": "BF16", "shape": shape, "data_offsets": [off, off + bytes]}),
            );
            weight_map.insert(name.clone(), fname.clone());
            off += bytes;
        }
        let mut hj = serde_json::to_vec(&serde_json::Value::Object(header))
            .map_err(|e| BenchError::Other(e.to_string()))?;
        while hj.len() % 8 != 0 {
            hj.push(b' ');
        }
        let path = hf.join(&fname);
        let f = File::create(&path).map_err(|e| io(&path, e))?;
        let mut w = BufWriter::with_capacity(1 << 22, f);
        w.write_all(&(hj.len() as u64).to_le_bytes())
            .and_then(|_| w.write_all(&hj))
            .map_err(|e| io(&path, e))?;
        // Two chunk-aligned halves of a block at a time, on two threads.
        let block = 8 * CHUNK;
        let mut buf = vec![0u8; block * 2];
        for &i in members {
            let (_, shape, random) = &list[i];
            let len: usize = shape.iter().product();
            let mut start = 0;
            while start < len {
                let m = block.min(len - start);
                let half = (m / 2).div_ceil(CHUNK) * CHUNK;
                let (lo, hi) = buf[..m * 2].split_at_mut(half.min(m) * 2);
                std::thread::scope(|s| {
                    s.spawn(|| fill(seed, i, *random, start, lo));
                    if !hi.is_empty() {
                        fill(seed, i, *random, start + half, hi);
                    }
                });
                w.write_all(&buf[..m * 2]).map_err(|e| io(&path, e))?;
                start += m;
            }
        }
        w.flush().map_err(|e| io(&path, e))?;
        total += off as u64;
        log::info!(
            "larger checkpoint shard={} of={n} bytes={off}",
            path.display()
        );
    }
    let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    let ip = hf.join("model.safetensors.index.json");
    let text =
        serde_json::to_string_pretty(&index).map_err(|e| BenchError::Other(e.to_string()))?;
    std::fs::write(&ip, text).map_err(|e| io(&ip, e))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_olmoe_1b_7b() {
        let p = parameters(&olmoe_1b_7b());
        // OLMoE-1B-7B: 6.92 B parameters.
        assert!((6_900_000_000..6_950_000_000).contains(&p), "{p}");
    }

    #[test]
    fn shards_are_reproducible_and_readable() {
        let mut a = olmoe_1b_7b();
        a.num_layers = 1;
        a.hidden_size = 64;
        a.num_heads = 2;
        a.num_kv_heads = 2;
        a.head_dim = 32;
        a.num_experts = 4;
        a.top_k = 2;
        a.expert_intermediate_size = 32;
        a.vocab_size = 100;
        let d = tempfile::tempdir().unwrap();
        let (x, y) = (d.path().join("x"), d.path().join("y"));
        std::fs::create_dir_all(&x).unwrap();
        std::fs::create_dir_all(&y).unwrap();
        let bytes = write_shards(&x, &a, 7, 20_000).unwrap();
        write_shards(&y, &a, 7, 20_000).unwrap();
        let idx: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(x.join("model.safetensors.index.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(idx["metadata"]["total_size"], bytes);
        let files: std::collections::BTreeSet<String> = idx["weight_map"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert!(files.len() > 1, "several shards: {files:?}");
        for f in &files {
            let bx = std::fs::read(x.join(f)).unwrap();
            assert_eq!(bx, std::fs::read(y.join(f)).unwrap());
            let st = safetensors::SafeTensors::deserialize(&bx).unwrap();
            for (name, t) in st.tensors() {
                let vals: Vec<f32> = t
                    .data()
                    .chunks_exact(2)
                    .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect();
                if name.contains("norm") {
                    assert!(vals.iter().all(|&v| v == 1.0));
                } else {
                    let mean = vals.iter().sum::<f32>() / vals.len() as f32;
                    let max = vals.iter().fold(0f32, |m, v| m.max(v.abs()));
                    assert!(mean.abs() < 0.01 && max < 0.035 && max > 0.0, "{name}");
                }
            }
        }
    }
}
