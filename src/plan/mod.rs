//! Expert planning (`moe-edge plan`): routing statistics over calibration
//! requests (`stats`), the choice of resident experts under a board's budget
//! (`select`), the plan file (`file`) and the pruned bundle a board carries
//! (`device_bundle`).
//! Running the model is the engine's; this module only observes it.

pub mod device_bundle;
pub mod file;
pub mod run;
pub mod select;
pub mod stats;

pub use run::{calib_prompts, PlanOptions, PlanReport};
pub use select::{select, Selection};
pub use stats::{collect, RoutingStats};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    #[error(transparent)]
    Experts(#[from] crate::experts::ExpertError),
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    #[error("{0}")]
    Invalid(String),
}
