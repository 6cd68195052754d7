//! Tokens as coloured chips: the token on top, its id under it; hover shows id and bytes; a
//! click selects a token.

use eframe::egui;
use egui::{Align2, Color32, FontId, Rect, Role, Sense, Stroke, StrokeKind, Ui, Vec2, WidgetInfo};

use super::color::token_color;
use crate::app::data::{TokenInfo, bytes_hex, bytes_text};

/// Shows `tokens` as chips, wrapping lines. Returns the index of a clicked chip.
pub fn token_chips(ui: &mut Ui, tokens: &[TokenInfo], selected: Option<usize>) -> Option<usize> {
    let mut clicked = None;
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing = Vec2::new(4.0, 6.0);
        for (i, token) in tokens.iter().enumerate() {
            if token_chip(ui, i, token, selected == Some(i)).clicked() {
                clicked = Some(i);
            }
        }
    });
    clicked
}

/// One chip. Its accessible label is `token {i}: {text} (id {id})`.
pub fn token_chip(ui: &mut Ui, index: usize, token: &TokenInfo, selected: bool) -> egui::Response {
    let text_font = FontId::monospace(14.0);
    let id_font = FontId::proportional(10.0);
    let shown = chip_text(&token.shown);
    let fill = if token.special {
        Color32::from_gray(190)
    } else {
        token_color(token.id)
    };
    let ink = Color32::from_gray(20);
    let text_galley = ui.painter().layout_no_wrap(shown, text_font, ink);
    let id_galley = ui
        .painter()
        .layout_no_wrap(token.id.to_string(), id_font, ink);
    let pad = Vec2::new(6.0, 3.0);
    let width = text_galley.size().x.max(id_galley.size().x) + 2.0 * pad.x;
    let height = text_galley.size().y + id_galley.size().y + 2.0 * pad.y;
    let (rect, response) = ui.allocate_exact_size(Vec2::new(width, height), Sense::click());
    let label = format!("token {index}: {} (id {})", token.shown, token.id);
    response.widget_info(|| WidgetInfo::selected(Role::Button, true, selected, &label));
    if ui.is_rect_visible(rect) {
        let painter = ui.painter();
        painter.rect_filled(rect, 4.0, fill);
        if selected {
            painter.rect_stroke(
                rect,
                4.0,
                Stroke::new(2.5, ui.visuals().selection.stroke.color),
                StrokeKind::Outside,
            );
        } else if response.hovered() {
            painter.rect_stroke(
                rect,
                4.0,
                Stroke::new(1.5, ui.visuals().text_color()),
                StrokeKind::Outside,
            );
        }
        let top = Rect::from_min_size(
            rect.min + pad,
            Vec2::new(rect.width() - 2.0 * pad.x, text_galley.size().y),
        );
        painter.galley(
            Align2::CENTER_TOP
                .align_size_within_rect(text_galley.size(), top)
                .min,
            text_galley,
            ink,
        );
        let bottom = Rect::from_min_max(
            egui::pos2(rect.min.x, top.max.y),
            egui::pos2(rect.max.x, rect.max.y - pad.y),
        );
        painter.galley(
            Align2::CENTER_BOTTOM
                .align_size_within_rect(id_galley.size(), bottom)
                .min,
            id_galley,
            ink,
        );
    }
    response.on_hover_ui(|ui| {
        ui.label(format!("token {index}: {}", token.shown));
        ui.label(format!("as the tokenizer writes it: {:?}", token.text));
        ui.label(format!("id {}", token.id));
        ui.label(format!(
            "bytes {} ({})",
            bytes_text(&token.bytes),
            bytes_hex(&token.bytes)
        ));
        if token.special {
            ui.label("special token, added by the tokenizer");
        }
        if token.type_id > 0 {
            ui.label(format!("segment {}", token.type_id));
        }
    })
}

/// The token as shown on a chip: whitespace made visible (space `▁`, newline `↵`, tab `→`), the
/// convention of [`crate::tokenizer::visible_whitespace`].
pub fn chip_text(token: &str) -> String {
    if token.is_empty() {
        return "(empty)".to_string();
    }
    crate::tokenizer::visible_whitespace(token)
}
