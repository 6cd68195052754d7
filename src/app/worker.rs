//! The model worker: one thread that owns the loaded models and does every forward pass, so the
//! UI thread never does.
//!
//! The UI sends a [`Command`] with [`WorkerHandle::send`] and gets a [`RequestId`] back; the
//! worker answers with [`Event::Done`] (and, for downloads, [`Event::Progress`] first), then asks
//! egui for a repaint. Results are plain data ([`Output`]): matrices of `f32`, token lists,
//! summaries — never tensors.
//!
//! Commands are answered in order. When several inspections of the same slot are queued (the
//! user is typing), only the newest runs; the older ones are answered with an error saying they
//! were superseded. Hub downloads run on a helper thread so the worker stays responsive; when the
//! files are in the cache the worker loads them.
//!
//! Every question a view asks has its own command and its own typed answer; the computing is done
//! by library functions ([`crate::analysis`], [`crate::inspect`], [`crate::translate`]). A view
//! that needs something new adds a command here and a function there.

use eframe::egui;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use crate::analysis::embeddings::{PcaResult, WordComparison, compare_word, pca_of_embeddings};
use crate::analysis::predict::{
    NextData, QaResult, answer, mask_token, next_data, next_sentence_probability,
};
use crate::error::{GlassboxError, Result};
use crate::hub::{self, HubEvent};
use crate::inspect;
use crate::model::checkpoint::{self, LoadedModel, LoadedTranslator};
use crate::tokenizer::Tokenizer;

use super::data::{
    InspectionData, ModelSource, ModelSummary, Slot, TokenizedText, TokenizerComparison,
    VocabEntry, vocabulary,
};

/// Identifies one request; every [`Event`] names the request it answers.
pub type RequestId = u64;

/// What the UI can ask of the worker.
pub enum Command {
    /// Load a model onto `device` ("cpu", "cuda", ...) into `slot`, or (`None`) into its
    /// family's place (causal → [`Slot::Gpt`], otherwise [`Slot::Bert`]), replacing what was there.
    Load {
        source: ModelSource,
        device: String,
        slot: Option<Slot>,
    },
    /// Forget the model in a slot.
    Unload { slot: Slot },
    /// Tokenize `text` (+ `pair`, bidirectional models only) and run the traced forward pass.
    /// With `full_trace` every recorded tensor comes back as [`InspectionData::stages`].
    Inspect {
        slot: Slot,
        text: String,
        pair: Option<String>,
        top_k: usize,
        full_trace: bool,
    },
    /// The GPT's next-token logits after `ids`, or after the tokenized `prompt` when `ids` is
    /// `None` ([`Output::NextToken`]); `ids[prompt_len..]` are generated tokens.
    NextToken {
        slot: Slot,
        prompt: String,
        ids: Option<Vec<u32>>,
        prompt_len: usize,
    },
    /// The tokenizer's mask token ([`Output::MaskToken`]).
    MaskToken { slot: Slot },
    /// P(`b` follows `a`) from BERT's next-sentence head ([`Output::NextSentence`]).
    NextSentence { slot: Slot, a: String, b: String },
    /// Extractive QA ([`Output::Answer`]).
    Answer {
        slot: Slot,
        question: String,
        context: String,
    },
    /// The token embeddings on their first two principal components, `sample` vocabulary rows
    /// beside the tokens of `text` ([`Output::Pca`]).
    Pca {
        slot: Slot,
        text: String,
        sample: usize,
    },
    /// `word` in two sentences, layer by layer ([`Output::WordComparison`]).
    CompareWord {
        slot: Slot,
        word: String,
        a: String,
        b: String,
    },
    /// `text` through the slot's tokenizer, with the explanation of every split.
    Tokenize {
        slot: Slot,
        text: String,
        /// Sentence B, for a model that reads pairs (BERT); ignored by others.
        pair: Option<String>,
    },
    /// The slot's whole vocabulary, sorted by id.
    Vocabulary { slot: Slot },
    /// Char, byte-level BPE and WordPiece tokenizers trained on the built-in corpus (cached per
    /// vocabulary size), plus the loaded models' tokenizers, all on `text`.
    CompareTokenizers { text: String, vocab_size: usize },
    /// Translate `text` with the encoder–decoder in `slot`, keeping every decoder step and the
    /// three kinds of attention ([`Output::Translation`]).
    Translate {
        slot: Slot,
        text: String,
        strategy: crate::translate::Strategy,
        /// Candidates shown per step.
        top: usize,
    },
}

impl Command {
    /// A short description for the status bar.
    pub fn describe(&self) -> String {
        match self {
            Command::Load { source, .. } => format!("loading {}", source.describe()),
            Command::Unload { slot } => format!("unloading {}", slot.short()),
            Command::Inspect { slot, .. } => format!("running {} on the text", slot.short()),
            Command::NextToken { slot, .. } => format!("{} next-token logits", slot.short()),
            Command::MaskToken { slot } => format!("reading {} mask token", slot.short()),
            Command::NextSentence { slot, .. } => {
                format!("{} next-sentence prediction", slot.short())
            }
            Command::Answer { slot, .. } => format!("{} question answering", slot.short()),
            Command::Pca { slot, .. } => format!("PCA of {} token embeddings", slot.short()),
            Command::CompareWord { slot, word, .. } => {
                format!("comparing {word:?} in two sentences with {}", slot.short())
            }
            Command::Tokenize { slot, .. } => format!("tokenizing with {}", slot.short()),
            Command::Vocabulary { slot } => format!("reading {} vocabulary", slot.short()),
            Command::CompareTokenizers { .. } => "training tokenizers".to_string(),
            Command::Translate { slot, .. } => format!("translating with {}", slot.short()),
        }
    }
}

/// How far a long request has come.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub message: String,
    /// 0..=1 when known.
    pub fraction: Option<f32>,
}

/// A finished request's result.
pub enum Output {
    Loaded(Arc<ModelSummary>),
    Unloaded(Slot),
    Inspection(Arc<InspectionData>),
    NextToken(Arc<NextData>),
    MaskToken(Option<String>),
    NextSentence(Option<f32>),
    Answer(Arc<QaResult>),
    Pca(Arc<PcaResult>),
    WordComparison(Arc<WordComparison>),
    Tokenized(Arc<TokenizedText>),
    Vocabulary(Arc<Vec<VocabEntry>>),
    Tokenizers(Arc<TokenizerComparison>),
    Translation(Arc<crate::translate::TranslationSteps>),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Output::Loaded(_) => "Loaded",
            Output::Unloaded(_) => "Unloaded",
            Output::Inspection(_) => "Inspection",
            Output::NextToken(_) => "NextToken",
            Output::MaskToken(_) => "MaskToken",
            Output::NextSentence(_) => "NextSentence",
            Output::Answer(_) => "Answer",
            Output::Pca(_) => "Pca",
            Output::WordComparison(_) => "WordComparison",
            Output::Tokenized(_) => "Tokenized",
            Output::Vocabulary(_) => "Vocabulary",
            Output::Tokenizers(_) => "Tokenizers",
            Output::Translation(_) => "Translation",
        };
        f.write_str(name)
    }
}

/// Errors travel as text: the library's message, ready for the window.
pub type WorkerResult = std::result::Result<Output, String>;

/// What the worker sends back.
#[derive(Debug)]
pub enum Event {
    Progress {
        request: RequestId,
        progress: Progress,
    },
    Done {
        request: RequestId,
        result: WorkerResult,
    },
}

/// The models the worker owns, one per slot, plus tokenizers trained for comparisons.
#[derive(Default)]
pub struct Models {
    slots: HashMap<Slot, (LoadedModel, Arc<ModelSummary>)>,
    /// Encoder–decoders again, with their tokenizers and generation settings (the tensors are
    /// shared with the entry in `slots`).
    translators: HashMap<Slot, LoadedTranslator>,
    trained: HashMap<usize, Vec<(String, Tokenizer)>>,
}

impl Models {
    pub fn get(&self, slot: Slot) -> Option<&LoadedModel> {
        self.slots.get(&slot).map(|(m, _)| m)
    }

    pub fn summary(&self, slot: Slot) -> Option<&Arc<ModelSummary>> {
        self.slots.get(&slot).map(|(_, s)| s)
    }

    /// The encoder–decoder in `slot`.
    pub fn translator(&self, slot: Slot) -> Result<&LoadedTranslator> {
        self.translators.get(&slot).ok_or_else(|| {
            GlassboxError::InvalidInput(format!(
                "{} is not an encoder–decoder: load a translator (assets/tiny-translator)",
                slot.label()
            ))
        })
    }

    /// The display name of the model in `slot` ("" when none).
    fn name(&self, slot: Slot) -> String {
        self.summary(slot)
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }

    fn require(&self, slot: Slot) -> Result<&LoadedModel> {
        self.get(slot).ok_or_else(|| {
            GlassboxError::InvalidInput(format!("no {} model is loaded", slot.label()))
        })
    }
}

enum Message {
    Request(RequestId, Command),
    /// A download finished (or failed) on its helper thread.
    Fetched {
        request: RequestId,
        source: ModelSource,
        device: String,
        slot: Option<Slot>,
        dir: Result<PathBuf>,
    },
    SetRepaint(egui::Context),
    Shutdown,
}

/// The UI's end of the worker.
pub struct WorkerHandle {
    sender: Sender<Message>,
    events: Receiver<Event>,
    next_id: RequestId,
    cancelled: Arc<Mutex<HashSet<RequestId>>>,
    repaint_set: bool,
    /// Answers made up on this side when the worker cannot be reached.
    failed: VecDeque<Event>,
}

impl WorkerHandle {
    /// Starts the worker thread.
    pub fn spawn() -> Self {
        let (sender, inbox) = mpsc::channel();
        let (outbox, events) = mpsc::channel();
        let cancelled = Arc::new(Mutex::new(HashSet::new()));
        let worker = Worker {
            inbox,
            self_sender: sender.clone(),
            outbox,
            repaint: None,
            models: Models::default(),
            cancelled: cancelled.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("glassbox-worker".into())
            .spawn(move || worker.run());
        if let Err(e) = spawned {
            // Without a thread every request is answered with this error (the receiver is gone).
            eprintln!("glassbox: cannot start the model worker: {e}");
        }
        Self {
            sender,
            events,
            next_id: 1,
            cancelled,
            repaint_set: false,
            failed: VecDeque::new(),
        }
    }

    /// Queues `command`; its answer will carry the returned id.
    pub fn send(&mut self, command: Command) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        if self.sender.send(Message::Request(id, command)).is_err() {
            // The worker thread is gone: answer here so the UI shows an error, not a spinner.
            self.failed.push_back(Event::Done {
                request: id,
                result: Err("the model worker has stopped; restart Glassbox".into()),
            });
        }
        id
    }

    /// The next event, if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.failed
            .pop_front()
            .or_else(|| self.events.try_recv().ok())
    }

    /// Stops `request`: a download stops at its next read (and removes its partial file), and
    /// its model is not loaded.
    pub fn cancel(&self, request: RequestId) {
        if let Ok(mut set) = self.cancelled.lock() {
            set.insert(request);
        }
    }

    /// Lets the worker wake the UI when results arrive (done once, on the first frame).
    pub fn set_repaint(&mut self, ctx: &egui::Context) {
        if !self.repaint_set {
            self.repaint_set = true;
            let _ = self.sender.send(Message::SetRepaint(ctx.clone()));
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        let _ = self.sender.send(Message::Shutdown);
    }
}

struct Worker {
    inbox: Receiver<Message>,
    self_sender: Sender<Message>,
    outbox: Sender<Event>,
    repaint: Option<egui::Context>,
    models: Models,
    cancelled: Arc<Mutex<HashSet<RequestId>>>,
}

impl Worker {
    fn run(mut self) {
        let mut queue: VecDeque<Message> = VecDeque::new();
        loop {
            if queue.is_empty() {
                match self.inbox.recv() {
                    Ok(message) => queue.push_back(message),
                    Err(_) => return,
                }
            }
            while let Ok(message) = self.inbox.try_recv() {
                queue.push_back(message);
            }
            let Some(message) = queue.pop_front() else {
                continue;
            };
            match message {
                Message::Shutdown => return,
                Message::SetRepaint(ctx) => self.repaint = Some(ctx),
                Message::Fetched {
                    request,
                    source,
                    device,
                    slot,
                    dir,
                } => {
                    let result = dir.and_then(|dir| self.load(&dir, source, &device, slot));
                    self.finish(request, result.map_err(|e| e.to_string()));
                }
                Message::Request(request, command) => {
                    if self.is_cancelled(request) {
                        self.finish(request, Err("cancelled".into()));
                        continue;
                    }
                    if let Command::Inspect { slot, .. } = &command
                        && superseded(*slot, &queue)
                    {
                        self.finish(request, Err("superseded by a newer request".into()));
                        continue;
                    }
                    self.handle(request, command);
                }
            }
        }
    }

    fn is_cancelled(&self, request: RequestId) -> bool {
        self.cancelled
            .lock()
            .map(|set| set.contains(&request))
            .unwrap_or(false)
    }

    fn send(&self, event: Event) {
        let _ = self.outbox.send(event);
        if let Some(ctx) = &self.repaint {
            ctx.request_repaint();
        }
    }

    fn finish(&self, request: RequestId, result: WorkerResult) {
        self.send(Event::Done { request, result });
    }

    fn handle(&mut self, request: RequestId, command: Command) {
        // A panic in library code must not take the worker down with it.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.execute(request, command)
        }));
        match outcome {
            Ok(Some(result)) => self.finish(request, result.map_err(|e| e.to_string())),
            Ok(None) => {} // answered later (download)
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                self.finish(request, Err(format!("internal error: {message}")));
            }
        }
    }

    /// Runs a command; `None` when the answer comes later.
    fn execute(&mut self, request: RequestId, command: Command) -> Option<Result<Output>> {
        Some(match command {
            Command::Load {
                source,
                device,
                slot,
            } => match &source {
                ModelSource::Folder(dir) => {
                    let dir = dir.clone();
                    self.load(&dir, source, &device, slot)
                }
                ModelSource::Hub(id) => {
                    self.start_download(request, id.clone(), source.clone(), device, slot);
                    return None;
                }
            },
            Command::Unload { slot } => {
                self.models.slots.remove(&slot);
                self.models.translators.remove(&slot);
                Ok(Output::Unloaded(slot))
            }
            Command::Inspect {
                slot,
                text,
                pair,
                top_k,
                full_trace,
            } => self.inspect(slot, &text, pair.as_deref(), top_k, full_trace),
            Command::NextToken {
                slot,
                prompt,
                ids,
                prompt_len,
            } => self.models.require(slot).and_then(|m| {
                let name = self.models.name(slot);
                next_data(m, &name, &prompt, ids, prompt_len)
                    .map(|d| Output::NextToken(Arc::new(d)))
            }),
            Command::MaskToken { slot } => self
                .models
                .require(slot)
                .and_then(mask_token)
                .map(Output::MaskToken),
            Command::NextSentence { slot, a, b } => self
                .models
                .require(slot)
                .and_then(|m| next_sentence_probability(m, &a, &b))
                .map(Output::NextSentence),
            Command::Answer {
                slot,
                question,
                context,
            } => self
                .models
                .require(slot)
                .and_then(|m| answer(m, &question, &context))
                .map(|r| Output::Answer(Arc::new(r))),
            Command::Pca { slot, text, sample } => self.models.require(slot).and_then(|m| {
                let name = self.models.name(slot);
                pca_of_embeddings(m, &name, &text, sample).map(|r| Output::Pca(Arc::new(r)))
            }),
            Command::CompareWord { slot, word, a, b } => self.models.require(slot).and_then(|m| {
                let name = self.models.name(slot);
                compare_word(m, &name, &word, &a, &b).map(|r| Output::WordComparison(Arc::new(r)))
            }),
            Command::Tokenize { slot, text, pair } => self.tokenize(slot, &text, pair.as_deref()),
            Command::Vocabulary { slot } => self
                .models
                .require(slot)
                .and_then(|m| m.tokenizer())
                .map(|t| Output::Vocabulary(Arc::new(vocabulary(t)))),
            Command::CompareTokenizers { text, vocab_size } => {
                self.compare_tokenizers(&text, vocab_size)
            }
            Command::Translate {
                slot,
                text,
                strategy,
                top,
            } => self.models.translator(slot).and_then(|t| {
                crate::translate::translate_step_by_step(t, &text, strategy, top)
                    .map(|steps| Output::Translation(Arc::new(steps)))
            }),
        })
    }

    fn load(
        &mut self,
        dir: &std::path::Path,
        source: ModelSource,
        device: &str,
        slot: Option<Slot>,
    ) -> Result<Output> {
        let device_handle = crate::device::parse_device(device)?;
        let loaded = checkpoint::load_dir(dir, &device_handle)?;
        // An encoder–decoder brings its own tokenizers (SentencePiece pair or tokenizer.json).
        let translator = if loaded.config.family().has_cross_attention() {
            Some(LoadedTranslator::from_loaded(loaded.clone())?)
        } else {
            None
        };
        if loaded.tokenizer.is_none() && translator.is_none() {
            return Err(GlassboxError::MissingFile {
                path: dir.join(checkpoint::TOKENIZER_FILE),
            });
        }
        let mut summary = ModelSummary::from_loaded(&loaded, source, device);
        if let Some(slot) = slot {
            summary.slot = slot;
        }
        let summary = Arc::new(summary);
        match translator {
            Some(translator) => self.models.translators.insert(summary.slot, translator),
            None => self.models.translators.remove(&summary.slot),
        };
        self.models
            .slots
            .insert(summary.slot, (loaded, summary.clone()));
        Ok(Output::Loaded(summary))
    }

    fn start_download(
        &self,
        request: RequestId,
        repo_id: String,
        source: ModelSource,
        device: String,
        slot: Option<Slot>,
    ) {
        let outbox = self.outbox.clone();
        let back = self.self_sender.clone();
        let repaint = self.repaint.clone();
        let cancelled = self.cancelled.clone();
        let spawned = std::thread::Builder::new()
            .name("glassbox-download".into())
            .spawn(move || {
                let mut last_fraction = -1.0f32;
                // Asked between reads: a cancelled download stops and leaves no partial file.
                let is_cancelled = || {
                    cancelled
                        .lock()
                        .map(|s| s.contains(&request))
                        .unwrap_or(false)
                };
                let options = hub::FetchOptions {
                    cancelled: &is_cancelled,
                    ..hub::FetchOptions::from_env()
                };
                let dir = hub::fetch_model_with(&repo_id, &options, |event| {
                    let progress = match event {
                        HubEvent::Start { file, size } => Progress {
                            message: format!("{file}: starting ({})", mb(size)),
                            fraction: Some(0.0),
                        },
                        HubEvent::Progress { file, done, size } => {
                            let fraction = if size > 0 {
                                (done as f32 / size as f32).clamp(0.0, 1.0)
                            } else {
                                0.0
                            };
                            // At most ~200 updates per file.
                            if (fraction - last_fraction).abs() < 0.005 {
                                return;
                            }
                            last_fraction = fraction;
                            Progress {
                                message: format!("{file}: {} of {}", mb(done), mb(size)),
                                fraction: Some(fraction),
                            }
                        }
                        HubEvent::Finished { file } => {
                            last_fraction = -1.0;
                            Progress {
                                message: format!("{file}: done"),
                                fraction: Some(1.0),
                            }
                        }
                    };
                    let _ = outbox.send(Event::Progress { request, progress });
                    if let Some(ctx) = &repaint {
                        ctx.request_repaint();
                    }
                });
                let dir = match dir {
                    Ok(_) if is_cancelled() => Err(GlassboxError::Hub("download cancelled".into())),
                    other => other,
                };
                let _ = back.send(Message::Fetched {
                    request,
                    source,
                    device,
                    slot,
                    dir,
                });
            });
        if let Err(e) = spawned {
            self.finish(request, Err(format!("cannot start the download: {e}")));
        }
    }

    fn inspect(
        &self,
        slot: Slot,
        text: &str,
        pair: Option<&str>,
        top_k: usize,
        full_trace: bool,
    ) -> Result<Output> {
        let loaded = self.models.require(slot)?;
        let name = self
            .models
            .summary(slot)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        // An encoder–decoder: the text and its greedy translation.
        if let Some(translator) = self.models.translators.get(&slot) {
            let data = InspectionData::from_translation(translator, slot, &name, text, full_trace)?;
            return Ok(Output::Inspection(Arc::new(data)));
        }
        // A causal model reads one text; the pair is for BERT's two segments.
        let pair = if !loaded.config.family().reads_pairs() {
            None
        } else {
            pair
        };
        let inspection = inspect::inspect(loaded, text, pair, top_k)?;
        let data = InspectionData::from_inspection(
            loaded,
            slot,
            &name,
            text,
            pair,
            &inspection,
            full_trace,
        )?;
        Ok(Output::Inspection(Arc::new(data)))
    }

    fn tokenize(&self, slot: Slot, text: &str, pair: Option<&str>) -> Result<Output> {
        let loaded = self.models.require(slot)?;
        let name = self
            .models
            .summary(slot)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let pair = pair.filter(|_| loaded.config.family().reads_pairs());
        let tokenized = TokenizedText::new(&name, loaded.tokenizer()?, text, pair)?;
        Ok(Output::Tokenized(Arc::new(tokenized)))
    }

    fn compare_tokenizers(&mut self, text: &str, vocab_size: usize) -> Result<Output> {
        let corpus = builtin_corpus();
        if let std::collections::hash_map::Entry::Vacant(entry) =
            self.models.trained.entry(vocab_size)
        {
            let trained = vec![
                (
                    "character-level".to_string(),
                    Tokenizer::train_char(corpus)?,
                ),
                (
                    format!("byte-level BPE ({vocab_size})"),
                    Tokenizer::train_bpe(corpus, vocab_size)?,
                ),
                (
                    format!("WordPiece ({vocab_size})"),
                    Tokenizer::train_wordpiece(corpus, vocab_size)?,
                ),
            ];
            entry.insert(trained);
        }
        let mut entries = Vec::new();
        if let Some(trained) = self.models.trained.get(&vocab_size) {
            for (name, tokenizer) in trained {
                entries.push(TokenizedText::new(name, tokenizer, text, None)?);
            }
        }
        for slot in Slot::ALL {
            if let (Some(loaded), Some(summary)) =
                (self.models.get(slot), self.models.summary(slot))
                && let Some(tokenizer) = &loaded.tokenizer
            {
                let name = format!("{} ({})", summary.name, slot.short());
                entries.push(TokenizedText::new(&name, tokenizer, text, None)?);
            }
        }
        Ok(Output::Tokenizers(Arc::new(TokenizerComparison {
            text: text.to_string(),
            corpus: format!(
                "built-in corpus ({} characters, {} words)",
                corpus.chars().count(),
                corpus.split_whitespace().count()
            ),
            entries,
        })))
    }
}

/// Whether a later inspection of `slot` is already queued.
fn superseded(slot: Slot, queue: &VecDeque<Message>) -> bool {
    queue
        .iter()
        .any(|m| matches!(m, Message::Request(_, Command::Inspect { slot: s, .. }) if *s == slot))
}

fn mb(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The text the Tokens view trains its char / BPE / WordPiece tokenizers on: a few paragraphs of
/// plain English about the things the course talks about, then 2,000 sentences of the library's
/// toy English ([`crate::data::toy_english_corpus`]).
pub fn builtin_corpus() -> &'static str {
    static CORPUS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut corpus = BUILTIN_CORPUS.to_string();
        corpus.push_str(&crate::data::toy_english_corpus(0, 2000));
        corpus
    })
}

const BUILTIN_CORPUS: &str = "\
The cat chased the mouse. The mouse ran under the table, and the cat waited by the door. \
A dog barked at the cat, and the cat jumped onto the chair. The children laughed at the cat and \
the dog. The cat sat on the mat. The dog sat on the rug. The mouse hid in the kitchen.
She went to the bank to deposit her money. He sat on the bank of the river and watched the water. \
The river bank was muddy after the rain. The bank opened a new branch in the town.
A language model reads text as tokens and predicts the next token. Tokens can be characters, \
pieces of words, or whole words. Words that are common become single tokens; rare words are \
split into smaller pieces. The tokenizer learns its pieces from a corpus of text.
Attention lets every token look at the other tokens. In a causal model a token can only look at \
the tokens before it. In a bidirectional model every token can look at every other token. \
The transformer stacks layers of attention and feed-forward networks.
Training a model means showing it many examples and adjusting its weights a little after each \
batch. The loss goes down as the model learns. Fine-tuning starts from a pretrained model and \
trains it further on a smaller data set for a new task.
The quick brown fox jumps over the lazy dog. The weather was warm and the sky was blue. \
They walked through the park, talked about books, and ate lunch under a tree. \
Reading, writing, and thinking are the things that people do with language every day. \
The teacher asked the students a question, and the students answered it together.
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supersedes_only_the_same_slot() {
        let mut queue = VecDeque::new();
        queue.push_back(Message::Request(
            2,
            Command::Inspect {
                slot: Slot::Bert,
                text: "a".into(),
                pair: None,
                top_k: 5,
                full_trace: false,
            },
        ));
        assert!(superseded(Slot::Bert, &queue));
        assert!(!superseded(Slot::Gpt, &queue));
    }
}
