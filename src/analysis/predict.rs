//! What the Predict view shows that is computed: the GPT's next-token logits with their tokens,
//! BERT's next-sentence probability and its mask token, and an extractive QA answer with the start
//! and end probabilities over the context. Run on the worker thread; the view only draws the
//! results, and the CLI and tests can call the same functions.

use candle_core::{Device, Tensor};

use super::tokens::TokenInfo;
use crate::error::{GlassboxError, Result};
use crate::generate::{next_token_logits, top_k};
use crate::inspect::{Predictions, inspect};
use crate::model::checkpoint::LoadedModel;
use crate::model::layers::softmax_last_dim;

/// The GPT's next-token logits after some ids, with what the view needs to label them.
#[derive(Debug, Clone)]
pub struct NextData {
    pub model_name: String,
    pub ids: Vec<u32>,
    /// One entry per id (prompt and generated).
    pub tokens: Vec<TokenInfo>,
    /// Last-position logits, one per vocabulary entry.
    pub logits: Vec<f32>,
    /// The most likely tokens by logit (the order no sampling setting changes): (id, token).
    pub order: Vec<(u32, String)>,
    /// The text of the generated ids (`ids[prompt_len..]`), decoded.
    pub continuation: String,
    pub eos: Option<u32>,
}

/// Extractive QA over a question and a context.
#[derive(Debug, Clone)]
pub struct QaResult {
    pub tokens: Vec<TokenInfo>,
    /// Softmax of the start / end logits over the context tokens (0 elsewhere).
    pub start_probs: Vec<f32>,
    pub end_probs: Vec<f32>,
    pub start: usize,
    pub end: usize,
    pub answer: String,
    pub score: f32,
}

/// Next-token logits for `ids` (or the tokenized `prompt`), labelled.
pub fn next_data(
    loaded: &LoadedModel,
    model_name: &str,
    prompt: &str,
    ids: Option<Vec<u32>>,
    prompt_len: usize,
) -> Result<NextData> {
    let tokenizer = loaded.tokenizer()?;
    let eos = tokenizer.eos_token().map(|(_, id)| id);
    let from_text = ids.is_none();
    let mut ids = match ids {
        Some(ids) => ids,
        None => tokenizer.encode(prompt, true)?.ids,
    };
    if ids.is_empty() {
        // An empty prompt starts from the end-of-text token, as GPT-2 does.
        ids.push(
            eos.ok_or_else(|| GlassboxError::InvalidInput("type some text to continue".into()))?,
        );
    }
    let logits = next_token_logits(&loaded.model, &ids, &loaded.device)?;
    let order = top_k(&logits, 50)
        .into_iter()
        .map(|(id, _)| {
            let id = id as u32;
            let token = tokenizer
                .id_to_token(id)
                .unwrap_or_else(|| format!("<{id}>"));
            (id, tokenizer.readable_token(&token))
        })
        .collect();
    let tokens = ids
        .iter()
        .map(|&id| {
            let text = tokenizer
                .id_to_token(id)
                .unwrap_or_else(|| format!("<{id}>"));
            TokenInfo::new(tokenizer, text, id, Some(id) == eos)
        })
        .collect();
    let start = if from_text {
        ids.len()
    } else {
        prompt_len.min(ids.len())
    };
    let continuation = tokenizer.decode_for_display(&ids[start..])?;
    Ok(NextData {
        model_name: model_name.to_string(),
        ids,
        tokens,
        logits,
        order,
        continuation,
        eos,
    })
}

/// The probability that `b` follows `a` under BERT's next-sentence head (`None` for a model
/// without one).
pub fn next_sentence_probability(loaded: &LoadedModel, a: &str, b: &str) -> Result<Option<f32>> {
    let inspection = inspect(loaded, a, Some(b), 1)?;
    Ok(match inspection.predictions {
        Predictions::FillMask { is_next_prob, .. } => is_next_prob,
        _ => None,
    })
}

/// The tokenizer's mask token (`[MASK]`), if it has one.
pub fn mask_token(loaded: &LoadedModel) -> Result<Option<String>> {
    Ok(loaded.tokenizer()?.mask_token().map(|(token, _)| token))
}

/// A token of the context (second segment) of a QA pair.
pub fn is_context(token: &TokenInfo) -> bool {
    token.type_id == 1 && !token.special
}

/// Start / end probabilities for `question` + `context`.
pub fn answer(loaded: &LoadedModel, question: &str, context: &str) -> Result<QaResult> {
    let inspection = inspect(loaded, question, Some(context), 1)?;
    let (Some(start), Some(end)) = (
        &inspection.output.start_logits,
        &inspection.output.end_logits,
    ) else {
        return Err(GlassboxError::InvalidInput(
            "this model has no question-answering head".into(),
        ));
    };
    let tokens = TokenInfo::list(loaded.tokenizer()?, &inspection.encoded);
    let context_mask: Vec<bool> = tokens.iter().map(is_context).collect();
    let over_context = |logits: &Tensor| -> Result<Vec<f32>> {
        let logits = logits.squeeze(0)?.to_vec1::<f32>()?;
        let kept: Vec<f32> = logits
            .iter()
            .zip(&context_mask)
            .filter(|(_, c)| **c)
            .map(|(l, _)| *l)
            .collect();
        if kept.is_empty() {
            return Ok(vec![0.0; logits.len()]);
        }
        let device = Device::Cpu;
        let probs = softmax_last_dim(&Tensor::new(kept.as_slice(), &device)?)?.to_vec1::<f32>()?;
        let mut it = probs.into_iter();
        Ok(context_mask
            .iter()
            .map(|&c| if c { it.next().unwrap_or(0.0) } else { 0.0 })
            .collect())
    };
    let start_probs = over_context(start)?;
    let end_probs = over_context(end)?;
    let (s, e, answer, score) = match inspection.predictions {
        Predictions::Span {
            start,
            end,
            text,
            score,
        } => (start, end, text, score),
        _ => (0, 0, String::new(), 0.0),
    };
    Ok(QaResult {
        tokens,
        start_probs,
        end_probs,
        start: s,
        end: e,
        answer,
        score,
    })
}
