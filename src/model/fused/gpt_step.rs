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
//! It reads like [`crate::model::gpt`]'s forward, then the same steps backwards.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::time::Instant;

use candle_core::{CpuStorage, Layout, Result, Storage, Tensor, bail};

use super::attention::CausalQkv;
use super::{activation, cross_entropy, layer_norm, linear, simd};

/// A LayerNorm's parameters `[h]`.
pub struct NormWeights<'a> {
    pub weight: &'a Tensor,
    pub bias: Option<&'a Tensor>,
}

/// A Conv1D projection's parameters: weight `[in, out]`, bias `[out]`.
pub struct ProjectionWeights<'a> {
    pub weight: &'a Tensor,
    pub bias: Option<&'a Tensor>,
}

/// One transformer block's parameters, named as in `GPT2LMHeadModel`.
pub struct BlockWeights<'a> {
    pub ln_1: NormWeights<'a>,
    pub c_attn: ProjectionWeights<'a>,
    pub attn_proj: ProjectionWeights<'a>,
    pub ln_2: NormWeights<'a>,
    pub c_fc: ProjectionWeights<'a>,
    pub mlp_proj: ProjectionWeights<'a>,
}

/// The whole model: token embeddings `[vocab, h]` (also the LM head), positions `[n_pos, h]`.
pub struct GptWeights<'a> {
    pub wte: &'a Tensor,
    pub wpe: &'a Tensor,
    pub blocks: Vec<BlockWeights<'a>>,
    pub ln_f: NormWeights<'a>,
    pub n_head: usize,
    pub layer_norm_eps: f32,
    /// Exact (erf) GELU rather than the tanh approximation.
    pub gelu_erf: bool,
}

/// The step's result.
pub struct StepOutput {
    /// Mean cross-entropy over all `b·s` positions.
    pub loss: f32,
    /// `(parameter, gradient)` for every parameter of [`GptWeights`].
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

/// Read access to a parameter's float32 data for the length of the step.
struct Borrowed<'a> {
    guard: Box<dyn Deref<Target = Storage> + 'a>,
    layout: Layout,
}

impl<'a> Borrowed<'a> {
    fn new(t: &'a Tensor) -> Result<Self> {
        let (guard, layout) = t.storage_and_layout();
        let layout = layout.clone();
        Ok(Self {
            guard: Box::new(guard),
            layout,
        })
    }

    fn data(&self) -> Result<&[f32]> {
        let Storage::Cpu(CpuStorage::F32(data)) = &**self.guard else {
            bail!("the fused training step takes float32 CPU parameters");
        };
        match self.layout.contiguous_offsets() {
            Some((start, end)) => Ok(&data[start..end]),
            None => bail!("the fused training step takes contiguous parameters"),
        }
    }
}

/// A LayerNorm's data; `bias` is empty when it has none.
struct Norm<'a> {
    weight: &'a [f32],
    bias: &'a [f32],
}

struct Projection<'a> {
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
}

struct Block<'a> {
    ln_1: Norm<'a>,
    c_attn: Projection<'a>,
    attn_proj: Projection<'a>,
    ln_2: Norm<'a>,
    c_fc: Projection<'a>,
    mlp_proj: Projection<'a>,
}

/// What the forward keeps of one block for the backward.
struct BlockActivations {
    /// The residual stream entering the block `[n, h]`.
    input: Buffer,
    ln_1: Buffer,
    ln_1_mean: Buffer,
    ln_1_rstd: Buffer,
    /// `[n, 3h]`
    qkv: Buffer,
    attention: CausalQkv,
    /// `[n, h]`, heads merged.
    context: Buffer,
    /// The residual stream after the attention sublayer `[n, h]`.
    mid: Buffer,
    ln_2: Buffer,
    ln_2_mean: Buffer,
    ln_2_rstd: Buffer,
    /// MLP pre-activation and activation `[n, 4h]`.
    fc: Buffer,
    act: Buffer,
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

/// Read access to every parameter for the length of a pass (the slices of [`Params`] borrow
/// from these).
struct Guards<'a> {
    wte: Borrowed<'a>,
    wpe: Borrowed<'a>,
    ln_f: [Option<Borrowed<'a>>; 2],
    blocks: Vec<[[Option<Borrowed<'a>>; 2]; 6]>,
}

/// The model's parameters as float32 slices, and its sizes.
struct Params<'a> {
    wte: &'a [f32],
    wpe: &'a [f32],
    blocks: Vec<Block<'a>>,
    ln_f: Norm<'a>,
    vocab: usize,
    h: usize,
    positions: usize,
    /// MLP width.
    inner: usize,
    heads: usize,
    eps: f32,
    gelu_erf: bool,
}

impl<'a> Guards<'a> {
    fn new(weights: &GptWeights<'a>) -> Result<Self> {
        let blocks = weights
            .blocks
            .iter()
            .map(|b| {
                Ok([
                    guards(b.ln_1.weight, b.ln_1.bias)?,
                    guards(b.c_attn.weight, b.c_attn.bias)?,
                    guards(b.attn_proj.weight, b.attn_proj.bias)?,
                    guards(b.ln_2.weight, b.ln_2.bias)?,
                    guards(b.c_fc.weight, b.c_fc.bias)?,
                    guards(b.mlp_proj.weight, b.mlp_proj.bias)?,
                ])
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            wte: Borrowed::new(weights.wte)?,
            wpe: Borrowed::new(weights.wpe)?,
            ln_f: guards(weights.ln_f.weight, weights.ln_f.bias)?,
            blocks,
        })
    }

    fn params(&self, weights: &GptWeights) -> Result<Params<'_>> {
        let (vocab, h) = weights.wte.dims2()?;
        let heads = weights.n_head;
        if heads == 0 || h % heads != 0 {
            bail!("width {h} does not split into {heads} heads");
        }
        let blocks = self
            .blocks
            .iter()
            .map(|[ln_1, c_attn, attn_proj, ln_2, c_fc, mlp_proj]| {
                Ok(Block {
                    ln_1: norm(ln_1)?,
                    c_attn: projection(c_attn)?,
                    attn_proj: projection(attn_proj)?,
                    ln_2: norm(ln_2)?,
                    c_fc: projection(c_fc)?,
                    mlp_proj: projection(mlp_proj)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let inner = match blocks.first() {
            Some(b) => b.c_fc.weight.len() / h.max(1),
            None => 4 * h,
        };
        Ok(Params {
            wte: self.wte.data()?,
            wpe: self.wpe.data()?,
            blocks,
            ln_f: norm(&self.ln_f)?,
            vocab,
            h,
            positions: weights.wpe.dim(0)?,
            inner,
            heads,
            eps: weights.layer_norm_eps,
            gelu_erf: weights.gelu_erf,
        })
    }
}

/// What the forward leaves for the loss and the backward.
struct Forward {
    /// Per block.
    blocks: Vec<BlockActivations>,
    /// The residual stream after the last block, its `ln_f` and that norm's statistics.
    last: Buffer,
    final_norm: Buffer,
    final_mean: Buffer,
    final_rstd: Buffer,
    /// `[n, vocab]`
    logits: Buffer,
}

/// The forward pass over `ids` (`batch` rows of `seq`), keeping each block's activations for the
/// backward.
fn forward(p: &Params, ids: &[u32], (batch, seq): (usize, usize)) -> Result<Forward> {
    let (h, inner, vocab, eps) = (p.h, p.inner, p.vocab, p.eps);
    let n = batch * seq;
    if ids.len() != n || n == 0 {
        bail!("{} token ids for {batch} sequences of {seq}", ids.len());
    }
    if seq > p.positions {
        bail!(
            "sequence of {seq} tokens is longer than the model's context of {}",
            p.positions
        );
    }
    if let Some(&bad) = ids.iter().find(|&&t| t as usize >= vocab) {
        bail!("token id {bad} is outside the vocabulary of {vocab}");
    }

    // x = wte[ids] + wpe[positions]                                        [n, h]
    let mut x = Buffer::new(n * h);
    for (row, (out, &id)) in x.chunks_exact_mut(h).zip(ids).enumerate() {
        let token = &p.wte[id as usize * h..][..h];
        let position = &p.wpe[(row % seq) * h..][..h];
        for ((o, &t), &q) in out.iter_mut().zip(token).zip(position) {
            *o = t + q;
        }
    }
    let mut kept = Vec::with_capacity(p.blocks.len());
    for block in &p.blocks {
        // Attention sublayer: mid = x + attn_proj(attention(c_attn(ln_1(x))))
        let mut ln_1 = Buffer::new(n * h);
        let (mut ln_1_mean, mut ln_1_rstd) = (Buffer::new(n), Buffer::new(n));
        let norm = &block.ln_1;
        layer_norm::forward(
            &x,
            norm.weight,
            norm.bias,
            eps,
            &mut ln_1,
            &mut ln_1_mean,
            &mut ln_1_rstd,
        );
        let mut qkv = Buffer::new(n * 3 * h); // [n, 3h]: Q, K, V side by side
        let proj = &block.c_attn;
        linear::forward(
            &ln_1,
            proj.weight,
            proj.bias,
            &mut qkv,
            (h, 3 * h),
            true,
            false,
        )?;
        let attention = CausalQkv::new(p.heads, (batch, seq, h));
        let mut context = Buffer::new(n * h); // [n, h], heads merged
        attention.forward(&qkv, &mut context);
        let mut mid = Buffer::copy_of(&x); // the residual: the projection adds onto it
        let proj = &block.attn_proj;
        linear::forward(
            &context,
            proj.weight,
            proj.bias,
            &mut mid,
            (h, h),
            true,
            true,
        )?;

        // MLP sublayer: out = mid + mlp_proj(gelu(c_fc(ln_2(mid))))
        let mut ln_2 = Buffer::new(n * h);
        let (mut ln_2_mean, mut ln_2_rstd) = (Buffer::new(n), Buffer::new(n));
        let norm = &block.ln_2;
        layer_norm::forward(
            &mid,
            norm.weight,
            norm.bias,
            eps,
            &mut ln_2,
            &mut ln_2_mean,
            &mut ln_2_rstd,
        );
        let mut fc = Buffer::new(n * inner); // [n, 4h]
        let proj = &block.c_fc;
        linear::forward(
            &ln_2,
            proj.weight,
            proj.bias,
            &mut fc,
            (h, inner),
            true,
            false,
        )?;
        let mut act = Buffer::new(n * inner);
        activation::forward(&fc, &mut act, p.gelu_erf);
        let mut out = Buffer::copy_of(&mid);
        let proj = &block.mlp_proj;
        linear::forward(
            &act,
            proj.weight,
            proj.bias,
            &mut out,
            (inner, h),
            true,
            true,
        )?;

        let input = std::mem::replace(&mut x, out);
        kept.push(BlockActivations {
            input,
            ln_1,
            ln_1_mean,
            ln_1_rstd,
            qkv,
            attention,
            context,
            mid,
            ln_2,
            ln_2_mean,
            ln_2_rstd,
            fc,
            act,
        });
    }
    let mut final_norm = Buffer::new(n * h);
    let (mut final_mean, mut final_rstd) = (Buffer::new(n), Buffer::new(n));
    layer_norm::forward(
        &x,
        p.ln_f.weight,
        p.ln_f.bias,
        eps,
        &mut final_norm,
        &mut final_mean,
        &mut final_rstd,
    );
    // logits = ln_f(x) · wteᵀ                                               [n, vocab]
    let mut logits = Buffer::new(n * vocab);
    linear::forward(
        &final_norm,
        p.wte,
        None,
        &mut logits,
        (h, vocab),
        false,
        false,
    )?;
    Ok(Forward {
        blocks: kept,
        last: x,
        final_norm,
        final_mean,
        final_rstd,
        logits,
    })
}

/// Loss and gradients of next-token prediction for `input_ids` (`batch` rows of `seq` tokens,
/// row-major) against `targets` (one per position). Every parameter must be a contiguous
/// float32 CPU tensor.
pub fn gpt_step(
    weights: &GptWeights,
    input_ids: &[u32],
    targets: &[u32],
    (batch, seq): (usize, usize),
) -> Result<StepOutput> {
    let started = Instant::now();
    let guards = Guards::new(weights)?;
    let p = guards.params(weights)?;
    let (h, inner, vocab, positions) = (p.h, p.inner, p.vocab, p.positions);
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
        final_mean,
        final_rstd,
        logits,
    } = forward(&p, input_ids, (batch, seq))?;
    let targets: Vec<usize> = targets.iter().map(|&t| t as usize).collect();
    let (loss, log_sum_exp) = cross_entropy::forward(&logits, &targets, vocab);
    let forward_seconds = started.elapsed().as_secs_f64();

    // ---- backward ----
    let started = Instant::now();
    let mut gradients = Vec::new();
    let mut push = |param: &Tensor, grad: Vec<f32>| -> Result<()> {
        gradients.push((
            param.clone(),
            Tensor::from_vec(grad, param.shape(), param.device())?,
        ));
        Ok(())
    };
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
    linear::backward(
        &final_norm,
        p.wte,
        &d_logits,
        (&mut d_final_norm, false),
        &mut d_wte,
        None,
        (h, vocab),
        false,
    )?;
    let mut dx = Buffer::new(n * h);
    let (dw, db) = layer_norm::backward(
        &x,
        p.ln_f.weight,
        &final_mean,
        &final_rstd,
        &d_final_norm,
        &mut dx,
        false,
    );
    push_norm(&mut push, &weights.ln_f, dw, db)?;

    for ((block, act), names) in p.blocks.iter().zip(saved).zip(&weights.blocks).rev() {
        // out = mid + mlp_proj(act)
        let mut d_act = Buffer::new(n * inner);
        backward_projection(
            &mut push,
            &names.mlp_proj,
            &block.mlp_proj,
            &act.act,
            &dx,
            &mut d_act,
            (inner, h),
        )?;
        let mut d_fc = Buffer::new(n * inner);
        activation::backward(&act.fc, &d_act, &mut d_fc, p.gelu_erf);
        let mut d_ln_2 = Buffer::new(n * h);
        backward_projection(
            &mut push,
            &names.c_fc,
            &block.c_fc,
            &act.ln_2,
            &d_fc,
            &mut d_ln_2,
            (h, inner),
        )?;
        // d mid = d out (the residual) + the LayerNorm's share
        let mut d_mid = dx;
        let (dw, db) = layer_norm::backward(
            &act.mid,
            block.ln_2.weight,
            &act.ln_2_mean,
            &act.ln_2_rstd,
            &d_ln_2,
            &mut d_mid,
            true,
        );
        push_norm(&mut push, &names.ln_2, dw, db)?;

        // mid = input + attn_proj(context)
        let mut d_context = Buffer::new(n * h);
        backward_projection(
            &mut push,
            &names.attn_proj,
            &block.attn_proj,
            &act.context,
            &d_mid,
            &mut d_context,
            (h, h),
        )?;
        let d_qkv = act.attention.backward(&act.qkv, &d_context)?; // [n, 3h]
        let mut d_ln_1 = Buffer::new(n * h);
        backward_projection(
            &mut push,
            &names.c_attn,
            &block.c_attn,
            &act.ln_1,
            &d_qkv,
            &mut d_ln_1,
            (h, 3 * h),
        )?;
        let mut d_input = d_mid;
        let (dw, db) = layer_norm::backward(
            &act.input,
            block.ln_1.weight,
            &act.ln_1_mean,
            &act.ln_1_rstd,
            &d_ln_1,
            &mut d_input,
            true,
        );
        push_norm(&mut push, &names.ln_1, dw, db)?;
        dx = d_input;
    }

    // Embeddings: each position's gradient goes to its token's row and its position's row.
    let mut d_wpe = vec![0f32; positions * h];
    for (row, (d, &id)) in dx.chunks_exact(h).zip(input_ids).enumerate() {
        simd::axpy(&mut d_wte[id as usize * h..][..h], 1.0, d);
        simd::axpy(&mut d_wpe[(row % seq) * h..][..h], 1.0, d);
    }
    push(weights.wte, d_wte)?;
    push(weights.wpe, d_wpe)?;
    Ok(StepOutput {
        loss,
        gradients,
        forward_seconds,
        backward_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The backward of `y (+)= x · W + b` for `dy`: writes `dx`, pushes dW and db.
#[allow(clippy::too_many_arguments)]
fn backward_projection(
    push: &mut impl FnMut(&Tensor, Vec<f32>) -> Result<()>,
    names: &ProjectionWeights,
    weights: &Projection,
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    (in_dim, out_dim): (usize, usize),
) -> Result<()> {
    let mut dw = vec![0f32; in_dim * out_dim];
    let mut db = weights.bias.map(|_| vec![0f32; out_dim]);
    linear::backward(
        x,
        weights.weight,
        dy,
        (dx, false),
        &mut dw,
        db.as_deref_mut(),
        (in_dim, out_dim),
        true,
    )?;
    push(names.weight, dw)?;
    if let (Some(bias), Some(db)) = (names.bias, db) {
        push(bias, db)?;
    }
    Ok(())
}

fn push_norm(
    push: &mut impl FnMut(&Tensor, Vec<f32>) -> Result<()>,
    names: &NormWeights,
    dw: Vec<f32>,
    db: Vec<f32>,
) -> Result<()> {
    push(names.weight, dw)?;
    if let Some(bias) = names.bias {
        push(bias, db)?;
    }
    Ok(())
}

/// Borrows a weight and its optional bias.
fn guards<'a>(weight: &'a Tensor, bias: Option<&'a Tensor>) -> Result<[Option<Borrowed<'a>>; 2]> {
    Ok([
        Some(Borrowed::new(weight)?),
        bias.map(Borrowed::new).transpose()?,
    ])
}

fn norm<'a>([weight, bias]: &'a [Option<Borrowed<'_>>; 2]) -> Result<Norm<'a>> {
    let Some(weight) = weight else {
        bail!("a LayerNorm without a weight");
    };
    Ok(Norm {
        weight: weight.data()?,
        bias: match bias {
            Some(b) => b.data()?,
            None => &[],
        },
    })
}

fn projection<'a>([weight, bias]: &'a [Option<Borrowed<'_>>; 2]) -> Result<Projection<'a>> {
    let Some(weight) = weight else {
        bail!("a projection without a weight");
    };
    Ok(Projection {
        weight: weight.data()?,
        bias: bias.as_ref().map(|b| b.data()).transpose()?,
    })
}
