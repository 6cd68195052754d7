//! Softmax over the last dimension as one graph node with its backward
//! (`dx = p ⊙ (dy − Σ dy·p)`), unlike `candle_nn::ops::softmax_last_dim`, which has none.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};

use super::par::{self, rows_per_task};
use super::{cpu_tensor, f32_data, simd, with_f32};

/// Softmax over the last dimension. Differentiable.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    x.apply_op1_arc(Arc::new(Box::new(SoftmaxOp)))
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

fn width(l: &Layout) -> Result<usize> {
    match l.dims().last() {
        Some(&w) if w > 0 => Ok(w),
        _ => bail!("softmax over an empty or scalar dimension: {:?}", l.dims()),
    }
}

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "fused-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let w = width(l)?;
        let x = f32_data(s, l)?;
        let mut y = vec![0f32; x.len()];
        let per = rows_per_task(x.len() / w, w) * w;
        par::run(y.chunks_mut(per).zip(x.chunks(per)).collect(), |(y, x)| {
            softmax_rows(x, y, w)
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let w = match arg.dims().last() {
            Some(&w) if w > 0 => w,
            _ => bail!("softmax backward over an empty dimension"),
        };
        let dx = with_f32(res, |p| {
            with_f32(dy, |dy| {
                let mut dx = vec![0f32; p.len()];
                let per = rows_per_task(p.len() / w, w) * w;
                let tasks = dx
                    .chunks_mut(per)
                    .zip(p.chunks(per))
                    .zip(dy.chunks(per))
                    .collect();
                par::run(tasks, |((dx, p), dy)| softmax_bwd_rows(p, dy, dx, w));
                Ok(dx)
            })
        })?;
        Ok(Some(cpu_tensor(dx, arg)?))
    }
}
