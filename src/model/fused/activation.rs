//! GELU (tanh approximation or exact erf) as one graph node with an exact, fused backward.
//! candle's own `gelu` has a backward of about ten tensor ops, and `f32::tanh`/`erf` are libm
//! calls that keep its loops scalar.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::par;
use super::simd::{self, INV_SQRT_2PI, SQRT_2_OVER_PI};
use super::{cpu_tensor, f32_data, with_f32};

/// GELU: `erf = false` is `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (GPT-2's `gelu_new`),
/// `erf = true` is `0.5·x·(1 + erf(x/√2))` (BERT's `gelu`). Differentiable.
pub fn gelu(x: &Tensor, erf: bool) -> Result<Tensor> {
    x.apply_op1_arc(Arc::new(Box::new(GeluOp { erf })))
}

struct GeluOp {
    erf: bool,
}

const COEF: f32 = 0.044_715;

crate::simd_fn! {
    fn gelu_tanh_fwd(x: &[f32], y: &mut [f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            let t = simd::tanh(SQRT_2_OVER_PI * (x + COEF * x * x * x));
            *y = 0.5 * x * (1.0 + t);
        }
    }
}

crate::simd_fn! {
    fn gelu_tanh_bwd(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
            let t = simd::tanh(SQRT_2_OVER_PI * (x + COEF * x * x * x));
            let inner_grad = SQRT_2_OVER_PI * (1.0 + 3.0 * COEF * x * x);
            *dx = dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * inner_grad);
        }
    }
}

crate::simd_fn! {
    fn gelu_erf_fwd(x: &[f32], y: &mut [f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = 0.5 * x * (1.0 + simd::erf(x * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

crate::simd_fn! {
    fn gelu_erf_bwd(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
            // erf(x/√2) comes with e^{-x²/2}, the Gaussian density's factor.
            let (erf, gaussian) = simd::erf_with_gaussian(x * std::f32::consts::FRAC_1_SQRT_2);
            let cdf = 0.5 * (1.0 + erf);
            let pdf = INV_SQRT_2PI * gaussian;
            *dx = dy * (cdf + x * pdf);
        }
    }
}

/// `y = gelu(x)` element-wise, shared over the threads.
pub(super) fn forward(x: &[f32], y: &mut [f32], erf: bool) {
    let c = par::elements_per_task(x.len());
    par::run(y.chunks_mut(c).zip(x.chunks(c)).collect(), |(y, x)| {
        if erf {
            gelu_erf_fwd(x, y)
        } else {
            gelu_tanh_fwd(x, y)
        }
    });
}

/// `dx = dy · gelu'(x)` element-wise, shared over the threads.
pub(super) fn backward(x: &[f32], dy: &[f32], dx: &mut [f32], erf: bool) {
    let c = par::elements_per_task(x.len());
    let tasks = dx
        .chunks_mut(c)
        .zip(x.chunks(c))
        .zip(dy.chunks(c))
        .collect();
    par::run(tasks, |((dx, x), dy)| {
        if erf {
            gelu_erf_bwd(x, dy, dx)
        } else {
            gelu_tanh_bwd(x, dy, dx)
        }
    });
}

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        if self.erf {
            "fused-gelu-erf"
        } else {
            "fused-gelu-tanh"
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s, l)?;
        let mut y = vec![0f32; x.len()];
        forward(&x, &mut y, self.erf);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let erf = self.erf;
        let dx = with_f32(arg, |x| {
            with_f32(dy, |dy| {
                let mut dx = vec![0f32; x.len()];
                backward(x, dy, &mut dx, erf);
                Ok(dx)
            })
        })?;
        Ok(Some(cpu_tensor(dx, arg)?))
    }
}
