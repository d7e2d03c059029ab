//! File integrity: sizes and sha256 of the files a manifest lists. Pure file
//! reading, no knowledge of what the files contain.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::manifest::FileEntry;
use super::{BundleError, Verify};

/// Hex sha256 of a file, streamed (bundles can be larger than RAM).
pub fn sha256_file(path: &Path) -> Result<String, BundleError> {
    let mut f = std::fs::File::open(path).map_err(|e| BundleError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| BundleError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Describe a file for the manifest.
pub fn file_entry(dir: &Path, rel: &str) -> Result<FileEntry, BundleError> {
    let path = dir.join(rel);
    let size = std::fs::metadata(&path)
        .map_err(|e| BundleError::io(&path, e))?
        .len();
    Ok(FileEntry {
        path: rel.to_string(),
        size,
        sha256: sha256_file(&path)?,
    })
}

/// Check every listed file: present, the right size, and (with `Verify::Full`) the right hash.
pub fn check_files(dir: &Path, files: &[FileEntry], verify: Verify) -> Result<(), BundleError> {
    for f in files {
        if f.path.contains("..") || f.path.starts_with('/') {
            return Err(BundleError::invalid(
                dir,
                format!("file path `{}` escapes the bundle", f.path),
            ));
        }
        let path = dir.join(&f.path);
        let actual = std::fs::metadata(&path)
            .map_err(|e| BundleError::io(&path, e))?
            .len();
        if actual != f.size {
            return Err(BundleError::Size {
                path,
                expected: f.size,
                actual,
            });
        }
        if verify == Verify::Full {
            let h = sha256_file(&path)?;
            if h != f.sha256 {
                return Err(BundleError::Checksum {
                    path,
                    expected: f.sha256.clone(),
                    actual: h,
                });
            }
        }
    }
    Ok(())
}
