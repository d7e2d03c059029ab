//! `manifest.json`: the typed description of a bundle (architecture, special
//! tokens, graphs, expert file layout, every file with size and sha256).
//! Owns (de)serialisation and the structural checks of the manifest itself;
//! file hashing lives in `bundle::files`, loading tensors lives elsewhere.

use serde::{Deserialize, Serialize};

use super::BundleError;

/// Bumped when the bundle layout changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;
/// Page alignment of every expert inside `experts.safetensors`.
pub const EXPERT_ALIGN: usize = 4096;

/// Model family, decides router normalisation and the attention details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchKind {
    Qwen3Moe,
    Qwen2Moe,
    Mixtral,
    Olmoe,
}

impl ArchKind {
    /// The Hugging Face `architectures` values we import.
    pub const SUPPORTED: &'static [(&'static str, ArchKind)] = &[
        ("Qwen3MoeForCausalLM", ArchKind::Qwen3Moe),
        ("Qwen2MoeForCausalLM", ArchKind::Qwen2Moe),
        ("MixtralForCausalLM", ArchKind::Mixtral),
        ("OlmoeForCausalLM", ArchKind::Olmoe),
    ];

    pub fn from_hf(name: &str) -> Option<ArchKind> {
        Self::SUPPORTED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
    }
}

/// How q/k are normalised before RoPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QkNorm {
    None,
    /// RMSNorm over each head's `head_dim` (Qwen3-MoE).
    PerHead,
    /// RMSNorm over the whole projected q (heads*head_dim) and k (OLMoE).
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    F32,
    F16,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
        }
    }
    pub fn parse(s: &str) -> Option<Dtype> {
        match s {
            "f32" | "float32" => Some(Dtype::F32),
            "f16" | "float16" => Some(Dtype::F16),
            _ => None,
        }
    }
}

/// How routed experts are stored in `experts.safetensors`. `F32`/`F16` are
/// plain [3, I, H] tensors. The quantised forms are U8 tensors
/// [3, I, row_bytes(H)]: every row (gate row, up row, down^T row, each of H
/// values) is a run of blocks of `QUANT_GROUP` = 32 consecutive values along H,
/// each block a little-endian f16 scale `d` followed by
/// - `Q8`: 32 int8 `q`, value = d * q (llama.cpp Q8_0, 34 bytes per block);
/// - `Q4`: 16 bytes, value j in the low nibble of byte j and value j + 16 in
///   the high nibble, value = d * (nibble - 8) (llama.cpp Q4_0, 18 bytes).
///
/// Gate and up rows are dot products along H, the grouped dimension; down^T rows
/// are added (scaled) into the H-long output, so they are dequantised group by group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpertDtype {
    F32,
    F16,
    Q8,
    Q4,
}

/// Values per quantisation group (along H).
pub const QUANT_GROUP: usize = 32;

impl ExpertDtype {
    pub fn parse(s: &str) -> Option<ExpertDtype> {
        match s {
            "f32" | "float32" => Some(ExpertDtype::F32),
            "f16" | "float16" => Some(ExpertDtype::F16),
            "q8" | "q8_0" => Some(ExpertDtype::Q8),
            "q4" | "q4_0" => Some(ExpertDtype::Q4),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ExpertDtype::F32 => "f32",
            ExpertDtype::F16 => "f16",
            ExpertDtype::Q8 => "q8",
            ExpertDtype::Q4 => "q4",
        }
    }
    pub fn is_quantized(self) -> bool {
        matches!(self, ExpertDtype::Q8 | ExpertDtype::Q4)
    }
    /// Bytes of one block of `QUANT_GROUP` values (quantised forms only).
    pub fn block_bytes(self) -> usize {
        match self {
            ExpertDtype::F32 => 4 * QUANT_GROUP,
            ExpertDtype::F16 => 2 * QUANT_GROUP,
            ExpertDtype::Q8 => 2 + QUANT_GROUP,
            ExpertDtype::Q4 => 2 + QUANT_GROUP / 2,
        }
    }
    /// Bytes of one row of `h` values (`h` a multiple of `QUANT_GROUP` when quantised).
    pub fn row_bytes(self, h: usize) -> usize {
        match self {
            ExpertDtype::F32 => 4 * h,
            ExpertDtype::F16 => 2 * h,
            q => h / QUANT_GROUP * q.block_bytes(),
        }
    }
    /// Bytes of one expert [3, I, H].
    pub fn expert_bytes(self, inter: usize, h: usize) -> usize {
        3 * inter * self.row_bytes(h)
    }
    /// The safetensors dtype name of the expert tensors.
    pub fn st_name(self) -> &'static str {
        match self {
            ExpertDtype::F32 => "F32",
            ExpertDtype::F16 => "F16",
            _ => "U8",
        }
    }
    /// The innermost dimension of the safetensors shape for rows of `h` values.
    pub fn st_cols(self, h: usize) -> usize {
        match self {
            ExpertDtype::F32 | ExpertDtype::F16 => h,
            q => q.row_bytes(h),
        }
    }
}

impl From<Dtype> for ExpertDtype {
    fn from(d: Dtype) -> ExpertDtype {
        match d {
            Dtype::F32 => ExpertDtype::F32,
            Dtype::F16 => ExpertDtype::F16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    pub kind: ArchKind,
    /// The `architectures[0]` of the source config.
    pub hf_architecture: String,
    pub num_layers: usize,
    pub hidden_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub num_experts: usize,
    pub top_k: usize,
    /// Intermediate size of one routed expert.
    pub expert_intermediate_size: usize,
    /// Intermediate size of the shared expert (Qwen2-MoE), if any.
    pub shared_expert_intermediate_size: Option<usize>,
    pub norm_topk_prob: bool,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub vocab_size: usize,
    pub max_context: usize,
    pub qk_norm: QkNorm,
    pub attention_bias: bool,
    pub tie_word_embeddings: bool,
}

impl Architecture {
    /// Elements of one routed expert: gate, up and down (stored transposed), each [I, H].
    pub fn expert_elems(&self) -> usize {
        3 * self.expert_intermediate_size * self.hidden_size
    }
    pub fn groups(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }
}

/// Token ids the engine needs by role. `eos` holds every id that ends a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SpecialTokens {
    pub bos: Option<u32>,
    pub eos: Vec<u32>,
    pub pad: Option<u32>,
    pub im_start: Option<u32>,
    pub im_end: Option<u32>,
    pub tool_call_start: Option<u32>,
    pub tool_call_end: Option<u32>,
    pub fallback: Option<u32>,
}

/// The ONNX graphs of the dense work. Contract (names of inputs/outputs):
/// - `embed`: `input_ids` i64 [T] -> `hidden` f32 [T, H]
/// - `layers[l]`: `hidden` [T,H], `cos` [T,D], `sin` [T,D], `mask` [T,P+T] (additive),
///   `past_k` [P,KVH,D], `past_v` [P,KVH,D] -> `resid` [T,H] (hidden + attention),
///   `moe_in` [T,H] (post-attention norm), `router_logits` [T,E], `k` [T,KVH,D],
///   `v` [T,KVH,D], and `shared_out` [T,H] (gated shared expert) when the model has one.
/// - `head`: `hidden` [T,H] -> `logits` [T,V] (final norm + LM head).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graphs {
    pub embed: String,
    pub layers: Vec<String>,
    pub head: String,
}

/// `experts.safetensors`: one tensor per expert named `layers.{l}.experts.{e}`,
/// shape [3, I, H] = gate, up, down^T; each starts on an `EXPERT_ALIGN` boundary
/// (padding tensors `__pad.{n}` fill the gaps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpertsInfo {
    pub file: String,
    pub dtype: ExpertDtype,
    pub alignment: usize,
    /// Bytes of one expert (without padding).
    pub expert_bytes: usize,
    /// Per layer, the expert ids this bundle carries. `None`: all of them.
    pub present: Option<Vec<Vec<u32>>>,
    /// Per layer, the hex sha256 of each carried expert's `expert_bytes`, in
    /// the order of `present` (all experts when `present` is `None`). With
    /// it, a full check hashes each expert when it is first used rather than
    /// the whole file at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Vec<Vec<String>>>,
}

impl ExpertsInfo {
    /// The expert ids of layer `l` this file carries.
    pub fn carried(&self, l: usize, num_experts: usize) -> Vec<u32> {
        match &self.present {
            Some(p) => p.get(l).cloned().unwrap_or_default(),
            None => (0..num_experts as u32).collect(),
        }
    }
}

/// `dense.safetensors`: every dense weight of the model under its Hugging
/// Face name, for the native CPU backend (the ONNX graphs carry their own
/// copies for ONNX Runtime and tract). Matrices keep the checkpoint's
/// [out, in] layout, one row per output, encoded as `dtype` (U8 rows of
/// `ExpertDtype::row_bytes(in)` bytes when quantised; a matrix whose `in` is
/// not a multiple of `QUANT_GROUP` stays F16). Norm weights, biases, the
/// router and the shared-expert gate stay F32. With `dtype` q4 the LM head is
/// q8 (as llama.cpp keeps its output layer above 4 bits). Tensors start on
/// 64-byte boundaries (`__pad.{n}` tensors fill the gaps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseInfo {
    pub file: String,
    pub dtype: ExpertDtype,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub model_id: String,
    pub architecture: Architecture,
    /// Dtype of the dense graph weights (computation is f32).
    pub dtype: Dtype,
    pub special_tokens: SpecialTokens,
    pub chat_template: Option<String>,
    pub tokenizer: String,
    pub graphs: Graphs,
    pub experts: ExpertsInfo,
    /// Mixed-precision residency: a second, low-precision (q8/q4) copy of
    /// experts (usually all of them) beside the full-precision `experts`; a
    /// miss on `experts` runs this copy locally. Written by `moe-edge plan --lowp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experts_lowp: Option<ExpertsInfo>,
    /// Dense weights for the native backend; bundles without it run on tract or ort only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense: Option<DenseInfo>,
    pub files: Vec<FileEntry>,
}

pub fn expert_tensor_name(layer: usize, expert: usize) -> String {
    format!("layers.{layer}.experts.{expert}")
}

impl Manifest {
    pub fn from_json(text: &str, path: &std::path::Path) -> Result<Manifest, BundleError> {
        let m: Manifest = serde_json::from_str(text).map_err(|e| BundleError::Manifest {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        m.check(path)?;
        Ok(m)
    }

    /// Structural checks that serde cannot express.
    pub fn check(&self, path: &std::path::Path) -> Result<(), BundleError> {
        let bad = |field: &str, msg: String| BundleError::Field {
            path: path.to_path_buf(),
            field: field.to_string(),
            msg,
        };
        if self.format_version != FORMAT_VERSION {
            return Err(bad(
                "format_version",
                format!(
                    "is {}, this build reads {FORMAT_VERSION}",
                    self.format_version
                ),
            ));
        }
        let a = &self.architecture;
        for (name, v) in [
            ("architecture.num_layers", a.num_layers),
            ("architecture.hidden_size", a.hidden_size),
            ("architecture.num_heads", a.num_heads),
            ("architecture.num_kv_heads", a.num_kv_heads),
            ("architecture.head_dim", a.head_dim),
            ("architecture.num_experts", a.num_experts),
            ("architecture.top_k", a.top_k),
            (
                "architecture.expert_intermediate_size",
                a.expert_intermediate_size,
            ),
            ("architecture.vocab_size", a.vocab_size),
            ("architecture.max_context", a.max_context),
        ] {
            if v == 0 {
                return Err(bad(name, "must be > 0".into()));
            }
        }
        if a.num_heads % a.num_kv_heads != 0 {
            return Err(bad(
                "architecture.num_kv_heads",
                format!(
                    "{} does not divide num_heads {}",
                    a.num_kv_heads, a.num_heads
                ),
            ));
        }
        if a.top_k > a.num_experts {
            return Err(bad(
                "architecture.top_k",
                format!("{} > num_experts {}", a.top_k, a.num_experts),
            ));
        }
        if self.graphs.layers.len() != a.num_layers {
            return Err(bad(
                "graphs.layers",
                format!(
                    "{} graphs for {} layers",
                    self.graphs.layers.len(),
                    a.num_layers
                ),
            ));
        }
        check_experts(&self.experts, "experts", a, &bad)?;
        if let Some(lowp) = &self.experts_lowp {
            check_experts(lowp, "experts_lowp", a, &bad)?;
            if lowp.file == self.experts.file {
                return Err(bad(
                    "experts_lowp.file",
                    "must differ from experts.file".into(),
                ));
            }
        }
        Ok(())
    }

    /// Whether this bundle carries expert `e` of layer `l`.
    pub fn has_expert(&self, l: usize, e: usize) -> bool {
        match &self.experts.present {
            None => true,
            Some(p) => p[l].contains(&(e as u32)),
        }
    }
}

fn check_experts(
    x: &ExpertsInfo,
    name: &str,
    a: &Architecture,
    bad: &dyn Fn(&str, String) -> BundleError,
) -> Result<(), BundleError> {
    let f = |field: &str| format!("{name}.{field}");
    if let Some(present) = &x.present {
        if present.len() != a.num_layers {
            return Err(bad(
                &f("present"),
                format!("{} layers listed", present.len()),
            ));
        }
        for (l, ids) in present.iter().enumerate() {
            if let Some(e) = ids.iter().find(|&&e| e as usize >= a.num_experts) {
                return Err(bad(
                    &f("present"),
                    format!("layer {l}: expert {e} out of range"),
                ));
            }
        }
    }
    if let Some(hashes) = &x.sha256 {
        if hashes.len() != a.num_layers {
            return Err(bad(&f("sha256"), format!("{} layers listed", hashes.len())));
        }
        for (l, hs) in hashes.iter().enumerate() {
            let n = x.carried(l, a.num_experts).len();
            if hs.len() != n {
                return Err(bad(
                    &f("sha256"),
                    format!("layer {l}: {} hashes for {n} experts", hs.len()),
                ));
            }
            if let Some(h) = hs
                .iter()
                .find(|h| h.len() != 64 || !h.bytes().all(|c| c.is_ascii_hexdigit()))
            {
                return Err(bad(
                    &f("sha256"),
                    format!("layer {l}: `{h}` is not 64 hex digits"),
                ));
            }
        }
    }
    if x.dtype.is_quantized() && a.hidden_size % QUANT_GROUP != 0 {
        return Err(bad(
            &f("dtype"),
            format!(
                "{} needs hidden_size to be a multiple of {QUANT_GROUP}, it is {}",
                x.dtype.name(),
                a.hidden_size
            ),
        ));
    }
    let expected = x
        .dtype
        .expert_bytes(a.expert_intermediate_size, a.hidden_size);
    if x.expert_bytes != expected {
        return Err(bad(
            &f("expert_bytes"),
            format!("{} but the architecture needs {expected}", x.expert_bytes),
        ));
    }
    Ok(())
}
