//! A fully connected layer as one graph node: `y = x·W (+ b)` with `W` stored `[in, out]`
//! (GPT-2's Conv1D) or `[out, in]` (nn.Linear), computed by `gemm` straight from the strides — no
//! reshape, transpose or broadcast nodes, and a backward that runs `dx = dy·Wᵀ` and `dW = xᵀ·dy`
//! side by side on two threads. gemm runs single-threaded on row blocks, shared out by `par`.

use candle_core::{Result, Shape, Tensor, bail};

use super::{Accumulate, Input, Kernel, apply, cpu_tensor, par, simd, with_f32s};

/// How a weight matrix is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightLayout {
    /// `[in, out]`: GPT-2's Conv1D.
    InOut,
    /// `[out, in]`: PyTorch's nn.Linear, and an embedding table used as the LM head.
    OutIn,
}

impl WeightLayout {
    /// `(in, out)` of a weight of shape `dims`.
    pub fn in_out(self, dims: &[usize]) -> Result<(usize, usize)> {
        match (dims, self) {
            ([i, o], WeightLayout::InOut) | ([o, i], WeightLayout::OutIn) => Ok((*i, *o)),
            _ => bail!("linear: weight must be a matrix, got {dims:?}"),
        }
    }

    /// Strides `(row, col)` of the logical `[in, out]` matrix inside the stored weight.
    fn strides(self, in_dim: usize, out_dim: usize) -> (usize, usize) {
        match self {
            WeightLayout::InOut => (out_dim, 1),
            WeightLayout::OutIn => (1, in_dim),
        }
    }
}

/// `x [.., in]` times `weight` (stored as `layout` says) plus `bias [out]`: `[.., out]`.
/// Differentiable in all three.
pub fn linear(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    layout: WeightLayout,
) -> Result<Tensor> {
    let (in_dim, out_dim) = layout.in_out(weight.dims())?;
    let x_in = x.dims().last().copied().unwrap_or(0);
    if x_in != in_dim || x.rank() == 0 {
        bail!(
            "linear: input {:?} does not end in the weight's input width {in_dim}",
            x.dims()
        );
    }
    let op = LinearOp { layout };
    match bias {
        Some(b) => {
            if b.dims() != [out_dim] {
                bail!("linear: bias {:?} for {out_dim} outputs", b.dims());
            }
            apply(op, [x, weight, b])
        }
        None => apply(op, [x, weight]),
    }
}

struct LinearOp {
    layout: WeightLayout,
}

impl LinearOp {
    /// `y = x·W (+ b)` and its shape.
    fn forward_inputs(
        &self,
        x: Input<'_>,
        w: Input<'_>,
        bias: Option<Input<'_>>,
    ) -> Result<(Vec<f32>, Shape)> {
        let (in_dim, out_dim) = self.layout.in_out(w.dims())?;
        let x_data = x.f32()?;
        let w = w.f32()?;
        let bias = bias.map(|b| b.f32()).transpose()?;
        let rows = x_data.len() / in_dim.max(1);
        let mut y = vec![0f32; rows * out_dim];
        let dims = (in_dim, out_dim);
        forward(
            &x_data,
            &w,
            bias.as_deref(),
            &mut y,
            dims,
            self.layout,
            Accumulate::Overwrite,
        )?;
        let mut shape = x.dims().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = out_dim;
        }
        Ok((y, Shape::from(shape)))
    }

    /// `(dx, dW, db)`; db only for a `bias`.
    fn backward_tensors(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        dy: &Tensor,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let (in_dim, out_dim) = self.layout.in_out(w.dims())?;
        let rows = x.elem_count() / in_dim.max(1);
        let (dx, dw, db) = with_f32s([x, w, dy], |[x, w, dy]| {
            let mut dx = vec![0f32; rows * in_dim];
            let mut dw = vec![0f32; in_dim * out_dim];
            let mut db = bias.map(|_| vec![0f32; out_dim]);
            let dims = (in_dim, out_dim);
            let dx_write = Accumulate::Overwrite;
            backward(
                x,
                w,
                dy,
                &mut dx,
                dx_write,
                &mut dw,
                db.as_deref_mut(),
                dims,
                self.layout,
            )?;
            Ok((dx, dw, db))
        })?;
        let db = match (db, bias) {
            (Some(db), Some(b)) => Some(cpu_tensor(db, b)?),
            _ => None,
        };
        Ok((cpu_tensor(dx, x)?, cpu_tensor(dw, w)?, db))
    }
}

/// `y [rows, out] (+)= x [rows, in] · W (+ b)`, W stored as `layout` says; shared over the
/// threads. `write` says whether the product replaces `y` or is added to it.
pub(crate) fn forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    (in_dim, out_dim): (usize, usize),
    layout: WeightLayout,
    write: Accumulate,
) -> Result<()> {
    let rows = x.len() / in_dim.max(1);
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(out_dim) {
            match write {
                Accumulate::Add => simd::axpy(row, 1.0, b),
                Accumulate::Overwrite => row.copy_from_slice(b),
            }
        }
    }
    // With a bias, the product goes on top of the bias rows just written.
    let product_write = if bias.is_some() {
        Accumulate::Add
    } else {
        write
    };
    let (w_rs, w_cs) = layout.strides(in_dim, out_dim);
    let job = Gemm::new(
        (rows, out_dim, in_dim),
        (y, out_dim, 1),
        product_write,
        (x, in_dim, 1),
        (w, w_rs, w_cs),
    )?;
    par::run(job.split(par::threads()), Gemm::run);
    Ok(())
}

/// The backward of [`forward`] for the output gradient `dy`: `dx (+)= dy·Wᵀ` (as `dx_write`
/// says), `dW = xᵀ·dy` and `db = Σ_rows dy`. The two products run side by side.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dx_write: Accumulate,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    (in_dim, out_dim): (usize, usize),
    layout: WeightLayout,
) -> Result<()> {
    let rows = x.len() / in_dim.max(1);
    let (w_rs, w_cs) = layout.strides(in_dim, out_dim);
    // dx [rows, in] = dy [rows, out] · W_effᵀ [out, in]
    let dx_job = Gemm::new(
        (rows, in_dim, out_dim),
        (dx, in_dim, 1),
        dx_write,
        (dy, out_dim, 1),
        (w, w_cs, w_rs),
    )?;
    let dw_job = match layout {
        // dW [in, out] = xᵀ · dy
        WeightLayout::InOut => Gemm::new(
            (in_dim, out_dim, rows),
            (dw, out_dim, 1),
            Accumulate::Overwrite,
            (x, 1, in_dim),
            (dy, out_dim, 1),
        )?,
        // dW [out, in] = dyᵀ · x
        WeightLayout::OutIn => Gemm::new(
            (out_dim, in_dim, rows),
            (dw, in_dim, 1),
            Accumulate::Overwrite,
            (dy, 1, out_dim),
            (x, in_dim, 1),
        )?,
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

impl Kernel<2> for LinearOp {
    fn name(&self) -> &'static str {
        "fused-linear"
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
        let (dx, dw, _) = self.backward_tensors(x, w, None, dy)?;
        Ok([Some(dx), Some(dw)])
    }
}

impl Kernel<3> for LinearOp {
    fn name(&self) -> &'static str {
        "fused-linear-bias"
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
        let (dx, dw, db) = self.backward_tensors(x, w, Some(b), dy)?;
        Ok([Some(dx), Some(dw), db])
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
    /// Add the product to dst (gemm's `read_dst` flag) rather than overwrite it.
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
        dst_write: Accumulate,
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
            accumulate: dst_write == Accumulate::Add,
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
