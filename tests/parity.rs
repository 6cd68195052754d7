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

/// The encoder–decoder (`MarianMTModel`): every encoder, decoder and cross-attention tensor of
/// every case, teacher-forced with the reference `decoder_input_ids`, and the greedy translation
/// (made with the key/value cache) id for id.
#[test]
fn marian_matches_transformers() {
    use candle_core::{DType, Tensor};
    use glassbox::model::marian::{Marian, MarianConfig, Seq2SeqTrace};
    let dir = fixture("marian");
    let config_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let config = MarianConfig::from_hf_json(&config_json).expect("marian config");
    let weights =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let vb = candle_nn::VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    let model = Marian::new(vb, &config).expect("marian builds");
    let expected = reference_tensors("marian");
    let cases = reference_json("marian")["cases"].as_array().unwrap().len();
    let ids = |key: &str| -> Vec<u32> {
        expected[key]
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect()
    };
    let mut worst = 0f32;
    for case in 0..cases {
        let p = format!("case{case}.");
        let source = ids(&format!("{p}input_ids"));
        let target = ids(&format!("{p}decoder_input_ids"));
        let input_ids = Tensor::new(source.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let decoder_input_ids = Tensor::new(target.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let mut trace = Seq2SeqTrace::default();
        let logits = model
            .forward(&input_ids, &decoder_input_ids, Some(&mut trace))
            .unwrap();
        let mut ours: Vec<(String, Tensor)> = vec![("logits".into(), logits)];
        for (i, h) in trace.encoder.hidden_states.iter().enumerate() {
            ours.push((format!("encoder_hidden_states.{i}"), h.clone()));
        }
        for (i, h) in trace.decoder.hidden_states.iter().enumerate() {
            ours.push((format!("decoder_hidden_states.{i}"), h.clone()));
        }
        for (l, a) in trace.encoder.attentions().into_iter().enumerate() {
            ours.push((format!("encoder_attentions.{l}"), a));
        }
        for (l, a) in trace.decoder.attentions().into_iter().enumerate() {
            ours.push((format!("decoder_attentions.{l}"), a));
        }
        for (l, a) in trace.cross_attentions().into_iter().enumerate() {
            ours.push((format!("cross_attentions.{l}"), a));
        }
        assert_eq!(ours.len(), 1 + 3 + 3 + 2 + 2 + 2);
        for (name, tensor) in ours {
            let reference = &expected[&format!("{p}{name}")];
            let diff = max_abs_diff(&tensor.squeeze(0).unwrap(), reference);
            assert!(diff <= TOLERANCE, "marian case {case} {name}: {diff}");
            worst = worst.max(diff);
        }
        // Greedy decoding with the cache: the same ids as `generate` (which starts with the
        // decoder start token).
        let generated = model.greedy(&source, 24).unwrap();
        let reference = ids(&format!("{p}generated_ids"));
        assert_eq!(reference[0], config.decoder_start_token_id);
        assert_eq!(generated, reference[1..], "marian case {case} greedy ids");
    }
    eprintln!("marian: worst difference {worst:e}");
}
