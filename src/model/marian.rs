//! Marian: the original encoder–decoder transformer, as `transformers`' `MarianMTModel` (the
//! Helsinki-NLP `opus-mt-*` translation models).
//!
//! The encoder reads the whole source sentence with bidirectional self-attention. The decoder
//! writes the target one token at a time: causal self-attention over what it has written, then
//! cross-attention whose queries come from the decoder and whose keys and values come from the
//! encoder's output, then the feed-forward block. Both stacks are post-LayerNorm
//! (`LayerNorm(x + sublayer(x))`), share one token embedding (scaled by √d_model when
//! `scale_embedding`), and add fixed sinusoidal positions. The LM head is the shared embedding,
//! plus `final_logits_bias`.
//!
//! Tensor names follow `MarianMTModel`: `model.shared.weight`, `model.encoder.layers.{i}.
//! self_attn.q_proj.weight`, `model.decoder.layers.{i}.encoder_attn.k_proj.weight`, ...,
//! `final_logits_bias`.

use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::layers::{
    Activation, AttentionMask, Embedding, LayerNorm, Linear, scaled_dot_product_attention,
};
use super::trace::{LayerTrace, Trace, begin_layer};

mod beam;
pub use beam::{EarlyStopping, GenerationConfig, Hypothesis};

/// A `MarianMTModel`'s `config.json`, the fields the model needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarianConfig {
    pub vocab_size: usize,
    pub d_model: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    pub encoder_attention_heads: usize,
    pub decoder_attention_heads: usize,
    pub encoder_ffn_dim: usize,
    pub decoder_ffn_dim: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_activation")]
    pub activation_function: String,
    #[serde(default)]
    pub scale_embedding: bool,
    pub pad_token_id: u32,
    pub eos_token_id: u32,
    pub decoder_start_token_id: u32,
    #[serde(default)]
    pub forced_eos_token_id: Option<u32>,
    /// The decoder's own vocabulary; only differs from `vocab_size` when the two sides do not
    /// share embeddings.
    #[serde(default)]
    pub decoder_vocab_size: Option<usize>,
    /// One embedding table for the encoder, the decoder and the LM head (`model.shared`).
    #[serde(default = "yes")]
    pub share_encoder_decoder_embeddings: bool,
    /// The LM head is the decoder's embedding table (no `lm_head.weight` of its own).
    #[serde(default = "yes")]
    pub tie_word_embeddings: bool,
}

fn yes() -> bool {
    true
}

fn default_activation() -> String {
    "gelu".into()
}

impl MarianConfig {
    pub fn from_hf_json(value: &serde_json::Value) -> std::result::Result<Self, String> {
        let config: Self = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        if config.d_model == 0
            || config.encoder_attention_heads == 0
            || config.decoder_attention_heads == 0
            || !config
                .d_model
                .is_multiple_of(config.encoder_attention_heads)
            || !config
                .d_model
                .is_multiple_of(config.decoder_attention_heads)
        {
            return Err(format!(
                "d_model ({}) must be a positive multiple of the attention heads ({} / {})",
                config.d_model, config.encoder_attention_heads, config.decoder_attention_heads
            ));
        }
        if config.pad_token_id as usize >= config.vocab_size {
            return Err(format!(
                "pad_token_id {} is outside the vocabulary of {}",
                config.pad_token_id, config.vocab_size
            ));
        }
        Ok(config)
    }

    /// The target side's vocabulary (rows of the LM head).
    pub fn target_vocab_size(&self) -> usize {
        // As `MarianMTModel`: `decoder_vocab_size` only counts when the sides do not share.
        match self.decoder_vocab_size {
            Some(n) if !self.share_encoder_decoder_embeddings => n,
            _ => self.vocab_size,
        }
    }

    /// A `config.json` that `transformers` loads as `MarianMTModel`.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        value["model_type"] = "marian".into();
        value["is_encoder_decoder"] = true.into();
        value["bad_words_ids"] = serde_json::json!([[self.pad_token_id]]);
        value
    }

    pub fn activation(&self) -> Activation {
        Activation::from_hf(&self.activation_function)
    }
}

/// The fixed sinusoidal positions as `transformers` lays them out: for position `p` and
/// frequency index `i < d/2`, `sin(p / 10000^(2i/d))` in the first half of the vector and
/// `cos(...)` in the second half (not interleaved). `[positions, d]`.
pub fn sinusoidal_positions(positions: usize, dim: usize, device: &Device) -> Result<Tensor> {
    let half = dim.div_ceil(2);
    let mut table = vec![0f32; positions * dim];
    for p in 0..positions {
        for j in 0..dim {
            // Column j of the sin half uses even index 2j, of the cos half odd index 2j + 1; both
            // share the frequency of index 2·(j div 1) in `transformers`' 2·(j // 2) / d.
            let (index, use_sin) = if j < half {
                (2 * j, true)
            } else {
                (2 * (j - half) + 1, false)
            };
            let angle = p as f64 / 10000f64.powf((2 * (index / 2)) as f64 / dim as f64);
            table[p * dim + j] = if use_sin { angle.sin() } else { angle.cos() } as f32;
        }
    }
    Tensor::from_vec(table, (positions, dim), device)
}

/// Attention with its own Q, K, V and output projections (`q_proj`, `k_proj`, `v_proj`,
/// `out_proj`). Self-attention reads keys and values from its own input; cross-attention from
/// the encoder output.
#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl Attention {
    fn new(vb: VarBuilder, d: usize, heads: usize) -> Result<Self> {
        Ok(Self {
            q_proj: Linear::new(vb.pp("q_proj"), d, d, true)?,
            k_proj: Linear::new(vb.pp("k_proj"), d, d, true)?,
            v_proj: Linear::new(vb.pp("v_proj"), d, d, true)?,
            out_proj: Linear::new(vb.pp("out_proj"), d, d, true)?,
            heads,
        })
    }

    /// Keys and values of `source` `[b, s, d]` each.
    fn keys_values(&self, source: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.k_proj.forward(source)?, self.v_proj.forward(source)?))
    }

    /// `x [b, t, d]` attends to keys and values `[b, s, d]`; returns `[b, t, d]`.
    fn forward(
        &self,
        x: &Tensor,
        key: &Tensor,
        value: &Tensor,
        mask: Option<&AttentionMask>,
        trace: Option<&mut LayerTrace>,
    ) -> Result<Tensor> {
        let query = self.q_proj.forward(x)?; // [b, t, d]
        let context = scaled_dot_product_attention(&query, key, value, self.heads, mask, trace)?;
        self.out_proj.forward(&context)
    }
}

/// The feed-forward block `fc2(act(fc1(x)))` with its LayerNorm.
#[derive(Debug, Clone)]
struct FeedForward {
    fc1: Linear,
    fc2: Linear,
    activation: Activation,
}

impl FeedForward {
    fn new(vb: &VarBuilder, d: usize, ffn: usize, activation: Activation) -> Result<Self> {
        Ok(Self {
            fc1: Linear::new(vb.pp("fc1"), d, ffn, true)?,
            fc2: Linear::new(vb.pp("fc2"), ffn, d, true)?,
            activation,
        })
    }

    /// Returns (hidden after the activation `[b, s, f]`, output `[b, s, d]`).
    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let hidden = self.activation.forward(&self.fc1.forward(x)?)?;
        let output = self.fc2.forward(&hidden)?;
        Ok((hidden, output))
    }
}

pub const LAYER_NORM_EPS: f64 = 1e-5;

#[derive(Debug, Clone)]
struct EncoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    feed_forward: FeedForward,
    final_layer_norm: LayerNorm,
}

impl EncoderLayer {
    fn new(vb: VarBuilder, c: &MarianConfig) -> Result<Self> {
        let d = c.d_model;
        Ok(Self {
            self_attn: Attention::new(vb.pp("self_attn"), d, c.encoder_attention_heads)?,
            self_attn_layer_norm: LayerNorm::new(
                vb.pp("self_attn_layer_norm"),
                d,
                LAYER_NORM_EPS,
                true,
            )?,
            feed_forward: FeedForward::new(&vb, d, c.encoder_ffn_dim, c.activation())?,
            final_layer_norm: LayerNorm::new(vb.pp("final_layer_norm"), d, LAYER_NORM_EPS, true)?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        padding_mask: Option<&AttentionMask>,
        trace: &mut Option<&mut Trace>,
    ) -> Result<Tensor> {
        let mut layer = begin_layer(trace);
        // Self-attention sublayer: LayerNorm(x + attn(x)), every token sees every (real) token.
        let (key, value) = self.self_attn.keys_values(x)?;
        let attention_output =
            self.self_attn
                .forward(x, &key, &value, padding_mask, layer.as_deref_mut())?;
        let residual_after_attention = self
            .self_attn_layer_norm
            .forward(&(x + &attention_output)?)?;
        // Feed-forward sublayer: LayerNorm(x + ffn(x)).
        let (mlp_hidden, mlp_output) = self.feed_forward.forward(&residual_after_attention)?;
        let output = self
            .final_layer_norm
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

/// Keys and values a decoder layer keeps between generation steps: its self-attention's, which
/// grow by one position a step, and its cross-attention's over the encoder output, computed once.
#[derive(Debug, Clone)]
struct LayerCache {
    self_key: Option<Tensor>,
    self_value: Option<Tensor>,
    cross_key: Tensor,
    cross_value: Tensor,
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    encoder_attn: Attention,
    encoder_attn_layer_norm: LayerNorm,
    feed_forward: FeedForward,
    final_layer_norm: LayerNorm,
}

/// What one decoder layer records: its self-attention and MLP in a [`LayerTrace`] like any
/// layer's, and its cross-attention (queries from the decoder, keys and values from the encoder
/// output, probabilities `[b, heads, target, source]`) in a second one.
impl DecoderLayer {
    fn new(vb: VarBuilder, c: &MarianConfig) -> Result<Self> {
        let d = c.d_model;
        let heads = c.decoder_attention_heads;
        Ok(Self {
            self_attn: Attention::new(vb.pp("self_attn"), d, heads)?,
            self_attn_layer_norm: LayerNorm::new(
                vb.pp("self_attn_layer_norm"),
                d,
                LAYER_NORM_EPS,
                true,
            )?,
            encoder_attn: Attention::new(vb.pp("encoder_attn"), d, heads)?,
            encoder_attn_layer_norm: LayerNorm::new(
                vb.pp("encoder_attn_layer_norm"),
                d,
                LAYER_NORM_EPS,
                true,
            )?,
            feed_forward: FeedForward::new(&vb, d, c.decoder_ffn_dim, c.activation())?,
            final_layer_norm: LayerNorm::new(vb.pp("final_layer_norm"), d, LAYER_NORM_EPS, true)?,
        })
    }

    /// `x [b, t, d]` (the new positions only when `cache` holds earlier ones).
    fn forward(
        &self,
        x: &Tensor,
        cache: &mut LayerCache,
        causal_mask: Option<&AttentionMask>,
        source_mask: Option<&AttentionMask>,
        mut trace: Option<(&mut LayerTrace, &mut LayerTrace)>,
    ) -> Result<Tensor> {
        // Causal self-attention over what the decoder has written so far.
        let (new_key, new_value) = self.self_attn.keys_values(x)?;
        let (key, value) = match (&cache.self_key, &cache.self_value) {
            (Some(k), Some(v)) => (
                Tensor::cat(&[k, &new_key], 1)?,
                Tensor::cat(&[v, &new_value], 1)?,
            ),
            _ => (new_key, new_value),
        };
        let self_trace = trace.as_mut().map(|(s, _)| &mut **s);
        let attention_output = self
            .self_attn
            .forward(x, &key, &value, causal_mask, self_trace)?;
        cache.self_key = Some(key);
        cache.self_value = Some(value);
        let residual_after_attention = self
            .self_attn_layer_norm
            .forward(&(x + &attention_output)?)?;

        // Cross-attention: each target position looks at every source position.
        let cross_trace = trace.as_mut().map(|(_, c)| &mut **c);
        let cross_output = self.encoder_attn.forward(
            &residual_after_attention,
            &cache.cross_key,
            &cache.cross_value,
            source_mask,
            cross_trace,
        )?;
        let residual_after_cross = self
            .encoder_attn_layer_norm
            .forward(&(&residual_after_attention + &cross_output)?)?;

        let (mlp_hidden, mlp_output) = self.feed_forward.forward(&residual_after_cross)?;
        let output = self
            .final_layer_norm
            .forward(&(&residual_after_cross + &mlp_output)?)?;
        if let Some((layer, cross)) = trace {
            layer.input = Some(x.clone());
            layer.attention_output = Some(attention_output);
            layer.residual_after_attention = Some(residual_after_attention.clone());
            layer.mlp_hidden = Some(mlp_hidden);
            layer.mlp_output = Some(mlp_output);
            layer.output = Some(output.clone());
            cross.input = Some(residual_after_attention);
            cross.attention_output = Some(cross_output);
            cross.residual_after_attention = Some(residual_after_cross);
        }
        Ok(output)
    }
}

/// What an encoder–decoder forward pass records: each stack as a [`Trace`] (embeddings, per-layer
/// self-attention and MLP, hidden states), and per decoder layer its cross-attention.
#[derive(Debug, Clone, Default)]
pub struct Seq2SeqTrace {
    pub encoder: Trace,
    pub decoder: Trace,
    /// One per decoder layer: `q` from the decoder, `k`/`v` from the encoder output,
    /// `attention_probs` `[b, heads, target, source]`.
    pub cross: Vec<LayerTrace>,
}

impl Seq2SeqTrace {
    /// As one [`Trace`]: the decoder's, with the encoder's record and the cross-attention in it.
    pub fn into_trace(self) -> Trace {
        Trace {
            encoder: Some(Box::new(self.encoder)),
            cross: self.cross,
            ..self.decoder
        }
    }

    /// Cross-attention probabilities of every decoder layer, `[b, heads, target, source]` each.
    pub fn cross_attentions(&self) -> Vec<Tensor> {
        self.cross
            .iter()
            .filter_map(|l| l.attention_probs.clone())
            .collect()
    }
}

/// A `MarianMTModel`.
#[derive(Debug, Clone)]
pub struct Marian {
    pub config: MarianConfig,
    /// Shared by encoder, decoder and LM head `[vocab, d]` (the encoder's table when the two
    /// sides do not share).
    pub shared: Embedding,
    /// The decoder's table when it does not share the encoder's `[target_vocab, d]`.
    decoder_embeddings: Option<Embedding>,
    /// The LM head's own matrix when it is not tied to the decoder's embeddings `[target_vocab, d]`.
    lm_head: Option<Tensor>,
    /// `[max_positions, d]`, read from the checkpoint when it stores them, else computed.
    encoder_positions: Tensor,
    decoder_positions: Tensor,
    encoder_layers: Vec<EncoderLayer>,
    decoder_layers: Vec<DecoderLayer>,
    /// `[1, vocab]`
    final_logits_bias: Tensor,
}

/// The decoder's state between generation steps.
#[derive(Debug, Clone)]
pub struct DecoderState {
    layers: Vec<LayerCache>,
    /// Target positions already decoded.
    position: usize,
    /// `[b][s]`, 1 for real source tokens, when the sources of a batch are padded.
    source_padding: Option<Vec<Vec<u32>>>,
}

impl Marian {
    /// `vb` is rooted where `model.` and `final_logits_bias` live.
    pub fn new(vb: VarBuilder, config: &MarianConfig) -> Result<Self> {
        let d = config.d_model;
        let model = vb.pp("model");
        let target_vocab = config.target_vocab_size();
        // `transformers` saves the shared table once, as `model.shared.weight`; unshared sides
        // have their own `embed_tokens`, an untied head its own `lm_head.weight`.
        let (shared, decoder_embeddings) = if config.share_encoder_decoder_embeddings {
            (
                Embedding::new(model.pp("shared"), config.vocab_size, d)?,
                None,
            )
        } else {
            (
                Embedding::new(model.pp("encoder.embed_tokens"), config.vocab_size, d)?,
                Some(Embedding::new(
                    model.pp("decoder.embed_tokens"),
                    target_vocab,
                    d,
                )?),
            )
        };
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(vb.get_with_hints(
                (target_vocab, d),
                "lm_head.weight",
                super::layers::normal_init(super::layers::INIT_STD),
            )?)
        };
        let positions = |stack: &str| -> Result<Tensor> {
            let name = format!("{stack}.embed_positions.weight");
            if model.contains_tensor(&name) {
                model.get((config.max_position_embeddings, d), &name)
            } else {
                sinusoidal_positions(config.max_position_embeddings, d, vb.device())
            }
        };
        let encoder_layers = (0..config.encoder_layers)
            .map(|i| EncoderLayer::new(model.pp(format!("encoder.layers.{i}")), config))
            .collect::<Result<Vec<_>>>()?;
        let decoder_layers = (0..config.decoder_layers)
            .map(|i| DecoderLayer::new(model.pp(format!("decoder.layers.{i}")), config))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: config.clone(),
            encoder_positions: positions("encoder")?,
            decoder_positions: positions("decoder")?,
            shared,
            decoder_embeddings,
            lm_head,
            encoder_layers,
            decoder_layers,
            final_logits_bias: vb.get_with_hints(
                (1, target_vocab),
                "final_logits_bias",
                candle_nn::Init::Const(0.0),
            )?,
        })
    }

    /// The decoder's token embeddings `[target_vocab, d]`.
    pub fn decoder_embeddings(&self) -> &Embedding {
        self.decoder_embeddings.as_ref().unwrap_or(&self.shared)
    }

    /// The LM head's matrix `[target_vocab, d]`.
    pub fn lm_head_matrix(&self) -> &Tensor {
        self.lm_head
            .as_ref()
            .unwrap_or(&self.decoder_embeddings().weight)
    }

    /// The encoder's position table `[max_positions, d]`.
    pub fn encoder_positions(&self) -> &Tensor {
        &self.encoder_positions
    }

    fn embed_scale(&self) -> f64 {
        if self.config.scale_embedding {
            (self.config.d_model as f64).sqrt()
        } else {
            1.0
        }
    }

    /// Token embeddings (scaled) plus positions `start..start + s` → `[b, s, d]`.
    fn embed(
        &self,
        table: &Embedding,
        ids: &Tensor,
        positions: &Tensor,
        start: usize,
        trace: Option<&mut Trace>,
    ) -> Result<Tensor> {
        let (_, s) = ids.dims2()?;
        if start + s > self.config.max_position_embeddings {
            candle_core::bail!(
                "{} tokens are more than the model's {} positions",
                start + s,
                self.config.max_position_embeddings
            );
        }
        let token_embeddings = (table.forward(ids)? * self.embed_scale())?; // [b, s, d]
        let position_embeddings = positions.narrow(0, start, s)?.unsqueeze(0)?; // [1, s, d]
        let embedding_sum = token_embeddings.broadcast_add(&position_embeddings)?;
        if let Some(t) = trace {
            t.token_embeddings = Some(token_embeddings);
            t.position_embeddings = Some(position_embeddings);
            t.embedding_sum = Some(embedding_sum.clone());
            t.hidden_states.push(embedding_sum.clone());
        }
        Ok(embedding_sum)
    }

    /// The encoder: source ids `[b, s]` → its output `[b, s, d]`. `padding` (`[b][s]`, 1 for
    /// real tokens) keeps a padded batch's tokens from attending to the padding.
    pub fn encode(
        &self,
        input_ids: &Tensor,
        padding: Option<&[Vec<u32>]>,
        mut trace: Option<&mut Trace>,
    ) -> Result<Tensor> {
        let (_, s) = input_ids.dims2()?;
        let padding_mask = padding
            .map(|p| AttentionMask::build(s, false, Some(p), input_ids.device()))
            .transpose()?;
        let mut x = self.embed(
            &self.shared,
            input_ids,
            &self.encoder_positions,
            0,
            trace.as_deref_mut(),
        )?;
        for layer in &self.encoder_layers {
            x = layer.forward(&x, padding_mask.as_ref(), &mut trace)?;
            if let Some(t) = trace.as_deref_mut() {
                t.hidden_states.push(x.clone());
            }
        }
        Ok(x)
    }

    /// A fresh decoder state for `encoder_output` `[b, s, d]`: each layer's cross-attention keys
    /// and values are computed here, once. `source_padding` as given to [`Self::encode`].
    pub fn start_decoding(
        &self,
        encoder_output: &Tensor,
        source_padding: Option<&[Vec<u32>]>,
    ) -> Result<DecoderState> {
        let layers = self
            .decoder_layers
            .iter()
            .map(|layer| {
                let (cross_key, cross_value) = layer.encoder_attn.keys_values(encoder_output)?;
                Ok(LayerCache {
                    self_key: None,
                    self_value: None,
                    cross_key,
                    cross_value,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DecoderState {
            layers,
            position: 0,
            source_padding: source_padding.map(<[Vec<u32>]>::to_vec),
        })
    }

    /// The decoder on new target ids `[b, t]` (after the `state.position` already decoded) →
    /// logits `[b, t, vocab]`.
    pub fn decode(
        &self,
        decoder_input_ids: &Tensor,
        state: &mut DecoderState,
        trace: Option<&mut Seq2SeqTrace>,
    ) -> Result<Tensor> {
        Ok(self.decode_with_hidden(decoder_input_ids, state, trace)?.1)
    }

    /// [`Self::decode`], also returning the decoder's last hidden state `[b, t, d]`.
    pub fn decode_with_hidden(
        &self,
        decoder_input_ids: &Tensor,
        state: &mut DecoderState,
        mut trace: Option<&mut Seq2SeqTrace>,
    ) -> Result<(Tensor, Tensor)> {
        let (_, t) = decoder_input_ids.dims2()?;
        let start = state.position;
        let mut x = self.embed(
            self.decoder_embeddings(),
            decoder_input_ids,
            &self.decoder_positions,
            start,
            trace.as_deref_mut().map(|tr| &mut tr.decoder),
        )?;
        // A query sees the keys up to its own position: the whole cache plus the new positions
        // up to itself. One new position (generation) sees everything: no mask needed.
        let mask = if t > 1 {
            Some(causal_mask_with_past(start, t, x.device())?)
        } else {
            None
        };
        let source_mask = state
            .source_padding
            .as_deref()
            .map(|p| AttentionMask::key_padding(p, t, x.device()))
            .transpose()?;
        for (layer, cache) in self.decoder_layers.iter().zip(state.layers.iter_mut()) {
            let layer_trace = trace.as_deref_mut().map(|tr| {
                tr.decoder.layers.push(LayerTrace::default());
                tr.cross.push(LayerTrace::default());
                let self_part = tr.decoder.layers.last_mut().expect("just pushed");
                let cross_part = tr.cross.last_mut().expect("just pushed");
                (self_part, cross_part)
            });
            x = layer.forward(&x, cache, mask.as_ref(), source_mask.as_ref(), layer_trace)?;
            if let Some(tr) = trace.as_deref_mut() {
                tr.decoder.hidden_states.push(x.clone());
            }
        }
        state.position += t;
        // LM head: the decoder's embedding table (or the head's own matrix), transposed, plus
        // the bias.
        // As one [b·t, d] × [d, vocab] product: a broadcast over the batch would copy the
        // vocabulary-sized matrix once per row of the batch.
        let (b, t, d) = x.dims3()?;
        let logits = self
            .lm_head_matrix()
            .matmul(&x.reshape((b * t, d))?.t()?)? // [vocab, b·t]
            .t()?
            .broadcast_add(&self.final_logits_bias)?
            .reshape((b, t, ()))?; // [b, t, vocab]
        if let Some(tr) = trace {
            tr.decoder.logits = Some(logits.clone());
        }
        Ok((x, logits))
    }

    /// Teacher-forced forward: source `[b, s]` and decoder input `[b, t]` → logits `[b, t, vocab]`.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        decoder_input_ids: &Tensor,
        trace: Option<&mut Seq2SeqTrace>,
    ) -> Result<Tensor> {
        Ok(self
            .forward_with_hidden(input_ids, None, decoder_input_ids, trace)?
            .1)
    }

    /// [`Self::forward`] for a padded batch of sources (`source_padding` `[b][s]`, 1 for real
    /// tokens), also returning the decoder's last hidden state `[b, t, d]`. A right-padded target
    /// needs no mask of its own: the causal mask already keeps real positions from seeing the
    /// padding after them.
    pub fn forward_with_hidden(
        &self,
        input_ids: &Tensor,
        source_padding: Option<&[Vec<u32>]>,
        decoder_input_ids: &Tensor,
        mut trace: Option<&mut Seq2SeqTrace>,
    ) -> Result<(Tensor, Tensor)> {
        let encoder_output = self.encode(
            input_ids,
            source_padding,
            trace.as_deref_mut().map(|t| &mut t.encoder),
        )?;
        let mut state = self.start_decoding(&encoder_output, source_padding)?;
        self.decode_with_hidden(decoder_input_ids, &mut state, trace)
    }

    /// `generation` with its maximum length cut to what the decoder's positions allow (its
    /// input is the start token and all but the last generated token).
    fn within_positions(&self, generation: &GenerationConfig) -> GenerationConfig {
        GenerationConfig {
            max_length: generation
                .max_length
                .min(self.config.max_position_embeddings + 1),
            ..generation.clone()
        }
    }

    /// Greedy translation of one source sentence (ids with its `</s>`), as `transformers`'
    /// `generate(num_beams=1, do_sample=False)`: from `decoder_start_token_id`, never a bad word
    /// (the pad token), `forced_eos_token_id` at the last allowed position, stop at `</s>` or
    /// `max_length`. Returns the generated ids after the start token. Uses the key/value cache
    /// (no trace).
    pub fn greedy(&self, source_ids: &[u32], generation: &GenerationConfig) -> Result<Vec<u32>> {
        let device = self.shared.weight.device();
        let input_ids = Tensor::new(source_ids, device)?.unsqueeze(0)?; // [1, s]
        let encoder_output = self.encode(&input_ids, None, None)?;
        let mut state = self.start_decoding(&encoder_output, None)?;
        let generation = self.within_positions(generation);
        let max_length = generation.max_length;
        let mut sequence = vec![generation.decoder_start_token_id];
        while sequence.len() < max_length {
            let last = *sequence
                .last()
                .unwrap_or(&generation.decoder_start_token_id);
            let ids = Tensor::new(&[last], device)?.unsqueeze(0)?; // [1, 1]
            let logits = self.decode(&ids, &mut state, None)?; // [1, 1, vocab]
            let mut scores = logits.squeeze(0)?.squeeze(0)?.to_vec1::<f32>()?;
            generation.process(&mut scores, &sequence);
            // The first of equal scores, as `torch.argmax` (and the beams' ranking) picks.
            let next = beam::first_max(&scores) as u32;
            sequence.push(next);
            if next == generation.eos_token_id {
                break;
            }
        }
        Ok(sequence[1..].to_vec())
    }
}

impl Marian {
    /// Greedy translations of several sources at once (each ids with its `</s>`): the sources
    /// padded into one batch (the padding masked), one decoder step for all rows, a finished row
    /// fed padding until every row is done. Gives what [`Self::greedy`] gives each source alone;
    /// much faster for an evaluation over many sentences.
    pub fn greedy_batch(
        &self,
        sources: &[Vec<u32>],
        generation: &GenerationConfig,
    ) -> Result<Vec<Vec<u32>>> {
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        let device = self.shared.weight.device();
        let pad = self.config.pad_token_id;
        let (rows, padding) = crate::data::pad_batch(sources, pad);
        let b = rows.len();
        let s = rows.first().map_or(0, Vec::len);
        let flat: Vec<u32> = rows.into_iter().flatten().collect();
        let input_ids = Tensor::from_vec(flat, (b, s), device)?; // [b, s]
        let encoder_output = self.encode(&input_ids, Some(&padding), None)?;
        let mut state = self.start_decoding(&encoder_output, Some(&padding))?;
        let generation = self.within_positions(generation);
        let mut sequences = vec![vec![generation.decoder_start_token_id]; b];
        let mut done = vec![false; b];
        let mut length = 1;
        while length < generation.max_length && done.iter().any(|d| !d) {
            let last: Vec<u32> = sequences
                .iter()
                .map(|seq| *seq.last().unwrap_or(&pad))
                .collect();
            let ids = Tensor::from_vec(last, (b, 1), device)?; // [b, 1]
            let logits = self.decode(&ids, &mut state, None)?; // [b, 1, vocab]
            let all_scores = logits.squeeze(1)?.to_vec2::<f32>()?;
            for (row, mut scores) in all_scores.into_iter().enumerate() {
                if done[row] {
                    sequences[row].push(pad);
                    continue;
                }
                generation.process(&mut scores, &sequences[row]);
                let next = beam::first_max(&scores) as u32;
                sequences[row].push(next);
                done[row] = next == generation.eos_token_id;
            }
            length += 1;
        }
        Ok(sequences
            .into_iter()
            .map(|seq| {
                // After the start token, up to and including `</s>`.
                let generated = &seq[1..];
                let end = generated
                    .iter()
                    .position(|&id| id == generation.eos_token_id)
                    .map_or(generated.len(), |i| i + 1);
                generated[..end].to_vec()
            })
            .collect())
    }
}

/// The causal mask for `t` new queries after `past` cached positions: query `i` (at position
/// `past + i`) sees keys `0..=past + i`. `[1, 1, t, past + t]`.
fn causal_mask_with_past(past: usize, t: usize, device: &Device) -> Result<AttentionMask> {
    if past == 0 {
        return AttentionMask::build(t, true, None, device);
    }
    let keys = past + t;
    let allowed: Vec<f32> = (0..t)
        .flat_map(|i| (0..keys).map(move |j| if j <= past + i { 1.0 } else { 0.0 }))
        .collect();
    AttentionMask::from_allowed(allowed, (1, 1, t, keys), device)
}
