//! The map of a whole model ([`crate::model::map::ModelMap`]) drawn top to bottom: one column
//! per stack (an encoder–decoder's encoder left, its decoder right, with the encoder's output
//! running into every cross-attention), the layer stack as one framed layer "× N layers",
//! residual adds as ⊕ with their skip line, tensor shapes on the arrows, the heads below.
//! Every block is a button (its accessible label is `"{prefix} map: {box name}"`).

use eframe::egui;
use egui::{
    Align2, Color32, CornerRadius, FontId, Pos2, Rect, Sense, Shape, Stroke, StrokeKind, Ui, Vec2,
    WidgetInfo,
};

use super::color::{map_box_fill, text_on};
use crate::model::map::{BoxKind, MapBox, MapStack, ModelMap, StageTarget};
use crate::model::params::group_thousands;

const BOX_H: f32 = 44.0;
const INPUT_H: f32 = 32.0;
const RESIDUAL_H: f32 = 28.0;
/// The arrow between two blocks (its shape label sits beside it).
const GAP: f32 = 26.0;
/// Where a shape label sits on its arrow, below the block above (clear of the skip lines'
/// forks, just above the block below).
const LABEL_Y: f32 = 11.0;
/// The band at the top of the layer frame ("× 2 layers"), above where the skip lines fork.
const FRAME_BAND: f32 = 40.0;
const FRAME_PAD: f32 = 10.0;
/// Room right of the blocks for the residual skip lines.
const SKIP_MARGIN: f32 = 30.0;
const MAX_COLUMN: f32 = 420.0;
const COLUMN_GAP: f32 = 64.0;
const TITLE_H: f32 = 26.0;

/// Draws `map`; returns the stage of the block clicked this frame.
pub fn model_map(ui: &mut Ui, map: &ModelMap, prefix: &str) -> Option<StageTarget> {
    let available = ui.available_width();
    let layout = Layout::new(map, available);
    let (area, _) = ui.allocate_exact_size(
        Vec2::new(available.max(layout.size.x), layout.size.y),
        Sense::hover(),
    );
    // Centred in the card.
    let margin = ((area.width() - layout.size.x) / 2.0).max(0.0);
    let offset = area.min.to_vec2() + Vec2::new(margin, 0.0);
    let painter = ui.painter_at(area.expand(2.0));
    let visuals = ui.visuals().clone();
    let dark = visuals.dark_mode;
    let text = visuals.text_color();
    let weak = visuals.weak_text_color();
    let line = Stroke::new(1.5, weak);
    let small = FontId::proportional(13.0);
    let mono = FontId::monospace(13.0);

    for frame in &layout.frames {
        let rect = frame.rect.translate(offset);
        painter.rect(
            rect,
            CornerRadius::same(8),
            visuals.faint_bg_color,
            Stroke::new(1.0, visuals.widgets.noninteractive.bg_stroke.color),
            StrokeKind::Inside,
        );
        // Left and right of the arrow that runs down the middle.
        let band_y = rect.top() + 13.0;
        painter.text(
            Pos2::new(frame.axis + offset.x - 10.0, band_y),
            Align2::RIGHT_CENTER,
            &frame.left,
            FontId::proportional(15.0),
            visuals.strong_text_color(),
        );
        painter.text(
            Pos2::new(frame.axis + offset.x + 10.0, band_y),
            Align2::LEFT_CENTER,
            &frame.right,
            small.clone(),
            weak,
        );
    }
    for (pos, title) in &layout.titles {
        painter.text(
            *pos + offset,
            Align2::LEFT_CENTER,
            title,
            FontId::proportional(16.0),
            visuals.strong_text_color(),
        );
    }
    for arrow in &layout.arrows {
        let points: Vec<Pos2> = arrow.points.iter().map(|p| *p + offset).collect();
        let stroke = if arrow.cross {
            Stroke::new(2.0, cross_color(dark))
        } else {
            line
        };
        polyline_arrow(&painter, &points, stroke, arrow.head);
        if let Some((pos, label)) = &arrow.label {
            let color = if arrow.cross { cross_color(dark) } else { text };
            painter.text(
                *pos + offset,
                Align2::LEFT_CENTER,
                label,
                mono.clone(),
                color,
            );
        }
    }

    let mut clicked = None;
    for (index, placed) in layout.boxes.iter().enumerate() {
        let rect = placed.rect.translate(offset);
        let map_box = placed.map_box;
        let clickable = map_box.stage.is_some();
        let sense = if clickable {
            Sense::click()
        } else {
            Sense::hover()
        };
        let response = ui.interact(rect, ui.scope_id().with((prefix, "map", index)), sense);
        let label = format!("{prefix} map: {}", map_box.name);
        response.widget_info(|| {
            let kind = if clickable {
                egui::Role::Button
            } else {
                egui::Role::Label
            };
            WidgetInfo::labeled(kind, clickable, &label)
        });
        let hovered = clickable && response.hovered();
        draw_box(&painter, ui, map_box, rect, hovered);
        let response = response.on_hover_text(hover_text(map_box));
        if response.clicked() {
            clicked = map_box.stage;
        }
        if hovered {
            ui.ctx().set_cursor_icon(egui::CursorIcon::PointingHand);
        }
    }
    clicked
}

fn cross_color(dark: bool) -> Color32 {
    if dark {
        Color32::from_rgb(110, 200, 140)
    } else {
        Color32::from_rgb(30, 120, 60)
    }
}

fn hover_text(map_box: &MapBox) -> String {
    let mut lines = vec![map_box.label.clone(), map_box.detail.clone()];
    if let Some(inner) = &map_box.inner {
        lines.push(inner.clone());
    }
    lines.push(format!("out: {}", map_box.output));
    if map_box.params_total == 0 {
        lines.push("no parameters of its own".into());
    } else if map_box.copies > 1 {
        lines.push(format!(
            "{} per layer × {} layers = {}",
            group_thousands(map_box.params()),
            map_box.copies,
            group_thousands(map_box.params_total)
        ));
    } else {
        lines.push(map_box.params_text());
    }
    if let Some(note) = &map_box.note {
        lines.push(note.clone());
    }
    if map_box.stage.is_some() {
        lines.push("Click: open this stage in Step through".into());
    }
    lines.join("\n")
}

fn draw_box(painter: &egui::Painter, ui: &Ui, map_box: &MapBox, rect: Rect, hovered: bool) {
    let visuals = ui.visuals();
    let dark = visuals.dark_mode;
    let fill = map_box_fill(map_box.kind, dark);
    let ink = text_on(fill);
    let border = if hovered {
        visuals.selection.stroke
    } else {
        Stroke::new(1.0, fill.gamma_multiply(if dark { 1.6 } else { 0.7 }))
    };
    let small = FontId::proportional(13.0);
    match map_box.kind {
        BoxKind::Residual => {
            let center = Pos2::new(rect.center().x, rect.center().y);
            painter.circle(center, 11.0, fill, border);
            painter.text(
                center,
                Align2::CENTER_CENTER,
                "+",
                FontId::proportional(18.0),
                ink,
            );
            painter.text(
                Pos2::new(center.x - 18.0, center.y),
                Align2::RIGHT_CENTER,
                "residual add",
                small,
                visuals.weak_text_color(),
            );
        }
        BoxKind::Input => {
            painter.rect(
                rect,
                CornerRadius::same(16),
                fill,
                border,
                StrokeKind::Inside,
            );
            painter.text(
                rect.center(),
                Align2::CENTER_CENTER,
                &map_box.label,
                FontId::proportional(15.0),
                ink,
            );
        }
        _ => {
            let hover_stroke = if hovered { 2.0 } else { 1.0 };
            painter.rect(
                rect,
                CornerRadius::same(6),
                fill,
                Stroke::new(hover_stroke, border.color),
                StrokeKind::Inside,
            );
            let top = rect.top() + 13.0;
            let bottom = rect.bottom() - 11.0;
            painter.text(
                Pos2::new(rect.left() + 9.0, top),
                Align2::LEFT_CENTER,
                &map_box.label,
                FontId::proportional(15.0),
                ink,
            );
            painter.text(
                Pos2::new(rect.right() - 9.0, top),
                Align2::RIGHT_CENTER,
                params_label(map_box),
                small.clone(),
                ink,
            );
            let soft = ink.gamma_multiply(0.8);
            painter.text(
                Pos2::new(rect.left() + 9.0, bottom),
                Align2::LEFT_CENTER,
                &map_box.detail,
                small.clone(),
                soft,
            );
            if let Some(inner) = &map_box.inner {
                painter.text(
                    Pos2::new(rect.right() - 9.0, bottom),
                    Align2::RIGHT_CENTER,
                    inner,
                    FontId::monospace(12.5),
                    soft,
                );
            }
        }
    }
}

/// "16,640", "0 (tied)": the box's own parameters (one layer's).
fn params_label(map_box: &MapBox) -> String {
    let count = group_thousands(map_box.params());
    if map_box.params() == 0 && map_box.kind == BoxKind::Head {
        "0 (tied)".to_string()
    } else {
        count
    }
}

/// A polyline, with an arrowhead at its end if `head`.
fn polyline_arrow(painter: &egui::Painter, points: &[Pos2], stroke: Stroke, head: bool) {
    if points.len() < 2 {
        return;
    }
    painter.add(Shape::line(points.to_vec(), stroke));
    if !head {
        return;
    }
    let tip = points[points.len() - 1];
    let from = points[points.len() - 2];
    let direction = (tip - from).normalized();
    let normal = Vec2::new(-direction.y, direction.x);
    let back = tip - direction * 8.0;
    painter.add(Shape::convex_polygon(
        vec![tip, back + normal * 4.5, back - normal * 4.5],
        stroke.color,
        Stroke::NONE,
    ));
}

// ---------------------------------------------------------------------------------------------
// Layout: where every block, arrow and frame goes, relative to the top left corner.
// ---------------------------------------------------------------------------------------------

struct Placed<'a> {
    map_box: &'a MapBox,
    rect: Rect,
}

struct Arrow {
    points: Vec<Pos2>,
    /// Where the shape label starts (left-centred) and what it says.
    label: Option<(Pos2, String)>,
    head: bool,
    /// The encoder's output running into cross-attention.
    cross: bool,
}

struct Frame {
    rect: Rect,
    /// x of the arrow through the frame (the titles sit either side of it).
    axis: f32,
    left: String,
    right: String,
}

struct Layout<'a> {
    boxes: Vec<Placed<'a>>,
    arrows: Vec<Arrow>,
    frames: Vec<Frame>,
    titles: Vec<(Pos2, String)>,
    size: Vec2,
}

/// Where the next block's incoming arrow starts, and the shape it carries.
struct Pending {
    from: Pos2,
    label: String,
}

impl<'a> Layout<'a> {
    fn new(map: &'a ModelMap, available: f32) -> Self {
        let mut layout = Layout {
            boxes: Vec::new(),
            arrows: Vec::new(),
            frames: Vec::new(),
            titles: Vec::new(),
            size: Vec2::ZERO,
        };
        let columns = map.stacks.len().max(1) as f32;
        let column_w =
            ((available - COLUMN_GAP * (columns - 1.0)) / columns).clamp(220.0, MAX_COLUMN);
        let mut bottom: f32 = 0.0;
        // Where the encoder's output leaves its column (for cross-attention).
        let mut encoder_out: Option<Pos2> = None;
        let mut output = None;
        for (i, stack) in map.stacks.iter().enumerate() {
            let left = i as f32 * (column_w + COLUMN_GAP);
            let (pending, column_bottom) =
                layout.column(stack, left, column_w, map.stacks.len() > 1);
            bottom = bottom.max(column_bottom);
            if i + 1 < map.stacks.len() {
                // The encoder's output: down out of the layer frame, with its shape.
                let out = pending.from + Vec2::new(0.0, FRAME_PAD + GAP);
                layout.arrows.push(Arrow {
                    points: vec![pending.from, out],
                    label: Some((
                        pending.from + Vec2::new(8.0, FRAME_PAD + GAP / 2.0),
                        format!("{} encoder output", pending.label),
                    )),
                    head: false,
                    cross: true,
                });
                encoder_out = Some(out);
            } else {
                output = Some(pending);
            }
        }
        if let Some(out) = encoder_out {
            layout.cross_arrows(out, column_w);
        }
        if let Some(pending) = output {
            let heads_bottom = layout.heads(&map.heads, pending, column_w, available);
            bottom = bottom.max(heads_bottom);
        }
        // Heads wider than the stack hang out left of it: shift everything right.
        let min_x = layout
            .boxes
            .iter()
            .map(|b| b.rect.left())
            .fold(0.0, f32::min);
        if min_x < 0.0 {
            layout.translate(Vec2::new(-min_x, 0.0));
        }
        let width = (column_w * columns + COLUMN_GAP * (columns - 1.0) - min_x).max(
            layout
                .boxes
                .iter()
                .map(|b| b.rect.right())
                .fold(0.0, f32::max),
        );
        layout.size = Vec2::new(width, bottom + 4.0);
        layout
    }

    fn translate(&mut self, by: Vec2) {
        for placed in &mut self.boxes {
            placed.rect = placed.rect.translate(by);
        }
        for arrow in &mut self.arrows {
            for point in &mut arrow.points {
                *point += by;
            }
            if let Some((pos, _)) = &mut arrow.label {
                *pos += by;
            }
        }
        for frame in &mut self.frames {
            frame.rect = frame.rect.translate(by);
            frame.axis += by.x;
        }
        for (pos, _) in &mut self.titles {
            *pos += by;
        }
    }

    /// Places a block of `height` under the pending arrow (drawing that arrow).
    fn place(&mut self, map_box: &'a MapBox, pending: &mut Option<Pending>, rect: Rect) -> Rect {
        if let Some(p) = pending.take() {
            let to = Pos2::new(rect.center().x, rect.top());
            self.arrows.push(Arrow {
                label: Some((p.from + Vec2::new(8.0, LABEL_Y), p.label)),
                points: vec![p.from, to],
                head: true,
                cross: false,
            });
        }
        self.boxes.push(Placed { map_box, rect });
        *pending = Some(Pending {
            from: Pos2::new(rect.center().x, rect.bottom()),
            label: map_box.output.clone(),
        });
        rect
    }

    /// One stack, top to bottom; returns the arrow leaving its last block and the lowest y.
    fn column(
        &mut self,
        stack: &'a MapStack,
        left: f32,
        width: f32,
        titled: bool,
    ) -> (Pending, f32) {
        let box_left = left + FRAME_PAD;
        let box_w = width - FRAME_PAD - SKIP_MARGIN;
        let axis = box_left + box_w / 2.0;
        let mut y = 0.0;
        if titled {
            self.titles
                .push((Pos2::new(left, TITLE_H / 2.0), stack.title.clone()));
            y += TITLE_H;
        }
        let mut pending: Option<Pending> = None;
        let block = |y: f32, map_box: &MapBox| {
            let height = height_of(map_box);
            let w = if map_box.kind == BoxKind::Input {
                box_w * 0.6
            } else {
                box_w
            };
            Rect::from_min_size(Pos2::new(axis - w / 2.0, y), Vec2::new(w, height))
        };
        for map_box in &stack.embeddings {
            let rect = self.place(map_box, &mut pending, block(y, map_box));
            y = rect.bottom() + GAP;
        }
        if !stack.layer.is_empty() {
            let frame_top = y;
            y += FRAME_BAND;
            let mut rects: Vec<Rect> = Vec::new();
            for map_box in &stack.layer {
                let rect = self.place(map_box, &mut pending, block(y, map_box));
                if let Some(start) = map_box.skip_from.and_then(|i| rects.get(i)) {
                    // The skip line: from the arrow into the block whose input it adds, round
                    // the right of the blocks, into the ⊕.
                    // (Below the shape label on that arrow.)
                    let fork = Pos2::new(axis, start.top() - 3.0);
                    let skip_x = box_left + box_w + SKIP_MARGIN / 2.0;
                    let center_y = rect.center().y;
                    self.arrows.push(Arrow {
                        points: vec![
                            fork,
                            Pos2::new(skip_x, fork.y),
                            Pos2::new(skip_x, center_y),
                            Pos2::new(axis + 12.0, center_y),
                        ],
                        label: None,
                        head: true,
                        cross: false,
                    });
                }
                rects.push(rect);
                y = rect.bottom() + GAP;
            }
            let frame_bottom = y - GAP + FRAME_PAD;
            self.frames.push(Frame {
                rect: Rect::from_min_max(
                    Pos2::new(left, frame_top),
                    Pos2::new(left + width, frame_bottom),
                ),
                axis,
                left: format!("× {} layers", stack.layers),
                right: format!("{} params per layer", group_thousands(stack.layer_params())),
            });
            y = frame_bottom + GAP;
        }
        for map_box in &stack.after {
            let rect = self.place(map_box, &mut pending, block(y, map_box));
            y = rect.bottom() + GAP;
        }
        let pending = pending.unwrap_or(Pending {
            from: Pos2::new(axis, y),
            label: String::new(),
        });
        (pending, y)
    }

    /// From the encoder's output to every cross-attention block: along the gutter between the
    /// columns, then into the block's left side.
    fn cross_arrows(&mut self, out: Pos2, column_w: f32) {
        let targets: Vec<Rect> = self
            .boxes
            .iter()
            .filter(|b| b.map_box.reads_encoder)
            .map(|b| b.rect)
            .collect();
        let gutter = column_w + COLUMN_GAP / 2.0;
        for target in targets {
            let y = target.center().y;
            self.arrows.push(Arrow {
                points: vec![
                    out,
                    Pos2::new(gutter, out.y),
                    Pos2::new(gutter, y),
                    Pos2::new(target.left(), y),
                ],
                label: None,
                head: true,
                cross: true,
            });
        }
    }

    /// The heads under the output stack: one branch straight on, several side by side from a
    /// common line. Returns the lowest y.
    fn heads(
        &mut self,
        branches: &'a [Vec<MapBox>],
        from: Pending,
        column_w: f32,
        available: f32,
    ) -> f32 {
        let axis = from.from.x;
        let box_w = column_w - FRAME_PAD - SKIP_MARGIN;
        let n = branches.len().max(1) as f32;
        let gap = 16.0;
        let branch_w = ((available.max(column_w) - gap * (n - 1.0)) / n).min(box_w);
        let total = branch_w * n + gap * (n - 1.0);
        // Centred under the stack (possibly left of it: [`Layout::new`] shifts everything).
        let start = axis - total / 2.0;
        let mut top = from.from.y + GAP;
        let mut shared = Some(from);
        if branches.len() > 1 {
            // Down to a line the branches hang from.
            if let Some(p) = shared.take() {
                let bus_y = p.from.y + GAP;
                let first = start + branch_w / 2.0;
                let last = start + total - branch_w / 2.0;
                self.arrows.push(Arrow {
                    points: vec![p.from, Pos2::new(axis, bus_y)],
                    label: Some((p.from + Vec2::new(8.0, LABEL_Y), p.label)),
                    head: false,
                    cross: false,
                });
                self.arrows.push(Arrow {
                    points: vec![
                        Pos2::new(first.min(axis), bus_y),
                        Pos2::new(last.max(axis), bus_y),
                    ],
                    label: None,
                    head: false,
                    cross: false,
                });
                top = bus_y + GAP * 0.75;
            }
        }
        let mut bottom = top;
        for (i, branch) in branches.iter().enumerate() {
            let x = start + i as f32 * (branch_w + gap);
            let center = x + branch_w / 2.0;
            let mut pending = match shared.take() {
                Some(p) => Some(p),
                None => Some(Pending {
                    from: Pos2::new(center, top - GAP * 0.75),
                    label: String::new(),
                }),
            };
            let mut y = top;
            for map_box in branch {
                let rect = Rect::from_min_size(Pos2::new(x, y), Vec2::new(branch_w, BOX_H));
                self.place(map_box, &mut pending, rect);
                y = rect.bottom() + GAP;
            }
            // The branch's output: a last arrow with its shape.
            if let Some(p) = pending {
                self.arrows.push(Arrow {
                    label: Some((p.from + Vec2::new(8.0, LABEL_Y), p.label)),
                    points: vec![p.from, p.from + Vec2::new(0.0, GAP - 4.0)],
                    head: true,
                    cross: false,
                });
            }
            bottom = bottom.max(y);
        }
        bottom
    }
}

fn height_of(map_box: &MapBox) -> f32 {
    match map_box.kind {
        BoxKind::Input => INPUT_H,
        BoxKind::Residual => RESIDUAL_H,
        _ => BOX_H,
    }
}
