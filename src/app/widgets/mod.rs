//! Widgets shared by the panels: heatmaps, token chips, bars, export buttons, a file browser,
//! colour scales, a Markdown renderer (lesson text), and status lines for data the worker is
//! computing.

pub mod bars;
pub mod chips;
pub mod color;
pub mod curves;
pub mod export;
pub mod file_browser;
pub mod heatmap;
pub mod lines;
pub mod markdown;
pub mod model_map;

pub use bars::value_bars;
pub use chips::{token_chip, token_chips};
pub use color::ColorScale;
pub use export::{ExportFormat, export_buttons};
pub use file_browser::{FileBrowser, format_size};
pub use heatmap::{Heatmap, HeatmapResponse, HoverReadout, Selection, format_value};
pub use lines::attention_lines;
pub use markdown::markdown;
pub use model_map::model_map;

use eframe::egui;
use egui::Ui;

use super::data::Slot;
use super::state::{Fetch, Shared};

/// "Model: GPT (tiny-gpt) · BERT (…) · …": chooses one of `slots`, each labelled with the model
/// loaded there; true when the choice changed.
pub fn model_picker(
    ui: &mut Ui,
    shared: &Shared,
    slots: impl IntoIterator<Item = Slot>,
    chosen: &mut Slot,
) -> bool {
    let mut changed = false;
    ui.horizontal_wrapped(|ui| {
        ui.label("Model:");
        for slot in slots {
            let name = match shared.model(slot) {
                Some(m) => format!("{} ({})", slot.short(), m.name),
                None => slot.short().to_string(),
            };
            if ui.selectable_label(*chosen == slot, name).clicked() && *chosen != slot {
                *chosen = slot;
                changed = true;
            }
        }
    });
    changed
}

/// Shows what to say while data is not ready: a spinner while computing, the error when it
/// failed, a hint when no model is loaded. Returns the data to show (possibly stale while a new
/// result is computed).
pub fn fetch_status<T: Clone>(ui: &mut Ui, slot: Slot, fetch: &Fetch<T>) -> Option<T> {
    match fetch {
        Fetch::NoModel => {
            ui.label(format!(
                "No {} model is loaded. Pick one in the Model view.",
                slot.label()
            ));
            None
        }
        Fetch::Pending(stale) => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.weak(format!("{} is working…", slot.short()));
            });
            stale.clone()
        }
        Fetch::Ready(data) => Some(data.clone()),
        Fetch::Failed(message) => {
            error_label(ui, message);
            None
        }
    }
}

/// An error in the panel's own area, in the theme's error colour.
pub fn error_label(ui: &mut Ui, message: &str) {
    ui.colored_label(ui.visuals().error_fg_color, format!("Error: {message}"));
}
