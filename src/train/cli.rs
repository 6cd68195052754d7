//! The bodies of `glassbox train` and `glassbox finetune`: build the recipe from a TOML file and
//! flags, run it on the worker thread, draw a progress line on stderr, save on Ctrl-C.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

use super::config::{Objective, TrainConfig};
use super::{RunSummary, StepReport, TrainCommand, TrainEvent, TrainingRun};

/// `glassbox train`: pretraining from scratch (GPT causal LM or BERT masked LM).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TrainArgs {
    /// A TOML recipe (e.g. assets/tiny-gpt/recipe.toml). Without one the defaults train a small
    /// character-level GPT on the built-in toy-English corpus.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run saved in this folder (its checkpoint/) exactly where it stopped.
    #[arg(long, conflicts_with = "config")]
    pub resume: Option<PathBuf>,
    /// Output folder for metrics.jsonl, metrics.csv and checkpoint/ (default: the recipe's
    /// out_dir, else runs/<objective>). A folder that holds a run is refused: see --resume and
    /// --overwrite.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// At the end, also write the model as a plain Hugging Face folder (config.json,
    /// model.safetensors, tokenizer.json) into DIR. Existing files there need --overwrite.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// Replace the run in --out (and the files in --export) instead of refusing.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// causal-lm (GPT), masked-lm (BERT) or seq2seq (an encoder–decoder translator).
    #[arg(long)]
    pub objective: Option<String>,
    /// Masked LM: also train next-sentence prediction.
    #[arg(long)]
    pub next_sentence: bool,
    /// Training text (default: the built-in toy-English corpus); for seq2seq a parallel file,
    /// TSV (source<TAB>target) or JSONL ({"source": ..., "target": ...}) (default: the built-in
    /// English → French pairs).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// cpu, cuda, cuda:N, metal.
    #[arg(long)]
    pub device: Option<String>,
    /// Override any recipe field, e.g. --set training.eval_every=250 (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub overrides: Vec<String>,
    /// No progress line, only the summary.
    #[arg(long)]
    pub quiet: bool,
}

/// `glassbox finetune`: continue from a trained checkpoint on labelled data.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FinetuneArgs {
    /// A TOML recipe; flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the fine-tuning run saved in this folder.
    #[arg(long, conflicts_with = "config")]
    pub resume: Option<PathBuf>,
    /// The checkpoint folder to start from (e.g. assets/tiny-bert, a Hub model's folder).
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// classification (CSV text,label), qa (JSON/JSONL context,question,answer) or generation
    /// (JSONL prompt,completion).
    #[arg(long)]
    pub task: Option<String>,
    /// The data file (default: the task's built-in data set).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A separate validation file (default: 10% of the data is held out).
    #[arg(long)]
    pub val_data: Option<PathBuf>,
    /// Output folder (default: the recipe's out_dir, else runs/<task>); see --overwrite.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// At the end, also write the model as a plain Hugging Face folder into DIR.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// Replace the run in --out (and the files in --export) instead of refusing.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub overrides: Vec<String>,
    #[arg(long)]
    pub quiet: bool,
}

/// Flags that map to recipe fields, as `section.key=value` overrides.
fn numeric_overrides(
    steps: Option<usize>,
    batch_size: Option<usize>,
    lr: Option<f64>,
    seed: Option<u64>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(v) = steps {
        out.push(format!("training.steps={v}"));
    }
    if let Some(v) = batch_size {
        out.push(format!("training.batch_size={v}"));
    }
    if let Some(v) = lr {
        out.push(format!("optimizer.lr={v:e}"));
    }
    if let Some(v) = seed {
        out.push(format!("seed={v}"));
    }
    out
}

fn read_recipe(path: Option<&PathBuf>, overrides: &[String]) -> Result<TrainConfig> {
    Ok(match path {
        Some(path) => TrainConfig::parse_file(path, overrides)?,
        None => TrainConfig::parse("", overrides)?,
    })
}

fn parse_objective(name: &str) -> Result<Objective> {
    name.parse().map_err(anyhow::Error::msg)
}

/// Where the run's result goes besides its `--out` folder.
struct Output {
    export: Option<PathBuf>,
    overwrite: bool,
    quiet: bool,
}

impl Output {
    /// Refuses, before any training, an export that would overwrite files unasked.
    fn check(&self) -> Result<()> {
        if let Some(dir) = &self.export {
            let conflicts = super::export_conflicts(dir);
            if !self.overwrite && !conflicts.is_empty() {
                bail!(
                    "--export {}: it already holds a model ({}); pass --overwrite to replace it, \
                     or export elsewhere",
                    dir.display(),
                    conflicts
                        .iter()
                        .filter_map(|p| p.file_name())
                        .map(|n| n.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        Ok(())
    }
}

/// Flags that name recipe fields, as overrides (so a resumed run refuses those it cannot change).
fn path_overrides(
    data: Option<&PathBuf>,
    val_data: Option<&PathBuf>,
    device: Option<&String>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (key, path) in [("data.path", data), ("data.val_path", val_data)] {
        if let Some(path) = path {
            let absolute = std::path::absolute(path)?;
            out.push(format!("{key}={:?}", absolute.display().to_string()));
        }
    }
    if let Some(device) = device {
        out.push(format!("device={device:?}"));
    }
    Ok(out)
}

pub fn train(args: TrainArgs) -> Result<()> {
    let mut overrides = numeric_overrides(args.steps, args.batch_size, args.lr, args.seed);
    overrides.extend(args.overrides.iter().cloned());
    let output = Output {
        export: args.export.clone(),
        overwrite: args.overwrite,
        quiet: args.quiet,
    };
    output.check()?;
    if let Some(run_dir) = args.resume {
        if args.objective.is_some() || args.next_sentence {
            bail!("a resumed run keeps its objective: drop --objective / --next-sentence");
        }
        overrides.extend(path_overrides(
            args.data.as_ref(),
            None,
            args.device.as_ref(),
        )?);
        let run = TrainingRun::resume(run_dir.clone(), overrides)?;
        return drive(run, &output, &run_dir);
    }
    let mut config = read_recipe(args.config.as_ref(), &overrides)?;
    if let Some(name) = &args.objective {
        config.objective = parse_objective(name)?;
    }
    if config.objective.is_finetuning() {
        bail!(
            "objective {:?} fine-tunes a trained model: use `glassbox finetune`",
            config.objective.name()
        );
    }
    if args.next_sentence {
        config.next_sentence = true;
    }
    if let Some(data) = args.data {
        config.data.path = Some(data);
    }
    if let Some(device) = args.device {
        config.device = device;
    }
    start(config, args.out, &output)
}

pub fn finetune(args: FinetuneArgs) -> Result<()> {
    let mut overrides = numeric_overrides(args.steps, args.batch_size, args.lr, args.seed);
    overrides.extend(args.overrides.iter().cloned());
    let output = Output {
        export: args.export.clone(),
        overwrite: args.overwrite,
        quiet: args.quiet,
    };
    output.check()?;
    if let Some(run_dir) = args.resume {
        if args.task.is_some() || args.from.is_some() {
            bail!("a resumed run keeps its task and its model: drop --task / --from");
        }
        overrides.extend(path_overrides(
            args.data.as_ref(),
            args.val_data.as_ref(),
            args.device.as_ref(),
        )?);
        let run = TrainingRun::resume(run_dir.clone(), overrides)?;
        return drive(run, &output, &run_dir);
    }
    let mut config = match &args.config {
        Some(path) => TrainConfig::parse_file(path, &overrides)?,
        None => {
            // Without a recipe: fine-tuning defaults (a gentler learning rate, a short warm-up),
            // then the flags.
            let mut o: Vec<String> = [
                "objective=classification",
                "optimizer.lr=1e-3",
                "optimizer.warmup_steps=20",
                "optimizer.weight_decay=0.01",
                "training.steps=300",
                "training.batch_size=16",
                "training.eval_every=50",
            ]
            .map(String::from)
            .to_vec();
            o.extend(overrides.iter().cloned());
            TrainConfig::parse("", &o)?
        }
    };
    if let Some(task) = &args.task {
        config.objective = parse_objective(task)?;
    }
    if !config.objective.is_finetuning() {
        bail!(
            "`glassbox finetune` trains classification, qa or generation (got {:?}); use \
             `glassbox train` for pretraining",
            config.objective.name()
        );
    }
    if let Some(from) = args.from {
        config.model.init_from = Some(from);
    }
    if config.model.init_from.is_none() {
        bail!("give the checkpoint to start from with --from DIR (e.g. --from assets/tiny-bert)");
    }
    if let Some(data) = args.data {
        config.data.path = Some(data);
    }
    if let Some(val) = args.val_data {
        config.data.val_path = Some(val);
    }
    if let Some(device) = args.device {
        config.device = device;
    }
    start(config, args.out, &output)
}

/// Starts a fresh run with an output folder (so Ctrl-C can save it) and follows it.
fn start(mut config: TrainConfig, out: Option<PathBuf>, output: &Output) -> Result<()> {
    if let Some(out) = out {
        config.out_dir = Some(out);
    }
    let out_dir = config
        .out_dir
        .get_or_insert_with(|| PathBuf::from("runs").join(config.objective.name()))
        .clone();
    config.validate()?;
    if let Some(found) = super::existing_run(&out_dir) {
        if !output.overwrite {
            bail!(
                "{} already holds a training run ({found}). Continue it with `--resume {}`, \
                 replace it with --overwrite, or choose another --out",
                out_dir.display(),
                out_dir.display()
            );
        }
        super::clear_run_dir(&out_dir)?;
        if !output.quiet {
            eprintln!(
                "--overwrite: removed the previous run in {}",
                out_dir.display()
            );
        }
    }
    let run = TrainingRun::start(config)?;
    drive(run, output, &out_dir)
}

/// The error `glassbox train` ends with when Ctrl-C or SIGTERM stopped it (after saving):
/// the command line exits with status 130, as interrupted Unix tools do.
#[derive(Debug, thiserror::Error)]
#[error("interrupted at step {step}; the checkpoint is saved: continue with `--resume {run}`")]
pub struct Interrupted {
    pub step: usize,
    pub run: String,
}

/// Set once: the first Ctrl-C (or SIGTERM) asks the run to save and stop, a second one exits
/// at once.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn install_ctrl_c(commands: std::sync::mpsc::Sender<TrainCommand>) {
    let commands = std::sync::Mutex::new(commands);
    // Fails only when a handler is already installed (a second run in the same process).
    let _ = ctrlc::set_handler(move || {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting without saving");
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: saving a checkpoint and stopping (again to quit at once)");
        if let Ok(sender) = commands.lock() {
            let _ = sender.send(TrainCommand::Stop);
        }
    });
}

/// Follows a run's events to its end, drawing progress on stderr; then exports if asked.
fn drive(run: TrainingRun, output: &Output, out_dir: &std::path::Path) -> Result<()> {
    install_ctrl_c(run.command_sender());
    let quiet = output.quiet;
    let mut progress = Progress::new(quiet);
    let mut finished = None;
    for event in run.events() {
        match event {
            TrainEvent::Started(info) => {
                progress.total = info.total_steps;
                if !quiet {
                    eprintln!(
                        "{} · {} {} · {:.2}M parameters · vocab {} · seq {} · {} tokens/step · data: {}",
                        info.objective.name(),
                        info.model_config.model_type(),
                        info.model_config.architecture.hf_name(),
                        info.parameters as f64 / 1e6,
                        info.vocab_size,
                        info.seq_len,
                        info.tokens_per_step,
                        info.data.source
                    );
                    if info.start_step > 0 {
                        eprintln!("resuming at step {}", info.start_step);
                    }
                    if !info.fresh_tensors.is_empty() {
                        eprintln!(
                            "new (freshly initialised): {}",
                            info.fresh_tensors.join(", ")
                        );
                    }
                    eprintln!("output: {}", out_dir.display());
                }
            }
            TrainEvent::Step(report) => progress.step(&report),
            TrainEvent::Eval(report) => {
                progress.val_loss = Some(report.val_loss);
                let metrics: Vec<String> = report
                    .metrics
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.4}"))
                    .collect();
                progress.line(&format!(
                    "eval @ step {}: val loss {:.4}  {}",
                    report.step,
                    report.val_loss,
                    metrics.join("  ")
                ));
            }
            TrainEvent::Probe(probe) => {
                progress.line(&format!(
                    "probe @ step {}: {:?} → {}",
                    probe.step, probe.text, probe.output
                ));
            }
            TrainEvent::Saved { step, path } => {
                progress.line(&format!("saved step {step} to {}", path.display()));
            }
            // Shown even with --quiet: a save that failed is never silent.
            TrainEvent::Warning { message, .. } => progress.warn(&format!("warning: {message}")),
            TrainEvent::Paused { .. } | TrainEvent::Resumed { .. } => {}
            TrainEvent::Finished(summary) => {
                progress.finish(&summary);
                finished = Some(summary);
                break;
            }
            TrainEvent::Failed {
                message,
                last_checkpoint,
                ..
            } => {
                progress.clear();
                let _ = run.join();
                match last_checkpoint {
                    Some(path) if !message.contains("last good checkpoint") => {
                        bail!("{message}\nthe last good checkpoint is {}", path.display())
                    }
                    _ => bail!("{message}"),
                }
            }
        }
    }
    run.join()?;
    let Some(summary) = finished else {
        bail!("the training run ended without a result");
    };
    if let Some(dir) = &output.export {
        match &summary.checkpoint {
            Some(checkpoint) if !summary.stopped_early => {
                super::export_checkpoint(checkpoint, dir, output.overwrite)?;
                if !quiet {
                    eprintln!("exported the model to {}", dir.display());
                }
            }
            _ => eprintln!("not exported to {}: the run did not finish", dir.display()),
        }
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err(Interrupted {
            step: summary.step,
            run: out_dir.display().to_string(),
        }
        .into());
    }
    Ok(())
}

/// The progress line: redrawn in place on a terminal, printed now and then otherwise.
struct Progress {
    quiet: bool,
    tty: bool,
    total: usize,
    val_loss: Option<f32>,
    step_ms_sum: f64,
    steps: usize,
    drawn: bool,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Self {
            quiet,
            tty: std::io::stderr().is_terminal(),
            total: 0,
            val_loss: None,
            step_ms_sum: 0.0,
            steps: 0,
            drawn: false,
        }
    }

    fn step(&mut self, s: &StepReport) {
        self.step_ms_sum += s.step_ms;
        self.steps += 1;
        if self.quiet {
            return;
        }
        let width = 24;
        let filled = (s.step * width) / s.total_steps.max(1);
        let bar: String = "#".repeat(filled) + &".".repeat(width - filled);
        let val = self
            .val_loss
            .map(|v| format!("  val {v:.4}"))
            .unwrap_or_default();
        let text = format!(
            "step {:>6}/{} [{bar}] loss {:.4}{val}  lr {:.2e}  {:.0} tok/s  {:.0} ms/step  ETA {}",
            s.step,
            s.total_steps,
            s.train_loss,
            s.lr,
            s.tokens_per_sec,
            s.step_ms,
            format_duration(s.eta_secs)
        );
        if self.tty {
            eprint!("\r{text}\x1b[K");
            let _ = std::io::stderr().flush();
            self.drawn = true;
        } else {
            // Not a terminal (a log file, a test): about 20 lines per run.
            let every = (s.total_steps / 20).max(1);
            if s.step.is_multiple_of(every) || s.step == 1 || s.step == s.total_steps {
                eprintln!("{text}");
            }
        }
    }

    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[K");
            self.drawn = false;
        }
    }

    /// A line of its own, above the progress line.
    fn line(&mut self, text: &str) {
        if self.quiet {
            return;
        }
        self.clear();
        eprintln!("{text}");
    }

    /// A line shown whatever --quiet says.
    fn warn(&mut self, text: &str) {
        self.clear();
        eprintln!("{text}");
    }

    fn finish(&mut self, summary: &RunSummary) {
        self.clear();
        let ms_per_step = self.step_ms_sum / self.steps.max(1) as f64;
        let how = if summary.stopped_early {
            "stopped"
        } else {
            "finished"
        };
        let val = summary
            .final_eval
            .as_ref()
            .map(|e| format!("; val loss {:.4}", e.val_loss))
            .unwrap_or_default();
        eprintln!(
            "{how} at step {}/{} in {} ({ms_per_step:.1} ms/step){val}",
            summary.step,
            summary.total_steps,
            format_duration(summary.elapsed_secs)
        );
        if let Some(path) = &summary.checkpoint {
            eprintln!("checkpoint: {}", path.display());
        }
    }
}

fn format_duration(secs: f64) -> String {
    let secs = secs.max(0.0).round() as u64;
    match secs {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}
