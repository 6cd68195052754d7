//! The subcommands' bodies: parse, call the library, print. No model logic lives here.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use glassbox::generate::{SamplingSettings, generate as generate_text};
use glassbox::inspect::{Predictions, inspect as inspect_text, reference_tensors};
use glassbox::model::checkpoint::{self, TOKENIZER_FILE, load_dir, write_safetensors};
use glassbox::model::params;
use glassbox::tokenizer::Tokenizer;

pub fn open_window() -> Result<()> {
    glassbox::app::run()
}

/// `glassbox open`: the window with these models, view and text.
pub fn open(models: &[String], view: Option<&str>, text: Option<&str>) -> Result<()> {
    let launch = glassbox::app::Launch::from_args(models, view, text)?;
    glassbox::app::run_with(launch)
}

pub fn params(preset: Option<String>, model: Option<PathBuf>, json: bool) -> Result<()> {
    let breakdown = match (preset, model) {
        (Some(name), _) => name.parse::<params::Preset>()?.breakdown(),
        (None, Some(dir)) => {
            // The weights must match the config (and be whole) for the table to describe them.
            let (config, stored) = checkpoint::check_weights_match(&dir)?;
            let mut breakdown = params::breakdown_for_config(&config);
            let stored_count = params::actual_count(stored);
            if stored_count != breakdown.exact_total {
                // Either way round: a file may keep buffers (Marian's final_logits_bias) or
                // tensors the architecture does not use, and may leave out tables the model
                // recomputes on load (Marian's fixed sinusoids).
                breakdown.notes.push(format!(
                    "{} stores {} values, the config's model has {} parameters: the file may keep \
                     buffers or tensors this architecture does not use, and leave out fixed tables \
                     the model computes on load",
                    checkpoint::WEIGHTS_FILE,
                    params::group_thousands(stored_count),
                    params::group_thousands(breakdown.exact_total)
                ));
            }
            breakdown
        }
        (None, None) => bail!("give --preset NAME or --model DIR"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&breakdown)?);
    } else {
        print!("{}", params::render_table(&breakdown));
    }
    Ok(())
}

fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    let file = if path.is_dir() {
        path.join(TOKENIZER_FILE)
    } else {
        path.to_path_buf()
    };
    Ok(Tokenizer::from_file(&file)?)
}

pub fn tokenize(path: &Path, text: &str, explain: bool, json: bool) -> Result<()> {
    let tokenizer = load_tokenizer(path)?;
    let encoded = tokenizer.encode(text, true)?;
    let explanation = if explain {
        Some(tokenizer.explain(text)?)
    } else {
        None
    };
    if json {
        let value = serde_json::json!({
            "kind": tokenizer.kind(),
            "tokens": encoded.tokens,
            "ids": encoded.ids,
            "offsets": encoded.offsets,
            "explain": explanation,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{:?} tokenizer, {} tokens",
        tokenizer.kind(),
        encoded.ids.len()
    );
    for (token, id) in encoded.tokens.iter().zip(&encoded.ids) {
        println!("{id:>8}  {token}");
    }
    if let Some(words) = explanation {
        println!();
        for word in words {
            println!("{:?} -> {:?}", word.word, word.pieces);
            for step in &word.steps {
                println!("    {step}");
            }
        }
    }
    Ok(())
}

/// `glassbox tokenize` on a Marian folder: the source side (or `--target`) SentencePiece model.
pub fn tokenize_sentencepiece(
    dir: &Path,
    text: &str,
    target: bool,
    explain: bool,
    json: bool,
) -> Result<()> {
    let side = if target { "target.spm" } else { "source.spm" };
    let tokenizer = glassbox::tokenizer::sentencepiece::SentencePiece::from_files(
        &dir.join(side),
        &dir.join("vocab.json"),
    )?;
    let encoded = tokenizer.encode(text)?;
    let explanation = if explain {
        Some(tokenizer.explain(text, 5)?)
    } else {
        None
    };
    if json {
        let value = serde_json::json!({
            "kind": "Unigram",
            "side": side,
            "tokens": encoded.tokens,
            "ids": encoded.ids,
            "explain": explanation,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "SentencePiece Unigram tokenizer ({side}), {} tokens",
        encoded.ids.len()
    );
    for (token, id) in encoded.tokens.iter().zip(&encoded.ids) {
        println!("{id:>8}  {token}");
    }
    if let Some(words) = explanation {
        println!();
        for word in words {
            println!("{:?} -> {:?}", word.word, word.chosen);
            for candidate in &word.candidates {
                println!("    {:>9.3}  {:?}", candidate.score, candidate.pieces);
            }
            if word.candidates.is_empty() {
                println!("    no segmentation into known pieces: unknown characters become <unk>");
            }
        }
    }
    Ok(())
}

pub fn inspect(
    dir: &Path,
    text: &str,
    pair: Option<&str>,
    k: usize,
    json: bool,
    dump: Option<PathBuf>,
    device: &str,
) -> Result<()> {
    let device = glassbox::device::parse_device(device)?;
    let loaded = load_dir(dir, &device)?;
    let inspection = inspect_text(&loaded, text, pair, k)?;
    if let Some(path) = &dump {
        let tensors = reference_tensors(&loaded, &inspection)?;
        write_safetensors(path, &tensors).with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        let value = serde_json::json!({
            "model": loaded.name(),
            "architecture": loaded.config.architecture.hf_name(),
            "tokens": inspection.encoded.tokens,
            "ids": inspection.encoded.ids,
            "token_type_ids": inspection.encoded.type_ids,
            "predictions": inspection.predictions,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{} ({}), {} tokens",
        loaded.name(),
        loaded.config.architecture.hf_name(),
        inspection.encoded.ids.len()
    );
    for (i, (token, id)) in inspection
        .encoded
        .tokens
        .iter()
        .zip(&inspection.encoded.ids)
        .enumerate()
    {
        println!("{i:>4} {id:>8}  {token}");
    }
    println!();
    match &inspection.predictions {
        Predictions::NextToken { top } => {
            println!("next token after {:?}:", text);
            for p in top {
                println!("  {:>7.3}%  {:?} ({})", p.prob * 100.0, p.token, p.id);
            }
        }
        Predictions::FillMask {
            masks,
            is_next_prob,
        } => {
            if masks.is_empty() {
                println!("no [MASK] in the text: put one in to see fill-mask predictions");
            }
            for mask in masks {
                println!("[MASK] at position {}:", mask.position);
                for p in &mask.top {
                    println!("  {:>7.3}%  {:?} ({})", p.prob * 100.0, p.token, p.id);
                }
            }
            if let Some(prob) = is_next_prob {
                println!(
                    "next sentence prediction: B follows A with probability {:.3}",
                    prob
                );
            }
        }
        Predictions::Classification { labels } => {
            for (label, prob) in labels {
                println!("  {:>7.3}%  {label}", prob * 100.0);
            }
        }
        Predictions::Span {
            start,
            end,
            text,
            score,
        } => println!("answer: {text:?} (tokens {start}..={end}, score {score:.3})"),
        Predictions::None => println!("this model has no prediction head"),
    }
    if let Some(path) = dump {
        println!("\ntensors written to {}", path.display());
    }
    Ok(())
}

pub fn generate(
    dir: &Path,
    prompt: &str,
    max_new_tokens: usize,
    settings: SamplingSettings,
    seed: u64,
    device: &str,
) -> Result<()> {
    // Checked before the model is loaded: the same rules as the Predict view's.
    settings.validate()?;
    let device = glassbox::device::parse_device(device)?;
    let loaded = load_dir(dir, &device)?;
    let family = loaded.config.family();
    if family.has_cross_attention() {
        bail!(
            "{} is an encoder–decoder: it writes a translation of a source, not a continuation; \
             use `glassbox translate`",
            dir.display()
        );
    }
    if !family.generates() {
        bail!(
            "{} is a {} model; generation needs a GPT (causal) model",
            dir.display(),
            loaded.config.model_type()
        );
    }
    print!("{prompt}");
    let mut stdout = std::io::stdout();
    stdout.flush().ok();
    generate_text(&loaded, prompt, max_new_tokens, &settings, seed, |piece| {
        print!("{piece}");
        stdout.flush().ok();
    })?;
    println!();
    Ok(())
}

/// `glassbox inspect` on an encoder–decoder: tokens on both sides, for each target token the
/// source token its cross-attention weighs most, and optionally every tensor.
pub fn inspect_translation(
    dir: &Path,
    source: &str,
    target: Option<&str>,
    json: bool,
    dump: Option<PathBuf>,
    device: &str,
) -> Result<()> {
    let device = glassbox::device::parse_device(device)?;
    let loaded = checkpoint::load_translator(dir, &device)?;
    let inspection = glassbox::translate::inspect_translation(&loaded, source, target)?;
    if let Some(path) = &dump {
        write_safetensors(path, &inspection.reference_tensors()?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let alignment = inspection.alignment()?;
    if json {
        let value = serde_json::json!({
            "model": dir.display().to_string(),
            "architecture": "MarianMTModel",
            "source_tokens": inspection.source_tokens,
            "input_ids": inspection.source_ids,
            "target_tokens": inspection.target_tokens,
            "labels": inspection.target_ids,
            "decoder_input_ids": inspection.decoder_input_ids,
            "teacher_forced": inspection.teacher_forced,
            "alignment": alignment,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{} (MarianMTModel), {} source tokens, {} target tokens ({})",
        dir.display(),
        inspection.source_ids.len(),
        inspection.target_ids.len(),
        if inspection.teacher_forced {
            "the given target, teacher-forced"
        } else {
            "the greedy translation"
        }
    );
    println!("\nsource:");
    for (i, (token, id)) in inspection
        .source_tokens
        .iter()
        .zip(&inspection.source_ids)
        .enumerate()
    {
        println!("{i:>4} {id:>8}  {token}");
    }
    println!(
        "\ntarget token → the source token its cross-attention weighs most (last layer, mean of heads):"
    );
    for (i, a) in alignment.iter().enumerate() {
        println!(
            "{i:>4}  {:<14} → {:<14} (position {}, {:.2})",
            a.target, a.source, a.source_position, a.weight
        );
    }
    if let Some(path) = dump {
        println!("\ntensors written to {}", path.display());
    }
    Ok(())
}

pub fn translate(
    dir: &Path,
    text: &str,
    decoding: &glassbox::translate::Decoding,
    json: bool,
    device: &str,
) -> Result<()> {
    let device = glassbox::device::parse_device(device)?;
    let loaded = checkpoint::load_translator(dir, &device)?;
    let translation = glassbox::translate::translate(&loaded, text, decoding)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&translation)?);
    } else {
        println!("{}", translation.translation);
        // The other beams go to stderr so that stdout stays the one translation.
        for (rank, beam) in translation.beams.iter().enumerate().skip(1) {
            eprintln!(
                "beam {} (score {:.4}): {}",
                rank + 1,
                beam.score,
                beam.translation
            );
        }
    }
    Ok(())
}

/// `glassbox translate --test FILE`: exact match and BLEU of greedy translations of a parallel
/// file, with the translations that missed.
pub fn score_translations(dir: &Path, pairs_file: &Path, json: bool, device: &str) -> Result<()> {
    let device = glassbox::device::parse_device(device)?;
    let loaded = checkpoint::load_translator(dir, &device)?;
    let pairs = glassbox::data::read_parallel(pairs_file)?;
    let scores = glassbox::translate::score_pairs(&loaded, &pairs)?;
    let misses: Vec<(&glassbox::data::TranslationPair, &String)> = pairs
        .iter()
        .zip(&scores.hypotheses)
        .filter(|(pair, hypothesis)| !glassbox::translate::same_words(&pair.target, hypothesis))
        .collect();
    if json {
        let value = serde_json::json!({
            "model": dir.display().to_string(),
            "test": pairs_file.display().to_string(),
            "pairs": scores.pairs,
            "exact_match": scores.exact_match,
            "bleu": scores.bleu,
            "misses": misses.iter().map(|(pair, hypothesis)| serde_json::json!({
                "source": pair.source,
                "target": pair.target,
                "translation": hypothesis,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{} pairs: exact match {:.1}% ({} of {}), BLEU {:.2}",
        scores.pairs,
        100.0 * scores.exact_match,
        scores.pairs - misses.len(),
        scores.pairs,
        scores.bleu
    );
    for (pair, hypothesis) in misses {
        println!("\n  source:      {}", pair.source);
        println!("  reference:   {}", pair.target);
        println!("  translation: {hypothesis}");
    }
    Ok(())
}

pub fn download(repo_id: &str) -> Result<()> {
    let dir = glassbox::hub::fetch_model(repo_id, |event| {
        if let glassbox::hub::HubEvent::Start { file, size } = event {
            eprintln!("downloading {file} ({:.1} MB)", size as f64 / 1e6);
        }
    })?;
    println!("{}", dir.display());
    Ok(())
}
