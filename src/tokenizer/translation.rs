//! The tokenizers of a translation model: Marian's two SentencePiece models (`source.spm`,
//! `target.spm`) over one `vocab.json`, as the Helsinki-NLP checkpoints ship them, or one
//! `tokenizer.json` for both sides, as Glassbox's own translators are trained.

use std::path::Path;

use super::Tokenizer;
use super::sentencepiece::SentencePiece;
use crate::error::{GlassboxError, Result};

/// Ids and their tokens, `</s>` last.
#[derive(Debug, Clone, PartialEq)]
pub struct SideEncoding {
    pub ids: Vec<u32>,
    pub tokens: Vec<String>,
}

#[derive(Debug)]
pub enum TranslationTokenizer {
    /// `source.spm` and `target.spm` with the shared `vocab.json` (`MarianTokenizer`).
    SentencePiece {
        source: Box<SentencePiece>,
        target: Box<SentencePiece>,
    },
    /// One tokenizer for both languages (`tokenizer.json`).
    Shared(Box<Tokenizer>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl TranslationTokenizer {
    /// Reads a Marian folder's tokenizers: `source.spm`/`target.spm`/`vocab.json` when it has
    /// them, else its `tokenizer.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let vocab = dir.join("vocab.json");
        if dir.join("source.spm").is_file() || dir.join("target.spm").is_file() {
            return Ok(Self::SentencePiece {
                source: Box::new(SentencePiece::from_files(&dir.join("source.spm"), &vocab)?),
                target: Box::new(SentencePiece::from_files(&dir.join("target.spm"), &vocab)?),
            });
        }
        let path = dir.join(crate::model::checkpoint::TOKENIZER_FILE);
        if !path.is_file() {
            return Err(GlassboxError::Tokenizer(format!(
                "{} has no tokenizer: a translation model needs source.spm, target.spm and \
                 vocab.json, or a tokenizer.json",
                dir.display()
            )));
        }
        let tokenizer = Tokenizer::from_file(&path)?;
        if tokenizer.eos_token().is_none() {
            return Err(GlassboxError::Tokenizer(format!(
                "{}: a translation tokenizer needs an end-of-sentence token (</s>)",
                path.display()
            )));
        }
        Ok(Self::Shared(Box::new(tokenizer)))
    }

    /// Encodes `text` for one side, `</s>` last (as `MarianTokenizer`).
    pub fn encode(&self, side: Side, text: &str) -> Result<SideEncoding> {
        match self {
            Self::SentencePiece { source, target } => {
                let spm = if side == Side::Source { source } else { target };
                let encoded = spm.encode(text)?;
                Ok(SideEncoding {
                    ids: encoded.ids,
                    tokens: encoded.tokens,
                })
            }
            Self::Shared(tokenizer) => {
                let encoded = tokenizer.encode(text, true)?;
                let (mut ids, mut tokens) = (encoded.ids, encoded.tokens);
                if let Some((eos, eos_id)) = tokenizer.eos_token()
                    && ids.last() != Some(&eos_id)
                {
                    ids.push(eos_id);
                    tokens.push(eos);
                }
                Ok(SideEncoding { ids, tokens })
            }
        }
    }

    /// Target ids back to text, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Self::SentencePiece { target, .. } => Ok(target.decode(ids)),
            Self::Shared(tokenizer) => Ok(tokenizer.decode(ids, true)?.trim().to_string()),
        }
    }

    /// The token of a target id, as stored (`ĠchassÃ©` for byte-level BPE).
    pub fn target_token(&self, id: u32) -> Option<String> {
        match self {
            Self::SentencePiece { target, .. } => target.id_to_piece(id).map(str::to_string),
            Self::Shared(tokenizer) => tokenizer.id_to_token(id),
        }
    }

    /// A token as a reader should see it (`▁chassé`): SentencePiece pieces as they are,
    /// byte-level BPE turned back into text.
    pub fn readable(&self, token: &str) -> String {
        match self {
            Self::SentencePiece { .. } => token.to_string(),
            Self::Shared(tokenizer) => tokenizer.readable_token(token),
        }
    }

    /// The most tokens either side can produce.
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::SentencePiece { source, target } => source.vocab_size().max(target.vocab_size()),
            Self::Shared(tokenizer) => tokenizer.vocab_size(),
        }
    }

    /// The file to name in a message about the vocabulary.
    pub fn vocab_path(&self, dir: &Path) -> std::path::PathBuf {
        match self {
            Self::SentencePiece { .. } => dir.join("vocab.json"),
            Self::Shared(_) => dir.join(crate::model::checkpoint::TOKENIZER_FILE),
        }
    }
}
