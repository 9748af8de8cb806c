//! infertune: tunes the serving configuration of an LLM inference server on the machine that
//! runs it.
//!
//! One trial, end to end (only [`daemon`] wires the stages together; lower modules never import
//! upper ones):
//!
//! ```text
//! search-spaces/*.toml ─► space::Space ─► search::Strategy::propose ─► space::Candidate
//!   ─► backend::Backend::plan ─► backend::LaunchPlan ─► backend::process::Server (spawn, ready)
//!   ─► workload::run ─► Vec<measure::Sample> ─► measure::summarize ─► measure::Summary
//!   ─► measure::judge ─► measure::Verdict ─► trial::Outcome ─► store::Store::finish_trial
//!   ─► search::Strategy::observe ─► … ─► trial::best ─► export::render
//! ```

pub mod backend;
pub mod cli;
pub mod daemon;
pub mod envfile;
pub mod export;
pub mod measure;
pub mod report;
pub mod search;
pub mod shutdown;
pub mod space;
pub mod store;
pub mod trial;
pub mod workload;
