//! The Embeddings, Step-through and Predict views in an egui_kittest harness, opened through
//! their accessible labels, with what they show checked against the library.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use eframe::egui;
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

use glassbox::app::data::{ModelSource, Slot};
use glassbox::app::panels::embeddings::EmbeddingsPanel;
use glassbox::app::panels::predict::{Mode, PredictPanel};
use glassbox::app::panels::step_through::StepThroughPanel;
use glassbox::app::widgets::format_value;
use glassbox::app::{Action, GlassboxApp};
use glassbox::generate::{SamplingSettings, generate, next_token_distribution, next_token_logits};
use glassbox::inspect::{Predictions, inspect};
use glassbox::lessons::Stage;
use glassbox::model::checkpoint::{LoadedModel, load_dir};
use glassbox::model::trace::{LayerField, TraceKey, TraceSite};
use glassbox::tokenizer::Encoded;

use crate::app_support::no_error_notices;
use crate::common::{fixture, temp_dir};

const TEXT: &str = "The cat chased the mouse.";
const BANK_A: &str = "He went to the bank to deposit money.";
const BANK_B: &str = "She sat on the river bank and watched the water.";

fn harness() -> Harness<'static, GlassboxApp> {
    harness_with(false)
}

/// `allow_missing_glyphs`: the random fixture GPT samples byte tokens that are not valid UTF-8
/// on their own; the tokenizer decodes them to U+FFFD, which the default fonts cannot draw.
fn harness_with(allow_missing_glyphs: bool) -> Harness<'static, GlassboxApp> {
    let app = crate::app_support::new_app(None);
    let mut builder = Harness::builder().with_size([1500.0, 1100.0]);
    if allow_missing_glyphs {
        builder = builder.allow_missing_glyphs();
    }
    builder.build_ui_state(|ui, app: &mut GlassboxApp| app.ui(ui), app)
}

/// Steps frames until the worker has answered everything the views asked for (bounded).
fn settle(h: &mut Harness<'static, GlassboxApp>) {
    crate::app_support::settle_within(h, 180);
}

fn open_view(h: &mut Harness<'static, GlassboxApp>, title: &str) {
    h.get_by_role_and_label(Role::Button, title).click();
    settle(h);
}

fn has_label(h: &Harness<'static, GlassboxApp>, label: &str) -> bool {
    h.query_by_label(label).is_some()
}

fn load(name: &str) -> LoadedModel {
    load_dir(&fixture(name), &Device::Cpu).expect("fixture loads")
}

// ---- Predict ------------------------------------------------------------------------------------

#[test]
fn predict_shows_the_next_token_distribution_of_the_library() {
    let mut h = harness();
    settle(&mut h);
    open_view(&mut h, "Predict");
    assert_eq!(h.state().current_view().id(), "predict");

    // Top-1 token and probability equal inspect()'s.
    let gpt = load("gpt2");
    let inspection = inspect(&gpt, TEXT, None, 5).unwrap();
    let Predictions::NextToken { top } = &inspection.predictions else {
        panic!("a GPT predicts the next token");
    };
    let panel = h.state().panel::<PredictPanel>().unwrap();
    let data = panel.next_data().expect("logits computed").clone();
    let dist = panel.distribution().unwrap();
    assert_eq!(data.ids, inspection.encoded.ids);
    assert_eq!(data.order[0].0, top[0].id);
    // Labelled readably: `▁mouse`, not the tokenizer's `Ġmouse`.
    assert_eq!(data.order[0].1, top[0].shown);
    let shown = dist[top[0].id as usize];
    assert!(
        (shown - top[0].prob).abs() < 1e-5,
        "{shown} vs {}",
        top[0].prob
    );
    let bar = format!("{}: {}", top[0].shown, format_value(shown));
    assert!(has_label(&h, &bar), "no bar {bar:?}");
    // Twenty bars, in the library's order.
    for t in top.iter().take(5) {
        let label = format!("{}: {}", t.shown, format_value(dist[t.id as usize]));
        assert!(has_label(&h, &label), "no bar {label:?}");
    }

    // Moving the temperature slider reshapes the same logits.
    let logits = next_token_logits(&gpt.model, &inspection.encoded.ids, &Device::Cpu).unwrap();
    assert_eq!(logits, data.logits);
    h.get_by_role_and_label(Role::Slider, "T")
        .set_value_accesskit(0.5);
    h.run_steps(3);
    let settings = h.state().panel::<PredictPanel>().unwrap().settings;
    assert!((settings.temperature - 0.5).abs() < 1e-6, "{settings:?}");
    let expected = next_token_distribution(&logits, &settings);
    let label = format!(
        "{}: {}",
        top[0].shown,
        format_value(expected[top[0].id as usize])
    );
    assert!(has_label(&h, &label), "no bar {label:?} at T = 0.5");
    assert!(
        expected[top[0].id as usize] > shown,
        "a lower temperature sharpens"
    );

    // Top-k 3: everything but three tokens is cut.
    h.get_by_role_and_label(Role::Slider, "k")
        .set_value_accesskit(3.0);
    h.run_steps(3);
    let settings = h.state().panel::<PredictPanel>().unwrap().settings;
    assert_eq!(settings.top_k, 3);
    let expected = next_token_distribution(&logits, &settings);
    assert_eq!(expected.iter().filter(|&&p| p > 0.0).count(), 3);
    assert!(
        h.query_by_label_contains("3 of 400 tokens can be sampled")
            .is_some()
    );
    let fourth = &data.order[3];
    assert!(has_label(
        &h,
        &format!("{}: {}", fourth.1, format_value(0.0))
    ));
    no_error_notices(&h);
}

#[test]
fn predict_generates_what_the_library_generates() {
    let mut h = harness_with(true);
    settle(&mut h);
    open_view(&mut h, "Predict");
    let settings = SamplingSettings {
        temperature: 0.8,
        top_k: 0,
        top_p: 0.95,
    };
    {
        let panel = h.state_mut().panel_mut::<PredictPanel>().unwrap();
        panel.settings = settings;
        panel.seed = 7;
    }
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Generate 20").click();
    settle(&mut h);
    let gpt = load("gpt2");
    let generated = generate(&gpt, TEXT, 20, &settings, 7, |_| {}).unwrap();
    // The same ids as the library's; a random model writes stray bytes, which the view writes
    // as `<EA>` where the library's text has `�`.
    let tokenizer = gpt.tokenizer().unwrap();
    let ids = {
        let panel = h.state().panel::<PredictPanel>().unwrap();
        panel.session.as_ref().expect("a generation").ids.clone()
    };
    let prompt_len = tokenizer.encode(TEXT, false).unwrap().ids.len();
    assert_eq!(
        tokenizer.decode(&ids[prompt_len..], true).unwrap(),
        generated
    );
    let expected = tokenizer.decode_for_display(&ids[prompt_len..]).unwrap();
    assert_eq!(h.state().shared.text, format!("{TEXT}{expected}"));
    let panel = h.state().panel::<PredictPanel>().unwrap();
    let session = panel.session.as_ref().expect("a generation");
    assert_eq!(session.generated, expected);
    assert_eq!(panel.remaining, 0);

    // One more token by hand continues the same seeded stream; "Back to the prompt" undoes all.
    let before = session.ids.len();
    let stopped_at_eos = panel.message.is_some();
    if !stopped_at_eos {
        h.get_by_role_and_label(Role::Button, "Next token").click();
        settle(&mut h);
        let session = h
            .state()
            .panel::<PredictPanel>()
            .unwrap()
            .session
            .clone()
            .unwrap();
        assert_eq!(session.ids.len(), before + 1);
        let continued = generate(&gpt, TEXT, 21, &settings, 7, |_| {}).unwrap();
        let new_ids = &session.ids[session.prompt_len..];
        assert_eq!(tokenizer.decode(new_ids, true).unwrap(), continued);
        assert_eq!(
            session.generated,
            tokenizer.decode_for_display(new_ids).unwrap()
        );
    }
    h.get_by_role_and_label(Role::Button, "Back to the prompt")
        .click();
    settle(&mut h);
    assert_eq!(h.state().shared.text, TEXT);
    assert!(h.state().panel::<PredictPanel>().unwrap().session.is_none());
    no_error_notices(&h);
}

/// The indices of the tokens that cover `word` (first whole occurrence), from the offsets.
fn word_tokens(encoded: &Encoded, text: &str, word: &str) -> Vec<usize> {
    let start = text
        .match_indices(word)
        .map(|(i, _)| i)
        .find(|&i| {
            let before = text[..i].chars().last();
            let after = text[i + word.len()..].chars().next();
            before.is_none_or(|c| !c.is_alphanumeric())
                && after.is_none_or(|c| !c.is_alphanumeric())
        })
        .expect("word in text");
    let end = start + word.len();
    (0..encoded.ids.len())
        .filter(|&i| {
            let (s, e) = encoded.offsets[i];
            encoded.special_tokens_mask[i] == 0 && s < end && e > start && e > s
        })
        .collect()
}

#[test]
fn predict_bert_fill_mask_nsp_and_qa() {
    let mut h = harness();
    settle(&mut h);
    open_view(&mut h, "Predict");
    h.get_by_label("BERT: fill-mask, NSP, QA").click();
    settle(&mut h);
    assert_eq!(h.state().panel::<PredictPanel>().unwrap().mode, Mode::Bert);
    assert!(
        h.query_by_label_contains("No [MASK] in the text yet")
            .is_some()
    );

    // Clicking the chip of "cat" masks it in the text.
    let bert = load("bert");
    let tokenizer = bert.tokenizer().unwrap();
    let encoded = tokenizer.encode(TEXT, true).unwrap();
    let cat = encoded.tokens.iter().position(|t| t == "cat").unwrap();
    let chip = format!("token {cat}: cat (id {})", encoded.ids[cat]);
    h.get_by_label(&chip).click();
    settle(&mut h);
    let masked = "The [MASK] chased the mouse.";
    assert_eq!(h.state().shared.text, masked);
    let inspection = inspect(&bert, masked, None, 10).unwrap();
    let Predictions::FillMask { masks, .. } = &inspection.predictions else {
        panic!("fill-mask");
    };
    assert_eq!(masks.len(), 1);
    assert!(has_label(
        &h,
        &format!("[MASK] at position {}", masks[0].position)
    ));
    for t in &masks[0].top {
        let label = format!("{}: {}", t.token, format_value(t.prob));
        assert!(has_label(&h, &label), "no bar {label:?}");
    }
    // Clicking a guess puts it in; "Restore the text" brings the original back.
    let guess = &masks[0].top[0];
    h.get_by_label(&format!("{}: {}", guess.token, format_value(guess.prob)))
        .click();
    settle(&mut h);
    let filled = masked.replace("[MASK]", guess.token.trim_start_matches("##"));
    assert_eq!(h.state().shared.text, filled);
    h.get_by_role_and_label(Role::Button, "Restore the text")
        .click();
    settle(&mut h);
    assert_eq!(h.state().shared.text, TEXT);

    // NSP: the probability of the pair, as the library computes it.
    let panel = h.state().panel::<PredictPanel>().unwrap();
    let (a, b) = (panel.nsp_a.clone(), panel.nsp_b.clone());
    let pair = inspect(&bert, &a, Some(&b), 1).unwrap();
    let Predictions::FillMask {
        is_next_prob: Some(p),
        ..
    } = pair.predictions
    else {
        panic!("the fixture BERT has an NSP head");
    };
    assert_eq!(panel.nsp_prob(), Some(Some(p)));
    assert!(has_label(
        &h,
        &format!("B follows A (IsNext): {}", format_value(p))
    ));

    // QA: the fixture is no QA model — said so, with no numbers.
    assert!(
        h.query_by_label_contains("No question-answering model is loaded")
            .is_some()
    );
    assert!(
        h.state()
            .panel::<PredictPanel>()
            .unwrap()
            .qa_result()
            .is_none()
    );

    // A BertForQuestionAnswering folder: the fixture encoder plus a QA head.
    let qa_dir = qa_fixture();
    h.state_mut()
        .apply(Action::LoadModel(ModelSource::Folder(qa_dir.clone())));
    settle(&mut h);
    no_error_notices(&h);
    let qa = load_dir(&qa_dir, &Device::Cpu).unwrap();
    let panel = h.state().panel::<PredictPanel>().unwrap();
    let result = panel.qa_result().expect("QA computed").clone();
    let (question, context) = (panel.question.clone(), panel.context.clone());
    let inspection = inspect(&qa, &question, Some(&context), 1).unwrap();
    let start_logits = inspection
        .output
        .start_logits
        .as_ref()
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let context_tokens: Vec<usize> = (0..inspection.encoded.ids.len())
        .filter(|&i| {
            inspection.encoded.type_ids[i] == 1 && inspection.encoded.special_tokens_mask[i] == 0
        })
        .collect();
    let max = context_tokens
        .iter()
        .map(|&i| start_logits[i])
        .fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = context_tokens
        .iter()
        .map(|&i| (start_logits[i] - max).exp())
        .sum();
    for &i in &context_tokens {
        let expected = (start_logits[i] - max).exp() / sum;
        assert!(
            (result.start_probs[i] - expected).abs() < 1e-5,
            "token {i}: {} vs {expected}",
            result.start_probs[i]
        );
        let label = format!(
            "context token {i} {}: start {}, end {}",
            inspection.encoded.tokens[i],
            format_value(result.start_probs[i]),
            format_value(result.end_probs[i])
        );
        assert!(has_label(&h, &label), "no bar {label:?}");
    }
    let Predictions::Span { start, end, .. } = inspection.predictions else {
        panic!("a span");
    };
    assert_eq!((result.start, result.end), (start, end));
}

/// The BERT fixture turned into a `BertForQuestionAnswering` folder (a seeded random QA head).
fn qa_fixture() -> std::path::PathBuf {
    let dir = temp_dir("views-qa");
    for file in ["tokenizer.json", "tokenizer_config.json", "vocab.txt"] {
        std::fs::copy(fixture("bert").join(file), dir.join(file)).unwrap();
    }
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("bert").join("config.json")).unwrap(),
    )
    .unwrap();
    config["architectures"] = serde_json::json!(["BertForQuestionAnswering"]);
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
    let tensors =
        candle_core::safetensors::load(fixture("bert").join("model.safetensors"), &Device::Cpu)
            .unwrap();
    let mut kept: BTreeMap<String, Tensor> = tensors
        .into_iter()
        .filter(|(name, _)| name.starts_with("bert.") && !name.contains("pooler"))
        .collect();
    let hidden = config["hidden_size"].as_u64().unwrap() as usize;
    let weight: Vec<f32> = (0..2 * hidden)
        .map(|i| ((i as f32 * 0.731).sin()) * 0.5)
        .collect();
    kept.insert(
        "qa_outputs.weight".into(),
        Tensor::from_vec(weight, (2, hidden), &Device::Cpu).unwrap(),
    );
    kept.insert(
        "qa_outputs.bias".into(),
        Tensor::new(&[0.1f32, -0.1], &Device::Cpu).unwrap(),
    );
    glassbox::model::checkpoint::write_safetensors(&dir.join("model.safetensors"), &kept).unwrap();
    dir
}

// ---- Step through -------------------------------------------------------------------------------

#[test]
fn step_through_shows_the_trace_stage_by_stage() {
    let mut h = harness();
    settle(&mut h);
    open_view(&mut h, "Step through");
    assert_eq!(h.state().current_view().id(), "step-through");
    let gpt = load("gpt2");
    let inspection = inspect(&gpt, TEXT, None, 5).unwrap();
    let trace = &inspection.trace;

    // The first stage: the token embeddings, with the trace's shape.
    let dims = trace.token_embeddings.as_ref().unwrap().dims().to_vec();
    assert!(has_label(&h, &format!("shape {dims:?}")), "{dims:?}");
    // The trace entry is named as in exports, not as a Rust value.
    assert!(has_label(&h, "(trace entry \"token_embeddings\")"));

    // Jump to "scores" by its button: the shape label is the trace's.
    h.get_by_label("scores").click();
    settle(&mut h);
    let scores = trace.layers[0].scores().unwrap().unwrap();
    let label = format!("shape {:?}", scores.dims());
    assert!(has_label(&h, &label), "no {label:?}");
    let shown = h
        .state()
        .panel::<StepThroughPanel>()
        .unwrap()
        .shown
        .clone()
        .unwrap();
    assert_eq!(shown.stage.kind, Stage::Scores);
    assert_eq!(shown.shape, scores.dims());
    assert_eq!(shown.formula, "scores = Q·K^T");
    assert!(has_label(&h, "GPT scores layer 0 head 0"));

    // → goes to "scale", with √d of the real head width.
    h.key_press(egui::Key::ArrowRight);
    settle(&mut h);
    let d = trace.layers[0].q.as_ref().unwrap().dim(3).unwrap();
    let shown = h
        .state()
        .panel::<StepThroughPanel>()
        .unwrap()
        .shown
        .clone()
        .unwrap();
    assert_eq!(shown.stage.kind, Stage::Scale);
    assert!(
        shown
            .formula
            .starts_with(&format!("scaled = scores / √d = scores / √{d} = ")),
        "{}",
        shown.formula
    );
    // Back, then a selected row shows the trace's numbers of head 2 in layer 1.
    h.get_by_role_and_label(Role::Button, "◀ Back").click();
    settle(&mut h);
    {
        let panel = h.state_mut().panel_mut::<StepThroughPanel>().unwrap();
        assert_eq!(panel.current.kind, Stage::Scores);
        panel.go_to(Stage::Softmax, 1);
        panel.head = 2;
        panel.token = Some(3);
    }
    settle(&mut h);
    let probs = trace.layers[1]
        .attention_probs
        .as_ref()
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    let row: Vec<String> = probs[2][3]
        .iter()
        .take(12)
        .map(|v| format!("{v:.4}"))
        .collect();
    let line = format!(
        "row 3 {:?} = [{}]",
        inspection.encoded.tokens[3],
        row.join(", ")
    );
    assert!(has_label(&h, &line), "no {line:?}");
    let dims = trace.layers[1].attention_probs.as_ref().unwrap().dims();
    assert!(has_label(&h, &format!("shape {dims:?}")));

    // The last stage: the next-token probabilities of the head.
    let Predictions::NextToken { top } = &inspection.predictions else {
        panic!()
    };
    h.state_mut()
        .panel_mut::<StepThroughPanel>()
        .unwrap()
        .go_to(Stage::Probabilities, 0);
    settle(&mut h);
    assert!(has_label(
        &h,
        &format!("{}: {}", top[0].shown, format_value(top[0].prob))
    ));
    // Next is disabled at the end; BERT has the embedding LayerNorm and Add & LayerNorm stages.
    h.get_by_label("BERT (bert)").click();
    settle(&mut h);
    h.get_by_label("add segments").click();
    settle(&mut h);
    let bert = load("bert");
    let bert_inspection = inspect(&bert, TEXT, None, 5).unwrap();
    let seg = bert_inspection.trace.segment_embeddings.as_ref().unwrap();
    assert!(has_label(&h, &format!("shape {:?}", seg.dims())));
    assert!(h.query_by_label("Add & LayerNorm (attention)").is_some());
    assert!(h.query_by_label("LayerNorm (embeddings)").is_some());
    no_error_notices(&h);
}

// ---- Embeddings ---------------------------------------------------------------------------------

fn bank_cosine_at_last_layer(loaded: &LoadedModel) -> f32 {
    let a = inspect(loaded, BANK_A, None, 1).unwrap();
    let b = inspect(loaded, BANK_B, None, 1).unwrap();
    let mean = |hidden: &Tensor, rows: &[usize]| -> Vec<f64> {
        let m = hidden
            .squeeze(0)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let mut out = vec![0f64; m[0].len()];
        for &r in rows {
            for (o, v) in out.iter_mut().zip(&m[r]) {
                *o += *v as f64;
            }
        }
        out.iter().map(|v| v / rows.len() as f64).collect()
    };
    let va = mean(
        a.trace.hidden_states.last().unwrap(),
        &word_tokens(&a.encoded, BANK_A, "bank"),
    );
    let vb = mean(
        b.trace.hidden_states.last().unwrap(),
        &word_tokens(&b.encoded, BANK_B, "bank"),
    );
    let dot: f64 = va.iter().zip(&vb).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    (dot / (norm(&va) * norm(&vb))) as f32
}

#[test]
fn embeddings_view_matches_the_library() {
    let mut h = harness();
    settle(&mut h);
    open_view(&mut h, "Embeddings");
    assert_eq!(h.state().current_view().id(), "embeddings");

    // The summed parts, as heatmaps.
    for part in ["token", "position", "sum"] {
        let label = format!("GPT {part} embeddings");
        assert!(has_label(&h, &label), "no heatmap {label:?}");
    }
    assert!(!has_label(&h, "GPT segment embeddings"));

    // PCA: every distinct token of the text is a labelled point.
    let gpt = load("gpt2");
    let ids = gpt.tokenizer().unwrap().encode(TEXT, true).unwrap().ids;
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    let panel = h.state().panel::<EmbeddingsPanel>().unwrap();
    let pca = panel.pca().expect("PCA computed").clone();
    let in_text: Vec<u32> = pca
        .points
        .iter()
        .filter(|p| p.in_text)
        .map(|p| p.id)
        .collect();
    assert_eq!(in_text.len(), distinct.len());
    assert!(in_text.iter().all(|id| distinct.contains(id)));
    assert_eq!(pca.fitted_on, 400, "the whole tiny vocabulary");
    assert!(pca.explained[0] >= pca.explained[1] && pca.explained[1] > 0.0);
    assert!(pca.explained[0] + pca.explained[1] <= 1.0 + 1e-5);
    assert!(has_label(&h, "PCA of token embeddings"));

    // The points are real projections on the leading principal component: recompute it here
    // (covariance of the whole table, power iteration in f64) and compare.
    let table = gpt.model.token_embedding_matrix().to_vec2::<f32>().unwrap();
    let n = table.len();
    let dim = table[0].len();
    let mean: Vec<f64> = (0..dim)
        .map(|j| table.iter().map(|r| r[j] as f64).sum::<f64>() / n as f64)
        .collect();
    let mut cov = vec![vec![0f64; dim]; dim];
    for row in &table {
        for i in 0..dim {
            for j in 0..dim {
                cov[i][j] += (row[i] as f64 - mean[i]) * (row[j] as f64 - mean[j]);
            }
        }
    }
    cov.iter_mut()
        .for_each(|r| r.iter_mut().for_each(|c| *c /= (n - 1) as f64));
    let trace: f64 = (0..dim).map(|i| cov[i][i]).sum();
    let mut v = vec![1.0f64; dim];
    for _ in 0..5000 {
        let w: Vec<f64> = cov
            .iter()
            .map(|r| r.iter().zip(&v).map(|(a, b)| a * b).sum())
            .collect();
        let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        v = w.iter().map(|x| x / norm).collect();
    }
    let lambda: f64 = cov
        .iter()
        .zip(&v)
        .map(|(r, vi)| vi * r.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>())
        .sum();
    assert!(
        (pca.explained[0] as f64 - lambda / trace).abs() < 1e-3,
        "PC1 explains {} vs {}",
        pca.explained[0],
        lambda / trace
    );
    for p in pca.points.iter().filter(|p| p.in_text) {
        let x: f64 = table[p.id as usize]
            .iter()
            .zip(&mean)
            .zip(&v)
            .map(|((e, m), vi)| (*e as f64 - m) * vi)
            .sum();
        assert!(
            ((p.x as f64).abs() - x.abs()).abs() < 1e-3,
            "token {}: PC1 {} vs {x}",
            p.token,
            p.x
        );
    }

    // "bank" in two sentences: the last layer's cosine equals one computed from inspect().
    for (slot, name) in [(Slot::Gpt, "gpt2"), (Slot::Bert, "bert")] {
        let loaded = load(name);
        let expected = bank_cosine_at_last_layer(&loaded);
        let panel = h.state().panel::<EmbeddingsPanel>().unwrap();
        let comparison = panel.comparison(slot).expect("comparison computed").clone();
        let shown = *comparison.cosines.last().unwrap();
        assert!(
            (shown - expected).abs() < 1e-5,
            "{slot:?}: {shown} vs {expected}"
        );
        assert_eq!(
            comparison.cosines.len(),
            loaded.config.num_layers() + 1,
            "one point per hidden state"
        );
        assert!(
            (comparison.static_cosine - 1.0).abs() < 1e-5,
            "same token ids"
        );
        let label = format!(
            "{} last layer (contextual): cos = {}",
            slot.short(),
            format_value(shown)
        );
        assert!(has_label(&h, &label), "no {label:?}");
    }
    assert!(has_label(&h, "cosine similarity by layer"));

    // A word missing from a sentence is an error in the panel, not a panic.
    h.state_mut().panel_mut::<EmbeddingsPanel>().unwrap().word = "zebra".into();
    settle(&mut h);
    assert_eq!(
        h.query_all_by_label_contains("\"zebra\" is not a word of sentence A")
            .count(),
        2,
        "one error per model"
    );

    // BERT: segment embeddings join the sum.
    h.get_by_label("BERT (bert)").click();
    settle(&mut h);
    for part in ["token", "position", "segment", "sum"] {
        let label = format!("BERT {part} embeddings");
        assert!(has_label(&h, &label), "no heatmap {label:?}");
    }
    no_error_notices(&h);
}

#[test]
fn views_export_files() {
    let dir = temp_dir("views-export");
    let mut h = harness();
    h.state_mut().shared.export_dir = dir.clone();
    settle(&mut h);
    let count = || std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    for view in ["Embeddings", "Step through", "Predict"] {
        open_view(&mut h, view);
        let before = count();
        for format in ["PNG", "CSV", "JSON"] {
            let buttons: Vec<_> = h
                .query_all_by_role_and_label(Role::Button, format)
                .collect();
            assert!(!buttons.is_empty(), "{view}: no {format} button");
            buttons[0].click();
            h.run_steps(2);
        }
        assert_eq!(count(), before + 3, "{view}: three files");
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.is_empty(), "{path:?}");
        if path.extension().is_some_and(|e| e == "png") {
            assert_eq!(&bytes[..4], b"\x89PNG");
        }
    }
    no_error_notices(&h);
}

// ---- Translate ----------------------------------------------------------------------------------

/// The shipped tiny translator, as the app loads it.
fn shipped_translator() -> glassbox::model::checkpoint::LoadedTranslator {
    glassbox::model::checkpoint::load_translator(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tiny-translator"),
        &Device::Cpu,
    )
    .unwrap()
}

/// The Translate view on the shipped tiny translator: the translation, stepping the decoder
/// token by token with the probabilities and the cross-attention of each step, beam search with
/// its beams, sampling; everything as `translate_step_by_step` computes it.
#[test]
fn translate_steps_the_decoder_and_shows_where_each_step_looks() {
    use glassbox::app::panels::translate::{Method, TranslatePanel};
    use glassbox::translate::{Strategy, translate_step_by_step};
    let mut h = harness();
    h.state_mut()
        .apply(Action::SetText("the black cat chased the mouse .".into()));
    settle(&mut h);
    open_view(&mut h, "Translate");
    assert_eq!(h.state().current_view().id(), "translate");
    assert!(has_label(&h, "le chat noir a chassé la souris ."));
    assert!(has_label(
        &h,
        "Step 1 of 9: the decoder reads <pad> and writes “le” (p = 0.999917)."
    ));

    // The library's own answer, to check the view against.
    let translator = shipped_translator();
    let steps = translate_step_by_step(
        &translator,
        "the black cat chased the mouse .",
        Strategy::Greedy,
        8,
    )
    .unwrap();

    // Two steps on: "noir", whose cross-attention looks at "black" (the adjective swap).
    h.get_by_role_and_label(Role::Button, "Next step ▶").click();
    h.run();
    h.get_by_role_and_label(Role::Button, "Next step ▶").click();
    settle(&mut h);
    let noir = &steps.steps[2];
    assert_eq!(noir.token, "▁noir");
    assert!(has_label(
        &h,
        &format!(
            "Step 3 of 9: the decoder reads <pad> le ▁chat and writes “▁noir” (p = {}).",
            format_value(noir.probability)
        )
    ));
    let layers = steps.cross_attention.len();
    let row = steps.cross_row(layers - 1, None, 2).unwrap();
    let black = row[1];
    assert!(black > 0.5, "{row:?}");
    assert!(
        has_label(&h, &format!("{black:.2}")),
        "the weight under ▁black"
    );
    // The bars: the chosen token first, with its probability.
    assert!(has_label(
        &h,
        &format!("▁noir  ← written: {}", format_value(noir.probability))
    ));
    assert!(has_label(&h, "cross-attention lines"));
    assert!(has_label(&h, "cross-attention heatmap"));

    // Beam search: the beams and their scores.
    h.get_by_role_and_label(Role::Button, "Beam search").click();
    settle(&mut h);
    let panel = h.state_mut().panel_mut::<TranslatePanel>().unwrap();
    assert_eq!(panel.settings.method, Method::Beam);
    let shown = panel.translation().unwrap().clone();
    assert_eq!(shown.beams.len(), 4);
    assert_eq!(shown.translation, "le chat noir a chassé la souris .");
    assert!(has_label(&h, "Beams (finished hypotheses, best first)"));
    assert!(has_label(&h, &format!("{:.4}", shown.beams[0].score)));

    // Sampling with a seed: what the library samples with that seed.
    h.get_by_role_and_label(Role::Button, "Sample").click();
    settle(&mut h);
    let panel = h.state_mut().panel_mut::<TranslatePanel>().unwrap();
    let sampled = panel.translation().unwrap().clone();
    let Strategy::Sample { settings, seed } = sampled.strategy else {
        panic!("sampled");
    };
    let again = translate_step_by_step(
        &translator,
        &sampled.text,
        Strategy::Sample { settings, seed },
        8,
    )
    .unwrap();
    assert_eq!(sampled.translation, again.translation);
    no_error_notices(&h);
}

/// The Attention view on the translator: encoder self-attention, decoder self-attention (mask
/// drawn) and cross-attention side by side, as the library computes them; the grid of every
/// layer × head per kind; lines.
#[test]
fn attention_shows_the_three_kinds_of_an_encoder_decoder() {
    use glassbox::app::panels::attention::AttentionPanel;
    use glassbox::app::panels::encoder_decoder::Kind;
    use glassbox::translate::{Strategy, translate_step_by_step};
    let mut h = harness();
    h.state_mut()
        .apply(Action::SetText("the black cat chased the mouse .".into()));
    settle(&mut h);
    open_view(&mut h, "Attention");
    h.get_by_role_and_label(Role::Button, "Translator (encoder–decoder)")
        .click();
    settle(&mut h);
    h.get_by_role_and_label(Role::Button, "Head 1").click();
    settle(&mut h);
    for kind in ["encoder", "decoder", "cross"] {
        assert!(
            has_label(&h, &format!("{kind} attention layer 0 head 1")),
            "{kind}"
        );
    }
    assert!(has_label(
        &h,
        "Each French token sees itself and the tokens written before it: the hatched cells are blocked."
    ));

    let translator = shipped_translator();
    let steps = translate_step_by_step(
        &translator,
        "the black cat chased the mouse .",
        Strategy::Greedy,
        5,
    )
    .unwrap();
    // The maps the view draws are the library's: cross-attention rows sum to 1, the decoder's
    // are causal.
    let cross = Kind::Cross.matrix(&steps, 0, Some(1)).unwrap();
    assert_eq!((cross.rows, cross.cols), (9, 8));
    let decoder = Kind::DecoderSelf.matrix(&steps, 1, None).unwrap();
    assert_eq!(
        decoder.get(0, 1),
        Some(0.0),
        "the first token cannot see the second"
    );

    // The grid: click layer 1's mean cross-attention thumbnail to enlarge it.
    h.get_by_label("cross layer 1 mean thumbnail").click();
    settle(&mut h);
    let panel = h.state_mut().panel_mut::<AttentionPanel>().unwrap();
    assert_eq!((panel.layer, panel.head), (1, None));
    assert!(has_label(&h, "cross attention layer 1 mean over heads"));
    // The grid's kind picker (the map titles above are labels, not buttons).
    h.get_by_role_and_label(Role::Button, "Decoder self-attention (causal)")
        .click();
    settle(&mut h);
    assert!(has_label(&h, "decoder layer 0 head 0 thumbnail"));
    // Lines.
    h.get_by_role_and_label(Role::Button, "Lines").click();
    settle(&mut h);
    assert!(has_label(&h, "cross attention layer 1 mean over heads"));
    no_error_notices(&h);
}

/// Step through an encoder–decoder: the encoder's stages over the source, then the decoder's
/// over its input, with cross-attention's queries from the decoder and keys and values from the
/// encoder's output; the recorded tensors are the library's.
#[test]
fn step_through_walks_the_encoder_then_the_decoder() {
    use glassbox::app::panels::step_through::StageRef;
    let mut h = harness();
    h.state_mut()
        .apply(Action::SetText("the black cat chased the mouse .".into()));
    settle(&mut h);
    open_view(&mut h, "Step through");
    h.get_by_label("MT (tiny-translator)").click();
    settle(&mut h);
    h.get_by_label("Encoder (reads the source)").click();
    settle(&mut h);
    let shown = |h: &Harness<'static, GlassboxApp>| {
        h.state()
            .panel::<StepThroughPanel>()
            .unwrap()
            .shown
            .clone()
            .expect("a stage is shown")
    };
    assert_eq!(shown(&h).stage, StageRef::in_encoder(Stage::Embed, None));
    assert_eq!(shown(&h).shape, vec![1, 8, 64], "8 source tokens");
    h.get_by_label("softmax").click();
    settle(&mut h);
    assert!(has_label(&h, "Encoder · Layer 0 · softmax"));
    assert_eq!(shown(&h).shape, vec![1, 4, 8, 8]);

    h.get_by_label("Decoder (writes the translation)").click();
    settle(&mut h);
    h.get_by_label("cross-attention Q (decoder), K, V (encoder)")
        .click();
    settle(&mut h);
    assert_eq!(shown(&h).stage, StageRef::new(Stage::CrossQkv, Some(0)));
    h.get_by_label("cross-attention softmax").click();
    settle(&mut h);
    assert!(has_label(&h, "Decoder · Layer 0 · cross-attention softmax"));
    // Rows: the 9 tokens the decoder reads; columns: the 8 source tokens.
    assert_eq!(shown(&h).shape, vec![1, 4, 9, 8]);

    // The numbers are the library's teacher-forced trace on the greedy translation.
    let translator = shipped_translator();
    let inspection = glassbox::translate::inspect_translation(
        &translator,
        "the black cat chased the mouse .",
        None,
    )
    .unwrap();
    let probs = inspection.trace.cross_attentions()[0]
        .get(0)
        .unwrap()
        .get(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap(); // head 0: [9, 8]
    let data = h
        .state_mut()
        .shared
        .inspection_full(Slot::Translator)
        .data()
        .expect("the view's trace");
    let shown = data
        .stage(TraceKey::new(TraceSite::Cross(
            0,
            LayerField::AttentionProbs,
        )))
        .expect("recorded");
    let head0 = shown.matrix(&[0]).unwrap();
    assert_eq!((head0.rows, head0.cols), (9, 8));
    for (r, row) in probs.iter().enumerate() {
        for (c, &p) in row.iter().enumerate() {
            assert!((head0.get(r, c).unwrap() - p).abs() < 1e-6);
        }
    }
    assert_eq!(data.source_labels()[1], "▁black");
    assert_eq!(data.token_labels()[0], "<pad>");
    // After the translation's last token the decoder would end it.
    let glassbox::inspect::Predictions::NextToken { top } = &data.predictions else {
        panic!("next-token predictions");
    };
    assert_eq!(top[0].token, "</s>");

    // The Parameters view counts the loaded translator with its cross-attention blocks.
    open_view(&mut h, "Parameters");
    h.get_by_label("MT (tiny-translator)").click();
    settle(&mut h);
    assert!(
        h.query_all_by_label_contains("decoder layers 0–1: cross-attention query (Q)")
            .next()
            .is_some()
    );
    assert!(
        h.query_all_by_label_contains("Exact total: 284,672 parameters")
            .next()
            .is_some()
    );
    no_error_notices(&h);
}

// ---- Model map ----------------------------------------------------------------------------------

#[test]
fn model_map_opens_a_block_in_step_through() {
    use glassbox::app::panels::step_through::StageRef;
    use glassbox::model::map::{TokenCounts, model_map};
    use glassbox::model::params::breakdown_for_config;
    let mut h = harness();
    settle(&mut h);
    open_view(&mut h, "Model");
    assert_eq!(h.state().current_view().id(), "model");

    // The map's numbers are the library's: the breakdown of the loaded config, every box
    // placed, the current text's token count in the shapes.
    let gpt = load("gpt2");
    let tokens = inspect(&gpt, TEXT, None, 5).unwrap().encoded.ids.len();
    let breakdown = breakdown_for_config(&gpt.config);
    let counts = TokenCounts {
        tokens: Some(tokens),
        source_tokens: None,
    };
    let map = model_map(&gpt.config, &breakdown, counts);
    assert!(map.unplaced.is_empty());
    assert_eq!(map.mapped_total(), breakdown.exact_total);
    assert!(has_label(
        &h,
        &format!(
            "T = {tokens} tokens of the current text. Every block's parameters add up to the exact total, {}. Click a block to open it in Step through.",
            glassbox::model::params::group_thousands(breakdown.exact_total)
        )
    ));

    // Click GPT's MLP block: Step through opens at the MLP of layer 0.
    h.get_by_label("GPT map: feed-forward (MLP)").click();
    settle(&mut h);
    assert_eq!(h.state().current_view().id(), "step-through");
    let panel = h.state().panel::<StepThroughPanel>().unwrap();
    assert_eq!(panel.slot, Slot::Gpt);
    assert_eq!(panel.current, StageRef::new(Stage::MlpHidden, Some(0)));
    let shown = panel.shown.clone().expect("a stage is shown");
    assert_eq!(shown.stage.kind, Stage::MlpHidden);

    // BERT's segment embeddings.
    open_view(&mut h, "Model");
    h.get_by_label("BERT map: + segment embeddings").click();
    settle(&mut h);
    let panel = h.state().panel::<StepThroughPanel>().unwrap();
    assert_eq!(panel.slot, Slot::Bert);
    assert_eq!(panel.current, StageRef::new(Stage::AddSegments, None));

    // The translator: an encoder block opens the encoder stack, a decoder block the decoder.
    open_view(&mut h, "Model");
    // The translator's card is below the other two: scroll to the block first.
    h.get_by_label("MT map: encoder: bidirectional self-attention")
        .scroll_to_me();
    h.run_steps(3);
    h.get_by_label("MT map: encoder: bidirectional self-attention")
        .click();
    settle(&mut h);
    let panel = h.state().panel::<StepThroughPanel>().unwrap();
    assert_eq!(panel.slot, Slot::Translator);
    assert_eq!(panel.current, StageRef::in_encoder(Stage::Qkv, Some(0)));
    open_view(&mut h, "Model");
    h.get_by_label("MT map: decoder: cross-attention")
        .scroll_to_me();
    h.run_steps(3);
    h.get_by_label("MT map: decoder: cross-attention").click();
    settle(&mut h);
    let panel = h.state().panel::<StepThroughPanel>().unwrap();
    assert_eq!(panel.current, StageRef::new(Stage::CrossQkv, Some(0)));
    assert_eq!(
        panel.shown.as_ref().map(|s| s.stage),
        Some(StageRef::new(Stage::CrossQkv, Some(0)))
    );
    no_error_notices(&h);
}
