//! A memory cgroup for the "device" of a benchmark: cgroup v2 (`memory.max`)
//! or v1 (`memory.limit_in_bytes`), whichever the machine mounts, so RSS and
//! page cache both count against one limit. Commands are started inside it
//! through `sh` (the shell joins the group, then `exec`s the program), so
//! nothing the program touches is charged elsewhere. Also drops the page
//! cache (pages cached by another process are otherwise read free of charge).
//! Needs root; says so when it cannot make the group. Owns no measurement.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no memory cgroup can be made here: {0}")]
    Unavailable(String),
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
}

fn io(p: &Path, e: std::io::Error) -> CgroupError {
    CgroupError::Io {
        path: p.display().to_string(),
        msg: e.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Which cgroup version mounts the memory controller, and where.
pub fn detect(root: &Path) -> Option<(Version, PathBuf)> {
    let v2 = root.join("cgroup.controllers");
    if std::fs::read_to_string(&v2).is_ok_and(|c| c.split_whitespace().any(|x| x == "memory")) {
        return Some((Version::V2, root.to_path_buf()));
    }
    let v1 = root.join("memory");
    v1.join("memory.limit_in_bytes")
        .exists()
        .then_some((Version::V1, v1))
}

#[derive(Debug)]
pub struct MemoryCgroup {
    version: Version,
    dir: PathBuf,
    limit: u64,
}

impl MemoryCgroup {
    /// Makes (or reuses) group `name` with a hard limit of `limit` bytes and
    /// no swap.
    pub fn create(name: &str, limit: u64) -> Result<MemoryCgroup, CgroupError> {
        let root = Path::new("/sys/fs/cgroup");
        let (version, base) = detect(root).ok_or_else(|| {
            CgroupError::Unavailable(format!(
                "{} mounts no memory controller (cgroup v1 or v2)",
                root.display()
            ))
        })?;
        if version == Version::V2 {
            // The parent must hand the memory controller down.
            let sc = base.join("cgroup.subtree_control");
            let _ = std::fs::write(&sc, "+memory");
        }
        let dir = base.join(name);
        if let Err(e) = std::fs::create_dir(&dir) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(CgroupError::Unavailable(format!(
                    "{}: {e} (making a cgroup needs root)",
                    dir.display()
                )));
            }
        }
        let g = MemoryCgroup {
            version,
            dir,
            limit,
        };
        g.set_limit(limit)?;
        Ok(g)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), CgroupError> {
        let p = self.dir.join(file);
        std::fs::write(&p, value).map_err(|e| io(&p, e))
    }

    fn read_u64(&self, file: &str) -> Option<u64> {
        std::fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn set_limit(&self, limit: u64) -> Result<(), CgroupError> {
        match self.version {
            Version::V1 => {
                // memsw must stay >= the memory limit: lower memory first
                // when shrinking, raise it first when growing.
                let _ = self.write("memory.limit_in_bytes", &limit.to_string());
                if self.dir.join("memory.memsw.limit_in_bytes").exists() {
                    self.write("memory.memsw.limit_in_bytes", &limit.to_string())?;
                }
                self.write("memory.limit_in_bytes", &limit.to_string())
            }
            Version::V2 => {
                self.write("memory.max", &limit.to_string())?;
                let _ = self.write("memory.swap.max", "0");
                Ok(())
            }
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A command that runs `program args…` inside the group.
    pub fn command(&self, program: &Path, args: &[String]) -> Command {
        let procs = self.dir.join("cgroup.procs");
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!(
                "echo $$ > '{}' && exec \"$@\"",
                procs.display().to_string().replace('\'', "'\\''")
            ))
            .arg("sh")
            .arg(program)
            .args(args);
        c
    }

    /// Peak usage (RSS and page cache) since the last [`reset_peak`](Self::reset_peak).
    pub fn peak_bytes(&self) -> Option<u64> {
        match self.version {
            Version::V1 => self.read_u64("memory.max_usage_in_bytes"),
            Version::V2 => self.read_u64("memory.peak"),
        }
    }

    pub fn reset_peak(&self) {
        let _ = match self.version {
            Version::V1 => self.write("memory.max_usage_in_bytes", "0"),
            Version::V2 => self.write("memory.peak", "0"),
        };
    }

    /// Times the group hit its limit (v1 `failcnt`, v2 `max` events) and
    /// processes the OOM killer took.
    pub fn pressure(&self) -> (u64, u64) {
        match self.version {
            Version::V1 => {
                let fail = self.read_u64("memory.failcnt").unwrap_or(0);
                let oom = std::fs::read_to_string(self.dir.join("memory.oom_control"))
                    .ok()
                    .and_then(|t| {
                        t.lines()
                            .find_map(|l| l.strip_prefix("oom_kill "))
                            .and_then(|v| v.trim().parse().ok())
                    })
                    .unwrap_or(0);
                (fail, oom)
            }
            Version::V2 => {
                let ev =
                    std::fs::read_to_string(self.dir.join("memory.events")).unwrap_or_default();
                let get = |k: &str| {
                    ev.lines()
                        .find_map(|l| l.strip_prefix(k))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0)
                };
                (get("max "), get("oom_kill "))
            }
        }
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Only an empty group can be removed; a leftover is harmless.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// `sync`, then drop clean page cache, dentries and inodes (root only).
pub fn drop_page_cache() -> Result<(), CgroupError> {
    let _ = Command::new("sync").status();
    let p = Path::new("/proc/sys/vm/drop_caches");
    std::fs::write(p, "3").map_err(|e| io(p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_versions_from_the_mount() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(detect(d.path()), None);
        std::fs::create_dir(d.path().join("memory")).unwrap();
        std::fs::write(d.path().join("memory/memory.limit_in_bytes"), "0").unwrap();
        assert_eq!(detect(d.path()).unwrap().0, Version::V1);
        std::fs::write(d.path().join("cgroup.controllers"), "cpu io memory pids").unwrap();
        assert_eq!(detect(d.path()).unwrap().0, Version::V2);
    }

    #[test]
    fn commands_join_the_group_before_exec() {
        let g = MemoryCgroup {
            version: Version::V1,
            dir: PathBuf::from("/sys/fs/cgroup/memory/x'y"),
            limit: 1,
        };
        let c = g.command(Path::new("/bin/true"), &["a b".into()]);
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(c.get_program(), "sh");
        assert!(args[1].starts_with("echo $$ > '/sys/fs/cgroup/memory/x'\\''y/cgroup.procs'"));
        assert_eq!(&args[2..], ["sh", "/bin/true", "a b"]);
        std::mem::forget(g);
    }
}
