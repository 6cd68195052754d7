//! Lessons: the course as Markdown files that drive the app.
//!
//! A lesson file (`lessons/*.md`, format in `lessons/README.md`) is front matter, then steps;
//! a step is Markdown text with ```` ```try ```` blocks (buttons that drive the views) and
//! ```` ```question ```` blocks (checked answers). This module parses them into plain data —
//! [`Lesson`] → [`Step`] → [`Block`] — and keeps the learner's [`Progress`]. It knows nothing of
//! egui: the lesson view renders the blocks, turns each [`ActionCommand`] into the app's own
//! actions, and calls [`Question::check`].
//!
//! ```
//! use glassbox::lessons::{parse_lesson, Block, ActionCommand, ViewName};
//! let text = "---\nid: demo\ntitle: Demo\norder: 1\n---\n## Look\nSome text.\n\n\
//!             ```try\nlabel: Open attention\nview: attention\n```\n";
//! let lesson = parse_lesson("demo.md", text).unwrap();
//! let Block::Action(action) = &lesson.steps[0].blocks[1] else { panic!() };
//! assert_eq!(action.commands, vec![ActionCommand::OpenView(ViewName::Attention)]);
//! ```
//!
//! Errors name the file and the line ([`LessonError`]); [`load_lessons`] keeps going past a
//! broken file so one typo never hides the rest of the course.

pub mod action;
pub mod compute;
mod parse;
pub mod progress;
pub mod question;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use action::{
    Action, ActionCommand, ComputeInputs, DataSource, FinetuneSettings, FinetuneStep, ModelRef,
    ModelSize, ParamCount, Sampling, ShippedModel, Side, Stage, TokenRef, TrainingSettings,
    ViewName,
};
pub(crate) use parse::{fence_open, is_fence_close};
pub use progress::{AnswerRecord, LessonProgress, LessonSummary, Progress};
pub use question::{Answer, CountKind, Question, QuestionKind, Verify, VerifyTokenizer};

/// One lesson: a topic of the course.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lesson {
    /// Stable id (front matter `id:`): the key of the lesson's progress.
    pub id: String,
    pub title: String,
    /// Position in the lesson list (front matter `order:`; default: the number the file name
    /// starts with, else 1000).
    pub order: i64,
    /// One line for the lesson list (front matter `summary:`), may be empty.
    pub summary: String,
    /// The file it was read from (or the name given to [`parse_lesson`]).
    pub file: PathBuf,
    pub steps: Vec<Step>,
}

/// A page of a lesson: read, try it, notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// From the step's `## ` heading; empty when the step has none.
    pub title: String,
    pub blocks: Vec<Block>,
    /// The line the step starts at.
    pub line: usize,
}

/// A piece of a step, in reading order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Block {
    /// CommonMark text (headings from `###` down, lists, tables, code, emphasis).
    Markdown(String),
    /// A "try it" button.
    Action(Action),
    Question(Question),
}

impl Lesson {
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.steps.iter().flat_map(Step::actions)
    }

    pub fn questions(&self) -> impl Iterator<Item = &Question> {
        self.steps.iter().flat_map(Step::questions)
    }

    /// The step index and the question with this id.
    pub fn question(&self, id: &str) -> Option<(usize, &Question)> {
        self.steps.iter().enumerate().find_map(|(index, step)| {
            step.questions()
                .find(|q| q.id == id)
                .map(|question| (index, question))
        })
    }
}

impl Step {
    /// The title, or "Step N" (N from 1) when the step has none.
    pub fn display_title(&self, index: usize) -> String {
        if self.title.is_empty() {
            format!("Step {}", index + 1)
        } else {
            self.title.clone()
        }
    }

    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.blocks.iter().filter_map(|block| match block {
            Block::Action(action) => Some(action),
            _ => None,
        })
    }

    pub fn questions(&self) -> impl Iterator<Item = &Question> {
        self.blocks.iter().filter_map(|block| match block {
            Block::Question(question) => Some(question),
            _ => None,
        })
    }
}

/// A lesson file that cannot be used, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LessonError {
    pub file: PathBuf,
    /// From 1; 0 when the problem is the whole file (cannot be read, duplicate id).
    pub line: usize,
    pub message: String,
}

impl LessonError {
    pub fn new(file: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for LessonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

impl std::error::Error for LessonError {}

/// Parses one lesson. `file` is only used to name the lesson's source in errors and in
/// [`Lesson::file`] (a path or any name).
pub fn parse_lesson(file: impl AsRef<Path>, text: &str) -> Result<Lesson, LessonError> {
    parse::parse(file.as_ref(), text)
}

/// Reads every `*.md` file in `dir` except `README.md`, sorted by `order` then id. A file that
/// cannot be read or parsed, or repeats another's id, gives an error and is left out; the others
/// still load.
pub fn load_lessons(dir: &Path) -> (Vec<Lesson>, Vec<LessonError>) {
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(LessonError::new(
                dir,
                0,
                format!("cannot read the lessons folder: {e}"),
            ));
            return (Vec::new(), errors);
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|ext| ext.eq_ignore_ascii_case("md"))
                && !path
                    .file_stem()
                    .is_some_and(|stem| stem.eq_ignore_ascii_case("readme"))
        })
        .collect();
    files.sort();

    let mut lessons: Vec<Lesson> = Vec::new();
    for file in files {
        let text = match crate::util::read_text(&file) {
            Ok(text) => text,
            Err(e) => {
                errors.push(LessonError::new(&file, 0, format!("cannot read: {e}")));
                continue;
            }
        };
        match parse_lesson(&file, &text) {
            Ok(lesson) => {
                if let Some(other) = lessons.iter().find(|l| l.id == lesson.id) {
                    errors.push(LessonError::new(
                        &file,
                        0,
                        format!(
                            "lesson id {:?} is already used by {}; ids must be unique",
                            lesson.id,
                            other.file.display()
                        ),
                    ));
                } else {
                    lessons.push(lesson);
                }
            }
            Err(error) => errors.push(error),
        }
    }
    lessons.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.id.cmp(&b.id)));
    (lessons, errors)
}

/// Where the course's lessons are: `$GLASSBOX_LESSONS`, then `lessons/` next to the crate, next
/// to the executable (and two levels up, for `target/release`), and in the current directory.
pub fn find_lessons_dir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("GLASSBOX_LESSONS") {
        candidates.push(PathBuf::from(dir));
    }
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lessons"));
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        candidates.push(dir.join("lessons"));
        if let Some(up) = dir.parent().and_then(Path::parent) {
            candidates.push(up.join("lessons"));
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        candidates.push(cwd.join("lessons"));
    }
    candidates.into_iter().find(|dir| dir.is_dir())
}

/// A number as people write it: `4194304`, `4,194,304`, `4_194_304`, `4 194 304`, `3.14e23`,
/// and with a suffix `k` (10³), `M` (10⁶), `B` or `G` (10⁹), `T` (10¹²): `175B`, `4.19M`.
/// `None` for anything else (and for infinities and NaN).
pub fn parse_number(text: &str) -> Option<f64> {
    let cleaned: String = text
        .trim()
        .chars()
        .filter(|c| !matches!(c, ',' | '_' | ' ' | '\u{a0}' | '\u{202f}' | '\u{2009}'))
        .collect();
    if cleaned.is_empty() {
        return None;
    }
    let (digits, scale) = match cleaned.char_indices().last() {
        Some((at, c)) => match c {
            'k' | 'K' => (&cleaned[..at], 1e3),
            'M' => (&cleaned[..at], 1e6),
            'B' | 'G' => (&cleaned[..at], 1e9),
            'T' => (&cleaned[..at], 1e12),
            _ => (cleaned.as_str(), 1.0),
        },
        None => return None,
    };
    // Rust also parses "inf", "NaN" and "infinity": only digits, sign, point and exponent here.
    if digits.is_empty()
        || !digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
    {
        return None;
    }
    let value: f64 = digits.parse().ok()?;
    let value = value * scale;
    value.is_finite().then_some(value)
}

/// `"text"` → `text` (quotes keep leading/trailing spaces and `#`); anything else unchanged.
pub(crate) fn unquote(text: &str) -> String {
    let text = text.trim();
    if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
        text[1..text.len() - 1].to_string()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number("4194304"), Some(4194304.0));
        assert_eq!(parse_number("4,194,304"), Some(4194304.0));
        assert_eq!(parse_number("4_194_304"), Some(4194304.0));
        assert_eq!(parse_number("3.14e23"), Some(3.14e23));
        assert_eq!(parse_number("175B"), Some(175e9));
        assert!(parse_number("4.19M").is_some_and(|n| (n - 4.19e6).abs() < 1e-6));
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_number("bert-base"), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("-2"), Some(-2.0));
    }
}
