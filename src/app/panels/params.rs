//! View "Parameters": where a model's parameters are, component by component, for the loaded
//! models, the well-known presets (BERT-Base … GPT-3 175B) or a custom config with sliders; the
//! textbook formula (weight matrices only) next to the exact tensor-by-tensor count, with each
//! row's formula, as a table and a chart.

use eframe::egui;
use egui::{Color32, Grid, RichText, Ui};
use egui_plot::{Bar, BarChart, Legend, Plot};
use serde::{Deserialize, Serialize};

use super::{Action, Panel};
use crate::app::data::Slot;
use crate::app::state::Shared;
use crate::app::widgets::export::{ExportFormat, bars_png, export_buttons, table_csv};
use crate::lessons::ViewName;
use crate::model::params::{
    self, ArchSpec, Heads, ParamBreakdown, Preset, format_bytes, group_thousands,
};

/// What the table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParamSource {
    Loaded(Slot),
    Preset(Preset),
    Custom,
}

/// The custom config's family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Family {
    Bert,
    Gpt2,
    DistilBert,
    /// The 2017 transformer: `layers` encoder layers and as many decoder layers.
    EncoderDecoder,
}

impl Family {
    const ALL: [Family; 4] = [
        Family::Bert,
        Family::Gpt2,
        Family::DistilBert,
        Family::EncoderDecoder,
    ];

    fn label(self) -> &'static str {
        match self {
            Family::Bert => "BERT",
            Family::Gpt2 => "GPT-2",
            Family::DistilBert => "DistilBERT",
            Family::EncoderDecoder => "Encoder–decoder",
        }
    }
}

/// A config built with sliders.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomConfig {
    pub family: Family,
    pub layers: u64,
    pub hidden: u64,
    pub heads: u64,
    pub vocab: u64,
    pub context: u64,
    pub ffn: u64,
    /// Keep the FFN width at 4·H.
    pub ffn_is_4h: bool,
}

impl Default for CustomConfig {
    fn default() -> Self {
        Self {
            family: Family::Bert,
            layers: 12,
            hidden: 768,
            heads: 12,
            vocab: 30522,
            context: 512,
            ffn: 3072,
            ffn_is_4h: true,
        }
    }
}

impl CustomConfig {
    pub fn spec(&self) -> ArchSpec {
        let ffn = if self.ffn_is_4h {
            4 * self.hidden
        } else {
            self.ffn
        };
        match self.family {
            Family::Bert => ArchSpec::Bert {
                vocab: self.vocab,
                hidden: self.hidden,
                layers: self.layers,
                heads: self.heads,
                intermediate: ffn,
                positions: self.context,
                type_vocab: 2,
            },
            Family::Gpt2 => ArchSpec::Gpt2 {
                vocab: self.vocab,
                positions: self.context,
                hidden: self.hidden,
                layers: self.layers,
                heads: self.heads,
                intermediate: ffn,
                bias: true,
            },
            Family::DistilBert => ArchSpec::DistilBert {
                vocab: self.vocab,
                hidden: self.hidden,
                layers: self.layers,
                heads: self.heads,
                intermediate: ffn,
                positions: self.context,
            },
            Family::EncoderDecoder => ArchSpec::EncoderDecoder {
                vocab: self.vocab,
                hidden: self.hidden,
                encoder_layers: self.layers,
                decoder_layers: self.layers,
                heads: self.heads,
                intermediate: ffn,
                encoder_intermediate: ffn,
                positions: self.context,
                stored_positions: false,
                target_vocab: None,
                tied_head: true,
            },
        }
    }

    pub fn breakdown(&self) -> ParamBreakdown {
        let spec = self.spec();
        let heads = match spec {
            ArchSpec::Gpt2 { .. } | ArchSpec::EncoderDecoder { .. } => Heads {
                lm_head: true,
                ..Heads::none()
            },
            _ => Heads::base_model(&spec),
        };
        let mut b = params::breakdown(&spec, heads);
        b.name = format!("Custom {} ({})", self.family.label(), spec.summary());
        b
    }

    /// Starts from a preset's numbers (RoBERTa and ALBERT map to BERT).
    pub fn from_spec(spec: &ArchSpec) -> Self {
        let (family, layers) = match *spec {
            ArchSpec::Gpt2 { .. } => (Family::Gpt2, spec.layers()),
            ArchSpec::DistilBert { .. } => (Family::DistilBert, spec.layers()),
            ArchSpec::EncoderDecoder { encoder_layers, .. } => {
                (Family::EncoderDecoder, encoder_layers)
            }
            _ => (Family::Bert, spec.layers()),
        };
        Self {
            family,
            layers,
            hidden: spec.hidden(),
            heads: spec.heads(),
            vocab: spec.vocab(),
            context: spec.positions(),
            ffn: spec.intermediate(),
            ffn_is_4h: spec.intermediate() == 4 * spec.hidden(),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(default)]
pub struct ParamsPanel {
    pub source: ParamSource,
    pub custom: CustomConfig,
}

impl Default for ParamsPanel {
    fn default() -> Self {
        Self {
            source: ParamSource::Preset(Preset::BertBase),
            custom: CustomConfig::default(),
        }
    }
}

impl ParamsPanel {
    pub fn select_preset(&mut self, preset: Preset) {
        self.source = ParamSource::Preset(preset);
    }

    /// The breakdown on screen, if there is one (a loaded slot may be empty).
    pub fn breakdown(&self, shared: &Shared) -> Option<ParamBreakdown> {
        match self.source {
            ParamSource::Loaded(slot) => shared.model(slot).map(|m| {
                let mut b = m.breakdown.clone();
                b.name = format!("{} — {}", m.name, b.name);
                b
            }),
            ParamSource::Preset(preset) => Some(preset.breakdown()),
            ParamSource::Custom => Some(self.custom.breakdown()),
        }
    }
}

impl Panel for ParamsPanel {
    fn view(&self) -> ViewName {
        ViewName::Parameters
    }

    fn hint(&self) -> &'static str {
        "Where the parameters are: textbook formula and exact count"
    }

    crate::app::panels::saved_as_itself!();

    fn apply(&mut self, action: &Action, _shared: &mut Shared) {
        match action {
            Action::SelectPreset(preset) => self.select_preset(*preset),
            Action::SelectLoadedParams(slot) => self.source = ParamSource::Loaded(*slot),
            Action::SetCustomConfig(spec) => {
                self.custom = CustomConfig::from_spec(spec);
                self.source = ParamSource::Custom;
            }
            _ => {}
        }
    }

    fn ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        ui.heading("Parameters");
        self.source_picker(ui, shared);
        if self.source == ParamSource::Custom {
            self.custom_sliders(ui);
        }
        ui.separator();
        let Some(breakdown) = self.breakdown(shared) else {
            ui.label("No model is loaded in this slot. Pick one in the Model view.");
            return;
        };
        totals(ui, &breakdown);
        ui.add_space(6.0);
        table(ui, &breakdown);
        ui.add_space(6.0);
        chart(ui, &breakdown);
        let stem = format!("parameters-{}", breakdown.spec.family_name().to_lowercase());
        let b = breakdown.clone();
        export_buttons(
            ui,
            "params",
            &shared.export_dir,
            &stem,
            &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
            |format| export(&b, format),
        );
    }
}

impl ParamsPanel {
    fn source_picker(&mut self, ui: &mut Ui, shared: &Shared) {
        ui.horizontal_wrapped(|ui| {
            ui.label("Loaded:");
            for slot in shared.slots_to_show() {
                let text = match shared.model(slot) {
                    Some(m) => format!("{} ({})", slot.short(), m.name),
                    None => format!("{} (none)", slot.short()),
                };
                ui.selectable_value(&mut self.source, ParamSource::Loaded(slot), text);
            }
        });
        ui.horizontal_wrapped(|ui| {
            ui.label("Presets:");
            for preset in Preset::ALL {
                ui.selectable_value(
                    &mut self.source,
                    ParamSource::Preset(preset),
                    preset.display_name(),
                );
            }
        });
        ui.horizontal(|ui| {
            ui.label("Or:");
            let previous = self.source;
            if ui
                .selectable_value(&mut self.source, ParamSource::Custom, "Custom config")
                .clicked()
                && previous != ParamSource::Custom
            {
                // Start the sliders from what was on screen.
                let spec = match previous {
                    ParamSource::Loaded(slot) => shared.model(slot).map(|m| m.breakdown.spec),
                    ParamSource::Preset(preset) => Some(preset.spec()),
                    ParamSource::Custom => None,
                };
                if let Some(spec) = spec {
                    self.custom = CustomConfig::from_spec(&spec);
                }
            }
        });
    }

    fn custom_sliders(&mut self, ui: &mut Ui) {
        let c = &mut self.custom;
        ui.horizontal(|ui| {
            ui.label("Family:");
            for family in Family::ALL {
                ui.selectable_value(&mut c.family, family, family.label());
            }
        });
        Grid::new("custom_sliders").num_columns(2).show(ui, |ui| {
            ui.add(egui::Slider::new(&mut c.layers, 1..=128).text("Layers (L)"));
            ui.add(
                egui::Slider::new(&mut c.hidden, 16..=16384)
                    .logarithmic(true)
                    .text("Width (H)"),
            );
            ui.end_row();
            ui.add(egui::Slider::new(&mut c.heads, 1..=128).text("Heads"));
            ui.add(
                egui::Slider::new(&mut c.vocab, 64..=262_144)
                    .logarithmic(true)
                    .text("Vocabulary (V)"),
            );
            ui.end_row();
            ui.add(
                egui::Slider::new(&mut c.context, 8..=32_768)
                    .logarithmic(true)
                    .text("Context (P)"),
            );
            ui.horizontal(|ui| {
                ui.checkbox(&mut c.ffn_is_4h, "F = 4·H");
                ui.add_enabled(
                    !c.ffn_is_4h,
                    egui::Slider::new(&mut c.ffn, 16..=65_536)
                        .logarithmic(true)
                        .text("FFN width (F)"),
                );
            });
            ui.end_row();
        });
        if !c.hidden.is_multiple_of(c.heads.max(1)) {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                format!(
                    "Width {} is not divisible by {} heads; a real model needs H = heads × head width.",
                    c.hidden, c.heads
                ),
            );
        }
    }
}

fn totals(ui: &mut Ui, b: &ParamBreakdown) {
    ui.label(RichText::new(&b.name).strong());
    ui.horizontal_wrapped(|ui| {
        ui.label(
            RichText::new(format!(
                "Exact total: {} parameters",
                group_thousands(b.exact_total)
            ))
            .strong()
            .size(18.0),
        );
        ui.separator();
        ui.label(
            RichText::new(format!(
                "Textbook total: {}",
                group_thousands(b.textbook_total)
            ))
            .size(16.0),
        );
        if b.trainable_total != b.exact_total {
            ui.separator();
            ui.label(
                RichText::new(format!(
                    "Trainable: {} (fixed sinusoids not)",
                    group_thousands(b.trainable_total)
                ))
                .size(16.0),
            );
        }
        ui.separator();
        ui.label(format!(
            "Memory (float32, 4 bytes each): {}",
            format_bytes(b.memory_bytes_f32())
        ));
    });
    ui.label(format!("Textbook formula: {}", b.textbook_formula));
    ui.weak(
        "Textbook = weight matrices and embedding tables only (4·H² per attention block, \
         2·H·F per feed-forward block); biases and LayerNorms ignored. Exact = every tensor, \
         tied weights counted once.",
    );
    for note in &b.notes {
        ui.weak(format!("Note: {note}"));
    }
}

fn table(ui: &mut Ui, b: &ParamBreakdown) {
    egui::ScrollArea::horizontal()
        .id_salt("param_table_scroll")
        .show(ui, |ui| {
            Grid::new("param_table")
                .striped(true)
                // A sixth, empty column takes the remaining width, so the right-aligned
                // textbook numbers stay under their header.
                .num_columns(6)
                .show(ui, |ui| {
                    ui.strong("Component");
                    ui.strong("Exact formula");
                    ui.strong("Exact");
                    ui.strong("Textbook formula");
                    ui.strong("Textbook");
                    ui.label("");
                    ui.end_row();
                    for row in &b.rows {
                        ui.label(&row.component);
                        ui.monospace(&row.formula);
                        number(ui, RichText::new(group_thousands(row.exact)).monospace());
                        ui.monospace(&row.textbook_formula);
                        number(ui, RichText::new(group_thousands(row.textbook)).monospace());
                        ui.label("");
                        ui.end_row();
                    }
                    ui.strong("Total");
                    ui.label("");
                    number(ui, RichText::new(group_thousands(b.exact_total)).strong());
                    ui.label("");
                    number(
                        ui,
                        RichText::new(group_thousands(b.textbook_total)).strong(),
                    );
                    ui.label("");
                    ui.end_row();
                });
        });
}

/// A right-aligned number in a grid cell.
fn number(ui: &mut Ui, text: RichText) {
    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
        ui.label(text);
    });
}

const TEXTBOOK_COLOR: Color32 = Color32::from_rgb(90, 150, 220);
const EXACT_COLOR: Color32 = Color32::from_rgb(230, 140, 60);

fn chart(ui: &mut Ui, b: &ParamBreakdown) {
    let groups = b.group_totals();
    let names: Vec<&'static str> = groups.iter().map(|g| g.group.label()).collect();
    let textbook: Vec<Bar> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            Bar::new(i as f64 - 0.18, g.textbook as f64)
                .width(0.34)
                .fill(TEXTBOOK_COLOR)
                .name(format!("{} textbook", g.group.label()))
        })
        .collect();
    let exact: Vec<Bar> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            Bar::new(i as f64 + 0.18, g.exact as f64)
                .width(0.34)
                .fill(EXACT_COLOR)
                .name(format!("{} exact", g.group.label()))
        })
        .collect();
    let names_for_axis = names.clone();
    Plot::new("param_chart")
        .height(220.0)
        .legend(Legend::default())
        .allow_scroll(false)
        .allow_zoom(false)
        .allow_drag(false)
        .x_axis_formatter(move |mark, _range| {
            let i = mark.value.round();
            if (mark.value - i).abs() < 1e-6 && i >= 0.0 {
                names_for_axis
                    .get(i as usize)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_axis_formatter(|mark, _range| short_count(mark.value))
        .show(ui, |plot| {
            plot.bar_chart(
                BarChart::new("Textbook", textbook)
                    .color(TEXTBOOK_COLOR)
                    .element_formatter(Box::new(|bar, _| {
                        format!("{}: {}", bar.name, group_thousands(bar.value as u64))
                    })),
            );
            plot.bar_chart(
                BarChart::new("Exact", exact)
                    .color(EXACT_COLOR)
                    .element_formatter(Box::new(|bar, _| {
                        format!("{}: {}", bar.name, group_thousands(bar.value as u64))
                    })),
            );
        });
}

/// 1.2K, 3.4M, 175B.
fn short_count(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}B", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}K", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn export(b: &ParamBreakdown, format: ExportFormat) -> Result<Vec<u8>, String> {
    match format {
        ExportFormat::Json => serde_json::to_vec_pretty(b).map_err(|e| e.to_string()),
        ExportFormat::Csv => {
            let mut rows: Vec<Vec<String>> = b
                .rows
                .iter()
                .map(|r| {
                    vec![
                        r.component.clone(),
                        r.group.key().to_string(),
                        r.formula.clone(),
                        r.exact.to_string(),
                        r.textbook_formula.clone(),
                        r.textbook.to_string(),
                    ]
                })
                .collect();
            rows.push(vec![
                "total".into(),
                String::new(),
                String::new(),
                b.exact_total.to_string(),
                b.textbook_formula.clone(),
                b.textbook_total.to_string(),
            ]);
            Ok(table_csv(
                &[
                    "component",
                    "group",
                    "exact formula",
                    "exact",
                    "textbook formula",
                    "textbook",
                ],
                &rows,
            )
            .into_bytes())
        }
        ExportFormat::Png => {
            let groups = b.group_totals();
            bars_png(&[
                (
                    TEXTBOOK_COLOR,
                    groups.iter().map(|g| g.textbook as f64).collect(),
                ),
                (EXACT_COLOR, groups.iter().map(|g| g.exact as f64).collect()),
            ])
        }
    }
}
