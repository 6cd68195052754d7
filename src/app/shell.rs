//! The window around the panels: the view list, the shared text, theme and large-text switches,
//! error banners, the status bar, persistence.

use eframe::egui;
use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use egui::{Color32, Key, Modifiers, RichText, Ui};
use serde::{Deserialize, Serialize};

use super::assets::ShippedModels;
use super::data::{ModelSource, Slot};
use super::panels::lessons::LessonsPanel;
use super::panels::{self, Action, Panel};
use super::state::{Notice, Shared};
use super::worker::WorkerHandle;
use crate::lessons::ViewName;

/// The key under which the app's settings are stored.
pub const STORAGE_KEY: &str = "glassbox";

/// What is remembered between runs (window layout is kept by eframe itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Persisted {
    pub view: String,
    pub text: String,
    pub pair: String,
    pub use_pair: bool,
    pub dark: bool,
    pub large_text: bool,
    pub device: String,
    pub export_dir: PathBuf,
    /// The model last loaded in each slot.
    pub models: BTreeMap<Slot, ModelSource>,
    /// Each panel's own settings, by panel id.
    pub panels: BTreeMap<String, serde_json::Value>,
}

impl Default for Persisted {
    fn default() -> Self {
        Self {
            view: "attention".into(),
            text: super::state::DEFAULT_TEXT.into(),
            pair: "It ran under the table.".into(),
            use_pair: false,
            dark: true,
            large_text: false,
            device: "cpu".into(),
            export_dir: PathBuf::from("exports"),
            models: BTreeMap::new(),
            panels: BTreeMap::new(),
        }
    }
}

/// How to start the app.
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// Settings from the last run.
    pub persisted: Option<Persisted>,
    /// Load the models (last used, else shipped) on the worker at start.
    pub load_models: bool,
    /// A view id to open instead of the remembered one (`GLASSBOX_VIEW`, `glassbox open --view`).
    pub initial_view: Option<String>,
    /// Models to load instead of the remembered or shipped ones (`glassbox open DIR|REPO...`);
    /// each takes the place of its family.
    pub open_models: Vec<ModelSource>,
    /// Where the shipped models are (searched when `None`).
    pub shipped: Option<ShippedModels>,
    /// When the process started, to report the time to the first frame.
    pub started: Instant,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            persisted: None,
            load_models: true,
            initial_view: None,
            open_models: Vec::new(),
            shipped: None,
            started: Instant::now(),
        }
    }
}

/// The whole app. Tests drive it through [`GlassboxApp::ui`]; eframe through [`eframe::App`].
pub struct GlassboxApp {
    pub shared: Shared,
    panels: Vec<Box<dyn Panel>>,
    current: usize,
    pub dark: bool,
    pub large_text: bool,
    /// Show start-up and frame times in the status bar (off for snapshot tests).
    pub show_timings: bool,
    applied_style: Option<(bool, bool)>,
    started: Instant,
    /// Time from start to the end of the first frame.
    pub first_frame: Option<Duration>,
    frame_times: VecDeque<f32>,
    /// `GLASSBOX_TIMING`: when the current 5 s window started, and its frame times.
    timing_log: Option<(Instant, Vec<f32>)>,
    last_saved: Option<Persisted>,
}

impl GlassboxApp {
    pub fn new(options: AppOptions) -> Self {
        let persisted = options.persisted.unwrap_or_default();
        let shipped = options.shipped.unwrap_or_else(ShippedModels::find);
        let mut shared = Shared::new(WorkerHandle::spawn(), shipped);
        shared.text = persisted.text.clone();
        shared.pair = persisted.pair.clone();
        shared.use_pair = persisted.use_pair;
        shared.export_dir = persisted.export_dir.clone();
        if crate::device::parse_device(&persisted.device).is_ok() {
            shared.device = persisted.device.clone();
        }
        let mut panels = panels::all();
        for panel in &mut panels {
            if let Some(state) = persisted.panels.get(panel.id()) {
                panel.load_state(state.clone());
            }
        }
        let mut app = Self {
            shared,
            panels,
            current: 0,
            dark: persisted.dark,
            large_text: persisted.large_text,
            show_timings: true,
            applied_style: None,
            started: options.started,
            first_frame: None,
            frame_times: VecDeque::new(),
            timing_log: None,
            last_saved: None,
        };
        // A view named on the command line or in GLASSBOX_VIEW, else the last one; a name that
        // no longer exists (an old saved state) opens Attention.
        let view = options.initial_view.unwrap_or(persisted.view.clone());
        app.open_view(view.parse().unwrap_or(ViewName::Attention));
        if let Some(message) = app.shared.shipped.message.clone() {
            app.shared.info(message);
        }
        if options.load_models {
            // Models opened on the command line: the first of each family takes the family's
            // place, further ones join beside it. A Hub id not yet downloaded is known only
            // after its config arrives, so it goes to its family's place when it lands.
            let mut claimed: Vec<Slot> = Vec::new();
            let mut opened: Vec<(ModelSource, bool)> = Vec::new();
            for source in options.open_models {
                let beside = match source.local_config().map(|c| Slot::for_config(&c)) {
                    Some(place) if claimed.contains(&place) => true,
                    Some(place) => {
                        claimed.push(place);
                        false
                    }
                    None => false,
                };
                opened.push((source, beside));
            }
            for slot in Slot::FAMILY_PLACES
                .into_iter()
                .filter(|s| !claimed.contains(s))
            {
                let remembered = persisted
                    .models
                    .get(&slot)
                    .filter(|source| source.local_dir().is_some());
                match remembered {
                    Some(source) => {
                        app.shared.load_model(source.clone());
                    }
                    // The translator is optional: without one the translation views say how
                    // to load it.
                    None if slot == Slot::Translator && app.shared.shipped.get(slot).is_none() => {}
                    None => panels::model::load_shipped(&mut app.shared, slot),
                }
            }
            if opened.is_empty() {
                // Extra models of the last session come back in their places.
                for (&slot, source) in persisted
                    .models
                    .iter()
                    .filter(|(s, _)| !s.is_family_place())
                {
                    if source.local_dir().is_some() {
                        app.shared.load_model_into(source.clone(), Some(slot));
                    }
                }
            }
            for (source, beside) in opened {
                if beside {
                    app.shared.load_extra_model(source);
                } else {
                    app.shared.load_model(source);
                }
            }
        }
        app
    }

    /// What to persist now.
    pub fn persisted(&self) -> Persisted {
        Persisted {
            view: self.current_view().to_string(),
            text: self.shared.text.clone(),
            pair: self.shared.pair.clone(),
            use_pair: self.shared.use_pair,
            dark: self.dark,
            large_text: self.large_text,
            device: self.shared.device.clone(),
            export_dir: self.shared.export_dir.clone(),
            models: self
                .shared
                .loaded_slots()
                .into_iter()
                .filter_map(|s| self.shared.model(s).map(|m| (s, m.source.clone())))
                .collect(),
            panels: self
                .panels
                .iter()
                .filter_map(|p| p.save_state().map(|v| (p.id().to_string(), v)))
                .collect(),
        }
    }

    /// The open view.
    pub fn current_view(&self) -> ViewName {
        self.panels
            .get(self.current)
            .map_or(ViewName::Attention, |p| p.view())
    }

    /// Ids and titles of every view, in side bar order.
    pub fn views(&self) -> Vec<(&'static str, &'static str)> {
        self.panels.iter().map(|p| (p.id(), p.title())).collect()
    }

    /// Opens a view.
    pub fn open_view(&mut self, view: ViewName) {
        if let Some(index) = self.panels.iter().position(|p| p.view() == view) {
            self.current = index;
        }
    }

    /// Typed access to a panel, e.g. `app.panel_mut::<AttentionPanel>()`.
    pub fn panel_mut<T: Panel>(&mut self) -> Option<&mut T> {
        self.panels
            .iter_mut()
            .find_map(|p| (p.as_mut() as &mut dyn Any).downcast_mut::<T>())
    }

    pub fn panel<T: Panel>(&self) -> Option<&T> {
        self.panels
            .iter()
            .find_map(|p| (p.as_ref() as &dyn Any).downcast_ref::<T>())
    }

    pub fn set_text(&mut self, text: &str) {
        self.apply(Action::SetText(text.to_string()));
    }

    /// Whether the worker has nothing left to do for the UI, and no lesson button is still
    /// working through its steps.
    pub fn is_idle(&self) -> bool {
        self.shared.busy().is_none()
            && self.shared.loads().is_empty()
            && !self
                .panel::<LessonsPanel>()
                .is_some_and(LessonsPanel::is_running)
    }

    /// Lessons: advances a running "try it" button and applies what it asks for. Problems the
    /// panels meet while applying it are shown in the lesson pane, next to the button, rather
    /// than as banners.
    fn run_lesson_actions(&mut self) {
        let Self { panels, shared, .. } = self;
        let Some(lessons) = lessons_panel(panels) else {
            return;
        };
        lessons.frame(shared);
        let actions = lessons.take_actions();
        if actions.is_empty() {
            return;
        }
        let before = self.shared.notices.len();
        for action in actions {
            self.apply(action);
        }
        let problems: Vec<Notice> = self.shared.notices.drain(before..).collect();
        if let Some(lessons) = lessons_panel(&mut self.panels) {
            lessons.report(problems);
        }
    }

    /// The open lesson, in a resizable pane right of the view it drives.
    fn lesson_pane(&mut self, ui: &mut Ui) {
        let current_view = self.current_view();
        let large_text = self.large_text;
        let Self { panels, shared, .. } = self;
        let Some(lessons) = lessons_panel(panels).filter(|l| l.is_open()) else {
            return;
        };
        let max = (ui.available_width() * 0.6).max(320.0);
        egui::Panel::right("lesson_pane")
            .resizable(true)
            .default_size(460.0)
            .size_range(300.0..=max)
            .show(ui, |ui| {
                lessons.pane_ui(ui, shared, large_text, current_view)
            });
    }

    /// Does what a lesson or test asks: the shell's part, then every panel's.
    pub fn apply(&mut self, action: Action) {
        match &action {
            Action::SetText(text) => self.shared.text = text.clone(),
            Action::SetPair(pair) => match pair {
                Some(p) => {
                    self.shared.pair = p.clone();
                    self.shared.use_pair = true;
                }
                None => self.shared.use_pair = false,
            },
            Action::OpenView(view) => self.open_view(*view),
            Action::LoadModel(source) => {
                self.shared.load_model(source.clone());
            }
            Action::SetDarkTheme(dark) => self.dark = *dark,
            Action::SetLargeText(large) => self.large_text = *large,
            _ => {}
        }
        if let Some(view) = action.view() {
            self.open_view(view);
        }
        for panel in &mut self.panels {
            panel.apply(&action, &mut self.shared);
        }
    }

    fn apply_style(&mut self, ctx: &egui::Context) {
        if self.applied_style.is_none() {
            ctx.set_fonts(fonts());
        }
        let wanted = (self.dark, self.large_text);
        if self.applied_style != Some(wanted) {
            ctx.set_theme(if self.dark {
                egui::Theme::Dark
            } else {
                egui::Theme::Light
            });
            ctx.set_zoom_factor(if self.large_text { 1.6 } else { 1.0 });
            self.applied_style = Some(wanted);
        }
    }

    fn shortcuts(&mut self, ctx: &egui::Context) {
        const KEYS: [Key; 10] = [
            Key::Num1,
            Key::Num2,
            Key::Num3,
            Key::Num4,
            Key::Num5,
            Key::Num6,
            Key::Num7,
            Key::Num8,
            Key::Num9,
            Key::Num0,
        ];
        for (index, key) in KEYS.iter().enumerate().take(self.panels.len()) {
            if ctx.input_mut(|i| i.consume_key(Modifiers::COMMAND, *key)) {
                self.current = index;
            }
        }
    }

    /// Draws the whole window.
    pub fn ui(&mut self, ui: &mut Ui) {
        let frame_start = Instant::now();
        let ctx = ui.ctx().clone();
        self.apply_style(&ctx);
        self.shortcuts(&ctx);
        self.shared.poll(&ctx);
        if let Some(view) = self.shared.requested_view.take() {
            self.open_view(view);
        }
        for action in std::mem::take(&mut self.shared.requested_actions) {
            self.apply(action);
        }
        self.run_lesson_actions();

        egui::Panel::top("glassbox_top").show(ui, |ui| self.top_bar(ui));
        egui::Panel::bottom("glassbox_status").show(ui, |ui| self.status_bar(ui));
        egui::Panel::left("glassbox_views")
            .default_size(150.0)
            .min_size(110.0)
            .show(ui, |ui| self.view_list(ui));
        self.lesson_pane(ui);
        egui::CentralPanel::default().show(ui, |ui| {
            self.notices(ui);
            let Self { panels, shared, .. } = self;
            if let Some(panel) = panels.get_mut(self.current) {
                let id = panel.id();
                egui::ScrollArea::vertical()
                    .id_salt(("panel_scroll", id))
                    .auto_shrink(false)
                    .show(ui, |ui| {
                        ui.push_id(id, |ui| panel.ui(ui, shared));
                    });
            }
        });

        let ms = frame_start.elapsed().as_secs_f32() * 1000.0;
        self.frame_times.push_back(ms);
        if self.frame_times.len() > 120 {
            self.frame_times.pop_front();
        }
        self.log_frame_times(ms);
        if self.first_frame.is_none() {
            let elapsed = self.started.elapsed();
            self.first_frame = Some(elapsed);
            if std::env::var_os("GLASSBOX_TIMING").is_some() {
                eprintln!(
                    "glassbox: first frame {:.0} ms after start",
                    elapsed.as_secs_f64() * 1000.0
                );
            }
        }
        // While the worker computes, keep animating the spinners.
        if !self.is_idle() {
            ctx.request_repaint_after(Duration::from_millis(50));
        }
    }

    /// Draws only the open view (no side bar, text bar or status bar): for snapshot images that
    /// should not change when views are added.
    pub fn current_panel_ui(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        self.apply_style(&ctx);
        self.shared.poll(&ctx);
        egui::CentralPanel::default().show(ui, |ui| {
            let Self { panels, shared, .. } = self;
            if let Some(panel) = panels.get_mut(self.current) {
                let id = panel.id();
                ui.push_id(id, |ui| panel.ui(ui, shared));
            }
        });
    }

    /// With `GLASSBOX_TIMING` set, prints the UI thread's frame times every 5 s (median, 99th
    /// percentile, worst, frames per second): how the frame budget holds up during a run.
    fn log_frame_times(&mut self, ms: f32) {
        if std::env::var_os("GLASSBOX_TIMING").is_none() {
            return;
        }
        let log = self
            .timing_log
            .get_or_insert_with(|| (Instant::now(), Vec::new()));
        log.1.push(ms);
        let elapsed = log.0.elapsed().as_secs_f32();
        if elapsed < 5.0 {
            return;
        }
        let mut sorted = std::mem::take(&mut log.1);
        sorted.sort_by(f32::total_cmp);
        let at = |q: f32| sorted[((sorted.len() - 1) as f32 * q).round() as usize];
        eprintln!(
            "glassbox: UI frames over {elapsed:.1} s: {} frames ({:.0}/s), median {:.2} ms, p99 {:.2} ms, worst {:.2} ms",
            sorted.len(),
            sorted.len() as f32 / elapsed,
            at(0.5),
            at(0.99),
            at(1.0),
        );
        log.0 = Instant::now();
    }

    fn top_bar(&mut self, ui: &mut Ui) {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            ui.heading(RichText::new("Glassbox").strong());
            ui.separator();
            let label = ui.label("Text:");
            let mut text = self.shared.text.clone();
            let response = ui
                .add(
                    egui::TextEdit::singleline(&mut text)
                        .hint_text("type a sentence")
                        .desired_width((ui.available_width() * 0.45).max(200.0)),
                )
                .labelled_by(label.id);
            if response.changed() {
                self.apply(Action::SetText(text));
            }
            let mut use_pair = self.shared.use_pair;
            if ui
                .checkbox(&mut use_pair, "Second sentence (BERT)")
                .on_hover_text("BERT reads two segments: [CLS] A [SEP] B [SEP]")
                .changed()
            {
                self.shared.use_pair = use_pair;
            }
            if self.shared.use_pair {
                ui.add(
                    egui::TextEdit::singleline(&mut self.shared.pair)
                        .hint_text("second sentence")
                        .desired_width(220.0),
                );
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let theme = if self.dark {
                    "Light theme"
                } else {
                    "Dark theme"
                };
                if ui.button(theme).clicked() {
                    self.dark = !self.dark;
                }
                ui.checkbox(&mut self.large_text, "Large text")
                    .on_hover_text("Bigger everything, for projectors");
            });
        });
        ui.add_space(2.0);
    }

    fn view_list(&mut self, ui: &mut Ui) {
        ui.add_space(6.0);
        ui.strong("Views");
        ui.add_space(4.0);
        let mut chosen = None;
        for (index, panel) in self.panels.iter().enumerate() {
            let button = egui::Button::selectable(
                index == self.current,
                RichText::new(panel.title()).size(15.0),
            )
            .min_size(egui::vec2(ui.available_width(), 26.0));
            let mut response = ui.add(button);
            let hint = panel.hint();
            let shortcut = if index < 10 {
                format!(" (Ctrl+{})", (index + 1) % 10)
            } else {
                String::new()
            };
            if !hint.is_empty() {
                response = response.on_hover_text(format!("{hint}{shortcut}"));
            }
            if response.clicked() {
                chosen = Some(index);
            }
        }
        if let Some(index) = chosen {
            self.current = index;
        }
        ui.add_space(12.0);
        ui.separator();
        ui.weak("Exports go to:");
        let label = ui.weak("export folder");
        let mut dir = self.shared.export_dir.display().to_string();
        if ui
            .add(egui::TextEdit::singleline(&mut dir).desired_width(f32::INFINITY))
            .labelled_by(label.id)
            .changed()
        {
            self.shared.export_dir = PathBuf::from(dir);
        }
    }

    fn notices(&mut self, ui: &mut Ui) {
        let mut dismiss = None;
        for (i, notice) in self.shared.notices.iter().enumerate() {
            let (fill, ink) = if notice.is_error {
                (
                    ui.visuals().error_fg_color.gamma_multiply(0.15),
                    ui.visuals().error_fg_color,
                )
            } else {
                (
                    ui.visuals().warn_fg_color.gamma_multiply(0.12),
                    ui.visuals().text_color(),
                )
            };
            egui::Frame::new()
                .fill(fill)
                .inner_margin(6.0)
                .corner_radius(4.0)
                .show(ui, |ui| {
                    ui.horizontal(|ui| {
                        if ui
                            .small_button("×")
                            .on_hover_text("Dismiss this message")
                            .clicked()
                        {
                            dismiss = Some(i);
                        }
                        let icon = if notice.is_error { "Error:" } else { "Note:" };
                        ui.add(
                            egui::Label::new(
                                RichText::new(format!("{icon} {}", notice.message)).color(ink),
                            )
                            .wrap(),
                        );
                    });
                });
        }
        if let Some(i) = dismiss {
            self.shared.notices.remove(i);
        }
        if !self.shared.notices.is_empty() {
            ui.add_space(4.0);
        }
    }

    fn status_bar(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            for slot in self.shared.slots_to_show() {
                let text = match self.shared.model(slot) {
                    Some(m) => format!("{}: {}", slot.short(), m.name),
                    None => format!("{}: none", slot.short()),
                };
                ui.label(text);
                ui.separator();
            }
            ui.label(format!("device: {}", self.shared.device));
            ui.separator();
            match self.shared.busy() {
                Some((count, what)) => {
                    ui.spinner();
                    ui.label(format!("working: {what}"));
                    if count > 1 {
                        ui.weak(format!("(+{} queued)", count - 1));
                    }
                }
                None => {
                    ui.colored_label(Color32::from_rgb(90, 180, 90), "● idle");
                }
            }
            if !self.show_timings {
                return;
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let mut sorted: Vec<f32> = self.frame_times.iter().copied().collect();
                sorted.sort_by(f32::total_cmp);
                if let Some(median) = sorted.get(sorted.len() / 2) {
                    let worst = sorted.last().copied().unwrap_or(0.0);
                    ui.weak(format!("UI frame {median:.1} ms (worst {worst:.1})"));
                }
                if let Some(first) = self.first_frame {
                    ui.weak(format!(
                        "first frame {:.0} ms",
                        first.as_secs_f64() * 1000.0
                    ));
                }
            });
        });
    }
}

/// The lessons panel among the panels.
fn lessons_panel(panels: &mut [Box<dyn Panel>]) -> Option<&mut LessonsPanel> {
    panels
        .iter_mut()
        .find_map(|p| (p.as_mut() as &mut dyn Any).downcast_mut::<LessonsPanel>())
}

/// egui's default fonts, with Hack (the monospace font) as a fallback for proportional text too:
/// it has the arrows, bullets and box-drawing symbols Ubuntu-Light lacks.
pub fn fonts() -> egui::FontDefinitions {
    let mut fonts = egui::FontDefinitions::default();
    if let Some(family) = fonts.families.get_mut(&egui::FontFamily::Proportional)
        && !family.iter().any(|f| f == "Hack")
    {
        family.push("Hack".to_string());
    }
    fonts
}

impl eframe::App for GlassboxApp {
    fn ui(&mut self, ui: &mut Ui, frame: &mut eframe::Frame) {
        GlassboxApp::ui(self, ui);
        // Save right away when the view, text, theme or models change (eframe itself saves only
        // on exit and every 30 s of activity), so a crash or a kill loses nothing of that.
        let persisted = self.persisted();
        if self.last_saved.as_ref() != Some(&persisted)
            && let Some(storage) = frame.storage_mut()
        {
            eframe::set_value(storage, STORAGE_KEY, &persisted);
            storage.flush();
            self.last_saved = Some(persisted);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, STORAGE_KEY, &self.persisted());
    }
}
