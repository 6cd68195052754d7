//! LayerNorm over the last dimension as one graph node. The forward keeps each row's mean and
//! 1/σ for the backward, which produces dx, dγ and dβ in one pass over the rows.

use std::sync::Mutex;

use candle_core::{Result, Shape, Tensor, bail};

use super::par::{self, rows_per_task};
use super::{Accumulate, Input, Kernel, apply, cpu_tensor, lock, simd, with_f32s};

/// `(x - mean) / √(var + eps) · weight (+ bias)` over the last dimension (biased variance, as
/// PyTorch). Differentiable in `x`, `weight` and `bias`.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    let h = weight.elem_count();
    if weight.rank() != 1 || x.dims().last() != Some(&h) || bias.is_some_and(|b| b.dims() != [h]) {
        bail!(
            "layer_norm: input {:?}, weight {:?}, bias {:?}",
            x.dims(),
            weight.dims(),
            bias.map(|b| b.dims().to_vec())
        );
    }
    let op = LayerNormOp {
        eps: eps as f32,
        saved: Mutex::new(None),
    };
    match bias {
        Some(b) => apply(op, [x, weight, b]),
        None => apply(op, [x, weight]),
    }
}

struct LayerNormOp {
    eps: f32,
    /// Per-row mean and 1/σ from the forward.
    saved: Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

crate::simd_fn! {
    fn forward_rows(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        eps: f32,
        y: &mut [f32],
        mean: &mut [f32],
        rstd: &mut [f32],
    ) {
        let h = w.len();
        let inv_h = 1.0 / h as f32;
        for (((xr, yr), m), r) in x
            .chunks_exact(h)
            .zip(y.chunks_exact_mut(h))
            .zip(mean.iter_mut())
            .zip(rstd.iter_mut())
        {
            let mu = simd::sum(xr) * inv_h;
            for (y, x) in yr.iter_mut().zip(xr) {
                *y = x - mu;
            }
            let var = simd::dot(yr, yr) * inv_h;
            let rs = 1.0 / (var + eps).sqrt();
            if b.is_empty() {
                for (y, w) in yr.iter_mut().zip(w) {
                    *y = *y * rs * w;
                }
            } else {
                for ((y, w), b) in yr.iter_mut().zip(w).zip(b) {
                    *y = *y * rs * w + b;
                }
            }
            *m = mu;
            *r = rs;
        }
    }
}

crate::simd_fn! {
    /// dx for the rows (written or added, as `dx_write` says), and this block's partial dγ, dβ
    /// (added into `dw`, `db`).
    fn backward_rows(
        x: &[f32],
        w: &[f32],
        mean: &[f32],
        rstd: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        dw: &mut [f32],
        db: &mut [f32],
        xhat: &mut [f32],
        g: &mut [f32],
        dx_write: Accumulate,
    ) {
        let h = w.len();
        let inv_h = 1.0 / h as f32;
        for ((((xr, dyr), dxr), &mu), &rs) in x
            .chunks_exact(h)
            .zip(dy.chunks_exact(h))
            .zip(dx.chunks_exact_mut(h))
            .zip(mean)
            .zip(rstd)
        {
            for (xh, x) in xhat.iter_mut().zip(xr) {
                *xh = (x - mu) * rs;
            }
            for ((g, dy), w) in g.iter_mut().zip(dyr).zip(w) {
                *g = dy * w;
            }
            let a = simd::sum(g) * inv_h;
            let c = simd::dot(g, xhat) * inv_h;
            match dx_write {
                Accumulate::Add => {
                    for ((dx, g), xh) in dxr.iter_mut().zip(g.iter()).zip(xhat.iter()) {
                        *dx += rs * (g - a - xh * c);
                    }
                }
                Accumulate::Overwrite => {
                    for ((dx, g), xh) in dxr.iter_mut().zip(g.iter()).zip(xhat.iter()) {
                        *dx = rs * (g - a - xh * c);
                    }
                }
            }
            for ((dw, dy), xh) in dw.iter_mut().zip(dyr).zip(xhat.iter()) {
                *dw += dy * xh;
            }
            simd::axpy(db, 1.0, dyr);
        }
    }
}

/// LayerNorm of the rows of `x` (row width `w.len()`; `b` empty for no bias) into `y`, with each
/// row's mean and 1/σ, shared over the threads.
pub(crate) fn forward(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    eps: f32,
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
) {
    let h = w.len().max(1);
    let rows = mean.len();
    let per = rows_per_task(rows, h);
    let tasks = y
        .chunks_mut(per * h)
        .zip(mean.chunks_mut(per))
        .zip(rstd.chunks_mut(per))
        .zip(x.chunks(per * h))
        .collect();
    par::run(tasks, |(((y, m), r), x)| {
        forward_rows(x, w, b, eps, y, m, r)
    });
}

/// The backward of [`forward`]: dx written or added (as `dx_write` says), `(dγ, dβ)` returned.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    x: &[f32],
    w: &[f32],
    mean: &[f32],
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dx_write: Accumulate,
) -> (Vec<f32>, Vec<f32>) {
    let h = w.len().max(1);
    let rows = mean.len();
    let per = rows_per_task(rows, h);
    // Each task sums its rows' dγ, dβ into its own [dγ | dβ | scratch] block.
    let tasks_n = rows.div_ceil(per);
    let mut partials = vec![0f32; tasks_n * 4 * h];
    let tasks = dx
        .chunks_mut(per * h)
        .zip(x.chunks(per * h))
        .zip(dy.chunks(per * h))
        .zip(mean.chunks(per))
        .zip(rstd.chunks(per))
        .zip(partials.chunks_mut(4 * h))
        .collect();
    par::run(tasks, |(((((dx, x), dy), m), r), part)| {
        let (dw, rest) = part.split_at_mut(h);
        let (db, rest) = rest.split_at_mut(h);
        let (xhat, g) = rest.split_at_mut(h);
        backward_rows(x, w, m, r, dy, dx, dw, db, xhat, g, dx_write);
    });
    let mut dw = vec![0f32; h];
    let mut db = vec![0f32; h];
    for part in partials.chunks(4 * h) {
        simd::axpy(&mut dw, 1.0, &part[..h]);
        simd::axpy(&mut db, 1.0, &part[h..2 * h]);
    }
    (dw, db)
}

impl LayerNormOp {
    /// The normalised rows and their shape; keeps each row's mean and 1/σ for the backward.
    fn forward_inputs(
        &self,
        x: Input<'_>,
        w: Input<'_>,
        b: Option<Input<'_>>,
    ) -> Result<(Vec<f32>, Shape)> {
        let shape = x.layout.shape().clone();
        let x = x.f32()?;
        let w = w.f32()?;
        let b = match b {
            Some(b) => b.f32()?,
            None => std::borrow::Cow::Borrowed(&[][..]),
        };
        let h = w.len();
        if h == 0 {
            bail!("layer_norm over an empty dimension");
        }
        let rows = x.len() / h;
        let mut y = vec![0f32; x.len()];
        let mut mean = vec![0f32; rows];
        let mut rstd = vec![0f32; rows];
        forward(&x, &w, &b, self.eps, &mut y, &mut mean, &mut rstd);
        *lock(&self.saved) = Some((mean, rstd));
        Ok((y, shape))
    }

    /// `(dx, dγ, dβ)`.
    fn backward_tensors(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
    ) -> Result<(Tensor, Tensor, Vec<f32>)> {
        let saved = lock(&self.saved).clone();
        let Some((mean, rstd)) = saved else {
            bail!("layer_norm backward before forward");
        };
        let (dx, dw, db) = with_f32s([x, w, dy], |[x, wd, dy]| {
            let mut dx = vec![0f32; x.len()];
            let (dw, db) = backward(x, wd, &mean, &rstd, dy, &mut dx, Accumulate::Overwrite);
            Ok((dx, dw, db))
        })?;
        Ok((cpu_tensor(dx, x)?, cpu_tensor(dw, w)?, db))
    }
}

impl Kernel<2> for LayerNormOp {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    fn forward(&self, [x, w]: [Input<'_>; 2]) -> Result<(Vec<f32>, Shape)> {
        self.forward_inputs(x, w, None)
    }

    fn backward(
        &self,
        [x, w]: [&Tensor; 2],
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<[Option<Tensor>; 2]> {
        let (dx, dw, _) = self.backward_tensors(x, w, dy)?;
        Ok([Some(dx), Some(dw)])
    }
}

impl Kernel<3> for LayerNormOp {
    fn name(&self) -> &'static str {
        "fused-layer-norm-bias"
    }

    fn forward(&self, [x, w, b]: [Input<'_>; 3]) -> Result<(Vec<f32>, Shape)> {
        self.forward_inputs(x, w, Some(b))
    }

    fn backward(
        &self,
        [x, w, b]: [&Tensor; 3],
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<[Option<Tensor>; 3]> {
        let (dx, dw, db) = self.backward_tensors(x, w, dy)?;
        Ok([Some(dx), Some(dw), Some(cpu_tensor(db, b)?)])
    }
}
