//! `experts.safetensors`: one tensor per routed expert, `layers.{l}.experts.{e}`
//! of shape [3, I, H] (gate, up, down^T; U8 [3, I, row bytes] when quantised,
//! see `ExpertDtype`), each starting at a file offset that
//! is a multiple of `EXPERT_ALIGN` so it can be memmapped, paged and sent as a
//! unit. The JSON header is padded with spaces so the data section starts
//! aligned, and `__pad.{n}` U8 tensors fill the gaps between experts; the
//! file stays a valid safetensors file. Written expert by expert (a checkpoint
//! larger than RAM converts).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::ImportError;
use crate::bundle::manifest::{expert_tensor_name, ExpertDtype, EXPERT_ALIGN};

fn round_up(n: usize, align: usize) -> usize {
    n.div_ceil(align) * align
}

/// Where each expert lands in the file.
#[derive(Debug, Clone)]
pub struct Layout {
    pub num_layers: usize,
    pub num_experts: usize,
    /// (layer, expert) in file order.
    pub ids: Vec<(usize, usize)>,
    pub expert_bytes: usize,
    /// Distance between consecutive experts (expert_bytes rounded up).
    pub stride: usize,
    /// Absolute file offset of the data section.
    pub data_start: usize,
    /// The header: 8-byte length + JSON padded with spaces.
    pub header: Vec<u8>,
    pub file_size: usize,
}

impl Layout {
    pub fn new(
        num_layers: usize,
        num_experts: usize,
        rows: usize,
        cols: usize,
        dtype: ExpertDtype,
    ) -> Layout {
        let ids = (0..num_layers * num_experts)
            .map(|k| (k / num_experts, k % num_experts))
            .collect();
        Self::for_experts(num_layers, num_experts, ids, rows, cols, dtype)
    }

    /// A file holding only the experts `ids` (a pruned device bundle), in that order.
    pub fn for_experts(
        num_layers: usize,
        num_experts: usize,
        ids: Vec<(usize, usize)>,
        rows: usize,
        cols: usize,
        dtype: ExpertDtype,
    ) -> Layout {
        let expert_bytes = dtype.expert_bytes(rows, cols);
        let stride = round_up(expert_bytes, EXPERT_ALIGN);
        let pad = stride - expert_bytes;
        let st_dtype = dtype.st_name();
        let st_cols = dtype.st_cols(cols);
        let count = ids.len();
        let mut json = String::from("{\"__metadata__\":{\"format\":\"moe-edge-experts\"}");
        for (k, &(l, e)) in ids.iter().enumerate() {
            let s = k * stride;
            json.push_str(&format!(
                ",\"{}\":{{\"dtype\":\"{st_dtype}\",\"shape\":[3,{rows},{st_cols}],\"data_offsets\":[{s},{}]}}",
                expert_tensor_name(l, e),
                s + expert_bytes
            ));
            if pad > 0 && k + 1 < count {
                json.push_str(&format!(
                    ",\"__pad.{k}\":{{\"dtype\":\"U8\",\"shape\":[{pad}],\"data_offsets\":[{},{}]}}",
                    s + expert_bytes,
                    s + stride
                ));
            }
        }
        json.push('}');
        let data_start = round_up(8 + json.len(), EXPERT_ALIGN);
        let n = data_start - 8;
        let mut header = Vec::with_capacity(data_start);
        header.extend_from_slice(&(n as u64).to_le_bytes());
        header.extend_from_slice(json.as_bytes());
        header.resize(data_start, b' ');
        let file_size = if count == 0 {
            data_start
        } else {
            data_start + (count - 1) * stride + expert_bytes
        };
        Layout {
            num_layers,
            num_experts,
            ids,
            expert_bytes,
            stride,
            data_start,
            header,
            file_size,
        }
    }

    /// Absolute file offset of expert `e` of layer `l` (which must be in the file).
    pub fn offset(&self, l: usize, e: usize) -> usize {
        let k = self
            .ids
            .iter()
            .position(|&id| id == (l, e))
            .expect("expert in layout");
        self.data_start + k * self.stride
    }
}

/// Write the file: `fill(l, e, buf)` appends expert (l, e)'s bytes
/// (`expert_bytes` of them) to an empty `buf`.
pub fn write(
    path: &Path,
    layout: &Layout,
    mut fill: impl FnMut(usize, usize, &mut Vec<u8>) -> Result<(), ImportError>,
) -> Result<(u64, Vec<Vec<String>>), ImportError> {
    use sha2::{Digest, Sha256};
    let io = |e| ImportError::io(path, e);
    let file = File::create(path).map_err(io)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(&layout.header).map_err(io)?;
    let pad = vec![0u8; layout.stride - layout.expert_bytes];
    let mut buf = Vec::with_capacity(layout.expert_bytes);
    let count = layout.ids.len();
    let mut hashes: Vec<Vec<String>> = vec![Vec::new(); layout.num_layers];
    for (k, &(l, e)) in layout.ids.iter().enumerate() {
        buf.clear();
        fill(l, e, &mut buf)?;
        if buf.len() != layout.expert_bytes {
            return Err(ImportError::file(
                path,
                format!(
                    "internal: expert {l}.{e} has {} bytes, expected {}",
                    buf.len(),
                    layout.expert_bytes
                ),
            ));
        }
        w.write_all(&buf).map_err(io)?;
        hashes[l].push(hex::encode(Sha256::digest(&buf)));
        if k + 1 < count {
            w.write_all(&pad).map_err(io)?;
        }
    }
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok((layout.file_size as u64, hashes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::SafeTensors;

    fn roundtrip(rows: usize, cols: usize, dtype: ExpertDtype) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("experts.safetensors");
        let layout = Layout::new(2, 3, rows, cols, dtype);
        let (size, hashes) = write(&path, &layout, |l, e, buf| {
            let n = 3 * rows * cols;
            let vals: Vec<f32> = (0..n)
                .map(|i| (l * 100 + e * 10) as f32 + i as f32 * 0.5)
                .collect();
            crate::bundle::quant::encode_rows(&vals, cols, dtype, buf);
            Ok(())
        })
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, size);
        let st = SafeTensors::deserialize(&bytes).expect("safetensors crate loads it");
        let base = bytes.as_ptr() as usize;
        #[allow(clippy::needless_range_loop)]
        for l in 0..2 {
            for e in 0..3 {
                let t = st.tensor(&expert_tensor_name(l, e)).unwrap();
                assert_eq!(t.shape(), &[3, rows, dtype.st_cols(cols)]);
                let off = t.data().as_ptr() as usize - base;
                assert_eq!(off % EXPERT_ALIGN, 0, "expert {l}.{e} at {off}");
                assert_eq!(off, layout.offset(l, e));
                use sha2::{Digest, Sha256};
                assert_eq!(&hashes[l][e], &hex::encode(Sha256::digest(t.data())));
                let mut row = Vec::new();
                crate::bundle::quant::decode_row(
                    &t.data()[..dtype.row_bytes(cols)],
                    cols,
                    dtype,
                    &mut row,
                );
                let want = (l * 100 + e * 10) as f32 + 0.5;
                // half a quantisation step of the block (max |x| <= want + 16)
                let tol = match dtype {
                    ExpertDtype::Q8 => (want + 16.0) / 127.0,
                    ExpertDtype::Q4 => (want + 16.0) / 14.0,
                    _ => 0.0,
                };
                assert!((row[1] - want).abs() <= tol, "{} vs {want}", row[1]);
            }
        }
    }

    #[test]
    fn aligned_and_loadable_f32() {
        roundtrip(5, 7, ExpertDtype::F32);
    }

    #[test]
    fn aligned_and_loadable_f16() {
        roundtrip(16, 64, ExpertDtype::F16);
    }

    #[test]
    fn aligned_and_loadable_quantized() {
        roundtrip(16, 64, ExpertDtype::Q8);
        roundtrip(5, 96, ExpertDtype::Q4);
    }

    #[test]
    fn exact_multiple_needs_no_padding() {
        // 3 * 32 * 32 * 4 = 12288 = 3 pages
        let layout = Layout::new(1, 2, 32, 32, ExpertDtype::F32);
        assert_eq!(layout.stride, layout.expert_bytes);
        assert!(!String::from_utf8_lossy(&layout.header).contains("__pad"));
        roundtrip(32, 32, ExpertDtype::F32);
    }
}
