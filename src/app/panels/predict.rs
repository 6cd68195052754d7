//! View "Predict": what the models' heads say.
//!
//! - GPT: the next-token distribution as bars (top 20 with their tokens); temperature, top-k and
//!   top-p sliders reshape it live ([`next_token_distribution`] of the logits the worker
//!   computed — cheap arithmetic on one vector, fine on the UI thread); "Next token" samples one
//!   token with a seeded generator and appends it to the text, "Generate 20" streams twenty
//!   (every forward pass on the worker).
//! - BERT: fill-mask with the top-k at each `[MASK]` (click a token chip to mask it), the
//!   next-sentence probability of a sentence pair, and extractive question answering with the
//!   start / end probabilities drawn over the context when a QA model is loaded.

use eframe::egui;
use std::sync::Arc;

use egui::{Color32, FontId, Rect, RichText, Role, Sense, Stroke, StrokeKind, Ui, Vec2};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::{Action, Panel};
use crate::analysis::predict::{NextData, QaResult, is_context};
use crate::app::data::{InspectionData, Slot, TokenInfo};
use crate::app::state::{Cached, Fetch, Shared};
use crate::app::widgets::export::{ExportFormat, bars_png, export_buttons, table_csv};
use crate::app::widgets::{error_label, fetch_status, format_value, token_chips, value_bars};
use crate::app::worker::{Command, Output};
use crate::generate::{MIN_TOP_P, SamplingSettings, next_token_distribution, sample};
use crate::inspect::Predictions;
use crate::model::config::Architecture;

/// How many bars the next-token chart shows.
pub const SHOWN: usize = 20;
/// How many tokens "Generate" adds.
pub const GENERATE_COUNT: usize = 20;

/// Which model's head the view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Mode {
    #[default]
    Gpt,
    Bert,
}

#[derive(Debug, Clone, PartialEq)]
struct NextKey {
    generation: u64,
    prompt: String,
    ids: Option<Vec<u32>>,
    prompt_len: usize,
}

/// One sampled token.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub id: u32,
    pub token: String,
    /// Its probability under the settings it was sampled with.
    pub prob: f32,
}

/// A generation in progress: the prompt's ids plus the sampled ones, and the seeded generator.
#[derive(Debug, Clone)]
pub struct Session {
    pub prompt: String,
    pub prompt_len: usize,
    pub ids: Vec<u32>,
    pub generated: String,
    pub picks: Vec<Pick>,
    pub seed: u64,
    rng: StdRng,
}

impl Session {
    fn expected_text(&self) -> String {
        format!("{}{}", self.prompt, self.generated)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
struct Saved {
    mode: Mode,
    settings: SamplingSettings,
    seed: u64,
    nsp_a: String,
    nsp_b: String,
    question: String,
    context: String,
}

impl Default for Saved {
    fn default() -> Self {
        Self {
            mode: Mode::Gpt,
            settings: SamplingSettings::default(),
            seed: 42,
            nsp_a: "The cat chased the mouse.".into(),
            nsp_b: "It ran under the table.".into(),
            question: "Where did the mouse run?".into(),
            context: "The cat chased the mouse. The mouse ran under the table.".into(),
        }
    }
}

pub struct PredictPanel {
    pub mode: Mode,
    pub settings: SamplingSettings,
    pub seed: u64,
    pub session: Option<Session>,
    /// Tokens "Generate" still has to add.
    pub remaining: usize,
    pub message: Option<String>,
    pub nsp_a: String,
    pub nsp_b: String,
    pub question: String,
    pub context: String,
    /// The text (and pair) before the first click on a token masked it.
    pub before_mask: Option<(String, String)>,
    /// A token a lesson asked to mask, with the text its index counts in; masked as soon as the
    /// mask token is known (as a click would).
    pending_mask: Option<(usize, String)>,
    next: Cached<NextKey, Arc<NextData>>,
    /// The distribution of the last logits under the last settings (the logits kept alive so
    /// the pointer comparison is sound).
    distribution: Option<(SamplingSettings, Arc<NextData>, Arc<Vec<f32>>)>,
    mask_token: Cached<(u64,), Option<String>>,
    nsp: Cached<(u64, String, String), Option<f32>>,
    qa: Cached<(u64, String, String), Arc<QaResult>>,
}

impl Default for PredictPanel {
    fn default() -> Self {
        let saved = Saved::default();
        Self {
            mode: saved.mode,
            settings: saved.settings,
            seed: saved.seed,
            session: None,
            remaining: 0,
            message: None,
            nsp_a: saved.nsp_a,
            nsp_b: saved.nsp_b,
            question: saved.question,
            context: saved.context,
            before_mask: None,
            pending_mask: None,
            next: Cached::default(),
            distribution: None,
            mask_token: Cached::default(),
            nsp: Cached::default(),
            qa: Cached::default(),
        }
    }
}

impl PredictPanel {
    /// The last next-token logits the worker sent.
    pub fn next_data(&self) -> Option<&Arc<NextData>> {
        self.next.last()
    }

    /// The distribution the bars show: the last logits under the current settings.
    pub fn distribution(&self) -> Option<Vec<f32>> {
        self.next_data()
            .map(|d| next_token_distribution(&d.logits, &self.settings))
    }

    /// The last NSP answer: P(B follows A), `None` without an NSP head.
    pub fn nsp_prob(&self) -> Option<Option<f32>> {
        self.nsp.last().copied()
    }

    pub fn qa_result(&self) -> Option<&Arc<QaResult>> {
        self.qa.last()
    }

    /// Stops a running generation and forgets the sampled tokens (the text stays).
    pub fn reset(&mut self) {
        self.session = None;
        self.remaining = 0;
    }

    fn distribution_for(&mut self, data: &Arc<NextData>) -> Arc<Vec<f32>> {
        if let Some((settings, logits, dist)) = &self.distribution
            && *settings == self.settings
            && Arc::ptr_eq(logits, data)
        {
            return dist.clone();
        }
        let dist = Arc::new(next_token_distribution(&data.logits, &self.settings));
        self.distribution = Some((self.settings, data.clone(), dist.clone()));
        dist
    }

    /// Samples the next token from `data` (the logits after the current ids) and appends it.
    fn sample_next(&mut self, data: &Arc<NextData>, text: &str) {
        let dist = self.distribution_for(data);
        let seed = self.seed;
        let session = self.session.get_or_insert_with(|| Session {
            prompt: text.to_string(),
            prompt_len: data.ids.len(),
            ids: data.ids.clone(),
            generated: String::new(),
            picks: Vec::new(),
            seed,
            rng: StdRng::seed_from_u64(seed),
        });
        let id = sample(&dist, &mut session.rng) as u32;
        if Some(id) == data.eos {
            self.remaining = 0;
            self.message = Some("The model sampled the end-of-text token: it stops here.".into());
            return;
        }
        let token = data
            .order
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| format!("id {id}"));
        session.ids.push(id);
        session.picks.push(Pick {
            id,
            token,
            prob: dist.get(id as usize).copied().unwrap_or(0.0),
        });
        self.message = None;
    }
}

impl Panel for PredictPanel {
    fn id(&self) -> &'static str {
        "predict"
    }

    fn title(&self) -> &'static str {
        "Predict"
    }

    fn hint(&self) -> &'static str {
        "Next-token probabilities and sampling (GPT); fill-mask, NSP and QA (BERT)"
    }

    fn save_state(&self) -> Option<serde_json::Value> {
        serde_json::to_value(Saved {
            mode: self.mode,
            settings: self.settings,
            seed: self.seed,
            nsp_a: self.nsp_a.clone(),
            nsp_b: self.nsp_b.clone(),
            question: self.question.clone(),
            context: self.context.clone(),
        })
        .ok()
    }

    fn load_state(&mut self, state: serde_json::Value) {
        if let Ok(saved) = serde_json::from_value::<Saved>(state) {
            self.mode = saved.mode;
            // A hand-edited or old saved state may hold NaN or out-of-range values.
            self.settings = saved.settings.clamped();
            self.seed = saved.seed;
            self.nsp_a = saved.nsp_a;
            self.nsp_b = saved.nsp_b;
            self.question = saved.question;
            self.context = saved.context;
        }
    }

    fn apply(&mut self, action: &Action, shared: &mut Shared) {
        match action {
            Action::SetText(_) => {
                self.remaining = 0;
                self.before_mask = None;
            }
            Action::SetPair(Some(pair)) => {
                // Next-sentence prediction on the pair (the text is sentence A).
                self.mode = Mode::Bert;
                self.nsp_a = shared.text.clone();
                self.nsp_b = pair.clone();
            }
            Action::MaskToken { index } => {
                self.mode = Mode::Bert;
                self.pending_mask = Some((*index, shared.text.clone()));
            }
            Action::SetSampling(sampling) => {
                self.mode = Mode::Gpt;
                if let Some(t) = sampling.temperature {
                    self.settings.temperature = t as f32;
                }
                if let Some(k) = sampling.top_k {
                    self.settings.top_k = k;
                }
                if let Some(p) = sampling.top_p {
                    self.settings.top_p = p as f32;
                }
                self.settings = self.settings.clamped();
            }
            Action::Generate(count) => {
                // A new generation after the text as it is now.
                self.mode = Mode::Gpt;
                self.reset();
                self.message = None;
                self.remaining = *count;
            }
            Action::ShowSide(Slot::Gpt) => self.mode = Mode::Gpt,
            Action::ShowSide(Slot::Bert) => self.mode = Mode::Bert,
            Action::AskQuestion(question) => {
                self.mode = Mode::Bert;
                self.question = question.clone();
                self.context = shared.text.clone();
            }
            _ => {}
        }
    }

    fn ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        ui.heading("Predict");
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.mode, Mode::Gpt, "GPT: next token");
            ui.selectable_value(&mut self.mode, Mode::Bert, "BERT: fill-mask, NSP, QA");
        });
        ui.separator();
        match self.mode {
            Mode::Gpt => self.gpt_ui(ui, shared),
            Mode::Bert => self.bert_ui(ui, shared),
        }
    }
}

// ---- GPT ----------------------------------------------------------------------------------------

impl PredictPanel {
    fn gpt_ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        let slot = Slot::Gpt;
        if shared.model(slot).is_none() {
            fetch_status::<()>(ui, slot, &Fetch::NoModel);
            return;
        }
        // The text was edited: the generation is over.
        if let Some(session) = &self.session
            && session.expected_text() != shared.text
        {
            self.session = None;
            self.remaining = 0;
        }
        let key = match &self.session {
            Some(s) => NextKey {
                generation: shared.generation(slot),
                prompt: s.prompt.clone(),
                ids: Some(s.ids.clone()),
                prompt_len: s.prompt_len,
            },
            None => NextKey {
                generation: shared.generation(slot),
                prompt: shared.text.clone(),
                ids: None,
                prompt_len: 0,
            },
        };
        let request = key.clone();
        let fetch = self.next.fetch(
            shared,
            key,
            || Command::NextToken {
                slot,
                prompt: request.prompt,
                ids: request.ids,
                prompt_len: request.prompt_len,
            },
            |out| match out {
                Output::NextToken(data) => Some(data),
                _ => None,
            },
        );
        let ready = match &fetch {
            Fetch::Ready(d) => Some(d.clone()),
            _ => None,
        };
        if let Fetch::Failed(_) = fetch {
            self.remaining = 0;
        }
        // A new token's logits arrived: its text joins the shared text.
        if let (Some(data), Some(session)) = (&ready, &mut self.session)
            && data.ids == session.ids
            && data.continuation != session.generated
        {
            session.generated = data.continuation.clone();
            shared.text = session.expected_text();
        }
        // Streaming: one token per answer.
        let current_ids = self.session.as_ref().map(|s| s.ids.clone());
        if self.remaining > 0
            && let Some(data) = &ready
            && current_ids.as_ref().is_none_or(|ids| *ids == data.ids)
        {
            self.remaining -= 1;
            let text = shared.text.clone();
            self.sample_next(data, &text);
            // The next forward pass is asked for on the next frame.
            ui.ctx().request_repaint();
        }

        ui.label(
            "The GPT reads the text and scores every vocabulary entry as the next token. \
             Softmax turns the scores (logits) into probabilities; temperature, top-k and top-p \
             reshape them before a token is sampled.",
        );
        self.sampling_controls(ui);
        let Some(data) = fetch_status(ui, slot, &fetch) else {
            return;
        };
        let dist = self.distribution_for(&data);
        ui.horizontal_wrapped(|ui| {
            let idle = ready.is_some();
            if ui
                .add_enabled(idle && self.remaining == 0, egui::Button::new("Next token"))
                .on_hover_text("Sample one token from the distribution below and append it")
                .clicked()
            {
                let text = shared.text.clone();
                self.sample_next(&data, &text);
                ui.ctx().request_repaint();
            }
            if self.remaining > 0 {
                if ui.button("Stop").clicked() {
                    self.remaining = 0;
                }
                ui.spinner();
                ui.label(format!("{} to go", self.remaining));
            } else if ui
                .add_enabled(
                    idle,
                    egui::Button::new(format!("Generate {GENERATE_COUNT}")),
                )
                .on_hover_text("Sample tokens one by one, each from a new forward pass")
                .clicked()
            {
                self.remaining = GENERATE_COUNT;
            }
            if let Some(session) = &self.session {
                if ui
                    .button("Back to the prompt")
                    .on_hover_text("Remove the generated tokens from the text")
                    .clicked()
                {
                    shared.text = session.prompt.clone();
                    self.reset();
                } else if ui
                    .button("Keep the text")
                    .on_hover_text("End this generation; the next one starts afresh")
                    .clicked()
                {
                    self.reset();
                }
            }
        });
        if let Some(message) = &self.message {
            ui.label(message);
        }
        if let Some(session) = &self.session {
            ui.label(format!(
                "Generated {} token{} (seed {}):",
                session.picks.len(),
                if session.picks.len() == 1 { "" } else { "s" },
                session.seed
            ));
            let generated: Vec<TokenInfo> = data
                .tokens
                .iter()
                .skip(session.prompt_len)
                .cloned()
                .collect();
            ui.push_id("generated", |ui| token_chips(ui, &generated, None));
            let probs: Vec<String> = session
                .picks
                .iter()
                .map(|p| format!("{:?} {:.3}", p.token, p.prob))
                .collect();
            ui.weak(format!("sampled with probability: {}", probs.join(", ")));
        }
        ui.separator();

        let last = data
            .tokens
            .last()
            .map(|t| t.shown.clone())
            .unwrap_or_default();
        ui.label(
            RichText::new(format!(
                "{}: next-token probabilities after {last:?} ({} tokens read)",
                data.model_name,
                data.ids.len()
            ))
            .strong(),
        );
        let shown: Vec<(u32, String, f32, f32)> = data
            .order
            .iter()
            .take(SHOWN)
            .map(|(id, token)| {
                let i = *id as usize;
                (
                    *id,
                    token.clone(),
                    data.logits.get(i).copied().unwrap_or(0.0),
                    dist.get(i).copied().unwrap_or(0.0),
                )
            })
            .collect();
        let kept = dist.iter().filter(|&&p| p > 0.0).count();
        let entropy: f32 = dist
            .iter()
            .filter(|&&p| p > 0.0)
            .map(|&p| -p * p.log2())
            .sum();
        let shown_mass: f32 = shown.iter().map(|s| s.3).sum();
        ui.label(format!(
            "{kept} of {} tokens can be sampled; the top {} hold {}; entropy {entropy:.3} bits.",
            dist.len(),
            shown.len(),
            format_value(shown_mass)
        ));
        let items: Vec<(String, f32)> = shown.iter().map(|s| (s.1.clone(), s.3)).collect();
        ui.push_id("next_bars", |ui| {
            value_bars(ui, &items, None, format_value);
        });
        ui.weak(
            "Bars are scaled to the largest probability shown. Tokens cut by top-k / top-p show 0.",
        );
        let dir = shared.export_dir.clone();
        let rows: Vec<Vec<String>> = shown
            .iter()
            .map(|(id, token, logit, p)| {
                vec![
                    id.to_string(),
                    token.clone(),
                    logit.to_string(),
                    p.to_string(),
                ]
            })
            .collect();
        let json = serde_json::json!({
            "model": data.model_name,
            "text": shared.text,
            "settings": self.settings,
            "top": shown.iter().map(|(id, token, logit, p)| serde_json::json!({
                "id": id, "token": token, "logit": logit, "prob": p
            })).collect::<Vec<_>>(),
        });
        let values: Vec<f64> = shown.iter().map(|s| s.3 as f64).collect();
        export_buttons(
            ui,
            "next_token",
            &dir,
            "next-token-probabilities",
            &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
            |format| match format {
                ExportFormat::Png => bars_png(&[(Color32::from_rgb(59, 81, 139), values)]),
                ExportFormat::Csv => {
                    Ok(table_csv(&["id", "token", "logit", "probability"], &rows).into_bytes())
                }
                ExportFormat::Json => serde_json::to_vec_pretty(&json).map_err(|e| e.to_string()),
            },
        );
    }

    fn sampling_controls(&mut self, ui: &mut Ui) {
        egui::Grid::new("sampling")
            .num_columns(3)
            .spacing([10.0, 4.0])
            .show(ui, |ui| {
                ui.label("Temperature");
                ui.add(
                    egui::Slider::new(&mut self.settings.temperature, 0.0..=2.0)
                        .step_by(0.05)
                        .text("T"),
                );
                ui.weak("logits / T before the softmax; 0 = always the most likely token");
                ui.end_row();
                ui.label("Top-k");
                ui.add(egui::Slider::new(&mut self.settings.top_k, 0..=100).text("k"));
                ui.weak("keep the k most likely tokens; 0 = all");
                ui.end_row();
                ui.label("Top-p");
                ui.add(
                    egui::Slider::new(&mut self.settings.top_p, MIN_TOP_P..=1.0)
                        .step_by(0.01)
                        .text("p"),
                );
                ui.weak("keep the fewest tokens whose probabilities add up to p; 1 = all");
                ui.end_row();
                ui.label("Seed");
                ui.add(egui::DragValue::new(&mut self.seed));
                ui.weak("the same seed and settings sample the same tokens");
                ui.end_row();
            });
        if ui.button("Reset sampling").clicked() {
            self.settings = SamplingSettings::default();
        }
    }
}

// ---- BERT ---------------------------------------------------------------------------------------

impl PredictPanel {
    fn bert_ui(&mut self, ui: &mut Ui, shared: &mut Shared) {
        let slot = Slot::Bert;
        let Some(summary) = shared.model(slot).cloned() else {
            fetch_status::<()>(ui, slot, &Fetch::NoModel);
            return;
        };
        let architecture = summary.config.architecture;
        ui.label(RichText::new(format!("{} — {}", summary.name, architecture.hf_name())).strong());
        ui.label(RichText::new("Fill in the [MASK]").heading());
        self.fill_mask(ui, shared);
        ui.separator();
        ui.label(RichText::new("Next-sentence prediction").heading());
        self.nsp_ui(ui, shared, architecture);
        ui.separator();
        ui.label(RichText::new("Extractive question answering").heading());
        self.qa_ui(ui, shared, architecture);
    }

    fn fill_mask(&mut self, ui: &mut Ui, shared: &mut Shared) {
        let slot = Slot::Bert;
        let generation = shared.generation(slot);
        let mask_fetch = self.mask_token.fetch(
            shared,
            (generation,),
            || Command::MaskToken { slot },
            |out| match out {
                Output::MaskToken(mask) => Some(mask),
                _ => None,
            },
        );
        let mask_known = matches!(mask_fetch, Fetch::Ready(_) | Fetch::Failed(_));
        let mask = mask_fetch.data().flatten();
        ui.label(
            "BERT was trained to guess hidden words from both sides. Click a token to replace it \
             with [MASK] in the text; the bars show the model's top guesses at every [MASK]. \
             Click a guess to put it in.",
        );
        let fetch = shared.inspection(slot);
        let Some(data) = fetch_status(ui, slot, &fetch) else {
            return;
        };
        let fresh =
            data.text == shared.text && data.pair == shared.pair_text() && !fetch.is_pending();
        // A lesson's `mask:`, once the tokens of its text and the mask token are here.
        if let Some((index, text)) = self.pending_mask.clone()
            && (text != shared.text || (fresh && mask_known))
        {
            self.pending_mask = None;
            match &mask {
                _ if text != shared.text => {}
                None => shared.error("this tokenizer has no mask token"),
                Some(mask) => {
                    if let Err(message) = self.replace_token(shared, &data, index, mask) {
                        shared.error(message);
                    }
                }
            }
        }
        if let Some(i) = token_chips(ui, &data.tokens, None) {
            match (&mask, fresh) {
                (None, _) => error_label(ui, "this tokenizer has no mask token"),
                (Some(_), false) => {}
                (Some(mask), true) => {
                    if let Err(message) = self.replace_token(shared, &data, i, mask) {
                        shared.error(message);
                    }
                }
            }
        }
        ui.horizontal(|ui| {
            if let Some(mask) = &mask {
                ui.weak(format!("mask token: {mask}"));
            }
            if let Some((text, pair)) = self.before_mask.clone()
                && ui.button("Restore the text").clicked()
            {
                shared.text = text;
                shared.pair = pair;
                self.before_mask = None;
            }
        });
        match &data.predictions {
            Predictions::FillMask { masks, .. } if masks.is_empty() => {
                ui.label("No [MASK] in the text yet: click a token above to mask it.");
            }
            Predictions::FillMask { masks, .. } => {
                let dir = shared.export_dir.clone();
                let mut fill = None;
                ui.horizontal_wrapped(|ui| {
                    for m in masks {
                        ui.push_id(("mask", m.position), |ui| {
                            ui.vertical(|ui| {
                                ui.set_width(300.0);
                                ui.label(
                                    RichText::new(format!("[MASK] at position {}", m.position))
                                        .strong(),
                                );
                                let items: Vec<(String, f32)> =
                                    m.top.iter().map(|t| (t.shown.clone(), t.prob)).collect();
                                if let Some(k) = value_bars(ui, &items, Some(1.0), format_value)
                                    && let Some(t) = m.top.get(k)
                                {
                                    fill = Some((m.position, t.token.clone()));
                                }
                                let rows: Vec<Vec<String>> = m
                                    .top
                                    .iter()
                                    .map(|t| {
                                        vec![t.id.to_string(), t.token.clone(), t.prob.to_string()]
                                    })
                                    .collect();
                                let values: Vec<f64> =
                                    m.top.iter().map(|t| t.prob as f64).collect();
                                let json = serde_json::to_vec_pretty(m).map_err(|e| e.to_string());
                                export_buttons(
                                    ui,
                                    "fill_mask",
                                    &dir,
                                    &format!("fill-mask-position{}", m.position),
                                    &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
                                    |format| match format {
                                        ExportFormat::Png => {
                                            bars_png(&[(Color32::from_rgb(59, 81, 139), values)])
                                        }
                                        ExportFormat::Csv => {
                                            Ok(table_csv(&["id", "token", "probability"], &rows)
                                                .into_bytes())
                                        }
                                        ExportFormat::Json => json,
                                    },
                                );
                            });
                        });
                    }
                });
                if let Some((position, token)) = fill
                    && fresh
                {
                    let piece = token.strip_prefix("##").unwrap_or(&token).to_string();
                    if let Err(message) = self.replace_token(shared, &data, position, &piece) {
                        shared.error(message);
                    }
                }
            }
            Predictions::None => {
                ui.label(
                    "This BERT has no masked-LM head (a bare encoder), so it cannot fill in \
                     tokens. Load a BertForMaskedLM or BertForPreTraining model.",
                );
            }
            _ => {
                ui.label("This BERT has a task head instead of the masked-LM head.");
            }
        }
    }

    /// Replaces token `index` of the inspected text (or pair) with `with`.
    fn replace_token(
        &mut self,
        shared: &mut Shared,
        data: &InspectionData,
        index: usize,
        with: &str,
    ) -> std::result::Result<(), String> {
        let token = data
            .tokens
            .get(index)
            .ok_or_else(|| format!("there is no token {index}"))?;
        if token.special {
            return Err(format!(
                "{} is a special token the tokenizer adds; it cannot be masked",
                token.text
            ));
        }
        let (start, end) = token.offsets;
        let in_pair = token.type_id == 1;
        let current = if in_pair { &shared.pair } else { &shared.text };
        if start >= end || current.get(start..end).is_none() {
            return Err(format!("cannot find token {:?} in the text", token.text));
        }
        if self.before_mask.is_none() {
            self.before_mask = Some((shared.text.clone(), shared.pair.clone()));
        }
        let target = if in_pair {
            &mut shared.pair
        } else {
            &mut shared.text
        };
        target.replace_range(start..end, with);
        Ok(())
    }

    fn nsp_ui(&mut self, ui: &mut Ui, shared: &mut Shared, architecture: Architecture) {
        ui.label(
            "BERT's pretraining also asked: does sentence B really follow sentence A? \
             (the [CLS] vector through a two-way classifier)",
        );
        egui::Grid::new("nsp_fields")
            .num_columns(2)
            .spacing([8.0, 4.0])
            .show(ui, |ui| {
                ui.label("Sentence A:");
                ui.add(egui::TextEdit::singleline(&mut self.nsp_a).desired_width(480.0));
                ui.end_row();
                ui.label("Sentence B:");
                ui.add(egui::TextEdit::singleline(&mut self.nsp_b).desired_width(480.0));
                ui.end_row();
            });
        if architecture != Architecture::BertForPreTraining {
            ui.label(format!(
                "This model ({}) has no next-sentence head; only BertForPreTraining models \
                 have one (pretrain a BERT with NSP in the Train view, or load one).",
                architecture.hf_name()
            ));
            return;
        }
        if self.nsp_a.trim().is_empty() || self.nsp_b.trim().is_empty() {
            ui.label("Type both sentences.");
            return;
        }
        let slot = Slot::Bert;
        let key = (
            shared.generation(slot),
            self.nsp_a.clone(),
            self.nsp_b.clone(),
        );
        let (a, b) = (key.1.clone(), key.2.clone());
        let fetch = self.nsp.fetch(
            shared,
            key,
            || Command::NextSentence { slot, a, b },
            |out| match out {
                Output::NextSentence(p) => Some(p),
                _ => None,
            },
        );
        let Some(p) = fetch_status(ui, slot, &fetch) else {
            return;
        };
        let Some(p) = p else {
            ui.label("The model gave no next-sentence probability.");
            return;
        };
        let items = vec![
            ("B follows A (IsNext)".to_string(), p),
            ("B is a random sentence (NotNext)".to_string(), 1.0 - p),
        ];
        ui.push_id("nsp_bars", |ui| {
            value_bars(ui, &items, Some(1.0), format_value);
        });
        let dir = shared.export_dir.clone();
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|(l, v)| vec![l.clone(), v.to_string()])
            .collect();
        let json = serde_json::json!({
            "sentence_a": self.nsp_a, "sentence_b": self.nsp_b, "is_next_prob": p
        });
        export_buttons(
            ui,
            "nsp",
            &dir,
            "next-sentence-prediction",
            &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
            |format| match format {
                ExportFormat::Png => bars_png(&[(
                    Color32::from_rgb(59, 81, 139),
                    vec![p as f64, 1.0 - p as f64],
                )]),
                ExportFormat::Csv => Ok(table_csv(&["", "probability"], &rows).into_bytes()),
                ExportFormat::Json => serde_json::to_vec_pretty(&json).map_err(|e| e.to_string()),
            },
        );
    }

    fn qa_ui(&mut self, ui: &mut Ui, shared: &mut Shared, architecture: Architecture) {
        ui.label(
            "A QA model reads a question and a context as a pair and scores every context \
             token as the start and as the end of the answer.",
        );
        egui::Grid::new("qa_fields")
            .num_columns(2)
            .spacing([8.0, 4.0])
            .show(ui, |ui| {
                ui.label("Question:");
                ui.add(egui::TextEdit::singleline(&mut self.question).desired_width(480.0));
                ui.end_row();
                ui.label("Context:");
                ui.add(
                    egui::TextEdit::multiline(&mut self.context)
                        .desired_width(480.0)
                        .desired_rows(3),
                );
                ui.end_row();
            });
        if architecture != Architecture::BertForQuestionAnswering {
            ui.label(format!(
                "No question-answering model is loaded: the BERT slot holds a {} model, which \
                 has no start/end head, and Glassbox shows no made-up numbers. To get one, \
                 fine-tune a BERT for extractive QA in the Fine-tune view and load the saved \
                 folder, or load any Hugging Face folder whose config.json says \
                 \"BertForQuestionAnswering\" in the Model view.",
                architecture.hf_name()
            ));
            return;
        }
        if self.question.trim().is_empty() || self.context.trim().is_empty() {
            ui.label("Type a question and a context.");
            return;
        }
        let slot = Slot::Bert;
        let key = (
            shared.generation(slot),
            self.question.clone(),
            self.context.clone(),
        );
        let (question, context) = (key.1.clone(), key.2.clone());
        let fetch = self.qa.fetch(
            shared,
            key,
            || Command::Answer {
                slot,
                question,
                context,
            },
            |out| match out {
                Output::Answer(result) => Some(result),
                _ => None,
            },
        );
        let Some(result) = fetch_status(ui, slot, &fetch) else {
            return;
        };
        ui.label(
            RichText::new(format!(
                "Answer: {:?} (tokens {}..={}, start + end logit {:.3})",
                result.answer, result.start, result.end, result.score
            ))
            .strong(),
        );
        ui.label(
            "Over every context token: P(start) in blue, P(end) in orange (softmax of the \
             start / end logits over the context tokens); the answer span is framed.",
        );
        span_bars(ui, &result);
        let dir = shared.export_dir.clone();
        let context_tokens: Vec<usize> = (0..result.tokens.len())
            .filter(|&i| is_context(&result.tokens[i]))
            .collect();
        let rows: Vec<Vec<String>> = context_tokens
            .iter()
            .map(|&i| {
                vec![
                    i.to_string(),
                    result.tokens[i].text.clone(),
                    result.start_probs[i].to_string(),
                    result.end_probs[i].to_string(),
                ]
            })
            .collect();
        let starts: Vec<f64> = context_tokens
            .iter()
            .map(|&i| result.start_probs[i] as f64)
            .collect();
        let ends: Vec<f64> = context_tokens
            .iter()
            .map(|&i| result.end_probs[i] as f64)
            .collect();
        let json = serde_json::json!({
            "question": self.question, "context": self.context, "answer": result.answer,
            "start": result.start, "end": result.end,
            "tokens": context_tokens.iter().map(|&i| serde_json::json!({
                "index": i, "token": result.tokens[i].text,
                "start_prob": result.start_probs[i], "end_prob": result.end_probs[i],
            })).collect::<Vec<_>>(),
        });
        export_buttons(
            ui,
            "qa",
            &dir,
            "qa-start-end",
            &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
            |format| match format {
                ExportFormat::Png => bars_png(&[(START_COLOR, starts), (END_COLOR, ends)]),
                ExportFormat::Csv => Ok(table_csv(
                    &["index", "token", "start probability", "end probability"],
                    &rows,
                )
                .into_bytes()),
                ExportFormat::Json => serde_json::to_vec_pretty(&json).map_err(|e| e.to_string()),
            },
        );
    }
}

const START_COLOR: Color32 = Color32::from_rgb(60, 130, 220);
const END_COLOR: Color32 = Color32::from_rgb(235, 130, 40);

/// The context tokens in reading order, each with its start and end probability as two bars
/// above it; the answer span framed.
fn span_bars(ui: &mut Ui, result: &QaResult) {
    let max = result
        .start_probs
        .iter()
        .chain(&result.end_probs)
        .copied()
        .fold(f32::MIN_POSITIVE, f32::max);
    let font = FontId::monospace(13.0);
    let bar_h = 70.0;
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing = Vec2::new(2.0, 8.0);
        for (i, token) in result.tokens.iter().enumerate() {
            if !is_context(token) {
                continue;
            }
            let text = crate::app::widgets::chips::chip_text(&token.shown);
            let galley = ui
                .painter()
                .layout_no_wrap(text, font.clone(), ui.visuals().text_color());
            let w = galley.size().x.max(18.0) + 8.0;
            let size = Vec2::new(w, bar_h + galley.size().y + 6.0);
            let (rect, response) = ui.allocate_exact_size(size, Sense::hover());
            let (ps, pe) = (result.start_probs[i], result.end_probs[i]);
            let label = format!(
                "context token {i} {}: start {}, end {}",
                token.shown,
                format_value(ps),
                format_value(pe)
            );
            response.widget_info(|| egui::WidgetInfo::labeled(Role::Image, true, &label));
            let painter = ui.painter();
            let base = rect.min.y + bar_h;
            let half = (w - 6.0) / 2.0;
            for (k, (p, color)) in [(ps, START_COLOR), (pe, END_COLOR)].into_iter().enumerate() {
                let h = (p / max).clamp(0.0, 1.0) * (bar_h - 4.0);
                let x = rect.min.x + 3.0 + k as f32 * half;
                painter.rect_filled(
                    Rect::from_min_max(
                        egui::pos2(x, base - h.max(1.0)),
                        egui::pos2(x + half - 1.0, base),
                    ),
                    1.0,
                    color,
                );
            }
            painter.galley(
                egui::pos2(rect.center().x - galley.size().x / 2.0, base + 3.0),
                galley,
                ui.visuals().text_color(),
            );
            if (result.start..=result.end).contains(&i) {
                painter.rect_stroke(
                    rect.shrink(0.5),
                    3.0,
                    Stroke::new(1.5, ui.visuals().selection.stroke.color),
                    StrokeKind::Inside,
                );
            }
            response.on_hover_text(label);
        }
    });
}
