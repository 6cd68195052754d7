//! Turning logits into a next-token distribution (temperature, top-k, top-p) and sampling text
//! from a GPT token by token.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::distr::{Distribution, weighted::WeightedIndex};
use rand::rngs::StdRng;

use crate::error::{GlassboxError, Result};
use crate::kernels::{threads_for_flops, with_threads};
use crate::model::checkpoint::LoadedModel;
use crate::model::params::{ArchSpec, forward_flops};
use crate::model::{Model, ModelInput};

/// How to pick the next token.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingSettings {
    /// 0 means greedy (always the most likely token).
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability adds up to p (1.0 = all).
    pub top_p: f32,
}

impl Default for SamplingSettings {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        }
    }
}

impl SamplingSettings {
    /// The rules every caller shares (command line, Predict view, lessons): temperature a
    /// number ≥ 0 (0 = greedy), top-p in (0, 1] (1 = no cut), top-k any count (0 = no cut).
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(GlassboxError::InvalidInput(message));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!(
                "temperature must be a number ≥ 0 (0 = always the most likely token), got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!(
                "top-p must be a number in (0, 1] (1 = keep every token), got {}",
                self.top_p
            ));
        }
        Ok(())
    }

    /// The nearest valid settings (for values from a saved state or a slider): NaN becomes the
    /// default, out-of-range values the nearest bound.
    pub fn clamped(self) -> Self {
        let defaults = Self::default();
        let temperature = if self.temperature.is_nan() {
            defaults.temperature
        } else {
            self.temperature.clamp(0.0, MAX_TEMPERATURE)
        };
        let top_p = if self.top_p.is_nan() {
            defaults.top_p
        } else {
            self.top_p.clamp(MIN_TOP_P, 1.0)
        };
        Self {
            temperature,
            top_k: self.top_k,
            top_p,
        }
    }
}

/// The highest temperature a slider or saved state is brought back to.
pub const MAX_TEMPERATURE: f32 = 5.0;
/// The smallest top-p a slider offers (top-p must be above 0).
pub const MIN_TOP_P: f32 = 0.01;

/// Softmax of `logits / temperature`, then top-k and top-p filtering, renormalised.
/// With temperature 0 all the mass goes to the arg-max.
pub fn next_token_distribution(logits: &[f32], settings: &SamplingSettings) -> Vec<f32> {
    let n = logits.len();
    if n == 0 {
        return Vec::new();
    }
    if settings.temperature <= 0.0 {
        let best = argmax(logits);
        let mut probs = vec![0.0; n];
        probs[best] = 1.0;
        return probs;
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<f32> = logits
        .iter()
        .map(|&l| ((l - max) / settings.temperature).exp())
        .collect();
    normalise(&mut probs);

    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let mut keep = n;
    if settings.top_k > 0 {
        keep = keep.min(settings.top_k);
    }
    if settings.top_p < 1.0 {
        let mut cumulative = 0.0;
        for (rank, &index) in order.iter().enumerate() {
            cumulative += probs[index];
            if cumulative >= settings.top_p {
                keep = keep.min(rank + 1);
                break;
            }
        }
    }
    for &index in &order[keep..] {
        probs[index] = 0.0;
    }
    normalise(&mut probs);
    probs
}

fn normalise(probs: &mut [f32]) {
    let sum: f32 = probs.iter().sum();
    if sum > 0.0 {
        probs.iter_mut().for_each(|p| *p /= sum);
    }
}

pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

/// The `k` largest entries as (index, value), largest first.
pub fn top_k(values: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut indexed: Vec<(usize, f32)> = values.iter().copied().enumerate().collect();
    indexed.sort_by(|a, b| b.1.total_cmp(&a.1));
    indexed.truncate(k);
    indexed
}

/// Samples one index from a probability vector.
pub fn sample(probs: &[f32], rng: &mut StdRng) -> usize {
    match WeightedIndex::new(probs) {
        Ok(dist) => dist.sample(rng),
        Err(_) => argmax(probs),
    }
}

/// Last-position logits of a GPT for `ids`.
pub fn next_token_logits(model: &Model, ids: &[u32], device: &Device) -> Result<Vec<f32>> {
    let Model::Gpt2(gpt) = model else {
        return Err(GlassboxError::InvalidInput(
            "next-token prediction needs a GPT model".into(),
        ));
    };
    // Keep the most recent tokens when the text is longer than the context.
    let context = gpt.config.n_positions;
    let window = &ids[ids.len().saturating_sub(context)..];
    if window.is_empty() {
        return Err(GlassboxError::InvalidInput("empty prompt".into()));
    }
    let input_ids = Tensor::new(window, device)?.unsqueeze(0)?; // [1, s]
    let c = &gpt.config;
    let flops = forward_flops(
        c.n_embd,
        c.n_layer,
        c.inner_dim(),
        c.vocab_size,
        window.len(),
    );
    // A small model's forward pass is quicker on one thread than handed around.
    let output = with_threads(threads_for_flops(flops), || {
        model.forward(ModelInput::new(&input_ids), None)
    })?;
    let logits = output
        .logits
        .ok_or_else(|| GlassboxError::InvalidInput("model has no LM head".into()))?;
    let last = logits.squeeze(0)?.get(window.len() - 1)?; // [vocab]
    Ok(last.to_vec1::<f32>()?)
}

/// Turns token ids, one at a time, into text pieces as soon as they are whole characters.
///
/// Byte-level BPE can split one character over several tokens ("é" is two bytes); decoding such
/// a token alone gives U+FFFD. The stream holds those back until the character is complete, and
/// decodes only a short window each time, so streaming n tokens costs O(n).
pub struct TextStream<'a> {
    tokenizer: &'a crate::tokenizer::Tokenizer,
    ids: Vec<u32>,
    /// Start of the window: ids before it have been turned into text.
    window_start: usize,
    /// ids in `window_start..emitted_end` are the part of the window already emitted.
    emitted_end: usize,
}

/// A character takes at most four bytes, so at most four byte tokens; past that a U+FFFD is a
/// real invalid sequence and is let through rather than held back for ever.
const MAX_HELD_TOKENS: usize = 8;

impl<'a> TextStream<'a> {
    pub fn new(tokenizer: &'a crate::tokenizer::Tokenizer) -> Self {
        Self {
            tokenizer,
            ids: Vec::new(),
            window_start: 0,
            emitted_end: 0,
        }
    }

    /// Adds one token; returns the new text, if a whole character (or more) is now complete.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        let before = self
            .tokenizer
            .decode(&self.ids[self.window_start..self.emitted_end], true)?;
        self.ids.push(id);
        let now = self
            .tokenizer
            .decode(&self.ids[self.window_start..], true)?;
        let held = self.ids.len() - self.emitted_end;
        if now.ends_with('\u{FFFD}') && held < MAX_HELD_TOKENS {
            return Ok(None);
        }
        let piece = match now.strip_prefix(before.as_str()) {
            Some(piece) => piece.to_string(),
            // The window decodes differently with the new token (rare): emit what is new.
            None => now.chars().skip(before.chars().count()).collect(),
        };
        self.window_start = self.emitted_end;
        self.emitted_end = self.ids.len();
        Ok((!piece.is_empty()).then_some(piece))
    }

    /// What is still held back (an incomplete character at the very end), as text.
    pub fn finish(&mut self) -> Result<Option<String>> {
        if self.emitted_end == self.ids.len() {
            return Ok(None);
        }
        let before = self
            .tokenizer
            .decode(&self.ids[self.window_start..self.emitted_end], true)?;
        let now = self
            .tokenizer
            .decode(&self.ids[self.window_start..], true)?;
        self.window_start = self.emitted_end;
        self.emitted_end = self.ids.len();
        let piece: String = match now.strip_prefix(before.as_str()) {
            Some(piece) => piece.to_string(),
            None => now.chars().skip(before.chars().count()).collect(),
        };
        Ok((!piece.is_empty()).then_some(piece))
    }
}

/// Generates up to `max_new_tokens` after `prompt`, calling `on_token` with each new piece of
/// text (whole characters only). Stops early at the end-of-text token. Returns the new text.
pub fn generate(
    loaded: &LoadedModel,
    prompt: &str,
    max_new_tokens: usize,
    settings: &SamplingSettings,
    seed: u64,
    mut on_token: impl FnMut(&str) + Send,
) -> Result<String> {
    settings.validate()?;
    let tokenizer = loaded.tokenizer()?;
    let mut ids = tokenizer.encode(prompt, false)?.ids;
    if ids.is_empty() {
        // An empty prompt starts from the end-of-text token, as GPT-2 does.
        let eos = tokenizer.eos_token().map(|(_, id)| id).ok_or_else(|| {
            GlassboxError::InvalidInput("empty prompt and no end-of-text token".into())
        })?;
        ids.push(eos);
    }
    let eos = tokenizer.eos_token().map(|(_, id)| id);
    // The whole run on the thread count its longest pass asks for, so a small model's tokens
    // are not handed from thread to thread one by one.
    let longest = (ids.len() + max_new_tokens).min(loaded.config.max_positions());
    let flops = ArchSpec::from(&loaded.config).forward_flops(longest);
    with_threads(threads_for_flops(flops), || {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut stream = TextStream::new(tokenizer);
        let mut text = String::new();
        for _ in 0..max_new_tokens {
            let logits = next_token_logits(&loaded.model, &ids, &loaded.device)?;
            let probs = next_token_distribution(&logits, settings);
            let next = sample(&probs, &mut rng) as u32;
            if Some(next) == eos {
                break;
            }
            ids.push(next);
            if let Some(piece) = stream.push(next)? {
                on_token(&piece);
                text.push_str(&piece);
            }
        }
        if let Some(piece) = stream.finish()? {
            on_token(&piece);
            text.push_str(&piece);
        }
        Ok(text)
    })
}
