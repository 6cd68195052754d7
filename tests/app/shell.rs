//! The desktop app in an egui_kittest harness: every view opened through its accessible label,
//! and what it shows checked against the library.

use std::path::PathBuf;

use eframe::egui;
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

use glassbox::app::data::{ModelSource, Slot};
use glassbox::app::panels::attention::{AttentionPanel, Models};
use glassbox::app::panels::model::ModelPanel;
use glassbox::app::panels::params::ParamsPanel;
use glassbox::app::panels::tokens::{TokensPanel, filter_vocab};
use glassbox::app::widgets::format_value;
use glassbox::app::{Action, GlassboxApp, Persisted};
use glassbox::inspect::inspect;
use glassbox::model::checkpoint::load_dir;
use glassbox::model::params::{Preset, format_bytes, group_thousands};
use glassbox::tokenizer::Tokenizer;

use crate::app_support::{fixture, harness, harness_sized, new_app, settle};

const TEXT: &str = "The cat chased the mouse.";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glassbox-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn open_view(h: &mut Harness<'static, GlassboxApp>, title: &str) {
    h.get_by_role_and_label(Role::Button, title).click();
    settle(h);
}

fn has_label(h: &Harness<'static, GlassboxApp>, label: &str) -> bool {
    h.query_by_label(label).is_some()
}

#[test]
fn every_view_opens_through_its_label() {
    let mut h = harness(new_app(None));
    settle(&mut h);
    let views = h.state().views();
    assert!(views.len() >= 4);
    for (id, title) in views {
        open_view(&mut h, title);
        assert_eq!(h.state().current_view().id(), id, "clicking {title:?}");
        // The view's heading repeats its title (the button is the other node with that label).
        assert!(
            h.query_all_by_label(title).count() >= 2,
            "view {title:?} shows no heading"
        );
    }
    assert!(
        h.state().shared.notices.is_empty(),
        "{:?}",
        h.state().shared.notices
    );
}

/// A copy of fixture `name` in a fresh folder called `new_name`, to tell it from the shipped one.
fn fixture_copy(name: &str, new_name: &str) -> PathBuf {
    let dir = temp_dir(&format!("copy-{new_name}")).join(new_name);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

/// The app as `glassbox open` starts it (with the fixtures as the shipped models).
fn launched_app(launch: &glassbox::app::Launch) -> GlassboxApp {
    GlassboxApp::new(glassbox::app::AppOptions {
        persisted: None,
        load_models: true,
        initial_view: launch.view.clone(),
        open_models: launch.models.clone(),
        shipped: Some(crate::app_support::fixtures()),
        started: std::time::Instant::now(),
    })
}

/// `glassbox open DIR --view V`: the folder takes its family's place (the other family keeps the
/// shipped model), the view opens; bad arguments are refused before any window opens.
#[test]
fn open_puts_models_in_their_place_and_checks_its_arguments() {
    use glassbox::app::Launch;
    use glassbox::app::data::{ModelSource, Slot};
    let dir = fixture_copy("bert", "my-bert");
    let launch = Launch::from_args(
        &[dir.display().to_string()],
        Some("attention"),
        Some("the cat sat"),
    )
    .unwrap();
    assert_eq!(launch.models, vec![ModelSource::Folder(dir.clone())]);
    let app = launched_app(&launch);
    let mut h = harness(app);
    settle(&mut h);
    assert_eq!(h.state().current_view().id(), "attention");
    let bert = h.state().shared.model(Slot::Bert).expect("BERT loaded");
    assert_eq!(bert.dir, dir);
    let gpt = h.state().shared.model(Slot::Gpt).expect("GPT loaded");
    assert!(gpt.dir.ends_with("gpt2"), "{}", gpt.dir.display());

    let refused = |models: &[&str], view: Option<&str>| {
        let models: Vec<String> = models.iter().map(|m| m.to_string()).collect();
        Launch::from_args(&models, view, None)
            .expect_err("refused")
            .to_string()
    };
    assert!(refused(&[], Some("atention")).contains("attention"));
    // An encoder–decoder opens too (in the translator's place).
    let marian = fixture("marian");
    let opened = Launch::from_args(&[marian.display().to_string()], None, None).unwrap();
    assert_eq!(opened.models, vec![ModelSource::Folder(marian)]);
    assert!(refused(&["./no/such/folder"], None).contains("neither"));
    // A Hub id is taken as one (downloaded by the app).
    let hub = Launch::from_args(&["org/tiny".to_string()], None, None).unwrap();
    assert_eq!(hub.models, vec![ModelSource::Hub("org/tiny".into())]);
}

/// Any number of models: a second model of a family loads beside the first (from `open` or
/// the Model view's "Load beside the others"), and the Attention view compares any two.
#[test]
fn more_models_than_two_and_any_two_side_by_side() {
    use glassbox::app::data::Slot;
    use glassbox::app::panels::attention::Models;
    let second_gpt = fixture_copy("gpt2", "other-gpt");
    let launch = glassbox::app::Launch::from_args(
        &[
            fixture("gpt2").display().to_string(),
            second_gpt.display().to_string(),
        ],
        Some("attention"),
        None,
    )
    .unwrap();
    let app = launched_app(&launch);
    let mut h = harness(app);
    settle(&mut h);
    let slots = h.state().shared.loaded_slots();
    // GPT, BERT, the second GPT beside them, and the shipped translator in its own place.
    assert_eq!(slots.len(), 4, "{slots:?}");
    assert!(slots.contains(&Slot::Translator));
    let extra = Slot::extra(0);
    assert_eq!(h.state().shared.model(extra).unwrap().dir, second_gpt);
    // The Attention view offers it: compare the two GPTs.
    h.get_by_role_and_label(Role::ComboBox, "Right model")
        .click();
    h.run_steps(2);
    h.get_by_label("other-gpt (M3)").click();
    settle(&mut h);
    let panel = h.state().panel::<AttentionPanel>().unwrap();
    assert_eq!(panel.compare, [Slot::Gpt, extra]);
    assert_eq!(panel.models, Models::SideBySide);
    assert!(has_label(&h, "GPT and M3 side by side"));
    assert!(
        h.state().shared.notices.is_empty(),
        "{:?}",
        h.state().shared.notices
    );

    // The Embeddings view's word comparison can include it.
    open_view(&mut h, "Embeddings");
    // The comparison is at the bottom of the view.
    h.get_by_role_and_label(Role::CheckBox, "other-gpt (M3)")
        .scroll_to_me();
    h.run_steps(3);
    h.get_by_role_and_label(Role::CheckBox, "other-gpt (M3)")
        .click();
    settle(&mut h);
    let embeddings = h
        .state()
        .panel::<glassbox::app::panels::embeddings::EmbeddingsPanel>()
        .unwrap();
    assert!(embeddings.compare.extra.contains(&extra));

    // The Model view lists it with an Unload button, and loads another one beside the others.
    open_view(&mut h, "Model");
    // Below the model cards and their maps: clicked through accessibility.
    h.get_by_label("Load beside the others (keep the model of its family; a place of its own)")
        .click_accesskit();
    h.run_steps(1);
    let bert = fixture("bert").display().to_string();
    h.state_mut()
        .panel_mut::<glassbox::app::panels::model::ModelPanel>()
        .unwrap()
        .folder_text = bert;
    // Below the model cards (the translator's too): clicked through accessibility.
    h.get_by_role_and_label(Role::Button, "Local folder")
        .click_accesskit();
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Load folder")
        .click_accesskit();
    settle(&mut h);
    assert_eq!(h.state().shared.loaded_slots().len(), 5);
    h.get_by_label("Unload other-gpt").click_accesskit();
    settle(&mut h);
    assert!(h.state().shared.model(extra).is_none());
    assert_eq!(h.state().shared.loaded_slots().len(), 4);
}

#[test]
fn model_view_shows_config_and_memory() {
    let mut h = harness(new_app(None));
    settle(&mut h);
    open_view(&mut h, "Model");
    for name in ["gpt2", "bert"] {
        let loaded = load_dir(&fixture(name), &candle_core::Device::Cpu).unwrap();
        let breakdown = glassbox::model::params::breakdown_for_config(&loaded.config);
        let memory = format_bytes(glassbox::model::params::memory_bytes_f32(
            breakdown.exact_total,
        ));
        let label = format!("{memory} = parameters × 4 bytes");
        assert!(has_label(&h, &label), "missing {label:?}");
        // In the summary and in the map's legend.
        assert!(
            h.query_all_by_label_contains(&group_thousands(breakdown.exact_total))
                .next()
                .is_some()
        );
    }
    // A folder that is not there: an error banner, no panic.
    h.state_mut().panel_mut::<ModelPanel>().unwrap().folder_text = "/no/such/model/folder".into();
    h.state_mut().panel_mut::<ModelPanel>().unwrap().kind =
        glassbox::app::panels::model::SourceKind::Folder;
    h.step();
    // Below the model cards and their maps: clicked through accessibility.
    h.get_by_role_and_label(Role::Button, "Load folder")
        .click_accesskit();
    settle(&mut h);
    let notices = &h.state().shared.notices;
    assert!(
        notices
            .iter()
            .any(|n| n.is_error && n.message.contains("/no/such/model/folder")),
        "{notices:?}"
    );
    assert!(h.query_by_label_contains("file not found").is_some());
}

#[test]
fn tokens_view_matches_the_tokenizer() {
    let mut h = harness(new_app(None));
    settle(&mut h);
    open_view(&mut h, "Tokens");
    let tokenizer = Tokenizer::from_file(&fixture("gpt2").join("tokenizer.json")).unwrap();
    let encoded = tokenizer.encode(TEXT, true).unwrap();
    let count_label = format!("{} tokens (", encoded.ids.len());
    assert!(
        h.query_by_label_contains(&count_label).is_some(),
        "no {count_label:?}"
    );
    for (i, (token, id)) in encoded.tokens.iter().zip(&encoded.ids).enumerate() {
        // In the strip, and again in the side-by-side table's gpt2 row; labelled readably
        // (`▁cat`, not the tokenizer's `Ġcat`).
        let chip = format!("token {i}: {} (id {id})", tokenizer.readable_token(token));
        assert!(h.query_all_by_label(&chip).count() >= 1, "no chip {chip:?}");
    }
    // Side by side: the char tokenizer gives one token per character.
    let comparison = h
        .state()
        .panel::<TokensPanel>()
        .and_then(|p| p.comparison().cloned())
        .expect("comparison computed");
    let char_entry = &comparison.entries[0];
    assert_eq!(char_entry.tokens.len(), TEXT.chars().count());
    assert!(
        comparison.entries.len() >= 5,
        "char, BPE, WordPiece, GPT, BERT"
    );
    let bpe = comparison
        .entries
        .iter()
        .find(|e| e.tokenizer_name.starts_with("byte-level BPE"))
        .unwrap();
    let trained = Tokenizer::train_bpe(glassbox::data::tokenizer_corpus(), 500).unwrap();
    assert_eq!(
        bpe.tokens.len(),
        trained.encode(TEXT, true).unwrap().ids.len()
    );

    // The vocabulary browser's filter.
    h.state_mut()
        .panel_mut::<TokensPanel>()
        .unwrap()
        .vocab_filter = "at".into();
    settle(&mut h);
    let vocab: Vec<glassbox::app::data::VocabEntry> = glassbox::app::data::vocabulary(&tokenizer);
    let expected = filter_vocab(&vocab, "at").len();
    let label = format!("{expected} of {} tokens", vocab.len());
    assert!(has_label(&h, &label), "missing {label:?}");
}

#[test]
fn attention_hover_shows_the_traced_value() {
    let mut h = harness(new_app(None));
    settle(&mut h);
    open_view(&mut h, "Attention");
    {
        let panel = h.state_mut().panel_mut::<AttentionPanel>().unwrap();
        panel.models = Models::Only(Slot::Gpt);
        panel.select_layer_head(1, Some(2));
        panel.show_grid = false;
    }
    settle(&mut h);
    assert!(h.query_by_label("GPT attention layer 1 head 2").is_some());

    let loaded = load_dir(&fixture("gpt2"), &candle_core::Device::Cpu).unwrap();
    let inspection = inspect(&loaded, TEXT, None, 5).unwrap();
    let probs = inspection.trace.layers[1]
        .attention_probs
        .as_ref()
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    let (row, col) = (4, 2);
    let expected = probs[2][row][col];

    let geometry = h.state().panel::<AttentionPanel>().unwrap().geometry[&Slot::Gpt];
    h.hover_at(geometry.cell_center(row, col));
    h.run_steps(3);
    let (slot, readout) = h
        .state()
        .panel::<AttentionPanel>()
        .unwrap()
        .last_hover
        .clone()
        .expect("hover read-out");
    assert_eq!(slot, Slot::Gpt);
    assert_eq!((readout.row, readout.col), (row, col));
    assert!(
        (readout.value - expected).abs() < 1e-6,
        "{} vs {expected}",
        readout.value
    );
    let tokenizer = loaded.tokenizer().unwrap();
    let readable = |i: usize| tokenizer.readable_token(&inspection.encoded.tokens[i]);
    assert_eq!(readout.row_label, readable(row));
    assert_eq!(readout.col_label, readable(col));
    // And it is on screen, exactly.
    assert!(has_label(&h, &readout.text()));
    assert!(readout.text().ends_with(&format_value(expected)));

    // Above the diagonal the causal mask blocks: probability 0, hatched.
    h.hover_at(geometry.cell_center(1, 3));
    h.run_steps(3);
    let (_, blocked) = h
        .state()
        .panel::<AttentionPanel>()
        .unwrap()
        .last_hover
        .clone()
        .unwrap();
    assert!(blocked.blocked);
    assert_eq!(blocked.value, 0.0);
}

#[test]
fn attention_side_by_side_and_token_selection() {
    // Tall enough that the layer × head grid is on screen below the two large maps.
    let mut h = harness_sized(new_app(None), [1500.0, 2400.0]);
    settle(&mut h);
    open_view(&mut h, "Attention");
    assert!(has_label(&h, "GPT attention layer 0 head 0"));
    assert!(has_label(&h, "BERT attention layer 0 head 0"));
    assert!(h.query_by_label_contains("Causal mask:").is_some());
    assert!(has_label(
        &h,
        "No mask: every token sees every token (bidirectional)."
    ));
    // The grid of every layer × head, with the mean.
    assert!(has_label(&h, "BERT thumbnail layer 1 head 3"));
    assert!(has_label(&h, "GPT thumbnail layer 1 mean over heads"));
    h.get_by_label("BERT thumbnail layer 1 head 3").click();
    h.run_steps(2);
    let panel = h.state().panel::<AttentionPanel>().unwrap();
    assert_eq!((panel.layer, panel.head), (1, Some(3)));

    // Clicking a BERT token selects its row and column.
    let tokenizer = Tokenizer::from_file(&fixture("bert").join("tokenizer.json")).unwrap();
    let encoded = tokenizer.encode(TEXT, true).unwrap();
    let chip = format!("token 2: {} (id {})", encoded.tokens[2], encoded.ids[2]);
    let chips: Vec<_> = h.query_all_by_label(&chip).collect();
    assert_eq!(chips.len(), 1, "one BERT chip {chip:?}");
    chips[0].click();
    h.run_steps(2);
    let panel = h.state().panel::<AttentionPanel>().unwrap();
    assert_eq!(panel.selected.get(&Slot::Bert), Some(&2));
    assert!(
        h.query_by_label_contains("attends most to (its row)")
            .is_some()
    );

    // Lines view.
    h.get_by_role_and_label(Role::Button, "Lines").click();
    settle(&mut h);
    assert!(has_label(&h, "GPT attention layer 1 head 3"));
}

#[test]
fn params_view_totals_are_the_exact_counts() {
    let mut h = harness(new_app(None));
    settle(&mut h);
    open_view(&mut h, "Parameters");
    for preset in [
        Preset::BertBase,
        Preset::BertLarge,
        Preset::Gpt2,
        Preset::Gpt3_175b,
        Preset::TransformerBase,
        Preset::MarianEnFr,
    ] {
        h.get_by_role_and_label(Role::Button, preset.display_name())
            .click();
        h.run_steps(2);
        let b = preset.breakdown();
        let label = format!("Exact total: {} parameters", group_thousands(b.exact_total));
        assert!(has_label(&h, &label), "{preset:?}: missing {label:?}");
        let label = format!("Textbook total: {}", group_thousands(b.textbook_total));
        assert!(has_label(&h, &label), "{preset:?}: missing {label:?}");
    }
    // Marian en→fr: `num_parameters()` and the trainable count, cross-attention in the table.
    h.get_by_role_and_label(Role::Button, "Marian en→fr")
        .click();
    h.run_steps(2);
    assert!(has_label(&h, "Exact total: 75,133,952 parameters"));
    assert!(has_label(&h, "Trainable: 74,609,664 (fixed sinusoids not)"));
    assert!(has_label(
        &h,
        "decoder layers 0–5: cross-attention query (Q)"
    ));

    // BERT-Base is 109,482,240 exactly (as `transformers` counts BertModel).
    h.get_by_role_and_label(Role::Button, "BERT-Base").click();
    h.run_steps(2);
    assert!(has_label(&h, "Exact total: 109,482,240 parameters"));

    // The loaded GPT: the breakdown of its config.
    h.get_by_role_and_label(Role::Button, "GPT (gpt2)").click();
    h.run_steps(2);
    let loaded = load_dir(&fixture("gpt2"), &candle_core::Device::Cpu).unwrap();
    let b = glassbox::model::params::breakdown_for_config(&loaded.config);
    assert!(has_label(
        &h,
        &format!("Exact total: {} parameters", group_thousands(b.exact_total))
    ));
    assert_eq!(
        b.exact_total,
        glassbox::model::params::actual_count(loaded.tensor_shapes.iter().cloned())
    );

    // Custom: the sliders' config.
    h.get_by_role_and_label(Role::Button, "Custom config")
        .click();
    h.run_steps(2);
    let custom = h.state().panel::<ParamsPanel>().unwrap().custom;
    let b = custom.breakdown();
    assert!(has_label(
        &h,
        &format!("Exact total: {} parameters", group_thousands(b.exact_total))
    ));
}

#[test]
fn exports_write_files() {
    let dir = temp_dir("app-export");
    let mut h = harness(new_app(None));
    h.state_mut().shared.export_dir = dir.clone();
    settle(&mut h);
    open_view(&mut h, "Parameters");
    for format in ["CSV", "JSON", "PNG"] {
        h.get_by_role_and_label(Role::Button, format).click();
        h.run_steps(2);
    }
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    let csv = files
        .iter()
        .find(|p| p.extension().unwrap() == "csv")
        .unwrap();
    let text = std::fs::read_to_string(csv).unwrap();
    assert!(text.starts_with("component,group,exact formula,exact"));
    let png = files
        .iter()
        .find(|p| p.extension().unwrap() == "png")
        .unwrap();
    assert_eq!(&std::fs::read(png).unwrap()[..4], b"\x89PNG");
    assert!(h.query_by_label_contains("saved ").is_some());

    open_view(&mut h, "Attention");
    let before = std::fs::read_dir(&dir).unwrap().count();
    let csv_buttons: Vec<_> = h.query_all_by_role_and_label(Role::Button, "CSV").collect();
    assert_eq!(csv_buttons.len(), 2, "one export row per model");
    csv_buttons[0].click();
    h.run_steps(2);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), before + 1);
}

#[test]
fn actions_drive_the_views() {
    let mut h = harness(new_app(None));
    settle(&mut h);
    h.state_mut().apply(Action::SelectPreset(Preset::Gpt3_175b));
    h.run_steps(2);
    assert_eq!(h.state().current_view().id(), "params");
    let b = Preset::Gpt3_175b.breakdown();
    assert!(has_label(
        &h,
        &format!("Exact total: {} parameters", group_thousands(b.exact_total))
    ));

    h.state_mut()
        .apply(Action::SetText("The dog sat on the mat.".into()));
    h.state_mut().apply(Action::SelectLayerHead {
        slot: Some(Slot::Bert),
        layer: 1,
        head: None,
    });
    settle(&mut h);
    assert_eq!(h.state().current_view().id(), "attention");
    assert!(has_label(&h, "BERT attention layer 1 mean over heads"));
    let data = h.state_mut().shared.inspection(Slot::Bert).data().unwrap();
    assert_eq!(data.text, "The dog sat on the mat.");

    // A view name from outside (GLASSBOX_VIEW, `glassbox open --view`) is checked once, where
    // it is read; inside the app a view is a ViewName.
    let unknown = "no-such-view".parse::<glassbox::lessons::ViewName>();
    assert!(unknown.is_err_and(|e| e.contains("the views are")));
}

#[test]
fn settings_persist_between_runs() {
    let mut h = harness(new_app(None));
    settle(&mut h);
    h.state_mut().set_text("A bird sang.");
    h.state_mut().open_view(glassbox::lessons::ViewName::Tokens);
    h.state_mut().dark = false;
    h.run_steps(1);
    let saved = h.state().persisted();
    let json = serde_json::to_string(&saved).unwrap();
    let restored: Persisted = serde_json::from_str(&json).unwrap();
    assert_eq!(restored.view, "tokens");
    assert_eq!(restored.text, "A bird sang.");
    assert!(!restored.dark);
    assert_eq!(
        restored.models.get(&Slot::Gpt),
        Some(&ModelSource::Folder(fixture("gpt2")))
    );
    let app = new_app(Some(restored));
    assert_eq!(app.current_view().id(), "tokens");
    assert_eq!(app.shared.text, "A bird sang.");
}
