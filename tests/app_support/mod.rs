//! Helpers for the app tests (`tests/app.rs`, `tests/app/snapshots.rs`): the app on the test
//! fixtures, in a kittest harness, and a bounded wait for the model worker.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use glassbox::app::assets::ShippedModels;
use glassbox::app::{AppOptions, GlassboxApp, Persisted};

/// A fixture model folder.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The random tiny GPT-2 and BERT fixtures in the place of the shipped models, and the shipped
/// tiny translator (1 MB, trained: its translations are the real ones).
pub fn fixtures() -> ShippedModels {
    ShippedModels {
        gpt: Some(fixture("gpt2")),
        bert: Some(fixture("bert")),
        translator: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tiny-translator")),
        bert_qa: None,
        minilm: None,
        message: None,
        searched: Vec::new(),
    }
}

/// The app with the fixtures loading on its worker.
pub fn new_app(persisted: Option<Persisted>) -> GlassboxApp {
    GlassboxApp::new(AppOptions {
        persisted,
        load_models: true,
        initial_view: None,
        open_models: Vec::new(),
        shipped: Some(fixtures()),
        started: Instant::now(),
    })
}

pub fn harness(app: GlassboxApp) -> Harness<'static, GlassboxApp> {
    harness_sized(app, [1500.0, 1100.0])
}

pub fn harness_sized(app: GlassboxApp, size: [f32; 2]) -> Harness<'static, GlassboxApp> {
    Harness::builder()
        .with_size(size)
        .build_ui_state(|ui, app: &mut GlassboxApp| app.ui(ui), app)
}

/// Steps frames until the worker has answered everything the views asked for (bounded).
pub fn settle(h: &mut Harness<'_, GlassboxApp>) {
    settle_within(h, 120);
}

/// [`settle`] with a bound of `secs` seconds.
pub fn settle_within(h: &mut Harness<'_, GlassboxApp>, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut idle_frames = 0;
    while idle_frames < 3 {
        h.step();
        if h.state().is_idle() {
            idle_frames += 1;
        } else {
            idle_frames = 0;
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not answer in time"
        );
    }
}

/// Steps frames until `done` holds (at most `secs` seconds).
pub fn wait_until(
    h: &mut Harness<'static, GlassboxApp>,
    secs: u64,
    what: &str,
    mut done: impl FnMut(&mut Harness<'static, GlassboxApp>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        h.step();
        if done(h) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Fails with the error notices the window shows, if any.
pub fn no_error_notices(h: &Harness<'_, GlassboxApp>) {
    let errors: Vec<_> = h
        .state()
        .shared
        .notices
        .iter()
        .filter(|n| n.is_error)
        .collect();
    assert!(errors.is_empty(), "error notices: {errors:?}");
}
