//! A fully connected layer as one graph node: `y = x·W (+ b)` with `W` stored `[in, out]`
//! (GPT-2's Conv1D) or `[out, in]` (nn.Linear), computed by `gemm` straight from the strides — no
//! reshape, transpose or broadcast nodes, and a backward that runs `dx = dy·Wᵀ` and `dW = xᵀ·dy`
//! side by side on two threads. gemm runs single-threaded on row blocks, shared out by `par`.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::{cpu_tensor, f32_data, par, simd, with_f32};

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
        forward(
            &x,
            &w,
            bias.as_deref(),
            &mut y,
            (in_dim, out_dim),
            self.transposed,
            false,
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
        let transposed = self.transposed;
        let (dx, dw, db) = with_f32(x, |x| {
            with_f32(w, |w| {
                with_f32(dy, |dy| {
                    let mut dx = vec![0f32; rows * in_dim];
                    let mut dw = vec![0f32; in_dim * out_dim];
                    let mut db = with_bias.then(|| vec![0f32; out_dim]);
                    let dims = (in_dim, out_dim);
                    backward(
                        x,
                        w,
                        dy,
                        (&mut dx, false),
                        &mut dw,
                        db.as_deref_mut(),
                        dims,
                        transposed,
                    )?;
                    Ok((dx, dw, db))
                })
            })
        })?;
        Ok((cpu_tensor(dx, x)?, cpu_tensor(dw, w)?, db))
    }
}

/// `y [rows, out] (+)= x [rows, in] · W (+ b)`, W stored `[in, out]` when `transposed`, else
/// `[out, in]`; shared over the threads. With `accumulate`, the product is added to `y`.
pub(super) fn forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    (in_dim, out_dim): (usize, usize),
    transposed: bool,
    accumulate: bool,
) -> Result<()> {
    let rows = x.len() / in_dim.max(1);
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(out_dim) {
            if accumulate {
                simd::axpy(row, 1.0, b);
            } else {
                row.copy_from_slice(b);
            }
        }
    }
    let (w_rs, w_cs) = weight_strides(in_dim, out_dim, transposed);
    let job = Gemm::new(
        (rows, out_dim, in_dim),
        (y, out_dim, 1),
        accumulate || bias.is_some(),
        (x, in_dim, 1),
        (w, w_rs, w_cs),
    )?;
    par::run(job.split(par::threads()), Gemm::run);
    Ok(())
}

/// The backward of [`forward`] for the output gradient `dy`: `dx (+)= dy·Wᵀ` (added when the flag
/// is set), `dW = xᵀ·dy` and `db = Σ_rows dy`. The two products run side by side.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    (dx, accumulate_dx): (&mut [f32], bool),
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    (in_dim, out_dim): (usize, usize),
    transposed: bool,
) -> Result<()> {
    let rows = x.len() / in_dim.max(1);
    let (w_rs, w_cs) = weight_strides(in_dim, out_dim, transposed);
    // dx [rows, in] = dy [rows, out] · W_effᵀ [out, in]
    let dx_job = Gemm::new(
        (rows, in_dim, out_dim),
        (dx, in_dim, 1),
        accumulate_dx,
        (dy, out_dim, 1),
        (w, w_cs, w_rs),
    )?;
    let dw_job = if transposed {
        // dW [in, out] = xᵀ · dy
        Gemm::new(
            (in_dim, out_dim, rows),
            (dw, out_dim, 1),
            false,
            (x, 1, in_dim),
            (dy, out_dim, 1),
        )?
    } else {
        // dW [out, in] = dyᵀ · x
        Gemm::new(
            (out_dim, in_dim, rows),
            (dw, in_dim, 1),
            false,
            (dy, 1, out_dim),
            (x, in_dim, 1),
        )?
    };
    // The two products cost the same: half the threads each, side by side.
    let parts = (par::threads() / 2).max(1);
    let mut tasks = dx_job.split(parts);
    tasks.extend(dw_job.split(parts));
    par::run(tasks, Gemm::run);
    if let Some(db) = db {
        db.fill(0.0);
        column_sums(dy, db);
    }
    Ok(())
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

/// One `dst (+)= lhs · rhs` for matrices given as `(data, row stride, column stride)`: dst
/// `[m, n]`, lhs `[m, k]`, rhs `[k, n]`. [`Gemm::new`] checks that every index stays inside its
/// slice; [`Gemm::split`] cuts the job into row blocks for several threads.
pub(crate) struct Gemm<'a> {
    m: usize,
    n: usize,
    k: usize,
    dst: &'a mut [f32],
    dst_rs: usize,
    dst_cs: usize,
    accumulate: bool,
    lhs: &'a [f32],
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: &'a [f32],
    rhs_rs: usize,
    rhs_cs: usize,
}

impl<'a> Gemm<'a> {
    pub(crate) fn new(
        (m, n, k): (usize, usize, usize),
        (dst, dst_rs, dst_cs): (&'a mut [f32], usize, usize),
        accumulate: bool,
        (lhs, lhs_rs, lhs_cs): (&'a [f32], usize, usize),
        (rhs, rhs_rs, rhs_cs): (&'a [f32], usize, usize),
    ) -> Result<Self> {
        let end = |rows: usize, cols: usize, rs: usize, cs: usize| {
            if rows == 0 || cols == 0 {
                0
            } else {
                (rows - 1) * rs + (cols - 1) * cs + 1
            }
        };
        if end(m, n, dst_rs, dst_cs) > dst.len()
            || end(m, k, lhs_rs, lhs_cs) > lhs.len()
            || end(k, n, rhs_rs, rhs_cs) > rhs.len()
        {
            bail!("gemm: an operand is smaller than its shape and strides");
        }
        Ok(Self {
            m,
            n,
            k,
            dst,
            dst_rs,
            dst_cs,
            accumulate,
            lhs,
            lhs_rs,
            lhs_cs,
            rhs,
            rhs_rs,
            rhs_cs,
        })
    }

    /// Up to `parts` jobs over consecutive row blocks (a single job when dst is not row-major
    /// or too small to be worth splitting).
    pub(crate) fn split(self, parts: usize) -> Vec<Gemm<'a>> {
        let work = self.m * self.n * self.k;
        if parts <= 1 || self.m < 2 || self.dst_cs != 1 || self.dst_rs < self.n || work < MIN_SPLIT
        {
            return vec![self];
        }
        let rows_per = self.m.div_ceil(parts.min(self.m));
        let Gemm {
            m,
            n,
            k,
            dst,
            dst_rs,
            dst_cs,
            accumulate,
            lhs,
            lhs_rs,
            lhs_cs,
            rhs,
            rhs_rs,
            rhs_cs,
        } = self;
        dst.chunks_mut(rows_per * dst_rs)
            .take(m.div_ceil(rows_per))
            .enumerate()
            .map(|(i, dst)| {
                let r0 = i * rows_per;
                Gemm {
                    m: rows_per.min(m - r0),
                    n,
                    k,
                    dst,
                    dst_rs,
                    dst_cs,
                    accumulate,
                    lhs: &lhs[(r0 * lhs_rs).min(lhs.len())..],
                    lhs_rs,
                    lhs_cs,
                    rhs,
                    rhs_rs,
                    rhs_cs,
                }
            })
            .collect()
    }

    /// Runs the job on the calling thread.
    pub(crate) fn run(self) {
        let Gemm {
            m,
            n,
            k,
            dst,
            dst_rs,
            dst_cs,
            accumulate,
            lhs,
            lhs_rs,
            lhs_cs,
            rhs,
            rhs_rs,
            rhs_cs,
        } = self;
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            if !accumulate {
                for i in 0..m {
                    for j in 0..n {
                        dst[i * dst_rs + j * dst_cs] = 0.0;
                    }
                }
            }
            return;
        }
        // SAFETY: `new` checked that every index gemm touches, i·rs + j·cs for i, j within the
        // shapes, lies inside the slices, and `split` keeps that true for each row block (the
        // block's rows start at its slice's start). dst is exclusively borrowed, so it cannot
        // overlap lhs or rhs.
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
                gemm::Parallelism::None,
            );
        }
    }
}

/// Multiply-adds below which a product is not split over threads.
const MIN_SPLIT: usize = 1 << 18;
