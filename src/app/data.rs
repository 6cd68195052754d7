//! Plain data the worker sends to the UI: matrices of `f32`, token lists, summaries.
//!
//! Everything here is built on the worker thread from library results (tensors, tokenizers) and is
//! cheap for the UI to read: no candle op ever runs on the UI thread. The `from_*` constructors
//! that touch tensors are only called by [`super::worker`].

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{GlassboxError, Result};
use crate::inspect::{Inspection, Predictions};
use crate::model::checkpoint::{LoadedModel, LoadedTranslator};
use crate::model::config::ModelConfig;
use crate::model::params::{self, ParamBreakdown};
use crate::model::trace::{LayerField, LayerTrace, Trace, TraceKey, TraceSite};

pub use crate::analysis::tokens::TokenInfo;
use crate::tokenizer::{Tokenizer, TokenizerKind, WordSplit};

/// A loaded model's place in the worker. Three places are the families' own: [`Slot::Gpt`] for
/// the causal model, [`Slot::Bert`] for the bidirectional one and [`Slot::Translator`] for the
/// encoder–decoder (a model loaded "for its family" goes there, replacing what was there, so
/// causal and bidirectional attention can always be shown side by side). Any number of further models get places of their own ([`Slot::extra`]); the
/// side-by-side views pick which two to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "SlotRepr", into = "SlotRepr")]
pub struct Slot(u16);

/// Settings saved before there were extra places wrote "Gpt" / "Bert".
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum SlotRepr {
    Name(String),
    Index(u16),
}

impl From<SlotRepr> for Slot {
    fn from(repr: SlotRepr) -> Self {
        match repr {
            SlotRepr::Name(name) if name == "Bert" => Slot::Bert,
            SlotRepr::Name(name) if name == "Translator" => Slot::Translator,
            SlotRepr::Name(_) => Slot::Gpt,
            SlotRepr::Index(index) => Slot(index),
        }
    }
}

impl From<Slot> for SlotRepr {
    fn from(slot: Slot) -> Self {
        match slot {
            Slot::Gpt => SlotRepr::Name("Gpt".into()),
            Slot::Bert => SlotRepr::Name("Bert".into()),
            Slot::Translator => SlotRepr::Name("Translator".into()),
            Slot(index) => SlotRepr::Index(index),
        }
    }
}

#[allow(non_upper_case_globals)]
impl Slot {
    /// The causal family's place.
    pub const Gpt: Slot = Slot(0);
    /// The bidirectional family's place.
    pub const Bert: Slot = Slot(1);
    /// The encoder–decoder family's place (numbered past every extra place, so places saved
    /// before it existed keep their numbers).
    pub const Translator: Slot = Slot(u16::MAX);
    /// The causal and the bidirectional places: the pair the side-by-side views compare.
    pub const ALL: [Slot; 2] = [Slot::Gpt, Slot::Bert];
    /// Every family's place.
    pub const FAMILY_PLACES: [Slot; 3] = [Slot::Gpt, Slot::Bert, Slot::Translator];

    /// The `n`-th further place (0-based).
    pub fn extra(n: u16) -> Slot {
        Slot(n.saturating_add(2).min(u16::MAX - 1))
    }

    pub fn is_family_place(self) -> bool {
        Slot::FAMILY_PLACES.contains(&self)
    }

    /// "GPT (causal)" / "BERT (bidirectional)" / "model 3".
    pub fn label(self) -> String {
        match self {
            Slot::Gpt => "GPT (causal)".into(),
            Slot::Bert => "BERT (bidirectional)".into(),
            Slot::Translator => "Translator (encoder–decoder)".into(),
            Slot(index) => format!("model {}", index + 1),
        }
    }

    pub fn short(self) -> String {
        match self {
            Slot::Gpt => "GPT".into(),
            Slot::Bert => "BERT".into(),
            Slot::Translator => "MT".into(),
            Slot(index) => format!("M{}", index + 1),
        }
    }

    /// The family place a model of this config belongs in.
    pub fn for_config(config: &ModelConfig) -> Slot {
        if config.family().has_cross_attention() {
            Slot::Translator
        } else if config.is_causal() {
            Slot::Gpt
        } else {
            Slot::Bert
        }
    }
}

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelSource {
    /// A Hugging Face-format folder on disk (shipped, local, or a training run's checkpoint).
    Folder(PathBuf),
    /// A Hub repo id, downloaded into (or read from) the Hugging Face cache.
    Hub(String),
}

impl ModelSource {
    /// The model's folder on this machine, if it is there now (a Hub model: once cached).
    pub fn local_dir(&self) -> Option<PathBuf> {
        match self {
            ModelSource::Folder(dir) => super::assets::is_model_dir(dir).then(|| dir.clone()),
            ModelSource::Hub(id) => crate::hub::cached_model_dir(id),
        }
    }

    /// The model's config, when its folder is here and the config reads.
    pub fn local_config(&self) -> Option<ModelConfig> {
        let dir = self.local_dir()?;
        ModelConfig::from_file(&dir.join(crate::model::checkpoint::CONFIG_FILE)).ok()
    }

    pub fn describe(&self) -> String {
        match self {
            ModelSource::Folder(path) => path.display().to_string(),
            ModelSource::Hub(id) => format!("hub:{id}"),
        }
    }
}

/// A dense row-major matrix of `f32`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    /// A `rows × cols` matrix; `data` must hold `rows * cols` values (it is padded or cut).
    pub fn new(rows: usize, cols: usize, mut data: Vec<f32>) -> Self {
        data.resize(rows * cols, 0.0);
        Self { rows, cols, data }
    }

    /// 1 where a query may look (key ≤ query), 0 above the diagonal: `n × n`.
    pub fn causal(n: usize) -> Self {
        let data = (0..n)
            .flat_map(|r| (0..n).map(move |c| if c <= r { 1.0 } else { 0.0 }))
            .collect();
        Self::new(n, n, data)
    }

    pub fn filled(rows: usize, cols: usize, value: f32) -> Self {
        Self::new(rows, cols, vec![value; rows * cols])
    }

    pub fn from_rows(rows: Vec<Vec<f32>>) -> Self {
        let cols = rows.first().map_or(0, Vec::len);
        let n = rows.len();
        let data = rows
            .into_iter()
            .flat_map(|mut r| {
                r.resize(cols, 0.0);
                r
            })
            .collect();
        Self::new(n, cols, data)
    }

    /// The value at (row, col), `None` outside the matrix.
    pub fn get(&self, row: usize, col: usize) -> Option<f32> {
        if row < self.rows && col < self.cols {
            self.data.get(row * self.cols + col).copied()
        } else {
            None
        }
    }

    pub fn row(&self, row: usize) -> &[f32] {
        let start = (row * self.cols).min(self.data.len());
        let end = ((row + 1) * self.cols).min(self.data.len());
        &self.data[start..end]
    }

    pub fn column(&self, col: usize) -> Vec<f32> {
        (0..self.rows).filter_map(|r| self.get(r, col)).collect()
    }

    /// (min, max) over finite values; (0, 0) when empty.
    pub fn range(&self) -> (f32, f32) {
        let mut lo = f32::INFINITY;
        let mut hi = f32::NEG_INFINITY;
        for &v in self.data.iter().filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if lo > hi { (0.0, 0.0) } else { (lo, hi) }
    }

    /// The element-wise mean of equally shaped matrices.
    pub fn mean(matrices: &[Matrix]) -> Matrix {
        let Some(first) = matrices.first() else {
            return Matrix::default();
        };
        let mut data = vec![0.0; first.data.len()];
        for m in matrices {
            for (sum, v) in data.iter_mut().zip(&m.data) {
                *sum += v;
            }
        }
        let n = matrices.len() as f32;
        data.iter_mut().for_each(|v| *v /= n);
        Matrix::new(first.rows, first.cols, data)
    }

    /// A 2-D tensor (or one with leading size-1 dimensions) as a matrix. Worker only.
    pub fn from_tensor(tensor: &Tensor) -> Result<Matrix> {
        let tensor = tensor.to_dtype(DType::F32)?;
        let dims = tensor.dims().to_vec();
        let (rows, cols) = match dims.as_slice() {
            [] => (1, 1),
            [n] => (1, *n),
            [.., r, c] => (*r, *c),
        };
        let data = tensor.flatten_all()?.to_vec1::<f32>()?;
        if data.len() != rows * cols {
            return Err(GlassboxError::InvalidInput(format!(
                "expected a matrix, got a tensor of shape {dims:?}"
            )));
        }
        Ok(Matrix::new(rows, cols, data))
    }
}

/// An n-dimensional array of `f32` with its shape (batch dimension dropped), for views that show
/// any stage of the forward pass.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Array {
    /// Drops a leading batch dimension of 1. Worker only.
    pub fn from_tensor(tensor: &Tensor) -> Result<Array> {
        let mut tensor = tensor.to_dtype(DType::F32)?;
        if tensor.rank() > 1 && tensor.dim(0)? == 1 {
            tensor = tensor.squeeze(0)?;
        }
        Ok(Array {
            shape: tensor.dims().to_vec(),
            data: tensor.flatten_all()?.to_vec1::<f32>()?,
        })
    }

    /// The trailing two dimensions at `index` of the leading ones, as a matrix: for `[nh, s, d]`
    /// `matrix(&[h])` is head `h`'s `[s, d]`.
    pub fn matrix(&self, index: &[usize]) -> Option<Matrix> {
        let n = self.shape.len();
        if n < 2 || index.len() != n - 2 {
            return (n == 1 && index.is_empty())
                .then(|| Matrix::new(1, self.shape[0], self.data.clone()));
        }
        let (rows, cols) = (self.shape[n - 2], self.shape[n - 1]);
        let mut offset = 0;
        for (i, &ix) in index.iter().enumerate() {
            if ix >= self.shape[i] {
                return None;
            }
            offset = offset * self.shape[i] + ix;
        }
        let start = offset * rows * cols;
        let slice = self.data.get(start..start + rows * cols)?;
        Some(Matrix::new(rows, cols, slice.to_vec()))
    }

    /// Each head's matrix of a `[nh, s, s]` array (the batch squeezed).
    pub fn head_matrices(&self) -> Vec<Matrix> {
        let heads = self.shape.first().copied().unwrap_or(0);
        (0..heads)
            .map(|h| self.matrix(&[h]).unwrap_or_default())
            .collect()
    }

    /// The first matrix of the trailing two dimensions (all leading indices 0): a `[1, s, h]`
    /// stage's `[s, h]`.
    pub fn first_matrix(&self) -> Option<Matrix> {
        self.matrix(&vec![0; self.shape.len().saturating_sub(2)])
    }
}

/// One recorded tensor of the forward pass, by where it sits ([`TraceKey`]). Its numbers are read
/// out of the trace the first time a view asks for them ([`Stage::values`]): a full trace of a
/// long text holds hundreds of tensors (gigabytes at 1,024 tokens of a GPT-2-small-size model),
/// and a view shows one at a time.
#[derive(Debug, Clone)]
pub struct Stage {
    pub key: TraceKey,
    source: StageSource,
    values: OnceLock<Option<Array>>,
}

#[derive(Debug, Clone)]
enum StageSource {
    Recorded(Tensor),
    /// A layer's scores, which the trace computes from its `q` and `k` when asked.
    Recomputed(Box<LayerTrace>, LayerField),
}

impl Stage {
    fn recorded(key: TraceKey, tensor: Tensor) -> Self {
        Self {
            key,
            source: StageSource::Recorded(tensor),
            values: OnceLock::new(),
        }
    }

    /// `field` of `layer` under `key`, if the layer has it.
    fn in_layer(key: TraceKey, layer: &LayerTrace, field: LayerField) -> Option<Self> {
        let source = if field.is_recomputed() {
            (layer.q.is_some() && layer.k.is_some())
                .then(|| StageSource::Recomputed(Box::new(layer.clone()), field))?
        } else {
            StageSource::Recorded(field.of(layer).ok().flatten()?)
        };
        Some(Self {
            key,
            source,
            values: OnceLock::new(),
        })
    }

    /// The tensor's numbers, read (and for the scores, computed) on first use; `None` when they
    /// cannot be.
    pub fn values(&self) -> Option<&Array> {
        self.values
            .get_or_init(|| {
                let tensor = match &self.source {
                    StageSource::Recorded(tensor) => tensor.clone(),
                    StageSource::Recomputed(layer, field) => field.of(layer).ok().flatten()?,
                };
                Array::from_tensor(&tensor).ok()
            })
            .as_ref()
    }
}

/// What a loaded model is, for display: no weights, only descriptions.
#[derive(Debug, Clone)]
pub struct ModelSummary {
    pub slot: Slot,
    /// Folder name (or Hub id).
    pub name: String,
    pub source: ModelSource,
    pub dir: PathBuf,
    pub device: String,
    pub config: ModelConfig,
    /// Every config field Glassbox reads, as `config.json` would name it, sorted.
    pub config_fields: Vec<(String, String)>,
    /// The parameter table for this config with the heads the checkpoint carries.
    pub breakdown: ParamBreakdown,
    /// Parameters actually stored in the weights file (tied copies counted once).
    pub stored_parameters: u64,
    pub tensor_shapes: Vec<(String, Vec<usize>)>,
    pub tokenizer_kind: Option<TokenizerKind>,
    pub tokenizer_vocab_size: usize,
}

impl ModelSummary {
    /// Worker only.
    pub fn from_loaded(loaded: &LoadedModel, source: ModelSource, device: &str) -> Self {
        let name = match &source {
            ModelSource::Hub(id) => id.clone(),
            ModelSource::Folder(_) => loaded.name(),
        };
        let mut config_fields: Vec<(String, String)> = match loaded.config.to_hf_json() {
            serde_json::Value::Object(map) => map
                .into_iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, text)
                })
                .collect(),
            _ => Vec::new(),
        };
        config_fields.sort();
        Self {
            slot: Slot::for_config(&loaded.config),
            name,
            source,
            dir: loaded.dir.clone(),
            device: device.to_string(),
            config: loaded.config.clone(),
            config_fields,
            breakdown: params::breakdown_for_config(&loaded.config),
            stored_parameters: params::actual_count(loaded.tensor_shapes.iter().cloned()),
            tensor_shapes: loaded.tensor_shapes.clone(),
            tokenizer_kind: loaded.tokenizer.as_ref().map(Tokenizer::kind),
            tokenizer_vocab_size: loaded.tokenizer.as_ref().map_or(0, Tokenizer::vocab_size),
        }
    }

    /// Bytes the weights take in float32.
    pub fn memory_bytes(&self) -> u64 {
        params::memory_bytes_f32(self.breakdown.exact_total.max(self.stored_parameters))
    }
}

/// One text through one model: tokens, attention of every layer and head, masks, predictions,
/// and (when asked for) every recorded stage of the forward pass.
#[derive(Debug, Clone)]
pub struct InspectionData {
    pub slot: Slot,
    pub model_name: String,
    pub text: String,
    pub pair: Option<String>,
    pub is_causal: bool,
    /// What the model's family declares (its stages, for the step-through).
    pub family: &'static crate::model::family::Family,
    /// The tokens the (output stack's) rows stand for: an encoder–decoder's decoder input.
    pub tokens: Vec<TokenInfo>,
    /// An encoder–decoder's source tokens (the encoder's rows, cross-attention's columns);
    /// empty for other families.
    pub source_tokens: Vec<TokenInfo>,
    /// Layers of the output stack (an encoder–decoder's decoder).
    pub num_layers: usize,
    /// An encoder–decoder's encoder layers (0 for other families).
    pub encoder_layers: usize,
    pub num_heads: usize,
    /// `attention[layer][head]` is `[s, s]`: row = query token, column = key token.
    pub attention: Vec<Vec<Matrix>>,
    /// `masks[layer]` is `[s, s]`: 1 where a query may see a key, 0 where blocked.
    pub masks: Vec<Matrix>,
    pub predictions: Predictions,
    /// Every stage of the trace by name (empty unless the full trace was asked for).
    pub stages: Vec<Stage>,
}

impl InspectionData {
    /// Worker only.
    pub fn from_inspection(
        loaded: &LoadedModel,
        slot: Slot,
        model_name: &str,
        text: &str,
        pair: Option<&str>,
        inspection: &Inspection,
        full_trace: bool,
    ) -> Result<Self> {
        let tokenizer = loaded.tokenizer()?;
        let tokens = TokenInfo::list(tokenizer, &inspection.encoded);
        let s = tokens.len();
        let mut attention = Vec::new();
        let mut masks = Vec::new();
        for layer in &inspection.trace.layers {
            let heads = match &layer.attention_probs {
                Some(probs) => Array::from_tensor(probs)?.head_matrices(), // nh × [s, s]
                None => Vec::new(),
            };
            attention.push(heads);
            let mask = match &layer.mask {
                Some(mask) => {
                    let mask = Array::from_tensor(mask)?;
                    // [1, s, s] or [s, s] after the batch squeeze.
                    mask.first_matrix()
                        .unwrap_or_else(|| Matrix::filled(s, s, 1.0))
                }
                None => Matrix::filled(s, s, 1.0),
            };
            masks.push(mask);
        }
        let stages = if full_trace {
            trace_stages(&inspection.trace)
        } else {
            Vec::new()
        };
        Ok(Self {
            slot,
            model_name: model_name.to_string(),
            text: text.to_string(),
            pair: pair.map(str::to_string),
            is_causal: loaded.config.is_causal(),
            family: loaded.config.family(),
            tokens,
            source_tokens: Vec::new(),
            num_layers: loaded.config.num_layers(),
            encoder_layers: 0,
            num_heads: loaded.config.num_heads(),
            attention,
            masks,
            predictions: inspection.predictions.clone(),
            stages,
        })
    }

    /// An encoder–decoder: the text, its greedy translation teacher-forced through the model with
    /// the trace on. The decoder's input is the start token and the translation; the stages
    /// are the encoder's (`encoder.…`), the decoder's (`layers.…`) and cross-attention's
    /// (`cross.{layer}.…`). Worker only.
    pub fn from_translation(
        translator: &LoadedTranslator,
        slot: Slot,
        model_name: &str,
        text: &str,
        full_trace: bool,
    ) -> Result<Self> {
        let inspection = crate::translate::inspect_translation(translator, text, None)?;
        let readable = |token: &str| translator.tokenizer.readable(token);
        let token_info = |text: String, id: u32| TokenInfo {
            bytes: text.as_bytes().to_vec(),
            special: text.starts_with('<') && text.ends_with('>'),
            shown: readable(&text),
            text,
            id,
            type_id: 0,
            offsets: (0, 0),
        };
        let source_tokens = inspection
            .source_tokens
            .iter()
            .zip(&inspection.source_ids)
            .map(|(t, &id)| token_info(t.clone(), id))
            .collect();
        let tokens: Vec<TokenInfo> = inspection
            .decoder_input_ids
            .iter()
            .map(|&id| {
                let token = translator
                    .tokenizer
                    .target_token(id)
                    .unwrap_or_else(|| format!("<{id}>"));
                token_info(token, id)
            })
            .collect();
        let trace = &inspection.trace;
        let t = tokens.len();
        let mut attention = Vec::new();
        let mut masks = Vec::new();
        for layer in &trace.decoder.layers {
            let heads = match &layer.attention_probs {
                Some(probs) => Array::from_tensor(probs)?.head_matrices(), // nh × [t, t]
                None => Vec::new(),
            };
            attention.push(heads);
            masks.push(Matrix::causal(t));
        }
        let stages = if full_trace {
            let mut stages = trace_stages(&trace.decoder);
            for (i, layer) in trace.cross.iter().enumerate() {
                for field in LayerField::ALL {
                    let key = TraceKey::new(TraceSite::Cross(i, field));
                    stages.extend(Stage::in_layer(key, layer, field));
                }
            }
            for stage in trace_stages(&trace.encoder) {
                stages.push(Stage {
                    key: stage.key.in_encoder(),
                    ..stage
                });
            }
            stages
        } else {
            Vec::new()
        };
        // What the decoder would write after its last input (the translation's last token):
        // the model's softmax at the last position.
        let logits = inspection.logits.squeeze(0)?.to_vec2::<f32>()?; // [t, vocab]
        let top = match logits.last() {
            Some(last) => {
                let probs = crate::generate::next_token_distribution(last, &Default::default());
                crate::generate::top_k(&probs, 10)
                    .into_iter()
                    .map(|(id, prob)| {
                        let token = translator
                            .tokenizer
                            .target_token(id as u32)
                            .unwrap_or_else(|| format!("<{id}>"));
                        crate::inspect::TokenProb {
                            shown: readable(&token),
                            token,
                            id: id as u32,
                            prob,
                        }
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        let config = &translator.config;
        Ok(Self {
            slot,
            model_name: model_name.to_string(),
            text: text.to_string(),
            pair: None,
            is_causal: true,
            family: &crate::model::family::MARIAN,
            tokens,
            source_tokens,
            num_layers: config.decoder_layers,
            encoder_layers: config.encoder_layers,
            num_heads: config.decoder_attention_heads,
            attention,
            masks,
            predictions: Predictions::NextToken { top },
            stages,
        })
    }

    pub fn token_labels(&self) -> Vec<String> {
        self.tokens.iter().map(|t| t.shown.clone()).collect()
    }

    /// An encoder–decoder's source tokens as labels.
    pub fn source_labels(&self) -> Vec<String> {
        self.source_tokens.iter().map(|t| t.shown.clone()).collect()
    }

    /// Attention of `layer`, `head`; `head == None` is the mean over heads.
    pub fn attention_map(&self, layer: usize, head: Option<usize>) -> Option<Matrix> {
        let heads = self.attention.get(layer)?;
        match head {
            Some(h) => heads.get(h).cloned(),
            None if heads.is_empty() => None,
            None => Some(Matrix::mean(heads)),
        }
    }

    pub fn stage(&self, key: TraceKey) -> Option<&Array> {
        self.stages
            .iter()
            .find(|s| s.key == key)
            .and_then(Stage::values)
    }
}

/// Every tensor a trace recorded, under its [`TraceKey`].
fn trace_stages(trace: &Trace) -> Vec<Stage> {
    let recorded = |site: TraceSite, tensor: &Option<Tensor>| {
        tensor
            .clone()
            .map(|tensor| Stage::recorded(TraceKey::new(site), tensor))
    };
    let mut out = Vec::new();
    out.extend(recorded(
        TraceSite::TokenEmbeddings,
        &trace.token_embeddings,
    ));
    out.extend(recorded(
        TraceSite::PositionEmbeddings,
        &trace.position_embeddings,
    ));
    out.extend(recorded(
        TraceSite::SegmentEmbeddings,
        &trace.segment_embeddings,
    ));
    out.extend(recorded(TraceSite::EmbeddingSum, &trace.embedding_sum));
    for (i, layer) in trace.layers.iter().enumerate() {
        for field in LayerField::ALL {
            let key = TraceKey::new(TraceSite::Layer(i, field));
            out.extend(Stage::in_layer(key, layer, field));
        }
    }
    out.extend(recorded(TraceSite::FinalNorm, &trace.final_norm));
    out.extend(recorded(TraceSite::Logits, &trace.logits));
    out
}

/// A text through one tokenizer, with the explanation of every word's split.
#[derive(Debug, Clone)]
pub struct TokenizedText {
    pub tokenizer_name: String,
    pub kind: TokenizerKind,
    pub vocab_size: usize,
    pub text: String,
    /// Sentence B of a pair (BERT), packed after the text with segment id 1.
    pub pair: Option<String>,
    pub tokens: Vec<TokenInfo>,
    pub words: Vec<WordSplit>,
}

impl TokenizedText {
    /// `text`, or the pair `text` + `pair` (`[CLS] A [SEP] B [SEP]` for BERT). Worker only.
    pub fn new(name: &str, tokenizer: &Tokenizer, text: &str, pair: Option<&str>) -> Result<Self> {
        let encoded = match pair {
            Some(pair) => tokenizer.encode_pair(text, pair)?,
            None => tokenizer.encode(text, true)?,
        };
        let mut words = tokenizer.explain(text)?;
        if let Some(pair) = pair {
            words.extend(tokenizer.explain(pair)?);
        }
        Ok(Self {
            tokenizer_name: name.to_string(),
            kind: tokenizer.kind(),
            vocab_size: tokenizer.vocab_size(),
            text: text.to_string(),
            pair: pair.map(str::to_string),
            tokens: TokenInfo::list(tokenizer, &encoded),
            words,
        })
    }
}

/// One vocabulary entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VocabEntry {
    pub id: u32,
    /// As the tokenizer writes it (`Ġcat`).
    pub token: String,
    /// As a reader sees it (`▁cat`).
    pub shown: String,
    pub bytes: Vec<u8>,
}

/// A whole vocabulary, sorted by id.
pub fn vocabulary(tokenizer: &Tokenizer) -> Vec<VocabEntry> {
    tokenizer
        .vocab()
        .into_iter()
        .map(|(id, token)| VocabEntry {
            id,
            bytes: tokenizer.token_bytes(&token),
            shown: tokenizer.readable_token(&token),
            token,
        })
        .collect()
}

/// The same text through several tokenizers.
#[derive(Debug, Clone)]
pub struct TokenizerComparison {
    pub text: String,
    /// The corpus the char / BPE / WordPiece tokenizers were trained on, described.
    pub corpus: String,
    pub entries: Vec<TokenizedText>,
}

/// Renders bytes for a read-out as a quoted string: printable ASCII as is, quotes and
/// backslashes escaped, other bytes as `\xNN` — `" cat"`, `"\xe2\x80"`.
pub fn bytes_text(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

/// Bytes as hex, `63 61 74`.
pub fn bytes_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
