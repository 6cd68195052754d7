//! Training the three kinds of tokenizer from a corpus.
//!
//! The pipelines (normalizer, pre-tokenizer, post-processor, decoder) are the library's own, set
//! up like GPT-2's and BERT's `tokenizer.json`, so the files load in `transformers`. The merges are
//! learned here rather than with `tokenizers`' trainers: those break ties between equally frequent
//! pairs by internal ids that depend on hash-map order, so the same corpus could give a different
//! vocabulary on each run. Ours breaks ties alphabetically and is deterministic.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::processors::sequence::Sequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer as HfTokenizer};

use super::explain::pre_tokenize;
use super::{ENDOFTEXT, byte_level, tokenizers_error};
use crate::error::{GlassboxError, Result};

/// BERT's special tokens, in id order.
const BERT_SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
const UNK: &str = "[UNK]";
const CONTINUATION: &str = "##";
/// Marian's special tokens, in id order.
const TRANSLATION_SPECIALS: [&str; 3] = ["<pad>", EOS, "<unk>"];
const EOS: &str = "</s>";

fn check_corpus(corpus: &str) -> Result<()> {
    if corpus.trim().is_empty() {
        return Err(GlassboxError::InvalidInput(
            "the training corpus is empty; a tokenizer needs some text to learn its vocabulary from"
                .into(),
        ));
    }
    Ok(())
}

/// Token → id map in the order given (first = id 0), skipping repeats.
fn numbered_vocab(tokens: impl IntoIterator<Item = String>) -> Vocab {
    let mut vocab = Vocab::default();
    for token in tokens {
        let next_id = vocab.len() as u32;
        vocab.entry(token).or_insert(next_id);
    }
    vocab
}

pub(super) fn train_char(corpus: &str) -> Result<HfTokenizer> {
    check_corpus(corpus)?;
    let characters: BTreeSet<char> = corpus.chars().collect();
    let vocab = numbered_vocab(
        std::iter::once(UNK.to_string()).chain(characters.iter().map(|c| c.to_string())),
    );
    // A BPE model with no merges is exactly "one token per character", and it is a model type
    // every Hugging Face loader knows.
    let model = BPE::builder()
        .vocab_and_merges(vocab, Vec::new())
        .unk_token(UNK.to_string())
        .build()
        .map_err(|e| tokenizers_error("cannot build the character model", e))?;
    let mut tokenizer = HfTokenizer::new(model);
    // Without a decoder, decoding joins tokens with spaces; Fuse concatenates them.
    tokenizer.with_decoder(Some(Fuse::new()));
    add_specials(&mut tokenizer, &[UNK])?;
    Ok(tokenizer)
}

/// GPT-2's pipeline around a BPE model: byte-level pre-tokenizer (GPT-2 regex, no prefix space),
/// byte-level post-processor and decoder, `<|endoftext|>` special.
fn gpt2_pipeline(model: BPE) -> Result<HfTokenizer> {
    let mut tokenizer = byte_level_pipeline(model);
    add_specials(&mut tokenizer, &[ENDOFTEXT])?;
    Ok(tokenizer)
}

fn byte_level_pipeline(model: BPE) -> HfTokenizer {
    let mut tokenizer = HfTokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_post_processor(Some(ByteLevel::new(true, false, true)));
    tokenizer.with_decoder(Some(ByteLevel::new(true, true, true)));
    tokenizer
}

/// The translation pipeline: GPT-2's byte-level BPE with Marian's specials (`<pad>` = 0, also the
/// decoder's start token; `</s>` = 1, appended to every sentence; `<unk>` = 2).
fn translation_pipeline(model: BPE) -> Result<HfTokenizer> {
    let mut tokenizer = byte_level_pipeline(model);
    add_specials(&mut tokenizer, &TRANSLATION_SPECIALS)?;
    let eos = tokenizer
        .token_to_id(EOS)
        .ok_or_else(|| GlassboxError::Tokenizer(format!("{EOS} is missing")))?;
    let template = TemplateProcessing::builder()
        .try_single(format!("$A:0 {EOS}:0"))
        .and_then(|builder| builder.try_pair(format!("$A:0 {EOS}:0 $B:1 {EOS}:1")))
        .map_err(|e| tokenizers_error("bad template", e))?
        .special_tokens(vec![(EOS, eos)])
        .build()
        .map_err(|e| tokenizers_error("bad template", e))?;
    // Byte-level first (it trims the offsets), then the template adds `</s>`.
    tokenizer.with_post_processor(Some(PostProcessorWrapper::Sequence(Sequence::new(vec![
        PostProcessorWrapper::ByteLevel(ByteLevel::new(true, false, true)),
        PostProcessorWrapper::Template(template),
    ]))));
    Ok(tokenizer)
}

pub(super) fn train_byte_bpe(corpus: &str, vocab_size: usize) -> Result<HfTokenizer> {
    let model = learn_byte_bpe(corpus, vocab_size, &[ENDOFTEXT])?;
    gpt2_pipeline(model)
}

/// A byte-level BPE for translation, learned from both sides of a parallel corpus (`corpus`
/// holds the source and target sentences), so one vocabulary and one embedding table serve the
/// encoder, the decoder and the LM head.
pub(super) fn train_translation_bpe(corpus: &str, vocab_size: usize) -> Result<HfTokenizer> {
    let model = learn_byte_bpe(corpus, vocab_size, &TRANSLATION_SPECIALS)?;
    translation_pipeline(model)
}

/// Byte-level BPE merges learned from `corpus`: the `specials` first, then the 256 byte symbols
/// in code-point order (so every input can be encoded), then merges up to `vocab_size` tokens.
fn learn_byte_bpe(corpus: &str, vocab_size: usize, specials: &[&str]) -> Result<BPE> {
    check_corpus(corpus)?;
    let word_counts = count_words(&gpt2_pipeline(BPE::default())?, corpus)?;
    let base: Vec<String> = specials
        .iter()
        .map(|s| s.to_string())
        .chain(byte_level::alphabet_sorted().iter().map(|c| c.to_string()))
        .collect();
    let words: Vec<(Vec<String>, u64)> = word_counts
        .into_iter()
        .map(|(word, count)| (word.chars().map(String::from).collect(), count))
        .collect();
    let learned = learn_merges(&words, &base, vocab_size, |left, right| {
        format!("{left}{right}")
    });
    let vocab = numbered_vocab(base.into_iter().chain(learned.new_tokens));
    BPE::builder()
        .vocab_and_merges(vocab, learned.merges)
        .build()
        .map_err(|e| tokenizers_error("cannot build the BPE model", e))
}

/// BERT's pipeline around a WordPiece model: lowercasing BertNormalizer, BertPreTokenizer,
/// `[CLS] A [SEP] (B [SEP])` template, WordPiece decoder.
fn bert_pipeline(model: WordPiece) -> Result<HfTokenizer> {
    let mut tokenizer = HfTokenizer::new(model);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
        .map_err(|e| tokenizers_error("cannot set the normalizer", e))?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_decoder(Some(WordPieceDecoder::new(CONTINUATION.to_string(), true)));
    add_specials(&mut tokenizer, &BERT_SPECIALS)?;

    let id = |token: &str| {
        tokenizer
            .token_to_id(token)
            .ok_or_else(|| GlassboxError::Tokenizer(format!("{token} is missing")))
    };
    let special_tokens = vec![("[CLS]", id("[CLS]")?), ("[SEP]", id("[SEP]")?)];
    let template = TemplateProcessing::builder()
        .try_single("[CLS]:0 $A:0 [SEP]:0")
        .and_then(|builder| builder.try_pair("[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1"))
        .map_err(|e| tokenizers_error("bad template", e))?
        .special_tokens(special_tokens)
        .build()
        .map_err(|e| tokenizers_error("bad template", e))?;
    tokenizer.with_post_processor(Some(template));
    Ok(tokenizer)
}

pub(super) fn train_wordpiece(corpus: &str, vocab_size: usize) -> Result<HfTokenizer> {
    check_corpus(corpus)?;
    let word_counts = count_words(&bert_pipeline(WordPiece::default())?, corpus)?;

    // Base vocabulary: the specials, then every character alone and as a continuation, so any
    // word made of seen characters can be spelled out instead of becoming [UNK].
    let alphabet: BTreeSet<char> = word_counts.keys().flat_map(|word| word.chars()).collect();
    let base: Vec<String> = BERT_SPECIALS
        .iter()
        .map(|s| s.to_string())
        .chain(alphabet.iter().map(|c| c.to_string()))
        .chain(alphabet.iter().map(|c| format!("{CONTINUATION}{c}")))
        .collect();
    let words: Vec<(Vec<String>, u64)> = word_counts
        .into_iter()
        .map(|(word, count)| {
            let symbols = word
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i == 0 {
                        c.to_string()
                    } else {
                        format!("{CONTINUATION}{c}")
                    }
                })
                .collect();
            (symbols, count)
        })
        .collect();
    let learned = learn_merges(&words, &base, vocab_size, |left, right| {
        format!(
            "{left}{}",
            right.strip_prefix(CONTINUATION).unwrap_or(right)
        )
    });

    let vocab = numbered_vocab(base.into_iter().chain(learned.new_tokens));
    let model = WordPiece::builder()
        .vocab(vocab)
        .unk_token(UNK.to_string())
        .continuing_subword_prefix(CONTINUATION.to_string())
        .max_input_chars_per_word(100)
        .build()
        .map_err(|e| tokenizers_error("cannot build the WordPiece model", e))?;
    bert_pipeline(model)
}

fn add_specials(tokenizer: &mut HfTokenizer, specials: &[&str]) -> Result<()> {
    let tokens = specials.iter().map(|s| AddedToken::from(*s, true));
    tokenizer
        .add_special_tokens(tokens)
        .map_err(|e| tokenizers_error("cannot add the special tokens", e))?;
    Ok(())
}

/// How often each word occurs, as the model will see it (normalized, pre-tokenized; special
/// tokens in the corpus are left out). Sorted, which keeps training deterministic.
fn count_words(pipeline: &HfTokenizer, corpus: &str) -> Result<BTreeMap<String, u64>> {
    let mut counts = BTreeMap::new();
    // Line by line keeps the pre-tokenizer's bookkeeping small; newlines stay in the text.
    for line in corpus.split_inclusive('\n') {
        for word in pre_tokenize(pipeline, line)? {
            if word.added_tokens.is_none() && !word.normalized.is_empty() {
                *counts.entry(word.normalized).or_insert(0) += 1;
            }
        }
    }
    if counts.is_empty() {
        return Err(GlassboxError::InvalidInput(
            "the training corpus has no words, only special tokens".into(),
        ));
    }
    Ok(counts)
}

struct LearnedMerges {
    /// (left, right) pairs in the order learned: the rank of a merge is its index.
    merges: Vec<(String, String)>,
    /// Tokens the merges created that were not in the base vocabulary, in order of creation.
    new_tokens: Vec<String>,
}

/// Learns BPE merges the classic way (Sennrich et al. 2016): count every adjacent pair of symbols
/// over all words (weighted by how often each word occurs), merge the most frequent pair
/// everywhere, repeat until the vocabulary has `vocab_size` tokens or no pair is left. Ties go to
/// the alphabetically first pair.
fn learn_merges(
    words: &[(Vec<String>, u64)],
    base_vocab: &[String],
    vocab_size: usize,
    join: impl Fn(&str, &str) -> String,
) -> LearnedMerges {
    // Work on integer symbol ids; `names[id]` is the symbol's text.
    let mut names: Vec<String> = Vec::new();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut intern = |name: &str, names: &mut Vec<String>| -> u32 {
        *ids.entry(name.to_string()).or_insert_with(|| {
            names.push(name.to_string());
            (names.len() - 1) as u32
        })
    };
    let mut word_symbols: Vec<Vec<u32>> = words
        .iter()
        .map(|(symbols, _)| symbols.iter().map(|s| intern(s, &mut names)).collect())
        .collect();
    let word_counts: Vec<u64> = words.iter().map(|(_, count)| *count).collect();

    // How often each pair occurs, and which words (may) contain it.
    type Pair = (u32, u32);
    let mut pair_counts: HashMap<Pair, u64> = HashMap::new();
    let mut pair_words: HashMap<Pair, BTreeSet<usize>> = HashMap::new();
    for (word, symbols) in word_symbols.iter().enumerate() {
        for pair in symbols.windows(2) {
            *pair_counts.entry((pair[0], pair[1])).or_insert(0) += word_counts[word];
            pair_words
                .entry((pair[0], pair[1]))
                .or_default()
                .insert(word);
        }
    }

    let mut vocab: HashSet<String> = base_vocab.iter().cloned().collect();
    let mut learned = LearnedMerges {
        merges: Vec::new(),
        new_tokens: Vec::new(),
    };
    while vocab.len() < vocab_size {
        // The most frequent pair; on a tie, the alphabetically first (reversed comparison,
        // because max_by keeps the greatest).
        let best = pair_counts
            .iter()
            .max_by(|(pair_a, count_a), (pair_b, count_b)| {
                let text_a = (&names[pair_a.0 as usize], &names[pair_a.1 as usize]);
                let text_b = (&names[pair_b.0 as usize], &names[pair_b.1 as usize]);
                count_a.cmp(count_b).then_with(|| text_b.cmp(&text_a))
            });
        let Some((&best, _)) = best else {
            break; // every word is a single token
        };

        let (left, right) = (
            names[best.0 as usize].clone(),
            names[best.1 as usize].clone(),
        );
        let merged = join(&left, &right);
        let merged_id = intern(&merged, &mut names);
        if vocab.insert(merged.clone()) {
            learned.new_tokens.push(merged);
        }
        learned.merges.push((left, right));

        // Re-count only the words that contain the pair: take their pairs out, merge, put back.
        for word in pair_words.remove(&best).unwrap_or_default() {
            let old = &word_symbols[word];
            let count = word_counts[word];
            for pair in old.windows(2) {
                let pair = (pair[0], pair[1]);
                if let Some(pair_count) = pair_counts.get_mut(&pair) {
                    *pair_count = pair_count.saturating_sub(count);
                    if *pair_count == 0 {
                        pair_counts.remove(&pair);
                    }
                }
            }
            let new = merge_pair(old, best, merged_id);
            for pair in new.windows(2) {
                let pair = (pair[0], pair[1]);
                *pair_counts.entry(pair).or_insert(0) += count;
                pair_words.entry(pair).or_default().insert(word);
            }
            word_symbols[word] = new;
        }
        // Every occurrence was merged; make sure no stale count survives.
        pair_counts.remove(&best);
    }
    learned
}

/// Replaces every occurrence of `pair` in `symbols`, left to right, by `merged`.
fn merge_pair(symbols: &[u32], pair: (u32, u32), merged: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(symbols.len());
    let mut i = 0;
    while i < symbols.len() {
        if i + 1 < symbols.len() && (symbols[i], symbols[i + 1]) == pair {
            out.push(merged);
            i += 2;
        } else {
            out.push(symbols[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols(word: &str) -> Vec<String> {
        word.chars().map(String::from).collect()
    }

    #[test]
    fn learns_most_frequent_pair_first() {
        let words = vec![(symbols("abab"), 3), (symbols("abc"), 1)];
        let base: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let learned = learn_merges(&words, &base, 100, |l, r| format!("{l}{r}"));
        assert_eq!(learned.merges[0], ("a".into(), "b".into()));
        assert_eq!(learned.new_tokens[0], "ab");
        // Stops when every word is one token.
        assert!(learned.new_tokens.contains(&"abab".to_string()));
        assert!(learned.new_tokens.contains(&"abc".to_string()));
    }

    #[test]
    fn merge_pair_is_left_to_right() {
        assert_eq!(merge_pair(&[1, 1, 1], (1, 1), 9), vec![9, 1]);
    }
}
