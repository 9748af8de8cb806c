//! The `[params]` section: what a parameter is (`Param`: a `Domain` and an `Apply`), the values
//! it takes (`Value`), the points the search proposes (`Candidate`), and the validation of each
//! raw `ParamFile` into a `Param`.
//!
//! Owns the parameter rules only: which backend a parameter reaches and how a candidate becomes
//! a command line are the backend adapters' business; the Ollama-specific checks live there too.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Invalid;
use super::backend::BackendSpec;
use super::file::ParamFile;

/// A parameter value. Serialized untagged, so params JSON reads `{"parallel": 4, "fa": "on"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => f.write_str(s),
        }
    }
}

/// Where a parameter's values come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// Integers in `[min, max]`; `log` samples on a log scale; `step` restricts to min + k·step.
    Int { min: i64, max: i64, log: bool, step: Option<i64> },
    /// An explicit, ordered list of values (numbers, strings or booleans).
    Values(Vec<Value>),
}

/// How a parameter reaches the backend. This decides whether a change needs a restart.
#[derive(Debug, Clone, PartialEq)]
pub enum Apply {
    /// Command-line flags, each followed by the value (`-ctk q8_0 -ctv q8_0`). A boolean value
    /// emits the bare flag when true and nothing when false.
    Flags(Vec<String>),
    /// An environment variable of the server process.
    Env(String),
    /// A per-request option, sent with every request (no restart).
    Option(String),
    /// Fills `{name}` in a backend template, e.g. the model path (`template = "model"`).
    Template(String),
}

/// One dimension of the search.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub domain: Domain,
    pub apply: Apply,
    /// The backend's own default, used for the baseline trial; `None` when the file gives none.
    pub default: Option<Value>,
}

/// One point of the space: a value for every parameter, keyed by name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Candidate(pub BTreeMap<String, Value>);

impl Candidate {
    /// The value of parameter `name`; `None` if the candidate does not set it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Canonical JSON (keys sorted), the form stored and hashed.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("candidate values always serialize")
    }

    /// Short `k=v k=v` form for progress lines.
    pub fn brief(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    }
}

impl Domain {
    /// The points a grid search visits: every listed value; for ranges, every `step`, or powers
    /// of two from `min` when `log`, or five evenly spaced integers otherwise. Always includes
    /// both ends of a range.
    pub fn grid_points(&self) -> Vec<Value> {
        match self {
            Domain::Values(values) => values.clone(),
            Domain::Int { min, max, log, step } => {
                let mut points: Vec<i64> = if let Some(step) = step {
                    (0..).map(|k| min + k * step).take_while(|v| v <= max).collect()
                } else if *log {
                    let mut v = (*min).max(1);
                    let mut out = vec![*min];
                    while v * 2 <= *max {
                        v *= 2;
                        out.push(v);
                    }
                    out
                } else {
                    (0..5).map(|k| min + (max - min) * k / 4).collect()
                };
                points.push(*max);
                points.sort_unstable();
                points.dedup();
                points.into_iter().map(Value::Int).collect()
            }
        }
    }

    /// Whether `value` lies in this domain.
    pub fn contains(&self, value: &Value) -> bool {
        match (self, value) {
            (Domain::Values(values), v) => values.contains(v),
            (Domain::Int { min, max, step, .. }, Value::Int(v)) => {
                v >= min && v <= max && step.is_none_or(|s| (v - min) % s == 0 || v == max)
            }
            _ => false,
        }
    }
}

/// `[params]`: every entry validated, in file order (grid order, progress lines).
pub(super) fn validate_params(table: &toml::Table, backend: &BackendSpec) -> Result<Vec<Param>, Invalid> {
    if table.is_empty() {
        return Err(Invalid::new("params", "at least one parameter is needed"));
    }
    let mut params = Vec::new();
    for (name, raw) in table {
        let raw = ParamFile::deserialize(raw.clone())
            .map_err(|e| Invalid::new(format!("params.{name}"), e.to_string().trim_end()))?;
        params.push(validate_param(name, &raw, backend)?);
    }
    Ok(params)
}

/// One parameter: its name, then where its values come from, how it is applied, its default.
fn validate_param(name: &str, raw: &ParamFile, backend: &BackendSpec) -> Result<Param, Invalid> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(Invalid::new(format!("params.{name}"), "parameter names use letters, digits, '_' and '-'"));
    }
    let domain = domain_of(name, raw)?;
    let apply = apply_of(name, raw, backend)?;
    let default = default_of(name, raw, &domain)?;
    Ok(Param { name: name.to_string(), domain, apply, default })
}

fn key(name: &str, field: &str) -> String {
    format!("params.{name}.{field}")
}

/// `values = [...]` or `min`/`max` (with `log` and `step`), never both.
fn domain_of(name: &str, raw: &ParamFile) -> Result<Domain, Invalid> {
    let domain = match (&raw.values, raw.min, raw.max) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(Invalid::new(format!("params.{name}"), "give either 'values' or 'min'/'max', not both"));
        }
        (Some(values), None, None) => Domain::Values(value_list(name, values)?),
        (None, Some(min), Some(max)) => int_range(name, raw, min, max)?,
        (None, Some(_), None) => return Err(Invalid::new(key(name, "max"), "missing (min is given)")),
        (None, None, Some(_)) => return Err(Invalid::new(key(name, "min"), "missing (max is given)")),
        (None, None, None) => {
            return Err(Invalid::new(format!("params.{name}"), "needs 'values = [...]' or 'min'/'max'"));
        }
    };
    if (raw.log || raw.step.is_some()) && matches!(domain, Domain::Values(_)) {
        return Err(Invalid::new(
            key(name, if raw.log { "log" } else { "step" }),
            "only applies to a 'min'/'max' range",
        ));
    }
    Ok(domain)
}

/// A non-empty list of distinct values of one type.
fn value_list(name: &str, values: &[toml::Value]) -> Result<Vec<Value>, Invalid> {
    if values.is_empty() {
        return Err(Invalid::new(key(name, "values"), "must list at least one value (got '[]')"));
    }
    let mut out = Vec::new();
    for v in values {
        let value = toml_to_value(v).ok_or_else(|| {
            Invalid::new(key(name, "values"), format!("values must be numbers, strings or booleans (got '{v}')"))
        })?;
        if out.contains(&value) {
            return Err(Invalid::new(key(name, "values"), format!("'{value}' is listed twice")));
        }
        if let Some(first) = out.first()
            && std::mem::discriminant(first) != std::mem::discriminant(&value)
        {
            return Err(Invalid::new(
                key(name, "values"),
                format!("all values must have one type ('{first}' and '{value}' differ)"),
            ));
        }
        out.push(value);
    }
    Ok(out)
}

/// An ordered integer range; a log range starts above zero, a step is positive.
fn int_range(name: &str, raw: &ParamFile, min: i64, max: i64) -> Result<Domain, Invalid> {
    if min > max {
        return Err(Invalid::new(key(name, "min"), format!("min '{min}' is greater than max '{max}'")));
    }
    if raw.log && min <= 0 {
        return Err(Invalid::new(key(name, "min"), format!("a log range needs min > 0 (got '{min}')")));
    }
    if let Some(step) = raw.step
        && step <= 0
    {
        return Err(Invalid::new(key(name, "step"), format!("must be positive (got '{step}')")));
    }
    Ok(Domain::Int { min, max, log: raw.log, step: raw.step })
}

/// Exactly one of `flag`, `flags`, `env`, `option` or `template`.
fn apply_of(name: &str, raw: &ParamFile, backend: &BackendSpec) -> Result<Apply, Invalid> {
    let ways =
        [raw.flag.is_some(), raw.flags.is_some(), raw.env.is_some(), raw.option.is_some(), raw.template.is_some()];
    match ways.iter().filter(|w| **w).count() {
        0 => Err(Invalid::new(
            format!("params.{name}"),
            "says how it is applied: one of 'flag', 'flags', 'env', 'option' or 'template'",
        )),
        1 => {
            if let Some(flag) = &raw.flag {
                Ok(Apply::Flags(vec![check_flag(flag, &key(name, "flag"))?]))
            } else if let Some(flags) = &raw.flags {
                flag_list(name, flags)
            } else if let Some(env) = &raw.env {
                env_var(name, env)
            } else if let Some(option) = &raw.option {
                Ok(Apply::Option(option.clone()))
            } else {
                template(name, raw.template.as_deref().expect("one way is set"), backend)
            }
        }
        _ => Err(Invalid::new(
            format!("params.{name}"),
            "give only one of 'flag', 'flags', 'env', 'option' or 'template'",
        )),
    }
}

fn flag_list(name: &str, flags: &[String]) -> Result<Apply, Invalid> {
    if flags.is_empty() {
        return Err(Invalid::new(key(name, "flags"), "must list at least one flag"));
    }
    let flags = flags.iter().map(|f| check_flag(f, &key(name, "flags"))).collect::<Result<_, _>>()?;
    Ok(Apply::Flags(flags))
}

fn check_flag(flag: &str, key: &str) -> Result<String, Invalid> {
    if !flag.starts_with('-') || flag.contains(char::is_whitespace) {
        return Err(Invalid::new(
            key,
            format!("'{flag}' is not a command-line flag (it starts with '-' and has no spaces)"),
        ));
    }
    Ok(flag.to_string())
}

fn env_var(name: &str, env: &str) -> Result<Apply, Invalid> {
    if env.is_empty() || !env.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
        return Err(Invalid::new(
            key(name, "env"),
            format!("'{env}' is not an environment variable name (A-Z, 0-9, _)"),
        ));
    }
    Ok(Apply::Env(env.to_string()))
}

/// `template = "model"`: the backend's model path must hold the `{name}` placeholder.
fn template(name: &str, target: &str, backend: &BackendSpec) -> Result<Apply, Invalid> {
    if target != "model" {
        return Err(Invalid::new(
            key(name, "template"),
            format!("unknown template target '{target}' (expected 'model')"),
        ));
    }
    let placeholder = format!("{{{name}}}");
    if !backend.model.contains(&placeholder) {
        return Err(Invalid::new(
            key(name, "template"),
            format!("backend.model '{}' has no '{placeholder}' placeholder", backend.model),
        ));
    }
    Ok(Apply::Template(target.to_string()))
}

/// The file's `default`, which must lie in the domain.
fn default_of(name: &str, raw: &ParamFile, domain: &Domain) -> Result<Option<Value>, Invalid> {
    let Some(v) = &raw.default else { return Ok(None) };
    let value = toml_to_value(v)
        .filter(|value| domain.contains(value))
        .ok_or_else(|| Invalid::new(key(name, "default"), format!("'{v}' is not in the domain")))?;
    Ok(Some(value))
}

fn toml_to_value(v: &toml::Value) -> Option<Value> {
    match v {
        toml::Value::Boolean(b) => Some(Value::Bool(*b)),
        toml::Value::Integer(i) => Some(Value::Int(*i)),
        toml::Value::Float(f) => Some(Value::Float(*f)),
        toml::Value::String(s) => Some(Value::Str(s.clone())),
        _ => None,
    }
}

/// One model a template can name: the template parameters' values behind it (in parameter
/// order) and the model with them filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelVariant {
    pub values: Vec<(String, Value)>,
    pub model: String,
}

/// Every model `template` (the `[backend] model`) names over the grid points of the template
/// parameters (`template = "model"`), in grid order: Ollama's tags, llama.cpp's files.
pub fn model_variants(template: &str, params: &[Param]) -> Vec<ModelVariant> {
    let mut variants = vec![ModelVariant { values: Vec::new(), model: template.to_string() }];
    for p in params.iter().filter(|p| matches!(p.apply, Apply::Template(_))) {
        let placeholder = format!("{{{}}}", p.name);
        let values = p.domain.grid_points();
        variants = variants
            .iter()
            .flat_map(|v| {
                values.iter().map(|value| {
                    let mut values = v.values.clone();
                    values.push((p.name.clone(), value.clone()));
                    ModelVariant { values, model: v.model.replace(&placeholder, &value.to_string()) }
                })
            })
            .collect();
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_points_of_ranges() {
        let d = Domain::Int { min: 1, max: 10, log: false, step: Some(3) };
        assert_eq!(d.grid_points(), vec![1, 4, 7, 10].into_iter().map(Value::Int).collect::<Vec<_>>());
        let d = Domain::Int { min: 1000, max: 5000, log: true, step: None };
        assert_eq!(d.grid_points(), vec![1000, 2000, 4000, 5000].into_iter().map(Value::Int).collect::<Vec<_>>());
    }
}
