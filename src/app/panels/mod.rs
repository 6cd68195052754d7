//! The views. Each is a struct with its own state implementing [`Panel`]; [`all`] lists them in
//! the order of the side bar. See the docs of [`crate::app`] for how to add one.

pub mod attention;
pub mod embeddings;
pub mod encoder_decoder;
pub mod finetune;
pub mod lessons;
pub mod model;
pub mod params;
pub mod predict;
pub mod step_through;
pub mod tokens;
pub mod train;
pub mod training;
pub mod translate;

use std::any::Any;

use eframe::egui;
use egui::Ui;

use super::data::{ModelSource, Slot};
use super::state::Shared;
use crate::lessons::{ComputeInputs, FinetuneSettings, FinetuneStep, Sampling, TrainingSettings};
use crate::lessons::{Stage, ViewName};
use crate::model::params::{ArchSpec, Preset};

/// Something a lesson, a test or another panel asks the app to do. The shell handles the
/// general ones (text, view, model, theme) and offers every action to every panel, so a panel
/// reacts to the ones that concern it (see [`Panel::apply`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Replace the shared text.
    SetText(String),
    /// Set (or clear) BERT's second segment.
    SetPair(Option<String>),
    /// Open a view.
    OpenView(ViewName),
    /// Load a model (it goes to the slot of its family).
    LoadModel(ModelSource),
    /// Load the shipped tiny model of a slot.
    LoadShipped(Slot),
    /// Attention view: show `layer`, `head` (`None` = mean over heads), for `slot` or both.
    SelectLayerHead {
        slot: Option<Slot>,
        layer: usize,
        head: Option<usize>,
    },
    /// Attention view: select a token (its row and column are highlighted) in `slot`'s map.
    SelectToken {
        slot: Slot,
        index: Option<usize>,
    },
    /// Parameter view: show a preset.
    SelectPreset(Preset),
    /// Parameter view: show the loaded model of a slot.
    SelectLoadedParams(Slot),
    /// Parameter view: show a configuration of one's own.
    SetCustomConfig(ArchSpec),
    /// Embeddings view: compare `word` in two sentences, layer by layer.
    CompareWord {
        word: String,
        sentence_a: String,
        sentence_b: String,
    },
    /// Predict view (BERT fill-mask): replace token `index` of the current text by the mask
    /// token, as a click on the token does.
    MaskToken {
        index: usize,
    },
    /// Step-through view: go to `stage` (in `layer`, for head `head`, in an encoder–decoder's
    /// encoder if `encoder`) of `slot`'s forward pass; `None` keeps what the view shows.
    StepThrough {
        slot: Option<Slot>,
        stage: Stage,
        layer: Option<usize>,
        head: Option<usize>,
        encoder: Option<bool>,
    },
    /// Predict view (GPT): sampling settings; `None` keeps a setting.
    SetSampling(Sampling),
    /// Predict view (GPT): sample this many tokens after the text.
    Generate(usize),
    /// Translate view: show decoder step `n` (1-based).
    ShowTranslationStep(usize),
    /// Predict and Tokens views: show this model (GPT's next token or BERT's fill-mask, its
    /// tokenizer).
    ShowSide(Slot),
    /// Predict view (BERT): extractive question answering, the current text as the context.
    AskQuestion(String),
    /// Train view: fill in the form, and start the run unless `start` is off.
    StartTraining(TrainingSettings),
    /// Fine-tune view: fill in the form from `model_dir`, and start unless `start` is off.
    StartFinetune {
        settings: FinetuneSettings,
        model_dir: std::path::PathBuf,
    },
    /// Fine-tune view: show one of the seven steps.
    ShowFinetuneStep(FinetuneStep),
    /// Lessons view: the compute calculator, filled in.
    ShowCalculator(ComputeInputs),
    SetDarkTheme(bool),
    SetLargeText(bool),
}

impl Action {
    /// The view an action shows its result in (the shell opens it).
    pub fn view(&self) -> Option<ViewName> {
        Some(match self {
            Action::SelectLayerHead { .. } => ViewName::Attention,
            Action::SelectPreset(_)
            | Action::SelectLoadedParams(_)
            | Action::SetCustomConfig(_) => ViewName::Parameters,
            Action::CompareWord { .. } => ViewName::Embeddings,
            Action::MaskToken { .. }
            | Action::SetSampling(_)
            | Action::Generate(_)
            | Action::AskQuestion(_) => ViewName::Predict,
            Action::StepThrough { .. } => ViewName::StepThrough,
            Action::ShowTranslationStep(_) => ViewName::Translate,
            Action::StartTraining(_) => ViewName::Train,
            Action::StartFinetune { .. } | Action::ShowFinetuneStep(_) => ViewName::Finetune,
            Action::ShowCalculator(_) => ViewName::Lessons,
            Action::SetText(_)
            | Action::SetPair(_)
            | Action::OpenView(_)
            | Action::LoadModel(_)
            | Action::LoadShipped(_)
            | Action::SelectToken { .. }
            | Action::ShowSide(_)
            | Action::SetDarkTheme(_)
            | Action::SetLargeText(_) => return None,
        })
    }
}

/// [`Panel::save_state`] and [`Panel::load_state`] for a view that serializes itself: its
/// settings are its fields, its runtime state is `#[serde(skip)]`. Given a function, a loaded
/// state passes through it (to bound what a hand-edited file may hold).
macro_rules! saved_as_itself {
    () => {
        $crate::app::panels::saved_as_itself!(std::convert::identity);
    };
    ($checked:expr) => {
        fn save_state(&self) -> Option<serde_json::Value> {
            serde_json::to_value(self).ok()
        }

        fn load_state(&mut self, state: serde_json::Value) {
            if let Ok(saved) = serde_json::from_value::<Self>(state) {
                *self = ($checked)(saved);
            }
        }
    };
}
pub(crate) use saved_as_itself;

/// A view of the app.
///
/// `Any` lets the shell hand out typed access (`GlassboxApp::panel_mut::<AttentionPanel>()`).
pub trait Panel: Any {
    /// Which view this is: its id (persisted as the last view, `GLASSBOX_VIEW`) and its side
    /// bar label (also the accessible name of its button) come from [`ViewName`].
    fn view(&self) -> ViewName;
    fn id(&self) -> &'static str {
        self.view().id()
    }
    fn title(&self) -> &'static str {
        self.view().title()
    }
    /// One line shown when hovering the side bar button.
    fn hint(&self) -> &'static str {
        ""
    }
    /// Draws the view into the central area.
    fn ui(&mut self, ui: &mut Ui, shared: &mut Shared);
    /// Reacts to an action (default: ignores it).
    fn apply(&mut self, _action: &Action, _shared: &mut Shared) {}
    /// Settings to persist between runs (default: none).
    fn save_state(&self) -> Option<serde_json::Value> {
        None
    }
    /// Restores what [`Panel::save_state`] returned.
    fn load_state(&mut self, _state: serde_json::Value) {}
}

/// Every view, in side bar order. Adding a panel: one line here.
pub fn all() -> Vec<Box<dyn Panel>> {
    vec![
        Box::new(lessons::LessonsPanel::default()),
        Box::new(model::ModelPanel::default()),
        Box::new(tokens::TokensPanel::default()),
        Box::new(embeddings::EmbeddingsPanel::default()),
        Box::new(attention::AttentionPanel::default()),
        Box::new(step_through::StepThroughPanel::default()),
        Box::new(predict::PredictPanel::default()),
        Box::new(translate::TranslatePanel::default()),
        Box::new(params::ParamsPanel::default()),
        Box::new(train::TrainPanel::default()),
        Box::new(finetune::FinetunePanel::default()),
    ]
}
