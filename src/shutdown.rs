//! The two cancellation tokens every long stage listens to: "stop after cleanup" and "stop now".
//!
//! `daemon::signal` turns SIGINT/SIGTERM into these; the server session, the workload and the
//! re-measure loops only read them. Owning no signal handling keeps the lower modules free of
//! the daemon.

use tokio_util::sync::CancellationToken;

/// What has been asked for so far.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// First signal: finish cleanly (SIGTERM the server, wait its grace period, record).
    pub graceful: CancellationToken,
    /// Second signal: no more waiting (SIGKILL the server group, record, exit).
    pub now: CancellationToken,
}

impl Shutdown {
    /// Tokens that only a caller cancels (tests, embedding, one-shot commands).
    pub fn manual() -> Shutdown {
        Shutdown::default()
    }

    /// Graceful stop follows `cancel`; "now" is never asked for.
    pub fn following(cancel: &CancellationToken) -> Shutdown {
        Shutdown { graceful: cancel.clone(), now: CancellationToken::new() }
    }

    pub fn is_requested(&self) -> bool {
        self.graceful.is_cancelled()
    }
}
