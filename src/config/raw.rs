//! Raw board files as written by people: serde structs with
//! `deny_unknown_fields`, no checks beyond the types. `board.rs` validates them.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBoard {
    pub name: String,
    pub description: Option<String>,
    pub runtime: RawRuntime,
    pub memory: RawMemory,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub experts: RawExperts,
    #[serde(default)]
    pub offload: RawOffload,
    #[serde(default)]
    pub cascade: RawCascade,
    #[serde(default)]
    pub kv: RawKv,
    #[serde(default)]
    pub tools: RawTools,
    pub ort: Option<RawOrt>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTools {
    /// Copy every free-text string argument from the request (`x-grounded`
    /// unless the schema says `"x-grounded": false`).
    pub ground_free_strings: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawKv {
    /// Bytes for the KV of prompt prefixes shared between requests (0: off).
    pub prefix_cache_mb: Option<f64>,
    /// Tokens per prefix-cache block, which is also the prefill chunk.
    pub block_tokens: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    pub backend: String,
    pub threads: Option<usize>,
    #[serde(default)]
    pub providers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMemory {
    /// Physical memory of the board (CPU and GPU share it on Jetson).
    pub total_mb: u64,
    /// Bytes for resident routed experts.
    pub experts_mb: f64,
    /// Bytes for KV caches of all sequences in flight.
    pub kv_cache_mb: f64,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_context: Option<usize>,
    pub max_concurrent: Option<usize>,
    pub queue_depth: Option<usize>,
    pub max_tokens: Option<usize>,
    pub max_payload_kb: Option<usize>,
    pub requests_per_client_per_sec: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawExperts {
    pub policy: Option<String>,
    /// `auto` (default: on when the experts budget is below the bundle's
    /// experts), `router` or `off`.
    pub prefetch: Option<String>,
    pub io_threads: Option<usize>,
    /// `wait` (default), `low_precision` or `substitute`: an expert whose
    /// read ahead is still on its way.
    pub on_late: Option<String>,
    /// A plan file written by `moe-edge plan` (relative to the bundle).
    pub plan: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawOffload {
    pub enabled: Option<bool>,
    pub timeout_ms: Option<u64>,
    pub on_miss: Option<String>,
    /// Mixed-precision bundles: a miss on the full-precision set whose router
    /// weight is at least this asks the host for full precision (when offload
    /// is enabled) instead of running the low-precision copy locally.
    pub full_precision_above: Option<f32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCascade {
    pub host_url: Option<String>,
    pub host_model: Option<String>,
    pub cloud_url: Option<String>,
    pub cloud_model: Option<String>,
    pub cloud_api_key_env: Option<String>,
    pub timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    /// Retries of a call that never reached the upstream or got 429/503.
    pub retries: Option<u32>,
    pub breaker_failures: Option<u32>,
    pub breaker_cooldown_ms: Option<u64>,
    /// Confidence gate: a local tool call whose least likely token had a
    /// probability below this goes up the cascade (0 or absent: off).
    pub min_confidence: Option<f32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrt {
    pub device_id: Option<i32>,
    pub gpu_mem_limit_mb: Option<u64>,
    pub fp16: Option<bool>,
    pub trt_cache_dir: Option<String>,
    pub allow_cpu_fallback: Option<bool>,
}
