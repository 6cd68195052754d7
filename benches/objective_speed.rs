//! Training speed of every objective, Glassbox and PyTorch (`transformers`) side by side in one
//! run, on the same model, batch and sequence length.
//!
//!     cargo bench --bench objective_speed                          # 3 rounds, 30 steps each
//!     cargo bench --bench objective_speed -- --rounds 5 --steps 40
//!     cargo bench --bench objective_speed -- --only masked-lm      # one objective
//!     cargo bench --bench objective_speed -- --no-torch            # Glassbox only
//!
//! Each objective trains the configuration the app and the course use (the shipped recipes; the
//! fine-tuning objectives start from the shipped tiny BERT and tiny GPT). Glassbox exports its
//! model before the first step, so `scripts/bench_objectives.py` loads the very same weights into
//! `BertForPreTraining`, `BertForSequenceClassification`, `BertForQuestionAnswering`,
//! `GPT2LMHeadModel` or `MarianMTModel` and trains on random batches of the padded shape Glassbox's
//! steps ran on (eager float32, dropout 0 as in Glassbox, AdamW, clipping 1.0). ms/step leaves out
//! drawing the batch on both sides. Rounds alternate the two sides; the summary gives the median
//! of the rounds' medians and the median of their ratios. Needs `torch` and `transformers` from
//! PyPI for the PyTorch side (skipped with a note when missing).

use std::path::{Path, PathBuf};
use std::process::Command;

use glassbox::train::{TrainConfig, Trainer};

struct Options {
    steps: usize,
    rounds: usize,
    torch: bool,
    only: Option<String>,
}

fn parse_options() -> Options {
    let mut options = Options {
        steps: 30,
        rounds: 3,
        torch: true,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--steps" => options.steps = args.next().and_then(|v| v.parse().ok()).unwrap_or(30),
            "--rounds" => {
                options.rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(3).max(1)
            }
            "--no-torch" => options.torch = false,
            "--only" => options.only = args.next(),
            // `cargo bench` passes --bench; anything else unknown is ignored too.
            _ => {}
        }
    }
    options
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One objective's benchmark configuration: a recipe, as the app or the course trains it.
struct Case {
    objective: &'static str,
    recipe: String,
}

fn cases(root: &Path) -> Vec<Case> {
    let asset = |name: &str| root.join("assets").join(name).display().to_string();
    let finetune = |objective: &str, from: &str| -> String {
        format!(
            r#"
objective = "{objective}"
seed = 3
[data]
builtin_size = 600
[model]
init_from = "{from}"
[optimizer]
lr = 1e-3
warmup_steps = 10
weight_decay = 0.01
[training]
batch_size = 32
seq_len = 64
"#
        )
    };
    vec![
        Case {
            objective: "masked-lm",
            recipe: std::fs::read_to_string(root.join("assets/tiny-bert/recipe.toml"))
                .unwrap_or_default(),
        },
        Case {
            objective: "classification",
            recipe: finetune("classification", &asset("tiny-bert")),
        },
        Case {
            objective: "qa",
            recipe: finetune("qa", &asset("tiny-bert")),
        },
        Case {
            objective: "generation",
            recipe: finetune("generation", &asset("tiny-gpt")),
        },
        Case {
            objective: "seq2seq",
            recipe: std::fs::read_to_string(root.join("assets/tiny-translator/recipe.toml"))
                .unwrap_or_default(),
        },
    ]
}

/// What one side measured.
struct Measured {
    median_ms: f64,
    first_loss: f64,
    mean_loss: f64,
}

/// The padded shapes Glassbox's steps ran on, for PyTorch to get the same work.
struct Shape {
    batch: usize,
    seq: usize,
    target_len: usize,
}

fn run_glassbox(
    case: &Case,
    steps: usize,
    export_to: &Path,
) -> anyhow::Result<(Measured, Shape, TrainConfig)> {
    let overrides = vec![
        format!("training.steps={steps}"),
        "training.eval_every=0".to_string(),
        "training.probe_every=0".to_string(),
        "training.save_every=0".to_string(),
    ];
    let mut config = TrainConfig::from_toml_str(&case.recipe, &overrides)?;
    config.out_dir = None;
    let mut trainer = Trainer::new(config.clone())?;
    // The starting weights, for the PyTorch side.
    trainer.export(export_to)?;
    let (mut step_ms, mut losses, mut seqs, mut targets) = (vec![], vec![], vec![], vec![]);
    let mut batch = 0;
    while !trainer.is_done() {
        let report = trainer.step()?;
        losses.push(report.train_loss as f64);
        batch = report.shape.inputs.0;
        seqs.push(report.shape.inputs.1 as f64);
        targets.push(report.shape.decoder_inputs.map_or(0, |(_, t)| t) as f64);
        // The first steps warm caches and allocators; leave them out of the timing.
        if report.step > 5 || steps <= 10 {
            step_ms.push(report.step_ms - report.timings.data_ms);
        }
    }
    let measured = Measured {
        median_ms: median(&step_ms),
        first_loss: losses.first().copied().unwrap_or(f64::NAN),
        mean_loss: losses.iter().sum::<f64>() / losses.len().max(1) as f64,
    };
    let shape = Shape {
        batch,
        seq: median(&seqs).round() as usize,
        target_len: median(&targets).round() as usize,
    };
    Ok((measured, shape, config))
}

/// Runs the PyTorch side; `None` (with the reason printed) when it cannot run.
fn run_pytorch(
    root: &Path,
    case: &Case,
    model: &Path,
    shape: &Shape,
    config: &TrainConfig,
    steps: usize,
) -> anyhow::Result<Option<Measured>> {
    let output = Command::new("python3")
        .arg(root.join("scripts/bench_objectives.py"))
        .args(["--objective", case.objective, "--model"])
        .arg(model)
        .args(["--batch", &shape.batch.to_string()])
        .args(["--seq", &shape.seq.to_string()])
        .args(["--target-len", &shape.target_len.to_string()])
        .args(["--steps", &steps.to_string()])
        .args(["--lr", &config.optimizer.lr.to_string()])
        .args(["--weight-decay", &config.optimizer.weight_decay.to_string()])
        .output();
    let output = match output {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            let stderr = String::from_utf8_lossy(&o.stderr);
            if stderr.contains("No module named") {
                println!("  pytorch: skipped (torch or transformers is not importable)");
            } else {
                println!("  pytorch: the reference script failed:\n{stderr}");
            }
            return Ok(None);
        }
        Err(e) => {
            println!("  pytorch: skipped (cannot run python3: {e})");
            return Ok(None);
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout.lines().rev().find(|l| l.starts_with('{')) else {
        println!("  pytorch: no result line in the script's output:\n{stdout}");
        return Ok(None);
    };
    let reference: serde_json::Value = serde_json::from_str(line)?;
    let number = |key: &str| reference[key].as_f64().unwrap_or(f64::NAN);
    Ok(Some(Measured {
        median_ms: number("median_ms_per_step"),
        first_loss: number("first_loss"),
        mean_loss: number("mean_loss"),
    }))
}

fn main() -> anyhow::Result<()> {
    glassbox::kernels::tune_allocator();
    let options = parse_options();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch: PathBuf =
        std::env::temp_dir().join(format!("glassbox-objective-speed-{}", std::process::id()));
    let cases: Vec<Case> = cases(root)
        .into_iter()
        .filter(|c| options.only.as_deref().is_none_or(|o| o == c.objective))
        .collect();
    println!(
        "objective_speed: {} steps per side, {} alternating round(s); ms/step is the median after 5 warm-up steps, batch drawing excluded",
        options.steps, options.rounds
    );
    // objective → (glassbox medians, pytorch medians, ratios)
    let mut results: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = vec![Default::default(); cases.len()];
    let mut torch = options.torch;
    for round in 1..=options.rounds {
        println!("round {round}:");
        for (case, result) in cases.iter().zip(results.iter_mut()) {
            let model_dir = scratch.join(case.objective);
            let (ours, shape, config) = run_glassbox(case, options.steps, &model_dir)?;
            result.0.push(ours.median_ms);
            let shape_text = match shape.target_len {
                0 => format!("batch {} x {}", shape.batch, shape.seq),
                t => format!("batch {} x {} -> {t}", shape.batch, shape.seq),
            };
            print!(
                "  {:<15} {shape_text:<20} glassbox {:>7.1} ms/step (loss {:.4} first, {:.4} mean)",
                case.objective, ours.median_ms, ours.first_loss, ours.mean_loss
            );
            if !torch {
                println!();
                continue;
            }
            println!();
            match run_pytorch(root, case, &model_dir, &shape, &config, options.steps)? {
                Some(theirs) => {
                    let ratio = theirs.median_ms / ours.median_ms;
                    result.1.push(theirs.median_ms);
                    result.2.push(ratio);
                    println!(
                        "  {:<15} {:<20} pytorch  {:>7.1} ms/step (loss {:.4} first, {:.4} mean)  -> glassbox {ratio:.2}x as fast",
                        "", "", theirs.median_ms, theirs.first_loss, theirs.mean_loss
                    );
                }
                None => torch = false,
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    println!("\nsummary (median of {} rounds):", options.rounds);
    println!(
        "  {:<15} {:>12} {:>12} {:>10}",
        "objective", "glassbox ms", "pytorch ms", "speed-up"
    );
    for (case, (ours, theirs, ratios)) in cases.iter().zip(&results) {
        if theirs.is_empty() {
            println!(
                "  {:<15} {:>12.1} {:>12} {:>10}",
                case.objective,
                median(ours),
                "-",
                "-"
            );
        } else {
            println!(
                "  {:<15} {:>12.1} {:>12.1} {:>9.2}x  (rounds {:.2}-{:.2})",
                case.objective,
                median(ours),
                median(theirs),
                median(ratios),
                ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            );
        }
    }
    Ok(())
}
