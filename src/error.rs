//! The library's error type. Every variant names what went wrong and, where there is one, the file.

use std::path::PathBuf;

pub type Result<T, E = GlassboxError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum GlassboxError {
    #[error("{path}: file not found")]
    MissingFile { path: PathBuf },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: not valid UTF-8 text (first bad byte at offset {offset})")]
    NotUtf8 { path: PathBuf, offset: usize },

    #[error("{path}: invalid config: {message}")]
    BadConfig { path: PathBuf, message: String },

    #[error("{path}: unknown architecture {found:?}; Glassbox knows {known}")]
    UnknownArchitecture {
        path: PathBuf,
        found: String,
        known: String,
    },

    #[error("{path}: corrupt or truncated safetensors file: {message}")]
    CorruptSafetensors { path: PathBuf, message: String },

    #[error("{path}: tensor `{name}` has shape {found:?}, but the config needs {expected:?}")]
    WrongShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("{path}: tensor `{name}` is missing (config.json and the weights disagree: {hint})")]
    MissingTensor {
        path: PathBuf,
        name: String,
        hint: String,
    },

    #[error("{path}: tensor `{name}` {problem}")]
    BadWeights {
        path: PathBuf,
        name: String,
        problem: String,
    },

    #[error(
        "{path}: is a pickled PyTorch file; Glassbox never executes pickles. Convert it to \
         model.safetensors (e.g. `transformers`' save_pretrained(..., safe_serialization=True))"
    )]
    PickleRefused { path: PathBuf },

    #[error(
        "model too large for memory: loading it needs about {needed_mib} MiB (its weights as \
         float32, plus the file while it is read), but only {available_mib} MiB are available \
         to Glassbox; close other programs, or choose a smaller model"
    )]
    TooLarge { needed_mib: u64, available_mib: u64 },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("hub: {0}")]
    Hub(String),

    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("training: {0}")]
    Training(String),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl GlassboxError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            GlassboxError::MissingFile { path }
        } else {
            GlassboxError::Io { path, source }
        }
    }
}
