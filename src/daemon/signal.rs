//! SIGINT/SIGTERM as messages, never as exits: the first asks the loop to stop after cleanup
//! (stop the server, record the trial as interrupted), the second to stop now (kill the server
//! group without a grace period). Either way the process returns through `main`.

use tokio::signal::unix::{SignalKind, signal};

pub use crate::shutdown::Shutdown;

impl Shutdown {
    /// Listen for SIGINT and SIGTERM for the life of the runtime.
    pub fn listen() -> std::io::Result<Shutdown> {
        Shutdown::listen_saying(
            "signal: stopping after cleanup (the running trial is recorded as interrupted); send again to stop now",
        )
    }

    /// [`Shutdown::listen`], printing `first` on the first signal (what stopping cleanly means
    /// for the command at hand).
    pub fn listen_saying(first: &'static str) -> std::io::Result<Shutdown> {
        let shutdown = Shutdown::default();
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let s = shutdown.clone();
        tokio::spawn(async move {
            let mut count = 0;
            loop {
                tokio::select! {
                    _ = int.recv() => {},
                    _ = term.recv() => {},
                }
                count += 1;
                if count == 1 {
                    eprintln!("{first}");
                    s.graceful.cancel();
                } else {
                    eprintln!("signal: stopping now");
                    s.now.cancel();
                    s.graceful.cancel();
                }
            }
        });
        Ok(shutdown)
    }
}
