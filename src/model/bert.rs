//! BERT: an encoder-only transformer. Token + position + segment embeddings, post-LayerNorm
//! blocks, erf GELU, bidirectional attention, and an optional pooler over `[CLS]`.
//!
//! Tensor names follow Hugging Face `BertModel` (`embeddings.word_embeddings.weight`,
//! `encoder.layer.{i}.attention.self.query.weight`, ...), with or without the `bert.` prefix.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::config::BertConfig;
use super::layers::{
    Activation, AttentionMask, Embedding, LayerNorm, Linear, position_ids,
    scaled_dot_product_attention,
};
use super::trace::{Trace, begin_layer};

#[derive(Debug, Clone)]
struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_layer_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_layer_norm: LayerNorm,
    activation: Activation,
    heads: usize,
}

#[derive(Debug, Clone)]
pub struct Bert {
    pub config: BertConfig,
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    embeddings_layer_norm: LayerNorm,
    layers: Vec<BertLayer>,
    /// `tanh(W·h[CLS] + b)`; absent in `BertForMaskedLM` / `BertForQuestionAnswering`.
    pub pooler: Option<Linear>,
}

impl BertLayer {
    fn new(vb: VarBuilder, c: &BertConfig) -> Result<Self> {
        let h = c.hidden_size;
        Ok(Self {
            query: Linear::new(vb.pp("attention.self.query"), h, h, true)?,
            key: Linear::new(vb.pp("attention.self.key"), h, h, true)?,
            value: Linear::new(vb.pp("attention.self.value"), h, h, true)?,
            attention_output: Linear::new(vb.pp("attention.output.dense"), h, h, true)?,
            attention_layer_norm: LayerNorm::new(
                vb.pp("attention.output.LayerNorm"),
                h,
                c.layer_norm_eps,
                true,
            )?,
            intermediate: Linear::new(vb.pp("intermediate.dense"), h, c.intermediate_size, true)?,
            output: Linear::new(vb.pp("output.dense"), c.intermediate_size, h, true)?,
            output_layer_norm: LayerNorm::new(
                vb.pp("output.LayerNorm"),
                h,
                c.layer_norm_eps,
                true,
            )?,
            activation: Activation::from_hf(&c.hidden_act),
            heads: c.num_attention_heads,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        mask: Option<&AttentionMask>,
        trace: &mut Option<&mut Trace>,
    ) -> Result<Tensor> {
        let mut layer = begin_layer(trace);

        // Attention sublayer: LayerNorm(x + attn(x))
        let query = self.query.forward(x)?; // [b, s, h]
        let key = self.key.forward(x)?;
        let value = self.value.forward(x)?;
        let context = scaled_dot_product_attention(
            &query,
            &key,
            &value,
            self.heads,
            mask,
            layer.as_deref_mut(),
        )?;
        let attention_output = self.attention_output.forward(&context)?;
        let residual_after_attention = self
            .attention_layer_norm
            .forward(&(x + &attention_output)?)?;

        // MLP sublayer: LayerNorm(x + mlp(x))
        let mlp_hidden = self
            .activation
            .forward(&self.intermediate.forward(&residual_after_attention)?)?; // [b, s, f]
        let mlp_output = self.output.forward(&mlp_hidden)?; // [b, s, h]
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

impl Bert {
    /// `vb` is rooted where `embeddings.` and `encoder.` live (add `.pp("bert")` for files with
    /// the prefix).
    pub fn new(vb: VarBuilder, config: &BertConfig, with_pooler: bool) -> Result<Self> {
        let h = config.hidden_size;
        let e = vb.pp("embeddings");
        let layers = (0..config.num_hidden_layers)
            .map(|i| BertLayer::new(vb.pp(format!("encoder.layer.{i}")), config))
            .collect::<Result<Vec<_>>>()?;
        let pooler = if with_pooler {
            Some(Linear::new(vb.pp("pooler.dense"), h, h, true)?)
        } else {
            None
        };
        Ok(Self {
            config: config.clone(),
            word_embeddings: Embedding::new(e.pp("word_embeddings"), config.vocab_size, h)?,
            position_embeddings: Embedding::new(
                e.pp("position_embeddings"),
                config.max_position_embeddings,
                h,
            )?,
            token_type_embeddings: Embedding::new(
                e.pp("token_type_embeddings"),
                config.type_vocab_size,
                h,
            )?,
            embeddings_layer_norm: LayerNorm::new(
                e.pp("LayerNorm"),
                h,
                config.layer_norm_eps,
                true,
            )?,
            layers,
            pooler,
        })
    }

    /// `[b, s]` ids (and segment ids, default all 0) -> last hidden state `[b, s, h]`.
    /// `padding`: per batch row, 1 for real tokens and 0 for padding. The encoder's part of
    /// [`super::Model::forward`], the one entry point (which adds the heads).
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
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
        let token_type_ids = match token_type_ids {
            Some(t) => t.clone(),
            None => input_ids.zeros_like()?,
        };
        let token_embeddings = self.word_embeddings.forward(input_ids)?; // [b, s, h]
        let position_embeddings = self
            .position_embeddings
            .forward(&position_ids(seq_len, device)?)?; // [1, s, h]
        let segment_embeddings = self.token_type_embeddings.forward(&token_type_ids)?; // [b, s, h]
        let embedding_sum = token_embeddings
            .broadcast_add(&position_embeddings)?
            .add(&segment_embeddings)?;
        let mut x = self.embeddings_layer_norm.forward(&embedding_sum)?;
        if let Some(t) = trace.as_deref_mut() {
            t.token_embeddings = Some(token_embeddings);
            t.position_embeddings = Some(position_embeddings);
            t.segment_embeddings = Some(segment_embeddings);
            t.embedding_sum = Some(embedding_sum);
            t.hidden_states.push(x.clone());
        }

        // Bidirectional: only padding is masked, and only when there is any.
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

    /// The pooled `[CLS]` representation `[b, h]`, if this model has a pooler.
    pub fn pool(&self, sequence_output: &Tensor) -> Result<Option<Tensor>> {
        match &self.pooler {
            Some(dense) => {
                let cls = sequence_output.narrow(1, 0, 1)?.squeeze(1)?; // [b, h]
                Ok(Some(dense.forward(&cls)?.tanh()?))
            }
            None => Ok(None),
        }
    }
}
