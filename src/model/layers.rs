//! The building blocks every family shares: Linear, LayerNorm, Embedding, activations, softmax and
//! multi-head attention. The reference path is written with differentiable candle ops, because the
//! same code trains: `candle_nn::ops::layer_norm` and `softmax_last_dim` have no backward pass.
//!
//! On the CPU in float32 each block takes a fused kernel with a hand-written backward instead
//! ([`crate::kernels`]): same values within float32 rounding, a fraction of the time. Attention takes
//! its fused path only when no trace is being recorded, since the trace keeps the per-head
//! intermediates the fused kernel never materialises.

use candle_core::{D, DType, Device, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::trace::LayerTrace;
use crate::kernels::{self, Gelu, WeightLayout};

/// Standard deviation of the normal initialisation used by GPT-2 and BERT.
pub const INIT_STD: f64 = 0.02;

pub(crate) fn normal_init(std: f64) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: std,
    }
}

/// A fully connected layer. Its weight is stored `[in, out]` (GPT-2's Conv1D) or `[out, in]`
/// (PyTorch's nn.Linear), as `layout` says.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub(crate) layout: WeightLayout,
}

impl Linear {
    /// nn.Linear layout `[out, in]`.
    pub fn new(vb: VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        Self::with_init(vb, in_dim, out_dim, bias, INIT_STD)
    }

    pub fn with_init(
        vb: VarBuilder,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        std: f64,
    ) -> Result<Self> {
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", normal_init(std))?;
        let bias = if bias {
            Some(vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            layout: WeightLayout::OutIn,
        })
    }

    /// GPT-2 Conv1D layout `[in, out]`.
    pub fn conv1d(
        vb: VarBuilder,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        std: f64,
    ) -> Result<Self> {
        let weight = vb.get_with_hints((in_dim, out_dim), "weight", normal_init(std))?;
        let bias = if bias {
            Some(vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            layout: WeightLayout::InOut,
        })
    }

    /// `[..., in] -> [..., out]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if kernels::applies(x) && kernels::applies(&self.weight) {
            return kernels::linear(x, &self.weight, self.bias.as_ref(), self.layout);
        }
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim;
        let x2 = x.reshape((rows, in_dim))?; // [rows, in]
        let y = match self.layout {
            WeightLayout::InOut => x2.matmul(&self.weight)?,
            WeightLayout::OutIn => x2.matmul(&self.weight.t()?)?,
        }; // [rows, out]
        let y = match &self.bias {
            Some(bias) => y.broadcast_add(bias)?,
            None => y,
        };
        let mut out_shape = dims.to_vec();
        let last = out_shape.len() - 1;
        out_shape[last] = y.dim(1)?;
        y.reshape(out_shape)
    }
}

/// LayerNorm over the last dimension, written with plain ops so gradients flow through it.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub(crate) eps: f64,
}

impl LayerNorm {
    pub fn new(vb: VarBuilder, dim: usize, eps: f64, bias: bool) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", Init::Const(1.0))?;
        let bias = if bias {
            Some(vb.get_with_hints(dim, "bias", Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Self { weight, bias, eps })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if kernels::applies(x) && kernels::applies(&self.weight) {
            return kernels::layer_norm(x, &self.weight, self.bias.as_ref(), self.eps);
        }
        let mean = x.mean_keepdim(D::Minus1)?; // [..., 1]
        let centered = x.broadcast_sub(&mean)?;
        let variance = centered.sqr()?.mean_keepdim(D::Minus1)?; // biased, as PyTorch
        let normalized = centered.broadcast_div(&(variance + self.eps)?.sqrt()?)?;
        let scaled = normalized.broadcast_mul(&self.weight)?;
        match &self.bias {
            Some(bias) => scaled.broadcast_add(bias),
            None => Ok(scaled),
        }
    }
}

/// A lookup table `[rows, dim]`.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub weight: Tensor,
}

impl Embedding {
    pub fn new(vb: VarBuilder, rows: usize, dim: usize) -> Result<Self> {
        let weight = vb.get_with_hints((rows, dim), "weight", normal_init(INIT_STD))?;
        Ok(Self { weight })
    }

    /// `[b, s]` ids -> `[b, s, dim]`
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let mut shape = ids.dims().to_vec();
        shape.push(self.weight.dim(1)?);
        let flat = ids.flatten_all()?;
        self.weight.index_select(&flat, 0)?.reshape(shape)
    }

    pub fn rows(&self) -> usize {
        self.weight.dims()[0]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// GELU with the tanh approximation (`gelu_new` in GPT-2).
    GeluTanh,
    /// Exact GELU with erf (BERT's `gelu`).
    GeluErf,
    Relu,
    /// `x·σ(x)` (`swish` / `silu`, an option of Marian models).
    Silu,
}

impl Activation {
    pub fn from_hf(name: &str) -> Self {
        match name {
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "swish" | "silu" => Activation::Silu,
            _ => Activation::GeluErf,
        }
    }

    /// The fused kernel's GELU for this activation, if it is one.
    pub(crate) fn gelu(self) -> Option<Gelu> {
        match self {
            Activation::GeluTanh => Some(Gelu::Tanh),
            Activation::GeluErf => Some(Gelu::Erf),
            Activation::Relu | Activation::Silu => None,
        }
    }

    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        if kernels::applies(x)
            && let Some(kind) = self.gelu()
        {
            return kernels::gelu(x, kind);
        }
        match self {
            Activation::GeluTanh => x.gelu(),
            Activation::GeluErf => x.gelu_erf(),
            Activation::Relu => x.relu(),
            Activation::Silu => x.silu(),
        }
    }

    pub fn formula(self) -> &'static str {
        match self {
            Activation::GeluTanh => "0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))",
            Activation::GeluErf => "0.5·x·(1 + erf(x/√2))",
            Activation::Relu => "max(0, x)",
            Activation::Silu => "x·σ(x) = x / (1 + e^(−x))",
        }
    }
}

/// Softmax over the last dimension with differentiable ops (the max is a constant shift).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if kernels::applies(x) {
        return kernels::softmax_last_dim(x);
    }
    let max = x.max_keepdim(D::Minus1)?.detach(); // [..., 1]
    let exp = x.broadcast_sub(&max)?.exp()?;
    exp.broadcast_div(&exp.sum_keepdim(D::Minus1)?)
}

/// Which keys each query may see, as an additive bias `[b or 1, 1, s, s]` (0 or a huge negative)
/// plus the same information as a 0/1 matrix for display.
#[derive(Debug, Clone)]
pub struct AttentionMask {
    /// 0 where allowed, `f32::MIN` where blocked; broadcast over heads.
    pub bias: Tensor,
    /// 1 where allowed, 0 where blocked: `[b or 1, 1, s, s]`.
    pub allowed: Tensor,
}

impl AttentionMask {
    /// `causal`: query i sees keys j <= i. `padding`: optional `[b][s]` with 1 for real tokens.
    pub fn build(
        seq_len: usize,
        causal: bool,
        padding: Option<&[Vec<u32>]>,
        device: &Device,
    ) -> Result<Self> {
        let batch = padding.map(|p| p.len()).unwrap_or(1);
        let mut allowed = vec![1f32; batch * seq_len * seq_len];
        for b in 0..batch {
            for i in 0..seq_len {
                for j in 0..seq_len {
                    let visible = (!causal || j <= i)
                        && padding.is_none_or(|p| p[b].get(j).copied().unwrap_or(0) != 0);
                    if !visible {
                        allowed[(b * seq_len + i) * seq_len + j] = 0.0;
                    }
                }
            }
        }
        Self::from_allowed(allowed, (batch, 1, seq_len, seq_len), device)
    }

    /// From `allowed` (1 where a query may see a key, 0 where blocked) of `shape`: the additive
    /// bias is 0 where allowed and `f32::MIN` where blocked.
    pub fn from_allowed(
        allowed: Vec<f32>,
        shape: (usize, usize, usize, usize),
        device: &Device,
    ) -> Result<Self> {
        let bias: Vec<f32> = allowed
            .iter()
            .map(|&a| if a > 0.0 { 0.0 } else { f32::MIN })
            .collect();
        Ok(Self {
            bias: Tensor::from_vec(bias, shape, device)?,
            allowed: Tensor::from_vec(allowed, shape, device)?,
        })
    }

    /// Cross-attention over a padded source: each of `queries` rows sees the real keys of its
    /// own sequence. `padding` is `[b][keys]` with 1 for real tokens. `[b, 1, queries, keys]`.
    pub fn key_padding(padding: &[Vec<u32>], queries: usize, device: &Device) -> Result<Self> {
        let batch = padding.len();
        let keys = padding.first().map_or(0, Vec::len);
        let allowed: Vec<f32> = padding
            .iter()
            .flat_map(|row| {
                (0..queries).flat_map(move |_| {
                    (0..keys).map(move |j| {
                        if row.get(j).copied().unwrap_or(0) != 0 {
                            1.0
                        } else {
                            0.0
                        }
                    })
                })
            })
            .collect();
        Self::from_allowed(allowed, (batch, 1, queries, keys), device)
    }
}

/// `[b, s, h] -> [b, heads, s, h/heads]`
pub fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, s, h) = x.dims3()?;
    x.reshape((b, s, heads, h / heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// `[b, heads, s, d] -> [b, s, heads·d]`
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, heads, s, d) = x.dims4()?;
    x.transpose(1, 2)?.contiguous()?.reshape((b, s, heads * d))
}

/// Scaled dot-product attention on a fused QKV projection `[b, s, 3h]` (Q, K, V side by side,
/// GPT-2's `c_attn`). Returns `[b, s, h]`. With the trace off on the CPU the fused kernel reads
/// the three blocks in place and its backward returns one gradient for the whole projection.
pub fn attention_from_qkv(
    qkv: &Tensor,
    heads: usize,
    mask: Option<&AttentionMask>,
    trace: Option<&mut LayerTrace>,
) -> Result<Tensor> {
    if trace.is_none() && kernels::applies(qkv) && mask.is_none_or(|m| kernels::applies(&m.bias)) {
        return kernels::attention_qkv(qkv, heads, mask.map(|m| &m.bias));
    }
    let h = qkv.dim(2)? / 3;
    let query = qkv.narrow(2, 0, h)?; // [b, s, h] each
    let key = qkv.narrow(2, h, h)?;
    let value = qkv.narrow(2, 2 * h, h)?;
    scaled_dot_product_attention(&query, &key, &value, heads, mask, trace)
}

/// Scaled dot-product attention on already projected Q, K, V (`[b, s, h]` each).
/// Returns the weighted sum with heads merged again, `[b, s, h]`.
pub fn scaled_dot_product_attention(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    heads: usize,
    mask: Option<&AttentionMask>,
    trace: Option<&mut LayerTrace>,
) -> Result<Tensor> {
    if trace.is_none()
        && kernels::applies(query)
        && kernels::applies(key)
        && kernels::applies(value)
        && mask.is_none_or(|m| kernels::applies(&m.bias))
    {
        return kernels::attention(query, key, value, heads, mask.map(|m| &m.bias));
    }
    let q = split_heads(query, heads)?; // [b, nh, s, d]
    let k = split_heads(key, heads)?;
    let v = split_heads(value, heads)?;
    let head_dim = q.dim(3)?;
    // The trace recomputes these three from q, k and the mask the same way (LayerTrace::scores).
    let scores = q.matmul(&k.t()?)?; // [b, nh, s, s]
    let scaled_scores = (&scores * (1.0 / (head_dim as f64).sqrt()))?;
    let masked_scores = match mask {
        Some(mask) => scaled_scores.broadcast_add(&mask.bias)?,
        None => scaled_scores,
    };
    let attention_probs = softmax_last_dim(&masked_scores)?; // each row sums to 1
    let weighted = attention_probs.matmul(&v)?; // [b, nh, s, d]
    let context = merge_heads(&weighted)?; // [b, s, h]
    if let Some(t) = trace {
        t.q = Some(q);
        t.k = Some(k);
        t.v = Some(v);
        t.mask = mask.map(|m| m.allowed.clone());
        t.mask_bias = mask.map(|m| m.bias.clone());
        t.attention_probs = Some(attention_probs);
        t.context = Some(context.clone());
    }
    Ok(context)
}

/// Token positions `0..seq_len` as `[1, s]` u32 ids.
pub fn position_ids(seq_len: usize, device: &Device) -> Result<Tensor> {
    Tensor::arange(0u32, seq_len as u32, device)?.unsqueeze(0)
}

/// The dtype every model runs in.
pub const DTYPE: DType = DType::F32;
