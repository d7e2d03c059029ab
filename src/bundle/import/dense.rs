//! `dense.safetensors` (see `manifest::DenseInfo`): every dense weight under
//! its checkpoint name, matrices in the bundle's dense dtype, for the native
//! CPU backend. Planned first (names, encodings, sizes, so the header is
//! written up front), then written tensor by tensor: a checkpoint larger than
//! RAM converts. Which encoding a tensor gets is decided here and recorded in
//! the file's metadata (`name` -> `q8`/`q4` for U8 tensors).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::weights::Checkpoint;
use super::ImportError;
use crate::bundle::manifest::{Architecture, ExpertDtype, QUANT_GROUP};
use crate::bundle::names::{dense_tensors, Names};
use crate::bundle::quant;

/// Tensor data starts on this boundary.
pub const DENSE_ALIGN: usize = 64;
pub const DENSE_FILE: &str = "dense.safetensors";

/// How one tensor is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub name: String,
    pub shape: Vec<usize>,
    pub enc: ExpertDtype,
}

impl Planned {
    fn cols(&self) -> usize {
        *self.shape.last().expect("tensor has a shape")
    }
    fn rows(&self) -> usize {
        self.shape.iter().rev().skip(1).product()
    }
    pub fn bytes(&self) -> usize {
        self.rows() * self.enc.row_bytes(self.cols())
    }
    fn st_shape(&self) -> Vec<usize> {
        let mut s = self.shape.clone();
        let last = s.len() - 1;
        s[last] = self.enc.st_cols(s[last]);
        s
    }
}

/// The encoding of every dense tensor for a bundle whose dense dtype is `dtype`.
pub fn plan(a: &Architecture, dtype: ExpertDtype) -> Vec<Planned> {
    let router = |n: &str| (0..a.num_layers).any(|l| Names::router(a.kind, l) == n);
    dense_tensors(a)
        .into_iter()
        .map(|(name, shape)| {
            let enc = if shape.len() < 2
                || router(&name)
                || name.ends_with("shared_expert_gate.weight")
            {
                ExpertDtype::F32
            } else {
                let head =
                    name == Names::lm_head() || (a.tie_word_embeddings && name == Names::embed());
                let want = match dtype {
                    ExpertDtype::Q4 if head => ExpertDtype::Q8,
                    d => d,
                };
                if want.is_quantized() && shape[1] % QUANT_GROUP != 0 {
                    ExpertDtype::F16
                } else {
                    want
                }
            };
            Planned { name, shape, enc }
        })
        .collect()
}

fn round_up(n: usize, a: usize) -> usize {
    n.div_ceil(a) * a
}

/// The header (length prefix + JSON padded to `DENSE_ALIGN`) and each
/// tensor's data offset; pads are the gaps after each tensor.
fn header(plan: &[Planned]) -> (Vec<u8>, Vec<usize>) {
    let mut meta = serde_json::Map::new();
    meta.insert("format".into(), "moe-edge-dense".into());
    for p in plan.iter().filter(|p| p.enc.is_quantized()) {
        meta.insert(p.name.clone(), p.enc.name().into());
    }
    let mut json = serde_json::Map::new();
    json.insert("__metadata__".into(), serde_json::Value::Object(meta));
    let mut off = 0;
    let mut pads = Vec::with_capacity(plan.len());
    for (k, p) in plan.iter().enumerate() {
        let end = off + p.bytes();
        json.insert(
            p.name.clone(),
            serde_json::json!({"dtype": p.enc.st_name(), "shape": p.st_shape(), "data_offsets": [off, end]}),
        );
        let next = if k + 1 < plan.len() {
            round_up(end, DENSE_ALIGN)
        } else {
            end
        };
        if next > end {
            json.insert(
                format!("__pad.{k}"),
                serde_json::json!({"dtype": "U8", "shape": [next - end], "data_offsets": [end, next]}),
            );
        }
        pads.push(next - end);
        off = next;
    }
    let text = serde_json::to_string(&serde_json::Value::Object(json)).expect("json");
    let start = round_up(8 + text.len(), DENSE_ALIGN);
    let mut h = Vec::with_capacity(start);
    h.extend_from_slice(&((start - 8) as u64).to_le_bytes());
    h.extend_from_slice(text.as_bytes());
    h.resize(start, b' ');
    (h, pads)
}

/// Write `dense.safetensors` at `path`; returns its size in bytes.
pub fn write(
    path: &Path,
    a: &Architecture,
    ck: &Checkpoint,
    dtype: ExpertDtype,
) -> Result<u64, ImportError> {
    let plan = plan(a, dtype);
    let (head, pads) = header(&plan);
    let io = |e| ImportError::io(path, e);
    let file = File::create(path).map_err(io)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(&head).map_err(io)?;
    let mut size = head.len() as u64;
    let mut buf = Vec::new();
    for (p, pad) in plan.iter().zip(pads) {
        let vals = ck.f32(&p.name, &p.shape)?;
        buf.clear();
        quant::encode_rows(&vals, p.cols(), p.enc, &mut buf);
        debug_assert_eq!(buf.len(), p.bytes());
        buf.resize(buf.len() + pad, 0);
        w.write_all(&buf).map_err(io)?;
        size += buf.len() as u64;
    }
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_valid_safetensors_with_aligned_tensors() {
        let plan = vec![
            Planned {
                name: "a".into(),
                shape: vec![3, 64],
                enc: ExpertDtype::Q4,
            },
            Planned {
                name: "b".into(),
                shape: vec![5],
                enc: ExpertDtype::F32,
            },
            Planned {
                name: "c".into(),
                shape: vec![2, 3],
                enc: ExpertDtype::F16,
            },
        ];
        let (h, pads) = header(&plan);
        let mut bytes = h.clone();
        for (p, pad) in plan.iter().zip(&pads) {
            bytes.extend(std::iter::repeat_n(7u8, p.bytes() + pad));
        }
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid");
        let base = bytes.as_ptr() as usize;
        for p in &plan {
            let t = st.tensor(&p.name).unwrap();
            assert_eq!((t.data().as_ptr() as usize - base) % DENSE_ALIGN, 0);
            assert_eq!(t.data().len(), p.bytes());
        }
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["a"], "q4");
    }
}
