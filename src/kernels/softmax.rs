//! Softmax over the last dimension as one graph node with its backward
//! (`dx = p ⊙ (dy − Σ dy·p)`), unlike `candle_nn::ops::softmax_last_dim`, which has none.

use candle_core::{Result, Shape, Tensor, bail};

use super::par::{self, rows_per_task};
use super::{Input, Kernel, apply, cpu_tensor, simd, with_f32s};

/// Softmax over the last dimension. Differentiable.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    apply(SoftmaxOp, [x])
}

struct SoftmaxOp;

crate::simd_fn! {
    pub(crate) fn softmax_rows(x: &[f32], y: &mut [f32], width: usize) {
        for (xr, yr) in x.chunks_exact(width).zip(y.chunks_exact_mut(width)) {
            let m = simd::max(xr);
            for (y, x) in yr.iter_mut().zip(xr) {
                *y = simd::exp(x - m);
            }
            let s = simd::sum(yr);
            for y in yr.iter_mut() {
                *y /= s;
            }
        }
    }
}

crate::simd_fn! {
    fn softmax_bwd_rows(p: &[f32], dy: &[f32], dx: &mut [f32], width: usize) {
        for ((pr, dyr), dxr) in p
            .chunks_exact(width)
            .zip(dy.chunks_exact(width))
            .zip(dx.chunks_exact_mut(width))
        {
            let d = simd::dot(pr, dyr);
            for ((dx, p), dy) in dxr.iter_mut().zip(pr).zip(dyr) {
                *dx = p * (dy - d);
            }
        }
    }
}

/// The row width: the last dimension, which must not be empty.
fn width(dims: &[usize]) -> Result<usize> {
    match dims.last() {
        Some(&w) if w > 0 => Ok(w),
        _ => bail!("softmax over an empty or scalar dimension: {dims:?}"),
    }
}

impl Kernel<1> for SoftmaxOp {
    fn name(&self) -> &'static str {
        "fused-softmax"
    }

    fn forward(&self, [x]: [Input<'_>; 1]) -> Result<(Vec<f32>, Shape)> {
        let w = width(x.dims())?;
        let data = x.f32()?;
        let mut y = vec![0f32; data.len()];
        let per = rows_per_task(data.len() / w, w) * w;
        par::run(
            y.chunks_mut(per).zip(data.chunks(per)).collect(),
            |(y, x)| softmax_rows(x, y, w),
        );
        Ok((y, x.layout.shape().clone()))
    }

    fn backward(&self, [x]: [&Tensor; 1], p: &Tensor, dy: &Tensor) -> Result<[Option<Tensor>; 1]> {
        let w = width(x.dims())?;
        let dx = with_f32s([p, dy], |[p, dy]| {
            let mut dx = vec![0f32; p.len()];
            let per = rows_per_task(p.len() / w, w) * w;
            let tasks = dx
                .chunks_mut(per)
                .zip(p.chunks(per))
                .zip(dy.chunks(per))
                .collect();
            par::run(tasks, |((dx, p), dy)| softmax_bwd_rows(p, dy, dx, w));
            Ok(dx)
        })?;
        Ok([Some(cpu_tensor(dx, x)?)])
    }
}
