//! One config type per model family, and the mapping to and from Hugging Face `config.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::family::{self, Family, PositionScheme, StackRole};
use super::marian::MarianConfig;
use crate::error::{GlassboxError, Result};

/// GPT-2 (decoder only, learned positions, pre-LayerNorm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    pub vocab_size: usize,
    /// Context length (number of learned positions).
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// MLP width; `None` means 4 · n_embd as in GPT-2.
    pub n_inner: Option<usize>,
    pub layer_norm_epsilon: f64,
    /// `gelu_new` (tanh approximation, GPT-2) or `gelu` (erf).
    pub activation_function: String,
    /// Biases in Linear and LayerNorm. GPT-2 has them; the nanoGPT benchmark config does not.
    /// Not a `transformers` field: a folder saved with `bias: false` loads only here.
    pub bias: bool,
}

/// BERT (encoder only, token + position + segment embeddings, post-LayerNorm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub hidden_act: String,
    pub pad_token_id: usize,
    /// Class names by index for a sequence classifier (`id2label`).
    pub labels: Vec<String>,
}

/// DistilBERT (no segments, no pooler, its own tensor names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistilBertConfig {
    pub vocab_size: usize,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub hidden_dim: usize,
    pub max_position_embeddings: usize,
    pub activation: String,
    pub sinusoidal_pos_embds: bool,
    pub pad_token_id: usize,
}

/// Which head a checkpoint carries, from `architectures` in config.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    /// `GPT2LMHeadModel` (or a bare `GPT2Model`, which gets the tied head anyway).
    Gpt2LmHead,
    /// `BertModel`: encoder (+ pooler) only.
    BertModel,
    /// `BertForPreTraining`: masked LM + next-sentence prediction.
    BertForPreTraining,
    /// `BertForMaskedLM`.
    BertForMaskedLm,
    /// `BertForSequenceClassification`.
    BertForSequenceClassification,
    /// `BertForQuestionAnswering`.
    BertForQuestionAnswering,
    /// `DistilBertModel`.
    DistilBertModel,
    /// `DistilBertForMaskedLM`.
    DistilBertForMaskedLm,
    /// `MarianMTModel`: encoder–decoder translation.
    MarianMt,
}

impl Architecture {
    pub fn hf_name(self) -> &'static str {
        match self {
            Architecture::Gpt2LmHead => "GPT2LMHeadModel",
            Architecture::BertModel => "BertModel",
            Architecture::BertForPreTraining => "BertForPreTraining",
            Architecture::BertForMaskedLm => "BertForMaskedLM",
            Architecture::BertForSequenceClassification => "BertForSequenceClassification",
            Architecture::BertForQuestionAnswering => "BertForQuestionAnswering",
            Architecture::DistilBertModel => "DistilBertModel",
            Architecture::DistilBertForMaskedLm => "DistilBertForMaskedLM",
            Architecture::MarianMt => "MarianMTModel",
        }
    }

    fn from_hf_name(name: &str) -> Option<Self> {
        Some(match name {
            "GPT2LMHeadModel" | "GPT2Model" => Architecture::Gpt2LmHead,
            "BertModel" => Architecture::BertModel,
            "BertForPreTraining" => Architecture::BertForPreTraining,
            "BertForMaskedLM" => Architecture::BertForMaskedLm,
            "BertForSequenceClassification" => Architecture::BertForSequenceClassification,
            "BertForQuestionAnswering" => Architecture::BertForQuestionAnswering,
            "DistilBertModel" => Architecture::DistilBertModel,
            "DistilBertForMaskedLM" => Architecture::DistilBertForMaskedLm,
            "MarianMTModel" | "MarianModel" => Architecture::MarianMt,
            _ => return None,
        })
    }
}

/// A model family with its hyper-parameters, plus the head the checkpoint carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FamilyConfig {
    Gpt2(GptConfig),
    Bert(BertConfig),
    DistilBert(DistilBertConfig),
    Marian(MarianConfig),
}

impl FamilyConfig {
    /// What the family is: its stacks, attention kinds, norm placement, positions, heads.
    pub fn family(&self) -> &'static Family {
        match self {
            FamilyConfig::Gpt2(_) => &family::GPT2,
            FamilyConfig::Bert(_) => &family::BERT,
            FamilyConfig::DistilBert(_) => &family::DISTILBERT,
            FamilyConfig::Marian(_) => &family::MARIAN,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub family: FamilyConfig,
    pub architecture: Architecture,
}

impl GptConfig {
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
    pub fn inner_dim(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }
}

impl BertConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Outputs of a sequence classifier: one per label, 2 when none are named (as transformers).
    pub fn num_labels(&self) -> usize {
        if self.labels.is_empty() {
            2
        } else {
            self.labels.len()
        }
    }
}

impl DistilBertConfig {
    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }
}

impl ModelConfig {
    /// The family's declaration (see [`super::family`]).
    pub fn family(&self) -> &'static Family {
        self.family.family()
    }

    /// The stack that produces the output runs causal self-attention (GPT-2's, Marian's decoder).
    pub fn is_causal(&self) -> bool {
        self.family().is_causal()
    }

    pub fn model_type(&self) -> &'static str {
        self.family().model_type
    }

    /// How this model encodes positions (DistilBERT may choose sinusoidal in its config).
    pub fn positions(&self) -> PositionScheme {
        match &self.family {
            FamilyConfig::DistilBert(c) if c.sinusoidal_pos_embds => PositionScheme::Sinusoidal,
            _ => self.family().positions,
        }
    }

    pub fn hidden_size(&self) -> usize {
        match &self.family {
            FamilyConfig::Gpt2(c) => c.n_embd,
            FamilyConfig::Bert(c) => c.hidden_size,
            FamilyConfig::DistilBert(c) => c.dim,
            FamilyConfig::Marian(c) => c.d_model,
        }
    }

    /// Layers of the stack that produces the output (an encoder–decoder's decoder; see
    /// [`Self::stack_layers`]).
    pub fn num_layers(&self) -> usize {
        match &self.family {
            FamilyConfig::Gpt2(c) => c.n_layer,
            FamilyConfig::Bert(c) => c.num_hidden_layers,
            FamilyConfig::DistilBert(c) => c.n_layers,
            FamilyConfig::Marian(c) => c.decoder_layers,
        }
    }

    /// Layers in one of the family's stacks (0 for a stack it does not have).
    pub fn stack_layers(&self, role: StackRole) -> usize {
        match (&self.family, role) {
            (FamilyConfig::Marian(c), StackRole::Encoder) => c.encoder_layers,
            (FamilyConfig::Marian(c), StackRole::Decoder) => c.decoder_layers,
            _ if self.family().stack(role).is_some() => self.num_layers(),
            _ => 0,
        }
    }

    pub fn num_heads(&self) -> usize {
        match &self.family {
            FamilyConfig::Gpt2(c) => c.n_head,
            FamilyConfig::Bert(c) => c.num_attention_heads,
            FamilyConfig::DistilBert(c) => c.n_heads,
            FamilyConfig::Marian(c) => c.decoder_attention_heads,
        }
    }

    pub fn vocab_size(&self) -> usize {
        match &self.family {
            FamilyConfig::Gpt2(c) => c.vocab_size,
            FamilyConfig::Bert(c) => c.vocab_size,
            FamilyConfig::DistilBert(c) => c.vocab_size,
            FamilyConfig::Marian(c) => c.vocab_size,
        }
    }

    pub fn max_positions(&self) -> usize {
        match &self.family {
            FamilyConfig::Gpt2(c) => c.n_positions,
            FamilyConfig::Bert(c) => c.max_position_embeddings,
            FamilyConfig::DistilBert(c) => c.max_position_embeddings,
            FamilyConfig::Marian(c) => c.max_position_embeddings,
        }
    }

    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::util::read_text(path)?;
        let value: Value = serde_json::from_str(&text).map_err(|e| GlassboxError::BadConfig {
            path: path.to_path_buf(),
            message: format!("not valid JSON: {e}"),
        })?;
        Self::from_hf_json(&value).map_err(|message| match message {
            ConfigProblem::Unknown(found) => GlassboxError::UnknownArchitecture {
                path: path.to_path_buf(),
                found,
                known: Family::known(),
            },
            ConfigProblem::Bad(message) => GlassboxError::BadConfig {
                path: path.to_path_buf(),
                message,
            },
        })
    }

    /// Maps a Hugging Face config (as JSON) to ours.
    pub fn from_hf_json(value: &Value) -> std::result::Result<Self, ConfigProblem> {
        let object = value
            .as_object()
            .ok_or_else(|| ConfigProblem::Bad("config.json must be a JSON object".into()))?;
        let model_type = object
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| ConfigProblem::Bad("missing \"model_type\"".into()))?;
        let first_architecture = object
            .get("architectures")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str);
        let f = Fields(object);
        let (family, default_arch) = match model_type {
            "gpt2" => {
                let n_embd = f.usize("n_embd")?;
                let n_head = f.usize("n_head")?;
                let config = GptConfig {
                    vocab_size: f.usize("vocab_size")?,
                    n_positions: f.usize("n_positions")?,
                    n_embd,
                    n_layer: f.usize("n_layer")?,
                    n_head,
                    n_inner: f.opt_usize("n_inner")?,
                    layer_norm_epsilon: f.f64_or("layer_norm_epsilon", 1e-5)?,
                    activation_function: f.str_or("activation_function", "gelu_new")?,
                    bias: f.bool_or("bias", true)?,
                };
                check_heads(n_embd, n_head)?;
                check_activation(&config.activation_function)?;
                (FamilyConfig::Gpt2(config), Architecture::Gpt2LmHead)
            }
            "bert" => {
                let hidden_size = f.usize("hidden_size")?;
                let heads = f.usize("num_attention_heads")?;
                check_heads(hidden_size, heads)?;
                let labels = labels_from(object)?;
                let config = BertConfig {
                    vocab_size: f.usize("vocab_size")?,
                    hidden_size,
                    num_hidden_layers: f.usize("num_hidden_layers")?,
                    num_attention_heads: heads,
                    intermediate_size: f.usize("intermediate_size")?,
                    max_position_embeddings: f.usize("max_position_embeddings")?,
                    type_vocab_size: f.usize_or("type_vocab_size", 2)?,
                    layer_norm_eps: f.f64_or("layer_norm_eps", 1e-12)?,
                    hidden_act: f.str_or("hidden_act", "gelu")?,
                    pad_token_id: f.usize_or("pad_token_id", 0)?,
                    labels,
                };
                check_activation(&config.hidden_act)?;
                (FamilyConfig::Bert(config), Architecture::BertModel)
            }
            "distilbert" => {
                let dim = f.usize("dim")?;
                let heads = f.usize("n_heads")?;
                check_heads(dim, heads)?;
                let config = DistilBertConfig {
                    vocab_size: f.usize("vocab_size")?,
                    dim,
                    n_layers: f.usize("n_layers")?,
                    n_heads: heads,
                    hidden_dim: f.usize("hidden_dim")?,
                    max_position_embeddings: f.usize("max_position_embeddings")?,
                    activation: f.str_or("activation", "gelu")?,
                    sinusoidal_pos_embds: f.bool_or("sinusoidal_pos_embds", false)?,
                    pad_token_id: f.usize_or("pad_token_id", 0)?,
                };
                check_activation(&config.activation)?;
                (
                    FamilyConfig::DistilBert(config),
                    Architecture::DistilBertModel,
                )
            }
            "marian" => {
                let config = MarianConfig::from_hf_json(value).map_err(ConfigProblem::Bad)?;
                check_marian_activation(&config.activation_function)?;
                (FamilyConfig::Marian(config), Architecture::MarianMt)
            }
            other => {
                return Err(ConfigProblem::Unknown(format!(
                    "model_type {other:?}{}",
                    first_architecture
                        .map(|a| format!(" ({a})"))
                        .unwrap_or_default()
                )));
            }
        };
        let architecture = match first_architecture {
            None => default_arch,
            Some(name) => {
                let arch = Architecture::from_hf_name(name)
                    .ok_or_else(|| ConfigProblem::Unknown(name.to_string()))?;
                let family_ok = matches!(
                    (&family, arch),
                    (FamilyConfig::Gpt2(_), Architecture::Gpt2LmHead)
                        | (
                            FamilyConfig::Bert(_),
                            Architecture::BertModel
                                | Architecture::BertForPreTraining
                                | Architecture::BertForMaskedLm
                                | Architecture::BertForSequenceClassification
                                | Architecture::BertForQuestionAnswering
                        )
                        | (
                            FamilyConfig::DistilBert(_),
                            Architecture::DistilBertModel | Architecture::DistilBertForMaskedLm
                        )
                        | (FamilyConfig::Marian(_), Architecture::MarianMt)
                );
                if !family_ok {
                    return Err(ConfigProblem::Bad(format!(
                        "architecture {name} does not belong to model_type {model_type:?}"
                    )));
                }
                arch
            }
        };
        Ok(ModelConfig {
            family,
            architecture,
        })
    }

    /// A `config.json` that `transformers` loads as `architecture`.
    pub fn to_hf_json(&self) -> Value {
        let mut value = match &self.family {
            FamilyConfig::Gpt2(c) => {
                let mut v = json!({
                    "model_type": "gpt2",
                    "vocab_size": c.vocab_size,
                    "n_positions": c.n_positions,
                    "n_embd": c.n_embd,
                    "n_layer": c.n_layer,
                    "n_head": c.n_head,
                    "n_inner": c.n_inner,
                    "layer_norm_epsilon": c.layer_norm_epsilon,
                    "activation_function": c.activation_function,
                    "tie_word_embeddings": true,
                    "attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0,
                    "bos_token_id": 0, "eos_token_id": 0,
                });
                if !c.bias {
                    v["bias"] = json!(false);
                }
                v
            }
            FamilyConfig::Bert(c) => {
                let mut v = json!({
                    "model_type": "bert",
                    "vocab_size": c.vocab_size,
                    "hidden_size": c.hidden_size,
                    "num_hidden_layers": c.num_hidden_layers,
                    "num_attention_heads": c.num_attention_heads,
                    "intermediate_size": c.intermediate_size,
                    "max_position_embeddings": c.max_position_embeddings,
                    "type_vocab_size": c.type_vocab_size,
                    "layer_norm_eps": c.layer_norm_eps,
                    "hidden_act": c.hidden_act,
                    "pad_token_id": c.pad_token_id,
                    "tie_word_embeddings": true,
                    "hidden_dropout_prob": 0.1,
                    "attention_probs_dropout_prob": 0.1,
                });
                if !c.labels.is_empty() {
                    let id2label: BTreeMap<String, String> = c
                        .labels
                        .iter()
                        .enumerate()
                        .map(|(i, l)| (i.to_string(), l.clone()))
                        .collect();
                    let label2id: BTreeMap<String, usize> = c
                        .labels
                        .iter()
                        .enumerate()
                        .map(|(i, l)| (l.clone(), i))
                        .collect();
                    v["id2label"] = json!(id2label);
                    v["label2id"] = json!(label2id);
                }
                v
            }
            FamilyConfig::DistilBert(c) => json!({
                "model_type": "distilbert",
                "vocab_size": c.vocab_size,
                "dim": c.dim,
                "n_layers": c.n_layers,
                "n_heads": c.n_heads,
                "hidden_dim": c.hidden_dim,
                "max_position_embeddings": c.max_position_embeddings,
                "activation": c.activation,
                "sinusoidal_pos_embds": c.sinusoidal_pos_embds,
                "pad_token_id": c.pad_token_id,
                "tie_word_embeddings": true,
            }),
            FamilyConfig::Marian(c) => c.to_hf_json(),
        };
        value["architectures"] = json!([self.architecture.hf_name()]);
        value["dtype"] = json!("float32");
        value
    }
}

/// Why a config could not be mapped.
#[derive(Debug)]
pub enum ConfigProblem {
    Unknown(String),
    Bad(String),
}

fn check_heads(width: usize, heads: usize) -> std::result::Result<(), ConfigProblem> {
    if heads == 0 || width == 0 || !width.is_multiple_of(heads) {
        return Err(ConfigProblem::Bad(format!(
            "hidden width {width} is not divisible by the number of heads {heads}"
        )));
    }
    Ok(())
}

/// Marian checkpoints also use swish (`x·σ(x)`), which the encoder–decoder's FFN supports.
fn check_marian_activation(name: &str) -> std::result::Result<(), ConfigProblem> {
    match name {
        "swish" | "silu" => Ok(()),
        other => check_activation(other).map_err(|_| {
            ConfigProblem::Bad(format!(
                "activation {other:?} is not supported (gelu, gelu_new, relu, swish)"
            ))
        }),
    }
}

fn check_activation(name: &str) -> std::result::Result<(), ConfigProblem> {
    match name {
        "gelu" | "gelu_new" | "gelu_pytorch_tanh" | "relu" => Ok(()),
        other => Err(ConfigProblem::Bad(format!(
            "activation {other:?} is not supported (gelu, gelu_new, relu)"
        ))),
    }
}

fn labels_from(
    object: &serde_json::Map<String, Value>,
) -> std::result::Result<Vec<String>, ConfigProblem> {
    let Some(id2label) = object.get("id2label").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let mut pairs = Vec::new();
    for (k, v) in id2label {
        let index: usize = k
            .parse()
            .map_err(|_| ConfigProblem::Bad(format!("id2label key {k:?} is not a number")))?;
        let name = v
            .as_str()
            .ok_or_else(|| ConfigProblem::Bad(format!("id2label[{k}] is not a string")))?;
        pairs.push((index, name.to_string()));
    }
    pairs.sort();
    for (expected, (index, _)) in pairs.iter().enumerate() {
        if *index != expected {
            return Err(ConfigProblem::Bad(
                "id2label keys must be 0..n without gaps".into(),
            ));
        }
    }
    Ok(pairs.into_iter().map(|(_, n)| n).collect())
}

struct Fields<'a>(&'a serde_json::Map<String, Value>);

impl Fields<'_> {
    fn usize(&self, key: &str) -> std::result::Result<usize, ConfigProblem> {
        self.opt_usize(key)?
            .ok_or_else(|| ConfigProblem::Bad(format!("missing \"{key}\"")))
    }
    fn usize_or(&self, key: &str, default: usize) -> std::result::Result<usize, ConfigProblem> {
        Ok(self.opt_usize(key)?.unwrap_or(default))
    }
    fn opt_usize(&self, key: &str) -> std::result::Result<Option<usize>, ConfigProblem> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|&n| n > 0 || key == "pad_token_id")
                .map(|n| Some(n as usize))
                .ok_or_else(|| {
                    ConfigProblem::Bad(format!("\"{key}\" must be a positive integer, got {v}"))
                }),
        }
    }
    fn f64_or(&self, key: &str, default: f64) -> std::result::Result<f64, ConfigProblem> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| ConfigProblem::Bad(format!("\"{key}\" must be a number, got {v}"))),
        }
    }
    fn str_or(&self, key: &str, default: &str) -> std::result::Result<String, ConfigProblem> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default.to_string()),
            Some(v) => v
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| ConfigProblem::Bad(format!("\"{key}\" must be a string, got {v}"))),
        }
    }
    fn bool_or(&self, key: &str, default: bool) -> std::result::Result<bool, ConfigProblem> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| {
                ConfigProblem::Bad(format!("\"{key}\" must be true or false, got {v}"))
            }),
        }
    }
}
