//! The resolved plan of a board (and optionally a bundle) as a person reads
//! it before deploying: backend and execution providers, threads, how the
//! board's memory is split (resident experts / KV cache / ONNX Runtime's GPU
//! arena / the rest), how many of the bundle's experts fit the expert budget,
//! how many full-context sequences fit the KV budget, limits, offload and
//! cascade. Printed by `moe-edge boards` and `moe-edge serve --dry-run`.
//! Reads only the bundle's manifest (no graph is loaded, nothing is checked
//! beyond it); changes nothing.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::board::{Board, ExpertPolicy, OnLate, OnMiss, Prefetch};
use crate::bundle::{BundleError, Manifest};
use crate::runtime::BackendKind;

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub board: String,
    pub source: String,
    pub description: String,
    pub backend: String,
    pub threads: usize,
    /// Execution providers in order of preference (ort); `["cpu"]` for tract.
    pub providers: Vec<String>,
    /// ort only: where libonnxruntime.so comes from.
    pub ort: Option<OrtPlan>,
    pub memory: MemoryPlan,
    pub bundle: Option<BundlePlan>,
    pub limits: LimitsPlan,
    pub experts_policy: String,
    pub residency_plan: Option<String>,
    /// Reads ahead: mode, I/O threads, and what a late one gets.
    pub reads_ahead: String,
    pub offload: String,
    pub cascade: Vec<String>,
    /// Things that will not work as configured, or that waste memory.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrtPlan {
    pub dylib: String,
    pub device_id: i32,
    pub gpu_mem_limit_bytes: Option<u64>,
    pub fp16: bool,
    pub trt_cache_dir: Option<String>,
    pub allow_cpu_fallback: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryPlan {
    pub total_bytes: u64,
    pub experts_bytes: u64,
    pub kv_cache_bytes: u64,
    /// KV of prompt prefixes shared between requests (`[kv] prefix_cache_mb`).
    pub prefix_cache_bytes: u64,
    /// ONNX Runtime's CUDA arena (dense graphs, activations); Jetson memory is
    /// shared, so it comes out of the same total.
    pub gpu_arena_bytes: u64,
    /// What is left for the OS, the runtime libraries and the dense weights.
    pub rest_bytes: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BundlePlan {
    pub dir: String,
    pub model_id: String,
    pub architecture: String,
    pub layers: usize,
    pub experts_per_layer: usize,
    pub top_k: usize,
    /// Routed experts the bundle carries.
    pub experts_total: usize,
    pub expert_bytes: u64,
    /// Experts the expert budget holds at once (at most `experts_total`).
    pub experts_fit: usize,
    pub dense_graph_bytes: u64,
    /// KV cache bytes per token (f32 keys and values of every layer).
    pub kv_bytes_per_token: u64,
    /// Context the engine uses: the smaller of the board's and the model's.
    pub max_context: usize,
    /// Sequences at full context the KV budget holds.
    pub kv_full_sequences: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitsPlan {
    pub max_context: usize,
    pub max_concurrent: usize,
    pub queue_depth: usize,
    pub max_tokens: usize,
    pub max_payload_bytes: usize,
    pub requests_per_client_per_sec: f64,
}

fn mib(b: u64) -> String {
    let m = b as f64 / MIB;
    if m >= 10240.0 {
        format!("{:.1} GiB", m / 1024.0)
    } else if m >= 10.0 {
        format!("{m:.0} MiB")
    } else {
        format!("{m:.2} MiB")
    }
}

/// Names of the boards built into the binary (`boards/*.toml`).
pub fn builtin_boards() -> Vec<&'static str> {
    super::board::BUILTIN.iter().map(|(n, _)| *n).collect()
}

/// The plan of `board`, with the bundle at `bundle` when given.
/// The plans of one board (a name or a `.toml` path) or of every built-in
/// board, with a bundle's expert counts when given.
pub fn describe_boards(
    board: Option<&str>,
    bundle: Option<&Path>,
) -> Result<Vec<Plan>, crate::Error> {
    let names: Vec<String> = match board {
        Some(b) => vec![b.to_string()],
        None => builtin_boards().into_iter().map(String::from).collect(),
    };
    let mut plans = Vec::new();
    for name in &names {
        plans.push(dry_run(&Board::load(name)?, bundle)?);
    }
    Ok(plans)
}

pub fn dry_run(board: &Board, bundle: Option<&Path>) -> Result<Plan, BundleError> {
    let manifest = match bundle {
        Some(dir) => {
            let path = dir.join("manifest.json");
            let text = std::fs::read_to_string(&path).map_err(|e| BundleError::io(&path, e))?;
            Some((dir, Manifest::from_json(&text, &path)?))
        }
        None => None,
    };
    Ok(describe(board, manifest.as_ref().map(|(d, m)| (*d, m))))
}

/// The plan of `board` with an already parsed manifest.
pub fn describe(board: &Board, bundle: Option<(&Path, &Manifest)>) -> Plan {
    let b = &board.backend;
    let mut warnings = Vec::new();
    let is_ort = b.kind == BackendKind::Ort;
    let providers = if b.ort.providers.is_empty() {
        vec!["cpu".to_string()]
    } else {
        b.ort.providers.clone()
    };
    let gpu = is_ort && providers.iter().any(|p| p != "cpu");
    let ort = is_ort.then(|| {
        let dylib = match (&b.ort.dylib, std::env::var("ORT_DYLIB_PATH")) {
            (Some(p), _) => p.display().to_string(),
            (None, Ok(p)) if !p.is_empty() => format!("{p} (ORT_DYLIB_PATH)"),
            _ => "libonnxruntime.so from the loader path (ORT_DYLIB_PATH is not set)".to_string(),
        };
        OrtPlan {
            dylib,
            device_id: b.ort.device_id,
            gpu_mem_limit_bytes: b.ort.gpu_mem_limit.map(|x| x as u64),
            fp16: b.ort.fp16,
            trt_cache_dir: b
                .ort
                .trt_cache_dir
                .as_ref()
                .map(|p| p.display().to_string()),
            allow_cpu_fallback: b.ort.allow_cpu_fallback,
        }
    });
    if gpu && b.ort.gpu_mem_limit.is_none() {
        warnings.push(
            "no [ort] gpu_mem_limit_mb: ONNX Runtime's CUDA arena may grow into the expert budget"
                .into(),
        );
    }
    if providers.iter().any(|p| p == "tensorrt") && b.ort.trt_cache_dir.is_none() {
        warnings.push(
            "TensorRT without [ort] trt_cache_dir rebuilds its engines on every start (minutes)"
                .into(),
        );
    }

    let m = &board.memory;
    let gpu_arena = if gpu {
        b.ort.gpu_mem_limit.unwrap_or(0) as u64
    } else {
        0
    };
    let prefix = board.kv.prefix_cache_bytes;
    let rest = m.total_bytes as i64
        - m.experts_bytes as i64
        - m.kv_cache_bytes as i64
        - prefix as i64
        - gpu_arena as i64;
    if rest < 0 {
        warnings.push(format!(
            "experts + KV cache + prefix cache + GPU arena exceed the board's memory by {}",
            mib((-rest) as u64)
        ));
    } else if (rest as u64) < m.total_bytes / 8 {
        warnings.push(format!(
            "only {} (< 1/8 of the board) left for the OS, runtime libraries and dense weights",
            mib(rest as u64)
        ));
    }

    let l = &board.limits;
    let bundle = bundle.map(|(dir, man)| {
        let a = &man.architecture;
        let experts_total = match &man.experts.present {
            Some(p) => p.iter().map(|l| l.len()).sum(),
            None => a.num_layers * a.num_experts,
        };
        let expert_bytes = man.experts.expert_bytes as u64;
        let experts_fit = m
            .experts_bytes
            .checked_div(expert_bytes)
            .map_or(experts_total, |n| (n as usize).min(experts_total));
        let graph_files: Vec<&str> = std::iter::once(man.graphs.embed.as_str())
            .chain(man.graphs.layers.iter().map(|s| s.as_str()))
            .chain(std::iter::once(man.graphs.head.as_str()))
            .collect();
        let dense_graph_bytes = man
            .files
            .iter()
            .filter(|f| graph_files.contains(&f.path.as_str()))
            .map(|f| f.size)
            .sum::<u64>();
        let kv_bytes_per_token = (2 * a.num_layers * a.num_kv_heads * a.head_dim * 4) as u64;
        let max_context = l.max_context.min(a.max_context);
        let per_seq = kv_bytes_per_token * max_context as u64;
        let kv_full_sequences = m.kv_cache_bytes.checked_div(per_seq).unwrap_or(0) as usize;
        if kv_full_sequences < l.max_concurrent {
            warnings.push(format!(
                "the KV budget holds {kv_full_sequences} sequences of {max_context} tokens, fewer than max_concurrent = {}",
                l.max_concurrent
            ));
        }
        if experts_fit < experts_total && board.policy == ExpertPolicy::Pinned && board.plan.is_none() {
            warnings.push(format!(
                "policy `pinned` without a residency plan: only {experts_fit} of {experts_total} experts fit; \
                 run `moe-edge plan` for this board"
            ));
        }
        if experts_fit < experts_total && !board.offload.enabled && board.offload.on_miss == OnMiss::Escalate {
            warnings.push("experts that do not fit have no route: offload is off and on_miss = escalate".into());
        }
        if rest >= 0 && (rest as u64) < dense_graph_bytes {
            warnings.push(format!(
                "the dense graphs ({}) do not fit in what is left ({})",
                mib(dense_graph_bytes),
                mib(rest as u64)
            ));
        }
        BundlePlan {
            dir: dir.display().to_string(),
            model_id: man.model_id.clone(),
            architecture: a.hf_architecture.clone(),
            layers: a.num_layers,
            experts_per_layer: a.num_experts,
            top_k: a.top_k,
            experts_total,
            expert_bytes,
            experts_fit,
            dense_graph_bytes,
            kv_bytes_per_token,
            max_context,
            kv_full_sequences,
        }
    });

    let c = &board.cascade;
    let mut device = Vec::new();
    if c.min_confidence > 0.0 {
        device.push(format!("calls below p={} go up", c.min_confidence));
    }
    if board.tools.ground_free_strings {
        device.push("free-text arguments copied from the request".to_string());
    }
    let mut cascade = vec![if device.is_empty() {
        "device".to_string()
    } else {
        format!("device ({})", device.join(", "))
    }];
    if let Some(h) = &c.host_url {
        cascade.push(format!(
            "host {h}{}",
            c.host_model
                .as_ref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ));
    }
    if let Some(u) = &c.cloud_url {
        let key = match &c.cloud_api_key_env {
            Some(k) if std::env::var_os(k).is_some() => format!(", key from ${k} (set)"),
            Some(k) => format!(", key from ${k} (NOT set)"),
            None => String::new(),
        };
        cascade.push(format!(
            "cloud {u}{}{key}",
            c.cloud_model
                .as_ref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ));
    }
    let offload = if board.offload.enabled {
        format!(
            "remote experts on, timeout {} ms, on miss: {}",
            board.offload.timeout.as_millis(),
            match board.offload.on_miss {
                OnMiss::Substitute => "substitute",
                OnMiss::Escalate => "escalate",
            }
        )
    } else {
        format!(
            "off (experts not resident are paged in from the bundle; on miss: {})",
            match board.offload.on_miss {
                OnMiss::Substitute => "substitute",
                OnMiss::Escalate => "escalate",
            }
        )
    };

    Plan {
        board: board.name.clone(),
        source: board.source.clone(),
        description: board.description.clone(),
        backend: b.kind.to_string(),
        threads: b.threads,
        providers: if is_ort {
            providers
        } else {
            vec!["cpu".into()]
        },
        ort,
        memory: MemoryPlan {
            total_bytes: m.total_bytes,
            experts_bytes: m.experts_bytes,
            kv_cache_bytes: m.kv_cache_bytes,
            prefix_cache_bytes: prefix,
            gpu_arena_bytes: gpu_arena,
            rest_bytes: rest,
        },
        bundle,
        limits: LimitsPlan {
            max_context: l.max_context,
            max_concurrent: l.max_concurrent,
            queue_depth: l.queue_depth,
            max_tokens: l.max_tokens,
            max_payload_bytes: l.max_payload_bytes,
            requests_per_client_per_sec: l.requests_per_client_per_sec,
        },
        experts_policy: match board.policy {
            ExpertPolicy::Lru => "lru",
            ExpertPolicy::Lfu => "lfu",
            ExpertPolicy::Pinned => "pinned",
            ExpertPolicy::Predictive => "predictive",
        }
        .into(),
        residency_plan: board.plan.clone(),
        reads_ahead: {
            let p = &board.prefetch;
            let mode = match p.mode {
                Prefetch::Auto => "auto (on when the budget holds fewer experts than the bundle)",
                Prefetch::Router => "on",
                Prefetch::Off => "off",
            };
            let late = match p.on_late {
                OnLate::Wait => "waits for it (exact)",
                OnLate::LowPrecision => {
                    "takes its low-precision copy when the bundle has one, else waits"
                }
                OnLate::Substitute => "takes the best resident experts instead (not exact)",
            };
            format!(
                "{mode}, {} I/O threads; a layer whose read ahead is late {late}",
                p.io_threads
            )
        },
        offload,
        cascade,
        warnings,
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "board      {} ({})", self.board, self.source)?;
        if !self.description.is_empty() {
            writeln!(f, "           {}", self.description)?;
        }
        writeln!(
            f,
            "backend    {}, {} threads, providers: {}",
            self.backend,
            self.threads,
            self.providers.join(" > ")
        )?;
        if let Some(o) = &self.ort {
            writeln!(f, "ort        library: {}", o.dylib)?;
            write!(
                f,
                "           device {}, fp16 {}",
                o.device_id,
                if o.fp16 { "on" } else { "off" }
            )?;
            if let Some(d) = &o.trt_cache_dir {
                write!(f, ", TensorRT caches in {d}")?;
            }
            writeln!(
                f,
                ", provider failure: {}",
                if o.allow_cpu_fallback {
                    "warn and run on the CPU"
                } else {
                    "error"
                }
            )?;
        }
        let m = &self.memory;
        let pct = |b: u64| 100.0 * b as f64 / m.total_bytes.max(1) as f64;
        writeln!(f, "memory     {} total", mib(m.total_bytes))?;
        writeln!(
            f,
            "           experts   {:>10}  {:5.1} %",
            mib(m.experts_bytes),
            pct(m.experts_bytes)
        )?;
        writeln!(
            f,
            "           KV cache  {:>10}  {:5.1} %",
            mib(m.kv_cache_bytes),
            pct(m.kv_cache_bytes)
        )?;
        writeln!(
            f,
            "           prefixes  {:>10}  {:5.1} %",
            mib(m.prefix_cache_bytes),
            pct(m.prefix_cache_bytes)
        )?;
        if m.gpu_arena_bytes > 0 {
            writeln!(
                f,
                "           GPU arena {:>10}  {:5.1} %",
                mib(m.gpu_arena_bytes),
                pct(m.gpu_arena_bytes)
            )?;
        }
        if m.rest_bytes >= 0 {
            writeln!(
                f,
                "           rest      {:>10}  {:5.1} %  (OS, runtime libraries, dense weights)",
                mib(m.rest_bytes as u64),
                pct(m.rest_bytes as u64)
            )?;
        } else {
            writeln!(
                f,
                "           rest      over by {}",
                mib((-m.rest_bytes) as u64)
            )?;
        }
        if let Some(b) = &self.bundle {
            writeln!(
                f,
                "bundle     {} ({}) in {}",
                b.model_id, b.architecture, b.dir
            )?;
            writeln!(
                f,
                "           {} layers x {} experts (top-{}), {} routed experts of {} each, dense graphs {}",
                b.layers,
                b.experts_per_layer,
                b.top_k,
                b.experts_total,
                mib(b.expert_bytes),
                mib(b.dense_graph_bytes)
            )?;
            writeln!(
                f,
                "experts    {} of {} fit the expert budget ({:.1} %), policy {}{}",
                b.experts_fit,
                b.experts_total,
                100.0 * b.experts_fit as f64 / b.experts_total.max(1) as f64,
                self.experts_policy,
                self.residency_plan
                    .as_ref()
                    .map(|p| format!(", plan {p}"))
                    .unwrap_or_default()
            )?;
            writeln!(
                f,
                "KV cache   {} per token; {} sequences of {} tokens fit",
                mib(b.kv_bytes_per_token),
                b.kv_full_sequences,
                b.max_context
            )?;
        } else {
            writeln!(
                f,
                "experts    policy {}{} (give --bundle DIR to see how many fit)",
                self.experts_policy,
                self.residency_plan
                    .as_ref()
                    .map(|p| format!(", plan {p}"))
                    .unwrap_or_default()
            )?;
        }
        writeln!(f, "reads      ahead {}", self.reads_ahead)?;
        let l = &self.limits;
        writeln!(
            f,
            "limits     context {}, {} concurrent, queue {}, max_tokens {}, payload {} KiB, {} req/s per client",
            l.max_context,
            l.max_concurrent,
            l.queue_depth,
            l.max_tokens,
            l.max_payload_bytes / 1024,
            l.requests_per_client_per_sec
        )?;
        writeln!(f, "offload    {}", self.offload)?;
        writeln!(f, "cascade    {}", self.cascade.join(" -> "))?;
        for w in &self.warnings {
            writeln!(f, "warning    {w}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::board::BUILTIN;

    #[test]
    fn every_builtin_board_describes_without_warnings() {
        for (name, _) in BUILTIN {
            let b = Board::load(name).unwrap();
            let p = dry_run(&b, None).unwrap();
            assert!(p.warnings.is_empty(), "{name}: {:?}", p.warnings);
            assert!(p.memory.rest_bytes > 0, "{name}");
            let text = p.to_string();
            assert!(text.contains(name) && text.contains("experts"), "{text}");
        }
    }

    #[test]
    fn jetson_plan_names_providers_and_arena() {
        let b = Board::load("jetson-orin-nano-8gb").unwrap();
        let p = dry_run(&b, None).unwrap();
        assert_eq!(p.backend, "ort");
        assert_eq!(p.providers, ["tensorrt", "cuda", "cpu"]);
        assert!(p.memory.gpu_arena_bytes > 0);
        assert_eq!(
            p.memory.total_bytes as i64,
            (p.memory.experts_bytes
                + p.memory.kv_cache_bytes
                + p.memory.prefix_cache_bytes
                + p.memory.gpu_arena_bytes) as i64
                + p.memory.rest_bytes
        );
        let text = p.to_string();
        assert!(
            text.contains("tensorrt > cuda > cpu") && text.contains("GPU arena"),
            "{text}"
        );
    }

    #[test]
    fn missing_bundle_names_the_manifest() {
        let b = Board::load("host-cpu").unwrap();
        let e = dry_run(&b, Some(Path::new("/nonexistent/bundle")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/bundle/manifest.json"), "{e}");
    }
}
