//! The Hugging Face side of an import: `config.json` (raw serde, tolerant of
//! the many fields HF configs carry) validated into an [`Architecture`], and
//! the tokenizer files (special tokens, chat template).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::ImportError;
use crate::bundle::manifest::{ArchKind, Architecture, QkNorm, SpecialTokens};

/// The subset of `config.json` fields we read. Every field is optional here so
/// that a missing one is reported by name, with the file, by [`validate`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawConfig {
    pub architectures: Option<Vec<String>>,
    pub model_type: Option<String>,
    pub vocab_size: Option<Value>,
    pub hidden_size: Option<Value>,
    pub intermediate_size: Option<Value>,
    pub moe_intermediate_size: Option<Value>,
    pub shared_expert_intermediate_size: Option<Value>,
    pub num_hidden_layers: Option<Value>,
    pub num_attention_heads: Option<Value>,
    pub num_key_value_heads: Option<Value>,
    pub head_dim: Option<Value>,
    pub num_experts: Option<Value>,
    pub num_local_experts: Option<Value>,
    pub num_experts_per_tok: Option<Value>,
    pub norm_topk_prob: Option<Value>,
    pub rope_theta: Option<Value>,
    pub rope_scaling: Option<Value>,
    pub rope_parameters: Option<Value>,
    pub rms_norm_eps: Option<Value>,
    pub max_position_embeddings: Option<Value>,
    pub tie_word_embeddings: Option<Value>,
    pub attention_bias: Option<Value>,
    pub qkv_bias: Option<Value>,
    pub hidden_act: Option<Value>,
    pub use_sliding_window: Option<Value>,
    pub sliding_window: Option<Value>,
    pub mlp_only_layers: Option<Value>,
    pub decoder_sparse_step: Option<Value>,
    pub clip_qkv: Option<Value>,
    pub eos_token_id: Option<Value>,
    pub bos_token_id: Option<Value>,
    pub pad_token_id: Option<Value>,
}

/// What [`load_config`] returns: the validated architecture plus the raw
/// config (for token ids).
#[derive(Debug, Clone)]
pub struct HfConfig {
    pub path: PathBuf,
    pub raw: RawConfig,
    pub arch: Architecture,
}

fn read_json(path: &Path) -> Result<Value, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|e| ImportError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ImportError::file(path, format!("invalid JSON: {e}")))
}

fn read_json_opt(path: &Path) -> Result<Option<Value>, ImportError> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

pub fn load_config(hf_dir: &Path) -> Result<HfConfig, ImportError> {
    let path = hf_dir.join("config.json");
    let v = read_json(&path)?;
    if !v.is_object() {
        return Err(ImportError::file(&path, "is not a JSON object"));
    }
    let raw: RawConfig = serde_json::from_value(v)
        .map_err(|e| ImportError::file(&path, format!("invalid config: {e}")))?;
    let arch = validate(&raw, &path)?;
    Ok(HfConfig { path, raw, arch })
}

/// Field accessors that name the file and field in every error.
struct Fields<'a> {
    path: &'a Path,
}

impl Fields<'_> {
    fn err(&self, field: &str, msg: impl Into<String>) -> ImportError {
        ImportError::field(self.path, field, msg)
    }
    fn present<'v>(&self, _field: &str, v: &'v Option<Value>) -> Option<&'v Value> {
        match v {
            None | Some(Value::Null) => None,
            Some(x) => Some(x),
        }
    }
    fn usize_opt(&self, field: &str, v: &Option<Value>) -> Result<Option<usize>, ImportError> {
        match self.present(field, v) {
            None => Ok(None),
            Some(x) => match x.as_u64() {
                Some(n) if n > 0 => Ok(Some(n as usize)),
                Some(_) => Err(self.err(field, "must be > 0")),
                None => Err(self.err(field, format!("must be a positive integer, got {x}"))),
            },
        }
    }
    fn usize(&self, field: &str, v: &Option<Value>) -> Result<usize, ImportError> {
        self.usize_opt(field, v)?
            .ok_or_else(|| self.err(field, "missing"))
    }
    fn f64_opt(&self, field: &str, v: &Option<Value>) -> Result<Option<f64>, ImportError> {
        match self.present(field, v) {
            None => Ok(None),
            Some(x) => match x.as_f64() {
                Some(f) if f.is_finite() && f > 0.0 => Ok(Some(f)),
                _ => Err(self.err(field, format!("must be a positive number, got {x}"))),
            },
        }
    }
    fn bool_opt(&self, field: &str, v: &Option<Value>) -> Result<Option<bool>, ImportError> {
        match self.present(field, v) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(x) => Err(self.err(field, format!("must be true or false, got {x}"))),
        }
    }
}

/// Turn the raw config into the bundle's architecture, rejecting what the
/// graphs cannot reproduce.
pub fn validate(raw: &RawConfig, path: &Path) -> Result<Architecture, ImportError> {
    let f = Fields { path };
    let supported = || {
        ArchKind::SUPPORTED
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    // `architectures[0]` names the model class; configs saved from a bare
    // config object carry only `model_type`, which is mapped to the class.
    let (kind, hf_architecture) = match raw.architectures.as_ref().and_then(|a| a.first()) {
        Some(name) => {
            let kind = ArchKind::from_hf(name).ok_or_else(|| {
                f.err(
                    "architectures",
                    format!(
                        "is `{name}`, which is not supported (supported: {})",
                        supported()
                    ),
                )
            })?;
            (kind, name.clone())
        }
        None => {
            let mt = raw.model_type.as_deref().ok_or_else(|| {
                f.err(
                    "architectures",
                    format!("missing (and no `model_type`); supported: {}", supported()),
                )
            })?;
            let kind = match mt {
                "qwen3_moe" => ArchKind::Qwen3Moe,
                "qwen2_moe" => ArchKind::Qwen2Moe,
                "mixtral" => ArchKind::Mixtral,
                "olmoe" => ArchKind::Olmoe,
                other => {
                    return Err(f.err(
                        "model_type",
                        format!(
                            "is `{other}` and `architectures` is missing; supported: {} (model types qwen3_moe, qwen2_moe, mixtral, olmoe)",
                            supported()
                        ),
                    ))
                }
            };
            let name = ArchKind::SUPPORTED
                .iter()
                .find(|(_, k)| *k == kind)
                .unwrap()
                .0;
            (kind, name.to_string())
        }
    };

    let num_layers = f.usize("num_hidden_layers", &raw.num_hidden_layers)?;
    let hidden_size = f.usize("hidden_size", &raw.hidden_size)?;
    let num_heads = f.usize("num_attention_heads", &raw.num_attention_heads)?;
    let num_kv_heads = f
        .usize_opt("num_key_value_heads", &raw.num_key_value_heads)?
        .unwrap_or(num_heads);
    if num_heads % num_kv_heads != 0 {
        return Err(f.err(
            "num_key_value_heads",
            format!("{num_kv_heads} does not divide num_attention_heads {num_heads}"),
        ));
    }
    let head_dim = match f.usize_opt("head_dim", &raw.head_dim)? {
        Some(d) => d,
        None => {
            if hidden_size % num_heads != 0 {
                return Err(f.err(
                    "head_dim",
                    format!("missing and hidden_size {hidden_size} is not a multiple of num_attention_heads {num_heads}"),
                ));
            }
            hidden_size / num_heads
        }
    };
    if head_dim % 2 != 0 {
        return Err(f.err(
            "head_dim",
            format!("{head_dim} is odd, RoPE needs an even head dim"),
        ));
    }
    let vocab_size = f.usize("vocab_size", &raw.vocab_size)?;

    let (experts_field, num_experts) = match kind {
        ArchKind::Mixtral => (
            "num_local_experts",
            f.usize("num_local_experts", &raw.num_local_experts)?,
        ),
        _ => ("num_experts", f.usize("num_experts", &raw.num_experts)?),
    };
    let top_k = f.usize("num_experts_per_tok", &raw.num_experts_per_tok)?;
    if top_k > num_experts {
        return Err(f.err(
            "num_experts_per_tok",
            format!("{top_k} is larger than {experts_field} {num_experts}"),
        ));
    }
    let expert_intermediate_size = match kind {
        ArchKind::Qwen3Moe | ArchKind::Qwen2Moe => {
            f.usize("moe_intermediate_size", &raw.moe_intermediate_size)?
        }
        ArchKind::Mixtral | ArchKind::Olmoe => {
            f.usize("intermediate_size", &raw.intermediate_size)?
        }
    };
    let shared_expert_intermediate_size = match kind {
        ArchKind::Qwen2Moe => Some(f.usize(
            "shared_expert_intermediate_size",
            &raw.shared_expert_intermediate_size,
        )?),
        _ => None,
    };
    let norm_topk_prob = match kind {
        ArchKind::Mixtral => true,
        _ => f
            .bool_opt("norm_topk_prob", &raw.norm_topk_prob)?
            .unwrap_or(false),
    };

    // rope: theta from `rope_theta` or (newer transformers) `rope_parameters`.
    let rope_params = f.present("rope_parameters", &raw.rope_parameters);
    let mut rope_theta = f.f64_opt("rope_theta", &raw.rope_theta)?;
    if rope_theta.is_none() {
        if let Some(p) = rope_params {
            rope_theta = f.f64_opt("rope_parameters.rope_theta", &p.get("rope_theta").cloned())?;
        }
    }
    let rope_theta = rope_theta.unwrap_or(match kind {
        ArchKind::Mixtral => 1e6,
        _ => 10000.0,
    });
    for (field, v) in [
        ("rope_scaling", &raw.rope_scaling),
        ("rope_parameters", &raw.rope_parameters),
    ] {
        if let Some(v) = f.present(field, v) {
            let ty = v
                .get("rope_type")
                .or_else(|| v.get("type"))
                .and_then(|t| t.as_str())
                .unwrap_or("default");
            if ty != "default" {
                return Err(f.err(
                    field,
                    format!("has rope type `{ty}`; only plain RoPE (none/default) is supported"),
                ));
            }
        }
    }
    let rms_norm_eps = f
        .f64_opt("rms_norm_eps", &raw.rms_norm_eps)?
        .unwrap_or(match kind {
            ArchKind::Olmoe | ArchKind::Mixtral => 1e-5,
            _ => 1e-6,
        });
    let max_context = f
        .usize_opt("max_position_embeddings", &raw.max_position_embeddings)?
        .unwrap_or(4096);

    // Sliding windows: a window no shorter than the context never masks
    // anything; a shorter one would, and the graphs use full attention.
    let sliding_on = match kind {
        ArchKind::Qwen3Moe | ArchKind::Qwen2Moe => f
            .bool_opt("use_sliding_window", &raw.use_sliding_window)?
            .unwrap_or(false),
        ArchKind::Mixtral => true,
        ArchKind::Olmoe => false,
    };
    if sliding_on {
        if let Some(w) = f.usize_opt("sliding_window", &raw.sliding_window)? {
            if w < max_context {
                return Err(f.err(
                    "sliding_window",
                    format!(
                        "is {w}, shorter than max_position_embeddings {max_context}: sliding-window attention is not supported"
                    ),
                ));
            }
        }
    }
    if let Some(v) = f.present("mlp_only_layers", &raw.mlp_only_layers) {
        match v.as_array() {
            Some(a) if a.is_empty() => {}
            _ => {
                return Err(f.err(
                    "mlp_only_layers",
                    format!("is {v}; dense (non-MoE) layers are not supported, it must be empty"),
                ))
            }
        }
    }
    if let Some(step) = f.usize_opt("decoder_sparse_step", &raw.decoder_sparse_step)? {
        if step != 1 {
            return Err(f.err(
                "decoder_sparse_step",
                format!("is {step}; every layer must be sparse (1)"),
            ));
        }
    }
    if let Some(act) = f.present("hidden_act", &raw.hidden_act) {
        if act.as_str() != Some("silu") {
            return Err(f.err("hidden_act", format!("is {act}; only `silu` is supported")));
        }
    }
    if let Some(c) = f.present("clip_qkv", &raw.clip_qkv) {
        return Err(f.err(
            "clip_qkv",
            format!("is {c}; q/k/v clipping is not supported (must be null)"),
        ));
    }
    let attention_bias = match kind {
        // Qwen2-MoE: q/k/v biases unless (transformers >= 4.57) `qkv_bias` says otherwise.
        ArchKind::Qwen2Moe => f.bool_opt("qkv_bias", &raw.qkv_bias)?.unwrap_or(true),
        ArchKind::Mixtral => false,
        _ => f
            .bool_opt("attention_bias", &raw.attention_bias)?
            .unwrap_or(false),
    };
    let qk_norm = match kind {
        ArchKind::Qwen3Moe => QkNorm::PerHead,
        ArchKind::Olmoe => QkNorm::Full,
        _ => QkNorm::None,
    };
    let tie_word_embeddings = f
        .bool_opt("tie_word_embeddings", &raw.tie_word_embeddings)?
        .unwrap_or(false);

    Ok(Architecture {
        kind,
        hf_architecture,
        num_layers,
        hidden_size,
        num_heads,
        num_kv_heads,
        head_dim,
        num_experts,
        top_k,
        expert_intermediate_size,
        shared_expert_intermediate_size,
        norm_topk_prob,
        rope_theta,
        rms_norm_eps,
        vocab_size,
        max_context,
        qk_norm,
        attention_bias,
        tie_word_embeddings,
    })
}

/// Token ids from a JSON value that is an int or a list of ints.
fn ids_of(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|n| n as u32)
            .collect(),
        _ => vec![],
    }
}

/// The tokenizer files: `tokenizer.json` (required), `tokenizer_config.json`
/// and `generation_config.json` (optional).
pub struct TokenizerInfo {
    pub tokenizer_path: PathBuf,
    pub special: SpecialTokens,
    pub chat_template: Option<String>,
}

/// A token string from `tokenizer_config.json` (a string or an AddedToken object).
fn token_str(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o
            .get("content")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        _ => None,
    }
}

pub fn load_tokenizer(hf_dir: &Path, cfg: &HfConfig) -> Result<TokenizerInfo, ImportError> {
    let tokenizer_path = hf_dir.join("tokenizer.json");
    let tok = read_json(&tokenizer_path)?;
    let lookup = |s: &str| -> Option<u32> {
        if let Some(added) = tok.get("added_tokens").and_then(|a| a.as_array()) {
            for t in added {
                if t.get("content").and_then(|c| c.as_str()) == Some(s) {
                    return t.get("id").and_then(|i| i.as_u64()).map(|i| i as u32);
                }
            }
        }
        tok.get("model")
            .and_then(|m| m.get("vocab"))
            .and_then(|v| v.get(s))
            .and_then(|i| i.as_u64())
            .map(|i| i as u32)
    };
    let tc_path = hf_dir.join("tokenizer_config.json");
    let tc = read_json_opt(&tc_path)?;
    let gc = read_json_opt(&hf_dir.join("generation_config.json"))?;

    let mut eos = ids_of(gc.as_ref().and_then(|g| g.get("eos_token_id")));
    if eos.is_empty() {
        eos = ids_of(cfg.raw.eos_token_id.as_ref());
    }
    if eos.is_empty() {
        if let Some(id) =
            token_str(tc.as_ref().and_then(|t| t.get("eos_token"))).and_then(|s| lookup(&s))
        {
            eos.push(id);
        }
    }
    let im_end = lookup("<|im_end|>");
    if let Some(id) = im_end {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    let endoftext = lookup("<|endoftext|>");
    let bos = token_str(tc.as_ref().and_then(|t| t.get("bos_token"))).and_then(|s| lookup(&s));
    let pad = token_str(tc.as_ref().and_then(|t| t.get("pad_token")))
        .and_then(|s| lookup(&s))
        .or_else(|| ids_of(cfg.raw.pad_token_id.as_ref()).first().copied())
        .or(endoftext);
    let special = SpecialTokens {
        bos,
        eos,
        pad,
        im_start: lookup("<|im_start|>"),
        im_end,
        tool_call_start: lookup("<tool_call>"),
        tool_call_end: lookup("</tool_call>"),
        fallback: lookup("<|fallback|>"),
    };

    let mut chat_template = match tc.as_ref().and_then(|t| t.get("chat_template")) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .or_else(|| list.first())
            .and_then(|t| t.get("template"))
            .and_then(|t| t.as_str())
            .map(str::to_string),
        _ => None,
    };
    if chat_template.is_none() {
        let jinja = hf_dir.join("chat_template.jinja");
        if jinja.exists() {
            chat_template =
                Some(std::fs::read_to_string(&jinja).map_err(|e| ImportError::io(&jinja, e))?);
        }
    }
    Ok(TokenizerInfo {
        tokenizer_path,
        special,
        chat_template,
    })
}
