//! DRAM read bandwidth, measured the way a decode step reads weights: two
//! threads each stream (sum) a disjoint half of a buffer far larger than the
//! caches; the best of several passes is reported. Owns nothing else.

use std::time::Instant;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Bandwidth {
    pub buffer_bytes: u64,
    pub threads: usize,
    pub passes: usize,
    /// Best pass, 1e9 bytes/s.
    pub read_gb_s: f64,
    /// Median pass, 1e9 bytes/s.
    pub median_gb_s: f64,
}

/// Sum a slice with 8 independent lanes so the loop vectorises and is bound
/// by memory, not by the add latency.
fn sum(v: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    for c in v.chunks_exact(8) {
        for l in 0..8 {
            acc[l] = acc[l].wrapping_add(c[l]);
        }
    }
    acc.iter().fold(0u64, |a, &b| a.wrapping_add(b))
}

/// Read bandwidth over a `bytes` buffer (rounded down to 64 B) with `threads`
/// threads, best of `passes` passes (after one warm-up pass).
pub fn measure(bytes: usize, threads: usize, passes: usize) -> Bandwidth {
    let threads = threads.max(1);
    let n = (bytes / 64) * 8;
    // Non-zero contents so no page is the shared zero page.
    let buf: Vec<u64> = (0..n as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    let chunk = n.div_ceil(threads).div_ceil(8) * 8;
    let mut rates = Vec::with_capacity(passes);
    for pass in 0..=passes.max(1) {
        let t = Instant::now();
        let total = std::thread::scope(|s| {
            let hs: Vec<_> = buf
                .chunks(chunk)
                .map(|part| s.spawn(move || sum(part)))
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0u64, u64::wrapping_add)
        });
        std::hint::black_box(total);
        let secs = t.elapsed().as_secs_f64();
        if pass > 0 {
            rates.push((n * 8) as f64 / secs / 1e9);
        }
    }
    let best = rates.iter().copied().fold(0.0, f64::max);
    let median = super::percentile(&rates, 50.0);
    log::info!(
        "bandwidth bytes={} threads={threads} passes={} best_gb_s={best:.2} median_gb_s={median:.2}",
        n * 8,
        rates.len()
    );
    Bandwidth {
        buffer_bytes: (n * 8) as u64,
        threads,
        passes: rates.len(),
        read_gb_s: best,
        median_gb_s: median,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn small_buffer_measures_something() {
        let b = super::measure(8 << 20, 2, 2);
        assert!(b.read_gb_s > 0.0 && b.buffer_bytes == 8 << 20);
        assert_eq!(super::sum(&[1, 2, 3, 4, 5, 6, 7, 8]), 36);
    }
}
