//! Lesson tests: the course files (format, verify: numbers, claims) and the course taken in the app.
//!
//! One test binary per subject: each binary links candle and egui once, which on two cores is
//! much of the test time. The modules below are the files beside this one.

#[path = "../app_support/mod.rs"]
mod app_support;

mod course;
mod in_app;
