//! A heatmap of a matrix: colour scale with a legend, row and column labels, hover read-out of
//! the exact value with its (row, column) labels, click selection of a row or column, and a mask
//! overlay (blocked cells hatched in grey).

use eframe::egui;
use egui::epaint::TextShape;
use egui::{
    Align2, Color32, FontId, Pos2, Rect, Response, Role, Sense, Stroke, StrokeKind, Ui, Vec2,
    WidgetInfo,
};

use super::color::{ColorScale, text_on};
use crate::app::data::Matrix;

/// Formats a value for read-outs exactly enough to compare with the library (six decimals, or
/// scientific notation for very small or large values).
pub fn format_value(value: f32) -> String {
    if value == 0.0 {
        "0.000000".to_string()
    } else if !value.is_finite() {
        format!("{value}")
    } else if value.abs() < 1e-4 || value.abs() >= 1e5 {
        format!("{value:.4e}")
    } else {
        format!("{value:.6}")
    }
}

/// Shortens a label to `max` characters, with an ellipsis.
pub fn short_label(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        label.to_string()
    } else {
        let mut s: String = label.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// Which row and column are highlighted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Selection {
    pub row: Option<usize>,
    pub col: Option<usize>,
}

/// What a hovered cell shows.
#[derive(Debug, Clone, PartialEq)]
pub struct HoverReadout {
    pub row: usize,
    pub col: usize,
    pub row_label: String,
    pub col_label: String,
    pub value: f32,
    pub blocked: bool,
}

impl HoverReadout {
    /// One line: `row 2 "Ġcat" → column 1 "ĠThe": 0.123456`.
    pub fn text(&self) -> String {
        let mut s = format!(
            "row {} {:?} → column {} {:?}: {}",
            self.row,
            self.row_label,
            self.col,
            self.col_label,
            format_value(self.value)
        );
        if self.blocked {
            s.push_str(" (blocked by the mask)");
        }
        s
    }
}

/// What happened to a heatmap this frame.
pub struct HeatmapResponse {
    pub response: Response,
    /// The cells' area.
    pub grid_rect: Rect,
    /// Size of one cell.
    pub cell: Vec2,
    pub hovered: Option<HoverReadout>,
    /// A clicked cell (row, col).
    pub clicked_cell: Option<(usize, usize)>,
    /// A clicked row label.
    pub clicked_row: Option<usize>,
    /// A clicked column label.
    pub clicked_col: Option<usize>,
}

impl HeatmapResponse {
    /// The centre of cell (row, col) on screen (for tests and overlays).
    pub fn cell_center(&self, row: usize, col: usize) -> Pos2 {
        self.grid_rect.min
            + Vec2::new(
                (col as f32 + 0.5) * self.cell.x,
                (row as f32 + 0.5) * self.cell.y,
            )
    }
}

/// A heatmap builder: `Heatmap::new(&m, "label").row_labels(..).show(ui)`.
pub struct Heatmap<'a> {
    matrix: &'a Matrix,
    label: String,
    row_labels: Option<&'a [String]>,
    col_labels: Option<&'a [String]>,
    mask: Option<&'a Matrix>,
    scale: ColorScale,
    max_size: Option<Vec2>,
    max_cell: f32,
    min_cell: f32,
    selection: Selection,
    legend: bool,
    show_values: bool,
    row_title: &'a str,
    col_title: &'a str,
}

impl<'a> Heatmap<'a> {
    /// `label` names the heatmap for screen readers and tests.
    pub fn new(matrix: &'a Matrix, label: impl Into<String>) -> Self {
        Self {
            matrix,
            label: label.into(),
            row_labels: None,
            col_labels: None,
            mask: None,
            scale: ColorScale::fit(matrix.range()),
            max_size: None,
            max_cell: 36.0,
            min_cell: 2.0,
            selection: Selection::default(),
            legend: true,
            show_values: false,
            row_title: "row",
            col_title: "column",
        }
    }

    pub fn row_labels(mut self, labels: &'a [String]) -> Self {
        self.row_labels = Some(labels);
        self
    }

    pub fn col_labels(mut self, labels: &'a [String]) -> Self {
        self.col_labels = Some(labels);
        self
    }

    /// Same labels on both axes (attention: queries × keys).
    pub fn labels(self, labels: &'a [String]) -> Self {
        self.row_labels(labels).col_labels(labels)
    }

    /// Cells where `mask` is 0 are drawn hatched grey.
    pub fn mask(mut self, mask: Option<&'a Matrix>) -> Self {
        self.mask = mask;
        self
    }

    pub fn scale(mut self, scale: ColorScale) -> Self {
        self.scale = scale;
        self
    }

    /// The largest size the whole widget may take (default: the available width, square cells).
    pub fn max_size(mut self, size: Vec2) -> Self {
        self.max_size = Some(size);
        self
    }

    pub fn max_cell(mut self, size: f32) -> Self {
        self.max_cell = size;
        self
    }

    pub fn selection(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }

    pub fn legend(mut self, legend: bool) -> Self {
        self.legend = legend;
        self
    }

    /// Writes the value into each cell when cells are big enough.
    pub fn show_values(mut self, show: bool) -> Self {
        self.show_values = show;
        self
    }

    /// Names of the axes in read-outs ("query" / "key").
    pub fn axis_titles(mut self, rows: &'a str, cols: &'a str) -> Self {
        self.row_title = rows;
        self.col_title = cols;
        self
    }

    pub fn show(self, ui: &mut Ui) -> HeatmapResponse {
        let m = self.matrix;
        let (rows, cols) = (m.rows.max(1), m.cols.max(1));
        let font = FontId::proportional(11.0);
        let label_text = |labels: Option<&[String]>, i: usize| -> String {
            labels
                .and_then(|l| l.get(i))
                .map(|s| short_label(s, 14))
                .unwrap_or_else(|| i.to_string())
        };
        // Label widths, measured.
        let measure = |text: String| {
            ui.painter()
                .layout_no_wrap(text, font.clone(), Color32::WHITE)
                .size()
                .x
        };
        let has_labels = self.row_labels.is_some() || self.col_labels.is_some();
        let row_label_w = if has_labels {
            (0..m.rows)
                .map(|i| measure(label_text(self.row_labels, i)))
                .fold(0.0, f32::max)
                + 6.0
        } else {
            0.0
        };
        let col_label_h = if has_labels {
            (0..m.cols)
                .map(|i| measure(label_text(self.col_labels, i)))
                .fold(0.0, f32::max)
                + 6.0
        } else {
            0.0
        };
        let legend_w = if self.legend { 64.0 } else { 0.0 };
        let max = self
            .max_size
            .unwrap_or_else(|| Vec2::new(ui.available_width(), ui.available_width()));
        let cell_w = (max.x - row_label_w - legend_w) / cols as f32;
        let cell_h = (max.y - col_label_h) / rows as f32;
        let cell = cell_w.min(cell_h).clamp(self.min_cell, self.max_cell);
        let cell = Vec2::splat(cell);
        let grid_size = Vec2::new(cell.x * cols as f32, cell.y * rows as f32);
        let total = Vec2::new(
            row_label_w + grid_size.x + legend_w,
            col_label_h + grid_size.y.max(if self.legend { 60.0 } else { 0.0 }),
        );
        let (rect, response) = ui.allocate_exact_size(total, Sense::click());
        let label = self.label.clone();
        response.widget_info(|| WidgetInfo::labeled(Role::Image, true, &label));
        let grid_rect =
            Rect::from_min_size(rect.min + Vec2::new(row_label_w, col_label_h), grid_size);
        let painter = ui.painter_at(rect.expand(2.0));
        let visuals = ui.visuals().clone();
        let text_color = visuals.text_color();
        let blocked_fill = if visuals.dark_mode {
            Color32::from_gray(55)
        } else {
            Color32::from_gray(200)
        };
        let hatch = if visuals.dark_mode {
            Color32::from_gray(95)
        } else {
            Color32::from_gray(150)
        };

        // Cells.
        let blocked = |r: usize, c: usize| self.mask.and_then(|mk| mk.get(r, c)) == Some(0.0);
        for r in 0..m.rows {
            for c in 0..m.cols {
                let min = grid_rect.min + Vec2::new(c as f32 * cell.x, r as f32 * cell.y);
                let cell_rect = Rect::from_min_size(min, cell);
                if blocked(r, c) {
                    painter.rect_filled(cell_rect, 0.0, blocked_fill);
                    if cell.x >= 6.0 {
                        hatch_cell(&painter, cell_rect, hatch);
                    }
                } else {
                    let value = m.get(r, c).unwrap_or(0.0);
                    let fill = self.scale.color(value);
                    painter.rect_filled(cell_rect, 0.0, fill);
                    if self.show_values && cell.x >= 34.0 {
                        painter.text(
                            cell_rect.center(),
                            Align2::CENTER_CENTER,
                            format!("{value:.2}"),
                            FontId::proportional(9.5),
                            text_on(fill),
                        );
                    }
                }
            }
        }

        // Labels.
        if has_labels {
            for r in 0..m.rows {
                let y = grid_rect.min.y + (r as f32 + 0.5) * cell.y;
                if cell.y >= 9.0 {
                    painter.text(
                        Pos2::new(grid_rect.min.x - 4.0, y),
                        Align2::RIGHT_CENTER,
                        label_text(self.row_labels, r),
                        font.clone(),
                        if self.selection.row == Some(r) {
                            visuals.selection.stroke.color
                        } else {
                            text_color
                        },
                    );
                }
            }
            for c in 0..m.cols {
                if cell.x < 9.0 {
                    break;
                }
                let x = grid_rect.min.x + (c as f32 + 0.5) * cell.x;
                let color = if self.selection.col == Some(c) {
                    visuals.selection.stroke.color
                } else {
                    text_color
                };
                let galley =
                    painter.layout_no_wrap(label_text(self.col_labels, c), font.clone(), color);
                let h = galley.size().y;
                // Written bottom-up, ending just above the grid.
                let pos = Pos2::new(x - h / 2.0, grid_rect.min.y - 4.0);
                painter.add(
                    TextShape::new(pos, galley, color).with_angle(-std::f32::consts::FRAC_PI_2),
                );
            }
        }

        // Selection.
        let sel_stroke = Stroke::new(2.0, visuals.selection.stroke.color);
        if let Some(r) = self.selection.row.filter(|&r| r < m.rows) {
            let band = Rect::from_min_size(
                grid_rect.min + Vec2::new(0.0, r as f32 * cell.y),
                Vec2::new(grid_size.x, cell.y),
            );
            painter.rect_stroke(band, 0.0, sel_stroke, StrokeKind::Outside);
        }
        if let Some(c) = self.selection.col.filter(|&c| c < m.cols) {
            let band = Rect::from_min_size(
                grid_rect.min + Vec2::new(c as f32 * cell.x, 0.0),
                Vec2::new(cell.x, grid_size.y),
            );
            painter.rect_stroke(
                band,
                0.0,
                Stroke::new(2.0, Color32::from_rgb(255, 140, 0)),
                StrokeKind::Outside,
            );
        }

        // Legend.
        if self.legend {
            let bar = Rect::from_min_size(
                Pos2::new(grid_rect.max.x + 10.0, grid_rect.min.y),
                Vec2::new(12.0, grid_size.y.max(60.0)),
            );
            let steps = 32;
            for i in 0..steps {
                let t0 = i as f32 / steps as f32;
                let y0 = bar.max.y - t0 * bar.height();
                let y1 = bar.max.y - (i + 1) as f32 / steps as f32 * bar.height();
                painter.rect_filled(
                    Rect::from_x_y_ranges(bar.x_range(), y1..=y0),
                    0.0,
                    self.scale.color_at((i as f32 + 0.5) / steps as f32),
                );
            }
            painter.rect_stroke(bar, 0.0, Stroke::new(1.0, hatch), StrokeKind::Outside);
            let small = FontId::proportional(10.0);
            let hi = self.scale.max();
            let lo = self.scale.min();
            painter.text(
                Pos2::new(bar.max.x + 3.0, bar.min.y),
                Align2::LEFT_TOP,
                compact(hi),
                small.clone(),
                text_color,
            );
            painter.text(
                Pos2::new(bar.max.x + 3.0, bar.center().y),
                Align2::LEFT_CENTER,
                compact((hi + lo) / 2.0),
                small.clone(),
                text_color,
            );
            painter.text(
                Pos2::new(bar.max.x + 3.0, bar.max.y),
                Align2::LEFT_BOTTOM,
                compact(lo),
                small,
                text_color,
            );
        }

        // Hover and clicks.
        let cell_at = |pos: Pos2| -> Option<(usize, usize)> {
            if !grid_rect.contains(pos) {
                return None;
            }
            let c = ((pos.x - grid_rect.min.x) / cell.x).floor() as usize;
            let r = ((pos.y - grid_rect.min.y) / cell.y).floor() as usize;
            (r < m.rows && c < m.cols).then_some((r, c))
        };
        let full_label = |labels: Option<&[String]>, i: usize| {
            labels
                .and_then(|l| l.get(i))
                .cloned()
                .unwrap_or_else(|| i.to_string())
        };
        let mut hovered = None;
        if let Some(pos) = response.hover_pos()
            && let Some((r, c)) = cell_at(pos)
        {
            let readout = HoverReadout {
                row: r,
                col: c,
                row_label: full_label(self.row_labels, r),
                col_label: full_label(self.col_labels, c),
                value: m.get(r, c).unwrap_or(0.0),
                blocked: blocked(r, c),
            };
            let cell_rect = Rect::from_min_size(
                grid_rect.min + Vec2::new(c as f32 * cell.x, r as f32 * cell.y),
                cell,
            );
            painter.rect_stroke(
                cell_rect,
                0.0,
                Stroke::new(1.5, text_color),
                StrokeKind::Outside,
            );
            hovered = Some(readout);
        }
        let mut clicked_cell = None;
        let mut clicked_row = None;
        let mut clicked_col = None;
        if response.clicked()
            && let Some(pos) = response.interact_pointer_pos()
        {
            if let Some(cell) = cell_at(pos) {
                clicked_cell = Some(cell);
            } else if pos.x < grid_rect.min.x && pos.y >= grid_rect.min.y && pos.y < grid_rect.max.y
            {
                let r = ((pos.y - grid_rect.min.y) / cell.y).floor() as usize;
                clicked_row = (r < m.rows).then_some(r);
            } else if pos.y < grid_rect.min.y && pos.x >= grid_rect.min.x && pos.x < grid_rect.max.x
            {
                let c = ((pos.x - grid_rect.min.x) / cell.x).floor() as usize;
                clicked_col = (c < m.cols).then_some(c);
            }
        }
        let response = match &hovered {
            Some(readout) => {
                let (row_title, col_title) = (self.row_title, self.col_title);
                response.on_hover_ui_at_pointer(|ui| {
                    ui.label(format!(
                        "{row_title} {} {:?} → {col_title} {} {:?}",
                        readout.row, readout.row_label, readout.col, readout.col_label
                    ));
                    ui.strong(format_value(readout.value));
                    if readout.blocked {
                        ui.label("blocked by the mask");
                    }
                })
            }
            None => response,
        };
        HeatmapResponse {
            response,
            grid_rect,
            cell,
            hovered,
            clicked_cell,
            clicked_row,
            clicked_col,
        }
    }
}

fn hatch_cell(painter: &egui::Painter, rect: Rect, color: Color32) {
    let clip = painter.with_clip_rect(rect.intersect(painter.clip_rect()));
    let step = 5.0;
    let stroke = Stroke::new(1.0, color);
    let mut x = rect.min.x - rect.height();
    while x < rect.max.x {
        clip.line_segment(
            [
                Pos2::new(x, rect.max.y),
                Pos2::new(x + rect.height(), rect.min.y),
            ],
            stroke,
        );
        x += step;
    }
}

/// Short number for legends: 1, 0.5, 1.2e-3.
fn compact(v: f32) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 || v.abs() < 0.01 {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_values() {
        assert_eq!(format_value(0.25), "0.250000");
        assert_eq!(format_value(0.0), "0.000000");
        assert_eq!(format_value(1e-6), "1.0000e-6");
        assert_eq!(compact(1.0), "1");
        assert_eq!(compact(0.5), "0.5");
        assert_eq!(short_label("abcdefghijklmnop", 5), "abcd…");
    }
}
