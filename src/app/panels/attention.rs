//! View "Attention": per layer and head, who attends to whom. One head enlarged with hover
//! values (or as lines between two columns of tokens), the mean over heads, a grid of every
//! layer × head, and causal (GPT) next to bidirectional (BERT) on the same text with the mask
//! drawn. Clicking a token highlights its row (what it attends to) and its column (what attends
//! to it).

use eframe::egui;
use std::collections::BTreeMap;
use std::sync::Arc;

use egui::{Pos2, Rect, Stroke, Ui, Vec2};
use serde::{Deserialize, Serialize};

use super::encoder_decoder::EncoderDecoderAttention;
use super::{Action, Panel};
use crate::app::data::{InspectionData, Matrix, Slot};
use crate::app::state::Shared;
use crate::app::widgets::export::{
    ExportFormat, export_buttons, heatmap_png, matrix_csv, matrix_json,
};
use crate::app::widgets::{
    ColorScale, Heatmap, HoverReadout, Selection, attention_lines, fetch_status, format_value,
    token_chips,
};
use crate::lessons::ViewName;
use crate::model::family::StackRole;

/// Which models the view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Models {
    #[default]
    SideBySide,
    Only(Slot),
}

/// How one head is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Mode {
    #[default]
    Heatmap,
    Lines,
}

/// Where a drawn heatmap's cells are (for overlays and tests).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    pub grid_rect: Rect,
    pub cell: Vec2,
}

impl Geometry {
    pub fn cell_center(&self, row: usize, col: usize) -> Pos2 {
        self.grid_rect.min
            + Vec2::new(
                (col as f32 + 0.5) * self.cell.x,
                (row as f32 + 0.5) * self.cell.y,
            )
    }
}

#[derive(Serialize, Deserialize)]
#[serde(default)]
pub struct AttentionPanel {
    pub models: Models,
    /// The two models side by side (any two loaded; the families' places by default).
    #[serde(deserialize_with = "two_slots_or_default")]
    pub compare: [Slot; 2],
    pub mode: Mode,
    pub layer: usize,
    /// `None`: the mean over heads.
    pub head: Option<usize>,
    pub show_grid: bool,
    /// The selected token per model (token indices differ between tokenizers).
    #[serde(skip)]
    pub selected: BTreeMap<Slot, usize>,
    /// The last hovered cell of an enlarged map, kept after the pointer leaves.
    #[serde(skip)]
    pub last_hover: Option<(Slot, HoverReadout)>,
    /// Where the enlarged maps were drawn this frame.
    #[serde(skip)]
    pub geometry: BTreeMap<Slot, Geometry>,
    /// The three kinds of attention of an encoder–decoder.
    #[serde(skip)]
    pub encoder_decoder: EncoderDecoderAttention,
}

/// The models compared side by side as saved; an older saved state says `null` for the
/// families' places.
fn two_slots_or_default<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<[Slot; 2], D::Error> {
    Ok(Option::<[Slot; 2]>::deserialize(deserializer)?.unwrap_or(Slot::ALL))
}

impl Default for AttentionPanel {
    fn default() -> Self {
        Self {
            models: Models::SideBySide,
            compare: Slot::ALL,
            mode: Mode::Heatmap,
            layer: 0,
            head: Some(0),
            show_grid: true,
            selected: BTreeMap::new(),
            last_hover: None,
            geometry: BTreeMap::new(),
            encoder_decoder: EncoderDecoderAttention::default(),
        }
    }
}

impl AttentionPanel {
    pub fn select_layer_head(&mut self, layer: usize, head: Option<usize>) {
        self.layer = layer;
        self.head = head;
    }

    pub fn select_token(&mut self, slot: Slot, index: Option<usize>) {
        match index {
            Some(i) => self.selected.insert(slot, i),
            None => self.selected.remove(&slot),
        };
    }

    fn slots(&self) -> Vec<Slot> {
        match self.models {
            Models::SideBySide if self.compare[0] == self.compare[1] => vec![self.compare[0]],
            Models::SideBySide => self.compare.to_vec(),
            Models::Only(slot) => vec![slot],
        }
    }
}

impl Panel for AttentionPanel {
    fn view(&self) -> ViewName {
        ViewName::Attention
    }

    fn hint(&self) -> &'static str {
        "Who attends to whom, per layer and head; causal next to bidirectional"
    }

    crate::app::panels::saved_as_itself!();

    fn apply(&mut self, action: &Action, _shared: &mut Shared) {
        match action {
            Action::SelectLayerHead { slot, layer, head } => {
                self.select_layer_head(*layer, *head);
                self.models = match slot {
                    Some(slot) => Models::Only(*slot),
                    None => Models::SideBySide,
                };
            }
            Action::SelectToken { slot, index } => self.select_token(*slot, *index),
            Action::SetText(_) | Action::SetPair(_) => self.selected.clear(),
            _ => {}
        }
    }

    fn ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        ui.heading("Attention");
        let slots = self.slots();
        // An encoder–decoder is shown with its three kinds of attention, on its own.
        let translator = slots
            .iter()
            .copied()
            .find(|&slot| is_encoder_decoder(shared, slot));
        let inspected: Vec<Slot> = slots
            .iter()
            .copied()
            .filter(|&slot| !is_encoder_decoder(shared, slot))
            .collect();
        let data: Vec<(Slot, Option<Arc<InspectionData>>)> = inspected
            .iter()
            .map(|&slot| {
                let fetch = shared.inspection(slot);
                (slot, fetch.data())
            })
            .collect();
        let (stack_layers, stack_heads) =
            translator
                .and_then(|slot| shared.model(slot))
                .map_or((1, 1), |m| {
                    let layers = [StackRole::Encoder, StackRole::Decoder]
                        .into_iter()
                        .map(|role| m.config.stack_layers(role))
                        .max()
                        .unwrap_or(1);
                    (layers, m.config.num_heads())
                });
        let max_layers = data
            .iter()
            .filter_map(|(_, d)| d.as_ref().map(|d| d.num_layers))
            .chain([stack_layers])
            .max()
            .unwrap_or(1)
            .max(1);
        let max_heads = data
            .iter()
            .filter_map(|(_, d)| d.as_ref().map(|d| d.num_heads))
            .chain([stack_heads])
            .max()
            .unwrap_or(1)
            .max(1);
        let loaded: Vec<(Slot, String)> = shared
            .loaded_slots()
            .into_iter()
            .map(|slot| (slot, shared.slot_name(slot)))
            .collect();
        let has_translator = loaded
            .iter()
            .any(|&(slot, _)| is_encoder_decoder(shared, slot));
        self.controls(ui, max_layers, max_heads, &loaded, has_translator);
        ui.separator();
        if let Some(slot) = translator {
            let clicked = self.encoder_decoder.ui(
                ui,
                shared,
                slot,
                (self.layer, self.head),
                self.mode == Mode::Lines,
                self.show_grid,
            );
            if let Some((layer, head)) = clicked {
                self.select_layer_head(layer, head);
            }
            return;
        }

        self.geometry.clear();
        let width = ui.available_width();
        if slots.len() == 2 {
            ui.columns(2, |columns| {
                for (column, slot) in columns.iter_mut().zip(slots.iter().copied()) {
                    column.push_id(slot, |ui| self.model_column(ui, shared, slot));
                }
            });
        } else if let Some(&slot) = slots.first() {
            ui.push_id(slot, |ui| {
                ui.set_max_width(width.min(760.0));
                self.model_column(ui, shared, slot)
            });
        }

        if self.show_grid {
            ui.separator();
            ui.strong("Every layer × head (click one to enlarge it)");
            for &slot in &slots {
                if let Some(data) = shared.inspection(slot).data() {
                    ui.push_id(("grid", slot), |ui| self.grid(ui, &data));
                }
            }
        }
    }
}

impl AttentionPanel {
    fn controls(
        &mut self,
        ui: &mut Ui,
        max_layers: usize,
        max_heads: usize,
        loaded: &[(Slot, String)],
        has_translator: bool,
    ) {
        ui.horizontal_wrapped(|ui| {
            ui.label("Models:");
            let side_by_side = if self.compare == Slot::ALL {
                "GPT and BERT side by side".to_string()
            } else {
                format!(
                    "{} and {} side by side",
                    self.compare[0].short(),
                    self.compare[1].short()
                )
            };
            ui.selectable_value(&mut self.models, Models::SideBySide, side_by_side);
            ui.selectable_value(&mut self.models, Models::Only(Slot::Gpt), "GPT only");
            ui.selectable_value(&mut self.models, Models::Only(Slot::Bert), "BERT only");
            if has_translator {
                ui.selectable_value(
                    &mut self.models,
                    Models::Only(Slot::Translator),
                    "Translator (encoder–decoder)",
                );
            }
            // With more models loaded than the families' two, any two can be compared.
            if loaded.iter().any(|(slot, _)| !slot.is_family_place()) {
                ui.separator();
                for (side, name) in ["Left", "Right"].into_iter().enumerate() {
                    let current = loaded
                        .iter()
                        .find(|(slot, _)| *slot == self.compare[side])
                        .map_or_else(|| self.compare[side].label(), |(_, n)| n.clone());
                    egui::ComboBox::from_label(format!("{name} model"))
                        .selected_text(current)
                        .show_ui(ui, |ui| {
                            for (slot, label) in loaded {
                                if ui
                                    .selectable_value(&mut self.compare[side], *slot, label)
                                    .clicked()
                                {
                                    self.models = Models::SideBySide;
                                }
                            }
                        });
                }
            }
            ui.separator();
            ui.label("Draw as:");
            ui.selectable_value(&mut self.mode, Mode::Heatmap, "Heatmap");
            ui.selectable_value(&mut self.mode, Mode::Lines, "Lines");
            ui.separator();
            ui.checkbox(&mut self.show_grid, "All layers × heads");
        });
        self.layer = self.layer.min(max_layers - 1);
        if let Some(h) = self.head
            && h >= max_heads
        {
            self.head = Some(max_heads - 1);
        }
        ui.horizontal_wrapped(|ui| {
            ui.add(egui::Slider::new(&mut self.layer, 0..=max_layers - 1).text("Layer"));
            ui.separator();
            ui.label("Head:");
            ui.selectable_value(&mut self.head, None, "Mean over heads");
            for h in 0..max_heads {
                ui.selectable_value(&mut self.head, Some(h), format!("Head {h}"));
            }
        });
    }

    fn head_name(head: Option<usize>) -> String {
        match head {
            Some(h) => format!("head {h}"),
            None => "mean over heads".to_string(),
        }
    }

    fn model_column(&mut self, ui: &mut Ui, shared: &mut Shared, slot: Slot) {
        let title = match shared.model(slot) {
            Some(m) => format!("{} — {}", slot.label(), m.name),
            None => slot.label().to_string(),
        };
        ui.strong(title);
        let fetch = shared.inspection(slot);
        let Some(data) = fetch_status(ui, slot, &fetch) else {
            return;
        };
        if fetch.is_pending() {
            ui.weak("(showing the previous text until the new result arrives)");
        }
        let layer = self.layer.min(data.num_layers.saturating_sub(1));
        let head = self.head.map(|h| h.min(data.num_heads.saturating_sub(1)));
        let Some(matrix) = data.attention_map(layer, head) else {
            ui.label("This model recorded no attention.");
            return;
        };
        let mask = data.masks.get(layer);
        let blocked = mask.map_or(0, |m| m.data.iter().filter(|&&v| v == 0.0).count());
        if data.is_causal {
            ui.label(format!(
                "Causal mask: each token sees itself and the tokens before it; the {blocked} \
                 hatched cells are blocked."
            ));
        } else if blocked == 0 {
            ui.label("No mask: every token sees every token (bidirectional).");
        } else {
            ui.label(format!("{blocked} cells are masked (padding)."));
        }

        let selected = self.selected.get(&slot).copied();
        ui.label("Click a token to select it:");
        if let Some(clicked) = token_chips(ui, &data.tokens, selected) {
            let next = if selected == Some(clicked) {
                None
            } else {
                Some(clicked)
            };
            self.select_token(slot, next);
        }
        let selected = self.selected.get(&slot).copied();
        let labels = data.token_labels();
        let label = format!(
            "{} attention layer {layer} {}",
            slot.short(),
            Self::head_name(head)
        );
        ui.add_space(4.0);
        match self.mode {
            Mode::Heatmap => {
                let side = ui.available_width().min(520.0);
                let response = Heatmap::new(&matrix, label.clone())
                    .labels(&labels)
                    .mask(mask)
                    .scale(ColorScale::PROBABILITY)
                    .axis_titles("query", "key")
                    .max_size(Vec2::new(side, side))
                    .max_cell(40.0)
                    .show_values(true)
                    .selection(Selection {
                        row: selected,
                        col: selected,
                    })
                    .show(ui);
                self.geometry.insert(
                    slot,
                    Geometry {
                        grid_rect: response.grid_rect,
                        cell: response.cell,
                    },
                );
                if let Some(readout) = response.hovered.clone() {
                    self.last_hover = Some((slot, readout));
                }
                let clicked = response
                    .clicked_cell
                    .map(|(r, _)| r)
                    .or(response.clicked_row)
                    .or(response.clicked_col);
                if let Some(i) = clicked {
                    self.select_token(slot, if selected == Some(i) { None } else { Some(i) });
                }
                match self.last_hover.as_ref().filter(|(s, _)| *s == slot) {
                    Some((_, readout)) => ui.monospace(readout.text()),
                    None => ui.weak("Hover a cell for its exact value."),
                };
                ui.weak("Rows: the token that looks (query). Columns: the token looked at (key).");
            }
            Mode::Lines => {
                attention_lines(
                    ui,
                    &matrix,
                    mask,
                    (&labels, &labels),
                    selected,
                    &label,
                    "Left: the token that looks. Right: the token looked at. Thicker = more \
                     attention.",
                );
            }
        }
        if let Some(t) = selected.filter(|&t| t < matrix.rows) {
            selection_summary(ui, &matrix, mask, &labels, t);
        }
        let stem = format!(
            "attention-{}-layer{layer}-{}",
            slot.short().to_lowercase(),
            head.map_or("mean".to_string(), |h| format!("head{h}"))
        );
        let info = serde_json::json!({
            "model": data.model_name,
            "text": data.text,
            "layer": layer,
            "head": head,
            "causal": data.is_causal,
        });
        let mask_owned = mask.cloned();
        export_buttons(
            ui,
            "attention",
            &shared.export_dir,
            &stem,
            &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
            |format| match format {
                ExportFormat::Png => {
                    heatmap_png(&matrix, mask_owned.as_ref(), ColorScale::PROBABILITY)
                }
                ExportFormat::Csv => Ok(matrix_csv(&matrix, &labels, &labels).into_bytes()),
                ExportFormat::Json => matrix_json(&matrix, &labels, &labels, info),
            },
        );
    }

    fn grid(&mut self, ui: &mut Ui, data: &InspectionData) {
        ui.label(format!("{} — {}", data.slot.label(), data.model_name));
        let heads = data.num_heads;
        let thumb = ((ui.available_width() - 60.0) / (heads + 1) as f32).clamp(36.0, 96.0);
        egui::Grid::new(("attention_grid", data.slot))
            .spacing(Vec2::new(4.0, 4.0))
            .show(ui, |ui| {
                ui.label("");
                for h in 0..heads {
                    ui.weak(format!("head {h}"));
                }
                ui.weak("mean");
                ui.end_row();
                for layer in 0..data.num_layers {
                    ui.weak(format!("layer {layer}"));
                    for head in (0..heads).map(Some).chain([None]) {
                        let Some(matrix) = data.attention_map(layer, head) else {
                            ui.label("");
                            continue;
                        };
                        let chosen = self.layer == layer && self.head == head;
                        let label = format!(
                            "{} thumbnail layer {layer} {}",
                            data.slot.short(),
                            Self::head_name(head)
                        );
                        let response = egui::Frame::new()
                            .stroke(if chosen {
                                Stroke::new(2.0, ui.visuals().selection.stroke.color)
                            } else {
                                Stroke::NONE
                            })
                            .show(ui, |ui| {
                                Heatmap::new(&matrix, label)
                                    .mask(data.masks.get(layer))
                                    .scale(ColorScale::PROBABILITY)
                                    .legend(false)
                                    .max_size(Vec2::splat(thumb))
                                    .show(ui)
                            })
                            .inner;
                        if response.response.clicked() {
                            self.select_layer_head(layer, head);
                        }
                    }
                    ui.end_row();
                }
            });
    }
}

/// Whether the model in `slot` is an encoder–decoder (shown with its three kinds of attention).
fn is_encoder_decoder(shared: &Shared, slot: Slot) -> bool {
    shared
        .model(slot)
        .is_some_and(|m| m.config.family().has_cross_attention())
}

/// "'cat' attends most to …; most attended by …" (cells the mask blocks left out).
fn selection_summary(
    ui: &mut Ui,
    matrix: &Matrix,
    mask: Option<&Matrix>,
    labels: &[String],
    t: usize,
) {
    let allowed = |r: usize, c: usize| mask.and_then(|m| m.get(r, c)) != Some(0.0);
    let top = |values: Vec<(usize, f32)>| -> String {
        if values.is_empty() {
            return "nothing (the mask blocks it)".to_string();
        }
        let mut indexed = values;
        indexed.sort_by(|a, b| b.1.total_cmp(&a.1));
        indexed
            .into_iter()
            .take(3)
            .map(|(i, v)| {
                format!(
                    "{:?} {}",
                    labels.get(i).map(String::as_str).unwrap_or("?"),
                    format_value(v)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let name = labels.get(t).map(String::as_str).unwrap_or("?");
    let row: Vec<(usize, f32)> = (0..matrix.cols)
        .filter(|&c| allowed(t, c))
        .filter_map(|c| Some((c, matrix.get(t, c)?)))
        .collect();
    let column: Vec<(usize, f32)> = (0..matrix.rows)
        .filter(|&r| allowed(r, t))
        .filter_map(|r| Some((r, matrix.get(r, t)?)))
        .collect();
    ui.label(format!("{name:?} attends most to (its row): {}", top(row)));
    ui.label(format!(
        "Attends most to {name:?} (its column): {}",
        top(column)
    ));
}
