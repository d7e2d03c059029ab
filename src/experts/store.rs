//! `experts.safetensors` memmapped read-only. Each expert is one tensor
//! `layers.{l}.experts.{e}` of shape [3, I, H] (gate, up, down^T) starting on a
//! page boundary, so an expert can be served, paged in/out and sent as a unit
//! without copying. Knows nothing of budgets or routing.

use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU8, Ordering};

use half::f16;
use memmap2::Mmap;
use sha2::{Digest, Sha256};

use super::ExpertError;
use crate::bundle::manifest::{expert_tensor_name, ExpertDtype, EXPERT_ALIGN};

/// The weights of one expert, borrowed from the map: [3, I, H] row-major
/// (quantised: [3, I] rows of `ExpertDtype::row_bytes(H)` bytes).
#[derive(Clone, Copy, Debug)]
pub enum ExpertWeights<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    Q8(&'a [u8]),
    Q4(&'a [u8]),
}

impl<'a> ExpertWeights<'a> {
    pub fn dtype(&self) -> ExpertDtype {
        match self {
            ExpertWeights::F32(_) => ExpertDtype::F32,
            ExpertWeights::F16(_) => ExpertDtype::F16,
            ExpertWeights::Q8(_) => ExpertDtype::Q8,
            ExpertWeights::Q4(_) => ExpertDtype::Q4,
        }
    }
    /// Bytes of the weights.
    pub fn bytes(&self) -> usize {
        match self {
            ExpertWeights::F32(w) => w.len() * 4,
            ExpertWeights::F16(w) => w.len() * 2,
            ExpertWeights::Q8(w) | ExpertWeights::Q4(w) => w.len(),
        }
    }
    /// The raw bytes of the weights.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            ExpertWeights::F32(w) => bytemuck::cast_slice(w),
            ExpertWeights::F16(w) => bytemuck::cast_slice(w),
            ExpertWeights::Q8(w) | ExpertWeights::Q4(w) => w,
        }
    }
    /// The intermediate size I for hidden size `hidden`.
    pub fn inter(&self, hidden: usize) -> usize {
        self.bytes() / (3 * self.dtype().row_bytes(hidden))
    }
    pub fn is_empty(&self) -> bool {
        self.bytes() == 0
    }
}

pub struct ExpertStore {
    path: PathBuf,
    mmap: Mmap,
    dtype: ExpertDtype,
    expert_bytes: usize,
    /// [layer][expert] -> byte offset in the file, `None` when not carried.
    offsets: Vec<Vec<Option<usize>>>,
    /// [layer][expert] -> the sha256 the manifest gives, when experts are
    /// checked on first use.
    expected: Vec<Vec<Option<[u8; 32]>>>,
    /// [layer * experts + expert] -> UNCHECKED, GOOD or BAD.
    state: Vec<AtomicU8>,
}

const UNCHECKED: u8 = 0;
const GOOD: u8 = 1;
const BAD: u8 = 2;

impl std::fmt::Debug for ExpertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpertStore")
            .field("path", &self.path)
            .field("dtype", &self.dtype)
            .field("expert_bytes", &self.expert_bytes)
            .finish()
    }
}

impl ExpertStore {
    /// Map the file and index every expert tensor. Checks names, shapes, dtype and alignment.
    /// The routed experts of a bundle (`experts.safetensors`).
    pub fn of_bundle(bundle: &crate::bundle::Bundle) -> Result<ExpertStore, ExpertError> {
        ExpertStore::of_file(bundle, &bundle.manifest.experts)
    }

    /// The bundle's low-precision copy of its experts, if it has one.
    pub fn lowp_of_bundle(
        bundle: &crate::bundle::Bundle,
    ) -> Result<Option<ExpertStore>, ExpertError> {
        bundle
            .manifest
            .experts_lowp
            .as_ref()
            .map(|x| ExpertStore::of_file(bundle, x))
            .transpose()
    }

    fn of_file(
        bundle: &crate::bundle::Bundle,
        x: &crate::bundle::manifest::ExpertsInfo,
    ) -> Result<ExpertStore, ExpertError> {
        let a = &bundle.manifest.architecture;
        let path = bundle.path(&x.file);
        let mut store = ExpertStore::open(
            &path,
            a.num_layers,
            a.num_experts,
            a.expert_intermediate_size,
            a.hidden_size,
            x.dtype,
        )?;
        if let (crate::bundle::Verify::Full, Some(hashes)) = (bundle.verify, &x.sha256) {
            for (l, hs) in hashes.iter().enumerate() {
                for (e, h) in x.carried(l, a.num_experts).into_iter().zip(hs) {
                    let mut d = [0u8; 32];
                    hex::decode_to_slice(h, &mut d).map_err(|err| ExpertError::Store {
                        path: path.display().to_string(),
                        msg: format!("manifest sha256 of expert {l}.{e}: {err}"),
                    })?;
                    store.expected[l][e as usize] = Some(d);
                }
            }
        }
        Ok(store)
    }

    pub fn open(
        path: &Path,
        layers: usize,
        experts: usize,
        inter: usize,
        hidden: usize,
        dtype: ExpertDtype,
    ) -> Result<ExpertStore, ExpertError> {
        let err = |msg: String| ExpertError::Store {
            path: path.display().to_string(),
            msg,
        };
        let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
        // SAFETY: the bundle is read-only for the daemon's lifetime; a file
        // truncated underneath us is outside what we can defend against.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| err(e.to_string()))?;
        let st = safetensors::SafeTensors::deserialize(&mmap)
            .map_err(|e| err(format!("not a valid safetensors file: {e}")))?;
        let want_dtype = match dtype {
            ExpertDtype::F32 => safetensors::Dtype::F32,
            ExpertDtype::F16 => safetensors::Dtype::F16,
            ExpertDtype::Q8 | ExpertDtype::Q4 => safetensors::Dtype::U8,
        };
        let cols = dtype.st_cols(hidden);
        let expert_bytes = dtype.expert_bytes(inter, hidden);
        let base = mmap.as_ptr() as usize;
        let mut offsets = vec![vec![None; experts]; layers];
        for (name, view) in st.tensors() {
            if name.starts_with("__pad.") {
                continue;
            }
            let (l, e) =
                parse_name(&name).ok_or_else(|| err(format!("unexpected tensor `{name}`")))?;
            if l >= layers || e >= experts {
                return Err(err(format!(
                    "tensor `{name}` is outside {layers} layers x {experts} experts"
                )));
            }
            if view.dtype() != want_dtype {
                return Err(err(format!(
                    "tensor `{name}` is {:?}, manifest says {}",
                    view.dtype(),
                    dtype.name()
                )));
            }
            if view.shape() != [3, inter, cols] {
                return Err(err(format!(
                    "tensor `{name}` has shape {:?}, expected [3, {inter}, {cols}]",
                    view.shape()
                )));
            }
            let off = view.data().as_ptr() as usize - base;
            if off % EXPERT_ALIGN != 0 {
                return Err(err(format!(
                    "tensor `{name}` at offset {off} is not {EXPERT_ALIGN}-aligned"
                )));
            }
            offsets[l][e] = Some(off);
        }
        Ok(ExpertStore {
            path: path.to_path_buf(),
            mmap,
            dtype,
            expert_bytes,
            offsets,
            expected: vec![vec![None; experts]; layers],
            state: (0..layers * experts)
                .map(|_| AtomicU8::new(UNCHECKED))
                .collect(),
        })
    }

    pub fn dtype(&self) -> ExpertDtype {
        self.dtype
    }

    pub fn expert_bytes(&self) -> usize {
        self.expert_bytes
    }

    pub fn has(&self, layer: usize, expert: usize) -> bool {
        self.offsets
            .get(layer)
            .and_then(|l| l.get(expert))
            .is_some_and(|o| o.is_some())
    }

    /// Expert ids carried for a layer.
    pub fn present(&self, layer: usize) -> Vec<u32> {
        self.offsets[layer]
            .iter()
            .enumerate()
            .filter_map(|(e, o)| o.map(|_| e as u32))
            .collect()
    }

    /// Byte offset of one expert in the file.
    pub fn offset(&self, layer: usize, expert: usize) -> Option<usize> {
        self.offsets.get(layer)?.get(expert).copied().flatten()
    }

    /// The raw bytes of one expert (to send or hash), borrowed from the map.
    pub fn bytes(&self, layer: usize, expert: usize) -> Option<&[u8]> {
        let off = self.offsets.get(layer)?.get(expert).copied().flatten()?;
        Some(&self.mmap[off..off + self.expert_bytes])
    }

    pub fn get(&self, layer: usize, expert: usize) -> Option<ExpertWeights<'_>> {
        let b = self.bytes(layer, expert)?;
        Some(match self.dtype {
            ExpertDtype::F32 => ExpertWeights::F32(bytemuck::cast_slice(b)),
            ExpertDtype::F16 => ExpertWeights::F16(bytemuck::cast_slice(b)),
            ExpertDtype::Q8 => ExpertWeights::Q8(b),
            ExpertDtype::Q4 => ExpertWeights::Q4(b),
        })
    }

    /// The expert's weights, checked against the manifest's hash the first
    /// time (when the bundle was opened with a full check and lists hashes).
    /// Hashing reads every page, so the first use pays the page-in here.
    pub fn checked(&self, layer: usize, expert: usize) -> Result<ExpertWeights<'_>, ExpertError> {
        let missing = || ExpertError::Store {
            path: self.path.display().to_string(),
            msg: format!("expert {layer}.{expert} is not in this file"),
        };
        let w = self.get(layer, expert).ok_or_else(missing)?;
        let n = self.expected.first().map_or(0, Vec::len);
        let st = &self.state[layer * n + expert];
        match st.load(Ordering::Acquire) {
            GOOD => return Ok(w),
            BAD => return Err(self.corrupt(layer, expert)),
            _ => {}
        }
        let Some(want) = self.expected[layer][expert] else {
            st.store(GOOD, Ordering::Release);
            return Ok(w);
        };
        let got: [u8; 32] = Sha256::digest(w.as_bytes()).into();
        if got == want {
            st.store(GOOD, Ordering::Release);
            Ok(w)
        } else {
            st.store(BAD, Ordering::Release);
            log::warn!(
                "expert corrupted path={} layer={layer} expert={expert} sha256={} expected={}",
                self.path.display(),
                hex::encode(got),
                hex::encode(want)
            );
            Err(self.corrupt(layer, expert))
        }
    }

    /// Whether the expert was already checked (or needs no check).
    pub fn is_checked(&self, layer: usize, expert: usize) -> bool {
        let n = self.expected.first().map_or(0, Vec::len);
        self.expected[layer][expert].is_none()
            || self.state[layer * n + expert].load(Ordering::Acquire) == GOOD
    }

    fn corrupt(&self, layer: usize, expert: usize) -> ExpertError {
        ExpertError::Corrupt {
            path: self.path.display().to_string(),
            layer,
            expert,
        }
    }

    /// Drop an evicted expert's pages from this process (the file stays intact).
    pub fn release(&self, layer: usize, expert: usize) {
        #[cfg(unix)]
        if let Some(off) = self.offsets[layer][expert] {
            // SAFETY: the map is read-only and file-backed: DONTNEED only drops
            // our page references; the next read faults the same bytes back in.
            let r = unsafe {
                self.mmap.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    off,
                    self.expert_bytes,
                )
            };
            if let Err(e) = r {
                log::debug!("madvise dontneed failed layer={layer} expert={expert} err={e}");
            }
        }
    }

    /// Read an expert in and map it now (blocking; for I/O threads).
    pub fn populate(&self, layer: usize, expert: usize) {
        let Some(off) = self.offset(layer, expert) else {
            return;
        };
        #[cfg(target_os = "linux")]
        if self
            .mmap
            .advise_range(memmap2::Advice::PopulateRead, off, self.expert_bytes)
            .is_ok()
        {
            return;
        }
        // Older kernels: touch one byte per page.
        let b = &self.mmap[off..off + self.expert_bytes];
        let mut x = 0u8;
        for p in b.iter().step_by(4096) {
            x ^= std::hint::black_box(*p);
        }
        std::hint::black_box(x);
    }
}

fn parse_name(name: &str) -> Option<(usize, usize)> {
    let rest = name.strip_prefix("layers.")?;
    let (l, rest) = rest.split_once('.')?;
    let e = rest.strip_prefix("experts.")?;
    let (l, e) = (l.parse().ok()?, e.parse().ok()?);
    (expert_tensor_name(l, e) == name).then_some((l, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_strictly() {
        assert_eq!(parse_name("layers.3.experts.15"), Some((3, 15)));
        assert_eq!(parse_name("layers.03.experts.1"), None);
        assert_eq!(parse_name("layers.3.expert.1"), None);
        assert_eq!(parse_name("__pad.1"), None);
    }
}
