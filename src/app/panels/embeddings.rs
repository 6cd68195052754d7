//! View "Embeddings": the token, position and (BERT) segment embeddings that are summed into the
//! first layer's input, as heatmaps (tokens × dimensions) on one colour scale; a 2-D projection
//! (PCA) of token embeddings with labels; and the same word in two sentences compared layer by
//! layer with cosine similarity — static embeddings at the bottom, contextual ones at the top.
//!
//! The PCA and the comparison are computed by [`crate::analysis::embeddings`] on the worker
//! ([`Command::Job`]); the heatmaps come from the traced inspection ([`Shared::inspection_full`]).

use eframe::egui;
use std::collections::BTreeMap;
use std::sync::Arc;

use egui::{Color32, RichText, Ui};
use egui_plot::{
    HLine, Legend, Line, LineStyle, MarkerShape, Plot, PlotPoint, PlotPoints, Points, Text,
};
use serde::{Deserialize, Serialize};

use super::step_through::matrix_view;
use super::{Action, Panel};
use crate::analysis::embeddings::{PcaResult, WordComparison};
use crate::app::data::{Matrix, Slot};
use crate::app::state::{Cached, Fetch, Shared};
use crate::app::widgets::export::{ExportFormat, encode_png, export_buttons, table_csv};
use crate::app::widgets::{ColorScale, error_label, fetch_status, format_value, model_picker};
use crate::app::worker::{Command, Output};
use crate::lessons::ViewName;
use crate::model::trace::{TraceKey, TraceSite};

/// The default sentences of the comparison: "bank" by the money and by the river.
pub const DEFAULT_SENTENCE_A: &str = "He went to the bank to deposit money.";
pub const DEFAULT_SENTENCE_B: &str = "She sat on the river bank and watched the water.";
pub const DEFAULT_WORD: &str = "bank";

/// Which models the comparison runs on: the families' two, and any extra loaded models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompareModels {
    pub gpt: bool,
    pub bert: bool,
    #[serde(default)]
    pub extra: std::collections::BTreeSet<Slot>,
}

impl CompareModels {
    fn wants(&self, slot: Slot) -> bool {
        match slot {
            Slot::Gpt => self.gpt,
            Slot::Bert => self.bert,
            other => self.extra.contains(&other),
        }
    }
}

type PcaKey = (Slot, u64, String, usize);
type CompareKey = (u64, String, String, String);

#[derive(Serialize, Deserialize)]
#[serde(default)]
pub struct EmbeddingsPanel {
    /// The model whose embeddings the heatmaps and the PCA show.
    pub slot: Slot,
    /// How many vocabulary tokens besides the text's are drawn in the PCA plot.
    pub sample: usize,
    pub label_sample: bool,
    pub word: String,
    pub sentence_a: String,
    pub sentence_b: String,
    pub compare: CompareModels,
    /// The selected token (row of the heatmaps).
    #[serde(skip)]
    pub token: Option<usize>,
    #[serde(skip)]
    scroll_to_compare: bool,
    #[serde(skip)]
    pca: Cached<PcaKey, Arc<PcaResult>>,
    #[serde(skip)]
    comparisons: BTreeMap<Slot, Cached<CompareKey, Arc<WordComparison>>>,
}

impl Default for EmbeddingsPanel {
    fn default() -> Self {
        Self {
            slot: Slot::Gpt,
            sample: 150,
            label_sample: true,
            word: DEFAULT_WORD.into(),
            sentence_a: DEFAULT_SENTENCE_A.into(),
            sentence_b: DEFAULT_SENTENCE_B.into(),
            compare: CompareModels {
                gpt: true,
                bert: true,
                extra: Default::default(),
            },
            token: None,
            scroll_to_compare: false,
            pca: Cached::default(),
            comparisons: BTreeMap::new(),
        }
    }
}

impl EmbeddingsPanel {
    /// A saved state as the view can use it (a hand-edited file may hold any sample size).
    fn checked(mut self) -> Self {
        self.sample = self.sample.min(2000);
        self
    }

    /// The last PCA the worker computed.
    pub fn pca(&self) -> Option<&Arc<PcaResult>> {
        self.pca.last()
    }

    /// The last comparison of `slot`'s model.
    pub fn comparison(&self, slot: Slot) -> Option<&Arc<WordComparison>> {
        self.comparisons.get(&slot).and_then(|c| c.last())
    }
}

impl Panel for EmbeddingsPanel {
    fn view(&self) -> ViewName {
        ViewName::Embeddings
    }

    fn hint(&self) -> &'static str {
        "Token + position (+ segment) embeddings, a PCA map, static vs contextual vectors"
    }

    crate::app::panels::saved_as_itself!(Self::checked);

    fn apply(&mut self, action: &Action, _shared: &mut Shared) {
        match action {
            Action::SetText(_) | Action::SetPair(_) => self.token = None,
            Action::CompareWord {
                word,
                sentence_a,
                sentence_b,
            } => {
                self.word = word.clone();
                self.sentence_a = sentence_a.clone();
                self.sentence_b = sentence_b.clone();
                if !self.compare.gpt && !self.compare.bert {
                    self.compare = CompareModels {
                        gpt: true,
                        bert: true,
                        extra: Default::default(),
                    };
                }
                // The comparison is at the bottom of the view: bring it into sight.
                self.scroll_to_compare = true;
            }
            _ => {}
        }
    }

    fn ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        ui.heading("Embeddings");
        ui.label(
            "Before the first layer every token becomes a vector: its row of the token \
             embedding table, plus a vector for its position (and, in BERT, for its segment).",
        );
        if model_picker(ui, shared, Slot::ALL, &mut self.slot) {
            self.token = None;
        }
        ui.separator();
        self.sum_section(ui, shared);
        ui.separator();
        self.pca_section(ui, shared);
        ui.separator();
        self.compare_section(ui, shared);
    }
}

impl EmbeddingsPanel {
    fn sum_section(&mut self, ui: &mut Ui, shared: &mut Shared) {
        ui.label(RichText::new("The embeddings that are summed").heading());
        let slot = self.slot;
        let export_dir = shared.export_dir.clone();
        let fetch = shared.inspection_full(slot);
        let Some(data) = fetch_status(ui, slot, &fetch) else {
            return;
        };
        let has_segments = data
            .stage(TraceKey::new(TraceSite::SegmentEmbeddings))
            .is_some();
        let parts: Vec<(TraceSite, &str, &str)> = [
            (
                TraceSite::TokenEmbeddings,
                "token embeddings E_tok[ids]",
                "token",
            ),
            (
                TraceSite::PositionEmbeddings,
                "+ position embeddings E_pos[0..s]",
                "position",
            ),
            (
                TraceSite::SegmentEmbeddings,
                "+ segment embeddings E_seg[type_ids]",
                "segment",
            ),
            (TraceSite::EmbeddingSum, "= the sum X", "sum"),
        ]
        .into_iter()
        .filter(|(site, _, _)| has_segments || *site != TraceSite::SegmentEmbeddings)
        .collect();
        let formula = if parts.len() == 4 {
            "X = E_tok[ids] + E_pos[0..s] + E_seg[type_ids]"
        } else {
            "X = E_tok[ids] + E_pos[0..s]"
        };
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.monospace(formula);
        });
        let matrices: Vec<(&str, &str, Matrix)> = parts
            .iter()
            .filter_map(|(site, caption, name)| {
                let matrix = data.stage(TraceKey::new(*site))?.first_matrix()?;
                Some((*caption, *name, matrix))
            })
            .collect();
        if matrices.is_empty() {
            ui.label("This model recorded no embeddings.");
            return;
        }
        // One colour scale for all parts, so their sizes compare.
        let max_abs = matrices
            .iter()
            .map(|(_, _, m)| {
                let (lo, hi) = m.range();
                lo.abs().max(hi.abs())
            })
            .fold(f32::MIN_POSITIVE, f32::max);
        let scale = ColorScale::Diverging { max_abs };
        let labels = data.token_labels();
        let hidden = matrices[0].2.cols;
        ui.label(format!(
            "{} tokens × {hidden} dimensions each, on one colour scale (±{}). Click a row to \
             select a token; hover a cell for its value.",
            data.tokens.len(),
            format_value(max_abs)
        ));
        let mut clicked = None;
        for (caption, name, m) in &matrices {
            ui.label(RichText::new(*caption).strong());
            let stem = format!("embeddings-{}-{name}", slot.short().to_lowercase());
            let response = ui
                .push_id(name, |ui| {
                    matrix_view(
                        ui,
                        &export_dir,
                        &stem,
                        m,
                        &labels,
                        &[],
                        None,
                        scale,
                        &format!("{} {name} embeddings", slot.short()),
                        self.token,
                        false,
                    )
                })
                .inner;
            if let Some(t) = response
                .clicked_row
                .or(response.clicked_cell.map(|(r, _)| r))
            {
                clicked = Some(t);
            }
        }
        if let Some(t) = clicked {
            self.token = if self.token == Some(t) { None } else { Some(t) };
        }
        if let Some(t) = self.token.filter(|&t| t < data.tokens.len()) {
            ui.label(RichText::new(format!("Token {t} {:?}, part by part:", labels[t])).strong());
            for (caption, _, m) in &matrices {
                ui.label(*caption);
                super::step_through::vector_strip(
                    ui,
                    m.row(t),
                    &format!("{caption} of token {t}"),
                    &|i| format!("dimension {i}"),
                );
            }
            if let (Some(first), Some(last)) = (matrices.first(), matrices.last()) {
                let dims = first.2.cols.min(4);
                let sums: Vec<String> = (0..dims)
                    .map(|d| {
                        let parts: Vec<String> = matrices[..matrices.len() - 1]
                            .iter()
                            .map(|(_, _, m)| format!("{:.4}", m.get(t, d).unwrap_or(0.0)))
                            .collect();
                        format!(
                            "dim {d}: {} = {:.4}",
                            parts.join(" + "),
                            last.2.get(t, d).unwrap_or(0.0)
                        )
                    })
                    .collect();
                for line in sums {
                    ui.monospace(line);
                }
            }
        }
    }

    fn pca_section(&mut self, ui: &mut Ui, shared: &mut Shared) {
        ui.label(RichText::new("Token embeddings in 2-D (PCA)").heading());
        ui.label(
            "Each point is a row of the token embedding table, projected on the two directions \
             along which the rows vary most (principal components, fitted on the worker). \
             Large points are the tokens of the current text.",
        );
        ui.horizontal_wrapped(|ui| {
            ui.add(egui::Slider::new(&mut self.sample, 0..=1000).text("vocabulary tokens shown"));
            ui.checkbox(&mut self.label_sample, "Label them");
        });
        let slot = self.slot;
        if shared.model(slot).is_none() {
            fetch_status::<()>(ui, slot, &Fetch::NoModel);
            return;
        }
        let key = (
            slot,
            shared.generation(slot),
            shared.text.clone(),
            self.sample,
        );
        let text = shared.text.clone();
        let sample = self.sample;
        let fetch = self.pca.fetch(
            shared,
            key,
            || Command::Pca { slot, text, sample },
            |out| match out {
                Output::Pca(result) => Some(result),
                _ => None,
            },
        );
        let Some(pca) = fetch_status(ui, slot, &fetch) else {
            return;
        };
        ui.label(format!(
            "{}: PC1 explains {:.1}% and PC2 {:.1}% of the variance; fitted on {} of {} \
             embedding rows.",
            pca.model_name,
            pca.explained[0] * 100.0,
            pca.explained[1] * 100.0,
            pca.fitted_on,
            pca.vocab_rows
        ));
        let sample_pts: Vec<[f64; 2]> = pca
            .points
            .iter()
            .filter(|p| !p.in_text)
            .map(|p| [p.x as f64, p.y as f64])
            .collect();
        let text_pts: Vec<[f64; 2]> = pca
            .points
            .iter()
            .filter(|p| p.in_text)
            .map(|p| [p.x as f64, p.y as f64])
            .collect();
        let sample_names: Vec<String> = pca
            .points
            .iter()
            .filter(|p| !p.in_text)
            .map(|p| format!("{:?} (id {})", p.token, p.id))
            .collect();
        let text_names: Vec<String> = pca
            .points
            .iter()
            .filter(|p| p.in_text)
            .map(|p| format!("{:?} (id {})", p.token, p.id))
            .collect();
        let dark = ui.visuals().dark_mode;
        let sample_color = if dark {
            Color32::from_gray(140)
        } else {
            Color32::from_gray(110)
        };
        let text_color = Color32::from_rgb(230, 120, 30);
        let label_sample = self.label_sample;
        let points = pca.points.clone();
        let response = Plot::new(("pca_plot", slot))
            .height(420.0)
            .data_aspect(1.0)
            .allow_scroll(false)
            .legend(Legend::default())
            .x_axis_label("PC1")
            .y_axis_label("PC2")
            .label_formatter(move |pos| match pos {
                egui_plot::HoverPosition::NearDataPoint {
                    plot_name, index, ..
                } => {
                    let names = if plot_name.starts_with("tokens of the text") {
                        &text_names
                    } else {
                        &sample_names
                    };
                    names.get(*index).cloned()
                }
                egui_plot::HoverPosition::Elsewhere { .. } => None,
            })
            .show(ui, |plot| {
                plot.points(
                    Points::new("vocabulary sample", PlotPoints::from(sample_pts))
                        .radius(2.5)
                        .color(sample_color),
                );
                plot.points(
                    Points::new("tokens of the text", PlotPoints::from(text_pts))
                        .radius(5.0)
                        .shape(MarkerShape::Diamond)
                        .color(text_color),
                );
                // Every token of the text is labelled; a sample token only where its label
                // does not overlap one already placed (on last frame's screen transform).
                let mut placed: Vec<egui::Pos2> = Vec::new();
                let order = points
                    .iter()
                    .filter(|p| p.in_text)
                    .chain(points.iter().filter(|p| !p.in_text && label_sample));
                for p in order {
                    let at = PlotPoint::new(p.x as f64, p.y as f64);
                    let screen = plot.screen_from_plot(at);
                    let crowded = placed
                        .iter()
                        .any(|q| (q.x - screen.x).abs() < 42.0 && (q.y - screen.y).abs() < 12.0);
                    if !p.in_text && crowded {
                        continue;
                    }
                    placed.push(screen);
                    let (color, text) = if p.in_text {
                        (text_color, RichText::new(&p.token).strong().size(13.0))
                    } else {
                        (sample_color, RichText::new(&p.token).size(10.0))
                    };
                    plot.text(
                        Text::new("", at, text.color(color))
                            .anchor(egui::Align2::LEFT_BOTTOM)
                            .allow_hover(false),
                    );
                }
            });
        response.response.widget_info(|| {
            egui::WidgetInfo::labeled(egui::Role::Image, true, "PCA of token embeddings")
        });
        let rows: Vec<Vec<String>> = pca
            .points
            .iter()
            .map(|p| {
                vec![
                    p.id.to_string(),
                    p.token.clone(),
                    p.x.to_string(),
                    p.y.to_string(),
                    p.in_text.to_string(),
                ]
            })
            .collect();
        let for_png = vec![
            (
                Color32::from_gray(120),
                pca.points
                    .iter()
                    .filter(|p| !p.in_text)
                    .map(|p| [p.x as f64, p.y as f64])
                    .collect::<Vec<_>>(),
            ),
            (
                text_color,
                pca.points
                    .iter()
                    .filter(|p| p.in_text)
                    .map(|p| [p.x as f64, p.y as f64])
                    .collect(),
            ),
        ];
        let json_value = pca.clone();
        let dir = shared.export_dir.clone();
        export_buttons(
            ui,
            "pca",
            &dir,
            &format!("pca-{}", slot.short().to_lowercase()),
            &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
            |format| match format {
                ExportFormat::Png => plot_png(&for_png, false, None),
                ExportFormat::Csv => {
                    Ok(table_csv(&["id", "token", "pc1", "pc2", "in_text"], &rows).into_bytes())
                }
                ExportFormat::Json => {
                    serde_json::to_vec_pretty(&*json_value).map_err(|e| e.to_string())
                }
            },
        );
    }

    fn compare_section(&mut self, ui: &mut Ui, shared: &mut Shared) {
        let heading =
            ui.label(RichText::new("Static vs contextual: one word, two sentences").heading());
        if std::mem::take(&mut self.scroll_to_compare) {
            heading.scroll_to_me(Some(egui::Align::TOP));
        }
        ui.label(
            "A token embedding is static: the word gets the same vector in every sentence. \
             Each layer mixes in the other tokens through attention, so the vectors become \
             contextual and the word's two meanings can drift apart. The chart shows the \
             cosine similarity of the word's vectors in the two sentences after every layer \
             (1 = same direction).",
        );
        egui::Grid::new("bank_fields")
            .num_columns(2)
            .spacing([8.0, 4.0])
            .show(ui, |ui| {
                let label = ui.label("Word:");
                ui.add(egui::TextEdit::singleline(&mut self.word).desired_width(160.0))
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("Sentence A:");
                ui.add(egui::TextEdit::singleline(&mut self.sentence_a).desired_width(480.0))
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("Sentence B:");
                ui.add(egui::TextEdit::singleline(&mut self.sentence_b).desired_width(480.0))
                    .labelled_by(label.id);
                ui.end_row();
            });
        ui.horizontal(|ui| {
            ui.label("Models:");
            ui.checkbox(&mut self.compare.gpt, "GPT");
            ui.checkbox(&mut self.compare.bert, "BERT");
            for slot in shared.slots_to_show().into_iter().skip(Slot::ALL.len()) {
                let mut on = self.compare.extra.contains(&slot);
                if ui.checkbox(&mut on, shared.slot_name(slot)).changed() {
                    if on {
                        self.compare.extra.insert(slot);
                    } else {
                        self.compare.extra.remove(&slot);
                    }
                }
            }
            if ui.button("Reset sentences").clicked() {
                self.word = DEFAULT_WORD.into();
                self.sentence_a = DEFAULT_SENTENCE_A.into();
                self.sentence_b = DEFAULT_SENTENCE_B.into();
            }
        });
        let mut results: Vec<(Slot, Arc<WordComparison>)> = Vec::new();
        for slot in shared.slots_to_show() {
            if !self.compare.wants(slot) {
                continue;
            }
            if shared.model(slot).is_none() {
                fetch_status::<()>(ui, slot, &Fetch::NoModel);
                continue;
            }
            if self.word.trim().is_empty() {
                error_label(ui, "type the word to compare");
                break;
            }
            let key = (
                shared.generation(slot),
                self.word.trim().to_string(),
                self.sentence_a.clone(),
                self.sentence_b.clone(),
            );
            let (word, a, b) = (key.1.clone(), key.2.clone(), key.3.clone());
            let fetch = self.comparisons.entry(slot).or_default().fetch(
                shared,
                key,
                || Command::CompareWord { slot, word, a, b },
                |out| match out {
                    Output::WordComparison(result) => Some(result),
                    _ => None,
                },
            );
            ui.push_id(slot, |ui| {
                if let Some(result) = fetch_status(ui, slot, &fetch) {
                    results.push((slot, result));
                }
            });
        }
        if results.is_empty() {
            return;
        }
        let colors = |slot: Slot| match slot {
            Slot::Gpt => Color32::from_rgb(230, 120, 30),
            Slot::Bert => Color32::from_rgb(60, 140, 230),
            _ => Color32::from_rgb(80, 180, 90),
        };
        let max_len = results
            .iter()
            .map(|(_, r)| r.cosines.len())
            .max()
            .unwrap_or(1);
        let series: Vec<(Slot, String, Vec<[f64; 2]>, f32)> = results
            .iter()
            .map(|(slot, r)| {
                let pts = r
                    .cosines
                    .iter()
                    .enumerate()
                    .map(|(i, c)| [i as f64, *c as f64])
                    .collect();
                (
                    *slot,
                    format!("{} ({})", slot.short(), r.model_name),
                    pts,
                    r.static_cosine,
                )
            })
            .collect();
        let plot_series = series.clone();
        let response = Plot::new("bank_plot")
            .height(260.0)
            .legend(Legend::default().position(egui_plot::Corner::LeftBottom))
            .include_y(1.0)
            .include_x(-0.3)
            .include_x(max_len.saturating_sub(1) as f64 + 0.3)
            .allow_scroll(false)
            .x_axis_label("hidden state (emb = embedding output, n = after layer n)")
            .y_axis_label("cosine similarity")
            .x_axis_formatter(|mark, _| {
                let i = mark.value.round();
                if (mark.value - i).abs() > 1e-6 || i < 0.0 {
                    String::new()
                } else if i == 0.0 {
                    "emb".into()
                } else {
                    format!("{}", i as usize - 1)
                }
            })
            .label_formatter(|pos| match pos {
                egui_plot::HoverPosition::NearDataPoint {
                    plot_name,
                    position,
                    ..
                } => {
                    let at = if position.x < 0.5 {
                        "embedding output".to_string()
                    } else {
                        format!("after layer {}", position.x.round() as usize - 1)
                    };
                    Some(format!("{plot_name}\n{at}: cos = {:.6}", position.y))
                }
                egui_plot::HoverPosition::Elsewhere { .. } => None,
            })
            .show(ui, |plot| {
                for (slot, name, pts, static_cos) in plot_series {
                    plot.line(
                        Line::new(name.clone(), PlotPoints::from(pts.clone()))
                            .color(colors(slot))
                            .width(2.0),
                    );
                    plot.points(
                        Points::new(name.clone(), PlotPoints::from(pts))
                            .color(colors(slot))
                            .radius(4.0),
                    );
                    plot.hline(
                        HLine::new(
                            format!("{} token embedding (static)", slot.short()),
                            static_cos,
                        )
                        .color(colors(slot).gamma_multiply(0.6))
                        .style(LineStyle::dashed_loose()),
                    );
                }
            });
        response.response.widget_info(|| {
            egui::WidgetInfo::labeled(egui::Role::Image, true, "cosine similarity by layer")
        });
        for (slot, r) in &results {
            let last = r.cosines.last().copied().unwrap_or(0.0);
            ui.label(
                RichText::new(format!(
                    "{} ({}): {:?} is {} in A and {} in B.",
                    slot.short(),
                    r.model_name,
                    r.word,
                    pieces(&r.pieces_a, &r.positions_a),
                    pieces(&r.pieces_b, &r.positions_b)
                ))
                .strong(),
            );
            ui.label(format!(
                "{} token embedding (static): cos = {}",
                slot.short(),
                format_value(r.static_cosine)
            ));
            ui.label(format!(
                "{} embedding output (+ positions): cos = {}",
                slot.short(),
                format_value(r.cosines.first().copied().unwrap_or(0.0))
            ));
            ui.label(format!(
                "{} last layer (contextual): cos = {}",
                slot.short(),
                format_value(last)
            ));
        }
        ui.weak(
            "The static token embeddings of the same token are identical (cos = 1). The \
             embedding output differs a little because the word sits at another position. \
             With trained models the cosine falls in the upper layers as the context pulls \
             the two meanings apart; a random model shows the mechanics, not the meaning.",
        );
        let mut headers = vec!["hidden state".to_string()];
        headers.extend(series.iter().map(|(_, name, _, _)| name.clone()));
        let rows: Vec<Vec<String>> = (0..max_len)
            .map(|i| {
                let mut row = vec![if i == 0 {
                    "embedding output".to_string()
                } else {
                    format!("after layer {}", i - 1)
                }];
                row.extend(
                    results
                        .iter()
                        .map(|(_, r)| r.cosines.get(i).map(|c| c.to_string()).unwrap_or_default()),
                );
                row
            })
            .collect();
        let png_series: Vec<(Color32, Vec<[f64; 2]>)> = series
            .iter()
            .map(|(slot, _, pts, _)| (colors(*slot), pts.clone()))
            .collect();
        let json_value: Vec<(String, Arc<WordComparison>)> = results
            .iter()
            .map(|(slot, r)| (slot.short().to_string(), r.clone()))
            .collect();
        let dir = shared.export_dir.clone();
        export_buttons(
            ui,
            "bank",
            &dir,
            "word-cosine-by-layer",
            &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
            |format| match format {
                ExportFormat::Png => plot_png(&png_series, true, Some((-1.0, 1.0))),
                ExportFormat::Csv => {
                    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
                    Ok(table_csv(&header_refs, &rows).into_bytes())
                }
                ExportFormat::Json => {
                    let map: BTreeMap<String, &WordComparison> = json_value
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_ref()))
                        .collect();
                    serde_json::to_vec_pretty(&map).map_err(|e| e.to_string())
                }
            },
        );
    }
}

fn pieces(tokens: &[String], positions: &[usize]) -> String {
    let list: Vec<String> = tokens
        .iter()
        .zip(positions)
        .map(|(t, p)| format!("{t:?} (position {p})"))
        .collect();
    if list.len() == 1 {
        list[0].clone()
    } else {
        format!("{} tokens, averaged: {}", list.len(), list.join(", "))
    }
}

/// A scatter or line chart as a PNG: each series in its colour on a white canvas with a frame
/// and a zero line; `y_range` fixes the vertical range.
pub fn plot_png(
    series: &[(Color32, Vec<[f64; 2]>)],
    lines: bool,
    y_range: Option<(f64, f64)>,
) -> std::result::Result<Vec<u8>, String> {
    let (w, h) = (720u32, 480u32);
    let margin = 24.0;
    let mut pixels = vec![255u8; (w * h * 4) as usize];
    let all: Vec<[f64; 2]> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for [x, y] in &all {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if let Some((lo, hi)) = y_range {
        y0 = y0.min(lo);
        y1 = y1.max(hi);
    }
    if all.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let to_px = |x: f64, y: f64| -> (f64, f64) {
        (
            margin + (x - x0) / (x1 - x0) * (w as f64 - 2.0 * margin),
            h as f64 - margin - (y - y0) / (y1 - y0) * (h as f64 - 2.0 * margin),
        )
    };
    let mut set = |x: i64, y: i64, c: Color32| {
        if x >= 0 && y >= 0 && (x as u32) < w && (y as u32) < h {
            let i = ((y as u32 * w + x as u32) * 4) as usize;
            pixels[i..i + 4].copy_from_slice(&c.to_array());
        }
    };
    let frame = Color32::from_gray(160);
    for x in margin as i64..=(w as f64 - margin) as i64 {
        set(x, margin as i64, frame);
        set(x, (h as f64 - margin) as i64, frame);
    }
    for y in margin as i64..=(h as f64 - margin) as i64 {
        set(margin as i64, y, frame);
        set((w as f64 - margin) as i64, y, frame);
    }
    if y0 < 0.0 && y1 > 0.0 {
        let (_, zy) = to_px(x0, 0.0);
        for x in margin as i64..=(w as f64 - margin) as i64 {
            set(x, zy as i64, Color32::from_gray(210));
        }
    }
    for (color, pts) in series {
        if lines {
            for pair in pts.windows(2) {
                let (ax, ay) = to_px(pair[0][0], pair[0][1]);
                let (bx, by) = to_px(pair[1][0], pair[1][1]);
                let steps = (bx - ax).abs().max((by - ay).abs()).ceil().max(1.0) as i64;
                for s in 0..=steps {
                    let t = s as f64 / steps as f64;
                    let (x, y) = (ax + (bx - ax) * t, ay + (by - ay) * t);
                    for d in [-1, 0, 1] {
                        set(x as i64, y as i64 + d, *color);
                    }
                }
            }
        }
        let r = if lines { 3 } else { 2 };
        for [x, y] in pts {
            let (px, py) = to_px(*x, *y);
            for dx in -r..=r {
                for dy in -r..=r {
                    set(px as i64 + dx, py as i64 + dy, *color);
                }
            }
        }
    }
    encode_png(w, h, &pixels)
}
