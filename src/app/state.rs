//! What every panel shares: the current text, the loaded models, the worker, notices.
//!
//! Panels get `&mut Shared` in their `ui` method. They read models and inspections from it and
//! send their own commands through it ([`Shared::send`], then [`Shared::take_reply`] on later
//! frames). The shell calls [`Shared::poll`] once per frame to collect the worker's answers.

use eframe::egui;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::assets::ShippedModels;
use super::data::{InspectionData, ModelSource, ModelSummary, Slot};
use super::panels::Action;
use super::worker::{Command, Event, Output, Progress, RequestId, WorkerHandle, WorkerResult};
use crate::lessons::compute::MeasuredRun;

/// The text every view starts with.
pub const DEFAULT_TEXT: &str = "The cat chased the mouse.";

/// How many top predictions inspections ask for.
pub const DEFAULT_TOP_K: usize = 10;

/// The state of something the worker computes for the UI.
#[derive(Debug, Clone)]
pub enum Fetch<T> {
    /// No model in the slot.
    NoModel,
    /// Asked for; the previous result (for another text) meanwhile, if any.
    Pending(Option<T>),
    Ready(T),
    Failed(String),
}

impl<T: Clone> Fetch<T> {
    /// The freshest data there is: ready, or the stale one shown while waiting.
    pub fn data(&self) -> Option<T> {
        match self {
            Fetch::Ready(t) | Fetch::Pending(Some(t)) => Some(t.clone()),
            _ => None,
        }
    }

    pub fn is_pending(&self) -> bool {
        matches!(self, Fetch::Pending(_))
    }
}

/// A message shown as a banner until dismissed.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub message: String,
    pub is_error: bool,
}

/// A model load in progress.
#[derive(Debug, Clone)]
pub struct LoadJob {
    pub request: RequestId,
    pub source: ModelSource,
    /// The place asked for (`None`: the family's).
    pub slot: Option<Slot>,
    pub progress: Option<Progress>,
    pub started: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct InspectKey {
    generation: u64,
    text: String,
    pair: Option<String>,
    full: bool,
}

/// State shared by the shell and every panel.
pub struct Shared {
    /// The text every view works on.
    pub text: String,
    /// The second segment for BERT (sentence pairs); used when `use_pair` is on.
    pub pair: String,
    pub use_pair: bool,
    /// The device models are loaded on ("cpu", "cuda", ...).
    pub device: String,
    /// Where exports go unless a panel is given another path.
    pub export_dir: PathBuf,
    pub top_k: usize,
    pub shipped: ShippedModels,
    /// A view a panel wants opened (by id); the shell switches to it on the next frame.
    pub requested_view: Option<crate::lessons::ViewName>,
    /// Actions a panel asks for ([`Self::request`]); the shell applies them on the next frame.
    pub requested_actions: Vec<Action>,
    pub notices: Vec<Notice>,
    /// The speed of the latest training or fine-tuning run (parameters, tokens/s): the compute
    /// calculator's "this machine".
    pub measured_run: Option<MeasuredRun>,
    worker: WorkerHandle,
    models: BTreeMap<Slot, Arc<ModelSummary>>,
    generations: BTreeMap<Slot, u64>,
    loads: Vec<LoadJob>,
    /// Requests sent and not yet answered, with what they are.
    pending: BTreeMap<RequestId, String>,
    progress: HashMap<RequestId, Progress>,
    replies: HashMap<RequestId, WorkerResult>,
    /// The current text through each model, without and with the full trace.
    inspections: HashMap<(Slot, bool), Cached<InspectKey, Arc<InspectionData>>>,
}

impl Shared {
    pub fn new(worker: WorkerHandle, shipped: ShippedModels) -> Self {
        Self {
            text: DEFAULT_TEXT.to_string(),
            pair: "It ran under the table.".to_string(),
            use_pair: false,
            device: "cpu".to_string(),
            export_dir: PathBuf::from("exports"),
            top_k: DEFAULT_TOP_K,
            shipped,
            requested_view: None,
            requested_actions: Vec::new(),
            notices: Vec::new(),
            measured_run: None,
            worker,
            models: BTreeMap::new(),
            generations: BTreeMap::new(),
            loads: Vec::new(),
            pending: BTreeMap::new(),
            progress: HashMap::new(),
            replies: HashMap::new(),
            inspections: HashMap::new(),
        }
    }

    // ---- worker traffic -----------------------------------------------------------------------

    /// Sends a command; the answer is kept for [`Self::take_reply`].
    pub fn send(&mut self, command: Command) -> RequestId {
        let description = command.describe();
        let id = self.worker.send(command);
        self.pending.insert(id, description);
        id
    }

    /// The answer to `request`, once (later calls give `None`).
    pub fn take_reply(&mut self, request: RequestId) -> Option<WorkerResult> {
        self.replies.remove(&request)
    }

    pub fn is_pending(&self, request: RequestId) -> bool {
        self.pending.contains_key(&request)
    }

    /// The latest progress report of `request`.
    pub fn progress(&self, request: RequestId) -> Option<&Progress> {
        self.progress.get(&request)
    }

    /// What the worker is doing, if anything: the oldest unanswered request.
    pub fn busy(&self) -> Option<(usize, &str)> {
        self.pending
            .values()
            .next()
            .map(|d| (self.pending.len(), d.as_str()))
    }

    /// Stops waiting for `request` (its answer, if any, is dropped).
    pub fn cancel(&mut self, request: RequestId) {
        self.worker.cancel(request);
        self.pending.remove(&request);
        self.progress.remove(&request);
        self.loads.retain(|l| l.request != request);
    }

    /// Collects the worker's answers. The shell calls this once per frame.
    pub fn poll(&mut self, ctx: &egui::Context) {
        self.worker.set_repaint(ctx);
        while let Some(event) = self.worker.try_recv() {
            match event {
                Event::Progress { request, progress } => {
                    if let Some(job) = self.loads.iter_mut().find(|l| l.request == request) {
                        job.progress = Some(progress.clone());
                    }
                    self.progress.insert(request, progress);
                }
                Event::Done { request, result } => self.on_done(request, result),
            }
        }
    }

    fn on_done(&mut self, request: RequestId, result: WorkerResult) {
        if self.pending.remove(&request).is_none() {
            return; // cancelled or superseded
        }
        self.progress.remove(&request);
        if let Some(index) = self.loads.iter().position(|l| l.request == request) {
            let job = self.loads.remove(index);
            match result {
                Ok(Output::Loaded(summary)) => {
                    *self.generations.entry(summary.slot).or_default() += 1;
                    self.models.insert(summary.slot, summary);
                }
                Ok(other) => self.error(format!("unexpected answer to a load: {other:?}")),
                Err(message) => {
                    self.error(format!("Cannot load {}: {message}", job.source.describe()))
                }
            }
            return;
        }
        if let Ok(Output::Unloaded(slot)) = &result {
            self.models.remove(slot);
            *self.generations.entry(*slot).or_default() += 1;
        }
        self.replies.insert(request, result);
    }

    // ---- models -------------------------------------------------------------------------------

    /// The model in `slot`, if one is loaded.
    pub fn model(&self, slot: Slot) -> Option<&Arc<ModelSummary>> {
        self.models.get(&slot)
    }

    /// The places a picker offers: the causal and bidirectional families' (loaded or not), the
    /// translator's when one is loaded, then every extra place that holds a model.
    pub fn slots_to_show(&self) -> Vec<Slot> {
        let mut slots = Slot::ALL.to_vec();
        if self.models.contains_key(&Slot::Translator) {
            slots.push(Slot::Translator);
        }
        slots.extend(self.models.keys().filter(|s| !s.is_family_place()));
        slots
    }

    /// Every place that holds a model: the families' first, then the extra ones.
    pub fn loaded_slots(&self) -> Vec<Slot> {
        self.models.keys().copied().collect()
    }

    /// "tiny-gpt (GPT)", for pickers: the model's name and its place.
    pub fn slot_name(&self, slot: Slot) -> String {
        match self.model(slot) {
            Some(model) => format!("{} ({})", model.name, slot.short()),
            None => slot.label(),
        }
    }

    /// Forgets the model in `slot`.
    pub fn unload(&mut self, slot: Slot) -> RequestId {
        self.send(Command::Unload { slot })
    }

    /// Changes whenever the model in `slot` changes; panels key their caches on it.
    pub fn generation(&self, slot: Slot) -> u64 {
        self.generations.get(&slot).copied().unwrap_or(0)
    }

    /// Loads a model on the current device; it lands in the place of its family.
    pub fn load_model(&mut self, source: ModelSource) -> RequestId {
        self.load_model_into(source, None)
    }

    /// Loads a model into a place of its own, beside the ones already loaded.
    pub fn load_extra_model(&mut self, source: ModelSource) -> RequestId {
        let taken: Vec<Slot> = self
            .models
            .keys()
            .copied()
            .chain(self.loads.iter().filter_map(|job| job.slot))
            .collect();
        let slot = (0..)
            .map(Slot::extra)
            .find(|slot| !taken.contains(slot))
            .unwrap_or(Slot::extra(0));
        self.load_model_into(source, Some(slot))
    }

    /// Loads a model into `slot` (`None`: its family's place).
    pub fn load_model_into(&mut self, source: ModelSource, slot: Option<Slot>) -> RequestId {
        let request = self.send(Command::Load {
            source: source.clone(),
            device: self.device.clone(),
            slot,
        });
        self.loads.push(LoadJob {
            request,
            source,
            slot,
            progress: None,
            started: Instant::now(),
        });
        request
    }

    /// Loads in progress.
    pub fn loads(&self) -> &[LoadJob] {
        &self.loads
    }

    /// Switches the device and reloads the loaded models on it.
    pub fn set_device(&mut self, device: &str) {
        if self.device == device {
            return;
        }
        self.device = device.to_string();
        let sources: Vec<ModelSource> = self.models.values().map(|m| m.source.clone()).collect();
        for source in sources {
            self.load_model(source);
        }
    }

    /// The pair text, when pairs are on and it is not empty.
    pub fn pair_text(&self) -> Option<String> {
        (self.use_pair && !self.pair.trim().is_empty()).then(|| self.pair.clone())
    }

    /// The current text through the model in `slot` (attention, masks, predictions), asked for
    /// when needed and cached until the text or the model changes.
    pub fn inspection(&mut self, slot: Slot) -> Fetch<Arc<InspectionData>> {
        self.inspection_with(slot, false)
    }

    /// Like [`Self::inspection`], with every stage of the trace ([`InspectionData::stages`]).
    pub fn inspection_full(&mut self, slot: Slot) -> Fetch<Arc<InspectionData>> {
        self.inspection_with(slot, true)
    }

    fn inspection_with(&mut self, slot: Slot, full: bool) -> Fetch<Arc<InspectionData>> {
        if !self.models.contains_key(&slot) {
            return Fetch::NoModel;
        }
        let key = InspectKey {
            generation: self.generation(slot),
            text: self.text.clone(),
            pair: if slot == Slot::Bert {
                self.pair_text()
            } else {
                None
            },
            full,
        };
        let command = Command::Inspect {
            slot,
            text: key.text.clone(),
            pair: key.pair.clone(),
            top_k: self.top_k,
            full_trace: full,
        };
        // Out of the map while it asks, since asking needs all of `self`.
        let mut cache = self.inspections.remove(&(slot, full)).unwrap_or_default();
        let fetch = cache.fetch(
            self,
            key,
            || command,
            |out| match out {
                Output::Inspection(data) => Some(data),
                _ => None,
            },
        );
        self.inspections.insert((slot, full), cache);
        fetch
    }

    /// Asks the shell to apply `action` on the next frame (as a lesson's would be: the view it
    /// concerns opens), e.g. the Model view's map opening a stage in Step through.
    pub fn request(&mut self, action: Action) {
        self.requested_actions.push(action);
    }

    // ---- notices ------------------------------------------------------------------------------

    pub fn error(&mut self, message: impl Into<String>) {
        let notice = Notice {
            message: message.into(),
            is_error: true,
        };
        if !self.notices.contains(&notice) {
            self.notices.push(notice);
        }
    }

    pub fn info(&mut self, message: impl Into<String>) {
        let notice = Notice {
            message: message.into(),
            is_error: false,
        };
        if !self.notices.contains(&notice) {
            self.notices.push(notice);
        }
    }
}

/// One value a panel asks the worker for, cached under a key (text, model generation, ...):
/// asked again only when the key changes.
#[derive(Debug)]
pub struct Cached<K, T> {
    key: Option<K>,
    request: Option<RequestId>,
    result: Option<Result<T, String>>,
    last: Option<T>,
}

impl<K, T> Default for Cached<K, T> {
    fn default() -> Self {
        Self {
            key: None,
            request: None,
            result: None,
            last: None,
        }
    }
}

impl<K: PartialEq, T: Clone> Cached<K, T> {
    /// The value for `key`: sends `command()` when the key changed, then picks up the answer
    /// with `extract` on a later frame.
    pub fn fetch(
        &mut self,
        shared: &mut Shared,
        key: K,
        command: impl FnOnce() -> Command,
        extract: impl FnOnce(Output) -> Option<T>,
    ) -> Fetch<T> {
        if self.key.as_ref() != Some(&key) {
            self.key = Some(key);
            self.result = None;
            if let Some(old) = self.request.take() {
                shared.cancel(old);
            }
            self.request = Some(shared.send(command()));
        }
        if let Some(request) = self.request
            && let Some(reply) = shared.take_reply(request)
        {
            self.request = None;
            let result = match reply {
                Ok(output) => extract(output).ok_or_else(|| "unexpected answer".to_string()),
                Err(message) => Err(message),
            };
            if let Ok(value) = &result {
                self.last = Some(value.clone());
            }
            self.result = Some(result);
        }
        match &self.result {
            Some(Ok(value)) => Fetch::Ready(value.clone()),
            Some(Err(message)) => Fetch::Failed(message.clone()),
            None => Fetch::Pending(self.last.clone()),
        }
    }

    /// Forgets the key, so the next `fetch` asks again.
    pub fn invalidate(&mut self) {
        self.key = None;
    }

    /// The last good value, whatever the key.
    pub fn last(&self) -> Option<&T> {
        self.last.as_ref()
    }
}
