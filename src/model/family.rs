//! Model families as data: what each family is, declared in one place.
//!
//! A family says which stacks it has (decoder-only, encoder-only, encoder + decoder), what kind of
//! attention each stack's layers run (causal self, bidirectional self, cross), where LayerNorm
//! sits, how positions are encoded, where its tensors live in a Hugging Face checkpoint, which
//! heads (architectures) it comes with, and the stages its forward pass records. The parameter
//! breakdown, the step-through, the attention views, the trainer and the checkpoint code ask these
//! questions instead of asking "is it GPT?".
//!
//! ## Adding a family
//!
//! 1. Write its model module next to `gpt.rs` / `bert.rs` / `marian.rs`: a `new(vb, config)` that
//!    reads `transformers`' tensor names, and the stack's pass to the last hidden state that fills
//!    a [`super::trace::Trace`] (and, with cross-attention, [`super::marian::Seq2SeqTrace`]). It is
//!    not an entry point of its own: callers run every family through `Model::forward`.
//! 2. Add its config to [`super::config::FamilyConfig`] (parsed in `ModelConfig::from_hf_json`,
//!    written back in `to_hf_json`) and its architectures to [`super::config::Architecture`].
//! 3. Declare a [`Family`] below and list it in [`FAMILIES`]; `FamilyConfig::family` returns it.
//! 4. Build it in `Model::new` and call its pass (and heads) from `Model::forward`, the one
//!    forward for training, inference and inspection (`model/mod.rs`), and give it a
//!    breakdown in `params.rs`. The checkpoint opener (`checkpoint::load_dir`), the CLI and the
//!    views then work from the declaration.
//! 5. A parity test against a `transformers` fixture in `tests/model/parity.rs`.

use serde::{Deserialize, Serialize};

/// How a family's stacks are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One causal stack that writes text (GPT-2).
    DecoderOnly,
    /// One bidirectional stack that reads text (BERT, DistilBERT).
    EncoderOnly,
    /// An encoder that reads the source and a decoder that writes the target while attending to
    /// the encoder's output (Marian, the 2017 transformer).
    EncoderDecoder,
}

/// The attention one sublayer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKind {
    /// Each token sees itself and the tokens before it.
    CausalSelf,
    /// Each token sees every token of its own sequence.
    BidirectionalSelf,
    /// Queries from the decoder, keys and values from the encoder's output.
    Cross,
}

impl AttentionKind {
    pub fn label(self) -> &'static str {
        match self {
            AttentionKind::CausalSelf => "causal self-attention",
            AttentionKind::BidirectionalSelf => "bidirectional self-attention",
            AttentionKind::Cross => "cross-attention",
        }
    }
}

/// Where LayerNorm sits around each sublayer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormPlacement {
    /// `x + sublayer(LayerNorm(x))`, with a final LayerNorm after the stack (GPT-2).
    Pre,
    /// `LayerNorm(x + sublayer(x))` (BERT, DistilBERT, Marian, the 2017 paper).
    Post,
}

/// How a family encodes positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionScheme {
    /// A trained table of position vectors.
    Learned,
    /// Fixed sine/cosine vectors (computed, or read when the checkpoint stores them).
    Sinusoidal,
}

/// Which stack of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StackRole {
    Encoder,
    Decoder,
}

impl StackRole {
    pub fn name(self) -> &'static str {
        match self {
            StackRole::Encoder => "encoder",
            StackRole::Decoder => "decoder",
        }
    }
}

/// One stack of layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stack {
    pub role: StackRole,
    /// Where the stack's layers live in the checkpoint (`transformer.h`, `bert.encoder.layer`,
    /// `model.decoder.layers`).
    pub layers_prefix: &'static str,
    /// The attention sublayers of each layer, in order.
    pub attention: &'static [AttentionKind],
    /// The stages the stack's forward pass records, in order (embeddings, the layer stages, and
    /// for the stack that ends the model, its final stages).
    pub stages: &'static [Stage],
}

/// A head: an architecture name `transformers` knows and the checkpoint prefixes of its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub architecture: &'static str,
    /// Tensor-name prefixes of the head's own weights (empty: tied to the embeddings, or none).
    pub weights: &'static [&'static str],
    pub purpose: &'static str,
}

/// Everything a family declares about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// `model_type` in `config.json`.
    pub model_type: &'static str,
    /// For people: "GPT-2", "BERT".
    pub name: &'static str,
    pub layout: Layout,
    /// Encoder first, then decoder.
    pub stacks: &'static [Stack],
    pub norm: NormPlacement,
    pub positions: PositionScheme,
    /// Where the base model's tensors live in a checkpoint with a head (`transformer.`, `bert.`);
    /// bare base models (all-MiniLM-L6-v2) store them at the root.
    pub weight_prefix: &'static str,
    pub heads: &'static [Head],
    /// Token-type (segment) embeddings: the family takes sentence pairs as `A [SEP] B`.
    pub segments: bool,
    /// Stored tensors that are buffers in `transformers`, not parameters: saved, never trained.
    pub buffers: &'static [&'static str],
}

impl Family {
    /// The stack that produces the logits (the decoder, or the only stack).
    pub fn output_stack(&self) -> &Stack {
        self.stacks
            .last()
            .expect("every family declares at least one stack")
    }

    pub fn stack(&self, role: StackRole) -> Option<&Stack> {
        self.stacks.iter().find(|s| s.role == role)
    }

    /// The self-attention of the stack that produces the output.
    pub fn self_attention(&self) -> AttentionKind {
        self.output_stack().attention[0]
    }

    /// Writes text token by token (next-token prediction, generation).
    pub fn generates(&self) -> bool {
        self.layout != Layout::EncoderOnly
    }

    /// Its self-attention is causal in the stack that produces the output.
    pub fn is_causal(&self) -> bool {
        self.self_attention() == AttentionKind::CausalSelf
    }

    /// Reads a sentence pair as one input (`[CLS] A [SEP] B [SEP]`): encoder-only families.
    /// A decoder-only model reads one text; an encoder–decoder reads a source and writes a target.
    pub fn reads_pairs(&self) -> bool {
        self.layout == Layout::EncoderOnly
    }

    pub fn has_cross_attention(&self) -> bool {
        self.stacks
            .iter()
            .any(|s| s.attention.contains(&AttentionKind::Cross))
    }

    /// The family of a `config.json` `model_type`.
    pub fn by_model_type(model_type: &str) -> Option<&'static Family> {
        FAMILIES
            .iter()
            .copied()
            .find(|f| f.model_type == model_type)
    }

    /// The known families and their architectures, for error messages.
    pub fn known() -> String {
        FAMILIES
            .iter()
            .map(|f| {
                let heads: Vec<&str> = f.heads.iter().map(|h| h.architecture).collect();
                format!("{} ({})", f.model_type, heads.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

use AttentionKind::{BidirectionalSelf, CausalSelf, Cross};
use Stage::*;

const GPT2_STAGES: &[Stage] = &[
    Embed,
    AddPositions,
    NormAttention,
    Qkv,
    Scores,
    Scale,
    Mask,
    Softmax,
    WeightedSum,
    OutputProjection,
    ResidualAttention,
    NormMlp,
    MlpHidden,
    MlpOutput,
    ResidualMlp,
    FinalNorm,
    Logits,
    Probabilities,
];

const BERT_STAGES: &[Stage] = &[
    Embed,
    AddPositions,
    AddSegments,
    EmbeddingNorm,
    Qkv,
    Scores,
    Scale,
    Mask,
    Softmax,
    WeightedSum,
    OutputProjection,
    ResidualAttention,
    MlpHidden,
    MlpOutput,
    ResidualMlp,
    Logits,
    Probabilities,
];

const MARIAN_ENCODER_STAGES: &[Stage] = &[
    Embed,
    AddPositions,
    Qkv,
    Scores,
    Scale,
    Mask,
    Softmax,
    WeightedSum,
    OutputProjection,
    ResidualAttention,
    MlpHidden,
    MlpOutput,
    ResidualMlp,
];

const MARIAN_DECODER_STAGES: &[Stage] = &[
    Embed,
    AddPositions,
    Qkv,
    Scores,
    Scale,
    Mask,
    Softmax,
    WeightedSum,
    OutputProjection,
    ResidualAttention,
    CrossQkv,
    CrossScores,
    CrossSoftmax,
    CrossWeightedSum,
    CrossOutputProjection,
    ResidualCross,
    MlpHidden,
    MlpOutput,
    ResidualMlp,
    Logits,
    Probabilities,
];

pub static GPT2: Family = Family {
    model_type: "gpt2",
    name: "GPT-2",
    layout: Layout::DecoderOnly,
    stacks: &[Stack {
        role: StackRole::Decoder,
        layers_prefix: "transformer.h",
        attention: &[CausalSelf],
        stages: GPT2_STAGES,
    }],
    norm: NormPlacement::Pre,
    positions: PositionScheme::Learned,
    weight_prefix: "transformer",
    heads: &[Head {
        architecture: "GPT2LMHeadModel",
        weights: &[],
        purpose: "next-token prediction (tied to the token embeddings)",
    }],
    segments: false,
    buffers: &[],
};

pub static BERT: Family = Family {
    model_type: "bert",
    name: "BERT",
    layout: Layout::EncoderOnly,
    stacks: &[Stack {
        role: StackRole::Encoder,
        layers_prefix: "bert.encoder.layer",
        attention: &[BidirectionalSelf],
        stages: BERT_STAGES,
    }],
    norm: NormPlacement::Post,
    positions: PositionScheme::Learned,
    weight_prefix: "bert",
    heads: &[
        Head {
            architecture: "BertModel",
            weights: &["pooler"],
            purpose: "encoder and pooler only",
        },
        Head {
            architecture: "BertForPreTraining",
            weights: &["cls.predictions", "cls.seq_relationship"],
            purpose: "masked LM and next-sentence prediction",
        },
        Head {
            architecture: "BertForMaskedLM",
            weights: &["cls.predictions"],
            purpose: "masked LM",
        },
        Head {
            architecture: "BertForSequenceClassification",
            weights: &["classifier"],
            purpose: "sequence classification",
        },
        Head {
            architecture: "BertForQuestionAnswering",
            weights: &["qa_outputs"],
            purpose: "extractive question answering",
        },
    ],
    segments: true,
    buffers: &[],
};

pub static DISTILBERT: Family = Family {
    model_type: "distilbert",
    name: "DistilBERT",
    layout: Layout::EncoderOnly,
    stacks: &[Stack {
        role: StackRole::Encoder,
        layers_prefix: "distilbert.transformer.layer",
        attention: &[BidirectionalSelf],
        stages: BERT_STAGES,
    }],
    norm: NormPlacement::Post,
    // Learned unless the config sets `sinusoidal_pos_embds` (see `ModelConfig::positions`).
    positions: PositionScheme::Learned,
    weight_prefix: "distilbert",
    heads: &[
        Head {
            architecture: "DistilBertModel",
            weights: &[],
            purpose: "encoder only",
        },
        Head {
            architecture: "DistilBertForMaskedLM",
            weights: &["vocab_transform", "vocab_layer_norm", "vocab_projector"],
            purpose: "masked LM",
        },
    ],
    segments: false,
    buffers: &[],
};

pub static MARIAN: Family = Family {
    model_type: "marian",
    name: "Marian (encoder–decoder)",
    layout: Layout::EncoderDecoder,
    stacks: &[
        Stack {
            role: StackRole::Encoder,
            layers_prefix: "model.encoder.layers",
            attention: &[BidirectionalSelf],
            stages: MARIAN_ENCODER_STAGES,
        },
        Stack {
            role: StackRole::Decoder,
            layers_prefix: "model.decoder.layers",
            attention: &[CausalSelf, Cross],
            stages: MARIAN_DECODER_STAGES,
        },
    ],
    norm: NormPlacement::Post,
    positions: PositionScheme::Sinusoidal,
    weight_prefix: "model",
    heads: &[Head {
        architecture: "MarianMTModel",
        weights: &["final_logits_bias"],
        purpose: "translation (LM head tied to the shared embeddings)",
    }],
    segments: false,
    // A zero bias `MarianMTModel` registers as a buffer.
    buffers: &["final_logits_bias"],
};

/// Every family Glassbox knows.
pub static FAMILIES: [&Family; 4] = [&GPT2, &BERT, &DISTILBERT, &MARIAN];

/// The stages of one forward pass, in order: the step-through view's list, and what a lesson's
/// `stage:` names. Each [`Family`] lists the stages its stacks have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Stage {
    Embed,
    AddPositions,
    /// BERT only.
    AddSegments,
    /// BERT: LayerNorm of the embedding sum.
    EmbeddingNorm,
    /// GPT (pre-LN): LayerNorm before attention.
    NormAttention,
    Qkv,
    Scores,
    Scale,
    Mask,
    Softmax,
    WeightedSum,
    OutputProjection,
    ResidualAttention,
    /// Encoder–decoder, decoder layers: cross-attention's queries (from the decoder) and keys
    /// and values (from the encoder output).
    CrossQkv,
    CrossScores,
    CrossSoftmax,
    CrossWeightedSum,
    CrossOutputProjection,
    ResidualCross,
    /// GPT (pre-LN): LayerNorm before the MLP.
    NormMlp,
    MlpHidden,
    MlpOutput,
    ResidualMlp,
    /// GPT: the final LayerNorm.
    FinalNorm,
    Logits,
    Probabilities,
}

impl Stage {
    pub const ALL: [Stage; 26] = [
        Stage::Embed,
        Stage::AddPositions,
        Stage::AddSegments,
        Stage::EmbeddingNorm,
        Stage::NormAttention,
        Stage::Qkv,
        Stage::Scores,
        Stage::Scale,
        Stage::Mask,
        Stage::Softmax,
        Stage::WeightedSum,
        Stage::OutputProjection,
        Stage::ResidualAttention,
        Stage::CrossQkv,
        Stage::CrossScores,
        Stage::CrossSoftmax,
        Stage::CrossWeightedSum,
        Stage::CrossOutputProjection,
        Stage::ResidualCross,
        Stage::NormMlp,
        Stage::MlpHidden,
        Stage::MlpOutput,
        Stage::ResidualMlp,
        Stage::FinalNorm,
        Stage::Logits,
        Stage::Probabilities,
    ];

    /// The name in lesson files.
    pub fn key(self) -> &'static str {
        match self {
            Stage::Embed => "embed",
            Stage::AddPositions => "positions",
            Stage::AddSegments => "segments",
            Stage::EmbeddingNorm => "embedding-norm",
            Stage::NormAttention => "layernorm",
            Stage::Qkv => "qkv",
            Stage::Scores => "scores",
            Stage::Scale => "scale",
            Stage::Mask => "mask",
            Stage::Softmax => "softmax",
            Stage::WeightedSum => "weighted-sum",
            Stage::OutputProjection => "output-projection",
            Stage::ResidualAttention => "residual",
            Stage::CrossQkv => "cross-qkv",
            Stage::CrossScores => "cross-scores",
            Stage::CrossSoftmax => "cross-softmax",
            Stage::CrossWeightedSum => "cross-weighted-sum",
            Stage::CrossOutputProjection => "cross-output-projection",
            Stage::ResidualCross => "residual-cross",
            Stage::NormMlp => "layernorm-mlp",
            Stage::MlpHidden => "mlp",
            Stage::MlpOutput => "mlp-output",
            Stage::ResidualMlp => "residual-mlp",
            Stage::FinalNorm => "final-norm",
            Stage::Logits => "logits",
            Stage::Probabilities => "probabilities",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Stage::Embed => "embed",
            Stage::AddPositions => "add positions",
            Stage::AddSegments => "add segments",
            Stage::EmbeddingNorm => "LayerNorm (embeddings)",
            Stage::NormAttention => "LayerNorm (attention)",
            Stage::Qkv => "Q, K, V",
            Stage::Scores => "scores",
            Stage::Scale => "scale",
            Stage::Mask => "mask",
            Stage::Softmax => "softmax",
            Stage::WeightedSum => "weighted sum",
            Stage::OutputProjection => "output projection",
            Stage::ResidualAttention => "residual (attention)",
            Stage::CrossQkv => "cross-attention Q (decoder), K, V (encoder)",
            Stage::CrossScores => "cross-attention scores",
            Stage::CrossSoftmax => "cross-attention softmax",
            Stage::CrossWeightedSum => "cross-attention weighted sum",
            Stage::CrossOutputProjection => "cross-attention output projection",
            Stage::ResidualCross => "residual (cross-attention)",
            Stage::NormMlp => "LayerNorm (MLP)",
            Stage::MlpHidden => "MLP hidden",
            Stage::MlpOutput => "MLP output",
            Stage::ResidualMlp => "residual (MLP)",
            Stage::FinalNorm => "final LayerNorm",
            Stage::Logits => "logits",
            Stage::Probabilities => "probabilities",
        }
    }

    /// Whether the stage is inside a layer (the view's layer slider applies).
    pub fn is_layer_stage(self) -> bool {
        (Stage::NormAttention..=Stage::ResidualMlp).contains(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_declare_consistent_stacks() {
        for family in FAMILIES {
            let has_encoder = family.stack(StackRole::Encoder).is_some();
            let has_decoder = family.stack(StackRole::Decoder).is_some();
            let expected = match family.layout {
                Layout::DecoderOnly => (false, true),
                Layout::EncoderOnly => (true, false),
                Layout::EncoderDecoder => (true, true),
            };
            assert_eq!((has_encoder, has_decoder), expected, "{}", family.name);
            assert!(
                family.heads.iter().all(|h| !h.architecture.is_empty()),
                "{}",
                family.name
            );
            // Cross-attention only where there is an encoder to attend to.
            assert_eq!(
                family.has_cross_attention(),
                family.layout == Layout::EncoderDecoder
            );
            for stack in family.stacks {
                assert!(stack.stages.iter().all(|s| Stage::ALL.contains(s)));
                let has_cross_stage = stack.stages.contains(&Stage::CrossSoftmax);
                assert_eq!(has_cross_stage, stack.attention.contains(&Cross));
                // Pre-LN stacks normalise before each sublayer; post-LN ones never do.
                let pre = stack.stages.contains(&Stage::NormAttention);
                assert_eq!(pre, family.norm == NormPlacement::Pre, "{}", family.name);
            }
        }
        assert!(GPT2.is_causal() && GPT2.generates());
        assert!(!BERT.is_causal() && !BERT.generates());
        assert!(MARIAN.is_causal() && MARIAN.generates() && MARIAN.has_cross_attention());
        assert_eq!(Family::by_model_type("marian"), Some(&MARIAN));
    }
}
