//! Backends that run the dense parts of a step (embed, each layer, head),
//! behind one trait and the project's own tensor type: `native` (our own CPU
//! code over `dense.safetensors`), `tract` and `ort` (the bundle's ONNX
//! graphs). Owns backend selection ("not compiled with X" when a feature is
//! off) and the compute thread pool; knows nothing of KV caches, routing or
//! experts.

pub mod native;
#[cfg(feature = "ort")]
pub mod ort;
pub mod pool;
mod tensor;
#[cfg(feature = "tract")]
pub mod tract;

use std::path::Path;
use std::sync::Arc;

use crate::bundle::Bundle;
pub use pool::Pool;
pub use tensor::{Tensor, TensorData, TensorView, ViewData};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("backend `{0}` is not compiled into this build (enable cargo feature `{0}`)")]
    NotCompiled(&'static str),
    #[error("{path}: cannot load graph: {msg}")]
    Load { path: String, msg: String },
    #[error("graph {graph}: {msg}")]
    Run { graph: String, msg: String },
    #[error("backend {backend}: {msg}")]
    Setup { backend: &'static str, msg: String },
}

/// Which backend runs the graphs (chosen by the board).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Native,
    Tract,
    Ort,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Native => "native",
            BackendKind::Tract => "tract",
            BackendKind::Ort => "ort",
        })
    }
}

/// Execution-provider settings for ort (ignored by tract).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrtOptions {
    /// Path of libonnxruntime.so; `None`: `ORT_DYLIB_PATH` or the loader's search.
    pub dylib: Option<std::path::PathBuf>,
    /// Providers in order of preference: "tensorrt", "cuda", "cpu".
    pub providers: Vec<String>,
    pub device_id: i32,
    pub gpu_mem_limit: Option<usize>,
    pub fp16: bool,
    pub trt_cache_dir: Option<std::path::PathBuf>,
    /// Largest KV length for TensorRT shape profiles.
    pub max_context: usize,
    /// A provider that fails to register falls back to CPU with a log line instead of an error.
    pub allow_cpu_fallback: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendOptions {
    pub kind: BackendKind,
    pub threads: usize,
    pub ort: OrtOptions,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            kind: BackendKind::Tract,
            threads: 1,
            ort: OrtOptions::default(),
        }
    }
}

/// An output the caller has room for (the KV cache's rows of this step):
/// written into `buf`, of shape `shape`, instead of returned.
pub struct OutInto<'a> {
    pub index: usize,
    pub shape: Vec<usize>,
    pub buf: &'a mut [f32],
}

/// A loaded graph, ready to run. Outputs come back in `output_names()` order.
pub trait Graph: Send + Sync {
    fn input_names(&self) -> &[String];
    fn output_names(&self) -> &[String];
    fn run(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, RuntimeError>;

    /// As `run`, with the outputs of `into` written into the caller's
    /// buffers; their places in the returned list hold empty tensors. A
    /// backend that can write in place (ort's I/O binding) does; the default
    /// copies.
    fn run_into(
        &self,
        inputs: &[TensorView<'_>],
        into: &mut [OutInto<'_>],
    ) -> Result<Vec<Tensor>, RuntimeError> {
        let mut outs = self.run(inputs)?;
        for o in into.iter_mut() {
            let t = std::mem::replace(&mut outs[o.index], Tensor::f32(vec![0], vec![]));
            match t.as_f32() {
                Some(d) if d.len() == o.buf.len() => o.buf.copy_from_slice(d),
                _ => {
                    return Err(RuntimeError::Run {
                        graph: self.output_names()[o.index].clone(),
                        msg: format!(
                            "output has shape {:?}, the caller has room for {:?}",
                            t.shape, o.shape
                        ),
                    })
                }
            }
        }
        Ok(outs)
    }
}

/// The dense parts of a step (see `bundle::manifest::Graphs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Embed,
    Layer(usize),
    Head,
}

pub trait Backend: Send + Sync {
    fn name(&self) -> &'static str;
    /// An ONNX graph file.
    fn load(&self, path: &Path) -> Result<Box<dyn Graph>, RuntimeError>;
    /// One part of a bundle's step. Graph backends load the part's ONNX file.
    fn load_part(&self, bundle: &Bundle, part: Part) -> Result<Box<dyn Graph>, RuntimeError> {
        let g = &bundle.manifest.graphs;
        let file = match part {
            Part::Embed => &g.embed,
            Part::Layer(l) => &g.layers[l],
            Part::Head => &g.head,
        };
        self.load(&bundle.path(file))
    }
}

/// The backend the options ask for, with a compute pool of `opts.threads`.
pub fn backend(opts: &BackendOptions) -> Result<Box<dyn Backend>, RuntimeError> {
    backend_with_pool(opts, Arc::new(Pool::new(opts.threads)))
}

/// The backend the options ask for, on `pool` (which the engine's experts
/// share), or "not compiled" when its feature is off.
pub fn backend_with_pool(
    opts: &BackendOptions,
    pool: Arc<Pool>,
) -> Result<Box<dyn Backend>, RuntimeError> {
    match opts.kind {
        BackendKind::Native => Ok(Box::new(native::NativeBackend::new(pool))),
        #[cfg(feature = "tract")]
        BackendKind::Tract => Ok(Box::new(tract::TractBackend::new())),
        #[cfg(not(feature = "tract"))]
        BackendKind::Tract => Err(RuntimeError::NotCompiled("tract")),
        #[cfg(feature = "ort")]
        BackendKind::Ort => Ok(Box::new(ort::OrtBackend::new(opts)?)),
        #[cfg(not(feature = "ort"))]
        BackendKind::Ort => Err(RuntimeError::NotCompiled("ort")),
    }
}
