//! Training: every objective learns on built-in data, runs resume exactly, divergence is caught,
//! pause really pauses, and the checkpoints load again.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use glassbox::model::checkpoint::load_dir;
use glassbox::train::{TrainCommand, TrainConfig, TrainEvent, Trainer, TrainingRun};

/// A tiny char-level GPT on the toy corpus: fast enough for a test, big enough to learn.
fn tiny_gpt_recipe(extra: &str) -> String {
    format!(
        r#"
objective = "causal-lm"
seed = 7
[data]
builtin_size = 600
[model]
n_layer = 1
n_head = 2
n_embd = 32
n_positions = 32
[optimizer]
lr = 3e-3
warmup_steps = 10
[training]
batch_size = 8
eval_every = 0
eval_batches = 4
{extra}
"#
    )
}

fn config(recipe: &str, overrides: &[&str]) -> TrainConfig {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    TrainConfig::from_toml_str(recipe, &overrides).expect("valid recipe")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Runs `steps` steps and returns (validation loss before, validation loss after, train losses).
fn train_and_evaluate(config: TrainConfig) -> (f32, f32, Vec<f32>, Trainer) {
    let mut trainer = Trainer::new(config).expect("trainer");
    let before = trainer.evaluate().expect("eval").val_loss;
    let mut losses = Vec::new();
    while !trainer.is_done() {
        losses.push(trainer.step().expect("step").train_loss);
    }
    let after = trainer.evaluate().expect("eval").val_loss;
    (before, after, losses, trainer)
}

#[test]
fn causal_lm_learns_the_toy_corpus() {
    let (before, after, losses, mut trainer) =
        train_and_evaluate(config(&tiny_gpt_recipe(""), &["training.steps=150"]));
    assert!(losses.iter().all(|l| l.is_finite()));
    eprintln!("causal LM: val {before:.3} → {after:.3}");
    assert!(before > 3.0, "an untrained char model is near ln(vocab): {before}");
    assert!(after < before - 1.0, "val loss {before} → {after}");
    let probe = trainer.probe().expect("probe");
    assert_eq!(probe.attention.len(), 1, "one layer");
    assert_eq!(probe.attention[0].len(), 2, "two heads");
    let s = probe.tokens.len();
    assert_eq!(probe.attention[0][0].len(), s * s);
    let _ = trainer.evaluate();
}
