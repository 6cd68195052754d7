//! Fused CPU kernels with hand-written backward passes, for fast training and inference.
//!
//! candle's autograd records one graph node per elementary op, and its backward pass allocates a
//! zero tensor and adds into it for every edge; at the sizes Glassbox trains (hundreds of tokens,
//! widths of 128–768) that bookkeeping, single-threaded element-wise loops and `contiguous()`
//! copies cost more than the arithmetic. Each op here is one candle `CustomOp1`/`CustomOp2`/
//! `CustomOp3` node whose `cpu_fwd` does the whole computation and whose `bwd` returns the
//! gradients of its inputs in one go:
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
//! Training a GPT goes one step further: [`gpt_step`] computes the loss and every gradient of a
//! causal-LM batch in one hand-written pass over these kernels, with no graph at all (candle's
//! backward would still zero-fill and add a buffer for every edge, and each op allocate its
//! output).
//!
//! The layers in [`super::layers`] take these paths when [`enabled`] is true, the tensor lives on
//! the CPU in float32 and no trace is being recorded; otherwise (trace on, CUDA/Metal, another
//! dtype, or [`set_enabled`]`(false)`) they run the plain-op reference path, which the tests in
//! `tests/model/fused.rs` compare against, values and gradients.
//!
//! Kernels share the work over candle's own CPU worker pool (see `par.rs` for why not rayon),
//! call `gemm` directly with strides instead of materialising transposes, and are compiled for
//! AVX-512 / AVX2 with run-time dispatch ([`simd`]). On glibc, the first fused op also tunes
//! malloc ([`tune_allocator`]) so the step's large buffers are reused rather than mapped and
//! unmapped (and page-faulted) afresh every step.

pub mod simd;

mod activation;
mod adamw;
mod attention;
mod cross_entropy;
pub mod gpt_step;
mod layer_norm;
mod linear;
mod par;
mod softmax;

use std::borrow::Cow;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{CpuStorage, DType, Layout, Result, Storage, Tensor, bail};

pub use activation::gelu;
pub use adamw::{AdamWStep, adamw_step, grad_norm};
pub use attention::{attention, attention_qkv};
pub use cross_entropy::cross_entropy;
pub use gpt_step::StepOutput;
pub use layer_norm::layer_norm;
pub use linear::linear;
pub use softmax::softmax_last_dim;

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
    let yes = enabled() && t.device().is_cpu() && t.dtype() == DType::F32;
    if yes {
        tune_allocator();
    }
    yes
}

/// Makes glibc's malloc keep freed memory for reuse (once per process; elsewhere a no-op).
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
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => {
            let data = f32_data(cpu, layout)?;
            f(&data)
        }
        _ => bail!("fused kernels run on the CPU"),
    }
}

/// A new CPU tensor owning `data`, shaped like `like`.
pub(crate) fn cpu_tensor(data: Vec<f32>, like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(data, like.shape(), like.device())
}

/// Locks a mutex, recovering the data when another thread panicked while holding it.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
