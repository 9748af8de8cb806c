//! infertune: tunes the serving configuration of an LLM inference server on the machine that
//! runs it.
//!
//! One trial, end to end (only [`daemon`] wires the stages together; lower modules never import
//! upper ones). Read the signatures from `daemon::tune` down:
//!
//! ```text
//! search-spaces/*.toml ─► space::Space::load ─► search::Strategy::propose ─► space::Candidate
//!   ─► daemon::pipeline::run_trial:
//!        backend::Backend::plan ─► backend::LaunchPlan
//!        ─► backend::session::ServerSession::start (spawn | service restart | reuse | reload,
//!           ready, preload) ─► workload::Target
//!        ─► measure::probe::Probe::start ─► workload::prune::run (or search::capacity::find
//!           over load levels) ─► Vec<measure::Sample> ─► Probe::finish ─► measure::probe::ServerSide
//!        ─► ServerSession::crash_after_workload ─► measure::summarize_trial ─► measure::Summary
//!        ─► measure::judge ─► measure::Verdict ─► trial::Outcome
//!   ─► store::Store::finish_trial ─► search::Strategy::observe (per-point means)
//!   ─► daemon::intensify::next (re-measure the challenger or incumbent, else propose) ─► …
//!   ─► trial::winner (validated, else intensified incumbent)
//!   ─► export::render (env, args, json, systemd, modelfile, compose, yaml)
//!   ─► daemon::apply (deploy::file write + backup, restart, canary judged by deploy::rule, rollback)
//!   ─► daemon::watch (live measurement, fingerprint, deploy::textfile, re-tune)
//! ```
//!
//! Layers, lowest first: `shutdown`, `envfile`, `measure`, `space`, `workload`, `capture`, `backend`,
//! `trial`, `search`, `store`, `export`, `deploy`, `report`, `daemon`, `cli`.

pub mod backend;
pub mod capture;
pub mod cli;
pub mod daemon;
pub mod deploy;
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
