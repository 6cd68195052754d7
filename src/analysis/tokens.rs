//! One token as every view shows it: the tokenizer's text, the readable form, its bytes, segment
//! and offsets.

use serde::{Deserialize, Serialize};

use crate::tokenizer::{Encoded, Tokenizer};

/// One token of an encoded text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// The token as the tokenizer writes it (`Ġcat`), shown on hover.
    pub text: String,
    /// The token as a reader sees it (`▁cat`): what every label shows
    /// ([`crate::tokenizer::Tokenizer::readable_token`]).
    #[serde(default)]
    pub shown: String,
    pub id: u32,
    /// The raw bytes the token stands for (byte-level BPE symbols mapped back).
    pub bytes: Vec<u8>,
    pub special: bool,
    pub type_id: u32,
    pub offsets: (usize, usize),
}

impl TokenInfo {
    /// One token of segment 0, outside any text (no offsets).
    pub fn new(tokenizer: &Tokenizer, text: String, id: u32, special: bool) -> TokenInfo {
        TokenInfo {
            bytes: tokenizer.token_bytes(&text),
            shown: tokenizer.readable_token(&text),
            text,
            id,
            special,
            type_id: 0,
            offsets: (0, 0),
        }
    }

    /// The tokens of an encoding.
    pub fn list(tokenizer: &Tokenizer, encoded: &Encoded) -> Vec<TokenInfo> {
        (0..encoded.ids.len())
            .map(|i| {
                let text = encoded.tokens.get(i).cloned().unwrap_or_default();
                let special = encoded.special_tokens_mask.get(i) == Some(&1);
                TokenInfo {
                    type_id: encoded.type_ids.get(i).copied().unwrap_or(0),
                    offsets: encoded.offsets.get(i).copied().unwrap_or((0, 0)),
                    ..TokenInfo::new(tokenizer, text, encoded.ids[i], special)
                }
            })
            .collect()
    }
}
