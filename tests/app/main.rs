//! App tests: the shell, every view, live training and the snapshot images, driven through accessible labels.
//!
//! One test binary per subject: each binary links candle and egui once, which on two cores is
//! much of the test time. The modules below are the files beside this one.

#[path = "../app_support/mod.rs"]
mod app_support;
#[path = "../common/mod.rs"]
mod common;

mod shell;
mod snapshots;
mod training;
mod views;
