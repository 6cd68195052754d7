//! What the Fine-tune view shows that is computed: the data set as read (with one error per bad
//! row), the chosen model's config, token lengths under its tokenizer, and validation examples
//! through the model before and after fine-tuning. Run on background threads; the view only
//! draws the results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{ClassificationExample, GenerationExample, QaExample, RowError};
use crate::inspect::{Predictions, inspect};
use crate::model::checkpoint::{CONFIG_FILE, LoadedModel, TOKENIZER_FILE, load_dir};
use crate::model::config::ModelConfig;
use crate::tokenizer::Tokenizer;
use crate::train::config::Objective;
use crate::train::{TrainConfig, Trainer};

/// Where the examples come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataChoice {
    BuiltIn,
    File,
}

fn not_finetuning(objective: Objective) -> String {
    format!("{} is not a fine-tuning task", objective.name())
}

/// One example of any task.
#[derive(Debug, Clone, PartialEq)]
pub enum Example {
    Classification(ClassificationExample),
    Qa(QaExample),
    Generation(GenerationExample),
}

impl Example {
    /// The cells of a preview row, in [`Objective::data_columns`] order.
    pub fn cells(&self) -> Vec<String> {
        match self {
            Example::Classification(e) => vec![e.text.clone(), e.label.clone()],
            Example::Qa(e) => vec![e.question.clone(), e.context.clone(), e.answer.clone()],
            Example::Generation(e) => vec![e.prompt.clone(), e.completion.clone()],
        }
    }

    /// What a correct prediction is.
    pub fn expected(&self) -> String {
        match self {
            Example::Classification(e) => e.label.clone(),
            Example::Qa(e) => e.answer.clone(),
            Example::Generation(e) => e.completion.clone(),
        }
    }

    /// The input, shortened for a table.
    pub fn input(&self) -> String {
        match self {
            Example::Classification(e) => e.text.clone(),
            Example::Qa(e) => format!("{} | {}", e.question, e.context),
            Example::Generation(e) => e.prompt.clone(),
        }
    }
}

/// The data set as read and parsed (lenient: good examples and one error per bad row).
#[derive(Debug, Clone)]
pub struct DataPreview {
    pub objective: Objective,
    pub source: String,
    pub examples: Vec<Example>,
    pub errors: Vec<RowError>,
    /// Class names, in the order the trainer numbers them (classification).
    pub labels: Vec<String>,
}

impl DataPreview {
    /// Examples in the training split (the rest is held out for validation).
    pub fn train_count(&self, val_fraction: f64) -> usize {
        // As `data::train_val_split` counts: at least one example on each side.
        let n = self.examples.len();
        if n < 2 {
            return n;
        }
        let fraction = f64::from(val_fraction.clamp(0.0, 1.0) as f32);
        n - ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
    }
}

/// Reads (or generates) a fine-tuning data set: what the Fine-tune view's step 2 shows.
pub fn read_examples(
    objective: Objective,
    data: DataChoice,
    builtin_size: usize,
    seed: u64,
    path: &str,
) -> Result<DataPreview, String> {
    let (examples, errors, source): (Vec<Example>, Vec<RowError>, String) = match data {
        DataChoice::BuiltIn => {
            let examples = match objective {
                Objective::Classification => crate::data::sentiment_dataset(seed, builtin_size)
                    .into_iter()
                    .map(Example::Classification)
                    .collect(),
                Objective::Qa => crate::data::qa_dataset(seed, builtin_size)
                    .into_iter()
                    .map(Example::Qa)
                    .collect(),
                Objective::Generation => crate::data::generation_dataset(seed, builtin_size)
                    .into_iter()
                    .map(Example::Generation)
                    .collect(),
                other => return Err(not_finetuning(other)),
            };
            (
                examples,
                Vec::new(),
                format!(
                    "built-in {} set ({builtin_size} examples, seed {seed})",
                    objective.builtin_data_name()
                ),
            )
        }
        DataChoice::File => {
            let path = path.trim();
            if path.is_empty() {
                return Err("Choose a data file first.".into());
            }
            let text = crate::util::read_text(Path::new(path)).map_err(|e| e.to_string())?;
            if text.trim().is_empty() {
                return Err(format!("{path}: the file is empty"));
            }
            let (examples, errors) = match objective {
                Objective::Classification => {
                    let (e, errors) = crate::data::parse_classification_csv(&text);
                    (e.into_iter().map(Example::Classification).collect(), errors)
                }
                Objective::Qa => {
                    let (e, errors) = crate::data::parse_qa(&text);
                    (e.into_iter().map(Example::Qa).collect(), errors)
                }
                Objective::Generation => {
                    let (e, errors) = crate::data::parse_generation_jsonl(&text);
                    (e.into_iter().map(Example::Generation).collect(), errors)
                }
                other => return Err(not_finetuning(other)),
            };
            (examples, errors, path.to_string())
        }
    };
    let labels = if objective == Objective::Classification {
        let examples: Vec<ClassificationExample> = examples
            .iter()
            .filter_map(|e| match e {
                Example::Classification(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        crate::data::label_names(&examples)
    } else {
        Vec::new()
    };
    Ok(DataPreview {
        objective,
        source,
        examples,
        errors,
        labels,
    })
}

/// The chosen model's config, read on a background thread.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub has_tokenizer: bool,
    pub parameters: u64,
}

/// Token lengths of every example under the model's tokenizer.
#[derive(Debug, Clone)]
pub struct TokenStats {
    pub lengths: Vec<usize>,
    pub tokenizer: String,
    pub model_positions: usize,
}

impl ModelInfo {
    /// Reads `dir`'s config and counts its parameters.
    pub fn read(dir: PathBuf) -> Result<ModelInfo, String> {
        let config = ModelConfig::from_file(&dir.join(CONFIG_FILE)).map_err(|e| e.to_string())?;
        let has_tokenizer = dir.join(TOKENIZER_FILE).is_file();
        let parameters = crate::model::params::breakdown_for_config(&config).exact_total;
        Ok(ModelInfo {
            dir,
            config,
            has_tokenizer,
            parameters,
        })
    }
}

impl TokenStats {
    /// Token lengths of `examples` under the tokenizer in `dir`; `model_positions` is the most
    /// the model reads.
    pub fn measure(
        dir: &Path,
        examples: &[Example],
        model_positions: usize,
    ) -> Result<TokenStats, String> {
        let tokenizer =
            Tokenizer::from_file(&dir.join(TOKENIZER_FILE)).map_err(|e| e.to_string())?;
        let lengths = examples
            .iter()
            .map(|e| example_length(&tokenizer, e))
            .collect::<Result<Vec<usize>, String>>()?;
        Ok(TokenStats {
            lengths,
            tokenizer: format!("{:?}", tokenizer.kind()),
            model_positions,
        })
    }
    pub fn truncated(&self, max_len: usize) -> usize {
        self.lengths.iter().filter(|&&l| l > max_len).count()
    }

    /// (first length of the bin, count) with bins of `width` tokens.
    pub fn histogram(&self, width: usize) -> Vec<(usize, usize)> {
        let width = width.max(1);
        let mut bins: BTreeMap<usize, usize> = BTreeMap::new();
        for &l in &self.lengths {
            *bins.entry(l / width * width).or_default() += 1;
        }
        bins.into_iter().collect()
    }
}

/// Token length of one example as the trainer builds its input: `[CLS] text [SEP]`,
/// `[CLS] question [SEP] context [SEP]`, or prompt + completion (+ end-of-text).
pub fn example_length(tokenizer: &Tokenizer, example: &Example) -> Result<usize, String> {
    let count = |text: &str| {
        tokenizer
            .encode(text, false)
            .map(|e| e.ids.len())
            .map_err(|e| e.to_string())
    };
    Ok(match example {
        Example::Classification(e) => count(&e.text)? + 2,
        Example::Qa(e) => count(&e.question)? + count(&e.context)? + 3,
        Example::Generation(e) => {
            let eos = usize::from(tokenizer.eos_token().is_some());
            // Inputs are the sequence without its last token (each position predicts the next).
            (count(&e.prompt)? + count(&e.completion)? + eos).saturating_sub(1)
        }
    })
}

/// One validation example through the model before and after fine-tuning.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub input: String,
    pub expected: String,
    pub before: String,
    pub after: String,
}

/// What the model predicts for `example`.
pub fn predict(loaded: &LoadedModel, example: &Example) -> String {
    let result = match example {
        Example::Classification(e) => inspect(loaded, &e.text, None, 5).map(|i| i.predictions),
        Example::Qa(e) => inspect(loaded, &e.question, Some(&e.context), 5).map(|i| i.predictions),
        Example::Generation(e) => {
            let want = loaded
                .tokenizer()
                .and_then(|t| t.encode(&e.completion, false))
                .map_or(8, |enc| enc.ids.len() + 2);
            let greedy = crate::generate::SamplingSettings {
                temperature: 0.0,
                top_k: 0,
                top_p: 1.0,
            };
            return match crate::generate::generate(loaded, &e.prompt, want, &greedy, 0, |_| {}) {
                Ok(text) => text,
                Err(error) => format!("(error: {error})"),
            };
        }
    };
    match result {
        Ok(Predictions::Classification { labels }) => labels
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(name, p)| format!("{name} ({p:.2})"))
            .unwrap_or_default(),
        Ok(Predictions::Span { text, .. }) => text,
        Ok(other) => format!("(no prediction: {other:?})"),
        Err(error) => format!("(error: {error})"),
    }
}

/// Builds the untrained starting point of `config` (the checkpoint with its fresh head, seeded
/// exactly as the run was), writes it to `before_dir`, then runs both models on `examples`.
pub fn compare_before_after(
    config: &TrainConfig,
    before_dir: &Path,
    after_dir: &Path,
    examples: &[Example],
) -> Result<Vec<Comparison>, String> {
    let device = crate::device::parse_device(&config.device).map_err(|e| e.to_string())?;
    if !before_dir.join(CONFIG_FILE).is_file() {
        let mut recipe = config.clone();
        recipe.out_dir = None;
        let trainer = Trainer::new(recipe).map_err(|e| e.to_string())?;
        trainer.export(before_dir).map_err(|e| e.to_string())?;
    }
    let before = load_dir(before_dir, &device).map_err(|e| e.to_string())?;
    let after = load_dir(after_dir, &device).map_err(|e| e.to_string())?;
    Ok(examples
        .iter()
        .map(|example| Comparison {
            input: example.input(),
            expected: example.expected(),
            before: predict(&before, example),
            after: predict(&after, example),
        })
        .collect())
}

/// The first `n` examples of the validation split a run holds out (the split the trainer makes:
/// same data, fraction and seed).
pub fn validation_examples(examples: &[Example], config: &TrainConfig, n: usize) -> Vec<Example> {
    let fraction = config.data.val_fraction as f32;
    let (_, val) = crate::data::train_val_split(examples, fraction, config.seed);
    val.into_iter().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_data_and_file_errors() {
        let preview =
            read_examples(Objective::Classification, DataChoice::BuiltIn, 40, 3, "").expect("data");
        assert_eq!(preview.examples.len(), 40);
        assert!(preview.errors.is_empty());
        assert!(!preview.labels.is_empty());
        let dir =
            std::env::temp_dir().join(format!("glassbox-finetune-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("bad.csv");
        std::fs::write(
            &path,
            "text,label\ngood movie,positive\n\"unclosed,negative\n",
        )
        .expect("write");
        let preview = read_examples(
            Objective::Classification,
            DataChoice::File,
            0,
            0,
            &path.display().to_string(),
        )
        .expect("parsed");
        assert!(!preview.errors.is_empty());
        let empty = dir.join("empty.csv");
        std::fs::write(&empty, "").expect("write");
        assert!(
            read_examples(
                Objective::Classification,
                DataChoice::File,
                0,
                0,
                &empty.display().to_string()
            )
            .is_err()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn histogram_bins() {
        let stats = TokenStats {
            lengths: vec![1, 2, 5, 9, 10],
            tokenizer: String::new(),
            model_positions: 64,
        };
        assert_eq!(stats.histogram(5), vec![(0, 2), (5, 2), (10, 1)]);
        assert_eq!(stats.truncated(5), 2);
    }
}
