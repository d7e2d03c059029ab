//! The Hugging Face tensor names of each supported architecture: what the
//! importer reads from a checkpoint and `dense.safetensors` keeps.

use super::manifest::{ArchKind, Architecture, QkNorm};

/// Checkpoint tensor names of one architecture.
pub struct Names;

impl Names {
    pub fn embed() -> &'static str {
        "model.embed_tokens.weight"
    }
    pub fn final_norm() -> &'static str {
        "model.norm.weight"
    }
    pub fn lm_head() -> &'static str {
        "lm_head.weight"
    }
    pub fn layer(l: usize, rest: &str) -> String {
        format!("model.layers.{l}.{rest}")
    }
    pub fn router(kind: ArchKind, l: usize) -> String {
        match kind {
            ArchKind::Mixtral => Self::layer(l, "block_sparse_moe.gate.weight"),
            _ => Self::layer(l, "mlp.gate.weight"),
        }
    }
    /// gate, up, down of routed expert `e` of layer `l`.
    pub fn expert(kind: ArchKind, l: usize, e: usize) -> [String; 3] {
        match kind {
            ArchKind::Mixtral => ["w1", "w3", "w2"]
                .map(|p| Self::layer(l, &format!("block_sparse_moe.experts.{e}.{p}.weight"))),
            _ => ["gate_proj", "up_proj", "down_proj"]
                .map(|p| Self::layer(l, &format!("mlp.experts.{e}.{p}.weight"))),
        }
    }
}

/// Whether each attention projection has a bias: (q, k, v, o).
pub fn biases(a: &Architecture) -> (bool, bool) {
    match a.kind {
        // Qwen2-MoE: q/k/v biased (`qkv_bias`, default true), o never.
        ArchKind::Qwen2Moe => (a.attention_bias, false),
        ArchKind::Mixtral => (false, false),
        ArchKind::Qwen3Moe | ArchKind::Olmoe => (a.attention_bias, a.attention_bias),
    }
}

/// Every dense tensor the graphs read, with its expected shape (used to check
/// a checkpoint before anything is written).
pub fn dense_tensors(a: &Architecture) -> Vec<(String, Vec<usize>)> {
    let (h, d, nh, kvh) = (a.hidden_size, a.head_dim, a.num_heads, a.num_kv_heads);
    let mut v = vec![
        (Names::embed().to_string(), vec![a.vocab_size, h]),
        (Names::final_norm().to_string(), vec![h]),
    ];
    if !a.tie_word_embeddings {
        v.push((Names::lm_head().to_string(), vec![a.vocab_size, h]));
    }
    let (qkv_bias, o_bias) = biases(a);
    for l in 0..a.num_layers {
        let n = |s: &str| Names::layer(l, s);
        v.push((n("input_layernorm.weight"), vec![h]));
        v.push((n("post_attention_layernorm.weight"), vec![h]));
        v.push((n("self_attn.q_proj.weight"), vec![nh * d, h]));
        v.push((n("self_attn.k_proj.weight"), vec![kvh * d, h]));
        v.push((n("self_attn.v_proj.weight"), vec![kvh * d, h]));
        v.push((n("self_attn.o_proj.weight"), vec![h, nh * d]));
        if qkv_bias {
            v.push((n("self_attn.q_proj.bias"), vec![nh * d]));
            v.push((n("self_attn.k_proj.bias"), vec![kvh * d]));
            v.push((n("self_attn.v_proj.bias"), vec![kvh * d]));
        }
        if o_bias {
            v.push((n("self_attn.o_proj.bias"), vec![h]));
        }
        match a.qk_norm {
            QkNorm::None => {}
            QkNorm::PerHead => {
                v.push((n("self_attn.q_norm.weight"), vec![d]));
                v.push((n("self_attn.k_norm.weight"), vec![d]));
            }
            QkNorm::Full => {
                v.push((n("self_attn.q_norm.weight"), vec![nh * d]));
                v.push((n("self_attn.k_norm.weight"), vec![kvh * d]));
            }
        }
        v.push((Names::router(a.kind, l), vec![a.num_experts, h]));
        if let Some(is) = a.shared_expert_intermediate_size {
            v.push((n("mlp.shared_expert.gate_proj.weight"), vec![is, h]));
            v.push((n("mlp.shared_expert.up_proj.weight"), vec![is, h]));
            v.push((n("mlp.shared_expert.down_proj.weight"), vec![h, is]));
            v.push((n("mlp.shared_expert_gate.weight"), vec![1, h]));
        }
    }
    v
}

/// Every routed expert tensor with its expected shape.
pub fn expert_tensors(a: &Architecture) -> Vec<(String, Vec<usize>)> {
    let (h, i) = (a.hidden_size, a.expert_intermediate_size);
    let mut v = Vec::new();
    for l in 0..a.num_layers {
        for e in 0..a.num_experts {
            let [g, u, d] = Names::expert(a.kind, l, e);
            v.push((g, vec![i, h]));
            v.push((u, vec![i, h]));
            v.push((d, vec![h, i]));
        }
    }
    v
}
