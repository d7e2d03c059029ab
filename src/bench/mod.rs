//! The `bench` subcommand: measured figures, never timed tests. Each
//! benchmark prints one table and can write JSON. Owns measurement helpers
//! (peak RSS, percentiles) and the mode dispatch (`run`); the things measured
//! live in their own modules.

pub mod app_latency;
pub mod bandwidth;
pub mod cache;
pub mod constrain;
pub mod engine;
pub mod fleet;
pub mod larger;
pub mod llama;
pub mod offload;
pub mod prefix;
mod run;
pub mod scale;
pub mod serve;

pub use run::{run, Mode, Report};

/// Peak resident set size of this process (VmHWM), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Current resident set size (VmRSS), in bytes.
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The p-th percentile (0..=100) of unsorted samples.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[idx.min(v.len() - 1)]
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error("{0}")]
    Other(String),
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles() {
        let s = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(super::percentile(&s, 50.0), 3.0);
        assert_eq!(super::percentile(&s, 100.0), 5.0);
        assert_eq!(super::percentile(&s, 0.0), 1.0);
        assert!(super::peak_rss_bytes().unwrap() > 0);
    }
}
