//! What the Train and Fine-tune views share: a live training run seen from the UI thread
//! ([`LiveRun`]: commands out, events in, never a step on this thread), its controls and status
//! line, frame-time measurement ([`FrameTimes`]), the attention snapshots of the probe text
//! ([`ProbeViewer`]), small background jobs ([`Background`]).

use eframe::egui;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use egui::{RichText, Ui, Vec2};

use crate::app::data::Matrix;
use crate::app::widgets::curves::TrainingCurves;
use crate::app::widgets::export::{
    ExportFormat, export_buttons, heatmap_png, matrix_csv, matrix_json,
};
use crate::app::widgets::{ColorScale, Heatmap, attention_lines};
use crate::lessons::compute::MeasuredRun;
use crate::train::{
    EvalReport, ProbeReport, RunInfo, RunSummary, StepReport, TrainConfig, TrainEvent, TrainingRun,
};

/// Probe snapshots kept per run; older ones are thinned (every second one dropped) beyond this.
pub const MAX_SNAPSHOTS: usize = 240;

/// Events taken from the run per frame at most (a frame never drowns in a backlog).
const MAX_EVENTS_PER_FRAME: usize = 20_000;

// ---------------------------------------------------------------------------------------------
// Background jobs
// ---------------------------------------------------------------------------------------------

/// One computation on its own thread (file reading, tokenizing a data set, loading checkpoints
/// for predictions), its result picked up by a later frame.
pub struct Background<T> {
    receiver: Option<Receiver<Result<T, String>>>,
    result: Option<Result<T, String>>,
    started: Option<Instant>,
}

impl<T> Default for Background<T> {
    fn default() -> Self {
        Self {
            receiver: None,
            result: None,
            started: None,
        }
    }
}

impl<T: Send + 'static> Background<T> {
    /// Starts `job` on a new thread (a previous job's answer is ignored from now on). The UI is
    /// woken when it ends.
    pub fn spawn(
        &mut self,
        ctx: &egui::Context,
        name: &str,
        job: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) {
        let (sender, receiver) = mpsc::channel();
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("glassbox-{name}"))
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                    .unwrap_or_else(|panic| {
                        let message = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "unknown panic".into());
                        Err(format!("internal error: {message}"))
                    });
                let _ = sender.send(result);
                ctx.request_repaint();
            });
        match spawned {
            Ok(_) => {
                self.receiver = Some(receiver);
                self.result = None;
                self.started = Some(Instant::now());
            }
            Err(e) => {
                self.receiver = None;
                self.result = Some(Err(format!("cannot start a thread for {name}: {e}")));
            }
        }
    }

    /// Picks up the answer if it came; true when it did this frame.
    pub fn poll(&mut self) -> bool {
        let Some(receiver) = &self.receiver else {
            return false;
        };
        match receiver.try_recv() {
            Ok(result) => {
                self.result = Some(result);
                self.receiver = None;
                true
            }
            Err(mpsc::TryRecvError::Empty) => false,
            Err(mpsc::TryRecvError::Disconnected) => {
                self.result = Some(Err("the background job ended without an answer".into()));
                self.receiver = None;
                true
            }
        }
    }

    pub fn is_pending(&self) -> bool {
        self.receiver.is_some()
    }

    pub fn result(&self) -> Option<&Result<T, String>> {
        self.result.as_ref()
    }

    pub fn value(&self) -> Option<&T> {
        self.result.as_ref().and_then(|r| r.as_ref().ok())
    }

    /// Forgets the answer (and stops waiting for a running job).
    pub fn clear(&mut self) {
        self.receiver = None;
        self.result = None;
    }

    /// A spinner while pending, the error when it failed. Returns the value when there is one.
    pub fn status_ui(&self, ui: &mut Ui, what: &str) -> Option<&T> {
        if self.is_pending() {
            ui.horizontal(|ui| {
                ui.spinner();
                let secs = self.started.map_or(0.0, |s| s.elapsed().as_secs_f32());
                ui.weak(format!("{what} ({secs:.1} s)…"));
            });
            ui.ctx().request_repaint_after(Duration::from_millis(100));
        }
        match &self.result {
            Some(Ok(value)) => Some(value),
            Some(Err(message)) => {
                crate::app::widgets::error_label(ui, message);
                None
            }
            None => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Frame times
// ---------------------------------------------------------------------------------------------

/// The last frames' timing while a run is live: the interval between frames (what the user
/// sees as smoothness; egui's `unstable_dt`, and the wall clock between two calls of the
/// panel) and the time the panel itself took to draw.
#[derive(Debug, Clone, Default)]
pub struct FrameTimes {
    intervals: VecDeque<f32>,
    work: VecDeque<f32>,
    last_frame: Option<Instant>,
    /// Frames recorded since the run started.
    pub frames: u64,
}

/// Samples kept (the last few seconds at 60 frames per second).
const FRAME_SAMPLES: usize = 600;

impl FrameTimes {
    /// Call at the start of the panel's `ui`: records the interval since the previous frame.
    /// Returns the time to pass to [`FrameTimes::end`].
    pub fn begin(&mut self, ui: &Ui) -> Instant {
        let now = Instant::now();
        let dt_ms = ui.ctx().input(|i| i.unstable_dt) * 1000.0;
        let wall_ms = self
            .last_frame
            .map(|t| now.duration_since(t).as_secs_f32() * 1000.0);
        // The wall clock between two frames of this panel is what the user sees; egui's dt is
        // the fallback on the first frame.
        let interval = wall_ms.unwrap_or(dt_ms);
        // A gap of seconds means the view was hidden (another view open), not a slow frame.
        if interval < 1000.0 {
            push_capped(&mut self.intervals, interval);
        }
        self.last_frame = Some(now);
        self.frames += 1;
        now
    }

    /// Call at the end of the panel's `ui`.
    pub fn end(&mut self, started: Instant) {
        push_capped(&mut self.work, started.elapsed().as_secs_f32() * 1000.0);
    }

    /// Forgets the samples (at the start of a run); a paused run stops recording.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Stops the interval clock (so the time while not recording is not counted).
    pub fn pause_clock(&mut self) {
        self.last_frame = None;
    }

    /// (median, worst) interval between frames in ms.
    pub fn interval_stats(&self) -> Option<(f32, f32)> {
        stats(&self.intervals)
    }

    /// (median, worst) time the panel took per frame in ms.
    pub fn work_stats(&self) -> Option<(f32, f32)> {
        stats(&self.work)
    }

    pub fn samples(&self) -> usize {
        self.intervals.len()
    }

    /// "frame interval median 16.7 ms, worst 21.0 ms · panel 0.8 ms (worst 2.1) · 600 frames".
    pub fn summary(&self) -> Option<String> {
        let (median, worst) = self.interval_stats()?;
        let (work_median, work_worst) = self.work_stats().unwrap_or((0.0, 0.0));
        Some(format!(
            "Frame time while training: median {median:.1} ms, worst {worst:.1} ms \
             (≈{:.0} frames/s) · this view draws in {work_median:.1} ms (worst {work_worst:.1}) \
             · last {} frames",
            1000.0 / median.max(0.001),
            self.samples()
        ))
    }
}

fn push_capped(queue: &mut VecDeque<f32>, value: f32) {
    if queue.len() == FRAME_SAMPLES {
        queue.pop_front();
    }
    queue.push_back(value);
}

fn stats(samples: &VecDeque<f32>) -> Option<(f32, f32)> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted: Vec<f32> = samples.iter().copied().collect();
    sorted.sort_by(f32::total_cmp);
    let median = sorted[sorted.len() / 2];
    let worst = sorted[sorted.len() - 1];
    Some((median, worst))
}

// ---------------------------------------------------------------------------------------------
// A live run
// ---------------------------------------------------------------------------------------------

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Data, tokenizer and model are being prepared on the training thread.
    Preparing,
    Running,
    Paused,
    Finished,
    Failed,
}

impl RunState {
    pub fn label(self) -> &'static str {
        match self {
            RunState::Preparing => "preparing data, tokenizer and model",
            RunState::Running => "training",
            RunState::Paused => "paused",
            RunState::Finished => "finished",
            RunState::Failed => "failed",
        }
    }
}

/// A divergence or other error that ended the run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFailure {
    pub step: usize,
    pub message: String,
    pub last_checkpoint: Option<PathBuf>,
}

/// A training run as the UI sees it: the [`TrainingRun`] (its own thread), and everything its
/// events said so far. [`LiveRun::poll`] drains the events; it never blocks.
pub struct LiveRun {
    run: Option<TrainingRun>,
    pub config: TrainConfig,
    pub state: RunState,
    pub info: Option<RunInfo>,
    pub last_step: Option<StepReport>,
    pub curves: TrainingCurves,
    pub evals: Vec<EvalReport>,
    pub probes: Vec<ProbeReport>,
    /// (step, checkpoint folder) of every save.
    pub saved: Vec<(usize, PathBuf)>,
    pub warnings: Vec<String>,
    pub failure: Option<RunFailure>,
    pub summary: Option<RunSummary>,
    pub frames: FrameTimes,
    /// A command sent whose answer (Paused / Resumed / a step) has not come yet.
    pub waiting_for: Option<&'static str>,
    started: Instant,
}

impl LiveRun {
    /// Starts `config` on the training thread. Problems with the data or the model arrive as a
    /// failure event a moment later.
    pub fn start(config: TrainConfig) -> Result<Self, String> {
        config.validate().map_err(|e| e.to_string())?;
        let run = TrainingRun::start_in_background(config.clone()).map_err(|e| e.to_string())?;
        Ok(Self {
            run: Some(run),
            config,
            state: RunState::Preparing,
            info: None,
            last_step: None,
            curves: TrainingCurves {
                smooth: true,
                ..TrainingCurves::default()
            },
            evals: Vec::new(),
            probes: Vec::new(),
            saved: Vec::new(),
            warnings: Vec::new(),
            failure: None,
            summary: None,
            frames: FrameTimes::default(),
            waiting_for: None,
            started: Instant::now(),
        })
    }

    /// Whether the training thread may still send events.
    pub fn is_live(&self) -> bool {
        matches!(
            self.state,
            RunState::Preparing | RunState::Running | RunState::Paused
        )
    }

    pub fn is_done(&self) -> bool {
        !self.is_live()
    }

    /// Steps completed.
    pub fn step(&self) -> usize {
        self.last_step
            .as_ref()
            .map(|s| s.step)
            .or_else(|| self.info.as_ref().map(|i| i.start_step))
            .unwrap_or(0)
    }

    pub fn total_steps(&self) -> usize {
        self.info
            .as_ref()
            .map_or(self.config.training.steps, |i| i.total_steps)
    }

    /// The newest evaluation.
    pub fn last_eval(&self) -> Option<&EvalReport> {
        self.evals.last()
    }

    /// The evaluation of the untrained model (step 0), if one was made.
    pub fn first_eval(&self) -> Option<&EvalReport> {
        self.evals.first().filter(|e| e.step == 0)
    }

    /// How fast this machine trains, from the run's size and its latest step's tokens/s: the
    /// compute calculator's "this machine".
    pub fn measured_speed(&self) -> Option<MeasuredRun> {
        let info = self.info.as_ref()?;
        let step = self.last_step.as_ref()?;
        MeasuredRun::new(info.parameters as f64, step.tokens_per_sec).ok()
    }

    /// The last checkpoint folder written.
    pub fn checkpoint(&self) -> Option<&PathBuf> {
        self.summary
            .as_ref()
            .and_then(|s| s.checkpoint.as_ref())
            .or_else(|| self.saved.last().map(|(_, p)| p))
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Drains every waiting event (bounded per frame). Returns how many were taken.
    pub fn poll(&mut self) -> usize {
        let mut taken = 0;
        while taken < MAX_EVENTS_PER_FRAME {
            let Some(event) = self.run.as_ref().and_then(TrainingRun::try_recv) else {
                break;
            };
            taken += 1;
            self.on_event(event);
        }
        // A thread that ended without a last word (it panicked) must not leave a spinner. Its
        // events were all sent before it ended, so one more drain sees any that are left.
        if taken == 0 && self.is_live() && self.run.as_ref().is_some_and(TrainingRun::is_finished) {
            while let Some(event) = self.run.as_ref().and_then(TrainingRun::try_recv) {
                taken += 1;
                self.on_event(event);
            }
        }
        if taken == 0 && self.is_live() && self.run.as_ref().is_some_and(TrainingRun::is_finished) {
            self.state = RunState::Failed;
            self.failure = Some(RunFailure {
                step: self.step(),
                message: "the training thread ended unexpectedly".into(),
                last_checkpoint: self.saved.last().map(|(_, p)| p.clone()),
            });
        }
        taken
    }

    fn on_event(&mut self, event: TrainEvent) {
        match event {
            TrainEvent::Started(info) => {
                self.info = Some(info);
                if self.state == RunState::Preparing {
                    self.state = RunState::Running;
                }
            }
            TrainEvent::Step(report) => {
                self.curves.push_step(&report);
                self.last_step = Some(report);
                if self.waiting_for == Some("step") {
                    self.waiting_for = None;
                }
            }
            TrainEvent::Eval(report) => {
                self.curves.push_eval(&report);
                match self.evals.last_mut() {
                    Some(last) if last.step == report.step => *last = report,
                    _ => self.evals.push(report),
                }
            }
            TrainEvent::Probe(report) => self.push_probe(report),
            TrainEvent::Saved { step, path } => self.saved.push((step, path)),
            TrainEvent::Paused { .. } => {
                self.state = RunState::Paused;
                self.waiting_for = None;
            }
            TrainEvent::Resumed { .. } => {
                self.state = RunState::Running;
                self.waiting_for = None;
            }
            TrainEvent::Warning { step, message } => {
                self.warnings.push(format!("step {step}: {message}"));
            }
            TrainEvent::Finished(summary) => {
                self.state = RunState::Finished;
                self.waiting_for = None;
                self.summary = Some(summary);
            }
            TrainEvent::Failed {
                step,
                message,
                last_checkpoint,
            } => {
                self.state = RunState::Failed;
                self.waiting_for = None;
                self.failure = Some(RunFailure {
                    step,
                    message,
                    last_checkpoint,
                });
            }
        }
    }

    fn push_probe(&mut self, report: ProbeReport) {
        if let Some(last) = self.probes.last_mut()
            && last.step == report.step
        {
            *last = report;
            return;
        }
        self.probes.push(report);
        if self.probes.len() > MAX_SNAPSHOTS {
            // Keep the first, every second one after it, and the newest.
            let newest = self.probes.pop();
            let kept: Vec<ProbeReport> = self
                .probes
                .drain(..)
                .enumerate()
                .filter(|(i, _)| i % 2 == 0)
                .map(|(_, p)| p)
                .collect();
            self.probes = kept;
            self.probes.extend(newest);
        }
    }

    // ---- commands -----------------------------------------------------------------------------

    pub fn pause(&mut self) {
        if self.run.as_ref().is_some_and(TrainingRun::pause) {
            self.waiting_for = Some("pause");
        }
    }

    pub fn resume(&mut self) {
        if self.run.as_ref().is_some_and(TrainingRun::resume_running) {
            self.waiting_for = Some("resume");
        }
    }

    pub fn single_step(&mut self) {
        if self.run.as_ref().is_some_and(TrainingRun::single_step) {
            self.waiting_for = Some("step");
        }
    }

    pub fn stop(&mut self) {
        if self.run.as_ref().is_some_and(TrainingRun::stop) {
            self.waiting_for = Some("stop");
        }
    }

    pub fn save_now(&mut self) {
        if self.config.out_dir.is_none() {
            self.warnings
                .push("this run has no output folder, so there is nowhere to save".into());
            return;
        }
        if self.run.as_ref().is_some_and(TrainingRun::save_now) {
            self.waiting_for = Some("save");
        }
    }

    pub fn request_probe(&mut self) {
        if let Some(run) = &self.run {
            run.request_probe();
        }
    }

    /// Once per frame: records the frame time, drains the events, and keeps frames coming
    /// while the run is live. Returns the value to pass to [`LiveRun::end_frame`].
    pub fn begin_frame(&mut self, ui: &Ui) -> Option<Instant> {
        self.poll();
        match self.state {
            RunState::Preparing | RunState::Running => {
                // Full frame rate while the run trains, so the curves move smoothly; the frame
                // clock measures exactly these frames.
                ui.ctx().request_repaint();
                Some(self.frames.begin(ui))
            }
            RunState::Paused => {
                // Nothing moves while paused; look for the answer to Step / Resume often.
                ui.ctx().request_repaint_after(Duration::from_millis(30));
                self.frames.pause_clock();
                None
            }
            RunState::Finished | RunState::Failed => {
                self.frames.pause_clock();
                None
            }
        }
    }

    pub fn end_frame(&mut self, started: Option<Instant>) {
        if let Some(started) = started {
            self.frames.end(started);
        }
    }

    /// The buttons: Pause, Step, Resume, Stop, Save (accessible names exactly these).
    pub fn controls(&mut self, ui: &mut Ui) {
        let running = self.state == RunState::Running || self.state == RunState::Preparing;
        let paused = self.state == RunState::Paused;
        let live = self.is_live();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(running, egui::Button::new("Pause"))
                .on_hover_text("Stop after the current step; the run waits")
                .clicked()
            {
                self.pause();
            }
            if ui
                .add_enabled(paused, egui::Button::new("Step"))
                .on_hover_text("While paused: do exactly one optimizer step")
                .clicked()
            {
                self.single_step();
            }
            if ui
                .add_enabled(paused, egui::Button::new("Resume"))
                .on_hover_text("Go on training")
                .clicked()
            {
                self.resume();
            }
            if ui
                .add_enabled(live, egui::Button::new("Stop"))
                .on_hover_text("Save a checkpoint and end the run")
                .clicked()
            {
                self.stop();
            }
            let can_save = live && self.config.out_dir.is_some();
            if ui
                .add_enabled(can_save, egui::Button::new("Save"))
                .on_hover_text("Write a checkpoint now and go on")
                .clicked()
            {
                self.save_now();
            }
            if ui
                .add_enabled(live, egui::Button::new("Probe now"))
                .on_hover_text("Trace the probe text with the current weights")
                .clicked()
            {
                self.request_probe();
            }
            if let Some(what) = self.waiting_for {
                ui.spinner();
                ui.weak(format!("{what} requested…"));
            }
        });
    }

    /// Step counter, losses, speed, ETA, the frame times, saves, warnings and errors.
    pub fn status(&self, ui: &mut Ui) {
        let state_color = match self.state {
            RunState::Failed => ui.visuals().error_fg_color,
            RunState::Paused => ui.visuals().warn_fg_color,
            _ => ui.visuals().text_color(),
        };
        ui.horizontal_wrapped(|ui| {
            if self.state == RunState::Preparing {
                ui.spinner();
            }
            ui.label(RichText::new(format!("Status: {}", self.state.label())).color(state_color));
            ui.separator();
            ui.label(
                RichText::new(format!(
                    "Steps done: {} of {}",
                    self.step(),
                    self.total_steps()
                ))
                .strong(),
            );
            if let Some(step) = &self.last_step {
                ui.separator();
                ui.label(format!("train loss {:.4}", step.train_loss));
                if let Some(val) = self.curves.last_val_loss() {
                    ui.separator();
                    ui.label(format!("validation loss {val:.4}"));
                }
                ui.separator();
                ui.label(format!("lr {:.3e}", step.lr));
                ui.separator();
                ui.label(format!("grad norm {:.3}", step.grad_norm));
                ui.separator();
                ui.label(format!("{:.0} tokens/s", step.tokens_per_sec));
                ui.separator();
                ui.label(format!("{:.1} ms/step", step.step_ms));
                ui.separator();
                ui.label(format!("elapsed {}", format_duration(step.elapsed_secs)));
                if self.is_live() {
                    ui.separator();
                    ui.label(format!("ETA {}", format_duration(step.eta_secs)));
                }
            }
        });
        let fraction = self.step() as f32 / self.total_steps().max(1) as f32;
        ui.add(
            egui::ProgressBar::new(fraction)
                .desired_height(8.0)
                .desired_width(ui.available_width().min(900.0)),
        );
        if let Some(info) = &self.info {
            ui.weak(format!(
                "{} · {} parameters · vocabulary {} · sequence {} tokens · {} tokens per step · \
                 data: {} ({} train / {} validation) · device {}",
                info.objective.name(),
                crate::model::params::group_thousands(info.parameters as u64),
                info.vocab_size,
                info.seq_len,
                info.tokens_per_step,
                info.data.source,
                info.data.train_examples,
                info.data.val_examples,
                info.device,
            ));
            if !info.fresh_tensors.is_empty() {
                ui.weak(format!(
                    "Started fresh (not in the checkpoint): {}",
                    info.fresh_tensors.join(", ")
                ));
            }
        }
        if let Some(summary) = self.frames.summary() {
            ui.weak(summary);
        }
        if let Some((step, path)) = self.saved.last() {
            ui.label(format!(
                "Checkpoint saved at step {step}: {}",
                path.display()
            ));
        }
        if let Some(summary) = &self.summary {
            ui.label(format!(
                "The run ended after {} of {} steps{} in {}.",
                summary.step,
                summary.total_steps,
                if summary.stopped_early {
                    " (stopped early)"
                } else {
                    ""
                },
                format_duration(summary.elapsed_secs)
            ));
        }
        for warning in self.warnings.iter().rev().take(3) {
            ui.colored_label(ui.visuals().warn_fg_color, format!("Warning: {warning}"));
        }
        if let Some(failure) = &self.failure {
            egui::Frame::new()
                .fill(ui.visuals().error_fg_color.gamma_multiply(0.12))
                .inner_margin(6.0)
                .corner_radius(4.0)
                .show(ui, |ui| {
                    ui.colored_label(
                        ui.visuals().error_fg_color,
                        format!(
                            "The run stopped at step {}: {}",
                            failure.step, failure.message
                        ),
                    );
                    match &failure.last_checkpoint {
                        Some(path) => {
                            ui.label(format!("Last good checkpoint: {}", path.display()));
                        }
                        None => {
                            ui.label("No checkpoint had been saved before the run stopped.");
                        }
                    }
                });
        }
    }
}

/// "1 h 02 min", "3 min 05 s", "12.3 s".
pub fn format_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "—".into();
    }
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        format!("{} min {:02} s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!(
            "{} h {:02} min",
            (secs / 3600.0) as u64,
            ((secs % 3600.0) / 60.0) as u64
        )
    }
}

/// A fresh run folder name: `runs/{prefix}-{unix seconds}`.
pub fn new_run_dir(prefix: &str) -> PathBuf {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{prefix}-{seconds}"))
}

// ---------------------------------------------------------------------------------------------
// Attention snapshots of the probe text
// ---------------------------------------------------------------------------------------------

/// Which snapshot, layer and head to show.
#[derive(Debug, Clone, Default)]
pub struct ProbeViewer {
    pub layer: usize,
    /// `None`: the mean over heads.
    pub head: Option<usize>,
    /// `None`: follow the newest snapshot.
    pub snapshot: Option<usize>,
}

impl ProbeViewer {
    /// The attention map and the model's output for the probe text, with a slider that scrubs
    /// back through every snapshot of the run.
    pub fn show(
        &mut self,
        ui: &mut Ui,
        probes: &[ProbeReport],
        causal: bool,
        export_dir: &Path,
        id_salt: &str,
    ) {
        if probes.is_empty() {
            ui.weak("No snapshot yet: the probe text is traced every few steps (or press \"Probe now\").");
            return;
        }
        let newest = probes.len() - 1;
        let mut index = self.snapshot.unwrap_or(newest).min(newest);
        ui.horizontal(|ui| {
            let label = ui.label("Snapshot");
            let response = ui
                .add(
                    egui::Slider::new(&mut index, 0..=newest)
                        .custom_formatter(|v, _| {
                            let i = (v as usize).min(newest);
                            format!("{} (step {})", i + 1, probes[i].step)
                        })
                        .custom_parser(|text| {
                            text.split_whitespace()
                                .next()
                                .and_then(|n| n.parse::<f64>().ok())
                                .map(|n| n - 1.0)
                        }),
                )
                .labelled_by(label.id);
            if response.changed() {
                self.snapshot = if index == newest { None } else { Some(index) };
            }
            let mut follow = self.snapshot.is_none();
            if ui
                .checkbox(&mut follow, "Follow the newest")
                .on_hover_text("Show each new snapshot as it arrives")
                .changed()
            {
                self.snapshot = if follow { None } else { Some(index) };
            }
            ui.weak(format!("{} snapshots", probes.len()));
        });
        let probe = &probes[index];
        let layers = probe.attention.len();
        if layers == 0 {
            ui.weak("This snapshot has no attention maps.");
            return;
        }
        self.layer = self.layer.min(layers - 1);
        let heads = probe.attention[self.layer].len();
        if self.head.is_some_and(|h| h >= heads) {
            self.head = None;
        }
        ui.horizontal(|ui| {
            ui.label("Layer");
            for layer in 0..layers {
                ui.selectable_value(&mut self.layer, layer, format!("L{layer}"));
            }
            ui.separator();
            ui.label("Head");
            ui.selectable_value(&mut self.head, None, "mean");
            for head in 0..heads {
                ui.selectable_value(&mut self.head, Some(head), format!("H{head}"));
            }
        });
        let Some(matrix) = attention_matrix(probe, self.layer, self.head) else {
            ui.weak("No map for this layer and head.");
            return;
        };
        let labels: Vec<String> = probe.tokens.clone();
        let mask = causal.then(|| Matrix::causal(matrix.rows));
        let head_name = self
            .head
            .map_or("mean over heads".to_string(), |h| format!("head {h}"));
        let which = if probe.cross.is_some() {
            "Encoder self-attention (bidirectional)"
        } else {
            "Attention"
        };
        ui.label(format!(
            "{which} at step {}: layer {}, {head_name} — \"{}\"",
            probe.step, self.layer, probe.text
        ));
        let side = ui.available_width().clamp(200.0, 520.0);
        Heatmap::new(
            &matrix,
            format!("attention of the probe text at step {}", probe.step),
        )
        .labels(&labels)
        .mask(mask.as_ref())
        .scale(ColorScale::PROBABILITY)
        .axis_titles("query", "key")
        .max_size(Vec2::new(side, side))
        .max_cell(32.0)
        .show(ui);
        let stem = format!("{id_salt}-attention-step{}-L{}", probe.step, self.layer);
        let extra = serde_json::json!({
            "step": probe.step,
            "layer": self.layer,
            "head": self.head,
            "text": probe.text,
            "output": probe.output,
        });
        export_buttons(
            ui,
            &format!("{id_salt}-attention"),
            export_dir,
            &stem,
            &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
            |format| match format {
                ExportFormat::Png => heatmap_png(&matrix, mask.as_ref(), ColorScale::PROBABILITY),
                ExportFormat::Csv => Ok(matrix_csv(&matrix, &labels, &labels).into_bytes()),
                ExportFormat::Json => matrix_json(&matrix, &labels, &labels, extra),
            },
        );
        ui.add_space(4.0);
        ui.label(
            RichText::new(format!(
                "What the model makes of it at step {}:",
                probe.step
            ))
            .strong(),
        );
        let output = if probe.output.trim().is_empty() {
            "(empty)".to_string()
        } else {
            probe.output.clone()
        };
        let output_label = if causal {
            format!("{}▸{output}", probe.text)
        } else {
            output
        };
        ui.add(egui::Label::new(RichText::new(output_label).monospace()).wrap());
        if let Some(cross) = &probe.cross {
            self.show_cross(ui, probe, cross, export_dir, id_salt);
        }
    }

    /// Seq2seq: the probe translation's cross-attention (rows: the target tokens written,
    /// columns: the source tokens), as a heatmap and as lines, for the chosen layer and head.
    fn show_cross(
        &self,
        ui: &mut Ui,
        probe: &ProbeReport,
        cross: &crate::train::CrossAttentionProbe,
        export_dir: &Path,
        id_salt: &str,
    ) {
        ui.add_space(6.0);
        let layers = cross.attention.len();
        if layers == 0 {
            return;
        }
        let layer = self.layer.min(layers - 1);
        let Some(matrix) = cross_matrix(cross, probe.tokens.len(), layer, self.head) else {
            return;
        };
        let head_name = self
            .head
            .map_or("mean over heads".to_string(), |h| format!("head {h}"));
        ui.label(
            RichText::new(format!(
                "Cross-attention at step {}: decoder layer {layer}, {head_name}",
                probe.step
            ))
            .strong(),
        );
        ui.weak(
            "Rows: the target tokens the decoder wrote; columns: the source tokens. Early in \
             training every row is spread evenly; as the model learns, each word looks at the \
             word it translates (\"noir\" at \"black\", one place later: the adjective swap).",
        );
        let source = probe.tokens.clone();
        let target = cross.target_tokens.clone();
        let side = ui.available_width().clamp(200.0, 520.0);
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                Heatmap::new(
                    &matrix,
                    format!("cross-attention of the probe at step {}", probe.step),
                )
                .row_labels(&target)
                .col_labels(&source)
                .scale(ColorScale::PROBABILITY)
                .axis_titles("target (written)", "source (read)")
                .max_size(Vec2::new(side, side))
                .max_cell(32.0)
                .show(ui);
            });
            ui.vertical(|ui| {
                attention_lines(
                    ui,
                    &matrix,
                    None,
                    (&target, &source),
                    None,
                    &format!("cross-attention lines at step {}", probe.step),
                    "Left: the token written. Right: the source tokens it looked at.",
                );
            });
        });
        let stem = format!("{id_salt}-cross-attention-step{}-L{layer}", probe.step);
        let extra = serde_json::json!({
            "step": probe.step,
            "layer": layer,
            "head": self.head,
            "text": probe.text,
            "translation": probe.output,
        });
        export_buttons(
            ui,
            &format!("{id_salt}-cross-attention"),
            export_dir,
            &stem,
            &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
            |format| match format {
                ExportFormat::Png => heatmap_png(&matrix, None, ColorScale::PROBABILITY),
                ExportFormat::Csv => Ok(matrix_csv(&matrix, &target, &source).into_bytes()),
                ExportFormat::Json => matrix_json(&matrix, &target, &source, extra),
            },
        );
    }
}

/// Layer `layer`, head `head` (or the mean over heads) of a probe's cross-attention as a
/// `[target × source]` matrix.
pub fn cross_matrix(
    cross: &crate::train::CrossAttentionProbe,
    source_len: usize,
    layer: usize,
    head: Option<usize>,
) -> Option<Matrix> {
    let heads = cross.attention.get(layer)?;
    let rows = cross.target_tokens.len();
    let to_matrix = |data: &Vec<f32>| Matrix::new(rows, source_len, data.clone());
    match head {
        Some(h) => heads.get(h).map(to_matrix),
        None => {
            let n = heads.len().max(1) as f32;
            let mut sum = vec![0f32; rows * source_len];
            for data in heads {
                for (total, v) in sum.iter_mut().zip(data) {
                    *total += v / n;
                }
            }
            (!heads.is_empty()).then(|| Matrix::new(rows, source_len, sum))
        }
    }
}

/// Layer `layer`, head `head` (or the mean over heads) of a probe as a matrix.
pub fn attention_matrix(probe: &ProbeReport, layer: usize, head: Option<usize>) -> Option<Matrix> {
    let heads = probe.attention.get(layer)?;
    let s = probe.tokens.len();
    let to_matrix = |data: &Vec<f32>| {
        let n = (data.len() as f64).sqrt() as usize;
        let n = if n * n == data.len() { n } else { s };
        Matrix::new(n, n, data.clone())
    };
    match head {
        Some(h) => heads.get(h).map(to_matrix),
        None => {
            let matrices: Vec<Matrix> = heads.iter().map(to_matrix).collect();
            if matrices.is_empty() {
                None
            } else {
                Some(Matrix::mean(&matrices))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(12.34), "12.3 s");
        assert_eq!(format_duration(185.0), "3 min 05 s");
        assert_eq!(format_duration(3720.0), "1 h 02 min");
    }

    #[test]
    fn mask_and_mean() {
        let mask = Matrix::causal(3);
        assert_eq!(mask.data, vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
        let probe = ProbeReport {
            step: 3,
            text: "ab".into(),
            tokens: vec!["a".into(), "b".into()],
            attention: vec![vec![vec![1.0, 0.0, 0.5, 0.5], vec![1.0, 0.0, 0.0, 1.0]]],
            output: String::new(),
            cross: None,
        };
        let mean = attention_matrix(&probe, 0, None).expect("mean");
        assert_eq!(mean.data, vec![1.0, 0.0, 0.25, 0.75]);
        assert_eq!(
            attention_matrix(&probe, 0, Some(1)).map(|m| m.data[3]),
            Some(1.0)
        );
        assert!(attention_matrix(&probe, 1, None).is_none());
    }
}
