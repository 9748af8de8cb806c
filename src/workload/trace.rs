//! Trace files: recorded or published request logs read into one [`Trace`], whatever their
//! format. Pure: no backend, no network. Replay (`workload::replay`) and `trace stats` read it.
//!
//! Formats (`traces-and-fleet.md` §1):
//! - Mooncake JSONL: `timestamp` (ms from the trace start), `input_length`, `output_length`,
//!   `hash_ids` (one id per prefix block; equal leading ids = equal leading blocks), or
//!   `text_input` / `messages` instead of lengths;
//! - our capture format (`infertune capture`): Mooncake plus `protocol`, `model`, `status`, ...;
//!   rows with a non-2xx `status` were failures in production and are skipped and counted;
//! - the Azure LLM inference trace CSV (`TIMESTAMP,ContextTokens,GeneratedTokens`);
//! - BurstGPT CSV (`Timestamp` s, `Model`, `Request tokens`, `Response tokens`, ...); rows with
//!   0 response tokens failed in the original service and are skipped and counted.
//!
//! Unknown JSON fields and CSV columns are ignored. The format is detected from the content
//! (JSON or the CSV header) unless it is named.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value as Json;

/// A trace file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading trace '{path}'")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("trace '{path}' line {line}, field '{field}': {message}")]
    Field { path: String, line: usize, field: String, message: String },
    #[error("trace '{path}' line {line}: {message}")]
    Line { path: String, line: usize, message: String },
    #[error("trace '{path}': {message}")]
    Format { path: String, message: String },
    #[error("trace '{path}' has no requests")]
    Empty { path: String },
}

/// The file formats a trace can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Mooncake,
    Capture,
    Azure,
    BurstGpt,
}

impl Format {
    pub fn as_str(&self) -> &'static str {
        match self {
            Format::Mooncake => "mooncake",
            Format::Capture => "capture",
            Format::Azure => "azure",
            Format::BurstGpt => "burstgpt",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mooncake" => Ok(Format::Mooncake),
            "capture" => Ok(Format::Capture),
            "azure" => Ok(Format::Azure),
            "burstgpt" => Ok(Format::BurstGpt),
            _ => Err(format!("unknown trace format '{s}' (known: mooncake, capture, azure, burstgpt)")),
        }
    }
}

/// The text a request carried, when the trace keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    /// `text_input`: one user message.
    Prompt(String),
    /// `messages`: OpenAI chat messages, sent as they are.
    Messages(Vec<Json>),
}

/// One request of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Arrival, from the trace's first arrival (the earliest row is at zero).
    pub at: Duration,
    /// Prompt tokens; `None` when the row has only text.
    pub input_length: Option<u32>,
    /// Generated tokens; `None` when the row does not say.
    pub output_length: Option<u32>,
    /// Prefix block ids (Mooncake / capture); empty when the trace has no prefix information.
    pub hash_ids: Vec<u64>,
    pub text: Option<Text>,
    /// 1-based line of the row in its file, for messages.
    pub line: usize,
}

/// A parsed trace: requests in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub format: Format,
    pub requests: Vec<Request>,
    /// Rows that were failures in the original service (BurstGPT: 0 response tokens; capture: a
    /// non-2xx status), skipped.
    pub skipped_failed: usize,
}

/// Read and parse the trace at `path`; `format` names it, `None` detects it.
pub fn load(path: &Path, format: Option<Format>) -> Result<Trace, Error> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: shown.clone(), source })?;
    parse(&text, &shown, format)
}

/// Parse a trace's text; `path` only names it in errors.
pub fn parse(text: &str, path: &str, format: Option<Format>) -> Result<Trace, Error> {
    let format = match format {
        Some(f) => f,
        None => detect(text, path)?,
    };
    let mut rows = match format {
        Format::Mooncake | Format::Capture => parse_jsonl(text, path)?,
        Format::Azure => parse_azure(text, path)?,
        Format::BurstGpt => parse_burstgpt(text, path)?,
    };
    let skipped_failed = rows.iter().filter(|r| r.is_none()).count();
    let mut requests: Vec<Request> = rows.drain(..).flatten().collect();
    if requests.is_empty() {
        return Err(Error::Empty { path: path.to_string() });
    }
    // Arrival order, with the earliest arrival at zero (a stable sort keeps equal times in file order).
    requests.sort_by_key(|r| r.at);
    let first = requests[0].at;
    for r in &mut requests {
        r.at -= first;
    }
    Ok(Trace { format, requests, skipped_failed })
}

/// JSON lines are Mooncake unless a capture-only field shows up in the first object; CSV is told
/// apart by its header.
fn detect(text: &str, path: &str) -> Result<Format, Error> {
    let Some(first) = text.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return Err(Error::Empty { path: path.to_string() });
    };
    if first.starts_with('{') {
        let is_capture = serde_json::from_str::<serde_json::Map<String, Json>>(first)
            .is_ok_and(|o| ["protocol", "status", "model"].iter().any(|k| o.contains_key(*k)));
        return Ok(if is_capture { Format::Capture } else { Format::Mooncake });
    }
    let header = split_csv(first);
    if header.iter().any(|h| h == "ContextTokens") {
        return Ok(Format::Azure);
    }
    if header.iter().any(|h| h == "Request tokens") {
        return Ok(Format::BurstGpt);
    }
    Err(Error::Format {
        path: path.to_string(),
        message: format!(
            "cannot tell the format from the first line '{}' (expected JSON lines, or a CSV header with 'ContextTokens' or 'Request tokens'); name it with format = \"...\"",
            crate::workload::truncate(first, 80)
        ),
    })
}

/// One JSONL row: `None` for a row that failed in production.
fn parse_jsonl(text: &str, path: &str) -> Result<Vec<Option<Request>>, Error> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i + 1;
        let field_err = |field: &str, message: String| Error::Field {
            path: path.to_string(),
            line: line_no,
            field: field.to_string(),
            message,
        };
        let obj: serde_json::Map<String, Json> = serde_json::from_str(line).map_err(|e| Error::Line {
            path: path.to_string(),
            line: line_no,
            message: format!("not a JSON object ({e})"),
        })?;
        let uint = |key: &str| -> Result<Option<u64>, Error> {
            match obj.get(key) {
                None | Some(Json::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| field_err(key, format!("expected a non-negative integer (got '{v}')"))),
            }
        };
        let u32_of = |key: &str| -> Result<Option<u32>, Error> {
            uint(key)?
                .map(|v| u32::try_from(v).map_err(|_| field_err(key, format!("too large (got '{v}')"))))
                .transpose()
        };
        if let Some(status) = uint("status")?
            && !(200..300).contains(&status)
        {
            out.push(None);
            continue;
        }
        let timestamp = uint("timestamp")?.ok_or_else(|| field_err("timestamp", "missing".into()))?;
        let text = match (obj.get("text_input"), obj.get("messages")) {
            (Some(Json::String(s)), _) => Some(Text::Prompt(s.clone())),
            (Some(v), _) if !v.is_null() => {
                return Err(field_err("text_input", format!("expected a string (got '{v}')")));
            }
            (_, Some(Json::Array(m))) => Some(Text::Messages(m.clone())),
            (_, Some(v)) if !v.is_null() => {
                return Err(field_err("messages", format!("expected an array (got '{v}')")));
            }
            _ => None,
        };
        let input_length = u32_of("input_length")?;
        if input_length.is_none() && text.is_none() {
            return Err(field_err(
                "input_length",
                "missing (a row needs 'input_length', 'text_input' or 'messages')".into(),
            ));
        }
        let hash_ids = match obj.get("hash_ids") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(ids)) => ids
                .iter()
                .map(|v| {
                    v.as_u64()
                        .ok_or_else(|| field_err("hash_ids", format!("expected non-negative integers (got '{v}')")))
                })
                .collect::<Result<_, _>>()?,
            Some(v) => return Err(field_err("hash_ids", format!("expected an array of integers (got '{v}')"))),
        };
        out.push(Some(Request {
            at: Duration::from_millis(timestamp),
            input_length,
            output_length: u32_of("output_length")?,
            hash_ids,
            text,
            line: line_no,
        }));
    }
    Ok(out)
}

/// A CSV file's header (column name → index) and its data rows with their line numbers.
struct Csv<'a> {
    columns: HashMap<String, usize>,
    rows: Vec<(usize, Vec<String>)>,
    path: &'a str,
}

impl<'a> Csv<'a> {
    fn read(text: &str, path: &'a str, required: &[&str]) -> Result<Csv<'a>, Error> {
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else { return Err(Error::Empty { path: path.to_string() }) };
        let columns: HashMap<String, usize> =
            split_csv(header).into_iter().enumerate().map(|(i, name)| (name, i)).collect();
        if let Some(missing) = required.iter().find(|c| !columns.contains_key(**c)) {
            return Err(Error::Format {
                path: path.to_string(),
                message: format!("the CSV header has no column '{missing}' (needs {})", quoted(required)),
            });
        }
        let rows = lines.map(|(i, l)| (i + 1, split_csv(l))).collect();
        Ok(Csv { columns, rows, path })
    }

    /// The cell of `column` on a row, or an error naming line and field.
    fn cell<'r>(&self, line: usize, row: &'r [String], column: &str) -> Result<&'r str, Error> {
        let i = self.columns[column];
        row.get(i).map(|s| s.trim()).ok_or_else(|| Error::Field {
            path: self.path.to_string(),
            line,
            field: column.to_string(),
            message: format!("missing (the row has {} columns)", row.len()),
        })
    }

    fn number<T: FromStr>(&self, line: usize, row: &[String], column: &str, what: &str) -> Result<T, Error> {
        let cell = self.cell(line, row, column)?;
        cell.parse().map_err(|_| Error::Field {
            path: self.path.to_string(),
            line,
            field: column.to_string(),
            message: format!("expected {what} (got '{cell}')"),
        })
    }
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
}

/// Split one CSV line: commas outside double quotes; `""` inside quotes is a quote.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut in_quotes = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            ('"', _) => in_quotes = !in_quotes,
            (',', false) => out.push(std::mem::take(&mut cell)),
            _ => cell.push(c),
        }
    }
    out.push(cell);
    out
}

fn parse_azure(text: &str, path: &str) -> Result<Vec<Option<Request>>, Error> {
    let csv = Csv::read(text, path, &["TIMESTAMP", "ContextTokens", "GeneratedTokens"])?;
    let mut out = Vec::new();
    let mut first: Option<jiff::civil::DateTime> = None;
    for (line, row) in &csv.rows {
        let stamp = csv.cell(*line, row, "TIMESTAMP")?;
        let at: jiff::civil::DateTime = stamp.parse().map_err(|_| Error::Field {
            path: path.to_string(),
            line: *line,
            field: "TIMESTAMP".into(),
            message: format!("expected a date-time like '2023-11-16 18:15:46.6805900' (got '{stamp}')"),
        })?;
        let origin = *first.get_or_insert(at);
        // Offsets may be negative before the final sort if rows are out of order: keep them
        // signed here, shift after.
        let since = at.duration_since(origin);
        out.push((
            since,
            Request {
                at: Duration::ZERO,
                input_length: Some(csv.number(*line, row, "ContextTokens", "a token count")?),
                output_length: Some(csv.number(*line, row, "GeneratedTokens", "a token count")?),
                hash_ids: Vec::new(),
                text: None,
                line: *line,
            },
        ));
    }
    let earliest = out.iter().map(|(s, _)| *s).min().unwrap_or_default();
    Ok(out
        .into_iter()
        .map(|(since, mut r)| {
            let offset = since - earliest;
            r.at = Duration::try_from(offset).expect("offsets from the earliest row are non-negative");
            Some(r)
        })
        .collect())
}

fn parse_burstgpt(text: &str, path: &str) -> Result<Vec<Option<Request>>, Error> {
    let csv = Csv::read(text, path, &["Timestamp", "Request tokens", "Response tokens"])?;
    let mut out = Vec::new();
    for (line, row) in &csv.rows {
        let seconds: f64 = csv.number(*line, row, "Timestamp", "seconds")?;
        let at = Duration::try_from_secs_f64(seconds).map_err(|_| Error::Field {
            path: path.to_string(),
            line: *line,
            field: "Timestamp".into(),
            message: format!(
                "expected non-negative seconds (got '{}')",
                csv.cell(*line, row, "Timestamp").unwrap_or("")
            ),
        })?;
        let input: u32 = csv.number(*line, row, "Request tokens", "a token count")?;
        let output: u32 = csv.number(*line, row, "Response tokens", "a token count")?;
        out.push((output > 0).then_some(Request {
            at,
            input_length: Some(input),
            output_length: Some(output),
            hash_ids: Vec::new(),
            text: None,
            line: *line,
        }));
    }
    Ok(out)
}

/// Mooncake's prefix block, in tokens: the default `block_size` of a trace's `hash_ids`.
pub const DEFAULT_BLOCK_SIZE: u32 = 512;

pub use crate::measure::stamp::Lengths;

/// What a trace asks of a server (`infertune trace stats`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stats {
    pub format: Format,
    pub requests: usize,
    /// Rows skipped as failures of the original service.
    pub skipped_failed: usize,
    /// First to last arrival, in seconds.
    pub span_s: f64,
    /// Requests over the span; `None` for a trace whose arrivals all fall at one instant.
    pub mean_rate_per_s: Option<f64>,
    /// Most arrivals in any 1 s window `[t, t + 1 s)` that starts at an arrival, per second.
    pub peak_rate_1s_per_s: f64,
    /// Most arrivals in any 10 s window, per second.
    pub peak_rate_10s_per_s: f64,
    /// Prompt tokens of the rows that give them.
    pub isl: Lengths,
    /// Output tokens of the rows that give them.
    pub osl: Lengths,
    /// Requests that carry their text (sent as they are on replay).
    pub with_text: usize,
    /// Prefix blocks (`hash_ids`) in the trace.
    pub blocks: u64,
    /// Blocks whose id appeared earlier in the trace (a prompt cache of unbounded size would hold them).
    pub blocks_seen_before: u64,
    /// `blocks_seen_before / blocks`; `None` without `hash_ids`.
    pub prefix_reuse: Option<f64>,
    /// Tokens per block.
    pub block_size: u32,
    /// Start of the busiest `busiest_window` (most arrivals), in seconds from the first arrival.
    pub busiest_start_s: f64,
    pub busiest_window_s: f64,
}

/// Busiest windows are this long, or the whole trace when it is shorter.
const BUSIEST_WINDOW: Duration = Duration::from_secs(600);

impl Stats {
    pub fn of(trace: &Trace, block_size: u32) -> Stats {
        let at: Vec<Duration> = trace.requests.iter().map(|r| r.at).collect();
        let span = *at.last().expect("a parsed trace has requests");
        let span_s = span.as_secs_f64();
        let (blocks, seen_before) = prefix_blocks(&trace.requests);
        let window = BUSIEST_WINDOW.min(span);
        let (busiest_start, _) = busiest(&at, window.max(Duration::from_millis(1)));
        Stats {
            format: trace.format,
            requests: at.len(),
            skipped_failed: trace.skipped_failed,
            span_s,
            mean_rate_per_s: (span_s > 0.0).then(|| at.len() as f64 / span_s),
            peak_rate_1s_per_s: busiest(&at, Duration::from_secs(1)).1 as f64,
            peak_rate_10s_per_s: busiest(&at, Duration::from_secs(10)).1 as f64 / 10.0,
            isl: Lengths::of(trace.requests.iter().filter_map(|r| r.input_length)),
            osl: Lengths::of(trace.requests.iter().filter_map(|r| r.output_length)),
            with_text: trace.requests.iter().filter(|r| r.text.is_some()).count(),
            blocks,
            blocks_seen_before: seen_before,
            prefix_reuse: (blocks > 0).then(|| seen_before as f64 / blocks as f64),
            block_size,
            busiest_start_s: busiest_start.as_secs_f64(),
            busiest_window_s: window.as_secs_f64(),
        }
    }
}

/// The start of the window of length `w` (opening at an arrival) holding most arrivals, and how
/// many it holds; the earliest such window on ties. `at` is sorted.
pub fn busiest(at: &[Duration], w: Duration) -> (Duration, usize) {
    let mut best = (Duration::ZERO, 0);
    let mut end = 0;
    for (i, &start) in at.iter().enumerate() {
        while end < at.len() && at[end] < start + w {
            end += 1;
        }
        if end - i > best.1 {
            best = (start, end - i);
        }
    }
    best
}

/// All `hash_ids`, and those whose id appeared in an earlier request (or earlier in the same one).
fn prefix_blocks(requests: &[Request]) -> (u64, u64) {
    let mut seen = std::collections::HashSet::new();
    let (mut blocks, mut before) = (0, 0);
    for id in requests.iter().flat_map(|r| &r.hash_ids) {
        blocks += 1;
        if !seen.insert(*id) {
            before += 1;
        }
    }
    (blocks, before)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn mooncake_rows_with_lengths_and_text() {
        let text = r#"{"timestamp": 1000, "input_length": 700, "output_length": 12, "hash_ids": [1, 2]}

{"timestamp": 1500, "input_length": 300, "output_length": 5, "hash_ids": [1], "extra": "ignored"}
{"timestamp": 2500, "text_input": "hello"}
{"timestamp": 2600, "messages": [{"role": "user", "content": "hi"}], "output_length": 3}
"#;
        let t = parse(text, "m.jsonl", None).unwrap();
        assert_eq!((t.format, t.skipped_failed, t.requests.len()), (Format::Mooncake, 0, 4));
        let r = &t.requests;
        assert_eq!(
            (r[0].at, r[0].input_length, r[0].output_length, &r[0].hash_ids[..]),
            (ms(0), Some(700), Some(12), &[1, 2][..])
        );
        assert_eq!((r[1].at, r[1].input_length, r[1].line), (ms(500), Some(300), 3));
        assert_eq!((r[2].at, r[2].input_length, &r[2].text), (ms(1500), None, &Some(Text::Prompt("hello".into()))));
        assert_eq!(r[3].output_length, Some(3));
        assert!(matches!(&r[3].text, Some(Text::Messages(m)) if m.len() == 1));
    }

    #[test]
    fn capture_rows_are_detected_and_failures_skipped() {
        let text = r#"{"timestamp": 0, "input_length": 10, "output_length": 4, "hash_ids": [7], "protocol": "openai", "model": "m", "status": 200}
{"timestamp": 40, "input_length": 11, "output_length": 0, "hash_ids": [7], "protocol": "openai", "status": 503}
{"timestamp": 90, "input_length": 12, "output_length": 6, "hash_ids": [7, 8], "protocol": "ollama", "status": 200}
"#;
        let t = parse(text, "c.jsonl", None).unwrap();
        assert_eq!((t.format, t.skipped_failed, t.requests.len()), (Format::Capture, 1, 2));
        assert_eq!((t.requests[1].at, t.requests[1].input_length, t.requests[1].line), (ms(90), Some(12), 3));
    }

    #[test]
    fn azure_csv_with_fractional_timestamps() {
        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
                    2023-11-16 18:15:46.6805900,374,44\n\
                    2023-11-16 18:15:50.9951690,396,109\n\
                    2023-11-16 18:15:46.6805910,879,8\r\n";
        let t = parse(text, "a.csv", None).unwrap();
        assert_eq!((t.format, t.requests.len()), (Format::Azure, 3));
        let r = &t.requests;
        assert_eq!((r[0].at, r[0].input_length, r[0].output_length), (Duration::ZERO, Some(374), Some(44)));
        assert_eq!((r[1].at, r[1].input_length, r[1].line), (Duration::from_micros(1), Some(879), 4));
        assert_eq!((r[2].at, r[2].output_length), (Duration::from_nanos(4_314_579_000), Some(109)));
    }

    #[test]
    fn burstgpt_csv_skips_failed_requests() {
        let text = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n\
                    5,ChatGPT,472,18,490,Conversation log\n\
                    45,\"GPT-4, large\",1087,0,1087,Conversation log\n\
                    118.5,GPT-4,417,276,693,API log\n";
        let t = parse(text, "b.csv", None).unwrap();
        assert_eq!((t.format, t.skipped_failed, t.requests.len()), (Format::BurstGpt, 1, 2));
        let r = &t.requests;
        assert_eq!((r[0].at, r[0].input_length, r[0].output_length), (Duration::ZERO, Some(472), Some(18)));
        assert_eq!((r[1].at, r[1].input_length, r[1].output_length, r[1].line), (ms(113_500), Some(417), Some(276), 4));
    }

    #[test]
    fn a_named_format_overrides_detection() {
        let text = r#"{"timestamp": 0, "input_length": 1, "status": 200}"#;
        assert_eq!(parse(text, "x", Some(Format::Mooncake)).unwrap().format, Format::Mooncake);
        assert_eq!("burstgpt".parse::<Format>(), Ok(Format::BurstGpt));
        assert!("csv".parse::<Format>().unwrap_err().contains("'csv'"));
    }

    #[test]
    fn malformed_rows_name_file_line_and_field() {
        let cases = [
            ("{\"timestamp\": 0, \"input_length\": 3}\n{oops\n", "trace 't' line 2: not a JSON object"),
            (
                "{\"timestamp\": 0, \"input_length\": -5}",
                "trace 't' line 1, field 'input_length': expected a non-negative integer (got '-5')",
            ),
            ("{\"input_length\": 5}", "trace 't' line 1, field 'timestamp': missing"),
            (
                "{\"timestamp\": 3}",
                "trace 't' line 1, field 'input_length': missing (a row needs 'input_length', 'text_input' or 'messages')",
            ),
            (
                "{\"timestamp\": 3, \"input_length\": 1, \"hash_ids\": [1, \"a\"]}",
                "trace 't' line 1, field 'hash_ids': expected non-negative integers (got '\"a\"')",
            ),
            (
                "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,3,4\nyesterday,3,4\n",
                "trace 't' line 3, field 'TIMESTAMP': expected a date-time like '2023-11-16 18:15:46.6805900' (got 'yesterday')",
            ),
            (
                "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,3\n",
                "trace 't' line 2, field 'GeneratedTokens': missing (the row has 2 columns)",
            ),
            (
                "Timestamp,Model,Request tokens,Response tokens\n1,m,12x,3\n",
                "trace 't' line 2, field 'Request tokens': expected a token count (got '12x')",
            ),
            (
                "Timestamp,Model,Request tokens,Response tokens\n-1,m,12,3\n",
                "trace 't' line 2, field 'Timestamp': expected non-negative seconds (got '-1')",
            ),
            ("a,b\n1,2\n", "trace 't': cannot tell the format from the first line 'a,b'"),
            ("\n\n", "trace 't' has no requests"),
            ("Timestamp,Model,Request tokens,Response tokens\n1,m,12,0\n", "trace 't' has no requests"),
        ];
        for (text, expected) in cases {
            let err = parse(text, "t", None).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err}");
        }
    }

    #[test]
    fn a_named_csv_format_needs_its_columns() {
        let err = parse("TIMESTAMP,Tokens\n", "t", Some(Format::Azure)).unwrap_err().to_string();
        assert_eq!(
            err,
            "trace 't': the CSV header has no column 'ContextTokens' (needs 'TIMESTAMP', 'ContextTokens', 'GeneratedTokens')"
        );
    }
    /// Ten requests: a burst of five in the first second, then one every 5 s; three prompts
    /// share block 1, two of those also block 2.
    const STATS_FIXTURE: &str = r#"{"timestamp": 0, "input_length": 100, "output_length": 10, "hash_ids": [1]}
{"timestamp": 200, "input_length": 600, "output_length": 20, "hash_ids": [1, 2]}
{"timestamp": 400, "input_length": 700, "output_length": 30, "hash_ids": [1, 2]}
{"timestamp": 600, "input_length": 300, "output_length": 40, "hash_ids": [3]}
{"timestamp": 800, "input_length": 200, "output_length": 50, "hash_ids": [4]}
{"timestamp": 5000, "input_length": 400, "output_length": 60, "hash_ids": [5]}
{"timestamp": 10000, "input_length": 500, "output_length": 70, "hash_ids": [6]}
{"timestamp": 15000, "input_length": 800, "output_length": 80, "hash_ids": [7, 8]}
{"timestamp": 20000, "input_length": 900, "output_length": 90, "hash_ids": [9, 10]}
{"timestamp": 25000, "input_length": 1000, "output_length": 100, "hash_ids": [11, 12]}
"#;

    #[test]
    fn stats_of_a_small_trace() {
        let s = Stats::of(&parse(STATS_FIXTURE, "s", None).unwrap(), 512);
        assert_eq!((s.requests, s.span_s, s.mean_rate_per_s), (10, 25.0, Some(0.4)));
        assert_eq!((s.peak_rate_1s_per_s, s.peak_rate_10s_per_s), (5.0, 0.6));
        assert_eq!((s.isl.n, s.isl.p50, s.isl.max), (10, 550.0, 1000.0));
        assert!((s.isl.p90 - 910.0).abs() < 1e-9 && (s.isl.p99 - 991.0).abs() < 1e-9, "{:?}", s.isl);
        assert_eq!((s.osl.p50, s.osl.mean), (55.0, 55.0));
        assert_eq!((s.blocks, s.blocks_seen_before, s.prefix_reuse), (15, 3, Some(0.2)));
        assert_eq!((s.busiest_start_s, s.busiest_window_s), (0.0, 25.0));
    }

    #[test]
    fn busiest_window_opens_at_the_first_of_the_most_arrivals() {
        let at: Vec<Duration> = [0, 5000, 5100, 5900, 6000, 9000].map(Duration::from_millis).to_vec();
        assert_eq!(busiest(&at, Duration::from_secs(1)), (Duration::from_millis(5000), 3));
        assert_eq!(busiest(&at, Duration::from_secs(10)), (Duration::ZERO, 6));
    }
}
