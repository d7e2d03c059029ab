//! The native CPU backend: the whole dense step of every supported
//! architecture in our own code, from the bundle's memmapped
//! `dense.safetensors` (f32, f16, q8 or q4 rows), with no graph runtime.
//! It serves the same parts, inputs and outputs as the bundle's ONNX graphs
//! (`bundle::manifest::Graphs`), so the engine drives it like tract or ort.
//! Decode is fused mat-vec work over the compute pool, prefill batched matrix
//! products. Owns the parts (`embed`, `layer`, `head`) and their weights;
//! routed experts, the KV cache and sampling belong to the engine.
//!
//! - `weights` the memmapped dense file
//! - `linear`  mat-vec and GEMM over encoded rows, spread over the pool
//! - `ops`     norms, RoPE, attention
//! - `layer`   one decoder layer

pub mod layer;
pub mod linear;
pub mod ops;
pub mod weights;

use std::path::Path;
use std::sync::{Arc, Mutex};

use self::linear::matmul;
use self::ops::rms_norm_rows;
use self::weights::{DenseWeights, Mat};
use super::pool::Pool;
use super::{Backend, Graph, Part, RuntimeError, Tensor, TensorView, ViewData};
use crate::bundle::manifest::Architecture;
use crate::bundle::names::Names;
use crate::bundle::Bundle;

pub struct NativeBackend {
    pool: Arc<Pool>,
    /// The dense file of the bundle being loaded (opened once for all parts).
    weights: Mutex<Option<(std::path::PathBuf, Arc<DenseWeights>)>>,
}

impl NativeBackend {
    pub fn new(pool: Arc<Pool>) -> NativeBackend {
        NativeBackend {
            pool,
            weights: Mutex::new(None),
        }
    }

    fn weights(&self, bundle: &Bundle) -> Result<Arc<DenseWeights>, RuntimeError> {
        let info = bundle
            .manifest
            .dense
            .as_ref()
            .ok_or_else(|| RuntimeError::Load {
                path: bundle.dir.join("manifest.json").display().to_string(),
                msg: "this bundle has no dense.safetensors (made before the native backend): \
                  re-import it with `moe-edge import`, or use backend = \"tract\""
                    .into(),
            })?;
        let path = bundle.path(&info.file);
        let mut cached = self.weights.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, w)) = cached.as_ref() {
            if *p == path {
                return Ok(w.clone());
            }
        }
        let w = Arc::new(DenseWeights::open(&path)?);
        *cached = Some((path, w.clone()));
        Ok(w)
    }
}

impl Backend for NativeBackend {
    fn name(&self) -> &'static str {
        "native"
    }

    fn load(&self, path: &Path) -> Result<Box<dyn Graph>, RuntimeError> {
        Err(RuntimeError::Load {
            path: path.display().to_string(),
            msg: "the native backend runs a bundle's dense.safetensors, not ONNX graphs".into(),
        })
    }

    fn load_part(&self, bundle: &Bundle, part: Part) -> Result<Box<dyn Graph>, RuntimeError> {
        let w = self.weights(bundle)?;
        let a = &bundle.manifest.architecture;
        Ok(match part {
            Part::Embed => Box::new(Embed {
                table: w.mat(Names::embed(), a.vocab_size, a.hidden_size)?,
                io: (vec!["input_ids".into()], vec!["hidden".into()]),
            }),
            Part::Layer(l) => Box::new(layer::Layer::load(a, &w, l, self.pool.clone())?),
            Part::Head => Box::new(Head {
                a: a.clone(),
                norm: w.vector(Names::final_norm(), a.hidden_size)?,
                lm: if a.tie_word_embeddings {
                    w.mat(Names::embed(), a.vocab_size, a.hidden_size)?
                } else {
                    w.mat(Names::lm_head(), a.vocab_size, a.hidden_size)?
                },
                pool: self.pool.clone(),
                io: (vec!["hidden".into()], vec!["logits".into()]),
            }),
        })
    }
}

fn bad(graph: &str, msg: impl Into<String>) -> RuntimeError {
    RuntimeError::Run {
        graph: graph.into(),
        msg: msg.into(),
    }
}

/// `input_ids` [T] -> `hidden` [T, H]: rows of the embedding table, widened.
struct Embed {
    table: Mat,
    io: (Vec<String>, Vec<String>),
}

impl Graph for Embed {
    fn input_names(&self) -> &[String] {
        &self.io.0
    }
    fn output_names(&self) -> &[String] {
        &self.io.1
    }
    fn run(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, RuntimeError> {
        let Some(ViewData::I64(ids)) = inputs.first().map(|v| v.data) else {
            return Err(bad("native embed", "input_ids must be i64"));
        };
        let rows = self.table.rows();
        let h = rows.cols;
        let mut out = vec![0f32; ids.len() * h];
        for (o, &id) in out.chunks_exact_mut(h).zip(ids.iter()) {
            if id < 0 || id as usize >= rows.rows {
                return Err(bad(
                    "native embed",
                    format!("token id {id} outside the vocabulary"),
                ));
            }
            rows.row_f32(id as usize, o);
        }
        Ok(vec![Tensor::f32(vec![ids.len(), h], out)])
    }
}

/// `hidden` [T, H] -> `logits` [T, V]: final norm and LM head.
struct Head {
    a: Architecture,
    norm: Vec<f32>,
    lm: Mat,
    pool: Arc<Pool>,
    io: (Vec<String>, Vec<String>),
}

impl Graph for Head {
    fn input_names(&self) -> &[String] {
        &self.io.0
    }
    fn output_names(&self) -> &[String] {
        &self.io.1
    }
    fn run(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, RuntimeError> {
        let Some(ViewData::F32(x)) = inputs.first().map(|v| v.data) else {
            return Err(bad("native head", "hidden must be f32"));
        };
        let (h, v) = (self.a.hidden_size, self.a.vocab_size);
        let t = x.len() / h;
        let mut n = x.to_vec();
        rms_norm_rows(&mut n, &self.norm, self.a.rms_norm_eps as f32);
        let mut logits = vec![0f32; t * v];
        matmul(&self.pool, self.lm.rows(), &n, t, &mut logits);
        Ok(vec![Tensor::f32(vec![t, v], logits)])
    }
}
