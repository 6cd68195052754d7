//! Held-out splits: shuffled for example sets, a clean cut for a running text (nanoGPT style).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Shuffles `items` with `seed` and splits off about `val_fraction` of them for validation.
/// Returns `(train, validation)`. With two or more items each side gets at least one, so a
/// validation loss always exists; with fewer, everything goes to training.
pub fn train_val_split<T: Clone>(items: &[T], val_fraction: f32, seed: u64) -> (Vec<T>, Vec<T>) {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));

    let val_count = if items.len() < 2 {
        0
    } else {
        let fraction = if val_fraction.is_finite() {
            val_fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let wanted = (items.len() as f64 * f64::from(fraction)).round() as usize;
        wanted.clamp(1, items.len() - 1)
    };
    let (val_order, train_order) = order.split_at(val_count);
    let gather = |indices: &[usize]| indices.iter().map(|&i| items[i].clone()).collect();
    (gather(train_order), gather(val_order))
}

/// Splits a corpus into `(train, validation)`: the first `1 - val_fraction` of its characters for
/// training and the rest for validation, as nanoGPT does. The cut falls on a character boundary.
pub fn split_text(text: &str, val_fraction: f32) -> (String, String) {
    let fraction = if val_fraction.is_finite() {
        val_fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let char_count = text.chars().count();
    let train_chars = ((char_count as f64) * (1.0 - f64::from(fraction))).round() as usize;
    let cut = text
        .char_indices()
        .nth(train_chars)
        .map_or(text.len(), |(byte, _)| byte);
    let (train, validation) = text.split_at(cut);
    (train.to_owned(), validation.to_owned())
}
