//! The lesson file parser. Line-oriented: front matter, then Markdown split into steps at `---`
//! lines and `## ` headings, with ```` ```try ```` and ```` ```question ```` blocks of
//! `key: value` lines. See `lessons/README.md` for the format as teachers read it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::action::*;
use super::compute::Hardware;
use super::question::{Question, QuestionKind, Verify};
use super::{Block, Lesson, LessonError, Step, parse_number, unquote};
use crate::model::params::{ArchSpec, Preset};
use crate::train::config::{Objective, TokenizerKindChoice};

/// A `key: value` line of a block, with the list items under it (`choices:`).
#[derive(Debug)]
struct Entry {
    key: String,
    value: String,
    line: usize,
    items: Vec<(String, usize)>,
}

struct Parser<'a> {
    file: &'a Path,
}

impl Parser<'_> {
    fn error(&self, line: usize, message: impl Into<String>) -> LessonError {
        LessonError::new(self.file, line, message)
    }
}

/// Lines of an open step.
struct StepBuilder {
    title: String,
    line: usize,
    blocks: Vec<Block>,
    markdown: Vec<String>,
}

impl StepBuilder {
    fn new(title: String, line: usize) -> Self {
        Self {
            title,
            line,
            blocks: Vec::new(),
            markdown: Vec::new(),
        }
    }

    fn flush_markdown(&mut self) {
        let lines = std::mem::take(&mut self.markdown);
        let start = lines.iter().position(|l| !l.trim().is_empty());
        let end = lines.iter().rposition(|l| !l.trim().is_empty());
        if let (Some(start), Some(end)) = (start, end) {
            self.blocks
                .push(Block::Markdown(lines[start..=end].join("\n")));
        }
    }

    fn is_blank(&self) -> bool {
        self.title.is_empty()
            && self.blocks.is_empty()
            && self.markdown.iter().all(|l| l.trim().is_empty())
    }

    fn finish(mut self, steps: &mut Vec<Step>) {
        self.flush_markdown();
        if !self.title.is_empty() || !self.blocks.is_empty() {
            steps.push(Step {
                title: self.title,
                blocks: self.blocks,
                line: self.line,
            });
        }
    }
}

/// A fence opening: its character, length and info string. (The lesson view's Markdown renderer
/// uses the same rule, so a code block ends where the parser thinks it does.)
pub(crate) fn fence_open(line: &str) -> Option<(char, usize, String)> {
    let trimmed = line.trim_start();
    let first = trimmed.chars().next()?;
    if first != '`' && first != '~' {
        return None;
    }
    let count = trimmed.chars().take_while(|&c| c == first).count();
    (count >= 3).then(|| (first, count, trimmed[count..].trim().to_string()))
}

/// Whether `line` closes a fence opened with `count` × `fence`.
pub(crate) fn is_fence_close(line: &str, fence: char, count: usize) -> bool {
    let trimmed = line.trim();
    trimmed.chars().count() >= count && trimmed.chars().all(|c| c == fence)
}

fn is_separator(line: &str) -> bool {
    let trimmed = line.trim();
    trimmed.len() >= 3 && trimmed.chars().all(|c| c == '-')
}

fn is_key(key: &str) -> bool {
    key.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `key: value` with a valid key.
fn split_key(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(':')?;
    let key = key.trim();
    is_key(key).then(|| (key, value.trim()))
}

/// Cuts a trailing ` # comment` (for names and numbers; text values keep their `#`).
fn strip_comment(value: &str) -> &str {
    let cut = value
        .char_indices()
        .find(|&(i, c)| c == '#' && i > 0 && value[..i].ends_with([' ', '\t']))
        .map_or(value.len(), |(i, _)| i);
    value[..cut].trim()
}

/// A number of things, ≥ `min`.
fn parse_count_value(value: &str, what: &str, min: usize) -> Result<usize, String> {
    match value.trim().replace(['_', ','], "").parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        Ok(n) => Err(format!("{what} must be at least {min}, got {n}")),
        Err(_) => Err(format!("{what} must be a whole number, got {value:?}")),
    }
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err(format!("expected yes or no, got {value:?}")),
    }
}

fn parse_positive(value: &str, what: &str) -> Result<f64, String> {
    match parse_number(value) {
        Some(n) if n > 0.0 => Ok(n),
        _ => Err(format!("{what} must be a positive number, got {value:?}")),
    }
}

/// `a=1 b=2` pairs.
fn key_values(value: &str) -> Result<Vec<(String, String)>, String> {
    value
        .split_whitespace()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| format!("expected name=value, got {pair:?}"))
        })
        .collect()
}

fn parse_size(value: &str) -> Result<ModelSize, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "tiny" => return Ok(ModelSize::TINY),
        "small" => return Ok(ModelSize::SMALL),
        _ => {}
    }
    let mut size = ModelSize::TINY;
    for (key, v) in key_values(value)? {
        let n = parse_count_value(&v, &key, 1)?;
        match key.as_str() {
            "layers" => size.layers = n,
            "heads" => size.heads = n,
            "embd" | "hidden" | "width" => size.embd = n,
            "positions" | "context" => size.positions = n,
            _ => {
                return Err(format!(
                    "unknown size setting {key:?}; use tiny, small, or layers=, heads=, embd=, \
                     positions="
                ));
            }
        }
    }
    if !size.embd.is_multiple_of(size.heads) {
        return Err(format!(
            "the width ({}) must be divisible by the number of heads ({})",
            size.embd, size.heads
        ));
    }
    Ok(size)
}

fn parse_custom(value: &str) -> Result<ArchSpec, String> {
    let pairs = key_values(value)?;
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let family = get("family").ok_or(
        "name the family: family=bert, family=gpt2 or family=distilbert, then layers=, hidden=, \
         heads= (ffn=, vocab=, positions= are optional)",
    )?;
    for (key, _) in &pairs {
        if ![
            "family",
            "layers",
            "hidden",
            "heads",
            "ffn",
            "vocab",
            "positions",
            "segments",
            "bias",
        ]
        .contains(&key.as_str())
        {
            return Err(format!(
                "unknown setting {key:?}; use family, layers, hidden, heads, ffn, vocab, \
                 positions, segments, bias"
            ));
        }
    }
    let number = |name: &str, default: Option<u64>| -> Result<u64, String> {
        match get(name) {
            Some(v) => parse_count_value(v, name, 1).map(|n| n as u64),
            None => default.ok_or_else(|| format!("custom: {name}= is required")),
        }
    };
    let layers = number("layers", None)?;
    let hidden = number("hidden", None)?;
    let heads = number("heads", None)?;
    if !hidden.is_multiple_of(heads) {
        return Err(format!(
            "hidden ({hidden}) must be divisible by heads ({heads})"
        ));
    }
    let intermediate = number("ffn", Some(4 * hidden))?;
    match family.to_ascii_lowercase().as_str() {
        "bert" => Ok(ArchSpec::Bert {
            vocab: number("vocab", Some(30522))?,
            hidden,
            layers,
            heads,
            intermediate,
            positions: number("positions", Some(512))?,
            type_vocab: number("segments", Some(2))?,
        }),
        "distilbert" => Ok(ArchSpec::DistilBert {
            vocab: number("vocab", Some(30522))?,
            hidden,
            layers,
            heads,
            intermediate,
            positions: number("positions", Some(512))?,
        }),
        "gpt2" | "gpt" => Ok(ArchSpec::Gpt2 {
            vocab: number("vocab", Some(50257))?,
            positions: number("positions", Some(1024))?,
            hidden,
            layers,
            heads,
            intermediate,
            bias: get("bias").map(parse_bool).transpose()?.unwrap_or(true),
        }),
        other => Err(format!(
            "unknown family {other:?}; use bert, gpt2 or distilbert"
        )),
    }
}

fn parse_compute(value: &str) -> Result<ComputeInputs, String> {
    let mut inputs = ComputeInputs::default();
    for (key, v) in key_values(value)? {
        match key.as_str() {
            "params" | "parameters" => inputs.parameters = v.parse()?,
            "tokens" => inputs.tokens = parse_positive(&v, "tokens")?,
            "gpu" | "hardware" => inputs.hardware = v.parse::<Hardware>()?,
            "gpus" => inputs.gpus = parse_count_value(&v, "gpus", 1)? as u64,
            "utilisation" | "utilization" | "util" => {
                let u = match v.strip_suffix('%') {
                    Some(p) => parse_number(p).map(|p| p / 100.0),
                    None => parse_number(&v),
                };
                inputs.utilisation = u
                    .filter(|u| *u > 0.0 && *u <= 1.0)
                    .ok_or_else(|| format!("utilisation must be in (0, 1] or a %, got {v:?}"))?;
            }
            "price" => {
                inputs.price_per_gpu_hour =
                    Some(parse_positive(v.trim_start_matches('$'), "price")?)
            }
            _ => {
                return Err(format!(
                    "unknown calculator setting {key:?}; use params, tokens, gpu, gpus, \
                     utilisation, price"
                ));
            }
        }
    }
    Ok(inputs)
}

fn parse_pretraining_objective(value: &str) -> Result<Objective, String> {
    match value.parse()? {
        objective @ (Objective::CausalLm | Objective::MaskedLm) => Ok(objective),
        other => Err(format!(
            "{} is not a pretraining objective; use causal-lm (GPT) or masked-lm (BERT)",
            other.name()
        )),
    }
}

fn parse_finetune_objective(value: &str) -> Result<Objective, String> {
    match value.parse()? {
        Objective::CausalLm | Objective::MaskedLm => Err(format!(
            "{value:?} is pretraining, not a fine-tuning task; use classification, qa (BERT) or \
             generation (GPT)"
        )),
        objective => Ok(objective),
    }
}

fn parse_tokenizer(value: &str) -> Result<TokenizerKindChoice, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "char" | "character" => Ok(TokenizerKindChoice::Char),
        "bpe" => Ok(TokenizerKindChoice::Bpe),
        "wordpiece" => Ok(TokenizerKindChoice::Wordpiece),
        _ => Err(format!(
            "unknown tokenizer {value:?}; use char, bpe or wordpiece"
        )),
    }
}

fn parse_data(value: &str) -> DataSource {
    if value.trim().eq_ignore_ascii_case("builtin") || value.trim().eq_ignore_ascii_case("built-in")
    {
        DataSource::Builtin
    } else {
        DataSource::File(PathBuf::from(value.trim()))
    }
}

const TRY_KEYS: &str = "label, load, text, pair, view, layer, head, side, token, mask, preset, \
                        custom, stage, temperature, top-k, top-p, generate, qa, word, sentence-a, \
                        sentence-b, train, finetune, finetune-step, compute; after train:/finetune: steps, lr, batch, size, \
                        corpus, tokenizer, nsp, warmup, seed, start, from, data";

/// Keys whose value is text, taken whole (no ` # comment`), quotes optional.
const TRY_TEXT_KEYS: [&str; 7] = [
    "label",
    "text",
    "pair",
    "qa",
    "word",
    "sentence-a",
    "sentence-b",
];

impl Parser<'_> {
    /// Splits a block's lines into entries; `#` lines are comments, indented lines continue the
    /// previous value, `- ` lines are list items.
    fn entries(&self, lines: &[(usize, &str)]) -> Result<Vec<Entry>, LessonError> {
        let mut entries: Vec<Entry> = Vec::new();
        for &(number, raw) in lines {
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indented = raw.starts_with([' ', '\t']);
            if let Some(item) = trimmed
                .strip_prefix('-')
                .filter(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
            {
                let Some(last) = entries.last_mut().filter(|e| e.key == "choices") else {
                    return Err(self.error(
                        number,
                        "a `- ` list item must follow `choices:` (one choice per line)",
                    ));
                };
                last.items.push((item.trim().to_string(), number));
                continue;
            }
            if !indented && let Some((key, value)) = split_key(trimmed) {
                entries.push(Entry {
                    key: key.to_string(),
                    value: value.to_string(),
                    line: number,
                    items: Vec::new(),
                });
                continue;
            }
            match entries.last_mut() {
                Some(last) if indented => {
                    let target = match last.items.last_mut() {
                        Some((item, _)) => item,
                        None => &mut last.value,
                    };
                    if !target.is_empty() {
                        target.push('\n');
                    }
                    target.push_str(trimmed);
                }
                _ => {
                    return Err(self.error(
                        number,
                        format!(
                            "expected `key: value` (keys are lower case, e.g. `label:`), or an \
                             indented line continuing the value above; got {trimmed:?}"
                        ),
                    ));
                }
            }
        }
        Ok(entries)
    }

    fn parse_action(&self, open_line: usize, entries: Vec<Entry>) -> Result<Action, LessonError> {
        let mut label: Option<String> = None;
        let mut commands: Vec<ActionCommand> = Vec::new();
        let mut layer_at: Option<usize> = None;
        let mut head: Option<(Option<usize>, usize)> = None;
        let mut side: Option<(Side, usize)> = None;
        let mut sampling_at: Option<usize> = None;
        let mut compare_at: Option<(usize, usize)> = None; // (command index, line)
        let mut run_at: Option<(usize, usize)> = None; // (command index, line)

        for entry in entries {
            let line = entry.line;
            let err = |message: String| self.error(line, format!("`{}:` {message}", entry.key));
            let text = unquote(&entry.value);
            let value = strip_comment(&entry.value).to_string();
            if TRY_TEXT_KEYS.contains(&entry.key.as_str()) && text.trim().is_empty() {
                return Err(err("needs some text after it".into()));
            }
            let command = match entry.key.as_str() {
                "label" => {
                    if label.is_some() {
                        return Err(err("appears twice; an action has one label".into()));
                    }
                    label = Some(text);
                    None
                }
                "load" => Some(ActionCommand::LoadModel(value.parse().map_err(err)?)),
                "text" => Some(ActionCommand::SetText(text)),
                "pair" => {
                    if entry.value.trim().eq_ignore_ascii_case("none") {
                        Some(ActionCommand::SetPair(None))
                    } else {
                        Some(ActionCommand::SetPair(Some(text)))
                    }
                }
                "view" => Some(ActionCommand::OpenView(value.parse().map_err(err)?)),
                "step" => Some(ActionCommand::TranslationStep(
                    parse_count_value(&value, "step", 1).map_err(err)?,
                )),
                "layer" => {
                    if layer_at.is_some() {
                        return Err(err("appears twice; one layer per action".into()));
                    }
                    let layer = parse_count_value(&value, "layer", 0).map_err(err)?;
                    layer_at = Some(commands.len());
                    Some(ActionCommand::SelectLayerHead {
                        side: None,
                        layer,
                        head: None,
                    })
                }
                "head" => {
                    if head.is_some() {
                        return Err(err("appears twice; one head per action".into()));
                    }
                    let h = match value.to_ascii_lowercase().as_str() {
                        "mean" | "average" | "all" => None,
                        _ => Some(parse_count_value(&value, "head", 0).map_err(err)?),
                    };
                    head = Some((h, line));
                    None
                }
                "side" => {
                    if side.is_some() {
                        return Err(err("appears twice".into()));
                    }
                    side = Some((value.parse().map_err(err)?, line));
                    None
                }
                "token" => Some(ActionCommand::SelectToken {
                    side: None,
                    token: value.parse().map_err(err)?,
                }),
                "mask" => Some(ActionCommand::MaskToken(
                    unquote(&value).parse().map_err(err)?,
                )),
                "preset" => Some(match value.to_ascii_lowercase().as_str() {
                    "loaded-gpt" => ActionCommand::SelectLoadedParams(Side::Gpt),
                    "loaded-bert" => ActionCommand::SelectLoadedParams(Side::Bert),
                    _ => ActionCommand::SelectPreset(
                        value
                            .parse::<Preset>()
                            .map_err(|e| err(format!("{e}, loaded-gpt, loaded-bert")))?,
                    ),
                }),
                "custom" => Some(ActionCommand::SetCustomConfig(
                    parse_custom(&value).map_err(err)?,
                )),
                "stage" => Some(ActionCommand::StepThrough {
                    side: None,
                    stage: value.parse().map_err(err)?,
                }),
                "temperature" | "top-k" | "top-p" => {
                    let index = *sampling_at.get_or_insert_with(|| {
                        commands.push(ActionCommand::SetSampling(Sampling::default()));
                        commands.len() - 1
                    });
                    let Some(ActionCommand::SetSampling(sampling)) = commands.get_mut(index) else {
                        return Err(err("internal error: sampling command lost".into()));
                    };
                    match entry.key.as_str() {
                        "temperature" => {
                            sampling.temperature = Some(
                                parse_number(&value)
                                    .filter(|t| (0.0..=2.0).contains(t))
                                    .ok_or_else(|| {
                                        err(format!("must be a number from 0 to 2, got {value:?}"))
                                    })?,
                            )
                        }
                        "top-k" => {
                            sampling.top_k =
                                Some(parse_count_value(&value, "top-k", 1).map_err(err)?)
                        }
                        _ => {
                            sampling.top_p = Some(
                                parse_number(&value)
                                    .filter(|p| *p > 0.0 && *p <= 1.0)
                                    .ok_or_else(|| {
                                        err(format!("must be a number in (0, 1], got {value:?}"))
                                    })?,
                            )
                        }
                    }
                    None
                }
                "word" | "sentence-a" | "sentence-b" => {
                    let (index, _) = *compare_at.get_or_insert_with(|| {
                        commands.push(ActionCommand::CompareWord {
                            word: String::new(),
                            sentence_a: String::new(),
                            sentence_b: String::new(),
                        });
                        (commands.len() - 1, line)
                    });
                    let Some(ActionCommand::CompareWord {
                        word,
                        sentence_a,
                        sentence_b,
                    }) = commands.get_mut(index)
                    else {
                        return Err(err("internal error: comparison command lost".into()));
                    };
                    let slot = match entry.key.as_str() {
                        "word" => word,
                        "sentence-a" => sentence_a,
                        _ => sentence_b,
                    };
                    if !slot.is_empty() {
                        return Err(err("appears twice".into()));
                    }
                    *slot = text;
                    None
                }
                "generate" => {
                    let n = parse_count_value(&value, "generate", 1).map_err(err)?;
                    if n > 500 {
                        return Err(err(format!("at most 500 tokens, got {n}")));
                    }
                    Some(ActionCommand::Generate(n))
                }
                "qa" => Some(ActionCommand::AskQuestion(text)),
                "train" => {
                    let objective = parse_pretraining_objective(&value).map_err(err)?;
                    run_at = Some((commands.len(), line));
                    Some(ActionCommand::StartTraining(TrainingSettings::new(
                        objective,
                    )))
                }
                "finetune" => {
                    let objective = parse_finetune_objective(&value).map_err(err)?;
                    run_at = Some((commands.len(), line));
                    Some(ActionCommand::StartFinetune(FinetuneSettings::new(
                        objective,
                    )))
                }
                "finetune-step" => {
                    Some(ActionCommand::ShowFinetuneStep(value.parse().map_err(err)?))
                }
                "compute" => Some(ActionCommand::ShowCalculator(
                    parse_compute(&value).map_err(err)?,
                )),
                "steps" | "lr" | "batch" | "size" | "corpus" | "tokenizer" | "nsp" | "warmup"
                | "seed" | "start" | "from" | "data" => {
                    let Some((index, _)) = run_at else {
                        return Err(err(
                            "belongs to a `train:` or `finetune:` line above it".into()
                        ));
                    };
                    match commands.get_mut(index) {
                        Some(ActionCommand::StartTraining(t)) => {
                            apply_training_setting(t, &entry.key, &value).map_err(err)?
                        }
                        Some(ActionCommand::StartFinetune(f)) => {
                            apply_finetune_setting(f, &entry.key, &value).map_err(err)?
                        }
                        _ => return Err(err("internal error: run command lost".into())),
                    }
                    None
                }
                other => {
                    return Err(self.error(
                        line,
                        format!("unknown key `{other}:` in a try block; the keys are {TRY_KEYS}"),
                    ));
                }
            };
            commands.extend(command);
        }

        if let Some((index, line)) = compare_at
            && let Some(ActionCommand::CompareWord {
                word,
                sentence_a,
                sentence_b,
            }) = commands.get(index)
        {
            if word.is_empty() || sentence_a.is_empty() || sentence_b.is_empty() {
                return Err(self.error(
                    line,
                    "comparing a word needs all three of `word:`, `sentence-a:` and `sentence-b:`",
                ));
            }
            for (name, sentence) in [("sentence-a", sentence_a), ("sentence-b", sentence_b)] {
                if !sentence.to_lowercase().contains(&word.to_lowercase()) {
                    return Err(self.error(
                        line,
                        format!("`{name}:` does not contain the word {word:?}"),
                    ));
                }
            }
        }
        if let Some((h, line)) = head {
            match layer_at.and_then(|i| commands.get_mut(i)) {
                Some(ActionCommand::SelectLayerHead { head, .. }) => *head = h,
                _ => {
                    return Err(self.error(line, "`head:` needs a `layer:` in the same action"));
                }
            }
        }
        let shows = |view: ViewName| commands.iter().any(|c| c.view() == Some(view));
        let (shows_predict, shows_tokens) = (shows(ViewName::Predict), shows(ViewName::Tokens));
        if let Some((chosen, line)) = side {
            let mut used = shows_predict || shows_tokens;
            for command in &mut commands {
                match command {
                    ActionCommand::SelectLayerHead { side, .. }
                    | ActionCommand::SelectToken { side, .. }
                    | ActionCommand::StepThrough { side, .. } => {
                        *side = Some(chosen);
                        used = true;
                    }
                    _ => {}
                }
            }
            if !used {
                return Err(self.error(
                    line,
                    "`side:` applies to `layer:`, `token:`, `stage:` and the Predict and Tokens \
                     views; this action has none of them",
                ));
            }
        }
        if let Some((index, line)) = run_at {
            let checked = match commands.get(index) {
                Some(ActionCommand::StartTraining(t)) => t.to_train_config().validate(),
                Some(ActionCommand::StartFinetune(f)) => {
                    if let Some(side) = f.from.side()
                        && (side == Side::Gpt) != f.objective.is_causal()
                    {
                        return Err(self.error(
                            line,
                            format!(
                                "fine-tuning for {} needs a {} model, but `from:` is {}",
                                f.objective.name(),
                                if f.objective.is_causal() {
                                    "GPT"
                                } else {
                                    "BERT"
                                },
                                f.from
                            ),
                        ));
                    }
                    f.to_train_config(PathBuf::from("model")).validate()
                }
                _ => Ok(()),
            };
            checked.map_err(|e| self.error(line, format!("these training settings fail: {e}")))?;
        }
        let Some(label) = label else {
            return Err(self.error(
                open_line,
                "this try block has no `label:` (the text of its button)",
            ));
        };
        if commands.is_empty() {
            return Err(self.error(
                open_line,
                format!("this try block does nothing; give it some of: {TRY_KEYS}"),
            ));
        }
        // What a button shows must not depend on what an earlier button left behind.
        let reads_text = commands.iter().any(|c| {
            matches!(
                c,
                ActionCommand::SelectLayerHead { .. }
                    | ActionCommand::SelectToken { .. }
                    | ActionCommand::MaskToken(_)
                    | ActionCommand::StepThrough { .. }
                    | ActionCommand::Generate(_)
                    | ActionCommand::AskQuestion(_)
                    | ActionCommand::TranslationStep(_)
                    | ActionCommand::OpenView(
                        ViewName::Tokens
                            | ViewName::Attention
                            | ViewName::StepThrough
                            | ViewName::Predict
                            | ViewName::Translate
                    )
            )
        });
        let sets_text = commands
            .iter()
            .any(|c| matches!(c, ActionCommand::SetText(_)));
        if reads_text && !sets_text {
            return Err(self.error(
                open_line,
                "this button shows the models' reading of the text: give it a `text:` line, so \
                 that what it shows does not depend on what an earlier button left",
            ));
        }
        // A new text is one sentence unless the button gives sentence B too.
        if !commands
            .iter()
            .any(|c| matches!(c, ActionCommand::SetPair(_)))
            && let Some(at) = commands
                .iter()
                .position(|c| matches!(c, ActionCommand::SetText(_)))
        {
            commands.insert(at + 1, ActionCommand::SetPair(None));
        }
        if shows_predict || shows_tokens {
            let implied = commands.iter().rev().find_map(|c| match c {
                ActionCommand::MaskToken(_)
                | ActionCommand::AskQuestion(_)
                | ActionCommand::SetPair(Some(_)) => Some(Side::Bert),
                ActionCommand::Generate(_) | ActionCommand::SetSampling(_) => Some(Side::Gpt),
                _ => None,
            });
            let loaded = commands.iter().rev().find_map(|c| match c {
                ActionCommand::LoadModel(model) => model.side(),
                _ => None,
            });
            match side.map(|(s, _)| s).or(implied).or(loaded) {
                Some(Side::Translator) if shows_predict => {
                    return Err(self.error(
                        open_line,
                        "the Predict view shows a GPT or a BERT; the translator has the \
                         Translate view (`view: translate`)",
                    ));
                }
                Some(chosen) => commands.push(ActionCommand::ShowSide(chosen)),
                None if shows_predict => {
                    return Err(self.error(
                        open_line,
                        "the Predict view shows GPT's next token or BERT's fill-mask: say which \
                         with `side: gpt` or `side: bert`",
                    ));
                }
                None => {}
            }
        }

        Ok(Action {
            label,
            commands,
            line: open_line,
        })
    }

    fn parse_question(
        &self,
        open_line: usize,
        entries: Vec<Entry>,
        default_id: String,
    ) -> Result<Question, LessonError> {
        let mut id: Option<String> = None;
        let mut prompt: Option<String> = None;
        let mut choices: Option<(Vec<String>, usize)> = None;
        let mut answer: Option<(String, usize)> = None;
        let mut tolerance: Option<(String, usize)> = None;
        let mut explanation: Option<String> = None;
        let mut verify: Option<(String, usize)> = None;
        // `why-N:` — why choice N is wrong: (N, text, line).
        let mut reasons: Vec<(usize, String, usize)> = Vec::new();

        for entry in entries {
            let line = entry.line;
            let twice = || {
                self.error(
                    line,
                    format!("`{}:` appears twice in this question", entry.key),
                )
            };
            match entry.key.as_str() {
                "id" => {
                    let value = strip_comment(&entry.value).to_string();
                    if value.is_empty() || !is_key(&value) {
                        return Err(self
                            .error(line, "`id:` must be lower case letters, digits and hyphens"));
                    }
                    if id.replace(value).is_some() {
                        return Err(twice());
                    }
                }
                "ask" => {
                    if prompt.replace(unquote(&entry.value)).is_some() {
                        return Err(twice());
                    }
                }
                "choices" => {
                    if !entry.value.is_empty() {
                        return Err(self.error(
                            line,
                            "put the choices on the lines below `choices:`, each starting with `- `",
                        ));
                    }
                    let items: Vec<String> = entry.items.iter().map(|(t, _)| t.clone()).collect();
                    if let Some((_, item_line)) = entry.items.iter().find(|(t, _)| t.is_empty()) {
                        return Err(self.error(*item_line, "an empty choice"));
                    }
                    if choices.replace((items, line)).is_some() {
                        return Err(twice());
                    }
                }
                "answer" => {
                    if answer
                        .replace((strip_comment(&entry.value).to_string(), line))
                        .is_some()
                    {
                        return Err(twice());
                    }
                }
                "tolerance" => {
                    if tolerance
                        .replace((strip_comment(&entry.value).to_string(), line))
                        .is_some()
                    {
                        return Err(twice());
                    }
                }
                "explain" => {
                    if explanation.replace(unquote(&entry.value)).is_some() {
                        return Err(twice());
                    }
                }
                "verify" => {
                    if verify.replace((entry.value.clone(), line)).is_some() {
                        return Err(twice());
                    }
                }
                other if other.starts_with("why-") => {
                    let number = other["why-".len()..]
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n >= 1);
                    let Some(number) = number else {
                        return Err(self.error(
                            line,
                            format!("`{other}:` should be `why-N:`, N the number of a choice"),
                        ));
                    };
                    if reasons.iter().any(|(n, _, _)| *n == number) {
                        return Err(twice());
                    }
                    reasons.push((number, unquote(&entry.value), line));
                }
                other => {
                    return Err(self.error(
                        line,
                        format!(
                            "unknown key `{other}:` in a question; the keys are ask, choices, \
                             answer, why-N, tolerance, explain, verify, id"
                        ),
                    ));
                }
            }
        }

        let prompt = prompt
            .filter(|p| !p.trim().is_empty())
            .ok_or_else(|| self.error(open_line, "this question has no `ask:` (the question)"))?;
        let Some((answer_text, answer_line)) = answer else {
            return Err(self.error(open_line, "this question has no `answer:`"));
        };
        let kind = match choices {
            Some((choices, choices_line)) => {
                if choices.len() < 2 {
                    return Err(self.error(
                        choices_line,
                        "a multiple-choice question needs at least two choices (`- ` lines)",
                    ));
                }
                if let Some((_, line)) = tolerance {
                    return Err(self.error(line, "`tolerance:` is for number questions"));
                }
                let number = answer_text
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=choices.len()).contains(n));
                let Some(number) = number else {
                    return Err(self.error(
                        answer_line,
                        format!(
                            "the answer of a multiple-choice question is the number of the right \
                             choice, 1 to {}; got {answer_text:?}",
                            choices.len()
                        ),
                    ));
                };
                let mut why_wrong = vec![String::new(); choices.len()];
                for (n, reason, line) in reasons.drain(..) {
                    if n > choices.len() {
                        return Err(self.error(
                            line,
                            format!("`why-{n}:` but there are {} choices", choices.len()),
                        ));
                    }
                    if n == number {
                        return Err(self.error(
                            line,
                            format!("`why-{n}:` explains a wrong choice, but {n} is the answer"),
                        ));
                    }
                    why_wrong[n - 1] = reason;
                }
                QuestionKind::MultipleChoice {
                    choices,
                    answer_index: number - 1,
                    why_wrong,
                }
            }
            None => {
                let answer = parse_number(&answer_text).ok_or_else(|| {
                    self.error(
                        answer_line,
                        format!(
                            "the answer must be a number (e.g. 4194304, 4,194,304 or 3.14e23), or \
                             give `choices:`; got {answer_text:?}"
                        ),
                    )
                })?;
                let tolerance = match tolerance {
                    None => 0.0,
                    Some((text, line)) => {
                        let value = match text.strip_suffix('%') {
                            Some(percent) => {
                                parse_number(percent).map(|p| p / 100.0 * answer.abs())
                            }
                            None => parse_number(&text),
                        };
                        value.filter(|t| *t >= 0.0).ok_or_else(|| {
                            self.error(
                                line,
                                format!(
                                    "the tolerance must be a number ≥ 0 or a percentage \
                                     (e.g. 0.5 or 1%); got {text:?}"
                                ),
                            )
                        })?
                    }
                };
                QuestionKind::Number { answer, tolerance }
            }
        };
        if let Some((_, _, line)) = reasons.first() {
            return Err(self.error(*line, "`why-N:` is for multiple-choice questions"));
        }
        let verify = match verify {
            None => None,
            Some((text, line)) => {
                if matches!(kind, QuestionKind::MultipleChoice { .. }) {
                    return Err(self.error(line, "`verify:` is for number questions"));
                }
                Some(Verify::parse(&text).map_err(|e| self.error(line, format!("`verify:` {e}")))?)
            }
        };
        Ok(Question {
            id: id.unwrap_or(default_id),
            prompt,
            kind,
            explanation: explanation.unwrap_or_default(),
            verify,
            line: open_line,
        })
    }
}

fn apply_training_setting(t: &mut TrainingSettings, key: &str, value: &str) -> Result<(), String> {
    match key {
        "steps" => t.steps = parse_count_value(value, "steps", 1)?,
        "lr" => t.lr = parse_positive(value, "lr")?,
        "batch" => t.batch_size = parse_count_value(value, "batch", 1)?,
        "size" => t.size = parse_size(value)?,
        "corpus" => t.corpus = parse_data(value),
        "tokenizer" => t.tokenizer = Some(parse_tokenizer(value)?),
        "nsp" => t.next_sentence = parse_bool(value)?,
        "warmup" => t.warmup_steps = Some(parse_count_value(value, "warmup", 0)?),
        "seed" => t.seed = Some(parse_count_value(value, "seed", 0)? as u64),
        "start" => t.start = parse_bool(value)?,
        _ => {
            return Err(
                "is a fine-tuning setting; training takes steps, lr, batch, size, corpus, \
                 tokenizer, nsp, warmup, seed, start"
                    .into(),
            );
        }
    }
    Ok(())
}

fn apply_finetune_setting(f: &mut FinetuneSettings, key: &str, value: &str) -> Result<(), String> {
    match key {
        "steps" => f.steps = parse_count_value(value, "steps", 1)?,
        "lr" => f.lr = parse_positive(value, "lr")?,
        "batch" => f.batch_size = parse_count_value(value, "batch", 1)?,
        "from" => f.from = value.parse()?,
        "data" => f.data = parse_data(value),
        "seed" => f.seed = Some(parse_count_value(value, "seed", 0)? as u64),
        "start" => f.start = parse_bool(value)?,
        _ => {
            return Err(
                "is a pretraining setting; fine-tuning takes from, data, steps, lr, batch, seed, \
                 start"
                    .into(),
            );
        }
    }
    Ok(())
}

/// Front matter keys.
const FRONT_KEYS: &str = "id, title, order, summary";

/// The number a file name starts with ("03-attention.md" → 3).
fn order_from_file_name(file: &Path) -> Option<i64> {
    let name = file.file_name()?.to_string_lossy();
    let digits: String = name.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

pub(super) fn parse(file: &Path, text: &str) -> Result<Lesson, LessonError> {
    let parser = Parser { file };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();

    // ---- front matter ----------------------------------------------------------------------
    let Some(start) = lines.iter().position(|l| !l.trim().is_empty()) else {
        return Err(parser.error(1, "the file is empty; a lesson starts with front matter"));
    };
    if lines[start].trim() != "---" {
        return Err(parser.error(
            start + 1,
            "a lesson starts with front matter: a line `---`, then `id:`, `title:` (and \
             `order:`), then `---`",
        ));
    }
    let mut id: Option<String> = None;
    let mut title: Option<String> = None;
    let mut order: Option<i64> = None;
    let mut summary = String::new();
    let mut seen = HashSet::new();
    let mut index = start + 1;
    let body_start = loop {
        let Some(raw) = lines.get(index) else {
            return Err(parser.error(
                start + 1,
                "the front matter opened here is never closed with a `---` line",
            ));
        };
        let number = index + 1;
        index += 1;
        let trimmed = raw.trim();
        if trimmed == "---" {
            break index;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((key, value)) = split_key(trimmed) else {
            return Err(parser.error(
                number,
                format!(
                    "expected `key: value` in the front matter ({FRONT_KEYS}); got {trimmed:?}"
                ),
            ));
        };
        if !seen.insert(key.to_string()) {
            return Err(parser.error(number, format!("`{key}:` appears twice")));
        }
        match key {
            "id" => {
                let value = strip_comment(value);
                if !is_key(value) {
                    return Err(parser.error(
                        number,
                        format!(
                            "the id must be lower case letters, digits and hyphens, starting \
                             with a letter (e.g. `attention`); got {value:?}"
                        ),
                    ));
                }
                id = Some(value.to_string());
            }
            "title" => {
                let value = unquote(value);
                if value.is_empty() {
                    return Err(parser.error(number, "the title is empty"));
                }
                title = Some(value);
            }
            "order" => {
                let value = strip_comment(value);
                order = Some(value.parse().map_err(|_| {
                    parser.error(
                        number,
                        format!("`order:` must be a whole number; got {value:?}"),
                    )
                })?);
            }
            "summary" => summary = unquote(value),
            other => {
                return Err(parser.error(
                    number,
                    format!("unknown front matter key `{other}:`; the keys are {FRONT_KEYS}"),
                ));
            }
        }
    };
    let Some(id) = id else {
        return Err(parser.error(start + 1, "the front matter has no `id:`"));
    };
    let Some(title) = title else {
        return Err(parser.error(start + 1, "the front matter has no `title:`"));
    };
    let order = order.or_else(|| order_from_file_name(file)).unwrap_or(1000);

    // ---- body --------------------------------------------------------------------------------
    let mut steps: Vec<Step> = Vec::new();
    let mut step = StepBuilder::new(String::new(), body_start + 1);
    let mut question_ids: HashSet<String> = HashSet::new();
    let mut question_count = 0usize;
    let mut index = body_start;
    while index < lines.len() {
        let raw = lines[index];
        let number = index + 1;
        index += 1;

        if let Some((fence, count, info)) = fence_open(raw) {
            // Find the closing fence.
            let close = lines[index..]
                .iter()
                .position(|l| is_fence_close(l, fence, count))
                .map(|offset| index + offset);
            let Some(close) = close else {
                return Err(parser.error(
                    number,
                    format!(
                        "the {} block opened here is never closed (a line `{}`)",
                        if info.is_empty() {
                            "code"
                        } else {
                            info.as_str()
                        },
                        fence.to_string().repeat(count)
                    ),
                ));
            };
            let kind = info
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            let inner: Vec<(usize, &str)> = (index..close).map(|i| (i + 1, lines[i])).collect();
            match kind.as_str() {
                "try" => {
                    step.flush_markdown();
                    let entries = parser.entries(&inner)?;
                    let action = parser.parse_action(number, entries)?;
                    step.blocks.push(Block::Action(action));
                }
                "question" => {
                    step.flush_markdown();
                    question_count += 1;
                    let entries = parser.entries(&inner)?;
                    let question =
                        parser.parse_question(number, entries, format!("q{question_count}"))?;
                    if !question_ids.insert(question.id.clone()) {
                        return Err(parser.error(
                            number,
                            format!(
                                "question id {:?} is used twice in this lesson; give this one \
                                 another `id:`",
                                question.id
                            ),
                        ));
                    }
                    step.blocks.push(Block::Question(question));
                }
                _ => {
                    // Ordinary code: Markdown, untouched (a `---` or `## ` inside stays code).
                    step.markdown
                        .extend(lines[index - 1..=close].iter().map(|l| l.to_string()));
                }
            }
            index = close + 1;
            continue;
        }

        if is_separator(raw) {
            std::mem::replace(&mut step, StepBuilder::new(String::new(), number + 1))
                .finish(&mut steps);
            continue;
        }

        if let Some(heading) = raw.strip_prefix("## ") {
            let heading = heading.trim().trim_end_matches('#').trim().to_string();
            if step.is_blank() {
                step.markdown.clear();
                step.title = heading;
                step.line = number;
            } else {
                std::mem::replace(&mut step, StepBuilder::new(heading, number)).finish(&mut steps);
            }
            continue;
        }

        step.markdown.push(raw.to_string());
    }
    step.finish(&mut steps);

    if steps.is_empty() {
        return Err(parser.error(
            body_start.min(lines.len()).max(1),
            "the lesson has no steps: add text after the front matter",
        ));
    }
    Ok(Lesson {
        id,
        title,
        order,
        summary,
        file: file.to_path_buf(),
        steps,
    })
}
