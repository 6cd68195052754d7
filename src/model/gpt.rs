//! GPT-2: a decoder-only transformer. Learned positions, pre-LayerNorm blocks, `gelu_new`,
//! causal self-attention, and an LM head tied to the token embeddings.
//!
//! Tensor names follow Hugging Face `GPT2LMHeadModel` (`transformer.h.{i}.attn.c_attn.weight`, ...).
//! Its Conv1D layers store weights `[in, out]`.

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::GptConfig;
use super::layers::{
    Activation, AttentionMask, Embedding, INIT_STD, LayerNorm, Linear, attention_from_qkv,
    position_ids,
};
use super::trace::{Trace, begin_layer};

mod step;

pub use step::StepOutput;

#[derive(Debug, Clone)]
struct CausalSelfAttention {
    /// Q, K and V in one projection `[h, 3h]`.
    c_attn: Linear,
    /// Output projection `[h, h]`.
    c_proj: Linear,
    n_head: usize,
}

#[derive(Debug, Clone)]
struct Mlp {
    c_fc: Linear,
    c_proj: Linear,
    activation: Activation,
}

#[derive(Debug, Clone)]
struct Block {
    ln_1: LayerNorm,
    attn: CausalSelfAttention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

#[derive(Debug, Clone)]
pub struct Gpt2 {
    pub config: GptConfig,
    /// Token embeddings `[vocab, h]`, also the LM head.
    pub wte: Embedding,
    /// Position embeddings `[positions, h]`.
    pub wpe: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
}

impl Block {
    fn new(vb: VarBuilder, c: &GptConfig) -> Result<Self> {
        let h = c.n_embd;
        // GPT-2 scales the init of the projections into the residual stream by 1/√(2·layers).
        let proj_std = INIT_STD / (2.0 * c.n_layer as f64).sqrt();
        Ok(Self {
            ln_1: LayerNorm::new(vb.pp("ln_1"), h, c.layer_norm_epsilon, c.bias)?,
            attn: CausalSelfAttention {
                c_attn: Linear::conv1d(vb.pp("attn.c_attn"), h, 3 * h, c.bias, INIT_STD)?,
                c_proj: Linear::conv1d(vb.pp("attn.c_proj"), h, h, c.bias, proj_std)?,
                n_head: c.n_head,
            },
            ln_2: LayerNorm::new(vb.pp("ln_2"), h, c.layer_norm_epsilon, c.bias)?,
            mlp: Mlp {
                c_fc: Linear::conv1d(vb.pp("mlp.c_fc"), h, c.inner_dim(), c.bias, INIT_STD)?,
                c_proj: Linear::conv1d(vb.pp("mlp.c_proj"), c.inner_dim(), h, c.bias, proj_std)?,
                activation: Activation::from_hf(&c.activation_function),
            },
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        mask: &AttentionMask,
        trace: &mut Option<&mut Trace>,
    ) -> Result<Tensor> {
        let mut layer = begin_layer(trace);

        // Attention sublayer: x + attn(ln_1(x))
        let ln_attention = self.ln_1.forward(x)?; // [b, s, h]
        let qkv = self.attn.c_attn.forward(&ln_attention)?; // [b, s, 3h]: Q, K, V side by side
        let context = attention_from_qkv(&qkv, self.attn.n_head, Some(mask), layer.as_deref_mut())?; // [b, s, h]
        let attention_output = self.attn.c_proj.forward(&context)?;
        let residual_after_attention = (x + &attention_output)?;

        // MLP sublayer: x + mlp(ln_2(x))
        let ln_mlp = self.ln_2.forward(&residual_after_attention)?;
        let mlp_hidden = self
            .mlp
            .activation
            .forward(&self.mlp.c_fc.forward(&ln_mlp)?)?; // [b, s, 4h]
        let mlp_output = self.mlp.c_proj.forward(&mlp_hidden)?; // [b, s, h]
        let output = (&residual_after_attention + &mlp_output)?;

        if let Some(t) = layer {
            t.input = Some(x.clone());
            t.ln_attention = Some(ln_attention);
            t.attention_output = Some(attention_output);
            t.residual_after_attention = Some(residual_after_attention);
            t.ln_mlp = Some(ln_mlp);
            t.mlp_hidden = Some(mlp_hidden);
            t.mlp_output = Some(mlp_output);
            t.output = Some(output.clone());
        }
        Ok(output)
    }
}

impl Gpt2 {
    /// Builds the model from `vb` rooted at the `transformer.` prefix's parent level
    /// (pass `vb.pp("transformer")` for `GPT2LMHeadModel` files, `vb` for bare `GPT2Model` files).
    pub fn new(vb: VarBuilder, config: &GptConfig) -> Result<Self> {
        let wte = Embedding::new(vb.pp("wte"), config.vocab_size, config.n_embd)?;
        // Positions start like tokens: normal(0, 0.02), as Hugging Face's GPT-2 and nanoGPT do.
        let wpe = Embedding::new(vb.pp("wpe"), config.n_positions, config.n_embd)?;
        let blocks = (0..config.n_layer)
            .map(|i| Block::new(vb.pp(format!("h.{i}")), config))
            .collect::<Result<Vec<_>>>()?;
        let ln_f = LayerNorm::new(
            vb.pp("ln_f"),
            config.n_embd,
            config.layer_norm_epsilon,
            config.bias,
        )?;
        Ok(Self {
            config: config.clone(),
            wte,
            wpe,
            blocks,
            ln_f,
        })
    }

    /// `[b, s]` token ids -> final hidden states after `ln_f`, `[b, s, h]`: the stack's part of
    /// [`super::Model::forward`], the one entry point (which adds [`Self::lm_head`]).
    pub fn hidden_states(
        &self,
        input_ids: &Tensor,
        padding: Option<&[Vec<u32>]>,
        mut trace: Option<&mut Trace>,
    ) -> Result<Tensor> {
        let (_batch, seq_len) = input_ids.dims2()?;
        if seq_len > self.config.n_positions {
            candle_core::bail!(
                "sequence of {seq_len} tokens is longer than the model's context of {}",
                self.config.n_positions
            );
        }
        let device = input_ids.device();
        let token_embeddings = self.wte.forward(input_ids)?; // [b, s, h]
        let position_embeddings = self.wpe.forward(&position_ids(seq_len, device)?)?; // [1, s, h]
        let mut x = token_embeddings.broadcast_add(&position_embeddings)?;
        if let Some(t) = trace.as_deref_mut() {
            t.token_embeddings = Some(token_embeddings);
            t.position_embeddings = Some(position_embeddings);
            t.embedding_sum = Some(x.clone());
            t.hidden_states.push(x.clone());
        }

        let mask = AttentionMask::build(seq_len, true, padding, device)?;
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x, &mask, &mut trace)?;
            if i + 1 < self.blocks.len()
                && let Some(t) = trace.as_deref_mut()
            {
                t.hidden_states.push(x.clone());
            }
        }
        let final_norm = self.ln_f.forward(&x)?;
        if let Some(t) = trace {
            // transformers reports the last hidden state after ln_f.
            t.hidden_states.push(final_norm.clone());
            t.final_norm = Some(final_norm.clone());
        }
        Ok(final_norm)
    }

    /// Loss and gradients of next-token prediction on `input_ids [b, s]` against `targets`
    /// (`b·s` token ids) in one hand-written pass over the fused kernels (`gpt/step.rs`), when it
    /// applies: fused kernels on, float32 weights on the CPU, a GELU in every block. `None` means
    /// it does not; then [`super::Model::forward`] and autograd compute the same.
    pub fn fused_training_step(
        &self,
        input_ids: &Tensor,
        targets: &Tensor,
    ) -> Result<Option<StepOutput>> {
        if !step::applies(self) {
            return Ok(None);
        }
        let (batch, seq) = input_ids.dims2()?;
        let ids = input_ids
            .flatten_all()?
            .to_dtype(DType::U32)?
            .to_vec1::<u32>()?;
        let targets = targets
            .flatten_all()?
            .to_dtype(DType::U32)?
            .to_vec1::<u32>()?;
        step::training_step(self, &ids, &targets, (batch, seq)).map(Some)
    }

    /// The LM head, tied to the token embeddings: `[b, s, h] -> [b, s, vocab]`.
    pub fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        let (b, s, h) = hidden.dims3()?;
        hidden
            .reshape((b * s, h))?
            .matmul(&self.wte.weight.t()?)?
            .reshape((b, s, self.config.vocab_size))
    }
}
