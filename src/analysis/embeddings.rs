//! What the Embeddings view shows that is computed: the token-embedding table projected on its
//! first two principal components (PCA), and one word compared in two sentences layer by layer
//! (cosine similarity of its static and contextual vectors). A library module, so the CLI and
//! tests use the same numbers the view draws.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use serde::Serialize;

use crate::error::{GlassboxError, Result};
use crate::inspect::inspect;
use crate::model::checkpoint::LoadedModel;
use crate::tokenizer::Encoded;

/// Largest number of rows the PCA is fitted on (a vocabulary larger than this is sampled).
pub const PCA_FIT_ROWS: usize = 8192;

/// One token in the PCA plot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PcaPoint {
    pub id: u32,
    pub token: String,
    pub x: f32,
    pub y: f32,
    /// A token of the current text (drawn large and labelled).
    pub in_text: bool,
}

/// Token embeddings projected on their first two principal components.
#[derive(Debug, Clone, Serialize)]
pub struct PcaResult {
    pub model_name: String,
    pub points: Vec<PcaPoint>,
    /// Share of the variance along PC1 and PC2.
    pub explained: [f32; 2],
    /// How many embedding rows the components were fitted on.
    pub fitted_on: usize,
    pub vocab_rows: usize,
}

/// The same word in two sentences, through one model.
#[derive(Debug, Clone, Serialize)]
pub struct WordComparison {
    pub model_name: String,
    pub word: String,
    /// Cosine similarity of the word's vectors per hidden state: index 0 the embedding output
    /// (token + position (+ segment) embeddings), index L the last layer's output.
    pub cosines: Vec<f32>,
    /// Cosine of the bare token embeddings (the lookup, before positions).
    pub static_cosine: f32,
    /// The tokens the word became in each sentence (their vectors are averaged).
    pub pieces_a: Vec<String>,
    pub pieces_b: Vec<String>,
    pub positions_a: Vec<usize>,
    pub positions_b: Vec<usize>,
}

/// The tokens (indices into `encoded`) that cover the first whole-word occurrence of `word` in
/// `text` (ASCII case-insensitive); `None` when the word is not there.
pub fn word_token_indices(encoded: &Encoded, text: &str, word: &str) -> Option<Vec<usize>> {
    let word = word.trim();
    if word.is_empty() {
        return None;
    }
    let bytes = text.as_bytes();
    let is_word_byte = |b: u8| b.is_ascii_alphanumeric() || b >= 0x80;
    let (start, end) = (0..text.len()).find_map(|i| {
        let end = i + word.len();
        let candidate = text.get(i..end)?;
        let before_ok = i == 0 || !is_word_byte(bytes[i - 1]);
        let after_ok = end >= bytes.len() || !is_word_byte(bytes[end]);
        (candidate.eq_ignore_ascii_case(word) && before_ok && after_ok).then_some((i, end))
    })?;
    let indices: Vec<usize> = encoded
        .offsets
        .iter()
        .enumerate()
        .filter(|(i, (s, e))| {
            encoded.special_tokens_mask.get(*i) != Some(&1) && *s < end && *e > start && e > s
        })
        .map(|(i, _)| i)
        .collect();
    (!indices.is_empty()).then_some(indices)
}

/// Cosine similarity (in f64).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na * nb)) as f32
    }
}

/// The mean of the rows `indices` of a `[1, s, h]` (or `[s, h]`) tensor.
pub fn mean_rows(tensor: &Tensor, indices: &[usize]) -> Result<Vec<f32>> {
    let t = tensor.to_dtype(DType::F32)?;
    let t = if t.rank() == 3 { t.squeeze(0)? } else { t };
    let rows = t.to_vec2::<f32>()?;
    let h = rows.first().map_or(0, Vec::len);
    let mut mean = vec![0f32; h];
    let mut n = 0;
    for &i in indices {
        if let Some(row) = rows.get(i) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v;
            }
            n += 1;
        }
    }
    if n > 0 {
        mean.iter_mut().for_each(|m| *m /= n as f32);
    }
    Ok(mean)
}

/// The same word in two sentences through one model: cosine of its vectors after every layer.
/// Worker only.
pub fn compare_word(
    loaded: &LoadedModel,
    model_name: &str,
    word: &str,
    sentence_a: &str,
    sentence_b: &str,
) -> Result<WordComparison> {
    let a = inspect(loaded, sentence_a, None, 1)?;
    let b = inspect(loaded, sentence_b, None, 1)?;
    let ia = word_token_indices(&a.encoded, sentence_a, word).ok_or_else(|| {
        GlassboxError::InvalidInput(format!("{word:?} is not a word of sentence A"))
    })?;
    let ib = word_token_indices(&b.encoded, sentence_b, word).ok_or_else(|| {
        GlassboxError::InvalidInput(format!("{word:?} is not a word of sentence B"))
    })?;
    let mut cosines = Vec::new();
    for (ha, hb) in a.trace.hidden_states.iter().zip(&b.trace.hidden_states) {
        cosines.push(cosine(&mean_rows(ha, &ia)?, &mean_rows(hb, &ib)?));
    }
    let static_cosine = match (&a.trace.token_embeddings, &b.trace.token_embeddings) {
        (Some(ta), Some(tb)) => cosine(&mean_rows(ta, &ia)?, &mean_rows(tb, &ib)?),
        _ => f32::NAN,
    };
    let tokenizer = loaded.tokenizer()?;
    let pick = |e: &Encoded, idx: &[usize]| -> Vec<String> {
        idx.iter()
            .map(|&i| tokenizer.readable_token(e.tokens.get(i).map_or("", String::as_str)))
            .collect()
    };
    Ok(WordComparison {
        model_name: model_name.to_string(),
        word: word.to_string(),
        cosines,
        static_cosine,
        pieces_a: pick(&a.encoded, &ia),
        pieces_b: pick(&b.encoded, &ib),
        positions_a: ia,
        positions_b: ib,
    })
}

/// Whether a vocabulary entry is a special or placeholder token (left out of the sample).
fn is_special_like(token: &str) -> bool {
    (token.starts_with('[') && token.ends_with(']'))
        || (token.starts_with('<') && token.ends_with('>'))
}

/// `count` evenly spaced items of `items`.
fn evenly<T: Copy>(items: &[T], count: usize) -> Vec<T> {
    if count >= items.len() {
        return items.to_vec();
    }
    (0..count)
        .map(|i| items[i * items.len() / count.max(1)])
        .collect()
}

/// The leading eigenvector and eigenvalue of a symmetric matrix, by power iteration.
fn power_iteration(c: &[Vec<f64>]) -> (Vec<f64>, f64) {
    let n = c.len();
    let mut v: Vec<f64> = (0..n)
        .map(|i| 1.0 + (i as f64 * 0.618_033_988_75).fract())
        .collect();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nv = norm(&v).max(f64::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= nv);
    for _ in 0..1000 {
        let w: Vec<f64> = c
            .iter()
            .map(|row| row.iter().zip(&v).map(|(a, b)| a * b).sum())
            .collect();
        let nw = norm(&w);
        if nw == 0.0 {
            break;
        }
        let next: Vec<f64> = w.iter().map(|x| x / nw).collect();
        let change: f64 = next.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum();
        v = next;
        if change < 1e-10 {
            break;
        }
    }
    // A fixed sign: the largest component positive.
    if let Some(big) = v.iter().copied().max_by(|a, b| a.abs().total_cmp(&b.abs()))
        && big < 0.0
    {
        v.iter_mut().for_each(|x| *x = -*x);
    }
    let cv: Vec<f64> = c
        .iter()
        .map(|row| row.iter().zip(&v).map(|(a, b)| a * b).sum())
        .collect();
    let lambda = v.iter().zip(&cv).map(|(a, b)| a * b).sum();
    (v, lambda)
}

/// PCA of the token embedding table (fitted on the whole table, or on [`PCA_FIT_ROWS`] evenly
/// spaced rows of a larger one), with the current text's tokens and `sample` vocabulary tokens
/// projected on the first two components. Worker only.
pub fn pca_of_embeddings(
    loaded: &LoadedModel,
    model_name: &str,
    text: &str,
    sample: usize,
) -> Result<PcaResult> {
    let tokenizer = loaded.tokenizer()?;
    let table = loaded.model.token_embedding_matrix();
    let rows = table.dim(0)?;
    let device = table.device();
    let mut text_ids: Vec<u32> = Vec::new();
    for id in tokenizer.encode(text, true)?.ids {
        if (id as usize) < rows && !text_ids.contains(&id) {
            text_ids.push(id);
        }
    }
    let vocab: Vec<(u32, String)> = tokenizer
        .vocab()
        .into_iter()
        .filter(|(id, _)| (*id as usize) < rows)
        .collect();
    let names: BTreeMap<u32, String> = vocab
        .iter()
        .map(|(id, token)| (*id, tokenizer.readable_token(token)))
        .collect();
    let candidates: Vec<u32> = vocab
        .iter()
        .filter(|(id, t)| !is_special_like(t) && !text_ids.contains(id))
        .map(|(id, _)| *id)
        .collect();
    let shown_sample = evenly(&candidates, sample);
    let mut fit_ids: Vec<u32> = if rows <= PCA_FIT_ROWS {
        (0..rows as u32).collect()
    } else {
        evenly(&candidates, PCA_FIT_ROWS)
    };
    for &id in text_ids.iter().chain(&shown_sample) {
        if rows > PCA_FIT_ROWS && !fit_ids.contains(&id) {
            fit_ids.push(id);
        }
    }
    let n = fit_ids.len();
    if n < 3 {
        return Err(GlassboxError::InvalidInput(
            "too few embedding rows for a PCA".into(),
        ));
    }
    let x = table
        .index_select(&Tensor::new(fit_ids.as_slice(), device)?, 0)?
        .to_dtype(DType::F32)?;
    let mean = x.mean_keepdim(0)?; // [1, h]
    let centred = x.broadcast_sub(&mean)?;
    let cov = (centred.t()?.contiguous()?.matmul(&centred)? / (n as f64 - 1.0))?;
    let cov: Vec<Vec<f64>> = cov
        .to_vec2::<f32>()?
        .into_iter()
        .map(|r| r.into_iter().map(f64::from).collect())
        .collect();
    let total: f64 = (0..cov.len())
        .map(|i| cov[i][i])
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    let (v1, l1) = power_iteration(&cov);
    let deflated: Vec<Vec<f64>> = cov
        .iter()
        .enumerate()
        .map(|(i, row)| {
            row.iter()
                .enumerate()
                .map(|(j, c)| c - l1 * v1[i] * v1[j])
                .collect()
        })
        .collect();
    let (v2, l2) = power_iteration(&deflated);

    let shown: Vec<(u32, bool)> = text_ids
        .iter()
        .map(|&id| (id, true))
        .chain(shown_sample.iter().map(|&id| (id, false)))
        .collect();
    let shown_ids: Vec<u32> = shown.iter().map(|(id, _)| *id).collect();
    let mean = mean.squeeze(0)?.to_vec1::<f32>()?;
    let vectors = table
        .index_select(&Tensor::new(shown_ids.as_slice(), device)?, 0)?
        .to_dtype(DType::F32)?
        .to_vec2::<f32>()?;
    let points = shown
        .iter()
        .zip(vectors)
        .map(|((id, in_text), row)| {
            let centred: Vec<f64> = row.iter().zip(&mean).map(|(a, m)| (a - m) as f64).collect();
            let project = |v: &[f64]| centred.iter().zip(v).map(|(a, b)| a * b).sum::<f64>();
            PcaPoint {
                id: *id,
                token: names.get(id).cloned().unwrap_or_else(|| format!("<{id}>")),
                x: project(&v1) as f32,
                y: project(&v2) as f32,
                in_text: *in_text,
            }
        })
        .collect();
    Ok(PcaResult {
        model_name: model_name.to_string(),
        points,
        explained: [(l1 / total) as f32, (l2 / total) as f32],
        fitted_on: n,
        vocab_rows: rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_parallel_orthogonal_and_zero_vectors() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }

    #[test]
    fn power_iteration_finds_the_leading_eigenvector() {
        // [[3, 1], [1, 3]]: eigenvalue 4 along (1, 1) / √2.
        let (vector, value) = power_iteration(&[vec![3.0, 1.0], vec![1.0, 3.0]]);
        assert!((value - 4.0).abs() < 1e-9, "{value}");
        let half = std::f64::consts::FRAC_1_SQRT_2;
        assert!((vector[0] - half).abs() < 1e-6 && (vector[1] - half).abs() < 1e-6);
    }
}
