//! The shipped tiny models: their recipes replay the recorded first steps exactly, and the
//! trained checkpoints make sensible predictions on the toy grammar.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use glassbox::generate::{next_token_logits, top_k};
use glassbox::model::ModelInput;
use glassbox::model::checkpoint::load_dir;
use glassbox::train::{TrainConfig, Trainer};

fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(name)
}

/// Re-runs the first steps of `assets/NAME/recipe.toml` (nothing written) and compares the
/// losses with the ones recorded in `first_steps.json` when the shipped model was trained.
fn replay_first_steps(name: &str) {
    let dir = asset(name);
    let recorded: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("first_steps.json")).expect("first_steps.json"),
    )
    .expect("valid JSON");
    let expected: Vec<f64> = recorded["train_losses"]
        .as_array()
        .expect("train_losses")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect();
    assert!(!expected.is_empty());
    let mut config = TrainConfig::from_file(&dir.join("recipe.toml"), &[]).expect("recipe");
    config.out_dir = None;
    let mut trainer = Trainer::new(config).expect("trainer");
    for (i, want) in expected.iter().enumerate() {
        let got = f64::from(trainer.step().expect("step").train_loss);
        // Bit-identical on the machine that made them; a little slack for other CPUs' kernels.
        assert!(
            (got - want).abs() < 1e-4,
            "{name}: step {} loss {got} but the recipe recorded {want}",
            i + 1
        );
    }
}

#[test]
fn tiny_gpt_recipe_replays_its_first_steps() {
    replay_first_steps("tiny-gpt");
}

#[test]
fn tiny_bert_recipe_replays_its_first_steps() {
    replay_first_steps("tiny-bert");
}

#[test]
fn tiny_bert_qa_recipe_replays_its_first_steps() {
    replay_first_steps("tiny-bert-qa");
}

/// Lesson 5's question-answering step, on the shipped QA model.
#[test]
fn tiny_bert_qa_answers_the_course_questions() {
    use glassbox::inspect::Predictions;
    let loaded = load_dir(&asset("tiny-bert-qa"), &Device::Cpu).expect("loads");
    let context = "the cat sat on the red mat near the river . then the cat chased the mouse .";
    for (question, answer) in [
        ("where did the cat sit ?", "on the red mat"),
        ("who chased the mouse ?", "the cat"),
        ("what color was the mat ?", "red"),
    ] {
        let inspection =
            glassbox::inspect::inspect(&loaded, question, Some(context), 5).expect("inspects");
        let Predictions::Span { text, .. } = inspection.predictions else {
            panic!("a QA model predicts a span: {:?}", inspection.predictions);
        };
        assert_eq!(text, answer, "{question}");
    }
}

#[test]
fn tiny_translator_recipe_replays_its_first_steps() {
    replay_first_steps("tiny-translator");
}

/// The claims the course makes about the shipped translator.
#[test]
fn tiny_translator_translates_the_course_example_and_its_held_out_pairs() {
    use glassbox::translate::{Decoding, score_pairs, translate};
    let loaded =
        glassbox::model::checkpoint::load_translator(&asset("tiny-translator"), &Device::Cpu)
            .expect("loads");
    let greedy = |text: &str| {
        translate(&loaded, text, &Decoding::default())
            .expect("translates")
            .translation
    };
    assert_eq!(
        greedy("the cat chased the mouse ."),
        "le chat a chassé la souris ."
    );
    // The adjective moves after the noun, and agrees with it.
    assert_eq!(
        greedy("the black cat chased the mouse ."),
        "le chat noir a chassé la souris ."
    );
    assert_eq!(
        greedy("the small cows saw a white frog ."),
        "les petites vaches ont vu une grenouille blanche ."
    );
    // Beam search finds the same best translation.
    let beams = translate(
        &loaded,
        "the cat chased the mouse .",
        &Decoding {
            num_beams: Some(3),
            ..Decoding::default()
        },
    )
    .expect("beam search");
    assert_eq!(beams.translation, "le chat a chassé la souris .");
    assert_eq!(beams.beams.len(), 3);

    // The pairs its training run held out (scripts/make-assets.sh copies them).
    let held_out = glassbox::data::read_parallel(&asset("tiny-translator").join("heldout.tsv"))
        .expect("heldout.tsv");
    assert_eq!(held_out.len(), 400);
    let scores = score_pairs(&loaded, &held_out).expect("scores");
    assert!(
        scores.exact_match >= 0.95,
        "exact match {}",
        scores.exact_match
    );
    assert!(scores.bleu >= 95.0, "BLEU {}", scores.bleu);
}

/// What the Translate view shows for the course's adjective swap: each French word written in
/// turn, and the cross-attention of "noir" looking back at "black".
#[test]
fn tiny_translator_steps_look_back_at_the_word_they_translate() {
    use glassbox::translate::{Strategy, translate_step_by_step};
    let loaded =
        glassbox::model::checkpoint::load_translator(&asset("tiny-translator"), &Device::Cpu)
            .expect("loads");
    let steps = translate_step_by_step(
        &loaded,
        "the black cat chased the mouse .",
        Strategy::Greedy,
        5,
    )
    .expect("steps");
    let written: Vec<&str> = steps.steps.iter().map(|s| s.token.as_str()).collect();
    assert_eq!(
        written,
        [
            "le",
            "▁chat",
            "▁noir",
            "▁a",
            "▁chassé",
            "▁la",
            "▁souris",
            "▁.",
            "</s>"
        ]
    );
    assert_eq!(
        steps.source_tokens,
        [
            "the",
            "▁black",
            "▁cat",
            "▁chased",
            "▁the",
            "▁mouse",
            "▁.",
            "</s>"
        ]
    );
    assert_eq!(
        steps.decoder_input_tokens[0], "<pad>",
        "Marian starts on the pad token"
    );
    for step in &steps.steps {
        assert_eq!(
            step.top[0].0, step.token,
            "greedy writes the most likely token"
        );
        assert!(step.probability > 0.5);
    }
    let layers = steps.cross_attention.len();
    let looked_at = |step: usize| {
        let row = steps.cross_row(layers - 1, None, step).expect("row");
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        let best = glassbox::generate::argmax(&row);
        steps.source_tokens[best].clone()
    };
    for (step, english) in [(1, "▁cat"), (2, "▁black"), (4, "▁chased"), (6, "▁mouse")] {
        assert_eq!(looked_at(step), english, "step {step} ({})", written[step]);
    }

    // Lesson 2's walk-through of "the cat chased the mouse .": eight steps, "chat" (step 2)
    // looking at "cat", "chassé" (step 4) at "chased"; the past tense is two French words.
    let steps = translate_step_by_step(&loaded, "the cat chased the mouse .", Strategy::Greedy, 5)
        .expect("steps");
    let written: Vec<&str> = steps.steps.iter().map(|s| s.token.as_str()).collect();
    assert_eq!(
        written,
        [
            "le",
            "▁chat",
            "▁a",
            "▁chassé",
            "▁la",
            "▁souris",
            "▁.",
            "</s>"
        ]
    );
    let row = |step: usize| steps.cross_row(layers - 1, None, step).expect("row");
    let looked_at =
        |step: usize| steps.source_tokens[glassbox::generate::argmax(&row(step))].clone();
    assert_eq!(looked_at(1), "▁cat");
    assert_eq!(looked_at(3), "▁chased");
    // Lesson 4: the cross-attention map of that translation is 8 tokens by 8 (rows: French).
    assert_eq!(
        steps.cross_attention[0][0].len(),
        8 * steps.source_tokens.len()
    );
}

#[test]
fn tiny_gpt_knows_what_the_cat_chased() {
    let loaded = load_dir(&asset("tiny-gpt"), &Device::Cpu).expect("loads");
    let tokenizer = loaded.tokenizer().expect("tokenizer");
    let ids = tokenizer.encode("the cat chased the", false).unwrap().ids;
    let logits = next_token_logits(&loaded.model, &ids, &loaded.device).unwrap();
    let best = top_k(&logits, 1)[0].0 as u32;
    let word = tokenizer.decode(&[best], true).unwrap();
    assert_eq!(word.trim(), "mouse", "predicted {word:?}");
}

/// The tiny GPT's tokenizer saw capitalised sentences, so the course's own examples split into
/// words ("The" is one token, not "T" + "he").
#[test]
fn tiny_gpt_tokenizes_the_course_sentences_into_words() {
    let tokenizer =
        glassbox::tokenizer::Tokenizer::from_file(&asset("tiny-gpt").join("tokenizer.json"))
            .expect("tokenizer");
    for (text, words) in [
        (
            "The cat chased the mouse.",
            vec![
                "The",
                "\u{2581}cat",
                "\u{2581}chased",
                "\u{2581}the",
                "\u{2581}mouse",
                ".",
            ],
        ),
        (
            "the cat chased the",
            vec!["the", "\u{2581}cat", "\u{2581}chased", "\u{2581}the"],
        ),
        ("A small dog", vec!["A", "\u{2581}small", "\u{2581}dog"]),
    ] {
        let tokens: Vec<String> = tokenizer
            .encode(text, false)
            .expect("encodes")
            .tokens
            .iter()
            .map(|t| tokenizer.readable_token(t))
            .collect();
        assert_eq!(tokens, words, "{text:?}");
    }
}

#[test]
fn tiny_bert_fills_the_mask_with_an_animal() {
    let loaded = load_dir(&asset("tiny-bert"), &Device::Cpu).expect("loads");
    let tokenizer = loaded.tokenizer().expect("tokenizer");
    let encoded = tokenizer
        .encode("the cat chased the [MASK] .", true)
        .unwrap();
    let (_, mask_id) = tokenizer.mask_token().expect("[MASK]");
    let position = encoded
        .ids
        .iter()
        .position(|&id| id == mask_id)
        .expect("a mask");
    let input = Tensor::new(encoded.ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let output = loaded.model.forward(ModelInput::new(&input), None).unwrap();
    let row = output
        .logits
        .unwrap()
        .squeeze(0)
        .unwrap()
        .get(position)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let top: Vec<String> = top_k(&row, 3)
        .into_iter()
        .map(|(id, _)| tokenizer.id_to_token(id as u32).unwrap())
        .collect();
    assert!(top.iter().any(|t| t == "mouse"), "top 3: {top:?}");
    let animals = [
        "mouse", "cat", "dog", "bird", "fox", "rabbit", "duck", "frog", "owl", "horse",
    ];
    assert!(animals.contains(&top[0].as_str()), "top 3: {top:?}");
}

fn to_two_decimals(values: &[f32]) -> Vec<f32> {
    values.iter().map(|c| (c * 100.0).round() / 100.0).collect()
}

/// Lesson 3's "bank": the word's static embedding is one row, but its contextual vectors in the
/// two meanings separate layer by layer, while two sentences of the same meaning stay close. The
/// figures the lesson quotes are checked here (to two decimals).
#[test]
fn tiny_bert_tells_the_two_banks_apart_layer_by_layer() {
    use glassbox::analysis::embeddings::compare_word;
    let loaded = load_dir(&asset("tiny-bert"), &Device::Cpu).expect("loads");
    let money = "the farmer kept the money in the bank .";
    let river = "the duck crossed the river to the bank .";
    let money_again = "the fox paid the money into the bank .";
    let senses = compare_word(&loaded, "tiny-bert", "bank", money, river).expect("compares");
    let same = compare_word(&loaded, "tiny-bert", "bank", money, money_again).expect("compares");
    eprintln!(
        "two meanings: static {:.3}, by layer {:?}; one meaning: {:?}",
        senses.static_cosine, senses.cosines, same.cosines
    );
    assert_eq!(senses.pieces_a, ["bank"]);
    // One row of the lookup table, and (the same position) the same input to layer 1.
    assert!((senses.static_cosine - 1.0).abs() < 1e-6);
    let rounded = to_two_decimals(&senses.cosines);
    assert_eq!(
        rounded,
        [1.0, 0.97, 0.96, 0.91, 0.81],
        "{:?}",
        senses.cosines
    );
    // Apart layer by layer...
    assert!(
        senses.cosines.windows(2).all(|w| w[1] < w[0]),
        "{:?}",
        senses.cosines
    );
    // ...while two money banks stay close.
    let top = |c: &[f32]| c.last().copied().unwrap_or(f32::NAN);
    assert_eq!(
        (top(&same.cosines) * 100.0).round() / 100.0,
        0.95,
        "{:?}",
        same.cosines
    );
}

/// The real-language version of the comparison, on the real all-MiniLM-L6-v2 where
/// `scripts/fetch-minilm.sh` has put it (CI does): the figures lesson 3 quotes.
#[test]
fn minilm_tells_the_two_banks_apart() {
    use glassbox::analysis::embeddings::compare_word;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/minilm/model");
    if !dir.join("model.safetensors").exists() {
        println!("SKIPPED: MiniLM is not in .cache/minilm/model (scripts/fetch-minilm.sh)");
        return;
    }
    let loaded = load_dir(&dir, &Device::Cpu).expect("loads");
    let money = "He went to the bank to deposit money.";
    let river = "She sat on the river bank and watched the water.";
    let senses = compare_word(&loaded, "minilm", "bank", money, river).expect("compares");
    eprintln!(
        "MiniLM: static {:.3}, by layer {:?}",
        senses.static_cosine, senses.cosines
    );
    assert!((senses.static_cosine - 1.0).abs() < 1e-6);
    let rounded = to_two_decimals(&senses.cosines);
    // After the embeddings (different positions) 0.99; every layer below 0.9; 0.80 at the top.
    assert_eq!(rounded[0], 0.99, "{rounded:?}");
    assert!(rounded[1..].iter().all(|c| *c < 0.9), "{rounded:?}");
    assert_eq!(rounded.last().copied(), Some(0.8), "{rounded:?}");
}
