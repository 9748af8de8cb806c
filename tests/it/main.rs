//! Integration tests: one binary, a module per area. Tests in `engine` drive the real llama.cpp
//! engine (installed by `scripts/setup-llamacpp`); they fail, not skip, when it is missing.

mod common;
mod engine;
mod faults;
mod report;
mod measure;
mod search;
mod ollama;
mod spaces;
mod vllm;
