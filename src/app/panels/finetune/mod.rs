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

mod prepare;
mod results;

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
