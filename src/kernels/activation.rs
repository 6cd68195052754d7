//! GELU (tanh approximation or exact erf) as one graph node with an exact, fused backward.
//! candle's own `gelu` has a backward of about ten tensor ops, and `f32::tanh`/`erf` are libm
//! calls that keep its loops scalar.

use candle_core::{Result, Shape, Tensor};

use super::simd::{self, INV_SQRT_2PI, SQRT_2_OVER_PI};
use super::{Input, Kernel, apply, cpu_tensor, par, with_f32s};

/// Which GELU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gelu {
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`: GPT-2's `gelu_new`.
    Tanh,
    /// `0.5·x·(1 + erf(x/√2))`: BERT's `gelu`.
    Erf,
}

/// GELU of `x`, element-wise. Differentiable.
pub fn gelu(x: &Tensor, kind: Gelu) -> Result<Tensor> {
    apply(GeluOp(kind), [x])
}

struct GeluOp(Gelu);

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
pub(crate) fn forward(x: &[f32], y: &mut [f32], kind: Gelu) {
    let c = par::elements_per_task(x.len());
    par::run(
        y.chunks_mut(c).zip(x.chunks(c)).collect(),
        |(y, x)| match kind {
            Gelu::Erf => gelu_erf_fwd(x, y),
            Gelu::Tanh => gelu_tanh_fwd(x, y),
        },
    );
}

/// `dx = dy · gelu'(x)` element-wise, shared over the threads.
pub(crate) fn backward(x: &[f32], dy: &[f32], dx: &mut [f32], kind: Gelu) {
    let c = par::elements_per_task(x.len());
    let tasks = dx
        .chunks_mut(c)
        .zip(x.chunks(c))
        .zip(dy.chunks(c))
        .collect();
    par::run(tasks, |((dx, x), dy)| match kind {
        Gelu::Erf => gelu_erf_bwd(x, dy, dx),
        Gelu::Tanh => gelu_tanh_bwd(x, dy, dx),
    });
}

impl Kernel<1> for GeluOp {
    fn name(&self) -> &'static str {
        match self.0 {
            Gelu::Erf => "fused-gelu-erf",
            Gelu::Tanh => "fused-gelu-tanh",
        }
    }

    fn forward(&self, [x]: [Input<'_>; 1]) -> Result<(Vec<f32>, Shape)> {
        let data = x.f32()?;
        let mut y = vec![0f32; data.len()];
        forward(&data, &mut y, self.0);
        Ok((y, x.layout.shape().clone()))
    }

    fn backward(&self, [x]: [&Tensor; 1], _y: &Tensor, dy: &Tensor) -> Result<[Option<Tensor>; 1]> {
        let dx = with_f32s([x, dy], |[x, dy]| {
            let mut dx = vec![0f32; x.len()];
            backward(x, dy, &mut dx, self.0);
            Ok(dx)
        })?;
        Ok([Some(cpu_tensor(dx, x)?)])
    }
}
