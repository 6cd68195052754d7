//! Hugging Face Hub downloads: cache first, progress while downloading, a timeout on every
//! network step, cancellation, and a clear error within seconds when there is no network.
//!
//! Files land in the standard Hugging Face cache (`HF_HOME`, laid out by `hf-hub`'s [`Cache`]:
//! `blobs/`, `snapshots/<commit>/`, `refs/main`), so `transformers` and Glassbox share it.
//! `HF_ENDPOINT` (a mirror) is honoured by every request, the reachability check included.
//! `HF_HUB_DOWNLOAD_TIMEOUT` (seconds) sets how long a silent server is waited for.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

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

/// The Hub, when `HF_ENDPOINT` names no mirror.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// What a download reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum HubEvent {
    /// Starting `file` of `size` bytes (0 when the server does not say).
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

/// How long each network step may take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// Resolving the host and opening the connection.
    pub connect: Duration,
    /// From sending a request to the response's headers, and between any two reads of a
    /// body: a server that goes silent fails after this long, however large the file.
    pub silence: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            silence: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    /// The defaults, with `HF_HUB_DOWNLOAD_TIMEOUT` (seconds, as `huggingface_hub` reads it)
    /// for both when it is set.
    pub fn from_env() -> Self {
        let mut timeouts = Self::default();
        if let Some(secs) = std::env::var("HF_HUB_DOWNLOAD_TIMEOUT")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
        {
            timeouts.connect = Duration::from_secs_f64(secs);
            timeouts.silence = Duration::from_secs_f64(secs);
        }
        timeouts
    }
}

/// The Hub's address: `HF_ENDPOINT` if set (a mirror), else [`DEFAULT_ENDPOINT`].
pub fn endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
}

/// The files a model folder needs; the tokenizer is optional.
const REQUIRED: [&str; 2] = [CONFIG_FILE, WEIGHTS_FILE];

/// What an encoder–decoder (Marian) folder needs besides config and weights: its two
/// SentencePiece models and the shared vocabulary.
const TRANSLATION_FILES: [&str; 3] = ["source.spm", "target.spm", "vocab.json"];

/// The files a repository needs beyond config and weights, read from its `config.json`:
/// (required, optional).
fn family_files(config: &Path) -> (&'static [&'static str], &'static [&'static str]) {
    let model_type = std::fs::read_to_string(config)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|value| value["model_type"].as_str().map(str::to_string));
    match model_type.as_deref() {
        // Marian ships no tokenizer.json; generation_config.json holds num_beams, max_length.
        Some("marian") => (&TRANSLATION_FILES, &["generation_config.json"]),
        _ => (&[], &[TOKENIZER_FILE]),
    }
}

/// The cached snapshot folder of `repo_id`, if config, weights and the family's files are
/// already there.
pub fn cached_model_dir(repo_id: &str) -> Option<PathBuf> {
    let cache = Cache::from_env().repo(Repo::model(repo_id.to_string()));
    let config = cache.get(CONFIG_FILE)?;
    cache.get(WEIGHTS_FILE)?;
    let (required, _) = family_files(&config);
    for file in required {
        cache.get(file)?;
    }
    config.parent().map(PathBuf::from)
}

/// Host and port of an endpoint URL (`https://host[:port]/...`, IPv6 in brackets).
fn host_and_port(endpoint: &str) -> Result<(String, u16)> {
    let bad = || GlassboxError::Hub(format!("HF_ENDPOINT {endpoint:?} is not an http(s) URL"));
    let (rest, default_port) = if let Some(rest) = endpoint.strip_prefix("https://") {
        (rest, 443)
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        (rest, 80)
    } else {
        return Err(bad());
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default(); // user:pass@host
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        (host.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| bad())?,
        None => default_port,
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

/// Can we open a TCP connection to the endpoint (`HF_ENDPOINT` or the Hub) in time? DNS and
/// connect run on a helper thread so a dead network can never hang the caller.
pub fn check_reachable() -> Result<()> {
    check_reachable_within(&endpoint(), Timeouts::from_env().connect)
}

fn check_reachable_within(endpoint: &str, timeout: Duration) -> Result<()> {
    let (host, port) = host_and_port(endpoint)?;
    let (sender, receiver) = mpsc::channel();
    let target = (host.clone(), port);
    std::thread::spawn(move || {
        let result = (|| -> std::io::Result<()> {
            let address = target
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| std::io::Error::other("no address"))?;
            TcpStream::connect_timeout(&address, timeout)?;
            Ok(())
        })();
        let _ = sender.send(result);
    });
    match receiver.recv_timeout(timeout + Duration::from_secs(1)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(offline_error(endpoint, &e.to_string())),
        Err(_) => Err(offline_error(endpoint, "timed out")),
    }
}

fn offline_error(endpoint: &str, detail: &str) -> GlassboxError {
    GlassboxError::Hub(format!(
        "cannot reach {endpoint} ({detail}). You seem to be offline: open a local model folder, \
         a cached model, or one of the shipped models instead"
    ))
}

/// How a download is run: where from, into which cache, its timeouts, and a question asked
/// between reads that stops it.
pub struct FetchOptions<'a> {
    /// The Hub or a mirror (see [`endpoint`]).
    pub endpoint: String,
    pub cache: Cache,
    pub timeouts: Timeouts,
    /// Checked before every chunk; `true` stops the download and removes its partial file.
    pub cancelled: &'a dyn Fn() -> bool,
    /// `HF_HUB_OFFLINE=1`: the cache only.
    pub offline: bool,
}

impl FetchOptions<'_> {
    /// Endpoint, cache, timeouts and offline mode from the environment, as `huggingface_hub`
    /// reads them (`HF_ENDPOINT`, `HF_HOME`, `HF_HUB_DOWNLOAD_TIMEOUT`, `HF_HUB_OFFLINE`).
    pub fn from_env() -> Self {
        Self {
            endpoint: endpoint(),
            cache: Cache::from_env(),
            timeouts: Timeouts::from_env(),
            cancelled: &never_cancelled,
            offline: std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1"),
        }
    }
}

fn never_cancelled() -> bool {
    false
}

/// Fetches `repo_id` (config, weights, tokenizer) into the Hugging Face cache and returns the
/// snapshot folder. Files already cached are not downloaded again; `HF_HUB_OFFLINE=1` uses the
/// cache only.
pub fn fetch_model(repo_id: &str, on_event: impl FnMut(HubEvent)) -> Result<PathBuf> {
    fetch_model_with(repo_id, &FetchOptions::from_env(), on_event)
}

/// [`fetch_model`] with explicit endpoint, cache, timeouts and a cancel check.
pub fn fetch_model_with(
    repo_id: &str,
    options: &FetchOptions<'_>,
    mut on_event: impl FnMut(HubEvent),
) -> Result<PathBuf> {
    let repo_id = repo_id.trim();
    if repo_id.is_empty() {
        return Err(GlassboxError::InvalidInput("empty model id".into()));
    }
    let repo = options.cache.repo(Repo::model(repo_id.to_string()));
    if let (Some(config), Some(_)) = (repo.get(CONFIG_FILE), repo.get(WEIGHTS_FILE))
        && family_files(&config)
            .0
            .iter()
            .all(|f| repo.get(f).is_some())
        && let Some(dir) = config.parent()
    {
        return Ok(dir.to_path_buf());
    }
    if options.offline {
        return Err(GlassboxError::Hub(format!(
            "{repo_id} is not in the local cache and HF_HUB_OFFLINE=1 forbids downloading it"
        )));
    }
    let endpoint = options.endpoint.trim_end_matches('/').to_string();
    check_reachable_within(&endpoint, options.timeouts.connect)?;
    let client = Client::new(&endpoint, &options.cache, options)?;
    let mut config_path = None;
    let mut files: Vec<&str> = REQUIRED.to_vec();
    let mut optional: &[&str] = &[];
    let mut next = 0;
    while let Some(&file) = files.get(next) {
        next += 1;
        let is_optional = optional.contains(&file);
        match client.download(repo_id, &repo, file, &mut on_event) {
            Ok(path) => {
                if file == CONFIG_FILE {
                    // The config says what else the family needs.
                    let (required, extra) = family_files(&path);
                    files.extend_from_slice(required);
                    files.extend_from_slice(extra);
                    optional = extra;
                    config_path = Some(path);
                }
            }
            Err(Failure::NotFound) if is_optional => {
                // Some repos ship only vocab.txt; the model still loads, without tokenizing.
                on_event(HubEvent::Finished {
                    file: format!("{file} (not in this repository)"),
                });
            }
            Err(Failure::NotFound) if TRANSLATION_FILES.contains(&file) => {
                return Err(GlassboxError::Hub(format!(
                    "{repo_id}: no {file}. A Marian translation model needs source.spm, \
                     target.spm and vocab.json to tokenize"
                )));
            }
            Err(Failure::NotFound) if file == WEIGHTS_FILE => {
                return Err(GlassboxError::Hub(format!(
                    "{repo_id}: no model.safetensors. Glassbox loads only safetensors; pickled \
                     pytorch_model.bin files are never executed"
                )));
            }
            Err(Failure::NotFound) => {
                return Err(GlassboxError::Hub(format!(
                    "{repo_id}/{file}: not found at {endpoint} (is the model id right?)"
                )));
            }
            Err(Failure::Error(error)) => return Err(error),
        }
    }
    config_path
        .and_then(|p| p.parent().map(PathBuf::from))
        .ok_or_else(|| GlassboxError::Hub(format!("{repo_id}: download gave no folder")))
}

/// Why a file did not arrive.
enum Failure {
    /// 404: the repository has no such file.
    NotFound,
    Error(GlassboxError),
}

impl From<GlassboxError> for Failure {
    fn from(error: GlassboxError) -> Self {
        Failure::Error(error)
    }
}

/// Two agents with the same timeouts: one that stops at redirects (the Hub's first answer
/// carries the commit and the file's id) and one that follows them (to the storage server).
struct Client<'a> {
    endpoint: String,
    token: Option<String>,
    direct: ureq::Agent,
    follow: ureq::Agent,
    options: &'a FetchOptions<'a>,
}

impl<'a> Client<'a> {
    fn new(endpoint: &str, cache: &Cache, options: &'a FetchOptions<'a>) -> Result<Self> {
        let agent = |redirects: u32| -> ureq::Agent {
            ureq::Agent::config_builder()
                .timeout_connect(Some(options.timeouts.connect))
                .timeout_resolve(Some(options.timeouts.connect))
                .timeout_recv_response(Some(options.timeouts.silence))
                .timeout_per_read(Some(options.timeouts.silence))
                .timeout_send_request(Some(options.timeouts.silence))
                .max_redirects(redirects)
                .http_status_as_error(false)
                .user_agent(concat!("glassbox/", env!("CARGO_PKG_VERSION")))
                .build()
                .into()
        };
        Ok(Self {
            endpoint: endpoint.to_string(),
            token: cache.token(),
            direct: agent(0),
            follow: agent(10),
            options,
        })
    }

    fn get(
        &self,
        agent: &ureq::Agent,
        url: &str,
        with_token: bool,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut request = agent.get(url);
        if with_token && let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        request.call().map_err(|e| self.network_error(url, e))
    }

    fn network_error(&self, url: &str, error: ureq::Error) -> GlassboxError {
        let silence = self.options.timeouts.silence.as_secs_f64();
        match error {
            ureq::Error::Timeout(_) => GlassboxError::Hub(format!(
                "{url}: the server did not answer within {silence:.0} s (set \
                 HF_HUB_DOWNLOAD_TIMEOUT to wait longer)"
            )),
            ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                GlassboxError::Hub(format!(
                    "{url}: the server went silent for {silence:.0} s (set \
                     HF_HUB_DOWNLOAD_TIMEOUT to wait longer)"
                ))
            }
            other => GlassboxError::Hub(format!("{url}: {other}")),
        }
    }

    /// Downloads one file into the cache (blob, snapshot link, ref) and returns its path.
    fn download(
        &self,
        repo_id: &str,
        repo: &hf_hub::CacheRepo,
        file: &str,
        on_event: &mut impl FnMut(HubEvent),
    ) -> std::result::Result<PathBuf, Failure> {
        let url = format!("{}/{repo_id}/resolve/main/{file}", self.endpoint);
        let first = self.get(&self.direct, &url, true)?;
        let status = first.status().as_u16();
        let header = |name: &str| {
            first
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().trim_matches('"').to_string())
        };
        let commit = header("x-repo-commit").unwrap_or_else(|| "main".into());
        let etag = header("x-linked-etag")
            .or_else(|| header("etag"))
            .unwrap_or_else(|| format!("{commit}-{}", file.replace('/', "-")));
        let response = match status {
            200 => first,
            301 | 302 | 303 | 307 | 308 => {
                let location = header("location").ok_or_else(|| {
                    GlassboxError::Hub(format!("{url}: a redirect without a Location"))
                })?;
                let target = resolve_location(&url, &location);
                // The storage server gets no token unless it is the endpoint itself.
                let same_host = target.starts_with(&self.endpoint);
                let response = self.get(&self.follow, &target, same_host)?;
                match response.status().as_u16() {
                    200 => response,
                    404 => return Err(Failure::NotFound),
                    code => {
                        return Err(GlassboxError::Hub(format!("{target}: HTTP {code}")).into());
                    }
                }
            }
            404 => return Err(Failure::NotFound),
            401 | 403 => {
                return Err(GlassboxError::Hub(format!(
                    "{url}: HTTP {status}: the model is private or gated; log in with a token \
                     (HF_TOKEN) that may read it"
                ))
                .into());
            }
            code => return Err(GlassboxError::Hub(format!("{url}: HTTP {code}")).into()),
        };
        let size = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);

        // `<cache>/models--org--name/blobs/<etag>`, beside `snapshots/`.
        let snapshots = repo.pointer_path(&commit);
        let repo_dir = snapshots
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| GlassboxError::Hub("the cache folder has no parent".into()))?;
        let blob = repo_dir.join("blobs").join(&etag);
        let partial = blob.with_extension("part");
        if let Some(dir) = blob.parent() {
            std::fs::create_dir_all(dir).map_err(|e| GlassboxError::io(dir, e))?;
        }
        on_event(HubEvent::Start {
            file: file.to_string(),
            size,
        });
        let body = response.into_body().into_reader();
        if let Err(error) = self.copy_body(body, &partial, file, size, &url, on_event) {
            let _ = std::fs::remove_file(&partial);
            return Err(error.into());
        }
        std::fs::rename(&partial, &blob).map_err(|e| GlassboxError::io(&blob, e))?;

        let mut pointer = repo.pointer_path(&commit);
        pointer.push(file);
        if let Some(dir) = pointer.parent() {
            std::fs::create_dir_all(dir).map_err(|e| GlassboxError::io(dir, e))?;
        }
        link_or_copy(&blob, &pointer)?;
        repo.create_ref(&commit)
            .map_err(|e| GlassboxError::io(&pointer, e))?;
        on_event(HubEvent::Finished {
            file: file.to_string(),
        });
        Ok(pointer)
    }

    /// Streams a body to `path`, reporting progress and stopping when cancelled.
    fn copy_body(
        &self,
        mut body: impl Read,
        path: &Path,
        file: &str,
        size: usize,
        url: &str,
        on_event: &mut impl FnMut(HubEvent),
    ) -> Result<()> {
        let mut out = std::fs::File::create(path).map_err(|e| GlassboxError::io(path, e))?;
        let mut buffer = vec![0u8; 64 * 1024];
        let mut done = 0usize;
        loop {
            if (self.options.cancelled)() {
                return Err(GlassboxError::Hub("download cancelled".into()));
            }
            let n = match body.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let silence = self.options.timeouts.silence.as_secs_f64();
                    let what = if e.kind() == std::io::ErrorKind::TimedOut
                        || e.to_string().contains("timeout")
                    {
                        format!("the server went silent for {silence:.0} s")
                    } else {
                        e.to_string()
                    };
                    return Err(GlassboxError::Hub(format!(
                        "{url}: download broke off after {done} of {size} bytes: {what}"
                    )));
                }
            };
            out.write_all(&buffer[..n])
                .map_err(|e| GlassboxError::io(path, e))?;
            done += n;
            on_event(HubEvent::Progress {
                file: file.to_string(),
                done,
                size,
            });
        }
        if size > 0 && done != size {
            return Err(GlassboxError::Hub(format!(
                "{url}: the server sent {done} of {size} bytes"
            )));
        }
        out.sync_all().map_err(|e| GlassboxError::io(path, e))
    }
}

/// A redirect's Location, made absolute against the URL that answered with it.
fn resolve_location(url: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    // Scheme and authority of `url`: everything before the first '/' after "://".
    let origin_end = url
        .find("://")
        .and_then(|i| url[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(url.len());
    if location.starts_with('/') {
        format!("{}{location}", &url[..origin_end])
    } else {
        let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
        format!("{base}/{location}")
    }
}

/// The snapshot entry points at its blob (a relative symlink, as `huggingface_hub` makes),
/// or is a copy where links are not possible.
fn link_or_copy(blob: &Path, pointer: &Path) -> Result<()> {
    let _ = std::fs::remove_file(pointer);
    #[cfg(unix)]
    {
        let relative = pointer
            .parent()
            .and_then(|dir| relative_path(dir, blob))
            .unwrap_or_else(|| blob.to_path_buf());
        if std::os::unix::fs::symlink(&relative, pointer).is_ok() {
            return Ok(());
        }
    }
    std::fs::copy(blob, pointer)
        .map(|_| ())
        .map_err(|e| GlassboxError::io(pointer, e))
}

/// `target` relative to `from_dir` (both inside the same cache).
fn relative_path(from_dir: &Path, target: &Path) -> Option<PathBuf> {
    let from: Vec<_> = from_dir.components().collect();
    let to: Vec<_> = target.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return None;
    }
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for part in &to[common..] {
        path.push(part);
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_locations() {
        assert_eq!(
            host_and_port("https://huggingface.co").unwrap(),
            ("huggingface.co".to_string(), 443)
        );
        assert_eq!(
            host_and_port("http://127.0.0.1:8080/mirror").unwrap(),
            ("127.0.0.1".to_string(), 8080)
        );
        assert_eq!(
            host_and_port("http://[::1]:9000").unwrap(),
            ("::1".to_string(), 9000)
        );
        assert!(host_and_port("ftp://example").is_err());
        assert_eq!(
            resolve_location("http://127.0.0.1:5/a/resolve/main/x", "/blobs/1"),
            "http://127.0.0.1:5/blobs/1"
        );
        assert_eq!(
            resolve_location("http://h/a/b", "https://cdn/x"),
            "https://cdn/x"
        );
        assert_eq!(
            relative_path(Path::new("/c/snapshots/abc"), Path::new("/c/blobs/e")).unwrap(),
            PathBuf::from("../../blobs/e")
        );
    }
}
