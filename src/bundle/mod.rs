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
    /// Sizes and sha256 of every file (a flipped bit never produces an
    /// answer). The graphs, dense weights and tokenizer are hashed at open.
    /// An experts file whose manifest lists a hash per expert is not read
    /// at open: each expert is hashed when it is first used (a request that
    /// needs a corrupted expert fails with an error naming it), so the time
    /// to ready does not grow with the experts. Without per-expert hashes
    /// the whole experts file is hashed at open.
    Full,
}

/// Which of the bundle's files the opener reads: a full check hashes those
/// (a file nobody reads cannot produce an answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uses {
    /// Every file (the graph backends, tools that copy bundles).
    All,
    /// The native backend: `dense.safetensors`, the experts and the
    /// tokenizer, not the ONNX graphs (when the bundle has dense weights).
    DenseWeights,
}

/// An opened, checked bundle directory.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// How it was opened: with `Verify::Full`, expert stores check each
    /// expert against its manifest hash on first use.
    pub verify: Verify,
}

impl Bundle {
    pub fn open(dir: &Path, verify: Verify) -> Result<Bundle, BundleError> {
        Bundle::open_for(dir, verify, Uses::All)
    }

    /// As [`Bundle::open`], hashing only the files `uses` reads.
    pub fn open_for(dir: &Path, verify: Verify, uses: Uses) -> Result<Bundle, BundleError> {
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
            verify,
        };
        // Experts files with per-expert hashes are checked expert by expert.
        let m = &bundle.manifest;
        let mut lazy: Vec<&str> = std::iter::once(&m.experts)
            .chain(m.experts_lowp.as_ref())
            .filter(|x| x.sha256.is_some())
            .map(|x| x.file.as_str())
            .collect();
        if uses == Uses::DenseWeights && m.dense.is_some() {
            // Graph files (and their external data) are never read: sizes only.
            lazy.extend(
                m.files
                    .iter()
                    .filter(|f| f.path.starts_with(&format!("{}/", import::GRAPH_DIR)))
                    .map(|f| f.path.as_str()),
            );
        }
        files::check_files(&bundle.dir, &m.files, verify, &lazy)?;
        Ok(bundle)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.path(&self.manifest.tokenizer)
    }
}
