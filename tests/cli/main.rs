//! Command-line tests: `glassbox` run as a user would, training end to end, and the faults a user meets.
//!
//! One test binary per subject: each binary links candle and egui once, which on two cores is
//! much of the test time. The modules below are the files beside this one.

#[path = "../common/mod.rs"]
mod common;

mod faults;
mod inspect;
mod train;
