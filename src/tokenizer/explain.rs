//! `explain`: replay, step by step, how a tokenizer splits each word.
//!
//! The text goes through the same front half as `encode` (added tokens cut out, normalizer,
//! pre-tokenizer), then each word is split again here, by a plain re-implementation of the model's
//! algorithm that records what it does. The pieces must come out exactly as `encode`'s tokens;
//! the tests check that on the reference fixtures.

use std::fmt;

use serde::Serialize;
use tokenizers::models::ModelWrapper;
use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::{Model, OffsetReferential, OffsetType, PreTokenizer};

use super::{Tokenizer, TokenizerKind, tokenizers_error};
use crate::error::{GlassboxError, Result};

/// How one word of the input became tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WordSplit {
    /// The word as written in the input text.
    pub word: String,
    /// Byte range of the word in the input text.
    pub offsets: (usize, usize),
    /// The word as the model saw it: normalized (e.g. lowercased) and, for byte-level BPE, in
    /// byte symbols (a leading space shows as `Ġ`).
    pub normalized: String,
    /// What the model did, in order.
    pub steps: Vec<SplitStep>,
    /// The resulting tokens.
    pub pieces: Vec<String>,
}

/// One step of splitting a word. `Display` gives a sentence for the UI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum SplitStep {
    /// The word is an added token (such as `[MASK]` or `<|endoftext|>`) and is kept whole.
    AddedToken { token: String },
    /// Char model: one character (`text`) becomes one token (`piece`, or the unknown token).
    Char { text: String, piece: String },
    /// BPE: the symbols the word starts as, before any merge.
    Symbols { symbols: Vec<String> },
    /// BPE: the adjacent pair with the lowest rank (earliest learned merge) is merged.
    Merge {
        rank: usize,
        left: String,
        right: String,
        symbols_after: Vec<String>,
    },
    /// BPE with `ignore_merges`: the whole word is in the vocabulary, so no merges run.
    WholeWord { piece: String },
    /// WordPiece: `piece` is the longest vocabulary entry starting at byte `start` of the word;
    /// `tried` are the longer candidates that are not in the vocabulary.
    Match {
        start: usize,
        end: usize,
        piece: String,
        tried: Vec<String>,
    },
    /// WordPiece: nothing in the vocabulary starts at byte `start`, so the whole word becomes
    /// the unknown token.
    Unknown {
        start: usize,
        tried: Vec<String>,
        unk: String,
    },
    /// WordPiece: the word is longer than the model allows, so it becomes the unknown token.
    TooLong {
        chars: usize,
        max_chars: usize,
        unk: String,
    },
}

impl fmt::Display for SplitStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitStep::AddedToken { token } => {
                write!(f, "{token:?} is a special token, so it stays one token")
            }
            SplitStep::Char { text, piece } if text == piece => {
                write!(f, "{text:?} is its own token")
            }
            SplitStep::Char { text, piece } => {
                write!(
                    f,
                    "{text:?} is not in the vocabulary, so it becomes {piece}"
                )
            }
            SplitStep::Symbols { symbols } => {
                write!(
                    f,
                    "start from {} symbols: {}",
                    symbols.len(),
                    symbols.join(" ")
                )
            }
            SplitStep::Merge {
                rank,
                left,
                right,
                symbols_after,
            } => write!(
                f,
                "merge {left:?} + {right:?} (merge #{rank}, the earliest learned pair here): {}",
                symbols_after.join(" ")
            ),
            SplitStep::WholeWord { piece } => {
                write!(
                    f,
                    "{piece:?} is in the vocabulary as a whole, so no merges are needed"
                )
            }
            SplitStep::Match {
                start,
                piece,
                tried,
                ..
            } => {
                write!(
                    f,
                    "{piece:?} is the longest vocabulary entry at byte {start}"
                )?;
                if !tried.is_empty() {
                    write!(f, " (not in the vocabulary: {})", quoted_list(tried))?;
                }
                Ok(())
            }
            SplitStep::Unknown { start, tried, unk } => write!(
                f,
                "nothing in the vocabulary matches at byte {start} (tried {}), so the whole word \
                 becomes {unk}",
                quoted_list(tried)
            ),
            SplitStep::TooLong {
                chars,
                max_chars,
                unk,
            } => write!(
                f,
                "the word has {chars} characters, more than the {max_chars} allowed, so it \
                 becomes {unk}"
            ),
        }
    }
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|item| format!("{item:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A word as cut out by the tokenizer's front half (added tokens, normalizer, pre-tokenizer).
pub(crate) struct PreTokenizedWord {
    /// The word as the model sees it.
    pub normalized: String,
    /// Byte range in the original text.
    pub offsets: (usize, usize),
    /// Set when the word is an added token; the model then never sees it.
    pub added_tokens: Option<Vec<String>>,
}

/// Runs exactly the steps `encode` runs before the model: cut out added tokens, normalize the
/// rest, pre-tokenize.
pub(crate) fn pre_tokenize(
    inner: &tokenizers::Tokenizer,
    text: &str,
) -> Result<Vec<PreTokenizedWord>> {
    let mut pretokenized = inner
        .get_added_vocabulary()
        .extract_and_normalize(inner.get_normalizer(), text);
    if let Some(pre_tokenizer) = inner.get_pre_tokenizer() {
        pre_tokenizer
            .pre_tokenize(&mut pretokenized)
            .map_err(|e| tokenizers_error("cannot pre-tokenize the text", e))?;
    }
    let words = pretokenized
        .get_splits(OffsetReferential::Original, OffsetType::Byte)
        .into_iter()
        .map(|(normalized, offsets, tokens)| PreTokenizedWord {
            normalized: normalized.to_string(),
            offsets,
            added_tokens: tokens
                .as_ref()
                .map(|tokens| tokens.iter().map(|t| t.value.clone()).collect()),
        })
        .collect();
    Ok(words)
}

pub(crate) fn explain(tokenizer: &Tokenizer, text: &str) -> Result<Vec<WordSplit>> {
    let words = pre_tokenize(tokenizer.inner(), text)?;
    words
        .into_iter()
        .map(|word| {
            let (steps, pieces) = match word.added_tokens {
                Some(added) => (
                    added
                        .iter()
                        .map(|token| SplitStep::AddedToken {
                            token: token.clone(),
                        })
                        .collect(),
                    added,
                ),
                None => split_word(tokenizer, &word.normalized)?,
            };
            let (start, end) = word.offsets;
            Ok(WordSplit {
                word: text.get(start..end).unwrap_or(&word.normalized).to_string(),
                offsets: word.offsets,
                normalized: word.normalized,
                steps,
                pieces,
            })
        })
        .collect()
}

fn split_word(tokenizer: &Tokenizer, word: &str) -> Result<(Vec<SplitStep>, Vec<String>)> {
    match tokenizer.inner().get_model() {
        ModelWrapper::BPE(bpe) => Ok(split_bpe(tokenizer, bpe, word)),
        ModelWrapper::WordPiece(wordpiece) => Ok(split_wordpiece(wordpiece, word)),
        _ => Err(GlassboxError::Tokenizer(
            "explain supports BPE and WordPiece models only".into(),
        )),
    }
}

/// One BPE symbol: the token string and the input text it covers.
struct Symbol {
    piece: String,
    text: String,
}

/// The symbols a BPE model starts a word from, exactly as `tokenizers`' BPE builds them: one per
/// character (with the model's continuation prefix / end-of-word suffix), byte fallback tokens
/// where configured, and the unknown token (fused if the model fuses) for characters outside the
/// vocabulary; characters with no unknown token are dropped, as the library does.
fn initial_bpe_symbols(bpe: &BPE, word: &str) -> Vec<Symbol> {
    let mut symbols: Vec<Symbol> = Vec::new();
    let mut pending_unk: Option<Symbol> = None;
    let char_count = word.chars().count();
    for (index, ch) in word.chars().enumerate() {
        let mut piece = ch.to_string();
        if index > 0
            && let Some(prefix) = &bpe.continuing_subword_prefix
        {
            piece.insert_str(0, prefix);
        }
        if index + 1 == char_count
            && let Some(suffix) = &bpe.end_of_word_suffix
        {
            piece.push_str(suffix);
        }

        if bpe.token_to_id(&piece).is_some() {
            symbols.extend(pending_unk.take());
            symbols.push(Symbol {
                piece,
                text: ch.to_string(),
            });
            continue;
        }
        if bpe.byte_fallback {
            // Like the library, byte fallback tokens go in without flushing a pending unknown.
            let byte_pieces: Vec<String> = piece.bytes().map(|b| format!("<0x{b:02X}>")).collect();
            if byte_pieces.iter().all(|p| bpe.token_to_id(p).is_some()) {
                symbols.extend(byte_pieces.into_iter().map(|piece| Symbol {
                    piece,
                    text: ch.to_string(),
                }));
                continue;
            }
        }
        if let Some(unk) = &bpe.unk_token {
            match pending_unk.as_mut() {
                Some(pending) if bpe.fuse_unk => pending.text.push(ch),
                _ => {
                    symbols.extend(pending_unk.take());
                    pending_unk = Some(Symbol {
                        piece: unk.clone(),
                        text: ch.to_string(),
                    });
                }
            }
        }
    }
    symbols.extend(pending_unk);
    symbols
}

/// BPE: start from the initial symbols, then keep merging the adjacent pair whose merge was
/// learned earliest (lowest rank; leftmost on a tie), until no adjacent pair has a merge.
fn split_bpe(tokenizer: &Tokenizer, bpe: &BPE, word: &str) -> (Vec<SplitStep>, Vec<String>) {
    if word.is_empty() {
        return (Vec::new(), Vec::new());
    }
    if bpe.ignore_merges && bpe.token_to_id(word).is_some() {
        let piece = word.to_string();
        return (
            vec![SplitStep::WholeWord {
                piece: piece.clone(),
            }],
            vec![piece],
        );
    }

    let initial = initial_bpe_symbols(bpe, word);
    if tokenizer.kind() == TokenizerKind::Char {
        let steps = initial
            .iter()
            .map(|symbol| SplitStep::Char {
                text: symbol.text.clone(),
                piece: symbol.piece.clone(),
            })
            .collect();
        return (steps, initial.into_iter().map(|s| s.piece).collect());
    }

    let mut symbols: Vec<String> = initial.into_iter().map(|s| s.piece).collect();
    let mut steps = vec![SplitStep::Symbols {
        symbols: symbols.clone(),
    }];
    loop {
        let best = symbols
            .windows(2)
            .enumerate()
            .filter_map(|(position, pair)| {
                Some((tokenizer.merge_rank(&pair[0], &pair[1])?, position))
            })
            .min();
        let Some((rank, position)) = best else {
            break;
        };
        let right = symbols.remove(position + 1);
        let left = symbols[position].clone();
        // A merged token drops the right part's continuation prefix ("a" + "##b" → "ab").
        let right_part = bpe
            .continuing_subword_prefix
            .as_deref()
            .and_then(|prefix| right.strip_prefix(prefix))
            .unwrap_or(&right);
        symbols[position] = format!("{left}{right_part}");
        steps.push(SplitStep::Merge {
            rank,
            left,
            right,
            symbols_after: symbols.clone(),
        });
    }
    (steps, symbols)
}

/// WordPiece: from the start of the word, take the longest vocabulary entry (continuations
/// carry the `##` prefix), and repeat from where it ended. If at some point nothing matches, the
/// whole word becomes the unknown token, as in BERT.
fn split_wordpiece(wordpiece: &WordPiece, word: &str) -> (Vec<SplitStep>, Vec<String>) {
    let unk = wordpiece.unk_token.clone();
    let chars = word.chars().count();
    if chars > wordpiece.max_input_chars_per_word {
        let step = SplitStep::TooLong {
            chars,
            max_chars: wordpiece.max_input_chars_per_word,
            unk: unk.clone(),
        };
        return (vec![step], vec![unk]);
    }

    let mut steps = Vec::new();
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < word.len() {
        // Candidate ends: every character boundary after `start`, longest candidate first.
        let mut ends: Vec<usize> = word[start..]
            .char_indices()
            .map(|(offset, ch)| start + offset + ch.len_utf8())
            .collect();
        ends.reverse();

        let mut tried = Vec::new();
        let mut found = None;
        for end in ends {
            let candidate = if start > 0 {
                format!(
                    "{}{}",
                    wordpiece.continuing_subword_prefix,
                    &word[start..end]
                )
            } else {
                word[start..end].to_string()
            };
            if wordpiece.token_to_id(&candidate).is_some() {
                found = Some((end, candidate));
                break;
            }
            tried.push(candidate);
        }

        let Some((end, piece)) = found else {
            steps.push(SplitStep::Unknown {
                start,
                tried,
                unk: unk.clone(),
            });
            return (steps, vec![unk]);
        };
        steps.push(SplitStep::Match {
            start,
            end,
            piece: piece.clone(),
            tried,
        });
        pieces.push(piece);
        start = end;
    }
    (steps, pieces)
}
