//! One text through one model with the trace on: tokens, ids, the head's top predictions, and
//! every intermediate tensor. The CLI's `inspect` and the app's views both start here.

use std::collections::BTreeMap;

use candle_core::Tensor;
use serde::Serialize;

use crate::error::{GlassboxError, Result};
use crate::generate::top_k;
use crate::kernels::{threads_for_flops, with_threads};
use crate::model::checkpoint::LoadedModel;
use crate::model::config::FamilyConfig;
use crate::model::layers::softmax_last_dim;
use crate::model::params::ArchSpec;
use crate::model::trace::Trace;
use crate::model::{ModelInput, ModelOutput};
use crate::tokenizer::Encoded;

/// A token and its probability.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TokenProb {
    /// As the tokenizer writes it (`Ġmouse`).
    pub token: String,
    /// As a reader sees it (`▁mouse`), for labels.
    pub shown: String,
    pub id: u32,
    pub prob: f32,
}

/// Fill-mask predictions at one `[MASK]` position.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MaskPrediction {
    pub position: usize,
    pub top: Vec<TokenProb>,
}

/// What the model's head says about the text.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub enum Predictions {
    /// GPT: the most likely next tokens after the last position.
    NextToken { top: Vec<TokenProb> },
    /// BERT / DistilBERT masked LM, with the probability that the second segment follows the
    /// first when the model has an NSP head.
    FillMask {
        masks: Vec<MaskPrediction>,
        is_next_prob: Option<f32>,
    },
    /// Sequence classification: every label with its probability.
    Classification { labels: Vec<(String, f32)> },
    /// Extractive QA: the best span (token indices, inclusive) and its text.
    Span {
        start: usize,
        end: usize,
        text: String,
        score: f32,
    },
    /// A bare encoder: no head to predict with.
    None,
}

/// One inspected text.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub encoded: Encoded,
    pub output: ModelOutput,
    pub trace: Trace,
    pub predictions: Predictions,
}

/// Tokenizes `text` (and `pair`), runs the traced forward pass, and reads the head.
pub fn inspect(
    loaded: &LoadedModel,
    text: &str,
    pair: Option<&str>,
    k: usize,
) -> Result<Inspection> {
    let tokenizer = loaded.tokenizer()?;
    if pair.is_some() && !loaded.config.family().reads_pairs() {
        // A GPT has no segments: the pair would be read as one text, and the prediction
        // labelled as coming after the first.
        return Err(GlassboxError::InvalidInput(format!(
            "a sentence pair needs an encoder (BERT-family) model; {} is a decoder-only {} \
             model, which reads one text: put both sentences in the text instead",
            loaded.name(),
            loaded.config.model_type()
        )));
    }
    let encoded = match pair {
        Some(second) => tokenizer.encode_pair(text, second)?,
        None => tokenizer.encode(text, true)?,
    };
    if encoded.ids.is_empty() {
        return Err(GlassboxError::InvalidInput(
            "the text gives no tokens".into(),
        ));
    }
    let max = loaded.config.max_positions();
    if encoded.ids.len() > max {
        return Err(GlassboxError::InvalidInput(format!(
            "the text is {} tokens long; this model reads at most {max}",
            encoded.ids.len()
        )));
    }
    let device = &loaded.device;
    let input_ids = Tensor::new(encoded.ids.as_slice(), device)?.unsqueeze(0)?; // [1, s]
    let token_type_ids = Tensor::new(encoded.type_ids.as_slice(), device)?.unsqueeze(0)?;
    let has_segments = matches!(loaded.config.family, FamilyConfig::Bert(_));
    let input = ModelInput {
        input_ids: &input_ids,
        token_type_ids: has_segments.then_some(&token_type_ids),
        padding: None,
        decoder_input_ids: None,
    };
    let mut trace = Trace::default();
    let flops = ArchSpec::from(&loaded.config).forward_flops(encoded.ids.len());
    // A small model's pass is quicker on one thread than handed around.
    let output = with_threads(threads_for_flops(flops), || {
        loaded.model.forward(input, Some(&mut trace))
    })?;
    let predictions = read_predictions(loaded, &encoded, &output, k)?;
    Ok(Inspection {
        encoded,
        output,
        trace,
        predictions,
    })
}

fn token_probs(loaded: &LoadedModel, probs: &[f32], k: usize) -> Result<Vec<TokenProb>> {
    let tokenizer = loaded.tokenizer()?;
    Ok(top_k(probs, k)
        .into_iter()
        .map(|(id, prob)| {
            let token = tokenizer
                .id_to_token(id as u32)
                .unwrap_or_else(|| format!("<{id}>"));
            TokenProb {
                shown: tokenizer.readable_token(&token),
                token,
                id: id as u32,
                prob,
            }
        })
        .collect())
}

fn read_predictions(
    loaded: &LoadedModel,
    encoded: &Encoded,
    output: &ModelOutput,
    k: usize,
) -> Result<Predictions> {
    let tokenizer = loaded.tokenizer()?;
    if let Some(class_logits) = &output.class_logits {
        let probs = softmax_last_dim(class_logits)?
            .squeeze(0)?
            .to_vec1::<f32>()?;
        let labels = match &loaded.config.family {
            FamilyConfig::Bert(c) => c.labels.clone(),
            _ => Vec::new(),
        };
        let labels = probs
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let name = labels
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("LABEL_{i}"));
                (name, p)
            })
            .collect();
        return Ok(Predictions::Classification { labels });
    }
    if let (Some(start), Some(end)) = (&output.start_logits, &output.end_logits) {
        let start = start.squeeze(0)?.to_vec1::<f32>()?;
        let end = end.squeeze(0)?.to_vec1::<f32>()?;
        let (best_start, best_end, score) = best_span(&start, &end, &encoded.type_ids, 30);
        let text = tokenizer.decode(&encoded.ids[best_start..=best_end], true)?;
        return Ok(Predictions::Span {
            start: best_start,
            end: best_end,
            text,
            score,
        });
    }
    let Some(logits) = &output.logits else {
        return Ok(Predictions::None);
    };
    let probs = softmax_last_dim(&logits.squeeze(0)?)?; // [s, vocab]
    if loaded.config.family().generates() {
        let last = probs.get(encoded.ids.len() - 1)?.to_vec1::<f32>()?;
        return Ok(Predictions::NextToken {
            top: token_probs(loaded, &last, k)?,
        });
    }
    let mask_id = tokenizer.mask_token().map(|(_, id)| id);
    let mut masks = Vec::new();
    for (position, &id) in encoded.ids.iter().enumerate() {
        if Some(id) == mask_id {
            let row = probs.get(position)?.to_vec1::<f32>()?;
            masks.push(MaskPrediction {
                position,
                top: token_probs(loaded, &row, k)?,
            });
        }
    }
    let is_next_prob = match &output.nsp_logits {
        Some(nsp) => Some(softmax_last_dim(nsp)?.squeeze(0)?.to_vec1::<f32>()?[0]),
        None => None,
    };
    Ok(Predictions::FillMask {
        masks,
        is_next_prob,
    })
}

/// The span (start <= end, at most `max_len` tokens, inside the second segment when there is
/// one) with the highest start + end logit.
pub fn best_span(
    start: &[f32],
    end: &[f32],
    type_ids: &[u32],
    max_len: usize,
) -> (usize, usize, f32) {
    let has_pair = type_ids.contains(&1);
    let in_context = |i: usize| !has_pair || type_ids.get(i) == Some(&1);
    let mut best = (0, 0, f32::NEG_INFINITY);
    for (i, &start_logit) in start.iter().enumerate() {
        if !in_context(i) {
            continue;
        }
        for (j, &end_logit) in end
            .iter()
            .enumerate()
            .take(start.len().min(i + max_len))
            .skip(i)
        {
            if !in_context(j) {
                continue;
            }
            let score = start_logit + end_logit;
            if score > best.2 {
                best = (i, j, score);
            }
        }
    }
    if best.2 == f32::NEG_INFINITY {
        best = (
            0,
            0,
            start.first().copied().unwrap_or(0.0) + end.first().copied().unwrap_or(0.0),
        );
    }
    best
}

/// The tensors of an inspection named as in the `transformers` reference fixtures (batch
/// dimension dropped): `input_ids`, `token_type_ids`, `hidden_states.{i}` `[s, h]`,
/// `attentions.{l}` `[heads, s, s]`, and `logits` / `prediction_logits` /
/// `seq_relationship_logits` / `start_logits` / `end_logits`.
pub fn reference_tensors(
    loaded: &LoadedModel,
    inspection: &Inspection,
) -> Result<BTreeMap<String, Tensor>> {
    let device = &loaded.device;
    let mut out = BTreeMap::new();
    let ids: Vec<i64> = inspection.encoded.ids.iter().map(|&i| i as i64).collect();
    out.insert("input_ids".into(), Tensor::new(ids.as_slice(), device)?);
    if matches!(loaded.config.family, FamilyConfig::Bert(_)) {
        let types: Vec<i64> = inspection
            .encoded
            .type_ids
            .iter()
            .map(|&i| i as i64)
            .collect();
        out.insert(
            "token_type_ids".into(),
            Tensor::new(types.as_slice(), device)?,
        );
    }
    for (i, hidden) in inspection.trace.hidden_states.iter().enumerate() {
        out.insert(format!("hidden_states.{i}"), hidden.squeeze(0)?);
    }
    for (l, probs) in inspection.trace.attentions().iter().enumerate() {
        out.insert(format!("attentions.{l}"), probs.squeeze(0)?);
    }
    let output = &inspection.output;
    let pretraining = output.nsp_logits.is_some();
    if let Some(logits) = &output.logits {
        let name = if pretraining {
            "prediction_logits"
        } else {
            "logits"
        };
        out.insert(name.into(), logits.squeeze(0)?);
    }
    if let Some(nsp) = &output.nsp_logits {
        out.insert("seq_relationship_logits".into(), nsp.squeeze(0)?);
    }
    if let Some(class_logits) = &output.class_logits {
        out.insert("logits".into(), class_logits.squeeze(0)?);
    }
    if let Some(start) = &output.start_logits {
        out.insert("start_logits".into(), start.squeeze(0)?);
    }
    if let Some(end) = &output.end_logits {
        out.insert("end_logits".into(), end.squeeze(0)?);
    }
    Ok(out)
}
