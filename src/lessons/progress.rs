//! The learner's progress: which steps were done and which questions answered, per lesson,
//! saved as JSON between runs.
//!
//! Lessons are keyed by their `id`, steps by index, questions by their id, so editing a lesson's
//! text keeps the progress; removing steps or questions simply leaves stale entries that no
//! longer count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Lesson;
use super::question::Answer;
use crate::error::{GlassboxError, Result};

/// Version written into the file; a newer file is still read field by field.
pub const PROGRESS_VERSION: u32 = 1;

/// Everything saved between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Progress {
    pub version: u32,
    /// The lesson open when the app last closed.
    pub current_lesson: Option<String>,
    /// By lesson id.
    pub lessons: BTreeMap<String, LessonProgress>,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            version: PROGRESS_VERSION,
            current_lesson: None,
            lessons: BTreeMap::new(),
        }
    }
}

/// One lesson's progress.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LessonProgress {
    /// Indices (from 0) of the steps the learner finished.
    pub completed_steps: BTreeSet<usize>,
    /// The step shown last.
    pub current_step: usize,
    /// By question id.
    pub answers: BTreeMap<String, AnswerRecord>,
}

/// The learner's latest answer to a question.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AnswerRecord {
    /// The latest answer as given.
    pub given: String,
    /// Whether the question was answered correctly at some attempt.
    pub correct: bool,
    pub attempts: u32,
}

/// Counts for the lesson list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LessonSummary {
    pub steps_done: usize,
    pub steps_total: usize,
    pub questions_correct: usize,
    pub questions_answered: usize,
    pub questions_total: usize,
}

impl LessonSummary {
    /// Every step done and every question answered correctly.
    pub fn is_complete(&self) -> bool {
        self.steps_done == self.steps_total && self.questions_correct == self.questions_total
    }

    /// Done steps and correct answers over all of them, in [0, 1].
    pub fn fraction(&self) -> f32 {
        let total = self.steps_total + self.questions_total;
        if total == 0 {
            return 1.0;
        }
        (self.steps_done + self.questions_correct) as f32 / total as f32
    }
}

impl Progress {
    /// `$XDG_DATA_HOME/glassbox/progress.json`, else `~/.local/share/glassbox/progress.json`
    /// (Linux and other Unix), `~/Library/Application Support/glassbox/progress.json` (macOS),
    /// `%APPDATA%\glassbox\progress.json` (Windows). `None` when no home is known.
    pub fn default_path() -> Option<PathBuf> {
        data_dir().map(|dir| dir.join("glassbox").join("progress.json"))
    }

    /// Reads the progress file; a missing file is a fresh start. A file that is not progress
    /// JSON is an error naming it (the app shows it and starts fresh without overwriting it
    /// until the next save).
    pub fn load(path: &Path) -> Result<Progress> {
        if !path.exists() {
            return Ok(Progress::default());
        }
        let text = crate::util::read_text(path)?;
        serde_json::from_str(&text).map_err(|e| {
            GlassboxError::InvalidInput(format!(
                "{}: not a Glassbox progress file: {e}",
                path.display()
            ))
        })
    }

    /// Writes the progress file atomically (a crash mid-save keeps the previous one).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(|e| {
            GlassboxError::InvalidInput(format!("cannot serialize the progress: {e}"))
        })?;
        crate::util::write_atomic(path, json.as_bytes())
    }

    pub fn lesson(&self, lesson_id: &str) -> Option<&LessonProgress> {
        self.lessons.get(lesson_id)
    }

    pub fn lesson_mut(&mut self, lesson_id: &str) -> &mut LessonProgress {
        self.lessons.entry(lesson_id.to_string()).or_default()
    }

    /// Marks a step done.
    pub fn complete_step(&mut self, lesson_id: &str, step: usize) {
        self.lesson_mut(lesson_id).completed_steps.insert(step);
    }

    pub fn is_step_complete(&self, lesson_id: &str, step: usize) -> bool {
        self.lesson(lesson_id)
            .is_some_and(|l| l.completed_steps.contains(&step))
    }

    /// Remembers the step shown (and the lesson it is in).
    pub fn set_position(&mut self, lesson_id: &str, step: usize) {
        self.current_lesson = Some(lesson_id.to_string());
        self.lesson_mut(lesson_id).current_step = step;
    }

    /// Records an answer and its verdict. A question once answered correctly stays correct.
    pub fn record_answer(
        &mut self,
        lesson_id: &str,
        question_id: &str,
        given: &str,
        verdict: &Answer,
    ) {
        let record = self
            .lesson_mut(lesson_id)
            .answers
            .entry(question_id.to_string())
            .or_default();
        record.given = given.to_string();
        record.correct |= verdict.correct;
        record.attempts = record.attempts.saturating_add(1);
    }

    pub fn answer(&self, lesson_id: &str, question_id: &str) -> Option<&AnswerRecord> {
        self.lesson(lesson_id)?.answers.get(question_id)
    }

    /// Forgets a lesson's progress.
    pub fn reset_lesson(&mut self, lesson_id: &str) {
        self.lessons.remove(lesson_id);
    }

    /// Counts for `lesson`, ignoring entries for steps and questions it no longer has.
    pub fn summary(&self, lesson: &Lesson) -> LessonSummary {
        let mut summary = LessonSummary {
            steps_total: lesson.steps.len(),
            questions_total: lesson.questions().count(),
            ..LessonSummary::default()
        };
        if let Some(progress) = self.lesson(&lesson.id) {
            summary.steps_done = progress
                .completed_steps
                .iter()
                .filter(|&&s| s < lesson.steps.len())
                .count();
            for question in lesson.questions() {
                if let Some(record) = progress.answers.get(&question.id) {
                    summary.questions_answered += 1;
                    if record.correct {
                        summary.questions_correct += 1;
                    }
                }
            }
        }
        summary
    }
}

fn data_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if cfg!(windows) {
        return non_empty("APPDATA");
    }
    if cfg!(target_os = "macos") {
        return non_empty("HOME").map(|home| home.join("Library").join("Application Support"));
    }
    non_empty("XDG_DATA_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| non_empty("HOME").map(|home| home.join(".local").join("share")))
}
