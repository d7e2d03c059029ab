//! Board configuration: `boards/NAME.toml` parsed into raw serde structs
//! (`raw`), then validated once into a typed `Board` (`board`). Errors name
//! the file and the field. Nothing here touches a model or the network.

mod board;
pub mod describe;
mod raw;

pub use board::{
    Board, CascadeConfig, ExpertPolicy, KvConfig, Limits, Memory, OffloadConfig, OnLate, OnMiss,
    Prefetch, PrefetchConfig, BUILTIN as BUILTIN_BOARDS, MAX_QUEUE,
};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("{path}: field `{field}` {msg}")]
    Field {
        path: PathBuf,
        field: &'static str,
        msg: String,
    },
    #[error(
        "unknown board `{name}`: no {path} and no built-in board of that name (built in: {known})"
    )]
    UnknownBoard {
        name: String,
        path: PathBuf,
        known: String,
    },
}
