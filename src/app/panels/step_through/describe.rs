//! What each stage computes, in words and a formula, with its real sizes.

use super::*;

pub(super) fn activation(config: Option<&ModelConfig>) -> Option<Activation> {
    Some(match &config?.family {
        FamilyConfig::Gpt2(c) => Activation::from_hf(&c.activation_function),
        FamilyConfig::Bert(c) => Activation::from_hf(&c.hidden_act),
        FamilyConfig::DistilBert(c) => Activation::from_hf(&c.activation),
        FamilyConfig::Marian(c) => c.activation(),
    })
}

pub(super) fn layer_norm_eps(config: Option<&ModelConfig>) -> Option<f64> {
    Some(match &config?.family {
        FamilyConfig::Gpt2(c) => c.layer_norm_epsilon,
        FamilyConfig::Bert(c) => c.layer_norm_eps,
        FamilyConfig::DistilBert(_) => 1e-12,
        FamilyConfig::Marian(_) => crate::model::marian::LAYER_NORM_EPS,
    })
}

/// The trace's shape of a stage: the batch dimension of 1 that [`Array`] drops, put back.
pub fn trace_shape(array: &Array) -> Vec<usize> {
    let mut shape = vec![1];
    shape.extend(&array.shape);
    shape
}

/// Formula, explanation and axis names of a stage.
pub(super) struct Description {
    pub(super) title: String,
    pub(super) formula: String,
    pub(super) explanation: String,
    pub(super) axes: &'static str,
}

pub(super) fn describe(stage: StageRef, cx: &StageContext) -> Description {
    let data = cx.data;
    // Pre-LN GPT and post-LN BERT describe their sub-layers differently; an encoder–decoder is
    // post-LN in both stacks, with a causal decoder and a bidirectional encoder.
    let causal = data.family.norm == NormPlacement::Pre;
    let masked = data.is_causal && !stage.encoder;
    // GPT and an encoder–decoder's decoder predict the next token; BERT fills masks.
    let generates = data.family.generates();
    let l = stage.layer.unwrap_or(0);
    let d = data
        .stage(trace_key(Stage::Qkv, l))
        .and_then(|a| a.shape.last().copied())
        .unwrap_or(0);
    let nh = data.num_heads;
    let eps = layer_norm_eps(cx.config)
        .map(|e| format!("{e:e}"))
        .unwrap_or_else(|| "ε".into());
    let ln = format!("LN(x) = γ ⊙ (x − mean(x)) / √(var(x) + ε) + β, ε = {eps}, per token");
    let prev = if l == 0 {
        "the embeddings".to_string()
    } else {
        format!("layer {}", l - 1)
    };
    let label = family_stage_label(data.family, stage.kind);
    let stack = match (data.encoder_layers > 0, stage.encoder) {
        (false, _) => "",
        (true, true) => "Encoder · ",
        (true, false) => "Decoder · ",
    };
    let title = match stage.layer {
        Some(layer) => format!("{stack}Layer {layer} · {label}"),
        None => format!("{stack}{label}"),
    };
    let tokens_x_h = "[batch, tokens, hidden]";
    let (formula, explanation, axes) = match stage.kind {
        Stage::Embed => (
            "X_tok = E_tok[ids]   (row `id` of the token embedding table)".to_string(),
            "Each token id picks its row of the learned token embedding table. The same token \
             gets the same vector in every sentence: a static embedding."
                .to_string(),
            tokens_x_h,
        ),
        Stage::AddPositions if data.family.positions == PositionScheme::Sinusoidal => (
            "X = √d · X_tok + P[0..s],  P[p, j] = sin(p / 10000^(2j/d)) | cos(…)".to_string(),
            "Fixed sinusoidal positions (not learned): sines in the first half of each vector, \
             cosines in the second, each pair at its own frequency. The token embeddings are \
             scaled by √d first. Shown: the positions, then the sum X that enters layer 0."
                .to_string(),
            tokens_x_h,
        ),
        Stage::AddPositions if causal => (
            "X = X_tok + E_pos[0..s]".to_string(),
            "A learned vector per position is added, so the model can tell the first token from \
             the fifth. Shown: the position embeddings, then the sum X that enters layer 0."
                .to_string(),
            "[1, tokens, hidden]",
        ),
        Stage::AddPositions => (
            "E_pos[0..s]   (to be added: X_tok + E_pos + E_seg)".to_string(),
            "A learned vector per position; BERT adds it together with the segment embedding \
             (next stage)."
                .to_string(),
            "[1, tokens, hidden]",
        ),
        Stage::AddSegments => (
            "X = X_tok + E_pos[0..s] + E_seg[type_ids]".to_string(),
            "Segment (token type) embeddings mark sentence A (0) and sentence B (1) of a pair. \
             Shown: the segment embeddings, then the sum X."
                .to_string(),
            tokens_x_h,
        ),
        Stage::EmbeddingNorm => (
            format!("H₀ = {ln}(X)"),
            "BERT normalises the embedding sum before the first layer (post-LN family)."
                .to_string(),
            tokens_x_h,
        ),
        Stage::NormAttention => (
            format!("A = LN₁(X), {ln}"),
            format!(
                "GPT-2 is pre-LN: the input X of layer {l} (the output of {prev}) is normalised \
                 before attention; X itself flows on in the residual stream."
            ),
            tokens_x_h,
        ),
        Stage::Qkv => (
            format!(
                "Q = A·W_Q + b_Q,  K = A·W_K + b_K,  V = A·W_V + b_V,  split into {nh} heads of \
                 d = {d}"
            ),
            format!(
                "Three linear maps of every token's vector; shown for head {}: queries (what a \
                 token looks for), keys (what it offers), values (what it passes on).",
                cx.head
            ),
            "[batch, heads, tokens, d]",
        ),
        Stage::Scores => (
            "scores = Q·K^T".to_string(),
            "Row i, column j: the dot product of token i's query with token j's key — how well \
             they match."
                .to_string(),
            "[batch, heads, query, key]",
        ),
        Stage::Scale => {
            let root = (d as f64).sqrt();
            (
                format!("scaled = scores / √d = scores / √{d} = scores / {root:.6}"),
                "Dividing by √d keeps the scores from growing with the head width, so the \
                 softmax does not saturate."
                    .to_string(),
                "[batch, heads, query, key]",
            )
        }
        Stage::Mask if masked => (
            "masked = scaled + bias,  bias = 0 where mask = 1,  −∞ (f32::MIN) where mask = 0"
                .to_string(),
            "Causal mask: a token may not look at tokens after it. Hatched cells are blocked; \
             after the softmax they get probability 0."
                .to_string(),
            "[batch, heads, query, key]",
        ),
        Stage::Mask => (
            "masked = scaled   (mask all ones: nothing blocked)".to_string(),
            "Bidirectional: every token may look at every token; only padding would be masked, \
             and a single text has none."
                .to_string(),
            "[batch, heads, query, key]",
        ),
        Stage::Softmax => (
            "probs = softmax(masked),  probs[i, j] = exp(m[i, j]) / Σ_k exp(m[i, k])".to_string(),
            "Each row becomes a probability distribution over the keys (it sums to 1): how much \
             token i attends to each token."
                .to_string(),
            "[batch, heads, query, key]",
        ),
        Stage::WeightedSum => (
            format!(
                "context_h = probs_h · V_h,  context = [context_0 | … | context_{}]",
                nh.saturating_sub(1)
            ),
            format!(
                "Every token's new vector is the attention-weighted average of the value \
                 vectors; the heads' results are put side by side. Head {} fills columns {}–{}.",
                cx.head,
                cx.head * d,
                ((cx.head + 1) * d).saturating_sub(1)
            ),
            tokens_x_h,
        ),
        Stage::OutputProjection => (
            "O = context·W_O + b_O".to_string(),
            "A linear map mixes the heads' results back into the model width.".to_string(),
            tokens_x_h,
        ),
        Stage::ResidualAttention if causal => (
            "X' = X + O".to_string(),
            "The residual connection: attention's output is added to the stream it read from."
                .to_string(),
            tokens_x_h,
        ),
        Stage::ResidualAttention => (
            format!("X' = LN(X + O),  {ln}"),
            "Add & LayerNorm: the residual connection, then BERT's post-LayerNorm.".to_string(),
            tokens_x_h,
        ),
        Stage::NormMlp => (
            format!("M = LN₂(X'),  {ln}"),
            "Pre-LN again: the stream is normalised before the MLP.".to_string(),
            tokens_x_h,
        ),
        Stage::MlpHidden => {
            let act = activation(cx.config);
            let f = data
                .stage(stage.key())
                .and_then(|a| a.shape.last().copied())
                .unwrap_or(0);
            let input = if causal { "M" } else { "X'" };
            (
                format!(
                    "U = act({input}·W₁ + b₁),  act(x) = {}",
                    act.map_or("GELU", |a| a.formula())
                ),
                format!(
                    "The feed-forward network widens every token's vector to {f} units and \
                     applies the non-linearity, token by token (no mixing between tokens)."
                ),
                "[batch, tokens, MLP width]",
            )
        }
        Stage::MlpOutput => (
            "Y = U·W₂ + b₂".to_string(),
            "Back to the model width.".to_string(),
            tokens_x_h,
        ),
        Stage::ResidualMlp if causal => (
            "X_next = X' + Y".to_string(),
            format!(
                "The second residual connection; this is layer {l}'s output and the next \
                 layer's input."
            ),
            tokens_x_h,
        ),
        Stage::ResidualMlp => (
            format!("X_next = LN(X' + Y),  {ln}"),
            format!("Add & LayerNorm; this is layer {l}'s output and the next layer's input."),
            tokens_x_h,
        ),
        Stage::FinalNorm => (
            format!("H = LN_f(X_L),  {ln}"),
            "GPT-2 normalises the last layer's output once more before the head.".to_string(),
            tokens_x_h,
        ),
        Stage::Logits if data.family.has_cross_attention() => (
            "logits = H·E_tok^T + final_logits_bias".to_string(),
            "The decoder's last hidden state against the shared token embedding table (the LM \
             head is tied to it), plus a fixed bias buffer: one score per vocabulary entry at \
             every position; position i scores the token written after reading token i."
                .to_string(),
            "[batch, tokens, vocabulary]",
        ),
        Stage::Logits if generates => (
            "logits = H·E_tok^T   (the head shares its weights with the token embeddings)"
                .to_string(),
            "One score per vocabulary entry at every position; position i scores the token \
             that comes after token i."
                .to_string(),
            "[batch, tokens, vocabulary]",
        ),
        Stage::Logits => (
            "logits = LN(act(H·W + b))·E_tok^T + b_vocab   (masked-LM head)".to_string(),
            "One score per vocabulary entry at every position: which token fits there.".to_string(),
            "[batch, tokens, vocabulary]",
        ),
        Stage::Probabilities if generates => (
            "p = softmax(logits[last])".to_string(),
            "The next-token distribution after the last token (the Predict view reshapes it \
             with temperature, top-k and top-p)."
                .to_string(),
            "[batch, tokens, vocabulary]",
        ),
        Stage::CrossQkv => (
            format!(
                "Q = X'·W_Q + b_Q (decoder),  K = E·W_K + b_K,  V = E·W_V + b_V (E: encoder \
                 output),  {nh} heads of d = {d}"
            ),
            "Cross-attention: the queries come from the decoder's tokens, the keys and values \
             from the encoder's output, so each target token can look at every source token."
                .to_string(),
            "[batch, heads, target or source tokens, d]",
        ),
        Stage::CrossScores => (
            "scores = Q·K^T / √d   (no mask: every source token is visible)".to_string(),
            "Row i, column j: how well target token i's query matches source token j's key."
                .to_string(),
            "[batch, heads, target, source]",
        ),
        Stage::CrossSoftmax => (
            "probs = softmax(scores) over the source tokens".to_string(),
            "Each target token's distribution over the source words: in a trained translator, \
             the word alignment."
                .to_string(),
            "[batch, heads, target, source]",
        ),
        Stage::CrossWeightedSum => (
            "context_h = probs_h · V_h (source values)".to_string(),
            "Each target token receives a weighted average of the source tokens' values."
                .to_string(),
            tokens_x_h,
        ),
        Stage::CrossOutputProjection => (
            "O = context·W_O + b_O".to_string(),
            "The heads' results mixed back into the model width.".to_string(),
            tokens_x_h,
        ),
        Stage::ResidualCross => (
            format!("X'' = LN(X' + O),  {ln}"),
            "Add & LayerNorm after cross-attention.".to_string(),
            tokens_x_h,
        ),
        Stage::Probabilities => (
            "p = softmax(logits[i]) at every [MASK] position i".to_string(),
            "The fill-mask predictions: which tokens the model puts where [MASK] stands."
                .to_string(),
            "[batch, tokens, vocabulary]",
        ),
    };
    Description {
        title,
        formula,
        explanation,
        axes,
    }
}
