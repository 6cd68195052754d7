//! Mean cross-entropy of logits against class indices, fused: one pass for the log-sum-exp and
//! the loss, one for the gradient `(softmax − onehot) / rows`. Replaces `log_softmax` +
//! `gather` + `mean` (and their backward, which scatters through a zero tensor).

use std::sync::Mutex;

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, bail};

use super::par::{self, rows_per_task};
use super::{Input, Kernel, apply, cpu_tensor, lock, simd, with_f32};

/// `mean_r( logsumexp(logits[r]) − logits[r, targets[r]] )` for `logits [rows, classes]` (or any
/// shape ending in the classes) and `targets [rows]` (u8, u32 or i64), as
/// `candle_nn::loss::cross_entropy`. A scalar, differentiable in `logits`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let classes = logits.dims().last().copied().unwrap_or(0);
    if logits.rank() < 1 || classes == 0 {
        bail!("cross_entropy: logits {:?}", logits.dims());
    }
    let rows = logits.elem_count() / classes;
    if targets.elem_count() != rows {
        bail!(
            "cross_entropy: {} targets for {rows} rows of logits {:?}",
            targets.elem_count(),
            logits.dims()
        );
    }
    // Targets are a few hundred integers: a copy when strided costs nothing.
    let targets = targets.contiguous()?;
    let op = CrossEntropyOp {
        saved: Mutex::new(None),
    };
    apply(op, [logits, &targets])
}

struct CrossEntropyOp {
    /// Targets and per-row log-sum-exp from the forward.
    saved: Mutex<Option<(Vec<usize>, Vec<f32>)>>,
}

fn targets_of(s: &CpuStorage, l: &Layout, classes: usize) -> Result<Vec<usize>> {
    fn pick<T: Copy>(data: &[T], l: &Layout, f: impl Fn(T) -> i64) -> Result<Vec<i64>> {
        match l.contiguous_offsets() {
            Some((a, b)) => Ok(data[a..b].iter().map(|&v| f(v)).collect()),
            None => bail!("cross_entropy: targets must be contiguous"),
        }
    }
    let raw = match s {
        CpuStorage::U32(d) => pick(d, l, i64::from)?,
        CpuStorage::U8(d) => pick(d, l, i64::from)?,
        CpuStorage::I64(d) => pick(d, l, |v| v)?,
        _ => bail!("cross_entropy: targets must be u8, u32 or i64 class indices"),
    };
    raw.into_iter()
        .map(|t| {
            usize::try_from(t)
                .ok()
                .filter(|&t| t < classes)
                .ok_or_else(|| candle_core::Error::Msg(format!("target {t} outside 0..{classes}")))
        })
        .collect()
}

crate::simd_fn! {
    /// Per row: log-sum-exp into `lse`, and the row's loss into `loss`.
    fn forward_rows(x: &[f32], targets: &[usize], lse: &mut [f32], loss: &mut [f32], classes: usize) {
        for (((row, &t), l), out) in x
            .chunks_exact(classes)
            .zip(targets)
            .zip(lse.iter_mut())
            .zip(loss.iter_mut())
        {
            let m = simd::max(row);
            let mut s = 0f32;
            let mut acc = [0f32; 16];
            let chunks = row.chunks_exact(16);
            let rest = chunks.remainder();
            for c in chunks {
                for k in 0..16 {
                    acc[k] += simd::exp(c[k] - m);
                }
            }
            for &r in rest {
                s += simd::exp(r - m);
            }
            s += acc.iter().sum::<f32>();
            *l = m + s.ln();
            *out = *l - row[t];
        }
    }
}

crate::simd_fn! {
    fn backward_rows(x: &[f32], targets: &[usize], lse: &[f32], dx: &mut [f32], g: f32, classes: usize) {
        for (((row, &t), &l), drow) in x
            .chunks_exact(classes)
            .zip(targets)
            .zip(lse)
            .zip(dx.chunks_exact_mut(classes))
        {
            for (d, &v) in drow.iter_mut().zip(row) {
                *d = g * simd::exp(v - l);
            }
            drow[t] -= g;
        }
    }
}

/// Mean cross-entropy of the rows of `x` (`classes` wide) against `targets`, shared over the
/// threads: `(mean loss, per-row log-sum-exp)`. NaN for no rows.
pub(crate) fn forward(x: &[f32], targets: &[usize], classes: usize) -> (f32, Vec<f32>) {
    let rows = targets.len();
    let mut lse = vec![0f32; rows];
    let mut loss = vec![0f32; rows];
    let per = rows_per_task(rows, classes);
    let tasks = lse
        .chunks_mut(per)
        .zip(loss.chunks_mut(per))
        .zip(x.chunks(per * classes))
        .zip(targets.chunks(per))
        .collect();
    par::run(tasks, |(((lse, loss), x), t)| {
        forward_rows(x, t, lse, loss, classes)
    });
    // Summed in f64: the mean of hundreds of rows stays exact to float32 precision.
    let total: f64 = loss.iter().map(|&v| f64::from(v)).sum();
    let mean = if rows == 0 {
        f32::NAN
    } else {
        (total / rows as f64) as f32
    };
    (mean, lse)
}

/// `dx = scale · (softmax(x) − onehot(targets))` per row, shared over the threads.
pub(crate) fn backward(
    x: &[f32],
    targets: &[usize],
    lse: &[f32],
    dx: &mut [f32],
    scale: f32,
    classes: usize,
) {
    let per = rows_per_task(targets.len(), classes);
    let tasks = dx
        .chunks_mut(per * classes)
        .zip(x.chunks(per * classes))
        .zip(targets.chunks(per))
        .zip(lse.chunks(per))
        .collect();
    par::run(tasks, |(((dx, x), t), l)| {
        backward_rows(x, t, l, dx, scale, classes)
    });
}

impl Kernel<2> for CrossEntropyOp {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn forward(&self, [logits, targets]: [Input<'_>; 2]) -> Result<(Vec<f32>, Shape)> {
        let classes = logits.dims().last().copied().unwrap_or(1).max(1);
        let x = logits.f32()?;
        let targets = targets_of(targets.storage, targets.layout, classes)?;
        let (mean, lse) = forward(&x, &targets, classes);
        *lock(&self.saved) = Some((targets, lse));
        Ok((vec![mean], Shape::from(())))
    }

    fn backward(
        &self,
        [logits, _targets]: [&Tensor; 2],
        _loss: &Tensor,
        grad: &Tensor,
    ) -> Result<[Option<Tensor>; 2]> {
        let saved = lock(&self.saved).clone();
        let Some((targets, lse)) = saved else {
            bail!("cross_entropy backward before forward");
        };
        let g = grad.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        let classes = logits.dims().last().copied().unwrap_or(1).max(1);
        let rows = targets.len();
        let scale = if rows == 0 { 0.0 } else { g / rows as f32 };
        let dx = with_f32(logits, |x| {
            let mut dx = vec![0f32; x.len()];
            backward(x, &targets, &lse, &mut dx, scale, classes);
            Ok(dx)
        })?;
        Ok([Some(cpu_tensor(dx, logits)?), None])
    }
}
