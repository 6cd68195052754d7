//! Translation with an encoder–decoder (Marian): the source sentence through the source
//! tokenizer and the encoder, then greedy decoding or beam search (the folder's
//! `generation_config.json` settings unless overridden), then the target tokenizer back to text.

use crate::error::{GlassboxError, Result};
use crate::kernels::{threads_for_flops, with_threads};
use crate::model::checkpoint::LoadedTranslator;
use crate::model::marian::GenerationConfig;
use crate::model::params::forward_flops;
use crate::model::trace::maps_per_head;
use crate::tokenizer::translation::{Side, SideEncoding};

/// A translation with the ids and pieces the decoder chose (ending with `</s>` when it stopped).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Translation {
    pub translation: String,
    pub ids: Vec<u32>,
    pub tokens: Vec<String>,
    /// Beam search: the finished hypotheses, best first (the first is the translation above);
    /// empty for greedy decoding.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub beams: Vec<Beam>,
}

/// One finished beam.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Beam {
    pub translation: String,
    pub ids: Vec<u32>,
    pub tokens: Vec<String>,
    /// `log p / length^length_penalty`, as `transformers`' `sequences_scores`.
    pub score: f32,
    pub log_probability: f32,
}

/// Overrides of the folder's generation settings.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Decoding {
    /// 1: greedy. `None`: the folder's `num_beams`.
    pub num_beams: Option<usize>,
    /// `None`: the folder's `max_length` less the start token.
    pub max_new_tokens: Option<usize>,
    pub length_penalty: Option<f32>,
}

impl Decoding {
    /// The folder's settings with these overrides.
    pub fn settings(&self, loaded: &LoadedTranslator) -> Result<GenerationConfig> {
        let mut settings = loaded.generation.clone();
        if let Some(beams) = self.num_beams {
            if beams == 0 {
                return Err(GlassboxError::InvalidInput(
                    "the number of beams must be at least 1".into(),
                ));
            }
            settings.num_beams = beams;
        }
        if let Some(tokens) = self.max_new_tokens {
            settings.max_length = tokens.saturating_add(1);
        }
        if let Some(penalty) = self.length_penalty {
            settings.length_penalty = penalty;
        }
        Ok(settings)
    }
}

/// The source text through the source tokenizer, refused when empty or longer than the
/// model's positions.
fn encode_source(loaded: &LoadedTranslator, text: &str) -> Result<SideEncoding> {
    let source = loaded.tokenizer.encode(Side::Source, text)?;
    if source.ids.len() <= 1 {
        return Err(GlassboxError::InvalidInput(
            "the source text is empty: there is nothing to translate".into(),
        ));
    }
    check_length(loaded, "source", source.ids.len())?;
    Ok(source)
}

fn check_length(loaded: &LoadedTranslator, what: &str, len: usize) -> Result<()> {
    let positions = loaded.config.max_position_embeddings;
    if len > positions {
        return Err(GlassboxError::InvalidInput(format!(
            "the {what} is {len} tokens long; this model reads at most {positions}"
        )));
    }
    Ok(())
}

/// Translates `text` with the folder's generation settings and `decoding`'s overrides: greedy
/// for one beam, beam search for more.
pub fn translate(
    loaded: &LoadedTranslator,
    text: &str,
    decoding: &Decoding,
) -> Result<Translation> {
    let source = encode_source(loaded, text)?;
    let settings = decoding.settings(loaded)?;
    // One decoding step reads the source and the translation so far: a small model's steps
    // are quicker on one thread than handed around.
    let c = &loaded.config;
    let step_flops = settings.num_beams.max(1) as f64
        * forward_flops(
            c.d_model,
            c.encoder_layers + c.decoder_layers,
            c.encoder_ffn_dim,
            c.vocab_size,
            source.ids.len() + settings.max_length,
        );
    with_threads(threads_for_flops(step_flops), || {
        decode(loaded, &source.ids, &settings)
    })
}

/// Greedy decoding for one beam, beam search for more.
fn decode(
    loaded: &LoadedTranslator,
    source: &[u32],
    settings: &GenerationConfig,
) -> Result<Translation> {
    if settings.num_beams <= 1 {
        return greedy_translation(loaded, source, settings);
    }
    let hypotheses = loaded.model.beam_search(source, settings)?;
    let beams: Vec<Beam> = hypotheses
        .into_iter()
        .map(|h| {
            Ok(Beam {
                translation: loaded.tokenizer.decode(&h.ids)?,
                tokens: pieces(loaded, &h.ids),
                ids: h.ids,
                score: h.score,
                log_probability: h.log_probability,
            })
        })
        .collect::<Result<_>>()?;
    let best = beams
        .first()
        .cloned()
        .ok_or_else(|| GlassboxError::InvalidInput("beam search finished no hypothesis".into()))?;
    Ok(Translation {
        translation: best.translation,
        ids: best.ids,
        tokens: best.tokens,
        beams,
    })
}

fn pieces(loaded: &LoadedTranslator, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&id| {
            loaded
                .tokenizer
                .target_token(id)
                .unwrap_or_else(|| format!("<{id}>"))
        })
        .collect()
}

/// Greedy ids and their pieces for already encoded source ids.
fn greedy_translation(
    loaded: &LoadedTranslator,
    source_ids: &[u32],
    settings: &GenerationConfig,
) -> Result<Translation> {
    let ids = loaded.model.greedy(source_ids, settings)?;
    Ok(Translation {
        translation: loaded.tokenizer.decode(&ids)?,
        tokens: pieces(loaded, &ids),
        ids,
        beams: Vec::new(),
    })
}

/// How the decoder picks each next token.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Strategy {
    /// Always the most likely token.
    Greedy,
    /// Beam search with this many beams (the folder's length penalty and stopping rule).
    Beam { beams: usize },
    /// Drawn from the next-token distribution (temperature, top-k, top-p) with a seeded
    /// generator: the same seed, the same translation.
    Sample {
        settings: crate::generate::SamplingSettings,
        seed: u64,
    },
}

/// One step of the decoder: what it could write next and what it wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DecoderStep {
    /// The token written at this step (readable form) and its id.
    pub token: String,
    pub id: u32,
    /// The model's probability of that token (softmax of the logits, after the generation
    /// rules: the pad token never, `</s>` forced at the last position).
    pub probability: f32,
    /// The most likely next tokens at this step, most likely first: (readable token, probability).
    pub top: Vec<(String, f32)>,
}

/// A translation written step by step, with everything the views draw: the decoder's choices,
/// and the three kinds of attention of the pass that wrote them. Attention maps are
/// `[layer][head]`, row-major: encoder self-attention `s × s` (rows and columns: source tokens),
/// decoder self-attention `t × t` (causal: target tokens), cross-attention `t × s` (rows: target
/// tokens, columns: source tokens).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TranslationSteps {
    pub text: String,
    pub strategy: Strategy,
    pub source_tokens: Vec<String>,
    pub source_ids: Vec<u32>,
    /// What the decoder reads at each step: the start token, then what it wrote before.
    pub decoder_input_tokens: Vec<String>,
    pub steps: Vec<DecoderStep>,
    pub translation: String,
    /// Beam search: every finished beam, best first.
    pub beams: Vec<Beam>,
    pub encoder_attention: Vec<Vec<Vec<f32>>>,
    pub decoder_attention: Vec<Vec<Vec<f32>>>,
    pub cross_attention: Vec<Vec<Vec<f32>>>,
}

impl TranslationSteps {
    /// Number of target steps (`t`).
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The cross-attention of step `step` over the source (`[s]`, sums to 1): one layer and head,
    /// or (`head = None`) the mean of the layer's heads.
    pub fn cross_row(&self, layer: usize, head: Option<usize>, step: usize) -> Option<Vec<f32>> {
        let s = self.source_tokens.len();
        let heads = self.cross_attention.get(layer)?;
        let row = |map: &Vec<f32>| map.get(step * s..(step + 1) * s).map(<[f32]>::to_vec);
        match head {
            Some(h) => row(heads.get(h)?),
            None => {
                let rows: Vec<Vec<f32>> = heads.iter().filter_map(row).collect();
                let n = rows.len().max(1) as f32;
                Some(
                    (0..s)
                        .map(|j| rows.iter().map(|r| r[j]).sum::<f32>() / n)
                        .collect(),
                )
            }
        }
    }
}

/// Translates `text` with `strategy`, then runs the source and the translation through the model
/// once more with the trace on (teacher-forced on the model's own choices, which computes what
/// each decoding step computed), so every step's next-token probabilities and attention can be
/// shown. `top` candidates per step.
pub fn translate_step_by_step(
    loaded: &LoadedTranslator,
    text: &str,
    strategy: Strategy,
    top: usize,
) -> Result<TranslationSteps> {
    let source = encode_source(loaded, text)?;
    let mut settings = loaded.generation.clone();
    settings.num_beams = 1;
    let (ids, beams) = match strategy {
        Strategy::Greedy => (loaded.model.greedy(&source.ids, &settings)?, Vec::new()),
        Strategy::Beam { beams } => {
            let translation = translate(
                loaded,
                text,
                &Decoding {
                    num_beams: Some(beams.max(1)),
                    ..Decoding::default()
                },
            )?;
            (translation.ids, translation.beams)
        }
        Strategy::Sample {
            settings: sampling,
            seed,
        } => {
            sampling.validate()?;
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
            (
                sample(loaded, &source.ids, &settings, &sampling, &mut rng)?,
                Vec::new(),
            )
        }
    };
    if ids.is_empty() {
        return Err(GlassboxError::InvalidInput(
            "the decoder wrote nothing (its maximum length is 1)".into(),
        ));
    }
    check_length(loaded, "translation", ids.len())?;
    let start = settings.decoder_start_token_id;
    let mut decoder_input = vec![start];
    decoder_input.extend_from_slice(&ids[..ids.len() - 1]);

    let device = loaded.model.shared.weight.device();
    let input = candle_core::Tensor::new(source.ids.as_slice(), device)?.unsqueeze(0)?; // [1, s]
    let decoder_ids = candle_core::Tensor::new(decoder_input.as_slice(), device)?.unsqueeze(0)?; // [1, t]
    let mut trace = crate::model::marian::Seq2SeqTrace::default();
    let logits = loaded
        .model
        .forward(&input, &decoder_ids, Some(&mut trace))?
        .squeeze(0)?
        .to_vec2::<f32>()?; // [t, vocab]
    let readable = |id: u32| {
        let token = loaded
            .tokenizer
            .target_token(id)
            .unwrap_or_else(|| format!("<{id}>"));
        loaded.tokenizer.readable(&token)
    };
    let mut steps = Vec::with_capacity(ids.len());
    for (position, (mut scores, &id)) in logits.into_iter().zip(&ids).enumerate() {
        // The rules generation applied at this step, so the bars show what it chose from.
        settings.process(&mut scores, &decoder_input[..=position]);
        let probabilities = crate::generate::next_token_distribution(&scores, &Default::default());
        steps.push(DecoderStep {
            token: readable(id),
            id,
            probability: probabilities.get(id as usize).copied().unwrap_or(0.0),
            top: crate::generate::top_k(&probabilities, top)
                .into_iter()
                .map(|(candidate, p)| (readable(candidate as u32), p))
                .collect(),
        });
    }
    let source_tokens = source
        .tokens
        .iter()
        .map(|t| loaded.tokenizer.readable(t))
        .collect();
    Ok(TranslationSteps {
        text: text.to_string(),
        strategy,
        source_tokens,
        source_ids: source.ids,
        decoder_input_tokens: decoder_input.iter().map(|&id| readable(id)).collect(),
        translation: loaded.tokenizer.decode(&ids)?,
        steps,
        beams,
        encoder_attention: maps_per_head(&trace.encoder.attentions())?,
        decoder_attention: maps_per_head(&trace.decoder.attentions())?,
        cross_attention: maps_per_head(&trace.cross_attentions())?,
    })
}

/// Samples a translation token by token (the key/value cache on), each token drawn from
/// [`crate::generate::next_token_distribution`] of the processed scores.
fn sample(
    loaded: &LoadedTranslator,
    source_ids: &[u32],
    generation: &GenerationConfig,
    sampling: &crate::generate::SamplingSettings,
    rng: &mut rand::rngs::StdRng,
) -> Result<Vec<u32>> {
    let model = &loaded.model;
    let device = model.shared.weight.device();
    let input_ids = candle_core::Tensor::new(source_ids, device)?.unsqueeze(0)?; // [1, s]
    let encoder_output = model.encode(&input_ids, None, None)?;
    let mut state = model.start_decoding(&encoder_output, None)?;
    let max_length = generation
        .max_length
        .min(loaded.config.max_position_embeddings + 1);
    let mut sequence = vec![generation.decoder_start_token_id];
    while sequence.len() < max_length {
        let last = sequence[sequence.len() - 1];
        let ids = candle_core::Tensor::new(&[last], device)?.unsqueeze(0)?; // [1, 1]
        let logits = model.decode(&ids, &mut state, None)?; // [1, 1, vocab]
        let mut scores = logits.squeeze(0)?.squeeze(0)?.to_vec1::<f32>()?;
        generation.process(&mut scores, &sequence);
        let distribution = crate::generate::next_token_distribution(&scores, sampling);
        let next = crate::generate::sample(&distribution, rng) as u32;
        sequence.push(next);
        if next == generation.eos_token_id {
            break;
        }
    }
    Ok(sequence[1..].to_vec())
}

/// How well greedy translations of held-out pairs match their references.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TranslationScores {
    pub pairs: usize,
    /// Fraction of translations with exactly the reference's words (spacing aside).
    pub exact_match: f64,
    /// Corpus BLEU-4, 0 to 100.
    pub bleu: f64,
    /// Every translation, in the order of the pairs.
    pub hypotheses: Vec<String>,
}

impl TranslationScores {
    /// Scores `hypotheses` against `references` (one each).
    pub fn of(hypotheses: Vec<String>, references: &[String]) -> Self {
        let exact = hypotheses
            .iter()
            .zip(references)
            .filter(|(h, r)| same_words(h, r))
            .count();
        Self {
            pairs: hypotheses.len(),
            exact_match: exact as f64 / hypotheses.len().max(1) as f64,
            bleu: corpus_bleu(&hypotheses, references),
            hypotheses,
        }
    }
}

/// The same words in the same order (spacing aside).
pub fn same_words(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

/// Corpus BLEU-4 (Papineni et al. 2002, as `sacrebleu` computes it without smoothing) of
/// `hypotheses` against one reference each, on whitespace-separated words, from 0 to 100: the
/// geometric mean of the clipped 1- to 4-gram precisions over the whole corpus, times the brevity
/// penalty `exp(1 − reference length / hypothesis length)` when the hypotheses are shorter.
pub fn corpus_bleu(hypotheses: &[String], references: &[String]) -> f64 {
    const ORDER: usize = 4;
    let mut matches = [0usize; ORDER];
    let mut totals = [0usize; ORDER];
    let (mut hypothesis_length, mut reference_length) = (0usize, 0usize);
    for (hypothesis, reference) in hypotheses.iter().zip(references) {
        let hypothesis: Vec<&str> = hypothesis.split_whitespace().collect();
        let reference: Vec<&str> = reference.split_whitespace().collect();
        hypothesis_length += hypothesis.len();
        reference_length += reference.len();
        for n in 1..=ORDER {
            let mut reference_counts: std::collections::HashMap<&[&str], usize> =
                std::collections::HashMap::new();
            for gram in reference.windows(n) {
                *reference_counts.entry(gram).or_default() += 1;
            }
            for gram in hypothesis.windows(n) {
                totals[n - 1] += 1;
                if let Some(count) = reference_counts.get_mut(gram)
                    && *count > 0
                {
                    *count -= 1;
                    matches[n - 1] += 1;
                }
            }
        }
    }
    if hypothesis_length == 0 || matches.contains(&0) {
        return 0.0;
    }
    let log_precision: f64 = matches
        .iter()
        .zip(&totals)
        .map(|(&m, &t)| (m as f64 / t as f64).ln())
        .sum::<f64>()
        / ORDER as f64;
    let brevity_penalty = if hypothesis_length < reference_length {
        (1.0 - reference_length as f64 / hypothesis_length as f64).exp()
    } else {
        1.0
    };
    100.0 * brevity_penalty * log_precision.exp()
}

/// Greedy translations of encoded `sources` (each with its `</s>`), 64 at a time in a padded
/// batch, decoded to text by `decode`.
pub fn greedy_translations(
    model: &crate::model::marian::Marian,
    sources: &[Vec<u32>],
    settings: &GenerationConfig,
    decode: impl Fn(&[u32]) -> Result<String>,
) -> Result<Vec<String>> {
    let mut translations = Vec::with_capacity(sources.len());
    for chunk in sources.chunks(64) {
        for ids in model.greedy_batch(chunk, settings)? {
            translations.push(decode(&ids)?);
        }
    }
    Ok(translations)
}

/// Translates every pair's source greedily and scores the translations against the targets
/// (`glassbox translate --test`). Sources longer than the model reads are refused.
pub fn score_pairs(
    loaded: &LoadedTranslator,
    pairs: &[crate::data::TranslationPair],
) -> Result<TranslationScores> {
    let sources = pairs
        .iter()
        .map(|pair| Ok(encode_source(loaded, &pair.source)?.ids))
        .collect::<Result<Vec<_>>>()?;
    let settings = Decoding {
        num_beams: Some(1),
        ..Decoding::default()
    }
    .settings(loaded)?;
    let hypotheses = greedy_translations(&loaded.model, &sources, &settings, |ids| {
        loaded.tokenizer.decode(ids)
    })?;
    let references: Vec<String> = pairs.iter().map(|p| p.target.clone()).collect();
    Ok(TranslationScores::of(hypotheses, &references))
}

/// One source sentence and one target through the encoder–decoder with the trace on.
#[derive(Debug, Clone)]
pub struct TranslationInspection {
    pub source_ids: Vec<u32>,
    pub source_tokens: Vec<String>,
    /// The target tokens the decoder predicts (the labels, `</s>` last).
    pub target_ids: Vec<u32>,
    pub target_tokens: Vec<String>,
    /// What the decoder reads: the start token, then the target without its last token.
    pub decoder_input_ids: Vec<u32>,
    /// Whether the target was given (teacher forcing) or is the greedy translation.
    pub teacher_forced: bool,
    pub trace: crate::model::marian::Seq2SeqTrace,
    /// `[1, target, vocab]`
    pub logits: candle_core::Tensor,
}

/// For each target token, the source token its cross-attention weighs most.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Alignment {
    pub target: String,
    pub source: String,
    pub source_position: usize,
    pub weight: f32,
}

/// Runs `source` (and `target`, teacher-forced as `transformers` does it; without one, the greedy
/// translation) through the model with the trace on.
pub fn inspect_translation(
    loaded: &LoadedTranslator,
    source: &str,
    target: Option<&str>,
) -> Result<TranslationInspection> {
    // Encoded once: the greedy translation (when no target is given) reuses the source ids.
    let encoded = encode_source(loaded, source)?;
    let (target_ids, target_tokens, teacher_forced) = match target {
        Some(text) => {
            let t = loaded.tokenizer.encode(Side::Target, text)?;
            (t.ids, t.tokens, true)
        }
        None => {
            // Greedy, as long as the decoder's positions allow.
            let settings = GenerationConfig {
                max_length: loaded.config.max_position_embeddings + 1,
                ..loaded.generation.clone()
            };
            let t = greedy_translation(loaded, &encoded.ids, &settings)?;
            (t.ids, t.tokens, false)
        }
    };
    check_length(loaded, "target", target_ids.len())?;
    // Shifted right: the decoder reads the start token and predicts each target token.
    let mut decoder_input_ids = vec![loaded.config.decoder_start_token_id];
    decoder_input_ids.extend_from_slice(&target_ids[..target_ids.len() - 1]);
    let device = loaded.model.shared.weight.device();
    let input = candle_core::Tensor::new(encoded.ids.as_slice(), device)?.unsqueeze(0)?; // [1, s]
    let decoder_input =
        candle_core::Tensor::new(decoder_input_ids.as_slice(), device)?.unsqueeze(0)?; // [1, t]
    let mut trace = crate::model::marian::Seq2SeqTrace::default();
    let logits = loaded
        .model
        .forward(&input, &decoder_input, Some(&mut trace))?;
    Ok(TranslationInspection {
        source_ids: encoded.ids,
        source_tokens: encoded.tokens,
        target_ids,
        target_tokens,
        decoder_input_ids,
        teacher_forced,
        trace,
        logits,
    })
}

impl TranslationInspection {
    /// For each target token, the source token that the last layer's cross-attention (mean over
    /// heads) weighs most: the word alignment the model learned.
    pub fn alignment(&self) -> Result<Vec<Alignment>> {
        let Some(last) = self.trace.cross_attentions().pop() else {
            return Ok(Vec::new());
        };
        let mean = last.squeeze(0)?.mean(0)?; // [target, source]
        let rows = mean.to_vec2::<f32>()?;
        Ok(rows
            .iter()
            .zip(&self.target_tokens)
            .map(|(row, target)| {
                let position = crate::generate::argmax(row);
                Alignment {
                    target: target.clone(),
                    source: self
                        .source_tokens
                        .get(position)
                        .cloned()
                        .unwrap_or_default(),
                    source_position: position,
                    weight: row.get(position).copied().unwrap_or(0.0),
                }
            })
            .collect())
    }

    /// Every recorded tensor, named and shaped as `transformers` returns them for one sequence
    /// (batch dimension dropped): `input_ids`, `decoder_input_ids`, `encoder_hidden_states.{i}`,
    /// `encoder_attentions.{l}`, `decoder_hidden_states.{i}`, `decoder_attentions.{l}`,
    /// `cross_attentions.{l}`, `logits`.
    pub fn reference_tensors(
        &self,
    ) -> Result<std::collections::BTreeMap<String, candle_core::Tensor>> {
        use candle_core::Tensor;
        let device = self.logits.device();
        let as_i64 = |ids: &[u32]| -> Result<Tensor> {
            let ids: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
            Ok(Tensor::new(ids.as_slice(), device)?)
        };
        let mut out = std::collections::BTreeMap::new();
        out.insert("input_ids".to_string(), as_i64(&self.source_ids)?);
        out.insert(
            "decoder_input_ids".to_string(),
            as_i64(&self.decoder_input_ids)?,
        );
        let stacks = [
            ("encoder_hidden_states", &self.trace.encoder.hidden_states),
            ("decoder_hidden_states", &self.trace.decoder.hidden_states),
        ];
        for (name, states) in stacks {
            for (i, h) in states.iter().enumerate() {
                out.insert(format!("{name}.{i}"), h.squeeze(0)?);
            }
        }
        let attentions = [
            ("encoder_attentions", self.trace.encoder.attentions()),
            ("decoder_attentions", self.trace.decoder.attentions()),
            ("cross_attentions", self.trace.cross_attentions()),
        ];
        for (name, maps) in attentions {
            for (l, a) in maps.iter().enumerate() {
                out.insert(format!("{name}.{l}"), a.squeeze(0)?);
            }
        }
        out.insert("logits".to_string(), self.logits.squeeze(0)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_bleu_matches_sacrebleu() {
        let hypotheses = ["le chat a chassé la souris .", "le chien noir dort ."].map(String::from);
        let references = [
            "le chat a chassé la souris .",
            "le chien noir a dormi dans le jardin .",
        ]
        .map(String::from);
        // sacrebleu.corpus_bleu(h, [r], tokenize="none", smooth_method="none").score
        let bleu = corpus_bleu(&hypotheses, &references);
        assert!((bleu - 55.757_466_266_657_77).abs() < 1e-9, "{bleu}");
        assert_eq!(corpus_bleu(&references, &references), 100.0);
        assert_eq!(corpus_bleu(&["x".to_string()], &references[..1]), 0.0);
    }
}
