//! Where one thread beats several, and whether the window stays fed while training runs.
//!
//!     cargo bench --bench thread_choice                 # all three parts
//!     cargo bench --bench thread_choice -- --part forward|generate|train|ui
//!
//! 1. `forward`: one forward pass of GPTs from the tiny one to GPT-2-small size, on one thread and
//!    on every core, alternating, on an idle machine and then with every core kept busy by
//!    spinning threads (a laptop running other programs). The estimated work in FLOPs is printed
//!    beside each, which is what `kernels::threads_for_flops` chooses by.
//! 2. `generate`: 200 greedy tokens from the shipped tiny GPT with every core, one thread, and
//!    the size-based choice, idle and loaded.
//! 3. `train`: training steps of the shipped recipes on one thread and on every core.
//! 4. `ui`: a 60 Hz "frame" thread measures how late it wakes while a training run goes on at
//!    normal priority (`TrainingRun::start`) and at the app's lower priority
//!    (`TrainingRun::start_in_background`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use glassbox::kernels::{set_threads_override, threads_for_flops, with_threads};
use glassbox::model::checkpoint::load_dir;
use glassbox::model::config::ModelConfig;
use glassbox::model::params::forward_flops;
use glassbox::model::{Model, ModelInput, Prefix};
use glassbox::train::params::{ParamStore, Pretrained};
use glassbox::train::{TrainConfig, TrainEvent, TrainingRun};

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Threads spinning on every core until dropped: a machine busy with other programs.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 1u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            x = std::hint::black_box(
                                x.wrapping_mul(6364136223846793005).wrapping_add(1),
                            );
                        }
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn random_gpt(layers: usize, hidden: usize, vocab: usize) -> anyhow::Result<Model> {
    let value = serde_json::json!({
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": vocab,
        "n_positions": 1024, "n_embd": hidden, "n_layer": layers, "n_head": (hidden / 64).max(1),
        "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
    });
    let config =
        ModelConfig::from_hf_json(&value).map_err(|e| anyhow::anyhow!("bench config: {e:?}"))?;
    let store = ParamStore::new(1, Pretrained::default());
    Ok(Model::new(
        store.var_builder(&Device::Cpu),
        &config,
        Prefix::Standard,
    )?)
}

/// Median milliseconds of `f`, one thread and every core alternating, `reps` times each.
fn one_vs_all(reps: usize, f: &(dyn Fn() + Sync)) -> (f64, f64) {
    let (mut one, mut all) = (Vec::new(), Vec::new());
    f();
    for _ in 0..reps {
        let started = Instant::now();
        with_threads(1, f);
        one.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        f();
        all.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    (median(&mut one), median(&mut all))
}

fn forward_part() -> anyhow::Result<()> {
    println!("forward: one forward pass (batch 1), median ms, one thread vs every core");
    // (layers, width, vocab, tokens)
    let cases = [
        (2, 64, 509, 16),
        (2, 64, 509, 64),
        (4, 128, 65, 64),
        (4, 128, 2000, 128),
        (6, 256, 5000, 128),
        (6, 384, 5000, 256),
        (12, 768, 50257, 128),
    ];
    for loaded in [false, true] {
        println!(
            "  {}",
            if loaded {
                "loaded (every core busy with other work):"
            } else {
                "idle:"
            }
        );
        let _load = loaded.then(Load::start);
        for (layers, hidden, vocab, tokens) in cases {
            let model = random_gpt(layers, hidden, vocab)?;
            let ids: Vec<u32> = (0..tokens as u32).map(|i| i % vocab as u32).collect();
            let input_ids = Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
            let flops = forward_flops(hidden, layers, 4 * hidden, vocab, tokens);
            let reps = if flops > 1e10 {
                3
            } else if loaded {
                15
            } else {
                30
            };
            let run = || {
                let _ = model.forward(ModelInput::new(&input_ids), None);
            };
            let (one, all) = one_vs_all(reps, &run);
            println!(
                "    {layers:>2} layers x {hidden:<4} vocab {vocab:<6} {tokens:>4} tokens  {:>9.1} MFLOP   1 thread {one:>8.2} ms   all {all:>8.2} ms   ({}; chooses {})",
                flops / 1e6,
                if one < all { "one wins" } else { "all win" },
                threads_for_flops(flops),
            );
        }
    }
    Ok(())
}

fn generate_part(root: &Path) -> anyhow::Result<()> {
    let loaded = load_dir(&root.join("assets/tiny-gpt"), &Device::Cpu)?;
    let greedy = glassbox::generate::SamplingSettings {
        temperature: 0.0,
        ..Default::default()
    };
    let generate = || -> anyhow::Result<()> {
        glassbox::generate::generate(&loaded, "the cat", 200, &greedy, 0, |_| {})?;
        Ok(())
    };
    println!(
        "generate: up to 200 greedy tokens from assets/tiny-gpt (glassbox::generate), median of 5, seconds"
    );
    for loaded_machine in [false, true] {
        let _load = loaded_machine.then(Load::start);
        let mut line = String::new();
        for (label, threads) in [
            ("every core", Some(usize::MAX)),
            ("one thread", Some(1)),
            ("chosen by size", None),
        ] {
            set_threads_override(threads.map(|n| n.min(64)));
            let mut times = Vec::new();
            for _ in 0..5 {
                let started = Instant::now();
                generate()?;
                times.push(started.elapsed().as_secs_f64());
            }
            line += &format!("  {label} {:.3}s", median(&mut times));
        }
        set_threads_override(None);
        println!(
            "  {}:{line}",
            if loaded_machine { "loaded" } else { "idle" }
        );
    }
    Ok(())
}

fn train_part(root: &Path) -> anyhow::Result<()> {
    println!(
        "train: median ms/step over 20 steps (after 3), one thread vs every core, alternating 3 times"
    );
    let recipes = [
        (
            "tiny GPT (generation fine-tune)",
            "assets/tiny-gpt/recipe.toml",
        ),
        (
            "tiny translator (seq2seq)",
            "assets/tiny-translator/recipe.toml",
        ),
        (
            "tiny BERT (masked LM + NSP)",
            "assets/tiny-bert/recipe.toml",
        ),
    ];
    for (label, recipe) in recipes {
        let recipe = std::fs::read_to_string(root.join(recipe))?;
        let overrides = [
            "training.steps=23".to_string(),
            "training.eval_every=0".to_string(),
            "training.probe_every=0".to_string(),
            "training.save_every=0".to_string(),
        ];
        let mut config = TrainConfig::from_toml_str(&recipe, &overrides)?;
        config.out_dir = None;
        let (mut one, mut all) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            for (threads, into) in [(1, &mut one), (64, &mut all)] {
                set_threads_override(Some(threads));
                let mut trainer = glassbox::train::Trainer::new(config.clone())?;
                set_threads_override(None);
                let mut times = Vec::new();
                while !trainer.is_done() {
                    let report = trainer.step()?;
                    if report.step > 3 {
                        times.push(report.step_ms);
                    }
                }
                into.push(median(&mut times));
            }
        }
        let config = glassbox::train::Trainer::new(config.clone())?;
        let chosen = config.threads();
        println!(
            "  {label:<32} 1 thread {:>7.2} ms   all {:>7.2} ms   (chooses {chosen})",
            median(&mut one),
            median(&mut all)
        );
    }
    Ok(())
}

fn ui_part(root: &Path) -> anyhow::Result<()> {
    let recipe = std::fs::read_to_string(root.join("assets/tiny-bert/recipe.toml"))?;
    println!("ui: lateness of a 60 Hz frame thread over 4 s of training the tiny BERT (ms)");
    for background in [false, true] {
        let overrides = [
            "training.steps=100000".to_string(),
            "training.eval_every=0".to_string(),
            "training.probe_every=0".to_string(),
            "training.save_every=0".to_string(),
        ];
        let mut config = TrainConfig::from_toml_str(&recipe, &overrides)?;
        config.out_dir = None;
        let run = if background {
            TrainingRun::start_in_background(config)?
        } else {
            TrainingRun::start(config)?
        };
        // Wait for the first step, so the frames measure training, not setup.
        while !matches!(
            run.recv_timeout(Duration::from_secs(30)),
            Some(TrainEvent::Step(_)) | None
        ) {}
        let mut late = Vec::new();
        let started = Instant::now();
        let mut next = Instant::now() + Duration::from_millis(16);
        while started.elapsed() < Duration::from_secs(4) {
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            late.push(Instant::now().saturating_duration_since(next).as_secs_f64() * 1000.0);
            // A frame's own work: about 2 ms of drawing.
            let busy = Instant::now();
            while busy.elapsed() < Duration::from_millis(2) {
                std::hint::black_box(0);
            }
            next += Duration::from_millis(16);
            while let Some(_event) = run.try_recv() {}
        }
        run.stop();
        let _ = run.join();
        let count = late.len();
        late.sort_by(f64::total_cmp);
        let at = |q: f64| late[((count as f64 - 1.0) * q) as usize];
        println!(
            "  training at {} priority: frames late by median {:.2}, p95 {:.2}, max {:.2} ({count} frames)",
            if background {
                "lower (the app's)"
            } else {
                "normal"
            },
            at(0.5),
            at(0.95),
            at(1.0),
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    glassbox::kernels::tune_allocator();
    let args: Vec<String> = std::env::args().collect();
    let part = args
        .iter()
        .position(|a| a == "--part")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let wants = |name: &str| part.as_deref().is_none_or(|p| p == name);
    if wants("forward") {
        forward_part()?;
    }
    if wants("generate") {
        generate_part(root)?;
    }
    if wants("train") {
        train_part(root)?;
    }
    if wants("ui") {
        ui_part(root)?;
    }
    Ok(())
}
