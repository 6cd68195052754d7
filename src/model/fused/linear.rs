//! A fully connected layer as one graph node: `y = x·W (+ b)` with `W` stored `[in, out]`
//! (GPT-2's Conv1D) or `[out, in]` (nn.Linear), computed by `gemm` straight from the strides — no
//! reshape, transpose or broadcast nodes, and a backward that runs `dx = dy·Wᵀ` and `dW = xᵀ·dy`
//! side by side on two threads.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::{cpu_tensor, f32_data, simd, threads, with_f32};

/// `x [.., in]` times `weight` (`[in, out]` when `transposed`, else `[out, in]`) plus `bias [out]`:
/// `[.., out]`. Differentiable in all three.
pub fn linear(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    transposed: bool,
) -> Result<Tensor> {
    let (in_dim, out_dim) = dims(weight.dims(), transposed)?;
    let x_in = x.dims().last().copied().unwrap_or(0);
    if x_in != in_dim || x.rank() == 0 {
        bail!(
            "linear: input {:?} does not end in the weight's input width {in_dim}",
            x.dims()
        );
    }
    let op = LinearOp { transposed };
    match bias {
        Some(b) => {
            if b.dims() != [out_dim] {
                bail!("linear: bias {:?} for {out_dim} outputs", b.dims());
            }
            x.apply_op3_arc(weight, b, std::sync::Arc::new(Box::new(op)))
        }
        None => x.apply_op2_arc(weight, std::sync::Arc::new(Box::new(op))),
    }
}

/// `(in, out)` of a weight.
fn dims(w: &[usize], transposed: bool) -> Result<(usize, usize)> {
    match (w, transposed) {
        ([i, o], true) | ([o, i], false) => Ok((*i, *o)),
        _ => bail!("linear: weight must be a matrix, got {w:?}"),
    }
}

struct LinearOp {
    transposed: bool,
}

/// Strides `(row, col)` of the logical `[in, out]` matrix inside the stored weight.
fn weight_strides(in_dim: usize, out_dim: usize, transposed: bool) -> (usize, usize) {
    if transposed {
        (out_dim, 1)
    } else {
        (1, in_dim)
    }
}

impl LinearOp {
    fn fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let (in_dim, out_dim) = dims(wl.dims(), self.transposed)?;
        let x = f32_data(x, xl)?;
        let w = f32_data(w, wl)?;
        let rows = x.len() / in_dim.max(1);
        let mut y = vec![0f32; rows * out_dim];
        let bias = match bias {
            Some((b, bl)) => Some(f32_data(b, bl)?),
            None => None,
        };
        if let Some(b) = &bias {
            for row in y.chunks_exact_mut(out_dim) {
                row.copy_from_slice(b);
            }
        }
        let (w_rs, w_cs) = weight_strides(in_dim, out_dim, self.transposed);
        gemm_f32(
            (rows, out_dim, in_dim),
            (&mut y, out_dim, 1),
            bias.is_some(),
            (&x, in_dim, 1),
            (&w, w_rs, w_cs),
            threads(),
        )?;
        let mut shape = xl.dims().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = out_dim;
        }
        Ok((CpuStorage::F32(y), Shape::from(shape)))
    }

    /// `(dx, dW, db)`.
    fn bwd_all(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
        with_bias: bool,
    ) -> Result<(Tensor, Tensor, Option<Vec<f32>>)> {
        let (in_dim, out_dim) = dims(w.dims(), self.transposed)?;
        let rows = x.elem_count() / in_dim.max(1);
        let (w_rs, w_cs) = weight_strides(in_dim, out_dim, self.transposed);
        let transposed = self.transposed;
        let (dx, dw, db) = with_f32(x, |x| {
            with_f32(w, |w| {
                with_f32(dy, |dy| {
                    let mut dx = vec![0f32; rows * in_dim];
                    let mut dw = vec![0f32; in_dim * out_dim];
                    let n = threads();
                    let (left, right) = ((n / 2).max(1), (n - n / 2).max(1));
                    let (rx, rw) = rayon::join(
                        // dx [rows, in] = dy [rows, out] · W_effᵀ [out, in]
                        || {
                            gemm_f32(
                                (rows, in_dim, out_dim),
                                (&mut dx, in_dim, 1),
                                false,
                                (dy, out_dim, 1),
                                (w, w_cs, w_rs),
                                left,
                            )
                        },
                        || {
                            if transposed {
                                // dW [in, out] = xᵀ · dy
                                gemm_f32(
                                    (in_dim, out_dim, rows),
                                    (&mut dw, out_dim, 1),
                                    false,
                                    (x, 1, in_dim),
                                    (dy, out_dim, 1),
                                    right,
                                )
                            } else {
                                // dW [out, in] = dyᵀ · x
                                gemm_f32(
                                    (out_dim, in_dim, rows),
                                    (&mut dw, in_dim, 1),
                                    false,
                                    (dy, 1, out_dim),
                                    (x, in_dim, 1),
                                    right,
                                )
                            }
                        },
                    );
                    rx?;
                    rw?;
                    let db = with_bias.then(|| {
                        let mut db = vec![0f32; out_dim];
                        column_sums(dy, &mut db);
                        db
                    });
                    Ok((dx, dw, db))
                })
            })
        })?;
        Ok((cpu_tensor(dx, x)?, cpu_tensor(dw, w)?, db))
    }
}

crate::simd_fn! {
    /// `out[j] = Σ_r m[r, j]` for a row-major `m` with `out.len()` columns.
    fn column_sums(m: &[f32], out: &mut [f32]) {
        let cols = out.len();
        if cols == 0 {
            return;
        }
        for row in m.chunks_exact(cols) {
            simd::axpy(out, 1.0, row);
        }
    }
}

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "fused-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.fwd(s1, l1, s2, l2, None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.bwd_all(x, w, dy, false)?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "fused-linear-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.fwd(s1, l1, s2, l2, Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = self.bwd_all(x, w, dy, true)?;
        let db = match db {
            Some(db) => Some(cpu_tensor(db, b)?),
            None => None,
        };
        Ok((Some(dx), Some(dw), db))
    }
}

/// `dst (+)= lhs · rhs` for row-major-with-strides matrices: `(m, n, k)`, then `(data, row
/// stride, column stride)` of dst `[m, n]`, lhs `[m, k]` and rhs `[k, n]`. `accumulate` adds to
/// dst instead of overwriting it. Checks every index stays inside its slice.
pub(crate) fn gemm_f32(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs, dst_cs): (&mut [f32], usize, usize),
    accumulate: bool,
    (lhs, lhs_rs, lhs_cs): (&[f32], usize, usize),
    (rhs, rhs_rs, rhs_cs): (&[f32], usize, usize),
    threads: usize,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    if last(m, n, dst_rs, dst_cs) >= dst.len() {
        bail!("gemm: destination too small");
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst[i * dst_rs + j * dst_cs] = 0.0;
                }
            }
        }
        return Ok(());
    }
    if last(m, k, lhs_rs, lhs_cs) >= lhs.len() || last(k, n, rhs_rs, rhs_cs) >= rhs.len() {
        bail!("gemm: operand too small");
    }
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every index gemm touches, (i·rs + j·cs) for i, j within the shapes, was checked to
    // lie inside the slices above; dst is exclusively borrowed and distinct from lhs and rhs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}
