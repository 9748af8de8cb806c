//! vLLM deployment files: a docker-compose snippet and vLLM's `--config` YAML, plus readers for
//! every exported form (command line, env file, compose, YAML) so exports can be checked to
//! round-trip into the same `vllm serve` words.
//!
//! The YAML keys are the long flag names without `--` (vLLM turns `key: value` into
//! `--key value`); `key: false` stands for `--no-key`. Strings are written JSON-quoted, which is
//! valid YAML, so reading them back needs no YAML library.

use std::collections::BTreeMap;

use crate::backend::LaunchPlan;
use crate::backend::vllm::ServeArgs;

/// Why an exported file could not be read back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(pub String);

/// The words after `serve` (model first), from a plan whose args contain `serve MODEL ...`.
pub fn serve_words(plan: &LaunchPlan) -> Vec<String> {
    let at = plan.args.iter().position(|a| a == "serve").map_or(0, |i| i + 1);
    plan.args[at..].to_vec()
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// A YAML scalar: a bare number when the text is one, else a JSON-quoted string.
fn yaml_scalar(v: &str) -> String {
    let numeric = v.parse::<f64>().is_ok_and(f64::is_finite) && !v.starts_with('+') && !v.ends_with('.');
    if numeric { v.to_string() } else { json_str(v) }
}

/// `services: vllm:` with `command:` (the arguments after the image's `vllm serve` entrypoint)
/// and `environment:`.
pub fn compose(header: &str, plan: &LaunchPlan) -> String {
    let mut out = String::from(header);
    out.push_str("services:\n  vllm:\n    image: vllm/vllm-openai  # entrypoint: vllm serve; pin the tag you tested\n");
    out.push_str("    ipc: host\n");
    let words: Vec<String> = serve_words(plan).iter().map(|w| json_str(w)).collect();
    out.push_str(&format!("    command: [{}]\n", words.join(", ")));
    if !plan.deploy_env.is_empty() {
        out.push_str("    environment:\n");
        for (k, v) in &plan.deploy_env {
            out.push_str(&format!("      {k}: {}\n", json_str(v)));
        }
    }
    out
}

/// vLLM's `--config` file: `model:` plus one `key: value` per flag.
pub fn yaml(header: &str, plan: &LaunchPlan) -> Result<String, ReadError> {
    let args = ServeArgs::parse(&serve_words(plan)).map_err(ReadError)?;
    let mut out = String::from(header);
    out.push_str(&format!(
        "# run: vllm serve --config FILE (env vars are not part of this file)\nmodel: {}\n",
        json_str(&args.model)
    ));
    for (flag, value) in &args.flags {
        let Some(long) = flag.strip_prefix("--") else {
            return Err(ReadError(format!("short flag '{flag}' has no --config key; use its long form in the space")));
        };
        let line = match value {
            Some(v) => format!("{long}: {}\n", yaml_scalar(v)),
            None => match long.strip_prefix("no-") {
                Some(key) => format!("{key}: false\n"),
                None => format!("{long}: true\n"),
            },
        };
        out.push_str(&line);
    }
    Ok(out)
}

/// Split a POSIX shell line as `export::shell_quote` writes it (bare words, single quotes with
/// `'\''` escapes, and double quotes without expansions).
pub fn shell_split(line: &str) -> Result<Vec<String>, ReadError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(ReadError("unterminated single quote".into())),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => word.push(chars.next().ok_or_else(|| ReadError("dangling backslash".into()))?),
                        Some(c) => word.push(c),
                        None => return Err(ReadError("unterminated double quote".into())),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().ok_or_else(|| ReadError("dangling backslash".into()))?);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Read `--format args` output: leading `NAME=value` words are the env, then the program, then
/// its arguments. Returns (env, words after `serve`).
pub fn read_args(text: &str) -> Result<(BTreeMap<String, String>, Vec<String>), ReadError> {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .ok_or_else(|| ReadError("no command line".into()))?;
    let words = shell_split(line)?;
    let mut env = BTreeMap::new();
    let mut i = 0;
    while let Some((k, v)) = words.get(i).and_then(|w| w.split_once('=')).filter(|(k, _)| is_env_name(k)) {
        env.insert(k.to_string(), v.to_string());
        i += 1;
    }
    let at = words[i..]
        .iter()
        .position(|w| w == "serve")
        .ok_or_else(|| ReadError("no 'serve' in the command line".into()))?;
    Ok((env, words[i + at + 1..].to_vec()))
}

fn is_env_name(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Read an env file (`NAME=value`, values quoted as the exporter quotes them) and its
/// "has no environment form" notes: (env, `vllm serve` words from the notes, model first).
pub fn read_env(text: &str) -> Result<(BTreeMap<String, String>, Vec<String>), ReadError> {
    const NOTE_HEAD: &str = "# '";
    const NOTE_TAIL: &str = "' has no environment form; pass it on the command line";
    let mut env = BTreeMap::new();
    let mut words = Vec::new();
    for line in text.lines() {
        if let Some(note) = line.strip_prefix(NOTE_HEAD).and_then(|l| l.strip_suffix(NOTE_TAIL)) {
            match note.split_once(' ').filter(|_| note.starts_with("--") && !words.is_empty()) {
                Some((flag, value)) => words.extend([flag.to_string(), value.to_string()]),
                None => words.push(note.to_string()),
            }
        }
    }
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let (k, v) = line.split_once('=').ok_or_else(|| ReadError(format!("not NAME=value: '{line}'")))?;
        let v = shell_split(v)?.join(" ");
        env.insert(k.to_string(), v);
    }
    Ok((env, words))
}

/// Read the compose snippet back: (environment, command words).
pub fn read_compose(text: &str) -> Result<(BTreeMap<String, String>, Vec<String>), ReadError> {
    let mut words = None;
    let mut env = BTreeMap::new();
    let mut in_env = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some(list) = t.strip_prefix("command:") {
            words =
                Some(serde_json::from_str::<Vec<String>>(list.trim()).map_err(|e| ReadError(format!("command: {e}")))?);
            in_env = false;
        } else if t == "environment:" {
            in_env = true;
        } else if in_env && line.starts_with("      ") {
            let (k, v) = t.split_once(": ").ok_or_else(|| ReadError(format!("not 'NAME: value': '{t}'")))?;
            env.insert(k.to_string(), serde_json::from_str::<String>(v).map_err(|e| ReadError(format!("{k}: {e}")))?);
        } else {
            in_env = false;
        }
    }
    Ok((env, words.ok_or_else(|| ReadError("no 'command:' line".into()))?))
}

/// Read a `--config` YAML written by [`yaml`] back into `vllm serve` words (model first).
pub fn read_yaml(text: &str) -> Result<Vec<String>, ReadError> {
    let mut model = None;
    let mut flags = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')) {
        let (key, raw) = line.split_once(": ").ok_or_else(|| ReadError(format!("not 'key: value': '{line}'")))?;
        let value: serde_json::Value =
            serde_json::from_str(raw.trim()).map_err(|e| ReadError(format!("{key}: {e}")))?;
        let text = match &value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match (key, &value) {
            ("model", _) => model = Some(text),
            (k, serde_json::Value::Bool(true)) => flags.push(format!("--{k}")),
            (k, serde_json::Value::Bool(false)) => flags.push(format!("--no-{k}")),
            (k, _) => flags.extend([format!("--{k}"), text]),
        }
    }
    let mut words = vec![model.ok_or_else(|| ReadError("no 'model:' key".into()))?];
    words.extend(flags);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> LaunchPlan {
        let args: Vec<String> = "serve|/m/my model $(x).gguf|--max-num-seqs|64|--gpu-memory-utilization|0.9|--no-enable-prefix-caching|--enforce-eager|--kv-cache-dtype|fp8"
            .split('|')
            .map(str::to_string)
            .collect();
        LaunchPlan {
            program: "vllm".into(),
            args,
            env: BTreeMap::new(),
            deploy_env: [("VLLM_NO_USAGE_STATS".to_string(), "1".to_string())].into(),
            args_without_env: vec![],
            request_options: Default::default(),
            model: "/m/my model $(x).gguf".into(),
        }
    }

    #[test]
    fn compose_snippet() {
        let text = compose("# h\n", &plan());
        assert_eq!(
            text,
            "# h\nservices:\n  vllm:\n    image: vllm/vllm-openai  # entrypoint: vllm serve; pin the tag you tested\n    ipc: host\n    command: [\"/m/my model $(x).gguf\", \"--max-num-seqs\", \"64\", \"--gpu-memory-utilization\", \"0.9\", \"--no-enable-prefix-caching\", \"--enforce-eager\", \"--kv-cache-dtype\", \"fp8\"]\n    environment:\n      VLLM_NO_USAGE_STATS: \"1\"\n"
        );
        let (env, words) = read_compose(&text).unwrap();
        assert_eq!(words, serve_words(&plan()));
        assert_eq!(env, plan().deploy_env);
    }

    #[test]
    fn yaml_config() {
        let text = yaml("", &plan()).unwrap();
        assert_eq!(
            text,
            "# run: vllm serve --config FILE (env vars are not part of this file)\nmodel: \"/m/my model $(x).gguf\"\nmax-num-seqs: 64\ngpu-memory-utilization: 0.9\nenable-prefix-caching: false\nenforce-eager: true\nkv-cache-dtype: \"fp8\"\n"
        );
        assert_eq!(read_yaml(&text).unwrap(), serve_words(&plan()));
    }

    #[test]
    fn shell_split_reads_what_shell_quote_writes() {
        let words = ["vllm", "a b", "it's", "$(rm -rf /)", "", "x=1"];
        let line: Vec<String> = words.iter().map(|w| crate::export::shell_quote(w)).collect();
        assert_eq!(shell_split(&line.join(" ")).unwrap(), words);
        assert!(shell_split("'open").is_err());
    }

    #[test]
    fn read_args_splits_env_program_and_serve_words() {
        let (env, words) = read_args("VLLM_X='a b' /opt/vllm serve 'm 1' --max-num-seqs 4\n").unwrap();
        assert_eq!(env, [("VLLM_X".to_string(), "a b".to_string())].into());
        assert_eq!(words, ["m 1", "--max-num-seqs", "4"]);
    }
}
