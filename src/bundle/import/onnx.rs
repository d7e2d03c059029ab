//! A small ONNX graph builder over the protobuf types tract-onnx exposes
//! (`tract_onnx::pb`, prost messages): typed inputs/outputs with symbolic dims,
//! nodes with generated value names, initializers stored in the bundle dtype
//! (with a `Cast` to f32 right after them), opset 17.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::{DataLocation, DataType};
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};

use super::weights::encode;
use super::ImportError;
use crate::bundle::manifest::Dtype;

pub const OPSET: i64 = 17;
const IR_VERSION: i64 = 8;

/// A dimension of a graph input/output: fixed or a symbol (`T`, `P`, `P+T`).
#[derive(Debug, Clone)]
pub enum Dim {
    Fixed(usize),
    Sym(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub enum Elem {
    F32,
    I64,
}

impl Elem {
    fn data_type(self) -> DataType {
        match self {
            Elem::F32 => DataType::Float,
            Elem::I64 => DataType::Int64,
        }
    }
}

pub fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

pub fn attr_ints(name: &str, ints: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn value_info(name: &str, elem: Elem, dims: &[Dim]) -> pb::ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            denotation: String::new(),
            value: Some(match d {
                Dim::Fixed(n) => dimension::Value::DimValue(*n as i64),
                Dim::Sym(s) => dimension::Value::DimParam(s.to_string()),
            }),
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem.data_type() as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

pub struct GraphBuilder {
    graph: pb::GraphProto,
    counter: usize,
    /// Dtype weights are stored in.
    pub dtype: Dtype,
    /// Bytes of initializer data so far.
    pub weight_bytes: usize,
}

impl GraphBuilder {
    pub fn new(name: &str, dtype: Dtype) -> GraphBuilder {
        GraphBuilder {
            graph: pb::GraphProto {
                name: name.into(),
                ..Default::default()
            },
            counter: 0,
            dtype,
            weight_bytes: 0,
        }
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    pub fn input(&mut self, name: &str, elem: Elem, dims: &[Dim]) -> String {
        self.graph.input.push(value_info(name, elem, dims));
        name.to_string()
    }

    /// Declare `value` a graph output called `name` (through an Identity when
    /// the names differ).
    pub fn output(&mut self, value: &str, name: &str, elem: Elem, dims: &[Dim]) {
        if value != name {
            self.node_to("Identity", &[value], vec![], name);
        }
        self.graph.output.push(value_info(name, elem, dims));
    }

    /// Add a node with one output whose name is `out`.
    pub fn node_to(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<pb::AttributeProto>,
        out: &str,
    ) -> String {
        let name = self.fresh(&format!("n_{op}"));
        self.graph.node.push(pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.to_string()],
            name,
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
        out.to_string()
    }

    /// Add a node with one generated output name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<pb::AttributeProto>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.node_to(op, inputs, attrs, &out)
    }

    pub fn op(&mut self, op: &str, inputs: &[&str]) -> String {
        self.node(op, inputs, vec![])
    }

    fn raw_init(&mut self, name: &str, dt: DataType, dims: &[usize], raw: Vec<u8>) -> String {
        self.weight_bytes += raw.len();
        self.graph.initializer.push(pb::TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: dt as i32,
            name: name.into(),
            raw_data: raw,
            ..Default::default()
        });
        name.to_string()
    }

    pub fn const_i64(&mut self, hint: &str, values: &[i64]) -> String {
        let name = self.fresh(hint);
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw_init(&name, DataType::Int64, &[values.len()], raw)
    }

    pub fn const_f32_scalar(&mut self, hint: &str, v: f32) -> String {
        let name = self.fresh(hint);
        self.raw_init(&name, DataType::Float, &[], v.to_le_bytes().to_vec())
    }

    /// A weight stored in the bundle dtype, as stored (no Cast).
    pub fn weight_stored(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        let mut raw = Vec::new();
        encode(data, self.dtype, &mut raw);
        let dt = match self.dtype {
            Dtype::F32 => DataType::Float,
            Dtype::F16 => DataType::Float16,
        };
        self.raw_init(name, dt, dims, raw)
    }

    /// Cast a value stored in the bundle dtype to f32 (nothing for f32).
    pub fn to_f32(&mut self, value: &str) -> String {
        match self.dtype {
            Dtype::F32 => value.to_string(),
            Dtype::F16 => self.node(
                "Cast",
                &[value],
                vec![attr_int("to", DataType::Float as i64)],
            ),
        }
    }

    /// A weight stored in the bundle dtype, returned as an f32 value.
    pub fn weight(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let w = self.weight_stored(name, dims, data);
        self.to_f32(&w)
    }

    /// Put the declared outputs in this order (names not listed keep their
    /// relative order at the end).
    pub fn order_outputs(&mut self, order: &[&str]) {
        let pos = |n: &str| order.iter().position(|o| *o == n).unwrap_or(order.len());
        self.graph.output.sort_by_key(|o| pos(&o.name));
    }

    pub fn into_model(self) -> pb::ModelProto {
        pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "moe-edge".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(self.graph),
            ..Default::default()
        }
    }

    pub fn to_bytes(self) -> Vec<u8> {
        self.into_model().encode_to_vec()
    }

    /// Write the graph to `dir/rel`. Protobuf caps a message at 2 GiB, so when
    /// the initializers exceed `external_above` bytes, every initializer of
    /// 1 KiB or more goes to `dir/rel.data` as ONNX external data (each at a
    /// 4096-aligned offset). Returns the relative paths written.
    pub fn write(
        self,
        dir: &Path,
        rel: &str,
        external_above: usize,
    ) -> Result<Vec<String>, ImportError> {
        let mut files = vec![rel.to_string()];
        let mut model = self.into_model();
        let path = dir.join(rel);
        if self_weight_bytes(&model) > external_above {
            let data_rel = format!("{rel}.data");
            let data_path = dir.join(&data_rel);
            let location = Path::new(&data_rel)
                .file_name()
                .expect("graph file has a name")
                .to_string_lossy()
                .into_owned();
            let io = |e| ImportError::io(&data_path, e);
            let mut w = BufWriter::new(File::create(&data_path).map_err(io)?);
            let mut offset = 0usize;
            let graph = model.graph.as_mut().expect("model has a graph");
            for t in graph
                .initializer
                .iter_mut()
                .filter(|t| t.raw_data.len() >= 1024)
            {
                let aligned = offset.div_ceil(4096) * 4096;
                w.write_all(&vec![0u8; aligned - offset]).map_err(io)?;
                let raw = std::mem::take(&mut t.raw_data);
                w.write_all(&raw).map_err(io)?;
                let entry = |k: &str, v: String| pb::StringStringEntryProto {
                    key: k.into(),
                    value: v,
                };
                t.external_data = vec![
                    entry("location", location.clone()),
                    entry("offset", aligned.to_string()),
                    entry("length", raw.len().to_string()),
                ];
                t.data_location = Some(DataLocation::External as i32);
                offset = aligned + raw.len();
            }
            w.into_inner()
                .map_err(|e| io(e.into_error()))?
                .sync_all()
                .map_err(io)?;
            files.push(data_rel);
        }
        std::fs::write(&path, model.encode_to_vec()).map_err(|e| ImportError::io(&path, e))?;
        Ok(files)
    }

    // ---- small compositions used by every graph ----

    pub fn unsqueeze(&mut self, x: &str, axes: &[i64]) -> String {
        let a = self.const_i64("axes", axes);
        self.op("Unsqueeze", &[x, &a])
    }

    pub fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.const_i64("shape", shape);
        self.op("Reshape", &[x, &s])
    }

    pub fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.node("Transpose", &[x], vec![attr_ints("perm", perm)])
    }

    /// `x[..., start..end]` along `axis`.
    pub fn slice(&mut self, x: &str, axis: i64, start: i64, end: i64) -> String {
        let s = self.const_i64("starts", &[start]);
        let e = self.const_i64("ends", &[end]);
        let a = self.const_i64("axes", &[axis]);
        self.op("Slice", &[x, &s, &e, &a])
    }

    /// x * rsqrt(mean(x², last axis) + eps) * w (w already f32).
    pub fn rms_norm(&mut self, x: &str, w: &str, eps: f64) -> String {
        let sq = self.op("Mul", &[x, x]);
        let mean = self.node(
            "ReduceMean",
            &[&sq],
            vec![attr_ints("axes", &[-1]), attr_int("keepdims", 1)],
        );
        let e = self.const_f32_scalar("eps", eps as f32);
        let var = self.op("Add", &[&mean, &e]);
        let std = self.op("Sqrt", &[&var]);
        let inv = self.op("Reciprocal", &[&std]);
        let n = self.op("Mul", &[x, &inv]);
        self.op("Mul", &[&n, w])
    }

    /// x @ w (+ b), w [in, out] f32 value.
    pub fn linear(&mut self, x: &str, w: &str, b: Option<&str>) -> String {
        let y = self.op("MatMul", &[x, w]);
        match b {
            Some(b) => self.op("Add", &[&y, b]),
            None => y,
        }
    }

    pub fn silu(&mut self, x: &str) -> String {
        let s = self.op("Sigmoid", &[x]);
        self.op("Mul", &[x, &s])
    }
}

fn self_weight_bytes(m: &pb::ModelProto) -> usize {
    m.graph
        .as_ref()
        .map(|g| g.initializer.iter().map(|t| t.raw_data.len()).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{self, BackendOptions, TensorView};

    /// y = x @ W + b with W, b stored in `dtype`, written inline or as external data.
    fn affine(dir: &Path, rel: &str, dtype: Dtype, external_above: usize) -> Vec<String> {
        let mut g = GraphBuilder::new("affine", dtype);
        let x = g.input("x", Elem::F32, &[Dim::Sym("T"), Dim::Fixed(64)]);
        let w: Vec<f32> = (0..64 * 32)
            .map(|i| ((i % 17) as f32 - 8.0) / 8.0)
            .collect();
        let w = g.weight("w", &[64, 32], &w);
        let b = g.weight("b", &[32], &[0.5; 32]);
        let y = g.linear(&x, &w, Some(&b));
        g.output(&y, "y", Elem::F32, &[Dim::Sym("T"), Dim::Fixed(32)]);
        g.write(dir, rel, external_above).unwrap()
    }

    fn run(path: &Path) -> Vec<f32> {
        let backend = runtime::backend(&BackendOptions::default()).unwrap();
        let graph = backend.load(path).unwrap();
        assert_eq!(graph.input_names(), &["x".to_string()]);
        assert_eq!(graph.output_names(), &["y".to_string()]);
        let x: Vec<f32> = (0..2 * 64).map(|i| (i as f32) / 100.0).collect();
        let out = graph.run(&[TensorView::f32(vec![2, 64], &x)]).unwrap();
        assert_eq!(out[0].shape, vec![2, 32]);
        out[0].as_f32().unwrap().to_vec()
    }

    #[test]
    fn inline_and_external_data_give_the_same_graph() {
        let dir = tempfile::tempdir().unwrap();
        for dtype in [Dtype::F32, Dtype::F16] {
            let inline = affine(dir.path(), "a.onnx", dtype, usize::MAX);
            assert_eq!(inline, vec!["a.onnx"]);
            let ext = affine(dir.path(), "b.onnx", dtype, 0);
            assert_eq!(ext, vec!["b.onnx", "b.onnx.data"]);
            assert!(std::fs::metadata(dir.path().join("b.onnx")).unwrap().len() < 1024);
            let (a, b) = (
                run(&dir.path().join("a.onnx")),
                run(&dir.path().join("b.onnx")),
            );
            assert_eq!(a, b);
            // x[0] = 0..0.63, w column 0 = ((17k mod 17)... ) checked against a direct computation
            let x0: Vec<f32> = (0..64).map(|i| i as f32 / 100.0).collect();
            let want: f32 = (0..64)
                .map(|k| x0[k] * (((k * 32) % 17) as f32 - 8.0) / 8.0)
                .sum::<f32>()
                + 0.5;
            assert!((a[0] - want).abs() < 1e-4, "{} vs {want}", a[0]);
        }
    }
}
