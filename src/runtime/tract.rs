//! The tract backend (pure Rust, any CPU; the default). Loads an ONNX graph,
//! optimises it with its symbolic dims (T tokens, P past length) kept
//! symbolic, and keeps one execution state per graph so that a step does not
//! rebuild it.

use std::path::Path;
use std::sync::Mutex;

use tract_onnx::prelude::*;

use super::{Backend, Graph, RuntimeError, Tensor, TensorView, ViewData};

pub struct TractBackend;

impl TractBackend {
    pub fn new() -> TractBackend {
        TractBackend
    }
}

impl Default for TractBackend {
    fn default() -> Self {
        Self::new()
    }
}

struct TractGraph {
    name: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    state: Mutex<TypedSimpleState>,
}

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn load(&self, path: &Path) -> Result<Box<dyn Graph>, RuntimeError> {
        let err = |e: TractError| RuntimeError::Load {
            path: path.display().to_string(),
            msg: format!("{e:#}"),
        };
        let model = tract_onnx::onnx().model_for_path(path).map_err(err)?;
        let inputs = model
            .input_outlets()
            .map_err(err)?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        let outputs = model
            .output_outlets()
            .map_err(err)?
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        let plan = model
            .into_optimized()
            .map_err(err)?
            .into_runnable()
            .map_err(err)?;
        let state = TypedSimpleState::new(&plan).map_err(err)?;
        Ok(Box::new(TractGraph {
            name: path
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            inputs,
            outputs,
            state: Mutex::new(state),
        }))
    }
}

impl Graph for TractGraph {
    fn input_names(&self) -> &[String] {
        &self.inputs
    }
    fn output_names(&self) -> &[String] {
        &self.outputs
    }

    fn run(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, RuntimeError> {
        let err = |msg: String| RuntimeError::Run {
            graph: self.name.clone(),
            msg,
        };
        let mut tv: TVec<TValue> = tvec![];
        for v in inputs {
            let t = match v.data {
                ViewData::F32(d) => tract_onnx::prelude::Tensor::from_shape(&v.shape, d),
                ViewData::I64(d) => tract_onnx::prelude::Tensor::from_shape(&v.shape, d),
            }
            .map_err(|e| err(format!("{e:#}")))?;
            tv.push(t.into());
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let outs = state.run(tv).map_err(|e| err(format!("{e:#}")))?;
        outs.into_iter()
            .map(|o| {
                let shape = o.shape().to_vec();
                let t = o.into_tensor();
                match t.datum_type() {
                    DatumType::F32 => Ok(Tensor::f32(
                        shape,
                        t.try_as_plain_ram()
                            .and_then(|p| p.as_slice::<f32>().map(|s| s.to_vec()))
                            .map_err(|e| err(format!("{e:#}")))?,
                    )),
                    DatumType::I64 => Ok(Tensor::i64(
                        shape,
                        t.try_as_plain_ram()
                            .and_then(|p| p.as_slice::<i64>().map(|s| s.to_vec()))
                            .map_err(|e| err(format!("{e:#}")))?,
                    )),
                    dt => Err(err(format!("unsupported output type {dt:?}"))),
                }
            })
            .collect()
    }
}
