//! The Train and Fine-tune views in an egui_kittest harness, driven through their accessible
//! labels: a tiny pretraining run that really pauses, single-steps, resumes and stops; the
//! fine-tuning workflow from built-in data (and a CSV with a bad row) to the evaluation, the
//! before/after predictions and the saved folder.
//!
//! Waits are bounded; models are tiny and runs short so the tests stay fast and deterministic.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eframe::egui;
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};

use glassbox::analysis::finetune::DataChoice;
use glassbox::app::assets::ShippedModels;
use glassbox::app::panels::finetune::{FinetunePanel, FinetuneSettings};
use glassbox::app::panels::train::{CorpusChoice, PretrainObjective, TrainPanel, TrainSettings};
use glassbox::app::panels::training::RunState;

use crate::app_support::wait_until;
use glassbox::app::{AppOptions, GlassboxApp};
use glassbox::train::config::{Objective, TokenizerKindChoice};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "glassbox-app-training-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The app without models loading (these views need none), the fixtures as "shipped" models.
fn harness() -> Harness<'static, GlassboxApp> {
    let app = GlassboxApp::new(AppOptions {
        persisted: None,
        load_models: false,
        initial_view: None,
        open_models: Vec::new(),
        shipped: Some(ShippedModels {
            gpt: Some(fixture("gpt2")),
            bert: Some(fixture("bert")),
            translator: None,
            bert_qa: None,
            minilm: None,
            message: None,
            searched: Vec::new(),
        }),
        started: Instant::now(),
    });
    Harness::builder()
        .with_size([1600.0, 3200.0])
        .build_ui_state(|ui, app: &mut GlassboxApp| app.ui(ui), app)
}

/// Steps frames for `ms` milliseconds.
fn run_frames(h: &mut Harness<'static, GlassboxApp>, ms: u64) {
    let end = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < end {
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn click(h: &mut Harness<'static, GlassboxApp>, role: Role, label: &str) {
    h.get_by_role_and_label(role, label).click_accesskit();
    h.step();
}

fn has_label(h: &Harness<'static, GlassboxApp>, label: &str) -> bool {
    h.query_all_by_label(label).next().is_some()
}

fn has_label_containing(h: &Harness<'static, GlassboxApp>, part: &str) -> bool {
    h.query_all_by_label_contains(part).next().is_some()
}

fn is_enabled(h: &Harness<'static, GlassboxApp>, label: &str) -> bool {
    !h.get_by_role_and_label(Role::Button, label)
        .accesskit_node()
        .is_disabled()
}

/// The step counter as the Train view shows it: "Steps done: N of M".
fn steps_shown(h: &Harness<'static, GlassboxApp>) -> usize {
    let node = h.get_by_label_contains("Steps done: ");
    // A label's text is its accessible value (egui 0.37); older egui put it in the label.
    let accessible = node.accesskit_node();
    let label = accessible
        .label()
        .filter(|l| !l.is_empty())
        .or_else(|| accessible.value())
        .unwrap_or_default();
    label
        .trim_start_matches("Steps done: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the step counter from {label:?}"))
}

fn tiny_settings(out: &Path) -> TrainSettings {
    TrainSettings {
        objective: PretrainObjective::Gpt,
        corpus: CorpusChoice::BuiltIn,
        builtin_size: 200,
        tokenizer: TokenizerKindChoice::Char,
        layers: 1,
        width: 16,
        heads: 2,
        context: 16,
        lr: 3e-3,
        warmup: 5,
        steps: 100_000,
        batch: 4,
        eval_every: 25,
        seed: 5,
        probe_every: 5,
        out_dir: out.display().to_string(),
        ..TrainSettings::default()
    }
}

#[test]
fn train_view_pauses_steps_resumes_and_stops() {
    let out = temp_dir("train-run");
    let mut h = harness();
    click(&mut h, Role::Button, "Train");
    assert_eq!(h.state().current_view().id(), "train");
    h.state_mut()
        .panel_mut::<TrainPanel>()
        .expect("train panel")
        .settings = tiny_settings(&out);
    h.step();
    // The parameter count is shown live for the form's model.
    wait_until(&mut h, 30, "the parameter count", |h| {
        has_label_containing(h, "Parameters: ≈")
    });

    click(&mut h, Role::Button, "Start training");
    wait_until(&mut h, 120, "the first steps", |h| steps_shown(h) >= 3);
    assert!(!is_enabled(&h, "Resume"), "Resume is for a paused run");

    // Pause: the counter stops.
    click(&mut h, Role::Button, "Pause");
    wait_until(&mut h, 60, "the pause", |h| has_label(h, "Status: paused"));
    let paused_at = steps_shown(&h);
    run_frames(&mut h, 600);
    assert_eq!(steps_shown(&h), paused_at, "steps went on while paused");
    run_frames(&mut h, 300);
    assert_eq!(steps_shown(&h), paused_at, "steps went on while paused");
    assert!(is_enabled(&h, "Step") && is_enabled(&h, "Resume"));
    assert!(!is_enabled(&h, "Pause"));

    // Step: exactly one more.
    click(&mut h, Role::Button, "Step");
    wait_until(&mut h, 60, "one step", |h| steps_shown(h) > paused_at);
    run_frames(&mut h, 500);
    assert_eq!(
        steps_shown(&h),
        paused_at + 1,
        "Step must do exactly one step"
    );
    assert!(has_label(&h, "Status: paused"));

    // Resume: it goes on.
    click(&mut h, Role::Button, "Resume");
    wait_until(&mut h, 60, "steps after resuming", |h| {
        steps_shown(h) >= paused_at + 4
    });
    assert!(has_label(&h, "Status: training"));

    // Save now, then Stop: a checkpoint, and the run ends early.
    click(&mut h, Role::Button, "Save");
    wait_until(&mut h, 60, "the save", |h| {
        has_label_containing(h, "Checkpoint saved at step")
    });
    click(&mut h, Role::Button, "Stop");
    wait_until(&mut h, 60, "the end of the run", |h| {
        has_label(h, "Status: finished")
    });
    let stopped_at = steps_shown(&h);
    run_frames(&mut h, 300);
    assert_eq!(steps_shown(&h), stopped_at);
    assert!(!is_enabled(&h, "Pause") && !is_enabled(&h, "Stop"));

    let panel = h.state().panel::<TrainPanel>().expect("train panel");
    let run = panel.run().expect("a run");
    assert_eq!(run.state, RunState::Finished);
    let summary = run.summary.as_ref().expect("summary");
    assert!(summary.stopped_early);
    assert_eq!(summary.step, stopped_at);
    // What the view shows comes from the trainer's events.
    assert_eq!(run.curves.train_loss.len(), stopped_at);
    assert_eq!(
        run.curves.train_loss.last().map(|p| p[0] as usize),
        Some(stopped_at)
    );
    assert!(!run.curves.val_loss.is_empty(), "the step-0 evaluation");
    assert!(
        !run.probes.is_empty(),
        "attention snapshots of the probe text"
    );
    let checkpoint = summary.checkpoint.as_ref().expect("checkpoint");
    assert!(checkpoint.join("model.safetensors").is_file());
    // The frame clock ran while the run was live.
    assert!(run.frames.samples() > 10);
    assert!(
        has_label_containing(&h, "Frame time while training"),
        "frame times are shown"
    );
    // The snapshot slider scrubs through the probes.
    assert!(has_label(&h, "Snapshot"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn train_view_shows_the_trainers_error_for_a_non_utf8_corpus() {
    let dir = temp_dir("bad-corpus");
    let corpus = dir.join("latin1.txt");
    std::fs::write(&corpus, b"caf\xe9 au lait\n").expect("write");
    let mut h = harness();
    click(&mut h, Role::Button, "Train");
    {
        let panel = h.state_mut().panel_mut::<TrainPanel>().expect("panel");
        panel.settings = TrainSettings {
            corpus: CorpusChoice::File,
            corpus_path: corpus.display().to_string(),
            ..tiny_settings(&dir.join("run"))
        };
    }
    // The corpus check names the problem before the run starts...
    wait_until(&mut h, 30, "the corpus check", |h| {
        has_label_containing(h, "not valid UTF-8")
    });
    // ...and the run fails with the trainer's message, shown in the view.
    click(&mut h, Role::Button, "Start training");
    wait_until(&mut h, 60, "the failure", |h| {
        has_label(h, "Status: failed")
    });
    let message = h
        .state()
        .panel::<TrainPanel>()
        .and_then(|p| p.run())
        .and_then(|r| r.failure.clone())
        .expect("a failure")
        .message;
    assert!(message.contains("not valid UTF-8"), "{message}");
    assert!(has_label_containing(
        &h,
        &format!("The run stopped at step 0: {message}")
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

fn open_finetune(h: &mut Harness<'static, GlassboxApp>, settings: FinetuneSettings) {
    click(h, Role::Button, "Fine-tune");
    assert_eq!(h.state().current_view().id(), "finetune");
    h.state_mut()
        .panel_mut::<FinetunePanel>()
        .expect("fine-tune panel")
        .settings = settings;
    h.step();
}

#[test]
fn finetune_preview_shows_builtin_rows_and_csv_row_errors() {
    let mut h = harness();
    open_finetune(&mut h, FinetuneSettings::default());
    click(&mut h, Role::Button, "2 Prepare data");
    wait_until(&mut h, 30, "the preview", |h| {
        h.state()
            .panel::<FinetunePanel>()
            .is_some_and(|p| p.preview().is_some())
    });
    h.step();
    let settings = FinetuneSettings::default();
    let expected = glassbox::data::sentiment_dataset(settings.seed, settings.builtin_size);
    assert!(has_label(
        &h,
        &format!(
            "{} examples from built-in sentiment set ({} examples, seed {}) · labels: {}",
            expected.len(),
            settings.builtin_size,
            settings.seed,
            glassbox::data::label_names(&expected).join(", ")
        )
    ));
    for example in expected.iter().take(3) {
        assert!(
            has_label(&h, &example.text),
            "row {:?} is not in the preview",
            example.text
        );
    }

    // A CSV with a bad row: the row error (line, column, message) is shown.
    let dir = temp_dir("bad-csv");
    let csv = dir.join("reviews.csv");
    let text = "text,label\na lovely film,positive\na dull film\nwhat a waste,negative\n";
    std::fs::write(&csv, text).expect("write");
    let (good, errors) = glassbox::data::parse_classification_csv(text);
    assert_eq!(good.len(), 2);
    assert!(!errors.is_empty());
    {
        let panel = h.state_mut().panel_mut::<FinetunePanel>().expect("panel");
        panel.settings.data = DataChoice::File;
        panel.settings.data_path = csv.display().to_string();
    }
    wait_until(&mut h, 30, "the file preview", |h| {
        h.state()
            .panel::<FinetunePanel>()
            .and_then(|p| p.preview())
            .is_some_and(|p| p.source == csv.display().to_string())
    });
    h.step();
    for error in &errors {
        assert!(has_label(&h, &error.to_string()), "missing {error}");
    }
    assert!(has_label(&h, "a lovely film"));
    assert!(has_label(&h, "what a waste"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn finetune_workflow_reaches_evaluation_with_the_reports_accuracy() {
    let dir = temp_dir("finetune");
    let mut h = harness();
    open_finetune(
        &mut h,
        FinetuneSettings {
            task: Objective::Classification,
            data: DataChoice::BuiltIn,
            builtin_size: 120,
            use_epochs: false,
            steps: 30,
            eval_every: 10,
            max_len: 32,
            runs_dir: dir.join("runs").display().to_string(),
            save_path: dir.join("saved").display().to_string(),
            ..FinetuneSettings::default()
        },
    );
    // 1: the shipped BERT (the fixture here) is read.
    wait_until(&mut h, 30, "the model info", |h| {
        has_label_containing(h, "BertForPreTraining")
    });
    // 3: token lengths and truncation.
    click(&mut h, Role::Button, "3 Tokenize");
    wait_until(&mut h, 60, "the token lengths", |h| {
        has_label_containing(h, "get truncated")
    });
    // 5: train.
    click(&mut h, Role::Button, "Next");
    wait_until(&mut h, 10, "step 4", |h| has_label(h, "length of training"));
    click(&mut h, Role::Button, "Next");
    wait_until(&mut h, 10, "step 5", |h| has_label(h, "Start fine-tuning"));
    click(&mut h, Role::Button, "Start fine-tuning");
    wait_until(&mut h, 300, "the end of the fine-tuning run", |h| {
        h.state()
            .panel::<FinetunePanel>()
            .and_then(|p| p.run())
            .is_some_and(|r| r.is_done())
    });
    {
        let run = h
            .state()
            .panel::<FinetunePanel>()
            .and_then(|p| p.run())
            .expect("run");
        assert_eq!(run.state, RunState::Finished, "{:?}", run.failure);
        assert_eq!(run.step(), 30);
    }
    // 6: the accuracy shown is the evaluation report's.
    click(&mut h, Role::Button, "6 Evaluate");
    let eval = h
        .state()
        .panel::<FinetunePanel>()
        .and_then(|p| p.final_eval())
        .cloned()
        .expect("final evaluation");
    assert_eq!(eval.step, 30);
    let accuracy = eval.metrics["accuracy"];
    assert!(
        has_label(&h, &format!("Accuracy: {accuracy:.4}")),
        "accuracy {accuracy} not shown"
    );
    let f1 = eval.metrics["macro_f1"];
    assert!(has_label(&h, &format!("Macro F1: {f1:.4}")));
    let confusion = eval.confusion.as_ref().expect("confusion matrix");
    assert!((confusion.accuracy() - accuracy).abs() < 1e-9);
    assert!(has_label(&h, "confusion matrix"));
    // Before vs after predictions arrive from the background thread.
    wait_until(&mut h, 120, "the before/after predictions", |h| {
        h.state()
            .panel::<FinetunePanel>()
            .is_some_and(|p| p.comparisons().is_some())
    });
    let rows = h
        .state()
        .panel::<FinetunePanel>()
        .and_then(|p| p.comparisons())
        .cloned()
        .expect("comparisons");
    assert!(!rows.is_empty() && rows.len() <= 8);
    for row in &rows {
        assert!(!row.after.starts_with("(error"), "{row:?}");
        assert!(!row.before.starts_with("(error"), "{row:?}");
    }
    h.step();
    assert!(has_label(&h, &rows[0].after));

    // 7: save the folder and list its files.
    click(&mut h, Role::Button, "7 Save");
    click(&mut h, Role::Button, "Save model");
    wait_until(&mut h, 60, "the saved files", |h| {
        h.state()
            .panel::<FinetunePanel>()
            .is_some_and(|p| p.saved_files().is_some())
    });
    let saved = dir.join("saved");
    assert!(saved.join("config.json").is_file());
    assert!(saved.join("model.safetensors").is_file());
    assert!(saved.join("tokenizer.json").is_file());
    assert!(!saved.join("optimizer.safetensors").exists());
    h.step();
    assert!(has_label_containing(&h, "config.json"));
    assert!(has_label_containing(
        &h,
        "huggingface-cli upload <user>/<repo>"
    ));
    let reloaded = glassbox::model::checkpoint::load_dir(&saved, &candle_core::Device::Cpu)
        .expect("the saved folder loads");
    assert_eq!(
        reloaded.config.architecture,
        glassbox::model::config::Architecture::BertForSequenceClassification
    );

    // Saving again into a folder that holds a model asks first, and writes nothing until asked.
    let config_json = std::fs::read(saved.join("config.json")).unwrap();
    std::fs::write(saved.join("config.json"), b"{}").unwrap();
    click(&mut h, Role::Button, "Save model");
    run_frames(&mut h, 300);
    assert!(has_label_containing(&h, "already holds a model"));
    assert_eq!(std::fs::read(saved.join("config.json")).unwrap(), b"{}");
    click(&mut h, Role::Button, "Replace the model there");
    wait_until(&mut h, 60, "the replaced files", |_| {
        std::fs::read(saved.join("config.json")).is_ok_and(|bytes| bytes == config_json)
    });
    h.step();
    assert!(!has_label_containing(&h, "already holds a model"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn train_view_never_replaces_an_earlier_run() {
    let dir = temp_dir("train-existing");
    let run = dir.join("run");
    // An earlier run's files in the output folder the user typed.
    std::fs::create_dir_all(&run).expect("folder");
    std::fs::write(run.join("metrics.jsonl"), b"{\"kind\":\"step\"}\n").expect("write");
    let mut h = harness();
    click(&mut h, Role::Button, "Train");
    h.state_mut()
        .panel_mut::<TrainPanel>()
        .expect("panel")
        .settings = tiny_settings(&run);
    h.step();
    click(&mut h, Role::Button, "Start training");
    wait_until(&mut h, 60, "the refusal", |h| {
        has_label(h, "Status: failed")
    });
    let message = h
        .state()
        .panel::<TrainPanel>()
        .and_then(|p| p.run())
        .and_then(|r| r.failure.clone())
        .expect("a failure")
        .message;
    assert!(
        message.contains("already holds a training run"),
        "{message}"
    );
    assert!(message.contains("another output folder"), "{message}");
    assert_eq!(
        std::fs::read(run.join("metrics.jsonl")).expect("kept"),
        b"{\"kind\":\"step\"}\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Train view trains a translator from scratch on the built-in pairs: the form takes the
/// translator recipe, the curves show exact match and BLEU, the probe sentence is translated
/// every few steps, and the scrubber replays its cross-attention from the untrained model
/// (spread evenly) to the learned alignment ("noir" looking at "black").
#[test]
fn train_view_trains_a_translator_and_replays_its_cross_attention() {
    let out = temp_dir("train-translator");
    let mut h = harness();
    click(&mut h, Role::Button, "Train");
    click(
        &mut h,
        Role::RadioButton,
        "Translator: English → French (encoder–decoder)",
    );
    {
        let settings = &mut h.state_mut().panel_mut::<TrainPanel>().unwrap().settings;
        assert_eq!(settings.objective, PretrainObjective::Translator);
        assert_eq!(settings.tokenizer, TokenizerKindChoice::Bpe);
        // The recipe's model, trained for fewer steps.
        settings.steps = 600;
        settings.eval_every = 200;
        settings.probe_every = 50;
        settings.out_dir = out.display().to_string();
    }
    h.step();
    wait_until(&mut h, 60, "the pair count", |h| {
        has_label_containing(h, "sentence pairs")
    });
    let started = Instant::now();
    click(&mut h, Role::Button, "Start training");
    wait_until(&mut h, 600, "the end of the run", |h| {
        has_label(h, "Status: finished")
    });
    let elapsed = started.elapsed();

    let panel = h.state().panel::<TrainPanel>().unwrap();
    let run = panel.run().unwrap();
    let right = "le chat noir a chassé la souris .";
    let first_right = run
        .probes
        .iter()
        .find(|p| p.output == right)
        .map(|p| p.step)
        .expect("the probe is translated right before the end");
    eprintln!(
        "translator: 600 steps in {:.1} s; the probe first right at step {first_right}",
        elapsed.as_secs_f64()
    );
    let last = run.probes.last().unwrap();
    assert_eq!(last.output, right);
    let bleu = run.curves.bleu.last().unwrap()[1];
    let exact = run.curves.exact_match.last().unwrap()[1];
    assert!(
        bleu > 80.0 && exact > 50.0,
        "BLEU {bleu}, exact match {exact}%"
    );

    // The untrained model's cross-attention is spread out; the trained one's "noir" row looks at
    // "black".
    let cross_row_max = |probe: &glassbox::train::ProbeReport, word: &str| {
        let cross = probe.cross.as_ref().unwrap();
        let row = cross.target_tokens.iter().position(|t| t == word)?;
        let layer = cross.attention.len() - 1;
        let s = probe.tokens.len();
        let heads = &cross.attention[layer];
        let mean: Vec<f32> = (0..s)
            .map(|j| heads.iter().map(|h| h[row * s + j]).sum::<f32>() / heads.len() as f32)
            .collect();
        let best = glassbox::generate::argmax(&mean);
        Some((probe.tokens[best].clone(), mean[best]))
    };
    let first = &run.probes[0];
    let first_cross = first.cross.as_ref().unwrap();
    let s = first.tokens.len() as f32;
    let spread = first_cross.attention[0][0]
        .iter()
        .all(|&w| (w - 1.0 / s).abs() < 0.2);
    assert!(spread, "untrained cross-attention is near uniform");
    assert_eq!(
        cross_row_max(last, "▁noir").map(|(token, _)| token),
        Some("▁black".to_string())
    );

    // The scrubber: back to the first snapshot, its cross-attention on screen.
    assert!(has_label(&h, "Snapshot"));
    let first_step = first.step;
    h.state_mut()
        .panel_mut::<TrainPanel>()
        .unwrap()
        .show_snapshot(Some(0));
    h.run();
    assert!(has_label(
        &h,
        &format!("cross-attention of the probe at step {first_step}")
    ));
    assert!(has_label(
        &h,
        &format!("cross-attention lines at step {first_step}")
    ));
    let _ = std::fs::remove_dir_all(&out);
}
