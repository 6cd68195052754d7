//! Loading and saving checkpoint folders, and one test per bad input: each error names the file
//! and the problem.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::{copy_fixture, fixture, max_abs_diff, temp_dir};
use candle_core::Device;
use glassbox::GlassboxError;
use glassbox::inspect::{inspect, reference_tensors};
use glassbox::model::checkpoint::{load_dir, save_dir};

fn edit_config(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(&path, serde_json::to_string(&value).unwrap()).unwrap();
}

fn load_error(dir: &std::path::Path) -> GlassboxError {
    match load_dir(dir, &Device::Cpu) {
        Ok(_) => panic!("{} loaded but should not", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn missing_weights_file_is_named() {
    let dir = copy_fixture("gpt2", "missing-weights");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let error = load_error(&dir);
    assert!(
        matches!(error, GlassboxError::MissingFile { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("model.safetensors"), "{error}");
}

#[test]
fn missing_folder_is_named() {
    let error = load_error(std::path::Path::new("/nonexistent/glassbox/model"));
    assert!(
        error.to_string().contains("/nonexistent/glassbox/model"),
        "{error}"
    );
}

#[test]
fn truncated_safetensors_is_reported() {
    let dir = copy_fixture("bert", "truncated");
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let error = load_error(&dir);
    assert!(
        matches!(error, GlassboxError::CorruptSafetensors { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("model.safetensors"), "{error}");
}

#[test]
fn garbage_safetensors_is_reported() {
    let dir = copy_fixture("bert", "garbage");
    std::fs::write(
        dir.join("model.safetensors"),
        b"this is not a safetensors file at all",
    )
    .unwrap();
    let error = load_error(&dir);
    assert!(
        matches!(error, GlassboxError::CorruptSafetensors { .. }),
        "{error}"
    );
}

#[test]
fn wrong_shape_names_the_tensor() {
    // A vocabulary size that disagrees with the embedding matrix.
    let dir = copy_fixture("gpt2", "wrong-shape");
    edit_config(&dir, |c| c["vocab_size"] = 401.into());
    let error = load_error(&dir);
    match &error {
        GlassboxError::WrongShape {
            name,
            expected,
            found,
            ..
        } => {
            assert_eq!(name, "transformer.wte.weight");
            assert_eq!(expected, &vec![401, 32]);
            assert_eq!(found, &vec![400, 32]);
        }
        other => panic!("expected WrongShape, got {other}"),
    }
}

#[test]
fn config_with_more_layers_than_weights_is_reported() {
    let dir = copy_fixture("distilbert", "more-layers");
    edit_config(&dir, |c| c["n_layers"] = 3.into());
    let error = load_error(&dir);
    assert!(
        matches!(error, GlassboxError::MissingTensor { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("transformer.layer.2"), "{error}");
}

#[test]
fn config_with_fewer_layers_than_weights_is_reported() {
    let dir = copy_fixture("bert", "fewer-layers");
    edit_config(&dir, |c| c["num_hidden_layers"] = 1.into());
    let error = load_error(&dir);
    assert!(matches!(error, GlassboxError::BadConfig { .. }), "{error}");
    assert!(error.to_string().contains("disagree"), "{error}");
}

#[test]
fn unknown_architecture_is_reported() {
    let dir = copy_fixture("gpt2", "unknown-arch");
    edit_config(&dir, |c| {
        c["model_type"] = "llama".into();
        c["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
    });
    let error = load_error(&dir);
    assert!(
        matches!(error, GlassboxError::UnknownArchitecture { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("llama"), "{error}");
}

#[test]
fn invalid_config_json_is_reported() {
    let dir = copy_fixture("gpt2", "bad-json");
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    let error = load_error(&dir);
    assert!(matches!(error, GlassboxError::BadConfig { .. }), "{error}");
    assert!(error.to_string().contains("config.json"), "{error}");
}

#[test]
fn non_utf8_config_is_reported() {
    let dir = copy_fixture("gpt2", "non-utf8");
    std::fs::write(dir.join("config.json"), [0x7b, 0xff, 0xfe, 0x7d]).unwrap();
    let error = load_error(&dir);
    assert!(matches!(error, GlassboxError::NotUtf8 { .. }), "{error}");
}

#[test]
fn pickle_is_refused_not_executed() {
    let dir = copy_fixture("bert", "pickle");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    // A pickle that would run a shell command if it were ever unpickled.
    std::fs::write(
        dir.join("pytorch_model.bin"),
        b"cos\nsystem\n(S'touch /tmp/glassbox-pwned'\ntR.",
    )
    .unwrap();
    let error = load_error(&dir);
    assert!(
        matches!(error, GlassboxError::PickleRefused { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("pytorch_model.bin"), "{error}");
    assert!(!std::path::Path::new("/tmp/glassbox-pwned").exists());
}

#[test]
fn model_too_large_for_memory_is_refused_before_reading() {
    let dir = copy_fixture("gpt2", "too-large");
    // A header that declares a 4 TB tensor; the body is never read.
    let header = serde_json::json!({
        "transformer.wte.weight": {"dtype": "F32", "shape": [1_000_000_000_000u64], "data_offsets": [0, 4_000_000_000_000u64]}
    })
    .to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    let error = load_error(&dir);
    assert!(matches!(error, GlassboxError::TooLarge { .. }), "{error}");
}

#[test]
fn save_then_load_round_trips_exactly() {
    let loaded = load_dir(&fixture("bert"), &Device::Cpu).unwrap();
    // Re-read the original tensors and save them through our writer.
    let tensors: BTreeMap<String, candle_core::Tensor> =
        candle_core::safetensors::load(fixture("bert").join("model.safetensors"), &Device::Cpu)
            .unwrap()
            .into_iter()
            .collect();
    let dir = temp_dir("save-roundtrip");
    save_dir(&dir, &loaded.config, &tensors, loaded.tokenizer.as_ref()).unwrap();
    let reloaded = load_dir(&dir, &Device::Cpu).unwrap();
    assert_eq!(reloaded.config, loaded.config);
    let text = "The cat climbed the [MASK].";
    let a = reference_tensors(&loaded, &inspect(&loaded, text, None, 3).unwrap()).unwrap();
    let b = reference_tensors(&reloaded, &inspect(&reloaded, text, None, 3).unwrap()).unwrap();
    for (name, tensor) in &a {
        assert_eq!(max_abs_diff(tensor, &b[name]), 0.0, "{name}");
    }
}

// One test for everything that sets HF_HOME: the variable is process-wide.
#[test]
fn hub_uses_the_cache_and_fails_fast_without_network() {
    let cache = temp_dir("hub-cache");
    // SAFETY: no other test in this binary reads or writes HF_HOME.
    unsafe { std::env::set_var("HF_HOME", &cache) };

    // A model already in the Hugging Face cache layout loads without any network.
    let repo = cache.join("hub/models--glassbox-test--cached-gpt2");
    let snapshot = repo.join("snapshots/0123456789abcdef");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123456789abcdef").unwrap();
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("gpt2").join(file), snapshot.join(file)).unwrap();
    }
    let dir = glassbox::hub::fetch_model("glassbox-test/cached-gpt2", |_| {}).unwrap();
    assert_eq!(dir, snapshot);
    load_dir(&dir, &Device::Cpu).unwrap();

    // A model that is not cached needs the network; without one the error is quick and clear.
    let started = Instant::now();
    let result = glassbox::hub::fetch_model("glassbox-test/does-not-exist", |_| {});
    let elapsed = started.elapsed();
    let error = result.expect_err("no such model / no network");
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
    assert!(error.to_string().contains("hub"), "{error}");
}
