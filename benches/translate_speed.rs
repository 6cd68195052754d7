//! Translation speed: greedy decoding with the key/value cache and no trace (what `glassbox
//! translate` does) against decoding with the full trace (each step a teacher-forced forward of
//! the whole prefix that records every stage, what an inspecting view needs), alternating in one
//! run, plus beam search with 4 beams.
//!
//!     cargo bench --bench translate_speed                   # opus-mt-en-fr size, 5 rounds
//!     cargo bench --bench translate_speed -- --size small   # d=256, 3+3 layers, V=8000
//!     cargo bench --bench translate_speed -- --size fixture # the trained test fixture
//!     cargo bench --bench translate_speed -- --tokens 48 --rounds 3
//!
//! Weights are random (the speed does not depend on them; `--size fixture` uses the trained test
//! fixture), and `</s>` is banned until the last position, so decoding runs to the maximum length
//! every time: the same number of tokens on both sides.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use glassbox::model::marian::{GenerationConfig, Marian, MarianConfig, Seq2SeqTrace};

struct Options {
    size: String,
    tokens: usize,
    rounds: usize,
}

fn parse_options() -> Options {
    let mut options = Options {
        size: "opus".into(),
        tokens: 32,
        rounds: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--size" => options.size = args.next().unwrap_or(options.size),
            "--tokens" => options.tokens = args.next().and_then(|v| v.parse().ok()).unwrap_or(32),
            "--rounds" => {
                options.rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(5).max(1)
            }
            _ => {} // `cargo bench` passes --bench
        }
    }
    options
}

fn config(size: &str) -> anyhow::Result<MarianConfig> {
    let (d, layers, ffn, heads, vocab) = match size {
        "opus" => (512, 6, 2048, 8, 59514),
        "small" => (256, 3, 1024, 4, 8000),
        other => anyhow::bail!("unknown size {other:?}: opus, small or fixture"),
    };
    let json = serde_json::json!({
        "vocab_size": vocab, "d_model": d,
        "encoder_layers": layers, "decoder_layers": layers,
        "encoder_attention_heads": heads, "decoder_attention_heads": heads,
        "encoder_ffn_dim": ffn, "decoder_ffn_dim": ffn,
        "max_position_embeddings": 512, "activation_function": "swish",
        "scale_embedding": true, "pad_token_id": vocab - 1, "eos_token_id": 0,
        "decoder_start_token_id": vocab - 1, "forced_eos_token_id": 0,
    });
    MarianConfig::from_hf_json(&json).map_err(anyhow::Error::msg)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> anyhow::Result<()> {
    let options = parse_options();
    // As the app does: the kernels' buffers stay in the heap, off fresh mmaps.
    glassbox::kernels::tune_allocator();
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let model = if options.size == "fixture" {
        // The trained test fixture (2+2 layers, width 32), its real weights.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/marian");
        glassbox::model::checkpoint::load_translator(&dir, &device)?.model
    } else {
        Marian::new(
            VarBuilder::from_varmap(&varmap, DType::F32, &device),
            &config(&options.size)?,
        )?
    };
    let config = model.config.clone();
    // A 12-token source, as "The cat chased the mouse." in opus-mt.
    let source: Vec<u32> = (1..12).chain([0]).collect();
    let generation = GenerationConfig {
        max_length: options.tokens + 1,
        // Never stop early on random weights: no `</s>` until the forced one.
        bad_words_ids: vec![vec![config.pad_token_id], vec![config.eos_token_id]],
        ..GenerationConfig::from_model(&config)
    };
    println!(
        "Marian {} (d={}, {}+{} layers, V={}), {} source tokens, {} target tokens, {} threads",
        options.size,
        config.d_model,
        config.encoder_layers,
        config.decoder_layers,
        config.vocab_size,
        source.len(),
        options.tokens,
        candle_core::utils::get_num_threads()
    );

    let cached = || -> anyhow::Result<Vec<u32>> { Ok(model.greedy(&source, &generation)?) };
    let traced = || -> anyhow::Result<Vec<u32>> {
        let input = Tensor::new(source.as_slice(), &device)?.unsqueeze(0)?;
        let mut prefix = vec![config.decoder_start_token_id];
        for _ in 0..options.tokens {
            let decoder_input = Tensor::new(prefix.as_slice(), &device)?.unsqueeze(0)?;
            let mut trace = Seq2SeqTrace::default();
            let logits = model.forward(&input, &decoder_input, Some(&mut trace))?;
            let last = logits.squeeze(0)?.get(prefix.len() - 1)?;
            let mut scores = last.to_vec1::<f32>()?;
            for bad in &generation.bad_words_ids {
                scores[bad[0] as usize] = f32::NEG_INFINITY;
            }
            prefix.push(glassbox::generate::argmax(&scores) as u32);
        }
        Ok(prefix[1..].to_vec())
    };
    let beams = || -> anyhow::Result<usize> {
        let settings = GenerationConfig {
            num_beams: 4,
            ..generation.clone()
        };
        Ok(model.beam_search(&source, &settings)?.len())
    };

    // Warm-up (allocator, thread pool).
    cached()?;
    let (mut off, mut on, mut beam, mut ratios) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=options.rounds {
        let started = Instant::now();
        let a = cached()?;
        let off_ms = started.elapsed().as_secs_f64() * 1e3;
        let started = Instant::now();
        let b = traced()?;
        let on_ms = started.elapsed().as_secs_f64() * 1e3;
        let started = Instant::now();
        beams()?;
        let beam_ms = started.elapsed().as_secs_f64() * 1e3;
        // Same model, same rules: the cache must not change the translation.
        let agree = a[..a.len() - 1] == b[..a.len() - 1];
        println!(
            "round {round}: trace off (KV cache) {off_ms:.1} ms ({:.2} ms/token) | trace on \
             {on_ms:.1} ms ({:.2} ms/token) | ratio on/off {:.2}x | 4 beams {beam_ms:.1} ms | \
             same tokens: {agree}",
            off_ms / options.tokens as f64,
            on_ms / options.tokens as f64,
            on_ms / off_ms
        );
        off.push(off_ms);
        on.push(on_ms);
        beam.push(beam_ms);
        ratios.push(on_ms / off_ms);
    }
    println!(
        "median over {} rounds: trace off {:.1} ms, trace on {:.1} ms, 4 beams {:.1} ms; ratio \
         on/off {:.2}x",
        options.rounds,
        median(&mut off),
        median(&mut on),
        median(&mut beam),
        median(&mut ratios)
    );
    Ok(())
}
