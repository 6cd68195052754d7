//! Generation settings of a translation folder and beam search, as `transformers` does them
//! (`GenerationMixin._beam_search`, 5.x): keep the `2·num_beams` best continuations of all beams,
//! let the best `num_beams` that did not just end run on, and keep the `num_beams` best finished
//! hypotheses, each scored `sum of log-probabilities / generated_length^length_penalty`.

use std::path::Path;

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

use super::{Marian, MarianConfig};

/// When beam search may stop (`generation_config.early_stopping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum EarlyStopping {
    /// `True`: as soon as `num_beams` hypotheses have finished.
    Yes,
    /// `False` (the default): when the best running beam, scored at its current length, can no
    /// longer beat the worst finished hypothesis.
    #[default]
    No,
    /// `"never"`: as `No`, but with a positive length penalty the running beam is scored at the
    /// maximum length (the canonical beam search).
    Never,
}

impl EarlyStopping {
    fn from_json(value: &serde_json::Value) -> Option<Self> {
        match value {
            serde_json::Value::Bool(true) => Some(EarlyStopping::Yes),
            serde_json::Value::Bool(false) => Some(EarlyStopping::No),
            serde_json::Value::String(s) if s == "never" => Some(EarlyStopping::Never),
            _ => None,
        }
    }

    fn to_json(self) -> serde_json::Value {
        match self {
            EarlyStopping::Yes => true.into(),
            EarlyStopping::No => false.into(),
            EarlyStopping::Never => "never".into(),
        }
    }
}

/// How to generate: a folder's `generation_config.json` (or `config.json`) with
/// `transformers`' defaults for what neither names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfig {
    /// Longest sequence, the decoder's start token included.
    pub max_length: usize,
    pub num_beams: usize,
    pub length_penalty: f32,
    pub early_stopping: EarlyStopping,
    /// Token sequences never to complete (Marian: the pad token).
    pub bad_words_ids: Vec<Vec<u32>>,
    /// Forced at the last allowed position.
    pub forced_eos_token_id: Option<u32>,
    pub decoder_start_token_id: u32,
    pub eos_token_id: u32,
}

impl GenerationConfig {
    /// The model config's own values and `transformers`' defaults (max_length 20, one beam).
    pub fn from_model(config: &MarianConfig) -> Self {
        Self {
            max_length: 20,
            num_beams: 1,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::No,
            bad_words_ids: vec![vec![config.pad_token_id]],
            forced_eos_token_id: config.forced_eos_token_id,
            decoder_start_token_id: config.decoder_start_token_id,
            eos_token_id: config.eos_token_id,
        }
    }

    /// A `generation_config.json` that `transformers` reads (and [`Self::apply_json`] reads back).
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut value = serde_json::json!({
            "max_length": self.max_length,
            "num_beams": self.num_beams,
            "length_penalty": self.length_penalty,
            "early_stopping": self.early_stopping.to_json(),
            "bad_words_ids": self.bad_words_ids,
            "decoder_start_token_id": self.decoder_start_token_id,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.bad_words_ids.first().and_then(|b| b.first()),
        });
        if let Some(id) = self.forced_eos_token_id {
            value["forced_eos_token_id"] = id.into();
        }
        value
    }

    /// Overrides from a JSON object (`config.json` then `generation_config.json`).
    pub fn apply_json(&mut self, value: &serde_json::Value) -> std::result::Result<(), String> {
        let count = |key: &str| -> std::result::Result<Option<usize>, String> {
            match &value[key] {
                serde_json::Value::Null => Ok(None),
                v => v
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| format!("{key} must be a whole number, not {v}")),
            }
        };
        let token = |key: &str| -> std::result::Result<Option<u32>, String> {
            Ok(count(key)?.map(|n| n as u32))
        };
        if let Some(n) = count("max_length")? {
            self.max_length = n;
        }
        if let Some(n) = count("num_beams")? {
            if n == 0 {
                return Err("num_beams must be at least 1".into());
            }
            self.num_beams = n;
        }
        if let Some(p) = value["length_penalty"].as_f64() {
            self.length_penalty = p as f32;
        }
        if !value["early_stopping"].is_null() {
            self.early_stopping =
                EarlyStopping::from_json(&value["early_stopping"]).ok_or_else(|| {
                    format!(
                        "early_stopping must be true, false or \"never\", not {}",
                        value["early_stopping"]
                    )
                })?;
        }
        if !value["bad_words_ids"].is_null() {
            self.bad_words_ids = serde_json::from_value(value["bad_words_ids"].clone())
                .map_err(|e| format!("bad_words_ids must be lists of token ids: {e}"))?;
        }
        if let Some(id) = token("forced_eos_token_id")? {
            self.forced_eos_token_id = Some(id);
        }
        if let Some(id) = token("decoder_start_token_id")? {
            self.decoder_start_token_id = id;
        }
        // `eos_token_id` may be a list; the first is the one Marian writes.
        match &value["eos_token_id"] {
            serde_json::Value::Array(ids) => {
                if let Some(id) = ids.first().and_then(|v| v.as_u64()) {
                    self.eos_token_id = id as u32;
                }
            }
            _ => {
                if let Some(id) = token("eos_token_id")? {
                    self.eos_token_id = id;
                }
            }
        }
        Ok(())
    }

    /// The settings of a model folder: the model's, then `config.json`'s generation keys, then
    /// `generation_config.json` when the folder has one.
    pub fn from_dir(
        dir: &Path,
        config: &MarianConfig,
        config_json: &serde_json::Value,
    ) -> crate::error::Result<Self> {
        let mut generation = Self::from_model(config);
        let bad = |path: &Path, message: String| crate::error::GlassboxError::BadConfig {
            path: path.to_path_buf(),
            message,
        };
        let config_path = dir.join("config.json");
        generation
            .apply_json(config_json)
            .map_err(|m| bad(&config_path, m))?;
        let path = dir.join("generation_config.json");
        if path.is_file() {
            let text = crate::util::read_text(&path)?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| bad(&path, e.to_string()))?;
            generation.apply_json(&value).map_err(|m| bad(&path, m))?;
        }
        Ok(generation)
    }

    /// Applies `NoBadWordsLogitsProcessor` and `ForcedEOSTokenLogitsProcessor` to one beam's
    /// next-token scores. `sequence` is the beam so far (start token included).
    pub fn process(&self, scores: &mut [f32], sequence: &[u32]) {
        for bad in &self.bad_words_ids {
            let Some((&last, prefix)) = bad.split_last() else {
                continue;
            };
            if sequence.ends_with(prefix)
                && let Some(score) = scores.get_mut(last as usize)
            {
                *score = f32::NEG_INFINITY;
            }
        }
        if sequence.len() + 1 == self.max_length
            && let Some(eos) = self.forced_eos_token_id
        {
            for (id, score) in scores.iter_mut().enumerate() {
                *score = if id == eos as usize {
                    0.0
                } else {
                    f32::NEG_INFINITY
                };
            }
        }
    }
}

/// A finished beam: the generated ids after the start token (ending with `</s>` when the
/// model ended it) and its score, `log p(ids) / len(ids)^length_penalty`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hypothesis {
    pub ids: Vec<u32>,
    pub score: f32,
    /// Sum of the log-probabilities of `ids` (after the generation rules).
    pub log_probability: f32,
}

/// `transformers` marks impossible beams with this score instead of −∞.
const IMPOSSIBLE: f32 = -1.0e9;

/// A running or finished beam.
#[derive(Debug, Clone)]
struct Beam {
    /// Start token included.
    sequence: Vec<u32>,
    score: f32,
    log_probability: f32,
    finished: bool,
}

/// The `k` largest of `values` by index, best first (ties: lower index first, as `torch.topk`
/// on CPU).
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let better = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    let mut order: Vec<usize> = (0..values.len()).collect();
    // Partition around the k-th best (linear), then sort only the k: the candidates are
    // beams × vocabulary, ~240,000 for opus-mt with 4 beams.
    if k < order.len() {
        order.select_nth_unstable_by(k, better);
        order.truncate(k);
    }
    order.sort_by(better);
    order
}

/// The index of the largest score, the first of equals (as [`top_k`] ranks them). One pass:
/// greedy decoding calls it once per token over the whole vocabulary.
pub(super) fn first_max(scores: &[f32]) -> usize {
    let mut best = 0;
    for (index, score) in scores.iter().enumerate() {
        if score.total_cmp(&scores[best]).is_gt() {
            best = index;
        }
    }
    best
}

fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = logits.iter().map(|&x| (x - max).exp()).sum::<f32>().ln() + max;
    logits.iter().map(|&x| x - log_sum).collect()
}

impl Marian {
    /// Beam search for one source sentence (ids with its `</s>`), as `transformers`'
    /// `generate(num_beams=n, do_sample=False)`. Returns the finished hypotheses, best first
    /// (`num_beams` of them). Decodes all beams as one batch with the key/value cache.
    pub fn beam_search(
        &self,
        source_ids: &[u32],
        generation: &GenerationConfig,
    ) -> Result<Vec<Hypothesis>> {
        let beams = generation.num_beams.max(1);
        let generation = self.within_positions(generation);
        let max_length = generation.max_length;
        let device = self.shared.weight.device();
        let input_ids = Tensor::new(source_ids, device)?.unsqueeze(0)?; // [1, s]
        let encoder_output = self.encode(&input_ids, None, None)?; // [1, s, d]
        let (_, s, d) = encoder_output.dims3()?;
        let encoder_output = encoder_output.broadcast_as((beams, s, d))?.contiguous()?; // [n, s, d]
        let mut state = self.start_decoding(&encoder_output, None)?;

        let start = vec![generation.decoder_start_token_id];
        // Only the first beam is alive at the start, so the first step does not pick the same
        // token n times.
        let mut running: Vec<Beam> = (0..beams)
            .map(|b| Beam {
                sequence: start.clone(),
                score: if b == 0 { 0.0 } else { IMPOSSIBLE },
                log_probability: 0.0,
                finished: false,
            })
            .collect();
        let mut finished: Vec<Beam> = (0..beams)
            .map(|_| Beam {
                sequence: start.clone(),
                score: IMPOSSIBLE,
                log_probability: IMPOSSIBLE,
                finished: false,
            })
            .collect();
        let mut improvement_possible = true;
        let keep = 2 * beams;
        let mut cur_len = 1;
        while cur_len < max_length {
            let last: Vec<u32> = running
                .iter()
                .map(|b| {
                    *b.sequence
                        .last()
                        .unwrap_or(&generation.decoder_start_token_id)
                })
                .collect();
            let ids = Tensor::new(last.as_slice(), device)?.unsqueeze(1)?; // [n, 1]
            let logits = self.decode(&ids, &mut state, None)?; // [n, 1, vocab]
            let logits = logits.squeeze(1)?.to_vec2::<f32>()?;
            let vocab = logits.first().map_or(0, Vec::len);

            // Accumulated log-probabilities of every continuation of every beam, flattened.
            let mut accumulated = Vec::with_capacity(beams * vocab);
            let mut step_log_probs = Vec::with_capacity(beams * vocab);
            for (beam, row) in running.iter().zip(&logits) {
                let mut log_probs = log_softmax(row);
                generation.process(&mut log_probs, &beam.sequence);
                accumulated.extend(log_probs.iter().map(|&lp| lp + beam.score));
                step_log_probs.extend(log_probs);
            }
            let candidates = top_k(&accumulated, keep);
            let candidate = |i: usize| {
                let flat = candidates[i];
                let (beam, token) = (flat / vocab, (flat % vocab) as u32);
                let mut sequence = running[beam].sequence.clone();
                sequence.push(token);
                // Ends with `</s>`, or reaches the maximum length.
                let hits_stop = token == generation.eos_token_id || sequence.len() >= max_length;
                (
                    beam,
                    sequence,
                    accumulated[flat],
                    step_log_probs[flat],
                    hits_stop,
                )
            };
            let candidates: Vec<_> = (0..candidates.len()).map(candidate).collect();

            // Finished hypotheses: only candidates among the best `num_beams` may finish.
            let all_finished = finished.iter().all(|b| b.finished);
            let mut merged = std::mem::take(&mut finished);
            for (rank, (beam, sequence, score, _, hits_stop)) in candidates.iter().enumerate() {
                let generated = (cur_len + 1 - 1) as f32;
                let mut final_score = score / generated.powf(generation.length_penalty);
                if all_finished && generation.early_stopping == EarlyStopping::Yes {
                    final_score += IMPOSSIBLE;
                }
                if !improvement_possible {
                    final_score += IMPOSSIBLE;
                }
                let just_finished = *hits_stop && rank < beams;
                if !just_finished {
                    final_score += IMPOSSIBLE;
                }
                let log_probability = running[*beam].log_probability + candidates[rank].3;
                merged.push(Beam {
                    sequence: sequence.clone(),
                    score: final_score,
                    log_probability,
                    finished: just_finished,
                });
            }
            let scores: Vec<f32> = merged.iter().map(|b| b.score).collect();
            finished = top_k(&scores, beams)
                .into_iter()
                .map(|i| merged[i].clone())
                .collect();

            // Running beams: the best continuations that did not just stop.
            let running_scores: Vec<f32> = candidates
                .iter()
                .map(|c| c.2 + if c.4 { IMPOSSIBLE } else { 0.0 })
                .collect();
            let chosen = top_k(&running_scores, beams);
            let origins: Vec<u32> = chosen.iter().map(|&i| candidates[i].0 as u32).collect();
            running = chosen
                .iter()
                .map(|&i| {
                    let (beam, sequence, _, step, _) = &candidates[i];
                    Beam {
                        sequence: sequence.clone(),
                        score: running_scores[i],
                        log_probability: running[*beam].log_probability + step,
                        finished: false,
                    }
                })
                .collect();
            state.reorder(&origins)?;
            cur_len += 1;

            // Could a running beam still beat the worst finished one?
            let best_length = if generation.early_stopping == EarlyStopping::Never
                && generation.length_penalty > 0.0
            {
                max_length - 1
            } else {
                cur_len - 1
            };
            let best_running =
                running[0].score / (best_length as f32).powf(generation.length_penalty);
            let worst_finished = finished
                .iter()
                .map(|b| b.score)
                .fold(f32::INFINITY, f32::min);
            improvement_possible &= finished.iter().any(|b| {
                best_running
                    > if b.finished {
                        worst_finished
                    } else {
                        IMPOSSIBLE
                    }
            });
            let all_finished = finished.iter().all(|b| b.finished);
            let all_stopped = candidates.iter().all(|c| c.4);
            if !improvement_possible
                || (all_finished && generation.early_stopping == EarlyStopping::Yes)
                || all_stopped
            {
                break;
            }
        }
        Ok(finished
            .into_iter()
            .map(|b| Hypothesis {
                ids: b.sequence[1..].to_vec(),
                score: b.score,
                log_probability: b.log_probability,
            })
            .collect())
    }
}

impl super::DecoderState {
    /// Keeps beam `origins[i]`'s cache as beam `i`'s (beams are the batch dimension).
    fn reorder(&mut self, origins: &[u32]) -> Result<()> {
        let device = match self.layers.first() {
            Some(layer) => layer.cross_key.device().clone(),
            None => return Ok(()),
        };
        let index = Tensor::new(origins, &device)?;
        for layer in &mut self.layers {
            if let Some(key) = &layer.self_key {
                layer.self_key = Some(key.index_select(&index, 0)?);
            }
            if let Some(value) = &layer.self_value {
                layer.self_value = Some(value.index_select(&index, 0)?);
            }
        }
        Ok(())
    }
}
