//! `infertune capture --upstream URL -o trace.jsonl`: put a recording proxy in front of a
//! server until Ctrl-C. The proxy and the format are in `crate::capture`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::capture::{self, CaptureOptions, Proxy};
use crate::daemon::Shutdown;

#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Address to listen on; anything but loopback is announced at start
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Base URL of the server to forward to (http://host:port)
    #[arg(long)]
    pub upstream: String,
    /// Trace file to write (JSONL, mode 0600; must not exist yet)
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also write the prompts (`messages` / `text_input`) into the trace
    #[arg(long)]
    pub keep_text: bool,
    /// Key of the prefix block ids (hex; created 0600 with a random key when missing)
    /// [default: capture.key beside the output]
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Move to a new file (trace.1.jsonl, trace.2.jsonl, ...) past this many MiB
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub rotate_mb: Option<u64>,
}

/// `capture`: bind, say where, serve until a signal, say what was written.
pub(super) async fn run(args: CaptureArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let opts = CaptureOptions {
        listen: args.listen,
        upstream: args.upstream,
        output: args.output,
        keep_text: args.keep_text,
        key_file: args.key_file,
        rotate_bytes: args.rotate_mb.map(|mb| mb << 20),
    };
    capture::check_output_dir(&opts.output)?;
    let proxy = Proxy::bind(&opts).await?;
    for line in capture::describe_start(&opts, proxy.local_addr(), proxy.is_key_created) {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    let shutdown = Shutdown::listen_saying(
        "signal: no new connections; requests in flight finish and are written; send again to stop now",
    )
    .context("installing signal handlers")?;
    let summary = proxy.serve(shutdown).await;
    writeln!(out, "capture: {} requests written ('{}' and its rotations)", summary.lines, opts.output.display())?;
    if summary.write_errors > 0 {
        anyhow::bail!("{} trace lines could not be written (see the log)", summary.write_errors)
    }
    Ok(())
}
