//! Drawing one stage: its recorded tensor as a heatmap, vectors and probabilities.

use super::*;

pub(super) fn show_stage(ui: &mut Ui, cx: &StageContext, stage: StageRef) -> StageOutcome {
    let data = cx.data;
    let key = stage.key();
    let Some(array) = data.stage(key) else {
        ui.label(format!("The trace has no {:?}.", key.to_string()));
        return StageOutcome::default();
    };
    let desc = describe(stage, cx);
    ui.label(RichText::new(&desc.title).heading());
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.label(RichText::new(&desc.formula).monospace().size(15.0));
    });
    ui.label(&desc.explanation);
    let shape = trace_shape(array);
    let shape_label = format!("shape {shape:?}");
    ui.horizontal(|ui| {
        ui.strong(&shape_label);
        ui.weak(format!("= {}", desc.axes));
        ui.weak(format!("(trace entry {:?})", key.to_string()));
    });
    let mut outcome = StageOutcome {
        shown: Some(ShownStage {
            stage,
            shape,
            formula: desc.formula.clone(),
            shape_label,
        }),
        clicked_token: None,
    };
    ui.add_space(4.0);
    // An encoder's rows are the source tokens; a decoder's, what it reads.
    let (labels, tokens) = if stage.encoder {
        (data.source_labels(), &data.source_tokens)
    } else {
        (data.token_labels(), &data.tokens)
    };
    // A site of this stage's stack (an encoder–decoder's encoder or the decoder).
    let at = |site: TraceSite| {
        let key = TraceKey::new(site);
        if stage.encoder { key.in_encoder() } else { key }
    };
    let layer = stage.layer.unwrap_or(0);
    let head = cx.head;
    let stem = |name: &str| {
        format!(
            "step-{}-{}{}",
            data.slot.short().to_lowercase(),
            stage
                .layer
                .map(|l| format!("layer{l}-"))
                .unwrap_or_default(),
            name
        )
    };
    let head_matrix = |key: TraceKey| -> Option<Matrix> { data.stage(key)?.matrix(&[head]) };
    let plain_matrix = |key: TraceKey| data.stage(key)?.first_matrix();
    let mut clicked = None;
    let mut token_matrix = |ui: &mut Ui, key: TraceKey, caption: &str, name: &str| {
        if let Some(m) = plain_matrix(key) {
            ui.label(RichText::new(caption).strong());
            let r = matrix_view(
                ui,
                cx.export_dir,
                &stem(name),
                &m,
                &labels,
                &[],
                None,
                ColorScale::fit(m.range()),
                &format!("{} {}", data.slot.short(), caption),
                cx.token,
                cx.show_values,
            );
            if let Some(t) = r.clicked_row.or(r.clicked_cell.map(|(r, _)| r)) {
                clicked = Some(t);
            }
            token_vector(ui, &m, &labels, cx.token, caption);
        }
    };
    match stage.kind {
        Stage::Embed => {
            ui.label("The tokens and their ids (click a row of the heatmap to follow a token):");
            token_chips(ui, tokens, cx.token);
            token_matrix(ui, key, "token embeddings X_tok", "token-embeddings");
        }
        Stage::AddPositions => {
            token_matrix(ui, key, "position embeddings E_pos", "position-embeddings");
            if data.is_causal {
                token_matrix(
                    ui,
                    at(TraceSite::EmbeddingSum),
                    "sum X = X_tok + E_pos",
                    "embedding-sum",
                );
            }
        }
        Stage::AddSegments => {
            let types: Vec<String> = data.tokens.iter().map(|t| t.type_id.to_string()).collect();
            ui.label(format!("Segment (type) ids: [{}]", types.join(", ")));
            token_matrix(ui, key, "segment embeddings E_seg", "segment-embeddings");
            token_matrix(ui, at(TraceSite::EmbeddingSum), "sum X", "embedding-sum");
        }
        Stage::EmbeddingNorm
        | Stage::OutputProjection
        | Stage::ResidualAttention
        | Stage::NormMlp
        | Stage::MlpHidden
        | Stage::MlpOutput
        | Stage::ResidualMlp
        | Stage::FinalNorm
        | Stage::CrossWeightedSum
        | Stage::CrossOutputProjection
        | Stage::ResidualCross => {
            token_matrix(
                ui,
                key,
                family_stage_label(data.family, stage.kind),
                "values",
            );
        }
        Stage::CrossQkv | Stage::CrossScores | Stage::CrossSoftmax => {
            // Rows are the decoder's tokens (queries); K and V have a row per source token, and
            // the scores' columns are the source tokens.
            let source = data.source_labels();
            let keys: Vec<(String, TraceKey)> = if stage.kind == Stage::CrossQkv {
                [LayerField::Q, LayerField::K, LayerField::V]
                    .into_iter()
                    .map(|field| {
                        let key = TraceKey::new(TraceSite::Cross(layer, field));
                        (field.name().to_uppercase(), key)
                    })
                    .collect()
            } else {
                vec![(family_stage_label(data.family, stage.kind).to_string(), key)]
            };
            for (name, key) in keys {
                let Some(m) = head_matrix(key) else {
                    continue;
                };
                ui.label(RichText::new(format!("{name} (head {head})")).strong());
                let row_labels: &[String] = if name == "K" || name == "V" {
                    &source
                } else if m.rows == labels.len() {
                    &labels
                } else {
                    &[]
                };
                let col_labels: &[String] =
                    if stage.kind != Stage::CrossQkv && m.cols == source.len() {
                        &source
                    } else {
                        &[]
                    };
                let scale = if stage.kind == Stage::CrossSoftmax {
                    ColorScale::PROBABILITY
                } else {
                    ColorScale::fit(m.range())
                };
                matrix_view(
                    ui,
                    cx.export_dir,
                    &stem(&format!(
                        "{}-head{head}",
                        name.to_lowercase().replace(' ', "-")
                    )),
                    &m,
                    row_labels,
                    col_labels,
                    None,
                    scale,
                    &format!("{} {name} layer {layer} head {head}", data.slot.short()),
                    cx.token,
                    cx.show_values,
                );
            }
        }
        Stage::NormAttention => {
            token_matrix(
                ui,
                at(TraceSite::Layer(layer, LayerField::Input)),
                "input X (residual stream)",
                "input",
            );
            token_matrix(ui, key, "A = LN₁(X)", "ln1");
        }
        Stage::WeightedSum => {
            token_matrix(ui, key, "context (all heads)", "context");
            if let (Some(m), Some(d)) = (
                plain_matrix(key),
                data.stage(trace_key(Stage::Qkv, layer))
                    .and_then(|a| a.shape.last().copied()),
            ) {
                let cols: Vec<f32> = (0..m.rows)
                    .flat_map(|r| {
                        (head * d..(head + 1) * d)
                            .map(move |c| (r, c))
                            .collect::<Vec<_>>()
                    })
                    .map(|(r, c)| m.get(r, c).unwrap_or(0.0))
                    .collect();
                let part = Matrix::new(m.rows, d, cols);
                ui.label(RichText::new(format!("head {head}'s part: probs_h · V_h")).strong());
                matrix_view(
                    ui,
                    cx.export_dir,
                    &stem(&format!("context-head{head}")),
                    &part,
                    &labels,
                    &[],
                    None,
                    ColorScale::fit(part.range()),
                    &format!("{} context head {head}", data.slot.short()),
                    cx.token,
                    cx.show_values,
                );
            }
        }
        Stage::Qkv => {
            let names = ["Q", "K", "V"];
            let keys = [LayerField::Q, LayerField::K, LayerField::V]
                .map(|f| at(TraceSite::Layer(layer, f)));
            ui.columns(3, |columns| {
                for ((ui, name), key) in columns.iter_mut().zip(names).zip(keys) {
                    if let Some(m) = head_matrix(key) {
                        ui.label(RichText::new(format!("{name} (head {head})")).strong());
                        let r = matrix_view(
                            ui,
                            cx.export_dir,
                            &stem(&format!("{}-head{head}", name.to_lowercase())),
                            &m,
                            &labels,
                            &[],
                            None,
                            ColorScale::fit(m.range()),
                            &format!("{} {name} layer {layer} head {head}", data.slot.short()),
                            cx.token,
                            cx.show_values,
                        );
                        if let Some(t) = r.clicked_row.or(r.clicked_cell.map(|(r, _)| r)) {
                            clicked = Some(t);
                        }
                    }
                }
            });
            if let Some(t) = cx.token {
                for (name, key) in names.iter().zip(keys) {
                    if let Some(m) = head_matrix(key) {
                        numbers_line(ui, &format!("{name}[{t}]"), m.row(t));
                    }
                }
            }
        }
        Stage::Scores | Stage::Scale | Stage::Mask | Stage::Softmax => {
            // An encoder–decoder's encoder sees every source token: no mask.
            let mask = if stage.encoder {
                let n = data.source_tokens.len();
                Matrix::filled(n, n, 1.0)
            } else {
                attention_mask(data, layer)
            };
            let Some(m) = head_matrix(key) else {
                ui.label("No values for this head.");
                return outcome;
            };
            if stage.kind == Stage::Mask {
                ui.label(RichText::new("mask (1 = may look, 0 = blocked)").strong());
                matrix_view(
                    ui,
                    cx.export_dir,
                    &stem("mask"),
                    &mask,
                    &labels,
                    &labels,
                    None,
                    ColorScale::PROBABILITY,
                    &format!("{} mask layer {layer}", data.slot.short()),
                    cx.token,
                    cx.show_values,
                );
                let blocked = mask.data.iter().filter(|&&v| v == 0.0).count();
                ui.label(format!("{blocked} of {} cells blocked.", mask.data.len()));
                if let Some(min) = m
                    .data
                    .iter()
                    .zip(&mask.data)
                    .filter(|(_, a)| **a == 0.0)
                    .map(|(v, _)| *v)
                    .reduce(f32::min)
                {
                    ui.label(format!(
                        "Blocked cells of the masked scores hold {} (drawn hatched).",
                        format_value(min)
                    ));
                }
            }
            let caption = match stage.kind {
                Stage::Scores => format!("scores, head {head}"),
                Stage::Scale => format!("scaled scores, head {head}"),
                Stage::Mask => format!("masked scores, head {head}"),
                _ => format!("attention probabilities, head {head}"),
            };
            let scale = if stage.kind == Stage::Softmax {
                ColorScale::PROBABILITY
            } else {
                ColorScale::fit(allowed_range(&m, &mask))
            };
            ui.label(RichText::new(&caption).strong());
            let overlay = matches!(stage.kind, Stage::Mask | Stage::Softmax);
            let r = matrix_view(
                ui,
                cx.export_dir,
                &stem(&format!(
                    "{}-head{head}",
                    stage_label(stage.kind, true).replace(' ', "-")
                )),
                &m,
                &labels,
                &labels,
                overlay.then_some(&mask),
                scale,
                &format!(
                    "{} {} layer {layer} head {head}",
                    data.slot.short(),
                    family_stage_label(data.family, stage.kind)
                ),
                cx.token,
                cx.show_values,
            );
            if let Some(t) = r.clicked_row.or(r.clicked_cell.map(|(r, _)| r)) {
                clicked = Some(t);
            }
            ui.weak("Rows: the token that looks (query). Columns: the token looked at (key).");
            if let Some(t) = cx.token.filter(|&t| t < m.rows) {
                let row = m.row(t);
                numbers_line(ui, &format!("row {t} {:?}", labels[t]), row);
                match stage.kind {
                    Stage::Scores => {
                        if let (Some(q), Some(k)) = (
                            head_matrix(at(TraceSite::Layer(layer, LayerField::Q))),
                            head_matrix(at(TraceSite::Layer(layer, LayerField::K))),
                        ) {
                            let dot: f32 = q.row(t).iter().zip(k.row(0)).map(|(a, b)| a * b).sum();
                            ui.monospace(format!(
                                "check: Q[{t}]·K[0] = Σ q·k = {}  (trace: {})",
                                format_value(dot),
                                format_value(m.get(t, 0).unwrap_or(0.0))
                            ));
                        }
                    }
                    Stage::Scale => {
                        if let Some(scores) =
                            head_matrix(at(TraceSite::Layer(layer, LayerField::Scores)))
                        {
                            let d = data
                                .stage(trace_key(Stage::Qkv, layer))
                                .and_then(|a| a.shape.last().copied())
                                .unwrap_or(1);
                            let raw = scores.get(t, 0).unwrap_or(0.0);
                            ui.monospace(format!(
                                "check: scores[{t}, 0] / √{d} = {} / {:.6} = {}  (trace: {})",
                                format_value(raw),
                                (d as f32).sqrt(),
                                format_value(raw / (d as f32).sqrt()),
                                format_value(m.get(t, 0).unwrap_or(0.0))
                            ));
                        }
                    }
                    Stage::Softmax => {
                        let sum: f32 = row.iter().sum();
                        ui.monospace(format!("Σ row {t} = {}", format_value(sum)));
                    }
                    _ => {}
                }
            } else {
                ui.weak("Click a row to see its numbers.");
            }
        }
        Stage::Logits => {
            let Some(m) = plain_matrix(key) else {
                return outcome;
            };
            let position = cx
                .token
                .unwrap_or_else(|| default_position(data))
                .min(m.rows.saturating_sub(1));
            ui.label("Pick the position (click a token):");
            if let Some(t) = token_chips(ui, &data.tokens, Some(position)) {
                clicked = Some(t);
            }
            ui.label(
                RichText::new(format!(
                    "logits at position {position} {:?}: {} values, one per vocabulary entry",
                    labels.get(position).map(String::as_str).unwrap_or("?"),
                    m.cols
                ))
                .strong(),
            );
            let row = m.row(position).to_vec();
            let name = |i: usize| vocab_name(cx.vocab, i);
            vector_strip(
                ui,
                &row,
                &format!("{} logits at position {position}", data.slot.short()),
                &name,
            );
            let top = crate::generate::top_k(&row, 10);
            let items: Vec<(String, f32)> = top.iter().map(|&(i, v)| (name(i), v)).collect();
            ui.label("The largest logits:");
            value_bars(ui, &items, None, format_value);
            let row_matrix = Matrix::new(1, row.len(), row);
            let vocab_labels: Vec<String> = (0..row_matrix.cols).map(name).collect();
            row_exports(
                ui,
                cx.export_dir,
                &stem("logits"),
                &row_matrix,
                &vocab_labels,
            );
        }
        Stage::Probabilities => probabilities(ui, cx, key),
    }
    outcome.clicked_token = clicked;
    outcome
}

/// Where the logits are most interesting: the last token (GPT), the first `[MASK]` (BERT).
pub(super) fn default_position(data: &InspectionData) -> usize {
    match &data.predictions {
        Predictions::FillMask { masks, .. } if !masks.is_empty() => masks[0].position,
        _ => data.tokens.len().saturating_sub(1),
    }
}

pub(super) fn vocab_name(vocab: Option<&[VocabEntry]>, id: usize) -> String {
    vocab
        .and_then(|v| v.get(id))
        .filter(|e| e.id as usize == id)
        .map(|e| e.shown.clone())
        .or_else(|| {
            vocab.and_then(|v| {
                v.iter()
                    .find(|e| e.id as usize == id)
                    .map(|e| e.shown.clone())
            })
        })
        .unwrap_or_else(|| format!("id {id}"))
}

pub(super) fn probabilities(ui: &mut Ui, cx: &StageContext, key: TraceKey) {
    let data = cx.data;
    match &data.predictions {
        Predictions::NextToken { top } => {
            let last = data.tokens.len().saturating_sub(1);
            ui.label(format!(
                "After the last token {:?} (position {last}), the {} most likely next tokens:",
                data.tokens
                    .get(last)
                    .map(|t| t.shown.as_str())
                    .unwrap_or("?"),
                top.len()
            ));
            let items: Vec<(String, f32)> = top.iter().map(|t| (t.shown.clone(), t.prob)).collect();
            value_bars(ui, &items, Some(1.0), format_value);
            let sum: f32 = top.iter().map(|t| t.prob).sum();
            ui.weak(format!(
                "These {} tokens hold {} of the probability; the rest is spread over the other \
                 tokens of the vocabulary.",
                top.len(),
                format_value(sum)
            ));
            prob_exports(ui, cx.export_dir, data, &items);
        }
        Predictions::FillMask {
            masks,
            is_next_prob,
        } => {
            if masks.is_empty() {
                ui.label(
                    "The text has no [MASK] token, so there is nothing to fill. Put one in the \
                     text (or click a token in the Predict view to mask it).",
                );
                if let Some(m) = data.stage(key).and_then(|a| a.matrix(&[])) {
                    let position = cx.token.unwrap_or(0).min(m.rows.saturating_sub(1));
                    let probs = softmax(m.row(position));
                    let top = crate::generate::top_k(&probs, 10);
                    ui.label(format!(
                        "Meanwhile, softmax(logits) at position {position} {:?} (click a row in \
                         an earlier stage to pick another):",
                        data.tokens
                            .get(position)
                            .map(|t| t.shown.as_str())
                            .unwrap_or("?")
                    ));
                    let items: Vec<(String, f32)> = top
                        .iter()
                        .map(|&(i, p)| (vocab_name(cx.vocab, i), p))
                        .collect();
                    value_bars(ui, &items, Some(1.0), format_value);
                }
            }
            for mask in masks {
                ui.label(RichText::new(format!("[MASK] at position {}", mask.position)).strong());
                let items: Vec<(String, f32)> =
                    mask.top.iter().map(|t| (t.shown.clone(), t.prob)).collect();
                ui.push_id(("mask", mask.position), |ui| {
                    value_bars(ui, &items, Some(1.0), format_value);
                    prob_exports(ui, cx.export_dir, data, &items);
                });
            }
            if let Some(p) = is_next_prob {
                ui.label(format!(
                    "Next-sentence prediction: P(segment B follows segment A) = {}",
                    format_value(*p)
                ));
            }
        }
        Predictions::Classification { labels } => {
            let items: Vec<(String, f32)> = labels.clone();
            value_bars(ui, &items, Some(1.0), format_value);
        }
        Predictions::Span {
            start, end, text, ..
        } => {
            ui.label(format!("Answer span: tokens {start}..={end}: {text:?}"));
        }
        Predictions::None => {
            ui.label("This model has no head to predict with.");
        }
    }
}

pub(super) fn softmax(values: &[f32]) -> Vec<f32> {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = values.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter()
        .map(|e| if sum > 0.0 { e / sum } else { 0.0 })
        .collect()
}

pub(super) fn prob_exports(
    ui: &mut Ui,
    dir: &Path,
    data: &InspectionData,
    items: &[(String, f32)],
) {
    let labels: Vec<String> = items.iter().map(|(l, _)| l.clone()).collect();
    let m = Matrix::new(1, items.len(), items.iter().map(|(_, p)| *p).collect());
    row_exports(
        ui,
        dir,
        &format!("step-{}-probabilities", data.slot.short().to_lowercase()),
        &m,
        &labels,
    );
}

pub(super) fn row_exports(ui: &mut Ui, dir: &Path, stem: &str, m: &Matrix, labels: &[String]) {
    let owned = m.clone();
    export_buttons(
        ui,
        stem,
        dir,
        stem,
        &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
        |format| match format {
            ExportFormat::Png => {
                let values: Vec<f64> = owned.data.iter().map(|&v| v as f64).collect();
                crate::app::widgets::export::bars_png(&[(Color32::from_rgb(59, 81, 139), values)])
            }
            ExportFormat::Csv => {
                Ok(matrix_csv(&owned, &["value".to_string()], labels).into_bytes())
            }
            ExportFormat::Json => matrix_json(
                &owned,
                &["value".to_string()],
                labels,
                serde_json::json!({}),
            ),
        },
    );
}

/// The layer's 0/1 mask (all ones when none was recorded).
pub(super) fn attention_mask(data: &InspectionData, layer: usize) -> Matrix {
    let s = data.tokens.len();
    data.masks
        .get(layer)
        .cloned()
        .filter(|m| m.rows == s && m.cols == s)
        .unwrap_or_else(|| Matrix::filled(s, s, 1.0))
}

/// (min, max) over the cells the mask allows.
pub(super) fn allowed_range(m: &Matrix, mask: &Matrix) -> (f32, f32) {
    let values: Vec<f32> = m
        .data
        .iter()
        .enumerate()
        .filter(|(i, _)| mask.data.get(*i).is_none_or(|&a| a != 0.0))
        .map(|(_, v)| *v)
        .collect();
    Matrix::new(1, values.len(), values).range()
}

/// The selected token's row as a bar strip with its first numbers.
pub(super) fn token_vector(
    ui: &mut Ui,
    m: &Matrix,
    labels: &[String],
    token: Option<usize>,
    caption: &str,
) {
    let Some(t) = token.filter(|&t| t < m.rows) else {
        return;
    };
    let name = labels.get(t).map(String::as_str).unwrap_or("?");
    ui.label(format!(
        "Token {t} {name:?}: its vector ({} values)",
        m.cols
    ));
    let label = format!("{caption} of token {t}");
    vector_strip(ui, m.row(t), &label, &|i| format!("dimension {i}"));
    numbers_line(ui, &format!("{caption}[{t}]"), m.row(t));
}

/// `name = [v0, v1, …]`, the first 12 values with 4 decimals.
pub(super) fn numbers_line(ui: &mut Ui, name: &str, values: &[f32]) {
    let shown: Vec<String> = values.iter().take(12).map(|v| format!("{v:.4}")).collect();
    let more = if values.len() > 12 {
        format!(", … ({} more)", values.len() - 12)
    } else {
        String::new()
    };
    ui.monospace(format!("{name} = [{}{more}]", shown.join(", ")));
}

/// A heatmap (in a horizontal scroll area when it is wide) with its export buttons.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matrix_view(
    ui: &mut Ui,
    export_dir: &Path,
    stem: &str,
    matrix: &Matrix,
    row_labels: &[String],
    col_labels: &[String],
    mask: Option<&Matrix>,
    scale: ColorScale,
    label: &str,
    selected_row: Option<usize>,
    show_values: bool,
) -> HeatmapResponse {
    let width = ui.available_width().max(200.0);
    let height = (matrix.rows as f32 * 36.0 + 90.0).min(460.0);
    let default_cols: Vec<String>;
    let cols = if col_labels.is_empty() {
        default_cols = (0..matrix.cols).map(|c| c.to_string()).collect();
        &default_cols
    } else {
        col_labels
    };
    let response = egui::ScrollArea::horizontal()
        .id_salt(("matrix_view", stem))
        .show(ui, |ui| {
            Heatmap::new(matrix, label)
                .row_labels(row_labels)
                .col_labels(cols)
                .mask(mask)
                .scale(scale)
                .max_size(Vec2::new(width, height))
                .max_cell(40.0)
                .show_values(show_values)
                .selection(Selection {
                    row: selected_row,
                    col: None,
                })
                .show(ui)
        })
        .inner;
    if let Some(hover) = &response.hovered {
        ui.monospace(hover.text());
    }
    let owned = matrix.clone();
    let mask_owned = mask.cloned();
    let rows = row_labels.to_vec();
    let cols = cols.to_vec();
    ui.push_id(("export", stem), |ui| {
        export_buttons(
            ui,
            stem,
            export_dir,
            stem,
            &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
            |format| match format {
                ExportFormat::Png => heatmap_png(&owned, mask_owned.as_ref(), scale),
                ExportFormat::Csv => Ok(matrix_csv(&owned, &rows, &cols).into_bytes()),
                ExportFormat::Json => matrix_json(&owned, &rows, &cols, serde_json::json!({})),
            },
        );
    });
    response
}

/// A vector as a strip of vertical bars (positive up, negative down, zero line in the middle).
/// Hovering shows the index (named by `name`) and the exact value. Long vectors are drawn one
/// pixel column per group, with the group's largest magnitude.
pub fn vector_strip(
    ui: &mut Ui,
    values: &[f32],
    label: &str,
    name: &dyn Fn(usize) -> String,
) -> Option<usize> {
    let width = ui.available_width().clamp(120.0, 1200.0);
    let height = 90.0;
    let (rect, response) = ui.allocate_exact_size(Vec2::new(width, height), Sense::hover());
    let label_owned = label.to_string();
    response.widget_info(|| WidgetInfo::labeled(Role::Image, true, &label_owned));
    if values.is_empty() {
        return None;
    }
    let painter = ui.painter_at(rect);
    let visuals = ui.visuals();
    painter.rect_filled(rect, 2.0, visuals.extreme_bg_color);
    let max_abs = values
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let mid = rect.center().y;
    let half = height / 2.0 - 10.0;
    let n = values.len();
    let bar_w = (width / n as f32).max(1.0);
    let columns = (width / bar_w).floor().max(1.0) as usize;
    let per_column = n.div_ceil(columns);
    let scale = ColorScale::Diverging { max_abs };
    for c in 0..columns {
        let start = c * per_column;
        if start >= n {
            break;
        }
        let end = (start + per_column).min(n);
        let v = values[start..end]
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0f32, |a, b| if b.abs() > a.abs() { b } else { a });
        let h = (v / max_abs).clamp(-1.0, 1.0) * half;
        let x0 = rect.min.x + c as f32 * bar_w;
        let bar = Rect::from_min_max(
            egui::pos2(x0, mid.min(mid - h)),
            egui::pos2(x0 + (bar_w - 1.0).max(1.0), mid.max(mid - h)),
        );
        painter.rect_filled(bar, 0.0, scale.color(v));
    }
    painter.line_segment(
        [egui::pos2(rect.min.x, mid), egui::pos2(rect.max.x, mid)],
        Stroke::new(1.0, visuals.weak_text_color()),
    );
    let small = FontId::proportional(10.0);
    painter.text(
        rect.left_top() + Vec2::new(2.0, 1.0),
        Align2::LEFT_TOP,
        format!("+{}", format_value(max_abs)),
        small.clone(),
        visuals.weak_text_color(),
    );
    painter.text(
        rect.left_bottom() + Vec2::new(2.0, -1.0),
        Align2::LEFT_BOTTOM,
        format!("−{}", format_value(max_abs)),
        small,
        visuals.weak_text_color(),
    );
    let hovered = response.hover_pos().and_then(|pos| {
        let c = ((pos.x - rect.min.x) / bar_w).floor() as usize;
        let i = c * per_column;
        (i < n).then_some(i)
    });
    if let Some(i) = hovered {
        let x = rect.min.x + (i / per_column) as f32 * bar_w + bar_w / 2.0;
        painter.line_segment(
            [egui::pos2(x, rect.min.y), egui::pos2(x, rect.max.y)],
            Stroke::new(1.0, visuals.text_color()),
        );
        let text = format!("{} [{i}]: {}", name(i), format_value(values[i]));
        response.on_hover_text_at_pointer(text);
    }
    hovered
}
