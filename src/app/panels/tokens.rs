//! View "Tokens": the text as coloured token chips with ids, how each word was split (BPE merges
//! in order, WordPiece's longest matches), char / BPE / WordPiece tokenizers side by side, and a
//! searchable vocabulary browser.

use eframe::egui;
use std::sync::Arc;

use egui::{Grid, RichText, ScrollArea, Ui};

use super::{Action, Panel};
use crate::app::data::{
    Slot, TokenInfo, TokenizedText, TokenizerComparison, VocabEntry, bytes_hex, bytes_text,
};
use crate::app::state::{Cached, Fetch, Shared};
use crate::app::widgets::export::{ExportFormat, export_buttons, table_csv};
use crate::app::widgets::{fetch_status, token_chips};
use crate::app::worker::{Command, Output};
use crate::lessons::ViewName;
use crate::tokenizer::SplitStep;

/// Vocabulary sizes offered for the trained BPE and WordPiece tokenizers.
pub const VOCAB_SIZES: [usize; 4] = [300, 500, 1000, 2000];

pub struct TokensPanel {
    /// Whose tokenizer the chips and the explanation use.
    pub slot: Slot,
    pub selected: Option<usize>,
    pub compare_vocab_size: usize,
    pub vocab_filter: String,
    tokenized: Cached<(Slot, u64, String, Option<String>), Arc<TokenizedText>>,
    comparison: Cached<(String, usize, u64, u64), Arc<TokenizerComparison>>,
    vocab: Cached<(Slot, u64), Arc<Vec<VocabEntry>>>,
    filtered: Vec<usize>,
    filter_key: Option<(String, usize, usize)>,
}

impl Default for TokensPanel {
    fn default() -> Self {
        Self {
            slot: Slot::Gpt,
            selected: None,
            compare_vocab_size: 500,
            vocab_filter: String::new(),
            tokenized: Cached::default(),
            comparison: Cached::default(),
            vocab: Cached::default(),
            filtered: Vec::new(),
            filter_key: None,
        }
    }
}

impl TokensPanel {
    /// The current tokenization, once the worker has answered.
    pub fn tokenized(&self) -> Option<&Arc<TokenizedText>> {
        self.tokenized.last()
    }

    pub fn comparison(&self) -> Option<&Arc<TokenizerComparison>> {
        self.comparison.last()
    }
}

impl Panel for TokensPanel {
    fn view(&self) -> ViewName {
        ViewName::Tokens
    }

    fn hint(&self) -> &'static str {
        "How text becomes tokens and ids"
    }

    fn apply(&mut self, action: &Action, _shared: &mut Shared) {
        match action {
            Action::SetText(_) | Action::SetPair(_) => self.selected = None,
            Action::ShowSide(slot) => {
                self.slot = *slot;
                self.selected = None;
            }
            _ => {}
        }
    }

    fn ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        ui.heading("Tokens");
        ui.horizontal(|ui| {
            ui.label("Tokenizer:");
            for slot in shared.slots_to_show() {
                let name = shared
                    .model(slot)
                    .map(|m| format!("{} ({})", slot.short(), m.name))
                    .unwrap_or_else(|| format!("{} (none)", slot.short()));
                if ui.selectable_value(&mut self.slot, slot, name).clicked() {
                    self.selected = None;
                }
            }
        });
        ui.add_space(4.0);
        self.chips_ui(ui, shared);
        ui.add_space(8.0);
        egui::CollapsingHeader::new("Tokenizers side by side")
            .default_open(true)
            .show(ui, |ui| self.comparison_ui(ui, shared));
        egui::CollapsingHeader::new("Vocabulary")
            .default_open(true)
            .show(ui, |ui| self.vocabulary_ui(ui, shared));
    }
}

impl TokensPanel {
    fn chips_ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        let slot = self.slot;
        let fetch = if shared.model(slot).is_some() {
            // The worker packs sentence B only for a model that reads pairs.
            let pair = shared.pair_text();
            let key = (
                slot,
                shared.generation(slot),
                shared.text.clone(),
                pair.clone(),
            );
            let text = shared.text.clone();
            self.tokenized.fetch(
                shared,
                key,
                || Command::Tokenize { slot, text, pair },
                |out| match out {
                    Output::Tokenized(t) => Some(t),
                    _ => None,
                },
            )
        } else {
            Fetch::NoModel
        };
        let Some(tokenized) = fetch_status(ui, slot, &fetch) else {
            return;
        };
        ui.label(
            RichText::new(format!(
                "{} tokens ({}, vocabulary of {})",
                tokenized.tokens.len(),
                tokenized.kind,
                tokenized.vocab_size
            ))
            .strong(),
        );
        if let Some(clicked) = token_chips(ui, &tokenized.tokens, self.selected) {
            self.selected = if self.selected == Some(clicked) {
                None
            } else {
                Some(clicked)
            };
        }
        if tokenized.pair.is_some() {
            segments_ui(ui, &tokenized.tokens);
        }
        if let Some(token) = self.selected.and_then(|i| tokenized.tokens.get(i)) {
            token_details(ui, token);
        } else {
            ui.weak("Click a token to see its bytes; hover for a quick look.");
        }
        ui.add_space(4.0);
        let stem = format!("tokens-{}", slot.short().to_lowercase());
        let tokens = tokenized.tokens.clone();
        export_buttons(
            ui,
            "tokens",
            &shared.export_dir,
            &stem,
            &[ExportFormat::Csv, ExportFormat::Json],
            |format| tokens_export(&tokens, format),
        );
        egui::CollapsingHeader::new("How the text was split")
            .default_open(true)
            .show(ui, |ui| explanation_ui(ui, &tokenized));
    }

    fn comparison_ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        ui.label(
            "Three tokenizers trained here on the built-in corpus, and the loaded models' \
             tokenizers, on the same text.",
        );
        ui.horizontal(|ui| {
            ui.label("Vocabulary size for BPE and WordPiece:");
            for size in VOCAB_SIZES {
                ui.selectable_value(&mut self.compare_vocab_size, size, size.to_string());
            }
        });
        let key = (
            shared.text.clone(),
            self.compare_vocab_size,
            shared.generation(Slot::Gpt),
            shared.generation(Slot::Bert),
        );
        let text = shared.text.clone();
        let vocab_size = self.compare_vocab_size;
        let fetch = self.comparison.fetch(
            shared,
            key,
            || Command::CompareTokenizers { text, vocab_size },
            |out| match out {
                Output::Tokenizers(t) => Some(t),
                _ => None,
            },
        );
        let Some(comparison) = fetch_status(ui, Slot::Gpt, &fetch) else {
            return;
        };
        ui.weak(format!("Trained on the {}.", comparison.corpus));
        // One block per tokenizer, its chips at the full width below its name: a grid cell
        // would squeeze wrapped chips into rows that overlap the next tokenizer's.
        for (i, entry) in comparison.entries.iter().enumerate() {
            ui.separator();
            ui.horizontal(|ui| {
                ui.label(
                    RichText::new(format!("{} tokens", entry.tokens.len()))
                        .strong()
                        .monospace(),
                );
                ui.label(RichText::new(&entry.tokenizer_name).strong());
                if entry.kind.to_string() == entry.tokenizer_name {
                    ui.weak(format!("vocabulary {}", entry.vocab_size));
                } else {
                    ui.weak(format!("{}, vocabulary {}", entry.kind, entry.vocab_size));
                }
            });
            ui.push_id(("cmp", i), |ui| {
                token_chips(ui, &entry.tokens, None);
            });
        }
    }

    fn vocabulary_ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        let slot = self.slot;
        let fetch = if shared.model(slot).is_some() {
            let key = (slot, shared.generation(slot));
            self.vocab.fetch(
                shared,
                key,
                || Command::Vocabulary { slot },
                |out| match out {
                    Output::Vocabulary(v) => Some(v),
                    _ => None,
                },
            )
        } else {
            Fetch::NoModel
        };
        let Some(vocab) = fetch_status(ui, slot, &fetch) else {
            return;
        };
        ui.horizontal(|ui| {
            let label = ui.label("Filter:");
            ui.add(
                egui::TextEdit::singleline(&mut self.vocab_filter)
                    .hint_text("part of a token, or an id")
                    .desired_width(240.0),
            )
            .labelled_by(label.id);
        });
        let key = (
            self.vocab_filter.clone(),
            vocab.len(),
            Arc::as_ptr(&vocab) as usize,
        );
        if self.filter_key.as_ref() != Some(&key) {
            self.filtered = filter_vocab(&vocab, &self.vocab_filter);
            self.filter_key = Some(key);
        }
        ui.label(format!("{} of {} tokens", self.filtered.len(), vocab.len()));
        let row_height = ui.text_style_height(&egui::TextStyle::Monospace) + 4.0;
        let filtered = &self.filtered;
        ScrollArea::vertical()
            .id_salt("vocab_scroll")
            .max_height(280.0)
            .auto_shrink([false, true])
            .show_rows(ui, row_height, filtered.len(), |ui, range| {
                Grid::new("vocab_grid")
                    .num_columns(3)
                    .striped(true)
                    .min_col_width(60.0)
                    .start_row(range.start)
                    .show(ui, |ui| {
                        for &index in &filtered[range] {
                            let entry = &vocab[index];
                            ui.monospace(entry.id.to_string());
                            ui.monospace(&entry.shown)
                                .on_hover_text(format!("as written: {:?}", entry.token));
                            ui.monospace(format!(
                                "{}  {}",
                                bytes_text(&entry.bytes),
                                bytes_hex(&entry.bytes)
                            ));
                            ui.end_row();
                        }
                    });
            });
    }
}

/// Indices of the entries whose token contains `filter` (case-insensitive) or whose id is it.
/// A sentence pair's packing: each token over its segment id (0 = sentence A, 1 = B), the ids
/// BERT's segment embedding reads.
fn segments_ui(ui: &mut Ui, tokens: &[TokenInfo]) {
    ui.add_space(4.0);
    ui.label(
        RichText::new("Sentence pair: [CLS] A [SEP] B [SEP], segment ids below the tokens")
            .strong(),
    );
    ScrollArea::horizontal()
        .id_salt("segment ids")
        .show(ui, |ui| {
            Grid::new("segment ids grid")
                .striped(true)
                .spacing([10.0, 2.0])
                .show(ui, |ui| {
                    ui.label("token");
                    for token in tokens {
                        ui.monospace(&token.shown);
                    }
                    ui.end_row();
                    ui.label("segment id");
                    for token in tokens {
                        let segment = if token.type_id == 0 { "0 (A)" } else { "1 (B)" };
                        ui.monospace(segment);
                    }
                    ui.end_row();
                });
        });
    let ids: Vec<String> = tokens.iter().map(|t| t.type_id.to_string()).collect();
    ui.label(format!("segment ids: {}", ids.join(" ")));
}

pub fn filter_vocab(vocab: &[VocabEntry], filter: &str) -> Vec<usize> {
    let filter = filter.trim();
    if filter.is_empty() {
        return (0..vocab.len()).collect();
    }
    let lower = filter.to_lowercase();
    let id: Option<u32> = filter.parse().ok();
    vocab
        .iter()
        .enumerate()
        .filter(|(_, e)| Some(e.id) == id || e.token.to_lowercase().contains(&lower))
        .map(|(i, _)| i)
        .collect()
}

fn token_details(ui: &mut Ui, token: &TokenInfo) {
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new(&token.shown).monospace().strong())
            .on_hover_text(format!("as the tokenizer writes it: {:?}", token.text));
        ui.label(format!("id {}", token.id));
        ui.label(format!(
            "bytes {} ({})",
            bytes_text(&token.bytes),
            bytes_hex(&token.bytes)
        ));
        if token.special {
            ui.label("special token");
        } else {
            ui.label(format!(
                "text bytes {}..{}",
                token.offsets.0, token.offsets.1
            ));
        }
    });
}

fn explanation_ui(ui: &mut Ui, tokenized: &TokenizedText) {
    if tokenized.words.is_empty() {
        ui.weak("No words.");
        return;
    }
    if tokenized.kind == crate::tokenizer::TokenizerKind::ByteBpe {
        ui.weak(
            "The merges below are in the tokenizer's own byte symbols: Ġ is a space, Ċ a newline.",
        );
    }
    for (i, word) in tokenized.words.iter().enumerate() {
        let title = format!(
            "{:?} → {}",
            word.word,
            word.pieces
                .iter()
                .map(|p| format!("{:?}", crate::tokenizer::readable_piece(tokenized.kind, p)))
                .collect::<Vec<_>>()
                .join(" + ")
        );
        egui::CollapsingHeader::new(title)
            .id_salt(("word", i))
            .default_open(tokenized.words.len() <= 3)
            .show(ui, |ui| {
                if word.normalized != word.word {
                    ui.weak(format!("as the model sees it: {:?}", word.normalized));
                }
                for (n, step) in word.steps.iter().enumerate() {
                    let text = format!("{}. {step}", n + 1);
                    match step {
                        SplitStep::Merge { .. } | SplitStep::Match { .. } => ui.label(text),
                        _ => ui.weak(text),
                    };
                }
            });
    }
}

fn tokens_export(tokens: &[TokenInfo], format: ExportFormat) -> Result<Vec<u8>, String> {
    match format {
        ExportFormat::Json => serde_json::to_vec_pretty(tokens).map_err(|e| e.to_string()),
        _ => {
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    vec![
                        i.to_string(),
                        t.text.clone(),
                        t.id.to_string(),
                        bytes_hex(&t.bytes),
                        t.special.to_string(),
                    ]
                })
                .collect();
            Ok(table_csv(&["index", "token", "id", "bytes", "special"], &rows).into_bytes())
        }
    }
}
