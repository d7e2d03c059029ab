//! A small ONNX graph builder over the protobuf types tract-onnx exposes
//! (`tract_onnx::pb`, prost messages): typed inputs/outputs with symbolic dims,
//! nodes with generated value names, initializers stored in the bundle dtype
//! (with a `Cast` to f32 right after them), opset 17.

use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};

use super::weights::encode;
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
