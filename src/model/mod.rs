//! Transformer families on candle, every one instrumented.
//!
//! What each family *is* (stacks, attention kinds, norm placement, positions, checkpoint names,
//! heads, trace stages) is declared as data in [`family`]; the code of each lives in its own module
//! (`gpt.rs`, `bert.rs`, `distilbert.rs`, `marian.rs`) built from the shared pieces in `layers.rs`.
//! [`Model::forward`] is the one entry point: training (trace off), inference and inspection
//! (trace on).
//!
//! # Adding a model family
//!
//! 1. `src/model/my_family.rs`: `new(vb, config)` reading `transformers`' tensor names, and a
//!    forward that fills a [`trace::Trace`] (from the pieces in `layers.rs`).
//! 2. Its config in [`config::FamilyConfig`] and its heads in [`config::Architecture`].
//! 3. A [`family::Family`] declaration listed in [`family::FAMILIES`] (stacks, attention kinds,
//!    norm placement, positions, checkpoint names, trace stages).
//! 4. A [`Model`] variant, built in `Model::new` and run in `Model::forward`; its rows in
//!    `params.rs`.
//! 5. A parity test against a `transformers` fixture in `tests/model/parity.rs`.
//!
//! Loading, the CLI, the map, the parameter view, step-through and the attention views work from
//! the declaration. [`family`] has the details.
//!
//! # Adding a training objective
//!
//! 1. A variant of [`crate::train::config::Objective`] with its name, label and data hints (the
//!    CLI, lesson files and the Fine-tune view's list take it from there).
//! 2. A task in `src/train/tasks.rs` (or `tasks/my_objective.rs`): its data, a batch type with
//!    its own targets, its loss (`Task::train_loss`) and its evaluation; one arm in
//!    `prepare_task`.
//! 3. A fresh model for it in `trainer.rs::fresh_model_config` if it pretrains.
//! 4. A test in `tests/train/objectives.rs` that it learns.

pub mod bert;
pub mod checkpoint;
pub mod config;
pub mod distilbert;
pub mod family;
pub mod gpt;
pub mod heads;
pub mod layers;
pub mod map;
pub mod marian;
pub mod params;
pub mod trace;
pub mod weights_file;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use self::bert::Bert;
use self::config::{Architecture, FamilyConfig, ModelConfig};
use self::distilbert::DistilBert;
use self::gpt::Gpt2;
use self::heads::{DistilMlmHead, LinearHead, MlmHead};
use self::layers::Activation;
use self::marian::{Marian, Seq2SeqTrace};
use self::trace::Trace;

/// A model of any family with the heads its architecture carries.
#[derive(Debug, Clone)]
pub enum Model {
    Gpt2(Gpt2),
    Bert {
        encoder: Bert,
        mlm: Option<MlmHead>,
        nsp: Option<LinearHead>,
        classifier: Option<LinearHead>,
        qa: Option<LinearHead>,
    },
    DistilBert {
        encoder: DistilBert,
        mlm: Option<DistilMlmHead>,
    },
    /// Encoder–decoder with its LM head (`MarianMTModel`).
    Marian(Marian),
}

/// One batch of input.
#[derive(Debug, Clone, Copy)]
pub struct ModelInput<'a> {
    /// `[b, s]` u32 token ids.
    pub input_ids: &'a Tensor,
    /// `[b, s]` u32 segment ids (BERT); `None` means all segment A.
    pub token_type_ids: Option<&'a Tensor>,
    /// Per row, 1 for real tokens and 0 for padding; `None` means no padding.
    pub padding: Option<&'a [Vec<u32>]>,
    /// Encoder–decoder families: the decoder's input `[b, t]` (teacher forcing); `input_ids`
    /// is then the source.
    pub decoder_input_ids: Option<&'a Tensor>,
}

impl<'a> ModelInput<'a> {
    pub fn new(input_ids: &'a Tensor) -> Self {
        Self {
            input_ids,
            token_type_ids: None,
            padding: None,
            decoder_input_ids: None,
        }
    }
}

/// Everything a forward pass produces; the heads a model lacks are `None`.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    /// `[b, s, h]` (GPT-2: after the final LayerNorm).
    pub last_hidden_state: Tensor,
    /// Next-token (GPT) or masked-token (BERT MLM) logits `[b, s, vocab]`.
    pub logits: Option<Tensor>,
    /// Pooled `[CLS]` `[b, h]`.
    pub pooled: Option<Tensor>,
    /// Next-sentence prediction `[b, 2]` (index 0: "B follows A").
    pub nsp_logits: Option<Tensor>,
    /// Sequence classification `[b, labels]`.
    pub class_logits: Option<Tensor>,
    /// Extractive QA span logits `[b, s]` each.
    pub start_logits: Option<Tensor>,
    pub end_logits: Option<Tensor>,
}

/// Where the encoder's tensors live in a checkpoint: `bert.` / `distilbert.` / `transformer.`
/// for models with heads, the root for bare base models (all-MiniLM-L6-v2 has no prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Standard,
    None,
}

impl Model {
    /// Builds (or, with a varmap, initialises) the model described by `config`.
    pub fn new(vb: VarBuilder, config: &ModelConfig, prefix: Prefix) -> Result<Self> {
        let arch = config.architecture;
        match &config.family {
            FamilyConfig::Gpt2(c) => {
                let base = if prefix == Prefix::Standard {
                    vb.pp("transformer")
                } else {
                    vb
                };
                Ok(Model::Gpt2(Gpt2::new(base, c)?))
            }
            FamilyConfig::Bert(c) => {
                let base = if prefix == Prefix::Standard {
                    vb.pp("bert")
                } else {
                    vb.clone()
                };
                let with_pooler = !matches!(
                    arch,
                    Architecture::BertForMaskedLm | Architecture::BertForQuestionAnswering
                );
                let encoder = Bert::new(base, c, with_pooler)?;
                let activation = Activation::from_hf(&c.hidden_act);
                let h = c.hidden_size;
                let mlm = match arch {
                    Architecture::BertForPreTraining | Architecture::BertForMaskedLm => {
                        Some(MlmHead::new(
                            vb.pp("cls.predictions"),
                            h,
                            activation,
                            c.layer_norm_eps,
                            &encoder.word_embeddings.weight,
                        )?)
                    }
                    _ => None,
                };
                let nsp = match arch {
                    Architecture::BertForPreTraining => {
                        Some(LinearHead::new(vb.pp("cls.seq_relationship"), h, 2)?)
                    }
                    _ => None,
                };
                let classifier = match arch {
                    Architecture::BertForSequenceClassification => {
                        Some(LinearHead::new(vb.pp("classifier"), h, c.num_labels())?)
                    }
                    _ => None,
                };
                let qa = match arch {
                    Architecture::BertForQuestionAnswering => {
                        Some(LinearHead::new(vb.pp("qa_outputs"), h, 2)?)
                    }
                    _ => None,
                };
                Ok(Model::Bert {
                    encoder,
                    mlm,
                    nsp,
                    classifier,
                    qa,
                })
            }
            FamilyConfig::DistilBert(c) => {
                let base = if prefix == Prefix::Standard {
                    vb.pp("distilbert")
                } else {
                    vb.clone()
                };
                let encoder = DistilBert::new(base, c)?;
                let mlm = match arch {
                    Architecture::DistilBertForMaskedLm => Some(DistilMlmHead::new(
                        vb,
                        c.dim,
                        Activation::from_hf(&c.activation),
                        &encoder.word_embeddings.weight,
                    )?),
                    _ => None,
                };
                Ok(Model::DistilBert { encoder, mlm })
            }
            // The LM head and `final_logits_bias` sit beside `model.`, so Marian reads from the
            // root whatever the prefix.
            FamilyConfig::Marian(c) => Ok(Model::Marian(Marian::new(vb, c)?)),
        }
    }

    /// The one forward pass. With `trace` the intermediates are recorded.
    pub fn forward(
        &self,
        input: ModelInput<'_>,
        mut trace: Option<&mut Trace>,
    ) -> Result<ModelOutput> {
        let output = match self {
            Model::Gpt2(gpt) => {
                let hidden =
                    gpt.hidden_states(input.input_ids, input.padding, trace.as_deref_mut())?;
                let logits = gpt.lm_head(&hidden)?;
                ModelOutput::new(hidden).with_logits(logits)
            }
            Model::Bert {
                encoder,
                mlm,
                nsp,
                classifier,
                qa,
            } => {
                let hidden = encoder.forward(
                    input.input_ids,
                    input.token_type_ids,
                    input.padding,
                    trace.as_deref_mut(),
                )?;
                let pooled = encoder.pool(&hidden)?;
                let mut out = ModelOutput::new(hidden.clone());
                if let Some(head) = mlm {
                    out = out.with_logits(head.forward(&hidden)?);
                }
                if let (Some(head), Some(p)) = (nsp, &pooled) {
                    out.nsp_logits = Some(head.forward(p)?);
                }
                if let (Some(head), Some(p)) = (classifier, &pooled) {
                    out.class_logits = Some(head.forward(p)?);
                }
                if let Some(head) = qa {
                    let (start, end) = head.span_logits(&hidden)?;
                    out.start_logits = Some(start);
                    out.end_logits = Some(end);
                }
                out.pooled = pooled;
                out
            }
            Model::DistilBert { encoder, mlm } => {
                let hidden =
                    encoder.forward(input.input_ids, input.padding, trace.as_deref_mut())?;
                let mut out = ModelOutput::new(hidden.clone());
                if let Some(head) = mlm {
                    out = out.with_logits(head.forward(&hidden)?);
                }
                out
            }
            Model::Marian(marian) => {
                let decoder_input_ids = input.decoder_input_ids.ok_or_else(|| {
                    candle_core::Error::Msg(
                        "an encoder–decoder needs decoder input ids (the target so far)".into(),
                    )
                })?;
                let mut seq2seq = trace.as_ref().map(|_| Seq2SeqTrace::default());
                // `padding` is the source side's: the encoder and cross-attention skip it.
                let (hidden, logits) = marian.forward_with_hidden(
                    input.input_ids,
                    input.padding,
                    decoder_input_ids,
                    seq2seq.as_mut(),
                )?;
                if let (Some(t), Some(recorded)) = (trace.as_deref_mut(), seq2seq) {
                    *t = recorded.into_trace();
                }
                ModelOutput::new(hidden).with_logits(logits)
            }
        };
        if let (Some(t), Some(logits)) = (trace, &output.logits) {
            t.logits = Some(logits.clone());
        }
        Ok(output)
    }

    /// The token embedding matrix `[vocab, h]`.
    pub fn token_embedding_matrix(&self) -> &Tensor {
        match self {
            Model::Gpt2(g) => &g.wte.weight,
            Model::Bert { encoder, .. } => &encoder.word_embeddings.weight,
            Model::DistilBert { encoder, .. } => &encoder.word_embeddings.weight,
            Model::Marian(m) => &m.shared.weight,
        }
    }

    /// The position embedding matrix `[positions, h]`.
    pub fn position_embedding_matrix(&self) -> &Tensor {
        match self {
            Model::Gpt2(g) => &g.wpe.weight,
            Model::Bert { encoder, .. } => &encoder.position_embeddings.weight,
            Model::DistilBert { encoder, .. } => &encoder.position_embeddings.weight,
            Model::Marian(m) => m.encoder_positions(),
        }
    }
}

impl ModelOutput {
    fn new(last_hidden_state: Tensor) -> Self {
        Self {
            last_hidden_state,
            logits: None,
            pooled: None,
            nsp_logits: None,
            class_logits: None,
            start_logits: None,
            end_logits: None,
        }
    }

    fn with_logits(mut self, logits: Tensor) -> Self {
        self.logits = Some(logits);
        self
    }
}
