//! View "Fine-tune": the usual fine-tuning workflow in seven numbered steps — choose a pretrained
//! model, prepare the data (preview with per-row errors), tokenize (lengths and truncation),
//! training arguments, train (live curves), evaluate (metrics, confusion matrix, predictions
//! before and after), save (a Hugging Face folder, and how to share it on the Hub).
//!
//! Nothing heavy runs on the UI thread: the run is a [`crate::train::TrainingRun`] on its own
//! thread, and reading files, tokenizing the data set, loading checkpoints for predictions and
//! copying the saved folder happen on background threads ([`Background`]).

use eframe::egui;
use std::path::{Path, PathBuf};

use egui::{Color32, Grid, RichText, ScrollArea, Ui, Vec2};
use egui_plot::{Bar, BarChart, Legend, Plot, VLine};
use serde::{Deserialize, Serialize};

use super::training::{Background, LiveRun, ProbeViewer, new_run_dir};
use super::{Action, Panel};
use crate::analysis::finetune::{
    Comparison, DataChoice, DataPreview, Example, ModelInfo, TokenStats, compare_before_after,
    read_examples, validation_examples,
};
use crate::app::data::{Matrix, ModelSource};
use crate::app::state::Shared;
use crate::app::widgets::export::{
    ExportFormat, bars_png, export_buttons, heatmap_png, matrix_csv, matrix_json, table_csv,
};
use crate::app::widgets::{ColorScale, FileBrowser, Heatmap, error_label, format_size};
use crate::lessons::ViewName;
use crate::model::params::group_thousands;
use crate::train::config::Objective;
use crate::train::{EvalReport, TrainConfig};

/// The seven steps, in order.
pub const STEPS: [&str; 7] = [
    "1 Choose model",
    "2 Prepare data",
    "3 Tokenize",
    "4 Training arguments",
    "5 Train",
    "6 Evaluate",
    "7 Save",
];

/// Where the pretrained model comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelChoice {
    ShippedBert,
    ShippedGpt,
    /// A local Hugging Face folder.
    Folder,
    /// A checkpoint of a run made here (`runs/…`).
    Checkpoint,
}

/// Everything the form holds (persisted between sessions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FinetuneSettings {
    pub model: ModelChoice,
    pub folder: String,
    pub checkpoint: String,
    pub task: Objective,
    pub data: DataChoice,
    pub builtin_size: usize,
    pub data_path: String,
    /// Tokens per example (the trainer's `training.seq_len`).
    pub max_len: usize,
    pub lr: f64,
    pub batch: usize,
    /// Train for `epochs` passes over the training split (else `steps`).
    pub use_epochs: bool,
    pub epochs: f64,
    pub steps: usize,
    pub warmup: usize,
    pub weight_decay: f64,
    pub val_fraction: f64,
    pub eval_every: usize,
    pub seed: u64,
    pub save_path: String,
    /// Where run folders go (empty: `runs`).
    pub runs_dir: String,
}

impl Default for FinetuneSettings {
    fn default() -> Self {
        Self {
            model: ModelChoice::ShippedBert,
            folder: String::new(),
            checkpoint: String::new(),
            task: Objective::Classification,
            data: DataChoice::BuiltIn,
            builtin_size: 240,
            data_path: String::new(),
            max_len: 48,
            lr: 3e-3,
            batch: 16,
            use_epochs: true,
            epochs: 8.0,
            steps: 120,
            warmup: 10,
            weight_decay: 0.01,
            val_fraction: 0.1,
            eval_every: 20,
            seed: 3,
            save_path: String::new(),
            runs_dir: String::new(),
        }
    }
}

impl FinetuneSettings {
    /// Optimizer steps for `train_examples` training examples.
    pub fn total_steps(&self, train_examples: Option<usize>) -> usize {
        match (self.use_epochs, train_examples) {
            (true, Some(n)) if n > 0 => {
                let per_epoch = n.div_ceil(self.batch.max(1));
                ((self.epochs.max(0.0) * per_epoch as f64).ceil() as usize).max(1)
            }
            _ => self.steps.max(1),
        }
    }

    fn data_key(&self) -> DataKey {
        DataKey {
            task: self.task,
            data: self.data,
            builtin_size: self.builtin_size,
            seed: self.seed,
            path: match self.data {
                DataChoice::BuiltIn => String::new(),
                DataChoice::File => self.data_path.trim().to_string(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DataKey {
    task: Objective,
    data: DataChoice,
    builtin_size: usize,
    seed: u64,
    path: String,
}

/// A fresh run folder under `base` (empty: `runs/`).
fn run_dir(base: &str, prefix: &str) -> PathBuf {
    let fresh = new_run_dir(prefix);
    match (base.trim(), fresh.file_name()) {
        ("", _) | (_, None) => fresh,
        (base, Some(name)) => PathBuf::from(base).join(name),
    }
}

/// The Fine-tune view.
#[derive(Default)]
pub struct FinetunePanel {
    pub settings: FinetuneSettings,
    /// The open step, 0..7.
    pub step: usize,
    browser: FileBrowser,
    picker: FileBrowser,
    model_info: Background<ModelInfo>,
    model_key: Option<PathBuf>,
    checkpoints: Background<Vec<PathBuf>>,
    preview: Background<DataPreview>,
    preview_key: Option<DataKey>,
    tokens: Background<TokenStats>,
    tokens_key: Option<(PathBuf, DataKey)>,
    run: Option<LiveRun>,
    start_error: Option<String>,
    probe_view: ProbeViewer,
    comparison: Background<Vec<Comparison>>,
    /// The run folder the comparison was made for.
    compared: Option<PathBuf>,
    saved: Background<Vec<(PathBuf, u64)>>,
    /// The folder the user agreed to overwrite (it held a model when "Save model" was pressed).
    replace_confirmed: Option<PathBuf>,
}

impl FinetunePanel {
    pub fn run(&self) -> Option<&LiveRun> {
        self.run.as_ref()
    }

    /// The evaluation shown in step 6: the last one of the run.
    pub fn final_eval(&self) -> Option<&EvalReport> {
        self.run.as_ref().and_then(LiveRun::last_eval)
    }

    /// The data set as read in step 2 (once read).
    pub fn preview(&self) -> Option<&DataPreview> {
        self.preview.value()
    }

    /// The before/after predictions of step 6 (once computed).
    pub fn comparisons(&self) -> Option<&Vec<Comparison>> {
        self.comparison.value()
    }

    /// The files step 7 wrote.
    pub fn saved_files(&self) -> Option<&Vec<(PathBuf, u64)>> {
        self.saved.value()
    }

    /// The model folder chosen in step 1.
    pub fn model_dir(&self, shared: &Shared) -> Option<PathBuf> {
        let s = &self.settings;
        let text = |t: &str| Some(PathBuf::from(t.trim())).filter(|_| !t.trim().is_empty());
        match s.model {
            ModelChoice::ShippedBert => shared.shipped.bert.clone(),
            ModelChoice::ShippedGpt => shared.shipped.gpt.clone(),
            ModelChoice::Folder => text(&s.folder),
            ModelChoice::Checkpoint => text(&s.checkpoint),
        }
    }

    /// Keeps the background reads in step with the settings.
    fn refresh(&mut self, ctx: &egui::Context, shared: &Shared) {
        self.model_info.poll();
        self.checkpoints.poll();
        self.preview.poll();
        self.tokens.poll();
        self.comparison.poll();
        self.saved.poll();

        let dir = self.model_dir(shared);
        if dir != self.model_key {
            self.model_key = dir.clone();
            match dir {
                Some(dir) => self
                    .model_info
                    .spawn(ctx, "model-info", move || ModelInfo::read(dir)),
                None => self.model_info.clear(),
            }
        }

        let key = self.settings.data_key();
        if self.preview_key.as_ref() != Some(&key) {
            self.preview_key = Some(key.clone());
            if key.data == DataChoice::File && key.path.is_empty() {
                self.preview.clear();
            } else {
                self.preview.spawn(ctx, "data-preview", move || {
                    read_examples(key.task, key.data, key.builtin_size, key.seed, &key.path)
                });
            }
        }

        // Token lengths need the model's tokenizer and the data.
        if let (Some(info), Some(preview)) = (self.model_info.value(), self.preview.value()) {
            let key = (info.dir.clone(), self.settings.data_key());
            if self.tokens_key.as_ref() != Some(&key) && info.has_tokenizer {
                self.tokens_key = Some(key);
                let dir = info.dir.clone();
                let positions = info.config.max_positions();
                let examples = preview.examples.clone();
                self.tokens.spawn(ctx, "token-lengths", move || {
                    TokenStats::measure(&dir, &examples, positions)
                });
            }
        }
    }

    /// The recipe step 5 runs.
    pub fn config(&self, shared: &Shared) -> Result<TrainConfig, String> {
        let s = &self.settings;
        let dir = self
            .model_dir(shared)
            .ok_or("Step 1: choose a pretrained model first.")?;
        let mut config = TrainConfig {
            objective: s.task,
            seed: s.seed,
            device: shared.device.clone(),
            out_dir: Some(run_dir(&s.runs_dir, &format!("finetune-{}", s.task.name()))),
            ..TrainConfig::default()
        };
        config.model.init_from = Some(dir);
        match s.data {
            DataChoice::BuiltIn => config.data.builtin_size = s.builtin_size.max(2),
            DataChoice::File => {
                if s.data_path.trim().is_empty() {
                    return Err("Step 2: choose a data file (or a built-in data set).".into());
                }
                config.data.path = Some(PathBuf::from(s.data_path.trim()));
            }
        }
        config.data.val_fraction = s.val_fraction;
        config.optimizer.lr = s.lr;
        config.optimizer.warmup_steps = s.warmup;
        config.optimizer.weight_decay = s.weight_decay;
        let train_examples = self.preview.value().map(|p| p.train_count(s.val_fraction));
        let steps = s.total_steps(train_examples);
        config.training.steps = steps;
        config.training.batch_size = s.batch;
        config.training.seq_len = Some(s.max_len.max(4));
        config.training.eval_every = s.eval_every;
        config.training.probe_every = (steps / 20).max(1);
        config.training.probe_tokens = 12;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// Starts step 5's run; false (and the message in the view) when it cannot.
    pub fn start(&mut self, shared: &Shared) -> bool {
        match self.config(shared).and_then(LiveRun::start) {
            Ok(run) => {
                self.run = Some(run);
                self.start_error = None;
                self.comparison.clear();
                self.compared = None;
                self.saved.clear();
                self.probe_view.snapshot = None;
                true
            }
            Err(message) => {
                self.start_error = Some(message);
                false
            }
        }
    }

    pub fn run_mut(&mut self) -> Option<&mut LiveRun> {
        self.run.as_mut()
    }

    /// A lesson's `finetune:` block: fills in the form (starting from `model_dir`, the folder its
    /// `from:` names) and, unless it says `start: no`, starts the run and shows step 5.
    fn start_from_lesson(
        &mut self,
        lesson: &crate::lessons::FinetuneSettings,
        model_dir: &Path,
        shared: &mut Shared,
    ) {
        use crate::lessons::{DataSource, ModelRef, ShippedModel};
        let task = lesson.objective;
        if !task.is_finetuning() {
            shared.error(format!("{} is not a fine-tuning task", task.name()));
            return;
        }
        // The library's own mapping, so the form and `glassbox finetune` agree on the defaults.
        let config = lesson.to_train_config(model_dir.to_path_buf());
        let s = &mut self.settings;
        s.task = task;
        match &lesson.from {
            ModelRef::Shipped(ShippedModel::TinyBert) => s.model = ModelChoice::ShippedBert,
            ModelRef::Shipped(ShippedModel::TinyGpt) => s.model = ModelChoice::ShippedGpt,
            ModelRef::Shipped(
                ShippedModel::TinyTranslator | ShippedModel::TinyBertQa | ShippedModel::MiniLm,
            )
            | ModelRef::Folder(_)
            | ModelRef::Hub(_) => {
                s.model = ModelChoice::Folder;
                s.folder = model_dir.display().to_string();
            }
        }
        match &lesson.data {
            DataSource::Builtin => s.data = DataChoice::BuiltIn,
            DataSource::File(path) => {
                s.data = DataChoice::File;
                s.data_path = path.display().to_string();
            }
        }
        s.use_epochs = false;
        s.steps = config.training.steps;
        s.lr = config.optimizer.lr;
        s.batch = config.training.batch_size;
        s.warmup = config.optimizer.warmup_steps;
        s.eval_every = config.training.eval_every;
        if let Some(seed) = lesson.seed {
            s.seed = seed;
        }
        if !lesson.start {
            return;
        }
        if let Some(run) = self.run.as_mut().filter(|r| r.is_live()) {
            // The lesson asks for a new run: the old one stops (and saves its checkpoint).
            run.stop();
            shared.info("The fine-tuning run in progress was stopped for the new one.");
        }
        if self.start(shared) {
            self.step = 4;
        } else {
            let message = self.start_error.clone().unwrap_or_default();
            shared.error(format!("Cannot start the fine-tuning run: {message}"));
        }
    }

    fn stepper(&mut self, ui: &mut Ui) {
        let done = [
            self.model_info.value().is_some(),
            self.preview.value().is_some_and(|p| !p.examples.is_empty()),
            self.tokens.value().is_some(),
            self.run.is_some(),
            self.run.as_ref().is_some_and(|r| r.summary.is_some()),
            self.comparison.value().is_some(),
            self.saved.value().is_some(),
        ];
        ui.horizontal_wrapped(|ui| {
            for (i, title) in STEPS.iter().enumerate() {
                let mut text = RichText::new(*title);
                if done[i] && i != self.step {
                    text = text.color(Color32::from_rgb(90, 180, 90));
                }
                if ui
                    .add(egui::Button::selectable(i == self.step, text))
                    .on_hover_text(if done[i] { "done" } else { "" })
                    .clicked()
                {
                    self.step = i;
                }
                if i + 1 < STEPS.len() {
                    ui.weak("→");
                }
            }
        });
    }

    fn nav(&mut self, ui: &mut Ui) {
        ui.add_space(8.0);
        ui.horizontal(|ui| {
            if ui
                .add_enabled(self.step > 0, egui::Button::new("Back"))
                .clicked()
            {
                self.step -= 1;
            }
            if ui
                .add_enabled(self.step + 1 < STEPS.len(), egui::Button::new("Next"))
                .clicked()
            {
                self.step += 1;
            }
        });
    }

    // ---- 1 model ------------------------------------------------------------------------------

    fn step_model(&mut self, ui: &mut Ui, shared: &Shared) {
        ui.label(
            "Start from a model that already knows the language; fine-tuning teaches it the task.",
        );
        let s = &mut self.settings;
        let shipped_bert = shared.shipped.bert.clone();
        let shipped_gpt = shared.shipped.gpt.clone();
        let describe = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("not found".to_string(), |p| p.display().to_string())
        };
        let before = s.model;
        ui.radio_value(
            &mut s.model,
            ModelChoice::ShippedBert,
            format!("Shipped tiny BERT ({})", describe(&shipped_bert)),
        );
        ui.radio_value(
            &mut s.model,
            ModelChoice::ShippedGpt,
            format!("Shipped tiny GPT ({})", describe(&shipped_gpt)),
        );
        ui.radio_value(
            &mut s.model,
            ModelChoice::Folder,
            "A local Hugging Face folder",
        );
        if s.model == ModelChoice::Folder {
            ui.horizontal(|ui| {
                let label = ui.label("Model folder");
                ui.add(
                    egui::TextEdit::singleline(&mut s.folder)
                        .hint_text("folder with config.json, model.safetensors, tokenizer.json")
                        .desired_width(420.0),
                )
                .labelled_by(label.id);
                if ui.button("Browse…").clicked() {
                    let start = PathBuf::from(s.folder.trim());
                    self.browser
                        .open_folder("Choose a model folder", Some(&start));
                }
            });
        }
        let s = &mut self.settings;
        ui.radio_value(
            &mut s.model,
            ModelChoice::Checkpoint,
            "A checkpoint of a training run",
        );
        if s.model == ModelChoice::Checkpoint {
            if self.checkpoints.result().is_none() && !self.checkpoints.is_pending() {
                self.checkpoints.spawn(ui.ctx(), "run-checkpoints", || {
                    Ok(crate::app::assets::run_checkpoints())
                });
            }
            ui.indent("checkpoints", |ui| {
                if ui.button("Refresh").clicked() {
                    self.checkpoints.spawn(ui.ctx(), "run-checkpoints", || {
                        Ok(crate::app::assets::run_checkpoints())
                    });
                }
                if let Some(list) = self.checkpoints.status_ui(ui, "looking for checkpoints") {
                    if list.is_empty() {
                        ui.weak("No checkpoints under runs/ yet: train one in the Train view.");
                    }
                    for path in list {
                        let text = path.display().to_string();
                        ui.radio_value(&mut self.settings.checkpoint, text.clone(), text);
                    }
                }
            });
        }
        if self.settings.model != before {
            // A GPT suggests generation; a BERT a BERT task.
            match self.settings.model {
                ModelChoice::ShippedGpt => self.settings.task = Objective::Generation,
                ModelChoice::ShippedBert if self.settings.task == Objective::Generation => {
                    self.settings.task = Objective::Classification;
                }
                _ => {}
            }
        }
        ui.separator();
        if let Some(info) = self.model_info.status_ui(ui, "reading the model's config") {
            let c = &info.config;
            let causal = c.is_causal();
            ui.label(format!(
                "{} · {} · {} layers, width {}, {} heads, {} positions, vocabulary {} · {} parameters",
                c.architecture.hf_name(),
                if causal { "GPT (causal)" } else { "BERT (bidirectional)" },
                crate::model::params::ArchSpec::from(c).layers(),
                crate::model::params::ArchSpec::from(c).hidden(),
                crate::model::params::ArchSpec::from(c).heads(),
                c.max_positions(),
                c.vocab_size(),
                group_thousands(info.parameters)
            ));
            if !info.has_tokenizer {
                error_label(
                    ui,
                    "this folder has no tokenizer.json; fine-tuning needs the model's tokenizer",
                );
            }
            ui.weak(if causal {
                "A GPT fine-tunes on prompt → completion pairs."
            } else {
                "A BERT fine-tunes for text classification or question answering."
            });
        } else if self.model_dir(shared).is_none() {
            ui.weak("Choose a model.");
        }
    }

    // ---- 2 data -------------------------------------------------------------------------------

    fn step_data(&mut self, ui: &mut Ui, shared: &Shared) {
        let causal = self.model_info.value().map(|i| i.config.is_causal());
        let s = &mut self.settings;
        ui.horizontal(|ui| {
            ui.label(RichText::new("Task").strong());
            for task in Objective::finetuning() {
                ui.radio_value(&mut s.task, task, task.label());
            }
        });
        if let Some(causal) = causal
            && causal != s.task.is_causal()
        {
            error_label(
                ui,
                &format!(
                    "{} needs a {} model, but step 1 chose a {}",
                    s.task.label(),
                    if s.task.is_causal() { "GPT" } else { "BERT" },
                    if causal { "GPT" } else { "BERT" }
                ),
            );
        }
        ui.horizontal(|ui| {
            ui.label(RichText::new("Data").strong());
            ui.radio_value(
                &mut s.data,
                DataChoice::BuiltIn,
                format!("Built-in {} set", s.task.builtin_data_name()),
            );
            ui.radio_value(&mut s.data, DataChoice::File, "A file");
        });
        match s.data {
            DataChoice::BuiltIn => {
                ui.horizontal(|ui| {
                    ui.label("examples");
                    ui.add(
                        egui::DragValue::new(&mut s.builtin_size)
                            .range(10..=100_000)
                            .speed(10),
                    );
                    ui.label("seed");
                    ui.add(egui::DragValue::new(&mut s.seed));
                    ui.weak("generated by the library's own code, the same for the same seed");
                });
            }
            DataChoice::File => {
                ui.horizontal(|ui| {
                    let label = ui.label("Data file");
                    ui.add(
                        egui::TextEdit::singleline(&mut s.data_path)
                            .hint_text(s.task.data_file_hint())
                            .desired_width(420.0),
                    )
                    .labelled_by(label.id);
                    if ui.button("Browse…").clicked() {
                        let start = PathBuf::from(s.data_path.trim());
                        self.picker.open_file(
                            "Choose a data file",
                            Some(&start),
                            s.task.data_file_extensions(),
                        );
                    }
                    if ui
                        .button("Reload")
                        .on_hover_text("Read the file again")
                        .clicked()
                    {
                        self.preview_key = None;
                    }
                });
                ui.weak(format!("Expected: {}.", s.task.data_file_hint()));
            }
        }
        ui.separator();
        let Some(preview) = self.preview.status_ui(ui, "reading the data") else {
            return;
        };
        ui.label(format!(
            "{} examples from {}{}",
            preview.examples.len(),
            preview.source,
            if preview.labels.is_empty() {
                String::new()
            } else {
                format!(" · labels: {}", preview.labels.join(", "))
            }
        ));
        let val = preview.examples.len() - preview.train_count(self.settings.val_fraction);
        ui.weak(format!(
            "{} for training, {} held out for validation ({:.0}%, set in step 4)",
            preview.train_count(self.settings.val_fraction),
            val,
            self.settings.val_fraction * 100.0
        ));
        if !preview.errors.is_empty() {
            ui.colored_label(
                ui.visuals().error_fg_color,
                format!(
                    "{} row(s) have errors; the trainer refuses the file until they are fixed:",
                    preview.errors.len()
                ),
            );
            ScrollArea::vertical()
                .id_salt("finetune_errors")
                .max_height(140.0)
                .show(ui, |ui| {
                    Grid::new("finetune_error_grid")
                        .striped(true)
                        .num_columns(3)
                        .show(ui, |ui| {
                            ui.strong("line");
                            ui.strong("column");
                            ui.strong("message");
                            ui.end_row();
                            for error in preview.errors.iter().take(200) {
                                ui.label(error.line.to_string());
                                ui.label(error.column.clone().unwrap_or_else(|| "—".into()));
                                ui.colored_label(ui.visuals().error_fg_color, error.to_string());
                                ui.end_row();
                            }
                        });
                });
            let errors = preview.errors.clone();
            export_buttons(
                ui,
                "finetune-errors",
                &shared.export_dir,
                "finetune-data-errors",
                &[ExportFormat::Csv, ExportFormat::Json],
                |format| {
                    let rows: Vec<Vec<String>> = errors
                        .iter()
                        .map(|e| {
                            vec![
                                e.line.to_string(),
                                e.column.clone().unwrap_or_default(),
                                e.message.clone(),
                            ]
                        })
                        .collect();
                    match format {
                        ExportFormat::Json => {
                            serde_json::to_vec_pretty(&rows).map_err(|e| e.to_string())
                        }
                        _ => Ok(table_csv(&["line", "column", "message"], &rows).into_bytes()),
                    }
                },
            );
        }
        if preview.examples.is_empty() {
            error_label(ui, "no usable examples");
            return;
        }
        ui.add_space(4.0);
        ui.strong("Preview");
        let headers = preview.objective.data_columns();
        ScrollArea::both()
            .id_salt("finetune_preview")
            .max_height(260.0)
            .show(ui, |ui| {
                Grid::new("finetune_preview_grid")
                    .striped(true)
                    .num_columns(headers.len() + 1)
                    .show(ui, |ui| {
                        ui.strong("#");
                        for h in headers {
                            ui.strong(*h);
                        }
                        ui.end_row();
                        for (i, example) in preview.examples.iter().take(100).enumerate() {
                            ui.label((i + 1).to_string());
                            for cell in example.cells() {
                                ui.add(egui::Label::new(cell).truncate())
                                    .on_hover_text_at_pointer("full text in the export");
                            }
                            ui.end_row();
                        }
                    });
            });
        if preview.examples.len() > 100 {
            ui.weak(format!("(first 100 of {} shown)", preview.examples.len()));
        }
        let examples = preview.examples.clone();
        let task = preview.objective;
        export_buttons(
            ui,
            "finetune-data",
            &shared.export_dir,
            "finetune-data",
            &[ExportFormat::Csv, ExportFormat::Json],
            |format| {
                let rows: Vec<Vec<String>> = examples.iter().map(Example::cells).collect();
                match format {
                    ExportFormat::Json => {
                        let objects: Vec<serde_json::Value> = rows
                            .iter()
                            .map(|r| {
                                let map: serde_json::Map<String, serde_json::Value> = task
                                    .data_columns()
                                    .iter()
                                    .zip(r)
                                    .map(|(h, v)| {
                                        (h.to_string(), serde_json::Value::from(v.clone()))
                                    })
                                    .collect();
                                serde_json::Value::Object(map)
                            })
                            .collect();
                        serde_json::to_vec_pretty(&objects).map_err(|e| e.to_string())
                    }
                    _ => Ok(table_csv(task.data_columns(), &rows).into_bytes()),
                }
            },
        );
    }

    // ---- 3 tokenize ---------------------------------------------------------------------------

    fn step_tokenize(&mut self, ui: &mut Ui, shared: &Shared) {
        ui.label(
            "Every example becomes token ids with the model's own tokenizer. Longer examples are \
             cut to the maximum length; shorter ones are padded in the batch.",
        );
        let positions = self.model_info.value().map(|i| i.config.max_positions());
        ui.horizontal(|ui| {
            let label = ui.label("Maximum length (tokens)");
            let max = positions.unwrap_or(4096).max(4);
            ui.add(egui::DragValue::new(&mut self.settings.max_len).range(4..=max))
                .labelled_by(label.id);
            if let Some(p) = positions {
                ui.weak(format!("the model reads at most {p} positions"));
            }
        });
        if self.model_info.value().is_none() {
            ui.weak("Step 1: choose a model first (its tokenizer is used).");
            return;
        }
        if self.preview.value().is_none() {
            ui.weak("Step 2: prepare the data first.");
            return;
        }
        let max_len = self.settings.max_len;
        let Some(stats) = self.tokens.status_ui(ui, "tokenizing the examples") else {
            return;
        };
        let n = stats.lengths.len();
        let truncated = stats.truncated(max_len);
        let longest = stats.lengths.iter().copied().max().unwrap_or(0);
        let mean = stats.lengths.iter().sum::<usize>() as f64 / n.max(1) as f64;
        ui.label(
            RichText::new(format!(
                "{truncated} of {n} examples are longer than {max_len} tokens and get truncated"
            ))
            .strong(),
        );
        ui.weak(format!(
            "lengths: mean {mean:.1}, longest {longest} tokens · tokenizer {} · special tokens included",
            stats.tokenizer
        ));
        let width = (longest / 40).max(1);
        let bins = stats.histogram(width);
        Plot::new("finetune_token_hist")
            .height(200.0)
            .legend(Legend::default())
            .allow_scroll(false)
            .x_axis_label("tokens per example")
            .y_axis_label("examples")
            .show(ui, |plot| {
                let (kept, cut): (Vec<Bar>, Vec<Bar>) = bins
                    .iter()
                    .map(|&(start, count)| {
                        Bar::new(start as f64 + width as f64 / 2.0, count as f64)
                            .width(width as f64 * 0.9)
                    })
                    .partition(|b| b.argument - width as f64 / 2.0 < max_len as f64);
                plot.bar_chart(BarChart::new("fits", kept).color(Color32::from_rgb(70, 150, 230)));
                if !cut.is_empty() {
                    plot.bar_chart(
                        BarChart::new("truncated", cut).color(Color32::from_rgb(230, 90, 70)),
                    );
                }
                plot.vline(VLine::new("maximum length", max_len as f64).color(Color32::GRAY));
            });
        let lengths = stats.lengths.clone();
        export_buttons(
            ui,
            "finetune-lengths",
            &shared.export_dir,
            "finetune-token-lengths",
            &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
            |format| match format {
                ExportFormat::Png => bars_png(&[(
                    Color32::from_rgb(70, 150, 230),
                    bins.iter().map(|&(_, c)| c as f64).collect(),
                )]),
                ExportFormat::Csv => {
                    let rows: Vec<Vec<String>> = lengths
                        .iter()
                        .enumerate()
                        .map(|(i, l)| {
                            vec![
                                (i + 1).to_string(),
                                l.to_string(),
                                (*l > max_len).to_string(),
                            ]
                        })
                        .collect();
                    Ok(table_csv(&["example", "tokens", "truncated"], &rows).into_bytes())
                }
                ExportFormat::Json => serde_json::to_vec_pretty(&serde_json::json!({
                    "max_len": max_len,
                    "lengths": lengths,
                    "histogram": bins,
                }))
                .map_err(|e| e.to_string()),
            },
        );
    }

    // ---- 4 arguments --------------------------------------------------------------------------

    fn step_arguments(&mut self, ui: &mut Ui) {
        let train_examples = self
            .preview
            .value()
            .map(|p| p.train_count(self.settings.val_fraction));
        let s = &mut self.settings;
        Grid::new("finetune_args")
            .num_columns(2)
            .spacing([12.0, 6.0])
            .show(ui, |ui| {
                ui.label("learning rate");
                ui.add(
                    egui::DragValue::new(&mut s.lr)
                        .range(1e-7..=1.0)
                        .speed(1e-4)
                        .custom_formatter(|v, _| format!("{v:.1e}"))
                        .custom_parser(|t| t.trim().parse::<f64>().ok()),
                );
                ui.end_row();
                ui.label("batch size");
                ui.add(egui::DragValue::new(&mut s.batch).range(1..=512));
                ui.end_row();
                ui.label("length of training");
                ui.horizontal(|ui| {
                    ui.radio_value(&mut s.use_epochs, true, "epochs");
                    ui.add_enabled(
                        s.use_epochs,
                        egui::DragValue::new(&mut s.epochs)
                            .range(0.1..=1000.0)
                            .speed(0.1),
                    );
                    ui.radio_value(&mut s.use_epochs, false, "steps");
                    ui.add_enabled(
                        !s.use_epochs,
                        egui::DragValue::new(&mut s.steps)
                            .range(1..=1_000_000)
                            .speed(5),
                    );
                });
                ui.end_row();
                ui.label("warm-up steps");
                ui.add(egui::DragValue::new(&mut s.warmup).range(0..=100_000));
                ui.end_row();
                ui.label("weight decay");
                ui.add(
                    egui::DragValue::new(&mut s.weight_decay)
                        .range(0.0..=1.0)
                        .speed(0.005),
                );
                ui.end_row();
                ui.label("validation split");
                ui.add(
                    egui::Slider::new(&mut s.val_fraction, 0.05..=0.5)
                        .custom_formatter(|v, _| format!("{:.0}%", v * 100.0))
                        .custom_parser(|t| {
                            t.trim()
                                .trim_end_matches('%')
                                .parse::<f64>()
                                .ok()
                                .map(|v| v / 100.0)
                        }),
                );
                ui.end_row();
                ui.label("evaluate every");
                ui.add(egui::DragValue::new(&mut s.eval_every).range(0..=100_000))
                    .on_hover_text(
                        "Steps between evaluations on the validation split (0: only at the end)",
                    );
                ui.end_row();
                ui.label("seed");
                ui.add(egui::DragValue::new(&mut s.seed));
                ui.end_row();
            });
        let steps = s.total_steps(train_examples);
        match (s.use_epochs, train_examples) {
            (true, Some(n)) => {
                ui.label(format!(
                    "{:.1} epochs × ⌈{n} examples / batch {}⌉ = {steps} optimizer steps",
                    s.epochs, s.batch
                ));
            }
            (true, None) => {
                ui.weak("Prepare the data (step 2) to turn epochs into steps.");
            }
            _ => {
                ui.label(format!("{steps} optimizer steps"));
            }
        }
        ui.weak(
            "AdamW with decoupled weight decay on matrices, linear warm-up then cosine decay to lr/10, \
             gradients clipped at norm 1.",
        );
    }

    // ---- 5 train ------------------------------------------------------------------------------

    fn step_train(&mut self, ui: &mut Ui, shared: &Shared) {
        let live = self.run.as_ref().is_some_and(LiveRun::is_live);
        if let Some(preview) = self.preview.value()
            && !preview.errors.is_empty()
        {
            error_label(
                ui,
                &format!(
                    "the data file has {} bad row(s) (step 2); fix them before training",
                    preview.errors.len()
                ),
            );
        }
        ui.horizontal(|ui| {
            if ui
                .add_enabled(
                    !live,
                    egui::Button::new(RichText::new("Start fine-tuning").strong()),
                )
                .clicked()
            {
                self.start(shared);
            }
            match self.config(shared) {
                Ok(config) => {
                    ui.weak(format!(
                        "{} from {} · {} steps · batch {} · lr {:.1e}",
                        config.objective.name(),
                        config
                            .model
                            .init_from
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                        config.training.steps,
                        config.training.batch_size,
                        config.optimizer.lr
                    ));
                }
                Err(message) if !live => error_label(ui, &message),
                Err(_) => {}
            }
        });
        if let Some(message) = &self.start_error {
            error_label(ui, message);
        }
        let Some(run) = self.run.as_mut() else {
            return;
        };
        run.controls(ui);
        run.status(ui);
        if run.summary.is_some() {
            ui.label(RichText::new("Done — go on to 6 Evaluate.").strong());
        }
        ui.separator();
        run.curves.show(ui, "finetune", &shared.export_dir);
        let causal = run.config.objective.is_causal();
        egui::CollapsingHeader::new("Attention of the probe text while it learns")
            .id_salt("finetune_probe")
            .show(ui, |ui| {
                self.probe_view
                    .show(ui, &run.probes, causal, &shared.export_dir, "finetune");
            });
    }

    // ---- 6 evaluate ---------------------------------------------------------------------------

    fn step_evaluate(&mut self, ui: &mut Ui, shared: &Shared) {
        let Some(run) = self.run.as_ref() else {
            ui.weak("Step 5: train first.");
            return;
        };
        if run.is_live() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!(
                    "Training… step {} of {}; the final evaluation comes at the end.",
                    run.step(),
                    run.total_steps()
                ));
            });
        }
        if let Some(failure) = &run.failure {
            error_label(ui, &failure.message);
        }
        let Some(after) = run.last_eval().cloned() else {
            ui.weak("No evaluation yet.");
            return;
        };
        let before = run.first_eval().filter(|b| b.step != after.step).cloned();
        let objective = run.config.objective;
        ui.heading(format!("Validation metrics at step {}", after.step));
        let names: Vec<(&str, &str)> = match objective {
            Objective::Classification => vec![("accuracy", "Accuracy"), ("macro_f1", "Macro F1")],
            Objective::Qa => vec![("exact_match", "Exact match"), ("f1", "F1")],
            _ => vec![("perplexity", "Perplexity")],
        };
        for (key, title) in &names {
            if let Some(value) = after.metrics.get(*key) {
                ui.label(
                    RichText::new(format!("{title}: {value:.4}"))
                        .size(18.0)
                        .strong(),
                )
                .on_hover_text(format!("{key} = {value}"));
            }
        }
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut table = vec![(
            "validation loss".to_string(),
            before.as_ref().map(|b| f64::from(b.val_loss)),
            f64::from(after.val_loss),
        )];
        for (key, value) in &after.metrics {
            table.push((
                key.clone(),
                before.as_ref().and_then(|b| b.metrics.get(key).copied()),
                *value,
            ));
        }
        Grid::new("finetune_metrics")
            .striped(true)
            .num_columns(3)
            .show(ui, |ui| {
                ui.strong("metric");
                ui.strong("before (step 0)");
                ui.strong(format!("after (step {})", after.step));
                ui.end_row();
                for (name, b, a) in &table {
                    ui.label(name);
                    ui.label(b.map_or("—".to_string(), |v| format!("{v:.4}")));
                    ui.label(format!("{a:.4}"));
                    ui.end_row();
                    rows.push(vec![
                        name.clone(),
                        b.map(|v| v.to_string()).unwrap_or_default(),
                        a.to_string(),
                    ]);
                }
            });
        export_buttons(
            ui,
            "finetune-metrics",
            &shared.export_dir,
            "finetune-metrics",
            &[ExportFormat::Csv, ExportFormat::Json],
            |format| match format {
                ExportFormat::Json => serde_json::to_vec_pretty(&serde_json::json!({
                    "before": before,
                    "after": after,
                }))
                .map_err(|e| e.to_string()),
                _ => Ok(table_csv(&["metric", "before", "after"], &rows).into_bytes()),
            },
        );

        if let Some(confusion) = &after.confusion {
            ui.separator();
            ui.heading("Confusion matrix");
            ui.weak("Rows: the true label; columns: the predicted label; the diagonal is right.");
            let n = confusion.labels.len();
            let data: Vec<f32> = confusion
                .counts
                .iter()
                .flatten()
                .map(|&c| c as f32)
                .collect();
            let matrix = Matrix::new(n, n, data);
            let max = matrix.range().1.max(1.0);
            let scale = ColorScale::fit((0.0, max));
            Heatmap::new(&matrix, "confusion matrix")
                .row_labels(&confusion.labels)
                .col_labels(&confusion.labels)
                .scale(scale)
                .axis_titles("true", "predicted")
                .show_values(true)
                .max_cell(72.0)
                .max_size(Vec2::new(ui.available_width().min(460.0), 360.0))
                .show(ui);
            let labels = confusion.labels.clone();
            export_buttons(
                ui,
                "finetune-confusion",
                &shared.export_dir,
                "finetune-confusion",
                &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
                |format| match format {
                    ExportFormat::Png => heatmap_png(&matrix, None, scale),
                    ExportFormat::Csv => Ok(matrix_csv(&matrix, &labels, &labels).into_bytes()),
                    ExportFormat::Json => matrix_json(
                        &matrix,
                        &labels,
                        &labels,
                        serde_json::json!({"rows": "true label", "cols": "predicted label"}),
                    ),
                },
            );
        }

        ui.separator();
        ui.heading("Before vs after on validation examples");
        self.comparison_view(ui, shared);
    }

    fn comparison_view(&mut self, ui: &mut Ui, shared: &Shared) {
        let Some(run) = self.run.as_ref() else {
            return;
        };
        let Some(checkpoint) = run.checkpoint().cloned() else {
            if run.is_live() {
                ui.weak("The predictions are compared once the run has saved its model.");
            } else {
                ui.weak("The run saved no checkpoint to compare with.");
            }
            return;
        };
        if run.is_live() {
            ui.weak("Waiting for the end of the run.");
            return;
        }
        let run_dir = run
            .config
            .out_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs"));
        let wanted = self.compared.as_ref() != Some(&run_dir);
        if wanted && !self.comparison.is_pending() {
            let config = run.config.clone();
            let examples = self.held_out(&config, 8);
            match examples {
                Ok(examples) => {
                    let before_dir = run_dir.join("before");
                    self.comparison.spawn(ui.ctx(), "before-after", move || {
                        compare_before_after(&config, &before_dir, &checkpoint, &examples)
                    });
                }
                Err(message) => error_label(ui, &message),
            }
            self.compared = Some(run_dir);
        }
        ui.weak(
            "\"Before\" is the starting model with its new, untrained head (seeded like the run); \
             \"after\" is the saved checkpoint. Both run on a background thread.",
        );
        let Some(rows) = self
            .comparison
            .status_ui(ui, "running both models on the examples")
        else {
            return;
        };
        Grid::new("finetune_compare")
            .striped(true)
            .num_columns(4)
            .show(ui, |ui| {
                ui.strong("input");
                ui.strong("expected");
                ui.strong("before");
                ui.strong("after");
                ui.end_row();
                for row in rows {
                    ui.add(egui::Label::new(&row.input).truncate());
                    ui.label(&row.expected);
                    ui.label(&row.before);
                    let right = row.after.trim().starts_with(row.expected.trim())
                        && !row.expected.trim().is_empty();
                    let color = if right {
                        Color32::from_rgb(90, 180, 90)
                    } else {
                        ui.visuals().text_color()
                    };
                    ui.colored_label(color, &row.after);
                    ui.end_row();
                }
            });
        let rows = rows.clone();
        export_buttons(
            ui,
            "finetune-compare",
            &shared.export_dir,
            "finetune-before-after",
            &[ExportFormat::Csv, ExportFormat::Json],
            |format| {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.input.clone(),
                            r.expected.clone(),
                            r.before.clone(),
                            r.after.clone(),
                        ]
                    })
                    .collect();
                match format {
                    ExportFormat::Json => {
                        serde_json::to_vec_pretty(&table).map_err(|e| e.to_string())
                    }
                    _ => {
                        Ok(table_csv(&["input", "expected", "before", "after"], &table)
                            .into_bytes())
                    }
                }
            },
        );
    }

    /// The first `n` examples of the validation split the run held out (the same split the
    /// trainer made: same data, fraction and seed).
    fn held_out(&self, config: &TrainConfig, n: usize) -> Result<Vec<Example>, String> {
        let preview = self
            .preview
            .value()
            .ok_or("the data set is not read yet (step 2)")?;
        Ok(validation_examples(&preview.examples, config, n))
    }

    // ---- 7 save -------------------------------------------------------------------------------

    fn step_save(&mut self, ui: &mut Ui, shared: &mut Shared) {
        let checkpoint = self.run.as_ref().and_then(|r| r.checkpoint().cloned());
        let Some(checkpoint) = checkpoint else {
            ui.weak(
                "Step 5: train (and let the run finish) first; its checkpoint is what is saved.",
            );
            return;
        };
        if self.run.as_ref().is_some_and(LiveRun::is_live) {
            ui.weak("The run is still going; saving now writes its latest checkpoint.");
        }
        ui.label(format!("Checkpoint of the run: {}", checkpoint.display()));
        if self.settings.save_path.trim().is_empty() {
            self.settings.save_path = format!("exports/finetuned-{}", self.settings.task.name());
        }
        ui.horizontal(|ui| {
            let label = ui.label("Save to folder");
            ui.add(egui::TextEdit::singleline(&mut self.settings.save_path).desired_width(420.0))
                .labelled_by(label.id);
            let target = PathBuf::from(self.settings.save_path.trim());
            let confirmed = self.replace_confirmed.as_ref() == Some(&target);
            let label = if confirmed {
                "Replace the model there"
            } else {
                "Save model"
            };
            if ui
                .add_enabled(!self.saved.is_pending(), egui::Button::new(label))
                .on_hover_text("Write config.json, model.safetensors and the tokenizer files")
                .clicked()
            {
                // A folder that already holds a model is replaced only when asked twice.
                if !confirmed && !crate::train::export_conflicts(&target).is_empty() {
                    self.replace_confirmed = Some(target);
                } else {
                    self.replace_confirmed = None;
                    let from = checkpoint.clone();
                    self.saved.spawn(ui.ctx(), "save-model", move || {
                        crate::train::export_checkpoint(&from, &target, confirmed)
                            .map(|files| {
                                files
                                    .into_iter()
                                    .map(|(path, size)| (path.canonicalize().unwrap_or(path), size))
                                    .collect()
                            })
                            .map_err(|e| e.to_string())
                    });
                }
            }
        });
        if let Some(target) = &self.replace_confirmed {
            if target.as_os_str() == self.settings.save_path.trim() {
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    format!(
                        "{} already holds a model: \"Replace the model there\" overwrites it, or \
                         choose another folder.",
                        target.display()
                    ),
                );
            } else {
                self.replace_confirmed = None;
            }
        }
        if let Some(files) = self.saved.status_ui(ui, "writing the folder") {
            ui.label(RichText::new("Files written:").strong());
            for (path, size) in files {
                ui.label(format!("{}  ({})", path.display(), format_size(*size)));
            }
            let folder = files
                .first()
                .and_then(|(p, _)| p.parent())
                .map(Path::to_path_buf);
            if let Some(folder) = folder
                && ui
                    .button("Open it in the Model view")
                    .on_hover_text("Load the fine-tuned model and look inside it")
                    .clicked()
            {
                shared.load_model(ModelSource::Folder(folder));
                shared.requested_view = Some(ViewName::Model);
            }
        }
        ui.separator();
        ui.label(RichText::new("Share it on the Hugging Face Hub").strong());
        let folder = self.settings.save_path.trim().to_string();
        ui.label(
            "The folder is a standard Hugging Face model folder: `transformers` loads it with \
             from_pretrained(folder). To publish it, log in once (`huggingface-cli login`, with a \
             write token from huggingface.co/settings/tokens), then upload the folder:",
        );
        ui.add(
            egui::Label::new(
                RichText::new(format!("huggingface-cli upload <user>/<repo> {folder}")).monospace(),
            )
            .selectable(true),
        );
        ui.label("or from Python:");
        ui.add(
            egui::Label::new(
                RichText::new(format!(
                    "from huggingface_hub import HfApi\nHfApi().create_repo(\"<user>/<repo>\", exist_ok=True)\nHfApi().upload_folder(folder_path=\"{folder}\", repo_id=\"<user>/<repo>\")"
                ))
                .monospace(),
            )
            .selectable(true),
        );
        ui.weak("Glassbox itself never uploads anything; these commands run outside the app.");
    }
}

impl Panel for FinetunePanel {
    fn view(&self) -> ViewName {
        ViewName::Finetune
    }

    fn hint(&self) -> &'static str {
        "Fine-tune a pretrained model on your own data in seven steps"
    }

    fn ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        let frame = self.run.as_mut().and_then(|r| r.begin_frame(ui));
        ui.heading("Fine-tune");
        self.refresh(ui.ctx(), shared);
        if let Some(dir) = self.browser.show(ui.ctx()) {
            self.settings.folder = dir.display().to_string();
            self.settings.model = ModelChoice::Folder;
        }
        if let Some(file) = self.picker.show(ui.ctx()) {
            self.settings.data_path = file.display().to_string();
            self.settings.data = DataChoice::File;
        }
        self.stepper(ui);
        ui.separator();
        self.step = self.step.min(STEPS.len() - 1);
        ui.heading(STEPS[self.step]);
        match self.step {
            0 => self.step_model(ui, shared),
            1 => self.step_data(ui, shared),
            2 => self.step_tokenize(ui, shared),
            3 => self.step_arguments(ui),
            4 => self.step_train(ui, shared),
            5 => self.step_evaluate(ui, shared),
            _ => self.step_save(ui, shared),
        }
        self.nav(ui);
        if let Some(run) = self.run.as_mut() {
            run.end_frame(frame);
            if let Some(speed) = run.measured_speed() {
                shared.measured_run = Some(speed);
            }
        }
    }

    fn apply(&mut self, action: &Action, shared: &mut Shared) {
        match action {
            Action::StartFinetune {
                settings,
                model_dir,
            } => self.start_from_lesson(settings, model_dir, shared),
            Action::ShowFinetuneStep(step) => self.step = step.number() - 1,
            _ => {}
        }
    }

    fn save_state(&self) -> Option<serde_json::Value> {
        serde_json::to_value(&self.settings).ok()
    }

    fn load_state(&mut self, state: serde_json::Value) {
        if let Ok(settings) = serde_json::from_value::<FinetuneSettings>(state) {
            self.settings = settings;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_become_steps() {
        let settings = FinetuneSettings {
            epochs: 2.0,
            batch: 16,
            ..FinetuneSettings::default()
        };
        assert_eq!(settings.total_steps(Some(216)), 2 * 14);
        let by_steps = FinetuneSettings {
            use_epochs: false,
            steps: 7,
            ..FinetuneSettings::default()
        };
        assert_eq!(by_steps.total_steps(Some(216)), 7);
    }
}
