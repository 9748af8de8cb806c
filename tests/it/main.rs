//! Integration tests: one binary, a module per area. Tests in `engine` drive the real llama.cpp
//! engine (installed by `scripts/setup-llamacpp`); they fail, not skip, when it is missing.

mod budget;
mod capture;
mod common;
mod engine;
mod faults;
mod fleet;
mod intensify;
mod measure;
mod models;
mod ollama;
mod operate;
mod output;
mod pipeline;
mod remeasure;
mod report;
mod search;
mod spaces;
mod trace;
mod vllm;
