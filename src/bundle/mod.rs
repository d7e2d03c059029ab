//! The bundle a daemon loads: `manifest.json`, `tokenizer.json`, ONNX graphs of
//! the dense work, `dense.safetensors` (the same weights for the native
//! backend) and `experts.safetensors`. This module owns opening a bundle
//! and checking its files (sizes always, sha256 on demand); `import/` writes
//! bundles from Hugging Face checkpoints. Running graphs is `runtime`'s job,
//! serving experts is `experts`'.

pub mod files;
pub mod import;
pub mod manifest;
pub mod names;
pub mod quant;

use std::path::{Path, PathBuf};

pub use manifest::{ArchKind, Architecture, Dtype, ExpertDtype, Manifest, QkNorm, SpecialTokens};

/// The bundle every subcommand uses when `--bundle` is not given.
pub const DEFAULT_BUNDLE: &str = "models/assist-moe/bundle";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid manifest: {msg}")]
    Manifest { path: PathBuf, msg: String },
    #[error("{path}: field `{field}` {msg}")]
    Field {
        path: PathBuf,
        field: String,
        msg: String,
    },
    #[error("{path}: size is {actual} bytes, the manifest says {expected}")]
    Size {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error(
        "{path}: sha256 is {actual}, the manifest says {expected} (file corrupted or modified)"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
}

impl BundleError {
    pub fn io(path: &Path, source: std::io::Error) -> BundleError {
        BundleError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn invalid(path: &Path, msg: impl Into<String>) -> BundleError {
        BundleError::Invalid {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
}

/// How thoroughly `Bundle::open` checks the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Sizes only (fast start; `manifest.sha256` is still checked).
    Sizes,
    /// Sizes and sha256 of every file (catches a flipped bit before it answers).
    /// Every file: the graphs (and their external data), the tokenizer and
    /// the whole `experts.safetensors`, hashed at start rather than per
    /// expert on first use: an edge bundle is a few GB at most and hashes in
    /// seconds, and a corrupted expert found mid-answer could only fail that
    /// answer, never prevent it.
    Full,
}

/// An opened, checked bundle directory.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Bundle {
    pub fn open(dir: &Path, verify: Verify) -> Result<Bundle, BundleError> {
        let mpath = dir.join("manifest.json");
        // Before parsing: a corrupted manifest is reported as such.
        if !files::check_manifest(dir)? && verify == Verify::Full {
            log::warn!(
                "bundle manifest unchecked path={} reason=no_{} (re-import the bundle to add it)",
                mpath.display(),
                files::MANIFEST_SHA_FILE
            );
        }
        let text = std::fs::read_to_string(&mpath).map_err(|e| BundleError::io(&mpath, e))?;
        let manifest = Manifest::from_json(&text, &mpath)?;
        let bundle = Bundle {
            dir: dir.to_path_buf(),
            manifest,
        };
        files::check_files(&bundle.dir, &bundle.manifest.files, verify)?;
        Ok(bundle)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.path(&self.manifest.tokenizer)
    }
}
