//! Snapshot images of the main views, rendered with wgpu (a software Vulkan driver is enough:
//! CI installs mesa-vulkan-drivers). The images live in `tests/snapshots/`; after a deliberate
//! change of the look, refresh them with `UPDATE_SNAPSHOTS=1 cargo test --test app snapshots`
//! and look at the new PNGs before committing them.
//!
//! The models are the random test fixtures, so the images do not change when the shipped models
//! are retrained; only the view itself is drawn (no side bar), so they do not change when views
//! are added either.

use egui_kittest::Harness;

use std::path::PathBuf;
use std::time::Instant;

use glassbox::app::assets::ShippedModels;
use glassbox::app::data::Slot;
use glassbox::app::panels::attention::AttentionPanel;
use glassbox::app::{AppOptions, GlassboxApp};

use crate::app_support::settle;

fn snapshot_harness(dark: bool) -> Harness<'static, GlassboxApp> {
    // Relative paths (tests run in the package root): the Model view shows the folders, and the
    // images must not depend on where the repository is checked out.
    let mut app = GlassboxApp::new(AppOptions {
        persisted: None,
        load_models: true,
        initial_view: None,
        open_models: Vec::new(),
        shipped: Some(ShippedModels {
            gpt: Some(PathBuf::from("tests/fixtures/gpt2")),
            bert: Some(PathBuf::from("tests/fixtures/bert")),
            translator: Some(PathBuf::from("assets/tiny-translator")),
            bert_qa: None,
            minilm: None,
            message: None,
            searched: Vec::new(),
        }),
        started: Instant::now(),
    });
    app.show_timings = false;
    app.dark = dark;
    Harness::builder()
        .with_size([1240.0, 860.0])
        .wgpu()
        .build_ui_state(|ui, app: &mut GlassboxApp| app.current_panel_ui(ui), app)
}

fn open(h: &mut Harness<'static, GlassboxApp>, id: &str) {
    let view = id.parse().unwrap_or_else(|e| panic!("{e}"));
    h.state_mut().open_view(view);
    settle(h);
    // Let hover highlights and animations fade out.
    h.remove_cursor();
    h.run_steps(4);
}

/// One test renders every view, so the wgpu device is set up once.
#[test]
fn main_views() {
    let mut h = snapshot_harness(true);
    settle(&mut h);
    let mut results = egui_kittest::SnapshotResults::new();
    for (id, name) in [
        ("model", "view_model"),
        ("tokens", "view_tokens"),
        ("attention", "view_attention"),
        ("params", "view_parameters"),
        ("translate", "view_translate"),
    ] {
        open(&mut h, id);
        results.add(h.try_snapshot(name));
    }

    // A selected token: its row and column outlined, in the light theme.
    h.state_mut().dark = false;
    if let Some(panel) = h.state_mut().panel_mut::<AttentionPanel>() {
        panel.select_token(Slot::Gpt, Some(2));
        panel.select_token(Slot::Bert, Some(3));
        panel.show_grid = false;
    }
    open(&mut h, "attention");
    results.add(h.try_snapshot("view_attention_light_selected"));
    results.unwrap();
}
