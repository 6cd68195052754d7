//! Fused CPU kernels with hand-written backward passes, for fast training and inference.
//!
//! candle's autograd records one graph node per elementary op, and its backward pass allocates a
//! zero tensor and adds into it for every edge; at the sizes Glassbox trains (hundreds of tokens,
//! widths of 128–768) that bookkeeping, single-threaded element-wise loops and `contiguous()`
//! copies cost more than the arithmetic. Each op here is one candle graph node whose forward does
//! the whole computation and whose backward returns the gradients of its inputs in one go:
//!
//! | op | replaces | saves for backward |
//! |---|---|---|
//! | [`linear`] | reshape · (transpose) · matmul · bias add · reshape | — |
//! | [`layer_norm`] | mean · sub · sqr · mean · add · sqrt · div · mul · add | mean, 1/σ |
//! | [`gelu`] | candle's `gelu` / `gelu_erf` (whose backward is ~10 ops) | — |
//! | [`attention`] | split heads · QKᵀ · scale · mask · softmax · ·V · merge heads | softmax |
//! | [`softmax_last_dim`] | max · sub · exp · sum · div | — |
//! | [`cross_entropy`] | log-softmax · gather · mean | log-sum-exp |
//! | [`adamw_step`] | ~10 tensor ops per parameter | (updates in place) |
//!
//! Each op file holds the math twice over: as functions on float32 slices (`linear::forward`,
//! `layer_norm::backward`, ...), which a hand-written whole-model step can call directly (the
//! GPT's, `crate::model::gpt`), and as a [`Kernel`] that [`apply`] turns into a candle graph node
//! (the `CustomOp1/2/3` plumbing is written once, here). The kernels know nothing of models.
//!
//! The model's layers take these paths when [`applies`] is true: [`enabled`], the tensor lives on
//! the CPU in float32 (and the layer records no trace); otherwise (trace on, CUDA/Metal, another
//! dtype, or [`set_enabled`]`(false)`) they run the plain-op reference path, which the tests in
//! `tests/model/fused.rs` compare against, values and gradients.
//!
//! Kernels share the work over candle's own CPU worker pool (see `par.rs` for why not rayon),
//! call `gemm` directly with strides instead of materialising transposes, and are compiled for
//! AVX-512 / AVX2 with run-time dispatch ([`simd`]). Long-running callers (the app and CLI, the
//! trainer) call [`tune_allocator`] once, so that the kernels' large buffers are reused rather
//! than mapped and unmapped (and page-faulted) afresh every step.

pub mod simd;

pub(crate) mod activation;
mod adamw;
pub(crate) mod attention;
pub(crate) mod cross_entropy;
pub(crate) mod layer_norm;
pub(crate) mod linear;
mod par;
mod softmax;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor,
    bail,
};

pub use activation::{Gelu, gelu};
pub use adamw::{AdamWStep, adamw_step, grad_norm};
pub use attention::{attention, attention_qkv};
pub use cross_entropy::cross_entropy;
pub use layer_norm::layer_norm;
pub use linear::{WeightLayout, linear};
pub use par::{SINGLE_THREAD_BELOW_FLOPS, set_threads_override, threads_for_flops, with_threads};
pub use softmax::softmax_last_dim;

/// Whether a kernel writes its result over its output buffer or adds it to what is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accumulate {
    /// `out = result`
    Overwrite,
    /// `out += result`: a residual add, or a second gradient reaching the same tensor.
    Add,
}

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the fused paths on or off for the whole process (on by default). Off, every layer runs
/// the plain candle ops — the reference the fused kernels are tested against.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the layers take the fused paths (see [`set_enabled`]).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether a fused kernel can run on `t`: fused paths on, CPU, float32.
pub fn applies(t: &Tensor) -> bool {
    enabled() && t.device().is_cpu() && t.dtype() == DType::F32
}

/// Makes glibc's malloc keep freed memory for reuse (once per process; elsewhere a no-op). Call it
/// where long-running work starts (the binary's `main`, `Trainer::new`); the kernels run without
/// it, only slower.
///
/// A training step allocates and frees tens of megabytes in buffers of 0.1–2 MB. By default
/// glibc serves blocks above its (adaptive) mmap threshold with fresh `mmap`s and returns memory
/// at the top of the heap to the kernel, so every step page-faults its buffers in again: on the
/// benchmark machine that cost about as much as the matmuls. With a 32 MiB mmap threshold and a
/// 512 MiB trim threshold, the buffers come back from the heap warm. The process keeps up to
/// that much freed memory mapped, a fair trade for a training or inspection app.
pub fn tune_allocator() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator parameters; it is thread-safe in glibc.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        }
    });
}

/// Element counts below this run on one thread (handing work to another costs microseconds).
pub(crate) const PARALLEL_MIN: usize = 32 * 1024;

/// Row-major float32 data of `layout` in `storage`: borrowed when contiguous, gathered otherwise.
pub(crate) fn f32_data<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<Cow<'a, [f32]>> {
    let data = match storage {
        CpuStorage::F32(d) => d.as_slice(),
        _ => bail!("fused kernels take float32 tensors"),
    };
    Ok(match layout.contiguous_offsets() {
        Some((start, end)) => Cow::Borrowed(&data[start..end]),
        None => Cow::Owned(gather(data, layout)),
    })
}

/// Copies a strided view into a new row-major buffer.
pub(crate) fn gather(data: &[f32], layout: &Layout) -> Vec<f32> {
    let dims = layout.dims();
    let stride = layout.stride();
    let n: usize = dims.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let rank = dims.len();
    if rank == 0 {
        out.push(data[layout.start_offset()]);
        return out;
    }
    let (inner, inner_stride) = (dims[rank - 1], stride[rank - 1]);
    let mut index = vec![0usize; rank - 1];
    loop {
        let base =
            layout.start_offset() + index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
        out.extend((0..inner).map(|j| data[base + j * inner_stride]));
        // Odometer over the outer dimensions.
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            index[d] += 1;
            if index[d] < dims[d] {
                break;
            }
            index[d] = 0;
        }
    }
}

/// Runs `f` on the row-major float32 data of a CPU tensor.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    with_f32s([t], |[data]| f(data))
}

/// Runs `f` on the row-major float32 data of several CPU tensors at once (read-locked meanwhile).
pub(crate) fn with_f32s<const N: usize, R>(
    tensors: [&Tensor; N],
    f: impl FnOnce([&[f32]; N]) -> Result<R>,
) -> Result<R> {
    let guards = tensors.map(|t| t.storage_and_layout());
    let mut data = Vec::with_capacity(N);
    for (storage, layout) in &guards {
        match &**storage {
            Storage::Cpu(cpu) => data.push(f32_data(cpu, layout)?),
            _ => bail!("fused kernels run on the CPU"),
        }
    }
    f(std::array::from_fn(|i| &*data[i]))
}

/// A new CPU tensor owning `data`, shaped like `like`.
pub(crate) fn cpu_tensor(data: Vec<f32>, like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(data, like.shape(), like.device())
}

/// Locks a mutex, recovering the data when another thread panicked while holding it.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One input of a kernel's forward: CPU storage and how the tensor lies in it.
#[derive(Clone, Copy)]
pub(crate) struct Input<'a> {
    pub storage: &'a CpuStorage,
    pub layout: &'a Layout,
}

impl<'a> Input<'a> {
    /// Row-major float32 data: borrowed when contiguous, gathered otherwise.
    pub fn f32(&self) -> Result<Cow<'a, [f32]>> {
        f32_data(self.storage, self.layout)
    }

    pub fn dims(&self) -> &'a [usize] {
        self.layout.dims()
    }
}

/// A fused op on `N` tensors: the forward on CPU data and the backward. [`apply`] runs it as one
/// candle graph node, so an op file holds only its math.
pub(crate) trait Kernel<const N: usize>: Send + Sync + 'static {
    /// The graph node's name.
    fn name(&self) -> &'static str;

    /// The output's float32 data and shape.
    fn forward(&self, inputs: [Input<'_>; N]) -> Result<(Vec<f32>, Shape)>;

    /// The gradient of each input for the output gradient `dy` (`output` is the forward's).
    fn backward(
        &self,
        inputs: [&Tensor; N],
        output: &Tensor,
        dy: &Tensor,
    ) -> Result<[Option<Tensor>; N]>;
}

/// Runs `kernel` on `inputs` as one differentiable graph node.
pub(crate) fn apply<const N: usize>(kernel: impl Kernel<N>, inputs: [&Tensor; N]) -> Result<Tensor>
where
    Node<N>: Apply<N>,
{
    Node::<N>::apply(Box::new(kernel), inputs)
}

/// A [`Kernel`] as candle's `CustomOp1/2/3`; `N` inputs.
pub(crate) struct Node<const N: usize>(Box<dyn Kernel<N>>);

/// How a [`Node`] of `N` inputs enters candle's graph.
pub(crate) trait Apply<const N: usize> {
    fn apply(kernel: Box<dyn Kernel<N>>, inputs: [&Tensor; N]) -> Result<Tensor>;
}

impl Apply<1> for Node<1> {
    fn apply(kernel: Box<dyn Kernel<1>>, [x]: [&Tensor; 1]) -> Result<Tensor> {
        x.apply_op1_arc(Arc::new(Box::new(Node(kernel))))
    }
}

impl Apply<2> for Node<2> {
    fn apply(kernel: Box<dyn Kernel<2>>, [x, y]: [&Tensor; 2]) -> Result<Tensor> {
        x.apply_op2_arc(y, Arc::new(Box::new(Node(kernel))))
    }
}

impl Apply<3> for Node<3> {
    fn apply(kernel: Box<dyn Kernel<3>>, [x, y, z]: [&Tensor; 3]) -> Result<Tensor> {
        x.apply_op3_arc(y, z, Arc::new(Box::new(Node(kernel))))
    }
}

/// The forward's output as candle's CPU storage.
fn output((data, shape): (Vec<f32>, Shape)) -> (CpuStorage, Shape) {
    (CpuStorage::F32(data), shape)
}

impl CustomOp1 for Node<1> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = Input {
            storage: s1,
            layout: l1,
        };
        self.0.forward([x]).map(output)
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let [dx] = self.0.backward([x], res, dy)?;
        Ok(dx)
    }
}

impl CustomOp2 for Node<2> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let inputs = [(s1, l1), (s2, l2)].map(|(storage, layout)| Input { storage, layout });
        self.0.forward(inputs).map(output)
    }

    fn bwd(
        &self,
        x: &Tensor,
        y: &Tensor,
        res: &Tensor,
        dres: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let [dx, dy] = self.0.backward([x, y], res, dres)?;
        Ok((dx, dy))
    }
}

impl CustomOp3 for Node<3> {
    fn name(&self) -> &'static str {
        self.0.name()
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
        let inputs =
            [(s1, l1), (s2, l2), (s3, l3)].map(|(storage, layout)| Input { storage, layout });
        self.0.forward(inputs).map(output)
    }

    fn bwd(
        &self,
        x: &Tensor,
        y: &Tensor,
        z: &Tensor,
        res: &Tensor,
        dres: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [dx, dy, dz] = self.0.backward([x, y, z], res, dres)?;
        Ok((dx, dy, dz))
    }
}
