//! Hugging Face-format checkpoint folders: `config.json`, `model.safetensors`, `tokenizer.json`.
//!
//! Only safetensors is read. A pickled `pytorch_model.bin` is refused, never executed. Every
//! problem is reported with the file it was found in.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use candle_nn::var_builder::SimpleBackend;

use super::config::{Architecture, FamilyConfig, ModelConfig};
use super::family::StackRole;
use super::weights_file::TensorFile;
pub use super::weights_file::{HeaderTensor, SafetensorsHeader, read_header};
use super::{Model, Prefix};
use crate::error::{GlassboxError, Result};
use crate::tokenizer::Tokenizer;
use crate::util::{available_memory_bytes, write_atomic, write_atomic_via};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// Encoder–decoders: how `generate` decodes (start and end tokens, length, beams).
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";
const PICKLE_FILES: [&str; 2] = ["pytorch_model.bin", "model.bin"];

/// Every tensor of a weights file: name and shape.
pub type TensorShapes = Vec<(String, Vec<usize>)>;

/// A model loaded from a folder, with what it was loaded from.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    pub config: ModelConfig,
    pub model: Model,
    pub tokenizer: Option<Tokenizer>,
    pub dir: PathBuf,
    /// Every tensor in the weights file (name, shape), for the parameter view.
    pub tensor_shapes: TensorShapes,
    pub device: Device,
}

impl LoadedModel {
    /// Folder name, for display.
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.dir.display().to_string())
    }

    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer
            .as_ref()
            .ok_or_else(|| GlassboxError::MissingFile {
                path: self.dir.join(TOKENIZER_FILE),
            })
    }
}

/// An encoder–decoder translation model (`MarianMTModel`) loaded from a folder, with its
/// tokenizers: two SentencePiece models (`source.spm`, `target.spm`) over the shared
/// `vocab.json`, or one `tokenizer.json` for both sides.
#[derive(Debug)]
pub struct LoadedTranslator {
    pub config: super::marian::MarianConfig,
    pub model: super::marian::Marian,
    pub tokenizer: crate::tokenizer::translation::TranslationTokenizer,
    /// `generation_config.json` (num_beams, max_length, bad words, forced `</s>`).
    pub generation: super::marian::GenerationConfig,
    pub dir: PathBuf,
}

/// Whether `dir` holds a Marian (encoder–decoder) model, by its `config.json`'s `model_type`.
pub fn is_marian_dir(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(CONFIG_FILE))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|v| v["model_type"] == "marian")
}

/// Loads a Marian folder: `config.json`, `model.safetensors` (checked like every checkpoint:
/// memory, dtypes, NaN), `source.spm`, `target.spm` and `vocab.json` or a `tokenizer.json`.
pub fn load_translator(dir: &Path, device: &Device) -> Result<LoadedTranslator> {
    // The one opener reads config.json and the weights, as for every family.
    LoadedTranslator::from_loaded(load_dir(dir, device)?)
}

impl LoadedTranslator {
    /// A loaded Marian folder with its tokenizers and generation settings (refused for other
    /// families).
    pub fn from_loaded(loaded: LoadedModel) -> Result<Self> {
        use crate::tokenizer::translation::TranslationTokenizer;
        let dir = loaded.dir;
        let config_path = dir.join(CONFIG_FILE);
        let (FamilyConfig::Marian(config), Model::Marian(model)) =
            (loaded.config.family, loaded.model)
        else {
            return Err(GlassboxError::BadConfig {
                path: config_path,
                message: "this is not an encoder–decoder (model_type \"marian\"): use inspect, \
                          generate or predict"
                    .into(),
            });
        };
        let tokenizer = TranslationTokenizer::from_dir(&dir)?;
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(GlassboxError::BadConfig {
                path: tokenizer.vocab_path(&dir),
                message: format!(
                    "it has {} tokens, but the model's embedding table only {} rows",
                    tokenizer.vocab_size(),
                    config.vocab_size
                ),
            });
        }
        let json: serde_json::Value = serde_json::from_str(&crate::util::read_text(&config_path)?)
            .map_err(|e| GlassboxError::BadConfig {
                path: config_path.clone(),
                message: e.to_string(),
            })?;
        let generation = super::marian::GenerationConfig::from_dir(&dir, &config, &json)?;
        Ok(Self {
            config,
            model,
            tokenizer,
            generation,
            dir,
        })
    }
}

/// The folder's `model.safetensors`; a pickle in its place is refused, never read.
fn weights_file(dir: &Path) -> Result<PathBuf> {
    let weights = dir.join(WEIGHTS_FILE);
    if weights.is_file() {
        return Ok(weights);
    }
    match PICKLE_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
    {
        Some(pickle) => Err(GlassboxError::PickleRefused { path: pickle }),
        None => Err(GlassboxError::MissingFile { path: weights }),
    }
}

/// A checkpoint folder's parts, checked but the weights not yet read.
pub struct CheckpointDir {
    pub config: ModelConfig,
    /// `model.safetensors` (a folder with only pickled weights is refused).
    pub weights: PathBuf,
    /// `tokenizer.json`, when the folder has one; checked to fit the embedding table.
    pub tokenizer: Option<Tokenizer>,
}

/// Opens a checkpoint folder: reads its config and tokenizer and finds its weights. The one
/// place that knows a folder's layout, for loading ([`load_dir`]) and for fine-tuning from it.
pub fn open_dir(dir: &Path) -> Result<CheckpointDir> {
    if !dir.is_dir() {
        return Err(GlassboxError::MissingFile {
            path: dir.to_path_buf(),
        });
    }
    let config = ModelConfig::from_file(&dir.join(CONFIG_FILE))?;
    let weights = weights_file(dir)?;
    let tokenizer_path = dir.join(TOKENIZER_FILE);
    let tokenizer = if tokenizer_path.is_file() {
        let tokenizer = Tokenizer::from_file(&tokenizer_path)?;
        check_tokenizer_fits(&tokenizer, &config, &tokenizer_path)?;
        Some(tokenizer)
    } else {
        None
    };
    Ok(CheckpointDir {
        config,
        weights,
        tokenizer,
    })
}

/// Loads a checkpoint folder onto `device`.
pub fn load_dir(dir: &Path, device: &Device) -> Result<LoadedModel> {
    let CheckpointDir {
        config,
        weights,
        tokenizer,
    } = open_dir(dir)?;
    let (config, model, tensor_shapes) = load_weights(config, &weights, device)?;
    Ok(LoadedModel {
        config,
        model,
        tokenizer,
        dir: dir.to_path_buf(),
        tensor_shapes,
        device: device.clone(),
    })
}

/// A tokenizer whose ids run past the model's embedding table would fail deep inside the
/// first forward pass; say so at load time instead.
pub fn check_tokenizer_fits(
    tokenizer: &Tokenizer,
    config: &ModelConfig,
    path: &Path,
) -> Result<()> {
    let (tokens, rows) = (tokenizer.vocab_size(), config.vocab_size());
    if tokens > rows {
        return Err(GlassboxError::BadConfig {
            path: path.to_path_buf(),
            message: format!(
                "the tokenizer has {tokens} tokens (ids up to {}), but the model's embedding \
                 table has only {rows} rows (vocab_size in config.json): this tokenizer does not \
                 belong to this model",
                tokens - 1
            ),
        });
    }
    Ok(())
}

/// Refuses to load what would not fit: `bytes` needed against the memory the OS has available.
pub fn check_fits_in_memory(bytes: u64) -> Result<()> {
    if let Some(available) = available_memory_bytes()
        && bytes > available
    {
        return Err(GlassboxError::TooLarge {
            needed_mib: bytes / (1 << 20),
            available_mib: available / (1 << 20),
        });
    }
    Ok(())
}

/// A weights file open for reading, to build a model from through [`CheckedTensors`].
struct WeightsFile {
    backend: CheckedTensors,
    first_error: Arc<Mutex<Option<GlassboxError>>>,
    device: Device,
}

impl WeightsFile {
    /// Reads the header and checks the memory loading needs; the tensors are read one by one
    /// as the model asks for them.
    fn open(weights: &Path, device: &Device) -> Result<(TensorsByName, Self)> {
        let header = read_header(weights)?;
        // Checked before reading: an allocation that fails would abort the process.
        check_fits_in_memory(header.load_peak_bytes())?;
        let by_name: TensorsByName = header
            .tensors
            .iter()
            .map(|tensor| {
                (
                    tensor.name.clone(),
                    (tensor.dtype.clone(), tensor.shape.clone()),
                )
            })
            .collect();
        let file = TensorFile::with_header(header)?;
        let first_error = Arc::new(Mutex::new(None));
        let backend = CheckedTensors {
            file,
            first_error: first_error.clone(),
        };
        let file = Self {
            backend,
            first_error,
            device: device.clone(),
        };
        Ok((by_name, file))
    }

    /// Builds a model from the tensors; a problem comes back as the typed error that names the
    /// file and the tensor (the VarBuilder only carries candle's strings).
    fn build<T>(
        self,
        make: impl FnOnce(VarBuilder<'static>) -> candle_core::Result<T>,
    ) -> Result<T> {
        let vb = VarBuilder::from_backend(Box::new(self.backend), DType::F32, self.device);
        make(vb).map_err(|e| {
            let typed = self
                .first_error
                .lock()
                .ok()
                .and_then(|mut slot| slot.take());
            typed.unwrap_or(GlassboxError::Candle(e))
        })
    }
}

/// A safetensors header by name: tensor name → (dtype, shape).
type TensorsByName = BTreeMap<String, (String, Vec<usize>)>;

/// Loads `weights` for `config`. The architecture may be upgraded when the file carries more
/// heads than config.json names (the Hub's `bert-base-uncased` says `BertForMaskedLM` but also
/// ships the NSP head).
pub fn load_weights(
    mut config: ModelConfig,
    weights: &Path,
    device: &Device,
) -> Result<(ModelConfig, Model, TensorShapes)> {
    let (header, weights_vb) = WeightsFile::open(weights, device)?;
    let names: HashSet<&str> = header.keys().map(String::as_str).collect();
    upgrade_architecture(&mut config, &names);
    let prefix = detect_prefix(&config, &names);
    let model = weights_vb.build(|vb| Model::new(vb, &config, prefix))?;
    check_no_extra_layers(&config, &header, weights)?;
    // A bias-free GPT is stored with zero biases for `transformers`; they are not its parameters.
    let padding: HashSet<String> = zero_bias_padding(&config)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let shapes = header
        .into_iter()
        .filter(|(name, _)| !padding.contains(name.as_str()))
        .map(|(name, (_, shape))| (name, shape))
        .collect();
    Ok((config, model, shapes))
}

/// Checks a checkpoint folder's weights against its config without reading the tensor data:
/// the file is as long as its header says, and every tensor the model needs is there with the
/// right shape. For `glassbox params --model`, which must not describe a model that would not
/// load. Returns the config (architecture upgraded as [`load_weights`] does) and the stored
/// tensors.
pub fn check_weights_match(dir: &Path) -> Result<(ModelConfig, TensorShapes)> {
    let mut config = ModelConfig::from_file(&dir.join(CONFIG_FILE))?;
    let weights = weights_file(dir)?;
    let stored = super::params::read_safetensors_shapes(&weights)?;
    let shapes: HashMap<&str, &[usize]> = stored
        .iter()
        .map(|(name, shape)| (name.as_str(), shape.as_slice()))
        .collect();
    let names: HashSet<&str> = shapes.keys().copied().collect();
    upgrade_architecture(&mut config, &names);
    let prefix = detect_prefix(&config, &names);
    let wanted = Arc::new(Mutex::new(Vec::new()));
    let backend = ShapeRecorder {
        stored: stored.iter().cloned().collect(),
        wanted: wanted.clone(),
    };
    let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, Device::Cpu);
    Model::new(vb, &config, prefix)?;
    let wanted = wanted.lock().map(|w| w.clone()).unwrap_or_default();
    for (name, shape) in wanted {
        match shapes.get(name.as_str()) {
            None => {
                return Err(GlassboxError::MissingTensor {
                    path: weights,
                    name,
                    hint: "the config describes a tensor the weights do not have".into(),
                });
            }
            Some(found) if *found != shape.as_slice() => {
                return Err(GlassboxError::WrongShape {
                    path: weights,
                    name,
                    expected: shape,
                    found: found.to_vec(),
                });
            }
            Some(_) => {}
        }
    }
    let padding: HashSet<String> = zero_bias_padding(&config)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let stored = stored
        .into_iter()
        .filter(|(name, _)| !padding.contains(name))
        .collect();
    Ok((config, stored))
}

/// A VarBuilder backend that records what a model asks for and hands out zero-stride
/// placeholders (no memory per element), so a config can be checked against a header alone.
struct ShapeRecorder {
    stored: HashMap<String, Vec<usize>>,
    wanted: Arc<Mutex<TensorShapes>>,
}

impl SimpleBackend for ShapeRecorder {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _init: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Ok(mut wanted) = self.wanted.lock() {
            wanted.push((name.to_string(), shape.dims().to_vec()));
        }
        Tensor::zeros((), dtype, device)?.broadcast_as(shape)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let shape = self.stored.get(name).cloned().unwrap_or_default();
        if let Ok(mut wanted) = self.wanted.lock() {
            wanted.push((name.to_string(), shape.clone()));
        }
        Tensor::zeros((), dtype, device)?.broadcast_as(shape)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.stored.contains_key(name)
    }
}

fn upgrade_architecture(config: &mut ModelConfig, names: &HashSet<&str>) {
    let has = |suffix: &str| names.iter().any(|n| *n == suffix);
    config.architecture = match (&config.family, config.architecture) {
        (FamilyConfig::Bert(_), Architecture::BertModel | Architecture::BertForMaskedLm)
            if has("cls.predictions.bias")
                && has("cls.seq_relationship.weight")
                && names.iter().any(|n| n.ends_with("pooler.dense.weight")) =>
        {
            Architecture::BertForPreTraining
        }
        (FamilyConfig::Bert(_), Architecture::BertModel) if has("cls.predictions.bias") => {
            Architecture::BertForMaskedLm
        }
        (FamilyConfig::DistilBert(_), Architecture::DistilBertModel)
            if has("vocab_projector.bias") =>
        {
            Architecture::DistilBertForMaskedLm
        }
        (_, arch) => arch,
    };
}

/// Whether the base model's tensors sit under the family's prefix (`transformer.`, `bert.`,
/// `model.`) or at the root (a bare base model such as all-MiniLM-L6-v2).
fn detect_prefix(config: &ModelConfig, names: &HashSet<&str>) -> Prefix {
    let prefix = format!("{}.", config.family().weight_prefix);
    if names.iter().any(|n| n.starts_with(&prefix)) {
        Prefix::Standard
    } else {
        Prefix::None
    }
}

/// Tensors for layers beyond the config's count (in any stack the family declares) mean
/// config.json and the weights disagree.
fn check_no_extra_layers(
    config: &ModelConfig,
    header: &BTreeMap<String, (String, Vec<usize>)>,
    weights: &Path,
) -> Result<()> {
    let family = config.family();
    for stack in family.stacks {
        let layers = config.stack_layers(stack.role);
        // `bert.encoder.layer` is `encoder.layer` in a bare model.
        let marker = stack
            .layers_prefix
            .strip_prefix(family.weight_prefix)
            .map_or(stack.layers_prefix, |rest| rest.trim_start_matches('.'));
        let marker = format!("{marker}.");
        let mut max_found: Option<usize> = None;
        for name in header.keys() {
            let rest = name
                .strip_prefix(marker.as_str())
                .or_else(|| name.split_once(&format!(".{marker}")).map(|(_, r)| r));
            if let Some(index) = rest
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse::<usize>().ok())
            {
                max_found = Some(max_found.map_or(index, |m| m.max(index)));
            }
        }
        if let Some(max) = max_found
            && max + 1 > layers
        {
            let stack_name = match (family.stacks.len(), stack.role) {
                (1, _) => String::new(),
                (_, StackRole::Encoder) => " in the encoder".into(),
                (_, StackRole::Decoder) => " in the decoder".into(),
            };
            return Err(GlassboxError::BadConfig {
                path: weights.with_file_name(CONFIG_FILE),
                message: format!(
                    "config.json says {layers} layers{stack_name} but {} has {} layers; config and weights disagree",
                    weights.display(),
                    max + 1
                ),
            });
        }
    }
    Ok(())
}

/// A VarBuilder backend that reads each tensor from the file when the model asks for it,
/// checks its name and shape, and remembers a typed error naming the file.
struct CheckedTensors {
    file: TensorFile,
    first_error: Arc<Mutex<Option<GlassboxError>>>,
}

impl CheckedTensors {
    fn fail(&self, error: GlassboxError) -> candle_core::Error {
        let message = error.to_string();
        if let Ok(mut first) = self.first_error.lock()
            && first.is_none()
        {
            *first = Some(error);
        }
        candle_core::Error::Msg(message)
    }

    fn checked(
        &self,
        name: &str,
        tensor: &Tensor,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        match checked_weight(self.file.path(), name, tensor) {
            Ok(as_f32) => as_f32.to_dtype(dtype)?.to_device(device),
            Err(error) => Err(self.fail(error)),
        }
    }

    /// The named tensor from the file; a missing one is an error saying `hint`.
    fn read(&self, name: &str, hint: &str) -> candle_core::Result<Tensor> {
        match self.file.read(name) {
            Ok(Some(tensor)) => Ok(tensor),
            Ok(None) => Err(self.fail(GlassboxError::MissingTensor {
                path: self.file.path().to_path_buf(),
                name: name.to_string(),
                hint: hint.into(),
            })),
            Err(error) => Err(self.fail(error)),
        }
    }
}

/// A stored tensor as float32, refusing what would silently give wrong numbers: integer weights
/// (a cast would invent values) and NaN or infinite values. Every loader (inspection and
/// training alike) takes weights through here.
pub fn checked_weight(path: &Path, name: &str, tensor: &Tensor) -> Result<Tensor> {
    let bad = |problem: String| GlassboxError::BadWeights {
        path: path.to_path_buf(),
        name: name.to_string(),
        problem,
    };
    if !tensor.dtype().is_float() {
        return Err(bad(format!(
            "is stored as {:?}, not as floating point; weights must be F32, F16 or BF16",
            tensor.dtype()
        )));
    }
    let as_f32 = tensor.to_dtype(DType::F32)?.contiguous()?;
    if let Some((index, value)) = first_non_finite(&as_f32)? {
        return Err(bad(format!(
            "holds {value} at element {index}: the weights are broken (a training run that \
             diverged?); load an earlier checkpoint"
        )));
    }
    Ok(as_f32)
}

/// The first NaN or infinite element of a contiguous float32 CPU tensor (read in place).
fn first_non_finite(tensor: &Tensor) -> candle_core::Result<Option<(usize, f32)>> {
    let (storage, layout) = tensor.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Ok(None);
    };
    let data = cpu.as_slice::<f32>()?;
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Ok(None);
    };
    Ok(data[start..end]
        .iter()
        .position(|v| !v.is_finite())
        .map(|i| (i, data[start + i])))
}

impl SimpleBackend for CheckedTensors {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _init: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        match self.file.shape(name) {
            Some(found) if found != shape.dims() => Err(self.fail(GlassboxError::WrongShape {
                path: self.file.path().to_path_buf(),
                name: name.to_string(),
                expected: shape.dims().to_vec(),
                found: found.to_vec(),
            })),
            _ => {
                let tensor = self.read(
                    name,
                    "the config describes a tensor the weights do not have",
                )?;
                self.checked(name, &tensor, dtype, device)
            }
        }
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.read(name, "not in the weights file")?;
        self.checked(name, &tensor, dtype, device)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.file.contains(name)
    }
}

/// Saves a checkpoint folder that `transformers` can load: each file written atomically.
/// `tensors` are named as in `transformers` (tied weights appear once).
pub fn save_dir(
    dir: &Path,
    config: &ModelConfig,
    tensors: &BTreeMap<String, Tensor>,
    tokenizer: Option<&Tokenizer>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| GlassboxError::io(dir, e))?;
    let padding = zero_bias_padding(config);
    if padding.is_empty() {
        write_safetensors(&dir.join(WEIGHTS_FILE), tensors)?;
    } else {
        let mut padded = tensors.clone();
        for (name, shape) in padding {
            padded.insert(name, Tensor::zeros(shape, DType::F32, &Device::Cpu)?);
        }
        write_safetensors(&dir.join(WEIGHTS_FILE), &padded)?;
    }
    let config_json = serde_json::to_string_pretty(&config.to_hf_json()).map_err(|e| {
        GlassboxError::BadConfig {
            path: dir.join(CONFIG_FILE),
            message: e.to_string(),
        }
    })?;
    write_atomic(&dir.join(CONFIG_FILE), config_json.as_bytes())?;
    if let FamilyConfig::Marian(marian) = &config.family {
        // How `generate` translates with this model (greedy, as long as its positions allow).
        let generation = super::marian::GenerationConfig {
            max_length: marian.max_position_embeddings,
            ..super::marian::GenerationConfig::from_model(marian)
        };
        let json = serde_json::to_string_pretty(&generation.to_hf_json()).map_err(|e| {
            GlassboxError::BadConfig {
                path: dir.join(GENERATION_CONFIG_FILE),
                message: e.to_string(),
            }
        })?;
        write_atomic(&dir.join(GENERATION_CONFIG_FILE), json.as_bytes())?;
    }
    if let Some(tokenizer) = tokenizer {
        tokenizer.save(&dir.join(TOKENIZER_FILE))?;
        // transformers' AutoTokenizer reads the special tokens from here.
        let tokenizer_config = serde_json::to_string_pretty(&tokenizer.tokenizer_config())
            .map_err(|e| GlassboxError::Tokenizer(e.to_string()))?;
        write_atomic(
            &dir.join(TOKENIZER_CONFIG_FILE),
            tokenizer_config.as_bytes(),
        )?;
    }
    Ok(())
}

/// The biases `transformers`' GPT-2 always has and a bias-free GPT (nanoGPT's layout) lacks:
/// written as zeros, which compute exactly what no bias does, so the folder loads in
/// `transformers` without a missing-weights report. Empty for every other model.
pub fn zero_bias_padding(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let FamilyConfig::Gpt2(c) = &config.family else {
        return Vec::new();
    };
    if c.bias {
        return Vec::new();
    }
    let h = c.n_embd;
    let mut out = Vec::new();
    for layer in 0..c.n_layer {
        let p = format!("transformer.h.{layer}");
        out.push((format!("{p}.ln_1.bias"), vec![h]));
        out.push((format!("{p}.attn.c_attn.bias"), vec![3 * h]));
        out.push((format!("{p}.attn.c_proj.bias"), vec![h]));
        out.push((format!("{p}.ln_2.bias"), vec![h]));
        out.push((format!("{p}.mlp.c_fc.bias"), vec![c.inner_dim()]));
        out.push((format!("{p}.mlp.c_proj.bias"), vec![h]));
    }
    out.push(("transformer.ln_f.bias".into(), vec![h]));
    out
}

/// Writes tensors to a safetensors file atomically (`transformers` wants `format: pt` metadata).
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let cpu: Vec<(&str, Tensor)> = tensors
        .iter()
        .map(|(name, t)| Ok((name.as_str(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<candle_core::Result<_>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    // Streamed to the file tensor by tensor: saving takes no second copy of the weights.
    write_atomic_via(path, |tmp| {
        safetensors::serialize_to_file(cpu.iter().map(|(n, t)| (*n, t)), Some(metadata), tmp)
            .map_err(std::io::Error::other)
    })
}
