//! A small in-app file browser (no system dialog needed): navigate folders and choose either a
//! model folder ([`FileBrowser::open_folder`], model folders marked ●) or a file of given
//! extensions ([`FileBrowser::open_file`]).

use eframe::egui;
use std::path::{Path, PathBuf};

use egui::{Context, ScrollArea};

use crate::app::assets::is_model_dir;

/// What the browser is choosing.
#[derive(Debug, Clone, Default, PartialEq)]
enum Choosing {
    /// A model folder (one with `config.json`).
    #[default]
    ModelFolder,
    /// A file with one of these extensions (lower case, no dot; empty: any file).
    File { extensions: Vec<String> },
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    path: PathBuf,
    is_dir: bool,
    is_model: bool,
    size: u64,
}

/// The browser's state. Call [`FileBrowser::open_folder`] or [`FileBrowser::open_file`], then
/// [`FileBrowser::show`] every frame.
#[derive(Debug, Default)]
pub struct FileBrowser {
    is_open: bool,
    choosing: Choosing,
    current: PathBuf,
    path_text: String,
    entries: Vec<Entry>,
    error: Option<String>,
    title: String,
}

impl FileBrowser {
    pub fn is_open(&self) -> bool {
        self.is_open
    }

    /// Opens at `start` (or the current folder) to choose a model folder.
    pub fn open_folder(&mut self, title: &str, start: Option<&Path>) {
        self.open(title, start, Choosing::ModelFolder);
    }

    /// Opens at the folder of `start` (or the current folder) to choose a file with one of
    /// `extensions` (no dot; empty: any file).
    pub fn open_file(&mut self, title: &str, start: Option<&Path>, extensions: &[&str]) {
        let extensions = extensions.iter().map(|e| e.to_lowercase()).collect();
        self.open(title, start, Choosing::File { extensions });
    }

    fn open(&mut self, title: &str, start: Option<&Path>, choosing: Choosing) {
        self.title = title.to_string();
        self.choosing = choosing;
        let start = start
            .map(|p| {
                if p.is_file() {
                    p.parent().unwrap_or(p)
                } else {
                    p
                }
            })
            .filter(|p| p.is_dir())
            .map(Path::to_path_buf)
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| PathBuf::from("."));
        self.is_open = true;
        self.go(start);
    }

    fn go(&mut self, dir: PathBuf) {
        let dir = dir.canonicalize().unwrap_or(dir);
        let read = match std::fs::read_dir(&dir) {
            Ok(read) => read,
            Err(e) => {
                self.error = Some(format!("{}: {e}", dir.display()));
                return;
            }
        };
        let mut entries: Vec<Entry> = read
            .flatten()
            .filter_map(|entry| {
                let path = entry.path();
                let name = path.file_name()?.to_string_lossy().into_owned();
                let is_dir = path.is_dir();
                if name.starts_with('.') || (!is_dir && !self.wants_file(&path)) {
                    return None;
                }
                Some(Entry {
                    is_model: is_dir && is_model_dir(&path),
                    size: if is_dir {
                        0
                    } else {
                        entry.metadata().map(|m| m.len()).unwrap_or(0)
                    },
                    name,
                    path,
                    is_dir,
                })
            })
            .collect();
        // Folders first, then files, each by name.
        entries.sort_by_key(|e| (!e.is_dir, e.name.to_lowercase()));
        self.entries = entries;
        self.error = None;
        self.path_text = dir.display().to_string();
        self.current = dir;
    }

    fn wants_file(&self, path: &Path) -> bool {
        match &self.choosing {
            Choosing::ModelFolder => false,
            Choosing::File { extensions } => {
                extensions.is_empty()
                    || path
                        .extension()
                        .map(|e| e.to_string_lossy().to_lowercase())
                        .is_some_and(|e| extensions.contains(&e))
            }
        }
    }

    /// Shows the window while open; returns the chosen folder or file once.
    pub fn show(&mut self, ctx: &Context) -> Option<PathBuf> {
        if !self.is_open {
            return None;
        }
        let mut chosen = None;
        let mut go_to = None;
        let mut open = true;
        let center = ctx.content_rect().center();
        egui::Window::new(self.title.clone())
            .id(egui::Id::unique(("glassbox_file_browser", &self.title)))
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
                            .hint_text("path"),
                    );
                    if (edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)))
                        || ui.button("Go").clicked()
                    {
                        let typed = PathBuf::from(self.path_text.trim());
                        if typed.is_file() && self.wants_file(&typed) {
                            chosen = Some(typed);
                        } else {
                            go_to = Some(typed);
                        }
                    }
                });
                if let Some(error) = &self.error {
                    ui.colored_label(ui.visuals().error_fg_color, error);
                }
                match &self.choosing {
                    Choosing::ModelFolder => {
                        let here_is_model = is_model_dir(&self.current);
                        ui.horizontal(|ui| {
                            let choose = ui.add_enabled(
                                here_is_model,
                                egui::Button::new("Choose this folder"),
                            );
                            if choose.clicked() {
                                chosen = Some(self.current.clone());
                            }
                            if here_is_model {
                                ui.label("this is a model folder (has config.json)");
                            } else {
                                ui.weak("model folders (with config.json) are marked ●");
                            }
                        });
                    }
                    Choosing::File { extensions } if !extensions.is_empty() => {
                        ui.weak(format!("Showing .{} files", extensions.join(", .")));
                    }
                    Choosing::File { .. } => {}
                }
                ui.separator();
                ScrollArea::vertical().auto_shrink(false).show(ui, |ui| {
                    for entry in &self.entries {
                        let text = match (entry.is_dir, entry.is_model) {
                            (true, true) => format!("● {}", entry.name),
                            (true, false) => format!("▸ {}", entry.name),
                            (false, _) => {
                                format!("  {}  ({})", entry.name, format_size(entry.size))
                            }
                        };
                        let response = ui.selectable_label(false, text);
                        if !entry.is_dir {
                            if response
                                .on_hover_text("Click to choose this file")
                                .clicked()
                            {
                                chosen = Some(entry.path.clone());
                            }
                        } else if response.double_clicked() && entry.is_model {
                            chosen = Some(entry.path.clone());
                        } else if response.clicked() {
                            go_to = Some(entry.path.clone());
                        }
                    }
                    if self.entries.is_empty() {
                        ui.weak("(nothing here)");
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

/// "1.2 MB", "340 B".
pub fn format_size(bytes: u64) -> String {
    if bytes < 1000 {
        format!("{bytes} B")
    } else if bytes < 1_000_000 {
        format!("{:.1} kB", bytes as f64 / 1e3)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}
