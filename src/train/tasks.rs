//! The objectives: how each one reads its data, cuts it into batches, computes its loss, and
//! evaluates on the held-out split.
//!
//! Every random choice (which windows, which tokens to mask, which sentence pairs, the order of
//! examples) comes from a generator seeded by (run seed, purpose, batch number), so batch `k` is
//! the same in a run that went straight through and in one that was stopped and resumed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{D, Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::config::{Objective, TokenizerKindChoice, TrainConfig};
use super::metrics::{ConfusionMatrix, exact_match, perplexity, token_f1};
use crate::data::{
    self, ClassificationExample, GenerationExample, IGNORE_INDEX, MaskingConfig, QaExample,
    TokenStream,
};
use crate::error::{GlassboxError, Result};
use crate::model::gpt::StepOutput;
use crate::model::{Model, ModelInput, ModelOutput};
use crate::tokenizer::Tokenizer;

mod seq2seq;
pub(crate) use seq2seq::{HELD_OUT_FILE, greedy_settings};

/// Purposes of the seeded generators (so training batches and validation batches never share
/// random numbers).
const TRAIN_STREAM: u64 = 1;
const EVAL_STREAM: u64 = 2;
const SHUFFLE_STREAM: u64 = 3;

/// A fixed mix of bits (SplitMix64's finaliser).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The generator for draw `index` of `stream`: the same (seed, stream, index), the same numbers.
pub(crate) fn rng_for(seed: u64, stream: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(mix(seed ^ mix(stream ^ mix(index))))
}

/// Which positions of a flattened `[b·s]` batch carry a token loss, and their targets.
#[derive(Debug, Clone)]
pub(crate) enum TokenTargets {
    /// Every position (causal LM on a corpus): targets `[b·s]` u32.
    All(Tensor),
    /// Only some (masked LM, completion-only generation): row indices `[k]` and targets `[k]`.
    Selected { rows: Tensor, targets: Tensor },
}

impl TokenTargets {
    /// From labels with [`IGNORE_INDEX`] where no loss is wanted.
    fn from_labels(labels: &[i64], device: &Device) -> Result<Self> {
        let (rows, targets): (Vec<u32>, Vec<u32>) = labels
            .iter()
            .enumerate()
            .filter(|&(_, &label)| label >= 0)
            .map(|(row, &label)| (row as u32, label as u32))
            .unzip();
        if rows.is_empty() {
            return Err(GlassboxError::Training(
                "a batch has no target tokens (every label is ignored)".into(),
            ));
        }
        if rows.len() == labels.len() {
            return Ok(TokenTargets::All(Tensor::new(targets, device)?));
        }
        let k = rows.len();
        Ok(TokenTargets::Selected {
            rows: Tensor::from_vec(rows, k, device)?,
            targets: Tensor::from_vec(targets, k, device)?,
        })
    }

    fn count(&self) -> Result<usize> {
        Ok(match self {
            TokenTargets::All(t) => t.dim(0)?,
            TokenTargets::Selected { targets, .. } => targets.dim(0)?,
        })
    }

    /// The logits rows that carry a loss `[k, vocab]` and their targets `[k]`.
    fn select(&self, logits: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, s, vocab) = logits.dims3()?;
        let flat = logits.reshape((b * s, vocab))?;
        Ok(match self {
            TokenTargets::All(targets) => (flat, targets.clone()),
            TokenTargets::Selected { rows, targets } => {
                (flat.index_select(rows, 0)?, targets.clone())
            }
        })
    }
}

/// One batch, ready for the model, with its objective's own targets `T`.
#[derive(Debug, Clone)]
pub(crate) struct Batch<T> {
    /// `[b, s]` u32 (an encoder–decoder's source).
    pub input_ids: Tensor,
    /// `[b, s]` u32 segment ids (BERT pairs).
    pub token_type_ids: Option<Tensor>,
    /// `[b][s]`: 1 for real tokens, 0 for padding; `None` when nothing is padded.
    pub padding: Option<Vec<Vec<u32>>>,
    /// Encoder–decoders: the decoder's input `[b, t]` u32.
    pub decoder_input_ids: Option<Tensor>,
    /// What the loss compares the model's output with; each objective has its own kind.
    pub targets: T,
    /// Real (non-padding) tokens, for tokens per second.
    pub tokens: usize,
}

impl<T> Batch<T> {
    fn new(input_ids: Tensor, targets: T, tokens: usize) -> Self {
        Self {
            input_ids,
            token_type_ids: None,
            padding: None,
            decoder_input_ids: None,
            targets,
            tokens,
        }
    }

    /// The same inputs with other targets (a padded batch gets its objective's targets).
    fn with_targets<U>(self, targets: U) -> Batch<U> {
        Batch {
            input_ids: self.input_ids,
            token_type_ids: self.token_type_ids,
            padding: self.padding,
            decoder_input_ids: self.decoder_input_ids,
            targets,
            tokens: self.tokens,
        }
    }

    /// The padded shapes of the inputs (`[b, s]`) and decoder inputs (`[b, t]`).
    fn shape(&self) -> BatchShape {
        let dims = |t: &Tensor| t.dims2().unwrap_or_default();
        BatchShape {
            inputs: dims(&self.input_ids),
            decoder_inputs: self.decoder_input_ids.as_ref().map(dims),
        }
    }

    /// The model on this batch's inputs.
    fn forward(&self, model: &Model) -> Result<ModelOutput> {
        let input = ModelInput {
            input_ids: &self.input_ids,
            token_type_ids: self.token_type_ids.as_ref(),
            padding: self.padding.as_deref(),
            decoder_input_ids: self.decoder_input_ids.as_ref(),
        };
        Ok(model.forward(input, None)?)
    }
}

/// The padded shapes a batch ran on, for benchmarks that give another library the same work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchShape {
    /// `(batch, sequence length)` of the input ids (an encoder–decoder's source).
    pub inputs: (usize, usize),
    /// `(batch, target length)` of an encoder–decoder's decoder inputs.
    pub decoder_inputs: Option<(usize, usize)>,
}

/// A loss and what went into it.
pub(crate) struct LossBreakdown {
    /// The differentiable scalar the optimizer minimises: the sum of the parts (as
    /// `transformers`' `BertForPreTraining` adds its MLM and NSP losses).
    pub total: Tensor,
    /// Named parts (`token_loss`, `nsp_loss`, `class_loss`, `span_loss`), scalars.
    pub parts: Vec<(&'static str, Tensor)>,
}

impl LossBreakdown {
    fn of(parts: Vec<(&'static str, Tensor)>) -> Result<Self> {
        let mut total: Option<Tensor> = None;
        for (_, part) in &parts {
            total = Some(match total {
                None => part.clone(),
                Some(sum) => (sum + part)?,
            });
        }
        let total = total.ok_or_else(|| GlassboxError::Training("a loss without parts".into()))?;
        Ok(Self { total, parts })
    }
}

fn missing_head(head: &str) -> GlassboxError {
    GlassboxError::Training(format!("the model has no {head} head for this objective"))
}

/// Mean cross-entropy of the language-model logits at the target positions.
fn token_loss(output: &ModelOutput, targets: &TokenTargets) -> Result<Tensor> {
    let logits = output
        .logits
        .as_ref()
        .ok_or_else(|| missing_head("language-model"))?;
    let (rows, targets) = targets.select(logits)?;
    Ok(candle_nn::loss::cross_entropy(&rows, &targets)?)
}

/// The loss of the objectives whose only targets are tokens (causal LM, generation, seq2seq).
fn token_loss_only(output: &ModelOutput, targets: &TokenTargets) -> Result<LossBreakdown> {
    LossBreakdown::of(vec![("token_loss", token_loss(output, targets)?)])
}

/// What one micro-batch of training gives the trainer.
pub(crate) struct MicroBatch {
    pub loss: TrainLoss,
    /// Real tokens in the batch.
    pub tokens: usize,
    /// The padded shapes the model ran on: inputs, and an encoder–decoder's decoder inputs.
    pub shape: BatchShape,
    /// Time to draw the batch, and (graph losses) to run the forward pass and the loss.
    pub data_seconds: f64,
    pub forward_seconds: f64,
}

/// A micro-batch's loss, ready for the backward pass or already through it.
pub(crate) enum TrainLoss {
    /// A differentiable scalar: the trainer runs the graph's backward.
    Graph(Tensor),
    /// The loss and every gradient from a hand-written training step.
    Fused(StepOutput),
}

/// Draws a batch and computes its loss, timing each: the body of every objective's
/// [`Task::train_loss`]. `fused` may answer with a hand-written step instead of the graph.
fn micro_batch<T>(
    model: &Model,
    draw_batch: impl FnOnce() -> Result<Batch<T>>,
    fused: impl FnOnce(&Batch<T>) -> Result<Option<StepOutput>>,
    loss: impl FnOnce(&ModelOutput, &T) -> Result<LossBreakdown>,
) -> Result<MicroBatch> {
    let started = std::time::Instant::now();
    let batch = draw_batch()?;
    let data_seconds = started.elapsed().as_secs_f64();
    let tokens = batch.tokens;
    let shape = batch.shape();
    if let Some(step) = fused(&batch)? {
        return Ok(MicroBatch {
            loss: TrainLoss::Fused(step),
            tokens,
            shape,
            data_seconds,
            forward_seconds: 0.0,
        });
    }
    let started = std::time::Instant::now();
    let output = batch.forward(model)?;
    let total = loss(&output, &batch.targets)?.total;
    Ok(MicroBatch {
        loss: TrainLoss::Graph(total),
        tokens,
        shape,
        data_seconds,
        forward_seconds: started.elapsed().as_secs_f64(),
    })
}

/// No hand-written step: the graph computes the loss and its gradients.
fn graph_only<T>(_: &Batch<T>) -> Result<Option<StepOutput>> {
    Ok(None)
}

/// The GPT's hand-written training step ([`crate::model::gpt::Gpt2::fused_training_step`])
/// for a token batch, when it applies: a GPT, every position with a target, nothing padded.
/// `None` means: use the graph.
fn fused_token_step(model: &Model, batch: &Batch<TokenTargets>) -> Result<Option<StepOutput>> {
    let Model::Gpt2(gpt) = model else {
        return Ok(None);
    };
    let TokenTargets::All(targets) = &batch.targets else {
        return Ok(None);
    };
    if batch.padding.is_some() || batch.token_type_ids.is_some() {
        return Ok(None);
    }
    Ok(gpt.fused_training_step(&batch.input_ids, targets)?)
}

/// Held-out results of one evaluation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Evaluation {
    pub val_loss: f32,
    pub metrics: BTreeMap<String, f64>,
    pub confusion: Option<ConfusionMatrix>,
}

/// How big the data is, for the run's opening report.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct DataSummary {
    pub train_examples: usize,
    pub val_examples: usize,
    /// Tokens in the training text (language models).
    pub train_tokens: usize,
    /// Where the data came from: a path or `built-in ...`.
    pub source: String,
}

/// One objective's data, batches and evaluation.
///
/// Each objective owns its batches' targets and its loss: [`Task::train_loss`] draws micro-batch
/// `draw` and computes the loss its own way (see [`micro_batch`]).
pub(crate) trait Task: Send + Sync {
    /// The loss of micro-batch number `draw` of the run (0, 1, 2, ... across steps and
    /// accumulation).
    fn train_loss(&self, model: &Model, draw: u64, device: &Device) -> Result<MicroBatch>;
    fn evaluate(&self, model: &Model, device: &Device) -> Result<Evaluation>;
    /// The metric names `evaluate` reports (columns of metrics.csv).
    fn metric_names(&self) -> Vec<&'static str>;
    fn summary(&self) -> DataSummary;
    /// A text to trace when none is configured.
    fn default_probe_text(&self) -> String;
    /// Class names (classification only).
    fn labels(&self) -> Option<Vec<String>> {
        None
    }
    /// A file the run writes beside its metrics, (name, contents): seq2seq's held-out pairs, so
    /// a model can be tested on exactly the sentences it never trained on.
    fn held_out_file(&self) -> Option<(&'static str, String)> {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Setup shared by the objectives
// ---------------------------------------------------------------------------------------------

/// Everything needed to build a task.
pub(crate) struct TaskSetup<'a> {
    pub config: &'a TrainConfig,
    /// Tokens per sequence (at most the model's positions).
    pub seq_len: usize,
    /// The checkpoint's or given tokenizer; `None`: train one on the training text.
    pub tokenizer: Option<Tokenizer>,
    pub device: &'a Device,
}

/// Builds the objective's task, training a tokenizer on its training text if none is given.
pub(crate) fn prepare_task(setup: TaskSetup<'_>) -> Result<(Box<dyn Task>, Tokenizer)> {
    match setup.config.objective {
        Objective::CausalLm => CausalLmTask::prepare(setup),
        Objective::MaskedLm => MaskedLmTask::prepare(setup),
        Objective::Classification => ClassificationTask::prepare(setup),
        Objective::Qa => QaTask::prepare(setup),
        Objective::Generation => GenerationTask::prepare(setup),
        Objective::Seq2seq => seq2seq::Seq2SeqTask::prepare(setup),
    }
}

/// Trains the configured tokenizer on `text`.
fn train_tokenizer(config: &TrainConfig, text: &str) -> Result<Tokenizer> {
    let default_kind = if config.objective.is_causal() {
        TokenizerKindChoice::Char
    } else {
        TokenizerKindChoice::Wordpiece
    };
    let vocab_size = config.tokenizer.vocab_size;
    match config.tokenizer.kind.unwrap_or(default_kind) {
        TokenizerKindChoice::Char => Tokenizer::train_char(text),
        TokenizerKindChoice::Bpe => Tokenizer::train_bpe(text, vocab_size),
        TokenizerKindChoice::Wordpiece => Tokenizer::train_wordpiece(text, vocab_size),
    }
}

/// Encodes a long text in pieces of about 64 KiB, cut after a newline so no word is split.
fn encode_corpus(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    const PIECE: usize = 1 << 16;
    let mut ids = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + PIECE).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        if end < text.len() {
            end = text[end..].find('\n').map_or(text.len(), |i| end + i + 1);
        }
        ids.extend(tokenizer.encode(&text[start..end], false)?.ids);
        start = end;
    }
    Ok(ids)
}

/// `[rows][len]` → `[b, s]` u32 tensor (rows must have equal length).
fn ids_tensor(rows: &[Vec<u32>], device: &Device) -> Result<Tensor> {
    let b = rows.len();
    let s = rows.first().map_or(0, Vec::len);
    let flat: Vec<u32> = rows.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, (b, s), device)?)
}

fn required_token(found: Option<(String, u32)>, what: &str, objective: Objective) -> Result<u32> {
    found.map(|(_, id)| id).ok_or_else(|| {
        GlassboxError::InvalidInput(format!(
            "objective {:?} needs a tokenizer with a {what} token (a WordPiece tokenizer has \
             [CLS], [SEP], [PAD] and [MASK])",
            objective.name()
        ))
    })
}

/// Mean of a scalar tensor's value.
fn scalar(t: &Tensor) -> Result<f32> {
    Ok(t.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?)
}

/// Row-wise arg-max of `[n, c]` logits.
fn argmax_rows(logits: &Tensor) -> Result<Vec<u32>> {
    Ok(logits.argmax(D::Minus1)?.to_vec1::<u32>()?)
}

/// Indices of the examples micro-batch `draw` uses: consecutive slices of a fresh shuffle per
/// epoch, so each example is seen once per epoch.
fn epoch_indices(n: usize, batch: usize, draw: u64, seed: u64) -> Vec<usize> {
    let mut shuffles: HashMap<usize, Vec<usize>> = HashMap::new();
    let start = draw as usize * batch;
    (start..start + batch)
        .map(|global| {
            let epoch = global / n;
            let order = shuffles.entry(epoch).or_insert_with(|| {
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut rng_for(seed, SHUFFLE_STREAM, epoch as u64));
                order
            });
            order[global % n]
        })
        .collect()
}

/// Data from a file or the built-in generator, split into train and validation.
fn load_split<T: Clone>(
    config: &TrainConfig,
    read: impl Fn(&Path) -> Result<Vec<T>>,
    builtin: impl Fn(u64, usize) -> Vec<T>,
    builtin_name: &str,
) -> Result<(Vec<T>, Vec<T>, String)> {
    let data = &config.data;
    let (all, source) = match &data.path {
        Some(path) => (read(path)?, path.display().to_string()),
        None => (
            builtin(config.seed, data.builtin_size),
            format!("built-in {builtin_name} ({} examples)", data.builtin_size),
        ),
    };
    let (train, val) = match &data.val_path {
        Some(path) => (all, read(path)?),
        None => data::train_val_split(&all, data.val_fraction as f32, config.seed),
    };
    if train.is_empty() {
        return Err(GlassboxError::InvalidInput(format!(
            "{source}: no training examples"
        )));
    }
    Ok((train, val, source))
}

// ---------------------------------------------------------------------------------------------
// Causal LM
// ---------------------------------------------------------------------------------------------

/// GPT pretraining on a corpus: random windows, each token predicts the next (nanoGPT).
struct CausalLmTask {
    train: TokenStream,
    val_batches: Vec<Batch<TokenTargets>>,
    batch_size: usize,
    seq_len: usize,
    seed: u64,
    summary: DataSummary,
}

impl CausalLmTask {
    fn prepare(setup: TaskSetup<'_>) -> Result<(Box<dyn Task>, Tokenizer)> {
        let config = setup.config;
        let (text, source) = match &config.data.path {
            Some(path) => (data::read_corpus(path)?, path.display().to_string()),
            None => (
                data::toy_english_corpus(config.seed, config.data.builtin_size),
                format!(
                    "built-in toy-English corpus ({} sentences)",
                    config.data.builtin_size
                ),
            ),
        };
        let (train_text, val_text) = match &config.data.val_path {
            Some(path) => (text, data::read_corpus(path)?),
            None => data::split_text(&text, config.data.val_fraction as f32),
        };
        let tokenizer = match setup.tokenizer {
            Some(t) => t,
            None => train_tokenizer(config, &train_text)?,
        };
        let train = TokenStream::new(encode_corpus(&tokenizer, &train_text)?);
        let val = TokenStream::new(encode_corpus(&tokenizer, &val_text)?);
        let t = &config.training;
        // Fixed validation windows, spread over the whole held-out text, the same at every eval.
        let val_batches = (0..t.eval_batches.max(1))
            .map(|i| {
                let mut rng = rng_for(config.seed, EVAL_STREAM, i as u64);
                lm_batch(&val, t.batch_size, setup.seq_len, &mut rng, setup.device)
            })
            .collect::<Result<Vec<_>>>()
            .map_err(|e| {
                GlassboxError::InvalidInput(format!("validation text of {source}: {e}"))
            })?;
        let summary = DataSummary {
            train_examples: train.len().saturating_sub(setup.seq_len),
            val_examples: val.len().saturating_sub(setup.seq_len),
            train_tokens: train.len(),
            source,
        };
        let task = CausalLmTask {
            train,
            val_batches,
            batch_size: t.batch_size,
            seq_len: setup.seq_len,
            seed: config.seed,
            summary,
        };
        Ok((Box::new(task), tokenizer))
    }
}

fn lm_batch(
    stream: &TokenStream,
    batch: usize,
    seq_len: usize,
    rng: &mut StdRng,
    device: &Device,
) -> Result<Batch<TokenTargets>> {
    let (inputs, targets) = stream.random_batch(batch, seq_len, rng)?;
    let flat_targets: Vec<u32> = targets.into_iter().flatten().collect();
    let targets = TokenTargets::All(Tensor::new(flat_targets, device)?);
    Ok(Batch::new(
        ids_tensor(&inputs, device)?,
        targets,
        batch * seq_len,
    ))
}

/// Mean loss over fixed batches (each batch weighted by its target count).
fn mean_token_loss(model: &Model, batches: &[Batch<TokenTargets>]) -> Result<(f64, usize)> {
    let mut loss_sum = 0f64;
    let mut count = 0usize;
    for batch in batches {
        let loss = token_loss(&batch.forward(model)?, &batch.targets)?;
        let n = batch.targets.count()?;
        loss_sum += f64::from(scalar(&loss)?) * n as f64;
        count += n;
    }
    Ok((loss_sum / count.max(1) as f64, count))
}

impl CausalLmTask {
    /// Micro-batch number `draw` of the run.
    fn train_batch(&self, draw: u64, device: &Device) -> Result<Batch<TokenTargets>> {
        let mut rng = rng_for(self.seed, TRAIN_STREAM, draw);
        lm_batch(&self.train, self.batch_size, self.seq_len, &mut rng, device)
    }
}

impl Task for CausalLmTask {
    fn train_loss(&self, model: &Model, draw: u64, device: &Device) -> Result<MicroBatch> {
        micro_batch(
            model,
            || self.train_batch(draw, device),
            |batch| fused_token_step(model, batch),
            token_loss_only,
        )
    }
    fn evaluate(&self, model: &Model, _device: &Device) -> Result<Evaluation> {
        let (loss, _) = mean_token_loss(model, &self.val_batches)?;
        Ok(Evaluation {
            val_loss: loss as f32,
            metrics: BTreeMap::from([("perplexity".to_string(), perplexity(loss))]),
            confusion: None,
        })
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["perplexity"]
    }

    fn summary(&self) -> DataSummary {
        self.summary.clone()
    }

    fn default_probe_text(&self) -> String {
        "the cat chased the".into()
    }
}

// ---------------------------------------------------------------------------------------------
// Masked LM (+ next-sentence prediction)
// ---------------------------------------------------------------------------------------------

/// BERT pretraining: 15% of tokens to predict (80% [MASK], 10% random, 10% kept); with NSP,
/// inputs are sentence pairs and half the second sentences are the true next one.
struct MaskedLmTask {
    /// Training documents, each a list of sentences.
    train_documents: Vec<Vec<String>>,
    /// Token ids of every sentence.
    sentence_ids: HashMap<String, Vec<u32>>,
    /// All training sentences' tokens in order (MLM without NSP cuts windows from it).
    train_stream: TokenStream,
    val_batches: Vec<Batch<PretrainingTargets>>,
    next_sentence: bool,
    specials: BertSpecials,
    vocab_size: usize,
    batch_size: usize,
    seq_len: usize,
    seed: u64,
    summary: DataSummary,
}

#[derive(Debug, Clone, Copy)]
struct BertSpecials {
    cls: u32,
    sep: u32,
    pad: u32,
    mask: u32,
}

impl BertSpecials {
    fn of(tokenizer: &Tokenizer, objective: Objective) -> Result<Self> {
        Ok(Self {
            cls: required_token(tokenizer.cls_token(), "[CLS]", objective)?,
            sep: required_token(tokenizer.sep_token(), "[SEP]", objective)?,
            pad: required_token(tokenizer.pad_token(), "[PAD]", objective)?,
            mask: required_token(tokenizer.mask_token(), "[MASK]", objective).unwrap_or(u32::MAX),
        })
    }
}

/// Documents from a text file: blank lines separate documents, each other line is a sentence.
fn documents_from_text(text: &str) -> Vec<Vec<String>> {
    let mut documents = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            if !current.is_empty() {
                documents.push(std::mem::take(&mut current));
            }
        } else {
            current.push(line.to_string());
        }
    }
    if !current.is_empty() {
        documents.push(current);
    }
    documents
}

/// One input row: `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`, longest part trimmed to fit.
fn bert_row(
    first: &[u32],
    second: Option<&[u32]>,
    specials: BertSpecials,
    seq_len: usize,
) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let reserved = if second.is_some() { 3 } else { 2 };
    let budget = seq_len.saturating_sub(reserved);
    let mut a = first.len();
    let mut b = second.map_or(0, <[u32]>::len);
    // Trim the longer part one token at a time (transformers' "longest_first").
    while a + b > budget {
        if a >= b && a > 0 {
            a -= 1;
        } else if b > 0 {
            b -= 1;
        } else {
            break;
        }
    }
    let mut ids = vec![specials.cls];
    ids.extend(&first[..a]);
    ids.push(specials.sep);
    let mut types = vec![0; ids.len()];
    if let Some(second) = second {
        ids.extend(&second[..b]);
        ids.push(specials.sep);
        types.resize(ids.len(), 1);
    }
    let special_mask: Vec<u32> = ids
        .iter()
        .enumerate()
        .map(|(i, _)| u32::from(i == 0 || i == a + 1 || (second.is_some() && i == ids.len() - 1)))
        .collect();
    (ids, types, special_mask)
}

/// Pads rows (ids, segment ids) to the longest and builds the batch's input tensors; the
/// objective adds its targets ([`Batch::with_targets`]).
fn padded_batch(
    rows: Vec<(Vec<u32>, Vec<u32>)>,
    pad_id: u32,
    device: &Device,
) -> Result<Batch<()>> {
    let (ids, types): (Vec<Vec<u32>>, Vec<Vec<u32>>) = rows.into_iter().unzip();
    let tokens = ids.iter().map(Vec::len).sum();
    let (ids, attention) = data::pad_batch(&ids, pad_id);
    let (types, _) = data::pad_batch(&types, 0);
    let any_padding = attention.iter().any(|row| row.contains(&0));
    let mut batch = Batch::new(ids_tensor(&ids, device)?, (), tokens);
    batch.token_type_ids = Some(ids_tensor(&types, device)?);
    if any_padding {
        batch.padding = Some(attention);
    }
    Ok(batch)
}

/// Token targets from per-row labels ([`IGNORE_INDEX`] where no loss is wanted), padded to the
/// batch's `width`.
fn padded_labels(labels: Vec<Vec<i64>>, width: usize, device: &Device) -> Result<TokenTargets> {
    let flat: Vec<i64> = labels
        .into_iter()
        .flat_map(|mut row| {
            row.resize(width, IGNORE_INDEX);
            row
        })
        .collect();
    TokenTargets::from_labels(&flat, device)
}

impl MaskedLmTask {
    fn prepare(setup: TaskSetup<'_>) -> Result<(Box<dyn Task>, Tokenizer)> {
        let config = setup.config;
        let (documents, source) = match &config.data.path {
            Some(path) => (
                documents_from_text(&data::read_corpus(path)?),
                path.display().to_string(),
            ),
            None => (
                data::nsp_documents(config.seed, config.data.builtin_size),
                format!(
                    "built-in toy-English stories ({} documents)",
                    config.data.builtin_size
                ),
            ),
        };
        let (train_documents, val_documents) = match &config.data.val_path {
            Some(path) => (documents, documents_from_text(&data::read_corpus(path)?)),
            None => data::train_val_split(&documents, config.data.val_fraction as f32, config.seed),
        };
        if train_documents.is_empty() || val_documents.is_empty() {
            return Err(GlassboxError::InvalidInput(format!(
                "{source}: masked LM needs documents for both training and validation (got {} \
                 and {}); separate documents with blank lines",
                train_documents.len(),
                val_documents.len()
            )));
        }
        let train_text: String = train_documents
            .iter()
            .flatten()
            .map(|s| format!("{s}\n"))
            .collect();
        let tokenizer = match setup.tokenizer {
            Some(t) => t,
            None => train_tokenizer(config, &train_text)?,
        };
        let specials = BertSpecials::of(&tokenizer, config.objective)?;
        if specials.mask == u32::MAX {
            return Err(GlassboxError::InvalidInput(
                "masked LM needs a tokenizer with a [MASK] token; use tokenizer.kind = \
                 \"wordpiece\""
                    .into(),
            ));
        }
        let mut sentence_ids = HashMap::new();
        for sentence in train_documents.iter().chain(&val_documents).flatten() {
            if !sentence_ids.contains_key(sentence) {
                sentence_ids.insert(sentence.clone(), tokenizer.encode(sentence, false)?.ids);
            }
        }
        let stream_of = |docs: &[Vec<String>]| {
            TokenStream::new(
                docs.iter()
                    .flatten()
                    .flat_map(|s| sentence_ids[s].iter().copied())
                    .collect(),
            )
        };
        let train_stream = stream_of(&train_documents);
        let val_stream = stream_of(&val_documents);
        let summary = DataSummary {
            train_examples: train_documents.len(),
            val_examples: val_documents.len(),
            train_tokens: train_stream.len(),
            source,
        };
        let mut task = MaskedLmTask {
            train_documents,
            sentence_ids,
            train_stream,
            val_batches: Vec::new(),
            next_sentence: config.next_sentence,
            specials,
            vocab_size: tokenizer.vocab_size(),
            batch_size: config.training.batch_size,
            seq_len: setup.seq_len,
            seed: config.seed,
            summary,
        };
        task.val_batches = (0..config.training.eval_batches.max(1))
            .map(|i| {
                let mut rng = rng_for(config.seed, EVAL_STREAM, i as u64);
                task.make_batch(&val_documents, &val_stream, &mut rng, setup.device)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((Box::new(task), tokenizer))
    }

    fn make_batch(
        &self,
        documents: &[Vec<String>],
        stream: &TokenStream,
        rng: &mut StdRng,
        device: &Device,
    ) -> Result<Batch<PretrainingTargets>> {
        let mut rows = Vec::with_capacity(self.batch_size);
        let mut nsp_labels = Vec::new();
        if self.next_sentence {
            let pair_seed = rand::Rng::random::<u64>(rng);
            let pairs = data::make_nsp_pairs(documents, self.batch_size, pair_seed);
            if pairs.is_empty() {
                return Err(GlassboxError::InvalidInput(
                    "next-sentence prediction needs documents with at least two sentences".into(),
                ));
            }
            for pair in pairs {
                let first = &self.sentence_ids[&pair.first];
                let second = &self.sentence_ids[&pair.second];
                rows.push(bert_row(first, Some(second), self.specials, self.seq_len));
                nsp_labels.push(if pair.is_next { 0u32 } else { 1 });
            }
        } else {
            // Windows of seq_len - 2 tokens (room for [CLS] and [SEP]), shorter if the text is.
            let longest = stream.len().saturating_sub(1);
            let window = match self.seq_len.saturating_sub(2).min(longest) {
                0 => 1,
                n => n,
            };
            let (windows, _) = stream.random_batch(self.batch_size, window, rng)?;
            for w in windows {
                rows.push(bert_row(&w, None, self.specials, self.seq_len));
            }
        }
        let masking = MaskingConfig::default();
        let mut inputs = Vec::with_capacity(rows.len());
        let mut labels = Vec::with_capacity(rows.len());
        for (ids, types, special_mask) in rows {
            let (masked, row_labels) = data::mask_tokens(
                &ids,
                &special_mask,
                self.specials.mask,
                self.vocab_size,
                &masking,
                rng,
            );
            inputs.push((masked, types));
            labels.push(row_labels);
        }
        let batch = padded_batch(inputs, self.specials.pad, device)?;
        let tokens = padded_labels(labels, batch.input_ids.dim(1)?, device)?;
        let next_sentence = match self.next_sentence {
            true => Some(Tensor::new(nsp_labels, device)?),
            false => None,
        };
        Ok(batch.with_targets(PretrainingTargets {
            tokens,
            next_sentence,
        }))
    }
}

/// BERT pretraining's targets: the masked tokens and, with next-sentence prediction, `[b]`
/// labels (0 when the second sentence follows the first, BERT's convention; 1 when random).
#[derive(Debug, Clone)]
struct PretrainingTargets {
    tokens: TokenTargets,
    next_sentence: Option<Tensor>,
}

/// Masked-LM loss, plus the next-sentence loss when there are pairs.
fn pretraining_loss(output: &ModelOutput, targets: &PretrainingTargets) -> Result<LossBreakdown> {
    let mut parts = vec![("token_loss", token_loss(output, &targets.tokens)?)];
    if let Some(labels) = &targets.next_sentence {
        let logits = output
            .nsp_logits
            .as_ref()
            .ok_or_else(|| missing_head("next-sentence"))?;
        parts.push(("nsp_loss", candle_nn::loss::cross_entropy(logits, labels)?));
    }
    LossBreakdown::of(parts)
}

impl MaskedLmTask {
    /// Micro-batch number `draw` of the run.
    fn train_batch(&self, draw: u64, device: &Device) -> Result<Batch<PretrainingTargets>> {
        let mut rng = rng_for(self.seed, TRAIN_STREAM, draw);
        self.make_batch(&self.train_documents, &self.train_stream, &mut rng, device)
    }
}

impl Task for MaskedLmTask {
    fn train_loss(&self, model: &Model, draw: u64, device: &Device) -> Result<MicroBatch> {
        micro_batch(
            model,
            || self.train_batch(draw, device),
            graph_only,
            pretraining_loss,
        )
    }
    fn evaluate(&self, model: &Model, _device: &Device) -> Result<Evaluation> {
        let mut sums: BTreeMap<&str, f64> = BTreeMap::new();
        let (mut masked_right, mut masked_total) = (0usize, 0usize);
        let (mut nsp_right, mut nsp_total) = (0usize, 0usize);
        for batch in &self.val_batches {
            let output = batch.forward(model)?;
            let loss = pretraining_loss(&output, &batch.targets)?;
            *sums.entry("val_loss").or_default() += f64::from(scalar(&loss.total)?);
            for (name, part) in &loss.parts {
                *sums.entry(name).or_default() += f64::from(scalar(part)?);
            }
            if let Some(logits) = &output.logits {
                let (rows, targets) = batch.targets.tokens.select(logits)?;
                let predicted = argmax_rows(&rows)?;
                let truth = targets.to_vec1::<u32>()?;
                masked_right += predicted.iter().zip(&truth).filter(|(p, t)| p == t).count();
                masked_total += truth.len();
            }
            if let (Some(labels), Some(logits)) = (&batch.targets.next_sentence, &output.nsp_logits)
            {
                let predicted = argmax_rows(logits)?;
                let truth = labels.to_vec1::<u32>()?;
                nsp_right += predicted.iter().zip(&truth).filter(|(p, t)| p == t).count();
                nsp_total += truth.len();
            }
        }
        let batches = self.val_batches.len().max(1) as f64;
        let mean = |name: &str| sums.get(name).copied().unwrap_or(0.0) / batches;
        let mut metrics = BTreeMap::new();
        metrics.insert("mlm_loss".to_string(), mean("token_loss"));
        metrics.insert(
            "mlm_accuracy".to_string(),
            masked_right as f64 / masked_total.max(1) as f64,
        );
        metrics.insert("mlm_perplexity".to_string(), perplexity(mean("token_loss")));
        if self.next_sentence {
            metrics.insert("nsp_loss".to_string(), mean("nsp_loss"));
            metrics.insert(
                "nsp_accuracy".to_string(),
                nsp_right as f64 / nsp_total.max(1) as f64,
            );
        }
        Ok(Evaluation {
            val_loss: mean("val_loss") as f32,
            metrics,
            confusion: None,
        })
    }

    fn metric_names(&self) -> Vec<&'static str> {
        let mut names = vec!["mlm_loss", "mlm_accuracy", "mlm_perplexity"];
        if self.next_sentence {
            names.extend(["nsp_loss", "nsp_accuracy"]);
        }
        names
    }

    fn summary(&self) -> DataSummary {
        self.summary.clone()
    }

    fn default_probe_text(&self) -> String {
        "the cat chased the [MASK] .".into()
    }
}

// ---------------------------------------------------------------------------------------------
// Sequence classification
// ---------------------------------------------------------------------------------------------

/// Fine-tuning a BERT to label texts: `[CLS] text [SEP]`, the pooled `[CLS]` into a linear head.
struct ClassificationTask {
    /// (ids with [CLS]/[SEP], label index)
    train: Vec<(Vec<u32>, u32)>,
    val: Vec<(Vec<u32>, u32)>,
    labels: Vec<String>,
    specials: BertSpecials,
    batch_size: usize,
    seed: u64,
    first_val_text: String,
    summary: DataSummary,
}

impl ClassificationTask {
    fn prepare(setup: TaskSetup<'_>) -> Result<(Box<dyn Task>, Tokenizer)> {
        let config = setup.config;
        let (train, val, source) = load_split(
            config,
            data::read_classification_csv,
            data::sentiment_dataset,
            "sentiment set",
        )?;
        // The classes are the training labels: a label seen only in validation has no
        // examples to learn from, and would become a class the head is never trained on.
        let labels = data::label_names(&train);
        if labels.len() < 2 {
            return Err(GlassboxError::InvalidInput(format!(
                "{source}: classification needs at least two labels in the training data, \
                 found {labels:?}"
            )));
        }
        let mut unseen: Vec<&str> = val
            .iter()
            .map(|e| e.label.as_str())
            .filter(|label| !labels.iter().any(|l| l == label))
            .collect();
        unseen.sort_unstable();
        unseen.dedup();
        if !unseen.is_empty() {
            return Err(GlassboxError::InvalidInput(format!(
                "{source}: the validation data has label(s) {unseen:?} that the training data \
                 never uses (training labels: {labels:?}); add training examples for them or \
                 remove them from the validation data"
            )));
        }
        let tokenizer = setup.tokenizer.ok_or_else(|| {
            GlassboxError::InvalidInput("classification needs the checkpoint's tokenizer".into())
        })?;
        let specials = BertSpecials::of(&tokenizer, config.objective)?;
        let encode = |examples: &[ClassificationExample]| -> Result<Vec<(Vec<u32>, u32)>> {
            examples
                .iter()
                .map(|e| {
                    let ids = tokenizer.encode(&e.text, false)?.ids;
                    let (row, _, _) = bert_row(&ids, None, specials, setup.seq_len);
                    // Every label is in `labels` (checked above).
                    let label = labels.iter().position(|l| *l == e.label).unwrap_or(0) as u32;
                    Ok((row, label))
                })
                .collect()
        };
        let task = ClassificationTask {
            train: encode(&train)?,
            val: encode(&val)?,
            summary: DataSummary {
                train_examples: train.len(),
                val_examples: val.len(),
                train_tokens: 0,
                source,
            },
            first_val_text: val
                .first()
                .or(train.first())
                .map(|e| e.text.clone())
                .unwrap_or_default(),
            labels,
            specials,
            batch_size: config.training.batch_size,
            seed: config.seed,
        };
        Ok((Box::new(task), tokenizer))
    }

    /// Padded texts with their `[b]` class indices as targets.
    fn batch_of(&self, examples: &[&(Vec<u32>, u32)], device: &Device) -> Result<Batch<Tensor>> {
        let rows = examples
            .iter()
            .map(|(ids, _)| (ids.clone(), vec![0; ids.len()]))
            .collect();
        let batch = padded_batch(rows, self.specials.pad, device)?;
        let labels: Vec<u32> = examples.iter().map(|(_, l)| *l).collect();
        Ok(batch.with_targets(Tensor::new(labels, device)?))
    }
}

/// Cross-entropy of the classifier's logits against the class indices.
fn class_loss(output: &ModelOutput, labels: &Tensor) -> Result<LossBreakdown> {
    let logits = output
        .class_logits
        .as_ref()
        .ok_or_else(|| missing_head("classifier"))?;
    LossBreakdown::of(vec![(
        "class_loss",
        candle_nn::loss::cross_entropy(logits, labels)?,
    )])
}

impl ClassificationTask {
    /// Micro-batch number `draw` of the run.
    fn train_batch(&self, draw: u64, device: &Device) -> Result<Batch<Tensor>> {
        let picked: Vec<&(Vec<u32>, u32)> =
            epoch_indices(self.train.len(), self.batch_size, draw, self.seed)
                .into_iter()
                .map(|i| &self.train[i])
                .collect();
        self.batch_of(&picked, device)
    }
}

impl Task for ClassificationTask {
    fn train_loss(&self, model: &Model, draw: u64, device: &Device) -> Result<MicroBatch> {
        micro_batch(
            model,
            || self.train_batch(draw, device),
            graph_only,
            class_loss,
        )
    }
    fn evaluate(&self, model: &Model, device: &Device) -> Result<Evaluation> {
        let mut truth = Vec::new();
        let mut predicted = Vec::new();
        let mut loss_sum = 0f64;
        for chunk in self.val.chunks(self.batch_size.max(1)) {
            let examples: Vec<&(Vec<u32>, u32)> = chunk.iter().collect();
            let batch = self.batch_of(&examples, device)?;
            let output = batch.forward(model)?;
            let loss = class_loss(&output, &batch.targets)?;
            loss_sum += f64::from(scalar(&loss.total)?) * chunk.len() as f64;
            let logits = output
                .class_logits
                .as_ref()
                .ok_or_else(|| missing_head("classifier"))?;
            predicted.extend(argmax_rows(logits)?.into_iter().map(|p| p as usize));
            truth.extend(chunk.iter().map(|(_, l)| *l as usize));
        }
        let confusion = ConfusionMatrix::new(self.labels.clone(), &truth, &predicted);
        let metrics = BTreeMap::from([
            ("accuracy".to_string(), confusion.accuracy()),
            ("macro_f1".to_string(), confusion.macro_f1()),
        ]);
        Ok(Evaluation {
            val_loss: (loss_sum / self.val.len().max(1) as f64) as f32,
            metrics,
            confusion: Some(confusion),
        })
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["accuracy", "macro_f1"]
    }

    fn summary(&self) -> DataSummary {
        self.summary.clone()
    }

    fn default_probe_text(&self) -> String {
        self.first_val_text.clone()
    }

    fn labels(&self) -> Option<Vec<String>> {
        Some(self.labels.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Extractive QA
// ---------------------------------------------------------------------------------------------

/// One QA input: `[CLS] question [SEP] context [SEP]` and where the answer lies in it.
#[derive(Debug, Clone)]
struct QaFeature {
    ids: Vec<u32>,
    type_ids: Vec<u32>,
    /// Token positions of the answer's first and last token (0, 0 when cut off by truncation).
    start: u32,
    end: u32,
    /// Position of the first context token, and each context token's byte range in the context.
    context_start: usize,
    context_offsets: Vec<(usize, usize)>,
    context: String,
    answer: String,
    /// Whether the answer survived truncation.
    answerable: bool,
}

/// Fine-tuning a BERT to point at the answer span in a context.
struct QaTask {
    train: Vec<QaFeature>,
    val: Vec<QaFeature>,
    specials: BertSpecials,
    batch_size: usize,
    seed: u64,
    summary: DataSummary,
}

/// Longest answer, in tokens, the evaluation considers (as the SQuAD scripts).
const MAX_ANSWER_TOKENS: usize = 30;

fn qa_feature(
    tokenizer: &Tokenizer,
    example: &QaExample,
    specials: BertSpecials,
    seq_len: usize,
) -> Result<QaFeature> {
    let question = tokenizer.encode(&example.question, false)?;
    let context = tokenizer.encode(&example.context, false)?;
    // [CLS] question [SEP] context [SEP]; the context is what gets cut when too long.
    let question_len = question.ids.len().min(seq_len.saturating_sub(4) / 2);
    let context_len = context
        .ids
        .len()
        .min(seq_len.saturating_sub(question_len + 3));
    let context_start = question_len + 2;
    let mut ids = vec![specials.cls];
    ids.extend(&question.ids[..question_len]);
    ids.push(specials.sep);
    ids.extend(&context.ids[..context_len]);
    ids.push(specials.sep);
    let mut type_ids = vec![0; context_start];
    type_ids.resize(ids.len(), 1);
    let context_offsets = context.offsets[..context_len].to_vec();

    // Answer byte range → first token ending after its start, last token starting before its end.
    let answer_start = example.answer_start;
    let answer_end = answer_start + example.answer.len();
    let first = context_offsets
        .iter()
        .position(|&(_, end)| end > answer_start);
    let last = context_offsets
        .iter()
        .rposition(|&(start, _)| start < answer_end);
    let covered_end = context_offsets.last().map_or(0, |&(_, end)| end);
    let (start, end, answerable) = match (first, last) {
        (Some(f), Some(l)) if f <= l && answer_end <= covered_end => {
            ((context_start + f) as u32, (context_start + l) as u32, true)
        }
        // Cut off by truncation (or an empty answer): point at [CLS], as transformers does.
        _ => (0, 0, false),
    };
    Ok(QaFeature {
        ids,
        type_ids,
        start,
        end,
        context_start,
        context_offsets,
        context: example.context.clone(),
        answer: example.answer.clone(),
        answerable,
    })
}

/// The best span (start ≤ end, inside the context, at most [`MAX_ANSWER_TOKENS`]) by
/// start + end logit; returns context-token indices.
fn best_span(start_logits: &[f32], end_logits: &[f32], feature: &QaFeature) -> (usize, usize) {
    let n = feature.context_offsets.len();
    let mut best = (0, 0);
    let mut best_score = f32::NEG_INFINITY;
    for i in 0..n {
        for j in i..n.min(i + MAX_ANSWER_TOKENS) {
            let score =
                start_logits[feature.context_start + i] + end_logits[feature.context_start + j];
            if score > best_score {
                best_score = score;
                best = (i, j);
            }
        }
    }
    best
}

impl QaTask {
    fn prepare(setup: TaskSetup<'_>) -> Result<(Box<dyn Task>, Tokenizer)> {
        let config = setup.config;
        let (train, val, source) = load_split(config, data::read_qa, data::qa_dataset, "QA set")?;
        let tokenizer = setup.tokenizer.ok_or_else(|| {
            GlassboxError::InvalidInput("QA needs the checkpoint's tokenizer".into())
        })?;
        let specials = BertSpecials::of(&tokenizer, config.objective)?;
        let features = |examples: &[QaExample]| -> Result<Vec<QaFeature>> {
            examples
                .iter()
                .map(|e| qa_feature(&tokenizer, e, specials, setup.seq_len))
                .collect()
        };
        // Training only learns from answers that survived truncation; evaluation keeps all.
        let train_features: Vec<QaFeature> = features(&train)?
            .into_iter()
            .filter(|f| f.answerable)
            .collect();
        if train_features.is_empty() {
            return Err(GlassboxError::InvalidInput(format!(
                "{source}: no training example has its answer within {} tokens; raise \
                 training.seq_len",
                setup.seq_len
            )));
        }
        let task = QaTask {
            summary: DataSummary {
                train_examples: train_features.len(),
                val_examples: val.len(),
                train_tokens: 0,
                source,
            },
            train: train_features,
            val: features(&val)?,
            specials,
            batch_size: config.training.batch_size,
            seed: config.seed,
        };
        Ok((Box::new(task), tokenizer))
    }

    /// Padded question + context pairs with their answers' spans as targets.
    fn batch_of(&self, features: &[&QaFeature], device: &Device) -> Result<Batch<Spans>> {
        let rows = features
            .iter()
            .map(|f| (f.ids.clone(), f.type_ids.clone()))
            .collect();
        let batch = padded_batch(rows, self.specials.pad, device)?;
        let starts: Vec<u32> = features.iter().map(|f| f.start).collect();
        let ends: Vec<u32> = features.iter().map(|f| f.end).collect();
        Ok(batch.with_targets(Spans {
            start: Tensor::new(starts, device)?,
            end: Tensor::new(ends, device)?,
        }))
    }
}

/// The answers' first and last token positions, `[b]` each.
#[derive(Debug, Clone)]
struct Spans {
    start: Tensor,
    end: Tensor,
}

/// As `BertForQuestionAnswering`: the mean of the start and end cross-entropies.
fn span_loss(output: &ModelOutput, spans: &Spans) -> Result<LossBreakdown> {
    let start_logits = output
        .start_logits
        .as_ref()
        .ok_or_else(|| missing_head("QA"))?;
    let end_logits = output
        .end_logits
        .as_ref()
        .ok_or_else(|| missing_head("QA"))?;
    let start_loss = candle_nn::loss::cross_entropy(start_logits, &spans.start)?;
    let end_loss = candle_nn::loss::cross_entropy(end_logits, &spans.end)?;
    LossBreakdown::of(vec![("span_loss", ((start_loss + end_loss)? * 0.5)?)])
}

impl QaTask {
    /// Micro-batch number `draw` of the run.
    fn train_batch(&self, draw: u64, device: &Device) -> Result<Batch<Spans>> {
        let picked: Vec<&QaFeature> =
            epoch_indices(self.train.len(), self.batch_size, draw, self.seed)
                .into_iter()
                .map(|i| &self.train[i])
                .collect();
        self.batch_of(&picked, device)
    }
}

impl Task for QaTask {
    fn train_loss(&self, model: &Model, draw: u64, device: &Device) -> Result<MicroBatch> {
        micro_batch(
            model,
            || self.train_batch(draw, device),
            graph_only,
            span_loss,
        )
    }
    fn evaluate(&self, model: &Model, device: &Device) -> Result<Evaluation> {
        let (mut em_sum, mut f1_sum, mut loss_sum) = (0f64, 0f64, 0f64);
        for chunk in self.val.chunks(self.batch_size.max(1)) {
            let features: Vec<&QaFeature> = chunk.iter().collect();
            let batch = self.batch_of(&features, device)?;
            let output = batch.forward(model)?;
            let loss = span_loss(&output, &batch.targets)?;
            loss_sum += f64::from(scalar(&loss.total)?) * chunk.len() as f64;
            let (Some(starts), Some(ends)) = (&output.start_logits, &output.end_logits) else {
                return Err(GlassboxError::Training("the model has no QA head".into()));
            };
            let starts = starts.to_vec2::<f32>()?;
            let ends = ends.to_vec2::<f32>()?;
            for (row, feature) in chunk.iter().enumerate() {
                let (i, j) = best_span(&starts[row], &ends[row], feature);
                let predicted = match (
                    feature.context_offsets.get(i),
                    feature.context_offsets.get(j),
                ) {
                    (Some(&(from, _)), Some(&(_, to))) => {
                        feature.context.get(from..to).unwrap_or("")
                    }
                    _ => "",
                };
                em_sum += exact_match(predicted, &feature.answer);
                f1_sum += token_f1(predicted, &feature.answer);
            }
        }
        let n = self.val.len().max(1) as f64;
        Ok(Evaluation {
            val_loss: (loss_sum / n) as f32,
            metrics: BTreeMap::from([
                ("exact_match".to_string(), em_sum / n),
                ("f1".to_string(), f1_sum / n),
            ]),
            confusion: None,
        })
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["exact_match", "f1"]
    }

    fn summary(&self) -> DataSummary {
        self.summary.clone()
    }

    fn default_probe_text(&self) -> String {
        self.val
            .first()
            .map(|f| f.context.clone())
            .unwrap_or_else(|| "the cat sat on the red mat .".into())
    }
}

// ---------------------------------------------------------------------------------------------
// Generation (prompt → completion)
// ---------------------------------------------------------------------------------------------

/// Fine-tuning a GPT on prompt/completion pairs; the loss counts completion tokens only.
struct GenerationTask {
    /// (prompt + completion ids, number of prompt tokens)
    train: Vec<(Vec<u32>, usize)>,
    val: Vec<(Vec<u32>, usize)>,
    pad_id: u32,
    batch_size: usize,
    seed: u64,
    first_prompt: String,
    summary: DataSummary,
}

impl GenerationTask {
    fn prepare(setup: TaskSetup<'_>) -> Result<(Box<dyn Task>, Tokenizer)> {
        let config = setup.config;
        let (train, val, source) = load_split(
            config,
            data::read_generation_jsonl,
            data::generation_dataset,
            "prompt/completion set",
        )?;
        let tokenizer = setup.tokenizer.ok_or_else(|| {
            GlassboxError::InvalidInput("generation needs the checkpoint's tokenizer".into())
        })?;
        let eos = tokenizer.eos_token().map(|(_, id)| id);
        let encode = |examples: &[GenerationExample]| -> Result<Vec<(Vec<u32>, usize)>> {
            let mut out = Vec::new();
            for e in examples {
                let mut prompt = tokenizer.encode(&e.prompt, false)?.ids;
                let mut completion = tokenizer.encode(&e.completion, false)?.ids;
                // The end-of-text token teaches the model to stop, when the tokenizer has one.
                completion.extend(eos);
                // Too long: keep the end of the prompt and as much completion as fits.
                completion.truncate(setup.seq_len);
                let prompt_room = setup.seq_len + 1 - completion.len().min(setup.seq_len);
                if prompt.len() > prompt_room {
                    prompt.drain(..prompt.len() - prompt_room);
                }
                if completion.is_empty() || prompt.is_empty() {
                    continue;
                }
                let prompt_len = prompt.len();
                prompt.extend(completion);
                out.push((prompt, prompt_len));
            }
            Ok(out)
        };
        let train_rows = encode(&train)?;
        let val_rows = encode(&val)?;
        if train_rows.is_empty() {
            return Err(GlassboxError::InvalidInput(format!(
                "{source}: no example has both a prompt and a completion"
            )));
        }
        let task = GenerationTask {
            summary: DataSummary {
                train_examples: train_rows.len(),
                val_examples: val_rows.len(),
                train_tokens: train_rows.iter().map(|(ids, _)| ids.len()).sum(),
                source,
            },
            train: train_rows,
            val: val_rows,
            pad_id: eos.unwrap_or(0),
            batch_size: config.training.batch_size,
            seed: config.seed,
            first_prompt: val
                .first()
                .or(train.first())
                .map(|e| e.prompt.clone())
                .unwrap_or_default(),
        };
        Ok((Box::new(task), tokenizer))
    }

    /// Inputs are all tokens but the last; position i predicts token i+1, counted only when that
    /// token belongs to the completion.
    fn batch_of(
        &self,
        rows: &[&(Vec<u32>, usize)],
        device: &Device,
    ) -> Result<Batch<TokenTargets>> {
        let mut inputs = Vec::with_capacity(rows.len());
        let mut labels = Vec::with_capacity(rows.len());
        for (ids, prompt_len) in rows {
            inputs.push((ids[..ids.len() - 1].to_vec(), vec![0; ids.len() - 1]));
            labels.push(
                (1..ids.len())
                    .map(|i| {
                        if i >= *prompt_len {
                            i64::from(ids[i])
                        } else {
                            IGNORE_INDEX
                        }
                    })
                    .collect(),
            );
        }
        let mut batch = padded_batch(inputs, self.pad_id, device)?;
        batch.token_type_ids = None;
        let targets = padded_labels(labels, batch.input_ids.dim(1)?, device)?;
        Ok(batch.with_targets(targets))
    }
}

impl GenerationTask {
    /// Micro-batch number `draw` of the run.
    fn train_batch(&self, draw: u64, device: &Device) -> Result<Batch<TokenTargets>> {
        let picked: Vec<&(Vec<u32>, usize)> =
            epoch_indices(self.train.len(), self.batch_size, draw, self.seed)
                .into_iter()
                .map(|i| &self.train[i])
                .collect();
        self.batch_of(&picked, device)
    }
}

impl Task for GenerationTask {
    fn train_loss(&self, model: &Model, draw: u64, device: &Device) -> Result<MicroBatch> {
        micro_batch(
            model,
            || self.train_batch(draw, device),
            |batch| fused_token_step(model, batch),
            token_loss_only,
        )
    }
    fn evaluate(&self, model: &Model, device: &Device) -> Result<Evaluation> {
        let batches = self
            .val
            .chunks(self.batch_size.max(1))
            .map(|chunk| self.batch_of(&chunk.iter().collect::<Vec<_>>(), device))
            .collect::<Result<Vec<_>>>()?;
        let (loss, tokens) = mean_token_loss(model, &batches)?;
        Ok(Evaluation {
            val_loss: loss as f32,
            metrics: BTreeMap::from([
                ("perplexity".to_string(), perplexity(loss)),
                ("completion_tokens".to_string(), tokens as f64),
            ]),
            confusion: None,
        })
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["perplexity", "completion_tokens"]
    }

    fn summary(&self) -> DataSummary {
        self.summary.clone()
    }

    fn default_probe_text(&self) -> String {
        self.first_prompt.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_visit_every_example_once() {
        let n = 10;
        let mut seen: Vec<usize> = (0..5).flat_map(|d| epoch_indices(n, 2, d, 7)).collect();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(epoch_indices(n, 2, 3, 7), epoch_indices(n, 2, 3, 7));
    }

    #[test]
    fn bert_rows_trim_the_longer_part() {
        let specials = BertSpecials {
            cls: 2,
            sep: 3,
            pad: 0,
            mask: 4,
        };
        let (ids, types, special) = bert_row(&[10, 11, 12, 13], Some(&[20, 21]), specials, 7);
        assert_eq!(ids, vec![2, 10, 11, 3, 20, 21, 3]);
        assert_eq!(types, vec![0, 0, 0, 0, 1, 1, 1]);
        assert_eq!(special, vec![1, 0, 0, 1, 0, 0, 1]);
    }

    #[test]
    fn documents_split_on_blank_lines() {
        let docs = documents_from_text("a .\nb .\n\n\nc .\n");
        assert_eq!(docs, vec![vec!["a .", "b ."], vec!["c ."]]);
    }
}
