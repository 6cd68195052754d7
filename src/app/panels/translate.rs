//! Translate: the encoder–decoder writes the translation of the text one token at a time. Step
//! through the decoder: at each step the next-token probabilities, the token it chose, and where
//! that step's cross-attention looked in the source sentence. Greedy, beam search (the beams and
//! their scores) or sampling (temperature, top-k, seed).

use std::sync::Arc;

use eframe::egui;
use egui::{RichText, Ui};
use serde::{Deserialize, Serialize};

use super::{Action, Panel};
use crate::app::data::{Matrix, Slot};
use crate::app::state::{Cached, Fetch, Shared};
use crate::app::widgets::export::{
    ExportFormat, export_buttons, heatmap_png, matrix_csv, matrix_json,
};
use crate::app::widgets::{
    ColorScale, Heatmap, attention_lines, error_label, fetch_status, format_value, value_bars,
};
use crate::generate::SamplingSettings;
use crate::lessons::ViewName;
use crate::translate::{Strategy, TranslationSteps};

/// A sentence of the built-in grammar whose translation moves an adjective.
pub const EXAMPLE: &str = "the black cat chased the mouse .";

/// Which decoding the view runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Method {
    #[default]
    Greedy,
    Beam,
    Sample,
}

/// What the view remembers across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub method: Method,
    pub beams: usize,
    pub temperature: f32,
    pub top_k: usize,
    pub seed: u64,
    /// Candidates shown per step.
    pub candidates: usize,
    /// The cross-attention shown: a layer, and a head or the mean of the heads (`None`).
    pub layer: Option<usize>,
    pub head: Option<usize>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            method: Method::Greedy,
            beams: 4,
            temperature: 1.0,
            top_k: 0,
            seed: 1,
            candidates: 8,
            layer: None,
            head: None,
        }
    }
}

impl Settings {
    fn strategy(&self) -> Strategy {
        match self.method {
            Method::Greedy => Strategy::Greedy,
            Method::Beam => Strategy::Beam {
                beams: self.beams.max(1),
            },
            Method::Sample => Strategy::Sample {
                settings: SamplingSettings {
                    temperature: self.temperature,
                    top_k: self.top_k,
                    top_p: 1.0,
                }
                .clamped(),
                seed: self.seed,
            },
        }
    }
}

/// The request a translation answers: model, its generation, text, strategy (as text, since it
/// holds floats), candidates.
type Key = (Slot, u64, String, String, usize);

#[derive(Default)]
pub struct TranslatePanel {
    pub settings: Settings,
    /// Which translator (the translator's place unless another is picked).
    pub slot: Option<Slot>,
    /// The decoder step shown (0-based), clamped to the translation's length.
    pub step: usize,
    translation: Cached<Key, Arc<TranslationSteps>>,
}

impl TranslatePanel {
    /// The translation shown, once the worker has answered.
    pub fn translation(&self) -> Option<&Arc<TranslationSteps>> {
        self.translation.last()
    }

    /// Encoder–decoders that are loaded.
    fn translators(shared: &Shared) -> Vec<Slot> {
        shared
            .loaded_slots()
            .into_iter()
            .filter(|&slot| {
                shared
                    .model(slot)
                    .is_some_and(|m| m.config.family().has_cross_attention())
            })
            .collect()
    }

    fn controls(&mut self, ui: &mut Ui, shared: &Shared, translators: &[Slot], slot: Slot) {
        ui.horizontal_wrapped(|ui| {
            if translators.len() > 1 {
                egui::ComboBox::from_label("Translator")
                    .selected_text(shared.slot_name(slot))
                    .show_ui(ui, |ui| {
                        for &s in translators {
                            ui.selectable_value(&mut self.slot, Some(s), shared.slot_name(s));
                        }
                    });
            }
            ui.label("Decoding:");
            let s = &mut self.settings;
            ui.selectable_value(&mut s.method, Method::Greedy, "Greedy")
                .on_hover_text("Always the most likely next token.");
            ui.selectable_value(&mut s.method, Method::Beam, "Beam search")
                .on_hover_text("Keep the best few partial translations and extend them all.");
            ui.selectable_value(&mut s.method, Method::Sample, "Sample")
                .on_hover_text("Draw each token from the next-token distribution.");
            match s.method {
                Method::Greedy => {}
                Method::Beam => {
                    ui.add(egui::Slider::new(&mut s.beams, 2..=8).text("beams"));
                }
                Method::Sample => {
                    ui.add(
                        egui::Slider::new(&mut s.temperature, 0.0..=2.0)
                            .text("temperature")
                            .step_by(0.05),
                    );
                    ui.add(egui::Slider::new(&mut s.top_k, 0..=50).text("top-k (0 = all)"));
                    ui.add(egui::DragValue::new(&mut s.seed).prefix("seed "));
                    if ui.button("New draw").clicked() {
                        s.seed = s.seed.wrapping_add(1);
                    }
                }
            }
        });
    }

    /// The layer and head whose cross-attention is shown.
    fn attention_picker(&mut self, ui: &mut Ui, data: &TranslationSteps) -> (usize, Option<usize>) {
        let layers = data.cross_attention.len().max(1);
        let heads = data.cross_attention.first().map_or(1, Vec::len);
        let mut layer = self.settings.layer.unwrap_or(layers - 1).min(layers - 1);
        let mut head = self.settings.head.filter(|&h| h < heads);
        ui.horizontal(|ui| {
            ui.label("Cross-attention shown:");
            egui::ComboBox::from_label("layer")
                .selected_text(format!("layer {layer}"))
                .show_ui(ui, |ui| {
                    for l in 0..layers {
                        ui.selectable_value(&mut layer, l, format!("layer {l}"));
                    }
                });
            egui::ComboBox::from_label("head")
                .selected_text(match head {
                    Some(h) => format!("head {h}"),
                    None => "mean of the heads".into(),
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut head, None, "mean of the heads");
                    for h in 0..heads {
                        ui.selectable_value(&mut head, Some(h), format!("head {h}"));
                    }
                });
        });
        self.settings.layer = Some(layer);
        self.settings.head = head;
        (layer, head)
    }

    fn step_controls(&mut self, ui: &mut Ui, data: &TranslationSteps) {
        let last = data.len().saturating_sub(1);
        self.step = self.step.min(last);
        ui.horizontal(|ui| {
            if ui
                .add_enabled(self.step > 0, egui::Button::new("◀ Previous step"))
                .clicked()
            {
                self.step -= 1;
            }
            if ui
                .add_enabled(self.step < last, egui::Button::new("Next step ▶"))
                .clicked()
            {
                self.step += 1;
            }
            let mut shown = self.step + 1;
            ui.add(egui::Slider::new(&mut shown, 1..=last + 1).text("step"));
            self.step = shown - 1;
            if ui.button("First").clicked() {
                self.step = 0;
            }
            if ui.button("Last").clicked() {
                self.step = last;
            }
        });
    }

    fn show_translation(&mut self, ui: &mut Ui, shared: &Shared, data: &TranslationSteps) {
        ui.horizontal_wrapped(|ui| {
            ui.label("Translation:");
            ui.label(RichText::new(&data.translation).strong().size(20.0));
        });
        self.step_controls(ui, data);
        let (layer, head) = self.attention_picker(ui, data);
        let step = self.step;
        let Some(current) = data.steps.get(step) else {
            return;
        };

        // What the decoder reads, and what it writes at this step.
        let read: Vec<&str> = data.decoder_input_tokens[..=step]
            .iter()
            .map(String::as_str)
            .collect();
        ui.label(format!(
            "Step {} of {}: the decoder reads {} and writes “{}” (p = {}).",
            step + 1,
            data.len(),
            read.join(" "),
            current.token,
            format_value(current.probability)
        ));
        ui.horizontal_wrapped(|ui| {
            ui.label("Written so far:");
            for (i, s) in data.steps.iter().enumerate().take(step + 1) {
                let text = RichText::new(&s.token).monospace();
                if i == step {
                    ui.label(
                        text.strong()
                            .background_color(ui.visuals().selection.bg_fill),
                    );
                } else {
                    ui.label(text);
                }
            }
        });

        // The source words, shaded by where this step looked.
        ui.add_space(6.0);
        let weights = data.cross_row(layer, head, step).unwrap_or_default();
        ui.label(format!(
            "Where step {} looked in the source (cross-attention: query from the decoder, keys \
             and values from the encoder's output):",
            step + 1
        ));
        source_weights(ui, &data.source_tokens, &weights);

        ui.add_space(6.0);
        ui.columns(2, |columns| {
            let ui = &mut columns[0];
            ui.strong(format!("Next-token probabilities at step {}", step + 1));
            let items: Vec<(String, f32)> = current
                .top
                .iter()
                .map(|(token, p)| {
                    let mark = if *token == current.token {
                        "  ← written"
                    } else {
                        ""
                    };
                    (format!("{token}{mark}"), *p)
                })
                .collect();
            value_bars(ui, &items, Some(1.0), format_value);
            if !current.top.iter().any(|(t, _)| *t == current.token) {
                ui.weak(format!(
                    "The chosen token “{}” (p = {}) is not among the {} most likely.",
                    current.token,
                    format_value(current.probability),
                    current.top.len()
                ));
            }

            let ui = &mut columns[1];
            let matrix = cross_matrix(data, layer, head);
            let targets: Vec<String> = data.steps.iter().map(|s| s.token.clone()).collect();
            attention_lines(
                ui,
                &matrix,
                None,
                (&targets, &data.source_tokens),
                Some(step),
                "cross-attention lines",
                "Left: the French token being written. Right: the English tokens it looked at.",
            );
        });

        if !data.beams.is_empty() {
            ui.add_space(6.0);
            ui.strong("Beams (finished hypotheses, best first)");
            egui::Grid::new("translate_beams")
                .striped(true)
                .show(ui, |ui| {
                    ui.strong("rank");
                    ui.strong("translation");
                    ui.strong("score");
                    ui.strong("log p");
                    ui.end_row();
                    for (rank, beam) in data.beams.iter().enumerate() {
                        ui.label((rank + 1).to_string());
                        ui.label(&beam.translation);
                        ui.label(format!("{:.4}", beam.score));
                        ui.label(format!("{:.4}", beam.log_probability));
                        ui.end_row();
                    }
                });
            ui.weak("score = log p ÷ length^length_penalty, as transformers ranks beams.");
        }

        ui.add_space(6.0);
        let matrix = cross_matrix(data, layer, head);
        let targets: Vec<String> = data.steps.iter().map(|s| s.token.clone()).collect();
        Heatmap::new(&matrix, "cross-attention heatmap")
            .row_labels(&targets)
            .col_labels(&data.source_tokens)
            .axis_titles("French (written)", "English (read)")
            .scale(ColorScale::PROBABILITY)
            .max_cell(30.0)
            .show(ui);
        let stem = format!(
            "cross-attention-layer{layer}-{}",
            head.map_or("mean".to_string(), |h| format!("head{h}"))
        );
        let info = serde_json::json!({ "text": data.text, "translation": data.translation });
        export_buttons(
            ui,
            "translate",
            &shared.export_dir,
            &stem,
            &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
            |format| match format {
                ExportFormat::Png => heatmap_png(&matrix, None, ColorScale::PROBABILITY),
                ExportFormat::Csv => {
                    Ok(matrix_csv(&matrix, &targets, &data.source_tokens).into_bytes())
                }
                ExportFormat::Json => matrix_json(&matrix, &targets, &data.source_tokens, info),
            },
        );
    }
}

/// The `[target × source]` cross-attention of one layer: one head, or the mean of the heads.
pub fn cross_matrix(data: &TranslationSteps, layer: usize, head: Option<usize>) -> Matrix {
    let rows: Vec<Vec<f32>> = (0..data.len())
        .map(|step| data.cross_row(layer, head, step).unwrap_or_default())
        .collect();
    Matrix::from_rows(rows)
}

/// The source tokens, each shaded by its weight (relative to the largest), the weight under it.
pub fn source_weights(ui: &mut Ui, tokens: &[String], weights: &[f32]) {
    let max = weights.iter().copied().fold(0.0f32, f32::max).max(1e-6);
    ui.horizontal_wrapped(|ui| {
        for (i, token) in tokens.iter().enumerate() {
            let weight = weights.get(i).copied().unwrap_or(0.0);
            let fill = ColorScale::PROBABILITY.color(weight / max);
            let ink = crate::app::widgets::color::text_on(fill);
            ui.vertical(|ui| {
                ui.label(
                    RichText::new(format!(" {token} "))
                        .monospace()
                        .size(15.0)
                        .color(ink)
                        .background_color(fill),
                )
                .on_hover_text(format!("source token {i}: {token}, attention {weight:.4}"));
                ui.weak(format!("{weight:.2}"));
            });
        }
    });
}

impl Panel for TranslatePanel {
    fn view(&self) -> ViewName {
        ViewName::Translate
    }

    fn hint(&self) -> &'static str {
        "An encoder–decoder translates the text token by token; see where each step looks"
    }

    fn ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        ui.heading("Translate");
        ui.label(
            "The encoder reads the whole sentence at once (bidirectional self-attention). The \
             decoder then writes the translation one token at a time: it reads what it has \
             written so far (causal self-attention) and looks back at the encoder's output \
             (cross-attention). The text box above is the sentence to translate.",
        );
        let translators = Self::translators(shared);
        let slot = match self.slot.filter(|s| translators.contains(s)) {
            Some(slot) => slot,
            None => match translators.first() {
                Some(&slot) => slot,
                None => {
                    ui.add_space(8.0);
                    ui.label(
                        "No translator is loaded. Load one in the Model view: the shipped \
                         assets/tiny-translator (English → French), a folder a seq2seq run \
                         wrote, or a Helsinki-NLP opus-mt model from the Hub.",
                    );
                    if shared.shipped.get(Slot::Translator).is_some()
                        && ui.button("Load the shipped tiny translator").clicked()
                    {
                        super::model::load_shipped(shared, Slot::Translator);
                    }
                    return;
                }
            },
        };
        self.controls(ui, shared, &translators, slot);
        ui.horizontal_wrapped(|ui| {
            ui.weak(
                "A tiny translator knows only sentences like the ones it was trained on (the \
                 shipped one: lower-case English of a small grammar, a space before the full \
                 stop).",
            );
            if ui.button("Use an example sentence").clicked() {
                shared.text = EXAMPLE.to_string();
            }
        });
        ui.separator();
        if shared.text.trim().is_empty() {
            ui.label("Type an English sentence in the text box above.");
            return;
        }
        let strategy = self.settings.strategy();
        let top = self.settings.candidates.clamp(1, 50);
        let key: Key = (
            slot,
            shared.generation(slot),
            shared.text.clone(),
            format!("{strategy:?}"),
            top,
        );
        let text = shared.text.clone();
        let fetch = if shared.model(slot).is_none() {
            Fetch::NoModel
        } else {
            self.translation.fetch(
                shared,
                key,
                || crate::app::worker::Command::Translate {
                    slot,
                    text,
                    strategy,
                    top,
                },
                |out| match out {
                    crate::app::worker::Output::Translation(t) => Some(t),
                    _ => None,
                },
            )
        };
        if let Fetch::Failed(message) = &fetch {
            error_label(ui, message);
            return;
        }
        let Some(data) = fetch_status(ui, slot, &fetch) else {
            return;
        };
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| self.show_translation(ui, shared, &data));
    }

    fn apply(&mut self, action: &Action, _shared: &mut Shared) {
        match action {
            Action::SelectLayerHead {
                slot: Some(Slot::Translator),
                layer,
                head,
            } => {
                self.settings.layer = Some(*layer);
                self.settings.head = *head;
            }
            Action::ShowTranslationStep(step) => self.step = step.saturating_sub(1),
            // A lesson's step is about the greedy translation of its text.
            Action::SetText(_) => self.settings.method = Method::Greedy,
            _ => {}
        }
    }

    fn save_state(&self) -> Option<serde_json::Value> {
        serde_json::to_value(&self.settings).ok()
    }

    fn load_state(&mut self, state: serde_json::Value) {
        if let Ok(settings) = serde_json::from_value(state) {
            self.settings = settings;
        }
    }
}
