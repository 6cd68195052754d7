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
    ColorScale, Heatmap, HeatmapResponse, Selection, fetch_status, format_value, model_picker,
    token_chips, value_bars,
};
use crate::app::worker::{Command, Output};
use crate::inspect::Predictions;
use crate::lessons::Stage;
use crate::lessons::ViewName;
use crate::model::config::{FamilyConfig, ModelConfig};
use crate::model::family::{Family, NormPlacement, PositionScheme, StackRole};
use crate::model::layers::Activation;
use crate::model::trace::{LayerField, TraceKey, TraceSite};

mod describe;
mod show;
mod stages;

// The view's pieces see each other through these (each file starts with `use super::*`).
pub use self::describe::*;
pub use self::show::*;
pub use self::stages::*;

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

impl Panel for StepThroughPanel {
    fn view(&self) -> ViewName {
        ViewName::StepThrough
    }

    fn hint(&self) -> &'static str {
        "One forward pass, stage by stage, with formulas, shapes and values"
    }

    crate::app::panels::saved_as_itself!();

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
        if model_picker(ui, shared, shared.slots_to_show(), &mut self.slot) {
            self.token = None;
        }
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
