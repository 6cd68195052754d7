//! What a forward pass can record. Tensors are cheap handles (reference-counted), so a trace costs
//! only the memory of the intermediates it keeps alive; with the trace off nothing is recorded.

use candle_core::Tensor;

/// Per-layer recordings. Shapes: `b` batch, `s` sequence, `h` width, `nh` heads, `d` head width,
/// `f` MLP width.
///
/// The scores before the softmax (raw, scaled and masked) are not kept: they follow from `q`, `k`
/// and the mask exactly as the forward pass computed them ([`LayerTrace::scores`] and the two
/// after it), and each is an `s × s` map per head, the largest thing a trace holds (48 MiB per
/// layer of a GPT-2-small-size model at 1,024 tokens). A trace keeps one such map per layer,
/// the attention probabilities, as `transformers` does with `output_attentions`.
#[derive(Debug, Clone, Default)]
pub struct LayerTrace {
    /// Residual stream entering the layer `[b, s, h]`.
    pub input: Option<Tensor>,
    /// LayerNorm before attention (pre-LN families such as GPT-2) `[b, s, h]`.
    pub ln_attention: Option<Tensor>,
    /// Per-head projections `[b, nh, s, d]`.
    pub q: Option<Tensor>,
    pub k: Option<Tensor>,
    pub v: Option<Tensor>,
    /// 1 where a query may see a key, 0 where blocked `[b or 1, 1, s, s]`.
    pub mask: Option<Tensor>,
    /// What the mask adds to the scores: 0 where allowed, `f32::MIN` where blocked.
    pub mask_bias: Option<Tensor>,
    /// Softmax of the masked scores `[b, nh, s, s]`.
    pub attention_probs: Option<Tensor>,
    /// Weighted sum of V, heads merged `[b, s, h]`.
    pub context: Option<Tensor>,
    /// After the attention output projection `[b, s, h]`.
    pub attention_output: Option<Tensor>,
    /// Residual stream after the attention sublayer (post-LN families: after Add & LayerNorm).
    pub residual_after_attention: Option<Tensor>,
    /// LayerNorm before the MLP (pre-LN families) `[b, s, h]`.
    pub ln_mlp: Option<Tensor>,
    /// MLP hidden activation after the non-linearity `[b, s, f]`.
    pub mlp_hidden: Option<Tensor>,
    /// MLP output projection `[b, s, h]`.
    pub mlp_output: Option<Tensor>,
    /// Residual stream leaving the layer `[b, s, h]`.
    pub output: Option<Tensor>,
}

impl LayerTrace {
    /// Q·Kᵀ before scaling `[b, nh, s, s]`, computed again from the recorded `q` and `k`.
    pub fn scores(&self) -> candle_core::Result<Option<Tensor>> {
        let (Some(q), Some(k)) = (&self.q, &self.k) else {
            return Ok(None);
        };
        Ok(Some(q.matmul(&k.t()?)?))
    }

    /// Q·Kᵀ/√d `[b, nh, s, s]`.
    pub fn scaled_scores(&self) -> candle_core::Result<Option<Tensor>> {
        let (Some(scores), Some(q)) = (self.scores()?, &self.q) else {
            return Ok(None);
        };
        let head_dim = q.dim(3)?;
        Ok(Some((&scores * (1.0 / (head_dim as f64).sqrt()))?))
    }

    /// Scores after the mask (blocked entries hugely negative) `[b, nh, s, s]`.
    pub fn masked_scores(&self) -> candle_core::Result<Option<Tensor>> {
        let Some(scaled) = self.scaled_scores()? else {
            return Ok(None);
        };
        Ok(Some(match &self.mask_bias {
            Some(bias) => scaled.broadcast_add(bias)?,
            None => scaled,
        }))
    }
}

/// One field of a [`LayerTrace`], by name: what a trace key points at inside a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerField {
    Input,
    LnAttention,
    Q,
    K,
    V,
    Scores,
    ScaledScores,
    Mask,
    MaskedScores,
    AttentionProbs,
    Context,
    AttentionOutput,
    ResidualAfterAttention,
    LnMlp,
    MlpHidden,
    MlpOutput,
    Output,
}

impl LayerField {
    /// Every field, in the order of the forward pass.
    pub const ALL: [LayerField; 17] = [
        LayerField::Input,
        LayerField::LnAttention,
        LayerField::Q,
        LayerField::K,
        LayerField::V,
        LayerField::Scores,
        LayerField::ScaledScores,
        LayerField::Mask,
        LayerField::MaskedScores,
        LayerField::AttentionProbs,
        LayerField::Context,
        LayerField::AttentionOutput,
        LayerField::ResidualAfterAttention,
        LayerField::LnMlp,
        LayerField::MlpHidden,
        LayerField::MlpOutput,
        LayerField::Output,
    ];

    /// The field's name in exports (`attention_probs`).
    pub fn name(self) -> &'static str {
        match self {
            LayerField::Input => "input",
            LayerField::LnAttention => "ln_attention",
            LayerField::Q => "q",
            LayerField::K => "k",
            LayerField::V => "v",
            LayerField::Scores => "scores",
            LayerField::ScaledScores => "scaled_scores",
            LayerField::Mask => "mask",
            LayerField::MaskedScores => "masked_scores",
            LayerField::AttentionProbs => "attention_probs",
            LayerField::Context => "context",
            LayerField::AttentionOutput => "attention_output",
            LayerField::ResidualAfterAttention => "residual_after_attention",
            LayerField::LnMlp => "ln_mlp",
            LayerField::MlpHidden => "mlp_hidden",
            LayerField::MlpOutput => "mlp_output",
            LayerField::Output => "output",
        }
    }

    /// The scores, which a trace computes again from `q` and `k` instead of keeping.
    pub fn is_recomputed(self) -> bool {
        matches!(
            self,
            LayerField::Scores | LayerField::ScaledScores | LayerField::MaskedScores
        )
    }

    /// This field of `layer` (the scores are computed again from `q` and `k`).
    pub fn of(self, layer: &LayerTrace) -> candle_core::Result<Option<Tensor>> {
        let stored = match self {
            LayerField::Input => &layer.input,
            LayerField::LnAttention => &layer.ln_attention,
            LayerField::Q => &layer.q,
            LayerField::K => &layer.k,
            LayerField::V => &layer.v,
            LayerField::Scores => return layer.scores(),
            LayerField::ScaledScores => return layer.scaled_scores(),
            LayerField::Mask => &layer.mask,
            LayerField::MaskedScores => return layer.masked_scores(),
            LayerField::AttentionProbs => &layer.attention_probs,
            LayerField::Context => &layer.context,
            LayerField::AttentionOutput => &layer.attention_output,
            LayerField::ResidualAfterAttention => &layer.residual_after_attention,
            LayerField::LnMlp => &layer.ln_mlp,
            LayerField::MlpHidden => &layer.mlp_hidden,
            LayerField::MlpOutput => &layer.mlp_output,
            LayerField::Output => &layer.output,
        };
        Ok(stored.clone())
    }
}

/// Where a recorded tensor sits in the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceSite {
    TokenEmbeddings,
    PositionEmbeddings,
    SegmentEmbeddings,
    EmbeddingSum,
    /// A field of layer `layer` (an encoder–decoder's decoder self-attention layers too).
    Layer(usize, LayerField),
    /// A field of decoder layer `layer`'s cross-attention.
    Cross(usize, LayerField),
    FinalNorm,
    Logits,
}

/// The name of one recorded tensor: the key views look a stage up by. Displayed as in exports:
/// `token_embeddings`, `layers.2.attention_probs`, `cross.0.q`, `encoder.layers.1.output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceKey {
    /// In an encoder–decoder's encoder stack (else the decoder, or the only stack).
    pub encoder: bool,
    pub site: TraceSite,
}

impl TraceKey {
    pub fn new(site: TraceSite) -> Self {
        Self {
            encoder: false,
            site,
        }
    }

    /// The same site in an encoder–decoder's encoder.
    pub fn in_encoder(self) -> Self {
        Self {
            encoder: true,
            ..self
        }
    }
}

/// Exports write the key as its name.
impl serde::Serialize for TraceKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl std::fmt::Display for TraceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.encoder {
            f.write_str("encoder.")?;
        }
        match self.site {
            TraceSite::TokenEmbeddings => f.write_str("token_embeddings"),
            TraceSite::PositionEmbeddings => f.write_str("position_embeddings"),
            TraceSite::SegmentEmbeddings => f.write_str("segment_embeddings"),
            TraceSite::EmbeddingSum => f.write_str("embedding_sum"),
            TraceSite::Layer(layer, field) => write!(f, "layers.{layer}.{}", field.name()),
            TraceSite::Cross(layer, field) => write!(f, "cross.{layer}.{}", field.name()),
            TraceSite::FinalNorm => f.write_str("final_norm"),
            TraceSite::Logits => f.write_str("logits"),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Token embedding rows `[b, s, h]`.
    pub token_embeddings: Option<Tensor>,
    /// Position embedding rows `[1, s, h]`.
    pub position_embeddings: Option<Tensor>,
    /// Segment (token type) embedding rows `[b, s, h]`, BERT only.
    pub segment_embeddings: Option<Tensor>,
    /// Sum of the embedding parts `[b, s, h]`.
    pub embedding_sum: Option<Tensor>,
    pub layers: Vec<LayerTrace>,
    /// The hidden states as `transformers` reports them (`output_hidden_states=True`):
    /// index 0 the embedding output, index L the last layer (GPT-2: after the final LayerNorm).
    pub hidden_states: Vec<Tensor>,
    /// Final LayerNorm output (GPT-2's `ln_f`).
    pub final_norm: Option<Tensor>,
    /// The head's logits (LM / MLM `[b, s, vocab]`).
    pub logits: Option<Tensor>,
    /// Encoder–decoder families: the encoder's record (this trace is then the decoder's).
    pub encoder: Option<Box<Trace>>,
    /// Encoder–decoder families, one per decoder layer: the cross-attention, `q` from the
    /// decoder, `k`/`v` from the encoder output, `attention_probs` `[b, nh, target, source]`.
    pub cross: Vec<LayerTrace>,
}

impl Trace {
    /// Attention probabilities of every layer, `[b, nh, s, s]` each.
    pub fn attentions(&self) -> Vec<Tensor> {
        self.layers
            .iter()
            .filter_map(|l| l.attention_probs.clone())
            .collect()
    }
}

/// Attention maps of one sequence as plain numbers: for each layer's `[1, heads, rows, cols]`
/// probabilities, each head's map row-major (`maps[layer][head][row · cols + col]`).
pub fn maps_per_head(maps: &[Tensor]) -> candle_core::Result<Vec<Vec<Vec<f32>>>> {
    maps.iter()
        .map(|probs| {
            let heads = probs.squeeze(0)?.to_vec3::<f32>()?; // [heads, rows, cols]
            Ok(heads
                .into_iter()
                .map(|rows| rows.into_iter().flatten().collect())
                .collect())
        })
        .collect()
}

/// Starts a new layer's record when tracing, and hands back a mutable handle to it.
pub fn begin_layer<'a>(trace: &'a mut Option<&mut Trace>) -> Option<&'a mut LayerTrace> {
    trace.as_deref_mut().map(|t| {
        t.layers.push(LayerTrace::default());
        t.layers.last_mut().expect("just pushed")
    })
}
