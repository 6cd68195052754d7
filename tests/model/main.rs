//! Model tests: parity with transformers, the fused kernels, checkpoints, parameter counts, tokenizers, MiniLM.
//!
//! One test binary per subject: each binary links candle and egui once, which on two cores is
//! much of the test time. The modules below are the files beside this one.

#[path = "../common/mod.rs"]
mod common;

mod checkpoint;
mod fused;
mod heads_and_trace;
mod minilm;
mod params;
mod parity;
mod tokenizer;
