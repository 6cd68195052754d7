//! "Try it" buttons: what a lesson asks the app to do, as plain data.
//!
//! A lesson's ```` ```try ```` block becomes an [`Action`]: a label and a list of
//! [`ActionCommand`]s, run in order when the button is clicked. Everything a command names (view,
//! preset, model, stage, objective) is checked when the lesson is parsed, so a typo is a parse
//! error with a line number rather than a button that does nothing.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::compute::Hardware;
use crate::model::params::{ArchSpec, Preset};
use crate::train::config::{Objective, TokenizerKindChoice, TrainConfig};

/// A "try it" button.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// The button text.
    pub label: String,
    /// Run in this order.
    pub commands: Vec<ActionCommand>,
    /// The line of the opening fence in the lesson file.
    pub line: usize,
}

/// One thing an action does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ActionCommand {
    /// `load:` — load a model; it goes to the GPT (causal) or BERT (bidirectional) side by family.
    LoadModel(ModelRef),
    /// `text:` — replace the text every view works on.
    SetText(String),
    /// `pair:` — BERT's second segment (sentence B); `None` (`pair: none`) switches pairs off.
    SetPair(Option<String>),
    /// `view:` — open a view.
    OpenView(ViewName),
    /// `layer:` (+ `head:`) — the attention view's layer and head (`None` = mean over heads),
    /// numbered from 0 as the app shows them; `side:` picks one side, otherwise both.
    SelectLayerHead {
        side: Option<Side>,
        layer: usize,
        head: Option<usize>,
    },
    /// `token:` — select (highlight) a token in the attention view.
    SelectToken { side: Option<Side>, token: TokenRef },
    /// `word:` + `sentence-a:` + `sentence-b:` — the Embeddings view compares the same word in
    /// two sentences, layer by layer.
    CompareWord {
        word: String,
        sentence_a: String,
        sentence_b: String,
    },
    /// `mask:` — replace a token of the text by `[MASK]` in BERT's fill-mask (Predict view).
    MaskToken(TokenRef),
    /// `preset:` — the parameter view shows a preset.
    SelectPreset(Preset),
    /// `preset: loaded-gpt` / `loaded-bert` — the parameter view shows a loaded model.
    SelectLoadedParams(Side),
    /// `custom:` — the parameter view shows a custom configuration.
    SetCustomConfig(ArchSpec),
    /// `stage:` — the step-through view jumps to a stage of the forward pass (of one side with
    /// `side:`; with `layer:`, in that layer).
    StepThrough { side: Option<Side>, stage: Stage },
    /// `temperature:`, `top-k:`, `top-p:` — the Predict view's sampling settings.
    SetSampling(Sampling),
    /// `generate:` — generate this many tokens after the text (GPT, Predict view).
    Generate(usize),
    /// `qa:` — extractive question answering: the question, answered from the text (BERT).
    AskQuestion(String),
    /// `step:` — the Translate view shows decoder step `n` (1-based).
    TranslationStep(usize),
    /// Which model the Predict and Tokens views show: `side:` on a button that opens one of them,
    /// or what its other lines imply (`mask:`, `qa:`, `pair:` → BERT; `generate:`, sampling →
    /// GPT; else the side of a shipped model it loads). Added by the parser, so that a button
    /// never shows what an earlier button left.
    ShowSide(Side),
    /// `train:` (+ settings) — set up, and unless `start: no`, start a pretraining run.
    StartTraining(TrainingSettings),
    /// `finetune:` (+ settings) — set up, and unless `start: no`, start a fine-tuning run.
    StartFinetune(FinetuneSettings),
    /// `finetune-step:` — the fine-tune view's workflow at one of its seven steps.
    ShowFinetuneStep(FinetuneStep),
    /// `compute:` — the compute calculator, filled in.
    ShowCalculator(ComputeInputs),
}

impl ActionCommand {
    /// One line for a tooltip or a log: "open view Attention", "load tiny-gpt".
    pub fn describe(&self) -> String {
        match self {
            ActionCommand::LoadModel(model) => format!("load {model}"),
            ActionCommand::SetText(text) => format!("set the text to {text:?}"),
            ActionCommand::SetPair(Some(pair)) => format!("set sentence B to {pair:?}"),
            ActionCommand::SetPair(None) => "switch sentence pairs off".into(),
            ActionCommand::OpenView(view) => format!("open the {} view", view.title()),
            ActionCommand::SelectLayerHead { side, layer, head } => {
                let head = head.map_or("mean of heads".to_string(), |h| format!("head {h}"));
                let side = side.map_or(String::new(), |s| format!(" ({})", s.name()));
                format!("show layer {layer}, {head}{side}")
            }
            ActionCommand::SelectToken { token, .. } => format!("select token {token}"),
            ActionCommand::CompareWord { word, .. } => {
                format!("compare {word:?} in two sentences")
            }
            ActionCommand::MaskToken(token) => format!("mask token {token}"),
            ActionCommand::SelectPreset(preset) => {
                format!("show the parameters of {}", preset.display_name())
            }
            ActionCommand::SelectLoadedParams(side) => {
                format!("show the parameters of the loaded {} model", side.name())
            }
            ActionCommand::SetCustomConfig(spec) => {
                format!("show the parameters of a custom {}", spec.summary())
            }
            ActionCommand::StepThrough { stage, .. } => {
                format!("step through to {}", stage.title())
            }
            ActionCommand::SetSampling(s) => format!("set sampling ({s})"),
            ActionCommand::Generate(n) => format!("generate {n} tokens"),
            ActionCommand::AskQuestion(q) => format!("ask {q:?}"),
            ActionCommand::TranslationStep(n) => format!("show decoder step {n}"),
            ActionCommand::ShowSide(side) => format!("show the {} model", side.name()),
            ActionCommand::StartTraining(t) => format!(
                "{} {} for {} steps",
                if t.start { "train" } else { "set up" },
                t.objective.name(),
                t.steps
            ),
            ActionCommand::StartFinetune(f) => format!(
                "{} {} from {} for {} steps",
                if f.start {
                    "fine-tune"
                } else {
                    "set up fine-tuning"
                },
                f.objective.name(),
                f.from,
                f.steps
            ),
            ActionCommand::ShowFinetuneStep(step) => {
                format!(
                    "fine-tune step {}: {}",
                    step.number(),
                    step.title().to_lowercase()
                )
            }
            ActionCommand::ShowCalculator(c) => format!("open the compute calculator ({c})"),
        }
    }

    /// The view this command shows its result in, for a lesson runner that wants to switch to it.
    pub fn view(&self) -> Option<ViewName> {
        Some(match self {
            ActionCommand::OpenView(view) => *view,
            ActionCommand::LoadModel(_)
            | ActionCommand::SetText(_)
            | ActionCommand::SetPair(_)
            | ActionCommand::ShowSide(_) => {
                return None;
            }
            ActionCommand::SelectLayerHead { .. } | ActionCommand::SelectToken { .. } => {
                ViewName::Attention
            }
            ActionCommand::CompareWord { .. } => ViewName::Embeddings,
            ActionCommand::MaskToken(_)
            | ActionCommand::SetSampling(_)
            | ActionCommand::Generate(_)
            | ActionCommand::AskQuestion(_) => ViewName::Predict,
            ActionCommand::SelectPreset(_)
            | ActionCommand::SelectLoadedParams(_)
            | ActionCommand::SetCustomConfig(_) => ViewName::Parameters,
            ActionCommand::StepThrough { .. } => ViewName::StepThrough,
            ActionCommand::TranslationStep(_) => ViewName::Translate,
            ActionCommand::StartTraining(_) => ViewName::Train,
            ActionCommand::StartFinetune(_) | ActionCommand::ShowFinetuneStep(_) => {
                ViewName::Finetune
            }
            ActionCommand::ShowCalculator(_) => ViewName::Lessons,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------------------------

/// The app's views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ViewName {
    Model,
    Tokens,
    Embeddings,
    Attention,
    StepThrough,
    Predict,
    Translate,
    Parameters,
    Train,
    Finetune,
    Lessons,
}

impl ViewName {
    pub const ALL: [ViewName; 11] = [
        ViewName::Model,
        ViewName::Tokens,
        ViewName::Embeddings,
        ViewName::Attention,
        ViewName::StepThrough,
        ViewName::Predict,
        ViewName::Translate,
        ViewName::Parameters,
        ViewName::Train,
        ViewName::Finetune,
        ViewName::Lessons,
    ];

    /// The panel id in the app (`Panel::id`, `GLASSBOX_VIEW`): "model", ..., "params", ...
    pub fn id(self) -> &'static str {
        match self {
            ViewName::Model => "model",
            ViewName::Tokens => "tokens",
            ViewName::Embeddings => "embeddings",
            ViewName::Attention => "attention",
            ViewName::StepThrough => "step-through",
            ViewName::Predict => "predict",
            ViewName::Translate => "translate",
            ViewName::Parameters => "params",
            ViewName::Train => "train",
            ViewName::Finetune => "finetune",
            ViewName::Lessons => "lessons",
        }
    }

    /// The side bar label.
    pub fn title(self) -> &'static str {
        match self {
            ViewName::Model => "Model",
            ViewName::Tokens => "Tokens",
            ViewName::Embeddings => "Embeddings",
            ViewName::Attention => "Attention",
            ViewName::StepThrough => "Step through",
            ViewName::Predict => "Predict",
            ViewName::Translate => "Translate",
            ViewName::Parameters => "Parameters",
            ViewName::Train => "Train",
            ViewName::Finetune => "Fine-tune",
            ViewName::Lessons => "Lessons",
        }
    }
}

impl fmt::Display for ViewName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Lower case, without spaces, hyphens and underscores: "Step through" → "stepthrough".
fn squash(text: &str) -> String {
    text.trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

impl FromStr for ViewName {
    type Err = String;

    /// The id or the title, in any case, with or without spaces and hyphens ("step-through",
    /// "Step through", "params", "Parameters", "fine-tune").
    fn from_str(text: &str) -> Result<Self, String> {
        let wanted = squash(text);
        ViewName::ALL
            .into_iter()
            .find(|v| squash(v.id()) == wanted || squash(v.title()) == wanted)
            .ok_or_else(|| {
                format!(
                    "unknown view {text:?}; the views are {}",
                    ViewName::ALL.map(ViewName::id).join(", ")
                )
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

/// The two sides of the app: the causal (GPT) model and the bidirectional (BERT) model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Side {
    Gpt,
    Bert,
    /// The encoder–decoder (translator).
    Translator,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Gpt => "GPT",
            Side::Bert => "BERT",
            Side::Translator => "translator",
        }
    }

    /// The shipped model of this side.
    pub fn shipped(self) -> ShippedModel {
        match self {
            Side::Gpt => ShippedModel::TinyGpt,
            Side::Bert => ShippedModel::TinyBert,
            Side::Translator => ShippedModel::TinyTranslator,
        }
    }
}

impl FromStr for Side {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match squash(text).as_str() {
            "gpt" | "causal" | "decoder" => Ok(Side::Gpt),
            "bert" | "bidirectional" | "encoder" => Ok(Side::Bert),
            "translator" | "encoderdecoder" | "marian" | "mt" => Ok(Side::Translator),
            _ => Err(format!(
                "unknown side {text:?}; use gpt, bert or translator"
            )),
        }
    }
}

/// The models that ship with the app, in `assets/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ShippedModel {
    TinyGpt,
    TinyBert,
    /// The tiny BERT fine-tuned for extractive question answering.
    TinyBertQa,
    TinyTranslator,
    /// The real all-MiniLM-L6-v2 (a 6-layer BERT), where `scripts/fetch-minilm.sh` put it: not
    /// shipped, so a button that loads it says how to get it.
    MiniLm,
}

impl ShippedModel {
    pub const ALL: [ShippedModel; 5] = [
        ShippedModel::TinyGpt,
        ShippedModel::TinyBert,
        ShippedModel::TinyBertQa,
        ShippedModel::TinyTranslator,
        ShippedModel::MiniLm,
    ];

    /// The folder under `assets/` and the name in lesson files.
    pub fn name(self) -> &'static str {
        match self {
            ShippedModel::TinyGpt => "tiny-gpt",
            ShippedModel::TinyBert => "tiny-bert",
            ShippedModel::TinyBertQa => "tiny-bert-qa",
            ShippedModel::TinyTranslator => "tiny-translator",
            ShippedModel::MiniLm => "minilm",
        }
    }

    pub fn side(self) -> Side {
        match self {
            ShippedModel::TinyGpt => Side::Gpt,
            ShippedModel::TinyBert | ShippedModel::TinyBertQa | ShippedModel::MiniLm => Side::Bert,
            ShippedModel::TinyTranslator => Side::Translator,
        }
    }
}

/// Which model to load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelRef {
    /// `tiny-gpt`, `tiny-bert`.
    Shipped(ShippedModel),
    /// A Hugging Face-format folder: `folder:PATH`, or a path starting with `/`, `./`, `../`, `~`.
    /// Relative paths are relative to the directory the app runs in.
    Folder(PathBuf),
    /// A Hub repo id: `hub:ID`, or any other name (`gpt2`, `prajjwal1/bert-tiny`). Needs the
    /// network the first time.
    Hub(String),
}

impl ModelRef {
    /// The side the model is known to go to (shipped models only; others depend on the file).
    pub fn side(&self) -> Option<Side> {
        match self {
            ModelRef::Shipped(model) => Some(model.side()),
            _ => None,
        }
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRef::Shipped(model) => f.write_str(model.name()),
            ModelRef::Folder(path) => write!(f, "folder {}", path.display()),
            ModelRef::Hub(id) => write!(f, "hub:{id}"),
        }
    }
}

fn is_hub_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    !id.is_empty()
        && parts.len() <= 2
        && parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

impl FromStr for ModelRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("name a model: tiny-gpt, tiny-bert, a folder or a Hub id".into());
        }
        if let Some(model) = ShippedModel::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(text))
        {
            return Ok(ModelRef::Shipped(model));
        }
        if let Some(path) = text
            .strip_prefix("folder:")
            .or_else(|| text.strip_prefix("path:"))
        {
            let path = path.trim();
            if path.is_empty() {
                return Err("`folder:` needs a path after it".into());
            }
            return Ok(ModelRef::Folder(PathBuf::from(path)));
        }
        if text.starts_with('/')
            || text.starts_with("./")
            || text.starts_with("../")
            || text.starts_with('~')
            || text.starts_with('.')
        {
            return Ok(ModelRef::Folder(PathBuf::from(text)));
        }
        let id = text.strip_prefix("hub:").unwrap_or(text).trim();
        if is_hub_id(id) {
            Ok(ModelRef::Hub(id.to_string()))
        } else {
            Err(format!(
                "{text:?} is neither a shipped model (tiny-gpt, tiny-bert), nor a Hub id \
                 (owner/name), nor a folder (write folder:PATH or start it with ./ or /)"
            ))
        }
    }
}

/// A token of the text: by position (from 0, as the token strip numbers them) or by its word
/// (the first token that spells it, ignoring case and the `Ġ` / `▁` / `##` markers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenRef {
    Index(usize),
    Word(String),
}

impl TokenRef {
    /// The position of the token in `tokens` (as the tokenizer spells them), if any. A word split
    /// into pieces (`chas`, `##ed`) is found at its first piece. Special tokens like `[CLS]` are
    /// matched only when named exactly.
    pub fn find(&self, tokens: &[String]) -> Option<usize> {
        match self {
            TokenRef::Index(index) => (*index < tokens.len()).then_some(*index),
            TokenRef::Word(word) => {
                let wanted = word.trim().to_lowercase();
                if wanted.is_empty() {
                    return None;
                }
                let plain = |token: &str| {
                    token
                        .trim_start_matches(['Ġ', '\u{2581}'])
                        .trim_start_matches("##")
                        .trim()
                        .to_lowercase()
                };
                (0..tokens.len()).find(|&start| {
                    if tokens[start].to_lowercase() == wanted {
                        return true;
                    }
                    let mut spelled = String::new();
                    for token in &tokens[start..] {
                        spelled.push_str(&plain(token));
                        if spelled == wanted {
                            return true;
                        }
                        if !wanted.starts_with(&spelled) || spelled.is_empty() {
                            return false;
                        }
                    }
                    false
                })
            }
        }
    }
}

impl fmt::Display for TokenRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenRef::Index(index) => write!(f, "#{index}"),
            TokenRef::Word(word) => write!(f, "{word:?}"),
        }
    }
}

impl FromStr for TokenRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("name a token: its position (from 0) or its word".into());
        }
        let digits = text.strip_prefix('#').unwrap_or(text);
        if digits.chars().all(|c| c.is_ascii_digit()) {
            return digits
                .parse()
                .map(TokenRef::Index)
                .map_err(|_| format!("token position {text:?} is too large"));
        }
        Ok(TokenRef::Word(text.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// Step through
// ---------------------------------------------------------------------------------------------

pub use crate::model::family::Stage;

impl FromStr for Stage {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let wanted = squash(text);
        let alias = match wanted.as_str() {
            "embedding" | "embeddings" => Some(Stage::Embed),
            "position" | "positional" | "positionalencoding" => Some(Stage::AddPositions),
            "ln" | "norm" => Some(Stage::NormAttention),
            "ffn" | "feedforward" => Some(Stage::MlpHidden),
            "nexttoken" | "nexttokenprobabilities" | "probs" => Some(Stage::Probabilities),
            _ => None,
        };
        alias
            .or_else(|| {
                Stage::ALL
                    .into_iter()
                    .find(|s| squash(s.key()) == wanted || squash(s.title()) == wanted)
            })
            .ok_or_else(|| {
                format!(
                    "unknown stage {text:?}; the stages are {}",
                    Stage::ALL.map(Stage::key).join(", ")
                )
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Predict
// ---------------------------------------------------------------------------------------------

/// Sampling settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: Option<f64>,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
}

impl fmt::Display for Sampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(t) = self.temperature {
            parts.push(format!("temperature {t}"));
        }
        if let Some(k) = self.top_k {
            parts.push(format!("top-k {k}"));
        }
        if let Some(p) = self.top_p {
            parts.push(format!("top-p {p}"));
        }
        f.write_str(&parts.join(", "))
    }
}

// ---------------------------------------------------------------------------------------------
// Training and fine-tuning
// ---------------------------------------------------------------------------------------------

/// The size of a model trained from scratch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSize {
    pub layers: usize,
    pub heads: usize,
    /// Width of the residual stream.
    pub embd: usize,
    /// Context length.
    pub positions: usize,
}

impl ModelSize {
    /// 2 layers, 4 heads, width 64, 64 positions (trains in a minute on a laptop CPU).
    pub const TINY: ModelSize = ModelSize {
        layers: 2,
        heads: 4,
        embd: 64,
        positions: 64,
    };
    /// 4 layers, 4 heads, width 128, 128 positions.
    pub const SMALL: ModelSize = ModelSize {
        layers: 4,
        heads: 4,
        embd: 128,
        positions: 128,
    };
}

impl fmt::Display for ModelSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "layers={} heads={} embd={} positions={}",
            self.layers, self.heads, self.embd, self.positions
        )
    }
}

/// Where a run's text comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataSource {
    /// The built-in data set of the objective (generated, no file needed).
    Builtin,
    /// A file: text for language modelling, CSV `text,label` for classification, JSONL
    /// `prompt,completion` for generation. Relative to the directory the app runs in.
    File(PathBuf),
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSource::Builtin => f.write_str("built-in"),
            DataSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A pretraining run from scratch (`train:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSettings {
    /// `causal-lm` (GPT) or `masked-lm` (BERT).
    pub objective: Objective,
    pub steps: usize,
    pub size: ModelSize,
    pub lr: f64,
    pub batch_size: usize,
    pub corpus: DataSource,
    /// `None`: char for GPT, WordPiece for BERT.
    pub tokenizer: Option<TokenizerKindChoice>,
    /// Masked LM only: also next-sentence prediction.
    pub next_sentence: bool,
    pub warmup_steps: Option<usize>,
    pub seed: Option<u64>,
    /// `false` (`start: no`): fill in the Train view's form and wait for the learner.
    pub start: bool,
}

impl TrainingSettings {
    pub fn new(objective: Objective) -> Self {
        Self {
            objective,
            steps: 300,
            size: ModelSize::TINY,
            lr: 1e-3,
            batch_size: 16,
            corpus: DataSource::Builtin,
            tokenizer: None,
            next_sentence: false,
            warmup_steps: None,
            seed: None,
            start: true,
        }
    }

    /// The trainer's recipe for these settings (no output folder: the app sets one).
    pub fn to_train_config(&self) -> TrainConfig {
        let mut config = TrainConfig {
            objective: self.objective,
            next_sentence: self.next_sentence,
            ..TrainConfig::default()
        };
        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        if let DataSource::File(path) = &self.corpus {
            config.data.path = Some(path.clone());
        }
        config.tokenizer.kind = self.tokenizer;
        config.model.n_layer = self.size.layers;
        config.model.n_head = self.size.heads;
        config.model.n_embd = self.size.embd;
        config.model.n_positions = self.size.positions;
        config.optimizer.lr = self.lr;
        config.optimizer.warmup_steps = self
            .warmup_steps
            .unwrap_or((self.steps / 10).min(config.optimizer.warmup_steps));
        config.training.steps = self.steps;
        config.training.batch_size = self.batch_size;
        config.training.eval_every = (self.steps / 10).max(1);
        config.training.probe_every = (self.steps / 20).max(1);
        config
    }
}

/// A fine-tuning run (`finetune:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneSettings {
    /// `classification`, `qa` (BERT) or `generation` (GPT).
    pub objective: Objective,
    /// The pretrained model to start from.
    pub from: ModelRef,
    pub data: DataSource,
    pub steps: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub seed: Option<u64>,
    /// `false` (`start: no`): fill in the Fine-tune view's form and wait for the learner.
    pub start: bool,
}

impl FinetuneSettings {
    pub fn new(objective: Objective) -> Self {
        let from = if objective.is_causal() {
            ShippedModel::TinyGpt
        } else {
            ShippedModel::TinyBert
        };
        Self {
            objective,
            from: ModelRef::Shipped(from),
            data: DataSource::Builtin,
            steps: 200,
            lr: 5e-4,
            batch_size: 16,
            seed: None,
            start: true,
        }
    }

    /// The trainer's recipe, starting from `init_from` (the folder `from` resolves to; the app
    /// knows where the shipped models and the Hub cache are).
    pub fn to_train_config(&self, init_from: PathBuf) -> TrainConfig {
        let mut config = TrainConfig {
            objective: self.objective,
            ..TrainConfig::default()
        };
        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        if let DataSource::File(path) = &self.data {
            config.data.path = Some(path.clone());
        }
        config.model.init_from = Some(init_from);
        config.optimizer.lr = self.lr;
        config.optimizer.warmup_steps = (self.steps / 10).min(config.optimizer.warmup_steps);
        config.training.steps = self.steps;
        config.training.batch_size = self.batch_size;
        config.training.eval_every = (self.steps / 5).max(1);
        config
    }
}

/// The seven steps of the fine-tuning workflow, as the Fine-tune view shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FinetuneStep {
    ChooseModel,
    PrepareData,
    Tokenize,
    Arguments,
    Train,
    Evaluate,
    Save,
}

impl FinetuneStep {
    pub const ALL: [FinetuneStep; 7] = [
        FinetuneStep::ChooseModel,
        FinetuneStep::PrepareData,
        FinetuneStep::Tokenize,
        FinetuneStep::Arguments,
        FinetuneStep::Train,
        FinetuneStep::Evaluate,
        FinetuneStep::Save,
    ];

    /// 1 to 7.
    pub fn number(self) -> usize {
        self as usize + 1
    }

    pub fn key(self) -> &'static str {
        match self {
            FinetuneStep::ChooseModel => "choose-model",
            FinetuneStep::PrepareData => "prepare-data",
            FinetuneStep::Tokenize => "tokenize",
            FinetuneStep::Arguments => "arguments",
            FinetuneStep::Train => "train",
            FinetuneStep::Evaluate => "evaluate",
            FinetuneStep::Save => "save",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            FinetuneStep::ChooseModel => "Choose a pretrained model",
            FinetuneStep::PrepareData => "Prepare the data",
            FinetuneStep::Tokenize => "Tokenize",
            FinetuneStep::Arguments => "Training arguments",
            FinetuneStep::Train => "Train",
            FinetuneStep::Evaluate => "Evaluate",
            FinetuneStep::Save => "Save and share",
        }
    }
}

impl FromStr for FinetuneStep {
    type Err = String;

    /// 1–7 or the key ("prepare-data").
    fn from_str(text: &str) -> Result<Self, String> {
        let wanted = squash(text);
        if let Ok(number) = wanted.parse::<usize>() {
            return FinetuneStep::ALL
                .into_iter()
                .find(|s| s.number() == number)
                .ok_or_else(|| format!("fine-tune step {number} does not exist; use 1 to 7"));
        }
        let alias = match wanted.as_str() {
            "model" | "choose" => Some(FinetuneStep::ChooseModel),
            "data" | "prepare" => Some(FinetuneStep::PrepareData),
            "args" | "trainingarguments" => Some(FinetuneStep::Arguments),
            "share" | "saveandshare" => Some(FinetuneStep::Save),
            _ => None,
        };
        alias
            .or_else(|| {
                FinetuneStep::ALL
                    .into_iter()
                    .find(|s| squash(s.key()) == wanted)
            })
            .ok_or_else(|| {
                format!(
                    "unknown fine-tune step {text:?}; use 1 to 7 or {}",
                    FinetuneStep::ALL.map(FinetuneStep::key).join(", ")
                )
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Compute calculator
// ---------------------------------------------------------------------------------------------

/// The number of parameters in a calculation: a number, or a preset's exact count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum ParamCount {
    Number(f64),
    Preset(Preset),
}

impl ParamCount {
    pub fn value(&self) -> f64 {
        match self {
            ParamCount::Number(n) => *n,
            ParamCount::Preset(p) => p.breakdown().exact_total as f64,
        }
    }
}

impl fmt::Display for ParamCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamCount::Number(n) => write!(f, "{}", super::compute::format_scientific(*n)),
            ParamCount::Preset(p) => f.write_str(p.cli_name()),
        }
    }
}

impl FromStr for ParamCount {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(n) = super::parse_number(text) {
            return if n.is_finite() && n > 0.0 {
                Ok(ParamCount::Number(n))
            } else {
                Err(format!("a parameter count must be positive, got {text:?}"))
            };
        }
        text.parse::<Preset>()
            .map(ParamCount::Preset)
            .map_err(|e| format!("{text:?} is neither a number nor a preset ({e})"))
    }
}

/// The calculator's inputs, as a lesson fills them in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeInputs {
    pub parameters: ParamCount,
    pub tokens: f64,
    pub hardware: Hardware,
    pub gpus: u64,
    /// Achieved ÷ peak (ignored for `Hardware::ThisMachine`).
    pub utilisation: f64,
    /// Dollars per GPU-hour, for a cost estimate.
    pub price_per_gpu_hour: Option<f64>,
}

impl Default for ComputeInputs {
    fn default() -> Self {
        Self {
            parameters: ParamCount::Preset(Preset::Gpt3_175b),
            tokens: 300e9,
            hardware: Hardware::Gpu(super::compute::Gpu::A100),
            gpus: 1,
            utilisation: 0.4,
            price_per_gpu_hour: None,
        }
    }
}

impl fmt::Display for ComputeInputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "params={} tokens={} gpu={} gpus={} utilisation={}",
            self.parameters,
            super::compute::format_scientific(self.tokens),
            match self.hardware {
                Hardware::Gpu(gpu) => gpu.key(),
                Hardware::ThisMachine => "this-machine".into(),
            },
            self.gpus,
            self.utilisation
        )?;
        if let Some(price) = self.price_per_gpu_hour {
            write!(f, " price={price}")?;
        }
        Ok(())
    }
}
