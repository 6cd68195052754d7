//! Horizontal bars with labels and values (probabilities, counts), painted directly so they stay
//! cheap for hundreds of rows.

use eframe::egui;
use egui::{Align2, FontId, Rect, Role, Sense, Ui, Vec2, WidgetInfo};

use super::color::viridis;

/// One bar per `(label, value)`, scaled to `max` (or the largest value). Returns the index of a
/// clicked bar.
pub fn value_bars(
    ui: &mut Ui,
    items: &[(String, f32)],
    max: Option<f32>,
    format: impl Fn(f32) -> String,
) -> Option<usize> {
    let max = max
        .unwrap_or_else(|| items.iter().map(|(_, v)| *v).fold(0.0, f32::max))
        .max(f32::MIN_POSITIVE);
    let font = FontId::proportional(12.0);
    let label_w = items
        .iter()
        .map(|(l, _)| {
            ui.painter()
                .layout_no_wrap(l.clone(), font.clone(), ui.visuals().text_color())
                .size()
                .x
        })
        .fold(40.0f32, f32::max)
        + 8.0;
    let row_h = 18.0;
    let mut clicked = None;
    for (i, (label, value)) in items.iter().enumerate() {
        let width = ui.available_width().max(label_w + 120.0);
        let (rect, response) = ui.allocate_exact_size(Vec2::new(width, row_h), Sense::click());
        let text = format!("{label}: {}", format(*value));
        response.widget_info(|| WidgetInfo::labeled(Role::Button, true, &text));
        let painter = ui.painter();
        let color = ui.visuals().text_color();
        painter.text(
            rect.left_center() + Vec2::new(label_w - 4.0, 0.0),
            Align2::RIGHT_CENTER,
            label,
            font.clone(),
            color,
        );
        let bar_space = rect.width() - label_w - 80.0;
        let fraction = (value / max).clamp(0.0, 1.0);
        let bar = Rect::from_min_size(
            rect.min + Vec2::new(label_w, 2.0),
            Vec2::new((bar_space * fraction).max(1.0), row_h - 4.0),
        );
        painter.rect_filled(bar, 2.0, viridis(0.25 + 0.6 * fraction));
        painter.text(
            bar.right_center() + Vec2::new(4.0, 0.0),
            Align2::LEFT_CENTER,
            format(*value),
            font.clone(),
            color,
        );
        if response.clicked() {
            clicked = Some(i);
        }
    }
    clicked
}
