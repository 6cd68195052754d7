//! Glassbox: look inside small transformers while they run and while they learn.
//!
//! Data flows one way: text → [`tokenizer`] → [`model`] (with a [`model::trace::Trace`]) → views.
//! Training ([`train`]) runs beside it on a worker thread. The CLI (`main.rs`) and the desktop app
//! ([`app`]) call the same functions.

pub mod analysis;
pub mod app;
pub mod data;
pub mod device;
pub mod error;
pub mod generate;
pub mod hub;
pub mod inspect;
pub mod kernels;
pub mod lessons;
pub mod model;
pub mod tokenizer;
pub mod train;
pub mod translate;
pub mod util;

pub use error::{GlassboxError, Result};
