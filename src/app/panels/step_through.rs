//! View "Step through": one forward pass, stage by stage. Embed → add positions (→ add segments)
//! → LayerNorm → Q, K, V → scores → scale → mask → softmax → weighted sum → output projection →
//! residual → MLP → residual → … → final LayerNorm → logits → probabilities, for a chosen layer
//! and head. Each stage shows its formula, the shape of the recorded tensor and its values (a
//! heatmap of the matrix for the chosen head; the selected token's vector as a bar strip), all
//! from the trace of the real forward pass the worker ran ([`Shared::inspection_full`]).
//!
//! Next / Back (or the ← / → keys) walk the stages; the layer slider jumps to the same stage in
//! another layer.

use eframe::egui;
use std::path::Path;
use std::sync::Arc;

use egui::{
    Align2, Color32, FontId, Key, Rect, RichText, Role, Sense, Stroke, Ui, Vec2, WidgetInfo,
};
use serde::{Deserialize, Serialize};

use super::{Action, Panel};
use crate::app::data::{Array, InspectionData, Matrix, Slot, VocabEntry};
use crate::app::state::{Cached, Shared};
use crate::app::widgets::export::{
    ExportFormat, export_buttons, heatmap_png, matrix_csv, matrix_json,
};
use crate::app::widgets::{
    ColorScale, Heatmap, HeatmapResponse, Selection, fetch_status, format_value, token_chips,
    value_bars,
};
use crate::app::worker::{Command, Output};
use crate::inspect::Predictions;
use crate::lessons::Stage;
use crate::lessons::ViewName;
use crate::model::config::{FamilyConfig, ModelConfig};
use crate::model::family::{Family, NormPlacement, PositionScheme, StackRole};
use crate::model::layers::Activation;
use crate::model::trace::{LayerField, TraceKey, TraceSite};

/// The stages inside every layer, in order.
fn layer_stages() -> impl Iterator<Item = Stage> {
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
fn stack_stages(
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

/// What the view shows now (for tests and lessons).
#[derive(Debug, Clone, PartialEq)]
pub struct ShownStage {
    pub stage: StageRef,
    /// The recorded tensor's shape, batch dimension included (as the trace holds it).
    pub shape: Vec<usize>,
    pub formula: String,
    /// The text of the shape line, `shape [1, 4, 6, 6]`.
    pub shape_label: String,
}

#[derive(Serialize, Deserialize)]
#[serde(default)]
pub struct StepThroughPanel {
    pub slot: Slot,
    pub current: StageRef,
    pub head: usize,
    /// The selected token (row), whose vector is drawn as a bar strip.
    #[serde(skip)]
    pub token: Option<usize>,
    pub show_values: bool,
    /// What was drawn on the last frame.
    #[serde(skip)]
    pub shown: Option<ShownStage>,
    #[serde(skip)]
    vocab: Cached<(Slot, u64), Arc<Vec<VocabEntry>>>,
}

impl Default for StepThroughPanel {
    fn default() -> Self {
        Self {
            slot: Slot::Gpt,
            current: StageRef::new(Stage::Embed, None),
            head: 0,
            token: None,
            show_values: true,
            shown: None,
            vocab: Cached::default(),
        }
    }
}

impl StepThroughPanel {
    /// Goes to a stage (`layer` is ignored for stages outside the layers).
    pub fn go_to(&mut self, kind: Stage, layer: usize) {
        self.current = StageRef {
            kind,
            layer: kind.is_layer_stage().then_some(layer),
            encoder: self.current.encoder,
        };
    }

    fn step(&mut self, list: &[StageRef], delta: isize) {
        let index = position_in(list, self.current);
        let next = (index as isize + delta).clamp(0, list.len() as isize - 1) as usize;
        if let Some(stage) = list.get(next) {
            self.current = *stage;
        }
    }
}

/// The index of `current` in `list`, or of the closest stage of the same kind.
fn position_in(list: &[StageRef], current: StageRef) -> usize {
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

impl Panel for StepThroughPanel {
    fn view(&self) -> ViewName {
        ViewName::StepThrough
    }

    fn hint(&self) -> &'static str {
        "One forward pass, stage by stage, with formulas, shapes and values"
    }

    fn save_state(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self).ok()
    }

    fn load_state(&mut self, state: serde_json::Value) {
        if let Ok(saved) = serde_json::from_value::<Self>(state) {
            *self = saved;
        }
    }

    fn apply(&mut self, action: &Action, _shared: &mut Shared) {
        match action {
            Action::SetText(_) | Action::SetPair(_) => self.token = None,
            Action::SelectToken { slot, index } if *slot == self.slot => self.token = *index,
            Action::StepThrough {
                slot,
                stage,
                layer,
                head,
                encoder,
            } => {
                if let Some(slot) = slot
                    && *slot != self.slot
                {
                    self.slot = *slot;
                    self.token = None;
                }
                if let Some(encoder) = encoder {
                    self.current.encoder = *encoder;
                }
                self.go_to(*stage, layer.or(self.current.layer).unwrap_or(0));
                if let Some(head) = head {
                    self.head = *head;
                }
            }
            _ => {}
        }
    }

    fn ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        ui.heading("Step through");
        ui.label(
            "One forward pass of the current text, stage by stage. Every number is recorded from \
             the model's real forward pass (the worker runs it with the trace on).",
        );
        ui.horizontal_wrapped(|ui| {
            ui.label("Model:");
            for slot in shared.slots_to_show() {
                let name = match shared.model(slot) {
                    Some(m) => format!("{} ({})", slot.short(), m.name),
                    None => slot.short().to_string(),
                };
                if ui.selectable_label(self.slot == slot, name).clicked() && self.slot != slot {
                    self.slot = slot;
                    self.token = None;
                }
            }
        });
        let slot = self.slot;
        let fetch = shared.inspection_full(slot);
        let Some(data) = fetch_status(ui, slot, &fetch) else {
            self.shown = None;
            return;
        };
        let config = shared.model(slot).map(|m| m.config.clone());
        let export_dir = shared.export_dir.clone();
        let list = stage_list(&data);
        if list.is_empty() {
            ui.label("This model recorded no stages.");
            self.shown = None;
            return;
        }
        let index = position_in(&list, self.current);
        self.current = list[index];
        self.head = self.head.min(data.num_heads.saturating_sub(1));
        if self.token.is_some_and(|t| t >= data.tokens.len()) {
            self.token = None;
        }

        // Navigation.
        let mut delta = 0isize;
        ui.horizontal_wrapped(|ui| {
            if ui
                .add_enabled(index > 0, egui::Button::new("◀ Back"))
                .on_hover_text("Previous stage (← key)")
                .clicked()
            {
                delta = -1;
            }
            if ui
                .add_enabled(index + 1 < list.len(), egui::Button::new("Next ▶"))
                .on_hover_text("Next stage (→ key)")
                .clicked()
            {
                delta = 1;
            }
            ui.label(format!("Stage {} of {}", index + 1, list.len()));
            ui.weak("(← / → keys)");
            ui.separator();
            let layers = if self.current.encoder {
                data.encoder_layers
            } else {
                data.num_layers
            };
            if layers > 0 {
                let mut layer = self.current.layer.unwrap_or(0).min(layers - 1);
                let before = layer;
                ui.add(egui::Slider::new(&mut layer, 0..=layers - 1).text("Jump to layer"));
                if layer != before || (self.current.layer.is_none() && ui.button("Go").clicked()) {
                    let encoder = self.current.encoder;
                    let kind = if self.current.kind.is_layer_stage() {
                        self.current.kind
                    } else {
                        layer_stages()
                            .find(|k| {
                                list.contains(&StageRef {
                                    kind: *k,
                                    layer: Some(layer),
                                    encoder,
                                })
                            })
                            .unwrap_or(Stage::Qkv)
                    };
                    self.go_to(kind, layer);
                }
            }
            ui.separator();
            ui.label("Head:");
            for h in 0..data.num_heads {
                ui.selectable_value(&mut self.head, h, format!("{h}"));
            }
            ui.separator();
            ui.checkbox(&mut self.show_values, "Numbers in cells");
        });
        if !ui.ctx().egui_wants_keyboard_input() {
            ui.input_mut(|i| {
                if i.consume_key(egui::Modifiers::NONE, Key::ArrowRight) {
                    delta = 1;
                }
                if i.consume_key(egui::Modifiers::NONE, Key::ArrowLeft) {
                    delta = -1;
                }
            });
        }
        if delta != 0 {
            self.step(&list, delta);
        }
        if data.encoder_layers > 0 {
            // An encoder–decoder: the encoder reads the source, then the decoder writes.
            ui.horizontal(|ui| {
                ui.label("Stack:");
                let first = |encoder: bool| list.iter().copied().find(|s| s.encoder == encoder);
                for (encoder, name) in [
                    (true, "Encoder (reads the source)"),
                    (false, "Decoder (writes the translation)"),
                ] {
                    if ui
                        .selectable_label(self.current.encoder == encoder, name)
                        .clicked()
                        && self.current.encoder != encoder
                        && let Some(stage) = first(encoder)
                    {
                        self.current = stage;
                    }
                }
                ui.weak(format!(
                    "\"{}\" → \"{}\" (the greedy translation, fed back to the decoder)",
                    data.text,
                    data.token_labels().join(" ")
                ));
            });
        }
        let current = self.current;
        self.stage_path(ui, &list, data.family);
        ui.separator();

        let vocab = self
            .vocab
            .fetch(
                shared,
                (slot, shared.generation(slot)),
                || Command::Vocabulary { slot },
                |out| match out {
                    Output::Vocabulary(v) => Some(v),
                    _ => None,
                },
            )
            .data();
        let context = StageContext {
            data: &data,
            config: config.as_ref(),
            head: self.head,
            token: self.token,
            show_values: self.show_values,
            export_dir: &export_dir,
            vocab: vocab.as_deref().map(Vec::as_slice),
        };
        let outcome = show_stage(ui, &context, current);
        if let Some(clicked) = outcome.clicked_token {
            self.token = if self.token == Some(clicked) {
                None
            } else {
                Some(clicked)
            };
        }
        self.shown = outcome.shown;
    }
}

impl StepThroughPanel {
    /// The stages before the layers, the current layer's stages, and the stages after, as
    /// buttons.
    fn stage_path(&mut self, ui: &mut Ui, list: &[StageRef], family: &Family) {
        let layer = self.current.layer.unwrap_or(0);
        // The current stack's stages only (an encoder–decoder has two).
        let encoder = self.current.encoder;
        let list: Vec<StageRef> = list
            .iter()
            .copied()
            .filter(|s| s.encoder == encoder)
            .collect();
        let list = list.as_slice();
        let layers = list
            .iter()
            .filter_map(|s| s.layer)
            .max()
            .map_or(0, |l| l + 1);
        let mut chosen = None;
        ui.horizontal_wrapped(|ui| {
            ui.spacing_mut().item_spacing.x = 3.0;
            let mut shown_layer = false;
            let mut first = true;
            for stage in list {
                match stage.layer {
                    Some(l) if l != layer => continue,
                    Some(l) if !shown_layer => {
                        shown_layer = true;
                        ui.label(
                            RichText::new(format!("│ layer {l} (of 0–{}):", layers - 1)).strong(),
                        );
                        first = true;
                    }
                    None if shown_layer => {
                        shown_layer = false;
                        ui.label(RichText::new("│").strong());
                        first = true;
                    }
                    _ => {}
                }
                if !first {
                    ui.weak("→");
                }
                first = false;
                let selected = *stage == self.current;
                if ui
                    .selectable_label(selected, family_stage_label(family, stage.kind))
                    .clicked()
                {
                    chosen = Some(*stage);
                }
            }
        });
        if let Some(stage) = chosen {
            self.current = stage;
        }
    }
}

struct StageContext<'a> {
    data: &'a InspectionData,
    config: Option<&'a ModelConfig>,
    head: usize,
    token: Option<usize>,
    show_values: bool,
    export_dir: &'a Path,
    vocab: Option<&'a [VocabEntry]>,
}

#[derive(Default)]
struct StageOutcome {
    shown: Option<ShownStage>,
    clicked_token: Option<usize>,
}

fn activation(config: Option<&ModelConfig>) -> Option<Activation> {
    Some(match &config?.family {
        FamilyConfig::Gpt2(c) => Activation::from_hf(&c.activation_function),
        FamilyConfig::Bert(c) => Activation::from_hf(&c.hidden_act),
        FamilyConfig::DistilBert(c) => Activation::from_hf(&c.activation),
        FamilyConfig::Marian(c) => c.activation(),
    })
}

fn layer_norm_eps(config: Option<&ModelConfig>) -> Option<f64> {
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
struct Description {
    title: String,
    formula: String,
    explanation: String,
    axes: &'static str,
}

fn describe(stage: StageRef, cx: &StageContext) -> Description {
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

fn show_stage(ui: &mut Ui, cx: &StageContext, stage: StageRef) -> StageOutcome {
    let data = cx.data;
    let key = stage.key();
    let Some(array) = data.stage(key) else {
        ui.label(format!("The trace has no {key:?}."));
        return StageOutcome::default();
    };
    let desc = describe(stage, cx);
    ui.label(RichText::new(&desc.title).heading());
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.label(RichText::new(&desc.formula).monospace().size(15.0));
    });
    ui.label(&desc.explanation);
    let shape = trace_shape(array);
    let shape_label = format!("shape {shape:?}");
    ui.horizontal(|ui| {
        ui.strong(&shape_label);
        ui.weak(format!("= {}", desc.axes));
        ui.weak(format!("(trace entry {key:?})"));
    });
    let mut outcome = StageOutcome {
        shown: Some(ShownStage {
            stage,
            shape,
            formula: desc.formula.clone(),
            shape_label,
        }),
        clicked_token: None,
    };
    ui.add_space(4.0);
    // An encoder's rows are the source tokens; a decoder's, what it reads.
    let (labels, tokens) = if stage.encoder {
        (data.source_labels(), &data.source_tokens)
    } else {
        (data.token_labels(), &data.tokens)
    };
    // A site of this stage's stack (an encoder–decoder's encoder or the decoder).
    let at = |site: TraceSite| {
        let key = TraceKey::new(site);
        if stage.encoder { key.in_encoder() } else { key }
    };
    let layer = stage.layer.unwrap_or(0);
    let head = cx.head;
    let stem = |name: &str| {
        format!(
            "step-{}-{}{}",
            data.slot.short().to_lowercase(),
            stage
                .layer
                .map(|l| format!("layer{l}-"))
                .unwrap_or_default(),
            name
        )
    };
    let head_matrix = |key: TraceKey| -> Option<Matrix> { data.stage(key)?.matrix(&[head]) };
    let plain_matrix = |key: TraceKey| -> Option<Matrix> {
        let a = data.stage(key)?;
        let lead = vec![0; a.shape.len().saturating_sub(2)];
        a.matrix(&lead)
    };
    let mut clicked = None;
    let mut token_matrix = |ui: &mut Ui, key: TraceKey, caption: &str, name: &str| {
        if let Some(m) = plain_matrix(key) {
            ui.label(RichText::new(caption).strong());
            let r = matrix_view(
                ui,
                cx.export_dir,
                &stem(name),
                &m,
                &labels,
                &[],
                None,
                ColorScale::fit(m.range()),
                &format!("{} {}", data.slot.short(), caption),
                cx.token,
                cx.show_values,
            );
            if let Some(t) = r.clicked_row.or(r.clicked_cell.map(|(r, _)| r)) {
                clicked = Some(t);
            }
            token_vector(ui, &m, &labels, cx.token, caption);
        }
    };
    match stage.kind {
        Stage::Embed => {
            ui.label("The tokens and their ids (click a row of the heatmap to follow a token):");
            token_chips(ui, tokens, cx.token);
            token_matrix(ui, key, "token embeddings X_tok", "token-embeddings");
        }
        Stage::AddPositions => {
            token_matrix(ui, key, "position embeddings E_pos", "position-embeddings");
            if data.is_causal {
                token_matrix(
                    ui,
                    at(TraceSite::EmbeddingSum),
                    "sum X = X_tok + E_pos",
                    "embedding-sum",
                );
            }
        }
        Stage::AddSegments => {
            let types: Vec<String> = data.tokens.iter().map(|t| t.type_id.to_string()).collect();
            ui.label(format!("Segment (type) ids: [{}]", types.join(", ")));
            token_matrix(ui, key, "segment embeddings E_seg", "segment-embeddings");
            token_matrix(ui, at(TraceSite::EmbeddingSum), "sum X", "embedding-sum");
        }
        Stage::EmbeddingNorm
        | Stage::OutputProjection
        | Stage::ResidualAttention
        | Stage::NormMlp
        | Stage::MlpHidden
        | Stage::MlpOutput
        | Stage::ResidualMlp
        | Stage::FinalNorm
        | Stage::CrossWeightedSum
        | Stage::CrossOutputProjection
        | Stage::ResidualCross => {
            token_matrix(
                ui,
                key,
                family_stage_label(data.family, stage.kind),
                "values",
            );
        }
        Stage::CrossQkv | Stage::CrossScores | Stage::CrossSoftmax => {
            // Rows are the decoder's tokens (queries); K and V have a row per source token, and
            // the scores' columns are the source tokens.
            let source = data.source_labels();
            let keys: Vec<(String, TraceKey)> = if stage.kind == Stage::CrossQkv {
                [LayerField::Q, LayerField::K, LayerField::V]
                    .into_iter()
                    .map(|field| {
                        let key = TraceKey::new(TraceSite::Cross(layer, field));
                        (field.name().to_uppercase(), key)
                    })
                    .collect()
            } else {
                vec![(family_stage_label(data.family, stage.kind).to_string(), key)]
            };
            for (name, key) in keys {
                let Some(m) = head_matrix(key) else {
                    continue;
                };
                ui.label(RichText::new(format!("{name} (head {head})")).strong());
                let row_labels: &[String] = if name == "K" || name == "V" {
                    &source
                } else if m.rows == labels.len() {
                    &labels
                } else {
                    &[]
                };
                let col_labels: &[String] =
                    if stage.kind != Stage::CrossQkv && m.cols == source.len() {
                        &source
                    } else {
                        &[]
                    };
                let scale = if stage.kind == Stage::CrossSoftmax {
                    ColorScale::PROBABILITY
                } else {
                    ColorScale::fit(m.range())
                };
                matrix_view(
                    ui,
                    cx.export_dir,
                    &stem(&format!(
                        "{}-head{head}",
                        name.to_lowercase().replace(' ', "-")
                    )),
                    &m,
                    row_labels,
                    col_labels,
                    None,
                    scale,
                    &format!("{} {name} layer {layer} head {head}", data.slot.short()),
                    cx.token,
                    cx.show_values,
                );
            }
        }
        Stage::NormAttention => {
            token_matrix(
                ui,
                at(TraceSite::Layer(layer, LayerField::Input)),
                "input X (residual stream)",
                "input",
            );
            token_matrix(ui, key, "A = LN₁(X)", "ln1");
        }
        Stage::WeightedSum => {
            token_matrix(ui, key, "context (all heads)", "context");
            if let (Some(m), Some(d)) = (
                plain_matrix(key),
                data.stage(trace_key(Stage::Qkv, layer))
                    .and_then(|a| a.shape.last().copied()),
            ) {
                let cols: Vec<f32> = (0..m.rows)
                    .flat_map(|r| {
                        (head * d..(head + 1) * d)
                            .map(move |c| (r, c))
                            .collect::<Vec<_>>()
                    })
                    .map(|(r, c)| m.get(r, c).unwrap_or(0.0))
                    .collect();
                let part = Matrix::new(m.rows, d, cols);
                ui.label(RichText::new(format!("head {head}'s part: probs_h · V_h")).strong());
                matrix_view(
                    ui,
                    cx.export_dir,
                    &stem(&format!("context-head{head}")),
                    &part,
                    &labels,
                    &[],
                    None,
                    ColorScale::fit(part.range()),
                    &format!("{} context head {head}", data.slot.short()),
                    cx.token,
                    cx.show_values,
                );
            }
        }
        Stage::Qkv => {
            let names = ["Q", "K", "V"];
            let keys = [LayerField::Q, LayerField::K, LayerField::V]
                .map(|f| at(TraceSite::Layer(layer, f)));
            ui.columns(3, |columns| {
                for ((ui, name), key) in columns.iter_mut().zip(names).zip(keys) {
                    if let Some(m) = head_matrix(key) {
                        ui.label(RichText::new(format!("{name} (head {head})")).strong());
                        let r = matrix_view(
                            ui,
                            cx.export_dir,
                            &stem(&format!("{}-head{head}", name.to_lowercase())),
                            &m,
                            &labels,
                            &[],
                            None,
                            ColorScale::fit(m.range()),
                            &format!("{} {name} layer {layer} head {head}", data.slot.short()),
                            cx.token,
                            cx.show_values,
                        );
                        if let Some(t) = r.clicked_row.or(r.clicked_cell.map(|(r, _)| r)) {
                            clicked = Some(t);
                        }
                    }
                }
            });
            if let Some(t) = cx.token {
                for (name, key) in names.iter().zip(keys) {
                    if let Some(m) = head_matrix(key) {
                        numbers_line(ui, &format!("{name}[{t}]"), m.row(t));
                    }
                }
            }
        }
        Stage::Scores | Stage::Scale | Stage::Mask | Stage::Softmax => {
            // An encoder–decoder's encoder sees every source token: no mask.
            let mask = if stage.encoder {
                let n = data.source_tokens.len();
                Matrix::filled(n, n, 1.0)
            } else {
                attention_mask(data, layer)
            };
            let Some(m) = head_matrix(key) else {
                ui.label("No values for this head.");
                return outcome;
            };
            if stage.kind == Stage::Mask {
                ui.label(RichText::new("mask (1 = may look, 0 = blocked)").strong());
                matrix_view(
                    ui,
                    cx.export_dir,
                    &stem("mask"),
                    &mask,
                    &labels,
                    &labels,
                    None,
                    ColorScale::PROBABILITY,
                    &format!("{} mask layer {layer}", data.slot.short()),
                    cx.token,
                    cx.show_values,
                );
                let blocked = mask.data.iter().filter(|&&v| v == 0.0).count();
                ui.label(format!("{blocked} of {} cells blocked.", mask.data.len()));
                if let Some(min) = m
                    .data
                    .iter()
                    .zip(&mask.data)
                    .filter(|(_, a)| **a == 0.0)
                    .map(|(v, _)| *v)
                    .reduce(f32::min)
                {
                    ui.label(format!(
                        "Blocked cells of the masked scores hold {} (drawn hatched).",
                        format_value(min)
                    ));
                }
            }
            let caption = match stage.kind {
                Stage::Scores => format!("scores, head {head}"),
                Stage::Scale => format!("scaled scores, head {head}"),
                Stage::Mask => format!("masked scores, head {head}"),
                _ => format!("attention probabilities, head {head}"),
            };
            let scale = if stage.kind == Stage::Softmax {
                ColorScale::PROBABILITY
            } else {
                ColorScale::fit(allowed_range(&m, &mask))
            };
            ui.label(RichText::new(&caption).strong());
            let overlay = matches!(stage.kind, Stage::Mask | Stage::Softmax);
            let r = matrix_view(
                ui,
                cx.export_dir,
                &stem(&format!(
                    "{}-head{head}",
                    stage_label(stage.kind, true).replace(' ', "-")
                )),
                &m,
                &labels,
                &labels,
                overlay.then_some(&mask),
                scale,
                &format!(
                    "{} {} layer {layer} head {head}",
                    data.slot.short(),
                    family_stage_label(data.family, stage.kind)
                ),
                cx.token,
                cx.show_values,
            );
            if let Some(t) = r.clicked_row.or(r.clicked_cell.map(|(r, _)| r)) {
                clicked = Some(t);
            }
            ui.weak("Rows: the token that looks (query). Columns: the token looked at (key).");
            if let Some(t) = cx.token.filter(|&t| t < m.rows) {
                let row = m.row(t);
                numbers_line(ui, &format!("row {t} {:?}", labels[t]), row);
                match stage.kind {
                    Stage::Scores => {
                        if let (Some(q), Some(k)) = (
                            head_matrix(at(TraceSite::Layer(layer, LayerField::Q))),
                            head_matrix(at(TraceSite::Layer(layer, LayerField::K))),
                        ) {
                            let dot: f32 = q.row(t).iter().zip(k.row(0)).map(|(a, b)| a * b).sum();
                            ui.monospace(format!(
                                "check: Q[{t}]·K[0] = Σ q·k = {}  (trace: {})",
                                format_value(dot),
                                format_value(m.get(t, 0).unwrap_or(0.0))
                            ));
                        }
                    }
                    Stage::Scale => {
                        if let Some(scores) =
                            head_matrix(at(TraceSite::Layer(layer, LayerField::Scores)))
                        {
                            let d = data
                                .stage(trace_key(Stage::Qkv, layer))
                                .and_then(|a| a.shape.last().copied())
                                .unwrap_or(1);
                            let raw = scores.get(t, 0).unwrap_or(0.0);
                            ui.monospace(format!(
                                "check: scores[{t}, 0] / √{d} = {} / {:.6} = {}  (trace: {})",
                                format_value(raw),
                                (d as f32).sqrt(),
                                format_value(raw / (d as f32).sqrt()),
                                format_value(m.get(t, 0).unwrap_or(0.0))
                            ));
                        }
                    }
                    Stage::Softmax => {
                        let sum: f32 = row.iter().sum();
                        ui.monospace(format!("Σ row {t} = {}", format_value(sum)));
                    }
                    _ => {}
                }
            } else {
                ui.weak("Click a row to see its numbers.");
            }
        }
        Stage::Logits => {
            let Some(m) = plain_matrix(key) else {
                return outcome;
            };
            let position = cx
                .token
                .unwrap_or_else(|| default_position(data))
                .min(m.rows.saturating_sub(1));
            ui.label("Pick the position (click a token):");
            if let Some(t) = token_chips(ui, &data.tokens, Some(position)) {
                clicked = Some(t);
            }
            ui.label(
                RichText::new(format!(
                    "logits at position {position} {:?}: {} values, one per vocabulary entry",
                    labels.get(position).map(String::as_str).unwrap_or("?"),
                    m.cols
                ))
                .strong(),
            );
            let row = m.row(position).to_vec();
            let name = |i: usize| vocab_name(cx.vocab, i);
            vector_strip(
                ui,
                &row,
                &format!("{} logits at position {position}", data.slot.short()),
                &name,
            );
            let top = crate::generate::top_k(&row, 10);
            let items: Vec<(String, f32)> = top.iter().map(|&(i, v)| (name(i), v)).collect();
            ui.label("The largest logits:");
            value_bars(ui, &items, None, format_value);
            let row_matrix = Matrix::new(1, row.len(), row);
            let vocab_labels: Vec<String> = (0..row_matrix.cols).map(name).collect();
            row_exports(
                ui,
                cx.export_dir,
                &stem("logits"),
                &row_matrix,
                &vocab_labels,
            );
        }
        Stage::Probabilities => probabilities(ui, cx, key),
    }
    outcome.clicked_token = clicked;
    outcome
}

/// Where the logits are most interesting: the last token (GPT), the first `[MASK]` (BERT).
fn default_position(data: &InspectionData) -> usize {
    match &data.predictions {
        Predictions::FillMask { masks, .. } if !masks.is_empty() => masks[0].position,
        _ => data.tokens.len().saturating_sub(1),
    }
}

fn vocab_name(vocab: Option<&[VocabEntry]>, id: usize) -> String {
    vocab
        .and_then(|v| v.get(id))
        .filter(|e| e.id as usize == id)
        .map(|e| e.shown.clone())
        .or_else(|| {
            vocab.and_then(|v| {
                v.iter()
                    .find(|e| e.id as usize == id)
                    .map(|e| e.shown.clone())
            })
        })
        .unwrap_or_else(|| format!("id {id}"))
}

fn probabilities(ui: &mut Ui, cx: &StageContext, key: TraceKey) {
    let data = cx.data;
    match &data.predictions {
        Predictions::NextToken { top } => {
            let last = data.tokens.len().saturating_sub(1);
            ui.label(format!(
                "After the last token {:?} (position {last}), the {} most likely next tokens:",
                data.tokens
                    .get(last)
                    .map(|t| t.shown.as_str())
                    .unwrap_or("?"),
                top.len()
            ));
            let items: Vec<(String, f32)> = top.iter().map(|t| (t.shown.clone(), t.prob)).collect();
            value_bars(ui, &items, Some(1.0), format_value);
            let sum: f32 = top.iter().map(|t| t.prob).sum();
            ui.weak(format!(
                "These {} tokens hold {} of the probability; the rest is spread over the other \
                 tokens of the vocabulary.",
                top.len(),
                format_value(sum)
            ));
            prob_exports(ui, cx.export_dir, data, &items);
        }
        Predictions::FillMask {
            masks,
            is_next_prob,
        } => {
            if masks.is_empty() {
                ui.label(
                    "The text has no [MASK] token, so there is nothing to fill. Put one in the \
                     text (or click a token in the Predict view to mask it).",
                );
                if let Some(m) = data.stage(key).and_then(|a| a.matrix(&[])) {
                    let position = cx.token.unwrap_or(0).min(m.rows.saturating_sub(1));
                    let probs = softmax(m.row(position));
                    let top = crate::generate::top_k(&probs, 10);
                    ui.label(format!(
                        "Meanwhile, softmax(logits) at position {position} {:?} (click a row in \
                         an earlier stage to pick another):",
                        data.tokens
                            .get(position)
                            .map(|t| t.shown.as_str())
                            .unwrap_or("?")
                    ));
                    let items: Vec<(String, f32)> = top
                        .iter()
                        .map(|&(i, p)| (vocab_name(cx.vocab, i), p))
                        .collect();
                    value_bars(ui, &items, Some(1.0), format_value);
                }
            }
            for mask in masks {
                ui.label(RichText::new(format!("[MASK] at position {}", mask.position)).strong());
                let items: Vec<(String, f32)> =
                    mask.top.iter().map(|t| (t.shown.clone(), t.prob)).collect();
                ui.push_id(("mask", mask.position), |ui| {
                    value_bars(ui, &items, Some(1.0), format_value);
                    prob_exports(ui, cx.export_dir, data, &items);
                });
            }
            if let Some(p) = is_next_prob {
                ui.label(format!(
                    "Next-sentence prediction: P(segment B follows segment A) = {}",
                    format_value(*p)
                ));
            }
        }
        Predictions::Classification { labels } => {
            let items: Vec<(String, f32)> = labels.clone();
            value_bars(ui, &items, Some(1.0), format_value);
        }
        Predictions::Span {
            start, end, text, ..
        } => {
            ui.label(format!("Answer span: tokens {start}..={end}: {text:?}"));
        }
        Predictions::None => {
            ui.label("This model has no head to predict with.");
        }
    }
}

fn softmax(values: &[f32]) -> Vec<f32> {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = values.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter()
        .map(|e| if sum > 0.0 { e / sum } else { 0.0 })
        .collect()
}

fn prob_exports(ui: &mut Ui, dir: &Path, data: &InspectionData, items: &[(String, f32)]) {
    let labels: Vec<String> = items.iter().map(|(l, _)| l.clone()).collect();
    let m = Matrix::new(1, items.len(), items.iter().map(|(_, p)| *p).collect());
    row_exports(
        ui,
        dir,
        &format!("step-{}-probabilities", data.slot.short().to_lowercase()),
        &m,
        &labels,
    );
}

fn row_exports(ui: &mut Ui, dir: &Path, stem: &str, m: &Matrix, labels: &[String]) {
    let owned = m.clone();
    export_buttons(
        ui,
        stem,
        dir,
        stem,
        &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
        |format| match format {
            ExportFormat::Png => {
                let values: Vec<f64> = owned.data.iter().map(|&v| v as f64).collect();
                crate::app::widgets::export::bars_png(&[(Color32::from_rgb(59, 81, 139), values)])
            }
            ExportFormat::Csv => {
                Ok(matrix_csv(&owned, &["value".to_string()], labels).into_bytes())
            }
            ExportFormat::Json => matrix_json(
                &owned,
                &["value".to_string()],
                labels,
                serde_json::json!({}),
            ),
        },
    );
}

/// The layer's 0/1 mask (all ones when none was recorded).
fn attention_mask(data: &InspectionData, layer: usize) -> Matrix {
    let s = data.tokens.len();
    data.masks
        .get(layer)
        .cloned()
        .filter(|m| m.rows == s && m.cols == s)
        .unwrap_or_else(|| Matrix::filled(s, s, 1.0))
}

/// (min, max) over the cells the mask allows.
fn allowed_range(m: &Matrix, mask: &Matrix) -> (f32, f32) {
    let values: Vec<f32> = m
        .data
        .iter()
        .enumerate()
        .filter(|(i, _)| mask.data.get(*i).is_none_or(|&a| a != 0.0))
        .map(|(_, v)| *v)
        .collect();
    Matrix::new(1, values.len(), values).range()
}

/// The selected token's row as a bar strip with its first numbers.
fn token_vector(ui: &mut Ui, m: &Matrix, labels: &[String], token: Option<usize>, caption: &str) {
    let Some(t) = token.filter(|&t| t < m.rows) else {
        return;
    };
    let name = labels.get(t).map(String::as_str).unwrap_or("?");
    ui.label(format!(
        "Token {t} {name:?}: its vector ({} values)",
        m.cols
    ));
    let label = format!("{caption} of token {t}");
    vector_strip(ui, m.row(t), &label, &|i| format!("dimension {i}"));
    numbers_line(ui, &format!("{caption}[{t}]"), m.row(t));
}

/// `name = [v0, v1, …]`, the first 12 values with 4 decimals.
fn numbers_line(ui: &mut Ui, name: &str, values: &[f32]) {
    let shown: Vec<String> = values.iter().take(12).map(|v| format!("{v:.4}")).collect();
    let more = if values.len() > 12 {
        format!(", … ({} more)", values.len() - 12)
    } else {
        String::new()
    };
    ui.monospace(format!("{name} = [{}{more}]", shown.join(", ")));
}

/// A heatmap (in a horizontal scroll area when it is wide) with its export buttons.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matrix_view(
    ui: &mut Ui,
    export_dir: &Path,
    stem: &str,
    matrix: &Matrix,
    row_labels: &[String],
    col_labels: &[String],
    mask: Option<&Matrix>,
    scale: ColorScale,
    label: &str,
    selected_row: Option<usize>,
    show_values: bool,
) -> HeatmapResponse {
    let width = ui.available_width().max(200.0);
    let height = (matrix.rows as f32 * 36.0 + 90.0).min(460.0);
    let default_cols: Vec<String>;
    let cols = if col_labels.is_empty() {
        default_cols = (0..matrix.cols).map(|c| c.to_string()).collect();
        &default_cols
    } else {
        col_labels
    };
    let response = egui::ScrollArea::horizontal()
        .id_salt(("matrix_view", stem))
        .show(ui, |ui| {
            Heatmap::new(matrix, label)
                .row_labels(row_labels)
                .col_labels(cols)
                .mask(mask)
                .scale(scale)
                .max_size(Vec2::new(width, height))
                .max_cell(40.0)
                .show_values(show_values)
                .selection(Selection {
                    row: selected_row,
                    col: None,
                })
                .show(ui)
        })
        .inner;
    if let Some(hover) = &response.hovered {
        ui.monospace(hover.text());
    }
    let owned = matrix.clone();
    let mask_owned = mask.cloned();
    let rows = row_labels.to_vec();
    let cols = cols.to_vec();
    ui.push_id(("export", stem), |ui| {
        export_buttons(
            ui,
            stem,
            export_dir,
            stem,
            &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
            |format| match format {
                ExportFormat::Png => heatmap_png(&owned, mask_owned.as_ref(), scale),
                ExportFormat::Csv => Ok(matrix_csv(&owned, &rows, &cols).into_bytes()),
                ExportFormat::Json => matrix_json(&owned, &rows, &cols, serde_json::json!({})),
            },
        );
    });
    response
}

/// A vector as a strip of vertical bars (positive up, negative down, zero line in the middle).
/// Hovering shows the index (named by `name`) and the exact value. Long vectors are drawn one
/// pixel column per group, with the group's largest magnitude.
pub fn vector_strip(
    ui: &mut Ui,
    values: &[f32],
    label: &str,
    name: &dyn Fn(usize) -> String,
) -> Option<usize> {
    let width = ui.available_width().clamp(120.0, 1200.0);
    let height = 90.0;
    let (rect, response) = ui.allocate_exact_size(Vec2::new(width, height), Sense::hover());
    let label_owned = label.to_string();
    response.widget_info(|| WidgetInfo::labeled(Role::Image, true, &label_owned));
    if values.is_empty() {
        return None;
    }
    let painter = ui.painter_at(rect);
    let visuals = ui.visuals();
    painter.rect_filled(rect, 2.0, visuals.extreme_bg_color);
    let max_abs = values
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let mid = rect.center().y;
    let half = height / 2.0 - 10.0;
    let n = values.len();
    let bar_w = (width / n as f32).max(1.0);
    let columns = (width / bar_w).floor().max(1.0) as usize;
    let per_column = n.div_ceil(columns);
    let scale = ColorScale::Diverging { max_abs };
    for c in 0..columns {
        let start = c * per_column;
        if start >= n {
            break;
        }
        let end = (start + per_column).min(n);
        let v = values[start..end]
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0f32, |a, b| if b.abs() > a.abs() { b } else { a });
        let h = (v / max_abs).clamp(-1.0, 1.0) * half;
        let x0 = rect.min.x + c as f32 * bar_w;
        let bar = Rect::from_min_max(
            egui::pos2(x0, mid.min(mid - h)),
            egui::pos2(x0 + (bar_w - 1.0).max(1.0), mid.max(mid - h)),
        );
        painter.rect_filled(bar, 0.0, scale.color(v));
    }
    painter.line_segment(
        [egui::pos2(rect.min.x, mid), egui::pos2(rect.max.x, mid)],
        Stroke::new(1.0, visuals.weak_text_color()),
    );
    let small = FontId::proportional(10.0);
    painter.text(
        rect.left_top() + Vec2::new(2.0, 1.0),
        Align2::LEFT_TOP,
        format!("+{}", format_value(max_abs)),
        small.clone(),
        visuals.weak_text_color(),
    );
    painter.text(
        rect.left_bottom() + Vec2::new(2.0, -1.0),
        Align2::LEFT_BOTTOM,
        format!("−{}", format_value(max_abs)),
        small,
        visuals.weak_text_color(),
    );
    let hovered = response.hover_pos().and_then(|pos| {
        let c = ((pos.x - rect.min.x) / bar_w).floor() as usize;
        let i = c * per_column;
        (i < n).then_some(i)
    });
    if let Some(i) = hovered {
        let x = rect.min.x + (i / per_column) as f32 * bar_w + bar_w / 2.0;
        painter.line_segment(
            [egui::pos2(x, rect.min.y), egui::pos2(x, rect.max.y)],
            Stroke::new(1.0, visuals.text_color()),
        );
        let text = format!("{} [{i}]: {}", name(i), format_value(values[i]));
        response.on_hover_text_at_pointer(text);
    }
    hovered
}
