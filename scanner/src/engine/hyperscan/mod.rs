//! Hyperscan (or Vectorscan) as stage one. The regex translation
//! ([`pattern`]) is pure Rust and always built; the C library's bindings
//! ([`ffi`]), the compiled database ([`matcher`]) and its on-disk cache
//! ([`cache`]) need the `hyperscan` feature.

#[cfg(feature = "hyperscan")]
mod cache;
#[cfg(feature = "hyperscan")]
mod ffi;
#[cfg(feature = "hyperscan")]
mod matcher;
// Without the feature only the tests use the translation.
#[cfg_attr(not(feature = "hyperscan"), allow(dead_code))]
mod pattern;

#[cfg(feature = "hyperscan")]
pub(super) use ffi::version;
#[cfg(feature = "hyperscan")]
pub(super) use matcher::{Matcher, Origin, ScanScratch};

/// Why Hyperscan is not used (the Rust stage one runs instead, or, when
/// Hyperscan was demanded, the engine is not built).
#[derive(Debug, thiserror::Error)]
pub enum HyperscanError {
    #[error(
        "this keyburn was built without the hyperscan feature (cargo build --features hyperscan)"
    )]
    NotBuiltIn,
    #[error("this CPU lacks the instructions Hyperscan needs (SSSE3)")]
    UnsupportedCpu,
    #[error("cannot compile the keyword database: {0}")]
    Compile(String),
    #[error("cannot allocate Hyperscan scratch space (error {0})")]
    Scratch(i32),
    #[error("cannot start the thread that builds the database: {0}")]
    Thread(String),
}
