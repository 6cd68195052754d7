//! Parameter counts for any config, by component, in two forms side by side:
//!
//! - **textbook**: weight matrices and embedding tables only — 4·H² per attention block (Q, K, V,
//!   O), 2·H·F per feed-forward block, V·H (+ P·H, + T·H) for embeddings — with biases and
//!   LayerNorms ignored, as in the BERT and GPT-3 papers' tables;
//! - **exact**: tensor by tensor, as `transformers` counts them (`model.num_parameters()`), tied
//!   weights counted once.
//!
//! Every row carries its formula in symbols and in numbers, so the table explains itself. The same
//! numbers can be checked against a checkpoint with [`actual_count_file`].

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{GlassboxError, Result};
use crate::model::config::{Architecture, FamilyConfig, ModelConfig};
use crate::model::family::StackRole;

// ---------------------------------------------------------------------------------------------
// What is counted
// ---------------------------------------------------------------------------------------------

/// The shape of a model, enough to count its parameters. Loaded models map to it with
/// `ArchSpec::from(&config)`; RoBERTa and ALBERT exist only as presets (Glassbox does not run them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum ArchSpec {
    /// BERT: token + position + segment embeddings, post-LayerNorm encoder layers.
    Bert {
        vocab: u64,
        hidden: u64,
        layers: u64,
        heads: u64,
        intermediate: u64,
        positions: u64,
        type_vocab: u64,
    },
    /// RoBERTa: BERT-shaped (one segment type, 514 positions: two are reserved for padding).
    Roberta {
        vocab: u64,
        hidden: u64,
        layers: u64,
        heads: u64,
        intermediate: u64,
        positions: u64,
        type_vocab: u64,
    },
    /// ALBERT: embeddings factorized through a narrow width E, one layer shared by all `layers`.
    Albert {
        vocab: u64,
        embedding_size: u64,
        hidden: u64,
        layers: u64,
        heads: u64,
        intermediate: u64,
        positions: u64,
        type_vocab: u64,
    },
    /// DistilBERT: BERT without segments and pooler.
    DistilBert {
        vocab: u64,
        hidden: u64,
        layers: u64,
        heads: u64,
        intermediate: u64,
        positions: u64,
    },
    /// GPT-2 (and GPT-3 counted as a GPT-2-shaped model): pre-LayerNorm decoder, fused Q/K/V.
    /// `bias: false` is the nanoGPT variant: no biases in Linear and LayerNorm.
    Gpt2 {
        vocab: u64,
        positions: u64,
        hidden: u64,
        layers: u64,
        heads: u64,
        intermediate: u64,
        bias: bool,
    },
    /// Encoder–decoder (the 2017 transformer, Marian): post-LayerNorm encoder and decoder layers,
    /// each decoder layer with a cross-attention block; one token table shared by encoder,
    /// decoder and the tied LM head; sinusoidal positions. `stored_positions`: the checkpoint
    /// keeps the two sinusoidal tables as (frozen) parameters, as `MarianMTModel` does.
    EncoderDecoder {
        vocab: u64,
        hidden: u64,
        encoder_layers: u64,
        decoder_layers: u64,
        heads: u64,
        /// The decoder's FFN width (F); the encoder's is `encoder_intermediate`.
        intermediate: u64,
        encoder_intermediate: u64,
        positions: u64,
        stored_positions: bool,
        /// The decoder's own token table when the two sides do not share one (`Vt` rows).
        #[serde(default)]
        target_vocab: Option<u64>,
        /// The LM head is the decoder's token table (else a `Vt × H` matrix of its own).
        #[serde(default = "yes")]
        tied_head: bool,
    },
}

fn yes() -> bool {
    true
}

impl ArchSpec {
    pub fn family_name(&self) -> &'static str {
        match self {
            ArchSpec::Bert { .. } => "BERT",
            ArchSpec::Roberta { .. } => "RoBERTa",
            ArchSpec::Albert { .. } => "ALBERT",
            ArchSpec::DistilBert { .. } => "DistilBERT",
            ArchSpec::Gpt2 { .. } => "GPT-2",
            ArchSpec::EncoderDecoder { .. } => "Encoder–decoder",
        }
    }

    pub fn vocab(&self) -> u64 {
        match *self {
            ArchSpec::Bert { vocab, .. }
            | ArchSpec::Roberta { vocab, .. }
            | ArchSpec::Albert { vocab, .. }
            | ArchSpec::DistilBert { vocab, .. }
            | ArchSpec::Gpt2 { vocab, .. }
            | ArchSpec::EncoderDecoder { vocab, .. } => vocab,
        }
    }

    pub fn hidden(&self) -> u64 {
        match *self {
            ArchSpec::Bert { hidden, .. }
            | ArchSpec::Roberta { hidden, .. }
            | ArchSpec::Albert { hidden, .. }
            | ArchSpec::DistilBert { hidden, .. }
            | ArchSpec::Gpt2 { hidden, .. }
            | ArchSpec::EncoderDecoder { hidden, .. } => hidden,
        }
    }

    pub fn layers(&self) -> u64 {
        match *self {
            ArchSpec::Bert { layers, .. }
            | ArchSpec::Roberta { layers, .. }
            | ArchSpec::Albert { layers, .. }
            | ArchSpec::DistilBert { layers, .. }
            | ArchSpec::Gpt2 { layers, .. } => layers,
            // Both stacks.
            ArchSpec::EncoderDecoder {
                encoder_layers,
                decoder_layers,
                ..
            } => encoder_layers.saturating_add(decoder_layers),
        }
    }

    pub fn heads(&self) -> u64 {
        match *self {
            ArchSpec::Bert { heads, .. }
            | ArchSpec::Roberta { heads, .. }
            | ArchSpec::Albert { heads, .. }
            | ArchSpec::DistilBert { heads, .. }
            | ArchSpec::Gpt2 { heads, .. }
            | ArchSpec::EncoderDecoder { heads, .. } => heads,
        }
    }

    /// FFN width F.
    pub fn intermediate(&self) -> u64 {
        match *self {
            ArchSpec::Bert { intermediate, .. }
            | ArchSpec::Roberta { intermediate, .. }
            | ArchSpec::Albert { intermediate, .. }
            | ArchSpec::DistilBert { intermediate, .. }
            | ArchSpec::Gpt2 { intermediate, .. }
            | ArchSpec::EncoderDecoder { intermediate, .. } => intermediate,
        }
    }

    pub fn positions(&self) -> u64 {
        match *self {
            ArchSpec::Bert { positions, .. }
            | ArchSpec::Roberta { positions, .. }
            | ArchSpec::Albert { positions, .. }
            | ArchSpec::DistilBert { positions, .. }
            | ArchSpec::Gpt2 { positions, .. }
            | ArchSpec::EncoderDecoder { positions, .. } => positions,
        }
    }

    /// One line for titles: "L=12, H=768, heads=12, F=3072, V=30522, P=512".
    pub fn summary(&self) -> String {
        let layers = match *self {
            ArchSpec::EncoderDecoder {
                encoder_layers,
                decoder_layers,
                ..
            } => format!("{encoder_layers}+{decoder_layers}"),
            _ => self.layers().to_string(),
        };
        let mut text = format!(
            "L={layers}, H={}, heads={}, F={}, V={}, P={}",
            self.hidden(),
            self.heads(),
            self.intermediate(),
            self.vocab(),
            self.positions()
        );
        match *self {
            ArchSpec::Albert { embedding_size, .. } => {
                text.push_str(&format!(", E={embedding_size}"))
            }
            ArchSpec::Gpt2 { bias: false, .. } => text.push_str(", no biases"),
            _ => {}
        }
        text
    }

    /// Floating-point operations of one forward pass over `tokens` tokens (see [`forward_flops`];
    /// both stacks of an encoder–decoder, its cross-attention left out).
    pub fn forward_flops(&self, tokens: usize) -> f64 {
        forward_flops(
            self.hidden() as usize,
            self.layers() as usize,
            self.intermediate() as usize,
            self.vocab() as usize,
            tokens,
        )
    }
}

/// Floating-point operations of one forward pass over `tokens` tokens (batch 1): two per weight
/// per token in the layers and the output head, plus the attention's `QKᵀ` and `·V`. An
/// estimate for choosing how many threads the work gets, not an exact count.
pub fn forward_flops(
    hidden: usize,
    layers: usize,
    intermediate: usize,
    vocab: usize,
    tokens: usize,
) -> f64 {
    let (tokens, hidden, layers) = (tokens as f64, hidden as f64, layers as f64);
    let per_layer = 4.0 * hidden * hidden + 2.0 * hidden * intermediate as f64;
    let weights = layers * per_layer + hidden * vocab as f64;
    2.0 * tokens * weights + 4.0 * layers * tokens * tokens * hidden
}

impl From<&ModelConfig> for ArchSpec {
    fn from(config: &ModelConfig) -> Self {
        // usize → u64 is lossless on every platform Glassbox builds for.
        match &config.family {
            FamilyConfig::Gpt2(c) => ArchSpec::Gpt2 {
                vocab: c.vocab_size as u64,
                positions: c.n_positions as u64,
                hidden: c.n_embd as u64,
                layers: c.n_layer as u64,
                heads: c.n_head as u64,
                intermediate: c.inner_dim() as u64,
                bias: c.bias,
            },
            FamilyConfig::Bert(c) => ArchSpec::Bert {
                vocab: c.vocab_size as u64,
                hidden: c.hidden_size as u64,
                layers: c.num_hidden_layers as u64,
                heads: c.num_attention_heads as u64,
                intermediate: c.intermediate_size as u64,
                positions: c.max_position_embeddings as u64,
                type_vocab: c.type_vocab_size as u64,
            },
            FamilyConfig::DistilBert(c) => ArchSpec::DistilBert {
                vocab: c.vocab_size as u64,
                hidden: c.dim as u64,
                layers: c.n_layers as u64,
                heads: c.n_heads as u64,
                intermediate: c.hidden_dim as u64,
                positions: c.max_position_embeddings as u64,
            },
            FamilyConfig::Marian(c) => ArchSpec::EncoderDecoder {
                vocab: c.vocab_size as u64,
                hidden: c.d_model as u64,
                encoder_layers: c.encoder_layers as u64,
                decoder_layers: c.decoder_layers as u64,
                heads: c.decoder_attention_heads as u64,
                intermediate: c.decoder_ffn_dim as u64,
                encoder_intermediate: c.encoder_ffn_dim as u64,
                positions: c.max_position_embeddings as u64,
                stored_positions: true,
                target_vocab: (!c.share_encoder_decoder_embeddings)
                    .then_some(c.target_vocab_size() as u64),
                tied_head: c.tie_word_embeddings,
            },
        }
    }
}

/// Which heads sit on top of the backbone. A head a family does not have (a pooler on GPT-2,
/// NSP on DistilBERT) is left out of the count and named in [`ParamBreakdown::notes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Heads {
    /// BERT/RoBERTa/ALBERT pooler: dense H·H + H with tanh over the first token.
    pub pooler: bool,
    /// Masked-LM head: transform dense + LayerNorm + output bias; the decoder weight is tied to
    /// the token embeddings and adds nothing.
    pub masked_lm: bool,
    /// BERT next-sentence prediction / ALBERT sentence-order prediction: 2·H + 2.
    pub next_sentence: bool,
    /// Sequence classifier with this many outputs.
    pub classifier: Option<u64>,
    /// Extractive question answering (span start and end logits): 2·H + 2.
    pub question_answering: bool,
    /// GPT-2 LM head: tied to the token embeddings, so it adds nothing; listed so the table says so.
    pub lm_head: bool,
}

impl Heads {
    /// The bare backbone: no pooler, no head.
    pub fn none() -> Self {
        Self::default()
    }

    /// What the family's `transformers` base class builds (`BertModel`, `RobertaModel`,
    /// `AlbertModel` add a pooler; `DistilBertModel` and `GPT2Model` have none).
    pub fn base_model(spec: &ArchSpec) -> Self {
        let pooler = matches!(
            spec,
            ArchSpec::Bert { .. } | ArchSpec::Roberta { .. } | ArchSpec::Albert { .. }
        );
        Self {
            pooler,
            ..Self::default()
        }
    }

    /// The heads a checkpoint of this architecture carries, as `transformers` builds it.
    /// `classifier_labels` is only used by `BertForSequenceClassification`.
    pub fn for_architecture(architecture: Architecture, classifier_labels: u64) -> Self {
        let none = Self::default();
        match architecture {
            Architecture::Gpt2LmHead => Self {
                lm_head: true,
                ..none
            },
            Architecture::BertModel => Self {
                pooler: true,
                ..none
            },
            Architecture::BertForPreTraining => Self {
                pooler: true,
                masked_lm: true,
                next_sentence: true,
                ..none
            },
            // BertForMaskedLM and BertForQuestionAnswering build BertModel(add_pooling_layer=False).
            Architecture::BertForMaskedLm => Self {
                masked_lm: true,
                ..none
            },
            Architecture::BertForSequenceClassification => Self {
                pooler: true,
                classifier: Some(classifier_labels),
                ..none
            },
            Architecture::BertForQuestionAnswering => Self {
                question_answering: true,
                ..none
            },
            Architecture::DistilBertModel => none,
            Architecture::DistilBertForMaskedLm => Self {
                masked_lm: true,
                ..none
            },
            Architecture::MarianMt => Self {
                lm_head: true,
                ..none
            },
        }
    }

    /// "pooler, MLM, NSP" or "no heads".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.pooler {
            parts.push("pooler".to_string());
        }
        if self.masked_lm {
            parts.push("MLM".to_string());
        }
        if self.next_sentence {
            parts.push("NSP".to_string());
        }
        if let Some(labels) = self.classifier {
            parts.push(format!("classifier ({labels} labels)"));
        }
        if self.question_answering {
            parts.push("QA".to_string());
        }
        if self.lm_head {
            parts.push("LM head (tied)".to_string());
        }
        if parts.is_empty() {
            "no heads".to_string()
        } else {
            parts.join(", ")
        }
    }
}

impl From<&ModelConfig> for Heads {
    fn from(config: &ModelConfig) -> Self {
        let labels = match &config.family {
            // transformers' default num_labels is 2 when the config names no labels.
            FamilyConfig::Bert(c) if !c.labels.is_empty() => c.labels.len() as u64,
            _ => 2,
        };
        Heads::for_architecture(config.architecture, labels)
    }
}

// ---------------------------------------------------------------------------------------------
// The result
// ---------------------------------------------------------------------------------------------

/// What kind of component a row is, for grouping and charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamGroup {
    Embeddings,
    Attention,
    /// Encoder–decoder: the decoder's attention over the encoder output.
    #[serde(rename = "cross_attention")]
    CrossAttention,
    Ffn,
    #[serde(rename = "layernorm")]
    LayerNorm,
    Pooler,
    Heads,
}

impl ParamGroup {
    pub const ALL: [ParamGroup; 7] = [
        ParamGroup::Embeddings,
        ParamGroup::Attention,
        ParamGroup::CrossAttention,
        ParamGroup::Ffn,
        ParamGroup::LayerNorm,
        ParamGroup::Pooler,
        ParamGroup::Heads,
    ];

    /// The serialized key: "embeddings", "attention", "ffn", "layernorm", "pooler", "heads".
    pub fn key(self) -> &'static str {
        match self {
            ParamGroup::Embeddings => "embeddings",
            ParamGroup::Attention => "attention",
            ParamGroup::CrossAttention => "cross_attention",
            ParamGroup::Ffn => "ffn",
            ParamGroup::LayerNorm => "layernorm",
            ParamGroup::Pooler => "pooler",
            ParamGroup::Heads => "heads",
        }
    }

    /// A label for a UI legend.
    pub fn label(self) -> &'static str {
        match self {
            ParamGroup::Embeddings => "Embeddings",
            ParamGroup::Attention => "Attention",
            ParamGroup::CrossAttention => "Cross-attention",
            ParamGroup::Ffn => "Feed-forward",
            ParamGroup::LayerNorm => "LayerNorm",
            ParamGroup::Pooler => "Pooler",
            ParamGroup::Heads => "Heads",
        }
    }
}

impl fmt::Display for ParamGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// One line of the table: a component (one tensor or a Linear's weight + bias), for one layer
/// or, aggregated, for all L layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamRow {
    /// e.g. "layers 0–11: attention query (Q)" or "token embeddings".
    pub component: String,
    pub group: ParamGroup,
    /// How many copies of the component exist: L for a per-layer row, 1 otherwise (ALBERT's shared
    /// layer is one copy used L times). `textbook` and `exact` already include it.
    pub copies: u64,
    /// The exact count as a formula, symbols then numbers: "L·(H·H + H) = 12·(768·768 + 768)".
    pub formula: String,
    /// The textbook part of it (weight matrices only): "L·H·H = 12·768·768", or "—" when the
    /// textbook ignores the row (biases, LayerNorms).
    pub textbook_formula: String,
    pub textbook: u64,
    pub exact: u64,
    /// Parameters that training never updates (Marian's stored sinusoidal position tables):
    /// counted by `num_parameters()`, not by `num_parameters(only_trainable=True)`.
    #[serde(default)]
    pub frozen: bool,
    /// Where in the model the row's parameters sit (the model map places them by it); `None`
    /// only in rows read from files written before it existed.
    #[serde(default)]
    pub site: Option<ParamSite>,
}

/// A sublayer of a transformer layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sublayer {
    SelfAttention,
    /// Encoder–decoder, decoder layers: attention over the encoder's output.
    CrossAttention,
    FeedForward,
}

/// A head on top of the backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadSite {
    MaskedLm,
    NextSentence,
    Classifier,
    QuestionAnswering,
    /// The causal LM head (GPT-2, an encoder–decoder's decoder), with Marian's
    /// `final_logits_bias`.
    LmHead,
}

/// Where a row's parameters sit in the model: which embedding table, which sublayer (or the
/// LayerNorm that goes with it) of which stack, which head. `stack: None` is the only stack of a
/// single-stack model, or a table every stack shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamSite {
    TokenEmbeddings {
        stack: Option<StackRole>,
    },
    PositionEmbeddings {
        stack: Option<StackRole>,
    },
    SegmentEmbeddings,
    /// ALBERT: the E → H projection after the factorized embeddings.
    EmbeddingProjection,
    EmbeddingNorm,
    /// A sublayer of every layer of a stack (`norm`: the LayerNorm that goes with it: before it
    /// in a pre-LN stack, after its residual add in a post-LN one).
    Layer {
        stack: Option<StackRole>,
        sublayer: Sublayer,
        norm: bool,
    },
    /// GPT-2's LayerNorm after the last layer.
    FinalNorm,
    Pooler,
    Head(HeadSite),
}

/// Totals of one group, for a chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupTotal {
    pub group: ParamGroup,
    pub textbook: u64,
    pub exact: u64,
}

/// A model's parameters, component by component, textbook and exact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamBreakdown {
    pub name: String,
    pub spec: ArchSpec,
    pub heads: Heads,
    /// Embeddings, then one representative set of per-layer rows (aggregated over all layers),
    /// then final LayerNorm, pooler and heads. Stays short for 96 layers.
    pub rows: Vec<ParamRow>,
    /// The whole textbook formula with its values, e.g.
    /// "L·(4·H² + 2·H·F) + (V + P + T)·H + H·H = 109,360,128, where L=12, H=768, …".
    pub textbook_formula: String,
    pub textbook_total: u64,
    pub exact_total: u64,
    /// The exact total less frozen rows (`num_parameters(only_trainable=True)`).
    #[serde(default)]
    pub trainable_total: u64,
    /// Heads that were asked for but do not exist in this family, and similar remarks.
    pub notes: Vec<String>,
}

impl ParamBreakdown {
    /// Sums per group in [`ParamGroup::ALL`] order; groups without parameters are left out.
    pub fn group_totals(&self) -> Vec<GroupTotal> {
        ParamGroup::ALL
            .iter()
            .map(|&group| {
                let rows = self.rows.iter().filter(|r| r.group == group);
                GroupTotal {
                    group,
                    textbook: rows
                        .clone()
                        .fold(0, |sum, r| sum.saturating_add(r.textbook)),
                    exact: rows.fold(0, |sum, r| sum.saturating_add(r.exact)),
                }
            })
            .filter(|total| total.exact > 0 || total.textbook > 0)
            .collect()
    }

    /// Bytes the exact parameters take in float32.
    pub fn memory_bytes_f32(&self) -> u64 {
        memory_bytes_f32(self.exact_total)
    }
}

/// Bytes `parameters` take in float32 (4 bytes each).
pub fn memory_bytes_f32(parameters: u64) -> u64 {
    parameters.saturating_mul(4)
}

// ---------------------------------------------------------------------------------------------
// Presets
// ---------------------------------------------------------------------------------------------

/// Well-known models, with the hyper-parameters of their published checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Preset {
    BertBase,
    BertLarge,
    DistilBert,
    RobertaLarge,
    AlbertBase,
    Gpt2,
    Gpt2Medium,
    Gpt2Large,
    Gpt2Xl,
    Gpt3_175b,
    TransformerBase,
    TransformerBig,
    MarianEnFr,
}

impl Preset {
    pub const ALL: [Preset; 13] = [
        Preset::BertBase,
        Preset::BertLarge,
        Preset::DistilBert,
        Preset::RobertaLarge,
        Preset::AlbertBase,
        Preset::Gpt2,
        Preset::Gpt2Medium,
        Preset::Gpt2Large,
        Preset::Gpt2Xl,
        Preset::Gpt3_175b,
        Preset::TransformerBase,
        Preset::TransformerBig,
        Preset::MarianEnFr,
    ];

    /// The name on the command line: "bert-base", …, "gpt3-175b".
    pub fn cli_name(self) -> &'static str {
        match self {
            Preset::BertBase => "bert-base",
            Preset::BertLarge => "bert-large",
            Preset::DistilBert => "distilbert",
            Preset::RobertaLarge => "roberta-large",
            Preset::AlbertBase => "albert-base",
            Preset::Gpt2 => "gpt2",
            Preset::Gpt2Medium => "gpt2-medium",
            Preset::Gpt2Large => "gpt2-large",
            Preset::Gpt2Xl => "gpt2-xl",
            Preset::Gpt3_175b => "gpt3-175b",
            Preset::TransformerBase => "transformer-base",
            Preset::TransformerBig => "transformer-big",
            Preset::MarianEnFr => "marian-en-fr",
        }
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Preset::BertBase => "BERT-Base",
            Preset::BertLarge => "BERT-Large",
            Preset::DistilBert => "DistilBERT",
            Preset::RobertaLarge => "RoBERTa-Large",
            Preset::AlbertBase => "ALBERT-Base",
            Preset::Gpt2 => "GPT-2 Small",
            Preset::Gpt2Medium => "GPT-2 Medium",
            Preset::Gpt2Large => "GPT-2 Large",
            Preset::Gpt2Xl => "GPT-2 XL",
            Preset::Gpt3_175b => "GPT-3 175B",
            Preset::TransformerBase => "Transformer (base, 2017)",
            Preset::TransformerBig => "Transformer (big, 2017)",
            Preset::MarianEnFr => "Marian en→fr",
        }
    }

    /// The Hugging Face Hub checkpoint whose `num_parameters()` the exact count reproduces
    /// (GPT-3 has none).
    pub fn hub_id(self) -> Option<&'static str> {
        match self {
            Preset::BertBase => Some("bert-base-uncased"),
            Preset::BertLarge => Some("bert-large-uncased"),
            Preset::DistilBert => Some("distilbert-base-uncased"),
            Preset::RobertaLarge => Some("roberta-large"),
            Preset::AlbertBase => Some("albert-base-v2"),
            Preset::Gpt2 => Some("gpt2"),
            Preset::Gpt2Medium => Some("gpt2-medium"),
            Preset::Gpt2Large => Some("gpt2-large"),
            Preset::Gpt2Xl => Some("gpt2-xl"),
            Preset::Gpt3_175b | Preset::TransformerBase | Preset::TransformerBig => None,
            Preset::MarianEnFr => Some("Helsinki-NLP/opus-mt-en-fr"),
        }
    }

    pub fn spec(self) -> ArchSpec {
        const BERT_VOCAB: u64 = 30522;
        const GPT2_VOCAB: u64 = 50257;
        let gpt = |positions, hidden, layers, heads| ArchSpec::Gpt2 {
            vocab: GPT2_VOCAB,
            positions,
            hidden,
            layers,
            heads,
            intermediate: 4 * hidden,
            bias: true,
        };
        match self {
            Preset::BertBase => ArchSpec::Bert {
                vocab: BERT_VOCAB,
                hidden: 768,
                layers: 12,
                heads: 12,
                intermediate: 3072,
                positions: 512,
                type_vocab: 2,
            },
            Preset::BertLarge => ArchSpec::Bert {
                vocab: BERT_VOCAB,
                hidden: 1024,
                layers: 24,
                heads: 16,
                intermediate: 4096,
                positions: 512,
                type_vocab: 2,
            },
            Preset::DistilBert => ArchSpec::DistilBert {
                vocab: BERT_VOCAB,
                hidden: 768,
                layers: 6,
                heads: 12,
                intermediate: 3072,
                positions: 512,
            },
            Preset::RobertaLarge => ArchSpec::Roberta {
                vocab: 50265,
                hidden: 1024,
                layers: 24,
                heads: 16,
                intermediate: 4096,
                positions: 514,
                type_vocab: 1,
            },
            Preset::AlbertBase => ArchSpec::Albert {
                vocab: 30000,
                embedding_size: 128,
                hidden: 768,
                layers: 12,
                heads: 12,
                intermediate: 3072,
                positions: 512,
                type_vocab: 2,
            },
            Preset::Gpt2 => gpt(1024, 768, 12, 12),
            Preset::Gpt2Medium => gpt(1024, 1024, 24, 16),
            Preset::Gpt2Large => gpt(1024, 1280, 36, 20),
            Preset::Gpt2Xl => gpt(1024, 1600, 48, 25),
            // GPT-3 paper, table 2.1: d_model 12288, 96 layers, 96 heads, context 2048.
            Preset::Gpt3_175b => gpt(2048, 12288, 96, 96),
            // "Attention Is All You Need", table 3: 6 + 6 layers, a shared source–target BPE
            // vocabulary of 37,000 tokens (WMT 2014 en-de), sinusoids computed, not stored.
            Preset::TransformerBase => ArchSpec::EncoderDecoder {
                vocab: 37000,
                hidden: 512,
                encoder_layers: 6,
                decoder_layers: 6,
                heads: 8,
                intermediate: 2048,
                encoder_intermediate: 2048,
                positions: 512,
                stored_positions: false,
                target_vocab: None,
                tied_head: true,
            },
            Preset::TransformerBig => ArchSpec::EncoderDecoder {
                vocab: 37000,
                hidden: 1024,
                encoder_layers: 6,
                decoder_layers: 6,
                heads: 16,
                intermediate: 4096,
                encoder_intermediate: 4096,
                positions: 512,
                stored_positions: false,
                target_vocab: None,
                tied_head: true,
            },
            Preset::MarianEnFr => ArchSpec::EncoderDecoder {
                vocab: 59514,
                hidden: 512,
                encoder_layers: 6,
                decoder_layers: 6,
                heads: 8,
                intermediate: 2048,
                encoder_intermediate: 2048,
                positions: 512,
                stored_positions: true,
                target_vocab: None,
                tied_head: true,
            },
        }
    }

    /// The heads of the class whose count is usually quoted: the base model (with pooler for
    /// BERT, RoBERTa, ALBERT), and the tied LM head for the GPTs.
    pub fn heads(self) -> Heads {
        match self.spec() {
            ArchSpec::Gpt2 { .. } | ArchSpec::EncoderDecoder { .. } => Heads {
                lm_head: true,
                ..Heads::none()
            },
            spec => Heads::base_model(&spec),
        }
    }

    pub fn breakdown(self) -> ParamBreakdown {
        let mut result = breakdown(&self.spec(), self.heads());
        result.name = match self.hub_id() {
            Some(id) => format!("{} ({id})", self.display_name()),
            None => self.display_name().to_string(),
        };
        result
    }

    fn valid_names() -> String {
        Preset::ALL
            .iter()
            .map(|p| p.cli_name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The table of a preset named as on the command line ("bert-base") or by its Hub id.
pub fn preset_breakdown(name: &str) -> Result<ParamBreakdown> {
    Ok(name.parse::<Preset>()?.breakdown())
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cli_name())
    }
}

impl FromStr for Preset {
    type Err = GlassboxError;

    /// Accepts the CLI name or the Hub id, in any case, with `_` for `-`.
    fn from_str(text: &str) -> Result<Self> {
        let wanted = text.trim().to_ascii_lowercase().replace('_', "-");
        Preset::ALL
            .into_iter()
            .find(|p| {
                p.cli_name() == wanted
                    || p.hub_id().map(str::to_ascii_lowercase).as_deref() == Some(wanted.as_str())
            })
            .ok_or_else(|| {
                GlassboxError::InvalidInput(format!(
                    "unknown preset {text:?}; valid presets: {}",
                    Preset::valid_names()
                ))
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Formulas: a row is a sum of terms, each a product of named dimensions
// ---------------------------------------------------------------------------------------------

/// A dimension as it appears in a formula: its symbol and its value.
#[derive(Debug, Clone, Copy)]
struct Dim {
    symbol: &'static str,
    value: u64,
}

const fn dim(symbol: &'static str, value: u64) -> Dim {
    Dim { symbol, value }
}

/// One product in a row's formula, e.g. `H·F` (a weight matrix) or `2·H` (a LayerNorm).
#[derive(Debug, Clone)]
struct Term {
    coefficient: u64,
    factors: Vec<Dim>,
    /// Weight matrices and embedding tables are in the textbook formula; biases and LayerNorm
    /// gains are not.
    in_textbook: bool,
}

impl Term {
    fn value(&self) -> u64 {
        // Saturating: a hand-written config with absurd sizes must not overflow into nonsense.
        self.factors.iter().fold(self.coefficient, |product, d| {
            product.saturating_mul(d.value)
        })
    }

    fn render(&self, show: impl Fn(&Dim) -> String) -> String {
        let mut parts = Vec::new();
        if self.coefficient != 1 || self.factors.is_empty() {
            parts.push(self.coefficient.to_string());
        }
        parts.extend(self.factors.iter().map(show));
        parts.join("·")
    }
}

/// A weight matrix or embedding table `rows × cols`.
fn matrix(rows: Dim, cols: Dim) -> Term {
    Term {
        coefficient: 1,
        factors: vec![rows, cols],
        in_textbook: true,
    }
}

/// A bias vector.
fn vector(len: Dim) -> Term {
    Term {
        coefficient: 1,
        factors: vec![len],
        in_textbook: false,
    }
}

/// A LayerNorm: gain and bias (nanoGPT style: gain only).
fn norm(width: Dim, with_bias: bool) -> Vec<Term> {
    vec![Term {
        coefficient: if with_bias { 2 } else { 1 },
        factors: vec![width],
        in_textbook: false,
    }]
}

/// A Linear layer `input → output`, weight plus optional bias.
fn linear(input: Dim, output: Dim, with_bias: bool) -> Vec<Term> {
    let mut terms = vec![matrix(input, output)];
    if with_bias {
        terms.push(vector(output));
    }
    terms
}

/// A Linear layer to a fixed small number of outputs (NSP: 2, QA: 2): `k·H + k`.
fn linear_to_constant(input: Dim, outputs: u64, with_bias: bool) -> Vec<Term> {
    let mut terms = vec![Term {
        coefficient: outputs,
        factors: vec![input],
        in_textbook: true,
    }];
    if with_bias {
        terms.push(Term {
            coefficient: outputs,
            factors: Vec::new(),
            in_textbook: false,
        });
    }
    terms
}

fn sum(terms: &[&Term]) -> u64 {
    terms
        .iter()
        .fold(0, |total, t| total.saturating_add(t.value()))
}

/// "H·H + H = 768·768 + 768", or with copies "L·(H·H + H) = 12·(768·768 + 768)"; "—" if empty.
fn formula_text(copies: Option<Dim>, terms: &[&Term]) -> String {
    if terms.is_empty() {
        return "—".to_string();
    }
    let join = |show: &dyn Fn(&Dim) -> String| {
        terms
            .iter()
            .map(|t| t.render(show))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let mut symbols = join(&|d| d.symbol.to_string());
    let mut numbers = join(&|d| d.value.to_string());
    if let Some(copies) = copies {
        let wrap = |inner: String, multiplier: String| {
            if terms.len() > 1 {
                format!("{multiplier}·({inner})")
            } else {
                format!("{multiplier}·{inner}")
            }
        };
        symbols = wrap(symbols, copies.symbol.to_string());
        numbers = wrap(numbers, copies.value.to_string());
    }
    if symbols == numbers {
        symbols
    } else {
        format!("{symbols} = {numbers}")
    }
}

/// How a per-layer component repeats.
#[derive(Debug, Clone, Copy)]
struct LayerScope {
    layers: Dim,
    /// ALBERT: one set of weights used by every layer.
    shared: bool,
    /// Which stack of an encoder–decoder (`None` in single-stack models).
    stack: Option<StackRole>,
}

impl LayerScope {
    fn prefix(&self) -> String {
        let layers = self.layers.value;
        if self.shared {
            format!("shared layer (used {layers}×)")
        } else if layers == 1 {
            "layer 0".to_string()
        } else {
            format!("layers 0–{}", layers - 1)
        }
    }

    /// Where a sublayer's parameters (or its LayerNorm's, with `norm`) sit.
    fn site(&self, sublayer: Sublayer, norm: bool) -> ParamSite {
        ParamSite::Layer {
            stack: self.stack,
            sublayer,
            norm,
        }
    }

    /// The multiplier shown in formulas; none for a shared layer (stored once).
    fn copies(&self) -> Option<Dim> {
        (!self.shared).then_some(self.layers)
    }
}

/// Collects rows while the breakdown is built.
#[derive(Default)]
struct Builder {
    rows: Vec<ParamRow>,
    notes: Vec<String>,
    /// Textbook terms of pooler and heads, "symbols (component)", for the whole-model formula.
    head_formulas: Vec<String>,
    /// Dimensions those terms use, for its "where" clause.
    head_dims: Vec<Dim>,
    /// Where the next row's parameters sit (set by [`Builder::at`], taken by the row).
    site: Option<ParamSite>,
}

impl Builder {
    /// The next row is at `site`: `builder.at(ParamSite::Pooler).once(…)`.
    fn at(&mut self, site: ParamSite) -> &mut Self {
        self.site = Some(site);
        self
    }

    fn push(&mut self, component: String, group: ParamGroup, copies: Option<Dim>, terms: &[Term]) {
        let all: Vec<&Term> = terms.iter().collect();
        let textbook_terms: Vec<&Term> = terms.iter().filter(|t| t.in_textbook).collect();
        let multiplier = copies.map_or(1, |d| d.value);
        if matches!(group, ParamGroup::Pooler | ParamGroup::Heads) && !textbook_terms.is_empty() {
            let symbols: Vec<String> = textbook_terms
                .iter()
                .map(|t| t.render(|d| d.symbol.to_string()))
                .collect();
            self.head_formulas
                .push(format!("{} ({component})", symbols.join(" + ")));
            self.head_dims.extend(
                textbook_terms
                    .iter()
                    .flat_map(|t| t.factors.iter().copied()),
            );
        }
        self.rows.push(ParamRow {
            component,
            group,
            copies: multiplier,
            formula: formula_text(copies, &all),
            textbook_formula: formula_text(copies, &textbook_terms),
            textbook: sum(&textbook_terms).saturating_mul(multiplier),
            exact: sum(&all).saturating_mul(multiplier),
            frozen: false,
            site: self.site.take(),
        });
    }

    /// A row of parameters that are stored but never trained.
    fn frozen(&mut self, component: &str, group: ParamGroup, terms: Vec<Term>) {
        self.once(component, group, terms);
        if let Some(row) = self.rows.last_mut() {
            // Not a learned table, so not in the textbook count either.
            row.frozen = true;
            row.formula.push_str(" (fixed sinusoids, not trained)");
            row.textbook = 0;
            row.textbook_formula = "—".to_string();
        }
    }

    /// A row that holds no parameters, shown so the table says why (a buffer, computed values).
    fn without_parameters(&mut self, component: &str, group: ParamGroup, why: &str) {
        self.rows.push(ParamRow {
            component: component.to_string(),
            group,
            copies: 1,
            formula: format!("0 ({why})"),
            textbook_formula: "—".to_string(),
            textbook: 0,
            exact: 0,
            frozen: false,
            site: self.site.take(),
        });
    }

    fn once(&mut self, component: &str, group: ParamGroup, terms: Vec<Term>) {
        self.push(component.to_string(), group, None, &terms);
    }

    fn per_layer(
        &mut self,
        scope: LayerScope,
        component: &str,
        group: ParamGroup,
        terms: Vec<Term>,
    ) {
        if scope.layers.value == 0 {
            self.site = None;
            return;
        }
        let component = format!("{}: {component}", scope.prefix());
        self.push(component, group, scope.copies(), &terms);
    }

    /// A weight shared with another tensor: shown, counted zero times here.
    fn tied(&mut self, component: &str, group: ParamGroup, tied_to: &str) {
        self.rows.push(ParamRow {
            component: component.to_string(),
            group,
            copies: 1,
            formula: format!("0 (tied to {tied_to}, counted there)"),
            textbook_formula: "—".to_string(),
            textbook: 0,
            exact: 0,
            frozen: false,
            site: self.site.take(),
        });
    }

    fn note_missing(&mut self, family: &str, head: &str) {
        self.notes
            .push(format!("{family} has no {head}; it is not counted"));
    }
}

// ---------------------------------------------------------------------------------------------
// The breakdown
// ---------------------------------------------------------------------------------------------

/// The backbone's textbook formula in symbols, with the values of its symbols, e.g.
/// "L·(4·H² + 2·H·F) + (V + P + T)·H, where L=12, H=768, F=3072, V=30522, P=512, T=2".
pub fn textbook_formula_text(spec: &ArchSpec) -> String {
    let (symbols, dims) = backbone_textbook_formula(spec);
    format!("{symbols}, where {}", where_clause(&dims))
}

fn where_clause(dims: &[Dim]) -> String {
    dims.iter()
        .map(|d| format!("{}={}", d.symbol, d.value))
        .collect::<Vec<_>>()
        .join(", ")
}

fn backbone_textbook_formula(spec: &ArchSpec) -> (String, Vec<Dim>) {
    let l = dim("L", spec.layers());
    let h = dim("H", spec.hidden());
    let f = dim("F", spec.intermediate());
    let v = dim("V", spec.vocab());
    let p = dim("P", spec.positions());
    const LAYERS: &str = "L·(4·H² + 2·H·F)";
    match *spec {
        ArchSpec::Bert { type_vocab, .. } | ArchSpec::Roberta { type_vocab, .. } => {
            if type_vocab == 0 {
                (format!("{LAYERS} + (V + P)·H"), vec![l, h, f, v, p])
            } else {
                let t = dim("T", type_vocab);
                (format!("{LAYERS} + (V + P + T)·H"), vec![l, h, f, v, p, t])
            }
        }
        ArchSpec::Albert {
            embedding_size,
            type_vocab,
            ..
        } => {
            // One shared layer: the layer weights are counted once, whatever L is.
            let e = dim("E", embedding_size);
            let t = dim("T", type_vocab);
            (
                "4·H² + 2·H·F + (V + P + T)·E + E·H".to_string(),
                vec![h, f, v, p, t, e],
            )
        }
        ArchSpec::DistilBert { .. } | ArchSpec::Gpt2 { .. } => {
            (format!("{LAYERS} + (V + P)·H"), vec![l, h, f, v, p])
        }
        ArchSpec::EncoderDecoder {
            encoder_layers,
            decoder_layers,
            encoder_intermediate,
            intermediate,
            target_vocab,
            tied_head,
            ..
        } => {
            // A decoder layer has two attention blocks (self and cross): 8·H².
            let encoder = dim("Lenc", encoder_layers);
            let decoder = dim("Ldec", decoder_layers);
            let mut dims = vec![encoder, decoder, h, f];
            let encoder_f = if encoder_intermediate == intermediate {
                "F"
            } else {
                dims.push(dim("Fenc", encoder_intermediate));
                "Fenc"
            };
            dims.push(v);
            let mut text = format!("Lenc·(4·H² + 2·H·{encoder_f}) + Ldec·(8·H² + 2·H·F) + V·H");
            let target_rows = match target_vocab {
                Some(target) => {
                    dims.push(dim("Vt", target));
                    text.push_str(" + Vt·H");
                    "Vt"
                }
                None => "V",
            };
            if !tied_head {
                text.push_str(&format!(" + {target_rows}·H (LM head)"));
            }
            (text, dims)
        }
    }
}

/// The parameter table of `spec` with `heads` on top.
pub fn breakdown(spec: &ArchSpec, heads: Heads) -> ParamBreakdown {
    let mut builder = Builder::default();
    match *spec {
        ArchSpec::Bert {
            vocab,
            hidden,
            layers,
            intermediate,
            positions,
            type_vocab,
            ..
        }
        | ArchSpec::Roberta {
            vocab,
            hidden,
            layers,
            intermediate,
            positions,
            type_vocab,
            ..
        } => {
            let h = dim("H", hidden);
            embeddings(
                &mut builder,
                dim("V", vocab),
                h,
                dim("P", positions),
                type_vocab,
            );
            builder.at(ParamSite::EmbeddingNorm).once(
                "embedding LayerNorm",
                ParamGroup::LayerNorm,
                norm(h, true),
            );
            let scope = LayerScope {
                layers: dim("L", layers),
                shared: false,
                stack: None,
            };
            encoder_layer(&mut builder, scope, h, dim("F", intermediate));
        }
        ArchSpec::Albert {
            vocab,
            embedding_size,
            hidden,
            layers,
            intermediate,
            positions,
            type_vocab,
            ..
        } => {
            let e = dim("E", embedding_size);
            let h = dim("H", hidden);
            embeddings(
                &mut builder,
                dim("V", vocab),
                e,
                dim("P", positions),
                type_vocab,
            );
            builder.at(ParamSite::EmbeddingNorm).once(
                "embedding LayerNorm",
                ParamGroup::LayerNorm,
                norm(e, true),
            );
            builder.at(ParamSite::EmbeddingProjection).once(
                "embedding projection E → H",
                ParamGroup::Embeddings,
                linear(e, h, true),
            );
            let scope = LayerScope {
                layers: dim("L", layers),
                shared: true,
                stack: None,
            };
            encoder_layer(&mut builder, scope, h, dim("F", intermediate));
        }
        ArchSpec::DistilBert {
            vocab,
            hidden,
            layers,
            intermediate,
            positions,
            ..
        } => {
            let h = dim("H", hidden);
            embeddings(&mut builder, dim("V", vocab), h, dim("P", positions), 0);
            builder.at(ParamSite::EmbeddingNorm).once(
                "embedding LayerNorm",
                ParamGroup::LayerNorm,
                norm(h, true),
            );
            let scope = LayerScope {
                layers: dim("L", layers),
                shared: false,
                stack: None,
            };
            encoder_layer(&mut builder, scope, h, dim("F", intermediate));
        }
        ArchSpec::Gpt2 {
            vocab,
            positions,
            hidden,
            layers,
            intermediate,
            bias,
            ..
        } => {
            let h = dim("H", hidden);
            embeddings(&mut builder, dim("V", vocab), h, dim("P", positions), 0);
            let scope = LayerScope {
                layers: dim("L", layers),
                shared: false,
                stack: None,
            };
            gpt2_layer(&mut builder, scope, h, dim("F", intermediate), bias);
            builder.at(ParamSite::FinalNorm).once(
                "final LayerNorm (ln_f)",
                ParamGroup::LayerNorm,
                norm(h, bias),
            );
        }
        ArchSpec::EncoderDecoder {
            vocab,
            hidden,
            encoder_layers,
            decoder_layers,
            intermediate,
            encoder_intermediate,
            positions,
            stored_positions,
            target_vocab,
            ..
        } => {
            let h = dim("H", hidden);
            let f = dim("F", intermediate);
            let p = dim("P", positions);
            match target_vocab {
                None => builder.at(ParamSite::TokenEmbeddings { stack: None }).once(
                    "shared token embeddings (encoder, decoder, LM head)",
                    ParamGroup::Embeddings,
                    vec![matrix(dim("V", vocab), h)],
                ),
                Some(target) => {
                    builder
                        .at(ParamSite::TokenEmbeddings {
                            stack: Some(StackRole::Encoder),
                        })
                        .once(
                            "encoder token embeddings",
                            ParamGroup::Embeddings,
                            vec![matrix(dim("V", vocab), h)],
                        );
                    builder
                        .at(ParamSite::TokenEmbeddings {
                            stack: Some(StackRole::Decoder),
                        })
                        .once(
                            "decoder token embeddings",
                            ParamGroup::Embeddings,
                            vec![matrix(dim("Vt", target), h)],
                        );
                }
            }
            for role in [StackRole::Encoder, StackRole::Decoder] {
                let component = format!("{} positions (sinusoidal)", role.name());
                builder.at(ParamSite::PositionEmbeddings { stack: Some(role) });
                if stored_positions {
                    builder.frozen(&component, ParamGroup::Embeddings, vec![matrix(p, h)]);
                } else {
                    builder.without_parameters(
                        &component,
                        ParamGroup::Embeddings,
                        "computed, not stored",
                    );
                }
            }
            let encoder = LayerScope {
                layers: dim("Lenc", encoder_layers),
                shared: false,
                stack: Some(StackRole::Encoder),
            };
            let decoder = LayerScope {
                layers: dim("Ldec", decoder_layers),
                shared: false,
                stack: Some(StackRole::Decoder),
            };
            let encoder_f = if encoder_intermediate == intermediate {
                f
            } else {
                dim("Fenc", encoder_intermediate)
            };
            encoder_decoder_layers(&mut builder, encoder, decoder, h, (encoder_f, f));
        }
    }
    head_rows(&mut builder, spec, &heads);

    let textbook_total = builder
        .rows
        .iter()
        .fold(0u64, |total, r| total.saturating_add(r.textbook));
    let exact_total = builder
        .rows
        .iter()
        .fold(0u64, |total, r| total.saturating_add(r.exact));
    let frozen_total = builder
        .rows
        .iter()
        .filter(|r| r.frozen)
        .fold(0u64, |total, r| total.saturating_add(r.exact));
    let textbook_formula = whole_textbook_formula(spec, &builder, textbook_total);
    ParamBreakdown {
        name: format!(
            "{} ({}) · {}",
            spec.family_name(),
            spec.summary(),
            heads.describe()
        ),
        spec: *spec,
        heads,
        rows: builder.rows,
        textbook_formula,
        textbook_total,
        exact_total,
        trainable_total: exact_total.saturating_sub(frozen_total),
        notes: builder.notes,
    }
}

/// The table for a loaded config, with the heads its architecture carries.
pub fn breakdown_for_config(config: &ModelConfig) -> ParamBreakdown {
    let spec = ArchSpec::from(config);
    let mut result = breakdown(&spec, Heads::from(config));
    result.name = format!("{} ({})", config.architecture.hf_name(), spec.summary());
    result
}

/// Backbone formula, plus the textbook terms of pooler and heads, then the total and the values.
fn whole_textbook_formula(spec: &ArchSpec, builder: &Builder, total: u64) -> String {
    let (mut symbols, mut dims) = backbone_textbook_formula(spec);
    for head in &builder.head_formulas {
        symbols.push_str(&format!(" + {head}"));
    }
    for head_dim in &builder.head_dims {
        if !dims.iter().any(|d| d.symbol == head_dim.symbol) {
            dims.push(*head_dim);
        }
    }
    format!(
        "{symbols} = {}, where {}",
        group_thousands(total),
        where_clause(&dims)
    )
}

/// Token, position and (if `type_vocab > 0`) segment embedding tables of width `width`.
fn embeddings(builder: &mut Builder, v: Dim, width: Dim, p: Dim, type_vocab: u64) {
    builder.at(ParamSite::TokenEmbeddings { stack: None }).once(
        "token embeddings",
        ParamGroup::Embeddings,
        vec![matrix(v, width)],
    );
    builder
        .at(ParamSite::PositionEmbeddings { stack: None })
        .once(
            "position embeddings",
            ParamGroup::Embeddings,
            vec![matrix(p, width)],
        );
    if type_vocab > 0 {
        builder.at(ParamSite::SegmentEmbeddings).once(
            "segment (token type) embeddings",
            ParamGroup::Embeddings,
            vec![matrix(dim("T", type_vocab), width)],
        );
    }
}

/// A post-LayerNorm encoder layer (BERT, RoBERTa, ALBERT, DistilBERT): separate Q, K, V, O with
/// biases, then the FFN, each followed by a LayerNorm.
fn encoder_layer(builder: &mut Builder, scope: LayerScope, h: Dim, f: Dim) {
    use ParamGroup::{Attention, Ffn, LayerNorm};
    use Sublayer::{FeedForward, SelfAttention};
    for part in ["query (Q)", "key (K)", "value (V)", "output (O)"] {
        builder.at(scope.site(SelfAttention, false)).per_layer(
            scope,
            &format!("attention {part}"),
            Attention,
            linear(h, h, true),
        );
    }
    builder.at(scope.site(SelfAttention, true)).per_layer(
        scope,
        "attention LayerNorm",
        LayerNorm,
        norm(h, true),
    );
    builder.at(scope.site(FeedForward, false)).per_layer(
        scope,
        "FFN up (intermediate)",
        Ffn,
        linear(h, f, true),
    );
    builder.at(scope.site(FeedForward, false)).per_layer(
        scope,
        "FFN down (output)",
        Ffn,
        linear(f, h, true),
    );
    builder.at(scope.site(FeedForward, true)).per_layer(
        scope,
        "FFN LayerNorm",
        LayerNorm,
        norm(h, true),
    );
}

/// The 2017 transformer's two stacks (Marian names): encoder layers as in [`encoder_layer`];
/// decoder layers with causal self-attention, then a cross-attention block (queries from the
/// decoder, keys and values from the encoder output), then the FFN, each followed by a LayerNorm.
fn encoder_decoder_layers(
    builder: &mut Builder,
    encoder: LayerScope,
    decoder: LayerScope,
    h: Dim,
    (encoder_f, f): (Dim, Dim),
) {
    use ParamGroup::{Attention, CrossAttention, Ffn, LayerNorm};
    let attention = |builder: &mut Builder, scope: LayerScope, name: &str, group| {
        let sublayer = if group == CrossAttention {
            Sublayer::CrossAttention
        } else {
            Sublayer::SelfAttention
        };
        for part in ["query (Q)", "key (K)", "value (V)", "output (O)"] {
            builder.at(scope.site(sublayer, false)).per_layer(
                scope,
                &format!("{name} {part}"),
                group,
                linear(h, h, true),
            );
        }
        builder.at(scope.site(sublayer, true)).per_layer(
            scope,
            &format!("{name} LayerNorm"),
            LayerNorm,
            norm(h, true),
        );
    };
    let ffn = |builder: &mut Builder, scope: LayerScope, f| {
        use Sublayer::FeedForward;
        builder.at(scope.site(FeedForward, false)).per_layer(
            scope,
            "FFN up (fc1)",
            Ffn,
            linear(h, f, true),
        );
        builder.at(scope.site(FeedForward, false)).per_layer(
            scope,
            "FFN down (fc2)",
            Ffn,
            linear(f, h, true),
        );
        builder.at(scope.site(FeedForward, true)).per_layer(
            scope,
            "FFN LayerNorm",
            LayerNorm,
            norm(h, true),
        );
    };
    // "layers 0–5: …" becomes "encoder layers 0–5: …".
    let name_stack = |builder: &mut Builder, from: usize, stack: &str| {
        for row in &mut builder.rows[from..] {
            row.component = format!("{stack} {}", row.component);
        }
    };
    let encoder_start = builder.rows.len();
    attention(builder, encoder, "self-attention", Attention);
    ffn(builder, encoder, encoder_f);
    name_stack(builder, encoder_start, "encoder");
    let decoder_start = builder.rows.len();
    attention(builder, decoder, "self-attention (causal)", Attention);
    attention(builder, decoder, "cross-attention", CrossAttention);
    ffn(builder, decoder, f);
    name_stack(builder, decoder_start, "decoder");
}

/// A GPT-2 block: LayerNorm before attention and before the MLP; Q, K, V fused in one matrix.
fn gpt2_layer(builder: &mut Builder, scope: LayerScope, h: Dim, f: Dim, bias: bool) {
    use ParamGroup::{Attention, Ffn, LayerNorm};
    use Sublayer::{FeedForward, SelfAttention};
    let three_h = dim("3H", h.value.saturating_mul(3));
    builder.at(scope.site(SelfAttention, true)).per_layer(
        scope,
        "LayerNorm before attention (ln_1)",
        LayerNorm,
        norm(h, bias),
    );
    builder.at(scope.site(SelfAttention, false)).per_layer(
        scope,
        "attention Q, K, V (c_attn)",
        Attention,
        linear(h, three_h, bias),
    );
    builder.at(scope.site(SelfAttention, false)).per_layer(
        scope,
        "attention output (c_proj)",
        Attention,
        linear(h, h, bias),
    );
    builder.at(scope.site(FeedForward, true)).per_layer(
        scope,
        "LayerNorm before MLP (ln_2)",
        LayerNorm,
        norm(h, bias),
    );
    builder.at(scope.site(FeedForward, false)).per_layer(
        scope,
        "MLP up (c_fc)",
        Ffn,
        linear(h, f, bias),
    );
    builder.at(scope.site(FeedForward, false)).per_layer(
        scope,
        "MLP down (c_proj)",
        Ffn,
        linear(f, h, bias),
    );
}

fn head_rows(builder: &mut Builder, spec: &ArchSpec, heads: &Heads) {
    use ParamGroup::{Heads as HeadsGroup, Pooler};
    let family = spec.family_name();
    let h = dim("H", spec.hidden());
    let v = dim("V", spec.vocab());
    let has_pooler = matches!(
        spec,
        ArchSpec::Bert { .. } | ArchSpec::Roberta { .. } | ArchSpec::Albert { .. }
    );

    if heads.pooler {
        if has_pooler {
            builder
                .at(ParamSite::Pooler)
                .once("pooler dense (tanh)", Pooler, linear(h, h, true));
        } else {
            builder.note_missing(family, "pooler");
        }
    }

    if heads.masked_lm {
        // The transform maps to the embedding width, whose table the decoder reuses.
        let transform = match *spec {
            ArchSpec::Albert { embedding_size, .. } => {
                Some(("MLM transform dense H → E", dim("E", embedding_size)))
            }
            ArchSpec::Gpt2 { .. } | ArchSpec::EncoderDecoder { .. } => None,
            _ => Some(("MLM transform dense", h)),
        };
        match transform {
            Some((dense, width)) => {
                builder.at(ParamSite::Head(HeadSite::MaskedLm)).once(
                    dense,
                    HeadsGroup,
                    linear(h, width, true),
                );
                builder.at(ParamSite::Head(HeadSite::MaskedLm)).once(
                    "MLM transform LayerNorm",
                    HeadsGroup,
                    norm(width, true),
                );
                builder.at(ParamSite::Head(HeadSite::MaskedLm)).tied(
                    "MLM decoder weight",
                    HeadsGroup,
                    "token embeddings",
                );
                builder.at(ParamSite::Head(HeadSite::MaskedLm)).once(
                    "MLM output bias",
                    HeadsGroup,
                    vec![vector(v)],
                );
            }
            None => builder.note_missing(family, "masked-LM head (use the LM head)"),
        }
    }

    if heads.next_sentence {
        match spec {
            ArchSpec::Bert { .. } => builder.at(ParamSite::Head(HeadSite::NextSentence)).once(
                "next-sentence classifier (NSP)",
                HeadsGroup,
                linear_to_constant(h, 2, true),
            ),
            ArchSpec::Albert { .. } => builder.at(ParamSite::Head(HeadSite::NextSentence)).once(
                "sentence-order classifier (SOP)",
                HeadsGroup,
                linear_to_constant(h, 2, true),
            ),
            _ => builder.note_missing(family, "next-sentence head"),
        }
    }

    if let Some(labels) = heads.classifier {
        let n = dim("n", labels);
        match spec {
            // BERT and ALBERT classify the pooler output.
            ArchSpec::Bert { .. } | ArchSpec::Albert { .. } => {
                builder.at(ParamSite::Head(HeadSite::Classifier)).once(
                    "classifier",
                    HeadsGroup,
                    linear(h, n, true),
                );
            }
            // RoBERTa and DistilBERT put their own dense layer before the classifier.
            ArchSpec::Roberta { .. } => {
                builder.at(ParamSite::Head(HeadSite::Classifier)).once(
                    "classifier dense",
                    HeadsGroup,
                    linear(h, h, true),
                );
                builder.at(ParamSite::Head(HeadSite::Classifier)).once(
                    "classifier out_proj",
                    HeadsGroup,
                    linear(h, n, true),
                );
            }
            ArchSpec::DistilBert { .. } => {
                builder.at(ParamSite::Head(HeadSite::Classifier)).once(
                    "pre-classifier",
                    HeadsGroup,
                    linear(h, h, true),
                );
                builder.at(ParamSite::Head(HeadSite::Classifier)).once(
                    "classifier",
                    HeadsGroup,
                    linear(h, n, true),
                );
            }
            // GPT2ForSequenceClassification: `score`, no bias, on the last token.
            ArchSpec::Gpt2 { .. } => {
                builder.at(ParamSite::Head(HeadSite::Classifier)).once(
                    "classifier (score)",
                    HeadsGroup,
                    linear(h, n, false),
                );
            }
            ArchSpec::EncoderDecoder { .. } => builder.note_missing(family, "classifier"),
        }
    }

    if heads.question_answering && matches!(spec, ArchSpec::EncoderDecoder { .. }) {
        builder.note_missing(family, "question-answering head");
    } else if heads.question_answering {
        builder
            .at(ParamSite::Head(HeadSite::QuestionAnswering))
            .once(
                "QA span start/end (qa_outputs)",
                HeadsGroup,
                linear_to_constant(h, 2, true),
            );
    }

    if heads.lm_head {
        if matches!(spec, ArchSpec::Gpt2 { .. }) {
            builder.at(ParamSite::Head(HeadSite::LmHead)).tied(
                "LM head",
                HeadsGroup,
                "token embeddings",
            );
        } else if let ArchSpec::EncoderDecoder {
            target_vocab,
            tied_head,
            ..
        } = *spec
        {
            let table = if target_vocab.is_some() {
                "decoder token embeddings"
            } else {
                "shared token embeddings"
            };
            if tied_head {
                builder
                    .at(ParamSite::Head(HeadSite::LmHead))
                    .tied("LM head", HeadsGroup, table);
            } else {
                let rows = target_vocab.map_or(v, |t| dim("Vt", t));
                builder.at(ParamSite::Head(HeadSite::LmHead)).once(
                    "LM head (lm_head, untied)",
                    HeadsGroup,
                    vec![matrix(rows, h)],
                );
            }
            // `MarianMTModel` registers it as a buffer: saved in the checkpoint, never trained,
            // not counted by `num_parameters()`.
            builder
                .at(ParamSite::Head(HeadSite::LmHead))
                .without_parameters(
                    "final_logits_bias",
                    HeadsGroup,
                    "a buffer of V zeros, not a parameter",
                );
        } else {
            builder.note_missing(family, "causal LM head (use the masked-LM head)");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Counting real tensors
// ---------------------------------------------------------------------------------------------

/// Tensors that `transformers` ties to another one, with the names of what they are tied to.
/// Hugging Face files store a tied weight once; a file that stores both is counted once too.
const TIED_COPIES: &[(&str, &[&str])] = &[
    ("lm_head.weight", &["transformer.wte.weight", "wte.weight"]),
    (
        "cls.predictions.decoder.weight",
        &["bert.embeddings.word_embeddings.weight"],
    ),
    ("cls.predictions.decoder.bias", &["cls.predictions.bias"]),
    (
        "vocab_projector.weight",
        &["distilbert.embeddings.word_embeddings.weight"],
    ),
    (
        "lm_head.decoder.weight",
        &["roberta.embeddings.word_embeddings.weight"],
    ),
    ("lm_head.decoder.bias", &["lm_head.bias"]),
    (
        "predictions.decoder.weight",
        &["albert.embeddings.word_embeddings.weight"],
    ),
    ("predictions.decoder.bias", &["predictions.bias"]),
];

fn is_tied_copy(name: &str, present: &HashSet<&str>) -> bool {
    TIED_COPIES.iter().any(|(copy, originals)| {
        *copy == name && originals.iter().any(|original| present.contains(original))
    })
}

/// Number of elements in a tensor of this shape (a scalar has one).
fn element_count(shape: &[usize]) -> u64 {
    shape
        .iter()
        .fold(1u64, |count, &d| count.saturating_mul(d as u64))
}

/// The parameters in a list of `(name, shape)` tensors, tied copies counted once.
pub fn actual_count<N, S>(tensors: impl IntoIterator<Item = (N, S)>) -> u64
where
    N: AsRef<str>,
    S: AsRef<[usize]>,
{
    let tensors: Vec<(N, S)> = tensors.into_iter().collect();
    let present: HashSet<&str> = tensors.iter().map(|(name, _)| name.as_ref()).collect();
    tensors
        .iter()
        .filter(|(name, _)| !is_tied_copy(name.as_ref(), &present))
        .fold(0u64, |total, (_, shape)| {
            total.saturating_add(element_count(shape.as_ref()))
        })
}

/// Names and shapes of the tensors in a `.safetensors` file, in file order (reads only the
/// header) and checks the file is complete.
pub fn read_safetensors_shapes(path: &Path) -> Result<Vec<(String, Vec<usize>)>> {
    let header = crate::model::checkpoint::read_header(path)?;
    header.check_complete()?;
    Ok(header
        .tensors
        .into_iter()
        .map(|tensor| (tensor.name, tensor.shape))
        .collect())
}

/// The parameters stored in a `.safetensors` file (see [`actual_count`]).
pub fn actual_count_file(path: &Path) -> Result<u64> {
    Ok(actual_count(read_safetensors_shapes(path)?))
}

// ---------------------------------------------------------------------------------------------
// Text output
// ---------------------------------------------------------------------------------------------

fn as_strs(line: &[String; 4]) -> [&str; 4] {
    [&line[0], &line[1], &line[2], &line[3]]
}

/// "109,482,240".
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// "417.6 MiB" (binary units).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The table for the CLI: component | formula | textbook | exact, then totals, memory, the
/// whole textbook formula and any notes.
pub fn render_table(breakdown: &ParamBreakdown) -> String {
    const HEADERS: [&str; 4] = ["component", "formula (exact)", "textbook", "exact"];
    let cells = |component: &str, formula: &str, textbook: u64, exact: u64| {
        [
            component.to_string(),
            formula.to_string(),
            group_thousands(textbook),
            group_thousands(exact),
        ]
    };
    let rows: Vec<[String; 4]> = breakdown
        .rows
        .iter()
        .map(|r| cells(&r.component, &r.formula, r.textbook, r.exact))
        .collect();
    let total = cells("total", "", breakdown.textbook_total, breakdown.exact_total);

    let mut widths = HEADERS.map(|h| h.chars().count());
    for line in rows.iter().chain(std::iter::once(&total)) {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    // Text left-aligned, numbers right-aligned; `{:<w$}` pads by chars, and "·" or "–" is one.
    let render_line = |c: [&str; 4]| {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}",
            c[0],
            c[1],
            c[2],
            c[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        format!("{}\n", line.trim_end())
    };
    let rule = format!("{}\n", "─".repeat(widths.iter().sum::<usize>() + 2 * 3));

    let mut out = format!("{}\n", breakdown.name);
    out.push_str(&render_line(HEADERS));
    out.push_str(&rule);
    for line in &rows {
        out.push_str(&render_line(as_strs(line)));
    }
    out.push_str(&rule);
    out.push_str(&render_line(as_strs(&total)));
    out.push('\n');
    if breakdown.trainable_total != breakdown.exact_total {
        out.push_str(&format!(
            "trainable: {} (the rest are fixed sinusoidal tables)\n",
            group_thousands(breakdown.trainable_total)
        ));
    }
    out.push_str(&format!(
        "memory (float32, 4 bytes each): {}\n",
        format_bytes(breakdown.memory_bytes_f32())
    ));
    out.push_str(&format!("textbook: {}\n", breakdown.textbook_formula));
    out.push_str(
        "(textbook = weight matrices and embedding tables only; biases and LayerNorms ignored)\n",
    );
    for note in &breakdown.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}

impl fmt::Display for ParamBreakdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render_table(self))
    }
}
