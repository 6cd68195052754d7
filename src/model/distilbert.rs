//! DistilBERT: BERT with half the layers, no segment embeddings and no pooler, and its own
//! tensor names (`transformer.layer.{i}.attention.q_lin.weight`, ...).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::config::DistilBertConfig;
use super::layers::{
    Activation, AttentionMask, Embedding, LayerNorm, Linear, position_ids,
    scaled_dot_product_attention,
};
use super::trace::{Trace, begin_layer};

/// DistilBERT's LayerNorm epsilon (fixed in `transformers`).
const LAYER_NORM_EPS: f64 = 1e-12;

#[derive(Debug, Clone)]
struct TransformerBlock {
    q_lin: Linear,
    k_lin: Linear,
    v_lin: Linear,
    out_lin: Linear,
    sa_layer_norm: LayerNorm,
    lin1: Linear,
    lin2: Linear,
    output_layer_norm: LayerNorm,
    activation: Activation,
    heads: usize,
}

#[derive(Debug, Clone)]
pub struct DistilBert {
    pub config: DistilBertConfig,
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    embeddings_layer_norm: LayerNorm,
    layers: Vec<TransformerBlock>,
}

impl TransformerBlock {
    fn new(vb: VarBuilder, c: &DistilBertConfig) -> Result<Self> {
        let h = c.dim;
        Ok(Self {
            q_lin: Linear::new(vb.pp("attention.q_lin"), h, h, true)?,
            k_lin: Linear::new(vb.pp("attention.k_lin"), h, h, true)?,
            v_lin: Linear::new(vb.pp("attention.v_lin"), h, h, true)?,
            out_lin: Linear::new(vb.pp("attention.out_lin"), h, h, true)?,
            sa_layer_norm: LayerNorm::new(vb.pp("sa_layer_norm"), h, LAYER_NORM_EPS, true)?,
            lin1: Linear::new(vb.pp("ffn.lin1"), h, c.hidden_dim, true)?,
            lin2: Linear::new(vb.pp("ffn.lin2"), c.hidden_dim, h, true)?,
            output_layer_norm: LayerNorm::new(vb.pp("output_layer_norm"), h, LAYER_NORM_EPS, true)?,
            activation: Activation::from_hf(&c.activation),
            heads: c.n_heads,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        mask: Option<&AttentionMask>,
        trace: &mut Option<&mut Trace>,
    ) -> Result<Tensor> {
        let mut layer = begin_layer(trace);
        let query = self.q_lin.forward(x)?; // [b, s, h]
        let key = self.k_lin.forward(x)?;
        let value = self.v_lin.forward(x)?;
        let context = scaled_dot_product_attention(
            &query,
            &key,
            &value,
            self.heads,
            mask,
            layer.as_deref_mut(),
        )?;
        let attention_output = self.out_lin.forward(&context)?;
        let residual_after_attention = self.sa_layer_norm.forward(&(x + &attention_output)?)?;
        let mlp_hidden = self
            .activation
            .forward(&self.lin1.forward(&residual_after_attention)?)?; // [b, s, f]
        let mlp_output = self.lin2.forward(&mlp_hidden)?;
        let output = self
            .output_layer_norm
            .forward(&(&residual_after_attention + &mlp_output)?)?;
        if let Some(t) = layer {
            t.input = Some(x.clone());
            t.attention_output = Some(attention_output);
            t.residual_after_attention = Some(residual_after_attention);
            t.mlp_hidden = Some(mlp_hidden);
            t.mlp_output = Some(mlp_output);
            t.output = Some(output.clone());
        }
        Ok(output)
    }
}

impl DistilBert {
    /// `vb` rooted where `embeddings.` and `transformer.` live (`.pp("distilbert")` for heads).
    pub fn new(vb: VarBuilder, config: &DistilBertConfig) -> Result<Self> {
        let h = config.dim;
        let e = vb.pp("embeddings");
        let layers = (0..config.n_layers)
            .map(|i| TransformerBlock::new(vb.pp(format!("transformer.layer.{i}")), config))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: config.clone(),
            word_embeddings: Embedding::new(e.pp("word_embeddings"), config.vocab_size, h)?,
            position_embeddings: Embedding::new(
                e.pp("position_embeddings"),
                config.max_position_embeddings,
                h,
            )?,
            embeddings_layer_norm: LayerNorm::new(e.pp("LayerNorm"), h, LAYER_NORM_EPS, true)?,
            layers,
        })
    }

    /// `[b, s]` ids -> last hidden state `[b, s, h]`: the encoder's part of
    /// [`super::Model::forward`], the one entry point (which adds the MLM head).
    pub fn forward(
        &self,
        input_ids: &Tensor,
        padding: Option<&[Vec<u32>]>,
        mut trace: Option<&mut Trace>,
    ) -> Result<Tensor> {
        let (_batch, seq_len) = input_ids.dims2()?;
        if seq_len > self.config.max_position_embeddings {
            candle_core::bail!(
                "sequence of {seq_len} tokens is longer than the model's {} positions",
                self.config.max_position_embeddings
            );
        }
        let device = input_ids.device();
        let token_embeddings = self.word_embeddings.forward(input_ids)?;
        let position_embeddings = self
            .position_embeddings
            .forward(&position_ids(seq_len, device)?)?;
        let embedding_sum = token_embeddings.broadcast_add(&position_embeddings)?;
        let mut x = self.embeddings_layer_norm.forward(&embedding_sum)?;
        if let Some(t) = trace.as_deref_mut() {
            t.token_embeddings = Some(token_embeddings);
            t.position_embeddings = Some(position_embeddings);
            t.embedding_sum = Some(embedding_sum);
            t.hidden_states.push(x.clone());
        }
        let mask = match padding {
            Some(p) if p.iter().any(|row| row.contains(&0)) => {
                Some(AttentionMask::build(seq_len, false, Some(p), device)?)
            }
            _ => None,
        };
        for layer in &self.layers {
            x = layer.forward(&x, mask.as_ref(), &mut trace)?;
            if let Some(t) = trace.as_deref_mut() {
                t.hidden_states.push(x.clone());
            }
        }
        Ok(x)
    }
}
