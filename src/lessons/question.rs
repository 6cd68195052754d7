//! Questions at the end of a lesson, and how an answer is checked.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::compute::{self, Gpu, Hardware};
use super::{action::ParamCount, parse_number};
use crate::model::params::{ParamGroup, Preset};

/// A question with its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// Stable within the lesson (`id:` in the file, else "q1", "q2", ... in lesson order); the
    /// key of the answer in [`super::Progress`].
    pub id: String,
    /// The question, in Markdown.
    pub prompt: String,
    pub kind: QuestionKind,
    /// Shown once answered (Markdown); may be empty.
    pub explanation: String,
    /// How the app computes the answer, for number questions whose answer it can compute.
    pub verify: Option<Verify>,
    /// The line of the opening fence in the lesson file.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum QuestionKind {
    /// Pick one of `choices`; `answer_index` counts from 0 (the file counts from 1).
    MultipleChoice {
        choices: Vec<String>,
        answer_index: usize,
        /// Why each wrong choice is wrong (`why-N:`), shown when it is picked; empty where the
        /// lesson gives no reason (and for the answer).
        #[serde(default)]
        why_wrong: Vec<String>,
    },
    /// A number; correct when within `tolerance` (absolute) of `answer`.
    Number { answer: f64, tolerance: f64 },
}

/// The verdict on one answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub correct: bool,
    /// What to show: "Correct." or why not, then the explanation when correct.
    pub message: String,
}

/// Up to this relative difference two numbers count as equal even with `tolerance: 0` (answers
/// written as 3.14e23 are not exact binary fractions).
const RELATIVE_EPSILON: f64 = 1e-9;

impl Question {
    /// Checks an answer typed or picked by the learner. Multiple choice accepts the choice's
    /// number as shown (from 1), its letter (a, b, ...) or its text; numbers accept `4194304`,
    /// `4,194,304`, `4_194_304`, `4.19e6`, `4.19M`, `175B`.
    pub fn check(&self, given: &str) -> Answer {
        let given = given.trim();
        match &self.kind {
            QuestionKind::MultipleChoice {
                choices,
                answer_index,
                why_wrong,
            } => match choice_index(choices, given) {
                Some(index) => self.verdict_choice(choices, *answer_index, why_wrong, index),
                None => Answer {
                    correct: false,
                    message: format!(
                        "Pick one of the {} choices (1 to {}).",
                        choices.len(),
                        choices.len()
                    ),
                },
            },
            QuestionKind::Number { answer, tolerance } => match parse_number(given) {
                None => Answer {
                    correct: false,
                    message: "Enter a number, e.g. 4194304, 4,194,304 or 4.19e6.".into(),
                },
                Some(value) => {
                    if number_matches(*answer, *tolerance, value) {
                        self.correct()
                    } else {
                        let direction = if value > *answer {
                            "too high"
                        } else {
                            "too low"
                        };
                        Answer {
                            correct: false,
                            message: format!("Not quite: {} is {direction}.", format_value(value)),
                        }
                    }
                }
            },
        }
    }

    /// Checks a multiple-choice pick by its index from 0 (what a UI with radio buttons has).
    pub fn check_choice(&self, index: usize) -> Answer {
        match &self.kind {
            QuestionKind::MultipleChoice {
                choices,
                answer_index,
                why_wrong,
            } if index < choices.len() => {
                self.verdict_choice(choices, *answer_index, why_wrong, index)
            }
            QuestionKind::MultipleChoice { choices, .. } => Answer {
                correct: false,
                message: format!("Pick one of the {} choices.", choices.len()),
            },
            QuestionKind::Number { .. } => Answer {
                correct: false,
                message: "This question wants a number.".into(),
            },
        }
    }

    fn verdict_choice(
        &self,
        choices: &[String],
        answer: usize,
        why_wrong: &[String],
        index: usize,
    ) -> Answer {
        if index == answer {
            return self.correct();
        }
        let message = match why_wrong.get(index).filter(|w| !w.is_empty()) {
            Some(why) => format!("Not quite: \"{}\" — {why}", choices[index]),
            None => format!("Not quite: \"{}\" is not it.", choices[index]),
        };
        Answer {
            correct: false,
            message,
        }
    }

    fn correct(&self) -> Answer {
        let message = if self.explanation.is_empty() {
            "Correct.".to_string()
        } else {
            format!("Correct. {}", self.explanation)
        };
        Answer {
            correct: true,
            message,
        }
    }

    /// The right answer as text: the choice, or the number with its tolerance.
    pub fn answer_text(&self) -> String {
        match &self.kind {
            QuestionKind::MultipleChoice {
                choices,
                answer_index,
                ..
            } => choices
                .get(*answer_index)
                .cloned()
                .unwrap_or_else(|| format!("choice {}", answer_index + 1)),
            QuestionKind::Number { answer, tolerance } if *tolerance > 0.0 => {
                format!("{} (± {})", format_value(*answer), format_value(*tolerance))
            }
            QuestionKind::Number { answer, .. } => format_value(*answer),
        }
    }
}

/// Whether `value` counts as `answer` within `tolerance`.
pub fn number_matches(answer: f64, tolerance: f64, value: f64) -> bool {
    let difference = (value - answer).abs();
    difference <= tolerance || difference <= RELATIVE_EPSILON * answer.abs().max(value.abs())
}

fn choice_index(choices: &[String], given: &str) -> Option<usize> {
    if let Ok(number) = given.trim_end_matches([')', '.']).parse::<usize>() {
        return (1..=choices.len()).contains(&number).then(|| number - 1);
    }
    let lower = given.to_lowercase();
    let letter = lower.trim_end_matches([')', '.']);
    if letter.len() == 1
        && let Some(c) = letter.chars().next()
        && c.is_ascii_lowercase()
    {
        let index = (c as u8 - b'a') as usize;
        if index < choices.len() {
            return Some(index);
        }
    }
    choices
        .iter()
        .position(|choice| choice.trim().to_lowercase() == lower)
}

/// A number for people: integers with thousands separators, others in 4 significant digits.
pub fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        let sign = if value < 0.0 { "-" } else { "" };
        format!(
            "{sign}{}",
            crate::model::params::group_thousands(value.abs() as u64)
        )
    } else if value.abs() >= 1e6 || (value != 0.0 && value.abs() < 1e-3) {
        compute::format_scientific(value)
    } else {
        let text = format!("{value:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Verify: how the app computes an answer
// ---------------------------------------------------------------------------------------------

/// Which count of the parameter view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CountKind {
    /// Weight matrices and embedding tables only (4·H² per attention block).
    Textbook,
    /// Tensor by tensor, as `transformers` counts.
    Exact,
}

/// A computation whose result is a question's answer (`verify:` in the file). The tests check
/// every lesson's stated answer against it; the app can show it after an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Verify {
    /// `params PRESET exact|textbook` — the total.
    /// `params PRESET GROUP exact|textbook [per-layer]` — a group of rows (embeddings, attention,
    /// ffn, layernorm, pooler, heads), all layers or one layer.
    Params {
        preset: Preset,
        group: Option<ParamGroup>,
        count: CountKind,
        per_layer: bool,
    },
    /// `flops PARAMS TOKENS` — 6 · parameters · tokens. PARAMS is a number or a preset.
    Flops { parameters: ParamCount, tokens: f64 },
    /// `pf-days PARAMS TOKENS` — the same in petaflop/s-days.
    PetaflopDays { parameters: ParamCount, tokens: f64 },
    /// `gpu-days PARAMS TOKENS GPU UTILISATION` — days on one GPU.
    GpuDays {
        parameters: ParamCount,
        tokens: f64,
        gpu: Gpu,
        utilisation: f64,
    },
    /// `days PARAMS TOKENS GPU COUNT UTILISATION` — days on COUNT GPUs.
    Days {
        parameters: ParamCount,
        tokens: f64,
        gpu: Gpu,
        gpus: u64,
        utilisation: f64,
    },
    /// `cost PARAMS TOKENS GPU UTILISATION PRICE` — dollars at PRICE per GPU-hour.
    Cost {
        parameters: ParamCount,
        tokens: f64,
        gpu: Gpu,
        utilisation: f64,
        price_per_gpu_hour: f64,
    },
    /// `tokens char|wordpiece TEXT` — how many tokens a tokenizer makes of TEXT: a character
    /// tokenizer (one per character), or a WordPiece tokenizer that knows every word of TEXT (as
    /// bert-base-uncased knows common words), with [CLS] and [SEP].
    Tokens {
        tokenizer: VerifyTokenizer,
        text: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerifyTokenizer {
    Char,
    WordPiece,
}

fn parse_group(text: &str) -> Option<ParamGroup> {
    ParamGroup::ALL.into_iter().find(|g| {
        g.key().eq_ignore_ascii_case(text)
            || (text.eq_ignore_ascii_case("feed-forward") && *g == ParamGroup::Ffn)
    })
}

fn parse_count(text: &str) -> Option<CountKind> {
    match text.to_ascii_lowercase().as_str() {
        "exact" => Some(CountKind::Exact),
        "textbook" => Some(CountKind::Textbook),
        _ => None,
    }
}

fn parse_tokens_arg(text: &str) -> Result<f64, String> {
    match parse_number(text) {
        Some(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(format!("{text:?} is not a positive number of tokens")),
    }
}

fn parse_utilisation(text: &str) -> Result<f64, String> {
    let value = match text.strip_suffix('%') {
        Some(percent) => parse_number(percent).map(|p| p / 100.0),
        None => parse_number(text),
    };
    match value {
        Some(u) if u > 0.0 && u <= 1.0 => Ok(u),
        _ => Err(format!(
            "{text:?} is not a utilisation in (0, 1] (write 0.35 or 35%)"
        )),
    }
}

impl Verify {
    /// Parses the text after `verify:`.
    pub fn parse(text: &str) -> Result<Verify, String> {
        let text = text.trim();
        let (head, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let rest = rest.trim();
        let args: Vec<&str> = rest.split_whitespace().collect();
        let want = |n: usize, usage: &str| {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "`verify: {usage}` takes {n} values, got {}",
                    args.len()
                ))
            }
        };
        match head.to_ascii_lowercase().as_str() {
            "params" => {
                let usage = "params PRESET [GROUP] exact|textbook [per-layer]";
                let Some((&preset, mut more)) = args.split_first() else {
                    return Err(format!("`verify: {usage}`: name a preset"));
                };
                let preset = preset.parse::<Preset>().map_err(|e| e.to_string())?;
                let mut group = None;
                if let Some((&first, tail)) = more.split_first()
                    && parse_count(first).is_none()
                {
                    group = Some(parse_group(first).ok_or_else(|| {
                        format!(
                            "unknown parameter group {first:?}; use {}",
                            ParamGroup::ALL.map(ParamGroup::key).join(", ")
                        )
                    })?);
                    more = tail;
                }
                let Some((&count, tail)) = more.split_first() else {
                    return Err(format!("`verify: {usage}`: say exact or textbook"));
                };
                let count = parse_count(count)
                    .ok_or_else(|| format!("{count:?}: say exact or textbook ({usage})"))?;
                let per_layer = match tail {
                    [] => false,
                    [word] if word.eq_ignore_ascii_case("per-layer") => true,
                    _ => {
                        return Err(format!(
                            "unexpected {:?} in `verify: {usage}`",
                            tail.join(" ")
                        ));
                    }
                };
                if per_layer && group.is_none() {
                    return Err("`per-layer` needs a group (e.g. attention)".into());
                }
                Ok(Verify::Params {
                    preset,
                    group,
                    count,
                    per_layer,
                })
            }
            "flops" | "pf-days" => {
                want(2, &format!("{head} PARAMS TOKENS"))?;
                let parameters = args[0].parse::<ParamCount>()?;
                let tokens = parse_tokens_arg(args[1])?;
                Ok(if head.eq_ignore_ascii_case("flops") {
                    Verify::Flops { parameters, tokens }
                } else {
                    Verify::PetaflopDays { parameters, tokens }
                })
            }
            "gpu-days" => {
                want(4, "gpu-days PARAMS TOKENS GPU UTILISATION")?;
                Ok(Verify::GpuDays {
                    parameters: args[0].parse()?,
                    tokens: parse_tokens_arg(args[1])?,
                    gpu: args[2].parse()?,
                    utilisation: parse_utilisation(args[3])?,
                })
            }
            "days" => {
                want(5, "days PARAMS TOKENS GPU COUNT UTILISATION")?;
                let gpus = args[3]
                    .parse::<u64>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("{:?} is not a number of GPUs", args[3]))?;
                Ok(Verify::Days {
                    parameters: args[0].parse()?,
                    tokens: parse_tokens_arg(args[1])?,
                    gpu: args[2].parse()?,
                    gpus,
                    utilisation: parse_utilisation(args[4])?,
                })
            }
            "cost" => {
                want(5, "cost PARAMS TOKENS GPU UTILISATION PRICE")?;
                let price = parse_number(args[4].trim_start_matches('$'))
                    .filter(|p| p.is_finite() && *p > 0.0)
                    .ok_or_else(|| format!("{:?} is not a price per GPU-hour", args[4]))?;
                Ok(Verify::Cost {
                    parameters: args[0].parse()?,
                    tokens: parse_tokens_arg(args[1])?,
                    gpu: args[2].parse()?,
                    utilisation: parse_utilisation(args[3])?,
                    price_per_gpu_hour: price,
                })
            }
            "tokens" => {
                let (kind, sentence) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                let tokenizer = match kind.to_ascii_lowercase().as_str() {
                    "char" => VerifyTokenizer::Char,
                    "wordpiece" => VerifyTokenizer::WordPiece,
                    _ => {
                        return Err(format!(
                            "`verify: tokens` takes char or wordpiece, got {kind:?}"
                        ));
                    }
                };
                let sentence = super::unquote(sentence.trim());
                if sentence.is_empty() {
                    return Err("`verify: tokens KIND TEXT`: give the text".into());
                }
                Ok(Verify::Tokens {
                    tokenizer,
                    text: sentence,
                })
            }
            _ => Err(format!(
                "unknown verify {head:?}; use params, flops, pf-days, gpu-days, days, cost or tokens"
            )),
        }
    }

    /// Computes the answer.
    pub fn evaluate(&self) -> Result<f64, String> {
        match self {
            Verify::Params {
                preset,
                group,
                count,
                per_layer,
            } => {
                let breakdown = preset.breakdown();
                let pick = |textbook: u64, exact: u64| match count {
                    CountKind::Textbook => textbook,
                    CountKind::Exact => exact,
                };
                let Some(group) = group else {
                    return Ok(pick(breakdown.textbook_total, breakdown.exact_total) as f64);
                };
                let total: f64 = breakdown
                    .rows
                    .iter()
                    .filter(|row| row.group == *group)
                    .map(|row| {
                        let value = pick(row.textbook, row.exact) as f64;
                        if *per_layer {
                            value / row.copies.max(1) as f64
                        } else {
                            value
                        }
                    })
                    .sum();
                Ok(total)
            }
            Verify::Flops { parameters, tokens } => {
                Ok(compute::training_flops(parameters.value(), *tokens))
            }
            Verify::PetaflopDays { parameters, tokens } => Ok(compute::petaflop_s_days(
                compute::training_flops(parameters.value(), *tokens),
            )),
            Verify::GpuDays {
                parameters,
                tokens,
                gpu,
                utilisation,
            } => compute::estimate(
                parameters.value(),
                *tokens,
                Hardware::Gpu(*gpu),
                1,
                *utilisation,
            )
            .map(|e| e.gpu_days),
            Verify::Days {
                parameters,
                tokens,
                gpu,
                gpus,
                utilisation,
            } => compute::estimate(
                parameters.value(),
                *tokens,
                Hardware::Gpu(*gpu),
                *gpus,
                *utilisation,
            )
            .map(|e| e.wall_days),
            Verify::Cost {
                parameters,
                tokens,
                gpu,
                utilisation,
                price_per_gpu_hour,
            } => compute::estimate(
                parameters.value(),
                *tokens,
                Hardware::Gpu(*gpu),
                1,
                *utilisation,
            )
            .map(|e| e.cost(*price_per_gpu_hour)),
            Verify::Tokens { tokenizer, text } => {
                use crate::tokenizer::Tokenizer;
                let encoded = match tokenizer {
                    VerifyTokenizer::Char => Tokenizer::train_char(text)
                        .and_then(|t| t.encode(text, false))
                        .map_err(|e| e.to_string())?,
                    VerifyTokenizer::WordPiece => Tokenizer::train_wordpiece(text, 100_000)
                        .and_then(|t| t.encode(text, true))
                        .map_err(|e| e.to_string())?,
                };
                Ok(encoded.len() as f64)
            }
        }
    }
}

impl fmt::Display for Verify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verify::Params {
                preset,
                group,
                count,
                per_layer,
            } => {
                let count = match count {
                    CountKind::Textbook => "textbook",
                    CountKind::Exact => "exact",
                };
                let group = group.map_or(String::new(), |g| format!(" {}", g.key()));
                let per_layer = if *per_layer { " per-layer" } else { "" };
                write!(f, "params {preset}{group} {count}{per_layer}")
            }
            Verify::Flops { parameters, tokens } => write!(
                f,
                "flops {parameters} {}",
                compute::format_scientific(*tokens)
            ),
            Verify::PetaflopDays { parameters, tokens } => write!(
                f,
                "pf-days {parameters} {}",
                compute::format_scientific(*tokens)
            ),
            Verify::GpuDays {
                parameters,
                tokens,
                gpu,
                utilisation,
            } => write!(
                f,
                "gpu-days {parameters} {} {} {utilisation}",
                compute::format_scientific(*tokens),
                gpu.key()
            ),
            Verify::Days {
                parameters,
                tokens,
                gpu,
                gpus,
                utilisation,
            } => write!(
                f,
                "days {parameters} {} {} {gpus} {utilisation}",
                compute::format_scientific(*tokens),
                gpu.key()
            ),
            Verify::Cost {
                parameters,
                tokens,
                gpu,
                utilisation,
                price_per_gpu_hour,
            } => write!(
                f,
                "cost {parameters} {} {} {utilisation} {price_per_gpu_hour}",
                compute::format_scientific(*tokens),
                gpu.key()
            ),
            Verify::Tokens { tokenizer, text } => {
                let kind = match tokenizer {
                    VerifyTokenizer::Char => "char",
                    VerifyTokenizer::WordPiece => "wordpiece",
                };
                write!(f, "tokens {kind} {text:?}")
            }
        }
    }
}
