//! Fused CPU kernels with hand-written backward passes (work in progress).

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Result, Tensor, Var};

static ENABLED: AtomicBool = AtomicBool::new(true);

pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    candle_nn::loss::cross_entropy(logits, targets)
}

#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

pub struct AdamW;

impl AdamW {
    pub fn new(_vars: Vec<Var>, _c: AdamWConfig) -> Result<Self> {
        Ok(Self)
    }
    pub fn step(&mut self, _g: &[Option<Tensor>], _lr: f64, _clip: Option<f64>) -> Result<f32> {
        Ok(0.0)
    }
}
