//! Training: every objective learns on built-in data, runs resume exactly, divergence is caught,
//! pause really pauses, and the checkpoints load again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{Device, Tensor};
use glassbox::model::ModelInput;
use glassbox::model::checkpoint::load_dir;
use glassbox::train::{TrainCommand, TrainConfig, TrainEvent, Trainer, TrainingRun};

/// A tiny char-level GPT on the toy corpus: fast enough for a test, big enough to learn.
fn tiny_gpt_recipe() -> String {
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
steps = 150
batch_size = 8
eval_every = 0
eval_batches = 4
"#
    .to_string()
}

/// A tiny WordPiece BERT with masked LM + next-sentence prediction on the built-in stories.
fn tiny_bert_recipe() -> String {
    r#"
objective = "masked-lm"
next_sentence = true
seed = 11
[data]
builtin_size = 300
[tokenizer]
kind = "wordpiece"
vocab_size = 200
[model]
n_layer = 1
n_head = 2
n_embd = 32
n_positions = 48
[optimizer]
lr = 3e-3
warmup_steps = 10
[training]
steps = 200
batch_size = 16
eval_every = 0
eval_batches = 4
"#
    .to_string()
}

/// A tiny encoder–decoder translating the built-in English → French grammar.
fn tiny_translator_recipe() -> String {
    r#"
objective = "seq2seq"
seed = 5
[data]
builtin_size = 800
val_fraction = 0.1
[tokenizer]
vocab_size = 700
[model]
n_layer = 1
n_head = 2
n_embd = 48
n_inner = 96
n_positions = 24
[optimizer]
lr = 5e-3
warmup_steps = 20
weight_decay = 0.01
[training]
steps = 300
batch_size = 24
eval_every = 0
eval_batches = 4
"#
    .to_string()
}

/// Fine-tuning from one of the `transformers` fixtures.
fn finetune_recipe(objective: &str, from: &str, steps: usize) -> String {
    format!(
        r#"
objective = "{objective}"
seed = 3
[data]
builtin_size = 240
[model]
init_from = "{}"
[optimizer]
lr = 3e-3
warmup_steps = 10
weight_decay = 0.01
[training]
steps = {steps}
batch_size = 16
seq_len = 48
eval_every = 0
"#,
        fixture(from).display()
    )
}

fn config(recipe: &str, overrides: &[&str]) -> TrainConfig {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    TrainConfig::from_toml_str(recipe, &overrides).expect("valid recipe")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs the whole recipe; returns (validation report before, after, the trainer).
fn train_and_evaluate(
    config: TrainConfig,
) -> (
    glassbox::train::EvalReport,
    glassbox::train::EvalReport,
    Trainer,
) {
    let mut trainer = Trainer::new(config).expect("trainer");
    let before = trainer.evaluate().expect("eval");
    while !trainer.is_done() {
        let report = trainer.step().expect("step");
        assert!(report.train_loss.is_finite() && report.grad_norm.is_finite());
    }
    let after = trainer.evaluate().expect("eval");
    eprintln!(
        "{:?}: val {:.3} → {:.3}, metrics {:?}",
        trainer.config().objective,
        before.val_loss,
        after.val_loss,
        after.metrics
    );
    (before, after, trainer)
}

#[test]
fn causal_lm_learns_the_toy_corpus() {
    let (before, after, trainer) = train_and_evaluate(config(&tiny_gpt_recipe(), &[]));
    assert!(before.val_loss > 3.0, "untrained: near ln(vocab)");
    assert!(after.val_loss < before.val_loss - 1.0);
    let probe = trainer.probe().expect("probe");
    assert_eq!(probe.attention.len(), 1, "one layer");
    assert_eq!(probe.attention[0].len(), 2, "two heads");
    let s = probe.tokens.len();
    assert_eq!(probe.attention[0][0].len(), s * s);
    // Causal: nothing above the diagonal; each row sums to 1.
    let head = &probe.attention[0][0];
    assert!(head[1].abs() < 1e-6);
    let row_sum: f32 = head[s * (s - 1)..].iter().sum();
    assert!((row_sum - 1.0).abs() < 1e-4);
}

#[test]
fn masked_lm_with_next_sentence_learns() {
    let (before, after, trainer) = train_and_evaluate(config(&tiny_bert_recipe(), &[]));
    assert!(after.val_loss < before.val_loss - 1.0);
    assert!(after.metrics["mlm_loss"] < before.metrics["mlm_loss"] - 1.0);
    assert!(after.metrics["nsp_loss"].is_finite());
    assert!(after.metrics["mlm_accuracy"] > 0.2);
    let probe = trainer.probe().expect("probe");
    assert!(probe.output.contains("[MASK]"), "{}", probe.output);
}

#[test]
fn classification_finetunes_a_pretrained_bert() {
    let (before, after, trainer) =
        train_and_evaluate(config(&finetune_recipe("classification", "bert", 120), &[]));
    assert!(after.val_loss < before.val_loss);
    assert!(after.metrics["accuracy"] > 0.85, "{:?}", after.metrics);
    assert!(after.metrics["macro_f1"] > 0.85);
    let confusion = after.confusion.expect("confusion matrix");
    assert_eq!(confusion.labels, vec!["negative", "positive"]);
    // A fresh classifier on top of the loaded encoder.
    assert_eq!(
        trainer.info().fresh_tensors,
        vec!["classifier.bias", "classifier.weight"]
    );
}

#[test]
fn qa_finetunes_a_pretrained_bert() {
    let (before, after, _) = train_and_evaluate(config(&finetune_recipe("qa", "bert", 150), &[]));
    assert!(after.val_loss < before.val_loss - 1.0);
    assert!(after.metrics["f1"] > before.metrics["f1"]);
}

#[test]
fn generation_finetunes_a_pretrained_gpt_on_completions() {
    let (before, after, _) =
        train_and_evaluate(config(&finetune_recipe("generation", "gpt2", 100), &[]));
    assert!(after.val_loss < before.val_loss - 1.0);
    assert!(after.metrics["perplexity"] < before.metrics["perplexity"]);
}

#[test]
fn seq2seq_learns_to_translate_and_its_checkpoint_loads_as_a_translator() {
    let dir = crate::common::temp_dir("train-seq2seq");
    let out = format!("out_dir=\"{}\"", dir.display());
    let (before, after, mut trainer) =
        train_and_evaluate(config(&tiny_translator_recipe(), &[&out]));
    assert!(before.val_loss > 5.0, "untrained: near ln(vocab)");
    assert!(after.val_loss < 1.0, "{after:?}");
    assert!(
        after.metrics["bleu"] > before.metrics["bleu"] + 30.0,
        "{after:?}"
    );
    assert!(after.metrics["exact_match"] > 0.3, "{after:?}");

    // The probe: the translation, the encoder's self-attention over the source, and per layer
    // and head a [target × source] cross-attention map whose rows sum to 1.
    let probe = trainer.probe().expect("probe");
    let cross = probe.cross.as_ref().expect("cross-attention");
    let (s, t) = (probe.tokens.len(), cross.target_tokens.len());
    assert_eq!(probe.tokens.last().map(String::as_str), Some("</s>"));
    assert_eq!(probe.attention[0][0].len(), s * s);
    assert_eq!(cross.attention.len(), 1, "one decoder layer");
    assert_eq!(cross.attention[0].len(), 2, "two heads");
    assert_eq!(cross.attention[0][0].len(), t * s);
    for row in cross.attention[0][1].chunks(s) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
    assert!(!probe.output.is_empty());

    // The checkpoint is a translator folder: it loads, translates as the trainer's model does,
    // and tests against the held-out pairs the run wrote.
    let checkpoint = trainer.save().expect("save");
    let loaded =
        glassbox::model::checkpoint::load_translator(&checkpoint, &Device::Cpu).expect("loads");
    let translation = glassbox::translate::translate(
        &loaded,
        &probe.text,
        &glassbox::translate::Decoding::default(),
    )
    .expect("translates");
    assert_eq!(translation.translation, probe.output);
    let held_out = glassbox::data::read_parallel(&dir.join("heldout.tsv")).expect("held out");
    // 10% of 800 pairs, all translated by the evaluation (eval_batches × batch_size = 96).
    assert_eq!(held_out.len(), 80);
    let scores = glassbox::translate::score_pairs(&loaded, &held_out).expect("scores");
    assert!((scores.exact_match - after.metrics["exact_match"]).abs() < 1e-9);
    assert!((scores.bleu - after.metrics["bleu"]).abs() < 1e-6);
}

#[test]
fn a_resumed_seq2seq_run_continues_the_same_curve() {
    let dir = crate::common::temp_dir("train-seq2seq-resume");
    let recipe = tiny_translator_recipe();
    let steps = "training.steps=8";
    let mut straight = Trainer::new(config(&recipe, &[steps])).expect("trainer");
    let straight_losses: Vec<f32> = (0..8)
        .map(|_| straight.step().unwrap().train_loss)
        .collect();
    let out = format!("out_dir=\"{}\"", dir.display());
    let mut first_half = Trainer::new(config(&recipe, &[steps, &out])).expect("trainer");
    let mut resumed_losses: Vec<f32> = (0..4)
        .map(|_| first_half.step().unwrap().train_loss)
        .collect();
    first_half.save().expect("save");
    drop(first_half);
    let mut second_half = Trainer::resume(&dir, &[]).expect("resume");
    while !second_half.is_done() {
        resumed_losses.push(second_half.step().unwrap().train_loss);
    }
    assert_eq!(straight_losses, resumed_losses, "bit-identical curves");
}

#[test]
fn a_resumed_run_continues_the_same_curve() {
    let dir = crate::common::temp_dir("train-resume");
    let recipe = tiny_gpt_recipe();
    let steps = ["training.steps=12", "training.grad_accum=2"];

    let mut straight = Trainer::new(config(&recipe, &steps)).expect("trainer");
    let straight_losses: Vec<f32> = (0..12)
        .map(|_| straight.step().unwrap().train_loss)
        .collect();

    let out = format!("out_dir=\"{}\"", dir.display());
    let mut first_half =
        Trainer::new(config(&recipe, &[steps[0], steps[1], &out])).expect("trainer");
    let mut resumed_losses: Vec<f32> = (0..6)
        .map(|_| first_half.step().unwrap().train_loss)
        .collect();
    first_half.save().expect("save");
    drop(first_half);
    let mut second_half = Trainer::resume(&dir, &[]).expect("resume");
    assert_eq!(second_half.step_count(), 6);
    while !second_half.is_done() {
        resumed_losses.push(second_half.step().unwrap().train_loss);
    }
    assert_eq!(straight_losses, resumed_losses, "bit-identical curves");
    // The metrics file holds the whole curve once.
    let records = glassbox::train::metrics::read_metrics(&dir.join("metrics.jsonl")).unwrap();
    let steps_logged: Vec<usize> = records.iter().map(|r| r.step()).collect();
    assert_eq!(steps_logged, (1..=12).collect::<Vec<_>>());
}

#[test]
fn a_diverging_run_stops_and_keeps_the_last_good_checkpoint() {
    let dir = crate::common::temp_dir("train-nan");
    let recipe = tiny_gpt_recipe();
    let out = format!("out_dir=\"{}\"", dir.display());
    // Three good steps, saved.
    let mut trainer = Trainer::new(config(&recipe, &["training.steps=3", &out])).unwrap();
    for _ in 0..3 {
        trainer.step().unwrap();
    }
    let checkpoint = trainer.save().unwrap();
    let good_weights = std::fs::read(checkpoint.join("model.safetensors")).unwrap();

    // Then an absurd learning rate: the run must stop with a clear message.
    let run = TrainingRun::resume(
        dir.clone(),
        vec![
            "training.steps=50".into(),
            "optimizer.lr=1e30".into(),
            "optimizer.warmup_steps=0".into(),
        ],
    )
    .unwrap();
    let mut failure = None;
    for event in run.events() {
        if let TrainEvent::Failed {
            message,
            last_checkpoint,
            step,
        } = event
        {
            failure = Some((message, last_checkpoint, step));
            break;
        }
        assert!(!matches!(event, TrainEvent::Finished(_)), "must not finish");
    }
    let (message, last_checkpoint, step) = failure.expect("a Failed event");
    assert!(message.contains("diverged"), "{message}");
    assert!(message.contains("step"), "{message}");
    assert_eq!(last_checkpoint.as_deref(), Some(checkpoint.as_path()));
    assert!(step >= 3);
    // The good checkpoint is untouched and loads.
    let after = std::fs::read(checkpoint.join("model.safetensors")).unwrap();
    assert_eq!(good_weights, after);
    load_dir(&checkpoint, &Device::Cpu).expect("loads");
}

#[test]
fn pause_stops_the_step_counter_and_single_step_does_one() {
    let run = TrainingRun::start(config(&tiny_gpt_recipe(), &["training.steps=100000"])).unwrap();
    let next_step = |run: &TrainingRun| loop {
        match run.recv_timeout(Duration::from_secs(30)).expect("an event") {
            TrainEvent::Step(s) => return s.step,
            TrainEvent::Failed { message, .. } => panic!("{message}"),
            _ => {}
        }
    };
    next_step(&run);
    assert!(run.pause());
    // Steps already under way may still arrive, then Paused.
    let paused_at = loop {
        match run.recv_timeout(Duration::from_secs(30)).expect("an event") {
            TrainEvent::Paused { step } => break step,
            TrainEvent::Step(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(run.try_recv().is_none(), "no steps while paused");
    assert!(run.single_step());
    assert_eq!(next_step(&run), paused_at + 1);
    std::thread::sleep(Duration::from_millis(200));
    assert!(run.try_recv().is_none(), "exactly one step");
    assert!(run.request_probe());
    match run.recv_timeout(Duration::from_secs(30)).expect("probe") {
        TrainEvent::Probe(p) => assert_eq!(p.step, paused_at + 1),
        other => panic!("unexpected {other:?}"),
    }
    assert!(run.resume_running());
    assert!(matches!(
        run.recv_timeout(Duration::from_secs(30)),
        Some(TrainEvent::Resumed { .. })
    ));
    assert!(next_step(&run) > paused_at + 1);
    assert!(run.send(TrainCommand::Stop));
    let finished = loop {
        match run.recv_timeout(Duration::from_secs(30)).expect("an event") {
            TrainEvent::Finished(summary) => break summary,
            TrainEvent::Step(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(finished.stopped_early);
    run.join().unwrap();
}

#[test]
fn a_saved_checkpoint_loads_with_the_same_outputs() {
    let dir = crate::common::temp_dir("train-checkpoint");
    let out = format!("out_dir=\"{}\"", dir.display());
    let mut trainer =
        Trainer::new(config(&tiny_bert_recipe(), &["training.steps=5", &out])).unwrap();
    for _ in 0..5 {
        trainer.step().unwrap();
    }
    let path = trainer.save().unwrap();
    let loaded = load_dir(&path, &Device::Cpu).expect("loads");
    assert_eq!(
        loaded.config.architecture,
        glassbox::model::config::Architecture::BertForPreTraining
    );
    let ids = Tensor::new(&[[2u32, 10, 11, 12, 3]], &Device::Cpu).unwrap();
    let a = trainer
        .model()
        .forward(ModelInput::new(&ids), None)
        .unwrap();
    let b = loaded.model.forward(ModelInput::new(&ids), None).unwrap();
    let diff = crate::common::max_abs_diff(&a.logits.unwrap(), &b.logits.unwrap());
    assert_eq!(diff, 0.0);
}

#[test]
fn recipes_report_bad_fields_clearly() {
    let error = TrainConfig::from_toml_str("[training]\nstepz = 3\n", &[]).unwrap_err();
    assert!(error.to_string().contains("stepz"), "{error}");
    let error = TrainConfig::from_toml_str("objective = \"classification\"\n", &[]).unwrap_err();
    assert!(error.to_string().contains("init_from"), "{error}");
    let error = TrainConfig::from_toml_str("[model]\nn_embd = 30\nn_head = 4\n", &[]).unwrap_err();
    assert!(error.to_string().contains("divisible"), "{error}");
    let ok = TrainConfig::from_toml_str("", &["training.steps=7".into()]).unwrap();
    assert_eq!(ok.training.steps, 7);
}

/// A translator trains on the user's own parallel file (TSV here), and a bad file stops the run
/// before it starts with the file, the line and what is wrong.
#[test]
fn seq2seq_reads_a_parallel_file() {
    let dir = crate::common::temp_dir("train-seq2seq-file");
    let pairs = glassbox::data::parallel_corpus(3, 200);
    let tsv: String = pairs
        .iter()
        .map(|p| format!("{}\t{}\n", p.source, p.target))
        .collect();
    let path = dir.join("pairs.tsv");
    std::fs::write(&path, tsv).unwrap();
    let data = format!("data.path=\"{}\"", path.display());
    let mut trainer = Trainer::new(config(
        &tiny_translator_recipe(),
        &["training.steps=3", &data],
    ))
    .unwrap();
    let summary = &trainer.info().data;
    assert_eq!(summary.source, path.display().to_string());
    assert_eq!(summary.train_examples + summary.val_examples, 200);
    assert!(trainer.step().unwrap().train_loss.is_finite());

    std::fs::write(&path, "the cat .\tle chat .\nno tab on this line\n").unwrap();
    let error = Trainer::new(config(&tiny_translator_recipe(), &[&data])).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("pairs.tsv") && message.contains("line 2"),
        "{message}"
    );
}
