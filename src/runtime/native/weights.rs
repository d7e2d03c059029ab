//! The bundle's `dense.safetensors`, memmapped once and shared by every part
//! of the native step: matrices stay in the map (no copy), vectors (norms,
//! biases) are copied out as f32. Every error names the file and the tensor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::linear::Rows;
use crate::bundle::manifest::ExpertDtype;
use crate::runtime::RuntimeError;

struct Entry {
    enc: ExpertDtype,
    /// Logical shape (values, not bytes).
    rows: usize,
    cols: usize,
    off: usize,
    len: usize,
}

pub struct DenseWeights {
    path: PathBuf,
    map: Arc<Mmap>,
    index: HashMap<String, Entry>,
}

/// One matrix, kept alive with the map it lives in.
#[derive(Clone)]
pub struct Mat {
    map: Arc<Mmap>,
    enc: ExpertDtype,
    rows: usize,
    cols: usize,
    off: usize,
    len: usize,
}

impl Mat {
    pub fn rows(&self) -> Rows<'_> {
        Rows::new(
            self.enc,
            self.rows,
            self.cols,
            &self.map[self.off..self.off + self.len],
        )
    }
    pub fn bytes(&self) -> usize {
        self.len
    }
}

impl DenseWeights {
    pub fn open(path: &Path) -> Result<DenseWeights, RuntimeError> {
        let err = |msg: String| RuntimeError::Load {
            path: path.display().to_string(),
            msg,
        };
        let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
        // SAFETY: bundle files are read-only for the daemon's lifetime.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| err(e.to_string()))?;
        let (n, meta) = safetensors::SafeTensors::read_metadata(&map)
            .map_err(|e| err(format!("not a valid safetensors file: {e}")))?;
        let st = safetensors::SafeTensors::deserialize(&map)
            .map_err(|e| err(format!("not a valid safetensors file: {e}")))?;
        let quant = meta.metadata().clone().unwrap_or_default();
        let data_start = 8 + n;
        let base = map.as_ptr() as usize;
        let mut index = HashMap::new();
        for (name, view) in st.tensors() {
            if name.starts_with("__pad.") {
                continue;
            }
            let shape = view.shape();
            let bytes_cols = *shape.last().unwrap_or(&1);
            let rows: usize = shape.iter().rev().skip(1).product();
            let (enc, cols) = match view.dtype() {
                safetensors::Dtype::F32 => (ExpertDtype::F32, bytes_cols),
                safetensors::Dtype::F16 => (ExpertDtype::F16, bytes_cols),
                safetensors::Dtype::U8 => {
                    let enc = quant
                        .get(&name)
                        .and_then(|s| ExpertDtype::parse(s))
                        .filter(|e| e.is_quantized())
                        .ok_or_else(|| {
                            err(format!(
                                "tensor {name}: U8 without a q8/q4 entry in the metadata"
                            ))
                        })?;
                    (
                        enc,
                        bytes_cols / enc.block_bytes() * crate::bundle::manifest::QUANT_GROUP,
                    )
                }
                d => return Err(err(format!("tensor {name}: unsupported dtype {d:?}"))),
            };
            let off = view.data().as_ptr() as usize - base;
            debug_assert!(off >= data_start);
            if off % 4 != 0 {
                return Err(err(format!(
                    "tensor {name}: data at offset {off} is not 4-byte aligned"
                )));
            }
            let len = view.data().len();
            if len != rows * enc.row_bytes(cols) {
                return Err(err(format!(
                    "tensor {name}: {len} bytes for {rows}x{cols} {}",
                    enc.name()
                )));
            }
            index.insert(
                name,
                Entry {
                    enc,
                    rows,
                    cols,
                    off,
                    len,
                },
            );
        }
        Ok(DenseWeights {
            path: path.to_path_buf(),
            map: Arc::new(map),
            index,
        })
    }

    fn entry(&self, name: &str, rows: usize, cols: usize) -> Result<&Entry, RuntimeError> {
        let err = |msg: String| RuntimeError::Load {
            path: self.path.display().to_string(),
            msg: format!("tensor {name}: {msg}"),
        };
        let e = self.index.get(name).ok_or_else(|| err("missing".into()))?;
        if (e.rows, e.cols) != (rows, cols) {
            return Err(err(format!(
                "shape {}x{}, expected {rows}x{cols}",
                e.rows, e.cols
            )));
        }
        Ok(e)
    }

    /// The [rows, cols] matrix `name`.
    pub fn mat(&self, name: &str, rows: usize, cols: usize) -> Result<Mat, RuntimeError> {
        let e = self.entry(name, rows, cols)?;
        Ok(Mat {
            map: self.map.clone(),
            enc: e.enc,
            rows,
            cols,
            off: e.off,
            len: e.len,
        })
    }

    /// The vector `name` (length `len`) as f32.
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, RuntimeError> {
        let m = self.mat(name, 1, len)?;
        let mut v = vec![0f32; len];
        m.rows().widen(crate::experts::kernels::kernels(), &mut v);
        Ok(v)
    }

    pub fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }
}
