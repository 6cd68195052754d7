//! Turning token ids into training batches.

use rand::Rng;
use rand::rngs::StdRng;

use crate::error::{GlassboxError, Result};

/// A whole corpus as one long run of token ids, for causal LM training (nanoGPT's `get_batch`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenStream {
    pub ids: Vec<u32>,
}

/// `(inputs, targets)`, each `[batch][context]`; `targets[b][t] == inputs[b][t + 1]` in the stream.
pub type LmBatch = (Vec<Vec<u32>>, Vec<Vec<u32>>);

impl TokenStream {
    pub fn new(ids: Vec<u32>) -> Self {
        TokenStream { ids }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn check_fits(&self, batch: usize, context: usize) -> Result<()> {
        if batch == 0 || context == 0 {
            return Err(GlassboxError::InvalidInput(format!(
                "batch size and context length must be at least 1 (got batch {batch}, context {context})"
            )));
        }
        // Why +1: the target of the last input position is the token after it.
        if self.ids.len() < context + 1 {
            return Err(GlassboxError::InvalidInput(format!(
                "the text has {} tokens, but a context of {context} needs at least {} \
                 (use a longer text or a shorter context)",
                self.ids.len(),
                context + 1
            )));
        }
        Ok(())
    }

    /// `batch` windows at random offsets: inputs `[batch][context]` and the same windows shifted
    /// one token to the right as targets.
    pub fn random_batch(&self, batch: usize, context: usize, rng: &mut StdRng) -> Result<LmBatch> {
        self.check_fits(batch, context)?;
        let last_start = self.ids.len() - context - 1;
        let mut inputs = Vec::with_capacity(batch);
        let mut targets = Vec::with_capacity(batch);
        for _ in 0..batch {
            let start = rng.random_range(0..=last_start);
            inputs.push(self.ids[start..start + context].to_vec());
            targets.push(self.ids[start + 1..start + context + 1].to_vec());
        }
        Ok((inputs, targets))
    }

    /// Non-overlapping windows from the start of the stream, in order, grouped into batches of at
    /// most `batch` rows (the last may be smaller); at most `max_batches`. Deterministic, so a
    /// validation loss computed on them is comparable from one evaluation to the next.
    pub fn sequential_batches(
        &self,
        batch: usize,
        context: usize,
        max_batches: usize,
    ) -> Result<Vec<LmBatch>> {
        self.check_fits(batch, context)?;
        let window_count = (self.ids.len() - 1) / context;
        let starts: Vec<usize> = (0..window_count)
            .map(|w| w * context)
            .take(batch.saturating_mul(max_batches))
            .collect();
        Ok(starts
            .chunks(batch)
            .map(|chunk| {
                let inputs = chunk
                    .iter()
                    .map(|&s| self.ids[s..s + context].to_vec())
                    .collect();
                let targets = chunk
                    .iter()
                    .map(|&s| self.ids[s + 1..s + context + 1].to_vec())
                    .collect();
                (inputs, targets)
            })
            .collect())
    }
}

/// Right-pads rows to the longest one. Returns `(ids [b][max_len], attention [b][max_len])` with
/// attention 1 on real tokens and 0 on padding.
pub fn pad_batch(rows: &[Vec<u32>], pad_id: u32) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    let max_len = rows.iter().map(Vec::len).max().unwrap_or(0);
    rows.iter()
        .map(|row| {
            let padding = max_len - row.len();
            let mut ids = row.clone();
            ids.extend(std::iter::repeat_n(pad_id, padding));
            let mut attention = vec![1; row.len()];
            attention.extend(std::iter::repeat_n(0, padding));
            (ids, attention)
        })
        .unzip()
}
