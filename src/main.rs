//! The `glassbox` command. With no subcommand it opens the window; each subcommand runs the same
//! library code headless.

mod cli;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "glassbox",
    version,
    about = "Look inside small transformers while they run and while they learn"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Parameter counts by component: textbook formula and exact count.
    Params {
        /// bert-base, bert-large, distilbert, roberta-large, albert-base, gpt2, gpt2-medium,
        /// gpt2-large, gpt2-xl, gpt3-175b
        #[arg(long, conflicts_with = "model", required_unless_present = "model")]
        preset: Option<String>,
        /// A Hugging Face-format model folder.
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Split a text into tokens.
    Tokenize {
        /// tokenizer.json, or a model folder containing one (or a Marian folder's .spm files).
        #[arg(long)]
        tokenizer: PathBuf,
        #[arg(long)]
        text: String,
        /// Marian folders: the target side's tokenizer (default: the source side's).
        #[arg(long)]
        target: bool,
        /// Show the BPE merges / WordPiece steps / Unigram candidates that made each token.
        #[arg(long)]
        explain: bool,
        #[arg(long)]
        json: bool,
    },
    /// Run a text through a model: tokens, ids, top predictions, and optionally every tensor.
    Inspect {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        text: String,
        /// Second segment (BERT sentence pairs, next-sentence prediction, QA context).
        #[arg(long)]
        pair: Option<String>,
        /// Encoder–decoder models: the target, teacher-forced (default: the greedy translation).
        #[arg(long, conflicts_with = "pair")]
        target: Option<String>,
        /// How many predictions to show (at least 1).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        top_k: u32,
        #[arg(long)]
        json: bool,
        /// Write hidden states, attentions and logits to a safetensors file, named as in the
        /// `transformers` reference fixtures.
        #[arg(long)]
        dump: Option<PathBuf>,
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Generate text with a GPT model.
    Generate {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        prompt: String,
        #[arg(long, default_value_t = 40)]
        max_new_tokens: usize,
        /// Softmax temperature, ≥ 0; 0 always takes the most likely token.
        #[arg(long, default_value_t = 1.0)]
        temperature: f32,
        /// Sample among the k most likely tokens; 0 = no limit.
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        /// Sample among the fewest tokens whose probabilities add up to p, in (0, 1]; 1 = no limit.
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Translate with an encoder–decoder (a Marian folder: config.json, model.safetensors,
    /// source.spm, target.spm, vocab.json), greedily or with beam search; the folder's
    /// generation_config.json gives the defaults.
    Translate {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, required_unless_present = "test")]
        text: Option<String>,
        /// Translate every pair of a parallel file (TSV source<TAB>target, or JSONL) greedily and
        /// print the exact-match rate and corpus BLEU against its targets.
        #[arg(long, conflicts_with = "text")]
        test: Option<PathBuf>,
        /// Beam search with N beams (1: greedy). Default: the folder's num_beams.
        #[arg(long)]
        beams: Option<usize>,
        /// Default: the folder's max_length less the start token.
        #[arg(long)]
        max_new_tokens: Option<usize>,
        /// Beam scores divide by length^penalty. Default: the folder's (1.0).
        #[arg(long)]
        length_penalty: Option<f32>,
        /// Print {"translation": ..., "ids": [...], "tokens": [...]}.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Open the window with these models (folders or Hub ids; the first of each family in its
    /// place, more beside it), a view (model, tokens, attention, params, ...) and a text.
    Open {
        /// Model folders or Hugging Face repository ids.
        models: Vec<String>,
        #[arg(long)]
        view: Option<String>,
        #[arg(long)]
        text: Option<String>,
    },
    /// Download a model from the Hugging Face Hub into the local cache.
    Download {
        /// e.g. gpt2, bert-base-uncased, sentence-transformers/all-MiniLM-L6-v2
        repo_id: String,
    },
    /// Pretrain a model from scratch (GPT causal LM, BERT masked LM + NSP, an encoder–decoder
    /// translator) from a TOML recipe.
    Train(glassbox::train::cli::TrainArgs),
    /// Fine-tune a trained model: classification (CSV), extractive QA (JSON/JSONL), generation
    /// (JSONL prompt/completion).
    Finetune(glassbox::train::cli::FinetuneArgs),
}

fn main() {
    restore_default_sigpipe();
    // Every command (and the window) runs forwards or training steps whose large buffers are
    // freed and allocated again and again: keep them in the heap, warm, rather than in fresh
    // mmaps (glibc only).
    glassbox::kernels::tune_allocator();
    let args = Args::parse();
    let result = match args.command {
        None => cli::open_window(),
        Some(Command::Params {
            preset,
            model,
            json,
        }) => cli::params(preset, model, json),
        Some(Command::Tokenize {
            tokenizer,
            text,
            target,
            explain,
            json,
        }) if tokenizer.join("vocab.json").is_file()
            && (tokenizer.join("source.spm").is_file()
                || tokenizer.join("target.spm").is_file()) =>
        {
            cli::tokenize_sentencepiece(&tokenizer, &text, target, explain, json)
        }
        Some(Command::Tokenize {
            tokenizer,
            text,
            target,
            explain,
            json,
        }) => match target {
            // A translator trained here has one tokenizer.json for both sides.
            true if glassbox::model::checkpoint::is_marian_dir(&tokenizer) => {
                cli::tokenize(&tokenizer, &text, explain, json)
            }
            true => Err(anyhow::anyhow!(
                "--target is for translation models' folders (source.spm / target.spm); {} has none",
                tokenizer.display()
            )),
            false => cli::tokenize(&tokenizer, &text, explain, json),
        },
        Some(Command::Inspect {
            model,
            text,
            pair,
            target,
            top_k,
            json,
            dump,
            device,
        }) => {
            if glassbox::model::checkpoint::is_marian_dir(&model) {
                // A sentence pair and top-k belong to encoder-only and decoder-only models.
                cli::inspect_translation(&model, &text, target.as_deref(), json, dump, &device)
            } else if target.is_some() {
                Err(anyhow::anyhow!(
                    "--target is for encoder–decoder (translation) models; {} is not one",
                    model.display()
                ))
            } else {
                cli::inspect(
                    &model,
                    &text,
                    pair.as_deref(),
                    top_k as usize,
                    json,
                    dump,
                    &device,
                )
            }
        }
        Some(Command::Generate {
            model,
            prompt,
            max_new_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            device,
        }) => cli::generate(
            &model,
            &prompt,
            max_new_tokens,
            glassbox::generate::SamplingSettings {
                temperature,
                top_k,
                top_p,
            },
            seed,
            &device,
        ),
        Some(Command::Translate {
            model,
            test: Some(test),
            json,
            device,
            ..
        }) => cli::score_translations(&model, &test, json, &device),
        Some(Command::Translate {
            model,
            text,
            test: None,
            beams,
            max_new_tokens,
            length_penalty,
            json,
            device,
        }) => {
            let decoding = glassbox::translate::Decoding {
                num_beams: beams,
                max_new_tokens,
                length_penalty,
            };
            let text = text.unwrap_or_default();
            cli::translate(&model, &text, &decoding, json, &device)
        }
        Some(Command::Download { repo_id }) => cli::download(&repo_id),
        Some(Command::Open { models, view, text }) => {
            cli::open(&models, view.as_deref(), text.as_deref())
        }
        Some(Command::Train(args)) => glassbox::train::cli::train(args),
        Some(Command::Finetune(args)) => glassbox::train::cli::finetune(args),
    };
    if let Err(error) = result {
        if let Some(interrupted) = error.downcast_ref::<glassbox::train::cli::Interrupted>() {
            eprintln!("{interrupted}");
            std::process::exit(130);
        }
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

/// Rust ignores SIGPIPE, so writing to a closed pipe (`glassbox generate ... | head -c1`) fails
/// and `println!` panics. The command line behaves as Unix tools do instead: the default action
/// ends the process quietly when the reader has gone.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
