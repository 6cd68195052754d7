//! Translation with an encoder–decoder (Marian): the source sentence through the source
//! tokenizer and the encoder, then greedy decoding, then the target tokenizer back to text.

use crate::error::{GlassboxError, Result};
use crate::model::checkpoint::LoadedTranslator;

/// A translation with the ids and pieces the decoder chose (ending with `</s>` when it stopped).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Translation {
    pub translation: String,
    pub ids: Vec<u32>,
    pub tokens: Vec<String>,
}

/// Translates `text` greedily, writing at most `max_new_tokens` target tokens.
pub fn translate(
    loaded: &LoadedTranslator,
    text: &str,
    max_new_tokens: usize,
) -> Result<Translation> {
    let source = loaded.source.encode(text)?;
    if source.ids.len() <= 1 {
        return Err(GlassboxError::InvalidInput(
            "the source text is empty: there is nothing to translate".into(),
        ));
    }
    let positions = loaded.config.max_position_embeddings;
    if source.ids.len() > positions {
        return Err(GlassboxError::InvalidInput(format!(
            "the source is {} tokens long; this model reads at most {positions}",
            source.ids.len()
        )));
    }
    let ids = loaded.model.greedy(&source.ids, max_new_tokens)?;
    let tokens = ids
        .iter()
        .map(|&id| {
            loaded
                .target
                .id_to_piece(id)
                .map_or_else(|| format!("<{id}>"), str::to_string)
        })
        .collect();
    Ok(Translation {
        translation: loaded.target.decode(&ids),
        ids,
        tokens,
    })
}
