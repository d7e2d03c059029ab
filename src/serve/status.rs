//! The retained status message on `moe-edge/{device}/status`, pure.
//!
//! Owns: its JSON shape ([`Status`]) and the live figures it reports
//! ([`Load`]). Does not own: publishing or its rate limit (`serve::daemon`
//! publishes a new status when [`Load`] changes, at most once per
//! `ServeConfig::status_interval`, and the offline one as last will and at
//! shutdown).

use serde::{Deserialize, Serialize};

use crate::engine::prefix::PrefixStats;

/// `online` / `offline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Online,
    Offline,
}

/// Figures that change while serving.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    pub queue_depth: usize,
    pub active: usize,
    /// False once shutdown started.
    pub accepting: bool,
}

/// The engine's figures a status reports.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineFigures {
    pub resident_experts: usize,
    pub prefix_cache: PrefixStats,
}

impl EngineFigures {
    pub fn of(engine: &crate::engine::Engine) -> EngineFigures {
        EngineFigures {
            resident_experts: engine.model.resident_experts(),
            prefix_cache: engine.prefix_stats(),
        }
    }
}

/// The status body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub state: State,
    pub device: String,
    pub model: String,
    pub board: String,
    pub version: String,
    pub resident_experts: usize,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub active: usize,
    pub max_concurrent: usize,
    pub accepting: bool,
    /// The prefix cache: blocks held, budget, lookups and reused tokens.
    #[serde(default)]
    pub prefix_cache: PrefixStats,
    /// Share of prompt tokens looked up whose KV was reused.
    #[serde(default)]
    pub prefix_hit_rate: f64,
    /// The topic requests go to.
    pub requests: String,
    /// Seconds since the Unix epoch when this status was made.
    pub ts: u64,
}

/// The parts of a status that do not change.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusBase {
    pub device: String,
    pub model: String,
    pub board: String,
    pub queue_capacity: usize,
    pub max_concurrent: usize,
    pub requests: String,
}

impl StatusBase {
    pub fn status(&self, state: State, load: Load, engine: EngineFigures) -> Status {
        Status {
            state,
            device: self.device.clone(),
            model: self.model.clone(),
            board: self.board.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            resident_experts: engine.resident_experts,
            queue_depth: load.queue_depth,
            queue_capacity: self.queue_capacity,
            active: load.active,
            max_concurrent: self.max_concurrent,
            accepting: state == State::Online && load.accepting,
            prefix_cache: engine.prefix_cache,
            prefix_hit_rate: engine.prefix_cache.token_hit_rate(),
            requests: self.requests.clone(),
            ts: crate::openai::unix_now(),
        }
    }
}

impl Status {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("status serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_shape() {
        let base = StatusBase {
            device: "car-1".into(),
            model: "assist-moe".into(),
            board: "host-cpu".into(),
            queue_capacity: 32,
            max_concurrent: 4,
            requests: "moe-edge/car-1/v1/chat/completions".into(),
        };
        let load = Load {
            queue_depth: 3,
            active: 1,
            accepting: true,
        };
        let figures = EngineFigures {
            resident_experts: 12,
            prefix_cache: PrefixStats {
                prompt_tokens: 200,
                reused_tokens: 150,
                ..PrefixStats::default()
            },
        };
        let v = serde_json::to_value(base.status(State::Online, load, figures)).unwrap();
        assert_eq!(v["prefix_hit_rate"], 0.75);
        assert_eq!(v["prefix_cache"]["reused_tokens"], 150);
        assert_eq!(v["state"], "online");
        assert_eq!(v["queue_depth"], 3);
        assert_eq!(v["resident_experts"], 12);
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        let off = base.status(State::Offline, load, figures);
        assert!(!off.accepting);
        let back: Status = serde_json::from_slice(&off.to_bytes()).unwrap();
        assert_eq!(back.state, State::Offline);
    }
}
