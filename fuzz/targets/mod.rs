//! The fuzz targets' bodies, shared by the libFuzzer binaries
//! (`fuzz/fuzz_targets/`, nightly) and the corpus replay test
//! (`tests/fuzz_corpora.rs`, stable, in CI). Each `run` must not panic on
//! any input and checks what the code promises for it.

pub mod chat;
pub mod checkpoint;
pub mod detokenize;
pub mod request;
pub mod stop_scan;
pub mod tokenizer;

mod common;
