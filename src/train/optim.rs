//! AdamW with decoupled weight decay on matrices only, the warm-up + cosine learning-rate
//! schedule, and clipping by the global gradient norm — the same recipe as nanoGPT's train.py.
//!
//! Written out here because `candle_nn::AdamW` applies one weight decay to every parameter, while
//! GPT-style training decays only tensors with two or more dimensions (weights and embeddings),
//! never biases or LayerNorm gains.

use std::collections::{BTreeMap, HashMap};

use candle_core::{Tensor, Var};

use crate::error::{GlassboxError, Result};
use crate::kernels;

/// Linear warm-up to `max_lr`, then a cosine decay to `min_lr` at `decay_steps`, flat after.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub max_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub decay_steps: usize,
}

impl LrSchedule {
    /// The learning rate for step `step` (0-based), as nanoGPT's `get_lr(it)`.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.max_lr * (step + 1) as f64 / (self.warmup_steps + 1) as f64;
        }
        if step > self.decay_steps || self.decay_steps <= self.warmup_steps {
            return self.min_lr;
        }
        let decay_ratio =
            (step - self.warmup_steps) as f64 / (self.decay_steps - self.warmup_steps) as f64;
        let coeff = 0.5 * (1.0 + (std::f64::consts::PI * decay_ratio).cos()); // 1 → 0
        self.min_lr + coeff * (self.max_lr - self.min_lr)
    }
}

/// AdamW hyper-parameters (the learning rate comes from the schedule at each step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWSettings {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// One trainable tensor.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its name in the checkpoint (`transformer.h.0.attn.c_attn.weight`).
    pub name: String,
    pub var: Var,
    /// Matrices and embeddings decay; biases and LayerNorm gains do not.
    pub decay: bool,
}

impl Param {
    pub fn new(name: String, var: Var) -> Self {
        let decay = var.as_tensor().rank() >= 2;
        Self { name, var, decay }
    }
}

/// AdamW as in PyTorch (`torch.optim.AdamW`): bias-corrected moments, decay applied to the
/// weights directly (decoupled) and scaled by the learning rate.
#[derive(Debug)]
pub struct AdamW {
    params: Vec<Param>,
    /// Running mean of the gradients (`exp_avg`), one per parameter.
    first_moments: Vec<Tensor>,
    /// Running mean of the squared gradients (`exp_avg_sq`).
    second_moments: Vec<Tensor>,
    /// Updates applied so far (for bias correction).
    steps_taken: usize,
    pub settings: AdamWSettings,
}

impl AdamW {
    pub fn new(params: Vec<Param>, settings: AdamWSettings) -> Result<Self> {
        let zeros = |p: &Param| p.var.as_tensor().zeros_like();
        let first_moments = params
            .iter()
            .map(zeros)
            .collect::<candle_core::Result<_>>()?;
        let second_moments = params
            .iter()
            .map(zeros)
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            params,
            first_moments,
            second_moments,
            steps_taken: 0,
            settings,
        })
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    pub fn steps_taken(&self) -> usize {
        self.steps_taken
    }

    /// Applies one update with `grads[i]` the gradient of `params()[i]` (`None`: the parameter
    /// did not take part in the loss; it is left alone, as PyTorch does for `grad is None`).
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        if grads.len() != self.params.len() {
            return Err(GlassboxError::Training(format!(
                "{} gradients for {} parameters",
                grads.len(),
                self.params.len()
            )));
        }
        self.steps_taken += 1;
        let AdamWSettings {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.settings;
        let t = self.steps_taken as i32;
        let bias_correction1 = 1.0 - beta1.powi(t);
        let bias_correction2 = 1.0 - beta2.powi(t);
        let step_size = lr / bias_correction1;
        for (i, param) in self.params.iter().enumerate() {
            // Detached: gradients computed by backward still point into the step's graph, and a
            // moment built from them would keep every past step's graph alive.
            let Some(grad) = grads[i].as_ref().map(Tensor::detach) else {
                continue;
            };
            let grad = &grad;
            let weights = param.var.as_tensor();
            // m = β1·m + (1-β1)·g ;  v = β2·v + (1-β2)·g²
            let m = ((&self.first_moments[i] * beta1)? + (grad * (1.0 - beta1))?)?;
            let v = ((&self.second_moments[i] * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
            // Decoupled decay: shrink the weights before the Adam step, by lr·λ.
            let decayed = if param.decay && weight_decay > 0.0 {
                (weights * (1.0 - lr * weight_decay))?
            } else {
                weights.clone()
            };
            // p -= lr/(1-β1ᵗ) · m / (√v/√(1-β2ᵗ) + ε)
            let denominator = ((v.sqrt()? / bias_correction2.sqrt())? + eps)?;
            let update = ((&m / denominator)? * step_size)?;
            param.var.set(&(decayed - update)?)?;
            self.first_moments[i] = m.detach();
            self.second_moments[i] = v.detach();
        }
        Ok(())
    }

    /// The global gradient norm (before clipping): one fused pass per gradient on the CPU in
    /// float32, plain tensor ops elsewhere.
    pub fn grad_norm(&self, grads: &[Option<Tensor>]) -> Result<f32> {
        if self.fused_applies(grads) {
            return Ok(kernels::grad_norm(grads)? as f32);
        }
        global_grad_norm(grads)
    }

    /// Clips the gradients to `max_norm` by their global `norm` (0: no clipping), then applies
    /// one update. On the CPU in float32 the fused kernels update parameters and moments in
    /// place, one pass per tensor with the clipping folded into the gradient reads; the
    /// result is [`AdamW::step`]'s within float32 rounding (tests/model/fused.rs).
    pub fn clip_and_step(
        &mut self,
        grads: &mut [Option<Tensor>],
        lr: f64,
        norm: f32,
        max_norm: f64,
    ) -> Result<()> {
        if !self.fused_applies(grads) {
            clip_grads(grads, norm, max_norm)?;
            return self.step(grads, lr);
        }
        let grad_scale = clip_coefficient(norm, max_norm);
        self.steps_taken += 1;
        let AdamWSettings {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.settings;
        for (i, param) in self.params.iter().enumerate() {
            let Some(grad) = &grads[i] else { continue };
            let update = kernels::AdamWStep {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay: if param.decay { weight_decay } else { 0.0 },
                step: self.steps_taken,
                grad_scale,
            };
            kernels::adamw_step(
                &param.var,
                grad,
                &self.first_moments[i],
                &self.second_moments[i],
                &update,
            )?;
        }
        Ok(())
    }

    /// Whether the fused update can run: fused kernels on, every parameter, moment and gradient
    /// a contiguous float32 CPU tensor.
    fn fused_applies(&self, grads: &[Option<Tensor>]) -> bool {
        grads.len() == self.params.len()
            && self.params.iter().enumerate().all(|(i, p)| {
                let contiguous = |t: &Tensor| kernels::applies(t) && t.is_contiguous();
                contiguous(p.var.as_tensor())
                    && contiguous(&self.first_moments[i])
                    && contiguous(&self.second_moments[i])
                    && grads[i].as_ref().is_none_or(contiguous)
            })
    }

    /// The moments as named tensors (`exp_avg.NAME`, `exp_avg_sq.NAME`), for the trainer state.
    pub fn state_tensors(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (i, p) in self.params.iter().enumerate() {
            out.insert(format!("exp_avg.{}", p.name), self.first_moments[i].clone());
            out.insert(
                format!("exp_avg_sq.{}", p.name),
                self.second_moments[i].clone(),
            );
        }
        out
    }

    /// Restores the moments written by [`AdamW::state_tensors`] after `steps_taken` updates.
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        steps_taken: usize,
    ) -> Result<()> {
        for (i, p) in self.params.iter().enumerate() {
            for (prefix, slot) in [
                ("exp_avg", &mut self.first_moments[i]),
                ("exp_avg_sq", &mut self.second_moments[i]),
            ] {
                let name = format!("{prefix}.{}", p.name);
                let tensor = tensors.get(&name).ok_or_else(|| {
                    GlassboxError::Training(format!("optimizer state has no `{name}`"))
                })?;
                if tensor.dims() != slot.dims() {
                    return Err(GlassboxError::Training(format!(
                        "optimizer state `{name}` has shape {:?}, the parameter {:?}",
                        tensor.dims(),
                        slot.dims()
                    )));
                }
                // A copy with storage of its own: the fused update writes moments in place.
                *slot = tensor
                    .to_device(slot.device())?
                    .to_dtype(slot.dtype())?
                    .copy()?;
            }
        }
        self.steps_taken = steps_taken;
        Ok(())
    }
}

/// The global L2 norm of all gradients together (as `torch.nn.utils.clip_grad_norm_` computes).
pub fn global_grad_norm(grads: &[Option<Tensor>]) -> Result<f32> {
    let mut sum_of_squares = 0f64;
    for grad in grads.iter().flatten() {
        let square: f32 = grad.sqr()?.sum_all()?.to_scalar()?;
        sum_of_squares += f64::from(square);
    }
    Ok(sum_of_squares.sqrt() as f32)
}

/// What the gradients are multiplied by: `max_norm / (norm + 1e-6)` when that is below 1, else 1
/// (also when `max_norm` is 0: no clipping).
fn clip_coefficient(norm: f32, max_norm: f64) -> f64 {
    if max_norm > 0.0 {
        (max_norm / (f64::from(norm) + 1e-6)).min(1.0)
    } else {
        1.0
    }
}

/// Scales the gradients so their global norm is at most `max_norm` (PyTorch's rule:
/// multiply by `max_norm / (norm + 1e-6)` when that is below 1).
pub fn clip_grads(grads: &mut [Option<Tensor>], norm: f32, max_norm: f64) -> Result<()> {
    let coefficient = clip_coefficient(norm, max_norm);
    if coefficient < 1.0 {
        for grad in grads.iter_mut().flatten() {
            *grad = (&*grad * coefficient)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_warms_up_then_decays_to_min() {
        let s = LrSchedule {
            max_lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 100,
            decay_steps: 2000,
        };
        assert!((s.lr_at(0) - 1e-3 / 101.0).abs() < 1e-12);
        assert!((s.lr_at(100) - 1e-3).abs() < 1e-12);
        assert!((s.lr_at(1050) - 5.5e-4).abs() < 1e-9);
        assert!((s.lr_at(2000) - 1e-4).abs() < 1e-12);
        assert_eq!(s.lr_at(5000), 1e-4);
    }

    /// One AdamW step against values worked out by hand from PyTorch's formulas.
    #[test]
    fn adamw_matches_pytorch_formula() -> Result<()> {
        let device = Device::Cpu;
        let w = Var::from_tensor(&Tensor::new(&[[1.0f32, -2.0]], &device)?)?;
        let b = Var::from_tensor(&Tensor::new(&[0.5f32], &device)?)?;
        let settings = AdamWSettings {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut opt = AdamW::new(
            vec![
                Param::new("w".into(), w.clone()),
                Param::new("b".into(), b.clone()),
            ],
            settings,
        )?;
        let gw = Tensor::new(&[[0.1f32, 0.2]], &device)?;
        let gb = Tensor::new(&[-0.3f32], &device)?;
        opt.step(&[Some(gw), Some(gb)], 0.01)?;
        // First step: m̂ = g, v̂ = g², so the update is lr·sign(g) (up to ε); w also decays.
        let w_new = w.as_tensor().to_vec2::<f32>()?;
        assert!((w_new[0][0] - (1.0 * (1.0 - 0.001) - 0.01)).abs() < 1e-6);
        assert!((w_new[0][1] - (-2.0 * (1.0 - 0.001) - 0.01)).abs() < 1e-6);
        let b_new = b.as_tensor().to_vec1::<f32>()?;
        assert!(
            (b_new[0] - (0.5 + 0.01)).abs() < 1e-6,
            "bias is not decayed"
        );
        Ok(())
    }

    #[test]
    fn clipping_caps_the_global_norm() -> Result<()> {
        let device = Device::Cpu;
        let mut grads = vec![
            Some(Tensor::new(&[3.0f32], &device)?),
            Some(Tensor::new(&[4.0f32], &device)?),
            None,
        ];
        let norm = global_grad_norm(&grads)?;
        assert!((norm - 5.0).abs() < 1e-6);
        clip_grads(&mut grads, norm, 1.0)?;
        let clipped = global_grad_norm(&grads)?;
        assert!((clipped - 1.0).abs() < 1e-5);
        Ok(())
    }
}
