//! Live training curves: train and validation loss (linear or log scale), learning rate and
//! gradient norm, drawn with `egui_plot`, with PNG / CSV / JSON export. Used by the Train and
//! Fine-tune views; fed from [`crate::train::StepReport`] and [`crate::train::EvalReport`].

use eframe::egui;
use egui::{Color32, Ui};
use egui_plot::{HoverPosition, Legend, Line, MarkerShape, Plot, PlotPoint, PlotPoints, Points};

use super::export::{ExportFormat, encode_png, export_buttons, table_csv};
use crate::train::{EvalReport, StepReport};

/// Colours of the series (readable on dark and light backgrounds).
pub const TRAIN_COLOR: Color32 = Color32::from_rgb(70, 150, 230);
pub const VAL_COLOR: Color32 = Color32::from_rgb(235, 130, 40);
pub const SMOOTH_COLOR: Color32 = Color32::from_rgb(40, 90, 200);
pub const LR_COLOR: Color32 = Color32::from_rgb(90, 180, 90);
pub const GRAD_COLOR: Color32 = Color32::from_rgb(190, 90, 190);

/// Points drawn per series at most; longer series are thinned (every k-th point, plus the last).
const MAX_DRAWN: usize = 2000;

/// Appends a point; a repeated evaluation of the same step (e.g. the final one) replaces it.
fn push_point(series: &mut Vec<[f64; 2]>, point: [f64; 2]) {
    match series.last_mut() {
        Some(last) if last[0] == point[0] => *last = point,
        _ => series.push(point),
    }
}

/// The curves of one run. Cheap to append to every frame; [`TrainingCurves::show`] draws them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainingCurves {
    /// `[step, mean train loss]`.
    pub train_loss: Vec<[f64; 2]>,
    /// `[step, validation loss]` (step 0 is the untrained model).
    pub val_loss: Vec<[f64; 2]>,
    /// `[step, learning rate]`.
    pub lr: Vec<[f64; 2]>,
    /// `[step, gradient norm before clipping]`.
    pub grad_norm: Vec<[f64; 2]>,
    /// `[step, tokens per second]`.
    pub tokens_per_sec: Vec<[f64; 2]>,
    /// Held-out translation metrics (seq2seq): `[step, exact-match %]` and `[step, BLEU]`.
    pub exact_match: Vec<[f64; 2]>,
    pub bleu: Vec<[f64; 2]>,
    /// Draw losses on a log scale.
    pub log_scale: bool,
    /// Also draw an exponential moving average of the train loss.
    pub smooth: bool,
}

impl TrainingCurves {
    pub fn clear(&mut self) {
        let (log_scale, smooth) = (self.log_scale, self.smooth);
        *self = Self {
            log_scale,
            smooth,
            ..Self::default()
        };
    }

    pub fn is_empty(&self) -> bool {
        self.train_loss.is_empty() && self.val_loss.is_empty()
    }

    pub fn push_step(&mut self, report: &StepReport) {
        let step = report.step as f64;
        self.train_loss.push([step, f64::from(report.train_loss)]);
        self.lr.push([step, report.lr]);
        self.grad_norm.push([step, f64::from(report.grad_norm)]);
        self.tokens_per_sec.push([step, report.tokens_per_sec]);
    }

    pub fn push_eval(&mut self, report: &EvalReport) {
        let step = report.step as f64;
        push_point(&mut self.val_loss, [step, f64::from(report.val_loss)]);
        // Only seq2seq reports BLEU; its exact match is a fraction, drawn as a percentage.
        if let Some(&bleu) = report.metrics.get("bleu") {
            push_point(&mut self.bleu, [step, bleu]);
            if let Some(&exact) = report.metrics.get("exact_match") {
                push_point(&mut self.exact_match, [step, 100.0 * exact]);
            }
        }
    }

    /// The latest train loss.
    pub fn last_train_loss(&self) -> Option<f64> {
        self.train_loss.last().map(|p| p[1])
    }

    /// The latest validation loss.
    pub fn last_val_loss(&self) -> Option<f64> {
        self.val_loss.last().map(|p| p[1])
    }

    /// Exponential moving average of the train loss (bias-corrected, as TensorBoard does).
    pub fn smoothed_train_loss(&self, weight: f64) -> Vec<[f64; 2]> {
        let mut average = 0.0;
        let mut out = Vec::with_capacity(self.train_loss.len());
        for (i, p) in self.train_loss.iter().enumerate() {
            average = weight * average + (1.0 - weight) * p[1];
            let correction = 1.0 - weight.powi(i as i32 + 1);
            out.push([p[0], average / correction.max(f64::MIN_POSITIVE)]);
        }
        out
    }

    /// Draws the loss chart and the learning-rate chart side by side (stacked when narrow), the
    /// scale switches and the export buttons.
    pub fn show(&mut self, ui: &mut Ui, id_salt: &str, export_dir: &std::path::Path) {
        ui.horizontal(|ui| {
            ui.checkbox(&mut self.log_scale, "Log scale")
                .on_hover_text("Draw the losses on a logarithmic axis");
            ui.checkbox(&mut self.smooth, "Smoothed train loss")
                .on_hover_text("Add an exponential moving average (weight 0.9) of the train loss");
        });
        let wide = ui.available_width() > 760.0;
        let height = 230.0;
        if wide {
            let width = (ui.available_width() - 12.0) / 2.0;
            ui.horizontal_top(|ui| {
                ui.vertical(|ui| {
                    ui.set_width(width);
                    self.loss_plot(ui, id_salt, height);
                });
                ui.vertical(|ui| {
                    ui.set_width(width);
                    self.lr_plot(ui, id_salt, height);
                });
            });
        } else {
            self.loss_plot(ui, id_salt, height);
            self.lr_plot(ui, id_salt, height * 0.7);
        }
        if !self.bleu.is_empty() {
            self.translation_plot(ui, id_salt, height * 0.8);
        }
        let curves = self.clone();
        export_buttons(
            ui,
            &format!("{id_salt}-curves"),
            export_dir,
            &format!("{id_salt}-curves"),
            &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
            |format| curves.export(format),
        );
    }

    fn loss_plot(&self, ui: &mut Ui, id_salt: &str, height: f32) {
        ui.strong("Loss");
        let log = self.log_scale;
        let transform = move |v: f64| if log { v.max(1e-12).log10() } else { v };
        let series = |points: &[[f64; 2]]| -> PlotPoints<'static> {
            thin(points)
                .into_iter()
                .map(|[x, y]| [x, transform(y)])
                .collect()
        };
        Plot::new(("glassbox_loss_plot", id_salt))
            .height(height)
            .legend(Legend::default())
            .allow_scroll(false)
            .x_axis_label("step")
            .y_axis_label(if log { "loss (log)" } else { "loss" })
            .y_axis_formatter(move |mark, _| {
                if log {
                    format_number(10f64.powf(mark.value))
                } else {
                    format_number(mark.value)
                }
            })
            .label_formatter(move |hover| {
                let (name, position) = hover_parts(hover);
                // Left of step 0 there is nothing to read off.
                if position.x < 0.0 {
                    return None;
                }
                let y = if log {
                    10f64.powf(position.y)
                } else {
                    position.y
                };
                Some(if name.is_empty() {
                    format!("step {:.0}\nloss {:.4}", position.x, y)
                } else {
                    format!("{name}\nstep {:.0}\nloss {:.4}", position.x, y)
                })
            })
            .show(ui, |plot| {
                if !self.train_loss.is_empty() {
                    plot.line(
                        Line::new("train loss", series(&self.train_loss))
                            .color(TRAIN_COLOR)
                            .width(1.5),
                    );
                }
                if self.smooth && self.train_loss.len() > 2 {
                    plot.line(
                        Line::new(
                            "train loss (smoothed)",
                            series(&self.smoothed_train_loss(0.9)),
                        )
                        .color(SMOOTH_COLOR)
                        .width(2.0),
                    );
                }
                if !self.val_loss.is_empty() {
                    plot.line(
                        Line::new("validation loss", series(&self.val_loss))
                            .color(VAL_COLOR)
                            .width(2.0),
                    );
                    plot.points(
                        Points::new("validation loss", series(&self.val_loss))
                            .color(VAL_COLOR)
                            .shape(MarkerShape::Circle)
                            .filled(true)
                            .radius(3.0),
                    );
                }
            });
    }

    fn translation_plot(&self, ui: &mut Ui, id_salt: &str, height: f32) {
        ui.strong("Held-out translations: exact match and BLEU");
        Plot::new(("glassbox_translation_plot", id_salt))
            .height(height)
            .legend(Legend::default())
            .allow_scroll(false)
            .include_y(0.0)
            .include_y(100.0)
            .x_axis_label("step")
            .y_axis_label("0 to 100")
            .label_formatter(|hover| {
                let (name, position) = hover_parts(hover);
                if position.x < 0.0 {
                    return None;
                }
                Some(format!("{name}\nstep {:.0}\n{:.1}", position.x, position.y))
            })
            .show(ui, |plot| {
                for (name, points, color) in [
                    ("exact match (%)", &self.exact_match, TRAIN_COLOR),
                    ("BLEU", &self.bleu, VAL_COLOR),
                ] {
                    plot.line(
                        Line::new(name, PlotPoints::from(thin(points)))
                            .color(color)
                            .width(2.0),
                    );
                    plot.points(
                        Points::new(name, PlotPoints::from(thin(points)))
                            .color(color)
                            .shape(MarkerShape::Circle)
                            .filled(true)
                            .radius(3.0),
                    );
                }
            });
    }

    fn lr_plot(&self, ui: &mut Ui, id_salt: &str, height: f32) {
        ui.strong("Learning rate and gradient norm");
        // Two quantities of different size: the gradient norm is drawn scaled into the learning
        // rate's range and named so in the legend.
        let lr_max = self.lr.iter().map(|p| p[1]).fold(0.0f64, f64::max);
        let grad_max = self.grad_norm.iter().map(|p| p[1]).fold(0.0f64, f64::max);
        let factor = if grad_max > 0.0 && lr_max > 0.0 {
            lr_max / grad_max
        } else {
            1.0
        };
        Plot::new(("glassbox_lr_plot", id_salt))
            .height(height)
            .legend(Legend::default())
            .allow_scroll(false)
            .x_axis_label("step")
            .y_axis_formatter(|mark, _| format_number(mark.value))
            .label_formatter(move |hover| {
                let (name, position) = hover_parts(hover);
                if position.x < 0.0 {
                    return None;
                }
                Some(if name.starts_with("gradient") {
                    format!(
                        "step {:.0}\ngradient norm {:.4}",
                        position.x,
                        position.y / factor
                    )
                } else {
                    format!("step {:.0}\nlearning rate {:.3e}", position.x, position.y)
                })
            })
            .show(ui, |plot| {
                if !self.lr.is_empty() {
                    plot.line(
                        Line::new("learning rate", PlotPoints::from(thin(&self.lr)))
                            .color(LR_COLOR)
                            .width(2.0),
                    );
                }
                if !self.grad_norm.is_empty() {
                    let scaled: PlotPoints<'static> = thin(&self.grad_norm)
                        .into_iter()
                        .map(|[x, y]| [x, y * factor])
                        .collect();
                    plot.line(
                        Line::new("gradient norm (scaled)", scaled)
                            .color(GRAD_COLOR)
                            .width(1.0),
                    );
                }
            });
    }

    /// The curves as a file: PNG (loss chart above, learning rate below), CSV (one row per
    /// step) or JSON.
    pub fn export(&self, format: ExportFormat) -> Result<Vec<u8>, String> {
        match format {
            ExportFormat::Png => self.png(),
            ExportFormat::Csv => Ok(self.csv().into_bytes()),
            ExportFormat::Json => {
                let value = serde_json::json!({
                    "train_loss": self.train_loss,
                    "val_loss": self.val_loss,
                    "lr": self.lr,
                    "grad_norm": self.grad_norm,
                    "tokens_per_sec": self.tokens_per_sec,
                    "exact_match_percent": self.exact_match,
                    "bleu": self.bleu,
                });
                serde_json::to_vec_pretty(&value).map_err(|e| e.to_string())
            }
        }
    }

    /// `step,train_loss,val_loss,lr,grad_norm,tokens_per_sec`; steps with only an evaluation
    /// (step 0) have empty train columns.
    pub fn csv(&self) -> String {
        let mut steps: Vec<u64> = self
            .train_loss
            .iter()
            .chain(&self.val_loss)
            .map(|p| p[0] as u64)
            .collect();
        steps.sort_unstable();
        steps.dedup();
        let find = |series: &[[f64; 2]], step: u64| {
            series
                .iter()
                .rev()
                .find(|p| p[0] as u64 == step)
                .map(|p| p[1].to_string())
                .unwrap_or_default()
        };
        let rows: Vec<Vec<String>> = steps
            .iter()
            .map(|&s| {
                vec![
                    s.to_string(),
                    find(&self.train_loss, s),
                    find(&self.val_loss, s),
                    find(&self.lr, s),
                    find(&self.grad_norm, s),
                    find(&self.tokens_per_sec, s),
                ]
            })
            .collect();
        table_csv(
            &[
                "step",
                "train_loss",
                "val_loss",
                "lr",
                "grad_norm",
                "tokens_per_sec",
            ],
            &rows,
        )
    }

    fn png(&self) -> Result<Vec<u8>, String> {
        let log = self.log_scale;
        let transform = |v: f64| if log { v.max(1e-12).log10() } else { v };
        let mut canvas = LineCanvas::new(900, 560);
        let loss_area = (40, 20, 840, 320);
        let lr_area = (40, 370, 840, 170);
        let losses: Vec<Vec<[f64; 2]>> = [&self.train_loss, &self.val_loss]
            .iter()
            .map(|s| s.iter().map(|p| [p[0], transform(p[1])]).collect())
            .collect();
        let x_range = range(self.train_loss.iter().chain(&self.val_loss).map(|p| p[0]));
        let y_range = range(losses.iter().flatten().map(|p| p[1]));
        canvas.frame(loss_area);
        canvas.polyline(loss_area, &losses[0], x_range, y_range, TRAIN_COLOR);
        canvas.polyline(loss_area, &losses[1], x_range, y_range, VAL_COLOR);
        for p in &losses[1] {
            canvas.dot(loss_area, *p, x_range, y_range, VAL_COLOR);
        }
        canvas.frame(lr_area);
        let lr_range = range(self.lr.iter().map(|p| p[1]));
        canvas.polyline(lr_area, &self.lr, x_range, lr_range, LR_COLOR);
        encode_png(canvas.width, canvas.height, &canvas.pixels)
    }
}

/// The hovered series' name (empty away from the data) and the position.
fn hover_parts<'a>(hover: &HoverPosition<'a>) -> (&'a str, PlotPoint) {
    match *hover {
        HoverPosition::NearDataPoint {
            plot_name,
            position,
            ..
        } => (plot_name, position),
        HoverPosition::Elsewhere { position } => ("", position),
    }
}

/// Every k-th point (and the last) when a series is longer than [`MAX_DRAWN`].
fn thin(points: &[[f64; 2]]) -> Vec<[f64; 2]> {
    if points.len() <= MAX_DRAWN {
        return points.to_vec();
    }
    let stride = points.len().div_ceil(MAX_DRAWN);
    let mut out: Vec<[f64; 2]> = points.iter().step_by(stride).copied().collect();
    if let (Some(last), Some(kept)) = (points.last(), out.last())
        && last != kept
    {
        out.push(*last);
    }
    out
}

/// Short numbers for axis marks: 0.001, 2.5e-4, 1234.
pub fn format_number(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&magnitude) {
        format!("{value:.1e}")
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi - lo < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// A white RGBA canvas with grey frames and coloured polylines, for the PNG export.
struct LineCanvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

type Area = (u32, u32, u32, u32);

impl LineCanvas {
    fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            pixels: vec![255; (width * height * 4) as usize],
        }
    }

    fn set(&mut self, x: i64, y: i64, color: Color32) {
        if x >= 0 && y >= 0 && (x as u32) < self.width && (y as u32) < self.height {
            let i = ((y as u32 * self.width + x as u32) * 4) as usize;
            self.pixels[i..i + 4].copy_from_slice(&color.to_array());
        }
    }

    fn frame(&mut self, (x, y, w, h): Area) {
        let grey = Color32::from_gray(170);
        for dx in 0..=w {
            self.set(i64::from(x + dx), i64::from(y), grey);
            self.set(i64::from(x + dx), i64::from(y + h), grey);
        }
        for dy in 0..=h {
            self.set(i64::from(x), i64::from(y + dy), grey);
            self.set(i64::from(x + w), i64::from(y + dy), grey);
        }
    }

    fn to_pixel(area: Area, p: [f64; 2], xr: (f64, f64), yr: (f64, f64)) -> (i64, i64) {
        let (x, y, w, h) = area;
        let fx = (p[0] - xr.0) / (xr.1 - xr.0).max(1e-12);
        let fy = (p[1] - yr.0) / (yr.1 - yr.0).max(1e-12);
        (
            i64::from(x) + (fx * f64::from(w)).round() as i64,
            i64::from(y + h) - (fy * f64::from(h)).round() as i64,
        )
    }

    fn polyline(
        &mut self,
        area: Area,
        points: &[[f64; 2]],
        xr: (f64, f64),
        yr: (f64, f64),
        color: Color32,
    ) {
        let pixels: Vec<(i64, i64)> = thin(points)
            .into_iter()
            .filter(|p| p[1].is_finite())
            .map(|p| Self::to_pixel(area, p, xr, yr))
            .collect();
        for pair in pixels.windows(2) {
            self.line(pair[0], pair[1], color);
        }
        if let [only] = pixels.as_slice() {
            self.line(*only, *only, color);
        }
    }

    fn dot(&mut self, area: Area, p: [f64; 2], xr: (f64, f64), yr: (f64, f64), color: Color32) {
        let (cx, cy) = Self::to_pixel(area, p, xr, yr);
        for dy in -3..=3 {
            for dx in -3..=3 {
                if dx * dx + dy * dy <= 9 {
                    self.set(cx + dx, cy + dy, color);
                }
            }
        }
    }

    /// Bresenham, two pixels thick.
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), color: Color32) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, color);
            self.set(x, y + 1, color);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_last_point() {
        let points: Vec<[f64; 2]> = (0..5001).map(|i| [i as f64, 1.0]).collect();
        let thinned = thin(&points);
        assert!(thinned.len() <= MAX_DRAWN + 1);
        assert_eq!(thinned.last(), points.last());
    }

    #[test]
    fn csv_and_png() {
        let mut curves = TrainingCurves::default();
        curves.val_loss.push([0.0, 3.0]);
        curves.train_loss.push([1.0, 2.5]);
        curves.lr.push([1.0, 1e-3]);
        let csv = curves.csv();
        assert!(csv.starts_with("step,train_loss,val_loss"));
        assert!(csv.contains("\n0,,3,"));
        let png = curves.export(ExportFormat::Png).expect("png");
        assert_eq!(&png[..4], b"\x89PNG");
    }
}
