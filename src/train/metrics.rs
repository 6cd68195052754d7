//! Evaluation metrics: accuracy, macro F1 and a confusion matrix (classification), exact match and
//! token F1 (extractive QA, SQuAD rules), perplexity (language models); and the run's metric log
//! files, `metrics.jsonl` and `metrics.csv`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{GlassboxError, Result};

/// Counts of (true label, predicted label), for the UI's confusion-matrix heatmap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    pub labels: Vec<String>,
    /// `counts[true][predicted]`.
    pub counts: Vec<Vec<u32>>,
}

impl ConfusionMatrix {
    pub fn new(labels: Vec<String>, truth: &[usize], predicted: &[usize]) -> Self {
        let n = labels.len();
        let mut counts = vec![vec![0u32; n]; n];
        for (&t, &p) in truth.iter().zip(predicted) {
            if t < n && p < n {
                counts[t][p] += 1;
            }
        }
        Self { labels, counts }
    }

    pub fn total(&self) -> u32 {
        self.counts.iter().flatten().sum()
    }

    /// Fraction of examples on the diagonal.
    pub fn accuracy(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let correct: u32 = (0..self.labels.len()).map(|i| self.counts[i][i]).sum();
        f64::from(correct) / f64::from(total)
    }

    /// F1 of one class: harmonic mean of its precision and recall (0 when undefined).
    pub fn f1(&self, class: usize) -> f64 {
        let true_positive = f64::from(self.counts[class][class]);
        let predicted: u32 = self.counts.iter().map(|row| row[class]).sum();
        let actual: u32 = self.counts[class].iter().sum();
        let denominator = f64::from(predicted) + f64::from(actual);
        if denominator == 0.0 {
            0.0
        } else {
            2.0 * true_positive / denominator
        }
    }

    /// Mean F1 over the classes that occur as a truth or as a prediction (scikit-learn's
    /// `f1_score(average="macro")` over the labels present).
    pub fn macro_f1(&self) -> f64 {
        let present: Vec<usize> = (0..self.labels.len())
            .filter(|&c| {
                self.counts[c].iter().sum::<u32>() > 0 || self.counts.iter().any(|row| row[c] > 0)
            })
            .collect();
        if present.is_empty() {
            return 0.0;
        }
        present.iter().map(|&c| self.f1(c)).sum::<f64>() / present.len() as f64
    }
}

/// SQuAD's answer normalisation: lowercase, drop punctuation and the articles a/an/the, collapse
/// whitespace.
pub fn normalize_answer(text: &str) -> String {
    let lower = text.to_lowercase();
    let no_punctuation: String = lower
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    no_punctuation
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// 1 when the normalised answers are equal, else 0.
pub fn exact_match(prediction: &str, truth: &str) -> f64 {
    if normalize_answer(prediction) == normalize_answer(truth) {
        1.0
    } else {
        0.0
    }
}

/// Overlap of the normalised answers' words: harmonic mean of precision and recall.
pub fn token_f1(prediction: &str, truth: &str) -> f64 {
    let predicted = normalize_answer(prediction);
    let expected = normalize_answer(truth);
    let predicted: Vec<&str> = predicted.split_whitespace().collect();
    let expected: Vec<&str> = expected.split_whitespace().collect();
    if predicted.is_empty() || expected.is_empty() {
        // Both empty is a match; one empty is not.
        return if predicted == expected { 1.0 } else { 0.0 };
    }
    let mut expected_counts: HashMap<&str, usize> = HashMap::new();
    for w in &expected {
        *expected_counts.entry(w).or_default() += 1;
    }
    let mut common = 0usize;
    for w in &predicted {
        if let Some(count) = expected_counts.get_mut(w)
            && *count > 0
        {
            *count -= 1;
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / predicted.len() as f64;
    let recall = common as f64 / expected.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// `exp(loss)`, capped so a diverged model reports a large number rather than infinity.
pub fn perplexity(mean_loss: f64) -> f64 {
    mean_loss.min(50.0).exp()
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MetricsRecord {
    Step {
        step: usize,
        train_loss: f32,
        lr: f64,
        grad_norm: f32,
        tokens_per_sec: f64,
        elapsed_secs: f64,
    },
    Eval {
        step: usize,
        val_loss: f32,
        metrics: BTreeMap<String, f64>,
        elapsed_secs: f64,
    },
}

impl MetricsRecord {
    pub fn step(&self) -> usize {
        match self {
            MetricsRecord::Step { step, .. } | MetricsRecord::Eval { step, .. } => *step,
        }
    }
}

/// Appends records to `metrics.jsonl` and `metrics.csv` in a run folder. The CSV has one row per
/// record with fixed columns, eval metrics last (empty where a row does not have them).
#[derive(Debug)]
pub struct MetricsLog {
    jsonl_path: PathBuf,
    csv_path: PathBuf,
    metric_names: Vec<String>,
}

pub const METRICS_JSONL: &str = "metrics.jsonl";
pub const METRICS_CSV: &str = "metrics.csv";

impl MetricsLog {
    /// Opens the log in `dir`. With `keep_through_step`, existing records up to that step are kept
    /// and later ones dropped (a resumed run continues the curve where its checkpoint was);
    /// without it the files start empty.
    pub fn open(
        dir: &Path,
        metric_names: &[&str],
        keep_through_step: Option<usize>,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| GlassboxError::io(dir, e))?;
        let log = Self {
            jsonl_path: dir.join(METRICS_JSONL),
            csv_path: dir.join(METRICS_CSV),
            metric_names: metric_names.iter().map(|s| s.to_string()).collect(),
        };
        let kept: Vec<MetricsRecord> = match keep_through_step {
            Some(last) => read_metrics(&log.jsonl_path)
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.step() <= last)
                .collect(),
            None => Vec::new(),
        };
        let mut jsonl = String::new();
        let mut csv = log.csv_header();
        for record in &kept {
            jsonl.push_str(&log.jsonl_line(record)?);
            csv.push_str(&log.csv_row(record));
        }
        crate::util::write_atomic(&log.jsonl_path, jsonl.as_bytes())?;
        crate::util::write_atomic(&log.csv_path, csv.as_bytes())?;
        Ok(log)
    }

    fn csv_header(&self) -> String {
        let mut columns = vec![
            "step",
            "kind",
            "train_loss",
            "lr",
            "grad_norm",
            "tokens_per_sec",
            "elapsed_secs",
            "val_loss",
        ];
        columns.extend(self.metric_names.iter().map(String::as_str));
        columns.join(",") + "\n"
    }

    fn jsonl_line(&self, record: &MetricsRecord) -> Result<String> {
        let line = serde_json::to_string(record)
            .map_err(|e| GlassboxError::InvalidInput(format!("cannot encode a metric: {e}")))?;
        Ok(line + "\n")
    }

    fn csv_row(&self, record: &MetricsRecord) -> String {
        let mut cells: Vec<String> = match record {
            MetricsRecord::Step {
                step,
                train_loss,
                lr,
                grad_norm,
                tokens_per_sec,
                elapsed_secs,
            } => vec![
                step.to_string(),
                "step".into(),
                train_loss.to_string(),
                format!("{lr:e}"),
                grad_norm.to_string(),
                format!("{tokens_per_sec:.1}"),
                format!("{elapsed_secs:.3}"),
                String::new(),
            ],
            MetricsRecord::Eval {
                step,
                val_loss,
                elapsed_secs,
                ..
            } => vec![
                step.to_string(),
                "eval".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                format!("{elapsed_secs:.3}"),
                val_loss.to_string(),
            ],
        };
        for name in &self.metric_names {
            cells.push(match record {
                MetricsRecord::Eval { metrics, .. } => {
                    metrics.get(name).map(|v| v.to_string()).unwrap_or_default()
                }
                MetricsRecord::Step { .. } => String::new(),
            });
        }
        cells.join(",") + "\n"
    }

    /// Appends one record to both files.
    pub fn append(&mut self, record: &MetricsRecord) -> Result<()> {
        append_to(&self.jsonl_path, &self.jsonl_line(record)?)?;
        append_to(&self.csv_path, &self.csv_row(record))
    }
}

fn append_to(path: &Path, text: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| GlassboxError::io(path, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| GlassboxError::io(path, e))
}

/// Reads a `metrics.jsonl` back (skipping lines it cannot parse, e.g. one cut by a crash).
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRecord>> {
    let text = crate::util::read_text(path)?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_accuracy_and_macro_f1() {
        let labels = vec!["neg".to_string(), "pos".to_string()];
        // truth: neg neg pos pos; predicted: neg pos pos pos
        let m = ConfusionMatrix::new(labels, &[0, 0, 1, 1], &[0, 1, 1, 1]);
        assert_eq!(m.counts, vec![vec![1, 1], vec![0, 2]]);
        assert!((m.accuracy() - 0.75).abs() < 1e-12);
        // neg: P=1, R=0.5 → F1=2/3; pos: P=2/3, R=1 → F1=0.8
        assert!((m.macro_f1() - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn squad_rules() {
        assert_eq!(normalize_answer("The  Red, mat!"), "red mat");
        assert_eq!(exact_match("the red mat", "Red mat."), 1.0);
        assert_eq!(exact_match("mat", "red mat"), 0.0);
        assert!((token_f1("on the mat", "on the red mat") - 0.8).abs() < 1e-12);
        assert_eq!(token_f1("dog", "cat"), 0.0);
    }
}
