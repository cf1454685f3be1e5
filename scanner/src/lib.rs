//! keyburn-scanner finds leaked credentials in bytes, files and trees, offline.
//!
//! The crate is layered like a pipeline: [`rules`] loads and validates rule
//! files, [`engine`] compiles them into a two-stage matcher (keyword prefilter,
//! then regex confirmation and post-filters), [`sources`] feeds it bytes from
//! the filesystem or stdin, and [`report`] turns findings into human, JSON,
//! JSONL or SARIF output. Nothing here touches the network.

pub mod engine;
pub mod finding;
pub mod report;
pub mod rules;
pub mod sources;

pub use engine::{Engine, EngineBuilder, RawMatch};
pub use finding::{Finding, Location};
pub use rules::{Confidence, Rule, RuleError, RuleSet};
