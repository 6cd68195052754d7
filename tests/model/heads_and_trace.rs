//! The model families beyond parity: every head builds, the trace records every stage, and the
//! trace changes nothing.

use crate::common::{fixture, max_abs_diff};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use glassbox::model::checkpoint::load_dir;
use glassbox::model::config::{Architecture, ModelConfig};
use glassbox::model::trace::Trace;
use glassbox::model::{Model, ModelInput, Prefix};

fn ids(values: &[u32]) -> Tensor {
    Tensor::new(values, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
}

#[test]
fn trace_records_every_stage_and_changes_nothing() {
    for name in ["gpt2", "bert", "distilbert"] {
        let loaded = load_dir(&fixture(name), &Device::Cpu).unwrap();
        let input_ids = ids(&[2, 17, 202, 4, 80, 3]);
        let plain = loaded
            .model
            .forward(ModelInput::new(&input_ids), None)
            .unwrap();
        let mut trace = Trace::default();
        let traced = loaded
            .model
            .forward(ModelInput::new(&input_ids), Some(&mut trace))
            .unwrap();
        let logits = plain.logits.unwrap();
        // Training (trace off) takes the fused kernels, inspection the step-by-step ops: equal
        // within float32 rounding.
        let diff = max_abs_diff(&logits, &traced.logits.unwrap());
        assert!(diff < 1e-4, "{name}: {diff}");
        assert!(trace.token_embeddings.is_some() && trace.position_embeddings.is_some());
        assert!(trace.embedding_sum.is_some(), "{name}");
        assert_eq!(trace.segment_embeddings.is_some(), name == "bert");
        assert_eq!(trace.layers.len(), 2);
        assert_eq!(trace.hidden_states.len(), 3);
        for layer in &trace.layers {
            let required = [
                &layer.input,
                &layer.q,
                &layer.k,
                &layer.v,
                &layer.attention_probs,
                &layer.context,
                &layer.attention_output,
                &layer.residual_after_attention,
                &layer.mlp_hidden,
                &layer.mlp_output,
                &layer.output,
            ];
            assert!(
                required.iter().all(|t| t.is_some()),
                "{name}: a stage is missing"
            );
            // The scores are not stored but computed again from q, k and the mask; the softmax
            // of the masked ones must give back the recorded attention probabilities.
            assert!(layer.scores().unwrap().is_some() && layer.scaled_scores().unwrap().is_some());
            let masked = layer.masked_scores().unwrap().expect("masked scores");
            let probs = glassbox::model::layers::softmax_last_dim(&masked).unwrap();
            let diff = max_abs_diff(&probs, layer.attention_probs.as_ref().unwrap());
            assert!(
                diff < 1e-6,
                "{name}: recomputed scores give other probabilities ({diff})"
            );
            assert_eq!(layer.q.as_ref().unwrap().dims(), &[1, 4, 6, 8]);
            assert_eq!(
                layer.mlp_hidden.as_ref().unwrap().dims()[2],
                if name == "gpt2" { 128 } else { 64 }
            );
            // Pre-LN (GPT) records its LayerNorms; post-LN families fold them into the residual.
            assert_eq!(layer.ln_attention.is_some(), name == "gpt2");
            // Causal: the mask is drawn; bidirectional without padding: nothing is blocked.
            assert_eq!(layer.mask.is_some(), name == "gpt2");
        }
        assert_eq!(trace.final_norm.is_some(), name == "gpt2");
        assert!(max_abs_diff(trace.logits.as_ref().unwrap(), &logits) < 1e-4);
    }
}

#[test]
fn causal_attention_never_looks_ahead() {
    let loaded = load_dir(&fixture("gpt2"), &Device::Cpu).unwrap();
    let mut trace = Trace::default();
    loaded
        .model
        .forward(
            ModelInput::new(&ids(&[10, 20, 30, 40, 50])),
            Some(&mut trace),
        )
        .unwrap();
    let probs: Vec<Vec<Vec<f32>>> = trace.layers[0]
        .attention_probs
        .as_ref()
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec3()
        .unwrap();
    for head in &probs {
        for (query, row) in head.iter().enumerate() {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5);
            assert!(
                row[query + 1..].iter().all(|&p| p == 0.0),
                "query {query} looks ahead"
            );
        }
    }
}

#[test]
fn padding_is_masked_for_bert() {
    let loaded = load_dir(&fixture("bert"), &Device::Cpu).unwrap();
    let input_ids = ids(&[2, 17, 202, 3, 0, 0]);
    let padding = vec![vec![1, 1, 1, 1, 0, 0]];
    let mut trace = Trace::default();
    let padded = loaded
        .model
        .forward(
            ModelInput {
                input_ids: &input_ids,
                token_type_ids: None,
                padding: Some(&padding),
                decoder_input_ids: None,
            },
            Some(&mut trace),
        )
        .unwrap();
    let unpadded = loaded
        .model
        .forward(ModelInput::new(&ids(&[2, 17, 202, 3])), None)
        .unwrap();
    // Real tokens see the same thing with or without padding after them.
    let a = padded.last_hidden_state.narrow(1, 0, 4).unwrap();
    assert!(max_abs_diff(&a, &unpadded.last_hidden_state) < 1e-5);
    let probs: Vec<Vec<Vec<f32>>> = trace.layers[1]
        .attention_probs
        .as_ref()
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec3()
        .unwrap();
    assert!(
        probs
            .iter()
            .flatten()
            .all(|row| row[4] == 0.0 && row[5] == 0.0)
    );
}

#[test]
fn every_bert_head_builds_from_scratch_and_has_the_right_shape() {
    let base = ModelConfig::from_file(&fixture("bert").join("config.json")).unwrap();
    let input_ids = ids(&[2, 17, 202, 4, 80, 3]);
    for architecture in [
        Architecture::BertModel,
        Architecture::BertForPreTraining,
        Architecture::BertForMaskedLm,
        Architecture::BertForSequenceClassification,
        Architecture::BertForQuestionAnswering,
    ] {
        let config = ModelConfig {
            architecture,
            ..base.clone()
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = Model::new(vb, &config, Prefix::Standard).unwrap();
        let out = model.forward(ModelInput::new(&input_ids), None).unwrap();
        assert_eq!(out.last_hidden_state.dims(), &[1, 6, 32]);
        let has_mlm = matches!(
            architecture,
            Architecture::BertForPreTraining | Architecture::BertForMaskedLm
        );
        assert_eq!(
            out.logits.as_ref().map(|t| t.dims().to_vec()),
            has_mlm.then(|| vec![1, 6, 400])
        );
        assert_eq!(
            out.nsp_logits.is_some(),
            architecture == Architecture::BertForPreTraining
        );
        assert_eq!(
            out.class_logits.as_ref().map(|t| t.dims().to_vec()),
            (architecture == Architecture::BertForSequenceClassification).then(|| vec![1, 2])
        );
        if architecture == Architecture::BertForQuestionAnswering {
            assert_eq!(out.start_logits.unwrap().dims(), &[1, 6]);
            assert_eq!(out.end_logits.unwrap().dims(), &[1, 6]);
            assert!(out.pooled.is_none(), "transformers' QA model has no pooler");
        }
        // Parameter count of the fresh model equals the analytic exact count.
        let actual: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
        let analytic = glassbox::model::params::breakdown_for_config(&config).exact_total;
        assert_eq!(actual as u64, analytic, "{architecture:?}");
    }
}

#[test]
fn gradients_flow_through_every_parameter() {
    // LayerNorm and softmax are written with differentiable ops: every weight gets a gradient.
    for name in ["gpt2", "bert"] {
        let config = ModelConfig::from_file(&fixture(name).join("config.json")).unwrap();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = Model::new(vb, &config, Prefix::Standard).unwrap();
        let out = model
            .forward(ModelInput::new(&ids(&[2, 17, 202, 4, 80, 3])), None)
            .unwrap();
        let mut loss = out.logits.unwrap().sqr().unwrap().mean_all().unwrap();
        if let Some(nsp) = out.nsp_logits {
            loss = (loss + nsp.sqr().unwrap().mean_all().unwrap()).unwrap();
        }
        let grads = loss.backward().unwrap();
        for var in varmap.all_vars() {
            let grad = grads.get(var.as_tensor());
            assert!(
                grad.is_some(),
                "{name}: a parameter of shape {:?} got no gradient",
                var.dims()
            );
        }
    }
}

/// A Marian of a shape no fixture has: separate encoder and decoder tables of different sizes,
/// an LM head of its own, encoder and decoder with different head counts and FFN widths, no
/// embedding scale, swish. It loads through the one opener, the parameter table counts exactly
/// what the weights file holds, and decoding with the key/value cache gives the logits of the
/// full teacher-forced forward at every position.
#[test]
fn marian_of_an_unseen_shape() {
    use glassbox::model::marian::{GenerationConfig, Marian, MarianConfig};
    use glassbox::model::params::{actual_count_file, breakdown_for_config};
    let json = serde_json::json!({
        "model_type": "marian", "architectures": ["MarianMTModel"],
        "vocab_size": 60, "decoder_vocab_size": 50, "share_encoder_decoder_embeddings": false,
        "tie_word_embeddings": false, "d_model": 24,
        "encoder_layers": 3, "decoder_layers": 2,
        "encoder_attention_heads": 2, "decoder_attention_heads": 4,
        "encoder_ffn_dim": 48, "decoder_ffn_dim": 40, "max_position_embeddings": 32,
        "activation_function": "swish", "scale_embedding": false,
        "pad_token_id": 49, "eos_token_id": 0, "decoder_start_token_id": 49,
        "forced_eos_token_id": 0,
    });
    let config = MarianConfig::from_hf_json(&json).unwrap();
    assert_eq!(config.target_vocab_size(), 50);
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let built = Marian::new(
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
        &config,
    )
    .unwrap();
    let dir = crate::common::temp_dir("marian-unseen-shape");
    varmap.save(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();

    let loaded = load_dir(&dir, &device).expect("loads through the one opener");
    let Model::Marian(model) = &loaded.model else {
        panic!("not a Marian")
    };
    // The file holds final_logits_bias (a buffer) and not the two sinusoidal tables.
    let stored = actual_count_file(&dir.join("model.safetensors")).unwrap();
    let breakdown = breakdown_for_config(&loaded.config);
    assert_eq!(breakdown.exact_total, stored - 50 + 2 * 32 * 24);
    assert_eq!(breakdown.trainable_total, stored - 50);
    assert!(
        breakdown
            .rows
            .iter()
            .any(|r| r.component.contains("untied"))
    );

    let source = Tensor::new(&[5u32, 7, 9, 11, 0], &device)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let target: Vec<u32> = vec![49, 3, 8, 13, 21, 34];
    let decoder_input = Tensor::new(target.as_slice(), &device)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let full = model.forward(&source, &decoder_input, None).unwrap(); // [1, 6, 50]
    assert_eq!(full.dims(), &[1, 6, 50]);
    // The same weights as built: the same logits.
    let again = built.forward(&source, &decoder_input, None).unwrap();
    assert!(max_abs_diff(&full, &again) < 1e-6);
    let encoder_output = model.encode(&source, None, None).unwrap();
    let mut state = model.start_decoding(&encoder_output, None).unwrap();
    for (position, &id) in target.iter().enumerate() {
        let step = Tensor::new(&[id], &device).unwrap().unsqueeze(0).unwrap();
        let logits = model.decode(&step, &mut state, None).unwrap(); // [1, 1, 50]
        let expected = full.narrow(1, position, 1).unwrap();
        let diff = max_abs_diff(&logits, &expected);
        assert!(diff < 1e-4, "position {position}: {diff}");
    }
    // One beam is greedy, and nothing panics on random weights.
    let generation = GenerationConfig {
        max_length: 12,
        ..GenerationConfig::from_model(&config)
    };
    let greedy = model.greedy(&[5, 7, 9, 0], &generation).unwrap();
    let beams = model.beam_search(&[5, 7, 9, 0], &generation).unwrap();
    assert_eq!(beams[0].ids, greedy);
    assert!(greedy.len() <= 11 && !greedy.contains(&49));

    // A padded batch (the trainer's and the batched greedy's) computes what each sentence
    // computes alone: the padding is masked in the encoder and in cross-attention.
    let short = [5u32, 7, 0];
    let pad = config.pad_token_id;
    let batch = Tensor::new(&[[5u32, 7, 9, 11, 0], [5, 7, 0, pad, pad]], &device).unwrap();
    let padding = vec![vec![1u32, 1, 1, 1, 1], vec![1, 1, 1, 0, 0]];
    let decoder_batch = Tensor::new(&[[49u32, 3, 8], [49, 13, 21]], &device).unwrap();
    let (_, batched) = model
        .forward_with_hidden(&batch, Some(&padding), &decoder_batch, None)
        .unwrap(); // [2, 3, 50]
    let alone = model
        .forward(
            &Tensor::new(&short, &device).unwrap().unsqueeze(0).unwrap(),
            &Tensor::new(&[49u32, 13, 21], &device)
                .unwrap()
                .unsqueeze(0)
                .unwrap(),
            None,
        )
        .unwrap();
    let diff = max_abs_diff(&batched.narrow(0, 1, 1).unwrap(), &alone);
    assert!(diff < 1e-4, "padded row differs by {diff}");
    let sources = vec![vec![5u32, 7, 9, 0], short.to_vec()];
    let batched_greedy = model.greedy_batch(&sources, &generation).unwrap();
    for (source, ids) in sources.iter().zip(&batched_greedy) {
        assert_eq!(ids, &model.greedy(source, &generation).unwrap());
    }
}
