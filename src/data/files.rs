//! Reading a user's own data: a text corpus, a classification CSV (`text,label`), an extractive QA
//! file (JSON array or JSONL) and a generation JSONL (`prompt,completion`).
//!
//! Every reader comes in two forms:
//! - `parse_*(text)` is lenient: it returns the good examples *and* one [`RowError`] per bad row,
//!   so a UI can show the user exactly which lines to fix;
//! - `read_*(path)` is strict: any bad row, or no rows at all, is an error that names the file,
//!   the line and the column.

use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{GlassboxError, Result};

/// How many row errors a `read_*` error message lists before it says "and N more".
const MAX_LISTED_ERRORS: usize = 10;

/// One problem with one row of a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line in the file where the row starts.
    pub line: usize,
    /// The column (CSV) or field (JSON) at fault, when there is one.
    pub column: Option<String>,
    pub message: String,
}

impl RowError {
    fn new(line: usize, column: Option<&str>, message: impl Into<String>) -> Self {
        RowError {
            line,
            column: column.map(str::to_owned),
            message: message.into(),
        }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(column) => write!(f, "line {}, column `{column}`: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

impl std::error::Error for RowError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassificationExample {
    pub text: String,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaExample {
    pub context: String,
    pub question: String,
    pub answer: String,
    /// Byte offset of `answer` in `context`: `context[answer_start..].starts_with(&answer)`.
    pub answer_start: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationExample {
    pub prompt: String,
    /// The loss is taken on these tokens only. Leading spaces matter (" mouse .").
    pub completion: String,
}

// ---------------------------------------------------------------------------------------------
// Plain text corpus
// ---------------------------------------------------------------------------------------------

/// Reads a training corpus: UTF-8 checked, and refuses an empty or whitespace-only file.
pub fn read_corpus(path: &Path) -> Result<String> {
    let text = crate::util::read_text(path)?;
    if text.is_empty() {
        return Err(invalid(format!(
            "{}: the corpus file is empty; it needs some text to train on",
            path.display()
        )));
    }
    if text.trim().is_empty() {
        return Err(invalid(format!(
            "{}: the corpus file contains only whitespace ({} bytes); it needs some text to train on",
            path.display(),
            text.len()
        )));
    }
    Ok(text)
}

// ---------------------------------------------------------------------------------------------
// Classification CSV
// ---------------------------------------------------------------------------------------------

/// Parses a CSV whose header names a `text` and a `label` column (any order, any case, extra
/// columns ignored). Fields may be double-quoted to hold commas, quotes (`""`) and newlines.
pub fn parse_classification_csv(text: &str) -> (Vec<ClassificationExample>, Vec<RowError>) {
    let mut records = csv_records(text).into_iter();
    let mut examples = Vec::new();
    let mut errors = Vec::new();

    let Some(header) = records.next() else {
        errors.push(RowError::new(
            1,
            None,
            "the file is empty; expected a header row such as `text,label`",
        ));
        return (examples, errors);
    };
    let header_fields = match header.fields {
        Ok(fields) => fields,
        Err(message) => {
            errors.push(RowError::new(header.line, None, message));
            return (examples, errors);
        }
    };
    // Why case-insensitive and trimmed: "Text, Label" from a spreadsheet should just work.
    let find_column = |name: &str| {
        header_fields
            .iter()
            .position(|field| field.trim().eq_ignore_ascii_case(name))
    };
    let (text_column, label_column) = match (find_column("text"), find_column("label")) {
        (Some(t), Some(l)) => (t, l),
        (text_column, label_column) => {
            let found = header_fields
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ");
            for (name, column) in [("text", text_column), ("label", label_column)] {
                if column.is_none() {
                    errors.push(RowError::new(
                        header.line,
                        Some(name),
                        format!(
                            "missing column `{name}`; the header row has {found}, \
                             but it needs a `text` and a `label` column"
                        ),
                    ));
                }
            }
            return (examples, errors);
        }
    };
    let text_name = header_fields[text_column].trim();
    let label_name = header_fields[label_column].trim();

    for record in records {
        let fields = match record.fields {
            Ok(fields) => fields,
            Err(message) => {
                errors.push(RowError::new(record.line, None, message));
                continue;
            }
        };
        if fields.len() != header_fields.len() {
            errors.push(RowError::new(
                record.line,
                None,
                format!(
                    "expected {} fields like the header, found {} \
                     (a field that contains a comma must be in double quotes)",
                    header_fields.len(),
                    fields.len()
                ),
            ));
            continue;
        }
        let text = fields[text_column].trim();
        let label = fields[label_column].trim();
        if text.is_empty() {
            errors.push(RowError::new(record.line, Some(text_name), "empty text"));
            continue;
        }
        if label.is_empty() {
            errors.push(RowError::new(record.line, Some(label_name), "empty label"));
            continue;
        }
        examples.push(ClassificationExample {
            text: text.to_owned(),
            label: label.to_owned(),
        });
    }
    (examples, errors)
}

/// Reads a classification CSV strictly: any bad row, or no rows at all, is an error.
pub fn read_classification_csv(path: &Path) -> Result<Vec<ClassificationExample>> {
    let text = read_nonempty(path)?;
    let (examples, errors) = parse_classification_csv(&text);
    strict(path, examples, errors, "data rows after the header")
}

/// The distinct labels, sorted; the index of a label in this list is its class id.
pub fn label_names(examples: &[ClassificationExample]) -> Vec<String> {
    let mut names: Vec<String> = examples.iter().map(|e| e.label.clone()).collect();
    names.sort();
    names.dedup();
    names
}

/// One CSV record: the line it starts on, and its fields or why it could not be read.
struct CsvRecord {
    line: usize,
    fields: std::result::Result<Vec<String>, String>,
}

#[derive(Clone, Copy, PartialEq)]
enum CsvState {
    FieldStart,
    Unquoted,
    Quoted,
    /// Just saw a `"` inside a quoted field: either the closing quote or the first of `""`.
    QuoteInQuoted,
}

/// Splits CSV text into records (RFC 4180: `,` separators, `"` quoting, `""` escapes, CRLF or LF).
/// Blank lines are skipped.
fn csv_records(text: &str) -> Vec<CsvRecord> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text); // Excel writes a byte-order mark
    let mut records = Vec::new();

    let mut line = 1;
    let mut record_line = 1;
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut record_error: Option<String> = None;
    let mut state = CsvState::FieldStart;
    // False until the record has any character, so that blank lines are not records.
    let mut record_started = false;

    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() == Some(&'\n') && state != CsvState::Quoted {
            continue; // CRLF outside quotes is just a line end
        }
        if c == '\n' {
            line += 1;
        }
        if !record_started {
            if c == '\n' {
                record_line = line;
                continue;
            }
            record_started = true;
        }
        let end_of_record = match state {
            CsvState::FieldStart | CsvState::Unquoted => match c {
                '"' if state == CsvState::FieldStart => {
                    state = CsvState::Quoted;
                    false
                }
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    state = CsvState::FieldStart;
                    false
                }
                '\n' => true,
                _ => {
                    // A stray quote inside an unquoted field is kept as text, as Python's csv does.
                    field.push(c);
                    state = CsvState::Unquoted;
                    false
                }
            },
            CsvState::Quoted => {
                if c == '"' {
                    state = CsvState::QuoteInQuoted;
                } else {
                    field.push(c);
                }
                false
            }
            CsvState::QuoteInQuoted => match c {
                '"' => {
                    field.push('"');
                    state = CsvState::Quoted;
                    false
                }
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    state = CsvState::FieldStart;
                    false
                }
                '\n' => true,
                _ => {
                    if record_error.is_none() {
                        record_error = Some(format!(
                            "unexpected `{c}` after the closing quote of field {} \
                             (write a quote inside a quoted field as `\"\"`)",
                            fields.len() + 1
                        ));
                    }
                    field.push(c);
                    state = CsvState::Unquoted;
                    false
                }
            },
        };
        if end_of_record {
            fields.push(std::mem::take(&mut field));
            // A line of spaces is as blank as an empty one.
            let blank = fields.len() == 1 && fields[0].trim().is_empty();
            if blank && record_error.is_none() {
                fields.clear();
                state = CsvState::FieldStart;
                record_started = false;
                record_line = line;
                continue;
            }
            records.push(CsvRecord {
                line: record_line,
                fields: match record_error.take() {
                    Some(message) => Err(message),
                    None => Ok(std::mem::take(&mut fields)),
                },
            });
            fields.clear();
            state = CsvState::FieldStart;
            record_started = false;
            record_line = line;
        }
    }
    if record_started {
        let fields = if state == CsvState::Quoted {
            Err(format!(
                "a quoted field that starts on line {record_line} is never closed (missing `\"`)"
            ))
        } else {
            fields.push(field);
            let blank = fields.len() == 1 && fields[0].trim().is_empty();
            if blank && record_error.is_none() {
                return records;
            }
            match record_error {
                Some(message) => Err(message),
                None => Ok(fields),
            }
        };
        records.push(CsvRecord {
            line: record_line,
            fields,
        });
    }
    records
}

// ---------------------------------------------------------------------------------------------
// Extractive QA (JSON array or JSONL)
// ---------------------------------------------------------------------------------------------

/// Parses QA examples from a JSON array of objects or from JSONL (one object per line).
///
/// Fields: `context`, `question`, `answer` (strings) and optional `answer_start`. The Hugging Face
/// SQuAD layout `answers: {"text": [...], "answer_start": [...]}` is accepted too (first answer).
/// `answer_start` is read as a character offset (Python's `str.index`, as in SQuAD), or as a byte
/// offset if only that points at the answer; without it the first occurrence of the answer is used.
pub fn parse_qa(text: &str) -> (Vec<QaExample>, Vec<RowError>) {
    let (objects, mut errors) = json_objects(text);
    let mut examples = Vec::new();
    for (line, object) in objects {
        match qa_example(line, &object) {
            Ok(example) => examples.push(example),
            Err(error) => errors.push(error),
        }
    }
    errors.sort_by_key(|e| e.line);
    (examples, errors)
}

/// Reads a QA file strictly: any bad row, or no rows at all, is an error.
pub fn read_qa(path: &Path) -> Result<Vec<QaExample>> {
    let text = read_nonempty(path)?;
    let (examples, errors) = parse_qa(&text);
    strict(path, examples, errors, "QA examples")
}

fn qa_example(
    line: usize,
    object: &Map<String, Value>,
) -> std::result::Result<QaExample, RowError> {
    let context = string_field(line, object, "context")?;
    let question = string_field(line, object, "question")?;
    if context.trim().is_empty() {
        return Err(RowError::new(line, Some("context"), "empty context"));
    }
    if question.trim().is_empty() {
        return Err(RowError::new(line, Some("question"), "empty question"));
    }

    // Either flat `answer` (+ `answer_start`) or SQuAD's `answers: {text: [..], answer_start: [..]}`.
    let (answer, given_start, start_column) = match object.get("answers") {
        Some(answers) if !object.contains_key("answer") => {
            let first = |key: &str| {
                answers
                    .get(key)
                    .and_then(Value::as_array)
                    .and_then(|list| list.first())
                    .cloned()
            };
            let answer = match first("text") {
                Some(Value::String(s)) => s,
                _ => {
                    return Err(RowError::new(
                        line,
                        Some("answers"),
                        "expected `answers` to be {\"text\": [\"...\"], \"answer_start\": [n]}",
                    ));
                }
            };
            let start = first("answer_start")
                .map(|v| offset_value(line, "answers", &v))
                .transpose()?;
            (answer, start, "answers")
        }
        _ => {
            let answer = string_field(line, object, "answer")?;
            let start = match object.get("answer_start") {
                None | Some(Value::Null) => None,
                Some(v) => Some(offset_value(line, "answer_start", v)?),
            };
            (answer, start, "answer_start")
        }
    };
    if answer.is_empty() {
        return Err(RowError::new(line, Some("answer"), "empty answer"));
    }

    let answer_start = match given_start {
        Some(start) => {
            let as_chars = context.char_indices().nth(start).map(|(byte, _)| byte);
            let points_at_answer = |byte: usize| {
                context
                    .get(byte..)
                    .is_some_and(|rest| rest.starts_with(&answer))
            };
            match as_chars.filter(|&b| points_at_answer(b)) {
                Some(byte) => byte,
                None if points_at_answer(start) => start,
                None => {
                    let found: String = context.chars().skip(start).take(30).collect();
                    return Err(RowError::new(
                        line,
                        Some(start_column),
                        format!(
                            "answer_start {start} does not point at the answer `{answer}` \
                             (the context there reads `{found}`)"
                        ),
                    ));
                }
            }
        }
        None => context.find(&answer).ok_or_else(|| {
            RowError::new(
                line,
                Some("answer"),
                format!(
                    "the answer `{answer}` was not found in the context \
                     (extractive QA needs the exact text, same case and spacing)"
                ),
            )
        })?,
    };
    Ok(QaExample {
        context,
        question,
        answer,
        answer_start,
    })
}

fn offset_value(line: usize, column: &str, value: &Value) -> std::result::Result<usize, RowError> {
    value
        .as_u64()
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| {
            RowError::new(
                line,
                Some(column),
                format!("expected a non-negative whole number, found {value}"),
            )
        })
}

// ---------------------------------------------------------------------------------------------
// Generation JSONL
// ---------------------------------------------------------------------------------------------

/// Parses `{"prompt": ..., "completion": ...}` objects, one per line (a JSON array works too).
/// The prompt may be empty; the completion may not, since the loss is taken on it alone.
pub fn parse_generation_jsonl(text: &str) -> (Vec<GenerationExample>, Vec<RowError>) {
    let (objects, mut errors) = json_objects(text);
    let mut examples = Vec::new();
    for (line, object) in objects {
        let example = string_field(line, &object, "prompt").and_then(|prompt| {
            let completion = string_field(line, &object, "completion")?;
            if completion.is_empty() {
                return Err(RowError::new(line, Some("completion"), "empty completion"));
            }
            Ok(GenerationExample { prompt, completion })
        });
        match example {
            Ok(example) => examples.push(example),
            Err(error) => errors.push(error),
        }
    }
    errors.sort_by_key(|e| e.line);
    (examples, errors)
}

/// Reads a generation JSONL strictly: any bad row, or no rows at all, is an error.
pub fn read_generation_jsonl(path: &Path) -> Result<Vec<GenerationExample>> {
    let text = read_nonempty(path)?;
    let (examples, errors) = parse_generation_jsonl(&text);
    strict(path, examples, errors, "prompt/completion examples")
}

// ---------------------------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------------------------

/// A JSON object and the 1-based line it starts on.
pub(super) type LinedObject = (usize, Map<String, Value>);

/// The objects in a JSON array (when the text starts with `[`) or in JSONL, each with the line it
/// starts on.
pub(super) fn json_objects(text: &str) -> (Vec<LinedObject>, Vec<RowError>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    let mut add = |line: usize, value: Value, errors: &mut Vec<RowError>| match value {
        Value::Object(object) => objects.push((line, object)),
        other => errors.push(RowError::new(
            line,
            None,
            format!(
                "expected a JSON object {{...}}, found {}",
                json_kind(&other)
            ),
        )),
    };

    if text.trim_start().starts_with('[') {
        match serde_json::from_str::<Vec<Value>>(text) {
            Ok(values) => {
                let lines = array_element_lines(text);
                for (i, value) in values.into_iter().enumerate() {
                    add(lines.get(i).copied().unwrap_or(1), value, &mut errors);
                }
            }
            Err(e) => errors.push(RowError::new(
                e.line().max(1),
                None,
                format!("invalid JSON: {}", json_error_message(&e)),
            )),
        }
    } else {
        for (index, line_text) in text.lines().enumerate() {
            let line = index + 1;
            if line_text.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(line_text) {
                Ok(value) => add(line, value, &mut errors),
                Err(e) => errors.push(RowError::new(
                    line,
                    None,
                    format!(
                        "invalid JSON: {} (JSONL needs one complete object per line, \
                         or the whole file must be a JSON array)",
                        json_error_message(&e)
                    ),
                )),
            }
        }
    }
    (objects, errors)
}

/// serde_json's message with its position rewritten for a single line.
fn json_error_message(error: &serde_json::Error) -> String {
    let full = error.to_string();
    let message = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(m, _)| m);
    format!("{message} at character {}", error.column())
}

/// The 1-based line on which each top-level element of a JSON array starts. The text must be a
/// valid JSON array (checked before).
fn array_element_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut line = 1;
    let mut depth = 0usize; // 1 = directly inside the outer array
    let mut in_string = false;
    let mut escaped = false;
    let mut expecting_element = false;
    for byte in text.bytes() {
        if byte == b'\n' {
            line += 1;
        }
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        if byte.is_ascii_whitespace() {
            continue;
        }
        if depth == 1 && expecting_element && byte != b']' {
            lines.push(line);
            expecting_element = false;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth == 1 {
                    expecting_element = true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expecting_element = true,
            _ => {}
        }
    }
    lines
}

pub(super) fn string_field(
    line: usize,
    object: &Map<String, Value>,
    name: &str,
) -> std::result::Result<String, RowError> {
    match object.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => {
            let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
            keys.sort_unstable();
            Err(RowError::new(
                line,
                Some(name),
                format!("missing field (the object has: {})", keys.join(", ")),
            ))
        }
        Some(other) => Err(RowError::new(
            line,
            Some(name),
            format!("expected a string, found {}", json_kind(other)),
        )),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// Shared
// ---------------------------------------------------------------------------------------------

fn invalid(message: String) -> GlassboxError {
    GlassboxError::InvalidInput(message)
}

pub(super) fn read_nonempty(path: &Path) -> Result<String> {
    let text = crate::util::read_text(path)?;
    if text.trim().is_empty() {
        return Err(invalid(format!("{}: the file is empty", path.display())));
    }
    Ok(text)
}

/// Turns a lenient parse into the strict result of a `read_*` function.
pub(super) fn strict<T>(
    path: &Path,
    examples: Vec<T>,
    errors: Vec<RowError>,
    what: &str,
) -> Result<Vec<T>> {
    let path = path.display();
    match errors.as_slice() {
        [] if examples.is_empty() => Err(invalid(format!("{path}: no {what} found"))),
        [] => Ok(examples),
        [only] => Err(invalid(format!("{path}: {only}"))),
        many => {
            let mut message = format!("{path}: {} bad rows:", many.len());
            for error in many.iter().take(MAX_LISTED_ERRORS) {
                message.push_str(&format!("\n  {error}"));
            }
            if many.len() > MAX_LISTED_ERRORS {
                message.push_str(&format!(
                    "\n  ... and {} more",
                    many.len() - MAX_LISTED_ERRORS
                ));
            }
            Err(invalid(message))
        }
    }
}
