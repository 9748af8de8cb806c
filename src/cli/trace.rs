//! `infertune trace stats FILE`: what a trace asks of a server (requests, span, arrival rates,
//! ISL/OSL percentiles, prefix reuse) and the `[workload]` block that replays it.
//!
//! The figures are `workload::trace::Stats`; this file only reads the file and prints them.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::workload::trace::{self, DEFAULT_BLOCK_SIZE, Format, Stats};

#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Requests, span, mean and peak rate, ISL/OSL percentiles and prefix reuse of a trace file,
    /// and the [workload] block that replays it
    Stats(StatsArgs),
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Trace file: Mooncake or capture JSONL, Azure or BurstGPT CSV
    pub file: PathBuf,
    /// The file's format (detected from the content when not given)
    #[arg(long, value_parser = parse_format)]
    pub format: Option<Format>,
    /// Tokens per prefix block of the trace's hash_ids (512 in Mooncake's release)
    #[arg(long, default_value_t = DEFAULT_BLOCK_SIZE, value_parser = clap::value_parser!(u32).range(1..))]
    pub block_size: u32,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

pub(super) fn run(command: TraceCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        TraceCommand::Stats(args) => stats(&args, out),
    }
}

fn stats(args: &StatsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let trace = trace::load(&args.file, args.format)?;
    let stats = Stats::of(&trace, args.block_size);
    let block = workload_block(&args.file, &stats);
    if args.json {
        let mut doc = serde_json::to_value(&stats).context("stats as JSON")?;
        doc["file"] = args.file.display().to_string().into();
        doc["workload"] = block.into();
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    print(&args.file, &stats, out)?;
    writeln!(out)?;
    write!(out, "{block}")?;
    Ok(())
}

fn print(file: &Path, s: &Stats, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(out, "trace         {} ({})", file.display(), s.format)?;
    writeln!(out, "requests      {} ({} failed rows skipped)", s.requests, s.skipped_failed)?;
    writeln!(out, "span          {:.1} s", s.span_s)?;
    let mean = s.mean_rate_per_s.map_or("-".to_string(), |r| format!("{r:.2}/s"));
    writeln!(
        out,
        "rate          mean {mean}, peak {:.0}/s (1 s window), {:.2}/s (10 s window)",
        s.peak_rate_1s_per_s, s.peak_rate_10s_per_s
    )?;
    for (name, l) in [("ISL", &s.isl), ("OSL", &s.osl)] {
        if l.n == 0 {
            writeln!(out, "{name} tokens    - (no row gives it)")?;
        } else {
            writeln!(
                out,
                "{name} tokens    p50 {:.0}, p90 {:.0}, p99 {:.0}, max {:.0} (n {})",
                l.p50, l.p90, l.p99, l.max, l.n
            )?;
        }
    }
    if s.with_text > 0 {
        writeln!(out, "text          {} requests carry their prompt text", s.with_text)?;
    }
    match s.prefix_reuse {
        Some(r) => writeln!(
            out,
            "prefix reuse  {:.1} % of {} blocks seen before ({} tokens a block)",
            r * 100.0,
            s.blocks,
            s.block_size
        )?,
        None => writeln!(out, "prefix reuse  - (no hash_ids)")?,
    }
    Ok(())
}

/// The `[workload]` lines that replay the trace: the whole of it, or its busiest ten minutes
/// when it is longer.
fn workload_block(file: &Path, s: &Stats) -> String {
    let path = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let mut block = format!("[workload]\ntrace = {}\n", toml::Value::String(path.display().to_string()));
    block += "time_scale = 1.0\n";
    if s.busiest_window_s < s.span_s {
        block += &format!(
            "window = {{ start = \"{}s\", duration = \"{}s\" }}  # the busiest {} minutes\n",
            s.busiest_start_s,
            s.busiest_window_s,
            s.busiest_window_s / 60.0
        );
    }
    if s.blocks > 0 {
        block += &format!("block_size = {}\n", s.block_size);
    }
    block
}

/// `best`'s workload lines (`report::workload::lines`): the trace a replay came from, its window,
/// stats and time scale, or the dataset; nothing when neither the trial nor the space says.
pub(super) fn print_workload(
    best: Option<&crate::trial::Trial>,
    study: &crate::trial::Study,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let base = study.space_dir.clone().unwrap_or_default();
    let space = crate::space::Space::from_toml(&study.space_toml, "stored space", &base).ok();
    for (label, text) in crate::report::workload::lines(best, space.as_ref()) {
        writeln!(out, "{:<14} {text}", format!("{label}:"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = r#"{"timestamp": 0, "input_length": 100, "output_length": 10, "hash_ids": [1]}
{"timestamp": 500, "input_length": 600, "output_length": 20, "hash_ids": [1, 2]}
{"timestamp": 4000, "input_length": 700, "output_length": 30, "hash_ids": [1, 2]}
{"timestamp": 4000, "input_length": 300, "output_length": 40, "hash_ids": [3]}
"#;

    #[test]
    fn stats_as_text_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.jsonl");
        std::fs::write(&file, FIXTURE).unwrap();
        let args = StatsArgs { file: file.clone(), format: None, block_size: 512, json: false };
        let mut out = Vec::new();
        stats(&args, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let shown = std::fs::canonicalize(&file).unwrap().display().to_string();
        let expected = format!(
            "trace         {} (mooncake)
requests      4 (0 failed rows skipped)
span          4.0 s
rate          mean 1.00/s, peak 2/s (1 s window), 0.40/s (10 s window)
ISL tokens    p50 450, p90 670, p99 697, max 700 (n 4)
OSL tokens    p50 25, p90 37, p99 40, max 40 (n 4)
prefix reuse  50.0 % of 6 blocks seen before (512 tokens a block)

[workload]
trace = \"{shown}\"
time_scale = 1.0
block_size = 512
",
            file.display()
        );
        assert_eq!(text, expected);

        let mut out = Vec::new();
        stats(&StatsArgs { json: true, block_size: 256, ..args }, &mut out).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["requests"], 4);
        assert_eq!(doc["prefix_reuse"], 0.5);
        assert_eq!(doc["isl"]["p50"], 450.0);
        assert_eq!(doc["block_size"], 256);
        assert!(doc["workload"].as_str().unwrap().contains("block_size = 256"));
    }

    #[test]
    fn a_long_trace_replays_its_busiest_ten_minutes() {
        let trace = trace::parse(
            "{\"timestamp\": 0, \"input_length\": 1}\n{\"timestamp\": 700000, \"input_length\": 1}\n{\"timestamp\": 700001, \"input_length\": 1}\n",
            "t",
            None,
        )
        .unwrap();
        let block = workload_block(Path::new("/x/t.jsonl"), &Stats::of(&trace, 512));
        assert_eq!(
            block,
            "[workload]\ntrace = \"/x/t.jsonl\"\ntime_scale = 1.0\nwindow = { start = \"700s\", duration = \"600s\" }  # the busiest 10 minutes\n"
        );
    }
}
