//! Training tests: every objective, the shipped assets' recipes and figures, the data readers.
//!
//! One test binary per subject: each binary links candle and egui once, which on two cores is
//! much of the test time. The modules below are the files beside this one.

#[path = "../common/mod.rs"]
mod common;

mod assets;
mod data;
mod objectives;
