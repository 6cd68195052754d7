//! View "Lessons": the course (`lessons/*.md`, see `lessons/README.md`).
//!
//! The view itself lists the lessons with the learner's progress, the files that failed to load
//! (file and line; the others still work) and the compute calculator. An open lesson is drawn
//! by the shell in a pane beside the live views ([`LessonsPanel::pane_ui`]): one step at a time,
//! its Markdown, its "try it" buttons and its questions. A button's commands run through a
//! [`runner::Runner`], which hands the shell the app's own [`Action`]s and waits where a command
//! needs a model or the tokens of a new text. Progress is saved on every change.

mod calculator;
pub mod runner;

use eframe::egui;
use std::collections::HashMap;
use std::path::PathBuf;

use egui::{Color32, FontId, Key, Modifiers, RichText, Role, TextStyle, Ui, WidgetInfo};

use super::{Action, Panel};
use crate::app::state::{Notice, Shared};
use crate::app::widgets::markdown;
use crate::lessons::ViewName;
use crate::lessons::{
    Answer, Block, Lesson, LessonError, Progress, Question, QuestionKind, find_lessons_dir,
    load_lessons,
};
pub use calculator::Calculator;
use runner::{Runner, Status};

/// A "try it" button: its lesson and the line of its block (unique in the file).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ActionKey {
    pub lesson: String,
    pub line: usize,
}

/// What became of the last click on a button.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Working(String),
    Done(Vec<String>),
    Failed(String),
}

/// A question being answered: what is typed or picked, and the last verdict.
#[derive(Debug, Clone, Default)]
struct AnswerState {
    text: String,
    choice: Option<usize>,
    verdict: Option<Answer>,
}

/// Which lesson to open at start (`GLASSBOX_LESSON`).
#[derive(Debug, Clone, PartialEq)]
pub enum StartLesson {
    /// A lesson id, optionally with a step from 1: `attention` or `attention:3`.
    Id(String),
    /// The lesson open when the app last closed; the first lesson on a first start.
    Resume,
}

pub struct LessonsPanel {
    /// Where the lessons are read from; `None`: [`find_lessons_dir`].
    dir: Option<PathBuf>,
    /// Where progress is saved; `None`: nowhere.
    progress_path: Option<PathBuf>,
    loaded: bool,
    lessons: Vec<Lesson>,
    errors: Vec<LessonError>,
    progress: Progress,
    /// A progress file that could not be read or written.
    progress_problem: Option<String>,
    /// The open lesson (index into `lessons`) and its step.
    open: Option<usize>,
    step: usize,
    on_start: Option<StartLesson>,
    answers: HashMap<(String, String), AnswerState>,
    runner: Option<(ActionKey, Runner)>,
    /// The key of the button whose actions were handed out last (problems are reported to it).
    last_key: Option<ActionKey>,
    outcomes: HashMap<ActionKey, Outcome>,
    outbox: Vec<Action>,
    pub calculator: Calculator,
    scroll_to_top: bool,
}

impl Default for LessonsPanel {
    fn default() -> Self {
        Self {
            dir: None,
            progress_path: Progress::default_path(),
            loaded: false,
            lessons: Vec::new(),
            errors: Vec::new(),
            progress: Progress::default(),
            progress_problem: None,
            open: None,
            step: 0,
            on_start: None,
            answers: HashMap::new(),
            runner: None,
            last_key: None,
            outcomes: HashMap::new(),
            outbox: Vec::new(),
            calculator: Calculator::default(),
            scroll_to_top: false,
        }
    }
}

// ---- state --------------------------------------------------------------------------------------

impl LessonsPanel {
    /// Reads the lessons from `dir` (instead of the course's folder) on the next frame.
    pub fn set_lessons_dir(&mut self, dir: PathBuf) {
        self.dir = Some(dir);
        self.loaded = false;
    }

    /// Keeps progress in `path` (`None`: not saved), read on the next frame.
    pub fn set_progress_path(&mut self, path: Option<PathBuf>) {
        self.progress_path = path;
        self.loaded = false;
    }

    /// Opens a lesson once the lessons are read.
    pub fn open_on_start(&mut self, start: StartLesson) {
        self.on_start = Some(start);
    }

    pub fn lessons(&self) -> &[Lesson] {
        &self.lessons
    }

    /// Lesson files that could not be used.
    pub fn errors(&self) -> &[LessonError] {
        &self.errors
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    pub fn open_lesson(&self) -> Option<&Lesson> {
        self.open.and_then(|i| self.lessons.get(i))
    }

    pub fn is_open(&self) -> bool {
        self.open_lesson().is_some()
    }

    /// The step shown, from 0.
    pub fn step(&self) -> usize {
        self.step
    }

    /// Whether a "try it" button is still working through its commands.
    pub fn is_running(&self) -> bool {
        self.runner.is_some()
    }

    /// What the last click on a button of `lesson` (block at `line`) came to.
    pub fn outcome(&self, lesson: &str, line: usize) -> Option<&Outcome> {
        self.outcomes.get(&ActionKey {
            lesson: lesson.to_string(),
            line,
        })
    }

    /// The verdict on the last answer checked for a question.
    pub fn verdict(&self, lesson: &str, question: &str) -> Option<&Answer> {
        self.answers
            .get(&(lesson.to_string(), question.to_string()))?
            .verdict
            .as_ref()
    }

    fn load(&mut self, shared: &mut Shared) {
        self.loaded = true;
        self.reload_lessons();
        self.progress_problem = None;
        self.progress = match &self.progress_path {
            None => {
                self.progress_problem =
                    Some("No home folder is known, so progress is not saved.".into());
                Progress::default()
            }
            Some(path) => match Progress::load(path) {
                Ok(progress) => progress,
                Err(e) => {
                    // Keep the unreadable file next to the fresh one rather than overwrite it.
                    let kept = path.with_extension("json.unreadable");
                    let _ = std::fs::copy(path, &kept);
                    let message = format!(
                        "Your lesson progress could not be read ({e}); starting afresh. The old \
                         file is kept as {}.",
                        kept.display()
                    );
                    shared.info(message.clone());
                    self.progress_problem = Some(message);
                    Progress::default()
                }
            },
        };
        self.answers.clear();
        if let Some(lesson) = self.open_lesson() {
            self.step = self
                .progress
                .lesson(&lesson.id)
                .map_or(0, |p| p.current_step)
                .min(lesson.steps.len().saturating_sub(1));
        }
    }

    /// Reads the lesson files again, keeping the open lesson (by id) if it is still there.
    pub fn reload_lessons(&mut self) {
        let open_id = self.open_lesson().map(|l| l.id.clone());
        match self.dir.clone().or_else(find_lessons_dir) {
            Some(dir) => (self.lessons, self.errors) = load_lessons(&dir),
            None => {
                self.lessons.clear();
                self.errors = vec![LessonError::new(
                    "lessons",
                    0,
                    "no lessons folder was found (looked next to the app and in the current \
                     folder; GLASSBOX_LESSONS may point at one)",
                )];
            }
        }
        self.open = open_id.and_then(|id| self.lessons.iter().position(|l| l.id == id));
        if let Some(lesson) = self.open_lesson() {
            self.step = self.step.min(lesson.steps.len().saturating_sub(1));
        }
    }

    fn save(&mut self) {
        let Some(path) = &self.progress_path else {
            return;
        };
        match self.progress.save(path) {
            Ok(()) => {
                if self
                    .progress_problem
                    .as_ref()
                    .is_some_and(|p| p.starts_with("Cannot save"))
                {
                    self.progress_problem = None;
                }
            }
            Err(e) => {
                self.progress_problem = Some(format!("Cannot save your progress: {e}"));
            }
        }
    }

    /// Opens a lesson by id at the step it was left at; false if there is none.
    pub fn open(&mut self, id: &str) -> bool {
        let Some(index) = self.lessons.iter().position(|l| l.id == id) else {
            return false;
        };
        let steps = self.lessons[index].steps.len();
        let step = self.progress.lesson(id).map_or(0, |p| p.current_step);
        self.open = Some(index);
        self.go_to(step.min(steps.saturating_sub(1)));
        true
    }

    /// Closes the lesson (it is not reopened at the next start).
    pub fn close(&mut self) {
        if self.open.take().is_some() {
            self.progress.current_lesson = None;
            self.save();
        }
    }

    /// Shows step `step` (from 0) of the open lesson.
    pub fn go_to(&mut self, step: usize) {
        let Some(lesson) = self.open_lesson() else {
            return;
        };
        let id = lesson.id.clone();
        let step = step.min(lesson.steps.len().saturating_sub(1));
        self.step = step;
        self.scroll_to_top = true;
        self.progress.set_position(&id, step);
        self.save();
    }

    /// Marks the step shown as done and shows the next one.
    pub fn next_step(&mut self) {
        self.complete_step();
        self.go_to(self.step + 1);
    }

    pub fn previous_step(&mut self) {
        self.go_to(self.step.saturating_sub(1));
    }

    fn complete_step(&mut self) {
        let Some(id) = self.open_lesson().map(|l| l.id.clone()) else {
            return;
        };
        if !self.progress.is_step_complete(&id, self.step) {
            self.progress.complete_step(&id, self.step);
            self.save();
        }
    }

    /// Runs a "try it" button (a running one is replaced).
    pub fn click(&mut self, lesson: &Lesson, action: &crate::lessons::Action, shared: &Shared) {
        let key = ActionKey {
            lesson: lesson.id.clone(),
            line: action.line,
        };
        self.outcomes
            .insert(key.clone(), Outcome::Working("starting".into()));
        if let Some((old, _)) = self.runner.take()
            && old != key
        {
            self.outcomes
                .insert(old, Outcome::Failed("Stopped for another button.".into()));
        }
        self.runner = Some((key, Runner::new(action, &shared.shipped)));
    }

    /// Checks an answer, records it and saves.
    fn check(&mut self, lesson_id: &str, question: &Question) {
        let key = (lesson_id.to_string(), question.id.clone());
        let state = self.answers.entry(key).or_default();
        let (given, verdict) = match (&question.kind, state.choice) {
            (QuestionKind::MultipleChoice { .. }, Some(choice)) => {
                ((choice + 1).to_string(), question.check_choice(choice))
            }
            _ => (state.text.trim().to_string(), question.check(&state.text)),
        };
        self.progress
            .record_answer(lesson_id, &question.id, &given, &verdict);
        state.verdict = Some(verdict);
        self.save();
    }

    /// Called by the shell once per frame: reads the lessons the first time, opens the start
    /// lesson, and advances a running button.
    pub fn frame(&mut self, shared: &mut Shared) {
        if !self.loaded {
            self.load(shared);
        }
        if let Some(start) = self.on_start.take() {
            self.start(start, shared);
        }
        if let Some((key, runner)) = &mut self.runner {
            let status = runner.tick(shared, &mut self.outbox);
            self.last_key = Some(key.clone());
            let outcome = match status {
                Status::Working(what) => Outcome::Working(what),
                Status::Done => Outcome::Done(runner.notes.clone()),
                Status::Failed(message) => Outcome::Failed(message),
            };
            let finished = !matches!(outcome, Outcome::Working(_));
            self.outcomes.insert(key.clone(), outcome);
            if finished {
                self.runner = None;
            }
        }
    }

    fn start(&mut self, start: StartLesson, shared: &mut Shared) {
        match start {
            StartLesson::Id(text) => {
                let (id, step) = match text.split_once(':') {
                    Some((id, step)) => (id.trim(), step.trim().parse::<usize>().ok()),
                    None => (text.trim(), None),
                };
                if !self.open(id) {
                    let known: Vec<&str> = self.lessons.iter().map(|l| l.id.as_str()).collect();
                    shared.info(format!(
                        "There is no lesson {id:?}; the lessons are {}.",
                        known.join(", ")
                    ));
                } else if let Some(step) = step {
                    self.go_to(step.saturating_sub(1));
                }
            }
            StartLesson::Resume => {
                let id = match &self.progress.current_lesson {
                    Some(id) => Some(id.clone()),
                    None if self.progress.lessons.is_empty() => {
                        self.lessons.first().map(|l| l.id.clone())
                    }
                    None => None,
                };
                if let Some(id) = id {
                    self.open(&id);
                }
            }
        }
    }

    /// The app actions the running button asks for; the shell applies them.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.outbox)
    }

    /// Messages the panels raised while applying a button's actions: shown next to it.
    pub fn report(&mut self, notices: Vec<Notice>) {
        let Some(key) = self.last_key.clone() else {
            return;
        };
        for notice in notices {
            let outcome = self
                .outcomes
                .entry(key.clone())
                .or_insert(Outcome::Done(Vec::new()));
            match (outcome, notice.is_error) {
                (outcome @ (Outcome::Working(_) | Outcome::Done(_)), true) => {
                    *outcome = Outcome::Failed(notice.message);
                    if self.runner.as_ref().is_some_and(|(k, _)| *k == key) {
                        self.runner = None;
                    }
                }
                (Outcome::Failed(message), true) => {
                    message.push(' ');
                    message.push_str(&notice.message);
                }
                (Outcome::Done(notes), false) => notes.push(notice.message),
                (Outcome::Working(_), false) => {
                    if let Some((_, runner)) = &mut self.runner {
                        runner.notes.push(notice.message);
                    }
                }
                (Outcome::Failed(_), false) => {}
            }
        }
    }
}

// ---- the lesson list (the view) -----------------------------------------------------------------

impl Panel for LessonsPanel {
    fn view(&self) -> ViewName {
        ViewName::Lessons
    }

    fn hint(&self) -> &'static str {
        "The course: lessons that drive the views, with questions; the compute calculator"
    }

    fn apply(&mut self, action: &Action, _shared: &mut Shared) {
        if let Action::ShowCalculator(inputs) = action {
            self.calculator.set(inputs.clone());
        }
    }

    fn ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        if !self.loaded {
            self.load(shared);
        }
        ui.heading("Lessons");
        ui.label(
            "The course, one topic per lesson. A lesson opens beside the views: read a step, \
             click its Try it buttons and watch the view change, then check yourself.",
        );
        ui.horizontal(|ui| {
            if ui
                .button("Reload lessons")
                .on_hover_text("Read the lesson files again (after editing one)")
                .clicked()
            {
                self.reload_lessons();
            }
            if let Some(dir) = self.dir.clone().or_else(find_lessons_dir) {
                ui.weak(format!("from {}", dir.display()));
            }
        });
        if let Some(problem) = &self.progress_problem {
            ui.colored_label(ui.visuals().warn_fg_color, problem);
        }
        for error in &self.errors {
            let name = error.file.file_name().map_or_else(
                || error.file.display().to_string(),
                |n| n.to_string_lossy().into(),
            );
            let place = if error.line == 0 {
                name
            } else {
                format!("{name}:{}", error.line)
            };
            ui.colored_label(
                ui.visuals().error_fg_color,
                format!("Cannot use {place}: {}", error.message),
            )
            .on_hover_text(error.to_string());
        }
        ui.add_space(6.0);
        let mut open = None;
        for (index, lesson) in self.lessons.iter().enumerate() {
            let summary = self.progress.summary(lesson);
            let is_open = self.open == Some(index);
            egui::Frame::group(ui.style()).show(ui, |ui| {
                ui.set_width(ui.available_width().min(760.0));
                ui.horizontal(|ui| {
                    let verb = if is_open {
                        "Open now"
                    } else if summary.is_complete() {
                        "Review"
                    } else if summary.steps_done > 0 || summary.questions_answered > 0 {
                        "Continue"
                    } else {
                        "Start"
                    };
                    let button = ui.add(egui::Button::new(verb).selected(is_open));
                    button.widget_info(|| {
                        WidgetInfo::labeled(
                            Role::Button,
                            true,
                            format!("Open lesson: {}", lesson.title),
                        )
                    });
                    if button.clicked() {
                        open = Some(lesson.id.clone());
                    }
                    ui.label(RichText::new(&lesson.title).strong().size(16.0));
                });
                if !lesson.summary.is_empty() {
                    ui.weak(&lesson.summary);
                }
                ui.horizontal(|ui| {
                    ui.add(
                        egui::ProgressBar::new(summary.fraction())
                            .desired_width(220.0)
                            .desired_height(10.0),
                    );
                    ui.label(format!(
                        "{}/{} steps done · {}/{} questions right",
                        summary.steps_done,
                        summary.steps_total,
                        summary.questions_correct,
                        summary.questions_total
                    ));
                });
            });
        }
        if let Some(id) = open {
            self.open(&id);
        }
        if self.lessons.is_empty() && self.errors.is_empty() {
            ui.label("The lessons folder has no lessons.");
        }
        ui.add_space(8.0);
        ui.separator();
        self.calculator.ui(ui, shared.measured_run);
    }
}

// ---- the open lesson (the pane) -----------------------------------------------------------------

/// The colour of a right answer.
const RIGHT: Color32 = Color32::from_rgb(80, 180, 90);

/// Larger body text for reading; larger still in large-text mode (on top of the app's zoom).
fn pane_style(ui: &mut Ui, large_text: bool) {
    let body = if large_text { 16.5 } else { 14.5 };
    let style = ui.style_mut();
    style
        .text_styles
        .insert(TextStyle::Body, FontId::proportional(body));
    style
        .text_styles
        .insert(TextStyle::Button, FontId::proportional(body));
    style
        .text_styles
        .insert(TextStyle::Monospace, FontId::monospace(body * 0.9));
    style
        .text_styles
        .insert(TextStyle::Heading, FontId::proportional(body * 1.5));
    style
        .text_styles
        .insert(TextStyle::Small, FontId::proportional(body * 0.8));
    style.spacing.item_spacing.y = (body * 0.4).round();
}

impl LessonsPanel {
    /// Draws the open lesson. `current_view`: the view beside it (Step through keeps the arrow
    /// keys for its stages; the lesson then moves with PageUp / PageDown only).
    pub fn pane_ui(
        &mut self,
        ui: &mut Ui,
        shared: &mut Shared,
        large_text: bool,
        current_view: ViewName,
    ) {
        let Some(lesson) = self.open_lesson().cloned() else {
            return;
        };
        pane_style(ui, large_text);
        let steps = lesson.steps.len();
        self.step = self.step.min(steps.saturating_sub(1));

        // Keyboard: only when no text field has the focus.
        let arrows = current_view != ViewName::StepThrough;
        if !ui.ctx().egui_wants_keyboard_input() {
            let (next, back) = ui.input_mut(|i| {
                let next = i.consume_key(Modifiers::NONE, Key::PageDown)
                    || (arrows && i.consume_key(Modifiers::NONE, Key::ArrowRight));
                let back = i.consume_key(Modifiers::NONE, Key::PageUp)
                    || (arrows && i.consume_key(Modifiers::NONE, Key::ArrowLeft));
                (next, back)
            });
            if next && self.step + 1 < steps {
                self.next_step();
            } else if next {
                self.complete_step();
            }
            if back {
                self.previous_step();
            }
        }

        // No margins of their own: the pane's margin lines everything up.
        egui::Panel::top("lesson_head")
            .frame(egui::Frame::new())
            .show(ui, |ui| {
                ui.add_space(4.0);
                ui.horizontal(|ui| {
                    if ui
                        .button("◀ Lesson list")
                        .on_hover_text("Close the lesson and show the list of lessons")
                        .clicked()
                    {
                        self.close();
                        shared.requested_view = Some(ViewName::Lessons);
                    }
                    ui.weak(format!("Lesson {}", lesson.order));
                });
                ui.heading(RichText::new(&lesson.title).strong());
                if let Some(step) = lesson.steps.get(self.step) {
                    ui.horizontal(|ui| {
                        ui.label(format!("Step {} of {steps}", self.step + 1));
                        let done = (0..steps)
                            .filter(|&s| self.progress.is_step_complete(&lesson.id, s))
                            .count();
                        ui.add(
                            egui::ProgressBar::new(done as f32 / steps.max(1) as f32)
                                .desired_height(6.0),
                        );
                    });
                    ui.label(
                        RichText::new(step.display_title(self.step))
                            .strong()
                            .size(TextStyle::Body.resolve(ui.style()).size * 1.3),
                    );
                }
                ui.add_space(2.0);
            });

        egui::Panel::bottom("lesson_nav")
            .frame(egui::Frame::new())
            .show(ui, |ui| {
                ui.add_space(4.0);
                ui.horizontal(|ui| {
                    // Named "… step" for screen readers: the views have Back / Next too.
                    let back = ui.add_enabled(self.step > 0, egui::Button::new("◀ Back"));
                    back.widget_info(|| {
                        WidgetInfo::labeled(Role::Button, self.step > 0, "Previous step")
                    });
                    if back.clicked() {
                        self.previous_step();
                    }
                    if self.step + 1 < steps {
                        let next = ui.button(RichText::new("Next ▶").strong());
                        next.widget_info(|| WidgetInfo::labeled(Role::Button, true, "Next step"));
                        if next.clicked() {
                            self.next_step();
                        }
                    } else {
                        let finish = ui
                            .button(RichText::new("Finish").strong())
                            .on_hover_text("Mark the last step done and go back to the list");
                        finish.widget_info(|| {
                            WidgetInfo::labeled(Role::Button, true, "Finish lesson")
                        });
                        if finish.clicked() {
                            self.complete_step();
                            self.close();
                            shared.requested_view = Some(ViewName::Lessons);
                        }
                    }
                });
                ui.weak(if arrows {
                    "Keys: → or PageDown next step, ← or PageUp back (when no text field is active)"
                } else {
                    "Keys: PageDown next step, PageUp back (← / → walk the stages of Step through)"
                });
                ui.add_space(2.0);
            });

        let Some(step) = lesson.steps.get(self.step).cloned() else {
            ui.label("This lesson has no steps.");
            return;
        };
        let numbers: HashMap<&str, usize> = lesson
            .questions()
            .enumerate()
            .map(|(i, q)| (q.id.as_str(), i + 1))
            .collect();
        let scroll_to_top = std::mem::take(&mut self.scroll_to_top);
        let mut scroll = egui::ScrollArea::vertical()
            .id_salt(("lesson_step", &lesson.id, self.step))
            .auto_shrink(false);
        if scroll_to_top {
            scroll = scroll.vertical_scroll_offset(0.0);
        }
        let mut clicked = None;
        let mut checked = None;
        scroll.show(ui, |ui| {
            ui.add_space(4.0);
            // Room for the scroll bar, which floats over the content.
            ui.set_max_width(ui.available_width() - 10.0);
            ui.spacing_mut().indent = 14.0;
            for (index, block) in step.blocks.iter().enumerate() {
                ui.push_id(index, |ui| match block {
                    Block::Markdown(text) => markdown(ui, "md", text),
                    Block::Action(action) => {
                        if self.action_ui(ui, &lesson, action) {
                            clicked = Some(action.clone());
                        }
                    }
                    Block::Question(question) => {
                        let number = numbers.get(question.id.as_str()).copied().unwrap_or(0);
                        if self.question_ui(ui, &lesson.id, number, question) {
                            checked = Some(question.clone());
                        }
                    }
                });
            }
            // Reaching the end of the step (it is on screen) marks it done.
            let end = ui.allocate_response(egui::vec2(1.0, 1.0), egui::Sense::hover());
            if ui.is_rect_visible(end.rect) {
                self.complete_step();
            }
        });
        if let Some(action) = clicked {
            self.click(&lesson, &action, shared);
            ui.ctx().request_repaint();
        }
        if let Some(question) = checked {
            self.check(&lesson.id, &question);
        }
    }

    /// A "try it" button and what its last click came to. True when clicked.
    fn action_ui(&self, ui: &mut Ui, lesson: &Lesson, action: &crate::lessons::Action) -> bool {
        let hover = action
            .commands
            .iter()
            .map(|c| format!("• {}", c.describe()))
            .collect::<Vec<_>>()
            .join("\n");
        let accent = ui.visuals().selection.bg_fill;
        let button = ui
            .add(
                egui::Button::new(RichText::new(format!("▶  {}", action.label)).strong())
                    .fill(accent.gamma_multiply(0.6)),
            )
            .on_hover_text(hover);
        // Screen readers (and tests) hear what it is: "Try it: <label>".
        button.widget_info(|| {
            WidgetInfo::labeled(Role::Button, true, format!("Try it: {}", action.label))
        });
        let key = ActionKey {
            lesson: lesson.id.clone(),
            line: action.line,
        };
        match self.outcomes.get(&key) {
            Some(Outcome::Working(what)) => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.weak(format!("{what}…"));
                });
            }
            Some(Outcome::Failed(message)) => {
                ui.colored_label(ui.visuals().error_fg_color, message);
            }
            Some(Outcome::Done(notes)) => {
                if notes.is_empty() {
                    ui.weak("Done.");
                }
                for note in notes {
                    ui.colored_label(ui.visuals().warn_fg_color, format!("Note: {note}"));
                }
            }
            None => {}
        }
        ui.add_space(6.0);
        button.clicked()
    }

    /// A question: choices or a number field, Check, and the verdict. True when Check was
    /// clicked.
    fn question_ui(&mut self, ui: &mut Ui, lesson_id: &str, number: usize, q: &Question) -> bool {
        let key = (lesson_id.to_string(), q.id.clone());
        let record = self.progress.answer(lesson_id, &q.id).cloned();
        let state = self.answers.entry(key).or_insert_with(|| {
            // Show the last answer given in an earlier session.
            let given = record.as_ref().map(|r| r.given.clone()).unwrap_or_default();
            AnswerState {
                choice: match &q.kind {
                    QuestionKind::MultipleChoice { .. } => {
                        given.parse::<usize>().ok().and_then(|n| n.checked_sub(1))
                    }
                    QuestionKind::Number { .. } => None,
                },
                text: given,
                verdict: None,
            }
        });
        let mut check = false;
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.label(RichText::new(format!("Question {number}")).strong());
            markdown(ui, "prompt", &q.prompt);
            match &q.kind {
                QuestionKind::MultipleChoice { choices, .. } => {
                    for (i, choice) in choices.iter().enumerate() {
                        let response = ui.radio(state.choice == Some(i), choice);
                        response.widget_info(|| {
                            WidgetInfo::selected(
                                Role::RadioButton,
                                true,
                                state.choice == Some(i),
                                format!("Question {number}: {choice}"),
                            )
                        });
                        if response.clicked() {
                            state.choice = Some(i);
                            state.verdict = None;
                        }
                    }
                }
                QuestionKind::Number { .. } => {
                    ui.horizontal(|ui| {
                        let label = ui.label(format!("Your answer to question {number}:"));
                        let edit = ui
                            .add(
                                egui::TextEdit::singleline(&mut state.text)
                                    .hint_text("e.g. 4,194,304 or 4.19e6")
                                    .desired_width(180.0),
                            )
                            .labelled_by(label.id);
                        if edit.changed() {
                            state.verdict = None;
                        }
                        // Enter checks, as the button does.
                        if edit.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter)) {
                            check = true;
                        }
                    });
                }
            }
            let ready = match &q.kind {
                QuestionKind::MultipleChoice { .. } => state.choice.is_some(),
                QuestionKind::Number { .. } => !state.text.trim().is_empty(),
            };
            let button = ui.add_enabled(ready, egui::Button::new("Check"));
            button.widget_info(|| {
                WidgetInfo::labeled(Role::Button, ready, format!("Check question {number}"))
            });
            check |= button.clicked();
            match &state.verdict {
                Some(verdict) => {
                    // The explanation is Markdown; the colour says right or wrong.
                    let color = if verdict.correct {
                        RIGHT
                    } else {
                        ui.visuals().error_fg_color
                    };
                    ui.scope(|ui| {
                        ui.visuals_mut().override_text_color = Some(color);
                        markdown(ui, "verdict", &verdict.message);
                    });
                }
                None if record.as_ref().is_some_and(|r| r.correct) => {
                    ui.colored_label(RIGHT, "Answered correctly before.");
                }
                None => {}
            }
        });
        ui.add_space(6.0);
        check && ready_to_check(q, self.answers.get(&(lesson_id.to_string(), q.id.clone())))
    }
}

fn ready_to_check(q: &Question, state: Option<&AnswerState>) -> bool {
    state.is_some_and(|s| match &q.kind {
        QuestionKind::MultipleChoice { .. } => s.choice.is_some(),
        QuestionKind::Number { .. } => !s.text.trim().is_empty(),
    })
}
