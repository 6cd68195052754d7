//! Sequence-to-sequence (translation): an encoder–decoder learns to write the target sentence
//! given the source, teacher-forced.
//!
//! Each pair becomes the source ids (ending in `</s>`), the decoder's input (the start token, then
//! the target without its last token) and the labels (the target, `</s>` last): position `i` of
//! the decoder reads target tokens `< i` and predicts token `i`. Padding is ignored by the loss, by
//! the encoder's self-attention and by cross-attention. The held-out metrics are those of a
//! translation: the greedy translations' exact-match rate and corpus BLEU.

use super::*;
use crate::data::TranslationPair;
use crate::model::marian::GenerationConfig;
use crate::translate::{TranslationScores, greedy_translations};

/// The held-out pairs a seq2seq run writes beside its metrics (`source<TAB>target`).
pub const HELD_OUT_FILE: &str = "heldout.tsv";

/// A pair as ids: the source (with `</s>`) and the target (with `</s>`).
#[derive(Debug, Clone)]
struct EncodedPair {
    source: Vec<u32>,
    target: Vec<u32>,
}

pub(super) struct Seq2SeqTask {
    train: Vec<EncodedPair>,
    val: Vec<EncodedPair>,
    /// The held-out pairs' reference translations, as text, for exact match and BLEU.
    val_references: Vec<String>,
    /// The held-out pairs as text.
    val_pairs: Vec<TranslationPair>,
    pad_id: u32,
    /// The decoder's first input (Marian: the pad token).
    start_id: u32,
    batch_size: usize,
    /// Held-out pairs translated per evaluation.
    translate_limit: usize,
    /// Longest source or target, in tokens (the model's positions).
    seq_len: usize,
    seed: u64,
    tokenizer: Tokenizer,
    summary: DataSummary,
}

impl Seq2SeqTask {
    pub(super) fn prepare(setup: TaskSetup<'_>) -> Result<(Box<dyn Task>, Tokenizer)> {
        let config = setup.config;
        let (train, val, source) = load_split(
            config,
            data::read_parallel,
            data::parallel_corpus,
            "English → French pairs",
        )?;
        if val.is_empty() {
            return Err(GlassboxError::InvalidInput(format!(
                "{source}: no held-out pairs to evaluate on; use more pairs, a larger \
                 data.val_fraction or a data.val_path"
            )));
        }
        let tokenizer = match setup.tokenizer {
            Some(t) => t,
            None => {
                if config
                    .tokenizer
                    .kind
                    .is_some_and(|k| k != TokenizerKindChoice::Bpe)
                {
                    return Err(GlassboxError::InvalidInput(
                        "seq2seq trains a byte-level BPE on both sides of the corpus: use \
                         tokenizer.kind = \"bpe\" (or leave it out)"
                            .into(),
                    ));
                }
                // One vocabulary for both languages: the encoder, the decoder and the LM head
                // share one embedding table, as in Marian.
                let both_sides: String = train
                    .iter()
                    .map(|p| format!("{}\n{}\n", p.source, p.target))
                    .collect();
                Tokenizer::train_translation(&both_sides, config.tokenizer.vocab_size)?
            }
        };
        let eos_id = required_token(tokenizer.eos_token(), "</s>", config.objective)?;
        let pad_id = required_token(tokenizer.pad_token(), "<pad>", config.objective)?;
        let encode = |text: &str| -> Result<Vec<u32>> {
            let mut ids = tokenizer.encode(text, true)?.ids;
            // A tokenizer without Marian's template still gets the `</s>` the model stops on.
            if ids.last() != Some(&eos_id) {
                ids.push(eos_id);
            }
            Ok(ids)
        };
        let seq_len = setup.seq_len;
        let mut too_long = 0usize;
        let mut encode_all =
            |pairs: &[TranslationPair]| -> Result<Vec<(EncodedPair, TranslationPair)>> {
                let mut out = Vec::with_capacity(pairs.len());
                for pair in pairs {
                    let encoded = EncodedPair {
                        source: encode(&pair.source)?,
                        target: encode(&pair.target)?,
                    };
                    // Cut short, a target would teach the model to stop mid-sentence: leave it out.
                    if encoded.source.len() > seq_len || encoded.target.len() > seq_len {
                        too_long += 1;
                        continue;
                    }
                    out.push((encoded, pair.clone()));
                }
                Ok(out)
            };
        let train_rows: Vec<EncodedPair> =
            encode_all(&train)?.into_iter().map(|(e, _)| e).collect();
        let (val_rows, val_pairs): (Vec<EncodedPair>, Vec<TranslationPair>) =
            encode_all(&val)?.into_iter().unzip();
        let note = if too_long > 0 {
            format!(" ({too_long} pairs longer than {seq_len} tokens left out)")
        } else {
            String::new()
        };
        if train_rows.is_empty() || val_rows.is_empty() {
            return Err(GlassboxError::InvalidInput(format!(
                "{source}: no pair fits in {seq_len} tokens on both sides for {}{note}",
                if train_rows.is_empty() {
                    "training"
                } else {
                    "evaluation"
                }
            )));
        }
        let task = Seq2SeqTask {
            summary: DataSummary {
                train_examples: train_rows.len(),
                val_examples: val_rows.len(),
                train_tokens: train_rows
                    .iter()
                    .map(|p| p.source.len() + p.target.len())
                    .sum(),
                source: format!("{source}{note}"),
            },
            train: train_rows,
            val: val_rows,
            val_references: val_pairs.iter().map(|p| p.target.clone()).collect(),
            val_pairs,
            pad_id,
            start_id: pad_id,
            batch_size: config.training.batch_size,
            translate_limit: (config.training.eval_batches * config.training.batch_size).max(1),
            seq_len,
            seed: config.seed,
            tokenizer: tokenizer.clone(),
        };
        Ok((Box::new(task), tokenizer))
    }

    /// Sources padded `[b, s]` with their padding; decoder inputs `[b, t]`; labels with the
    /// padding ignored.
    fn batch_of(&self, pairs: &[&EncodedPair], device: &Device) -> Result<Batch<TokenTargets>> {
        let sources: Vec<Vec<u32>> = pairs.iter().map(|p| p.source.clone()).collect();
        let (source_ids, source_padding) = data::pad_batch(&sources, self.pad_id);
        let decoder_inputs: Vec<Vec<u32>> = pairs
            .iter()
            .map(|p| {
                std::iter::once(self.start_id)
                    .chain(p.target[..p.target.len() - 1].iter().copied())
                    .collect()
            })
            .collect();
        let (decoder_input_ids, _) = data::pad_batch(&decoder_inputs, self.pad_id);
        let width = decoder_input_ids.first().map_or(0, Vec::len);
        let labels: Vec<i64> = pairs
            .iter()
            .flat_map(|p| {
                (0..width).map(|i| p.target.get(i).map_or(IGNORE_INDEX, |&id| i64::from(id)))
            })
            .collect();
        let tokens = pairs.iter().map(|p| p.source.len() + p.target.len()).sum();
        let targets = TokenTargets::from_labels(&labels, device)?;
        let mut batch = Batch::new(ids_tensor(&source_ids, device)?, targets, tokens);
        batch.decoder_input_ids = Some(ids_tensor(&decoder_input_ids, device)?);
        if source_padding.iter().any(|row| row.contains(&0)) {
            batch.padding = Some(source_padding);
        }
        Ok(batch)
    }
}

/// Greedy decoding settings for a model trained on sequences of up to `seq_len` tokens.
pub(crate) fn greedy_settings(
    config: &crate::model::marian::MarianConfig,
    seq_len: usize,
) -> GenerationConfig {
    GenerationConfig {
        max_length: seq_len + 1,
        ..GenerationConfig::from_model(config)
    }
}

impl Seq2SeqTask {
    /// Micro-batch number `draw` of the run.
    fn train_batch(&self, draw: u64, device: &Device) -> Result<Batch<TokenTargets>> {
        let picked: Vec<&EncodedPair> =
            epoch_indices(self.train.len(), self.batch_size, draw, self.seed)
                .into_iter()
                .map(|i| &self.train[i])
                .collect();
        self.batch_of(&picked, device)
    }
}

impl Task for Seq2SeqTask {
    fn train_loss(&self, model: &Model, draw: u64, device: &Device) -> Result<MicroBatch> {
        micro_batch(
            model,
            || self.train_batch(draw, device),
            graph_only,
            token_loss_only,
        )
    }
    fn evaluate(&self, model: &Model, device: &Device) -> Result<Evaluation> {
        let Model::Marian(marian) = model else {
            return Err(GlassboxError::Training(
                "seq2seq needs an encoder–decoder model".into(),
            ));
        };
        let batches = self
            .val
            .chunks(self.batch_size.max(1))
            .map(|chunk| self.batch_of(&chunk.iter().collect::<Vec<_>>(), device))
            .collect::<Result<Vec<_>>>()?;
        let (loss, _) = mean_token_loss(model, &batches)?;

        // Greedy translations of (up to `translate_limit`) held-out sources.
        let settings = greedy_settings(&marian.config, self.seq_len);
        let count = self.val.len().min(self.translate_limit);
        let sources: Vec<Vec<u32>> = self.val[..count].iter().map(|p| p.source.clone()).collect();
        let hypotheses = greedy_translations(marian, &sources, &settings, |ids| {
            self.tokenizer.decode(ids, true)
        })?;
        let scores = TranslationScores::of(hypotheses, &self.val_references[..count]);
        Ok(Evaluation {
            val_loss: loss as f32,
            metrics: BTreeMap::from([
                ("perplexity".to_string(), perplexity(loss)),
                ("exact_match".to_string(), scores.exact_match),
                ("bleu".to_string(), scores.bleu),
            ]),
            confusion: None,
        })
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["perplexity", "exact_match", "bleu"]
    }

    fn summary(&self) -> DataSummary {
        self.summary.clone()
    }

    fn held_out_file(&self) -> Option<(&'static str, String)> {
        let tsv: String = self
            .val_pairs
            .iter()
            .map(|p| format!("{}\t{}\n", p.source, p.target))
            .collect();
        Some((HELD_OUT_FILE, tsv))
    }

    fn default_probe_text(&self) -> String {
        // The course's example with an adjective that moves: "le chat noir a chassé ...".
        "the black cat chased the mouse .".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_input_is_the_target_shifted_right() {
        let corpus = "the cat .\nle chat .\n";
        let tokenizer = Tokenizer::train_translation(corpus, 300).expect("tokenizer");
        let pad = tokenizer.pad_token().expect("pad").1;
        let eos = tokenizer.eos_token().expect("eos").1;
        let task = Seq2SeqTask {
            train: Vec::new(),
            val: Vec::new(),
            val_references: Vec::new(),
            val_pairs: Vec::new(),
            pad_id: pad,
            start_id: pad,
            batch_size: 2,
            translate_limit: 1,
            seq_len: 16,
            seed: 1,
            tokenizer,
            summary: DataSummary::default(),
        };
        let long = EncodedPair {
            source: vec![10, 11, eos],
            target: vec![20, 21, 22, eos],
        };
        let short = EncodedPair {
            source: vec![12, eos],
            target: vec![23, eos],
        };
        let batch = task
            .batch_of(&[&long, &short], &Device::Cpu)
            .expect("batch");
        let decoder = batch.decoder_input_ids.expect("decoder input");
        assert_eq!(
            decoder.to_vec2::<u32>().expect("ids"),
            vec![vec![pad, 20, 21, 22], vec![pad, 23, pad, pad]]
        );
        assert_eq!(
            batch.padding,
            Some(vec![vec![1, 1, 1], vec![1, 1, 0]]),
            "the short source is padded"
        );
        let targets = batch.targets;
        // Labels: the first row's 4 tokens and the second row's 2; its padding is ignored.
        assert_eq!(targets.count().expect("count"), 6);
    }
}
