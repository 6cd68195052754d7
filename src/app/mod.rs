//! The desktop app (eframe/egui): one window, a list of views on the left, the shared text on
//! top, a status bar below.
//!
//! # Layout of the code
//!
//! - [`shell`]: [`GlassboxApp`], the window around the panels (view list, text, theme, large
//!   text, error banners, status bar, persistence). [`run`] opens it.
//! - [`panels`]: one module per view, each a struct with its own state implementing
//!   [`panels::Panel`]; [`panels::all`] lists them.
//! - [`widgets`]: what panels share — [`widgets::Heatmap`] (colour scale, legend, labels, hover
//!   read-out, row/column selection, mask overlay), token chips, bars, export buttons (PNG / CSV /
//!   JSON), a folder browser.
//! - [`worker`]: the thread that owns the models and runs every forward pass. **The UI thread
//!   never runs a forward pass or a training step.** Panels send a [`worker::Command`] and read
//!   the answer on a later frame; answers are plain data ([`data`]).
//! - [`state`]: [`state::Shared`], what every panel gets: the current text, the loaded models'
//!   summaries, the worker, notices; plus [`state::Cached`] for a panel's own requests.
//!
//! # Adding a view
//!
//! 1. A variant of [`crate::lessons::ViewName`] (its id and side bar title), so lessons and
//!    `GLASSBOX_VIEW` can name it.
//! 2. `src/app/panels/my_view.rs`: a struct with the view's state, deriving `Serialize` /
//!    `Deserialize` (fields that are not settings marked `#[serde(skip)]`), implementing
//!    [`panels::Panel`]:
//!
//!    ```ignore
//!    #[derive(Default, Serialize, Deserialize)]
//!    #[serde(default)]
//!    pub struct MyView {
//!        layer: usize,                                   // a setting: saved between runs
//!        #[serde(skip)]
//!        answer: Cached<(Slot, u64, String), Arc<InspectionData>>,
//!    }
//!
//!    impl Panel for MyView {
//!        fn view(&self) -> ViewName { ViewName::MyView }
//!        fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
//!            // The current text through a model, computed on the worker and cached:
//!            let fetch = shared.inspection(Slot::Gpt);          // or inspection_full(...)
//!            let Some(data) = widgets::fetch_status(ui, Slot::Gpt, &fetch) else { return };
//!            // ... draw `data` (plain Vec<f32> matrices) with widgets::Heatmap etc.
//!        }
//!        fn save_state(&self) -> Option<serde_json::Value> { serde_json::to_value(self).ok() }
//!        fn load_state(&mut self, state: serde_json::Value) {
//!            if let Ok(saved) = serde_json::from_value(state) { *self = saved }
//!        }
//!    }
//!    ```
//!
//! 3. `pub mod my_view;` in `src/app/panels/mod.rs` and one line in [`panels::all`].
//!
//! The side bar, the Ctrl+number shortcut, persistence and [`panels::Action`] dispatch come with
//! it. A view only draws: what it shows that is computed lives in the library.
//!
//! For a computation no [`worker::Command`] offers: write it as a library function in
//! [`crate::analysis`] (it gets a `&LoadedModel` and returns plain data, and is unit-tested there),
//! add a [`worker::Command`] variant and its [`worker::Output`] answer, and call the function in
//! `Worker::execute`. The panel asks for it like any other answer:
//!
//! ```ignore
//! let key = (Slot::Gpt, shared.generation(Slot::Gpt), shared.text.clone());
//! let fetch = self.norms.fetch(shared, key, || Command::EmbeddingNorms { slot: Slot::Gpt },
//!     |out| match out { Output::EmbeddingNorms(norms) => Some(norms), _ => None });
//! ```
//!
//! Programmatic control (lessons, tests): [`GlassboxApp::apply`] with a [`panels::Action`]
//! (set the text, open a view, load a model, select layer/head/token/preset, mask a token, step
//! through, start a run, ...), or typed access with [`GlassboxApp::panel_mut`]. Tests drive
//! [`GlassboxApp::ui`] inside an `egui_kittest` harness; `GLASSBOX_VIEW=attention` opens a view
//! at start.
//!
//! Lessons: [`panels::lessons`] lists the course; an open lesson is drawn by the shell in a pane
//! right of the central view. Its "try it" buttons become [`panels::Action`]s through a runner
//! that waits for models and tokens ([`panels::lessons::runner`]); the shell applies them like
//! any other action.

use eframe::egui;
pub mod assets;
pub mod data;
pub mod launch;
pub mod panels;
pub mod shell;
pub mod state;
pub mod widgets;
pub mod worker;

use std::time::Instant;

pub use launch::Launch;
use panels::lessons::{LessonsPanel, StartLesson};
pub use panels::{Action, Panel};
pub use shell::{AppOptions, GlassboxApp, Persisted, STORAGE_KEY};

/// Opens the window. Models load on the worker after the first frame is up.
///
/// Environment: `GLASSBOX_VIEW` opens a view by id (lessons, model, tokens, attention, params,
/// ...); `GLASSBOX_TEXT` sets the text; `GLASSBOX_THEME=light|dark`; `GLASSBOX_TIMING=1` prints
/// the time to the first frame and the UI frame times every 5 s; `GLASSBOX_ASSETS` points at the
/// shipped models' folder; `GLASSBOX_LESSONS` at a lessons folder. `GLASSBOX_LESSON=attention`
/// opens a lesson beside the views (`attention:3` at its third step; `none` opens none); without
/// it the lesson open when the app last closed comes back (the first lesson on a first start).
pub fn run() -> anyhow::Result<()> {
    run_with(Launch::default())
}

/// [`run`] with models, view and text chosen on the command line.
pub fn run_with(launch: Launch) -> anyhow::Result<()> {
    let started = Instant::now();
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Glassbox")
            .with_app_id("glassbox")
            .with_inner_size([1440.0, 900.0])
            .with_min_inner_size([720.0, 480.0]),
        ..Default::default()
    };
    eframe::run_native(
        "Glassbox",
        options,
        Box::new(move |cc| {
            let mut persisted: Option<Persisted> = cc
                .storage
                .and_then(|storage| eframe::get_value(storage, STORAGE_KEY));
            if let Some(text) = launch
                .text
                .clone()
                .or_else(|| std::env::var("GLASSBOX_TEXT").ok())
            {
                persisted.get_or_insert_with(Persisted::default).text = text;
            }
            if let Ok(theme) = std::env::var("GLASSBOX_THEME") {
                persisted.get_or_insert_with(Persisted::default).dark = theme != "light";
            }
            let mut app = GlassboxApp::new(AppOptions {
                persisted,
                load_models: true,
                initial_view: launch
                    .view
                    .clone()
                    .or_else(|| std::env::var("GLASSBOX_VIEW").ok()),
                open_models: launch.models.clone(),
                shipped: None,
                started,
            });
            let start = match std::env::var("GLASSBOX_LESSON") {
                Ok(id) if id.eq_ignore_ascii_case("none") => None,
                Ok(id) => Some(StartLesson::Id(id)),
                Err(_) => Some(StartLesson::Resume),
            };
            if let (Some(start), Some(lessons)) = (start, app.panel_mut::<LessonsPanel>()) {
                lessons.open_on_start(start);
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
