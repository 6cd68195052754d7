//! Tokenizers: char-level, byte-level BPE (GPT-2 style), WordPiece (BERT style).
//!
//! A thin wrapper around Hugging Face `tokenizers`: encoding and decoding are done by the real
//! library, so ids match `transformers` exactly and every `tokenizer.json` we save loads there too.
//! On top of it this module adds what a learner wants to see: which kind of tokenizer it is, the
//! bytes a token stands for, and [`Tokenizer::explain`], which replays how each word was split
//! (BPE merges in rank order, WordPiece's longest matches).

mod byte_level;
mod explain;
pub mod sentencepiece;
mod train;
pub mod translation;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokenizers::Model;
use tokenizers::models::ModelWrapper;

use crate::error::{GlassboxError, Result};
use crate::util::{read_text, write_atomic};

pub use explain::{SplitStep, WordSplit};

/// GPT-2's one special token: marks the end of a document (and serves as BOS/EOS/padding).
pub const ENDOFTEXT: &str = "<|endoftext|>";

/// Which family of tokenizer a [`Tokenizer`] is, detected from its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenizerKind {
    /// One token per character (a BPE model with no merges and no pre-tokenizer).
    Char,
    /// GPT-2 style: bytes shown as printable symbols, merged by learned BPE merges.
    ByteBpe,
    /// BERT style: lowercased words split greedily into the longest known pieces (`##` = continuation).
    WordPiece,
}

impl fmt::Display for TokenizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenizerKind::Char => "character-level",
            TokenizerKind::ByteBpe => "byte-level BPE",
            TokenizerKind::WordPiece => "WordPiece",
        })
    }
}

/// The result of encoding text: one entry per token in every vector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub tokens: Vec<String>,
    /// Segment ids: 0 for the first text, 1 for the second of a pair (BERT's token_type_ids).
    pub type_ids: Vec<u32>,
    /// Byte range of each token in its input text; special tokens get (0, 0).
    pub offsets: Vec<(usize, usize)>,
    /// 1 for tokens added by the tokenizer ([CLS], [SEP], ...), 0 for tokens from the text.
    pub special_tokens_mask: Vec<u32>,
    /// For each token, the index of the word it came from in [`Tokenizer::explain`]'s result for
    /// its text (`None` for added special tokens). In a pair, indices restart for the second text.
    pub word_ids: Vec<Option<u32>>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn from_encoding(encoding: &tokenizers::Encoding) -> Self {
        Encoded {
            ids: encoding.get_ids().to_vec(),
            tokens: encoding.get_tokens().to_vec(),
            type_ids: encoding.get_type_ids().to_vec(),
            offsets: encoding.get_offsets().to_vec(),
            special_tokens_mask: encoding.get_special_tokens_mask().to_vec(),
            word_ids: encoding.get_word_ids().to_vec(),
        }
    }
}

/// A loaded or trained tokenizer. Cheap to clone (the merge table is shared).
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    kind: TokenizerKind,
    /// BPE merges in priority order (index = rank); empty for WordPiece and char tokenizers.
    merges: Arc<Vec<(String, String)>>,
    /// The same merges as a lookup table: (left, right) → rank. Used by `explain`.
    merge_ranks: Arc<HashMap<(String, String), usize>>,
}

impl fmt::Debug for Tokenizer {
    // The inner tokenizer's Debug prints the whole vocabulary; a summary is more useful.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("vocab_size", &self.vocab_size())
            .field("merges", &self.merges.len())
            .finish()
    }
}

/// Turns an error from the `tokenizers` crate into ours.
fn tokenizers_error(context: &str, error: impl fmt::Display) -> GlassboxError {
    GlassboxError::Tokenizer(format!("{context}: {error}"))
}

/// Bytes as text, where a token holds only part of a character (`é` is two bytes, and BPE may
/// split them): the valid UTF-8 as it is, each stray byte as `<C3>`.
pub fn readable_bytes(bytes: &[u8]) -> String {
    let mut text = String::new();
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        for byte in chunk.invalid() {
            text.push_str(&format!("<{byte:02X}>"));
        }
    }
    text
}

/// A piece of a word as a reader should see it, knowing only the tokenizer's kind (for views
/// that hold a word's split but not the tokenizer): byte-level symbols turned back into text
/// (`Ġcat` → `▁cat`), whitespace made visible, WordPiece pieces as they are.
pub fn readable_piece(kind: TokenizerKind, piece: &str) -> String {
    match kind {
        TokenizerKind::ByteBpe => {
            visible_whitespace(&readable_bytes(&byte_level::token_to_bytes(piece)))
        }
        TokenizerKind::Char => visible_whitespace(piece),
        TokenizerKind::WordPiece => piece.to_string(),
    }
}

/// Whitespace a reader can see, the one convention every view uses: a space as `▁`, a newline as
/// `↵`, a tab as `→`, a carriage return as `␍`.
pub fn visible_whitespace(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ' ' => '\u{2581}',
            '\n' => '↵',
            '\t' => '→',
            '\r' => '␍',
            c => c,
        })
        .collect()
}

impl Tokenizer {
    /// Loads a `tokenizer.json`. Padding and truncation stored in the file are switched off, so
    /// encoding never pads (the real all-MiniLM-L6-v2 file pads everything to 128).
    pub fn from_file(path: &Path) -> Result<Self> {
        let json = read_text(path)?;
        Self::from_json_bytes(json.as_bytes()).map_err(|error| match error {
            GlassboxError::Tokenizer(message) => {
                GlassboxError::Tokenizer(format!("{}: {message}", path.display()))
            }
            other => other,
        })
    }

    /// Parses the contents of a `tokenizer.json`.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| tokenizers_error("not a valid tokenizer.json", e))?;
        Self::from_tokenizers(inner)
    }

    /// Wraps an already built `tokenizers::Tokenizer` (padding and truncation switched off).
    pub fn from_tokenizers(mut inner: tokenizers::Tokenizer) -> Result<Self> {
        // We always want exactly the tokens of the text: the model code pads batches itself.
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| tokenizers_error("cannot switch truncation off", e))?;

        let merges = bpe_merges(inner.get_model())?;
        let kind = detect_kind(&inner, merges.len())?;
        let merge_ranks = merges
            .iter()
            .enumerate()
            .map(|(rank, pair)| (pair.clone(), rank))
            .collect();
        Ok(Tokenizer {
            inner,
            kind,
            merges: Arc::new(merges),
            merge_ranks: Arc::new(merge_ranks),
        })
    }

    /// The `tokenizer.json` text (pretty-printed, as `transformers` writes it).
    pub fn to_json_string(&self) -> Result<String> {
        self.inner
            .to_string(true)
            .map_err(|e| tokenizers_error("cannot serialize the tokenizer", e))
    }

    /// Saves as `tokenizer.json` atomically: a crash mid-save leaves the old file intact.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.to_json_string()?;
        write_atomic(path, json.as_bytes())
    }

    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// The underlying Hugging Face tokenizer, for anything this wrapper does not cover.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Encodes one text. With `add_special_tokens`, BERT-style tokenizers add [CLS] ... [SEP].
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Encoded> {
        let encoding = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| tokenizers_error("cannot encode the text", e))?;
        Ok(Encoded::from_encoding(&encoding))
    }

    /// Encodes two texts as one input, with special tokens: for BERT `[CLS] A [SEP] B [SEP]`, with
    /// type id 0 for the first part and 1 for the second.
    pub fn encode_pair(&self, first: &str, second: &str) -> Result<Encoded> {
        let encoding = self
            .inner
            .encode((first, second), true)
            .map_err(|e| tokenizers_error("cannot encode the text pair", e))?;
        Ok(Encoded::from_encoding(&encoding))
    }

    /// Turns ids back into text. Ids outside the vocabulary are skipped.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| tokenizers_error("cannot decode the ids", e))
    }

    /// Decodes for display: like [`Self::decode`] (special tokens skipped), but where byte-level
    /// tokens end in the middle of a character (a sampled stray byte, or the first half of `é`)
    /// the byte is written `<C3>` instead of the replacement character `�`, which no view font
    /// has.
    pub fn decode_for_display(&self, ids: &[u32]) -> Result<String> {
        if self.kind != TokenizerKind::ByteBpe {
            return self.decode(ids, true);
        }
        let special: std::collections::HashSet<u32> = self
            .inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, token)| token.special)
            .map(|(id, _)| *id)
            .collect();
        let mut bytes = Vec::new();
        for &id in ids.iter().filter(|id| !special.contains(id)) {
            if let Some(token) = self.id_to_token(id) {
                bytes.extend(self.token_bytes(&token));
            }
        }
        Ok(readable_bytes(&bytes))
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Number of distinct ids, including added tokens (the embedding table needs this many rows
    /// at least).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Every (id, token), sorted by id, including added tokens.
    pub fn vocab(&self) -> Vec<(u32, String)> {
        let mut by_id: BTreeMap<u32, String> = self
            .inner
            .get_model()
            .get_vocab()
            .into_iter()
            .map(|(token, id)| (id, token))
            .collect();
        // Added tokens win where they share an id with the model's vocabulary.
        for (id, added) in self.inner.get_added_tokens_decoder() {
            by_id.insert(id, added.content);
        }
        by_id.into_iter().collect()
    }

    /// BPE merges in priority order (first = merged first); empty for WordPiece and char.
    pub fn merges(&self) -> &[(String, String)] {
        &self.merges
    }

    /// A token as a reader should see it: byte-level BPE's stand-in symbols turned back into
    /// text (`ĠchassÃ©` → `▁chassé`, `Ċ` → `↵`), whitespace made visible as in
    /// [`visible_whitespace`] (`▁` for a space, as SentencePiece shows it). WordPiece's `##`
    /// pieces and special tokens are returned as they are.
    pub fn readable_token(&self, token: &str) -> String {
        if self.is_added_token(token) {
            return token.to_string();
        }
        readable_piece(self.kind, token)
    }

    /// Special and added tokens (`[CLS]`, `<|endoftext|>`): kept whole, never byte-mapped.
    fn is_added_token(&self, token: &str) -> bool {
        self.inner
            .get_added_vocabulary()
            .get_vocab()
            .contains_key(token)
    }

    /// The raw bytes a token stands for, for hover read-outs: byte-level BPE maps its stand-in
    /// symbols back (`Ġ` → space), WordPiece drops the `##` continuation prefix.
    pub fn token_bytes(&self, token: &str) -> Vec<u8> {
        if self.is_added_token(token) {
            return token.as_bytes().to_vec();
        }
        match (self.kind, self.inner.get_model()) {
            (TokenizerKind::ByteBpe, _) => byte_level::token_to_bytes(token),
            (TokenizerKind::WordPiece, ModelWrapper::WordPiece(wordpiece)) => token
                .strip_prefix(wordpiece.continuing_subword_prefix.as_str())
                .unwrap_or(token)
                .as_bytes()
                .to_vec(),
            _ => token.as_bytes().to_vec(),
        }
    }

    /// The first of `candidates` that is in the vocabulary, with its id.
    fn find_token(&self, candidates: &[&str]) -> Option<(String, u32)> {
        candidates
            .iter()
            .find_map(|token| Some((token.to_string(), self.token_to_id(token)?)))
    }

    /// The mask token of masked-LM tokenizers (`[MASK]`).
    pub fn mask_token(&self) -> Option<(String, u32)> {
        self.find_token(&["[MASK]", "<mask>"])
    }

    pub fn cls_token(&self) -> Option<(String, u32)> {
        self.find_token(&["[CLS]", "<s>"])
    }

    pub fn sep_token(&self) -> Option<(String, u32)> {
        self.find_token(&["[SEP]", "</s>"])
    }

    pub fn pad_token(&self) -> Option<(String, u32)> {
        self.find_token(&["[PAD]", "<pad>"])
    }

    /// The model's unknown token (what a piece outside the vocabulary becomes).
    pub fn unk_token(&self) -> Option<(String, u32)> {
        let from_model = match self.inner.get_model() {
            ModelWrapper::WordPiece(wordpiece) => Some(wordpiece.unk_token.clone()),
            ModelWrapper::BPE(bpe) => bpe.unk_token.clone(),
            ModelWrapper::WordLevel(wordlevel) => Some(wordlevel.unk_token.clone()),
            ModelWrapper::Unigram(_) => None,
        };
        from_model
            .and_then(|token| Some((token.clone(), self.token_to_id(&token)?)))
            .or_else(|| self.find_token(&["[UNK]", "<unk>"]))
    }

    /// End of text: `<|endoftext|>` for GPT-2 style tokenizers, `</s>` for others.
    pub fn eos_token(&self) -> Option<(String, u32)> {
        self.find_token(&[ENDOFTEXT, "</s>"])
    }

    /// A `tokenizer_config.json` to save beside `tokenizer.json` in a Hugging Face folder, so
    /// `AutoTokenizer` loads the file as is and knows the special tokens.
    ///
    /// A WordPiece tokenizer is declared as BERT's own class: the generic
    /// `PreTrainedTokenizerFast` returns no `token_type_ids`, so a sentence pair would reach a
    /// BERT in `transformers` as one segment and give other predictions than here.
    pub fn tokenizer_config(&self) -> serde_json::Value {
        let mut config = match self.kind {
            TokenizerKind::WordPiece => {
                let normalizer = serde_json::to_string(&self.inner.get_normalizer())
                    .unwrap_or_default()
                    .replace(' ', "");
                serde_json::json!({
                    "tokenizer_class": "BertTokenizer",
                    "do_lower_case": !normalizer.contains("\"lowercase\":false"),
                    "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
                    "clean_up_tokenization_spaces": false,
                })
            }
            TokenizerKind::Char | TokenizerKind::ByteBpe => serde_json::json!({
                "tokenizer_class": "PreTrainedTokenizerFast",
                "clean_up_tokenization_spaces": false,
            }),
        };
        let roles = [
            ("unk_token", self.unk_token()),
            ("pad_token", self.pad_token()),
            ("cls_token", self.cls_token()),
            ("sep_token", self.sep_token()),
            ("mask_token", self.mask_token()),
            ("eos_token", self.eos_token()),
            // GPT-2 uses its one special token for the start as well.
            ("bos_token", self.find_token(&[ENDOFTEXT, "<s>"])),
        ];
        for (role, token) in roles {
            if let Some((token, _)) = token {
                config[role] = serde_json::Value::String(token);
            }
        }
        config
    }

    /// Replays how `text` becomes tokens, word by word: the words the pre-tokenizer cut out, then
    /// for each the BPE merges (lowest rank first) or WordPiece's longest matches. The pieces are
    /// exactly the tokens `encode(text, false)` gives.
    pub fn explain(&self, text: &str) -> Result<Vec<WordSplit>> {
        explain::explain(self, text)
    }

    /// A character-level tokenizer: one token per distinct character of `corpus` (plus `[UNK]`
    /// at id 0 for characters never seen). No merges, no normalizer, no pre-tokenizer.
    pub fn train_char(corpus: &str) -> Result<Self> {
        Self::from_tokenizers(train::train_char(corpus)?)
    }

    /// A GPT-2 style byte-level BPE tokenizer: `<|endoftext|>` (id 0), the 256 byte symbols, then
    /// merges learned from `corpus` until `vocab_size` tokens (fewer if the corpus runs out of
    /// pairs; never fewer than the 257 base tokens). Deterministic.
    pub fn train_bpe(corpus: &str, vocab_size: usize) -> Result<Self> {
        Self::from_tokenizers(train::train_byte_bpe(corpus, vocab_size)?)
    }

    /// A byte-level BPE for translation, trained on both sides of a parallel corpus: Marian's
    /// specials `<pad>` (id 0, also the decoder's start), `</s>` (1, appended to every encoded
    /// sentence) and `<unk>` (2), the 256 byte symbols, then merges until `vocab_size` tokens.
    /// Deterministic.
    pub fn train_translation(corpus: &str, vocab_size: usize) -> Result<Self> {
        Self::from_tokenizers(train::train_translation_bpe(corpus, vocab_size)?)
    }

    /// A BERT style WordPiece tokenizer: lowercasing BertNormalizer, BertPreTokenizer,
    /// `[PAD]`=0 `[UNK]`=1 `[CLS]`=2 `[SEP]`=3 `[MASK]`=4, every character of the corpus alone
    /// and as `##` continuation, then pieces learned from `corpus` until `vocab_size` tokens.
    /// Encodes `[CLS] A [SEP]` and `[CLS] A [SEP] B [SEP]` (B with type id 1). Deterministic.
    pub fn train_wordpiece(corpus: &str, vocab_size: usize) -> Result<Self> {
        Self::from_tokenizers(train::train_wordpiece(corpus, vocab_size)?)
    }

    pub(crate) fn merge_rank(&self, left: &str, right: &str) -> Option<usize> {
        // The map is keyed by owned pairs; this lookup is on the explain path only.
        self.merge_ranks
            .get(&(left.to_string(), right.to_string()))
            .copied()
    }
}

/// The merges of a BPE model, in rank order, read from its JSON form (`model.merges`), which is a
/// list of `"a b"` strings in older files and of `["a", "b"]` pairs in newer ones.
fn bpe_merges(model: &ModelWrapper) -> Result<Vec<(String, String)>> {
    if !matches!(model, ModelWrapper::BPE(_)) {
        return Ok(Vec::new());
    }
    let json = serde_json::to_value(model)
        .map_err(|e| tokenizers_error("cannot read the BPE merges", e))?;
    parse_merges(json.get("merges").unwrap_or(&serde_json::Value::Null))
}

/// Parses `model.merges` in either of its two JSON forms.
pub(crate) fn parse_merges(merges: &serde_json::Value) -> Result<Vec<(String, String)>> {
    use serde_json::Value;
    let bad = |index: usize| {
        GlassboxError::Tokenizer(format!(
            "merge #{index} is neither \"left right\" nor [\"left\", \"right\"]"
        ))
    };
    let items = match merges {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => {
            return Err(GlassboxError::Tokenizer(
                "model.merges is not a list".into(),
            ));
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::String(line) => line
                .split_once(' ')
                .map(|(left, right)| (left.to_string(), right.to_string()))
                .ok_or_else(|| bad(index)),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(left), Value::String(right)] => Ok((left.clone(), right.clone())),
                _ => Err(bad(index)),
            },
            _ => Err(bad(index)),
        })
        .collect()
}

/// Decides the kind from the model and its pre-tokenizer.
fn detect_kind(inner: &tokenizers::Tokenizer, merge_count: usize) -> Result<TokenizerKind> {
    match inner.get_model() {
        ModelWrapper::WordPiece(_) => Ok(TokenizerKind::WordPiece),
        ModelWrapper::BPE(_) if uses_byte_level(inner) => Ok(TokenizerKind::ByteBpe),
        ModelWrapper::BPE(_) if merge_count == 0 => Ok(TokenizerKind::Char),
        ModelWrapper::BPE(_) => Err(GlassboxError::Tokenizer(
            "a BPE model without a byte-level pre-tokenizer (e.g. SentencePiece-style BPE) is not \
             supported; Glassbox knows char-level, byte-level BPE and WordPiece"
                .into(),
        )),
        ModelWrapper::WordLevel(_) => Err(unsupported_model("WordLevel")),
        ModelWrapper::Unigram(_) => Err(unsupported_model("Unigram")),
    }
}

fn unsupported_model(model_type: &str) -> GlassboxError {
    GlassboxError::Tokenizer(format!(
        "model type {model_type} is not supported; Glassbox knows char-level, byte-level BPE \
         and WordPiece"
    ))
}

/// Whether the pre-tokenizer (or normalizer), or any step of a sequence of them, is ByteLevel.
fn uses_byte_level(inner: &tokenizers::Tokenizer) -> bool {
    fn mentions_byte_level(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(fields) => {
                fields.get("type").and_then(|t| t.as_str()) == Some("ByteLevel")
                    || fields.values().any(mentions_byte_level)
            }
            serde_json::Value::Array(items) => items.iter().any(mentions_byte_level),
            _ => false,
        }
    }
    let pre_tokenizer = serde_json::to_value(inner.get_pre_tokenizer()).unwrap_or_default();
    let normalizer = serde_json::to_value(inner.get_normalizer()).unwrap_or_default();
    mentions_byte_level(&pre_tokenizer) || mentions_byte_level(&normalizer)
}
