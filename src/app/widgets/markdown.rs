//! A small Markdown renderer for lesson text: headings, paragraphs, **bold**, *italic*, `code`,
//! links, bullet and numbered lists (nested by indentation), tables, fenced code and quotes.
//!
//! Two steps, like any Markdown reader: [`parse_blocks`] splits the text into [`MdBlock`]s and
//! [`parse_inline`] splits a block's text into styled [`Span`]s; [`markdown`] draws them with
//! the ui's current text styles, so a panel that enlarges its body font enlarges the text.
//! Anything the parser does not understand is shown as plain text, never dropped.

use eframe::egui;
use egui::text::{LayoutJob, TextFormat};
use egui::{Color32, FontId, Stroke, TextStyle, Ui};

use crate::lessons::{fence_open, is_fence_close};

/// A block of Markdown.
#[derive(Debug, Clone, PartialEq)]
pub enum MdBlock {
    /// `#` to `######`: level 1 to 6.
    Heading {
        level: usize,
        text: String,
    },
    /// Lines joined by spaces; a hard break (two trailing spaces or `\`) keeps a newline.
    Paragraph(String),
    List(Vec<ListItem>),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A fenced block (``` or ~~~) with its info string.
    Code {
        info: String,
        text: String,
    },
    Quote(String),
    Rule,
}

/// One item of a (possibly nested) list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListItem {
    /// 0 for the outermost list, 1 for a list inside an item, ...
    pub depth: usize,
    /// `None` for bullets, the number for numbered items.
    pub number: Option<u64>,
    pub text: String,
}

/// A run of text with one style.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Span {
    pub text: String,
    pub bold: bool,
    pub italic: bool,
    pub code: bool,
    /// The target of a `[text](url)` link.
    pub link: Option<String>,
}

fn heading(line: &str) -> Option<(usize, String)> {
    let trimmed = line.trim_start();
    let level = trimmed.chars().take_while(|&c| c == '#').count();
    let rest = &trimmed[level..];
    ((1..=6).contains(&level) && (rest.is_empty() || rest.starts_with(' ')))
        .then(|| (level, rest.trim().trim_end_matches('#').trim().to_string()))
}

/// `- item`, `* item`, `+ item`, `1. item`, `1) item`: (indent, number, text).
fn list_marker(line: &str) -> Option<(usize, Option<u64>, String)> {
    let indent = line.len() - line.trim_start().len();
    let rest = line.trim_start();
    if let Some(text) = ["- ", "* ", "+ "].iter().find_map(|m| rest.strip_prefix(m)) {
        return Some((indent, None, text.trim().to_string()));
    }
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    let after = &rest[digits.len()..];
    let text = after
        .strip_prefix(". ")
        .or_else(|| after.strip_prefix(") "))?;
    Some((indent, digits.parse().ok(), text.trim().to_string()))
}

fn is_rule(line: &str) -> bool {
    let t: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    t.len() >= 3 && (t.chars().all(|c| c == '*') || t.chars().all(|c| c == '_'))
}

fn is_table_separator(line: &str) -> bool {
    let t = line.trim();
    t.contains('-')
        && t.contains('|')
        && t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ' | '\t'))
}

/// The cells of a table row: split at `|` outside code spans; `\|` is a literal bar.
pub fn table_cells(line: &str) -> Vec<String> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = t
        .strip_suffix('|')
        .filter(|s| !s.ends_with('\\'))
        .unwrap_or(t);
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut in_code = false;
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '`' => {
                in_code = !in_code;
                cell.push(c);
            }
            '|' if !in_code => cells.push(std::mem::take(&mut cell).trim().to_string()),
            _ => cell.push(c),
        }
    }
    cells.push(cell.trim().to_string());
    cells
}

fn starts_block(line: &str, next: Option<&str>) -> bool {
    fence_open(line).is_some()
        || heading(line).is_some()
        || list_marker(line).is_some()
        || line.trim_start().starts_with('>')
        || is_rule(line)
        || (line.trim_start().starts_with('|') && next.is_some_and(is_table_separator))
}

/// Splits Markdown into blocks.
pub fn parse_blocks(text: &str) -> Vec<MdBlock> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let next = lines.get(i + 1).copied();
        if line.trim().is_empty() {
            i += 1;
            continue;
        }
        if let Some((fence, count, info)) = fence_open(line) {
            let mut code = Vec::new();
            i += 1;
            while i < lines.len() {
                if is_fence_close(lines[i], fence, count) {
                    i += 1;
                    break;
                }
                code.push(lines[i]);
                i += 1;
            }
            blocks.push(MdBlock::Code {
                info,
                text: code.join("\n"),
            });
            continue;
        }
        if let Some((level, text)) = heading(line) {
            blocks.push(MdBlock::Heading { level, text });
            i += 1;
            continue;
        }
        if is_rule(line) {
            blocks.push(MdBlock::Rule);
            i += 1;
            continue;
        }
        if line.trim_start().starts_with('|') && next.is_some_and(is_table_separator) {
            let header = table_cells(line);
            let mut rows = Vec::new();
            i += 2;
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                let mut row = table_cells(lines[i]);
                row.resize(header.len(), String::new());
                rows.push(row);
                i += 1;
            }
            blocks.push(MdBlock::Table { header, rows });
            continue;
        }
        if line.trim_start().starts_with('>') {
            let mut quote = Vec::new();
            while i < lines.len() && lines[i].trim_start().starts_with('>') {
                let t = lines[i].trim_start().trim_start_matches('>');
                quote.push(t.strip_prefix(' ').unwrap_or(t));
                i += 1;
            }
            blocks.push(MdBlock::Quote(quote.join("\n")));
            continue;
        }
        if list_marker(line).is_some() {
            let mut items: Vec<ListItem> = Vec::new();
            // Indents of the open lists, outermost first: an item's depth is where its indent fits.
            let mut indents: Vec<usize> = Vec::new();
            while i < lines.len() {
                let line = lines[i];
                if let Some((indent, number, text)) = list_marker(line) {
                    while indents.last().is_some_and(|&open| indent < open) {
                        indents.pop();
                    }
                    if indents.last() != Some(&indent) {
                        indents.push(indent);
                    }
                    items.push(ListItem {
                        depth: indents.len() - 1,
                        number,
                        text,
                    });
                    i += 1;
                } else if line.trim().is_empty() {
                    // A blank line inside a list: it goes on if an item or indented text follows.
                    let resumes = lines
                        .get(i + 1)
                        .is_some_and(|n| list_marker(n).is_some() || n.starts_with([' ', '\t']));
                    if !resumes {
                        break;
                    }
                    i += 1;
                } else if line.starts_with([' ', '\t'])
                    || !starts_block(line, lines.get(i + 1).copied())
                {
                    // A continuation line of the last item (indented, or lazily not).
                    if let Some(item) = items.last_mut() {
                        item.text.push(' ');
                        item.text.push_str(line.trim());
                    }
                    i += 1;
                } else {
                    break;
                }
            }
            blocks.push(MdBlock::List(items));
            continue;
        }
        let mut paragraph = String::new();
        while i < lines.len() {
            let line = lines[i];
            if line.trim().is_empty()
                || (!paragraph.is_empty() && starts_block(line, lines.get(i + 1).copied()))
            {
                break;
            }
            if !paragraph.is_empty() && !paragraph.ends_with('\n') {
                paragraph.push(' ');
            }
            let hard_break = line.ends_with("  ") || line.ends_with('\\');
            paragraph.push_str(line.trim().trim_end_matches('\\'));
            if hard_break {
                paragraph.push('\n');
            }
            i += 1;
        }
        blocks.push(MdBlock::Paragraph(paragraph.trim_end().to_string()));
    }
    blocks
}

/// Whether `marker` occurs again in `rest` (so an opening marker has a partner).
fn closes_later(rest: &[char], marker: &[char]) -> bool {
    rest.windows(marker.len()).any(|w| w == marker)
}

/// Splits a line of Markdown into styled spans. Unpaired markers stay as text.
pub fn parse_inline(text: &str) -> Vec<Span> {
    let chars: Vec<char> = text.chars().collect();
    let mut spans: Vec<Span> = Vec::new();
    let mut current = Span::default();
    let mut bold = false;
    let mut italic = false;
    let flush = |current: &mut Span, spans: &mut Vec<Span>, bold: bool, italic: bool| {
        if !current.text.is_empty() {
            spans.push(std::mem::take(current));
        }
        current.bold = bold;
        current.italic = italic;
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev = i.checked_sub(1).map(|p| chars[p]);
        match c {
            '\\' if next.is_some_and(|n| n.is_ascii_punctuation()) => {
                current.text.push(chars[i + 1]);
                i += 2;
            }
            '`' => {
                let ticks = chars[i..].iter().take_while(|&&t| t == '`').count();
                let marker = vec!['`'; ticks];
                let start = i + ticks;
                let end = (start..chars.len().saturating_sub(ticks - 1))
                    .find(|&j| chars[j..j + ticks] == marker[..]);
                match end {
                    Some(end) => {
                        flush(&mut current, &mut spans, bold, italic);
                        let code: String = chars[start..end].iter().collect();
                        spans.push(Span {
                            text: code.trim().to_string(),
                            code: true,
                            ..Span::default()
                        });
                        i = end + ticks;
                    }
                    None => {
                        current.text.extend(&chars[i..start]);
                        i = start;
                    }
                }
            }
            '*' if next == Some('*') && (bold || closes_later(&chars[i + 2..], &['*', '*'])) => {
                bold = !bold;
                flush(&mut current, &mut spans, bold, italic);
                i += 2;
            }
            '*' | '_'
                if if italic {
                    // Closes after text; `_` only at a word's end, so snake_case stays as it is.
                    prev.is_some_and(|p| !p.is_whitespace())
                        && (c == '*' || !next.is_some_and(char::is_alphanumeric))
                } else {
                    next.is_some_and(|n| !n.is_whitespace() && n != c)
                        && (c == '*' || !prev.is_some_and(char::is_alphanumeric))
                        && closes_later(&chars[i + 1..], &[c])
                } =>
            {
                italic = !italic;
                flush(&mut current, &mut spans, bold, italic);
                i += 1;
            }
            '[' => {
                // [text](url)
                let close = chars[i..].iter().position(|&t| t == ']').map(|p| p + i);
                let link = close.and_then(|close| {
                    (chars.get(close + 1) == Some(&'(')).then_some(())?;
                    let end = chars[close..].iter().position(|&t| t == ')')? + close;
                    Some((close, end))
                });
                match link {
                    Some((close, end)) => {
                        flush(&mut current, &mut spans, bold, italic);
                        spans.push(Span {
                            text: chars[i + 1..close].iter().collect(),
                            bold,
                            italic,
                            code: false,
                            link: Some(chars[close + 2..end].iter().collect()),
                        });
                        i = end + 1;
                    }
                    None => {
                        current.text.push(c);
                        i += 1;
                    }
                }
            }
            _ => {
                current.text.push(c);
                i += 1;
            }
        }
    }
    flush(&mut current, &mut spans, bold, italic);
    spans
}

/// The fonts and colours inline text is drawn with.
#[derive(Debug, Clone)]
pub struct InlineStyle {
    pub font: FontId,
    pub mono: FontId,
    pub color: Color32,
    pub strong: Color32,
    pub code_background: Color32,
    pub link: Color32,
}

impl InlineStyle {
    /// The ui's body text style, scaled by `scale` (headings).
    pub fn of(ui: &Ui, scale: f32) -> Self {
        let body = TextStyle::Body.resolve(ui.style());
        let mono = TextStyle::Monospace.resolve(ui.style());
        let visuals = ui.visuals();
        Self {
            font: FontId::new(body.size * scale, body.family),
            // Monospace looks bigger than proportional text of the same size.
            mono: FontId::new(body.size * scale * 0.92, mono.family),
            color: visuals.text_color(),
            strong: visuals.strong_text_color(),
            code_background: visuals.code_bg_color,
            link: visuals.hyperlink_color,
        }
    }
}

/// The spans of `text` as one wrapped layout job.
pub fn inline_job(text: &str, style: &InlineStyle, strong: bool, wrap_width: f32) -> LayoutJob {
    let mut job = LayoutJob::default();
    job.wrap.max_width = wrap_width;
    for span in parse_inline(text) {
        let mut format = TextFormat {
            font_id: if span.code {
                style.mono.clone()
            } else {
                style.font.clone()
            },
            color: if span.bold || strong {
                style.strong
            } else {
                style.color
            },
            italics: span.italic,
            ..TextFormat::default()
        };
        if span.code {
            format.background = style.code_background;
        }
        if span.link.is_some() {
            format.color = style.link;
            format.underline = Stroke::new(1.0, style.link);
        }
        job.append(&span.text, 0.0, format);
    }
    job
}

fn inline(ui: &mut Ui, text: &str, scale: f32, strong: bool) -> egui::Response {
    let style = InlineStyle::of(ui, scale);
    let job = inline_job(text, &style, strong, ui.available_width());
    ui.add(egui::Label::new(job).wrap())
}

/// Draws Markdown text. `id_salt` keeps the ids of tables apart when one ui shows several texts.
pub fn markdown(ui: &mut Ui, id_salt: impl egui::AsIdSalt, text: &str) {
    ui.push_id(id_salt, |ui| {
        for (index, block) in parse_blocks(text).iter().enumerate() {
            ui.push_id(index, |ui| block_ui(ui, block));
        }
    });
}

fn block_ui(ui: &mut Ui, block: &MdBlock) {
    let gap = (ui.spacing().item_spacing.y * 1.5).round();
    match block {
        MdBlock::Heading { level, text } => {
            ui.add_space(gap);
            let scale = match level {
                1 => 1.6,
                2 => 1.4,
                3 => 1.2,
                _ => 1.05,
            };
            inline(ui, text, scale, true);
        }
        MdBlock::Paragraph(text) => {
            inline(ui, text, 1.0, false);
            ui.add_space(gap);
        }
        MdBlock::List(items) => {
            let indent = ui.spacing().indent;
            for item in items {
                ui.horizontal_top(|ui| {
                    ui.add_space(indent * item.depth as f32);
                    let marker = match item.number {
                        Some(n) => format!("{n}."),
                        None => if item.depth == 0 { "•" } else { "◦" }.to_string(),
                    };
                    let body = TextStyle::Body.resolve(ui.style()).size;
                    ui.add_sized(
                        [(body * 1.4).round(), (body * 1.2).round()],
                        egui::Label::new(egui::RichText::new(marker)),
                    );
                    ui.vertical(|ui| inline(ui, &item.text, 1.0, false));
                });
            }
            ui.add_space(gap);
        }
        MdBlock::Table { header, rows } => {
            egui::ScrollArea::horizontal()
                .auto_shrink([false, true])
                .show(ui, |ui| {
                    egui::Grid::new("md_table")
                        .striped(true)
                        .spacing([12.0, 4.0])
                        .show(ui, |ui| {
                            let style = InlineStyle::of(ui, 1.0);
                            // Wide cells wrap at a readable width instead of stretching the grid.
                            let cell_width = (ui.available_width() / header.len().max(1) as f32)
                                .clamp(160.0, 420.0);
                            for cell in header {
                                ui.label(inline_job(cell, &style, true, cell_width));
                            }
                            ui.end_row();
                            for row in rows {
                                for cell in row {
                                    // The job's own wrap width: a grid cell has no width yet.
                                    ui.label(inline_job(cell, &style, false, cell_width));
                                }
                                ui.end_row();
                            }
                        });
                });
            ui.add_space(gap);
        }
        MdBlock::Code { text, .. } => {
            egui::Frame::new()
                .fill(ui.visuals().code_bg_color)
                .corner_radius(4.0)
                .inner_margin(6.0)
                .show(ui, |ui| {
                    ui.set_width(ui.available_width());
                    egui::ScrollArea::horizontal()
                        .auto_shrink([false, true])
                        .show(ui, |ui| {
                            let mono = TextStyle::Monospace.resolve(ui.style());
                            let body = TextStyle::Body.resolve(ui.style()).size;
                            ui.add(
                                egui::Label::new(
                                    egui::RichText::new(text)
                                        .font(FontId::new(body * 0.92, mono.family)),
                                )
                                .extend(),
                            );
                        });
                });
            ui.add_space(gap);
        }
        MdBlock::Quote(text) => {
            let bar = ui.visuals().widgets.noninteractive.bg_stroke.color;
            egui::Frame::new()
                .inner_margin(egui::Margin {
                    left: 10,
                    right: 4,
                    top: 2,
                    bottom: 2,
                })
                .show(ui, |ui| {
                    let rect = ui.max_rect();
                    ui.painter()
                        .vline(rect.left() - 7.0, rect.y_range(), Stroke::new(3.0, bar));
                    for block in parse_blocks(text) {
                        block_ui(ui, &block);
                    }
                });
        }
        MdBlock::Rule => {
            ui.separator();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(spans: &[Span]) -> String {
        spans.iter().map(|s| s.text.as_str()).collect()
    }

    #[test]
    fn blocks() {
        let text = "### Notice\n\nOne line\ncontinues.\n\n- a\n  more a\n- b\n  1. inner\n\n\
                    | x | `a\\|b` |\n|---|:--:|\n| 1 | 2 |\n\n```python\ncode\n## not a heading\n```\n> quoted";
        let blocks = parse_blocks(text);
        assert_eq!(
            blocks,
            vec![
                MdBlock::Heading {
                    level: 3,
                    text: "Notice".into()
                },
                MdBlock::Paragraph("One line continues.".into()),
                MdBlock::List(vec![
                    ListItem {
                        depth: 0,
                        number: None,
                        text: "a more a".into()
                    },
                    ListItem {
                        depth: 0,
                        number: None,
                        text: "b".into()
                    },
                    ListItem {
                        depth: 1,
                        number: Some(1),
                        text: "inner".into()
                    },
                ]),
                MdBlock::Table {
                    header: vec!["x".into(), "`a|b`".into()],
                    rows: vec![vec!["1".into(), "2".into()]],
                },
                MdBlock::Code {
                    info: "python".into(),
                    text: "code\n## not a heading".into()
                },
                MdBlock::Quote("quoted".into()),
            ]
        );
    }

    #[test]
    fn inline_styles() {
        let spans = parse_inline("a **bold** and *it* with `x*y` and snake_case_name [link](u)");
        assert_eq!(
            plain(&spans),
            "a bold and it with x*y and snake_case_name link"
        );
        assert!(spans.iter().any(|s| s.text == "bold" && s.bold));
        assert!(spans.iter().any(|s| s.text == "it" && s.italic));
        assert!(spans.iter().any(|s| s.text == "x*y" && s.code));
        assert!(
            spans
                .iter()
                .any(|s| s.text == "link" && s.link.as_deref() == Some("u"))
        );
        assert!(spans.iter().all(|s| !s.italic || s.text == "it"));
    }

    #[test]
    fn unpaired_markers_stay_text() {
        assert_eq!(plain(&parse_inline("2 * 3 = 6")), "2 * 3 = 6");
        assert_eq!(plain(&parse_inline("a ** b")), "a ** b");
        assert_eq!(plain(&parse_inline("`open")), "`open");
        assert_eq!(plain(&parse_inline("[not a link")), "[not a link");
        assert_eq!(plain(&parse_inline(r"\*literal\*")), "*literal*");
    }

    #[test]
    fn hard_breaks_and_numbered_lists() {
        let blocks = parse_blocks("a  \nb\n\n3) three\n4) four");
        assert_eq!(blocks[0], MdBlock::Paragraph("a\nb".into()));
        let MdBlock::List(items) = &blocks[1] else {
            panic!("{blocks:?}")
        };
        assert_eq!(items[0].number, Some(3));
        assert_eq!(items[1].text, "four");
    }
}
