//! The trainer: one model, one optimizer, one objective, stepped one optimizer step at a time.
//!
//! [`Trainer`] is synchronous and owns everything; [`super::TrainingRun`] drives it on a worker
//! thread. A step is nanoGPT's inner loop: for each micro-batch forward, loss, backward (gradients
//! summed); then clip by the global norm, set the learning rate from the schedule, AdamW update.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::config::{Objective, TrainConfig};
use super::metrics::{ConfusionMatrix, MetricsLog, MetricsRecord};
use super::optim::{AdamW, AdamWSettings, LrSchedule, Param};
use super::params::{ParamStore, Pretrained};
use super::tasks::{self, BatchShape, DataSummary, Task, TaskSetup, TrainLoss};
use crate::error::{GlassboxError, Result};
use crate::model::checkpoint::{
    CONFIG_FILE, CheckpointDir, TOKENIZER_FILE, WEIGHTS_FILE, open_dir, save_dir, write_safetensors,
};
use crate::model::config::{Architecture, BertConfig, FamilyConfig, GptConfig, ModelConfig};
use crate::model::marian::{Marian, MarianConfig, Seq2SeqTrace};
use crate::model::params::ArchSpec;
use crate::model::trace::{Trace, maps_per_head};
use crate::model::{Model, ModelInput, Prefix};
use crate::tokenizer::Tokenizer;

/// The latest checkpoint of a run lives in `OUT_DIR/checkpoint/`.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// Step, seed, recipe and timing of a checkpoint (JSON).
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";
/// AdamW's moments (safetensors, `exp_avg.NAME` / `exp_avg_sq.NAME`).
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The resolved recipe a run was started with.
pub const RECIPE_FILE: &str = "recipe.toml";

/// What a run is, reported once at its start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    pub objective: Objective,
    pub model_config: ModelConfig,
    pub parameters: usize,
    /// Steps already done (non-zero when resumed).
    pub start_step: usize,
    pub total_steps: usize,
    pub seq_len: usize,
    pub tokens_per_step: usize,
    pub vocab_size: usize,
    pub data: DataSummary,
    /// Tensors that started fresh rather than from the checkpoint (new heads when fine-tuning).
    pub fresh_tensors: Vec<String>,
    pub out_dir: Option<PathBuf>,
    pub device: String,
}

/// One optimizer step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepReport {
    /// Steps completed, this one included (1 after the first step).
    pub step: usize,
    pub total_steps: usize,
    /// Mean loss over the step's micro-batches.
    pub train_loss: f32,
    /// The learning rate this step used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Real (non-padding) tokens in the step.
    pub tokens: usize,
    pub tokens_per_sec: f64,
    pub step_ms: f64,
    /// Training time so far (pauses excluded; includes time before a resume).
    pub elapsed_secs: f64,
    /// Estimated time to the last step.
    pub eta_secs: f64,
    /// Where the step's time went.
    pub timings: StepTimings,
    /// The padded shapes of the step's last micro-batch.
    #[serde(default)]
    pub shape: BatchShape,
}

/// Milliseconds of one step by phase (summed over micro-batches).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct StepTimings {
    /// Drawing the batch and building its tensors.
    pub data_ms: f64,
    /// Forward pass and loss.
    pub forward_ms: f64,
    /// Backward pass and summing gradients.
    pub backward_ms: f64,
    /// Gradient norm, clipping and the AdamW update.
    pub optimizer_ms: f64,
}

/// One evaluation on the held-out split.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalReport {
    pub step: usize,
    pub val_loss: f32,
    /// Objective-specific: `perplexity`; `mlm_accuracy`, `nsp_accuracy`; `accuracy`, `macro_f1`;
    /// `exact_match`, `f1`.
    pub metrics: BTreeMap<String, f64>,
    /// Classification only.
    pub confusion: Option<ConfusionMatrix>,
}

/// A fresh trace of the probe text, for watching attention change while the model learns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeReport {
    pub step: usize,
    pub text: String,
    pub tokens: Vec<String>,
    /// `attention[layer][head]`: row-major `[s × s]` probabilities (row = query, column = key).
    pub attention: Vec<Vec<Vec<f32>>>,
    /// What the model makes of the text now: a greedy continuation (GPT), the top fill-mask
    /// predictions (masked LM), the predicted label or answer span (fine-tuning), the greedy
    /// translation (seq2seq).
    pub output: String,
    /// Seq2seq: the translation's cross-attention (`tokens` and `attention` are then the
    /// source's, through the encoder).
    #[serde(default)]
    pub cross: Option<CrossAttentionProbe>,
}

/// What the decoder looked at while it wrote the probe's translation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CrossAttentionProbe {
    /// The translation's tokens (`</s>` last): the rows of each map.
    pub target_tokens: Vec<String>,
    /// `attention[layer][head]`: row-major `[target × source]` probabilities (row = a target
    /// token, column = a source token).
    pub attention: Vec<Vec<Vec<f32>>>,
}

/// What is saved beside the weights to continue a run exactly where it stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: usize,
    /// Every batch is drawn from a generator seeded by (seed, batch number), so the step count is
    /// the whole random state: batch numbers continue at `step × grad_accum`.
    pub seed: u64,
    pub elapsed_secs: f64,
    pub last_val_loss: Option<f32>,
    pub config: TrainConfig,
    pub glassbox_version: String,
}

/// How the model's weights start.
enum WeightsSource {
    /// Fresh, seeded.
    Fresh,
    /// From a checkpoint folder (`model.init_from`): the encoder loaded, new heads fresh.
    Pretrained(PathBuf),
    /// From a run's own checkpoint: everything loaded, then the optimizer state.
    Resume(PathBuf),
}

pub struct Trainer {
    config: TrainConfig,
    device: Device,
    model_config: ModelConfig,
    model: Model,
    store: ParamStore,
    optimizer: AdamW,
    schedule: LrSchedule,
    task: Box<dyn Task>,
    tokenizer: Tokenizer,
    info: RunInfo,
    step: usize,
    /// Training time before this session (a resumed run) plus this session's steps.
    elapsed: Duration,
    /// Smoothed seconds per step, for the ETA.
    seconds_per_step: Option<f64>,
    metrics_log: Option<MetricsLog>,
    last_saved: Option<(usize, PathBuf)>,
    last_eval: Option<EvalReport>,
    /// Threads a step gets: one for small models, where sharing work costs more than it saves.
    threads: usize,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("objective", &self.config.objective)
            .field("step", &self.step)
            .field("total_steps", &self.config.training.steps)
            .finish()
    }
}

impl Trainer {
    /// Prepares a run: reads or generates the data, trains or loads the tokenizer, builds the
    /// model (fresh, or from `model.init_from`) and the optimizer.
    ///
    /// A run never replaces another: an `out_dir` that already holds one is refused (continue it
    /// with [`Trainer::resume`], or clear it first with [`clear_run_dir`]).
    pub fn new(mut config: TrainConfig) -> Result<Self> {
        config.validate()?;
        config.absolutize_paths()?;
        if let Some(dir) = &config.out_dir
            && let Some(found) = existing_run(dir)
        {
            return Err(GlassboxError::InvalidInput(format!(
                "{} already holds a training run ({found}): choose another output folder, or \
                 on the command line continue it with --resume or replace it with --overwrite",
                dir.display()
            )));
        }
        let source = match &config.model.init_from {
            Some(dir) => WeightsSource::Pretrained(dir.clone()),
            None => WeightsSource::Fresh,
        };
        Self::build(config, source, None)
    }

    /// Continues the run saved in `run_dir` (its `checkpoint/` folder) exactly where it stopped.
    /// `overrides` (`section.key=value`) may change e.g. `training.steps` to train longer; keys
    /// the checkpoint fixes (model, data, optimizer, ...) are refused, not ignored.
    pub fn resume(run_dir: &Path, overrides: &[String]) -> Result<Self> {
        let run_dir = std::path::absolute(run_dir).map_err(|e| GlassboxError::io(run_dir, e))?;
        let checkpoint = latest_checkpoint(&run_dir)?;
        let state = read_trainer_state(&checkpoint)?;
        let mut config = state.config.resumed_with(overrides)?;
        // The run folder is where it is now (it may have been moved since it was saved).
        let run_dir = if checkpoint == run_dir {
            run_dir.parent().map_or(run_dir.clone(), Path::to_path_buf)
        } else {
            run_dir
        };
        config.out_dir = Some(run_dir);
        config.validate_for_resume()?;
        Self::build(config, WeightsSource::Resume(checkpoint), Some(state))
    }

    fn build(
        config: TrainConfig,
        source: WeightsSource,
        state: Option<TrainerState>,
    ) -> Result<Self> {
        // A run allocates and frees the same large buffers every step: keep them in the heap
        // instead of fresh mmaps that page-fault in again (a no-op after the first call).
        crate::kernels::tune_allocator();
        let device = crate::device::parse_device(&config.device)?;

        // The starting checkpoint, if any: its config, tokenizer and tensors.
        let (base_config, checkpoint_tokenizer, pretrained) = match &source {
            WeightsSource::Fresh => (None, None, Pretrained::default()),
            WeightsSource::Pretrained(dir) | WeightsSource::Resume(dir) => {
                let (model_config, tokenizer, pretrained) = read_checkpoint(dir)?;
                (Some(model_config), tokenizer, pretrained)
            }
        };
        let tokenizer = match (&config.tokenizer.path, checkpoint_tokenizer) {
            (_, Some(t)) => Some(t),
            (Some(path), None) => Some(load_tokenizer(path)?),
            (None, None) => None,
        };
        if tokenizer.is_none() && config.objective.is_finetuning() {
            return Err(GlassboxError::InvalidInput(format!(
                "fine-tuning needs the checkpoint's {TOKENIZER_FILE} (or tokenizer.path)"
            )));
        }
        let positions = base_config
            .as_ref()
            .map_or(config.model.n_positions, ModelConfig::max_positions);
        if let Some(asked) = config.training.seq_len
            && asked > positions
        {
            return Err(GlassboxError::InvalidInput(format!(
                "training.seq_len is {asked}, but the model has only {positions} positions; \
                 use at most {positions} (or a model with more positions)"
            )));
        }
        let seq_len = config.seq_len(positions);

        let (task, tokenizer) = tasks::prepare_task(TaskSetup {
            config: &config,
            seq_len,
            tokenizer,
            device: &device,
        })?;

        let (model_config, pretrained) = match (&source, base_config) {
            (WeightsSource::Resume(_), Some(saved)) => (saved, pretrained),
            (_, Some(base)) => adapt_for_objective(base, &config, task.labels(), pretrained)?,
            (_, None) => (fresh_model_config(&config, &tokenizer)?, pretrained),
        };
        if tokenizer.vocab_size() > model_config.vocab_size() {
            return Err(GlassboxError::InvalidInput(format!(
                "the tokenizer has {} tokens but the model's embedding table only {} rows",
                tokenizer.vocab_size(),
                model_config.vocab_size()
            )));
        }

        let store = ParamStore::new(config.seed, pretrained);
        let model = Model::new(store.var_builder(&device), &model_config, Prefix::Standard)
            .map_err(|e| store.take_error().unwrap_or(GlassboxError::Candle(e)))?;
        // Buffers (Marian's `final_logits_bias`) are saved with the weights but not trained.
        let buffers = model_config.family().buffers;
        let params: Vec<Param> = store
            .vars()?
            .into_iter()
            .filter(|(name, _)| !buffers.contains(&name.as_str()))
            .map(|(name, var)| Param::new(name, var))
            .collect();
        let parameters = params.iter().map(|p| p.var.elem_count()).sum();
        let o = &config.optimizer;
        let mut optimizer = AdamW::new(
            params,
            AdamWSettings {
                beta1: o.beta1,
                beta2: o.beta2,
                eps: o.eps,
                weight_decay: o.weight_decay,
            },
        )?;
        let schedule = LrSchedule {
            max_lr: o.lr,
            min_lr: o.min_lr(),
            warmup_steps: o.warmup_steps,
            decay_steps: o.decay_steps.unwrap_or(config.training.steps),
        };

        let mut step = 0;
        let mut elapsed = Duration::ZERO;
        let mut last_saved = None;
        if let (WeightsSource::Resume(dir), Some(state)) = (&source, &state) {
            let moments = load_tensors(&dir.join(OPTIMIZER_FILE), &device)?;
            optimizer.load_state(&moments, state.step)?;
            step = state.step;
            elapsed = Duration::from_secs_f64(state.elapsed_secs.max(0.0));
            last_saved = Some((state.step, dir.clone()));
        }

        let fresh_tensors = match source {
            WeightsSource::Pretrained(_) => store.fresh_names()?,
            _ => Vec::new(),
        };
        let metrics_log = match &config.out_dir {
            Some(dir) => {
                let keep = if step > 0 { Some(step) } else { None };
                let log = MetricsLog::open(dir, &task.metric_names(), keep)?;
                if let Some((name, contents)) = task.held_out_file() {
                    crate::util::write_atomic(&dir.join(name), contents.as_bytes())?;
                }
                crate::util::write_atomic(
                    &dir.join(RECIPE_FILE),
                    config.to_toml_string()?.as_bytes(),
                )?;
                Some(log)
            }
            None => None,
        };
        let info = RunInfo {
            objective: config.objective,
            model_config: model_config.clone(),
            parameters,
            start_step: step,
            total_steps: config.training.steps,
            seq_len,
            tokens_per_step: config.tokens_per_step(seq_len),
            vocab_size: tokenizer.vocab_size(),
            data: task.summary(),
            fresh_tensors,
            out_dir: config.out_dir.clone(),
            device: config.device.clone(),
        };
        // Forward and backward: about three forward passes' work per sequence.
        let sequences = (info.tokens_per_step / seq_len.max(1)).max(1) as f64;
        let step_flops = 3.0 * sequences * ArchSpec::from(&model_config).forward_flops(seq_len);
        let threads = crate::kernels::threads_for_flops(step_flops);
        Ok(Self {
            threads,
            config,
            device,
            model_config,
            model,
            store,
            optimizer,
            schedule,
            task,
            tokenizer,
            info,
            step,
            elapsed,
            seconds_per_step: None,
            metrics_log,
            last_saved,
            last_eval: state.and_then(|s| {
                s.last_val_loss.map(|val_loss| EvalReport {
                    step: s.step,
                    val_loss,
                    metrics: BTreeMap::new(),
                    confusion: None,
                })
            }),
        })
    }

    pub fn info(&self) -> &RunInfo {
        &self.info
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn model_config(&self) -> &ModelConfig {
        &self.model_config
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Threads a step gets (one for small models; see `kernels::threads_for_flops`).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Steps completed.
    pub fn step_count(&self) -> usize {
        self.step
    }

    pub fn total_steps(&self) -> usize {
        self.config.training.steps
    }

    pub fn is_done(&self) -> bool {
        self.step >= self.config.training.steps
    }

    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    pub fn last_eval(&self) -> Option<&EvalReport> {
        self.last_eval.as_ref()
    }

    /// The last checkpoint written: (step, folder).
    pub fn last_saved(&self) -> Option<&(usize, PathBuf)> {
        self.last_saved.as_ref()
    }

    /// The current weights by name (as saved in `model.safetensors`).
    pub fn tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        self.store.tensors()
    }

    /// One optimizer step. A non-finite loss or gradient stops before the update, so the weights
    /// stay as they were, and returns [`GlassboxError::Training`] saying what happened.
    pub fn step(&mut self) -> Result<StepReport> {
        let threads = self.threads;
        crate::kernels::with_threads(threads, || self.run_step())
    }

    fn run_step(&mut self) -> Result<StepReport> {
        let started = Instant::now();
        let lr = self.schedule.lr_at(self.step);
        let accumulation = self.config.training.grad_accum;
        let params = self.optimizer.params().to_vec();
        let mut grads: Vec<Option<Tensor>> = vec![None; params.len()];
        let mut loss_sum = 0f32;
        let mut tokens = 0usize;
        let mut shape = BatchShape::default();
        let mut timings = StepTimings::default();
        let ms_since = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
        for micro in 0..accumulation {
            let draw = (self.step * accumulation + micro) as u64;
            let micro_batch = self.task.train_loss(&self.model, draw, &self.device)?;
            tokens += micro_batch.tokens;
            shape = micro_batch.shape;
            timings.data_ms += micro_batch.data_seconds * 1000.0;
            timings.forward_ms += micro_batch.forward_seconds * 1000.0;

            let (loss_value, micro_grads) = match micro_batch.loss {
                // A plain next-token batch on a GPT: one hand-written pass, no graph.
                TrainLoss::Fused(mut step) => {
                    timings.forward_ms += step.forward_seconds * 1000.0;
                    timings.backward_ms += step.backward_seconds * 1000.0;
                    if !step.loss.is_finite() {
                        return Err(self.diverged("loss", step.loss, lr));
                    }
                    let grads = step.gradients_for(params.iter().map(|p| p.var.as_tensor()));
                    (step.loss, grads)
                }
                TrainLoss::Graph(loss) => {
                    let loss_value = loss.to_scalar::<f32>()?;
                    if !loss_value.is_finite() {
                        return Err(self.diverged("loss", loss_value, lr));
                    }
                    let phase = Instant::now();
                    let mut graph_grads = loss.backward()?;
                    let grads = params
                        .iter()
                        // Detached, so the gradients do not keep this micro-batch's graph alive.
                        .map(|p| graph_grads.remove(p.var.as_tensor()).map(|g| g.detach()))
                        .collect::<Vec<_>>();
                    timings.backward_ms += ms_since(phase);
                    (loss_value, grads)
                }
            };
            loss_sum += loss_value;

            // Mean over micro-batches: each contributes 1/accumulation of the gradient.
            let phase = Instant::now();
            for (slot, g) in grads.iter_mut().zip(micro_grads) {
                let Some(g) = g else { continue };
                let g = if accumulation > 1 {
                    (g / accumulation as f64)?
                } else {
                    g
                };
                *slot = Some(match slot.take() {
                    Some(sum) => (sum + g)?,
                    None => g,
                });
            }
            timings.backward_ms += ms_since(phase);
        }
        let phase = Instant::now();
        let grad_norm = self.optimizer.grad_norm(&grads)?;
        if !grad_norm.is_finite() {
            return Err(self.diverged("gradient norm", grad_norm, lr));
        }
        self.optimizer
            .clip_and_step(&mut grads, lr, grad_norm, self.config.optimizer.grad_clip)?;
        timings.optimizer_ms = ms_since(phase);
        self.step += 1;

        let step_time = started.elapsed();
        self.elapsed += step_time;
        let step_secs = step_time.as_secs_f64();
        // A smoothed step time: steady enough for an ETA, quick to follow a change of speed.
        let smoothed = match self.seconds_per_step {
            None => step_secs,
            Some(previous) => 0.9 * previous + 0.1 * step_secs,
        };
        self.seconds_per_step = Some(smoothed);
        let remaining = self.total_steps().saturating_sub(self.step);
        let report = StepReport {
            step: self.step,
            total_steps: self.total_steps(),
            train_loss: loss_sum / accumulation as f32,
            lr,
            grad_norm,
            tokens,
            tokens_per_sec: tokens as f64 / step_secs.max(1e-9),
            step_ms: step_secs * 1000.0,
            elapsed_secs: self.elapsed.as_secs_f64(),
            eta_secs: smoothed * remaining as f64,
            timings,
            shape,
        };
        if let Some(log) = &mut self.metrics_log {
            log.append(&MetricsRecord::Step {
                step: report.step,
                train_loss: report.train_loss,
                lr: report.lr,
                grad_norm: report.grad_norm,
                tokens_per_sec: report.tokens_per_sec,
                elapsed_secs: report.elapsed_secs,
            })?;
        }
        Ok(report)
    }

    fn diverged(&self, what: &str, value: f32, lr: f64) -> GlassboxError {
        let kept = match &self.last_saved {
            Some((step, dir)) => format!(
                "the last good checkpoint (step {step}) is kept in {}",
                dir.display()
            ),
            None => "no checkpoint had been saved yet".to_string(),
        };
        GlassboxError::Training(format!(
            "training diverged: the {what} became {value} at step {} (learning rate {lr:.3e}); \
             the run stopped before applying it, and {kept}. Try a lower optimizer.lr (now {}) \
             or a longer warm-up",
            self.step + 1,
            self.config.optimizer.lr
        ))
    }

    /// Loss and metrics on the held-out split.
    pub fn evaluate(&mut self) -> Result<EvalReport> {
        let started = Instant::now();
        let evaluation = crate::kernels::with_threads(self.threads, || {
            self.task.evaluate(&self.model, &self.device)
        })?;
        self.elapsed += started.elapsed();
        let report = EvalReport {
            step: self.step,
            val_loss: evaluation.val_loss,
            metrics: evaluation.metrics,
            confusion: evaluation.confusion,
        };
        if let Some(log) = &mut self.metrics_log {
            log.append(&MetricsRecord::Eval {
                step: report.step,
                val_loss: report.val_loss,
                metrics: report.metrics.clone(),
                elapsed_secs: self.elapsed.as_secs_f64(),
            })?;
        }
        self.last_eval = Some(report.clone());
        Ok(report)
    }

    /// The probe text this run traces.
    pub fn probe_text(&self) -> String {
        self.config
            .training
            .probe_text
            .clone()
            .unwrap_or_else(|| self.task.default_probe_text())
    }

    /// Traces the probe text through the current model: attention of every layer and head, and
    /// what the model predicts for it.
    pub fn probe(&self) -> Result<ProbeReport> {
        let text = self.probe_text();
        if let Model::Marian(marian) = &self.model {
            return self.translation_probe(marian, text);
        }
        let causal = self.model_config.is_causal();
        // BERT: "A [SEP] B" is traced as a sentence pair (segments 0 and 1).
        let pair = if !self.model_config.family().reads_pairs() {
            None
        } else {
            text.split_once("[SEP]")
                .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
                .filter(|(_, b)| !b.is_empty())
        };
        let encoded = match &pair {
            Some((a, b)) => self.tokenizer.encode_pair(a, b)?,
            None => self.tokenizer.encode(&text, !causal)?,
        };
        let limit = self.model_config.max_positions();
        let len = encoded.ids.len().min(limit);
        if len == 0 {
            return Err(GlassboxError::InvalidInput(format!(
                "the probe text {text:?} has no tokens"
            )));
        }
        let ids = &encoded.ids[..len];
        let input_ids = Tensor::new(ids, &self.device)?.unsqueeze(0)?; // [1, s]
        let type_ids = Tensor::new(&encoded.type_ids[..len], &self.device)?.unsqueeze(0)?;
        let mut trace = Trace::default();
        let input = ModelInput {
            input_ids: &input_ids,
            token_type_ids: self.model_config.family().segments.then_some(&type_ids),
            padding: None,
            decoder_input_ids: None,
        };
        let output = self.model.forward(input, Some(&mut trace))?;
        let attention = maps_per_head(&trace.attentions())?; // [layer][head][s·s]

        let output_text = match self.config.objective {
            Objective::CausalLm | Objective::Generation => self.greedy_continuation(ids)?,
            Objective::MaskedLm => self.fill_mask_summary(ids, output.logits.as_ref())?,
            Objective::Classification => match &output.class_logits {
                Some(logits) => self.label_summary(logits)?,
                None => String::new(),
            },
            Objective::Qa => match (&output.start_logits, &output.end_logits, &pair) {
                (Some(starts), Some(ends), Some((_, context))) => {
                    answer_summary(starts, ends, &encoded, len, context)?
                }
                _ => "(give the probe text as \"question [SEP] context\")".into(),
            },
            Objective::Seq2seq => String::new(),
        };
        Ok(ProbeReport {
            step: self.step,
            text,
            tokens: encoded.tokens[..len].to_vec(),
            attention,
            output: output_text,
            cross: None,
        })
    }

    /// Seq2seq: translates the probe greedily, then runs the source and that translation through
    /// the model with the trace on, for the encoder's self-attention and the cross-attention.
    fn translation_probe(&self, marian: &Marian, text: String) -> Result<ProbeReport> {
        let encoded = self.tokenizer.encode(&text, true)?;
        let mut source_ids = encoded.ids.clone();
        let mut source_tokens = encoded.tokens.clone();
        let eos = marian.config.eos_token_id;
        if source_ids.last() != Some(&eos) {
            source_ids.push(eos);
            source_tokens.push(self.tokenizer.id_to_token(eos).unwrap_or_default());
        }
        let positions = marian.config.max_position_embeddings;
        if source_ids.len() <= 1 || source_ids.len() > positions {
            return Err(GlassboxError::InvalidInput(format!(
                "the probe text {text:?} has {} tokens; it needs 1 to {} besides </s>",
                source_ids.len().saturating_sub(1),
                positions - 1
            )));
        }
        let settings = tasks::greedy_settings(&marian.config, positions);
        let translation = marian.greedy(&source_ids, &settings)?;
        // Teacher-forced on its own translation: the start token, then all but its last token.
        let mut decoder_input = vec![marian.config.decoder_start_token_id];
        decoder_input.extend_from_slice(&translation[..translation.len().saturating_sub(1)]);
        let input = Tensor::new(source_ids.as_slice(), &self.device)?.unsqueeze(0)?; // [1, s]
        let decoder_ids = Tensor::new(decoder_input.as_slice(), &self.device)?.unsqueeze(0)?; // [1, t]
        let mut trace = Seq2SeqTrace::default();
        marian.forward(&input, &decoder_ids, Some(&mut trace))?;
        // Readable (`▁noir`, not byte-level `ĠnoirÃ`), as the Translate view shows them.
        let readable = |token: &str| self.tokenizer.readable_token(token);
        let target_tokens = translation
            .iter()
            .map(|&id| {
                self.tokenizer
                    .id_to_token(id)
                    .map_or_else(|| format!("#{id}"), |t| readable(&t))
            })
            .collect();
        let source_tokens = source_tokens.iter().map(|t| readable(t)).collect();
        Ok(ProbeReport {
            step: self.step,
            text,
            tokens: source_tokens,
            attention: maps_per_head(&trace.encoder.attentions())?,
            output: self.tokenizer.decode(&translation, true)?,
            cross: Some(CrossAttentionProbe {
                target_tokens,
                attention: maps_per_head(&trace.cross_attentions())?,
            }),
        })
    }

    /// Greedy (temperature 0) continuation of `ids` for `probe_tokens` tokens.
    fn greedy_continuation(&self, ids: &[u32]) -> Result<String> {
        let mut ids = ids.to_vec();
        let prompt_len = ids.len();
        let eos = self.tokenizer.eos_token().map(|(_, id)| id);
        for _ in 0..self.config.training.probe_tokens {
            let logits = crate::generate::next_token_logits(&self.model, &ids, &self.device)?;
            let next = crate::generate::argmax(&logits) as u32;
            if Some(next) == eos {
                break;
            }
            ids.push(next);
        }
        self.tokenizer.decode(&ids[prompt_len..], true)
    }

    /// "[MASK] → mouse 0.62, dog 0.11, ..." for each masked position (or the whole text).
    fn fill_mask_summary(&self, ids: &[u32], logits: Option<&Tensor>) -> Result<String> {
        let Some(logits) = logits else {
            return Ok(String::new());
        };
        let mask_id = self.tokenizer.mask_token().map(|(_, id)| id);
        let probs = crate::model::layers::softmax_last_dim(&logits.squeeze(0)?)?; // [s, vocab]
        let mut lines = Vec::new();
        for (position, &id) in ids.iter().enumerate() {
            if Some(id) != mask_id {
                continue;
            }
            let row = probs.get(position)?.to_vec1::<f32>()?;
            let best: Vec<String> = crate::generate::top_k(&row, 5)
                .into_iter()
                .map(|(token, p)| {
                    let name = self
                        .tokenizer
                        .id_to_token(token as u32)
                        .unwrap_or_else(|| format!("#{token}"));
                    format!("{name} {p:.2}")
                })
                .collect();
            lines.push(format!("[MASK]@{position} → {}", best.join(", ")));
        }
        if lines.is_empty() {
            return Ok("(no [MASK] in the probe text)".into());
        }
        Ok(lines.join("; "))
    }

    fn label_summary(&self, logits: &Tensor) -> Result<String> {
        let probs = crate::model::layers::softmax_last_dim(logits)?
            .squeeze(0)?
            .to_vec1::<f32>()?;
        let best = crate::generate::argmax(&probs);
        let labels = match &self.model_config.family {
            FamilyConfig::Bert(c) => c.labels.clone(),
            _ => Vec::new(),
        };
        let name = labels
            .get(best)
            .cloned()
            .unwrap_or_else(|| best.to_string());
        Ok(format!(
            "{name} ({:.2})",
            probs.get(best).copied().unwrap_or(0.0)
        ))
    }

    /// Writes `OUT_DIR/checkpoint/` (weights, config, tokenizer, optimizer moments, state). The
    /// new folder is written beside the old one and swapped in, so a crash never leaves a
    /// half-written checkpoint.
    pub fn save(&mut self) -> Result<PathBuf> {
        let out_dir = self.config.out_dir.clone().ok_or_else(|| {
            GlassboxError::InvalidInput("this run has no output folder (out_dir) to save to".into())
        })?;
        let final_dir = out_dir.join(CHECKPOINT_DIR);
        let staging = out_dir.join(format!(".{CHECKPOINT_DIR}-new"));
        let previous = out_dir.join(format!(".{CHECKPOINT_DIR}-old"));
        remove_dir_if_present(&staging)?;
        if let Err(error) = self.write_checkpoint(&staging) {
            // A half-written folder only takes space (a full disk); the last good one stays.
            let _ = std::fs::remove_dir_all(&staging);
            return Err(error);
        }
        remove_dir_if_present(&previous)?;
        if final_dir.exists() {
            std::fs::rename(&final_dir, &previous).map_err(|e| GlassboxError::io(&final_dir, e))?;
        }
        std::fs::rename(&staging, &final_dir).map_err(|e| GlassboxError::io(&staging, e))?;
        remove_dir_if_present(&previous)?;
        self.last_saved = Some((self.step, final_dir.clone()));
        Ok(final_dir)
    }

    /// Everything a checkpoint holds, written into `staging`.
    fn write_checkpoint(&self, staging: &Path) -> Result<()> {
        save_dir(
            staging,
            &self.model_config,
            &self.store.tensors()?,
            Some(&self.tokenizer),
        )?;
        write_safetensors(
            &staging.join(OPTIMIZER_FILE),
            &self.optimizer.state_tensors(),
        )?;
        let state = TrainerState {
            step: self.step,
            seed: self.config.seed,
            elapsed_secs: self.elapsed.as_secs_f64(),
            last_val_loss: self.last_eval.as_ref().map(|e| e.val_loss),
            config: self.config.clone(),
            glassbox_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let state_json = serde_json::to_string_pretty(&state).map_err(|e| {
            GlassboxError::Training(format!("cannot encode the trainer state: {e}"))
        })?;
        crate::util::write_atomic(&staging.join(TRAINER_STATE_FILE), state_json.as_bytes())
    }

    /// Writes the model as a plain Hugging Face folder (no trainer state) to `dir`.
    pub fn export(&self, dir: &Path) -> Result<()> {
        save_dir(
            dir,
            &self.model_config,
            &self.store.tensors()?,
            Some(&self.tokenizer),
        )
    }
}

impl TrainConfig {
    fn validate_for_resume(&self) -> Result<()> {
        // A resumed fine-tuning run loads its own checkpoint; init_from is only history.
        let mut check = self.clone();
        if check.model.init_from.is_none() && check.objective.is_finetuning() {
            check.model.init_from = Some(PathBuf::from("(resumed)"));
        }
        check.validate()
    }
}

/// QA: the best answer span in the context part of a probe pair.
fn answer_summary(
    starts: &Tensor,
    ends: &Tensor,
    encoded: &crate::tokenizer::Encoded,
    len: usize,
    context: &str,
) -> Result<String> {
    let starts = starts.squeeze(0)?.to_vec1::<f32>()?;
    let ends = ends.squeeze(0)?.to_vec1::<f32>()?;
    let in_context: Vec<usize> = (0..len)
        .filter(|&i| encoded.type_ids[i] == 1 && encoded.special_tokens_mask[i] == 0)
        .collect();
    let mut best: Option<(usize, usize, f32)> = None;
    for (a, &i) in in_context.iter().enumerate() {
        for &j in in_context.iter().skip(a).take(30) {
            let score = starts[i] + ends[j];
            if best.is_none_or(|(_, _, s)| score > s) {
                best = Some((i, j, score));
            }
        }
    }
    Ok(match best {
        Some((i, j, _)) => {
            let from = encoded.offsets[i].0;
            let to = encoded.offsets[j].1;
            format!("answer: {:?}", context.get(from..to).unwrap_or(""))
        }
        None => "(no context tokens)".into(),
    })
}

fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(GlassboxError::io(dir, e)),
    }
}

/// The files that mark a folder as holding a run (its recipe.toml is rewritten at every start,
/// and may be the user's own recipe, so it is neither a mark nor removed).
const RUN_FILES: [&str; 6] = [
    CHECKPOINT_DIR,
    ".checkpoint-old",
    ".checkpoint-new",
    super::metrics::METRICS_JSONL,
    super::metrics::METRICS_CSV,
    tasks::HELD_OUT_FILE,
];

/// What of a training run `dir` already holds (its checkpoint's step, or its files), if any.
pub fn existing_run(dir: &Path) -> Option<String> {
    if let Ok(checkpoint) = latest_checkpoint(dir) {
        return Some(match read_trainer_state(&checkpoint) {
            Ok(state) => format!("a checkpoint at step {}", state.step),
            Err(_) => format!("{}", checkpoint.display()),
        });
    }
    let found: Vec<&str> = RUN_FILES
        .iter()
        .copied()
        .filter(|name| dir.join(name).exists())
        .collect();
    (!found.is_empty()).then(|| found.join(", "))
}

/// Removes a previous run's files from `dir` (its checkpoint, metrics and recipe; nothing
/// else), so a new run can start there. The explicit form of `--overwrite`.
pub fn clear_run_dir(dir: &Path) -> Result<()> {
    for name in RUN_FILES {
        let path = dir.join(name);
        if path.is_dir() {
            remove_dir_if_present(&path)?;
        } else if path.exists() {
            std::fs::remove_file(&path).map_err(|e| GlassboxError::io(&path, e))?;
        }
    }
    Ok(())
}

/// The files of a Hugging Face model folder that [`export_checkpoint`] copies.
const EXPORTED_FILES: [&str; 5] = [
    CONFIG_FILE,
    WEIGHTS_FILE,
    TOKENIZER_FILE,
    crate::model::checkpoint::TOKENIZER_CONFIG_FILE,
    crate::model::checkpoint::GENERATION_CONFIG_FILE,
];

/// Which of the files an export would write already exist in `dir`.
pub fn export_conflicts(dir: &Path) -> Vec<PathBuf> {
    EXPORTED_FILES
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| path.exists())
        .collect()
}

/// Copies a run's checkpoint (`checkpoint/`) into `dir` as a plain Hugging Face folder (no
/// trainer state). Existing files are replaced only with `overwrite`; each copy is atomic.
/// Returns the files written with their sizes.
pub fn export_checkpoint(
    checkpoint: &Path,
    dir: &Path,
    overwrite: bool,
) -> Result<Vec<(PathBuf, u64)>> {
    let conflicts = export_conflicts(dir);
    if !overwrite && !conflicts.is_empty() {
        let names: Vec<String> = conflicts.iter().map(|p| p.display().to_string()).collect();
        return Err(GlassboxError::InvalidInput(format!(
            "will not overwrite {} (pass --overwrite to replace them)",
            names.join(", ")
        )));
    }
    if !checkpoint.join(WEIGHTS_FILE).is_file() {
        return Err(GlassboxError::MissingFile {
            path: checkpoint.join(WEIGHTS_FILE),
        });
    }
    let mut written = Vec::new();
    for name in EXPORTED_FILES {
        let from = checkpoint.join(name);
        if !from.is_file() {
            continue; // a run without a tokenizer file, say
        }
        let bytes = std::fs::read(&from).map_err(|e| GlassboxError::io(&from, e))?;
        let to = dir.join(name);
        crate::util::write_atomic(&to, &bytes)?;
        written.push((to, bytes.len() as u64));
    }
    Ok(written)
}

/// The folder to resume from: `checkpoint/`, or the previous one if a crash interrupted a swap.
pub fn latest_checkpoint(run_dir: &Path) -> Result<PathBuf> {
    // Accept the checkpoint folder itself as well as the run folder.
    if run_dir.join(TRAINER_STATE_FILE).is_file() {
        return Ok(run_dir.to_path_buf());
    }
    for candidate in [CHECKPOINT_DIR.to_string(), format!(".{CHECKPOINT_DIR}-old")] {
        let dir = run_dir.join(candidate);
        if dir.join(TRAINER_STATE_FILE).is_file() {
            return Ok(dir);
        }
    }
    Err(GlassboxError::MissingFile {
        path: run_dir.join(CHECKPOINT_DIR).join(TRAINER_STATE_FILE),
    })
}

pub fn read_trainer_state(checkpoint: &Path) -> Result<TrainerState> {
    let path = checkpoint.join(TRAINER_STATE_FILE);
    let text = crate::util::read_text(&path)?;
    serde_json::from_str(&text).map_err(|e| GlassboxError::BadConfig {
        path,
        message: e.to_string(),
    })
}

fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    if path.is_dir() {
        Tokenizer::from_file(&path.join(TOKENIZER_FILE))
    } else {
        Tokenizer::from_file(path)
    }
}

fn load_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(GlassboxError::MissingFile {
            path: path.to_path_buf(),
        });
    }
    let tensors = crate::model::weights_file::TensorFile::open(path)?.read_all()?;
    tensors
        .into_iter()
        .map(|(name, tensor)| Ok((name, tensor.to_device(device)?)))
        .collect()
}

/// A checkpoint folder's config, tokenizer (if any) and tensors, with the name mapping for
/// checkpoints that store the encoder without its prefix.
fn read_checkpoint(dir: &Path) -> Result<(ModelConfig, Option<Tokenizer>, Pretrained)> {
    let CheckpointDir {
        config,
        weights,
        tokenizer,
    } = open_dir(dir)?;
    // Tensors stay on the CPU until the store copies each onto the device.
    let tensors = load_tensors(&weights, &Device::Cpu)?;
    // A bare base model (all-MiniLM-L6-v2) stores the encoder without the family's prefix.
    let prefix = format!("{}.", config.family().weight_prefix);
    let strip_prefix = if tensors.keys().any(|name| name.starts_with(&prefix)) {
        None
    } else {
        Some(prefix)
    };
    Ok((
        config,
        tokenizer,
        Pretrained {
            tensors,
            strip_prefix,
            source: weights.display().to_string(),
        },
    ))
}

/// A fresh model for a pretraining objective, sized by the recipe's `[model]`.
fn fresh_model_config(config: &TrainConfig, tokenizer: &Tokenizer) -> Result<ModelConfig> {
    let m = &config.model;
    let vocab_size = tokenizer.vocab_size();
    Ok(match config.objective {
        Objective::CausalLm => ModelConfig {
            family: FamilyConfig::Gpt2(GptConfig {
                vocab_size,
                n_positions: m.n_positions,
                n_embd: m.n_embd,
                n_layer: m.n_layer,
                n_head: m.n_head,
                n_inner: m.n_inner,
                layer_norm_epsilon: 1e-5,
                activation_function: m.activation.clone().unwrap_or_else(|| "gelu_new".into()),
                bias: m.bias,
            }),
            architecture: Architecture::Gpt2LmHead,
        },
        Objective::MaskedLm => ModelConfig {
            family: FamilyConfig::Bert(BertConfig {
                vocab_size,
                hidden_size: m.n_embd,
                num_hidden_layers: m.n_layer,
                num_attention_heads: m.n_head,
                intermediate_size: m.n_inner.unwrap_or(4 * m.n_embd),
                max_position_embeddings: m.n_positions,
                type_vocab_size: 2,
                layer_norm_eps: 1e-12,
                hidden_act: m.activation.clone().unwrap_or_else(|| "gelu".into()),
                pad_token_id: tokenizer.pad_token().map_or(0, |(_, id)| id as usize),
                labels: Vec::new(),
            }),
            architecture: if config.next_sentence {
                Architecture::BertForPreTraining
            } else {
                Architecture::BertForMaskedLm
            },
        },
        Objective::Seq2seq => {
            let pad = tokenizer.pad_token().map_or(0, |(_, id)| id);
            let eos = tokenizer.eos_token().map_or(0, |(_, id)| id);
            ModelConfig {
                family: FamilyConfig::Marian(MarianConfig {
                    vocab_size,
                    d_model: m.n_embd,
                    encoder_layers: m.n_layer,
                    decoder_layers: m.n_decoder_layer.unwrap_or(m.n_layer),
                    encoder_attention_heads: m.n_head,
                    decoder_attention_heads: m.n_head,
                    encoder_ffn_dim: m.n_inner.unwrap_or(4 * m.n_embd),
                    decoder_ffn_dim: m.n_inner.unwrap_or(4 * m.n_embd),
                    max_position_embeddings: m.n_positions,
                    activation_function: m.activation.clone().unwrap_or_else(|| "relu".into()),
                    scale_embedding: true,
                    pad_token_id: pad,
                    eos_token_id: eos,
                    // Marian starts the decoder on the pad token.
                    decoder_start_token_id: pad,
                    forced_eos_token_id: Some(eos),
                    decoder_vocab_size: None,
                    share_encoder_decoder_embeddings: true,
                    tie_word_embeddings: true,
                }),
                architecture: Architecture::MarianMt,
            }
        }
        other => {
            return Err(GlassboxError::InvalidInput(format!(
                "objective {:?} fine-tunes a trained model: set model.init_from",
                other.name()
            )));
        }
    })
}

/// The checkpoint's model with the head the objective needs. Heads the checkpoint has but with
/// other shapes (a classifier for other labels) are dropped so they start fresh.
fn adapt_for_objective(
    mut base: ModelConfig,
    config: &TrainConfig,
    labels: Option<Vec<String>>,
    mut pretrained: Pretrained,
) -> Result<(ModelConfig, Pretrained)> {
    let objective = config.objective;
    let found_type = base.model_type();
    let source = pretrained.source.clone();
    let wrong_family = |needs: &str| {
        GlassboxError::InvalidInput(format!(
            "objective {:?} needs a {needs} checkpoint, but {source} is a {found_type} model",
            objective.name(),
        ))
    };
    match (&mut base.family, objective) {
        (FamilyConfig::Gpt2(_), Objective::CausalLm | Objective::Generation) => {
            base.architecture = Architecture::Gpt2LmHead;
        }
        (FamilyConfig::Bert(_), Objective::MaskedLm) => {
            base.architecture = if config.next_sentence {
                Architecture::BertForPreTraining
            } else {
                Architecture::BertForMaskedLm
            };
        }
        (FamilyConfig::Bert(c), Objective::Classification) => {
            let labels = labels.unwrap_or_default();
            if c.labels != labels {
                pretrained
                    .tensors
                    .retain(|name, _| !name.starts_with("classifier."));
            }
            c.labels = labels;
            base.architecture = Architecture::BertForSequenceClassification;
        }
        (FamilyConfig::Bert(_), Objective::Qa) => {
            base.architecture = Architecture::BertForQuestionAnswering;
        }
        (FamilyConfig::Marian(_), Objective::Seq2seq) => {}
        (_, Objective::Seq2seq) => return Err(wrong_family("Marian (encoder–decoder)")),
        (FamilyConfig::Marian(_), _) => {
            return Err(GlassboxError::InvalidInput(format!(
                "{source} is an encoder–decoder (Marian): it trains with objective \"seq2seq\", \
                 not {:?}",
                objective.name()
            )));
        }
        (FamilyConfig::DistilBert(_), _) => {
            return Err(GlassboxError::InvalidInput(format!(
                "fine-tuning or pretraining a DistilBERT checkpoint is not supported (Glassbox \
                 has no DistilBERT {} head); use a BERT checkpoint such as assets/tiny-bert",
                objective.name()
            )));
        }
        (_, Objective::CausalLm | Objective::Generation) => return Err(wrong_family("GPT")),
        (_, _) => return Err(wrong_family("BERT")),
    }
    Ok((base, pretrained))
}
