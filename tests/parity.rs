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
