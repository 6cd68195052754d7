//! What a forward pass can record. Tensors are cheap handles (reference-counted), so a trace costs
//! only the memory of the intermediates it keeps alive; with the trace off nothing is recorded.

use candle_core::Tensor;

/// Per-layer recordings. Shapes: `b` batch, `s` sequence, `h` width, `nh` heads, `d` head width,
/// `f` MLP width.
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
    /// Q·Kᵀ before scaling `[b, nh, s, s]`.
    pub scores: Option<Tensor>,
    /// Q·Kᵀ/√d `[b, nh, s, s]`.
    pub scaled_scores: Option<Tensor>,
    /// 1 where a query may see a key, 0 where blocked `[b or 1, 1, s, s]`.
    pub mask: Option<Tensor>,
    /// Scores after the mask (blocked entries hugely negative) `[b, nh, s, s]`.
    pub masked_scores: Option<Tensor>,
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
