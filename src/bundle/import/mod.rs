//! `moe-edge import`: a Hugging Face MoE checkpoint (config.json, safetensors
//! shards, tokenizer files) to a bundle. Split by responsibility:
//! - `hf`       raw `config.json` validated into an `Architecture`; tokenizer files
//! - `weights`  memmapped safetensors shards, read tensor by tensor, dtype conversion
//! - `onnx`     a small ONNX graph builder over `tract_onnx::pb`
//! - `graphs`   the embed / layer / head graphs of each architecture
//! - `experts`  the page-aligned `experts.safetensors` writer
//!
//! This module orchestrates: check every tensor first, write everything into
//! a temporary directory next to `--out`, rename it into place at the end, so
//! a failed import never leaves a bundle that looks valid.
#![cfg_attr(not(feature = "tract"), allow(unused_imports, dead_code))]

pub mod dense;
pub mod experts;
// The ONNX writer builds on tract's protobuf types: no `tract`, no import
// (the fuzz targets build the library without it).
#[cfg(feature = "tract")]
pub mod graphs;
pub mod hf;
#[cfg(feature = "tract")]
pub mod onnx;
pub mod weights;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::files::file_entry;
use super::manifest::{
    self, Dtype, ExpertDtype, ExpertsInfo, Graphs, Manifest, EXPERT_ALIGN, FORMAT_VERSION,
};
use super::quant;
use super::BundleError;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: field `{field}` {msg}")]
    Field {
        path: PathBuf,
        field: String,
        msg: String,
    },
    #[error("{path}: tensor {name} {msg}")]
    Tensor {
        path: PathBuf,
        name: String,
        msg: String,
    },
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("{option}: {msg}")]
    Option { option: &'static str, msg: String },
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

impl ImportError {
    pub fn io(path: &Path, source: std::io::Error) -> ImportError {
        if source.kind() == std::io::ErrorKind::NotFound {
            return ImportError::File {
                path: path.to_path_buf(),
                msg: "missing (no such file)".into(),
            };
        }
        ImportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn field(path: &Path, field: &str, msg: impl Into<String>) -> ImportError {
        ImportError::Field {
            path: path.to_path_buf(),
            field: field.to_string(),
            msg: msg.into(),
        }
    }
    pub fn tensor(path: &Path, name: &str, msg: impl Into<String>) -> ImportError {
        ImportError::Tensor {
            path: path.to_path_buf(),
            name: name.to_string(),
            msg: msg.into(),
        }
    }
    pub fn file(path: &Path, msg: impl Into<String>) -> ImportError {
        ImportError::File {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
}

/// Parse `--experts-dtype`.
pub fn parse_experts_dtype(s: &str) -> Result<ExpertDtype, ImportError> {
    ExpertDtype::parse(s).ok_or_else(|| ImportError::Option {
        option: "--experts-dtype",
        msg: format!("`{s}` is not supported (supported: f32, f16, q8, q4)"),
    })
}

/// Parse `--dtype`.
pub fn parse_dtype(s: &str) -> Result<Dtype, ImportError> {
    Dtype::parse(s).ok_or_else(|| ImportError::Option {
        option: "--dtype",
        msg: format!("`{s}` is not supported (supported: f32, f16)"),
    })
}

#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub hf_dir: PathBuf,
    pub out_dir: PathBuf,
    /// Dense initializers are stored in this dtype (with a Cast to f32 right
    /// after them); experts are stored in it.
    pub dtype: Dtype,
    /// Experts are stored in this form; `None`: the same as `dtype`.
    /// Q8/Q4 need a hidden size that is a multiple of 32 (the group size).
    pub experts_dtype: Option<ExpertDtype>,
    /// Defaults to the checkpoint directory's name (its parent's for `.../hf`).
    pub model_id: Option<String>,
    /// Replace an existing non-empty `out_dir`.
    pub force: bool,
}

impl ImportOptions {
    pub fn new(hf_dir: impl Into<PathBuf>, out_dir: impl Into<PathBuf>) -> ImportOptions {
        ImportOptions {
            hf_dir: hf_dir.into(),
            out_dir: out_dir.into(),
            dtype: Dtype::F32,
            experts_dtype: None,
            model_id: None,
            force: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ImportReport {
    pub out_dir: PathBuf,
    pub manifest: Manifest,
    pub layers: usize,
    pub experts: usize,
    /// Bytes of every bundle file (manifest included).
    pub total_bytes: u64,
    pub experts_bytes: u64,
    pub graph_bytes: u64,
    pub dense_bytes: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.manifest.architecture;
        let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
        writeln!(
            f,
            "imported {} ({}) -> {}",
            self.manifest.model_id,
            a.hf_architecture,
            self.out_dir.display()
        )?;
        writeln!(
            f,
            "  {} layers, {} experts/layer (top-{}), {} routed experts, dtype {:?}, experts {}",
            self.layers,
            a.num_experts,
            a.top_k,
            self.experts,
            self.manifest.dtype,
            self.manifest.experts.dtype.name()
        )?;
        writeln!(
            f,
            "  {:.1} MiB total: graphs {:.1} MiB, dense weights {:.1} MiB, experts {:.1} MiB",
            mb(self.total_bytes),
            mb(self.graph_bytes),
            mb(self.dense_bytes),
            mb(self.experts_bytes)
        )?;
        write!(f, "  took {:.2}s", self.elapsed.as_secs_f64())
    }
}

#[cfg(feature = "tract")]
fn default_model_id(hf_dir: &Path) -> String {
    let abs = std::fs::canonicalize(hf_dir).unwrap_or_else(|_| hf_dir.to_path_buf());
    let name = |p: &Path| p.file_name().map(|s| s.to_string_lossy().into_owned());
    match name(&abs) {
        Some(n) if n == "hf" => abs.parent().and_then(name).unwrap_or(n),
        Some(n) => n,
        None => "model".into(),
    }
}

#[cfg(feature = "tract")]
fn dir_is_nonempty(p: &Path) -> Result<bool, ImportError> {
    match std::fs::read_dir(p) {
        Ok(mut it) => Ok(it.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(true),
        Err(e) => Err(ImportError::io(p, e)),
    }
}

pub const GRAPH_DIR: &str = "graphs";
pub const EXPERTS_FILE: &str = "experts.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const MANIFEST_FILE: &str = "manifest.json";
/// Graphs whose initializers exceed this keep them in `<graph>.onnx.data`
/// (ONNX external data): protobuf cannot hold a message over 2 GiB.
pub const EXTERNAL_DATA_ABOVE: usize = 1 << 30;

/// Convert the checkpoint at `opts.hf_dir` into a bundle at `opts.out_dir`.
#[cfg(feature = "tract")]
pub fn import(opts: &ImportOptions) -> Result<ImportReport, ImportError> {
    let start = Instant::now();
    let out = &opts.out_dir;
    if !opts.force && dir_is_nonempty(out)? {
        return Err(ImportError::file(
            out,
            "already exists and is not empty (pass --force to replace it)",
        ));
    }
    if !opts.hf_dir.is_dir() {
        return Err(ImportError::file(
            &opts.hf_dir,
            "missing: not a checkpoint directory",
        ));
    }

    // Read and check everything before writing anything.
    let cfg = hf::load_config(&opts.hf_dir)?;
    let arch = cfg.arch.clone();
    let tok = hf::load_tokenizer(&opts.hf_dir, &cfg)?;
    let ck = weights::Checkpoint::open(&opts.hf_dir)?;
    for (name, shape) in graphs::dense_tensors(&arch)
        .iter()
        .chain(graphs::expert_tensors(&arch).iter())
    {
        ck.check(name, shape)?;
    }
    if let Some(q) = opts.experts_dtype.filter(|q| q.is_quantized()) {
        if arch.hidden_size % manifest::QUANT_GROUP != 0 {
            return Err(ImportError::Option {
                option: "--experts-dtype",
                msg: format!(
                    "{} groups {} values along the hidden size, but hidden_size is {}",
                    q.name(),
                    manifest::QUANT_GROUP,
                    arch.hidden_size
                ),
            });
        }
    }

    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| ImportError::io(&parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".moe-edge-import-")
        .tempdir_in(&parent)
        .map_err(|e| ImportError::io(&parent, e))?;
    let dir = tmp.path();

    // graphs
    let gdir = dir.join(GRAPH_DIR);
    std::fs::create_dir_all(&gdir).map_err(|e| ImportError::io(&gdir, e))?;
    let mut graph_files = Vec::new();
    let embed_rel = format!("{GRAPH_DIR}/embed.onnx");
    graph_files.extend(graphs::embed(&arch, &ck, opts.dtype)?.write(
        dir,
        &embed_rel,
        EXTERNAL_DATA_ABOVE,
    )?);
    let mut layer_rels = Vec::with_capacity(arch.num_layers);
    for l in 0..arch.num_layers {
        let rel = format!("{GRAPH_DIR}/layer.{l}.onnx");
        graph_files.extend(graphs::layer(&arch, &ck, opts.dtype, l)?.write(
            dir,
            &rel,
            EXTERNAL_DATA_ABOVE,
        )?);
        layer_rels.push(rel);
    }
    let head_rel = format!("{GRAPH_DIR}/head.onnx");
    graph_files.extend(graphs::head(&arch, &ck, opts.dtype)?.write(
        dir,
        &head_rel,
        EXTERNAL_DATA_ABOVE,
    )?);

    // experts
    let (h, i) = (arch.hidden_size, arch.expert_intermediate_size);
    let edt = opts
        .experts_dtype
        .unwrap_or_else(|| ExpertDtype::from(opts.dtype));
    let layout = experts::Layout::new(arch.num_layers, arch.num_experts, i, h, edt);
    let (experts_bytes, expert_hashes) =
        experts::write(&dir.join(EXPERTS_FILE), &layout, |l, e, buf| {
            let [g, u, d] = graphs::Names::expert(arch.kind, l, e);
            quant::encode_rows(&ck.f32(&g, &[i, h])?, h, edt, buf);
            quant::encode_rows(&ck.f32(&u, &[i, h])?, h, edt, buf);
            let down = ck.f32(&d, &[h, i])?;
            quant::encode_rows(&weights::transpose(&down, h, i), h, edt, buf);
            Ok(())
        })?;

    // dense weights for the native backend, quantised like the experts
    let dense_bytes = dense::write(&dir.join(dense::DENSE_FILE), &arch, &ck, edt)?;

    // tokenizer
    let tdst = dir.join(TOKENIZER_FILE);
    std::fs::copy(&tok.tokenizer_path, &tdst).map_err(|e| ImportError::io(&tdst, e))?;

    // manifest
    let mut files = Vec::new();
    let mut graph_bytes = 0;
    for rel in std::iter::once(&embed_rel)
        .chain(layer_rels.iter())
        .chain(std::iter::once(&head_rel))
    {
        let fe = file_entry(dir, rel)?;
        graph_bytes += fe.size;
        files.push(fe);
    }
    files.push(file_entry(dir, EXPERTS_FILE)?);
    files.push(file_entry(dir, dense::DENSE_FILE)?);
    files.push(file_entry(dir, TOKENIZER_FILE)?);
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        model_id: opts
            .model_id
            .clone()
            .unwrap_or_else(|| default_model_id(&opts.hf_dir)),
        architecture: arch.clone(),
        dtype: opts.dtype,
        special_tokens: tok.special,
        chat_template: tok.chat_template,
        tokenizer: TOKENIZER_FILE.into(),
        graphs: Graphs {
            embed: embed_rel,
            layers: layer_rels,
            head: head_rel,
        },
        experts: ExpertsInfo {
            file: EXPERTS_FILE.into(),
            dtype: edt,
            alignment: EXPERT_ALIGN,
            expert_bytes: layout.expert_bytes,
            present: None,
            sha256: Some(expert_hashes),
        },
        experts_lowp: None,
        dense: Some(manifest::DenseInfo {
            file: dense::DENSE_FILE.into(),
            dtype: edt,
        }),
        files,
    };
    let mpath = dir.join(MANIFEST_FILE);
    manifest.check(&mpath)?;
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    std::fs::write(&mpath, text + "\n").map_err(|e| ImportError::io(&mpath, e))?;
    super::files::write_manifest_checksum(dir)?;
    let total_bytes: u64 = manifest.files.iter().map(|f| f.size).sum::<u64>()
        + std::fs::metadata(&mpath).map(|m| m.len()).unwrap_or(0);

    // Move into place: the old bundle (with --force) is moved aside first and
    // removed only once the new one is in place.
    let tmp_path = tmp.keep();
    let result = (|| {
        let mut old = None;
        if std::fs::symlink_metadata(out).is_ok() {
            let aside = parent.join(format!(
                ".moe-edge-old-{}-{}",
                std::process::id(),
                out.file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            std::fs::rename(out, &aside).map_err(|e| ImportError::io(out, e))?;
            old = Some(aside);
        }
        if let Err(e) = std::fs::rename(&tmp_path, out) {
            if let Some(aside) = &old {
                let _ = std::fs::rename(aside, out);
            }
            return Err(ImportError::io(out, e));
        }
        if let Some(aside) = old {
            let _ = if aside.is_dir() {
                std::fs::remove_dir_all(&aside)
            } else {
                std::fs::remove_file(&aside)
            };
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp_path);
        return Err(e);
    }

    Ok(ImportReport {
        out_dir: out.clone(),
        layers: arch.num_layers,
        experts: arch.num_layers * arch.num_experts,
        manifest,
        total_bytes,
        experts_bytes,
        graph_bytes,
        dense_bytes,
        elapsed: start.elapsed(),
    })
}

/// Re-exported for callers that only need the expert tensor naming.
pub use manifest::expert_tensor_name;
