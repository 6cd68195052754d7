//! The Attention view's part for an encoder–decoder: its three kinds of attention side by side —
//! the encoder's self-attention (bidirectional, over the source), the decoder's self-attention
//! (causal, over the translation, mask drawn) and cross-attention (rows: the translation's
//! tokens, columns: the source's) — for the text and its greedy translation, per layer and head,
//! as heatmaps or lines, with an all-layers × heads grid per kind and exports.

use std::sync::Arc;

use eframe::egui;
use egui::{Ui, Vec2};

use crate::app::data::{Matrix, Slot};
use crate::app::state::{Cached, Fetch, Shared};
use crate::app::widgets::export::{
    ExportFormat, export_buttons, heatmap_png, matrix_csv, matrix_json,
};
use crate::app::widgets::{ColorScale, Heatmap, attention_lines, error_label, fetch_status};
use crate::app::worker::{Command, Output};
use crate::translate::{Strategy, TranslationSteps};

/// One of the three kinds of attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    EncoderSelf,
    DecoderSelf,
    #[default]
    Cross,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::EncoderSelf, Kind::DecoderSelf, Kind::Cross];

    pub fn title(self) -> &'static str {
        match self {
            Kind::EncoderSelf => "Encoder self-attention (bidirectional)",
            Kind::DecoderSelf => "Decoder self-attention (causal)",
            Kind::Cross => "Cross-attention (decoder → encoder)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Kind::EncoderSelf => "encoder",
            Kind::DecoderSelf => "decoder",
            Kind::Cross => "cross",
        }
    }

    fn caption(self) -> &'static str {
        match self {
            Kind::EncoderSelf => "Every English token sees every English token: no mask.",
            Kind::DecoderSelf => {
                "Each French token sees itself and the tokens written before it: the hatched \
                 cells are blocked."
            }
            Kind::Cross => {
                "Queries from the decoder (rows: French), keys and values from the encoder's \
                 output (columns: English). No mask: every step may look at the whole source."
            }
        }
    }

    /// The maps of this kind, `[layer][head]`.
    fn maps(self, data: &TranslationSteps) -> &Vec<Vec<Vec<f32>>> {
        match self {
            Kind::EncoderSelf => &data.encoder_attention,
            Kind::DecoderSelf => &data.decoder_attention,
            Kind::Cross => &data.cross_attention,
        }
    }

    /// (row labels, column labels).
    fn labels(self, data: &TranslationSteps) -> (Vec<String>, Vec<String>) {
        let target: Vec<String> = data.steps.iter().map(|s| s.token.clone()).collect();
        // The decoder's rows read the start token and what came before; label them by what
        // they write, as the Translate view does.
        match self {
            Kind::EncoderSelf => (data.source_tokens.clone(), data.source_tokens.clone()),
            Kind::DecoderSelf => (target.clone(), data.decoder_input_tokens.clone()),
            Kind::Cross => (target, data.source_tokens.clone()),
        }
    }

    /// The map of one layer: one head, or the mean of the heads.
    pub fn matrix(
        self,
        data: &TranslationSteps,
        layer: usize,
        head: Option<usize>,
    ) -> Option<Matrix> {
        let heads = self.maps(data).get(layer)?;
        let (rows, cols) = self.labels(data);
        let to_matrix = |map: &Vec<f32>| Matrix::new(rows.len(), cols.len(), map.clone());
        match head {
            Some(h) => heads.get(h).map(to_matrix),
            None if heads.is_empty() => None,
            None => Some(Matrix::mean(
                &heads.iter().map(to_matrix).collect::<Vec<_>>(),
            )),
        }
    }

    fn mask(self, data: &TranslationSteps) -> Option<Matrix> {
        (self == Kind::DecoderSelf).then(|| Matrix::causal(data.len()))
    }
}

type Key = (Slot, u64, String);

/// The encoder–decoder part of the Attention view.
#[derive(Default)]
pub struct EncoderDecoderAttention {
    translation: Cached<Key, Arc<TranslationSteps>>,
    /// The kind the all-layers × heads grid shows.
    pub grid_kind: Kind,
}

impl EncoderDecoderAttention {
    /// The text and its greedy translation through the translator in `slot`.
    pub fn fetch(&mut self, shared: &mut Shared, slot: Slot) -> Fetch<Arc<TranslationSteps>> {
        if shared.model(slot).is_none() {
            return Fetch::NoModel;
        }
        let text = shared.text.clone();
        let key = (slot, shared.generation(slot), text.clone());
        self.translation.fetch(
            shared,
            key,
            || Command::Translate {
                slot,
                text,
                strategy: Strategy::Greedy,
                top: 5,
            },
            |out| match out {
                Output::Translation(t) => Some(t),
                _ => None,
            },
        )
    }

    /// The three kinds side by side for one layer and head (`lines`: drawn as lines). Returns
    /// a clicked grid cell (layer, head).
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        shared: &mut Shared,
        slot: Slot,
        (layer, head): (usize, Option<usize>),
        lines: bool,
        grid: bool,
    ) -> Option<(usize, Option<usize>)> {
        let title = match shared.model(slot) {
            Some(m) => format!("{} — {}", slot.label(), m.name),
            None => slot.label(),
        };
        ui.strong(title);
        let fetch = self.fetch(shared, slot);
        if let Fetch::Failed(message) = &fetch {
            error_label(ui, message);
            return None;
        }
        let data = fetch_status(ui, slot, &fetch)?;
        ui.label(format!(
            "\"{}\" → \"{}\" (the greedy translation; the decoder rows are its tokens)",
            data.text, data.translation
        ));
        let width = (ui.available_width() - 24.0) / 3.0;
        ui.horizontal_top(|ui| {
            for kind in Kind::ALL {
                ui.vertical(|ui| {
                    ui.set_width(width);
                    self.one_kind(ui, shared, &data, kind, (layer, head), lines);
                });
            }
        });
        if grid {
            ui.separator();
            return self.grid(ui, &data);
        }
        None
    }

    fn one_kind(
        &self,
        ui: &mut Ui,
        shared: &Shared,
        data: &TranslationSteps,
        kind: Kind,
        (layer, head): (usize, Option<usize>),
        lines: bool,
    ) {
        ui.strong(kind.title());
        let layers = kind.maps(data).len();
        if layers == 0 {
            ui.weak("No maps recorded.");
            return;
        }
        let layer = layer.min(layers - 1);
        let heads = kind.maps(data)[layer].len();
        let head = head.map(|h| h.min(heads.saturating_sub(1)));
        let Some(matrix) = kind.matrix(data, layer, head) else {
            return;
        };
        let mask = kind.mask(data);
        let (rows, cols) = kind.labels(data);
        let head_name = head.map_or("mean over heads".to_string(), |h| format!("head {h}"));
        ui.weak(format!("layer {layer}, {head_name}"));
        ui.weak(kind.caption());
        let label = format!("{} attention layer {layer} {head_name}", kind.short());
        if lines {
            attention_lines(
                ui,
                &matrix,
                mask.as_ref(),
                (&rows, &cols),
                None,
                &label,
                "Left: the token that looks. Right: the token looked at.",
            );
        } else {
            let side = ui.available_width().min(420.0);
            Heatmap::new(&matrix, label)
                .row_labels(&rows)
                .col_labels(&cols)
                .mask(mask.as_ref())
                .scale(ColorScale::PROBABILITY)
                .axis_titles("query", "key")
                .max_size(Vec2::new(side, side))
                .max_cell(32.0)
                .show(ui);
        }
        let stem = format!(
            "attention-{}-{}-layer{layer}-{}",
            shared
                .model(Slot::Translator)
                .map_or("translator".to_string(), |m| m.name.clone()),
            kind.short(),
            head.map_or("mean".to_string(), |h| format!("head{h}"))
        );
        let info = serde_json::json!({
            "text": data.text,
            "translation": data.translation,
            "kind": kind.short(),
            "layer": layer,
            "head": head,
        });
        export_buttons(
            ui,
            &format!("attention-{}", kind.short()),
            &shared.export_dir,
            &stem,
            &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
            |format| match format {
                ExportFormat::Png => heatmap_png(&matrix, mask.as_ref(), ColorScale::PROBABILITY),
                ExportFormat::Csv => Ok(matrix_csv(&matrix, &rows, &cols).into_bytes()),
                ExportFormat::Json => matrix_json(&matrix, &rows, &cols, info),
            },
        );
    }

    /// Every layer × head of one kind as thumbnails; returns a clicked (layer, head).
    fn grid(&mut self, ui: &mut Ui, data: &TranslationSteps) -> Option<(usize, Option<usize>)> {
        ui.horizontal(|ui| {
            ui.strong("Every layer × head of");
            for kind in Kind::ALL {
                ui.selectable_value(&mut self.grid_kind, kind, kind.title());
            }
        });
        let kind = self.grid_kind;
        let maps = kind.maps(data);
        let heads = maps.first().map_or(0, Vec::len);
        let mask = kind.mask(data);
        let thumb = ((ui.available_width() - 60.0) / (heads + 1) as f32).clamp(36.0, 96.0);
        let mut clicked = None;
        egui::Grid::new(("seq2seq_grid", kind.short()))
            .spacing(Vec2::new(4.0, 4.0))
            .show(ui, |ui| {
                ui.label("");
                for h in 0..heads {
                    ui.weak(format!("head {h}"));
                }
                ui.weak("mean");
                ui.end_row();
                for layer in 0..maps.len() {
                    ui.weak(format!("layer {layer}"));
                    for head in (0..heads).map(Some).chain([None]) {
                        let Some(matrix) = kind.matrix(data, layer, head) else {
                            ui.label("");
                            continue;
                        };
                        let name = head.map_or("mean".to_string(), |h| format!("head {h}"));
                        let response = Heatmap::new(
                            &matrix,
                            format!("{} layer {layer} {name} thumbnail", kind.short()),
                        )
                        .mask(mask.as_ref())
                        .scale(ColorScale::PROBABILITY)
                        .legend(false)
                        .max_size(Vec2::splat(thumb))
                        .show(ui);
                        if response.response.clicked() {
                            clicked = Some((layer, head));
                        }
                    }
                    ui.end_row();
                }
            });
        clicked
    }
}
