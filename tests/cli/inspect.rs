//! The `glassbox` command line, run as a user would.

use std::process::Command;

use crate::common::{fixture, max_abs_diff, reference_tensors, temp_dir};
use candle_core::Device;

fn glassbox(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(args)
        .output()
        .expect("glassbox runs")
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn inspect_dump_reproduces_the_gpt2_fixture() {
    let dump = temp_dir("cli-dump").join("t.safetensors");
    let output = glassbox(&[
        "inspect",
        "--model",
        fixture("gpt2").to_str().unwrap(),
        "--text",
        "The cat chased the mouse.",
        "--dump",
        dump.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ours = candle_core::safetensors::load(&dump, &Device::Cpu).unwrap();
    let reference = reference_tensors("gpt2");
    let mut compared = 0;
    for (key, expected) in reference.iter().filter(|(k, _)| k.starts_with("case0.")) {
        let name = &key["case0.".len()..];
        let diff = max_abs_diff(&ours[name], expected);
        assert!(diff <= 1e-4, "{name}: {diff}");
        compared += 1;
    }
    assert_eq!(compared, 7); // input_ids, 3 hidden states, 2 attentions, logits
    assert!(stdout(&output).contains("next token"));
}

#[test]
fn inspect_bert_shows_fill_mask_and_nsp() {
    let output = glassbox(&[
        "inspect",
        "--model",
        fixture("bert").to_str().unwrap(),
        "--text",
        "The cat climbed the [MASK].",
        "--pair",
        "It was trying to catch a bird.",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let fill = &value["predictions"]["FillMask"];
    assert_eq!(fill["masks"].as_array().unwrap().len(), 1);
    assert_eq!(fill["masks"][0]["top"].as_array().unwrap().len(), 5);
    let nsp = fill["is_next_prob"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&nsp));
}

#[test]
fn inspect_classifier_shows_label_probabilities() {
    let output = glassbox(&[
        "inspect",
        "--model",
        fixture("bert-cls").to_str().unwrap(),
        "--text",
        "This movie was wonderful.",
    ]);
    assert!(output.status.success());
    let text = stdout(&output);
    assert!(
        text.contains("negative") && text.contains("positive"),
        "{text}"
    );
}

#[test]
fn generate_is_deterministic_for_a_seed() {
    let run = || {
        glassbox(&[
            "generate",
            "--model",
            fixture("gpt2").to_str().unwrap(),
            "--prompt",
            "The cat",
            "--max-new-tokens",
            "8",
            "--top-k",
            "5",
            "--seed",
            "7",
        ])
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(stdout(&first), stdout(&run()));
    assert!(stdout(&first).starts_with("The cat"));
}

#[test]
fn generate_refuses_a_bert_model() {
    let output = glassbox(&[
        "generate",
        "--model",
        fixture("bert").to_str().unwrap(),
        "--prompt",
        "hi",
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("GPT"));
}

#[test]
fn tokenize_explains_bpe_merges() {
    let output = glassbox(&[
        "tokenize",
        "--tokenizer",
        fixture("gpt2").to_str().unwrap(),
        "--text",
        "The cat chased the mouse.",
        "--explain",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        value["ids"],
        serde_json::json!([282, 330, 275, 72, 278, 272, 260, 281, 323, 69, 14])
    );
    assert!(!value["explain"].as_array().unwrap().is_empty());
}

#[test]
fn params_preset_prints_exact_total() {
    let output = glassbox(&["params", "--preset", "bert-base", "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout(&output);
    assert!(text.contains("109482240"), "{text}");
}

#[test]
fn params_unknown_preset_is_a_clear_error() {
    let output = glassbox(&["params", "--preset", "gpt5"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("gpt3-175b"));
}

#[test]
fn missing_model_is_a_clear_error_not_a_panic() {
    let output = glassbox(&["inspect", "--model", "/no/such/model", "--text", "hi"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/no/such/model") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// `glassbox translate` on the Marian fixture: the greedy translations `transformers` made,
/// with their ids; an empty source is a clear error.
#[test]
fn translate_gives_the_transformers_greedy_translation() {
    let reference = crate::common::reference_json("marian");
    let tensors = reference_tensors("marian");
    let model = fixture("marian");
    for (index, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let output = glassbox(&[
            "translate",
            "--model",
            model.to_str().unwrap(),
            "--text",
            case["source"].as_str().unwrap(),
            "--json",
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
        assert_eq!(json["translation"], case["generated_text"]);
        let generated: Vec<i64> = tensors[&format!("case{index}.generated_ids")]
            .to_vec1()
            .unwrap();
        assert_eq!(json["ids"], serde_json::json!(generated[1..]));
        assert_eq!(
            json["tokens"],
            serde_json::json!(case["generated_tokens"].as_array().unwrap()[1..])
        );
    }
    let empty = glassbox(&[
        "translate",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "  ",
    ]);
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("empty"));
}

/// `glassbox translate --beams`: the beams, best first, with their scores; a broken Marian
/// folder is a clear message naming what is wrong, never a panic.
#[test]
fn translate_beams_and_broken_marian_folders() {
    let model = fixture("marian");
    let output = glassbox(&[
        "translate",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "The cat chased the mouse.",
        "--beams",
        "3",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let beams = json["beams"].as_array().expect("beams");
    assert_eq!(beams.len(), 3);
    assert_eq!(json["translation"], beams[0]["translation"]);
    assert_eq!(json["translation"], "Le chat a chassé la souris.");
    let scores: Vec<f64> = beams.iter().map(|b| b["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");

    let run = |dir: &std::path::Path, text: &str| {
        let output = glassbox(&[
            "translate",
            "--model",
            dir.to_str().unwrap(),
            "--text",
            text,
        ]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    };
    // A missing tokenizer file is named.
    let dir = crate::common::copy_fixture("marian", "cli-marian-no-spm");
    std::fs::remove_file(dir.join("source.spm")).unwrap();
    assert!(run(&dir, "The cat.").contains("source.spm"));
    // A corrupt one too.
    let dir = crate::common::copy_fixture("marian", "cli-marian-bad-spm");
    std::fs::write(dir.join("target.spm"), b"\x0a\xff\xff not protobuf").unwrap();
    assert!(run(&dir, "The cat.").contains("target.spm"));
    // vocab.json without `</s>`.
    let dir = crate::common::copy_fixture("marian", "cli-marian-vocab");
    let vocab_path = dir.join("vocab.json");
    let mut vocab: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&vocab_path).unwrap()).unwrap();
    vocab.remove("</s>");
    std::fs::write(&vocab_path, serde_json::to_string(&vocab).unwrap()).unwrap();
    let stderr = run(&dir, "The cat.");
    assert!(
        stderr.contains("vocab.json") && stderr.contains("</s>"),
        "{stderr}"
    );
    // config.json says one decoder layer, the weights have two.
    let dir = crate::common::copy_fixture("marian", "cli-marian-layers");
    let config_path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["decoder_layers"] = 1.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let stderr = run(&dir, "The cat.");
    assert!(stderr.contains("decoder"), "{stderr}");
    // A source longer than the model's positions.
    let long = "the cat ".repeat(100);
    let stderr = run(&model, &long);
    assert!(stderr.contains("at most"), "{stderr}");
    // A target longer than the positions, when inspecting.
    let output = glassbox(&[
        "inspect",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "The cat.",
        "--target",
        &long,
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("target") && stderr.contains("at most"),
        "{stderr}"
    );
}

/// `glassbox open` checks its arguments before a window opens: a wrong view lists the views.
#[test]
fn open_refuses_bad_arguments_before_the_window() {
    let output = glassbox(&["open", "--view", "nowhere"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("nowhere") && stderr.contains("attention"),
        "{stderr}"
    );
    // A folder whose config.json is not a model's is refused, naming the file.
    let dir = crate::common::temp_dir("cli-open-bad-config");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), "{\"model_type\": \"unknown\"}").unwrap();
    let output = glassbox(&["open", dir.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("config.json"));
}

/// `glassbox inspect --target` on the Marian fixture: the dump reproduces every reference
/// tensor of the first case, and the summary aligns each target token with a source token.
#[test]
fn inspect_translation_dump_reproduces_the_marian_fixture() {
    let reference = crate::common::reference_json("marian");
    let case = &reference["cases"][0];
    let dump = temp_dir("cli-marian-dump").join("t.safetensors");
    let model = fixture("marian");
    let output = glassbox(&[
        "inspect",
        "--model",
        model.to_str().unwrap(),
        "--text",
        case["source"].as_str().unwrap(),
        "--target",
        case["target"].as_str().unwrap(),
        "--dump",
        dump.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ours = candle_core::safetensors::load(&dump, &Device::Cpu).unwrap();
    let expected = reference_tensors("marian");
    let mut compared = 0;
    for (key, tensor) in expected.iter().filter(|(k, _)| k.starts_with("case0.")) {
        let name = &key["case0.".len()..];
        if name == "labels" || name == "generated_ids" {
            continue;
        }
        let diff = max_abs_diff(&ours[name], tensor);
        assert!(diff <= 1e-4, "{name}: {diff}");
        compared += 1;
    }
    assert_eq!(compared, 15);
    let text = stdout(&output);
    assert!(text.contains("cross-attention"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("▁souris") && l.contains('→')),
        "{text}"
    );
    // --target on a model without a decoder that reads a source is refused.
    let wrong = glassbox(&[
        "inspect",
        "--model",
        fixture("gpt2").to_str().unwrap(),
        "--text",
        "hi",
        "--target",
        "salut",
    ]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("encoder–decoder"));
}

/// `glassbox tokenize` on a Marian folder: source side by default, `--target` for the other,
/// the ids `MarianTokenizer` gives, and `--explain` ranks Unigram's candidate segmentations
/// with the chosen one first.
#[test]
fn tokenize_reads_marian_sentencepiece_models() {
    let reference = crate::common::reference_json("marian");
    let case = &reference["tokenizer_cases"][0];
    let model = fixture("marian");
    for (flag, key) in [(None, "source_ids"), (Some("--target"), "target_ids")] {
        let mut args = vec![
            "tokenize",
            "--tokenizer",
            model.to_str().unwrap(),
            "--text",
            case["text"].as_str().unwrap(),
            "--json",
            "--explain",
        ];
        args.extend(flag);
        let output = glassbox(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
        assert_eq!(json["ids"], case[key], "{key}");
        for word in json["explain"].as_array().unwrap() {
            let candidates = word["candidates"].as_array().unwrap();
            if let Some(first) = candidates.first() {
                assert_eq!(first["pieces"], word["chosen"], "{word}");
            }
            let scores: Vec<f64> = candidates
                .iter()
                .map(|c| c["score"].as_f64().unwrap())
                .collect();
            assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        }
    }
}
