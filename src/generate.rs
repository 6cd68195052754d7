//! Turning logits into a next-token distribution (temperature, top-k, top-p) and sampling text
//! from a GPT token by token.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::distr::{Distribution, weighted::WeightedIndex};
use rand::rngs::StdRng;

use crate::error::{GlassboxError, Result};
use crate::model::checkpoint::LoadedModel;
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
    let output = model.forward(ModelInput::new(&input_ids), None)?;
    let logits = output
        .logits
        .ok_or_else(|| GlassboxError::InvalidInput("model has no LM head".into()))?;
    let last = logits.squeeze(0)?.get(window.len() - 1)?; // [vocab]
    Ok(last.to_vec1::<f32>()?)
}

/// Generates up to `max_new_tokens` after `prompt`, calling `on_token` with each new piece of
/// text. Stops early at the end-of-text token.
pub fn generate(
    loaded: &LoadedModel,
    prompt: &str,
    max_new_tokens: usize,
    settings: &SamplingSettings,
    seed: u64,
    mut on_token: impl FnMut(&str),
) -> Result<String> {
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
    let prompt_len = ids.len();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut text_so_far = String::new();
    for _ in 0..max_new_tokens {
        let logits = next_token_logits(&loaded.model, &ids, &loaded.device)?;
        let probs = next_token_distribution(&logits, settings);
        let next = sample(&probs, &mut rng) as u32;
        if Some(next) == eos {
            break;
        }
        ids.push(next);
        let text = tokenizer.decode(&ids[prompt_len..], true)?;
        if let Some(new_piece) = text.strip_prefix(&text_so_far) {
            on_token(new_piece);
        }
        text_so_far = text;
    }
    Ok(text_so_far)
}
