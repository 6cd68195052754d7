//! AdamW as in `torch.optim.AdamW` (bias-corrected moments, decoupled weight decay), updating
//! parameters and moments in place: one fused pass per tensor instead of about ten
//! allocating tensor ops, with the clipping coefficient folded into the gradient reads. Plus the
//! global gradient norm in one pass per gradient.

use std::sync::Mutex;

use candle_core::{CpuStorage, DType, InplaceOp1, InplaceOp2, Layout, Result, Tensor, Var, bail};

use super::par::{self, elements_per_task as chunk};
use super::{f32_data, lock, simd, with_f32};

/// One AdamW update of one parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay for this parameter (0 for biases and LayerNorm gains).
    pub weight_decay: f64,
    /// Updates applied so far including this one (1 for the first), for the bias corrections.
    pub step: usize,
    /// Multiplies the gradient before use: the clipping coefficient, or 1.
    pub grad_scale: f64,
}

/// In place: `m ← β1·m + (1−β1)·ĝ`, `v ← β2·v + (1−β2)·ĝ²` with `ĝ = grad_scale·grad`, then
/// `p ← p·(1 − lr·λ) − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)` — exactly the formula of
/// `torch.optim.AdamW` and of the trainer's reference implementation.
///
/// `param`, `m` and `v` must be contiguous float32 CPU tensors of the grad's shape (see
/// [`super::applies`]); `m` and `v` must not share storage with anything else.
pub fn adamw_step(param: &Var, grad: &Tensor, m: &Tensor, v: &Tensor, s: &AdamWStep) -> Result<()> {
    let p = param.as_tensor();
    for (what, t) in [("parameter", p), ("first moment", m), ("second moment", v)] {
        if t.shape() != grad.shape() {
            bail!(
                "adamw: {what} {:?} and gradient {:?} differ",
                t.dims(),
                grad.dims()
            );
        }
        if !t.device().is_cpu() || t.dtype() != DType::F32 || !t.is_contiguous() {
            bail!("adamw: the fused update needs contiguous float32 CPU tensors ({what})");
        }
    }
    let t = s.step.max(1) as i32;
    let bias_correction1 = 1.0 - s.beta1.powi(t);
    let bias_correction2 = 1.0 - s.beta2.powi(t);
    let update = Update {
        beta1: s.beta1 as f32,
        beta2: s.beta2 as f32,
        grad_scale: s.grad_scale as f32,
        decay: (1.0 - s.lr * s.weight_decay) as f32,
        step_size: (s.lr / bias_correction1) as f32,
        inv_sqrt_bc2: (1.0 / bias_correction2.sqrt()) as f32,
        eps: s.eps as f32,
    };
    // One pass over p, g, m and v. candle lends write access to one tensor per in-place op, so
    // the ops nest: m's, then v's inside it, then p's (reading the gradient) inside that.
    m.inplace_op1(&WithFirstMoment {
        v,
        param: p,
        grad,
        update,
    })
}

/// √(Σ g²) over all gradients (`None`s skipped), accumulated in f64.
pub fn grad_norm(grads: &[Option<Tensor>]) -> Result<f64> {
    let mut total = 0f64;
    for g in grads.iter().flatten() {
        let g = if g.dtype() == DType::F32 && g.device().is_cpu() {
            g.clone()
        } else {
            g.to_dtype(DType::F32)?
                .to_device(&candle_core::Device::Cpu)?
        };
        total += with_f32(&g, |d| {
            let c = chunk(d.len());
            let sums = Mutex::new(0f64);
            par::run(d.chunks(c).collect(), |x| {
                let s = f64::from(sum_squares(x));
                *lock(&sums) += s;
            });
            Ok(sums
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner))
        })?;
    }
    Ok(total.sqrt())
}

crate::simd_fn! {
    fn sum_squares(x: &[f32]) -> f32 {
        simd::dot(x, x)
    }
}

fn dst_slice<'a>(dst: &'a mut CpuStorage, l: &Layout) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(d) = dst else {
        bail!("adamw: float32 only");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut d[a..b]),
        None => bail!("adamw: parameters and moments must be contiguous"),
    }
}

/// The per-step constants of the update.
#[derive(Clone, Copy)]
struct Update {
    beta1: f32,
    beta2: f32,
    grad_scale: f32,
    decay: f32,
    step_size: f32,
    inv_sqrt_bc2: f32,
    eps: f32,
}

crate::simd_fn! {
    fn update_kernel(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], u: &Update) {
        let Update { beta1, beta2, grad_scale, decay, step_size, inv_sqrt_bc2, eps } = *u;
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g * grad_scale;
            *m = beta1 * *m + (1.0 - beta1) * g;
            *v = beta2 * *v + (1.0 - beta2) * (g * g);
            let denominator = v.sqrt() * inv_sqrt_bc2 + eps;
            *p = *p * decay - *m / denominator * step_size;
        }
    }
}

/// Holds m for writing; takes v next.
struct WithFirstMoment<'a> {
    v: &'a Tensor,
    param: &'a Tensor,
    grad: &'a Tensor,
    update: Update,
}

/// Holds m and v for writing; takes p (and reads the gradient) next.
struct WithMoments<'a> {
    m: Mutex<&'a mut [f32]>,
    param: &'a Tensor,
    grad: &'a Tensor,
    update: Update,
}

/// Updates p, m and v in one pass.
struct Apply<'a> {
    moments: Mutex<(&'a mut [f32], &'a mut [f32])>,
    update: Update,
}

impl InplaceOp1 for WithFirstMoment<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(&self, m: &mut CpuStorage, ml: &Layout) -> Result<()> {
        let m = dst_slice(m, ml)?;
        self.v.inplace_op1(&WithMoments {
            m: Mutex::new(m),
            param: self.param,
            grad: self.grad,
            update: self.update,
        })
    }
}

impl InplaceOp1 for WithMoments<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(&self, v: &mut CpuStorage, vl: &Layout) -> Result<()> {
        let v = dst_slice(v, vl)?;
        let mut m = lock(&self.m);
        self.param.inplace_op2(
            self.grad,
            &Apply {
                moments: Mutex::new((&mut **m, v)),
                update: self.update,
            },
        )
    }
}

impl InplaceOp2 for Apply<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> Result<()> {
        let p = dst_slice(dst, dst_l)?;
        let g = f32_data(g, gl)?;
        let mut moments = lock(&self.moments);
        let (m, v) = &mut *moments;
        if m.len() != p.len() || v.len() != p.len() || g.len() != p.len() {
            bail!("adamw: parameter, gradient and moments differ in size");
        }
        let c = chunk(p.len());
        let tasks = p
            .chunks_mut(c)
            .zip(g.chunks(c))
            .zip(m.chunks_mut(c))
            .zip(v.chunks_mut(c))
            .collect();
        par::run(tasks, |(((p, g), m), v)| {
            update_kernel(p, g, m, v, &self.update)
        });
        Ok(())
    }
}
