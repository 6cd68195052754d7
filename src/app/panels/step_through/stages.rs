//! The stages of a forward pass: which there are for a model, in what order, what each is called and which trace entry it shows.

use super::*;

/// The stages inside every layer, in order.
pub(super) fn layer_stages() -> impl Iterator<Item = Stage> {
    Stage::ALL.into_iter().filter(|s| s.is_layer_stage())
}

/// A stage's button label (also its accessible name): the library's title, with the names
/// BERT (post-LN) and GPT give some stages.
pub fn stage_label(stage: Stage, causal: bool) -> &'static str {
    match stage {
        Stage::ResidualAttention if !causal => "Add & LayerNorm (attention)",
        Stage::ResidualMlp if !causal => "Add & LayerNorm (MLP)",
        Stage::Probabilities if causal => "next-token probabilities",
        Stage::Probabilities => "fill-mask probabilities",
        _ => stage.title(),
    }
}

/// [`stage_label`] for a family: the residual stages are "Add & LayerNorm" where the family
/// normalises after the sum (BERT, Marian), the probabilities are next-token ones where it
/// generates (GPT, Marian).
pub fn family_stage_label(family: &Family, stage: Stage) -> &'static str {
    match stage {
        Stage::Probabilities => stage_label(stage, family.generates()),
        _ => stage_label(stage, family.norm == NormPlacement::Pre),
    }
}

/// The trace entry a stage shows in `layer` (see [`InspectionData::stage`]).
pub fn trace_key(stage: Stage, layer: usize) -> TraceKey {
    let in_layer = |field| TraceSite::Layer(layer, field);
    let cross = |field| TraceSite::Cross(layer, field);
    TraceKey::new(match stage {
        Stage::Embed => TraceSite::TokenEmbeddings,
        Stage::AddPositions => TraceSite::PositionEmbeddings,
        Stage::AddSegments => TraceSite::SegmentEmbeddings,
        Stage::EmbeddingNorm => TraceSite::Layer(0, LayerField::Input),
        Stage::FinalNorm => TraceSite::FinalNorm,
        Stage::Logits | Stage::Probabilities => TraceSite::Logits,
        Stage::NormAttention => in_layer(LayerField::LnAttention),
        Stage::Qkv => in_layer(LayerField::Q),
        Stage::Scores => in_layer(LayerField::Scores),
        Stage::Scale => in_layer(LayerField::ScaledScores),
        Stage::Mask => in_layer(LayerField::MaskedScores),
        Stage::Softmax => in_layer(LayerField::AttentionProbs),
        Stage::WeightedSum => in_layer(LayerField::Context),
        Stage::OutputProjection => in_layer(LayerField::AttentionOutput),
        Stage::ResidualAttention => in_layer(LayerField::ResidualAfterAttention),
        Stage::NormMlp => in_layer(LayerField::LnMlp),
        Stage::MlpHidden => in_layer(LayerField::MlpHidden),
        Stage::MlpOutput => in_layer(LayerField::MlpOutput),
        Stage::ResidualMlp => in_layer(LayerField::Output),
        // Encoder–decoder: the decoder layer's cross-attention record.
        Stage::CrossQkv => cross(LayerField::Q),
        Stage::CrossScores => cross(LayerField::Scores),
        Stage::CrossSoftmax => cross(LayerField::AttentionProbs),
        Stage::CrossWeightedSum => cross(LayerField::Context),
        Stage::CrossOutputProjection => cross(LayerField::AttentionOutput),
        Stage::ResidualCross => cross(LayerField::ResidualAfterAttention),
    })
}

/// A stage of one forward pass: its kind and, inside the layers, which layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StageRef {
    pub kind: Stage,
    pub layer: Option<usize>,
    /// An encoder–decoder's encoder stack (its trace entries are `encoder.…`); false for the
    /// decoder and for single-stack families.
    #[serde(default)]
    pub encoder: bool,
}

impl StageRef {
    pub fn new(kind: Stage, layer: Option<usize>) -> Self {
        Self {
            kind,
            layer,
            encoder: false,
        }
    }

    /// A stage of an encoder–decoder's encoder.
    pub fn in_encoder(kind: Stage, layer: Option<usize>) -> Self {
        Self {
            kind,
            layer,
            encoder: true,
        }
    }

    /// The trace entry this stage shows.
    pub fn key(&self) -> TraceKey {
        let key = trace_key(self.kind, self.layer.unwrap_or(0));
        if self.encoder { key.in_encoder() } else { key }
    }
}

/// Every stage the trace of `data` has, in the order of the forward pass: an encoder–decoder's
/// encoder stages first, then its decoder's.
pub fn stage_list(data: &InspectionData) -> Vec<StageRef> {
    let mut list = Vec::new();
    if data.encoder_layers > 0
        && let Some(encoder) = data.family.stack(StackRole::Encoder)
        && data.family.stacks.len() > 1
    {
        list = stack_stages(data, encoder.stages, data.encoder_layers, true);
    }
    list.extend(stack_stages(
        data,
        data.family.output_stack().stages,
        data.num_layers,
        false,
    ));
    list
}

/// One stack's stages in order: those before its layers, each layer's, those after.
pub(super) fn stack_stages(
    data: &InspectionData,
    stages: &[Stage],
    layers: usize,
    encoder: bool,
) -> Vec<StageRef> {
    // The stages the family declares, in its order, where the trace has them (DistilBERT
    // declares BERT's stages but has no segment embeddings).
    let make = |kind: Stage, layer: Option<usize>| StageRef {
        kind,
        layer,
        encoder,
    };
    let has = |stage: StageRef| data.stage(stage.key()).is_some();
    let first_layer_stage = stages
        .iter()
        .position(|s| s.is_layer_stage())
        .unwrap_or(stages.len());
    let (before, rest) = stages.split_at(first_layer_stage);
    let mut list: Vec<StageRef> = before
        .iter()
        .map(|&kind| make(kind, None))
        .filter(|&stage| has(stage))
        .collect();
    for layer in 0..layers {
        for &kind in rest.iter().filter(|s| s.is_layer_stage()) {
            if has(make(kind, Some(layer))) {
                list.push(make(kind, Some(layer)));
            }
        }
    }
    for &kind in rest.iter().filter(|s| !s.is_layer_stage()) {
        if has(make(kind, None)) {
            list.push(make(kind, None));
        }
    }
    list
}

/// The index of `current` in `list`, or of the closest stage of the same kind.
pub(super) fn position_in(list: &[StageRef], current: StageRef) -> usize {
    list.iter()
        .position(|s| *s == current)
        .or_else(|| {
            // Same kind in another layer (e.g. a smaller model), or the stage's layer start.
            list.iter()
                .rposition(|s| s.kind == current.kind && s.layer <= current.layer)
        })
        .or_else(|| list.iter().position(|s| s.kind == current.kind))
        .or_else(|| {
            current
                .layer
                .and_then(|l| list.iter().position(|s| s.layer == Some(l)))
        })
        .unwrap_or(0)
}
