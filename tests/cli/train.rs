//! `glassbox train` and `glassbox finetune` end to end: a tiny recipe trains, writes metrics.jsonl
//! and metrics.csv and a checkpoint that loads; fine-tuning starts from it; Ctrl-C saves and exits.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::Device;
use glassbox::model::checkpoint::load_dir;

const TINY_RECIPE: &str = r#"
objective = "causal-lm"
seed = 5
[data]
builtin_size = 300
[model]
n_layer = 1
n_head = 2
n_embd = 16
n_positions = 16
[optimizer]
lr = 3e-3
warmup_steps = 2
[training]
steps = 12
batch_size = 4
eval_every = 5
eval_batches = 2
save_every = 5
"#;

fn glassbox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_glassbox"))
}

#[test]
fn train_writes_metrics_and_a_loadable_checkpoint_then_finetune_starts_from_it() {
    let dir = crate::common::temp_dir("cli-train");
    let recipe = dir.join("recipe.toml");
    std::fs::write(&recipe, TINY_RECIPE).unwrap();
    let out = dir.join("run");
    let status = glassbox()
        .args(["train", "--config"])
        .arg(&recipe)
        .arg("--out")
        .arg(&out)
        .args(["--set", "training.probe_every=6"])
        .status()
        .expect("runs");
    assert!(status.success());

    let jsonl = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics.jsonl");
    let records: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let steps = records.iter().filter(|r| r["kind"] == "step").count();
    let evals: Vec<u64> = records
        .iter()
        .filter(|r| r["kind"] == "eval")
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, 12);
    assert_eq!(evals, vec![0, 5, 10, 12]);
    let csv = std::fs::read_to_string(out.join("metrics.csv")).expect("metrics.csv");
    assert!(csv.starts_with(
        "step,kind,train_loss,lr,grad_norm,tokens_per_sec,elapsed_secs,val_loss,perplexity\n"
    ));
    assert_eq!(csv.lines().count(), 1 + 12 + 4);

    let checkpoint = out.join("checkpoint");
    let loaded = load_dir(&checkpoint, &Device::Cpu).expect("checkpoint loads");
    assert!(loaded.tokenizer.is_some());
    assert!(checkpoint.join("trainer_state.json").is_file());
    assert!(checkpoint.join("optimizer.safetensors").is_file());

    // Fine-tune the GPT on prompt → completion pairs from its checkpoint.
    let finetuned = dir.join("finetuned");
    let status = glassbox()
        .args(["finetune", "--task", "generation", "--from"])
        .arg(&checkpoint)
        .arg("--out")
        .arg(&finetuned)
        .args(["--steps", "4", "--quiet", "--set", "data.builtin_size=40"])
        .status()
        .expect("runs");
    assert!(status.success());
    load_dir(&finetuned.join("checkpoint"), &Device::Cpu).expect("fine-tuned checkpoint loads");

    // Resume the first run for a few more steps: the curve continues at step 13.
    let status = glassbox()
        .args(["train", "--resume"])
        .arg(&out)
        .args(["--steps", "14", "--quiet"])
        .status()
        .expect("runs");
    assert!(status.success());
    let jsonl = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last_step = jsonl
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["kind"] == "step")
        .filter_map(|r| r["step"].as_u64())
        .max();
    assert_eq!(last_step, Some(14));
}

#[test]
fn bad_recipes_and_flags_fail_with_a_message() {
    let dir = crate::common::temp_dir("cli-bad");
    let recipe = dir.join("bad.toml");
    std::fs::write(&recipe, "[training]\nsteps = \"many\"\n").unwrap();
    let output = glassbox()
        .args(["train", "--config"])
        .arg(&recipe)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("steps"),
        "{stderr}"
    );

    let output = glassbox()
        .args(["finetune", "--task", "classification"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--from"));
}

/// Ctrl-C (SIGINT) and SIGTERM alike: the run saves a checkpoint and exits with 130, the status
/// of an interrupted command, as Unix tools give.
#[test]
fn ctrl_c_and_sigterm_save_a_checkpoint_and_exit_130() {
    for signal in ["INT", "TERM"] {
        let dir = crate::common::temp_dir(&format!("cli-signal-{signal}"));
        let recipe = dir.join("recipe.toml");
        std::fs::write(
            &recipe,
            TINY_RECIPE.replace("steps = 12", "steps = 1000000"),
        )
        .unwrap();
        let out = dir.join("run");
        let child = glassbox()
            .args(["train", "--config"])
            .arg(&recipe)
            .arg("--out")
            .arg(&out)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until training is under way (a few steps logged), then interrupt.
        let started = Instant::now();
        while std::fs::read_to_string(out.join("metrics.jsonl"))
            .map(|t| t.lines().count() < 4)
            .unwrap_or(true)
        {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "training never started"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let kill = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(130), "SIG{signal}: {stderr}");
        assert!(stderr.contains("--resume"), "{stderr}");
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("checkpoint/trainer_state.json")).expect("saved"),
        )
        .unwrap();
        let step = state["step"].as_u64().unwrap();
        assert!((3..1_000_000).contains(&step), "saved at step {step}");
        load_dir(&out.join("checkpoint"), &Device::Cpu).expect("loads");
    }
}
