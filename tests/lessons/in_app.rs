//! The Lessons view in an egui_kittest harness, driven through accessible labels: every lesson of
//! the course (`lessons/`) opened from the list, every "try it" button of every step clicked and
//! checked against the app state it should have set, every question answered right and wrong,
//! keyboard navigation, a broken lesson file next to working ones, and progress that survives a
//! restart (and a corrupt progress file that does not stop the app).
//!
//! The shipped tiny models are used when `assets/` has them (the fixtures otherwise). Training
//! and fine-tuning runs a button starts are stopped at once, so the tests stay quick.

use crate::app_support::{no_error_notices, wait_until};

use std::path::{Path, PathBuf};
use std::time::Instant;

use eframe::egui;
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

use glassbox::app::assets::ShippedModels;
use glassbox::app::data::{ModelSource, Slot};
use glassbox::app::panels::attention::AttentionPanel;
use glassbox::app::panels::embeddings::EmbeddingsPanel;
use glassbox::app::panels::finetune::FinetunePanel;
use glassbox::app::panels::lessons::{LessonsPanel, Outcome};
use glassbox::app::panels::params::{CustomConfig, ParamSource, ParamsPanel};
use glassbox::app::panels::predict::{Mode, PredictPanel};
use glassbox::app::panels::step_through::{StageRef, StepThroughPanel};
use glassbox::app::panels::tokens::TokensPanel;
use glassbox::app::panels::train::{PretrainObjective, TrainPanel};
use glassbox::app::panels::training::LiveRun;
use glassbox::app::panels::translate::TranslatePanel;
use glassbox::app::{AppOptions, GlassboxApp};
use glassbox::inspect::Predictions;
use glassbox::lessons::{
    Action, ActionCommand, Lesson, ModelRef, Progress, QuestionKind, Side, ViewName, load_lessons,
};

fn course_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lessons")
}

fn course() -> Vec<Lesson> {
    let (lessons, errors) = load_lessons(&course_dir());
    assert!(errors.is_empty(), "{errors:?}");
    lessons
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "glassbox-app-lessons-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The app on the shipped models (fixtures if there are none), reading lessons from `lessons`,
/// keeping progress and runs under `dir`.
fn app_in(dir: &Path, lessons: &Path, load_models: bool) -> GlassboxApp {
    let mut app = GlassboxApp::new(AppOptions {
        persisted: None,
        load_models,
        initial_view: None,
        open_models: Vec::new(),
        shipped: Some(ShippedModels::find()),
        started: Instant::now(),
    });
    let panel = app.panel_mut::<LessonsPanel>().expect("lessons panel");
    panel.set_lessons_dir(lessons.to_path_buf());
    panel.set_progress_path(Some(dir.join("progress.json")));
    app.panel_mut::<TrainPanel>()
        .expect("train")
        .settings
        .out_dir = dir.join("train").display().to_string();
    app.panel_mut::<FinetunePanel>()
        .expect("finetune")
        .settings
        .runs_dir = dir.join("finetune").display().to_string();
    app
}

fn harness(app: GlassboxApp) -> Harness<'static, GlassboxApp> {
    crate::app_support::harness_sized(app, [1600.0, 1100.0])
}

fn click(h: &mut Harness<'static, GlassboxApp>, label: &str) {
    h.get_by_role_and_label(Role::Button, label)
        .click_accesskit();
    h.step();
    h.step();
}

fn lessons<'a>(h: &'a Harness<'static, GlassboxApp>) -> &'a LessonsPanel {
    h.state().panel::<LessonsPanel>().expect("lessons panel")
}

fn has_text(h: &Harness<'static, GlassboxApp>, part: &str) -> bool {
    h.query_all_by_label_contains(part).next().is_some()
}

fn stop_and_wait(
    h: &mut Harness<'static, GlassboxApp>,
    run: impl Fn(&mut GlassboxApp) -> Option<&mut LiveRun>,
) {
    if let Some(run) = run(h.state_mut()) {
        run.stop();
    }
    wait_until(h, 120, "the run to stop", |h| {
        run(h.state_mut()).is_none_or(|r| r.is_done())
    });
}

fn slot_of(side: Side) -> Slot {
    match side {
        Side::Gpt => Slot::Gpt,
        Side::Bert => Slot::Bert,
        Side::Translator => Slot::Translator,
    }
}

/// Checks that every command of `action` left its mark on the app.
fn check_action(h: &mut Harness<'static, GlassboxApp>, lesson: &Lesson, action: &Action) {
    let what = format!("{} / {:?}", lesson.id, action.label);
    match lessons(h).outcome(&lesson.id, action.line) {
        Some(Outcome::Done(_)) => {}
        other => panic!("{what}: the button did not finish: {other:?}"),
    }
    no_error_notices(h);
    let target = glassbox::app::panels::lessons::runner::target_view(action);
    if let Some(view) = target {
        assert_eq!(h.state().current_view(), view, "{what}: view");
    }
    let masks = action
        .commands
        .iter()
        .any(|c| matches!(c, ActionCommand::MaskToken(_)));
    let generates = action
        .commands
        .iter()
        .any(|c| matches!(c, ActionCommand::Generate(_)));
    let stepping = action
        .commands
        .iter()
        .any(|c| matches!(c, ActionCommand::StepThrough { .. }));
    let shipped = h.state().shared.shipped.clone();
    for command in &action.commands {
        let app = h.state_mut();
        match command {
            ActionCommand::LoadModel(model) => {
                if let ModelRef::Shipped(m) = model {
                    let slot = slot_of(m.side());
                    let dir = shipped.named(m.name()).cloned().expect("shipped model");
                    assert_eq!(
                        app.shared.model(slot).map(|m| m.source.clone()),
                        Some(ModelSource::Folder(dir)),
                        "{what}: load"
                    );
                }
            }
            ActionCommand::SetText(text) => {
                if masks {
                    assert!(
                        app.shared.text.contains("[MASK]"),
                        "{what}: {:?}",
                        app.shared.text
                    );
                } else if generates {
                    assert!(app.shared.text.starts_with(text.as_str()), "{what}");
                } else {
                    assert_eq!(&app.shared.text, text, "{what}: text");
                }
            }
            ActionCommand::SetPair(pair) => match pair {
                Some(pair) => {
                    assert!(app.shared.use_pair, "{what}: pairs on");
                    assert_eq!(&app.shared.pair, pair, "{what}: pair");
                    // The Predict view asks BERT whether the pair follows the text.
                    let text = app.shared.text.clone();
                    let panel = app.panel::<PredictPanel>().expect("predict");
                    assert_eq!((&panel.nsp_a, &panel.nsp_b), (&text, pair), "{what}: NSP");
                    if h.state().current_view().id() == "predict" {
                        assert!(has_text(h, "B follows A (IsNext)"), "{what}: NSP shown");
                    }
                }
                None => assert!(!app.shared.use_pair, "{what}: pairs off"),
            },
            ActionCommand::OpenView(_) => {}
            ActionCommand::SelectLayerHead { side, layer, head } if !stepping => {
                let panel = app.panel::<AttentionPanel>().expect("attention");
                assert_eq!(panel.layer, *layer, "{what}: layer");
                assert_eq!(panel.head, *head, "{what}: head");
                let slot = side.map(slot_of);
                match slot {
                    // An encoder–decoder shows its three kinds; check the cross-attention map.
                    Some(Slot::Translator) => assert!(
                        h.query_all_by_label_contains(&format!("cross attention layer {layer}"))
                            .next()
                            .is_some(),
                        "{what}: the translator's maps of layer {layer} are shown"
                    ),
                    Some(slot) => assert!(
                        h.query_all_by_label_contains(&format!(
                            "{} attention layer {layer}",
                            slot.short()
                        ))
                        .next()
                        .is_some(),
                        "{what}: the {} map of layer {layer} is shown",
                        slot.short()
                    ),
                    None => {
                        for slot in Slot::ALL {
                            assert!(
                                has_text(h, &format!("{} attention layer {layer}", slot.short())),
                                "{what}: both maps of layer {layer} are shown"
                            );
                        }
                    }
                }
            }
            ActionCommand::SelectLayerHead { .. } => {}
            ActionCommand::ShowSide(side) => {
                if target == Some(ViewName::Predict) {
                    let panel = app.panel::<PredictPanel>().expect("predict");
                    let mode = if *side == Side::Gpt {
                        Mode::Gpt
                    } else {
                        Mode::Bert
                    };
                    assert_eq!(panel.mode, mode, "{what}: Predict shows the {side:?}");
                }
                if target == Some(ViewName::Tokens) {
                    let panel = app.panel::<TokensPanel>().expect("tokens");
                    assert_eq!(
                        panel.slot,
                        slot_of(*side),
                        "{what}: Tokens shows the {side:?}"
                    );
                }
            }
            ActionCommand::TranslationStep(step) => {
                let panel = app.panel::<TranslatePanel>().expect("translate");
                assert_eq!(panel.step, step - 1, "{what}: step");
                let translation = panel.translation().expect("a translation").clone();
                assert_eq!(
                    translation.text, app.shared.text,
                    "{what}: the lesson's text"
                );
                assert!(
                    has_text(h, &format!("Step {step} of {}", translation.len())),
                    "{what}: step {step} shown"
                );
            }
            ActionCommand::SelectToken { side, token } => {
                let slots = side.map_or(Slot::ALL.to_vec(), |s| vec![slot_of(s)]);
                for slot in slots {
                    let tokens = app
                        .shared
                        .inspection(slot)
                        .data()
                        .expect("tokens")
                        .token_labels();
                    let want = token.find(&tokens);
                    let panel = app.panel::<AttentionPanel>().expect("attention");
                    assert_eq!(
                        panel.selected.get(&slot).copied(),
                        want,
                        "{what}: token in {}",
                        slot.short()
                    );
                    assert!(want.is_some() || side.is_none(), "{what}: token found");
                }
            }
            ActionCommand::CompareWord {
                word,
                sentence_a,
                sentence_b,
            } => {
                let panel = app.panel::<EmbeddingsPanel>().expect("embeddings");
                assert_eq!(
                    (&panel.word, &panel.sentence_a, &panel.sentence_b),
                    (word, sentence_a, sentence_b),
                    "{what}"
                );
                let comparison = panel.comparison(Slot::Bert).expect("a BERT comparison");
                assert_eq!(&comparison.word, word, "{what}: compared");
            }
            ActionCommand::MaskToken(_) => {
                let panel = app.panel::<PredictPanel>().expect("predict");
                assert_eq!(panel.mode, Mode::Bert, "{what}");
                assert!(app.shared.text.contains("[MASK]"), "{what}: masked");
                assert!(
                    has_text(h, "[MASK] at position"),
                    "{what}: predictions shown"
                );
            }
            ActionCommand::SelectPreset(preset) => {
                let panel = app.panel::<ParamsPanel>().expect("params");
                assert_eq!(panel.source, ParamSource::Preset(*preset), "{what}");
            }
            ActionCommand::SelectLoadedParams(side) => {
                let panel = app.panel::<ParamsPanel>().expect("params");
                assert_eq!(panel.source, ParamSource::Loaded(slot_of(*side)), "{what}");
            }
            ActionCommand::SetCustomConfig(spec) => {
                let panel = app.panel::<ParamsPanel>().expect("params");
                assert_eq!(panel.source, ParamSource::Custom, "{what}");
                assert_eq!(panel.custom, CustomConfig::from_spec(spec), "{what}");
            }
            ActionCommand::StepThrough { side, stage } => {
                let layer = action.commands.iter().find_map(|c| match c {
                    ActionCommand::SelectLayerHead { layer, head, .. } => Some((*layer, *head)),
                    _ => None,
                });
                let panel = app.panel::<StepThroughPanel>().expect("step through");
                if let Some(side) = side {
                    assert_eq!(panel.slot, slot_of(*side), "{what}: side");
                }
                let kind = *stage;
                let expected = StageRef::new(
                    kind,
                    kind.is_layer_stage().then(|| layer.map_or(0, |(l, _)| l)),
                );
                let shown = panel.shown.as_ref().expect("a stage is shown");
                assert_eq!(shown.stage, expected, "{what}: stage");
                if let Some((_, Some(head))) = layer {
                    assert_eq!(panel.head, head, "{what}: head");
                }
            }
            ActionCommand::SetSampling(sampling) => {
                let panel = app.panel::<PredictPanel>().expect("predict");
                if let Some(t) = sampling.temperature {
                    assert_eq!(panel.settings.temperature, t as f32, "{what}");
                }
                if let Some(k) = sampling.top_k {
                    assert_eq!(panel.settings.top_k, k, "{what}");
                }
                if let Some(p) = sampling.top_p {
                    assert_eq!(panel.settings.top_p, p as f32, "{what}");
                }
            }
            ActionCommand::Generate(count) => {
                let panel = app.panel::<PredictPanel>().expect("predict");
                assert_eq!(panel.remaining, 0, "{what}: generation finished");
                let picks = panel.session.as_ref().map_or(0, |s| s.picks.len());
                // A sampled end-of-text token ends a generation early, with a message.
                assert!(
                    picks == *count || (picks > 0 && panel.message.is_some()),
                    "{what}: {picks} of {count} tokens"
                );
            }
            ActionCommand::AskQuestion(question) => {
                let panel = app.panel::<PredictPanel>().expect("predict");
                assert_eq!(panel.mode, Mode::Bert, "{what}");
                assert_eq!(&panel.question, question, "{what}");
                assert_eq!(panel.context, app.shared.text, "{what}: context");
            }
            ActionCommand::StartTraining(settings) => {
                let panel = app.panel::<TrainPanel>().expect("train");
                let objective = if settings.objective.is_causal() {
                    PretrainObjective::Gpt
                } else {
                    PretrainObjective::Bert
                };
                assert_eq!(panel.settings.objective, objective, "{what}");
                assert_eq!(panel.settings.steps, settings.steps, "{what}");
                assert_eq!(
                    panel.settings.next_sentence, settings.next_sentence,
                    "{what}"
                );
                assert_eq!(panel.run().is_some(), settings.start, "{what}: started");
                if let Some(run) = panel.run() {
                    assert_eq!(run.config.training.steps, settings.steps, "{what}");
                    assert!(
                        run.config
                            .out_dir
                            .as_ref()
                            .is_some_and(|d| d.starts_with(std::env::temp_dir())),
                        "{what}: the run writes to the test's folder"
                    );
                }
                stop_and_wait(h, |app| {
                    app.panel_mut::<TrainPanel>().and_then(TrainPanel::run_mut)
                });
            }
            ActionCommand::StartFinetune(settings) => {
                let panel = app.panel::<FinetunePanel>().expect("finetune");
                assert_eq!(panel.settings.task, settings.objective, "{what}");
                assert_eq!(panel.settings.steps, settings.steps, "{what}");
                assert!(!panel.settings.use_epochs, "{what}");
                if settings.start {
                    let run = panel.run().expect("a run started");
                    assert_eq!(run.config.training.steps, settings.steps, "{what}");
                    assert_eq!(run.config.objective, settings.objective, "{what}");
                }
                stop_and_wait(h, |app| {
                    app.panel_mut::<FinetunePanel>()
                        .and_then(FinetunePanel::run_mut)
                });
            }
            ActionCommand::ShowFinetuneStep(step) => {
                let panel = app.panel::<FinetunePanel>().expect("finetune");
                assert_eq!(panel.step, step.number() - 1, "{what}");
            }
            ActionCommand::ShowCalculator(inputs) => {
                let panel = app.panel::<LessonsPanel>().expect("lessons");
                assert_eq!(&panel.calculator.inputs, inputs, "{what}");
                assert!(has_text(h, "Training compute: 6 ×"), "{what}: result shown");
            }
        }
    }
}

/// Clicks every "try it" button of every step of the open `lesson`, checking each for the state
/// it sets and the claims its lesson makes; ends on the last step. Returns the buttons checked.
fn walk_steps(h: &mut Harness<'static, GlassboxApp>, lesson: &Lesson) -> usize {
    let steps = lesson.steps.len();
    let mut checked = 0;
    for (index, step) in lesson.steps.iter().enumerate() {
        assert_eq!(lessons(h).step(), index, "{}", lesson.id);
        assert!(has_text(h, &format!("Step {} of {steps}", index + 1)));
        for action in step.actions() {
            click(h, &format!("Try it: {}", action.label));
            crate::app_support::settle(h);
            if missing_optional_model(h, lesson, action) {
                continue;
            }
            check_action(h, lesson, action);
            check_claims(h, lesson, action);
            checked += 1;
        }
        if index + 1 < steps {
            click(h, "Next step");
        }
    }
    checked
}

/// Opens `id` from the list and clicks every "try it" button of every step.
fn walk_lesson(id: &str) {
    let lesson = course()
        .into_iter()
        .find(|l| l.id == id)
        .expect("the lesson exists");
    let dir = temp_dir(id);
    let mut h = harness(app_in(&dir, &course_dir(), true));
    crate::app_support::settle(&mut h);
    click(&mut h, "Lessons");
    assert_eq!(h.state().current_view().id(), "lessons");
    click(&mut h, &format!("Open lesson: {}", lesson.title));
    assert_eq!(
        lessons(&h).open_lesson().map(|l| l.id.as_str()),
        Some(id),
        "the lesson opens"
    );
    walk_steps(&mut h, &lesson);
    assert!(
        h.state()
            .panel::<LessonsPanel>()
            .is_some_and(|l| l.is_open())
    );
    no_error_notices(&h);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A button that loads a model the course offers but does not ship (MiniLM, fetched by
/// `scripts/fetch-minilm.sh`): where it is missing, the button must say how to get it.
fn missing_optional_model(
    h: &Harness<'static, GlassboxApp>,
    lesson: &Lesson,
    action: &Action,
) -> bool {
    let wants_minilm = action.commands.iter().any(|c| {
        matches!(
            c,
            ActionCommand::LoadModel(ModelRef::Shipped(glassbox::lessons::ShippedModel::MiniLm))
        )
    });
    if !wants_minilm || h.state().shared.shipped.minilm.is_some() {
        return false;
    }
    match lessons(h).outcome(&lesson.id, action.line) {
        Some(Outcome::Failed(message)) => {
            assert!(message.contains("scripts/fetch-minilm.sh"), "{message}");
            println!("note: MiniLM is not on this machine; its button says how to fetch it");
        }
        other => panic!(
            "{}: without MiniLM the button must fail: {other:?}",
            action.label
        ),
    }
    true
}

/// The top next token the Predict view shows for the GPT (its readable form, `▁mouse`).
fn top_next_token(h: &Harness<'static, GlassboxApp>) -> String {
    let panel = h.state().panel::<PredictPanel>().expect("predict");
    assert_eq!(panel.mode, Mode::Gpt);
    let data = panel.next_data().expect("next-token data");
    data.order.first().expect("a next token").1.clone()
}

/// The tiny BERT's best guess for the first `[MASK]` of the current text.
fn top_fill(h: &mut Harness<'static, GlassboxApp>) -> String {
    let data = h
        .state_mut()
        .shared
        .inspection(Slot::Bert)
        .data()
        .expect("BERT's reading of the text");
    match &data.predictions {
        Predictions::FillMask { masks, .. } => masks[0].top[0].token.clone(),
        other => panic!("fill-mask predictions, got {other:?}"),
    }
}

/// What each try-it's lesson text says appears once it is clicked. Every button of the course is
/// listed, so a new button needs its claims written here (or a note that it makes none beyond
/// the state [`check_action`] checks).
fn check_claims(h: &mut Harness<'static, GlassboxApp>, lesson: &Lesson, action: &Action) {
    let what = format!("{} / {:?}", lesson.id, action.label);
    let label = action.label.as_str();
    let round2 =
        |c: &[f32]| -> Vec<f32> { c.iter().map(|c| (c * 100.0).round() / 100.0).collect() };
    match label {
        // Lesson 1: the next token, and sampling that starts from the text it sets.
        "Ask the tiny GPT what comes after \"the cat chased the\"" => {
            assert_eq!(top_next_token(h), "\u{2581}mouse", "{what}");
            assert!(
                has_text(h, "\u{2581}mouse"),
                "{what}: the bar is labelled readably"
            );
        }
        "Change the subject to a dog" => assert_eq!(top_next_token(h), "\u{2581}cat", "{what}"),
        "Generate a few tokens, one at a time" | "Turn the temperature up" => {
            let panel = h.state().panel::<PredictPanel>().expect("predict");
            let session = panel.session.as_ref().expect("a generation");
            assert_eq!(
                session.prompt, "the cat",
                "{what}: continues the lesson's text"
            );
        }
        "What did the fox chase?" => assert_eq!(top_next_token(h), "\u{2581}rabbit", "{what}"),
        // Lesson 3: the tokenizers and the two banks.
        "Tokenize the course sentence three ways" => {
            let panel = h.state().panel::<TokensPanel>().expect("tokens");
            let comparison = panel.comparison().expect("the tokenizers side by side");
            let counts: Vec<usize> = comparison.entries.iter().map(|e| e.tokens.len()).collect();
            assert!(counts.len() >= 3, "{what}: {counts:?}");
            assert_eq!(
                counts[0],
                "The cat chased the mouse.".len(),
                "{what}: one per character"
            );
        }
        "Tokenize a sentence from outside the tiny world" => {
            let panel = h.state().panel::<TokensPanel>().expect("tokens");
            let comparison = panel.comparison().expect("the tokenizers side by side");
            let bert = comparison
                .entries
                .iter()
                .find(|e| e.tokenizer_name.contains("BERT"))
                .expect("the tiny BERT's tokenizer");
            let tokens: Vec<&str> = bert.tokens.iter().map(|t| t.text.as_str()).collect();
            assert!(
                tokens.contains(&"##os"),
                "{what}: \"post\" spelled from pieces {tokens:?}"
            );
            assert!(
                tokens.contains(&"[UNK]"),
                "{what}: \"cheque\" has a letter it never saw"
            );
        }
        "Compare \"bank\" by the river and \"bank\" with the money, layer by layer" => {
            let panel = h.state().panel::<EmbeddingsPanel>().expect("embeddings");
            let comparison = panel.comparison(Slot::Bert).expect("a comparison");
            assert_eq!(comparison.static_cosine, 1.0, "{what}");
            assert_eq!(
                round2(&comparison.cosines),
                [1.0, 0.97, 0.96, 0.91, 0.81],
                "{what}"
            );
        }
        "Compare two money banks" => {
            let panel = h.state().panel::<EmbeddingsPanel>().expect("embeddings");
            let comparison = panel.comparison(Slot::Bert).expect("a comparison");
            assert_eq!(round2(&comparison.cosines).last(), Some(&0.95), "{what}");
        }
        "The real-language version, on all-MiniLM-L6-v2" => {
            let panel = h.state().panel::<EmbeddingsPanel>().expect("embeddings");
            let comparison = panel.comparison(Slot::Bert).expect("a comparison");
            let rounded = round2(&comparison.cosines);
            assert_eq!((rounded[0], rounded.last()), (0.99, Some(&0.8)), "{what}");
        }
        // Lesson 5: fill-mask, next-sentence prediction, the pair's packing, question answering.
        "Hide \"mouse\" and let the tiny BERT guess it"
        | "Hide who ate the cheese — the clue comes after the blank" => {
            assert_eq!(top_fill(h), "mouse", "{what}");
        }
        "A true continuation" | "A random sentence instead" => {
            let panel = h.state().panel::<PredictPanel>().expect("predict");
            let p = panel.nsp_prob().flatten().expect("an NSP probability");
            if label == "A true continuation" {
                assert!(p > 0.5, "{what}: P(IsNext) = {p}");
            } else {
                assert!(p < 0.5, "{what}: P(IsNext) = {p}");
            }
        }
        "See how the pair is packed into tokens" => {
            let panel = h.state().panel::<TokensPanel>().expect("tokens");
            let tokenized = panel.tokenized().expect("the pair tokenized");
            let tokens: Vec<&str> = tokenized.tokens.iter().map(|t| t.text.as_str()).collect();
            assert_eq!(tokens.first(), Some(&"[CLS]"), "{what}");
            assert_eq!(tokens.last(), Some(&"[SEP]"), "{what}");
            assert_eq!(
                tokens.iter().filter(|t| **t == "[SEP]").count(),
                2,
                "{what}"
            );
            let segments: Vec<u32> = tokenized.tokens.iter().map(|t| t.type_id).collect();
            let first_b = segments.iter().position(|s| *s == 1).expect("sentence B");
            assert_eq!(
                tokens[first_b - 1],
                "[SEP]",
                "{what}: B starts after the first [SEP]"
            );
            assert!(
                segments[first_b..].iter().all(|s| *s == 1),
                "{what}: {segments:?}"
            );
            assert!(has_text(h, "segment ids: 0 0"), "{what}: segment ids shown");
        }
        "Ask the tiny QA model where the cat sat" | "Ask it who chased the mouse" => {
            let panel = h.state().panel::<PredictPanel>().expect("predict");
            let answer = &panel.qa_result().expect("an answer").answer;
            let want = if label.contains("where") {
                "on the red mat"
            } else {
                "the cat"
            };
            assert_eq!(answer, want, "{what}");
        }
        "See the map of each model — GPT, BERT and the translator" | "The map of the tiny GPT" => {
            for part in ["GPT map: feed-forward (MLP)", "GPT map: token embeddings"] {
                assert!(has_text(h, part), "{what}: {part} drawn");
            }
            if label.starts_with("See") {
                assert!(has_text(h, "BERT map:"), "{what}: BERT's map drawn");
                assert!(has_text(h, "MT map:"), "{what}: the translator's map drawn");
            }
        }
        // Lesson 6 reads GPT again, after lesson 5 put BERT on a pair: one sentence, GPT's bars.
        "Look at GPT's causal attention" | "Both models on the same sentence" => {
            assert!(!h.state().shared.use_pair, "{what}: one sentence");
        }
        // The rest make no claim beyond the state check_action checks (the view, stage, layer,
        // head, token, step, preset, run or calculator they set).
        "Let it write a few sentences"
        | "Count the parameters of the tiny GPT"
        | "Compare with GPT-3"
        | "Start a forward pass of the tiny BERT — embeddings"
        | "Jump to the attention weights of layer 0"
        | "Jump to the feed-forward network of layer 0"
        | "Positions — the vectors added for \"where\""
        | "LayerNorm — each row rescaled before attention (layer 0)"
        | "The residual add — attention's result added to its input (layer 0)"
        | "Logits — one score per vocabulary entry for the next token"
        | "Show the encoder reading the whole sentence"
        | "Watch the tiny GPT write token by token"
        | "See the three embeddings the tiny BERT adds up"
        | "Compare \"mouse\" as the chaser's prey and as the eater"
        | "Step through the scores of the tiny GPT"
        | "…then the scaled scores after softmax"
        | "Put both models on the same sentence"
        | "The tiny translator's three kinds of attention side by side"
        | "Show the masked scores in the tiny GPT"
        | "Open one head of the tiny BERT and select \"chased\""
        | "Open the BERT-Base breakdown"
        | "Open the BERT-Large breakdown"
        | "DistilBERT"
        | "ALBERT-Base — see the shared layer"
        | "RoBERTa-Large"
        | "GPT-2 Small"
        | "GPT-2 XL"
        | "Open the GPT-3 breakdown"
        | "Ask the QA model a question" => {}
        _ if label.starts_with("Pretrain")
            || label.starts_with("GPT-3")
            || label.starts_with("How long")
            || label.starts_with("Step ")
            || label.starts_with("Fine-tune") => {}
        "Translate \"the cat chased the mouse .\" with the tiny translator"
        | "Translate \"the black cat chased the mouse .\" and go to step 3" => {
            let panel = h.state().panel::<TranslatePanel>().expect("translate");
            let translation = panel.translation().expect("a translation");
            assert!(translation.translation.starts_with("le chat"), "{what}");
        }
        other => panic!("{}: no claims listed for the try-it {other:?}", lesson.id),
    }
}

/// The whole course in one sitting: every lesson in order, every try-it of every step in one app,
/// each checked for the state it sets and for what its lesson says appears — so a button that
/// leans on what an earlier lesson left (a sentence pair, BERT's fill-mask mode, a generated
/// text) fails here.
#[test]
fn the_course_in_one_sitting() {
    let dir = temp_dir("one-sitting");
    let mut h = harness(app_in(&dir, &course_dir(), true));
    crate::app_support::settle(&mut h);
    click(&mut h, "Lessons");
    let course = course();
    let buttons: usize = course.iter().map(|l| l.actions().count()).sum();
    let mut checked = 0;
    for lesson in course {
        click(&mut h, &format!("Open lesson: {}", lesson.title));
        checked += walk_steps(&mut h, &lesson);
        click(&mut h, "Finish lesson");
    }
    no_error_notices(&h);
    let optional = usize::from(h.state().shared.shipped.minilm.is_none());
    assert_eq!(
        checked + optional,
        buttons,
        "every button of the course was clicked"
    );
    println!("{checked} of {buttons} buttons checked in one sitting");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lesson_what_is_an_llm() {
    walk_lesson("what-is-an-llm");
}

#[test]
fn lesson_transformer() {
    walk_lesson("transformer");
}

#[test]
fn lesson_tokens_and_embeddings() {
    walk_lesson("tokens-and-embeddings");
}

#[test]
fn lesson_attention() {
    walk_lesson("attention");
}

#[test]
fn lesson_bert() {
    walk_lesson("bert");
}

#[test]
fn lesson_gpt() {
    walk_lesson("gpt");
}

#[test]
fn lesson_training() {
    walk_lesson("training");
}

#[test]
fn lesson_fine_tuning() {
    walk_lesson("fine-tuning");
}

/// The test harness without models: the questions need none.
fn quiet_harness(dir: &Path) -> Harness<'static, GlassboxApp> {
    let mut h = harness(app_in(dir, &course_dir(), false));
    h.step();
    h
}

#[test]
fn every_question_checks_right_and_wrong_answers() {
    let dir = temp_dir("questions");
    let mut h = quiet_harness(&dir);
    click(&mut h, "Lessons");
    for lesson in course() {
        click(&mut h, &format!("Open lesson: {}", lesson.title));
        let numbers: Vec<String> = lesson.questions().map(|q| q.id.clone()).collect();
        for (index, step) in lesson.steps.iter().enumerate() {
            if step.questions().next().is_none() {
                continue;
            }
            h.state_mut()
                .panel_mut::<LessonsPanel>()
                .expect("lessons")
                .go_to(index);
            h.step();
            for question in step.questions() {
                let n = numbers
                    .iter()
                    .position(|id| *id == question.id)
                    .expect("numbered")
                    + 1;
                let what = format!("{} / {}", lesson.id, question.id);
                // A wrong answer first.
                match &question.kind {
                    QuestionKind::MultipleChoice {
                        choices,
                        answer_index,
                        ..
                    } => {
                        let wrong = (answer_index + 1) % choices.len();
                        h.get_by_role_and_label(
                            Role::RadioButton,
                            &format!("Question {n}: {}", choices[wrong]),
                        )
                        .click_accesskit();
                    }
                    QuestionKind::Number { answer, .. } => {
                        h.get_by_role_and_label(
                            Role::TextInput,
                            &format!("Your answer to question {n}:"),
                        )
                        .set_text_value_accesskit(&format!("{}", answer * 2.0 + 1.0));
                    }
                }
                h.step();
                click(&mut h, &format!("Check question {n}"));
                let verdict = lessons(&h)
                    .verdict(&lesson.id, &question.id)
                    .cloned()
                    .expect("a verdict");
                assert!(!verdict.correct, "{what}: a wrong answer passed");
                assert!(
                    verdict.message.starts_with("Not quite"),
                    "{what}: {verdict:?}"
                );
                assert!(has_text(&h, "Not quite"), "{what}: the verdict is shown");
                let record = lessons(&h)
                    .progress()
                    .answer(&lesson.id, &question.id)
                    .cloned()
                    .expect("recorded");
                assert!(
                    !record.correct && record.attempts == 1,
                    "{what}: {record:?}"
                );

                // Then the stated answer.
                match &question.kind {
                    QuestionKind::MultipleChoice {
                        choices,
                        answer_index,
                        ..
                    } => {
                        h.get_by_role_and_label(
                            Role::RadioButton,
                            &format!("Question {n}: {}", choices[*answer_index]),
                        )
                        .click_accesskit();
                    }
                    QuestionKind::Number { answer, .. } => {
                        h.get_by_role_and_label(
                            Role::TextInput,
                            &format!("Your answer to question {n}:"),
                        )
                        .set_text_value_accesskit(&format!("{answer}"));
                    }
                }
                h.step();
                click(&mut h, &format!("Check question {n}"));
                let verdict = lessons(&h)
                    .verdict(&lesson.id, &question.id)
                    .cloned()
                    .expect("a verdict");
                assert!(
                    verdict.correct,
                    "{what}: the stated answer failed: {verdict:?}"
                );
                assert!(has_text(&h, "Correct."), "{what}: the verdict is shown");
                let record = lessons(&h)
                    .progress()
                    .answer(&lesson.id, &question.id)
                    .cloned()
                    .expect("recorded");
                assert!(record.correct && record.attempts == 2, "{what}: {record:?}");
            }
        }
        let summary = lessons(&h).progress().summary(&lesson);
        assert_eq!(
            summary.questions_correct, summary.questions_total,
            "{}",
            lesson.id
        );
        click(&mut h, "◀ Lesson list");
    }
    // Every answer is on disk.
    let saved = Progress::load(&dir.join("progress.json")).expect("progress saved");
    assert_eq!(&saved, lessons(&h).progress());
    no_error_notices(&h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keys_move_between_steps_and_large_text_grows_the_lesson() {
    let dir = temp_dir("keys");
    let mut h = quiet_harness(&dir);
    click(&mut h, "Lessons");
    click(&mut h, "Open lesson: Attention, causal and bidirectional");
    let steps = lessons(&h).open_lesson().expect("open").steps.len();
    assert!(has_text(&h, &format!("Step 1 of {steps}")));
    let small = h
        .get_by_label(&format!("Step 1 of {steps}"))
        .rect()
        .height();

    h.key_press(egui::Key::ArrowRight);
    h.step();
    assert_eq!(lessons(&h).step(), 1);
    assert!(has_text(&h, &format!("Step 2 of {steps}")));
    h.key_press(egui::Key::PageDown);
    h.step();
    assert_eq!(lessons(&h).step(), 2);
    h.key_press(egui::Key::ArrowLeft);
    h.step();
    h.key_press(egui::Key::PageUp);
    h.step();
    assert_eq!(lessons(&h).step(), 0);
    // Moving on marked the steps passed as done.
    let progress = lessons(&h).progress().clone();
    assert!(progress.is_step_complete("attention", 0) && progress.is_step_complete("attention", 1));
    h.key_press(egui::Key::ArrowLeft);
    h.step();
    assert_eq!(lessons(&h).step(), 0, "no step before the first");

    // Large text: the lesson's own body font grows (the harness measures in zoomed points).
    h.state_mut().large_text = true;
    h.run_steps(3);
    let large = h
        .get_by_label(&format!("Step 1 of {steps}"))
        .rect()
        .height();
    assert!(large > small * 1.08, "large text {large} vs {small}");

    // Closing the lesson returns to the list.
    click(&mut h, "◀ Lesson list");
    assert!(!lessons(&h).is_open());
    assert_eq!(h.state().current_view().id(), "lessons");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broken_lesson_is_reported_and_the_others_still_open() {
    let dir = temp_dir("broken");
    let lessons_dir = dir.join("lessons");
    std::fs::create_dir_all(&lessons_dir).expect("dir");
    for name in ["01-what-is-an-llm.md", "04-attention.md"] {
        std::fs::copy(course_dir().join(name), lessons_dir.join(name)).expect("copy");
    }
    std::fs::write(
        lessons_dir.join("09-broken.md"),
        "---\nid: broken\ntitle: Broken\n---\n## A step\n\nText.\n\n```try\nlabel: Go\nview: nowhere\n```\n",
    )
    .expect("write");
    let mut h = harness(app_in(&dir, &lessons_dir, false));
    h.step();
    click(&mut h, "Lessons");
    assert!(
        has_text(&h, "09-broken.md:11"),
        "the error names the file and line: {:?}",
        lessons(&h).errors()
    );
    assert_eq!(lessons(&h).lessons().len(), 2);
    click(&mut h, "Open lesson: Attention, causal and bidirectional");
    assert!(lessons(&h).is_open());
    assert!(has_text(&h, "Step 1 of"));

    // Fixing the file and reloading brings it in.
    click(&mut h, "◀ Lesson list");
    std::fs::write(
        lessons_dir.join("09-broken.md"),
        "---\nid: broken\ntitle: Mended\n---\n## A step\n\nText.\n",
    )
    .expect("write");
    click(&mut h, "Reload lessons");
    assert!(lessons(&h).errors().is_empty());
    assert_eq!(lessons(&h).lessons().len(), 3);
    click(&mut h, "Open lesson: Mended");
    assert!(has_text(&h, "Step 1 of 1"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn progress_is_saved_and_loaded_by_a_new_app() {
    let dir = temp_dir("progress");
    let lesson = course()
        .into_iter()
        .find(|l| l.id == "attention")
        .expect("lesson");
    {
        let mut h = quiet_harness(&dir);
        click(&mut h, "Lessons");
        click(&mut h, "Open lesson: Attention, causal and bidirectional");
        click(&mut h, "Next step");
        click(&mut h, "Next step");
        let (index, question) = lesson
            .steps
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.questions().next().map(|q| (i, q.clone())))
            .expect("a question");
        h.state_mut()
            .panel_mut::<LessonsPanel>()
            .expect("lessons")
            .go_to(index);
        h.step();
        let QuestionKind::MultipleChoice {
            choices,
            answer_index,
            ..
        } = &question.kind
        else {
            panic!("the first question is multiple choice")
        };
        h.get_by_role_and_label(
            Role::RadioButton,
            &format!("Question 1: {}", choices[*answer_index]),
        )
        .click_accesskit();
        h.step();
        click(&mut h, "Check question 1");
        assert!(has_text(&h, "Correct."));
    }
    let saved = Progress::load(&dir.join("progress.json")).expect("saved");
    assert_eq!(saved.current_lesson.as_deref(), Some("attention"));
    assert!(saved.is_step_complete("attention", 0) && saved.is_step_complete("attention", 1));

    // A new app reads it: the list shows it, and the lesson opens where it was left.
    let mut h = quiet_harness(&dir);
    click(&mut h, "Lessons");
    assert_eq!(lessons(&h).progress(), &saved);
    let summary = saved.summary(&lesson);
    assert!(has_text(
        &h,
        &format!(
            "{}/{} steps done · 1/{} questions right",
            summary.steps_done, summary.steps_total, summary.questions_total
        )
    ));
    assert!(has_text(&h, "Answered correctly before.") || !lessons(&h).is_open());
    click(&mut h, "Open lesson: Attention, causal and bidirectional");
    assert_eq!(
        lessons(&h).step(),
        saved.lesson("attention").expect("lesson").current_step
    );
    assert!(has_text(&h, "Answered correctly before."));

    // A corrupt file: a note, a fresh start, no panic; the file is kept aside.
    drop(h);
    std::fs::write(dir.join("progress.json"), "{ not json").expect("write");
    let mut h = quiet_harness(&dir);
    h.step();
    assert!(
        h.state()
            .shared
            .notices
            .iter()
            .any(|n| !n.is_error && n.message.contains("could not be read")),
        "{:?}",
        h.state().shared.notices
    );
    assert_eq!(lessons(&h).progress(), &Progress::default());
    assert!(dir.join("progress.json.unreadable").is_file());
    click(&mut h, "Lessons");
    click(&mut h, "Open lesson: Attention, causal and bidirectional");
    assert_eq!(
        Progress::load(&dir.join("progress.json"))
            .expect("a good file again")
            .current_lesson
            .as_deref(),
        Some("attention")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_button_that_cannot_run_says_why_in_the_lesson() {
    let dir = temp_dir("cannot-run");
    let lessons_dir = dir.join("lessons");
    std::fs::create_dir_all(&lessons_dir).expect("dir");
    std::fs::write(
        lessons_dir.join("01-odd.md"),
        "---\nid: odd\ntitle: Odd buttons\n---\n## Buttons\n\n\
         ```try\nlabel: Select a giraffe\ntext: the cat sat .\ntoken: giraffe\nview: attention\n```\n\n\
         ```try\nlabel: Generate without a model\ntext: the cat\ngenerate: 5\n```\n",
    )
    .expect("write");

    // No models: generating needs the GPT.
    let mut h = harness(app_in(&dir, &lessons_dir, false));
    h.step();
    click(&mut h, "Lessons");
    click(&mut h, "Open lesson: Odd buttons");
    click(&mut h, "Try it: Generate without a model");
    wait_until(&mut h, 30, "the button to finish", |h| {
        !lessons(h).is_running()
    });
    let line = |label: &str| {
        course_like(&lessons_dir)
            .actions()
            .find(|a| a.label == label)
            .expect("button")
            .line
    };
    match lessons(&h).outcome("odd", line("Generate without a model")) {
        Some(Outcome::Failed(message)) => {
            assert!(message.contains("No GPT model is loaded"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        has_text(&h, "No GPT model is loaded"),
        "the reason is shown"
    );
    no_error_notices(&h);
    drop(h);

    // With models: a word that is not in the text.
    let mut h = harness(app_in(&dir, &lessons_dir, true));
    crate::app_support::settle(&mut h);
    click(&mut h, "Lessons");
    click(&mut h, "Open lesson: Odd buttons");
    click(&mut h, "Try it: Select a giraffe");
    crate::app_support::settle(&mut h);
    match lessons(&h).outcome("odd", line("Select a giraffe")) {
        Some(Outcome::Failed(message)) => {
            assert!(
                message.contains("There is no token \"giraffe\""),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(
        has_text(&h, "There is no token \"giraffe\""),
        "the reason is shown"
    );
    assert_eq!(
        h.state().shared.text,
        "the cat sat .",
        "the text was set before"
    );
    no_error_notices(&h);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The only lesson in `dir`.
fn course_like(dir: &Path) -> Lesson {
    let (mut lessons, errors) = load_lessons(dir);
    assert!(errors.is_empty(), "{errors:?}");
    lessons.remove(0)
}
