//! Operating what was tuned (issue 19): the parts of `apply` and `watch` that need no server.
//!
//! - [`target`]: where a configuration is deployed (an env file or a systemd drop-in, the argv
//!   that restarts the service, and the URL it answers at) and the file's text;
//! - [`file`]: the deployed file's atomic replacement with the owner and mode of the file it
//!   replaces, its backup, and the diff `--dry-run` prints;
//! - [`rule`]: the written-down rule that keeps a canary or rolls it back, and that calls a
//!   watch measurement a regression, with its bootstrap 95 % CI;
//! - [`textfile`]: the Prometheus textfile-collector file `watch --textfile` writes.
//!
//! What it does not own: restarting, measuring and recording (the daemon wires those:
//! `daemon::apply`, `daemon::watch`), and the SQL (`store`).

pub mod file;
pub mod rule;
pub mod target;
pub mod textfile;

pub use rule::{Call, Judgement, Reference};
pub use target::DeployTarget;
