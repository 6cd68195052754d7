//! Export of what a panel shows: PNG images rendered from the data (colour blocks), CSV and
//! JSON. Files are written atomically into the export folder (default `exports/`), and the path
//! is shown next to the buttons.

use eframe::egui;
use std::path::{Path, PathBuf};

use egui::{Color32, Ui};

use super::color::ColorScale;
use crate::app::data::Matrix;
use crate::util::write_atomic;

/// The formats a panel can export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Png,
    Csv,
    Json,
}

impl ExportFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Png => "png",
            ExportFormat::Csv => "csv",
            ExportFormat::Json => "json",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ExportFormat::Png => "PNG",
            ExportFormat::Csv => "CSV",
            ExportFormat::Json => "JSON",
        }
    }
}

/// Encodes RGBA pixels as a PNG file.
pub fn encode_png(width: u32, height: u32, rgba: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
        writer.write_image_data(rgba).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// A simple RGBA canvas for rendering exports.
struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: u32, height: u32, background: Color32) -> Self {
        let mut pixels = Vec::with_capacity((width * height * 4) as usize);
        for _ in 0..width * height {
            pixels.extend_from_slice(&background.to_array());
        }
        Self {
            width,
            height,
            pixels,
        }
    }

    fn fill(&mut self, x0: u32, y0: u32, w: u32, h: u32, color: Color32) {
        let rgba = color.to_array();
        for y in y0..(y0 + h).min(self.height) {
            for x in x0..(x0 + w).min(self.width) {
                let i = ((y * self.width + x) * 4) as usize;
                self.pixels[i..i + 4].copy_from_slice(&rgba);
            }
        }
    }

    fn set(&mut self, x: u32, y: u32, color: Color32) {
        if x < self.width && y < self.height {
            let i = ((y * self.width + x) * 4) as usize;
            self.pixels[i..i + 4].copy_from_slice(&color.to_array());
        }
    }

    fn png(&self) -> Result<Vec<u8>, String> {
        encode_png(self.width, self.height, &self.pixels)
    }
}

/// A heatmap as a PNG: one block per cell (blocked cells hatched grey) and the colour scale as a
/// strip on the right, high values at the top.
pub fn heatmap_png(
    matrix: &Matrix,
    mask: Option<&Matrix>,
    scale: ColorScale,
) -> Result<Vec<u8>, String> {
    let (rows, cols) = (matrix.rows.max(1) as u32, matrix.cols.max(1) as u32);
    let cell = (768 / rows.max(cols)).clamp(2, 48);
    let margin = 8;
    let legend = 16;
    let width = margin + cols * cell + margin + legend + margin;
    let height = margin + rows * cell + margin;
    let mut canvas = Canvas::new(width, height, Color32::WHITE);
    for r in 0..matrix.rows {
        for c in 0..matrix.cols {
            let (x, y) = (margin + c as u32 * cell, margin + r as u32 * cell);
            let blocked = mask.and_then(|m| m.get(r, c)) == Some(0.0);
            if blocked {
                canvas.fill(x, y, cell, cell, Color32::from_gray(200));
                for d in 0..cell {
                    if cell >= 6 {
                        // Diagonal hatch every 4 pixels.
                        for k in (0..cell).step_by(4) {
                            let xx = x + (d + k) % cell;
                            canvas.set(xx, y + cell - 1 - d, Color32::from_gray(150));
                        }
                    }
                }
            } else {
                let value = matrix.get(r, c).unwrap_or(0.0);
                canvas.fill(x, y, cell, cell, scale.color(value));
            }
        }
    }
    let lx = margin + cols * cell + margin;
    let lh = rows * cell;
    for i in 0..lh {
        let t = 1.0 - (i as f32 + 0.5) / lh as f32;
        canvas.fill(lx, margin + i, legend, 1, scale.color_at(t));
    }
    canvas.png()
}

/// Horizontal bars as a PNG: one bar per value, grouped series side by side (e.g. textbook and
/// exact), scaled to the largest value.
pub fn bars_png(series: &[(Color32, Vec<f64>)]) -> Result<Vec<u8>, String> {
    let groups = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0) as u32;
    let per_group = series.len().max(1) as u32;
    let bar_h = 14;
    let gap = 8;
    let width = 640;
    let margin = 10;
    let height = margin * 2 + groups * (per_group * bar_h + gap);
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut canvas = Canvas::new(width, height.max(1), Color32::WHITE);
    for g in 0..groups {
        for (s, (color, values)) in series.iter().enumerate() {
            let value = values.get(g as usize).copied().unwrap_or(0.0);
            let w = ((value / max) * (width - 2 * margin) as f64).round() as u32;
            let y = margin + g * (per_group * bar_h + gap) + s as u32 * bar_h;
            canvas.fill(margin, y, w.max(1), bar_h - 2, *color);
        }
    }
    canvas.png()
}

/// Quotes a CSV field when needed.
pub fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) || field.starts_with(' ') || field.ends_with(' ') {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// A table as CSV: a header line, then one line per row.
pub fn table_csv(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let line = |cells: Vec<String>| cells.join(",") + "\n";
    out.push_str(&line(headers.iter().map(|h| csv_field(h)).collect()));
    for row in rows {
        out.push_str(&line(row.iter().map(|c| csv_field(c)).collect()));
    }
    out
}

/// A matrix as CSV with row and column labels (exact values, full precision).
pub fn matrix_csv(matrix: &Matrix, row_labels: &[String], col_labels: &[String]) -> String {
    let label =
        |labels: &[String], i: usize| labels.get(i).cloned().unwrap_or_else(|| i.to_string());
    let mut headers = vec![String::new()];
    headers.extend((0..matrix.cols).map(|c| label(col_labels, c)));
    let rows: Vec<Vec<String>> = (0..matrix.rows)
        .map(|r| {
            let mut row = vec![label(row_labels, r)];
            row.extend(matrix.row(r).iter().map(|v| v.to_string()));
            row
        })
        .collect();
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    table_csv(&header_refs, &rows)
}

/// A matrix as JSON: `{"rows": [...labels], "cols": [...], "values": [[...]]}`.
pub fn matrix_json(
    matrix: &Matrix,
    row_labels: &[String],
    col_labels: &[String],
    extra: serde_json::Value,
) -> Result<Vec<u8>, String> {
    let values: Vec<&[f32]> = (0..matrix.rows).map(|r| matrix.row(r)).collect();
    let value = serde_json::json!({
        "rows": row_labels,
        "cols": col_labels,
        "values": values,
        "info": extra,
    });
    serde_json::to_vec_pretty(&value).map_err(|e| e.to_string())
}

/// A file name for an export: `{stem}-{unix seconds}.{ext}`, with unsafe characters replaced.
pub fn export_file_name(stem: &str, format: ExportFormat) -> String {
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{clean}-{seconds}.{}", format.extension())
}

/// Writes `bytes` to `dir/{stem}-{time}.{ext}` atomically and returns the path.
pub fn write_export(
    dir: &Path,
    stem: &str,
    format: ExportFormat,
    bytes: &[u8],
) -> Result<PathBuf, String> {
    let path = dir.join(export_file_name(stem, format));
    write_atomic(&path, bytes).map_err(|e| e.to_string())?;
    Ok(path.canonicalize().unwrap_or(path))
}

/// A row of export buttons. `make` renders the chosen format; the result (the saved path or the
/// error) is shown beside the buttons until the next export.
pub fn export_buttons(
    ui: &mut Ui,
    id_salt: &str,
    dir: &Path,
    stem: &str,
    formats: &[ExportFormat],
    make: impl FnOnce(ExportFormat) -> Result<Vec<u8>, String>,
) {
    let id = ui.scope_id().with(("export", id_salt));
    let mut chosen = None;
    ui.horizontal(|ui| {
        ui.label("Export:");
        for &format in formats {
            if ui
                .button(format.label())
                .on_hover_text(format!("Save as {} in {}", format.label(), dir.display()))
                .clicked()
            {
                chosen = Some(format);
            }
        }
        if let Some(format) = chosen {
            let result = make(format).and_then(|bytes| write_export(dir, stem, format, &bytes));
            ui.data_mut(|d| d.insert_temp(id, result.map_err(|e| format!("export failed: {e}"))));
        }
        let last: Option<Result<PathBuf, String>> = ui.data(|d| d.get_temp(id));
        match last {
            Some(Ok(path)) => {
                ui.weak(format!("saved {}", path.display()));
            }
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            None => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field(" cat"), "\" cat\"");
        let m = Matrix::new(2, 2, vec![1.0, 2.0, 3.0, 4.5]);
        let labels = vec!["a".to_string(), "b".to_string()];
        assert_eq!(matrix_csv(&m, &labels, &labels), ",a,b\na,1,2\nb,3,4.5\n");
    }

    #[test]
    fn png_has_signature() {
        let m = Matrix::new(2, 3, vec![0.0, 0.5, 1.0, 0.2, 0.3, 0.4]);
        let mask = Matrix::new(2, 3, vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
        let bytes = heatmap_png(&m, Some(&mask), ColorScale::PROBABILITY).expect("png");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let bars = bars_png(&[(Color32::RED, vec![1.0, 2.0])]).expect("png");
        assert_eq!(&bars[..4], b"\x89PNG");
    }
}
