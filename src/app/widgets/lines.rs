//! Attention as lines: the tokens that look in the left column, the tokens looked at in the right
//! one, a line for every allowed pair, as opaque and thick as its weight. Self-attention has the
//! same tokens on both sides; cross-attention has the target sentence on the left and the source
//! on the right.

use eframe::egui;
use egui::{Align2, Color32, FontId, Pos2, Sense, Stroke, Ui, Vec2};

use crate::app::data::Matrix;

/// Draws `matrix` as lines, `labels` being (rows, columns). `mask` cells of 0 are left out. With
/// a `selected` row only its lines are strong; `caption` says what the sides are.
pub fn attention_lines(
    ui: &mut Ui,
    matrix: &Matrix,
    mask: Option<&Matrix>,
    (row_labels, col_labels): (&[String], &[String]),
    selected: Option<usize>,
    label: &str,
    caption: &str,
) {
    let n = matrix.rows.max(matrix.cols).max(1);
    let row_h = 22.0;
    let width = ui.available_width().min(520.0);
    let height = n as f32 * row_h + 8.0;
    let (rect, response) = ui.allocate_exact_size(Vec2::new(width, height), Sense::hover());
    let label = label.to_string();
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &label));
    let painter = ui.painter_at(rect);
    let font = FontId::monospace(12.0);
    let text_color = ui.visuals().text_color();
    let accent = ui.visuals().selection.stroke.color;
    let left_x = rect.min.x + width * 0.30;
    let right_x = rect.max.x - width * 0.30;
    let y = |i: usize| rect.min.y + 4.0 + (i as f32 + 0.5) * row_h;
    let base = if ui.visuals().dark_mode {
        Color32::from_rgb(120, 190, 255)
    } else {
        Color32::from_rgb(20, 90, 200)
    };
    // On self-attention a selected token is both a row and a column.
    let square = matrix.rows == matrix.cols;
    for r in 0..matrix.rows {
        for c in 0..matrix.cols {
            if mask.and_then(|m| m.get(r, c)) == Some(0.0) {
                continue;
            }
            let w = matrix.get(r, c).unwrap_or(0.0).clamp(0.0, 1.0);
            let involved = selected.is_none_or(|s| s == r || (square && s == c));
            let alpha = if involved { w } else { w * 0.15 };
            if alpha < 0.01 {
                continue;
            }
            let color = if selected == Some(r) {
                accent
            } else if square && selected == Some(c) {
                Color32::from_rgb(255, 140, 0)
            } else {
                base
            };
            painter.line_segment(
                [
                    Pos2::new(left_x + 4.0, y(r)),
                    Pos2::new(right_x - 4.0, y(c)),
                ],
                Stroke::new(1.0 + 4.0 * w, color.gamma_multiply(alpha)),
            );
        }
    }
    for (i, l) in row_labels.iter().enumerate().take(matrix.rows) {
        let color = if selected == Some(i) {
            accent
        } else {
            text_color
        };
        painter.text(
            Pos2::new(left_x - 4.0, y(i)),
            Align2::RIGHT_CENTER,
            l,
            font.clone(),
            color,
        );
    }
    for (i, l) in col_labels.iter().enumerate().take(matrix.cols) {
        let color = if square && selected == Some(i) {
            accent
        } else {
            text_color
        };
        painter.text(
            Pos2::new(right_x + 4.0, y(i)),
            Align2::LEFT_CENTER,
            l,
            font.clone(),
            color,
        );
    }
    ui.weak(caption);
}
