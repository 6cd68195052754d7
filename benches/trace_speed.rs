//! Real-size checkpoints: loading and the traced forward pass (every intermediate tensor
//! recorded, as `glassbox inspect` and the app's views use it) for a GPT-2-small-size and a
//! BERT-base-size model at 128, 512 and 1,024 tokens, Glassbox and `transformers` side by side
//! (eager float32, `output_attentions` and `output_hidden_states`), with peak memory.
//!
//!     cargo bench --bench trace_speed                         # both models, 3 lengths, 3 rounds
//!     cargo bench --bench trace_speed -- --lengths 128,512 --rounds 2
//!     cargo bench --bench trace_speed -- --only gpt2-small --no-torch
//!
//! The two checkpoints are made once, with random weights, in `target/bench-models/` (about 1 GB;
//! the sizes and names are those of the Hub's `gpt2` and `bert-base-uncased`, except that the
//! BERT-size model gets 1,024 positions, where the real one stops at 512). Each measurement runs
//! in a fresh process so that its peak memory (the kernel's `VmHWM`, which counts every page the
//! process touched) is its own: load, then three traced forwards on the same ids, each trace
//! dropped before the next. Reported: load seconds and peak, the median forward, the peak with
//! the trace alive, and the bytes the trace holds. The PyTorch side is
//! `scripts/bench_trace.py` (needs `torch` and `transformers`; skipped with a note when missing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::{Device, Tensor};
use glassbox::model::checkpoint::{load_dir, save_dir};
use glassbox::model::config::ModelConfig;
use glassbox::model::trace::{LayerField, Trace};
use glassbox::model::{Model, ModelInput, Prefix};
use glassbox::train::params::{ParamStore, Pretrained};

const MODELS: [(&str, &str); 2] = [
    (
        "gpt2-small",
        r#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 50257,
            "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,
            "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
            "tie_word_embeddings": true, "bos_token_id": 50256, "eos_token_id": 50256}"#,
    ),
    (
        "bert-base",
        r#"{"model_type": "bert", "architectures": ["BertForMaskedLM"], "vocab_size": 30522,
            "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
            "intermediate_size": 3072, "hidden_act": "gelu", "max_position_embeddings": 1024,
            "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
            "tie_word_embeddings": true}"#,
    ),
];

struct Options {
    lengths: Vec<usize>,
    rounds: usize,
    torch: bool,
    only: Option<String>,
}

fn parse_options() -> Options {
    let mut options = Options {
        lengths: vec![128, 512, 1024],
        rounds: 3,
        torch: true,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--lengths" => {
                if let Some(list) = args.next() {
                    options.lengths = list.split(',').filter_map(|n| n.parse().ok()).collect();
                }
            }
            "--rounds" => {
                options.rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(3).max(1)
            }
            "--no-torch" => options.torch = false,
            "--only" => options.only = args.next(),
            _ => {}
        }
    }
    options
}

/// This process's current and peak resident memory in MiB (Linux; zeros elsewhere).
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Makes a random-weight checkpoint of `config_json`'s size in `dir`, once.
fn ensure_checkpoint(dir: &Path, config_json: &str) -> anyhow::Result<()> {
    if dir.join("model.safetensors").is_file() && dir.join("config.json").is_file() {
        return Ok(());
    }
    let value: serde_json::Value = serde_json::from_str(config_json)?;
    let config =
        ModelConfig::from_hf_json(&value).map_err(|e| anyhow::anyhow!("bench config: {e:?}"))?;
    let store = ParamStore::new(7, Pretrained::default());
    Model::new(store.var_builder(&Device::Cpu), &config, Prefix::Standard)?;
    save_dir(dir, &config, &store.tensors()?, None)?;
    Ok(())
}

/// Bytes of every tensor a trace holds, each storage counted once.
fn trace_bytes(trace: &Trace) -> usize {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut add = |t: &Option<Tensor>| {
        if let Some(t) = t {
            let (storage, _) = t.storage_and_layout();
            let key = &*storage as *const _ as usize;
            if seen.insert(key) {
                total += t.elem_count() * t.dtype().size_in_bytes();
            }
        }
    };
    for t in [
        &trace.token_embeddings,
        &trace.position_embeddings,
        &trace.segment_embeddings,
        &trace.embedding_sum,
        &trace.final_norm,
        &trace.logits,
    ] {
        add(t);
    }
    for t in &trace.hidden_states {
        add(&Some(t.clone()));
    }
    for layer in &trace.layers {
        for field in LayerField::ALL {
            // The stored fields only: the scores are computed on demand, not kept.
            if !field.is_recomputed() {
                add(&field.of(layer).ok().flatten());
            }
        }
    }
    total
}

/// The measuring child: load `dir`, run the traced forward on `tokens` ids, print one JSON line.
fn child(dir: &Path, tokens: usize) -> anyhow::Result<()> {
    glassbox::kernels::tune_allocator();
    let (base_rss, _) = memory_mib();
    let started = Instant::now();
    let loaded = load_dir(dir, &Device::Cpu)?;
    let load_s = started.elapsed().as_secs_f64();
    let (after_load_rss, load_peak) = memory_mib();
    let vocab = loaded.config.vocab_size() as u32;
    // Fixed pseudo-random ids, the same on the PyTorch side.
    let ids: Vec<u32> = (0..tokens as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) % (vocab - 10) + 5)
        .collect();
    let input_ids = Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?; // [1, s]
    let mut forward_ms = Vec::new();
    let mut bytes = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let mut trace = Trace::default();
        let output = loaded
            .model
            .forward(ModelInput::new(&input_ids), Some(&mut trace))?;
        forward_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        bytes = trace_bytes(&trace);
        drop((output, trace));
    }
    let (_, peak) = memory_mib();
    forward_ms.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "load_s": load_s,
            "base_mib": base_rss,
            "after_load_mib": after_load_rss,
            "load_peak_mib": load_peak,
            "forward_ms": forward_ms[1],
            "peak_mib": peak,
            "trace_mib": bytes as f64 / (1 << 20) as f64,
        })
    );
    Ok(())
}

/// Runs one measurement in a fresh process and reads its JSON line.
fn measure(mut command: Command) -> Option<serde_json::Value> {
    let output = match command.output() {
        Ok(output) => output,
        Err(e) => {
            println!("    could not start: {e}");
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().rev().find(|l| l.starts_with('{')) {
        Some(line) if output.status.success() => serde_json::from_str(line).ok(),
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last: Vec<&str> = stderr.lines().rev().take(3).collect();
            println!("    failed: {}", last.join(" | "));
            None
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        let dir = PathBuf::from(&args[at + 1]);
        let tokens: usize = args[at + 2].parse()?;
        return child(&dir, tokens);
    }
    let options = parse_options();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let models_dir = root.join("target/bench-models");
    let exe = std::env::current_exe()?;
    println!(
        "trace_speed: traced forward (every intermediate recorded), batch 1, {} round(s), each in a fresh process",
        options.rounds
    );
    let mut summary = Vec::new();
    let mut torch = options.torch;
    for (name, config_json) in MODELS {
        if options.only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let dir = models_dir.join(name);
        let started = Instant::now();
        ensure_checkpoint(&dir, config_json)?;
        let size = std::fs::metadata(dir.join("model.safetensors"))?.len();
        println!(
            "{name}: {} ({:.0} MiB of weights; ready in {:.1}s)",
            dir.display(),
            size as f64 / (1 << 20) as f64,
            started.elapsed().as_secs_f64()
        );
        for &tokens in &options.lengths {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            for _ in 0..options.rounds {
                let mut command = Command::new(&exe);
                command.arg("--child").arg(&dir).arg(tokens.to_string());
                if let Some(result) = measure(command) {
                    ours.push(result);
                }
                if torch {
                    let mut command = Command::new("python3");
                    command
                        .arg(root.join("scripts/bench_trace.py"))
                        .arg("--model")
                        .arg(&dir)
                        .args(["--tokens", &tokens.to_string()]);
                    match measure(command) {
                        Some(result) => theirs.push(result),
                        None => {
                            println!("    pytorch side skipped from here on");
                            torch = false;
                        }
                    }
                }
            }
            let field = |runs: &[serde_json::Value], key: &str| {
                median(
                    &runs
                        .iter()
                        .filter_map(|r| r[key].as_f64())
                        .collect::<Vec<_>>(),
                )
            };
            let line = format!(
                "  {name:<11} {tokens:>5} tokens  glassbox: forward {:>7.0} ms, peak {:>5.0} MiB (load {:.2}s, peak {:.0} MiB; trace {:.0} MiB)",
                field(&ours, "forward_ms"),
                field(&ours, "peak_mib"),
                field(&ours, "load_s"),
                field(&ours, "load_peak_mib"),
                field(&ours, "trace_mib"),
            );
            println!("{line}");
            summary.push(line);
            if !theirs.is_empty() {
                let line = format!(
                    "  {:<11} {:>5}         pytorch:  forward {:>7.0} ms, peak {:>5.0} MiB (load {:.2}s, peak {:.0} MiB; {:.0} MiB before loading)  -> glassbox {:.2}x as fast",
                    "",
                    "",
                    field(&theirs, "forward_ms"),
                    field(&theirs, "peak_mib"),
                    field(&theirs, "load_s"),
                    field(&theirs, "load_peak_mib"),
                    field(&theirs, "base_mib"),
                    field(&theirs, "forward_ms") / field(&ours, "forward_ms"),
                );
                println!("{line}");
                summary.push(line);
            }
        }
    }
    println!("\nsummary (medians of {} rounds):", options.rounds);
    for line in summary {
        println!("{line}");
    }
    Ok(())
}
