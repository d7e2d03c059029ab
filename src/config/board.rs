//! Validated board: typed, with defaults filled in and every value checked.
//! Built-in boards are the files of `boards/` compiled into the binary, so the
//! daemon runs from any directory; a `boards/NAME.toml` in the working
//! directory, or a path, overrides them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::RawBoard;
use super::ConfigError;
use crate::runtime::{BackendKind, BackendOptions, OrtOptions};

/// The boards shipped in `boards/`.
pub const BUILTIN: &[(&str, &str)] = &[
    ("host-cpu", include_str!("../../boards/host-cpu.toml")),
    (
        "host-cpu-tract",
        include_str!("../../boards/host-cpu-tract.toml"),
    ),
    (
        "jetson-orin-nano-8gb",
        include_str!("../../boards/jetson-orin-nano-8gb.toml"),
    ),
    (
        "jetson-orin-nx-16gb",
        include_str!("../../boards/jetson-orin-nx-16gb.toml"),
    ),
    (
        "jetson-agx-orin-64gb",
        include_str!("../../boards/jetson-agx-orin-64gb.toml"),
    ),
    (
        "glasses-arm64",
        include_str!("../../boards/glasses-arm64.toml"),
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpertPolicy {
    Lru,
    Lfu,
    /// Keep exactly the experts of the plan; never evict.
    Pinned,
    /// Evict the expert with the lowest exponentially decayed use count
    /// (recency and frequency at once: predicts the next reuse).
    Predictive,
}

/// Whether the next layer's experts are paged in ahead of use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetch {
    /// On when the experts budget is smaller than the bundle's experts.
    Auto,
    /// The next layer's router on the current residual picks what to page in.
    Router,
    Off,
}

/// Paging experts ahead of use (`[experts]` prefetch, io_threads, on_late).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefetchConfig {
    pub mode: Prefetch,
    /// I/O threads that page experts in (they wait on the disk, not the CPU).
    pub io_threads: usize,
    /// What a layer does with an expert whose read ahead is still on its way.
    pub on_late: OnLate,
}

/// What a layer does when an expert it needs was predicted and its read
/// ahead has not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLate {
    /// Read it now and wait (exact).
    Wait,
    /// Its low-precision copy when the bundle has one, else wait.
    LowPrecision,
    /// The best resident experts instead (router scores renormalised), the
    /// read left to finish for a later use. Not exact.
    Substitute,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMiss {
    /// Use the best resident expert instead (router scores renormalised).
    Substitute,
    /// Send the whole request to the next hop of the cascade.
    Escalate,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    pub total_bytes: u64,
    pub experts_bytes: u64,
    pub kv_cache_bytes: u64,
}

/// The prefix cache (see `engine::prefix`).
#[derive(Debug, Clone, PartialEq)]
pub struct KvConfig {
    /// Budget of the prefix cache; 0 turns it off.
    pub prefix_cache_bytes: u64,
    /// Tokens per block and per prefill chunk.
    pub block_tokens: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_context: usize,
    pub max_concurrent: usize,
    pub queue_depth: usize,
    pub max_tokens: usize,
    pub max_payload_bytes: usize,
    pub requests_per_client_per_sec: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OffloadConfig {
    pub enabled: bool,
    pub timeout: Duration,
    pub on_miss: OnMiss,
    /// Mixed-precision bundles: route weight at or above which a miss on the
    /// full-precision experts goes to the host rather than to the local
    /// low-precision copy. `None`: always the local copy.
    pub full_precision_above: Option<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CascadeConfig {
    pub host_url: Option<String>,
    pub host_model: Option<String>,
    pub cloud_url: Option<String>,
    pub cloud_model: Option<String>,
    /// Name of the environment variable holding the cloud API key (never the key).
    pub cloud_api_key_env: Option<String>,
    /// Per hop: a whole plain call, the head of a stream, each gap in a stream.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Retries of a call that never reached the upstream or got 429/503 (backoff, capped).
    pub retries: u32,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    /// A local tool call whose confidence is lower than this is handed up
    /// (0: the gate is off). The confidence is the probability that the call
    /// is right from the bundle's calibration (`calibration.json`), or the
    /// least probability of a token of the reply when the bundle has none.
    pub min_confidence: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Board {
    pub name: String,
    pub description: String,
    /// Where the board was read from (a path or `builtin:NAME`).
    pub source: String,
    pub backend: BackendOptions,
    pub memory: Memory,
    pub limits: Limits,
    pub policy: ExpertPolicy,
    pub prefetch: PrefetchConfig,
    pub plan: Option<String>,
    pub offload: OffloadConfig,
    pub cascade: CascadeConfig,
    pub kv: KvConfig,
    pub tools: ToolsConfig,
}

/// How the device decodes tool calls (`[tools]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ToolsConfig {
    /// Every free-text string argument of a request's tools (a string with
    /// no `enum`, `const`, `pattern` or `format`) is copied from the request
    /// (`x-grounded`), unless its schema says `"x-grounded": false`. The
    /// device's own decoding only: what goes up the cascade is the app's
    /// request as sent.
    pub ground_free_strings: bool,
}

const MB: f64 = 1024.0 * 1024.0;

impl Board {
    /// This board with room for every expert of any bundle: for planning,
    /// routing statistics and benchmarks that need the whole model resident.
    pub fn all_resident(&self) -> Board {
        let mut b = self.clone();
        b.memory.experts_bytes = u64::MAX / 2;
        b
    }

    /// `name` is a board name (`boards/NAME.toml` in the working directory,
    /// else built in) or a path to a `.toml` file.
    pub fn load(name: &str) -> Result<Board, ConfigError> {
        let as_path = Path::new(name);
        if name.ends_with(".toml") || as_path.components().count() > 1 {
            return Self::from_file(as_path);
        }
        let local = PathBuf::from("boards").join(format!("{name}.toml"));
        if local.is_file() {
            return Self::from_file(&local);
        }
        match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((_, text)) => Self::parse(text, &PathBuf::from(format!("builtin:{name}"))),
            None => Err(ConfigError::UnknownBoard {
                name: name.to_string(),
                path: local,
                known: BUILTIN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    pub fn from_file(path: &Path) -> Result<Board, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Board, ConfigError> {
        let raw: RawBoard = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        Self::validate(raw, path)
    }

    fn validate(raw: RawBoard, path: &Path) -> Result<Board, ConfigError> {
        let field = |field: &'static str, msg: String| ConfigError::Field {
            path: path.to_path_buf(),
            field,
            msg,
        };
        let kind = match raw.runtime.backend.as_str() {
            "native" => BackendKind::Native,
            "tract" => BackendKind::Tract,
            "ort" => BackendKind::Ort,
            other => {
                return Err(field(
                    "runtime.backend",
                    format!("is `{other}`, expected `native`, `tract` or `ort`"),
                ))
            }
        };
        for p in &raw.runtime.providers {
            if !["cpu", "cuda", "tensorrt"].contains(&p.as_str()) {
                return Err(field(
                    "runtime.providers",
                    format!("unknown provider `{p}` (cpu, cuda, tensorrt)"),
                ));
            }
        }
        if kind != BackendKind::Ort && raw.runtime.providers.iter().any(|p| p != "cpu") {
            return Err(field(
                "runtime.providers",
                format!("{kind} runs on the CPU only; GPU providers need backend = \"ort\""),
            ));
        }
        let threads = raw.runtime.threads.unwrap_or(2);
        if threads == 0 || threads > 256 {
            return Err(field(
                "runtime.threads",
                format!("{threads} is not in 1..=256"),
            ));
        }
        let m = &raw.memory;
        if m.experts_mb < 0.0 || m.kv_cache_mb <= 0.0 {
            return Err(field(
                "memory",
                "experts_mb must be >= 0 and kv_cache_mb > 0".into(),
            ));
        }
        let prefix_mb = raw.kv.prefix_cache_mb.unwrap_or(32.0);
        if !(0.0..=m.total_mb as f64).contains(&prefix_mb) {
            return Err(field(
                "kv.prefix_cache_mb",
                format!("{prefix_mb} is not in 0..={}", m.total_mb),
            ));
        }
        if m.experts_mb + m.kv_cache_mb + prefix_mb > m.total_mb as f64 {
            return Err(field(
                "memory.experts_mb",
                format!(
                    "experts {} MB + KV cache {} MB + prefix cache {prefix_mb} MB exceed the board's {} MB",
                    m.experts_mb, m.kv_cache_mb, m.total_mb
                ),
            ));
        }
        let block_tokens = raw.kv.block_tokens.unwrap_or(64);
        if !(1..=4096).contains(&block_tokens) {
            return Err(field(
                "kv.block_tokens",
                format!("{block_tokens} is not in 1..=4096"),
            ));
        }
        let kv = KvConfig {
            prefix_cache_bytes: (prefix_mb * MB) as u64,
            block_tokens,
        };
        let l = &raw.limits;
        let limits = Limits {
            max_context: l.max_context.unwrap_or(512),
            max_concurrent: l.max_concurrent.unwrap_or(4),
            queue_depth: l.queue_depth.unwrap_or(32),
            max_tokens: l.max_tokens.unwrap_or(256),
            max_payload_bytes: l.max_payload_kb.unwrap_or(256) * 1024,
            requests_per_client_per_sec: l.requests_per_client_per_sec.unwrap_or(50.0),
        };
        for (name, v) in [
            ("limits.max_context", limits.max_context),
            ("limits.max_concurrent", limits.max_concurrent),
            ("limits.queue_depth", limits.queue_depth),
            ("limits.max_tokens", limits.max_tokens),
            ("limits.max_payload_kb", limits.max_payload_bytes),
        ] {
            if v == 0 {
                return Err(field(name, "must be > 0".into()));
            }
        }
        if limits.queue_depth > crate::config::board::MAX_QUEUE {
            return Err(field(
                "limits.queue_depth",
                format!(
                    "{} exceeds the compiled maximum {MAX_QUEUE}",
                    limits.queue_depth
                ),
            ));
        }
        let policy = match raw.experts.policy.as_deref().unwrap_or("lru") {
            "lru" => ExpertPolicy::Lru,
            "lfu" => ExpertPolicy::Lfu,
            "pinned" => ExpertPolicy::Pinned,
            "predictive" => ExpertPolicy::Predictive,
            other => {
                return Err(field(
                    "experts.policy",
                    format!("is `{other}`, expected lru, lfu, pinned or predictive"),
                ))
            }
        };
        let mode = match raw.experts.prefetch.as_deref().unwrap_or("auto") {
            "auto" => Prefetch::Auto,
            "router" => Prefetch::Router,
            "off" => Prefetch::Off,
            other => {
                return Err(field(
                    "experts.prefetch",
                    format!("is `{other}`, expected auto, router or off"),
                ))
            }
        };
        let on_late = match raw.experts.on_late.as_deref().unwrap_or("wait") {
            "wait" => OnLate::Wait,
            "low_precision" => OnLate::LowPrecision,
            "substitute" => OnLate::Substitute,
            other => {
                return Err(field(
                    "experts.on_late",
                    format!("is `{other}`, expected wait, low_precision or substitute"),
                ))
            }
        };
        let io_threads = raw.experts.io_threads.unwrap_or(4);
        if !(1..=64).contains(&io_threads) {
            return Err(field(
                "experts.io_threads",
                format!("is {io_threads}, expected 1 to 64"),
            ));
        }
        let on_miss = match raw.offload.on_miss.as_deref().unwrap_or("substitute") {
            "substitute" => OnMiss::Substitute,
            "escalate" => OnMiss::Escalate,
            other => {
                return Err(field(
                    "offload.on_miss",
                    format!("is `{other}`, expected substitute or escalate"),
                ))
            }
        };
        let full_precision_above = raw.offload.full_precision_above;
        if let Some(w) = full_precision_above {
            if !(0.0..=1.0).contains(&w) {
                return Err(field(
                    "offload.full_precision_above",
                    format!("is {w}, expected a router weight in 0..=1"),
                ));
            }
        }
        let c = raw.cascade;
        for (name, url) in [
            ("cascade.host_url", &c.host_url),
            ("cascade.cloud_url", &c.cloud_url),
        ] {
            if let Some(u) = url {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(field(name, format!("`{u}` is not an http(s) URL")));
                }
            }
        }
        if c.timeout_ms == Some(0) || c.connect_timeout_ms == Some(0) {
            return Err(field(
                "cascade.timeout_ms",
                "timeouts must be > 0 ms".into(),
            ));
        }
        if let Some(p) = c.min_confidence {
            if !(0.0..1.0).contains(&p) {
                return Err(field(
                    "cascade.min_confidence",
                    format!("is {p}, expected a probability in 0..1 (0: off)"),
                ));
            }
        }
        if c.retries.is_some_and(|r| r > 10) {
            return Err(field("cascade.retries", "must be <= 10".into()));
        }
        let ort = raw.ort.map(|o| OrtOptions {
            dylib: None,
            providers: raw.runtime.providers.clone(),
            device_id: o.device_id.unwrap_or(0),
            gpu_mem_limit: o.gpu_mem_limit_mb.map(|mb| (mb as usize) << 20),
            fp16: o.fp16.unwrap_or(false),
            trt_cache_dir: o.trt_cache_dir.map(PathBuf::from),
            max_context: limits.max_context,
            allow_cpu_fallback: o.allow_cpu_fallback.unwrap_or(false),
        });
        let ort = ort.unwrap_or_else(|| OrtOptions {
            providers: raw.runtime.providers.clone(),
            max_context: limits.max_context,
            ..OrtOptions::default()
        });
        Ok(Board {
            name: raw.name,
            description: raw.description.unwrap_or_default(),
            source: path.display().to_string(),
            backend: BackendOptions { kind, threads, ort },
            memory: Memory {
                total_bytes: m.total_mb << 20,
                experts_bytes: (m.experts_mb * MB) as u64,
                kv_cache_bytes: (m.kv_cache_mb * MB) as u64,
            },
            limits,
            policy,
            prefetch: PrefetchConfig {
                mode,
                io_threads,
                on_late,
            },
            plan: raw.experts.plan,
            offload: OffloadConfig {
                enabled: raw.offload.enabled.unwrap_or(false),
                timeout: Duration::from_millis(raw.offload.timeout_ms.unwrap_or(50)),
                on_miss,
                full_precision_above,
            },
            cascade: CascadeConfig {
                host_url: c.host_url,
                host_model: c.host_model,
                cloud_url: c.cloud_url,
                cloud_model: c.cloud_model,
                cloud_api_key_env: c.cloud_api_key_env,
                timeout: Duration::from_millis(c.timeout_ms.unwrap_or(10_000)),
                connect_timeout: Duration::from_millis(c.connect_timeout_ms.unwrap_or(2_000)),
                retries: c.retries.unwrap_or(2),
                breaker_failures: c.breaker_failures.unwrap_or(3),
                breaker_cooldown: Duration::from_millis(c.breaker_cooldown_ms.unwrap_or(5_000)),
                min_confidence: c.min_confidence.unwrap_or(0.0),
            },
            kv,
            tools: ToolsConfig {
                ground_free_strings: raw.tools.ground_free_strings.unwrap_or(false),
            },
        })
    }
}

/// Compiled upper bound of the admission queue (heapless capacity).
pub const MAX_QUEUE: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_boards_validate() {
        for (name, text) in BUILTIN {
            let b = Board::parse(text, Path::new(name)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&b.name, name);
        }
    }

    #[test]
    fn unknown_field_names_file_and_field() {
        let text = BUILTIN[0].1.replace("[memory]", "[memory]\nbogus = 1");
        let e = Board::parse(&text, Path::new("boards/x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("boards/x.toml") && e.contains("bogus"), "{e}");
    }

    #[test]
    fn bad_backend_named() {
        let text = BUILTIN[0]
            .1
            .replace("backend = \"native\"", "backend = \"tpu\"");
        let e = Board::parse(&text, Path::new("b.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("runtime.backend") && e.contains("tpu"), "{e}");
    }

    #[test]
    fn over_budget_refused() {
        let text = BUILTIN[0]
            .1
            .replace("experts_mb = 4096", "experts_mb = 99999999");
        let e = Board::parse(&text, Path::new("b.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory.experts_mb"), "{e}");
    }

    #[test]
    fn confidence_gate_is_a_probability() {
        let shipped = BUILTIN.iter().find(|(n, _)| *n == "host-cpu").unwrap().1;
        assert_eq!(
            Board::parse(shipped, Path::new("b.toml"))
                .unwrap()
                .cascade
                .min_confidence,
            0.9,
            "the shipped boards gate at the demo calibration's 98 % floor"
        );
        let host = shipped.replace("min_confidence = 0.9\n", "");
        assert_eq!(
            Board::parse(&host, Path::new("b.toml"))
                .unwrap()
                .cascade
                .min_confidence,
            0.0,
            "off unless a board says"
        );
        let with = |v: &str| host.replace("[cascade]", &format!("[cascade]\nmin_confidence = {v}"));
        let b = Board::parse(&with("0.5"), Path::new("b.toml")).unwrap();
        assert_eq!(b.cascade.min_confidence, 0.5);
        for bad in ["1.0", "-0.1", "2"] {
            let e = Board::parse(&with(bad), Path::new("b.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("cascade.min_confidence") && e.contains("b.toml"),
                "{e}"
            );
        }
    }

    #[test]
    fn prefetch_is_read_and_checked() {
        let host = BUILTIN.iter().find(|(n, _)| *n == "host-cpu").unwrap().1;
        let b = Board::parse(host, Path::new("b.toml")).unwrap();
        assert_eq!(b.prefetch.mode, Prefetch::Auto);
        assert_eq!(b.prefetch.io_threads, 4);
        assert_eq!(b.prefetch.on_late, OnLate::Wait);
        let with = |v: &str| host.replace("prefetch = \"auto\"\nio_threads = 4", v);
        let b = Board::parse(
            &with("prefetch = \"off\"\nio_threads = 2"),
            Path::new("b.toml"),
        )
        .unwrap();
        assert_eq!(
            b.prefetch,
            PrefetchConfig {
                mode: Prefetch::Off,
                io_threads: 2,
                on_late: OnLate::Wait,
            }
        );
        let no_key = host.replace("on_late = \"wait\"\n", "");
        assert_ne!(no_key, host, "host-cpu names on_late");
        let b = Board::parse(&no_key, Path::new("b.toml")).unwrap();
        assert_eq!(b.prefetch.on_late, OnLate::Wait, "wait unless a board says");
        for (v, want) in [
            ("low_precision", OnLate::LowPrecision),
            ("substitute", OnLate::Substitute),
        ] {
            let t = host.replace("on_late = \"wait\"", &format!("on_late = \"{v}\""));
            assert_eq!(
                Board::parse(&t, Path::new("b.toml"))
                    .unwrap()
                    .prefetch
                    .on_late,
                want
            );
        }
        let t = host.replace("on_late = \"wait\"", "on_late = \"guess\"");
        let e = Board::parse(&t, Path::new("b.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("experts.on_late") && e.contains("guess") && e.contains("b.toml"),
            "{e}"
        );
        for (bad, field) in [
            ("prefetch = \"always\"", "experts.prefetch"),
            ("io_threads = 0", "experts.io_threads"),
        ] {
            let e = Board::parse(&with(bad), Path::new("b.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field) && e.contains("b.toml"), "{e}");
        }
    }

    #[test]
    fn grounding_is_on_for_the_shipped_boards_and_off_unless_a_board_says() {
        for (name, text) in BUILTIN {
            let b = Board::parse(text, Path::new("b.toml")).unwrap();
            assert!(b.tools.ground_free_strings, "{name}");
        }
        let host = BUILTIN.iter().find(|(n, _)| *n == "host-cpu").unwrap().1;
        let cut = host.find("\n[tools]").unwrap();
        let b = Board::parse(&host[..cut], Path::new("b.toml")).unwrap();
        assert!(!b.tools.ground_free_strings);
        let off = host.replace("ground_free_strings = true", "ground_free_strings = false");
        assert!(
            !Board::parse(&off, Path::new("b.toml"))
                .unwrap()
                .tools
                .ground_free_strings
        );
        let bad = host.replace("ground_free_strings = true", "ground_strings = true");
        let e = Board::parse(&bad, Path::new("b.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ground_strings") && e.contains("b.toml"), "{e}");
    }

    #[test]
    fn unknown_board_lists_known() {
        let e = Board::load("nope").unwrap_err().to_string();
        assert!(e.contains("host-cpu") && e.contains("nope"), "{e}");
    }
}
