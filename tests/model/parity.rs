//! Parity with `transformers`: every reference tensor in tests/fixtures reproduced within 1e-4.

use crate::common::{fixture, max_abs_diff, reference_json, reference_tensors};
use candle_core::Device;
use glassbox::inspect::{inspect, reference_tensors as our_tensors};
use glassbox::model::checkpoint::load_dir;

const TOLERANCE: f32 = 1e-4;

/// Runs every case of a fixture and returns the largest error seen.
fn check_fixture(name: &str) -> f32 {
    let loaded = load_dir(&fixture(name), &Device::Cpu).expect("fixture loads");
    let reference = reference_json(name);
    let expected = reference_tensors(name);
    let mut worst = 0f32;
    let cases = reference["cases"].as_array().expect("cases");
    for (index, case) in cases.iter().enumerate() {
        let text = case["text"].as_str().unwrap();
        let pair = case["text_pair"].as_str();
        let inspection = inspect(&loaded, text, pair, 5).expect("inspect");
        if let Some(tokens) = case.get("tokens") {
            let tokens: Vec<String> = serde_json::from_value(tokens.clone()).unwrap();
            assert_eq!(
                inspection.encoded.tokens, tokens,
                "{name} case {index} tokens"
            );
        }
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(inspection.encoded.ids, ids, "{name} case {index} ids");

        let ours = our_tensors(&loaded, &inspection).unwrap();
        let prefix = format!("case{index}.");
        let mut compared = 0;
        for (key, reference_tensor) in expected.iter().filter(|(k, _)| k.starts_with(&prefix)) {
            let tensor_name = &key[prefix.len()..];
            let ours = ours
                .get(tensor_name)
                .unwrap_or_else(|| panic!("{name}: we produce no `{tensor_name}`"));
            let diff = max_abs_diff(ours, reference_tensor);
            assert!(
                diff <= TOLERANCE,
                "{name} case {index} `{tensor_name}`: max abs error {diff}"
            );
            worst = worst.max(diff);
            compared += 1;
        }
        assert!(compared >= 2, "{name} case {index}: nothing compared");
    }
    println!("{name}: largest parity error {worst:.3e}");
    worst
}

#[test]
fn gpt2_matches_transformers() {
    check_fixture("gpt2");
}

#[test]
fn bert_pretraining_matches_transformers() {
    check_fixture("bert");
}

#[test]
fn bert_classifier_matches_transformers() {
    check_fixture("bert-cls");
}

#[test]
fn distilbert_matches_transformers() {
    check_fixture("distilbert");
}

#[test]
fn gpt2_argmax_next_tokens_match() {
    let loaded = load_dir(&fixture("gpt2"), &Device::Cpu).unwrap();
    let reference = reference_json("gpt2");
    let tokenizer = loaded.tokenizer().unwrap();
    for case in reference["cases"].as_array().unwrap() {
        let inspection = inspect(&loaded, case["text"].as_str().unwrap(), None, 1).unwrap();
        let logits = inspection.output.logits.unwrap().squeeze(0).unwrap();
        let argmax: Vec<u32> = logits.argmax(1).unwrap().to_vec1().unwrap();
        let tokens: Vec<String> = argmax
            .iter()
            .map(|&id| tokenizer.id_to_token(id).unwrap())
            .collect();
        let expected: Vec<String> = serde_json::from_value(case["argmax_next"].clone()).unwrap();
        assert_eq!(tokens, expected);
    }
}

/// The encoder–decoder (`MarianMTModel`): source and target through the SentencePiece
/// tokenizers, teacher-forced as `transformers` does it, then every encoder, decoder and
/// cross-attention tensor of every case; and the greedy translation (made with the key/value
/// cache) id for id.
#[test]
fn marian_matches_transformers() {
    use glassbox::model::checkpoint::load_translator;
    use glassbox::translate::{Decoding, inspect_translation, translate};
    let loaded = load_translator(&fixture("marian"), &Device::Cpu).expect("marian loads");
    let expected = reference_tensors("marian");
    let reference = reference_json("marian");
    let ids = |key: &str| -> Vec<u32> {
        expected[key]
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect()
    };
    let mut worst = 0f32;
    for (case, texts) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let p = format!("case{case}.");
        let source = texts["source"].as_str().unwrap();
        let target = texts["target"].as_str().unwrap();
        let inspection = inspect_translation(&loaded, source, Some(target)).unwrap();
        assert_eq!(inspection.source_ids, ids(&format!("{p}input_ids")));
        assert_eq!(inspection.target_ids, ids(&format!("{p}labels")));
        let ours = inspection.reference_tensors().unwrap();
        let mut compared = 0;
        for (key, reference_tensor) in expected.iter().filter(|(k, _)| k.starts_with(&p)) {
            let name = &key[p.len()..];
            if name == "labels" || name == "generated_ids" {
                continue;
            }
            let tensor = ours
                .get(name)
                .unwrap_or_else(|| panic!("marian: we produce no `{name}`"));
            let diff = max_abs_diff(tensor, reference_tensor);
            assert!(diff <= TOLERANCE, "marian case {case} {name}: {diff}");
            worst = worst.max(diff);
            compared += 1;
        }
        assert_eq!(compared, 2 + 3 + 3 + 2 + 2 + 2 + 1, "case {case}");
        // Greedy decoding with the cache: the same ids as `generate` (which starts with the
        // decoder start token), and the same text.
        let greedy = Decoding {
            num_beams: Some(1),
            max_new_tokens: Some(24),
            length_penalty: None,
        };
        let translation = translate(&loaded, source, &greedy).unwrap();
        let generated = ids(&format!("{p}generated_ids"));
        assert_eq!(generated[0], loaded.config.decoder_start_token_id);
        assert_eq!(
            translation.ids,
            generated[1..],
            "marian case {case} greedy ids"
        );
        assert_eq!(
            translation.translation,
            texts["generated_text"].as_str().unwrap()
        );
    }
    eprintln!("marian: worst difference {worst:e}");
}

/// The same checkpoint through the one opener and `Model::forward` (the path the app and the
/// trainer take): the same logits as `transformers`, and a trace with the encoder's record and
/// one cross-attention per decoder layer.
#[test]
fn marian_through_model_forward() {
    use glassbox::model::ModelInput;
    use glassbox::model::checkpoint::load_dir;
    use glassbox::model::trace::Trace;
    let loaded = load_dir(&fixture("marian"), &Device::Cpu).expect("marian loads");
    assert_eq!(loaded.config.family().model_type, "marian");
    let expected = reference_tensors("marian");
    let input_ids = expected["case0.input_ids"]
        .to_dtype(candle_core::DType::U32)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let decoder_input_ids = expected["case0.decoder_input_ids"]
        .to_dtype(candle_core::DType::U32)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut trace = Trace::default();
    let input = ModelInput {
        decoder_input_ids: Some(&decoder_input_ids),
        ..ModelInput::new(&input_ids)
    };
    let output = loaded.model.forward(input, Some(&mut trace)).unwrap();
    let logits = output.logits.unwrap().squeeze(0).unwrap();
    let diff = max_abs_diff(&logits, &expected["case0.logits"]);
    assert!(diff <= TOLERANCE, "logits: {diff}");
    let encoder = trace.encoder.as_ref().expect("the encoder's record");
    assert_eq!(
        encoder.layers.len(),
        loaded
            .config
            .stack_layers(glassbox::model::family::StackRole::Encoder)
    );
    assert_eq!(trace.cross.len(), trace.layers.len());
    let cross = trace.cross[0].attention_probs.as_ref().unwrap();
    // [b, heads, target, source]
    assert_eq!(
        cross.dims(),
        &[
            1,
            4,
            decoder_input_ids.dim(1).unwrap(),
            input_ids.dim(1).unwrap()
        ]
    );
    // Without the decoder input an encoder–decoder cannot run: an error, not a panic.
    assert!(
        loaded
            .model
            .forward(ModelInput::new(&input_ids), None)
            .is_err()
    );
}

/// Beam search as `transformers` scores it: one beam is greedy decoding; every hypothesis's
/// score is its teacher-forced log-probability divided by its length^length_penalty; the
/// hypotheses come best first; more beams never find a worse best score than fewer.
#[test]
fn marian_beam_search() {
    use glassbox::model::checkpoint::load_translator;
    use glassbox::model::marian::EarlyStopping;
    use glassbox::translate::{Decoding, inspect_translation, translate};
    let mut loaded = load_translator(&fixture("marian"), &Device::Cpu).expect("marian loads");
    // The folder's generation_config.json.
    assert_eq!(loaded.generation.num_beams, 1);
    assert_eq!(loaded.generation.max_length, 64);
    assert_eq!(loaded.generation.bad_words_ids, vec![vec![140]]);
    assert_eq!(loaded.generation.forced_eos_token_id, Some(0));
    let reference = reference_json("marian");
    let mut rescored = 0;
    for texts in reference["cases"].as_array().unwrap() {
        let source = texts["source"].as_str().unwrap();
        let with_beams = |beams: usize| Decoding {
            num_beams: Some(beams),
            max_new_tokens: Some(24),
            length_penalty: None,
        };
        let greedy = translate(&loaded, source, &with_beams(1)).unwrap();
        let encoded = loaded
            .tokenizer
            .encode(glassbox::tokenizer::translation::Side::Source, source)
            .unwrap();
        let settings = with_beams(1).settings(&loaded).unwrap();
        let one_beam = loaded.model.beam_search(&encoded.ids, &settings).unwrap();
        assert_eq!(one_beam[0].ids, greedy.ids, "{source}: one beam is greedy");
        let mut best_before = f32::NEG_INFINITY;
        for beams in [2, 3, 4] {
            let translation = translate(&loaded, source, &with_beams(beams)).unwrap();
            assert_eq!(translation.beams.len(), beams);
            assert_eq!(translation.ids, translation.beams[0].ids);
            for pair in translation.beams.windows(2) {
                assert!(pair[0].score >= pair[1].score, "best first");
            }
            for beam in &translation.beams {
                // Teacher-forced, the model gives the hypothesis the same log-probability
                // (unless `</s>` was forced at the maximum length: that step counts 0).
                let target = beam.ids.clone();
                if target.len() == 24 {
                    continue;
                }
                let inspection = inspect_translation(
                    &loaded,
                    source,
                    Some(&loaded.tokenizer.decode(&target).unwrap()),
                );
                let Ok(inspection) = inspection else { continue };
                if inspection.target_ids != target {
                    continue; // the text does not re-tokenize to the same pieces
                }
                let logits = inspection
                    .logits
                    .squeeze(0)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                let mut log_probability = 0f32;
                for (row, &id) in logits.iter().zip(&target) {
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let log_sum = row.iter().map(|x| (x - max).exp()).sum::<f32>().ln() + max;
                    log_probability += row[id as usize] - log_sum;
                }
                assert!(
                    (log_probability - beam.log_probability).abs() < 1e-3,
                    "{source}: {log_probability} vs {}",
                    beam.log_probability
                );
                let expected = log_probability / target.len() as f32;
                assert!(
                    (expected - beam.score).abs() < 1e-4,
                    "{expected} vs {}",
                    beam.score
                );
                rescored += 1;
            }
            assert!(translation.beams[0].score >= best_before - 1e-6);
            best_before = translation.beams[0].score;
        }
    }
    assert!(rescored >= 10, "only {rescored} hypotheses re-scored");
    // Early stopping and the length penalty change only how hypotheses are kept and ranked.
    loaded.generation.early_stopping = EarlyStopping::Yes;
    loaded.generation.length_penalty = 0.0;
    let decoding = Decoding {
        num_beams: Some(3),
        max_new_tokens: Some(24),
        length_penalty: None,
    };
    let translation = translate(&loaded, "The cat chased the mouse.", &decoding).unwrap();
    for beam in &translation.beams {
        assert!(
            (beam.score - beam.log_probability).abs() < 1e-5,
            "penalty 0: the sum"
        );
    }
    // A maximum length forces `</s>` at the last position.
    let short = Decoding {
        num_beams: Some(2),
        max_new_tokens: Some(3),
        length_penalty: None,
    };
    let translation = translate(&loaded, "The cat chased the mouse.", &short).unwrap();
    for beam in &translation.beams {
        assert!(beam.ids.len() <= 3);
        assert_eq!(beam.ids.last(), Some(&0), "forced </s>");
        assert!(!beam.ids.contains(&140), "never the pad token");
    }
    let zero = Decoding {
        num_beams: Some(0),
        ..short
    };
    assert!(translate(&loaded, "The cat.", &zero).is_err());
}
