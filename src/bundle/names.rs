//! The Hugging Face tensor names of each supported architecture: what the
//! importer reads from a checkpoint and `dense.safetensors` keeps.

use super::manifest::ArchKind;

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

