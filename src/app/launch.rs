//! `glassbox open [DIR|REPO]... [--view NAME] [--text T]`: what the window should show first,
//! checked before it opens so that a typo is a message on the terminal, not a silent default.

use std::path::Path;

use super::data::ModelSource;
use crate::error::{GlassboxError, Result};
use crate::lessons::ViewName;
use crate::model::checkpoint::CONFIG_FILE;
use crate::model::config::ModelConfig;

/// What `glassbox open` asks of the window: models, a view, a text (each overrides the
/// environment and the remembered settings).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Launch {
    pub models: Vec<ModelSource>,
    pub view: Option<String>,
    pub text: Option<String>,
}

/// A Hub repository id: `name` or `owner/name`, letters, digits, `-`, `_`, `.`.
fn looks_like_repo_id(text: &str) -> bool {
    let parts: Vec<&str> = text.split('/').collect();
    parts.len() <= 2
        && parts.iter().all(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

impl Launch {
    /// Checks the command line: every folder is a model the app shows, every other name a Hub
    /// id, the view exists. The first model of each family takes the family's place; further
    /// ones are loaded beside it.
    pub fn from_args(models: &[String], view: Option<&str>, text: Option<&str>) -> Result<Self> {
        if let Some(view) = view {
            view.parse::<ViewName>()
                .map_err(GlassboxError::InvalidInput)?;
        }
        let mut sources = Vec::new();
        for name in models {
            let path = Path::new(name);
            if path.is_dir() {
                // Read now so a wrong config is refused on the command line, not in the window.
                ModelConfig::from_file(&path.join(CONFIG_FILE))?;
            } else if path.exists() || !looks_like_repo_id(name) {
                return Err(GlassboxError::InvalidInput(format!(
                    "{name:?} is neither a model folder (with config.json) nor a Hugging Face \
                     repository id such as gpt2 or owner/name"
                )));
            }
            sources.push(if path.is_dir() {
                ModelSource::Folder(path.to_path_buf())
            } else {
                ModelSource::Hub(name.clone())
            });
        }
        Ok(Self {
            models: sources,
            view: view.map(str::to_string),
            text: text.map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        assert!(looks_like_repo_id("gpt2"));
        assert!(looks_like_repo_id("Helsinki-NLP/opus-mt-en-fr"));
        assert!(!looks_like_repo_id("a/b/c"));
        assert!(!looks_like_repo_id("../model"));
        assert!(!looks_like_repo_id("my model"));
    }
}
