//! File integrity: sizes and sha256 of the files a manifest lists, and of
//! `manifest.json` itself (its hash in `manifest.sha256`, `sha256sum` format,
//! so a flipped bit in a listed hash is blamed on the manifest, not on the
//! file it describes). Pure file reading, no knowledge of what the files
//! contain.

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

/// Check every listed file: present, the right size, and (with
/// `Verify::Full`) the right hash, except the files in `unhashed` (checked
/// part by part by their reader, or not read by this opener).
pub fn check_files(
    dir: &Path,
    files: &[FileEntry],
    verify: Verify,
    unhashed: &[&str],
) -> Result<(), BundleError> {
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
        if verify == Verify::Full && !unhashed.contains(&f.path.as_str()) {
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

/// Lists `rel` (a file already written into the bundle `dir`) in its
/// manifest with its size and hash, replacing an older entry, and rewrites
/// the manifest's checksum.
pub fn add_to_manifest(dir: &Path, rel: &str) -> Result<(), BundleError> {
    let mpath = dir.join("manifest.json");
    let text = std::fs::read_to_string(&mpath).map_err(|e| BundleError::io(&mpath, e))?;
    let mut m = super::manifest::Manifest::from_json(&text, &mpath)?;
    let entry = file_entry(dir, rel)?;
    match m.files.iter_mut().find(|f| f.path == rel) {
        Some(f) => *f = entry,
        None => m.files.push(entry),
    }
    let mut out = serde_json::to_string_pretty(&m).expect("manifest serialises");
    if text.ends_with('\n') {
        out.push('\n');
    }
    std::fs::write(&mpath, out).map_err(|e| BundleError::io(&mpath, e))?;
    write_manifest_checksum(dir)
}

/// The file next to `manifest.json` that holds its sha256.
pub const MANIFEST_SHA_FILE: &str = "manifest.sha256";

/// Writes `manifest.sha256` for the `manifest.json` in `dir` (call after
/// every write of the manifest).
pub fn write_manifest_checksum(dir: &Path) -> Result<(), BundleError> {
    let h = sha256_file(&dir.join("manifest.json"))?;
    let path = dir.join(MANIFEST_SHA_FILE);
    std::fs::write(&path, format!("{h}  manifest.json\n")).map_err(|e| BundleError::io(&path, e))
}

/// Checks `manifest.json` against `manifest.sha256`. `Ok(false)` when the
/// bundle has no checksum file (written by an older import).
pub fn check_manifest(dir: &Path) -> Result<bool, BundleError> {
    let path = dir.join(MANIFEST_SHA_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(BundleError::io(&path, e)),
    };
    let expected = text.split_whitespace().next().unwrap_or("");
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BundleError::invalid(
            &path,
            "not a sha256 line (`<64 hex digits>  manifest.json`)",
        ));
    }
    let mpath = dir.join("manifest.json");
    let actual = sha256_file(&mpath)?;
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(BundleError::Checksum {
            path: mpath,
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_checksum_round_trip_and_flip() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(!check_manifest(d).unwrap(), "no checksum file yet");
        std::fs::write(d.join("manifest.json"), b"{\"a\": 1}\n").unwrap();
        write_manifest_checksum(d).unwrap();
        assert!(check_manifest(d).unwrap());
        std::fs::write(d.join("manifest.json"), b"{\"a\": 3}\n").unwrap();
        let e = check_manifest(d).unwrap_err().to_string();
        assert!(e.contains("manifest.json") && e.contains("sha256"), "{e}");
        std::fs::write(d.join(MANIFEST_SHA_FILE), "zz").unwrap();
        let e = check_manifest(d).unwrap_err().to_string();
        assert!(e.contains("manifest.sha256"), "{e}");
    }
}
