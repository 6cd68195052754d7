//! Hugging Face Hub downloads through `hf-hub`: cache first, progress while downloading, and a
//! clear error within seconds when there is no network.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use hf_hub::api::Progress;
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo};

use crate::error::{GlassboxError, Result};
use crate::model::checkpoint::{CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE};

/// Models the app lists for download.
pub const SUGGESTED_MODELS: [&str; 6] = [
    "gpt2",
    "distilgpt2",
    "bert-base-uncased",
    "distilbert-base-uncased",
    "prajjwal1/bert-tiny",
    "sentence-transformers/all-MiniLM-L6-v2",
];

const HUB_HOST: &str = "huggingface.co";
const REACH_TIMEOUT: Duration = Duration::from_secs(4);

/// What a download reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum HubEvent {
    /// Starting `file` of `size` bytes.
    Start { file: String, size: usize },
    /// `done` bytes of the current file so far.
    Progress {
        file: String,
        done: usize,
        size: usize,
    },
    /// `file` is in the cache.
    Finished { file: String },
}

/// The files a model folder needs; the tokenizer is optional.
const REQUIRED: [&str; 2] = [CONFIG_FILE, WEIGHTS_FILE];

/// The cached snapshot folder of `repo_id`, if config and weights are already there.
pub fn cached_model_dir(repo_id: &str) -> Option<PathBuf> {
    let cache = Cache::from_env().repo(Repo::model(repo_id.to_string()));
    let config = cache.get(CONFIG_FILE)?;
    cache.get(WEIGHTS_FILE)?;
    config.parent().map(PathBuf::from)
}

/// Can we open a TCP connection to the Hub within a few seconds? DNS and connect both run on a
/// helper thread so a dead network can never hang the caller.
pub fn check_reachable() -> Result<()> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let result = (|| -> std::io::Result<()> {
            let address = (HUB_HOST, 443)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| std::io::Error::other("no address"))?;
            TcpStream::connect_timeout(&address, REACH_TIMEOUT)?;
            Ok(())
        })();
        let _ = sender.send(result);
    });
    match receiver.recv_timeout(REACH_TIMEOUT + Duration::from_secs(1)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(offline_error(&e.to_string())),
        Err(_) => Err(offline_error("timed out")),
    }
}

fn offline_error(detail: &str) -> GlassboxError {
    GlassboxError::Hub(format!(
        "cannot reach {HUB_HOST} ({detail}). You seem to be offline: open a local model folder, \
         a cached model, or one of the shipped models instead"
    ))
}

struct Reporter<'a, F: FnMut(HubEvent)> {
    on_event: &'a mut F,
    file: String,
    size: usize,
    done: usize,
}

impl<F: FnMut(HubEvent)> Progress for Reporter<'_, F> {
    fn init(&mut self, size: usize, filename: &str) {
        self.file = filename.to_string();
        self.size = size;
        (self.on_event)(HubEvent::Start {
            file: self.file.clone(),
            size,
        });
    }
    fn update(&mut self, size: usize) {
        self.done += size;
        (self.on_event)(HubEvent::Progress {
            file: self.file.clone(),
            done: self.done,
            size: self.size,
        });
    }
    fn finish(&mut self) {
        (self.on_event)(HubEvent::Finished {
            file: self.file.clone(),
        });
    }
}

/// Fetches `repo_id` (config, weights, tokenizer) into the Hugging Face cache and returns the
/// snapshot folder. Files already cached are not downloaded again; `HF_HUB_OFFLINE=1` uses the
/// cache only.
pub fn fetch_model(repo_id: &str, mut on_event: impl FnMut(HubEvent)) -> Result<PathBuf> {
    let repo_id = repo_id.trim();
    if repo_id.is_empty() {
        return Err(GlassboxError::InvalidInput("empty model id".into()));
    }
    if let Some(dir) = cached_model_dir(repo_id) {
        return Ok(dir);
    }
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1") {
        return Err(GlassboxError::Hub(format!(
            "{repo_id} is not in the local cache and HF_HUB_OFFLINE=1 forbids downloading it"
        )));
    }
    check_reachable()?;
    let api = ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(|e| GlassboxError::Hub(e.to_string()))?;
    let repo = api.model(repo_id.to_string());
    let mut config_path = None;
    for file in REQUIRED.iter().chain([TOKENIZER_FILE].iter()) {
        let reporter = Reporter {
            on_event: &mut on_event,
            file: file.to_string(),
            size: 0,
            done: 0,
        };
        match repo.download_with_progress(file, reporter) {
            Ok(path) => {
                if *file == CONFIG_FILE {
                    config_path = Some(path);
                }
            }
            Err(e) if *file == TOKENIZER_FILE => {
                // Some repos ship only vocab.txt; the model still loads, without tokenizing.
                on_event(HubEvent::Finished {
                    file: format!("{file} (not available: {e})"),
                });
            }
            Err(e) if *file == WEIGHTS_FILE => {
                return Err(GlassboxError::Hub(format!(
                    "{repo_id}: no model.safetensors ({e}). Glassbox loads only safetensors; \
                     pickled pytorch_model.bin files are never executed"
                )));
            }
            Err(e) => return Err(GlassboxError::Hub(format!("{repo_id}/{file}: {e}"))),
        }
    }
    config_path
        .and_then(|p| p.parent().map(PathBuf::from))
        .ok_or_else(|| GlassboxError::Hub(format!("{repo_id}: download gave no folder")))
}
