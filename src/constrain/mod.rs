//! Schema-constrained decoding: each generated token is chosen among those
//! a compiled automaton of the request's schemas allows, so every tool call
//! parses and satisfies its tool's JSON schema, and `response_format`
//! answers are JSON of their schema.
//!
//! Owns: schema → grammar compilation (`grammar`, patterns as NFAs in
//! `pattern`), the byte-level pushdown matcher (`matcher`), the vocabulary as
//! bytes with a byte trie and token masks (`vocab`), the per-generation
//! constraint with the answer's outline and tool_choice (`constraint`), and
//! building a constraint spec from an OpenAI request (`request`), and the
//! substring index grounded strings walk (`substr`).
//! Does not own: sampling (`engine::sampler` takes the mask as a filter),
//! parsing or validating finished output (`chat::toolcall`, `schema`:
//! they still check every reply, constrained or not). Plain synchronous code.

pub mod constraint;
pub mod grammar;
pub mod matcher;
pub mod pattern;
pub mod request;
pub mod substr;
pub mod vocab;

#[cfg(test)]
mod tests;

pub use constraint::{Constraint, MaskStats, Spec};
pub use grammar::Grammar;
pub use vocab::{Mask, Vocab};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConstrainError {
    /// The schema cannot be compiled (the message names the keyword or tool).
    #[error("cannot constrain to this schema: {0}")]
    Schema(String),
    /// The tokenizer does not fit (not byte-level, markers not single tokens).
    #[error("cannot constrain with this tokenizer: {0}")]
    Vocab(String),
    /// A token the constraint does not allow was fed.
    #[error("token {token} is not allowed at {at}")]
    Refused { token: u32, at: String },
}
