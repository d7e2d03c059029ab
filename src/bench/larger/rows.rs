//! One measured configuration of `bench larger`, run in its own process (the
//! parent puts it in the memory cgroup): load the bundle with the daemon's
//! full check, time the load, then decode a fixed token stream one token at
//! a time with the KV cache. The stream is real text (the test split's
//! commands) fed token by token, not the model's own greedy output: a
//! random model's greedy text repeats one token and would route every step
//! to the same experts. Each step's argmax is kept, so the parent can check
//! that paging and prediction change no result.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::super::{peak_rss_bytes, percentile, BenchError};
use crate::bundle::Verify;
use crate::config::Board;
use crate::engine::model::StepTimes;
use crate::engine::sampler::argmax;
use crate::engine::{Engine, ExpertCounts};
use crate::experts::prefetch::PrefetchStats;
use crate::experts::CacheStats;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecodeRun {
    /// Process start (as the parent measured it) to the engine loaded.
    pub load_ms: f64,
    /// The first token's forward after the load (pages its experts in).
    pub first_token_ms: f64,
    pub prompt_tokens: usize,
    pub warmup_tokens: usize,
    pub decode_tokens: usize,
    pub decode_tok_s: f64,
    pub ms_per_token_p50: f64,
    pub ms_per_token_p99: f64,
    pub remote_wait_ms_per_token: f64,
    /// Remote expert calls (layer steps with a miss sent to a host) per token.
    pub remote_calls_per_token: f64,
    pub counts: ExpertCounts,
    pub cache: CacheStats,
    pub hit_rate: f64,
    pub prefetch: Option<PrefetchStats>,
    /// Per layer: share of routed experts the prediction named (layer 0: null).
    pub predict_accuracy: Option<Vec<Option<f64>>>,
    pub predict_overall: Option<f64>,
    pub peak_rss_mb: f64,
    /// Argmax of every decode step.
    pub argmax: Vec<u32>,
    /// The top logit's lead over the second at every step (how close a tie is).
    pub margin: Vec<f32>,
}

/// The token stream: the test split's user messages, tokenized one after
/// another, until `n` tokens.
pub fn text_tokens(engine: &Engine, text: &Path, n: usize) -> Result<Vec<u32>, BenchError> {
    let ex = crate::eval::read_examples(text)?;
    let mut ids = Vec::with_capacity(n);
    for e in &ex {
        for m in &e.messages {
            let Some(c) = &m.content else { continue };
            ids.extend(engine.encode(&c.text())?);
            if ids.len() >= n {
                ids.truncate(n);
                return Ok(ids);
            }
        }
    }
    Err(BenchError::Other(format!(
        "{}: only {} tokens of text, {n} wanted",
        text.display(),
        ids.len()
    )))
}

/// Connects the engine's misses to the hosts on `url` (waits until one answers).
pub fn connect_remote(
    engine: &mut Engine,
    url: &str,
    timeout: std::time::Duration,
    hints: bool,
) -> Result<(crate::experts::remote::MqttRemote, tokio::runtime::Runtime), BenchError> {
    use crate::experts::remote::{MqttRemote, RemoteConfig};
    let other = |e: &dyn std::fmt::Display| BenchError::Other(e.to_string());
    let rt = crate::process::runtime(1).map_err(|e| other(&e))?;
    let name = format!("bench-larger-{}", std::process::id());
    let mut cfg = RemoteConfig::new(
        &engine.model.manifest,
        crate::wire::DeviceId::new(&name).map_err(|e| other(&e))?,
        timeout,
    )
    .map_err(|e| other(&e))?;
    cfg.hints = hints;
    let mqtt = crate::transport::MqttConfig::from_url(url, &name).map_err(|e| other(&e))?;
    let remote = rt
        .block_on(MqttRemote::connect(mqtt, cfg, std::future::pending()))
        .map_err(|e| other(&e))?;
    remote
        .probe(std::time::Duration::from_secs(60))
        .map_err(|e| other(&e))?;
    engine
        .model
        .set_remote(Some(std::sync::Arc::new(remote.clone())));
    Ok((remote, rt))
}

/// Load with the daemon's full check (timed from `load_clock`).
pub fn load(
    bundle: &Path,
    board: &Board,
    load_clock: Instant,
) -> Result<(Engine, f64), BenchError> {
    let engine = Engine::load(bundle, board, Verify::Full)?;
    Ok((engine, load_clock.elapsed().as_secs_f64() * 1e3))
}

/// Decode `decode` tokens after a `prompt`-token prefix; `remote_calls`
/// reads the remote client's call counter (0 without one).
pub fn decode(
    engine: &Engine,
    load_ms: f64,
    text: &Path,
    prompt: usize,
    warmup: usize,
    decode: usize,
    remote_calls: &dyn Fn() -> u64,
) -> Result<DecodeRun, BenchError> {
    let m = &engine.model;
    let ids = text_tokens(engine, text, prompt + warmup + decode)?;
    let mut kv = m.new_kv();
    let (mut c, mut t) = (ExpertCounts::default(), StepTimes::default());
    let clock = Instant::now();
    m.forward(&mut kv, &ids[..1], false, &mut c, &mut t, None)?;
    let first_token_ms = clock.elapsed().as_secs_f64() * 1e3;
    if prompt > 1 {
        m.forward(&mut kv, &ids[1..prompt], false, &mut c, &mut t, None)?;
    }
    // Warm-up steps on other tokens than the measured ones.
    for &id in &ids[prompt..prompt + warmup] {
        m.forward(&mut kv, &[id], false, &mut c, &mut t, None)?;
    }
    let (mut c, mut t) = (ExpertCounts::default(), StepTimes::default());
    let remote_before = remote_calls();
    let mut per = Vec::with_capacity(decode);
    let mut out = Vec::with_capacity(decode);
    let mut margin = Vec::with_capacity(decode);
    let clock = Instant::now();
    for &id in &ids[prompt + warmup..] {
        let s = Instant::now();
        let l = m.forward(&mut kv, &[id], false, &mut c, &mut t, None)?;
        per.push(s.elapsed().as_secs_f64() * 1e3);
        let v = l.as_f32().unwrap_or(&[]);
        let top = argmax(v);
        out.push(top);
        let second = v
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != top as usize)
            .map(|(_, &x)| x)
            .fold(f32::NEG_INFINITY, f32::max);
        margin.push(v.get(top as usize).copied().unwrap_or(0.0) - second);
    }
    let secs = clock.elapsed().as_secs_f64();
    let n = decode.max(1) as f64;
    let pf = m.prefetch_stats();
    Ok(DecodeRun {
        load_ms,
        first_token_ms,
        prompt_tokens: prompt,
        warmup_tokens: warmup,
        decode_tokens: decode,
        decode_tok_s: if decode == 0 {
            0.0
        } else {
            decode as f64 / secs
        },
        ms_per_token_p50: percentile(&per, 50.0),
        ms_per_token_p99: percentile(&per, 99.0),
        remote_wait_ms_per_token: t.remote_wait_us as f64 / 1e3 / n,
        remote_calls_per_token: (remote_calls() - remote_before) as f64 / n,
        counts: c,
        hit_rate: m.cache_stats().hit_rate(),
        cache: m.cache_stats(),
        prefetch: pf.as_ref().map(|p| p.1),
        predict_accuracy: pf.as_ref().map(|p| p.0.accuracy()),
        predict_overall: pf.as_ref().map(|p| p.0.overall()),
        peak_rss_mb: peak_rss_bytes().unwrap_or(0) as f64 / (1 << 20) as f64,
        argmax: out,
        margin,
    })
}
