//! What a training run does, as read from a TOML recipe.
//!
//! Every field has a default, so a recipe names only what it changes. Single fields can be
//! overridden from the command line with `section.key=value` (e.g. `training.steps=200`).
//!
//! ```toml
//! objective = "causal-lm"
//! seed = 1337
//! out_dir = "runs/tiny-gpt"
//!
//! [data]          # no path: the built-in toy-English corpus
//! builtin_size = 4000
//!
//! [tokenizer]
//! kind = "char"
//!
//! [model]
//! n_layer = 2
//! n_head = 4
//! n_embd = 64
//! n_positions = 64
//!
//! [optimizer]
//! lr = 1e-3
//! warmup_steps = 50
//!
//! [training]
//! steps = 1000
//! batch_size = 16
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{GlassboxError, Result};

/// What the model learns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// GPT pretraining: predict every next token of a corpus.
    #[default]
    CausalLm,
    /// BERT pretraining: predict masked tokens (optionally plus next-sentence prediction).
    MaskedLm,
    /// Fine-tuning: one label per text (CSV `text,label`).
    // The aliases read the Fine-tune view's settings as saved before it used this type.
    #[serde(alias = "Classification")]
    Classification,
    /// Fine-tuning: extractive question answering (JSON/JSONL context, question, answer).
    #[serde(alias = "Qa")]
    Qa,
    /// Fine-tuning: a GPT continues prompts (JSONL `prompt,completion`), loss on completions only.
    #[serde(alias = "Generation")]
    Generation,
    /// Translation: an encoder–decoder (Marian) writes the target given the source (TSV
    /// `source<TAB>target` or JSONL `source,target`; built in: English → French), teacher-forced.
    Seq2seq,
}

impl Objective {
    /// Every objective, in the order menus list them.
    pub const ALL: [Objective; 6] = [
        Objective::CausalLm,
        Objective::MaskedLm,
        Objective::Classification,
        Objective::Qa,
        Objective::Generation,
        Objective::Seq2seq,
    ];

    /// The objectives that fine-tune a trained checkpoint ([`Objective::is_finetuning`]): what
    /// the Fine-tune view offers.
    pub fn finetuning() -> impl Iterator<Item = Objective> {
        Objective::ALL.into_iter().filter(|o| o.is_finetuning())
    }

    /// What a menu calls it.
    pub fn label(self) -> &'static str {
        match self {
            Objective::CausalLm => "Next-token prediction (GPT)",
            Objective::MaskedLm => "Masked language model (BERT)",
            Objective::Classification => "Text classification",
            Objective::Qa => "Question answering",
            Objective::Generation => "Prompt → completion",
            Objective::Seq2seq => "Translation",
        }
    }

    /// What its built-in data set is called ("built-in sentiment set").
    pub fn builtin_data_name(self) -> &'static str {
        match self {
            Objective::CausalLm | Objective::MaskedLm => "toy corpus",
            Objective::Classification => "sentiment",
            Objective::Qa => "QA",
            Objective::Generation => "prompt/completion",
            Objective::Seq2seq => "English → French",
        }
    }

    /// The data file it reads, in words.
    pub fn data_file_hint(self) -> &'static str {
        match self {
            Objective::CausalLm | Objective::MaskedLm => "a UTF-8 text file",
            Objective::Classification => "a CSV with a header naming `text` and `label` columns",
            Objective::Qa => "JSON (an array) or JSONL with `context`, `question`, `answer`",
            Objective::Generation => "JSONL with `prompt` and `completion` on each line",
            Objective::Seq2seq => "TSV (`source<TAB>target`) or JSONL with `source`, `target`",
        }
    }

    /// File extensions a file chooser offers for its data.
    pub fn data_file_extensions(self) -> &'static [&'static str] {
        match self {
            Objective::CausalLm | Objective::MaskedLm => &["txt", "md"],
            Objective::Classification => &["csv", "tsv", "txt"],
            Objective::Qa => &["json", "jsonl"],
            Objective::Generation => &["jsonl", "json"],
            Objective::Seq2seq => &["tsv", "jsonl", "json"],
        }
    }

    /// The fields of one example, as a preview table's columns.
    pub fn data_columns(self) -> &'static [&'static str] {
        match self {
            Objective::CausalLm | Objective::MaskedLm => &["text"],
            Objective::Classification => &["text", "label"],
            Objective::Qa => &["question", "context", "answer"],
            Objective::Generation => &["prompt", "completion"],
            Objective::Seq2seq => &["source", "target"],
        }
    }

    /// Other names `glassbox train --objective` and lesson files accept.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Objective::CausalLm => &["causal", "clm", "gpt"],
            Objective::MaskedLm => &["masked", "mlm", "bert"],
            Objective::Classification => &["classify"],
            Objective::Qa => &["question-answering"],
            Objective::Generation => &["generate"],
            Objective::Seq2seq => &["translation", "translate"],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Objective::CausalLm => "causal-lm",
            Objective::MaskedLm => "masked-lm",
            Objective::Classification => "classification",
            Objective::Qa => "qa",
            Objective::Generation => "generation",
            Objective::Seq2seq => "seq2seq",
        }
    }

    /// Whether the objective trains a GPT (decoder) rather than a BERT (encoder).
    pub fn is_causal(self) -> bool {
        matches!(self, Objective::CausalLm | Objective::Generation)
    }

    /// Whether the objective starts from a trained checkpoint (`model.init_from`).
    pub fn is_finetuning(self) -> bool {
        matches!(
            self,
            Objective::Classification | Objective::Qa | Objective::Generation
        )
    }
}

impl std::str::FromStr for Objective {
    type Err = String;

    /// Its name or an alias, in any case, `_` for `-` ("causal_lm", "gpt", "translate").
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let wanted = text.trim().to_ascii_lowercase().replace('_', "-");
        Objective::ALL
            .into_iter()
            .find(|o| o.name() == wanted || o.aliases().contains(&wanted.as_str()))
            .ok_or_else(|| {
                let names: Vec<&str> = Objective::ALL.iter().map(|o| o.name()).collect();
                format!("unknown objective {text:?}; use {}", names.join(", "))
            })
    }
}

/// Which tokenizer to train when none is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenizerKindChoice {
    Char,
    Bpe,
    Wordpiece,
}

/// A whole training recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub objective: Objective,
    /// Masked LM only: also train next-sentence prediction on sentence pairs (50% true next).
    pub next_sentence: bool,
    /// Seeds the initial weights, the data order and the masking: same seed, same curve.
    pub seed: u64,
    /// `cpu`, `cuda`, `cuda:N`, `metal`.
    pub device: String,
    /// Where metrics and checkpoints go. `None`: nothing is written (benchmarks, quick tests).
    /// A fresh run refuses a folder that already holds a run (see [`super::clear_run_dir`]).
    pub out_dir: Option<PathBuf>,
    pub data: DataConfig,
    pub tokenizer: TokenizerConfig,
    pub model: ModelSpec,
    pub optimizer: OptimizerConfig,
    pub training: TrainingConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// A text file (causal/masked LM), CSV (classification), JSON/JSONL (QA, generation), TSV
    /// or JSONL pairs (seq2seq).
    /// `None`: the built-in data set for the objective, generated from `seed`.
    pub path: Option<PathBuf>,
    /// A separate validation file; without it `val_fraction` of the data is held out.
    pub val_path: Option<PathBuf>,
    pub val_fraction: f64,
    /// Size of a built-in data set: sentences (toy corpus), documents (NSP) or examples.
    pub builtin_size: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizerConfig {
    /// An existing `tokenizer.json` (or a folder holding one). Fine-tuning uses the checkpoint's.
    pub path: Option<PathBuf>,
    /// Kind to train on the training text when no path is given: `char` and `bpe` for GPT,
    /// `wordpiece` for BERT. `None`: char for GPT, wordpiece for BERT.
    pub kind: Option<TokenizerKindChoice>,
    /// Vocabulary size for BPE and WordPiece.
    pub vocab_size: usize,
}

/// The model to train: either fresh (the sizes below) or `init_from` a checkpoint folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSpec {
    /// A Hugging Face-format folder to start from (required for fine-tuning). Its tensors are
    /// loaded; heads it lacks (e.g. a classifier) start fresh.
    pub init_from: Option<PathBuf>,
    pub n_layer: usize,
    /// Encoder–decoders: the decoder's layers; `None` means as many as the encoder's `n_layer`.
    pub n_decoder_layer: Option<usize>,
    pub n_head: usize,
    /// Width of the residual stream (GPT `n_embd`, BERT `hidden_size`).
    pub n_embd: usize,
    /// MLP width; `None` means 4 · n_embd.
    pub n_inner: Option<usize>,
    /// Number of learned positions (GPT's context length).
    pub n_positions: usize,
    /// Biases in Linear and LayerNorm (GPT only; `false` loads only in Glassbox, not in
    /// `transformers`).
    pub bias: bool,
    /// `gelu_new` (GPT default), `gelu` (BERT default) or `relu`.
    pub activation: Option<String>,
}

/// AdamW and its learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Peak learning rate, reached at the end of the warm-up.
    pub lr: f64,
    /// Learning rate at the end of the cosine decay; `None` means lr / 10.
    pub min_lr: Option<f64>,
    pub warmup_steps: usize,
    /// Steps over which the cosine decays to `min_lr`; `None` means all training steps.
    pub decay_steps: Option<usize>,
    /// Decoupled weight decay, applied to matrices (tensors with two or more dimensions) only.
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Clip the global gradient norm to this; 0 turns clipping off.
    pub grad_clip: f64,
}

/// The loop: how long, how big, how often to evaluate, save and probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed before one optimizer step.
    pub grad_accum: usize,
    /// Tokens per sequence; `None` means the model's number of positions.
    pub seq_len: Option<usize>,
    /// Evaluate on the held-out split every this many steps (and after the last); 0: only at the end.
    pub eval_every: usize,
    /// Batches per evaluation of a language model (fine-tuning evaluates the whole split).
    pub eval_batches: usize,
    /// Save a checkpoint every this many steps (and at the end); 0: only at the end.
    pub save_every: usize,
    /// Trace the probe text every this many steps; 0: only when asked.
    pub probe_every: usize,
    /// The text traced for the live attention view; `None`: a default for the objective.
    pub probe_text: Option<String>,
    /// Tokens generated after the probe text (GPT).
    pub probe_tokens: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            objective: Objective::CausalLm,
            next_sentence: false,
            seed: 1337,
            device: "cpu".into(),
            out_dir: None,
            data: DataConfig::default(),
            tokenizer: TokenizerConfig::default(),
            model: ModelSpec::default(),
            optimizer: OptimizerConfig::default(),
            training: TrainingConfig::default(),
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            path: None,
            val_path: None,
            val_fraction: 0.1,
            builtin_size: 2000,
        }
    }
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self {
            path: None,
            kind: None,
            vocab_size: 512,
        }
    }
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            init_from: None,
            n_layer: 2,
            n_decoder_layer: None,
            n_head: 4,
            n_embd: 64,
            n_inner: None,
            n_positions: 64,
            bias: true,
            activation: None,
        }
    }
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            min_lr: None,
            warmup_steps: 100,
            decay_steps: None,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            grad_clip: 1.0,
        }
    }
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 12,
            grad_accum: 1,
            seq_len: None,
            eval_every: 100,
            eval_batches: 20,
            save_every: 0,
            probe_every: 0,
            probe_text: None,
            probe_tokens: 32,
        }
    }
}

impl OptimizerConfig {
    pub fn min_lr(&self) -> f64 {
        self.min_lr.unwrap_or(self.lr / 10.0)
    }
}

impl TrainConfig {
    /// Reads a TOML recipe, applies `section.key=value` overrides and validates the result.
    pub fn from_file(path: &Path, overrides: &[String]) -> Result<Self> {
        let config = Self::parse_file(path, overrides)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML recipe, applies overrides and validates the result.
    pub fn from_toml_str(text: &str, overrides: &[String]) -> Result<Self> {
        let config = Self::parse(text, overrides)?;
        config.validate()?;
        Ok(config)
    }

    /// Like [`TrainConfig::from_file`] without validation (for callers that set more fields
    /// first, then call [`TrainConfig::validate`]).
    pub fn parse_file(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = crate::util::read_text(path)?;
        Self::parse(&text, overrides).map_err(|e| match e {
            GlassboxError::BadConfig { message, .. } => GlassboxError::BadConfig {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses a TOML recipe and applies `section.key=value` overrides (values are TOML: `200`,
    /// `1e-3`, `true`, `"text"`; a bare word is taken as a string). Not validated.
    pub fn parse(text: &str, overrides: &[String]) -> Result<Self> {
        let bad = |message: String| GlassboxError::BadConfig {
            path: PathBuf::from("<recipe>"),
            message,
        };
        let mut table: toml::Table = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if table.contains_key("export_dir") {
            // Recipes used to export on their own and overwrote the shipped models (issue 11).
            return Err(bad(
                "export_dir is no longer read from recipes: writing a model folder \
                 is asked for on the command line (`glassbox train ... --export DIR`)"
                    .into(),
            ));
        }
        for assignment in overrides {
            apply_override(&mut table, assignment).map_err(bad)?;
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| bad(e.to_string()))
    }

    /// The recipe as TOML (what a run writes beside its metrics).
    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string_pretty(self)
            .map_err(|e| GlassboxError::InvalidInput(format!("cannot write the recipe: {e}")))
    }

    /// Applies `section.key=value` overrides to an already parsed recipe.
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self> {
        if overrides.is_empty() {
            return Ok(self.clone());
        }
        let text = self.to_toml_string()?;
        Self::from_toml_str(&text, overrides)
    }

    /// Checks what would otherwise fail deep inside a run, with a message naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(GlassboxError::InvalidInput(message));
        let t = &self.training;
        let o = &self.optimizer;
        let m = &self.model;
        if t.steps == 0 {
            return bad("training.steps must be at least 1".into());
        }
        if t.batch_size == 0 || t.grad_accum == 0 {
            return bad("training.batch_size and training.grad_accum must be at least 1".into());
        }
        if t.seq_len == Some(0) {
            return bad("training.seq_len must be at least 1".into());
        }
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return bad(format!(
                "optimizer.lr must be a positive number, got {}",
                o.lr
            ));
        }
        if !(o.min_lr().is_finite() && o.min_lr() >= 0.0) {
            return bad(format!("optimizer.min_lr must be ≥ 0, got {}", o.min_lr()));
        }
        for (name, beta) in [("beta1", o.beta1), ("beta2", o.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return bad(format!("optimizer.{name} must be in [0, 1), got {beta}"));
            }
        }
        if !(o.eps > 0.0 && o.weight_decay >= 0.0 && o.grad_clip >= 0.0) {
            return bad("optimizer.eps must be > 0, weight_decay and grad_clip ≥ 0".into());
        }
        if !(0.0..1.0).contains(&self.data.val_fraction) {
            return bad(format!(
                "data.val_fraction must be in [0, 1), got {}",
                self.data.val_fraction
            ));
        }
        if m.init_from.is_none() {
            if self.objective.is_finetuning() {
                return bad(format!(
                    "objective {:?} fine-tunes a trained model: set model.init_from to a \
                     checkpoint folder (e.g. assets/tiny-bert)",
                    self.objective.name()
                ));
            }
            if m.n_layer == 0 || m.n_head == 0 || m.n_embd == 0 || m.n_positions == 0 {
                return bad(
                    "model.n_layer, n_head, n_embd and n_positions must be at least 1".into(),
                );
            }
            if m.n_decoder_layer == Some(0) {
                return bad("model.n_decoder_layer must be at least 1".into());
            }
            if !m.n_embd.is_multiple_of(m.n_head) {
                return bad(format!(
                    "model.n_embd ({}) must be divisible by model.n_head ({})",
                    m.n_embd, m.n_head
                ));
            }
        }
        if self.next_sentence && self.objective != Objective::MaskedLm {
            return bad("next_sentence = true needs objective = \"masked-lm\"".into());
        }
        Ok(())
    }

    /// Makes every path in the recipe absolute (against the current folder), so that a run's
    /// saved recipe still points at the same files when it is resumed from elsewhere.
    pub fn absolutize_paths(&mut self) -> Result<()> {
        let absolute = |path: &mut Option<PathBuf>| -> Result<()> {
            if let Some(p) = path.as_mut()
                && p.is_relative()
            {
                *p = std::path::absolute(&*p).map_err(|e| GlassboxError::io(p.clone(), e))?;
            }
            Ok(())
        };
        absolute(&mut self.out_dir)?;
        absolute(&mut self.data.path)?;
        absolute(&mut self.data.val_path)?;
        absolute(&mut self.tokenizer.path)?;
        absolute(&mut self.model.init_from)
    }

    /// The recipe of a resumed run with `overrides`. Keys under [`FIXED_ON_RESUME`] describe
    /// what the checkpoint already is (its model, tokenizer, objective, folder): a resumed run
    /// could not apply them, so changing one is refused rather than ignored. The rest (length,
    /// data, optimizer, batch, seed, device) take effect from the next step.
    pub fn resumed_with(&self, overrides: &[String]) -> Result<Self> {
        let resumed = self.with_overrides(overrides)?;
        let as_table = |config: &TrainConfig| {
            toml::Value::try_from(config)
                .map_err(|e| GlassboxError::InvalidInput(format!("cannot compare recipes: {e}")))
        };
        let mut changed = Vec::new();
        diff_keys("", &as_table(self)?, &as_table(&resumed)?, &mut changed);
        changed.retain(|key| {
            FIXED_ON_RESUME
                .iter()
                .any(|fixed| key == fixed || key.starts_with(&format!("{fixed}.")))
        });
        if !changed.is_empty() {
            return Err(GlassboxError::InvalidInput(format!(
                "a resumed run cannot change {}: its checkpoint fixes {} (start a new run with \
                 another --out to change them; on resume the length, data, optimizer, batch, \
                 seed and device can change)",
                changed.join(", "),
                FIXED_ON_RESUME.join(", ")
            )));
        }
        Ok(resumed)
    }

    /// The sequence length batches are cut to, given the model's number of positions.
    pub fn seq_len(&self, model_positions: usize) -> usize {
        self.training
            .seq_len
            .unwrap_or(model_positions)
            .min(model_positions)
    }

    /// Tokens the optimizer sees per step (upper bound for padded fine-tuning batches).
    pub fn tokens_per_step(&self, seq_len: usize) -> usize {
        self.training.batch_size * self.training.grad_accum * seq_len
    }
}

/// What a resumed run cannot change: the checkpoint it continues already has its model,
/// tokenizer and objective, and its folder is where it is.
pub const FIXED_ON_RESUME: [&str; 5] = [
    "objective",
    "next_sentence",
    "model",
    "tokenizer",
    "out_dir",
];

/// Dotted keys whose values differ between two TOML values (a key missing on one side differs).
fn diff_keys(prefix: &str, old: &toml::Value, new: &toml::Value, out: &mut Vec<String>) {
    match (old, new) {
        (toml::Value::Table(a), toml::Value::Table(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff_keys(&path, x, y, out),
                    _ => out.push(path),
                }
            }
        }
        (a, b) if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

/// `a.b.c=value` → `table[a][b][c] = value`.
fn apply_override(table: &mut toml::Table, assignment: &str) -> std::result::Result<(), String> {
    let (key, raw_value) = assignment
        .split_once('=')
        .ok_or_else(|| format!("override {assignment:?} is not of the form section.key=value"))?;
    let key = key.trim();
    let raw_value = raw_value.trim();
    // A TOML value if it parses as one, else the text as a string (so paths need no quotes).
    let value = toml::from_str::<toml::Table>(&format!("v = {raw_value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw_value.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    let (last, sections) = parts
        .split_last()
        .ok_or_else(|| format!("override {assignment:?} has an empty key"))?;
    let mut current = table;
    for section in sections {
        let entry = current
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("override {assignment:?}: {section} is not a section"))?;
    }
    current.insert(last.to_string(), value);
    Ok(())
}
