//! Checkpoint weights: `model.safetensors` or the shards listed by
//! `model.safetensors.index.json`, memmapped and read one tensor at a time so
//! that a checkpoint larger than RAM converts. Converts bf16/f16/f32 to f32 or
//! to the bundle dtype; every error names the shard file and the tensor.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype as StDtype, SafeTensors};

use super::ImportError;
use crate::bundle::manifest::Dtype;

struct Shard {
    path: PathBuf,
    mmap: Mmap,
    /// Byte offset of the data section (8 + header length).
    data_start: usize,
    meta: Metadata,
}

/// An opened checkpoint: every shard memmapped, the header of each parsed.
pub struct Checkpoint {
    /// The file a missing tensor is reported against (the index or the single file).
    pub origin: PathBuf,
    shards: Vec<Shard>,
    index: HashMap<String, usize>,
}

/// One tensor of the checkpoint, borrowed from the memmap.
pub struct TensorRef<'a> {
    pub path: &'a Path,
    pub name: &'a str,
    pub dtype: StDtype,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

fn open_shard(path: &Path) -> Result<Shard, ImportError> {
    let file = File::open(path).map_err(|e| ImportError::io(path, e))?;
    // SAFETY: the checkpoint is read-only input; a concurrent writer would be a
    // user error, the same as for every tool reading safetensors through mmap.
    let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ImportError::io(path, e))?;
    let (n, meta) = SafeTensors::read_metadata(&mmap).map_err(|e| {
        ImportError::file(
            path,
            format!("not a valid safetensors file (truncated or corrupt?): {e}"),
        )
    })?;
    Ok(Shard {
        path: path.to_path_buf(),
        mmap,
        data_start: 8 + n,
        meta,
    })
}

impl Checkpoint {
    pub fn open(hf_dir: &Path) -> Result<Checkpoint, ImportError> {
        let single = hf_dir.join("model.safetensors");
        let index_path = hf_dir.join("model.safetensors.index.json");
        let mut shards = Vec::new();
        let mut index = HashMap::new();
        if index_path.exists() && !single.exists() {
            let text = std::fs::read_to_string(&index_path)
                .map_err(|e| ImportError::io(&index_path, e))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ImportError::file(&index_path, format!("invalid JSON: {e}")))?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| {
                    ImportError::field(&index_path, "weight_map", "missing or not an object")
                })?;
            let mut by_file: HashMap<String, usize> = HashMap::new();
            let mut names: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            names.sort_by(|a, b| a.0.cmp(b.0));
            for (name, file) in names {
                let file = file.as_str().ok_or_else(|| {
                    ImportError::field(
                        &index_path,
                        &format!("weight_map.{name}"),
                        "is not a file name",
                    )
                })?;
                if file.contains("..") || file.starts_with('/') {
                    return Err(ImportError::field(
                        &index_path,
                        &format!("weight_map.{name}"),
                        format!("`{file}` points outside the checkpoint"),
                    ));
                }
                let si = match by_file.get(file) {
                    Some(&i) => i,
                    None => {
                        shards.push(open_shard(&hf_dir.join(file))?);
                        by_file.insert(file.to_string(), shards.len() - 1);
                        shards.len() - 1
                    }
                };
                if shards[si].meta.info(name).is_none() {
                    return Err(ImportError::tensor(
                        &shards[si].path,
                        name,
                        format!("is missing (listed there by {})", index_path.display()),
                    ));
                }
                index.insert(name.clone(), si);
            }
            Ok(Checkpoint {
                origin: index_path,
                shards,
                index,
            })
        } else {
            if !single.exists() {
                return Err(ImportError::file(
                    &single,
                    format!(
                        "missing (neither it nor {} exists)",
                        index_path.file_name().unwrap().to_string_lossy()
                    ),
                ));
            }
            let shard = open_shard(&single)?;
            for name in shard.meta.tensors().keys() {
                index.insert(name.clone(), 0);
            }
            shards.push(shard);
            Ok(Checkpoint {
                origin: single,
                shards,
                index,
            })
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn info(&self, name: &str) -> Result<(&Shard, &TensorInfo), ImportError> {
        let si = *self
            .index
            .get(name)
            .ok_or_else(|| ImportError::tensor(&self.origin, name, "is missing"))?;
        let shard = &self.shards[si];
        let info = shard
            .meta
            .info(name)
            .expect("indexed tensor is in its shard");
        Ok((shard, info))
    }

    /// Check presence, dtype and shape without touching the data.
    pub fn check(&self, name: &str, shape: &[usize]) -> Result<(), ImportError> {
        let (shard, info) = self.info(name)?;
        check_dtype(&shard.path, name, info.dtype)?;
        if info.shape != shape {
            return Err(ImportError::tensor(
                &shard.path,
                name,
                format!("has shape {:?}, expected {:?}", info.shape, shape),
            ));
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<TensorRef<'_>, ImportError> {
        let (shard, info) = self.info(name)?;
        let (s, e) = info.data_offsets;
        let bytes = shard
            .mmap
            .get(shard.data_start + s..shard.data_start + e)
            .ok_or_else(|| {
                ImportError::tensor(&shard.path, name, "data lies outside the file (truncated?)")
            })?;
        Ok(TensorRef {
            path: &shard.path,
            name: self.index.get_key_value(name).unwrap().0,
            dtype: info.dtype,
            shape: &info.shape,
            bytes,
        })
    }

    /// The tensor as f32, after checking its shape.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ImportError> {
        self.check(name, shape)?;
        self.get(name)?.to_f32()
    }
}

fn check_dtype(path: &Path, name: &str, dt: StDtype) -> Result<(), ImportError> {
    match dt {
        StDtype::F32 | StDtype::F16 | StDtype::BF16 => Ok(()),
        other => Err(ImportError::tensor(
            path,
            name,
            format!("has dtype {other}, supported: F32, F16, BF16"),
        )),
    }
}

impl TensorRef<'_> {
    pub fn to_f32(&self) -> Result<Vec<f32>, ImportError> {
        let b = self.bytes;
        Ok(match self.dtype {
            StDtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            StDtype::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            StDtype::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(ImportError::tensor(
                    self.path,
                    self.name,
                    format!("has dtype {other}, supported: F32, F16, BF16"),
                ))
            }
        })
    }
}

/// Append `data` to `out` as little-endian values of `dtype`.
pub fn encode(data: &[f32], dtype: Dtype, out: &mut Vec<u8>) {
    match dtype {
        Dtype::F32 => {
            out.reserve(data.len() * 4);
            for v in data {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Dtype::F16 => {
            out.reserve(data.len() * 2);
            for v in data {
                out.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes());
            }
        }
    }
}

/// Transpose a row-major [rows, cols] matrix into [cols, rows].
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    debug_assert_eq!(data.len(), rows * cols);
    let mut out = vec![0f32; data.len()];
    const B: usize = 32;
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    out[c * rows + r] = data[r * cols + c];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_roundtrip() {
        let d: Vec<f32> = (0..6).map(|x| x as f32).collect();
        let t = transpose(&d, 2, 3);
        assert_eq!(t, vec![0., 3., 1., 4., 2., 5.]);
        assert_eq!(transpose(&t, 3, 2), d);
    }

    #[test]
    fn encode_f16() {
        let mut out = vec![];
        encode(&[1.0, -2.0], Dtype::F16, &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(half::f16::from_le_bytes([out[2], out[3]]).to_f32(), -2.0);
    }
}
