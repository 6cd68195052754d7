//! Training: mini pretraining (GPT causal LM, BERT masked LM + next-sentence prediction) and
//! fine-tuning (classification, extractive QA, prompt → completion), headless or live.
//!
//! A run is described by a [`TrainConfig`] (a TOML recipe). [`Trainer`] does the work one step at
//! a time; [`TrainingRun`] drives a trainer on a worker thread, streams [`TrainEvent`]s and takes
//! [`TrainCommand`]s, so neither the UI nor the CLI ever runs a step itself:
//!
//! ```no_run
//! use glassbox::train::{TrainConfig, TrainEvent, TrainingRun};
//! let config = TrainConfig::from_toml_str("[training]\nsteps = 100", &[])?;
//! let run = TrainingRun::start(config)?;
//! for event in run.events() {
//!     match event {
//!         TrainEvent::Step(s) => println!("step {} loss {:.3}", s.step, s.train_loss),
//!         TrainEvent::Finished(_) | TrainEvent::Failed { .. } => break,
//!         _ => {}
//!     }
//! }
//! # Ok::<(), glassbox::GlassboxError>(())
//! ```
//!
//! The pieces: [`optim`] (AdamW, schedule, clipping), [`params`] (seeded initialisation and
//! checkpoint loading), [`tasks`] (each objective's batches, loss and evaluation), [`metrics`]
//! (accuracy, F1, exact match, metric files), [`trainer`] (the loop body, checkpoints, resume),
//! [`cli`] (the `train` and `finetune` commands).

pub mod cli;
pub mod config;
pub mod metrics;
pub mod optim;
pub mod params;
mod tasks;
pub mod trainer;

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use config::{Objective, TrainConfig};
pub use metrics::ConfusionMatrix;
pub use tasks::{BatchShape, DataSummary};
pub use trainer::{
    CrossAttentionProbe, EvalReport, ProbeReport, RunInfo, StepReport, StepTimings, Trainer,
    TrainerState, clear_run_dir, existing_run, export_checkpoint, export_conflicts,
};

use crate::error::{GlassboxError, Result};

/// What the UI (or the CLI) can ask of a running trainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainCommand {
    /// Stop stepping after the current step; the run waits for further commands.
    Pause,
    Resume,
    /// While paused: do exactly one step.
    Step,
    /// Save a checkpoint (when the run has an output folder) and finish.
    Stop,
    /// Save a checkpoint now and go on.
    SaveNow,
    /// Trace the probe text now and send a [`TrainEvent::Probe`].
    RequestProbe,
}

/// What a run reports, in order: `Started`, then `Step`s with `Eval`, `Probe` and `Saved` between
/// them, and last exactly one of `Finished` or `Failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TrainEvent {
    Started(RunInfo),
    Step(StepReport),
    Eval(EvalReport),
    Probe(ProbeReport),
    Saved {
        step: usize,
        path: PathBuf,
    },
    Paused {
        step: usize,
    },
    Resumed {
        step: usize,
    },
    /// Something went wrong that did not end the run (e.g. a save that could not be written).
    Warning {
        step: usize,
        message: String,
    },
    Finished(RunSummary),
    /// The run ended with an error (bad data, divergence, ...). `last_checkpoint` is the last
    /// good one, if any was saved.
    Failed {
        step: usize,
        message: String,
        last_checkpoint: Option<PathBuf>,
    },
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub step: usize,
    pub total_steps: usize,
    /// Stopped by [`TrainCommand::Stop`] (or Ctrl-C) before the last step.
    pub stopped_early: bool,
    pub final_eval: Option<EvalReport>,
    /// The checkpoint folder written at the end, if the run has an output folder.
    pub checkpoint: Option<PathBuf>,
    pub elapsed_secs: f64,
}

/// A trainer running on its own thread.
#[derive(Debug)]
pub struct TrainingRun {
    commands: Sender<TrainCommand>,
    events: Receiver<TrainEvent>,
    worker: Option<JoinHandle<()>>,
}

/// The training thread's scheduling priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Priority {
    Normal,
    Background,
}

impl TrainingRun {
    /// Starts a run. Data, tokenizer and model are prepared on the worker thread too (training a
    /// tokenizer can take a moment); problems arrive as [`TrainEvent::Failed`].
    pub fn start(config: TrainConfig) -> Result<Self> {
        Self::spawn_with(Priority::Normal, move || Trainer::new(config))
    }

    /// Starts a run at a lower priority than the calling thread, so that a window drawn on
    /// that thread stays responsive while the run takes the rest of the CPU (the app does this).
    pub fn start_in_background(config: TrainConfig) -> Result<Self> {
        Self::spawn_with(Priority::Background, move || Trainer::new(config))
    }

    /// Continues the run saved in `run_dir`, with optional `section.key=value` overrides.
    pub fn resume(run_dir: PathBuf, overrides: Vec<String>) -> Result<Self> {
        Self::spawn_with(Priority::Normal, move || {
            Trainer::resume(&run_dir, &overrides)
        })
    }

    /// Drives an already prepared trainer.
    pub fn from_trainer(trainer: Trainer) -> Result<Self> {
        Self::spawn_with(Priority::Normal, move || Ok(trainer))
    }

    fn spawn_with(
        priority: Priority,
        prepare: impl FnOnce() -> Result<Trainer> + Send + 'static,
    ) -> Result<Self> {
        let (command_tx, command_rx) = mpsc::channel();
        let (event_tx, event_rx) = mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("glassbox-train".into())
            .spawn(move || {
                if priority == Priority::Background {
                    crate::util::lower_thread_priority();
                }
                match prepare() {
                    Ok(trainer) => run_loop(trainer, &command_rx, &event_tx),
                    Err(error) => {
                        let _ = event_tx.send(TrainEvent::Failed {
                            step: 0,
                            message: error.to_string(),
                            last_checkpoint: None,
                        });
                    }
                }
            })
            .map_err(|e| {
                GlassboxError::Training(format!("cannot start the training thread: {e}"))
            })?;
        Ok(Self {
            commands: command_tx,
            events: event_rx,
            worker: Some(worker),
        })
    }

    /// Sends a command; false when the run has already ended.
    pub fn send(&self, command: TrainCommand) -> bool {
        self.commands.send(command).is_ok()
    }

    pub fn pause(&self) -> bool {
        self.send(TrainCommand::Pause)
    }

    pub fn resume_running(&self) -> bool {
        self.send(TrainCommand::Resume)
    }

    pub fn single_step(&self) -> bool {
        self.send(TrainCommand::Step)
    }

    pub fn stop(&self) -> bool {
        self.send(TrainCommand::Stop)
    }

    pub fn save_now(&self) -> bool {
        self.send(TrainCommand::SaveNow)
    }

    pub fn request_probe(&self) -> bool {
        self.send(TrainCommand::RequestProbe)
    }

    /// A sender for commands from elsewhere (a Ctrl-C handler, another thread).
    pub fn command_sender(&self) -> Sender<TrainCommand> {
        self.commands.clone()
    }

    /// The event stream; iterating it blocks until the next event and ends with the run.
    pub fn events(&self) -> &Receiver<TrainEvent> {
        &self.events
    }

    /// The next event if one is waiting (for a UI frame: never blocks).
    pub fn try_recv(&self) -> Option<TrainEvent> {
        self.events.try_recv().ok()
    }

    /// The next event, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<TrainEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Whether the worker thread has ended.
    pub fn is_finished(&self) -> bool {
        self.worker.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the worker thread to end (send [`TrainCommand::Stop`] first to end it early).
    pub fn join(mut self) -> Result<()> {
        match self.worker.take() {
            Some(worker) => worker
                .join()
                .map_err(|_| GlassboxError::Training("the training thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for TrainingRun {
    /// Dropping a run stops it (saving when it has an output folder) without waiting for it.
    fn drop(&mut self) {
        let _ = self.commands.send(TrainCommand::Stop);
    }
}

/// The worker's loop: commands between steps; evaluation, probes and saves on their schedule.
fn run_loop(mut trainer: Trainer, commands: &Receiver<TrainCommand>, events: &Sender<TrainEvent>) {
    // A closed event channel means nobody listens any more; the run still ends properly.
    let emit = |event: TrainEvent| {
        let _ = events.send(event);
    };
    emit(TrainEvent::Started(trainer.info().clone()));
    let t = trainer.config().training.clone();
    let has_out_dir = trainer.config().out_dir.is_some();

    // A curve starts with the untrained model's validation loss (as nanoGPT evaluates at step 0).
    if trainer.step_count() == 0 && t.eval_every > 0 {
        match trainer.evaluate() {
            Ok(report) => emit(TrainEvent::Eval(report)),
            Err(error) => return fail(&trainer, error, events),
        }
    }
    if trainer.step_count() == 0 && t.probe_every > 0 {
        send_probe(&trainer, events);
    }

    let mut paused = false;
    loop {
        // Commands: take all that are waiting; while paused, wait for the next one.
        let mut step_once = false;
        let mut stop = false;
        loop {
            let command = if paused && !step_once {
                match commands.recv() {
                    Ok(c) => c,
                    Err(_) => {
                        stop = true;
                        break;
                    }
                }
            } else {
                match commands.try_recv() {
                    Ok(c) => c,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        stop = true;
                        break;
                    }
                }
            };
            match command {
                TrainCommand::Pause if !paused => {
                    paused = true;
                    emit(TrainEvent::Paused {
                        step: trainer.step_count(),
                    });
                }
                TrainCommand::Resume if paused => {
                    paused = false;
                    emit(TrainEvent::Resumed {
                        step: trainer.step_count(),
                    });
                }
                TrainCommand::Step if paused => step_once = true,
                TrainCommand::Pause | TrainCommand::Resume | TrainCommand::Step => {}
                TrainCommand::Stop => {
                    stop = true;
                    break;
                }
                TrainCommand::SaveNow => save_or_warn(&mut trainer, events),
                TrainCommand::RequestProbe => send_probe(&trainer, events),
            }
        }
        if stop {
            let checkpoint = if has_out_dir {
                match save(&mut trainer, events) {
                    Ok(path) => Some(path),
                    Err(error) => return fail(&trainer, error, events),
                }
            } else {
                None
            };
            emit(TrainEvent::Finished(summary(&trainer, true, checkpoint)));
            return;
        }
        if trainer.is_done() {
            break;
        }

        match trainer.step() {
            Ok(report) => emit(TrainEvent::Step(report)),
            Err(error) => return fail(&trainer, error, events),
        }
        let step = trainer.step_count();
        let last = trainer.is_done();
        if !last && t.eval_every > 0 && step.is_multiple_of(t.eval_every) {
            match trainer.evaluate() {
                Ok(report) => emit(TrainEvent::Eval(report)),
                Err(error) => return fail(&trainer, error, events),
            }
        }
        if t.probe_every > 0 && step.is_multiple_of(t.probe_every) {
            send_probe(&trainer, events);
        }
        if !last && has_out_dir && t.save_every > 0 && step.is_multiple_of(t.save_every) {
            save_or_warn(&mut trainer, events);
        }
    }

    // The end: a last evaluation, a checkpoint, the export.
    let needs_eval = trainer
        .last_eval()
        .is_none_or(|e| e.step != trainer.step_count());
    if needs_eval {
        match trainer.evaluate() {
            Ok(report) => emit(TrainEvent::Eval(report)),
            Err(error) => return fail(&trainer, error, events),
        }
    }
    // The run's result is its last checkpoint: a run whose final save failed has failed.
    let checkpoint = if has_out_dir {
        match save(&mut trainer, events) {
            Ok(path) => Some(path),
            Err(error) => return fail(&trainer, error, events),
        }
    } else {
        None
    };
    emit(TrainEvent::Finished(summary(&trainer, false, checkpoint)));
}

fn summary(trainer: &Trainer, stopped_early: bool, checkpoint: Option<PathBuf>) -> RunSummary {
    RunSummary {
        step: trainer.step_count(),
        total_steps: trainer.total_steps(),
        stopped_early: stopped_early && !trainer.is_done(),
        final_eval: trainer.last_eval().cloned(),
        checkpoint,
        elapsed_secs: trainer.elapsed().as_secs_f64(),
    }
}

/// Saves and reports `Saved`. The error names the step and the last good checkpoint, which a
/// failed save leaves where it was.
fn save(trainer: &mut Trainer, events: &Sender<TrainEvent>) -> Result<PathBuf> {
    let step = trainer.step_count();
    match trainer.save() {
        Ok(path) => {
            let _ = events.send(TrainEvent::Saved {
                step,
                path: path.clone(),
            });
            Ok(path)
        }
        Err(error) => {
            let kept = match trainer.last_saved() {
                Some((saved_step, path)) => {
                    format!(
                        "the last good checkpoint (step {saved_step}) is still in {}",
                        path.display()
                    )
                }
                None => "no checkpoint of this run was saved".into(),
            };
            Err(GlassboxError::Training(format!(
                "could not save the checkpoint at step {step}: {error}; {kept}"
            )))
        }
    }
}

/// A save on the schedule (or asked for): when it fails the run goes on and says so; the final
/// save decides how the run ends.
fn save_or_warn(trainer: &mut Trainer, events: &Sender<TrainEvent>) {
    if let Err(error) = save(trainer, events) {
        let _ = events.send(TrainEvent::Warning {
            step: trainer.step_count(),
            message: error.to_string(),
        });
    }
}

fn send_probe(trainer: &Trainer, events: &Sender<TrainEvent>) {
    let event = match trainer.probe() {
        Ok(report) => TrainEvent::Probe(report),
        Err(error) => TrainEvent::Warning {
            step: trainer.step_count(),
            message: format!("could not trace the probe text: {error}"),
        },
    };
    let _ = events.send(event);
}

fn fail(trainer: &Trainer, error: GlassboxError, events: &Sender<TrainEvent>) {
    let _ = events.send(TrainEvent::Failed {
        step: trainer.step_count(),
        message: error.to_string(),
        last_checkpoint: trainer.last_saved().map(|(_, path)| path.clone()),
    });
}
