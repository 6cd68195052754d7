//! One causal-LM training step of a GPT-2 (loss and every parameter's gradient) as a single
//! hand-written pass, with no autograd graph at all.
//!
//! With the fused ops, candle's graph still costs a large share of a small model's step: every
//! gradient that reaches a tensor is added into a freshly zeroed one, the residual adds are
//! separate nodes with their own buffers, and each op allocates and zero-fills its output. Here the
//! forward keeps exactly the activations the backward needs, the residual adds happen inside the
//! projections' matmuls (accumulating onto a copy of the stream), and each gradient is written once,
//! where it is computed. The kernels are the fused ops' own (`linear`, `layer_norm`, `gelu`,
//! causal QKV attention, cross-entropy), so the numbers are those of the graph path within
//! float32 rounding; `tests/model/fused.rs` checks the loss and every gradient against candle's autograd.
//!
//! It reads like [`Gpt2::hidden_states`], then the same steps backwards, and takes every weight
//! straight from the model's own layers (read-locked only while a kernel uses it). Each gradient
//! comes back paired with the parameter tensor it belongs to, which is how the trainer matches it.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::time::Instant;

use candle_core::{Result, Tensor, bail};

use super::{Block, Gpt2};
use crate::kernels::attention::CausalQkv;
use crate::kernels::{
    Accumulate, Gelu, WeightLayout, activation, cross_entropy, layer_norm, linear, simd, with_f32,
    with_f32s,
};
use crate::model::layers::{LayerNorm, Linear};

/// The step's result.
pub struct StepOutput {
    /// Mean cross-entropy over all `b·s` positions.
    pub loss: f32,
    /// `(parameter, gradient)` for every parameter of the model.
    pub gradients: Vec<(Tensor, Tensor)>,
    /// Wall time of the forward pass and loss, and of the backward pass.
    pub forward_seconds: f64,
    pub backward_seconds: f64,
}

impl StepOutput {
    /// The gradients in the order of `params` (`None` for a tensor the step has no gradient
    /// for), as an optimizer takes them.
    pub fn gradients_for<'a>(
        &mut self,
        params: impl IntoIterator<Item = &'a Tensor>,
    ) -> Vec<Option<Tensor>> {
        let mut by_id: std::collections::HashMap<_, _> = std::mem::take(&mut self.gradients)
            .into_iter()
            .map(|(param, grad)| (param.id(), grad))
            .collect();
        params.into_iter().map(|p| by_id.remove(&p.id())).collect()
    }
}

/// Whether the step can run on `gpt`: fused kernels on, float32 weights on the CPU, a GELU in
/// every block's MLP.
pub(super) fn applies(gpt: &Gpt2) -> bool {
    crate::kernels::applies(&gpt.wte.weight)
        && gpt.blocks.iter().all(|b| b.mlp.activation.gelu().is_some())
}

/// A LayerNorm's output `[n, h]` and each row's mean and 1/σ `[n]`, kept for its backward.
struct Normalized {
    y: Buffer,
    mean: Buffer,
    rstd: Buffer,
}

/// What the forward keeps of one block for the backward.
struct BlockActivations {
    /// The residual stream entering the block `[n, h]`.
    input: Buffer,
    ln_1: Normalized,
    /// `[n, 3h]`
    qkv: Buffer,
    attention: CausalQkv,
    /// `[n, h]`, heads merged.
    context: Buffer,
    /// The residual stream after the attention sublayer `[n, h]`.
    mid: Buffer,
    ln_2: Normalized,
    /// MLP pre-activation and activation `[n, 4h]`.
    fc: Buffer,
    act: Buffer,
    gelu: Gelu,
}

thread_local! {
    /// Buffers of earlier steps on this thread, kept for reuse (see [`Buffer`]).
    static SPARE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A float buffer from this thread's spares. Its contents are whatever its last user left, so
/// whoever fills it writes every element; dropped, it goes back to the spares. A step thus
/// reuses its activations' memory instead of zero-filling (and page-faulting) tens of megabytes
/// it is about to overwrite anyway.
struct Buffer(Vec<f32>);

impl Buffer {
    fn new(len: usize) -> Self {
        let mut data = SPARE.with_borrow_mut(|spare| {
            // The smallest spare that is big enough, else a new one.
            let best = (0..spare.len())
                .filter(|&i| spare[i].capacity() >= len)
                .min_by_key(|&i| spare[i].capacity());
            best.map(|i| spare.swap_remove(i)).unwrap_or_default()
        });
        // Shrinking writes nothing; only a spare's first use past its old length fills zeros.
        data.resize(len, 0.0);
        Buffer(data)
    }

    fn copy_of(data: &[f32]) -> Self {
        let mut b = Buffer::new(data.len());
        b.copy_from_slice(data);
        b
    }
}

impl Deref for Buffer {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.0);
        // During thread teardown the spares may be gone already; then the memory is just freed.
        let _ = SPARE.try_with(|spare| spare.borrow_mut().push(data));
    }
}

/// What the forward leaves for the loss and the backward.
struct Forward {
    /// Per block.
    blocks: Vec<BlockActivations>,
    /// The residual stream after the last block, and its `ln_f`.
    last: Buffer,
    final_norm: Normalized,
    /// `[n, vocab]`
    logits: Buffer,
}

/// The forward pass over `ids` (`batch` rows of `seq`), keeping each block's activations for the
/// backward.
fn forward(gpt: &Gpt2, ids: &[u32], (batch, seq): (usize, usize)) -> Result<Forward> {
    let (vocab, h) = gpt.wte.weight.dims2()?;
    let positions = gpt.wpe.rows();
    let n = batch * seq;
    if ids.len() != n || n == 0 {
        bail!("{} token ids for {batch} sequences of {seq}", ids.len());
    }
    if seq > positions {
        bail!("sequence of {seq} tokens is longer than the model's context of {positions}");
    }
    if let Some(&bad) = ids.iter().find(|&&t| t as usize >= vocab) {
        bail!("token id {bad} is outside the vocabulary of {vocab}");
    }

    // x = wte[ids] + wpe[positions]                                        [n, h]
    let mut x = Buffer::new(n * h);
    with_f32s([&gpt.wte.weight, &gpt.wpe.weight], |[wte, wpe]| {
        for (row, (out, &id)) in x.chunks_exact_mut(h).zip(ids).enumerate() {
            let token = &wte[id as usize * h..][..h];
            let position = &wpe[(row % seq) * h..][..h];
            for ((o, &t), &q) in out.iter_mut().zip(token).zip(position) {
                *o = t + q;
            }
        }
        Ok(())
    })?;
    let mut kept = Vec::with_capacity(gpt.blocks.len());
    for block in &gpt.blocks {
        let Block {
            ln_1,
            attn,
            ln_2,
            mlp,
        } = block;
        let (_, inner) = mlp.c_fc.layout.in_out(mlp.c_fc.weight.dims())?;
        let heads = attn.n_head;
        if heads == 0 || h % heads != 0 {
            bail!("width {h} does not split into {heads} heads");
        }
        let Some(gelu) = mlp.activation.gelu() else {
            bail!("the fused training step needs a GELU MLP");
        };

        // Attention sublayer: mid = x + attn.c_proj(attention(attn.c_attn(ln_1(x))))
        let ln_1_out = normalize(ln_1, &x)?;
        let mut qkv = Buffer::new(n * 3 * h); // [n, 3h]: Q, K, V side by side
        project(&attn.c_attn, &ln_1_out.y, &mut qkv, Accumulate::Overwrite)?;
        let attention = CausalQkv::new(heads, (batch, seq, h));
        let mut context = Buffer::new(n * h); // [n, h], heads merged
        attention.forward(&qkv, &mut context);
        let mut mid = Buffer::copy_of(&x); // the residual: the projection adds onto it
        project(&attn.c_proj, &context, &mut mid, Accumulate::Add)?;

        // MLP sublayer: out = mid + mlp.c_proj(gelu(mlp.c_fc(ln_2(mid))))
        let ln_2_out = normalize(ln_2, &mid)?;
        let mut fc = Buffer::new(n * inner); // [n, 4h]
        project(&mlp.c_fc, &ln_2_out.y, &mut fc, Accumulate::Overwrite)?;
        let mut act = Buffer::new(n * inner);
        activation::forward(&fc, &mut act, gelu);
        let mut out = Buffer::copy_of(&mid);
        project(&mlp.c_proj, &act, &mut out, Accumulate::Add)?;

        let input = std::mem::replace(&mut x, out);
        kept.push(BlockActivations {
            input,
            ln_1: ln_1_out,
            qkv,
            attention,
            context,
            mid,
            ln_2: ln_2_out,
            fc,
            act,
            gelu,
        });
    }
    let final_norm = normalize(&gpt.ln_f, &x)?;
    // logits = ln_f(x) · wteᵀ                                               [n, vocab]
    let mut logits = Buffer::new(n * vocab);
    with_f32(&gpt.wte.weight, |wte| {
        linear::forward(
            &final_norm.y,
            wte,
            None,
            &mut logits,
            (h, vocab),
            WeightLayout::OutIn,
            Accumulate::Overwrite,
        )
    })?;
    Ok(Forward {
        blocks: kept,
        last: x,
        final_norm,
        logits,
    })
}

/// Loss and gradients of next-token prediction for `input_ids` (`batch` rows of `seq` tokens,
/// row-major) against `targets` (one per position). Every weight of `gpt` must be a float32 CPU
/// tensor (see [`applies`]).
pub(super) fn training_step(
    gpt: &Gpt2,
    input_ids: &[u32],
    targets: &[u32],
    (batch, seq): (usize, usize),
) -> Result<StepOutput> {
    let started = Instant::now();
    let (vocab, h) = gpt.wte.weight.dims2()?;
    let positions = gpt.wpe.rows();
    let n = batch * seq;
    if targets.len() != n {
        bail!("{} targets for {batch} sequences of {seq}", targets.len());
    }
    if let Some(&bad) = targets.iter().find(|&&t| t as usize >= vocab) {
        bail!("target id {bad} is outside the vocabulary of {vocab}");
    }
    let Forward {
        blocks: saved,
        last: x,
        final_norm,
        logits,
    } = forward(gpt, input_ids, (batch, seq))?;
    let targets: Vec<usize> = targets.iter().map(|&t| t as usize).collect();
    let (loss, log_sum_exp) = cross_entropy::forward(&logits, &targets, vocab);
    let forward_seconds = started.elapsed().as_secs_f64();

    // ---- backward ----
    let started = Instant::now();
    let mut grads = Gradients(Vec::new());
    // d logits = (softmax − onehot) / n
    let mut d_logits = Buffer::new(n * vocab);
    cross_entropy::backward(
        &logits,
        &targets,
        &log_sum_exp,
        &mut d_logits,
        1.0 / n as f32,
        vocab,
    );
    drop(logits);
    // The LM head's share of d wte, and d ln_f(x).
    let mut d_wte = vec![0f32; vocab * h];
    let mut d_final_norm = Buffer::new(n * h);
    with_f32(&gpt.wte.weight, |wte| {
        linear::backward(
            &final_norm.y,
            wte,
            &d_logits,
            &mut d_final_norm,
            Accumulate::Overwrite,
            &mut d_wte,
            None,
            (h, vocab),
            WeightLayout::OutIn,
        )
    })?;
    let mut dx = Buffer::new(n * h);
    let ln_f = &gpt.ln_f;
    normalize_backward(
        ln_f,
        &x,
        &final_norm,
        &d_final_norm,
        &mut dx,
        Accumulate::Overwrite,
        &mut grads,
    )?;

    for (block, act) in gpt.blocks.iter().zip(saved).rev() {
        let Block {
            ln_1,
            attn,
            ln_2,
            mlp,
        } = block;
        let inner = act.fc.len() / n;
        // out = mid + mlp.c_proj(act)
        let mut d_act = Buffer::new(n * inner);
        project_backward(&mlp.c_proj, &act.act, &dx, &mut d_act, &mut grads)?;
        let mut d_fc = Buffer::new(n * inner);
        activation::backward(&act.fc, &d_act, &mut d_fc, act.gelu);
        let mut d_ln_2 = Buffer::new(n * h);
        project_backward(&mlp.c_fc, &act.ln_2.y, &d_fc, &mut d_ln_2, &mut grads)?;
        // d mid = d out (the residual) + the LayerNorm's share
        let mut d_mid = dx;
        normalize_backward(
            ln_2,
            &act.mid,
            &act.ln_2,
            &d_ln_2,
            &mut d_mid,
            Accumulate::Add,
            &mut grads,
        )?;

        // mid = input + attn.c_proj(context)
        let mut d_context = Buffer::new(n * h);
        project_backward(
            &attn.c_proj,
            &act.context,
            &d_mid,
            &mut d_context,
            &mut grads,
        )?;
        let d_qkv = act.attention.backward(&act.qkv, &d_context)?; // [n, 3h]
        let mut d_ln_1 = Buffer::new(n * h);
        project_backward(&attn.c_attn, &act.ln_1.y, &d_qkv, &mut d_ln_1, &mut grads)?;
        let mut d_input = d_mid;
        normalize_backward(
            ln_1,
            &act.input,
            &act.ln_1,
            &d_ln_1,
            &mut d_input,
            Accumulate::Add,
            &mut grads,
        )?;
        dx = d_input;
    }

    // Embeddings: each position's gradient goes to its token's row and its position's row.
    let mut d_wpe = vec![0f32; positions * h];
    for (row, (d, &id)) in dx.chunks_exact(h).zip(input_ids).enumerate() {
        simd::axpy(&mut d_wte[id as usize * h..][..h], 1.0, d);
        simd::axpy(&mut d_wpe[(row % seq) * h..][..h], 1.0, d);
    }
    grads.add(&gpt.wte.weight, d_wte)?;
    grads.add(&gpt.wpe.weight, d_wpe)?;
    Ok(StepOutput {
        loss,
        gradients: grads.0,
        forward_seconds,
        backward_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Gradients as the backward produces them, each with its parameter.
struct Gradients(Vec<(Tensor, Tensor)>);

impl Gradients {
    fn add(&mut self, param: &Tensor, grad: Vec<f32>) -> Result<()> {
        let grad = Tensor::from_vec(grad, param.shape(), param.device())?;
        self.0.push((param.clone(), grad));
        Ok(())
    }
}

/// Runs `f` on the float32 data of a layer's weight and its bias, if any.
fn with_weight_and_bias<R>(
    weight: &Tensor,
    bias: Option<&Tensor>,
    f: impl FnOnce(&[f32], Option<&[f32]>) -> Result<R>,
) -> Result<R> {
    match bias {
        Some(bias) => with_f32s([weight, bias], |[w, b]| f(w, Some(b))),
        None => with_f32(weight, |w| f(w, None)),
    }
}

/// `norm(x)` over rows of its width, with each row's statistics.
fn normalize(norm: &LayerNorm, x: &[f32]) -> Result<Normalized> {
    let rows = x.len() / norm.weight.elem_count().max(1);
    let mut out = Normalized {
        y: Buffer::new(x.len()),
        mean: Buffer::new(rows),
        rstd: Buffer::new(rows),
    };
    with_weight_and_bias(&norm.weight, norm.bias.as_ref(), |w, b| {
        let eps = norm.eps as f32;
        let b = b.unwrap_or(&[]);
        layer_norm::forward(x, w, b, eps, &mut out.y, &mut out.mean, &mut out.rstd);
        Ok(())
    })?;
    Ok(out)
}

/// The backward of [`normalize`] for `dy`: writes or adds `dx` (as `dx_write` says), records dγ
/// and dβ.
fn normalize_backward(
    norm: &LayerNorm,
    x: &[f32],
    saved: &Normalized,
    dy: &[f32],
    dx: &mut [f32],
    dx_write: Accumulate,
    grads: &mut Gradients,
) -> Result<()> {
    let (dw, db) = with_f32(&norm.weight, |w| {
        Ok(layer_norm::backward(
            x,
            w,
            &saved.mean,
            &saved.rstd,
            dy,
            dx,
            dx_write,
        ))
    })?;
    grads.add(&norm.weight, dw)?;
    if let Some(bias) = &norm.bias {
        grads.add(bias, db)?;
    }
    Ok(())
}

/// `y (+)= x · W + b` for one of the model's projections (`write` says which).
fn project(layer: &Linear, x: &[f32], y: &mut [f32], write: Accumulate) -> Result<()> {
    let dims = layer.layout.in_out(layer.weight.dims())?;
    with_weight_and_bias(&layer.weight, layer.bias.as_ref(), |w, b| {
        linear::forward(x, w, b, y, dims, layer.layout, write)
    })
}

/// The backward of [`project`] for `dy`: writes `dx`, records dW and db.
fn project_backward(
    layer: &Linear,
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    grads: &mut Gradients,
) -> Result<()> {
    let (in_dim, out_dim) = layer.layout.in_out(layer.weight.dims())?;
    let mut dw = vec![0f32; in_dim * out_dim];
    let mut db = layer.bias.as_ref().map(|_| vec![0f32; out_dim]);
    with_f32(&layer.weight, |w| {
        linear::backward(
            x,
            w,
            dy,
            dx,
            Accumulate::Overwrite,
            &mut dw,
            db.as_deref_mut(),
            (in_dim, out_dim),
            layer.layout,
        )
    })?;
    grads.add(&layer.weight, dw)?;
    if let (Some(bias), Some(db)) = (&layer.bias, db) {
        grads.add(bias, db)?;
    }
    Ok(())
}
