//! A small in-app folder browser (no system dialog needed): navigate folders, see which ones are
//! model folders, choose one.

use eframe::egui;
use std::path::{Path, PathBuf};

use egui::{Context, ScrollArea};

use crate::app::assets::is_model_dir;

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    path: PathBuf,
    is_model: bool,
}

/// The browser's state. Call [`FolderBrowser::open`], then [`FolderBrowser::show`] every frame.
#[derive(Debug, Default)]
pub struct FolderBrowser {
    is_open: bool,
    current: PathBuf,
    path_text: String,
    entries: Vec<Entry>,
    error: Option<String>,
    title: String,
}

impl FolderBrowser {
    pub fn is_open(&self) -> bool {
        self.is_open
    }

    /// Opens the browser at `start` (or the current directory).
    pub fn open(&mut self, title: &str, start: Option<&Path>) {
        self.title = title.to_string();
        let start = start
            .filter(|p| p.is_dir())
            .map(Path::to_path_buf)
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| PathBuf::from("."));
        self.is_open = true;
        self.go(start);
    }

    fn go(&mut self, dir: PathBuf) {
        let dir = dir.canonicalize().unwrap_or(dir);
        match std::fs::read_dir(&dir) {
            Ok(read) => {
                let mut entries: Vec<Entry> = read
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .map(|path| Entry {
                        name: path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        is_model: is_model_dir(&path),
                        path,
                    })
                    .filter(|e| !e.name.starts_with('.'))
                    .collect();
                entries.sort_by_key(|a| a.name.to_lowercase());
                self.entries = entries;
                self.error = None;
                self.path_text = dir.display().to_string();
                self.current = dir;
            }
            Err(e) => self.error = Some(format!("{}: {e}", dir.display())),
        }
    }

    /// Shows the browser window while open. Returns the chosen folder once.
    pub fn show(&mut self, ctx: &Context) -> Option<PathBuf> {
        if !self.is_open {
            return None;
        }
        let mut chosen = None;
        let mut open = true;
        let mut go_to = None;
        let center = ctx.content_rect().center();
        egui::Window::new(self.title.clone())
            .id(egui::Id::unique("glassbox_folder_browser"))
            .pivot(egui::Align2::CENTER_CENTER)
            .default_pos(center)
            .open(&mut open)
            .default_size([520.0, 420.0])
            .collapsible(false)
            .show(ctx, |ui| {
                ui.horizontal(|ui| {
                    if ui.button("Up").on_hover_text("Parent folder").clicked()
                        && let Some(parent) = self.current.parent()
                    {
                        go_to = Some(parent.to_path_buf());
                    }
                    let edit = ui.add(
                        egui::TextEdit::singleline(&mut self.path_text)
                            .desired_width(ui.available_width() - 40.0)
                            .hint_text("folder path"),
                    );
                    if edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                        go_to = Some(PathBuf::from(self.path_text.trim()));
                    }
                    if ui.button("Go").clicked() {
                        go_to = Some(PathBuf::from(self.path_text.trim()));
                    }
                });
                if let Some(error) = &self.error {
                    ui.colored_label(ui.visuals().error_fg_color, error);
                }
                let here_is_model = is_model_dir(&self.current);
                ui.horizontal(|ui| {
                    let choose =
                        ui.add_enabled(here_is_model, egui::Button::new("Choose this folder"));
                    if choose.clicked() {
                        chosen = Some(self.current.clone());
                    }
                    if here_is_model {
                        ui.label("this is a model folder (has config.json)");
                    } else {
                        ui.weak("model folders (with config.json) are marked ●");
                    }
                });
                ui.separator();
                ScrollArea::vertical().auto_shrink(false).show(ui, |ui| {
                    for entry in &self.entries {
                        let text = if entry.is_model {
                            format!("● {}", entry.name)
                        } else {
                            format!("▸ {}", entry.name)
                        };
                        let response = ui.selectable_label(false, text);
                        if response.double_clicked() && entry.is_model {
                            chosen = Some(entry.path.clone());
                        } else if response.clicked() {
                            go_to = Some(entry.path.clone());
                        }
                    }
                    if self.entries.is_empty() {
                        ui.weak("(no sub-folders)");
                    }
                });
            });
        if let Some(dir) = go_to {
            self.go(dir);
        }
        if chosen.is_some() || !open {
            self.is_open = false;
        }
        chosen
    }
}
