//! Residency plans (written by `moe-edge plan`): which experts a board keeps,
//! most valuable first. Reading and writing only; choosing is `plan`'s job.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::EngineError;
use crate::experts::ExpertId;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    pub format: u32,
    pub model_id: String,
    pub board: String,
    pub budget_bytes: u64,
    /// (layer, expert) in priority order.
    pub experts: Vec<(u16, u16)>,
    /// Per layer, the experts kept (sorted), for reading by people.
    pub per_layer: Vec<Vec<u16>>,
}

pub fn read_plan(path: &Path) -> Result<Vec<ExpertId>, EngineError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EngineError::Bundle(format!("{}: {e}", path.display())))?;
    let plan: PlanFile = serde_json::from_str(&text)
        .map_err(|e| EngineError::Bundle(format!("{}: invalid plan: {e}", path.display())))?;
    Ok(plan.experts)
}
