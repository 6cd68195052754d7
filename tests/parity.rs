//! Parity with `transformers`: every reference tensor in tests/fixtures reproduced within 1e-4.

mod common;

use candle_core::Device;
use common::{fixture, max_abs_diff, reference_json, reference_tensors};
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
    use glassbox::translate::{inspect_translation, translate};
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
        let translation = translate(&loaded, source, 24).unwrap();
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
