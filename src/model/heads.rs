//! Task heads on top of the encoders and decoders: masked LM, next-sentence prediction,
//! sequence classification, extractive QA. Tensor names follow `transformers`.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{Activation, LayerNorm, Linear};

/// `[rows.., h]` times the tied embedding matrix `[vocab, h]`ᵀ, plus a bias: `[rows.., vocab]`.
fn project_to_vocab(hidden: &Tensor, embedding: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let dims = hidden.dims().to_vec();
    let h = dims[dims.len() - 1];
    let rows = hidden.elem_count() / h;
    let logits = hidden
        .reshape((rows, h))?
        .matmul(&embedding.t()?)?
        .broadcast_add(bias)?;
    let mut shape = dims;
    let last = shape.len() - 1;
    shape[last] = embedding.dim(0)?;
    logits.reshape(shape)
}

/// BERT's masked-LM head (`cls.predictions`): dense → GELU → LayerNorm → tied decoder + bias.
#[derive(Debug, Clone)]
pub struct MlmHead {
    dense: Linear,
    activation: Activation,
    layer_norm: LayerNorm,
    /// Tied to the word embeddings `[vocab, h]`.
    decoder_weight: Tensor,
    bias: Tensor,
}

impl MlmHead {
    /// `vb` at `cls.predictions`.
    pub fn new(
        vb: VarBuilder,
        hidden: usize,
        activation: Activation,
        eps: f64,
        word_embeddings: &Tensor,
    ) -> Result<Self> {
        let vocab = word_embeddings.dim(0)?;
        Ok(Self {
            dense: Linear::new(vb.pp("transform.dense"), hidden, hidden, true)?,
            activation,
            layer_norm: LayerNorm::new(vb.pp("transform.LayerNorm"), hidden, eps, true)?,
            decoder_weight: word_embeddings.clone(),
            bias: vb.get_with_hints(vocab, "bias", candle_nn::Init::Const(0.0))?,
        })
    }

    /// `[b, s, h] -> [b, s, vocab]`
    pub fn forward(&self, sequence_output: &Tensor) -> Result<Tensor> {
        let transformed = self.layer_norm.forward(
            &self
                .activation
                .forward(&self.dense.forward(sequence_output)?)?,
        )?;
        project_to_vocab(&transformed, &self.decoder_weight, &self.bias)
    }
}

/// DistilBERT's masked-LM head: `vocab_transform` → GELU → `vocab_layer_norm` → `vocab_projector`
/// (weight tied to the word embeddings).
#[derive(Debug, Clone)]
pub struct DistilMlmHead {
    vocab_transform: Linear,
    activation: Activation,
    vocab_layer_norm: LayerNorm,
    projector_weight: Tensor,
    projector_bias: Tensor,
}

impl DistilMlmHead {
    /// `vb` at the checkpoint root.
    pub fn new(
        vb: VarBuilder,
        hidden: usize,
        activation: Activation,
        word_embeddings: &Tensor,
    ) -> Result<Self> {
        let vocab = word_embeddings.dim(0)?;
        Ok(Self {
            vocab_transform: Linear::new(vb.pp("vocab_transform"), hidden, hidden, true)?,
            activation,
            vocab_layer_norm: LayerNorm::new(vb.pp("vocab_layer_norm"), hidden, 1e-12, true)?,
            projector_weight: word_embeddings.clone(),
            projector_bias: vb.get_with_hints(
                vocab,
                "vocab_projector.bias",
                candle_nn::Init::Const(0.0),
            )?,
        })
    }

    /// `[b, s, h] -> [b, s, vocab]`
    pub fn forward(&self, sequence_output: &Tensor) -> Result<Tensor> {
        let transformed = self.vocab_layer_norm.forward(
            &self
                .activation
                .forward(&self.vocab_transform.forward(sequence_output)?)?,
        )?;
        project_to_vocab(&transformed, &self.projector_weight, &self.projector_bias)
    }
}

/// A linear head: NSP (`cls.seq_relationship`, 2 outputs on the pooled `[CLS]`), sequence
/// classification (`classifier`, one output per label on the pooled `[CLS]`), or extractive QA
/// (`qa_outputs`, start and end logits at every token).
#[derive(Debug, Clone)]
pub struct LinearHead {
    pub linear: Linear,
}

impl LinearHead {
    pub fn new(vb: VarBuilder, hidden: usize, outputs: usize) -> Result<Self> {
        Ok(Self {
            linear: Linear::new(vb, hidden, outputs, true)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear.forward(x)
    }

    /// QA: `[b, s, h]` -> (start `[b, s]`, end `[b, s]`).
    pub fn span_logits(&self, sequence_output: &Tensor) -> Result<(Tensor, Tensor)> {
        let logits = self.linear.forward(sequence_output)?; // [b, s, 2]
        let start = logits.narrow(2, 0, 1)?.squeeze(2)?;
        let end = logits.narrow(2, 1, 1)?.squeeze(2)?;
        Ok((start, end))
    }
}
