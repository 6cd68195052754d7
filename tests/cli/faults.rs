//! Nothing lost, nothing hangs: runs, saves, downloads and the command line under bad conditions.
//!
//! Each case is a scripted fault or a bad input, run the way a user meets it (mostly through the
//! `glassbox` binary). Network faults talk only to servers this file starts on 127.0.0.1, reached
//! through `HF_ENDPOINT`. The README's "Bad input and faults" table lists the same cases.
//!
//! | case | test | what the user gets |
//! | --- | --- | --- |
//! | recipe with `export_dir`; README's train command | `training_never_writes_outside_its_folder_unasked` | refused / shipped assets untouched |
//! | `--export` into a folder that holds a model | same | refused before training; `--overwrite` replaces |
//! | save fails (file-size limit, as a full disk) | `a_failed_save_is_an_error_and_the_last_checkpoint_stays` | warning, error, exit 1, step kept |
//! | new run into an existing `--out` | `a_new_run_never_replaces_an_old_one` | refused; `--resume` / `--overwrite` |
//! | `--set` that a resume cannot apply | same | refused, trainer_state unchanged |
//! | resume from another folder | same | works (paths saved absolute) |
//! | Ctrl-C / SIGTERM | train_cli.rs `ctrl_c_and_sigterm_save_a_checkpoint_and_exit_130` | checkpoint saved, exit 130 |
//! | stalled server, stall mid-body | `downloads_time_out_on_a_silent_server` | clear error in seconds, no partial file |
//! | download through a mirror, then offline | `downloads_go_through_hf_endpoint_into_the_cache` | files cached, loads |
//! | translation model: .spm files, missing one | `downloads_fetch_a_translators_sentencepiece_files` | fetched and translates / file named |
//! | cancel a download | `a_cancelled_download_stops_and_leaves_nothing` | stops, no partial file |
//! | broken pipe | `a_closed_pipe_ends_the_command_quietly` | no panic, no exit 101 |
//! | model too large for memory | `a_model_too_large_for_memory_is_refused` | "too large", exit 1 (not an abort) |
//! | tokenizer larger than the model's vocabulary | `weights_that_would_give_wrong_numbers_are_refused` | refused at load |
//! | integer or NaN weights | same | refused at load, tensor named |
//! | multi-byte characters in generation | `generation_streams_whole_characters` | "café" printed whole |
//! | sampling settings out of range | `sampling_settings_are_validated` | refused with the rule |
//! | `--pair` on a GPT; seq_len past the positions; unseen validation label | `silent_wrong_results_are_errors` | clear errors |
//! | `params --model` on truncated / mismatched weights | same | refused |
//! | BERT tokenizer class; bias-free GPT in `transformers` | `checkpoints_load_cleanly_in_transformers` | BertTokenizer; zero biases |
//! | translator folders in `transformers` | `translators_load_cleanly_in_transformers` | same ids; with torch, same tensors and translation |

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{copy_fixture, fixture, temp_dir};
use candle_core::{DType, Device, Tensor};
use glassbox::model::checkpoint::load_dir;

fn glassbox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_glassbox"))
}

fn run(args: &[&str]) -> Output {
    glassbox().args(args).output().expect("glassbox runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `glassbox ARGS` under bash with `setup` before it (ulimits, signal dispositions).
fn run_limited(setup: &str, args: &[&str], dir: &Path) -> Output {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "{setup}; exec '{}' {}",
        env!("CARGO_BIN_EXE_glassbox"),
        quoted.join(" ")
    );
    Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir)
        .output()
        .expect("bash runs")
}

/// A small GPT recipe, big enough that its checkpoint is over 100 KB.
const RECIPE: &str = r#"
objective = "causal-lm"
seed = 3
[data]
builtin_size = 300
[model]
n_layer = 1
n_head = 2
n_embd = 64
n_positions = 16
[optimizer]
lr = 3e-3
warmup_steps = 2
[training]
steps = 12
batch_size = 4
eval_every = 6
eval_batches = 2
save_every = 5
"#;

fn write_recipe(dir: &Path) -> PathBuf {
    let path = dir.join("recipe.toml");
    std::fs::write(&path, RECIPE).unwrap();
    path
}

fn saved_step(run: &Path) -> u64 {
    let text = std::fs::read_to_string(run.join("checkpoint/trainer_state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
    state["step"].as_u64().unwrap()
}

fn assert_ok(output: &Output) {
    assert!(output.status.success(), "{}", stderr(output));
}

fn assert_fails_with(output: &Output, needles: &[&str]) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    for needle in needles {
        assert!(text.contains(needle), "missing {needle:?} in: {text}");
    }
}

fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Lost work
// ---------------------------------------------------------------------------------------------

#[test]
fn training_never_writes_outside_its_folder_unasked() {
    let dir = temp_dir("faults-export");
    // The README's command on the shipped recipe leaves the shipped model alone.
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tiny-gpt");
    let shipped = file_bytes(&assets.join("model.safetensors"));
    let out = dir.join("tiny-gpt");
    let recipe = assets.join("recipe.toml");
    assert_ok(&run(&[
        "train",
        "--config",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "2",
        "--quiet",
        "--set",
        "training.eval_batches=1",
    ]));
    assert_eq!(file_bytes(&assets.join("model.safetensors")), shipped);
    assert_eq!(saved_step(&out), 2);

    // A recipe that still names an export folder is refused, with the way to do it instead.
    let old_style = dir.join("old.toml");
    std::fs::write(&old_style, format!("export_dir = \"somewhere\"\n{RECIPE}")).unwrap();
    assert_fails_with(
        &run(&["train", "--config", old_style.to_str().unwrap()]),
        &["export_dir", "--export"],
    );

    // --export writes a plain Hugging Face folder...
    let recipe = write_recipe(&dir);
    let export = dir.join("export");
    let args = |out: &str, extra: &[&'static str]| {
        let mut args = vec![
            "train".to_string(),
            "--config".into(),
            recipe.display().to_string(),
            "--out".into(),
            dir.join(out).display().to_string(),
            "--export".into(),
            export.display().to_string(),
            "--quiet".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let first = glassbox().args(args("run1", &[])).output().unwrap();
    assert_ok(&first);
    assert!(export.join("model.safetensors").is_file());
    assert!(!export.join("trainer_state.json").exists());
    load_dir(&export, &Device::Cpu).expect("the export loads");
    let exported = file_bytes(&export.join("model.safetensors"));

    // ...but never over an existing model without --overwrite, and it says so before training.
    let second = glassbox()
        .args(args("run2", &["--steps", "3"]))
        .output()
        .unwrap();
    assert_fails_with(&second, &["--overwrite", "model.safetensors"]);
    assert!(!dir.join("run2").exists(), "refused before any training");
    assert_eq!(file_bytes(&export.join("model.safetensors")), exported);

    let third = glassbox()
        .args(args("run3", &["--steps", "3", "--overwrite"]))
        .output()
        .unwrap();
    assert_ok(&third);
    assert_ne!(file_bytes(&export.join("model.safetensors")), exported);
}

#[test]
fn a_failed_save_is_an_error_and_the_last_checkpoint_stays() {
    let dir = temp_dir("faults-save");
    let recipe = write_recipe(&dir);
    let out = dir.join("run");
    assert_ok(&run(&[
        "train",
        "--config",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]));
    assert_eq!(saved_step(&out), 12);
    let good = file_bytes(&out.join("checkpoint/model.safetensors"));
    assert!(
        good.len() > 150_000,
        "the weights must exceed the limit below"
    );

    // A 100 KB file-size limit: writes past it fail with EFBIG, as on a full disk. Metrics
    // lines still fit; the checkpoints at steps 15 and 20 do not.
    let output = run_limited(
        "trap '' XFSZ; ulimit -f 200",
        &[
            "train",
            "--resume",
            out.to_str().unwrap(),
            "--steps",
            "20",
            "--quiet",
        ],
        &dir,
    );
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("could not save the checkpoint at step 15"),
        "{text}"
    );
    assert!(
        text.contains("could not save the checkpoint at step 20"),
        "{text}"
    );
    assert!(text.contains("last good checkpoint (step 12)"), "{text}");
    assert!(!text.contains("finished at step"), "{text}");
    // The step-12 checkpoint is where it was, whole, and no half-written folder is left.
    assert_eq!(saved_step(&out), 12);
    assert_eq!(file_bytes(&out.join("checkpoint/model.safetensors")), good);
    assert!(!out.join(".checkpoint-new").exists());
    load_dir(&out.join("checkpoint"), &Device::Cpu).expect("still loads");
}

#[test]
fn a_new_run_never_replaces_an_old_one() {
    let dir = temp_dir("faults-rerun");
    write_recipe(&dir);
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, "the cat sat on the mat .\n".repeat(200)).unwrap();
    let start = dir.join("start");
    std::fs::create_dir_all(&start).unwrap();
    // Started with relative paths, from `start/`.
    let first = glassbox()
        .current_dir(&start)
        .args(["train", "--config", "../recipe.toml", "--out", "run"])
        .args(["--data", "../corpus.txt", "--quiet"])
        .output()
        .unwrap();
    assert_ok(&first);
    let out = start.join("run");
    let metrics = file_bytes(&out.join("metrics.jsonl"));

    let again = glassbox()
        .current_dir(&start)
        .args([
            "train",
            "--config",
            "../recipe.toml",
            "--out",
            "run",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert_fails_with(
        &again,
        &["already holds a training run", "--resume", "--overwrite"],
    );
    assert_eq!(file_bytes(&out.join("metrics.jsonl")), metrics);
    assert_eq!(saved_step(&out), 12);

    // A resume refuses what its checkpoint fixes, and changes nothing.
    let state_before = file_bytes(&out.join("checkpoint/trainer_state.json"));
    let refused = run(&[
        "train",
        "--resume",
        out.to_str().unwrap(),
        "--set",
        "model.n_layer=3",
        "--set",
        "tokenizer.kind=bpe",
        "--lr",
        "0.001",
    ]);
    assert_fails_with(
        &refused,
        &["model.n_layer", "tokenizer.kind", "cannot change"],
    );
    assert!(!stderr(&refused).contains("optimizer.lr"));
    assert_eq!(
        file_bytes(&out.join("checkpoint/trainer_state.json")),
        state_before
    );

    // From another folder, by its absolute path: the saved paths still point at the data.
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let resumed = glassbox()
        .current_dir(&elsewhere)
        .args(["train", "--resume"])
        .arg(&out)
        .args(["--steps", "14", "--quiet"])
        .output()
        .unwrap();
    assert_ok(&resumed);
    assert_eq!(saved_step(&out), 14);
    let recipe_saved = std::fs::read_to_string(out.join("recipe.toml")).unwrap();
    assert!(
        recipe_saved.contains(&corpus.canonicalize().unwrap().display().to_string())
            || recipe_saved.contains(&dir.join("start/../corpus.txt").display().to_string()),
        "{recipe_saved}"
    );

    // --overwrite starts afresh in the same folder.
    let replaced = glassbox()
        .current_dir(&start)
        .args(["train", "--config", "../recipe.toml", "--out", "run"])
        .args(["--steps", "3", "--overwrite", "--quiet"])
        .output()
        .unwrap();
    assert_ok(&replaced);
    assert_eq!(saved_step(&out), 3);
}

// ---------------------------------------------------------------------------------------------
// Downloads, against servers on 127.0.0.1
// ---------------------------------------------------------------------------------------------

/// A loopback HTTP server; each connection's request path goes to `answer` on its own thread.
/// It stops accepting when dropped; a stalling answer ends by itself within `STALL`.
struct Loopback {
    url: String,
    stop: Arc<AtomicBool>,
}

const STALL: Duration = Duration::from_secs(20);

impl Loopback {
    fn start(answer: impl Fn(&str, &mut TcpStream) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("loopback port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            let started = Instant::now();
            while !stopped.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let answer = answer.clone();
                        std::thread::spawn(move || {
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                            if let Some(path) = read_request_path(&mut stream) {
                                answer(&path, &mut stream);
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { url, stop }
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn read_request_path(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16_384 {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    head.split_whitespace().nth(1).map(str::to_string)
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut text = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("Connection: close\r\n\r\n");
    let _ = stream.write_all(text.as_bytes());
    let _ = stream.write_all(body);
}

/// Serves the gpt2 fixture as `org/tiny`, the weights through a redirect as the Hub does.
fn mirror() -> Loopback {
    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    Loopback::start(|path, stream| {
        let repo = "/org/tiny/resolve/main/";
        let file = |name: &str| std::fs::read(fixture("gpt2").join(name)).unwrap();
        match path {
            p if p == format!("{repo}config.json") || p == format!("{repo}tokenizer.json") => {
                let name = &p[repo.len()..];
                let headers = [
                    ("X-Repo-Commit", COMMIT.to_string()),
                    ("ETag", format!("\"etag-{name}\"")),
                ];
                respond(stream, "200 OK", &headers, &file(name));
            }
            p if p == format!("{repo}model.safetensors") => {
                let headers = [
                    ("X-Repo-Commit", COMMIT.to_string()),
                    ("X-Linked-Etag", "\"sha256-weights\"".to_string()),
                    ("Location", "/lfs/weights".to_string()),
                ];
                respond(stream, "302 Found", &headers, b"");
            }
            "/lfs/weights" => respond(stream, "200 OK", &[], &file("model.safetensors")),
            _ => respond(stream, "404 Not Found", &[], b"not found"),
        }
    })
}

fn download(server: &Loopback, home: &Path, repo: &str, extra_env: &[(&str, &str)]) -> Output {
    let mut command = glassbox();
    command
        .args(["download", repo])
        .env("HF_ENDPOINT", &server.url)
        .env("HF_HOME", home)
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in extra_env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("glassbox download still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn leftover_partials(home: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "part") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(home, &mut found);
    found
}

#[test]
fn downloads_go_through_hf_endpoint_into_the_cache() {
    let home = temp_dir("faults-hub-ok");
    let server = mirror();
    let output = download(&server, &home, "org/tiny", &[]);
    assert_ok(&output);
    let folder = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    assert!(folder.starts_with(&home), "{}", folder.display());
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert_eq!(
            file_bytes(&folder.join(name)),
            file_bytes(&fixture("gpt2").join(name))
        );
    }
    load_dir(&folder, &Device::Cpu).expect("the downloaded model loads");

    // Once cached, no network is needed: the server is gone, the folder comes back at once.
    drop(server);
    let dead = Loopback {
        url: "http://127.0.0.1:9".into(),
        stop: Arc::new(AtomicBool::new(true)),
    };
    let again = download(&dead, &home, "org/tiny", &[("HF_HUB_OFFLINE", "1")]);
    assert_ok(&again);
    assert_eq!(
        PathBuf::from(String::from_utf8_lossy(&again.stdout).trim()),
        folder
    );

    // A missing repository is a clear error naming the endpoint.
    let server = mirror();
    let missing = download(&server, &home, "org/absent", &[]);
    assert_fails_with(&missing, &["not found", &server.url]);
}

/// Serves the Marian fixture as `org/translator` (every file) and `org/no-spm` (no target.spm).
fn marian_mirror() -> Loopback {
    const COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";
    Loopback::start(|path, stream| {
        for (repo, missing) in [
            ("/org/translator/resolve/main/", ""),
            ("/org/no-spm/resolve/main/", "target.spm"),
        ] {
            if let Some(name) = path.strip_prefix(repo) {
                let file = fixture("marian").join(name);
                if name != missing && !name.contains('/') && file.is_file() {
                    let headers = [
                        ("X-Repo-Commit", COMMIT.to_string()),
                        ("ETag", format!("\"etag-{name}\"")),
                    ];
                    respond(stream, "200 OK", &headers, &std::fs::read(file).unwrap());
                    return;
                }
            }
        }
        respond(stream, "404 Not Found", &[], b"not found")
    })
}

/// `glassbox download` of a translation model fetches what Marian needs besides config and
/// weights (source.spm, target.spm, vocab.json, generation_config.json), and the folder
/// translates; a repository without one of them is a clear error naming it.
#[test]
fn downloads_fetch_a_translators_sentencepiece_files() {
    let home = temp_dir("faults-hub-marian");
    let server = marian_mirror();
    let output = download(&server, &home, "org/translator", &[]);
    assert_ok(&output);
    let folder = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    for name in [
        "source.spm",
        "target.spm",
        "vocab.json",
        "generation_config.json",
    ] {
        assert_eq!(
            file_bytes(&folder.join(name)),
            file_bytes(&fixture("marian").join(name)),
            "{name}"
        );
    }
    let translated = run(&[
        "translate",
        "--model",
        folder.to_str().unwrap(),
        "--text",
        "The cat chased the mouse.",
    ]);
    assert_ok(&translated);
    assert_eq!(
        String::from_utf8_lossy(&translated.stdout).trim(),
        "Le chat a chassé la souris."
    );
    let incomplete = download(&server, &home, "org/no-spm", &[]);
    assert_fails_with(&incomplete, &["target.spm", "org/no-spm"]);
}

#[test]
fn downloads_time_out_on_a_silent_server() {
    let home = temp_dir("faults-hub-stall");
    // Accepts, reads the request, never answers.
    let silent = Loopback::start(|_, _| std::thread::sleep(STALL));
    let started = Instant::now();
    let output = download(
        &silent,
        &home,
        "org/tiny",
        &[("HF_HUB_DOWNLOAD_TIMEOUT", "1")],
    );
    assert_fails_with(
        &output,
        &["did not answer within 1 s", "HF_HUB_DOWNLOAD_TIMEOUT"],
    );
    assert!(started.elapsed() < Duration::from_secs(15));

    // Answers, sends part of the body, then goes silent.
    let stalls = Loopback::start(|path, stream| {
        if path.ends_with("config.json") {
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nETag: \"e\"\r\n\
                        X-Repo-Commit: c0ffee\r\n\r\n";
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&[b'{'; 1000]);
            let _ = stream.flush();
            std::thread::sleep(STALL);
        } else {
            respond(stream, "404 Not Found", &[], b"");
        }
    });
    let output = download(
        &stalls,
        &home,
        "org/tiny",
        &[("HF_HUB_DOWNLOAD_TIMEOUT", "1")],
    );
    assert_fails_with(&output, &["broke off after 1000 of 100000 bytes"]);
    assert_eq!(leftover_partials(&home), Vec::<PathBuf>::new());
}

#[test]
fn a_cancelled_download_stops_and_leaves_nothing() {
    use glassbox::hub::{FetchOptions, HubEvent, Timeouts, fetch_model_with};
    let home = temp_dir("faults-hub-cancel");
    // The weights trickle in 4 KB pieces: the download is cancelled after the first ones.
    let server = Loopback::start(|path, stream| {
        if path.ends_with("config.json") {
            let body = file_bytes(&fixture("gpt2").join("config.json"));
            let headers = [
                ("X-Repo-Commit", "c".to_string()),
                ("ETag", "\"e1\"".into()),
            ];
            respond(stream, "200 OK", &headers, &body);
        } else if path.ends_with("model.safetensors") {
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 4000000\r\nETag: \"e2\"\r\n\
                        X-Repo-Commit: c\r\n\r\n";
            let _ = stream.write_all(head.as_bytes());
            for _ in 0..1000 {
                if stream.write_all(&[0u8; 4000]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            respond(stream, "404 Not Found", &[], b"");
        }
    });
    let cancel = AtomicBool::new(false);
    let is_cancelled = || cancel.load(Ordering::SeqCst);
    let options = FetchOptions {
        endpoint: server.url.clone(),
        cache: hf_hub_cache(&home),
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            silence: Duration::from_secs(5),
        },
        cancelled: &is_cancelled,
        offline: false,
    };
    let started = Instant::now();
    let mut weight_bytes = 0;
    let result = fetch_model_with("org/tiny", &options, |event| {
        if let HubEvent::Progress { file, done, .. } = event
            && file == "model.safetensors"
        {
            weight_bytes = done;
            if done > 8000 {
                cancel.store(true, Ordering::SeqCst);
            }
        }
    });
    let error = result.expect_err("cancelled");
    assert!(error.to_string().contains("cancelled"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(weight_bytes < 100_000, "stopped early: {weight_bytes}");
    assert_eq!(leftover_partials(&home), Vec::<PathBuf>::new());
}

fn hf_hub_cache(home: &Path) -> hf_hub::Cache {
    hf_hub::Cache::new(home.join("hub"))
}

// ---------------------------------------------------------------------------------------------
// Aborts
// ---------------------------------------------------------------------------------------------

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let gpt2 = fixture("gpt2");
    let cases: [&[&str]; 2] = [
        &["generate", "--prompt", "The", "--max-new-tokens", "50"],
        &["inspect", "--text", "The cat", "--json"],
    ];
    for args in cases {
        let mut child = glassbox()
            .args(args)
            .arg("--model")
            .arg(&gpt2)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the first line is written (as `| head -c0` would).
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let text = stderr(&output);
        assert!(!text.contains("panicked"), "{args:?}: {text}");
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            let quiet = output.status.success() || output.status.signal() == Some(13);
            assert!(quiet, "{args:?}: {:?} {text}", output.status);
        }
    }
}

#[test]
fn a_model_too_large_for_memory_is_refused() {
    // A header for 800 MB of float32 over a sparse file (no disk used): loading needs about
    // that much (each tensor is read into its own buffer), more than a 700 MB address-space
    // limit leaves.
    let dir = copy_fixture("gpt2", "faults-too-large");
    let elements: u64 = 200_000_000;
    let header = serde_json::json!({
        "transformer.wte.weight": {"dtype": "F32", "shape": [elements], "data_offsets": [0, elements * 4]}
    })
    .to_string();
    let mut file = std::fs::File::create(dir.join("model.safetensors")).unwrap();
    file.write_all(&(header.len() as u64).to_le_bytes())
        .unwrap();
    file.write_all(header.as_bytes()).unwrap();
    file.set_len(8 + header.len() as u64 + elements * 4)
        .unwrap();
    drop(file);
    let output = run_limited(
        "ulimit -v 700000",
        &["inspect", "--model", dir.to_str().unwrap(), "--text", "hi"],
        &dir,
    );
    assert_fails_with(&output, &["too large for memory", "MiB"]);
}

#[test]
fn weights_that_would_give_wrong_numbers_are_refused() {
    // A tokenizer from another model: 512 tokens for a 400-row embedding table.
    let dir = copy_fixture("gpt2", "faults-vocab");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tiny-gpt/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let output = run(&["inspect", "--model", dir.to_str().unwrap(), "--text", "hi"]);
    assert_fails_with(&output, &["tokenizer.json", "400 rows", "does not belong"]);

    // Integer weights, and NaN weights: refused with the tensor's name.
    let original: BTreeMap<String, Tensor> =
        candle_core::safetensors::load(fixture("gpt2").join("model.safetensors"), &Device::Cpu)
            .unwrap()
            .into_iter()
            .collect();
    let broken = |name: &str, change: &dyn Fn(&Tensor) -> Tensor| {
        let dir = copy_fixture("gpt2", name);
        let mut tensors = original.clone();
        let wpe = tensors["transformer.wpe.weight"].clone();
        tensors.insert("transformer.wpe.weight".into(), change(&wpe));
        glassbox::model::checkpoint::write_safetensors(&dir.join("model.safetensors"), &tensors)
            .unwrap();
        run(&["inspect", "--model", dir.to_str().unwrap(), "--text", "hi"])
    };
    let output = broken("faults-int", &|t| t.to_dtype(DType::I64).unwrap());
    assert_fails_with(
        &output,
        &["transformer.wpe.weight", "I64", "floating point"],
    );
    let output = broken("faults-nan", &|t| {
        let mut values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        values[7] = f32::NAN;
        Tensor::from_vec(values, t.dims(), &Device::Cpu).unwrap()
    });
    assert_fails_with(&output, &["transformer.wpe.weight", "NaN at element 7"]);
    assert!(!stderr(&output).contains('%'));
    // Fine-tuning reads weights through the same check.
    let nan_dir =
        std::env::temp_dir().join(format!("glassbox-test-{}-faults-nan", std::process::id()));
    let output = run(&[
        "finetune",
        "--task",
        "generation",
        "--from",
        nan_dir.to_str().unwrap(),
        "--out",
        nan_dir.join("run").to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert_fails_with(&output, &["transformer.wpe.weight", "NaN at element 7"]);
}

// ---------------------------------------------------------------------------------------------
// Silent wrong results
// ---------------------------------------------------------------------------------------------

#[test]
fn generation_streams_whole_characters() {
    use glassbox::generate::TextStream;
    use glassbox::tokenizer::Tokenizer;
    let tokenizer = Tokenizer::from_file(&fixture("gpt2").join("tokenizer.json")).unwrap();
    let text = "Le café ☕ est très bon, naïve 日本語 🎉!";
    let ids = tokenizer.encode(text, false).unwrap().ids;
    assert!(ids.len() > text.chars().count() / 2);
    let mut stream = TextStream::new(&tokenizer);
    let mut pieces = Vec::new();
    for id in ids {
        pieces.extend(stream.push(id).unwrap());
    }
    pieces.extend(stream.finish().unwrap());
    assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
    assert_eq!(pieces.concat(), text);
    // Some characters took several tokens: they came out whole, in one piece.
    assert!(pieces.iter().any(|p| p.contains('é')));
    assert!(pieces.iter().any(|p| p.contains('🎉')));
}

#[test]
fn sampling_settings_are_validated() {
    use glassbox::generate::SamplingSettings;
    let valid = SamplingSettings {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
    };
    assert!(valid.validate().is_ok());
    for (temperature, top_p) in [
        (f32::NAN, 1.0),
        (-0.5, 1.0),
        (f32::INFINITY, 1.0),
        (1.0, 2.0),
        (1.0, 0.0),
        (1.0, f32::NAN),
        (1.0, -0.1),
    ] {
        let settings = SamplingSettings {
            temperature,
            top_k: 0,
            top_p,
        };
        assert!(settings.validate().is_err(), "{settings:?}");
        assert!(settings.clamped().validate().is_ok(), "{settings:?}");
    }
    let gpt2 = fixture("gpt2");
    let model = gpt2.to_str().unwrap();
    for (flag, value, rule) in [
        ("--temperature", "NaN", "temperature must be a number ≥ 0"),
        ("--temperature=-1", "", "temperature must be a number ≥ 0"),
        ("--top-p", "2", "top-p must be a number in (0, 1]"),
        ("--top-p", "0", "top-p must be a number in (0, 1]"),
    ] {
        let mut args = vec!["generate", "--model", model, "--prompt", "The", flag];
        if !value.is_empty() {
            args.push(value);
        }
        assert_fails_with(&run(&args), &[rule]);
    }
    // inspect's --top-k counts predictions to show: 0 is refused, not an empty list.
    let output = run(&["inspect", "--model", model, "--text", "hi", "--top-k", "0"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--top-k"), "{}", stderr(&output));
}

#[test]
fn silent_wrong_results_are_errors() {
    let dir = temp_dir("faults-silent");
    // --pair on a GPT.
    let output = run(&[
        "inspect",
        "--model",
        fixture("gpt2").to_str().unwrap(),
        "--text",
        "The cat",
        "--pair",
        "sat.",
    ]);
    assert_fails_with(&output, &["sentence pair needs an encoder"]);

    // A sequence length the model has no positions for.
    let recipe = write_recipe(&dir);
    let output = run(&[
        "train",
        "--config",
        recipe.to_str().unwrap(),
        "--out",
        dir.join("seq").to_str().unwrap(),
        "--set",
        "training.seq_len=32",
    ]);
    assert_fails_with(&output, &["training.seq_len is 32", "only 16 positions"]);

    // A validation label the training data never uses.
    let train = dir.join("train.csv");
    let val = dir.join("val.csv");
    std::fs::write(
        &train,
        "text,label\ngood film,pos\nbad film,neg\nfine film,pos\n",
    )
    .unwrap();
    std::fs::write(&val, "text,label\nok film,neutral\ngreat film,pos\n").unwrap();
    let bert = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tiny-bert");
    let output = run(&[
        "finetune",
        "--task",
        "classification",
        "--from",
        bert.to_str().unwrap(),
        "--data",
        train.to_str().unwrap(),
        "--val-data",
        val.to_str().unwrap(),
        "--out",
        dir.join("cls").to_str().unwrap(),
        "--steps",
        "2",
    ]);
    assert_fails_with(&output, &["\"neutral\"", "never uses"]);

    // params --model on weights that are cut short, or that do not match the config.
    let truncated = copy_fixture("gpt2", "faults-truncated");
    let weights = truncated.join("model.safetensors");
    let bytes = file_bytes(&weights);
    std::fs::write(&weights, &bytes[..bytes.len() - 100]).unwrap();
    let output = run(&["params", "--model", truncated.to_str().unwrap()]);
    assert_fails_with(&output, &["model.safetensors", "tensor data"]);

    let mismatched = copy_fixture("gpt2", "faults-mismatch");
    let config_path = mismatched.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["n_inner"] = serde_json::json!(64);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let output = run(&["params", "--model", mismatched.to_str().unwrap()]);
    assert_fails_with(&output, &["mlp.c_fc.weight", "[32, 64]"]);

    // ...and a whole, matching folder still gets its table.
    let output = run(&["params", "--model", fixture("gpt2").to_str().unwrap()]);
    assert_ok(&output);
}

// ---------------------------------------------------------------------------------------------
// Interop with `transformers`
// ---------------------------------------------------------------------------------------------

#[test]
fn checkpoints_load_cleanly_in_transformers() {
    use glassbox::model::checkpoint::save_dir;
    use glassbox::train::{TrainConfig, Trainer};
    let dir = temp_dir("faults-interop");

    // A BERT folder declares BERT's tokenizer class, so AutoTokenizer returns segment ids.
    let bert = load_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tiny-bert"),
        &Device::Cpu,
    )
    .unwrap();
    let tokenizer = bert.tokenizer.as_ref().unwrap();
    let saved = dir.join("bert");
    let tensors: BTreeMap<String, Tensor> =
        candle_core::safetensors::load(bert.dir.join("model.safetensors"), &Device::Cpu)
            .unwrap()
            .into_iter()
            .collect();
    save_dir(&saved, &bert.config, &tensors, Some(tokenizer)).unwrap();
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(saved.join("tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["tokenizer_class"], "BertTokenizer");
    assert_eq!(config["model_input_names"][1], "token_type_ids");
    // The shipped tiny BERT is written the same way.
    let shipped: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(bert.dir.join("tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config, shipped);
    let (a, b) = (
        "the cat chased the mouse .",
        "it was trying to catch a bird .",
    );
    let ours = tokenizer.encode_pair(a, b).unwrap();
    let script = format!(
        "import json, sys\nfrom transformers import AutoTokenizer\n\
         t = AutoTokenizer.from_pretrained(sys.argv[1])\n\
         e = t({a:?}, {b:?})\n\
         print(json.dumps({{'ids': e['input_ids'], 'types': e.get('token_type_ids')}}))\n"
    );
    match Command::new("python3")
        .args(["-c", &script])
        .arg(&saved)
        .output()
    {
        Ok(output) if output.status.success() => {
            let line = String::from_utf8_lossy(&output.stdout);
            let theirs: serde_json::Value =
                serde_json::from_str(line.lines().last().unwrap()).unwrap();
            assert_eq!(theirs["ids"], serde_json::json!(ours.ids));
            assert_eq!(theirs["types"], serde_json::json!(ours.type_ids));
        }
        other => eprintln!(
            "skipped the transformers half: python3 with transformers is not here ({:?})",
            other.map(|o| String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .map(str::to_string))
        ),
    }

    // A bias-free GPT is written with zero biases: the same tensors, names and shapes as a
    // GPT-2 with biases (what `transformers`' GPT2LMHeadModel expects), computing the same.
    let recipe = |bias: bool, out: &Path| {
        let text = format!(
            "objective = \"causal-lm\"\nseed = 1\n[data]\nbuiltin_size = 100\n[model]\n\
             n_layer = 2\nn_head = 2\nn_embd = 16\nn_positions = 16\nbias = {bias}\n\
             [training]\nsteps = 1\nbatch_size = 2\neval_every = 0\neval_batches = 1\n"
        );
        let mut config = TrainConfig::from_toml_str(&text, &[]).unwrap();
        config.out_dir = Some(out.to_path_buf());
        let mut trainer = Trainer::new(config).unwrap();
        trainer.step().unwrap();
        trainer.save().unwrap()
    };
    let with_bias = recipe(true, &dir.join("bias"));
    let without = recipe(false, &dir.join("nobias"));
    let shapes = |checkpoint: &Path| -> BTreeMap<String, Vec<usize>> {
        glassbox::model::params::read_safetensors_shapes(&checkpoint.join("model.safetensors"))
            .unwrap()
            .into_iter()
            .collect()
    };
    assert_eq!(shapes(&with_bias), shapes(&without));
    let padded: BTreeMap<String, Tensor> =
        candle_core::safetensors::load(without.join("model.safetensors"), &Device::Cpu)
            .unwrap()
            .into_iter()
            .collect();
    let ln_f_bias = padded["transformer.ln_f.bias"].to_vec1::<f32>().unwrap();
    assert!(ln_f_bias.iter().all(|v| *v == 0.0));
    // Glassbox reads it back as the bias-free model it is: the padding is not a parameter.
    let loaded = load_dir(&without, &Device::Cpu).unwrap();
    assert!(
        loaded
            .tensor_shapes
            .iter()
            .all(|(n, _)| !n.ends_with("bias"))
    );
    let count = glassbox::model::params::actual_count(loaded.tensor_shapes.iter().cloned());
    assert_eq!(
        count,
        glassbox::model::params::breakdown_for_config(&loaded.config).exact_total
    );
}

/// The shipped translator and a folder a seq2seq run just wrote load in `transformers`:
/// `AutoTokenizer` gives Glassbox's ids and decodes its translation. Where torch is installed
/// too, `scripts/check_transformers.py` compares every tensor of `MarianMTModel` (within 1e-4)
/// and `generate`'s greedy translation.
#[test]
fn translators_load_cleanly_in_transformers() {
    use glassbox::train::{TrainConfig, Trainer};
    let dir = temp_dir("faults-translator-interop");
    let recipe = "objective = \"seq2seq\"\nseed = 2\n[data]\nbuiltin_size = 200\n\
                  [tokenizer]\nvocab_size = 600\n[model]\nn_layer = 1\nn_head = 2\n\
                  n_embd = 16\nn_positions = 24\n[training]\nsteps = 3\nbatch_size = 4\n\
                  eval_every = 0\neval_batches = 1\n";
    let mut config = TrainConfig::from_toml_str(recipe, &[]).unwrap();
    config.out_dir = Some(dir.join("run"));
    let mut trainer = Trainer::new(config).unwrap();
    trainer.step().unwrap();
    let fresh = trainer.save().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tiny-translator");
    let sentences = [
        "the cat chased the mouse .",
        "les petites vaches ont vu une grenouille blanche près de la forêt .",
    ];
    for folder in [&shipped, &fresh] {
        let loaded =
            glassbox::model::checkpoint::load_translator(folder, &Device::Cpu).expect("loads");
        let ours: Vec<Vec<u32>> = sentences
            .iter()
            .map(|s| {
                loaded
                    .tokenizer
                    .encode(glassbox::tokenizer::translation::Side::Source, s)
                    .unwrap()
                    .ids
            })
            .collect();
        let decoded = loaded.tokenizer.decode(&ours[1]).unwrap();
        assert_eq!(decoded, sentences[1]);
        let script = format!(
            "import json, sys\nfrom transformers import AutoTokenizer\n\
             t = AutoTokenizer.from_pretrained(sys.argv[1])\n\
             ids = [t(s)['input_ids'] for s in {sentences:?}]\n\
             print(json.dumps({{'ids': ids, 'text': t.decode(ids[1], skip_special_tokens=True)}}))\n"
        );
        match Command::new("python3")
            .args(["-c", &script])
            .arg(folder)
            .output()
        {
            Ok(output) if output.status.success() => {
                let line = String::from_utf8_lossy(&output.stdout);
                let theirs: serde_json::Value =
                    serde_json::from_str(line.lines().last().unwrap()).unwrap();
                assert_eq!(
                    theirs["ids"],
                    serde_json::json!(ours),
                    "{}",
                    folder.display()
                );
                assert_eq!(theirs["text"], sentences[1]);
            }
            other => {
                eprintln!(
                    "skipped the transformers half: python3 with transformers is not here ({:?})",
                    other.map(|o| String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .last()
                        .map(str::to_string))
                );
                return;
            }
        }
    }
    let torch = Command::new("python3")
        .args(["-c", "import torch"])
        .output();
    if !torch.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped the MarianMTModel comparison: torch is not installed");
        return;
    }
    let output = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check_transformers.py"))
        .args(["--glassbox", env!("CARGO_BIN_EXE_glassbox")])
        .arg(format!(
            "{}:the black cat chased the mouse .",
            shipped.display()
        ))
        .arg(format!(
            "{}:the small cows saw a white frog .",
            fresh.display()
        ))
        .output()
        .expect("runs the script");
    let report = String::from_utf8_lossy(&output.stdout);
    eprintln!("{report}");
    assert!(
        output.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(report.matches(": OK,").count(), 2, "{report}");
}
