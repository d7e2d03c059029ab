//! The pruned bundle a board carries: the same graphs and tokenizer, an
//! `experts.safetensors` with only the planned experts, and a manifest that
//! says which (`experts.present`). With a low-precision bundle of the same
//! model (mixed-precision residency) its experts file is carried too, as
//! `experts.lowp.safetensors` (`experts_lowp` in the manifest). Written to a
//! temporary directory and renamed at the end, like `import`.

use std::path::Path;

use super::PlanError;
use crate::bundle::files::file_entry;
use crate::bundle::import::experts::{write, Layout};
use crate::bundle::{Bundle, BundleError};
use crate::experts::ExpertStore;

/// The file name of the low-precision copy in a mixed-precision device bundle.
pub const LOWP_FILE: &str = "experts.lowp.safetensors";

/// Write `out` holding only `per_layer[l]` experts of each layer (and, with
/// `lowp`, that bundle's experts as the low-precision copy). Returns the size
/// of the experts file(s).
pub fn write_device_bundle(
    src: &Bundle,
    per_layer: &[Vec<u16>],
    lowp: Option<&Bundle>,
    out: &Path,
    force: bool,
) -> Result<u64, PlanError> {
    let m = &src.manifest;
    let a = &m.architecture;
    if let Some(lb) = lowp {
        let lm = &lb.manifest;
        if lm.architecture != *a {
            return Err(PlanError::Invalid(format!(
                "{}: --lowp bundle has another architecture than {}",
                lb.dir.display(),
                src.dir.display()
            )));
        }
        if !lm.experts.dtype.is_quantized() || lm.experts_lowp.is_some() {
            return Err(PlanError::Invalid(format!(
                "{}: --lowp wants a plain q8 or q4 bundle (import --experts-dtype q8|q4), its experts are {}",
                lb.dir.display(),
                lm.experts.dtype.name()
            )));
        }
    }
    if per_layer.len() != a.num_layers {
        return Err(PlanError::Invalid(format!(
            "plan lists {} layers, the bundle has {}",
            per_layer.len(),
            a.num_layers
        )));
    }
    if !force
        && out.exists()
        && std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        return Err(PlanError::File {
            path: out.display().to_string(),
            msg: "already exists and is not empty (pass --force to replace it)".into(),
        });
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| BundleError::io(parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".moe-edge-device-")
        .tempdir_in(parent)
        .map_err(|e| BundleError::io(parent, e))?;
    let store = ExpertStore::of_bundle(src)?;
    let mut ids = Vec::new();
    for (l, es) in per_layer.iter().enumerate() {
        for &e in es {
            if !store.has(l, e as usize) {
                return Err(PlanError::Invalid(format!(
                    "the source bundle lacks expert {e} of layer {l}"
                )));
            }
            ids.push((l, e as usize));
        }
    }
    let layout = Layout::for_experts(
        a.num_layers,
        a.num_experts,
        ids,
        a.expert_intermediate_size,
        a.hidden_size,
        m.experts.dtype,
    );
    // Each source expert is checked against its hash (when the source was
    // opened with a full check) before it is copied.
    let (size, hashes) = write(&tmp.path().join(&m.experts.file), &layout, |l, e, buf| {
        let w = store.checked(l, e).map_err(|x| {
            crate::bundle::import::ImportError::file(&src.path(&m.experts.file), x.to_string())
        })?;
        buf.extend_from_slice(w.as_bytes());
        Ok(())
    })
    .map_err(|e| PlanError::Invalid(e.to_string()))?;
    let mut manifest = m.clone();
    let mut files = Vec::new();
    for f in &m.files {
        if f.path == m.experts.file {
            files.push(file_entry(tmp.path(), &f.path)?);
            continue;
        }
        let dst = tmp.path().join(&f.path);
        if let Some(d) = dst.parent() {
            std::fs::create_dir_all(d).map_err(|e| BundleError::io(d, e))?;
        }
        std::fs::copy(src.path(&f.path), &dst).map_err(|e| BundleError::io(&dst, e))?;
        files.push(f.clone());
    }
    let mut size = size;
    if let Some(lb) = lowp {
        let lm = &lb.manifest;
        let dst = tmp.path().join(LOWP_FILE);
        size +=
            std::fs::copy(lb.path(&lm.experts.file), &dst).map_err(|e| BundleError::io(&dst, e))?;
        files.push(file_entry(tmp.path(), LOWP_FILE)?);
        manifest.experts_lowp = Some(crate::bundle::manifest::ExpertsInfo {
            file: LOWP_FILE.into(),
            ..lm.experts.clone()
        });
    }
    manifest.files = files;
    manifest.experts.sha256 = Some(hashes);
    manifest.experts.present = Some(
        per_layer
            .iter()
            .map(|v| v.iter().map(|&e| e as u32).collect())
            .collect(),
    );
    manifest.model_id = m.model_id.clone();
    let mpath = tmp.path().join("manifest.json");
    std::fs::write(
        &mpath,
        serde_json::to_string_pretty(&manifest).expect("manifest serialises"),
    )
    .map_err(|e| BundleError::io(&mpath, e))?;
    crate::bundle::files::write_manifest_checksum(tmp.path())?;
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| BundleError::io(out, e))?;
    }
    let tmp = tmp.keep();
    std::fs::rename(&tmp, out).map_err(|e| BundleError::io(out, e))?;
    Ok(size)
}
