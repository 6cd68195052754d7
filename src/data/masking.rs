//! BERT's pretraining inputs: masked-LM corruption and next-sentence pairs.

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

/// Label for positions the loss ignores (PyTorch's `CrossEntropyLoss` default `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// Which tokens masked LM corrupts, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskingConfig {
    /// Fraction of (non-special) positions chosen for prediction.
    pub mask_prob: f32,
    /// Of the chosen, the fraction replaced by `[MASK]`.
    pub mask_token_fraction: f32,
    /// Of the chosen, the fraction replaced by a random token; the rest stay unchanged.
    pub random_token_fraction: f32,
}

impl Default for MaskingConfig {
    /// BERT's recipe: 15% of tokens; of those 80% `[MASK]`, 10% random, 10% unchanged.
    fn default() -> Self {
        MaskingConfig {
            mask_prob: 0.15,
            mask_token_fraction: 0.8,
            random_token_fraction: 0.1,
        }
    }
}

/// Corrupts `ids` for masked LM. Returns `(input_ids, labels)`, both `[len]`: labels hold the
/// original id at chosen positions and [`IGNORE_INDEX`] elsewhere.
///
/// Positions with a non-zero `special_tokens_mask` (`[CLS]`, `[SEP]`, padding) are never chosen.
/// At least one position is chosen when any non-special one exists, so a loss always exists.
pub fn mask_tokens(
    ids: &[u32],
    special_tokens_mask: &[u32],
    mask_id: u32,
    vocab_size: usize,
    config: &MaskingConfig,
    rng: &mut StdRng,
) -> (Vec<u32>, Vec<i64>) {
    debug_assert_eq!(ids.len(), special_tokens_mask.len());
    let is_special = |i: usize| special_tokens_mask.get(i).is_some_and(|&s| s != 0);
    let mask_prob = f64::from(config.mask_prob).clamp(0.0, 1.0);

    let mut chosen: Vec<usize> = (0..ids.len())
        .filter(|&i| !is_special(i) && rng.random_bool(mask_prob))
        .collect();
    if chosen.is_empty() {
        let candidates: Vec<usize> = (0..ids.len()).filter(|&i| !is_special(i)).collect();
        if let Some(&i) = candidates.choose(rng) {
            chosen.push(i);
        }
    }

    let mask_fraction = f64::from(config.mask_token_fraction).clamp(0.0, 1.0);
    // The random share is of what is left after masking: 0.1 / (1 - 0.8) = 0.5 for BERT.
    let random_of_rest = if mask_fraction < 1.0 {
        (f64::from(config.random_token_fraction) / (1.0 - mask_fraction)).clamp(0.0, 1.0)
    } else {
        0.0
    };

    let mut inputs = ids.to_vec();
    let mut labels = vec![IGNORE_INDEX; ids.len()];
    for i in chosen {
        labels[i] = i64::from(ids[i]);
        if rng.random_bool(mask_fraction) {
            inputs[i] = mask_id;
        } else if vocab_size > 0 && rng.random_bool(random_of_rest) {
            inputs[i] = rng.random_range(0..vocab_size) as u32;
        }
    }
    (inputs, labels)
}

/// A sentence pair for next-sentence prediction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NspPair {
    pub first: String,
    pub second: String,
    /// True when `second` really follows `first` in its document.
    pub is_next: bool,
}

/// `count` sentence pairs, half with the true next sentence and half with a random sentence from
/// another document (shuffled). Documents with fewer than two sentences only supply random
/// sentences. Empty when no document has two sentences.
pub fn make_nsp_pairs(documents: &[Vec<String>], count: usize, seed: u64) -> Vec<NspPair> {
    let mut rng = StdRng::seed_from_u64(seed);
    let usable: Vec<usize> = (0..documents.len())
        .filter(|&d| documents[d].len() >= 2)
        .collect();
    if usable.is_empty() {
        return Vec::new();
    }
    let mut pairs: Vec<NspPair> = (0..count)
        .map(|i| {
            let doc = usable[rng.random_range(0..usable.len())];
            let sentences = &documents[doc];
            let at = rng.random_range(0..sentences.len() - 1);
            let first = sentences[at].clone();
            let true_next = &sentences[at + 1];
            // Exactly alternate true/false, then shuffle, so the set is balanced at any size.
            let random = (i % 2 == 1)
                .then(|| random_other_sentence(documents, doc, &mut rng))
                .flatten();
            match random {
                Some(second) if second != *true_next => NspPair {
                    first,
                    second,
                    is_next: false,
                },
                // Only one document, or the random pick happened to be the true next sentence.
                _ => NspPair {
                    first,
                    second: true_next.clone(),
                    is_next: true,
                },
            }
        })
        .collect();
    pairs.shuffle(&mut rng);
    pairs
}

/// A random sentence from any document other than `exclude`, if there is one.
fn random_other_sentence(
    documents: &[Vec<String>],
    exclude: usize,
    rng: &mut StdRng,
) -> Option<String> {
    let others: Vec<usize> = (0..documents.len())
        .filter(|&d| d != exclude && !documents[d].is_empty())
        .collect();
    let doc = *others.choose(rng)?;
    documents[doc].choose(rng).cloned()
}
