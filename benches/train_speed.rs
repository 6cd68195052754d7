//! Training throughput: nanoGPT's character-level CPU configuration, Glassbox and PyTorch side by
//! side in one run.
//!
//!     cargo bench --bench train_speed                      # 200 steps each
//!     cargo bench --bench train_speed -- --steps 2000      # the full schedule, with val loss
//!     cargo bench --bench train_speed -- --no-torch        # Glassbox only
//!     cargo bench --bench train_speed -- --rounds 3        # alternate both sides 3 times
//!
//! The model: 4 layers, 4 heads, width 128, context 64, batch 12, no biases, dropout 0, AdamW
//! lr 1e-3 (100 warm-up steps, cosine to 1e-4 over 2000 steps), beta2 0.99, weight decay 0.1,
//! clipping 1.0 — `assets/recipes/shakespeare-char.toml`. Data: `../shared/data/tinyshakespeare.txt`
//! when it exists, else the built-in toy-English corpus. The PyTorch side is
//! `scripts/bench_reference.py` (needs `torch` from PyPI; skipped with a note when missing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use glassbox::train::{StepTimings, TrainConfig, Trainer};

struct Options {
    steps: usize,
    eval_batches: usize,
    torch: bool,
    data: Option<PathBuf>,
    /// Another recipe to time instead (Glassbox only).
    recipe: Option<PathBuf>,
    /// Glassbox-then-PyTorch rounds.
    rounds: usize,
}

fn parse_options() -> Options {
    let mut options = Options {
        steps: 200,
        eval_batches: 50,
        torch: true,
        data: None,
        recipe: None,
        rounds: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--steps" => options.steps = args.next().and_then(|v| v.parse().ok()).unwrap_or(200),
            "--eval-batches" => {
                options.eval_batches = args.next().and_then(|v| v.parse().ok()).unwrap_or(50)
            }
            "--no-torch" => options.torch = false,
            "--rounds" => {
                options.rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
            }
            "--data" => options.data = args.next().map(PathBuf::from),
            "--recipe" => options.recipe = args.next().map(PathBuf::from),
            // `cargo bench` passes --bench; anything else unknown is ignored too.
            _ => {}
        }
    }
    options
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> anyhow::Result<()> {
    let options = parse_options();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let recipe = options
        .recipe
        .clone()
        .unwrap_or_else(|| root.join("assets/recipes/shakespeare-char.toml"));
    let shakespeare = options
        .data
        .clone()
        .unwrap_or_else(|| root.join("../shared/data/tinyshakespeare.txt"));
    let mut overrides = vec![
        format!("training.steps={}", options.steps),
        "training.eval_every=0".to_string(),
        "training.probe_every=0".to_string(),
        "training.save_every=0".to_string(),
        format!("training.eval_batches={}", options.eval_batches),
    ];
    let data_note = if options.recipe.is_some() {
        "the recipe's".to_string()
    } else if shakespeare.is_file() {
        overrides.push(format!("data.path=\"{}\"", shakespeare.display()));
        shakespeare.display().to_string()
    } else {
        "built-in toy-English corpus (tinyshakespeare.txt not found)".to_string()
    };
    let mut config = TrainConfig::parse_file(&recipe, &overrides)?;
    config.out_dir = None;
    if options.recipe.is_none() && !shakespeare.is_file() {
        config.data.path = None;
        config.data.builtin_size = 40_000;
    }
    config.validate()?;

    println!(
        "train_speed: nanoGPT char-level CPU config, {} steps, {} round(s)",
        options.steps, options.rounds
    );
    println!("data: {data_note}");
    let torch = options.torch && options.recipe.is_none();
    if torch && !shakespeare.is_file() {
        println!("pytorch: skipped (the reference script needs tinyshakespeare.txt)");
    }
    // Rounds alternate the two sides, so a change in the machine's speed (this VM's moves by
    // ±20% over minutes) hits both; the ratio is taken within each round.
    let mut ratios = Vec::new();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 1..=options.rounds {
        if options.rounds > 1 {
            println!("round {round}:");
        }
        let glassbox = run_glassbox(&config, options.steps)?;
        ours.push(glassbox.median_ms);
        if !torch || !shakespeare.is_file() {
            continue;
        }
        let Some(torch_median) = run_pytorch(root, &shakespeare, &options)? else {
            break;
        };
        theirs.push(torch_median);
        ratios.push(glassbox.median_ms / torch_median);
        println!(
            "ratio glassbox/pytorch: {:.2}x (medians)  [< 1 means Glassbox is faster]",
            glassbox.median_ms / torch_median
        );
    }
    if options.rounds > 1 {
        println!(
            "summary over {} rounds: glassbox {:.1} ms/step, pytorch {:.1} ms/step (medians of the rounds' medians), ratio {:.2}x (median of the rounds' ratios; range {:.2}-{:.2})",
            options.rounds,
            median(&mut ours),
            median(&mut theirs),
            median(&mut ratios.clone()),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        );
    }
    Ok(())
}

struct GlassboxRun {
    median_ms: f64,
}

/// Trains `steps` steps from scratch and prints ms/step, tokens/s, the losses and the phases.
fn run_glassbox(config: &TrainConfig, steps: usize) -> anyhow::Result<GlassboxRun> {
    let setup = Instant::now();
    let mut trainer = Trainer::new(config.clone())?;
    println!(
        "glassbox: {:.2}M parameters, {} tokens/step, setup {:.1}s",
        trainer.info().parameters as f64 / 1e6,
        trainer.info().tokens_per_step,
        setup.elapsed().as_secs_f64()
    );

    let mut step_ms = Vec::with_capacity(steps);
    let mut phases = StepTimings::default();
    let mut last_loss = f32::NAN;
    while !trainer.is_done() {
        let report = trainer.step()?;
        last_loss = report.train_loss;
        // The first steps warm caches and allocators; leave them out of the timing.
        if report.step > 5 || steps <= 10 {
            step_ms.push(report.step_ms);
            phases.data_ms += report.timings.data_ms;
            phases.forward_ms += report.timings.forward_ms;
            phases.backward_ms += report.timings.backward_ms;
            phases.optimizer_ms += report.timings.optimizer_ms;
        }
        if report.step % 100 == 0 {
            eprintln!(
                "  step {:>5}: loss {:.4}, {:.1} ms/step",
                report.step, report.train_loss, report.step_ms
            );
        }
    }
    let timed = step_ms.len().max(1) as f64;
    let mean_ms = step_ms.iter().sum::<f64>() / timed;
    let median_ms = median(&mut step_ms);
    let val = trainer.evaluate()?;
    let tokens_per_step = trainer.info().tokens_per_step as f64;
    println!(
        "glassbox: {mean_ms:.1} ms/step (median {median_ms:.1}), {:.0} tokens/s, train loss {last_loss:.4}, val loss {:.4} after {} steps",
        tokens_per_step / (mean_ms / 1000.0),
        val.val_loss,
        trainer.step_count()
    );
    println!(
        "glassbox phases (mean ms/step): data {:.2}, forward {:.1}, backward {:.1}, optimizer {:.1}",
        phases.data_ms / timed,
        phases.forward_ms / timed,
        phases.backward_ms / timed,
        phases.optimizer_ms / timed
    );
    Ok(GlassboxRun { median_ms })
}

/// Runs the PyTorch reference and prints its figures; its median ms/step, or `None` (with the
/// reason printed) when it cannot run.
fn run_pytorch(root: &Path, data: &Path, options: &Options) -> anyhow::Result<Option<f64>> {
    let output = Command::new("python3")
        .arg(root.join("scripts/bench_reference.py"))
        .arg("--data")
        .arg(data)
        .arg("--steps")
        .arg(options.steps.to_string())
        .arg("--eval-batches")
        .arg(options.eval_batches.to_string())
        .output();
    let output = match output {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            let stderr = String::from_utf8_lossy(&o.stderr);
            if stderr.contains("No module named 'torch'") {
                println!("pytorch: skipped (torch is not importable: `pip install torch`)");
            } else {
                println!("pytorch: the reference script failed:\n{stderr}");
            }
            return Ok(None);
        }
        Err(e) => {
            println!("pytorch: skipped (cannot run python3: {e})");
            return Ok(None);
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
    else {
        println!("pytorch: no result line in the script's output:\n{stdout}");
        return Ok(None);
    };
    let reference: serde_json::Value = serde_json::from_str(line)?;
    let torch_ms = reference["ms_per_step"].as_f64().unwrap_or(f64::NAN);
    let torch_median = reference["median_ms_per_step"].as_f64().unwrap_or(f64::NAN);
    println!(
        "pytorch {}: {torch_ms:.1} ms/step (median {torch_median:.1}), {:.0} tokens/s, val loss {:.4} ({} threads)",
        reference["torch"].as_str().unwrap_or("?"),
        reference["tokens_per_sec"].as_f64().unwrap_or(f64::NAN),
        reference["val_loss"].as_f64().unwrap_or(f64::NAN),
        reference["threads"]
    );
    Ok(Some(torch_median))
}
